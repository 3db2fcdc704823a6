/*
 * http_head.h - name/value lists, an HTTP/1.x request-head parser and a
 * query-string parser, for the front door (which must look at a request
 * before deciding who serves it) and for the hook headers. Pure; any thread.
 */
#ifndef RB_HTTP_HEAD_H
#define RB_HTTP_HEAD_H

#include <stdbool.h>
#include <stddef.h>

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
 */
int http_head_parse(const char *buf, size_t len, struct http_head *out);
void http_head_free(struct http_head *h);

/* Length of the head in buf (through the blank line), or 0 if incomplete. */
size_t http_head_len(const char *buf, size_t len);

/* Parse "a=1&b=x%20y" (+ is a space) into l, percent-decoded. RB_OK or
 * RB_ENOMEM; malformed escapes are kept literally. */
int query_parse(const char *q, struct kvlist *l);

/* Is s a non-empty RFC 9110 token (a valid method or header name)? */
bool http_is_token(const char *s);

/* Does a comma-separated header value contain token (case-insensitive)? */
int header_has_token(const char *value, const char *token);

#endif
