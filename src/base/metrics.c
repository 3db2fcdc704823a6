#include "src/base/metrics.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "protocol/packet.h"
#include "protocol/rb.h"

atomic_uint_fast64_t metrics[M__COUNT];

static atomic_uint_fast64_t packets[2][16][4];
static atomic_uint_fast64_t retransmits[16];
static atomic_uint_fast64_t forwards[FWD__COUNT];
static atomic_uint_fast64_t drops[DROP__COUNT];

/* Latency buckets in seconds; the histogram is written by the core thread
 * only, but read by the renderer on the same thread: atomics keep it safe
 * should that change. Sum kept in microseconds. */
static const double buckets[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
				  0.25, 0.5, 1, 2.5, 5, 10 };
static atomic_uint_fast64_t lat_bucket[RB_ARRAY_LEN(buckets)];
static atomic_uint_fast64_t lat_count, lat_sum_us;

static const char *const names[] = {
#define METRIC_NAME(id, name, help) name,
	METRICS_LIST(METRIC_NAME)
#undef METRIC_NAME
};

static const char *const helps[] = {
#define METRIC_HELP(id, name, help) help,
	METRICS_LIST(METRIC_HELP)
#undef METRIC_HELP
};

static const char *const fwd_names[FWD__COUNT] = {
	"ok", "http_error", "timeout", "unreachable", "invalid", "over_limit", "breaker_open",
};

static const char *const drop_names[DROP__COUNT] = {
	"closed", "slow_consumer", "slow_consumer_closed", "inflight_limit", "unacked",
	"session_full",
};

#define INC(a) atomic_fetch_add_explicit(&(a), 1, memory_order_relaxed)
#define GET(a) ((unsigned long long)atomic_load_explicit(&(a), memory_order_relaxed))

void metric_packet(int out, unsigned cmd, unsigned qos)
{
	INC(packets[out ? 1 : 0][cmd & 15][qos & 3]);
}

void metric_retransmit(unsigned cmd)
{
	INC(retransmits[cmd & 15]);
}

void metric_forward(enum fwd_result r)
{
	INC(forwards[r]);
}

void metric_drop(enum drop_reason r)
{
	INC(drops[r]);
}

void metric_backend_latency(double s)
{
	for (size_t i = 0; i < RB_ARRAY_LEN(buckets); i++)
		if (s <= buckets[i])
			INC(lat_bucket[i]);
	INC(lat_count);
	atomic_fetch_add_explicit(&lat_sum_us, (uint_fast64_t)(s * 1e6), memory_order_relaxed);
}

/* Appends to o->b; a failed append is remembered in failed (checked once at
 * the end: evbuffer_add_printf returns -1 on ENOMEM). */
struct out {
	struct evbuffer *b;
	bool failed;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	if (evbuffer_add_vprintf(o->b, fmt, ap) < 0)
		o->failed = true;
	va_end(ap);
}

static void family(struct out *o, const char *name, const char *type, const char *help)
{
	put(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

int metrics_render(const struct metric_gauges *g, struct evbuffer *out)
{
	struct out o = { .b = out };

	for (int i = 0; i < M__COUNT; i++) {
		family(&o, names[i], "counter", helps[i]);
		put(&o, "%s %llu\n", names[i], GET(metrics[i]));
	}
	static const char *const dir[2] = { "in", "out" };
	for (int d = 0; d < 2; d++) {
		char name[64];
		snprintf(name, sizeof(name), "rainbow_messages_%s_total", dir[d]);
		family(&o, name, "counter", d ? "Packets handed to connections for sending, by command and QoS (QoS 0 copies dropped for slow consumers are in rainbow_drops_total)"
					      : "Packets received from clients, by command and QoS");
		for (unsigned cmd = 1; cmd <= PKT_HELLO; cmd++)
			for (unsigned q = 0; q < 3; q++)
				put(&o, "%s{cmd=\"%s\",qos=\"%u\"} %llu\n", name, pkt_cmd_name((uint8_t)cmd), q,
				    GET(packets[d][cmd][q]));
	}
	family(&o, "rainbow_retransmissions_total", "counter",
	       "Packets sent again: SEND with DUP=1, or REL awaiting COM");
	put(&o, "rainbow_retransmissions_total{cmd=\"SEND\"} %llu\n", GET(retransmits[PKT_SEND]));
	put(&o, "rainbow_retransmissions_total{cmd=\"REL\"} %llu\n", GET(retransmits[PKT_REL]));
	family(&o, "rainbow_forwards_total", "counter", "Forwards to the backend, by result");
	for (int i = 0; i < FWD__COUNT; i++)
		put(&o, "rainbow_forwards_total{result=\"%s\"} %llu\n", fwd_names[i], GET(forwards[i]));
	family(&o, "rainbow_drops_total", "counter", "Messages not delivered, by reason");
	for (int i = 0; i < DROP__COUNT; i++)
		put(&o, "rainbow_drops_total{reason=\"%s\"} %llu\n", drop_names[i], GET(drops[i]));

	family(&o, "rainbow_backend_latency_seconds", "histogram",
	       "Time from sending a forward to its complete answer");
	for (size_t i = 0; i < RB_ARRAY_LEN(buckets); i++)
		put(&o, "rainbow_backend_latency_seconds_bucket{le=\"%g\"} %llu\n", buckets[i],
		    GET(lat_bucket[i]));
	put(&o, "rainbow_backend_latency_seconds_bucket{le=\"+Inf\"} %llu\n", GET(lat_count));
	put(&o, "rainbow_backend_latency_seconds_sum %.6f\n", (double)GET(lat_sum_us) / 1e6);
	put(&o, "rainbow_backend_latency_seconds_count %llu\n", GET(lat_count));

	const struct { const char *name, *help; unsigned long long v; } gauges[] = {
		{ "rainbow_connections", "Open WebSocket connections", g->connections },
		{ "rainbow_channels", "Channels with at least one member", g->channels },
		{ "rainbow_forwards_in_flight", "Forwards awaiting the backend",
		  (unsigned long long)g->forwards_in_flight },
		{ "rainbow_forward_queue_depth", "SENDs queued for a forward slot, all connections",
		  g->forward_queue_depth },
		{ "rainbow_deliveries_in_flight", "Pushed QoS 1/2 messages awaiting acknowledgement",
		  g->deliveries_in_flight },
		{ "rainbow_pushes_waiting", "/send/ calls waiting for receipts", g->pushes_waiting },
		{ "rainbow_backend_requests_pending", "Backend requests queued or in flight",
		  g->backend_pending },
	};
	for (size_t i = 0; i < RB_ARRAY_LEN(gauges); i++) {
		family(&o, gauges[i].name, "gauge", gauges[i].help);
		put(&o, "%s %llu\n", gauges[i].name, gauges[i].v);
	}
	if (g->extra && evbuffer_add(out, g->extra, strlen(g->extra)) != 0)
		o.failed = true;
	return o.failed ? RB_ENOMEM : RB_OK;
}
