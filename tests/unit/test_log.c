/* The logger: bytes from outside are escaped so every line stays one line
 * without control bytes, and log_limited() bounds the lines of one source
 * with an exact "suppressed N lines" count. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol/rb.h"
#include "src/base/log.h"

#define PREFIX 31 /* "2024-01-02T03:04:05.678Z INFO  " */

static char path[64];
static char text[65536];
static size_t text_len;

static int open_log(void **state)
{
	strcpy(path, "/tmp/rb-test-log-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(log_init(LOG_INFO, path), RB_OK);
	return 0;
}

static int close_log(void **state)
{
	log_close();
	unlink(path);
	return 0;
}

/* Reads the whole log into text; returns the number of lines, asserting
 * every one ends with '\n' and carries the time stamp prefix. */
static int read_log(void)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	text_len = fread(text, 1, sizeof(text) - 1, f);
	fclose(f);
	text[text_len] = 0;
	int lines = 0;
	for (size_t i = 0; i < text_len;) {
		char *nl = memchr(text + i, '\n', text_len - i);
		assert_non_null(nl);
		assert_true((size_t)(nl - (text + i)) >= PREFIX);
		assert_int_equal(text[i + 23], 'Z');
		lines++;
		i = (size_t)(nl - text) + 1;
	}
	return lines;
}

/* The message of line n (0-based), without prefix and newline. */
static const char *line_msg(int n, size_t *len)
{
	size_t i = 0;
	for (; n > 0; n--)
		i = (size_t)((char *)memchr(text + i, '\n', text_len - i) - text) + 1;
	char *nl = memchr(text + i, '\n', text_len - i);
	*len = (size_t)(nl - (text + i)) - PREFIX;
	return text + i + PREFIX;
}

static void assert_msg(int n, const char *want)
{
	size_t len;
	const char *got = line_msg(n, &len);
	if (len != strlen(want) || memcmp(got, want, len) != 0)
		fail_msg("line %d is \"%.*s\", want \"%s\"", n, (int)len, got, want);
}

static void test_control_bytes_escaped(void **state)
{
	/* A NAK payload as a client could send it: a fake second line, a
	 * terminal escape, DEL and an embedded NUL (through %c). */
	static const char payload[] = "ok\nFAKE 2024 ERROR\r\t\x1b[31mred\x7f\x01";
	log_write(LOG_INFO, "conn x: NAK: %s%c|\xc3\xa9", payload, 0);
	assert_int_equal(read_log(), 1);
	assert_msg(0, "conn x: NAK: ok\\nFAKE 2024 ERROR\\r\\t\\x1b[31mred\\x7f\\x01\\x00|\xc3\xa9");
	assert_memory_equal(text + PREFIX - 6, "INFO  ", 6);
}

static void test_every_control_byte(void **state)
{
	char in[34], want[34 * 4 + 1], *w = want;
	for (int c = 1; c < 0x20; c++)
		in[c - 1] = (char)c;
	in[31] = 0x7f;
	in[32] = ' ';
	in[33] = 0;
	for (int c = 1; c < 0x20; c++)
		w += c == '\n' ? sprintf(w, "\\n") : c == '\r' ? sprintf(w, "\\r") :
		     c == '\t' ? sprintf(w, "\\t") : sprintf(w, "\\x%02x", c);
	sprintf(w, "\\x7f ");
	log_write(LOG_WARN, "%s", in);
	assert_int_equal(read_log(), 1);
	assert_msg(0, want);
}

static void test_long_line_cut_between_escapes(void **state)
{
	static char in[2000];
	memset(in, '\n', sizeof(in) - 1);
	in[sizeof(in) - 1] = 0;
	log_write(LOG_ERROR, "%s", in);
	assert_int_equal(read_log(), 1);
	size_t len;
	const char *m = line_msg(0, &len);
	assert_true(PREFIX + len + 1 <= 4096);
	assert_true(len >= 2000);       /* cut by the line cap, not earlier */
	assert_int_equal(len % 2, 0);   /* whole "\n" pairs only */
	for (size_t i = 0; i < len; i += 2)
		assert_memory_equal(m + i, "\\n", 2);
}

static void test_limit_counts(void **state)
{
	struct log_limit l = LOG_LIMIT_INIT(3, 60000);

	for (int i = 0; i < 10; i++)
		log_limited(&l, LOG_INFO, "line %d", i);
	assert_int_equal(read_log(), 3);
	assert_msg(2, "line 2");
	assert_int_equal(l.suppressed, 7);

	/* The interval is over: the next line gets through after the summary. */
	l.start_ms -= 60000;
	log_limited(&l, LOG_INFO, "line %d", 10);
	assert_int_equal(read_log(), 5);
	assert_msg(3, "suppressed 7 lines (rate limit)");
	assert_msg(4, "line 10");
	assert_int_equal(l.suppressed, 0);

	/* A new window holds `burst` lines again; then one more is dropped. */
	log_limited(&l, LOG_INFO, "line 11");
	log_limited(&l, LOG_INFO, "line 12");
	log_limited(&l, LOG_INFO, "line 13");
	assert_int_equal(read_log(), 7);
	assert_msg(6, "line 12");

	/* Lines above the level are neither written nor counted. */
	log_limited(&l, LOG_DEBUG, "debug");
	assert_int_equal(l.suppressed, 1);

	log_limit_flush(&l, LOG_INFO, "conn 7");
	assert_int_equal(read_log(), 8);
	assert_msg(7, "conn 7: suppressed 1 lines (rate limit)");
	log_limit_flush(&l, LOG_INFO, "conn 7"); /* nothing pending: nothing */
	assert_int_equal(read_log(), 8);
}

static void test_limit_escapes_too(void **state)
{
	struct log_limit l;
	log_limit_init(&l, 1, 60000);
	log_limited(&l, LOG_WARN, "a\nb");
	log_limited(&l, LOG_WARN, "dropped");
	l.start_ms -= 60000;
	log_limited(&l, LOG_WARN, "c\x1b");
	assert_int_equal(read_log(), 3);
	assert_msg(0, "a\\nb");
	assert_msg(1, "suppressed 1 lines (rate limit)");
	assert_msg(2, "c\\x1b");
	assert_memory_equal(text + PREFIX - 6, "WARN  ", 6);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_control_bytes_escaped, open_log, close_log),
		cmocka_unit_test_setup_teardown(test_every_control_byte, open_log, close_log),
		cmocka_unit_test_setup_teardown(test_long_line_cut_between_escapes, open_log,
						close_log),
		cmocka_unit_test_setup_teardown(test_limit_counts, open_log, close_log),
		cmocka_unit_test_setup_teardown(test_limit_escapes_too, open_log, close_log),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
