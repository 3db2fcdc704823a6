#include "cluster/discovery.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "protocol/beacon.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/timeutil.h"
#include "src/core/core.h"

/* Beacons whose timestamp is further than this from our clock are stale:
 * room for LAN clocks that NTP keeps within far less, while a captured
 * beacon cannot be replayed later (the replay table covers the window). */
#define MAX_SKEW_MS 30000
#define BACKOFF_MAX_MS 60000
#define MAX_DESTS 1024
#define RECV_BURST 64   /* datagrams per read callback, then the loop turns */

struct dest {
	struct sockaddr_in sa;
	bool seed;
	bool live;              /* broadcasts: found on this tick's interfaces */
	unsigned fails;         /* consecutive failed sends */
	int64_t retry_at;       /* monotonic ms; 0 = now */
};

struct discovery {
	struct core *core;
	struct event_base *base;
	int fd;
	int udp_port, udp_lo, udp_hi;
	struct event *rx, *timer, *sig_term, *sig_int;
	const char *name, *secret;
	int64_t interval_ms, timeout_ms;
	uint32_t self;
	uint64_t incarnation;
	uint16_t tcp_port;
	int64_t last_ts;        /* timestamps strictly increase per datagram */
	bool left;
	struct dest *dests;
	size_t n_dests;
	struct beacon_replay replay;
	struct peer_table peers;
	discovery_fn watch;
	void *watch_arg;
};

int64_t discovery_clock_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sa_name(const struct sockaddr_in *sa, char *buf, size_t len)
{
	char ip[INET_ADDRSTRLEN];
	if (!inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof(ip)))
		snprintf(ip, sizeof(ip), "?");
	snprintf(buf, len, "%s:%u", ip, (unsigned)ntohs(sa->sin_port));
}

static struct dest *find_dest(struct discovery *d, const struct sockaddr_in *sa)
{
	for (size_t i = 0; i < d->n_dests; i++)
		if (d->dests[i].sa.sin_addr.s_addr == sa->sin_addr.s_addr &&
		    d->dests[i].sa.sin_port == sa->sin_port)
			return &d->dests[i];
	return NULL;
}

static void add_dest(struct discovery *d, const struct sockaddr_in *sa, bool seed)
{
	struct dest *x = find_dest(d, sa);
	if (x) {
		x->live = true;
		x->seed = x->seed || seed;
		return;
	}
	if (d->n_dests == MAX_DESTS)
		return;
	d->dests[d->n_dests++] = (struct dest){ .sa = *sa, .seed = seed, .live = true };
}

static void add_broadcast(struct discovery *d, in_addr_t addr)
{
	for (int p = d->udp_lo; p <= d->udp_hi; p++) {
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = addr,
					  .sin_port = htons((uint16_t)p) };
		add_dest(d, &sa, false);
	}
}

/* The broadcast destinations of this moment: interfaces come and go. A
 * destination that stays keeps its back-off. */
static void refresh_dests(struct discovery *d)
{
	struct ifaddrs *ifs = NULL;

	for (size_t i = 0; i < d->n_dests; i++)
		d->dests[i].live = d->dests[i].seed;
	if (getifaddrs(&ifs) == 0) {
		for (struct ifaddrs *a = ifs; a; a = a->ifa_next) {
			if (!a->ifa_addr || a->ifa_addr->sa_family != AF_INET ||
			    !(a->ifa_flags & IFF_UP) || !(a->ifa_flags & IFF_BROADCAST) ||
			    (a->ifa_flags & IFF_LOOPBACK))
				continue;
			uint32_t bc = 0;
			if (a->ifa_broadaddr && a->ifa_broadaddr->sa_family == AF_INET)
				bc = ((struct sockaddr_in *)a->ifa_broadaddr)->sin_addr.s_addr;
			if (!bc && a->ifa_netmask && a->ifa_netmask->sa_family == AF_INET) {
				/* An address added without "brd": the subnet's
				 * broadcast all the same (not for /31 and /32). */
				uint32_t ad = ((struct sockaddr_in *)a->ifa_addr)->sin_addr.s_addr;
				uint32_t nm = ((struct sockaddr_in *)a->ifa_netmask)->sin_addr.s_addr;
				if (ntohl(~nm) >= 3)
					bc = ad | ~nm;
			}
			if (bc)
				add_broadcast(d, bc);
		}
		freeifaddrs(ifs);
	}
	add_broadcast(d, htonl(INADDR_BROADCAST));
	size_t k = 0;
	for (size_t i = 0; i < d->n_dests; i++)
		if (d->dests[i].live)
			d->dests[k++] = d->dests[i];
	d->n_dests = k;
}

