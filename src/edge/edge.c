/*
 * Edge thread. Everything in this file runs on the edge thread except
 * edge_new/edge_start/edge_stop_thread/edge_free (main thread, while the
 * edge thread is not running) and the doorbell (any thread). Asserted:
 * e->owner is the edge thread while it runs, the main thread otherwise,
 * and every lws callback and inbox drain checks it (ASSERT_EDGE).
 *
 * Per-connection state is a struct econn hung on the wsi's opaque user
 * data and indexed by connection id. It is created when the core hands a
 * socket over (XQ_ADOPT) or, on the TLS listener, when the upgrade
 * completes; it dies only in LWS_CALLBACK_WSI_DESTROY, which lws calls for
 * every wsi, upgraded or not, so the core always hears XQ_CLOSED once.
 */
#include "src/edge/edge.h"

#include <assert.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>
#include <libwebsockets.h>

#include "protocol/rb.h"
#include "src/http/http_head.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/rbuf.h"
#include "src/base/thread.h"
#include "src/edge/seam.h"

_Static_assert(LWS_PRE <= RBUF_HEADROOM, "rbuf headroom must cover LWS_PRE");

#define CLOSE_FLUSH_SECS 5
/* What lws sends per send(2) is the protocols' tx_packet_size: a batch of
 * frames (edge.h) is one system call. */
#define WRITE_BATCH EDGE_WRITE_BATCH
/* lws keeps a receive buffer of this size per connection (rx_ubuf; its
 * default, 4 KB, was two thirds of an idle connection's memory) and hands
 * a longer message over in chunks of it, which on_receive reassembles. */
#define RX_CHUNK 1024
/* A connection whose queue has not moved for this long (its client does
 * not read) stops counting in the push backlog: one stuck client must not
 * hold back every publisher. Checked by sweep(), as the heartbeat. */
#define STALL_USECS (1000 * LWS_US_PER_MS)
#define SWEEP_USECS (250 * LWS_US_PER_MS)
/* Per-connection log lines: at most this many per interval (log.h). */
#define CONN_LOG_BURST 5
#define CONN_LOG_INTERVAL_MS 10000

/* Incremental UTF-8 check of a text message (RFC 3629: no overlong forms,
 * no surrogates, nothing above U+10FFFF), fed chunk by chunk as lws hands
 * the message over; a code point may straddle chunks and fragments. */
struct utf8v {
	uint8_t need;   /* continuation bytes still expected */
	uint8_t lo, hi; /* bounds of the next continuation byte */
};

struct oitem {
	struct oitem *next;
	struct rbuf *buf; /* shared body; this record is the per-recipient part */
	uint16_t msgid;   /* written into the header at send time if patch */
	uint8_t dup;
	bool patch;
	bool counted;     /* in the push backlog until written or dropped */
};

struct econn {
	uint64_t id;
	struct lws *wsi;
	struct oitem *out_head, *out_tail;
	size_t out_bytes;
	uint8_t *rx;       /* fragments of the message being received */
	size_t rx_len, rx_cap;
	struct utf8v utf8; /* state of the text message being received */
	struct log_limit log; /* this connection's log lines */
	bool established;
	bool v2, tls;
	bool closing;      /* flush the queue, then close with close_code */
	bool close_now;    /* close without flushing (slow consumer) */
	uint16_t close_code;
	uint16_t peer_code;
	uint32_t dropped;  /* QoS 0 pushes dropped (slow consumer) */
	bool stalled;      /* nothing written for STALL_USECS: its queue is
	                    * out of the push backlog (sweep) */
	bool want_write;   /* lws_callback_on_writable asked, not yet called */
	bool dirty;        /* on the edge's dirty list (flush_dirty) */
	struct econn *dirty_next;
	bool ping_due;     /* heartbeat: write a ping when writeable */
	bool ping_sent;    /* heartbeat: a ping is waiting for its pong */
	lws_usec_t valid_at; /* established, or the last pong */
	lws_usec_t progress; /* last write, or when its queue became non-empty */
	char close_reason[124]; /* a close frame holds at most 123 reason bytes */
};

struct edge {
	struct edge_opts opts;
	unsigned index, count;    /* this edge among count (pool.h) */
	bool live;                /* callbacks act: set once edge_new is done,
	                           * cleared before lws_context_destroy */
	struct lws_context *ctx;
	struct ev_loop *loop;     /* libev (epoll) under lws, or NULL: lws' own
	                           * poll(2) loop (opts.event_loop) */
	void *foreign[1];         /* lws' foreign_loops: { loop } */
	struct lws_vhost *door;   /* no listener: adopts sockets from the core */
	struct lws_vhost *tls;    /* lws-owned wss:// listener, or NULL */
	lws_retry_bo_t retry;     /* all zero: lws' own heartbeat off (sweep) */
	lws_usec_t ping_after, hangup_after; /* heartbeat, 0 = off */
	struct xq *inbox;         /* core -> edge */
	struct xq *to_core;       /* edge -> core */
	struct idmap conns;       /* id -> struct econn */
	uint8_t wbuf[LWS_PRE + WRITE_BATCH]; /* batch_frames() */
	lws_sorted_usec_list_t sweep_timer; /* sweep() */
	struct econn *dirty;      /* got messages in this drain (flush_dirty) */
	unsigned send_delay_ms;   /* test fault injection: RAINBOW_TEST_SEND_DELAY_MS */
	pthread_t thread;
	struct thread_owner owner; /* the main thread, the edge thread while it
	                            * runs (it claims itself), the main thread
	                            * again once joined */
	bool started;
	struct econn *adopting;   /* set during an adopt call: lws may run the
	                           * handshake (ESTABLISHED) before it returns */
	bool stopping;            /* XQ_STOP seen: EDGE_DONE when conns empty */
	bool done_sent;
	atomic_int exit_flag;     /* set by edge_stop_thread, read by the loop */
};


