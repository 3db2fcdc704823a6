/*
 * nonce.h - nonces of v2-signed REST calls seen recently, so a captured
 * request cannot be replayed (docs/rest-api.md). Core thread only.
 *
 * A nonce is kept for ttl seconds (2 x signature_window: a request older
 * than the window is refused by its timestamp anyway). At most
 * NONCE_MAX are kept; past that the oldest are forgotten first (logged),
 * which only shortens the replay window under a flood.
 */
#ifndef RB_NONCE_H
#define RB_NONCE_H

#include <time.h>

#define NONCE_MAX 1000000

struct nonce_cache;

struct nonce_cache *nonce_cache_new(int ttl);
void nonce_cache_free(struct nonce_cache *n);

/* RB_OK if nonce is new (now remembered), RB_EEXIST if seen within ttl. */
int nonce_check_add(struct nonce_cache *n, const char *nonce, time_t now);

#endif
