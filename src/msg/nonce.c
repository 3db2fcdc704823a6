#include "src/msg/nonce.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/log.h"
#include "src/base/strmap.h"

struct nentry {
	struct nentry *next; /* FIFO by arrival: expiry order */
	time_t seen;
	char s[];
};

struct nonce_cache {
	struct strmap *seen;        /* nonce -> struct nentry */
	struct nentry *head, *tail; /* oldest first */
	size_t len;
	size_t max;
	bool full_logged;           /* warned since it last filled up */
	int ttl;
};

struct nonce_cache *nonce_cache_new_max(int ttl, size_t max)
{
	if (max == 0)
		return NULL;
	struct nonce_cache *n = calloc(1, sizeof(*n));
	if (!n || !(n->seen = strmap_new())) {
		free(n);
		return NULL;
	}
	n->ttl = ttl;
	n->max = max;
	return n;
}

struct nonce_cache *nonce_cache_new(int ttl)
{
	return nonce_cache_new_max(ttl, NONCE_MAX);
}

size_t nonce_cache_len(const struct nonce_cache *n)
{
	return n->len;
}

void nonce_cache_free(struct nonce_cache *n)
{
	if (!n)
		return;
	for (struct nentry *e = n->head, *next; e; e = next) {
		next = e->next;
		free(e);
	}
	strmap_free(n->seen);
	free(n);
}

static void drop_oldest(struct nonce_cache *n)
{
	struct nentry *e = n->head;
	strmap_del(n->seen, e->s);
	n->head = e->next;
	if (!n->head)
		n->tail = NULL;
	n->len--;
	free(e);
}

int nonce_check_add(struct nonce_cache *n, const char *nonce, time_t now)
{
	while (n->head && n->head->seen + n->ttl < now)
		drop_oldest(n);
	if (strmap_get(n->seen, nonce))
		return RB_EEXIST;
	if (n->len >= n->max) {
		/* Once per filling, not once per nonce: a flood of signed calls
		 * must not flood the log too. */
		if (!n->full_logged)
			log_warn("nonce cache full (%zu): forgetting the oldest nonces early", n->max);
		n->full_logged = true;
		drop_oldest(n);
	} else if (n->len < n->max / 2) {
		n->full_logged = false;
	}
	size_t len = strlen(nonce);
	struct nentry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return RB_ENOMEM;
	memcpy(e->s, nonce, len + 1);
	e->seen = now;
	e->next = NULL;
	if (strmap_put(n->seen, e->s, e) != RB_OK) {
		free(e);
		return RB_ENOMEM;
	}
	if (n->tail)
		n->tail->next = e;
	else
		n->head = e;
	n->tail = e;
	n->len++;
	return RB_OK;
}
