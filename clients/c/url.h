/*
 * url.h - URL pieces of the client (librainbow): parsing ws://, wss://,
 * http:// and https:// URLs, and appending percent-encoded query arguments.
 * Pure: no I/O, no allocation; any thread.
 */
#ifndef RBC_URL_H
#define RBC_URL_H

#include <stdbool.h>
#include <stddef.h>

#define RBC_URL_HOST_MAX 256
#define RBC_URL_PATH_MAX 2048

struct rbc_url {
	bool ws;                       /* ws:// or wss:// (else http:// or https://) */
	bool tls;                      /* wss:// or https:// */
	int port;                      /* explicit, or 80 / 443 by scheme */
	char host[RBC_URL_HOST_MAX];   /* an IPv6 literal without its brackets */
	char path[RBC_URL_PATH_MAX];   /* path and query as written ("" if none);
	                                * a #fragment is dropped */
};

/*
 * Parse scheme://host[:port][/path][?query][#fragment]. The scheme is one of
 * ws, wss, http, https (any case). Refused (RB_EINVAL): another scheme, no
 * "//", an empty host, user info ("user@"), a port that is not 1..65535
 * digits, an unclosed "[", a space or control character anywhere. RB_ETOOBIG
 * when the host or path does not fit. *u is only valid on RB_OK.
 */
int rbc_url_parse(const char *s, struct rbc_url *u);

/*
 * Percent-encode in (RFC 3986: every byte but A-Z a-z 0-9 - . _ ~ as %XX,
 * uppercase hex) into out[0..cap), NUL-terminated. Returns the length, or
 * RB_ETOOBIG (out is then "" when cap > 0).
 */
int rbc_pct_encode(const char *in, char *out, size_t cap);

/*
 * Append name=value (both percent-encoded) to the path-and-query in
 * buf[0..cap), with '?' when buf has no query yet, else '&' (none after a
 * trailing '?' or '&'). RB_OK, or RB_ETOOBIG with buf unchanged.
 */
int rbc_query_add(char *buf, size_t cap, const char *name, const char *value);

#endif
