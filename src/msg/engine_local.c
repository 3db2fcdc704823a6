/* The single-node engine: no other node exists (engine.h). */
#include <stdio.h>
#include <stdlib.h>

#include "protocol/rb.h"
#include "src/msg/engine.h"

struct local {
	struct engine e;
	uint32_t self;
};

static uint32_t self(struct engine *e)
{
	return ((struct local *)e)->self;
}

static void interest(struct engine *e, const char *channel, bool on)
{
}

static size_t channel_nodes(struct engine *e, const char *channel, uint32_t *out, size_t cap)
{
	return 0;
}

static uint32_t locate(struct engine *e, const char *name)
{
	return 0;
}

static int publish(struct engine *e, uint32_t node, const struct engine_push *m,
		   struct push_leg *leg)
{
	return RB_ENOTFOUND;
}

static int remote(struct engine *e, uint32_t node, const struct engine_op *op,
		  engine_done_fn done, void *arg)
{
	return RB_ENOTFOUND;
}

static int presence(struct engine *e, const char *channel,
		    void (*fn)(void *arg, const char *identity, const char *device,
			       const char *platform),
		    void *arg)
{
	return RB_ENOTFOUND;
}

static void device(struct engine *e, const char *dev, bool on)
{
}

static int take_session(struct engine *e, uint32_t node, const char *dev, engine_done_fn done,
			void *arg)
{
	return RB_ENOTFOUND;
}

static int gather(struct engine *e,
		  void (*fn)(void *arg, uint32_t node, const char *json, size_t len), void *arg)
{
	return RB_ENOTFOUND;
}

static size_t nodes(struct engine *e, struct engine_node *out, size_t cap)
{
	if (cap)
		out[0] = (struct engine_node){ .id = self(e), .addr = "", .up = true, .state = "self" };
	return 1;
}

static void engine_free(struct engine *e)
{
	free(e);
}

static const struct engine_ops local_ops = {
	.name = "local",
	.self = self,
	.interest = interest,
	.channel_nodes = channel_nodes,
	.locate_identity = locate,
	.locate_device = locate,
	.publish = publish,
	.remote = remote,
	.presence = presence,
	.device = device,
	.take_session = take_session,
	.gather = gather,
	.nodes = nodes,
	.free = engine_free,
};

const struct engine_ops *engine_local_ops(void)
{
	return &local_ops;
}

struct engine *engine_local_new(uint32_t self_id)
{
	struct local *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->e.ops = &local_ops;
	l->self = self_id;
	return &l->e;
}
