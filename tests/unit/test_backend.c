/*
 * test_backend.c - the backend HTTP client against real sockets on 127.0.0.1,
 * all on one event_base: an evhttp server for ordinary traffic, a scripted raw
 * TCP server for exact request bytes and hand-made (broken) responses.
 * Waiting is always "run the loop until a condition, with a deadline".
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/listener.h>

#include "protocol/rb.h"
#include "src/http/backend.h"

#define MAX_RECS   32
#define MAX_RAW    16
#define DEADLINE   3000

/* What a client callback saw. */
struct res {
	int called;
	int err;
	int status;
	bool errmsg_null;
	char errmsg[256];
	bool body_null;
	size_t body_len;
	char body[2048];
	char xreply[64];
	const char *hdr_name;
	bool hdr_found;
	char hdr[128];
	int order;
	void (*then)(struct res *);
};

/* What the evhttp server saw. */
struct rec {
	char method[16];
	char uri[256];
	char host[64];
	char xtest[64];
	bool has_clen;
	char clen[16];
	size_t body_len;
	char body[256];
};

/* One scripted answer of the raw server, by request number. */
struct step {
	const char *resp;  /* NULL: answer nothing */
	bool close;        /* close once sent */
	bool trickle;      /* one byte per write */
};

struct rawconn {
	struct bufferevent *bev;
	const char *out;
	size_t left;
	bool close_after;
};

struct fx {
	struct event_base *base;
	struct backend *b;
	struct backend_opts opts;
	int ndone;
	bool expired;

	struct evhttp *http;
	int port;
	int nrec;
	struct rec recs[MAX_RECS];
	struct evhttp_connection *live[MAX_RECS];
	int nlive, total_conns;
	int active, max_active, delayed;
	struct evhttp_request *hung[8];
	int nhung;

	struct evconnlistener *raw_l;
	int raw_port;
	const struct step *steps;
	int nsteps;
	int raw_accepts, raw_nreq, raw_eofs;
	char raw_reqs[MAX_RAW][1024];
	struct rawconn *rawconns[MAX_RAW];
};

static struct fx F;

/* ---- loop helpers ---- */

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	F.expired = true;
}

static bool run_until(bool (*cond)(int), int arg)
{
	struct timeval tv = { DEADLINE / 1000, 0 };
	struct event *dl = evtimer_new(F.base, on_deadline, NULL);

	F.expired = false;
	evtimer_add(dl, &tv);
	while (!cond(arg) && !F.expired) {
		event_base_loop(F.base, EVLOOP_ONCE);
	}
	event_free(dl);
	return cond(arg);
}

static bool done_at_least(int n)
{
	return F.ndone >= n;
}

static bool wait_done(int n)
{
	return run_until(done_at_least, n);
}

static bool raw_eofs_at_least(int n)
{
	return F.raw_eofs >= n;
}

static bool nrec_at_least(int n)
{
	return F.nrec >= n;
}

static bool delayed_zero(int n)
{
	(void)n;
	return F.delayed == 0;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (!d) {
		return -1;
	}
	while ((de = readdir(d)) != NULL) {
		n += de->d_name[0] != '.';
	}
	closedir(d);
	return n;
}

static bool fds_equal(int n)
{
	return count_fds() == n;
}

/* Spin the loop without blocking, for "nothing else happens" checks. */
static void run_idle(void)
{
	int i;

	for (i = 0; i < 5; i++) {
		event_base_loop(F.base, EVLOOP_NONBLOCK);
	}
}

/* ---- client side ---- */

static void on_resp(const struct backend_response *resp, void *arg)
{
	struct res *r = arg;
	const char *v;

	r->called++;
	r->order = ++F.ndone;
	r->err = resp->err;
	r->status = resp->status;
	r->errmsg_null = resp->errmsg == NULL;
	snprintf(r->errmsg, sizeof(r->errmsg), "%s", resp->errmsg ? resp->errmsg : "");
	r->body_null = resp->body == NULL;
	if (resp->body) {
		r->body_len = evbuffer_get_length(resp->body);
		evbuffer_copyout(resp->body, r->body, sizeof(r->body) - 1);
	}
	v = backend_response_header(resp, "x-reply");
	snprintf(r->xreply, sizeof(r->xreply), "%s", v ? v : "");
	if (r->hdr_name) {
		v = backend_response_header(resp, r->hdr_name);
		r->hdr_found = v != NULL;
		snprintf(r->hdr, sizeof(r->hdr), "%s", v ? v : "");
	}
	if (r->then) {
		r->then(r);
	}
}

static struct backend_req *req(const char *method, const char *path,
			       const void *body, size_t len, struct res *r)
{
	char url[256];
	int err = 12345;
	struct backend_req *h;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", F.port, path);
	h = backend_request(F.b, method, url, NULL, 0, body, len, on_resp, r, &err);
	assert_non_null(h);
	assert_int_equal(err, 12345);
	return h;
}

static struct backend_req *raw_req(const char *method, const char *path,
				   const void *body, size_t len, struct res *r)
{
	char url[256];
	struct backend_req *h;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", F.raw_port, path);
	h = backend_request(F.b, method, url, NULL, 0, body, len, on_resp, r, NULL);
	assert_non_null(h);
	return h;
}

/* A callback that submits another request and cancels a third. */
static struct {
	const char *method;
	char url[128];
	const char *body;
	struct res *res;
	struct backend_req *cancel;
	struct backend_req *issued;
} H;

static void then_issue(struct res *r)
{
	int err = 0;

	(void)r;
	if (H.cancel) {
		backend_cancel(H.cancel);
		H.cancel = NULL;
	}
	H.issued = backend_request(F.b, H.method, H.url, NULL, 0, H.body,
				   H.body ? strlen(H.body) : 0, on_resp, H.res, &err);
}

/* ---- evhttp server ---- */

static void srv_closed(struct evhttp_connection *ec, void *arg)
{
	int i;

	(void)arg;
	for (i = 0; i < F.nlive; i++) {
		if (F.live[i] == ec) {
			F.live[i] = F.live[--F.nlive];
			return;
		}
	}
}

static const char *method_name(enum evhttp_cmd_type c)
{
	switch (c) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	default: return "OTHER";
	}
}

