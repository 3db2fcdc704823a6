#include "src/msg/route.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/idmap.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/engine.h"
#include "src/msg/session.h"
#include "storage/db.h"

static int add_conn(struct route_set *s, uint64_t id)
{
	uint64_t *v = realloc(s->conns, (s->n_conns + 1) * sizeof(*v));
	if (!v)
		return RB_ENOMEM;
	s->conns = v;
	s->conns[s->n_conns++] = id;
	return RB_OK;
}

struct offline_acc {
	struct route_set *s;
	int rc;
};

static void add_offline(const char *device, void *arg)
{
	struct offline_acc *a = arg;
	struct route_set *s = a->s;
	char **v = realloc(s->offline, (s->n_offline + 1) * sizeof(*v));
	char *d = strdup(device);
	if (!v || !d) {
		free(d);
		if (v)
			s->offline = v;
		a->rc = RB_ENOMEM;
		return;
	}
	s->offline = v;
	s->offline[s->n_offline++] = d;
}

static int add_node(struct route_set *s, uint32_t node)
{
	uint32_t *v = realloc(s->nodes, (s->n_nodes + 1) * sizeof(*v));
	if (!v)
		return RB_ENOMEM;
	s->nodes = v;
	s->nodes[s->n_nodes++] = node;
	return RB_OK;
}

static int channel(struct core *c, const char *name, bool offline, struct route_set *s)
{
	/* Copy the ids: the registry's map goes with the channel's last
	 * member, and callers unsubscribe while iterating (occupy). */
	const struct idmap *m = channels_members(c->channels, name);
	if (m && m->len) {
		s->conns = malloc(m->len * sizeof(*s->conns));
		if (!s->conns)
			return RB_ENOMEM;
		size_t i = 0;
		uint64_t id;
		void *val;
		while (idmap_next(m, &i, &id, &val))
			s->conns[s->n_conns++] = id;
	}
	if (offline) {
		struct offline_acc a = { s, RB_OK };
		db_offline_members(c->db, name, add_offline, &a);
		if (a.rc != RB_OK)
			return a.rc;
	}
	size_t n = c->engine->ops->channel_nodes(c->engine, name, NULL, 0);
	if (n) {
		s->nodes = malloc(n * sizeof(*s->nodes));
		if (!s->nodes)
			return RB_ENOMEM;
		s->n_nodes = c->engine->ops->channel_nodes(c->engine, name, s->nodes, n);
		if (s->n_nodes > n)
			s->n_nodes = n;
	}
	return RB_OK;
}

int route_resolve(struct core *c, const struct target *t, bool offline, struct route_set *out)
{
	int rc = RB_OK;
	uint32_t node;
	struct conn *cn;

	memset(out, 0, sizeof(*out));
	switch (t->kind) {
	case TARGET_CHANNEL:
		rc = channel(c, t->name, offline, out);
		break;
	case TARGET_IDENTITY:
		cn = core_conn_by_identity(c, t->name);
		if (conn_reachable(cn))
			rc = add_conn(out, cn->id);
		else if ((node = c->engine->ops->locate_identity(c->engine, t->name)))
			rc = add_node(out, node);
		break;
	case TARGET_DEVICE:
		cn = session_holder(c, t->name);
		if (conn_reachable(cn)) {
			rc = add_conn(out, cn->id);
		} else if (session_offline(c, t->name)) {
			out->kept_offline = true;
			if (offline) {
				struct offline_acc a = { out, RB_OK };
				add_offline(t->name, &a);
				rc = a.rc;
			}
		} else if ((node = c->engine->ops->locate_device(c->engine, t->name))) {
			rc = add_node(out, node);
		}
		break;
	}
	if (rc != RB_OK)
		route_set_free(out);
	return rc;
}

void route_set_free(struct route_set *s)
{
	for (size_t i = 0; i < s->n_offline; i++)
		free(s->offline[i]);
	free(s->offline);
	free(s->conns);
	free(s->nodes);
	memset(s, 0, sizeof(*s));
}
