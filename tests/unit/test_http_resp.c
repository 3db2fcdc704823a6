/*
 * test_http_resp.c - the HTTP/1.x response parser driven directly with
 * evbuffers: framing, limits, error messages and keep-alive decisions.
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

#include <event2/buffer.h>

#include "protocol/rb.h"
#include "src/http/http_resp.h"

#define MAX_BODY (1024 * 1024)

struct fx {
	struct http_resp p;
	struct evbuffer *in;
	char body[4096];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(http_resp_init(&f->p, false, MAX_BODY), RB_OK);
	f->in = evbuffer_new();
	assert_non_null(f->in);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	http_resp_clear(&f->p);
	http_resp_clear(&f->p); /* a second clear is harmless */
	evbuffer_free(f->in);
	free(f);
	return 0;
}

static void reinit(struct fx *f, bool is_head, size_t max_body)
{
	http_resp_clear(&f->p);
	assert_int_equal(http_resp_init(&f->p, is_head, max_body), RB_OK);
}

/* Appends s to the input and parses. */
static int feed(struct fx *f, const char *s)
{
	assert_int_equal(evbuffer_add(f->in, s, strlen(s)), 0);
	return http_resp_parse(&f->p, f->in);
}

/* The body so far as a string (tests keep bodies small). */
static const char *body(struct fx *f)
{
	size_t n = evbuffer_get_length(f->p.body);

	assert_true(n < sizeof(f->body));
	assert_int_equal(evbuffer_copyout(f->p.body, f->body, n), n);
	f->body[n] = '\0';
	return f->body;
}

static const char *left(struct fx *f)
{
	static char buf[4096];
	size_t n = evbuffer_get_length(f->in);

	assert_true(n < sizeof(buf));
	evbuffer_copyout(f->in, buf, n);
	buf[n] = '\0';
	return buf;
}

static void test_chunked_bytewise(void **state)
{
	struct fx *f = *state;
	const char *resp =
		"HTTP/1.1 200 OK\r\n"
		"Transfer-Encoding: gzip, chunked\r\n"
		"X-Fold: a\r\n"
		" \t b  \r\n"
		"x-dup: first\r\n"
		"X-Dup: second\n"        /* bare LF */
		"\r\n"
		"5;ext=1;name=\"v\"\r\n"
		"hello\r\n"
		"6 ; ext\r\n"
		" world\r\n"
		"000\r\n"
		"Trailer-X: y\r\n"
		"Trailer-Y: z\r\n"
		"\r\n";
	size_t i, n = strlen(resp);

	for (i = 0; i < n; i++) {
		assert_int_equal(evbuffer_add(f->in, resp + i, 1), 0);
		assert_int_equal(http_resp_parse(&f->p, f->in),
				 i + 1 < n ? RB_EAGAIN : RB_OK);
	}
	assert_int_equal(evbuffer_get_length(f->in), 0);
	assert_int_equal(f->p.status, 200);
	assert_int_equal(f->p.minor, 1);
	assert_string_equal(body(f), "hello world");
	assert_string_equal(http_resp_header(&f->p, "x-fold"), "a b");
	assert_string_equal(http_resp_header(&f->p, "X-DUP"), "first");
	assert_string_equal(http_resp_header(&f->p, "transfer-encoding"), "gzip, chunked");
	assert_null(http_resp_header(&f->p, "Trailer-X"));
	assert_null(http_resp_header(&f->p, "X-Missing"));
	assert_true(http_resp_keepalive(&f->p));
	/* Complete stays complete; what follows is left alone. */
	assert_int_equal(feed(f, "HTTP/1.1 200"), RB_OK);
	assert_string_equal(left(f), "HTTP/1.1 200");
}

