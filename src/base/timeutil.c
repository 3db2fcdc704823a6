#include "src/base/timeutil.h"

#include <time.h>

/* Far beyond any timeout; keeps the conversion to time_t defined. */
#define MAX_SECONDS 1e12

struct timeval tv_from_seconds(double s)
{
	struct timeval tv = { 0, 0 };

	if (!(s > 0))
		return tv;
	if (s > MAX_SECONDS)
		s = MAX_SECONDS;
	time_t sec = (time_t)s; /* s > 0: truncation is floor */
	long us = (long)((s - (double)sec) * 1e6 + 0.5);

	if (us >= 1000000) {
		sec++;
		us -= 1000000;
	}
	tv.tv_sec = sec;
	tv.tv_usec = (suseconds_t)us;
	return tv;
}

double mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
