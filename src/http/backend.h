/*
 * backend.h - HTTP/1.1 client toward the application backend (connect hook,
 * forwards, close hook). Core thread only: every function here, and every
 * callback it makes, runs on the core thread's event_base. The process must
 * ignore SIGPIPE (a write to a connection the backend closed is an error).
 *
 * Connections are pooled per origin (host:port) and kept alive between
 * requests; at most opts.max_connections are open per origin, further
 * requests wait in a FIFO queue (at most opts.max_queue of them). Requests
 * handed to one origin are dispatched in submission order. A response that
 * says "Connection: close", an HTTP/1.0 response without "keep-alive", and a
 * body delimited by the end of the connection end the connection's reuse.
 * Idle connections are watched: one the backend closes is freed at once, and
 * one idle for 60 s is closed. Origins (and their resolved addresses) live
 * until backend_free(): the set of backends is small and fixed by config.
 *
 * Name resolution is synchronous, once per origin, on its first request: a
 * numeric address costs nothing; a name is looked up through getaddrinfo
 * (/etc/hosts, then DNS), which blocks the core thread, so a backend should
 * be named by address or by a name in /etc/hosts. A failed lookup is not
 * cached (the request fails with RB_EIO, the next one tries again). When a
 * name has several addresses, a connect error (not a timeout) moves on to the
 * next one, and the one that worked is tried first from then on.
 *
 * Timeouts: connect_timeout_ms bounds the TCP connect; request_timeout_ms
 * bounds the whole request from submission to the last body byte (queueing
 * and the stale keep-alive retry included), so a backend trickling bytes
 * cannot hold a request forever; the connection it was on is then closed.
 *
 * Stale keep-alive: when a reused idle connection fails before any response
 * byte arrived (the backend closed it while idle), the request is retried
 * once on a fresh connection, whatever its method: a backend that closes a
 * connection after reading a request without answering it may see a POST
 * twice. No other retries are made.
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
	const char *errmsg;  /* readable detail when err != RB_OK, else NULL;
	                      * valid only during the callback */
	int status;          /* HTTP status code, 0 when err != RB_OK */
	struct evbuffer *body; /* the response body (de-chunked); never NULL, empty
	                        * when err != RB_OK; valid only during the
	                        * callback, which may drain/move it */
	void *priv;          /* internal */
};

/* Called exactly once per request that backend_request() accepted, unless the
 * request was cancelled first. Never called from inside backend_request(). */
typedef void (*backend_cb)(const struct backend_response *resp, void *arg);

/* Returns NULL on allocation failure or invalid opts. */
struct backend *backend_new(struct event_base *base, const struct backend_opts *opts);

/* Closes every connection and completes every pending request with
 * err = RB_ECLOSED (callbacks run inside this call, so owners can release
 * their arguments; backend_request() fails with RB_ECLOSED meanwhile).
 * NULL-tolerant. Must not be called from inside a backend callback. */
void backend_free(struct backend *b);

/*
 * Start a request. url is absolute ("http://host[:port]/path?query", host a
 * name, an IPv4 address or a bracketed IPv6 address; port 80 by default; a
 * "#fragment" is dropped). The request carries "Host: host:port" (always with
 * the port) and, when body_len > 0 or the method is POST, PUT or PATCH,
 * "Content-Length"; no Connection header, keep-alive being HTTP/1.1's
 * default. hdrs are extra request headers, sent in order; entries named
 * Host, Content-Length, Connection or Transfer-Encoding are skipped, since
 * the client sets those. method must be an HTTP token, header names tokens,
 * and header values free of CR and LF (else RB_EINVAL). body may be NULL when
 * body_len is 0. The client copies everything it needs before returning. Returns a handle usable with
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
 * it was using (if any) is closed, since a response may still arrive. From
 * inside the request's own callback it does nothing; after it, r is gone. */
void backend_cancel(struct backend_req *r);

/* Case-insensitive lookup of a response header; valid only during the
 * callback. Returns NULL when absent (always when err != RB_OK). If repeated,
 * the first value. */
const char *backend_response_header(const struct backend_response *resp,
				    const char *name);

/* Requests accepted and not yet completed (queued + in flight), all origins. */
size_t backend_pending(const struct backend *b);

#endif
