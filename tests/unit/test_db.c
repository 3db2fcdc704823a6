/* storage/db.c against a real SQLite file: a fresh directory under /tmp per
 * test, removed afterwards. Exact row counts after every step. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "protocol/rb.h"
#include "src/base/log.h"
#include "storage/db.h"

#define MIB (1024 * 1024)

struct fx {
	char dir[64];
	char path[128];
	char err[512];
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/test_db.XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/rainbow.db", f->dir);
	*state = f;
	return 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(p);
}

/* A test failing halfway may leave a directory read-only. */
static int chmod_dir(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)ftw;
	if (flag == FTW_D && (sb->st_mode & 0700) != 0700)
		chmod(p, 0700);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;
	nftw(f->dir, chmod_dir, 16, FTW_PHYS);
	int rc = nftw(f->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);

	free(f);
	return rc;
}

/* ---- helpers ---- */

static struct db *open_ok(struct fx *f, enum db_durability d)
{
	struct db *db = db_open(f->path, d, f->err, sizeof(f->err));
	if (!db)
		print_error("db_open(%s): %s\n", f->path, f->err);
	assert_non_null(db);
	return db;
}

static void check_counts(struct db *db, size_t s, size_t sub, size_t m, size_t d, size_t u,
			 int line)
{
	struct db_counts c;

	assert_int_equal(db_counts(db, &c), RB_OK);
	if (c.sessions != s || c.subscriptions != sub || c.messages != m || c.deliveries != d ||
	    c.upstream != u) {
		print_error("line %d: counts sessions/subs/messages/deliveries/upstream "
			    "%zu/%zu/%zu/%zu/%zu, want %zu/%zu/%zu/%zu/%zu\n", line, c.sessions,
			    c.subscriptions, c.messages, c.deliveries, c.upstream, s, sub, m, d, u);
		fail();
	}
}
#define COUNTS(db, s, sub, m, d, u) check_counts((db), (s), (sub), (m), (d), (u), __LINE__)

/* A second, independent connection for looking at the file. */
static sqlite3 *raw_open(const char *path)
{
	sqlite3 *h = NULL;
	assert_int_equal(sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	return h;
}

static int64_t raw_int(sqlite3 *h, const char *sql)
{
	sqlite3_stmt *st;
	int64_t v;

	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

static void raw_text(sqlite3 *h, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st;

	assert_int_equal(sqlite3_prepare_v2(h, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	snprintf(out, outlen, "%s", (const char *)sqlite3_column_text(st, 0));
	sqlite3_finalize(st);
}

static void raw_exec(sqlite3 *h, const char *sql)
{
	char *msg = NULL;
	if (sqlite3_exec(h, sql, NULL, NULL, &msg) != SQLITE_OK)
		print_error("%s: %s\n", sql, msg);
	sqlite3_free(msg);
	assert_null(msg);
}

static void fill(void *buf, size_t len, uint32_t seed)
{
	uint8_t *p = buf;
	uint32_t x = seed | 1;
	for (size_t i = 0; i < len; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

static void write_file(const char *path, const void *buf, size_t len)
{
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(buf, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static struct db_session sess(int64_t expires_at, uint16_t next_msgid)
{
	struct db_session s = { expires_at, next_msgid };
	return s;
}

static int64_t add_msg(struct db *db, uint16_t msgtype, uint8_t qos, const char *payload)
{
	int64_t id = -1;
	assert_int_equal(db_msg_add(db, msgtype, qos, payload, strlen(payload), &id), RB_OK);
	assert_true(id > 0);
	return id;
}

struct strs {
	int n;
	char s[16][64];
};

static void collect_str(const char *s, void *arg)
{
	struct strs *l = arg;
	assert_true(l->n < 16);
	snprintf(l->s[l->n++], sizeof(l->s[0]), "%s", s);
}

/* Expect exactly the strings in want (a NULL-terminated list), in order. */
static void check_strs(const struct strs *l, const char *const *want)
{
	int n = 0;
	for (; want[n]; n++) {
		assert_true(n < l->n);
		assert_string_equal(l->s[n], want[n]);
	}
	assert_int_equal(l->n, n);
}

struct dlvs {
	int n;
	struct {
		uint16_t msgid;
		int state;
		bool sent;
		uint16_t msgtype;
		uint8_t qos;
		size_t len;
		char payload[64];
	} d[16];
};

static void collect_dlv(const struct db_dlv *d, void *arg)
{
	struct dlvs *l = arg;
	assert_true(l->n < 16);
	assert_non_null(d->payload);
	l->d[l->n].msgid = d->msgid;
	l->d[l->n].state = d->state;
	l->d[l->n].sent = d->sent;
	l->d[l->n].msgtype = d->msgtype;
	l->d[l->n].qos = d->qos;
	l->d[l->n].len = d->len;
	memcpy(l->d[l->n].payload, d->payload, d->len < 63 ? d->len : 63);
	l->n++;
}

static struct dlvs list(struct db *db, const char *device)
{
	struct dlvs l = { 0 };
	assert_int_equal(db_dlv_list(db, device, collect_dlv, &l), RB_OK);
	return l;
}

static void check_dlv(const struct dlvs *l, int i, uint16_t msgid, int state, bool sent,
		      uint16_t msgtype, uint8_t qos, const char *payload)
{
	assert_true(i < l->n);
	assert_int_equal(l->d[i].msgid, msgid);
	assert_int_equal(l->d[i].state, state);
	assert_int_equal(l->d[i].sent, sent);
	assert_int_equal(l->d[i].msgtype, msgtype);
	assert_int_equal(l->d[i].qos, qos);
	assert_int_equal(l->d[i].len, strlen(payload));
	assert_memory_equal(l->d[i].payload, payload, strlen(payload));
}

static void check_up(struct db *db, const char *device, uint16_t msgid, int want_state,
		     const char *want_reply)
{
	int st = -1;
	const void *r = (const void *)1;
	size_t len = 99;

	assert_int_equal(db_up_get(db, device, msgid, &st, &r, &len), RB_OK);
	assert_int_equal(st, want_state);
	if (want_reply) {
		assert_non_null(r);
		assert_int_equal(len, strlen(want_reply));
		assert_memory_equal(r, want_reply, len);
	} else {
		assert_null(r);
		assert_int_equal(len, 0);
	}
}

/* ---- open, schema, migrations ---- */

static void test_open_fresh(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	char mode[16];

	assert_string_equal(f->err, "");
	assert_false(db_in_batch(db));
	COUNTS(db, 0, 0, 0, 0, 0);

	sqlite3 *h = raw_open(f->path);
	raw_text(h, "PRAGMA journal_mode", mode, sizeof(mode));
	assert_string_equal(mode, "wal"); /* persistent in the file */
	assert_int_equal(raw_int(h, "SELECT count(*) FROM schema_version"), 1);
	assert_int_equal(raw_int(h, "SELECT version FROM schema_version"), DB_SCHEMA_VERSION);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				    " AND name IN ('schema_version', 'sessions', 'subscriptions',"
				    " 'messages', 'deliveries', 'upstream')"), 6);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'index'"
				    " AND name IN ('sessions_expiry', 'subscriptions_channel',"
				    " 'deliveries_message', 'deliveries_order')"), 4);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'trigger'"
				    " AND name IN ('deliveries_gc', 'deliveries_usage_add',"
				    " 'sessions_usage')"), 3);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
				    " AND sql LIKE '%WITHOUT ROWID'"), 3);
	sqlite3_close(h);
	db_close(db);
}

static void test_reopen_v1_no_change(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct db_session s = sess(1000, 3);
	char schema1[4096], schema2[4096];
	int64_t cookie;

	assert_int_equal(db_session_put(db, "dev", &s), RB_OK);
	assert_int_equal(db_sub_add(db, "dev", "ch"), RB_OK);
	db_close(db);

	static const char q[] = "SELECT group_concat(type || ' ' || name || ' ' || ifnull(sql, ''),"
				" char(10)) FROM (SELECT * FROM sqlite_master ORDER BY name)";
	sqlite3 *h = raw_open(f->path);
	cookie = raw_int(h, "PRAGMA schema_version");
	raw_text(h, q, schema1, sizeof(schema1));
	sqlite3_close(h);

	db = open_ok(f, DB_FULL);
	COUNTS(db, 1, 1, 0, 0, 0);
	db_close(db);

	h = raw_open(f->path);
	assert_int_equal(raw_int(h, "PRAGMA schema_version"), cookie);
	raw_text(h, q, schema2, sizeof(schema2));
	assert_string_equal(schema1, schema2);
	assert_int_equal(raw_int(h, "SELECT version FROM schema_version"), DB_SCHEMA_VERSION);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM schema_version"), 1);
	sqlite3_close(h);
}

static void test_newer_schema_refused(void **state)
{
	struct fx *f = *state;
	char want[256];

	db_close(open_ok(f, DB_NORMAL));
	sqlite3 *h = raw_open(f->path);
	raw_exec(h, "UPDATE schema_version SET version = 99");
	sqlite3_close(h);

	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: schema version 99 is newer than this build (%d)",
		 f->path, DB_SCHEMA_VERSION);
	assert_string_equal(f->err, want);

	h = raw_open(f->path); /* untouched */
	assert_int_equal(raw_int(h, "SELECT version FROM schema_version"), 99);
	/* A damaged version table is refused too. */
	raw_exec(h, "INSERT INTO schema_version VALUES(1)");
	sqlite3_close(h);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "damaged schema_version table (2 rows"));
}

static void test_foreign_db_refused(void **state)
{
	struct fx *f = *state;
	char want[256];
	sqlite3 *h = NULL;

	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	raw_exec(h, "CREATE TABLE accounts(id INTEGER PRIMARY KEY, name TEXT)");
	sqlite3_close(h);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: not a rainbow database (tables but no schema_version)",
		 f->path);
	assert_string_equal(f->err, want);
	h = raw_open(f->path);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sqlite_master"), 1);
	sqlite3_close(h);
}

