/*
 * commit.h - group commit: the durability promise of the gateway.
 *
 * No acknowledgement ever precedes the state it depends on. Writes to the
 * durable store (device sessions, their subscriptions and deliveries, stored
 * QoS 2 replies) happen inside a batch: commit_batch() opens a transaction
 * (if none is open) and schedules its COMMIT at the lowest event priority,
 * so it runs once the current loop pass has nothing else to do and every
 * write of that pass shares one fsync (or after COMMIT_MAX_OPS writes, so a
 * loop that never goes idle still commits regularly).
 *
 * While a batch is open, everything that leaves the core is *held*, in
 * order, and released right after the COMMIT returns:
 *   - messages to the edge thread (packets, closes, adoptions, flow);
 *   - HTTP answers (REST);
 *   - calls (commit_hold_call): a function run once the batch is done,
 *     for outputs of other kinds (e.g. messages to cluster peers).
 * When no batch is open they leave at once.
 *
 * If the COMMIT fails the transaction is rolled back and what depended on
 * it is not sent: packets to clients (ACK, REC, COM, pushes, HELLO) are
 * dropped (clients retransmit), HTTP answers become 503 "storage error",
 * and calls run with committed = false. Control messages to the edge
 * (adopt a socket, close, flow, stop) do not acknowledge anything and pass
 * through, so no socket or connection is ever stranded by a failed COMMIT.
 *
 * Test fault injection: with RAINBOW_CRASH_AT=push_committed|ack_committed|
 * rec_committed in the environment the process kills itself (SIGKILL) right
 * after the COMMIT of a batch marked with that event (commit_mark) and
 * before anything held leaves. Read once at start.
 *
 * Core thread only.
 */
#ifndef RB_COMMIT_H
#define RB_COMMIT_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct qos_store;
struct xq;
struct xq_msg;
struct httpd_req;
struct commit;
struct xq_msg;

#define COMMIT_MAX_OPS 4096

/* What a batch contains, for the crash tests. */
enum { BATCH_PUSH = 1, BATCH_ACK = 2, BATCH_REC = 4 };

/* store: the durable store whose begin/commit/rollback the batch drives
 * (may be set later with commit_set_store; NULL means nothing is durable and
 * commit_batch does nothing). to_edge(arg, m): where edge messages go,
 * taking m (may be set later with commit_set_edge; the core's routes them
 * to the edge threads, src/edge/pool.h). NULL on failure. The base must
 * have 3 priorities (the commit runs at 2). */
typedef void (*commit_edge_fn)(void *arg, struct xq_msg *m);
struct commit *commit_new(struct event_base *base, commit_edge_fn to_edge, void *arg);
void commit_set_store(struct commit *cm, struct qos_store *store);
void commit_set_edge(struct commit *cm, commit_edge_fn to_edge, void *arg);
/* Commits an open batch (and releases what it holds); NULL-tolerant. */
void commit_free(struct commit *cm);

/* Open the batch if it is not open (before any durable write). */
void commit_batch(struct commit *cm);
bool commit_is_open(const struct commit *cm);
/* Commit now (no-op when no batch is open). */
void commit_now(struct commit *cm);
void commit_mark(struct commit *cm, unsigned mark);

/* Held outputs. Each takes ownership of what it is given. */
void commit_push_edge(struct commit *cm, struct xq_msg *m);
/* Copies ctype and body. */
void commit_reply(struct commit *cm, struct httpd_req *req, int status, const char *ctype,
		  const char *body, size_t len);
/* fn(arg, committed) runs after the batch: at once (committed = true) when
 * none is open. */
void commit_hold_call(struct commit *cm, void (*fn)(void *arg, bool committed), void *arg);

/* Outputs held right now (a gauge for /metrics). */
size_t commit_held(const struct commit *cm);

#endif
