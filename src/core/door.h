/*
 * door.h - the front door: one listening port for WebSocket clients and the
 * REST API (docs/architecture.md). Core thread only.
 *
 * For each accepted socket the door peeks (MSG_PEEK, nothing consumed) at
 * the request head, within max_head bytes and head_timeout seconds (a
 * slowloris guard). An upgrade to /connect/ (or /connect) is handed to the
 * upgrade callback, which then owns the socket; anything else goes to the
 * REST server (httpd_adopt), which reads the untouched request itself.
 *
 * Upgrades the WebSocket handshake would fail are answered here, before the
 * connect hook runs (rainbow_bad_upgrades_total): Sec-WebSocket-Version
 * other than 13 gets 426 with "Sec-WebSocket-Version: 13", a missing
 * Sec-WebSocket-Key or a request body 400. Accept failures: see net_listen.
 */
#ifndef RB_DOOR_H
#define RB_DOOR_H

#include <sys/socket.h>

struct event_base;
struct httpd;
struct http_head;
struct door;

/* Takes fd and *head (free it with http_head_free). head_len is the number
 * of bytes of the head still unread on fd. */
typedef void (*door_upgrade_fn)(void *arg, int fd, struct http_head *head,
				size_t head_len);

/* A cluster link (cluster/mesh.c) starts with a binary frame whose first
 * byte is 0, or in TLS with a handshake record (0x16); no HTTP request
 * starts with either. With a link handler set, such a socket goes to it
 * (which then owns fd; first is that byte) instead of the HTTP server. */
typedef void (*door_link_fn)(void *arg, int fd, unsigned char first);
void door_on_link(struct door *d, door_link_fn fn, void *arg);

/* Binds bind:port (port 0 picks one). NULL on failure (logged). */
struct door *door_new(struct event_base *base, struct httpd *http,
		      const char *bind, int port, double head_timeout,
		      door_upgrade_fn on_upgrade, void *arg);
/* The bound port. */
int door_port(const struct door *d);
/* Stop accepting; sockets still being peeked at are dropped. Idempotent. */
void door_close(struct door *d);
void door_free(struct door *d);

/*
 * Answer an upgrade the door handed over with an HTTP error and close the
 * socket: consumes the head_len bytes of head first, so the close does not
 * turn into a reset that would hide the answer. Takes fd.
 */
void door_refuse(int fd, size_t head_len, int status, const char *json_body);
/* The same with extra header lines, each ending in CRLF (NULL: none). */
void door_refuse_with(int fd, size_t head_len, int status, const char *headers,
		      const char *json_body);

#endif
