#include "src/core/door.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/util.h>

#include "protocol/rb.h"
#include "src/http/http_head.h"
#include "src/http/httpd.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/net.h"
#include "src/base/timeutil.h"

struct peek {
	struct peek *prev, *next;
	struct door *door;
	int fd;
	struct event *ev;    /* edge-triggered read: fires once per arrival */
	struct event *timer; /* head_timeout */
};

struct door {
	struct event_base *base;
	struct httpd *http;
	struct net_listener *lst;
	int port;
	struct timeval head_tv;
	door_upgrade_fn on_upgrade;
	void *arg;
	door_link_fn on_link;
	void *link_arg;
	struct peek *peeks; /* sockets whose head is still incomplete */
};

static void peek_free(struct peek *p, bool close_fd)
{
	if (p->prev)
		p->prev->next = p->next;
	else
		p->door->peeks = p->next;
	if (p->next)
		p->next->prev = p->prev;
	event_free(p->ev);
	event_free(p->timer);
	if (close_fd)
		close(p->fd);
	free(p);
}

static bool is_upgrade(const struct http_head *h)
{
	const char *up = kv_get(&h->headers, "Upgrade");
	return strcmp(h->method, "GET") == 0 &&
	       (strcmp(h->path, "/connect/") == 0 || strcmp(h->path, "/connect") == 0) &&
	       up && header_has_token(up, "websocket");
}

/* RFC 6455 4.2.1: refuse here what lws would refuse anyway, before the
 * connect hook hears of it. True if the upgrade may go on; else fd is
 * answered and closed. */
static bool upgrade_ok(int fd, const struct http_head *h, size_t head_len)
{
	const char *ver = kv_get(&h->headers, "Sec-WebSocket-Version");
	const char *key = kv_get(&h->headers, "Sec-WebSocket-Key");
	uint64_t body;
	enum http_body f = http_body_framing(h, &body);

	if (!ver || strcmp(ver, "13") != 0) {
		door_refuse_with(fd, head_len, 426, "Sec-WebSocket-Version: 13\r\n",
				 "{\"status\":1,\"msg\":\"unsupported Sec-WebSocket-Version (use 13)\"}");
	} else if (!key || !*key) {
		door_refuse(fd, head_len, 400, "{\"status\":1,\"msg\":\"missing Sec-WebSocket-Key\"}");
	} else if (f != HTTP_BODY_NONE && !(f == HTTP_BODY_LENGTH && body == 0)) {
		/* lws would take a body for WebSocket frames. */
		door_refuse(fd, head_len, 400,
			    "{\"status\":1,\"msg\":\"an upgrade request has no body\"}");
	} else {
		return true;
	}
	metric_inc(M_UPGRADE_BAD);
	return false;
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct peek *p = arg;
	struct door *d = p->door;
	char buf[HTTP_MAX_HEAD];
	ssize_t n;

	if (what & EV_TIMEOUT) {
		metric_inc(M_HEAD_BAD);
		log_debug("door: fd %d sent no complete request head in time", (int)fd);
		peek_free(p, true);
		return;
	}
	n = recv(fd, buf, sizeof(buf), MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		peek_free(p, true);
		return;
	}
	if ((buf[0] == 0 || buf[0] == 0x16) && d->on_link) {
		/* A cluster link's first frame (u32 length < 2^24), or its TLS
		 * ClientHello. */
		unsigned char first = (unsigned char)buf[0];
		p->fd = -1;
		peek_free(p, false);
		d->on_link(d->link_arg, (int)fd, first);
		return;
	}
	size_t head_len = http_head_len(buf, (size_t)n);
	if (!head_len) {
		if ((size_t)n < sizeof(buf))
			return; /* wait for more: the edge-triggered event fires again */
		metric_inc(M_HEAD_BAD);
		door_refuse(fd, 0, 431, "{\"status\":1,\"msg\":\"request head too large\"}");
		p->fd = -1;
		peek_free(p, false);
		return;
	}
	struct http_head *h = calloc(1, sizeof(*h));
	if (!h || http_head_parse(buf, head_len, h) != RB_OK) {
		free(h);
		/* Let the HTTP server answer a request we cannot parse. */
		httpd_adopt(d->http, fd);
		p->fd = -1;
		peek_free(p, false);
		return;
	}
	int sfd = p->fd;
	bool up = is_upgrade(h);
	p->fd = -1;
	peek_free(p, false);
	if (up && upgrade_ok(sfd, h, head_len)) {
		d->on_upgrade(d->arg, sfd, h, head_len);
		return;
	}
	http_head_free(h);
	free(h);
	if (!up)
		httpd_adopt(d->http, sfd);
}

