/*
 * httpd.h - the small HTTP/1.1 server behind the REST API. Core thread only.
 *
 * Why not evhttp: the front door must hand an accepted, peeked socket to
 * the HTTP server, and Debian's libevent 2.1.12 does not export
 * evhttp_get_request(), the only way to do that. This server adopts such
 * sockets (httpd_adopt) and also listens on api_port.
 *
 * Requests: Content-Length bodies only (chunked uploads get 411), head at
 * most 16 KiB (431), body at most max_body (413), keep-alive, one request
 * at a time per connection, idle timeout. A handler answers with
 * httpd_reply() now or later: a request stays valid until replied, and if
 * the client goes away first the reply is simply discarded.
 */
#ifndef RB_HTTPD_H
#define RB_HTTPD_H

#include <stddef.h>

#include "src/http_head.h"

struct event_base;
struct httpd;

struct httpd_req {
	struct http_head head;   /* method, path, query, headers */
	struct kvlist args;      /* decoded query arguments */
	const char *body;        /* NUL-terminated copy, body_len bytes */
	size_t body_len;
	char peer[64];           /* "ip:port" of the client */
	void *ctx;               /* the handler's, free to use */
	void *priv;              /* internal */
};

/* Must eventually call httpd_reply(req, ...) exactly once. */
typedef void (*httpd_handler)(struct httpd_req *req, void *arg);

struct httpd *httpd_new(struct event_base *base, size_t max_body,
			double idle_timeout, httpd_handler h, void *arg);
/* Serve the HTTP connection on fd (already accepted; takes fd). */
void httpd_adopt(struct httpd *s, int fd);
/* Also listen on bind:port. RB_OK or RB_EIO (logged). */
int httpd_listen(struct httpd *s, const char *bind, int port);
/* Stop listening and close idle connections; requests being handled still
 * get their answer. */
void httpd_close(struct httpd *s);
/* Frees everything; pending requests are dropped without an answer. */
void httpd_free(struct httpd *s);

/* Answer and release req. content_type NULL means application/json.
 * Copies body. */
void httpd_reply(struct httpd_req *req, int status, const char *content_type,
		 const char *body, size_t len);
/* Shorthand: JSON {"status":<st>,"msg":"<msg>"} with HTTP status code. */
void httpd_reply_error(struct httpd_req *req, int http_status, const char *msg);

/* Requests received and not yet answered. */
size_t httpd_pending(const struct httpd *s);

#endif
