/*
 * loadgen.c - the benchmarks' load generator (issue 11): one process, one
 * thread, one epoll loop driving tens of thousands of WebSocket
 * connections, spread over several source addresses and opened at a
 * bounded concurrency. Modes: rpc (SENDs at QoS 0/1/2, closed loop or
 * paced, round trips and latency), fanout (subscribers counting deliveries
 * and publish-to-delivery latency), idle (open, hold, report). One JSON
 * object on stdout at the end; progress on stderr. `loadgen --help`.
 *
 * Why not librainbow-client's connection engine (clients/c): it cannot bind
 * a source address (needed past ~28k connections to one port, and several
 * times faster to open), it speaks only the Rainbow protocol (fanout against
 * nginx+nchan needs plain text-frame WebSockets), and libwebsockets 4.1's
 * default loop poll()s every socket on each wakeup, so a client on it costs
 * O(connections) per event, the very cost the benchmarks look for in the
 * gateway. Here: epoll (O(ready sockets)), one read() takes every frame
 * waiting on a socket, the answers to all of them and the next SENDs go out
 * in one write(), nothing is allocated per message (--rcvlowat makes one
 * read take several frames even when they arrive one by one). It reuses the
 * client library's codecs (protocol/packet.c for Rainbow packets,
 * protocol/sign.c for the v1 signatures of --sub-url), linked from
 * librainbow-client.a.
 *
 * Publish timestamps (fanout): a payload that starts with "t=<ns>;", <ns>
 * being CLOCK_REALTIME in nanoseconds as decimal digits (Python:
 * b"t=%d;" % time.time_ns()), gives a publish-to-delivery latency (the
 * read that brought it minus <ns>). Anything may follow the ';'.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/sha.h>

#include "bench/hdr.h"
#include "protocol/packet.h"
#include "protocol/rb.h"
#include "protocol/sign.h"

#define NS 1000000000LL
#define MS 1000000LL
#define RBUF_SIZE (256 * 1024)
#define MAX_EVENTS 1024
#define MAX_FRAME (16u * 1024 * 1024)
#define MAX_HEAD 16384
#define TX_SOFT_MAX (64 * 1024)   /* QoS 0 flood: no more SENDs queued past this */
#define HOUR_US 3600000000LL
#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

enum mode { M_RPC, M_FANOUT, M_IDLE };
enum proto { P_RAINBOW, P_WS };
enum cst { ST_NEW, ST_TCP, ST_UPG, ST_HELLO, ST_OPEN, ST_DEAD };
enum { SL_FREE, SL_WAIT, SL_COM };

struct slot {
	int64_t t;      /* send time (or intended send time, paced) */
	uint16_t id;
	uint8_t st;
};

struct conn {
	int fd;
	uint8_t st;          /* enum cst */
	uint8_t tries;       /* attempts made */
	bool out_on;         /* EPOLLOUT registered */
	bool v2;             /* the gateway chose rainbow.v2 */
	bool probe;          /* --rcvlowat: a latency probe (no SO_RCVLOWAT) */
	uint8_t frag_op;
	uint8_t mk[4];       /* masking key */
	uint32_t src;        /* source address index */
	int64_t t0;          /* this attempt's start */
	uint8_t *rx;         /* unparsed input (a partial frame) */
	uint32_t rx_len, rx_cap;
	uint8_t *tx;         /* output not yet written */
	uint32_t tx_len, tx_off, tx_cap;
	uint8_t *frag;       /* a fragmented message being reassembled */
	uint32_t frag_len, frag_cap;
	struct slot *slots;  /* rpc: msgid & slot_mask -> its SEND */
	uint16_t next_id;
	uint16_t outstanding; /* SENDs awaiting ACK/REC (or echo) */
	uint16_t ws_head, ws_tail; /* ws rpc: FIFO of sends over slots */
	uint32_t win_count;  /* fanout: deliveries in the window */
	int64_t pause_until; /* rpc closed loop: no SEND before (temporary NAK) */
	char key[25];        /* Sec-WebSocket-Key */
};

struct reasons {
	int n;
	struct {
		char what[72];
		uint64_t count;
	} r[40];
	uint64_t other;
};

/* An HTTP keep-alive connection of --sub-url (POST /sub/). */
struct subreq {
	struct subreq *next;
	int tries;
	size_t len;
	char body[];
};

enum { HC_CLOSED, HC_CONNECTING, HC_IDLE, HC_BUSY };

struct hc {
	int fd;
	int st;
	struct subreq *cur;
	char *rx;
	size_t rx_len, rx_cap;
	char *tx;
	size_t tx_len, tx_off;
	bool out_on;
};

static struct {
	/* options */
	enum mode mode;
	enum proto proto;
	const char *url;
	char host[256];
	char hosthdr[300];
	char path[2048];         /* path?query, without the per-connection device */
	int port;
	uint32_t nconns;
	uint32_t nsrc;
	struct in_addr src_base;
	uint32_t concurrency;
	int64_t connect_timeout;
	int retries;
	bool v1;
	const char *device;
	const char *channel;
	const char *query;
	double duration, warmup, progress;
	const char *ready_file;
	int qos;
	int inflight;
	bool inflight_set;
	double rate;
	size_t size;
	const char *payload_opt;
	int msgtype;
	int64_t timeout;
	int64_t nak_pause;
	const char *sub_url;
	const char *token;
	uint64_t expect;
	int rcvlowat;
	uint32_t probes;
	uint32_t lowat_off;      /* connections that dropped it (QoS 1/2 push) */
	bool lowat_dropped;
	bool quiet;

	/* derived */
	struct sockaddr_storage dst;
	socklen_t dst_len;
	struct sockaddr_storage api;
	socklen_t api_len;
	char api_host[300];
	uint8_t *payload;
	size_t payload_len;
	uint32_t nslots, slot_mask;
	bool flood;              /* rpc QoS 0 without --rate */

	/* state */
	int ep;
	struct conn *conns;
	uint8_t *rbuf;
	uint32_t next_start;
	uint32_t *retryq;
	uint32_t rq_head, rq_tail, rq_len;
	uint32_t connecting, open, opened, failed, closed;
	uint64_t attempts;
	uint64_t rng;
	int64_t t_start, t_first, t_ready, t_win0, t_win1, t_end;
	int64_t t_first_open, t_last_open;
	bool ready, in_window, window_done, load_on;
	volatile sig_atomic_t stop_sig;
	const char *stop_why;
	int64_t next_progress, next_scan, next_tscan, next_drain;
	int64_t now;             /* monotonic ns, refreshed per read */
	int64_t now_real;        /* CLOCK_REALTIME ns for this read; 0: not yet */
	struct rusage ru_win0, ru_win1, ru_prog;
	int64_t t_prog;
	uint64_t prog_sent, prog_rt, prog_del;

	/* rpc */
	uint64_t sent, rt, naks, timeouts, answers;
	uint64_t win_sent, win_rt, win_naks, win_timeouts;
	uint64_t nak_codes[8];   /* 400 422 429 502 503 504 other, qos0 */
	uint64_t scheduled;      /* paced: sends due so far */
	int64_t t_load0;
	int64_t *backlog;        /* paced: intended times waiting for a window */
	uint32_t bl_head, bl_len, bl_cap;
	uint64_t bl_max, bl_dropped;
	uint32_t rr;
	uint32_t *pauseq;        /* closed loop: connections pausing, in order */
	uint32_t pq_head, pq_len;
	uint64_t paused;

	/* fanout / idle */
	uint64_t deliveries, win_deliveries, stamped, win_stamped, dups, msgs, bad_packets;
	int64_t t_first_del, t_last_del;

	/* --sub-url */
	struct hc hcs[4];
	int nhc;
	struct subreq *sq_head, *sq_tail;
	uint64_t subs_queued, subs_ok, subs_failed;

	struct hdr lat;          /* rpc round trips / fanout deliveries, us */
	struct hdr conn_lat;     /* connect to open, us */
	struct reasons fail_reasons, close_reasons, sub_reasons;
} G;

static void drop(struct conn *c, const char *why);
static bool flush(struct conn *c);
static void hc_kick(void);

/* ------------------------------------------------------------------ utils */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS + ts.tv_nsec;
}

static int64_t real_now(void)
{
	if (!G.now_real) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		G.now_real = (int64_t)ts.tv_sec * NS + ts.tv_nsec;
	}
	return G.now_real;
}

static void tick_now(void)
{
	G.now = now_ns();
	G.now_real = 0;
}

