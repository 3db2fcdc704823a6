#include "src/base/strmap.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"

struct sent {
	struct sent *next;
	void *val;
	char key[];
};

struct strmap {
	struct sent **b;
	size_t cap, len; /* cap: power of two */
};

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)(h ^ h >> 32);
}

struct strmap *strmap_new(void)
{
	struct strmap *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 64;
	m->b = calloc(m->cap, sizeof(*m->b));
	if (!m->b) {
		free(m);
		return NULL;
	}
	return m;
}

void strmap_free(struct strmap *m)
{
	if (!m)
		return;
	for (size_t i = 0; i < m->cap; i++)
		for (struct sent *e = m->b[i], *n; e; e = n) {
			n = e->next;
			free(e);
		}
	free(m->b);
	free(m);
}

static struct sent **find(const struct strmap *m, const char *key)
{
	struct sent **pp = &m->b[hash(key) & (m->cap - 1)];
	while (*pp && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->next;
	return pp;
}

void *strmap_get(const struct strmap *m, const char *key)
{
	struct sent *e = *find(m, key);
	return e ? e->val : NULL;
}

static void grow(struct strmap *m)
{
	size_t ncap = m->cap * 2;
	struct sent **nb = calloc(ncap, sizeof(*nb));
	if (!nb)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < m->cap; i++)
		for (struct sent *e = m->b[i], *n; e; e = n) {
			n = e->next;
			struct sent **slot = &nb[hash(e->key) & (ncap - 1)];
			e->next = *slot;
			*slot = e;
		}
	free(m->b);
	m->b = nb;
	m->cap = ncap;
}

int strmap_put(struct strmap *m, const char *key, void *val)
{
	struct sent **pp = find(m, key);
	if (*pp) {
		(*pp)->val = val;
		return RB_OK;
	}
	size_t n = strlen(key);
	struct sent *e = malloc(sizeof(*e) + n + 1);
	if (!e)
		return RB_ENOMEM;
	memcpy(e->key, key, n + 1);
	e->val = val;
	e->next = NULL;
	*pp = e;
	if (++m->len > m->cap)
		grow(m);
	return RB_OK;
}

void *strmap_del(struct strmap *m, const char *key)
{
	struct sent **pp = find(m, key), *e = *pp;
	if (!e)
		return NULL;
	void *val = e->val;
	*pp = e->next;
	free(e);
	m->len--;
	return val;
}

size_t strmap_len(const struct strmap *m)
{
	return m->len;
}

void strmap_foreach(const struct strmap *m, void (*fn)(const char *key, void *val, void *arg),
		    void *arg)
{
	for (size_t i = 0; i < m->cap; i++)
		for (struct sent *e = m->b[i], *n; e; e = n) {
			n = e->next;
			fn(e->key, e->val, arg);
		}
}
