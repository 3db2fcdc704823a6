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
#include "src/backend.h"
#include "src/deliver.h"
#include "src/hooks.h"
#include "src/nonce.h"
#include "src/session.h"
#include "storage/db.h"
#include "src/core.h"
#include "src/httpd.h"
#include "src/log.h"
#include "src/metrics.h"

static struct core *req_core(struct httpd_req *req)
{
	return req->ctx;
}

static void fail(struct httpd_req *req, int status, const char *msg)
{
	metric_inc(M_REST_ERRORS);
	httpd_reply_error(req, status, msg);
}

/* Answers go through core_reply: one that follows a state change (a
 * subscription) leaves only after its COMMIT. */
static void reply_json(struct httpd_req *req, int status, json_t *j)
{
	struct core *c = req_core(req);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	if (s)
		core_reply(c, req, status, NULL, s, strlen(s));
	else
		fail(req, 500, "out of memory");
	free(s);
	json_decref(j);
}

static int check_v2(struct core *c, struct httpd_req *req, const char *sig)
{
	const struct kvlist *a = &req->args;
	const char **names = malloc((a->n + 1) * sizeof(*names));
	const char **values = malloc((a->n + 1) * sizeof(*values));
	char canon[8192], want[SIGN_V2_HEX_LEN + 1];
	int rc = RB_ENOMEM;

	if (names && values) {
		for (size_t i = 0; i < a->n; i++) {
			names[i] = a->v[i].name;
			values[i] = a->v[i].value;
		}
		rc = sign_v2_canonical_query(names, values, a->n, canon, sizeof(canon));
	}
	free(names);
	free(values);
	if (rc < 0)
		return rc;
	if (sign_v2(c->conf->security_token, req->head.method, req->head.path, canon, req->body,
		    req->body_len, want) != RB_OK)
		return RB_EIO;
	return sign_equal(want, sig) ? RB_OK : RB_EINVAL;
}