static void record(struct evhttp_request *hr)
{
	struct evhttp_connection *ec = evhttp_request_get_connection(hr);
	struct evkeyvalq *in = evhttp_request_get_input_headers(hr);
	struct evbuffer *body = evhttp_request_get_input_buffer(hr);
	const char *v;
	struct rec *r;
	int i;

	for (i = 0; i < F.nlive && F.live[i] != ec; i++) {
	}
	if (i == F.nlive && F.nlive < MAX_RECS) {
		F.live[F.nlive++] = ec;
		F.total_conns++;
		evhttp_connection_set_closecb(ec, srv_closed, NULL);
	}
	if (F.nrec >= MAX_RECS) {
		return;
	}
	r = &F.recs[F.nrec++];
	snprintf(r->method, sizeof(r->method), "%s", method_name(evhttp_request_get_command(hr)));
	snprintf(r->uri, sizeof(r->uri), "%s", evhttp_request_get_uri(hr));
	v = evhttp_find_header(in, "Host");
	snprintf(r->host, sizeof(r->host), "%s", v ? v : "");
	v = evhttp_find_header(in, "X-Test");
	snprintf(r->xtest, sizeof(r->xtest), "%s", v ? v : "");
	v = evhttp_find_header(in, "Content-Length");
	r->has_clen = v != NULL;
	snprintf(r->clen, sizeof(r->clen), "%s", v ? v : "");
	r->body_len = evbuffer_get_length(body);
	evbuffer_copyout(body, r->body, sizeof(r->body) - 1);
}

static void h_echo(struct evhttp_request *hr, void *arg)
{
	struct evbuffer *out = evbuffer_new();

	(void)arg;
	record(hr);
	evhttp_add_header(evhttp_request_get_output_headers(hr), "X-Reply", "yes");
	evbuffer_add_buffer(out, evhttp_request_get_input_buffer(hr));
	evhttp_send_reply(hr, 200, "OK", out);
	evbuffer_free(out);
}

static void h_close(struct evhttp_request *hr, void *arg)
{
	struct evbuffer *out = evbuffer_new();

	(void)arg;
	record(hr);
	evhttp_add_header(evhttp_request_get_output_headers(hr), "Connection", "close");
	evbuffer_add(out, "bye", 3);
	evhttp_send_reply(hr, 200, "OK", out);
	evbuffer_free(out);
}

static void h_chunked(struct evhttp_request *hr, void *arg)
{
	static const char *parts[] = { "alpha", "beta", "gamma" };
	struct evbuffer *out = evbuffer_new();
	size_t i;

	(void)arg;
	record(hr);
	evhttp_send_reply_start(hr, 200, "OK");
	for (i = 0; i < 3; i++) {
		evbuffer_add(out, parts[i], strlen(parts[i]));
		evhttp_send_reply_chunk(hr, out);
	}
	evhttp_send_reply_end(hr);
	evbuffer_free(out);
}

static void h_hang(struct evhttp_request *hr, void *arg)
{
	(void)arg;
	record(hr);
	if (F.nhung < 8) {
		F.hung[F.nhung++] = hr;
	}
}

static void h_big(struct evhttp_request *hr, void *arg)
{
	struct evbuffer *out = evbuffer_new();
	char buf[2000];

	(void)arg;
	record(hr);
	memset(buf, 'x', sizeof(buf));
	evbuffer_add(out, buf, sizeof(buf));
	evhttp_send_reply(hr, 200, "OK", out);
	evbuffer_free(out);
}

static void h_error(struct evhttp_request *hr, void *arg)
{
	struct evbuffer *out = evbuffer_new();

	(void)arg;
	record(hr);
	evbuffer_add(out, "oops", 4);
	evhttp_send_reply(hr, 500, "Internal Server Error", out);
	evbuffer_free(out);
}

static void delay_fire(evutil_socket_t fd, short what, void *arg)
{
	struct evhttp_request *hr = arg;
	struct evbuffer *out = evbuffer_new();
	const char *q = strchr(evhttp_request_get_uri(hr), '?');

	(void)fd;
	(void)what;
	F.active--;
	F.delayed--;
	evbuffer_add_printf(out, "%s", q ? q + 1 : "");
	/* Also fine when the client went away: evhttp then frees the request. */
	evhttp_send_reply(hr, 200, "OK", out);
	evbuffer_free(out);
}

static void h_delay(struct evhttp_request *hr, void *arg)
{
	struct timeval tv = { 0, 50 * 1000 };

	(void)arg;
	record(hr);
	F.active++;
	if (F.active > F.max_active) {
		F.max_active = F.active;
	}
	F.delayed++;
	event_base_once(F.base, -1, EV_TIMEOUT, delay_fire, hr, &tv);
}

static int bound_port(evutil_socket_t fd)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	if (getsockname(fd, (struct sockaddr *)&sin, &len) < 0) {
		return -1;
	}
	return ntohs(sin.sin_port);
}

/* ---- raw scripted server ---- */

static void raw_close(struct rawconn *rc)
{
	int i;

	for (i = 0; i < MAX_RAW; i++) {
		if (F.rawconns[i] == rc) {
			F.rawconns[i] = NULL;
		}
	}
	bufferevent_free(rc->bev);
	free(rc);
}

static void raw_read(struct bufferevent *bev, void *arg)
{
	struct rawconn *rc = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	for (;;) {
		struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
		char head[4096];
		const struct step *st;
		size_t hlen, clen = 0, total;
		const char *cl;
		int i;

		if (p.pos < 0) {
			return;
		}
		hlen = (size_t)p.pos + 4;
		if (hlen >= sizeof(head)) {
			raw_close(rc);
			return;
		}
		evbuffer_copyout(in, head, hlen);
		head[hlen] = '\0';
		cl = strcasestr(head, "\ncontent-length:");
		if (cl) {
			clen = strtoul(cl + 16, NULL, 10);
		}
		total = hlen + clen;
		if (evbuffer_get_length(in) < total) {
			return;
		}
		i = F.raw_nreq++;
		if (i < MAX_RAW && total < sizeof(F.raw_reqs[i])) {
			evbuffer_copyout(in, F.raw_reqs[i], total);
			F.raw_reqs[i][total] = '\0';
		}
		evbuffer_drain(in, total);
		st = &F.steps[i < F.nsteps ? i : F.nsteps - 1];
		if (!st->resp) {
			if (st->close) {
				raw_close(rc);
				return;
			}
			continue;
		}
		if (st->trickle) {
			rc->out = st->resp + 1;
			rc->left = strlen(st->resp) - 1;
			bufferevent_write(bev, st->resp, 1);
		} else {
			bufferevent_write(bev, st->resp, strlen(st->resp));
		}
		if (st->close) {
			rc->close_after = true;
			return;
		}
	}
}

/* Called when the output buffer has drained. */
static void raw_write(struct bufferevent *bev, void *arg)
{
	struct rawconn *rc = arg;

	if (rc->left) {
		bufferevent_write(bev, rc->out, 1);
		rc->out++;
		rc->left--;
	} else if (rc->close_after) {
		raw_close(rc);
	}
}

static void raw_event(struct bufferevent *bev, short what, void *arg)
{
	(void)bev;
	if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
		F.raw_eofs++;
		raw_close(arg);
	}
}

