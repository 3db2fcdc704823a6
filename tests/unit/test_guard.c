/* Unit tests for the per-route guard: bounds, FIFO order, circuit breaker
 * transitions, cancellation, metrics text. Time is passed in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "src/msg/guard.h"

static struct guard *mk(int inflight, int queued, int failures, double cooldown)
{
	struct guard_opts o = { inflight, queued, failures, cooldown };
	struct guard *g = guard_new(&o);
	assert_non_null(g);
	return g;
}

static enum guard_verdict admit(struct guard *g, uint16_t route, struct guard_wait *w,
				double now, bool *probe)
{
	double ra;
	bool p;
	enum guard_verdict v = guard_admit(g, route, w, now, probe ? probe : &p, &ra);
	return v;
}

static void test_bad_opts(void **state)
{
	struct guard_opts o = { 0, 1, 1, 1 };
	assert_null(guard_new(&o));
	o = (struct guard_opts){ 1, -1, 1, 1 };
	assert_null(guard_new(&o));
	o = (struct guard_opts){ 1, 1, 1, 0 };
	assert_null(guard_new(&o));
}

static void test_bounds_and_fifo(void **state)
{
	struct guard *g = mk(2, 2, 0, 5);
	struct guard_wait w[6];
	bool go, probe;
	double ra;

	assert_int_equal(admit(g, 7, &w[0], 0, NULL), GUARD_GO);
	assert_int_equal(admit(g, 7, &w[1], 0, NULL), GUARD_GO);
	assert_int_equal(admit(g, 7, &w[2], 0, NULL), GUARD_WAIT);
	assert_int_equal(admit(g, 7, &w[3], 0, NULL), GUARD_WAIT);
	assert_int_equal(admit(g, 7, &w[4], 0, NULL), GUARD_FULL);
	/* Another route is not affected. */
	assert_int_equal(admit(g, 8, &w[5], 0, NULL), GUARD_GO);

	struct guard_route_stats s = guard_stats(g, 7);
	assert_int_equal(s.inflight, 2);
	assert_int_equal(s.queued, 2);
	assert_int_equal(s.rejected_full, 1);

	/* Nothing moves while both slots are taken. */
	assert_null(guard_next(g, 7, 1, &go, &probe, &ra));
	guard_done(g, 7, GUARD_SUCCESS, false, 1);
	assert_ptr_equal(guard_next(g, 7, 1, &go, &probe, &ra), &w[2]);
	assert_true(go);
	assert_null(guard_next(g, 7, 1, &go, &probe, &ra));
	guard_done(g, 7, GUARD_SUCCESS, false, 1);
	assert_ptr_equal(guard_next(g, 7, 1, &go, &probe, &ra), &w[3]);
	s = guard_stats(g, 7);
	assert_int_equal(s.inflight, 2);
	assert_int_equal(s.queued, 0);
	guard_free(g);
}

static void test_newcomer_does_not_overtake(void **state)
{
	struct guard *g = mk(1, 5, 0, 5);
	struct guard_wait a, b, c;
	bool go, probe;
	double ra;

	assert_int_equal(admit(g, 1, &a, 0, NULL), GUARD_GO);
	assert_int_equal(admit(g, 1, &b, 0, NULL), GUARD_WAIT);
	guard_done(g, 1, GUARD_SUCCESS, false, 0);
	/* A slot is free but b waits: c queues behind it. */
	assert_int_equal(admit(g, 1, &c, 0, NULL), GUARD_WAIT);
	assert_ptr_equal(guard_next(g, 1, 0, &go, &probe, &ra), &b);
	assert_null(guard_next(g, 1, 0, &go, &probe, &ra));
	guard_free(g);
}

static void test_cancel(void **state)
{
	struct guard *g = mk(1, 5, 0, 5);
	struct guard_wait a, b, c, d;
	bool go, probe;
	double ra;

	admit(g, 1, &a, 0, NULL);
	assert_int_equal(admit(g, 1, &b, 0, NULL), GUARD_WAIT);
	assert_int_equal(admit(g, 1, &c, 0, NULL), GUARD_WAIT);
	assert_int_equal(admit(g, 1, &d, 0, NULL), GUARD_WAIT);
	guard_cancel(g, &c);
	guard_cancel(g, &b);
	assert_int_equal(guard_stats(g, 1).queued, 1);
	guard_done(g, 1, GUARD_SUCCESS, false, 0);
	assert_ptr_equal(guard_next(g, 1, 0, &go, &probe, &ra), &d);
	guard_free(g);
}