/* synchronous is a property of a connection, not of the file: a second
 * connection sees its own. The auto-extension hook hands the test the
 * connection db_open makes, to read what db.c set on it. */
static sqlite3 *captured;

static int capture(sqlite3 *h, const char **msg, const struct sqlite3_api_routines *api)
{
	(void)msg;
	(void)api;
	captured = h;
	return SQLITE_OK;
}

static void test_durability(void **state)
{
	struct fx *f = *state;
	char mode[16];

	assert_int_equal(sqlite3_auto_extension((void (*)(void))capture), SQLITE_OK);
	for (int d = DB_OFF; d <= DB_FULL; d++) {
		captured = NULL;
		struct db *db = open_ok(f, (enum db_durability)d);
		sqlite3 *mine = captured;
		assert_non_null(mine);
		assert_int_equal(raw_int(mine, "PRAGMA synchronous"), d);
		assert_int_equal(raw_int(mine, "PRAGMA foreign_keys"), 1);
		assert_int_equal(raw_int(mine, "PRAGMA busy_timeout"), 100);
		sqlite3 *h = raw_open(f->path);
		raw_text(h, "PRAGMA journal_mode", mode, sizeof(mode));
		assert_string_equal(mode, "wal");
		sqlite3_close(h);
		db_close(db);
	}
	sqlite3_cancel_auto_extension((void (*)(void))capture);

	assert_null(db_open(f->path, (enum db_durability)7, f->err, sizeof(f->err)));
	assert_non_null(strstr(f->err, "bad durability 7"));
}

static void test_not_a_database(void **state)
{
	struct fx *f = *state;
	static uint8_t junk[8192], back[8192];
	char want[256];

	fill(junk, sizeof(junk), 42);
	write_file(f->path, junk, sizeof(junk));
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: file is not a database", f->path);
	assert_string_equal(f->err, want);

	/* Refused without a write. */
	FILE *fp = fopen(f->path, "rb");
	assert_non_null(fp);
	assert_int_equal(fread(back, 1, sizeof(back) + 1, fp), sizeof(back));
	fclose(fp);
	assert_memory_equal(junk, back, sizeof(junk));

	/* err may be NULL or tiny. */
	assert_null(db_open(f->path, DB_NORMAL, NULL, 0));
	char tiny[8];
	assert_null(db_open(f->path, DB_NORMAL, tiny, sizeof(tiny)));
	assert_int_equal(strlen(tiny), sizeof(tiny) - 1);
}

/* A database whose sessions root page is damaged: how depends on the bytes. */
static void corrupt_sessions_page(struct fx *f, size_t off, const void *bytes, size_t len,
				  int64_t *page_no)
{
	struct db *db = open_ok(f, DB_NORMAL);
	char dev[32];
	int64_t root, pgsz;

	for (int i = 0; i < 50; i++) {
		struct db_session s = sess(0, (uint16_t)i);
		snprintf(dev, sizeof(dev), "device-%02d", i);
		assert_int_equal(db_session_put(db, dev, &s), RB_OK);
	}
	db_close(db); /* checkpoints the WAL into the file */

	sqlite3 *h = raw_open(f->path);
	root = raw_int(h, "SELECT rootpage FROM sqlite_master WHERE name = 'sessions'");
	pgsz = raw_int(h, "PRAGMA page_size");
	sqlite3_close(h);
	assert_true(off + len <= (size_t)pgsz);

	int fd = open(f->path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, bytes, len, (off_t)((root - 1) * pgsz + (int64_t)off)),
			 (ssize_t)len);
	close(fd);
	*page_no = root;
}

static void test_corrupt_page(void **state)
{
	struct fx *f = *state;
	char want[256];
	int64_t page;

	/* A b-tree page header claiming its cells start at offset 1: the file
	 * opens, quick_check reports it. */
	corrupt_sessions_page(f, 5, "\x00\x01", 2, &page);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: quick_check failed: *** in database main *** "
		 "Page %lld: free space corruption", f->path, (long long)page);
	assert_string_equal(f->err, want);
}

static void test_corrupt_page_type(void **state)
{
	struct fx *f = *state;
	char want[256];
	int64_t page;

	/* Not a b-tree page at all: quick_check itself fails. */
	corrupt_sessions_page(f, 0, "\xab", 1, &page);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: database disk image is malformed", f->path);
	assert_string_equal(f->err, want);
}

