/*
 * backend.h - HTTP/1.1 client toward the application backend (connect hook,
 * forwards, close hook). Core thread only: every function here, and every
 * callback it makes, runs on the core thread's event_base.
 *
 * Connections are pooled per origin (host:port) and kept alive between
 * requests; at most opts.max_connections are open per origin, further
 * requests wait in a FIFO queue (at most opts.max_queue of them). Requests
 * handed to one origin are dispatched in submission order.
 *
 * Timeouts: connect_timeout_ms bounds the TCP connect; request_timeout_ms
 * bounds the whole request from submission to the last body byte (queueing
 * included), so a backend trickling bytes cannot hold a request forever.
 *
 * Stale keep-alive: when a reused idle connection fails before any response
 * byte arrived (the backend closed it while idle), the request is retried
 * once on a fresh connection. No other retries are made.
 *
 * Only "http://" URLs are supported (the backend is on a trusted network).
 */
#ifndef RB_BACKEND_H
#define RB_BACKEND_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evbuffer;
struct backend;
struct backend_req;

struct backend_opts {
	int max_connections;       /* per origin, >= 1 */
	int max_queue;             /* waiting requests per origin, >= 0 */
	int connect_timeout_ms;    /* > 0 */
	int request_timeout_ms;    /* > 0 */
	size_t max_response_bytes; /* body cap; over it the request fails RB_ETOOBIG */
};

struct backend_header {
	const char *name;
	const char *value;
};

struct backend_response {
	int err;             /* RB_OK when an HTTP response arrived (any status);
	                      * else RB_ETIMEDOUT, RB_EIO (refused, reset, closed
	                      * early), RB_ETOOBIG, RB_EPROTO (unparsable response) */
	const char *errmsg;  /* readable detail when err != RB_OK, else NULL */
	int status;          /* HTTP status code, 0 when err != RB_OK */
	struct evbuffer *body; /* the response body (de-chunked); valid only during
	                        * the callback, which may drain/move it */
	void *priv;          /* internal */
};

/* Called exactly once per request that backend_request() accepted, unless the
 * request was cancelled first. Never called from inside backend_request(). */
typedef void (*backend_cb)(const struct backend_response *resp, void *arg);

/* Returns NULL on allocation failure or invalid opts. */
struct backend *backend_new(struct event_base *base, const struct backend_opts *opts);

/* Cancels every pending request (their callbacks are not called) and closes
 * every connection. NULL-tolerant. */
void backend_free(struct backend *b);

/*
 * Start a request. url is absolute ("http://host[:port]/path?query"); hdrs
 * are extra request headers (Host, Content-Length and Connection are set by
 * the client). body may be NULL when body_len is 0. The client copies
 * everything it needs before returning. Returns a handle usable with
 * backend_cancel() until the callback runs, or NULL on immediate failure
 * (bad URL, queue full, out of memory) in which case cb is never called and
 * *err (if non-NULL) says why (RB_EINVAL, RB_ELIMIT, RB_ENOMEM).
 */
struct backend_req *backend_request(struct backend *b, const char *method,
				    const char *url,
				    const struct backend_header *hdrs, size_t nhdrs,
				    const void *body, size_t body_len,
				    backend_cb cb, void *arg, int *err);

/* Cancel a pending request; its callback will not be called. The connection
 * it was using (if any) is closed, since a response may still arrive. */
void backend_cancel(struct backend_req *r);

/* Case-insensitive lookup of a response header; valid only during the
 * callback. Returns NULL when absent. If repeated, the first value. */
const char *backend_response_header(const struct backend_response *resp,
				    const char *name);

/* Requests accepted and not yet completed (queued + in flight), all origins. */
size_t backend_pending(const struct backend *b);

#endif
