#include "cluster/engine_lan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cluster/discovery.h"
#include "cluster/mesh.h"
#include "protocol/link.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/strmap.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/deliver.h"
#include "src/msg/engine.h"
#include "src/msg/membership.h"
#include "src/msg/push.h"
#include "src/msg/route.h"
#include "src/msg/rest.h"
#include "src/msg/session.h"
#include "src/base/timeutil.h"
#include "storage/db.h"

/* Other nodes a call reaches at most (discovery tracks as many). */
#define MAX_NODES PEERS_MAX

/* Names per INTEREST_FULL / members per PRESENCE_RESP frame. */
#define PART_ITEMS 2048

/* The nodes with members of one channel (a LAN cluster is small: an
 * array). */
struct where {
	size_t n;
	uint32_t id[];
};

/* A remote leg of one of our pushes, waiting for its RECEIPT. */
struct rpub {
	struct push_leg *leg;
	uint32_t node;
};

/* Answers several nodes owe one call (remote op to all, presence). */
struct group {
	struct lan *lan;
	size_t waiting;
	int rc;
	struct event *timer;
	uint64_t *ids;           /* the per-node request ids still open */
	size_t n_ids;
	engine_done_fn done;     /* ops */
	void (*member)(void *arg, const char *identity, const char *device,
		       const char *platform); /* presence */
	void (*info)(void *arg, uint32_t node, const char *json, size_t len); /* gather */
	void *arg;
};

/* One request to one node, in lan->calls by its id. */
struct call {
	struct group *g;
	uint32_t node;
};

/* What other nodes announced: names (channels with members there, or
 * devices whose session they hold) -> nodes, and per node its names (to
 * forget them when it goes). */
struct dir {
	struct strmap *where;        /* name -> struct where */
	struct idmap of;             /* node -> struct strmap (its names) */
};

struct take;
struct give;

struct lan {
	struct engine e;             /* first: the engine is the lan */
	struct core *core;
	struct discovery *disc;
	struct mesh *mesh;
	struct dir channels, devices;
	struct idmap takes;          /* request id -> struct take (sessions coming) */
	struct give *gives;          /* sessions going to other nodes */
	struct idmap pubs;           /* push id -> struct rpub */
	struct idmap calls;          /* op / presence request id -> struct call */
	uint64_t next_id;
	double call_timeout;
};

static struct lan *lan_of(struct engine *e)
{
	return (struct lan *)e;
}

static char *dupn(struct link_str s)
{
	char *p = malloc(s.n + 1);
	if (p) {
		if (s.n)
			memcpy(p, s.p, s.n);
		p[s.n] = 0;
	}
	return p;
}

/* ---- interest: which nodes have members of which channel ---- */

static void where_add(struct dir *d, const char *ch, uint32_t node)
{
	struct where *w = strmap_get(d->where, ch);
	for (size_t i = 0; w && i < w->n; i++)
		if (w->id[i] == node)
			return;
	size_t n = w ? w->n : 0;
	struct where *nw = realloc(w, sizeof(*w) + (n + 1) * sizeof(w->id[0]));
	if (!nw)
		return;
	nw->n = n;
	nw->id[nw->n++] = node;
	if (nw != w && strmap_put(d->where, ch, nw) != RB_OK) {
		if (!w)
			free(nw);
	}
}

static void where_del(struct dir *d, const char *ch, uint32_t node)
{
	struct where *w = strmap_get(d->where, ch);
	if (!w)
		return;
	for (size_t i = 0; i < w->n; i++)
		if (w->id[i] == node) {
			w->id[i] = w->id[--w->n];
			break;
		}
	if (!w->n)
		free(strmap_del(d->where, ch));
}

static struct strmap *node_names(struct dir *d, uint32_t node, bool create)
{
	struct strmap *s = idmap_get(&d->of, node);
	if (!s && create && (s = strmap_new()) && idmap_put(&d->of, node, s) != RB_OK) {
		strmap_free(s);
		s = NULL;
	}
	return s;
}

struct forget_arg {
	struct dir *d;
	uint32_t node;
};

static void forget_one(const char *ch, void *val, void *arg)
{
	struct forget_arg *f = arg;
	(void)val;
	where_del(f->d, ch, f->node);
}

static void dir_clear(struct dir *d, uint32_t node)
{
	struct strmap *s = idmap_del(&d->of, node);
	if (!s)
		return;
	struct forget_arg f = { d, node };
	strmap_foreach(s, forget_one, &f);
	strmap_free(s);
}

static void dir_set(struct dir *d, uint32_t node, struct link_str name, bool add)
{
	char *ch = dupn(name);
	struct strmap *s = node_names(d, node, add);
	if (!ch || !s) {
		free(ch);
		return;
	}
	if (add && !strmap_get(s, ch)) {
		if (strmap_put(s, ch, (void *)1) == RB_OK)
			where_add(d, ch, node);
	} else if (!add && strmap_del(s, ch)) {
		where_del(d, ch, node);
	}
	free(ch);
}

static void free_where(const char *name, void *w, void *arg)
{
	(void)name;
	(void)arg;
	free(w);
}

static int dir_init(struct dir *d)
{
	return (d->where = strmap_new()) ? RB_OK : RB_ENOMEM;
}

static void dir_free(struct dir *d)
{
	size_t i = 0;
	uint64_t id;
	void *v;
	while (idmap_next(&d->of, &i, &id, &v))
		strmap_free(v);
	idmap_free(&d->of);
	if (d->where) {
		strmap_foreach(d->where, free_where, NULL);
		strmap_free(d->where);
	}
}

/* ---- sending our interest ---- */

struct full {
	struct lan *l;
	uint32_t node;
	uint8_t type;                /* INTEREST_FULL or DEVICES_FULL */
	struct link_str *names;
	char **owned;                /* copies to free after each frame, or NULL */
	size_t n;
	bool first, failed;
};

static void full_flush(struct full *f, bool last)
{
	struct link_msg m = { .type = f->type };
	m.u.interest_full.flags = (f->first ? LINK_PART_FIRST : 0) | (last ? LINK_PART_LAST : 0);
	m.u.interest_full.channels.items = f->names;
	m.u.interest_full.channels.n = f->n;
	if (!f->failed && mesh_send(f->l->mesh, f->node, &m) != RB_OK)
		f->failed = true;
	f->first = false;
	for (size_t i = 0; f->owned && i < f->n; i++)
		free(f->owned[i]);
	f->n = 0;
}

/* Names are copied: those from the database are valid only during the
 * callback. */
