#include "src/nonce.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/log.h"

struct nentry {
	struct nentry *hnext;  /* hash chain */
	struct nentry *fnext;  /* FIFO by arrival: expiry order */
	time_t seen;
	char s[];
};

struct nonce_cache {
	struct nentry **buckets;
	size_t cap, len;
	struct nentry *head, *tail; /* oldest first */
	int ttl;
};

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)h;
}

struct nonce_cache *nonce_cache_new(int ttl)
{
	struct nonce_cache *n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->cap = 1024;
	n->ttl = ttl;
	n->buckets = calloc(n->cap, sizeof(*n->buckets));
	if (!n->buckets) {
		free(n);
		return NULL;
	}
	return n;
}

void nonce_cache_free(struct nonce_cache *n)
{
	if (!n)
		return;
	for (struct nentry *e = n->head, *next; e; e = next) {
		next = e->fnext;
		free(e);
	}
	free(n->buckets);
	free(n);
}

static void drop_oldest(struct nonce_cache *n)
{
	struct nentry *e = n->head;
	struct nentry **pp = &n->buckets[hash(e->s) & (n->cap - 1)];
	while (*pp != e)
		pp = &(*pp)->hnext;
	*pp = e->hnext;
	n->head = e->fnext;
	if (!n->head)
		n->tail = NULL;
	n->len--;
	free(e);
}

static void grow(struct nonce_cache *n)
{
	size_t ncap = n->cap * 2;
	struct nentry **nb = calloc(ncap, sizeof(*nb));
	if (!nb)
		return;
	for (struct nentry *e = n->head; e; e = e->fnext) {
		size_t i = hash(e->s) & (ncap - 1);
		e->hnext = nb[i];
		nb[i] = e;
	}
	free(n->buckets);
	n->buckets = nb;
	n->cap = ncap;
}

int nonce_check_add(struct nonce_cache *n, const char *nonce, time_t now)
{
	while (n->head && n->head->seen + n->ttl < now)
		drop_oldest(n);
	for (struct nentry *e = n->buckets[hash(nonce) & (n->cap - 1)]; e; e = e->hnext)
		if (strcmp(e->s, nonce) == 0)
			return RB_EEXIST;
	if (n->len >= NONCE_MAX) {
		log_warn("nonce cache full (%d): forgetting the oldest nonces early", NONCE_MAX);
		drop_oldest(n);
	}
	size_t len = strlen(nonce);
	struct nentry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return RB_ENOMEM;
	memcpy(e->s, nonce, len + 1);
	e->seen = now;
	e->fnext = NULL;
	if (n->len >= n->cap)
		grow(n);
	size_t i = hash(nonce) & (n->cap - 1);
	e->hnext = n->buckets[i];
	n->buckets[i] = e;
	if (n->tail)
		n->tail->fnext = e;
	else
		n->head = e;
	n->tail = e;
	n->len++;
	return RB_OK;
}
