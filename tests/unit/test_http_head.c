/* Request-head parsing used by the front door, query parsing, token lists. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/http/http_head.h"

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

/* What one parser reads differently from the next is how requests get
 * smuggled: a header name with a space before the colon, a method that is
 * not a token, a NUL or a bare CR are refused, not guessed at. */
static void test_refuses_what_others_read_differently(void **state)
{
	static const struct {
		const char *raw;
		size_t len; /* 0: strlen */
	} bad[] = {
		{ "POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n", 0 },
		{ "POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n", 0 },
		{ "POST / HTTP/1.1\r\nX Y: 1\r\n\r\n", 0 },
		{ "POST / HTTP/1.1\r\n\"X\": 1\r\n\r\n", 0 },
		{ "G(T / HTTP/1.1\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n", 0 },
		{ "GET /\r HTTP/1.1\r\n\r\n", 0 },
		{ "GET / HTTP/1.1\r\nX: a\0b\r\n\r\n", 26 },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct http_head h;
		size_t len = bad[i].len ? bad[i].len : strlen(bad[i].raw);
		assert_int_equal(http_head_len(bad[i].raw, len), len);
		assert_int_equal(http_head_parse(bad[i].raw, len, &h), RB_EPROTO);
	}
	/* Tabs and obs-text in values and every tchar in names stay fine. */
	const char *ok = "M-1.!#$%&'*+^_`|~ / HTTP/1.1\r\nX-a.b!#$%&'*+^_`|~: v\t\xe9 w\r\n\r\n";
	struct http_head h;
	assert_int_equal(http_head_parse(ok, strlen(ok), &h), RB_OK);
	assert_string_equal(h.method, "M-1.!#$%&'*+^_`|~");
	assert_string_equal(kv_get(&h.headers, "x-A.B!#$%&'*+^_`|~"), "v\t\xe9 w");
	http_head_free(&h);
}

static enum http_body framing_of(const char *headers, uint64_t *len)
{
	char raw[512];
	struct http_head h;
	snprintf(raw, sizeof(raw), "POST / HTTP/1.1\r\n%s\r\n", headers);
	assert_int_equal(http_head_parse(raw, strlen(raw), &h), RB_OK);
	*len = 12345;
	enum http_body f = http_body_framing(&h, len);
	http_head_free(&h);
	return f;
}

static void test_body_framing(void **state)
{
	static const struct {
		const char *headers;
		enum http_body want;
		uint64_t len;
	} cases[] = {
		{ "", HTTP_BODY_NONE, 0 },
		{ "Host: x\r\n", HTTP_BODY_NONE, 0 },
		{ "Content-Length: 0\r\n", HTTP_BODY_LENGTH, 0 },
		{ "content-length: 42\r\n", HTTP_BODY_LENGTH, 42 },
		{ "Content-Length: 5\r\nContent-Length: 5\r\n", HTTP_BODY_LENGTH, 5 },
		{ "Content-Length: 5, 5\r\n", HTTP_BODY_LENGTH, 5 },
		{ "Content-Length: 5,5 ,\t5\r\n", HTTP_BODY_LENGTH, 5 },
		{ "Content-Length: 18446744073709551606\r\n", HTTP_BODY_LENGTH,
		  18446744073709551606ull },
		{ "Content-Length: 5\r\nContent-Length: 6\r\n", HTTP_BODY_CONFLICT, 0 },
		{ "Content-Length: 5, 6\r\n", HTTP_BODY_CONFLICT, 0 },
		{ "Content-Length: 6\r\nContent-Length: 6, 7\r\n", HTTP_BODY_CONFLICT, 0 },
		{ "Content-Length: 5\r\nContent-Length: x\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: \r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: +5\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: -1\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: 0x5\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: 5 5\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: 5,\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: ,5\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Content-Length: 99999999999999999999\r\n", HTTP_BODY_BAD_LENGTH, 0 },
		{ "Transfer-Encoding: chunked\r\n", HTTP_BODY_CHUNKED, 0 },
		{ "Transfer-Encoding: CHUNKED\r\n", HTTP_BODY_CHUNKED, 0 },
		{ "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", HTTP_BODY_AMBIGUOUS, 0 },
		{ "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n", HTTP_BODY_AMBIGUOUS, 0 },
		{ "Content-Length: x\r\nTransfer-Encoding: gzip\r\n", HTTP_BODY_AMBIGUOUS, 0 },
		{ "Transfer-Encoding: gzip\r\n", HTTP_BODY_BAD_CODING, 0 },
		{ "Transfer-Encoding: identity\r\n", HTTP_BODY_BAD_CODING, 0 },
		{ "Transfer-Encoding: gzip, chunked\r\n", HTTP_BODY_BAD_CODING, 0 },
		{ "Transfer-Encoding: chunked, chunked\r\n", HTTP_BODY_BAD_CODING, 0 },
		{ "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
		  HTTP_BODY_BAD_CODING, 0 },
		{ "Transfer-Encoding: \r\n", HTTP_BODY_BAD_CODING, 0 },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t len;
		enum http_body f = framing_of(cases[i].headers, &len);
		if (f != cases[i].want || len != cases[i].len)
			fail_msg("case %zu (%s): got %d len %llu, want %d len %llu", i,
				 cases[i].headers, (int)f, (unsigned long long)len,
				 (int)cases[i].want, (unsigned long long)cases[i].len);
	}
}

