/*
 * rest.h - the REST API (PROTOCOL.md A.4, B.5) served by httpd on the main
 * port (and api_port). Core thread only. Every answer is JSON with a
 * proper status, except /hello/ ("ok"), /metrics (Prometheus text) and
 * the HTML /serverinfo/ page. Every call but /hello/, /healthz and
 * /metrics must carry a valid signature (A.6).
 */
#ifndef RB_REST_H
#define RB_REST_H

struct httpd_req;

/* httpd handler; arg is the struct core. */
void rest_handle(struct httpd_req *req, void *arg);

#endif
