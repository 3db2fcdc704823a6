/*
 * test_sign.c - v1 request signatures (docs/protocol.md Signatures).
 *
 * The expected digests were computed independently of this code, with
 *   /usr/bin/python3 -c 'import hashlib
 *   def s(t, ts, n):
 *       return hashlib.sha1("".join(sorted([t, ts, n])).encode()).hexdigest()
 *   print(s("secret", "1700000000", "12345"))'
 * and likewise for every other SIG_* below (the arguments are in its name's
 * comment). Python sorts str by code point, which for UTF-8 is byte order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "protocol/sign.h"

/* s("secret", "1700000000", "12345"): sorted "12345" "1700000000" "secret" */
#define SIG_A "5d19cc34bfa14fbed5ec174a4717394a3b8ca0ec"
/* s("Zeta", "1700000000", "abc"): upper case sorts before lower case */
#define SIG_B "e79ffc1b0450e0df3360f6772ddfe470fb2a2c67"
/* s("1234", "123", "12"): a prefix sorts first */
#define SIG_C "af976075f74f1a6e3dba2b88ce34589738305bd1"
/* s("\u00e9t\u00e9", "1700000000", "zz"): byte 0xc3 sorts after 'z' */
#define SIG_D "87a5d9131601d7b008699bd89d083c25e0827317"
/* s("", "1", "2") */
#define SIG_E "7b52009b64fd0a2a49e6d8a939753077792b0554"
/* s("", "", ""): sha1 of the empty string */
#define SIG_F "da39a3ee5e6b4b0d3255bfef95601890afd80709"
/* s("secret", "1700000000", "0123456789abcdef") */
#define SIG_G "9a138ec64ec894cb1c57c8e83d69b8f7760750b7"

#define TOKEN "secret"
#define TS "1700000000"
#define NOW ((time_t)1700000000)
#define NONCE "12345"

/* "timestamp=" + 10 digits + "&nonce=" + 1..16 digits + "&signature=" + 40 */
#define QUERY_MIN (10 + 10 + 7 + 1 + 11 + 40)
#define QUERY_MAX (10 + 10 + 7 + SIGN_V1_NONCE_MAX_DIGITS + 11 + 40)
/* 2^53 - 1, the largest integer a JavaScript Number holds exactly. */
#define JS_SAFE_MAX UINT64_C(9007199254740991)

static void assert_sig(const char *token, const char *ts, const char *nonce,
		       const char *want)
{
	char out[SIGN_V1_HEX_LEN + 1];

	memset(out, 'X', sizeof(out));
	sign_v1(token, ts, nonce, out);
	assert_string_equal(out, want);
}

static void test_sign_vectors(void **state)
{
	(void)state;
	assert_sig(TOKEN, TS, NONCE, SIG_A);
	assert_sig("Zeta", TS, "abc", SIG_B);
	assert_sig("1234", "123", "12", SIG_C);
	assert_sig("\xc3\xa9t\xc3\xa9", TS, "zz", SIG_D);
	assert_sig(TOKEN, TS, "0123456789abcdef", SIG_G);
}

/* The sort makes the argument positions irrelevant. */
static void test_sign_order_free(void **state)
{
	(void)state;
	assert_sig(TOKEN, TS, NONCE, SIG_A);
	assert_sig(TOKEN, NONCE, TS, SIG_A);
	assert_sig(TS, TOKEN, NONCE, SIG_A);
	assert_sig(TS, NONCE, TOKEN, SIG_A);
	assert_sig(NONCE, TOKEN, TS, SIG_A);
	assert_sig(NONCE, TS, TOKEN, SIG_A);
	assert_sig("12", "123", "1234", SIG_C);
	assert_sig("123", "1234", "12", SIG_C);
}

static void test_sign_null_is_empty(void **state)
{
	(void)state;
	assert_sig(NULL, "1", "2", SIG_E);
	assert_sig("", "1", "2", SIG_E);
	assert_sig("2", NULL, "1", SIG_E);
	assert_sig("1", "2", NULL, SIG_E);
	assert_sig(NULL, NULL, NULL, SIG_F);
}

static void test_verify_fresh(void **state)
{
	char sig[SIGN_V1_HEX_LEN + 1];

	(void)state;
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW, 10),
			 RB_OK);
	assert_int_equal(sign_v1_verify("1234", "123", "12", SIG_C, 123, 0),
			 RB_OK);
	/* Leading zeros name the same second, and Python's int() took them. */
	sign_v1(TOKEN, "0" TS, NONCE, sig);
	assert_int_equal(sign_v1_verify(TOKEN, "0" TS, NONCE, sig, NOW, 10),
			 RB_OK);
}