static void raw_accept(struct evconnlistener *l, evutil_socket_t fd,
		       struct sockaddr *sa, int len, void *arg)
{
	struct rawconn *rc = calloc(1, sizeof(*rc));
	int i;

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	F.raw_accepts++;
	rc->bev = bufferevent_socket_new(F.base, fd, BEV_OPT_CLOSE_ON_FREE);
	bufferevent_setcb(rc->bev, raw_read, raw_write, raw_event, rc);
	bufferevent_enable(rc->bev, EV_READ | EV_WRITE);
	for (i = 0; i < MAX_RAW && F.rawconns[i]; i++) {
	}
	if (i < MAX_RAW) {
		F.rawconns[i] = rc;
	}
}

static void script(const struct step *steps, int n)
{
	F.steps = steps;
	F.nsteps = n;
}

/* ---- fixture ---- */

static void new_backend(void)
{
	backend_free(F.b);
	F.b = backend_new(F.base, &F.opts);
	assert_non_null(F.b);
}

static int setup(void **state)
{
	struct evhttp_bound_socket *bs;
	struct sockaddr_in sin;

	(void)state;
	memset(&F, 0, sizeof(F));
	memset(&H, 0, sizeof(H));
	F.base = event_base_new();
	if (!F.base) {
		return -1;
	}
	F.http = evhttp_new(F.base);
	bs = F.http ? evhttp_bind_socket_with_handle(F.http, "127.0.0.1", 0) : NULL;
	if (!bs) {
		return -1;
	}
	F.port = bound_port(evconnlistener_get_fd(evhttp_bound_socket_get_listener(bs)));
	evhttp_set_cb(F.http, "/echo", h_echo, NULL);
	evhttp_set_cb(F.http, "/close", h_close, NULL);
	evhttp_set_cb(F.http, "/chunked", h_chunked, NULL);
	evhttp_set_cb(F.http, "/hang", h_hang, NULL);
	evhttp_set_cb(F.http, "/big", h_big, NULL);
	evhttp_set_cb(F.http, "/error", h_error, NULL);
	evhttp_set_cb(F.http, "/delay", h_delay, NULL);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	F.raw_l = evconnlistener_new_bind(F.base, raw_accept, NULL,
					  LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
					  (struct sockaddr *)&sin, sizeof(sin));
	if (!F.raw_l) {
		return -1;
	}
	F.raw_port = bound_port(evconnlistener_get_fd(F.raw_l));

	F.opts.max_connections = 4;
	F.opts.max_queue = 16;
	F.opts.connect_timeout_ms = 1000;
	F.opts.request_timeout_ms = 2000;
	F.opts.max_response_bytes = 1 << 20;
	F.b = backend_new(F.base, &F.opts);
	return F.b && F.port > 0 && F.raw_port > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	int i;

	(void)state;
	backend_free(F.b);
	F.b = NULL;
	/* Let delayed replies go out so that evhttp frees their requests. */
	run_until(delayed_zero, 0);
	for (i = 0; i < F.nhung; i++) {
		evhttp_send_reply(F.hung[i], 200, "OK", NULL);
	}
	evhttp_free(F.http);
	for (i = 0; i < MAX_RAW; i++) {
		if (F.rawconns[i]) {
			raw_close(F.rawconns[i]);
		}
	}
	evconnlistener_free(F.raw_l);
	event_base_free(F.base);
	return 0;
}

/* ---- tests: evhttp server ---- */

static void test_get_echo(void **state)
{
	struct backend_header h[] = { { "X-Test", "hello" }, { "Accept", "*/*" } };
	struct res r = { 0 };
	char url[128], host[64];
	int err = 0;

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo?a=1&b=two", F.port);
	assert_non_null(backend_request(F.b, "GET", url, h, 2, NULL, 0, on_resp, &r, &err));
	assert_int_equal(r.called, 0);
	assert_int_equal(backend_pending(F.b), 1);
	assert_true(wait_done(1));

	assert_int_equal(r.called, 1);
	assert_int_equal(r.err, RB_OK);
	assert_true(r.errmsg_null);
	assert_int_equal(r.status, 200);
	assert_false(r.body_null);
	assert_int_equal(r.body_len, 0);
	assert_string_equal(r.xreply, "yes");
	assert_int_equal(backend_pending(F.b), 0);

	snprintf(host, sizeof(host), "127.0.0.1:%d", F.port);
	assert_int_equal(F.nrec, 1);
	assert_string_equal(F.recs[0].method, "GET");
	assert_string_equal(F.recs[0].uri, "/echo?a=1&b=two");
	assert_string_equal(F.recs[0].host, host);
	assert_string_equal(F.recs[0].xtest, "hello");
	assert_false(F.recs[0].has_clen);
	assert_int_equal(F.recs[0].body_len, 0);
}

static void test_post_echo(void **state)
{
	static const char body[] = "ping\0pong";
	struct res r1 = { 0 }, r2 = { 0 };

	(void)state;
	r1.hdr_name = "Content-Length";
	req("POST", "/echo?x", body, 9, &r1);
	assert_true(wait_done(1));
	req("POST", "/echo", NULL, 0, &r2);
	assert_true(wait_done(2));

	assert_int_equal(r1.err, RB_OK);
	assert_int_equal(r1.status, 200);
	assert_int_equal(r1.body_len, 9);
	assert_memory_equal(r1.body, body, 9);
	assert_string_equal(r1.hdr, "9");
	assert_int_equal(F.nrec, 2);
	assert_string_equal(F.recs[0].method, "POST");
	assert_string_equal(F.recs[0].uri, "/echo?x");
	assert_string_equal(F.recs[0].clen, "9");
	assert_int_equal(F.recs[0].body_len, 9);
	assert_memory_equal(F.recs[0].body, body, 9);

	assert_int_equal(r2.err, RB_OK);
	assert_int_equal(r2.body_len, 0);
	assert_true(F.recs[1].has_clen);
	assert_string_equal(F.recs[1].clen, "0");
}

static void test_keepalive_reuse(void **state)
{
	struct res r[3] = { { 0 } };
	int i;

	(void)state;
	for (i = 0; i < 3; i++) {
		req("GET", "/echo", NULL, 0, &r[i]);
		assert_true(wait_done(i + 1));
		assert_int_equal(r[i].err, RB_OK);
		assert_int_equal(r[i].status, 200);
	}
	assert_int_equal(F.nrec, 3);
	assert_int_equal(F.total_conns, 1);
	assert_int_equal(F.nlive, 1);
}

