#include "src/msg/forward.h"

#include <assert.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "protocol/packet.h"
#include "protocol/rb.h"
#include "src/http/backend.h"
#include "src/base/conf.h"
#include "src/core/core.h"
#include "src/msg/deliver.h"
#include "src/msg/guard.h"
#include "src/msg/hooks.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/rbuf.h"
#include "src/base/timeutil.h"
#include "storage/qos_store.h"

struct fwd {
	struct fwd *next;
	struct core *c;
	uint64_t conn_id;
	uint16_t msgid, msgtype;
	uint8_t qos;
	bool dup;
	struct rbuf *buf;      /* the whole packet; payload at buf->data + off */
	size_t off;
	bool durable;          /* QoS 2 state in the session store */
	char *store_key;       /* QoS 2: key in the QoS store (session or identity) */
	/* once started (counted in cn->inflight): */
	struct guard_wait gw;  /* while waiting for a route slot */
	struct fwd *rw_prev, *rw_next; /* in cn->rw_head while waiting */
	bool probe;            /* the half-open breaker's probe */
	double started;        /* sent to the backend (monotonic seconds) */
};

static struct fwd *of_wait(struct guard_wait *w)
{
	return (struct fwd *)((char *)w - offsetof(struct fwd, gw));
}

static void fwd_free(struct fwd *f)
{
	rbuf_unref(f->buf);
	free(f->store_key);
	free(f);
}

/* The store of f's QoS 2 state, opening the batch for a write. It outlives
 * the connection: a reply arriving after the client left is still kept. */
static struct qos_store *fwd_store_w(struct core *c, const struct fwd *f)
{
	if (f->durable)
		core_batch(c);
	return f->durable ? c->dstore : c->store;
}

static void fwd_done(struct conn *cn, const struct fwd *f)
{
	if (cn && f->qos == 2 && idmap_get(&cn->up_active, (uint64_t)f->msgid + 1) == f)
		idmap_del(&cn->up_active, (uint64_t)f->msgid + 1);
}

static size_t payload_len(const struct fwd *f)
{
	return f->buf->len - f->off;
}

/* Build the forward URL: {message_type} replaced, or "<type>/" appended. */
static char *forward_url(const struct conf *conf, uint16_t msgtype)
{
	const char *tpl = conf->forward_url, *ph = strstr(tpl, "{message_type}");
	char base[2048];
	int n;

	if (ph)
		n = snprintf(base, sizeof(base), "%.*s%u%s", (int)(ph - tpl), tpl,
			     (unsigned)msgtype, ph + strlen("{message_type}"));
	else
		n = snprintf(base, sizeof(base), "%s%u/", tpl, (unsigned)msgtype);
	if (n < 0 || (size_t)n >= sizeof(base))
		return NULL;
	return hooks_signed_url(conf, base);
}

static void flow_update(struct core *c, struct conn *cn)
{
	const struct conf *conf = c->conf;
	bool high = cn->fq_len * 2 > conf->max_pending_forwards ||
		    cn->fq_bytes * 2 > conf->forward_queue_bytes;
	bool low = cn->fq_len * 4 <= conf->max_pending_forwards &&
		   cn->fq_bytes * 4 <= conf->forward_queue_bytes;
	if (!cn->rx_paused && high)
		core_flow(c, cn, false);
	else if (cn->rx_paused && low)
		core_flow(c, cn, true);
}

static void fail(struct core *c, struct conn *cn, struct fwd *f, int code,
		 const char *msg, bool temporary)
{
	if (f->qos == 2)
		fwd_store_w(c, f)->ops->up_release(fwd_store_w(c, f), f->store_key, f->msgid);
	if (cn)
		core_send_nak(c, cn, f->qos ? f->msgid : 0, code, msg, temporary);
}

static void pump(struct core *c, struct conn *cn);

static void route_pump(struct core *c, uint16_t route);

/* Which way a backend answer counts for the route's circuit breaker. */
static enum guard_outcome outcome_of(const struct backend_response *resp)
{
	if (resp->err == RB_ECLOSED)
		return GUARD_NEUTRAL;
	if (resp->err != RB_OK)
		return GUARD_FAILURE;
	return resp->status >= 500 ? GUARD_FAILURE : GUARD_SUCCESS;
}