static void on_accept(void *arg, int fd)
{
	struct door *d = arg;
	struct peek *p = calloc(1, sizeof(*p));
	metric_inc(M_CONN_ACCEPTED);
	if (!p) {
		close(fd);
		return;
	}
	net_nodelay(fd);
	p->door = d;
	p->fd = fd;
	/* Peeking leaves the bytes in the socket, so a level-triggered event
	 * would spin on an incomplete head: edge-triggered fires per arrival. */
	p->ev = event_new(d->base, fd, EV_READ | EV_PERSIST | EV_ET, on_readable, p);
	p->timer = evtimer_new(d->base, on_readable, p);
	if (!p->ev || !p->timer) {
		event_free(p->ev);
		event_free(p->timer);
		free(p);
		close(fd);
		return;
	}
	p->next = d->peeks;
	if (d->peeks)
		d->peeks->prev = p;
	d->peeks = p;
	event_add(p->ev, NULL);
	event_add(p->timer, &d->head_tv);
	/* The head is usually already here: no need to wait for a wake-up. */
	on_readable(fd, EV_READ, p);
}

struct door *door_new(struct event_base *base, struct httpd *http,
		      const char *bind, int port, double head_timeout,
		      door_upgrade_fn on_upgrade, void *arg)
{
	struct door *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->base = base;
	d->http = http;
	d->on_upgrade = on_upgrade;
	d->arg = arg;
	d->head_tv = tv_from_seconds(head_timeout);
	d->lst = net_listen(base, "door", bind, port, 4096, on_accept, d);
	if (!d->lst)
		goto fail;
	d->port = net_listener_port(d->lst);
	return d;
fail:
	door_free(d);
	return NULL;
}

void door_on_link(struct door *d, door_link_fn fn, void *arg)
{
	d->on_link = fn;
	d->link_arg = arg;
}

int door_port(const struct door *d)
{
	return d->port;
}

void door_close(struct door *d)
{
	if (!d)
		return;
	net_listener_free(d->lst);
	d->lst = NULL;
	while (d->peeks)
		peek_free(d->peeks, true);
}

void door_free(struct door *d)
{
	if (!d)
		return;
	door_close(d);
	free(d);
}

void door_refuse(int fd, size_t head_len, int status, const char *json_body)
{
	door_refuse_with(fd, head_len, status, NULL, json_body);
}

void door_refuse_with(int fd, size_t head_len, int status, const char *headers,
		      const char *json_body)
{
	char buf[1024];
	int n;

	/* Consume what we only peeked at, and whatever else already came:
	 * closing with unread input sends a reset, and the client might never
	 * see the answer. */
	while (head_len) {
		ssize_t r = recv(fd, buf, head_len < sizeof(buf) ? head_len : sizeof(buf), 0);
		if (r <= 0)
			break;
		head_len -= (size_t)r;
	}
	for (int i = 0; i < 16 && recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
		;
	n = snprintf(buf, sizeof(buf),
		     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
		     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     status, http_reason(status), headers ? headers : "", strlen(json_body),
		     json_body);
	if (n > 0 && (size_t)n < sizeof(buf)) {
		ssize_t w = send(fd, buf, (size_t)n, MSG_NOSIGNAL);
		(void)w; /* a small answer fits the socket buffer; best effort */
	}
	shutdown(fd, SHUT_WR);
	close(fd);
}
