/*
 * rest.h - a small blocking HTTP/1.1 client and signed calls to the
 * gateway's REST API (docs/rest-api.md): /send/, /sub/, /unsub/, /kick/,
 * /serverinfo/. One request per TCP connection (Connection: close), plain
 * http:// only (the gateway serves REST on its plain port). Signatures are
 * v1 (docs/protocol.md Signatures), made by protocol/sign.h. Blocking, with
 * one overall deadline per request; any thread (no shared state).
 */
#ifndef RBC_REST_H
#define RBC_REST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest response body accepted. */
#define RBC_HTTP_MAX_BODY (16u * 1024 * 1024)

struct rb_http_resp {
	int status;              /* e.g. 200 */
	char content_type[64];   /* "" if none */
	char *body;              /* malloc'd, NUL-terminated (may hold NULs) */
	size_t body_len;
};

/* Free a response's body (r may be zeroed or NULL). */
void rb_http_resp_free(struct rb_http_resp *r);

/*
 * Parse a response held in buf[0..len): status line, headers, then a body
 * framed by Content-Length, by chunked transfer coding, or (neither) by the
 * end of the connection, which eof says has come. No body for 1xx, 204,
 * 304. Pure. RB_OK (r filled, r->body allocated), RB_EAGAIN (incomplete:
 * read more), RB_EPROTO (malformed), RB_ETOOBIG, RB_ENOMEM.
 */
int rbc_http_parse(const uint8_t *buf, size_t len, bool eof, struct rb_http_resp *r);

/*
 * One request to url (http://host[:port][/prefix]): METHOD prefix+target.
 * headers: extra header lines, each ending in "\r\n", or NULL. body may be
 * NULL when len is 0 (Content-Length is sent for POST and PUT, and whenever
 * there is a body). RB_OK with *r filled (free it with rb_http_resp_free),
 * or an error (RB_EINVAL bad URL, RB_EIO network, RB_ETIMEDOUT, RB_EPROTO)
 * with a reason in err[0..errlen).
 */
int rb_http_request(const char *url, const char *method, const char *target,
		    const char *headers, const void *body, size_t len, int timeout_ms,
		    struct rb_http_resp *r, char *err, size_t errlen);

/*
 * A REST call: METHOD path?query plus, when token is not NULL, the v1
 * signature arguments (timestamp, nonce, signature). query: already
 * encoded, "" or NULL for none. url may also be ws:// (its host and port
 * are used, not its path). Otherwise as rb_http_request.
 */
int rb_rest_call(const char *url, const char *method, const char *path, const char *query,
		 const char *token, const char *headers, const void *body, size_t len,
		 int timeout_ms, struct rb_http_resp *r, char *err, size_t errlen);

#endif
