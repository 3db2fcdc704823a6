/*
 * peers.h - the discovery peer table: node id -> address, TCP port,
 * incarnation, last seen. Pure (no sockets, no clock: callers pass now_ms);
 * one thread, the core's. Fed only with beacons that beacon_decode and
 * beacon_replay_check accepted and that are not this node's own.
 */
#ifndef RB_PEERS_H
#define RB_PEERS_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/beacon.h"

/* More authenticated nodes than this are not tracked (a LAN cluster is
 * far smaller); the beacon of one more is ignored, see PEER_FULL. */
#define PEERS_MAX 256

struct peer {
	uint32_t id;
	uint32_t ip;           /* IPv4 source address of its beacon, host order */
	uint16_t port;         /* its TCP (REST/link) port, from the beacon */
	uint64_t incarnation;
	int64_t last_seen_ms;
};

struct peer_table {
	struct peer p[PEERS_MAX];
	size_t n;
};

enum peer_event {
	PEER_REFRESHED,  /* known: last seen (and address) updated */
	PEER_JOINED,     /* new */
	PEER_REPLACED,   /* new, and it replaced *old: the same ip and TCP port
			  * with a lower incarnation (that node restarted) */
	PEER_LEFT,       /* a leaving beacon: removed, *old is what it was */
	PEER_IGNORED,    /* a leaving beacon from an unknown node */
	PEER_FULL,       /* new, but PEERS_MAX are tracked: ignored */
};

void peers_init(struct peer_table *t);

/* One accepted beacon b from ip at now_ms. *old (may be NULL) receives the
 * removed entry on PEER_REPLACED and PEER_LEFT. */
enum peer_event peers_seen(struct peer_table *t, const struct beacon *b, uint32_t ip,
			   int64_t now_ms, struct peer *old);

/* Remove every peer last seen more than timeout_ms before now_ms; fn (may
 * be NULL) sees each before it goes. Returns how many went. */
size_t peers_expire(struct peer_table *t, int64_t now_ms, int64_t timeout_ms,
		    void (*fn)(void *arg, const struct peer *p), void *arg);

/* "a.b.c.d:port" of p into buf. */
void peer_addr(const struct peer *p, char *buf, size_t len);

#endif