static void on_reply(const struct backend_response *resp, void *arg)
{
	struct fwd *f = arg;
	struct core *c = f->c;
	struct conn *cn = core_conn(c, f->conn_id);
	const char *who = cn ? cn->identity : "(gone)";
	struct log_limit gone = LOG_LIMIT_INIT(1, 1), *lim = cn ? &cn->log : &gone;
	double now = mono_now(), ms = (now - f->started) * 1e3;
	char msg[160];

	c->fwd_inflight--;
	if (cn)
		cn->inflight--;
	fwd_done(cn, f);
	guard_done(c->guard, f->msgtype, outcome_of(resp), f->probe, now);
	if (resp->err == RB_ECLOSED) {
		/* The process is exiting; nobody is left to answer. */
		fwd_free(f);
		return;
	}
	if (resp->err != RB_OK) {
		bool timeout = resp->err == RB_ETIMEDOUT;
		bool unreachable = resp->err == RB_EIO;
		metric_forward(timeout ? FWD_TIMEOUT : unreachable ? FWD_UNREACHABLE : FWD_HTTP_ERROR);
		log_limited(lim, LOG_INFO, "forward conn %s type %u id %u: failed after %.1f ms: %s",
			    who, f->msgtype, f->msgid, ms, resp->errmsg);
		snprintf(msg, sizeof(msg), "backend %s", resp->errmsg);
		fail(c, cn, f, timeout ? NAK_TIMEOUT : unreachable ? NAK_UNAVAILABLE : NAK_BACKEND,
		     msg, timeout || unreachable);
		goto done;
	}
	metric_backend_latency(now - f->started);
	if (cn)
		hooks_apply_response(c, cn, resp);
	/* The backend's refusal, whatever the status it came with (docs/
	 * protocol.md: the response headers apply on any answer). */
	const char *invalid = backend_response_header(resp, "RAINBOWREQUESTINVALID");
	if (invalid) {
		metric_forward(FWD_INVALID);
		log_limited(lim, LOG_INFO,
			    "forward conn %s type %u id %u: backend refused (HTTP %d) in %.1f ms: %s",
			    who, f->msgtype, f->msgid, resp->status, ms, invalid);
		fail(c, cn, f, NAK_INVALID, invalid, false);
		goto done;
	}
	if (resp->status < 200 || resp->status > 299) {
		metric_forward(FWD_HTTP_ERROR);
		log_limited(lim, LOG_INFO,
			    "forward conn %s type %u id %u: backend answered HTTP %d in %.1f ms", who,
			    f->msgtype, f->msgid, resp->status, ms);
		snprintf(msg, sizeof(msg), "backend answered HTTP %d", resp->status);
		fail(c, cn, f, NAK_BACKEND, msg, resp->status >= 500);
		goto done;
	}
	metric_forward(FWD_OK);
	log_limited(lim, LOG_INFO, "forward conn %s type %u qos %u id %u: HTTP %d, %zu bytes in %.1f ms",
		    who, f->msgtype, f->qos, f->msgid, resp->status, evbuffer_get_length(resp->body),
		    ms);
	size_t len = evbuffer_get_length(resp->body);
	const uint8_t *body = evbuffer_pullup(resp->body, -1);
	if (f->qos == 2) {
		/* The reply is stored before REC goes out: a duplicate SEND
		 * from here on is answered from the store (B.4). */
		struct qos_store *st = fwd_store_w(c, f);
		int rc = st->ops->up_reply(st, f->store_key, f->msgid, body, len);
		if (rc != RB_OK && rc != RB_ENOTFOUND)
			log_warn("forward id %u: cannot store the QoS 2 reply: %s", f->msgid,
				 rb_strerror(rc));
	}
	if (cn && f->qos)
		core_send_packet(c, cn->id, f->qos == 1 ? PKT_ACK : PKT_REC, 0, false, f->msgid,
				 0, body, len);
done:;
	uint16_t route = f->msgtype;
	fwd_free(f);
	route_pump(c, route);
	if (cn)
		pump(c, cn);
	core_maybe_stopped(c);
}

