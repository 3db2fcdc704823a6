/* The QoS store contract (storage/qos_store.h), every case run against both
 * implementations: the in-memory store (qos_mem_new) and the SQLite store
 * (qos_sqlite_new) on a real database file in a fresh directory under /tmp,
 * removed afterwards. Where the two legitimately differ, the case says why
 * and asserts each one's exact behaviour. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "storage/db.h"
#include "storage/qos_store.h"

struct fx {
	struct qos_store *s;
	struct db *db; /* NULL for the in-memory store */
	char dir[64];
	char path[128];
};

static int setup_mem(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f || !(f->s = qos_mem_new())) {
		free(f);
		return -1;
	}
	*state = f;
	return 0;
}

static int open_sql(struct fx *f)
{
	char err[512];
	f->db = db_open(f->path, DB_NORMAL, err, sizeof(err));
	if (!f->db) {
		print_error("db_open(%s): %s\n", f->path, err);
		return -1;
	}
	if (!(f->s = qos_sqlite_new(f->db))) {
		db_close(f->db);
		f->db = NULL;
		return -1;
	}
	return 0;
}

static int setup_sql(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_qos_store.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/rainbow.db", f->dir);
	*state = f;
	return open_sql(f);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	return remove(p);
}

static void close_store(struct fx *f)
{
	if (f->s)
		f->s->ops->free(f->s);
	if (f->db)
		db_close(f->db);
	f->s = NULL;
	f->db = NULL;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	int rc = 0;
	if (!f)
		return 0;
	close_store(f);
	if (f->dir[0])
		rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	free(f);
	return rc;
}

static bool durable(const struct fx *f)
{
	return f->db != NULL;
}

/* Forget every entry of key. The in-memory store does it in drop_key. The
 * SQLite store's drop_key is a no-op on purpose: a session's rows outlive
 * its connections (the connection ending calls drop_key) and go only when
 * the session itself is deleted, with db_session_delete. */
static void forget_key(struct fx *f, const char *key)
{
	if (durable(f))
		assert_int_equal(db_session_delete(f->db, key), RB_OK);
	else
		f->s->ops->drop_key(f->s, key);
}

/* A message to deliver: the SQLite store keeps it once (a row id > 0 that
 * down_begin must name); the in-memory store keeps nothing and says 0. */
static int64_t add_msg(struct fx *f, uint8_t qos, uint16_t msgtype, const char *payload)
{
	int64_t id = -1;
	assert_int_equal(f->s->ops->msg_add(f->s, qos, msgtype, (const uint8_t *)payload,
					    strlen(payload), &id),
			 RB_OK);
	if (durable(f))
		assert_true(id > 0);
	else
		assert_int_equal(id, 0);
	return id;
}

static void test_upstream_qos2_cycle(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	enum up_state st;
	const uint8_t *r;
	size_t len;

	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_begin(s, "k1", 11), RB_OK);
	assert_int_equal(s->ops->up_begin(s, "k1", 11), RB_EEXIST);
	assert_int_equal(s->ops->up_get(s, "k1", 11, &st, &r, &len), RB_OK);
	assert_int_equal(st, UP_FORWARDING);
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"re", 2), RB_OK);
	assert_int_equal(s->ops->up_get(s, "k1", 11, &st, &r, &len), RB_OK);
	assert_int_equal(st, UP_REPLIED);
	assert_int_equal(len, 2);
	assert_memory_equal(r, "re", 2);
	/* A second reply replaces the first; an empty one is kept as empty. */
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"", 0), RB_OK);
	assert_int_equal(s->ops->up_get(s, "k1", 11, &st, &r, &len), RB_OK);
	assert_int_equal(st, UP_REPLIED);
	assert_int_equal(len, 0);
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"re2", 3), RB_OK);
	/* Same msgid under another key is independent. */
	s->ops->up_get(s, "k2", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_begin(s, "k2", 11), RB_OK);
	assert_int_equal(s->ops->count(s), 2);
	assert_int_equal(s->ops->up_get(s, "k1", 11, &st, &r, &len), RB_OK);
	assert_int_equal(st, UP_REPLIED);
	assert_int_equal(len, 3);
	assert_memory_equal(r, "re2", 3);
	assert_int_equal(s->ops->up_release(s, "k1", 11), RB_OK);
	assert_int_equal(s->ops->up_release(s, "k1", 11), RB_OK); /* idempotent */
	s->ops->up_get(s, "k1", 11, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	assert_int_equal(s->ops->up_reply(s, "k1", 11, (const uint8_t *)"x", 1), RB_ENOTFOUND);
	s->ops->up_get(s, "k2", 11, &st, NULL, NULL);
	assert_int_equal(st, UP_FORWARDING);
	assert_int_equal(s->ops->up_release(s, "k2", 11), RB_OK);
	assert_int_equal(s->ops->count(s), 0);
}

