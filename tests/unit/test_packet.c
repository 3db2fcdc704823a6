/*
 * test_packet.c - the wire codec against docs/protocol.md Packets verified vectors,
 * every header byte, and every truncation.
 *
 * Inputs to pkt_decode live in plain malloc'd buffers of exactly their length
 * (not cmocka's test_malloc, whose guard bytes are readable), so that any
 * read past the end is caught by valgrind or AddressSanitizer.
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

#include "protocol/packet.h"
#include "protocol/rb.h"

struct vector {
	const uint8_t *bytes;
	size_t len;
	size_t hdr_len;
	struct pkt want; /* want.payload: the expected payload bytes */
};

#define BYTES(...) (const uint8_t[]){ __VA_ARGS__ }, \
	sizeof((const uint8_t[]){ __VA_ARGS__ })

/* '{"a":0}' and friends, spelled out so the vectors read like the spec. */
#define JSON_A0 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x30, 0x7d
#define JSON_A1 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x31, 0x7d
#define JSON_A2 0x7b, 0x22, 0x61, 0x22, 0x3a, 0x32, 0x7d
#define JSON_M1 0x7b, 0x22, 0x6d, 0x22, 0x3a, 0x31, 0x7d
#define REPLY 0x7b, 0x22, 0x6f, 0x6b, 0x22, 0x3a, 0x74, 0x72, 0x75, 0x65, 0x7d

enum {
	V_SEND_Q0,
	V_SEND_Q1,
	V_SEND_Q1_DUP,
	V_SEND_Q2,
	V_SEND_Q2_DUP,
	V_ACK,
	V_ACK_EMPTY,
	V_REC,
	V_REC_EMPTY,
	V_REL,
	V_COM,
	V_SERVER_SEND,
	V_COUNT,
};

static const uint8_t a0[] = { JSON_A0 };
static const uint8_t a1[] = { JSON_A1 };
static const uint8_t a2[] = { JSON_A2 };
static const uint8_t m1[] = { JSON_M1 };
static const uint8_t reply[] = { REPLY }; /* {"ok":true} */

static const struct vector vectors[V_COUNT] = {
	[V_SEND_Q0] = { BYTES(0x10, 0x00, 0x01, JSON_A0), 3,
		{ .cmd = PKT_SEND, .qos = 0, .msgtype = 1,
		  .payload = a0, .payload_len = sizeof(a0) } },
	[V_SEND_Q1] = { BYTES(0x12, 0x00, 0x02, 0x00, 0x0a, JSON_A1), 5,
		{ .cmd = PKT_SEND, .qos = 1, .msgtype = 2, .msgid = 10,
		  .payload = a1, .payload_len = sizeof(a1) } },
	[V_SEND_Q1_DUP] = { BYTES(0x1a, 0x00, 0x02, 0x00, 0x0a, JSON_A1), 5,
		{ .cmd = PKT_SEND, .qos = 1, .dup = true, .msgtype = 2,
		  .msgid = 10, .payload = a1, .payload_len = sizeof(a1) } },
	[V_SEND_Q2] = { BYTES(0x14, 0x00, 0x03, 0x00, 0x0b, JSON_A2), 5,
		{ .cmd = PKT_SEND, .qos = 2, .msgtype = 3, .msgid = 11,
		  .payload = a2, .payload_len = sizeof(a2) } },
	[V_SEND_Q2_DUP] = { BYTES(0x1c, 0x00, 0x03, 0x00, 0x0b, JSON_A2), 5,
		{ .cmd = PKT_SEND, .qos = 2, .dup = true, .msgtype = 3,
		  .msgid = 11, .payload = a2, .payload_len = sizeof(a2) } },
	[V_ACK] = { BYTES(0x20, 0x00, 0x0a, REPLY), 3,
		{ .cmd = PKT_ACK, .msgid = 10,
		  .payload = reply, .payload_len = sizeof(reply) } },
	[V_ACK_EMPTY] = { BYTES(0x20, 0x00, 0x0a), 3,
		{ .cmd = PKT_ACK, .msgid = 10 } },
	[V_REC] = { BYTES(0x30, 0x00, 0x0b, REPLY), 3,
		{ .cmd = PKT_REC, .msgid = 11,
		  .payload = reply, .payload_len = sizeof(reply) } },
	[V_REC_EMPTY] = { BYTES(0x30, 0x00, 0x0b), 3,
		{ .cmd = PKT_REC, .msgid = 11 } },
	[V_REL] = { BYTES(0x40, 0x00, 0x0b), 3,
		{ .cmd = PKT_REL, .msgid = 11 } },
	[V_COM] = { BYTES(0x50, 0x00, 0x0b), 3,
		{ .cmd = PKT_COM, .msgid = 11 } },
	[V_SERVER_SEND] = { BYTES(0x12, 0x03, 0xea, 0x00, 0x01, JSON_M1), 5,
		{ .cmd = PKT_SEND, .qos = 1, .msgtype = 1002, .msgid = 1,
		  .payload = m1, .payload_len = sizeof(m1) } },
};

