/*
 * dedup.c - see dedup.h. Linear scans: a connection has at most the
 * gateway's max_inflight_messages (default 1000) QoS 2 pushes between REC
 * and REL, and usually none.
 */
#include "clients/c/dedup.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"

static long find(const struct rbc_dedup *d, uint16_t id)
{
	for (uint32_t i = 0; i < d->len; i++)
		if (d->ids[i] == id)
			return (long)i;
	return -1;
}

int rbc_dedup_add(struct rbc_dedup *d, uint16_t id)
{
	uint32_t max = d->max ? d->max : 1;

	if (find(d, id) >= 0)
		return 1;
	if (d->len >= max) {
		/* the window is full: forget the oldest */
		memmove(d->ids, d->ids + 1, (size_t)(d->len - 1) * sizeof(*d->ids));
		d->len--;
	}
	if (d->len == d->cap) {
		uint32_t cap = d->cap ? d->cap * 2 : 8;
		if (cap > max)
			cap = max;
		uint16_t *n = realloc(d->ids, (size_t)cap * sizeof(*n));
		if (!n)
			return RB_ENOMEM;
		d->ids = n;
		d->cap = cap;
	}
	d->ids[d->len++] = id;
	return 0;
}

bool rbc_dedup_has(const struct rbc_dedup *d, uint16_t id)
{
	return find(d, id) >= 0;
}

bool rbc_dedup_remove(struct rbc_dedup *d, uint16_t id)
{
	long i = find(d, id);

	if (i < 0)
		return false;
	memmove(d->ids + i, d->ids + i + 1, (size_t)(d->len - (uint32_t)i - 1) * sizeof(*d->ids));
	d->len--;
	if (d->len == 0) {
		/* an idle connection holds nothing */
		free(d->ids);
		d->ids = NULL;
		d->cap = 0;
	}
	return true;
}

void rbc_dedup_free(struct rbc_dedup *d)
{
	free(d->ids);
	d->ids = NULL;
	d->len = d->cap = 0;
}
