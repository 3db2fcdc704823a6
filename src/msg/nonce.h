/*
 * nonce.h - nonces of v2-signed REST calls seen recently, so a captured
 * request cannot be replayed (docs/rest-api.md). Core thread only.
 *
 * A nonce is kept for ttl seconds (2 x signature_window: a request older
 * than the window is refused by its timestamp anyway).
 *
 * The bound: at most max nonces are kept (NONCE_MAX for nonce_cache_new).
 * A new nonce arriving when max are kept is still accepted (RB_OK): the
 * oldest kept nonce is forgotten to make room (logged as a warning), so the
 * cache never holds more than max. A forgotten nonce is accepted again if
 * replayed, even within its ttl: under a flood the replay window shrinks,
 * but legitimate calls are never refused for lack of room. A nonce refused
 * as a replay (RB_EEXIST) evicts nothing.
 */
#ifndef RB_NONCE_H
#define RB_NONCE_H

#include <stddef.h>
#include <time.h>

#define NONCE_MAX 1000000

struct nonce_cache;

/* nonce_cache_new_max(ttl, NONCE_MAX). NULL on ENOMEM. */
struct nonce_cache *nonce_cache_new(int ttl);
/* A cache keeping at most max nonces (max >= 1; NULL for 0, or on ENOMEM).
 * The gateway uses NONCE_MAX; a smaller max lets tests reach the bound. */
struct nonce_cache *nonce_cache_new_max(int ttl, size_t max);
void nonce_cache_free(struct nonce_cache *n);
/* Number of nonces kept now (at most max). */
size_t nonce_cache_len(const struct nonce_cache *n);

/* RB_OK if nonce is new (now remembered), RB_EEXIST if seen within ttl. */
int nonce_check_add(struct nonce_cache *n, const char *nonce, time_t now);

#endif