/* An exact-size heap copy; NULL for len 0 so that any read faults. */
static uint8_t *exact_copy(const uint8_t *src, size_t len)
{
	uint8_t *p;

	if (len == 0)
		return NULL;
	p = malloc(len);
	assert_non_null(p);
	memcpy(p, src, len);
	return p;
}

static void assert_failed_pkt(const struct pkt *p, uint16_t msgid)
{
	assert_int_equal(p->cmd, 0);
	assert_int_equal(p->qos, 0);
	assert_false(p->dup);
	assert_int_equal(p->msgtype, 0);
	assert_int_equal(p->msgid, msgid);
	assert_null(p->payload);
	assert_int_equal(p->payload_len, 0);
}

static void assert_decoded(const struct pkt *got, const struct pkt *want,
			   const uint8_t *buf, size_t hdr_len,
			   size_t payload_len)
{
	assert_int_equal(got->cmd, want->cmd);
	assert_int_equal(got->qos, want->qos);
	assert_int_equal(got->dup, want->dup);
	assert_int_equal(got->msgtype, want->msgtype);
	assert_int_equal(got->msgid, want->msgid);
	assert_ptr_equal(got->payload, buf + hdr_len);
	assert_int_equal(got->payload_len, payload_len);
	if (payload_len > 0)
		assert_memory_equal(got->payload, want->payload, payload_len);
}

static void test_vector_decode(void **state)
{
	const struct vector *v = *state;
	uint8_t *buf = exact_copy(v->bytes, v->len);
	const char *why = "untouched";
	struct pkt p;
	int v2;

	for (v2 = 0; v2 <= 1; v2++) {
		memset(&p, 0xa5, sizeof(p));
		assert_int_equal(pkt_decode(buf, v->len, v2, &p, &why), RB_OK);
		assert_decoded(&p, &v->want, buf, v->hdr_len,
			       v->want.payload_len);
	}
	assert_int_equal(pkt_header_len(v->want.cmd, v->want.qos), v->hdr_len);
	free(buf);
}

static void test_vector_encode(void **state)
{
	const struct vector *v = *state;
	uint8_t hdr[PKT_MAX_HDR];
	uint8_t *out;
	size_t cap;

	/* Exactly the right size: every byte as specified, nothing more. */
	out = malloc(v->len);
	assert_non_null(out);
	assert_int_equal(pkt_encode(&v->want, out, v->len), v->len);
	assert_memory_equal(out, v->bytes, v->len);
	free(out);

	assert_int_equal(pkt_encode_header(&v->want, hdr), v->hdr_len);
	assert_memory_equal(hdr, v->bytes, v->hdr_len);

	/* Room to spare: the length stays exact, the rest is not touched. */
	out = malloc(v->len + 16);
	assert_non_null(out);
	memset(out, 0xee, v->len + 16);
	assert_int_equal(pkt_encode(&v->want, out, v->len + 16), v->len);
	assert_memory_equal(out, v->bytes, v->len);
	for (cap = v->len; cap < v->len + 16; cap++)
		assert_int_equal(out[cap], 0xee);

	/* Too small: 0 and nothing written. */
	for (cap = 0; cap < v->len; cap++) {
		memset(out, 0xee, v->len + 16);
		assert_int_equal(pkt_encode(&v->want, out, cap), 0);
		for (size_t i = 0; i < v->len + 16; i++)
			assert_int_equal(out[i], 0xee);
	}
	free(out);
}

