/*
 * mesh.h - the LAN cluster's node-to-node links (docs/cluster-protocol.md,
 * Link): one authenticated TCP link per pair of nodes, carrying the frames
 * of protocol/link.h over libevent bufferevents.
 *
 * Links share the gateway's main port: a link's first byte is 0, which no
 * HTTP request starts with, so the front door hands such sockets here
 * (door_on_link). The node with the lower id dials (the other one too if no
 * link came up within two peer timeouts, for one-way broadcast); both send
 * HELLO at once, then AUTH (a challenge-response MAC keyed by
 * cluster_secret); a link is up when the peer's AUTH verifies. Up links
 * carry PING every peer_timeout / 5 and are dropped when four in a row are
 * missed (checked at each PING), so a dead or cut-off node is dropped within
 * cluster_peer_timeout; a clean shutdown sends BYE. A dialer that lost its link (or never
 * got one) retries with jittered exponential backoff (100 ms .. 5 s) as
 * long as discovery knows the peer. A link whose unsent output passes
 * MESH_HIGH_WATER refuses more frames (RB_EAGAIN) until it drains: the
 * callers fail or drop what does not fit instead of queueing without bound.
 *
 * What the link protects: only holders of the secret can join or speak
 * (mutual authentication, bound to both nodes' ids, incarnations and fresh
 * challenges; a replayed handshake fails). What it does not, in plaintext:
 * frames after the handshake are neither encrypted nor individually
 * authenticated, so someone on the LAN path can read pushes and, with an
 * active attack, hijack a TCP stream. With cluster_tls_cert/key/ca set,
 * links run in mutual TLS (the door tells them by their first byte, 0x16),
 * which closes both; a TLS node never takes a plaintext link or the
 * reverse.
 *
 * Core thread only.
 */
#ifndef RB_MESH_H
#define RB_MESH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/link.h"

#define MESH_HIGH_WATER (8u * 1024 * 1024)

struct core;
struct mesh;

struct mesh_cb {
	/* A link to node came up (authenticated); its incarnation. */
	void (*up)(void *arg, uint32_t node, uint64_t incarnation);
	/* The link to node is gone (closed, timed out, node restarted). */
	void (*down)(void *arg, uint32_t node);
	/* A frame from an up link, other than PING/PONG/BYE. */
	void (*msg)(void *arg, uint32_t node, const struct link_msg *m);
	void *arg;
};

/* Peer statistics, for /serverinfo/ and /metrics. */
struct mesh_peer_info {
	uint32_t id;
	char addr[32];            /* ip:port (its main port) */
	uint64_t incarnation;
	bool discovered;          /* in discovery's peer table */
	bool up;                  /* authenticated link */
	const char *state;        /* "up", "connecting", "down" */
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t links_up, links_lost;
	size_t output_bytes;      /* unsent on the link */
	int64_t last_heard_ms;    /* ago; -1 never */
};

/* self/incarnation: this node's; uses c->conf's cluster_secret,
 * cluster_name, cluster_peer_timeout and registers with c->door. */
struct mesh *mesh_new(struct core *c, uint32_t self, uint64_t incarnation,
		      const struct mesh_cb *cb);
/* Discovery: a peer joined (ip host order, port its main TCP port). */
void mesh_peer_seen(struct mesh *m, uint32_t id, uint32_t ip, uint16_t port,
		    uint64_t incarnation);
/* Discovery dropped it; left: its leaving beacon (close the link now). */
void mesh_peer_gone(struct mesh *m, uint32_t id, bool left);

/* Send m to node: RB_OK, RB_ECLOSED (no up link), RB_EAGAIN (over the
 * high-water mark), or an encoding error. */
int mesh_send(struct mesh *m, uint32_t node, const struct link_msg *msg);
/* A frame encoded already (link_encode): the same answers. */
int mesh_send_raw(struct mesh *m, uint32_t node, const uint8_t *frame, size_t len);
bool mesh_is_up(const struct mesh *m, uint32_t node);
/* Close the link to node (why: for the log); it comes back by the usual
 * reconnect, and both sides resend their whole state then. */
void mesh_reset(struct mesh *m, uint32_t node, const char *why);
/* The nodes with an up link: up to cap into out; the total. */
size_t mesh_up_nodes(const struct mesh *m, uint32_t *out, size_t cap);
/* Every node known (discovered or linked): up to cap into out; the total. */
size_t mesh_peers(const struct mesh *m, struct mesh_peer_info *out, size_t cap);

/* BYE on every link and stop dialing (clean shutdown; idempotent). */
void mesh_leave(struct mesh *m);
void mesh_free(struct mesh *m);

#endif
