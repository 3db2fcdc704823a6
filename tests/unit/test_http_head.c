/* Request-head parsing used by the front door, query parsing, token lists. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/http_head.h"

static void test_upgrade_head(void **state)
{
	const char *raw = "GET /connect/?X-DEVICEID=dev%201&foo=1&foo=2&flag HTTP/1.1\r\n"
			  "Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
			  "X-Foo:   bar  \r\n\r\nEXTRA";
	size_t len = http_head_len(raw, strlen(raw));
	assert_int_equal(len, strlen(raw) - 5);
	struct http_head h;
	assert_int_equal(http_head_parse(raw, len, &h), RB_OK);
	assert_string_equal(h.method, "GET");
	assert_string_equal(h.path, "/connect/");
	assert_string_equal(h.query, "X-DEVICEID=dev%201&foo=1&foo=2&flag");
	assert_int_equal(h.minor, 1);
	assert_string_equal(kv_get(&h.headers, "x-foo"), "bar");
	assert_string_equal(kv_get(&h.headers, "UPGRADE"), "websocket");
	assert_true(header_has_token(kv_get(&h.headers, "connection"), "upgrade"));
	assert_false(header_has_token(kv_get(&h.headers, "connection"), "close"));
	struct kvlist q = { 0 };
	assert_int_equal(query_parse(h.query, &q), RB_OK);
	assert_int_equal(q.n, 4);
	assert_string_equal(kv_get(&q, "X-DEVICEID"), "dev 1");
	assert_string_equal(kv_get(&q, "foo"), "1"); /* first value wins */
	assert_string_equal(kv_get(&q, "flag"), "");
	kv_free(&q);
	http_head_free(&h);
}

static void test_incomplete_and_bad(void **state)
{
	assert_int_equal(http_head_len("GET / HTTP/1.1\r\nHost: x\r\n", 25), 0);
	assert_int_equal(http_head_len("", 0), 0);
	const char *bad[] = {
		"GET\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
		"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
		" / HTTP/1.1\r\n\r\n",
		"GET  HTTP/1.1\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_head h;
		assert_int_equal(http_head_parse(bad[i], strlen(bad[i]), &h), RB_EPROTO);
	}
	/* LF-only heads are accepted. */
	struct http_head h;
	const char *lf = "POST /send/?a=%41%zz+b HTTP/1.0\nContent-Length: 3\n\n";
	assert_int_equal(http_head_len(lf, strlen(lf)), strlen(lf));
	assert_int_equal(http_head_parse(lf, strlen(lf), &h), RB_OK);
	assert_int_equal(h.minor, 0);
	struct kvlist q = { 0 };
	query_parse(h.query, &q);
	assert_string_equal(kv_get(&q, "a"), "A%zz b"); /* bad escape kept literally */
	kv_free(&q);
	http_head_free(&h);
}

static void test_serialize(void **state)
{
	struct kvlist a = { 0 }, b = { 0 };
	kv_add(&a, "X-DEVICEID", 10, "d1", 2);
	kv_add(&a, "k", 1, "v: with colon", 13);
	char *s = kv_serialize(&a);
	assert_string_equal(s, "X-DEVICEID: d1\nk: v: with colon\n");
	assert_int_equal(kv_deserialize(&b, s), RB_OK);
	assert_int_equal(b.n, 2);
	assert_string_equal(kv_get(&b, "k"), "v: with colon");
	free(s);
	kv_free(&a);
	kv_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upgrade_head),
		cmocka_unit_test(test_incomplete_and_bad),
		cmocka_unit_test(test_serialize),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