static int encode(struct discovery *d, bool leaving, uint8_t *out, size_t cap)
{
	struct beacon b = { .node_id = d->self, .incarnation = d->incarnation,
			    .port = d->tcp_port, .leaving = leaving };
	int64_t now = wall_ms();
	d->last_ts = now > d->last_ts ? now : d->last_ts + 1;
	b.timestamp_ms = d->last_ts;
	if (beacon_set_name(&b, d->name) != RB_OK)
		return RB_EINVAL;
	return beacon_encode(&b, d->secret, out, cap);
}

static void send_all(struct discovery *d, bool leaving)
{
	uint8_t buf[BEACON_MAX_LEN];
	int64_t now = discovery_clock_ms();

	for (size_t i = 0; i < d->n_dests; i++) {
		struct dest *x = &d->dests[i];
		if (!leaving && x->retry_at && now < x->retry_at)
			continue;
		/* A fresh timestamp per datagram: one beacon reaching a peer by
		 * two paths (broadcast and seed) is not taken for a replay. */
		int n = encode(d, leaving, buf, sizeof(buf));
		if (n < 0) {
			log_error("cluster: cannot encode a beacon (%s)", rb_strerror(n));
			return;
		}
		if (sendto(d->fd, buf, (size_t)n, 0, (struct sockaddr *)&x->sa, sizeof(x->sa)) == n) {
			metric_inc(M_BEACONS_SENT);
			if (x->fails && !leaving) {
				char name[64];
				sa_name(&x->sa, name, sizeof(name));
				log_info("cluster: beacons to %s go through again", name);
			}
			x->fails = 0;
			x->retry_at = 0;
			continue;
		}
		int e = errno;
		metric_inc(M_BEACON_SEND_ERRORS);
		if (leaving || e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS || e == EINTR)
			continue; /* transient: the next tick tries again */
		if (x->fails++ == 0) {
			char name[64];
			sa_name(&x->sa, name, sizeof(name));
			log_warn("cluster: cannot send beacons to %s (%s): %s%s; backing off", name,
				 x->seed ? "seed" : "broadcast", strerror(e),
				 x->seed ? "" : " (normal without a route there)");
		}
		int64_t wait = d->interval_ms;
		for (unsigned k = 1; k < x->fails && wait < BACKOFF_MAX_MS; k++)
			wait *= 2;
		x->retry_at = now + (wait < BACKOFF_MAX_MS ? wait : BACKOFF_MAX_MS);
	}
}

static void tell(struct discovery *d, enum discovery_event ev, const struct peer *p, bool left)
{
	if (d->watch)
		d->watch(d->watch_arg, ev, p, left);
}

static void on_expired(void *arg, const struct peer *p)
{
	char addr[64];
	peer_addr(p, addr, sizeof(addr));
	log_info("cluster: peer %08x at %s dropped: not heard from for %lld ms", p->id, addr,
		 (long long)((struct discovery *)arg)->timeout_ms);
	metric_inc(M_PEERS_DROPPED);
	tell(arg, DISCOVERY_GONE, p, false);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	struct discovery *d = arg;
	CORE_THREAD(d->core);
	peers_expire(&d->peers, discovery_clock_ms(), d->timeout_ms, on_expired, d);
	if (d->left)
		return;
	refresh_dests(d);
	send_all(d, false);
}

