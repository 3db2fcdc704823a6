/* Unit tests for target resolution (src/msg/route.c) without a running
 * core: a struct core holding a real channel registry, a real SQLite file
 * for sessions, a session map, and an engine. Besides the local engine, a
 * second small implementation of the engine interface stands for "other
 * nodes" (what the LAN cluster will answer), to check that the resolver
 * asks the seam and reports nodes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "protocol/rb.h"
#include "src/base/strmap.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/engine.h"
#include "src/msg/route.h"
#include "storage/db.h"

/* ---- an engine that knows two other nodes ---- */
static uint32_t two_self(struct engine *e) { return 1; }
static void two_interest(struct engine *e, const char *ch, bool on) {}
static size_t two_channel_nodes(struct engine *e, const char *ch, uint32_t *out, size_t cap)
{
	static const uint32_t n[] = { 3, 5 };
	if (strcmp(ch, "everywhere") != 0)
		return 0;
	for (size_t i = 0; i < cap && i < 2; i++)
		out[i] = n[i];
	return 2;
}
static uint32_t two_locate(struct engine *e, const char *name)
{
	return strcmp(name, "elsewhere") == 0 ? 5 : 0;
}
static const struct engine_ops two_ops = {
	.name = "two", .self = two_self, .interest = two_interest,
	.channel_nodes = two_channel_nodes, .locate_identity = two_locate,
	.locate_device = two_locate,
};

