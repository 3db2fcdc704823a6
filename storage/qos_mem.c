/*
 * In-memory QoS store: a chained hash table of (key, msgid) entries.
 * There is no index by key alone: drop_key() scans the whole table, which
 * is fine while entries are few (a QoS exchange lasts a round trip); the
 * SQLite store indexes by key.
 */
#include "storage/qos_store.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"

/* dir 0: upstream (st is an up_state); dir 1: downstream (a down_state). */
struct entry {
	struct entry *next;
	char *key;
	uint16_t msgid;
	uint8_t dir;
	int st;
	uint8_t *reply;
	size_t len;
};

struct mem_store {
	struct qos_store base;
	struct entry **buckets;
	size_t cap; /* power of two */
	size_t len;
};

static uint64_t hash(const char *key, uint16_t msgid, uint8_t dir)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (const char *p = key; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	h = (h ^ (msgid & 0xff)) * 1099511628211ull;
	h = (h ^ (msgid >> 8)) * 1099511628211ull;
	h = (h ^ dir) * 1099511628211ull;
	return h;
}

static struct entry **find_dir(struct mem_store *m, const char *key, uint16_t msgid,
			       uint8_t dir)
{
	struct entry **pp = &m->buckets[hash(key, msgid, dir) & (m->cap - 1)];
	for (; *pp; pp = &(*pp)->next)
		if ((*pp)->msgid == msgid && (*pp)->dir == dir && strcmp((*pp)->key, key) == 0)
			break;
	return pp;
}

static struct entry **find(struct mem_store *m, const char *key, uint16_t msgid)
{
	return find_dir(m, key, msgid, 0);
}

static void entry_free(struct entry *e)
{
	free(e->key);
	free(e->reply);
	free(e);
}

static int mem_get(struct qos_store *s, const char *key, uint16_t msgid,
		   enum up_state *st, const uint8_t **reply, size_t *len)
{
	struct entry *e = *find((struct mem_store *)s, key, msgid);
	*st = e ? (enum up_state)e->st : UP_ABSENT;
	if (reply)
		*reply = e ? e->reply : NULL;
	if (len)
		*len = e ? e->len : 0;
	return RB_OK;
}

static int grow(struct mem_store *m)
{
	size_t ncap = m->cap * 2;
	struct entry **nb = calloc(ncap, sizeof(*nb));
	if (!nb)
		return RB_ENOMEM;
	for (size_t i = 0; i < m->cap; i++) {
		struct entry *e = m->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			struct entry **slot = &nb[hash(e->key, e->msgid, e->dir) & (ncap - 1)];
			e->next = *slot;
			*slot = e;
		}
	}
	free(m->buckets);
	m->buckets = nb;
	m->cap = ncap;
	return RB_OK;
}

static int insert(struct mem_store *m, const char *key, uint16_t msgid, uint8_t dir, int st)
{
	if (*find_dir(m, key, msgid, dir))
		return RB_EEXIST;
	if (m->len >= m->cap && grow(m) != RB_OK)
		return RB_ENOMEM;
	struct entry *e = calloc(1, sizeof(*e));
	if (!e || !(e->key = strdup(key))) {
		free(e);
		return RB_ENOMEM;
	}
	e->msgid = msgid;
	e->dir = dir;
	e->st = st;
	struct entry **pp = find_dir(m, key, msgid, dir);
	*pp = e;
	m->len++;
	return RB_OK;
}

static int mem_begin(struct qos_store *s, const char *key, uint16_t msgid)
{
	return insert((struct mem_store *)s, key, msgid, 0, UP_FORWARDING);
}

static int mem_reply(struct qos_store *s, const char *key, uint16_t msgid,
		     const uint8_t *reply, size_t len)
{
	struct entry *e = *find((struct mem_store *)s, key, msgid);
	if (!e)
		return RB_ENOTFOUND;
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy)
		return RB_ENOMEM;
	if (len)
		memcpy(copy, reply, len);
	free(e->reply);
	e->reply = copy;
	e->len = len;
	e->st = UP_REPLIED;
	return RB_OK;
}

static int remove_dir(struct mem_store *m, const char *key, uint16_t msgid, uint8_t dir)
{
	struct entry **pp = find_dir(m, key, msgid, dir), *e = *pp;
	if (e) {
		*pp = e->next;
		entry_free(e);
		m->len--;
	}
	return RB_OK;
}