static void test_chunked_errors(void **state)
{
	struct fx *f = *state;
	char big[HTTP_RESP_MAX_CHUNK_LINE + 2];

	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "3\r\nabcX\r\n"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "missing CRLF after chunk data: \"X\"");

	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "3x\r\n"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "malformed chunk size: \"3x\"");

	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "1000000000000000\r\n"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "chunk size too large: \"1000000000000000\"");

	/* A chunk-size line may be 1024 bytes without its end, not more. */
	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	memset(big, '0', sizeof(big));
	big[HTTP_RESP_MAX_CHUNK_LINE] = '\0';
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
			 RB_EAGAIN);
	assert_int_equal(feed(f, big), RB_EAGAIN);
	assert_int_equal(feed(f, "0"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "chunk size line too long");

	/* The same line arriving whole is refused too (found by fuzzing: the
	 * answer used to depend on how the bytes were split); 1024 bytes and
	 * its CRLF, arriving whole or byte by byte, are accepted. */
	char line[HTTP_RESP_MAX_CHUNK_LINE + 2];
	for (int len = HTTP_RESP_MAX_CHUNK_LINE; len <= HTTP_RESP_MAX_CHUNK_LINE + 1; len++) {
		for (int bytewise = 0; bytewise < 2; bytewise++) {
			char msg[HTTP_RESP_MAX_CHUNK_LINE + 128];
			memset(line, 'a', sizeof(line));
			line[0] = '1';
			line[1] = ';';
			line[len] = '\0';
			int m = snprintf(msg, sizeof(msg), "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
					 "chunked\r\n\r\n%s\r\nx\r\n0\r\n\r\n", line);
			http_resp_reset(&f->p);
			evbuffer_drain(f->in, evbuffer_get_length(f->in));
			int rc = RB_EAGAIN;
			if (bytewise) {
				for (int i = 0; i < m && rc == RB_EAGAIN; i++) {
					char one[2] = { msg[i], 0 };
					rc = feed(f, one);
				}
			} else {
				rc = feed(f, msg);
			}
			if (len > HTTP_RESP_MAX_CHUNK_LINE) {
				assert_int_equal(rc, RB_EPROTO);
				assert_string_equal(f->p.errmsg, "chunk size line too long");
			} else {
				assert_int_equal(rc, RB_OK);
			}
		}
	}
}

static void test_content_length(void **state)
{
	struct fx *f = *state;

	assert_int_equal(feed(f, "HTTP/1.1 201 Created\r\nContent-Length: 5\r\n"
				 "content-length: 5\r\n\r\nhel"), RB_EAGAIN);
	assert_string_equal(body(f), "hel");
	assert_int_equal(feed(f, "loEXTRA"), RB_OK);
	assert_int_equal(f->p.status, 201);
	assert_string_equal(body(f), "hello");
	assert_string_equal(left(f), "EXTRA");

	/* Bare LF line endings throughout; a status line without a reason. */
	reinit(f, false, MAX_BODY);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.0 404\nContent-Length: 3\n\nabc"), RB_OK);
	assert_int_equal(f->p.status, 404);
	assert_int_equal(f->p.minor, 0);
	assert_string_equal(body(f), "abc");

	reinit(f, false, MAX_BODY);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), RB_OK);
	assert_string_equal(body(f), "");

	reinit(f, false, MAX_BODY);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
				 "Content-Length: 6\r\n\r\n"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "conflicting Content-Length headers");

	reinit(f, false, MAX_BODY);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n"),
			 RB_EPROTO);
	assert_string_equal(f->p.errmsg, "bad Content-Length: \"5, 5\"");

	reinit(f, false, MAX_BODY);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 1234567890123456789\r\n\r\n"),
			 RB_EPROTO);
	assert_string_equal(f->p.errmsg, "bad Content-Length: \"1234567890123456789\"");
}

static void test_eof_body(void **state)
{
	struct fx *f = *state;

	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\nsome"),
			 RB_EAGAIN);
	assert_int_equal(feed(f, " more"), RB_EAGAIN);
	assert_string_equal(body(f), "some more");
	assert_false(http_resp_keepalive(&f->p));
	assert_int_equal(http_resp_eof(&f->p), RB_OK);
	assert_int_equal(http_resp_parse(&f->p, f->in), RB_OK);
	assert_false(http_resp_keepalive(&f->p));
	assert_string_equal(body(f), "some more");

	/* A transfer coding other than chunked last: also up to EOF. */
	http_resp_reset(&f->p);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n"
				 "\r\n5\r\nabc"), RB_EAGAIN);
	assert_int_equal(http_resp_eof(&f->p), RB_OK);
	assert_string_equal(body(f), "5\r\nabc");

	/* EOF anywhere else is an error. */
	http_resp_reset(&f->p);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc"),
			 RB_EAGAIN);
	assert_int_equal(http_resp_eof(&f->p), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "connection closed before the end of the response");

	http_resp_reset(&f->p);
	assert_int_equal(http_resp_eof(&f->p), RB_EPROTO);
}