static uint64_t rnd(void)
{
	uint64_t x = G.rng;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	G.rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void note(const char *fmt, ...)
{
	va_list ap;

	if (G.quiet)
		return;
	fputs("loadgen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static void reason_add(struct reasons *rs, const char *what)
{
	for (int i = 0; i < rs->n; i++) {
		if (!strcmp(rs->r[i].what, what)) {
			rs->r[i].count++;
			return;
		}
	}
	if (rs->n == (int)RB_ARRAY_LEN(rs->r)) {
		rs->other++;
		return;
	}
	snprintf(rs->r[rs->n].what, sizeof(rs->r[0].what), "%s", what);
	rs->r[rs->n].count = 1;
	rs->n++;
}

static void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n);

	if (!q)
		die("out of memory");
	return q;
}

static double secs(int64_t ns)
{
	return (double)ns / (double)NS;
}

static double cpu_of(const struct rusage *r)
{
	return (double)r->ru_utime.tv_sec + (double)r->ru_utime.tv_usec / 1e6 +
	       (double)r->ru_stime.tv_sec + (double)r->ru_stime.tv_usec / 1e6;
}

/* -------------------------------------------------------------- buffers */

static uint8_t *tx_reserve(struct conn *c, size_t n)
{
	if (c->tx_off && c->tx_off == c->tx_len)
		c->tx_off = c->tx_len = 0;
	if ((size_t)c->tx_len + n > c->tx_cap) {
		size_t cap = c->tx_cap ? c->tx_cap : 256;
		if (c->tx_off) {
			memmove(c->tx, c->tx + c->tx_off, c->tx_len - c->tx_off);
			c->tx_len -= c->tx_off;
			c->tx_off = 0;
		}
		while (cap < (size_t)c->tx_len + n)
			cap *= 2;
		if (cap != c->tx_cap) {
			c->tx = xrealloc(c->tx, cap);
			c->tx_cap = (uint32_t)cap;
		}
	}
	return c->tx + c->tx_len;
}

static void buf_append(uint8_t **b, uint32_t *len, uint32_t *cap, const uint8_t *p, size_t n)
{
	if ((size_t)*len + n > *cap) {
		size_t nc = *cap ? *cap : 1024;
		while (nc < (size_t)*len + n)
			nc *= 2;
		*b = xrealloc(*b, nc);
		*cap = (uint32_t)nc;
	}
	memcpy(*b + *len, p, n);
	*len += (uint32_t)n;
}

static void conn_free_bufs(struct conn *c)
{
	free(c->rx);
	free(c->tx);
	free(c->frag);
	c->rx = c->tx = c->frag = NULL;
	c->rx_len = c->rx_cap = c->tx_len = c->tx_off = c->tx_cap = 0;
	c->frag_len = c->frag_cap = 0;
}

/* A masked client frame: header, then a[0..al) and b[0..bl) as one payload. */
static void ws_write(struct conn *c, int op, const void *a, size_t al, const void *b, size_t bl)
{
	size_t n = al + bl, hl = 2 + (n < 126 ? 0 : n < 65536 ? 2 : 8) + 4;
	uint8_t *w = tx_reserve(c, hl + n), *p;
	const uint8_t *mk = c->mk;
	size_t k = 0;

	w[0] = (uint8_t)(0x80 | op);
	if (n < 126) {
		w[1] = (uint8_t)(0x80 | n);
		p = w + 2;
	} else if (n < 65536) {
		w[1] = 0x80 | 126;
		w[2] = (uint8_t)(n >> 8);
		w[3] = (uint8_t)n;
		p = w + 4;
	} else {
		w[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			w[2 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
		p = w + 10;
	}
	memcpy(p, mk, 4);
	p += 4;
	for (size_t i = 0; i < al; i++, k++)
		p[k] = ((const uint8_t *)a)[i] ^ mk[k & 3];
	for (size_t i = 0; i < bl; i++, k++)
		p[k] = ((const uint8_t *)b)[i] ^ mk[k & 3];
	c->tx_len += (uint32_t)(hl + n);
}

static void set_out(struct conn *c, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
				  .data.u32 = (uint32_t)(c - G.conns) };

	if (c->out_on == on)
		return;
	c->out_on = on;
	epoll_ctl(G.ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static bool wants_out(const struct conn *c)
{
	return G.flood && G.load_on && c->st == ST_OPEN;
}

/* Write what is queued; false if the connection was dropped. */
static bool flush(struct conn *c)
{
	while (c->tx_off < c->tx_len) {
		ssize_t n = send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			char why[96];
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				set_out(c, true);
				return true;
			}
			if (errno == EINTR)
				continue;
			snprintf(why, sizeof(why), "write: %s", strerror(errno));
			drop(c, why);
			return false;
		}
		c->tx_off += (uint32_t)n;
	}
	c->tx_off = c->tx_len = 0;
	if (c->tx_cap > 65536) {
		free(c->tx);
		c->tx = NULL;
		c->tx_cap = 0;
	}
	if (c->out_on && !wants_out(c))
		set_out(c, false);
	return true;
}

/* -------------------------------------------------------------- rpc */

static bool rpc_can_send(const struct conn *c)
{
	if (c->st != ST_OPEN)
		return false;
	if (G.proto == P_RAINBOW && G.qos == 0)
		return c->tx_len - c->tx_off < TX_SOFT_MAX;
	if (c->outstanding >= G.inflight || c->pause_until)
		return false;
	if (G.proto == P_WS)
		return true;
	return c->slots[c->next_id & G.slot_mask].st == SL_FREE;
}

static void rpc_send(struct conn *c, int64_t t)
{
	uint16_t id = 0;

	if (!t)
		t = now_ns();
	if (G.proto == P_WS) {
		struct slot *s = &c->slots[c->ws_tail++ & G.slot_mask];
		s->t = t;
		s->st = SL_WAIT;
		c->outstanding++;
		ws_write(c, 0x1, G.payload, G.payload_len, NULL, 0);
	} else {
		struct pkt k = { .cmd = PKT_SEND, .qos = (uint8_t)G.qos,
				 .msgtype = (uint16_t)G.msgtype };
		uint8_t h[PKT_MAX_HDR];
		size_t hl;
		if (G.qos) {
			struct slot *s;
			id = c->next_id;
			s = &c->slots[id & G.slot_mask];
			s->t = t;
			s->id = id;
			s->st = SL_WAIT;
			c->next_id = id == 65535 ? 1 : (uint16_t)(id + 1);
			c->outstanding++;
		}
		k.msgid = id;
		hl = pkt_encode_header(&k, h);
		ws_write(c, 0x2, h, hl, G.payload, G.payload_len);
	}
	G.sent++;
	if (G.in_window)
		G.win_sent++;
}

static void backlog_push(int64_t t)
{
	if (G.bl_len == G.bl_cap) {
		G.bl_dropped++;
		return;
	}
	G.backlog[(G.bl_head + G.bl_len) % G.bl_cap] = t;
	G.bl_len++;
	if (G.bl_len > G.bl_max)
		G.bl_max = G.bl_len;
}

static int64_t backlog_pop(void)
{
	int64_t t = G.backlog[G.bl_head];

	G.bl_head = (G.bl_head + 1) % G.bl_cap;
	G.bl_len--;
	return t;
}

/* Keep c's window full: closed loop, or (paced) from the backlog. */
static void rpc_refill(struct conn *c)
{
	if (!G.load_on || G.flood)
		return;
	if (G.rate > 0) {
		while (G.bl_len && rpc_can_send(c))
			rpc_send(c, backlog_pop());
		return;
	}
	while (rpc_can_send(c))
		rpc_send(c, 0);
}

static void rpc_done(struct conn *c, struct slot *s, int nak)
{
	int64_t now = now_ns();

	G.answers++;
	if (!nak) {
		G.rt++;
		if (G.in_window) {
			G.win_rt++;
			hdr_record(&G.lat, (now - s->t) / 1000);
		}
	} else {
		int i;
		switch (nak) {
		case 400: i = 0; break;
		case 422: i = 1; break;
		case 429: i = 2; break;
		case 502: i = 3; break;
		case 503: i = 4; break;
		case 504: i = 5; break;
		default: i = 6; break;
		}
		G.nak_codes[i]++;
		G.naks++;
		if (G.in_window)
			G.win_naks++;
	}
	c->outstanding--;
}

static int nak_code(const uint8_t *p, size_t n)
{
	const char *k = memmem(p, n, "\"code\"", 6);
	size_t i;
	int v = 0;

	if (!k)
		return 1;
	i = (size_t)((const uint8_t *)k - p) + 6;
	while (i < n && (p[i] == ' ' || p[i] == ':'))
		i++;
	while (i < n && isdigit(p[i]) && v < 100000)
		v = v * 10 + (p[i++] - '0');
	return v ? v : 1;
}

static bool nak_temporary(const uint8_t *p, size_t n)
{
	const char *k = memmem(p, n, "\"temporary\"", 11);
	size_t i;

	if (!k)
		return false;
	i = (size_t)((const uint8_t *)k - p) + 11;
	while (i < n && (p[i] == ' ' || p[i] == ':'))
		i++;
	return n - i >= 4 && !memcmp(p + i, "true", 4);
}

/*
 * Closed loop: after a temporary NAK (429 over a limit, 503, 504) the
 * connection sends nothing for --nak-pause, as a client honouring it would;
 * resending at once would measure a storm of refusals. All pauses are
 * equally long, so a FIFO keeps them in order.
 */
static void pause_conn(struct conn *c)
{
	if (!G.nak_pause || G.rate > 0 || c->pause_until)
		return;
	c->pause_until = now_ns() + G.nak_pause;
	G.pauseq[(G.pq_head + G.pq_len) % G.nconns] = (uint32_t)(c - G.conns);
	G.pq_len++;
	G.paused++;
}

static void unpause_due(void)
{
	int64_t now = now_ns();

	while (G.pq_len) {
		struct conn *c = &G.conns[G.pauseq[G.pq_head]];
		if (c->pause_until > now)
			break;
		G.pq_head = (G.pq_head + 1) % G.nconns;
		G.pq_len--;
		c->pause_until = 0;
		if (c->st == ST_OPEN) {
			rpc_refill(c);
			flush(c);
		}
	}
}

static void ctl(struct conn *c, uint8_t cmd, uint16_t id)
{
	struct pkt k = { .cmd = cmd, .msgid = id };
	uint8_t b[PKT_MAX_HDR];
	size_t n = pkt_encode_header(&k, b);

	ws_write(c, 0x2, b, n, NULL, 0);
}

/* ---------------------------------------------------------- deliveries */

static void delivery(struct conn *c, const uint8_t *p, size_t n, bool dup)
{
	G.deliveries++;
	if (dup)
		G.dups++;
	if (!G.t_first_del)
		G.t_first_del = G.now;
	G.t_last_del = G.now;
	if (G.in_window) {
		G.win_deliveries++;
		c->win_count++;
	}
	if (n > 3 && p[0] == 't' && p[1] == '=') {
		int64_t t = 0;
		size_t i = 2;
		while (i < n && i < 22 && isdigit(p[i]))
			t = t * 10 + (p[i++] - '0');
		if (i > 2 && i < n && p[i] == ';') {
			G.stamped++;
			if (G.in_window && c->probe) {
				G.win_stamped++;
				hdr_record(&G.lat, (real_now() - t) / 1000);
			}
		}
	}
}

/* ------------------------------------------------------------ sub-url */

static void sub_enqueue(const char *identity)
{
	char body[512];
	char ch[300];
	size_t j = 0;
	struct subreq *r;
	int n;

	for (const char *s = G.channel; *s && j < sizeof(ch) - 3; s++) {
		if (*s == '"' || *s == '\\')
			ch[j++] = '\\';
		if ((unsigned char)*s >= 0x20)
			ch[j++] = *s;
	}
	ch[j] = '\0';
	n = snprintf(body, sizeof(body), "{\"identity\":\"%s\",\"channel\":\"%s\"}", identity, ch);
	r = malloc(sizeof(*r) + (size_t)n + 1);
	if (!r)
		die("out of memory");
	r->next = NULL;
	r->tries = 0;
	r->len = (size_t)n;
	memcpy(r->body, body, (size_t)n + 1);
	if (G.sq_tail)
		G.sq_tail->next = r;
	else
		G.sq_head = r;
	G.sq_tail = r;
	G.subs_queued++;
	hc_kick();
}

/* ---------------------------------------------------------- lifecycle */

static void conn_read(struct conn *c);

/*
 * --rcvlowat: read what waits below the low-water mark on every socket, so
 * that counts at the window's edges (and --expect) are exact.
 */
static void drain_all(void)
{
	if (!G.rcvlowat)
		return;
	tick_now();
	for (uint32_t i = 0; i < G.nconns; i++)
		if (G.conns[i].st == ST_OPEN && !G.conns[i].probe)
			conn_read(&G.conns[i]);
	tick_now();
}

static void window_start(void)
{
	drain_all();
	G.in_window = true;
	G.t_win0 = G.now;
	getrusage(RUSAGE_SELF, &G.ru_win0);
	hdr_reset(&G.lat);
	G.win_sent = G.win_rt = G.win_naks = G.win_timeouts = 0;
	G.win_deliveries = G.win_stamped = 0;
	for (uint32_t i = 0; i < G.nconns; i++)
		G.conns[i].win_count = 0;
	note("window start (%.1f s)", G.duration);
}

static void window_end(void)
{
	if (!G.in_window)
		return;
	drain_all();
	G.in_window = false;
	G.window_done = true;
	G.t_win1 = G.now;
	getrusage(RUSAGE_SELF, &G.ru_win1);
}

static void load_start(void)
{
	G.load_on = true;
	G.t_load0 = now_ns();
	if (G.mode != M_RPC)
		return;
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		if (c->st != ST_OPEN)
			continue;
		if (G.flood) {
			set_out(c, true);
		} else if (G.rate <= 0) {
			rpc_refill(c);
			flush(c);
		}
	}
}

static void check_ready(void)
{
	FILE *f;

	if (G.ready || G.opened + G.failed < G.nconns)
		return;
	if (G.sub_url && G.subs_ok + G.subs_failed < G.subs_queued)
		return;
	G.ready = true;
	G.t_ready = now_ns();
	note("READY opened=%u failed=%u open_s=%.3f", G.opened, G.failed,
	     secs(G.t_ready - G.t_start));
	if (G.quiet)
		fprintf(stderr, "loadgen: READY opened=%u failed=%u open_s=%.3f\n", G.opened,
			G.failed, secs(G.t_ready - G.t_start));
	if (G.ready_file) {
		char tmp[4096];
		snprintf(tmp, sizeof(tmp), "%s.tmp", G.ready_file);
		f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "{\"opened\":%u,\"failed\":%u,\"open_s\":%.3f}\n", G.opened,
				G.failed, secs(G.t_ready - G.t_start));
			fclose(f);
			rename(tmp, G.ready_file);
		}
	}
	/* the load starts from the main loop (load_start), never from inside
	 * the processing of a connection's input */
}

