/*
 * fuzz_link.c - libFuzzer target for the cluster codecs (protocol/link.h,
 * protocol/beacon.h).
 *
 * Byte 0 seeds the splits; the rest is used twice:
 *  1. as a link byte stream: decoded whole (frame after frame until "need
 *     more" or an error), then fed again in random pieces into a reader
 *     buffer as a link would (each decode on an exact-size heap copy of
 *     what has arrived): the same frames, in the same order, with the same
 *     end (error code, or the same bytes left waiting). Every decoded frame
 *     is re-encoded twice, lists copied raw and lists rebuilt item by item
 *     through the iterators: both give the frame's exact bytes back, and a
 *     buffer one byte short gets RB_ETOOBIG with nothing written;
 *  2. as a beacon (secret "s3cret", cluster "lan", any non-negative time
 *     accepted): what decodes re-encodes to the same bytes.
 * A broken invariant aborts with a message.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/beacon.h"
#include "protocol/link.h"
#include "protocol/rb.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond) \
	do { \
		if (!(cond)) { \
			fprintf(stderr, "fuzz_link: %s:%d: %s\n", __FILE__, \
				__LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static uint32_t rng;

static uint32_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* Encodes m and compares with frame[0..n); also into a buffer one short. */
static void check_encode(const struct link_msg *m, const uint8_t *frame, size_t n)
{
	uint8_t *out = malloc(n), *small = malloc(n);

	CHECK(out && small);
	CHECK(link_encode(m, NULL, 0) == (int)n);
	CHECK(link_encode(m, out, n) == (int)n);
	CHECK(memcmp(out, frame, n) == 0);
	memset(small, 0xee, n);
	CHECK(link_encode(m, small, n - 1) == RB_ETOOBIG);
	for (size_t i = 0; i < n; i++)
		CHECK(small[i] == 0xee);
	free(small);
	free(out);
}

/* A decoded frame: its fields are sane and both encodings give it back. */
static void check_frame(const struct link_msg *m, const uint8_t *frame, size_t n)
{
	struct link_msg copy = *m;

	CHECK(n >= LINK_HDR_LEN && n <= LINK_HDR_LEN - 1 + LINK_FRAME_MAX);
	CHECK(m->type == frame[4] && m->type >= 1 && m->type <= LINK_TYPE_MAX);
	CHECK(strcmp(link_type_name(m->type), "?") != 0);
	check_encode(m, frame, n);

	if (m->type == LINK_INTEREST_FULL) {
		const struct link_names *l = &m->u.interest_full.channels;
		struct link_str *items = malloc((l->n ? l->n : 1) * sizeof(*items));
		size_t pos = 0, i = 0;

		CHECK(items);
		while (link_names_next(l, &pos, &items[i])) {
			CHECK(items[i].p >= frame && items[i].p + items[i].n <= frame + n);
			CHECK(++i <= l->n);
		}
		CHECK(i == l->n && pos == l->raw_len);
		copy.u.interest_full.channels = (struct link_names){ .items = items, .n = i };
		check_encode(&copy, frame, n);
		free(items);
	} else if (m->type == LINK_PRESENCE_RESP) {
		const struct link_presence_list *l = &m->u.presence_resp.members;
		struct link_presence_entry *items = malloc((l->n ? l->n : 1) * sizeof(*items));
		size_t pos = 0, i = 0;

		CHECK(items);
		while (link_presence_next(l, &pos, &items[i]))
			CHECK(++i <= l->n);
		CHECK(i == l->n && pos == l->raw_len);
		copy.u.presence_resp.members =
			(struct link_presence_list){ .items = items, .n = i };
		check_encode(&copy, frame, n);
		free(items);
	}
}

/* The whole stream at once: frame lengths into lens, the end code into *end
 * (0 or an error), the offset where decoding stopped into *stop. */
static size_t decode_whole(const uint8_t *p, size_t size, size_t *lens, int *end,
			   size_t *stop)
{
	size_t off = 0, nf = 0;
	struct link_msg m;
	const char *why;
	int rc;

	for (;;) {
		why = "unset";
		rc = link_decode(size - off ? p + off : NULL, size - off, &m, &why);
		CHECK(rc == link_frame_len(size - off ? p + off : NULL, size - off) ||
		      (rc == RB_EPROTO && link_frame_len(p + off, size - off) > 0));
		if (rc <= 0)
			break;
		CHECK(why == NULL);
		check_frame(&m, p + off, (size_t)rc);
		lens[nf++] = (size_t)rc;
		off += (size_t)rc;
	}
	if (rc == 0) {
		CHECK(why == NULL && m.type == 0);
	} else {
		CHECK(rc == RB_EPROTO || rc == RB_ETOOBIG);
		CHECK(why != NULL && why[0] != '\0' && m.type == 0);
	}
	*end = rc;
	*stop = off;
	return nf;
}

static void decode_split(const uint8_t *p, size_t size, const size_t *lens, size_t nf,
			 int end, size_t stop)
{
	uint8_t *buf = malloc(size ? size : 1);
	size_t have = 0, fed = 0, f = 0;
	int rc = 0;

	CHECK(buf);
	while (fed < size) {
		size_t piece = 1 + next_rand() % (next_rand() & 1 ? 4 : 64);

		if (piece > size - fed)
			piece = size - fed;
		memcpy(buf + have, p + fed, piece);
		have += piece;
		fed += piece;
		for (;;) {
			/* What has arrived, exactly: a read past it is a report. */
			uint8_t *view = malloc(have ? have : 1);
			struct link_msg m;

			CHECK(view);
			memcpy(view, buf, have);
			rc = link_decode(have ? view : NULL, have, &m, NULL);
			free(view);
			if (rc <= 0)
				break;
			CHECK(f < nf && (size_t)rc == lens[f]);
			f++;
			memmove(buf, buf + rc, have - (size_t)rc);
			have -= (size_t)rc;
		}
		if (rc < 0)
			break; /* the link closes */
	}
	CHECK(f == nf);
	CHECK(rc == end);
	if (rc == 0)
		CHECK(have == size - stop && memcmp(buf, p + stop, have) == 0);
	free(buf);
}

static void check_beacon(const uint8_t *p, size_t size)
{
	uint8_t out[BEACON_MAX_LEN];
	struct beacon b;
	const char *why = "unset";
	int rc = beacon_decode(size ? p : NULL, size, "s3cret", "lan", 0, INT64_MAX, &b,
			       &why);

	if (rc != RB_OK) {
		CHECK(rc == BEACON_EMALFORMED || rc == BEACON_EVERSION ||
		      rc == BEACON_EFOREIGN || rc == BEACON_EMAC);
		CHECK(why != NULL && b.node_id == 0 && b.name_len == 0);
		return;
	}
	CHECK(why == NULL && size == 62 + b.name_len && b.node_id && b.port);
	CHECK(beacon_encode(&b, "s3cret", out, sizeof(out)) == (int)size);
	CHECK(memcmp(out, p, size) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t nf, stop, *lens;
	int end;

	if (size < 1)
		return 0;
	rng = (0x9e3779b9u ^ data[0] * 0x01000193u) | 1;
	data++;
	size--;
	/* A frame is at least LINK_HDR_LEN bytes. */
	lens = malloc((size / LINK_HDR_LEN + 1) * sizeof(*lens));
	CHECK(lens);
	nf = decode_whole(data, size, lens, &end, &stop);
	decode_split(data, size, lens, nf, end, stop);
	free(lens);
	check_beacon(data, size);
	return 0;
}
