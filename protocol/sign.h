/*
 * sign.h - request signatures (PROTOCOL.md A.6). Pure apart from OpenSSL's
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

/*
 * Write "timestamp=<now>&nonce=<random>&signature=<sig>" into buf[0..cap)
 * for an outbound request. The nonce is 16 random lowercase hex chars from
 * OpenSSL RAND_bytes. Returns the length written (excluding the NUL, which
 * is always written), or a negative rb_err (RB_ETOOBIG if cap is too small,
 * RB_EIO if the RNG or hash fails); on error buf is "" when cap > 0.
 */
int sign_v1_query(const char *token, time_t now, char *buf, size_t cap);

#endif
