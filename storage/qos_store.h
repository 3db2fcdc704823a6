/*
 * qos_store.h - where per-message QoS state lives. Two implementations:
 * qos_mem.c for connections without a session (lost with the process) and
 * qos_sqlite.c for device sessions (in the database, durable; see
 * docs/sessions.md). Forwarding and delivery use only this interface; the
 * session and REST code also use storage/db.h directly, for what is not
 * per-message state (sessions, subscriptions, the offline backlog).
 * Knows nothing of sockets or WebSockets. Core thread only.
 *
 * Upstream QoS 2 (docs/protocol.md Forwarding, Idempotency): a (key, msgid) pair, where key is
 * the session (or, without one, the connection identity), moves
 *   absent -> FORWARDING (first SEND, backend call under way)
 *          -> REPLIED    (backend answered; reply kept, REC sent)
 *          -> absent     (REL received, or the forward failed)
 * so a duplicate SEND is answered from the store, never forwarded again.
 */
#ifndef RB_QOS_STORE_H
#define RB_QOS_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum up_state { UP_ABSENT = 0, UP_FORWARDING = 1, UP_REPLIED = 2 };

/*
 * Downstream QoS 1/2 (a push to a client), per (key, msgid):
 *   absent -> WAIT_ACK (QoS 1) or WAIT_REC (QoS 2)   SEND sent
 *   WAIT_REC -> WAIT_COM                              REC received, REL sent
 *   -> absent                                         ACK / COM, or given up
 */
enum down_state { DOWN_ABSENT = 0, DOWN_WAIT_ACK = 1, DOWN_WAIT_REC = 2, DOWN_WAIT_COM = 3 };

struct qos_store;

struct qos_store_ops {
	/* State of (key, msgid). For UP_REPLIED, *reply and *len give the
	 * stored reply, valid until the next call on the store. */
	int (*up_get)(struct qos_store *s, const char *key, uint16_t msgid,
		      enum up_state *st, const uint8_t **reply, size_t *len);
	/* absent -> FORWARDING. RB_EEXIST if present. */
	int (*up_begin)(struct qos_store *s, const char *key, uint16_t msgid);
	/* FORWARDING -> REPLIED, copying the reply. RB_ENOTFOUND if absent. */
	int (*up_reply)(struct qos_store *s, const char *key, uint16_t msgid,
			const uint8_t *reply, size_t len);
	/* -> absent. RB_OK also when it was absent (REL is idempotent). */
	int (*up_release)(struct qos_store *s, const char *key, uint16_t msgid);
	/* Keep a pushed message once for all its deliveries; *msg_id names it
	 * in down_begin. The in-memory store keeps nothing (the core holds the
	 * payload) and sets *msg_id = 0. */
	int (*msg_add)(struct qos_store *s, uint8_t qos, uint16_t msgtype,
		       const uint8_t *payload, size_t len, int64_t *msg_id);
	/* absent -> WAIT_ACK / WAIT_REC for message msg_id. RB_EEXIST if present. */
	int (*down_begin)(struct qos_store *s, const char *key, uint16_t msgid, int64_t msg_id,
			  uint8_t qos);
	/* The delivery went out at least once (a redelivery carries DUP=1). */
	int (*down_sent)(struct qos_store *s, const char *key, uint16_t msgid);
	/* Move to st. RB_ENOTFOUND if absent. */
	int (*down_set)(struct qos_store *s, const char *key, uint16_t msgid,
			enum down_state st);
	/* -> absent. RB_OK also when absent. */
	int (*down_end)(struct qos_store *s, const char *key, uint16_t msgid);
	enum down_state (*down_get)(struct qos_store *s, const char *key, uint16_t msgid);
	/* Undelivered messages of key, oldest first (for redelivery). */
	int (*down_list)(struct qos_store *s, const char *key,
			 void (*cb)(void *arg, uint16_t msgid, enum down_state st, bool sent,
				    uint8_t qos, uint16_t msgtype, const uint8_t *payload,
				    size_t len),
			 void *arg);
	/* Count and bytes of key's undelivered messages; drop its oldest. */
	int (*down_usage)(struct qos_store *s, const char *key, size_t *count, size_t *bytes);
	int (*down_drop_oldest)(struct qos_store *s, const char *key, uint16_t *msgid);
	/* Group commit: writes between begin and commit form one transaction.
	 * The in-memory store has nothing to commit (both are no-ops). */
	int (*begin)(struct qos_store *s);
	int (*commit)(struct qos_store *s);
	int (*rollback)(struct qos_store *s);
	/* Forget every entry of key, both directions (its connection
	 * ended). The SQLite store ignores it: a session's rows outlive its
	 * connections and go with db_session_delete (expiry). */
	void (*drop_key)(struct qos_store *s, const char *key);
	/* Number of (key, msgid) entries held. */
	size_t (*count)(struct qos_store *s);
	void (*free)(struct qos_store *s);
};

struct qos_store {
	const struct qos_store_ops *ops;
};

/* The in-memory store: state is lost with the process; used for
 * connections without a session. NULL on ENOMEM. */
struct qos_store *qos_mem_new(void);

struct db;
/* The durable store over an open database (sessions); does not own db. */
struct qos_store *qos_sqlite_new(struct db *db);

#endif
