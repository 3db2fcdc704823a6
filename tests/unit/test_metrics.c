/* src/base/metrics.c: the Prometheus page, rendered into an evbuffer. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "protocol/packet.h"
#include "protocol/rb.h"
#include "src/base/metrics.h"

static char *render(const struct metric_gauges *g, size_t *len)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	assert_non_null(b);
	evbuffer_add(b, "before\n", 7); /* render appends */
	assert_int_equal(metrics_render(g, b), RB_OK);
	*len = evbuffer_get_length(b);
	s = malloc(*len + 1);
	evbuffer_remove(b, s, *len);
	s[*len] = 0;
	evbuffer_free(b);
	return s;
}

static void test_render(void **state)
{
	struct metric_gauges g = { .connections = 3, .channels = 2, .forwards_in_flight = 1,
				   .extra = "# extra family\nx_total 9\n" };
	size_t len;

	metric_inc(M_CONN_ACCEPTED);
	metric_packet(0, PKT_SEND, 1);
	char *s = render(&g, &len);
	assert_int_equal(strlen(s), len);
	assert_memory_equal(s, "before\n# HELP rainbow_tcp_accepted_total ", 41);
	assert_non_null(strstr(s, "\n# TYPE rainbow_tcp_accepted_total counter\n"
				  "rainbow_tcp_accepted_total 1\n"));
	assert_non_null(strstr(s, "\nrainbow_messages_in_total{cmd=\"SEND\",qos=\"1\"} 1\n"));
	assert_non_null(strstr(s, "\n# TYPE rainbow_connections gauge\nrainbow_connections 3\n"));
	assert_non_null(strstr(s, "\nrainbow_channels 2\n"));
	assert_non_null(strstr(s, "\nrainbow_forwards_in_flight 1\n"));
	assert_non_null(strstr(s, "\nrainbow_backend_latency_seconds_bucket{le=\"+Inf\"} 0\n"));
	/* The extra families come last, verbatim. */
	size_t el = strlen(g.extra);
	assert_memory_equal(s + len - el, g.extra, el);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_render),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
