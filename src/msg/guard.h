/*
 * guard.h - backend protection per route. A route is a message type: each
 * SEND of type T becomes a call to the backend route T, and one route that
 * hangs or fails must not take the backend from the others. Per route:
 *
 *   - at most max_inflight forwards in flight; further ones wait in the
 *     route's FIFO, at most max_queued of them; beyond it a forward is
 *     refused at once (GUARD_FULL);
 *   - a circuit breaker: after breaker_failures consecutive failures
 *     (GUARD_FAILURE: a timeout, an unreachable backend, an HTTP 5xx) the
 *     route is OPEN for cooldown seconds: every forward is refused at once
 *     (GUARD_OPEN, with the seconds left) and the waiting ones are handed
 *     back to be refused too. After the cool-down the route
 *     is HALF_OPEN: one forward (the probe) goes through; its success closes
 *     the breaker, its failure opens it again for another cool-down.
 *     Outcomes of forwards started before the breaker opened do not move it.
 *
 * Fairness between connections is not decided here: forward.c lets each
 * connection have at most forward_concurrency forwards started (in flight
 * or waiting here), so no client can take more than that of a route.
 *
 * The guard owns no forwards: a waiting forward is a struct guard_wait
 * embedded in the caller's record, linked here until guard_next() hands it
 * back or guard_cancel() unlinks it. Time is passed in (seconds on any
 * monotonic clock), so the logic is testable without a loop.
 * Core thread only.
 */
#ifndef RB_GUARD_H
#define RB_GUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct guard;

struct guard_opts {
	int max_inflight;     /* >= 1 */
	int max_queued;       /* >= 0 */
	int breaker_failures; /* 0 = no breaker */
	double cooldown;      /* seconds, > 0 */
};

struct guard_wait {
	struct guard_wait *prev, *next;
	uint16_t route;
	double since;         /* when it started waiting */
};

enum guard_verdict {
	GUARD_GO,   /* start it now; it counts in flight until guard_done() */
	GUARD_WAIT, /* linked into the route's queue; wait for guard_next() */
	GUARD_FULL, /* refused: the route's queue is full */
	GUARD_OPEN, /* refused: the breaker is open (*retry_after set) */
};

enum guard_breaker { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

/* NULL on allocation failure or bad opts. */
struct guard *guard_new(const struct guard_opts *o);
/* Waiting entries are simply forgotten (their owners free them). */
void guard_free(struct guard *g);

/*
 * Ask to start a forward on route at time now. GO: *probe says whether it is
 * the half-open probe (pass it back to guard_done). WAIT: w is linked.
 * FULL / OPEN: nothing is counted; *retry_after (OPEN) is the cool-down left
 * in seconds (at least a millisecond).
 */
enum guard_verdict guard_admit(struct guard *g, uint16_t route, struct guard_wait *w,
			       double now, bool *probe, double *retry_after);

/* How a forward that got GO ended. FAILURE counts toward the breaker
 * (timeout, unreachable, HTTP 5xx, unusable answer); NEUTRAL says nothing
 * about the route's health (never sent, the process is exiting). */
enum guard_outcome { GUARD_SUCCESS, GUARD_FAILURE, GUARD_NEUTRAL };

/* A forward that got GO has finished. Call guard_next() afterwards to move
 * waiting ones. */
void guard_done(struct guard *g, uint16_t route, enum guard_outcome outcome, bool probe,
		double now);

/*
 * The next waiting forward of route that can move, or NULL: *go true means
 * it is started now (counted in flight, *probe as in guard_admit); false
 * means it must be refused because the breaker is open (*retry_after set).
 * Call it in a loop until NULL after each guard_done().
 */
struct guard_wait *guard_next(struct guard *g, uint16_t route, double now, bool *go,
			      bool *probe, double *retry_after);

/* Unlink a waiting forward (its client left). */
void guard_cancel(struct guard *g, struct guard_wait *w);

/* Per-route figures for /metrics and tests. */
struct guard_route_stats {
	uint16_t route;
	int inflight, queued;
	enum guard_breaker state;
	uint64_t rejected_full, rejected_open, failures, breaker_opened;
};
/* Calls fn for every route seen so far, in increasing route order. */
void guard_foreach(const struct guard *g,
		   void (*fn)(const struct guard_route_stats *s, void *arg), void *arg);
/* The stats of one route (zeros if never seen). */
struct guard_route_stats guard_stats(const struct guard *g, uint16_t route);

/* Prometheus text for every route seen (rainbow_route_* families), malloc'd
 * and NUL-terminated; NULL on allocation failure. */
char *guard_metrics(const struct guard *g);

#endif
