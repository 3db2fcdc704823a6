/* The QoS store contract, run against the in-memory store (the SQLite
 * store must pass the same cases). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "protocol/rb.h"
#include "storage/qos_store.h"

static void test_upstream_qos2_cycle(void **state)
{
	struct qos_store *s = qos_mem_new();
	enum up_state st;
	const uint8_t *r;
	size_t len;

	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_begin(s, "k1", 11), RB_OK);
	assert_int_equal(s->ops->up_begin(s, "k1", 11), RB_EEXIST);
	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_FORWARDING);
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"re", 2), RB_OK);
	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_REPLIED);
	assert_int_equal(len, 2);
	assert_memory_equal(r, "re", 2);
	/* Same msgid under another key is independent. */
	s->ops->up_get(s, "k2", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_release(s, "k1", 11), RB_OK);
	assert_int_equal(s->ops->up_release(s, "k1", 11), RB_OK); /* idempotent */
	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"x", 1), RB_ENOTFOUND);
	assert_int_equal(s->ops->count(s), 0);
	s->ops->free(s);
}

static void test_downstream_cycle(void **state)
{
	struct qos_store *s = qos_mem_new();

	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_ABSENT);
	assert_int_equal(s->ops->down_begin(s, "k", 7, 0, 2), RB_OK);
	assert_int_equal(s->ops->down_begin(s, "k", 7, 0, 2), RB_EEXIST);
	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_WAIT_REC);
	/* Upstream and downstream ids are separate spaces. */
	assert_int_equal(s->ops->up_begin(s, "k", 7), RB_OK);
	assert_int_equal(s->ops->down_set(s, "k", 7, DOWN_WAIT_COM), RB_OK);
	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_WAIT_COM);
	assert_int_equal(s->ops->down_set(s, "k", 8, DOWN_WAIT_COM), RB_ENOTFOUND);
	assert_int_equal(s->ops->down_begin(s, "k", 8, 0, 1), RB_OK);
	assert_int_equal(s->ops->down_get(s, "k", 8), DOWN_WAIT_ACK);
	assert_int_equal(s->ops->count(s), 3);
	assert_int_equal(s->ops->down_end(s, "k", 7), RB_OK);
	assert_int_equal(s->ops->down_end(s, "k", 7), RB_OK);
	enum up_state st;
	s->ops->up_get(s, "k", 7, &st, NULL, NULL);
	assert_int_equal(st, UP_FORWARDING); /* untouched by the downstream end */
	s->ops->drop_key(s, "k");
	assert_int_equal(s->ops->count(s), 0);
	s->ops->free(s);
}

static void test_many_and_drop_key(void **state)
{
	struct qos_store *s = qos_mem_new();
	char key[16];
	for (int k = 0; k < 50; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		for (unsigned id = 1; id <= 100; id++)
			assert_int_equal(s->ops->up_begin(s, key, (uint16_t)id), RB_OK);
	}
	assert_int_equal(s->ops->count(s), 5000);
	s->ops->drop_key(s, "key7");
	assert_int_equal(s->ops->count(s), 4900);
	enum up_state st;
	s->ops->up_get(s, "key7", 5, &st, NULL, NULL);
	assert_int_equal(st, UP_ABSENT);
	s->ops->up_get(s, "key8", 5, &st, NULL, NULL);
	assert_int_equal(st, UP_FORWARDING);
	s->ops->free(s); /* frees what is left: valgrind/ASan check it */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upstream_qos2_cycle),
		cmocka_unit_test(test_downstream_cycle),
		cmocka_unit_test(test_many_and_drop_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
