#include "src/core/core.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/rand.h>

#include "protocol/packet.h"
#include "protocol/rb.h"
#include "src/http/backend.h"
#include "src/base/conf.h"
#include "src/core/commit.h"
#include "src/core/door.h"
#include "src/edge/pool.h"
#include "src/http/httpd.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/net.h"
#include "src/base/rbuf.h"
#include "src/base/timeutil.h"
#include "src/edge/seam.h"
#include "storage/qos_store.h"

struct conn *core_conn(struct core *c, uint64_t id)
{
	CORE_THREAD(c);
	return idmap_get(&c->conns, id);
}

/* n lowercase hex digits as a number; false if one is not. */
static bool hex_digits(const char *s, int n, uint64_t *out)
{
	uint64_t k = 0;
	for (int i = 0; i < n; i++) {
		char ch = s[i];
		int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
		if (v < 0)
			return false;
		k = k << 4 | (uint64_t)v;
	}
	*out = k;
	return true;
}

/* Identities are random at the front: their first 64 bits index them
 * well. conn_new keeps these keys unique and non-zero. */
static uint64_t identity_key(const char *identity)
{
	uint64_t k;
	return hex_digits(identity, 16, &k) ? k : 0;
}

uint32_t identity_node(const char *identity)
{
	uint64_t v;
	if (!identity || strlen(identity) != 64 || !hex_digits(identity + 56, 8, &v))
		return 0;
	return (uint32_t)v;
}

bool conn_reachable(const struct conn *cn)
{
	return cn && cn->admitted && cn->state != CONN_HOOK;
}

struct conn *core_conn_by_identity(struct core *c, const char *identity)
{
	if (!identity || strlen(identity) != 64)
		return NULL;
	uint64_t k = identity_key(identity);
	struct conn *cn = k ? idmap_get(&c->by_identity, k) : NULL;
	return cn && strcmp(cn->identity, identity) == 0 ? cn : NULL;
}

/* ---- QoS stores and group commit (src/core/commit.h) ---- */

struct qos_store *conn_store(struct core *c, const struct conn *cn)
{
	return cn->session ? c->dstore : c->store;
}

const char *conn_key(const struct conn *cn)
{
	return cn->session ? cn->device_id : cn->identity;
}

void core_batch(struct core *c)
{
	CORE_THREAD(c);
	commit_batch(c->commit);
}

void core_mark(struct core *c, unsigned mark)
{
	commit_mark(c->commit, mark);
}

struct qos_store *conn_store_w(struct core *c, const struct conn *cn)
{
	if (cn->session)
		core_batch(c);
	return conn_store(c, cn);
}

/* A socket of the TLS port: straight to an edge, which runs the TLS and
 * WebSocket handshakes; the core hears of it at XQ_OPENED (on_opened). */
static void on_tls_accept(void *arg, int fd)
{
	struct core *c = arg;

	CORE_THREAD(c);
	if (c->stop_phase) {
		close(fd);
		return;
	}
	net_nodelay(fd);
	struct xq_msg *m = xq_msg_new(XQ_ADOPT, edge_pool_conn_id(c->edges), 0);
	if (!m) {
		close(fd);
		return;
	}
	m->fd = fd;
	m->flags = XQF_TLS;
	core_push_edge(c, m);
}

/* The commit's way to the edge threads. */
static void to_edges(void *pool, struct xq_msg *m)
{
	edge_pool_push(pool, m);
}

void core_push_edge(struct core *c, struct xq_msg *m)
{
	CORE_THREAD(c);
	commit_push_edge(c->commit, m);
}

void core_reply(struct core *c, struct httpd_req *req, int status, const char *ctype,
		const char *body, size_t len)
{
	CORE_THREAD(c);
	commit_reply(c->commit, req, status, ctype, body, len);
}

void core_send_packet(struct core *c, uint64_t conn_id, uint8_t cmd, uint8_t qos,
		      bool dup, uint16_t msgid, uint16_t msgtype,
		      const void *payload, size_t len)
{
	CORE_THREAD(c);
	struct pkt p = { .cmd = cmd, .qos = qos, .dup = dup, .msgid = msgid,
			 .msgtype = msgtype };
	uint8_t hdr[PKT_MAX_HDR];
	size_t hl = pkt_encode_header(&p, hdr);
	struct rbuf *b = rbuf_new2(hdr, hl, payload, len);
	struct xq_msg *m = xq_msg_new(XQ_SEND, 0, 1);

	if (!b || !m) {
		rbuf_unref(b);
		xq_msg_free(m);
		log_error("conn %llu: out of memory sending %s", (unsigned long long)conn_id,
			  pkt_cmd_name(cmd));
		return;
	}
	m->buf = b;
	m->rcpts[0].id = conn_id;
	core_push_edge(c, m);
	metric_packet(1, cmd, qos);
}