static void test_no_body(void **state)
{
	struct fx *f = *state;
	static const char *const codes[] = { "204 No Content", "304 Not Modified" };
	size_t i;

	reinit(f, true, MAX_BODY);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
			 RB_OK);
	assert_int_equal(f->p.status, 200);
	assert_string_equal(body(f), "");
	assert_string_equal(left(f), "0123456789");
	assert_true(http_resp_keepalive(&f->p));
	/* is_head survives a reset. */
	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
			 RB_OK);

	for (i = 0; i < RB_ARRAY_LEN(codes); i++) {
		char head[128];

		reinit(f, false, MAX_BODY);
		evbuffer_drain(f->in, evbuffer_get_length(f->in));
		snprintf(head, sizeof(head), "HTTP/1.1 %s\r\nContent-Length: 4\r\n\r\nbody",
			 codes[i]);
		assert_int_equal(feed(f, head), RB_OK);
		assert_string_equal(body(f), "");
		assert_string_equal(left(f), "body");
	}
}

static void test_interim(void **state)
{
	struct fx *f = *state;

	assert_int_equal(feed(f, "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"),
			 RB_EAGAIN);
	assert_int_equal(feed(f, "HTTP/1.1 102 Processing\r\n\r\n"
				 "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"), RB_OK);
	assert_int_equal(f->p.status, 200);
	assert_null(http_resp_header(&f->p, "X-Interim"));
	assert_string_equal(body(f), "ok");

	http_resp_reset(&f->p);
	assert_int_equal(feed(f, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
			 RB_EPROTO);
	assert_string_equal(f->p.errmsg, "unexpected 101 Switching Protocols");
}

/* A head of exactly HTTP_RESP_MAX_HEAD bytes (line ends counted as 2). */
static char *head_of(size_t extra)
{
	/* 17 (status) + 19 (Content-Length) + 2 (blank) + 5 + v (X: v) */
	size_t v = HTTP_RESP_MAX_HEAD - 43 + extra;
	char *s = malloc(v + 128);

	assert_non_null(s);
	strcpy(s, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX: ");
	memset(s + strlen(s), 'v', v);
	strcpy(s + 39 + v, "\r\n\r\n");
	return s;
}

static void test_header_cap(void **state)
{
	struct fx *f = *state;
	char *s = head_of(0), *big;

	assert_int_equal(feed(f, s), RB_OK);
	assert_int_equal(strlen(http_resp_header(&f->p, "X")), HTTP_RESP_MAX_HEAD - 43);
	free(s);

	reinit(f, false, MAX_BODY);
	s = head_of(1);
	assert_int_equal(feed(f, s), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "response header over 65536 bytes");
	free(s);

	/* A line that never ends: refused once it alone would reach the cap. */
	big = malloc(HTTP_RESP_MAX_HEAD + 1);
	assert_non_null(big);
	memset(big, 'a', HTTP_RESP_MAX_HEAD);
	big[HTTP_RESP_MAX_HEAD - 1] = '\0';
	reinit(f, false, MAX_BODY);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, big), RB_EAGAIN);
	assert_int_equal(feed(f, "a"), RB_EPROTO);
	assert_string_equal(f->p.errmsg, "response header over 65536 bytes");
	free(big);

	/* Interim heads count too, and a reset gives the budget back. */
	reinit(f, false, MAX_BODY);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 100 Continue\r\n\r\n"), RB_EAGAIN);
	s = head_of(0);
	assert_int_equal(feed(f, s), RB_EPROTO);
	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, s), RB_OK);
	free(s);
}

static void test_body_cap(void **state)
{
	struct fx *f = *state;

	reinit(f, false, 10);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789"),
			 RB_OK);
	assert_string_equal(body(f), "0123456789");

	http_resp_reset(&f->p);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"),
			 RB_ETOOBIG);
	assert_string_equal(f->p.errmsg, "response body over 10 bytes");

	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "6\r\n012345\r\n4\r\n6789\r\n"), RB_EAGAIN);
	assert_int_equal(feed(f, "1\r\n"), RB_ETOOBIG);
	assert_string_equal(f->p.errmsg, "response body over 10 bytes");

	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\n\r\n0123456789"), RB_EAGAIN);
	assert_int_equal(feed(f, "x"), RB_ETOOBIG);
	assert_string_equal(f->p.errmsg, "response body over 10 bytes");
}

