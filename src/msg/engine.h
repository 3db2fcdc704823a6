/*
 * engine.h - the engine seam: every operation that crosses nodes, behind
 * one interface, so that the gateway's messaging code does not know whether
 * it runs alone, in the LAN cluster (cluster/), or later on an existing
 * message system (NATS, Redis). Modelled on Centrifugo's split of its Node
 * from a Broker (publish to a channel's subscribers elsewhere, channel
 * interest) and a PresenceManager, plus what Rainbow needs beyond them:
 * connections and devices that live on one node (identities carry their
 * node), summed receipts, cluster-wide occupy/kick/presence.
 *
 * Node ids are non-zero 32-bit numbers, random per start (struct core's
 * node_id, which also tags every identity made on the node: see
 * identity_node() in src/core/core.h); 0 means "this node" or "nowhere".
 * The local engine (engine_local_new) is the single-node implementation:
 * there are no other nodes, so every lookup answers 0 and nothing is sent.
 *
 * Core thread only. Completion callbacks run on the core thread, never
 * from inside the call that started them.
 */
#ifndef RB_ENGINE_H
#define RB_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct engine;
struct push_leg;

/* A push as it travels to another node: its target there, the packet
 * fields and the payload. */
struct engine_push {
	const char *channel, *identity, *device; /* exactly one set */
	uint8_t qos;
	uint16_t msgtype;
	const void *payload;
	size_t len;
	double timeout;
};

/* An operation on a connection or channel held by another node. */
enum engine_op_kind { ENGINE_SUB, ENGINE_UNSUB, ENGINE_KICK, ENGINE_OCCUPY };
struct engine_op {
	enum engine_op_kind kind;
	const char *identity;  /* SUB, UNSUB, KICK; OCCUPY: the one that stays */
	const char *channel;   /* SUB, UNSUB, OCCUPY */
	int code;              /* KICK */
	const char *reason;    /* KICK */
};
/* rc: RB_OK, RB_ENOTFOUND (no such connection there), RB_ETIMEDOUT, RB_EIO. */
typedef void (*engine_done_fn)(int rc, void *arg);

struct engine_node {
	uint32_t id;
	char addr[64];         /* host:port of its REST API */
	bool up;               /* reachable now (a link is up) */
	uint64_t incarnation;  /* greater for each start; 0 if unknown */
	int64_t age_ms;        /* since last heard from (0 for this node, -1
	                        * never) */
	/* Other nodes, where the engine has links: */
	const char *state;     /* static: "self", "up", "connecting", "down" */
	bool discovered;       /* announced by discovery (not only linked) */
	uint64_t frames_in, frames_out, bytes_in, bytes_out;
	uint64_t links_up, links_lost;
	size_t output_bytes;   /* queued on the link, unsent */
};

struct engine_ops {
	const char *name;      /* "local", "lan", ... */
	/* This node's id (non-zero), for identity tags and receipts. */
	uint32_t (*self)(struct engine *e);
	/* This node got its first member of channel (on) or lost its last. */
	void (*interest)(struct engine *e, const char *channel, bool on);
	/* Other nodes with members of channel: up to cap ids into out; the
	 * total. */
	size_t (*channel_nodes)(struct engine *e, const char *channel, uint32_t *out, size_t cap);
	/* The node holding this identity / the session of this device, when
	 * it is another node; else 0. */
	uint32_t (*locate_identity)(struct engine *e, const char *identity);
	uint32_t (*locate_device)(struct engine *e, const char *device);
	/* Deliver m on node: its receipt arrives as push_leg_counts(leg, ...)
	 * (or the leg is left to the push's timeout). RB_OK or an error (the
	 * caller then counts the leg as failed). */
	int (*publish)(struct engine *e, uint32_t node, const struct engine_push *m,
		       struct push_leg *leg);
	/* Run op on node (0: on every other node, e.g. OCCUPY); done (may be
	 * NULL: fire and forget) once. */
	int (*remote)(struct engine *e, uint32_t node, const struct engine_op *op,
		      engine_done_fn done, void *arg);
	/* The members of channel on every other node: fn once per member,
	 * then fn(arg, NULL, NULL, NULL) when all nodes answered or timed out.
	 * RB_OK, or an error (no other node: fn is never called). */
	int (*presence)(struct engine *e, const char *channel,
			void (*fn)(void *arg, const char *identity, const char *device,
				   const char *platform),
			void *arg);
	/* This node now holds the session of device (on), or no longer does
	 * (it moved away): for locate_device on the other nodes. */
	void (*device)(struct engine *e, const char *device, bool on);
	/* Move device's session from node (locate_device's answer) to this
	 * one: done(RB_OK) once it is committed here (and the old node may
	 * delete its copy), or done(error): the session stays where it was
	 * and the caller goes on without it. RB_OK, or an error (done is
	 * never called then). */
	int (*take_session)(struct engine *e, uint32_t node, const char *device,
			    engine_done_fn done, void *arg);
	/* Every other node's information (its /serverinfo/?cluster=1 JSON
	 * object, rest_node_info): fn once per node that answers, then
	 * fn(arg, 0, NULL, 0) once all answered or timed out. RB_OK, or an
	 * error (no other node: fn is never called). */
	int (*gather)(struct engine *e,
		      void (*fn)(void *arg, uint32_t node, const char *json, size_t len),
		      void *arg);
	/* Nodes known (this one first): up to cap into out; the total. */
	size_t (*nodes)(struct engine *e, struct engine_node *out, size_t cap);
	void (*free)(struct engine *e);
};

struct engine {
	const struct engine_ops *ops;
};

/* The single-node engine; self_id is this node's id (core.node_id). */
struct engine *engine_local_new(uint32_t self_id);
/* Its operations, for an engine that answers some of them as a single node
 * does (copy, then override). Their engine argument is only used by self,
 * nodes and free. */
const struct engine_ops *engine_local_ops(void);

#endif