static void attempt_failed(struct conn *c, const char *why)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->out_on = false;
	conn_free_bufs(c);
	G.connecting--;
	reason_add(&G.fail_reasons, why);
	if (c->tries <= G.retries) {
		c->st = ST_NEW;
		G.retryq[(G.rq_head + G.rq_len) % G.nconns] = (uint32_t)(c - G.conns);
		G.rq_len++;
		return;
	}
	c->st = ST_DEAD;
	G.failed++;
	check_ready();
}

static void conn_lost(struct conn *c, const char *why)
{
	close(c->fd);
	c->fd = -1;
	c->out_on = false;
	c->st = ST_DEAD;
	conn_free_bufs(c);
	G.open--;
	G.closed++;
	reason_add(&G.close_reasons, why);
}

static void drop(struct conn *c, const char *why)
{
	if (c->st == ST_OPEN)
		conn_lost(c, why);
	else if (c->st == ST_TCP || c->st == ST_UPG || c->st == ST_HELLO)
		attempt_failed(c, why);
}

static void conn_opened(struct conn *c, const char *identity)
{
	if (G.rcvlowat && !c->probe)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &G.rcvlowat, sizeof(G.rcvlowat));
	c->st = ST_OPEN;
	G.connecting--;
	G.open++;
	G.opened++;
	hdr_record(&G.conn_lat, (now_ns() - c->t0) / 1000);
	if (!G.t_first_open)
		G.t_first_open = G.now;
	G.t_last_open = G.now;
	if (G.mode == M_FANOUT && G.sub_url) {
		if (identity && *identity)
			sub_enqueue(identity);
		else
			reason_add(&G.sub_reasons, "no identity (v1?)");
	}
	if (G.load_on && G.mode == M_RPC) {
		if (G.flood)
			set_out(c, true);
		else
			rpc_refill(c);
	}
	check_ready();
}

static void start_conn(struct conn *c)
{
	uint32_t i = (uint32_t)(c - G.conns);
	struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = i };
	uint8_t raw[16];
	uint64_t r1 = rnd(), r2 = rnd();
	char why[120];
	int fd, one = 1;

	c->tries++;
	G.attempts++;
	G.connecting++;
	c->st = ST_TCP;
	c->t0 = now_ns();
	if (!G.t_first)
		G.t_first = c->t0;
	c->fd = -1;
	c->out_on = true;
	memcpy(raw, &r1, 8);
	memcpy(raw + 8, &r2, 8);
	EVP_EncodeBlock((unsigned char *)c->key, raw, 16);
	r1 = rnd();
	memcpy(c->mk, &r1, 4);
	fd = socket(G.dst.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		attempt_failed(c, why);
		return;
	}
	c->fd = fd;
	if (G.nsrc && G.dst.ss_family == AF_INET) {
		struct sockaddr_in sa = { .sin_family = AF_INET };
		sa.sin_addr.s_addr = htonl(ntohl(G.src_base.s_addr) + c->src);
		setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
		if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			snprintf(why, sizeof(why), "bind: %s", strerror(errno));
			attempt_failed(c, why);
			return;
		}
	}
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&G.dst, G.dst_len) < 0 && errno != EINPROGRESS) {
		snprintf(why, sizeof(why), "connect: %s", strerror(errno));
		attempt_failed(c, why);
		return;
	}
	if (epoll_ctl(G.ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
		snprintf(why, sizeof(why), "epoll_ctl: %s", strerror(errno));
		attempt_failed(c, why);
	}
}

static void start_more(void)
{
	while (G.connecting < G.concurrency && !G.stop_sig) {
		uint32_t i;
		if (G.rq_len) {
			i = G.retryq[G.rq_head];
			G.rq_head = (G.rq_head + 1) % G.nconns;
			G.rq_len--;
		} else if (G.next_start < G.nconns) {
			i = G.next_start++;
		} else {
			break;
		}
		start_conn(&G.conns[i]);
	}
}

/* TCP connected (or failed): send the upgrade request. */
static void tcp_connected(struct conn *c)
{
	uint32_t i = (uint32_t)(c - G.conns);
	int err = 0;
	socklen_t el = sizeof(err);
	char req[4096], dev[200] = "", why[120];
	int n;

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0)
		err = errno;
	if (err) {
		snprintf(why, sizeof(why), "connect: %s", strerror(err));
		attempt_failed(c, why);
		return;
	}
	if (G.device)
		snprintf(dev, sizeof(dev), "%cX-DEVICEID=%s%u", strchr(G.path, '?') ? '&' : '?',
			 G.device, i);
	n = snprintf(req, sizeof(req),
		     "GET %s%s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
		     "Sec-WebSocket-Version: 13\r\n%s\r\n",
		     G.path, dev, G.hosthdr, c->key,
		     G.proto == P_RAINBOW && !G.v1 ? "Sec-WebSocket-Protocol: rainbow.v2\r\n" : "");
	memcpy(tx_reserve(c, (size_t)n), req, (size_t)n);
	c->tx_len += (uint32_t)n;
	c->st = ST_UPG;
	if (flush(c) && c->tx_len == 0)
		set_out(c, false);
}

static bool header_value(const uint8_t *h, size_t len, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), i = 0;

	/* skip the status line */
	while (i + 1 < len && !(h[i] == '\r' && h[i + 1] == '\n'))
		i++;
	i += 2;
	while (i < len) {
		size_t e = i;
		while (e + 1 < len && !(h[e] == '\r' && h[e + 1] == '\n'))
			e++;
		if (e - i > nl && h[i + nl] == ':' && !strncasecmp((const char *)h + i, name, nl)) {
			size_t v = i + nl + 1, k = 0;
			while (v < e && (h[v] == ' ' || h[v] == '\t'))
				v++;
			while (v < e && k + 1 < cap)
				out[k++] = (char)h[v++];
			while (k && (out[k - 1] == ' ' || out[k - 1] == '\t'))
				k--;
			out[k] = '\0';
			return true;
		}
		i = e + 2;
	}
	return false;
}

/* The upgrade response head h[0..len): false if the attempt failed. */
static bool upgrade_response(struct conn *c, const uint8_t *h, size_t len)
{
	char why[120], v[128], want[64];
	unsigned char dig[SHA_DIGEST_LENGTH], in[64];
	int status = 0;

	if (len > 12 && !memcmp(h, "HTTP/1.", 7))
		status = atoi((const char *)h + 9);
	if (status != 101) {
		snprintf(why, sizeof(why), "http %d", status);
		attempt_failed(c, why);
		return false;
	}
	memcpy(in, c->key, 24);
	memcpy(in + 24, WS_GUID, 36);
	SHA1(in, 60, dig);
	EVP_EncodeBlock((unsigned char *)want, dig, SHA_DIGEST_LENGTH);
	if (!header_value(h, len, "Sec-WebSocket-Accept", v, sizeof(v)) || strcmp(v, want)) {
		attempt_failed(c, "bad Sec-WebSocket-Accept");
		return false;
	}
	c->v2 = G.proto == P_RAINBOW && !G.v1 &&
		header_value(h, len, "Sec-WebSocket-Protocol", v, sizeof(v)) &&
		!strcmp(v, "rainbow.v2");
	if (c->v2)
		c->st = ST_HELLO;
	else
		conn_opened(c, NULL);
	return true;
}

/* ------------------------------------------------------------ messages */

/*
 * A QoS 1/2 push: the gateway awaits ACK/REC from every member, which must
 * not wait for a low-water mark. Every connection drops its mark (the
 * kernel wakes those with data waiting) and becomes a latency probe.
 */
static void lowat_drop(void)
{
	int one = 1;

	G.lowat_dropped = true;
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *x = &G.conns[i];
		if (x->probe)
			continue;
		x->probe = true;
		G.lowat_off++;
		if (x->st == ST_OPEN)
			setsockopt(x->fd, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof(one));
	}
	note("a QoS 1/2 push: --rcvlowat dropped on every connection");
}

