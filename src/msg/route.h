/*
 * route.h - the one place where a target is resolved: a channel, an
 * identity or a device, for every REST call that names one (/send/, /sub/,
 * /unsub/, /kick/, /presence/, occupy). The answer says where the target
 * lives: connections here, device sessions kept here while offline, and
 * other nodes (through the engine, engine.h), so that a caller handles
 * "on node N" the same way whether the engine is local or a cluster.
 * Core thread only.
 */
#ifndef RB_ROUTE_H
#define RB_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;

enum target_kind { TARGET_CHANNEL, TARGET_IDENTITY, TARGET_DEVICE };

struct target {
	enum target_kind kind;
	const char *name;
};

struct route_set {
	uint64_t *conns;      /* connections here that the REST API may act on */
	size_t n_conns;
	char **offline;       /* device sessions here with no connection (only
	                       * when asked: QoS 1/2 pushes queue for them) */
	size_t n_offline;
	uint32_t *nodes;      /* other nodes holding the target or members */
	size_t n_nodes;
	bool kept_offline;    /* a device whose session is kept here offline
	                       * (set even when offline ones are not listed) */
};

/*
 * Resolve t into out (zeroed first; release with route_set_free). With
 * offline, channel members and devices whose sessions are kept here while
 * disconnected are listed too. RB_OK (possibly with nothing in it: an
 * empty channel, or an identity/device known nowhere) or RB_ENOMEM.
 */
int route_resolve(struct core *c, const struct target *t, bool offline, struct route_set *out);
void route_set_free(struct route_set *s);
/* Found anywhere? */
static inline bool route_found(const struct route_set *s)
{
	return s->n_conns || s->n_offline || s->n_nodes || s->kept_offline;
}

#endif
