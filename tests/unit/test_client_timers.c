/*
 * test_client_timers.c - the C client's deadline heap (clients/c/timers.h):
 * the top is always the earliest, moves in both directions, removal from
 * anywhere, and a randomized comparison with a plain scan.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>

#include "clients/c/timers.h"
#include "protocol/rb.h"

static void init(struct rbc_timer *t, size_t n)
{
	for (size_t i = 0; i < n; i++)
		t[i] = (struct rbc_timer){ .idx = RBC_TIMER_IDLE };
}

static void check_heap(const struct rbc_timers *h)
{
	for (uint32_t i = 0; i < h->len; i++) {
		assert_int_equal(h->v[i]->idx, i);
		if (i)
			assert_true(h->v[(i - 1) / 2]->at <= h->v[i]->at);
	}
}

static void test_basic(void **state)
{
	struct rbc_timers h = { 0 };
	struct rbc_timer t[4];

	init(t, 4);
	assert_null(rbc_timers_top(&h));
	assert_false(rbc_timer_armed(&t[0]));
	assert_int_equal(rbc_timers_set(&h, &t[0], 50), RB_OK);
	assert_int_equal(rbc_timers_set(&h, &t[1], 20), RB_OK);
	assert_int_equal(rbc_timers_set(&h, &t[2], 30), RB_OK);
	assert_int_equal(rbc_timers_set(&h, &t[3], 40), RB_OK);
	assert_true(rbc_timer_armed(&t[0]));
	assert_ptr_equal(rbc_timers_top(&h), &t[1]);
	check_heap(&h);
	/* later and earlier moves */
	assert_int_equal(rbc_timers_set(&h, &t[1], 45), RB_OK);
	assert_ptr_equal(rbc_timers_top(&h), &t[2]);
	assert_int_equal(rbc_timers_set(&h, &t[0], 10), RB_OK);
	assert_ptr_equal(rbc_timers_top(&h), &t[0]);
	check_heap(&h);
	/* removal of the top and of one in the middle */
	rbc_timers_del(&h, &t[0]);
	assert_false(rbc_timer_armed(&t[0]));
	rbc_timers_del(&h, &t[0]); /* no-op */
	assert_ptr_equal(rbc_timers_top(&h), &t[2]);
	rbc_timers_del(&h, &t[3]);
	check_heap(&h);
	assert_int_equal(h.len, 2);
	assert_ptr_equal(rbc_timers_top(&h), &t[2]);
	rbc_timers_del(&h, &t[2]);
	assert_ptr_equal(rbc_timers_top(&h), &t[1]);
	rbc_timers_del(&h, &t[1]);
	assert_null(rbc_timers_top(&h));
	rbc_timers_free(&h);
}

static void test_reserve(void **state)
{
	struct rbc_timers h = { 0 };
	struct rbc_timer t[200];

	init(t, 200);
	assert_int_equal(rbc_timers_reserve(&h, 200), RB_OK);
	assert_true(h.cap >= 200);
	struct rbc_timer **v = h.v;
	for (int i = 0; i < 200; i++)
		assert_int_equal(rbc_timers_set(&h, &t[i], 200 - i), RB_OK);
	assert_ptr_equal(h.v, v); /* no reallocation after the reserve */
	assert_ptr_equal(rbc_timers_top(&h), &t[199]);
	check_heap(&h);
	rbc_timers_free(&h);
	assert_null(h.v);
}

static void test_random_against_scan(void **state)
{
	enum { N = 300 };
	struct rbc_timers h = { 0 };
	struct rbc_timer t[N];
	uint32_t x = 2463534242u;

	init(t, N);
	for (int step = 0; step < 20000; step++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		struct rbc_timer *k = &t[x % N];
		if ((x >> 9) % 4 == 0)
			rbc_timers_del(&h, k);
		else
			assert_int_equal(rbc_timers_set(&h, k, (int64_t)((x >> 11) % 1000)), RB_OK);
		/* the top is the minimum of the armed ones */
		struct rbc_timer *min = NULL;
		uint32_t armed = 0;
		for (int i = 0; i < N; i++) {
			if (!rbc_timer_armed(&t[i]))
				continue;
			armed++;
			if (!min || t[i].at < min->at)
				min = &t[i];
		}
		assert_int_equal(armed, h.len);
		if (min)
			assert_int_equal(rbc_timers_top(&h)->at, min->at);
		else
			assert_null(rbc_timers_top(&h));
		if (step % 1000 == 0)
			check_heap(&h);
	}
	check_heap(&h);
	rbc_timers_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_reserve),
		cmocka_unit_test(test_random_against_scan),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