static bool rainbow_message(struct conn *c, const uint8_t *p, size_t n)
{
	struct pkt k;
	struct slot *s;

	if (!n) {
		G.bad_packets++;
		return true;
	}
	if (p[0] >> 4 == PKT_HELLO) {
		if (c->st == ST_HELLO) {
			char id[80] = "";
			const char *q = memmem(p, n, "\"identity\":\"", 12);
			if (q) {
				size_t j = 0, o = (size_t)((const uint8_t *)q - p) + 12;
				while (o < n && p[o] != '"' && j + 1 < sizeof(id))
					id[j++] = (char)p[o++];
				id[j] = '\0';
			}
			conn_opened(c, id);
		}
		return true;
	}
	if (pkt_decode(p, n, true, &k, NULL) != RB_OK) {
		G.bad_packets++;
		return true;
	}
	switch (k.cmd) {
	case PKT_SEND:
		if (k.qos && G.rcvlowat && !G.lowat_dropped)
			lowat_drop();
		if (G.mode == M_FANOUT)
			delivery(c, k.payload, k.payload_len, k.dup);
		else
			G.msgs++;
		if (k.qos == 1)
			ctl(c, PKT_ACK, k.msgid);
		else if (k.qos == 2)
			ctl(c, PKT_REC, k.msgid);
		break;
	case PKT_REL:
		ctl(c, PKT_COM, k.msgid);
		break;
	case PKT_ACK:
	case PKT_REC:
		if (G.mode != M_RPC || !c->slots)
			break;
		s = &c->slots[k.msgid & G.slot_mask];
		if (s->st != SL_WAIT || s->id != k.msgid)
			break;
		rpc_done(c, s, 0);
		if (k.cmd == PKT_REC) {
			s->st = SL_COM;
			ctl(c, PKT_REL, k.msgid);
		} else {
			s->st = SL_FREE;
		}
		rpc_refill(c);
		break;
	case PKT_COM:
		if (!c->slots)
			break;
		s = &c->slots[k.msgid & G.slot_mask];
		if (s->st == SL_COM && s->id == k.msgid) {
			s->st = SL_FREE;
			rpc_refill(c);
		}
		break;
	case PKT_NAK:
		if (!k.msgid) {
			G.nak_codes[7]++;
			G.naks++;
			if (G.in_window)
				G.win_naks++;
			break;
		}
		if (!c->slots)
			break;
		s = &c->slots[k.msgid & G.slot_mask];
		if (s->st == SL_WAIT && s->id == k.msgid) {
			rpc_done(c, s, nak_code(k.payload, k.payload_len));
			s->st = SL_FREE;
			if (nak_temporary(k.payload, k.payload_len))
				pause_conn(c);
			rpc_refill(c);
		}
		break;
	default:
		break;
	}
	return true;
}

static bool message(struct conn *c, const uint8_t *p, size_t n)
{
	if (G.proto == P_RAINBOW)
		return rainbow_message(c, p, n);
	if (c->st != ST_OPEN)
		return true;
	if (G.mode == M_FANOUT) {
		delivery(c, p, n, false);
	} else if (G.mode == M_RPC && c->outstanding) {
		struct slot *s = &c->slots[c->ws_head++ & G.slot_mask];
		rpc_done(c, s, 0);
		s->st = SL_FREE;
		rpc_refill(c);
	} else {
		G.msgs++;
	}
	return true;
}

static bool frame(struct conn *c, bool fin, int op, const uint8_t *p, size_t n)
{
	char why[64];

	switch (op) {
	case 0x8: {
		int code = n >= 2 ? p[0] << 8 | p[1] : 1005;
		uint8_t b[2] = { (uint8_t)(code >> 8), (uint8_t)code };
		if (code == 1005)
			ws_write(c, 0x8, NULL, 0, NULL, 0);
		else
			ws_write(c, 0x8, b, 2, NULL, 0);
		(void)send(c->fd, c->tx + c->tx_off, c->tx_len - c->tx_off,
			   MSG_NOSIGNAL | MSG_DONTWAIT);
		snprintf(why, sizeof(why), "close %d", code);
		drop(c, why);
		return false;
	}
	case 0x9:
		ws_write(c, 0xA, p, n, NULL, 0);
		return true;
	case 0xA:
		return true;
	case 0x0:
		if (!c->frag_op) {
			drop(c, "continuation without a start");
			return false;
		}
		buf_append(&c->frag, &c->frag_len, &c->frag_cap, p, n);
		if (!fin)
			return true;
		c->frag_op = 0;
		n = c->frag_len;
		c->frag_len = 0;
		return message(c, c->frag, n);
	case 0x1:
	case 0x2:
		if (!fin) {
			c->frag_op = (uint8_t)op;
			c->frag_len = 0;
			buf_append(&c->frag, &c->frag_len, &c->frag_cap, p, n);
			return true;
		}
		return message(c, p, n);
	default:
		snprintf(why, sizeof(why), "bad opcode %d", op);
		drop(c, why);
		return false;
	}
}

/* Parse buf[0..len): the number of bytes consumed, or -1 if c was dropped. */
static long process(struct conn *c, uint8_t *buf, size_t len)
{
	size_t pos = 0;

	if (c->st == ST_UPG) {
		uint8_t *e = memmem(buf, len, "\r\n\r\n", 4);
		size_t hl;
		if (!e) {
			if (len > MAX_HEAD) {
				attempt_failed(c, "upgrade response head too long");
				return -1;
			}
			return 0;
		}
		hl = (size_t)(e - buf) + 4;
		if (!upgrade_response(c, buf, hl))
			return -1;
		pos = hl;
	}
	while (len - pos >= 2) {
		uint8_t *f = buf + pos;
		size_t avail = len - pos, hl = 2;
		uint64_t n = f[1] & 0x7F;
		bool masked = f[1] & 0x80;
		if (n == 126) {
			if (avail < 4)
				break;
			n = (uint64_t)f[2] << 8 | f[3];
			hl = 4;
		} else if (n == 127) {
			if (avail < 10)
				break;
			n = 0;
			for (int i = 0; i < 8; i++)
				n = n << 8 | f[2 + i];
			hl = 10;
		}
		if (n > MAX_FRAME) {
			drop(c, "frame too large");
			return -1;
		}
		if (masked)
			hl += 4;
		if (avail < hl + n)
			break;
		if (masked)
			for (uint64_t i = 0; i < n; i++)
				f[hl + i] ^= f[hl - 4 + (i & 3)];
		pos += hl + (size_t)n;
		if (!frame(c, f[0] & 0x80, f[0] & 0x0F, f + hl, (size_t)n))
			return -1;
		if (c->st == ST_DEAD || c->st == ST_NEW)
			return -1;
	}
	return (long)pos;
}

/* New input: false if c was dropped. */
static bool feed(struct conn *c, uint8_t *data, size_t n)
{
	long used;

	if (c->rx_len) {
		buf_append(&c->rx, &c->rx_len, &c->rx_cap, data, n);
		used = process(c, c->rx, c->rx_len);
		if (used < 0)
			return false;
		memmove(c->rx, c->rx + used, c->rx_len - (size_t)used);
		c->rx_len -= (uint32_t)used;
		if (!c->rx_len && c->rx_cap > 65536) {
			free(c->rx);
			c->rx = NULL;
			c->rx_cap = 0;
		}
		return true;
	}
	used = process(c, data, n);
	if (used < 0)
		return false;
	if ((size_t)used < n)
		buf_append(&c->rx, &c->rx_len, &c->rx_cap, data + used, n - (size_t)used);
	return true;
}

static void conn_read(struct conn *c)
{
	for (int round = 0; round < 8; round++) {
		ssize_t n = read(c->fd, G.rbuf, RBUF_SIZE);
		if (n == 0) {
			drop(c, c->st == ST_OPEN ? "eof" : "eof during handshake");
			return;
		}
		if (n < 0) {
			char why[96];
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			if (errno == EINTR)
				continue;
			snprintf(why, sizeof(why), "read: %s", strerror(errno));
			drop(c, why);
			return;
		}
		tick_now();
		if (!feed(c, G.rbuf, (size_t)n))
			return;
		if (n < RBUF_SIZE)
			break;
	}
	flush(c);
}

static void conn_writable(struct conn *c)
{
	if (!flush(c))
		return;
	if (G.flood && G.load_on && c->st == ST_OPEN && !c->tx_len) {
		for (int i = 0; i < G.inflight && rpc_can_send(c); i++)
			rpc_send(c, 0);
		flush(c);
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	if (c->st == ST_TCP) {
		if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
			tcp_connected(c);
		return;
	}
	if (c->st == ST_DEAD || c->st == ST_NEW)
		return;
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		conn_read(c);
	if ((events & EPOLLOUT) && c->st != ST_DEAD && c->st != ST_NEW)
		conn_writable(c);
}

/* ------------------------------------------------------- HTTP for /sub/ */

static void hc_close(struct hc *h)
{
	if (h->fd >= 0)
		close(h->fd);
	h->fd = -1;
	h->st = HC_CLOSED;
	h->rx_len = 0;
	h->tx_len = h->tx_off = 0;
	h->out_on = false;
}

static void sub_result(struct hc *h, bool ok, const char *why)
{
	struct subreq *r = h->cur;

	h->cur = NULL;
	if (!r)
		return;
	if (ok) {
		G.subs_ok++;
	} else if (r->tries < 3 && !G.stop_sig) {
		/* again, first in the queue */
		r->next = G.sq_head;
		G.sq_head = r;
		if (!G.sq_tail)
			G.sq_tail = r;
		reason_add(&G.sub_reasons, why);
		return;
	} else {
		G.subs_failed++;
		reason_add(&G.sub_reasons, why);
	}
	free(r);
	check_ready();
}

static void hc_set_out(struct hc *h, bool on)
{
	struct epoll_event ev = { .events = EPOLLIN | (on ? EPOLLOUT : 0),
				  .data.u32 = G.nconns + (uint32_t)(h - G.hcs) };

	if (h->out_on == on)
		return;
	h->out_on = on;
	epoll_ctl(G.ep, EPOLL_CTL_MOD, h->fd, &ev);
}

static void hc_flush(struct hc *h)
{
	while (h->tx_off < h->tx_len) {
		ssize_t n = send(h->fd, h->tx + h->tx_off, h->tx_len - h->tx_off,
				 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				hc_set_out(h, true);
				return;
			}
			if (errno == EINTR)
				continue;
			sub_result(h, false, "sub: write failed");
			hc_close(h);
			return;
		}
		h->tx_off += (size_t)n;
	}
	h->tx_len = h->tx_off = 0;
	hc_set_out(h, false);
}

