/*
 * wire.h - a tiny bounds-checked big-endian writer and reader, shared by the
 * cluster codecs (beacon.c, link.c). Internal to protocol/: header-only,
 * static inline, pure; any thread.
 *
 * Writer: a NULL buffer only counts (so one encoder serves to size and to
 * write); past cap it stops writing and sets err, and len keeps counting.
 * Reader: every get checks the bytes left first; after the first failure
 * err is set and every later get fails too, so a decoder may read a whole
 * layout and check err once. Nothing is ever read or written out of bounds.
 * Strings are u16-length-prefixed, blobs u32-length-prefixed; both may hold
 * any bytes (no NUL terminator, none implied).
 */
#ifndef RB_WIRE_H
#define RB_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct wire_w {
	uint8_t *p;    /* NULL: count only */
	size_t cap;
	size_t len;    /* bytes written (or that would have been) */
	bool err;      /* cap exceeded, or a string/blob over its prefix */
};

struct wire_r {
	const uint8_t *p;
	size_t len, off;
	bool err;
};

static inline void wire_put(struct wire_w *w, const void *src, size_t n)
{
	if (n == 0)
		return;
	if (w->p != NULL && !w->err && w->len <= w->cap && n <= w->cap - w->len)
		memcpy(w->p + w->len, src, n);
	else if (w->p != NULL)
		w->err = true;
	w->len += n;
}

static inline void wire_u8(struct wire_w *w, uint8_t v)
{
	wire_put(w, &v, 1);
}

static inline void wire_u16(struct wire_w *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	wire_put(w, b, 2);
}

static inline void wire_u32(struct wire_w *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8),
			 (uint8_t)v };

	wire_put(w, b, 4);
}

static inline void wire_u64(struct wire_w *w, uint64_t v)
{
	wire_u32(w, (uint32_t)(v >> 32));
	wire_u32(w, (uint32_t)v);
}

/* u16 length + bytes; a string over 65535 bytes sets err (even counting). */
static inline void wire_str(struct wire_w *w, const void *s, size_t n)
{
	if (n > UINT16_MAX) {
		w->err = true;
		n = 0;
	}
	wire_u16(w, (uint16_t)n);
	wire_put(w, s, n);
}

/* u32 length + bytes. */
static inline void wire_blob(struct wire_w *w, const void *s, size_t n)
{
	if (n > UINT32_MAX) {
		w->err = true;
		n = 0;
	}
	wire_u32(w, (uint32_t)n);
	wire_put(w, s, n);
}

static inline size_t wire_left(const struct wire_r *r)
{
	return r->err ? 0 : r->len - r->off;
}

/* n bytes in place (borrowed), or NULL with err set. */
static inline const uint8_t *wire_get(struct wire_r *r, size_t n)
{
	const uint8_t *q;

	if (r->err || n > r->len - r->off) {
		r->err = true;
		return NULL;
	}
	/* Never NULL + 0: an empty buffer may come as NULL. */
	q = r->p != NULL ? r->p + r->off : (const uint8_t *)"";
	r->off += n;
	return q;
}

static inline uint8_t wire_get_u8(struct wire_r *r)
{
	const uint8_t *q = wire_get(r, 1);

	return q ? q[0] : 0;
}

static inline uint16_t wire_get_u16(struct wire_r *r)
{
	const uint8_t *q = wire_get(r, 2);

	return q ? (uint16_t)(q[0] << 8 | q[1]) : 0;
}

static inline uint32_t wire_get_u32(struct wire_r *r)
{
	const uint8_t *q = wire_get(r, 4);

	return q ? (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 |
		   (uint32_t)q[2] << 8 | q[3] : 0;
}

static inline uint64_t wire_get_u64(struct wire_r *r)
{
	uint64_t hi = wire_get_u32(r);

	return hi << 32 | wire_get_u32(r);
}

/* A u16-prefixed string: *s borrowed (never NULL on success, even for
 * length 0), *n its length. false (err set) when it does not fit. */
static inline bool wire_get_str(struct wire_r *r, const uint8_t **s, size_t *n)
{
	size_t l = wire_get_u16(r);
	const uint8_t *q = wire_get(r, l);

	*s = q;
	*n = q != NULL ? l : 0;
	return q != NULL;
}

/* The same with a u32 prefix. */
static inline bool wire_get_blob(struct wire_r *r, const uint8_t **s, size_t *n)
{
	size_t l = wire_get_u32(r);
	const uint8_t *q = wire_get(r, l);

	*s = q;
	*n = q != NULL ? l : 0;
	return q != NULL;
}

#endif
