#include "src/msg/deliver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "protocol/packet.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/rbuf.h"
#include "src/edge/seam.h"
#include "src/msg/push.h"
#include "src/msg/session.h"
#include "storage/qos_store.h"

struct delivery {
	struct push_leg leg;          /* its push's receipt, until acknowledged */
	struct core *c;
	uint64_t conn_id;
	uint16_t msgid;
	uint8_t qos;
	bool durable;                 /* a session's: its row outlives the connection */
	enum down_state state;
	struct rbuf *pkt;             /* the shared SEND packet */
	struct event *timer;          /* retransmission */
};

static struct delivery *of_leg(struct push_leg *l)
{
	return (struct delivery *)((char *)l - offsetof(struct delivery, leg));
}

/* ---- deliveries ---- */

/* Free d; forget its stored state too when forget (it is finished). */
static void delivery_free(struct delivery *d, struct conn *cn, bool forget)
{
	struct core *c = d->c;
	push_leg_done(&d->leg, PUSH_FAILED, NULL, 0); /* no-op once answered */
	if (cn) {
		idmap_del(&cn->down, (uint64_t)d->msgid + 1);
		/* Only a session's deliveries are stored: a plain connection's
		 * live in this record alone. */
		if (forget && d->durable)
			conn_store_w(c, cn)->ops->down_end(conn_store(c, cn), conn_key(cn), d->msgid);
	}
	c->n_deliveries--;
	event_free(d->timer);
	rbuf_unref(d->pkt);
	free(d);
}

static void send_copy(struct core *c, struct delivery *d, bool dup)
{
	struct xq_msg *m = xq_msg_new(XQ_SEND, 0, 1);
	if (!m)
		return; /* the retry timer sends it again */
	m->flags = XQF_PATCH;
	m->buf = rbuf_ref(d->pkt);
	m->rcpts[0] = (struct xq_rcpt){ d->conn_id, d->msgid, dup };
	core_push_edge(c, m);
	metric_packet(1, PKT_SEND, d->qos);
}

static void on_retry(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;
	struct core *c = d->c;

	if (d->state == DOWN_WAIT_COM) {
		core_send_packet(c, d->conn_id, PKT_REL, 0, false, d->msgid, 0, NULL, 0);
		metric_retransmit(PKT_REL);
	} else {
		send_copy(c, d, true);
		metric_retransmit(PKT_SEND);
	}
	evtimer_add(d->timer, c->retry_tv);
}

/* A free message id on cn: 1..65535, never one still in flight. */
static uint16_t next_msgid(struct conn *cn)
{
	for (;;) {
		cn->next_msgid = (uint16_t)(cn->next_msgid % 65535 + 1);
		if (!idmap_get(&cn->down, (uint64_t)cn->next_msgid + 1))
			return cn->next_msgid;
	}
}

/* An in-memory delivery of pkt to cn under msgid, in state st. */
static enum push_outcome on_leg_expired(struct push_leg *l);

static struct delivery *delivery_new(struct core *c, struct push *p, struct conn *cn,
				     struct rbuf *pkt, uint8_t qos, uint16_t msgid,
				     enum down_state st)
{
	struct delivery *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->c = c;
	d->conn_id = cn->id;
	d->qos = qos;
	d->msgid = msgid;
	d->durable = cn->session;
	d->state = st;
	d->timer = evtimer_new(c->base, on_retry, d);
	if (!d->timer || idmap_put(&cn->down, (uint64_t)d->msgid + 1, d) != RB_OK) {
		if (d->timer)
			event_free(d->timer);
		free(d);
		return NULL;
	}
	d->pkt = rbuf_ref(pkt);
	d->leg.expire = on_leg_expired;
	if (p)
		push_leg_add(p, &d->leg);
	c->n_deliveries++;
	evtimer_add(d->timer, c->retry_tv);
	return d;
}

/*
 * Make room in a session for one more message of len bytes, per
 * session_overflow. Returns false if the message must not be queued.
 * An online holder loses the in-memory copy of what is dropped.
 */
