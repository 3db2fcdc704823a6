/*
 * core.h - the core thread: one libevent loop owning routing, connection
 * state, channels, QoS state, the REST API, the backend client and timers
 * (docs/architecture.md). Everything declared here is core thread only.
 *
 * A WebSocket connection is a struct conn, created when its upgrade
 * arrives at the door (or when the TLS listener reports it open) and freed
 * when the edge reports it closed. Other modules refer to a connection by
 * id and look it up again after any asynchronous step, since it may be
 * gone by then.
 */
#ifndef RB_CORE_H
#define RB_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "src/http/http_head.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/thread.h"

struct conf;
struct event_base;
struct backend;
struct backend_req;
struct backend_response;
struct channels;
struct qos_store;
struct rbuf;
struct fwd;
struct db;
struct strmap;
struct commit;
struct xq_msg;
struct httpd_req;
struct push;
struct push_set;
struct guard;
struct engine;
struct nonce_cache;
struct timeval;

/* Log lines per connection: at most this many per interval, then one
 * "suppressed N lines" summary, so no client can flood the log. */
#define CONN_LOG_BURST 20
#define CONN_LOG_INTERVAL_MS 10000

enum conn_state {
	CONN_HOOK,      /* connect hook under way (socket still at the door) */
	CONN_UPGRADING, /* handed to the edge; WebSocket handshake under way */
	CONN_OPEN,      /* established and admitted */
};

struct conn {
	struct core *core;
	uint64_t id;
	enum conn_state state;
	char identity[65];     /* 64 lowercase hex chars */
	char *device_id;
	char *platform;
	char *cookie;          /* RAINBOWCLIENTCOOKIE, echoed to the backend */
	bool v2, tls;
	bool admitted;         /* the connect hook said yes: close hook will fire */
	bool device_given;     /* the client sent X-DEVICEID (not generated) */
	bool wants_session;    /* session=1 asked for (v2 implies it) */
	bool session;          /* holds the session of device_id (session.c) */
	bool session_present;  /* the session existed (HELLO) */
	int fd;                /* while CONN_HOOK on the plain port, else -1 */
	size_t head_len;       /* bytes of request head still unread on fd */
	char *rehead;          /* head to replay to lws instead (see core.c) */
	struct backend_req *hook_req;
	struct kvlist chans;   /* channels this connection is in (names) */
	struct log_limit log;  /* every log line about this connection (CONN_LOG_*) */
	/* forwards (forward.c) */
	struct fwd *fq_head, *fq_tail; /* waiting for a slot, in arrival order */
	int fq_len;
	size_t fq_bytes;
	int inflight;          /* started: in flight or waiting for a route slot */
	struct fwd *rw_head;   /* started ones waiting for a route slot (guard.h) */
	bool rx_paused;
	unsigned malformed;    /* malformed packets seen (numbered in the log) */
	/* pushes (deliver.c) */
	struct idmap down;     /* msgid + 1 -> struct delivery in flight */
	uint16_t next_msgid;
	bool backlog;          /* its session has deliveries waiting in SQLite */
	struct idmap up_active; /* msgid + 1 -> QoS 2 forward queued or in flight */
};

struct core {
	struct conf *conf;
	const struct core_app *app;
	struct thread_owner owner; /* the core thread: asserted at entry points */
	uint32_t node_id;          /* random per start, non-zero; tags identities */
	struct event_base *base;
	struct idmap conns;        /* id -> struct conn */
	struct idmap by_identity;  /* identity_key() -> struct conn */
	size_t n_open;             /* conns in CONN_OPEN */
	struct channels *channels;
	struct qos_store *store;   /* in memory: connections without a session */
	struct qos_store *dstore;  /* SQLite: device sessions */
	struct db *db;
	struct strmap *sessions;   /* device -> struct conn holding its session */
	struct event *expire_timer;
	struct commit *commit;     /* group commit (src/core/commit.h) */
	struct backend *backend;   /* forwards */
	struct backend *hook_backend; /* connect and close hooks: a pool of their
	                           * own, so they never wait behind forwards */
	struct guard *guard;       /* per-route bounds and circuit breakers */
	struct engine *engine;     /* cross-node operations (src/msg/engine.h) */
	struct httpd *httpd;
	struct door *door;
	struct net_listener *tls_door; /* tls_port: sockets go to the edges */
	struct edge_pool *edges;   /* the edge threads (src/edge/pool.h) */
	unsigned edges_done;       /* XQ_EDGE_DONE seen while stopping */
	struct xq *inbox;          /* from the edge */
	int inbox_fd;              /* eventfd doorbell */
	struct event *inbox_ev;
	struct event *sig_term, *sig_int;
	struct event *stop_timer;
	int fwd_inflight;          /* all connections, waiting for a route slot included */
	struct push_set *pushes;   /* pushes awaiting receipts (src/msg/push.h) */
	size_t n_deliveries;
	const struct timeval *retry_tv; /* retry_interval, a libevent common timeout */
	struct nonce_cache *nonces; /* v2 signatures seen */
	char server_name[300];     /* "host:port" for /serverinfo/ */
	int port;                  /* the bound main port */
	time_t started;
	int stop_phase;            /* 0 running, 1 draining forwards, 2 closing, 3 done */
	int exit_code;
};

