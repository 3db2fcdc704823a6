#include "src/msg/membership.h"

#include <stdlib.h>
#include <string.h>

#include "protocol/rb.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/session.h"

bool conn_join(struct core *c, struct conn *cn, const char *channel)
{
	if (channels_sub(c->channels, channel, cn->id) != RB_OK)
		return false;
	if (kv_add(&cn->chans, channel, strlen(channel), "", 0) != RB_OK) {
		channels_unsub(c->channels, channel, cn->id);
		return false;
	}
	return true;
}

bool conn_sub(struct core *c, struct conn *cn, const char *channel)
{
	/* Persist even if already a member: the session may lack it. */
	session_sub(c, cn, channel, true);
	return conn_join(c, cn, channel);
}

bool conn_unsub(struct core *c, struct conn *cn, const char *channel)
{
	session_sub(c, cn, channel, false);
	return conn_leave(c, cn, channel);
}

bool conn_leave(struct core *c, struct conn *cn, const char *channel)
{
	if (channels_unsub(c->channels, channel, cn->id) != RB_OK)
		return false;
	for (size_t i = 0; i < cn->chans.n; i++) {
		if (strcmp(cn->chans.v[i].name, channel) == 0) {
			free(cn->chans.v[i].name);
			free(cn->chans.v[i].value);
			cn->chans.v[i] = cn->chans.v[--cn->chans.n];
			break;
		}
	}
	return true;
}
