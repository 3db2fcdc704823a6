/*
 * token.c - connection tokens (HS256 JWTs). The contract is in token.h.
 */
#include "protocol/token.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "protocol/rb.h"

static const char b64url[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int b64url_value(unsigned char ch)
{
	const char *p = ch ? strchr(b64url, ch) : NULL;
	return p ? (int)(p - b64url) : -1;
}

/* Strict base64url without padding (RFC 7515 2): n chars into out (at
 * least n * 3 / 4 bytes). The decoded length, or -1 for a bad character,
 * a length of 1 mod 4, or non-zero bits left over. */
static long b64url_decode(const char *in, size_t n, unsigned char *out)
{
	uint32_t acc = 0;
	int bits = 0;
	long k = 0;

	if (n % 4 == 1)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int v = b64url_value((unsigned char)in[i]);
		if (v < 0)
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			out[k++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	return acc ? -1 : k;
}

static size_t b64url_encode(const unsigned char *in, size_t n, char *out)
{
	size_t k = 0;
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[k++] = b64url[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[k++] = b64url[(acc << (6 - bits)) & 63];
	out[k] = 0;
	return k;
}

/* A JSON object from a base64url part; NULL if it is not one. */
static json_t *part_json(const char *p, size_t n)
{
	unsigned char *buf = malloc(n * 3 / 4 + 1);
	long len = buf ? b64url_decode(p, n, buf) : -1;
	json_t *j = len >= 0 ? json_loadb((const char *)buf, (size_t)len, JSON_REJECT_DUPLICATES,
					  NULL) : NULL;
	free(buf);
	if (j && !json_is_object(j)) {
		json_decref(j);
		j = NULL;
	}
	return j;
}

void token_claims_free(struct token_claims *c)
{
	if (!c)
		return;
	free(c->sub);
	free(c->info);
	for (size_t i = 0; i < c->n_channels; i++)
		free(c->channels[i]);
	free(c->channels);
	memset(c, 0, sizeof(*c));
}

static const char *check_header(json_t *h)
{
	json_t *alg = json_object_get(h, "alg"), *typ = json_object_get(h, "typ");
	if (!json_is_string(alg) || strcmp(json_string_value(alg), "HS256") != 0)
		return "token alg must be HS256";
	if (typ && (!json_is_string(typ) || strcmp(json_string_value(typ), "JWT") != 0))
		return "token typ must be JWT";
	if (json_object_get(h, "crit"))
		return "token has unsupported crit header";
	return NULL;
}

/* The claims into out; NULL or why not. */
static const char *take_claims(json_t *p, int64_t now, int leeway, struct token_claims *out)
{
	json_t *sub = json_object_get(p, "sub"), *exp = json_object_get(p, "exp");
	json_t *nbf = json_object_get(p, "nbf"), *info = json_object_get(p, "info");
	json_t *chans = json_object_get(p, "channels");

	if (!json_is_string(sub) || !json_string_length(sub) ||
	    json_string_length(sub) > TOKEN_SUB_MAX || strlen(json_string_value(sub)) !=
							  json_string_length(sub))
		return "token has no valid sub";
	if (!json_is_number(exp))
		return "token has no exp";
	if (!(json_number_value(exp) + leeway > (double)now)) /* also NaN */
		return "token expired";
	if (nbf && (!json_is_number(nbf) || json_number_value(nbf) - leeway > (double)now))
		return "token not yet valid";
	if (chans && (!json_is_array(chans) || json_array_size(chans) > TOKEN_CHANNELS_MAX))
		return "token channels must be an array of at most 64 names";
	size_t i;
	json_t *ch;
	json_array_foreach(chans, i, ch)
		if (!json_is_string(ch) || !json_string_length(ch) ||
		    strlen(json_string_value(ch)) != json_string_length(ch))
			return "token channels must be non-empty strings";

	out->sub = strdup(json_string_value(sub));
	/* A number past what int64 holds (or not finite) is the far future:
	 * cast as it is, it would be undefined behaviour. */
	double e = json_number_value(exp);
	out->exp = e < 9.0e18 ? (int64_t)e : INT64_C(9000000000000000000);
	out->info = info ? json_dumps(info, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
	out->n_channels = json_array_size(chans);
	out->channels = calloc(out->n_channels ? out->n_channels : 1, sizeof(char *));
	bool ok = out->sub && (!info || out->info) && out->channels;
	json_array_foreach(chans, i, ch)
		if (ok && !(out->channels[i] = strdup(json_string_value(ch))))
			ok = false;
	return ok ? NULL : "out of memory";
}

int token_verify(const char *token, const char *secret, int64_t now, int leeway,
		 struct token_claims *out, const char **why)
{
	const char *d1, *d2;
	json_t *h = NULL, *p = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE], sig[64];
	unsigned int mac_len = 0;
	const char *bad = NULL;

	memset(out, 0, sizeof(*out));
	size_t n = token ? strlen(token) : 0;
	if (!n || n > TOKEN_MAX_LEN || !(d1 = strchr(token, '.')) || !(d2 = strchr(d1 + 1, '.')) ||
	    strchr(d2 + 1, '.')) {
		bad = "malformed token";
		goto out;
	}
	if (!(h = part_json(token, (size_t)(d1 - token))) ||
	    !(p = part_json(d1 + 1, (size_t)(d2 - d1 - 1)))) {
		bad = "malformed token";
		goto out;
	}
	if ((bad = check_header(h)))
		goto out;
	/* The signature before any claim is believed. */
	size_t sl = strlen(d2 + 1);
	long got = sl <= 86 ? b64url_decode(d2 + 1, sl, sig) : -1;
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)token,
		  (size_t)(d2 - token), mac, &mac_len)) {
		bad = "out of memory";
		goto out;
	}
	if (got != (long)mac_len || CRYPTO_memcmp(sig, mac, mac_len) != 0) {
		bad = "bad token signature";
		goto out;
	}
	bad = take_claims(p, now, leeway, out);
out:
	json_decref(h);
	json_decref(p);
	if (bad)
		token_claims_free(out);
	if (why)
		*why = bad;
	return !bad ? RB_OK : strcmp(bad, "out of memory") == 0 ? RB_ENOMEM : RB_EREFUSED;
}

int token_make(const char *claims_json, const char *secret, char *out, size_t cap)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	size_t cl = claims_json ? strlen(claims_json) : 0;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int mac_len = 0;

	if (!claims_json || !secret)
		return RB_EINVAL;
	size_t need = (sizeof(header) - 1 + cl + 32) * 4 / 3 + 8;
	if (cap < need)
		return RB_ETOOBIG;
	size_t k = b64url_encode((const unsigned char *)header, sizeof(header) - 1, out);
	out[k++] = '.';
	k += b64url_encode((const unsigned char *)claims_json, cl, out + k);
	if (!HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)out, k, mac,
		  &mac_len))
		return RB_EIO;
	out[k++] = '.';
	k += b64url_encode(mac, mac_len, out + k);
	return (int)k;
}
