/* Unit tests for push accounting (src/msg/push.c): legs, summed remote
 * counts, timeout, abort, detached legs. A real event_base drives the
 * timeouts; no core is running. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "src/msg/push.h"

struct got {
	int calls;
	struct push_result r;
	char data[32];
};

static void done(const struct push_result *r, void *arg)
{
	struct got *g = arg;
	g->calls++;
	g->r = *r;
	if (r->data) {
		memcpy(g->data, r->data, r->data_len < 31 ? r->data_len : 31);
		g->r.data = (const uint8_t *)g->data;
	}
}

static void test_all_legs_answer(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g = { 0 };
	struct push_leg a = { 0 }, b = { 0 }, c = { 0 };
	struct push *p = push_new(&set, base, 10, done, &g);

	push_leg_add(p, &a);
	push_leg_add(p, &b);
	push_leg_add(p, &c);
	push_count(p, PUSH_FAILED, 1); /* e.g. over max_inflight_messages */
	push_seal(p);
	assert_int_equal(set.n, 1);
	push_leg_done(&b, PUSH_ACKED, "first", 5);
	push_leg_done(&a, PUSH_ACKED, "second", 6);
	assert_int_equal(g.calls, 0);
	push_leg_done(&c, PUSH_PENDING, NULL, 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(set.n, 0);
	assert_int_equal(g.r.total, 4);
	assert_int_equal(g.r.acked, 2);
	assert_int_equal(g.r.failed, 1);
	assert_int_equal(g.r.pending, 1);
	assert_false(g.r.timed_out);
	assert_int_equal(g.r.data_len, 5);
	assert_memory_equal(g.data, "first", 5);
	/* Legs are detached: a late answer does nothing. */
	push_leg_done(&a, PUSH_FAILED, NULL, 0);
	assert_int_equal(g.calls, 1);
	event_base_free(base);
}

static void test_seal_without_legs_completes_at_once(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g = { 0 };
	struct push *p = push_new(&set, base, 10, done, &g);

	push_count(p, PUSH_PENDING, 3);
	assert_int_equal(g.calls, 0);
	push_seal(p);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.total, 3);
	assert_int_equal(g.r.pending, 3);
	assert_null(g.r.data);
	event_base_free(base);
}

static void test_timeout_fails_open_legs(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g = { 0 };
	struct push_leg a = { 0 }, b = { 0 };
	struct push *p = push_new(&set, base, 0.05, done, &g);

	push_leg_add(p, &a);
	push_leg_add(p, &b);
	push_seal(p);
	push_leg_done(&a, PUSH_ACKED, "", 0);
	event_base_dispatch(base); /* runs until the timer fired */
	assert_int_equal(g.calls, 1);
	assert_true(g.r.timed_out);
	assert_int_equal(g.r.acked, 1);
	assert_int_equal(g.r.failed, 1);
	assert_int_equal(g.r.data_len, 0);
	assert_non_null(g.r.data); /* an empty acknowledgement is still data */
	assert_null(b.push);
	push_leg_done(&b, PUSH_ACKED, "late", 4);
	assert_int_equal(g.calls, 1);
	event_base_free(base);
}

static int expired;

static enum push_outcome keep_pending(struct push_leg *l)
{
	expired++;
	assert_null(l->push); /* detached before its owner is asked */
	return PUSH_PENDING;
}

static void test_expire_asks_the_leg(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g = { 0 };
	struct push_leg durable = { .expire = keep_pending }, plain = { 0 };
	struct push *p = push_new(&set, base, 0.02, done, &g);

	push_leg_add(p, &durable);
	push_leg_add(p, &plain);
	push_seal(p);
	event_base_dispatch(base);
	assert_int_equal(expired, 1);
	assert_int_equal(g.r.total, 2);
	assert_int_equal(g.r.pending, 1);
	assert_int_equal(g.r.failed, 1);
	event_base_free(base);
}

static void test_remote_counts(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g = { 0 };
	struct push_leg local = { 0 }, node2 = { 0 }, node3 = { 0 };
	struct push *p = push_new(&set, base, 10, done, &g);

	push_leg_add(p, &local);
	push_leg_add(p, &node2);
	push_leg_add(p, &node3);
	push_seal(p);
	push_leg_counts(&node2, 0, 2, 1, NULL, 0);
	push_leg_counts(&node3, 40, 1, 0, "n3", 2);
	push_leg_done(&local, PUSH_FAILED, NULL, 0);
	assert_int_equal(g.calls, 1);
	assert_int_equal(g.r.total, 45);
	assert_int_equal(g.r.acked, 40);
	assert_int_equal(g.r.failed, 4);
	assert_int_equal(g.r.pending, 1);
	assert_memory_equal(g.data, "n3", 2);
	event_base_free(base);
}

static void test_abort(void **state)
{
	struct event_base *base = event_base_new();
	struct push_set set = { 0 };
	struct got g1 = { 0 }, g2 = { 0 };
	struct push_leg a = { 0 }, b = { 0 };
	struct push *p1 = push_new(&set, base, 10, done, &g1);
	struct push *p2 = push_new(&set, base, 10, done, &g2);

	push_leg_add(p1, &a);
	push_leg_add(p2, &b);
	push_seal(p1);
	assert_int_equal(set.n, 2);
	push_set_abort(&set);
	assert_int_equal(set.n, 0);
	assert_int_equal(g1.calls, 1);
	assert_int_equal(g2.calls, 1);
	assert_true(g1.r.timed_out && g2.r.timed_out);
	assert_int_equal(g1.r.failed, 1);
	assert_null(a.push);
	assert_null(b.push);
	event_base_free(base);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_all_legs_answer),
		cmocka_unit_test(test_seal_without_legs_completes_at_once),
		cmocka_unit_test(test_timeout_fails_open_legs),
		cmocka_unit_test(test_expire_asks_the_leg),
		cmocka_unit_test(test_remote_counts),
		cmocka_unit_test(test_abort),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
