/*
 * test_client_dedup.c - the C client's QoS 2 duplicate window
 * (clients/c/dedup.h): a pushed id is delivered once until REL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>

#include "clients/c/dedup.h"

static void test_add_has_remove(void **state)
{
	struct rbc_dedup d = { .max = 16 };

	assert_null(d.ids);
	assert_false(rbc_dedup_has(&d, 1));
	assert_int_equal(rbc_dedup_add(&d, 1), 0);
	assert_int_equal(rbc_dedup_add(&d, 1), 1); /* retransmission */
	assert_int_equal(rbc_dedup_add(&d, 65535), 0);
	assert_int_equal(rbc_dedup_add(&d, 0), 0);
	assert_true(rbc_dedup_has(&d, 65535));
	assert_int_equal(d.len, 3);
	/* REL: forgotten, so the id may carry a new message */
	assert_true(rbc_dedup_remove(&d, 1));
	assert_false(rbc_dedup_remove(&d, 1));
	assert_false(rbc_dedup_has(&d, 1));
	assert_int_equal(rbc_dedup_add(&d, 1), 0);
	assert_int_equal(d.len, 3);
	/* emptied: the array is released */
	assert_true(rbc_dedup_remove(&d, 0));
	assert_true(rbc_dedup_remove(&d, 65535));
	assert_true(rbc_dedup_remove(&d, 1));
	assert_int_equal(d.len, 0);
	assert_null(d.ids);
	assert_int_equal(d.cap, 0);
	rbc_dedup_free(&d);
}

static void test_window_drops_oldest(void **state)
{
	struct rbc_dedup d = { .max = 4 };

	for (uint16_t id = 10; id < 14; id++)
		assert_int_equal(rbc_dedup_add(&d, id), 0);
	assert_int_equal(d.len, 4);
	assert_true(d.cap <= 4);
	/* a fifth: 10, the oldest, goes */
	assert_int_equal(rbc_dedup_add(&d, 14), 0);
	assert_int_equal(d.len, 4);
	assert_false(rbc_dedup_has(&d, 10));
	for (uint16_t id = 11; id < 15; id++)
		assert_true(rbc_dedup_has(&d, id));
	/* a duplicate changes nothing, even at the window's edge */
	assert_int_equal(rbc_dedup_add(&d, 11), 1);
	assert_true(rbc_dedup_has(&d, 11));
	/* order is kept across a removal in the middle */
	assert_true(rbc_dedup_remove(&d, 12));
	assert_int_equal(rbc_dedup_add(&d, 15), 0);
	assert_int_equal(rbc_dedup_add(&d, 16), 0); /* drops 11 */
	assert_false(rbc_dedup_has(&d, 11));
	assert_true(rbc_dedup_has(&d, 13) && rbc_dedup_has(&d, 14) &&
		    rbc_dedup_has(&d, 15) && rbc_dedup_has(&d, 16));
	rbc_dedup_free(&d);
	assert_int_equal(d.len, 0);
	assert_null(d.ids);
}

static void test_max_zero_and_growth(void **state)
{
	struct rbc_dedup d = { .max = 0 };

	assert_int_equal(rbc_dedup_add(&d, 5), 0);
	assert_int_equal(rbc_dedup_add(&d, 6), 0); /* window of one */
	assert_false(rbc_dedup_has(&d, 5));
	assert_true(rbc_dedup_has(&d, 6));
	rbc_dedup_free(&d);

	d = (struct rbc_dedup){ .max = 4096 };
	for (uint32_t i = 0; i < 1000; i++)
		assert_int_equal(rbc_dedup_add(&d, (uint16_t)(i * 7)), 0);
	for (uint32_t i = 0; i < 1000; i++)
		assert_int_equal(rbc_dedup_add(&d, (uint16_t)(i * 7)), 1);
	assert_int_equal(d.len, 1000);
	rbc_dedup_free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has_remove),
		cmocka_unit_test(test_window_drops_oldest),
		cmocka_unit_test(test_max_zero_and_growth),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
