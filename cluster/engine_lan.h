/*
 * engine_lan.h - the LAN cluster's engine (src/msg/engine.h). For now it
 * only knows membership: self() is the discovery node id and nodes() lists
 * this node and the discovered peers; every cross-node operation still
 * answers as the local engine does (no links yet, so nothing is sent).
 * Owns its discovery (cluster/discovery.h).
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
