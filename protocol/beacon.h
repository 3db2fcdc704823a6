/*
 * beacon.h - the UDP discovery beacon of the LAN cluster (docs/cluster-protocol.md
 * Beacon). Pure apart from OpenSSL's HMAC and random functions: no sockets, no
 * allocation; any thread may call it (a struct beacon_replay belongs to one
 * thread, the cluster's).
 *
 * One beacon is one UDP datagram; integers are big-endian:
 *   off  size
 *   0    4   magic "RBCN"
 *   4    1   version (1)
 *   5    1   flags: bit 0 leaving (clean shutdown); other bits zero
 *   6    4   node id (u32, non-zero, random per start)
 *   10   8   incarnation (u64)
 *   18   2   TCP port of the node's REST/link listener (non-zero)
 *   20   8   timestamp, unix ms (int64, >= 0)
 *   28   2   cluster name length n (1..BEACON_NAME_MAX)
 *   30   n   cluster name (any bytes)
 *   30+n 32  HMAC-SHA256(cluster secret, bytes 0 .. 30+n)
 * 62 + n bytes in all, nothing after the MAC.
 *
 * Node ids are 32 bits, as in the engine seam (src/msg/engine.h).
 */
#ifndef RB_BEACON_H
#define RB_BEACON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/rb.h"

#define BEACON_MAGIC "RBCN"
#define BEACON_VERSION 1
#define BEACON_NAME_MAX 64
#define BEACON_MAC_LEN 32
#define BEACON_HEAD_LEN 30           /* up to the name */
#define BEACON_MIN_LEN (BEACON_HEAD_LEN + 1 + BEACON_MAC_LEN)
#define BEACON_MAX_LEN (BEACON_HEAD_LEN + BEACON_NAME_MAX + BEACON_MAC_LEN)

#define BEACON_FLAG_LEAVING 0x01

/*
 * What beacon_decode and beacon_replay_check refuse, each its own rb_err so
 * that the cluster can count them apart.
 */
enum {
	BEACON_EMALFORMED = RB_EPROTO,   /* short, bad length, trailing bytes,
					  * zero node id or port, unknown flags,
					  * negative timestamp */
	BEACON_EVERSION = RB_EINVAL,     /* not "RBCN", or another version */
	BEACON_EFOREIGN = RB_ENOTFOUND,  /* another cluster's name */
	BEACON_EMAC = RB_EREFUSED,       /* MAC does not verify: forged, or
					  * another secret */
	BEACON_ESTALE = RB_ETIMEDOUT,    /* timestamp too old or in the future */
	BEACON_EREPLAY = RB_EEXIST,      /* not newer than one already accepted */
};

struct beacon {
	uint32_t node_id;        /* non-zero */
	uint64_t incarnation;
	uint16_t port;           /* non-zero */
	bool leaving;
	int64_t timestamp_ms;    /* >= 0 */
	char name[BEACON_NAME_MAX + 1]; /* NUL-terminated on decode; may hold NULs
					 * inside, see name_len */
	size_t name_len;         /* 1..BEACON_NAME_MAX */
};

/*
 * Fill b->name from a NUL-terminated name: RB_OK, or RB_EINVAL when name is
 * NULL, empty or longer than BEACON_NAME_MAX.
 */
int beacon_set_name(struct beacon *b, const char *name);

/*
 * Encode b into out[0..cap), MAC keyed by secret (NUL-terminated; NULL is
 * RB_EINVAL; "" is allowed here and is the caller's policy). Returns the
 * length (62 + name_len), or RB_EINVAL (zero node id or port, name_len out of
 * range, negative timestamp), RB_ETOOBIG (cap too small; out untouched), or
 * RB_EIO (HMAC failed).
 */
int beacon_encode(const struct beacon *b, const char *secret, uint8_t *out, size_t cap);

/*
 * Decode and authenticate one datagram in[0..len). Checks, in this order:
 * structure's minimum (< 5 bytes: BEACON_EMALFORMED), magic and version
 * (BEACON_EVERSION), the rest of the structure (BEACON_EMALFORMED), the
 * cluster name equal to cluster_name (BEACON_EFOREIGN; the name is not yet
 * authenticated, so this only sorts foreign traffic), the MAC in constant time
 * (BEACON_EMAC), then |timestamp - now_ms| <= max_skew_ms (BEACON_ESTALE; a
 * negative max_skew_ms accepts nothing). RB_OK fills *out; on any error *out
 * is zeroed and *why (if non-NULL) is a static reason. NULL secret or
 * cluster_name is RB_EINVAL. No replay check: see beacon_replay_check.
 */
int beacon_decode(const uint8_t *in, size_t len, const char *secret,
		  const char *cluster_name, int64_t now_ms, int64_t max_skew_ms,
		  struct beacon *out, const char **why);

/* A random non-zero node id (OpenSSL RAND_bytes); 0 when the RNG fails. */
uint32_t beacon_random_node_id(void);

/*
 * Replay protection: per node id, the last (incarnation, timestamp) accepted.
 * A beacon is accepted only when its pair is greater (incarnation first, then
 * timestamp) than the one remembered for its node; an unknown node is always
 * accepted. The table holds BEACON_REPLAY_SLOTS nodes; a new node beyond that
 * evicts the one accepted longest ago. An evicted node's old beacons would be
 * accepted again, but only within the decoder's timestamp window, and only
 * when more than BEACON_REPLAY_SLOTS distinct authenticated nodes beacon at
 * once (every one of them holds the secret): far more than a LAN cluster.
 * There is deliberately no "forget": a node that left must stay remembered,
 * or its last beacon (still inside the window) could be replayed to revive it.
 * Plain struct, no allocation: init it, then call check; one thread.
 */
#define BEACON_REPLAY_SLOTS 256

struct beacon_replay {
	struct beacon_replay_slot {
		uint32_t node_id;       /* 0: free */
		uint64_t incarnation;
		int64_t timestamp_ms;
		uint64_t used;          /* tick of the last acceptance */
	} slot[BEACON_REPLAY_SLOTS];
	uint64_t tick;
};

void beacon_replay_init(struct beacon_replay *r);

/*
 * RB_OK (and remembered) when b is newer than anything accepted from its
 * node, else BEACON_EREPLAY (nothing changes). Call it only on beacons that
 * beacon_decode accepted: an unauthenticated one must not move the table.
 */
int beacon_replay_check(struct beacon_replay *r, const struct beacon *b);

#endif
