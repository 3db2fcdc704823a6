/*
 * fuzz_token.c - libFuzzer target for connection tokens (protocol/token.h).
 *
 * Every input is used twice:
 *  1. as a token (NUL-terminated copy): token_verify under a fixed secret
 *     must refuse or accept without a sanitizer report, refusals with a
 *     reason and no claims, acceptances with a non-empty sub;
 *  2. as claims text: token_make signs it, and token_verify of the result
 *     must not report a bad signature or a malformed token: whatever the
 *     claims, the envelope the gateway makes is one it reads.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "protocol/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz_token: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond); \
			abort(); \
		} \
	} while (0)

#define SECRET "fuzz-secret"
#define NOW 1700000000

static void check(const char *tok, struct token_claims *tc, int rc, const char *why)
{
	(void)tok;
	if (rc == RB_OK) {
		CHECK(why == NULL);
		CHECK(tc->sub && *tc->sub && strlen(tc->sub) <= TOKEN_SUB_MAX);
		CHECK(tc->n_channels <= TOKEN_CHANNELS_MAX);
		for (size_t i = 0; i < tc->n_channels; i++)
			CHECK(tc->channels[i] && *tc->channels[i]);
	} else {
		CHECK(rc == RB_EREFUSED || rc == RB_ENOMEM);
		CHECK(why != NULL);
		CHECK(tc->sub == NULL && tc->channels == NULL && tc->info == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = 0;

	struct token_claims tc;
	const char *why = "x";
	int rc = token_verify(s, SECRET, NOW, 5, &tc, &why);
	check(s, &tc, rc, why);
	token_claims_free(&tc);

	size_t cap = size * 2 + 256;
	char *tok = strlen(s) == size ? malloc(cap) : NULL; /* claims text has no NUL */
	if (tok && token_make(s, SECRET, tok, cap) > 0) {
		why = "x";
		rc = token_verify(tok, SECRET, NOW, 5, &tc, &why);
		check(tok, &tc, rc, why);
		if (rc != RB_OK)
			CHECK(strcmp(why, "bad token signature") != 0);
		token_claims_free(&tc);
	}
	free(tok);
	free(s);
	return 0;
}
