/*
 * fuzz_packet.c - libFuzzer target for the wire codec (protocol/packet.h).
 *
 * Every input is used twice:
 *  1. as a packet: pkt_decode on both protocol versions, against the
 *     contract (fields, where the payload points, what a failure leaves),
 *     then re-encoded: encode(decode(x)) gives x back (bit 0 of byte 0,
 *     reserved and ignored, aside) and decode(encode(decode(x))) the same
 *     fields;
 *  2. as a struct pkt (byte 0: cmd, qos, dup; 1-2 msgtype; 3-4 msgid; the
 *     rest payload): decode(encode(p)) == p for every encodable p.
 * libFuzzer hands over an exact-size heap copy, so any read past the end is
 * an AddressSanitizer report. A broken invariant aborts with a message.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/packet.h"
#include "protocol/rb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz_packet: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static uint16_t u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static bool same_pkt(const struct pkt *a, const struct pkt *b)
{
	return a->cmd == b->cmd && a->qos == b->qos && a->dup == b->dup &&
	       a->msgtype == b->msgtype && a->msgid == b->msgid &&
	       a->payload_len == b->payload_len &&
	       (a->payload_len == 0 ||
		memcmp(a->payload, b->payload, a->payload_len) == 0);
}

/* Encodes p into an exact-size buffer and a one-byte-short one. */
static uint8_t *encode_exact(const struct pkt *p, size_t *len)
{
	size_t hl = pkt_header_len(p->cmd, p->qos);
	size_t pl = p->cmd == PKT_REL || p->cmd == PKT_COM ? 0 : p->payload_len;
	size_t n = hl + pl;
	uint8_t *out, *small;

	CHECK(hl != 0);
	out = malloc(n);
	small = malloc(n);
	CHECK(out && small);
	CHECK(pkt_encode(p, out, n) == n);
	/* Too small: 0, nothing written. */
	memset(small, 0xee, n);
	CHECK(pkt_encode(p, small, n - 1) == 0);
	for (size_t i = 0; i < n; i++)
		CHECK(small[i] == 0xee);
	free(small);
	*len = n;
	return out;
}

static void check_decode(const uint8_t *data, size_t size, bool v2)
{
	const char *why = NULL;
	struct pkt p;
	int rc;

	memset(&p, 0xa5, sizeof(p));
	rc = pkt_decode(size ? data : NULL, size, v2, &p, &why);
	if (rc != RB_OK) {
		unsigned cmd = size ? data[0] >> 4 : 0;
		unsigned qos = size ? (data[0] >> 1) & 3 : 0;
		size_t off = 0;

		CHECK(rc == RB_EPROTO);
		CHECK(why != NULL && why[0] != '\0');
		CHECK(p.cmd == 0 && p.qos == 0 && !p.dup && p.msgtype == 0);
		CHECK(p.payload == NULL && p.payload_len == 0);
		/* The msgid survives only where the layout places it. */
		if (cmd >= PKT_ACK && cmd <= PKT_NAK)
			off = 1;
		else if (cmd == PKT_SEND && (qos == 1 || qos == 2))
			off = 3;
		CHECK(p.msgid == (off && size >= off + 2 ? u16(data + off) : 0));
		/* Accepted commands fail only for qos 3 or a short frame. */
		if (size && ((cmd >= 1 && cmd <= 5) || (cmd == 6 && v2)))
			CHECK(qos == 3 || size < pkt_header_len((uint8_t)cmd,
								(uint8_t)qos));
		return;
	}

	size_t hl = pkt_header_len(p.cmd, p.qos);
	bool has_payload = p.cmd != PKT_REL && p.cmd != PKT_COM;

	CHECK(size > 0);
	CHECK(p.cmd >= PKT_SEND && p.cmd <= (v2 ? PKT_NAK : PKT_COM));
	CHECK(p.cmd == data[0] >> 4);
	CHECK(p.qos <= 2 && p.qos == ((data[0] >> 1) & 3));
	CHECK(p.dup == ((data[0] >> 3) & 1));
	CHECK(hl != 0 && hl <= size);
	CHECK(p.payload == data + hl);
	CHECK(p.payload_len == (has_payload ? size - hl : 0));
	CHECK(p.msgtype == (p.cmd == PKT_SEND ? u16(data + 1) : 0));
	if (p.cmd == PKT_SEND)
		CHECK(p.msgid == (p.qos ? u16(data + 3) : 0));
	else
		CHECK(p.msgid == u16(data + 1));

	/* encode(decode(x)) == x, bit 0 (reserved, ignored) cleared. */
	size_t n;
	uint8_t *out = encode_exact(&p, &n);
	uint8_t hdr[PKT_MAX_HDR];
	struct pkt q;

	CHECK(n == (has_payload ? size : hl));
	CHECK(out[0] == (data[0] & 0xfe));
	CHECK(memcmp(out + 1, data + 1, n - 1) == 0);
	CHECK(pkt_encode_header(&p, hdr) == hl);
	CHECK(memcmp(hdr, out, hl) == 0);
	CHECK(pkt_decode(out, n, v2, &q, NULL) == RB_OK);
	CHECK(same_pkt(&p, &q));
	CHECK(q.payload == out + hl);
	free(out);
}

/* data as a struct pkt: decode(encode(p)) == p. */
static void check_encode(const uint8_t *data, size_t size)
{
	struct pkt p = { 0 }, q;
	const char *why = NULL;
	uint8_t *out;
	size_t n;

	if (size < 1)
		return;
	p.cmd = (uint8_t)(1 + (data[0] >> 4) % 7); /* 1..7 */
	p.qos = (uint8_t)((data[0] >> 1) & 3);
	if (p.qos == 3)
		p.qos = 0;
	p.dup = (data[0] >> 3) & 1;
	if (p.cmd == PKT_SEND && size >= 3)
		p.msgtype = u16(data + 1);
	if (size >= 5 && p.cmd != PKT_HELLO &&
	    (p.cmd != PKT_SEND || p.qos != 0))
		p.msgid = u16(data + 3);
	if (size > 5) {
		p.payload = data + 5;
		p.payload_len = size - 5;
	}
	CHECK(strcmp(pkt_cmd_name(p.cmd), "?") != 0);

	out = encode_exact(&p, &n);
	memset(&q, 0xa5, sizeof(q));
	if (p.cmd == PKT_HELLO) {
		/* Server to client only: the decoder refuses it. */
		CHECK(pkt_decode(out, n, true, &q, &why) == RB_EPROTO);
		CHECK(why && strcmp(why, "HELLO is sent by the server only") == 0);
		CHECK(n == 1 + p.payload_len && out[0] == (0x70 | p.dup << 3 |
							    p.qos << 1));
		CHECK(p.payload_len == 0 ||
		      memcmp(out + 1, p.payload, p.payload_len) == 0);
	} else {
		CHECK(pkt_decode(out, n, true, &q, &why) == RB_OK);
		if (p.cmd == PKT_REL || p.cmd == PKT_COM)
			p.payload_len = 0; /* not carried */
		CHECK(same_pkt(&p, &q));
		CHECK(pkt_decode(out, n, false, &q, NULL) ==
		      (p.cmd == PKT_NAK ? RB_EPROTO : RB_OK));
	}
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check_decode(data, size, false);
	check_decode(data, size, true);
	check_encode(data, size);
	return 0;
}