static void handle(struct discovery *d, const uint8_t *buf, size_t len,
		   const struct sockaddr_in *from)
{
	struct beacon b;
	const char *why = NULL;
	int rc = beacon_decode(buf, len, d->secret, d->name, wall_ms(), MAX_SKEW_MS, &b, &why);
	switch (rc) {
	case RB_OK: break;
	case BEACON_EMALFORMED: metric_inc(M_BEACONS_MALFORMED); return;
	case BEACON_EVERSION: metric_inc(M_BEACONS_VERSION); return;
	case BEACON_EFOREIGN: metric_inc(M_BEACONS_FOREIGN); return;
	case BEACON_EMAC: metric_inc(M_BEACONS_FORGED); return;
	case BEACON_ESTALE: metric_inc(M_BEACONS_STALE); return;
	default: metric_inc(M_BEACONS_MALFORMED); return;
	}
	if (b.node_id == d->self) {
		/* Our own, back through a broadcast: never peer with ourselves. */
		metric_inc(M_BEACONS_SELF);
		return;
	}
	if (beacon_replay_check(&d->replay, &b) != RB_OK) {
		metric_inc(M_BEACONS_REPLAYED);
		return;
	}
	metric_inc(M_BEACONS_RECEIVED);
	struct peer old;
	uint32_t ip = ntohl(from->sin_addr.s_addr);
	enum peer_event ev = peers_seen(&d->peers, &b, ip, discovery_clock_ms(), &old);
	char addr[64], oaddr[64];
	struct peer now = { .id = b.node_id, .ip = ip, .port = b.port };
	peer_addr(&now, addr, sizeof(addr));
	switch (ev) {
	case PEER_REFRESHED:
	case PEER_IGNORED:
		break;
	case PEER_REPLACED:
		peer_addr(&old, oaddr, sizeof(oaddr));
		log_info("cluster: peer %08x at %s replaced by a new start of it", old.id, oaddr);
		metric_inc(M_PEERS_DROPPED);
		tell(d, DISCOVERY_GONE, &old, false);
		/* fall through */
	case PEER_JOINED:
		log_info("cluster: peer %08x at %s joined (incarnation %llu)", b.node_id, addr,
			 (unsigned long long)b.incarnation);
		metric_inc(M_PEERS_JOINED);
		now.incarnation = b.incarnation;
		tell(d, DISCOVERY_JOINED, &now, false);
		break;
	case PEER_LEFT:
		log_info("cluster: peer %08x at %s left", b.node_id, addr);
		metric_inc(M_PEERS_DROPPED);
		tell(d, DISCOVERY_GONE, &old, true);
		break;
	case PEER_FULL:
		log_warn("cluster: peer %08x at %s ignored: %d peers already", b.node_id, addr,
			 PEERS_MAX);
		break;
	}
}

static void on_read(evutil_socket_t fd, short what, void *arg)
{
	struct discovery *d = arg;
	uint8_t buf[BEACON_MAX_LEN + 1]; /* one more: a longer datagram is malformed */
	CORE_THREAD(d->core);

	for (int i = 0; i < RECV_BURST; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		ssize_t n = recvfrom(d->fd, buf, sizeof(buf), MSG_TRUNC, (struct sockaddr *)&ss, &sl);
		if (n < 0)
			return; /* EAGAIN, or an ICMP error of an earlier send */
		if (ss.ss_family != AF_INET)
			continue;
		size_t len = (size_t)n > sizeof(buf) ? sizeof(buf) : (size_t)n;
		handle(d, buf, len, (const struct sockaddr_in *)&ss);
	}
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
	/* The core drains on the same signal; the peers learn at once. */
	discovery_leave(arg);
}

/* Bind the first free port of udp_ports; -1 if none. */
static int bind_udp(struct discovery *d, const char *bind_addr)
{
	struct in_addr ip = { .s_addr = htonl(INADDR_ANY) };
	if (inet_pton(AF_INET, bind_addr, &ip) != 1)
		ip.s_addr = htonl(INADDR_ANY); /* an IPv6 bind: beacons are IPv4 */
	for (int p = d->udp_lo; p <= d->udp_hi; p++) {
		int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return -1;
		int one = 1;
		struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr = ip,
					  .sin_port = htons((uint16_t)p) };
		if (setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof(one)) == 0 &&
		    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
			d->udp_port = p;
			return fd;
		}
		close(fd);
	}
	return -1;
}

/* "host:port,host:port": each resolved now (synchronously, once). A bad
 * entry stops the start; a name that does not resolve is logged and left
 * out. */
static int add_seeds(struct discovery *d, const char *list)
{
	char *copy = strdup(list), *save = NULL;
	if (!copy)
		return RB_ENOMEM;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t l = strlen(tok);
		while (l && (tok[l - 1] == ' ' || tok[l - 1] == '\t'))
			tok[--l] = 0;
		if (!*tok)
			continue;
		char *colon = strrchr(tok, ':');
		unsigned long port = colon ? strtoul(colon + 1, NULL, 10) : 0;
		if (!colon || colon == tok || port < 1 || port > 65535 ||
		    strspn(colon + 1, "0123456789") != strlen(colon + 1)) {
			log_error("cluster_seeds: '%s' is not host:port", tok);
			free(copy);
			return RB_EINVAL;
		}
		*colon = 0;
		struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_DGRAM }, *res;
		int rc = getaddrinfo(tok, colon + 1, &hints, &res);
		if (rc != 0) {
			log_warn("cluster_seeds: cannot resolve %s: %s; left out", tok, gai_strerror(rc));
			continue;
		}
		for (struct addrinfo *a = res; a; a = a->ai_next)
			if (a->ai_family == AF_INET)
				add_dest(d, (struct sockaddr_in *)a->ai_addr, true);
		freeaddrinfo(res);
	}
	free(copy);
	return RB_OK;
}

