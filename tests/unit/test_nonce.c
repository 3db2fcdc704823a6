/* The v2 nonce cache: a nonce is refused while remembered, forgotten after
 * its ttl, and the cache stays bounded: at the bound the oldest nonce is
 * forgotten to make room for a new one (src/msg/nonce.h). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "protocol/rb.h"
#include "src/msg/nonce.h"

static void test_replay_and_expiry(void **state)
{
	struct nonce_cache *n = nonce_cache_new(20);
	assert_int_equal(nonce_check_add(n, "a", 1000), RB_OK);
	assert_int_equal(nonce_check_add(n, "b", 1000), RB_OK);
	assert_int_equal(nonce_check_add(n, "a", 1010), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "a", 1020), RB_EEXIST); /* still within ttl */
	assert_int_equal(nonce_cache_len(n), 2);
	assert_int_equal(nonce_check_add(n, "c", 1021), RB_OK);    /* a and b expire */
	assert_int_equal(nonce_cache_len(n), 1);
	assert_int_equal(nonce_check_add(n, "a", 1021), RB_OK);
	assert_int_equal(nonce_check_add(n, "c", 1022), RB_EEXIST);
	nonce_cache_free(n);
}

static void test_many(void **state)
{
	struct nonce_cache *n = nonce_cache_new(20);
	char buf[32];
	for (int i = 0; i < 50000; i++) {
		snprintf(buf, sizeof(buf), "n%d", i);
		assert_int_equal(nonce_check_add(n, buf, 5000), RB_OK);
	}
	for (int i = 0; i < 50000; i += 997) {
		snprintf(buf, sizeof(buf), "n%d", i);
		assert_int_equal(nonce_check_add(n, buf, 5001), RB_EEXIST);
	}
	assert_int_equal(nonce_cache_len(n), 50000);
	nonce_cache_free(n);
}

/* At the bound (3 here), all within ttl: a new nonce is accepted and the
 * oldest is forgotten (so a replay of it is accepted: the documented cost);
 * a refused replay evicts nothing. */
static void test_bound_forgets_oldest(void **state)
{
	struct nonce_cache *n = nonce_cache_new_max(20, 3);
	assert_non_null(n);
	assert_int_equal(nonce_check_add(n, "a", 1000), RB_OK);
	assert_int_equal(nonce_check_add(n, "b", 1001), RB_OK);
	assert_int_equal(nonce_check_add(n, "c", 1002), RB_OK);
	assert_int_equal(nonce_cache_len(n), 3);
	/* Full: replays are refused and change nothing. */
	assert_int_equal(nonce_check_add(n, "a", 1003), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "c", 1003), RB_EEXIST);
	assert_int_equal(nonce_cache_len(n), 3);
	/* d is accepted; a, the oldest, makes room. */
	assert_int_equal(nonce_check_add(n, "d", 1003), RB_OK);
	assert_int_equal(nonce_cache_len(n), 3);
	assert_int_equal(nonce_check_add(n, "b", 1004), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "c", 1004), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "d", 1004), RB_EEXIST);
	/* a was forgotten within its ttl: accepted again, evicting b. */
	assert_int_equal(nonce_check_add(n, "a", 1004), RB_OK);
	assert_int_equal(nonce_cache_len(n), 3);
	assert_int_equal(nonce_check_add(n, "b", 1005), RB_OK); /* evicts c */
	assert_int_equal(nonce_check_add(n, "c", 1005), RB_OK); /* evicts d */
	assert_int_equal(nonce_check_add(n, "a", 1005), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "b", 1005), RB_EEXIST);
	assert_int_equal(nonce_cache_len(n), 3);
	/* Expiry still applies below the bound. */
	assert_int_equal(nonce_check_add(n, "e", 1025), RB_OK); /* a (1004) expires */
	assert_int_equal(nonce_cache_len(n), 3);
	assert_int_equal(nonce_check_add(n, "b", 1025), RB_EEXIST);
	nonce_cache_free(n);

	assert_null(nonce_cache_new_max(20, 0));
	n = nonce_cache_new_max(20, 1);
	assert_int_equal(nonce_check_add(n, "x", 1), RB_OK);
	assert_int_equal(nonce_check_add(n, "x", 1), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "y", 1), RB_OK);
	assert_int_equal(nonce_check_add(n, "x", 1), RB_OK);
	assert_int_equal(nonce_cache_len(n), 1);
	nonce_cache_free(n);
}

/* The gateway's cache (nonce_cache_new) is bounded by NONCE_MAX itself:
 * fill it and go one past. */
static void test_default_bound_is_nonce_max(void **state)
{
	struct nonce_cache *n = nonce_cache_new(20);
	char buf[32];
	for (int i = 0; i < NONCE_MAX; i++) {
		snprintf(buf, sizeof(buf), "%d", i);
		assert_int_equal(nonce_check_add(n, buf, 5000), RB_OK);
	}
	assert_int_equal(nonce_cache_len(n), NONCE_MAX);
	assert_int_equal(nonce_check_add(n, "0", 5000), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "one more", 5000), RB_OK);
	assert_int_equal(nonce_cache_len(n), NONCE_MAX);
	assert_int_equal(nonce_check_add(n, "1", 5000), RB_EEXIST);
	assert_int_equal(nonce_check_add(n, "0", 5000), RB_OK); /* was the oldest */
	nonce_cache_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_and_expiry),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_bound_forgets_oldest),
		cmocka_unit_test(test_default_bound_is_nonce_max),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
