#include "src/httpd.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "protocol/rb.h"
#include "src/log.h"
#include "src/net.h"

#define MAX_HEAD 16384

struct hconn {
	struct hconn *prev, *next;
	struct httpd *s;
	struct bufferevent *bev;
	struct httpd_req *req;  /* being handled; reading is paused meanwhile */
	bool keepalive;         /* of the request being handled */
	bool close_after_write;
	bool in_dispatch;
	char peer[64];
};

struct httpd {
	struct event_base *base;
	size_t max_body;
	struct timeval idle;
	httpd_handler handler;
	void *arg;
	struct evconnlistener *lst;
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

static const char *status_text(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Unknown";
}

static void write_response(struct hconn *c, int status, const char *ctype,
			   const char *body, size_t len, bool keepalive)
{
	struct evbuffer *out = bufferevent_get_output(c->bev);
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
			    "Content-Length: %zu\r\n%s\r\n", status, status_text(status),
			    ctype, len, keepalive ? "" : "Connection: close\r\n");
	evbuffer_add(out, body, len);
	if (!keepalive)
		c->close_after_write = true;
}

/* Answer an error before a request reached a handler, then close. */
static void fail_conn(struct hconn *c, int status, const char *msg)
{
	char body[160];
	int n = snprintf(body, sizeof(body), "{\"status\":1,\"msg\":\"%s\"}", msg);
	write_response(c, status, "application/json", body, (size_t)n, false);
	bufferevent_disable(c->bev, EV_READ);
}

static bool wants_keepalive(const struct http_head *h)
{
	const char *conn = kv_get(&h->headers, "Connection");
	if (h->minor == 0)
		return conn && header_has_token(conn, "keep-alive");
	return !(conn && header_has_token(conn, "close"));
}

/* Parse and dispatch at most one buffered request. Returns true if one was
 * dispatched (the caller may loop), false if more input is needed. */
static bool try_request(struct hconn *c)
{
	struct evbuffer *in = bufferevent_get_input(c->bev);
	struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
	size_t avail = evbuffer_get_length(in);

	if (p.pos < 0) {
		if (avail > MAX_HEAD)
			fail_conn(c, 431, "request head too large");
		return false;
	}
	size_t head_len = (size_t)p.pos + 4;
	if (head_len > MAX_HEAD) {
		fail_conn(c, 431, "request head too large");
		return false;
	}
	struct httpd_req *r = calloc(1, sizeof(*r));
	if (!r) {
		fail_conn(c, 500, "out of memory");
		return false;
	}
	const char *raw = (const char *)evbuffer_pullup(in, (ev_ssize_t)head_len);
	if (http_head_parse(raw, head_len, &r->head) != RB_OK) {
		free(r);
		fail_conn(c, 400, "malformed request head");
		return false;
	}
	if (kv_get(&r->head.headers, "Transfer-Encoding")) {
		req_free(r);
		fail_conn(c, 411, "chunked request bodies are not supported; send Content-Length");
		return false;
	}
	const char *cl = kv_get(&r->head.headers, "Content-Length");
	size_t body_len = 0;
	if (cl) {
		char *end;
		errno = 0;
		unsigned long long v = strtoull(cl, &end, 10);
		if (errno || end == cl || *end || cl[0] == '-') {
			req_free(r);
			fail_conn(c, 400, "bad Content-Length");
			return false;
		}
		if (v > c->s->max_body) {
			req_free(r);
			fail_conn(c, 413, "request body too large");
			return false;
		}
		body_len = (size_t)v;
	}
	if (avail < head_len + body_len) {
		req_free(r); /* parse again when the body is here: heads are small */
		return false;
	}
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
	process(arg);
}

static void on_write(struct bufferevent *bev, void *arg)
{
	struct hconn *c = arg;
	if (c->close_after_write && !c->req)
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
	struct hconn *c = r->priv;

	if (c) {
		c->s->pending--;
		write_response(c, status, ctype ? ctype : "application/json", body, len,
			       c->keepalive && !c->s->closing);
		c->req = NULL;
		if (!c->in_dispatch)
			process(c);
	}
	req_free(r);
}

void httpd_reply_error(struct httpd_req *r, int http_status, const char *msg)
{
	char body[512];
	size_t j = 0;
	/* msg is ours, but may quote a parameter: escape what JSON needs. */
	j += (size_t)snprintf(body, sizeof(body), "{\"status\":1,\"msg\":\"");
	for (const char *p = msg; *p && j < sizeof(body) - 8; p++) {
		if (*p == '"' || *p == '\\')
			body[j++] = '\\';
		if ((unsigned char)*p < 0x20)
			continue;
		body[j++] = *p;
	}
	j += (size_t)snprintf(body + j, sizeof(body) - j, "\"}");
	httpd_reply(r, http_status, NULL, body, j);
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
	bufferevent_setcb(c->bev, on_read, on_write, on_event, c);
	bufferevent_set_timeouts(c->bev, &s->idle, NULL);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* The door peeked: the request is most likely already buffered. */
	process(c);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	net_nodelay(fd);
	httpd_adopt(arg, fd);
}

struct httpd *httpd_new(struct event_base *base, size_t max_body,
			double idle_timeout, httpd_handler h, void *arg)
{
	struct httpd *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base = base;
	s->max_body = max_body;
	s->idle.tv_sec = (time_t)idle_timeout;
	s->idle.tv_usec = (suseconds_t)((idle_timeout - (double)(time_t)idle_timeout) * 1e6);
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
	if (s->lst) {
		evconnlistener_free(s->lst);
		s->lst = NULL;
	}
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
	if (s->lst)
		evconnlistener_free(s->lst);
	while (s->conns)
		conn_free(s->conns);
	free(s);
}

size_t httpd_pending(const struct httpd *s)
{
	return s->pending;
}
