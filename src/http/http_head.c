#include "src/http/http_head.h"

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "protocol/rb.h"

int kv_add(struct kvlist *l, const char *name, size_t nlen, const char *value,
	   size_t vlen)
{
	if (l->n == l->cap) {
		size_t ncap = l->cap ? l->cap * 2 : 8;
		struct kv *nv = realloc(l->v, ncap * sizeof(*nv));
		if (!nv)
			return RB_ENOMEM;
		l->v = nv;
		l->cap = ncap;
	}
	char *n = strndup(name, nlen), *v = strndup(value, vlen);
	if (!n || !v) {
		free(n);
		free(v);
		return RB_ENOMEM;
	}
	l->v[l->n].name = n;
	l->v[l->n].value = v;
	l->n++;
	return RB_OK;
}

const char *kv_get(const struct kvlist *l, const char *name)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcasecmp(l->v[i].name, name) == 0)
			return l->v[i].value;
	return NULL;
}

void kv_free(struct kvlist *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].value);
	}
	free(l->v);
	memset(l, 0, sizeof(*l));
}

char *kv_serialize(const struct kvlist *l)
{
	size_t len = 1;
	for (size_t i = 0; i < l->n; i++)
		len += strlen(l->v[i].name) + strlen(l->v[i].value) + 3;
	char *s = malloc(len), *p = s;
	if (!s)
		return NULL;
	for (size_t i = 0; i < l->n; i++) {
		size_t a = strlen(l->v[i].name), b = strlen(l->v[i].value);
		memcpy(p, l->v[i].name, a);
		p += a;
		*p++ = ':';
		*p++ = ' ';
		memcpy(p, l->v[i].value, b);
		p += b;
		*p++ = '\n';
	}
	*p = 0;
	return s;
}

int kv_deserialize(struct kvlist *l, const char *s)
{
	while (s && *s) {
		const char *eol = strchr(s, '\n');
		const char *colon = strstr(s, ": ");
		if (!eol)
			eol = s + strlen(s);
		if (colon && colon < eol &&
		    kv_add(l, s, (size_t)(colon - s), colon + 2, (size_t)(eol - colon - 2)))
			return RB_ENOMEM;
		s = *eol ? eol + 1 : eol;
	}
	return RB_OK;
}