static void test_unwritable(void **state)
{
	struct fx *f = *state;
	char file[160], path[200], want[300];

	/* A path whose parent is a regular file: refused as root too. */
	snprintf(file, sizeof(file), "%s/afile", f->dir);
	write_file(file, "x", 1);
	snprintf(path, sizeof(path), "%s/rainbow.db", file);
	assert_null(db_open(path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: unable to open database file (Not a directory)", path);
	assert_string_equal(f->err, want);

	/* A directory. */
	assert_null(db_open(f->dir, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: unable to open database file", f->dir);
	assert_int_equal(strncmp(f->err, want, strlen(want)), 0);

	/* Where nobody may create files. */
	assert_null(db_open("/proc/rainbow-test.db", DB_NORMAL, f->err, sizeof(f->err)));
	assert_int_equal(strncmp(f->err, "/proc/rainbow-test.db: unable to open database file",
				 strlen("/proc/rainbow-test.db: unable to open database file")), 0);

	assert_null(db_open("", DB_NORMAL, f->err, sizeof(f->err)));
	assert_string_equal(f->err, "empty database path");

	if (geteuid() == 0) {
		/* chmod does not stop root: the cases below cannot fail. */
		print_message("[ note     ] running as root: permission cases skipped\n");
		return;
	}
	char ro[96];
	snprintf(ro, sizeof(ro), "%s/ro", f->dir);
	assert_int_equal(mkdir(ro, 0700), 0);
	assert_int_equal(chmod(ro, 0500), 0);
	snprintf(path, sizeof(path), "%s/rainbow.db", ro);
	assert_null(db_open(path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: unable to open database file (Permission denied)", path);
	assert_string_equal(f->err, want);
	assert_int_equal(chmod(ro, 0700), 0);

	/* A writable database in a directory where its -wal cannot be made. */
	snprintf(f->path, sizeof(f->path), "%s/rainbow.db", ro);
	db_close(open_ok(f, DB_NORMAL));
	assert_int_equal(chmod(ro, 0500), 0);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: attempt to write a readonly database "
		 "(its directory: Permission denied)", f->path);
	assert_string_equal(f->err, want);
	assert_int_equal(chmod(ro, 0700), 0);
	snprintf(f->path, sizeof(f->path), "%s/rainbow.db", f->dir);

	/* An existing database that cannot be written. */
	db_close(open_ok(f, DB_NORMAL));
	assert_int_equal(chmod(f->path, 0400), 0);
	assert_null(db_open(f->path, DB_NORMAL, f->err, sizeof(f->err)));
	snprintf(want, sizeof(want), "%s: database file is read-only (permission denied?)",
		 f->path);
	assert_string_equal(f->err, want);
}

/* ---- sessions ---- */

static void test_sessions(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct db_session s = sess(-1, 1), g;
	size_t n = 99;

	assert_int_equal(db_session_get(db, "a", &g), RB_ENOTFOUND);
	s = sess(0, 0);
	assert_int_equal(db_session_put(db, "a", &s), RB_OK);
	COUNTS(db, 1, 0, 0, 0, 0);
	assert_int_equal(db_session_get(db, "a", &g), RB_OK);
	assert_int_equal(g.expires_at, 0);
	assert_int_equal(g.next_msgid, 0);

	s = sess(100, 7); /* update, not a second row */
	assert_int_equal(db_session_put(db, "a", &s), RB_OK);
	COUNTS(db, 1, 0, 0, 0, 0);
	assert_int_equal(db_session_get(db, "a", &g), RB_OK);
	assert_int_equal(g.expires_at, 100);
	assert_int_equal(g.next_msgid, 7);

	s = sess(0, 65535);
	assert_int_equal(db_session_put(db, "b", &s), RB_OK);
	s = sess(INT64_MAX, 1);
	assert_int_equal(db_session_put(db, "c", &s), RB_OK);
	COUNTS(db, 3, 0, 0, 0, 0);
	assert_int_equal(db_session_get(db, "b", &g), RB_OK);
	assert_int_equal(g.next_msgid, 65535);
	assert_int_equal(db_session_get(db, "c", &g), RB_OK);
	assert_true(g.expires_at == INT64_MAX);

	/* release_all touches only held sessions (expires_at == 0). */
	assert_int_equal(db_sessions_release_all(db, 500), RB_OK);
	assert_int_equal(db_session_get(db, "a", &g), RB_OK);
	assert_int_equal(g.expires_at, 100);
	assert_int_equal(db_session_get(db, "b", &g), RB_OK);
	assert_int_equal(g.expires_at, 500);
	assert_int_equal(g.next_msgid, 65535);
	assert_int_equal(db_sessions_release_all(db, 0), RB_EINVAL);
	assert_int_equal(db_sessions_release_all(db, -5), RB_EINVAL);

	assert_int_equal(db_sessions_expire(db, 99, &n), RB_OK);
	assert_int_equal(n, 0);
	COUNTS(db, 3, 0, 0, 0, 0);
	assert_int_equal(db_sessions_expire(db, 100, &n), RB_OK); /* inclusive */
	assert_int_equal(n, 1);
	COUNTS(db, 2, 0, 0, 0, 0);
	assert_int_equal(db_session_get(db, "a", &g), RB_ENOTFOUND);
	assert_int_equal(db_sessions_expire(db, 499, NULL), RB_OK);
	COUNTS(db, 2, 0, 0, 0, 0);

	/* A held session never expires. */
	s = sess(0, 9);
	assert_int_equal(db_session_put(db, "b", &s), RB_OK);
	assert_int_equal(db_sessions_expire(db, INT64_MAX, &n), RB_OK);
	assert_int_equal(n, 1); /* c only */
	COUNTS(db, 1, 0, 0, 0, 0);

	assert_int_equal(db_session_delete(db, "b"), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	assert_int_equal(db_session_delete(db, "b"), RB_OK);
	assert_int_equal(db_session_delete(db, "never"), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	db_close(db);
}

/* Device a: subs x, y; deliveries 1 (message shared with b) and 2 (its own);
 * upstream 5 replied. Device b: sub x, delivery 1 of the shared message,
 * upstream 5 forwarding. */
static void populate_two(struct db *db, int64_t a_exp, int64_t b_exp)
{
	struct db_session sa = sess(a_exp, 2), sb = sess(b_exp, 1);
	int64_t shared, own;

	assert_int_equal(db_session_put(db, "a", &sa), RB_OK);
	assert_int_equal(db_session_put(db, "b", &sb), RB_OK);
	assert_int_equal(db_sub_add(db, "a", "x"), RB_OK);
	assert_int_equal(db_sub_add(db, "a", "y"), RB_OK);
	assert_int_equal(db_sub_add(db, "b", "x"), RB_OK);
	shared = add_msg(db, 1002, 1, "shared");
	own = add_msg(db, 1003, 2, "own");
	assert_int_equal(db_dlv_add(db, "a", 1, shared, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 2, own, 2), RB_OK);
	assert_int_equal(db_dlv_add(db, "b", 1, shared, 1), RB_OK);
	assert_int_equal(db_up_begin(db, "a", 5), RB_OK);
	assert_int_equal(db_up_reply(db, "a", 5, "ra", 2), RB_OK);
	assert_int_equal(db_up_begin(db, "b", 5), RB_OK);
	COUNTS(db, 2, 3, 2, 3, 2);
}

static void check_b_intact(struct db *db)
{
	struct strs subs = { 0 };
	struct dlvs l = list(db, "b");

	assert_int_equal(l.n, 1);
	check_dlv(&l, 0, 1, 1, false, 1002, 1, "shared");
	check_up(db, "b", 5, 1, NULL);
	assert_int_equal(db_subs_of(db, "b", collect_str, &subs), RB_OK);
	check_strs(&subs, (const char *const[]){ "x", NULL });
	assert_int_equal(db_session_get(db, "b", NULL), RB_OK);
}

static void check_a_gone(struct db *db)
{
	struct strs subs = { 0 };
	struct dlvs l = list(db, "a");
	size_t c = 9, b = 9;

	assert_int_equal(l.n, 0);
	assert_int_equal(db_up_get(db, "a", 5, NULL, NULL, NULL), RB_ENOTFOUND);
	assert_int_equal(db_subs_of(db, "a", collect_str, &subs), RB_OK);
	assert_int_equal(subs.n, 0);
	assert_int_equal(db_session_get(db, "a", NULL), RB_ENOTFOUND);
	assert_int_equal(db_dlv_usage(db, "a", &c, &b), RB_OK);
	assert_int_equal(c, 0);
	assert_int_equal(b, 0);
}

static void test_session_delete_owned(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);

	populate_two(db, 0, 0);
	assert_int_equal(db_session_delete(db, "a"), RB_OK);
	/* b's session, sub, delivery, upstream and the shared message stay. */
	COUNTS(db, 1, 1, 1, 1, 1);
	check_a_gone(db);
	check_b_intact(db);
	assert_int_equal(db_session_delete(db, "b"), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);

	/* Inside a batch, and then rolled back: all of it comes back. */
	populate_two(db, 0, 0);
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_session_delete(db, "a"), RB_OK);
	COUNTS(db, 1, 1, 1, 1, 1);
	assert_int_equal(db_rollback(db), RB_OK);
	COUNTS(db, 2, 3, 2, 3, 2);
	db_close(db);
}

static void test_session_expire_owned(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct db_session sc = sess(200, 0);
	size_t n = 99;

	populate_two(db, 100, 0);
	/* c expires later; "ident" has upstream rows but no session at all. */
	int64_t m = add_msg(db, 1, 1, "c-msg");
	assert_int_equal(db_session_put(db, "c", &sc), RB_OK);
	assert_int_equal(db_sub_add(db, "c", "y"), RB_OK);
	assert_int_equal(db_dlv_add(db, "c", 1, m, 1), RB_OK);
	assert_int_equal(db_up_begin(db, "ident", 1), RB_OK);
	COUNTS(db, 3, 4, 3, 4, 3);

	assert_int_equal(db_sessions_expire(db, 150, &n), RB_OK);
	assert_int_equal(n, 1);
	/* a's subs (2), own message, 2 deliveries, upstream row gone. */
	COUNTS(db, 2, 2, 2, 2, 2);
	check_a_gone(db);
	check_b_intact(db);
	struct dlvs l = list(db, "c");
	assert_int_equal(l.n, 1);
	check_dlv(&l, 0, 1, 1, false, 1, 1, "c-msg");
	check_up(db, "ident", 1, 1, NULL);

	assert_int_equal(db_sessions_expire(db, 150, &n), RB_OK);
	assert_int_equal(n, 0);
	COUNTS(db, 2, 2, 2, 2, 2);
	assert_int_equal(db_sessions_expire(db, 200, &n), RB_OK);
	assert_int_equal(n, 1);
	COUNTS(db, 1, 1, 1, 1, 2);
	check_b_intact(db);
	check_up(db, "ident", 1, 1, NULL);
	db_close(db);
}

/* ---- subscriptions ---- */

/* Occupy: every other device leaves the channel; other channels untouched. */
static void test_sub_evict(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct strs l = { 0 };

	assert_int_equal(db_sub_add(db, "a", "room"), RB_OK);
	assert_int_equal(db_sub_add(db, "b", "room"), RB_OK);
	assert_int_equal(db_sub_add(db, "c", "room"), RB_OK);
	assert_int_equal(db_sub_add(db, "b", "other"), RB_OK);
	COUNTS(db, 0, 4, 0, 0, 0);
	assert_int_equal(db_sub_evict(db, "room", "b"), RB_OK);
	COUNTS(db, 0, 2, 0, 0, 0);
	assert_int_equal(db_subs_of(db, "b", collect_str, &l), RB_OK);
	check_strs(&l, (const char *const[]){ "other", "room", NULL });
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_subs_of(db, "a", collect_str, &l), RB_OK);
	assert_int_equal(l.n, 0);
	/* NULL keeps nobody. */
	assert_int_equal(db_sub_evict(db, "room", NULL), RB_OK);
	COUNTS(db, 0, 1, 0, 0, 0);
	db_close(db);
}

static void test_subscriptions(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct strs l = { 0 };
	struct db_session off = sess(100, 0), on = sess(0, 0);

	assert_int_equal(db_sub_add(db, "a", "x"), RB_OK);
	assert_int_equal(db_sub_add(db, "a", "x"), RB_OK); /* idempotent */
	COUNTS(db, 0, 1, 0, 0, 0);
	assert_int_equal(db_sub_add(db, "a", "y"), RB_OK);
	assert_int_equal(db_sub_add(db, "a", "w"), RB_OK);
	COUNTS(db, 0, 3, 0, 0, 0);
	assert_int_equal(db_subs_of(db, "a", collect_str, &l), RB_OK);
	check_strs(&l, (const char *const[]){ "w", "x", "y", NULL });

	assert_int_equal(db_sub_del(db, "a", "x"), RB_OK);
	COUNTS(db, 0, 2, 0, 0, 0);
	assert_int_equal(db_sub_del(db, "a", "x"), RB_OK); /* idempotent */
	assert_int_equal(db_sub_del(db, "zz", "x"), RB_OK);
	COUNTS(db, 0, 2, 0, 0, 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_subs_of(db, "a", collect_str, &l), RB_OK);
	check_strs(&l, (const char *const[]){ "w", "y", NULL });
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_subs_of(db, "nobody", collect_str, &l), RB_OK);
	assert_int_equal(l.n, 0);

	/* Offline members: subscribed, and a session with expires_at > 0. */
	assert_int_equal(db_session_put(db, "d-off", &off), RB_OK);
	assert_int_equal(db_session_put(db, "b-on", &on), RB_OK);
	assert_int_equal(db_session_put(db, "a-off", &off), RB_OK);
	assert_int_equal(db_session_put(db, "e-off", &off), RB_OK); /* not on ch */
	assert_int_equal(db_sub_add(db, "d-off", "ch"), RB_OK);
	assert_int_equal(db_sub_add(db, "b-on", "ch"), RB_OK);
	assert_int_equal(db_sub_add(db, "a-off", "ch"), RB_OK);
	assert_int_equal(db_sub_add(db, "c-nosession", "ch"), RB_OK);
	assert_int_equal(db_sub_add(db, "e-off", "other"), RB_OK);
	COUNTS(db, 4, 7, 0, 0, 0);
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_offline_members(db, "ch", collect_str, &l), RB_OK);
	check_strs(&l, (const char *const[]){ "a-off", "d-off", NULL });
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_offline_members(db, "nochannel", collect_str, &l), RB_OK);
	assert_int_equal(l.n, 0);

	/* Going online removes it from the list. */
	assert_int_equal(db_session_put(db, "a-off", &on), RB_OK);
	memset(&l, 0, sizeof(l));
	assert_int_equal(db_offline_members(db, "ch", collect_str, &l), RB_OK);
	check_strs(&l, (const char *const[]){ "d-off", NULL });
	COUNTS(db, 4, 7, 0, 0, 0);
	db_close(db);
}

/* ---- deliveries ---- */

static void test_deliveries(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	int64_t id1, id2 = -1, bad = -1;
	struct dlvs l;

	id1 = add_msg(db, 1002, 1, "hello");
	assert_int_equal(db_msg_add(db, 7, 2, NULL, 0, &id2), RB_OK); /* empty payload */
	assert_true(id2 > id1);
	COUNTS(db, 0, 0, 2, 0, 0);
	assert_int_equal(db_msg_add(db, 7, 3, "x", 1, &bad), RB_EINVAL);
	assert_int_equal(bad, -1);
	COUNTS(db, 0, 0, 2, 0, 0);

	assert_int_equal(db_dlv_add(db, "a", 5, id1, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 3, id2, 2), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 9, id1, 1), RB_OK); /* same message twice */
	assert_int_equal(db_dlv_add(db, "b", 5, id1, 1), RB_OK); /* same msgid, other device */
	COUNTS(db, 0, 0, 2, 4, 0);
	assert_int_equal(db_dlv_add(db, "a", 5, id2, 2), RB_EEXIST);
	assert_int_equal(db_dlv_add(db, "a", 6, id2 + 1000, 1), RB_ENOTFOUND);
	assert_int_equal(db_dlv_add(db, "a", 6, id1, 0), RB_EINVAL);
	assert_int_equal(db_dlv_add(db, "a", 6, id1, 4), RB_EINVAL);
	COUNTS(db, 0, 0, 2, 4, 0);

	/* Insertion order, not msgid order. */
	l = list(db, "a");
	assert_int_equal(l.n, 3);
	check_dlv(&l, 0, 5, 1, false, 1002, 1, "hello");
	check_dlv(&l, 1, 3, 2, false, 7, 2, "");
	check_dlv(&l, 2, 9, 1, false, 1002, 1, "hello");

	assert_int_equal(db_dlv_set_state(db, "a", 3, 3), RB_OK);
	assert_int_equal(db_dlv_set_sent(db, "a", 3), RB_OK);
	assert_int_equal(db_dlv_set_sent(db, "a", 9), RB_OK);
	assert_int_equal(db_dlv_set_sent(db, "a", 9), RB_OK); /* already sent */
	assert_int_equal(db_dlv_set_state(db, "a", 4, 1), RB_ENOTFOUND);
	assert_int_equal(db_dlv_set_sent(db, "a", 4), RB_ENOTFOUND);
	assert_int_equal(db_dlv_set_state(db, "a", 3, 7), RB_EINVAL);
	l = list(db, "a");
	assert_int_equal(l.n, 3);
	check_dlv(&l, 0, 5, 1, false, 1002, 1, "hello");
	check_dlv(&l, 1, 3, 3, true, 7, 2, "");
	check_dlv(&l, 2, 9, 1, true, 1002, 1, "hello");
	l = list(db, "b");
	assert_int_equal(l.n, 1);
	check_dlv(&l, 0, 5, 1, false, 1002, 1, "hello");
	COUNTS(db, 0, 0, 2, 4, 0);

	/* The message goes with its last delivery. */
	assert_int_equal(db_dlv_del(db, "a", 5), RB_OK);
	COUNTS(db, 0, 0, 2, 3, 0);
	assert_int_equal(db_dlv_del(db, "a", 9), RB_OK);
	COUNTS(db, 0, 0, 2, 2, 0);
	assert_int_equal(db_dlv_del(db, "b", 5), RB_OK);
	COUNTS(db, 0, 0, 1, 1, 0);
	assert_int_equal(db_dlv_del(db, "b", 5), RB_OK); /* absent */
	assert_int_equal(db_dlv_del(db, "nobody", 1), RB_OK);
	COUNTS(db, 0, 0, 1, 1, 0);
	assert_int_equal(db_dlv_del(db, "a", 3), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	l = list(db, "a");
	assert_int_equal(l.n, 0);
	/* A deleted message cannot be delivered any more. */
	assert_int_equal(db_dlv_add(db, "a", 1, id1, 1), RB_ENOTFOUND);
	COUNTS(db, 0, 0, 0, 0, 0);
	db_close(db);
}

static void test_drop_oldest(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	static const uint16_t order[] = { 10, 2, 65535, 0, 1 };
	uint16_t msgid = 12345;
	int64_t shared = add_msg(db, 1, 1, "s");

	assert_int_equal(db_dlv_drop_oldest(db, "a", &msgid), RB_ENOTFOUND);
	assert_int_equal(msgid, 12345);
	for (size_t i = 0; i < RB_ARRAY_LEN(order); i++) {
		char p[8];
		snprintf(p, sizeof(p), "p%zu", i);
		assert_int_equal(db_dlv_add(db, "a", order[i], add_msg(db, 1, 1, p), 1), RB_OK);
	}
	assert_int_equal(db_dlv_add(db, "b", 7, shared, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 77, shared, 1), RB_OK);
	COUNTS(db, 0, 0, 6, 7, 0);

	for (size_t i = 0; i < 3; i++) {
		assert_int_equal(db_dlv_drop_oldest(db, "a", &msgid), RB_OK);
		assert_int_equal(msgid, order[i]);
		COUNTS(db, 0, 0, 5 - i, 6 - i, 0);
	}
	/* A new one goes behind the survivors, whatever its msgid. */
	assert_int_equal(db_dlv_add(db, "a", 10, add_msg(db, 1, 1, "late"), 1), RB_OK);
	COUNTS(db, 0, 0, 4, 5, 0);
	struct dlvs l = list(db, "a");
	assert_int_equal(l.n, 4);
	check_dlv(&l, 0, 0, 1, false, 1, 1, "p3");
	check_dlv(&l, 1, 1, 1, false, 1, 1, "p4");
	check_dlv(&l, 2, 77, 1, false, 1, 1, "s");
	check_dlv(&l, 3, 10, 1, false, 1, 1, "late");

	static const uint16_t rest[] = { 0, 1, 77, 10 };
	static const size_t msgs_after[] = { 3, 2, 2, 1 }; /* "s" stays for b */
	for (size_t i = 0; i < RB_ARRAY_LEN(rest); i++) {
		assert_int_equal(db_dlv_drop_oldest(db, "a", &msgid), RB_OK);
		assert_int_equal(msgid, rest[i]);
		COUNTS(db, 0, 0, msgs_after[i], 4 - i, 0);
	}
	assert_int_equal(db_dlv_drop_oldest(db, "a", NULL), RB_ENOTFOUND);
	assert_int_equal(db_dlv_drop_oldest(db, "b", NULL), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	db_close(db);
}

static void test_usage(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	char big[300];
	size_t c = 99, b = 99;
	int64_t m100, m200, m0 = -1;

	memset(big, 'z', sizeof(big));
	assert_int_equal(db_dlv_usage(db, "a", &c, &b), RB_OK);
	assert_int_equal(c, 0);
	assert_int_equal(b, 0);
	assert_int_equal(db_msg_add(db, 1, 1, big, 100, &m100), RB_OK);
	assert_int_equal(db_msg_add(db, 1, 2, big, 200, &m200), RB_OK);
	assert_int_equal(db_msg_add(db, 1, 1, "", 0, &m0), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 1, m100, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 2, m200, 2), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 3, m100, 1), RB_OK); /* counted per delivery */
	assert_int_equal(db_dlv_add(db, "a", 4, m0, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "b", 1, m200, 2), RB_OK);
	COUNTS(db, 0, 0, 3, 5, 0);
	assert_int_equal(db_dlv_usage(db, "a", &c, &b), RB_OK);
	assert_int_equal(c, 4);
	assert_int_equal(b, 400);
	assert_int_equal(db_dlv_usage(db, "b", &c, &b), RB_OK);
	assert_int_equal(c, 1);
	assert_int_equal(b, 200);
	assert_int_equal(db_dlv_usage(db, "b", NULL, NULL), RB_OK);
	assert_int_equal(db_dlv_del(db, "a", 2), RB_OK);
	assert_int_equal(db_dlv_usage(db, "a", &c, &b), RB_OK);
	assert_int_equal(c, 3);
	assert_int_equal(b, 200);
	COUNTS(db, 0, 0, 3, 4, 0);
	db_close(db);
}

