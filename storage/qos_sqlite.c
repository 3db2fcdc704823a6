/*
 * The durable QoS store: the qos_store interface over the SQLite database
 * (storage/db.h), keyed by device session.
 */
#include "storage/qos_store.h"

#include <stdlib.h>

#include "protocol/rb.h"
#include "storage/db.h"

struct sql_store {
	struct qos_store base;
	struct db *db;
};

static struct db *DB(struct qos_store *s)
{
	return ((struct sql_store *)s)->db;
}

static int up_get(struct qos_store *s, const char *key, uint16_t msgid, enum up_state *st,
		  const uint8_t **reply, size_t *len)
{
	int state = 0;
	const void *r = NULL;
	size_t l = 0;
	int rc = db_up_get(DB(s), key, msgid, &state, &r, &l);
	*st = rc == RB_OK ? (enum up_state)state : UP_ABSENT;
	if (reply)
		*reply = r;
	if (len)
		*len = l;
	return rc == RB_ENOTFOUND ? RB_OK : rc;
}

static int up_begin(struct qos_store *s, const char *key, uint16_t msgid)
{
	return db_up_begin(DB(s), key, msgid);
}

static int up_reply(struct qos_store *s, const char *key, uint16_t msgid,
		    const uint8_t *reply, size_t len)
{
	return db_up_reply(DB(s), key, msgid, reply, len);
}

static int up_release(struct qos_store *s, const char *key, uint16_t msgid)
{
	return db_up_del(DB(s), key, msgid);
}

static int msg_add(struct qos_store *s, uint8_t qos, uint16_t msgtype, const uint8_t *payload,
		   size_t len, int64_t *msg_id)
{
	return db_msg_add(DB(s), msgtype, qos, payload, len, msg_id);
}

static int down_begin(struct qos_store *s, const char *key, uint16_t msgid, int64_t msg_id,
		      uint8_t qos)
{
	return db_dlv_add(DB(s), key, msgid, msg_id, qos == 2 ? DOWN_WAIT_REC : DOWN_WAIT_ACK);
}

static int down_sent(struct qos_store *s, const char *key, uint16_t msgid)
{
	return db_dlv_set_sent(DB(s), key, msgid);
}

static int down_set(struct qos_store *s, const char *key, uint16_t msgid, enum down_state st)
{
	return db_dlv_set_state(DB(s), key, msgid, (int)st);
}

static int down_end(struct qos_store *s, const char *key, uint16_t msgid)
{
	return db_dlv_del(DB(s), key, msgid);
}

struct get_ctx {
	uint16_t msgid;
	enum down_state st;
};

static void get_cb(const struct db_dlv *d, void *arg)
{
	struct get_ctx *g = arg;
	if (d->msgid == g->msgid)
		g->st = (enum down_state)d->state;
}

/* Only used by tests and diagnostics: a scan is fine. */
static enum down_state down_get(struct qos_store *s, const char *key, uint16_t msgid)
{
	struct get_ctx g = { msgid, DOWN_ABSENT };
	db_dlv_list(DB(s), key, get_cb, &g);
	return g.st;
}

struct list_ctx {
	void (*cb)(void *arg, uint16_t msgid, enum down_state st, bool sent, uint8_t qos,
		   uint16_t msgtype, const uint8_t *payload, size_t len);
	void *arg;
};

static void list_cb(const struct db_dlv *d, void *arg)
{
	struct list_ctx *l = arg;
	l->cb(l->arg, d->msgid, (enum down_state)d->state, d->sent, d->qos, d->msgtype,
	      d->payload, d->len);
}

static int down_list(struct qos_store *s, const char *key,
		     void (*cb)(void *arg, uint16_t msgid, enum down_state st, bool sent,
				uint8_t qos, uint16_t msgtype, const uint8_t *payload, size_t len),
		     void *arg)
{
	struct list_ctx l = { cb, arg };
	return db_dlv_list(DB(s), key, list_cb, &l);
}

static int down_usage(struct qos_store *s, const char *key, size_t *count, size_t *bytes)
{
	return db_dlv_usage(DB(s), key, count, bytes);
}

static int down_drop_oldest(struct qos_store *s, const char *key, uint16_t *msgid)
{
	return db_dlv_drop_oldest(DB(s), key, msgid);
}

static int begin(struct qos_store *s)
{
	return db_begin(DB(s));
}

static int commit(struct qos_store *s)
{
	return db_commit(DB(s));
}

static int rollback(struct qos_store *s)
{
	return db_rollback(DB(s));
}

/* A session's rows outlive its connections: dropping happens through
 * db_session_delete when the session expires, never here. */
static void drop_key(struct qos_store *s, const char *key)
{
}

static size_t count(struct qos_store *s)
{
	struct db_counts n;
	if (db_counts(DB(s), &n) != RB_OK)
		return 0;
	return n.deliveries + n.upstream;
}

static void sql_free(struct qos_store *s)
{
	free(s);
}

static const struct qos_store_ops sql_ops = {
	.up_get = up_get,
	.up_begin = up_begin,
	.up_reply = up_reply,
	.up_release = up_release,
	.msg_add = msg_add,
	.down_begin = down_begin,
	.down_sent = down_sent,
	.down_set = down_set,
	.down_end = down_end,
	.down_get = down_get,
	.down_list = down_list,
	.down_usage = down_usage,
	.down_drop_oldest = down_drop_oldest,
	.begin = begin,
	.commit = commit,
	.rollback = rollback,
	.drop_key = drop_key,
	.count = count,
	.free = sql_free,
};

struct qos_store *qos_sqlite_new(struct db *db)
{
	struct sql_store *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->base.ops = &sql_ops;
	s->db = db;
	return &s->base;
}
