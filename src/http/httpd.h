/*
 * httpd.h - the small HTTP/1.1 server behind the REST API. Core thread only.
 *
 * Why not evhttp: the front door must hand an accepted, peeked socket to
 * the HTTP server, and Debian's libevent 2.1.12 does not export
 * evhttp_get_request(), the only way to do that. This server adopts such
 * sockets (httpd_adopt) and also listens on api_port.
 *
 * Requests: Content-Length bodies only (chunked uploads get 411), head at
 * most HTTP_MAX_HEAD (431), body at most max_body (413), keep-alive, one
 * request at a time per connection. A handler answers with httpd_reply()
 * now or later: a request stays valid until replied, and if the client goes
 * away first the reply is simply discarded.
 *
 * Framing is never guessed (request smuggling): Content-Length values that
 * differ, Content-Length with Transfer-Encoding, or a Transfer-Encoding other
 * than chunked get 400 and the connection is closed. Errors answered before
 * a handler runs close the connection after a short lingering read, so that
 * unread input does not turn the close into a reset that hides the answer.
 *
 * Timeouts: a connection with nothing to do for idle_timeout seconds
 * (http_idle_timeout), or whose answer the client does not read for as
 * long, is closed. A request's body must be complete within body_timeout
 * seconds (request_body_timeout) of its head, and a head that follows an
 * earlier request on the connection within as long of its first byte (the
 * door's head_timeout covers the first); past it 408 and close, counted in
 * rainbow_http_request_timeouts_total.
 *
 * Also: HEAD is answered without a body (Content-Length as for GET);
 * Expect: 100-continue gets "100 Continue" before the body is read (unless
 * the request is refused first); an HTTP/1.0 request kept alive gets
 * Connection: keep-alive.
 */
#ifndef RB_HTTPD_H
#define RB_HTTPD_H

#include <stddef.h>

#include "src/http/http_head.h"

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

/* Timeouts in seconds. NULL on ENOMEM. */
struct httpd *httpd_new(struct event_base *base, size_t max_body,
			double idle_timeout, double body_timeout, httpd_handler h, void *arg);
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
/* Shorthand: JSON {"status":1,"msg":"<msg>"} with HTTP status code; msg is
 * JSON-escaped whole (one that is not UTF-8 becomes "error"). */
void httpd_reply_error(struct httpd_req *req, int http_status, const char *msg);
/* httpd_reply with extra header lines, each ending in CRLF (NULL: none). */
void httpd_reply_with(struct httpd_req *req, int status, const char *extra,
		      const char *content_type, const char *body, size_t len);

/* Requests received and not yet answered. */
size_t httpd_pending(const struct httpd *s);

#endif
