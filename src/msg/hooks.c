#include "src/msg/hooks.h"
#include "src/msg/membership.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <event2/buffer.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "protocol/rb.h"
#include "protocol/sign.h"
#include "protocol/token.h"
#include "src/http/backend.h"
#include "src/msg/channels.h"
#include "src/base/conf.h"
#include "src/core/core.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/msg/session.h"

char *hooks_signed_url(const struct conf *conf, const char *url)
{
	char q[160];
	int n = sign_v1_query(conf->security_token, time(NULL), q, sizeof(q));
	if (n < 0)
		return NULL;
	size_t ul = strlen(url);
	char *out = malloc(ul + (size_t)n + 2);
	if (!out)
		return NULL;
	memcpy(out, url, ul);
	out[ul] = strchr(url, '?') ? '&' : '?';
	memcpy(out + ul + 1, q, (size_t)n + 1);
	return out;
}

/* Headers the original did not pass on: they describe the hop, not the
 * client. */
static bool hop_header(const char *name)
{
	static const char *const skip[] = { "Upgrade", "Connection", "Host", "Origin",
					    "Sec-WebSocket-Key", "Sec-WebSocket-Version",
					    "Content-Length", "Transfer-Encoding" };
	for (size_t i = 0; i < RB_ARRAY_LEN(skip); i++)
		if (strcasecmp(name, skip[i]) == 0)
			return true;
	return false;
}

/* A query argument becomes a header only if it can be one: a token name
 * and a value without control characters (no header injection). */
static bool header_safe(const char *name, const char *value)
{
	if (!http_is_token(name))
		return false;
	for (const char *p = value; *p; p++)
		if ((unsigned char)*p < ' ' && *p != '\t')
			return false;
	return true;
}

/* arg is the conn: safe, because freeing a conn cancels its hook first. */
static void on_connect_reply(const struct backend_response *resp, void *arg)
{
	struct conn *cn = arg;
	struct core *c = cn->core;

	cn->hook_req = NULL;
	if (resp->err != RB_OK) {
		log_info("conn %s: connect hook failed: %s", cn->identity, resp->errmsg);
		core_refuse(c, cn, 503, "connect hook failed");
		return;
	}
	if (resp->status < 200 || resp->status > 299) {
		log_info("conn %s: connect hook answered HTTP %d", cn->identity, resp->status);
		core_refuse(c, cn, 503, "connect hook failed");
		return;
	}
	size_t len = evbuffer_get_length(resp->body);
	const char *body = (const char *)evbuffer_pullup(resp->body, -1);
	json_error_t jerr;
	json_t *j = json_loadb(body ? body : "", len, JSON_DECODE_ANY, &jerr);
	if (!j) {
		log_info("conn %s: connect hook answered non-JSON: %s", cn->identity, jerr.text);
		core_refuse(c, cn, 503, "connect hook failed");
		return;
	}
	json_t *st = json_is_object(j) ? json_object_get(j, "status") : NULL;
	bool ok = st && json_is_string(st) && strcmp(json_string_value(st), "success") == 0;
	json_decref(j);
	if (!ok) {
		log_info("conn %s: connect hook refused", cn->identity);
		core_refuse(c, cn, 401, "connect refused");
		return;
	}
	hooks_apply_response(c, cn, resp);
	session_admit(c, cn);
}

/* The token of an upgrade: the token query argument (browsers cannot set
 * headers), else "Authorization: Bearer <token>". */
static const char *find_token(const struct kvlist *headers, const struct kvlist *args)
{
	const char *t = args ? kv_get(args, "token") : NULL;
	const char *a = headers ? kv_get(headers, "Authorization") : NULL;
	if (!t && a && strncasecmp(a, "Bearer ", 7) == 0)
		t = a + 7;
	return t;
}

/* The cookie of a token-admitted connection: base64 of {"sub":..,
 * "info":..}, as a connect hook would set it, so every forward and the
 * close hook carry who the client is. */
