/*
 * channels.h - the channel registry: channel name -> member connection ids.
 * A channel exists while it has members (docs/protocol.md Pushing). Each connection
 * also lists its own channels (struct conn.chans) so leaving all of them on
 * close needs no scan. Core thread only.
 */
#ifndef RB_CHANNELS_H
#define RB_CHANNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct idmap;
struct channels;

struct channels *channels_new(void);
void channels_free(struct channels *ch);

/* RB_OK, RB_EEXIST (already a member) or RB_ENOMEM. */
int channels_sub(struct channels *ch, const char *name, uint64_t conn_id);
/* RB_OK or RB_ENOTFOUND (not a member). Drops the channel when empty. */
int channels_unsub(struct channels *ch, const char *name, uint64_t conn_id);

/* Members of a channel (id -> unused), or NULL if it does not exist. The
 * map is the registry's own and disappears with the channel's last member:
 * copy the ids before anything that may unsubscribe while iterating. */
const struct idmap *channels_members(const struct channels *ch, const char *name);
size_t channels_count(const struct channels *ch);

/* Interest: fn(arg, name, true) when a channel gets its first member here,
 * fn(arg, name, false) after its last member left (the cluster advertises
 * which channels a node has members for from this). One watcher; NULL
 * removes it. Called from inside channels_sub/unsub, after the change. */
typedef void (*channels_watch_fn)(void *arg, const char *name, bool nonempty);
void channels_watch(struct channels *ch, channels_watch_fn fn, void *arg);

typedef void (*channels_fn)(const char *name, size_t members, void *arg);
void channels_foreach(const struct channels *ch, channels_fn fn, void *arg);

#endif
