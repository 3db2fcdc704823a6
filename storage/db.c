/*
 * db.c - the gateway's SQLite database (contract in storage/db.h).
 *
 * Schema, version 2 (the migrations[] table below is the authority):
 *
 *   schema_version(version INTEGER NOT NULL)                  exactly one row
 *   sessions(device TEXT PRIMARY KEY, expires_at INTEGER, next_msgid INTEGER,
 *            queued INTEGER, queued_bytes INTEGER)                         (v2)
 *       WITHOUT ROWID; sessions_expiry ON sessions(expires_at) WHERE expires_at > 0
 *       TRIGGER sessions_usage: AFTER INSERT, sets queued/queued_bytes from
 *       the deliveries already there (v2)
 *   subscriptions(device TEXT, channel TEXT, PRIMARY KEY(device, channel))
 *       WITHOUT ROWID; subscriptions_channel ON subscriptions(channel)
 *   messages(id INTEGER PRIMARY KEY, msgtype INTEGER, qos INTEGER, payload BLOB)
 *   deliveries(device TEXT, msgid INTEGER,
 *              message_id INTEGER REFERENCES messages(id), state INTEGER,
 *              sent INTEGER, seq INTEGER, PRIMARY KEY(device, msgid))
 *       WITHOUT ROWID; deliveries_message ON deliveries(message_id);
 *       UNIQUE deliveries_order ON deliveries(device, seq)
 *       TRIGGER deliveries_usage_add: AFTER INSERT, adds 1 and the
 *       message's payload length to the device's session row (v2)
 *       TRIGGER deliveries_gc: AFTER DELETE, subtracts 1 and the payload
 *       length from the session row (v2), then deletes the message when no
 *       delivery references it any more
 *   upstream(device TEXT, msgid INTEGER, state INTEGER, reply BLOB,
 *            PRIMARY KEY(device, msgid))
 *
 * Why this shape:
 * - Small rows keyed by text live in WITHOUT ROWID tables (one b-tree, no
 *   separate rowid lookup). messages and upstream carry blobs of any size,
 *   which WITHOUT ROWID handles badly, so they keep a rowid.
 * - The orphan rule ("a message row is deleted with its last delivery") is a
 *   trigger, so every path that deletes deliveries (one, the oldest, a whole
 *   session, every expired session) obeys it inside its own statement.
 * - deliveries.message_id is a foreign key (foreign_keys=ON): a delivery of a
 *   message that does not exist is refused rather than silently invisible to
 *   the joins. device columns have no foreign key to sessions: upstream rows
 *   may be keyed by a connection identity that has no session (qos_store.h).
 * - seq is per device, max+1 through deliveries_order, so "oldest first" is
 *   an index walk and survives msgid wrap-around.
 * - sessions_expiry is partial: connected sessions (expires_at = 0), which
 *   change most often, are not in it.
 * - sessions.queued/queued_bytes are the count and payload bytes of the
 *   device's deliveries (db_dlv_usage, read on every push to a session, is
 *   then one primary-key lookup instead of a scan of the backlog). Triggers
 *   keep them exact in the same statement as the change, so every path
 *   (add, delete, drop oldest, session delete/expire, rollbacks) obeys them.
 *   The decrement and the message delete are one trigger, in that order:
 *   the length must be read before the message row may go, and SQLite does
 *   not document the order in which two triggers on one event fire.
 *   Deliveries of a device with no session row update nothing; that
 *   device's usage is counted by a scan (db_dlv_usage), and a session row
 *   inserted later starts from the deliveries already there
 *   (sessions_usage; an upsert that updates does not fire it). Nothing
 *   updates deliveries.device/message_id or messages.payload, and a message
 *   with deliveries cannot be deleted (foreign key), so no other trigger is
 *   needed.
 *
 * Statements are prepared once at open and reset (bindings cleared) after
 * every use, so the SQLITE_STATIC pointers bound never outlive a call. An
 * operation made of several statements runs inside SAVEPOINT op: atomic on
 * its own, and nestable inside a caller's batch.
 */
#include "storage/db.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "protocol/rb.h"
#include "src/base/log.h"

/* One writer: a lock held by someone else is a misconfiguration (two
 * gateways on one file), not contention worth waiting long for. */
#define DB_BUSY_MS 100

/* migrations[v] takes the schema from version v to v + 1, inside the one
 * transaction db_open runs; the driver then records v + 1. Adding version 3
 * is one more entry here and DB_SCHEMA_VERSION = 3 in db.h. A step never
 * changes once released: a database may be at any earlier version. */
