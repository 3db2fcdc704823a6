/*
 * rainbow.c - librainbow's connections on libwebsockets (see rainbow.h).
 * Everything runs on the thread that calls rb_ctx_run().
 *
 * A struct rb_conn outlives its sockets: each attempt is one client wsi
 * whose opaque user data points at the conn until the wsi is lost
 * (CONNECTION_ERROR, CLIENT_CLOSED or, as a backstop, WSI_DESTROY; the
 * first of them clears the pointer, so the conn hears of each loss once).
 * Each conn has one timer (in the context's heap, timers.h, which one lws
 * timer drives) armed for the soonest of: the next attempt, a send
 * deadline, a heartbeat step. A conn that is DONE moves to
 * the context's dead list and is freed after the callback that ended it has
 * returned to lws (rb_ctx_run's loop), never inside it.
 */
#include "clients/c/rainbow.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "clients/c/backoff.h"
#include "clients/c/dedup.h"
#include "clients/c/outq.h"
#include "clients/c/timers.h"
#include "clients/c/url.h"
#include "protocol/packet.h"

_Static_assert(LWS_PRE <= RBC_HEADROOM, "RBC_HEADROOM must cover LWS_PRE");

#define US_PER_MS 1000LL
#define US_PER_S 1000000LL
#define DEF_SEND_TIMEOUT_MS 30000
#define DEF_RECONNECT_MIN_MS 500
#define DEF_RECONNECT_MAX_MS 30000
#define DEF_HB_TIMEOUT_S 10
#define DEF_MAX_INFLIGHT 64
#define DEF_MAX_MESSAGE (1024 * 1024)
#define DEF_CONNECT_TIMEOUT_S 10
#define DEF_MAX_CONNECTING 256
#define DEDUP_WINDOW 4096
#define SUBPROTOCOL "rainbow.v2"

enum cstate {
	ST_WAIT,       /* no socket; the next attempt at connect_at */
	ST_CONNECTING, /* a wsi: TCP, TLS, upgrade, then (v2) HELLO */
	ST_OPEN,       /* sends flow */
	ST_DONE,       /* stopped for good; on the dead list */
};

/* A control packet to write (ACK, REC, REL, COM), framing headroom first. */
struct ctl {
	struct ctl *next;
	size_t len;
	uint8_t buf[];
};

struct rb_conn {
	struct rb_ctx *ctx;
	struct rb_conn *prev, *next; /* the context's live or dead list */
	struct rb_conn *park_next;   /* the context's queue of attempts */
	struct lws *wsi;             /* the current attempt, or NULL */
	struct rbc_timer timer;      /* the one timer, in ctx->timers */
	char *host, *path;           /* one allocation: host NUL path NUL */
	char *peer_reason;           /* the gateway's close reason, or NULL */
	const char *lost_reason;     /* why we dropped the socket ourselves */
	rb_push_fn on_push;
	rb_event_fn on_event;
	void *user;
	struct rbc_outq out;
	struct ctl *ctl_head, *ctl_tail;
	struct rbc_dedup dedup;      /* QoS 2 pushes between REC and REL */
	uint8_t *rx;                 /* reassembly of a fragmented message */
	size_t rx_len, rx_cap;
	size_t max_message;
	size_t peer_max;             /* HELLO's max_message_size; 0: unknown */
	struct rbc_backoff bo;
	int64_t connect_at;          /* ST_WAIT: the next attempt */
	int64_t last_rx;             /* the last frame or pong (or the upgrade) */
	int32_t send_timeout_ms;
	uint16_t port;
	uint16_t peer_code;          /* the gateway's close code, 0: none */
	uint16_t hb;                 /* heartbeat interval in use, seconds */
	uint16_t hb_default, hb_timeout;
	uint8_t state;               /* enum cstate */
	bool tls, insecure, v1, no_reconnect;
	bool v1_session;             /* v1 with a device and session=1 */
	bool established;            /* the upgrade completed on this wsi */
	bool v2;                     /* this wsi speaks rainbow.v2 */
	bool closing;                /* rb_conn_close() was called */
	bool close_frame;            /* write a close frame next */
	bool ping_due, ping_out;
	bool rx_drop;                /* the message being received is too big */
	bool slot;                   /* counted in ctx->nconnecting */
	bool parked;                 /* waiting for a connecting slot */
	char identity[65];
};

struct rb_ctx {
	struct lws_context *lws;
	struct rb_conn *live, *dead;
	size_t nlive;
	uint32_t nconnecting;        /* attempts under way (TCP to HELLO) */
	uint32_t max_connecting;
	struct rb_conn *park_head, *park_tail; /* attempts waiting for a slot */
	struct rbc_timers timers;    /* every conn's timer */
	lws_sorted_usec_list_t timer_sul; /* due at the heap's top */
	int64_t sched_at;            /* when timer_sul fires; 0: idle */
	lws_sorted_usec_list_t run_sul;
	uint64_t rng;
	int connect_timeout_s;
	bool brk, run_over;
	bool freeing;
};

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * US_PER_S + ts.tv_nsec / 1000;
}