static void test_downstream_cycle(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	int64_t m2 = add_msg(f, 2, 1002, "two"), m1 = add_msg(f, 1, 1001, "one");

	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_ABSENT);
	assert_int_equal(s->ops->down_begin(s, "k", 7, m2, 2), RB_OK);
	assert_int_equal(s->ops->down_begin(s, "k", 7, m2, 2), RB_EEXIST);
	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_WAIT_REC);
	assert_int_equal(s->ops->down_get(s, "other", 7), DOWN_ABSENT);
	/* Upstream and downstream ids are separate spaces. */
	assert_int_equal(s->ops->up_begin(s, "k", 7), RB_OK);
	assert_int_equal(s->ops->down_sent(s, "k", 7), RB_OK);
	assert_int_equal(s->ops->down_set(s, "k", 7, DOWN_WAIT_COM), RB_OK);
	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_WAIT_COM);
	assert_int_equal(s->ops->down_set(s, "k", 8, DOWN_WAIT_COM), RB_ENOTFOUND);
	assert_int_equal(s->ops->down_begin(s, "k", 8, m1, 1), RB_OK);
	assert_int_equal(s->ops->down_get(s, "k", 8), DOWN_WAIT_ACK);
	assert_int_equal(s->ops->count(s), 3);
	assert_int_equal(s->ops->down_end(s, "k", 7), RB_OK);
	assert_int_equal(s->ops->down_end(s, "k", 7), RB_OK); /* idempotent */
	assert_int_equal(s->ops->down_get(s, "k", 7), DOWN_ABSENT);
	assert_int_equal(s->ops->count(s), 2);
	enum up_state st;
	s->ops->up_get(s, "k", 7, &st, NULL, NULL);
	assert_int_equal(st, UP_FORWARDING); /* untouched by the downstream end */

	/* The connection ends: drop_key. See forget_key for why the SQLite
	 * store keeps the rows here. */
	s->ops->drop_key(s, "k");
	assert_int_equal(s->ops->count(s), durable(f) ? 2 : 0);
	assert_int_equal(s->ops->down_get(s, "k", 8), durable(f) ? DOWN_WAIT_ACK : DOWN_ABSENT);
	forget_key(f, "k");
	assert_int_equal(s->ops->count(s), 0);
	assert_int_equal(s->ops->down_get(s, "k", 8), DOWN_ABSENT);
	s->ops->up_get(s, "k", 7, &st, NULL, NULL);
	assert_int_equal(st, UP_ABSENT);
}

static void test_many_and_drop_key(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	char key[16];

	/* One batch (a no-op for the in-memory store): 5000 fsyncs otherwise. */
	assert_int_equal(s->ops->begin(s), RB_OK);
	for (int k = 0; k < 50; k++) {
		snprintf(key, sizeof(key), "key%d", k);
		for (unsigned id = 1; id <= 100; id++)
			assert_int_equal(s->ops->up_begin(s, key, (uint16_t)id), RB_OK);
	}
	assert_int_equal(s->ops->commit(s), RB_OK);
	assert_int_equal(s->ops->count(s), 5000);
	assert_int_equal(s->ops->up_begin(s, "key49", 100), RB_EEXIST);
	forget_key(f, "key7");
	assert_int_equal(s->ops->count(s), 4900);
	enum up_state st;
	s->ops->up_get(s, "key7", 5, &st, NULL, NULL);
	assert_int_equal(st, UP_ABSENT);
	s->ops->up_get(s, "key8", 5, &st, NULL, NULL);
	assert_int_equal(st, UP_FORWARDING);
	/* teardown frees what is left: valgrind/ASan check it */
}

