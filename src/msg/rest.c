#include "src/msg/rest.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <math.h>
#include <net/if.h>
#include <netinet/in.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "protocol/rb.h"
#include "protocol/sign.h"
#include "src/msg/channels.h"
#include "src/base/conf.h"
#include "src/base/timeutil.h"
#include "src/http/backend.h"
#include "src/msg/deliver.h"
#include "src/edge/pool.h"
#include "src/msg/engine.h"
#include "src/msg/guard.h"
#include "src/msg/membership.h"
#include "src/msg/nonce.h"
#include "src/msg/push.h"
#include "src/msg/route.h"
#include "src/msg/session.h"
#include "storage/db.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/edge/seam.h"
#include "src/http/httpd.h"
#include "src/base/log.h"
#include "src/base/metrics.h"

static struct core *req_core(struct httpd_req *req)
{
	return req->ctx;
}

static void fail(struct httpd_req *req, int status, const char *msg)
{
	metric_inc(M_REST_ERRORS);
	httpd_reply_error(req, status, msg);
}

static bool strict_codes(const struct core *c)
{
	return strcmp(c->conf->rest_status_codes, "strict") == 0;
}

/* An outcome the original answered over HTTP 200 with "status":1 (and
 * backends written for it read it there): HTTP 200 under
 * rest_status_codes = compat, strict_status under strict. */
static void refuse(struct httpd_req *req, int strict_status, const char *msg)
{
	fail(req, strict_codes(req_core(req)) ? strict_status : 200, msg);
}

/* Bad parameters: msg is the original's "params error" (a backend may
 * compare it), detail names the parameter. 200 (compat) or 400 (strict). */
static void params_error(struct httpd_req *req, const char *detail)
{
	json_t *j = json_pack("{s:i, s:s, s:s}", "status", 1, "msg", "params error", "detail",
			      detail);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;

	metric_inc(M_REST_ERRORS);
	if (s)
		httpd_reply(req, strict_codes(req_core(req)) ? 400 : 200, NULL, s, strlen(s));
	else
		httpd_reply_error(req, 500, "out of memory");
	free(s);
	json_decref(j);
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

/* Answers the page built in b, or 500 unless ok (ok implies b). Frees b;
 * NULL-tolerant. */
static void reply_buffer(struct httpd_req *req, bool ok, const char *ctype, struct evbuffer *b)
{
	size_t len = ok ? evbuffer_get_length(b) : 0;
	/* pullup makes the bytes contiguous (NULL if it cannot, or if empty). */
	const char *body = len ? (const char *)evbuffer_pullup(b, -1) : "";

	if (ok && body)
		httpd_reply(req, 200, ctype, body, len);
	else
		fail(req, 500, "out of memory");
	if (b)
		evbuffer_free(b);
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
	uint64_t v;

	if (rb_parse_decs(ts, INT64_MAX, &v) != RB_OK)
		return false;
	return (int64_t)v >= (int64_t)now - window && (int64_t)v <= (int64_t)now + window;
}

/* Checks the signature per api_signature; on failure answers "signature
 * error" itself (HTTP 200 in compat mode, as the original; 403 in strict).
 * v1 has no replay check: the original had none, and its SDK draws nonces
 * from 1000..9999, so refusing a repeat would refuse honest calls. */
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
	refuse(req, 403, "signature error");
	return false;
}