static const char *const migrations[] = {
	/* 0 -> 1 */
	"CREATE TABLE schema_version(version INTEGER NOT NULL);"
	"INSERT INTO schema_version(version) VALUES(0);"
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
	");",
	/* 1 -> 2: per-session usage counters, backfilled; deliveries_gc
	 * replaced by one that also keeps them (see the top of the file). */
	"ALTER TABLE sessions ADD COLUMN queued INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE sessions ADD COLUMN queued_bytes INTEGER NOT NULL DEFAULT 0;"
	"UPDATE sessions SET"
	" queued = (SELECT count(*) FROM deliveries AS d JOIN messages AS m"
	"  ON m.id = d.message_id WHERE d.device = sessions.device),"
	" queued_bytes = (SELECT ifnull(sum(length(m.payload)), 0) FROM deliveries AS d"
	"  JOIN messages AS m ON m.id = d.message_id WHERE d.device = sessions.device);"
	"DROP TRIGGER deliveries_gc;"
	/* ifnull: a delivery of a missing message must fail on its foreign
	 * key (RB_ENOTFOUND), not on queued_bytes NOT NULL. */
	"CREATE TRIGGER deliveries_usage_add AFTER INSERT ON deliveries BEGIN"
	" UPDATE sessions SET queued = queued + 1, queued_bytes = queued_bytes +"
	"  ifnull((SELECT length(payload) FROM messages WHERE id = NEW.message_id), 0)"
	"  WHERE device = NEW.device;"
	" END;"
	"CREATE TRIGGER deliveries_gc AFTER DELETE ON deliveries BEGIN"
	" UPDATE sessions SET queued = queued - 1, queued_bytes = queued_bytes -"
	"  ifnull((SELECT length(payload) FROM messages WHERE id = OLD.message_id), 0)"
	"  WHERE device = OLD.device;"
	" DELETE FROM messages WHERE id = OLD.message_id"
	"  AND NOT EXISTS (SELECT 1 FROM deliveries WHERE message_id = OLD.message_id);"
	" END;"
	"CREATE TRIGGER sessions_usage AFTER INSERT ON sessions"
	" WHEN EXISTS (SELECT 1 FROM deliveries WHERE device = NEW.device) BEGIN"
	" UPDATE sessions SET"
	"  queued = (SELECT count(*) FROM deliveries AS d JOIN messages AS m"
	"   ON m.id = d.message_id WHERE d.device = NEW.device),"
	"  queued_bytes = (SELECT ifnull(sum(length(m.payload)), 0) FROM deliveries AS d"
	"   JOIN messages AS m ON m.id = d.message_id WHERE d.device = NEW.device)"
	"  WHERE device = NEW.device;"
	" END;",
};

_Static_assert(RB_ARRAY_LEN(migrations) == DB_SCHEMA_VERSION,
	       "one migration step per schema version");

enum stmt {
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST_SAVEPOINT,
	ST_RELEASE,
	ST_ROLLBACK_TO,
	ST_SESSION_GET,
	ST_SESSION_PUT,
	ST_DEL_DLV,
	ST_DEL_SUBS,
	ST_DEL_UP,
	ST_DEL_SESSION,
	ST_EXP_DLV,
	ST_EXP_SUBS,
	ST_EXP_UP,
	ST_EXP_SESSIONS,
	ST_RELEASE_ALL,
	ST_SUB_ADD,
	ST_SUB_DEL,
	ST_SUB_EVICT,
	ST_SUBS_OF,
	ST_OFFLINE,
	ST_MSG_ADD,
	ST_DLV_ADD,
	ST_DLV_STATE,
	ST_DLV_SENT,
	ST_DLV_DEL,
	ST_DLV_LIST,
	ST_DLV_USAGE,
	ST_DLV_USAGE_SCAN,
	ST_DLV_DROP,
	ST_UP_GET,
	ST_UP_BEGIN,
	ST_UP_REPLY,
	ST_UP_DEL,
	ST_UP_LIST,
	ST_SESSIONS_LIVE,
	ST_OFFLINE_CHANNELS,
	ST_COUNTS,
	ST_COUNT_
};

#define EXPIRED "(SELECT device FROM sessions WHERE expires_at > 0 AND expires_at <= ?1)"

