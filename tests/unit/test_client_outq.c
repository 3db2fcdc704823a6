/*
 * test_client_outq.c - the C client's outbound queue (clients/c/outq.h):
 * strict order, message ids (unique while held, wrap-around, the in-flight
 * cap), requeue after a lost connection (order, DUP, kept ids, RELEASING
 * left alone), deadlines, and the exact bytes of the frames it builds
 * (docs/protocol.md Packets examples).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "clients/c/outq.h"

static struct rbc_msg *msg(uint16_t type, uint8_t qos, const char *data)
{
	struct rbc_msg *m = rbc_msg_new(type, qos, data, data ? strlen(data) : 0);

	assert_non_null(m);
	return m;
}

static void drain(struct rbc_outq *q)
{
	struct rbc_msg *m;

	while ((m = rbc_outq_pop(q)))
		free(m);
	assert_int_equal(rbc_outq_count(q), 0);
	assert_int_equal(q->nids, 0);
}

static void assert_frame(struct rbc_msg *m, const uint8_t *want, size_t n)
{
	size_t len;
	uint8_t *p = rbc_msg_frame(m, &len);

	assert_int_equal(len, n);
	assert_memory_equal(p, want, n);
	assert_true(p - m->buf >= RBC_HEADROOM);
}

static void test_frames_match_the_protocol(void **state)
{
	/* docs/protocol.md: SEND QoS 0, type 1, {"a":0} = 10 0001 7b2261223a307d */
	static const uint8_t q0[] = { 0x10, 0x00, 0x01, '{', '"', 'a', '"', ':', '0', '}' };
	/* SEND QoS 1, type 2, id 10, {"a":1} = 12 0002 000a ...; DUP: 1a ... */
	static const uint8_t q1[] = { 0x12, 0x00, 0x02, 0x00, 0x0a, '{', '"', 'a', '"', ':', '1', '}' };
	static const uint8_t q1dup[] = { 0x1a, 0x00, 0x02, 0x00, 0x0a, '{', '"', 'a', '"', ':', '1', '}' };
	/* SEND QoS 2, type 3, id 11, {"a":2} = 14 0003 000b ...; DUP: 1c ... */
	static const uint8_t q2dup[] = { 0x1c, 0x00, 0x03, 0x00, 0x0b, '{', '"', 'a', '"', ':', '2', '}' };
	static const uint8_t empty[] = { 0x12, 0xff, 0xff, 0xff, 0xff };
	struct rbc_msg *m;

	m = msg(1, 0, "{\"a\":0}");
	assert_frame(m, q0, sizeof(q0));
	m->dup = true; /* never on QoS 0 */
	assert_frame(m, q0, sizeof(q0));
	free(m);

	m = msg(2, 1, "{\"a\":1}");
	m->msgid = 10;
	assert_frame(m, q1, sizeof(q1));
	m->dup = true;
	assert_frame(m, q1dup, sizeof(q1dup));
	free(m);

	m = msg(3, 2, "{\"a\":2}");
	m->msgid = 11;
	m->dup = true;
	assert_frame(m, q2dup, sizeof(q2dup));
	free(m);

	m = msg(65535, 1, NULL);
	m->msgid = 65535;
	assert_frame(m, empty, sizeof(empty));
	free(m);

	assert_null(rbc_msg_new(1, 3, "x", 1));
}