void core_send_nak(struct core *c, const struct conn *cn, uint16_t msgid, int code,
		   const char *message, bool temporary)
{
	core_send_nak_retry(c, cn, msgid, code, message, temporary, 0);
}

void core_send_nak_retry(struct core *c, const struct conn *cn, uint16_t msgid, int code,
			 const char *message, bool temporary, double retry_after)
{
	if (!cn->v2)
		return; /* v1 clients got silence from the original */
	json_t *j = json_pack("{s:i, s:s, s:b}", "code", code, "message", message,
			      "temporary", temporary);
	if (j && retry_after > 0)
		json_object_set_new(j, "retry_after", json_real(retry_after));
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (s)
		core_send_packet(c, cn->id, PKT_NAK, 0, false, msgid, 0, s, strlen(s));
	free(s);
	json_decref(j);
}

void core_close_conn(struct core *c, uint64_t conn_id, uint16_t code, const char *reason)
{
	CORE_THREAD(c);
	struct xq_msg *m = xq_msg_new(XQ_CLOSE, conn_id, 0);
	if (!m)
		return;
	m->code = code;
	m->text = reason ? strdup(reason) : NULL;
	core_push_edge(c, m);
}

void core_flow(struct core *c, struct conn *cn, bool on)
{
	CORE_THREAD(c);
	struct xq_msg *m = xq_msg_new(XQ_FLOW, cn->id, 0);
	if (!m)
		return;
	m->flags = on ? XQF_ON : 0;
	cn->rx_paused = !on;
	core_push_edge(c, m);
}

static void send_hello(struct core *c, struct conn *cn, bool present)
{
	json_t *j = json_pack("{s:s, s:b, s:i, s:I}", "identity", cn->identity,
			      "session_present", present, "heartbeat", (int)c->conf->heartbeat,
			      "max_message_size", (json_int_t)c->conf->max_message_size);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (s)
		core_send_packet(c, cn->id, PKT_HELLO, 0, false, 0, 0, s, strlen(s));
	free(s);
	json_decref(j);
}

static struct conn *conn_new(struct core *c, uint64_t id)
{
	unsigned char rnd[32];
	struct conn *cn = calloc(1, sizeof(*cn));

	if (!cn)
		return NULL;
	/* The identity is the connection's handle everywhere: unguessable.
	 * Drawn again in the (astronomically rare) case its index key is
	 * taken, so lookups by identity never collide. */
	uint64_t key;
	do {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1) {
			free(cn);
			return NULL;
		}
		/* 28 random bytes, then this node's id: a cluster routes an
		 * identity to its node without asking anyone (224 random bits
		 * keep it unguessable). */
		rnd[28] = (unsigned char)(c->node_id >> 24);
		rnd[29] = (unsigned char)(c->node_id >> 16);
		rnd[30] = (unsigned char)(c->node_id >> 8);
		rnd[31] = (unsigned char)c->node_id;
		rb_hex(rnd, sizeof(rnd), cn->identity);
		key = identity_key(cn->identity);
	} while (!key || idmap_get(&c->by_identity, key));
	if (idmap_put(&c->conns, id, cn) != RB_OK) {
		free(cn);
		return NULL;
	}
	if (idmap_put(&c->by_identity, key, cn) != RB_OK) {
		idmap_del(&c->conns, id);
		free(cn);
		return NULL;
	}
	cn->core = c;
	cn->id = id;
	log_limit_init(&cn->log, CONN_LOG_BURST, CONN_LOG_INTERVAL_MS);
	cn->fd = -1;
	return cn;
}

static void conn_free(struct core *c, struct conn *cn)
{
	log_limit_flush(&cn->log, LOG_INFO, cn->identity);
	if (cn->hook_req)
		backend_cancel(cn->hook_req);
	if (cn->fd >= 0)
		close(cn->fd);
	c->app->gone(c, cn);
	if (cn->state == CONN_OPEN)
		c->n_open--;
	idmap_del(&c->conns, cn->id);
	idmap_del(&c->by_identity, identity_key(cn->identity));
	kv_free(&cn->chans);
	free(cn->rehead);
	free(cn->device_id);
	free(cn->platform);
	free(cn->cookie);
	free(cn);
}

