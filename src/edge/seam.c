#include "src/edge/seam.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include "src/base/rbuf.h"

struct xq {
	pthread_mutex_t lock;
	struct xq_msg *head, *tail;
	xq_doorbell ring;
	void *arg;
	/* Written under lock, read by anyone without it. */
	atomic_size_t depth, depth_max;
	/* XQ_SEND copies pushed and not yet settled by the consumer, and
	 * every copy settled since xq_new(). */
	atomic_size_t backlog;
	atomic_uint_fast64_t settled;
};

static atomic_uint_fast64_t next_conn_id = 1;

uint64_t conn_id_next(unsigned edge, unsigned nedges)
{
	return atomic_fetch_add_explicit(&next_conn_id, 1, memory_order_relaxed) * nedges + edge;
}

struct xq *xq_new(xq_doorbell ring, void *arg)
{
	struct xq *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	q->ring = ring;
	q->arg = arg;
	return q;
}

void xq_free(struct xq *q)
{
	if (!q)
		return;
	struct xq_msg *m = q->head;
	while (m) {
		struct xq_msg *next = m->next;
		xq_msg_free(m);
		m = next;
	}
	pthread_mutex_destroy(&q->lock);
	free(q);
}

struct xq_msg *xq_msg_new(uint8_t type, uint64_t id, size_t nids)
{
	struct xq_msg *m = calloc(1, sizeof(*m) + nids * sizeof(m->rcpts[0]));
	if (!m)
		return NULL;
	m->type = type;
	m->id = id;
	m->fd = -1;
	m->nids = nids;
	return m;
}

void xq_msg_free(struct xq_msg *m)
{
	if (!m)
		return;
	if (m->type == XQ_ADOPT && m->fd >= 0)
		close(m->fd);
	rbuf_unref(m->buf);
	free(m->text);
	free(m);
}

void xq_push(struct xq *q, struct xq_msg *m)
{
	bool was_empty;

	m->next = NULL;
	if (m->type == XQ_SEND)
		atomic_fetch_add_explicit(&q->backlog, m->nids, memory_order_relaxed);
	pthread_mutex_lock(&q->lock);
	was_empty = q->head == NULL;
	if (q->tail)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	/* The mark first, released by the depth: a reader that sees a depth
	 * sees a mark at least as high. */
	size_t d = atomic_load_explicit(&q->depth, memory_order_relaxed) + 1;
	if (d > atomic_load_explicit(&q->depth_max, memory_order_relaxed))
		atomic_store_explicit(&q->depth_max, d, memory_order_relaxed);
	atomic_store_explicit(&q->depth, d, memory_order_release);
	pthread_mutex_unlock(&q->lock);
	/* Ring outside the lock: the doorbell (lws_cancel_service, an eventfd
	 * write) may take its own locks. A ring per batch, not per message. */
	if (was_empty)
		q->ring(q->arg);
}

struct xq_msg *xq_drain(struct xq *q)
{
	struct xq_msg *list;

	pthread_mutex_lock(&q->lock);
	list = q->head;
	q->head = q->tail = NULL;
	atomic_store_explicit(&q->depth, 0, memory_order_relaxed);
	pthread_mutex_unlock(&q->lock);
	return list;
}

size_t xq_depth(const struct xq *q)
{
	return atomic_load_explicit(&q->depth, memory_order_acquire);
}

void xq_settle(struct xq *q, size_t copies)
{
	atomic_fetch_sub_explicit(&q->backlog, copies, memory_order_relaxed);
	atomic_fetch_add_explicit(&q->settled, copies, memory_order_relaxed);
}

uint64_t xq_settled(const struct xq *q)
{
	return atomic_load_explicit(&q->settled, memory_order_relaxed);
}

size_t xq_backlog(const struct xq *q)
{
	return atomic_load_explicit(&q->backlog, memory_order_relaxed);
}

size_t xq_depth_max(const struct xq *q)
{
	return atomic_load_explicit(&q->depth_max, memory_order_relaxed);
}