static const char *const sql_text[ST_COUNT_] = {
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
	[ST_SAVEPOINT] = "SAVEPOINT op",
	[ST_RELEASE] = "RELEASE op",
	[ST_ROLLBACK_TO] = "ROLLBACK TO op",
	[ST_SESSION_GET] = "SELECT expires_at, next_msgid FROM sessions WHERE device = ?1",
	[ST_SESSION_PUT] = "INSERT INTO sessions(device, expires_at, next_msgid) VALUES(?1, ?2, ?3)"
			   " ON CONFLICT(device) DO UPDATE SET expires_at = excluded.expires_at,"
			   " next_msgid = excluded.next_msgid",
	/* Deliveries go first: deliveries_gc removes their orphaned messages. */
	[ST_DEL_DLV] = "DELETE FROM deliveries WHERE device = ?1",
	[ST_DEL_SUBS] = "DELETE FROM subscriptions WHERE device = ?1",
	[ST_DEL_UP] = "DELETE FROM upstream WHERE device = ?1",
	[ST_DEL_SESSION] = "DELETE FROM sessions WHERE device = ?1",
	/* The sessions rows go last: the others select through them. */
	[ST_EXP_DLV] = "DELETE FROM deliveries WHERE device IN " EXPIRED,
	[ST_EXP_SUBS] = "DELETE FROM subscriptions WHERE device IN " EXPIRED,
	[ST_EXP_UP] = "DELETE FROM upstream WHERE device IN " EXPIRED,
	[ST_EXP_SESSIONS] = "DELETE FROM sessions WHERE expires_at > 0 AND expires_at <= ?1",
	[ST_RELEASE_ALL] = "UPDATE sessions SET expires_at = ?1 WHERE expires_at = 0",
	[ST_SUB_ADD] = "INSERT INTO subscriptions(device, channel) VALUES(?1, ?2)"
		       " ON CONFLICT(device, channel) DO NOTHING",
	[ST_SUB_DEL] = "DELETE FROM subscriptions WHERE device = ?1 AND channel = ?2",
	[ST_SUB_EVICT] = "DELETE FROM subscriptions WHERE channel = ?2 AND device <> ?1",
	[ST_SUBS_OF] = "SELECT channel FROM subscriptions WHERE device = ?1 ORDER BY channel",
	[ST_OFFLINE] = "SELECT s.device FROM subscriptions AS s"
		       " JOIN sessions AS x ON x.device = s.device"
		       " WHERE s.channel = ?1 AND x.expires_at > 0 ORDER BY s.device",
	[ST_MSG_ADD] = "INSERT INTO messages(msgtype, qos, payload) VALUES(?1, ?2, ?3)",
	[ST_DLV_ADD] = "INSERT INTO deliveries(device, msgid, message_id, state, sent, seq)"
		       " VALUES(?1, ?2, ?3, ?4, 0,"
		       " (SELECT ifnull(max(seq), 0) + 1 FROM deliveries WHERE device = ?1))",
	[ST_DLV_STATE] = "UPDATE deliveries SET state = ?3 WHERE device = ?1 AND msgid = ?2",
	[ST_DLV_SENT] = "UPDATE deliveries SET sent = 1 WHERE device = ?1 AND msgid = ?2",
	[ST_DLV_DEL] = "DELETE FROM deliveries WHERE device = ?1 AND msgid = ?2",
	[ST_DLV_LIST] = "SELECT d.msgid, d.state, d.sent, m.msgtype, m.qos, m.payload"
			" FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id"
			" WHERE d.device = ?1 ORDER BY d.seq",
	/* Kept by triggers: one lookup, whatever the backlog. */
	[ST_DLV_USAGE] = "SELECT queued, queued_bytes FROM sessions WHERE device = ?1",
	/* A device with no session row. length() of a blob column reads its
	 * size, not its overflow pages. */
	[ST_DLV_USAGE_SCAN] = "SELECT count(*), ifnull(sum(length(m.payload)), 0)"
			      " FROM deliveries AS d JOIN messages AS m ON m.id = d.message_id"
			      " WHERE d.device = ?1",
	/* One statement, so it is atomic without a savepoint. */
	[ST_DLV_DROP] = "DELETE FROM deliveries WHERE device = ?1 AND seq ="
			" (SELECT min(seq) FROM deliveries WHERE device = ?1) RETURNING msgid",
	[ST_UP_GET] = "SELECT state, reply FROM upstream WHERE device = ?1 AND msgid = ?2",
	[ST_UP_BEGIN] = "INSERT INTO upstream(device, msgid, state, reply) VALUES(?1, ?2, 1, NULL)",
	[ST_UP_REPLY] = "UPDATE upstream SET state = 2, reply = ?3 WHERE device = ?1 AND msgid = ?2",
	[ST_UP_DEL] = "DELETE FROM upstream WHERE device = ?1 AND msgid = ?2",
	[ST_UP_LIST] = "SELECT msgid, state, reply FROM upstream WHERE device = ?1 ORDER BY msgid",
	[ST_SESSIONS_LIVE] = "SELECT device FROM sessions WHERE expires_at = 0 OR expires_at > ?1"
			     " ORDER BY device",
	[ST_OFFLINE_CHANNELS] = "SELECT DISTINCT s.channel FROM subscriptions AS s"
				" JOIN sessions AS x ON x.device = s.device"
				" WHERE x.expires_at > ?1 ORDER BY s.channel",
	[ST_COUNTS] = "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM subscriptions),"
		      " (SELECT count(*) FROM messages), (SELECT count(*) FROM deliveries),"
		      " (SELECT count(*) FROM upstream)",
};

/* Core thread only (whichever single thread owns it). */
struct db {
	sqlite3 *sql;
	bool batch;               /* between db_begin and db_commit/db_rollback */
	sqlite3_stmt *st[ST_COUNT_];
	void *buf;                /* db_up_get's copy of a reply */
	size_t bufcap;
};

/* ---- open ---- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* 0 if the directory holding path is writable (SQLite creates -wal and -shm
 * files there), else the errno saying why not. */
static int dir_errno(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else
		slash[slash == dir] = 0; /* "/x" -> "/" */
	return faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) == 0 ? 0 : errno;
}

/* "<path>: <sqlite's reason> (<the system's reason>)". The system's reason
 * is added only when SQLite's is about the file (sqlite3_system_errno is
 * stale otherwise), and checked: SQLite retries a failed create read-only,
 * so a new file in a directory it may not write to reports ENOENT, and a
 * database whose -wal/-shm cannot be made just reports "readonly". */
static void sqlerr(char *err, size_t errlen, const char *path, sqlite3 *h, const char *what)
{
	int code = h ? sqlite3_errcode(h) & 0xff : SQLITE_NOMEM;
	int sys = h ? sqlite3_system_errno(h) : 0;
	int dir = code == SQLITE_CANTOPEN || code == SQLITE_READONLY ? dir_errno(path) : 0;
	const char *pre = "";
	struct stat sb;

	if (code == SQLITE_CANTOPEN && dir && stat(path, &sb) != 0 && errno == ENOENT) {
		sys = dir;
	} else if (code == SQLITE_READONLY && dir) {
		sys = dir;
		pre = "its directory: ";
	} else if (code != SQLITE_CANTOPEN && code != SQLITE_IOERR && code != SQLITE_PERM) {
		sys = 0;
	}
	seterr(err, errlen, "%s: %s%s%s%s%s%s%s", path, what ? what : "", what ? ": " : "",
	       h ? sqlite3_errmsg(h) : "out of memory", sys ? " (" : "", sys ? pre : "",
	       sys ? strerror(sys) : "", sys ? ")" : "");
}

static int exec(sqlite3 *h, const char *sql)
{
	return sqlite3_exec(h, sql, NULL, NULL, NULL);
}

/* First column of the first row of sql as an integer; SQLITE_ROW-less
 * results give SQLITE_EMPTY. */
static int query_int(sqlite3 *h, const char *sql, int64_t *out)
{
	sqlite3_stmt *st;
	int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);

	if (rc != SQLITE_OK)
		return rc;
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*out = sqlite3_column_int64(st, 0);
		rc = SQLITE_OK;
	} else if (rc == SQLITE_DONE) {
		rc = SQLITE_EMPTY;
	}
	sqlite3_finalize(st);
	return rc;
}