static void test_connection_close(void **state)
{
	struct res r[2] = { { 0 } };
	int i;

	(void)state;
	for (i = 0; i < 2; i++) {
		req("GET", "/close", NULL, 0, &r[i]);
		assert_true(wait_done(i + 1));
		assert_int_equal(r[i].err, RB_OK);
		assert_int_equal(r[i].body_len, 3);
		assert_memory_equal(r[i].body, "bye", 3);
	}
	assert_int_equal(F.total_conns, 2);
}

static void test_chunked(void **state)
{
	struct res r = { 0 };

	(void)state;
	r.hdr_name = "transfer-encoding";
	req("GET", "/chunked", NULL, 0, &r);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_OK);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.hdr, "chunked");
	assert_int_equal(r.body_len, 14);
	assert_memory_equal(r.body, "alphabetagamma", 14);
}

static void test_request_timeout(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 };
	int fds;

	(void)state;
	F.opts.request_timeout_ms = 200;
	F.opts.max_connections = 1;
	new_backend();
	fds = count_fds();
	req("GET", "/hang", NULL, 0, &r1);
	assert_true(wait_done(1));
	assert_int_equal(r1.err, RB_ETIMEDOUT);
	assert_string_equal(r1.errmsg, "timed out after 200 ms");
	assert_int_equal(r1.status, 0);
	assert_int_equal(r1.body_len, 0);
	assert_int_equal(backend_pending(F.b), 0);
	/* The client closed its socket at once (evhttp keeps its own side open
	 * while a request waits for a reply, so only ours goes). */
	assert_int_equal(count_fds(), fds + 1);

	req("GET", "/echo", NULL, 0, &r2);
	assert_true(wait_done(2));
	assert_int_equal(r2.err, RB_OK);
	assert_int_equal(F.total_conns, 2);
}

static void test_too_big(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 };

	(void)state;
	F.opts.max_response_bytes = 1000;
	new_backend();
	req("GET", "/big", NULL, 0, &r1);
	assert_true(wait_done(1));
	assert_int_equal(r1.err, RB_ETOOBIG);
	assert_string_equal(r1.errmsg, "response body over 1000 bytes");
	assert_int_equal(r1.body_len, 0);
	assert_string_equal(r1.xreply, "");

	req("GET", "/echo", "x", 1, &r2);
	assert_true(wait_done(2));
	assert_int_equal(r2.err, RB_OK);
	assert_int_equal(r2.body_len, 1);
}

static void test_status_500(void **state)
{
	struct res r = { 0 };

	(void)state;
	req("GET", "/error", NULL, 0, &r);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_OK);
	assert_true(r.errmsg_null);
	assert_int_equal(r.status, 500);
	assert_int_equal(r.body_len, 4);
	assert_memory_equal(r.body, "oops", 4);
}

static void test_max_connections(void **state)
{
	struct res r[10] = { { 0 } };
	bool seen[10] = { false };
	char path[32];
	int i;

	(void)state;
	F.opts.max_connections = 2;
	F.opts.max_queue = 8;
	new_backend();
	for (i = 0; i < 10; i++) {
		snprintf(path, sizeof(path), "/delay?%d", i);
		req("GET", path, NULL, 0, &r[i]);
	}
	assert_int_equal(backend_pending(F.b), 10);
	assert_true(wait_done(10));
	for (i = 0; i < 10; i++) {
		assert_int_equal(r[i].called, 1);
		assert_int_equal(r[i].err, RB_OK);
		assert_int_equal(r[i].status, 200);
		snprintf(path, sizeof(path), "%d", i);
		assert_string_equal(r[i].body, path);
	}
	assert_int_equal(F.max_active, 2);
	assert_int_equal(F.total_conns, 2);
	assert_int_equal(F.nrec, 10);
	for (i = 0; i < 10; i++) {
		int k = atoi(strchr(F.recs[i].uri, '?') + 1);

		assert_in_range(k, 0, 9);
		assert_false(seen[k]);
		seen[k] = true;
	}
}

static void test_queue_limit(void **state)
{
	struct res r[4] = { { 0 } };
	char url[128];
	int i, err = 0;

	(void)state;
	F.opts.max_connections = 1;
	F.opts.max_queue = 2;
	new_backend();
	for (i = 0; i < 3; i++) {
		req("GET", "/echo", NULL, 0, &r[i]);
	}
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/echo", F.port);
	assert_null(backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r[3], &err));
	assert_int_equal(err, RB_ELIMIT);
	assert_int_equal(backend_pending(F.b), 3);
	assert_true(wait_done(3));
	run_idle();
	for (i = 0; i < 3; i++) {
		assert_int_equal(r[i].err, RB_OK);
		/* One connection, FIFO: completion follows submission. */
		assert_int_equal(r[i].order, i + 1);
	}
	assert_int_equal(r[3].called, 0);
	assert_int_equal(F.total_conns, 1);
	/* Room again. */
	req("GET", "/echo", NULL, 0, &r[3]);
	assert_true(wait_done(4));
	assert_int_equal(r[3].err, RB_OK);
}

static void test_cancel(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	struct backend_req *h1, *h2;

	(void)state;
	F.opts.max_connections = 1;
	new_backend();
	h1 = req("GET", "/delay?1", NULL, 0, &r1);
	h2 = req("GET", "/echo?2", NULL, 0, &r2);
	req("GET", "/echo?3", NULL, 0, &r3);
	/* h1 is in flight (the server has it), h2 is queued. */
	assert_true(run_until(nrec_at_least, 1));
	backend_cancel(h1);
	backend_cancel(h2);
	assert_int_equal(backend_pending(F.b), 1);
	assert_true(wait_done(1));
	assert_true(run_until(delayed_zero, 0));
	run_idle();
	assert_int_equal(r1.called, 0);
	assert_int_equal(r2.called, 0);
	assert_int_equal(r3.called, 1);
	assert_int_equal(r3.err, RB_OK);
	assert_int_equal(backend_pending(F.b), 0);
	/* The cancelled request's connection was closed, not reused. */
	assert_int_equal(F.nrec, 2);
	assert_string_equal(F.recs[1].uri, "/echo?3");
	assert_int_equal(F.total_conns, 2);
}

static void test_callback_issues_request(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

	(void)state;
	F.opts.max_connections = 1;
	new_backend();
	H.method = "GET";
	snprintf(H.url, sizeof(H.url), "http://127.0.0.1:%d/echo?second", F.port);
	H.res = &r2;
	r1.then = then_issue;
	req("GET", "/echo?first", NULL, 0, &r1);
	H.cancel = req("GET", "/echo?third", NULL, 0, &r3);
	assert_true(wait_done(2));
	run_idle();
	assert_non_null(H.issued);
	assert_int_equal(r1.err, RB_OK);
	assert_int_equal(r2.err, RB_OK);
	assert_int_equal(r2.order, 2);
	assert_int_equal(r3.called, 0);
	assert_int_equal(F.nrec, 2);
	assert_string_equal(F.recs[0].uri, "/echo?first");
	assert_string_equal(F.recs[1].uri, "/echo?second");
	/* FIFO: the third had been handed to the kept-alive connection before
	 * the callback ran, so cancelling it closed that connection. */
	assert_int_equal(F.total_conns, 2);
	assert_int_equal(backend_pending(F.b), 0);
}

