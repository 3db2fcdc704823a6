/*
 * sign.c - request signatures. The contract is in sign.h.
 */
#include "protocol/sign.h"

#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "protocol/rb.h"

#define NONCE_BYTES 8

static void hex_lower(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

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
		hex_lower(md, mdlen, out);
}

/*
 * Strict decimal: digits only, no sign, no blanks, no overflow. Anything
 * looser (strtoll's leading spaces, "+", trailing junk) would let two
 * different strings sign as the same time.
 */
static bool parse_time(const char *s, int64_t *out)
{
	int64_t v = 0;

	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (v > (INT64_MAX - (*s - '0')) / 10)
			return false;
		v = v * 10 + (*s - '0');
	}
	*out = v;
	return true;
}

int sign_v1_verify(const char *token, const char *timestamp, const char *nonce,
		   const char *signature, time_t now, int window)
{
	char expect[SIGN_V1_HEX_LEN + 1];
	int64_t ts, n = (int64_t)now;
	uint64_t skew;

	if (token == NULL || timestamp == NULL || nonce == NULL ||
	    signature == NULL || *timestamp == '\0' || *nonce == '\0' ||
	    *signature == '\0')
		return RB_EINVAL;
	/* A negative window must refuse everything, not wrap to "any time". */
	if (window < 0 || !parse_time(timestamp, &ts))
		return RB_ETIMEDOUT;
	/* Unsigned difference: exact for any two int64 values, no overflow. */
	if (ts >= n)
		skew = (uint64_t)ts - (uint64_t)n;
	else
		skew = (uint64_t)n - (uint64_t)ts;
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

int sign_v1_query(const char *token, time_t now, char *buf, size_t cap)
{
	unsigned char raw[NONCE_BYTES];
	char nonce[2 * NONCE_BYTES + 1];
	char ts[24];
	char sig[SIGN_V1_HEX_LEN + 1];
	int n;

	assert(buf != NULL || cap == 0);
	if (cap > 0)
		buf[0] = '\0';
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return RB_EIO;
	hex_lower(raw, sizeof(raw), nonce);
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
