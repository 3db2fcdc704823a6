#include "cluster/mesh.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "cluster/discovery.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/idmap.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/net.h"
#include "src/core/core.h"
#include "src/core/door.h"

#define RETRY_MIN_MS 100
#define RETRY_MAX_MS 5000

struct mnode;

struct mlink {
	struct mlink *prev, *next;   /* every link of the mesh */
	struct mesh *m;
	struct bufferevent *bev;
	struct event *timer;         /* handshake deadline, then heartbeat */
	bool outbound;
	uint32_t want;               /* outbound: the node dialed */
	bool got_hello, sent_hello, up;
	struct link_hello mine, theirs;
	struct mnode *node;          /* set once up */
	char peer[64];               /* socket peer, for the log */
	int64_t opened_ms, last_rx_ms;
	uint64_t ping_seq;
	bool in_cb;                  /* inside the engine's msg callback */
	const char *doomed;          /* closed (why) once the callback returns */
};

struct mnode {
	uint32_t id;
	uint32_t ip;
	uint16_t port;
	uint64_t incarnation;
	bool discovered;
	int64_t seen_since_ms;       /* discovered, or lost its link, at (for
	                              * the higher id's fallback dial) */
	struct mlink *link;          /* up */
	struct mlink *dialing;       /* ours, in handshake */
	struct event *retry;
	unsigned fails;
	uint64_t frames_in, frames_out, bytes_in, bytes_out, links_up, links_lost;
	int64_t last_heard_ms;
};

struct mesh {
	struct core *c;
	struct event_base *base;
	uint32_t self;
	uint64_t incarnation;
	const char *secret, *name;
	int64_t timeout_ms, ping_ms;
	struct mesh_cb cb;
	struct idmap nodes;          /* id -> struct mnode */
	struct mlink *links;
	struct event *sig_term, *sig_int;
	SSL_CTX *tls;                /* links in mutual TLS, or NULL */
	bool left;
};

static void link_close(struct mlink *l, const char *why);

static struct mnode *node_get(struct mesh *m, uint32_t id, bool create)
{
	struct mnode *n = idmap_get(&m->nodes, id);
	if (n || !create)
		return n;
	n = calloc(1, sizeof(*n));
	if (!n)
		return NULL;
	n->id = id;
	n->last_heard_ms = -1;
	if (idmap_put(&m->nodes, id, n) != RB_OK) {
		free(n);
		return NULL;
	}
	return n;
}

static void node_addr(const struct mnode *n, char *buf, size_t len)
{
	struct in_addr a = { htonl(n->ip) };
	char ip[INET_ADDRSTRLEN];
	inet_ntop(AF_INET, &a, ip, sizeof(ip));
	snprintf(buf, len, "%s:%u", ip, (unsigned)n->port);
}

/* The lower id dials; the higher one as well once it has known the peer
 * for two timeouts without a link (broadcast that reaches one way only). */
static bool should_dial(const struct mesh *m, const struct mnode *n)
{
	if (m->left || !n->discovered || n->link || n->dialing || !n->port)
		return false;
	return m->self < n->id ||
	       discovery_clock_ms() - n->seen_since_ms > 2 * m->timeout_ms;
}

static void node_forget_if_idle(struct mesh *m, struct mnode *n)
{
	if (n->discovered || n->link || n->dialing)
		return;
	idmap_del(&m->nodes, n->id);
	if (n->retry) {
		free(event_get_callback_arg(n->retry));
		event_free(n->retry);
	}
	free(n);
}

/* ---- sending ---- */

static int send_frame(struct mlink *l, const uint8_t *frame, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(l->bev);
	if (evbuffer_get_length(out) > MESH_HIGH_WATER) {
		metric_inc(M_LINK_BACKPRESSURE);
		return RB_EAGAIN;
	}
	if (evbuffer_add(out, frame, len) != 0)
		return RB_ENOMEM;
	if (l->node) {
		l->node->frames_out++;
		l->node->bytes_out += len;
	}
	return RB_OK;
}

static int link_send(struct mlink *l, const struct link_msg *msg)
{
	uint8_t small[512];
	int len = link_encode(msg, NULL, 0);
	if (len < 0)
		return len;
	uint8_t *buf = (size_t)len <= sizeof(small) ? small : malloc((size_t)len);
	if (!buf)
		return RB_ENOMEM;
	link_encode(msg, buf, (size_t)len);
	int rc = send_frame(l, buf, (size_t)len);
	if (buf != small)
		free(buf);
	return rc;
}

