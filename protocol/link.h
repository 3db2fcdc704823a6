/*
 * link.h - the node-to-node TCP link codec of the LAN cluster
 * (docs/cluster-protocol.md Link). Pure apart from OpenSSL's HMAC and random
 * functions: no sockets, no allocation; any thread may call it.
 *
 * A link is a stream of frames; integers are big-endian:
 *   u32 length (of what follows: 1 + payload; 1 .. LINK_FRAME_MAX)
 *   u8  type (enum link_type)
 *   payload, whose layout depends on the type (see struct link_msg below;
 *   str = u16 length + bytes, blob = u32 length + bytes, any bytes)
 * A frame is exactly its layout: decoders refuse trailing bytes, unknown
 * types, out-of-range enums and reserved bits.
 *
 * Strings and blobs in a decoded message are borrowed: they point into the
 * buffer given to link_decode and live as long as it does. They are not
 * NUL-terminated.
 */
#ifndef RB_LINK_H
#define RB_LINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "protocol/rb.h"

#define LINK_VERSION 1
/* Largest frame after its length field (type + payload): a push payload,
 * a big interest set or presence list must fit or be split by the sender. */
#define LINK_FRAME_MAX (16u * 1024 * 1024)
#define LINK_HDR_LEN 5                  /* u32 length + u8 type */
#define LINK_CHALLENGE_LEN 32
#define LINK_MAC_LEN 32

enum link_type {
	LINK_HELLO = 1,
	LINK_AUTH = 2,
	LINK_PING = 3,
	LINK_PONG = 4,
	LINK_INTEREST_FULL = 5,
	LINK_INTEREST_DELTA = 6,
	LINK_PUBLISH = 7,
	LINK_RECEIPT = 8,
	LINK_OP = 9,
	LINK_OP_RESULT = 10,
	LINK_PRESENCE_REQ = 11,
	LINK_PRESENCE_RESP = 12,
	LINK_BYE = 13,
	LINK_DEVICES_FULL = 14,
	LINK_DEVICE_DELTA = 15,
	LINK_SESSION_TAKE = 16,
	LINK_SESSION_STATE = 17,
	LINK_SESSION_DONE = 18,
	LINK_INFO_REQ = 19,
	LINK_INFO_RESP = 20,
	LINK_TYPE_MAX = LINK_INFO_RESP,
};

/* Bytes of any length; p may be NULL when n is 0 (encode). */
struct link_str {
	const uint8_t *p;
	size_t n;
};

#define LINK_STR(s) ((struct link_str){ (const uint8_t *)(s), strlen(s) })

enum link_target { LINK_TO_CHANNEL = 1, LINK_TO_IDENTITY = 2, LINK_TO_DEVICE = 3 };
enum link_op_kind { LINK_OP_SUB = 1, LINK_OP_UNSUB = 2, LINK_OP_KICK = 3,
		    LINK_OP_OCCUPY = 4 };

/* INTEREST_FULL and PRESENCE_RESP flags: a big set may span several frames,
 * the first with FIRST (replaces what the receiver held), the last with LAST
 * (the set is complete); one frame carries both. */
#define LINK_PART_FIRST 0x01
#define LINK_PART_LAST 0x02

struct link_presence_entry {
	struct link_str identity, device, platform;
};

/* A stored delivery of a session (SESSION_STATE): state 1 WAIT_ACK,
 * 2 WAIT_REC, 3 WAIT_COM; qos 1 or 2. */
struct link_dlv_entry {
	uint16_t msgid;
	uint8_t state;
	bool sent;
	uint8_t qos;
	uint16_t msgtype;
	struct link_str payload;
};

/* A client's QoS 2 SEND remembered by a session: state 1 FORWARDING,
 * 2 REPLIED (reply set). */
struct link_up_entry {
	uint16_t msgid;
	uint8_t state;
	struct link_str reply;
};

/*
 * A list in a message. To encode, set items (an array of n). Decoding
 * checks the whole list and sets raw/raw_len/n (items is NULL): walk it with
 * link_names_next / link_presence_next.
 */
