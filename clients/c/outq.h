/*
 * outq.h - a connection's outbound SENDs (librainbow): the queue of those
 * not yet written, in the order rb_send() took them, and the flight list of
 * QoS 1/2 ones written and awaiting their answer, which hold a message id.
 * Pure (no I/O, no lws); the connection's owner thread only.
 *
 * Life of a message: rbc_msg_new -> rbc_outq_push (QUEUED) -> rbc_outq_take
 * when the socket is writable: QoS 0 leaves the queue (the caller writes and
 * frees it); QoS 1/2 gets a message id (the next free one after the last,
 * 1..65535, never one held) and moves to the flight list (SENT). ACK, NAK or
 * a timeout end it (rbc_outq_drop); REC moves a QoS 2 one to RELEASING until
 * COM. After a lost connection rbc_outq_requeue puts the SENT ones back at
 * the head of the queue, in their original order, marked dup and keeping
 * their ids (the gateway's QoS 2 dedup keys on them); RELEASING ones stay
 * (the caller sends their REL again). Order is strict: a message waits while
 * the one before it waits (no free id, max_flight reached).
 */
#ifndef RBC_OUTQ_H
#define RBC_OUTQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "clients/c/rainbow.h"
#include "protocol/packet.h"

/* Bytes kept free before a packet for the transport's framing (lws'
 * LWS_PRE; rainbow.c asserts it fits). */
#define RBC_HEADROOM 16

enum rbc_mstate {
	RBC_QUEUED = 0, /* in the queue (perhaps again, with its id) */
	RBC_SENT,       /* in flight, awaiting ACK / REC (or a NAK) */
	RBC_RELEASING,  /* QoS 2 after REC: REL sent, awaiting COM */
};

struct rbc_msg {
	struct rbc_msg *next;
	int64_t deadline;   /* monotonic microseconds; 0: none */
	rb_send_fn cb;      /* NULL once completed (RELEASING) */
	void *arg;
	size_t len;         /* payload bytes */
	uint16_t msgtype;
	uint16_t msgid;     /* 0 until taken (QoS 1/2) */
	uint8_t qos;
	uint8_t state;      /* enum rbc_mstate */
	bool dup;           /* written before: the next write sets DUP */
	uint8_t buf[];      /* RBC_HEADROOM + PKT_MAX_HDR + len; payload last */
};

/* A QUEUED message with a copy of data[0..len) (data may be NULL when len
 * is 0); NULL when out of memory or qos > 2. Freed with free(). */
struct rbc_msg *rbc_msg_new(uint16_t msgtype, uint8_t qos, const void *data, size_t len);

static inline uint8_t *rbc_msg_payload(struct rbc_msg *m)
{
	return m->buf + RBC_HEADROOM + PKT_MAX_HDR;
}

/*
 * Encode m's SEND header (command, DUP, QoS, msgtype, msgid) just before
 * its payload; returns the first byte of the packet, with at least
 * RBC_HEADROOM bytes of m->buf before it, and its total length in *len.
 */
uint8_t *rbc_msg_frame(struct rbc_msg *m, size_t *len);

struct rbc_outq {
	struct rbc_msg *q_head, *q_tail; /* to write, in order */
	struct rbc_msg *f_head, *f_tail; /* in flight, in order of first write */
	uint32_t nqueued;                /* in the queue */
	uint32_t nflight;                /* in the flight list */
	uint32_t nids;                   /* holding an id: flight + requeued */
	uint32_t max_flight;             /* cap of nids for new ids, 1..65535 */
	uint16_t last_id;                /* the last id given */
};

/* An empty queue; max_flight 0 or over 65535 counts as 65535. */
void rbc_outq_init(struct rbc_outq *q, uint32_t max_flight);

/* Append a QUEUED message (ownership passes to q). */
void rbc_outq_push(struct rbc_outq *q, struct rbc_msg *m);

/* Whether rbc_outq_take() would return a message. */
bool rbc_outq_ready(const struct rbc_outq *q);

/*
 * The next message to write, or NULL (empty queue, or its head needs a new
 * id and nids == max_flight). QoS 0: unlinked, the caller owns it. QoS 1/2:
 * given an id if it has none, moved to the flight tail as SENT; q keeps it.
 */
struct rbc_msg *rbc_outq_take(struct rbc_outq *q);

/* The message in flight with this id, or NULL. */
struct rbc_msg *rbc_outq_find(const struct rbc_outq *q, uint16_t msgid);

/* Unlink m from the queue or the flight list (its id is free again); the
 * caller owns it. */
void rbc_outq_drop(struct rbc_outq *q, struct rbc_msg *m);

/* After a lost connection: SENT messages back to the queue head (see
 * above). Returns how many. */
uint32_t rbc_outq_requeue(struct rbc_outq *q);

/*
 * One message whose deadline is <= now (queued or SENT; RELEASING ones have
 * none), unlinked and owned by the caller, or NULL when none is. When it
 * returns NULL, *next (if not NULL) is the earliest deadline left, 0 if
 * none (call it until it returns NULL).
 */
struct rbc_msg *rbc_outq_expired(struct rbc_outq *q, int64_t now, int64_t *next);

/* Any message (queue first, then flight), unlinked, or NULL when empty:
 * to fail them all. */
struct rbc_msg *rbc_outq_pop(struct rbc_outq *q);

/* Messages held: queued + in flight. */
static inline size_t rbc_outq_count(const struct rbc_outq *q)
{
	return (size_t)q->nqueued + q->nflight;
}

#endif
