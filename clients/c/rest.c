/*
 * rest.c - see rest.h.
 */
#include "clients/c/rest.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clients/c/url.h"
#include "protocol/rb.h"
#include "protocol/sign.h"

void rb_http_resp_free(struct rb_http_resp *r)
{
	if (!r)
		return;
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

static const uint8_t *find_crlf(const uint8_t *p, const uint8_t *end)
{
	for (; p + 1 < end; p++)
		if (p[0] == '\r' && p[1] == '\n')
			return p;
	return NULL;
}

/* Chunked body in p[0..end): RB_OK with the decoded bytes in *out. */
static int dechunk(const uint8_t *p, const uint8_t *end, bool eof, char **out, size_t *olen)
{
	size_t cap = 0, len = 0;
	char *buf = NULL;

	for (;;) {
		const uint8_t *eol = find_crlf(p, end);
		uint64_t size = 0;
		const uint8_t *q;
		if (!eol)
			goto again;
		for (q = p; q < eol && *q != ';'; q++) {
			int d = (*q >= '0' && *q <= '9') ? *q - '0' :
				(*q >= 'a' && *q <= 'f') ? *q - 'a' + 10 :
				(*q >= 'A' && *q <= 'F') ? *q - 'A' + 10 : -1;
			if (d < 0 || size > RBC_HTTP_MAX_BODY)
				goto proto;
			size = size * 16 + (uint64_t)d;
		}
		if (q == p)
			goto proto;
		p = eol + 2;
		if (size == 0) {
			/* trailers up to an empty line */
			for (;;) {
				eol = find_crlf(p, end);
				if (!eol)
					goto again;
				if (eol == p)
					break;
				p = eol + 2;
			}
			break;
		}
		if (len + size > RBC_HTTP_MAX_BODY) {
			free(buf);
			return RB_ETOOBIG;
		}
		if ((size_t)(end - p) < size + 2)
			goto again;
		if (p[size] != '\r' || p[size + 1] != '\n')
			goto proto;
		if (len + size + 1 > cap) {
			size_t ncap = (len + size + 1) * 2;
			char *n = realloc(buf, ncap);
			if (!n) {
				free(buf);
				return RB_ENOMEM;
			}
			buf = n;
			cap = ncap;
		}
		memcpy(buf + len, p, size);
		len += size;
		p += size + 2;
	}
	if (!buf && !(buf = malloc(1)))
		return RB_ENOMEM;
	buf[len] = '\0';
	*out = buf;
	*olen = len;
	return RB_OK;
again:
	free(buf);
	return eof ? RB_EPROTO : RB_EAGAIN;
proto:
	free(buf);
	return RB_EPROTO;
}

int rbc_http_parse(const uint8_t *buf, size_t len, bool eof, struct rb_http_resp *r)
{
	const uint8_t *end = buf + len, *p, *eol, *body = NULL;
	bool chunked = false, have_len = false;
	uint64_t clen = 0;
	int status = 0;

	memset(r, 0, sizeof(*r));
	/* the head ends at the first empty line */
	for (p = buf; (eol = find_crlf(p, end)); p = eol + 2) {
		if (eol == p) {
			body = eol + 2;
			break;
		}
	}
	if (!body)
		return eof ? RB_EPROTO : RB_EAGAIN;
	eol = find_crlf(buf, end);
	if (eol - buf < 12 || memcmp(buf, "HTTP/1.", 7) || buf[8] != ' ')
		return RB_EPROTO;
	for (int i = 9; i < 12; i++) {
		if (buf[i] < '0' || buf[i] > '9')
			return RB_EPROTO;
		status = status * 10 + (buf[i] - '0');
	}
	if (eol - buf > 12 && buf[12] != ' ')
		return RB_EPROTO;
	for (p = eol + 2; p < body - 2; p = eol + 2) {
		const uint8_t *colon, *v, *ve;
		size_t nlen;
		eol = find_crlf(p, end);
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p)
			return RB_EPROTO;
		nlen = (size_t)(colon - p);
		for (v = colon + 1; v < eol && (*v == ' ' || *v == '\t'); v++)
			;
		for (ve = eol; ve > v && (ve[-1] == ' ' || ve[-1] == '\t'); ve--)
			;
		if (nlen == 14 && !strncasecmp((const char *)p, "Content-Length", 14)) {
			uint64_t n;
			if (rb_parse_dec((const char *)v, (size_t)(ve - v), UINT64_MAX, &n) != RB_OK)
				return RB_EPROTO;
			if (have_len && n != clen)
				return RB_EPROTO;
			have_len = true;
			clen = n;
		} else if (nlen == 17 && !strncasecmp((const char *)p, "Transfer-Encoding", 17)) {
			/* only "chunked" (last) is understood */
			size_t vl = (size_t)(ve - v);
			if (vl >= 7 && !strncasecmp((const char *)ve - 7, "chunked", 7))
				chunked = true;
			else
				return RB_EPROTO;
		} else if (nlen == 12 && !strncasecmp((const char *)p, "Content-Type", 12)) {
			size_t vl = (size_t)(ve - v);
			if (vl >= sizeof(r->content_type))
				vl = sizeof(r->content_type) - 1;
			memcpy(r->content_type, v, vl);
			r->content_type[vl] = '\0';
		}
	}
	r->status = status;
	if (status < 200 || status == 204 || status == 304) {
		r->body = calloc(1, 1);
		return r->body ? RB_OK : RB_ENOMEM;
	}
	if (chunked) {
		int rc = dechunk(body, end, eof, &r->body, &r->body_len);
		return rc;
	}
	if (have_len) {
		if (clen > RBC_HTTP_MAX_BODY)
			return RB_ETOOBIG;
		if ((uint64_t)(end - body) < clen)
			return eof ? RB_EPROTO : RB_EAGAIN;
		r->body_len = (size_t)clen;
	} else {
		if (!eof)
			return RB_EAGAIN;
		if ((size_t)(end - body) > RBC_HTTP_MAX_BODY)
			return RB_ETOOBIG;
		r->body_len = (size_t)(end - body);
	}
	r->body = malloc(r->body_len + 1);
	if (!r->body)
		return RB_ENOMEM;
	memcpy(r->body, body, r->body_len);
	r->body[r->body_len] = '\0';
	return RB_OK;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		int64_t left = deadline - now_ms();
		int n;
		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, left > 1000000 ? 1000000 : (int)left);
		if (n > 0)
			return 1;
		if (n == 0)
			continue;
		if (errno != EINTR)
			return -1;
	}
}

