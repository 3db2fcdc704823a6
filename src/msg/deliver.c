#include "src/msg/deliver.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "protocol/packet.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/http/httpd.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/rbuf.h"
#include "src/edge/seam.h"
#include "src/msg/session.h"
#include "storage/qos_store.h"

struct push;

struct delivery {
	struct delivery *prev, *next; /* in its push's list while unacknowledged */
	struct push *push;            /* NULL once acknowledged (QoS 2 REL phase) */
	struct core *c;
	uint64_t conn_id;
	uint16_t msgid;
	uint8_t qos;
	bool durable;                 /* a session's: its row outlives the connection */
	enum down_state state;
	struct rbuf *pkt;             /* the shared SEND packet */
	struct event *timer;          /* retransmission */
};

struct push {
	struct push *prev, *next;     /* c->pushes */
	struct core *c;
	struct httpd_req *req;
	uint8_t qos;
	size_t total, acked, failed, pending;
	struct delivery *head;        /* still unacknowledged */
	uint8_t *data;                /* first acknowledgement's payload */
	size_t data_len;
	bool has_data;
	struct event *timer;          /* the call's timeout */
};

static struct timeval seconds_tv(double s)
{
	struct timeval tv = { (time_t)s, (suseconds_t)((s - (double)(time_t)s) * 1e6) };
	return tv;
}

/* ---- the /send/ answer ---- */

static void push_answer(struct push *p)
{
	struct core *c = p->c;
	/* Nobody acknowledged and nothing is kept for later: a timeout, which
	 * the original answered over HTTP 200 ("status":1); 504 only under
	 * rest_status_codes = strict. Some acknowledged: "status":0, and
	 * "failed" says how many did not. */
	bool none = p->acked == 0 && p->pending == 0 && p->total > 0;
	bool strict = strcmp(c->conf->rest_status_codes, "strict") == 0;
	json_t *j = json_pack("{s:i, s:I, s:I, s:I}", "status", none ? 1 : 0,
			      "connections", (json_int_t)p->acked,
			      "failed", (json_int_t)p->failed,
			      "pending", (json_int_t)p->pending);
	if (none)
		json_object_set_new(j, "msg", json_string("timeout"));
	json_t *data = p->has_data ? json_stringn((const char *)p->data, p->data_len) : NULL;
	if (p->has_data && !data) {
		/* Not UTF-8: JSON strings cannot hold it; give it in base64. */
		static const char b64[] =
			"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
		size_t n = p->data_len, o = 0;
		char *enc = malloc((n + 2) / 3 * 4 + 1);
		for (size_t i = 0; enc && i < n; i += 3) {
			uint32_t v = (uint32_t)p->data[i] << 16 |
				     (i + 1 < n ? (uint32_t)p->data[i + 1] << 8 : 0) |
				     (i + 2 < n ? p->data[i + 2] : 0);
			enc[o++] = b64[v >> 18 & 63];
			enc[o++] = b64[v >> 12 & 63];
			enc[o++] = i + 1 < n ? b64[v >> 6 & 63] : '=';
			enc[o++] = i + 2 < n ? b64[v & 63] : '=';
		}
		if (enc) {
			enc[o] = 0;
			json_object_set_new(j, "data_base64", json_string(enc));
		}
		free(enc);
	}
	json_object_set_new(j, "data", data ? data : json_null());
	char *s = json_dumps(j, JSON_COMPACT);
	if (p->req) {
		if (s)
			core_reply(c, p->req, none && strict ? 504 : 200, NULL, s, strlen(s));
		else
			httpd_reply_error(p->req, 500, "out of memory");
	}
	free(s);
	json_decref(j);
	if (p->timer)
		event_free(p->timer);
	if (p->prev)
		p->prev->next = p->next;
	else
		c->pushes = p->next;
	if (p->next)
		p->next->prev = p->prev;
	c->n_pushes--;
	free(p->data);
	free(p);
}

static void unlink_from_push(struct delivery *d)
{
	struct push *p = d->push;
	if (!p)
		return;
	if (d->prev)
		d->prev->next = d->next;
	else
		p->head = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d->prev = d->next = NULL;
	d->push = NULL;
}

