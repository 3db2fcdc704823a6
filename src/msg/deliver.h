/*
 * deliver.h - pushes from the backend to clients (docs/protocol.md Pushing; docs/rest-api.md;
 * docs/rest-api.md): fan-out, downstream QoS 1/2 with retransmission, and
 * the /send/ receipt. Core thread only.
 *
 * A push is one refcounted packet and, for QoS 1/2, one small delivery
 * record per recipient (its connection's msgid, its state, its retry
 * timer); the edge writes each recipient's msgid and DUP bit into the
 * shared header as it sends. Deliveries move through the QoS store
 * (storage/qos_store.h) at every transition.
 *
 * The /send/ call is answered when every recipient acknowledged (ACK for
 * QoS 1, REC for QoS 2) or failed, or when its timeout passes; at that
 * point unacknowledged deliveries stop. The answer is "status":0 when at
 * least one recipient acknowledged (or is kept for later), else
 * "status":1 "timeout" over HTTP 200 (rest_status_codes = compat, the
 * original's) or 504 (strict). After a REC the delivery lives on
 * by itself, retransmitting REL until COM or until the connection ends.
 */
#ifndef RB_DELIVER_H
#define RB_DELIVER_H

#include <stddef.h>
#include <stdint.h>

struct core;
struct conn;
struct pkt;
struct httpd_req;

/*
 * Push payload as SEND(qos, msgtype) to the connections conns[0..n) and,
 * for QoS 1/2, queue it for the offline device sessions devices[0..ndev);
 * answer req (NULL: nobody waits) per docs/rest-api.md. Copies payload
 * once. timeout (seconds) bounds the wait for receipts.
 */
void deliver_push(struct core *c, struct httpd_req *req, const uint64_t *conns, size_t n,
		  char *const *devices, size_t ndev, uint8_t qos, uint16_t msgtype,
		  const void *payload, size_t len, double timeout);

/* cn just took its session: send what the session still owes it (DUP=1
 * where sent before; REL where it awaits COM), up to max_inflight_messages
 * at a time, oldest first. */
void deliver_resume(struct core *c, struct conn *cn);

/* An ACK, REC or COM from a client (answers to pushes). */
void deliver_on_answer(struct core *c, struct conn *cn, const struct pkt *p);

/* cn is going away: its deliveries fail. */
void deliver_conn_gone(struct core *c, struct conn *cn);

/* Answer every waiting push now (shutdown) and free them. */
void deliver_shutdown(struct core *c);

size_t deliver_in_flight(const struct core *c);
size_t deliver_pushes_waiting(const struct core *c);

#endif