/* db_dlv_usage for device, and the session row's counters when it has one,
 * against a COUNT/SUM made by another connection (outside a batch only). */
static void check_usage(struct db *db, sqlite3 *h, const char *device, int line)
{
	char q[512];
	size_t c = 999, b = 999;
	int64_t want_c, want_b;

	snprintf(q, sizeof(q), "SELECT count(*) FROM deliveries AS d JOIN messages AS m"
		 " ON m.id = d.message_id WHERE d.device = '%s'", device);
	want_c = raw_int(h, q);
	snprintf(q, sizeof(q), "SELECT ifnull(sum(length(m.payload)), 0) FROM deliveries AS d"
		 " JOIN messages AS m ON m.id = d.message_id WHERE d.device = '%s'", device);
	want_b = raw_int(h, q);
	assert_int_equal(db_dlv_usage(db, device, &c, &b), RB_OK);
	if (c != (size_t)want_c || b != (size_t)want_b) {
		print_error("line %d: usage(%s) %zu/%zu, want %lld/%lld\n", line, device, c, b,
			    (long long)want_c, (long long)want_b);
		fail();
	}
	snprintf(q, sizeof(q), "SELECT count(*) FROM sessions WHERE device = '%s'", device);
	if (raw_int(h, q) == 1) {
		snprintf(q, sizeof(q), "SELECT queued FROM sessions WHERE device = '%s'", device);
		assert_int_equal(raw_int(h, q), want_c);
		snprintf(q, sizeof(q), "SELECT queued_bytes FROM sessions WHERE device = '%s'",
			 device);
		assert_int_equal(raw_int(h, q), want_b);
	}
}

static void check_usage_all(struct db *db, sqlite3 *h, int line)
{
	static const char *const devs[] = { "a", "b", "c", "nosession" };
	for (size_t i = 0; i < RB_ARRAY_LEN(devs); i++)
		check_usage(db, h, devs[i], line);
}
#define USAGE(db, h) check_usage_all((db), (h), __LINE__)

/* The session counters stay exact through every path that adds or deletes
 * deliveries, failed calls and rolled-back batches included. */