/* ts is decimal Unix seconds within window of now. */
static bool timestamp_fresh(const char *ts, time_t now, int window)
{
	long long v = 0;
	if (!*ts || strlen(ts) > 18)
		return false;
	for (const char *p = ts; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	return v >= (long long)now - window && v <= (long long)now + window;
}

/* Checks the signature per api_signature; answers 403 itself on failure. */
static bool signed_ok(struct core *c, struct httpd_req *req)
{
	const char *mode = c->conf->api_signature;
	const char *ts = kv_get(&req->args, "timestamp"), *nonce = kv_get(&req->args, "nonce");
	const char *sig = kv_get(&req->args, "signature");
	time_t now = time(NULL);
	int rc = RB_EINVAL;
	const char *why = "missing signature";

	if (sig && strlen(sig) == SIGN_V2_HEX_LEN && strcmp(mode, "v1") != 0) {
		/* v2: a fresh timestamp, an HMAC over the whole request, and a
		 * nonce that may be used once. */
		if (!ts || !nonce || !*nonce) {
			rc = RB_EINVAL;
			why = "missing timestamp or nonce";
		} else if (!timestamp_fresh(ts, now, c->conf->signature_window)) {
			rc = RB_ETIMEDOUT;
			why = "stale or bad timestamp";
		} else if ((rc = check_v2(c, req, sig)) != RB_OK) {
			why = "v2 signature mismatch";
		} else if ((rc = nonce_check_add(c->nonces, nonce, now)) != RB_OK) {
			why = "replayed nonce";
		}
	} else if (sig && strlen(sig) == SIGN_V1_HEX_LEN && strcmp(mode, "v2") != 0) {
		rc = sign_v1_verify(c->conf->security_token, ts, nonce, sig, now,
				    c->conf->signature_window);
		why = rc == RB_ETIMEDOUT ? "stale or bad timestamp" : "v1 signature mismatch";
	} else if (sig) {
		why = "signature scheme not accepted";
	}
	if (rc == RB_OK)
		return true;
	metric_inc(M_SIGNATURE_ERRORS);
	log_info("rest: %s %s from %s: signature error (%s)", req->head.method, req->head.path,
		 req->peer, why);
	fail(req, 403, "signature error");
	return false;
}

/* Strict non-negative integer in [min, max]: digits only. */
static bool parse_int(const char *s, long min, long max, long *out)
{
	long v = 0;
	if (!s || !*s || strlen(s) > 10)
		return false;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	if (v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool method_is(struct httpd_req *req, const char *method)
{
	if (strcmp(req->head.method, method) == 0)
		return true;
	char msg[64];
	snprintf(msg, sizeof(msg), "method not allowed (use %s)", method);
	fail(req, 405, msg);
	return false;
}

/* Collects member ids of a channel into a fresh array. */
static uint64_t *members_of(struct core *c, const char *channel, size_t *n)
{
	const struct idmap *m = channels_members(c->channels, channel);
	*n = 0;
	if (!m || !m->len)
		return NULL;
	uint64_t *ids = malloc(m->len * sizeof(*ids)), id;
	size_t i = 0;
	void *val;
	while (ids && idmap_next(m, &i, &id, &val))
		ids[(*n)++] = id;
	return ids;
}

struct strv {
	char **v;
	size_t n, cap;
};

static void strv_add(const char *str, void *arg)
{
	struct strv *sv = arg;
	if (sv->n == sv->cap) {
		size_t ncap = sv->cap ? sv->cap * 2 : 8;
		char **nv = realloc(sv->v, ncap * sizeof(*nv));
		if (!nv)
			return;
		sv->v = nv;
		sv->cap = ncap;
	}
	if ((sv->v[sv->n] = strdup(str)))
		sv->n++;
}

static void strv_free(struct strv *sv)
{
	for (size_t i = 0; i < sv->n; i++)
		free(sv->v[i]);
	free(sv->v);
}

static void rest_send(struct core *c, struct httpd_req *req)
{
	const char *channel = kv_get(&req->args, "channel");
	const char *identity = kv_get(&req->args, "identity");
	const char *device = kv_get(&req->args, "device");
	const char *v;
	long qos = 0, msgtype, timeout = 10;

	if ((v = kv_get(&req->args, "qos")) && !parse_int(v, 0, 2, &qos)) {
		fail(req, 400, "qos level error");
		return;
	}
	if (!parse_int(kv_get(&req->args, "msgtype"), 0, 65535, &msgtype)) {
		fail(req, 400, "params error: msgtype must be an integer in 0..65535");
		return;
	}
	if ((v = kv_get(&req->args, "timeout")) && !parse_int(v, 1, 3600, &timeout)) {
		fail(req, 400, "params error: timeout must be an integer in 1..3600 (seconds)");
		return;
	}
	if ((channel != NULL) + (identity != NULL) + (device != NULL) != 1) {
		fail(req, 400, "params error: give exactly one of channel, identity, device");
		return;
	}
	uint64_t one, *ids = NULL;
	size_t n = 0;
	struct strv offline = { 0 };
	if (identity || device) {
		struct conn *cn = identity ? core_conn_by_identity(c, identity)
					   : session_holder(c, device);
		if (conn_reachable(cn)) {
			one = cn->id;
			n = 1;
		} else if (device && session_offline(c, device)) {
			if (qos)
				strv_add(device, &offline);
		} else {
			fail(req, 404, identity ? "no such connection" : "no such device");
			return;
		}
	} else {
		ids = members_of(c, channel, &n);
		/* Sessions subscribed while offline get QoS 1/2 when back. */
		if (qos)
			db_offline_members(c->db, channel, strv_add, &offline);
		if (!n && !offline.n) {
			free(ids);
			fail(req, 404, "channel miss");
			return;
		}
	}
	deliver_push(c, req, ids ? ids : &one, n, offline.v, offline.n, (uint8_t)qos,
		     (uint16_t)msgtype, req->body, req->body_len, (double)timeout);
	free(ids);
	strv_free(&offline);
}

/* Parses the JSON object body of /sub/, /unsub/, /kick/ and finds the
 * connection; answers the error itself and returns NULL on failure. */
static json_t *json_body(struct httpd_req *req)
{
	json_error_t err;
	json_t *j = json_loadb(req->body, req->body_len, 0, &err);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		fail(req, 400, "params error: body must be a JSON object");
		return NULL;
	}
	return j;
}

static const char *json_str(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static struct conn *body_conn(struct core *c, struct httpd_req *req, json_t *j)
{
	const char *identity = json_str(j, "identity");
	if (!identity) {
		fail(req, 400, "params error: identity (string) is required");
		return NULL;
	}
	struct conn *cn = core_conn_by_identity(c, identity);
	if (!conn_reachable(cn)) {
		fail(req, 404, "no such connection");
		return NULL;
	}
	return cn;
}

static void reply_ok(struct httpd_req *req)
{
	core_reply(req_core(req), req, 200, NULL, "{\"status\":0}", 12);
}

static void rest_sub(struct core *c, struct httpd_req *req, bool sub)
{
	json_t *j;
	struct conn *cn;
	const char *channel;

	if (!(j = json_body(req)))
		return;
	json_t *occ = json_object_get(j, "occupy");
	if (!(channel = json_str(j, "channel")) || !*channel) {
		fail(req, 400, "params error: channel (non-empty string) is required");
	} else if (sub && occ && !json_is_boolean(occ)) {
		fail(req, 400, "params error: occupy must be a boolean");
	} else if ((cn = body_conn(c, req, j))) {
		if (sub && json_is_true(occ)) {
			/* Occupy: the channel becomes this connection's alone. */
			size_t n;
			uint64_t *ids = members_of(c, channel, &n);
			for (size_t i = 0; i < n; i++) {
				struct conn *other = core_conn(c, ids[i]);
				if (other && other != cn)
					conn_unsub(c, other, channel);
			}
			free(ids);
			/* Offline sessions are members too: they leave as well. */
			core_batch(c);
			db_sub_evict(c->db, channel, cn->session ? cn->device_id : NULL);
		}
		if (sub)
			conn_sub(c, cn, channel);
		else
			conn_unsub(c, cn, channel);
		reply_ok(req);
	}
	json_decref(j);
}

static void rest_kick(struct core *c, struct httpd_req *req)
{
	json_t *j;
	struct conn *cn;

	if (!(j = json_body(req)))
		return;
	json_t *code = json_object_get(j, "code"), *reason = json_object_get(j, "reason");
	json_int_t cv = code ? (json_is_integer(code) ? json_integer_value(code) : -1) : 4000;
	if (cv != 1000 && (cv < 3000 || cv > 4999)) {
		fail(req, 400, "params error: code must be 1000 or 3000..4999");
	} else if (reason && (!json_is_string(reason) || json_string_length(reason) > 120)) {
		fail(req, 400, "params error: reason must be a string of at most 120 bytes");
	} else if ((cn = body_conn(c, req, j))) {
		metric_inc(M_CONN_KICKED);
		log_info("conn %s: kicked (%d)", cn->identity, (int)cv);
		core_close_conn(c, cn->id, (uint16_t)cv,
				reason ? json_string_value(reason) : "kicked");
		reply_ok(req);
	}
	json_decref(j);
}

static void add_presence(struct core *c, json_t *arr, const char *channel)
{
	size_t n;
	uint64_t *ids = members_of(c, channel, &n);
	for (size_t i = 0; i < n; i++) {
		struct conn *cn = core_conn(c, ids[i]);
		if (cn)
			json_array_append_new(arr, json_pack("{s:s, s:s?, s:s?}", "identity",
							     cn->identity, "device", cn->device_id,
							     "platform", cn->platform));
	}
	free(ids);
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
	size_t depth = 0, i = 0, len;
	uint64_t id;
	void *val;
	while (idmap_next(&c->conns, &i, &id, &val))
		depth += (size_t)((struct conn *)val)->fq_len;
	struct metric_gauges g = {
		.connections = c->n_open,
		.channels = channels_count(c->channels),
		.forwards_in_flight = c->fwd_inflight,
		.forward_queue_depth = depth,
		.deliveries_in_flight = deliver_in_flight(c),
		.pushes_waiting = deliver_pushes_waiting(c),
		.backend_pending = backend_pending(c->backend),
	};
	char *out = metrics_render(&g, &len);
	if (!out) {
		fail(req, 500, "out of memory");
		return;
	}
	httpd_reply(req, 200, "text/plain; version=0.0.4; charset=utf-8", out, len);
	free(out);
}

static void list_channels(struct core *c, struct httpd_req *req, bool presence)
{
	json_t *arr = json_array();
	if (!presence) {
		channels_foreach(c->channels, add_channel, arr);
		reply_json(req, 200, json_pack("{s:i, s:o}", "status", 0, "channels", arr));
		return;
	}
	const char *ch = kv_get(&req->args, "channel");
	if (!ch) {
		json_decref(arr);
		fail(req, 400, "params error: channel is required");
		return;
	}
	add_presence(c, arr, ch);
	reply_json(req, 200, json_pack("{s:i, s:s, s:o}", "status", 0, "channel", ch,
				       "connections", arr));
}

static void hello(struct core *c, struct httpd_req *req)
{
	httpd_reply(req, 200, "text/plain", "ok", 2);
}

static void healthz(struct core *c, struct httpd_req *req)
{
	reply_json(req, c->stop_phase ? 503 : 200,
		   json_pack("{s:i, s:s}", "status", c->stop_phase ? 1 : 0, "msg",
			     c->stop_phase ? "shutting down" : "ok"));
}

static void connect_path(struct core *c, struct httpd_req *req)
{
	fail(req, 400, "WebSocket upgrade required");
}

static void do_sub(struct core *c, struct httpd_req *req)
{
	rest_sub(c, req, true);
}

static void do_unsub(struct core *c, struct httpd_req *req)
{
	rest_sub(c, req, false);
}

static void channels_list(struct core *c, struct httpd_req *req)
{
	list_channels(c, req, false);
}

static void presence(struct core *c, struct httpd_req *req)
{
	list_channels(c, req, true);
}

static const struct route {
	const char *path;   /* without the trailing slash */
	const char *method; /* NULL: any (the handler checks) */
	bool is_signed;
	void (*fn)(struct core *c, struct httpd_req *req);
} routes[] = {
	{ "/hello", NULL, false, hello },
	{ "/healthz", NULL, false, healthz },
	{ "/metrics", NULL, false, metrics_text },
	{ "/connect", NULL, false, connect_path },
	{ "/serverinfo", "GET", true, serverinfo },
	{ "/send", "POST", true, rest_send },
	{ "/sub", "POST", true, do_sub },
	{ "/unsub", "POST", true, do_unsub },
	{ "/kick", "POST", true, rest_kick },
	{ "/channels", "GET", true, channels_list },
	{ "/presence", "GET", true, presence },
};

void rest_handle(struct httpd_req *req, void *arg)
{
	struct core *c = arg;
	req->ctx = c;
	const char *path = req->head.path;
	size_t pl = strlen(path);

	/* "/send/" (the original's spelling) and "/send" name the same call. */
	if (pl > 1 && path[pl - 1] == '/')
		pl--;
	for (size_t i = 0; i < RB_ARRAY_LEN(routes); i++) {
		const struct route *r = &routes[i];
		if (strlen(r->path) != pl || strncmp(r->path, path, pl) != 0)
			continue;
		if (r->method && !method_is(req, r->method))
			return;
		if (r->is_signed && !signed_ok(c, req))
			return;
		r->fn(c, req);
		return;
	}
	fail(req, 404, "no such endpoint");
}