/* A name for the log: at most 120 bytes, control characters as '?'. */
static void log_name(const char *in, char out[128])
{
	size_t k = 0;
	for (const char *p = in; *p && k < 120; p++)
		out[k++] = (unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p;
	if (*in && strlen(in) > 120) {
		memcpy(out + k, "...", 3);
		k += 3;
	}
	out[k] = 0;
}

/*
 * timeout: a decimal number of seconds ("10", "2.5", "-1"); <= 0 means 10
 * (the original's default) and more than an hour is an hour. False if s is
 * not such a number.
 */
static bool parse_timeout(const char *s, double *out)
{
	const char *p = s;
	size_t digits = 0;

	if (*p == '-' || *p == '+')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		digits++;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits++;
	if (*p || !digits || strlen(s) > 20)
		return false;
	double v = strtod(s, NULL);
	*out = !(v > 0) ? 10 : v > 3600 ? 3600 : v;
	return true;
}

/* ---- /send/: a push with legs (push.h) to a resolved target (route.h) ---- */

/*
 * Where a push's answer goes: the HTTP request of a single /send/, or one
 * slot of a /batch/ (whose request is answered when every slot is).
 */
struct batch {
	struct core *c;
	struct httpd_req *req;
	size_t n, waiting;
	json_t *results; /* array of n, filled in place */
};

struct sink {
	struct core *c;
	struct httpd_req *req;
	struct batch *batch;
	size_t slot;
};

static void batch_put(struct batch *b, size_t slot, json_t *j)
{
	json_array_set_new(b->results, slot, j ? j : json_pack("{s:i, s:s}", "status", 1, "msg",
								  "out of memory"));
	if (--b->waiting)
		return;
	reply_json(b->req, 200, json_pack("{s:i, s:o}", "status", 0, "results", b->results));
	free(b);
}

/* Takes j. http_status: what a single /send/ answers with. */
static void sink_answer(const struct sink *s, int http_status, json_t *j)
{
	if (s->batch)
		batch_put(s->batch, s->slot, j);
	else
		reply_json(s->req, http_status, j);
}

/* An outcome the original answered over HTTP 200 with "status":1; in a
 * batch, that slot's result. */
static void sink_refuse(const struct sink *s, int strict_status, const char *msg)
{
	if (s->batch) {
		metric_inc(M_REST_ERRORS);
		batch_put(s->batch, s->slot, json_pack("{s:i, s:s}", "status", 1, "msg", msg));
	} else {
		refuse(s->req, strict_status, msg);
	}
}

struct send_call {
	struct sink sink;
	size_t n_remote;
	struct push_leg remote[]; /* one per other node */
};

/* The receipt, as docs/rest-api.md says. Nobody acknowledged and nothing
 * is kept for later: a timeout, which the original answered over HTTP 200
 * ("status":1); 504 only under rest_status_codes = strict. Some
 * acknowledged: "status":0, and "failed" says how many did not. */
static void on_push_done(const struct push_result *r, void *arg)
{
	struct send_call *sc = arg;
	struct core *c = sc->sink.c;
	bool none = r->acked == 0 && r->pending == 0 && r->total > 0;
	json_t *j = json_pack("{s:i, s:I, s:I, s:I}", "status", none ? 1 : 0,
			      "connections", (json_int_t)r->acked, "failed", (json_int_t)r->failed,
			      "pending", (json_int_t)r->pending);
	if (j && none)
		json_object_set_new(j, "msg", json_string("timeout"));
	json_t *data = r->data ? json_stringn((const char *)r->data, r->data_len) : NULL;
	if (j && r->data && !data) {
		/* Not UTF-8: JSON strings cannot hold it; give it in base64
		 * (standard alphabet, padded, one line). An ACK payload is at
		 * most max_message_size (1 GiB at most): it fits an int. */
		char *enc = malloc((r->data_len + 2) / 3 * 4 + 1);
		if (enc) {
			EVP_EncodeBlock((unsigned char *)enc, r->data, (int)r->data_len);
			json_object_set_new(j, "data_base64", json_string(enc));
		}
		free(enc);
	}
	if (j)
		json_object_set_new(j, "data", data ? data : json_null());
	else
		json_decref(data);
	sink_answer(&sc->sink, none && strict_codes(c) ? 504 : 200, j);
	free(sc);
}

static void send_qos0(struct core *c, const struct sink *sk, const struct route_set *rs,
		      const struct engine_push *em)
{
	/* At most once: the connections it was sent to here; other nodes get
	 * it without a receipt. */
	size_t sent = deliver_push(c, NULL, rs->conns, rs->n_conns, NULL, 0, 0, em->msgtype,
				   em->payload, em->len);
	for (size_t i = 0; i < rs->n_nodes; i++)
		if (c->engine->ops->publish(c->engine, rs->nodes[i], em, NULL) == RB_OK &&
		    em->identity)
			sent++; /* the one connection, held there */
	sink_answer(sk, 200, json_pack("{s:i, s:I}", "status", 0, "connections", (json_int_t)sent));
}

static void send_qos12(struct core *c, const struct sink *sk, const struct route_set *rs,
		       const struct engine_push *em)
{
	struct send_call *sc = calloc(1, sizeof(*sc) + rs->n_nodes * sizeof(sc->remote[0]));
	struct push *p = sc ? push_new(c->pushes, c->base, em->timeout, on_push_done, sc) : NULL;
	if (!p) {
		free(sc);
		if (sk->batch)
			batch_put(sk->batch, sk->slot, NULL);
		else
			fail(sk->req, 503, "out of memory");
		return;
	}
	sc->sink = *sk;
	sc->n_remote = rs->n_nodes;
	deliver_push(c, p, rs->conns, rs->n_conns, rs->offline, rs->n_offline, em->qos,
		     em->msgtype, em->payload, em->len);
	/* Each other node is one leg: its receipt comes back as counts. */
	for (size_t i = 0; i < rs->n_nodes; i++) {
		push_leg_add(p, &sc->remote[i]);
		if (c->engine->ops->publish(c->engine, rs->nodes[i], em, &sc->remote[i]) != RB_OK)
			push_leg_done(&sc->remote[i], PUSH_FAILED, NULL, 0);
	}
	push_seal(p); /* may answer at once (and free sc) */
}

/*
 * One push, its parameters checked: resolve the target, deliver, and
 * answer into sk (at once, or when the receipt is complete).
 */
static void push_one(struct core *c, const struct sink *sk, const struct engine_push *em)
{
	const char *channel = em->channel, *identity = em->identity;
	struct target t = { channel ? TARGET_CHANNEL : identity ? TARGET_IDENTITY : TARGET_DEVICE,
			    channel ? channel : identity ? identity : em->device };
	struct route_set rs;
	/* Sessions subscribed while offline get QoS 1/2 when back. */
	if (route_resolve(c, &t, em->qos > 0, &rs) != RB_OK) {
		if (sk->batch)
			batch_put(sk->batch, sk->slot, NULL);
		else
			fail(sk->req, 503, "out of memory");
		return;
	}
	if (!channel && !route_found(&rs)) {
		sink_refuse(sk, 404, identity ? "no such connection" : "no such device");
		route_set_free(&rs);
		return;
	}
	char name[128];
	log_name(t.name, name);
	char nodes[48] = "";
	if (rs.n_nodes)
		snprintf(nodes, sizeof(nodes), ", %zu other nodes", rs.n_nodes);
	log_info("rest: push to %s \"%s\": qos %u, msgtype %u, %zu recipients (%zu offline)%s",
		 channel ? "channel" : identity ? "identity" : "device", name, (unsigned)em->qos,
		 (unsigned)em->msgtype, rs.n_conns + rs.n_offline, rs.n_offline, nodes);
	metric_inc(M_PUSHES);
	if (channel && !route_found(&rs)) {
		/* Nobody to deliver to is not an error: the original's answer. */
		sink_answer(sk, 200, em->qos ? json_pack("{s:i, s:i, s:s}", "status", 0,
							 "connections", 0, "data", "")
					     : json_pack("{s:i}", "status", 0));
	} else if (!em->qos) {
		send_qos0(c, sk, &rs, em);
	} else {
		send_qos12(c, sk, &rs, em);
	}
	route_set_free(&rs);
}

/* What the edge can deliver, copies per second: the best rate seen over
 * 100 ms samples taken on each push, decaying slowly (5% a sample) so it
 * follows a machine that became slower. Not the plain average: while
 * publishers wait the edge idles, and an average would then tell them to
 * wait longer still. 0 until known. Core thread only. */
static double drain_rate(struct core *c)
{
	static double t0, rate;
	static uint64_t n0;
	double now = mono_now();
	uint64_t n = edge_pool_settled(c->edges);

	if (t0 > 0 && now - t0 < 0.1)
		return rate;
	if (t0 > 0 && now - t0 < 2)
		rate = fmax((double)(n - n0) / (now - t0), 0.95 * rate);
	t0 = now; /* a longer quiet gap is not a rate: start again */
	n0 = n;
	return rate;
}

/*
 * Back-pressure (docs/rest-api.md): while more than push_backlog copies of
 * earlier pushes wait to be written (in the seam or in the connections'
 * send queues), a push is refused at once with "busy" and retry_after
 * (HTTP 503 with Retry-After under rest_status_codes = strict, 200 with
 * status 1 in compat mode) instead of queueing seconds of backlog in
 * memory. retry_after is the time the edge needs, at its current rate, to
 * bring the backlog down to half the bound (10 ms to 1 s, in ms steps). A
 * push is judged by what waits before it, so one larger than the bound
 * still goes when the queue is short. True if req was answered.
 */
static bool busy(struct core *c, struct httpd_req *req)
{
	static struct log_limit lim; /* core thread only */
	static bool lim_ready;
	size_t backlog = edge_pool_backlog(c->edges), bound = (size_t)c->conf->push_backlog;
	double rate = drain_rate(c);
	if (!bound || backlog <= bound)
		return false;
	if (!lim_ready) {
		log_limit_init(&lim, 1, 1000);
		lim_ready = true;
	}
	double wait = rate > 0 ? (double)(backlog - bound / 2) / rate : 1;
	wait = ceil(fmin(fmax(wait, 0.01), 1) * 1000) / 1000;
	metric_inc(M_PUSHES_BUSY);
	log_limited(&lim, LOG_INFO, "rest: push refused: busy (%zu copies waiting to be "
		    "written, push_backlog %zu, %.0f copies/s: retry after %.3f s)",
		    backlog, bound, rate, wait);
	json_t *j = json_pack("{s:i, s:s, s:f}", "status", 1, "msg", "busy", "retry_after", wait);
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(4)) : NULL;
	metric_inc(M_REST_ERRORS);
	if (s && strict_codes(c))
		httpd_reply_with(req, 503, "Retry-After: 1\r\n", NULL, s, strlen(s));
	else if (s)
		httpd_reply(req, 200, NULL, s, strlen(s));
	else
		httpd_reply_error(req, 503, "busy");
	free(s);
	json_decref(j);
	return true;
}