static void test_usage_counters(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	sqlite3 *h = raw_open(f->path);
	struct db_session live = sess(0, 0), later = sess(500, 0);
	char big[3000];
	int64_t m[5];
	uint16_t msgid;
	size_t n;

	memset(big, 'q', sizeof(big));
	assert_int_equal(db_session_put(db, "a", &live), RB_OK);
	assert_int_equal(db_session_put(db, "b", &later), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_msg_add(db, 1, 1, big, 10, &m[0]), RB_OK);
	assert_int_equal(db_msg_add(db, 1, 1, big, 0, &m[1]), RB_OK);
	assert_int_equal(db_msg_add(db, 1, 2, big, sizeof(big), &m[2]), RB_OK); /* overflow pages */
	assert_int_equal(db_msg_add(db, 1, 1, big, 77, &m[3]), RB_OK);
	assert_int_equal(db_msg_add(db, 1, 1, big, 5, &m[4]), RB_OK);
	for (uint16_t i = 1; i <= 5; i++) {
		assert_int_equal(db_dlv_add(db, "a", i, m[i - 1], 1), RB_OK);
		assert_int_equal(db_dlv_add(db, "b", i, m[5 - i], 1), RB_OK);
		assert_int_equal(db_dlv_add(db, "nosession", i, m[i % 5], 1), RB_OK);
	}
	assert_int_equal(db_dlv_add(db, "a", 6, m[2], 2), RB_OK); /* counted per delivery */
	USAGE(db, h);

	/* Refused adds change nothing. */
	assert_int_equal(db_dlv_add(db, "a", 6, m[0], 1), RB_EEXIST);
	assert_int_equal(db_dlv_add(db, "a", 7, 999999, 1), RB_ENOTFOUND);
	assert_int_equal(db_dlv_add(db, "a", 7, m[0], 9), RB_EINVAL);
	USAGE(db, h);
	/* Updates of a delivery's state change nothing either. */
	assert_int_equal(db_dlv_set_state(db, "a", 1, 3), RB_OK);
	assert_int_equal(db_dlv_set_sent(db, "a", 1), RB_OK);
	assert_int_equal(db_session_put(db, "a", &live), RB_OK); /* upsert: counters kept */
	USAGE(db, h);

	/* Deletes: one, an absent one, the oldest (its message shared or not). */
	assert_int_equal(db_dlv_del(db, "a", 3), RB_OK);
	assert_int_equal(db_dlv_del(db, "a", 3), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_dlv_drop_oldest(db, "a", &msgid), RB_OK);
	assert_int_equal(msgid, 1);
	assert_int_equal(db_dlv_drop_oldest(db, "b", &msgid), RB_OK);
	assert_int_equal(msgid, 1);
	USAGE(db, h);

	/* A batch: counted as it goes, all undone by a rollback. */
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 20, m[2], 1), RB_OK);
	assert_int_equal(db_dlv_del(db, "b", 2), RB_OK);
	assert_int_equal(db_dlv_usage(db, "a", &n, NULL), RB_OK);
	assert_int_equal(n, 5);
	assert_int_equal(db_rollback(db), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 20, m[2], 1), RB_OK);
	assert_int_equal(db_dlv_del(db, "b", 2), RB_OK);
	assert_int_equal(db_commit(db), RB_OK);
	USAGE(db, h);

	/* A session row made after its device's deliveries starts from them. */
	assert_int_equal(db_dlv_add(db, "c", 1, m[2], 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "c", 2, m[3], 1), RB_OK);
	assert_int_equal(db_session_put(db, "c", &later), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_dlv_del(db, "c", 1), RB_OK);
	USAGE(db, h);

	/* Session delete, then a new session for the same device: from 0. */
	assert_int_equal(db_session_delete(db, "a"), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_session_put(db, "a", &live), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 1, m[2], 1), RB_OK);
	USAGE(db, h);

	/* Expiry: b and c go (with their deliveries), a and nosession stay. */
	assert_int_equal(db_sessions_expire(db, 600, &n), RB_OK);
	assert_int_equal(n, 2);
	USAGE(db, h);
	assert_int_equal(db_session_put(db, "b", &live), RB_OK);
	USAGE(db, h);
	while (db_dlv_drop_oldest(db, "a", NULL) == RB_OK)
		;
	USAGE(db, h);
	assert_int_equal(raw_int(h, "SELECT queued + queued_bytes FROM sessions"
				    " WHERE device = 'a'"), 0);
	/* The open-time orphan sweep does not disturb them either. */
	db_close(db);
	db = open_ok(f, DB_NORMAL);
	USAGE(db, h);
	sqlite3_close(h);
	db_close(db);
}

/* The version 1 schema, exactly as migrations[0] made it. */
static const char v1_schema[] =
	"CREATE TABLE schema_version(version INTEGER NOT NULL);"
	"INSERT INTO schema_version(version) VALUES(1);"
	"CREATE TABLE sessions("
	" device TEXT NOT NULL PRIMARY KEY,"
	" expires_at INTEGER NOT NULL DEFAULT 0,"
	" next_msgid INTEGER NOT NULL DEFAULT 0 CHECK (next_msgid BETWEEN 0 AND 65535)"
	") WITHOUT ROWID;"
	"CREATE INDEX sessions_expiry ON sessions(expires_at) WHERE expires_at > 0;"
	"CREATE TABLE subscriptions("
	" device TEXT NOT NULL,"
	" channel TEXT NOT NULL,"
	" PRIMARY KEY(device, channel)"
	") WITHOUT ROWID;"
	"CREATE INDEX subscriptions_channel ON subscriptions(channel);"
	"CREATE TABLE messages("
	" id INTEGER PRIMARY KEY,"
	" msgtype INTEGER NOT NULL CHECK (msgtype BETWEEN 0 AND 65535),"
	" qos INTEGER NOT NULL CHECK (qos BETWEEN 0 AND 2),"
	" payload BLOB NOT NULL"
	");"
	"CREATE TABLE deliveries("
	" device TEXT NOT NULL,"
	" msgid INTEGER NOT NULL CHECK (msgid BETWEEN 0 AND 65535),"
	" message_id INTEGER NOT NULL REFERENCES messages(id),"
	" state INTEGER NOT NULL CHECK (state BETWEEN 1 AND 3),"
	" sent INTEGER NOT NULL DEFAULT 0 CHECK (sent IN (0, 1)),"
	" seq INTEGER NOT NULL,"
	" PRIMARY KEY(device, msgid)"
	") WITHOUT ROWID;"
	"CREATE INDEX deliveries_message ON deliveries(message_id);"
	"CREATE UNIQUE INDEX deliveries_order ON deliveries(device, seq);"
	"CREATE TRIGGER deliveries_gc AFTER DELETE ON deliveries"
	" WHEN NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = OLD.message_id)"
	" BEGIN DELETE FROM messages WHERE id = OLD.message_id; END;"
	"CREATE TABLE upstream("
	" device TEXT NOT NULL,"
	" msgid INTEGER NOT NULL CHECK (msgid BETWEEN 0 AND 65535),"
	" state INTEGER NOT NULL CHECK (state IN (1, 2)),"
	" reply BLOB,"
	" PRIMARY KEY(device, msgid)"
	");";

/* A version 1 file with data is migrated to 2 on open: counters backfilled,
 * data untouched, the new triggers in force; opening again changes nothing. */
static void test_migrate_v1(void **state)
{
	static const char q[] = "SELECT group_concat(type || ' ' || name || ' ' || ifnull(sql, ''),"
				" char(10)) FROM (SELECT * FROM sqlite_master ORDER BY name)";
	struct fx *f = *state;
	char schema1[8192], schema2[8192];
	struct db_session s;
	size_t c, b;
	int64_t cookie;
	sqlite3 *h = NULL;

	assert_int_equal(sqlite3_open(f->path, &h), SQLITE_OK);
	raw_exec(h, "PRAGMA journal_mode = WAL");
	raw_exec(h, v1_schema);
	raw_exec(h, "INSERT INTO sessions VALUES('a', 0, 7), ('b', 1000, 2), ('e', 0, 0);"
		    "INSERT INTO subscriptions VALUES('a', 'x'), ('b', 'x'), ('b', 'y');"
		    "INSERT INTO messages VALUES(1, 10, 1, x'0102030405'),"
		    " (2, 20, 2, zeroblob(3000)), (3, 30, 1, x''), (4, 40, 0, 'orphan');"
		    "INSERT INTO deliveries VALUES('a', 5, 1, 1, 1, 1), ('a', 6, 2, 2, 0, 2),"
		    " ('a', 7, 3, 1, 0, 3), ('b', 1, 2, 3, 0, 1),"
		    " ('nosession', 1, 1, 1, 0, 1);"
		    "INSERT INTO upstream VALUES('a', 9, 2, x'AABB');");
	sqlite3_close(h);

	struct db *db = open_ok(f, DB_NORMAL);
	h = raw_open(f->path);
	assert_int_equal(raw_int(h, "SELECT version FROM schema_version"), 2);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM schema_version"), 1);
	/* Backfilled from the rows (the orphan message 4 went at open). */
	assert_int_equal(raw_int(h, "SELECT queued FROM sessions WHERE device = 'a'"), 3);
	assert_int_equal(raw_int(h, "SELECT queued_bytes FROM sessions WHERE device = 'a'"), 3005);
	assert_int_equal(raw_int(h, "SELECT queued FROM sessions WHERE device = 'b'"), 1);
	assert_int_equal(raw_int(h, "SELECT queued_bytes FROM sessions WHERE device = 'b'"), 3000);
	assert_int_equal(raw_int(h, "SELECT queued + queued_bytes FROM sessions"
				    " WHERE device = 'e'"), 0);
	USAGE(db, h);
	check_usage(db, h, "e", __LINE__);
	/* The data is intact. */
	COUNTS(db, 3, 3, 3, 5, 1);
	assert_int_equal(db_session_get(db, "a", &s), RB_OK);
	assert_int_equal(s.expires_at, 0);
	assert_int_equal(s.next_msgid, 7);
	assert_int_equal(db_session_get(db, "b", &s), RB_OK);
	assert_int_equal(s.expires_at, 1000);
	assert_int_equal(s.next_msgid, 2);
	struct dlvs l = list(db, "a");
	assert_int_equal(l.n, 3);
	assert_int_equal(l.d[0].msgid, 5);
	assert_true(l.d[0].sent);
	assert_int_equal(l.d[0].len, 5);
	assert_memory_equal(l.d[0].payload, "\x01\x02\x03\x04\x05", 5);
	assert_int_equal(l.d[1].msgid, 6);
	assert_int_equal(l.d[1].state, 2);
	assert_int_equal(l.d[1].msgtype, 20);
	assert_int_equal(l.d[1].len, 3000);
	assert_int_equal(l.d[2].msgid, 7);
	assert_int_equal(l.d[2].len, 0);
	check_up(db, "a", 9, 2, "\xAA\xBB");
	struct strs subs = { 0 };
	assert_int_equal(db_subs_of(db, "b", collect_str, &subs), RB_OK);
	check_strs(&subs, (const char *const[]){ "x", "y", NULL });

	/* The triggers work on the migrated file, garbage collection included. */
	assert_int_equal(db_dlv_del(db, "a", 6), RB_OK); /* message 2 still b's */
	COUNTS(db, 3, 3, 3, 4, 1);
	assert_int_equal(db_dlv_del(db, "b", 1), RB_OK); /* now message 2 goes */
	COUNTS(db, 3, 3, 2, 3, 1);
	assert_int_equal(db_dlv_add(db, "b", 2, 1, 1), RB_OK);
	USAGE(db, h);
	assert_int_equal(db_dlv_usage(db, "a", &c, &b), RB_OK);
	assert_int_equal(c, 2);
	assert_int_equal(b, 5);
	db_close(db);

	/* Opening again is a no-op. */
	cookie = raw_int(h, "PRAGMA schema_version");
	raw_text(h, q, schema1, sizeof(schema1));
	db = open_ok(f, DB_NORMAL);
	assert_int_equal(raw_int(h, "PRAGMA schema_version"), cookie);
	raw_text(h, q, schema2, sizeof(schema2));
	assert_string_equal(schema1, schema2);
	assert_int_equal(raw_int(h, "SELECT version FROM schema_version"), 2);
	USAGE(db, h);
	COUNTS(db, 3, 3, 2, 4, 1);
	sqlite3_close(h);
	db_close(db);
}