/* Rows of a one-column PRAGMA joined with "; " into out. */
static int query_text(sqlite3 *h, const char *sql, char *out, size_t outlen)
{
	sqlite3_stmt *st;
	size_t n = 0;
	int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);

	out[0] = 0;
	if (rc != SQLITE_OK)
		return rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(st, 0);
		int w = snprintf(out + n, outlen - n, "%s%s", n ? "; " : "", t ? t : "");
		n = w < 0 || (size_t)w >= outlen - n ? outlen - 1 : n + (size_t)w;
	}
	/* quick_check's reports span lines; an error message is one line. */
	for (char *p = out; (p = strchr(p, '\n')); )
		*p = ' ';
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Bring the schema to DB_SCHEMA_VERSION in one IMMEDIATE transaction, so a
 * failed step leaves the file as it was and two processes cannot both
 * migrate. A database with tables but no schema_version is someone else's. */
static int migrate(sqlite3 *h, const char *path, char *err, size_t errlen)
{
	int64_t has = 0, version = 0, rows = 0;
	char sql[64];

	if (exec(h, "BEGIN IMMEDIATE") != SQLITE_OK) {
		sqlerr(err, errlen, path, h, "schema");
		return -1;
	}
	if (query_int(h, "SELECT count(*) FROM sqlite_master WHERE type = 'table'"
		      " AND name = 'schema_version'", &has) != SQLITE_OK)
		goto sqlfail;
	if (!has) {
		int64_t other = 0;
		if (query_int(h, "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite!_%'"
			      " ESCAPE '!'", &other) != SQLITE_OK)
			goto sqlfail;
		if (other) {
			seterr(err, errlen, "%s: not a rainbow database (tables but no schema_version)",
			       path);
			goto fail;
		}
	} else {
		if (query_int(h, "SELECT count(*) FROM schema_version", &rows) != SQLITE_OK ||
		    (rows == 1 && query_int(h, "SELECT version FROM schema_version", &version) !=
				  SQLITE_OK))
			goto sqlfail;
		if (rows != 1 || version < 0) {
			seterr(err, errlen, "%s: damaged schema_version table (%lld rows, version %lld)",
			       path, (long long)rows, (long long)version);
			goto fail;
		}
	}
	if (version > DB_SCHEMA_VERSION) {
		seterr(err, errlen, "%s: schema version %lld is newer than this build (%d)", path,
		       (long long)version, DB_SCHEMA_VERSION);
		goto fail;
	}
	for (int64_t v = version; v < DB_SCHEMA_VERSION; v++) {
		snprintf(sql, sizeof(sql), "UPDATE schema_version SET version = %lld",
			 (long long)v + 1);
		if (exec(h, migrations[v]) != SQLITE_OK || exec(h, sql) != SQLITE_OK) {
			snprintf(sql, sizeof(sql), "migration to schema version %lld", (long long)v + 1);
			sqlerr(err, errlen, path, h, sql);
			goto fail;
		}
	}
	if (exec(h, "COMMIT") != SQLITE_OK) {
		sqlerr(err, errlen, path, h, "schema");
		goto fail;
	}
	if (version < DB_SCHEMA_VERSION)
		log_info("db: %s: schema version %lld -> %d", path, (long long)version,
			 DB_SCHEMA_VERSION);
	return 0;
sqlfail:
	sqlerr(err, errlen, path, h, "schema");
fail:
	if (!sqlite3_get_autocommit(h))
		exec(h, "ROLLBACK");
	return -1;
}

void db_close(struct db *db)
{
	if (!db)
		return;
	if (db->batch && !sqlite3_get_autocommit(db->sql)) {
		log_warn("db: closed with a batch open: rolled back");
		if (exec(db->sql, "ROLLBACK") != SQLITE_OK)
			log_error("db: ROLLBACK: %s", sqlite3_errmsg(db->sql));
	}
	for (size_t i = 0; i < ST_COUNT_; i++)
		sqlite3_finalize(db->st[i]);
	/* Last connection out checkpoints the WAL into the main file. */
	if (db->sql && sqlite3_close(db->sql) != SQLITE_OK)
		log_error("db: close: %s", sqlite3_errmsg(db->sql));
	free(db->buf);
	free(db);
}

struct db *db_open(const char *path, enum db_durability durability, char *err, size_t errlen)
{
	static const char *const sync_pragma[] = {
		[DB_OFF] = "PRAGMA synchronous = OFF",
		[DB_NORMAL] = "PRAGMA synchronous = NORMAL",
		[DB_FULL] = "PRAGMA synchronous = FULL",
	};
	struct db *db = NULL;
	char text[512];
	int64_t n;
	int rc;