static void test_order_and_ids(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *a = msg(1, 1, "a"), *b = msg(1, 0, "b"), *c = msg(1, 2, "c");

	rbc_outq_init(&q, 0);
	assert_int_equal(q.max_flight, 65535);
	assert_false(rbc_outq_ready(&q));
	assert_null(rbc_outq_take(&q));
	rbc_outq_push(&q, a);
	rbc_outq_push(&q, b);
	rbc_outq_push(&q, c);
	assert_int_equal(rbc_outq_count(&q), 3);

	assert_ptr_equal(rbc_outq_take(&q), a);
	assert_int_equal(a->msgid, 1);
	assert_int_equal(a->state, RBC_SENT);
	assert_ptr_equal(rbc_outq_take(&q), b); /* QoS 0: handed over */
	assert_int_equal(b->msgid, 0);
	free(b);
	assert_ptr_equal(rbc_outq_take(&q), c);
	assert_int_equal(c->msgid, 2);
	assert_null(rbc_outq_take(&q));
	assert_int_equal(q.nflight, 2);
	assert_int_equal(q.nids, 2);

	assert_ptr_equal(rbc_outq_find(&q, 2), c);
	assert_ptr_equal(rbc_outq_find(&q, 1), a);
	assert_null(rbc_outq_find(&q, 3));
	rbc_outq_drop(&q, a);
	free(a);
	assert_null(rbc_outq_find(&q, 1));
	assert_int_equal(q.nids, 1);
	drain(&q);
}

static void test_ids_wrap_and_skip_held(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *held = msg(1, 1, "h"), *m;

	rbc_outq_init(&q, 0);
	q.last_id = 2;
	rbc_outq_push(&q, held);
	assert_ptr_equal(rbc_outq_take(&q), held);
	assert_int_equal(held->msgid, 3);
	/* wrap: 65535, then 1, 2, never 0, never the held 3 */
	q.last_id = 65534;
	static const uint16_t want[] = { 65535, 1, 2, 4, 5 };
	for (size_t i = 0; i < RB_ARRAY_LEN(want); i++) {
		m = msg(1, 2, "x");
		rbc_outq_push(&q, m);
		assert_ptr_equal(rbc_outq_take(&q), m);
		assert_int_equal(m->msgid, want[i]);
	}
	/* an id freed is reused only when the counter comes round again */
	m = rbc_outq_find(&q, 1);
	rbc_outq_drop(&q, m);
	free(m);
	m = msg(1, 1, "y");
	rbc_outq_push(&q, m);
	assert_ptr_equal(rbc_outq_take(&q), m);
	assert_int_equal(m->msgid, 6);
	drain(&q);
}

static void test_max_flight_blocks_in_order(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *a = msg(1, 1, "a"), *b = msg(1, 1, "b"), *z = msg(1, 0, "z");

	rbc_outq_init(&q, 1);
	rbc_outq_push(&q, a);
	rbc_outq_push(&q, b);
	rbc_outq_push(&q, z);
	assert_ptr_equal(rbc_outq_take(&q), a);
	/* b needs an id and none is free; z (QoS 0) waits behind it */
	assert_false(rbc_outq_ready(&q));
	assert_null(rbc_outq_take(&q));
	rbc_outq_drop(&q, a);
	free(a);
	assert_true(rbc_outq_ready(&q));
	assert_ptr_equal(rbc_outq_take(&q), b);
	assert_ptr_equal(rbc_outq_take(&q), z);
	free(z);
	drain(&q);
}