struct link_names {
	const struct link_str *items;    /* encode */
	size_t n;
	const uint8_t *raw;              /* decode: the entries' bytes */
	size_t raw_len;
};
struct link_presence_list {
	const struct link_presence_entry *items; /* encode */
	size_t n;
	const uint8_t *raw;
	size_t raw_len;
};

struct link_dlv_list {
	const struct link_dlv_entry *items;
	size_t n;
	const uint8_t *raw;
	size_t raw_len;
};
struct link_up_list {
	const struct link_up_entry *items;
	size_t n;
	const uint8_t *raw;
	size_t raw_len;
};

/*
 * One message. Payload layouts (after the type byte):
 * HELLO:          u8 version, u32 node id (!= 0), u64 incarnation,
 *                 u16 port, str cluster name, 32 bytes challenge
 * AUTH:           32 bytes mac (link_auth_mac)
 * PING, PONG:     u64 seq
 * INTEREST_FULL:  u8 flags (FIRST|LAST), u32 count, count x str channel
 * INTEREST_DELTA: u8 add (1) or remove (0), str channel
 * PUBLISH:        u64 push id, u8 target kind, str target, u8 qos (0..2),
 *                 u16 msgtype, u32 timeout ms, blob payload
 * RECEIPT:        u64 push id, u32 acked, u32 failed, u32 pending,
 *                 u8 has data (0/1), [blob data if has data]
 * OP:             u64 op id, u8 kind, str identity, str channel,
 *                 i32 code, str reason
 * OP_RESULT:      u64 op id, i32 rc (an rb_err)
 * PRESENCE_REQ:   u64 request id, str channel
 * PRESENCE_RESP:  u64 request id, u8 flags (FIRST|LAST), u32 count,
 *                 count x (str identity, str device, str platform)
 * BYE:            nothing
 * DEVICES_FULL:   as INTEREST_FULL (u.interest_full), naming devices whose
 *                 session the sender holds
 * DEVICE_DELTA:   as INTEREST_DELTA (u.interest_delta), a device
 * SESSION_TAKE:   u64 request id, str device
 * SESSION_STATE:  u64 request id, i32 rc (an rb_err; RB_OK: the session
 *                 follows), u16 next msgid,
 *                 u32 count, count x str channel,
 *                 u32 count, count x (u16 msgid, u8 state 1..3, u8 sent 0/1,
 *                   u8 qos 1..2, u16 msgtype, blob payload),
 *                 u32 count, count x (u16 msgid, u8 state 1..2, blob reply)
 * SESSION_DONE:   u64 request id, i32 rc
 * INFO_REQ:       u64 request id
 * INFO_RESP:      u64 request id, blob info (a JSON object: the node's
 *                 /serverinfo/?cluster=1 answer)
 */
struct link_msg {
	uint8_t type; /* enum link_type */
	union {
		struct link_hello {
			uint8_t version;
			uint32_t node_id;
			uint64_t incarnation;
			uint16_t port;
			struct link_str cluster;
			uint8_t challenge[LINK_CHALLENGE_LEN];
		} hello;
		struct {
			uint8_t mac[LINK_MAC_LEN];
		} auth;
		struct {
			uint64_t seq;
		} ping; /* PING and PONG */
		struct {
			uint8_t flags;
			struct link_names channels;
		} interest_full;
		struct {
			bool add;
			struct link_str channel;
		} interest_delta;
		struct {
			uint64_t push_id;
			uint8_t target_kind; /* enum link_target */
			struct link_str target;
			uint8_t qos;
			uint16_t msgtype;
			uint32_t timeout_ms;
			struct link_str payload;
		} publish;
		struct {
			uint64_t push_id;
			uint32_t acked, failed, pending;
			bool has_data;
			struct link_str data;
		} receipt;
		struct {
			uint64_t op_id;
			uint8_t kind; /* enum link_op_kind */
			struct link_str identity, channel;
			int32_t code;
			struct link_str reason;
		} op;
		struct {
			uint64_t op_id;
			int32_t rc;
		} op_result;
		struct {
			uint64_t req_id;
			struct link_str channel;
		} presence_req;
		struct {
			uint64_t req_id;
			uint8_t flags;
			struct link_presence_list members;
		} presence_resp;
		struct {
			uint64_t req_id;
			struct link_str device;
		} session_take;
		struct {
			uint64_t req_id;
			int32_t rc;
			uint16_t next_msgid;
			struct link_names channels;
			struct link_dlv_list dlvs;
			struct link_up_list ups;
		} session_state;
		struct {
			uint64_t req_id;
			int32_t rc;
		} session_done;
		struct {
			uint64_t req_id;
			struct link_str json; /* INFO_RESP */
		} info;
	} u;
};