static bool session_room(struct core *c, const char *device, struct conn *holder, size_t len)
{
	const struct conf *conf = c->conf;
	size_t count, bytes;

	for (;;) {
		if (c->dstore->ops->down_usage(c->dstore, device, &count, &bytes) != RB_OK)
			return false;
		if (count < (size_t)conf->session_max_messages &&
		    bytes + len <= conf->session_max_bytes)
			return true;
		if (strcmp(conf->session_overflow, "drop_oldest") != 0 || count == 0) {
			metric_drop(DROP_SESSION_FULL);
			log_info("device %s: session full (%zu messages, %zu bytes), message refused",
				 device, count, bytes);
			return false;
		}
		uint16_t old;
		core_batch(c);
		if (c->dstore->ops->down_drop_oldest(c->dstore, device, &old) != RB_OK)
			return false;
		metric_drop(DROP_SESSION_FULL);
		log_info("device %s: session full, oldest undelivered message (id %u) dropped",
			 device, old);
		struct delivery *d = holder ? idmap_get(&holder->down, (uint64_t)old + 1) : NULL;
		if (d) {
			push_leg_done(&d->leg, PUSH_FAILED, NULL, 0);
			delivery_free(d, holder, false); /* its row is already gone */
		}
	}
}

/* The push's timeout passed with d unacknowledged: it stops there (the
 * original's contract), except a session's, which keeps it until
 * acknowledged or expired, so it counts as pending. */
static enum push_outcome on_leg_expired(struct push_leg *l)
{
	struct delivery *d = of_leg(l);
	if (d->durable)
		return PUSH_PENDING;
	metric_drop(DROP_UNACKED);
	delivery_free(d, core_conn(d->c, d->conn_id), true);
	return PUSH_FAILED;
}

/*
 * Record a durable delivery of message msg_id for device under a fresh
 * message id. For an online holder the id must also be free in memory.
 */
static int store_delivery(struct core *c, const char *device, struct conn *holder,
			  int64_t msg_id, uint8_t qos, bool sent, uint16_t *msgid)
{
	struct qos_store *st = c->dstore;
	for (int tries = 0; tries < 65535; tries++) {
		uint16_t id;
		if (holder) {
			id = next_msgid(holder);
		} else if (session_next_msgid(c, device, &id) != RB_OK) {
			return RB_EIO;
		}
		core_batch(c);
		int rc = st->ops->down_begin(st, device, id, msg_id, qos);
		if (rc == RB_EEXIST)
			continue; /* a stored delivery not loaded in memory holds it */
		if (rc != RB_OK)
			return rc;
		if (sent)
			st->ops->down_sent(st, device, id);
		*msgid = id;
		return RB_OK;
	}
	return RB_ELIMIT;
}