static void full_add(const char *device, void *arg)
{
	struct full *f = arg;
	char *d = strdup(device);
	if (!d) {
		f->failed = true;
		return;
	}
	f->owned[f->n] = d;
	f->names[f->n++] = LINK_STR(d);
	if (f->n == PART_ITEMS)
		full_flush(f, false);
}

static void full_name(const char *name, size_t members, void *arg)
{
	(void)members;
	full_add(name, arg);
}

static void send_full(struct lan *l, uint32_t node)
{
	static struct link_str names[PART_ITEMS];
	static char *owned[PART_ITEMS];
	struct full f = { l, node, LINK_INTEREST_FULL, names, owned, 0, true, false };
	channels_foreach(l->core->channels, full_name, &f);
	/* And the channels of offline sessions (some may be listed twice:
	 * the receiver keeps a set). */
	if (db_offline_channels(l->core->db, (int64_t)time(NULL), full_add, &f) != RB_OK)
		f.failed = true;
	full_flush(&f, true);
	struct full g = { l, node, LINK_DEVICES_FULL, names, owned, 0, true, false };
	if (db_sessions_list(l->core->db, (int64_t)time(NULL), full_add, &g) != RB_OK)
		g.failed = true;
	full_flush(&g, true);
	if (f.failed || g.failed)
		log_warn("cluster: could not send this node's channels and devices to %08x", node);
}

static void delta_all(struct lan *l, uint8_t type, const char *name, bool on)
{
	uint32_t nodes[MAX_NODES];
	size_t n = mesh_up_nodes(l->mesh, nodes, MAX_NODES);
	struct link_msg m = { .type = type, .u.interest_delta = { on, LINK_STR(name) } };
	for (size_t i = 0; i < n && i < MAX_NODES; i++)
		if (mesh_send(l->mesh, nodes[i], &m) != RB_OK) {
			/* Its view of this node would stay wrong: start the
			 * link over, which resends the whole state. */
			log_warn("cluster: %s of \"%s\" not sent to %08x", link_type_name(type),
				 name, nodes[i]);
			mesh_reset(l->mesh, nodes[i], "directory update could not be sent");
		}
}

static void interest(struct engine *e, const char *channel, bool on)
{
	delta_all(lan_of(e), LINK_INTEREST_DELTA, channel, on);
}

static void device(struct engine *e, const char *dev, bool on)
{
	delta_all(lan_of(e), LINK_DEVICE_DELTA, dev, on);
}

static size_t channel_nodes(struct engine *e, const char *channel, uint32_t *out, size_t cap)
{
	struct where *w = strmap_get(lan_of(e)->channels.where, channel);
	if (!w)
		return 0;
	for (size_t i = 0; i < w->n && i < cap; i++)
		out[i] = w->id[i];
	return w->n;
}

static uint32_t locate_identity(struct engine *e, const char *identity)
{
	struct lan *l = lan_of(e);
	uint32_t n = identity_node(identity);
	return n && n != l->core->node_id && mesh_is_up(l->mesh, n) ? n : 0;
}

static uint32_t locate_device(struct engine *e, const char *dev)
{
	struct lan *l = lan_of(e);
	struct where *w = strmap_get(l->devices.where, dev);
	/* Two holders only during a move: the newest announcement wins. */
	return w && w->n && mesh_is_up(l->mesh, w->id[w->n - 1]) ? w->id[w->n - 1] : 0;
}

/* ---- publish: our pushes to other nodes ---- */

static enum push_outcome rpub_expire(struct push_leg *leg)
{
	struct lan *l = leg->ctx;
	free(idmap_del(&l->pubs, leg->tag));
	metric_inc(M_REMOTE_LEGS_FAILED);
	return PUSH_FAILED;
}

static int publish(struct engine *e, uint32_t node, const struct engine_push *p,
		   struct push_leg *leg)
{
	struct lan *l = lan_of(e);
	uint64_t id = leg ? ++l->next_id : 0;
	struct link_msg m = { .type = LINK_PUBLISH };
	m.u.publish.push_id = id;
	m.u.publish.target_kind = p->channel ? LINK_TO_CHANNEL
				  : p->identity ? LINK_TO_IDENTITY : LINK_TO_DEVICE;
	m.u.publish.target = LINK_STR(p->channel ? p->channel : p->identity ? p->identity
								      : p->device);
	m.u.publish.qos = p->qos;
	m.u.publish.msgtype = p->msgtype;
	m.u.publish.timeout_ms = p->timeout > 0 ? (uint32_t)(p->timeout * 1000) : 10000;
	m.u.publish.payload = (struct link_str){ p->payload, p->len };
	struct rpub *r = NULL;
	if (leg) {
		r = malloc(sizeof(*r));
		if (!r || idmap_put(&l->pubs, id, r) != RB_OK) {
			free(r);
			metric_inc(M_REMOTE_LEGS_FAILED);
			return RB_ENOMEM;
		}
		*r = (struct rpub){ leg, node };
	}
	int rc = mesh_send(l->mesh, node, &m);
	if (rc != RB_OK) {
		if (r)
			free(idmap_del(&l->pubs, id));
		metric_inc(M_REMOTE_LEGS_FAILED);
		log_info("cluster: push to %08x not sent: %s", node,
			 rc == RB_EAGAIN ? "link over its high-water mark" : "no link");
		return rc;
	}
	metric_inc(M_REMOTE_PUBLISHES);
	if (leg) {
		leg->ctx = l;
		leg->tag = id;
		leg->expire = rpub_expire;
	}
	return RB_OK;
}

static void on_receipt(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct rpub *r = idmap_get(&l->pubs, m->u.receipt.push_id);
	if (!r || r->node != node)
		return; /* late (the push ended) or not ours */
	idmap_del(&l->pubs, m->u.receipt.push_id);
	struct push_leg *leg = r->leg;
	free(r);
	leg->expire = NULL;
	push_leg_counts(leg, m->u.receipt.acked, m->u.receipt.failed, m->u.receipt.pending,
			m->u.receipt.has_data ? m->u.receipt.data.p : NULL,
			m->u.receipt.has_data ? m->u.receipt.data.n : 0);
}

/* ---- their pushes to us ---- */

/* A frame to send once the open batch (if any) has committed: RECEIPT and
 * OP_RESULT count only what is durable. */
struct held {
	struct lan *l;
	uint32_t node;
	size_t len;
	uint8_t frame[];
};

static void held_send(void *arg, bool committed)
{
	struct held *h = arg;
	if (committed)
		mesh_send_raw(h->l->mesh, h->node, h->frame, h->len);
	free(h);
}

