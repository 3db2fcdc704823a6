/*
 * packet.h - the Rainbow wire codec (docs/protocol.md Packets, rainbow.v2). Pure: no I/O,
 * no allocation, no threads; any thread may call it.
 *
 * One packet is one binary WebSocket message. Integers are big-endian.
 *   byte 0: command<<4 | dup<<3 | qos<<1   (bit 0 is reserved and ignored)
 *   SEND qos0:    hdr, msgtype:u16, payload...
 *   SEND qos1/2:  hdr, msgtype:u16, msgid:u16, payload...
 *   ACK / REC:    hdr, msgid:u16, payload...
 *   REL / COM:    hdr, msgid:u16             (trailing bytes are ignored)
 *   NAK (v2):     hdr, msgid:u16, json
 *   HELLO (v2):   hdr, json                  (server to client only)
 */
#ifndef RB_PACKET_H
#define RB_PACKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum pkt_cmd {
	PKT_SEND = 1,
	PKT_ACK = 2,
	PKT_REC = 3,
	PKT_REL = 4,
	PKT_COM = 5,
	PKT_NAK = 6,   /* v2 only */
	PKT_HELLO = 7, /* v2 only, server to client */
};

/* Largest fixed header: hdr + msgtype + msgid. */
#define PKT_MAX_HDR 5

struct pkt {
	uint8_t cmd;            /* enum pkt_cmd */
	uint8_t qos;            /* 0..2 */
	bool dup;
	uint16_t msgtype;       /* SEND only */
	uint16_t msgid;         /* SEND qos>0, ACK, REC, REL, COM, NAK; else 0 */
	const uint8_t *payload; /* borrowed: points into the decoded buffer */
	size_t payload_len;
};

/*
 * Decode one packet from buf[0..len). On success fills *out (payload points
 * into buf) and returns RB_OK. On malformed input returns RB_EPROTO and sets
 * *why (if non-NULL) to a static, human-readable reason such as
 * "packet too short", "unknown command 9", "qos 3 is invalid".
 * Commands 1..5 are always accepted; 6 (NAK) only when v2 is true; 7 (HELLO)
 * and 8..15 never (server-only or undefined). QoS 3 is rejected for every
 * command; QoS 0..2 and DUP are accepted (and reported) on any command.
 * Empty payloads are valid. On success payload is never NULL (it points just
 * past the header even when payload_len is 0); REL/COM report payload_len 0.
 * On failure *out is zeroed except msgid: when decoding fails after the msgid
 * was readable, out->msgid holds it (so a NAK can name it), else 0. It is
 * readable when the command's layout places it (ACK, REC, REL, COM, NAK, and
 * SEND with QoS 1 or 2; not SEND QoS 3, whose layout is undefined) and len
 * covers it.
 */
int pkt_decode(const uint8_t *buf, size_t len, bool v2, struct pkt *out,
	       const char **why);

/*
 * Length of the fixed header (before payload) for a command and QoS; 0 when
 * cmd is not 1..7 or qos is not 0..2.
 */
size_t pkt_header_len(uint8_t cmd, uint8_t qos);

/*
 * Write p's fixed header (not its payload) into out; returns bytes written
 * (1..PKT_MAX_HDR). p->payload is ignored. Never fails for cmd 1..7 and
 * qos 0..2 (asserted).
 */
size_t pkt_encode_header(const struct pkt *p, uint8_t out[PKT_MAX_HDR]);

/*
 * Encode a whole packet (header + p->payload) into out[0..cap). Returns the
 * total length, or 0 if cap is too small (out is then untouched). REL and COM
 * carry no payload, so theirs is ignored. p->payload may be NULL when
 * p->payload_len is 0.
 */
size_t pkt_encode(const struct pkt *p, uint8_t *out, size_t cap);

/* Static name of a command ("SEND", "ACK", ...); "?" when unknown. */
const char *pkt_cmd_name(uint8_t cmd);

#endif
