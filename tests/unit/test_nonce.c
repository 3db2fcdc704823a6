/* The v2 nonce cache: a nonce is refused while remembered, forgotten after
 * its ttl, and the cache stays bounded. */
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
	assert_int_equal(nonce_check_add(n, "c", 1021), RB_OK);    /* a and b expire */
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
	nonce_cache_free(n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_replay_and_expiry),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
