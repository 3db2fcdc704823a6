#include "src/msg/channels.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/idmap.h"
#include "src/base/strmap.h"

struct channel {
	struct idmap members;
	size_t slot; /* index in channels.all */
	char name[];
};

struct channels {
	struct strmap *by_name; /* name -> struct channel */
	/* For channels_foreach: every channel, unordered; a channel's slot is
	 * filled by the last one when it goes (O(1) removal). */
	struct channel **all;
	size_t len, cap;
	channels_watch_fn watch;
	void *watch_arg;
};

struct channels *channels_new(void)
{
	struct channels *ch = calloc(1, sizeof(*ch));
	if (!ch || !(ch->by_name = strmap_new())) {
		free(ch);
		return NULL;
	}
	return ch;
}

void channels_free(struct channels *ch)
{
	if (!ch)
		return;
	for (size_t i = 0; i < ch->len; i++) {
		idmap_free(&ch->all[i]->members);
		free(ch->all[i]);
	}
	free(ch->all);
	strmap_free(ch->by_name);
	free(ch);
}

static int add_channel(struct channels *ch, struct channel *c)
{
	if (ch->len == ch->cap) {
		size_t ncap = ch->cap ? ch->cap * 2 : 64;
		struct channel **na = realloc(ch->all, ncap * sizeof(*na));
		if (!na)
			return RB_ENOMEM;
		ch->all = na;
		ch->cap = ncap;
	}
	if (strmap_put(ch->by_name, c->name, c) != RB_OK)
		return RB_ENOMEM;
	c->slot = ch->len;
	ch->all[ch->len++] = c;
	return RB_OK;
}

static void drop_channel(struct channels *ch, struct channel *c)
{
	strmap_del(ch->by_name, c->name);
	struct channel *last = ch->all[--ch->len];
	ch->all[c->slot] = last;
	last->slot = c->slot;
	idmap_free(&c->members);
	free(c);
}

int channels_sub(struct channels *ch, const char *name, uint64_t conn_id)
{
	struct channel *c = strmap_get(ch->by_name, name);
	if (!c) {
		size_t n = strlen(name);
		c = calloc(1, sizeof(*c) + n + 1);
		if (!c)
			return RB_ENOMEM;
		memcpy(c->name, name, n + 1);
		if (add_channel(ch, c) != RB_OK) {
			free(c);
			return RB_ENOMEM;
		}
	} else if (idmap_get(&c->members, conn_id)) {
		return RB_EEXIST;
	}
	if (idmap_put(&c->members, conn_id, c) != RB_OK) {
		if (!c->members.len)
			drop_channel(ch, c);
		return RB_ENOMEM;
	}
	if (c->members.len == 1 && ch->watch)
		ch->watch(ch->watch_arg, c->name, true);
	return RB_OK;
}

int channels_unsub(struct channels *ch, const char *name, uint64_t conn_id)
{
	struct channel *c = strmap_get(ch->by_name, name);
	if (!c)
		return RB_ENOTFOUND;
	int rc = idmap_del(&c->members, conn_id) ? RB_OK : RB_ENOTFOUND;
	if (!c->members.len) {
		if (rc == RB_OK && ch->watch)
			ch->watch(ch->watch_arg, c->name, false);
		drop_channel(ch, c);
	}
	return rc;
}

void channels_watch(struct channels *ch, channels_watch_fn fn, void *arg)
{
	ch->watch = fn;
	ch->watch_arg = arg;
}

const struct idmap *channels_members(const struct channels *ch, const char *name)
{
	struct channel *c = strmap_get(ch->by_name, name);
	return c ? &c->members : NULL;
}

size_t channels_count(const struct channels *ch)
{
	return ch->len;
}

void channels_foreach(const struct channels *ch, channels_fn fn, void *arg)
{
	for (size_t i = 0; i < ch->len; i++)
		fn(ch->all[i]->name, ch->all[i]->members.len, arg);
}
