/* Config table: defaults, parsing, errors naming file/line/option, checks. */
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
#include "src/base/conf.h"

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/rb-conf-XXXXXX");
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

static void test_defaults(void **state)
{
	struct conf c;
	conf_defaults(&c);
	assert_int_equal(c.port, 1984);
	assert_string_equal(c.bind, "0.0.0.0");
	assert_int_equal(c.forward_concurrency, 1);
	assert_int_equal(c.max_message_size, 65536);
	assert_int_equal(c.send_queue_bytes, 1024 * 1024);
	assert_int_equal(c.heartbeat, 25);
	assert_false(c.require_device_id);
	assert_string_equal(c.connect_url, "");
	char err[256];
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	conf_free(&c);
}

static void test_load_ok(void **state)
{
	char *p = write_tmp("; comment\n[main]\nport = 2000\nbind = 127.0.0.1\n"
			    "max_message_size = 2k\nheartbeat = 5\nrequire_device_id = yes\n"
			    "forward_url = http://b/x/\nsend_queue_bytes=1m\n");
	struct conf c;
	char err[256] = "";
	conf_defaults(&c);
	assert_int_equal(conf_load(&c, p, err, sizeof(err)), RB_OK);
	assert_int_equal(c.port, 2000);
	assert_string_equal(c.bind, "127.0.0.1");
	assert_int_equal(c.max_message_size, 2048);
	assert_int_equal(c.heartbeat, 5);
	assert_true(c.require_device_id);
	assert_string_equal(c.forward_url, "http://b/x/");
	assert_int_equal(c.send_queue_bytes, 1048576);
	conf_free(&c);
	unlink(p);
	free(p);
}

/* Each bad line must be reported with the file, its line number and the
 * option, and loading must stop. */
static void expect_error(const char *text, int line, const char *needle)
{
	char *p = write_tmp(text);
	struct conf c;
	char err[512] = "", want[600];
	conf_defaults(&c);
	assert_int_equal(conf_load(&c, p, err, sizeof(err)), RB_EINVAL);
	snprintf(want, sizeof(want), "%s:%d: ", p, line);
	assert_non_null(strstr(err, want));
	assert_non_null(strstr(err, needle));
	conf_free(&c);
	unlink(p);
	free(p);
}

static void test_errors(void **state)
{
	expect_error("[main]\nport = 1\nbogus = 3\n", 3, "bogus: unknown option");
	expect_error("[main]\nmax_message_size = abc\n", 2, "max_message_size");
	expect_error("[main]\nport = 70000\n", 2, "port: 70000 is out of range");
	expect_error("[main]\nport = 1.5\n", 2, "port: '1.5' is not an integer");
	expect_error("[main]\nstrict_frames = maybe\n", 2, "strict_frames");
	expect_error("[main]\nheartbeat = -1\n", 2, "heartbeat");
	/* Decimals once turned heartbeats off silently (0.5 -> 0). */
	expect_error("[main]\nheartbeat = 0.5\n", 2, "heartbeat: '0.5' is not an integer");
	expect_error("[main]\nheartbeat_timeout = 65535\n", 2, "out of range");
	expect_error("[main]\nmax_pending_forwards = 0\n", 2, "max_pending_forwards: 0 is out of range");
	expect_error("[main]\nrest_status_codes = loose\n", 2, "rest_status_codes");
	expect_error("[main]\nserverinfo_auth = magic\n", 2, "serverinfo_auth");
	expect_error("[main]\napi_signature = v3\n", 2, "api_signature: 'v3' is not one of v1, v2, both");
	expect_error("[main]\nmax_message_size = 12q\n", 2, "max_message_size");
	expect_error("[main]\nlog_level = loud\n", 2, "log_level");
	expect_error("[other]\nport = 1\n", 1, "unknown section");
	expect_error("[main]\nport = 1\n\n[extra]\n; note\nport = 2\n", 4, "[extra]: unknown section");
	expect_error("[main]\nport = 1\nthis line has no equals sign\n", 3, "syntax error");
}

static void test_missing_file(void **state)
{
	struct conf c;
	char err[256] = "";
	conf_defaults(&c);
	assert_int_equal(conf_load(&c, "/nonexistent/rainbow.ini", err, sizeof(err)), RB_EIO);
	assert_non_null(strstr(err, "/nonexistent/rainbow.ini"));
	conf_free(&c);
}

static void test_set_and_check(void **state)
{
	struct conf c;
	char err[256] = "";
	conf_defaults(&c);
	assert_int_equal(conf_set(&c, "PORT", "3000", err, sizeof(err)), RB_OK);
	assert_int_equal(c.port, 3000);
	assert_int_equal(conf_set(&c, "tls_port", "3001", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_EINVAL);
	assert_non_null(strstr(err, "tls_cert"));
	assert_int_equal(conf_set(&c, "tls_cert", "/c.pem", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "tls_key", "/k.pem", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "api_port", "3000", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_EINVAL);
	assert_non_null(strstr(err, "api_port"));
	assert_int_equal(conf_set(&c, "api_port", "0", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "port", "auto", err, sizeof(err)), RB_OK);
	assert_int_equal(c.port, 0);
	assert_int_equal(conf_set(&c, "port", "0", err, sizeof(err)), RB_EINVAL);
	assert_int_equal(conf_set(&c, "port_range", "3000-3001", err, sizeof(err)), RB_OK);
	int lo = 0, hi = 0;
	assert_int_equal(conf_port_range(c.port_range, &lo, &hi), RB_OK);
	assert_int_equal(lo, 3000);
	assert_int_equal(hi, 3001);
	assert_int_equal(conf_set(&c, "port_range", "3000", err, sizeof(err)), RB_EINVAL);
	assert_int_equal(conf_set(&c, "port_range", "0-5", err, sizeof(err)), RB_EINVAL);
	assert_int_equal(conf_set(&c, "port_range", "5-70000", err, sizeof(err)), RB_EINVAL);
	assert_int_equal(conf_set(&c, "port", "3000", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "serverinfo_auth", "password", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_EINVAL);
	assert_non_null(strstr(err, "admin_password"));
	assert_int_equal(conf_set(&c, "admin_password", "pw", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	/* Cluster TLS: all three files or none (checked with the cluster on). */
	assert_int_equal(conf_set(&c, "cluster_tls_cert", "/n.pem", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "cluster_secret", "s", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_EINVAL);
	assert_non_null(strstr(err, "needs all three"));
	assert_int_equal(conf_set(&c, "cluster_tls_key", "/n.key", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "cluster_tls_ca", "/ca.pem", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	assert_int_equal(conf_set(&c, "forward_url", "ftp://x/", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_EINVAL);
	assert_non_null(strstr(err, "forward_url"));
	conf_free(&c);
}

/* The shipped example must load and pass the checks as it is. */
static void test_example_file(void **state)
{
	struct conf c;
	char err[512] = "";
	conf_defaults(&c);
	assert_int_equal(conf_load(&c, "conf/rainbow.ini", err, sizeof(err)), RB_OK);
	assert_int_equal(conf_check(&c, err, sizeof(err)), RB_OK);
	assert_string_equal(c.bind, "127.0.0.1");
	conf_free(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_load_ok),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_missing_file),
		cmocka_unit_test(test_set_and_check),
		cmocka_unit_test(test_example_file),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
