/*
 * backend.c - pooled HTTP/1.1 client toward the application backend.
 * Core thread only; see backend.h for the contract. Responses are parsed by
 * http_resp; this file owns the pool and the request lifecycle.
 *
 * A request is in exactly one place: an origin's FIFO queue, a connection
 * (connecting or busy), or "failing" (its timer re-armed with a zero delay so
 * that an error found inside backend_request() or a dispatch reaches the
 * callback from the event loop). Invariant: an origin's queue is non-empty
 * only while it has no idle connection and max_connections are open, so every
 * event that frees a slot or idles a connection ends with dispatch().
 *
 * Reentrancy: the user callback may submit or cancel other requests, and a
 * cancel closes the cancelled request's connection, which can be the very
 * connection whose libevent callback is on the stack. So every handler makes
 * at most one callback (deliver()) as its last action and touches nothing
 * afterwards; libevent itself keeps a bufferevent alive until its callback
 * returns, so freeing one from inside is safe.
 */
#include "src/http/backend.h"

#include <ctype.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/util.h>

#include "protocol/rb.h"
#include "src/base/thread.h"
#include "src/http/http_head.h"
#include "src/http/http_resp.h"
#include "src/base/timeutil.h"

#define IDLE_TIMEOUT_S   60
#define MAX_ADDRS        4
#define MAX_HOST         255
#define ERRMSG_LEN       192

/* A parser error is copied whole into the request's errmsg. */
_Static_assert(ERRMSG_LEN >= HTTP_RESP_ERRMSG_LEN, "errmsg too short");

#define ASSERT_CORE(b) THREAD_ASSERT(&(b)->owner)

enum where { W_NONE, W_QUEUED, W_CONN, W_FAILING, W_DONE };

struct origin;
struct bconn;

/* Core thread only. Owned by the backend from acceptance to deliver/cancel. */
struct backend_req {
	TAILQ_ENTRY(backend_req) all;   /* b->reqs: what backend_free frees */
	TAILQ_ENTRY(backend_req) qlink; /* o->queue while W_QUEUED */
	struct backend *b;
	struct origin *o;
	struct bconn *conn;             /* while W_CONN */
	enum where where;
	backend_cb cb;
	void *arg;
	struct event *timer;            /* request deadline, or zero delay when failing */
	struct evbuffer *wire;          /* request bytes, kept for the stale retry */
	int fail_err;
	bool retried, rx_any;
	char errmsg[ERRMSG_LEN];
	struct http_resp resp;          /* reset for each connection it goes on */
};

/* A pooled connection to a backend origin (not core.h's struct conn, a
 * client's). Core thread only. Busy while req != NULL (connecting
 * included), else idle. */
struct bconn {
	TAILQ_ENTRY(bconn) link;        /* o->idle or o->busy */
	struct origin *o;
	evutil_socket_t fd;             /* ours while connecting, the bev's after */
	struct event *connev;           /* writability + connect timeout */
	struct bufferevent *bev;
	struct backend_req *req;
	int addr_i, tries;
	bool idle, reused;
};

/* Core thread only. Kept until backend_free(): the set of backends is small
 * and fixed by configuration. */
struct origin {
	TAILQ_ENTRY(origin) link;
	struct backend *b;
	char host[MAX_HOST + 1];        /* as in the URL (IPv6 in brackets) */
	char name[MAX_HOST + 1];        /* for the resolver */
	int port;
	struct sockaddr_storage addrs[MAX_ADDRS];
	socklen_t addrlens[MAX_ADDRS];
	int naddrs, cur;                /* cur: the address that last worked */
	TAILQ_HEAD(, bconn) idle, busy;
	int nconns;
	TAILQ_HEAD(, backend_req) queue;
	int nqueued;
};

/* Core thread only (owner), asserted at every entry point. */
struct backend {
	struct event_base *base;
	struct backend_opts opts;
	struct thread_owner owner;
	TAILQ_HEAD(, origin) origins;
	TAILQ_HEAD(, backend_req) reqs;
	size_t npending;
	bool closing;                   /* inside backend_free */
};

