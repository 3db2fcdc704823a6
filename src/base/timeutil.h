/*
 * timeutil.h - the two time conversions every module needs: seconds (a
 * configuration value, a REST timeout) to the struct timeval libevent takes,
 * and a monotonic clock in seconds for measuring intervals. Pure; any
 * thread.
 */
#ifndef RB_TIMEUTIL_H
#define RB_TIMEUTIL_H

#include <sys/time.h>

/* s seconds, rounded to the nearest microsecond (so 0.001 is exactly
 * 1000 us); a negative or NaN s is zero, more than 10^12 is 10^12. */
struct timeval tv_from_seconds(double s);

/* CLOCK_MONOTONIC in seconds: unaffected by changes to the wall clock, so
 * good only for differences. */
double mono_now(void);

#endif
