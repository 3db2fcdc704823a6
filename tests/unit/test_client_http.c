/*
 * test_client_http.c - the response parser of the C client's blocking
 * HTTP client (clients/c/rest.h): Content-Length, chunked, until-EOF
 * bodies, incomplete input, malformed heads.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "clients/c/rest.h"
#include "protocol/rb.h"

static int parse(const char *s, bool eof, struct rb_http_resp *r)
{
	return rbc_http_parse((const uint8_t *)s, strlen(s), eof, r);
}

static void test_content_length(void **state)
{
	const char *full = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
			   "content-length: 12\r\n\r\n{\"status\":0}";
	struct rb_http_resp r;

	assert_int_equal(parse(full, false, &r), RB_OK);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.content_type, "application/json");
	assert_int_equal(r.body_len, 12);
	assert_string_equal(r.body, "{\"status\":0}");
	rb_http_resp_free(&r);
	assert_null(r.body);

	/* every shorter prefix is incomplete, and malformed at EOF */
	for (size_t n = 0; n < strlen(full); n++) {
		assert_int_equal(rbc_http_parse((const uint8_t *)full, n, false, &r), RB_EAGAIN);
		assert_int_equal(rbc_http_parse((const uint8_t *)full, n, true, &r), RB_EPROTO);
	}
	/* bytes past the body are not part of it */
	assert_int_equal(parse("HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nokEXTRA", false,
			       &r), RB_OK);
	assert_int_equal(r.status, 404);
	assert_int_equal(r.body_len, 2);
	assert_string_equal(r.body, "ok");
	rb_http_resp_free(&r);
}

static void test_until_eof_and_no_body(void **state)
{
	struct rb_http_resp r;

	assert_int_equal(parse("HTTP/1.0 200 OK\r\n\r\nhello", false, &r), RB_EAGAIN);
	assert_int_equal(parse("HTTP/1.0 200 OK\r\n\r\nhello", true, &r), RB_OK);
	assert_string_equal(r.body, "hello");
	rb_http_resp_free(&r);
	assert_int_equal(parse("HTTP/1.1 204 No Content\r\n\r\n", false, &r), RB_OK);
	assert_int_equal(r.status, 204);
	assert_int_equal(r.body_len, 0);
	assert_string_equal(r.body, "");
	rb_http_resp_free(&r);
	/* a status line without a reason phrase */
	assert_int_equal(parse("HTTP/1.1 401\r\nContent-Length: 0\r\n\r\n", false, &r), RB_OK);
	assert_int_equal(r.status, 401);
	rb_http_resp_free(&r);
}

static void test_chunked(void **state)
{
	const char *full = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
			   "5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nTrailer: x\r\n\r\n";
	struct rb_http_resp r;

	assert_int_equal(parse(full, false, &r), RB_OK);
	assert_int_equal(r.body_len, 12);
	assert_string_equal(r.body, "hello, world");
	rb_http_resp_free(&r);
	for (size_t n = 0; n < strlen(full); n++)
		assert_int_equal(rbc_http_parse((const uint8_t *)full, n, false, &r), RB_EAGAIN);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			       false, &r), RB_OK);
	assert_int_equal(r.body_len, 0);
	rb_http_resp_free(&r);
	/* a chunk not followed by CRLF, a size that is not hex */
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
			       false, &r), RB_EPROTO);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			       false, &r), RB_EPROTO);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffff\r\n",
			       false, &r), RB_EPROTO);
}

static void test_malformed(void **state)
{
	static const char *bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/1.1 abc OK\r\n\r\n",
		"ICY 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
	};
	struct rb_http_resp r;

	for (size_t i = 0; i < RB_ARRAY_LEN(bad); i++)
		assert_int_equal(parse(bad[i], false, &r), RB_EPROTO);
	assert_int_equal(parse("HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", false, &r),
			 RB_ETOOBIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_length),
		cmocka_unit_test(test_until_eof_and_no_body),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