size_t deliver_push(struct core *c, struct push *p, const uint64_t *conns, size_t n,
		    char *const *devices, size_t ndev, uint8_t qos, uint16_t msgtype,
		    const void *payload, size_t len)
{
	struct pkt hdr = { .cmd = PKT_SEND, .qos = qos, .msgtype = msgtype };
	uint8_t h[PKT_MAX_HDR];
	size_t hl = pkt_encode_header(&hdr, h);
	struct rbuf *pkt = rbuf_new2(h, hl, payload, len);
	struct xq_msg *m = n ? xq_msg_new(XQ_SEND, 0, n) : NULL;
	int64_t msg_id = -1; /* the durable copy, made on the first session */

	if (!pkt || (n && !m)) {
		rbuf_unref(pkt);
		xq_msg_free(m);
		if (p)
			push_count(p, PUSH_FAILED, n + ndev);
		return 0;
	}
	if (m)
		m->buf = rbuf_ref(pkt);
	if (!qos) {
		/* At most once, memory only: offline sessions get nothing. */
		if (!m) {
			rbuf_unref(pkt);
			return 0;
		}
		m->flags = XQF_DROPPABLE;
		for (size_t i = 0; i < n; i++) {
			m->rcpts[i].id = conns[i];
			metric_packet(1, PKT_SEND, 0);
		}
		core_push_edge(c, m);
		rbuf_unref(pkt);
		return n;
	}
	if (m) {
		m->flags = XQF_PATCH;
		m->nids = 0;
	}
	for (size_t i = 0; i < n + ndev; i++) {
		struct conn *cn = i < n ? core_conn(c, conns[i]) : NULL;
		const char *device = i < n ? (cn && cn->session ? cn->device_id : NULL)
					   : devices[i - n];
		if (i < n && !cn) {
			metric_drop(DROP_CLOSED);
			push_count(p, PUSH_FAILED, 1);
			continue;
		}
		if (device) {
			/* The message and this delivery row are committed before
			 * the first send (the SEND waits in the batch). */
			if (!session_room(c, device, cn, len)) {
				push_count(p, PUSH_FAILED, 1);
				continue;
			}
			core_batch(c);
			core_mark(c, BATCH_PUSH);
			if (msg_id < 0 &&
			    c->dstore->ops->msg_add(c->dstore, qos, msgtype, payload, len,
						    &msg_id) != RB_OK) {
				push_count(p, PUSH_FAILED, 1);
				msg_id = -1;
				continue;
			}
		}
		bool over = cn && cn->down.len >= (size_t)c->conf->max_inflight_messages;
		if (!cn || (over && device)) {
			/* Offline, or beyond the in-flight window: it waits in
			 * SQLite for a resume (or a free slot), not in memory. */
			uint16_t id;
			if (store_delivery(c, device, NULL, msg_id, qos, false, &id) != RB_OK) {
				push_count(p, PUSH_FAILED, 1);
				continue;
			}
			if (cn)
				cn->backlog = true;
			push_count(p, PUSH_PENDING, 1);
			continue;
		}
		if (over) {
			log_limited(&cn->log, LOG_INFO,
				    "conn %s: %zu pushes in flight (max_inflight_messages), push failed",
				    cn->identity, cn->down.len);
			metric_drop(DROP_INFLIGHT_LIMIT);
			push_count(p, PUSH_FAILED, 1);
			continue;
		}
		uint16_t id;
		if (device) {
			if (store_delivery(c, device, cn, msg_id, qos, true, &id) != RB_OK) {
				push_count(p, PUSH_FAILED, 1);
				continue;
			}
		} else {
			id = next_msgid(cn);
		}
		struct delivery *d = delivery_new(c, p, cn, pkt, qos, id,
						  qos == 2 ? DOWN_WAIT_REC : DOWN_WAIT_ACK);
		if (!d) {
			if (device)
				conn_store_w(c, cn)->ops->down_end(conn_store(c, cn), conn_key(cn), id);
			push_count(p, PUSH_FAILED, 1);
			continue;
		}
		m->rcpts[m->nids++] = (struct xq_rcpt){ cn->id, d->msgid, 0 };
		metric_packet(1, PKT_SEND, qos);
	}
	size_t sent = m ? m->nids : 0;
	if (sent)
		core_push_edge(c, m);
	else
		xq_msg_free(m);
	rbuf_unref(pkt);
	return sent;
}

struct resume_ctx {
	struct core *c;
	struct conn *cn;
	size_t loaded;
	bool more;
};

static void resume_one(void *arg, uint16_t msgid, enum down_state st, bool sent, uint8_t qos,
		       uint16_t msgtype, const uint8_t *payload, size_t len)
{
	struct resume_ctx *r = arg;
	struct core *c = r->c;
	struct conn *cn = r->cn;

	if (idmap_get(&cn->down, (uint64_t)msgid + 1))
		return; /* already in flight */
	if (cn->down.len >= (size_t)c->conf->max_inflight_messages) {
		r->more = true;
		return;
	}
	struct pkt hdr = { .cmd = PKT_SEND, .qos = qos, .msgtype = msgtype };
	uint8_t h[PKT_MAX_HDR];
	size_t hl = pkt_encode_header(&hdr, h);
	struct rbuf *pkt = rbuf_new2(h, hl, payload, len);
	struct delivery *d = pkt ? delivery_new(c, NULL, cn, pkt, qos, msgid, st) : NULL;
	rbuf_unref(pkt);
	if (!d)
		return;
	r->loaded++;
	if (st == DOWN_WAIT_COM) {
		/* It was acknowledged (REC) before: finish with REL. */
		core_send_packet(c, cn->id, PKT_REL, 0, false, msgid, 0, NULL, 0);
	} else {
		send_copy(c, d, sent);
		if (!sent) {
			core_batch(c);
			c->dstore->ops->down_sent(c->dstore, cn->device_id, msgid);
		}
	}
}