static struct backend_req *self_handle;

static void then_cancel_self(struct res *r)
{
	(void)r;
	backend_cancel(self_handle);
}

static void test_cancel_self_in_callback(void **state)
{
	struct res r = { 0 };

	(void)state;
	r.then = then_cancel_self;
	self_handle = req("GET", "/echo", NULL, 0, &r);
	assert_true(wait_done(1));
	run_idle();
	assert_int_equal(r.called, 1);
	assert_int_equal(r.err, RB_OK);
	assert_int_equal(backend_pending(F.b), 0);
}

static int closed_port(void)
{
	struct sockaddr_in sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	port = bound_port(fd);
	close(fd);
	return port;
}

static void test_refused(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
	struct backend_req *h2;
	char url[128];

	(void)state;
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
	assert_non_null(backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r1, NULL));
	h2 = backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r2, NULL);
	assert_non_null(h2);
	assert_int_equal(r1.called, 0);
	assert_int_equal(r2.called, 0);
	backend_cancel(h2);
	assert_non_null(backend_request(F.b, "POST", url, NULL, 0, NULL, 0, on_resp, &r3, NULL));
	assert_true(wait_done(2));
	run_idle();
	assert_int_equal(r1.called, 1);
	assert_int_equal(r1.err, RB_EIO);
	assert_non_null(strstr(r1.errmsg, "connection refused"));
	assert_int_equal(r1.status, 0);
	assert_int_equal(r2.called, 0);
	assert_int_equal(r3.err, RB_EIO);
	assert_int_equal(backend_pending(F.b), 0);
}

/*
 * No network here, so no black-hole address: a listener with backlog 0 whose
 * accept queue is full makes Linux drop further SYNs, and the connect hangs.
 */
static void test_connect_timeout(void **state)
{
	struct res r = { 0 };
	struct sockaddr_in sin;
	int lfd, fill[2], port, i;
	char url[128], prefix[64];

	(void)state;
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 0), 0);
	port = bound_port(lfd);
	sin.sin_port = htons((uint16_t)port);
	for (i = 0; i < 2; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		connect(fill[i], (struct sockaddr *)&sin, sizeof(sin));
	}
	F.opts.connect_timeout_ms = 100;
	F.opts.request_timeout_ms = 3000;
	new_backend();
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", port);
	assert_non_null(backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r, NULL));
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_ETIMEDOUT);
	snprintf(prefix, sizeof(prefix), "connect to 127.0.0.1:%d ", port);
	assert_non_null(strstr(r.errmsg, prefix));
	assert_non_null(strstr(r.errmsg, "timed out after 100 ms"));
	for (i = 0; i < 2; i++) {
		close(fill[i]);
	}
	close(lfd);
}

/* A connect() that fails at once (TCP to a broadcast address is refused by
 * the kernel): still reported from the loop, never from backend_request(). */
static void test_immediate_connect_failure(void **state)
{
	struct res r = { 0 };

	(void)state;
	assert_non_null(backend_request(F.b, "GET", "http://255.255.255.255:9/", NULL, 0,
					NULL, 0, on_resp, &r, NULL));
	assert_int_equal(r.called, 0);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_EIO);
	assert_string_equal(r.errmsg,
			    "connect to 255.255.255.255:9 failed: network is unreachable");
	assert_int_equal(backend_pending(F.b), 0);
}

static void test_queued_timeout(void **state)
{
	struct res r1 = { 0 }, r2 = { 0 };

	(void)state;
	F.opts.request_timeout_ms = 200;
	F.opts.max_connections = 1;
	new_backend();
	/* Both hang: the second waits in the queue behind the first and must
	 * still end with a timeout. (Were it an echo, it could legitimately
	 * finish in what is left of its deadline once the first times out:
	 * a race under slow builds such as TSan.) */
	req("GET", "/hang", NULL, 0, &r1);
	req("GET", "/hang", NULL, 0, &r2);
	assert_true(wait_done(2));
	assert_int_equal(r1.err, RB_ETIMEDOUT);
	assert_int_equal(r2.err, RB_ETIMEDOUT);
	assert_string_equal(r2.errmsg, "timed out after 200 ms");
	assert_int_equal(backend_pending(F.b), 0);
}

static void test_localhost_name(void **state)
{
	struct res r = { 0 };
	char url[128], host[64];

	(void)state;
	snprintf(url, sizeof(url), "http://LocalHost:%d/echo", F.port);
	assert_non_null(backend_request(F.b, "PUT", url, NULL, 0, NULL, 0, on_resp, &r, NULL));
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_OK);
	assert_int_equal(r.status, 200);
	snprintf(host, sizeof(host), "LocalHost:%d", F.port);
	assert_string_equal(F.recs[0].host, host);
	assert_string_equal(F.recs[0].method, "PUT");
	assert_string_equal(F.recs[0].clen, "0");
}

