/*
 * rainbow.h - librainbow, a Rainbow client (docs/protocol.md) on
 * libwebsockets: connect with a device id, platform and token, the
 * rainbow.v2 subprotocol with session resume, SEND at QoS 0/1/2 with a
 * completion callback, pushes answered ACK / REC+COM (QoS 2 pushes reach
 * the application once per message id until the gateway's REL), heartbeat,
 * reconnection with jittered exponential backoff, sends queued while
 * disconnected. clients/c/README.md has an example.
 *
 * Threads: none of its own. One struct rb_ctx (one lws context) drives any
 * number of struct rb_conn; everything about a context, its connections
 * and their callbacks happens on the thread that calls rb_ctx_run(), and
 * every function here must be called from that thread (or, before the
 * first run, the thread that made the context). Callbacks run inside
 * rb_ctx_run() (and rb_ctx_free() for sends completing RB_SENT_CLOSED);
 * they may call any function here, including rb_send() and
 * rb_conn_close(), but never rb_ctx_free() or rb_ctx_run().
 *
 * Results are 0 (RB_OK) or a negative enum rb_err (protocol/rb.h).
 */
#ifndef RAINBOW_CLIENT_H
#define RAINBOW_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/rb.h"

struct rb_ctx;
struct rb_conn;

/* ----------------------------------------------------------------- context */

struct rb_ctx_opts {
	int connect_timeout_s; /* TCP connect + TLS + upgrade; 0: 10 */
	int lws_log_level;     /* libwebsockets' LLL_* mask; 0: errors only */
	const char *ca_file;   /* wss://: CA bundle (PEM); NULL: the system's */
	int max_connecting;    /* connection attempts under way at once (TCP
	                        * connect to HELLO); the others wait their turn
	                        * in order; 0: 256 */
};

/* A context with no connection. opts may be NULL (all defaults). NULL when
 * lws cannot make a context (the reason went to lws' log). */
struct rb_ctx *rb_ctx_new(const struct rb_ctx_opts *opts);

/*
 * Run the event loop: connect, read, write, time out, reconnect, call back.
 * Returns when timeout_ms has passed (timeout_ms < 0: never for that
 * reason), when a callback called rb_ctx_break(), or when the context has
 * no connection left. RB_OK, or RB_EIO if lws' service failed.
 */
int rb_ctx_run(struct rb_ctx *ctx, int timeout_ms);

/* Make the rb_ctx_run() under way return after its current step. */
void rb_ctx_break(struct rb_ctx *ctx);

/* Connections that have not reached RB_EV_DONE. */
size_t rb_ctx_conns(const struct rb_ctx *ctx);

/*
 * Close every connection at once (no close frame handshake awaited),
 * complete every pending send with RB_SENT_CLOSED (no other event is
 * delivered) and free everything. NULL is a no-op.
 */
void rb_ctx_free(struct rb_ctx *ctx);

/* ---------------------------------------------------------------- messages */

/* A NAK from the gateway (rainbow.v2 only): docs/protocol.md NAK codes. */
struct rb_nak {
	uint16_t msgid;      /* the SEND's, 0 for a QoS 0 SEND or a malformed packet */
	int code;            /* 400, 422, 429, 502, 503, 504 ...; 0 if the JSON had none */
	bool temporary;      /* the same request may succeed later */
	const char *message; /* never NULL; borrowed for the callback's duration */
};

enum rb_send_status {
	RB_SENT_OK = 0,   /* QoS 0: written to the socket; QoS 1: ACK; QoS 2: REC */
	RB_SENT_NAK,      /* the gateway refused it: see nak */
	RB_SENT_TIMEOUT,  /* no answer (or no connection) before the deadline */
	RB_SENT_CLOSED,   /* the connection was closed for good first (or, for
	                   * QoS 0, the socket failed while writing it) */
	RB_SENT_TOOBIG,   /* over the max_message_size the gateway's HELLO
	                   * announced (it would close the connection) */
};

struct rb_result {
	enum rb_send_status status;
	uint16_t msgid;          /* 0 for QoS 0 (and a QoS 1/2 SEND never written) */
	const uint8_t *reply;    /* OK, QoS 1/2: the backend's reply (ACK/REC
	                          * payload; may be empty); borrowed */
	size_t reply_len;
	struct rb_nak nak;       /* RB_SENT_NAK only */
};

/* Completion of one rb_send(): called exactly once, on the context thread. */
typedef void (*rb_send_fn)(struct rb_conn *c, const struct rb_result *r, void *arg);

/* A push (a SEND from the gateway). */
struct rb_push {
	uint16_t msgtype;
	uint16_t msgid;         /* 0 for QoS 0 */
	uint8_t qos;
	bool dup;               /* the gateway marked it a retransmission */
	const uint8_t *data;    /* payload, borrowed for the callback's duration */
	size_t len;
	/* Set by the push callback (optional): the payload of the ACK (QoS 1)
	 * or REC (QoS 2) answer, which the pusher gets as "data"; copied
	 * after the callback returns. Default: empty. */
	const void *reply;
	size_t reply_len;
};

/*
 * Push callback. QoS 1: called for every copy (at least once; a copy
 * marked dup may have been seen before), then ACK. QoS 2: called once per
 * message id until the gateway's REL (a retransmitted copy is answered REC
 * again, with an empty payload, without calling back), then COM on REL.
 * Across reconnects this holds for a connection with a session (a device
 * id, and rainbow.v2 or session=1): the gateway resends what was not
 * acknowledged.
 */
typedef void (*rb_push_fn)(struct rb_conn *c, struct rb_push *p, void *user);

