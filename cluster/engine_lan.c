/*
 * engine_lan.c - the LAN cluster's engine (src/msg/engine.h) over
 * discovery and the mesh: the mesh's callbacks and the dispatch of its
 * frames, pushes to other nodes and their receipts (PUBLISH, RECEIPT),
 * remote operations (OP, OP_RESULT), presence (PRESENCE_REQ/RESP), node
 * information (INFO_REQ/RESP) and node membership. The channel and device
 * directories are in dir.c, the session handoff in handoff.c; struct lan
 * and the calls between the three are in engine_lan_int.h.
 *
 * Core thread only.
 */
#include "cluster/engine_lan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cluster/discovery.h"
#include "cluster/engine_lan_int.h"
#include "cluster/mesh.h"
#include "protocol/link.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/msg/deliver.h"
#include "src/msg/engine.h"
#include "src/msg/membership.h"
#include "src/msg/push.h"
#include "src/msg/route.h"
#include "src/msg/rest.h"
#include "storage/db.h"

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

char *lan_dupn(struct link_str s)
{
	char *p = malloc(s.n + 1);
	if (p) {
		if (s.n)
			memcpy(p, s.p, s.n);
		p[s.n] = 0;
	}
	return p;
}

/* ---- identities: each names the node that made it ---- */

static uint32_t locate_identity(struct engine *e, const char *identity)
{
	struct lan *l = lan_of(e);
	uint32_t n = identity_node(identity);
	return n && n != l->core->node_id && mesh_is_up(l->mesh, n) ? n : 0;
}

/* ---- publish: our pushes to other nodes ---- */

static enum push_outcome rpub_expire(struct push_leg *leg)
{
	struct lan *l = leg->ctx;
	free(idmap_del(&l->pubs, leg->tag));
	metric_inc(M_REMOTE_LEGS_FAILED);
	return PUSH_FAILED;
}

int lan_publish(struct engine *e, uint32_t node, const struct engine_push *p,
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

void lan_send_after_commit(struct lan *l, uint32_t node, const struct link_msg *m)
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
	lan_send_after_commit(ip->l, ip->node, &m);
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
	char *name = lan_dupn(p->target);
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
	char *identity = lan_dupn(op->identity), *channel = lan_dupn(op->channel);
	char *reason = lan_dupn(op->reason);
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
	size_t n = lan_channel_nodes(e, channel, nodes, MAX_NODES);
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
	char *ch = lan_dupn(req->u.presence_req.channel);
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
		char *id = lan_dupn(en.identity), *dev = lan_dupn(en.device), *plat = lan_dupn(en.platform);
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

/* ---- the mesh's callbacks ---- */

static void on_up(void *arg, uint32_t node, uint64_t incarnation)
{
	struct lan *l = arg;
	(void)incarnation;
	dirs_link_up(l, node);
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
	dirs_link_down(l, node);
	handoff_link_down(l, node);
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
	case LINK_INTEREST_DELTA:
	case LINK_DEVICES_FULL:
	case LINK_DEVICE_DELTA:
		dirs_on_msg(l, node, m);
		break;
	case LINK_SESSION_TAKE:
	case LINK_SESSION_STATE:
	case LINK_SESSION_DONE:
		handoff_on_msg(l, node, m);
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
		lan_send_after_commit(l, node, &r);
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
	dirs_free(l);
	handoff_free(l);
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
		lan_ops.interest = lan_interest;
		lan_ops.channel_nodes = lan_channel_nodes;
		lan_ops.locate_identity = locate_identity;
		lan_ops.locate_device = lan_locate_device;
		lan_ops.device = lan_device;
		lan_ops.take_session = lan_take_session;
		lan_ops.gather = gather;
		lan_ops.publish = lan_publish;
		lan_ops.remote = remote;
		lan_ops.presence = presence;
		lan_ops.nodes = nodes;
		lan_ops.free = lan_free;
	}
	l->e.ops = &lan_ops;
	l->core = c;
	l->call_timeout = c->conf->cluster_peer_timeout;
	bool dirs = dirs_init(l) == RB_OK;
	l->disc = dirs ? discovery_new(c) : NULL;
	struct mesh_cb cb = { on_up, on_down, on_msg, l };
	if (l->disc)
		l->mesh = mesh_new(c, c->node_id, discovery_incarnation(l->disc), &cb);
	if (!l->mesh) {
		discovery_free(l->disc);
		dirs_free(l);
		free(l);
		return NULL;
	}
	discovery_watch(l->disc, on_discovery, l);
	return &l->e;
}