static void test_verify_wrong_signature(void **state)
{
	char sig[] = SIG_A;

	(void)state;
	sig[17] = sig[17] == '0' ? '1' : '0';
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, sig, NOW, 10),
			 RB_EINVAL);
	/* Last character: the whole length is compared. */
	strcpy(sig, SIG_A);
	sig[39] = sig[39] == '0' ? '1' : '0';
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, sig, NOW, 10),
			 RB_EINVAL);
	/* Hex is lowercase by contract. */
	strcpy(sig, SIG_A);
	for (size_t i = 0; sig[i] != '\0'; i++)
		if (sig[i] >= 'a' && sig[i] <= 'f')
			sig[i] = (char)(sig[i] - 'a' + 'A');
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, sig, NOW, 10),
			 RB_EINVAL);
	/* Prefixes and extensions of the right answer. */
	strcpy(sig, SIG_A);
	sig[39] = '\0';
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, sig, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A "0", NOW, 10),
			 RB_EINVAL);
	/* Right format, wrong inputs. */
	assert_int_equal(sign_v1_verify("Secret", TS, NONCE, SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, "12346", SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_F, NOW, 10),
			 RB_EINVAL);
}

static void test_verify_missing(void **state)
{
	(void)state;
	assert_int_equal(sign_v1_verify(NULL, TS, NONCE, SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, NULL, NONCE, SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NULL, SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, NULL, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, "", NONCE, SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, "", SIG_A, NOW, 10),
			 RB_EINVAL);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, "", NOW, 10),
			 RB_EINVAL);
	/* Missing is reported before a stale time. */
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, NULL, NOW + 100, 10),
			 RB_EINVAL);
	/* An empty token is not missing: it signs as "". */
	assert_int_equal(sign_v1_verify("", "1", "2", SIG_E, 1, 10), RB_OK);
}

static void test_verify_window(void **state)
{
	(void)state;
	/* Exactly +-window is inside. */
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW + 10, 10),
			 RB_OK);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW - 10, 10),
			 RB_OK);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW + 11, 10),
			 RB_ETIMEDOUT);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW - 11, 10),
			 RB_ETIMEDOUT);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, 0, 10),
			 RB_ETIMEDOUT);
	/* Window 0: this second only. */
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW, 0),
			 RB_OK);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW + 1, 0),
			 RB_ETIMEDOUT);
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW - 1, 0),
			 RB_ETIMEDOUT);
	/* A negative window accepts nothing rather than everything. */
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_A, NOW, -1),
			 RB_ETIMEDOUT);
	/* Time is checked before the signature. */
	assert_int_equal(sign_v1_verify(TOKEN, TS, NONCE, SIG_F, NOW + 11, 10),
			 RB_ETIMEDOUT);
	/* Extreme clocks: no overflow (UBSan watches), still refused. */
	assert_int_equal(sign_v1_verify(TOKEN, "9223372036854775807", NONCE,
					SIG_A, (time_t)INT64_MIN, 10),
			 RB_ETIMEDOUT);
	assert_int_equal(sign_v1_verify(TOKEN, "0", NONCE, SIG_A,
					(time_t)INT64_MAX, 10),
			 RB_ETIMEDOUT);
}

static void test_verify_bad_timestamp(void **state)
{
	static const char *const bad[] = {
		"abc", "17e8", " 1700000000", "1700000000 ", "+1700000000",
		"-1700000000", "-0", "0x6553f100", "1700000000.0",
		"99999999999999999999", "9223372036854775808",
	};
	char sig[SIGN_V1_HEX_LEN + 1];
	size_t i;

	(void)state;
	for (i = 0; i < RB_ARRAY_LEN(bad); i++) {
		/* Correctly signed, so only the time can be what fails. */
		sign_v1(TOKEN, bad[i], NONCE, sig);
		assert_int_equal(sign_v1_verify(TOKEN, bad[i], NONCE, sig, NOW,
						10), RB_ETIMEDOUT);
	}
	/* The largest representable time parses (and is far from now). */
	sign_v1(TOKEN, "9223372036854775807", NONCE, sig);
	assert_int_equal(sign_v1_verify(TOKEN, "9223372036854775807", NONCE,
					sig, (time_t)INT64_MAX - 5, 10), RB_OK);
}

static bool all_lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!(s[i] >= '0' && s[i] <= '9') &&
		    !(s[i] >= 'a' && s[i] <= 'f'))
			return false;
	return true;
}

