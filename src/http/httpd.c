#include "src/http/httpd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <jansson.h>

#include "protocol/rb.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/net.h"
#include "src/base/timeutil.h"

#define LINGER_S 2 /* after an error answer: wait this long for the client's FIN */

static const char CONTINUE[] = "HTTP/1.1 100 Continue\r\n\r\n";

enum waiting { WAIT_NONE, WAIT_HEAD, WAIT_BODY, WAIT_LINGER };

struct hconn {
	struct hconn *prev, *next;
	struct httpd *s;
	struct bufferevent *bev;
	struct event *deadline; /* for what `waiting` says */
	struct httpd_req *req;  /* being handled; reading is paused meanwhile */
	enum waiting waiting;
	bool keepalive;         /* of the request being answered */
	bool http10;            /* it is HTTP/1.0: keep-alive must be said */
	bool head_only;         /* it is HEAD: the answer has no body */
	bool continued;         /* 100 Continue sent for the request being received */
	bool close_after_write;
	bool failed;            /* answered an error before dispatch: linger, then close */
	bool in_dispatch;
	char peer[64];
};

struct httpd {
	struct event_base *base;
	size_t max_body;
	struct timeval idle, body;
	httpd_handler handler;
	void *arg;
	struct net_listener *lst;
	struct hconn *conns;
	size_t pending;
	bool closing;
};

static void process(struct hconn *c);

static void conn_free(struct hconn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->s->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	if (c->req) {
		c->req->priv = NULL; /* orphan: its reply will be discarded */
		c->s->pending--;
	}
	if (c->deadline)
		event_free(c->deadline);
	bufferevent_free(c->bev);
	free(c);
}

static void req_free(struct httpd_req *r)
{
	http_head_free(&r->head);
	kv_free(&r->args);
	free((char *)r->body);
	free(r);
}

static void write_response(struct hconn *c, int status, const char *ctype, const char *extra,
			   const char *body, size_t len, bool keepalive)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
			    "Content-Length: %zu\r\n%s%s\r\n", status, http_reason(status), ctype, len,
			    extra ? extra : "",
			    !keepalive ? "Connection: close\r\n" :
			    c->http10 ? "Connection: keep-alive\r\n" : "");
	/* HEAD: the headers a GET would get, Content-Length included. */
	if (!c->head_only)
		evbuffer_add(out, body, len);
	if (!keepalive)
		c->close_after_write = true;
}

static void wait_for(struct hconn *c, enum waiting what, const struct timeval *tv)
{
	c->waiting = what;
	evtimer_add(c->deadline, tv);
}

static void stop_waiting(struct hconn *c)
{
	c->waiting = WAIT_NONE;
	evtimer_del(c->deadline);
}

/* {"status":1,"msg":msg} with msg escaped by jansson: malloc'd, or NULL
 * (out of memory, or msg not UTF-8). */
static char *error_json(const char *msg)
{
	json_t *j = json_pack("{s:i, s:s}", "status", 1, "msg", msg);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	json_decref(j);
	return s;
}

static const char NO_ERROR_JSON[] = "{\"status\":1,\"msg\":\"error\"}";

/* Answer an error before a request reached a handler, then close. */
static void fail_conn(struct hconn *c, int status, const char *msg)
{
	char *body = error_json(msg);

	stop_waiting(c);
	write_response(c, status, "application/json", NULL, body ? body : NO_ERROR_JSON,
		       body ? strlen(body) : sizeof(NO_ERROR_JSON) - 1, false);
	free(body);
	c->failed = true;
	bufferevent_disable(c->bev, EV_READ);
}

static bool wants_keepalive(const struct http_head *h)
{
	const char *conn = kv_get(&h->headers, "Connection");
	if (h->minor == 0)
		return conn && header_has_token(conn, "keep-alive");
	return !(conn && header_has_token(conn, "close"));
}

/* RFC 9110 10.1.1: an HTTP/1.0 client's expectation is ignored. */
static bool wants_continue(const struct http_head *h)
{
	const char *e = kv_get(&h->headers, "Expect");
	return h->minor >= 1 && e && strcasecmp(e, "100-continue") == 0;
}

