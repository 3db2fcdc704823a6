/*
 * test_sign_vectors.c - request signatures (protocol/sign.h) against
 * tests/fixtures/sign_vectors.json, the vectors the Python backend helper's
 * tests read too (clients/python/rainbow_backend/signing.py): v1 signing,
 * v1 verification outcomes (ok, mismatch, stale), v2 canonical queries and
 * signatures. test_sign.c keeps what JSON cannot say (NULL arguments,
 * buffer sizes, the outbound query and nonces).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <jansson.h>
#include "protocol/rb.h"
#include "protocol/sign.h"

#define VECTORS "tests/fixtures/sign_vectors.json"

static json_t *vectors(const char *section, size_t min)
{
	json_error_t err;
	json_t *j = json_load_file(VECTORS, 0, &err);
	if (!j)
		fail_msg("%s: %s (run from the repository root)", VECTORS, err.text);
	json_t *v = json_object_get(j, section);
	assert_true(json_is_array(v) && json_array_size(v) >= min);
	json_incref(v);
	json_decref(j);
	return v;
}

static const char *str(json_t *v, const char *k)
{
	json_t *s = json_object_get(v, k);
	assert_true(json_is_string(s));
	return json_string_value(s);
}

static void test_v1_file(void **state)
{
	json_t *vs = vectors("v1", 8), *v;
	size_t i;
	char out[SIGN_V1_HEX_LEN + 1];
	(void)state;
	json_array_foreach(vs, i, v) {
		sign_v1(str(v, "token"), str(v, "timestamp"), str(v, "nonce"), out);
		assert_string_equal(out, str(v, "signature"));
	}
	json_decref(vs);
}

static void test_v1_verify_file(void **state)
{
	json_t *vs = vectors("v1_verify", 30), *v;
	size_t i;
	(void)state;
	json_array_foreach(vs, i, v) {
		const char *r = str(v, "result");
		int want = !strcmp(r, "ok") ? RB_OK : !strcmp(r, "stale") ? RB_ETIMEDOUT : RB_EINVAL;
		int got = sign_v1_verify(str(v, "token"), str(v, "timestamp"), str(v, "nonce"),
					 str(v, "signature"),
					 (time_t)json_integer_value(json_object_get(v, "now")),
					 (int)json_integer_value(json_object_get(v, "window")));
		if (got != want)
			fail_msg("%s: got %d, want %s", str(v, "name"), got, r);
	}
	json_decref(vs);
}

static void test_v2_file(void **state)
{
	json_t *vs = vectors("v2", 2), *v;
	size_t i;
	(void)state;
	json_array_foreach(vs, i, v) {
		json_t *q = json_object_get(v, "query");
		size_t n = json_array_size(q);
		const char *names[16], *values[16];
		char canon[1024], sig[SIGN_V2_HEX_LEN + 1];
		assert_true(n <= 16);
		for (size_t k = 0; k < n; k++) {
			names[k] = json_string_value(json_array_get(json_array_get(q, k), 0));
			values[k] = json_string_value(json_array_get(json_array_get(q, k), 1));
		}
		assert_true(sign_v2_canonical_query(names, values, n, canon, sizeof(canon)) >= 0);
		assert_string_equal(canon, str(v, "canonical_query"));
		const char *body = str(v, "body");
		assert_int_equal(sign_v2(str(v, "token"), str(v, "method"), str(v, "path"), canon,
					 body, strlen(body), sig), RB_OK);
		assert_string_equal(sig, str(v, "signature"));
	}
	json_decref(vs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_file),
		cmocka_unit_test(test_v1_verify_file),
		cmocka_unit_test(test_v2_file),
	};
	return cmocka_run_group_tests_name("sign_vectors", tests, NULL, NULL);
}
