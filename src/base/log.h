/*
 * log.h - the one leveled logger. Safe from any thread: a line is formatted
 * into a local buffer and written with a single write(2), so lines from the
 * edge and core threads never interleave. The level is checked before any
 * formatting work. libwebsockets and libevent are routed here by log_init().
 *
 * Text from outside (client payloads, backend headers, lws lines) may be
 * passed as is: log_write() escapes every byte below 0x20 and 0x7f in the
 * formatted message (\n, \r, \t by name, others as \xNN, two lowercase hex
 * digits), so a line in the log is always exactly one line and carries no
 * terminal control sequence. Bytes from 0x80 up are written unchanged. A
 * message longer than the line buffer is cut, never in the middle of an
 * escape.
 */
#ifndef RB_LOG_H
#define RB_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

extern int log_current_level; /* read racily by design: a stale level is harmless */

/* Parse "error|warn|info|debug"; returns the level or -1. */
int log_level_parse(const char *s);

/*
 * Open the log: path NULL or "" means stderr, else the file is opened for
 * append. Also installs the lws and libevent log hooks. Call once from main
 * before any thread starts. Returns RB_OK or RB_EIO (message on stderr).
 */
int log_init(int level, const char *path);
void log_close(void);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define LOG_AT(lvl, ...) \
	do { if ((lvl) <= log_current_level) log_write((lvl), __VA_ARGS__); } while (0)
#define log_error(...) LOG_AT(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  LOG_AT(LOG_WARN, __VA_ARGS__)
#define log_info(...)  LOG_AT(LOG_INFO, __VA_ARGS__)
#define log_debug(...) LOG_AT(LOG_DEBUG, __VA_ARGS__)

/*
 * Rate limit for the lines of one source (one connection, say), so that a
 * peer cannot make the log grow faster than a bound of its own.
 *
 * log_limited() writes at most `burst` lines per `interval_ms` (a fixed
 * window on the monotonic clock, starting with the first line written);
 * lines past that are counted and dropped. The first line let through after
 * some were dropped is preceded by one summary line, at the same level,
 * "suppressed N lines (rate limit)"; both go out in one write(2), so they
 * stay adjacent. Lines above the current level are neither written nor
 * counted. log_limit_flush() writes a pending summary on its own (call it
 * when the source goes away, or its last drops are never reported).
 *
 * Threads: a log_limit belongs to one thread, the one that owns its source
 * (an econn: the edge thread; a struct conn: the core thread). It has no
 * lock; never share one between threads. Apart from that, log_limited() is
 * as safe as log_write().
 *
 * Set up with log_limit_init() (or LOG_LIMIT_INIT in an initialiser). The
 * fields are public only so a test can move the window (start_ms) instead
 * of sleeping.
 */
struct log_limit {
	unsigned burst;           /* lines per interval */
	unsigned interval_ms;
	unsigned used;            /* lines written in the current interval */
	unsigned long suppressed; /* dropped since the last line written */
	int64_t start_ms;         /* monotonic start of the current interval */
	int started;              /* 0 until the first line opens a window */
};

#define LOG_LIMIT_INIT(burst, interval_ms) { (burst), (interval_ms), 0, 0, 0, 0 }

void log_limit_init(struct log_limit *l, unsigned burst, unsigned interval_ms);
void log_limited(struct log_limit *l, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Writes "<who>: suppressed N lines (rate limit)" if any were dropped since
 * the last line written, and resets the count. who may be NULL. */
void log_limit_flush(struct log_limit *l, int level, const char *who);

#endif