struct url {
	char host[MAX_HOST + 1];
	char name[MAX_HOST + 1];
	int port;
	const char *target;             /* path?query, fragment excluded */
	size_t target_len;
};

static void dispatch(struct origin *o);
static void on_read(struct bufferevent *bev, void *arg);
static void on_event(struct bufferevent *bev, short what, void *arg);

static void set_errmsg(struct backend_req *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_errmsg(struct backend_req *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
	va_end(ap);
}

/* strerror() is not thread-safe and the edge thread may call it too. */
static const char *errno_str(int e, char *buf, size_t len)
{
	const char *s = strerror_r(e, buf, len);

	if (s != buf) {
		snprintf(buf, len, "%s", s);
	}
	if (buf[0] >= 'A' && buf[0] <= 'Z' && !(buf[1] >= 'A' && buf[1] <= 'Z')) {
		buf[0] = (char)(buf[0] - 'A' + 'a');
	}
	return buf;
}

static int parse_url(const char *url, struct url *u)
{
	const char *p, *h, *s;
	size_t hlen;
	long port = 80;

	for (s = url; *s; s++) {
		/* Also rules out CR/LF injection into the request line. */
		if ((unsigned char)*s <= ' ' || *s == 0x7f) {
			return RB_EINVAL;
		}
	}
	if (strncasecmp(url, "http://", 7) != 0) {
		return RB_EINVAL;
	}
	h = p = url + 7;
	if (*p == '[') {
		p++;
		while (*p && *p != ']') {
			if (!(isdigit((unsigned char)*p) || strchr("abcdefABCDEF:.", *p))) {
				return RB_EINVAL;
			}
			p++;
		}
		if (*p != ']' || p == h + 1) {
			return RB_EINVAL;
		}
		p++;
		hlen = (size_t)(p - h);
		if (hlen > MAX_HOST) {
			return RB_EINVAL;
		}
		memcpy(u->host, h, hlen);
		u->host[hlen] = '\0';
		memcpy(u->name, h + 1, hlen - 2);
		u->name[hlen - 2] = '\0';
	} else {
		while (*p && !strchr(":/?#", *p)) {
			if (!(isdigit((unsigned char)*p) || (*p >= 'a' && *p <= 'z') ||
			      (*p >= 'A' && *p <= 'Z') || strchr("-._", *p))) {
				return RB_EINVAL;
			}
			p++;
		}
		hlen = (size_t)(p - h);
		if (hlen == 0 || hlen > MAX_HOST) {
			return RB_EINVAL;
		}
		memcpy(u->host, h, hlen);
		u->host[hlen] = '\0';
		memcpy(u->name, u->host, hlen + 1);
	}
	if (*p == ':') {
		size_t n = strspn(++p, "0123456789");
		uint64_t v;

		if (rb_parse_dec(p, n, 65535, &v) != RB_OK || v < 1) {
			return RB_EINVAL;
		}
		port = (long)v;
		p += n;
	}
	if (*p && !strchr("/?#", *p)) {
		return RB_EINVAL;
	}
	u->port = (int)port;
	u->target = p;
	s = strchr(p, '#');
	u->target_len = s ? (size_t)(s - p) : strlen(p);
	return RB_OK;
}

/* Headers the client sets itself; a caller's copy would corrupt framing. */
static bool reserved_header(const char *name)
{
	return !strcasecmp(name, "Host") || !strcasecmp(name, "Content-Length") ||
	       !strcasecmp(name, "Connection") ||
	       !strcasecmp(name, "Transfer-Encoding");
}

static int build_wire(struct evbuffer *w, const char *method, const struct url *u,
		      const struct backend_header *hdrs, size_t nhdrs,
		      const void *body, size_t body_len)
{
	const char *slash = (u->target_len == 0 || u->target[0] != '/') ? "/" : "";
	bool want_len = body_len > 0 || !strcmp(method, "POST") ||
			!strcmp(method, "PUT") || !strcmp(method, "PATCH");
	size_t i;

	if (evbuffer_add_printf(w, "%s %s%.*s HTTP/1.1\r\nHost: %s:%d\r\n", method,
				slash, (int)u->target_len, u->target, u->host, u->port) < 0) {
		return RB_ENOMEM;
	}
	if (want_len && evbuffer_add_printf(w, "Content-Length: %zu\r\n", body_len) < 0) {
		return RB_ENOMEM;
	}
	for (i = 0; i < nhdrs; i++) {
		if (reserved_header(hdrs[i].name)) {
			continue;
		}
		if (evbuffer_add_printf(w, "%s: %s\r\n", hdrs[i].name, hdrs[i].value) < 0) {
			return RB_ENOMEM;
		}
	}
	if (evbuffer_add(w, "\r\n", 2) || (body_len && evbuffer_add(w, body, body_len))) {
		return RB_ENOMEM;
	}
	return RB_OK;
}

static int check_headers(const struct backend_header *hdrs, size_t nhdrs)
{
	size_t i;

	for (i = 0; i < nhdrs; i++) {
		if (!hdrs[i].name || !hdrs[i].value || !http_is_token(hdrs[i].name) ||
		    strpbrk(hdrs[i].value, "\r\n")) {
			return RB_EINVAL;
		}
	}
	return RB_OK;
}

/* ---- requests ---- */

static void req_free(struct backend_req *r)
{
	if (!r) {
		return;
	}
	if (r->timer) {
		event_free(r->timer);
	}
	if (r->wire) {
		evbuffer_free(r->wire);
	}
	http_resp_clear(&r->resp);
	free(r);
}

/* The request no longer counts as pending; its timer will not fire. */
static void req_unlink(struct backend_req *r)
{
	struct backend *b = r->b;

	TAILQ_REMOVE(&b->reqs, r, all);
	b->npending--;
	evtimer_del(r->timer);
}

static void dequeue(struct backend_req *r)
{
	assert(r->where == W_QUEUED);
	TAILQ_REMOVE(&r->o->queue, r, qlink);
	r->o->nqueued--;
	r->where = W_NONE;
}

/* Runs the callback and frees the request. Must be the caller's last action. */
static void deliver(struct backend_req *r, int err)
{
	struct backend_response resp;

	assert(r->where != W_QUEUED && r->where != W_CONN);
	req_unlink(r);
	r->where = W_DONE;
	if (err) {
		/* Never hand out a partial body or the headers of a broken response. */
		http_resp_reset(&r->resp);
	}
	resp.err = err;
	resp.errmsg = err ? r->errmsg : NULL;
	resp.status = err ? 0 : r->resp.status;
	resp.body = r->resp.body;
	resp.priv = r;
	r->cb(&resp, r->arg);
	req_free(r);
}

/* For errors found where a callback must not run (backend_request, dispatch). */
static void fail_async(struct backend_req *r, int err)
{
	struct timeval now = { 0, 0 };

	r->where = W_FAILING;
	r->fail_err = err;
	evtimer_add(r->timer, &now);
}

/* ---- connections ---- */

/* Detaches (but does not complete) the request the connection carried. */
static void conn_close(struct bconn *c)
{
	struct origin *o = c->o;

	if (c->idle) {
		TAILQ_REMOVE(&o->idle, c, link);
	} else {
		TAILQ_REMOVE(&o->busy, c, link);
	}
	o->nconns--;
	if (c->req) {
		c->req->conn = NULL;
		c->req->where = W_NONE;
		c->req = NULL;
	}
	if (c->connev) {
		event_free(c->connev);
	}
	if (c->bev) {
		bufferevent_free(c->bev);
	} else if (c->fd >= 0) {
		close(c->fd);
	}
	free(c);
}

static void conn_fail(struct bconn *c, int err)
{
	struct backend_req *r = c->req;
	struct origin *o = c->o;

	conn_close(c);
	dispatch(o);
	deliver(r, err);
}

static void conn_attach(struct bconn *c, struct backend_req *r)
{
	c->req = r;
	r->conn = c;
	r->where = W_CONN;
	r->rx_any = false;
	http_resp_reset(&r->resp);
}

/* Hands the request bytes to the connected socket; false on failure (errmsg set). */
static bool conn_write(struct bconn *c)
{
	struct backend_req *r = c->req;
	size_t len = evbuffer_get_length(r->wire);

	if (bufferevent_write(c->bev, evbuffer_pullup(r->wire, -1), len) < 0) {
		set_errmsg(r, "out of memory writing the request");
		return false;
	}
	return true;
}

static void on_connect(evutil_socket_t fd, short what, void *arg);

/* Starts a non-blocking connect to the next untried address: 0 when under
 * way, else the errno of the last address tried (e when none was left). */
static int conn_connect(struct bconn *c, int e)
{
	struct origin *o = c->o;
	struct timeval tv = tv_from_seconds(o->b->opts.connect_timeout_ms / 1e3);

	while (c->tries < o->naddrs) {
		int i = (o->cur + c->tries) % o->naddrs;
		evutil_socket_t fd;

		c->tries++;
		fd = socket(o->addrs[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			e = errno;
			continue;
		}
		if (connect(fd, (struct sockaddr *)&o->addrs[i], o->addrlens[i]) < 0 &&
		    errno != EINPROGRESS) {
			e = errno;
			close(fd);
			continue;
		}
		c->connev = event_new(o->b->base, fd, EV_WRITE, on_connect, c);
		if (!c->connev || event_add(c->connev, &tv) < 0) {
			if (c->connev) {
				event_free(c->connev);
				c->connev = NULL;
			}
			close(fd);
			return ENOMEM;
		}
		c->fd = fd;
		c->addr_i = i;
		return 0;
	}
	return e;
}

static void connect_errmsg(struct bconn *c, int e)
{
	char buf[96];

	set_errmsg(c->req, "connect to %s:%d failed: %s", c->o->host, c->o->port,
		   errno_str(e, buf, sizeof(buf)));
}

/* Opens a connection for r, which is not queued; a failure is asynchronous. */
static void conn_open(struct origin *o, struct backend_req *r)
{
	struct bconn *c = calloc(1, sizeof(*c));
	int e;

	assert(o->nconns < o->b->opts.max_connections);
	if (!c) {
		set_errmsg(r, "out of memory opening a connection");
		fail_async(r, RB_EIO);
		return;
	}
	c->o = o;
	c->fd = -1;
	TAILQ_INSERT_TAIL(&o->busy, c, link);
	o->nconns++;
	conn_attach(c, r);
	e = conn_connect(c, EADDRNOTAVAIL);
	if (e) {
		connect_errmsg(c, e);
		conn_close(c);
		fail_async(r, RB_EIO);
	}
}

static void on_connect(evutil_socket_t fd, short what, void *arg)
{
	struct bconn *c = arg;
	struct origin *o = c->o;
	struct backend_req *r = c->req;
	socklen_t len = sizeof(int);
	int e = 0, one = 1;

	event_free(c->connev);
	c->connev = NULL;
	if (what & EV_TIMEOUT) {
		set_errmsg(r, "connect to %s:%d timed out after %d ms", o->host,
			   o->port, o->b->opts.connect_timeout_ms);
		conn_fail(c, RB_ETIMEDOUT);
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) < 0) {
		e = errno;
	}
	if (e) {
		close(c->fd);
		c->fd = -1;
		/* "localhost" may name ::1 and 127.0.0.1 with the backend on one. */
		e = conn_connect(c, e);
		if (!e) {
			return;
		}
		connect_errmsg(c, e);
		conn_fail(c, RB_EIO);
		return;
	}
	o->cur = c->addr_i;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->bev = bufferevent_socket_new(o->b->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		set_errmsg(r, "out of memory creating a bufferevent");
		conn_fail(c, RB_EIO);
		return;
	}
	c->fd = -1;
	bufferevent_setcb(c->bev, on_read, NULL, on_event, c);
	if (bufferevent_enable(c->bev, EV_READ) < 0) {
		set_errmsg(r, "cannot watch the connection");
		conn_fail(c, RB_EIO);
		return;
	}
	if (!conn_write(c)) {
		conn_fail(c, RB_EIO);
	}
}

/* Idle connections keep reading so that a close by the backend is noticed at
 * once (and the socket freed) instead of on the next request. */
static void conn_idle(struct bconn *c)
{
	struct origin *o = c->o;
	struct timeval tv = { IDLE_TIMEOUT_S, 0 };

	TAILQ_REMOVE(&o->busy, c, link);
	/* Most recently used first: the least likely to be stale, and the
	 * others get a chance to expire when the load drops. */
	TAILQ_INSERT_HEAD(&o->idle, c, link);
	c->idle = true;
	c->reused = true;
	bufferevent_set_timeouts(c->bev, &tv, NULL);
}

static void conn_send(struct bconn *c, struct backend_req *r)
{
	struct origin *o = c->o;

	TAILQ_REMOVE(&o->idle, c, link);
	TAILQ_INSERT_TAIL(&o->busy, c, link);
	c->idle = false;
	bufferevent_set_timeouts(c->bev, NULL, NULL);
	conn_attach(c, r);
	if (!conn_write(c)) {
		conn_close(c);
		fail_async(r, RB_EIO);
	}
}

static void dispatch(struct origin *o)
{
	struct backend_req *r;

	while ((r = TAILQ_FIRST(&o->queue)) != NULL) {
		struct bconn *c = TAILQ_FIRST(&o->idle);

		if (!c && o->nconns >= o->b->opts.max_connections) {
			break;
		}
		dequeue(r);
		if (c) {
			conn_send(c, r);
		} else {
			conn_open(o, r);
		}
	}
}

/* The response on c is complete. */
static void conn_done(struct bconn *c)
{
	struct backend_req *r = c->req;
	struct origin *o = c->o;

	c->req = NULL;
	r->conn = NULL;
	r->where = W_NONE;
	/* Leftover bytes either way mean the stream is out of step with us. */
	if (http_resp_keepalive(&r->resp) &&
	    !evbuffer_get_length(bufferevent_get_input(c->bev)) &&
	    !evbuffer_get_length(bufferevent_get_output(c->bev))) {
		conn_idle(c);
	} else {
		conn_close(c);
	}
	dispatch(o);
	deliver(r, RB_OK);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct bconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	struct backend_req *r = c->req;
	int rc;

	if (!r) {
		/* Bytes nobody asked for: the connection cannot be trusted. */
		conn_close(c);
		return;
	}
	if (evbuffer_get_length(in)) {
		r->rx_any = true;
	}
	rc = http_resp_parse(&r->resp, in);
	if (rc == RB_OK) {
		conn_done(c);
	} else if (rc != RB_EAGAIN) {
		set_errmsg(r, "%s", r->resp.errmsg);
		conn_fail(c, rc);
	}
}

/* The backend closed a reused connection before answering: it most likely
 * timed it out while idle, so the request never reached it. */
static void retry(struct bconn *c)
{
	struct backend_req *r = c->req;
	struct origin *o = c->o;

	conn_close(c);
	r->retried = true;
	conn_open(o, r);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct bconn *c = arg;
	struct backend_req *r = c->req;
	int e = EVUTIL_SOCKET_ERROR();
	char buf[96];

	(void)bev;
	if (!r) {
		/* Idle: closed by the backend, or IDLE_TIMEOUT_S passed. */
		conn_close(c);
		return;
	}
	/* Completes a body delimited by the end of the connection, else fails. */
	if ((what & BEV_EVENT_EOF) && http_resp_eof(&r->resp) == RB_OK) {
		conn_done(c);
		return;
	}
	if (c->reused && !r->rx_any && !r->retried) {
		retry(c);
		return;
	}
	if (what & BEV_EVENT_ERROR) {
		set_errmsg(r, "connection to %s:%d failed: %s", c->o->host, c->o->port,
			   errno_str(e, buf, sizeof(buf)));
	} else if (r->rx_any) {
		set_errmsg(r, "connection closed before the end of the response");
	} else {
		set_errmsg(r, "connection closed before any response");
	}
	conn_fail(c, RB_EIO);
}

/* The request deadline, or a deferred failure. */
static void on_req_timer(evutil_socket_t fd, short what, void *arg)
{
	struct backend_req *r = arg;
	struct origin *o = r->o;

	(void)fd;
	(void)what;
	if (r->where == W_FAILING) {
		r->where = W_NONE;
		deliver(r, r->fail_err);
		return;
	}
	set_errmsg(r, "timed out after %d ms", r->b->opts.request_timeout_ms);
	if (r->where == W_QUEUED) {
		dequeue(r);
	} else if (r->where == W_CONN) {
		/* A late response would be read as the answer to the next request. */
		conn_close(r->conn);
		dispatch(o);
	}
	deliver(r, RB_ETIMEDOUT);
}

/* ---- origins ---- */

/*
 * Resolution is synchronous, once per origin: instant for a numeric address,
 * a lookup in /etc/hosts or DNS for a name. A failure is not cached, so the
 * next request tries again.
 */
static int origin_resolve(struct origin *o, struct backend_req *r)
{
	struct evutil_addrinfo hints, *res = NULL, *ai;
	char port[8];
	int rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = EVUTIL_AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", o->port);
	rc = evutil_getaddrinfo(o->name, port, &hints, &res);
	if (rc) {
		set_errmsg(r, "cannot resolve %s: %s", o->name, evutil_gai_strerror(rc));
		return RB_EIO;
	}
	for (ai = res; ai && o->naddrs < MAX_ADDRS; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(o->addrs[0])) {
			continue;
		}
		memcpy(&o->addrs[o->naddrs], ai->ai_addr, ai->ai_addrlen);
		o->addrlens[o->naddrs++] = (socklen_t)ai->ai_addrlen;
	}
	evutil_freeaddrinfo(res);
	if (o->naddrs == 0) {
		set_errmsg(r, "cannot resolve %s: no IPv4 or IPv6 address", o->name);
		return RB_EIO;
	}
	return RB_OK;
}

