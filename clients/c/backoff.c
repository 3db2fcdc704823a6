/*
 * backoff.c - see backoff.h.
 */
#include "clients/c/backoff.h"

uint32_t rbc_backoff_next(struct rbc_backoff *b, uint32_t rnd)
{
	uint64_t lo = b->min_ms ? b->min_ms : 1;
	uint64_t hi = b->max_ms > lo ? b->max_ms : lo;
	uint64_t d = lo, half;

	for (uint32_t i = 0; i < b->attempt && d < hi; i++)
		d *= 2;
	if (d > hi)
		d = hi;
	if (b->attempt < UINT32_MAX)
		b->attempt++;
	half = d / 2;
	return (uint32_t)(d - half + (uint64_t)rnd % (half + 1));
}

void rbc_backoff_reset(struct rbc_backoff *b)
{
	b->attempt = 0;
}
