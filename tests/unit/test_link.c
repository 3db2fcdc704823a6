/*
 * test_link.c - the cluster link codec (protocol/link.h) against exact byte
 * vectors of every message type (docs/cluster-protocol.md; the same vectors
 * seed tests/fuzz/corpus/link/ through make_corpus.py), every truncation,
 * bad lengths and fields, streams split anywhere, and the handshake MAC.
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

#include "protocol/link.h"
#include "protocol/rb.h"

#define SECRET "s3cret"

static uint8_t *unhex(const char *h, size_t *n)
{
	size_t len = strlen(h) / 2;
	uint8_t *b = malloc(len ? len : 1);

	assert_non_null(b);
	assert_int_equal(strlen(h) % 2, 0);
	for (size_t i = 0; i < len; i++) {
		unsigned v;

		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		b[i] = (uint8_t)v;
	}
	*n = len;
	return b;
}

/* An exact-size copy of p[0..n). */
static uint8_t *dup_bytes(const uint8_t *p, size_t n)
{
	uint8_t *b = malloc(n ? n : 1);

	assert_non_null(b);
	if (n)
		memcpy(b, p, n);
	return b;
}

#define S(lit) ((struct link_str){ (const uint8_t *)(lit), sizeof(lit) - 1 })

static const uint8_t chal_a[LINK_CHALLENGE_LEN] = {
	0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c,
	0x0d, 0x0e, 0x0f, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19,
	0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f,
};

static struct link_hello hello_a(void)
{
	struct link_hello h = { .version = 1, .node_id = 0x0a0b0c0d, .incarnation = 7,
				.port = 1984, .cluster = S("lan") };

	memcpy(h.challenge, chal_a, sizeof(chal_a));
	return h;
}

static struct link_hello hello_b(void)
{
	struct link_hello h = { .version = 1, .node_id = 0x01020304, .incarnation = 2,
				.port = 1985, .cluster = S("lan") };

	for (int i = 0; i < LINK_CHALLENGE_LEN; i++)
		h.challenge[i] = (uint8_t)(0x20 + i);
	return h;
}

/* HMAC-SHA256("s3cret", label || chal_b || chal_a || A id, inc || B id, inc),
 * computed independently by tests/fuzz/make_corpus.py. */
#define AUTH_AB "7a29dd6149f8337a674220b4748627fbb0f6a4e392122cd78d5826e10a45b843"

static const struct link_str names2[] = { S("a"), S("room") };
static const struct link_str device1[] = { S("d1") };
static const struct link_dlv_entry dlvs1[] = {
	{ .msgid = 3, .state = 1, .sent = true, .qos = 1, .msgtype = 1002, .payload = S("x") },
};
static const struct link_up_entry ups1[] = { { .msgid = 9, .state = 2, .reply = S("ok") } };
static const struct link_presence_entry members2[] = {
	{ S("id1"), S("dev1"), S("ios") },
	{ S("id2"), S(""), S("") },
};

struct vector {
	const char *name, *hex;
	struct link_msg msg;
};

static struct vector vectors[32];
static size_t n_vectors;

static void add(const char *name, const char *hex, struct link_msg m)
{
	assert_true(n_vectors < RB_ARRAY_LEN(vectors));
	vectors[n_vectors++] = (struct vector){ name, hex, m };
}