static char *token_cookie(const struct token_claims *tc)
{
	json_t *j = json_pack("{s:s}", "sub", tc->sub);
	json_t *info = tc->info ? json_loads(tc->info, JSON_DECODE_ANY, NULL) : NULL;
	if (j && info)
		json_object_set_new(j, "info", info);
	char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
	json_decref(j);
	char *b64 = s ? malloc(strlen(s) / 3 * 4 + 5) : NULL;
	if (b64)
		EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)s, (int)strlen(s));
	free(s);
	return b64;
}

/*
 * Connection tokens (docs/protocol.md): a token that verifies admits the
 * client with its claims (cookie, channels); one that does not is refused
 * with its reason. RB_OK to go on (*tc filled if there was a token),
 * RB_EREFUSED when cn was refused.
 */
static int check_token(struct core *c, struct conn *cn, const struct kvlist *headers,
		       const struct kvlist *args, struct token_claims *tc)
{
	const struct conf *conf = c->conf;
	const char *tok = *conf->token_secret ? find_token(headers, args) : NULL;
	const char *why = NULL;

	memset(tc, 0, sizeof(*tc));
	if (!*conf->token_secret)
		return RB_OK;
	if (!tok && !conf->token_required)
		return RB_OK;
	int rc = tok ? token_verify(tok, conf->token_secret, (int64_t)time(NULL),
				    conf->token_leeway, tc, &why)
		     : RB_EREFUSED;
	if (rc != RB_OK) {
		why = why ? why : "token required";
		metric_inc(M_TOKENS_REFUSED);
		log_info("conn %s: refused: %s", cn->identity, why);
		core_refuse(c, cn, rc == RB_ENOMEM ? 503 : 401, why);
		return RB_EREFUSED;
	}
	metric_inc(M_TOKENS_ACCEPTED);
	char *cookie = token_cookie(tc);
	if (cookie) {
		free(cn->cookie);
		cn->cookie = cookie;
	}
	for (size_t i = 0; i < tc->n_channels; i++)
		conn_sub(c, cn, tc->channels[i]);
	return RB_OK;
}

void hooks_connect(struct core *c, struct conn *cn, const struct kvlist *headers,
		   const struct kvlist *args)
{
	const struct conf *conf = c->conf;
	struct backend_header *h = NULL;
	size_t n = 0, cap = 4 + (headers ? headers->n : 0) + (args ? args->n : 0);
	char *url = NULL;
	int err = RB_OK;
	struct token_claims tc;
	char exp[24];

	if (check_token(c, cn, headers, args, &tc) != RB_OK)
		return;
	if (!*conf->connect_url) {
		/* A token, or nothing to ask: no backend round trip. */
		token_claims_free(&tc);
		session_admit(c, cn);
		return;
	}
	h = calloc(cap, sizeof(*h));
	url = hooks_signed_url(conf, conf->connect_url);
	if (!h || !url)
		goto fail;
	for (size_t i = 0; headers && i < headers->n; i++)
		if (!hop_header(headers->v[i].name) &&
		    !(tc.sub && strcasecmp(headers->v[i].name, "Authorization") == 0))
			h[n++] = (struct backend_header){ headers->v[i].name, headers->v[i].value };
	/* The original passed each upgrade query argument as a header (first
	 * value wins): browsers cannot set headers. */
	for (size_t i = 0; args && i < args->n; i++) {
		const char *name = args->v[i].name;
		bool seen = false;
		for (size_t k = 0; k < i && !seen; k++)
			seen = strcasecmp(args->v[k].name, name) == 0;
		/* A verified token is passed on as its claims, not as itself. */
		if (!seen && header_safe(name, args->v[i].value) &&
		    !(tc.sub && strcasecmp(name, "token") == 0))
			h[n++] = (struct backend_header){ name, args->v[i].value };
	}
	h[n++] = (struct backend_header){ "RAINBOWCLIENTIDENTITY", cn->identity };
	if (tc.sub) {
		snprintf(exp, sizeof(exp), "%lld", (long long)tc.exp);
		h[n++] = (struct backend_header){ "RAINBOWTOKENSUB", tc.sub };
		h[n++] = (struct backend_header){ "RAINBOWTOKENEXP", exp };
		if (tc.info && header_safe("RAINBOWTOKENINFO", tc.info))
			h[n++] = (struct backend_header){ "RAINBOWTOKENINFO", tc.info };
	}
	cn->hook_req = backend_request(c->hook_backend, "GET", url, h, n, NULL, 0,
				       on_connect_reply, cn, &err);
	token_claims_free(&tc);
	if (!cn->hook_req)
		goto fail;
	free(h);
	free(url);
	return;
fail:
	log_warn("conn %s: cannot send the connect hook: %s", cn->identity, rb_strerror(err));
	token_claims_free(&tc);
	free(h);
	free(url);
	core_refuse(c, cn, 503, "connect hook failed");
}

