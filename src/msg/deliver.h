/*
 * deliver.h - local delivery of pushes (docs/protocol.md Pushing): fan-out,
 * downstream QoS 1/2 with retransmission, each recipient a leg of its push
 * (push.h). Core thread only.
 *
 * A push is one refcounted packet and, for QoS 1/2, one small delivery
 * record per recipient (its connection's msgid, its state, its retry
 * timer); the edge writes each recipient's msgid and DUP bit into the
 * shared header as it sends. Deliveries move through the QoS store
 * (storage/qos_store.h) at every transition.
 *
 * A push's receipt is complete when every recipient acknowledged (ACK for
 * QoS 1, REC for QoS 2) or failed, or when its timeout passes; at that
 * point unacknowledged deliveries stop, except a session's, which stay
 * (pending). After a REC the delivery lives on by itself, retransmitting
 * REL until COM or until the connection ends.
 */
#ifndef RB_DELIVER_H
#define RB_DELIVER_H

#include <stddef.h>
#include <stdint.h>

struct core;
struct conn;
struct pkt;
struct push;

/*
 * Deliver payload as SEND(qos, msgtype) to the connections conns[0..n)
 * here and, for QoS 1/2, queue it for the offline device sessions
 * devices[0..ndev). QoS 1/2: every recipient becomes one outcome of p: a
 * delivery leg (acknowledged, failed, or pending when its session keeps
 * it), or an outcome counted at once (closed, over a cap, queued offline);
 * p is not sealed here. QoS 0: p is NULL. Copies payload once. Returns how
 * many SENDs went to connections now.
 */
size_t deliver_push(struct core *c, struct push *p, const uint64_t *conns, size_t n,
		    char *const *devices, size_t ndev, uint8_t qos, uint16_t msgtype,
		    const void *payload, size_t len);

/* cn just took its session: send what the session still owes it (DUP=1
 * where sent before; REL where it awaits COM), up to max_inflight_messages
 * at a time, oldest first. */
void deliver_resume(struct core *c, struct conn *cn);

/* An ACK, REC or COM from a client (answers to pushes). */
void deliver_on_answer(struct core *c, struct conn *cn, const struct pkt *p);

/* cn is going away: its deliveries fail. */
void deliver_conn_gone(struct core *c, struct conn *cn);

/* Complete every waiting push now (shutdown). */
void deliver_shutdown(struct core *c);

size_t deliver_in_flight(const struct core *c);
size_t deliver_pushes_waiting(const struct core *c);

#endif