static int setup(void **state)
{
	struct link_msg m;

	n_vectors = 0;
	m = (struct link_msg){ .type = LINK_HELLO };
	m.u.hello = hello_a();
	add("hello", "0000003501" "01" "0a0b0c0d" "0000000000000007" "07c0"
	    "0003" "6c616e"
	    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", m);

	m = (struct link_msg){ .type = LINK_AUTH };
	{
		size_t n;
		uint8_t *mac = unhex(AUTH_AB, &n);

		memcpy(m.u.auth.mac, mac, LINK_MAC_LEN);
		free(mac);
	}
	add("auth", "0000002102" AUTH_AB, m);

	m = (struct link_msg){ .type = LINK_PING, .u.ping.seq = 1 };
	add("ping", "0000000903" "0000000000000001", m);
	m = (struct link_msg){ .type = LINK_PONG, .u.ping.seq = 0x0102030405060708 };
	add("pong", "0000000904" "0102030405060708", m);

	m = (struct link_msg){ .type = LINK_INTEREST_FULL };
	m.u.interest_full.flags = LINK_PART_FIRST | LINK_PART_LAST;
	m.u.interest_full.channels = (struct link_names){ .items = names2, .n = 2 };
	add("interest-full", "0000000f05" "03" "00000002" "000161" "0004726f6f6d", m);

	m = (struct link_msg){ .type = LINK_INTEREST_DELTA };
	m.u.interest_delta.add = true;
	m.u.interest_delta.channel = S("room");
	add("interest-add", "0000000806" "01" "0004726f6f6d", m);
	m = (struct link_msg){ .type = LINK_INTEREST_DELTA };
	add("interest-remove", "0000000406" "00" "0000", m);

	m = (struct link_msg){ .type = LINK_PUBLISH };
	m.u.publish.push_id = 42;
	m.u.publish.target_kind = LINK_TO_CHANNEL;
	m.u.publish.target = S("room");
	m.u.publish.qos = 1;
	m.u.publish.msgtype = 1002;
	m.u.publish.timeout_ms = 5000;
	m.u.publish.payload = S("{\"m\":1}");
	add("publish", "0000002207" "000000000000002a" "01" "0004726f6f6d" "01" "03ea"
	    "00001388" "00000007" "7b226d223a317d", m);

	m = (struct link_msg){ .type = LINK_RECEIPT };
	m.u.receipt.push_id = 42;
	m.u.receipt.acked = 3;
	m.u.receipt.failed = 1;
	m.u.receipt.pending = 2;
	m.u.receipt.has_data = true;
	m.u.receipt.data = S("{\"x\":1}");
	add("receipt", "0000002108" "000000000000002a" "00000003" "00000001" "00000002"
	    "01" "00000007" "7b2278223a317d", m);
	m = (struct link_msg){ .type = LINK_RECEIPT, .u.receipt.push_id = 42 };
	add("receipt-nodata", "0000001608" "000000000000002a" "00000000" "00000000"
	    "00000000" "00", m);

	m = (struct link_msg){ .type = LINK_OP };
	m.u.op.op_id = 9;
	m.u.op.kind = LINK_OP_KICK;
	m.u.op.identity = S("id1");
	m.u.op.code = 4001;
	m.u.op.reason = S("bye");
	add("op", "0000001a09" "0000000000000009" "03" "0003696431" "0000" "00000fa1"
	    "0003627965", m);

	m = (struct link_msg){ .type = LINK_OP_RESULT };
	m.u.op_result.op_id = 9;
	m.u.op_result.rc = RB_ENOTFOUND;
	add("op-result", "0000000d0a" "0000000000000009" "fffffff8", m);

	m = (struct link_msg){ .type = LINK_PRESENCE_REQ };
	m.u.presence_req.req_id = 77;
	m.u.presence_req.channel = S("room");
	add("presence-req", "0000000f0b" "000000000000004d" "0004726f6f6d", m);

	m = (struct link_msg){ .type = LINK_PRESENCE_RESP };
	m.u.presence_resp.req_id = 77;
	m.u.presence_resp.flags = LINK_PART_FIRST | LINK_PART_LAST;
	m.u.presence_resp.members = (struct link_presence_list){ .items = members2, .n = 2 };
	add("presence-resp", "000000270c" "000000000000004d" "03" "00000002"
	    "0003696431" "000464657631" "0003696f73" "0003696432" "0000" "0000", m);

	m = (struct link_msg){ .type = LINK_BYE };
	add("bye", "000000010d", m);

	m = (struct link_msg){ .type = LINK_DEVICES_FULL };
	m.u.interest_full.flags = LINK_PART_FIRST | LINK_PART_LAST;
	m.u.interest_full.channels = (struct link_names){ .items = device1, .n = 1 };
	add("devices-full", "0000000a0e" "03" "00000001" "00026431", m);
	m = (struct link_msg){ .type = LINK_DEVICE_DELTA };
	m.u.interest_delta.add = true;
	m.u.interest_delta.channel = S("d1");
	add("device-add", "000000060f" "01" "00026431", m);

	m = (struct link_msg){ .type = LINK_SESSION_TAKE };
	m.u.session_take.req_id = 5;
	m.u.session_take.device = S("d1");
	add("session-take", "0000000d10" "0000000000000005" "00026431", m);

	m = (struct link_msg){ .type = LINK_SESSION_STATE };
	m.u.session_state.req_id = 5;
	m.u.session_state.next_msgid = 7;
	m.u.session_state.channels = (struct link_names){ .items = names2, .n = 2 };
	m.u.session_state.dlvs = (struct link_dlv_list){ .items = dlvs1, .n = 1 };
	m.u.session_state.ups = (struct link_up_list){ .items = ups1, .n = 1 };
	add("session-state", "0000003911" "0000000000000005" "00000000" "0007"
	    "00000002" "000161" "0004726f6f6d"
	    "00000001" "0003" "01" "01" "01" "03ea" "00000001" "78"
	    "00000001" "0009" "02" "00000002" "6f6b", m);

	m = (struct link_msg){ .type = LINK_SESSION_DONE };
	m.u.session_done.req_id = 5;
	m.u.session_done.rc = RB_ENOTFOUND;
	add("session-done", "0000000d12" "0000000000000005" "fffffff8", m);

	m = (struct link_msg){ .type = LINK_INFO_REQ, .u.info.req_id = 6 };
	add("info-req", "0000000913" "0000000000000006", m);
	m = (struct link_msg){ .type = LINK_INFO_RESP, .u.info.req_id = 6 };
	m.u.info.json = S("{}");
	add("info-resp", "0000000f14" "0000000000000006" "00000002" "7b7d", m);
	*state = NULL;
	return 0;
}

static bool str_eq(struct link_str a, struct link_str b)
{
	return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* want (items lists) against got (decoded, raw lists). */
static void assert_msg(const struct link_msg *want, const struct link_msg *got)
{
	size_t pos = 0, i = 0;

	assert_int_equal(got->type, want->type);
	switch (want->type) {
	case LINK_HELLO:
		assert_int_equal(got->u.hello.version, want->u.hello.version);
		assert_int_equal(got->u.hello.node_id, want->u.hello.node_id);
		assert_int_equal(got->u.hello.incarnation, want->u.hello.incarnation);
		assert_int_equal(got->u.hello.port, want->u.hello.port);
		assert_true(str_eq(got->u.hello.cluster, want->u.hello.cluster));
		assert_memory_equal(got->u.hello.challenge, want->u.hello.challenge,
				    LINK_CHALLENGE_LEN);
		break;
	case LINK_AUTH:
		assert_memory_equal(got->u.auth.mac, want->u.auth.mac, LINK_MAC_LEN);
		break;
	case LINK_PING:
	case LINK_PONG:
		assert_int_equal(got->u.ping.seq, want->u.ping.seq);
		break;
	case LINK_INTEREST_FULL: {
		struct link_str s;

		assert_int_equal(got->u.interest_full.flags, want->u.interest_full.flags);
		assert_int_equal(got->u.interest_full.channels.n,
				 want->u.interest_full.channels.n);
		assert_null(got->u.interest_full.channels.items);
		while (link_names_next(&got->u.interest_full.channels, &pos, &s))
			assert_true(str_eq(s, want->u.interest_full.channels.items[i++]));
		assert_int_equal(i, want->u.interest_full.channels.n);
		assert_int_equal(pos, got->u.interest_full.channels.raw_len);
		break;
	}
	case LINK_INTEREST_DELTA:
		assert_int_equal(got->u.interest_delta.add, want->u.interest_delta.add);
		assert_true(str_eq(got->u.interest_delta.channel,
				   want->u.interest_delta.channel));
		assert_non_null(got->u.interest_delta.channel.p);
		break;
	case LINK_PUBLISH:
		assert_int_equal(got->u.publish.push_id, want->u.publish.push_id);
		assert_int_equal(got->u.publish.target_kind, want->u.publish.target_kind);
		assert_true(str_eq(got->u.publish.target, want->u.publish.target));
		assert_int_equal(got->u.publish.qos, want->u.publish.qos);
		assert_int_equal(got->u.publish.msgtype, want->u.publish.msgtype);
		assert_int_equal(got->u.publish.timeout_ms, want->u.publish.timeout_ms);
		assert_true(str_eq(got->u.publish.payload, want->u.publish.payload));
		break;
	case LINK_RECEIPT:
		assert_int_equal(got->u.receipt.push_id, want->u.receipt.push_id);
		assert_int_equal(got->u.receipt.acked, want->u.receipt.acked);
		assert_int_equal(got->u.receipt.failed, want->u.receipt.failed);
		assert_int_equal(got->u.receipt.pending, want->u.receipt.pending);
		assert_int_equal(got->u.receipt.has_data, want->u.receipt.has_data);
		assert_true(str_eq(got->u.receipt.data, want->u.receipt.data));
		break;
	case LINK_OP:
		assert_int_equal(got->u.op.op_id, want->u.op.op_id);
		assert_int_equal(got->u.op.kind, want->u.op.kind);
		assert_true(str_eq(got->u.op.identity, want->u.op.identity));
		assert_true(str_eq(got->u.op.channel, want->u.op.channel));
		assert_int_equal(got->u.op.code, want->u.op.code);
		assert_true(str_eq(got->u.op.reason, want->u.op.reason));
		break;
	case LINK_OP_RESULT:
		assert_int_equal(got->u.op_result.op_id, want->u.op_result.op_id);
		assert_int_equal(got->u.op_result.rc, want->u.op_result.rc);
		break;
	case LINK_PRESENCE_REQ:
		assert_int_equal(got->u.presence_req.req_id, want->u.presence_req.req_id);
		assert_true(str_eq(got->u.presence_req.channel,
				   want->u.presence_req.channel));
		break;
	case LINK_PRESENCE_RESP: {
		struct link_presence_entry e;

		assert_int_equal(got->u.presence_resp.req_id, want->u.presence_resp.req_id);
		assert_int_equal(got->u.presence_resp.flags, want->u.presence_resp.flags);
		assert_int_equal(got->u.presence_resp.members.n,
				 want->u.presence_resp.members.n);
		while (link_presence_next(&got->u.presence_resp.members, &pos, &e)) {
			const struct link_presence_entry *w =
				&want->u.presence_resp.members.items[i++];

			assert_true(str_eq(e.identity, w->identity));
			assert_true(str_eq(e.device, w->device));
			assert_true(str_eq(e.platform, w->platform));
		}
		assert_int_equal(i, want->u.presence_resp.members.n);
		break;
	}
	case LINK_BYE:
		break;
	case LINK_DEVICES_FULL: {
		struct link_str s;

		assert_int_equal(got->u.interest_full.flags, want->u.interest_full.flags);
		while (link_names_next(&got->u.interest_full.channels, &pos, &s))
			assert_true(str_eq(s, want->u.interest_full.channels.items[i++]));
		assert_int_equal(i, want->u.interest_full.channels.n);
		break;
	}
	case LINK_DEVICE_DELTA:
		assert_int_equal(got->u.interest_delta.add, want->u.interest_delta.add);
		assert_true(str_eq(got->u.interest_delta.channel,
				   want->u.interest_delta.channel));
		break;
	case LINK_SESSION_TAKE:
		assert_int_equal(got->u.session_take.req_id, want->u.session_take.req_id);
		assert_true(str_eq(got->u.session_take.device, want->u.session_take.device));
		break;
	case LINK_SESSION_STATE: {
		const __typeof__(got->u.session_state) *g = &got->u.session_state,
						       *w = &want->u.session_state;
		struct link_str s;
		struct link_dlv_entry d;
		struct link_up_entry u;

		assert_int_equal(g->req_id, w->req_id);
		assert_int_equal(g->rc, w->rc);
		assert_int_equal(g->next_msgid, w->next_msgid);
		while (link_names_next(&g->channels, &pos, &s))
			assert_true(str_eq(s, w->channels.items[i++]));
		assert_int_equal(i, w->channels.n);
		pos = i = 0;
		while (link_dlv_next(&g->dlvs, &pos, &d)) {
			const struct link_dlv_entry *x = &w->dlvs.items[i++];

			assert_int_equal(d.msgid, x->msgid);
			assert_int_equal(d.state, x->state);
			assert_int_equal(d.sent, x->sent);
			assert_int_equal(d.qos, x->qos);
			assert_int_equal(d.msgtype, x->msgtype);
			assert_true(str_eq(d.payload, x->payload));
		}
		assert_int_equal(i, w->dlvs.n);
		pos = i = 0;
		while (link_up_next(&g->ups, &pos, &u)) {
			const struct link_up_entry *x = &w->ups.items[i++];

			assert_int_equal(u.msgid, x->msgid);
			assert_int_equal(u.state, x->state);
			assert_true(str_eq(u.reply, x->reply));
		}
		assert_int_equal(i, w->ups.n);
		break;
	}
	case LINK_SESSION_DONE:
		assert_int_equal(got->u.session_done.req_id, want->u.session_done.req_id);
		assert_int_equal(got->u.session_done.rc, want->u.session_done.rc);
		break;
	case LINK_INFO_REQ:
	case LINK_INFO_RESP:
		assert_int_equal(got->u.info.req_id, want->u.info.req_id);
		assert_true(str_eq(got->u.info.json, want->u.info.json));
		break;
	default:
		fail();
	}
}

/* Each vector: encode gives its bytes, decode gives its fields back, and
 * re-encoding the decoded message (lists as raw bytes) the same bytes. */
static void test_vectors(void **state)
{
	for (size_t v = 0; v < n_vectors; v++) {
		const struct vector *vec = &vectors[v];
		size_t n;
		uint8_t *want = unhex(vec->hex, &n), *out = malloc(n + 8);
		struct link_msg got;
		const char *why = "x";

		assert_non_null(out);
		assert_int_equal(link_encode(&vec->msg, NULL, 0), (int)n);
		assert_int_equal(link_encode(&vec->msg, out, n + 8), (int)n);
		assert_memory_equal(out, want, n);
		assert_int_equal(link_frame_len(want, n), (int)n);
		assert_int_equal(link_decode(want, n, &got, &why), (int)n);
		assert_null(why);
		assert_msg(&vec->msg, &got);
		memset(out, 0, n);
		assert_int_equal(link_encode(&got, out, n), (int)n);
		assert_memory_equal(out, want, n);
		assert_string_equal(link_type_name(vec->msg.type), link_type_name(want[4]));
		assert_string_not_equal(link_type_name(want[4]), "?");
		free(out);
		free(want);
	}
}

/* Every prefix of every frame is "need more"; the same prefix announced as
 * a whole frame (length rewritten) is a truncated payload; one byte more
 * is trailing garbage. */
static void test_truncation(void **state)
{
	for (size_t v = 0; v < n_vectors; v++) {
		size_t n;
		uint8_t *full = unhex(vectors[v].hex, &n);
		struct link_msg m;

		for (size_t k = 0; k < n; k++) {
			uint8_t *b = dup_bytes(full, k);
			const char *why = "x";

			memset(&m, 0x5a, sizeof(m));
			assert_int_equal(link_decode(k ? b : NULL, k, &m, &why), 0);
			assert_null(why);
			assert_int_equal(m.type, 0);
			assert_int_equal(link_frame_len(b, k), 0);
			if (k >= LINK_HDR_LEN) {
				uint32_t fl = (uint32_t)(k - 4);

				b[0] = (uint8_t)(fl >> 24);
				b[1] = (uint8_t)(fl >> 16);
				b[2] = (uint8_t)(fl >> 8);
				b[3] = (uint8_t)fl;
				assert_int_equal(link_frame_len(b, k), (int)k);
				assert_int_equal(link_decode(b, k, &m, &why), RB_EPROTO);
				assert_string_equal(why, "payload truncated");
				assert_int_equal(m.type, 0);
			}
			free(b);
		}

		/* One byte of trailing garbage inside the frame. */
		uint8_t *t = malloc(n + 1);
		const char *why = NULL;
		uint32_t fl = (uint32_t)(n - 4 + 1);

		assert_non_null(t);
		memcpy(t, full, n);
		t[n] = 0;
		t[0] = (uint8_t)(fl >> 24);
		t[1] = (uint8_t)(fl >> 16);
		t[2] = (uint8_t)(fl >> 8);
		t[3] = (uint8_t)fl;
		assert_int_equal(link_decode(t, n + 1, &m, &why), RB_EPROTO);
		assert_string_equal(why, "trailing bytes in the payload");
		free(t);
		free(full);
	}
}

static int decode_hex(const char *hex, const char **why)
{
	size_t n;
	uint8_t *b = unhex(hex, &n);
	struct link_msg m;
	int rc = link_decode(b, n, &m, why);

	free(b);
	return rc;
}

static void test_frame_errors(void **state)
{
	const char *why;
	uint8_t *b;
	size_t n;

	/* Oversize is known from the length field alone. */
	assert_int_equal(decode_hex("01000001", &why), RB_ETOOBIG);
	assert_string_equal(why, "frame over LINK_FRAME_MAX");
	assert_int_equal(decode_hex("ffffffff07", &why), RB_ETOOBIG);
	/* The largest allowed length just waits for its bytes. */
	assert_int_equal(decode_hex("01000000", &why), 0);
	assert_int_equal(decode_hex("0100000007", &why), 0);
	/* Empty frame, unknown types. */
	assert_int_equal(decode_hex("00000000", &why), RB_EPROTO);
	assert_string_equal(why, "empty frame");
	assert_int_equal(decode_hex("0000000100", &why), RB_EPROTO);
	assert_string_equal(why, "unknown frame type");
	assert_int_equal(decode_hex("0000000115", &why), RB_EPROTO);
	/* A session delivery with state 4, one with sent 2, an upstream entry
	 * with state 0, a DEVICE_DELTA add of 2. */
	assert_int_equal(decode_hex("000000271100000000000000050000000000070000000000000001"
				    "000304010103ea000000017800000000", &why), RB_EPROTO);
	assert_string_equal(why, "bad delivery in SESSION_STATE");
	assert_int_equal(decode_hex("000000271100000000000000050000000000070000000000000001"
				    "000301020103ea000000017800000000", &why), RB_EPROTO);
	assert_string_equal(why, "bad delivery in SESSION_STATE");
	assert_int_equal(decode_hex("000000221100000000000000050000000000070000000000000000"
				    "0000000100090000000000", &why), RB_EPROTO);
	assert_string_equal(why, "bad upstream entry in SESSION_STATE");
	assert_int_equal(decode_hex("000000060f0200026431", &why), RB_EPROTO);
	assert_string_equal(why, "DEVICE_DELTA add is not 0 or 1");
	assert_int_equal(decode_hex("00000005ff", &why), RB_EPROTO); /* before its bytes */
	/* Bad fields. */
	assert_int_equal(decode_hex("0000003501" "01" "00000000" "0000000000000007" "07c0"
				    "0003" "6c616e"
				    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
				    &why), RB_EPROTO);
	assert_string_equal(why, "HELLO with node id 0");
	assert_int_equal(decode_hex("0000000f05" "04" "00000002" "000161" "0004726f6f6d",
				    &why), RB_EPROTO);
	assert_string_equal(why, "unknown INTEREST_FULL flags");
	/* A count that cannot fit, and one short by an entry. */
	assert_int_equal(decode_hex("0000000f05" "03" "ffffffff" "000161" "0004726f6f6d",
				    &why), RB_EPROTO);
	assert_string_equal(why, "payload truncated");
	assert_int_equal(decode_hex("0000000f05" "03" "00000003" "000161" "0004726f6f6d",
				    &why), RB_EPROTO);
	assert_int_equal(decode_hex("0000000f05" "03" "00000001" "000161" "0004726f6f6d",
				    &why), RB_EPROTO);
	assert_string_equal(why, "trailing bytes in the payload");
	/* A string length past the frame. */
	assert_int_equal(decode_hex("0000000806" "01" "0005726f6f6d", &why), RB_EPROTO);
	assert_string_equal(why, "payload truncated");
	assert_int_equal(decode_hex("0000000806" "02" "0004726f6f6d", &why), RB_EPROTO);
	assert_string_equal(why, "INTEREST_DELTA is neither add nor remove");
	assert_int_equal(decode_hex("0000002207" "000000000000002a" "00" "0004726f6f6d" "01"
				    "03ea" "00001388" "00000007" "7b226d223a317d", &why),
			 RB_EPROTO);
	assert_string_equal(why, "unknown PUBLISH target kind");
	assert_int_equal(decode_hex("0000002207" "000000000000002a" "04" "0004726f6f6d" "01"
				    "03ea" "00001388" "00000007" "7b226d223a317d", &why),
			 RB_EPROTO);
	assert_int_equal(decode_hex("0000002207" "000000000000002a" "03" "0004726f6f6d" "03"
				    "03ea" "00001388" "00000007" "7b226d223a317d", &why),
			 RB_EPROTO);
	assert_string_equal(why, "PUBLISH qos over 2");
	/* A blob length past the frame (u32, huge). */
	assert_int_equal(decode_hex("0000002207" "000000000000002a" "03" "0004726f6f6d" "02"
				    "03ea" "00001388" "ffffffff" "7b226d223a317d", &why),
			 RB_EPROTO);
	assert_string_equal(why, "payload truncated");
	assert_int_equal(decode_hex("0000001608" "000000000000002a" "00000000" "00000000"
				    "00000000" "02", &why), RB_EPROTO);
	assert_string_equal(why, "RECEIPT data flag is neither 0 nor 1");
	assert_int_equal(decode_hex("0000001a09" "0000000000000009" "00" "0003696431" "0000"
				    "00000fa1" "0003627965", &why), RB_EPROTO);
	assert_string_equal(why, "unknown OP kind");
	assert_int_equal(decode_hex("0000001a09" "0000000000000009" "05" "0003696431" "0000"
				    "00000fa1" "0003627965", &why), RB_EPROTO);
	assert_int_equal(decode_hex("000000270c" "000000000000004d" "80" "00000002"
				    "0003696431" "000464657631" "0003696f73" "0003696432"
				    "0000" "0000", &why), RB_EPROTO);
	assert_string_equal(why, "unknown PRESENCE_RESP flags");
	/* A presence list whose count splits an entry. */
	assert_int_equal(decode_hex("000000160c" "000000000000004d" "03" "00000002"
				    "0003696431" "000464657631", &why), RB_EPROTO);

	/* The largest frame decodes; one byte more is refused by the encoder. */
	static uint8_t big[LINK_FRAME_MAX];
	struct link_msg m = { .type = LINK_PUBLISH }, got;
	size_t fixed = 8 + 1 + 2 + 1 + 2 + 4 + 4; /* before the payload bytes */

	m.u.publish.target_kind = LINK_TO_DEVICE;
	m.u.publish.payload.p = big;
	m.u.publish.payload.n = LINK_FRAME_MAX - 1 - fixed;
	n = LINK_HDR_LEN + LINK_FRAME_MAX - 1;
	assert_int_equal(link_encode(&m, NULL, 0), (int)n);
	b = malloc(n);
	assert_non_null(b);
	assert_int_equal(link_encode(&m, b, n), (int)n);
	assert_int_equal(link_decode(b, n, &got, &why), (int)n);
	assert_int_equal(got.u.publish.payload.n, m.u.publish.payload.n);
	assert_ptr_equal(got.u.publish.payload.p, b + LINK_HDR_LEN + fixed);
	free(b);
	m.u.publish.payload.n++;
	assert_int_equal(link_encode(&m, NULL, 0), RB_ETOOBIG);
}

static void test_encode_errors(void **state)
{
	struct link_msg m = { 0 };
	uint8_t out[64];

	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL); /* type 0 */
	m.type = LINK_TYPE_MAX + 1;
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_HELLO };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL); /* node 0 */
	m = (struct link_msg){ .type = LINK_PUBLISH, .u.publish.target_kind = 0 };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_PUBLISH, .u.publish.target_kind = 1,
			       .u.publish.qos = 3 };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_OP, .u.op.kind = 5 };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_INTEREST_FULL, .u.interest_full.flags = 4 };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_PRESENCE_RESP, .u.presence_resp.flags = 8 };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	/* NULL with a length; a list with neither items nor raw. */
	m = (struct link_msg){ .type = LINK_PRESENCE_REQ };
	m.u.presence_req.channel.n = 3;
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	m = (struct link_msg){ .type = LINK_INTEREST_FULL };
	m.u.interest_full.channels.n = 1;
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	/* Session entries out of range: delivery state 4, qos 0; upstream
	 * state 3. */
	{
		struct link_dlv_entry bad_dlv[] = { { .msgid = 1, .state = 4, .qos = 1 },
						    { .msgid = 1, .state = 1, .qos = 0 } };
		struct link_up_entry bad_up = { .msgid = 1, .state = 3 };

		for (int k = 0; k < 2; k++) {
			m = (struct link_msg){ .type = LINK_SESSION_STATE };
			m.u.session_state.dlvs = (struct link_dlv_list){ .items = &bad_dlv[k],
									 .n = 1 };
			assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
		}
		m = (struct link_msg){ .type = LINK_SESSION_STATE };
		m.u.session_state.ups = (struct link_up_list){ .items = &bad_up, .n = 1 };
		assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	}
	/* Data without has_data. */
	m = (struct link_msg){ .type = LINK_RECEIPT, .u.receipt.data = S("x") };
	assert_int_equal(link_encode(&m, out, sizeof(out)), RB_EINVAL);
	/* A string over 65535 bytes (never read: refused while counting). */
	m = (struct link_msg){ .type = LINK_PRESENCE_REQ };
	m.u.presence_req.channel.p = out;
	m.u.presence_req.channel.n = 65536;
	assert_int_equal(link_encode(&m, NULL, 0), RB_EINVAL);
	m.u.presence_req.channel.n = 65535;
	assert_int_equal(link_encode(&m, NULL, 0), LINK_HDR_LEN + 8 + 2 + 65535);

	/* Too small a buffer: RB_ETOOBIG, nothing written. */
	for (size_t v = 0; v < n_vectors; v++) {
		size_t n;
		uint8_t *want = unhex(vectors[v].hex, &n);
		uint8_t *small = malloc(n);

		assert_non_null(small);
		memset(small, 0xee, n);
		assert_int_equal(link_encode(&vectors[v].msg, small, n - 1), RB_ETOOBIG);
		for (size_t i = 0; i < n; i++)
			assert_int_equal(small[i], 0xee);
		free(small);
		free(want);
	}
}