static void send_after_commit(struct lan *l, uint32_t node, const struct link_msg *m)
{
	int len = link_encode(m, NULL, 0);
	struct held *h = len > 0 ? malloc(sizeof(*h) + (size_t)len) : NULL;
	if (!h)
		return;
	h->l = l;
	h->node = node;
	h->len = (size_t)len;
	link_encode(m, h->frame, h->len);
	commit_hold_call(l->core->commit, held_send, h);
}

struct inpub {
	struct lan *l;
	uint32_t node;
	uint64_t push_id;
};

static void on_inpub_done(const struct push_result *r, void *arg)
{
	struct inpub *ip = arg;
	if (!ip->push_id) {
		free(ip);
		return;
	}
	struct link_msg m = { .type = LINK_RECEIPT };
	m.u.receipt.push_id = ip->push_id;
	m.u.receipt.acked = (uint32_t)r->acked;
	m.u.receipt.failed = (uint32_t)r->failed;
	m.u.receipt.pending = (uint32_t)r->pending;
	m.u.receipt.has_data = r->data != NULL;
	m.u.receipt.data = (struct link_str){ r->data, r->data ? r->data_len : 0 };
	send_after_commit(ip->l, ip->node, &m);
	free(ip);
}

static void receipt_now(struct lan *l, uint32_t node, uint64_t id, uint32_t failed)
{
	struct link_msg m = { .type = LINK_RECEIPT, .u.receipt = { .push_id = id,
								   .failed = failed } };
	mesh_send(l->mesh, node, &m);
}

static void on_publish(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct core *c = l->core;
	const __typeof__(m->u.publish) *p = &m->u.publish;
	char *name = dupn(p->target);
	metric_inc(M_REMOTE_PUBLISHES_RX);
	if (!name) {
		if (p->push_id)
			receipt_now(l, node, p->push_id, 1);
		return;
	}
	struct target t = { p->target_kind == LINK_TO_CHANNEL ? TARGET_CHANNEL
			    : p->target_kind == LINK_TO_IDENTITY ? TARGET_IDENTITY : TARGET_DEVICE,
			    name };
	struct route_set rs;
	if (route_resolve(c, &t, p->qos > 0, &rs) != RB_OK) {
		if (p->push_id)
			receipt_now(l, node, p->push_id, 1);
		free(name);
		return;
	}
	/* Only what this node holds: a push from another node never travels
	 * on (rs.nodes is ignored), so it cannot loop. */
	if (!p->qos) {
		deliver_push(c, NULL, rs.conns, rs.n_conns, NULL, 0, 0, p->msgtype, p->payload.p,
			     p->payload.n);
	} else if (!rs.n_conns && !rs.n_offline) {
		/* A channel with no member left here answers nobody; an
		 * identity or device that is not here, one failed. */
		if (p->push_id)
			receipt_now(l, node, p->push_id,
				    t.kind == TARGET_CHANNEL || rs.kept_offline ? 0 : 1);
	} else {
		/* Our own timeout a little shorter than the sender's, so that
		 * the receipt (with what is pending) is back before it gives
		 * up on this leg. Push id 0: a message handed over with a
		 * session, whose receipt went long ago; delivered all the
		 * same, answered to nobody. */
		double tmo = p->timeout_ms / 1000.0;
		tmo -= tmo / 5 < 0.5 ? tmo / 5 : 0.5;
		struct inpub *ip = malloc(sizeof(*ip));
		struct push *ps = ip ? push_new(c->pushes, c->base, tmo, on_inpub_done, ip) : NULL;
		if (!ps) {
			free(ip);
			if (p->push_id)
				receipt_now(l, node, p->push_id,
					    (uint32_t)(rs.n_conns + rs.n_offline));
		} else {
			*ip = (struct inpub){ l, node, p->push_id };
			deliver_push(c, ps, rs.conns, rs.n_conns, rs.offline, rs.n_offline, p->qos,
				     p->msgtype, p->payload.p, p->payload.n);
			push_seal(ps);
		}
	}
	route_set_free(&rs);
	free(name);
}

/* ---- remote operations ---- */

static void group_finish(struct group *g)
{
	struct lan *l = g->lan;
	for (size_t i = 0; i < g->n_ids; i++)
		free(idmap_del(&l->calls, g->ids[i]));
	if (g->done)
		g->done(g->rc, g->arg);
	else if (g->member)
		g->member(g->arg, NULL, NULL, NULL);
	else if (g->info)
		g->info(g->arg, 0, NULL, 0);
	event_free(g->timer);
	free(g->ids);
	free(g);
}

/* One node answered (rc) or will not (timeout, link down). */
static void call_answered(struct lan *l, uint64_t id, int rc)
{
	struct call *k = idmap_del(&l->calls, id);
	if (!k)
		return;
	struct group *g = k->g;
	free(k);
	for (size_t i = 0; i < g->n_ids; i++)
		if (g->ids[i] == id)
			g->ids[i] = g->ids[--g->n_ids];
	/* The best answer wins: done somewhere, else not found, else the
	 * error. */
	if (rc == RB_OK || (rc == RB_ENOTFOUND && g->rc != RB_OK))
		g->rc = rc;
	if (--g->waiting == 0)
		group_finish(g);
}

static void on_group_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct group *g = arg;
	struct lan *l = g->lan;
	(void)fd;
	(void)what;
	while (g->n_ids) {
		uint64_t id = g->ids[0];
		if (g->waiting == 1) {
			/* The last one finishes (and frees) the group. */
			if (g->rc != RB_OK && g->rc != RB_ENOTFOUND)
				g->rc = RB_ETIMEDOUT;
			call_answered(l, id, RB_ETIMEDOUT);
			return;
		}
		call_answered(l, id, RB_ETIMEDOUT);
	}
}

/* A group over nodes[0..n): sends each its frame (build sets the request
 * id). Nodes whose frame cannot be sent count as answered with RB_EIO at
 * once; if none could be, returns that error and calls nothing. */
