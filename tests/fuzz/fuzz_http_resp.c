/*
 * fuzz_http_resp.c - libFuzzer target for the incremental backend response
 * parser (src/http/http_resp.h).
 *
 * Input: byte 0 = flags, byte 1 = split seed, the rest = response bytes
 * (or, in the generated modes, material to build a well-formed response
 * from, whose body is then known exactly).
 *   flags bit 0     the request was HEAD
 *   flags bits 1-2  max_body: 1 MiB, 64, 0, 1 MiB
 *   flags bits 3-4  0, 1: raw bytes; 2: generated chunked; 3: generated
 *                   Content-Length
 *   flags bit 5     generated: bare LF line endings
 *   flags bit 6     generated: a "100 Continue" interim response first
 *   flags bit 7     generated chunked: a trailer
 *
 * Every response is parsed twice: fed in random splits (sizes from the
 * seed, down to one byte at a time) on a fresh parser, then in one piece on
 * the same parser after http_resp_reset(). Both must agree (result, status,
 * body, bytes left over), and after every call:
 *  - the result is one the contract names, errmsg is printable;
 *  - the body never exceeds max_body nor the bytes consumed;
 *  - a complete response has a final status (200..999), no body after
 *    HEAD, 204 or 304, and with Content-Length (no Transfer-Encoding) a
 *    body of exactly that length; a complete response stays complete and
 *    consumes nothing more;
 *  - generated responses give back exactly the body put in and leave the
 *    bytes after it alone (or ETOOBIG exactly when the body is over max_body).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "protocol/rb.h"
#include "src/http/http_resp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz_http_resp: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond); \
			abort(); \
		} \
	} while (0)


/* What the bytes after a generated response are. */
#define TAIL "HTTP/1.1 200 NEXT\r\n"

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void put(struct buf *b, const void *s, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = (b->len + n) * 2 + 64;

		b->p = realloc(b->p, cap);
		CHECK(b->p != NULL);
		b->cap = cap;
	}
	if (n)
		memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_(struct buf *b, const char *s)
{
	put(b, s, strlen(s));
}

/* The outcome of one run, kept to compare the two. */
struct outcome {
	int rc;
	int status, minor;
	bool keepalive;
	struct buf body, left;
	char errmsg[HTTP_RESP_ERRMSG_LEN];
};

static uint32_t next_rand(uint32_t *s)
{
	/* xorshift32; the state is never 0. */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static size_t piece_size(uint32_t *s, unsigned how)
{
	static const uint32_t most[4] = { 1, 8, 64, 1024 };

	return 1 + next_rand(s) % most[how];
}

static void copy_evbuffer(struct evbuffer *e, struct buf *b)
{
	size_t n = evbuffer_get_length(e);

	b->len = 0;
	if (n) {
		uint8_t *tmp = malloc(n);

		CHECK(tmp != NULL);
		CHECK(evbuffer_copyout(e, tmp, n) == (ev_ssize_t)n);
		put(b, tmp, n);
		free(tmp);
	}
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if (*s < 0x20 || *s > 0x7e)
			return false;
	return true;
}

/* Invariants after any http_resp_parse / http_resp_eof call. */
static void check_state(const struct http_resp *p, int rc, size_t consumed)
{
	size_t blen = evbuffer_get_length(p->body);

	CHECK(rc == RB_OK || rc == RB_EAGAIN || rc == RB_EPROTO ||
	      rc == RB_ETOOBIG);
	CHECK(blen <= p->max_body);
	CHECK(blen <= consumed);
	if (rc == RB_EPROTO || rc == RB_ETOOBIG) {
		CHECK(memchr(p->errmsg, '\0', sizeof(p->errmsg)) != NULL);
		CHECK(p->errmsg[0] != '\0');
		CHECK(printable(p->errmsg));
		return;
	}
	if (rc == RB_EAGAIN) {
		CHECK(p->state != HTTP_RESP_DONE);
		return;
	}
	CHECK(p->state == HTTP_RESP_DONE);
	CHECK(p->status >= 200 && p->status <= 999);
	CHECK(p->minor >= 0 && p->minor <= 9);
	if (p->is_head || p->status == 204 || p->status == 304) {
		CHECK(blen == 0);
		return;
	}
	const char *te = http_resp_header(p, "Transfer-Encoding");
	const char *cl = http_resp_header(p, "Content-Length");

	if (te && cl)
		CHECK(!http_resp_keepalive(p)); /* smuggling signal */
	if (!te && cl)
		CHECK(blen == strtoull(cl, NULL, 10));
}

/*
 * Feeds resp[0..len) to p in pieces (how: 0..3 from the seed; -1: one
 * piece) and records the outcome. After a final answer the remaining input
 * is still added, and parsing must repeat that answer without consuming.
 */
static void run(struct http_resp *p, const uint8_t *resp, size_t len, int how,
		uint32_t seed, struct outcome *o)
{
	struct evbuffer *in = evbuffer_new();
	size_t added = 0;
	int rc = RB_EAGAIN;

	CHECK(in != NULL);
	while (added < len) {
		size_t n = how < 0 ? len : piece_size(&seed, (unsigned)how);
		size_t had;

		if (n > len - added)
			n = len - added;
		CHECK(evbuffer_add(in, resp + added, n) == 0);
		added += n;
		if (rc != RB_EAGAIN && rc != RB_OK)
			break; /* after an error, p wants a reset: stop here */
		had = evbuffer_get_length(in);
		if (rc == RB_OK) {
			size_t blen = evbuffer_get_length(p->body);

			CHECK(http_resp_parse(p, in) == RB_OK);
			CHECK(evbuffer_get_length(in) == had);
			CHECK(evbuffer_get_length(p->body) == blen);
			continue;
		}
		rc = http_resp_parse(p, in);
		check_state(p, rc, added - evbuffer_get_length(in));
	}
	if (rc == RB_EAGAIN) {
		rc = http_resp_eof(p);
		check_state(p, rc, added - evbuffer_get_length(in));
		if (rc == RB_OK) {
			CHECK(http_resp_parse(p, in) == RB_OK);
			CHECK(http_resp_eof(p) == RB_OK);
		}
	}
	o->rc = rc;
	o->status = p->status;
	o->minor = p->minor;
	o->keepalive = http_resp_keepalive(p);
	memcpy(o->errmsg, p->errmsg, sizeof(o->errmsg));
	copy_evbuffer(p->body, &o->body);
	copy_evbuffer(in, &o->left);
	evbuffer_free(in);
}

static bool same_buf(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 || !memcmp(a->p, b->p, a->len));
}