/* Strings may hold any byte, NUL and 0xff included. */
static void test_any_bytes(void **state)
{
	static const uint8_t odd[] = { 0x00, 0xff, 0x0a, 0x00, 0x80 };
	struct link_str items[3] = { { odd, sizeof(odd) }, { NULL, 0 }, { odd + 1, 1 } };
	struct link_msg m = { .type = LINK_INTEREST_FULL }, got;
	uint8_t out[128];
	struct link_str s;
	size_t pos = 0;
	int n;

	m.u.interest_full.flags = LINK_PART_FIRST;
	m.u.interest_full.channels = (struct link_names){ .items = items, .n = 3 };
	n = link_encode(&m, out, sizeof(out));
	assert_int_equal(n, LINK_HDR_LEN + 1 + 4 + 2 + 5 + 2 + 2 + 1);
	assert_int_equal(link_decode(out, (size_t)n, &got, NULL), n);
	for (int i = 0; i < 3; i++) {
		assert_true(link_names_next(&got.u.interest_full.channels, &pos, &s));
		assert_true(str_eq(s, items[i]));
	}
	assert_false(link_names_next(&got.u.interest_full.channels, &pos, &s));
}

/* Frames back to back, fed whole, then one byte at a time, then in random
 * pieces, decode to the same messages in order. */