static void rest_send(struct core *c, struct httpd_req *req)
{
	const char *channel = kv_get(&req->args, "channel");
	const char *identity = kv_get(&req->args, "identity");
	const char *device = kv_get(&req->args, "device");
	const char *v;
	uint64_t qos = 2, msgtype = 1;
	double timeout = 10;

	if (strcmp(req->head.method, "GET") == 0) {
		/* The original answered a signed GET /send/ with "ok". */
		httpd_reply(req, 200, "text/plain", "ok", 2);
		return;
	}
	if (busy(c, req))
		return;
	/* The original's defaults: msgtype 1, qos 2, timeout 10. */
	if ((v = kv_get(&req->args, "qos")) && rb_parse_decs(v, 2, &qos) != RB_OK) {
		refuse(req, 400, "qos level error");
		return;
	}
	if ((v = kv_get(&req->args, "msgtype")) && rb_parse_decs(v, 65535, &msgtype) != RB_OK) {
		params_error(req, "msgtype must be an integer in 0..65535");
		return;
	}
	if ((v = kv_get(&req->args, "timeout")) && !parse_timeout(v, &timeout)) {
		params_error(req, "timeout must be a number of seconds");
		return;
	}
	if (channel && !*channel)
		channel = NULL; /* the original took "" as missing too */
	if (!channel && !identity && !device) {
		refuse(req, 400, "channel miss");
		return;
	}
	if ((channel != NULL) + (identity != NULL) + (device != NULL) != 1) {
		params_error(req, "give exactly one of channel, identity, device");
		return;
	}
	struct engine_push em = { .channel = channel, .identity = identity, .device = device,
				  .qos = (uint8_t)qos, .msgtype = (uint16_t)msgtype,
				  .payload = req->body, .len = req->body_len, .timeout = timeout };
	struct sink sk = { c, req, NULL, 0 };
	push_one(c, &sk, &em);
}

/* ---- /batch/: several pushes in one call ---- */

#define BATCH_MAX 1000

/* One message of a batch into *em (strings borrowed from m; *payload
 * malloc'd when decoded from base64). NULL, or what is wrong with it. */
static const char *batch_message(json_t *m, struct engine_push *em, void **payload)
{
	const char *keys[] = { "channel", "identity", "device" };
	const char **dst[] = { &em->channel, &em->identity, &em->device };
	size_t targets = 0;
	json_t *v;

	*em = (struct engine_push){ .qos = 2, .msgtype = 1, .timeout = 10 };
	*payload = NULL;
	if (!json_is_object(m))
		return "each message must be a JSON object";
	for (size_t i = 0; i < 3; i++) {
		v = json_object_get(m, keys[i]);
		if (v && (!json_is_string(v) || !json_string_length(v)))
			return "channel, identity and device must be non-empty strings";
		if (v) {
			*dst[i] = json_string_value(v);
			targets++;
		}
	}
	if (targets != 1)
		return "give exactly one of channel, identity, device";
	if ((v = json_object_get(m, "qos"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 2)
			return "qos must be 0, 1 or 2";
		em->qos = (uint8_t)json_integer_value(v);
	}
	if ((v = json_object_get(m, "msgtype"))) {
		if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > 65535)
			return "msgtype must be an integer in 0..65535";
		em->msgtype = (uint16_t)json_integer_value(v);
	}
	if ((v = json_object_get(m, "timeout"))) {
		if (!json_is_number(v))
			return "timeout must be a number of seconds";
		double t = json_number_value(v);
		em->timeout = !(t > 0) ? 10 : t > 3600 ? 3600 : t;
	}
	json_t *d = json_object_get(m, "data"), *d64 = json_object_get(m, "data_base64");
	if (d && d64)
		return "give data or data_base64, not both";
	if (d && !json_is_string(d))
		return "data must be a string (the payload as it is sent)";
	if (d) {
		em->payload = json_string_value(d);
		em->len = json_string_length(d);
	} else if (d64) {
		size_t n = json_is_string(d64) ? json_string_length(d64) : 1;
		unsigned char *out = n % 4 == 0 ? malloc(n / 4 * 3 + 1) : NULL;
		int k = out ? EVP_DecodeBlock(out, (const unsigned char *)json_string_value(d64),
					      (int)n) : -1;
		if (k < 0) {
			free(out);
			return "data_base64 must be standard base64";
		}
		const char *e = json_string_value(d64) + n;
		for (int pad = 0; pad < 2 && n && e[-1 - pad] == '='; pad++)
			k--; /* EVP_DecodeBlock counts the padding */
		em->payload = out;
		em->len = (size_t)k;
		*payload = out;
	}
	return NULL;
}