static void hc_send(struct hc *h)
{
	struct subreq *r = G.sq_head;
	char q[200];
	int n;

	G.sq_head = r->next;
	if (!G.sq_head)
		G.sq_tail = NULL;
	r->next = NULL;
	r->tries++;
	h->cur = r;
	h->st = HC_BUSY;
	if (sign_v1_query(G.token, time(NULL), q, sizeof(q)) < 0)
		q[0] = '\0';
	free(h->tx);
	h->tx = malloc(r->len + 512);
	if (!h->tx)
		die("out of memory");
	n = snprintf(h->tx, r->len + 512,
		     "POST /sub/?%s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
		     "Content-Length: %zu\r\n\r\n%s", q, G.api_host, r->len, r->body);
	h->tx_len = (size_t)n;
	h->tx_off = 0;
	hc_flush(h);
}

static void hc_kick(void)
{
	for (int i = 0; i < G.nhc && G.sq_head; i++) {
		struct hc *h = &G.hcs[i];
		if (h->st == HC_CLOSED) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT,
						  .data.u32 = G.nconns + (uint32_t)i };
			int one = 1;
			h->fd = socket(G.api.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
			if (h->fd < 0)
				die("socket: %s", strerror(errno));
			setsockopt(h->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
			if (connect(h->fd, (struct sockaddr *)&G.api, G.api_len) < 0 &&
			    errno != EINPROGRESS) {
				close(h->fd);
				h->fd = -1;
				G.subs_failed++;
				reason_add(&G.sub_reasons, "sub: cannot connect");
				continue;
			}
			epoll_ctl(G.ep, EPOLL_CTL_ADD, h->fd, &ev);
			h->out_on = true;
			h->st = HC_CONNECTING;
		} else if (h->st == HC_IDLE) {
			hc_send(h);
		}
	}
}

static void hc_event(struct hc *h, uint32_t events)
{
	if (h->st == HC_CONNECTING) {
		int err = 0;
		socklen_t el = sizeof(err);
		getsockopt(h->fd, SOL_SOCKET, SO_ERROR, &err, &el);
		if (err) {
			char why[96];
			snprintf(why, sizeof(why), "sub: connect: %s", strerror(err));
			hc_close(h);
			/* fail one queued request so that a dead API ends the wait */
			if (G.sq_head) {
				h->cur = G.sq_head;
				G.sq_head = h->cur->next;
				if (!G.sq_head)
					G.sq_tail = NULL;
				h->cur->tries = 3;
				sub_result(h, false, why);
			}
			hc_kick();
			return;
		}
		h->st = HC_IDLE;
		hc_set_out(h, false);
		hc_kick();
		return;
	}
	if ((events & EPOLLOUT) && h->st == HC_BUSY)
		hc_flush(h);
	if (!(events & (EPOLLIN | EPOLLHUP | EPOLLERR)) || h->fd < 0)
		return;
	for (;;) {
		ssize_t n;
		char *e, cl[32], conn[32];
		size_t hl, blen;
		int status;
		if (h->rx_len + 4096 > h->rx_cap) {
			h->rx_cap = h->rx_cap ? h->rx_cap * 2 : 8192;
			h->rx = xrealloc(h->rx, h->rx_cap);
		}
		n = read(h->fd, h->rx + h->rx_len, h->rx_cap - h->rx_len - 1);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				return;
			sub_result(h, false, "sub: connection closed");
			hc_close(h);
			hc_kick();
			return;
		}
		h->rx_len += (size_t)n;
		h->rx[h->rx_len] = '\0';
		e = strstr(h->rx, "\r\n\r\n");
		if (!e)
			continue;
		hl = (size_t)(e - h->rx) + 4;
		blen = 0;
		if (header_value((uint8_t *)h->rx, hl, "Content-Length", cl, sizeof(cl)))
			blen = strtoul(cl, NULL, 10);
		if (h->rx_len < hl + blen)
			continue;
		status = h->rx_len > 12 ? atoi(h->rx + 9) : 0;
		if (status == 200 && memmem(h->rx + hl, blen, "\"status\":0", 10)) {
			sub_result(h, true, NULL);
		} else {
			char why[120];
			snprintf(why, sizeof(why), "sub: http %d %.60s", status, h->rx + hl);
			for (char *p = why; *p; p++)
				if ((unsigned char)*p < 0x20)
					*p = ' ';
			if (h->cur)
				h->cur->tries = 3;
			sub_result(h, false, why);
		}
		if (header_value((uint8_t *)h->rx, hl, "Connection", conn, sizeof(conn)) &&
		    !strcasecmp(conn, "close")) {
			hc_close(h);
		} else {
			h->st = HC_IDLE;
			h->rx_len = 0;
		}
		hc_kick();
		return;
	}
}

/* ------------------------------------------------------------- timers */

static void scan_connect_timeouts(void)
{
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		if ((c->st == ST_TCP || c->st == ST_UPG || c->st == ST_HELLO) &&
		    G.now - c->t0 > G.connect_timeout)
			attempt_failed(c, c->st == ST_TCP ? "timeout (tcp connect)"
					  : c->st == ST_UPG ? "timeout (upgrade)"
							    : "timeout (no HELLO)");
	}
}

static void scan_send_timeouts(void)
{
	if (G.proto != P_RAINBOW || !G.qos)
		return;
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		bool freed = false;
		if (c->st != ST_OPEN)
			continue;
		for (uint32_t k = 0; k <= G.slot_mask; k++) {
			struct slot *s = &c->slots[k];
			if (s->st == SL_FREE || G.now - s->t <= G.timeout)
				continue;
			if (s->st == SL_WAIT) {
				c->outstanding--;
				G.timeouts++;
				if (G.in_window)
					G.win_timeouts++;
			}
			s->st = SL_FREE;
			freed = true;
		}
		if (freed) {
			rpc_refill(c);
			flush(c);
		}
	}
}

/* Paced sends due by now, each stamped with its intended time. */
static void pace(void)
{
	int64_t now = now_ns();
	/* send k is due at t_load0 + k / rate */
	uint64_t due = (uint64_t)((double)(now - G.t_load0) * G.rate / (double)NS) + 1;

	while (G.scheduled < due) {
		int64_t t = G.t_load0 + (int64_t)((double)G.scheduled * (double)NS / G.rate);
		struct conn *c = NULL;
		G.scheduled++;
		if (!G.bl_len) {
			for (uint32_t k = 0; k < G.nconns; k++) {
				struct conn *x = &G.conns[G.rr];
				G.rr = G.rr + 1 == G.nconns ? 0 : G.rr + 1;
				if (rpc_can_send(x)) {
					c = x;
					break;
				}
			}
		}
		if (c) {
			rpc_send(c, t);
			flush(c);
		} else {
			backlog_push(t);
		}
	}
}

static void progress(void)
{
	struct rusage ru;
	double dt = secs(G.now - G.t_prog), cpu;

	getrusage(RUSAGE_SELF, &ru);
	cpu = dt > 0 ? (cpu_of(&ru) - cpu_of(&G.ru_prog)) / dt : 0;
	if (!G.quiet && dt > 0) {
		char extra[200] = "";
		if (G.mode == M_RPC)
			snprintf(extra, sizeof(extra), " | sent %.0f/s answered %.0f/s naks %" PRIu64
				 " timeouts %" PRIu64 "%s", (double)(G.sent - G.prog_sent) / dt,
				 (double)(G.rt - G.prog_rt) / dt, G.naks, G.timeouts,
				 G.bl_len ? " (backlog)" : "");
		else if (G.mode == M_FANOUT)
			snprintf(extra, sizeof(extra), " | deliveries %.0f/s total %" PRIu64,
				 (double)(G.deliveries - G.prog_del) / dt, G.deliveries);
		fprintf(stderr, "loadgen: %6.1fs open %u/%u connecting %u failed %u closed %u%s"
			" | cpu %.2f\n", secs(G.now - G.t_start), G.open, G.nconns, G.connecting,
			G.failed, G.closed, extra, cpu);
	}
	G.ru_prog = ru;
	G.t_prog = G.now;
	G.prog_sent = G.sent;
	G.prog_rt = G.rt;
	G.prog_del = G.deliveries;
}

static void timers(void)
{
	if (G.connecting && G.now >= G.next_scan) {
		scan_connect_timeouts();
		G.next_scan = G.now + 100 * MS;
	}
	if (G.mode == M_RPC && G.load_on && G.now >= G.next_tscan) {
		scan_send_timeouts();
		G.next_tscan = G.now + NS;
	}
	if (G.rcvlowat && G.now >= G.next_drain) {
		drain_all();
		G.next_drain = G.now + NS;
	}
	if (G.sq_head)
		hc_kick();
	if (G.progress > 0 && G.now >= G.next_progress) {
		progress();
		G.next_progress = G.now + (int64_t)(G.progress * NS);
	}
}

/* Phases: window start and end, stop conditions. */
static void phases(void)
{
	if (G.stop_sig && !G.stop_why)
		G.stop_why = G.stop_sig == SIGINT ? "SIGINT" : "SIGTERM";
	if (!G.stop_why && G.ready && !G.in_window && !G.window_done &&
	    G.now >= G.t_ready + (int64_t)(G.warmup * NS))
		window_start();
	if (!G.stop_why && G.in_window && G.duration > 0 &&
	    G.now >= G.t_win0 + (int64_t)(G.duration * NS))
		G.stop_why = "duration";
	if (!G.stop_why && G.expect && G.deliveries >= G.expect)
		G.stop_why = "expect";
	if (!G.stop_why && G.ready && !G.open && !G.connecting)
		G.stop_why = "no connection left";
}

static int64_t next_wake(void)
{
	int64_t w = G.now + 100 * MS;

	if (G.progress > 0 && G.next_progress < w)
		w = G.next_progress;
	if (G.ready && !G.in_window && !G.window_done) {
		int64_t t = G.t_ready + (int64_t)(G.warmup * NS);
		if (t < w)
			w = t;
	}
	if (G.in_window && G.duration > 0) {
		int64_t t = G.t_win0 + (int64_t)(G.duration * NS);
		if (t < w)
			w = t;
	}
	if (G.mode == M_RPC && G.load_on && G.rate > 0) {
		int64_t t = G.t_load0 + (int64_t)((double)G.scheduled * (double)NS / G.rate);
		if (t < w)
			w = t;
	}
	if (G.pq_len && G.conns[G.pauseq[G.pq_head]].pause_until < w)
		w = G.conns[G.pauseq[G.pq_head]].pause_until;
	return w;
}