/* NULL if the body's framing is acceptable, else the error to answer. */
static const char *framing_error(enum http_body f, uint64_t len, size_t max, int *status)
{
	*status = 400;
	switch (f) {
	case HTTP_BODY_NONE:
	case HTTP_BODY_LENGTH:
		break;
	case HTTP_BODY_CHUNKED:
		*status = 411;
		return "chunked request bodies are not supported; send Content-Length";
	case HTTP_BODY_BAD_LENGTH:
		return "bad Content-Length";
	case HTTP_BODY_CONFLICT:
		return "conflicting Content-Length";
	case HTTP_BODY_AMBIGUOUS:
		return "Content-Length with Transfer-Encoding";
	case HTTP_BODY_BAD_CODING:
		return "unsupported Transfer-Encoding";
	}
	if (len > max) {
		*status = 413;
		return "request body too large";
	}
	return NULL;
}

/* Parse and dispatch at most one buffered request. Returns true if one was
 * dispatched (the caller may loop), false if more input is needed. */
static bool try_request(struct hconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t avail = evbuffer_get_length(in);
	size_t look = avail < HTTP_MAX_HEAD ? avail : HTTP_MAX_HEAD;
	const char *raw = look ? (const char *)evbuffer_pullup(in, (ev_ssize_t)look) : NULL;
	size_t head_len = raw ? http_head_len(raw, look) : 0;

	c->head_only = false;
	c->http10 = false;
	if (!head_len) {
		if (avail >= HTTP_MAX_HEAD) {
			metric_inc(M_HEAD_BAD);
			fail_conn(c, 431, "request head too large");
		} else if (avail && c->waiting == WAIT_NONE) {
			/* The door's head_timeout only covers a connection's
			 * first head: later ones get request_body_timeout. */
			wait_for(c, WAIT_HEAD, &c->s->body);
		}
		return false;
	}
	struct httpd_req *r = calloc(1, sizeof(*r));
	if (!r) {
		fail_conn(c, 500, "out of memory");
		return false;
	}
	if (http_head_parse(raw, head_len, &r->head) != RB_OK) {
		free(r);
		metric_inc(M_HEAD_BAD);
		fail_conn(c, 400, "malformed request head");
		return false;
	}
	c->head_only = strcmp(r->head.method, "HEAD") == 0;
	uint64_t len;
	int status;
	enum http_body framing = http_body_framing(&r->head, &len);
	const char *bad = framing_error(framing, len, c->s->max_body, &status);
	if (bad) {
		/* Never guess the framing: what we skipped or took for a body
		 * would be a request smuggled past whoever checked this one. */
		if (status == 400)
			metric_inc(M_HEAD_BAD);
		req_free(r);
		fail_conn(c, status, bad);
		return false;
	}
	size_t body_len = (size_t)len;
	if (avail - head_len < body_len) {
		if (c->waiting != WAIT_BODY)
			wait_for(c, WAIT_BODY, &c->s->body); /* from the end of the head */
		if (!c->continued && wants_continue(&r->head)) {
			evbuffer_add(bufferevent_get_output(c->bev), CONTINUE, sizeof(CONTINUE) - 1);
			c->continued = true;
		}
		req_free(r); /* parse again when the body is here: heads are small */
		return false;
	}
	stop_waiting(c);
	c->continued = false;
	evbuffer_drain(in, head_len);
	char *body = malloc(body_len + 1);
	if (!body) {
		req_free(r);
		fail_conn(c, 500, "out of memory");
		return false;
	}
	evbuffer_remove(in, body, body_len);
	body[body_len] = 0;
	r->body = body;
	r->body_len = body_len;
	query_parse(r->head.query, &r->args);
	snprintf(r->peer, sizeof(r->peer), "%s", c->peer);
	r->priv = c;
	c->req = r;
	c->keepalive = wants_keepalive(&r->head) && !c->s->closing;
	c->http10 = r->head.minor == 0;
	c->s->pending++;
	/* One request at a time: pause reading (and its idle timeout) until
	 * the answer is written. */
	bufferevent_disable(c->bev, EV_READ);
	c->in_dispatch = true;
	c->s->handler(r, c->s->arg);
	c->in_dispatch = false;
	return c->req == NULL;
}

static void process(struct hconn *c)
{
	while (!c->req && !c->close_after_write && try_request(c))
		;
	if (!c->req && !c->close_after_write)
		bufferevent_enable(c->bev, EV_READ);
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct hconn *c = arg;
	if (c->waiting == WAIT_LINGER) {
		struct evbuffer *in = bufferevent_get_input(bev);
		evbuffer_drain(in, evbuffer_get_length(in));
		return;
	}
	process(c);
}

/* The error answer is out. Closing now, with the rest of the request still
 * unread, would send a reset that can destroy the answer before the client
 * reads it: send FIN, discard input until the client closes or LINGER_S. */
