/*
 * http_resp.h - incremental HTTP/1.x response parser, fed from an evbuffer
 * as bytes arrive (the backend client's read side). Pure: no sockets, no
 * event loop; a parser is used by one thread at a time, any thread.
 *
 * Framing follows RFC 7230 3.3.3 in the order it gives:
 *  - a response to HEAD, a 204 and a 304 have no body;
 *  - Transfer-Encoding whose last coding is "chunked": chunked body (chunk
 *    extensions ignored, trailers read and discarded); any other
 *    Transfer-Encoding: body delimited by the end of the connection;
 *  - else Content-Length (repeated copies must agree; digits only, with a
 *    value below 10^18); without one, body delimited by the end of the
 *    connection.
 * 1xx responses other than 101 are interim: dropped, and the final response
 * is parsed after them (101 is an error: we never ask for an upgrade).
 * Header lines may end in CRLF or a bare LF; an obs-fold continuation line is
 * joined to the previous value with one space. The status line, headers,
 * trailers and those of interim responses together may not exceed
 * HTTP_RESP_MAX_HEAD bytes (each line counted with a 2-byte line ending);
 * a chunk-size line may not exceed HTTP_RESP_MAX_CHUNK_LINE bytes.
 */
#ifndef RB_HTTP_RESP_H
#define RB_HTTP_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

#define HTTP_RESP_MAX_HEAD       (64 * 1024)
#define HTTP_RESP_MAX_CHUNK_LINE 1024
#define HTTP_RESP_ERRMSG_LEN     192

enum http_resp_state {
	HTTP_RESP_STATUS, HTTP_RESP_HEADERS, HTTP_RESP_BODY_LEN, HTTP_RESP_BODY_EOF,
	HTTP_RESP_CHUNK_SIZE, HTTP_RESP_CHUNK_DATA, HTTP_RESP_CHUNK_END,
	HTTP_RESP_TRAILERS, HTTP_RESP_DONE,
};

/* One response header: line holds "name\0value". Internal. */
struct http_resp_hdr {
	char *line;
	char *value;
};

/*
 * Readable by the caller: status and minor (HTTP/1.minor) once the headers
 * of the final response are in, body (owned by the parser, never NULL after
 * a successful init; the caller may drain or move its bytes), state (for
 * "is the body delimited by EOF?") and errmsg (after an error). Everything
 * else is internal.
 */
struct http_resp {
	enum http_resp_state state;
	bool is_head;              /* the request was HEAD: no body whatever the headers */
	bool keepalive;
	int status, minor;
	size_t max_body;
	uint64_t remaining;        /* of the current Content-Length body or chunk */
	size_t head_bytes;         /* counted against HTTP_RESP_MAX_HEAD */
	struct http_resp_hdr *hdrs;
	size_t nhdrs, hdrs_cap;
	struct evbuffer *body;     /* the body so far, de-chunked */
	char errmsg[HTTP_RESP_ERRMSG_LEN]; /* printable; peer bytes shown as '?' */
};

/* Ready to parse one response to a request (is_head: it was a HEAD request)
 * whose body may not exceed max_body bytes. RB_OK or RB_ENOMEM; either way
 * p must later be released with http_resp_clear(). */
int http_resp_init(struct http_resp *p, bool is_head, size_t max_body);

/* Ready to parse a new response to the same kind of request (same is_head
 * and max_body): headers dropped, body emptied, keepalive false. */
void http_resp_reset(struct http_resp *p);

/* Frees what p holds. Tolerates a zero-filled p and a second call. */
void http_resp_clear(struct http_resp *p);

/*
 * Consumes bytes from in, leaving in it whatever follows a complete response.
 * Returns RB_OK when the response is complete (and again on later calls),
 * RB_EAGAIN when more input is needed, RB_EPROTO (malformed or unsupported
 * response, or out of memory) or RB_ETOOBIG (body over max_body) with the
 * reason in p->errmsg; after an error p must be reset before reuse.
 */
int http_resp_parse(struct http_resp *p, struct evbuffer *in);

/* The peer closed the connection: RB_OK when that completes a body delimited
 * by the end of the connection (or the response was already complete), else
 * RB_EPROTO with the reason in p->errmsg. Call http_resp_parse() first on
 * whatever input is left. */
int http_resp_eof(struct http_resp *p);

/* Case-insensitive header lookup in the final response; the first value if
 * repeated; NULL when absent. Valid until the next reset or clear. */
const char *http_resp_header(const struct http_resp *p, const char *name);

/* May the connection carry another request after this complete response?
 * HTTP/1.1 unless "Connection: close", HTTP/1.0 only with
 * "Connection: keep-alive"; never after a body delimited by EOF or a
 * response with both Transfer-Encoding and Content-Length. False until the
 * final response's headers are in. */
bool http_resp_keepalive(const struct http_resp *p);

#endif