/* ---- upstream ---- */

static void test_upstream(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	int st = -1;

	assert_int_equal(db_up_get(db, "a", 1, &st, NULL, NULL), RB_ENOTFOUND);
	assert_int_equal(st, -1);
	assert_int_equal(db_up_begin(db, "a", 1), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 1);
	assert_int_equal(db_up_begin(db, "a", 1), RB_EEXIST);
	COUNTS(db, 0, 0, 0, 0, 1);
	check_up(db, "a", 1, 1, NULL);

	assert_int_equal(db_up_reply(db, "a", 2, "x", 1), RB_ENOTFOUND);
	COUNTS(db, 0, 0, 0, 0, 1);
	assert_int_equal(db_up_reply(db, "a", 1, "re\0ply", 6), RB_OK);
	{
		const void *r;
		size_t len;
		assert_int_equal(db_up_get(db, "a", 1, &st, &r, &len), RB_OK);
		assert_int_equal(st, 2);
		assert_int_equal(len, 6);
		assert_memory_equal(r, "re\0ply", 6);
	}

	/* Same msgid under another key is independent; an empty reply. */
	assert_int_equal(db_up_begin(db, "b", 1), RB_OK);
	check_up(db, "b", 1, 1, NULL);
	assert_int_equal(db_up_reply(db, "b", 1, NULL, 0), RB_OK);
	check_up(db, "b", 1, 2, "");
	COUNTS(db, 0, 0, 0, 0, 2);

	/* A reply bigger than the previous copy buffer. */
	static char big[100000];
	fill(big, sizeof(big), 7);
	assert_int_equal(db_up_begin(db, "c", 65535), RB_OK);
	assert_int_equal(db_up_reply(db, "c", 65535, big, sizeof(big)), RB_OK);
	{
		const void *r;
		size_t len;
		assert_int_equal(db_up_get(db, "c", 65535, &st, &r, &len), RB_OK);
		assert_int_equal(len, sizeof(big));
		assert_memory_equal(r, big, sizeof(big));
		/* The copy buffer is reused, smaller, by the next call. */
		assert_int_equal(db_up_get(db, "a", 1, &st, &r, &len), RB_OK);
		assert_int_equal(len, 6);
		assert_memory_equal(r, "re\0ply", 6);
	}
	COUNTS(db, 0, 0, 0, 0, 3);

	assert_int_equal(db_up_del(db, "a", 1), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 2);
	assert_int_equal(db_up_del(db, "a", 1), RB_OK); /* idempotent */
	assert_int_equal(db_up_get(db, "a", 1, &st, NULL, NULL), RB_ENOTFOUND);
	check_up(db, "b", 1, 2, "");
	assert_int_equal(db_up_del(db, "b", 1), RB_OK);
	assert_int_equal(db_up_del(db, "c", 65535), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	/* A released msgid starts over. */
	assert_int_equal(db_up_begin(db, "a", 1), RB_OK);
	check_up(db, "a", 1, 1, NULL);
	COUNTS(db, 0, 0, 0, 0, 1);
	db_close(db);
}

/* db_up_list: a device's upstream rows in msgid order, FORWARDING with ""
 * and REPLIED with its reply (also an empty one), nothing of another
 * device. */
struct up_seen {
	int n;
	uint16_t msgid[8];
	int state[8];
	char reply[8][16];
	size_t len[8];
};

static void collect_up(const struct db_up *u, void *arg)
{
	struct up_seen *s = arg;
	assert_true(s->n < 8);
	assert_non_null(u->reply);
	assert_true(u->len < sizeof(s->reply[0]));
	s->msgid[s->n] = u->msgid;
	s->state[s->n] = u->state;
	memcpy(s->reply[s->n], u->reply, u->len);
	s->len[s->n] = u->len;
	s->n++;
}

static void test_upstream_list(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct up_seen s = { 0 };

	assert_int_equal(db_up_list(db, "d", collect_up, &s), RB_OK);
	assert_int_equal(s.n, 0);
	assert_int_equal(db_up_begin(db, "d", 9), RB_OK);
	assert_int_equal(db_up_reply(db, "d", 9, "nine", 4), RB_OK);
	assert_int_equal(db_up_begin(db, "d", 2), RB_OK); /* FORWARDING */
	assert_int_equal(db_up_begin(db, "d", 700), RB_OK);
	assert_int_equal(db_up_reply(db, "d", 700, NULL, 0), RB_OK);
	assert_int_equal(db_up_begin(db, "other", 5), RB_OK);
	assert_int_equal(db_up_list(db, "d", collect_up, &s), RB_OK);
	assert_int_equal(s.n, 3);
	assert_int_equal(s.msgid[0], 2);
	assert_int_equal(s.state[0], 1);
	assert_int_equal(s.len[0], 0);
	assert_int_equal(s.msgid[1], 9);
	assert_int_equal(s.state[1], 2);
	assert_int_equal(s.len[1], 4);
	assert_memory_equal(s.reply[1], "nine", 4);
	assert_int_equal(s.msgid[2], 700);
	assert_int_equal(s.state[2], 2);
	assert_int_equal(s.len[2], 0);
	db_close(db);
}

/* ---- batches ---- */

static void test_batch(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct db_session s = sess(0, 1);
	sqlite3 *h = raw_open(f->path);

	assert_int_equal(db_commit(db), RB_EINVAL);
	assert_int_equal(db_rollback(db), RB_EINVAL);
	assert_false(db_in_batch(db));

	assert_int_equal(db_begin(db), RB_OK);
	assert_true(db_in_batch(db));
	assert_int_equal(db_begin(db), RB_EINVAL); /* no nesting */
	assert_true(db_in_batch(db));
	assert_int_equal(db_session_put(db, "s1", &s), RB_OK);
	assert_int_equal(db_sub_add(db, "s1", "ch"), RB_OK);
	assert_int_equal(db_dlv_add(db, "s1", 1, add_msg(db, 1, 1, "m"), 1), RB_OK);
	assert_int_equal(db_up_begin(db, "s1", 1), RB_OK);
	COUNTS(db, 1, 1, 1, 1, 1); /* the batch sees its own writes */
	/* Another connection does not, until the commit. */
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sessions"), 0);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM deliveries"), 0);
	assert_int_equal(db_commit(db), RB_OK);
	assert_false(db_in_batch(db));
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sessions"), 1);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM deliveries"), 1);
	assert_int_equal(db_commit(db), RB_EINVAL);

	/* Rollback discards everything since db_begin, compound ops included. */
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_session_put(db, "s2", &s), RB_OK);
	assert_int_equal(db_dlv_add(db, "s2", 1, add_msg(db, 1, 1, "m2"), 1), RB_OK);
	assert_int_equal(db_session_delete(db, "s1"), RB_OK);
	COUNTS(db, 1, 0, 1, 1, 0);
	assert_int_equal(db_rollback(db), RB_OK);
	assert_false(db_in_batch(db));
	COUNTS(db, 1, 1, 1, 1, 1);
	assert_int_equal(db_session_get(db, "s2", NULL), RB_ENOTFOUND);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM messages"), 1);

	/* A refused write does not spoil the batch around it. */
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_session_put(db, "s3", &s), RB_OK);
	assert_int_equal(db_up_begin(db, "s1", 1), RB_EEXIST);
	assert_int_equal(db_dlv_add(db, "s3", 1, 999999, 1), RB_ENOTFOUND);
	assert_true(db_in_batch(db));
	assert_int_equal(db_commit(db), RB_OK);
	COUNTS(db, 2, 1, 1, 1, 1);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM sessions"), 2);

	/* Writes outside a batch commit one by one. */
	assert_int_equal(db_sub_add(db, "s3", "ch"), RB_OK);
	assert_int_equal(raw_int(h, "SELECT count(*) FROM subscriptions"), 2);
	sqlite3_close(h);
	db_close(db);
}

