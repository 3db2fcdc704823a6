/*
 * membership.h - a connection's channels: the channel registry
 * (channels.h) and the connection's own list (struct conn.chans) kept in
 * step, and its device session's subscriptions (session.h) persisted.
 * Core thread only.
 */
#ifndef RB_MEMBERSHIP_H
#define RB_MEMBERSHIP_H

#include <stdbool.h>

struct core;
struct conn;

/* Subscribe / unsubscribe cn to a channel, keeping both indexes in step
 * and its session (if any) up to date. Return true when membership
 * changed. */
bool conn_sub(struct core *c, struct conn *cn, const char *channel);
bool conn_unsub(struct core *c, struct conn *cn, const char *channel);
/* Join / leave in memory only (restoring a session; closing). */
bool conn_join(struct core *c, struct conn *cn, const char *channel);
bool conn_leave(struct core *c, struct conn *cn, const char *channel);

#endif
