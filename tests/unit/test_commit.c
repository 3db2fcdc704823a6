/* Unit tests for group commit (src/core/commit.c) on a real event_base, a
 * real seam queue and a real SQLite store on a temporary file. A failed
 * COMMIT cannot be provoked on a healthy file, so one test wraps the real
 * store and makes its commit fail (the rest of its ops are the real ones). */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "protocol/rb.h"
#include "src/core/commit.h"
#include "src/edge/seam.h"
#include "storage/db.h"
#include "storage/qos_store.h"

struct fx {
	char dir[64], path[128];
	struct event_base *base;
	struct db *db;
	struct qos_store *store;
	struct xq *q;
	struct commit *cm;
	int rings;
};

static void ring(void *arg)
{
	((struct fx *)arg)->rings++;
}

/* The commit's edge sink: straight into the fixture's queue. */
static void to_queue(void *q, struct xq_msg *m)
{
	xq_push(q, m);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	snprintf(f->dir, sizeof(f->dir), "/tmp/rb-commit-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
	f->base = event_base_new();
	assert_int_equal(event_base_priority_init(f->base, 3), 0);
	f->db = db_open(f->path, DB_NORMAL, err, sizeof(err));
	assert_non_null(f->db);
	f->store = qos_sqlite_new(f->db);
	f->q = xq_new(ring, f);
	f->cm = commit_new(f->base, to_queue, f->q);
	assert_non_null(f->cm);
	commit_set_store(f->cm, f->store);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	commit_free(f->cm);
	struct xq_msg *m = xq_drain(f->q), *n;
	for (; m; m = n) {
		n = m->next;
		xq_msg_free(m);
	}
	xq_free(f->q);
	f->store->ops->free(f->store);
	db_close(f->db);
	event_base_free(f->base);
	unlink(f->path);
	char side[160];
	snprintf(side, sizeof(side), "%s-wal", f->path);
	unlink(side);
	snprintf(side, sizeof(side), "%s-shm", f->path);
	unlink(side);
	rmdir(f->dir);
	free(f);
	return 0;
}

static size_t drained(struct fx *f, uint8_t *types, size_t cap)
{
	size_t n = 0;
	struct xq_msg *m = xq_drain(f->q), *next;
	for (; m; m = next) {
		next = m->next;
		if (n < cap)
			types[n] = m->type;
		n++;
		xq_msg_free(m);
	}
	return n;
}

static void test_no_batch_passes_at_once(void **state)
{
	struct fx *f = *state;
	uint8_t t[4];
	commit_push_edge(f->cm, xq_msg_new(XQ_SEND, 0, 1));
	assert_int_equal(commit_held(f->cm), 0);
	assert_int_equal(drained(f, t, 4), 1);
	assert_int_equal(t[0], XQ_SEND);
}

struct calls {
	int n;
	bool committed[4];
};

static void on_call(void *arg, bool committed)
{
	struct calls *k = arg;
	k->committed[k->n++] = committed;
}

static void test_held_until_commit_in_order(void **state)
{
	struct fx *f = *state;
	uint8_t t[8];
	struct calls k = { 0 };

	commit_batch(f->cm);
	assert_true(commit_is_open(f->cm));
	assert_int_equal(f->store->ops->up_begin(f->store, "dev", 7), RB_OK);
	commit_push_edge(f->cm, xq_msg_new(XQ_SEND, 1, 1));
	commit_push_edge(f->cm, xq_msg_new(XQ_CLOSE, 2, 0));
	commit_push_edge(f->cm, xq_msg_new(XQ_SEND, 3, 1));
	commit_hold_call(f->cm, on_call, &k);
	assert_int_equal(commit_held(f->cm), 4);
	assert_int_equal(drained(f, t, 8), 0);
	assert_int_equal(k.n, 0);
	/* The COMMIT runs from the loop at the lowest priority. */
	event_base_loop(f->base, EVLOOP_NONBLOCK);
	assert_false(commit_is_open(f->cm));
	assert_int_equal(commit_held(f->cm), 0);
	assert_int_equal(drained(f, t, 8), 3);
	assert_int_equal(t[0], XQ_SEND);
	assert_int_equal(t[1], XQ_CLOSE);
	assert_int_equal(t[2], XQ_SEND);
	assert_int_equal(k.n, 1);
	assert_true(k.committed[0]);
	/* The write is durable: a second connection sees it. */
	enum up_state st;
	const uint8_t *r;
	size_t len;
	f->store->ops->up_get(f->store, "dev", 7, &st, &r, &len);
	assert_int_equal(st, UP_FORWARDING);
	/* With nothing open a call runs at once. */
	commit_hold_call(f->cm, on_call, &k);
	assert_int_equal(k.n, 2);
	assert_true(k.committed[1]);
}

/* The real store, but its COMMIT fails. */
static struct qos_store_ops failing_ops;
static const struct qos_store_ops *real_ops;

static int failing_commit(struct qos_store *s)
{
	return RB_EIO;
}

static void test_failed_commit_drops_acks_keeps_control(void **state)
{
	struct fx *f = *state;
	uint8_t t[8];
	struct calls k = { 0 };
	int sv[2];

	real_ops = f->store->ops;
	failing_ops = *real_ops;
	failing_ops.commit = failing_commit;
	f->store->ops = &failing_ops;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	commit_batch(f->cm);
	assert_int_equal(f->store->ops->up_begin(f->store, "dev", 9), RB_OK);
	commit_push_edge(f->cm, xq_msg_new(XQ_SEND, 1, 1));
	struct xq_msg *adopt = xq_msg_new(XQ_ADOPT, 2, 0);
	adopt->fd = sv[0];
	commit_push_edge(f->cm, adopt);
	commit_push_edge(f->cm, xq_msg_new(XQ_FLOW, 3, 0));
	commit_hold_call(f->cm, on_call, &k);
	commit_now(f->cm);
	f->store->ops = real_ops;

	/* The packet is dropped; the ADOPT (with its socket) and FLOW pass. */
	struct xq_msg *m = xq_drain(f->q);
	assert_non_null(m);
	assert_int_equal(m->type, XQ_ADOPT);
	assert_int_equal(m->fd, sv[0]);
	assert_true(fcntl(sv[0], F_GETFD) >= 0);
	assert_non_null(m->next);
	assert_int_equal(m->next->type, XQ_FLOW);
	assert_null(m->next->next);
	m->fd = -1;
	xq_msg_free(m->next);
	xq_msg_free(m);
	assert_int_equal(drained(f, t, 8), 0);
	assert_int_equal(k.n, 1);
	assert_false(k.committed[0]);
	/* Rolled back: the write is gone. */
	enum up_state st;
	const uint8_t *r;
	size_t len;
	f->store->ops->up_get(f->store, "dev", 9, &st, &r, &len);
	assert_int_equal(st, UP_ABSENT);
	close(sv[0]);
	close(sv[1]);
}

static void test_max_ops_commits_early(void **state)
{
	struct fx *f = *state;
	uint8_t t[2];

	commit_batch(f->cm);
	commit_push_edge(f->cm, xq_msg_new(XQ_SEND, 1, 1));
	for (int i = 0; i < COMMIT_MAX_OPS - 1; i++)
		commit_batch(f->cm);
	assert_int_equal(drained(f, t, 2), 0);
	/* The next write commits the full batch (and opens a new one). */
	commit_batch(f->cm);
	assert_int_equal(drained(f, t, 2), 1);
	assert_true(commit_is_open(f->cm));
	commit_now(f->cm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_no_batch_passes_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_held_until_commit_in_order, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_drops_acks_keeps_control, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_max_ops_commits_early, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