enum outcome { O_FAILED, O_ACKED, O_PENDING };

/* d's push learns its outcome; the push is answered with its last one. */
static void push_outcome(struct delivery *d, enum outcome o, const uint8_t *data, size_t len)
{
	struct push *p = d->push;
	if (!p)
		return;
	unlink_from_push(d);
	if (o == O_PENDING) {
		p->pending++;
	} else if (o == O_ACKED) {
		p->acked++;
		if (!p->has_data) {
			p->data = malloc(len ? len : 1);
			if (p->data) {
				memcpy(p->data, data, len);
				p->data_len = len;
				p->has_data = true;
			}
		}
	} else {
		p->failed++;
	}
	if (!p->head)
		push_answer(p);
}

/* ---- deliveries ---- */

/* Free d; forget its stored state too when forget (it is finished). */
static void delivery_free(struct delivery *d, struct conn *cn, bool forget)
{
	struct core *c = d->c;
	unlink_from_push(d);
	if (cn) {
		idmap_del(&cn->down, (uint64_t)d->msgid + 1);
		if (forget)
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
	if (p) {
		d->push = p;
		d->next = p->head;
		if (p->head)
			p->head->prev = d;
		p->head = d;
	}
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
			push_outcome(d, O_FAILED, NULL, 0);
			delivery_free(d, holder, false); /* its row is already gone */
		}
	}
}

static void on_push_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct push *p = arg;
	struct core *c = p->c;

	/* Unacknowledged deliveries stop here (the original's contract),
	 * except a session's: it keeps them until acknowledged or expired,
	 * so they count as pending. Detach them all first, then answer once. */
	while (p->head) {
		struct delivery *d = p->head;
		unlink_from_push(d);
		if (d->durable) {
			p->pending++;
			continue;
		}
		p->failed++;
		metric_drop(DROP_UNACKED);
		delivery_free(d, core_conn(c, d->conn_id), true);
	}
	push_answer(p);
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