/* The WebSocket is up and admitted: take the session, greet, redeliver. */
static void conn_opened(struct core *c, struct conn *cn)
{
	cn->state = CONN_OPEN;
	c->n_open++;
	metric_inc(M_CONN_OPENED);
	if (cn->tls)
		cn->session_present = c->app->take_session(c, cn);
	log_info("conn %s: open (%s%s, device %s, %s)", cn->identity,
		 cn->v2 ? "rainbow.v2" : "v1", cn->session ? ", session" : "",
		 cn->device_id ? cn->device_id : "-", cn->platform ? cn->platform : "-");
	if (cn->v2)
		send_hello(c, cn, cn->session_present);
	c->app->opened(c, cn);
}

void core_admit(struct core *c, struct conn *cn)
{
	CORE_THREAD(c);
	cn->admitted = true;
	if (cn->tls) {
		/* Already a WebSocket: start reading it. */
		core_flow(c, cn, true);
		conn_opened(c, cn);
		return;
	}
	struct xq_msg *m = xq_msg_new(XQ_ADOPT, cn->id, 0);
	if (!m) {
		core_refuse(c, cn, 503, "out of memory");
		return;
	}
	/* Take the session now, not when the WebSocket is up: the ADOPT waits
	 * for the session's COMMIT, so by the time the client has its 101 its
	 * session exists and the backend can push to the device at once. */
	cn->session_present = c->app->take_session(c, cn);
	if (cn->rehead) {
		/* Consume the head we peeked at; lws gets the rewritten one. It
		 * is all in the socket buffer already (we saw it), so this does
		 * not wait. */
		size_t left = cn->head_len;
		char tmp[4096];
		while (left) {
			ssize_t r = recv(cn->fd, tmp, left < sizeof(tmp) ? left : sizeof(tmp), 0);
			if (r <= 0)
				break;
			left -= (size_t)r;
		}
		m->buf = rbuf_new2(cn->rehead, strlen(cn->rehead), NULL, 0);
		if (left || !m->buf) {
			xq_msg_free(m);
			core_refuse(c, cn, 503, "cannot read the request");
			return;
		}
	}
	m->fd = cn->fd;
	cn->fd = -1;
	cn->state = CONN_UPGRADING;
	core_push_edge(c, m);
}

void core_refuse(struct core *c, struct conn *cn, int status, const char *msg)
{
	CORE_THREAD(c);
	metric_inc(status == 401 ? M_CONN_REFUSED : M_CONN_HOOK_FAILED);
	cn->admitted = false;
	if (cn->tls) {
		/* After the upgrade there is no HTTP status left to give. */
		core_close_conn(c, cn->id, status == 401 ? 4401 : 4503, msg);
		return; /* freed when the edge reports it closed */
	}
	json_t *j = json_pack("{s:i, s:s}", "status", 1, "msg", msg);
	char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
	door_refuse(cn->fd, cn->head_len, status, body ? body : "{\"status\":1}");
	free(body);
	json_decref(j);
	cn->fd = -1;
	conn_free(c, cn);
}

/* Device id and platform: header, else query argument (browsers cannot set
 * headers). */
static const char *client_value(const struct kvlist *hdrs, const struct kvlist *args,
				const char *name)
{
	const char *v = hdrs ? kv_get(hdrs, name) : NULL;
	if (!v && args)
		v = kv_get(args, name);
	return v && *v ? v : NULL;
}

/* Checks common to both listeners; on success the connect hook runs. */
static void begin_connect(struct core *c, struct conn *cn, const struct kvlist *hdrs,
			  const struct kvlist *args)
{
	const char *dev = client_value(hdrs, args, "X-DEVICEID");
	const char *os = client_value(hdrs, args, "X-CLIENT-OS");

	if ((!dev || !os) && c->conf->require_device_id) {
		log_info("conn %s: refused, no %s", cn->identity, dev ? "X-CLIENT-OS" : "X-DEVICEID");
		core_refuse(c, cn, 401, "X-DEVICEID and X-CLIENT-OS are required");
		return;
	}
	const char *want = client_value(hdrs, args, "session");
	cn->wants_session = want && strcmp(want, "1") == 0;
	if (dev) {
		cn->device_id = strdup(dev);
		cn->device_given = cn->device_id != NULL;
	} else {
		/* No device id: the connection is its own device. */
		cn->device_id = strndup(cn->identity, 32);
	}
	cn->platform = os ? strdup(os) : NULL;
	c->app->connect(c, cn, hdrs, args);
}