static int dial(const char *host, int port, int64_t deadline, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC };
	struct addrinfo *res = NULL, *ai;
	char ports[8];
	int fd = -1, rc, last = 0;

	snprintf(ports, sizeof(ports), "%d", port);
	rc = getaddrinfo(host, ports, &hints, &res);
	if (rc) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
			    ai->ai_protocol);
		if (fd < 0) {
			last = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		if (errno == EINPROGRESS) {
			int w = wait_fd(fd, POLLOUT, deadline), e = 0;
			socklen_t el = sizeof(e);
			if (w == 1 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) == 0 && e == 0)
				break;
			last = w == 0 ? ETIMEDOUT : (e ? e : errno);
		} else {
			last = errno;
		}
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0)
		snprintf(err, errlen, "cannot connect to %s:%d: %s", host, port, strerror(last));
	return fd;
}

int rb_http_request(const char *url, const char *method, const char *target,
		    const char *headers, const void *body, size_t len, int timeout_ms,
		    struct rb_http_resp *r, char *err, size_t errlen)
{
	struct rbc_url u;
	int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
	char *req = NULL;
	uint8_t *in = NULL;
	size_t in_len = 0, in_cap = 0, prefix;
	int fd = -1, rc, n;
	bool v6;

	memset(r, 0, sizeof(*r));
	if (rbc_url_parse(url, &u) != RB_OK) {
		snprintf(err, errlen, "bad URL %s", url);
		return RB_EINVAL;
	}
	if (u.tls) {
		snprintf(err, errlen, "%s: TLS is not supported for REST calls (the gateway "
			 "serves them on its plain port)", url);
		return RB_EINVAL;
	}
	if (u.ws)
		u.path[0] = '\0'; /* a ws:// URL's path is the WebSocket's */
	u.path[strcspn(u.path, "?")] = '\0';
	prefix = strlen(u.path);
	while (prefix && u.path[prefix - 1] == '/')
		prefix--;
	u.path[prefix] = '\0';
	v6 = strchr(u.host, ':') != NULL;
	{
		const char *m = method ? method : "GET";
		bool send_len = len || !strcmp(m, "POST") || !strcmp(m, "PUT");
		size_t cap = strlen(m) + strlen(u.path) + strlen(target) + strlen(u.host) +
			     (headers ? strlen(headers) : 0) + 256;
		req = malloc(cap + len);
		if (!req) {
			snprintf(err, errlen, "out of memory");
			return RB_ENOMEM;
		}
		n = snprintf(req, cap, "%s %s%s HTTP/1.1\r\nHost: %s%s%s:%d\r\n"
			     "User-Agent: rainbow-cli\r\nConnection: close\r\n",
			     m, u.path, target, v6 ? "[" : "", u.host, v6 ? "]" : "", u.port);
		if (send_len)
			n += snprintf(req + n, cap - (size_t)n, "Content-Length: %zu\r\n", len);
		n += snprintf(req + n, cap - (size_t)n, "%s\r\n", headers ? headers : "");
		if (len)
			memcpy(req + n, body, len);
		n += (int)len;
	}
	fd = dial(u.host, u.port, deadline, err, errlen);
	if (fd < 0) {
		rc = RB_EIO;
		goto out;
	}
	for (size_t off = 0; off < (size_t)n;) {
		ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
		if (w > 0) {
			off += (size_t)w;
			continue;
		}
		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			int ok = wait_fd(fd, POLLOUT, deadline);
			if (ok == 1)
				continue;
			rc = ok == 0 ? RB_ETIMEDOUT : RB_EIO;
			snprintf(err, errlen, "%s", ok == 0 ? "timed out writing the request"
							     : strerror(errno));
			goto out;
		}
		rc = RB_EIO;
		snprintf(err, errlen, "write: %s", strerror(errno));
		goto out;
	}
	for (;;) {
		ssize_t got;
		bool eof = false;
		if (in_cap - in_len < 4096) {
			size_t ncap = in_cap ? in_cap * 2 : 8192;
			uint8_t *nb = realloc(in, ncap);
			if (!nb) {
				rc = RB_ENOMEM;
				snprintf(err, errlen, "out of memory");
				goto out;
			}
			in = nb;
			in_cap = ncap;
		}
		got = recv(fd, in + in_len, in_cap - in_len, 0);
		if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
			int ok = wait_fd(fd, POLLIN, deadline);
			if (ok == 1)
				continue;
			rc = ok == 0 ? RB_ETIMEDOUT : RB_EIO;
			snprintf(err, errlen, "%s", ok == 0 ? "timed out waiting for the answer"
							     : strerror(errno));
			goto out;
		}
		if (got < 0) {
			rc = RB_EIO;
			snprintf(err, errlen, "read: %s", strerror(errno));
			goto out;
		}
		if (got == 0)
			eof = true;
		in_len += (size_t)got;
		rc = rbc_http_parse(in, in_len, eof, r);
		if (rc == RB_OK)
			goto out;
		if (rc != RB_EAGAIN) {
			snprintf(err, errlen, "%s", eof && in_len == 0 ? "connection closed without an answer"
				 : rc == RB_ETOOBIG ? "answer too big" : "malformed HTTP answer");
			goto out;
		}
		if (in_len > RBC_HTTP_MAX_BODY + 65536) {
			rc = RB_ETOOBIG;
			snprintf(err, errlen, "answer too big");
			goto out;
		}
	}