static void rest_batch(struct core *c, struct httpd_req *req)
{
	json_error_t err;
	json_t *j = json_loadb(req->body, req->body_len, 0, &err);
	json_t *msgs = json_is_object(j) ? json_object_get(j, "messages") : j;

	if (busy(c, req)) {
		json_decref(j);
		return;
	}
	if (!json_is_array(msgs) || !json_array_size(msgs) || json_array_size(msgs) > BATCH_MAX) {
		json_decref(j);
		params_error(req, "body must be {\"messages\": [...]} with 1 to 1000 messages");
		return;
	}
	size_t n = json_array_size(msgs);
	struct batch *b = calloc(1, sizeof(*b));
	if (!b || !(b->results = json_array())) {
		free(b);
		json_decref(j);
		fail(req, 503, "out of memory");
		return;
	}
	*b = (struct batch){ c, req, n, n, b->results };
	for (size_t i = 0; i < n; i++)
		json_array_append_new(b->results, json_null());
	/* One more for the loop itself: no answer before every message went. */
	b->waiting++;
	for (size_t i = 0; i < n; i++) {
		struct engine_push em;
		void *owned;
		const char *bad = batch_message(json_array_get(msgs, i), &em, &owned);
		struct sink sk = { c, req, b, i };
		if (bad) {
			metric_inc(M_REST_ERRORS);
			batch_put(b, i, json_pack("{s:i, s:s, s:s}", "status", 1, "msg",
						  "params error", "detail", bad));
		} else {
			push_one(c, &sk, &em);
		}
		free(owned);
	}
	json_decref(j);
	/* The loop's own count; the last answer replies. */
	if (--b->waiting == 0) {
		reply_json(req, 200, json_pack("{s:i, s:o}", "status", 0, "results", b->results));
		free(b);
	}
}

/* Parses the JSON object body of /sub/, /unsub/, /kick/; answers the error
 * itself and returns NULL on failure. */
static json_t *json_body(struct httpd_req *req)
{
	json_error_t err;
	json_t *j = json_loadb(req->body, req->body_len, 0, &err);
	if (!j || !json_is_object(j)) {
		json_decref(j);
		params_error(req, "body must be a JSON object");
		return NULL;
	}
	return j;
}

