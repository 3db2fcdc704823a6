/*
 * url.c - see url.h.
 */
#include "clients/c/url.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "protocol/rb.h"

static bool bad_char(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f)
			return true;
	return false;
}

int rbc_url_parse(const char *s, struct rbc_url *u)
{
	static const struct { const char *name; bool ws, tls; int port; } schemes[] = {
		{ "ws", true, false, 80 }, { "wss", true, true, 443 },
		{ "http", false, false, 80 }, { "https", false, true, 443 },
	};
	const char *p, *auth, *end, *hend;
	size_t n, i;

	if (!s || !u || bad_char(s))
		return RB_EINVAL;
	memset(u, 0, sizeof(*u));
	p = strstr(s, "://");
	if (!p)
		return RB_EINVAL;
	n = (size_t)(p - s);
	for (i = 0; i < RB_ARRAY_LEN(schemes); i++)
		if (strlen(schemes[i].name) == n && !strncasecmp(s, schemes[i].name, n))
			break;
	if (i == RB_ARRAY_LEN(schemes))
		return RB_EINVAL;
	u->ws = schemes[i].ws;
	u->tls = schemes[i].tls;
	u->port = schemes[i].port;

	auth = p + 3;
	end = auth + strcspn(auth, "/?#");
	if (memchr(auth, '@', (size_t)(end - auth)))
		return RB_EINVAL;
	if (*auth == '[') {
		hend = memchr(auth, ']', (size_t)(end - auth));
		if (!hend)
			return RB_EINVAL;
		n = (size_t)(hend - auth - 1);
		if (n == 0 || n >= sizeof(u->host))
			return n ? RB_ETOOBIG : RB_EINVAL;
		memcpy(u->host, auth + 1, n);
		hend++;
		if (hend != end && *hend != ':')
			return RB_EINVAL;
	} else {
		hend = memchr(auth, ':', (size_t)(end - auth));
		if (!hend)
			hend = end;
		n = (size_t)(hend - auth);
		if (n == 0)
			return RB_EINVAL;
		if (n >= sizeof(u->host))
			return RB_ETOOBIG;
		memcpy(u->host, auth, n);
	}
	if (hend != end) { /* ':' port */
		uint64_t port;
		if (rb_parse_dec(hend + 1, (size_t)(end - hend - 1), 65535, &port) != RB_OK ||
		    port == 0)
			return RB_EINVAL;
		u->port = (int)port;
	}
	n = strcspn(end, "#");
	if (n >= sizeof(u->path))
		return RB_ETOOBIG;
	memcpy(u->path, end, n);
	u->path[n] = '\0';
	return RB_OK;
}

int rbc_pct_encode(const char *in, char *out, size_t cap)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (; *in; in++) {
		unsigned char ch = (unsigned char)*in;
		bool plain = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
			     (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
			     ch == '_' || ch == '~';
		size_t need = plain ? 1 : 3;
		if (o + need >= cap) {
			if (cap)
				out[0] = '\0';
			return RB_ETOOBIG;
		}
		if (plain) {
			out[o++] = (char)ch;
		} else {
			out[o++] = '%';
			out[o++] = hex[ch >> 4];
			out[o++] = hex[ch & 15];
		}
	}
	if (o >= cap)
		return RB_ETOOBIG;
	out[o] = '\0';
	return (int)o;
}

int rbc_query_add(char *buf, size_t cap, const char *name, const char *value)
{
	size_t len = strlen(buf), o = len;
	int n;

	if (!strchr(buf, '?')) {
		if (o + 1 >= cap)
			return RB_ETOOBIG;
		buf[o++] = '?';
	} else if (len && buf[len - 1] != '?' && buf[len - 1] != '&') {
		if (o + 1 >= cap)
			return RB_ETOOBIG;
		buf[o++] = '&';
	}
	n = rbc_pct_encode(name, buf + o, cap - o);
	if (n < 0)
		goto toobig;
	o += (size_t)n;
	if (o + 1 >= cap)
		goto toobig;
	buf[o++] = '=';
	n = rbc_pct_encode(value ? value : "", buf + o, cap - o);
	if (n < 0)
		goto toobig;
	return RB_OK;
toobig:
	buf[len] = '\0';
	return RB_ETOOBIG;
}