/* xorshift64*: jitter only, nothing secret. */
static uint32_t rnd(struct rb_ctx *ctx)
{
	uint64_t x = ctx->rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ctx->rng = x;
	return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static void list_del(struct rb_conn **head, struct rb_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

static void list_add(struct rb_conn **head, struct rb_conn *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

static void emit(struct rb_conn *c, const struct rb_event *ev)
{
	if (c->on_event)
		c->on_event(c, ev, c->user);
}

static void on_timers(lws_sorted_usec_list_t *sul);

/* The lws timer follows the heap's earliest deadline. */
static void reschedule(struct rb_ctx *ctx)
{
	struct rbc_timer *t = rbc_timers_top(&ctx->timers);
	int64_t d;

	if (!t) {
		if (ctx->sched_at)
			lws_sul_cancel(&ctx->timer_sul);
		ctx->sched_at = 0;
		return;
	}
	if (ctx->sched_at == t->at)
		return;
	ctx->sched_at = t->at;
	d = t->at - now_us();
	lws_sul_schedule(ctx->lws, 0, &ctx->timer_sul, on_timers, d > 0 ? d : 0);
}

/* Make c's timer fire no later than at (0: nothing to add). Never
 * allocates: rb_conn_new reserved a slot. */
static void arm(struct rb_conn *c, int64_t at)
{
	if (!at || c->state == ST_DONE || (rbc_timer_armed(&c->timer) && c->timer.at <= at))
		return;
	if (rbc_timers_set(&c->ctx->timers, &c->timer, at) == RB_OK)
		reschedule(c->ctx);
}

/*
 * At most max_connecting attempts are under way at once; the others wait
 * in order (parked). Thousands of handshakes at once would each hold lws
 * timeouts (a linear list in lws 4.1) and flood the gateway's accept queue.
 */
static void park(struct rb_conn *c)
{
	struct rb_ctx *ctx = c->ctx;

	c->parked = true;
	c->park_next = NULL;
	if (ctx->park_tail)
		ctx->park_tail->park_next = c;
	else
		ctx->park_head = c;
	ctx->park_tail = c;
}

static void unpark(struct rb_conn *c)
{
	struct rb_ctx *ctx = c->ctx;
	struct rb_conn *prev = NULL;

	if (!c->parked)
		return;
	for (struct rb_conn *it = ctx->park_head; it; prev = it, it = it->park_next) {
		if (it != c)
			continue;
		if (prev)
			prev->park_next = c->park_next;
		else
			ctx->park_head = c->park_next;
		if (ctx->park_tail == c)
			ctx->park_tail = prev;
		break;
	}
	c->parked = false;
	c->park_next = NULL;
}

/* The attempt of c is over (open or lost): the next parked one may go. */
static void release_slot(struct rb_conn *c)
{
	struct rb_ctx *ctx = c->ctx;
	struct rb_conn *next = ctx->park_head;

	if (!c->slot)
		return;
	c->slot = false;
	ctx->nconnecting--;
	if (next) {
		unpark(next);
		arm(next, now_us());
	}
}

static bool want_more(const struct rb_conn *c)
{
	return c->close_frame || c->ping_due || c->ctl_head ||
	       (c->state == ST_OPEN && !c->closing && rbc_outq_ready(&c->out));
}

static void want_write(struct rb_conn *c)
{
	if (c->wsi && c->established && want_more(c))
		lws_callback_on_writable(c->wsi);
}

static void ctl_clear(struct rb_conn *c)
{
	while (c->ctl_head) {
		struct ctl *k = c->ctl_head;
		c->ctl_head = k->next;
		free(k);
	}
	c->ctl_tail = NULL;
}

/* Queue ACK/REC (with a payload), REL or COM. Out of memory: the answer is
 * lost, which the gateway survives (it retransmits). */
static void queue_ctl(struct rb_conn *c, uint8_t cmd, uint16_t msgid, const void *payload,
		      size_t len)
{
	struct pkt p = { .cmd = cmd, .msgid = msgid, .payload = payload, .payload_len = len };
	size_t cap = PKT_MAX_HDR + len;
	struct ctl *k;

	if (!c->wsi)
		return;
	k = malloc(sizeof(*k) + LWS_PRE + cap);
	if (!k)
		return;
	k->next = NULL;
	k->len = pkt_encode(&p, k->buf + LWS_PRE, cap);
	assert(k->len > 0);
	if (c->ctl_tail)
		c->ctl_tail->next = k;
	else
		c->ctl_head = k;
	c->ctl_tail = k;
	want_write(c);
}

/* Complete m's send (calling its callback once) and free it, unless it is
 * a QoS 2 send going on to REL (status OK with releasing). */
static void complete(struct rb_conn *c, struct rbc_msg *m, enum rb_send_status st,
		     const uint8_t *reply, size_t reply_len, const struct rb_nak *nak,
		     bool releasing)
{
	struct rb_result r = { .status = st, .msgid = m->msgid, .reply = reply,
			       .reply_len = reply_len };
	rb_send_fn cb = m->cb;
	void *arg = m->arg;

	if (nak)
		r.nak = *nak;
	else
		r.nak.message = "";
	if (!r.reply)
		r.reply = (const uint8_t *)"";
	m->cb = NULL;
	if (!releasing)
		free(m);
	if (cb)
		cb(c, &r, arg);
}

static void fail_all(struct rb_conn *c, enum rb_send_status st)
{
	struct rbc_msg *m;

	while ((m = rbc_outq_pop(&c->out)))
		complete(c, m, st, NULL, 0, NULL, false);
}

/* Stopped for good: no socket left (asserted), no timer, sends failed. */
static void conn_done(struct rb_conn *c, int code, const char *reason)
{
	struct rb_ctx *ctx = c->ctx;
	struct rb_event ev = { .type = RB_EV_DONE, .code = code,
			       .reason = reason ? reason : "", .retry_ms = -1, .identity = "" };

	assert(!c->wsi);
	if (c->state == ST_DONE)
		return;
	c->state = ST_DONE;
	rbc_timers_del(&ctx->timers, &c->timer);
	reschedule(ctx);
	unpark(c);
	release_slot(c);
	list_del(&ctx->live, c);
	ctx->nlive--;
	list_add(&ctx->dead, c);
	fail_all(c, RB_SENT_CLOSED);
	emit(c, &ev);
}

/* Close codes and upgrade refusals after which trying again cannot help. */
static bool terminal(int code)
{
	return code == 1000 || (code >= 4000 && code <= 4499) || (code >= 400 && code <= 499);
}

/* The socket is gone (code: the gateway's close code or HTTP status, 0). */
static void conn_lost(struct rb_conn *c, int code, const char *reason)
{
	struct rb_event ev = { .type = RB_EV_CLOSED, .code = code, .identity = "" };
	char why[160];
	uint32_t delay;

	release_slot(c);
	c->wsi = NULL;
	c->established = false;
	c->v2 = false;
	c->close_frame = c->ping_due = c->ping_out = false;
	c->rx_drop = false;
	c->peer_code = 0;
	c->lost_reason = NULL;
	free(c->rx);
	c->rx = NULL;
	c->rx_len = c->rx_cap = 0;
	ctl_clear(c);
	rbc_outq_requeue(&c->out);
	snprintf(why, sizeof(why), "%s", reason ? reason : "");
	free(c->peer_reason);
	c->peer_reason = NULL;
	if (c->state == ST_DONE)
		return;
	if (c->closing || c->no_reconnect || terminal(code)) {
		conn_done(c, code, why);
		return;
	}
	delay = rbc_backoff_next(&c->bo, rnd(c->ctx));
	c->state = ST_WAIT;
	c->connect_at = now_us() + (int64_t)delay * US_PER_MS;
	ev.reason = why;
	ev.retry_ms = (int)delay;
	emit(c, &ev);
	if (c->state == ST_WAIT)
		arm(c, c->closing ? now_us() : c->connect_at);
}

/* Called from the lws callbacks that end a wsi; the first one counts. */
static void wsi_lost(struct rb_conn *c, struct lws *wsi, int code, const char *reason)
{
	lws_set_opaque_user_data(wsi, NULL);
	if (c->wsi && c->wsi != wsi)
		return; /* cannot happen: each conn has one wsi at a time */
	conn_lost(c, code, reason);
}

/* No lws validity timer per wsi: the heartbeat is ours (tick()), and lws
 * 4.1 re-inserts that timer into a linear list on every frame received. */
static const lws_retry_bo_t no_validity_checks;

static void conn_connect(struct rb_conn *c)
{
	struct lws_client_connect_info i;
	char hosthdr[RBC_URL_HOST_MAX + 16];
	struct lws *wsi;
	bool v6 = strchr(c->host, ':') != NULL;

	if (c->ctx->nconnecting >= c->ctx->max_connecting) {
		park(c); /* release_slot() arms it again */
		return;
	}
	c->slot = true;
	c->ctx->nconnecting++;
	if (c->port == (c->tls ? 443 : 80))
		snprintf(hosthdr, sizeof(hosthdr), v6 ? "[%s]" : "%s", c->host);
	else
		snprintf(hosthdr, sizeof(hosthdr), v6 ? "[%s]:%u" : "%s:%u", c->host, c->port);
	memset(&i, 0, sizeof(i));
	i.context = c->ctx->lws;
	i.address = c->host;
	i.port = c->port;
	i.path = c->path;
	i.host = hosthdr;
	i.origin = hosthdr;
	i.protocol = c->v1 ? NULL : SUBPROTOCOL;
	i.local_protocol_name = "rainbow-client";
	i.opaque_user_data = c;
	i.alpn = "http/1.1";
	i.retry_and_idle_policy = &no_validity_checks;
	if (c->tls) {
		i.ssl_connection = LCCSCF_USE_SSL;
		if (c->insecure)
			i.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_ALLOW_EXPIRED |
					    LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK;
	}
	c->state = ST_CONNECTING;
	c->established = false;
	c->wsi = NULL;
	wsi = lws_client_connect_via_info(&i);
	/* A failure lws reported from inside the call already moved us on. */
	if (c->state != ST_CONNECTING || c->wsi)
		return;
	if (!wsi) {
		conn_lost(c, 0, "cannot start the connection");
		return;
	}
	c->wsi = wsi;
	/* the handshake's own timeouts are lws' (connect_timeout_s); HELLO's
	 * is ours, checked from the upgrade on */
}

static void conn_open(struct rb_conn *c, bool session_present)
{
	struct rb_event ev = { .type = RB_EV_OPEN, .v2 = c->v2, .identity = c->identity,
			       .session_present = session_present, .reason = "",
			       .retry_ms = -1 };

	c->state = ST_OPEN;
	c->last_rx = now_us();
	rbc_backoff_reset(&c->bo);
	release_slot(c);
	/* Without a resumed session the gateway starts its message ids afresh:
	 * an id held from the last connection would hide a new push. (A v1
	 * session cannot tell; it resumes whenever it has not expired.) */
	if (c->v2 ? !session_present : !c->v1_session)
		rbc_dedup_free(&c->dedup);
	if (!c->v2) {
		c->identity[0] = '\0';
		c->hb = c->hb_default;
		c->peer_max = 0;
	}
	/* QoS 2 sends that had their REC: REL again (the gateway answers COM
	 * also for an id it no longer knows). */
	for (struct rbc_msg *m = c->out.f_head; m; m = m->next)
		if (m->state == RBC_RELEASING)
			queue_ctl(c, PKT_REL, m->msgid, NULL, 0);
	ev.heartbeat = c->hb;
	emit(c, &ev);
	if (c->state != ST_OPEN)
		return;
	want_write(c);
	arm(c, c->hb ? c->last_rx + (int64_t)c->hb * US_PER_S : 0);
}

/* ------------------------------------------------------------------ input */

static void on_hello(struct rb_conn *c, const uint8_t *json, size_t len)
{
	json_t *o = json_loadb((const char *)json, len, 0, NULL);
	json_t *v;
	bool session = false;

	if (c->state != ST_CONNECTING || !c->v2) {
		json_decref(o);
		return;
	}
	c->identity[0] = '\0';
	c->hb = c->hb_default;
	c->peer_max = 0;
	if (json_is_object(o)) {
		v = json_object_get(o, "identity");
		if (json_is_string(v))
			snprintf(c->identity, sizeof(c->identity), "%s", json_string_value(v));
		session = json_is_true(json_object_get(o, "session_present"));
		v = json_object_get(o, "heartbeat");
		if (json_is_integer(v) && json_integer_value(v) > 0 &&
		    json_integer_value(v) <= 3600)
			c->hb = (uint16_t)json_integer_value(v);
		v = json_object_get(o, "max_message_size");
		if (json_is_integer(v) && json_integer_value(v) > 0)
			c->peer_max = (size_t)json_integer_value(v);
	}
	json_decref(o);
	conn_open(c, session);
}

static void parse_nak(const uint8_t *json, size_t len, uint16_t msgid, struct rb_nak *n,
		      char *msg, size_t cap)
{
	json_t *o = json_loadb((const char *)json, len, 0, NULL);
	json_t *v;

	n->msgid = msgid;
	n->code = 0;
	n->temporary = false;
	snprintf(msg, cap, "%s", "");
	if (json_is_object(o)) {
		v = json_object_get(o, "code");
		if (json_is_integer(v))
			n->code = (int)json_integer_value(v);
		n->temporary = json_is_true(json_object_get(o, "temporary"));
		v = json_object_get(o, "message");
		if (json_is_string(v))
			snprintf(msg, cap, "%s", json_string_value(v));
	} else {
		snprintf(msg, cap, "%.*s", (int)(len < cap ? len : cap - 1), (const char *)json);
	}
	json_decref(o);
	n->message = msg;
}

static void on_push(struct rb_conn *c, const struct pkt *p)
{
	struct rb_push push = { .msgtype = p->msgtype, .msgid = p->msgid, .qos = p->qos,
				.dup = p->dup, .data = p->payload, .len = p->payload_len };

	if (p->qos == 2 && rbc_dedup_add(&c->dedup, p->msgid) == 1) {
		/* Delivered already and not released: answer again, quietly. */
		queue_ctl(c, PKT_REC, p->msgid, NULL, 0);
		return;
	}
	if (c->on_push)
		c->on_push(c, &push, c->user);
	if (p->qos == 1)
		queue_ctl(c, PKT_ACK, p->msgid, push.reply, push.reply ? push.reply_len : 0);
	else if (p->qos == 2)
		queue_ctl(c, PKT_REC, p->msgid, push.reply, push.reply ? push.reply_len : 0);
}

static void on_packet(struct rb_conn *c, const uint8_t *buf, size_t len)
{
	struct pkt p;
	struct rbc_msg *m;

	if (len >= 1 && buf[0] >> 4 == PKT_HELLO) {
		on_hello(c, buf + 1, len - 1);
		return;
	}
	if (pkt_decode(buf, len, c->v2, &p, NULL) != RB_OK)
		return; /* nothing sensible to answer a malformed packet with */
	switch (p.cmd) {
	case PKT_SEND:
		on_push(c, &p);
		break;
	case PKT_ACK:
		m = rbc_outq_find(&c->out, p.msgid);
		if (m && m->qos == 1 && m->state == RBC_SENT) {
			rbc_outq_drop(&c->out, m);
			complete(c, m, RB_SENT_OK, p.payload, p.payload_len, NULL, false);
		}
		break;
	case PKT_REC:
		m = rbc_outq_find(&c->out, p.msgid);
		if (m && m->qos != 2)
			break;
		/* Also for an id we gave up on (timed out): REL frees the
		 * gateway's state, and COM comes for an unknown id too. */
		queue_ctl(c, PKT_REL, p.msgid, NULL, 0);
		if (m && m->state == RBC_SENT) {
			m->state = RBC_RELEASING;
			m->deadline = 0;
			complete(c, m, RB_SENT_OK, p.payload, p.payload_len, NULL, true);
		}
		break;
	case PKT_COM:
		m = rbc_outq_find(&c->out, p.msgid);
		if (m && m->state == RBC_RELEASING) {
			rbc_outq_drop(&c->out, m);
			free(m);
		}
		break;
	case PKT_REL:
		rbc_dedup_remove(&c->dedup, p.msgid);
		queue_ctl(c, PKT_COM, p.msgid, NULL, 0);
		break;
	case PKT_NAK: {
		struct rb_nak nak;
		char msg[256];

		parse_nak(p.payload, p.payload_len, p.msgid, &nak, msg, sizeof(msg));
		m = p.msgid ? rbc_outq_find(&c->out, p.msgid) : NULL;
		if (m && m->state == RBC_SENT) {
			rbc_outq_drop(&c->out, m);
			complete(c, m, RB_SENT_NAK, NULL, 0, &nak, false);
		} else {
			struct rb_event ev = { .type = RB_EV_NAK, .nak = &nak, .identity = "",
					       .reason = "", .retry_ms = -1 };
			emit(c, &ev);
		}
		break;
	}
	default:
		break;
	}
}

static int on_receive(struct rb_conn *c, struct lws *wsi, const uint8_t *in, size_t len)
{
	bool first = lws_is_first_fragment(wsi);
	bool final = lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0;

	c->last_rx = now_us();
	c->ping_out = false;
	if (first && final) {
		/* the usual case: one frame, no copy */
		if (len <= c->max_message)
			on_packet(c, in, len);
		return 0;
	}
	if (first) {
		c->rx_len = 0;
		c->rx_drop = false;
	}
	if (!c->rx_drop && c->rx_len + len > c->max_message)
		c->rx_drop = true;
	if (!c->rx_drop && len) {
		if (c->rx_len + len > c->rx_cap) {
			size_t ncap = c->rx_cap ? c->rx_cap : 1024;
			uint8_t *n;
			while (ncap < c->rx_len + len)
				ncap *= 2;
			n = realloc(c->rx, ncap);
			if (!n) {
				c->rx_drop = true;
				goto out;
			}
			c->rx = n;
			c->rx_cap = ncap;
		}
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
	}
out:
	if (!final)
		return 0;
	if (!c->rx_drop)
		on_packet(c, c->rx ? c->rx : (const uint8_t *)"", c->rx_len);
	c->rx_len = 0;
	c->rx_drop = false;
	if (c->rx_cap > 4096) {
		/* no large buffer kept per idle connection */
		free(c->rx);
		c->rx = NULL;
		c->rx_cap = 0;
	}
	return 0;
}

/* ----------------------------------------------------------------- output */

/* One write per writeable callback: close frame, ping, control packets
 * (answers go before new sends), then the next SEND. */
static int on_writeable(struct rb_conn *c, struct lws *wsi)
{
	struct rbc_msg *m;

	if (c->close_frame && !c->ctl_head) {
		/* after the answers already queued (ACK, REC, COM) */
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, (unsigned char *)"bye", 3);
		c->lost_reason = "closed by the client";
		return -1;
	}
	if (c->ping_due) {
		uint8_t b[LWS_PRE + 1];
		c->ping_due = false;
		if (lws_write(wsi, b + LWS_PRE, 0, LWS_WRITE_PING) < 0)
			return -1;
	} else if (c->ctl_head) {
		struct ctl *k = c->ctl_head;
		int n;
		c->ctl_head = k->next;
		if (!c->ctl_head)
			c->ctl_tail = NULL;
		n = lws_write(wsi, k->buf + LWS_PRE, k->len, LWS_WRITE_BINARY);
		size_t len = k->len;
		free(k);
		if (n < (int)len)
			return -1;
	} else if (c->state == ST_OPEN && !c->closing && (m = rbc_outq_take(&c->out))) {
		size_t len;
		uint8_t *p;
		int n;

		if (c->peer_max && m->len + PKT_MAX_HDR > c->peer_max) {
			/* the gateway would close with 1009, and a resend after
			 * the reconnect would do it again */
			if (m->qos)
				rbc_outq_drop(&c->out, m);
			complete(c, m, RB_SENT_TOOBIG, NULL, 0, NULL, false);
			goto more;
		}
		p = rbc_msg_frame(m, &len);
		n = lws_write(wsi, p, len, LWS_WRITE_BINARY);
		if (m->qos == 0)
			complete(c, m, n < (int)len ? RB_SENT_CLOSED : RB_SENT_OK, NULL, 0, NULL,
				 false);
		if (n < (int)len)
			return -1;
	}
more:
	if (c->wsi == wsi && want_more(c))
		lws_callback_on_writable(wsi);
	return 0;
}

/* -------------------------------------------------------------- the timer */

static void kill_wsi(struct rb_conn *c, const char *why)
{
	c->lost_reason = why;
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void tick(struct rb_conn *c)
{
	int64_t now = now_us(), next = 0;
	struct rbc_msg *m;

	if (c->state == ST_DONE)
		return;
	if (c->closing && !c->wsi) {
		conn_done(c, 0, "closed by the client");
		return;
	}
	while ((m = rbc_outq_expired(&c->out, now, &next))) {
		complete(c, m, RB_SENT_TIMEOUT, NULL, 0, NULL, false);
		if (c->state == ST_DONE)
			return;
	}
	switch (c->state) {
	case ST_WAIT:
		if (c->closing || c->parked)
			break;
		if (now >= c->connect_at) {
			conn_connect(c);
			if (c->state == ST_DONE)
				return;
			if (c->state == ST_WAIT)
				next = next && next < c->connect_at ? next : c->connect_at;
		} else if (!next || c->connect_at < next) {
			next = c->connect_at;
		}
		break;
	case ST_CONNECTING:
		if (c->established && c->wsi && !c->closing) {
			/* the upgrade is done; HELLO must follow */
			int64_t limit = c->last_rx + (int64_t)c->ctx->connect_timeout_s * US_PER_S;
			if (now >= limit)
				kill_wsi(c, "no HELLO from the gateway");
			else if (!next || limit < next)
				next = limit;
		}
		break;
	case ST_OPEN:
		if (c->hb && c->wsi && !c->closing) {
			int64_t ping_at = c->last_rx + (int64_t)c->hb * US_PER_S;
			int64_t dead_at = ping_at + (int64_t)c->hb_timeout * US_PER_S;
			int64_t at;
			if (now >= dead_at) {
				kill_wsi(c, "heartbeat timeout");
				break;
			}
			if (now >= ping_at && !c->ping_out) {
				c->ping_due = c->ping_out = true;
				want_write(c);
			}
			at = c->ping_out ? dead_at : ping_at;
			if (!next || at < next)
				next = at;
		}
		break;
	default:
		break;
	}
	arm(c, next);
}

static void on_timers(lws_sorted_usec_list_t *sul)
{
	struct rb_ctx *ctx = lws_container_of(sul, struct rb_ctx, timer_sul);
	int64_t now = now_us();
	uint32_t budget = ctx->timers.len; /* a timer re-armed at once waits a round */
	struct rbc_timer *t;

	ctx->sched_at = 0;
	while (budget-- && (t = rbc_timers_top(&ctx->timers)) && t->at <= now) {
		rbc_timers_del(&ctx->timers, t);
		tick(lws_container_of(t, struct rb_conn, timer));
	}
	reschedule(ctx);
}

/* ------------------------------------------------------- lws' callback */

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
		    size_t len)
{
	struct rb_conn *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;

	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (c) {
			int status = (int)lws_http_client_http_response(wsi);
			char why[160];
			snprintf(why, sizeof(why), "%s", in ? (const char *)in : "connection failed");
			if (status >= 200 && status != 101 && status <= 599)
				snprintf(why, sizeof(why), "upgrade refused: HTTP %d", status);
			else
				status = 0;
			wsi_lost(c, wsi, status, why);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_FILTER_PRE_ESTABLISH:
		if (c) {
			char proto[32];
			int n = lws_hdr_copy(wsi, proto, sizeof(proto), WSI_TOKEN_PROTOCOL);
			c->v2 = !c->v1 && n > 0 && !strcmp(proto, SUBPROTOCOL);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED:
		if (!c)
			return -1;
		c->established = true;
		c->last_rx = now_us();
		if (c->closing) {
			c->close_frame = true;
			want_write(c);
		} else if (!c->v2) {
			conn_open(c, false);
		} else {
			arm(c, c->last_rx + (int64_t)c->ctx->connect_timeout_s * US_PER_S);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (!c)
			return -1;
		return on_receive(c, wsi, in, len);
	case LWS_CALLBACK_CLIENT_RECEIVE_PONG:
		if (c) {
			c->last_rx = now_us();
			c->ping_out = false;
		}
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		if (!c)
			return -1;
		return on_writeable(c, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (c && len >= 2) {
			const uint8_t *b = in;
			c->peer_code = (uint16_t)(b[0] << 8 | b[1]);
			free(c->peer_reason);
			c->peer_reason = strndup((const char *)b + 2, len - 2);
		}
		return 0;
	case LWS_CALLBACK_CLIENT_CLOSED:
	case LWS_CALLBACK_WSI_DESTROY:
		if (c) {
			char why[160];
			if (c->peer_code)
				snprintf(why, sizeof(why), "%s", c->peer_reason ? c->peer_reason : "");
			else
				snprintf(why, sizeof(why), "%s", c->lost_reason ? c->lost_reason :
					 "connection lost");
			wsi_lost(c, wsi, c->peer_code, why);
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
	{ "rainbow-client", callback, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

/* ------------------------------------------------------------ the API */

static void reap(struct rb_ctx *ctx)
{
	while (ctx->dead) {
		struct rb_conn *c = ctx->dead;
		list_del(&ctx->dead, c);
		rbc_dedup_free(&c->dedup);
		ctl_clear(c);
		free(c->rx);
		free(c->peer_reason);
		free(c->host);
		free(c);
	}
}

struct rb_ctx *rb_ctx_new(const struct rb_ctx_opts *opts)
{
	struct lws_context_creation_info info;
	struct rb_ctx *ctx = calloc(1, sizeof(*ctx));
	struct timespec ts;

	if (!ctx)
		return NULL;
	ctx->connect_timeout_s = opts && opts->connect_timeout_s > 0 ? opts->connect_timeout_s
								    : DEF_CONNECT_TIMEOUT_S;
	ctx->max_connecting = opts && opts->max_connecting > 0 ? (uint32_t)opts->max_connecting
							       : DEF_MAX_CONNECTING;
	clock_gettime(CLOCK_REALTIME, &ts);
	ctx->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
		   ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)ctx;
	if (!ctx->rng)
		ctx->rng = 0x9E3779B97F4A7C15ULL;
	/* lws' log level is per process */
	lws_set_log_level(opts && opts->lws_log_level ? opts->lws_log_level : LLL_ERR, NULL);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.timeout_secs = (unsigned)ctx->connect_timeout_s;
	info.connect_timeout_secs = (unsigned)ctx->connect_timeout_s;
	info.gid = -1;
	info.uid = -1;
	info.user = ctx;
	if (opts && opts->ca_file)
		info.client_ssl_ca_filepath = opts->ca_file;
	ctx->lws = lws_create_context(&info);
	if (!ctx->lws) {
		free(ctx);
		return NULL;
	}
	return ctx;
}

static void run_over(lws_sorted_usec_list_t *sul)
{
	struct rb_ctx *ctx = lws_container_of(sul, struct rb_ctx, run_sul);

	/* lws runs ripe timers before it computes its poll() wait, so the
	 * poll must be woken or it sleeps until the next event */
	ctx->run_over = true;
	lws_cancel_service(ctx->lws);
}

int rb_ctx_run(struct rb_ctx *ctx, int timeout_ms)
{
	int rc = RB_OK;

	assert(!ctx->freeing);
	ctx->brk = false;
	ctx->run_over = false;
	if (timeout_ms >= 0)
		lws_sul_schedule(ctx->lws, 0, &ctx->run_sul, run_over,
				 (lws_usec_t)timeout_ms * US_PER_MS);
	reap(ctx);
	while (!ctx->brk && !ctx->run_over && ctx->live) {
		if (lws_service(ctx->lws, 0) < 0) {
			rc = RB_EIO;
			break;
		}
		reap(ctx);
	}
	lws_sul_cancel(&ctx->run_sul);
	ctx->brk = false;
	return rc;
}

void rb_ctx_break(struct rb_ctx *ctx)
{
	ctx->brk = true;
	lws_cancel_service(ctx->lws);
}

size_t rb_ctx_conns(const struct rb_ctx *ctx)
{
	return ctx->nlive;
}

void rb_ctx_free(struct rb_ctx *ctx)
{
	if (!ctx)
		return;
	ctx->freeing = true;
	for (struct rb_conn *c = ctx->live; c; c = c->next) {
		/* lws' callbacks during the context's destruction find no conn */
		if (c->wsi)
			lws_set_opaque_user_data(c->wsi, NULL);
		c->wsi = NULL;
		c->state = ST_DONE;
		rbc_timers_del(&ctx->timers, &c->timer);
		fail_all(c, RB_SENT_CLOSED);
	}
	lws_sul_cancel(&ctx->timer_sul);
	lws_context_destroy(ctx->lws);
	while (ctx->live) {
		struct rb_conn *c = ctx->live;
		list_del(&ctx->live, c);
		list_add(&ctx->dead, c);
	}
	reap(ctx);
	rbc_timers_free(&ctx->timers);
	free(ctx);
}

struct rb_conn *rb_conn_new(struct rb_ctx *ctx, const struct rb_conn_opts *o)
{
	struct rbc_url u;
	char path[RBC_URL_PATH_MAX];
	struct rb_conn *c;
	size_t hl, pl;
	int rc = RB_OK;

	if (!ctx || !o || ctx->freeing || rbc_url_parse(o->url, &u) != RB_OK || !u.ws)
		return NULL;
	if (u.path[0] == '/')
		snprintf(path, sizeof(path), "%s", u.path);
	else if (snprintf(path, sizeof(path), "/connect/%s", u.path) >= (int)sizeof(path))
		return NULL;
	if (o->device)
		rc |= rbc_query_add(path, sizeof(path), "X-DEVICEID", o->device);
	if (o->platform)
		rc |= rbc_query_add(path, sizeof(path), "X-CLIENT-OS", o->platform);
	if (o->token)
		rc |= rbc_query_add(path, sizeof(path), "token", o->token);
	if (o->v1 && o->session)
		rc |= rbc_query_add(path, sizeof(path), "session", "1");
	if (rc != RB_OK)
		return NULL;
	if (o->query && *o->query) {
		size_t len = strlen(path);
		char last = len ? path[len - 1] : '\0';
		const char *sep = !strchr(path, '?') ? "?" : (last == '?' || last == '&') ? "" : "&";
		if (len + strlen(sep) + strlen(o->query) >= sizeof(path))
			return NULL;
		strcat(path, sep);
		strcat(path, o->query);
	}
	if (rbc_timers_reserve(&ctx->timers, (uint32_t)ctx->nlive + 1) != RB_OK)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->timer.idx = RBC_TIMER_IDLE;
	hl = strlen(u.host) + 1;
	pl = strlen(path) + 1;
	c->host = malloc(hl + pl);
	if (!c->host) {
		free(c);
		return NULL;
	}
	memcpy(c->host, u.host, hl);
	c->path = c->host + hl;
	memcpy(c->path, path, pl);
	c->ctx = ctx;
	c->port = (uint16_t)u.port;
	c->tls = u.tls;
	c->insecure = o->insecure;
	c->v1 = o->v1;
	c->v1_session = o->v1 && o->session && o->device;
	c->no_reconnect = o->no_reconnect;
	c->on_push = o->on_push;
	c->on_event = o->on_event;
	c->user = o->user;
	c->send_timeout_ms = o->send_timeout_ms > 0 ? o->send_timeout_ms : DEF_SEND_TIMEOUT_MS;
	c->bo.min_ms = o->reconnect_min_ms > 0 ? (uint32_t)o->reconnect_min_ms
					       : DEF_RECONNECT_MIN_MS;
	c->bo.max_ms = o->reconnect_max_ms > 0 ? (uint32_t)o->reconnect_max_ms
					       : DEF_RECONNECT_MAX_MS;
	c->hb_default = o->heartbeat_s > 0 && o->heartbeat_s <= 3600 ? (uint16_t)o->heartbeat_s : 0;
	c->hb_timeout = o->heartbeat_timeout_s > 0 && o->heartbeat_timeout_s <= 3600
			? (uint16_t)o->heartbeat_timeout_s : DEF_HB_TIMEOUT_S;
	c->max_message = o->max_message ? o->max_message : DEF_MAX_MESSAGE;
	c->dedup.max = DEDUP_WINDOW;
	rbc_outq_init(&c->out, o->max_inflight > 0 ? (uint32_t)o->max_inflight : DEF_MAX_INFLIGHT);
	c->state = ST_WAIT;
	c->connect_at = now_us();
	list_add(&ctx->live, c);
	ctx->nlive++;
	arm(c, c->connect_at);
	return c;
}

int rb_send(struct rb_conn *c, uint16_t msgtype, int qos, const void *data, size_t len,
	    int timeout_ms, rb_send_fn cb, void *arg)
{
	struct rbc_msg *m;
	int t;

	if (!c || c->state == ST_DONE || c->closing)
		return RB_ECLOSED;
	if (qos < 0 || qos > 2)
		return RB_EINVAL;
	if (c->peer_max && len + PKT_MAX_HDR > c->peer_max)
		return RB_ETOOBIG;
	m = rbc_msg_new(msgtype, (uint8_t)qos, data, len);
	if (!m)
		return RB_ENOMEM;
	m->cb = cb;
	m->arg = arg;
	t = timeout_ms == 0 ? c->send_timeout_ms : timeout_ms;
	if (t > 0)
		m->deadline = now_us() + (int64_t)t * US_PER_MS;
	rbc_outq_push(&c->out, m);
	arm(c, m->deadline);
	want_write(c);
	return RB_OK;
}

void rb_conn_close(struct rb_conn *c)
{
	if (!c || c->state == ST_DONE || c->closing)
		return;
	c->closing = true;
	if (c->wsi && c->established) {
		c->close_frame = true;
		want_write(c);
	} else if (c->wsi) {
		kill_wsi(c, "closed by the client");
	} else {
		arm(c, now_us());
	}
}

size_t rb_conn_pending(const struct rb_conn *c)
{
	return rbc_outq_count(&c->out);
}

bool rb_conn_is_open(const struct rb_conn *c)
{
	return c->state == ST_OPEN;
}

const char *rb_conn_identity(const struct rb_conn *c)
{
	return c->identity;
}

void *rb_conn_user(const struct rb_conn *c)
{
	return c->user;
}

const char *rb_event_name(enum rb_event_type t)
{
	switch (t) {
	case RB_EV_OPEN: return "open";
	case RB_EV_CLOSED: return "closed";
	case RB_EV_NAK: return "nak";
	case RB_EV_DONE: return "done";
	}
	return "?";
}

const char *rb_send_status_name(enum rb_send_status s)
{
	switch (s) {
	case RB_SENT_OK: return "ok";
	case RB_SENT_NAK: return "nak";
	case RB_SENT_TIMEOUT: return "timeout";
	case RB_SENT_CLOSED: return "closed";
	case RB_SENT_TOOBIG: return "too big";
	}
	return "?";
}