static void test_close_in_batch(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_FULL);
	struct db_session s = sess(0, 1);

	assert_int_equal(db_session_put(db, "kept", &s), RB_OK);
	assert_int_equal(db_begin(db), RB_OK);
	assert_int_equal(db_session_put(db, "lost", &s), RB_OK);
	assert_int_equal(db_dlv_add(db, "lost", 1, add_msg(db, 1, 1, "m"), 1), RB_OK);
	assert_int_equal(db_session_delete(db, "kept"), RB_OK);
	db_close(db); /* no commit */

	db = open_ok(f, DB_FULL);
	COUNTS(db, 1, 0, 0, 0, 0);
	assert_int_equal(db_session_get(db, "kept", NULL), RB_OK);
	assert_int_equal(db_session_get(db, "lost", NULL), RB_ENOTFOUND);
	db_close(db);
}

/* The child is this binary again (fork + exec, see main): a process of its
 * own that a leak checker does not follow into, so its deliberately
 * unclosed connection is not reported. */
static char self_exe[4096];

/* Child: commit batch A, then open batch B with writes large enough to
 * spill uncommitted pages into the WAL, and die with B open: _exit(0) or
 * SIGKILL. Exit codes 10.. locate a failure. */
static int crash_child(const char *path, bool sigkill)
{
	char err[256];
	struct db_session s = sess(0, 1);
	int64_t id;
	static uint8_t big[MIB];
	struct db *db = db_open(path, DB_NORMAL, err, sizeof(err));

	if (!db)
		return 10;
	if (db_begin(db) || db_session_put(db, "A", &s) || db_sub_add(db, "A", "ch") ||
	    db_msg_add(db, 1002, 1, "payload-A", 9, &id) || db_dlv_add(db, "A", 1, id, 1) ||
	    db_up_begin(db, "A", 9) || db_up_reply(db, "A", 9, "reply-A", 7) || db_commit(db))
		return 11;
	if (db_begin(db) || db_session_put(db, "B", &s) || db_sub_del(db, "A", "ch") ||
	    db_dlv_set_state(db, "A", 1, 3) || db_up_del(db, "A", 9) ||
	    db_session_delete(db, "A"))
		return 12;
	for (uint16_t i = 1; i <= 4; i++) {
		fill(big, sizeof(big), i);
		if (db_msg_add(db, 1, 1, big, sizeof(big), &id) || db_dlv_add(db, "B", i, id, 1))
			return 13;
	}
	if (!db_in_batch(db))
		return 14;
	if (sigkill)
		raise(SIGKILL);
	_exit(0);
}

static void crash_case(struct fx *f, bool sigkill)
{
	char wal[160];
	struct stat sb;
	int status;
	pid_t pid;

	assert_true(self_exe[0]);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		execl(self_exe, self_exe, "--crash-child", f->path, sigkill ? "kill" : "exit",
		      (char *)NULL);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (sigkill) {
		if (!WIFSIGNALED(status))
			print_error("child status %d\n", status);
		assert_true(WIFSIGNALED(status));
		assert_int_equal(WTERMSIG(status), SIGKILL);
	} else {
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
			print_error("child status %d\n", status);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	/* Batch B did reach the WAL (uncommitted frames): recovery must skip
	 * them, not merely never have seen them. */
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	assert_int_equal(stat(wal, &sb), 0);
	assert_true(sb.st_size > MIB);

	struct db *db = open_ok(f, DB_NORMAL);
	struct strs subs = { 0 };
	COUNTS(db, 1, 1, 1, 1, 1);
	assert_int_equal(db_session_get(db, "B", NULL), RB_ENOTFOUND);
	struct dlvs l = list(db, "A");
	assert_int_equal(l.n, 1);
	check_dlv(&l, 0, 1, 1, false, 1002, 1, "payload-A");
	check_up(db, "A", 9, 2, "reply-A");
	assert_int_equal(db_subs_of(db, "A", collect_str, &subs), RB_OK);
	check_strs(&subs, (const char *const[]){ "ch", NULL });
	db_close(db);
}

static void test_crash_exit(void **state)
{
	crash_case(*state, false);
}

static void test_crash_sigkill(void **state)
{
	crash_case(*state, true);
}

/* ---- persistence ---- */

static void test_persistence(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_FULL);
	struct db_session s = sess(12345, 65535), g;
	static const char bin[] = { 'a', 0, 'b', (char)0xff, 0, 'c' };
	int64_t m1 = -1, m2;
	struct strs subs = { 0 };

	assert_int_equal(db_session_put(db, "dev", &s), RB_OK);
	assert_int_equal(db_sub_add(db, "dev", "ch2"), RB_OK);
	assert_int_equal(db_sub_add(db, "dev", "ch1"), RB_OK);
	assert_int_equal(db_msg_add(db, 65535, 2, bin, sizeof(bin), &m1), RB_OK);
	m2 = add_msg(db, 1002, 1, "second");
	assert_int_equal(db_dlv_add(db, "dev", 9, m1, 2), RB_OK);
	assert_int_equal(db_dlv_add(db, "dev", 3, m2, 1), RB_OK);
	assert_int_equal(db_dlv_set_state(db, "dev", 9, 3), RB_OK);
	assert_int_equal(db_dlv_set_sent(db, "dev", 9), RB_OK);
	assert_int_equal(db_up_begin(db, "dev", 4), RB_OK);
	assert_int_equal(db_up_reply(db, "dev", 4, bin, sizeof(bin)), RB_OK);
	assert_int_equal(db_up_begin(db, "dev", 5), RB_OK);
	COUNTS(db, 1, 2, 2, 2, 2);
	db_close(db);

	db = open_ok(f, DB_NORMAL);
	COUNTS(db, 1, 2, 2, 2, 2);
	assert_int_equal(db_session_get(db, "dev", &g), RB_OK);
	assert_int_equal(g.expires_at, 12345);
	assert_int_equal(g.next_msgid, 65535);
	assert_int_equal(db_subs_of(db, "dev", collect_str, &subs), RB_OK);
	check_strs(&subs, (const char *const[]){ "ch1", "ch2", NULL });
	struct dlvs l = list(db, "dev");
	assert_int_equal(l.n, 2);
	assert_int_equal(l.d[0].msgid, 9);
	assert_int_equal(l.d[0].state, 3);
	assert_true(l.d[0].sent);
	assert_int_equal(l.d[0].msgtype, 65535);
	assert_int_equal(l.d[0].qos, 2);
	assert_int_equal(l.d[0].len, sizeof(bin));
	assert_memory_equal(l.d[0].payload, bin, sizeof(bin));
	check_dlv(&l, 1, 3, 1, false, 1002, 1, "second");
	{
		const void *r;
		size_t len;
		int st;
		assert_int_equal(db_up_get(db, "dev", 4, &st, &r, &len), RB_OK);
		assert_int_equal(st, 2);
		assert_int_equal(len, sizeof(bin));
		assert_memory_equal(r, bin, sizeof(bin));
	}
	check_up(db, "dev", 5, 1, NULL);
	/* Order survives too: a new delivery goes last. */
	assert_int_equal(db_dlv_add(db, "dev", 1, m2, 1), RB_OK);
	l = list(db, "dev");
	assert_int_equal(l.n, 3);
	assert_int_equal(l.d[2].msgid, 1);
	db_close(db);
}

/* A message left without deliveries (a crash between db_msg_add and
 * db_dlv_add) is gone after the next open. */
static void test_orphans_at_open(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	int64_t used = add_msg(db, 1, 1, "used");

	add_msg(db, 1, 1, "orphan1");
	add_msg(db, 1, 1, "orphan2");
	assert_int_equal(db_dlv_add(db, "a", 1, used, 1), RB_OK);
	COUNTS(db, 0, 0, 3, 1, 0);
	db_close(db);
	db = open_ok(f, DB_NORMAL);
	COUNTS(db, 0, 0, 1, 1, 0);
	struct dlvs l = list(db, "a");
	check_dlv(&l, 0, 1, 1, false, 1, 1, "used");
	db_close(db);
}

struct big_ctx {
	const uint8_t *want;
	size_t len;
	int calls;
};

static void check_big(const struct db_dlv *d, void *arg)
{
	struct big_ctx *c = arg;
	c->calls++;
	assert_int_equal(d->len, c->len);
	assert_memory_equal(d->payload, c->want, c->len);
	assert_int_equal(d->msgtype, 4242);
}

static void test_payload_1mib(void **state)
{
	struct fx *f = *state;
	uint8_t *big = malloc(MIB);
	struct big_ctx c = { big, MIB, 0 };
	size_t n = 0, bytes = 0;
	int64_t id;

	assert_non_null(big);
	fill(big, MIB, 99);
	struct db *db = open_ok(f, DB_NORMAL);
	assert_int_equal(db_msg_add(db, 4242, 1, big, MIB, &id), RB_OK);
	assert_int_equal(db_dlv_add(db, "d", 1, id, 1), RB_OK);
	assert_int_equal(db_up_begin(db, "d", 1), RB_OK);
	assert_int_equal(db_up_reply(db, "d", 1, big, MIB), RB_OK);
	COUNTS(db, 0, 0, 1, 1, 1);
	assert_int_equal(db_dlv_list(db, "d", check_big, &c), RB_OK);
	assert_int_equal(c.calls, 1);
	assert_int_equal(db_dlv_usage(db, "d", &n, &bytes), RB_OK);
	assert_int_equal(n, 1);
	assert_int_equal(bytes, MIB);
	db_close(db);

	db = open_ok(f, DB_NORMAL);
	c.calls = 0;
	assert_int_equal(db_dlv_list(db, "d", check_big, &c), RB_OK);
	assert_int_equal(c.calls, 1);
	{
		const void *r;
		size_t len;
		int st;
		assert_int_equal(db_up_get(db, "d", 1, &st, &r, &len), RB_OK);
		assert_int_equal(st, 2);
		assert_int_equal(len, MIB);
		assert_memory_equal(r, big, MIB);
	}
	assert_int_equal(db_dlv_del(db, "d", 1), RB_OK);
	COUNTS(db, 0, 0, 0, 0, 1);
	db_close(db);
	free(big);
}

