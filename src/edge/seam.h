/*
 * seam.h - the only channel between the edge thread (libwebsockets) and the
 * core thread (libevent): two queues of messages, one per direction
 * (docs/architecture.md).
 *
 * A queue is a mutex-protected intrusive FIFO with a doorbell: xq_push()
 * rings it only on the empty-to-non-empty transition, and the consumer
 * drains the whole queue at once with xq_drain(). A ring may find the queue
 * already empty (the consumer raced ahead); consumers accept that.
 * Connections cross the seam as 64-bit ids, never pointers.
 *
 * Ownership: xq_push() takes the message; xq_drain() hands the list to the
 * caller, which frees each message with xq_msg_free(). A message owns its
 * buf reference, its text and, for XQ_ADOPT only, its fd: xq_msg_free()
 * closes an XQ_ADOPT's fd if it is >= 0, so an ADOPT dropped anywhere
 * (a failed group commit, xq_free() at exit) cannot leak the socket.
 * Whoever hands the fd on (lws_adopt_socket*, which owns it from then on,
 * success or failure) or closes it itself sets m->fd = -1 first.
 *
 * No bound, by design. Neither queue refuses or drops a message: the
 * consumer's event loop must never wait for the other thread (two threads
 * each blocked on the other's full queue would deadlock), and what crosses
 * cannot be shed here: edge -> core carries every XQ_CLOSED (exactly one
 * per connection), XQ_OPENED, and in XQ_RX the clients' ACK/REC/COM that
 * the QoS state machines wait for; core -> edge carries the same
 * acknowledgements the other way, ADOPTs (sockets) and control messages.
 * The bounds sit where a policy can be applied: the edge's per-connection
 * send queues (send_queue_bytes: shed QoS 0, send_queue_hard_bytes: close
 * 1008), the core's per-connection forward queue (pauses reading through
 * XQ_FLOW), max_connections and max_message_size, and for pushes at the
 * REST API: the copies of XQ_SENDs not yet written by the edge, here or in
 * the connections' send queues, are counted (xq_backlog) and /send/
 * refuses new pushes past push_backlog. What
 * remains (a burst, a large fan-out during a group commit) is measured:
 * xq_depth() and xq_depth_max() are gauges for /metrics.
 */
#ifndef RB_SEAM_H
#define RB_SEAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rbuf;

enum xq_type {
	/* edge -> core */
	XQ_OPENED = 1, /* id: WebSocket established; flags XQF_V2/XQF_TLS;
	                * text: header block for TLS connections, made by
	                * kv_serialize (src/http/http_head.h) */
	XQ_RX,         /* id: one whole message in buf; flags XQF_TEXT */
	XQ_CLOSED,     /* id: connection gone (also if it never upgraded);
	                * code: close code seen, 0 if none; count: QoS 0
	                * pushes dropped for it as a slow consumer */
	XQ_EDGE_DONE,  /* edge closed everything after XQ_STOP */
	/* core -> edge */
	XQ_ADOPT,      /* id, fd: hand an accepted, peeked socket to lws (the
	                * message owns fd: see Ownership above);
	                * buf, if set: a head to replay (the socket's was read);
	                * flags XQF_TLS: a socket of the TLS port, untouched:
	                * lws runs both handshakes, then XQ_OPENED carries the
	                * head and XQF_TLS (the core learns of it only then) */
	XQ_SEND,       /* buf to every recipient in rcpts[0..nids); with
	                * XQF_PATCH each copy gets its recipient's msgid and
	                * DUP bit written into the header as it is sent */
	XQ_CLOSE,      /* id: close with code and reason (text, may be NULL) */
	XQ_FLOW,       /* id: flags XQF_ON resumes reading, else pauses it */
	XQ_STOP,       /* close every connection with 1001, then XQ_EDGE_DONE */
};

enum {
	XQF_V2 = 1,
	XQF_TLS = 2,
	XQF_TEXT = 4,
	XQF_ON = 8,
	XQF_PATCH = 16,     /* XQ_SEND: per-recipient msgid/DUP (QoS 1/2 SEND) */
	XQF_DROPPABLE = 32, /* XQ_SEND: QoS 0 push, dropped for slow consumers */
};

/* One recipient of an XQ_SEND. */
struct xq_rcpt {
	uint64_t id;
	uint16_t msgid;
	uint8_t dup;
};

struct xq_msg {
	struct xq_msg *next;
	uint8_t type;
	uint8_t flags;
	uint16_t code;
	int fd;           /* XQ_ADOPT only, owned; -1 otherwise */
	uint32_t count;   /* XQ_CLOSED: QoS 0 pushes dropped */
	uint64_t id;
	struct rbuf *buf; /* owned reference, or NULL */
	char *text;       /* owned, or NULL */
	size_t nids;
	struct xq_rcpt rcpts[]; /* XQ_SEND recipients */
};

typedef void (*xq_doorbell)(void *arg);

struct xq;

/* ring(arg) is called from the pushing thread, outside the lock. */
struct xq *xq_new(xq_doorbell ring, void *arg);
/* Frees the queue and any messages still in it. NULL-tolerant. */
void xq_free(struct xq *q);

/* New message with room for nids recipients; fields zeroed, fd = -1.
 * NULL on ENOMEM. */
struct xq_msg *xq_msg_new(uint8_t type, uint64_t id, size_t nids);
/* Frees m, dropping its buf reference and text and, for XQ_ADOPT, closing
 * fd if it is >= 0. NULL-tolerant. */
void xq_msg_free(struct xq_msg *m);

/* Any thread. Takes m. */
void xq_push(struct xq *q, struct xq_msg *m);
/* Consumer thread. Returns every queued message in FIFO order (NULL if none). */
struct xq_msg *xq_drain(struct xq *q);

/* Gauges, any thread, lock-free (a snapshot, exact only when the queue is
 * quiet): messages pushed and not yet drained, and the largest that number
 * has been since xq_new(). A depth read before the mark is never above it. */
size_t xq_depth(const struct xq *q);
size_t xq_depth_max(const struct xq *q);
/*
 * The backlog of an XQ_SEND queue: copies (recipients) pushed and not yet
 * settled. xq_push adds an XQ_SEND's nids; the consumer calls xq_settle
 * for each copy once it is written to its socket or dropped (not when it
 * is merely queued on its connection: those queues hold up to
 * send_queue_bytes each, seconds of work at a large fan-out). Read by the
 * producer for admission control (/send/ answers "busy" past
 * push_backlog), so a flood waits at the REST API instead of in memory.
 * xq_settled counts every copy settled so far: its rate is the edge's
 * delivery rate, from which /send/ tells a refused publisher how long to
 * wait.
 */
void xq_settle(struct xq *q, size_t copies);
size_t xq_backlog(const struct xq *q);
uint64_t xq_settled(const struct xq *q);

/* Process-wide connection id source, any thread; never 0, never reused.
 * The id is edge (mod nedges): the edge among nedges that holds it
 * (src/edge/pool.h). */
uint64_t conn_id_next(unsigned edge, unsigned nedges);

#endif
