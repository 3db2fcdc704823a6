#include "src/base/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>
#include <libwebsockets.h>

#include "protocol/rb.h"
#include "src/base/timeutil.h"

int log_current_level = LOG_INFO;
static int log_fd = 2;

static const char *const level_names[] = { "ERROR", "WARN", "INFO", "DEBUG" };

int log_level_parse(const char *s)
{
	for (size_t i = 0; i < RB_ARRAY_LEN(level_names); i++)
		if (strcasecmp(s, level_names[i]) == 0)
			return (int)i;
	if (strcasecmp(s, "warning") == 0)
		return LOG_WARN;
	return -1;
}

/* "2024-01-02T03:04:05.678Z INFO  " into out; returns its length. */
static size_t stamp(char *out, size_t cap, int level)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	/* gmtime_r and snprintf only: strftime consults the time zone, whose
	 * lazy set-up races with lws' own time calls on the edge thread. */
	gmtime_r(&tv.tv_sec, &tm);
	int n = snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
			 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			 tm.tm_sec, (long)tv.tv_usec / 1000, level_names[level & 3]);
	return n < 0 ? 0 : (size_t)n >= cap ? cap - 1 : (size_t)n;
}

/* Appends src[0..n) to out[at..cap) with control bytes escaped; stops
 * before an escape that would not fit. Returns the new length. */
static size_t escape_into(char *out, size_t at, size_t cap, const char *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)src[i];
		char e[4];
		size_t k = 2;

		e[0] = '\\';
		if (c >= 0x20 && c != 0x7f) {
			e[0] = (char)c;
			k = 1;
		} else if (c == '\n') {
			e[1] = 'n';
		} else if (c == '\r') {
			e[1] = 'r';
		} else if (c == '\t') {
			e[1] = 't';
		} else {
			e[1] = 'x';
			e[2] = hex[c >> 4];
			e[3] = hex[c & 15];
			k = 4;
		}
		if (at + k > cap)
			break;
		memcpy(out + at, e, k);
		at += k;
	}
	return at;
}

#define MSG_MAX 2048  /* formatted message, before escaping */
#define OUT_MAX 4096 /* one written line, escaped, newline included */

/* One write(2): an optional summary line, then the formatted message. */
static void emit(int level, const char *summary, const char *fmt, va_list ap)
{
	char msg[MSG_MAX];
	char out[2 * OUT_MAX];
	size_t n = 0;

	int m = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (m < 0)
		m = 0;
	if ((size_t)m >= sizeof(msg))
		m = (int)sizeof(msg) - 1;
	if (summary) {
		n = stamp(out, OUT_MAX, level);
		n = escape_into(out, n, OUT_MAX - 1, summary, strlen(summary));
		out[n++] = '\n';
	}
	size_t start = n;
	n += stamp(out + n, OUT_MAX, level);
	n = escape_into(out, n, start + OUT_MAX - 1, msg, (size_t)m);
	out[n++] = '\n';
	/* One write per line keeps lines whole across threads (O_APPEND). */
	ssize_t w = write(log_fd, out, n);
	(void)w;
}

void log_write(int level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	emit(level, NULL, fmt, ap);
	va_end(ap);
}

void log_limit_init(struct log_limit *l, unsigned burst, unsigned interval_ms)
{
	*l = (struct log_limit)LOG_LIMIT_INIT(burst, interval_ms);
}

void log_limited(struct log_limit *l, int level, const char *fmt, ...)
{
	char summary[64];
	va_list ap;

	if (level > log_current_level)
		return;
	int64_t now = (int64_t)(mono_now() * 1000);
	if (!l->started || now - l->start_ms >= (int64_t)l->interval_ms) {
		l->started = 1;
		l->start_ms = now;
		l->used = 0;
	}
	if (l->used >= l->burst) {
		l->suppressed++;
		return;
	}
	l->used++;
	if (l->suppressed)
		snprintf(summary, sizeof(summary), "suppressed %lu lines (rate limit)",
			 l->suppressed);
	va_start(ap, fmt);
	emit(level, l->suppressed ? summary : NULL, fmt, ap);
	va_end(ap);
	l->suppressed = 0;
}

void log_limit_flush(struct log_limit *l, int level, const char *who)
{
	if (!l->suppressed)
		return;
	if (level <= log_current_level)
		log_write(level, "%s%ssuppressed %lu lines (rate limit)", who ? who : "",
			  who ? ": " : "", l->suppressed);
	l->suppressed = 0;
}

static void lws_emit(int lws_level, const char *line)
{
	int level = lws_level & LLL_ERR ? LOG_ERROR :
		    lws_level & LLL_WARN ? LOG_WARN :
		    lws_level & LLL_NOTICE ? LOG_INFO : LOG_DEBUG;
	size_t len = strlen(line);

	/* lws lines end in '\n' and carry their own timestamp prefix. */
	while (len && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	LOG_AT(level, "lws: %.*s", (int)len, line);
}

static void event_emit(int severity, const char *msg)
{
	int level = severity >= EVENT_LOG_ERR ? LOG_ERROR :
		    severity == EVENT_LOG_WARN ? LOG_WARN : LOG_DEBUG;
	LOG_AT(level, "libevent: %s", msg);
}

int log_init(int level, const char *path)
{
	log_current_level = level;
	if (path && *path) {
		int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (fd < 0) {
			fprintf(stderr, "rainbow: cannot open log file %s: %s\n", path,
				strerror(errno));
			return RB_EIO;
		}
		log_fd = fd;
	}
	/* lws is chatty at NOTICE during start-up; keep its errors and warnings,
	 * and its notices only when debugging. */
	int lws_mask = LLL_ERR | LLL_WARN;
	if (level >= LOG_DEBUG)
		lws_mask |= LLL_NOTICE;
	lws_set_log_level(lws_mask, lws_emit);
	event_set_log_callback(event_emit);
	return RB_OK;
}

void log_close(void)
{
	if (log_fd > 2)
		close(log_fd);
	log_fd = 2;
}