static struct origin *origin_get(struct backend *b, const struct url *u)
{
	struct origin *o;

	TAILQ_FOREACH(o, &b->origins, link) {
		if (o->port == u->port && !strcasecmp(o->name, u->name)) {
			return o;
		}
	}
	o = calloc(1, sizeof(*o));
	if (!o) {
		return NULL;
	}
	o->b = b;
	memcpy(o->host, u->host, sizeof(o->host));
	memcpy(o->name, u->name, sizeof(o->name));
	o->port = u->port;
	TAILQ_INIT(&o->idle);
	TAILQ_INIT(&o->busy);
	TAILQ_INIT(&o->queue);
	TAILQ_INSERT_TAIL(&b->origins, o, link);
	return o;
}

/* ---- public ---- */

struct backend *backend_new(struct event_base *base, const struct backend_opts *opts)
{
	struct backend *b;

	if (!base || !opts || opts->max_connections < 1 || opts->max_queue < 0 ||
	    opts->connect_timeout_ms <= 0 || opts->request_timeout_ms <= 0) {
		return NULL;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		return NULL;
	}
	b->base = base;
	b->opts = *opts;
	thread_owner_set(&b->owner);
	TAILQ_INIT(&b->origins);
	TAILQ_INIT(&b->reqs);
	return b;
}

