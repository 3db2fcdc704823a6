/*
 * metrics.h - process-wide counters, incremented from either thread with
 * relaxed atomics (a counter needs no ordering). Exposed by the REST API.
 * Add a counter: one line in METRICS_LIST (name, help).
 */
#ifndef RB_METRICS_H
#define RB_METRICS_H

#include <stdatomic.h>
#include <stdint.h>

#define METRICS_LIST(X) \
	X(M_CONN_ACCEPTED, "rainbow_tcp_accepted_total", "TCP connections accepted on the main port") \
	X(M_CONN_OPENED, "rainbow_connections_opened_total", "WebSocket connections established") \
	X(M_CONN_CLOSED, "rainbow_connections_closed_total", "WebSocket connections closed") \
	X(M_CONN_REFUSED, "rainbow_connections_refused_total", "Upgrades refused by the connect hook (401)") \
	X(M_CONN_HOOK_FAILED, "rainbow_connect_hook_failures_total", "Upgrades refused because the connect hook failed (503)") \
	X(M_CONN_OVER_LIMIT, "rainbow_connections_over_limit_total", "Upgrades refused by max_connections") \
	X(M_HEAD_BAD, "rainbow_bad_request_heads_total", "Connections dropped for a bad, oversized or slow request head") \
	X(M_FRAMES_IN, "rainbow_frames_in_total", "WebSocket messages received") \
	X(M_FRAMES_OUT, "rainbow_frames_out_total", "WebSocket messages sent") \
	X(M_MALFORMED, "rainbow_malformed_packets_total", "Malformed packets received") \
	X(M_RX_TOO_BIG, "rainbow_oversized_messages_total", "Messages over max_message_size (closed 1009)") \
	X(M_FWD_OK, "rainbow_forwards_ok_total", "Forwards answered 2xx") \
	X(M_FWD_INVALID, "rainbow_forwards_invalid_total", "Forwards refused with RAINBOWREQUESTINVALID") \
	X(M_FWD_HTTP_ERROR, "rainbow_forwards_http_error_total", "Forwards answered non-2xx") \
	X(M_FWD_TIMEOUT, "rainbow_forwards_timeout_total", "Forwards timed out") \
	X(M_FWD_UNREACHABLE, "rainbow_forwards_unreachable_total", "Forwards that could not reach the backend") \
	X(M_FWD_OVER_LIMIT, "rainbow_forwards_over_limit_total", "SENDs refused by per-connection forward limits") \
	X(M_QOS2_DUP_ANSWERED, "rainbow_qos2_duplicates_answered_total", "Duplicate QoS 2 SENDs answered from the store") \
	X(M_CLOSE_HOOKS, "rainbow_close_hooks_total", "Close hooks sent") \
	X(M_DROP_CLOSED, "rainbow_drops_closed_total", "Messages dropped because the connection was gone") \
	X(M_SLOW_CONSUMER_CLOSED, "rainbow_slow_consumer_closed_total", "Connections closed for a full send queue")

enum metric_id {
#define METRIC_ENUM(id, name, help) id,
	METRICS_LIST(METRIC_ENUM)
#undef METRIC_ENUM
	M__COUNT
};

extern atomic_uint_fast64_t metrics[M__COUNT];

static inline void metric_inc(enum metric_id id)
{
	atomic_fetch_add_explicit(&metrics[id], 1, memory_order_relaxed);
}

static inline uint64_t metric_get(enum metric_id id)
{
	return atomic_load_explicit(&metrics[id], memory_order_relaxed);
}

/* Static name and help text of a counter. */
const char *metric_name(enum metric_id id);
const char *metric_help(enum metric_id id);

#endif
