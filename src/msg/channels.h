/*
 * channels.h - the channel registry: channel name -> member connection ids.
 * A channel exists while it has members (docs/protocol.md Pushing). Each connection
 * also lists its own channels (struct conn.chans) so leaving all of them on
 * close needs no scan. Core thread only.
 */
#ifndef RB_CHANNELS_H
#define RB_CHANNELS_H

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

/* Members of a channel (id -> unused), or NULL if it does not exist. */
const struct idmap *channels_members(const struct channels *ch, const char *name);
size_t channels_count(const struct channels *ch);

typedef void (*channels_fn)(const char *name, size_t members, void *arg);
void channels_foreach(const struct channels *ch, channels_fn fn, void *arg);

#endif