/* Send f to the backend. On failure f is answered and freed: false. */
static bool send_now(struct core *c, struct conn *cn, struct fwd *f)
{
	const struct conf *conf = c->conf;
	struct backend_header h[5];
	char qos[2] = { (char)('0' + f->qos), 0 }, mid[96];
	size_t n = 0;
	int err = RB_OK;

	char *url = forward_url(conf, f->msgtype);
	if (!url) {
		guard_done(c->guard, f->msgtype, GUARD_NEUTRAL, f->probe, mono_now());
		fail(c, cn, f, NAK_UNAVAILABLE, "cannot build the forward URL", false);
		fwd_done(cn, f);
		fwd_free(f);
		return false;
	}
	h[n++] = (struct backend_header){ "RAINBOWCLIENTIDENTITY", cn->identity };
	if (cn->cookie)
		h[n++] = (struct backend_header){ "RAINBOWCLIENTCOOKIE", cn->cookie };
	h[n++] = (struct backend_header){ "RAINBOWQOS", qos };
	if (f->qos) {
		snprintf(mid, sizeof(mid), "%.80s:%u", conn_key(cn), f->msgid);
		h[n++] = (struct backend_header){ "RAINBOWMESSAGEID", mid };
	}
	if (f->dup)
		h[n++] = (struct backend_header){ "RAINBOWDUP", "1" };
	f->started = mono_now();
	struct backend_req *r = backend_request(c->backend, "POST", url, h, n,
						f->buf->data + f->off, payload_len(f),
						on_reply, f, &err);
	free(url);
	if (!r) {
		guard_done(c->guard, f->msgtype, GUARD_NEUTRAL, f->probe, mono_now());
		metric_forward(err == RB_ELIMIT ? FWD_OVER_LIMIT : FWD_UNREACHABLE);
		fail(c, cn, f, err == RB_ELIMIT ? NAK_LIMIT : NAK_UNAVAILABLE,
		     err == RB_ELIMIT ? "backend queue full" : "cannot send to the backend",
		     true);
		fwd_done(cn, f);
		fwd_free(f);
		return false;
	}
	return true;
}

/* A started forward leaves: refused without reaching the backend. */
static void refuse(struct core *c, struct conn *cn, struct fwd *f, int code, const char *msg,
		   double retry_after)
{
	if (f->qos == 2)
		fwd_store_w(c, f)->ops->up_release(fwd_store_w(c, f), f->store_key, f->msgid);
	core_send_nak_retry(c, cn, f->qos ? f->msgid : 0, code, msg, true, retry_after);
	fwd_done(cn, f);
	fwd_free(f);
}

static void rw_unlink(struct conn *cn, struct fwd *f)
{
	if (f->rw_prev)
		f->rw_prev->rw_next = f->rw_next;
	else
		cn->rw_head = f->rw_next;
	if (f->rw_next)
		f->rw_next->rw_prev = f->rw_prev;
	f->rw_prev = f->rw_next = NULL;
}

/* Start f: through its route's guard, then to the backend. f counts in
 * cn->inflight and c->fwd_inflight from here until it is answered or
 * refused, also while it waits for a route slot. */
static void start(struct core *c, struct conn *cn, struct fwd *f)
{
	bool probe;
	double retry_after;
	char msg[128];

	switch (guard_admit(c->guard, f->msgtype, &f->gw, mono_now(), &probe, &retry_after)) {
	case GUARD_GO:
		f->probe = probe;
		if (send_now(c, cn, f)) {
			cn->inflight++;
			c->fwd_inflight++;
		}
		return;
	case GUARD_WAIT:
		f->rw_prev = NULL;
		f->rw_next = cn->rw_head;
		if (cn->rw_head)
			cn->rw_head->rw_prev = f;
		cn->rw_head = f;
		cn->inflight++;
		c->fwd_inflight++;
		return;
	case GUARD_FULL:
		metric_forward(FWD_OVER_LIMIT);
		log_limited(&cn->log, LOG_INFO,
			    "forward conn %s type %u id %u: refused, too many forwards of this type "
			    "waiting", cn->identity, f->msgtype, f->msgid);
		refuse(c, cn, f, NAK_LIMIT, "too many requests of this type waiting", 0);
		return;
	case GUARD_OPEN:
		metric_forward(FWD_BREAKER_OPEN);
		log_limited(&cn->log, LOG_INFO,
			    "forward conn %s type %u id %u: refused, circuit breaker open (%.1f s left)",
			    cn->identity, f->msgtype, f->msgid, retry_after);
		snprintf(msg, sizeof(msg), "backend route %u is failing; retry later", f->msgtype);
		refuse(c, cn, f, NAK_UNAVAILABLE, msg, retry_after);
		return;
	}
}