/*
 * A.1: any subprotocol offer other than rainbow.v2 is ignored. lws 4.1
 * refuses an upgrade offering only names it does not know, so for such a
 * client (and only then) the head is replayed to lws without the
 * Sec-WebSocket-Protocol header. Returns that head, or NULL if not needed.
 */
static char *unknown_subprotocols(const struct http_head *h)
{
	const char *offer = kv_get(&h->headers, "Sec-WebSocket-Protocol");
	if (!offer || header_has_token(offer, "rainbow.v2") || header_has_token(offer, "rainbow"))
		return NULL;
	size_t len = strlen(h->method) + strlen(h->path) + strlen(h->query) + 32;
	for (size_t i = 0; i < h->headers.n; i++)
		len += strlen(h->headers.v[i].name) + strlen(h->headers.v[i].value) + 4;
	char *s = malloc(len), *p = s;
	if (!s)
		return NULL;
	p += sprintf(p, "%s %s%s%s HTTP/1.%d\r\n", h->method, h->path, *h->query ? "?" : "",
		     h->query, h->minor);
	for (size_t i = 0; i < h->headers.n; i++)
		if (strcasecmp(h->headers.v[i].name, "Sec-WebSocket-Protocol") != 0)
			p += sprintf(p, "%s: %s\r\n", h->headers.v[i].name, h->headers.v[i].value);
	strcpy(p, "\r\n");
	return s;
}

static void on_upgrade(void *arg, int fd, struct http_head *head, size_t head_len)
{
	struct core *c = arg;
	struct kvlist args = { 0 };
	struct conn *cn;

	if (c->stop_phase) {
		door_refuse(fd, head_len, 503, "{\"status\":1,\"msg\":\"shutting down\"}");
		goto out;
	}
	if (c->conns.len >= (size_t)c->conf->max_connections) {
		metric_inc(M_CONN_OVER_LIMIT);
		log_warn("refusing a connection: max_connections (%d) reached",
			 c->conf->max_connections);
		door_refuse(fd, head_len, 503, "{\"status\":1,\"msg\":\"too many connections\"}");
		goto out;
	}
	cn = conn_new(c, edge_pool_conn_id(c->edges));
	if (!cn) {
		door_refuse(fd, head_len, 503, "{\"status\":1,\"msg\":\"out of memory\"}");
		goto out;
	}
	cn->fd = fd;
	cn->head_len = head_len;
	cn->state = CONN_HOOK;
	cn->rehead = unknown_subprotocols(head);
	/* lws selects rainbow.v2 whenever it is offered (OPENED confirms). */
	const char *offer = kv_get(&head->headers, "Sec-WebSocket-Protocol");
	cn->v2 = offer && header_has_token(offer, "rainbow.v2");
	if (cn->rehead && strlen(cn->rehead) > 2048) {
		/* lws replays at most 2048 bytes (its header buffer). */
		core_refuse(c, cn, 431, "request head too large for an unknown subprotocol");
		goto out;
	}
	query_parse(head->query, &args);
	begin_connect(c, cn, &head->headers, &args);
out:
	kv_free(&args);
	http_head_free(head);
	free(head);
}

static void on_opened(struct core *c, struct xq_msg *m)
{
	struct conn *cn = core_conn(c, m->id);

	if (m->flags & XQF_TLS) {
		/* TLS port: the edge upgraded it; the connect hook runs now. */
		struct kvlist hdrs = { 0 };
		if (c->stop_phase || c->conns.len >= (size_t)c->conf->max_connections) {
			core_close_conn(c, m->id, 1013, c->stop_phase ? "shutting down"
								: "too many connections");
			return;
		}
		cn = conn_new(c, m->id);
		if (!cn) {
			core_close_conn(c, m->id, 1011, "out of memory");
			return;
		}
		cn->tls = true;
		cn->v2 = m->flags & XQF_V2;
		cn->state = CONN_HOOK;
		kv_deserialize(&hdrs, m->text);
		/* On TLS the query arguments arrive among the headers. */
		begin_connect(c, cn, &hdrs, NULL);
		kv_free(&hdrs);
		return;
	}
	if (!cn || cn->state != CONN_UPGRADING)
		return;
	cn->v2 = m->flags & XQF_V2;
	conn_opened(c, cn);
}

