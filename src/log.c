#include "src/log.h"

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

void log_write(int level, const char *fmt, ...)
{
	char line[2048];
	struct timeval tv;
	struct tm tm;
	size_t n;
	va_list ap;

	gettimeofday(&tv, NULL);
	/* gmtime_r and snprintf only: strftime consults the time zone, whose
	 * lazy set-up races with lws' own time calls on the edge thread. */
	gmtime_r(&tv.tv_sec, &tm);
	n = (size_t)snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
			     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
			     tm.tm_sec, (long)tv.tv_usec / 1000, level_names[level & 3]);
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	/* One write per line keeps lines whole across threads (O_APPEND). */
	ssize_t w = write(log_fd, line, n);
	(void)w;
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
