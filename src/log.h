/*
 * log.h - the one leveled logger. Safe from any thread: a line is formatted
 * into a local buffer and written with a single write(2), so lines from the
 * edge and core threads never interleave. The level is checked before any
 * formatting work. libwebsockets and libevent are routed here by log_init().
 */
#ifndef RB_LOG_H
#define RB_LOG_H

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

#endif