	seterr(err, errlen, "%s", "");
	if (!path || !*path) {
		seterr(err, errlen, "empty database path");
		return NULL;
	}
	if ((unsigned)durability >= RB_ARRAY_LEN(sync_pragma)) {
		seterr(err, errlen, "%s: bad durability %d", path, (int)durability);
		return NULL;
	}
	db = calloc(1, sizeof(*db));
	if (!db) {
		seterr(err, errlen, "%s: out of memory", path);
		return NULL;
	}
	/* A single thread uses the connection: no per-connection mutex. */
	rc = sqlite3_open_v2(path, &db->sql,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sqlerr(err, errlen, path, db->sql, NULL);
		goto fail;
	}
	sqlite3_extended_result_codes(db->sql, 1);
	/* SQLite falls back to read-only when it cannot open for writing: every
	 * later write would fail, so refuse now. */
	if (sqlite3_db_readonly(db->sql, "main") == 1) {
		seterr(err, errlen, "%s: database file is read-only (permission denied?)", path);
		goto fail;
	}
	sqlite3_busy_timeout(db->sql, DB_BUSY_MS);
	/* Check before writing anything: this is also where a file that is not
	 * a database is found out. */
	rc = query_text(db->sql, "PRAGMA quick_check", text, sizeof(text));
	if (rc != SQLITE_OK) {
		sqlerr(err, errlen, path, db->sql, NULL);
		goto fail;
	}
	if (strcmp(text, "ok") != 0) {
		seterr(err, errlen, "%s: quick_check failed: %s", path, text);
		goto fail;
	}
	rc = query_text(db->sql, "PRAGMA journal_mode = WAL", text, sizeof(text));
	if (rc != SQLITE_OK) {
		sqlerr(err, errlen, path, db->sql, "journal_mode");
		goto fail;
	}
	if (strcasecmp(text, "wal") != 0) {
		seterr(err, errlen, "%s: cannot use WAL (journal_mode is %s)", path, text);
		goto fail;
	}
	/* foreign_keys is a no-op inside a transaction: set it before any.
	 * journal_size_limit: after a burst, the WAL is truncated back to
	 * 64 MiB at the next checkpoint instead of keeping its peak size. */
	if (exec(db->sql, sync_pragma[durability]) != SQLITE_OK ||
	    exec(db->sql, "PRAGMA foreign_keys = ON") != SQLITE_OK ||
	    exec(db->sql, "PRAGMA journal_size_limit = 67108864") != SQLITE_OK) {
		sqlerr(err, errlen, path, db->sql, "pragma");
		goto fail;
	}
	if (migrate(db->sql, path, err, errlen) != 0)
		goto fail;
	/* A crash between db_msg_add and the db_dlv_add calls that follow it,
	 * outside a batch, leaves a message nothing refers to. */
	if (exec(db->sql, "DELETE FROM messages WHERE NOT EXISTS"
		 " (SELECT 1 FROM deliveries WHERE message_id = messages.id)") != SQLITE_OK) {
		sqlerr(err, errlen, path, db->sql, "orphaned messages");
		goto fail;
	}
	n = sqlite3_changes64(db->sql);
	if (n)
		log_info("db: %s: deleted %lld orphaned messages", path, (long long)n);
	for (size_t i = 0; i < ST_COUNT_; i++) {
		if (sqlite3_prepare_v3(db->sql, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &db->st[i], NULL) != SQLITE_OK) {
			snprintf(text, sizeof(text), "prepare \"%.200s\"", sql_text[i]);
			sqlerr(err, errlen, path, db->sql, text);
			goto fail;
		}
	}
	return db;
fail:
	db_close(db);
	return NULL;
}

/* ---- statement helpers ---- */

/* A statement still stepping belongs to a listing whose callback is calling
 * back into the same function: reusing it would restart the listing. */
static sqlite3_stmt *stmt(struct db *db, enum stmt id)
{
	sqlite3_stmt *st = db->st[id];

	if (sqlite3_stmt_busy(st)) {
		log_error("db: %s: called again from its own callback", sqlite3_sql(st));
		return NULL;
	}
	return st;
}

static void done(sqlite3_stmt *st)
{
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
}

static int rb_code(int rc)
{
	switch (rc) {
	case SQLITE_CONSTRAINT_PRIMARYKEY:
	case SQLITE_CONSTRAINT_UNIQUE:
		return RB_EEXIST;
	case SQLITE_CONSTRAINT_FOREIGNKEY:
		return RB_ENOTFOUND;
	case SQLITE_CONSTRAINT_CHECK:
	case SQLITE_CONSTRAINT_NOTNULL:
	case SQLITE_RANGE:
	case SQLITE_MISUSE:
		return RB_EINVAL;
	}
	switch (rc & 0xff) {
	case SQLITE_NOMEM:
		return RB_ENOMEM;
	case SQLITE_TOOBIG:
		return RB_ETOOBIG;
	}
	return RB_EIO;
}

/* Log a failed bind or step with its statement, reset it, map the code. A
 * taken key is an expected answer (a duplicate SEND), not an error. */
static int fail(struct db *db, sqlite3_stmt *st, int rc)
{
	int ret = rb_code(rc);

	if (ret == RB_EEXIST)
		log_debug("db: %s: %s", sqlite3_sql(st), sqlite3_errmsg(db->sql));
	else
		log_error("db: %s: %s", sqlite3_sql(st), sqlite3_errmsg(db->sql));
	done(st);
	return ret;
}

/* Step a statement that returns no rows. */
static int run(struct db *db, sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);

	if (rc != SQLITE_DONE)
		return fail(db, st, rc);
	done(st);
	return RB_OK;
}

static int run_id(struct db *db, enum stmt id)
{
	sqlite3_stmt *st = stmt(db, id);
	return st ? run(db, st) : RB_EINVAL;
}

