/* src/base/timeutil.c: seconds to struct timeval, the monotonic clock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>

#include "src/base/timeutil.h"

static void check(double s, long sec, long usec)
{
	struct timeval tv = tv_from_seconds(s);

	assert_int_equal(tv.tv_sec, sec);
	assert_int_equal(tv.tv_usec, usec);
}

static void test_tv_from_seconds(void **state)
{
	check(0, 0, 0);
	check(10, 10, 0);
	check(2.5, 2, 500000);
	check(0.25, 0, 250000);
	/* Milliseconds come out exact, though 0.001 is not in binary. */
	check(0.001, 0, 1000);
	check(1.001, 1, 1000);
	check(5.999, 5, 999000);
	check(60.123, 60, 123000);
	/* Rounds to the nearest microsecond, carrying into the seconds. */
	check(1.0000004, 1, 0);
	check(1.0000006, 1, 1);
	check(1.9999996, 2, 0);
	/* Nonsense is zero; huge is capped, never undefined. */
	check(-1, 0, 0);
	check(-0.5, 0, 0);
	check(NAN, 0, 0);
	check(1e300, 1000000000000L, 0);
	check(INFINITY, 1000000000000L, 0);
}

static void test_mono_now(void **state)
{
	double a = mono_now(), b = mono_now();

	assert_true(a > 0);
	assert_true(b >= a);
	assert_true(b - a < 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tv_from_seconds),
		cmocka_unit_test(test_mono_now),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