/* A well-formed response around the fuzzer's bytes, and its body. */
static void generate(uint8_t flags, const uint8_t *d, size_t n,
		     struct buf *resp, struct buf *body)
{
	const char *eol = flags & 0x20 ? "\n" : "\r\n";
	bool chunked = (flags >> 3 & 3) == 2;
	char line[64];

	if (flags & 0x40) {
		puts_(resp, "HTTP/1.1 100 Continue");
		puts_(resp, eol);
		puts_(resp, eol);
	}
	puts_(resp, "HTTP/1.1 200 OK");
	puts_(resp, eol);
	if (!chunked) {
		snprintf(line, sizeof(line), "Content-Length: %zu", n);
		puts_(resp, line);
		puts_(resp, eol);
		puts_(resp, eol);
		put(resp, d, n);
		put(body, d, n);
		return;
	}
	puts_(resp, "Transfer-Encoding: chunked");
	puts_(resp, eol);
	puts_(resp, eol);
	for (size_t i = 0; i < n;) {
		uint8_t l = d[i++];
		size_t take = 1 + (l & 0x7f);

		if (take > n - i)
			take = n - i;
		if (take == 0)
			break; /* a 0 chunk would end the body */
		snprintf(line, sizeof(line), l & 1 ? "%zx%s" : "%zX%s", take,
			 l & 0x80 ? ";ext=\"v\"" : "");
		puts_(resp, line);
		puts_(resp, eol);
		put(resp, d + i, take);
		put(body, d + i, take);
		puts_(resp, eol);
		i += take;
	}
	puts_(resp, "0");
	puts_(resp, eol);
	if (flags & 0x80) {
		puts_(resp, "Trailer-X: y");
		puts_(resp, eol);
	}
	puts_(resp, eol);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const size_t max_bodies[4] = { 1 << 20, 64, 0, 1 << 20 };
	struct outcome a = { 0 }, b = { 0 };
	struct buf gen = { 0 }, want = { 0 };
	const uint8_t *resp;
	struct http_resp p;
	uint8_t flags;
	uint32_t seed;
	bool generated;
	size_t len, max_body, head_len = 0;

	if (size < 2)
		return 0;
	flags = data[0];
	seed = 0x9e3779b9u ^ data[1] ^ (uint32_t)size << 8;
	max_body = max_bodies[flags >> 1 & 3];
	generated = (flags >> 3 & 3) >= 2;
	if (generated) {
		generate(flags, data + 2, size - 2, &gen, &want);
		/* Where the body starts: after the last blank line of the head. */
		head_len = gen.len - want.len;
		if ((flags >> 3 & 3) == 2)
			head_len = 0; /* chunked: not needed */
		puts_(&gen, TAIL);
		resp = gen.p;
		len = gen.len;
	} else {
		resp = data + 2;
		len = size - 2;
	}

	CHECK(http_resp_init(&p, flags & 1, max_body) == RB_OK);
	run(&p, resp, len, (int)(data[1] & 3), seed, &a);
	http_resp_reset(&p);
	run(&p, resp, len, -1, seed, &b);
	http_resp_clear(&p);
	http_resp_clear(&p); /* tolerated */

	/* Split or whole, the same answer (this once found a chunk-size line
	 * limit checked only on incomplete lines: regress-long-chunk-line). */
	CHECK(a.rc == b.rc);
	if (a.rc == RB_OK) {
		CHECK(a.status == b.status && a.minor == b.minor);
		CHECK(a.keepalive == b.keepalive);
		CHECK(same_buf(&a.body, &b.body));
		CHECK(same_buf(&a.left, &b.left));
	}

	if (generated) {
		const size_t tail = strlen(TAIL);

		if (flags & 1) {
			/* HEAD: no body; everything after the head is left. */
			CHECK(b.rc == RB_OK && b.status == 200 && b.body.len == 0);
			CHECK(b.left.len >= tail);
			if (head_len)
				CHECK(b.left.len == len - head_len);
		} else if (want.len > max_body) {
			CHECK(b.rc == RB_ETOOBIG);
		} else {
			CHECK(b.rc == RB_OK && b.status == 200);
			CHECK(same_buf(&b.body, &want));
			CHECK(b.left.len == tail &&
			      memcmp(b.left.p, TAIL, tail) == 0);
		}
	}
	free(a.body.p);
	free(a.left.p);
	free(b.body.p);
	free(b.left.p);
	free(gen.p);
	free(want.p);
	return 0;
}