void deliver_push(struct core *c, struct httpd_req *req, const uint64_t *conns, size_t n,
		  char *const *devices, size_t ndev, uint8_t qos, uint16_t msgtype,
		  const void *payload, size_t len, double timeout)
{
	struct pkt hdr = { .cmd = PKT_SEND, .qos = qos, .msgtype = msgtype };
	uint8_t h[PKT_MAX_HDR];
	size_t hl = pkt_encode_header(&hdr, h);
	struct rbuf *pkt = rbuf_new2(h, hl, payload, len);
	struct xq_msg *m = xq_msg_new(XQ_SEND, 0, n);
	struct push *p = qos ? calloc(1, sizeof(*p)) : NULL;
	int64_t msg_id = -1; /* the durable copy, made on the first session */

	if (!pkt || !m || (qos && !p)) {
		rbuf_unref(pkt);
		xq_msg_free(m);
		free(p);
		if (req)
			httpd_reply_error(req, 503, "out of memory");
		return;
	}
	metric_inc(M_PUSHES);
	m->buf = pkt; /* the message owns the first reference */
	if (!qos) {
		/* At most once, memory only: offline sessions get nothing. */
		m->flags = XQF_DROPPABLE;
		for (size_t i = 0; i < n; i++) {
			m->rcpts[i].id = conns[i];
			metric_packet(1, PKT_SEND, 0);
		}
		core_push_edge(c, m);
		if (req) {
			char body[64];
			int bl = snprintf(body, sizeof(body), "{\"status\":0,\"connections\":%zu}", n);
			core_reply(c, req, 200, NULL, body, (size_t)bl);
		}
		return;
	}

	p->c = c;
	p->req = req;
	p->qos = qos;
	p->total = n + ndev;
	p->next = c->pushes;
	if (c->pushes)
		c->pushes->prev = p;
	c->pushes = p;
	c->n_pushes++;
	m->flags = XQF_PATCH;
	m->nids = 0;
	for (size_t i = 0; i < n + ndev; i++) {
		struct conn *cn = i < n ? core_conn(c, conns[i]) : NULL;
		const char *device = i < n ? (cn && cn->session ? cn->device_id : NULL)
					   : devices[i - n];
		if (i < n && !cn) {
			metric_drop(DROP_CLOSED);
			p->failed++;
			continue;
		}
		if (device) {
			/* The message and this delivery row are committed before
			 * the first send (the SEND waits in the batch). */
			if (!session_room(c, device, cn, len)) {
				p->failed++;
				continue;
			}
			core_batch(c);
			core_mark(c, BATCH_PUSH);
			if (msg_id < 0 &&
			    c->dstore->ops->msg_add(c->dstore, qos, msgtype, payload, len,
						    &msg_id) != RB_OK) {
				p->failed++;
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
				p->failed++;
				continue;
			}
			if (cn)
				cn->backlog = true;
			p->pending++;
			continue;
		}
		if (over) {
			log_info("conn %s: %zu pushes in flight (max_inflight_messages), push failed",
				 cn->identity, cn->down.len);
			metric_drop(DROP_INFLIGHT_LIMIT);
			p->failed++;
			continue;
		}
		uint16_t id;
		if (device) {
			if (store_delivery(c, device, cn, msg_id, qos, true, &id) != RB_OK) {
				p->failed++;
				continue;
			}
		} else {
			id = next_msgid(cn);
			c->store->ops->down_begin(c->store, cn->identity, id, 0, qos);
		}
		struct delivery *d = delivery_new(c, p, cn, pkt, qos, id,
						  qos == 2 ? DOWN_WAIT_REC : DOWN_WAIT_ACK);
		if (!d) {
			conn_store_w(c, cn)->ops->down_end(conn_store(c, cn), conn_key(cn), id);
			p->failed++;
			continue;
		}
		m->rcpts[m->nids++] = (struct xq_rcpt){ cn->id, d->msgid, 0 };
		metric_packet(1, PKT_SEND, qos);
	}
	if (m->nids)
		core_push_edge(c, m);
	else
		xq_msg_free(m);
	if (!p->head) {
		push_answer(p);
		return;
	}
	p->timer = evtimer_new(c->base, on_push_timeout, p);
	struct timeval tv = seconds_tv(timeout);
	if (p->timer)
		evtimer_add(p->timer, &tv);
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
		push_outcome(d, O_ACKED, p->payload, p->payload_len);
		delivery_free(d, cn, true);
		break;
	case PKT_REC:
		if (d->qos != 2)
			break;
		if (d->state == DOWN_WAIT_REC) {
			if (d->durable)
				core_mark(c, BATCH_REC);
			push_outcome(d, O_ACKED, p->payload, p->payload_len);
			d->state = DOWN_WAIT_COM;
			conn_store_w(c, cn)->ops->down_set(conn_store(c, cn), conn_key(cn), d->msgid,
							   DOWN_WAIT_COM);
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

void deliver_conn_gone(struct core *c, struct conn *cn)
{
	size_t i = 0;
	uint64_t id;
	void *val;

	while (idmap_next(&cn->down, &i, &id, &val)) {
		struct delivery *d = val;
		/* A session keeps its deliveries (rows) for the next holder. */
		if (d->push && !d->durable)
			metric_drop(DROP_CLOSED);
		push_outcome(d, d->durable ? O_PENDING : O_FAILED, NULL, 0);
		delivery_free(d, cn, !d->durable);
		i = 0; /* the map changed under the iteration */
	}
	idmap_free(&cn->down);
}

void deliver_shutdown(struct core *c)
{
	while (c->pushes) {
		struct push *p = c->pushes;
		while (p->head) {
			struct delivery *d = p->head;
			unlink_from_push(d);
			if (d->durable)
				p->pending++;
			else
				p->failed++;
		}
		push_answer(p);
	}
}

size_t deliver_in_flight(const struct core *c)
{
	return c->n_deliveries;
}

size_t deliver_pushes_waiting(const struct core *c)
{
	return c->n_pushes;
}
