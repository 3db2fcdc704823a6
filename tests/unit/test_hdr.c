/*
 * test_hdr.c - the load generator's latency histogram (bench/hdr.h):
 * layout, equivalent ranges, 3 significant digits, percentiles against the
 * exact nearest-rank percentiles of the same values, clamping, reset, add.
 * Links only bench/hdr.o.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <cmocka.h>

#include "bench/hdr.h"

#define HOUR_US 3600000000LL

static int cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return x < y ? -1 : x > y;
}

/* nearest rank: the ceil(p/100 * n)-th smallest value */
static int64_t exact_pct(const int64_t *sorted, size_t n, double p)
{
	size_t rank = (size_t)(p / 100.0 * (double)n + 0.999999999);

	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return sorted[rank - 1];
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void test_layout(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	assert_int_equal(h.sub_bucket_count, 2048);
	assert_int_equal(h.sub_bucket_half_count, 1024);
	assert_int_equal(h.unit_magnitude, 0);
	/* 2048 << 21 = 4.29e9 > 3.6e9: 22 buckets */
	assert_int_equal(h.bucket_count, 22);
	assert_int_equal(h.counts_len, 23 * 1024);
	assert_int_equal(hdr_memory(&h), 23 * 1024 * 8);
	assert_int_equal(h.total, 0);
	assert_int_equal(hdr_percentile(&h, 50), 0);
	assert_true(hdr_mean(&h) == 0.0);
	hdr_free(&h);
	hdr_free(&h); /* harmless twice */

	/* bad arguments */
	assert_int_equal(hdr_init(&h, 0, 1000, 3), -1);
	assert_int_equal(hdr_init(&h, 1, 1, 3), -1);
	assert_int_equal(hdr_init(&h, 1, 1000, 0), -1);
	assert_int_equal(hdr_init(&h, 1, 1000, 6), -1);
	assert_null(h.counts);

	/* lowest 1000: unit magnitude 9 (512) */
	assert_int_equal(hdr_init(&h, 1000, HOUR_US, 3), 0);
	assert_int_equal(h.unit_magnitude, 9);
	hdr_free(&h);
}

static void test_exact_below_2048(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	/* values under sub_bucket_count are their own bucket */
	for (int64_t v = 0; v < 2048; v++) {
		assert_int_equal(hdr_lowest_equivalent(&h, v), v);
		assert_int_equal(hdr_highest_equivalent(&h, v), v);
	}
	/* then ranges of 2, 4, ... */
	assert_int_equal(hdr_lowest_equivalent(&h, 2048), 2048);
	assert_int_equal(hdr_highest_equivalent(&h, 2048), 2049);
	assert_int_equal(hdr_lowest_equivalent(&h, 2049), 2048);
	assert_int_equal(hdr_lowest_equivalent(&h, 4095), 4094);
	assert_int_equal(hdr_highest_equivalent(&h, 4096), 4099);
	assert_int_equal(hdr_lowest_equivalent(&h, 1000000), 999936);
	assert_int_equal(hdr_highest_equivalent(&h, 1000000), 1000447);
	hdr_free(&h);
}

/* Every value is counted in a range no wider than 1/1024 of it. */
static void test_relative_error(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	for (int i = 0; i < 200000; i++) {
		int64_t v = (int64_t)(next() % (uint64_t)HOUR_US);
		int64_t lo = hdr_lowest_equivalent(&h, v);
		int64_t hi = hdr_highest_equivalent(&h, v);
		assert_true(lo <= v && v <= hi);
		assert_true((double)(hi - lo) <= (double)v / 1024.0);
		/* the range is stable: its ends map to themselves */
		assert_int_equal(hdr_lowest_equivalent(&h, hi), lo);
		assert_int_equal(hdr_highest_equivalent(&h, lo), hi);
	}
	hdr_free(&h);
}

static void check_against_exact(struct hdr *h, int64_t *vals, size_t n)
{
	static const double ps[] = { 0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 99.999 };
	double sum = 0;

	qsort(vals, n, sizeof(*vals), cmp64);
	for (size_t i = 0; i < n; i++)
		sum += (double)vals[i];
	assert_int_equal(h->total, (int64_t)n);
	assert_int_equal(h->min, vals[0]);
	assert_int_equal(h->max, vals[n - 1]);
	assert_true(hdr_mean(h) > sum / (double)n - 1e-6 * (sum / (double)n) - 1e-9);
	assert_true(hdr_mean(h) < sum / (double)n + 1e-6 * (sum / (double)n) + 1e-9);
	assert_int_equal(hdr_percentile(h, 0), vals[0]);
	assert_int_equal(hdr_percentile(h, 100), vals[n - 1]);
	for (size_t k = 0; k < sizeof(ps) / sizeof(ps[0]); k++) {
		int64_t want = exact_pct(vals, n, ps[k]);
		int64_t got = hdr_percentile(h, ps[k]);
		/* the same bucket as the exact value (reported as its top, but
		 * never above the max) */
		int64_t top = hdr_highest_equivalent(h, want);
		if (top > vals[n - 1])
			top = vals[n - 1];
		if (got != top)
			fail_msg("p%g: got %lld, exact %lld (bucket top %lld)", ps[k],
				 (long long)got, (long long)want, (long long)top);
		assert_true((double)(got - want) <= (double)want / 1024.0);
	}
}

static void test_percentiles_uniform(void **state)
{
	enum { N = 100000 };
	int64_t *vals = malloc(N * sizeof(*vals));
	struct hdr h;

	assert_non_null(vals);
	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	for (size_t i = 0; i < N; i++) {
		vals[i] = (int64_t)(next() % 5000000); /* 0..5 s in us */
		hdr_record(&h, vals[i]);
	}
	check_against_exact(&h, vals, N);
	hdr_free(&h);
	free(vals);
}

/* Latency-like: mostly ~200 us, a long tail to seconds. */
static void test_percentiles_tail(void **state)
{
	enum { N = 50000 };
	int64_t *vals = malloc(N * sizeof(*vals));
	struct hdr h;

	assert_non_null(vals);
	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	for (size_t i = 0; i < N; i++) {
		uint64_t r = next();
		int64_t v = 150 + (int64_t)(r % 100);
		if (r % 100 == 0)
			v = 10000 + (int64_t)((r >> 8) % 2000000);
		vals[i] = v;
		hdr_record(&h, v);
	}
	check_against_exact(&h, vals, N);
	hdr_free(&h);
	free(vals);
}

static void test_small_counts(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	hdr_record(&h, 42);
	assert_int_equal(hdr_percentile(&h, 50), 42);
	assert_int_equal(hdr_percentile(&h, 99.9), 42);
	assert_int_equal(h.min, 42);
	assert_int_equal(h.max, 42);
	hdr_record(&h, 1000);
	/* nearest rank of 2 values: p50 is the first, p50.1 the second */
	assert_int_equal(hdr_percentile(&h, 50), 42);
	assert_int_equal(hdr_percentile(&h, 50.1), 1000);
	assert_true(hdr_mean(&h) == 521.0);
	/* a large value: its bucket top, capped at the max */
	hdr_record(&h, 1000000);
	assert_int_equal(hdr_percentile(&h, 99), 1000000);
	hdr_record_n(&h, 7, 3);
	assert_int_equal(h.total, 6);
	assert_int_equal(hdr_percentile(&h, 50), 7);
	hdr_record_n(&h, 7, 0);
	hdr_record_n(&h, 7, -5);
	assert_int_equal(h.total, 6);
	hdr_free(&h);
}

static void test_clamp_and_negative(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, 10000, 3), 0);
	hdr_record(&h, -5);
	assert_int_equal(h.min, 0);
	hdr_record(&h, 20000);
	hdr_record(&h, INT64_MAX);
	assert_int_equal(h.clamped, 2);
	assert_int_equal(h.max, 10000);
	assert_int_equal(hdr_percentile(&h, 99), 10000);
	assert_int_equal(hdr_percentile(&h, 10), 0);
	hdr_free(&h);
}

