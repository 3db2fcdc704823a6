/*
 * hdr.h - a small HdrHistogram-style latency histogram for bench/loadgen.c.
 *
 * Log-linear buckets (the layout of Gil Tene's HdrHistogram): values from 0
 * up to `highest` are counted with a relative error of at most 1 part in
 * 2^(sub_bucket_half_count_magnitude) (3 significant digits: 1/1024, under
 * 0.1%), in a counts array allocated once by hdr_init() (fixed memory,
 * nothing allocated while recording). Each bucket doubles the range of the
 * one before it; inside a bucket the sub-buckets are linear.
 *
 * Values are plain integers (loadgen records microseconds). A value below 0
 * counts as 0; one above `highest` counts as `highest` and in `clamped`.
 * min, max and the mean are exact (kept besides the buckets); percentiles
 * are the highest value equivalent to the bucket that holds the requested
 * rank (nearest-rank definition), capped at the exact max.
 *
 * Pure: no I/O; not thread-safe (one histogram per thread).
 */
#ifndef BENCH_HDR_H
#define BENCH_HDR_H

#include <stddef.h>
#include <stdint.h>

struct hdr {
	int64_t lowest;           /* lowest discernible value (>= 1) */
	int64_t highest;          /* highest trackable value */
	int sigfigs;              /* significant digits, 1..5 */
	int unit_magnitude;       /* floor(log2(lowest)) */
	int sub_bucket_half_count_magnitude;
	int32_t sub_bucket_count; /* 2^(half magnitude + 1) */
	int32_t sub_bucket_half_count;
	int64_t sub_bucket_mask;
	int32_t bucket_count;
	int32_t counts_len;
	int64_t *counts;
	int64_t total;            /* values recorded */
	int64_t min, max;         /* exact; min is INT64_MAX when empty */
	int64_t clamped;          /* values above highest (counted as highest) */
	double sum;               /* for the mean */
};

/*
 * Set up h for values in [lowest, highest] with sigfigs significant digits
 * (loadgen: 1, 3,600,000,000 us = 1 hour, 3). lowest >= 1, highest >=
 * 2 * lowest, sigfigs 1..5. 0, or -1 on bad arguments or out of memory (h
 * is then zeroed, and hdr_free() on it is harmless).
 */
int hdr_init(struct hdr *h, int64_t lowest, int64_t highest, int sigfigs);

/* Release the counts (h may be zeroed). */
void hdr_free(struct hdr *h);

/* Forget every value recorded (the layout stays). */
void hdr_reset(struct hdr *h);

/* Count v once / n times. */
void hdr_record(struct hdr *h, int64_t v);
void hdr_record_n(struct hdr *h, int64_t v, int64_t n);

/*
 * The value at percentile p (0..100): the smallest recorded value v such
 * that at least ceil(p/100 * total) values are <= v, reported as the
 * highest value equivalent to v's bucket, capped at max. p <= 0: min. 0
 * when empty.
 */
int64_t hdr_percentile(const struct hdr *h, double p);

/* Exact mean of the recorded values; 0 when empty. */
double hdr_mean(const struct hdr *h);

/* The range of values counted in the same bucket as v. */
int64_t hdr_lowest_equivalent(const struct hdr *h, int64_t v);
int64_t hdr_highest_equivalent(const struct hdr *h, int64_t v);

/* Add src's counts to dst; both must have the same layout. 0, or -1. */
int hdr_add(struct hdr *dst, const struct hdr *src);

/* Bytes of the counts array. */
size_t hdr_memory(const struct hdr *h);

#endif