static void test_bad_args(void **state)
{
	static const char *urls[] = {
		"https://127.0.0.1/", "ftp://127.0.0.1/", "http://", "http:///x",
		"http://127.0.0.1:0/", "http://127.0.0.1:65536/", "http://127.0.0.1:/",
		"http://127.0.0.1:8x/", "http://u@127.0.0.1/", "http://127.0.0.1/a b",
		"http://127.0.0.1/\r\nX: y", "http://[::1/", "http://[]/", "127.0.0.1/",
	};
	struct backend_header bad_val[] = { { "X-A", "a\r\nInjected: 1" } };
	struct backend_header bad_name[] = { { "X A", "b" } };
	struct backend_opts o = F.opts;
	struct res r = { 0 };
	char ok[128];
	size_t i;
	int err;

	(void)state;
	for (i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		err = 0;
		assert_null(backend_request(F.b, "GET", urls[i], NULL, 0, NULL, 0, on_resp, &r, &err));
		assert_int_equal(err, RB_EINVAL);
	}
	snprintf(ok, sizeof(ok), "http://127.0.0.1:%d/echo", F.port);
	err = 0;
	assert_null(backend_request(F.b, "GE T", ok, NULL, 0, NULL, 0, on_resp, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	err = 0;
	assert_null(backend_request(F.b, "", ok, NULL, 0, NULL, 0, on_resp, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	err = 0;
	assert_null(backend_request(F.b, "GET", ok, bad_val, 1, NULL, 0, on_resp, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	err = 0;
	assert_null(backend_request(F.b, "GET", ok, bad_name, 1, NULL, 0, on_resp, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	err = 0;
	assert_null(backend_request(F.b, "GET", ok, NULL, 0, NULL, 5, on_resp, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	err = 0;
	assert_null(backend_request(F.b, "GET", ok, NULL, 0, NULL, 0, NULL, &r, &err));
	assert_int_equal(err, RB_EINVAL);
	assert_null(backend_request(F.b, "GET", "http://", NULL, 0, NULL, 0, on_resp, &r, NULL));
	assert_int_equal(backend_pending(F.b), 0);
	run_idle();
	assert_int_equal(r.called, 0);
	assert_int_equal(F.nrec, 0);

	o.max_connections = 0;
	assert_null(backend_new(F.base, &o));
	o = F.opts;
	o.max_queue = -1;
	assert_null(backend_new(F.base, &o));
	o = F.opts;
	o.connect_timeout_ms = 0;
	assert_null(backend_new(F.base, &o));
	o = F.opts;
	o.request_timeout_ms = 0;
	assert_null(backend_new(F.base, &o));
	assert_null(backend_new(NULL, &F.opts));
	assert_null(backend_new(F.base, NULL));
	backend_free(NULL);
	backend_cancel(NULL);
	assert_int_equal(backend_pending(NULL), 0);
}

static void test_free_with_pending(void **state)
{
	struct res r[4] = { { 0 } };
	char url[128];

	(void)state;
	F.opts.max_connections = 1;
	new_backend();
	req("GET", "/hang", NULL, 0, &r[0]);
	req("GET", "/echo", NULL, 0, &r[1]);
	/* The first one reaches the server: a connection in use. */
	assert_true(run_until(nrec_at_least, 1));
	/* And one failing (its callback is armed, not yet run). */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/x", closed_port());
	assert_non_null(backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r[2], NULL));
	assert_int_equal(backend_pending(F.b), 3);
	backend_free(F.b);
	F.b = NULL;
	/* Every pending request is completed, inside backend_free, with
	 * RB_ECLOSED: owners get to free their callback arguments. */
	assert_int_equal(F.ndone, 3);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r[i].called, 1);
		assert_int_equal(r[i].err, RB_ECLOSED);
		assert_string_equal(r[i].errmsg, "backend client shut down");
	}
	run_idle();
	assert_int_equal(F.ndone, 3);
}

/* ---- tests: raw scripted server ---- */

#define OK_2 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

static void test_request_bytes(void **state)
{
	static const struct step steps[] = { { OK_2, false, false } };
	struct backend_header h[] = {
		{ "X-A", "1" }, { "Host", "evil" }, { "Connection", "close" },
		{ "content-length", "99" }, { "Transfer-Encoding", "chunked" },
		{ "X-B", "two words" },
	};
	struct res r[4] = { { 0 } };
	char url[128], want[512];
	int i;

	(void)state;
	script(steps, 1);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/p/a?x=1#frag", F.raw_port);
	assert_non_null(backend_request(F.b, "POST", url, h, 6, "hello", 5, on_resp, &r[0], NULL));
	assert_true(wait_done(1));
	raw_req("GET", "", NULL, 0, &r[1]);
	assert_true(wait_done(2));
	raw_req("POST", "?q=1", NULL, 0, &r[2]);
	assert_true(wait_done(3));
	raw_req("GET", "/g", "xy", 2, &r[3]);
	assert_true(wait_done(4));
	for (i = 0; i < 4; i++) {
		assert_int_equal(r[i].err, RB_OK);
		assert_string_equal(r[i].body, "ok");
	}
	assert_int_equal(F.raw_nreq, 4);
	snprintf(want, sizeof(want), "POST /p/a?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Length: 5\r\nX-A: 1\r\nX-B: two words\r\n\r\nhello", F.raw_port);
	assert_string_equal(F.raw_reqs[0], want);
	snprintf(want, sizeof(want), "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", F.raw_port);
	assert_string_equal(F.raw_reqs[1], want);
	snprintf(want, sizeof(want), "POST /?q=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Length: 0\r\n\r\n", F.raw_port);
	assert_string_equal(F.raw_reqs[2], want);
	snprintf(want, sizeof(want), "GET /g HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Length: 2\r\n\r\nxy", F.raw_port);
	assert_string_equal(F.raw_reqs[3], want);
	assert_int_equal(F.raw_accepts, 1);
}

static void test_parse_variants(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Dup: first\r\n"
		  "x-dup: second\r\nX-Fold: a\r\n  b  \r\n\r\n5;ext=1\r\nhello\r\n"
		  "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: t\r\n\r\n", false, true },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", false, true },
		{ "HTTP/1.1 204 No Content\r\n\r\n", false, false },
		{ "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n"
		  "Content-Length: 3\r\n\r\nabc", false, true },
		{ "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n", false, false },
		{ "HTTP/1.1 200 OK\nContent-Length: 2\nX-Reply:yes\n\nhi", false, false },
	};
	struct res r[6] = { { 0 } };
	int i;

	(void)state;
	script(steps, 6);
	r[0].hdr_name = "X-DUP";
	raw_req("GET", "/0", NULL, 0, &r[0]);
	assert_true(wait_done(1));
	r[1].hdr_name = "content-length";
	raw_req("HEAD", "/1", NULL, 0, &r[1]);
	assert_true(wait_done(2));
	raw_req("DELETE", "/2", NULL, 0, &r[2]);
	assert_true(wait_done(3));
	raw_req("POST", "/3", "q", 1, &r[3]);
	assert_true(wait_done(4));
	r[4].hdr_name = "etag";
	raw_req("GET", "/4", NULL, 0, &r[4]);
	assert_true(wait_done(5));
	raw_req("GET", "/5", NULL, 0, &r[5]);
	assert_true(wait_done(6));
	for (i = 0; i < 6; i++) {
		assert_int_equal(r[i].err, RB_OK);
	}
	assert_int_equal(r[0].status, 200);
	assert_string_equal(r[0].body, "helloabcdefghijklmnopqrstuvwxyz");
	assert_int_equal(r[0].body_len, 31);
	assert_string_equal(r[0].hdr, "first");

	assert_int_equal(r[1].status, 200);
	assert_int_equal(r[1].body_len, 0);
	assert_string_equal(r[1].hdr, "5");
	assert_int_equal(r[2].status, 204);
	assert_int_equal(r[2].body_len, 0);
	assert_int_equal(r[3].status, 201);
	assert_string_equal(r[3].body, "abc");
	assert_int_equal(r[4].status, 304);
	assert_string_equal(r[4].hdr, "\"x\"");
	assert_int_equal(r[5].status, 200);
	assert_string_equal(r[5].body, "hi");
	assert_string_equal(r[5].xreply, "yes");
	/* All on one kept-alive connection. */
	assert_int_equal(F.raw_accepts, 1);
	assert_int_equal(F.raw_nreq, 6);
}

static void test_obs_fold(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nX-Fold: a\r\n  b  \r\n\tc\r\nContent-Length: 0\r\n\r\n",
		  false, false },
	};
	struct res r = { 0 };

	(void)state;
	script(steps, 1);
	r.hdr_name = "x-fold";
	raw_req("GET", "/", NULL, 0, &r);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_OK);
	assert_string_equal(r.hdr, "a b c");
}

static void test_eof_body(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.0 200 OK\r\nX-A: b\r\n\r\nuntil-eof", true, false },
		{ OK_2, false, false },
	};
	struct res r[2] = { { 0 } };

	(void)state;
	script(steps, 2);
	raw_req("GET", "/", NULL, 0, &r[0]);
	assert_true(wait_done(1));
	raw_req("GET", "/", NULL, 0, &r[1]);
	assert_true(wait_done(2));
	assert_int_equal(r[0].err, RB_OK);
	assert_int_equal(r[0].body_len, 9);
	assert_string_equal(r[0].body, "until-eof");
	assert_int_equal(r[1].err, RB_OK);
	assert_int_equal(F.raw_accepts, 2);
}

/* The server keeps these connections open: the client must not reuse them. */
static void test_not_reused(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, false },
		{ "HTTP/1.1 200 OK\r\nConnection: x, Close\r\nContent-Length: 2\r\n\r\nok",
		  false, false },
		{ "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
		  false, false },
		{ OK_2 "!", false, false },
		{ OK_2, false, false },
	};
	struct res r[5] = { { 0 } };
	int i;

	(void)state;
	script(steps, 5);
	for (i = 0; i < 5; i++) {
		raw_req("GET", "/", NULL, 0, &r[i]);
		assert_true(wait_done(i + 1));
		assert_int_equal(r[i].err, RB_OK);
		assert_string_equal(r[i].body, "ok");
	}
	/* 1.0 plain, close: new connections; 1.0 keep-alive: reused once; the
	 * stray byte after a body: not reused. */
	assert_int_equal(F.raw_accepts, 4);
	assert_true(run_until(raw_eofs_at_least, 3));
}

