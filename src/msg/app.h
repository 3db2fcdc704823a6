/*
 * app.h - the messaging layer as the core sees it. The core (src/core)
 * owns the loop, the listeners, the connections and their lifecycle, and
 * group commit; what a connection, a message or a REST call *means* is
 * decided here, in src/msg, behind struct core_app (src/core/core.h). So
 * the core includes nothing from src/msg, and main wires the two.
 * Core thread only.
 */
#ifndef RB_APP_H
#define RB_APP_H

struct core_app;

/* The messaging layer: forwarding, pushes, hooks, channels, sessions, REST. */
const struct core_app *msg_app(void);

#endif
