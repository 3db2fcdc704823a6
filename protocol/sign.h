/*
 * sign.h - request signatures (docs/protocol.md Signatures). Pure apart from OpenSSL's
 * hash and random functions; any thread may call it.
 *
 * v1: signature = hex(sha1(concat(sorted([token, timestamp, nonce]))))
 *     where sorted is plain byte-wise (strcmp) order, hex is lowercase.
 *     Sent as query arguments timestamp, nonce, signature.
 */
#ifndef RB_SIGN_H
#define RB_SIGN_H

#include <stddef.h>
#include <time.h>

#define SIGN_V1_HEX_LEN 40

/*
 * Compute the v1 signature into out (41 bytes incl. NUL). NULL args are "".
 * If OpenSSL fails (out of memory) out is "", which never verifies.
 */
void sign_v1(const char *token, const char *timestamp, const char *nonce,
	     char out[SIGN_V1_HEX_LEN + 1]);

/*
 * Verify a v1 signature. Returns RB_OK, or RB_EINVAL when an argument is
 * missing or the signature does not match, or RB_ETIMEDOUT when timestamp is
 * not an integer within +-window seconds of now. Comparison is constant-time.
 * Missing means NULL, or "" for timestamp, nonce and signature (an empty
 * token is a configuration matter and signs as ""). Checked in that order:
 * missing, then time, then signature. timestamp must be plain decimal digits
 * (no sign, no blanks); |timestamp - now| == window is accepted; a negative
 * window accepts nothing. signature must be 40 lowercase hex chars.
 */
int sign_v1_verify(const char *token, const char *timestamp, const char *nonce,
		   const char *signature, time_t now, int window);

/* The longest outbound nonce: 2^53 - 1 = 9007199254740991. */
#define SIGN_V1_NONCE_MAX_DIGITS 16

/*
 * Write "timestamp=<now>&nonce=<random>&signature=<sig>" into buf[0..cap)
 * for an outbound request (hooks, forwards). The nonce is a random decimal
 * integer in 1 .. 2^53 - 1 (OpenSSL RAND_bytes), without leading zeros: the
 * original's nonces were integers and backends parse them with int(), and
 * below 2^53 a JavaScript Number holds it exactly. So the query is 79 to
 * 78 + SIGN_V1_NONCE_MAX_DIGITS chars for a 10-digit timestamp. Returns the
 * length written (excluding the NUL, which is always written), or a negative
 * rb_err (RB_ETOOBIG if cap is too small for this nonce, RB_EIO if the RNG
 * or hash fails); on error buf is "" when cap > 0.
 */
int sign_v1_query(const char *token, time_t now, char *buf, size_t cap);

/*
 * Compare two secrets (e.g. a password) in time that depends on neither
 * their content nor their lengths: both are hashed with SHA-256 and the
 * digests compared with CRYPTO_memcmp. 1 if equal, else 0 (also when the
 * hash fails). NULL is allowed with length 0.
 */
int sign_secret_equal(const void *a, size_t alen, const void *b, size_t blen);

/*
 * v2 (docs/rest-api.md): signature =
 *   lowercase hex(HMAC-SHA256(token, METHOD "\n" PATH "\n" CANONICAL_QUERY
 *                                    "\n" hex(SHA256(body))))
 */
#define SIGN_V2_HEX_LEN 64

/*
 * Canonical query: the n (name, value) pairs, already percent-decoded,
 * except any named "signature", sorted by name then value (byte order),
 * each written name=value with every byte outside A-Z a-z 0-9 - . _ ~ as
 * %XX (uppercase), joined by '&'. Returns the length written into
 * out[0..cap) (NUL-terminated) or RB_ETOOBIG.
 */
int sign_v2_canonical_query(const char *const *names, const char *const *values, size_t n,
			    char *out, size_t cap);

/* The v2 signature into out (65 bytes incl. NUL). RB_OK or RB_EIO. */
int sign_v2(const char *token, const char *method, const char *path,
	    const char *canonical_query, const void *body, size_t body_len,
	    char out[SIGN_V2_HEX_LEN + 1]);

/* Constant-time comparison of two NUL-terminated strings. */
int sign_equal(const char *a, const char *b);

#endif
