/*
 * test_beacon.c - the discovery beacon (protocol/beacon.h): exact bytes (the
 * MAC computed independently by tests/fuzz/make_corpus.py), every
 * truncation, every refusal in its own error, and the replay table.
 *
 * Inputs live in plain malloc'd buffers of exactly their length, so that a
 * read past the end is caught by AddressSanitizer.
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

#include "protocol/beacon.h"
#include "protocol/rb.h"

#define SECRET "s3cret"
#define NAME "lan"
#define TS INT64_C(1700000000000)
#define SKEW 10000

/* node 0x01020304, incarnation 5, port 1984, not leaving, TS, "lan". */
#define V_PLAIN "5242434e" "01" "00" "01020304" "0000000000000005" "07c0" \
	"0000018bcfe56800" "0003" "6c616e" \
	"bf111b340b450581d0986f0f513c7650008a1cda1e85a7f267c46751b6f72c5f"
/* node 0x0a0b0c0d, incarnation 6, port 2000, leaving, TS + 1, "lan". */
#define V_LEAVING "5242434e" "01" "01" "0a0b0c0d" "0000000000000006" "07d0" \
	"0000018bcfe56801" "0003" "6c616e" \
	"8ef42f7d132ab4a4d60e8824153450bee65d07799bbc090d8599ad94517285b7"

static uint8_t *unhex(const char *h, size_t *n)
{
	size_t len = strlen(h) / 2;
	uint8_t *b = malloc(len ? len : 1);

	assert_non_null(b);
	for (size_t i = 0; i < len; i++) {
		unsigned v;

		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		b[i] = (uint8_t)v;
	}
	*n = len;
	return b;
}

static struct beacon plain(void)
{
	struct beacon b = { .node_id = 0x01020304, .incarnation = 5, .port = 1984,
			    .timestamp_ms = TS };

	assert_int_equal(beacon_set_name(&b, NAME), RB_OK);
	return b;
}

static void check_vector(const char *hex, const struct beacon *b)
{
	uint8_t out[BEACON_MAX_LEN + 4];
	const char *why = "x";
	struct beacon got;
	size_t n;
	uint8_t *want = unhex(hex, &n);

	assert_int_equal(n, 62 + b->name_len);
	assert_int_equal(beacon_encode(b, SECRET, out, sizeof(out)), (int)n);
	assert_memory_equal(out, want, n);
	assert_int_equal(beacon_decode(want, n, SECRET, NAME, TS, SKEW, &got, &why), RB_OK);
	assert_null(why);
	assert_int_equal(got.node_id, b->node_id);
	assert_int_equal(got.incarnation, b->incarnation);
	assert_int_equal(got.port, b->port);
	assert_int_equal(got.leaving, b->leaving);
	assert_int_equal(got.timestamp_ms, b->timestamp_ms);
	assert_int_equal(got.name_len, b->name_len);
	assert_string_equal(got.name, NAME);
	free(want);
}

static void test_vectors(void **state)
{
	struct beacon b = plain();

	check_vector(V_PLAIN, &b);
	b.node_id = 0x0a0b0c0d;
	b.incarnation = 6;
	b.port = 2000;
	b.leaving = true;
	b.timestamp_ms = TS + 1;
	check_vector(V_LEAVING, &b);
}

static int decode_buf(const uint8_t *p, size_t n, const char *secret, const char *name,
		      int64_t now, int64_t skew, const char **why)
{
	uint8_t *b = malloc(n ? n : 1);
	struct beacon got;
	int rc;

	assert_non_null(b);
	if (n)
		memcpy(b, p, n);
	memset(&got, 0x5a, sizeof(got));
	rc = beacon_decode(n ? b : NULL, n, secret, name, now, skew, &got, why);
	if (rc != RB_OK) {
		/* *out is zeroed on every refusal. */
		assert_int_equal(got.node_id, 0);
		assert_int_equal(got.name_len, 0);
		assert_int_equal(got.timestamp_ms, 0);
		assert_non_null(*why);
	}
	free(b);
	return rc;
}

/* Encodes b (any fields, unchecked) the way beacon_encode would, so that
 * structurally bad beacons can carry a good MAC: flags and name length as
 * given. */
static size_t build(uint8_t *out, const char *hex_head, const char *name)
{
	size_t n, nl = strlen(name);
	uint8_t *head = unhex(hex_head, &n);

	memcpy(out, head, n);
	out[n] = (uint8_t)(nl >> 8);
	out[n + 1] = (uint8_t)nl;
	memcpy(out + n + 2, name, nl);
	free(head);
	return n + 2 + nl;
}

