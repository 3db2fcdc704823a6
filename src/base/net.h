/*
 * net.h - socket helpers shared by the listeners (door, httpd). Core
 * thread only.
 */
#ifndef RB_NET_H
#define RB_NET_H

#include <stdbool.h>

#include <stddef.h>

struct event_base;
struct net_listener;

/* Takes fd: an accepted, non-blocking, close-on-exec socket. */
typedef void (*net_accept_fn)(void *arg, int fd);

/*
 * Listen on bind:port (IPv4 or IPv6 literal; port 0 picks one) with
 * SO_REUSEADDR and close-on-exec; cb gets each accepted socket (set
 * TCP_NODELAY there). NULL on failure, logged with who (a string that
 * outlives the listener).
 *
 * When accept() fails (out of file descriptors above all) the listener does
 * not retry at once, which would spin: accepting pauses for 10 ms, doubling
 * to 1 s, and the next accepted socket resets the back-off. On EMFILE or
 * ENFILE one reserve descriptor is given up to accept the oldest waiting
 * client, answer it HTTP 503 and close it, so that clients hear "busy"
 * instead of timing out in the backlog. Counted in rainbow_accept_errors_total
 * and rainbow_accept_shed_total; logged at most once per 10 s, with how many
 * failures went unlogged.
 */
struct net_listener *net_listen(struct event_base *base, const char *who,
				const char *bind, int port, int backlog,
				net_accept_fn cb, void *arg);

/* The port a listener is bound to. */
int net_listener_port(const struct net_listener *l);

/* Close the listening socket and free l. NULL is fine. */
void net_listener_free(struct net_listener *l);

/* Small frames are the norm here: send them now, not after 40 ms. */
void net_nodelay(int fd);

/* Could a TCP listener bind bind:port right now? (Checked by binding and
 * closing a socket: another process may still take it before we do.) */
bool net_port_free(const char *bind, int port);

/* "ip:port" of the peer of fd into buf ("?" if unknown). */
void net_peer_name(int fd, char *buf, size_t len);

#endif
