/*
 * hooks.h - the calls the gateway makes to the application backend on a
 * connection's behalf besides forwards: the connect hook (A.1) and the
 * close hook (A.7); plus what every backend answer may carry (A.5) and the
 * signed query every backend URL gets (A.6). Core thread only.
 */
#ifndef RB_HOOKS_H
#define RB_HOOKS_H

#include <stdbool.h>

struct core;
struct conn;
struct conf;
struct kvlist;
struct backend_response;

/* url + "?timestamp=..&nonce=..&signature=.." ('&' if url has a query).
 * malloc'd, NULL on failure. */
char *hooks_signed_url(const struct conf *conf, const char *url);

/*
 * Run the connect hook for cn with the client's upgrade headers and query
 * arguments (either may be NULL). Ends in core_admit() or core_refuse();
 * without a connect_url, admits at once.
 */
void hooks_connect(struct core *c, struct conn *cn, const struct kvlist *headers,
		   const struct kvlist *args);

/* Fire the close hook for cn (fire and forget; counted). */
void hooks_close(struct core *c, struct conn *cn);

/*
 * Apply RAINBOWCLIENTCOOKIE, RAINBOWCLIENTCHANNEL and
 * RAINBOWCLIENTCHANNELUNSUB from a backend response to cn.
 */
void hooks_apply_response(struct core *c, struct conn *cn,
			  const struct backend_response *resp);

#endif