static const char *json_str(json_t *j, const char *key)
{
	json_t *v = json_object_get(j, key);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

static void reply_ok(struct httpd_req *req)
{
	core_reply(req_core(req), req, 200, NULL, "{\"status\":0}", 12);
}

/* The identity a call acts on: a connection here, or the node that holds
 * it (the cluster), or neither (answered already). */
struct subject {
	struct conn *cn;
	uint32_t node;
	const char *identity;
};

/* Finds the body's identity; answers the error itself and returns false
 * when there is none. unsub: an unknown identity is not an error in compat
 * mode (the original answered {"status":0}). */
static bool body_subject(struct core *c, struct httpd_req *req, json_t *j, bool unsub,
			 struct subject *out)
{
	const char *identity = json_str(j, "identity");
	if (!identity) {
		params_error(req, "identity (string) is required");
		return false;
	}
	struct target t = { TARGET_IDENTITY, identity };
	struct route_set rs;
	*out = (struct subject){ .identity = identity };
	if (route_resolve(c, &t, false, &rs) == RB_OK) {
		if (rs.n_conns)
			out->cn = core_conn(c, rs.conns[0]);
		else if (rs.n_nodes)
			out->node = rs.nodes[0];
	}
	route_set_free(&rs);
	if (!conn_reachable(out->cn))
		out->cn = NULL;
	if (out->cn || out->node)
		return true;
	if (unsub && !strict_codes(c))
		reply_ok(req);
	else
		refuse(req, 404, "no such connection");
	return false;
}

/* A call carried out by another node: its answer is the REST answer. */
struct remote_call {
	struct httpd_req *req;
	bool unsub;
};

static void on_remote_done(int rc, void *arg)
{
	struct remote_call *rc_ = arg;
	struct httpd_req *req = rc_->req;
	if (rc == RB_OK)
		reply_ok(req);
	else if (rc == RB_ENOTFOUND && rc_->unsub && !strict_codes(req_core(req)))
		reply_ok(req);
	else if (rc == RB_ENOTFOUND)
		refuse(req, 404, "no such connection");
	else
		refuse(req, 503, rc == RB_ETIMEDOUT ? "cluster node did not answer in time"
						    : "cluster node unreachable");
	free(rc_);
}

/* Run op on node (0: every other node) and answer req with the outcome. */
static void remote_call(struct core *c, struct httpd_req *req, uint32_t node,
			const struct engine_op *op, bool unsub)
{
	struct remote_call *rc_ = malloc(sizeof(*rc_));
	if (!rc_) {
		fail(req, 503, "out of memory");
		return;
	}
	*rc_ = (struct remote_call){ req, unsub };
	int rc = c->engine->ops->remote(c->engine, node, op, on_remote_done, rc_);
	if (rc != RB_OK) {
		free(rc_);
		if (rc == RB_ENOTFOUND && unsub && !strict_codes(c))
			reply_ok(req);
		else if (rc == RB_ENOTFOUND)
			refuse(req, 404, "no such connection");
		else
			refuse(req, 503, "cluster node unreachable");
	}
}

/* Occupy: channel becomes the subject's alone, here and (through the
 * engine) on every other node; the subject joins where it lives. */
static void occupy(struct core *c, struct httpd_req *req, const struct subject *sb,
		   const char *channel)
{
	struct target t = { TARGET_CHANNEL, channel };
	struct route_set rs;
	if (route_resolve(c, &t, false, &rs) == RB_OK) {
		for (size_t i = 0; i < rs.n_conns; i++) {
			struct conn *other = core_conn(c, rs.conns[i]);
			if (other && other != sb->cn)
				conn_unsub(c, other, channel);
		}
		route_set_free(&rs);
	}
	/* Offline sessions are members too: they leave as well. */
	core_batch(c);
	db_sub_evict(c->db, channel, sb->cn && sb->cn->session ? sb->cn->device_id : NULL);
	struct engine_op op = { .kind = ENGINE_OCCUPY, .identity = sb->identity,
				.channel = channel };
	if (sb->cn) {
		/* Members elsewhere leave; nothing to wait for. */
		c->engine->ops->remote(c->engine, 0, &op, NULL, NULL);
		conn_sub(c, sb->cn, channel);
		reply_ok(req);
	} else {
		/* Every other node evicts; the holder also subscribes it. */
		remote_call(c, req, 0, &op, false);
	}
}

static void rest_sub(struct core *c, struct httpd_req *req, bool sub)
{
	json_t *j;
	struct subject sb;
	const char *channel;

	if (!(j = json_body(req)))
		return;
	json_t *occ = json_object_get(j, "occupy");
	if (!(channel = json_str(j, "channel")) || !*channel) {
		params_error(req, "channel (non-empty string) is required");
	} else if (sub && occ && !json_is_boolean(occ)) {
		params_error(req, "occupy must be a boolean");
	} else if (body_subject(c, req, j, !sub, &sb)) {
		if (sub && json_is_true(occ)) {
			occupy(c, req, &sb, channel);
		} else if (sb.cn) {
			if (sub)
				conn_sub(c, sb.cn, channel);
			else
				conn_unsub(c, sb.cn, channel);
			reply_ok(req);
		} else {
			struct engine_op op = { .kind = sub ? ENGINE_SUB : ENGINE_UNSUB,
						.identity = sb.identity, .channel = channel };
			remote_call(c, req, sb.node, &op, !sub);
		}
	}
	json_decref(j);
}

static void rest_kick(struct core *c, struct httpd_req *req)
{
	json_t *j;
	struct subject sb;

	if (!(j = json_body(req)))
		return;
	json_t *code = json_object_get(j, "code"), *reason = json_object_get(j, "reason");
	json_int_t cv = code ? (json_is_integer(code) ? json_integer_value(code) : -1) : 4000;
	const char *why = reason && json_is_string(reason) ? json_string_value(reason) : "kicked";
	if (cv != 1000 && (cv < 3000 || cv > 4999)) {
		params_error(req, "code must be 1000 or 3000..4999");
	} else if (reason && (!json_is_string(reason) || json_string_length(reason) > 120)) {
		params_error(req, "reason must be a string of at most 120 bytes");
	} else if (body_subject(c, req, j, false, &sb)) {
		if (sb.cn) {
			metric_inc(M_CONN_KICKED);
			log_info("conn %s: kicked (%d)", sb.cn->identity, (int)cv);
			core_close_conn(c, sb.cn->id, (uint16_t)cv, why);
			reply_ok(req);
		} else {
			struct engine_op op = { .kind = ENGINE_KICK, .identity = sb.identity,
						.code = (int)cv, .reason = why };
			remote_call(c, req, sb.node, &op, false);
		}
	}
	json_decref(j);
}

static void add_presence(struct core *c, json_t *arr, const char *channel)
{
	struct target t = { TARGET_CHANNEL, channel };
	struct route_set rs;
	if (route_resolve(c, &t, false, &rs) != RB_OK)
		return;
	for (size_t i = 0; i < rs.n_conns; i++) {
		struct conn *cn = core_conn(c, rs.conns[i]);
		if (cn)
			json_array_append_new(arr, json_pack("{s:s, s:s?, s:s?}", "identity",
							     cn->identity, "device", cn->device_id,
							     "platform", cn->platform));
	}
	route_set_free(&rs);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static void add_channel(const char *name, size_t members, void *arg)
{
	json_array_append_new(arg, json_pack("[s, I]", name, (json_int_t)members));
}

/* Up to cap - 1 bytes of a small /proc file, NUL-terminated; false if
 * unreadable. */
static bool read_small(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	size_t n = fread(buf, 1, cap - 1, f);
	fclose(f);
	buf[n] = 0;
	return n > 0;
}

/*
 * The process fields of the original's /serverinfo/, which ran ps: user
 * name, pid, %CPU (CPU time over time since the process started, as ps
 * computes it) and %MEM (resident set over physical memory), as strings
 * with one decimal. From /proc and sysconf, no subprocess.
 */
static void process_info(json_t *proc)
{
	char buf[4096], user[64], num[32];
	struct passwd pw, *res = NULL;
	char pwbuf[1024];
	double cpu = 0, mem = 0;

	if (getpwuid_r(geteuid(), &pw, pwbuf, sizeof(pwbuf), &res) == 0 && res)
		snprintf(user, sizeof(user), "%s", pw.pw_name);
	else
		snprintf(user, sizeof(user), "%u", (unsigned)geteuid());
	json_object_set_new(proc, "user", json_string(user));
	snprintf(num, sizeof(num), "%d", (int)getpid());
	json_object_set_new(proc, "pid", json_string(num));

	/* /proc/self/stat: fields after "(comm)"; utime, stime and starttime
	 * are fields 14, 15 and 22, in clock ticks. */
	long hz = sysconf(_SC_CLK_TCK);
	char *p = read_small("/proc/self/stat", buf, sizeof(buf)) ? strrchr(buf, ')') : NULL;
	double up = 0;
	char upbuf[64];
	if (p && hz > 0 && read_small("/proc/uptime", upbuf, sizeof(upbuf)) &&
	    sscanf(upbuf, "%lf", &up) == 1) {
		unsigned long long f[20] = { 0 };
		int k = 0;
		char *save = NULL;
		for (char *t = strtok_r(p + 1, " ", &save); t && k < 20;
		     t = strtok_r(NULL, " ", &save))
			f[k++] = strtoull(t, NULL, 10);
		if (k == 20) {
			double used = (double)(f[11] + f[12]) / (double)hz;
			double alive = up - (double)f[19] / (double)hz;
			if (alive > 0)
				cpu = used / alive * 100;
		}
	}
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	p = read_small("/proc/self/status", buf, sizeof(buf)) ? strstr(buf, "VmRSS:") : NULL;
	unsigned long long rss_kb;
	if (p && pages > 0 && psize > 0 && sscanf(p + 6, "%llu", &rss_kb) == 1)
		mem = (double)rss_kb * 1024.0 / ((double)pages * (double)psize) * 100;
	snprintf(num, sizeof(num), "%.1f", isfinite(cpu) ? cpu : 0.0);
	json_object_set_new(proc, "cpu", json_string(num));
	snprintf(num, sizeof(num), "%.1f", isfinite(mem) ? mem : 0.0);
	json_object_set_new(proc, "mem", json_string(num));
}

/*
 * "ip:port" of this node, as the original's "server": the bind address if
 * it names one, else the first non-loopback IPv4 address of an interface
 * that is up, else 127.0.0.1.
 */
static void server_addr(struct core *c, char *out, size_t cap)
{
	const char *bind = c->conf->bind;
	struct in_addr a4;
	struct in6_addr a6;
	char ip[INET6_ADDRSTRLEN] = "127.0.0.1";

	if (bind && inet_pton(AF_INET, bind, &a4) == 1 && a4.s_addr != htonl(INADDR_ANY)) {
		snprintf(out, cap, "%s:%d", bind, c->port);
		return;
	}
	if (bind && inet_pton(AF_INET6, bind, &a6) == 1 &&
	    memcmp(&a6, &in6addr_any, sizeof(a6)) != 0) {
		snprintf(out, cap, "[%s]:%d", bind, c->port);
		return;
	}
	struct ifaddrs *ifs = NULL;
	if (getifaddrs(&ifs) == 0) {
		for (struct ifaddrs *i = ifs; i; i = i->ifa_next) {
			if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
			    !(i->ifa_flags & IFF_UP) || (i->ifa_flags & IFF_LOOPBACK))
				continue;
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr,
				  ip, sizeof(ip));
			break;
		}
		freeifaddrs(ifs);
	}
	snprintf(out, cap, "%s:%d", ip, c->port);
}

