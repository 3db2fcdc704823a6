/*
 * engine_lan.h - the LAN cluster's engine (src/msg/engine.h): nodes found
 * by discovery (cluster/discovery.h, which it owns) and linked by the mesh
 * (cluster/mesh.h); channel and device directories, pushes, remote
 * operations and session handoff across them (docs/cluster.md; the parts
 * are listed in cluster/engine_lan_int.h).
 *
 * Core thread only.
 */
#ifndef RB_ENGINE_LAN_H
#define RB_ENGINE_LAN_H

struct core;
struct engine;

/* Start discovery for c (after core_new: the main port is bound) and wrap
 * it. NULL on error (logged). The caller installs it as c->engine, whose
 * free (by the app's fini, before the event_base goes) sends the leaving
 * beacon if the signal did not already, and frees the discovery. */
struct engine *engine_lan_new(struct core *c);

#endif
