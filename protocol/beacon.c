/*
 * beacon.c - the cluster discovery beacon. The contract is in beacon.h.
 */
#include "protocol/beacon.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "protocol/rb.h"
#include "protocol/wire.h"

int beacon_set_name(struct beacon *b, const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > BEACON_NAME_MAX)
		return RB_EINVAL;
	memcpy(b->name, name, n + 1);
	b->name_len = n;
	return RB_OK;
}

static bool mac(const char *secret, const uint8_t *data, size_t len,
		uint8_t out[BEACON_MAC_LEN])
{
	unsigned int outlen = 0;

	return HMAC(EVP_sha256(), secret, (int)strlen(secret), data, len, out,
		    &outlen) != NULL && outlen == BEACON_MAC_LEN;
}

int beacon_encode(const struct beacon *b, const char *secret, uint8_t *out, size_t cap)
{
	struct wire_w w = { .p = out, .cap = cap };
	size_t total;

	if (secret == NULL || b->node_id == 0 || b->port == 0 ||
	    b->name_len == 0 || b->name_len > BEACON_NAME_MAX || b->timestamp_ms < 0)
		return RB_EINVAL;
	total = BEACON_HEAD_LEN + b->name_len + BEACON_MAC_LEN;
	if (cap < total)
		return RB_ETOOBIG;
	wire_put(&w, BEACON_MAGIC, 4);
	wire_u8(&w, BEACON_VERSION);
	wire_u8(&w, b->leaving ? BEACON_FLAG_LEAVING : 0);
	wire_u32(&w, b->node_id);
	wire_u64(&w, b->incarnation);
	wire_u16(&w, b->port);
	wire_u64(&w, (uint64_t)b->timestamp_ms);
	wire_str(&w, b->name, b->name_len);
	if (w.err || w.len != total - BEACON_MAC_LEN)
		return RB_EINVAL; /* cannot happen: sized above */
	if (!mac(secret, out, w.len, out + w.len))
		return RB_EIO;
	return (int)total;
}

static int fail(struct beacon *out, const char **why, int rc, const char *reason)
{
	memset(out, 0, sizeof(*out));
	if (why)
		*why = reason;
	return rc;
}

int beacon_decode(const uint8_t *in, size_t len, const char *secret,
		  const char *cluster_name, int64_t now_ms, int64_t max_skew_ms,
		  struct beacon *out, const char **why)
{
	struct wire_r r = { .p = in, .len = len };
	uint8_t expect[BEACON_MAC_LEN];
	const uint8_t *name, *got;
	uint8_t version, flags;
	size_t name_len, body;
	uint64_t ts, skew;
	struct beacon b = { 0 };

	if (secret == NULL || cluster_name == NULL)
		return fail(out, why, RB_EINVAL, "no secret or cluster name");
	if (len < 5)
		return fail(out, why, BEACON_EMALFORMED, "beacon too short");
	if (memcmp(in, BEACON_MAGIC, 4) != 0)
		return fail(out, why, BEACON_EVERSION, "not a beacon (magic)");
	if (in[4] != BEACON_VERSION)
		return fail(out, why, BEACON_EVERSION, "unknown beacon version");
	wire_get(&r, 4);
	version = wire_get_u8(&r);
	(void)version;
	flags = wire_get_u8(&r);
	b.node_id = wire_get_u32(&r);
	b.incarnation = wire_get_u64(&r);
	b.port = wire_get_u16(&r);
	ts = wire_get_u64(&r);
	wire_get_str(&r, &name, &name_len);
	body = r.off;
	got = wire_get(&r, BEACON_MAC_LEN);
	if (r.err)
		return fail(out, why, BEACON_EMALFORMED, "beacon truncated");
	if (wire_left(&r) != 0)
		return fail(out, why, BEACON_EMALFORMED, "trailing bytes after the MAC");
	if (name_len == 0 || name_len > BEACON_NAME_MAX)
		return fail(out, why, BEACON_EMALFORMED, "bad cluster name length");
	if (flags & ~BEACON_FLAG_LEAVING)
		return fail(out, why, BEACON_EMALFORMED, "unknown flags");
	if (b.node_id == 0 || b.port == 0)
		return fail(out, why, BEACON_EMALFORMED, "zero node id or port");
	if (ts > INT64_MAX)
		return fail(out, why, BEACON_EMALFORMED, "negative timestamp");
	if (strlen(cluster_name) != name_len ||
	    memcmp(cluster_name, name, name_len) != 0)
		return fail(out, why, BEACON_EFOREIGN, "another cluster's beacon");
	/* The MAC covers everything before it; the compare leaks nothing of
	 * the expected value through timing. */
	if (!mac(secret, in, body, expect) ||
	    CRYPTO_memcmp(expect, got, BEACON_MAC_LEN) != 0)
		return fail(out, why, BEACON_EMAC, "beacon MAC does not verify");
	/* Unsigned difference: exact for any two int64 values, no overflow. */
	if ((int64_t)ts >= now_ms)
		skew = ts - (uint64_t)now_ms;
	else
		skew = (uint64_t)now_ms - ts;
	if (max_skew_ms < 0 || skew > (uint64_t)max_skew_ms)
		return fail(out, why, BEACON_ESTALE,
			    (int64_t)ts < now_ms ? "stale beacon" : "beacon from the future");
	b.timestamp_ms = (int64_t)ts;
	b.leaving = flags & BEACON_FLAG_LEAVING;
	memcpy(b.name, name, name_len);
	b.name[name_len] = '\0';
	b.name_len = name_len;
	*out = b;
	if (why)
		*why = NULL;
	return RB_OK;
}

uint32_t beacon_random_node_id(void)
{
	unsigned char raw[4];
	uint32_t v;

	do {
		if (RAND_bytes(raw, sizeof(raw)) != 1)
			return 0;
		v = (uint32_t)raw[0] << 24 | (uint32_t)raw[1] << 16 |
		    (uint32_t)raw[2] << 8 | raw[3];
	} while (v == 0);
	return v;
}

void beacon_replay_init(struct beacon_replay *r)
{
	memset(r, 0, sizeof(*r));
}

int beacon_replay_check(struct beacon_replay *r, const struct beacon *b)
{
	struct beacon_replay_slot *s = NULL, *victim = &r->slot[0];

	for (size_t i = 0; i < BEACON_REPLAY_SLOTS; i++) {
		struct beacon_replay_slot *c = &r->slot[i];

		if (c->node_id == b->node_id && b->node_id != 0) {
			s = c;
			break;
		}
		/* Free slots first, then the least recently accepted. */
		if (victim->node_id != 0 &&
		    (c->node_id == 0 || c->used < victim->used))
			victim = c;
	}
	if (s != NULL) {
		if (b->incarnation < s->incarnation ||
		    (b->incarnation == s->incarnation &&
		     b->timestamp_ms <= s->timestamp_ms))
			return BEACON_EREPLAY;
	} else {
		s = victim;
		s->node_id = b->node_id;
	}
	s->incarnation = b->incarnation;
	s->timestamp_ms = b->timestamp_ms;
	s->used = ++r->tick;
	return RB_OK;
}
