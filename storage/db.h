/*
 * db.h - the gateway's one SQLite database (docs/sessions.md;
 * docs/protocol.md Sessions, Idempotency). Knows SQLite and nothing of WebSockets.
 * Core thread only (one thread owns a db at a time; it may be opened
 * before that thread starts): one connection, prepared statements made once
 * at open.
 *
 * What it keeps, per device session (key = device id):
 *   sessions       device, expires_at (0 while connected), next_msgid
 *                  and the count/bytes of its deliveries (db_dlv_usage)
 *   subscriptions  (device, channel)
 *   messages       id, msgtype, qos, payload: one row per pushed message,
 *                  shared by its deliveries (the refcounted-body split)
 *   deliveries     (device, msgid) -> message id, qos, state, sent flag
 *   upstream       (device, msgid) -> state, reply: client QoS 2 exactly-once
 * A message row is deleted with its last delivery.
 *
 * Batches: db_begin() opens a transaction and db_commit() ends it; every
 * write call in between joins it (group commit). Writes outside a batch run
 * in their own implicit transaction; a call made of several statements
 * (db_session_delete, db_sessions_expire) is atomic either way. A call that
 * fails inside a batch undoes only its own writes and leaves the batch open
 * (unless SQLite itself rolled the whole batch back after an I/O or memory
 * failure; db_commit then says RB_EIO).
 * Batches do not nest (db_begin in a batch: RB_EINVAL); db_commit and
 * db_rollback outside one: RB_EINVAL. If db_commit fails, the batch is
 * rolled back and over: none of its writes persist. db_close with a batch
 * open rolls it back. durability sets PRAGMA synchronous:
 * DB_FULL (FULL: survives power loss), DB_NORMAL (NORMAL: survives a
 * process crash; WAL is always on), DB_OFF (OFF: unsafe, for tests/benches).
 *
 * Errors: RB_OK, RB_ENOTFOUND, RB_EEXIST, RB_EIO (SQLite failed: the detail
 * is logged with the statement), RB_ENOMEM, RB_ETOOBIG (a blob over
 * SQLite's length limit, 1 GB by default), RB_EINVAL (misuse: a state or
 * qos out of range, batch misuse as above, or a listing called again from
 * its own callback; logged). Strings in results are valid only during a
 * callback.
 *
 * Callbacks may call other db functions, writes included (e.g.
 * db_dlv_set_sent or db_dlv_del on the delivery being listed), but not the
 * listing function itself (RB_EINVAL) nor db_begin/commit/rollback. Whether
 * rows written during a listing show up later in it is unspecified.
 */
#ifndef RB_DB_H
#define RB_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum db_durability { DB_OFF = 0, DB_NORMAL = 1, DB_FULL = 2 };

#define DB_SCHEMA_VERSION 2

struct db;

/*
 * Open (creating if missing) the database at path, set WAL and
 * synchronous, create or migrate the schema to DB_SCHEMA_VERSION (recorded
 * in a schema_version table), prepare every statement, and check the file
 * is usable (PRAGMA quick_check on open). Messages left without any
 * delivery (see db_msg_add) are deleted. On failure returns NULL and
 * writes a clear reason naming the path into err (e.g. "data/rainbow.db:
 * file is not a database", "...: unable to open database file (Permission
 * denied)", "...: schema version 7 is newer than this build (1)"); a file
 * that SQLite could open only read-only, and an SQLite database that has
 * tables but no schema_version (not ours), are refused too. err may be
 * NULL. The directory is not created.
 */
struct db *db_open(const char *path, enum db_durability durability, char *err,
		   size_t errlen);
void db_close(struct db *db);

int db_begin(struct db *db);
int db_commit(struct db *db);
int db_rollback(struct db *db);
bool db_in_batch(const struct db *db);

/* ---- sessions ---- */

struct db_session {
	int64_t expires_at;  /* unix seconds; 0 while a connection holds it */
	uint16_t next_msgid; /* last msgid handed out (0 = none yet) */
};

/* RB_ENOTFOUND if absent. out may be NULL (an existence test). */
int db_session_get(struct db *db, const char *device, struct db_session *out);
/* Insert or update. */
int db_session_put(struct db *db, const char *device, const struct db_session *s);
/* Delete a session and everything it owns (subscriptions, deliveries and
 * their orphaned messages, upstream rows). RB_OK also if absent. */
int db_session_delete(struct db *db, const char *device);
/* Delete every session with 0 < expires_at <= now, as above, in one
 * transaction. *n = sessions deleted (n may be NULL). */
int db_sessions_expire(struct db *db, int64_t now, size_t *n);
/* Every session with expires_at == 0 gets expires_at = at (used at start:
 * after a crash no connection holds any session). at must be > 0
 * (RB_EINVAL). */
int db_sessions_release_all(struct db *db, int64_t at);

/* Every live session (held, or offline and not expired at now), by device:
 * what a cluster node announces it holds. */