/* ------------------------------------------------------------------ events */

enum rb_event_type {
	RB_EV_OPEN,   /* connected; under rainbow.v2 once HELLO arrived */
	RB_EV_CLOSED, /* a connection or an attempt ended; retry_ms says what next */
	RB_EV_NAK,    /* a NAK naming no send in flight (msgid 0: a QoS 0 SEND
	               * failed, or a packet of ours was malformed) */
	RB_EV_DONE,   /* the connection stopped for good: rb_conn_close(), a
	               * terminal close code, or no_reconnect. The last event;
	               * the struct rb_conn is freed once the callback returns */
};

struct rb_event {
	enum rb_event_type type;
	/* OPEN */
	bool v2;               /* the gateway accepted rainbow.v2 */
	bool session_present;  /* v2: a session was resumed */
	const char *identity;  /* v2: the connection's identity; "" under v1 */
	int heartbeat;         /* seconds between liveness checks; 0: none */
	/* CLOSED, DONE */
	int code;              /* the WebSocket close code the gateway sent, the
	                        * HTTP status of a refused upgrade (401, 503...),
	                        * or 0 (network error, timeout, local close) */
	const char *reason;    /* close reason or error text; never NULL */
	int retry_ms;          /* CLOSED: the next attempt in retry_ms ms */
	/* NAK */
	const struct rb_nak *nak;
};

typedef void (*rb_event_fn)(struct rb_conn *c, const struct rb_event *ev, void *user);

/* ------------------------------------------------------------- connections */

struct rb_conn_opts {
	const char *url;      /* ws://host[:port][/path][?query] or wss://; the
	                       * path defaults to /connect/ */
	const char *device;   /* X-DEVICEID query argument; NULL: none (the
	                       * gateway makes one up; then no session) */
	const char *platform; /* X-CLIENT-OS query argument, or NULL */
	const char *token;    /* query argument "token" (for the backend's
	                       * connect hook), or NULL */
	const char *query;    /* more query arguments, already encoded
	                       * ("channel=room&x=1"), or NULL */
	bool v1;              /* the original protocol: no rainbow.v2 offer
	                       * (no HELLO, no NAK) */
	bool session;         /* v1 with a device: ask for a session (session=1) */
	bool insecure;        /* wss://: accept any certificate */
	bool no_reconnect;    /* the first loss is final (RB_EV_DONE) */
	int send_timeout_ms;  /* rb_send()'s default deadline; 0: 30000 */
	int reconnect_min_ms; /* first reconnect delay's ceiling; 0: 500 */
	int reconnect_max_ms; /* cap of the delay; 0: 30000 */
	int heartbeat_s;      /* liveness interval when HELLO gives none (v1);
	                       * 0: none */
	int heartbeat_timeout_s; /* silence past the interval before the
	                          * connection counts as dead; 0: 10 */
	int max_inflight;     /* QoS 1/2 sends awaiting an answer; further ones
	                       * wait in order; 0: 64 */
	size_t max_message;   /* largest incoming message; 0: 1 MiB; larger ones
	                       * are dropped (and not answered) */
	rb_push_fn on_push;   /* may be NULL: pushes are answered with empty replies */
	rb_event_fn on_event; /* may be NULL */
	void *user;           /* passed to on_push and on_event */
};

/*
 * A connection on ctx; it starts connecting during the next rb_ctx_run().
 * The strings are copied. NULL on a bad URL (not ws:// or wss://, too
 * long) or out of memory.
 *
 * Reconnection: after any loss but a terminal one the connection is tried
 * again after rbc_backoff delays (reset by every successful open). Terminal
 * (RB_EV_DONE): rb_conn_close(); a close code 1000 or 4000..4499 from the
 * gateway (kicked, 4409 session taken over, 4401 refused); an upgrade
 * refused with HTTP 400..499 (401: the connect hook said no); no_reconnect.
 * QoS 1/2 sends in flight at a loss are sent again after the reconnect,
 * with DUP and their msgid (a QoS 2 one that got its REC gets REL instead).
 */
struct rb_conn *rb_conn_new(struct rb_ctx *ctx, const struct rb_conn_opts *opts);

/*
 * Queue a SEND of msgtype with data[0..len) (copied) at qos 0..2. It is
 * written in order with the others once connected. timeout_ms: 0 = the
 * connection's send_timeout_ms, < 0 = none. cb (may be NULL) is called
 * exactly once, never from inside rb_send(). RB_OK; RB_EINVAL (qos > 2);
 * RB_ECLOSED (the connection is closing); RB_ENOMEM.
 */
int rb_send(struct rb_conn *c, uint16_t msgtype, int qos, const void *data, size_t len,
	    int timeout_ms, rb_send_fn cb, void *arg);

/*
 * Stop for good: a close frame (1000) if connected, no reconnection; every
 * pending send completes with RB_SENT_CLOSED; then RB_EV_DONE, after which
 * c is freed. Calling it again is a no-op. Never frees c before returning.
 */
void rb_conn_close(struct rb_conn *c);

/* Sends not yet completed, plus QoS 2 sends between REC and COM. */
size_t rb_conn_pending(const struct rb_conn *c);

/* Open: connected (and under v2 HELLO received). */
bool rb_conn_is_open(const struct rb_conn *c);

/* The identity from the last HELLO ("" before one, or under v1). */
const char *rb_conn_identity(const struct rb_conn *c);

/* The opts' user pointer. */
void *rb_conn_user(const struct rb_conn *c);

/* Static name of an event type or send status. */
const char *rb_event_name(enum rb_event_type t);
const char *rb_send_status_name(enum rb_send_status s);

#endif
