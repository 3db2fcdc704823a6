/*
 * pool.h - the edge threads (edge_threads of them, default one per CPU):
 * each runs its own lws context over its own connections (Debian's lws is
 * built with LWS_MAX_SMP 1, one service thread per context), and the core
 * talks to all of them through this one object (docs/architecture.md).
 *
 * A connection lives on one edge for its whole life: its id says which
 * (id % n), so every message for it goes to the same queue, in order. The
 * core gives each socket it accepts (plain or TLS port) a new id from
 * edge_pool_conn_id(), which deals them round-robin.
 *
 * edge_pool_push() routes a core -> edge message: by id, except XQ_STOP
 * (one to every edge: the core waits for as many XQ_EDGE_DONE) and an
 * XQ_SEND whose recipients live on several edges, split into one message
 * per edge. All edges push into the one queue given to edge_pool_new().
 *
 * Lifecycle as in edge.h: new (main thread), start, stop (joins every
 * thread), free. The gauges read any thread.
 */
#ifndef RB_EDGE_POOL_H
#define RB_EDGE_POOL_H

#include <stddef.h>
#include <stdint.h>

#include "src/edge/edge.h"

struct xq;
struct xq_msg;
struct edge_pool;

/* n edges (1..EDGE_POOL_MAX). NULL on failure (logged). */
struct edge_pool *edge_pool_new(const struct edge_opts *opts, unsigned n, struct xq *to_core);
unsigned edge_pool_size(const struct edge_pool *p);
int edge_pool_start(struct edge_pool *p);
void edge_pool_stop(struct edge_pool *p);
void edge_pool_free(struct edge_pool *p);

/* Core thread: the id of a socket the core will hand over (XQ_ADOPT). */
uint64_t edge_pool_conn_id(struct edge_pool *p);
/* Any thread, in practice the core's. Takes m. */
void edge_pool_push(struct edge_pool *p, struct xq_msg *m);

/* Sums over the edges' queues (seam.h). */
size_t edge_pool_backlog(const struct edge_pool *p);
uint64_t edge_pool_settled(const struct edge_pool *p);
size_t edge_pool_depth(const struct edge_pool *p);
size_t edge_pool_depth_max(const struct edge_pool *p);

#define EDGE_POOL_MAX 64

#endif