/* Slots of route may have freed, or its breaker opened: move the forwards
 * waiting for it. One that waited longer than backend_timeout is answered
 * 504 instead, as it would have been had it been sent. */
static void route_pump(struct core *c, uint16_t route)
{
	struct guard_wait *w;
	bool go, probe;
	double retry_after, now = mono_now();

	while ((w = guard_next(c->guard, route, now, &go, &probe, &retry_after))) {
		struct fwd *f = of_wait(w);
		/* Waiting ones leave the queue with their connection, so it is
		 * still here. */
		struct conn *cn = core_conn(c, f->conn_id);
		assert(cn);
		rw_unlink(cn, f);
		if (go && now - w->since >= c->conf->backend_timeout) {
			guard_done(c->guard, route, GUARD_NEUTRAL, probe, now);
			metric_forward(FWD_TIMEOUT);
			log_limited(&cn->log, LOG_INFO,
				    "forward conn %s type %u id %u: no backend slot within %.1f s",
				    cn->identity, f->msgtype, f->msgid, c->conf->backend_timeout);
			if (f->qos == 2)
				fwd_store_w(c, f)->ops->up_release(fwd_store_w(c, f), f->store_key,
								   f->msgid);
			core_send_nak(c, cn, f->qos ? f->msgid : 0, NAK_TIMEOUT,
				      "no backend slot for this type in time", true);
			fwd_done(cn, f);
			fwd_free(f);
		} else if (go) {
			f->probe = probe;
			if (send_now(c, cn, f))
				continue; /* still counted in flight */
		} else {
			metric_forward(FWD_BREAKER_OPEN);
			refuse(c, cn, f, NAK_UNAVAILABLE, "backend route is failing; retry later",
			       retry_after);
		}
		cn->inflight--;
		c->fwd_inflight--;
		pump(c, cn);
	}
}

static void pump(struct core *c, struct conn *cn)
{
	while (cn->fq_head && cn->inflight < c->conf->forward_concurrency) {
		struct fwd *f = cn->fq_head;
		cn->fq_head = f->next;
		if (!cn->fq_head)
			cn->fq_tail = NULL;
		cn->fq_len--;
		cn->fq_bytes -= payload_len(f);
		start(c, cn, f);
	}
	flow_update(c, cn);
}

static void on_send(struct core *c, struct conn *cn, const struct pkt *p,
		    struct rbuf *buf)
{
	const struct conf *conf = c->conf;

	bool orphan = false;
	if (p->qos == 2) {
		enum up_state st;
		const uint8_t *reply;
		size_t len;
		struct qos_store *store = conn_store(c, cn);
		store->ops->up_get(store, conn_key(cn), p->msgid, &st, &reply, &len);
		if (st == UP_REPLIED) {
			metric_inc(M_QOS2_DUP_ANSWERED);
			core_send_packet(c, cn->id, PKT_REC, 0, false, p->msgid, 0, reply, len);
			return;
		}
		if (st == UP_FORWARDING && idmap_get(&cn->up_active, (uint64_t)p->msgid + 1)) {
			/* The first copy's REC is on its way. */
			metric_inc(M_QOS2_DUP_ANSWERED);
			return;
		}
		/* FORWARDING with no forward of ours under way: the gateway
		 * stopped mid-forward (or the session's last connection left).
		 * The backend may or may not have seen it: forward again, marked
		 * RAINBOWDUP so it can tell (B.4). */
		orphan = st == UP_FORWARDING;
	}
	if (!*conf->forward_url) {
		metric_forward(FWD_UNREACHABLE);
		core_send_nak(c, cn, p->qos ? p->msgid : 0, NAK_UNAVAILABLE,
			      "no forward_url configured", false);
		return;
	}
	if (cn->fq_len >= conf->max_pending_forwards ||
	    cn->fq_bytes + p->payload_len > conf->forward_queue_bytes) {
		metric_forward(FWD_OVER_LIMIT);
		log_limited(&cn->log, LOG_INFO,
			    "conn %s: forward queue full (%d packets, %zu bytes), SEND id %u refused",
			    cn->identity, cn->fq_len, cn->fq_bytes, p->msgid);
		core_send_nak(c, cn, p->qos ? p->msgid : 0, NAK_LIMIT, "too many pending requests",
			      true);
		return;
	}
	struct fwd *f = calloc(1, sizeof(*f));
	if (!f) {
		core_send_nak(c, cn, p->qos ? p->msgid : 0, NAK_UNAVAILABLE, "out of memory", true);
		return;
	}
	f->c = c;
	f->conn_id = cn->id;
	f->msgid = p->msgid;
	f->msgtype = p->msgtype;
	f->qos = p->qos;
	f->dup = p->dup || orphan;
	f->buf = rbuf_ref(buf);
	f->off = (size_t)(p->payload - buf->data);
	if (p->qos == 2) {
		f->durable = cn->session;
		f->store_key = strdup(conn_key(cn));
		int rc = f->store_key ? (orphan ? RB_OK : fwd_store_w(c, f)->ops->up_begin(
						 fwd_store_w(c, f), f->store_key, p->msgid))
				      : RB_ENOMEM;
		if (rc == RB_OK)
			rc = idmap_put(&cn->up_active, (uint64_t)p->msgid + 1, f);
		if (rc != RB_OK) {
			core_send_nak(c, cn, p->msgid, NAK_UNAVAILABLE, "cannot record QoS 2 state",
				      true);
			fwd_free(f);
			return;
		}
	}
	if (cn->fq_tail)
		cn->fq_tail->next = f;
	else
		cn->fq_head = f;
	cn->fq_tail = f;
	cn->fq_len++;
	cn->fq_bytes += p->payload_len;
	pump(c, cn);
}

