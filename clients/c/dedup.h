/*
 * dedup.h - the message ids of QoS 2 pushes a connection has delivered to
 * the application and answered with REC, until the gateway's REL releases
 * them (docs/protocol.md: the exchange is MQTT's). A SEND whose id is here
 * is a retransmission (after a reconnect or a session resume) and must not
 * reach the application again. Ids live in arrival order in a small array
 * that grows on demand (so an idle connection holds no memory); past max
 * entries the oldest is forgotten (the window), which only matters for a
 * gateway that never sends REL. Pure; one owner thread.
 */
#ifndef RBC_DEDUP_H
#define RBC_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

struct rbc_dedup {
	uint16_t *ids;  /* oldest first; NULL while empty and never used */
	uint32_t len, cap;
	uint32_t max;   /* the window; 0 counts as 1 */
};

/*
 * Record id. Returns 1 if it was already there (a duplicate: nothing
 * changes), 0 if added (the oldest is dropped first when len == max), or
 * RB_ENOMEM (nothing changes; the caller may deliver, at worst twice).
 */
int rbc_dedup_add(struct rbc_dedup *d, uint16_t id);

bool rbc_dedup_has(const struct rbc_dedup *d, uint16_t id);

/* Forget id (its REL arrived); false if it was not there. */
bool rbc_dedup_remove(struct rbc_dedup *d, uint16_t id);

/* Forget everything and free the array; d stays usable. */
void rbc_dedup_free(struct rbc_dedup *d);

#endif