void backend_free(struct backend *b)
{
	struct origin *o;
	struct backend_req *r;
	struct bconn *c;

	if (!b) {
		return;
	}
	ASSERT_CORE(b);
	b->closing = true;
	/* Detach every request from its connection and queue first... */
	TAILQ_FOREACH(o, &b->origins, link) {
		while ((c = TAILQ_FIRST(&o->idle)) != NULL) {
			conn_close(c);
		}
		while ((c = TAILQ_FIRST(&o->busy)) != NULL) {
			conn_close(c);
		}
	}
	TAILQ_FOREACH(r, &b->reqs, all) {
		if (r->where == W_QUEUED) {
			dequeue(r);
		}
		r->where = W_NONE;
	}
	while ((o = TAILQ_FIRST(&b->origins)) != NULL) {
		TAILQ_REMOVE(&b->origins, o, link);
		free(o);
	}
	/* ...then complete each with RB_ECLOSED, so that its owner can free
	 * what it passed as the callback argument. */
	while ((r = TAILQ_FIRST(&b->reqs)) != NULL) {
		set_errmsg(r, "backend client shut down");
		deliver(r, RB_ECLOSED);
	}
	free(b);
}

struct backend_req *backend_request(struct backend *b, const char *method,
				    const char *url,
				    const struct backend_header *hdrs, size_t nhdrs,
				    const void *body, size_t body_len,
				    backend_cb cb, void *arg, int *err)
{
	struct backend_req *r = NULL;
	struct origin *o;
	struct timeval tv;
	struct url u;
	int e;

	if (!b || !method || !url || !cb || (nhdrs && !hdrs) || (body_len && !body) ||
	    !http_is_token(method) || strlen(method) > 32) {
		e = RB_EINVAL;
		goto fail;
	}
	ASSERT_CORE(b);
	if (b->closing) {
		if (err) {
			*err = RB_ECLOSED;
		}
		return NULL;
	}
	e = parse_url(url, &u);
	if (!e) {
		e = check_headers(hdrs, nhdrs);
	}
	if (e) {
		goto fail;
	}
	o = origin_get(b, &u);
	if (!o) {
		e = RB_ENOMEM;
		goto fail;
	}
	if ((!TAILQ_EMPTY(&o->queue) ||
	     (TAILQ_EMPTY(&o->idle) && o->nconns >= b->opts.max_connections)) &&
	    o->nqueued >= b->opts.max_queue) {
		e = RB_ELIMIT;
		goto fail;
	}
	e = RB_ENOMEM;
	r = calloc(1, sizeof(*r));
	if (!r) {
		goto fail;
	}
	r->timer = evtimer_new(b->base, on_req_timer, r);
	r->wire = evbuffer_new();
	if (!r->timer || !r->wire ||
	    http_resp_init(&r->resp, !strcmp(method, "HEAD"),
			   b->opts.max_response_bytes) != RB_OK ||
	    build_wire(r->wire, method, &u, hdrs, nhdrs, body, body_len)) {
		goto fail;
	}
	tv = tv_from_seconds(b->opts.request_timeout_ms / 1e3);
	if (evtimer_add(r->timer, &tv) < 0) {
		goto fail;
	}
	r->b = b;
	r->o = o;
	r->cb = cb;
	r->arg = arg;
	TAILQ_INSERT_TAIL(&b->reqs, r, all);
	b->npending++;
	if (o->naddrs == 0 && origin_resolve(o, r) != RB_OK) {
		fail_async(r, RB_EIO);
		return r;
	}
	TAILQ_INSERT_TAIL(&o->queue, r, qlink);
	o->nqueued++;
	r->where = W_QUEUED;
	dispatch(o);
	return r;
fail:
	req_free(r);
	if (err) {
		*err = e;
	}
	return NULL;
}

void backend_cancel(struct backend_req *r)
{
	struct origin *o;

	if (!r) {
		return;
	}
	ASSERT_CORE(r->b);
	if (r->where == W_DONE) {
		return;
	}
	o = r->o;
	if (r->where == W_QUEUED) {
		dequeue(r);
	} else if (r->where == W_CONN) {
		conn_close(r->conn);
		dispatch(o);
	}
	req_unlink(r);
	req_free(r);
}

const char *backend_response_header(const struct backend_response *resp,
				    const char *name)
{
	const struct backend_req *r;

	if (!resp || !resp->priv || !name) {
		return NULL;
	}
	r = resp->priv;
	return http_resp_header(&r->resp, name);
}

size_t backend_pending(const struct backend *b)
{
	return b ? b->npending : 0;
}
