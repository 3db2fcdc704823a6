/*
 * net.h - socket helpers shared by the listeners (door, httpd). Core
 * thread only.
 */
#ifndef RB_NET_H
#define RB_NET_H

#include <event2/listener.h>

/* Listen on bind:port (IPv4 or IPv6 literal; port 0 picks one) with
 * SO_REUSEADDR and close-on-exec; accepted sockets are non-blocking with
 * TCP_NODELAY set by the caller's cb. NULL on failure, logged with who. */
struct evconnlistener *net_listen(struct event_base *base, const char *who,
				  const char *bind, int port, int backlog,
				  evconnlistener_cb cb, void *arg);

/* The port a listener is bound to. */
int net_listener_port(struct evconnlistener *l);

/* Small frames are the norm here: send them now, not after 40 ms. */
void net_nodelay(int fd);

/* "ip:port" of the peer of fd into buf ("?" if unknown). */
void net_peer_name(int fd, char *buf, size_t len);

#endif
