#include "cluster/peers.h"

#include <stdio.h>

void peers_init(struct peer_table *t)
{
	t->n = 0;
}

static void remove_at(struct peer_table *t, size_t i)
{
	t->p[i] = t->p[--t->n]; /* order does not matter */
}

static size_t find(const struct peer_table *t, uint32_t id)
{
	for (size_t i = 0; i < t->n; i++)
		if (t->p[i].id == id)
			return i;
	return t->n;
}

enum peer_event peers_seen(struct peer_table *t, const struct beacon *b, uint32_t ip,
			   int64_t now_ms, struct peer *old)
{
	size_t i = find(t, b->node_id);

	if (b->leaving) {
		if (i == t->n)
			return PEER_IGNORED;
		if (old)
			*old = t->p[i];
		remove_at(t, i);
		return PEER_LEFT;
	}
	if (i < t->n) {
		t->p[i].ip = ip;
		t->p[i].port = b->port;
		t->p[i].incarnation = b->incarnation;
		t->p[i].last_seen_ms = now_ms;
		return PEER_REFRESHED;
	}
	/* Two live processes cannot hold one TCP port on one address: a new
	 * node there with a greater incarnation means the old one is gone. */
	enum peer_event ev = PEER_JOINED;
	for (size_t k = 0; k < t->n; k++) {
		if (t->p[k].ip == ip && t->p[k].port == b->port &&
		    t->p[k].incarnation < b->incarnation) {
			if (old)
				*old = t->p[k];
			remove_at(t, k);
			ev = PEER_REPLACED;
			break;
		}
	}
	if (t->n == PEERS_MAX)
		return PEER_FULL;
	t->p[t->n++] = (struct peer){ .id = b->node_id, .ip = ip, .port = b->port,
				      .incarnation = b->incarnation, .last_seen_ms = now_ms };
	return ev;
}

size_t peers_expire(struct peer_table *t, int64_t now_ms, int64_t timeout_ms,
		    void (*fn)(void *arg, const struct peer *p), void *arg)
{
	size_t gone = 0;

	for (size_t i = 0; i < t->n;) {
		if (now_ms - t->p[i].last_seen_ms > timeout_ms) {
			if (fn)
				fn(arg, &t->p[i]);
			remove_at(t, i);
			gone++;
		} else {
			i++;
		}
	}
	return gone;
}

void peer_addr(const struct peer *p, char *buf, size_t len)
{
	snprintf(buf, len, "%u.%u.%u.%u:%u", (unsigned)(p->ip >> 24) & 255,
		 (unsigned)(p->ip >> 16) & 255, (unsigned)(p->ip >> 8) & 255,
		 (unsigned)p->ip & 255, (unsigned)p->port);
}
