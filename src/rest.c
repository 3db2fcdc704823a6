#include "src/rest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "protocol/rb.h"
#include "protocol/sign.h"
#include "src/channels.h"
#include "src/conf.h"
#include "src/core.h"
#include "src/httpd.h"
#include "src/log.h"
#include "src/metrics.h"

static void reply_json(struct httpd_req *req, int status, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (s)
		httpd_reply(req, status, NULL, s, strlen(s));
	else
		httpd_reply_error(req, 500, "out of memory");
	free(s);
	json_decref(j);
}

static bool signed_ok(struct core *c, struct httpd_req *req)
{
	int rc = sign_v1_verify(c->conf->security_token, kv_get(&req->args, "timestamp"),
				kv_get(&req->args, "nonce"), kv_get(&req->args, "signature"),
				time(NULL), c->conf->signature_window);
	if (rc == RB_OK)
		return true;
	log_info("rest: %s %s from %s: signature error (%s)", req->head.method,
		 req->head.path, req->peer, rb_strerror(rc));
	httpd_reply_error(req, 403, "signature error");
	return false;
}

static void add_channel(const char *name, size_t members, void *arg)
{
	json_array_append_new(arg, json_pack("[s, I]", name, (json_int_t)members));
}

static void serverinfo(struct core *c, struct httpd_req *req)
{
	json_t *chans = json_array();
	channels_foreach(c->channels, add_channel, chans);
	const char *cluster = kv_get(&req->args, "cluster");
	if (cluster && strcmp(cluster, "1") == 0) {
		reply_json(req, 200, json_pack("{s:s, s:I, s:o, s:i, s:{s:i, s:I, s:I, s:I}}",
			"server", c->server_name,
			"channels_cnt", (json_int_t)channels_count(c->channels),
			"channels", chans,
			"status", 0,
			"process", "pid", (int)getpid(),
			"uptime", (json_int_t)(time(NULL) - c->started),
			"connections", (json_int_t)c->n_open,
			"forwards_in_flight", (json_int_t)c->fwd_inflight));
		return;
	}
	/* The HTML page of the original: one table per node (one node here). */
	size_t cap = 4096, len = 0;
	char *html = malloc(cap);
	if (!html) {
		json_decref(chans);
		httpd_reply_error(req, 500, "out of memory");
		return;
	}
	len += (size_t)snprintf(html, cap,
		"<!doctype html><html><head><meta charset=\"utf-8\"><title>Rainbow</title>"
		"</head><body><h1>%s</h1><p>%zu connections, %zu channels</p>"
		"<table><tr><th>channel</th><th>connections</th></tr>",
		c->server_name, c->n_open, channels_count(c->channels));
	size_t i;
	json_t *row;
	json_array_foreach(chans, i, row) {
		const char *name = json_string_value(json_array_get(row, 0));
		char esc[512];
		size_t k = 0;
		for (const char *p = name; *p && k < sizeof(esc) - 8; p++) {
			const char *rep = *p == '<' ? "&lt;" : *p == '>' ? "&gt;" :
					  *p == '&' ? "&amp;" : NULL;
			if (rep) {
				memcpy(esc + k, rep, strlen(rep));
				k += strlen(rep);
			} else {
				esc[k++] = *p;
			}
		}
		esc[k] = 0;
		char line[700];
		int n = snprintf(line, sizeof(line), "<tr><td>%s</td><td>%lld</td></tr>", esc,
				 (long long)json_integer_value(json_array_get(row, 1)));
		if (len + (size_t)n + 64 > cap) {
			char *nh = realloc(html, cap * 2 + (size_t)n);
			if (!nh)
				break;
			html = nh;
			cap = cap * 2 + (size_t)n;
		}
		memcpy(html + len, line, (size_t)n);
		len += (size_t)n;
	}
	len += (size_t)snprintf(html + len, cap - len, "</table></body></html>");
	httpd_reply(req, 200, "text/html; charset=utf-8", html, len);
	free(html);
	json_decref(chans);
}

static void metrics_text(struct core *c, struct httpd_req *req)
{
	size_t cap = 8192, len = 0;
	char *out = malloc(cap);
	if (!out) {
		httpd_reply_error(req, 500, "out of memory");
		return;
	}
	for (int i = 0; i < M__COUNT; i++)
		len += (size_t)snprintf(out + len, cap - len, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n",
					metric_name(i), metric_help(i), metric_name(i),
					metric_name(i), (unsigned long long)metric_get(i));
	len += (size_t)snprintf(out + len, cap - len,
				"# HELP rainbow_connections Open WebSocket connections\n"
				"# TYPE rainbow_connections gauge\nrainbow_connections %zu\n"
				"# HELP rainbow_forwards_in_flight Forwards awaiting the backend\n"
				"# TYPE rainbow_forwards_in_flight gauge\nrainbow_forwards_in_flight %d\n",
				c->n_open, c->fwd_inflight);
	httpd_reply(req, 200, "text/plain; version=0.0.4", out, len < cap ? len : cap - 1);
	free(out);
}

void rest_handle(struct httpd_req *req, void *arg)
{
	struct core *c = arg;
	const char *path = req->head.path;

	if (strcmp(path, "/hello/") == 0 || strcmp(path, "/hello") == 0) {
		httpd_reply(req, 200, "text/plain", "ok", 2);
	} else if (strcmp(path, "/healthz") == 0) {
		reply_json(req, c->stop_phase ? 503 : 200,
			   json_pack("{s:i, s:s}", "status", c->stop_phase ? 1 : 0, "msg",
				     c->stop_phase ? "shutting down" : "ok"));
	} else if (strcmp(path, "/metrics") == 0) {
		metrics_text(c, req);
	} else if (strcmp(path, "/serverinfo/") == 0 || strcmp(path, "/serverinfo") == 0) {
		if (signed_ok(c, req))
			serverinfo(c, req);
	} else if (strcmp(path, "/connect/") == 0 || strcmp(path, "/connect") == 0) {
		httpd_reply_error(req, 400, "WebSocket upgrade required");
	} else {
		httpd_reply_error(req, 404, "no such endpoint");
	}
}