/* --------------------------------------------------------------- report */

static void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			fprintf(f, "\\%c", ch);
		else if (ch < 0x20)
			fprintf(f, "\\u%04x", ch);
		else
			fputc(ch, f);
	}
	fputc('"', f);
}

static void json_reasons(FILE *f, const char *name, const struct reasons *rs)
{
	fprintf(f, ",\"%s\":{", name);
	for (int i = 0; i < rs->n; i++) {
		if (i)
			fputc(',', f);
		json_str(f, rs->r[i].what);
		fprintf(f, ":%" PRIu64, rs->r[i].count);
	}
	if (rs->other)
		fprintf(f, "%s\"(other)\":%" PRIu64, rs->n ? "," : "", rs->other);
	fputc('}', f);
}

static void json_hist(FILE *f, const char *name, const struct hdr *h)
{
	fprintf(f, ",\"%s\":{\"count\":%" PRId64, name, h->total);
	if (h->total)
		fprintf(f, ",\"min\":%.3f,\"mean\":%.3f,\"p50\":%.3f,\"p90\":%.3f,\"p99\":%.3f,"
			"\"p999\":%.3f,\"max\":%.3f", (double)h->min / 1e3, hdr_mean(h) / 1e3,
			(double)hdr_percentile(h, 50) / 1e3, (double)hdr_percentile(h, 90) / 1e3,
			(double)hdr_percentile(h, 99) / 1e3, (double)hdr_percentile(h, 99.9) / 1e3,
			(double)h->max / 1e3);
	fputc('}', f);
}

static double rate_of(uint64_t n, double s)
{
	return s > 0 ? (double)n / s : 0.0;
}

