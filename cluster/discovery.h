/*
 * discovery.h - LAN cluster discovery (docs/cluster-protocol.md, Beacon):
 * a UDP socket on the first free port of udp_ports and a beacon timer on
 * the core's event_base. Every cluster_beacon_interval it sends an
 * authenticated beacon (node id random per start, incarnation = start time
 * in ms, the gateway's TCP port) to the broadcast address of every up IPv4
 * interface and to 255.255.255.255, each on every port of udp_ports, and
 * to each of cluster_seeds. A send that fails is logged once per
 * destination and that destination is backed off (doubling, up to 60 s),
 * never retried in a loop. Received beacons are decoded with the secret
 * and cluster name; malformed, other-version, foreign, forged, stale,
 * replayed and this node's own are ignored and counted apart
 * (rainbow_cluster_beacons_ignored_*_total). Peers unseen for
 * cluster_peer_timeout are dropped; a leaving beacon drops one at once.
 * On SIGTERM/SIGINT (and at the latest in discovery_free) one leaving
 * beacon goes to every destination, and beaconing stops.
 *
 * Core thread only.
 */
#ifndef RB_DISCOVERY_H
#define RB_DISCOVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/peers.h"

struct core;
struct discovery;

/* Bound and armed (events added to c->base), using c->conf's cluster_*
 * options, udp_ports and bind, and c->port. NULL on error (logged: no free
 * UDP port, bad seed, no random node id). */
struct discovery *discovery_new(struct core *c);

/* What discovery tells its watcher: a peer joined (or came back with a new
 * incarnation: JOINED again), or is gone (timed out, left, or replaced by
 * its new start, which is then reported JOINED). */
enum discovery_event { DISCOVERY_JOINED, DISCOVERY_GONE };
typedef void (*discovery_fn)(void *arg, enum discovery_event ev, const struct peer *p,
			     bool left);

/* One watcher (the mesh); fn runs on the core thread from the loop. */
void discovery_watch(struct discovery *d, discovery_fn fn, void *arg);

/* Send the leaving beacon now and stop beaconing (idempotent). */
void discovery_leave(struct discovery *d);

/* Leave (if not yet), then close the socket and free the events. NULL is
 * fine. Before the event_base goes. */
void discovery_free(struct discovery *d);

uint32_t discovery_self(const struct discovery *d);
uint64_t discovery_incarnation(const struct discovery *d);
/* The UDP port bound. */
int discovery_udp_port(const struct discovery *d);

/* The live peers, in no order: *out points at n of them, valid until the
 * loop runs again. Returns n. */
size_t discovery_peers(const struct discovery *d, const struct peer **out);

/* The clock of struct peer's last_seen_ms: CLOCK_MONOTONIC in ms. */
int64_t discovery_clock_ms(void);

#endif