static void test_stream(void **state)
{
	uint8_t *stream = NULL, *buf;
	size_t total = 0, *lens = calloc(n_vectors, sizeof(size_t));

	assert_non_null(lens);
	for (size_t v = 0; v < n_vectors; v++) {
		size_t n;
		uint8_t *b = unhex(vectors[v].hex, &n);

		stream = realloc(stream, total + n);
		assert_non_null(stream);
		memcpy(stream + total, b, n);
		total += n;
		lens[v] = n;
		free(b);
	}
	buf = malloc(total);
	assert_non_null(buf);
	srand(1);
	for (int mode = 0; mode < 3; mode++) {
		size_t have = 0, fed = 0, v = 0;

		while (fed < total || have) {
			size_t piece = mode == 0 ? total : mode == 1 ? 1 :
				       1 + (size_t)rand() % 17;
			struct link_msg m;
			int rc;

			if (piece > total - fed)
				piece = total - fed;
			memcpy(buf + have, stream + fed, piece);
			have += piece;
			fed += piece;
			while ((rc = link_decode(buf, have, &m, NULL)) > 0) {
				assert_true(v < n_vectors);
				assert_int_equal(rc, (int)lens[v]);
				assert_msg(&vectors[v].msg, &m);
				memmove(buf, buf + rc, have - (size_t)rc);
				have -= (size_t)rc;
				v++;
			}
			assert_int_equal(rc, 0);
			if (fed == total)
				assert_int_equal(have, 0);
		}
		assert_int_equal(v, n_vectors);
	}
	free(buf);
	free(stream);
	free(lens);
}