/* HTTP basic auth with admin_password, any user name. */
static bool password_ok(struct core *c, struct httpd_req *req)
{
	const char *h = kv_get(&req->head.headers, "Authorization");
	const char *pw = c->conf->admin_password;
	unsigned char dec[768];
	bool ok = false;

	if (h && strncasecmp(h, "Basic ", 6) == 0) {
		const char *b64 = h + 6;
		while (*b64 == ' ')
			b64++;
		size_t bl = strlen(b64);
		while (bl && b64[bl - 1] == ' ')
			bl--;
		if (bl && bl % 4 == 0 && bl / 4 * 3 < sizeof(dec)) {
			int n = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)bl);
			/* DecodeBlock counts the padding as zero bytes. */
			for (size_t k = bl; n > 0 && k > bl - 2 && b64[k - 1] == '='; k--)
				n--;
			unsigned char *colon = n > 0 ? memchr(dec, ':', (size_t)n) : NULL;
			if (colon) {
				size_t off = (size_t)(colon + 1 - dec);
				ok = sign_secret_equal(dec + off, (size_t)n - off, pw, strlen(pw));
			}
		}
	}
	if (ok)
		return true;
	metric_inc(M_REST_ERRORS);
	log_info("rest: %s %s from %s: %s password", req->head.method, req->head.path, req->peer,
		 h ? "wrong" : "no");
	/* httpd_reply writes the content type as given: the second header
	 * rides on it (httpd.h has no other way to add one). */
	static const char body[] = "{\"status\":1,\"msg\":\"authentication required\"}";
	httpd_reply(req, 401, "application/json\r\nWWW-Authenticate: Basic realm=\"rainbow\"",
		    body, sizeof(body) - 1);
	return false;
}

/* serverinfo_auth: none (as the original), signature, or password. */
static bool serverinfo_allowed(struct core *c, struct httpd_req *req)
{
	const char *mode = c->conf->serverinfo_auth;
	if (strcmp(mode, "signature") == 0)
		return signed_ok(c, req);
	if (strcmp(mode, "password") == 0)
		return password_ok(c, req);
	return true;
}

/* The other nodes the engine knows (the cluster is on), for ?cluster=1. */
static json_t *cluster_peers(struct core *c)
{
	struct engine *e = c->engine;
	size_t n = e->ops->nodes(e, NULL, 0);
	struct engine_node *v = n ? calloc(n, sizeof(*v)) : NULL;
	json_t *peers = json_array();

	if (v && peers) {
		n = e->ops->nodes(e, v, n);
		for (size_t i = 1; i < n; i++) /* [0] is this node */
			json_array_append_new(peers, json_pack("{s:I, s:s, s:I, s:I, s:s}",
				"node", (json_int_t)v[i].id, "addr", v[i].addr,
				"incarnation", (json_int_t)v[i].incarnation,
				"age_ms", (json_int_t)v[i].age_ms,
				"link", v[i].state ? v[i].state : "down"));
	}
	free(v);
	return peers;
}

/* This node's /serverinfo/?cluster=1 object, without "peers". */
static json_t *node_info(struct core *c)
{
	char server[INET6_ADDRSTRLEN + 16];
	server_addr(c, server, sizeof(server));
	json_t *chans = json_array();
	channels_foreach(c->channels, add_channel, chans);
	json_t *proc = json_pack("{s:I, s:I, s:I}",
		"uptime", (json_int_t)(time(NULL) - c->started),
		"connections", (json_int_t)c->n_open,
		"forwards_in_flight", (json_int_t)c->fwd_inflight);
	if (proc)
		process_info(proc);
	/* The original's keys, exactly (backends read them). */
	return json_pack("{s:s, s:I, s:o, s:i, s:o}",
		"server", server,
		"channels_cnt", (json_int_t)channels_count(c->channels),
		"channels", chans,
		"status", 0,
		"process", proc);
}

char *rest_node_info(struct core *c)
{
	json_t *j = node_info(c);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	return s;
}

/*
 * Whole-cluster answers (HTML /serverinfo/, /channels/): this node's info,
 * then each other node's as it arrives (engine gather), then the answer.
 */
struct gather_call {
	struct core *c;
	struct httpd_req *req;
	json_t *nodes;   /* node info objects, this node first */
	void (*answer)(struct gather_call *g);
};

static void on_node_info(void *arg, uint32_t node, const char *json, size_t len)
{
	struct gather_call *g = arg;
	if (node) {
		json_t *j = json_loadb(json, len, 0, NULL);
		if (j && json_is_object(j))
			json_array_append_new(g->nodes, j);
		else
			json_decref(j);
		return;
	}
	g->answer(g);
	json_decref(g->nodes);
	free(g);
}