static int group_start(struct lan *l, struct group *g, const uint32_t *nodes, size_t n,
		       struct link_msg *m, uint64_t *idfield)
{
	g->lan = l;
	g->rc = RB_EIO;
	g->ids = calloc(n ? n : 1, sizeof(*g->ids));
	g->timer = evtimer_new(l->core->base, on_group_timeout, g);
	if (!g->ids || !g->timer) {
		free(g->ids);
		if (g->timer)
			event_free(g->timer);
		free(g);
		return RB_ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t id = ++l->next_id;
		struct call *k = malloc(sizeof(*k));
		*idfield = id;
		if (!k || idmap_put(&l->calls, id, k) != RB_OK) {
			free(k);
			continue;
		}
		*k = (struct call){ g, nodes[i] };
		if (mesh_send(l->mesh, nodes[i], m) != RB_OK) {
			free(idmap_del(&l->calls, id));
			continue;
		}
		g->ids[g->n_ids++] = id;
	}
	g->waiting = g->n_ids;
	if (!g->n_ids) {
		event_free(g->timer);
		free(g->ids);
		free(g);
		return RB_EIO;
	}
	struct timeval tv = { (time_t)l->call_timeout,
			      (suseconds_t)((l->call_timeout - (time_t)l->call_timeout) * 1e6) };
	evtimer_add(g->timer, &tv);
	return RB_OK;
}

static int remote(struct engine *e, uint32_t node, const struct engine_op *op,
		  engine_done_fn done, void *arg)
{
	struct lan *l = lan_of(e);
	uint32_t nodes[MAX_NODES];
	size_t n;
	if (node) {
		if (!mesh_is_up(l->mesh, node))
			return RB_ENOTFOUND;
		nodes[0] = node;
		n = 1;
	} else if (!(n = mesh_up_nodes(l->mesh, nodes, MAX_NODES))) {
		return RB_ENOTFOUND;
	}
	if (n > MAX_NODES)
		n = MAX_NODES;
	static const uint8_t kinds[] = { [ENGINE_SUB] = LINK_OP_SUB,
					 [ENGINE_UNSUB] = LINK_OP_UNSUB,
					 [ENGINE_KICK] = LINK_OP_KICK,
					 [ENGINE_OCCUPY] = LINK_OP_OCCUPY };
	struct link_msg m = { .type = LINK_OP };
	m.u.op.kind = kinds[op->kind];
	m.u.op.identity = LINK_STR(op->identity ? op->identity : "");
	m.u.op.channel = LINK_STR(op->channel ? op->channel : "");
	m.u.op.code = op->code;
	m.u.op.reason = LINK_STR(op->reason ? op->reason : "");
	struct group *g = calloc(1, sizeof(*g));
	if (!g)
		return RB_ENOMEM;
	g->done = done;
	g->arg = arg;
	return group_start(l, g, nodes, n, &m, &m.u.op.op_id);
}

static int do_op(struct lan *l, const struct link_msg *msg)
{
	struct core *c = l->core;
	const __typeof__(msg->u.op) *op = &msg->u.op;
	char *identity = dupn(op->identity), *channel = dupn(op->channel);
	char *reason = dupn(op->reason);
	int rc = RB_ENOMEM;
	if (!identity || !channel || !reason)
		goto out;
	struct conn *cn = *identity ? core_conn_by_identity(c, identity) : NULL;
	if (!conn_reachable(cn))
		cn = NULL;
	switch (op->kind) {
	case LINK_OP_SUB:
	case LINK_OP_UNSUB:
		rc = RB_ENOTFOUND;
		if (cn && *channel) {
			if (op->kind == LINK_OP_SUB)
				conn_sub(c, cn, channel);
			else
				conn_unsub(c, cn, channel);
			rc = RB_OK;
		}
		break;
	case LINK_OP_KICK:
		rc = RB_ENOTFOUND;
		if (cn) {
			metric_inc(M_CONN_KICKED);
			log_info("conn %s: kicked (%d) by another node", cn->identity,
				 (int)op->code);
			core_close_conn(c, cn->id, (uint16_t)op->code, *reason ? reason : "kicked");
			rc = RB_OK;
		}
		break;
	case LINK_OP_OCCUPY: {
		/* The channel becomes the identity's alone: every other member
		 * here leaves (offline sessions too); the identity joins if it
		 * is here. */
		struct target t = { TARGET_CHANNEL, channel };
		struct route_set rs;
		rc = RB_ENOTFOUND;
		if (!*channel || route_resolve(c, &t, false, &rs) != RB_OK)
			break;
		for (size_t i = 0; i < rs.n_conns; i++) {
			struct conn *other = core_conn(c, rs.conns[i]);
			if (other && other != cn)
				conn_unsub(c, other, channel);
		}
		route_set_free(&rs);
		core_batch(c);
		db_sub_evict(c->db, channel, cn && cn->session ? cn->device_id : NULL);
		if (cn) {
			conn_sub(c, cn, channel);
			rc = RB_OK;
		}
		break;
	}
	}
out:
	free(identity);
	free(channel);
	free(reason);
	return rc;
}

/* ---- presence ---- */

static int presence(struct engine *e, const char *channel,
		    void (*fn)(void *arg, const char *identity, const char *device,
			       const char *platform),
		    void *arg)
{
	struct lan *l = lan_of(e);
	uint32_t nodes[MAX_NODES];
	size_t n = channel_nodes(e, channel, nodes, MAX_NODES);
	if (!n)
		return RB_ENOTFOUND;
	if (n > MAX_NODES)
		n = MAX_NODES;
	struct link_msg m = { .type = LINK_PRESENCE_REQ,
			      .u.presence_req.channel = LINK_STR(channel) };
	struct group *g = calloc(1, sizeof(*g));
	if (!g)
		return RB_ENOMEM;
	g->member = fn;
	g->arg = arg;
	return group_start(l, g, nodes, n, &m, &m.u.presence_req.req_id);
}

static void answer_presence(struct lan *l, uint32_t node, const struct link_msg *req)
{
	struct core *c = l->core;
	char *ch = dupn(req->u.presence_req.channel);
	struct route_set rs = { 0 };
	struct target t = { TARGET_CHANNEL, ch };
	static struct link_presence_entry items[PART_ITEMS];
	struct link_msg m = { .type = LINK_PRESENCE_RESP };
	m.u.presence_resp.req_id = req->u.presence_req.req_id;
	m.u.presence_resp.flags = LINK_PART_FIRST;
	size_t k = 0;
	if (ch && route_resolve(c, &t, false, &rs) == RB_OK) {
		for (size_t i = 0; i < rs.n_conns; i++) {
			struct conn *cn = core_conn(c, rs.conns[i]);
			if (!cn)
				continue;
			items[k++] = (struct link_presence_entry){
				LINK_STR(cn->identity),
				LINK_STR(cn->device_id ? cn->device_id : ""),
				LINK_STR(cn->platform ? cn->platform : "") };
			if (k == PART_ITEMS) {
				m.u.presence_resp.members.items = items;
				m.u.presence_resp.members.n = k;
				mesh_send(l->mesh, node, &m);
				m.u.presence_resp.flags = 0;
				k = 0;
			}
		}
	}
	m.u.presence_resp.flags |= LINK_PART_LAST;
	m.u.presence_resp.members.items = items;
	m.u.presence_resp.members.n = k;
	mesh_send(l->mesh, node, &m);
	route_set_free(&rs);
	free(ch);
}

