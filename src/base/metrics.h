/*
 * metrics.h - process-wide counters, incremented from either thread with
 * relaxed atomics (a counter needs no ordering), rendered as Prometheus
 * text by metrics_render(). Add a plain counter: one line in METRICS_LIST.
 * Labeled families (by command and QoS, forward result, drop reason) and
 * the backend latency histogram have their own small APIs below.
 */
#ifndef RB_METRICS_H
#define RB_METRICS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define METRICS_LIST(X) \
	X(M_CONN_ACCEPTED, "rainbow_tcp_accepted_total", "TCP connections accepted on the main port") \
	X(M_CONN_OPENED, "rainbow_connections_opened_total", "WebSocket connections established") \
	X(M_CONN_CLOSED, "rainbow_connections_closed_total", "WebSocket connections closed") \
	X(M_CONN_REFUSED, "rainbow_connections_refused_total", "Upgrades refused by the connect hook (401)") \
	X(M_CONN_HOOK_FAILED, "rainbow_connect_hook_failures_total", "Upgrades refused because the connect hook failed (503)") \
	X(M_CONN_OVER_LIMIT, "rainbow_connections_over_limit_total", "Upgrades refused by max_connections") \
	X(M_TOKENS_ACCEPTED, "rainbow_tokens_accepted_total", "Connection tokens that verified (client admitted with their claims)") \
	X(M_TOKENS_REFUSED, "rainbow_tokens_refused_total", "Upgrades refused for their connection token (malformed, bad signature, alg, expired, missing when required)") \
	X(M_CONN_KICKED, "rainbow_connections_kicked_total", "Connections closed through /kick/") \
	X(M_HEAD_BAD, "rainbow_bad_request_heads_total", "Connections dropped for a bad, oversized or slow request head") \
	X(M_HTTP_TIMEOUTS, "rainbow_http_request_timeouts_total", "REST requests not complete within request_body_timeout (408)") \
	X(M_UPGRADE_BAD, "rainbow_bad_upgrades_total", "Upgrades refused by the door: Sec-WebSocket-Version not 13 (426), no Sec-WebSocket-Key or a body (400)") \
	X(M_ACCEPT_ERRORS, "rainbow_accept_errors_total", "Failed accept() calls (out of file descriptors...), each followed by a pause") \
	X(M_ACCEPT_SHED, "rainbow_accept_shed_total", "Clients answered 503 on the reserve descriptor while out of file descriptors") \
	X(M_MALFORMED, "rainbow_malformed_packets_total", "Malformed packets received") \
	X(M_RX_TOO_BIG, "rainbow_oversized_messages_total", "Messages over max_message_size (closed 1009)") \
	X(M_QOS2_DUP_ANSWERED, "rainbow_qos2_duplicates_answered_total", "Duplicate QoS 2 SENDs answered from the store") \
	X(M_CLOSE_HOOKS, "rainbow_close_hooks_total", "Close hooks sent") \
	X(M_PUSHES, "rainbow_pushes_total", "Accepted /send/ calls") \
	X(M_WRITE_BATCHED, "rainbow_frames_batched_total", "Messages written to a connection together with others in one system call (several queued for it)") \
	X(M_HEARTBEAT_TIMEOUTS, "rainbow_heartbeat_timeouts_total", "Connections closed for not answering a ping within heartbeat_timeout") \
	X(M_CONN_STALLED, "rainbow_connections_stalled_total", "Times a connection's send queue did not move for 1 s (its client does not read) and was left out of the push backlog") \
	X(M_PUSHES_BUSY, "rainbow_pushes_refused_busy_total", "/send/ calls refused because more than push_backlog copies were waiting for the edge thread (answered busy, retry_after)") \
	X(M_REST_ERRORS, "rainbow_rest_errors_total", "REST calls answered with an error status") \
	X(M_SIGNATURE_ERRORS, "rainbow_signature_errors_total", "REST calls refused for their signature") \
	X(M_BEACONS_SENT, "rainbow_cluster_beacons_sent_total", "Cluster discovery beacons sent (one per destination)") \
	X(M_BEACON_SEND_ERRORS, "rainbow_cluster_beacon_send_errors_total", "Cluster beacons that could not be sent (the destination is then backed off)") \
	X(M_BEACONS_RECEIVED, "rainbow_cluster_beacons_received_total", "Cluster beacons received and accepted") \
	X(M_BEACONS_MALFORMED, "rainbow_cluster_beacons_ignored_malformed_total", "Cluster beacons ignored: malformed") \
	X(M_BEACONS_VERSION, "rainbow_cluster_beacons_ignored_version_total", "Cluster beacons ignored: not a beacon, or another version") \
	X(M_BEACONS_FOREIGN, "rainbow_cluster_beacons_ignored_foreign_total", "Cluster beacons ignored: another cluster_name") \
	X(M_BEACONS_FORGED, "rainbow_cluster_beacons_ignored_forged_total", "Cluster beacons ignored: MAC does not verify (forged, or another cluster_secret)") \
	X(M_BEACONS_STALE, "rainbow_cluster_beacons_ignored_stale_total", "Cluster beacons ignored: timestamp too old or in the future") \
	X(M_BEACONS_REPLAYED, "rainbow_cluster_beacons_ignored_replayed_total", "Cluster beacons ignored: not newer than one already accepted") \
	X(M_BEACONS_SELF, "rainbow_cluster_beacons_ignored_self_total", "Cluster beacons ignored: this node's own") \
	X(M_PEERS_JOINED, "rainbow_cluster_peers_joined_total", "Cluster peers discovered") \
	X(M_PEERS_DROPPED, "rainbow_cluster_peers_dropped_total", "Cluster peers dropped (timed out, left, or restarted)") \
	X(M_LINKS_UP, "rainbow_cluster_links_established_total", "Cluster links authenticated and up") \
	X(M_LINKS_LOST, "rainbow_cluster_links_lost_total", "Cluster links that went down (closed, heartbeat timeout, peer left or restarted)") \
	X(M_LINK_REFUSED, "rainbow_cluster_links_refused_total", "Cluster link handshakes refused (other version or cluster name, own id, wrong node, frames out of order)") \
	X(M_LINK_TLS_FAILED, "rainbow_cluster_link_tls_failures_total", "Cluster link TLS handshakes that failed (no certificate, one the CA did not sign, protocol error)") \
	X(M_LINK_AUTH_FAILED, "rainbow_cluster_link_auth_failures_total", "Cluster link handshakes whose AUTH did not verify (another cluster_secret, or forged)") \
	X(M_LINK_PROTO_ERRORS, "rainbow_cluster_link_protocol_errors_total", "Cluster links closed for a malformed or unexpected frame") \
	X(M_LINK_BACKPRESSURE, "rainbow_cluster_link_backpressure_total", "Frames not queued because a cluster link's output was over its high-water mark") \
	X(M_REMOTE_PUBLISHES, "rainbow_cluster_publishes_sent_total", "Pushes sent to other nodes (one per node with recipients)") \
	X(M_REMOTE_PUBLISHES_RX, "rainbow_cluster_publishes_received_total", "Pushes received from other nodes") \
	X(M_REMOTE_LEGS_FAILED, "rainbow_cluster_legs_failed_total", "Remote legs of pushes counted as failed (node down, link full, no receipt in time)")

