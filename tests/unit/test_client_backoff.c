/*
 * test_client_backoff.c - reconnect delays of the C client
 * (clients/c/backoff.h): doubling from min, capped at max, equal jitter.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "clients/c/backoff.h"

static void test_doubling_and_cap(void **state)
{
	struct rbc_backoff b = { .min_ms = 500, .max_ms = 30000 };
	/* rnd 0: the lowest delay of each step, d - d/2 */
	static const uint32_t lo[] = { 250, 500, 1000, 2000, 4000, 8000, 15000, 15000, 15000 };

	for (size_t i = 0; i < sizeof(lo) / sizeof(lo[0]); i++)
		assert_int_equal(rbc_backoff_next(&b, 0), lo[i]);
	assert_int_equal(b.attempt, 9);

	/* rnd = d/2: the highest, d itself */
	rbc_backoff_reset(&b);
	assert_int_equal(b.attempt, 0);
	assert_int_equal(rbc_backoff_next(&b, 250), 500);
	assert_int_equal(rbc_backoff_next(&b, 500), 1000);
	assert_int_equal(rbc_backoff_next(&b, 1000), 2000);
	/* rnd is taken modulo d/2 + 1 */
	assert_int_equal(rbc_backoff_next(&b, 2001), 2000);
	assert_int_equal(rbc_backoff_next(&b, 2002), 6002); /* d = 8000 */
}

static void test_jitter_range(void **state)
{
	uint32_t x = 12345;

	for (int attempt = 0; attempt < 40; attempt++) {
		for (int k = 0; k < 200; k++) {
			struct rbc_backoff b = { .min_ms = 100, .max_ms = 10000,
						 .attempt = (uint32_t)attempt };
			uint64_t d = 100;
			for (int i = 0; i < attempt && d < 10000; i++)
				d *= 2;
			if (d > 10000)
				d = 10000;
			x = x * 1103515245u + 12345u;
			uint32_t got = rbc_backoff_next(&b, x);
			assert_true(got >= d - d / 2 && got <= d);
			assert_int_equal(b.attempt, (uint32_t)attempt + 1);
		}
	}
}

static void test_degenerate_settings(void **state)
{
	struct rbc_backoff b = { 0 };

	/* min 0 counts as 1 ms: never a zero delay */
	assert_int_equal(rbc_backoff_next(&b, 0), 1);
	assert_int_equal(rbc_backoff_next(&b, 0), 1);
	/* max below min: min */
	b = (struct rbc_backoff){ .min_ms = 1000, .max_ms = 10 };
	assert_int_equal(rbc_backoff_next(&b, 500), 1000);
	assert_int_equal(rbc_backoff_next(&b, 0), 500);
	/* huge attempt counts neither overflow nor loop long */
	b = (struct rbc_backoff){ .min_ms = 1, .max_ms = 4000000000u, .attempt = 4000000000u };
	assert_int_equal(rbc_backoff_next(&b, 2000000000u), 4000000000u);
	b.attempt = UINT32_MAX;
	rbc_backoff_next(&b, 0);
	assert_int_equal(b.attempt, UINT32_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_doubling_and_cap),
		cmocka_unit_test(test_jitter_range),
		cmocka_unit_test(test_degenerate_settings),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