static void on_presence_resp(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct call *k = idmap_get(&l->calls, m->u.presence_resp.req_id);
	if (!k || k->node != node)
		return;
	struct group *g = k->g;
	size_t pos = 0;
	struct link_presence_entry en;
	while (link_presence_next(&m->u.presence_resp.members, &pos, &en)) {
		char *id = dupn(en.identity), *dev = dupn(en.device), *plat = dupn(en.platform);
		if (id && dev && plat)
			g->member(g->arg, id, *dev ? dev : NULL, *plat ? plat : NULL);
		free(id);
		free(dev);
		free(plat);
	}
	if (m->u.presence_resp.flags & LINK_PART_LAST)
		call_answered(l, m->u.presence_resp.req_id, RB_OK);
}

/* ---- node information (whole-cluster /serverinfo/ and /channels/) ---- */

static int gather(struct engine *e,
		  void (*fn)(void *arg, uint32_t node, const char *json, size_t len), void *arg)
{
	struct lan *l = lan_of(e);
	uint32_t nodes[MAX_NODES];
	size_t n = mesh_up_nodes(l->mesh, nodes, MAX_NODES);
	if (!n)
		return RB_ENOTFOUND;
	if (n > MAX_NODES)
		n = MAX_NODES;
	struct link_msg m = { .type = LINK_INFO_REQ };
	struct group *g = calloc(1, sizeof(*g));
	if (!g)
		return RB_ENOMEM;
	g->info = fn;
	g->arg = arg;
	return group_start(l, g, nodes, n, &m, &m.u.info.req_id);
}

static void answer_info(struct lan *l, uint32_t node, const struct link_msg *req)
{
	char *json = rest_node_info(l->core);
	struct link_msg m = { .type = LINK_INFO_RESP };
	m.u.info.req_id = req->u.info.req_id;
	m.u.info.json = LINK_STR(json ? json : "{}");
	mesh_send(l->mesh, node, &m);
	free(json);
}

static void on_info(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct call *k = idmap_get(&l->calls, m->u.info.req_id);
	if (!k || k->node != node)
		return;
	k->g->info(k->g->arg, node, (const char *)m->u.info.json.p, m->u.info.json.n);
	call_answered(l, m->u.info.req_id, RB_OK);
}

/* ---- sessions that move between nodes ---- */

/* This node takes a session from another one (the device connected here). */
struct take {
	struct lan *l;
	uint64_t id;
	uint32_t node;
	engine_done_fn done;
	void *arg;
	struct event *timer;
	char device[];
};

static void take_end(struct take *t, int rc)
{
	idmap_del(&t->l->takes, t->id);
	event_free(t->timer);
	t->done(rc, t->arg);
	free(t);
}

static void on_take_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct take *t = arg;
	(void)fd;
	(void)what;
	log_warn("cluster: session of device %s: node %08x did not hand it over in time",
		 t->device, t->node);
	take_end(t, RB_ETIMEDOUT);
}

static int take_session(struct engine *e, uint32_t node, const char *dev, engine_done_fn done,
			void *arg)
{
	struct lan *l = lan_of(e);
	size_t n = strlen(dev) + 1;
	struct take *t = calloc(1, sizeof(*t) + n);
	if (!t)
		return RB_ENOMEM;
	*t = (struct take){ l, ++l->next_id, node, done, arg, NULL };
	memcpy(t->device, dev, n);
	t->timer = evtimer_new(l->core->base, on_take_timeout, t);
	struct link_msg m = { .type = LINK_SESSION_TAKE,
			      .u.session_take = { t->id, LINK_STR(dev) } };
	int rc = t->timer ? idmap_put(&l->takes, t->id, t) : RB_ENOMEM;
	if (rc == RB_OK && (rc = mesh_send(l->mesh, node, &m)) != RB_OK)
		idmap_del(&l->takes, t->id);
	if (rc != RB_OK) {
		if (t->timer)
			event_free(t->timer);
		free(t);
		return rc;
	}
	/* Twice a call's time: the state may be large. */
	struct timeval tv = tv_from_seconds(2 * l->call_timeout);
	evtimer_add(t->timer, &tv);
	return RB_OK;
}

static void takes_node_down(struct lan *l, uint32_t node)
{
	size_t i = 0;
	uint64_t id;
	void *v;
	while (idmap_next(&l->takes, &i, &id, &v))
		if (((struct take *)v)->node == node) {
			take_end(v, RB_EIO);
			i = 0; /* the map changed */
		}
}

static void takes_free(struct lan *l)
{
	size_t i = 0;
	uint64_t id;
	void *v;
	while (idmap_next(&l->takes, &i, &id, &v)) {
		struct take *t = v;
		event_free(t->timer);
		free(t);
	}
	idmap_free(&l->takes);
}

struct imported {
	struct lan *l;
	uint32_t node;
	uint64_t req;
	uint64_t take_id;   /* 0: nobody waits (timed out) */
	bool ok;
};

static void on_import_committed(void *arg, bool committed)
{
	struct imported *im = arg;
	struct lan *l = im->l;
	int rc = committed && im->ok ? RB_OK : RB_EIO;
	/* Now the old node may delete its copy: ours is durable. */
	struct link_msg m = { .type = LINK_SESSION_DONE, .u.session_done = { im->req, rc } };
	mesh_send(l->mesh, im->node, &m);
	struct take *t = im->take_id ? idmap_get(&l->takes, im->take_id) : NULL;
	if (t)
		take_end(t, rc);
	free(im);
}

static void import_channel(struct core *c, const char *device, struct link_str ch, bool *ok)
{
	char *name = dupn(ch);
	if (!name || db_sub_add(c->db, device, name) != RB_OK)
		*ok = false;
	free(name);
}

/* The old node's answer: write the session here in the open batch; answer
 * it and the waiting connection once committed. */