static int mem_release(struct qos_store *s, const char *key, uint16_t msgid)
{
	return remove_dir((struct mem_store *)s, key, msgid, 0);
}

static int mem_msg_add(struct qos_store *s, uint8_t qos, uint16_t msgtype,
		       const uint8_t *payload, size_t len, int64_t *msg_id)
{
	*msg_id = 0;
	return RB_OK;
}

static int mem_down_sent(struct qos_store *s, const char *key, uint16_t msgid)
{
	return RB_OK;
}

/* Connections without a session are never resumed: nothing to list. */
static int mem_down_list(struct qos_store *s, const char *key,
			 void (*cb)(void *arg, uint16_t msgid, enum down_state st, bool sent,
				    uint8_t qos, uint16_t msgtype, const uint8_t *payload,
				    size_t len),
			 void *arg)
{
	return RB_OK;
}

static int mem_down_usage(struct qos_store *s, const char *key, size_t *count, size_t *bytes)
{
	*count = *bytes = 0;
	return RB_OK;
}

static int mem_down_drop_oldest(struct qos_store *s, const char *key, uint16_t *msgid)
{
	return RB_ENOTFOUND;
}

static int mem_nop(struct qos_store *s)
{
	return RB_OK;
}

static int mem_down_begin(struct qos_store *s, const char *key, uint16_t msgid, int64_t msg_id,
			  uint8_t qos)
{
	return insert((struct mem_store *)s, key, msgid, 1,
		      qos == 2 ? DOWN_WAIT_REC : DOWN_WAIT_ACK);
}

static int mem_down_set(struct qos_store *s, const char *key, uint16_t msgid,
			enum down_state st)
{
	struct entry *e = *find_dir((struct mem_store *)s, key, msgid, 1);
	if (!e)
		return RB_ENOTFOUND;
	e->st = st;
	return RB_OK;
}

static int mem_down_end(struct qos_store *s, const char *key, uint16_t msgid)
{
	return remove_dir((struct mem_store *)s, key, msgid, 1);
}

static enum down_state mem_down_get(struct qos_store *s, const char *key, uint16_t msgid)
{
	struct entry *e = *find_dir((struct mem_store *)s, key, msgid, 1);
	return e ? (enum down_state)e->st : DOWN_ABSENT;
}

static void mem_drop_key(struct qos_store *s, const char *key)
{
	struct mem_store *m = (struct mem_store *)s;
	/* A full scan is fine while entries are few (a QoS 2 exchange lasts a
	 * round trip); the SQLite store indexes by key. */
	if (!m->len)
		return;
	for (size_t i = 0; i < m->cap; i++) {
		for (struct entry **pp = &m->buckets[i]; *pp;) {
			struct entry *e = *pp;
			if (strcmp(e->key, key) == 0) {
				*pp = e->next;
				entry_free(e);
				m->len--;
			} else {
				pp = &e->next;
			}
		}
	}
}

static size_t mem_count(struct qos_store *s)
{
	return ((struct mem_store *)s)->len;
}

static void mem_free(struct qos_store *s)
{
	struct mem_store *m = (struct mem_store *)s;
	for (size_t i = 0; i < m->cap; i++) {
		struct entry *e = m->buckets[i], *next;
		for (; e; e = next) {
			next = e->next;
			entry_free(e);
		}
	}
	free(m->buckets);
	free(m);
}

static const struct qos_store_ops mem_ops = {
	.up_get = mem_get,
	.up_begin = mem_begin,
	.up_reply = mem_reply,
	.up_release = mem_release,
	.msg_add = mem_msg_add,
	.down_begin = mem_down_begin,
	.down_sent = mem_down_sent,
	.down_list = mem_down_list,
	.down_usage = mem_down_usage,
	.down_drop_oldest = mem_down_drop_oldest,
	.begin = mem_nop,
	.commit = mem_nop,
	.rollback = mem_nop,
	.down_set = mem_down_set,
	.down_end = mem_down_end,
	.down_get = mem_down_get,
	.drop_key = mem_drop_key,
	.count = mem_count,
	.free = mem_free,
};

struct qos_store *qos_mem_new(void)
{
	struct mem_store *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 64;
	m->buckets = calloc(m->cap, sizeof(*m->buckets));
	if (!m->buckets) {
		free(m);
		return NULL;
	}
	m->base.ops = &mem_ops;
	return &m->base;
}
