/*
 * In-memory QoS store: a strmap from key to that key's entries, an idmap
 * from (direction, msgid). drop_key() (a connection ended) therefore costs
 * the entries of that key, not a scan of the whole store.
 */
#include "storage/qos_store.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/base/idmap.h"
#include "src/base/strmap.h"

/* dir 0: upstream (st is an up_state); dir 1: downstream (a down_state). */
struct entry {
	int st;
	uint8_t *reply;
	size_t len;
};

struct mem_store {
	struct qos_store base;
	struct strmap *keys; /* key -> struct idmap * of its entries, never empty */
	size_t len;          /* entries, all keys */
};

/* The idmap id of (msgid, dir): never 0. */
static uint64_t slot_id(uint16_t msgid, uint8_t dir)
{
	return ((uint64_t)dir << 16 | msgid) + 1;
}

static struct entry *find_dir(struct mem_store *m, const char *key, uint16_t msgid,
			      uint8_t dir)
{
	struct idmap *k = strmap_get(m->keys, key);
	return k ? idmap_get(k, slot_id(msgid, dir)) : NULL;
}

static struct entry *find(struct mem_store *m, const char *key, uint16_t msgid)
{
	return find_dir(m, key, msgid, 0);
}

static void entry_free(struct entry *e)
{
	free(e->reply);
	free(e);
}

/* Frees a key's entries and its map; the caller has taken it out of keys. */
static void key_free(struct mem_store *m, struct idmap *k)
{
	size_t i = 0;
	uint64_t id;
	void *val;

	while (idmap_next(k, &i, &id, &val))
		entry_free(val);
	m->len -= k->len;
	idmap_free(k);
	free(k);
}

static int mem_get(struct qos_store *s, const char *key, uint16_t msgid,
		   enum up_state *st, const uint8_t **reply, size_t *len)
{
	struct entry *e = find((struct mem_store *)s, key, msgid);
	*st = e ? (enum up_state)e->st : UP_ABSENT;
	if (reply)
		*reply = e ? e->reply : NULL;
	if (len)
		*len = e ? e->len : 0;
	return RB_OK;
}

static int insert(struct mem_store *m, const char *key, uint16_t msgid, uint8_t dir, int st)
{
	struct idmap *k = strmap_get(m->keys, key);
	struct entry *e;

	if (k && idmap_get(k, slot_id(msgid, dir)))
		return RB_EEXIST;
	if (!k) {
		if (!(k = calloc(1, sizeof(*k))))
			return RB_ENOMEM;
		if (strmap_put(m->keys, key, k) != RB_OK) {
			free(k);
			return RB_ENOMEM;
		}
	}
	if (!(e = calloc(1, sizeof(*e))) || idmap_put(k, slot_id(msgid, dir), e) != RB_OK) {
		free(e);
		if (!k->len)
			key_free(m, strmap_del(m->keys, key)); /* keys holds no empty map */
		return RB_ENOMEM;
	}
	e->st = st;
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
	struct entry *e = find((struct mem_store *)s, key, msgid);
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
	struct idmap *k = strmap_get(m->keys, key);
	struct entry *e = k ? idmap_del(k, slot_id(msgid, dir)) : NULL;

	if (e) {
		entry_free(e);
		m->len--;
		if (!k->len)
			key_free(m, strmap_del(m->keys, key));
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
	struct entry *e = find_dir((struct mem_store *)s, key, msgid, 1);
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
	struct entry *e = find_dir((struct mem_store *)s, key, msgid, 1);
	return e ? (enum down_state)e->st : DOWN_ABSENT;
}

static void mem_drop_key(struct qos_store *s, const char *key)
{
	struct mem_store *m = (struct mem_store *)s;
	struct idmap *k = strmap_del(m->keys, key);

	if (k)
		key_free(m, k);
}

static size_t mem_count(struct qos_store *s)
{
	return ((struct mem_store *)s)->len;
}

static void free_key(const char *key, void *val, void *arg)
{
	key_free(arg, val);
}

static void mem_free(struct qos_store *s)
{
	struct mem_store *m = (struct mem_store *)s;

	strmap_foreach(m->keys, free_key, m);
	strmap_free(m->keys);
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
	if (!(m->keys = strmap_new())) {
		free(m);
		return NULL;
	}
	m->base.ops = &mem_ops;
	return &m->base;
}
