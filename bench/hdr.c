/*
 * hdr.c - the log-linear histogram of hdr.h (HdrHistogram's layout: bucket
 * b covers [2^(b + half_mag + unit_mag), 2^(b + 1 + half_mag + unit_mag))
 * in sub_bucket_half_count linear steps, bucket 0 also the range below it).
 */
#include "bench/hdr.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int clz64(uint64_t v)
{
	return v ? __builtin_clzll(v) : 64;
}

/* ceil(log2(v)) for v >= 1 */
static int ceil_log2(int64_t v)
{
	int n = 0;

	while (n < 62 && ((int64_t)1 << n) < v)
		n++;
	return n;
}

static int bucket_index(const struct hdr *h, int64_t v)
{
	int pow2ceiling = 64 - clz64((uint64_t)(v | h->sub_bucket_mask));

	return pow2ceiling - h->unit_magnitude - (h->sub_bucket_half_count_magnitude + 1);
}

static int32_t sub_bucket_index(const struct hdr *h, int64_t v, int b)
{
	return (int32_t)(v >> (b + h->unit_magnitude));
}

static int32_t counts_index(const struct hdr *h, int b, int32_t sb)
{
	int32_t base = (int32_t)(b + 1) << h->sub_bucket_half_count_magnitude;

	return base + (sb - h->sub_bucket_half_count);
}

static int64_t value_from(const struct hdr *h, int b, int32_t sb)
{
	return (int64_t)sb << (b + h->unit_magnitude);
}

static int64_t value_at_index(const struct hdr *h, int32_t i)
{
	int b = (i >> h->sub_bucket_half_count_magnitude) - 1;
	int32_t sb = (i & (h->sub_bucket_half_count - 1)) + h->sub_bucket_half_count;

	if (b < 0) {
		sb -= h->sub_bucket_half_count;
		b = 0;
	}
	return value_from(h, b, sb);
}

int hdr_init(struct hdr *h, int64_t lowest, int64_t highest, int sigfigs)
{
	int64_t single_unit, smallest_untrackable;
	int32_t buckets = 1;
	int mag;

	memset(h, 0, sizeof(*h));
	if (lowest < 1 || sigfigs < 1 || sigfigs > 5 || highest < 2 * lowest)
		return -1;
	h->lowest = lowest;
	h->highest = highest;
	h->sigfigs = sigfigs;
	single_unit = 2;
	for (int i = 0; i < sigfigs; i++)
		single_unit *= 10;
	mag = ceil_log2(single_unit);
	h->sub_bucket_half_count_magnitude = mag > 1 ? mag - 1 : 0;
	h->unit_magnitude = 63 - clz64((uint64_t)lowest);
	if (h->unit_magnitude + h->sub_bucket_half_count_magnitude > 61)
		return -1;
	h->sub_bucket_count = (int32_t)1 << (h->sub_bucket_half_count_magnitude + 1);
	h->sub_bucket_half_count = h->sub_bucket_count / 2;
	h->sub_bucket_mask = (int64_t)(h->sub_bucket_count - 1) << h->unit_magnitude;
	smallest_untrackable = (int64_t)h->sub_bucket_count << h->unit_magnitude;
	while (smallest_untrackable <= highest) {
		if (smallest_untrackable > INT64_MAX / 2) {
			buckets++;
			break;
		}
		smallest_untrackable <<= 1;
		buckets++;
	}
	h->bucket_count = buckets;
	h->counts_len = (buckets + 1) * h->sub_bucket_half_count;
	h->counts = calloc((size_t)h->counts_len, sizeof(*h->counts));
	if (!h->counts) {
		memset(h, 0, sizeof(*h));
		return -1;
	}
	h->min = INT64_MAX;
	return 0;
}

void hdr_free(struct hdr *h)
{
	free(h->counts);
	memset(h, 0, sizeof(*h));
}

void hdr_reset(struct hdr *h)
{
	if (h->counts)
		memset(h->counts, 0, (size_t)h->counts_len * sizeof(*h->counts));
	h->total = 0;
	h->min = INT64_MAX;
	h->max = 0;
	h->clamped = 0;
	h->sum = 0;
}

void hdr_record_n(struct hdr *h, int64_t v, int64_t n)
{
	int b;
	int32_t i;

	if (n <= 0 || !h->counts)
		return;
	if (v < 0)
		v = 0;
	if (v > h->highest) {
		v = h->highest;
		h->clamped += n;
	}
	b = bucket_index(h, v);
	i = counts_index(h, b, sub_bucket_index(h, v, b));
	if (i < 0 || i >= h->counts_len)
		i = h->counts_len - 1; /* cannot happen for v <= highest */
	h->counts[i] += n;
	h->total += n;
	h->sum += (double)v * (double)n;
	if (v < h->min)
		h->min = v;
	if (v > h->max)
		h->max = v;
}

void hdr_record(struct hdr *h, int64_t v)
{
	hdr_record_n(h, v, 1);
}

int64_t hdr_lowest_equivalent(const struct hdr *h, int64_t v)
{
	int b;

	if (v < 0)
		v = 0;
	b = bucket_index(h, v);
	return value_from(h, b, sub_bucket_index(h, v, b));
}

int64_t hdr_highest_equivalent(const struct hdr *h, int64_t v)
{
	int b, adjusted;
	int32_t sb;

	if (v < 0)
		v = 0;
	b = bucket_index(h, v);
	sb = sub_bucket_index(h, v, b);
	adjusted = sb >= h->sub_bucket_count ? b + 1 : b;
	return value_from(h, b, sb) + ((int64_t)1 << (h->unit_magnitude + adjusted)) - 1;
}

int64_t hdr_percentile(const struct hdr *h, double p)
{
	int64_t rank, cum = 0;

	if (!h->total)
		return 0;
	if (p <= 0)
		return h->min;
	if (p >= 100)
		return h->max;
	rank = (int64_t)ceil(p / 100.0 * (double)h->total - 1e-9);
	if (rank < 1)
		rank = 1;
	if (rank > h->total)
		rank = h->total;
	for (int32_t i = 0; i < h->counts_len; i++) {
		cum += h->counts[i];
		if (cum >= rank) {
			int64_t v = hdr_highest_equivalent(h, value_at_index(h, i));
			if (v > h->max)
				v = h->max;
			if (v < h->min)
				v = h->min;
			return v;
		}
	}
	return h->max;
}

double hdr_mean(const struct hdr *h)
{
	return h->total ? h->sum / (double)h->total : 0.0;
}

int hdr_add(struct hdr *dst, const struct hdr *src)
{
	if (!dst->counts || !src->counts || dst->counts_len != src->counts_len ||
	    dst->unit_magnitude != src->unit_magnitude ||
	    dst->sub_bucket_half_count_magnitude != src->sub_bucket_half_count_magnitude)
		return -1;
	for (int32_t i = 0; i < src->counts_len; i++)
		dst->counts[i] += src->counts[i];
	dst->total += src->total;
	dst->sum += src->sum;
	dst->clamped += src->clamped;
	if (src->total) {
		if (src->min < dst->min)
			dst->min = src->min;
		if (src->max > dst->max)
			dst->max = src->max;
	}
	return 0;
}

size_t hdr_memory(const struct hdr *h)
{
	return (size_t)h->counts_len * sizeof(*h->counts);
}
