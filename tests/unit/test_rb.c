/* protocol/rb.c: the shared hex encoder and strict decimal parser. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "protocol/rb.h"

static void test_hex(void **state)
{
	char out[2 * 4 + 1];

	memset(out, 'x', sizeof(out));
	rb_hex("", 0, out);
	assert_string_equal(out, "");
	rb_hex("\x00\x0f\xa5\xff", 4, out);
	assert_string_equal(out, "000fa5ff");

	unsigned char all[256];
	char big[2 * 256 + 1];
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	rb_hex(all, sizeof(all), big);
	assert_int_equal(strlen(big), 512);
	assert_memory_equal(big, "000102", 6);
	assert_memory_equal(big + 2 * 0x9a, "9a", 2);
	assert_memory_equal(big + 510, "ff", 2);
}

/* Parses s whole with bound max; *out is 777 if it was left untouched. */
static int dec(const char *s, uint64_t max, uint64_t *out)
{
	*out = 777;
	return rb_parse_decs(s, max, out);
}

static void test_dec_accepts(void **state)
{
	uint64_t v;

	assert_int_equal(dec("0", 10, &v), RB_OK);
	assert_int_equal(v, 0);
	assert_int_equal(dec("1700000000", INT64_MAX, &v), RB_OK);
	assert_int_equal(v, 1700000000);
	/* Leading zeros are digits too. */
	assert_int_equal(dec("000000000000000000000042", 100, &v), RB_OK);
	assert_int_equal(v, 42);
	/* The bounds themselves. */
	assert_int_equal(dec("65535", 65535, &v), RB_OK);
	assert_int_equal(v, 65535);
	assert_int_equal(dec("18446744073709551615", UINT64_MAX, &v), RB_OK);
	assert_true(v == UINT64_MAX);
	assert_int_equal(dec("9223372036854775807", INT64_MAX, &v), RB_OK);
	assert_true(v == (uint64_t)INT64_MAX);
	/* A length-bounded prefix: the rest is the caller's. */
	assert_int_equal(rb_parse_dec("123, 5", 3, 1000, &v), RB_OK);
	assert_int_equal(v, 123);
}

static void test_dec_refuses(void **state)
{
	static const char *const junk[] = {
		"", "+1", "-1", " 1", "1 ", "\t1", "1\n", "0x10", "1e3", "1.0", "1,0",
		"12a", "a12", "\xd9\xa3", "1\xff",
	};
	uint64_t v;

	for (size_t i = 0; i < RB_ARRAY_LEN(junk); i++) {
		assert_int_equal(dec(junk[i], UINT64_MAX, &v), RB_EINVAL);
		assert_int_equal(v, 777); /* untouched */
	}
	assert_int_equal(rb_parse_decs(NULL, 10, &v), RB_EINVAL);
	assert_int_equal(rb_parse_dec("123", 0, 1000, &v), RB_EINVAL);
	/* An embedded NUL is not a digit. */
	assert_int_equal(rb_parse_dec("1\0" "2", 3, 1000, &v), RB_EINVAL);
}

static void test_dec_bounds_and_overflow(void **state)
{
	uint64_t v;

	assert_int_equal(dec("3", 2, &v), RB_ETOOBIG);
	assert_int_equal(dec("65536", 65535, &v), RB_ETOOBIG);
	assert_int_equal(dec("1", 0, &v), RB_ETOOBIG);
	assert_int_equal(dec("0", 0, &v), RB_OK);
	assert_int_equal(dec("9223372036854775808", INT64_MAX, &v), RB_ETOOBIG);
	/* One past UINT64_MAX, and far past it: no wrap-around. */
	assert_int_equal(dec("18446744073709551616", UINT64_MAX, &v), RB_ETOOBIG);
	assert_int_equal(dec("18446744073709551625", UINT64_MAX, &v), RB_ETOOBIG);
	assert_int_equal(dec("99999999999999999999999999999999", UINT64_MAX, &v), RB_ETOOBIG);
	assert_int_equal(v, 777);
	/* Junk is junk, however big the number before it. */
	assert_int_equal(dec("99999999999999999999999x", UINT64_MAX, &v), RB_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_dec_accepts),
		cmocka_unit_test(test_dec_refuses),
		cmocka_unit_test(test_dec_bounds_and_overflow),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