static void take_state(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct core *c = l->core;
	const __typeof__(m->u.session_state) *st = &m->u.session_state;
	struct take *t = idmap_get(&l->takes, st->req_id);
	if (!t || t->node != node) {
		/* Gave up waiting: the old node keeps it. */
		struct link_msg d = { .type = LINK_SESSION_DONE,
				      .u.session_done = { st->req_id, RB_ETIMEDOUT } };
		mesh_send(l->mesh, node, &d);
		return;
	}
	if (st->rc != RB_OK) {
		take_end(t, st->rc);
		return;
	}
	struct imported *im = malloc(sizeof(*im));
	if (!im) {
		take_end(t, RB_ENOMEM);
		return;
	}
	*im = (struct imported){ l, node, st->req_id, t->id, true };
	const char *dev = t->device;
	bool ok = true;
	core_batch(c);
	struct db_session s = { .expires_at = (int64_t)time(NULL) +
					      (int64_t)c->conf->session_expiry,
				.next_msgid = st->next_msgid };
	if (db_session_put(c->db, dev, &s) != RB_OK)
		ok = false;
	size_t pos = 0;
	struct link_str ch;
	while (ok && link_names_next(&st->channels, &pos, &ch))
		import_channel(c, dev, ch, &ok);
	struct link_dlv_entry d;
	pos = 0;
	size_t n_dlv = 0;
	while (ok && link_dlv_next(&st->dlvs, &pos, &d)) {
		int64_t msg_id;
		ok = db_msg_add(c->db, d.msgtype, d.qos, d.payload.p, d.payload.n, &msg_id) == RB_OK &&
		     db_dlv_add(c->db, dev, d.msgid, msg_id, d.state) == RB_OK &&
		     (!d.sent || db_dlv_set_sent(c->db, dev, d.msgid) == RB_OK);
		n_dlv++;
	}
	struct link_up_entry u;
	pos = 0;
	while (ok && link_up_next(&st->ups, &pos, &u))
		ok = db_up_begin(c->db, dev, u.msgid) == RB_OK &&
		     (u.state != 2 || db_up_reply(c->db, dev, u.msgid, u.reply.p, u.reply.n) == RB_OK);
	if (!ok)
		log_error("cluster: session of device %s from %08x not stored whole; the old node "
			  "keeps it", dev, node);
	else
		log_info("cluster: session of device %s taken from %08x: %zu channels, %zu messages",
			 dev, node, st->channels.n, n_dlv);
	im->ok = ok;
	commit_hold_call(c->commit, on_import_committed, im);
}

/* This node gives a session away. */
struct give {
	struct give *next;
	uint32_t node;
	uint64_t req;
	uint8_t sent[65536 / 8];   /* msgids handed over */
	char device[];
};

struct export {
	struct link_str *chans;
	char **owned;
	size_t n_ch, cap_ch;
	struct link_dlv_entry *dlv;
	size_t n_dlv, cap_dlv;
	struct link_up_entry *up;
	size_t n_up, cap_up;
	bool failed;
};

