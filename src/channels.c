#include "src/channels.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/idmap.h"

struct channel {
	struct channel *next;
	struct idmap members;
	char name[];
};

struct channels {
	struct channel **buckets;
	size_t cap; /* power of two */
	size_t len;
};

static size_t hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return (size_t)h;
}

struct channels *channels_new(void)
{
	struct channels *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->cap = 256;
	ch->buckets = calloc(ch->cap, sizeof(*ch->buckets));
	if (!ch->buckets) {
		free(ch);
		return NULL;
	}
	return ch;
}

void channels_free(struct channels *ch)
{
	if (!ch)
		return;
	for (size_t i = 0; i < ch->cap; i++) {
		struct channel *c = ch->buckets[i], *next;
		for (; c; c = next) {
			next = c->next;
			idmap_free(&c->members);
			free(c);
		}
	}
	free(ch->buckets);
	free(ch);
}

static struct channel **find(const struct channels *ch, const char *name)
{
	struct channel **pp = &ch->buckets[hash(name) & (ch->cap - 1)];
	while (*pp && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	return pp;
}

static void grow(struct channels *ch)
{
	size_t ncap = ch->cap * 2;
	struct channel **nb = calloc(ncap, sizeof(*nb));
	if (!nb)
		return; /* longer chains, still correct */
	for (size_t i = 0; i < ch->cap; i++) {
		struct channel *c = ch->buckets[i], *next;
		for (; c; c = next) {
			next = c->next;
			struct channel **slot = &nb[hash(c->name) & (ncap - 1)];
			c->next = *slot;
			*slot = c;
		}
	}
	free(ch->buckets);
	ch->buckets = nb;
	ch->cap = ncap;
}

int channels_sub(struct channels *ch, const char *name, uint64_t conn_id)
{
	struct channel **pp = find(ch, name), *c = *pp;
	if (!c) {
		size_t n = strlen(name);
		c = calloc(1, sizeof(*c) + n + 1);
		if (!c)
			return RB_ENOMEM;
		memcpy(c->name, name, n + 1);
		*pp = c;
		ch->len++;
	} else if (idmap_get(&c->members, conn_id)) {
		return RB_EEXIST;
	}
	if (idmap_put(&c->members, conn_id, c) != RB_OK) {
		if (!c->members.len)
			channels_unsub(ch, name, 0);
		return RB_ENOMEM;
	}
	if (ch->len > ch->cap)
		grow(ch);
	return RB_OK;
}

int channels_unsub(struct channels *ch, const char *name, uint64_t conn_id)
{
	struct channel **pp = find(ch, name), *c = *pp;
	if (!c)
		return RB_ENOTFOUND;
	int rc = conn_id && idmap_del(&c->members, conn_id) ? RB_OK : RB_ENOTFOUND;
	if (!c->members.len) {
		*pp = c->next;
		idmap_free(&c->members);
		free(c);
		ch->len--;
	}
	return rc;
}

const struct idmap *channels_members(const struct channels *ch, const char *name)
{
	struct channel *c = *find(ch, name);
	return c ? &c->members : NULL;
}

size_t channels_count(const struct channels *ch)
{
	return ch->len;
}

void channels_foreach(const struct channels *ch, channels_fn fn, void *arg)
{
	for (size_t i = 0; i < ch->cap; i++)
		for (struct channel *c = ch->buckets[i]; c; c = c->next)
			fn(c->name, c->members.len, arg);
}