static void test_vector_truncated(void **state)
{
	const struct vector *v = *state;
	struct pkt p;
	size_t n;
	int v2;

	for (n = 0; n < v->len; n++) {
		for (v2 = 0; v2 <= 1; v2++) {
			uint8_t *buf = exact_copy(v->bytes, n);
			const char *why = NULL;
			int rc;

			memset(&p, 0xa5, sizeof(p));
			rc = pkt_decode(buf, n, v2, &p, &why);
			if (n < v->hdr_len) {
				assert_int_equal(rc, RB_EPROTO);
				assert_string_equal(why, n == 0 ?
						    "empty packet" :
						    "packet too short");
				/* The msgid ends the header: never readable. */
				assert_failed_pkt(&p, 0);
			} else {
				size_t pl = v->want.cmd == PKT_REL ||
					    v->want.cmd == PKT_COM ?
					    0 : n - v->hdr_len;

				assert_int_equal(rc, RB_OK);
				assert_decoded(&p, &v->want, buf, v->hdr_len,
					       pl);
			}
			free(buf);
		}
	}
}

static void assert_rejected(const uint8_t *bytes, size_t len, bool v2,
			    const char *reason, uint16_t msgid)
{
	uint8_t *buf = exact_copy(bytes, len);
	const char *why = NULL;
	struct pkt p;

	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(pkt_decode(buf, len, v2, &p, &why), RB_EPROTO);
	assert_non_null(why);
	assert_string_equal(why, reason);
	assert_failed_pkt(&p, msgid);

	/* why is optional. */
	assert_int_equal(pkt_decode(buf, len, v2, &p, NULL), RB_EPROTO);
	assert_failed_pkt(&p, msgid);
	free(buf);
}

static void test_short_packets(void **state)
{
	(void)state;
	assert_rejected(BYTES(0x12, 0x00, 0x02, 0x00), false,
			"packet too short", 0);
	assert_rejected(BYTES(0x14, 0x00, 0x03, 0x00), true,
			"packet too short", 0);
	assert_rejected(BYTES(0x10, 0x00), false, "packet too short", 0);
	assert_rejected(BYTES(0x20, 0x00), false, "packet too short", 0);
	assert_rejected(BYTES(0x30, 0x00), false, "packet too short", 0);
	assert_rejected(BYTES(0x40), false, "packet too short", 0);
	assert_rejected(BYTES(0x50), false, "packet too short", 0);
	assert_rejected(BYTES(0x60, 0x00), true, "packet too short", 0);
}

static void test_empty_buffer(void **state)
{
	uint8_t one = 0x10;
	const char *why = NULL;
	struct pkt p;

	(void)state;
	memset(&p, 0xa5, sizeof(p));
	assert_int_equal(pkt_decode(NULL, 0, false, &p, &why), RB_EPROTO);
	assert_string_equal(why, "empty packet");
	assert_failed_pkt(&p, 0);

	/* A valid pointer with length 0 must not be dereferenced either. */
	why = NULL;
	assert_int_equal(pkt_decode(&one, 0, true, &p, &why), RB_EPROTO);
	assert_string_equal(why, "empty packet");
	assert_failed_pkt(&p, 0);
}