/*
 * Split a query from sign_v1_query, asserting its exact shape: the nonce is
 * a decimal integer (what the original sent, and what backends parse with
 * int()) in 1 .. 2^53 - 1, without leading zeros. Returns the nonce's value.
 */
static uint64_t parse_query(const char *q, const char *ts,
			    char nonce[SIGN_V1_NONCE_MAX_DIGITS + 1],
			    char sig[SIGN_V1_HEX_LEN + 1])
{
	size_t tl = strlen(ts), nl = 0;
	uint64_t v = 0;

	assert_memory_equal(q, "timestamp=", 10);
	assert_memory_equal(q + 10, ts, tl);
	q += 10 + tl;
	assert_memory_equal(q, "&nonce=", 7);
	q += 7;
	while (q[nl] >= '0' && q[nl] <= '9') {
		assert_true(nl < SIGN_V1_NONCE_MAX_DIGITS);
		v = v * 10 + (uint64_t)(q[nl] - '0');
		nl++;
	}
	assert_true(nl >= 1);
	assert_true(q[0] != '0');
	assert_true(v >= 1 && v <= JS_SAFE_MAX);
	memcpy(nonce, q, nl);
	nonce[nl] = '\0';
	q += nl;
	assert_memory_equal(q, "&signature=", 11);
	assert_int_equal(strlen(q + 11), 40);
	assert_true(all_lower_hex(q + 11, 40));
	memcpy(sig, q + 11, 40);
	sig[40] = '\0';
	return v;
}

static void test_query_format(void **state)
{
	char buf[128], nonce[SIGN_V1_NONCE_MAX_DIGITS + 1];
	char sig[SIGN_V1_HEX_LEN + 1], want[SIGN_V1_HEX_LEN + 1];
	int n;

	(void)state;
	memset(buf, 'X', sizeof(buf));
	n = sign_v1_query(TOKEN, NOW, buf, sizeof(buf));
	assert_int_equal(n, (int)strlen(buf));
	assert_in_range(n, QUERY_MIN, QUERY_MAX);
	parse_query(buf, TS, nonce, sig);
	assert_int_equal(n, QUERY_MIN - 1 + (int)strlen(nonce));
	sign_v1(TOKEN, TS, nonce, want);
	assert_string_equal(sig, want);
	assert_int_equal(sign_v1_verify(TOKEN, TS, nonce, sig, NOW, 10), RB_OK);
	assert_int_equal(sign_v1_verify(TOKEN, TS, nonce, sig, NOW + 10, 10),
			 RB_OK);
	assert_int_equal(sign_v1_verify("other", TS, nonce, sig, NOW, 10),
			 RB_EINVAL);

	/* NULL token signs as "". */
	n = sign_v1_query(NULL, 5, buf, sizeof(buf));
	assert_in_range(n, QUERY_MIN - 9, QUERY_MAX - 9);
	parse_query(buf, "5", nonce, sig);
	assert_int_equal(sign_v1_verify("", "5", nonce, sig, 5, 0), RB_OK);
}

static void test_query_too_small(void **state)
{
	size_t cap;
	char *buf;
	int n;

	(void)state;
	assert_int_equal(sign_v1_query(TOKEN, NOW, NULL, 0), RB_ETOOBIG);
	/* Exact-size heap buffers, so any overrun is caught by the tools. Up to
	 * QUERY_MIN no nonce fits; from QUERY_MAX + 1 every nonce does; in
	 * between it depends on the nonce drawn, and either answer is whole. */
	for (cap = 1; cap <= QUERY_MAX + 1; cap++) {
		buf = malloc(cap);
		assert_non_null(buf);
		memset(buf, 'X', cap);
		n = sign_v1_query(TOKEN, NOW, buf, cap);
		if (cap <= QUERY_MIN) {
			assert_int_equal(n, RB_ETOOBIG);
		} else if (cap == QUERY_MAX + 1) {
			assert_in_range(n, QUERY_MIN, QUERY_MAX);
		}
		if (n == RB_ETOOBIG) {
			assert_string_equal(buf, "");
		} else {
			assert_in_range(n, QUERY_MIN, cap - 1);
			assert_int_equal(strlen(buf), (size_t)n);
		}
		free(buf);
	}
}