static void gather_all(struct core *c, struct httpd_req *req, void (*answer)(struct gather_call *))
{
	struct gather_call *g = malloc(sizeof(*g));
	json_t *me = node_info(c);
	if (!g || !me || !(g->nodes = json_array())) {
		free(g);
		json_decref(me);
		fail(req, 500, "out of memory");
		return;
	}
	*g = (struct gather_call){ c, req, g->nodes, answer };
	json_array_append_new(g->nodes, me);
	if (c->engine->ops->gather(c->engine, on_node_info, g) != RB_OK)
		on_node_info(g, 0, NULL, 0); /* a single node */
}

/* The HTML page of the original: one table per node. */
static void serverinfo_html(struct gather_call *g)
{
	struct evbuffer *html = evbuffer_new();
	size_t i, k;
	json_t *n, *row;
	bool ok = html && evbuffer_add_printf(html,
		"<!doctype html><html><head><meta charset=\"utf-8\"><title>Rainbow</title>"
		"</head><body>") >= 0;
	json_array_foreach(g->nodes, i, n) {
		const char *server = json_string_value(json_object_get(n, "server"));
		json_t *proc = json_object_get(n, "process"), *chans = json_object_get(n, "channels");
		char *esc = ok ? evhttp_htmlescape(server ? server : "?") : NULL;
		ok = esc && evbuffer_add_printf(html,
			"<h1>%s</h1><p>%lld connections, %lld channels</p>"
			"<table><tr><th>channel</th><th>connections</th></tr>", esc,
			(long long)json_integer_value(json_object_get(proc, "connections")),
			(long long)json_integer_value(json_object_get(n, "channels_cnt"))) >= 0;
		free(esc);
		json_array_foreach(chans, k, row) {
			const char *ch = json_string_value(json_array_get(row, 0));
			esc = ok ? evhttp_htmlescape(ch ? ch : "") : NULL;
			ok = esc && evbuffer_add_printf(html, "<tr><td>%s</td><td>%lld</td></tr>", esc,
				(long long)json_integer_value(json_array_get(row, 1))) >= 0;
			free(esc);
		}
		ok = ok && evbuffer_add_printf(html, "</table>") >= 0;
	}
	ok = ok && evbuffer_add_printf(html, "</body></html>") >= 0;
	reply_buffer(g->req, ok, "text/html; charset=utf-8", html);
}

static void serverinfo(struct core *c, struct httpd_req *req)
{
	if (!serverinfo_allowed(c, req))
		return;
	const char *cluster = kv_get(&req->args, "cluster");
	if (cluster && strcmp(cluster, "1") == 0) {
		json_t *info = node_info(c);
		if (info && strcmp(c->engine->ops->name, "local") != 0)
			json_object_set_new(info, "peers", cluster_peers(c));
		reply_json(req, 200, info);
		return;
	}
	gather_all(c, req, serverinfo_html);
}

/* Peers and per-peer link counters (docs/cluster.md). */
static bool cluster_metrics(struct core *c, struct evbuffer *out)
{
	struct engine *e = c->engine;
	size_t n = e->ops->nodes(e, NULL, 0);
	struct engine_node *v = calloc(n, sizeof(*v));
	if (!v)
		return false;
	n = e->ops->nodes(e, v, n);
	bool ok = evbuffer_add_printf(out,
		"# HELP rainbow_cluster_peers Other cluster nodes known now\n"
		"# TYPE rainbow_cluster_peers gauge\n"
		"rainbow_cluster_peers %zu\n", n - 1) >= 0;
	static const struct {
		const char *name, *type, *help;
	} fam[] = {
		{ "rainbow_cluster_link_up", "gauge", "1 while the link to the peer is up" },
		{ "rainbow_cluster_link_frames_total", "counter", "Frames on the link to the peer" },
		{ "rainbow_cluster_link_bytes_total", "counter", "Bytes on the link to the peer" },
		{ "rainbow_cluster_link_output_bytes", "gauge", "Bytes queued on the link, unsent" },
	};
	for (size_t f = 0; ok && f < RB_ARRAY_LEN(fam); f++) {
		ok = evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name,
					 fam[f].help, fam[f].name, fam[f].type) >= 0;
		for (size_t i = 1; ok && i < n; i++) {
			const struct engine_node *p = &v[i];
			char lbl[128];
			snprintf(lbl, sizeof(lbl), "node=\"%08x\",addr=\"%s\"", p->id, p->addr);
			/* frames and bytes come in and out */
			uint64_t in = f == 1 ? p->frames_in : p->bytes_in;
			uint64_t outv = f == 1 ? p->frames_out : p->bytes_out;
			if (f == 0)
				ok = evbuffer_add_printf(out, "%s{%s} %d\n", fam[f].name, lbl,
							 p->up ? 1 : 0) >= 0;
			else if (f == 3)
				ok = evbuffer_add_printf(out, "%s{%s} %zu\n", fam[f].name, lbl,
							 p->output_bytes) >= 0;
			else
				ok = evbuffer_add_printf(out, "%s{%s,dir=\"in\"} %llu\n"
							      "%s{%s,dir=\"out\"} %llu\n",
					fam[f].name, lbl, (unsigned long long)in,
					fam[f].name, lbl, (unsigned long long)outv) >= 0;
		}
	}
	free(v);
	return ok;
}