static void test_truncation(void **state)
{
	size_t n;
	uint8_t *full = unhex(V_PLAIN, &n);
	const char *why;

	for (size_t k = 0; k < n; k++) {
		int rc = decode_buf(full, k, SECRET, NAME, TS, SKEW, &why);

		assert_int_equal(rc, BEACON_EMALFORMED);
		if (k < 5)
			assert_string_equal(why, "beacon too short");
		else
			assert_string_equal(why, "beacon truncated");
	}
	/* A byte too many. */
	uint8_t *longer = malloc(n + 1);

	assert_non_null(longer);
	memcpy(longer, full, n);
	longer[n] = 0;
	assert_int_equal(decode_buf(longer, n + 1, SECRET, NAME, TS, SKEW, &why),
			 BEACON_EMALFORMED);
	assert_string_equal(why, "trailing bytes after the MAC");
	free(longer);
	free(full);
}

static void test_refusals(void **state)
{
	size_t n;
	uint8_t *full = unhex(V_PLAIN, &n);
	uint8_t b[BEACON_MAX_LEN]; /* decode_buf copies it to an exact size */
	const char *why;

	assert_true(n <= sizeof(b));
#define MUTATE(off, val, want, reason) do { \
		memcpy(b, full, n); \
		b[off] = (val); \
		assert_int_equal(decode_buf(b, n, SECRET, NAME, TS, SKEW, &why), want); \
		assert_string_equal(why, reason); \
	} while (0)
	MUTATE(0, 'X', BEACON_EVERSION, "not a beacon (magic)");
	MUTATE(3, 'M', BEACON_EVERSION, "not a beacon (magic)");
	MUTATE(4, 2, BEACON_EVERSION, "unknown beacon version");
	MUTATE(4, 0, BEACON_EVERSION, "unknown beacon version");
	MUTATE(5, 2, BEACON_EMALFORMED, "unknown flags");
	MUTATE(5, 0x80, BEACON_EMALFORMED, "unknown flags");
	/* A body bit flipped (port, leaving, timestamp, incarnation): bad MAC. */
	MUTATE(19, 0xc1, BEACON_EMAC, "beacon MAC does not verify");
	MUTATE(5, 1, BEACON_EMAC, "beacon MAC does not verify");
	MUTATE(27, 0x01, BEACON_EMAC, "beacon MAC does not verify");
	MUTATE(17, 0x06, BEACON_EMAC, "beacon MAC does not verify");
	MUTATE(n - 1, full[n - 1] ^ 1, BEACON_EMAC, "beacon MAC does not verify");
	MUTATE(n - 32, full[n - 32] ^ 0x80, BEACON_EMAC, "beacon MAC does not verify");
	/* The name's length field: bigger runs past the MAC, 0 is refused. */
	MUTATE(29, 4, BEACON_EMALFORMED, "beacon truncated");
	MUTATE(29, 0, BEACON_EMALFORMED, "trailing bytes after the MAC");
	/* Zero node id, zero port. */
	memcpy(b, full, n);
	memset(b + 6, 0, 4);
	assert_int_equal(decode_buf(b, n, SECRET, NAME, TS, SKEW, &why), BEACON_EMALFORMED);
	assert_string_equal(why, "zero node id or port");
	memcpy(b, full, n);
	memset(b + 18, 0, 2);
	assert_int_equal(decode_buf(b, n, SECRET, NAME, TS, SKEW, &why), BEACON_EMALFORMED);
	/* A timestamp with the top bit set (negative as int64). */
	MUTATE(20, 0x80, BEACON_EMALFORMED, "negative timestamp");
#undef MUTATE

	/* Foreign cluster names; a wrong secret. */
	assert_int_equal(decode_buf(full, n, SECRET, "lan2", TS, SKEW, &why), BEACON_EFOREIGN);
	assert_string_equal(why, "another cluster's beacon");
	assert_int_equal(decode_buf(full, n, SECRET, "la", TS, SKEW, &why), BEACON_EFOREIGN);
	assert_int_equal(decode_buf(full, n, SECRET, "LAN", TS, SKEW, &why), BEACON_EFOREIGN);
	assert_int_equal(decode_buf(full, n, SECRET, "", TS, SKEW, &why), BEACON_EFOREIGN);
	assert_int_equal(decode_buf(full, n, "s3creT", NAME, TS, SKEW, &why), BEACON_EMAC);
	assert_int_equal(decode_buf(full, n, "", NAME, TS, SKEW, &why), BEACON_EMAC);
	assert_int_equal(decode_buf(full, n, NULL, NAME, TS, SKEW, &why), RB_EINVAL);
	assert_int_equal(decode_buf(full, n, SECRET, NULL, TS, SKEW, &why), RB_EINVAL);

	/* A name of 65 bytes is malformed, 64 fine. */
	uint8_t big[BEACON_MAX_LEN + 2];
	char name65[66];
	size_t len;

	memset(name65, 'n', 65);
	name65[65] = '\0';
	len = build(big, "5242434e" "01" "00" "01020304" "0000000000000005" "07c0"
		    "0000018bcfe56800", name65);
	memset(big + len, 0, 32);
	assert_int_equal(decode_buf(big, len + 32, SECRET, name65, TS, SKEW, &why),
			 BEACON_EMALFORMED);
	assert_string_equal(why, "bad cluster name length");
	free(full);
}

