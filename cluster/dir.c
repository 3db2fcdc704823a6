/*
 * dir.c - the LAN engine's channel and device directories: which nodes
 * announced members of a channel (INTEREST_FULL, INTEREST_DELTA) and which
 * hold a device's session (DEVICES_FULL, DEVICE_DELTA), and this node's own
 * announcements to the others (a FULL of each on link-up, then deltas). The
 * engine's interest, device, channel_nodes and locate_device. Shares struct
 * lan with engine_lan.c and handoff.c (engine_lan_int.h).
 *
 * Core thread only.
 */
#include "cluster/engine_lan_int.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/mesh.h"
#include "protocol/link.h"
#include "protocol/rb.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/strmap.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/engine.h"
#include "storage/db.h"

/* The nodes with members of one channel (a LAN cluster is small: an
 * array). */
struct where {
	size_t n;
	uint32_t id[];
};

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
	char *ch = lan_dupn(name);
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

void lan_interest(struct engine *e, const char *channel, bool on)
{
	delta_all(lan_of(e), LINK_INTEREST_DELTA, channel, on);
}

void lan_device(struct engine *e, const char *dev, bool on)
{
	delta_all(lan_of(e), LINK_DEVICE_DELTA, dev, on);
}

size_t lan_channel_nodes(struct engine *e, const char *channel, uint32_t *out, size_t cap)
{
	struct where *w = strmap_get(lan_of(e)->channels.where, channel);
	if (!w)
		return 0;
	for (size_t i = 0; i < w->n && i < cap; i++)
		out[i] = w->id[i];
	return w->n;
}

uint32_t lan_locate_device(struct engine *e, const char *dev)
{
	struct lan *l = lan_of(e);
	struct where *w = strmap_get(l->devices.where, dev);
	/* Two holders only during a move: the newest announcement wins. */
	return w && w->n && mesh_is_up(l->mesh, w->id[w->n - 1]) ? w->id[w->n - 1] : 0;
}

/* ---- the two directories, fed by the mesh ---- */

int dirs_init(struct lan *l)
{
	int rc = dir_init(&l->channels);
	return rc == RB_OK ? dir_init(&l->devices) : rc;
}

void dirs_free(struct lan *l)
{
	dir_free(&l->channels);
	dir_free(&l->devices);
}

void dirs_link_up(struct lan *l, uint32_t node)
{
	dir_clear(&l->channels, node); /* fresh FULLs follow */
	dir_clear(&l->devices, node);
	send_full(l, node);
}

void dirs_link_down(struct lan *l, uint32_t node)
{
	dir_clear(&l->channels, node);
	dir_clear(&l->devices, node);
}

void dirs_on_msg(struct lan *l, uint32_t node, const struct link_msg *m)
{
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
	default:
		break;
	}
}
