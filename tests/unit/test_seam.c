/* The seam queue under real threads: FIFO per producer, nothing lost,
 * doorbell rung on empty-to-non-empty only, consumer woken by an eventfd
 * exactly as the core is; depth gauges read from a third thread; an
 * XQ_ADOPT owns its fd. Also the id map both threads use. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "protocol/rb.h"
#include "src/base/idmap.h"
#include "src/base/rbuf.h"
#include "src/edge/seam.h"

#define PER_PRODUCER 200000
#define PRODUCERS 2

struct bell {
	int efd;
	atomic_uint rings;
};

static void ring(void *arg)
{
	struct bell *b = arg;
	uint64_t one = 1;
	atomic_fetch_add(&b->rings, 1);
	assert_int_equal(write(b->efd, &one, sizeof(one)), sizeof(one));
}

struct producer {
	struct xq *q;
	int which;
};

static void *produce(void *arg)
{
	struct producer *p = arg;
	for (uint64_t i = 1; i <= PER_PRODUCER; i++) {
		struct xq_msg *m = xq_msg_new(XQ_RX, i, 0);
		assert_non_null(m);
		m->code = (uint16_t)p->which;
		m->buf = rbuf_new2(&i, sizeof(i), NULL, 0); /* crosses threads, refcounted */
		xq_push(p->q, m);
	}
	return NULL;
}