static void metrics_text(struct core *c, struct httpd_req *req)
{
	size_t depth = 0, i = 0;
	uint64_t id;
	void *val;
	while (idmap_next(&c->conns, &i, &id, &val))
		depth += (size_t)((struct conn *)val)->fq_len;
	char *routes = guard_metrics(c->guard); /* per message type */
	struct metric_gauges g = {
		.connections = c->n_open,
		.channels = channels_count(c->channels),
		.forwards_in_flight = c->fwd_inflight,
		.forward_queue_depth = depth,
		.deliveries_in_flight = deliver_in_flight(c),
		.pushes_waiting = deliver_pushes_waiting(c),
		.backend_pending = backend_pending(c->backend) + backend_pending(c->hook_backend),
		.extra = routes,
	};
	struct evbuffer *out = evbuffer_new();
	bool ok = out && metrics_render(&g, out) == RB_OK;
	/* The queues between the threads and the outputs held for a COMMIT. */
	ok = ok && evbuffer_add_printf(out,
		"# HELP rainbow_seam_queue_depth Messages queued between the edge and core threads, not yet drained\n"
		"# TYPE rainbow_seam_queue_depth gauge\n"
		"rainbow_seam_queue_depth{queue=\"edge_to_core\"} %zu\n"
		"rainbow_seam_queue_depth{queue=\"core_to_edge\"} %zu\n"
		"# HELP rainbow_seam_queue_depth_max Deepest each seam queue has been since start (core_to_edge: the sum of each edge thread's mark)\n"
		"# TYPE rainbow_seam_queue_depth_max gauge\n"
		"rainbow_seam_queue_depth_max{queue=\"edge_to_core\"} %zu\n"
		"rainbow_seam_queue_depth_max{queue=\"core_to_edge\"} %zu\n"
		"# HELP rainbow_push_backlog Copies of pushes accepted and not yet written to their sockets (bounded by push_backlog)\n"
		"# TYPE rainbow_push_backlog gauge\n"
		"rainbow_push_backlog %zu\n"
		"# HELP rainbow_commit_held Outputs held until the open batch commits\n"
		"# TYPE rainbow_commit_held gauge\n"
		"rainbow_commit_held %zu\n",
		xq_depth(c->inbox), edge_pool_depth(c->edges), xq_depth_max(c->inbox),
		edge_pool_depth_max(c->edges), edge_pool_backlog(c->edges), commit_held(c->commit)) >= 0;
	/* The cluster's membership and links, when it is on. */
	if (ok && strcmp(c->engine->ops->name, "local") != 0)
		ok = cluster_metrics(c, out);
	free(routes);
	reply_buffer(req, ok, "text/plain; version=0.0.4; charset=utf-8", out);
}

/* /channels/: every node's channels, members summed, in name order. */
static void channels_answer(struct gather_call *g)
{
	json_t *sum = json_object(), *arr = json_array(), *n, *row, *v;
	const char *name;
	size_t i, k;
	json_array_foreach(g->nodes, i, n) {
		json_array_foreach(json_object_get(n, "channels"), k, row) {
			const char *ch = json_string_value(json_array_get(row, 0));
			json_int_t m = json_integer_value(json_array_get(row, 1));
			if (ch && sum)
				json_object_set_new(sum, ch, json_integer(
					json_integer_value(json_object_get(sum, ch)) + m));
		}
	}
	/* jansson keeps insertion order; sort the names for a stable answer. */
	size_t cnt = sum ? json_object_size(sum) : 0, j = 0;
	const char **names = calloc(cnt ? cnt : 1, sizeof(*names));
	if (names)
		json_object_foreach(sum, name, v)
			names[j++] = name;
	if (names)
		qsort(names, j, sizeof(*names), cmp_str);
	for (size_t x = 0; names && x < j; x++)
		json_array_append_new(arr, json_pack("[s, I]", names[x],
			json_integer_value(json_object_get(sum, names[x]))));
	free(names);
	reply_json(g->req, 200, json_pack("{s:i, s:o}", "status", 0, "channels", arr));
	json_decref(sum);
}

struct pres_call {
	struct httpd_req *req;
	json_t *arr;
	char channel[];
};

/* One member on another node; NULL identity: all nodes answered. */
static void remote_member(void *arg, const char *identity, const char *device,
			  const char *platform)
{
	struct pres_call *pc = arg;
	if (identity) {
		json_array_append_new(pc->arr, json_pack("{s:s, s:s?, s:s?}", "identity", identity,
							 "device", device, "platform", platform));
		return;
	}
	reply_json(pc->req, 200, json_pack("{s:i, s:s, s:o}", "status", 0, "channel",
					   pc->channel, "connections", pc->arr));
	free(pc);
}

static void list_channels(struct core *c, struct httpd_req *req, bool presence)
{
	if (!presence) {
		gather_all(c, req, channels_answer);
		return;
	}
	json_t *arr = json_array();
	const char *ch = kv_get(&req->args, "channel");
	if (!ch) {
		json_decref(arr);
		params_error(req, "channel is required");
		return;
	}
	add_presence(c, arr, ch);
	struct pres_call *pc = malloc(sizeof(*pc) + strlen(ch) + 1);
	if (pc) {
		/* Members on other nodes: the answer waits for theirs. */
		pc->req = req;
		pc->arr = arr;
		strcpy(pc->channel, ch);
		if (c->engine->ops->presence(c->engine, ch, remote_member, pc) == RB_OK)
			return;
		free(pc);
	}
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
	const char *method2; /* a second one allowed, or NULL */
	bool is_signed;
	void (*fn)(struct core *c, struct httpd_req *req);
} routes[] = {
	{ "/hello", NULL, NULL, false, hello },
	{ "/healthz", NULL, NULL, false, healthz },
	{ "/metrics", NULL, NULL, false, metrics_text },
	{ "/connect", NULL, NULL, false, connect_path },
	/* serverinfo_auth decides, in the handler. */
	{ "/serverinfo", "GET", NULL, false, serverinfo },
	{ "/send", "POST", "GET", true, rest_send },
	{ "/batch", "POST", NULL, true, rest_batch },
	{ "/sub", "POST", NULL, true, do_sub },
	{ "/unsub", "POST", NULL, true, do_unsub },
	{ "/kick", "POST", NULL, true, rest_kick },
	{ "/channels", "GET", NULL, true, channels_list },
	{ "/presence", "GET", NULL, true, presence },
};

/* Wrong method: 405 in both modes (an HTTP matter; Tornado answered 405). */
static bool method_ok(struct httpd_req *req, const struct route *r)
{
	const char *m = req->head.method;
	if (!r->method || strcmp(m, r->method) == 0 || (r->method2 && strcmp(m, r->method2) == 0))
		return true;
	char msg[64];
	snprintf(msg, sizeof(msg), "method not allowed (use %s%s%s)", r->method,
		 r->method2 ? " or " : "", r->method2 ? r->method2 : "");
	fail(req, 405, msg);
	return false;
}

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
		if (!method_ok(req, r))
			return;
		if (r->is_signed && !signed_ok(c, req))
			return;
		r->fn(c, req);
		return;
	}
	fail(req, 404, "no such endpoint");
}