static int bind_text(sqlite3_stmt *st, int i, const char *s)
{
	return sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* A NULL pointer would bind NULL, not an empty blob. */
static int bind_blob(sqlite3_stmt *st, int i, const void *p, size_t len)
{
	return len ? sqlite3_bind_blob64(st, i, p, len, SQLITE_STATIC) :
		     sqlite3_bind_zeroblob(st, i, 0);
}

/* ?1 device, ?2 msgid: the key of deliveries and upstream. */
static int bind_key(sqlite3_stmt *st, const char *device, uint16_t msgid)
{
	int rc = bind_text(st, 1, device);
	return rc != SQLITE_OK ? rc : sqlite3_bind_int(st, 2, msgid);
}

/* Run a keyed statement that must touch one row: RB_ENOTFOUND if none. */
static int run_one(struct db *db, sqlite3_stmt *st)
{
	int ret = run(db, st);
	return ret == RB_OK && sqlite3_changes(db->sql) == 0 ? RB_ENOTFOUND : ret;
}

/* Several statements as one: SAVEPOINT starts a transaction outside a batch
 * and nests inside one, so a failure undoes this operation only. */
static int op_begin(struct db *db)
{
	return run_id(db, ST_SAVEPOINT);
}

static int op_end(struct db *db, int ret)
{
	if (ret == RB_OK && (ret = run_id(db, ST_RELEASE)) == RB_OK)
		return RB_OK;
	/* SQLite may already have rolled the whole transaction back. */
	if (!sqlite3_get_autocommit(db->sql)) {
		if (db->batch) {
			run_id(db, ST_ROLLBACK_TO);
			run_id(db, ST_RELEASE);
		} else {
			run_id(db, ST_ROLLBACK);
		}
	}
	return ret;
}

/* ---- batches ---- */

int db_begin(struct db *db)
{
	if (db->batch) {
		log_error("db: db_begin inside a batch");
		return RB_EINVAL;
	}
	int ret = run_id(db, ST_BEGIN);
	if (ret == RB_OK)
		db->batch = true;
	return ret;
}

int db_commit(struct db *db)
{
	int ret;

	if (!db->batch) {
		log_error("db: db_commit outside a batch");
		return RB_EINVAL;
	}
	db->batch = false;
	if (sqlite3_get_autocommit(db->sql)) {
		log_error("db: batch already rolled back by an earlier error: nothing committed");
		return RB_EIO;
	}
	ret = run_id(db, ST_COMMIT);
	if (ret != RB_OK && !sqlite3_get_autocommit(db->sql))
		run_id(db, ST_ROLLBACK);
	return ret;
}

int db_rollback(struct db *db)
{
	if (!db->batch) {
		log_error("db: db_rollback outside a batch");
		return RB_EINVAL;
	}
	db->batch = false;
	return sqlite3_get_autocommit(db->sql) ? RB_OK : run_id(db, ST_ROLLBACK);
}

bool db_in_batch(const struct db *db)
{
	return db->batch;
}

/* ---- sessions ---- */

int db_session_get(struct db *db, const char *device, struct db_session *out)
{
	sqlite3_stmt *st = stmt(db, ST_SESSION_GET);
	int rc, ret;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK)
		return fail(db, st, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if (out) {
			out->expires_at = sqlite3_column_int64(st, 0);
			out->next_msgid = (uint16_t)sqlite3_column_int(st, 1);
		}
		ret = RB_OK;
	} else if (rc == SQLITE_DONE) {
		ret = RB_ENOTFOUND;
	} else {
		return fail(db, st, rc);
	}
	done(st);
	return ret;
}

int db_session_put(struct db *db, const char *device, const struct db_session *s)
{
	sqlite3_stmt *st = stmt(db, ST_SESSION_PUT);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 2, s->expires_at)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 3, s->next_msgid)) != SQLITE_OK)
		return fail(db, st, rc);
	return run(db, st);
}

/* Run steps[] (all binding ?1 to device, or to now when device is NULL) as
 * one operation; *n gets the rows the last step deleted. */
static int purge(struct db *db, const enum stmt *steps, size_t nsteps, const char *device,
		 int64_t now, size_t *n)
{
	int ret = op_begin(db);

	for (size_t i = 0; ret == RB_OK && i < nsteps; i++) {
		sqlite3_stmt *st = stmt(db, steps[i]);
		int rc;

		if (!st) {
			ret = RB_EINVAL;
			break;
		}
		rc = device ? bind_text(st, 1, device) : sqlite3_bind_int64(st, 1, now);
		ret = rc != SQLITE_OK ? fail(db, st, rc) : run(db, st);
	}
	if (ret == RB_OK && n)
		*n = (size_t)sqlite3_changes64(db->sql);
	return op_end(db, ret);
}

int db_session_delete(struct db *db, const char *device)
{
	static const enum stmt steps[] = { ST_DEL_DLV, ST_DEL_SUBS, ST_DEL_UP, ST_DEL_SESSION };
	return purge(db, steps, RB_ARRAY_LEN(steps), device, 0, NULL);
}

int db_sessions_expire(struct db *db, int64_t now, size_t *n)
{
	static const enum stmt steps[] = { ST_EXP_DLV, ST_EXP_SUBS, ST_EXP_UP, ST_EXP_SESSIONS };
	size_t dummy;
	return purge(db, steps, RB_ARRAY_LEN(steps), NULL, now, n ? n : &dummy);
}

int db_sessions_release_all(struct db *db, int64_t at)
{
	sqlite3_stmt *st;
	int rc;

	if (at <= 0) {
		log_error("db: db_sessions_release_all: expiry %lld is not > 0", (long long)at);
		return RB_EINVAL;
	}
	if (!(st = stmt(db, ST_RELEASE_ALL)))
		return RB_EINVAL;
	if ((rc = sqlite3_bind_int64(st, 1, at)) != SQLITE_OK)
		return fail(db, st, rc);
	return run(db, st);
}

/* ---- subscriptions ---- */

static int sub_change(struct db *db, enum stmt id, const char *device, const char *channel)
{
	sqlite3_stmt *st = stmt(db, id);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK ||
	    (rc = bind_text(st, 2, channel)) != SQLITE_OK)
		return fail(db, st, rc);
	return run(db, st);
}

int db_sub_add(struct db *db, const char *device, const char *channel)
{
	return sub_change(db, ST_SUB_ADD, device, channel);
}

int db_sub_del(struct db *db, const char *device, const char *channel)
{
	return sub_change(db, ST_SUB_DEL, device, channel);
}

int db_sub_evict(struct db *db, const char *channel, const char *keep_device)
{
	return sub_change(db, ST_SUB_EVICT, keep_device ? keep_device : "", channel);
}

