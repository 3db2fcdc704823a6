#include "src/base/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/timeutil.h"

#define PAUSE_MIN_MS 10
#define PAUSE_MAX_MS 1000
#define LOG_INTERVAL 10.0 /* seconds between two log lines about failures */

#define BUSY_BODY "{\"status\":1,\"msg\":\"out of file descriptors\"}"
#define BUSY_ANSWER "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n" \
	"Content-Length: %zu\r\nConnection: close\r\n\r\n%s"

struct net_listener {
	struct evconnlistener *lst;
	struct event *resume;   /* ends a pause */
	const char *who;
	net_accept_fn cb;
	void *arg;
	int reserve_fd;         /* /dev/null; -1 if it could not be had back */
	int pause_ms;           /* the last pause; 0 once an accept succeeds */
	unsigned long unlogged; /* failures since the last log line */
	double logged_at;       /* monotonic seconds */
};

static void on_accept(struct evconnlistener *lst, evutil_socket_t fd,
		      struct sockaddr *sa, int salen, void *arg)
{
	struct net_listener *l = arg;

	if (l->pause_ms) {
		l->pause_ms = 0;
		if (l->unlogged && mono_now() - l->logged_at >= LOG_INTERVAL) {
			log_info("%s: accepting again (%lu failed accepts not logged)", l->who,
				 l->unlogged);
			l->unlogged = 0;
			l->logged_at = mono_now();
		}
	}
	l->cb(l->arg, fd);
}

/* Out of descriptors: use the reserve one to tell the oldest waiting client. */
static void shed_one(struct net_listener *l)
{
	char buf[512];

	if (l->reserve_fd < 0)
		return;
	close(l->reserve_fd);
	int fd = accept4(evconnlistener_get_fd(l->lst), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd >= 0) {
		/* Read what already came, so that the close is not a reset
		 * that could destroy the answer. */
		for (int i = 0; i < 16 && recv(fd, buf, sizeof(buf), 0) > 0; i++)
			;
		int n = snprintf(buf, sizeof(buf), BUSY_ANSWER, strlen(BUSY_BODY), BUSY_BODY);
		ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
		(void)w; /* best effort */
		shutdown(fd, SHUT_WR);
		close(fd);
		metric_inc(M_ACCEPT_SHED);
	}
	l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void on_accept_error(struct evconnlistener *lst, void *arg)
{
	struct net_listener *l = arg;
	int err = EVUTIL_SOCKET_ERROR();

	metric_inc(M_ACCEPT_ERRORS);
	if (err == EMFILE || err == ENFILE)
		shed_one(l);
	/* The listening socket stays readable: retrying now would spin. */
	l->pause_ms = l->pause_ms ? l->pause_ms * 2 : PAUSE_MIN_MS;
	if (l->pause_ms > PAUSE_MAX_MS)
		l->pause_ms = PAUSE_MAX_MS;
	evconnlistener_disable(l->lst);
	struct timeval tv = tv_from_seconds(l->pause_ms / 1e3);
	evtimer_add(l->resume, &tv);
	double t = mono_now();
	if (t - l->logged_at >= LOG_INTERVAL) {
		char more[80] = "";
		if (l->unlogged)
			snprintf(more, sizeof(more), " (%lu more failures since the last report)",
				 l->unlogged);
		log_warn("%s: accept failed: %s; pausing accepts for %d ms%s", l->who,
			 evutil_socket_error_to_string(err), l->pause_ms, more);
		l->unlogged = 0;
		l->logged_at = t;
	} else {
		l->unlogged++;
	}
}

static void on_resume(evutil_socket_t fd, short what, void *arg)
{
	struct net_listener *l = arg;
	if (l->reserve_fd < 0)
		l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	evconnlistener_enable(l->lst);
}

struct net_listener *net_listen(struct event_base *base, const char *who,
				const char *bind, int port, int backlog,
				net_accept_fn cb, void *arg)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss);
	char addr[300];
	struct net_listener *l = calloc(1, sizeof(*l));

	if (!l)
		return NULL;
	l->who = who;
	l->cb = cb;
	l->arg = arg;
	l->logged_at = -LOG_INTERVAL;
	l->reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	l->resume = evtimer_new(base, on_resume, l);
	if (!l->resume)
		goto fail;
	snprintf(addr, sizeof(addr), strchr(bind, ':') ? "[%s]:%d" : "%s:%d", bind, port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0) {
		log_error("%s: bad listen address '%s'", who, addr);
		goto fail;
	}
	l->lst = evconnlistener_new_bind(
		base, on_accept, l, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
		backlog, (struct sockaddr *)&ss, sl);
	if (!l->lst) {
		log_error("%s: cannot listen on %s: %s", who, addr, strerror(errno));
		goto fail;
	}
	evconnlistener_set_error_cb(l->lst, on_accept_error);
	return l;
fail:
	net_listener_free(l);
	return NULL;
}

int net_listener_port(const struct net_listener *l)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (getsockname(evconnlistener_get_fd(l->lst), (struct sockaddr *)&ss, &sl) != 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					      : ((struct sockaddr_in *)&ss)->sin_port);
}

void net_listener_free(struct net_listener *l)
{
	if (!l)
		return;
	if (l->lst)
		evconnlistener_free(l->lst);
	if (l->resume)
		event_free(l->resume);
	if (l->reserve_fd >= 0)
		close(l->reserve_fd);
	free(l);
}

bool net_port_free(const char *host, int port)
{
	struct sockaddr_storage ss;
	int sl = sizeof(ss), one = 1;
	char addr[300];

	snprintf(addr, sizeof(addr), strchr(host, ':') ? "[%s]:%d" : "%s:%d", host, port);
	memset(&ss, 0, sizeof(ss));
	if (evutil_parse_sockaddr_port(addr, (struct sockaddr *)&ss, &sl) != 0)
		return false;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	/* As the real listener does, so a port in TIME_WAIT counts as free. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	bool ok = bind(fd, (struct sockaddr *)&ss, (socklen_t)sl) == 0;
	close(fd);
	return ok;
}

void net_nodelay(int fd)
{
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void net_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof(ip));
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
	}
	snprintf(buf, len, "%s:%d", ip, port);
}