static bool grow(void **v, size_t *cap, size_t n, size_t size)
{
	if (n < *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 16;
	void *nv = realloc(*v, nc * size);
	if (!nv)
		return false;
	*v = nv;
	*cap = nc;
	return true;
}

static void export_channel(const char *ch, void *arg)
{
	struct export *x = arg;
	char *d = strdup(ch);
	size_t cap = x->cap_ch;
	if (!d || !grow((void **)&x->chans, &cap, x->n_ch, sizeof(*x->chans)) ||
	    !grow((void **)&x->owned, &x->cap_ch, x->n_ch, sizeof(*x->owned))) {
		free(d);
		x->failed = true;
		return;
	}
	x->owned[x->n_ch] = d;
	x->chans[x->n_ch++] = LINK_STR(d);
}

static void *dup_bytes(const void *p, size_t n)
{
	void *d = malloc(n ? n : 1);
	if (d && n)
		memcpy(d, p, n);
	return d;
}

static void export_dlv(const struct db_dlv *d, void *arg)
{
	struct export *x = arg;
	void *pl = dup_bytes(d->payload, d->len);
	if (!pl || d->qos < 1 || d->qos > 2 ||
	    !grow((void **)&x->dlv, &x->cap_dlv, x->n_dlv, sizeof(*x->dlv))) {
		free(pl);
		x->failed = true;
		return;
	}
	x->dlv[x->n_dlv++] = (struct link_dlv_entry){ d->msgid, (uint8_t)d->state, d->sent, d->qos,
						      d->msgtype, { pl, d->len } };
}

static void export_up(const struct db_up *u, void *arg)
{
	struct export *x = arg;
	void *r = dup_bytes(u->reply, u->len);
	if (!r || !grow((void **)&x->up, &x->cap_up, x->n_up, sizeof(*x->up))) {
		free(r);
		x->failed = true;
		return;
	}
	x->up[x->n_up++] = (struct link_up_entry){ u->msgid, (uint8_t)u->state,
						   { r, u->state == 2 ? u->len : 0 } };
}

static void export_free(struct export *x)
{
	for (size_t i = 0; i < x->n_ch; i++)
		free(x->owned[i]);
	for (size_t i = 0; i < x->n_dlv; i++)
		free((void *)x->dlv[i].payload.p);
	for (size_t i = 0; i < x->n_up; i++)
		free((void *)x->up[i].reply.p);
	free(x->chans);
	free(x->owned);
	free(x->dlv);
	free(x->up);
}

static void give_session(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct core *c = l->core;
	char *dev = dupn(m->u.session_take.device);
	struct link_msg r = { .type = LINK_SESSION_STATE };
	r.u.session_state.req_id = m->u.session_take.req_id;
	struct export x = { 0 };
	struct db_session s;
	if (!dev) {
		r.u.session_state.rc = RB_ENOMEM;
		mesh_send(l->mesh, node, &r);
		return;
	}
	session_evict(c, dev); /* its holder here goes; the rows are whole */
	core_batch(c);
	if (db_session_get(c->db, dev, &s) != RB_OK ||
	    (s.expires_at && s.expires_at <= (int64_t)time(NULL))) {
		r.u.session_state.rc = RB_ENOTFOUND;
	} else if (db_subs_of(c->db, dev, export_channel, &x) != RB_OK ||
		   db_dlv_list(c->db, dev, export_dlv, &x) != RB_OK ||
		   db_up_list(c->db, dev, export_up, &x) != RB_OK || x.failed) {
		r.u.session_state.rc = RB_EIO;
	} else {
		r.u.session_state.next_msgid = s.next_msgid;
		r.u.session_state.channels = (struct link_names){ x.chans, x.n_ch, NULL, 0 };
		r.u.session_state.dlvs = (struct link_dlv_list){ x.dlv, x.n_dlv, NULL, 0 };
		r.u.session_state.ups = (struct link_up_list){ x.up, x.n_up, NULL, 0 };
	}
	if (link_encode(&r, NULL, 0) == RB_ETOOBIG) {
		log_warn("cluster: session of device %s too large to move (over %u bytes)", dev,
			 LINK_FRAME_MAX);
		r.u.session_state = (__typeof__(r.u.session_state)){ .req_id = m->u.session_take.req_id,
								      .rc = RB_ETOOBIG };
	}
	struct give *g = r.u.session_state.rc == RB_OK ? calloc(1, sizeof(*g) + strlen(dev) + 1)
						     : NULL;
	if (!g && r.u.session_state.rc == RB_OK) /* it could not be deleted here later */
		r.u.session_state = (__typeof__(r.u.session_state)){ .req_id = m->u.session_take.req_id,
								      .rc = RB_ENOMEM };
	if (g) {
		g->node = node;
		g->req = m->u.session_take.req_id;
		strcpy(g->device, dev);
		for (size_t i = 0; i < x.n_dlv; i++)
			g->sent[x.dlv[i].msgid / 8] |= (uint8_t)(1u << (x.dlv[i].msgid % 8));
		g->next = l->gives;
		l->gives = g;
		log_info("cluster: session of device %s goes to %08x: %zu channels, %zu messages",
			 dev, node, x.n_ch, x.n_dlv);
	}
	/* Once the detach of the holder here is committed, so that a crash of
	 * this node cannot bring back a session it gave away. */
	send_after_commit(l, node, &r);
	export_free(&x);
	free(dev);
}

/* Messages stored here for the device after its state left: they go on to
 * its new node (durably there, no receipt: theirs was given when they were
 * stored). */
struct late {
	struct lan *l;
	struct give *g;
	size_t n;
};

static void forward_late(const struct db_dlv *d, void *arg)
{
	struct late *lt = arg;
	if (lt->g->sent[d->msgid / 8] & (1u << (d->msgid % 8)))
		return;
	struct engine_push p = { .device = lt->g->device, .qos = d->qos, .msgtype = d->msgtype,
				 .payload = d->payload, .len = d->len,
				 .timeout = lt->l->core->conf->session_expiry };
	if (publish(&lt->l->e, lt->g->node, &p, NULL) == RB_OK)
		lt->n++;
}

static struct give *give_unlink(struct lan *l, uint32_t node, uint64_t req)
{
	for (struct give **pp = &l->gives; *pp; pp = &(*pp)->next)
		if ((*pp)->node == node && (*pp)->req == req) {
			struct give *g = *pp;
			*pp = g->next;
			return g;
		}
	return NULL;
}

static void give_done(struct lan *l, uint32_t node, const struct link_msg *m)
{
	struct core *c = l->core;
	struct give *g = give_unlink(l, node, m->u.session_done.req_id);
	if (!g)
		return;
	if (m->u.session_done.rc != RB_OK) {
		log_warn("cluster: session of device %s stays here: node %08x could not take it "
			 "(%s)", g->device, node, rb_strerror(m->u.session_done.rc));
	} else if (session_holder(c, g->device)) {
		/* It came back here meanwhile: this copy is the live one. */
		log_warn("cluster: session of device %s is held here again; not deleted",
			 g->device);
	} else {
		struct late lt = { l, g, 0 };
		core_batch(c);
		db_dlv_list(c->db, g->device, forward_late, &lt);
		db_session_delete(c->db, g->device);
		device(&l->e, g->device, false);
		log_info("cluster: session of device %s moved to %08x%s", g->device, node,
			 lt.n ? " (with messages that arrived meanwhile)" : "");
	}
	free(g);
}

static void gives_node_down(struct lan *l, uint32_t node)
{
	/* No SESSION_DONE will come: the session stays here. */
	for (struct give **pp = &l->gives; *pp;) {
		struct give *g = *pp;
		if (g->node == node) {
			*pp = g->next;
			free(g);
		} else {
			pp = &g->next;
		}
	}
}

static void gives_free(struct lan *l)
{
	while (l->gives) {
		struct give *g = l->gives;
		l->gives = g->next;
		free(g);
	}
}

/* ---- the mesh's callbacks ---- */

static void on_up(void *arg, uint32_t node, uint64_t incarnation)
{
	struct lan *l = arg;
	(void)incarnation;
	dir_clear(&l->channels, node); /* fresh FULLs follow */
	dir_clear(&l->devices, node);
	send_full(l, node);
}

static uint32_t rpub_node(const void *v)
{
	return ((const struct rpub *)v)->node;
}

static uint32_t call_node(const void *v)
{
	return ((const struct call *)v)->node;
}

/* The keys of m whose value belongs to node, into a malloc'd *out (as many
 * as memory allows); how many. */
static size_t ids_of_node(const struct idmap *m, uint32_t node,
			  uint32_t (*node_of)(const void *), uint64_t **out)
{
	size_t i = 0, n = 0, cap = 0;
	uint64_t id, *ids = NULL;
	void *v;
	while (idmap_next(m, &i, &id, &v)) {
		if (node_of(v) != node)
			continue;
		if (n == cap) {
			uint64_t *nv = realloc(ids, (cap = cap ? cap * 2 : 16) * sizeof(*ids));
			if (!nv)
				break;
			ids = nv;
		}
		ids[n++] = id;
	}
	*out = ids;
	return n;
}

static void on_down(void *arg, uint32_t node)
{
	struct lan *l = arg;
	dir_clear(&l->channels, node);
	dir_clear(&l->devices, node);
	takes_node_down(l, node);
	gives_node_down(l, node);
	/* Its legs of our pushes failed; its answers to our calls will not
	 * come. Collect first: completing may start other work. */
	uint64_t *ids = NULL;
	size_t n = ids_of_node(&l->pubs, node, rpub_node, &ids);
	for (size_t k = 0; k < n; k++) {
		struct rpub *r = idmap_del(&l->pubs, ids[k]);
		if (!r)
			continue;
		struct push_leg *leg = r->leg;
		free(r);
		leg->expire = NULL;
		metric_inc(M_REMOTE_LEGS_FAILED);
		push_leg_done(leg, PUSH_FAILED, NULL, 0);
	}
	free(ids);
	ids = NULL;
	n = ids_of_node(&l->calls, node, call_node, &ids);
	for (size_t k = 0; k < n; k++)
		call_answered(l, ids[k], RB_EIO);
	free(ids);
}

static void on_msg(void *arg, uint32_t node, const struct link_msg *m)
{
	struct lan *l = arg;
	switch (m->type) {
	case LINK_INTEREST_FULL:
	case LINK_DEVICES_FULL: {
		struct dir *d = m->type == LINK_INTEREST_FULL ? &l->channels : &l->devices;
		if (m->u.interest_full.flags & LINK_PART_FIRST)
			dir_clear(d, node);
		size_t pos = 0;
		struct link_str s;
		while (link_names_next(&m->u.interest_full.channels, &pos, &s))
			dir_set(d, node, s, true);
		break;
	}
	case LINK_INTEREST_DELTA:
		dir_set(&l->channels, node, m->u.interest_delta.channel, m->u.interest_delta.add);
		break;
	case LINK_DEVICE_DELTA:
		dir_set(&l->devices, node, m->u.interest_delta.channel, m->u.interest_delta.add);
		break;
	case LINK_SESSION_TAKE:
		give_session(l, node, m);
		break;
	case LINK_SESSION_STATE:
		take_state(l, node, m);
		break;
	case LINK_SESSION_DONE:
		give_done(l, node, m);
		break;
	case LINK_INFO_REQ:
		answer_info(l, node, m);
		break;
	case LINK_INFO_RESP:
		on_info(l, node, m);
		break;
	case LINK_PUBLISH:
		on_publish(l, node, m);
		break;
	case LINK_RECEIPT:
		on_receipt(l, node, m);
		break;
	case LINK_OP: {
		struct link_msg r = { .type = LINK_OP_RESULT,
				      .u.op_result = { m->u.op.op_id, do_op(l, m) } };
		send_after_commit(l, node, &r);
		break;
	}
	case LINK_OP_RESULT: {
		struct call *k = idmap_get(&l->calls, m->u.op_result.op_id);
		if (k && k->node == node)
			call_answered(l, m->u.op_result.op_id, m->u.op_result.rc);
		break;
	}
	case LINK_PRESENCE_REQ:
		answer_presence(l, node, m);
		break;
	case LINK_PRESENCE_RESP:
		on_presence_resp(l, node, m);
		break;
	default:
		break;
	}
}

static void on_discovery(void *arg, enum discovery_event ev, const struct peer *p, bool left)
{
	struct lan *l = arg;
	if (ev == DISCOVERY_JOINED)
		mesh_peer_seen(l->mesh, p->id, p->ip, p->port, p->incarnation);
	else
		mesh_peer_gone(l->mesh, p->id, left);
}

/* ---- the engine ---- */

static uint32_t self(struct engine *e)
{
	return lan_of(e)->core->node_id;
}

static size_t nodes(struct engine *e, struct engine_node *out, size_t cap)
{
	struct lan *l = lan_of(e);
	size_t n = mesh_peers(l->mesh, NULL, 0);
	struct mesh_peer_info *v = n ? calloc(n, sizeof(*v)) : NULL;
	if (n && !v)
		n = 0;
	n = mesh_peers(l->mesh, v, n);
	const struct peer *dp;
	size_t np = discovery_peers(l->disc, &dp);
	int64_t now = discovery_clock_ms();
	if (cap) {
		out[0] = (struct engine_node){ .id = l->core->node_id, .up = true,
					       .incarnation = discovery_incarnation(l->disc),
					       .state = "self" };
		snprintf(out[0].addr, sizeof(out[0].addr), "%.*s", (int)sizeof(out[0].addr) - 1,
			 l->core->server_name);
	}
	for (size_t i = 0; i < n && i + 1 < cap; i++) {
		struct engine_node *o = &out[i + 1];
		*o = (struct engine_node){ .id = v[i].id, .up = v[i].up,
					   .incarnation = v[i].incarnation,
					   .age_ms = v[i].last_heard_ms,
					   .state = v[i].state,
					   .discovered = v[i].discovered,
					   .frames_in = v[i].frames_in,
					   .frames_out = v[i].frames_out,
					   .bytes_in = v[i].bytes_in,
					   .bytes_out = v[i].bytes_out,
					   .links_up = v[i].links_up,
					   .links_lost = v[i].links_lost,
					   .output_bytes = v[i].output_bytes };
		snprintf(o->addr, sizeof(o->addr), "%s", v[i].addr);
		/* Heard from: over the link or by beacon, whichever is later. */
		for (size_t k = 0; k < np; k++)
			if (dp[k].id == o->id && (o->age_ms < 0 || now - dp[k].last_seen_ms < o->age_ms))
				o->age_ms = now - dp[k].last_seen_ms;
	}
	free(v);
	return n + 1;
}

static void lan_free(struct engine *e)
{
	struct lan *l = lan_of(e);
	discovery_free(l->disc);
	mesh_free(l->mesh);
	size_t i = 0;
	uint64_t id;
	void *v;
	dir_free(&l->channels);
	dir_free(&l->devices);
	takes_free(l);
	gives_free(l);
	while (idmap_next(&l->pubs, &i, &id, &v))
		free(v);
	idmap_free(&l->pubs);
	/* Open calls at exit: free each group with its calls, unanswered. */
	for (;;) {
		i = 0;
		if (!idmap_next(&l->calls, &i, &id, &v))
			break;
		struct group *g = ((struct call *)v)->g;
		for (size_t k = 0; k < g->n_ids; k++)
			free(idmap_del(&l->calls, g->ids[k]));
		event_free(g->timer);
		free(g->ids);
		free(g);
	}
	idmap_free(&l->calls);
	free(l);
}

static struct engine_ops lan_ops;

struct engine *engine_lan_new(struct core *c)
{
	struct lan *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	if (!lan_ops.name) {
		lan_ops = *engine_local_ops();
		lan_ops.name = "lan";
		lan_ops.self = self;
		lan_ops.interest = interest;
		lan_ops.channel_nodes = channel_nodes;
		lan_ops.locate_identity = locate_identity;
		lan_ops.locate_device = locate_device;
		lan_ops.device = device;
		lan_ops.take_session = take_session;
		lan_ops.gather = gather;
		lan_ops.publish = publish;
		lan_ops.remote = remote;
		lan_ops.presence = presence;
		lan_ops.nodes = nodes;
		lan_ops.free = lan_free;
	}
	l->e.ops = &lan_ops;
	l->core = c;
	l->call_timeout = c->conf->cluster_peer_timeout;
	bool dirs = dir_init(&l->channels) == RB_OK && dir_init(&l->devices) == RB_OK;
	l->disc = dirs ? discovery_new(c) : NULL;
	struct mesh_cb cb = { on_up, on_down, on_msg, l };
	if (l->disc)
		l->mesh = mesh_new(c, c->node_id, discovery_incarnation(l->disc), &cb);
	if (!l->mesh) {
		discovery_free(l->disc);
		dir_free(&l->channels);
		dir_free(&l->devices);
		free(l);
		return NULL;
	}
	discovery_watch(l->disc, on_discovery, l);
	return &l->e;
}
