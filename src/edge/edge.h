/*
 * edge.h - the edge thread: runs lws_service() and owns every struct lws,
 * WebSocket framing, per-connection receive buffers and send queues
 * (docs/architecture.md). It never blocks and never sees routing or QoS.
 *
 * Inputs (core -> edge, through edge_inbox()): XQ_ADOPT, XQ_SEND, XQ_CLOSE,
 * XQ_FLOW, XQ_STOP. Outputs (edge -> core, the queue given to edge_new()):
 * XQ_OPENED, XQ_RX, XQ_CLOSED, XQ_EDGE_DONE.
 *
 * Lifecycle (main thread): edge_new() creates the lws context and vhosts
 * (binding the TLS listener, if any), edge_start() spawns the thread,
 * edge_stop_thread() asks it to exit and joins, edge_free() releases all.
 */
#ifndef RB_EDGE_H
#define RB_EDGE_H

#include <stddef.h>

struct xq;
struct edge;

struct edge_opts {
	const char *bind;
	int tls_port;            /* 0 = no TLS (the core listens; the edges
	                          * adopt its sockets, XQF_TLS) */
	const char *tls_cert;
	const char *tls_key;
	size_t max_message_size; /* larger messages close with 1009 */
	size_t send_queue_bytes; /* past it QoS 0 pushes are dropped */
	size_t send_queue_hard_bytes; /* past it the connection closes with 1008 */
	int heartbeat;           /* seconds between pings, 0 = off */
	int heartbeat_timeout;   /* extra seconds before hang-up */
	int event_loop;          /* EDGE_LOOP_* */
};

enum { EDGE_LOOP_EPOLL, EDGE_LOOP_POLL };

/*
 * Messages that wait for one connection go out together, their frames built
 * in a buffer of this many bytes (one send(2)); a message too long for it
 * is written from its own buffer, lws putting the frame header in its
 * headroom and the edge patching a QoS 1/2 SEND's header in place. Such a
 * buffer must not be shared with another edge (src/edge/pool.c copies it).
 */
#define EDGE_WRITE_BATCH 16384
#define EDGE_IN_PLACE(len) ((len) + 10 > EDGE_WRITE_BATCH)

/* Edge index of count (pool.h). Returns NULL on failure (logged).
 * to_core receives its output. */
struct edge *edge_new(const struct edge_opts *opts, unsigned index, unsigned count,
		      struct xq *to_core);
/* The queue the core pushes into. Valid until edge_free(). */
struct xq *edge_inbox(struct edge *e);
int edge_start(struct edge *e);
/* Ask the thread to leave its loop and join it. Idempotent. */
void edge_stop_thread(struct edge *e);
void edge_free(struct edge *e);

#endif
