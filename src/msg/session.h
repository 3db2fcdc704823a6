/*
 * session.h - device sessions (docs/protocol.md Sessions; docs/sessions.md). Core
 * thread only.
 *
 * A session belongs to a device id and lives in SQLite: its subscriptions
 * and its undelivered QoS 1/2 messages. A connection holds it when the
 * client sent a device id and asked for it (session=1, or rainbow.v2). A
 * second connection of the same device takes the session over (the first
 * is closed with 4409). When the holder leaves, the session is kept for
 * session_expiry seconds; pushes to it meanwhile (by device, or to its
 * channels at QoS 1/2) wait in SQLite and are delivered on resume.
 */
#ifndef RB_SESSION_H
#define RB_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct core;
struct conn;

/* Open the database (conf database / data_dir), release sessions a crash
 * left held, start the expiry timer. RB_OK, or an error with a clear
 * message in err (the gateway does not start). */
int session_init(struct core *c, char *err, size_t errlen);
void session_fini(struct core *c);

/* Should cn hold a session? */
bool session_wanted(const struct conn *cn);

/* cn takes its device's session: restores its subscriptions and its
 * message id counter. Returns whether the session existed (HELLO's
 * session_present). Call deliver_resume() after the HELLO. */
bool session_attach(struct core *c, struct conn *cn);

/*
 * Admit cn (its connect hook done): when cn wants a session that another
 * cluster node holds and this one does not, the session moves here first
 * (engine take_session: committed here before the old node deletes it),
 * then core_admit. If the move fails cn starts without the old session
 * (logged). If cn goes away meanwhile the moved session stays here,
 * offline.
 */
void session_admit(struct core *c, struct conn *cn);

/* Another node takes device's session: a connection holding it here is
 * closed (4409, "session moved to another node") after its state is
 * saved, so the database holds the whole session. */
void session_evict(struct core *c, const char *device);

/* cn (a holder) is going away: the session is kept until expiry. */
void session_detach(struct core *c, struct conn *cn);

/* Persist cn's subscription change, if cn holds a session. */
void session_sub(struct core *c, struct conn *cn, const char *channel, bool sub);

/* The connection holding device's session, or NULL. */
struct conn *session_holder(struct core *c, const char *device);
/* Does an offline (not held) session exist for device? */
bool session_offline(struct core *c, const char *device);

/* Allocate the next free message id of an offline device's session and
 * store it. RB_OK or an error. */
int session_next_msgid(struct core *c, const char *device, uint16_t *msgid);

#endif
