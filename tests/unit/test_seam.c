/* The seam queue under real threads: FIFO per producer, nothing lost,
 * doorbell rung on empty-to-non-empty only, consumer woken by an eventfd
 * exactly as the core is. Also the id map both threads use. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

static void test_conn_ids_unique(void **state)
{
	uint64_t a = conn_id_next(), b = conn_id_next();
	assert_true(a >= 1);
	assert_true(b > a);
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
		cmocka_unit_test(test_conn_ids_unique),
		cmocka_unit_test(test_idmap),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
