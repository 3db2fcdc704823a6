/*
 * strmap.h - chained hash map (FNV-1a) from a string to a pointer: the
 * project's one map for string keys (idmap.h is the one for 64-bit ids).
 * One owner thread per map. Keys are copied. Used for device ids
 * (sessions) and by the in-memory QoS store.
 */
#ifndef RB_STRMAP_H
#define RB_STRMAP_H

#include <stddef.h>

struct strmap;

struct strmap *strmap_new(void);
/* Frees the map and its key copies, not the values. NULL-tolerant. */
void strmap_free(struct strmap *m);
void *strmap_get(const struct strmap *m, const char *key);
/* Insert or replace. RB_OK or RB_ENOMEM. */
int strmap_put(struct strmap *m, const char *key, void *val);
/* Remove; returns the old value or NULL. */
void *strmap_del(struct strmap *m, const char *key);
size_t strmap_len(const struct strmap *m);
/* Calls fn once per entry, in no particular order. fn must not change the
 * map (it may free the value, e.g. just before strmap_free). */
void strmap_foreach(const struct strmap *m, void (*fn)(const char *key, void *val, void *arg),
		    void *arg);

#endif
