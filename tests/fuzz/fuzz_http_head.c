/*
 * fuzz_http_head.c - libFuzzer target for the request-head parser and its
 * helpers (src/http/http_head.h): http_head_len, http_head_parse,
 * http_body_framing, query_parse (percent decoding), the token-list
 * scanner (header_next_token, header_has_token, header_last_token_is),
 * kv_serialize / kv_deserialize.
 *
 * The input is what a client sends. Checked beyond "no sanitizer report":
 *  - http_head_len finds the first blank line, nothing shorter;
 *  - a parsed head is what the contract promises (token method and header
 *    names, no CR/LF/NUL anywhere, values trimmed, HTTP/1.digit);
 *  - the body framing agrees with the headers it was derived from;
 *  - every element of a token list is non-empty, trimmed, comma-free and
 *    found again by header_has_token; the last by header_last_token_is;
 *  - percent decoding never grows a string, and serialising the headers
 *    and reading them back gives the same list.
 * Inputs reach the parsers in exact-size heap buffers (libFuzzer's own), so
 * a read past the end is an AddressSanitizer report.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/rb.h"
#include "src/http/http_head.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz_http_head: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static bool has_any(const char *s, const char *set)
{
	return strpbrk(s, set) != NULL;
}

static void check_query(const char *q)
{
	struct kvlist l = { 0 };
	size_t amps = 0, i;

	for (const char *s = q; *s; s++)
		amps += *s == '&';
	CHECK(query_parse(q, &l) == RB_OK);
	CHECK(l.n <= amps + 1);
	for (i = 0; i < l.n; i++) {
		/* Decoding only shrinks: each pair came from a piece of q. */
		CHECK(strlen(l.v[i].name) + strlen(l.v[i].value) <= strlen(q));
		if (l.n == 1 && !strchr(q, '%') && !strchr(q, '+') &&
		    !strchr(q, '&')) {
			/* Nothing to decode: name[=value] verbatim. */
			size_t nl = strlen(l.v[i].name);

			CHECK(strncmp(q, l.v[i].name, nl) == 0);
			CHECK(q[nl] == '\0' ? l.v[i].value[0] == '\0' :
			      q[nl] == '=' && strcmp(q + nl + 1, l.v[i].value) == 0);
		}
	}
	if (l.n)
		CHECK(kv_get(&l, l.v[0].name) == l.v[0].value);
	kv_free(&l);
}

/* A comma-separated list, element by element. */
static void check_tokens(const char *v)
{
	const char *p = v, *t, *last = NULL;
	size_t len, last_len = 0;
	char tok[64];

	while (header_next_token(&p, &t, &len)) {
		CHECK(t >= v && len > 0 && t + len <= v + strlen(v));
		CHECK(p >= t + len);
		CHECK(!memchr(t, ',', len));
		CHECK(t[0] != ' ' && t[0] != '\t');
		CHECK(t[len - 1] != ' ' && t[len - 1] != '\t');
		if (len < sizeof(tok)) {
			memcpy(tok, t, len);
			tok[len] = '\0';
			CHECK(header_has_token(v, tok));
		}
		last = t;
		last_len = len;
	}
	CHECK(*p == '\0');
	if (last && last_len < sizeof(tok)) {
		memcpy(tok, last, last_len);
		tok[last_len] = '\0';
		CHECK(header_last_token_is(v, tok));
	}
	if (!last) {
		CHECK(!header_has_token(v, "chunked"));
		CHECK(!header_last_token_is(v, "chunked"));
	}
}