static void on_closed(struct core *c, struct xq_msg *m)
{
	struct conn *cn = core_conn(c, m->id);
	if (!cn)
		return;
	if (cn->state == CONN_OPEN)
		metric_inc(M_CONN_CLOSED);
	if (m->count > 0)
		log_info("conn %s: closed; %u QoS 0 pushes to it were dropped (slow consumer)",
			 cn->identity, (unsigned)m->count);
	log_debug("conn %s: closed", cn->identity);
	c->app->closed(c, cn);
	conn_free(c, cn);
	core_maybe_stopped(c);
}

static void drain_inbox(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	uint64_t n;
	ssize_t r = read(c->inbox_fd, &n, sizeof(n));
	(void)r; /* the count does not matter; draining the queue does */

	CORE_THREAD(c);
	struct xq_msg *m = xq_drain(c->inbox), *next;
	for (; m; m = next) {
		next = m->next;
		struct conn *cn;
		switch (m->type) {
		case XQ_OPENED:
			on_opened(c, m);
			break;
		case XQ_RX:
			cn = core_conn(c, m->id);
			if (cn && cn->state == CONN_OPEN)
				c->app->message(c, cn, m->buf, m->flags & XQF_TEXT);
			break;
		case XQ_CLOSED:
			on_closed(c, m);
			break;
		case XQ_EDGE_DONE:
			if (++c->edges_done < edge_pool_size(c->edges))
				break; /* the others are still closing */
			c->stop_phase = 3;
			core_maybe_stopped(c);
			break;
		default:
			log_error("core: unexpected seam message %d", m->type);
		}
		xq_msg_free(m);
	}
}

static void ring_core(void *arg)
{
	struct core *c = arg;
	uint64_t one = 1;
	ssize_t w = write(c->inbox_fd, &one, sizeof(one));
	(void)w; /* EAGAIN only when the counter is huge: already rung */
}

/* Free the connections pick() selects (NULL: all). conn_free deletes from
 * c->conns, so the ids are collected first: restarting the iteration after
 * each deletion would be quadratic (20k connections at shutdown). */
static void free_conns(struct core *c, bool (*pick)(const struct conn *))
{
	size_t n = 0, i = 0;
	uint64_t id, *ids = malloc((c->conns.len ? c->conns.len : 1) * sizeof(*ids));
	void *val;

	if (!ids) {
		/* Out of memory: the slow way, still correct. */
		while (idmap_next(&c->conns, &i, &id, &val)) {
			if (!pick || pick(val)) {
				conn_free(c, val);
				i = 0;
			}
		}
		return;
	}
	while (idmap_next(&c->conns, &i, &id, &val))
		if (!pick || pick(val))
			ids[n++] = id;
	for (size_t k = 0; k < n; k++) {
		struct conn *cn = idmap_get(&c->conns, ids[k]);
		if (cn)
			conn_free(c, cn);
	}
	free(ids);
}

static bool at_door(const struct conn *cn)
{
	return cn->state == CONN_HOOK && !cn->tls;
}

/*
 * Shutdown, in phases: 1) stop accepting and let in-flight forwards finish;
 * 2) close every WebSocket (1001), which fires the close hooks; 3) once the
 * edge reports every connection gone, wait for outstanding backend calls
 * (close hooks) and leave. shutdown_grace bounds phases 1 and 3 each.
 */
static void begin_closing(struct core *c);

static void on_stop_timer(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	if (c->stop_phase == 1) {
		log_warn("shutdown: %d forwards still in flight after the grace period",
			 c->fwd_inflight);
		begin_closing(c);
	} else {
		log_warn("shutdown: giving up on %zu backend calls and %zu connections",
			 backend_pending(c->backend) + backend_pending(c->hook_backend),
			 c->conns.len);
		event_base_loopexit(c->base, NULL);
	}
}

static void arm_stop_timer(struct core *c)
{
	struct timeval tv = tv_from_seconds(c->conf->shutdown_grace);
	evtimer_add(c->stop_timer, &tv);
}

static void begin_closing(struct core *c)
{
	c->stop_phase = 2;
	/* Connections still at the door were never admitted: just drop them. */
	free_conns(c, at_door);
	struct xq_msg *m = xq_msg_new(XQ_STOP, 0, 0);
	if (m)
		core_push_edge(c, m);
	else
		event_base_loopexit(c->base, NULL); /* cannot close politely */
	arm_stop_timer(c);
}