#define ASSERT_EDGE(e) THREAD_ASSERT(&(e)->owner)

static void to_core(struct edge *e, uint8_t type, uint64_t id, uint8_t flags,
		    struct rbuf *buf, char *text)
{
	struct xq_msg *m = xq_msg_new(type, id, 0);
	if (!m) {
		/* Cannot tell the core: the connection would leak there. Losing
		 * a malloc this small means the process is finished anyway. */
		log_error("edge: out of memory for a seam message");
		rbuf_unref(buf);
		free(text);
		abort();
	}
	m->flags = flags;
	m->buf = buf;
	m->text = text;
	xq_push(e->to_core, m);
}

/* Feeds n bytes; false as soon as they cannot be UTF-8. */
static bool utf8_feed(struct utf8v *u, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint8_t c = p[i];

		if (u->need) {
			if (c < u->lo || c > u->hi)
				return false;
			u->lo = 0x80;
			u->hi = 0xbf;
			u->need--;
			continue;
		}
		if (c < 0x80)
			continue;
		u->lo = 0x80;
		u->hi = 0xbf;
		if (c >= 0xc2 && c <= 0xdf) {
			u->need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			u->need = 2;
			if (c == 0xe0)
				u->lo = 0xa0; /* overlong */
			else if (c == 0xed)
				u->hi = 0x9f; /* surrogates */
		} else if (c >= 0xf0 && c <= 0xf4) {
			u->need = 3;
			if (c == 0xf0)
				u->lo = 0x90; /* overlong */
			else if (c == 0xf4)
				u->hi = 0x8f; /* above U+10FFFF */
		} else {
			return false; /* 0x80..0xc1 (stray, overlong), 0xf5..0xff */
		}
	}
	return true;
}

/* RFC 6455 7.4: the codes a peer may put in a close frame. 1012..1014 are
 * registered since, but lws 4.1 turns them into 1002 before we see them. */
static bool close_code_ok(unsigned code)
{
	return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	       (code >= 3000 && code <= 4999);
}

static struct econn *econn_new(uint64_t id)
{
	struct econn *ec = calloc(1, sizeof(*ec));
	if (ec) {
		ec->id = id;
		log_limit_init(&ec->log, CONN_LOG_BURST, CONN_LOG_INTERVAL_MS);
	}
	return ec;
}

/* Ask lws for a writeable callback (once: until it comes). */
static void want_write(struct econn *ec)
{
	if (!ec->want_write) {
		ec->want_write = true;
		lws_callback_on_writable(ec->wsi);
	}
}

/* Drops every queued copy; they leave the push backlog (xq_settle). */
static void queue_clear(struct edge *e, struct econn *ec)
{
	struct oitem *it = ec->out_head;
	size_t n = 0;
	while (it) {
		struct oitem *next = it->next;
		n += it->counted;
		rbuf_unref(it->buf);
		free(it);
		it = next;
	}
	ec->out_head = ec->out_tail = NULL;
	ec->out_bytes = 0;
	if (n)
		xq_settle(e->inbox, n);
}

