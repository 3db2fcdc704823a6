/*
 * timers.h - a binary min-heap of deadlines: one lws timer per context
 * drives the timers of all its connections (librainbow). libwebsockets
 * 4.1 keeps its scheduled callbacks in one sorted list (linear insertion),
 * so a timer per connection would cost O(connections) at every re-arm;
 * here it is O(log n). Pure; the context's thread only.
 */
#ifndef RBC_TIMERS_H
#define RBC_TIMERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RBC_TIMER_IDLE UINT32_MAX

/* Embedded in its owner; zero it, then set idx to RBC_TIMER_IDLE. */
struct rbc_timer {
	int64_t at;   /* when it is due (any monotonic unit) */
	uint32_t idx; /* its slot in the heap, RBC_TIMER_IDLE when not armed */
};

struct rbc_timers {
	struct rbc_timer **v;
	uint32_t len, cap;
};

static inline bool rbc_timer_armed(const struct rbc_timer *t)
{
	return t->idx != RBC_TIMER_IDLE;
}

/* Room for n timers in all, so that arming never allocates. RB_OK or
 * RB_ENOMEM. */
int rbc_timers_reserve(struct rbc_timers *h, uint32_t n);

/* Arm t for at, or move it there if armed. RB_OK or RB_ENOMEM (t is then
 * left as it was; never after a reserve that covers it). */
int rbc_timers_set(struct rbc_timers *h, struct rbc_timer *t, int64_t at);

/* Disarm t (a no-op if it is not armed). */
void rbc_timers_del(struct rbc_timers *h, struct rbc_timer *t);

/* The earliest timer, or NULL. */
static inline struct rbc_timer *rbc_timers_top(const struct rbc_timers *h)
{
	return h->len ? h->v[0] : NULL;
}

/* Free the heap (its timers are left as they are). */
void rbc_timers_free(struct rbc_timers *h);

#endif
