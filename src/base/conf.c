#include "src/base/conf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <ini.h>

#include "protocol/rb.h"
#include "src/base/log.h"

enum opt_type { T_INT, T_BOOL, T_STR, T_SECONDS, T_BYTES };

struct opt {
	const char *name;
	enum opt_type type;
	size_t offset;
	const char *def;
	double min, max;   /* bounds for numbers; ignored for strings/bools */
	bool reloads;      /* may change on reload (none reload yet) */
};

#define O(name, type, def, min, max) \
	{ #name, type, offsetof(struct conf, name), def, min, max, false }

/* The table. Keep it in the order of conf/rainbow.ini. */
static const struct opt opts[] = {
	O(port, T_INT, "1984", 1, 65535),
	O(port_range, T_STR, "1984-2013", 0, 0),
	O(bind, T_STR, "0.0.0.0", 0, 0),
	O(api_port, T_INT, "0", 0, 65535),
	O(tls_port, T_INT, "0", 0, 65535),
	O(tls_cert, T_STR, "", 0, 0),
	O(tls_key, T_STR, "", 0, 0),
	O(connect_url, T_STR, "", 0, 0),
	O(forward_url, T_STR, "", 0, 0),
	O(close_url, T_STR, "", 0, 0),
	O(security_token, T_STR, "", 0, 0),
	O(forward_concurrency, T_INT, "1", 1, 1024),
	O(max_pending_forwards, T_INT, "64", 1, 1000000),
	O(forward_queue_bytes, T_BYTES, "1m", 0, 1 << 30),
	O(backend_max_connections, T_INT, "64", 1, 10000),
	O(backend_max_queue, T_INT, "10000", 0, 10000000),
	O(backend_connect_timeout, T_SECONDS, "3", 0.001, 3600),
	O(backend_timeout, T_SECONDS, "10", 0.001, 3600),
	O(max_response_size, T_BYTES, "1m", 0, 1 << 30),
	O(hook_max_connections, T_INT, "16", 1, 10000),
	O(route_max_inflight, T_INT, "0", 0, 10000),
	O(route_max_queued, T_INT, "0", 0, 10000000),
	O(breaker_failures, T_INT, "5", 0, 1000000),
	O(breaker_cooldown, T_SECONDS, "5", 0.01, 3600),
	O(require_device_id, T_BOOL, "false", 0, 0),
	O(max_message_size, T_BYTES, "64k", 8, 1 << 30),
	O(max_connections, T_INT, "10000", 1, 10000000),
	O(edge_threads, T_INT, "0", 0, 64),
	O(edge_event_loop, T_STR, "epoll", 0, 0),
	O(send_queue_bytes, T_BYTES, "1m", 1024, 1 << 30),
	O(send_queue_hard_bytes, T_BYTES, "4m", 1024, 1 << 30),
	O(max_inflight_messages, T_INT, "1000", 1, 65535),
	O(retry_interval, T_SECONDS, "3", 0.01, 3600),
	O(heartbeat, T_INT, "25", 0, 3600),
	O(heartbeat_timeout, T_INT, "10", 1, 3600),
	O(handshake_timeout, T_SECONDS, "10", 0.001, 3600),
	O(strict_frames, T_BOOL, "false", 0, 0),
	O(signature_window, T_INT, "10", 0, 86400),
	O(api_signature, T_STR, "both", 0, 0),
	O(rest_status_codes, T_STR, "compat", 0, 0),
	O(serverinfo_auth, T_STR, "none", 0, 0),
	O(admin_password, T_STR, "", 0, 0),
	O(request_body_timeout, T_SECONDS, "30", 0.001, 3600),
	O(http_idle_timeout, T_SECONDS, "60", 0.001, 86400),
	O(shutdown_grace, T_SECONDS, "10", 0, 3600),
	O(log_level, T_STR, "info", 0, 0),
	O(log_file, T_STR, "", 0, 0),
	O(data_dir, T_STR, "data", 0, 0),
	O(database, T_STR, "", 0, 0),
	O(durability, T_STR, "normal", 0, 0),
	O(session_expiry, T_SECONDS, "3600", 1, 30 * 86400),
	O(session_max_messages, T_INT, "1000", 1, 1000000),
	O(session_max_bytes, T_BYTES, "16m", 1024, 1ll << 34),
	O(session_overflow, T_STR, "drop_oldest", 0, 0),
	O(udp_ports, T_STR, "2014-2024", 0, 0),
	O(cluster_name, T_STR, "rainbow", 0, 0),
	O(cluster_secret, T_STR, "", 0, 0),
	O(cluster_seeds, T_STR, "", 0, 0),
	O(cluster_beacon_interval, T_SECONDS, "1", 0.01, 3600),
	O(cluster_peer_timeout, T_SECONDS, "5", 0.02, 86400),
	O(push_backlog, T_INT, "20000", 0, 100000000),
	O(token_secret, T_STR, "", 0, 0),
	O(token_required, T_BOOL, "false", 0, 0),
	O(token_leeway, T_INT, "5", 0, 3600),
	O(cluster_tls_cert, T_STR, "", 0, 0),
	O(cluster_tls_key, T_STR, "", 0, 0),
	O(cluster_tls_ca, T_STR, "", 0, 0),
};

static const struct opt *find_opt(const char *name)
{
	for (size_t i = 0; i < RB_ARRAY_LEN(opts); i++)
		if (strcasecmp(opts[i].name, name) == 0)
			return &opts[i];
	return NULL;
}

static int parse_number(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -1;
	while (isspace((unsigned char)*end))
		end++;
	*out = v;
	return *end ? (int)(unsigned char)*end : 0;
}

int conf_port_range(const char *s, int *lo, int *hi)
{
	char *end;
	long a = strtol(s, &end, 10), b;
	if (end == s || *end != '-')
		return RB_EINVAL;
	const char *p = end + 1;
	b = strtol(p, &end, 10);
	if (end == p || *end || a < 1 || b > 65535 || a > b)
		return RB_EINVAL;
	if (lo)
		*lo = (int)a;
	if (hi)
		*hi = (int)b;
	return RB_OK;
}

static int set_value(struct conf *c, const struct opt *o, const char *val,
		     char *err, size_t errlen)
{
	void *field = (char *)c + o->offset;
	double v = 0;
	int suffix;

	switch (o->type) {
	case T_STR: {
		char *dup = strdup(val);
		if (!dup)
			return RB_ENOMEM;
		free(*(char **)field);
		*(char **)field = dup;
		if (strcmp(o->name, "log_level") == 0 && log_level_parse(dup) < 0) {
			snprintf(err, errlen, "%s: '%s' is not one of error, warn, info, debug",
				 o->name, val);
			return RB_EINVAL;
		}
		static const struct { const char *opt, *v[4]; } enums[] = {
			{ "durability", { "full", "normal", "off", NULL } },
			{ "session_overflow", { "drop_oldest", "refuse", NULL, NULL } },
			{ "api_signature", { "v1", "v2", "both", NULL } },
			{ "rest_status_codes", { "compat", "strict", NULL, NULL } },
			{ "serverinfo_auth", { "none", "signature", "password", NULL } },
			{ "edge_event_loop", { "epoll", "poll", NULL, NULL } },
		};
		for (size_t e = 0; e < RB_ARRAY_LEN(enums); e++) {
			if (strcmp(o->name, enums[e].opt) != 0)
				continue;
			bool ok = false;
			for (int k = 0; enums[e].v[k]; k++)
				ok = ok || strcmp(dup, enums[e].v[k]) == 0;
			if (!ok) {
				snprintf(err, errlen, "%s: '%s' is not one of %s, %s%s%s", o->name, val,
					 enums[e].v[0], enums[e].v[1], enums[e].v[2] ? ", " : "",
					 enums[e].v[2] ? enums[e].v[2] : "");
				return RB_EINVAL;
			}
		}
		if (strcmp(o->name, "port_range") == 0 && conf_port_range(dup, NULL, NULL) != RB_OK) {
			snprintf(err, errlen, "%s: '%s' is not a range like 1984-2013 (1..65535)",
				 o->name, val);
			return RB_EINVAL;
		}
		return RB_OK;
	}
	case T_BOOL:
		if (!strcasecmp(val, "true") || !strcasecmp(val, "yes") ||
		    !strcasecmp(val, "on") || !strcmp(val, "1")) {
			*(bool *)field = true;
		} else if (!strcasecmp(val, "false") || !strcasecmp(val, "no") ||
			   !strcasecmp(val, "off") || !strcmp(val, "0")) {
			*(bool *)field = false;
		} else {
			snprintf(err, errlen, "%s: '%s' is not a boolean (true/false)",
				 o->name, val);
			return RB_EINVAL;
		}
		return RB_OK;
	case T_INT:
		if (strcmp(o->name, "port") == 0 && strcasecmp(val, "auto") == 0) {
			*(int *)field = 0; /* the first free one of port_range */
			return RB_OK;
		}
		if (parse_number(val, &v) != 0 || v != floor(v)) {
			snprintf(err, errlen, "%s: '%s' is not an integer", o->name, val);
			return RB_EINVAL;
		}
		break;
	case T_SECONDS:
		if (parse_number(val, &v) != 0) {
			snprintf(err, errlen, "%s: '%s' is not a number of seconds",
				 o->name, val);
			return RB_EINVAL;
		}
		break;
	case T_BYTES:
		suffix = parse_number(val, &v);
		if (suffix == 'k' || suffix == 'K')
			v *= 1024;
		else if (suffix == 'm' || suffix == 'M')
			v *= 1024 * 1024;
		else if (suffix == 'g' || suffix == 'G')
			v *= 1024.0 * 1024 * 1024;
		else if (suffix != 0) {
			snprintf(err, errlen, "%s: '%s' is not a size (e.g. 65536, 64k, 1m)",
				 o->name, val);
			return RB_EINVAL;
		}
		if (suffix > 0) {
			/* Only a bare suffix may follow the number. */
			const char *p = val + strlen(val);
			while (p > val && isspace((unsigned char)p[-1]))
				p--;
			if (p - val < 2 || (!isdigit((unsigned char)p[-2]) && p[-2] != '.')) {
				snprintf(err, errlen, "%s: '%s' is not a size", o->name, val);
				return RB_EINVAL;
			}
		}
		if (v != floor(v)) {
			snprintf(err, errlen, "%s: '%s' is not a whole number of bytes",
				 o->name, val);
			return RB_EINVAL;
		}
		break;
	}
	if (v < o->min || v > o->max) {
		snprintf(err, errlen, "%s: %s is out of range [%g, %g]", o->name, val,
			 o->min, o->max);
		return RB_EINVAL;
	}
	if (o->type == T_INT)
		*(int *)field = (int)v;
	else if (o->type == T_SECONDS)
		*(double *)field = v;
	else
		*(size_t *)field = (size_t)v;
	return RB_OK;
}

int conf_set(struct conf *c, const char *name, const char *value, char *err,
	     size_t errlen)
{
	const struct opt *o = find_opt(name);
	if (!o) {
		snprintf(err, errlen, "%s: unknown option", name);
		return RB_EINVAL;
	}
	return set_value(c, o, value, err, errlen);
}

void conf_defaults(struct conf *c)
{
	char err[256];
	memset(c, 0, sizeof(*c));
	for (size_t i = 0; i < RB_ARRAY_LEN(opts); i++) {
		int rc = set_value(c, &opts[i], opts[i].def, err, sizeof(err));
		/* A bad built-in default is a programming error. */
		if (rc != RB_OK) {
			fprintf(stderr, "rainbow: bad built-in default: %s\n", err);
			abort();
		}
	}
}

struct load_ctx {
	struct conf *c;
	char msg[256];
	int failed;
	char bad_section[64]; /* set when the error is an unknown section */
};

static int on_ini_line(void *user, const char *section, const char *name,
		       const char *value)
{
	struct load_ctx *ctx = user;

	if (ctx->failed)
		return 0;
	if (strcasecmp(section, "main") != 0) {
		snprintf(ctx->msg, sizeof(ctx->msg), "[%s]: unknown section (options go in [main])",
			 section);
		snprintf(ctx->bad_section, sizeof(ctx->bad_section), "%s", section);
		ctx->failed = 1;
		return 0;
	}
	if (conf_set(ctx->c, name, value, ctx->msg, sizeof(ctx->msg)) != RB_OK) {
		ctx->failed = 1;
		return 0;
	}
	return 1;
}

/* inih reports an unknown section at its first option; point at the
 * "[name]" line itself, the one to fix. */
static int section_line(FILE *f, const char *section, int fallback)
{
	char buf[512], want[80];
	int n = 0, found = fallback;

	snprintf(want, sizeof(want), "[%s]", section);
	rewind(f);
	while (fgets(buf, sizeof(buf), f) && ++n < fallback) {
		char *p = buf;
		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, want, strlen(want)) == 0)
			found = n;
	}
	return found;
}

