/*
 * rbuf.h - refcounted immutable byte buffers: one message body shared by
 * every recipient, across the edge/core seam, with RBUF_HEADROOM bytes
 * reserved before the data for the WebSocket frame header (lws' LWS_PRE).
 *
 * The refcount is atomic, so a buffer may be referenced from both threads;
 * the bytes must not change once a second reference exists, with one
 * exception: once the core has pushed a buffer in an XQ_SEND with
 * XQF_PATCH (a QoS 1/2 SEND), bytes 0 (DUP bit) and 3-4 (msgid) belong to
 * the edge thread, which rewrites them for each recipient as it writes; the
 * core must neither read nor write them after that push (it may push the
 * same buffer again). The RBUF_HEADROOM bytes before data likewise belong
 * to the edge, where lws writes the frame header.
 */
#ifndef RB_RBUF_H
#define RB_RBUF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define RBUF_HEADROOM 16 /* >= LWS_PRE (asserted in edge.c) */

struct rbuf {
	atomic_uint refs;
	size_t len;
	uint8_t *data; /* == base + RBUF_HEADROOM */
	uint8_t base[];
};

/* New buffer of len bytes (contents uninitialised), refs = 1. NULL on ENOMEM. */
struct rbuf *rbuf_new(size_t len);
/* New buffer holding a copy of two pieces (header + body). NULL on ENOMEM. */
struct rbuf *rbuf_new2(const void *a, size_t alen, const void *b, size_t blen);
struct rbuf *rbuf_ref(struct rbuf *b);
/* Drop one reference; frees on the last. NULL-tolerant. */
void rbuf_unref(struct rbuf *b);

#endif