static void test_reason(void **state)
{
	assert_string_equal(http_reason(100), "Continue");
	assert_string_equal(http_reason(400), "Bad Request");
	assert_string_equal(http_reason(408), "Request Timeout");
	assert_string_equal(http_reason(426), "Upgrade Required");
	assert_string_equal(http_reason(431), "Request Header Fields Too Large");
	assert_string_equal(http_reason(503), "Service Unavailable");
	assert_string_equal(http_reason(299), "Unknown");
}

/* The one comma-list scanner: header_has_token and header_last_token_is. */
static void test_token_lists(void **state)
{
	const char *p = " gzip ,, \tChunked\t,", *t;
	size_t len;

	assert_true(header_next_token(&p, &t, &len));
	assert_int_equal(len, 4);
	assert_memory_equal(t, "gzip", 4);
	assert_true(header_next_token(&p, &t, &len));
	assert_int_equal(len, 7);
	assert_memory_equal(t, "Chunked", 7);
	assert_false(header_next_token(&p, &t, &len));
	assert_false(header_next_token(&p, &t, &len)); /* stays at the end */

	assert_true(header_has_token("keep-alive, Upgrade", "upgrade"));
	assert_true(header_has_token("Upgrade", "UPGRADE"));
	assert_false(header_has_token("Upgraded, xupgrade", "upgrade"));
	assert_false(header_has_token("up grade", "upgrade"));
	assert_false(header_has_token("", "close"));
	assert_false(header_has_token(" , ,", "close"));
	assert_false(header_has_token(NULL, "close"));
	assert_false(header_has_token("close", ""));

	assert_true(header_last_token_is("chunked", "chunked"));
	assert_true(header_last_token_is("gzip, CHUNKED , ", "chunked"));
	assert_false(header_last_token_is("chunked, gzip", "chunked"));
	assert_false(header_last_token_is("", "chunked"));
	assert_false(header_last_token_is(" ,", "chunked"));
	assert_false(header_last_token_is(NULL, "chunked"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_upgrade_head),
		cmocka_unit_test(test_incomplete_and_bad),
		cmocka_unit_test(test_serialize),
		cmocka_unit_test(test_refuses_what_others_read_differently),
		cmocka_unit_test(test_body_framing),
		cmocka_unit_test(test_reason),
		cmocka_unit_test(test_token_lists),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