static void test_time_window(void **state)
{
	size_t n;
	uint8_t *full = unhex(V_PLAIN, &n);
	const char *why;

	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS + SKEW, SKEW, &why), RB_OK);
	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS - SKEW, SKEW, &why), RB_OK);
	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS + SKEW + 1, SKEW, &why),
			 BEACON_ESTALE);
	assert_string_equal(why, "stale beacon");
	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS - SKEW - 1, SKEW, &why),
			 BEACON_ESTALE);
	assert_string_equal(why, "beacon from the future");
	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS, 0, &why), RB_OK);
	assert_int_equal(decode_buf(full, n, SECRET, NAME, TS, -1, &why), BEACON_ESTALE);
	/* Extreme clocks: no overflow either way. */
	assert_int_equal(decode_buf(full, n, SECRET, NAME, INT64_MIN, INT64_MAX, &why),
			 BEACON_ESTALE);
	assert_int_equal(decode_buf(full, n, SECRET, NAME, INT64_MAX, INT64_MAX, &why),
			 RB_OK);
	assert_int_equal(decode_buf(full, n, SECRET, NAME, INT64_MIN, SKEW, &why),
			 BEACON_ESTALE);
	/* The MAC is checked before the clock: a forged stale beacon counts as
	 * forged. */
	full[n - 1] ^= 1;
	assert_int_equal(decode_buf(full, n, SECRET, NAME, 0, SKEW, &why), BEACON_EMAC);
	free(full);
}

static void test_encode_errors(void **state)
{
	struct beacon b = plain();
	uint8_t out[BEACON_MAX_LEN];
	char name64[65];

	assert_int_equal(beacon_encode(&b, NULL, out, sizeof(out)), RB_EINVAL);
	b.node_id = 0;
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), RB_EINVAL);
	b = plain();
	b.port = 0;
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), RB_EINVAL);
	b = plain();
	b.timestamp_ms = -1;
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), RB_EINVAL);
	b = plain();
	b.name_len = 0;
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), RB_EINVAL);
	b.name_len = BEACON_NAME_MAX + 1;
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), RB_EINVAL);
	/* Too small: nothing written. */
	b = plain();
	memset(out, 0xee, sizeof(out));
	assert_int_equal(beacon_encode(&b, SECRET, out, 64), RB_ETOOBIG);
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(out[i], 0xee);
	assert_int_equal(beacon_encode(&b, SECRET, out, 65), 65);

	/* Names: 1..64 bytes. */
	assert_int_equal(beacon_set_name(&b, NULL), RB_EINVAL);
	assert_int_equal(beacon_set_name(&b, ""), RB_EINVAL);
	memset(name64, 'x', 64);
	name64[64] = '\0';
	assert_int_equal(beacon_set_name(&b, name64), RB_OK);
	assert_int_equal(b.name_len, 64);
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), BEACON_MAX_LEN);
	name64[63] = (char)0xff; /* any bytes */
	assert_int_equal(beacon_set_name(&b, name64), RB_OK);
	assert_int_equal(beacon_encode(&b, SECRET, out, sizeof(out)), BEACON_MAX_LEN);
	struct beacon got;
	assert_int_equal(beacon_decode(out, BEACON_MAX_LEN, SECRET, name64, TS, 0, &got,
				       NULL), RB_OK);
	assert_memory_equal(got.name, name64, 65);
	char name65[66];
	memset(name65, 'x', 65);
	name65[65] = '\0';
	assert_int_equal(beacon_set_name(&b, name65), RB_EINVAL);
	assert_int_equal(b.name_len, 64); /* untouched */
}