static void start_close(struct edge *e, struct econn *ec, uint16_t code, const char *reason,
			bool now)
{
	if (ec->closing && !now)
		return;
	ec->closing = true;
	ec->close_now = ec->close_now || now;
	ec->close_code = code;
	snprintf(ec->close_reason, sizeof(ec->close_reason), "%s", reason ? reason : "");
	if (now)
		queue_clear(e, ec);
	if (now || !ec->established) {
		/* A slow consumer's socket may never become writeable again, so
		 * waiting to write a close frame could wait forever: drop it. */
		lws_set_timeout(ec->wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
		return;
	}
	/* Flush, then close with a close frame; a peer that stops reading
	 * meanwhile still goes within CLOSE_FLUSH_SECS. */
	lws_set_timeout(ec->wsi, PENDING_TIMEOUT_CLOSE_SEND, CLOSE_FLUSH_SECS);
	want_write(ec);
}

static void maybe_done(struct edge *e)
{
	if (e->stopping && !e->done_sent && e->conns.len == 0) {
		e->done_sent = true;
		to_core(e, XQ_EDGE_DONE, 0, 0, NULL, NULL);
	}
}

/*
 * Queues each recipient's copy of a push. A copy stays in the push backlog
 * (xq_backlog) until it is written to its socket or dropped, so /send/
 * sees what waits here too, not only what waits in the seam.
 */
static void do_send(struct edge *e, struct xq_msg *m)
{
	size_t gone = 0; /* copies not queued: settled at once */

	for (size_t i = 0; i < m->nids; i++) {
		struct econn *ec = idmap_get(&e->conns, m->rcpts[i].id);
		gone++;
		if (!ec || ec->closing) {
			metric_drop(DROP_CLOSED);
			continue;
		}
		size_t after = ec->out_bytes + m->buf->len;
		if ((m->flags & XQF_DROPPABLE) && after > e->opts.send_queue_bytes) {
			/* QoS 0 is at most once: shed it rather than grow the queue. */
			if (ec->dropped++ == 0)
				log_limited(&ec->log, LOG_INFO,
					    "conn %llu: send queue over %zu bytes, dropping QoS 0 pushes",
					    (unsigned long long)ec->id, e->opts.send_queue_bytes);
			metric_drop(DROP_SLOW_CONSUMER);
			continue;
		}
		if (after > e->opts.send_queue_hard_bytes) {
			metric_drop(DROP_SLOW_CONSUMER_CLOSED);
			log_limited(&ec->log, LOG_INFO,
				    "conn %llu: send queue over %zu bytes, closing (slow consumer)",
				    (unsigned long long)ec->id, e->opts.send_queue_hard_bytes);
			start_close(e, ec, 1008, "slow consumer", true);
			continue;
		}
		struct oitem *it = malloc(sizeof(*it));
		if (!it) {
			start_close(e, ec, 1011, "out of memory", true);
			continue;
		}
		it->next = NULL;
		it->buf = rbuf_ref(m->buf);
		it->patch = m->flags & XQF_PATCH;
		it->msgid = m->rcpts[i].msgid;
		it->dup = m->rcpts[i].dup;
		it->counted = !ec->stalled;
		gone -= it->counted;
		if (ec->out_tail) {
			ec->out_tail->next = it;
		} else {
			ec->out_head = it;
			ec->progress = lws_now_usecs();
		}
		ec->out_tail = it;
		ec->out_bytes += m->buf->len;
		if (ec->established && !ec->dirty) {
			ec->dirty = true;
			ec->dirty_next = e->dirty;
			e->dirty = ec;
		}
	}
	if (gone)
		xq_settle(e->inbox, gone);
}

/* Takes m->fd (sets it to -1): lws owns it, or it is closed. */
static void do_adopt(struct edge *e, struct xq_msg *m)
{
	int fd = m->fd;

	m->fd = -1;
	struct econn *ec = econn_new(m->id);
	if (!ec || idmap_put(&e->conns, m->id, ec) != RB_OK) {
		free(ec);
		close(fd);
		to_core(e, XQ_CLOSED, m->id, 0, NULL, NULL);
		return;
	}
	/* lws reads the untouched handshake from the socket: the core only
	 * peeked at it (a TLS socket: not even that; lws runs the TLS and the
	 * WebSocket handshakes). The fd is lws' from here: on failure it has
	 * already closed it. */
	struct lws *wsi;
	e->adopting = ec;
	ec->tls = m->flags & XQF_TLS;
	if (ec->tls && !e->tls) {
		close(fd); /* cannot happen: the core listens only with TLS on */
		wsi = NULL;
	} else if (ec->tls) {
		wsi = lws_adopt_descriptor_vhost(e->tls, LWS_ADOPT_SOCKET | LWS_ADOPT_HTTP |
						 LWS_ADOPT_ALLOW_SSL,
						 (lws_sock_file_fd_type){ .sockfd = fd }, NULL, NULL);
	} else if (m->buf) {
		wsi = lws_adopt_socket_vhost_readbuf(e->door, fd, (const char *)m->buf->data,
						     m->buf->len);
	} else {
		wsi = lws_adopt_socket_vhost(e->door, fd);
	}
	e->adopting = NULL;
	/* A failed adoption may already have destroyed the wsi it made, and
	 * with it ec (on_destroy: XQ_CLOSED sent, ec freed and out of the
	 * map). Only what is still in the map is ours to undo. */
	if (idmap_get(&e->conns, m->id) != ec)
		return;
	if (!wsi) {
		log_limited(&ec->log, LOG_INFO, "conn %llu: lws could not adopt the socket (%s)",
			    (unsigned long long)m->id, ec->tls ? "TLS" : "plain");
		idmap_del(&e->conns, m->id);
		free(ec);
		to_core(e, XQ_CLOSED, m->id, 0, NULL, NULL);
		return;
	}
	ec->wsi = wsi;
	lws_set_opaque_user_data(wsi, ec);
}

static void flush_dirty(struct edge *e);

static void drain_inbox(struct edge *e)
{
	struct xq_msg *m, *next;
	size_t i;
	uint64_t id;
	void *val;

	ASSERT_EDGE(e);
	for (m = xq_drain(e->inbox); m; m = next) {
		next = m->next;
		struct econn *ec = m->id ? idmap_get(&e->conns, m->id) : NULL;
		switch (m->type) {
		case XQ_ADOPT:
			do_adopt(e, m);
			break;
		case XQ_SEND:
			if (e->send_delay_ms) /* a slow edge, for the back-pressure test */
				usleep(e->send_delay_ms * 1000u);
			do_send(e, m);
			break;
		case XQ_CLOSE:
			if (ec)
				start_close(e, ec, m->code, m->text, false);
			break;
		case XQ_FLOW:
			if (ec && !ec->closing)
				lws_rx_flow_control(ec->wsi, (m->flags & XQF_ON) ? 1 : 0);
			break;
		case XQ_STOP:
			e->stopping = true;
			for (i = 0; idmap_next(&e->conns, &i, &id, &val);)
				start_close(e, val, 1001, "going away", false);
			maybe_done(e);
			break;
		default:
			log_error("edge: unexpected seam message %d", m->type);
			break;
		}
		xq_msg_free(m);
	}
	flush_dirty(e);
}

/* Headers for the connect hook of a TLS connection (the plain port parses
 * the raw head instead). lws 4.1 cannot enumerate unknown headers, so this
 * passes the well-known ones, the Rainbow device headers and every query
 * argument; documented in README. */
static char *tls_headers(struct lws *wsi)
{
	static const struct {
		enum lws_token_indexes tok;
		const char *name;
	} known[] = {
		{ WSI_TOKEN_HTTP_USER_AGENT, "User-Agent" },
		{ WSI_TOKEN_HTTP_COOKIE, "Cookie" },
		{ WSI_TOKEN_HTTP_AUTHORIZATION, "Authorization" },
		{ WSI_TOKEN_HTTP_ACCEPT_LANGUAGE, "Accept-Language" },
		{ WSI_TOKEN_HTTP_REFERER, "Referer" },
		{ WSI_TOKEN_X_FORWARDED_FOR, "X-Forwarded-For" },
		{ WSI_TOKEN_PROTOCOL, "Sec-WebSocket-Protocol" },
	};
	static const char *const custom[] = { "x-deviceid:", "x-client-os:" };
	struct kvlist l = { 0 };
	char buf[1024];
	int n;

	for (size_t i = 0; i < RB_ARRAY_LEN(known); i++) {
		n = lws_hdr_copy(wsi, buf, sizeof(buf), known[i].tok);
		if (n > 0)
			kv_add(&l, known[i].name, strlen(known[i].name), buf, (size_t)n);
	}
	for (size_t i = 0; i < RB_ARRAY_LEN(custom); i++) {
		int nl = (int)strlen(custom[i]);
		n = lws_hdr_custom_copy(wsi, buf, sizeof(buf), custom[i], nl);
		if (n > 0)
			kv_add(&l, custom[i], (size_t)nl - 1, buf, (size_t)n);
	}
	for (int idx = 0; lws_hdr_copy_fragment(wsi, buf, sizeof(buf),
						WSI_TOKEN_HTTP_URI_ARGS, idx) > 0; idx++) {
		char *eq = strchr(buf, '=');
		if (eq)
			kv_add(&l, buf, (size_t)(eq - buf), eq + 1, strlen(eq + 1));
		else
			kv_add(&l, buf, strlen(buf), "", 0);
	}
	char *s = kv_serialize(&l);
	kv_free(&l);
	return s;
}

/* The econn of a wsi, also while lws is still inside the adopt call. */
static struct econn *econn_of(struct edge *e, struct lws *wsi)
{
	struct econn *ec = lws_get_opaque_user_data(wsi);
	if (!ec && e && e->adopting) {
		ec = e->adopting;
		ec->wsi = wsi;
		lws_set_opaque_user_data(wsi, ec);
	}
	return ec;
}

static int on_established(struct edge *e, struct lws *wsi)
{
	struct econn *ec = econn_of(e, wsi);
	char *hdrs = NULL;

	if (!ec)
		return -1; /* every connection is adopted (XQ_ADOPT) */
	if (ec->tls) {
		/* The connection is new to the core: its head was inside the
		 * TLS. Reading pauses until the connect hook admits it (XQ_FLOW
		 * on). */
		hdrs = tls_headers(wsi);
		lws_rx_flow_control(wsi, 0);
	}
	ec->established = true;
	ec->valid_at = lws_now_usecs();
	ec->v2 = strcmp(lws_get_protocol(wsi)->name, "rainbow.v2") == 0;
	to_core(e, XQ_OPENED, ec->id, (uint8_t)((ec->v2 ? XQF_V2 : 0) | (ec->tls ? XQF_TLS : 0)),
		NULL, hdrs);
	if (e->stopping)
		start_close(e, ec, 1001, "going away", false);
	else if (ec->closing || ec->out_head)
		want_write(ec);
	return 0;
}

static int on_receive(struct edge *e, struct econn *ec, struct lws *wsi,
		      const uint8_t *in, size_t len)
{
	bool first = lws_is_first_fragment(wsi), final = lws_is_final_fragment(wsi) &&
		     lws_remaining_packet_payload(wsi) == 0;
	bool text = !lws_frame_is_binary(wsi);

	if (ec->closing)
		return 0;
	ec->valid_at = lws_now_usecs(); /* a sign of life, as a pong is */
	ec->ping_sent = false;
	if (first) {
		ec->rx_len = 0;
		memset(&ec->utf8, 0, sizeof(ec->utf8));
	}
	if (ec->rx_len + len > e->opts.max_message_size) {
		metric_inc(M_RX_TOO_BIG);
		log_limited(&ec->log, LOG_INFO, "conn %llu: message over max_message_size %zu, closing 1009",
			    (unsigned long long)ec->id, e->opts.max_message_size);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
				 (unsigned char *)"message too big", 15);
		return -1;
	}
	/* RFC 6455 8.1: a text message that is not UTF-8 fails the connection
	 * (lws' own check is off: it would also drop a close frame with a bad
	 * reason without answering 1002, see on_peer_close()). */
	if (text && (!utf8_feed(&ec->utf8, in, len) || (final && ec->utf8.need))) {
		log_limited(&ec->log, LOG_INFO, "conn %llu: text message is not UTF-8, closing 1007",
			    (unsigned long long)ec->id);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_INVALID_PAYLOAD,
				 (unsigned char *)"invalid utf-8", 13);
		return -1;
	}
	uint8_t flags = text ? XQF_TEXT : 0;
	struct rbuf *b;
	if (first && final) {
		/* The common case: one frame, no reassembly copy. */
		b = rbuf_new2(in, len, NULL, 0);
	} else {
		if (ec->rx_len + len > ec->rx_cap) {
			size_t ncap = ec->rx_cap ? ec->rx_cap : 1024;
			while (ncap < ec->rx_len + len)
				ncap *= 2;
			uint8_t *nrx = realloc(ec->rx, ncap);
			if (!nrx)
				return -1;
			ec->rx = nrx;
			ec->rx_cap = ncap;
		}
		/* An empty fragment may come before anything was allocated:
		 * rx is NULL then, and memcpy must not see it. */
		if (len)
			memcpy(ec->rx + ec->rx_len, in, len);
		ec->rx_len += len;
		if (!final)
			return 0;
		b = rbuf_new2(ec->rx, ec->rx_len, NULL, 0);
		/* Do not keep a large reassembly buffer around per idle client. */
		if (ec->rx_cap > 4096) {
			free(ec->rx);
			ec->rx = NULL;
			ec->rx_cap = 0;
		}
		ec->rx_len = 0;
	}
	if (!b)
		return -1;
	to_core(e, XQ_RX, ec->id, flags, b, NULL);
	return 0;
}