int conf_load(struct conf *c, const char *path, char *err, size_t errlen)
{
	struct load_ctx ctx = { .c = c };
	FILE *f = fopen(path, "r");

	if (!f) {
		snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
		return RB_EIO;
	}
	int line = ini_parse_file(f, on_ini_line, &ctx);
	if (line > 0 && ctx.bad_section[0])
		line = section_line(f, ctx.bad_section, line);
	fclose(f);
	if (line == 0)
		return RB_OK;
	if (line < 0) {
		snprintf(err, errlen, "%s: cannot read", path);
		return RB_EIO;
	}
	/* inih reports the first failing line; our handler kept its reason. */
	snprintf(err, errlen, "%s:%d: %s", path, line,
		 ctx.failed ? ctx.msg : "syntax error (expected 'name = value')");
	return RB_EINVAL;
}

int conf_check(const struct conf *c, char *err, size_t errlen)
{
	if (c->tls_port && (!*c->tls_cert || !*c->tls_key)) {
		snprintf(err, errlen, "tls_port: needs tls_cert and tls_key");
		return RB_EINVAL;
	}
	if (c->tls_port && (c->tls_port == c->port || c->tls_port == c->api_port)) {
		snprintf(err, errlen, "tls_port: must differ from port and api_port");
		return RB_EINVAL;
	}
	if (c->api_port && c->api_port == c->port) {
		snprintf(err, errlen, "api_port: must differ from port (0 = same port)");
		return RB_EINVAL;
	}
	if (c->send_queue_hard_bytes < c->send_queue_bytes) {
		snprintf(err, errlen, "send_queue_hard_bytes: must be at least send_queue_bytes");
		return RB_EINVAL;
	}
	if (c->token_required && !*c->token_secret) {
		snprintf(err, errlen, "token_required: needs token_secret");
		return RB_EINVAL;
	}
	if (strcmp(c->serverinfo_auth, "password") == 0 && !*c->admin_password) {
		snprintf(err, errlen, "serverinfo_auth: 'password' needs admin_password");
		return RB_EINVAL;
	}
	if (*c->cluster_secret) {
		size_t n = strlen(c->cluster_name);
		if (n < 1 || n > 64) {
			snprintf(err, errlen, "cluster_name: must be 1 to 64 bytes");
			return RB_EINVAL;
		}
		if (conf_port_range(c->udp_ports, NULL, NULL) != RB_OK) {
			snprintf(err, errlen, "udp_ports: '%s' is not a range like 2014-2024 (1..65535)",
				 c->udp_ports);
			return RB_EINVAL;
		}
		if ((*c->cluster_tls_cert || *c->cluster_tls_key || *c->cluster_tls_ca) &&
		    (!*c->cluster_tls_cert || !*c->cluster_tls_key || !*c->cluster_tls_ca)) {
			snprintf(err, errlen, "cluster_tls_cert, cluster_tls_key, cluster_tls_ca: "
				 "TLS on cluster links needs all three");
			return RB_EINVAL;
		}
		if (c->cluster_peer_timeout <= c->cluster_beacon_interval) {
			snprintf(err, errlen, "cluster_peer_timeout: must be longer than "
				 "cluster_beacon_interval");
			return RB_EINVAL;
		}
	}
	const char *urls[] = { c->connect_url, c->forward_url, c->close_url };
	const char *names[] = { "connect_url", "forward_url", "close_url" };
	for (size_t i = 0; i < RB_ARRAY_LEN(urls); i++) {
		if (*urls[i] && strncmp(urls[i], "http://", 7) != 0) {
			snprintf(err, errlen, "%s: '%s' must start with http://", names[i],
				 urls[i]);
			return RB_EINVAL;
		}
	}
	return RB_OK;
}

void conf_free(struct conf *c)
{
	for (size_t i = 0; i < RB_ARRAY_LEN(opts); i++)
		if (opts[i].type == T_STR) {
			char **p = (char **)((char *)c + opts[i].offset);
			free(*p);
			*p = NULL;
		}
}