enum metric_id {
#define METRIC_ENUM(id, name, help) id,
	METRICS_LIST(METRIC_ENUM)
#undef METRIC_ENUM
	M__COUNT
};

enum fwd_result {
	FWD_OK, FWD_HTTP_ERROR, FWD_TIMEOUT, FWD_UNREACHABLE, FWD_INVALID, FWD_OVER_LIMIT,
	FWD_BREAKER_OPEN, FWD__COUNT
};

enum drop_reason {
	DROP_CLOSED,               /* the connection was gone */
	DROP_SLOW_CONSUMER,        /* QoS 0 over send_queue_bytes */
	DROP_SLOW_CONSUMER_CLOSED, /* over send_queue_hard_bytes: closed */
	DROP_INFLIGHT_LIMIT,       /* QoS 1/2 over max_inflight_messages */
	DROP_UNACKED,              /* QoS 1/2 not acknowledged before its timeout */
	DROP_SESSION_FULL,         /* a session over its caps (session_overflow) */
	DROP__COUNT
};

extern atomic_uint_fast64_t metrics[M__COUNT];

static inline void metric_inc(enum metric_id id)
{
	atomic_fetch_add_explicit(&metrics[id], 1, memory_order_relaxed);
}

static inline void metric_add(enum metric_id id, uint64_t n)
{
	atomic_fetch_add_explicit(&metrics[id], n, memory_order_relaxed);
}

static inline uint64_t metric_get(enum metric_id id)
{
	return atomic_load_explicit(&metrics[id], memory_order_relaxed);
}

/* Packets by direction, command (0..15) and QoS (0..3). */
void metric_packet(int out, unsigned cmd, unsigned qos);
/* Packets sent again (SEND with DUP, or REL). */
void metric_retransmit(unsigned cmd);
void metric_forward(enum fwd_result r);
void metric_drop(enum drop_reason r);
/* A backend call (forward) took this long. */
void metric_backend_latency(double seconds);

/* Gauges sampled by the caller at render time. */
struct metric_gauges {
	size_t connections;
	size_t channels;
	long forwards_in_flight;
	size_t forward_queue_depth;
	size_t deliveries_in_flight;
	size_t pushes_waiting;
	size_t backend_pending;
	const char *extra;     /* whole families rendered elsewhere, or NULL */
};

struct evbuffer;
/* Append everything in Prometheus text format (0.0.4) to out. RB_OK, or
 * RB_ENOMEM with out holding part of it. */
int metrics_render(const struct metric_gauges *g, struct evbuffer *out);

#endif
