/*
 * token.h - connection tokens (docs/protocol.md Connection tokens): JSON Web
 * Tokens (RFC 7519) signed with HMAC-SHA256 (JWS "HS256", RFC 7515) under a
 * secret the backend shares with the gateway. Pure apart from OpenSSL's HMAC
 * and jansson; any thread may call it.
 *
 * Accepted: three base64url parts (no padding), a header that is a JSON
 * object with "alg" exactly "HS256" (so "none", "HS512", "RS256"... are
 * refused: no algorithm confusion), "typ" absent or "JWT", no "crit"; a
 * signature that verifies in constant time; claims that are a JSON object
 * with "sub" (a non-empty string of at most TOKEN_SUB_MAX bytes) and "exp"
 * (a number: seconds since the epoch) in the future, "nbf" (if present) not
 * in the future, "info" (any JSON value, optional) and "channels" (an array
 * of at most TOKEN_CHANNELS_MAX non-empty strings, optional). leeway
 * seconds of clock skew are allowed on exp and nbf.
 */
#ifndef RB_TOKEN_H
#define RB_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#define TOKEN_MAX_LEN 8192
#define TOKEN_SUB_MAX 256
#define TOKEN_CHANNELS_MAX 64

struct token_claims {
	char *sub;
	int64_t exp;
	char *info;        /* compact JSON of "info", or NULL when absent */
	char **channels;   /* n_channels NUL-terminated names */
	size_t n_channels;
};

/*
 * Verify token (NUL-terminated) under secret at now. RB_OK with *out
 * filled (free it with token_claims_free), or RB_EREFUSED (bad token) /
 * RB_ENOMEM with *why set to a static reason for the client and the log:
 * "malformed token", "token alg must be HS256", "bad token signature",
 * "token expired", "token not yet valid", "token has no sub", ...
 * *out is zeroed on error.
 */
int token_verify(const char *token, const char *secret, int64_t now, int leeway,
		 struct token_claims *out, const char **why);
void token_claims_free(struct token_claims *c);

/*
 * Make a token: header {"alg":"HS256","typ":"JWT"}, claims as given (a JSON
 * object's text, used as it is), signed under secret. Returns the token's
 * length written to out (NUL-terminated), or RB_ETOOBIG / RB_EINVAL /
 * RB_EIO. For tests and tools; backends mint tokens with their own library
 * (clients/python has one).
 */
int token_make(const char *claims_json, const char *secret, char *out, size_t cap);

#endif
