/*
 * forward.h - turning client packets into backend calls and backend
 * answers into replies (docs/protocol.md Forwarding, rainbow.v2, Idempotency). Core thread only.
 *
 * Per connection, SENDs wait in a FIFO and at most forward_concurrency of
 * them are in flight, started in arrival order. The queue is bounded by
 * max_pending_forwards and forward_queue_bytes; a SEND beyond either is
 * refused (NAK 429 under v2) and counted. Reading from the client pauses
 * while the queue is over half of either bound and resumes below a quarter
 * (hysteresis), so a well-behaved client is slowed down, not refused.
 *
 * Upstream QoS 2 goes through the QoS store: a duplicate SEND is answered
 * from the stored reply without a backend call; REL releases it; COM
 * answers every REL, known or not.
 */
#ifndef RB_FORWARD_H
#define RB_FORWARD_H

#include <stdbool.h>

struct core;
struct conn;
struct rbuf;

/* NAK codes (B.1): HTTP-like numbers, stable for clients to switch on. */
enum nak_code {
	NAK_MALFORMED = 400,   /* the packet could not be decoded */
	NAK_INVALID = 422,     /* the backend sent RAINBOWREQUESTINVALID */
	NAK_LIMIT = 429,       /* over a per-connection forward limit */
	NAK_BACKEND = 502,     /* the backend answered non-2xx or unusably */
	NAK_UNAVAILABLE = 503, /* backend unreachable, or no forward_url */
	NAK_TIMEOUT = 504,     /* backend_timeout passed */
};

/* One whole WebSocket message from cn. Takes a reference on buf if needed. */
void fwd_on_message(struct core *c, struct conn *cn, struct rbuf *buf, bool text);

/* cn is going away: drop its queued SENDs (in-flight ones finish and are
 * discarded when their connection is not found). */
void fwd_conn_gone(struct core *c, struct conn *cn);

#endif
