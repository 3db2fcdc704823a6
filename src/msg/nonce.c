#include "src/msg/nonce.h"

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
	int ttl;
};

struct nonce_cache *nonce_cache_new(int ttl)
{
	struct nonce_cache *n = calloc(1, sizeof(*n));
	if (!n || !(n->seen = strmap_new())) {
		free(n);
		return NULL;
	}
	n->ttl = ttl;
	return n;
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