static void test_breaker_cycle(void **state)
{
	struct guard *g = mk(10, 10, 3, 5);
	struct guard_wait w[8];
	bool go, probe = true;
	double ra = 0;

	/* Two failures, a success: the count starts again. */
	for (int i = 0; i < 3; i++)
		assert_int_equal(admit(g, 4, &w[i], 0, &probe), GUARD_GO);
	assert_false(probe);
	guard_done(g, 4, GUARD_FAILURE, false, 1);
	guard_done(g, 4, GUARD_FAILURE, false, 1);
	guard_done(g, 4, GUARD_SUCCESS, false, 1);
	assert_int_equal(guard_stats(g, 4).state, BREAKER_CLOSED);
	/* Neutral outcomes do not count. */
	for (int i = 0; i < 4; i++)
		assert_int_equal(admit(g, 4, &w[i], 1, NULL), GUARD_GO);
	guard_done(g, 4, GUARD_FAILURE, false, 2);
	guard_done(g, 4, GUARD_NEUTRAL, false, 2);
	guard_done(g, 4, GUARD_FAILURE, false, 2);
	assert_int_equal(guard_stats(g, 4).state, BREAKER_CLOSED);
	guard_done(g, 4, GUARD_FAILURE, false, 10);
	struct guard_route_stats s = guard_stats(g, 4);
	assert_int_equal(s.state, BREAKER_OPEN);
	assert_int_equal(s.breaker_opened, 1);
	assert_int_equal(s.failures, 5);

	/* Open: refused at once with the time left. */
	assert_int_equal(guard_admit(g, 4, &w[0], 12, &probe, &ra), GUARD_OPEN);
	assert_true(ra > 2.99 && ra < 3.01);
	assert_int_equal(guard_stats(g, 4).rejected_open, 1);

	/* After the cool-down one probe goes; others are refused meanwhile. */
	assert_int_equal(guard_admit(g, 4, &w[0], 15, &probe, &ra), GUARD_GO);
	assert_true(probe);
	assert_int_equal(guard_stats(g, 4).state, BREAKER_HALF_OPEN);
	assert_int_equal(guard_admit(g, 4, &w[1], 15, &go, &ra), GUARD_OPEN);
	/* The probe fails: open again for a whole cool-down. */
	guard_done(g, 4, GUARD_FAILURE, true, 16);
	assert_int_equal(guard_stats(g, 4).state, BREAKER_OPEN);
	assert_int_equal(guard_admit(g, 4, &w[1], 20.5, &go, &ra), GUARD_OPEN);
	assert_int_equal(guard_admit(g, 4, &w[1], 21, &probe, &ra), GUARD_GO);
	assert_true(probe);
	/* A neutral probe leaves it half open: the next forward probes. */
	guard_done(g, 4, GUARD_NEUTRAL, true, 21);
	assert_int_equal(guard_admit(g, 4, &w[1], 21, &probe, &ra), GUARD_GO);
	assert_true(probe);
	guard_done(g, 4, GUARD_SUCCESS, true, 22);
	s = guard_stats(g, 4);
	assert_int_equal(s.state, BREAKER_CLOSED);
	assert_int_equal(s.breaker_opened, 2);
	assert_int_equal(admit(g, 4, &w[2], 22, NULL), GUARD_GO);
	guard_free(g);
}

static void test_breaker_flushes_waiting(void **state)
{
	struct guard *g = mk(1, 10, 1, 5);
	struct guard_wait a, b, c;
	bool go = true, probe;
	double ra;

	admit(g, 9, &a, 0, NULL);
	assert_int_equal(admit(g, 9, &b, 0, NULL), GUARD_WAIT);
	assert_int_equal(admit(g, 9, &c, 0, NULL), GUARD_WAIT);
	guard_done(g, 9, GUARD_FAILURE, false, 1);
	assert_int_equal(guard_stats(g, 9).state, BREAKER_OPEN);
	/* Both waiting ones come back to be refused, in order. */
	assert_ptr_equal(guard_next(g, 9, 1, &go, &probe, &ra), &b);
	assert_false(go);
	assert_true(ra > 4.9);
	assert_ptr_equal(guard_next(g, 9, 1, &go, &probe, &ra), &c);
	assert_false(go);
	assert_null(guard_next(g, 9, 1, &go, &probe, &ra));
	assert_int_equal(guard_stats(g, 9).rejected_open, 2);
	assert_int_equal(guard_stats(g, 9).queued, 0);
	guard_free(g);
}

static void test_late_outcomes_ignored(void **state)
{
	struct guard *g = mk(5, 0, 2, 5);
	struct guard_wait w[4];
	bool probe;

	for (int i = 0; i < 4; i++)
		assert_int_equal(admit(g, 3, &w[i], 0, NULL), GUARD_GO);
	guard_done(g, 3, GUARD_FAILURE, false, 1);
	guard_done(g, 3, GUARD_FAILURE, false, 1);
	assert_int_equal(guard_stats(g, 3).state, BREAKER_OPEN);
	/* Forwards started before it opened: their success does not close it. */
	guard_done(g, 3, GUARD_SUCCESS, false, 2);
	assert_int_equal(guard_stats(g, 3).state, BREAKER_OPEN);
	assert_int_equal(guard_stats(g, 3).inflight, 1);
	/* max_queued 0: with a slot free it still goes. */
	assert_int_equal(admit(g, 3, &w[0], 6, &probe), GUARD_GO);
	assert_true(probe);
	guard_free(g);
}

static void test_metrics_text(void **state)
{
	struct guard *g = mk(1, 0, 1, 5);
	struct guard_wait a, b;

	admit(g, 1002, &a, 0, NULL);
	assert_int_equal(admit(g, 1002, &b, 0, NULL), GUARD_FULL);
	char *s = guard_metrics(g);
	assert_non_null(s);
	assert_non_null(strstr(s, "# TYPE rainbow_route_forwards_in_flight gauge\n"
				  "rainbow_route_forwards_in_flight{msgtype=\"1002\"} 1\n"));
	assert_non_null(strstr(s, "rainbow_route_rejected_total{msgtype=\"1002\",reason=\"queue_full\"} 1\n"));
	assert_non_null(strstr(s, "rainbow_route_breaker_state{msgtype=\"1002\"} 0\n"));
	free(s);
	guard_free(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_opts),
		cmocka_unit_test(test_bounds_and_fifo),
		cmocka_unit_test(test_newcomer_does_not_overtake),
		cmocka_unit_test(test_cancel),
		cmocka_unit_test(test_breaker_cycle),
		cmocka_unit_test(test_breaker_flushes_waiting),
		cmocka_unit_test(test_late_outcomes_ignored),
		cmocka_unit_test(test_metrics_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
