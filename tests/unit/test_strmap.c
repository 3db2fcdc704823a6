/* src/base/strmap.c: the string-keyed map, iteration included. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/strmap.h"

static void test_put_get_del(void **state)
{
	struct strmap *m = strmap_new();
	int a, b;

	assert_non_null(m);
	assert_null(strmap_get(m, "x"));
	assert_int_equal(strmap_put(m, "x", &a), RB_OK);
	assert_int_equal(strmap_put(m, "", &b), RB_OK);
	assert_ptr_equal(strmap_get(m, "x"), &a);
	assert_ptr_equal(strmap_get(m, ""), &b);
	assert_int_equal(strmap_put(m, "x", &b), RB_OK); /* replace */
	assert_ptr_equal(strmap_get(m, "x"), &b);
	assert_int_equal(strmap_len(m), 2);
	assert_ptr_equal(strmap_del(m, "x"), &b);
	assert_null(strmap_del(m, "x"));
	assert_int_equal(strmap_len(m), 1);
	strmap_free(m);
	strmap_free(NULL);
}

struct seen {
	size_t n;
	long sum;
	char flags[500];
};

static void visit(const char *key, void *val, void *arg)
{
	struct seen *s = arg;
	int k = atoi(key + 1);

	assert_true(key[0] == 'k' && k >= 0 && k < 500);
	assert_int_equal(s->flags[k], 0); /* each entry once */
	s->flags[k] = 1;
	assert_int_equal(*(int *)val, k);
	s->n++;
	s->sum += k;
}

static void free_val(const char *key, void *val, void *arg)
{
	free(val);
	(*(size_t *)arg)++;
}

/* 500 keys make the table grow several times; then every second one goes. */
static void test_foreach(void **state)
{
	struct strmap *m = strmap_new();
	struct seen s = { 0 };
	char key[16];

	strmap_foreach(m, visit, &s);
	assert_int_equal(s.n, 0);
	for (int k = 0; k < 500; k++) {
		int *v = malloc(sizeof(*v));
		*v = k;
		snprintf(key, sizeof(key), "k%d", k);
		assert_int_equal(strmap_put(m, key, v), RB_OK);
	}
	for (int k = 0; k < 500; k += 2) {
		snprintf(key, sizeof(key), "k%d", k);
		free(strmap_del(m, key));
	}
	strmap_foreach(m, visit, &s);
	assert_int_equal(s.n, 250);
	assert_int_equal(s.sum, 250L * 250); /* 1 + 3 + ... + 499 */
	for (int k = 0; k < 500; k++)
		assert_int_equal(s.flags[k], k % 2);
	size_t freed = 0;
	strmap_foreach(m, free_val, &freed); /* values may be freed in the walk */
	assert_int_equal(freed, 250);
	strmap_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_put_get_del),
		cmocka_unit_test(test_foreach),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
