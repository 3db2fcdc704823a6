/*
 * backoff.h - reconnect delays: exponential from min_ms, capped at max_ms,
 * with "equal jitter" (half of the delay fixed, the other half random), so
 * the delay never collapses to 0 and thousands of clients dropped at once
 * (a gateway restart) come back spread over time. Pure; the caller supplies
 * the random number, so tests are deterministic. Any thread.
 */
#ifndef RBC_BACKOFF_H
#define RBC_BACKOFF_H

#include <stdint.h>

struct rbc_backoff {
	uint32_t min_ms;  /* first delay's ceiling; 0 counts as 1 */
	uint32_t max_ms;  /* cap; below min_ms counts as min_ms */
	uint32_t attempt; /* failures since the last reset */
};

/*
 * The delay before the next attempt, then counts the attempt:
 * d = min(max_ms, min_ms * 2^attempt); the result is d - d/2 + rnd % (d/2 + 1),
 * i.e. in [d - d/2, d].
 */
uint32_t rbc_backoff_next(struct rbc_backoff *b, uint32_t rnd);

/* After a successful connection: the next delay starts from min_ms again. */
void rbc_backoff_reset(struct rbc_backoff *b);

#endif