static void report(void)
{
	FILE *f = stdout;
	struct rusage ru;
	double win = G.window_done ? secs(G.t_win1 - G.t_win0) : 0;
	double wcpu = G.window_done ? cpu_of(&G.ru_win1) - cpu_of(&G.ru_win0) : 0;
	static const char *const modes[] = { "rpc", "fanout", "idle" };

	getrusage(RUSAGE_SELF, &ru);
	fprintf(f, "{\"mode\":\"%s\",\"proto\":\"%s\",\"url\":", modes[G.mode],
		G.proto == P_RAINBOW ? (G.v1 ? "rainbow-v1" : "rainbow") : "ws");
	json_str(f, G.url);
	fprintf(f, ",\"conns\":%u,\"sources\":%u,\"concurrency\":%u,\"stop\":", G.nconns, G.nsrc,
		G.concurrency);
	json_str(f, G.stop_why ? G.stop_why : "?");
	fprintf(f, ",\"opened\":%u,\"failed\":%u,\"attempts\":%" PRIu64 ",\"closed\":%u,"
		"\"open_at_end\":%u", G.opened, G.failed, G.attempts, G.closed, G.open);
	fprintf(f, ",\"open_s\":%.3f", G.ready ? secs(G.t_ready - G.t_start) : -1.0);
	fprintf(f, ",\"open_rate\":%.1f", G.t_last_open > G.t_first ?
		rate_of(G.opened, secs(G.t_last_open - G.t_first)) : 0.0);
	json_hist(f, "connect_ms", &G.conn_lat);
	json_reasons(f, "fail_reasons", &G.fail_reasons);
	json_reasons(f, "close_reasons", &G.close_reasons);
	fprintf(f, ",\"warmup_s\":%.3f,\"window_s\":%.3f", G.warmup, win);
	if (G.mode == M_RPC) {
		static const char *const codes[] = { "400", "422", "429", "502", "503", "504",
						     "other", "qos0" };
		bool first = true;
		fprintf(f, ",\"qos\":%d,\"inflight\":%d,\"rate_target\":%.1f,\"size\":%zu,"
			"\"msgtype\":%d", G.qos, G.inflight, G.rate, G.payload_len, G.msgtype);
		fprintf(f, ",\"sent\":%" PRIu64 ",\"round_trips\":%" PRIu64 ",\"naks\":%" PRIu64
			",\"timeouts\":%" PRIu64, G.win_sent, G.win_rt, G.win_naks, G.win_timeouts);
		fprintf(f, ",\"send_rate\":%.1f,\"rate\":%.1f,\"answer_rate\":%.1f",
			rate_of(G.win_sent, win),
			G.qos == 0 && G.proto == P_RAINBOW ? rate_of(G.win_sent, win)
							   : rate_of(G.win_rt, win),
			rate_of(G.win_rt + G.win_naks, win));
		/* NAKs by code: over the whole run, like "totals" */
		fprintf(f, ",\"nak_codes\":{");
		for (int i = 0; i < 8; i++) {
			if (!G.nak_codes[i])
				continue;
			fprintf(f, "%s\"%s\":%" PRIu64, first ? "" : ",", codes[i], G.nak_codes[i]);
			first = false;
		}
		fprintf(f, "},\"totals\":{\"sent\":%" PRIu64 ",\"round_trips\":%" PRIu64
			",\"naks\":%" PRIu64 ",\"timeouts\":%" PRIu64 ",\"nak_pauses\":%" PRIu64 "}",
			G.sent, G.rt, G.naks, G.timeouts, G.paused);
		if (G.rate > 0)
			fprintf(f, ",\"backlog_max\":%" PRIu64 ",\"backlog_dropped\":%" PRIu64
				",\"backlog_at_end\":%u", G.bl_max, G.bl_dropped, G.bl_len);
		fprintf(f, ",\"latency_from\":\"%s\"", G.rate > 0 ? "intended send time" :
			"send");
		json_hist(f, "latency_ms", &G.lat);
	} else if (G.mode == M_FANOUT) {
		uint32_t mn = UINT32_MAX, mx = 0;
		for (uint32_t i = 0; i < G.nconns; i++) {
			if (G.conns[i].st != ST_OPEN)
				continue;
			if (G.conns[i].win_count < mn)
				mn = G.conns[i].win_count;
			if (G.conns[i].win_count > mx)
				mx = G.conns[i].win_count;
		}
		if (mn == UINT32_MAX)
			mn = 0;
		fprintf(f, ",\"deliveries\":%" PRIu64 ",\"rate\":%.1f,\"stamped\":%" PRIu64,
			G.win_deliveries, rate_of(G.win_deliveries, win), G.win_stamped);
		fprintf(f, ",\"rcvlowat\":%d,\"rcvlowat_dropped\":%s,\"latency_conns\":%u",
			G.rcvlowat, G.lowat_dropped ? "true" : "false",
			G.rcvlowat ? G.probes + G.lowat_off : G.nconns);
		fprintf(f, ",\"per_conn_min\":%u,\"per_conn_max\":%u", mn, mx);
		fprintf(f, ",\"deliveries_total\":%" PRIu64 ",\"stamped_total\":%" PRIu64
			",\"dups\":%" PRIu64, G.deliveries, G.stamped, G.dups);
		if (G.t_first_del) {
			double span = secs(G.t_last_del - G.t_first_del);
			fprintf(f, ",\"first_delivery_s\":%.3f,\"last_delivery_s\":%.3f,"
				"\"active_rate\":%.1f",
				G.ready ? secs(G.t_first_del - G.t_ready) : 0.0,
				G.ready ? secs(G.t_last_del - G.t_ready) : 0.0,
				rate_of(G.deliveries, span));
		}
		if (G.sub_url) {
			fprintf(f, ",\"subs_ok\":%" PRIu64 ",\"subs_failed\":%" PRIu64, G.subs_ok,
				G.subs_failed);
			json_reasons(f, "sub_reasons", &G.sub_reasons);
		}
		json_hist(f, "latency_ms", &G.lat);
	} else {
		fprintf(f, ",\"messages\":%" PRIu64, G.msgs);
	}
	fprintf(f, ",\"bad_packets\":%" PRIu64, G.bad_packets);
	fprintf(f, ",\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_s\":%.3f",
		(double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
		(double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6, cpu_of(&ru));
	/* over a window too short to tell (a run that ended at once), no figure */
	fprintf(f, ",\"cpu_window_s\":%.3f,\"cpu_window_cores\":%.3f,\"loadgen_bound\":%s",
		wcpu, win >= 0.1 ? wcpu / win : 0.0,
		win >= 0.1 && wcpu / win >= 0.85 ? "true" : "false");
	fprintf(f, ",\"peak_rss_kb\":%ld,\"wall_s\":%.3f}\n", ru.ru_maxrss,
		secs(now_ns() - G.t_start));
	fflush(f);
}

/* --------------------------------------------------------------- setup */

static const char usage[] =
"usage: loadgen MODE URL [options]\n"
"  MODE   rpc | fanout | idle\n"
"  URL    ws://host:port[/path][?query]  (Rainbow: the path defaults to /connect/)\n"
"\n"
"One process, one thread, one epoll loop. Prints one JSON object on stdout at\n"
"the end (counts, rates, latency percentiles in ms, connections opened/failed,\n"
"its own CPU and peak RSS), progress and a READY line on stderr.\n"
"\n"
"connections:\n"
"  -c, --conns N            connections (default 100)\n"
"      --sources N          spread them over N source addresses, --source-base and\n"
"                           the N-1 following it (default 0: the kernel's choice);\n"
"                           each address has its own 28k ephemeral ports\n"
"      --source-base A      first source address (default 127.0.0.2)\n"
"      --concurrency N      attempts under way at once, TCP connect to open (256)\n"
"      --connect-timeout S  per attempt (default 10)\n"
"      --retries N          try a failed attempt again N times (default 0)\n"
"      --proto P            rainbow (default): binary Rainbow packets, rainbow.v2\n"
"                           offered, open at HELLO, pushes answered ACK / REC+COM,\n"
"                           pings answered; ws (or ws-text): plain WebSocket to the\n"
"                           URL as given (e.g. nchan /sub/<ch>), open at the 101,\n"
"                           every text or binary message is a delivery\n"
"      --v1                 rainbow without the rainbow.v2 offer (no HELLO, no NAK)\n"
"      --device PREFIX      X-DEVICEID=PREFIX<i> per connection (a session under v2)\n"
"      --channel CH         rainbow: add channel=CH to the query (a connect hook such\n"
"                           as clients/python/example_backend.py joins it), and the\n"
"                           channel of --sub-url\n"
"      --query Q            more query arguments, already encoded (a=1&b=2)\n"
"\n"
"timing (the window starts --warmup after every connection is open or failed):\n"
"  -d, --duration S         measured window (default 10; 0: until SIGINT/SIGTERM or\n"
"                           --expect)\n"
"      --warmup S           default 1 for rpc, 0 otherwise\n"
"      --progress S         a progress line on stderr every S (default 1; 0: none)\n"
"      --ready-file PATH    written ({\"opened\":..,\"failed\":..,\"open_s\":..}) when\n"
"                           all connections are open (and subscribed), as the\n"
"                           stderr line \"loadgen: READY ...\"\n"
"      --quiet              no progress (READY still printed)\n"
"\n"
"rpc: SEND -> ACK (QoS 1) / REC (QoS 2, then REL -> COM) round trips\n"
"  -q, --qos Q              0, 1 or 2 (default 1); QoS 0 has no answer: its rate\n"
"                           is the send rate\n"
"      --inflight K         closed loop: K SENDs awaiting their answer per\n"
"                           connection (default 1); QoS 0 flat out: K SENDs per\n"
"                           writable socket; paced: the most per connection (16)\n"
"      --rate R             paced: R SENDs/s in total over the open connections,\n"
"                           latency from each SEND's intended time (no coordinated\n"
"                           omission); sends with no free window wait in a backlog\n"
"  -s, --size P             payload bytes (default 32; {\"p\":\"xxx...\"})\n"
"      --payload STR        this payload instead\n"
"      --msgtype T          default 1\n"
"      --timeout S          an unanswered SEND counts as a timeout after S (10)\n"
"      --nak-pause MS       closed loop: after a temporary NAK (429, 503, 504) the\n"
"                           connection waits MS before its next SEND (100; 0: at\n"
"                           once)\n"
"  With --proto ws: text messages to an echo server, each next message received\n"
"  answers the oldest one in flight.\n"
"\n"
"fanout: count deliveries; a payload starting \"t=<ns>;\" (CLOCK_REALTIME ns,\n"
"  decimal; Python: b\"t=%d;\" % time.time_ns()) gives publish->delivery latency\n"
"      --sub-url URL        http://host:port of the REST API: each connection is\n"
"                           subscribed to --channel with a v1-signed POST /sub/\n"
"                           once open (no connect hook needed)\n"
"      --token T            security_token for --sub-url (default $RAINBOW_TOKEN)\n"
"      --expect N           stop once N deliveries arrived in all\n"
"      --rcvlowat BYTES     throughput runs: SO_RCVLOWAT on all but --probes\n"
"                           connections, so that one read takes several frames\n"
"                           (a wake-up and a read per delivery cost this process\n"
"                           ~7 us on loopback); every socket is drained once a\n"
"                           second and at the window's edges, so counts stay\n"
"                           exact; latency comes from the probes only. For\n"
"                           QoS 0: at the first QoS 1/2 push every connection\n"
"                           drops its mark (ACKs must not wait), all are probes\n"
"      --probes K           latency probes with --rcvlowat (default 20), spread\n"
"                           evenly over the connections\n"
"\n"
"idle: open, hold for --duration (0: until a signal), report.\n"
"\n"
"SIGINT/SIGTERM end the run (the JSON is printed); a second one exits at once.\n"
"The JSON's cpu_window_cores is this process's CPU over the window (1.0 = the one\n"
"core it can use): near 1.0 (loadgen_bound) the figures are loadgen's limit.\n";

static double num(const char *s, const char *opt)
{
	char *e;
	double v = strtod(s, &e);

	if (!*s || *e || !isfinite(v) || v < 0)
		die("%s: not a non-negative number: %s", opt, s);
	return v;
}

static void resolve(const char *host, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
	char ps[16];
	int rc;

	snprintf(ps, sizeof(ps), "%d", port);
	rc = getaddrinfo(host, ps, &hints, &ai);
	if (rc)
		die("%s: %s", host, gai_strerror(rc));
	memcpy(ss, ai->ai_addr, ai->ai_addrlen);
	*len = ai->ai_addrlen;
	freeaddrinfo(ai);
}

/* host[:port] and the rest of an URL after its scheme. */
static const char *split_hostport(const char *s, char *host, size_t cap, int *port)
{
	const char *e = s + strcspn(s, "/?");
	const char *colon = NULL;
	size_t n;

	if (*s == '[') {
		const char *rb = memchr(s, ']', (size_t)(e - s));
		if (!rb)
			die("bad URL host: %s", s);
		n = (size_t)(rb - s - 1);
		if (n >= cap)
			die("host too long");
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (rb[1] == ':')
			*port = atoi(rb + 2);
		return e;
	}
	colon = memchr(s, ':', (size_t)(e - s));
	n = (size_t)((colon ? colon : e) - s);
	if (!n || n >= cap)
		die("bad URL host: %s", s);
	memcpy(host, s, n);
	host[n] = '\0';
	if (colon)
		*port = atoi(colon + 1);
	return e;
}

static void parse_url(void)
{
	const char *rest;
	char q[2048] = "";
	size_t pl;

	if (strncmp(G.url, "ws://", 5))
		die("URL must be ws://... (wss:// is not supported): %s", G.url);
	G.port = 80;
	rest = split_hostport(G.url + 5, G.host, sizeof(G.host), &G.port);
	if (G.port <= 0 || G.port > 65535)
		die("bad port in %s", G.url);
	if (strchr(G.host, ':'))
		snprintf(G.hosthdr, sizeof(G.hosthdr), "[%s]:%d", G.host, G.port);
	else
		snprintf(G.hosthdr, sizeof(G.hosthdr), "%s:%d", G.host, G.port);
	if (*rest == '/')
		snprintf(G.path, sizeof(G.path), "%s", rest);
	else
		snprintf(G.path, sizeof(G.path), "%s%s",
			 G.proto == P_RAINBOW ? "/connect/" : "/", rest);
	if (G.proto == P_RAINBOW && G.channel) {
		/* percent-encode the channel */
		size_t j = 0;
		j += (size_t)snprintf(q, sizeof(q), "channel=");
		for (const unsigned char *s = (const unsigned char *)G.channel;
		     *s && j + 4 < sizeof(q); s++) {
			if (isalnum(*s) || strchr("-._~", *s))
				q[j++] = (char)*s;
			else
				j += (size_t)snprintf(q + j, sizeof(q) - j, "%%%02X", *s);
		}
		q[j] = '\0';
	}
	if (G.query && *G.query)
		snprintf(q + strlen(q), sizeof(q) - strlen(q), "%s%s", *q ? "&" : "", G.query);
	if (*q) {
		pl = strlen(G.path);
		if (pl + strlen(q) + 2 >= sizeof(G.path))
			die("path too long");
		snprintf(G.path + pl, sizeof(G.path) - pl, "%s%s",
			 !strchr(G.path, '?') ? "?" : (G.path[pl - 1] == '?' || G.path[pl - 1] == '&')
			 ? "" : "&", q);
	}
	resolve(G.host, G.port, &G.dst, &G.dst_len);
}

static void parse_sub_url(void)
{
	char host[256];
	int port = 80;

	if (strncmp(G.sub_url, "http://", 7))
		die("--sub-url must be http://host:port: %s", G.sub_url);
	split_hostport(G.sub_url + 7, host, sizeof(host), &port);
	snprintf(G.api_host, sizeof(G.api_host), "%s:%d", host, port);
	resolve(host, port, &G.api, &G.api_len);
}

static void on_signal(int sig)
{
	if (G.stop_sig)
		_exit(128 + sig);
	G.stop_sig = sig;
}

static void make_payload(void)
{
	if (G.payload_opt) {
		G.payload_len = strlen(G.payload_opt);
		G.payload = (uint8_t *)strdup(G.payload_opt);
		return;
	}
	G.payload_len = G.size;
	G.payload = malloc(G.size + 1);
	if (!G.payload)
		die("out of memory");
	memset(G.payload, 'x', G.size);
	if (G.size >= 8) {
		memcpy(G.payload, "{\"p\":\"", 6);
		memcpy(G.payload + G.size - 2, "\"}", 2);
	}
}

static void parse_args(int argc, char **argv)
{
	enum { O_SOURCES = 256, O_SRCBASE, O_CONC, O_CTO, O_RETRIES, O_PROTO, O_V1, O_DEVICE,
	       O_CHANNEL, O_QUERY, O_WARMUP, O_PROGRESS, O_READY, O_QUIET, O_INFLIGHT, O_RATE,
	       O_PAYLOAD, O_MSGTYPE, O_TIMEOUT, O_SUBURL, O_TOKEN, O_EXPECT, O_RCVLOWAT, O_PROBES, O_NAKPAUSE };
	static const struct option lo[] = {
		{ "conns", required_argument, NULL, 'c' },
		{ "sources", required_argument, NULL, O_SOURCES },
		{ "source-base", required_argument, NULL, O_SRCBASE },
		{ "concurrency", required_argument, NULL, O_CONC },
		{ "connect-timeout", required_argument, NULL, O_CTO },
		{ "retries", required_argument, NULL, O_RETRIES },
		{ "proto", required_argument, NULL, O_PROTO },
		{ "v1", no_argument, NULL, O_V1 },
		{ "device", required_argument, NULL, O_DEVICE },
		{ "channel", required_argument, NULL, O_CHANNEL },
		{ "query", required_argument, NULL, O_QUERY },
		{ "duration", required_argument, NULL, 'd' },
		{ "warmup", required_argument, NULL, O_WARMUP },
		{ "progress", required_argument, NULL, O_PROGRESS },
		{ "ready-file", required_argument, NULL, O_READY },
		{ "quiet", no_argument, NULL, O_QUIET },
		{ "qos", required_argument, NULL, 'q' },
		{ "inflight", required_argument, NULL, O_INFLIGHT },
		{ "rate", required_argument, NULL, O_RATE },
		{ "size", required_argument, NULL, 's' },
		{ "payload", required_argument, NULL, O_PAYLOAD },
		{ "msgtype", required_argument, NULL, O_MSGTYPE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "sub-url", required_argument, NULL, O_SUBURL },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "expect", required_argument, NULL, O_EXPECT },
		{ "rcvlowat", required_argument, NULL, O_RCVLOWAT },
		{ "probes", required_argument, NULL, O_PROBES },
		{ "nak-pause", required_argument, NULL, O_NAKPAUSE },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 }
	};
	bool warmup_set = false, probes_set = false;
	int o;

	G.nconns = 100;
	G.concurrency = 256;
	G.connect_timeout = 10 * NS;
	G.duration = 10;
	G.progress = 1;
	G.qos = 1;
	G.size = 32;
	G.msgtype = 1;
	G.timeout = 10 * NS;
	G.nak_pause = 100 * MS;
	inet_pton(AF_INET, "127.0.0.2", &G.src_base);
	G.token = getenv("RAINBOW_TOKEN");
	while ((o = getopt_long(argc, argv, "c:d:q:s:h", lo, NULL)) != -1) {
		switch (o) {
		case 'c': G.nconns = (uint32_t)num(optarg, "--conns"); break;
		case O_SOURCES: G.nsrc = (uint32_t)num(optarg, "--sources"); break;
		case O_SRCBASE:
			if (inet_pton(AF_INET, optarg, &G.src_base) != 1)
				die("--source-base: not an IPv4 address: %s", optarg);
			break;
		case O_CONC: G.concurrency = (uint32_t)num(optarg, "--concurrency"); break;
		case O_CTO: G.connect_timeout = (int64_t)(num(optarg, "--connect-timeout") * NS); break;
		case O_RETRIES: G.retries = (int)num(optarg, "--retries"); break;
		case O_PROTO:
			if (!strcmp(optarg, "rainbow"))
				G.proto = P_RAINBOW;
			else if (!strcmp(optarg, "ws") || !strcmp(optarg, "ws-text"))
				G.proto = P_WS;
			else
				die("--proto: rainbow or ws");
			break;
		case O_V1: G.v1 = true; break;
		case O_DEVICE: G.device = optarg; break;
		case O_CHANNEL: G.channel = optarg; break;
		case O_QUERY: G.query = optarg; break;
		case 'd': G.duration = num(optarg, "--duration"); break;
		case O_WARMUP: G.warmup = num(optarg, "--warmup"); warmup_set = true; break;
		case O_PROGRESS: G.progress = num(optarg, "--progress"); break;
		case O_READY: G.ready_file = optarg; break;
		case O_QUIET: G.quiet = true; break;
		case 'q': G.qos = (int)num(optarg, "--qos"); break;
		case O_INFLIGHT: G.inflight = (int)num(optarg, "--inflight"); G.inflight_set = true; break;
		case O_RATE: G.rate = num(optarg, "--rate"); break;
		case 's': G.size = (size_t)num(optarg, "--size"); break;
		case O_PAYLOAD: G.payload_opt = optarg; break;
		case O_MSGTYPE: G.msgtype = (int)num(optarg, "--msgtype"); break;
		case O_TIMEOUT: G.timeout = (int64_t)(num(optarg, "--timeout") * NS); break;
		case O_SUBURL: G.sub_url = optarg; break;
		case O_TOKEN: G.token = optarg; break;
		case O_EXPECT: G.expect = (uint64_t)num(optarg, "--expect"); break;
		case O_NAKPAUSE: G.nak_pause = (int64_t)(num(optarg, "--nak-pause") * MS); break;
		case O_RCVLOWAT: G.rcvlowat = (int)num(optarg, "--rcvlowat"); break;
		case O_PROBES: G.probes = (uint32_t)num(optarg, "--probes"); probes_set = true; break;
		case 'h': fputs(usage, stdout); exit(0);
		default: fputs(usage, stderr); exit(2);
		}
	}
	if (argc - optind != 2) {
		fputs(usage, stderr);
		exit(2);
	}
	if (!strcmp(argv[optind], "rpc"))
		G.mode = M_RPC;
	else if (!strcmp(argv[optind], "fanout"))
		G.mode = M_FANOUT;
	else if (!strcmp(argv[optind], "idle"))
		G.mode = M_IDLE;
	else
		die("unknown mode %s (rpc, fanout, idle)", argv[optind]);
	G.url = argv[optind + 1];
	if (!G.nconns)
		die("--conns must be at least 1");
	if (!G.concurrency)
		G.concurrency = 1;
	if (G.qos > 2)
		die("--qos: 0, 1 or 2");
	if (G.msgtype > 65535)
		die("--msgtype: 0..65535");
	if (G.nsrc > 250)
		die("--sources: at most 250");
	if (G.retries > 100)
		G.retries = 100;
	if (!warmup_set)
		G.warmup = G.mode == M_RPC ? 1 : 0;
	if (!G.inflight_set)
		G.inflight = G.mode == M_RPC && G.rate > 0 ? 16 : 1;
	if (G.inflight < 1 || G.inflight > 16384)
		die("--inflight: 1..16384");
	if (G.sub_url) {
		if (G.mode != M_FANOUT || G.proto != P_RAINBOW || !G.channel)
			die("--sub-url needs fanout, --proto rainbow and --channel");
		if (!G.token)
			die("--sub-url needs --token or $RAINBOW_TOKEN");
		parse_sub_url();
	}
	if (G.rcvlowat && G.mode != M_FANOUT)
		die("--rcvlowat is for fanout");
	if (!probes_set)
		G.probes = 20;
	if (G.probes > G.nconns)
		G.probes = G.nconns;
	if (G.mode == M_RPC && G.proto == P_WS && G.qos == 0)
		G.qos = 1; /* an echo always answers */
	G.flood = G.mode == M_RPC && G.proto == P_RAINBOW && G.qos == 0 && G.rate <= 0;
	parse_url();
	make_payload();
}