struct close_ctx {
	struct core *c;
	char identity[65];
};

static void on_close_reply(const struct backend_response *resp, void *arg)
{
	struct close_ctx *x = arg;
	if (resp->err != RB_OK)
		log_info("conn %s: close hook failed: %s", x->identity, resp->errmsg);
	else if (resp->status < 200 || resp->status > 299)
		log_info("conn %s: close hook answered HTTP %d", x->identity, resp->status);
	struct core *c = x->c;
	free(x);
	/* During shutdown the loop waits for the last outstanding hook. */
	core_maybe_stopped(c);
}

void hooks_close(struct core *c, struct conn *cn)
{
	struct backend_header h[2];
	size_t n = 0;
	int err = RB_OK;

	if (!*c->conf->close_url || !cn->admitted)
		return;
	char *url = hooks_signed_url(c->conf, c->conf->close_url);
	struct close_ctx *x = malloc(sizeof(*x));
	if (!url || !x) {
		free(url);
		free(x);
		return;
	}
	x->c = c;
	memcpy(x->identity, cn->identity, sizeof(x->identity));
	h[n++] = (struct backend_header){ "RAINBOWCLIENTIDENTITY", cn->identity };
	if (cn->cookie)
		h[n++] = (struct backend_header){ "RAINBOWCLIENTCOOKIE", cn->cookie };
	metric_inc(M_CLOSE_HOOKS);
	if (!backend_request(c->hook_backend, "GET", url, h, n, NULL, 0, on_close_reply, x, &err)) {
		log_warn("conn %s: cannot send the close hook: %s", cn->identity,
			 rb_strerror(err));
		free(x);
	}
	free(url);
}

/* Calls fn for each non-empty name in a ";;"-joined list. */
static void each_channel(struct core *c, struct conn *cn, const char *list,
			 bool (*fn)(struct core *, struct conn *, const char *))
{
	while (list && *list) {
		const char *sep = strstr(list, ";;");
		size_t len = sep ? (size_t)(sep - list) : strlen(list);
		if (len) {
			char *name = strndup(list, len);
			if (name)
				fn(c, cn, name);
			free(name);
		}
		list = sep ? sep + 2 : NULL;
	}
}

void hooks_apply_response(struct core *c, struct conn *cn,
			  const struct backend_response *resp)
{
	const char *v = backend_response_header(resp, "RAINBOWCLIENTCOOKIE");
	if (v) {
		char *dup = strdup(v);
		if (dup) {
			free(cn->cookie);
			cn->cookie = dup;
		}
	}
	each_channel(c, cn, backend_response_header(resp, "RAINBOWCLIENTCHANNEL"), conn_sub);
	each_channel(c, cn, backend_response_header(resp, "RAINBOWCLIENTCHANNELUNSUB"),
		     conn_unsub);
}
