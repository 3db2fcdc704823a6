/*
 * test_token.c - connection tokens (protocol/token.h) against the vectors in
 * tests/fixtures/token_vectors.json, which the Python helper's tests read
 * too (made with Python's hmac and base64, not with this code): each
 * verifies or is refused with its reason, claims come out as written, and
 * token_make reproduces the valid token byte for byte.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "protocol/rb.h"
#include "protocol/token.h"

#define VECTORS "tests/fixtures/token_vectors.json"

static json_t *load(void)
{
	json_error_t err;
	json_t *j = json_load_file(VECTORS, 0, &err);
	if (!j)
		fail_msg("%s: %s (run from the repository root)", VECTORS, err.text);
	json_t *v = json_object_get(j, "vectors");
	assert_true(json_is_array(v) && json_array_size(v) >= 20);
	json_incref(v);
	json_decref(j);
	return v;
}

static void test_vectors(void **state)
{
	json_t *vs = load(), *v;
	size_t i;
	(void)state;

	json_array_foreach(vs, i, v) {
		const char *name = json_string_value(json_object_get(v, "name"));
		struct token_claims tc;
		const char *why = "x";
		int rc = token_verify(json_string_value(json_object_get(v, "token")),
				      json_string_value(json_object_get(v, "secret")),
				      json_integer_value(json_object_get(v, "now")),
				      (int)json_integer_value(json_object_get(v, "leeway")), &tc, &why);
		print_message("%s\n", name);
		if (!json_is_true(json_object_get(v, "ok"))) {
			assert_int_equal(rc, RB_EREFUSED);
			assert_string_equal(why, json_string_value(json_object_get(v, "why")));
			assert_null(tc.sub);
			continue;
		}
		assert_int_equal(rc, RB_OK);
		assert_null(why);
		assert_string_equal(tc.sub, json_string_value(json_object_get(v, "sub")));
		assert_int_equal(tc.exp, json_integer_value(json_object_get(v, "exp")));
		json_t *info = json_object_get(v, "info");
		if (json_is_null(info)) {
			assert_null(tc.info);
		} else {
			json_t *got = json_loads(tc.info, JSON_DECODE_ANY, NULL);
			assert_true(json_equal(got, info));
			json_decref(got);
		}
		json_t *chans = json_object_get(v, "channels");
		assert_int_equal(tc.n_channels, json_array_size(chans));
		for (size_t k = 0; k < tc.n_channels; k++)
			assert_string_equal(tc.channels[k],
					    json_string_value(json_array_get(chans, k)));
		token_claims_free(&tc);
		assert_null(tc.sub);
	}
	json_decref(vs);
}

/* token_make of the valid vector's claims text gives its token exactly. */
static void test_make(void **state)
{
	json_t *vs = load(), *v = json_array_get(vs, 0);
	const char *want = json_string_value(json_object_get(v, "token"));
	const char *secret = json_string_value(json_object_get(v, "secret"));
	const char *d1 = strchr(want, '.'), *d2 = strchr(d1 + 1, '.');
	char claims[512], out[1024];
	(void)state;

	/* Decode the claims part with OpenSSL-free arithmetic: it is the same
	 * text Python wrote; base64url without padding. */
	static const char al[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint32_t acc = 0;
	int bits = 0;
	size_t k = 0;
	for (const char *p = d1 + 1; p < d2; p++) {
		acc = acc << 6 | (uint32_t)(strchr(al, *p) - al);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			claims[k++] = (char)(acc >> bits & 0xff);
		}
	}
	claims[k] = 0;
	assert_int_equal(token_make(claims, secret, out, sizeof(out)), (int)strlen(want));
	assert_string_equal(out, want);
	assert_int_equal(token_make(claims, secret, out, 10), RB_ETOOBIG);
	assert_int_equal(token_make(NULL, secret, out, sizeof(out)), RB_EINVAL);
	json_decref(vs);
}

/* An exp past int64 (found by fuzz_token: the cast was undefined) is the
 * far future, not an overflow. */
static void test_huge_exp(void **state)
{
	char tok[512];
	struct token_claims tc;
	const char *why;
	(void)state;

	assert_true(token_make("{\"sub\":\"u\",\"exp\":3.3e109}", "s", tok, sizeof(tok)) > 0);
	assert_int_equal(token_verify(tok, "s", 1700000000, 0, &tc, &why), RB_OK);
	assert_true(tc.exp > INT64_C(1) << 62);
	token_claims_free(&tc);
	assert_true(token_make("{\"sub\":\"u\",\"exp\":-3.3e109}", "s", tok, sizeof(tok)) > 0);
	assert_int_equal(token_verify(tok, "s", 1700000000, 0, &tc, &why), RB_EREFUSED);
	assert_string_equal(why, "token expired");
}

/* Over the length limit, and a signature part too long to be one. */
static void test_limits(void **state)
{
	struct token_claims tc;
	const char *why;
	char *big = malloc(TOKEN_MAX_LEN + 2);
	(void)state;

	assert_non_null(big);
	memset(big, 'a', TOKEN_MAX_LEN + 1);
	big[10] = '.';
	big[20] = '.';
	big[TOKEN_MAX_LEN + 1] = 0;
	assert_int_equal(token_verify(big, "s", 0, 0, &tc, &why), RB_EREFUSED);
	assert_string_equal(why, "malformed token");
	free(big);
	assert_int_equal(token_verify(NULL, "s", 0, 0, &tc, &why), RB_EREFUSED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_make),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_huge_exp),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
