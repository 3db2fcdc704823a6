/*
 * handoff.c - the LAN engine's session handoff: a device's session moves
 * to the node it connects to (docs/cluster-protocol.md, "Sessions follow
 * their device"). Taking (this node asks: SESSION_TAKE, then stores the
 * SESSION_STATE it gets and answers SESSION_DONE once committed) and
 * giving (another node asks: export the session, and on SESSION_DONE pass
 * on what arrived meanwhile and delete it here). The engine's
 * take_session. Shares struct lan with engine_lan.c and dir.c
 * (engine_lan_int.h).
 *
 * Core thread only.
 */
#include "cluster/engine_lan_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "cluster/mesh.h"
#include "protocol/link.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/timeutil.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/msg/engine.h"
#include "src/msg/session.h"
#include "storage/db.h"

/* ---- taking: the session comes here ---- */

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

int lan_take_session(struct engine *e, uint32_t node, const char *dev, engine_done_fn done,
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
	char *name = lan_dupn(ch);
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

/* ---- giving: the session goes to another node ---- */

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
	char *dev = lan_dupn(m->u.session_take.device);
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
	lan_send_after_commit(l, node, &r);
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
	if (lan_publish(&lt->l->e, lt->g->node, &p, NULL) == RB_OK)
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
		lan_device(&l->e, g->device, false);
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

/* ---- the engine's side: frames and links ---- */

void handoff_on_msg(struct lan *l, uint32_t node, const struct link_msg *m)
{
	switch (m->type) {
	case LINK_SESSION_TAKE:
		give_session(l, node, m);
		break;
	case LINK_SESSION_STATE:
		take_state(l, node, m);
		break;
	case LINK_SESSION_DONE:
		give_done(l, node, m);
		break;
	default:
		break;
	}
}

void handoff_link_down(struct lan *l, uint32_t node)
{
	takes_node_down(l, node);
	gives_node_down(l, node);
}

void handoff_free(struct lan *l)
{
	takes_free(l);
	gives_free(l);
}