void deliver_resume(struct core *c, struct conn *cn)
{
	struct resume_ctx r = { c, cn, 0, false };

	if (!cn->session)
		return;
	c->dstore->ops->down_list(c->dstore, cn->device_id, resume_one, &r);
	cn->backlog = r.more;
	if (r.loaded)
		log_info("device %s: %zu undelivered messages sent again%s", cn->device_id,
			 r.loaded, r.more ? " (more waiting)" : "");
}

void deliver_on_answer(struct core *c, struct conn *cn, const struct pkt *p)
{
	struct delivery *d = idmap_get(&cn->down, (uint64_t)p->msgid + 1);

	if (!d) {
		/* A late or duplicate answer: harmless, but worth a trace. */
		log_debug("conn %s: %s id %u matches no delivery", cn->identity,
			  pkt_cmd_name(p->cmd), p->msgid);
		if (p->cmd == PKT_REC) /* let it finish its exchange anyway */
			core_send_packet(c, cn->id, PKT_REL, 0, false, p->msgid, 0, NULL, 0);
		return;
	}
	/* Open the batch before anything is answered: the /send/ answer and the
	 * REL must wait for the COMMIT of this transition. */
	if (d->durable)
		core_batch(c);
	switch (p->cmd) {
	case PKT_ACK:
		if (d->qos != 1)
			break;
		if (d->durable)
			core_mark(c, BATCH_ACK);
		push_leg_done(&d->leg, PUSH_ACKED, p->payload, p->payload_len);
		delivery_free(d, cn, true);
		break;
	case PKT_REC:
		if (d->qos != 2)
			break;
		if (d->state == DOWN_WAIT_REC) {
			if (d->durable)
				core_mark(c, BATCH_REC);
			push_leg_done(&d->leg, PUSH_ACKED, p->payload, p->payload_len);
			d->state = DOWN_WAIT_COM;
			if (d->durable)
				conn_store_w(c, cn)->ops->down_set(conn_store(c, cn), conn_key(cn),
								   d->msgid, DOWN_WAIT_COM);
		}
		/* REL now (after the COMMIT), and again every retry_interval
		 * until COM. */
		core_send_packet(c, cn->id, PKT_REL, 0, false, d->msgid, 0, NULL, 0);
		evtimer_add(d->timer, c->retry_tv);
		return;
	case PKT_COM:
		if (d->state == DOWN_WAIT_COM)
			delivery_free(d, cn, true);
		break;
	}
	/* A slot freed: a session's backlog moves up from SQLite. */
	if (cn->backlog && cn->down.len < (size_t)c->conf->max_inflight_messages)
		deliver_resume(c, cn);
}

/* cn is going away: d fails, or stays pending in its session. */
static void finish_gone(struct core *c, struct conn *cn, struct delivery *d)
{
	/* A session keeps its deliveries (rows) for the next holder. */
	if (d->leg.push && !d->durable)
		metric_drop(DROP_CLOSED);
	push_leg_done(&d->leg, d->durable ? PUSH_PENDING : PUSH_FAILED, NULL, 0);
	delivery_free(d, cn, !d->durable);
}

void deliver_conn_gone(struct core *c, struct conn *cn)
{
	size_t i = 0, n = 0;
	uint64_t id, *keys = malloc((cn->down.len ? cn->down.len : 1) * sizeof(*keys));
	void *val;

	/* delivery_free deletes from cn->down: collect the keys first
	 * (restarting the iteration after each deletion is quadratic). */
	while (idmap_next(&cn->down, &i, &id, &val)) {
		if (keys) {
			keys[n++] = id;
			continue;
		}
		finish_gone(c, cn, val); /* out of memory: the slow way */
		i = 0;
	}
	for (size_t k = 0; k < n; k++) {
		struct delivery *d = idmap_get(&cn->down, keys[k]);
		if (d)
			finish_gone(c, cn, d);
	}
	free(keys);
	idmap_free(&cn->down);
}

void deliver_shutdown(struct core *c)
{
	if (c->pushes)
		push_set_abort(c->pushes);
}

size_t deliver_in_flight(const struct core *c)
{
	return c->n_deliveries;
}

size_t deliver_pushes_waiting(const struct core *c)
{
	return c->pushes ? c->pushes->n : 0;
}
