/*
 * idmap.h - open-addressing hash map from a non-zero 64-bit id to a pointer.
 * Used by each thread for its own connection table (not thread-safe: one
 * owner thread per map). Grows by doubling; deletion uses backward shift,
 * so there are no tombstones and lookups stay short.
 */
#ifndef RB_IDMAP_H
#define RB_IDMAP_H

#include <stddef.h>
#include <stdint.h>

struct idmap_slot {
	uint64_t id; /* 0 = empty */
	void *val;
};

struct idmap {
	struct idmap_slot *slots;
	size_t cap; /* power of two, or 0 */
	size_t len;
};

/* Zero-initialised struct idmap is a valid empty map. */
void idmap_free(struct idmap *m);
void *idmap_get(const struct idmap *m, uint64_t id);
/* Insert or replace. RB_OK or RB_ENOMEM. id must be non-zero. */
int idmap_put(struct idmap *m, uint64_t id, void *val);
/* Remove; returns the old value or NULL. */
void *idmap_del(struct idmap *m, uint64_t id);

/* Iterate: for (size_t i = 0; idmap_next(m, &i, &id, &val);) ...
 * The map must not change during the iteration. */
int idmap_next(const struct idmap *m, size_t *i, uint64_t *id, void **val);

#endif
