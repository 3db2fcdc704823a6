/*
 * packet.c - the Rainbow wire codec. The contract is in packet.h.
 */
#include "protocol/packet.h"

#include <assert.h>
#include <string.h>

#include "protocol/rb.h"

/*
 * Reasons must be static (the caller logs them after we return), so an
 * unknown command cannot be formatted on the fly: one string per code.
 */
static const char *const unknown_cmd[16] = {
	[0] = "unknown command 0",
	[8] = "unknown command 8",
	[9] = "unknown command 9",
	[10] = "unknown command 10",
	[11] = "unknown command 11",
	[12] = "unknown command 12",
	[13] = "unknown command 13",
	[14] = "unknown command 14",
	[15] = "unknown command 15",
};

static uint16_t get_u16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/*
 * Where the msgid sits, or 0 when this command/QoS has none. Known even for
 * packets we reject (NAK on v1, QoS 3 on a non-SEND), because their layout
 * does not depend on what made them invalid; a SEND with QoS 3 has no
 * defined layout, so its bytes 3..4 are not trusted as an id.
 */
static size_t msgid_offset(unsigned cmd, unsigned qos)
{
	switch (cmd) {
	case PKT_SEND:
		return qos == 1 || qos == 2 ? 3 : 0;
	case PKT_ACK:
	case PKT_REC:
	case PKT_REL:
	case PKT_COM:
	case PKT_NAK:
		return 1;
	default:
		return 0;
	}
}

/* REL and COM end at the msgid; everything else runs to the frame's end. */
static bool has_payload(unsigned cmd)
{
	return cmd != PKT_REL && cmd != PKT_COM;
}

size_t pkt_header_len(uint8_t cmd, uint8_t qos)
{
	if (qos > 2)
		return 0;
	switch (cmd) {
	case PKT_SEND:
		return qos == 0 ? 3 : 5;
	case PKT_ACK:
	case PKT_REC:
	case PKT_REL:
	case PKT_COM:
	case PKT_NAK:
		return 3;
	case PKT_HELLO:
		return 1;
	default:
		return 0;
	}
}

int pkt_decode(const uint8_t *buf, size_t len, bool v2, struct pkt *out,
	       const char **why)
{
	const char *reason;
	unsigned cmd, qos;
	size_t off, hl;
	uint16_t msgid = 0;

	assert(out != NULL);
	assert(buf != NULL || len == 0);
	memset(out, 0, sizeof(*out));

	if (len == 0) {
		reason = "empty packet";
		goto fail;
	}
	cmd = buf[0] >> 4;
	qos = (buf[0] >> 1) & 3;

	/* Read before validating so that a rejection can still be NAKed. */
	off = msgid_offset(cmd, qos);
	if (off != 0 && len >= off + 2)
		msgid = get_u16(buf + off);

	if (cmd == 0 || cmd > PKT_HELLO) {
		reason = unknown_cmd[cmd];
		goto fail;
	}
	if (cmd == PKT_HELLO) {
		reason = "HELLO is sent by the server only";
		goto fail;
	}
	if (cmd == PKT_NAK && !v2) {
		reason = "NAK requires protocol rainbow.v2";
		goto fail;
	}
	if (qos == 3) {
		reason = "qos 3 is invalid";
		goto fail;
	}
	hl = pkt_header_len((uint8_t)cmd, (uint8_t)qos);
	if (len < hl) {
		reason = "packet too short";
		goto fail;
	}

	out->cmd = (uint8_t)cmd;
	out->qos = (uint8_t)qos;
	out->dup = (buf[0] >> 3) & 1;
	out->msgid = msgid;
	if (cmd == PKT_SEND)
		out->msgtype = get_u16(buf + 1);
	/* Never NULL, even when empty, so callers may memcpy it blindly. */
	out->payload = buf + hl;
	out->payload_len = has_payload(cmd) ? len - hl : 0;
	return RB_OK;

fail:
	out->msgid = msgid;
	if (why != NULL)
		*why = reason;
	return RB_EPROTO;
}

size_t pkt_encode_header(const struct pkt *p, uint8_t out[PKT_MAX_HDR])
{
	size_t hl = pkt_header_len(p->cmd, p->qos);

	assert(hl != 0);
	if (hl == 0)
		return 0;
	out[0] = (uint8_t)(p->cmd << 4 | (p->dup ? 1 : 0) << 3 | p->qos << 1);
	if (p->cmd == PKT_SEND) {
		put_u16(out + 1, p->msgtype);
		if (p->qos != 0)
			put_u16(out + 3, p->msgid);
	} else if (hl == 3) {
		put_u16(out + 1, p->msgid);
	}
	return hl;
}

size_t pkt_encode(const struct pkt *p, uint8_t *out, size_t cap)
{
	uint8_t hdr[PKT_MAX_HDR];
	size_t hl, pl;

	hl = pkt_encode_header(p, hdr);
	pl = has_payload(p->cmd) ? p->payload_len : 0;
	assert(pl == 0 || p->payload != NULL);
	/* Checked before any write, and without hl + pl overflowing. */
	if (hl == 0 || cap < hl || cap - hl < pl)
		return 0;
	memcpy(out, hdr, hl);
	if (pl != 0)
		memcpy(out + hl, p->payload, pl);
	return hl + pl;
}

const char *pkt_cmd_name(uint8_t cmd)
{
	switch (cmd) {
	case PKT_SEND: return "SEND";
	case PKT_ACK: return "ACK";
	case PKT_REC: return "REC";
	case PKT_REL: return "REL";
	case PKT_COM: return "COM";
	case PKT_NAK: return "NAK";
	case PKT_HELLO: return "HELLO";
	}
	return "?";
}