void core_maybe_stopped(struct core *c)
{
	if (c->stop_phase == 1 && c->fwd_inflight == 0) {
		evtimer_del(c->stop_timer);
		begin_closing(c);
	} else if (c->stop_phase == 3 && backend_pending(c->backend) == 0 &&
		   backend_pending(c->hook_backend) == 0) {
		event_base_loopexit(c->base, NULL);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	struct core *c = arg;
	if (c->stop_phase) {
		log_info("second signal: exiting now");
		event_base_loopexit(c->base, NULL);
		return;
	}
	log_info("signal %d: shutting down (grace %.1fs, %d forwards in flight, %zu connections)",
		 (int)sig, c->conf->shutdown_grace, c->fwd_inflight, c->n_open);
	c->stop_phase = 1;
	door_close(c->door);
	httpd_close(c->httpd);
	arm_stop_timer(c);
	core_maybe_stopped(c);
}

/* port = auto: the first port of port_range free on bind, or 0. */
static int auto_port(const struct conf *conf)
{
	int lo, hi;
	if (conf_port_range(conf->port_range, &lo, &hi) != RB_OK)
		return 0;
	for (int p = lo; p <= hi; p++)
		if (net_port_free(conf->bind, p))
			return p;
	return 0;
}

struct core *core_new(struct conf *conf, const struct core_app *app)
{
	struct core *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->conf = conf;
	c->app = app;
	/* This node's id: random per start, never 0 (docs/cluster-protocol.md). */
	do {
		if (RAND_bytes((unsigned char *)&c->node_id, sizeof(c->node_id)) != 1)
			c->node_id = (uint32_t)time(NULL) ^ (uint32_t)getpid();
	} while (!c->node_id);
	thread_owner_set(&c->owner); /* the loop runs on the creating thread */
	c->inbox_fd = -1;
	c->started = time(NULL);
	c->base = event_base_new();
	/* Three priorities: 1 (the default) for all work, 2 for the group
	 * commit, which so runs once a loop pass has nothing else to do. */
	if (c->base && event_base_priority_init(c->base, 3) != 0)
		goto fail;
	if (!c->base)
		goto fail;
	/* Every delivery waits the same retry_interval: a common timeout
	 * keeps 10,000 such timers O(1) each instead of a heap of them. */
	struct timeval rtv = tv_from_seconds(conf->retry_interval);
	c->retry_tv = event_base_init_common_timeout(c->base, &rtv);
	if (!c->retry_tv)
		goto fail;
	c->commit = commit_new(c->base, NULL, NULL);
	if (!c->commit)
		goto fail;
	char err[512];
	if (app->init(c, err, sizeof(err)) != RB_OK) {
		log_error("core: %s", err);
		goto fail;
	}
	struct backend_opts bo = {
		.max_connections = conf->backend_max_connections,
		.max_queue = conf->backend_max_queue,
		.connect_timeout_ms = (int)(conf->backend_connect_timeout * 1000),
		.request_timeout_ms = (int)(conf->backend_timeout * 1000),
		.max_response_bytes = conf->max_response_size,
	};
	c->backend = backend_new(c->base, &bo);
	bo.max_connections = conf->hook_max_connections;
	c->hook_backend = backend_new(c->base, &bo);
	if (!c->hook_backend)
		goto fail;
	c->inbox_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	c->inbox = xq_new(ring_core, c);
	if (!c->backend || c->inbox_fd < 0 || !c->inbox)
		goto fail;
	c->inbox_ev = event_new(c->base, c->inbox_fd, EV_READ | EV_PERSIST, drain_inbox, c);
	c->stop_timer = evtimer_new(c->base, on_stop_timer, c);
	c->sig_term = evsignal_new(c->base, SIGTERM, on_signal, c);
	c->sig_int = evsignal_new(c->base, SIGINT, on_signal, c);
	if (!c->inbox_ev || !c->stop_timer || !c->sig_term || !c->sig_int)
		goto fail;
	event_add(c->inbox_ev, NULL);
	event_add(c->sig_term, NULL);
	event_add(c->sig_int, NULL);

	size_t max_body = conf->max_message_size + 4096;
	c->httpd = httpd_new(c->base, max_body, conf->http_idle_timeout,
			     conf->request_body_timeout, app->http, c);
	if (!c->httpd)
		goto fail;
	int port = conf->port;
	if (!port && !(port = auto_port(conf))) {
		log_error("port = auto: no free port in port_range %s on %s", conf->port_range,
			  conf->bind);
		goto fail;
	}
	c->door = door_new(c->base, c->httpd, conf->bind, port, conf->handshake_timeout,
			   on_upgrade, c);
	if (!c->door)
		goto fail;
	c->port = door_port(c->door);
	if (conf->api_port && httpd_listen(c->httpd, conf->bind, conf->api_port) != RB_OK)
		goto fail;
	if (conf->tls_port) {
		c->tls_door = net_listen(c->base, "tls", conf->bind, conf->tls_port, 4096,
					 on_tls_accept, c);
		if (!c->tls_door)
			goto fail;
	}
	char host[256];
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = 0;
	snprintf(c->server_name, sizeof(c->server_name), "%s:%d", host, c->port);

	struct edge_opts eo = {
		.bind = conf->bind,
		.tls_port = conf->tls_port,
		.tls_cert = conf->tls_cert,
		.tls_key = conf->tls_key,
		.max_message_size = conf->max_message_size,
		.send_queue_bytes = conf->send_queue_bytes,
		.send_queue_hard_bytes = conf->send_queue_hard_bytes,
		.heartbeat = (int)conf->heartbeat,
		.heartbeat_timeout = (int)conf->heartbeat_timeout,
		.event_loop = strcmp(conf->edge_event_loop, "poll") == 0 ? EDGE_LOOP_POLL
								   : EDGE_LOOP_EPOLL,
	};
	unsigned n = (unsigned)conf->edge_threads;
	if (!n) {
		long cpus = sysconf(_SC_NPROCESSORS_ONLN);
		n = cpus < 1 ? 1 : cpus > EDGE_POOL_MAX ? EDGE_POOL_MAX : (unsigned)cpus;
	}
	c->edges = edge_pool_new(&eo, n, c->inbox);
	if (!c->edges)
		goto fail;
	commit_set_edge(c->commit, to_edges, c->edges);
	return c;
fail:
	log_error("core: start-up failed");
	core_free(c);
	return NULL;
}

int core_run(struct core *c)
{
	sigset_t block, old;

	/* The edge thread must never take SIGTERM/SIGINT: libevent's handler
	 * belongs to the core loop. Block them while spawning it. */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	int rc = edge_pool_start(c->edges);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != RB_OK) {
		log_error("core: cannot start the edge threads");
		return 1;
	}
	unsigned n = edge_pool_size(c->edges);
	if (c->conf->tls_port)
		log_info("rainbow listening on %s:%d, TLS (wss) on port %d, %u edge thread%s",
			 c->conf->bind, c->port, c->conf->tls_port, n, n == 1 ? "" : "s");
	else
		log_info("rainbow listening on %s:%d, %u edge thread%s", c->conf->bind, c->port, n,
			 n == 1 ? "" : "s");
	event_base_dispatch(c->base);
	log_info("rainbow stopped");
	return c->exit_code;
}

void core_free(struct core *c)
{
	if (!c)
		return;
	/* Stop the edge first: nothing may push into our queue after this. */
	edge_pool_stop(c->edges);
	if (c->httpd)
		c->app->stop(c);
	free_conns(c, NULL);
	idmap_free(&c->conns);
	idmap_free(&c->by_identity);
	/* Pending backend calls complete (RB_ECLOSED) while the app's state
	 * still exists; then the last batch commits; then the app goes. */
	backend_free(c->backend);
	backend_free(c->hook_backend);
	c->backend = c->hook_backend = NULL;
	if (c->commit)
		commit_now(c->commit);
	if (c->app)
		c->app->fini(c);
	commit_free(c->commit);
	door_free(c->door);
	net_listener_free(c->tls_door);
	httpd_free(c->httpd);
	edge_pool_free(c->edges);
	if (c->inbox_ev)
		event_free(c->inbox_ev);
	if (c->stop_timer)
		event_free(c->stop_timer);
	if (c->sig_term)
		event_free(c->sig_term);
	if (c->sig_int)
		event_free(c->sig_int);
	xq_free(c->inbox);
	if (c->inbox_fd >= 0)
		close(c->inbox_fd);
	if (c->base)
		event_base_free(c->base);
	free(c);
}