static void test_malformed(void **state)
{
	static const struct step steps[] = {
		{ "HTXP/1.1 200 OK\r\n\r\n", false, false },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok", false, false },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, false },
		{ "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", false, false },
		{ "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, false },
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokX\r\n", false, false },
		{ "HTTP/1.1 101 Switching Protocols\r\n\r\n", false, false },
	};
	struct res r[7] = { { 0 } };
	int i;

	(void)state;
	script(steps, 7);
	for (i = 0; i < 7; i++) {
		raw_req("GET", "/", NULL, 0, &r[i]);
		assert_true(wait_done(i + 1));
		assert_int_equal(r[i].err, RB_EPROTO);
		assert_int_equal(r[i].status, 0);
		assert_int_equal(r[i].body_len, 0);
	}
	assert_string_equal(r[0].errmsg, "malformed status line: \"HTXP/1.1 200 OK\"");
	assert_string_equal(r[1].errmsg, "conflicting Content-Length headers");
	assert_string_equal(r[2].errmsg, "malformed chunk size: \"zz\"");
	/* Every error closes its connection. */
	assert_int_equal(F.raw_accepts, 7);
}

static char *make_head(size_t value_len, int lines)
{
	size_t cap = (size_t)lines * (value_len + 16) + 128, n = 0;
	char *s = malloc(cap);
	int i;

	if (!s)
		return NULL;
	n += (size_t)sprintf(s, "HTTP/1.1 200 OK\r\n");
	for (i = 0; i < lines; i++) {
		n += (size_t)sprintf(s + n, "X-%d: ", i);
		memset(s + n, 'a', value_len);
		n += value_len;
		n += (size_t)sprintf(s + n, "\r\n");
	}
	sprintf(s + n, "Content-Length: 2\r\n\r\nok");
	return s;
}

static void test_header_cap(void **state)
{
	struct step steps[3] = { { NULL, false, false } };
	struct res r[3] = { { 0 } };
	char *ok = make_head(60000, 1), *one = make_head(70000, 1), *many = make_head(40, 2000);

	(void)state;
	steps[0].resp = ok;
	steps[1].resp = one;
	steps[2].resp = many;
	script(steps, 3);
	r[0].hdr_name = "X-0";
	raw_req("GET", "/", NULL, 0, &r[0]);
	assert_true(wait_done(1));
	raw_req("GET", "/", NULL, 0, &r[1]);
	assert_true(wait_done(2));
	raw_req("GET", "/", NULL, 0, &r[2]);
	assert_true(wait_done(3));
	assert_int_equal(r[0].err, RB_OK);
	assert_string_equal(r[0].body, "ok");
	assert_true(r[0].hdr_found);
	assert_int_equal(r[1].err, RB_EPROTO);
	assert_string_equal(r[1].errmsg, "response header over 65536 bytes");
	assert_int_equal(r[2].err, RB_EPROTO);
	assert_string_equal(r[2].errmsg, "response header over 65536 bytes");
	free(ok);
	free(one);
	free(many);
}

static void test_too_big_variants(void **state)
{
	struct step steps[4] = { { NULL, false, false } };
	struct res r[4] = { { 0 } };
	char *exact = malloc(1200), *chunked = malloc(1600), *eof = malloc(1200);
	char *over = "HTTP/1.1 200 OK\r\nContent-Length: 1001\r\n\r\n";
	char a[601];
	int n, i;

	(void)state;
	memset(a, 'a', 600);
	a[600] = '\0';
	n = sprintf(exact, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n");
	memset(exact + n, 'e', 1000);
	exact[n + 1000] = '\0';
	sprintf(chunked, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
		"258\r\n%s\r\n258\r\n%s\r\n0\r\n\r\n", a, a);
	n = sprintf(eof, "HTTP/1.1 200 OK\r\n\r\n");
	memset(eof + n, 'f', 1001);
	eof[n + 1001] = '\0';
	steps[0].resp = exact;
	steps[1].resp = over;
	steps[2].resp = chunked;
	steps[3].resp = eof;
	steps[3].close = true;
	script(steps, 4);
	F.opts.max_response_bytes = 1000;
	new_backend();
	for (i = 0; i < 4; i++) {
		raw_req("GET", "/", NULL, 0, &r[i]);
		assert_true(wait_done(i + 1));
	}
	assert_int_equal(r[0].err, RB_OK);
	assert_int_equal(r[0].body_len, 1000);
	for (i = 1; i < 4; i++) {
		assert_int_equal(r[i].err, RB_ETOOBIG);
		assert_string_equal(r[i].errmsg, "response body over 1000 bytes");
		assert_int_equal(r[i].body_len, 0);
	}
	free(exact);
	free(chunked);
	free(eof);
}

static void test_closed_mid_body(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", true, false },
	};
	struct res r = { 0 };

	(void)state;
	script(steps, 1);
	raw_req("GET", "/", NULL, 0, &r);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_EIO);
	assert_string_equal(r.errmsg, "connection closed before the end of the response");
	assert_int_equal(r.body_len, 0);
	assert_int_equal(F.raw_accepts, 1);
	assert_int_equal(F.raw_nreq, 1);
}

