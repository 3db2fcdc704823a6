/*
 * timers.c - see timers.h.
 */
#include "clients/c/timers.h"

#include <stdlib.h>

#include "protocol/rb.h"

static void put(struct rbc_timers *h, uint32_t i, struct rbc_timer *t)
{
	h->v[i] = t;
	t->idx = i;
}

static void up(struct rbc_timers *h, uint32_t i)
{
	struct rbc_timer *t = h->v[i];

	while (i > 0) {
		uint32_t p = (i - 1) / 2;
		if (h->v[p]->at <= t->at)
			break;
		put(h, i, h->v[p]);
		i = p;
	}
	put(h, i, t);
}

static void down(struct rbc_timers *h, uint32_t i)
{
	struct rbc_timer *t = h->v[i];

	for (;;) {
		uint32_t l = 2 * i + 1, m;
		if (l >= h->len)
			break;
		m = l + 1 < h->len && h->v[l + 1]->at < h->v[l]->at ? l + 1 : l;
		if (t->at <= h->v[m]->at)
			break;
		put(h, i, h->v[m]);
		i = m;
	}
	put(h, i, t);
}

int rbc_timers_reserve(struct rbc_timers *h, uint32_t n)
{
	uint32_t cap = h->cap ? h->cap : 64;
	struct rbc_timer **v;

	if (n <= h->cap)
		return RB_OK;
	while (cap < n)
		cap = cap > UINT32_MAX / 2 ? n : cap * 2;
	v = realloc(h->v, (size_t)cap * sizeof(*v));
	if (!v)
		return RB_ENOMEM;
	h->v = v;
	h->cap = cap;
	return RB_OK;
}

int rbc_timers_set(struct rbc_timers *h, struct rbc_timer *t, int64_t at)
{
	if (rbc_timer_armed(t)) {
		int64_t old = t->at;
		t->at = at;
		if (at < old)
			up(h, t->idx);
		else
			down(h, t->idx);
		return RB_OK;
	}
	if (h->len == h->cap && rbc_timers_reserve(h, h->len + 1) != RB_OK)
		return RB_ENOMEM;
	t->at = at;
	put(h, h->len++, t);
	up(h, t->idx);
	return RB_OK;
}

void rbc_timers_del(struct rbc_timers *h, struct rbc_timer *t)
{
	uint32_t i = t->idx;
	struct rbc_timer *last;

	if (!rbc_timer_armed(t))
		return;
	t->idx = RBC_TIMER_IDLE;
	last = h->v[--h->len];
	if (last == t)
		return;
	put(h, i, last);
	/* the moved one may belong above or below its new slot */
	if (i > 0 && h->v[(i - 1) / 2]->at > last->at)
		up(h, i);
	else
		down(h, i);
}

void rbc_timers_free(struct rbc_timers *h)
{
	free(h->v);
	h->v = NULL;
	h->len = h->cap = 0;
}
