#include "cluster/engine_lan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/discovery.h"
#include "protocol/rb.h"
#include "src/core/core.h"
#include "src/msg/engine.h"

struct lan {
	struct engine e;         /* first: the engine is the lan */
	struct core *core;
	struct discovery *disc;
};

static uint32_t self(struct engine *e)
{
	return discovery_self(((struct lan *)e)->disc);
}

static size_t nodes(struct engine *e, struct engine_node *out, size_t cap)
{
	struct lan *l = (struct lan *)e;
	const struct peer *p;
	size_t n = discovery_peers(l->disc, &p);
	int64_t now = discovery_clock_ms();

	if (cap) {
		out[0] = (struct engine_node){ .id = discovery_self(l->disc), .up = true,
					       .incarnation = discovery_incarnation(l->disc) };
		snprintf(out[0].addr, sizeof(out[0].addr), "%.*s", (int)sizeof(out[0].addr) - 1,
			 l->core->server_name);
	}
	for (size_t i = 0; i < n && i + 1 < cap; i++) {
		struct engine_node *o = &out[i + 1];
		*o = (struct engine_node){ .id = p[i].id, .up = true,
					   .incarnation = p[i].incarnation,
					   .age_ms = now - p[i].last_seen_ms };
		peer_addr(&p[i], o->addr, sizeof(o->addr));
	}
	return n + 1;
}

static void lan_free(struct engine *e)
{
	struct lan *l = (struct lan *)e;
	discovery_free(l->disc);
	free(l);
}

/* Discovery only so far: what crosses nodes still answers as on a single
 * node (the local engine's operations), except who this node is and which
 * nodes exist. */
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
		lan_ops.nodes = nodes;
		lan_ops.free = lan_free;
	}
	l->e.ops = &lan_ops;
	l->core = c;
	l->disc = discovery_new(c);
	if (!l->disc) {
		free(l);
		return NULL;
	}
	return &l->e;
}