static void linger(struct hconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct timeval tv = { LINGER_S, 0 };

	shutdown(bufferevent_getfd(c->bev), SHUT_WR);
	evbuffer_drain(in, evbuffer_get_length(in));
	wait_for(c, WAIT_LINGER, &tv);
	bufferevent_enable(c->bev, EV_READ);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	struct hconn *c = arg;

	if (c->waiting == WAIT_LINGER) {
		conn_free(c);
		return;
	}
	bool body = c->waiting == WAIT_BODY;
	metric_inc(M_HTTP_TIMEOUTS);
	log_debug("httpd: %s: request %s not complete within request_body_timeout", c->peer,
		  body ? "body" : "head");
	fail_conn(c, 408, body ? "request body not received in time"
			       : "request head not received in time");
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct hconn *c = arg;
	if (!c->close_after_write || c->req || c->waiting == WAIT_LINGER)
		return;
	if (c->failed && !c->s->closing)
		linger(c);
	else
		conn_free(c);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	/* EOF, error or idle timeout: nothing more will come from this client. */
	conn_free(arg);
}

void httpd_reply(struct httpd_req *r, int status, const char *ctype,
		 const char *body, size_t len)
{
	httpd_reply_with(r, status, NULL, ctype, body, len);
}

void httpd_reply_with(struct httpd_req *r, int status, const char *extra, const char *ctype,
		      const char *body, size_t len)
{
	struct hconn *c = r->priv;

	if (c) {
		c->s->pending--;
		write_response(c, status, ctype ? ctype : "application/json", extra, body, len,
			       c->keepalive && !c->s->closing);
		c->req = NULL;
		if (!c->in_dispatch)
			process(c);
	}
	req_free(r);
}

void httpd_reply_error(struct httpd_req *r, int http_status, const char *msg)
{
	/* msg is ours, but may quote a parameter: jansson escapes it. */
	char *body = error_json(msg);

	if (body)
		httpd_reply(r, http_status, NULL, body, strlen(body));
	else
		httpd_reply(r, http_status, NULL, NO_ERROR_JSON, sizeof(NO_ERROR_JSON) - 1);
	free(body);
}

void httpd_adopt(struct httpd *s, int fd)
{
	struct hconn *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return;
	}
	evutil_make_socket_nonblocking(fd);
	c->s = s;
	c->bev = bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (!c->bev) {
		close(fd);
		free(c);
		return;
	}
	net_peer_name(fd, c->peer, sizeof(c->peer));
	c->next = s->conns;
	if (s->conns)
		s->conns->prev = c;
	s->conns = c;
	c->deadline = evtimer_new(s->base, on_deadline, c);
	if (!c->deadline) {
		conn_free(c);
		return;
	}
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	/* The write timeout runs only while an answer waits for a client
	 * that does not read. */
	bufferevent_set_timeouts(c->bev, &s->idle, &s->idle);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* The door peeked: the request is most likely already buffered. */
	process(c);
}

static void on_accept(void *arg, int fd)
{
	net_nodelay(fd);
	httpd_adopt(arg, fd);
}

struct httpd *httpd_new(struct event_base *base, size_t max_body,
			double idle_timeout, double body_timeout, httpd_handler h, void *arg)
{
	struct httpd *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base = base;
	s->max_body = max_body;
	s->idle = tv_from_seconds(idle_timeout);
	s->body = tv_from_seconds(body_timeout);
	s->handler = h;
	s->arg = arg;
	return s;
}

int httpd_listen(struct httpd *s, const char *bind, int port)
{
	s->lst = net_listen(s->base, "rest api", bind, port, 1024, on_accept, s);
	return s->lst ? RB_OK : RB_EIO;
}

void httpd_close(struct httpd *s)
{
	net_listener_free(s->lst);
	s->lst = NULL;
	s->closing = true;
	for (struct hconn *c = s->conns, *next; c; c = next) {
		next = c->next;
		if (c->req)
			continue; /* answered later, then closed */
		if (evbuffer_get_length(bufferevent_get_output(c->bev)))
			c->close_after_write = true;
		else
			conn_free(c);
	}
}

void httpd_free(struct httpd *s)
{
	if (!s)
		return;
	net_listener_free(s->lst);
	while (s->conns)
		conn_free(s->conns);
	free(s);
}

size_t httpd_pending(const struct httpd *s)
{
	return s->pending;
}