int mesh_send_raw(struct mesh *m, uint32_t node, const uint8_t *frame, size_t len)
{
	struct mnode *n = node_get(m, node, false);
	if (!n || !n->link)
		return RB_ECLOSED;
	return send_frame(n->link, frame, len);
}

int mesh_send(struct mesh *m, uint32_t node, const struct link_msg *msg)
{
	struct mnode *n = node_get(m, node, false);
	if (!n || !n->link)
		return RB_ECLOSED;
	return link_send(n->link, msg);
}

void mesh_reset(struct mesh *m, uint32_t node, const char *why)
{
	struct mnode *n = node_get(m, node, false);
	if (n && n->link && n->link->in_cb)
		n->link->doomed = why;
	else if (n && n->link)
		link_close(n->link, why);
}

bool mesh_is_up(const struct mesh *m, uint32_t node)
{
	const struct mnode *n = idmap_get(&m->nodes, node);
	return n && n->link;
}

size_t mesh_up_nodes(const struct mesh *m, uint32_t *out, size_t cap)
{
	size_t i = 0, k = 0;
	uint64_t id;
	void *v;
	while (idmap_next(&m->nodes, &i, &id, &v))
		if (((struct mnode *)v)->link) {
			if (k < cap)
				out[k] = (uint32_t)id;
			k++;
		}
	return k;
}

size_t mesh_peers(const struct mesh *m, struct mesh_peer_info *out, size_t cap)
{
	size_t i = 0, k = 0;
	uint64_t id;
	void *v;
	int64_t now = discovery_clock_ms();
	while (idmap_next(&m->nodes, &i, &id, &v)) {
		const struct mnode *n = v;
		if (k < cap) {
			struct mesh_peer_info *o = &out[k];
			*o = (struct mesh_peer_info){
				.id = n->id, .incarnation = n->incarnation,
				.discovered = n->discovered, .up = n->link != NULL,
				.state = n->link ? "up" : n->dialing ? "connecting" : "down",
				.frames_in = n->frames_in, .frames_out = n->frames_out,
				.bytes_in = n->bytes_in, .bytes_out = n->bytes_out,
				.links_up = n->links_up, .links_lost = n->links_lost,
				.output_bytes = n->link ? evbuffer_get_length(
					bufferevent_get_output(n->link->bev)) : 0,
				.last_heard_ms = n->last_heard_ms < 0 ? -1 : now - n->last_heard_ms,
			};
			node_addr(n, o->addr, sizeof(o->addr));
		}
		k++;
	}
	return k;
}

/* ---- dialing ---- */

static struct mlink *link_new(struct mesh *m, int fd, bool outbound);
static void dial(struct mesh *m, struct mnode *n);

/* Jittered exponential backoff: 100 ms doubling to 5 s, each wait drawn
 * uniformly in [w/2, w], so restarted nodes do not dial in lockstep. */
static int64_t backoff_ms(unsigned fails)
{
	int64_t w = RETRY_MIN_MS;
	for (unsigned i = 1; i < fails && w < RETRY_MAX_MS; i++)
		w *= 2;
	if (w > RETRY_MAX_MS)
		w = RETRY_MAX_MS;
	uint32_t r = 0;
	RAND_bytes((unsigned char *)&r, sizeof(r));
	return w / 2 + (int64_t)(r % (uint32_t)(w / 2 + 1));
}

struct retry_arg {
	struct mesh *m;
	uint32_t id;
};

static void retry_fire(evutil_socket_t fd, short what, void *arg)
{
	struct retry_arg *ra = arg;
	struct mnode *n = node_get(ra->m, ra->id, false);
	(void)fd;
	(void)what;
	if (n && should_dial(ra->m, n))
		dial(ra->m, n);
}

static void schedule_retry(struct mesh *m, struct mnode *n)
{
	if (m->left || !n->discovered)
		return;
	if (!n->retry) {
		struct retry_arg *ra = malloc(sizeof(*ra));
		if (!ra)
			return;
		*ra = (struct retry_arg){ m, n->id };
		n->retry = event_new(m->base, -1, 0, retry_fire, ra);
		if (!n->retry) {
			free(ra);
			return;
		}
	}
	n->fails++;
	int64_t ms = backoff_ms(n->fails);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
	event_add(n->retry, &tv);
}