int main(int argc, char **argv)
{
	struct epoll_event evs[MAX_EVENTS];
	struct rlimit rl;
	struct sigaction sa;
	struct timespec ts;

	parse_args(argc, argv);

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)G.nconns + 32 > rl.rlim_cur)
		die("--conns %u needs more open files than the limit (%lu): at most %lu",
		    G.nconns, (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_cur - 32);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	clock_gettime(CLOCK_REALTIME, &ts);
	G.rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40);
	if (!G.rng)
		G.rng = 0x9E3779B97F4A7C15ULL;
	if (hdr_init(&G.lat, 1, HOUR_US, 3) || hdr_init(&G.conn_lat, 1, HOUR_US, 3))
		die("out of memory");
	G.conns = calloc(G.nconns, sizeof(*G.conns));
	G.retryq = calloc(G.nconns, sizeof(*G.retryq));
	G.pauseq = calloc(G.nconns, sizeof(*G.pauseq));
	G.rbuf = malloc(RBUF_SIZE);
	if (!G.conns || !G.retryq || !G.pauseq || !G.rbuf)
		die("out of memory");
	if (G.mode == M_RPC) {
		uint32_t want = (uint32_t)G.inflight * 2 + 2;
		G.nslots = 4;
		while (G.nslots < want)
			G.nslots *= 2;
		if (G.nslots > 32768)
			G.nslots = 32768;
		G.slot_mask = G.nslots - 1;
		if (G.rate > 0) {
			G.bl_cap = 1u << 20;
			G.backlog = malloc(G.bl_cap * sizeof(*G.backlog));
			if (!G.backlog)
				die("out of memory");
		}
	}
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		c->fd = -1;
		c->src = G.nsrc ? i % G.nsrc : 0;
		/* probes spread evenly over the connections (and so over the
		 * order in which a channel's members are written to) */
		c->probe = !G.rcvlowat ||
			   (G.probes && i % (G.nconns / G.probes) == 0 &&
			    i / (G.nconns / G.probes) < G.probes);
		c->next_id = 1;
		if (G.mode == M_RPC) {
			c->slots = calloc(G.nslots, sizeof(*c->slots));
			if (!c->slots)
				die("out of memory");
		}
	}
	G.nhc = G.sub_url ? 4 : 0;
	for (int i = 0; i < G.nhc; i++)
		G.hcs[i].fd = -1;
	G.ep = epoll_create1(EPOLL_CLOEXEC);
	if (G.ep < 0)
		die("epoll_create1: %s", strerror(errno));

	note("%s %s: %u connections over %u source address(es), %u at once",
	     G.mode == M_RPC ? "rpc" : G.mode == M_FANOUT ? "fanout" : "idle", G.url, G.nconns,
	     G.nsrc ? G.nsrc : 1, G.concurrency);
	tick_now();
	G.t_start = G.now;
	G.t_prog = G.now;
	getrusage(RUSAGE_SELF, &G.ru_prog);
	G.next_progress = G.now + (int64_t)(G.progress * NS);

	for (;;) {
		int64_t wake;
		int n;

		tick_now();
		phases();
		if (G.stop_why)
			break;
		start_more();
		if (G.ready && !G.load_on)
			load_start();
		if (G.mode == M_RPC && G.load_on && G.rate > 0)
			pace();
		if (G.pq_len)
			unpause_due();
		tick_now();
		timers();
		wake = next_wake() - now_ns();
		if (wake < 0)
			wake = 0;
		ts.tv_sec = wake / NS;
		ts.tv_nsec = wake % NS;
		n = epoll_pwait2(G.ep, evs, MAX_EVENTS, &ts, NULL);
		if (n < 0 && errno == ENOSYS)
			n = epoll_wait(G.ep, evs, MAX_EVENTS, (int)((wake + MS - 1) / MS));
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait: %s", strerror(errno));
		}
		tick_now();
		for (int i = 0; i < n; i++) {
			uint32_t id = evs[i].data.u32;
			if (id < G.nconns)
				conn_event(&G.conns[id], evs[i].events);
			else
				hc_event(&G.hcs[id - G.nconns], evs[i].events);
		}
	}
	tick_now();
	window_end();
	if (G.progress > 0)
		progress();
	note("stop: %s", G.stop_why);
	report();
	/* a close frame to each, then the sockets */
	for (uint32_t i = 0; i < G.nconns; i++) {
		struct conn *c = &G.conns[i];
		if (c->fd < 0)
			continue;
		if (c->st == ST_OPEN) {
			static const uint8_t bye[2] = { 0x03, 0xE8 };
			c->tx_len = c->tx_off = 0;
			ws_write(c, 0x8, bye, 2, NULL, 0);
			(void)send(c->fd, c->tx, c->tx_len, MSG_NOSIGNAL | MSG_DONTWAIT);
		}
		close(c->fd);
		conn_free_bufs(c);
		free(c->slots);
	}
	for (int i = 0; i < G.nhc; i++) {
		hc_close(&G.hcs[i]);
		free(G.hcs[i].rx);
		free(G.hcs[i].tx);
		free(G.hcs[i].cur);
	}
	while (G.sq_head) {
		struct subreq *r = G.sq_head;
		G.sq_head = r->next;
		free(r);
	}
	close(G.ep);
	free(G.conns);
	free(G.retryq);
	free(G.pauseq);
	free(G.rbuf);
	free(G.backlog);
	free(G.payload);
	hdr_free(&G.lat);
	hdr_free(&G.conn_lat);
	return 0;
}