static void test_malformed(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *in, *msg;
	} cases[] = {
		{ "HTTP/2 200 OK\r\n", "malformed status line: \"HTTP/2 200 OK\"" },
		{ "HTTP/1.1 20 OK\r\n", "malformed status line: \"HTTP/1.1 20 OK\"" },
		{ "HTTP/1.1  200 OK\r\n", "malformed status line: \"HTTP/1.1  200 OK\"" },
		{ "HTTP/1.1 200OK\r\n", "malformed status line: \"HTTP/1.1 200OK\"" },
		{ "HTTP/1.1 099 Low\r\n", "malformed status line: \"HTTP/1.1 099 Low\"" },
		{ "HTTP/1.x 200 OK\r\n", "malformed status line: \"HTTP/1.x 200 OK\"" },
		{ "http/1.1 200 OK\r\n", "malformed status line: \"http/1.1 200 OK\"" },
		{ "\r\n", "malformed status line: \"\"" },
		{ "ICY 200 \x01\xff\r\n", "malformed status line: \"ICY 200 ??\"" },
		{ "HTTP/1.1 200 OK\r\nNo colon\r\n", "malformed header line: \"No colon\"" },
		{ "HTTP/1.1 200 OK\r\nBad name: x\r\n", "malformed header name: \"Bad name\"" },
		{ "HTTP/1.1 200 OK\r\n: x\r\n", "malformed header name: \"\"" },
		{ "HTTP/1.1 200 OK\r\n folded\r\n", "header continuation without a header" },
	};
	size_t i;

	for (i = 0; i < RB_ARRAY_LEN(cases); i++) {
		http_resp_reset(&f->p);
		evbuffer_drain(f->in, evbuffer_get_length(f->in));
		assert_int_equal(feed(f, cases[i].in), RB_EPROTO);
		assert_string_equal(f->p.errmsg, cases[i].msg);
	}
	/* Long peer text is cut in the message. */
	http_resp_reset(&f->p);
	evbuffer_drain(f->in, evbuffer_get_length(f->in));
	assert_int_equal(feed(f, "HTTP/1.1 2000 0123456789012345678901234567890123456789\r\n"),
			 RB_EPROTO);
	assert_string_equal(f->p.errmsg,
			    "malformed status line: \"HTTP/1.1 2000 012345678901234567890123456789012\"");
}

static void test_keepalive(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *head;
		bool keep;
	} cases[] = {
		{ "HTTP/1.1 200 OK\r\n", true },
		{ "HTTP/1.1 200 OK\r\nConnection: close\r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: Upgrade, CLOSE \r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: x\r\nConnection: close\r\n", false },
		{ "HTTP/1.1 200 OK\r\nConnection: closed\r\n", true },
		{ "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n", true },
		{ "HTTP/1.0 200 OK\r\n", false },
		{ "HTTP/1.0 200 OK\r\nConnection: close\r\n", false },
		{ "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n", true },
		{ "HTTP/1.0 200 OK\r\nConnection: foo,keep-alive\r\n", true },
		{ "HTTP/1.2 200 OK\r\n", true },
		/* Both framings: a smuggling signal, never reused. */
		{ "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n", false },
	};
	size_t i;

	for (i = 0; i < RB_ARRAY_LEN(cases); i++) {
		char buf[256];
		bool chunked = strstr(cases[i].head, "chunked") != NULL;

		http_resp_reset(&f->p);
		evbuffer_drain(f->in, evbuffer_get_length(f->in));
		assert_false(http_resp_keepalive(&f->p));
		snprintf(buf, sizeof(buf), "%s%s", cases[i].head,
			 chunked ? "\r\n0\r\n\r\n" : "Content-Length: 1\r\n\r\nx");
		assert_int_equal(feed(f, buf), RB_OK);
		assert_int_equal(http_resp_keepalive(&f->p), cases[i].keep);
	}
	/* Not decided before the final response's head is complete. */
	http_resp_reset(&f->p);
	assert_int_equal(feed(f, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"), RB_EAGAIN);
	assert_false(http_resp_keepalive(&f->p));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_chunked_bytewise, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_content_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_eof_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interim, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keepalive, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