/*
 * A close frame from the peer (payload: nothing, or a code and a UTF-8
 * reason). lws has already replaced the codes it knows to be reserved by
 * 1002 and will echo the payload as its answer; what it lets through (a
 * 1-byte payload, codes from 5000 up, a reason that is not UTF-8) is a
 * protocol error answered here with 1002. Returning -1 makes lws send our
 * close reason instead of the echo, then drop the socket.
 */
static int on_peer_close(struct econn *ec, struct lws *wsi, const uint8_t *in, size_t len)
{
	unsigned code = len >= 2 ? (unsigned)(in[0] << 8 | in[1]) : 0;
	struct utf8v u = { 0 };
	const char *bad = NULL;

	if (len == 1)
		bad = "1-byte payload";
	else if (len >= 2 && !close_code_ok(code))
		bad = "reserved code";
	else if (len > 2 && (!utf8_feed(&u, in + 2, len - 2) || u.need))
		bad = "reason not UTF-8";
	if (!bad) {
		if (ec && len >= 2)
			ec->peer_code = (uint16_t)code;
		return 0;
	}
	if (ec)
		log_limited(&ec->log, LOG_INFO, "conn %llu: invalid close frame (%s, code %u), closing 1002",
			    (unsigned long long)ec->id, bad, code);
	lws_close_reason(wsi, LWS_CLOSE_STATUS_PROTOCOL_ERR, (unsigned char *)"invalid close frame",
			 19);
	return -1;
}