struct listed {
	int n;
	uint16_t msgid[4];
	enum down_state st[4];
	bool sent[4];
	uint8_t qos[4];
	uint16_t msgtype[4];
	char payload[4][8];
};

static void list_cb(void *arg, uint16_t msgid, enum down_state st, bool sent, uint8_t qos,
		    uint16_t msgtype, const uint8_t *payload, size_t len)
{
	struct listed *l = arg;
	assert_true(l->n < 4);
	assert_true(len < sizeof(l->payload[0]));
	l->msgid[l->n] = msgid;
	l->st[l->n] = st;
	l->sent[l->n] = sent;
	l->qos[l->n] = qos;
	l->msgtype[l->n] = msgtype;
	memcpy(l->payload[l->n], payload, len);
	l->payload[l->n][len] = '\0';
	l->n++;
}

/* Redelivery (down_list), the per-session caps (down_usage) and dropping
 * the oldest: the SQLite store keeps undelivered messages for a session to
 * resume. The in-memory store serves connections without a session, which
 * are never resumed: it lists nothing, counts nothing and has nothing to
 * drop, while still tracking each delivery's state (down_get). */
static void test_undelivered_backlog(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	int64_t ma = add_msg(f, 1, 1001, "aa"), mb = add_msg(f, 2, 1002, "bbbb");

	/* Added out of msgid order: "oldest first" is the order of down_begin. */
	assert_int_equal(s->ops->down_begin(s, "d", 9, ma, 1), RB_OK);
	assert_int_equal(s->ops->down_begin(s, "d", 3, mb, 2), RB_OK);
	assert_int_equal(s->ops->down_begin(s, "e", 9, mb, 2), RB_OK); /* one body, two deliveries */
	assert_int_equal(s->ops->down_sent(s, "d", 9), RB_OK);
	assert_int_equal(s->ops->down_set(s, "d", 3, DOWN_WAIT_COM), RB_OK);

	struct listed l = { 0 };
	size_t count = 99, bytes = 99;
	uint16_t dropped = 0;
	assert_int_equal(s->ops->down_list(s, "d", list_cb, &l), RB_OK);
	assert_int_equal(s->ops->down_usage(s, "d", &count, &bytes), RB_OK);
	if (!durable(f)) {
		assert_int_equal(l.n, 0);
		assert_int_equal(count, 0);
		assert_int_equal(bytes, 0);
		assert_int_equal(s->ops->down_drop_oldest(s, "d", &dropped), RB_ENOTFOUND);
		assert_int_equal(s->ops->down_get(s, "d", 9), DOWN_WAIT_ACK);
		assert_int_equal(s->ops->count(s), 3);
		return;
	}
	assert_int_equal(l.n, 2);
	assert_int_equal(l.msgid[0], 9);
	assert_int_equal(l.st[0], DOWN_WAIT_ACK);
	assert_true(l.sent[0]);
	assert_int_equal(l.qos[0], 1);
	assert_int_equal(l.msgtype[0], 1001);
	assert_string_equal(l.payload[0], "aa");
	assert_int_equal(l.msgid[1], 3);
	assert_int_equal(l.st[1], DOWN_WAIT_COM);
	assert_false(l.sent[1]);
	assert_int_equal(l.qos[1], 2);
	assert_int_equal(l.msgtype[1], 1002);
	assert_string_equal(l.payload[1], "bbbb");
	assert_int_equal(count, 2);
	assert_int_equal(bytes, 6);

	assert_int_equal(s->ops->down_drop_oldest(s, "d", &dropped), RB_OK);
	assert_int_equal(dropped, 9);
	assert_int_equal(s->ops->down_get(s, "d", 9), DOWN_ABSENT);
	assert_int_equal(s->ops->down_usage(s, "d", &count, &bytes), RB_OK);
	assert_int_equal(count, 1);
	assert_int_equal(bytes, 4);
	assert_int_equal(s->ops->down_drop_oldest(s, "d", &dropped), RB_OK);
	assert_int_equal(dropped, 3);
	assert_int_equal(s->ops->down_drop_oldest(s, "d", &dropped), RB_ENOTFOUND);
	/* e's delivery of the shared body is untouched. */
	memset(&l, 0, sizeof(l));
	assert_int_equal(s->ops->down_list(s, "e", list_cb, &l), RB_OK);
	assert_int_equal(l.n, 1);
	assert_string_equal(l.payload[0], "bbbb");
	assert_int_equal(s->ops->count(s), 1);
}