size_t http_head_len(const char *buf, size_t len)
{
	for (size_t i = 0; i + 1 < len; i++) {
		if (buf[i] != '\n')
			continue;
		if (buf[i + 1] == '\n')
			return i + 2;
		if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static bool is_tchar(unsigned char ch)
{
	return isalnum(ch) || (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* A NUL or a CR not ending the line: parsers disagree on both. */
static bool bad_bytes(const char *p, const char *eol)
{
	return memchr(p, '\0', (size_t)(eol - p)) || memchr(p, '\r', (size_t)(eol - p));
}

static const char *line_end(const char *p, const char *end, const char **next)
{
	const char *nl = memchr(p, '\n', (size_t)(end - p));
	if (!nl)
		return NULL;
	*next = nl + 1;
	return nl > p && nl[-1] == '\r' ? nl - 1 : nl;
}

int http_head_parse(const char *buf, size_t len, struct http_head *out)
{
	const char *p = buf, *end = buf + len, *next, *eol;
	int rc = RB_EPROTO;

	memset(out, 0, sizeof(*out));
	eol = line_end(p, end, &next);
	if (!eol)
		goto fail;
	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	if (bad_bytes(p, eol))
		goto fail;
	const char *sp1 = memchr(p, ' ', (size_t)(eol - p));
	if (!sp1 || sp1 == p)
		goto fail;
	for (const char *m = p; m < sp1; m++)
		if (!is_tchar((unsigned char)*m))
			goto fail;
	const char *target = sp1 + 1;
	const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
	if (!sp2 || sp2 == target || eol - sp2 != 9 || strncmp(sp2 + 1, "HTTP/1.", 7) ||
	    !isdigit((unsigned char)sp2[8]))
		goto fail;
	out->minor = sp2[8] - '0';
	const char *q = memchr(target, '?', (size_t)(sp2 - target));
	rc = RB_ENOMEM;
	out->method = strndup(p, (size_t)(sp1 - p));
	out->path = strndup(target, (size_t)((q ? q : sp2) - target));
	out->query = q ? strndup(q + 1, (size_t)(sp2 - q - 1)) : strdup("");
	if (!out->method || !out->path || !out->query)
		goto fail;
	rc = RB_EPROTO;
	for (p = next; p < end; p = next) {
		eol = line_end(p, end, &next);
		if (!eol)
			goto fail;
		if (eol == p)
			return RB_OK; /* blank line: end of head */
		if (*p == ' ' || *p == '\t')
			goto fail; /* obsolete line folding: refuse rather than guess */
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p || bad_bytes(p, eol))
			goto fail;
		for (const char *n = p; n < colon; n++)
			if (!is_tchar((unsigned char)*n))
				goto fail;
		const char *v = colon + 1, *ve = eol;
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		if (kv_add(&out->headers, p, (size_t)(colon - p), v, (size_t)(ve - v))) {
			rc = RB_ENOMEM;
			goto fail;
		}
	}
fail:
	http_head_free(out);
	return rc;
}

void http_head_free(struct http_head *h)
{
	free(h->method);
	free(h->path);
	free(h->query);
	kv_free(&h->headers);
	memset(h, 0, sizeof(*h));
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static char *url_decode(const char *s, size_t len)
{
	char *out = malloc(len + 1), *o = out;
	if (!out)
		return NULL;
	for (size_t i = 0; i < len; i++) {
		int hi, lo;
		if (s[i] == '+') {
			*o++ = ' ';
		} else if (s[i] == '%' && i + 2 < len && (hi = hexval(s[i + 1])) >= 0 &&
			   (lo = hexval(s[i + 2])) >= 0) {
			*o++ = (char)(hi << 4 | lo);
			i += 2;
		} else {
			*o++ = s[i];
		}
	}
	*o = 0;
	return out;
}

int query_parse(const char *q, struct kvlist *l)
{
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t len = amp ? (size_t)(amp - q) : strlen(q);
		if (len) {
			const char *eq = memchr(q, '=', len);
			size_t nlen = eq ? (size_t)(eq - q) : len;
			char *n = url_decode(q, nlen);
			char *v = eq ? url_decode(eq + 1, len - nlen - 1) : strdup("");
			int rc = n && v ? kv_add(l, n, strlen(n), v, strlen(v)) : RB_ENOMEM;
			free(n);
			free(v);
			if (rc)
				return rc;
		}
		q = amp ? amp + 1 : NULL;
	}
	return RB_OK;
}

bool header_next_token(const char **p, const char **tok, size_t *len)
{
	const char *s = *p;

	while (*s == ' ' || *s == '\t' || *s == ',')
		s++;
	*p = s;
	if (!*s)
		return false;
	/* s is neither blank nor comma: the element is not empty. */
	const char *e = s;
	while (*e && *e != ',')
		e++;
	size_t n = (size_t)(e - s);
	while (s[n - 1] == ' ' || s[n - 1] == '\t')
		n--;
	*p = e;
	*tok = s;
	*len = n;
	return true;
}

static bool token_is(const char *t, size_t len, const char *token)
{
	return len == strlen(token) && strncasecmp(t, token, len) == 0;
}

int header_has_token(const char *value, const char *token)
{
	const char *t;
	size_t len;

	while (value && header_next_token(&value, &t, &len))
		if (token_is(t, len, token))
			return 1;
	return 0;
}

bool header_last_token_is(const char *value, const char *token)
{
	const char *t = NULL;
	size_t len = 0;

	while (value && header_next_token(&value, &t, &len))
		;
	return t && token_is(t, len, token);
}

bool http_is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (!is_tchar((unsigned char)*s))
			return false;
	return true;
}

/* Each element of a Content-Length list ("5" or "5, 5"): 1*DIGIT, all equal.
 * *seen says whether an earlier header already set *len. */
static enum http_body content_length(const char *v, uint64_t *len, bool *seen)
{
	const char *p = v;
	do {
		while (*p == ' ' || *p == '\t')
			p++;
		size_t digits = strspn(p, "0123456789");
		uint64_t n;
		if (rb_parse_dec(p, digits, UINT64_MAX, &n) != RB_OK)
			return HTTP_BODY_BAD_LENGTH;
		p += digits;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p && *p != ',')
			return HTTP_BODY_BAD_LENGTH;
		if (*seen && n != *len)
			return HTTP_BODY_CONFLICT;
		*len = n;
		*seen = true;
	} while (*p++ == ',');
	return HTTP_BODY_LENGTH;
}

enum http_body http_body_framing(const struct http_head *h, uint64_t *len)
{
	const struct kvlist *l = &h->headers;
	enum http_body cl = HTTP_BODY_NONE;
	bool seen = false;
	size_t te = 0, chunked = 0;

	*len = 0;
	for (size_t i = 0; i < l->n; i++) {
		const char *v = l->v[i].value;
		if (strcasecmp(l->v[i].name, "Transfer-Encoding") == 0) {
			te++;
			if (strcasecmp(v, "chunked") == 0)
				chunked++;
		} else if (strcasecmp(l->v[i].name, "Content-Length") == 0 &&
			   (cl == HTTP_BODY_NONE || cl == HTTP_BODY_LENGTH)) {
			cl = content_length(v, len, &seen);
		}
	}
	if (te && cl != HTTP_BODY_NONE) {
		*len = 0;
		return HTTP_BODY_AMBIGUOUS;
	}
	if (te)
		return te == 1 && chunked == 1 ? HTTP_BODY_CHUNKED : HTTP_BODY_BAD_CODING;
	if (cl != HTTP_BODY_LENGTH)
		*len = 0;
	return cl;
}

const char *http_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 101: return "Switching Protocols";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 426: return "Upgrade Required";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Unknown";
}
