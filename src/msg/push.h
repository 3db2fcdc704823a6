/*
 * push.h - one push and its receipt. A push is a /send/ call today and a
 * peer's request tomorrow: it has *legs*, each an expected outcome, and a
 * completion callback that is not tied to HTTP. A leg is whatever can
 * answer for some recipients:
 *   - a local connection's delivery: acknowledged, failed, or pending
 *     (kept in its device session for later);
 *   - a remote node: the counts summed over its own recipients.
 * The receipt (connections = acked, failed, pending, data = the first
 * acknowledgement's payload) is the sum of the legs' outcomes.
 *
 * Life: push_new() -> legs added (push_leg_add, push_count for outcomes
 * known at once) -> push_seal(). The push completes when it is sealed and
 * every leg has answered, or when its timeout passes (legs still open
 * are asked their outcome through their expire function, failed without
 * one: a local delivery not acknowledged in time fails, or is pending when
 * its session keeps it; a node that did not answer fails), or at
 * push_set_abort() (shutdown, likewise). The done
 * callback runs exactly once, never from inside push_new/push_leg_add; the
 * push is freed right after it returns, and its open legs are detached
 * (push_leg_done on a detached leg does nothing), so a leg's owner never
 * needs to know whether its push is still there.
 *
 * Legs are records embedded in their owner's structure (struct push_leg),
 * so adding one allocates nothing. Core thread only.
 */
#ifndef RB_PUSH_H
#define RB_PUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct push;

enum push_outcome { PUSH_ACKED, PUSH_FAILED, PUSH_PENDING };

struct push_leg {
	struct push_leg *prev, *next;
	struct push *push;       /* NULL once answered or detached */
	/* Optional: asked for the leg's outcome when the push completes with
	 * the leg still open (timeout, abort), after the leg is detached; may
	 * free the leg's owner. NULL: the leg failed. */
	enum push_outcome (*expire)(struct push_leg *l);
	/* Free for whoever sets expire (the cluster engine: its pending map
	 * and the leg's key there). */
	void *ctx;
	uint64_t tag;
};

struct push_result {
	size_t total;            /* recipients expected (legs; a node's counts) */
	size_t acked, failed, pending;
	const uint8_t *data;     /* first acknowledgement's payload, or NULL */
	size_t data_len;
	bool timed_out;          /* completed by its timeout (or aborted) */
};

typedef void (*push_done_fn)(const struct push_result *r, void *arg);

/* Every push of one owner, for gauges and shutdown. Zero-initialise. */
struct push_set {
	struct push *head;
	size_t n;
};

/* A push that completes by timeout seconds at the latest. NULL on failure
 * (out of memory). done is not called until push_seal(). */
struct push *push_new(struct push_set *set, struct event_base *base, double timeout,
		      push_done_fn done, void *arg);
/* One expected outcome: l is linked until push_leg_done (or completion).
 * Set l->expire before or after; it is kept. */
void push_leg_add(struct push *p, struct push_leg *l);
/* The outcome of one recipient's leg. data (an acknowledgement's payload)
 * is copied if it is the first. No-op on a detached leg. */
void push_leg_done(struct push_leg *l, enum push_outcome o, const void *data, size_t len);
/* The summed outcome of a leg that stands for several recipients (a node). */
void push_leg_counts(struct push_leg *l, size_t acked, size_t failed, size_t pending,
		     const void *data, size_t len);
/* Outcomes known at once, without a leg (e.g. over a cap: failed; queued
 * for an offline device: pending). */
void push_count(struct push *p, enum push_outcome o, size_t n);
/* No more legs: completes now if nothing is open. p may be gone after. */
void push_seal(struct push *p);
/* Complete every push of set now, as timed out (shutdown). */
void push_set_abort(struct push_set *set);

#endif
