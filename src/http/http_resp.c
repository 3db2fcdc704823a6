/*
 * http_resp.c - incremental HTTP/1.x response parser; see http_resp.h.
 *
 * Internal helpers return RB_OK to go on, RB_EAGAIN for more bytes, or an
 * error with p->errmsg set; nothing is consumed from the input that a later
 * call would need again.
 */
#include "src/http/http_resp.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "protocol/rb.h"
#include "src/http/http_head.h"

/* A Content-Length over 18 digits is refused as malformed, not as too big. */
#define CONTENT_LENGTH_MAX UINT64_C(999999999999999999)

static void set_errmsg(struct http_resp *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void set_errmsg(struct http_resp *p, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(p->errmsg, sizeof(p->errmsg), fmt, ap);
	va_end(ap);
}

/* Peer bytes go into errmsg, which ends up in logs: keep them printable. */
static void printable(char *dst, size_t len, const char *src)
{
	size_t i;

	for (i = 0; i + 1 < len && src[i]; i++) {
		dst[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	}
	dst[i] = '\0';
}

static void hdrs_clear(struct http_resp *p)
{
	size_t i;

	for (i = 0; i < p->nhdrs; i++) {
		free(p->hdrs[i].line);
	}
	p->nhdrs = 0;
}

int http_resp_init(struct http_resp *p, bool is_head, size_t max_body)
{
	memset(p, 0, sizeof(*p));
	p->is_head = is_head;
	p->max_body = max_body;
	p->body = evbuffer_new();
	return p->body ? RB_OK : RB_ENOMEM;
}

void http_resp_reset(struct http_resp *p)
{
	p->state = HTTP_RESP_STATUS;
	p->status = 0;
	p->keepalive = false;
	p->remaining = 0;
	p->head_bytes = 0;
	hdrs_clear(p);
	if (p->body) {
		evbuffer_drain(p->body, evbuffer_get_length(p->body));
	}
}

void http_resp_clear(struct http_resp *p)
{
	hdrs_clear(p);
	free(p->hdrs);
	p->hdrs = NULL;
	p->hdrs_cap = 0;
	if (p->body) {
		evbuffer_free(p->body);
		p->body = NULL;
	}
}

static int too_big(struct http_resp *p)
{
	set_errmsg(p, "response body over %zu bytes", p->max_body);
	return RB_ETOOBIG;
}

static int proto_err(struct http_resp *p, const char *what, const char *line)
{
	char buf[48];

	if (line) {
		printable(buf, sizeof(buf), line);
		set_errmsg(p, "%s: \"%s\"", what, buf);
	} else {
		set_errmsg(p, "%s", what);
	}
	return RB_EPROTO;
}

/* A line of the response head (status, header or trailer), counted against
 * HTTP_RESP_MAX_HEAD. RB_OK with *line (malloc'd), RB_EAGAIN, or error. */
static int head_line(struct http_resp *p, struct evbuffer *in, char **line, size_t *n)
{
	size_t left = HTTP_RESP_MAX_HEAD - p->head_bytes;

	*line = evbuffer_readln(in, n, EVBUFFER_EOL_CRLF);
	if (!*line) {
		if (evbuffer_get_length(in) >= left) {
			return proto_err(p, "response header over 65536 bytes", NULL);
		}
		return RB_EAGAIN;
	}
	if (*n + 2 > left) {
		free(*line);
		return proto_err(p, "response header over 65536 bytes", NULL);
	}
	p->head_bytes += *n + 2;
	return RB_OK;
}

static int chunk_line(struct http_resp *p, struct evbuffer *in, char **line, size_t *n)
{
	*line = evbuffer_readln(in, n, EVBUFFER_EOL_CRLF);
	if (!*line) {
		/* Incomplete: its CR may already be here, not yet its LF. */
		size_t len = evbuffer_get_length(in), room = HTTP_RESP_MAX_CHUNK_LINE;
		if (len == room + 1) {
			struct evbuffer_ptr last;
			char ch = 0;
			evbuffer_ptr_set(in, &last, len - 1, EVBUFFER_PTR_SET);
			if (evbuffer_copyout_from(in, &last, &ch, 1) == 1 && ch == '\r')
				room++;
		}
		if (len > room) {
			return proto_err(p, "chunk size line too long", NULL);
		}
		return RB_EAGAIN;
	}
	/* The same limit for a line that arrived whole (found by fuzzing:
	 * the answer must not depend on how the bytes were split). */
	if (*n > HTTP_RESP_MAX_CHUNK_LINE) {
		free(*line);
		*line = NULL;
		return proto_err(p, "chunk size line too long", NULL);
	}
	return RB_OK;
}

static int parse_status(struct http_resp *p, const char *l)
{
	if (strncmp(l, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)l[7]) || l[8] != ' ' ||
	    !isdigit((unsigned char)l[9]) || !isdigit((unsigned char)l[10]) || !isdigit((unsigned char)l[11]) ||
	    (l[12] != '\0' && l[12] != ' ') || l[9] == '0') {
		return proto_err(p, "malformed status line", l);
	}
	p->minor = l[7] - '0';
	p->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
	p->state = HTTP_RESP_HEADERS;
	return RB_OK;
}

static void trim(char **s)
{
	char *e;

	while (**s == ' ' || **s == '\t') {
		(*s)++;
	}
	e = *s + strlen(*s);
	while (e > *s && (e[-1] == ' ' || e[-1] == '\t')) {
		*--e = '\0';
	}
}

/* Takes ownership of line. */
static int parse_header(struct http_resp *p, char *line)
{
	struct http_resp_hdr *h;
	char *colon, *v;
	int rc;

	if (line[0] == ' ' || line[0] == '\t') {
		/* obs-fold: RFC 7230 3.2.4 lets a client replace it with a space. */
		size_t off, vlen, clen;
		char *cont = line, *nl;

		if (p->nhdrs == 0) {
			free(line);
			return proto_err(p, "header continuation without a header", NULL);
		}
		h = &p->hdrs[p->nhdrs - 1];
		trim(&cont);
		off = (size_t)(h->value - h->line);
		vlen = strlen(h->value);
		clen = strlen(cont);
		nl = realloc(h->line, off + vlen + 1 + clen + 1);
		if (!nl) {
			free(line);
			return proto_err(p, "out of memory parsing headers", NULL);
		}
		h->line = nl;
		h->value = nl + off;
		if (vlen && clen) {
			h->value[vlen++] = ' ';
		}
		memcpy(h->value + vlen, cont, clen + 1);
		free(line);
		return RB_OK;
	}
	colon = strchr(line, ':');
	if (colon) {
		*colon = '\0';
	}
	if (!colon || !http_is_token(line)) {
		rc = proto_err(p, colon ? "malformed header name" : "malformed header line",
			       line);
		free(line);
		return rc;
	}
	v = colon + 1;
	trim(&v);
	if (p->nhdrs == p->hdrs_cap) {
		size_t cap = p->hdrs_cap ? p->hdrs_cap * 2 : 16;
		struct http_resp_hdr *nh = realloc(p->hdrs, cap * sizeof(*nh));

		if (!nh) {
			free(line);
			return proto_err(p, "out of memory parsing headers", NULL);
		}
		p->hdrs = nh;
		p->hdrs_cap = cap;
	}
	p->hdrs[p->nhdrs].line = line;
	p->hdrs[p->nhdrs].value = v;
	p->nhdrs++;
	return RB_OK;
}

static const char *find_header(const struct http_resp *p, const char *name, bool last)
{
	const char *found = NULL;
	size_t i;

	for (i = 0; i < p->nhdrs; i++) {
		if (!strcasecmp(p->hdrs[i].line, name)) {
			found = p->hdrs[i].value;
			if (!last) {
				break;
			}
		}
	}
	return found;
}

static bool connection_has(const struct http_resp *p, const char *tok)
{
	size_t i;

	for (i = 0; i < p->nhdrs; i++) {
		if (!strcasecmp(p->hdrs[i].line, "Connection") &&
		    header_has_token(p->hdrs[i].value, tok)) {
			return true;
		}
	}
	return false;
}

/* RFC 7230 3.3.3 in the order it gives. */
static int headers_done(struct http_resp *p)
{
	const char *te;
	bool have_len = false;
	uint64_t len = 0;
	size_t i;

	if (p->status < 200) {
		if (p->status == 101) {
			return proto_err(p, "unexpected 101 Switching Protocols", NULL);
		}
		/* Interim response (100 Continue...): the real one follows. Its
		 * head still counts against HTTP_RESP_MAX_HEAD. */
		hdrs_clear(p);
		p->state = HTTP_RESP_STATUS;
		return RB_OK;
	}
	p->keepalive = p->minor >= 1 ? !connection_has(p, "close")
				     : connection_has(p, "keep-alive");
	if (p->is_head || p->status == 204 || p->status == 304) {
		p->state = HTTP_RESP_DONE;
		return RB_OK;
	}
	te = find_header(p, "Transfer-Encoding", true);
	if (te) {
		if (find_header(p, "Content-Length", false)) {
			/* Conflicting framing: a smuggling signal, don't reuse. */
			p->keepalive = false;
		}
		if (header_last_token_is(te, "chunked")) {
			p->state = HTTP_RESP_CHUNK_SIZE;
		} else {
			p->keepalive = false;
			p->state = HTTP_RESP_BODY_EOF;
		}
		return RB_OK;
	}
	for (i = 0; i < p->nhdrs; i++) {
		const char *v = p->hdrs[i].value;
		uint64_t n = 0;

		if (strcasecmp(p->hdrs[i].line, "Content-Length") != 0) {
			continue;
		}
		if (rb_parse_decs(v, CONTENT_LENGTH_MAX, &n) != RB_OK) {
			return proto_err(p, "bad Content-Length", v);
		}
		if (have_len && n != len) {
			return proto_err(p, "conflicting Content-Length headers", NULL);
		}
		have_len = true;
		len = n;
	}
	if (!have_len) {
		p->keepalive = false;
		p->state = HTTP_RESP_BODY_EOF;
		return RB_OK;
	}
	if (len > p->max_body) {
		return too_big(p);
	}
	p->remaining = len;
	p->state = len ? HTTP_RESP_BODY_LEN : HTTP_RESP_DONE;
	return RB_OK;
}

static int parse_chunk_size(struct http_resp *p, const char *l)
{
	size_t have = evbuffer_get_length(p->body);
	uint64_t size = 0;
	int digits = 0;
	const char *s;

	for (s = l; *s; s++) {
		int v;

		if (*s >= '0' && *s <= '9') {
			v = *s - '0';
		} else if (*s >= 'a' && *s <= 'f') {
			v = *s - 'a' + 10;
		} else if (*s >= 'A' && *s <= 'F') {
			v = *s - 'A' + 10;
		} else {
			break;
		}
		if (++digits > 15) {
			return proto_err(p, "chunk size too large", l);
		}
		size = size * 16 + (uint64_t)v;
	}
	while (*s == ' ' || *s == '\t') {
		s++;
	}
	if (digits == 0 || (*s && *s != ';')) {
		return proto_err(p, "malformed chunk size", l);
	}
	if (size == 0) {
		p->state = HTTP_RESP_TRAILERS;
		return RB_OK;
	}
	if (size > p->max_body - have) {
		return too_big(p);
	}
	p->remaining = size;
	p->state = HTTP_RESP_CHUNK_DATA;
	return RB_OK;
}

static void move_body(struct http_resp *p, struct evbuffer *in)
{
	size_t n = evbuffer_get_length(in);

	if (n > p->remaining) {
		n = (size_t)p->remaining;
	}
	evbuffer_remove_buffer(in, p->body, n);
	p->remaining -= n;
}

int http_resp_parse(struct http_resp *p, struct evbuffer *in)
{
	char *line;
	size_t n;
	int rc;

	for (;;) {
		switch (p->state) {
		case HTTP_RESP_STATUS:
		case HTTP_RESP_HEADERS:
		case HTTP_RESP_TRAILERS:
			rc = head_line(p, in, &line, &n);
			if (rc != RB_OK) {
				return rc;
			}
			if (p->state == HTTP_RESP_STATUS) {
				rc = parse_status(p, line);
				free(line);
			} else if (p->state == HTTP_RESP_TRAILERS) {
				/* Trailers are not exposed; only the end matters. */
				if (n == 0) {
					p->state = HTTP_RESP_DONE;
				}
				free(line);
			} else if (n == 0) {
				free(line);
				rc = headers_done(p);
			} else {
				rc = parse_header(p, line);
			}
			if (rc != RB_OK) {
				return rc;
			}
			break;
		case HTTP_RESP_CHUNK_SIZE:
		case HTTP_RESP_CHUNK_END:
			rc = chunk_line(p, in, &line, &n);
			if (rc != RB_OK) {
				return rc;
			}
			if (p->state == HTTP_RESP_CHUNK_SIZE) {
				rc = parse_chunk_size(p, line);
			} else if (n != 0) {
				rc = proto_err(p, "missing CRLF after chunk data", line);
			} else {
				p->state = HTTP_RESP_CHUNK_SIZE;
			}
			free(line);
			if (rc != RB_OK) {
				return rc;
			}
			break;
		case HTTP_RESP_BODY_LEN:
		case HTTP_RESP_CHUNK_DATA:
			move_body(p, in);
			if (p->remaining) {
				return RB_EAGAIN;
			}
			p->state = p->state == HTTP_RESP_BODY_LEN ? HTTP_RESP_DONE
								  : HTTP_RESP_CHUNK_END;
			break;
		case HTTP_RESP_BODY_EOF:
			n = evbuffer_get_length(in);
			if (n > p->max_body - evbuffer_get_length(p->body)) {
				return too_big(p);
			}
			evbuffer_remove_buffer(in, p->body, n);
			return RB_EAGAIN;
		case HTTP_RESP_DONE:
			return RB_OK;
		}
	}
}

int http_resp_eof(struct http_resp *p)
{
	if (p->state == HTTP_RESP_BODY_EOF) {
		p->keepalive = false;
		p->state = HTTP_RESP_DONE;
		return RB_OK;
	}
	if (p->state == HTTP_RESP_DONE) {
		return RB_OK;
	}
	return proto_err(p, "connection closed before the end of the response", NULL);
}

const char *http_resp_header(const struct http_resp *p, const char *name)
{
	return find_header(p, name, false);
}

bool http_resp_keepalive(const struct http_resp *p)
{
	return p->keepalive;
}