/* Round trips over a spread of field values. */
static void test_round_trip(void **state)
{
	const uint64_t incs[] = { 0, 1, UINT32_MAX, UINT64_MAX };
	const int64_t tss[] = { 0, 1, TS, INT64_MAX };
	uint8_t out[BEACON_MAX_LEN];
	struct beacon b = plain(), got;

	for (size_t i = 0; i < RB_ARRAY_LEN(incs); i++)
		for (size_t t = 0; t < RB_ARRAY_LEN(tss); t++) {
			int n;

			b.incarnation = incs[i];
			b.timestamp_ms = tss[t];
			b.node_id = (uint32_t)(UINT32_MAX - i);
			b.port = (uint16_t)(65535 - t);
			b.leaving = (i + t) & 1;
			n = beacon_encode(&b, "k", out, sizeof(out));
			assert_int_equal(n, 65);
			assert_int_equal(beacon_decode(out, (size_t)n, "k", NAME, tss[t], 0,
						       &got, NULL), RB_OK);
			assert_memory_equal(&got.node_id, &b.node_id, sizeof(b.node_id));
			assert_int_equal(got.incarnation, b.incarnation);
			assert_int_equal(got.timestamp_ms, b.timestamp_ms);
			assert_int_equal(got.port, b.port);
			assert_int_equal(got.leaving, b.leaving);
		}
}

static int check(struct beacon_replay *r, uint32_t node, uint64_t inc, int64_t ts)
{
	struct beacon b = { .node_id = node, .incarnation = inc, .timestamp_ms = ts };

	return beacon_replay_check(r, &b);
}

static void test_replay(void **state)
{
	struct beacon_replay *r = malloc(sizeof(*r));

	assert_non_null(r);
	beacon_replay_init(r);
	assert_int_equal(check(r, 1, 5, TS), RB_OK);
	assert_int_equal(check(r, 1, 5, TS), BEACON_EREPLAY);       /* equal */
	assert_int_equal(check(r, 1, 5, TS - 1), BEACON_EREPLAY);   /* older */
	assert_int_equal(check(r, 1, 4, TS + 100), BEACON_EREPLAY); /* older inc */
	assert_int_equal(check(r, 1, 5, TS + 1), RB_OK);            /* newer */
	assert_int_equal(check(r, 1, 5, TS + 1), BEACON_EREPLAY);
	/* A restart: newer incarnation, even with an older clock. */
	assert_int_equal(check(r, 1, 6, TS - 5000), RB_OK);
	assert_int_equal(check(r, 1, 5, TS + 2), BEACON_EREPLAY);
	assert_int_equal(check(r, 1, 6, TS - 5000), BEACON_EREPLAY);
	/* Another node is independent. */
	assert_int_equal(check(r, 2, 0, TS), RB_OK);
	assert_int_equal(check(r, 2, 0, TS), BEACON_EREPLAY);

	/* Fill the table: nodes 1..SLOTS; node 1 accepted longest ago after
	 * node 2 is refreshed. */
	assert_int_equal(check(r, 2, 0, TS + 1), RB_OK);
	for (uint32_t n = 3; n <= BEACON_REPLAY_SLOTS; n++)
		assert_int_equal(check(r, n, 0, TS), RB_OK);
	assert_int_equal(check(r, 1, 6, TS - 5000), BEACON_EREPLAY); /* still held */
	/* Every slot full, node 1 is still remembered; refresh it so that node 2
	 * becomes the oldest. */
	assert_int_equal(check(r, 1, 6, TS), RB_OK);
	assert_int_equal(check(r, BEACON_REPLAY_SLOTS + 1, 0, TS), RB_OK);
	/* Node 2 was evicted: its last beacon passes again (the documented
	 * bound); the others are still remembered. */
	assert_int_equal(check(r, 2, 0, TS + 1), RB_OK);
	assert_int_equal(check(r, 1, 6, TS), BEACON_EREPLAY);
	assert_int_equal(check(r, BEACON_REPLAY_SLOTS + 1, 0, TS), BEACON_EREPLAY);
	/* Re-adding node 2 evicted node 3, then the oldest; re-adding node 3
	 * evicts node 4, and node 5 is still remembered. */
	assert_int_equal(check(r, 3, 0, TS), RB_OK);
	assert_int_equal(check(r, 5, 0, TS), BEACON_EREPLAY);
	assert_int_equal(check(r, 4, 0, TS), RB_OK);
	assert_int_equal(check(r, 3, 0, TS), BEACON_EREPLAY);
	free(r);
}

static void test_random_node_id(void **state)
{
	uint32_t a = beacon_random_node_id(), b = beacon_random_node_id();

	assert_int_not_equal(a, 0);
	assert_int_not_equal(b, 0);
	assert_int_not_equal(a, b); /* 1 in 2^32 */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vectors),
		cmocka_unit_test(test_truncation),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_time_window),
		cmocka_unit_test(test_encode_errors),
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_replay),
		cmocka_unit_test(test_random_node_id),
	};

	return cmocka_run_group_tests_name("beacon", tests, NULL, NULL);
}