static void test_handshake(void **state)
{
	struct link_hello a = hello_a(), b = hello_b(), c;
	uint8_t mac_ab[LINK_MAC_LEN], mac_ba[LINK_MAC_LEN];
	size_t n;
	uint8_t *want = unhex(AUTH_AB, &n);

	/* A proves itself to B; B checks it with the roles the same. */
	assert_int_equal(link_auth_mac(SECRET, &a, &b, mac_ab), RB_OK);
	assert_memory_equal(mac_ab, want, LINK_MAC_LEN);
	assert_int_equal(link_auth_verify(SECRET, &a, &b, mac_ab), RB_OK);
	/* B's answer differs: A's MAC reflected back does not pass for B. */
	assert_int_equal(link_auth_mac(SECRET, &b, &a, mac_ba), RB_OK);
	assert_memory_not_equal(mac_ab, mac_ba, LINK_MAC_LEN);
	assert_int_equal(link_auth_verify(SECRET, &b, &a, mac_ba), RB_OK);
	assert_int_equal(link_auth_verify(SECRET, &b, &a, mac_ab), RB_EREFUSED);
	/* Another secret, a flipped bit, another challenge, incarnation or node. */
	assert_int_equal(link_auth_verify("s3creT", &a, &b, mac_ab), RB_EREFUSED);
	assert_int_equal(link_auth_verify("", &a, &b, mac_ab), RB_EREFUSED);
	for (int bit = 0; bit < LINK_MAC_LEN * 8; bit += 37) {
		uint8_t bad[LINK_MAC_LEN];

		memcpy(bad, mac_ab, sizeof(bad));
		bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		assert_int_equal(link_auth_verify(SECRET, &a, &b, bad), RB_EREFUSED);
	}
	c = b;
	c.challenge[31] ^= 1;
	assert_int_equal(link_auth_verify(SECRET, &a, &c, mac_ab), RB_EREFUSED);
	c = a;
	c.challenge[0] ^= 1;
	assert_int_equal(link_auth_verify(SECRET, &c, &b, mac_ab), RB_EREFUSED);
	c = a;
	c.incarnation++;
	assert_int_equal(link_auth_verify(SECRET, &c, &b, mac_ab), RB_EREFUSED);
	c = b;
	c.node_id++;
	assert_int_equal(link_auth_verify(SECRET, &a, &c, mac_ab), RB_EREFUSED);
	/* Port, version and name are not in the MAC (the name is compared by the
	 * cluster in HELLO; the secret is what binds). */
	c = a;
	c.port = 1;
	assert_int_equal(link_auth_verify(SECRET, &c, &b, mac_ab), RB_OK);
	assert_int_equal(link_auth_mac(NULL, &a, &b, mac_ab), RB_EINVAL);
	assert_int_equal(link_auth_verify(NULL, &a, &b, mac_ab), RB_EINVAL);

	/* Challenges are random. */
	assert_int_equal(link_challenge(a.challenge), RB_OK);
	assert_int_equal(link_challenge(c.challenge), RB_OK);
	assert_memory_not_equal(a.challenge, c.challenge, LINK_CHALLENGE_LEN);
	free(want);
}

static void test_type_names(void **state)
{
	assert_string_equal(link_type_name(0), "?");
	assert_string_equal(link_type_name(LINK_HELLO), "HELLO");
	assert_string_equal(link_type_name(LINK_PRESENCE_RESP), "PRESENCE_RESP");
	assert_string_equal(link_type_name(LINK_BYE), "BYE");
	assert_string_equal(link_type_name(LINK_SESSION_STATE), "SESSION_STATE");
	assert_string_equal(link_type_name(LINK_TYPE_MAX + 1), "?");
	assert_string_equal(link_type_name(255), "?");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_vectors, setup),
		cmocka_unit_test_setup(test_truncation, setup),
		cmocka_unit_test_setup(test_frame_errors, setup),
		cmocka_unit_test_setup(test_encode_errors, setup),
		cmocka_unit_test(test_any_bytes),
		cmocka_unit_test_setup(test_stream, setup),
		cmocka_unit_test(test_handshake),
		cmocka_unit_test(test_type_names),
	};

	return cmocka_run_group_tests_name("link", tests, NULL, NULL);
}