void fwd_on_message(struct core *c, struct conn *cn, struct rbuf *buf, bool text)
{
	struct pkt p;
	const char *why = NULL;

	if (text && c->conf->strict_frames) {
		metric_inc(M_MALFORMED);
		log_limited(&cn->log, LOG_INFO, "conn %s: text frame refused (strict_frames)", cn->identity);
		core_send_nak(c, cn, 0, NAK_MALFORMED, "text frames are not accepted", false);
		return;
	}
	if (pkt_decode(buf->data, buf->len, cn->v2, &p, &why) != RB_OK) {
		metric_inc(M_MALFORMED);
		/* Every one is counted; the log is rate-limited per connection. */
		++cn->malformed;
		log_limited(&cn->log, LOG_INFO, "conn %s: malformed packet #%u (%zu bytes): %s",
			    cn->identity, cn->malformed, buf->len, why);
		char msg[128];
		snprintf(msg, sizeof(msg), "malformed packet: %s", why);
		core_send_nak(c, cn, p.msgid, NAK_MALFORMED, msg, false);
		return;
	}
	metric_packet(0, p.cmd, p.qos);
	switch (p.cmd) {
	case PKT_SEND:
		on_send(c, cn, &p, buf);
		break;
	case PKT_REL:
		/* REL is idempotent: COM answers an unknown id too (A.3). The
		 * COM waits for the COMMIT of the release. */
		conn_store_w(c, cn)->ops->up_release(conn_store(c, cn), conn_key(cn), p.msgid);
		core_send_packet(c, cn->id, PKT_COM, 0, false, p.msgid, 0, NULL, 0);
		break;
	case PKT_ACK:
	case PKT_REC:
	case PKT_COM:
		deliver_on_answer(c, cn, &p);
		break;
	case PKT_NAK:
		/* A v2 client refusing a push: nothing defines a meaning yet;
		 * the delivery is retried until its timeout like an unanswered one. */
		log_limited(&cn->log, LOG_INFO, "conn %s: NAK for push id %u: %.*s", cn->identity,
			    p.msgid, (int)p.payload_len, (const char *)p.payload);
		break;
	}
}

void fwd_conn_gone(struct core *c, struct conn *cn)
{
	struct fwd *f = cn->fq_head, *next;
	for (; f; f = next) {
		next = f->next;
		fwd_free(f);
	}
	cn->fq_head = cn->fq_tail = NULL;
	cn->fq_len = 0;
	cn->fq_bytes = 0;
	/* Started ones still waiting for a route slot leave the route's queue
	 * now: nobody is left to answer, and the slot goes to someone else. */
	while ((f = cn->rw_head)) {
		rw_unlink(cn, f);
		guard_cancel(c->guard, &f->gw);
		cn->inflight--;
		c->fwd_inflight--;
		fwd_free(f);
	}
	idmap_free(&cn->up_active);
	/* The in-memory store forgets the connection; a session's state stays. */
	if (!cn->session)
		c->store->ops->drop_key(c->store, cn->identity);
}