/* ---- callbacks calling back in ---- */

struct reenter {
	struct db *db;
	int calls, again_rc, other_rc;
	sqlite3 *raw;  /* a second connection, or NULL */
	int64_t seen;  /* what it saw from inside the callback */
};

static void subs_reenter(const char *s, void *arg)
{
	struct reenter *r = arg;
	(void)s;
	r->calls++;
	r->again_rc = db_subs_of(r->db, "a", collect_str, NULL);
	r->other_rc = db_sub_add(r->db, "a", "x"); /* already there */
	r->other_rc |= db_sub_add(r->db, "b", "x");
	/* Outside a batch a write commits at once, listing or not. */
	r->seen = raw_int(r->raw, "SELECT count(*) FROM subscriptions WHERE device = 'b'");
}

static void dlv_reenter(const struct db_dlv *d, void *arg)
{
	struct reenter *r = arg;
	r->calls++;
	r->again_rc = db_dlv_list(r->db, "a", dlv_reenter, r);
	r->other_rc = db_dlv_set_sent(r->db, "a", d->msgid);
}

static void test_callbacks(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct reenter r = { db, 0, 0, 0, raw_open(f->path), 0 };

	assert_int_equal(db_sub_add(db, "a", "x"), RB_OK);
	assert_int_equal(db_subs_of(db, "a", subs_reenter, &r), RB_OK);
	assert_int_equal(r.calls, 1);
	assert_int_equal(r.again_rc, RB_EINVAL);
	assert_int_equal(r.other_rc, RB_OK);
	assert_int_equal(r.seen, 1);
	sqlite3_close(r.raw);
	COUNTS(db, 0, 2, 0, 0, 0);

	int64_t m = add_msg(db, 1, 1, "m");
	assert_int_equal(db_dlv_add(db, "a", 1, m, 1), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 2, m, 1), RB_OK);
	r.calls = 0;
	assert_int_equal(db_dlv_list(db, "a", dlv_reenter, &r), RB_OK);
	assert_int_equal(r.calls, 2);
	assert_int_equal(r.again_rc, RB_EINVAL);
	assert_int_equal(r.other_rc, RB_OK);
	struct dlvs l = list(db, "a");
	assert_int_equal(l.n, 2);
	assert_true(l.d[0].sent);
	assert_true(l.d[1].sent);
	COUNTS(db, 0, 2, 1, 2, 0);
	db_close(db);
}

static void dlv_delete_each(const struct db_dlv *d, void *arg)
{
	struct reenter *r = arg;
	r->calls++;
	r->other_rc |= db_dlv_del(r->db, "a", d->msgid);
}

static void test_delete_while_listing(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_NORMAL);
	struct reenter r = { db, 0, 0, 0, NULL, 0 };

	for (uint16_t i = 1; i <= 3; i++)
		assert_int_equal(db_dlv_add(db, "a", i, add_msg(db, 1, 1, "m"), 1), RB_OK);
	COUNTS(db, 0, 0, 3, 3, 0);
	assert_int_equal(db_dlv_list(db, "a", dlv_delete_each, &r), RB_OK);
	assert_int_equal(r.calls, 3);
	assert_int_equal(r.other_rc, RB_OK);
	COUNTS(db, 0, 0, 0, 0, 0);
	db_close(db);
}

/* Blobs over SQLite's length limit (lowered here on db.c's own connection,
 * reached through the auto-extension hook). */
static void test_too_big(void **state)
{
	struct fx *f = *state;
	static char big[2000];
	int64_t id = -1;

	assert_int_equal(sqlite3_auto_extension((void (*)(void))capture), SQLITE_OK);
	captured = NULL;
	struct db *db = open_ok(f, DB_NORMAL);
	sqlite3_cancel_auto_extension((void (*)(void))capture);
	assert_non_null(captured);
	sqlite3_limit(captured, SQLITE_LIMIT_LENGTH, 1000);

	assert_int_equal(db_msg_add(db, 1, 1, big, sizeof(big), &id), RB_ETOOBIG);
	assert_int_equal(id, -1);
	assert_int_equal(db_up_begin(db, "a", 1), RB_OK);
	assert_int_equal(db_up_reply(db, "a", 1, big, sizeof(big)), RB_ETOOBIG);
	check_up(db, "a", 1, 1, NULL);
	COUNTS(db, 0, 0, 0, 0, 1);
	/* Nothing is left half done: the next calls work. */
	assert_int_equal(db_msg_add(db, 1, 1, big, 500, &id), RB_OK);
	assert_int_equal(db_dlv_add(db, "a", 1, id, 1), RB_OK);
	COUNTS(db, 0, 0, 1, 1, 1);
	db_close(db);
}

/* ---- throughput (printed, never asserted) ---- */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void test_throughput(void **state)
{
	static const struct {
		enum db_durability d;
		const char *name;
	} modes[] = { { DB_NORMAL, "normal" }, { DB_FULL, "full" } };
	struct fx *f = *state;
	uint8_t payload[100];

	fill(payload, sizeof(payload), 3);
	for (size_t k = 0; k < RB_ARRAY_LEN(modes); k++) {
		snprintf(f->path, sizeof(f->path), "%s/bench-%s.db", f->dir, modes[k].name);
		struct db *db = open_ok(f, modes[k].d);
		size_t n = 0;
		double t0 = now_s(), t;
		char dev[16];

		/* Up to 0.4 s per mode, 100 batches at most. */
		do {
			assert_int_equal(db_begin(db), RB_OK);
			for (int i = 0; i < 1000; i++, n++) {
				int64_t id;
				snprintf(dev, sizeof(dev), "dev%03zu", n % 100);
				assert_int_equal(db_msg_add(db, 1002, 1, payload, sizeof(payload), &id),
						 RB_OK);
				assert_int_equal(db_dlv_add(db, dev, (uint16_t)(n / 100 + 1), id, 1),
						 RB_OK);
			}
			assert_int_equal(db_commit(db), RB_OK);
			t = now_s() - t0;
		} while (t < 0.4 && n < 100000);
		COUNTS(db, 0, 0, n, n, 0);
		print_message("[ bench    ] durability=%s: %zu db_msg_add+db_dlv_add pairs in "
			      "%.3f s, %.0f pairs/s (%.0f rows/s), batches of 1000, 100-byte "
			      "payloads\n", modes[k].name, n, t, (double)n / t, 2.0 * (double)n / t);
		db_close(db);
	}
}

/* Not asserted: what db_dlv_usage costs with 20k deliveries queued for one
 * session (it runs on every push to a session, for the caps), and, for
 * comparison, for a device with no session row (the scanning fallback). */
static void test_usage_cost(void **state)
{
	struct fx *f = *state;
	struct db *db = open_ok(f, DB_OFF);
	struct db_session s = sess(0, 0);
	uint8_t payload[100];
	enum { QUEUED = 20000, CALLS = 200 };
	size_t c = 0, b = 0;

	fill(payload, sizeof(payload), 5);
	assert_int_equal(db_session_put(db, "big", &s), RB_OK);
	assert_int_equal(db_begin(db), RB_OK);
	for (int i = 0; i < QUEUED; i++) {
		int64_t id;
		assert_int_equal(db_msg_add(db, 1, 1, payload, sizeof(payload), &id), RB_OK);
		assert_int_equal(db_dlv_add(db, "big", (uint16_t)(i % 65535 + 1), id, 1), RB_OK);
		assert_int_equal(db_dlv_add(db, "nosession", (uint16_t)(i % 65535 + 1), id, 1),
				 RB_OK);
	}
	assert_int_equal(db_commit(db), RB_OK);
	static const char *const devs[] = { "big", "nosession" };
	for (size_t k = 0; k < RB_ARRAY_LEN(devs); k++) {
		double t0 = now_s(), t;
		for (int i = 0; i < CALLS; i++)
			assert_int_equal(db_dlv_usage(db, devs[k], &c, &b), RB_OK);
		t = now_s() - t0;
		assert_int_equal(c, QUEUED);
		assert_int_equal(b, (size_t)QUEUED * sizeof(payload));
		print_message("[ bench    ] db_dlv_usage(%s) with %d queued: %.1f us per call\n",
			      devs[k], QUEUED, t / CALLS * 1e6);
	}
	db_close(db);
}

int main(int argc, char **argv)
{
	/* The failures provoked on purpose are logged only on request
	 * (RB_TEST_LOG=1): the tests assert the result codes. */
	log_current_level = getenv("RB_TEST_LOG") ? LOG_DEBUG : -1;
	if (argc == 4 && strcmp(argv[1], "--crash-child") == 0)
		return crash_child(argv[2], strcmp(argv[3], "kill") == 0);
	ssize_t n = readlink("/proc/self/exe", self_exe, sizeof(self_exe) - 1);
	self_exe[n > 0 ? n : 0] = 0;

	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_open_fresh),
		T(test_reopen_v1_no_change),
		T(test_newer_schema_refused),
		T(test_foreign_db_refused),
		T(test_durability),
		T(test_not_a_database),
		T(test_corrupt_page),
		T(test_corrupt_page_type),
		T(test_unwritable),
		T(test_sessions),
		T(test_session_delete_owned),
		T(test_session_expire_owned),
		T(test_sub_evict),
		T(test_subscriptions),
		T(test_deliveries),
		T(test_drop_oldest),
		T(test_usage),
		T(test_usage_counters),
		T(test_migrate_v1),
		T(test_upstream),
		T(test_upstream_list),
		T(test_batch),
		T(test_close_in_batch),
		T(test_crash_exit),
		T(test_crash_sigkill),
		T(test_persistence),
		T(test_orphans_at_open),
		T(test_payload_1mib),
		T(test_callbacks),
		T(test_delete_while_listing),
		T(test_too_big),
		T(test_throughput),
		T(test_usage_cost),
#undef T
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