/*
 * Encode m as one whole frame into out[0..cap). Returns the frame length
 * (LINK_HDR_LEN + payload), or RB_EINVAL (unknown type, out-of-range enum,
 * zero node id, a string over 65535 bytes, a NULL pointer with a non-zero
 * length, has_data false with data), RB_ETOOBIG (over LINK_FRAME_MAX, or
 * cap too small; out untouched then). With out NULL it only returns the
 * length (or the same errors), to size a buffer.
 */
int link_encode(const struct link_msg *m, uint8_t *out, size_t cap);

/*
 * Frame level: look at buf[0..len), which may hold a partial frame, several
 * frames, or anything. Returns the length of the first frame when it is
 * complete (LINK_HDR_LEN .. LINK_HDR_LEN + LINK_FRAME_MAX - 1), 0 when more
 * bytes are needed, RB_ETOOBIG when the announced length is over
 * LINK_FRAME_MAX (known from the first 4 bytes), RB_EPROTO when it is 0 or
 * the type is unknown (known from the first 5 bytes). The link must be
 * closed on an error: the stream cannot be resynchronised.
 */
int link_frame_len(const uint8_t *buf, size_t len);

/*
 * Decode the first frame of buf[0..len): as link_frame_len, and when a
 * frame is complete, its message into *m (strings borrowed from buf).
 * Returns the bytes consumed (> 0), 0 for "need more", or RB_ETOOBIG /
 * RB_EPROTO (bad payload too); on error or 0 *m is zeroed and *why (if
 * non-NULL) set to a static reason (NULL for 0).
 */
int link_decode(const uint8_t *buf, size_t len, struct link_msg *m, const char **why);

/*
 * Iterate a decoded list: *pos starts at 0; true with the next entry, false
 * at the end. Only for lists filled by link_decode (already validated).
 */
bool link_names_next(const struct link_names *l, size_t *pos, struct link_str *out);
bool link_presence_next(const struct link_presence_list *l, size_t *pos,
			struct link_presence_entry *out);
bool link_dlv_next(const struct link_dlv_list *l, size_t *pos, struct link_dlv_entry *out);
bool link_up_next(const struct link_up_list *l, size_t *pos, struct link_up_entry *out);

/* Static name of a type ("HELLO", ...); "?" when unknown. */
const char *link_type_name(uint8_t type);

/* A fresh random challenge (OpenSSL RAND_bytes): RB_OK or RB_EIO. */
int link_challenge(uint8_t out[LINK_CHALLENGE_LEN]);

/*
 * The handshake. Each side sends HELLO (its own challenge), then AUTH with
 * link_auth_mac(secret, its own HELLO as "prover", the peer's HELLO as
 * "verifier"), and checks the peer's AUTH with link_auth_verify (the roles
 * swapped). The MAC is HMAC-SHA256(secret,
 *   "rainbow-link-auth-v1" || verifier challenge || prover challenge ||
 *   u32 prover node id || u64 prover incarnation ||
 *   u32 verifier node id || u64 verifier incarnation)
 * so it proves the secret, is fresh (the verifier's challenge), and cannot
 * be reflected back (the roles' order differs) or moved to another pair of
 * nodes or incarnations. secret is NUL-terminated (NULL: RB_EINVAL).
 * link_auth_mac: RB_OK or RB_EIO/RB_EINVAL. link_auth_verify: RB_OK, or
 * RB_EREFUSED when mac does not verify (compared in constant time), or
 * RB_EINVAL/RB_EIO.
 */
int link_auth_mac(const char *secret, const struct link_hello *prover,
		  const struct link_hello *verifier, uint8_t out[LINK_MAC_LEN]);
int link_auth_verify(const char *secret, const struct link_hello *prover,
		     const struct link_hello *verifier, const uint8_t mac[LINK_MAC_LEN]);

#endif