static void dial(struct mesh *m, struct mnode *n)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(n->port),
				  .sin_addr = { htonl(n->ip) } };
	struct mlink *l = link_new(m, -1, true);
	if (!l) {
		schedule_retry(m, n);
		return;
	}
	l->want = n->id;
	n->dialing = l;
	node_addr(n, l->peer, sizeof(l->peer));
	if (bufferevent_socket_connect(l->bev, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		link_close(l, "connect failed");
}

/* ---- links ---- */

/* True if l is up (and still exists). */
static bool link_up(struct mlink *l)
{
	struct mesh *m = l->m;
	uint32_t id = l->theirs.node_id;
	struct mnode *n = node_get(m, id, true);
	if (!n) {
		link_close(l, "out of memory");
		return false;
	}
	if (n->dialing == l)
		n->dialing = NULL;
	if (n->link) {
		/* Two links to one node (both dialed): keep the one the lower
		 * id dialed, as the other side decides too. */
		bool mine_wins = l->outbound == (m->self < id);
		if (!mine_wins || n->link->theirs.incarnation > l->theirs.incarnation) {
			link_close(l, "duplicate link");
			return false;
		}
		link_close(n->link, "replaced by a newer link");
		if (!(n = node_get(m, id, true))) { /* the close may have freed it */
			link_close(l, "out of memory");
			return false;
		}
	}
	if (!l->outbound) {
		/* Learn the address from the link when discovery has not. */
		struct sockaddr_in sa;
		socklen_t sl = sizeof(sa);
		if (!n->ip && getpeername(bufferevent_getfd(l->bev), (struct sockaddr *)&sa,
					  &sl) == 0 && sa.sin_family == AF_INET)
			n->ip = ntohl(sa.sin_addr.s_addr);
		if (!n->port)
			n->port = l->theirs.port;
	}
	n->incarnation = l->theirs.incarnation;
	n->link = l;
	n->fails = 0;
	n->links_up++;
	l->node = n;
	l->up = true;
	metric_inc(M_LINKS_UP);
	log_info("cluster: link to %08x (%s) up, %s%s, incarnation %llu", id, l->peer,
		 l->outbound ? "dialed" : "accepted", m->tls ? ", TLS" : "",
		 (unsigned long long)n->incarnation);
	if (m->cb.up)
		m->cb.up(m->cb.arg, id, n->incarnation);
	return true;
}

static bool on_hello(struct mlink *l, const struct link_msg *msg)
{
	struct mesh *m = l->m;
	const struct link_hello *h = &msg->u.hello;
	const char *why = NULL;
	if (l->got_hello)
		why = "second HELLO";
	else if (h->version != LINK_VERSION)
		why = "other link version";
	else if (h->cluster.n != strlen(m->name) || memcmp(h->cluster.p, m->name, h->cluster.n))
		why = "other cluster name";
	else if (h->node_id == m->self)
		why = "own node id";
	else if (l->outbound && h->node_id != l->want)
		why = "not the node dialed";
	if (why) {
		metric_inc(M_LINK_REFUSED);
		link_close(l, why);
		return false;
	}
	l->theirs = *h;
	l->theirs.cluster = (struct link_str){ NULL, 0 }; /* borrowed: not kept */
	l->got_hello = true;
	struct link_msg a = { .type = LINK_AUTH };
	if (link_auth_mac(m->secret, &l->mine, &l->theirs, a.u.auth.mac) != RB_OK ||
	    link_send(l, &a) != RB_OK) {
		link_close(l, "cannot answer the challenge");
		return false;
	}
	return true;
}

static bool on_frame(struct mlink *l, const struct link_msg *msg, size_t len)
{
	struct mesh *m = l->m;
	l->last_rx_ms = discovery_clock_ms();
	if (l->node) {
		l->node->frames_in++;
		l->node->bytes_in += len;
		l->node->last_heard_ms = l->last_rx_ms;
	}
	if (!l->up) {
		if (msg->type == LINK_HELLO)
			return on_hello(l, msg);
		if (msg->type != LINK_AUTH || !l->got_hello) {
			metric_inc(M_LINK_REFUSED);
			link_close(l, "expected HELLO then AUTH");
			return false;
		}
		if (link_auth_verify(m->secret, &l->theirs, &l->mine, msg->u.auth.mac) != RB_OK) {
			metric_inc(M_LINK_AUTH_FAILED);
			link_close(l, "authentication failed (another cluster_secret?)");
			return false;
		}
		return link_up(l);
	}
	switch (msg->type) {
	case LINK_PING: {
		struct link_msg p = { .type = LINK_PONG, .u.ping.seq = msg->u.ping.seq };
		link_send(l, &p);
		return true;
	}
	case LINK_PONG:
		return true;
	case LINK_BYE:
		link_close(l, "peer left");
		return false;
	case LINK_HELLO:
	case LINK_AUTH:
		metric_inc(M_LINK_PROTO_ERRORS);
		link_close(l, "handshake frame on an up link");
		return false;
	default:
		/* The callback may reset this very link (mesh_reset): the
		 * close waits until it returns. */
		l->in_cb = true;
		if (m->cb.msg)
			m->cb.msg(m->cb.arg, l->node->id, msg);
		l->in_cb = false;
		if (l->doomed) {
			link_close(l, l->doomed);
			return false;
		}
		return true;
	}
}

static void on_read(struct bufferevent *bev, void *arg)
{
	struct mlink *l = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	for (;;) {
		size_t have = evbuffer_get_length(in);
		if (have < LINK_HDR_LEN)
			return;
		uint8_t *hdr = evbuffer_pullup(in, LINK_HDR_LEN);
		int flen = link_frame_len(hdr, LINK_HDR_LEN);
		if (flen == 0) {
			/* Only the header is complete: look at the length. */
			uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
				     (uint32_t)hdr[2] << 8 | hdr[3];
			if (have < 4 + (size_t)n)
				return;
			flen = (int)(4 + n);
		}
		if (flen < 0) {
			metric_inc(M_LINK_PROTO_ERRORS);
			link_close(l, flen == RB_ETOOBIG ? "frame too large" : "bad frame");
			return;
		}
		if (have < (size_t)flen)
			return;
		uint8_t *buf = evbuffer_pullup(in, flen);
		struct link_msg msg;
		const char *why = NULL;
		int rc = buf ? link_decode(buf, (size_t)flen, &msg, &why) : RB_ENOMEM;
		if (rc <= 0) {
			char reason[96];
			snprintf(reason, sizeof(reason), "malformed frame (%s)", why ? why : "?");
			metric_inc(M_LINK_PROTO_ERRORS);
			link_close(l, reason);
			return;
		}
		bool alive = on_frame(l, &msg, (size_t)flen);
		if (!alive)
			return;
		evbuffer_drain(in, (size_t)flen);
	}
}

static void send_hello(struct mlink *l)
{
	/* Once: a TLS link reports CONNECTED at the end of its handshake on
	 * the accepting side too. */
	if (l->sent_hello)
		return;
	l->sent_hello = true;
	struct link_msg h = { .type = LINK_HELLO, .u.hello = l->mine };
	if (link_send(l, &h) != RB_OK)
		link_close(l, "cannot send HELLO");
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
	struct mlink *l = arg;
	(void)bev;
	if (what & BEV_EVENT_CONNECTED) {
		net_nodelay(bufferevent_getfd(l->bev));
		send_hello(l);
		return;
	}
	unsigned long tls_err = l->m->tls ? bufferevent_get_openssl_error(l->bev) : 0;
	if (tls_err) {
		char why[160], e[120];
		ERR_error_string_n(tls_err, e, sizeof(e));
		snprintf(why, sizeof(why), "TLS: %s", e);
		if (!l->up)
			metric_inc(M_LINK_TLS_FAILED);
		link_close(l, why);
	} else if (what & BEV_EVENT_EOF) {
		link_close(l, "closed by peer");
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
		char why[96];
		snprintf(why, sizeof(why), "socket error: %s",
			 evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
		link_close(l, why);
	}
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct mlink *l = arg;
	int64_t now = discovery_clock_ms();
	(void)fd;
	(void)what;
	if (!l->up) {
		if (now - l->opened_ms > l->m->timeout_ms)
			link_close(l, "handshake timed out");
		return;
	}
	/* Checked every ping interval: silence of timeout less one interval
	 * (four missed heartbeats) drops the link, so a dead peer goes within
	 * cluster_peer_timeout. */
	if (now - l->last_rx_ms > l->m->timeout_ms - l->m->ping_ms) {
		char why[64];
		snprintf(why, sizeof(why), "nothing heard for %lld ms",
			 (long long)(now - l->last_rx_ms));
		link_close(l, why);
		return;
	}
	struct link_msg p = { .type = LINK_PING, .u.ping.seq = ++l->ping_seq };
	link_send(l, &p); /* over the high-water mark: the peer is slow, not gone */
}

static struct mlink *link_new(struct mesh *m, int fd, bool outbound)
{
	struct mlink *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->m = m;
	l->outbound = outbound;
	l->opened_ms = l->last_rx_ms = discovery_clock_ms();
	l->mine = (struct link_hello){ .version = LINK_VERSION, .node_id = m->self,
				       .incarnation = m->incarnation,
				       .port = (uint16_t)m->c->port,
				       .cluster = LINK_STR(m->name) };
	if (m->tls) {
		SSL *ssl = SSL_new(m->tls);
		if (ssl) {
			l->bev = bufferevent_openssl_socket_new(
				m->base, fd, ssl,
				outbound ? BUFFEREVENT_SSL_CONNECTING : BUFFEREVENT_SSL_ACCEPTING,
				BEV_OPT_CLOSE_ON_FREE);
			if (!l->bev)
				SSL_free(ssl);
			else /* a peer that just closes is an EOF, not an error */
				bufferevent_openssl_set_allow_dirty_shutdown(l->bev, 1);
		}
	} else {
		l->bev = bufferevent_socket_new(m->base, fd, BEV_OPT_CLOSE_ON_FREE);
	}
	l->timer = event_new(m->base, -1, EV_PERSIST, on_timer, l);
	if (!l->bev || !l->timer || link_challenge(l->mine.challenge) != RB_OK) {
		if (l->bev)
			bufferevent_free(l->bev);
		else if (fd >= 0)
			close(fd);
		if (l->timer)
			event_free(l->timer);
		free(l);
		return NULL;
	}
	bufferevent_setcb(l->bev, on_read, NULL, on_event, l);
	bufferevent_enable(l->bev, EV_READ | EV_WRITE);
	struct timeval tv = { m->ping_ms / 1000, (m->ping_ms % 1000) * 1000 };
	event_add(l->timer, &tv);
	l->next = m->links;
	if (m->links)
		m->links->prev = l;
	m->links = l;
	return l;
}

static void link_close(struct mlink *l, const char *why)
{
	struct mesh *m = l->m;
	struct mnode *n = l->node ? l->node : l->outbound ? node_get(m, l->want, false) : NULL;

	if (l->prev)
		l->prev->next = l->next;
	else
		m->links = l->next;
	if (l->next)
		l->next->prev = l->prev;
	bufferevent_free(l->bev);
	event_free(l->timer);
	if (l->up) {
		metric_inc(M_LINKS_LOST);
		log_info("cluster: link to %08x (%s) down: %s", n->id, l->peer, why);
	} else {
		log_debug("cluster: link with %s not established: %s", l->peer, why);
	}
	bool was_up = n && n->link == l;
	if (n && n->dialing == l)
		n->dialing = NULL;
	if (was_up) {
		n->link = NULL;
		n->links_lost++;
		/* The higher id waits again before dialing itself. */
		n->seen_since_ms = discovery_clock_ms();
	}
	free(l);
	if (!n)
		return;
	if (was_up && m->cb.down)
		m->cb.down(m->cb.arg, n->id);
	if (!n->link && !n->dialing && n->discovered)
		schedule_retry(m, n);
	node_forget_if_idle(m, n);
}

static void on_link_socket(void *arg, int fd, unsigned char first)
{
	struct mesh *m = arg;
	if (m->left) {
		close(fd);
		return;
	}
	if ((first == 0x16) != (m->tls != NULL)) {
		/* Both sides must agree: never fall back to plaintext. */
		char peer[64];
		net_peer_name(fd, peer, sizeof(peer));
		metric_inc(M_LINK_REFUSED);
		log_warn("cluster: %s link from %s refused: TLS on cluster links is %s here",
			 first == 0x16 ? "TLS" : "plaintext", peer, m->tls ? "on" : "off");
		close(fd);
		return;
	}
	net_nodelay(fd);
	evutil_make_socket_nonblocking(fd);
	char peer[64];
	net_peer_name(fd, peer, sizeof(peer));
	struct mlink *l = link_new(m, fd, false);
	if (!l)
		return;
	snprintf(l->peer, sizeof(l->peer), "%s", peer);
	send_hello(l);
}

/* ---- discovery ---- */

void mesh_peer_seen(struct mesh *m, uint32_t id, uint32_t ip, uint16_t port,
		    uint64_t incarnation)
{
	struct mnode *n = node_get(m, id, true);
	if (!n)
		return;
	if (!n->discovered)
		n->seen_since_ms = discovery_clock_ms();
	n->discovered = true;
	n->ip = ip;
	n->port = port;
	if (n->link && n->link->theirs.incarnation < incarnation)
		link_close(n->link, "peer restarted");
	if (!(n = node_get(m, id, true))) /* the close may have freed it */
		return;
	if (!n->link)
		n->incarnation = incarnation;
	if (should_dial(m, n))
		dial(m, n);
}

void mesh_peer_gone(struct mesh *m, uint32_t id, bool left)
{
	struct mnode *n = node_get(m, id, false);
	if (!n)
		return;
	n->discovered = false;
	if (n->retry)
		event_del(n->retry);
	/* Silence on UDP alone (beacons lost) does not cut a link that still
	 * answers its heartbeats; a leaving beacon does. */
	if (left && n->link)
		link_close(n->link, "peer left");
	else if (left && n->dialing)
		link_close(n->dialing, "peer left");
	else
		node_forget_if_idle(m, n);
}

/* ---- TLS ---- */

static void tls_log_errors(const char *what)
{
	unsigned long e;
	char buf[160];
	while ((e = ERR_get_error())) {
		ERR_error_string_n(e, buf, sizeof(buf));
		log_error("cluster: %s: %s", what, buf);
	}
}

/* Mutual TLS 1.2+: our certificate, and peers must show one the CA
 * signed. Names are not checked: the CA is the cluster's own, and the
 * secret's handshake inside names the nodes. */
static SSL_CTX *tls_ctx(const struct conf *conf)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, conf->cluster_tls_cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, conf->cluster_tls_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 ||
	    SSL_CTX_load_verify_locations(ctx, conf->cluster_tls_ca, NULL) != 1) {
		log_error("cluster: cannot set up TLS for links (cluster_tls_cert %s, "
			  "cluster_tls_key %s, cluster_tls_ca %s)", conf->cluster_tls_cert,
			  conf->cluster_tls_key, conf->cluster_tls_ca);
		tls_log_errors("TLS");
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	return ctx;
}

/* ---- life ---- */

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	mesh_leave(arg);
}

