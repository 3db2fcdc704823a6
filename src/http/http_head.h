/*
 * http_head.h - name/value lists, an HTTP/1.x request-head parser and a
 * query-string parser, for the front door (which must look at a request
 * before deciding who serves it) and for the hook headers. Pure; any thread.
 */
#ifndef RB_HTTP_HEAD_H
#define RB_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest request head the door and the HTTP server accept (431). */
#define HTTP_MAX_HEAD 16384

struct kv {
	char *name;
	char *value;
};

/* Zero-initialised is empty. Owns its strings. */
struct kvlist {
	struct kv *v;
	size_t n, cap;
};

int kv_add(struct kvlist *l, const char *name, size_t nlen, const char *value,
	   size_t vlen);
/* Case-insensitive; first match; NULL if absent. */
const char *kv_get(const struct kvlist *l, const char *name);
void kv_free(struct kvlist *l);

/* Serialise as "name: value\n" lines (for crossing the seam) and back.
 * kv_serialize returns a malloc'd string or NULL on ENOMEM. */
char *kv_serialize(const struct kvlist *l);
int kv_deserialize(struct kvlist *l, const char *s);

struct http_head {
	char *method;
	char *path;  /* without the query, not decoded */
	char *query; /* after '?', not decoded; "" when none */
	int minor;   /* HTTP/1.minor */
	struct kvlist headers;
};

/*
 * Parse buf[0..len), a complete request head ending in CRLF CRLF (or LF LF).
 * RB_OK, RB_EPROTO (malformed) or RB_ENOMEM. On failure *out is freed.
 * Malformed includes a method or header name that is not a token (so
 * "Content-Length : 5" is refused, never read as another header) and a NUL
 * or bare CR in a line: what one parser reads differently from the next is
 * how requests get smuggled.
 */
int http_head_parse(const char *buf, size_t len, struct http_head *out);
void http_head_free(struct http_head *h);

/* How a request says where its body ends (RFC 9112 6.3). */
enum http_body {
	HTTP_BODY_NONE,       /* neither header: no body */
	HTTP_BODY_LENGTH,     /* Content-Length: *len bytes */
	HTTP_BODY_CHUNKED,    /* Transfer-Encoding: chunked, alone */
	HTTP_BODY_BAD_LENGTH, /* a Content-Length value that is not 1*DIGIT, or too big */
	HTTP_BODY_CONFLICT,   /* Content-Length values that differ */
	HTTP_BODY_AMBIGUOUS,  /* Transfer-Encoding and Content-Length together */
	HTTP_BODY_BAD_CODING, /* any Transfer-Encoding other than one "chunked" */
};

/*
 * Classify h's body framing; *len is set for HTTP_BODY_LENGTH (0 otherwise).
 * Repeated Content-Length headers or a list ("5, 5") count as one when every
 * value is the same. Anything past HTTP_BODY_CHUNKED must be refused (400)
 * and the connection closed: guessing the framing is request smuggling.
 */
enum http_body http_body_framing(const struct http_head *h, uint64_t *len);

/* The reason phrase for an HTTP status code ("Unknown" if not listed). */
const char *http_reason(int status);

/* Length of the head in buf (through the blank line), or 0 if incomplete. */
size_t http_head_len(const char *buf, size_t len);

/* Parse "a=1&b=x%20y" (+ is a space) into l, percent-decoded. RB_OK or
 * RB_ENOMEM; malformed escapes are kept literally. */
int query_parse(const char *q, struct kvlist *l);

/* Is s a non-empty RFC 9110 token (a valid method or header name)? */
bool http_is_token(const char *s);

/*
 * Comma-separated header values ("close, Upgrade", "gzip, chunked"): the
 * one scanner. header_next_token() gives the next element of *p, blanks
 * around it trimmed and empty elements skipped, in *tok (not
 * NUL-terminated) and *len, and advances *p; false at the end.
 */
bool header_next_token(const char **p, const char **tok, size_t *len);
/* Does the list contain token (case-insensitive)? NULL is empty. */
int header_has_token(const char *value, const char *token);
/* Is the list's last element token (case-insensitive; Transfer-Encoding)? */
bool header_last_token_is(const char *value, const char *token);

#endif
