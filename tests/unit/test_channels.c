/* The channel registry: membership, empty channels vanish, foreach sees
 * exactly the live channels after many removals (slot swapping). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/msg/channels.h"
#include "src/base/idmap.h"

static void count_fn(const char *name, size_t members, void *arg)
{
	size_t *sum = arg;
	sum[0]++;
	sum[1] += members;
	/* Only odd channels survive in test_many. */
	int k;
	assert_int_equal(sscanf(name, "ch%d", &k), 1);
	assert_int_equal(k % 2, 1);
}

static void test_basic(void **state)
{
	struct channels *ch = channels_new();
	assert_int_equal(channels_sub(ch, "a", 1), RB_OK);
	assert_int_equal(channels_sub(ch, "a", 1), RB_EEXIST);
	assert_int_equal(channels_sub(ch, "a", 2), RB_OK);
	assert_int_equal(channels_count(ch), 1);
	assert_int_equal(channels_members(ch, "a")->len, 2);
	assert_null(channels_members(ch, "b"));
	assert_int_equal(channels_unsub(ch, "b", 1), RB_ENOTFOUND);
	assert_int_equal(channels_unsub(ch, "a", 3), RB_ENOTFOUND);
	assert_int_equal(channels_unsub(ch, "a", 1), RB_OK);
	assert_int_equal(channels_unsub(ch, "a", 2), RB_OK);
	assert_int_equal(channels_count(ch), 0); /* empty channels do not exist */
	assert_null(channels_members(ch, "a"));
	channels_free(ch);
}

static void test_many(void **state)
{
	struct channels *ch = channels_new();
	char name[32];
	for (int k = 0; k < 5000; k++) {
		snprintf(name, sizeof(name), "ch%d", k);
		for (uint64_t id = 1; id <= 3; id++)
			assert_int_equal(channels_sub(ch, name, id), RB_OK);
	}
	for (int k = 0; k < 5000; k += 2) {
		snprintf(name, sizeof(name), "ch%d", k);
		for (uint64_t id = 1; id <= 3; id++)
			assert_int_equal(channels_unsub(ch, name, id), RB_OK);
	}
	assert_int_equal(channels_count(ch), 2500);
	size_t sum[2] = { 0, 0 };
	channels_foreach(ch, count_fn, sum);
	assert_int_equal(sum[0], 2500);
	assert_int_equal(sum[1], 7500);
	assert_non_null(channels_members(ch, "ch4999"));
	assert_null(channels_members(ch, "ch4998"));
	channels_free(ch); /* frees the rest: ASan/valgrind check it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