int db_sessions_list(struct db *db, int64_t now, void (*cb)(const char *device, void *arg),
		     void *arg);

/* ---- subscriptions ---- */

int db_sub_add(struct db *db, const char *device, const char *channel);  /* idempotent */
int db_sub_del(struct db *db, const char *device, const char *channel);  /* idempotent */
/* Every device but keep_device (NULL: none kept) leaves channel (occupy). */
int db_sub_evict(struct db *db, const char *channel, const char *keep_device);
typedef void (*db_str_cb)(const char *s, void *arg);
/* A device's channels, sorted. */
int db_subs_of(struct db *db, const char *device, db_str_cb cb, void *arg);
/* Devices subscribed to channel whose session is offline (expires_at > 0),
 * sorted. A subscription with no session row is not listed. */
int db_offline_members(struct db *db, const char *channel, db_str_cb cb, void *arg);
/* Channels that offline sessions not expired at now are subscribed to,
 * sorted (a cluster node announces them: pushes must reach those
 * sessions). */
int db_offline_channels(struct db *db, int64_t now, db_str_cb cb, void *arg);

/* ---- pushed messages and their deliveries ---- */

/* Store a message (the payload is copied; len 0 is fine); *id receives its
 * row id. qos > 2: RB_EINVAL. Add its deliveries in the same batch: a
 * message that no delivery ever referenced is deleted at the next db_open
 * (after a crash between the two), and ids of deleted messages may be
 * handed out again. */
int db_msg_add(struct db *db, uint16_t msgtype, uint8_t qos, const void *payload,
	       size_t len, int64_t *id);
/* A delivery of message msg_id to device under msgid, state (1 WAIT_ACK,
 * 2 WAIT_REC, 3 WAIT_COM, as enum down_state), not yet sent.
 * RB_EEXIST if (device, msgid) is taken, RB_ENOTFOUND if msg_id names no
 * stored message, RB_EINVAL if state is out of range. */
int db_dlv_add(struct db *db, const char *device, uint16_t msgid, int64_t msg_id,
	       int state);
/* Both: RB_ENOTFOUND if (device, msgid) is absent. */
int db_dlv_set_state(struct db *db, const char *device, uint16_t msgid, int state);
int db_dlv_set_sent(struct db *db, const char *device, uint16_t msgid);
/* Delete a delivery, and its message if no other delivery uses it.
 * RB_OK also if absent. */
int db_dlv_del(struct db *db, const char *device, uint16_t msgid);

struct db_dlv {
	uint16_t msgid;
	int state;
	bool sent;
	uint16_t msgtype;
	uint8_t qos;
	const void *payload; /* valid during the callback */
	size_t len;
};
typedef void (*db_dlv_cb)(const struct db_dlv *d, void *arg);
/* A device's deliveries in the order they were added. */
int db_dlv_list(struct db *db, const char *device, db_dlv_cb cb, void *arg);
/* Count and payload bytes of a device's deliveries (for the per-session
 * caps); a message delivered twice to the device counts twice. Either
 * pointer may be NULL. O(1) for a device with a session row (counters kept
 * in it); a device without one is counted by a scan of its deliveries. */
int db_dlv_usage(struct db *db, const char *device, size_t *count, size_t *bytes);
/* Delete a device's oldest delivery (and its orphaned message). RB_ENOTFOUND
 * if none. *msgid receives the id deleted. */
int db_dlv_drop_oldest(struct db *db, const char *device, uint16_t *msgid);

/* ---- upstream QoS 2 (client -> backend) ---- */

/* state as enum up_state: 1 FORWARDING, 2 REPLIED. RB_ENOTFOUND if absent
 * (outputs untouched). For REPLIED, *reply and *len give a copy of the
 * stored reply (non-NULL even when empty), valid until the next db call;
 * for FORWARDING they are NULL and 0. Any output pointer may be NULL. */
int db_up_get(struct db *db, const char *device, uint16_t msgid, int *state,
	      const void **reply, size_t *len);
int db_up_begin(struct db *db, const char *device, uint16_t msgid);  /* RB_EEXIST */
/* -> REPLIED, copying the reply (replacing one already stored). */
int db_up_reply(struct db *db, const char *device, uint16_t msgid, const void *reply,
		size_t len);                                          /* RB_ENOTFOUND */
int db_up_del(struct db *db, const char *device, uint16_t msgid);    /* idempotent */
struct db_up {
	uint16_t msgid;
	int state;
	const void *reply;   /* REPLIED: valid during the callback; else "" */
	size_t len;
};
typedef void (*db_up_cb)(const struct db_up *u, void *arg);
/* A device's upstream rows, by msgid (a session moving to another node). */
int db_up_list(struct db *db, const char *device, db_up_cb cb, void *arg);

/* Row counts for tests and /metrics: sessions, subscriptions, messages,
 * deliveries, upstream. */
struct db_counts {
	size_t sessions, subscriptions, messages, deliveries, upstream;
};
int db_counts(struct db *db, struct db_counts *out);

#endif
