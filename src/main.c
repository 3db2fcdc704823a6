/*
 * rainbow-server: rainbow-server -f rainbow.ini [-p port] [--check]
 * Loads the configuration (errors name file, line and option and stop the
 * start), then runs the core loop until SIGTERM/SIGINT.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <libwebsockets.h>
#include <event2/event.h>

#include "cluster/engine_lan.h"
#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/core/core.h"
#include "src/msg/app.h"
#include "src/msg/engine.h"
#include "src/base/log.h"
#include "src/base/version.h"

/* An empty token still "signs" (sha1 of timestamp and nonce alone), so
 * anyone who can reach the REST API can push, kick and subscribe, and the
 * backend cannot tell the gateway's calls from anyone else's. Allowed, for
 * a first try on a laptop, but never silently. */
static const char EMPTY_TOKEN[] =
	"security_token is empty: anyone can sign REST calls and backend calls "
	"prove nothing; set security_token in the configuration";

static void usage(FILE *f)
{
	fprintf(f,
		"usage: rainbow-server -f rainbow.ini [-p port] [--check]\n"
		"\n"
		"  -f, --config FILE  configuration file (see conf/rainbow.ini)\n"
		"  -p, --port PORT    listen on PORT, or 'auto' (overrides 'port' in the file)\n"
		"      --check        validate the configuration and exit\n"
		"  -h, --help         show this help\n"
		"  -v, --version      show the version\n"
		"\n"
		"Without -f the built-in defaults are used.\n");
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'f' },
		{ "port", required_argument, NULL, 'p' },
		{ "check", no_argument, NULL, 'c' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = NULL, *port = NULL;
	int check = 0, opt, rc = 1;
	struct conf conf;
	char err[512];

	/* lws calls mktime on every edge thread (its certificate lifetime
	 * check). With TZ unset, glibc takes the zone name again at each call
	 * (free + strdup under a lock of its own that ThreadSanitizer cannot
	 * see, so it reports a race); naming the default zone file, the same
	 * zone, makes that a string compare. */
	setenv("TZ", ":/etc/localtime", 0);
	tzset();
	while ((opt = getopt_long(argc, argv, "f:p:hv", longopts, NULL)) != -1) {
		switch (opt) {
		case 'f': path = optarg; break;
		case 'p': port = optarg; break;
		case 'c': check = 1; break;
		case 'h': usage(stdout); return 0;
		case 'v':
			printf("rainbow-server %s (libwebsockets %s, libevent %s)\n", RAINBOW_VERSION,
			       lws_get_library_version(), event_get_version());
			return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "rainbow-server: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	conf_defaults(&conf);
	if (path && conf_load(&conf, path, err, sizeof(err)) != RB_OK) {
		fprintf(stderr, "rainbow-server: %s\n", err);
		goto out;
	}
	if (port && conf_set(&conf, "port", port, err, sizeof(err)) != RB_OK) {
		fprintf(stderr, "rainbow-server: -p: %s\n", err);
		goto out;
	}
	if (conf_check(&conf, err, sizeof(err)) != RB_OK) {
		fprintf(stderr, "rainbow-server: %s%s%s\n", path ? path : "", path ? ": " : "", err);
		goto out;
	}
	if (check) {
		if (!*conf.security_token)
			fprintf(stderr, "rainbow-server: warning: %s\n", EMPTY_TOKEN);
		printf("%s: ok\n", path ? path : "built-in defaults");
		rc = 0;
		goto out;
	}
	if (log_init(log_level_parse(conf.log_level), conf.log_file) != RB_OK)
		goto out;
	if (!*conf.security_token)
		log_warn("%s", EMPTY_TOKEN);
	if (*conf.data_dir && mkdir(conf.data_dir, 0755) != 0 && errno != EEXIST)
		log_warn("cannot create data_dir %s: %s", conf.data_dir, strerror(errno));
	/* A peer that vanished mid-write must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	/* Set the time zone up while there is one thread: libc does it lazily
	 * on first use, and lws uses local time on the edge thread. */
	tzset();

	struct core *c = core_new(&conf, msg_app());
	if (!c)
		goto out;
	/* The LAN cluster replaces the local engine once the main port is
	 * bound (beacons carry it); the app's fini frees whichever is there. */
	if (*conf.cluster_secret) {
		struct engine *lan = engine_lan_new(c);
		if (!lan) {
			core_free(c);
			log_close();
			goto out;
		}
		c->engine->ops->free(c->engine);
		c->engine = lan;
	}
	rc = core_run(c);
	core_free(c);
	log_close();
out:
	conf_free(&conf);
	return rc;
}