static void test_query_fresh_nonces(void **state)
{
	enum { N = 256 };
	char nonces[N][SIGN_V1_NONCE_MAX_DIGITS + 1], sig[SIGN_V1_HEX_LEN + 1];
	char buf[128];
	uint64_t top = 0;
	int i, j;

	(void)state;
	for (i = 0; i < N; i++) {
		assert_true(sign_v1_query(TOKEN, NOW, buf, sizeof(buf)) > 0);
		uint64_t v = parse_query(buf, TS, nonces[i], sig);
		if (v > top)
			top = v;
	}
	/* 53 random bits each: a repeat means the RNG is not being used. */
	for (i = 0; i < N; i++)
		for (j = i + 1; j < N; j++)
			assert_string_not_equal(nonces[i], nonces[j]);
	/* The whole range is used, not a narrow one (e.g. 1000..9999): the
	 * largest of 256 draws is below 2^52 with probability 2^-256. */
	assert_true(top >= (JS_SAFE_MAX + 1) / 2);
}

static void test_secret_equal(void **state)
{
	(void)state;
	assert_true(sign_secret_equal("pw", 2, "pw", 2));
	assert_true(sign_secret_equal(NULL, 0, "", 0));
	assert_false(sign_secret_equal("pw", 2, "pW", 2));
	assert_false(sign_secret_equal("pw", 2, "pw ", 3));
	assert_false(sign_secret_equal("pw", 2, "p", 1));
	assert_false(sign_secret_equal("", 0, "x", 1));
	/* Lengths are given: an embedded NUL is part of the secret. */
	assert_false(sign_secret_equal("a\0b", 3, "a\0c", 3));
	assert_true(sign_secret_equal("a\0b", 3, "a\0b", 3));
}


/* v2 vectors computed independently with Python:
 *   canon = "&".join(f"{quote(k,safe='-._~')}={quote(v,safe='-._~')}" for k,v in sorted(args))
 *   hmac.new(b"secret", f"POST\n/send/\n{canon}\n{sha256(body).hexdigest()}".encode(), sha256)
 */
static void test_v2_vectors(void **state)
{
	const char *names[] = { "timestamp", "nonce", "channel", "qos", "msgtype", "signature" };
	const char *values[] = { "1700000000", "n 1", "room/1", "1", "1002", "x" };
	char canon[256], sig[SIGN_V2_HEX_LEN + 1];

	(void)state;
	assert_int_equal(sign_v2_canonical_query(names, values, 6, canon, sizeof(canon)),
			 (int)strlen("channel=room%2F1&msgtype=1002&nonce=n%201&qos=1&timestamp=1700000000"));
	assert_string_equal(canon, "channel=room%2F1&msgtype=1002&nonce=n%201&qos=1&timestamp=1700000000");
	assert_int_equal(sign_v2("secret", "POST", "/send/", canon, "{\"m\":1}", 7, sig), RB_OK);
	assert_string_equal(sig, "6b8afe74959590734771c2dfc55019156dd8d32e35c96662bfc82409e1d9357d");
	/* Empty query and body. */
	assert_int_equal(sign_v2_canonical_query(NULL, NULL, 0, canon, sizeof(canon)), 0);
	assert_int_equal(sign_v2("secret", "GET", "/channels/", "", NULL, 0, sig), RB_OK);
	assert_string_equal(sig, "064d4d770f754abdf92098583056e8402b21b5a2df4c55ede05c6d6725abe3ff");
	/* Any change to the body changes the signature. */
	assert_int_equal(sign_v2("secret", "POST", "/send/", canon, "{\"m\":2}", 7, sig), RB_OK);
	assert_string_not_equal(sig, "6b8afe74959590734771c2dfc55019156dd8d32e35c96662bfc82409e1d9357d");
	/* Too small a buffer. */
	assert_int_equal(sign_v2_canonical_query(names, values, 6, canon, 10), RB_ETOOBIG);
	assert_true(sign_equal("abc", "abc"));
	assert_false(sign_equal("abc", "abd"));
	assert_false(sign_equal("abc", "ab"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v2_vectors),
		cmocka_unit_test(test_sign_vectors),
		cmocka_unit_test(test_sign_order_free),
		cmocka_unit_test(test_sign_null_is_empty),
		cmocka_unit_test(test_verify_fresh),
		cmocka_unit_test(test_verify_wrong_signature),
		cmocka_unit_test(test_verify_missing),
		cmocka_unit_test(test_verify_window),
		cmocka_unit_test(test_verify_bad_timestamp),
		cmocka_unit_test(test_query_format),
		cmocka_unit_test(test_query_too_small),
		cmocka_unit_test(test_query_fresh_nonces),
		cmocka_unit_test(test_secret_equal),
	};

	return cmocka_run_group_tests_name("sign", tests, NULL, NULL);
}