out:
	if (fd >= 0)
		close(fd);
	free(req);
	free(in);
	return rc;
}

int rb_rest_call(const char *url, const char *method, const char *path, const char *query,
		 const char *token, const char *headers, const void *body, size_t len,
		 int timeout_ms, struct rb_http_resp *r, char *err, size_t errlen)
{
	char sig[128];
	char *target;
	size_t cap;
	int rc;

	sig[0] = '\0';
	if (token) {
		rc = sign_v1_query(token, time(NULL), sig, sizeof(sig));
		if (rc < 0) {
			snprintf(err, errlen, "cannot sign: %s", rb_strerror(rc));
			memset(r, 0, sizeof(*r));
			return rc;
		}
	}
	if (!query)
		query = "";
	cap = strlen(path) + strlen(query) + strlen(sig) + 4;
	target = malloc(cap);
	if (!target) {
		snprintf(err, errlen, "out of memory");
		memset(r, 0, sizeof(*r));
		return RB_ENOMEM;
	}
	snprintf(target, cap, "%s%s%s%s%s", path, *query || *sig ? "?" : "", query,
		 *query && *sig ? "&" : "", sig);
	rc = rb_http_request(url, method, target, headers, body, len, timeout_ms, r, err, errlen);
	free(target);
	return rc;
}