static void test_reset_and_add(void **state)
{
	struct hdr a, b, c;

	assert_int_equal(hdr_init(&a, 1, HOUR_US, 3), 0);
	assert_int_equal(hdr_init(&b, 1, HOUR_US, 3), 0);
	assert_int_equal(hdr_init(&c, 1, 1000000, 3), 0);
	for (int i = 1; i <= 100; i++)
		hdr_record(&a, i);
	for (int i = 101; i <= 200; i++)
		hdr_record(&b, i * 1000);
	assert_int_equal(hdr_add(&a, &b), 0);
	assert_int_equal(a.total, 200);
	assert_int_equal(a.min, 1);
	assert_int_equal(a.max, 200000);
	assert_int_equal(hdr_percentile(&a, 50), 100);
	assert_int_equal(hdr_add(&a, &c), -1); /* another layout */
	hdr_reset(&a);
	assert_int_equal(a.total, 0);
	assert_int_equal(hdr_percentile(&a, 50), 0);
	assert_int_equal(a.clamped, 0);
	hdr_record(&a, 5);
	assert_int_equal(a.min, 5);
	assert_int_equal(a.max, 5);
	/* adding an empty histogram changes nothing */
	hdr_reset(&b);
	assert_int_equal(hdr_add(&a, &b), 0);
	assert_int_equal(a.min, 5);
	assert_int_equal(a.total, 1);
	hdr_free(&a);
	hdr_free(&b);
	hdr_free(&c);
}

/* The whole range, at its edges: no index out of the counts array. */
static void test_edges(void **state)
{
	struct hdr h;

	assert_int_equal(hdr_init(&h, 1, HOUR_US, 3), 0);
	hdr_record(&h, 0);
	hdr_record(&h, HOUR_US);
	hdr_record(&h, HOUR_US - 1);
	assert_int_equal(h.clamped, 0);
	assert_int_equal(hdr_percentile(&h, 100), HOUR_US);
	assert_true(hdr_percentile(&h, 60) >= HOUR_US - HOUR_US / 1024);
	hdr_free(&h);
	/* a huge range */
	assert_int_equal(hdr_init(&h, 1, INT64_MAX / 2, 3), 0);
	hdr_record(&h, INT64_MAX / 2);
	assert_int_equal(hdr_percentile(&h, 50), INT64_MAX / 2);
	hdr_free(&h);
	/* other significant digits: 2 -> 256 sub-buckets */
	assert_int_equal(hdr_init(&h, 1, 1000000, 2), 0);
	assert_int_equal(h.sub_bucket_count, 256);
	for (int64_t v = 1; v < 1000000; v = v * 3 + 1) {
		int64_t lo = hdr_lowest_equivalent(&h, v), hi = hdr_highest_equivalent(&h, v);
		assert_true(lo <= v && v <= hi && (double)(hi - lo) <= (double)v / 128.0);
	}
	hdr_free(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout),
		cmocka_unit_test(test_exact_below_2048),
		cmocka_unit_test(test_relative_error),
		cmocka_unit_test(test_percentiles_uniform),
		cmocka_unit_test(test_percentiles_tail),
		cmocka_unit_test(test_small_counts),
		cmocka_unit_test(test_clamp_and_negative),
		cmocka_unit_test(test_reset_and_add),
		cmocka_unit_test(test_edges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
