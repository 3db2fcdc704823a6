/*
 * rest.h - the REST API (docs/protocol.md Pushing; docs/rest-api.md) served by httpd on the main
 * port (and api_port). Core thread only. Every answer is JSON
 * (application/json), except /hello/ and a signed GET /send/ ("ok"),
 * /metrics (Prometheus text) and the HTML /serverinfo/ page.
 *
 * rest_status_codes = compat (default): every outcome the original
 * answered over HTTP 200 ("status":1 with "signature error", "params
 * error", "qos level error", "channel miss", "no such connection",
 * "timeout"...) travels over HTTP 200; strict: 403, 400, 404, 504. Either
 * way an unknown path is 404, a wrong method 405, and HTTP-level trouble
 * (oversized, out of memory) its own code. docs/rest-api.md lists every
 * difference from the original.
 *
 * Every call but /hello/, /healthz, /metrics and /serverinfo/ must carry
 * a valid signature (A.6; api_signature); /serverinfo/ per
 * serverinfo_auth (none, as the original; signature; password).
 */
#ifndef RB_REST_H
#define RB_REST_H

struct httpd_req;

/* httpd handler; arg is the struct core. */
void rest_handle(struct httpd_req *req, void *arg);

struct core;
/* This node's /serverinfo/?cluster=1 object (without "peers") as JSON, for
 * another cluster node's whole-cluster pages; malloc'd, NULL on ENOMEM. */
char *rest_node_info(struct core *c);

#endif