static void check_framing(const struct http_head *h)
{
	size_t cl = 0, te = 0, te_chunked = 0, i;
	uint64_t len = 12345;
	enum http_body f = http_body_framing(h, &len);

	for (i = 0; i < h->headers.n; i++) {
		const struct kv *kv = &h->headers.v[i];

		if (strcasecmp(kv->name, "Content-Length") == 0)
			cl++;
		if (strcasecmp(kv->name, "Transfer-Encoding") == 0) {
			te++;
			te_chunked += strcasecmp(kv->value, "chunked") == 0;
		}
	}
	CHECK(f == HTTP_BODY_LENGTH || len == 0);
	switch (f) {
	case HTTP_BODY_NONE:
		CHECK(cl == 0 && te == 0);
		break;
	case HTTP_BODY_LENGTH: {
		/* The first value alone says the same length. */
		const char *v = kv_get(&h->headers, "Content-Length");

		CHECK(cl > 0 && te == 0 && v != NULL);
		while (*v == ' ' || *v == '\t')
			v++;
		CHECK(*v >= '0' && *v <= '9');
		CHECK(strtoull(v, NULL, 10) == len);
		break;
	}
	case HTTP_BODY_CHUNKED:
		CHECK(cl == 0 && te == 1 && te_chunked == 1);
		break;
	case HTTP_BODY_BAD_LENGTH:
	case HTTP_BODY_CONFLICT:
		CHECK(cl > 0 && te == 0);
		break;
	case HTTP_BODY_AMBIGUOUS:
		CHECK(cl > 0 && te > 0);
		break;
	case HTTP_BODY_BAD_CODING:
		CHECK(cl == 0 && te > 0 && !(te == 1 && te_chunked == 1));
		break;
	default:
		CHECK(!"unknown http_body value");
	}
}

static void check_head(const struct http_head *h)
{
	struct kvlist back = { 0 };
	char *ser;
	size_t i;

	CHECK(h->method && h->path && h->query);
	CHECK(http_is_token(h->method));
	CHECK(!has_any(h->path, "? \r\n"));
	CHECK(!has_any(h->query, " \r\n"));
	CHECK(h->minor >= 0 && h->minor <= 9);
	for (i = 0; i < h->headers.n; i++) {
		const char *n = h->headers.v[i].name, *v = h->headers.v[i].value;
		size_t vl = strlen(v);

		CHECK(http_is_token(n));
		CHECK(!has_any(v, "\r\n"));
		CHECK(vl == 0 || (v[0] != ' ' && v[0] != '\t' &&
				  v[vl - 1] != ' ' && v[vl - 1] != '\t'));
		CHECK(kv_get(&h->headers, n) != NULL);
		check_tokens(v);
		CHECK(!header_has_token(v, ""));
	}

	/* Names are tokens (no ':' nor ' ') and values hold no LF: the
	 * "name: value\n" form reads back exactly. */
	ser = kv_serialize(&h->headers);
	CHECK(ser != NULL);
	CHECK(kv_deserialize(&back, ser) == RB_OK);
	CHECK(back.n == h->headers.n);
	for (i = 0; i < back.n; i++) {
		CHECK(strcmp(back.v[i].name, h->headers.v[i].name) == 0);
		CHECK(strcmp(back.v[i].value, h->headers.v[i].value) == 0);
	}
	kv_free(&back);
	free(ser);

	check_framing(h);
	check_query(h->query);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *buf = (const char *)data;
	struct http_head h;
	size_t hl;
	char *str;
	int rc, rc_head = RB_EPROTO;

	hl = http_head_len(buf, size);
	CHECK(hl <= size);
	if (hl) {
		/* Through the first blank line, and not a byte shorter. */
		CHECK(hl >= 2 && buf[hl - 1] == '\n');
		CHECK(buf[hl - 2] == '\n' ||
		      (hl >= 3 && buf[hl - 2] == '\r' && buf[hl - 3] == '\n'));
		CHECK(http_head_len(buf, hl) == hl);
		CHECK(http_head_len(buf, hl - 1) == 0);
	}

	/* The door parses what http_head_len measured... */
	if (hl) {
		rc_head = http_head_parse(buf, hl, &h);
		CHECK(rc_head == RB_OK || rc_head == RB_EPROTO);
		if (rc_head == RB_OK)
			check_head(&h);
		else
			CHECK(h.method == NULL && h.headers.n == 0);
		http_head_free(&h);
	}
	/* ...but the whole buffer, blank line or not, must be safe too, and
	 * what follows the blank line changes nothing. */
	rc = http_head_parse(buf, size, &h);
	CHECK(rc == RB_OK || rc == RB_EPROTO);
	if (rc == RB_OK) {
		CHECK(hl != 0); /* success needs the blank line */
		check_head(&h);
	}
	if (hl)
		CHECK(rc == rc_head);
	http_head_free(&h);

	/* The raw bytes as a query string and as a serialised list. */
	str = malloc(size + 1);
	CHECK(str != NULL);
	memcpy(str, data, size);
	str[size] = '\0';
	check_query(str);
	check_tokens(str);
	{
		struct kvlist l = { 0 };

		CHECK(kv_deserialize(&l, str) == RB_OK);
		kv_free(&l);
	}
	free(str);
	return 0;
}
