/*
 * test_client_url.c - the C client's URL parser and query builder
 * (clients/c/url.h).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "clients/c/url.h"
#include "protocol/rb.h"

static void test_parse_ws(void **state)
{
	struct rbc_url u;

	assert_int_equal(rbc_url_parse("ws://127.0.0.1:1984/connect/?a=1#frag", &u), RB_OK);
	assert_true(u.ws);
	assert_false(u.tls);
	assert_int_equal(u.port, 1984);
	assert_string_equal(u.host, "127.0.0.1");
	assert_string_equal(u.path, "/connect/?a=1");

	assert_int_equal(rbc_url_parse("WSS://Example.org", &u), RB_OK);
	assert_true(u.ws && u.tls);
	assert_int_equal(u.port, 443);
	assert_string_equal(u.host, "Example.org");
	assert_string_equal(u.path, "");

	assert_int_equal(rbc_url_parse("ws://h?x=1", &u), RB_OK);
	assert_int_equal(u.port, 80);
	assert_string_equal(u.host, "h");
	assert_string_equal(u.path, "?x=1");
}

static void test_parse_http_and_ipv6(void **state)
{
	struct rbc_url u;

	assert_int_equal(rbc_url_parse("http://[::1]:8080/api/", &u), RB_OK);
	assert_false(u.ws);
	assert_false(u.tls);
	assert_string_equal(u.host, "::1");
	assert_int_equal(u.port, 8080);
	assert_string_equal(u.path, "/api/");

	assert_int_equal(rbc_url_parse("https://[fe80::1]", &u), RB_OK);
	assert_true(u.tls);
	assert_int_equal(u.port, 443);
	assert_string_equal(u.host, "fe80::1");

	assert_int_equal(rbc_url_parse("http://h:65535", &u), RB_OK);
	assert_int_equal(u.port, 65535);
}

static void test_parse_refuses(void **state)
{
	static const char *bad[] = {
		NULL, "", "ws:/h", "ftp://h/", "wsx://h", "ws://", "ws://:80/", "ws://h:/",
		"ws://h:0", "ws://h:65536", "ws://h:12a", "ws://h:-1", "ws://user@h/",
		"ws://[::1", "ws://[]:80", "ws://[::1]x/", "ws://h /", "ws://h/\x01",
		"ws://h/a b", "h:80",
	};
	struct rbc_url u;

	for (size_t i = 0; i < RB_ARRAY_LEN(bad); i++)
		assert_int_equal(rbc_url_parse(bad[i], &u), RB_EINVAL);
}

static void test_parse_too_long(void **state)
{
	char url[RBC_URL_PATH_MAX + 64];
	struct rbc_url u;

	strcpy(url, "ws://h/");
	memset(url + 7, 'a', RBC_URL_PATH_MAX);
	url[7 + RBC_URL_PATH_MAX] = '\0';
	assert_int_equal(rbc_url_parse(url, &u), RB_ETOOBIG);
	/* the longest that fits */
	url[6 + RBC_URL_PATH_MAX - 1] = '\0';
	assert_int_equal(rbc_url_parse(url, &u), RB_OK);
	assert_int_equal(strlen(u.path), RBC_URL_PATH_MAX - 1);

	strcpy(url, "ws://");
	memset(url + 5, 'h', RBC_URL_HOST_MAX);
	strcpy(url + 5 + RBC_URL_HOST_MAX, "/x");
	assert_int_equal(rbc_url_parse(url, &u), RB_ETOOBIG);
}

static void test_pct_encode(void **state)
{
	char out[64];

	assert_int_equal(rbc_pct_encode("AZaz09-._~", out, sizeof(out)), 10);
	assert_string_equal(out, "AZaz09-._~");
	assert_int_equal(rbc_pct_encode("a b&c=d/é;", out, sizeof(out)), 25);
	assert_string_equal(out, "a%20b%26c%3Dd%2F%C3%A9%3B");
	assert_int_equal(rbc_pct_encode("", out, sizeof(out)), 0);
	assert_string_equal(out, "");
	/* exactly fits: 3 chars + NUL */
	assert_int_equal(rbc_pct_encode("abc", out, 4), 3);
	assert_int_equal(rbc_pct_encode("abcd", out, 4), RB_ETOOBIG);
	assert_string_equal(out, "");
	assert_int_equal(rbc_pct_encode("&", out, 3), RB_ETOOBIG);
}

static void test_query_add(void **state)
{
	char buf[64] = "/connect/";

	assert_int_equal(rbc_query_add(buf, sizeof(buf), "X-DEVICEID", "d 1"), RB_OK);
	assert_string_equal(buf, "/connect/?X-DEVICEID=d%201");
	assert_int_equal(rbc_query_add(buf, sizeof(buf), "token", "a&b"), RB_OK);
	assert_string_equal(buf, "/connect/?X-DEVICEID=d%201&token=a%26b");

	strcpy(buf, "/c?");
	assert_int_equal(rbc_query_add(buf, sizeof(buf), "a", ""), RB_OK);
	assert_string_equal(buf, "/c?a=");
	strcpy(buf, "/c?x=1&");
	assert_int_equal(rbc_query_add(buf, sizeof(buf), "a", "b"), RB_OK);
	assert_string_equal(buf, "/c?x=1&a=b");
	strcpy(buf, "");
	assert_int_equal(rbc_query_add(buf, sizeof(buf), "a", NULL), RB_OK);
	assert_string_equal(buf, "?a=");

	/* too long: unchanged */
	strcpy(buf, "/c");
	assert_int_equal(rbc_query_add(buf, 8, "name", "value"), RB_ETOOBIG);
	assert_string_equal(buf, "/c");
	assert_int_equal(rbc_query_add(buf, 7, "ab", "c"), RB_ETOOBIG);
	assert_string_equal(buf, "/c");
	assert_int_equal(rbc_query_add(buf, 8, "ab", "c"), RB_OK);
	assert_string_equal(buf, "/c?ab=c");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_ws),
		cmocka_unit_test(test_parse_http_and_ipv6),
		cmocka_unit_test(test_parse_refuses),
		cmocka_unit_test(test_parse_too_long),
		cmocka_unit_test(test_pct_encode),
		cmocka_unit_test(test_query_add),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