struct fx {
	struct core c;
	struct engine two;
	char dir[64], path[128];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	snprintf(f->dir, sizeof(f->dir), "/tmp/rb-route-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/r.db", f->dir);
	f->c.channels = channels_new();
	f->c.sessions = strmap_new();
	f->c.db = db_open(f->path, DB_NORMAL, err, sizeof(err));
	assert_non_null(f->c.db);
	f->c.engine = engine_local_new(7);
	f->two.ops = &two_ops;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	char p[160];
	f->c.engine->ops->free(f->c.engine);
	db_close(f->c.db);
	strmap_free(f->c.sessions);
	channels_free(f->c.channels);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void test_channel_local_members(void **state)
{
	struct fx *f = *state;
	struct route_set s;
	struct target t = { TARGET_CHANNEL, "room" };

	assert_int_equal(channels_sub(f->c.channels, "room", 11), RB_OK);
	assert_int_equal(channels_sub(f->c.channels, "room", 12), RB_OK);
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_int_equal(s.n_conns, 2);
	assert_true((s.conns[0] == 11 && s.conns[1] == 12) || (s.conns[0] == 12 && s.conns[1] == 11));
	assert_int_equal(s.n_offline, 0);
	assert_int_equal(s.n_nodes, 0);
	assert_true(route_found(&s));
	/* The ids are a copy: leaving the channel does not disturb them. */
	channels_unsub(f->c.channels, "room", 11);
	channels_unsub(f->c.channels, "room", 12);
	assert_int_equal(s.n_conns, 2);
	route_set_free(&s);
	assert_int_equal(route_resolve(&f->c, &t, true, &s), RB_OK);
	assert_false(route_found(&s));
	route_set_free(&s);
}

static void test_channel_offline_sessions(void **state)
{
	struct fx *f = *state;
	struct route_set s;
	struct target t = { TARGET_CHANNEL, "news" };
	struct db_session away = { .expires_at = (int64_t)time(NULL) + 600 };
	struct db_session held = { .expires_at = 0 };

	assert_int_equal(db_session_put(f->c.db, "dev-away", &away), RB_OK);
	assert_int_equal(db_session_put(f->c.db, "dev-held", &held), RB_OK);
	assert_int_equal(db_sub_add(f->c.db, "dev-away", "news"), RB_OK);
	assert_int_equal(db_sub_add(f->c.db, "dev-held", "news"), RB_OK);
	/* Without offline: nothing (no connection here). */
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_false(route_found(&s));
	route_set_free(&s);
	assert_int_equal(route_resolve(&f->c, &t, true, &s), RB_OK);
	assert_int_equal(s.n_offline, 1);
	assert_string_equal(s.offline[0], "dev-away");
	route_set_free(&s);
}

static void test_device(void **state)
{
	struct fx *f = *state;
	struct route_set s;
	struct target t = { TARGET_DEVICE, "dev-away" };
	struct db_session away = { .expires_at = (int64_t)time(NULL) + 600 };

	assert_int_equal(db_session_put(f->c.db, "dev-away", &away), RB_OK);
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_true(s.kept_offline);
	assert_int_equal(s.n_offline, 0);
	assert_true(route_found(&s));
	route_set_free(&s);
	assert_int_equal(route_resolve(&f->c, &t, true, &s), RB_OK);
	assert_int_equal(s.n_offline, 1);
	route_set_free(&s);
	t.name = "dev-unknown";
	assert_int_equal(route_resolve(&f->c, &t, true, &s), RB_OK);
	assert_false(route_found(&s));
	route_set_free(&s);
}

static void test_identity_unknown_locally(void **state)
{
	struct fx *f = *state;
	struct route_set s;
	struct target t = { TARGET_IDENTITY, "elsewhere" };

	assert_int_equal(route_resolve(&f->c, &t, true, &s), RB_OK);
	assert_false(route_found(&s)); /* the local engine knows no other node */
	route_set_free(&s);
}

static void test_other_nodes_through_the_engine(void **state)
{
	struct fx *f = *state;
	struct route_set s;
	struct engine *local = f->c.engine;
	f->c.engine = &f->two;

	struct target t = { TARGET_CHANNEL, "everywhere" };
	assert_int_equal(channels_sub(f->c.channels, "everywhere", 7), RB_OK);
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_int_equal(s.n_conns, 1);
	assert_int_equal(s.n_nodes, 2);
	assert_int_equal(s.nodes[0], 3);
	assert_int_equal(s.nodes[1], 5);
	route_set_free(&s);
	t = (struct target){ TARGET_IDENTITY, "elsewhere" };
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_int_equal(s.n_conns, 0);
	assert_int_equal(s.n_nodes, 1);
	assert_int_equal(s.nodes[0], 5);
	route_set_free(&s);
	t = (struct target){ TARGET_DEVICE, "elsewhere" };
	assert_int_equal(route_resolve(&f->c, &t, false, &s), RB_OK);
	assert_int_equal(s.n_nodes, 1);
	route_set_free(&s);
	f->c.engine = local;
}

struct watch {
	int on, off;
	char last[32];
};

static void watch_fn(void *arg, const char *name, bool nonempty)
{
	struct watch *w = arg;
	if (nonempty)
		w->on++;
	else
		w->off++;
	snprintf(w->last, sizeof(w->last), "%s", name);
}

static void test_channel_interest_transitions(void **state)
{
	struct fx *f = *state;
	struct watch w = { 0 };

	channels_watch(f->c.channels, watch_fn, &w);
	channels_sub(f->c.channels, "c", 1);
	channels_sub(f->c.channels, "c", 2);
	channels_sub(f->c.channels, "c", 2); /* already a member */
	assert_int_equal(w.on, 1);
	channels_unsub(f->c.channels, "c", 1);
	channels_unsub(f->c.channels, "c", 9); /* not a member */
	assert_int_equal(w.off, 0);
	channels_unsub(f->c.channels, "c", 2);
	assert_int_equal(w.off, 1);
	assert_string_equal(w.last, "c");
	channels_sub(f->c.channels, "c", 3);
	assert_int_equal(w.on, 2);
	channels_watch(f->c.channels, NULL, NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_channel_local_members, setup, teardown),
		cmocka_unit_test_setup_teardown(test_channel_offline_sessions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_device, setup, teardown),
		cmocka_unit_test_setup_teardown(test_identity_unknown_locally, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_nodes_through_the_engine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_channel_interest_transitions, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