/* A fresh connection that fails is never retried. */
static void test_no_retry_on_fresh(void **state)
{
	static const struct step steps[] = { { NULL, true, false } };
	struct res r = { 0 };

	(void)state;
	script(steps, 1);
	raw_req("POST", "/", "data", 4, &r);
	assert_true(wait_done(1));
	run_idle();
	assert_int_equal(r.err, RB_EIO);
	assert_string_equal(r.errmsg, "connection closed before any response");
	assert_int_equal(F.raw_accepts, 1);
	assert_int_equal(F.raw_nreq, 1);
}

/*
 * The server answers and closes at once. The second request is submitted
 * from the first callback, before the client can have read the FIN, so it
 * goes out on the stale connection and must be retried on a fresh one.
 */
static void test_stale_retry(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", true, false },
		{ "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecond", false, false },
	};
	struct res r1 = { 0 }, r2 = { 0 };
	char want[256];

	(void)state;
	script(steps, 2);
	H.method = "POST";
	H.body = "again";
	snprintf(H.url, sizeof(H.url), "http://127.0.0.1:%d/two", F.raw_port);
	H.res = &r2;
	r1.then = then_issue;
	raw_req("GET", "/one", NULL, 0, &r1);
	assert_true(wait_done(2));
	assert_int_equal(r1.err, RB_OK);
	assert_string_equal(r1.body, "first");
	assert_int_equal(r2.err, RB_OK);
	assert_string_equal(r2.body, "second");
	assert_int_equal(F.raw_accepts, 2);
	assert_int_equal(F.raw_nreq, 2);
	snprintf(want, sizeof(want), "POST /two HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
		 "Content-Length: 5\r\n\r\nagain", F.raw_port);
	assert_string_equal(F.raw_reqs[1], want);
}

/* Retried once, then the error is reported. */
static void test_retry_only_once(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst", true, false },
		{ NULL, true, false },
	};
	struct res r1 = { 0 }, r2 = { 0 };

	(void)state;
	script(steps, 2);
	H.method = "GET";
	snprintf(H.url, sizeof(H.url), "http://127.0.0.1:%d/two", F.raw_port);
	H.res = &r2;
	r1.then = then_issue;
	raw_req("GET", "/one", NULL, 0, &r1);
	assert_true(wait_done(2));
	run_idle();
	assert_int_equal(r1.err, RB_OK);
	assert_int_equal(r2.err, RB_EIO);
	assert_int_equal(F.raw_accepts, 2);
	assert_int_equal(F.raw_nreq, 2);
}

/* Bytes arriving on an idle connection: nothing can be parsed from that
 * stream any more, so the client closes it. */
static void test_idle_unsolicited_bytes(void **state)
{
	static const struct step steps[] = { { OK_2, false, false } };
	struct res r1 = { 0 }, r2 = { 0 };
	int i;

	(void)state;
	script(steps, 1);
	raw_req("GET", "/", NULL, 0, &r1);
	assert_true(wait_done(1));
	assert_int_equal(r1.err, RB_OK);
	for (i = 0; i < MAX_RAW && !F.rawconns[i]; i++) {
	}
	assert_true(i < MAX_RAW);
	bufferevent_write(F.rawconns[i]->bev, "HTTP/1.1 200 OK\r\n", 17);
	assert_true(run_until(raw_eofs_at_least, 1));
	raw_req("GET", "/", NULL, 0, &r2);
	assert_true(wait_done(2));
	assert_int_equal(r2.err, RB_OK);
	assert_int_equal(F.raw_accepts, 2);
}

static void test_ipv6_literal(void **state)
{
	static const struct step steps[] = { { OK_2, false, false } };
	struct evconnlistener *l;
	struct sockaddr_in6 sin6;
	socklen_t len = sizeof(sin6);
	struct res r = { 0 };
	char url[128], want[128];
	int port;

	(void)state;
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_addr = in6addr_loopback;
	l = evconnlistener_new_bind(F.base, raw_accept, NULL, LEV_OPT_CLOSE_ON_FREE, 16,
				    (struct sockaddr *)&sin6, sizeof(sin6));
	if (!l) {
		skip(); /* no IPv6 loopback on this machine */
	}
	getsockname(evconnlistener_get_fd(l), (struct sockaddr *)&sin6, &len);
	port = ntohs(sin6.sin6_port);
	script(steps, 1);
	snprintf(url, sizeof(url), "http://[::1]:%d/v6", port);
	assert_non_null(backend_request(F.b, "GET", url, NULL, 0, NULL, 0, on_resp, &r, NULL));
	assert_true(wait_done(1));
	evconnlistener_free(l);
	assert_int_equal(r.err, RB_OK);
	snprintf(want, sizeof(want), "GET /v6 HTTP/1.1\r\nHost: [::1]:%d\r\n\r\n", port);
	assert_string_equal(F.raw_reqs[0], want);
}

/* The server closes a kept-alive connection: the client frees its socket
 * without waiting for a next request. */
static void test_idle_close_noticed(void **state)
{
	static const struct step steps[] = {
		{ "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true, false },
	};
	struct res r = { 0 };
	int base;

	(void)state;
	script(steps, 1);
	base = count_fds();
	assert_true(base > 0);
	raw_req("GET", "/", NULL, 0, &r);
	assert_true(wait_done(1));
	assert_int_equal(r.err, RB_OK);
	assert_true(run_until(fds_equal, base));
	assert_int_equal(backend_pending(F.b), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_get_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive_reuse, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_500, setup, teardown),
		cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_limit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_callback_issues_request, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_self_in_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connect_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_immediate_connect_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_localhost_name, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_args, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_pending, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_variants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_obs_fold, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_big_variants, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_mid_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_retry_on_fresh, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stale_retry, setup, teardown),
		cmocka_unit_test_setup_teardown(test_retry_only_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_unsolicited_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_idle_close_noticed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipv6_literal, setup, teardown),
	};

	/* Writing to a socket the backend closed must be an error, not a signal. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