static void test_empty_payloads(void **state)
{
	static const uint8_t send0[] = { 0x10, 0xff, 0xfe };
	static const uint8_t send2[] = { 0x14, 0x00, 0x07, 0xab, 0xcd };
	static const uint8_t ack[] = { 0x20, 0x12, 0x34 };
	static const uint8_t nak[] = { 0x60, 0x00, 0x01 };
	uint8_t *buf;
	struct pkt p;

	(void)state;
	buf = exact_copy(send0, sizeof(send0));
	assert_int_equal(pkt_decode(buf, 3, false, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_SEND);
	assert_int_equal(p.msgtype, 0xfffe);
	assert_int_equal(p.msgid, 0);
	assert_ptr_equal(p.payload, buf + 3);
	assert_int_equal(p.payload_len, 0);
	free(buf);

	buf = exact_copy(send2, sizeof(send2));
	assert_int_equal(pkt_decode(buf, 5, false, &p, NULL), RB_OK);
	assert_int_equal(p.qos, 2);
	assert_int_equal(p.msgtype, 7);
	assert_int_equal(p.msgid, 0xabcd);
	assert_ptr_equal(p.payload, buf + 5);
	assert_int_equal(p.payload_len, 0);
	free(buf);

	buf = exact_copy(ack, sizeof(ack));
	assert_int_equal(pkt_decode(buf, 3, false, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_ACK);
	assert_int_equal(p.msgid, 0x1234);
	assert_int_equal(p.payload_len, 0);
	free(buf);

	buf = exact_copy(nak, sizeof(nak));
	assert_int_equal(pkt_decode(buf, 3, true, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_NAK);
	assert_int_equal(p.msgid, 1);
	assert_int_equal(p.payload_len, 0);
	free(buf);
}

static void test_rel_com_trailing_ignored(void **state)
{
	static const uint8_t rel[] = { 0x40, 0x00, 0x0b, 0xde, 0xad, 0xbe };
	/* DUP and QoS 1 are reported, not refused. */
	static const uint8_t com[] = { 0x5a, 0x00, 0x0b, 0x01 };
	uint8_t *buf;
	struct pkt p;

	(void)state;
	buf = exact_copy(rel, sizeof(rel));
	assert_int_equal(pkt_decode(buf, sizeof(rel), false, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_REL);
	assert_int_equal(p.msgid, 11);
	assert_int_equal(p.payload_len, 0);
	assert_non_null(p.payload);
	free(buf);

	buf = exact_copy(com, sizeof(com));
	assert_int_equal(pkt_decode(buf, sizeof(com), false, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_COM);
	assert_int_equal(p.qos, 1);
	assert_true(p.dup);
	assert_int_equal(p.msgid, 11);
	assert_int_equal(p.payload_len, 0);
	free(buf);
}

static void test_msgid_kept_on_failure(void **state)
{
	(void)state;
	/* QoS 3 on layouts that fix the msgid at byte 1. */
	assert_rejected(BYTES(0x26, 0x00, 0x0a), false, "qos 3 is invalid", 10);
	assert_rejected(BYTES(0x36, 0x12, 0x34, 0x00), true,
			"qos 3 is invalid", 0x1234);
	assert_rejected(BYTES(0x46, 0x00, 0x0b), false, "qos 3 is invalid", 11);
	assert_rejected(BYTES(0x5e, 0x00, 0x0b), false, "qos 3 is invalid", 11);
	assert_rejected(BYTES(0x66, 0xff, 0xff), true, "qos 3 is invalid",
			0xffff);
	/* ... but not when the msgid is cut short. */
	assert_rejected(BYTES(0x26, 0x00), false, "qos 3 is invalid", 0);
	/* NAK on a v1 connection. */
	assert_rejected(BYTES(0x60, 0x00, 0x0a, 0x7b, 0x7d), false,
			"NAK requires protocol rainbow.v2", 10);
	/* SEND with QoS 3 has no defined layout: no msgid. */
	assert_rejected(BYTES(0x16, 0x00, 0x01, 0x00, 0x0a, 0x7b), false,
			"qos 3 is invalid", 0);
	/* Unknown commands have no layout at all. */
	assert_rejected(BYTES(0x00, 0x00, 0x0a, 0x00, 0x0a), false,
			"unknown command 0", 0);
	assert_rejected(BYTES(0x92, 0x00, 0x0a, 0x00, 0x0a), true,
			"unknown command 9", 0);
	assert_rejected(BYTES(0x70, 0x00, 0x0a), true,
			"HELLO is sent by the server only", 0);
}

/*
 * Every first byte (command 0..15, QoS 0..3, DUP, reserved bit) with and
 * without v2, on a 7-byte frame long enough for any header.
 */
static void test_header_matrix(void **state)
{
	static const uint8_t tail[] = { 0x12, 0x34, 0x56, 0x78, 'x', 'y' };
	unsigned cmd, qos, dup, bit0, accepted[2] = { 0, 0 }, seen = 0;
	int v2;

	(void)state;
	for (v2 = 0; v2 <= 1; v2++)
	for (cmd = 0; cmd < 16; cmd++)
	for (qos = 0; qos < 4; qos++)
	for (dup = 0; dup < 2; dup++)
	for (bit0 = 0; bit0 < 2; bit0++) {
		uint8_t frame[7], *buf;
		bool known = (cmd >= 1 && cmd <= 5) || (cmd == 6 && v2);
		const char *why = NULL;
		char unknown[32];
		struct pkt p;
		int rc;

		frame[0] = (uint8_t)(cmd << 4 | dup << 3 | qos << 1 | bit0);
		memcpy(frame + 1, tail, sizeof(tail));
		buf = exact_copy(frame, sizeof(frame));
		memset(&p, 0xa5, sizeof(p));
		rc = pkt_decode(buf, sizeof(frame), v2, &p, &why);
		seen++;

		if (known && qos != 3) {
			size_t hl = cmd == PKT_SEND ? (qos ? 5 : 3) : 3;

			assert_int_equal(rc, RB_OK);
			accepted[v2]++;
			assert_int_equal(p.cmd, cmd);
			assert_int_equal(p.qos, qos);
			assert_int_equal(p.dup, dup);
			if (cmd == PKT_SEND) {
				assert_int_equal(p.msgtype, 0x1234);
				assert_int_equal(p.msgid, qos ? 0x5678 : 0);
			} else {
				assert_int_equal(p.msgtype, 0);
				assert_int_equal(p.msgid, 0x1234);
			}
			assert_ptr_equal(p.payload, buf + hl);
			assert_int_equal(p.payload_len,
					 cmd == PKT_REL || cmd == PKT_COM ?
					 0 : sizeof(frame) - hl);
		} else {
			assert_int_equal(rc, RB_EPROTO);
			const char *reason = unknown;

			snprintf(unknown, sizeof(unknown),
				 "unknown command %u", cmd);
			if (cmd == 7)
				reason = "HELLO is sent by the server only";
			else if (cmd == 6 && !v2)
				reason = "NAK requires protocol rainbow.v2";
			else if (cmd >= 1 && cmd <= 6)
				reason = "qos 3 is invalid";
			assert_non_null(why);
			assert_string_equal(why, reason);
			/* Only fixed-layout commands keep their msgid. */
			assert_failed_pkt(&p,
					  cmd >= 2 && cmd <= 6 ? 0x1234 : 0);
		}
		free(buf);
	}
	assert_int_equal(seen, 2 * 16 * 4 * 2 * 2);
	assert_int_equal(accepted[0], 5 * 3 * 2 * 2);
	assert_int_equal(accepted[1], 6 * 3 * 2 * 2);
}

static void test_large_payload(void **state)
{
	const size_t plen = 1024 * 1024;
	struct pkt in = { .cmd = PKT_SEND, .qos = 2, .dup = true,
			  .msgtype = 0xffff, .msgid = 0xfffe };
	uint8_t *payload, *wire;
	struct pkt out;
	size_t i;

	(void)state;
	payload = malloc(plen);
	wire = malloc(plen + 5);
	assert_non_null(payload);
	assert_non_null(wire);
	for (i = 0; i < plen; i++)
		payload[i] = (uint8_t)(i * 31 + (i >> 8));
	in.payload = payload;
	in.payload_len = plen;

	assert_int_equal(pkt_encode(&in, wire, plen + 4), 0);
	assert_int_equal(pkt_encode(&in, wire, plen + 5), plen + 5);
	assert_memory_equal(wire, ((const uint8_t[]){ 0x1c, 0xff, 0xff,
						      0xff, 0xfe }), 5);
	assert_memory_equal(wire + 5, payload, plen);

	assert_int_equal(pkt_decode(wire, plen + 5, false, &out, NULL), RB_OK);
	assert_int_equal(out.cmd, PKT_SEND);
	assert_int_equal(out.qos, 2);
	assert_true(out.dup);
	assert_int_equal(out.msgtype, 0xffff);
	assert_int_equal(out.msgid, 0xfffe);
	assert_ptr_equal(out.payload, wire + 5);
	assert_int_equal(out.payload_len, plen);
	assert_memory_equal(out.payload, payload, plen);
	free(wire);
	free(payload);
}

static void test_encode_v2_commands(void **state)
{
	static const uint8_t json[] = { '{', '}' };
	struct pkt nak = { .cmd = PKT_NAK, .msgid = 10, .payload = json,
			   .payload_len = sizeof(json) };
	struct pkt hello = { .cmd = PKT_HELLO, .payload = json,
			     .payload_len = sizeof(json) };
	uint8_t out[16];
	struct pkt p;

	(void)state;
	assert_int_equal(pkt_encode(&nak, out, sizeof(out)), 5);
	assert_memory_equal(out, ((const uint8_t[]){ 0x60, 0x00, 0x0a, '{',
						     '}' }), 5);
	assert_int_equal(pkt_decode(out, 5, true, &p, NULL), RB_OK);
	assert_int_equal(p.cmd, PKT_NAK);
	assert_int_equal(p.msgid, 10);
	assert_int_equal(p.payload_len, 2);
	assert_memory_equal(p.payload, json, 2);

	assert_int_equal(pkt_encode(&hello, out, sizeof(out)), 3);
	assert_memory_equal(out, ((const uint8_t[]){ 0x70, '{', '}' }), 3);
	assert_int_equal(pkt_encode(&hello, out, 2), 0);
}

static void test_encode_edge_cases(void **state)
{
	static const uint8_t junk[] = { 1, 2, 3 };
	struct pkt rel = { .cmd = PKT_REL, .msgid = 0x0102, .payload = junk,
			   .payload_len = sizeof(junk) };
	struct pkt ack = { .cmd = PKT_ACK, .msgid = 0xffff };
	uint8_t out[8];

	(void)state;
	/* REL carries no payload, whatever the struct says. */
	memset(out, 0xee, sizeof(out));
	assert_int_equal(pkt_encode(&rel, out, sizeof(out)), 3);
	assert_memory_equal(out, ((const uint8_t[]){ 0x40, 0x01, 0x02, 0xee }),
			    4);
	/* NULL payload is fine when empty. */
	assert_int_equal(pkt_encode(&ack, out, 3), 3);
	assert_memory_equal(out, ((const uint8_t[]){ 0x20, 0xff, 0xff }), 3);
	assert_int_equal(pkt_encode(&ack, NULL, 0), 0);
}

static void test_encode_header_all(void **state)
{
	unsigned cmd, qos, dup;

	(void)state;
	for (cmd = 1; cmd <= 7; cmd++)
	for (qos = 0; qos <= 2; qos++)
	for (dup = 0; dup <= 1; dup++) {
		struct pkt p = { .cmd = (uint8_t)cmd, .qos = (uint8_t)qos,
				 .dup = dup, .msgtype = 0xbeef,
				 .msgid = 0xcafe };
		uint8_t out[PKT_MAX_HDR + 1], want[PKT_MAX_HDR];
		size_t n = 1;

		want[0] = (uint8_t)(cmd * 16 + dup * 8 + qos * 2);
		if (cmd == PKT_SEND) {
			want[n++] = 0xbe;
			want[n++] = 0xef;
			if (qos) {
				want[n++] = 0xca;
				want[n++] = 0xfe;
			}
		} else if (cmd != PKT_HELLO) {
			want[n++] = 0xca;
			want[n++] = 0xfe;
		}
		memset(out, 0xee, sizeof(out));
		assert_int_equal(pkt_encode_header(&p, out), n);
		assert_memory_equal(out, want, n);
		assert_int_equal(out[n], 0xee);
		assert_int_equal(pkt_header_len((uint8_t)cmd, (uint8_t)qos), n);
	}
}

static void test_header_len_all(void **state)
{
	/* [cmd][qos]; 0 = no such header. */
	static const size_t want[16][4] = {
		[1] = { 3, 5, 5, 0 },
		[2] = { 3, 3, 3, 0 },
		[3] = { 3, 3, 3, 0 },
		[4] = { 3, 3, 3, 0 },
		[5] = { 3, 3, 3, 0 },
		[6] = { 3, 3, 3, 0 },
		[7] = { 1, 1, 1, 0 },
	};
	unsigned cmd, qos;

	(void)state;
	for (cmd = 0; cmd < 16; cmd++)
		for (qos = 0; qos < 4; qos++)
			assert_int_equal(pkt_header_len((uint8_t)cmd,
							(uint8_t)qos),
					 want[cmd][qos]);
	assert_int_equal(pkt_header_len(PKT_SEND, 255), 0);
	assert_int_equal(pkt_header_len(255, 0), 0);
}

static void test_cmd_name(void **state)
{
	static const char *const names[] = {
		[1] = "SEND", [2] = "ACK", [3] = "REC", [4] = "REL",
		[5] = "COM", [6] = "NAK", [7] = "HELLO",
	};
	unsigned cmd;

	(void)state;
	for (cmd = 0; cmd < 256; cmd++) {
		const char *want = cmd < RB_ARRAY_LEN(names) && names[cmd] ?
				   names[cmd] : "?";

		assert_string_equal(pkt_cmd_name((uint8_t)cmd), want);
	}
}

#define VECTOR_TESTS(id) \
	{ "decode_" #id, test_vector_decode, NULL, NULL, \
	  (void *)&vectors[id] }, \
	{ "encode_" #id, test_vector_encode, NULL, NULL, \
	  (void *)&vectors[id] }, \
	{ "truncated_" #id, test_vector_truncated, NULL, NULL, \
	  (void *)&vectors[id] }

int main(void)
{
	const struct CMUnitTest tests[] = {
		VECTOR_TESTS(V_SEND_Q0),
		VECTOR_TESTS(V_SEND_Q1),
		VECTOR_TESTS(V_SEND_Q1_DUP),
		VECTOR_TESTS(V_SEND_Q2),
		VECTOR_TESTS(V_SEND_Q2_DUP),
		VECTOR_TESTS(V_ACK),
		VECTOR_TESTS(V_ACK_EMPTY),
		VECTOR_TESTS(V_REC),
		VECTOR_TESTS(V_REC_EMPTY),
		VECTOR_TESTS(V_REL),
		VECTOR_TESTS(V_COM),
		VECTOR_TESTS(V_SERVER_SEND),
		cmocka_unit_test(test_short_packets),
		cmocka_unit_test(test_empty_buffer),
		cmocka_unit_test(test_empty_payloads),
		cmocka_unit_test(test_rel_com_trailing_ignored),
		cmocka_unit_test(test_msgid_kept_on_failure),
		cmocka_unit_test(test_header_matrix),
		cmocka_unit_test(test_large_payload),
		cmocka_unit_test(test_encode_v2_commands),
		cmocka_unit_test(test_encode_edge_cases),
		cmocka_unit_test(test_encode_header_all),
		cmocka_unit_test(test_header_len_all),
		cmocka_unit_test(test_cmd_name),
	};

	return cmocka_run_group_tests_name("packet", tests, NULL, NULL);
}