/*
 * What connections, messages and REST calls mean: the messaging layer
 * (src/msg/app.h) implements these, and the core calls them at the points
 * of a connection's life. The core includes nothing from src/msg. Every
 * callback runs on the core thread; a connection is never freed inside its
 * own callback.
 */
struct core_app {
	/* After the loop exists and before listeners open: the app's state
	 * (channels, stores, sessions...). RB_OK, or an error with err set. */
	int (*init)(struct core *c, char *err, size_t errlen);
	/* Shutdown, before the connections are freed; fini after them. */
	void (*stop)(struct core *c);
	void (*fini)(struct core *c);
	/* A REST request (httpd handler; arg is the core). */
	void (*http)(struct httpd_req *req, void *arg);
	/* An upgrade passed the door's checks: run the connect hook, then
	 * call core_admit() or core_refuse(). */
	void (*connect)(struct core *c, struct conn *cn, const struct kvlist *headers,
			const struct kvlist *args);
	/* Admitted: take cn's device session if it wants one; returns whether
	 * the session existed before (HELLO's session_present). */
	bool (*take_session)(struct core *c, struct conn *cn);
	/* The WebSocket is up (HELLO sent). */
	void (*opened)(struct core *c, struct conn *cn);
	/* One whole WebSocket message (borrowed: take a reference to keep it). */
	void (*message)(struct core *c, struct conn *cn, struct rbuf *buf, bool text);
	/* The edge reported the connection closed (cn is freed right after). */
	void (*closed)(struct core *c, struct conn *cn);
	/* cn is being freed, whatever its state: release everything of it. */
	void (*gone)(struct core *c, struct conn *cn);
};

/* Debug and sanitizer builds check that core entry points run on the core
 * thread (compiled out with NDEBUG). */
#define CORE_THREAD(c) THREAD_ASSERT(&(c)->owner)

/* Build everything (listeners bound, threads not started). NULL on error
 * (logged). Takes nothing from conf; conf and app must outlive the core. */
struct core *core_new(struct conf *conf, const struct core_app *app);
/* Start the edge thread and run the loop until shutdown completes.
 * Returns the process exit code. */
int core_run(struct core *c);
void core_free(struct core *c);

struct conn *core_conn(struct core *c, uint64_t id);
/* The connection with this identity, or NULL. */
struct conn *core_conn_by_identity(struct core *c, const char *identity);
/* The node an identity was made on (its last 8 hex digits), 0 if it is not
 * an identity. Every node tags the identities it makes with its node_id. */
uint32_t identity_node(const char *identity);
/* Can the REST API act on cn? True once the connect hook admitted it, also
 * while its upgrade is still completing: the client may already have its
 * 101 (sent by the edge) and its backend may subscribe it at once; the edge
 * keeps what is sent meanwhile until the handshake is done. */
bool conn_reachable(const struct conn *cn);

/* Queue one packet for a connection. payload is copied. */
void core_send_packet(struct core *c, uint64_t conn_id, uint8_t cmd, uint8_t qos,
		      bool dup, uint16_t msgid, uint16_t msgtype,
		      const void *payload, size_t len);
/* Queue a NAK (v2 connections only; a no-op for v1, which get silence). */
void core_send_nak(struct core *c, const struct conn *cn, uint16_t msgid, int code,
		   const char *message, bool temporary);
/* The same with a "retry_after" hint in seconds (> 0) in the JSON. */
void core_send_nak_retry(struct core *c, const struct conn *cn, uint16_t msgid, int code,
			 const char *message, bool temporary, double retry_after);
/* Ask the edge to close a connection with a WebSocket close code. */
void core_close_conn(struct core *c, uint64_t conn_id, uint16_t code, const char *reason);
/* Pause or resume reading from a connection (backpressure). */
void core_flow(struct core *c, struct conn *cn, bool on);

/* A connection was admitted by its connect hook (or without one). */
void core_admit(struct core *c, struct conn *cn);
/* The connect hook refused (401) or failed (503). */
void core_refuse(struct core *c, struct conn *cn, int status, const char *msg);

/* The store holding cn's QoS state, and the key of cn in it: the device
 * session's (durable) or the connection's own (in memory). */
struct qos_store *conn_store(struct core *c, const struct conn *cn);
const char *conn_key(const struct conn *cn);
/* Open the group-commit batch (if not open) before writing to the durable
 * store; returns conn_store(c, cn). Use for every write. */
struct qos_store *conn_store_w(struct core *c, const struct conn *cn);
void core_batch(struct core *c);

/* Mark the open batch for the crash tests (BATCH_* in src/core/commit.h). */
void core_mark(struct core *c, unsigned mark);
/* Everything sent to the edge goes through here: held while a batch is
 * open, so no acknowledgement precedes the COMMIT it depends on. */
void core_push_edge(struct core *c, struct xq_msg *m);
/* An HTTP answer, held like core_push_edge. Copies body. */
void core_reply(struct core *c, struct httpd_req *req, int status, const char *ctype,
		const char *body, size_t len);

/* Called by forward.c when the last in-flight work may have finished. */
void core_maybe_stopped(struct core *c);

#endif