static void test_requeue_after_loss(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *a = msg(1, 1, "a"), *b = msg(1, 2, "b"), *c = msg(1, 1, "c");
	struct rbc_msg *d = msg(1, 0, "d"), *e = msg(1, 1, "e");

	rbc_outq_init(&q, 8);
	rbc_outq_push(&q, a);
	rbc_outq_push(&q, b);
	rbc_outq_push(&q, c);
	assert_ptr_equal(rbc_outq_take(&q), a); /* id 1 */
	assert_ptr_equal(rbc_outq_take(&q), b); /* id 2 */
	assert_ptr_equal(rbc_outq_take(&q), c); /* id 3 */
	b->state = RBC_RELEASING;                /* REC came: only REL is due */
	rbc_outq_push(&q, d);                     /* queued while connected */
	rbc_outq_push(&q, e);

	assert_int_equal(rbc_outq_requeue(&q), 2);
	assert_int_equal(q.nflight, 1);
	assert_int_equal(q.nqueued, 4);
	assert_int_equal(q.nids, 3);
	assert_ptr_equal(q.f_head, b);
	assert_int_equal(b->state, RBC_RELEASING);
	assert_false(b->dup);

	/* the same order, the same ids, DUP set; then the rest */
	assert_ptr_equal(rbc_outq_take(&q), a);
	assert_true(a->dup);
	assert_int_equal(a->msgid, 1);
	assert_ptr_equal(rbc_outq_take(&q), c);
	assert_true(c->dup);
	assert_int_equal(c->msgid, 3);
	assert_ptr_equal(rbc_outq_take(&q), d);
	assert_false(d->dup);
	free(d);
	assert_ptr_equal(rbc_outq_take(&q), e);
	assert_false(e->dup);
	assert_int_equal(e->msgid, 4); /* 1..3 are still held */
	assert_int_equal(q.nids, 4);
	/* flight order: b (kept), a, c, e */
	assert_ptr_equal(q.f_head, b);
	assert_ptr_equal(q.f_head->next, a);
	assert_ptr_equal(q.f_head->next->next, c);
	assert_ptr_equal(q.f_tail, e);

	/* a requeued message keeps holding its id: no new message gets it */
	assert_int_equal(rbc_outq_requeue(&q), 3);
	q.last_id = 0;
	struct rbc_msg *f = msg(1, 1, "f");
	rbc_outq_push(&q, f);
	for (int i = 0; i < 3; i++)
		assert_non_null(rbc_outq_take(&q));
	assert_ptr_equal(rbc_outq_take(&q), f);
	assert_int_equal(f->msgid, 5);
	drain(&q);
}

static void test_requeue_respects_max_flight(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *a = msg(1, 1, "a"), *b = msg(1, 1, "b");

	rbc_outq_init(&q, 1);
	rbc_outq_push(&q, a);
	rbc_outq_push(&q, b);
	assert_ptr_equal(rbc_outq_take(&q), a);
	assert_null(rbc_outq_take(&q));
	rbc_outq_requeue(&q);
	/* a holds its id, so it may go again; b still may not */
	assert_ptr_equal(rbc_outq_take(&q), a);
	assert_null(rbc_outq_take(&q));
	drain(&q);
}

static void test_deadlines(void **state)
{
	struct rbc_outq q;
	struct rbc_msg *a = msg(1, 1, "a"), *b = msg(1, 1, "b"), *c = msg(1, 0, "c");
	struct rbc_msg *r = msg(1, 2, "r"), *m;
	int64_t next = -1;

	rbc_outq_init(&q, 0);
	a->deadline = 100;
	b->deadline = 300;
	c->deadline = 0;   /* none */
	r->deadline = 50;
	rbc_outq_push(&q, r);
	rbc_outq_push(&q, a);
	rbc_outq_push(&q, b);
	rbc_outq_push(&q, c);
	assert_ptr_equal(rbc_outq_take(&q), r);
	assert_ptr_equal(rbc_outq_take(&q), a);
	r->state = RBC_RELEASING;  /* after REC: no deadline applies */
	r->deadline = 0;

	assert_null(rbc_outq_expired(&q, 99, &next));
	assert_int_equal(next, 100);
	m = rbc_outq_expired(&q, 100, &next);
	assert_ptr_equal(m, a); /* in flight, unlinked, its id free */
	assert_null(rbc_outq_find(&q, a->msgid));
	free(m);
	assert_null(rbc_outq_expired(&q, 100, &next));
	assert_int_equal(next, 300);
	assert_ptr_equal(m = rbc_outq_expired(&q, 1000, &next), b); /* still queued */
	free(m);
	assert_null(rbc_outq_expired(&q, 1000000, &next));
	assert_int_equal(next, 0);
	assert_int_equal(rbc_outq_count(&q), 2); /* r (releasing) and c */
	drain(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_frames_match_the_protocol),
		cmocka_unit_test(test_order_and_ids),
		cmocka_unit_test(test_ids_wrap_and_skip_held),
		cmocka_unit_test(test_max_flight_blocks_in_order),
		cmocka_unit_test(test_requeue_after_loss),
		cmocka_unit_test(test_requeue_respects_max_flight),
		cmocka_unit_test(test_deadlines),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
