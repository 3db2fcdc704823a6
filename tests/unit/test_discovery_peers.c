/* The discovery peer table (cluster/peers.h): join, refresh, leave,
 * expiry at exactly the timeout, a restarted node replacing its old entry,
 * and the bound. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "cluster/peers.h"

#define IP(a, b, c, d) (((uint32_t)(a) << 24) | ((b) << 16) | ((c) << 8) | (d))

static struct beacon bc(uint32_t id, uint64_t inc, uint16_t port, bool leaving)
{
	return (struct beacon){ .node_id = id, .incarnation = inc, .port = port,
				.leaving = leaving, .name = "x", .name_len = 1 };
}

static void test_join_refresh_leave(void **state)
{
	struct peer_table *t = malloc(sizeof(*t));
	struct peer old;
	char addr[64];
	peers_init(t);
	struct beacon b = bc(7, 100, 1984, false);
	assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 1), 1000, &old), PEER_JOINED);
	assert_int_equal(t->n, 1);
	assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 2), 1500, &old), PEER_REFRESHED);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->p[0].last_seen_ms, 1500);
	peer_addr(&t->p[0], addr, sizeof(addr));
	assert_string_equal(addr, "10.0.0.2:1984");
	struct beacon l = bc(8, 1, 1, true);
	assert_int_equal(peers_seen(t, &l, IP(10, 0, 0, 3), 1600, &old), PEER_IGNORED);
	l = bc(7, 100, 1984, true);
	assert_int_equal(peers_seen(t, &l, IP(10, 0, 0, 2), 1600, &old), PEER_LEFT);
	assert_int_equal(old.id, 7);
	assert_int_equal(t->n, 0);
	free(t);
}

static int expired_ids;
static void count(void *arg, const struct peer *p)
{
	expired_ids += (int)p->id;
}

static void test_expiry(void **state)
{
	struct peer_table *t = malloc(sizeof(*t));
	peers_init(t);
	struct beacon a = bc(1, 1, 10, false), b = bc(2, 1, 11, false), c = bc(4, 1, 12, false);
	peers_seen(t, &a, IP(127, 0, 0, 1), 0, NULL);
	peers_seen(t, &b, IP(127, 0, 0, 1), 1000, NULL);
	peers_seen(t, &c, IP(127, 0, 0, 1), 3000, NULL);
	expired_ids = 0;
	assert_int_equal(peers_expire(t, 5000, 5000, count, NULL), 0); /* exactly at: kept */
	assert_int_equal(peers_expire(t, 6001, 5000, count, NULL), 2);
	assert_int_equal(expired_ids, 3);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->p[0].id, 4);
	assert_int_equal(peers_expire(t, 100000, 5000, NULL, NULL), 1);
	assert_int_equal(t->n, 0);
	free(t);
}

static void test_restart_replaces(void **state)
{
	struct peer_table *t = malloc(sizeof(*t));
	struct peer old;
	peers_init(t);
	struct beacon a = bc(1, 100, 1984, false), b = bc(2, 200, 1984, false);
	struct beacon c = bc(3, 50, 1984, false), d = bc(4, 300, 1985, false);
	peers_seen(t, &a, IP(10, 0, 0, 1), 0, NULL);
	/* Same address and TCP port, greater incarnation: the old one is gone. */
	assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 1), 10, &old), PEER_REPLACED);
	assert_int_equal(old.id, 1);
	assert_int_equal(t->n, 1);
	assert_int_equal(t->p[0].id, 2);
	/* A lower incarnation replaces nothing; another port is another node. */
	assert_int_equal(peers_seen(t, &c, IP(10, 0, 0, 1), 20, &old), PEER_JOINED);
	assert_int_equal(peers_seen(t, &d, IP(10, 0, 0, 1), 20, &old), PEER_JOINED);
	assert_int_equal(t->n, 3);
	free(t);
}

static void test_bound(void **state)
{
	struct peer_table *t = malloc(sizeof(*t));
	peers_init(t);
	for (uint32_t i = 1; i <= PEERS_MAX; i++) {
		struct beacon b = bc(i, 1, (uint16_t)i, false);
		assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 1), 0, NULL), PEER_JOINED);
	}
	struct beacon b = bc(PEERS_MAX + 1, 1, 60000, false);
	assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 1), 0, NULL), PEER_FULL);
	assert_int_equal(t->n, PEERS_MAX);
	b = bc(5, 1, 5, false);
	assert_int_equal(peers_seen(t, &b, IP(10, 0, 0, 1), 1, NULL), PEER_REFRESHED);
	free(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_join_refresh_leave),
		cmocka_unit_test(test_expiry),
		cmocka_unit_test(test_restart_replaces),
		cmocka_unit_test(test_bound),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
