#include "src/msg/app.h"

#include <stdio.h>
#include <stdlib.h>

#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/log.h"
#include "src/core/core.h"
#include "src/msg/channels.h"
#include "src/msg/deliver.h"
#include "src/msg/engine.h"
#include "src/msg/forward.h"
#include "src/msg/guard.h"
#include "src/msg/hooks.h"
#include "src/msg/membership.h"
#include "src/msg/nonce.h"
#include "src/msg/push.h"
#include "src/msg/rest.h"
#include "src/msg/session.h"
#include "storage/db.h"
#include "storage/qos_store.h"

static void count_one(const char *device, void *arg)
{
	(void)device;
	(*(size_t *)arg)++;
}

/* Other nodes send this node a channel's pushes while it has members:
 * connected ones, or offline sessions subscribed to it (their QoS 1/2
 * pushes wait here). */
static void on_interest(void *arg, const char *channel, bool nonempty)
{
	struct core *c = arg;
	size_t offline = 0;
	if (!nonempty && c->db)
		db_offline_members(c->db, channel, count_one, &offline);
	if (nonempty || !offline)
		c->engine->ops->interest(c->engine, channel, nonempty);
}

static int init(struct core *c, char *err, size_t errlen)
{
	const struct conf *conf = c->conf;

	c->channels = channels_new();
	c->store = qos_mem_new();
	c->nonces = nonce_cache_new(2 * conf->signature_window);
	/* By default one route may use three quarters of the pool: a single
	 * busy route keeps most of the throughput, and a hanging one leaves the
	 * rest to the others. */
	int pool = conf->backend_max_connections, reserve = pool / 4 ? pool / 4 : 1;
	struct guard_opts go = {
		.max_inflight = conf->route_max_inflight ? conf->route_max_inflight
			: (pool > reserve ? pool - reserve : 1),
		.max_queued = conf->route_max_queued ? conf->route_max_queued
			: conf->backend_max_queue,
		.breaker_failures = conf->breaker_failures,
		.cooldown = conf->breaker_cooldown,
	};
	c->guard = guard_new(&go);
	c->engine = engine_local_new(c->node_id);
	c->pushes = calloc(1, sizeof(*c->pushes));
	if (!c->pushes || !c->channels || !c->store || !c->nonces || !c->guard || !c->engine) {
		snprintf(err, errlen, "out of memory");
		return RB_ENOMEM;
	}
	channels_watch(c->channels, on_interest, c);
	return session_init(c, err, errlen);
}

static void stop(struct core *c)
{
	deliver_shutdown(c);
}

static void fini(struct core *c)
{
	session_fini(c);
	nonce_cache_free(c->nonces);
	guard_free(c->guard);
	if (c->store)
		c->store->ops->free(c->store);
	channels_free(c->channels);
	if (c->engine)
		c->engine->ops->free(c->engine);
	c->engine = NULL;
	free(c->pushes); /* empty: deliver_shutdown completed them */
	c->pushes = NULL;
	c->nonces = NULL;
	c->guard = NULL;
	c->store = NULL;
	c->channels = NULL;
}

static bool take_session(struct core *c, struct conn *cn)
{
	return session_wanted(cn) && session_attach(c, cn);
}

static void opened(struct core *c, struct conn *cn)
{
	if (cn->session)
		deliver_resume(c, cn);
}

static void gone(struct core *c, struct conn *cn)
{
	session_detach(c, cn);
	while (cn->chans.n)
		conn_leave(c, cn, cn->chans.v[cn->chans.n - 1].name);
	deliver_conn_gone(c, cn);
	fwd_conn_gone(c, cn);
}

static const struct core_app app = {
	.init = init,
	.stop = stop,
	.fini = fini,
	.http = rest_handle,
	.connect = hooks_connect,
	.take_session = take_session,
	.opened = opened,
	.message = fwd_on_message,
	.closed = hooks_close,
	.gone = gone,
};

const struct core_app *msg_app(void)
{
	return &app;
}
