/*
 * sign.c - request signatures. The contract is in sign.h.
 */
#include "protocol/sign.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/rand.h>

#include "protocol/rb.h"

/* Outbound nonces are below 2^53: a JavaScript backend parses them exactly. */
#define NONCE_LIMIT (UINT64_C(1) << 53)

static void swap(const char **a, const char **b)
{
	const char *t = *a;

	*a = *b;
	*b = t;
}

void sign_v1(const char *token, const char *timestamp, const char *nonce,
	     char out[SIGN_V1_HEX_LEN + 1])
{
	const char *s[3] = { token ? token : "", timestamp ? timestamp : "",
			     nonce ? nonce : "" };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx;
	bool ok;
	int i;

	/*
	 * strcmp compares as unsigned char: the same order as the original's
	 * Python sort of UTF-8 strings (code point order is byte order).
	 */
	if (strcmp(s[0], s[1]) > 0)
		swap(&s[0], &s[1]);
	if (strcmp(s[1], s[2]) > 0)
		swap(&s[1], &s[2]);
	if (strcmp(s[0], s[1]) > 0)
		swap(&s[0], &s[1]);

	/* Hash the parts in turn rather than concatenating: no length cap. */
	out[0] = '\0';
	ctx = EVP_MD_CTX_new();
	if (ctx == NULL)
		return;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1;
	for (i = 0; ok && i < 3; i++)
		ok = EVP_DigestUpdate(ctx, s[i], strlen(s[i])) == 1;
	ok = ok && EVP_DigestFinal_ex(ctx, md, &mdlen) == 1;
	EVP_MD_CTX_free(ctx);
	if (ok && mdlen * 2 == SIGN_V1_HEX_LEN)
		rb_hex(md, mdlen, out);
}

int sign_v1_verify(const char *token, const char *timestamp, const char *nonce,
		   const char *signature, time_t now, int window)
{
	char expect[SIGN_V1_HEX_LEN + 1];
	int64_t n = (int64_t)now;
	uint64_t ts, skew;

	if (token == NULL || timestamp == NULL || nonce == NULL ||
	    signature == NULL || *timestamp == '\0' || *nonce == '\0' ||
	    *signature == '\0')
		return RB_EINVAL;
	/* A negative window must refuse everything, not wrap to "any time".
	 * Strict decimal: two different strings never sign as one time. */
	if (window < 0 || rb_parse_decs(timestamp, INT64_MAX, &ts) != RB_OK)
		return RB_ETIMEDOUT;
	/* Unsigned difference: exact for any two int64 values, no overflow. */
	if ((int64_t)ts >= n)
		skew = ts - (uint64_t)n;
	else
		skew = (uint64_t)n - ts;
	if (skew > (uint64_t)window)
		return RB_ETIMEDOUT;

	sign_v1(token, timestamp, nonce, expect);
	/*
	 * The length is public; only the content must not leak through timing.
	 * An empty expect (hash failure) never matches.
	 */
	if (expect[0] == '\0' || strlen(signature) != SIGN_V1_HEX_LEN ||
	    CRYPTO_memcmp(expect, signature, SIGN_V1_HEX_LEN) != 0)
		return RB_EINVAL;
	return RB_OK;
}

/* A random integer in 1 .. 2^53 - 1 from OpenSSL, or 0 if the RNG fails.
 * Masking 53 of 64 random bits keeps it uniform. */
static uint64_t random_nonce(void)
{
	unsigned char raw[8];
	uint64_t v;

	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return 0;
		v = 0;
		for (size_t i = 0; i < sizeof(raw); i++)
			v = v << 8 | raw[i];
		v &= NONCE_LIMIT - 1;
	} while (v == 0);
	return v;
}