struct discovery *discovery_new(struct core *c)
{
	const struct conf *conf = c->conf;
	struct discovery *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	CORE_THREAD(c);
	d->core = c;
	d->base = c->base;
	d->fd = -1;
	d->name = conf->cluster_name;
	d->secret = conf->cluster_secret;
	d->interval_ms = (int64_t)(conf->cluster_beacon_interval * 1000 + 0.5);
	d->timeout_ms = (int64_t)(conf->cluster_peer_timeout * 1000 + 0.5);
	d->tcp_port = (uint16_t)c->port;
	d->incarnation = (uint64_t)wall_ms();
	beacon_replay_init(&d->replay);
	peers_init(&d->peers);
	d->dests = calloc(MAX_DESTS, sizeof(*d->dests));
	if (!d->dests)
		goto fail;
	/* The node id the core drew at start: it also tags every identity
	 * made here (identity_node()), so beacons and identities agree. */
	d->self = c->node_id;
	if (conf_port_range(conf->udp_ports, &d->udp_lo, &d->udp_hi) != RB_OK) {
		log_error("udp_ports: '%s' is not a range", conf->udp_ports);
		goto fail;
	}
	if ((d->fd = bind_udp(d, conf->bind)) < 0) {
		log_error("cluster: no free UDP port in udp_ports %s on %s", conf->udp_ports,
			  conf->bind);
		goto fail;
	}
	if (add_seeds(d, conf->cluster_seeds) != RB_OK)
		goto fail;
	struct timeval tv = tv_from_seconds(conf->cluster_beacon_interval);
	d->rx = event_new(d->base, d->fd, EV_READ | EV_PERSIST, on_read, d);
	d->timer = event_new(d->base, -1, EV_PERSIST, on_timer, d);
	/* A second handler for the core's signals: libevent runs both. */
	d->sig_term = evsignal_new(d->base, SIGTERM, on_signal, d);
	d->sig_int = evsignal_new(d->base, SIGINT, on_signal, d);
	if (!d->rx || !d->timer || !d->sig_term || !d->sig_int || event_add(d->rx, NULL) ||
	    event_add(d->timer, &tv) || event_add(d->sig_term, NULL) ||
	    event_add(d->sig_int, NULL))
		goto fail;
	log_info("cluster '%s': node %08x (incarnation %llu) beaconing on UDP %s:%d every %g s, "
		 "peers time out after %g s", d->name, d->self, (unsigned long long)d->incarnation,
		 conf->bind, d->udp_port, conf->cluster_beacon_interval, conf->cluster_peer_timeout);
	refresh_dests(d);
	send_all(d, false);
	return d;
fail:
	d->left = true; /* nothing to tell anyone */
	discovery_free(d);
	return NULL;
}

void discovery_leave(struct discovery *d)
{
	if (!d || d->left)
		return;
	d->left = true;
	send_all(d, true);
	log_info("cluster: node %08x left (leaving beacon sent)", d->self);
}

void discovery_free(struct discovery *d)
{
	if (!d)
		return;
	discovery_leave(d);
	struct event *evs[] = { d->rx, d->timer, d->sig_term, d->sig_int };
	for (size_t i = 0; i < RB_ARRAY_LEN(evs); i++)
		if (evs[i])
			event_free(evs[i]);
	if (d->fd >= 0)
		close(d->fd);
	free(d->dests);
	free(d);
}

void discovery_watch(struct discovery *d, discovery_fn fn, void *arg)
{
	d->watch = fn;
	d->watch_arg = arg;
}

uint32_t discovery_self(const struct discovery *d)
{
	return d->self;
}

uint64_t discovery_incarnation(const struct discovery *d)
{
	return d->incarnation;
}

int discovery_udp_port(const struct discovery *d)
{
	return d->udp_port;
}

size_t discovery_peers(const struct discovery *d, const struct peer **out)
{
	*out = d->peers.p;
	return d->peers.n;
}