/* Each row's first column, a string, to cb. */
static int list_strings(struct db *db, enum stmt id, const char *key, db_str_cb cb, void *arg)
{
	sqlite3_stmt *st = stmt(db, id);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, key)) != SQLITE_OK)
		return fail(db, st, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		if (!s)
			return fail(db, st, sqlite3_errcode(db->sql) == SQLITE_NOMEM ? SQLITE_NOMEM :
											 SQLITE_MISMATCH);
		cb(s, arg);
	}
	if (rc != SQLITE_DONE)
		return fail(db, st, rc);
	done(st);
	return RB_OK;
}

int db_subs_of(struct db *db, const char *device, db_str_cb cb, void *arg)
{
	return list_strings(db, ST_SUBS_OF, device, cb, arg);
}

int db_offline_members(struct db *db, const char *channel, db_str_cb cb, void *arg)
{
	return list_strings(db, ST_OFFLINE, channel, cb, arg);
}

/* The first column of every row of statement id, bound to an int64. */
static int list_by_int(struct db *db, enum stmt id, int64_t key, db_str_cb cb, void *arg)
{
	sqlite3_stmt *st = stmt(db, id);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = sqlite3_bind_int64(st, 1, key)) != SQLITE_OK)
		return fail(db, st, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		const char *s = (const char *)sqlite3_column_text(st, 0);
		if (!s)
			return fail(db, st, SQLITE_NOMEM);
		cb(s, arg);
	}
	if (rc != SQLITE_DONE)
		return fail(db, st, rc);
	done(st);
	return RB_OK;
}

int db_sessions_list(struct db *db, int64_t now, db_str_cb cb, void *arg)
{
	return list_by_int(db, ST_SESSIONS_LIVE, now, cb, arg);
}

int db_offline_channels(struct db *db, int64_t now, db_str_cb cb, void *arg)
{
	return list_by_int(db, ST_OFFLINE_CHANNELS, now, cb, arg);
}

/* ---- pushed messages and their deliveries ---- */

int db_msg_add(struct db *db, uint16_t msgtype, uint8_t qos, const void *payload, size_t len,
	       int64_t *id)
{
	sqlite3_stmt *st;
	int rc, ret;

	if (qos > 2) {
		log_error("db: db_msg_add: qos %u", qos);
		return RB_EINVAL;
	}
	if (!(st = stmt(db, ST_MSG_ADD)))
		return RB_EINVAL;
	if ((rc = sqlite3_bind_int(st, 1, msgtype)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 2, qos)) != SQLITE_OK ||
	    (rc = bind_blob(st, 3, payload, len)) != SQLITE_OK)
		return fail(db, st, rc);
	ret = run(db, st);
	if (ret == RB_OK && id)
		*id = sqlite3_last_insert_rowid(db->sql);
	return ret;
}

static bool dlv_state_ok(int state)
{
	if (state >= 1 && state <= 3)
		return true;
	log_error("db: bad delivery state %d", state);
	return false;
}

int db_dlv_add(struct db *db, const char *device, uint16_t msgid, int64_t msg_id, int state)
{
	sqlite3_stmt *st;
	int rc;

	if (!dlv_state_ok(state) || !(st = stmt(db, ST_DLV_ADD)))
		return RB_EINVAL;
	if ((rc = bind_key(st, device, msgid)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(st, 3, msg_id)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 4, state)) != SQLITE_OK)
		return fail(db, st, rc);
	return run(db, st);
}

int db_dlv_set_state(struct db *db, const char *device, uint16_t msgid, int state)
{
	sqlite3_stmt *st;
	int rc;

	if (!dlv_state_ok(state) || !(st = stmt(db, ST_DLV_STATE)))
		return RB_EINVAL;
	if ((rc = bind_key(st, device, msgid)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(st, 3, state)) != SQLITE_OK)
		return fail(db, st, rc);
	return run_one(db, st);
}

/* A statement keyed by (device, msgid) and nothing else. */
static int keyed(struct db *db, enum stmt id, const char *device, uint16_t msgid, bool one)
{
	sqlite3_stmt *st = stmt(db, id);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_key(st, device, msgid)) != SQLITE_OK)
		return fail(db, st, rc);
	return one ? run_one(db, st) : run(db, st);
}

int db_dlv_set_sent(struct db *db, const char *device, uint16_t msgid)
{
	return keyed(db, ST_DLV_SENT, device, msgid, true);
}

int db_dlv_del(struct db *db, const char *device, uint16_t msgid)
{
	return keyed(db, ST_DLV_DEL, device, msgid, false);
}

/* A listing's callback (the one its row_fn calls) and its argument. */
struct row_cb {
	db_dlv_cb dlv;
	db_up_cb up;
	void *arg;
};
/* Decode the current row, whose blob column is blob (never NULL), and hand
 * it to the callback. */
typedef void (*row_fn)(sqlite3_stmt *st, const void *blob, size_t len, const struct row_cb *cb);

/* Each row of a device's listing statement id (?1 the device) through row();
 * column blob_col is a blob, "" when empty or NULL. */
static int list_rows(struct db *db, enum stmt id, const char *device, int blob_col, row_fn row,
		     const struct row_cb *cb)
{
	sqlite3_stmt *st = stmt(db, id);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK)
		return fail(db, st, rc);
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		/* _blob before _bytes, as SQLite asks; an empty blob is NULL. */
		const void *blob = sqlite3_column_blob(st, blob_col);
		size_t len = (size_t)sqlite3_column_bytes(st, blob_col);

		if (!blob) {
			if (sqlite3_errcode(db->sql) == SQLITE_NOMEM)
				return fail(db, st, SQLITE_NOMEM);
			blob = "";
			len = 0;
		}
		row(st, blob, len, cb);
	}
	if (rc != SQLITE_DONE)
		return fail(db, st, rc);
	done(st);
	return RB_OK;
}