/* Group commit. The SQLite store undoes a rolled-back batch. The in-memory
 * store has nothing to commit: begin/commit/rollback succeed and change
 * nothing (the core batches only the durable store, src/core/core.c). */
static void test_batch_rollback(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	enum up_state st;

	assert_int_equal(s->ops->up_begin(s, "k", 1), RB_OK);
	assert_int_equal(s->ops->begin(s), RB_OK);
	assert_int_equal(s->ops->up_begin(s, "k", 2), RB_OK);
	assert_int_equal(s->ops->up_release(s, "k", 1), RB_OK);
	assert_int_equal(s->ops->rollback(s), RB_OK);
	s->ops->up_get(s, "k", 1, &st, NULL, NULL);
	assert_int_equal(st, durable(f) ? UP_FORWARDING : UP_ABSENT);
	s->ops->up_get(s, "k", 2, &st, NULL, NULL);
	assert_int_equal(st, durable(f) ? UP_ABSENT : UP_FORWARDING);
	assert_int_equal(s->ops->count(s), 1);
}

/* What makes the SQLite store durable: its state survives closing and
 * reopening the database (the in-memory store is lost with the process by
 * definition; nothing to check there). */
static void test_survives_reopen(void **state)
{
	struct fx *f = *state;
	struct qos_store *s = f->s;
	int64_t m = add_msg(f, 2, 1003, "p");
	assert_int_equal(s->ops->up_begin(s, "k", 5), RB_OK);
	assert_int_equal(s->ops->up_reply(s, "k", 5, (const uint8_t *)"rep", 3), RB_OK);
	assert_int_equal(s->ops->down_begin(s, "k", 6, m, 2), RB_OK);
	assert_int_equal(s->ops->down_set(s, "k", 6, DOWN_WAIT_COM), RB_OK);

	close_store(f);
	assert_int_equal(open_sql(f), 0);
	s = f->s;
	enum up_state st;
	const uint8_t *r;
	size_t len;
	assert_int_equal(s->ops->up_get(s, "k", 5, &st, &r, &len), RB_OK);
	assert_int_equal(st, UP_REPLIED);
	assert_int_equal(len, 3);
	assert_memory_equal(r, "rep", 3);
	assert_int_equal(s->ops->down_get(s, "k", 6), DOWN_WAIT_COM);
	assert_int_equal(s->ops->count(s), 2);
}

#define BOTH(fn)                                                                  \
	{ #fn " (memory)", fn, setup_mem, teardown, NULL },                      \
	{ #fn " (sqlite)", fn, setup_sql, teardown, NULL }

int main(void)
{
	const struct CMUnitTest tests[] = {
		BOTH(test_upstream_qos2_cycle),
		BOTH(test_downstream_cycle),
		BOTH(test_many_and_drop_key),
		BOTH(test_undelivered_backlog),
		BOTH(test_batch_rollback),
		{ "test_survives_reopen (sqlite)", test_survives_reopen, setup_sql, teardown, NULL },
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
