#include "src/base/rbuf.h"

#include <stdlib.h>
#include <string.h>

struct rbuf *rbuf_new(size_t len)
{
	struct rbuf *b = malloc(sizeof(*b) + RBUF_HEADROOM + len + 1);
	if (!b)
		return NULL;
	atomic_init(&b->refs, 1);
	b->len = len;
	b->data = b->base + RBUF_HEADROOM;
	b->data[len] = 0; /* lets text payloads be logged safely */
	return b;
}

struct rbuf *rbuf_new2(const void *a, size_t alen, const void *bp, size_t blen)
{
	struct rbuf *b = rbuf_new(alen + blen);
	if (!b)
		return NULL;
	if (alen)
		memcpy(b->data, a, alen);
	if (blen)
		memcpy(b->data + alen, bp, blen);
	return b;
}

struct rbuf *rbuf_ref(struct rbuf *b)
{
	atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
	return b;
}

void rbuf_unref(struct rbuf *b)
{
	/* acq_rel: the last owner must see every write made before others let go. */
	if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
		free(b);
}