/* SEND qos1/2: byte 0 holds DUP, bytes 3..4 the msgid of this copy. */
static void patch_send(uint8_t *d, const struct oitem *it)
{
	d[0] = (uint8_t)((d[0] & ~0x08) | (it->dup ? 0x08 : 0));
	d[3] = (uint8_t)(it->msgid >> 8);
	d[4] = (uint8_t)it->msgid;
}

/* RFC 6455 5.2 header of an unmasked, final binary frame; its length. */
static size_t frame_head(uint8_t *h, size_t len)
{
	h[0] = 0x82;
	if (len < 126) {
		h[1] = (uint8_t)len;
		return 2;
	}
	if (len <= 0xffff) {
		h[1] = 126;
		h[2] = (uint8_t)(len >> 8);
		h[3] = (uint8_t)len;
		return 4;
	}
	h[1] = 127;
	for (int i = 0; i < 8; i++)
		h[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
	return 10;
}

static struct oitem *queue_pop(struct econn *ec)
{
	struct oitem *it = ec->out_head;
	ec->out_head = it->next;
	if (!ec->out_head)
		ec->out_tail = NULL;
	ec->out_bytes -= it->buf->len;
	return it;
}

/*
 * Queued messages go out in one write: their frames are built here, one
 * after the other, in the edge's batch buffer and handed to lws as raw
 * bytes (LWS_WRITE_HTTP is sent as is on a WebSocket, through TLS when
 * there is TLS), one send(2) where lws_write would make one each. A QoS
 * 1/2 SEND gets its recipient's msgid and DUP in the copy, so the shared
 * buffer is only read. Returns the number of bytes written to the buffer
 * (0: the first message does not fit, EDGE_IN_PLACE; the caller sends it
 * alone); *batched is the number of messages, *copies those of them
 * counted in the push backlog.
 */
static size_t batch_frames(struct edge *e, struct econn *ec, size_t *copies, size_t *batched)
{
	uint8_t *p = e->wbuf + LWS_PRE, *end = p + WRITE_BATCH;

	*copies = *batched = 0;
	while (ec->out_head && (size_t)(end - p) >= ec->out_head->buf->len + 10) {
		struct oitem *it = queue_pop(ec);
		p += frame_head(p, it->buf->len);
		memcpy(p, it->buf->data, it->buf->len);
		if (it->patch)
			patch_send(p, it);
		p += it->buf->len;
		*copies += it->counted;
		rbuf_unref(it->buf);
		free(it);
		(*batched)++;
	}
	return (size_t)(p - (e->wbuf + LWS_PRE));
}

/* Writes what fits in one system call from the head of ec's queue (a
 * batch of frames, or one long message in place). -1 if the socket failed
 * (lws closes it once the caller returns -1 or the timeout fires). */
static int write_queue(struct edge *e, struct econn *ec)
{
	struct oitem *it = ec->out_head;
	int n;
	size_t len;

	ec->progress = lws_now_usecs();
	ec->stalled = false;
	if (!EDGE_IN_PLACE(it->buf->len)) {
		size_t copies, batched;
		len = batch_frames(e, ec, &copies, &batched);
		n = lws_write(ec->wsi, e->wbuf + LWS_PRE, len, LWS_WRITE_HTTP);
		if (copies)
			xq_settle(e->inbox, copies);
		if (batched > 1)
			metric_add(M_WRITE_BATCHED, batched);
	} else {
		queue_pop(ec);
		/* A long message (EDGE_IN_PLACE): only this thread touches its
		 * buffer once the core let go (pool.c gives each edge its own),
		 * the frame header goes into its headroom. Sharing it among
		 * this edge's recipients is safe: this thread writes them one
		 * at a time and lws copies any unsent remainder. */
		if (it->patch)
			patch_send(it->buf->data, it);
		len = it->buf->len;
		n = lws_write(ec->wsi, it->buf->data, len, LWS_WRITE_BINARY);
		if (it->counted)
			xq_settle(e->inbox, 1);
		rbuf_unref(it->buf);
		free(it);
	}
	return n < (int)len ? -1 : 0;
}

static int on_writeable(struct edge *e, struct econn *ec, struct lws *wsi)
{
	ec->want_write = false;
	if (ec->ping_due && !ec->close_now) {
		ec->ping_due = false;
		ec->ping_sent = true;
		/* Not empty: lws 4.1 hands an empty pong to no callback. */
		memcpy(e->wbuf + LWS_PRE, "rbhb", 4);
		if (lws_write(wsi, e->wbuf + LWS_PRE, 4, LWS_WRITE_PING) < 4)
			return -1;
		if (ec->out_head || ec->closing)
			want_write(ec);
		return 0;
	}
	if (ec->out_head && !ec->close_now) {
		if (write_queue(e, ec) < 0)
			return -1;
		if (ec->out_head || ec->closing)
			want_write(ec);
		return 0;
	}
	if (ec->closing) {
		lws_close_reason(wsi, (enum lws_close_status)ec->close_code,
				 (unsigned char *)ec->close_reason, strlen(ec->close_reason));
		return -1;
	}
	return 0;
}

/*
 * After a drain of the inbox: the connections that got messages write
 * them now, without waiting for poll/epoll to report them writeable (and
 * without two changes of their POLLOUT interest per message), unless lws
 * still holds unsent output of theirs (lws_partial_buffered: they wait for
 * their writeable callback then, and their queue, bounded by
 * send_queue_bytes, keeps what comes meanwhile). So lws never holds more
 * than one write (a batch) of a connection that does not read.
 */
static void flush_dirty(struct edge *e)
{
	struct econn *ec = e->dirty;

	e->dirty = NULL;
	while (ec) {
		struct econn *next = ec->dirty_next;
		ec->dirty = false;
		ec->dirty_next = NULL;
		if (ec->out_head && !ec->closing && !ec->want_write) {
			if (lws_partial_buffered(ec->wsi))
				want_write(ec);
			else if (write_queue(e, ec) < 0)
				start_close(e, ec, 1006, "write failed", true);
			else if (ec->out_head)
				want_write(ec);
		}
		ec = next;
	}
}

/* A connection whose queue has not moved for STALL_USECS leaves the push
 * backlog (its queued copies are settled, later ones are not counted)
 * until it writes again. Its copies are still sent if it recovers;
 * send_queue_bytes and the heartbeat deal with it if it does not. Returns
 * the copies settled. */
static size_t check_stall(struct econn *ec, lws_usec_t now)
{
	size_t n = 0;

	if (!ec->out_head || ec->stalled || now - ec->progress < STALL_USECS)
		return 0;
	ec->stalled = true;
	for (struct oitem *it = ec->out_head; it; it = it->next) {
		n += it->counted;
		it->counted = false;
	}
	metric_inc(M_CONN_STALLED);
	log_limited(&ec->log, LOG_INFO, "conn %llu: %zu bytes queued and none written for "
		    "%d ms: left out of the push backlog", (unsigned long long)ec->id,
		    ec->out_bytes, (int)(STALL_USECS / LWS_US_PER_MS));
	return n;
}

/* The heartbeat (RFC 6455 ping/pong): a ping once `heartbeat` seconds have
 * passed since the connection opened or last showed a sign of life (a pong
 * or any message); hung up when `heartbeat_timeout` more pass without one. lws 4.1 can do this
 * itself, but keeps every connection's timer in one sorted list: each pong
 * walked the whole list, which at 19,000 connections pinged every 2 s
 * took a whole core. */
static void heartbeat(struct edge *e, struct econn *ec, lws_usec_t now)
{
	if (!e->ping_after || !ec->established || ec->closing)
		return;
	if (now - ec->valid_at >= e->hangup_after) {
		metric_inc(M_HEARTBEAT_TIMEOUTS);
		log_limited(&ec->log, LOG_INFO, "conn %llu: no pong within heartbeat_timeout, "
			    "closing", (unsigned long long)ec->id);
		start_close(e, ec, 1001, "heartbeat timeout", true);
	} else if (now - ec->valid_at >= e->ping_after && !ec->ping_sent && !ec->ping_due) {
		ec->ping_due = true;
		want_write(ec);
	}
}

/* Every SWEEP_USECS, over every connection of this edge: stalls and the
 * heartbeat. O(connections) a sweep, O(1) a connection. */
static void sweep(lws_sorted_usec_list_t *sul)
{
	struct edge *e = lws_container_of(sul, struct edge, sweep_timer);
	lws_usec_t now = lws_now_usecs();
	size_t i = 0, n = 0;
	uint64_t id;
	void *val;

	ASSERT_EDGE(e);
	while (idmap_next(&e->conns, &i, &id, &val)) {
		n += check_stall(val, now);
		heartbeat(e, val, now);
	}
	if (n)
		xq_settle(e->inbox, n);
	lws_sul_schedule(e->ctx, 0, &e->sweep_timer, sweep, SWEEP_USECS);
}

static void on_destroy(struct edge *e, struct lws *wsi)
{
	struct econn *ec = lws_get_opaque_user_data(wsi);

	if (!ec)
		return;
	lws_set_opaque_user_data(wsi, NULL);
	idmap_del(&e->conns, ec->id);
	for (struct econn **p = &e->dirty; ec->dirty && *p; p = &(*p)->dirty_next)
		if (*p == ec) {
			*p = ec->dirty_next;
			break;
		}
	if (ec->dropped)
		log_limited(&ec->log, LOG_INFO, "conn %llu: %u QoS 0 pushes were dropped (slow consumer)",
			    (unsigned long long)ec->id, ec->dropped);
	if (ec->log.suppressed) {
		char who[32];
		snprintf(who, sizeof(who), "conn %llu", (unsigned long long)ec->id);
		log_limit_flush(&ec->log, LOG_INFO, who);
	}
	struct xq_msg *m = xq_msg_new(XQ_CLOSED, ec->id, 0);
	if (!m)
		abort(); /* as in to_core(): the core must hear of every close */
	m->code = ec->peer_code;
	m->count = ec->dropped;
	xq_push(e->to_core, m);
	queue_clear(e, ec);
	free(ec->rx);
	free(ec);
	maybe_done(e);
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user,
		    void *in, size_t len)
{
	struct lws_context *cx = lws_get_context(wsi);
	struct edge *e = cx ? lws_context_user(cx) : NULL;
	struct econn *ec;

	/* Not live while lws calls in from edge_new/edge_free. */
	if (e && !e->live)
		e = NULL;
	if (e)
		ASSERT_EDGE(e);
	switch (reason) {
	case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
		if (e)
			drain_inbox(e);
		return 0;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		/* Only /connect/ upgrades. The plain port checked this already;
		 * the TLS listener is checked here. */
		char uri[256];
		if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		    (strcmp(uri, "/connect/") && strcmp(uri, "/connect")))
			return 1;
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		return on_established(e, wsi);
	case LWS_CALLBACK_RECEIVE:
		ec = econn_of(e, wsi);
		return ec ? on_receive(e, ec, wsi, in, len) : -1;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		ec = lws_get_opaque_user_data(wsi);
		return ec ? on_writeable(e, ec, wsi) : 0;
	case LWS_CALLBACK_RECEIVE_PONG:
		ec = lws_get_opaque_user_data(wsi);
		if (ec) {
			ec->valid_at = lws_now_usecs();
			ec->ping_sent = false;
		}
		return 0;
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		return on_peer_close(lws_get_opaque_user_data(wsi), wsi, in, len);
	case LWS_CALLBACK_HTTP:
		/* A plain HTTP request on an lws socket (TLS port, or a client
		 * that pipelined one): the REST API lives on the plain port. */
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return -1;
	case LWS_CALLBACK_WSI_DESTROY:
		if (e) {
			econn_of(e, wsi);
			on_destroy(e, wsi);
		}
		return 0;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
	/* The first protocol is the one a client offering none (or none we
	 * know) gets: the original Rainbow behaviour. */
	{ "rainbow", callback, 0, RX_CHUNK, 0, NULL, WRITE_BATCH + 16 },
	{ "rainbow.v2", callback, 0, RX_CHUNK, 0, NULL, WRITE_BATCH + 16 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 }
};

static void ring_edge(void *arg)
{
	struct edge *e = arg;
	lws_cancel_service(e->ctx);
}

struct edge *edge_new(const struct edge_opts *opts, unsigned index, unsigned count,
		      struct xq *to_core_q)
{
	struct lws_context_creation_info info;
	struct edge *e = calloc(1, sizeof(*e));

	if (!e)
		return NULL;
	thread_owner_set(&e->owner);
	e->opts = *opts;
	e->index = index;
	e->count = count;
	e->to_core = to_core_q;
	const char *delay = getenv("RAINBOW_TEST_SEND_DELAY_MS");
	if (delay && *delay) {
		e->send_delay_ms = (unsigned)strtoul(delay, NULL, 10);
		log_warn("RAINBOW_TEST_SEND_DELAY_MS=%u: each push waits that long on the edge "
			 "thread (test fault injection)", e->send_delay_ms);
	}
	e->inbox = xq_new(ring_edge, e);
	if (!e->inbox)
		goto fail;
	if (opts->heartbeat > 0) {
		e->ping_after = (lws_usec_t)opts->heartbeat * LWS_US_PER_SEC;
		e->hangup_after = e->ping_after +
				  (lws_usec_t)opts->heartbeat_timeout * LWS_US_PER_SEC;
	}

	memset(&info, 0, sizeof(info));
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	if (opts->event_loop == EDGE_LOOP_EPOLL) {
		/* lws 4.1's own loop calls poll(2) over every socket at each
		 * wakeup: O(connections) per event. Under libev each socket is
		 * its own epoll watcher. The loop is ours (foreign to lws): the
		 * thread runs it, so it can stop between two passes. */
		e->loop = ev_loop_new(EVBACKEND_EPOLL | EVFLAG_NOENV);
		if (!e->loop) {
			log_error("edge: cannot create an epoll loop (libev)");
			goto fail;
		}
		e->foreign[0] = e->loop;
		info.foreign_loops = e->foreign;
		info.options |= LWS_SERVER_OPTION_LIBEV;
	}
	/* OpenSSL's global set-up once, by edge 0 (created first): lws keeps
	 * the ex_data indexes it makes there in globals, and a second context
	 * doing it again would move them under edge 0's SSL_CTX (its data was
	 * then lost, and leaked at exit). The vhosts still ask for TLS. */
	if (e->opts.tls_port && index == 0)
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info.timeout_secs = 10;
	info.user = e;
	e->ctx = lws_create_context(&info);
	if (!e->ctx) {
		log_error("edge: cannot create the libwebsockets context");
		goto fail;
	}

	memset(&info, 0, sizeof(info));
	info.vhost_name = "door";
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.retry_and_idle_policy = &e->retry;
	e->door = lws_create_vhost(e->ctx, &info);
	if (!e->door) {
		log_error("edge: cannot create the WebSocket vhost");
		goto fail;
	}
	if (e->opts.tls_port) {
		memset(&info, 0, sizeof(info));
		info.vhost_name = "tls";
		/* No listener: the core accepts on tls_port and hands each
		 * socket to an edge (XQ_ADOPT with XQF_TLS), as on the plain
		 * port, so TLS connections spread over the edges too. */
		info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
		info.protocols = protocols;
		info.retry_and_idle_policy = &e->retry;
		info.ssl_cert_filepath = opts->tls_cert;
		info.ssl_private_key_filepath = opts->tls_key;
		info.alpn = "http/1.1"; /* WebSocket over h2 is not offered */
		info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		e->tls = lws_create_vhost(e->ctx, &info);
		if (!e->tls) {
			log_error("edge: cannot set up TLS (cert %s, key %s)", opts->tls_cert,
				  opts->tls_key);
			goto fail;
		}
	}
	e->live = true;
	return e;
fail:
	edge_free(e);
	return NULL;
}

struct xq *edge_inbox(struct edge *e)
{
	return e->inbox;
}

static void *edge_main(void *arg)
{
	struct edge *e = arg;
	/* Ordered with the main thread's checks by pthread_create/join. */
	thread_owner_set(&e->owner);
	lws_sul_schedule(e->ctx, 0, &e->sweep_timer, sweep, SWEEP_USECS);
	if (e->loop)
		while (!e->exit_flag)
			ev_run(e->loop, EVRUN_ONCE);
	else
		while (!e->exit_flag && lws_service(e->ctx, 0) >= 0)
			;
	return NULL;
}

int edge_start(struct edge *e)
{
	if (pthread_create(&e->thread, NULL, edge_main, e) != 0)
		return RB_EIO;
	e->started = true;
	return RB_OK;
}

void edge_stop_thread(struct edge *e)
{
	if (!e || !e->started)
		return;
	e->exit_flag = 1;
	lws_cancel_service(e->ctx);
	pthread_join(e->thread, NULL);
	e->started = false;
	thread_owner_set(&e->owner); /* the caller, for edge_free */
}

void edge_free(struct edge *e)
{
	if (!e)
		return;
	edge_stop_thread(e);
	/* Destroying the context closes every wsi; their WSI_DESTROY would
	 * talk to a core that is gone, so detach first. */
	e->live = false;
	if (e->ctx)
		lws_context_destroy(e->ctx);
	if (e->loop)
		ev_loop_destroy(e->loop);
	size_t i = 0;
	uint64_t id;
	void *val;
	while (idmap_next(&e->conns, &i, &id, &val)) {
		struct econn *ec = val;
		queue_clear(e, ec);
		free(ec->rx);
		free(ec);
	}
	idmap_free(&e->conns);
	xq_free(e->inbox);
	free(e);
}
