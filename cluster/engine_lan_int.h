/*
 * engine_lan_int.h - private to cluster/: the LAN engine's state (struct
 * lan) and the calls between the files that make it up:
 *
 *   engine_lan.c  the engine (src/msg/engine.h) over discovery and the
 *                 mesh: the mesh's callbacks and their dispatch, pushes to
 *                 other nodes and their receipts (PUBLISH, RECEIPT),
 *                 remote operations (OP, OP_RESULT), presence, node
 *                 information, node membership
 *   dir.c         the channel and device directories: what other nodes
 *                 announced (INTEREST_*, DEVICES_FULL, DEVICE_DELTA), and
 *                 what this node announces to them
 *   handoff.c     sessions that move between nodes (SESSION_TAKE,
 *                 SESSION_STATE, SESSION_DONE)
 *
 * Engine operations implemented outside engine_lan.c are named lan_<op>;
 * engine_lan.c installs them in its engine_ops.
 *
 * Core thread only.
 */
#ifndef RB_ENGINE_LAN_INT_H
#define RB_ENGINE_LAN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cluster/peers.h"
#include "protocol/link.h"
#include "src/base/idmap.h"
#include "src/msg/engine.h"

/* Other nodes a call reaches at most (discovery tracks as many). */
#define MAX_NODES PEERS_MAX

/* Names per INTEREST_FULL / members per PRESENCE_RESP frame. */
#define PART_ITEMS 2048

struct core;
struct discovery;
struct mesh;
struct strmap;
struct give;

/* What other nodes announced: names (channels with members there, or
 * devices whose session they hold) -> nodes, and per node its names (to
 * forget them when it goes). dir.c's. */
struct dir {
	struct strmap *where;        /* name -> nodes (dir.c's struct where) */
	struct idmap of;             /* node -> struct strmap (its names) */
};

/* The engine. Fields under a file's name belong to that file; the first
 * four are set by engine_lan_new, and every request id (push, call, take)
 * comes from next_id. */
struct lan {
	struct engine e;             /* first: the engine is the lan */
	struct core *core;
	struct discovery *disc;
	struct mesh *mesh;
	/* dir.c */
	struct dir channels, devices;
	/* handoff.c */
	struct idmap takes;          /* request id -> struct take (sessions coming) */
	struct give *gives;          /* sessions going to other nodes */
	/* engine_lan.c */
	struct idmap pubs;           /* push id -> struct rpub */
	struct idmap calls;          /* op / presence request id -> struct call */
	uint64_t next_id;            /* push, call and take ids */
	double call_timeout;
};

static inline struct lan *lan_of(struct engine *e)
{
	return (struct lan *)e;
}

/* engine_lan.c */

/* A NUL-terminated malloc'd copy of s, or NULL. */
char *lan_dupn(struct link_str s);
/* Send m to node once the open batch (if any) has committed: RECEIPT,
 * OP_RESULT and SESSION_STATE count only what is durable. */
void lan_send_after_commit(struct lan *l, uint32_t node, const struct link_msg *m);
/* The engine's publish: a PUBLISH to node; leg NULL for no receipt. */
int lan_publish(struct engine *e, uint32_t node, const struct engine_push *p,
		struct push_leg *leg);

/* dir.c */

/* Both directories, empty: RB_OK or RB_ENOMEM. dirs_free also after a
 * failed dirs_init (l zeroed before). */
int dirs_init(struct lan *l);
void dirs_free(struct lan *l);
/* A link to node came up: forget what it announced (fresh FULLs follow)
 * and send it this node's channels and devices. */
void dirs_link_up(struct lan *l, uint32_t node);
/* The link to node went: forget what it announced. */
void dirs_link_down(struct lan *l, uint32_t node);
/* INTEREST_FULL, INTEREST_DELTA, DEVICES_FULL, DEVICE_DELTA from node. */
void dirs_on_msg(struct lan *l, uint32_t node, const struct link_msg *m);
/* Engine operations. */
void lan_interest(struct engine *e, const char *channel, bool on);
void lan_device(struct engine *e, const char *dev, bool on);
size_t lan_channel_nodes(struct engine *e, const char *channel, uint32_t *out, size_t cap);
uint32_t lan_locate_device(struct engine *e, const char *dev);

/* handoff.c */

/* SESSION_TAKE, SESSION_STATE, SESSION_DONE from node. */
void handoff_on_msg(struct lan *l, uint32_t node, const struct link_msg *m);
/* The link to node went: its takes fail, its gives stay here. */
void handoff_link_down(struct lan *l, uint32_t node);
/* At exit: drops every take and give, calling nothing. */
void handoff_free(struct lan *l);
/* Engine operation. */
int lan_take_session(struct engine *e, uint32_t node, const char *dev, engine_done_fn done,
		     void *arg);

#endif