static void test_two_producers(void **state)
{
	struct bell b = { .efd = eventfd(0, EFD_NONBLOCK) };
	struct xq *q = xq_new(ring, &b);
	struct producer prods[PRODUCERS];
	pthread_t th[PRODUCERS];
	uint64_t next[PRODUCERS] = { 1, 1 };
	size_t got = 0, drains = 0;

	for (int i = 0; i < PRODUCERS; i++) {
		prods[i] = (struct producer){ q, i };
		assert_int_equal(pthread_create(&th[i], NULL, produce, &prods[i]), 0);
	}
	while (got < (size_t)PER_PRODUCER * PRODUCERS) {
		struct pollfd pfd = { .fd = b.efd, .events = POLLIN };
		/* A lost wake-up would hang here: bound it so the test fails instead. */
		assert_true(poll(&pfd, 1, 5000) == 1);
		uint64_t n;
		assert_int_equal(read(b.efd, &n, sizeof(n)), sizeof(n));
		struct xq_msg *m = xq_drain(q), *nx;
		drains++;
		for (; m; m = nx) {
			nx = m->next;
			assert_int_equal(m->id, next[m->code]);
			uint64_t v;
			memcpy(&v, m->buf->data, sizeof(v));
			assert_int_equal(v, m->id);
			next[m->code]++;
			got++;
			xq_msg_free(m);
		}
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(th[i], NULL);
	assert_null(xq_drain(q));
	assert_int_equal(next[0], PER_PRODUCER + 1);
	assert_int_equal(next[1], PER_PRODUCER + 1);
	/* One ring per batch, not per message. */
	assert_true(atomic_load(&b.rings) <= drains + PRODUCERS);
	assert_true(atomic_load(&b.rings) < (unsigned)got);
	xq_free(q);
	close(b.efd);
}

static void test_ring_only_on_empty(void **state)
{
	struct bell b = { .efd = eventfd(0, EFD_NONBLOCK) };
	struct xq *q = xq_new(ring, &b);
	for (int i = 1; i <= 3; i++)
		xq_push(q, xq_msg_new(XQ_CLOSE, (uint64_t)i, 0));
	assert_int_equal(atomic_load(&b.rings), 1);
	struct xq_msg *m = xq_drain(q);
	int n = 0;
	for (struct xq_msg *nx; m; m = nx, n++) {
		nx = m->next;
		assert_int_equal(m->id, (uint64_t)n + 1);
		xq_msg_free(m);
	}
	assert_int_equal(n, 3);
	assert_null(xq_drain(q)); /* an empty drain is fine */
	xq_push(q, xq_msg_new(XQ_CLOSE, 9, 0));
	assert_int_equal(atomic_load(&b.rings), 2);
	xq_free(q); /* frees the queued message */
	close(b.efd);
}

static void test_fanout_msg(void **state)
{
	struct xq_msg *m = xq_msg_new(XQ_SEND, 0, 1000);
	assert_non_null(m);
	assert_int_equal(m->nids, 1000);
	assert_int_equal(m->fd, -1);
	assert_int_equal(m->count, 0);
	for (size_t i = 0; i < 1000; i++)
		m->rcpts[i] = (struct xq_rcpt){ i + 1, (uint16_t)(i % 65535 + 1), 0 };
	assert_int_equal(m->rcpts[999].id, 1000);
	assert_int_equal(m->rcpts[999].msgid, 1000);
	m->buf = rbuf_new(10);
	struct rbuf *extra = rbuf_ref(m->buf);
	xq_msg_free(m);
	assert_int_equal(atomic_load(&extra->refs), 1);
	rbuf_unref(extra);
}

/* A third thread reads the gauges while two producers push and the main
 * thread drains: readable from anywhere (TSan checks that), depth never
 * above the high-water mark, the mark never going down. */
struct watcher {
	struct xq *q;
	atomic_bool stop;
	size_t reads;
	size_t max_seen;
};

static void *watch(void *arg)
{
	struct watcher *w = arg;
	size_t last_max = 0;
	while (!atomic_load(&w->stop)) {
		size_t mx = xq_depth_max(w->q);
		size_t d = xq_depth(w->q);
		size_t mx2 = xq_depth_max(w->q);
		assert_true(mx >= last_max); /* monotonic */
		assert_true(d <= mx2);       /* depth was at most the later mark */
		last_max = mx2;
		if (d > w->max_seen)
			w->max_seen = d;
		w->reads++;
	}
	return NULL;
}

static void test_depth_gauges_threads(void **state)
{
	struct bell b = { .efd = eventfd(0, EFD_NONBLOCK) };
	struct xq *q = xq_new(ring, &b);
	struct producer prods[PRODUCERS];
	pthread_t th[PRODUCERS], wt;
	struct watcher w = { .q = q };
	size_t got = 0, biggest = 0;

	assert_int_equal(xq_depth(q), 0);
	assert_int_equal(xq_depth_max(q), 0);
	assert_int_equal(pthread_create(&wt, NULL, watch, &w), 0);
	for (int i = 0; i < PRODUCERS; i++) {
		prods[i] = (struct producer){ q, i };
		assert_int_equal(pthread_create(&th[i], NULL, produce, &prods[i]), 0);
	}
	while (got < (size_t)PER_PRODUCER * PRODUCERS) {
		struct pollfd pfd = { .fd = b.efd, .events = POLLIN };
		assert_true(poll(&pfd, 1, 5000) == 1);
		uint64_t n;
		assert_int_equal(read(b.efd, &n, sizeof(n)), sizeof(n));
		struct xq_msg *m = xq_drain(q), *nx;
		size_t batch = 0;
		for (; m; m = nx, batch++) {
			nx = m->next;
			xq_msg_free(m);
		}
		/* Each drained batch was the whole queue at one moment. */
		assert_true(batch <= xq_depth_max(q));
		if (batch > biggest)
			biggest = batch;
		got += batch;
	}
	for (int i = 0; i < PRODUCERS; i++)
		pthread_join(th[i], NULL);
	atomic_store(&w.stop, true);
	pthread_join(wt, NULL);
	assert_true(w.reads > 0);
	assert_int_equal(got, (size_t)PER_PRODUCER * PRODUCERS);
	assert_int_equal(xq_depth(q), 0);
	assert_true(xq_depth_max(q) >= biggest);
	assert_true(xq_depth_max(q) >= w.max_seen);
	assert_true(xq_depth_max(q) <= got);

	/* Quiet queue: exact values. */
	size_t mark = xq_depth_max(q);
	for (uint64_t i = 1; i <= 3; i++)
		xq_push(q, xq_msg_new(XQ_RX, i, 0));
	assert_int_equal(xq_depth(q), 3);
	struct xq_msg *m = xq_drain(q), *nx;
	assert_int_equal(xq_depth(q), 0);
	for (; m; m = nx) {
		nx = m->next;
		xq_msg_free(m);
	}
	assert_int_equal(xq_depth_max(q), mark > 3 ? mark : 3);
	xq_free(q);
	close(b.efd);

	/* Fresh queue: the mark is the deepest the queue was, not the last. */
	b.efd = eventfd(0, EFD_NONBLOCK);
	q = xq_new(ring, &b);
	for (uint64_t i = 1; i <= 5; i++)
		xq_push(q, xq_msg_new(XQ_RX, i, 0));
	assert_int_equal(xq_depth(q), 5);
	assert_int_equal(xq_depth_max(q), 5);
	m = xq_drain(q);
	for (; m; m = nx) {
		nx = m->next;
		xq_msg_free(m);
	}
	xq_push(q, xq_msg_new(XQ_RX, 6, 0));
	assert_int_equal(xq_depth(q), 1);
	assert_int_equal(xq_depth_max(q), 5);
	xq_free(q); /* frees the queued message */
	close(b.efd);
}

static bool fd_closed(int fd)
{
	errno = 0;
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static void test_adopt_owns_fd(void **state)
{
	int sv[2];

	/* xq_msg_free closes an ADOPT's fd... */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct xq_msg *m = xq_msg_new(XQ_ADOPT, 1, 0);
	assert_non_null(m);
	m->fd = sv[0];
	xq_msg_free(m);
	assert_true(fd_closed(sv[0]));
	/* ...and the peer sees the socket go. */
	char c;
	assert_int_equal(read(sv[1], &c, 1), 0);
	close(sv[1]);

	/* ...not one that was handed over (fd = -1), and nothing else's. */
	int p[2];
	assert_int_equal(pipe(p), 0);
	m = xq_msg_new(XQ_ADOPT, 2, 0);
	assert_int_equal(m->fd, -1);
	xq_msg_free(m);
	m = xq_msg_new(XQ_CLOSED, 3, 0);
	m->fd = p[0]; /* meaningless outside XQ_ADOPT: not owned */
	m->count = 7;
	xq_msg_free(m);
	assert_false(fd_closed(p[0]));
	assert_false(fd_closed(p[1]));
	close(p[0]);
	close(p[1]);
}

/* ADOPTs pushed from another thread and never taken (the core's held list
 * dropped, or the edge gone at exit) close their sockets when freed. */
struct adopter {
	struct xq *q;
	int fds[8];
};

static void *push_adopts(void *arg)
{
	struct adopter *a = arg;
	for (int i = 0; i < 8; i++) {
		struct xq_msg *m = xq_msg_new(XQ_ADOPT, (uint64_t)i + 1, 0);
		assert_non_null(m);
		m->fd = a->fds[i];
		m->buf = rbuf_new2("GET / HTTP/1.1\r\n\r\n", 18, NULL, 0);
		xq_push(a->q, m);
	}
	return NULL;
}

static void test_adopt_fd_across_threads(void **state)
{
	struct bell b = { .efd = eventfd(0, EFD_NONBLOCK) };
	struct adopter a = { .q = xq_new(ring, &b) };
	int peers[8];
	pthread_t th;

	for (int i = 0; i < 8; i++) {
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		a.fds[i] = sv[0];
		peers[i] = sv[1];
	}
	assert_int_equal(pthread_create(&th, NULL, push_adopts, &a), 0);
	pthread_join(th, NULL);
	assert_int_equal(xq_depth(a.q), 8);
	/* The consumer takes over the first four (as do_adopt does: fd
	 * moved out, m->fd = -1) and drops the other four. */
	struct xq_msg *m = xq_drain(a.q), *nx;
	int taken[4], n = 0;
	for (; m; m = nx, n++) {
		nx = m->next;
		if (n < 4) {
			taken[n] = m->fd;
			m->fd = -1;
		}
		xq_msg_free(m);
	}
	assert_int_equal(n, 8);
	for (int i = 0; i < 4; i++) {
		assert_int_equal(taken[i], a.fds[i]);
		assert_false(fd_closed(a.fds[i]));
		close(taken[i]);
	}
	for (int i = 4; i < 8; i++)
		assert_true(fd_closed(a.fds[i]));

	/* Left in the queue: xq_free closes them too. */
	for (int i = 0; i < 8; i++) {
		close(peers[i]);
		int sv[2];
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		a.fds[i] = sv[0];
		peers[i] = sv[1];
	}
	assert_int_equal(pthread_create(&th, NULL, push_adopts, &a), 0);
	pthread_join(th, NULL);
	xq_free(a.q);
	for (int i = 0; i < 8; i++) {
		assert_true(fd_closed(a.fds[i]));
		char c;
		assert_int_equal(read(peers[i], &c, 1), 0); /* EOF: really closed */
		close(peers[i]);
	}
	close(b.efd);
}

static void test_conn_ids_unique(void **state)
{
	uint64_t a = conn_id_next(0, 1), b = conn_id_next(0, 1);
	assert_true(a >= 1);
	assert_true(b > a);
	/* An id names its edge: id % nedges. */
	for (unsigned k = 0; k < 3; k++) {
		uint64_t x = conn_id_next(k, 3), y = conn_id_next(k, 3);
		assert_true(x != 0 && y > x);
		assert_int_equal(x % 3, k);
		assert_int_equal(y % 3, k);
	}
}

static void test_idmap(void **state)
{
	struct idmap m = { 0 };
	enum { N = 100000 };
	assert_null(idmap_get(&m, 5));
	assert_null(idmap_del(&m, 5));
	for (uintptr_t i = 1; i <= N; i++)
		assert_int_equal(idmap_put(&m, i, (void *)(i * 3)), RB_OK);
	assert_int_equal(m.len, N);
	/* Delete every other one: backward shift must keep the rest findable. */
	for (uintptr_t i = 1; i <= N; i += 2)
		assert_ptr_equal(idmap_del(&m, i), (void *)(i * 3));
	for (uintptr_t i = 1; i <= N; i++)
		assert_ptr_equal(idmap_get(&m, i), i % 2 ? NULL : (void *)(i * 3));
	assert_int_equal(m.len, N / 2);
	assert_int_equal(idmap_put(&m, 2, (void *)7), RB_OK); /* replace */
	assert_ptr_equal(idmap_get(&m, 2), (void *)7);
	assert_int_equal(m.len, N / 2);
	size_t i = 0, seen = 0;
	uint64_t id;
	void *val;
	while (idmap_next(&m, &i, &id, &val)) {
		assert_true(id % 2 == 0);
		seen++;
	}
	assert_int_equal(seen, N / 2);
	idmap_free(&m);
	assert_null(idmap_get(&m, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_producers),
		cmocka_unit_test(test_ring_only_on_empty),
		cmocka_unit_test(test_fanout_msg),
		cmocka_unit_test(test_depth_gauges_threads),
		cmocka_unit_test(test_adopt_owns_fd),
		cmocka_unit_test(test_adopt_fd_across_threads),
		cmocka_unit_test(test_conn_ids_unique),
		cmocka_unit_test(test_idmap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