static void dlv_row(sqlite3_stmt *st, const void *payload, size_t len, const struct row_cb *cb)
{
	const struct db_dlv d = {
		.msgid = (uint16_t)sqlite3_column_int(st, 0),
		.state = sqlite3_column_int(st, 1),
		.sent = sqlite3_column_int(st, 2) != 0,
		.msgtype = (uint16_t)sqlite3_column_int(st, 3),
		.qos = (uint8_t)sqlite3_column_int(st, 4),
		.payload = payload,
		.len = len,
	};

	cb->dlv(&d, cb->arg);
}

int db_dlv_list(struct db *db, const char *device, db_dlv_cb cb, void *arg)
{
	const struct row_cb c = { .dlv = cb, .arg = arg };

	return list_rows(db, ST_DLV_LIST, device, 5, dlv_row, &c);
}

/* The session row's counters; without a session row, a scan. */
int db_dlv_usage(struct db *db, const char *device, size_t *count, size_t *bytes)
{
	sqlite3_stmt *st = stmt(db, ST_DLV_USAGE);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK)
		return fail(db, st, rc);
	if ((rc = sqlite3_step(st)) == SQLITE_DONE) {
		done(st);
		if (!(st = stmt(db, ST_DLV_USAGE_SCAN)))
			return RB_EINVAL;
		if ((rc = bind_text(st, 1, device)) != SQLITE_OK)
			return fail(db, st, rc);
		rc = sqlite3_step(st);
	}
	if (rc != SQLITE_ROW)
		return fail(db, st, rc);
	if (count)
		*count = (size_t)sqlite3_column_int64(st, 0);
	if (bytes)
		*bytes = (size_t)sqlite3_column_int64(st, 1);
	done(st);
	return RB_OK;
}

int db_dlv_drop_oldest(struct db *db, const char *device, uint16_t *msgid)
{
	sqlite3_stmt *st = stmt(db, ST_DLV_DROP);
	uint16_t m;
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_text(st, 1, device)) != SQLITE_OK)
		return fail(db, st, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		done(st);
		return RB_ENOTFOUND;
	}
	if (rc != SQLITE_ROW)
		return fail(db, st, rc);
	m = (uint16_t)sqlite3_column_int(st, 0);
	/* The delete happened in the first step; this one ends the statement
	 * (and, outside a batch, commits it). */
	if ((rc = sqlite3_step(st)) != SQLITE_DONE)
		return fail(db, st, rc);
	done(st);
	if (msgid)
		*msgid = m;
	return RB_OK;
}

/* ---- upstream QoS 2 ---- */

int db_up_get(struct db *db, const char *device, uint16_t msgid, int *state,
	      const void **reply, size_t *len)
{
	sqlite3_stmt *st = stmt(db, ST_UP_GET);
	const void *p = NULL;
	size_t n = 0;
	int rc, s;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_key(st, device, msgid)) != SQLITE_OK)
		return fail(db, st, rc);
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE) {
		done(st);
		return RB_ENOTFOUND;
	}
	if (rc != SQLITE_ROW)
		return fail(db, st, rc);
	s = sqlite3_column_int(st, 0);
	if (s == 2) {
		/* Copied out: a statement left unreset would hold the read
		 * transaction open and delay the commit of later writes. */
		const void *b = sqlite3_column_blob(st, 1);
		n = (size_t)sqlite3_column_bytes(st, 1);
		if (n > db->bufcap) {
			void *nb = realloc(db->buf, n);
			if (!nb) {
				log_error("db: db_up_get: out of memory for a %zu-byte reply", n);
				done(st);
				return RB_ENOMEM;
			}
			db->buf = nb;
			db->bufcap = n;
		}
		if (n)
			memcpy(db->buf, b, n);
		p = n ? db->buf : "";
	}
	done(st);
	if (state)
		*state = s;
	if (reply)
		*reply = p;
	if (len)
		*len = n;
	return RB_OK;
}

static void up_row(sqlite3_stmt *st, const void *reply, size_t len, const struct row_cb *cb)
{
	const struct db_up u = {
		.msgid = (uint16_t)sqlite3_column_int(st, 0),
		.state = sqlite3_column_int(st, 1),
		.reply = reply,
		.len = len,
	};

	cb->up(&u, cb->arg);
}

int db_up_list(struct db *db, const char *device, db_up_cb cb, void *arg)
{
	const struct row_cb c = { .up = cb, .arg = arg };

	return list_rows(db, ST_UP_LIST, device, 2, up_row, &c);
}

int db_up_begin(struct db *db, const char *device, uint16_t msgid)
{
	return keyed(db, ST_UP_BEGIN, device, msgid, false);
}

int db_up_reply(struct db *db, const char *device, uint16_t msgid, const void *reply,
		size_t len)
{
	sqlite3_stmt *st = stmt(db, ST_UP_REPLY);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = bind_key(st, device, msgid)) != SQLITE_OK ||
	    (rc = bind_blob(st, 3, reply, len)) != SQLITE_OK)
		return fail(db, st, rc);
	return run_one(db, st);
}

int db_up_del(struct db *db, const char *device, uint16_t msgid)
{
	return keyed(db, ST_UP_DEL, device, msgid, false);
}

/* ---- counts ---- */

int db_counts(struct db *db, struct db_counts *out)
{
	sqlite3_stmt *st = stmt(db, ST_COUNTS);
	int rc;

	if (!st)
		return RB_EINVAL;
	if ((rc = sqlite3_step(st)) != SQLITE_ROW)
		return fail(db, st, rc);
	out->sessions = (size_t)sqlite3_column_int64(st, 0);
	out->subscriptions = (size_t)sqlite3_column_int64(st, 1);
	out->messages = (size_t)sqlite3_column_int64(st, 2);
	out->deliveries = (size_t)sqlite3_column_int64(st, 3);
	out->upstream = (size_t)sqlite3_column_int64(st, 4);
	done(st);
	return RB_OK;
}