int sign_v1_query(const char *token, time_t now, char *buf, size_t cap)
{
	char nonce[SIGN_V1_NONCE_MAX_DIGITS + 1];
	char ts[24];
	char sig[SIGN_V1_HEX_LEN + 1];
	uint64_t v;
	int n;

	assert(buf != NULL || cap == 0);
	if (cap > 0)
		buf[0] = '\0';
	if ((v = random_nonce()) == 0)
		return RB_EIO;
	snprintf(nonce, sizeof(nonce), "%llu", (unsigned long long)v);
	snprintf(ts, sizeof(ts), "%lld", (long long)now);
	sign_v1(token, ts, nonce, sig);
	if (sig[0] == '\0')
		return RB_EIO;
	n = snprintf(buf, cap, "timestamp=%s&nonce=%s&signature=%s", ts, nonce,
		     sig);
	if (n < 0)
		return RB_EIO;
	if ((size_t)n >= cap) {
		/* Never hand out a truncated query that looks plausible. */
		if (cap > 0)
			buf[0] = '\0';
		return RB_ETOOBIG;
	}
	return n;
}

int sign_secret_equal(const void *a, size_t alen, const void *b, size_t blen)
{
	unsigned char da[SHA256_DIGEST_LENGTH], db[SHA256_DIGEST_LENGTH];

	/* Hashing first makes the time independent of where, and whether, the
	 * lengths differ; then the digests are compared in constant time. */
	if (!SHA256(alen ? a : (const void *)"", alen, da) ||
	    !SHA256(blen ? b : (const void *)"", blen, db))
		return 0;
	return alen == blen && CRYPTO_memcmp(da, db, sizeof(da)) == 0;
}

/* ---- v2 ---- */

struct pair {
	const char *name, *value;
};

static int pair_cmp(const void *a, const void *b)
{
	const struct pair *x = a, *y = b;
	int c = strcmp(x->name, y->name);
	return c ? c : strcmp(x->value, y->value);
}

static size_t encode(const char *s, char *out, size_t cap, size_t o)
{
	static const char hex[] = "0123456789ABCDEF";
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			     (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_' ||
			     *p == '~';
		if (plain) {
			if (o + 1 < cap)
				out[o] = (char)*p;
			o++;
		} else {
			if (o + 3 < cap) {
				out[o] = '%';
				out[o + 1] = hex[*p >> 4];
				out[o + 2] = hex[*p & 15];
			}
			o += 3;
		}
	}
	return o;
}

int sign_v2_canonical_query(const char *const *names, const char *const *values, size_t n,
			    char *out, size_t cap)
{
	struct pair *v = malloc((n ? n : 1) * sizeof(*v));
	size_t m = 0, o = 0;

	if (!v || cap == 0) {
		free(v);
		return RB_ETOOBIG;
	}
	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], "signature") != 0)
			v[m++] = (struct pair){ names[i], values[i] };
	qsort(v, m, sizeof(*v), pair_cmp);
	for (size_t i = 0; i < m; i++) {
		if (i) {
			if (o + 1 < cap)
				out[o] = '&';
			o++;
		}
		o = encode(v[i].name, out, cap, o);
		if (o + 1 < cap)
			out[o] = '=';
		o++;
		o = encode(v[i].value, out, cap, o);
	}
	free(v);
	if (o >= cap) {
		out[0] = 0;
		return RB_ETOOBIG;
	}
	out[o] = 0;
	return (int)o;
}

int sign_v2(const char *token, const char *method, const char *path,
	    const char *canonical_query, const void *body, size_t body_len,
	    char out[SIGN_V2_HEX_LEN + 1])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	char body_hex[2 * 32 + 1];
	int rc = RB_EIO;

	out[0] = 0;
	if (!SHA256(body_len ? body : (const void *)"", body_len, md))
		return RB_EIO;
	rb_hex(md, 32, body_hex);
	size_t len = strlen(method) + strlen(path) + strlen(canonical_query) + sizeof(body_hex) + 4;
	char *msg = malloc(len);
	if (!msg)
		return RB_EIO;
	int n = snprintf(msg, len, "%s\n%s\n%s\n%s", method, path, canonical_query, body_hex);
	if (n > 0 && HMAC(EVP_sha256(), token ? token : "", (int)strlen(token ? token : ""),
			  (const unsigned char *)msg, (size_t)n, md, &mdlen) && mdlen == 32) {
		rb_hex(md, 32, out);
		rc = RB_OK;
	}
	free(msg);
	return rc;
}

int sign_equal(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}
