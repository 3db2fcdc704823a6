/*
 * conf.h - the configuration: one table of options (name, type, default,
 * bounds, where it is stored, whether it reloads), parsed from rainbow.ini
 * with inih. Every option is documented in conf/rainbow.ini.
 *
 * Loaded once by main before threads start; read-only afterwards, so any
 * thread may read a struct conf without locking.
 */
#ifndef RB_CONF_H
#define RB_CONF_H

#include <stdbool.h>
#include <stddef.h>

struct conf {
	/* listeners */
	int port;                  /* 0: auto, the first free one of port_range */
	char *port_range;
	char *bind;
	int api_port;
	int tls_port;
	char *tls_cert;
	char *tls_key;
	/* backend */
	char *connect_url;
	char *forward_url;
	char *close_url;
	char *security_token;
	int forward_concurrency;
	int max_pending_forwards;
	size_t forward_queue_bytes;
	int backend_max_connections;
	int backend_max_queue;
	double backend_connect_timeout;
	double backend_timeout;
	size_t max_response_size;
	int hook_max_connections;  /* connect/close hooks' own pool */
	int route_max_inflight;    /* per message type; 0 = 3/4 of backend_max_connections */
	int route_max_queued;      /* per message type; 0 = backend_max_queue */
	int breaker_failures;      /* 0 = no circuit breaker */
	double breaker_cooldown;
	/* clients */
	bool require_device_id;
	size_t max_message_size;
	int max_connections;
	int edge_threads;          /* 0 = one per CPU (edge_pool) */
	char *edge_event_loop;     /* epoll (libev under lws) | poll (lws' own) */
	size_t send_queue_bytes;
	size_t send_queue_hard_bytes;
	int max_inflight_messages;
	double retry_interval;
	int heartbeat;
	int heartbeat_timeout;
	double handshake_timeout;
	bool strict_frames;
	int signature_window;
	/* REST API */
	char *api_signature;
	char *rest_status_codes;   /* compat | strict */
	char *serverinfo_auth;     /* none | signature | password */
	char *admin_password;
	double request_body_timeout;
	double http_idle_timeout;
	/* process */
	double shutdown_grace;
	char *log_level;
	char *log_file;
	char *data_dir;
	char *database;
	char *durability;
	double session_expiry;
	int session_max_messages;
	size_t session_max_bytes;
	char *session_overflow;
	char *udp_ports;           /* cluster: the UDP port range (first free one bound) */
	/* LAN cluster (cluster/): off while cluster_secret is empty */
	char *cluster_name;
	char *cluster_secret;
	char *cluster_seeds;       /* "host:port,host:port" */
	double cluster_beacon_interval;
	double cluster_peer_timeout;
	/* /send/ answers "busy" while more copies than this wait for the edge
	 * thread (0: no bound) */
	int push_backlog;
	/* Connection tokens (HS256 JWTs, protocol/token.h): off while empty */
	char *token_secret;
	bool token_required;        /* refuse clients without a token */
	int token_leeway;           /* seconds of clock skew on exp/nbf */
	char *cluster_tls_cert;     /* all three set: links in mutual TLS */
	char *cluster_tls_key;
	char *cluster_tls_ca;
};

/* Fill c with the built-in defaults (strings allocated). */
void conf_defaults(struct conf *c);

/*
 * Parse path into c (which holds defaults or earlier values). On error,
 * returns RB_EINVAL (bad option or value) or RB_EIO (unreadable file) and
 * writes "file:line: option: reason" into err[0..errlen). Stops at the
 * first error.
 */
int conf_load(struct conf *c, const char *path, char *err, size_t errlen);

/* Set one option by name from a string, as if read from a file (used by
 * the command line and by tests). Same error text, without file:line. */
int conf_set(struct conf *c, const char *name, const char *value, char *err,
	     size_t errlen);

/* Rules that span several options (e.g. tls_port needs tls_cert and
 * tls_key). RB_OK or RB_EINVAL with a message naming the options. */
int conf_check(const struct conf *c, char *err, size_t errlen);

/* Parse "lo-hi" (1 <= lo <= hi <= 65535); lo/hi may be NULL. RB_OK or
 * RB_EINVAL. */
int conf_port_range(const char *s, int *lo, int *hi);

/* Free the strings held by c. */
void conf_free(struct conf *c);

#endif