struct mesh *mesh_new(struct core *c, uint32_t self, uint64_t incarnation,
		      const struct mesh_cb *cb)
{
	struct mesh *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->c = c;
	m->base = c->base;
	m->self = self;
	m->incarnation = incarnation;
	m->secret = c->conf->cluster_secret;
	m->name = c->conf->cluster_name;
	m->timeout_ms = (int64_t)(c->conf->cluster_peer_timeout * 1000);
	m->ping_ms = m->timeout_ms / 5 > 10 ? m->timeout_ms / 5 : 10;
	m->cb = *cb;
	if (*c->conf->cluster_tls_cert && !(m->tls = tls_ctx(c->conf))) {
		free(m);
		return NULL;
	}
	m->sig_term = evsignal_new(m->base, SIGTERM, on_signal, m);
	m->sig_int = evsignal_new(m->base, SIGINT, on_signal, m);
	if (!m->sig_term || !m->sig_int || event_add(m->sig_term, NULL) ||
	    event_add(m->sig_int, NULL)) {
		mesh_free(m);
		return NULL;
	}
	door_on_link(c->door, on_link_socket, m);
	return m;
}

void mesh_leave(struct mesh *m)
{
	if (!m || m->left)
		return;
	m->left = true;
	struct link_msg bye = { .type = LINK_BYE };
	for (struct mlink *l = m->links; l; l = l->next)
		if (l->up)
			link_send(l, &bye);
}

void mesh_free(struct mesh *m)
{
	if (!m)
		return;
	mesh_leave(m);
	door_on_link(m->c->door, NULL, NULL);
	while (m->links) {
		struct mlink *l = m->links;
		if (l->node)
			l->node->link = NULL; /* no down callbacks at exit */
		l->up = false;
		l->node = NULL;
		l->outbound = false;
		link_close(l, "shutting down");
	}
	size_t i = 0;
	uint64_t id;
	void *v;
	while (idmap_next(&m->nodes, &i, &id, &v)) {
		struct mnode *n = v;
		if (n->retry) {
			free(event_get_callback_arg(n->retry));
			event_free(n->retry);
		}
		free(n);
	}
	idmap_free(&m->nodes);
	if (m->sig_term)
		event_free(m->sig_term);
	if (m->sig_int)
		event_free(m->sig_int);
	SSL_CTX_free(m->tls);
	free(m);
}
