/*
 * The edge threads as one (pool.h). Routing runs on the pushing thread (the
 * core's); the edges themselves never look at each other.
 */
#include "src/edge/pool.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/rbuf.h"
#include "src/edge/edge.h"
#include "src/edge/seam.h"

struct edge_pool {
	unsigned n;
	unsigned next;       /* round-robin for edge_pool_conn_id (core thread) */
	struct edge *edges[EDGE_POOL_MAX];
	struct xq *inbox[EDGE_POOL_MAX];
};

struct edge_pool *edge_pool_new(const struct edge_opts *opts, unsigned n, struct xq *to_core)
{
	struct edge_pool *p = calloc(1, sizeof(*p));

	if (!p || n < 1 || n > EDGE_POOL_MAX) {
		free(p);
		return NULL;
	}
	p->n = n;
	for (unsigned i = 0; i < n; i++) {
		p->edges[i] = edge_new(opts, i, n, to_core);
		if (!p->edges[i]) {
			edge_pool_free(p);
			return NULL;
		}
		p->inbox[i] = edge_inbox(p->edges[i]);
	}
	return p;
}

unsigned edge_pool_size(const struct edge_pool *p)
{
	return p->n;
}

int edge_pool_start(struct edge_pool *p)
{
	for (unsigned i = 0; i < p->n; i++)
		if (edge_start(p->edges[i]) != RB_OK)
			return RB_EIO;
	return RB_OK;
}

void edge_pool_stop(struct edge_pool *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n; i++)
		edge_stop_thread(p->edges[i]);
}

void edge_pool_free(struct edge_pool *p)
{
	if (!p)
		return;
	edge_pool_stop(p);
	for (unsigned i = 0; i < p->n; i++)
		edge_free(p->edges[i]);
	free(p);
}

uint64_t edge_pool_conn_id(struct edge_pool *p)
{
	unsigned k = p->next++ % p->n;
	return conn_id_next(k, p->n);
}

/*
 * An XQ_SEND for recipients on several edges: one message per edge, each
 * with its recipients in their order. They share the buffer unless it is
 * written in place (EDGE_IN_PLACE): then each edge but the first gets a
 * copy. Out of memory, an edge's recipients lose this push (counted as
 * dropped, as a push to a closed connection).
 */
static void split_send(struct edge_pool *p, struct xq_msg *m)
{
	size_t cnt[EDGE_POOL_MAX] = { 0 };
	struct xq_msg *part[EDGE_POOL_MAX] = { 0 };
	unsigned used = 0, first = p->n;

	for (size_t i = 0; i < m->nids; i++)
		if (cnt[m->rcpts[i].id % p->n]++ == 0)
			used++;
	if (used <= 1) {
		xq_push(p->inbox[m->nids ? m->rcpts[0].id % p->n : 0], m);
		return;
	}
	for (unsigned k = 0; k < p->n; k++) {
		if (!cnt[k])
			continue;
		struct xq_msg *x = xq_msg_new(XQ_SEND, 0, cnt[k]);
		if (x) {
			if (first == p->n || !EDGE_IN_PLACE(m->buf->len))
				x->buf = rbuf_ref(m->buf);
			else
				x->buf = rbuf_new2(m->buf->data, m->buf->len, NULL, 0);
			if (!x->buf) {
				xq_msg_free(x);
				x = NULL;
			}
		}
		if (!x) {
			log_error("edge pool: out of memory splitting a push: %zu copies lost", cnt[k]);
			for (size_t j = 0; j < cnt[k]; j++)
				metric_drop(DROP_CLOSED);
			continue;
		}
		if (first == p->n)
			first = k;
		x->flags = m->flags;
		x->nids = 0;
		part[k] = x;
	}
	for (size_t i = 0; i < m->nids; i++) {
		struct xq_msg *x = part[m->rcpts[i].id % p->n];
		if (x)
			x->rcpts[x->nids++] = m->rcpts[i];
	}
	for (unsigned k = 0; k < p->n; k++)
		if (part[k])
			xq_push(p->inbox[k], part[k]);
	xq_msg_free(m);
}

void edge_pool_push(struct edge_pool *p, struct xq_msg *m)
{
	switch (m->type) {
	case XQ_SEND:
		if (p->n == 1)
			xq_push(p->inbox[0], m);
		else
			split_send(p, m);
		return;
	case XQ_STOP:
		for (unsigned k = 1; k < p->n; k++) {
			struct xq_msg *s = xq_msg_new(XQ_STOP, 0, 0);
			if (!s) {
				/* The core would wait for this edge's DONE until
				 * its grace runs out: it stops then anyway. */
				log_error("edge pool: out of memory stopping edge %u", k);
				continue;
			}
			xq_push(p->inbox[k], s);
		}
		xq_push(p->inbox[0], m);
		return;
	default:
		xq_push(p->inbox[m->id % p->n], m);
		return;
	}
}

#define SUM(T, fn)                                  \
	T sum = 0;                                  \
	for (unsigned k = 0; k < p->n; k++)         \
		sum += fn(p->inbox[k]);             \
	return sum

size_t edge_pool_backlog(const struct edge_pool *p)
{
	SUM(size_t, xq_backlog);
}

uint64_t edge_pool_settled(const struct edge_pool *p)
{
	SUM(uint64_t, xq_settled);
}

size_t edge_pool_depth(const struct edge_pool *p)
{
	SUM(size_t, xq_depth);
}

size_t edge_pool_depth_max(const struct edge_pool *p)
{
	SUM(size_t, xq_depth_max);
}
