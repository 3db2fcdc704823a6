/*
 * cli.c - rainbow-cli: a command line client of the Rainbow gateway on
 * librainbow (listen, send, swarm) and its REST API (push, sub, unsub,
 * kick, info). Usage: rainbow-cli --help, rainbow-cli COMMAND --help, and
 * clients/c/README.md. Single-threaded.
 *
 * Exit status: 0 success; 1 usage or local error, network failure of a
 * REST call; 2 the gateway said no (a NAK, a REST answer with status != 0
 * or an HTTP error); 3 timeout; 4 the connection was refused or closed for
 * good by the gateway (HTTP 401 at the upgrade, kicked, session taken over).
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "clients/c/rainbow.h"
#include "clients/c/rest.h"
#include "clients/c/url.h"

enum { EX_OK = 0, EX_ERR = 1, EX_REFUSED = 2, EX_TIMEOUT = 3, EX_CLOSED = 4 };

#define MAX_CHANNELS 64

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds (a decimal, e.g. 2.5) to milliseconds; -1 if not a number >= 0. */
static int parse_secs(const char *s)
{
	char *end;
	double d;

	errno = 0;
	d = strtod(s, &end);
	if (errno || end == s || *end || d < 0 || d > 86400 * 365)
		return -1;
	return (int)(d * 1000 + 0.5);
}

static long parse_int(const char *s, long lo, long hi, const char *what)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end || v < lo || v > hi) {
		fprintf(stderr, "rainbow-cli: %s must be an integer in %ld..%ld, not \"%s\"\n",
			what, lo, hi, s);
		exit(EX_ERR);
	}
	return v;
}

static int parse_secs_or_die(const char *s, const char *what)
{
	int ms = parse_secs(s);

	if (ms < 0) {
		fprintf(stderr, "rainbow-cli: %s must be a number of seconds, not \"%s\"\n", what, s);
		exit(EX_ERR);
	}
	return ms;
}

/* DATA: the argument itself, or "-" for standard input. */
static char *read_data(const char *arg, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *buf;

	if (strcmp(arg, "-")) {
		*len = strlen(arg);
		return strdup(arg);
	}
	buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, stdin);
		n += got;
		if (got == 0)
			break;
		if (n == cap) {
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (!buf) {
		fprintf(stderr, "rainbow-cli: out of memory reading standard input\n");
		exit(EX_ERR);
	}
	*len = n;
	return buf;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		size_t k;
		uint32_t cp;
		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			k = 1;
			cp = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			k = 2;
			cp = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			k = 3;
			cp = c & 0x07;
		} else {
			return false;
		}
		if (n - i <= k)
			return false;
		for (size_t j = 1; j <= k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 2 && cp < 0x800) || (k == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k + 1;
	}
	return true;
}

/* A payload on one line: UTF-8 as is, except backslash and control
 * characters (\\, \n, \r, \t, \xNN); bytes of invalid UTF-8 as \xNN. */
static void print_payload(FILE *f, const uint8_t *s, size_t n)
{
	bool utf8 = utf8_valid(s, n);

	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '\\')
			fputs("\\\\", f);
		else if (c == '\n')
			fputs("\\n", f);
		else if (c == '\r')
			fputs("\\r", f);
		else if (c == '\t')
			fputs("\\t", f);
		else if (c < 0x20 || c == 0x7f || (c >= 0x80 && !utf8))
			fprintf(f, "\\x%02x", c);
		else
			fputc(c, f);
	}
}

/* ------------------------------------------------------------ options */

struct common {
	const char *device, *platform, *client_token, *query;
	const char *token;      /* REST security token */
	const char *api;        /* REST base URL */
	const char *ca_file;    /* wss:// CA bundle */
	bool v1, session, insecure, verbose, no_reconnect;
	int reconnect_min_ms, reconnect_max_ms, heartbeat_s, heartbeat_timeout_s;
};

enum {
	O_DEVICE = 1000, O_PLATFORM, O_CLIENT_TOKEN, O_QUERY, O_TOKEN, O_API, O_V1, O_SESSION,
	O_INSECURE, O_NO_RECONNECT, O_RMIN, O_RMAX, O_HEARTBEAT, O_CHANNEL, O_COUNT,
	O_REPLY, O_DURATION, O_QOS, O_TIMEOUT, O_LINGER, O_MSGTYPE, O_TO, O_OCCUPY, O_CODE,
	O_REASON, O_PASSWORD, O_CONNS, O_PREFIX, O_HB_TIMEOUT, O_CA,
};

static const struct option conn_opts[] = {
	{ "device", required_argument, NULL, O_DEVICE },
	{ "platform", required_argument, NULL, O_PLATFORM },
	{ "client-token", required_argument, NULL, O_CLIENT_TOKEN },
	{ "query", required_argument, NULL, O_QUERY },
	{ "v1", no_argument, NULL, O_V1 },
	{ "session", no_argument, NULL, O_SESSION },
	{ "insecure", no_argument, NULL, O_INSECURE },
	{ "ca", required_argument, NULL, O_CA },
	{ "no-reconnect", no_argument, NULL, O_NO_RECONNECT },
	{ "reconnect-min", required_argument, NULL, O_RMIN },
	{ "reconnect-max", required_argument, NULL, O_RMAX },
	{ "heartbeat", required_argument, NULL, O_HEARTBEAT },
	{ "heartbeat-timeout", required_argument, NULL, O_HB_TIMEOUT },
};

/* Handle an option shared by the WebSocket commands; false if not one. */
static bool common_opt(struct common *o, int ch, const char *arg)
{
	switch (ch) {
	case O_DEVICE: o->device = arg; return true;
	case O_PLATFORM: o->platform = arg; return true;
	case O_CLIENT_TOKEN: o->client_token = arg; return true;
	case O_QUERY: o->query = arg; return true;
	case O_TOKEN: o->token = arg; return true;
	case O_API: o->api = arg; return true;
	case O_V1: o->v1 = true; return true;
	case O_SESSION: o->session = true; return true;
	case O_INSECURE: o->insecure = true; return true;
	case O_CA: o->ca_file = arg; return true;
	case O_NO_RECONNECT: o->no_reconnect = true; return true;
	case O_RMIN: o->reconnect_min_ms = (int)parse_int(arg, 1, 3600000, "--reconnect-min"); return true;
	case O_RMAX: o->reconnect_max_ms = (int)parse_int(arg, 1, 3600000, "--reconnect-max"); return true;
	case O_HEARTBEAT: o->heartbeat_s = (int)parse_int(arg, 0, 3600, "--heartbeat"); return true;
	case O_HB_TIMEOUT:
		o->heartbeat_timeout_s = (int)parse_int(arg, 1, 3600, "--heartbeat-timeout");
		return true;
	case 'v': o->verbose = true; return true;
	}
	return false;
}

/* Build a getopt_long table: the command's own options + extra ones. */
static struct option *options(const struct option *own, size_t nown, bool conn)
{
	static struct option table[64];
	static const struct option always[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "token", required_argument, NULL, O_TOKEN },
		{ "api", required_argument, NULL, O_API },
	};
	size_t n = 0;

	for (size_t i = 0; i < nown; i++)
		table[n++] = own[i];
	for (size_t i = 0; i < RB_ARRAY_LEN(always); i++)
		table[n++] = always[i];
	if (conn)
		for (size_t i = 0; i < RB_ARRAY_LEN(conn_opts); i++)
			table[n++] = conn_opts[i];
	memset(&table[n], 0, sizeof(table[n]));
	return table;
}

static void init_common(struct common *o)
{
	memset(o, 0, sizeof(*o));
	o->token = getenv("RAINBOW_TOKEN");
}

static void fill_conn_opts(const struct common *o, const char *url, struct rb_conn_opts *co)
{
	memset(co, 0, sizeof(*co));
	co->url = url;
	co->device = o->device;
	co->platform = o->platform;
	co->token = o->client_token;
	co->query = o->query;
	co->v1 = o->v1;
	co->session = o->session;
	co->insecure = o->insecure;
	co->no_reconnect = o->no_reconnect;
	co->reconnect_min_ms = o->reconnect_min_ms;
	co->reconnect_max_ms = o->reconnect_max_ms;
	co->heartbeat_s = o->heartbeat_s;
	co->heartbeat_timeout_s = o->heartbeat_timeout_s;
}

static struct rb_ctx *make_ctx(const struct common *o)
{
	struct rb_ctx_opts co = { 0 };
	struct rb_ctx *ctx;

	if (o->verbose)
		co.lws_log_level = LLL_ERR | LLL_WARN | LLL_NOTICE;
	co.ca_file = o->ca_file;
	ctx = rb_ctx_new(&co);
	if (!ctx) {
		fprintf(stderr, "rainbow-cli: cannot create the libwebsockets context\n");
		exit(EX_ERR);
	}
	return ctx;
}

/* The REST base URL: --api, or the WebSocket URL's host and port. */
static bool api_url(const struct common *o, const char *ws_url, char *out, size_t cap)
{
	struct rbc_url u;

	if (o->api) {
		snprintf(out, cap, "%s", o->api);
		return true;
	}
	if (rbc_url_parse(ws_url, &u) != RB_OK || u.tls)
		return false;
	if (strchr(u.host, ':'))
		snprintf(out, cap, "http://[%s]:%d", u.host, u.port);
	else
		snprintf(out, cap, "http://%s:%d", u.host, u.port);
	return true;
}

static void usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "rainbow-cli %s: %s (see rainbow-cli %s --help)\n", cmd, msg, cmd);
	exit(EX_ERR);
}

static const char conn_help[] =
	"connection options:\n"
	"  --device D           device id (X-DEVICEID); with rainbow.v2 it holds a session\n"
	"  --platform P         X-CLIENT-OS\n"
	"  --client-token T     query argument token=T for the backend's connect hook\n"
	"  --query Q            more query arguments, already encoded (a=1&b=2)\n"
	"  --v1                 speak the original protocol (no rainbow.v2: no HELLO, no NAK)\n"
	"  --session            with --v1 and --device: ask for a session (session=1)\n"
	"  --insecure           wss://: accept any certificate\n"
	"  --ca FILE            wss://: trust the CA certificates in FILE (PEM)\n"
	"  --no-reconnect       give up at the first lost connection\n"
	"  --reconnect-min MS   first reconnect delay (default 500; jittered, doubling)\n"
	"  --reconnect-max MS   longest reconnect delay (default 30000)\n"
	"  --heartbeat S        liveness interval when the gateway announces none (v1)\n"
	"  --heartbeat-timeout S  silence past the interval that counts as a dead\n"
	"                       connection (default 10): the client pings after one\n"
	"                       quiet interval and reconnects after this much more\n"
	"  -v, --verbose        connection events and libwebsockets notices on stderr\n";

/* ------------------------------------------------------------ listen */

struct listen_st {
	struct common *o;
	const char *api;
	const char *channels[MAX_CHANNELS];
	int nchannels;
	long count, seen;
	const char *reply;
	int exit_code;
	bool stop;
};

static void listen_subscribe(struct listen_st *st, struct rb_conn *c)
{
	const char *id = rb_conn_identity(c);

	if (!st->nchannels || !st->o->token || !st->api)
		return;
	if (!*id) {
		fprintf(stderr, "note: no identity under v1: channels are only asked for in the "
			"query\n");
		return;
	}
	for (int i = 0; i < st->nchannels; i++) {
		json_t *b = json_pack("{s:s,s:s}", "identity", id, "channel", st->channels[i]);
		char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
		struct rb_http_resp r;
		char err[256];
		int rc;

		json_decref(b);
		if (!body) {
			fprintf(stderr, "subscribe %s failed: out of memory\n", st->channels[i]);
			continue;
		}
		rc = rb_rest_call(st->api, "POST", "/sub/", NULL, st->o->token,
				  "Content-Type: application/json\r\n", body, strlen(body), 10000,
				  &r, err, sizeof(err));
		free(body);
		if (rc != RB_OK) {
			fprintf(stderr, "subscribe %s failed: %s\n", st->channels[i], err);
			continue;
		}
		json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
		json_t *s = json_is_object(j) ? json_object_get(j, "status") : NULL;
		if (r.status == 200 && json_is_integer(s) && json_integer_value(s) == 0)
			fprintf(stderr, "subscribed %s\n", st->channels[i]);
		else
			fprintf(stderr, "subscribe %s failed: HTTP %d %s\n", st->channels[i], r.status,
				r.body);
		json_decref(j);
		rb_http_resp_free(&r);
	}
}

static void listen_push(struct rb_conn *c, struct rb_push *p, void *user)
{
	struct listen_st *st = user;

	if (st->stop)
		return;
	printf("%u %u ", p->msgtype, p->qos);
	print_payload(stdout, p->data, p->len);
	putchar('\n');
	fflush(stdout);
	if (st->reply) {
		p->reply = st->reply;
		p->reply_len = strlen(st->reply);
	}
	if (st->count > 0 && ++st->seen >= st->count) {
		st->stop = true;
		rb_conn_close(c); /* after the ACK/REC just queued */
	}
}

static void listen_event(struct rb_conn *c, const struct rb_event *ev, void *user)
{
	struct listen_st *st = user;

	switch (ev->type) {
	case RB_EV_OPEN:
		fprintf(stderr, "open identity=%s session_present=%d v2=%d heartbeat=%d\n",
			*ev->identity ? ev->identity : "-", ev->session_present, ev->v2,
			ev->heartbeat);
		listen_subscribe(st, c);
		fprintf(stderr, "ready\n");
		break;
	case RB_EV_CLOSED:
		fprintf(stderr, "closed code=%d reason=%s retry_ms=%d\n", ev->code, ev->reason,
			ev->retry_ms);
		break;
	case RB_EV_NAK:
		fprintf(stderr, "nak msgid=%u code=%d temporary=%d message=%s\n", ev->nak->msgid,
			ev->nak->code, ev->nak->temporary, ev->nak->message);
		break;
	case RB_EV_DONE:
		fprintf(stderr, "done code=%d reason=%s\n", ev->code, ev->reason);
		if (!st->stop)
			st->exit_code = ev->code ? EX_CLOSED : EX_ERR;
		break;
	}
}

static const char listen_help[] =
	"usage: rainbow-cli listen URL [options]\n"
	"Connect to the gateway (ws://host:port[/connect/]) and print every push on\n"
	"stdout, one line each: MSGTYPE QOS PAYLOAD (backslash, control characters\n"
	"and bytes of invalid UTF-8 escaped as \\\\ \\n \\r \\t \\xNN). QoS 1 pushes are\n"
	"answered ACK, QoS 2 REC then COM (a QoS 2 push is printed once per message\n"
	"id until its REL). Reconnects (jittered exponential backoff) and resumes the\n"
	"device's session. Connection events go to stderr (open ..., ready, closed\n"
	"..., done ...).\n"
	"  --channel C          join channel C (repeatable): sent as the query argument\n"
	"                       channel=C1;;C2 (backends like example_backend.py honour\n"
	"                       it) and, when a token is known and the gateway speaks\n"
	"                       rainbow.v2, subscribed with a signed POST /sub/ after\n"
	"                       every (re)connection\n"
	"  --token T            REST security token (default: $RAINBOW_TOKEN)\n"
	"  --api URL            REST base URL (default: http:// + the URL's host:port)\n"
	"  --count N            exit 0 after N pushes (once they are answered)\n"
	"  --duration S         exit 0 after S seconds\n"
	"  --reply DATA         payload of the ACK/REC answers (default empty)\n";

static int cmd_listen(int argc, char **argv)
{
	static const struct option own[] = {
		{ "channel", required_argument, NULL, O_CHANNEL },
		{ "count", required_argument, NULL, O_COUNT },
		{ "duration", required_argument, NULL, O_DURATION },
		{ "reply", required_argument, NULL, O_REPLY },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), true);
	struct common o;
	struct listen_st st = { .o = &o };
	struct rb_conn_opts co;
	char api[RBC_URL_HOST_MAX + 32], query[4096] = "", chans[2048] = "";
	int duration_ms = -1, ch;
	struct rb_ctx *ctx;
	struct rb_conn *c;
	int64_t end;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_CHANNEL:
			if (st.nchannels == MAX_CHANNELS)
				usage_error("listen", "too many --channel");
			st.channels[st.nchannels++] = optarg;
			break;
		case O_COUNT: st.count = parse_int(optarg, 1, 1000000000, "--count"); break;
		case O_DURATION: duration_ms = parse_secs_or_die(optarg, "--duration"); break;
		case O_REPLY: st.reply = optarg; break;
		case 'h':
			printf("%s%s", listen_help, conn_help);
			return EX_OK;
		default:
			usage_error("listen", "unknown option");
		}
	}
	if (argc - optind != 1)
		usage_error("listen", "expects one URL");
	if (api_url(&o, argv[optind], api, sizeof(api)))
		st.api = api;
	if (st.nchannels) {
		for (int i = 0; i < st.nchannels; i++) {
			if (strlen(chans) + strlen(st.channels[i]) + 3 >= sizeof(chans))
				usage_error("listen", "channel names too long");
			if (i)
				strcat(chans, ";;");
			strcat(chans, st.channels[i]);
		}
		rbc_query_add(query, sizeof(query), "channel", chans);
		/* rbc_query_add starts with '?': the options' query takes none */
		memmove(query, query + 1, strlen(query));
		if (o.query) {
			if (strlen(query) + strlen(o.query) + 2 >= sizeof(query))
				usage_error("listen", "--query too long");
			strcat(query, "&");
			strcat(query, o.query);
		}
		o.query = query;
		if (!o.token)
			fprintf(stderr, "note: no token (--token or RAINBOW_TOKEN): channels are only "
				"asked for in the query (channel=%s)\n", chans);
	}
	fill_conn_opts(&o, argv[optind], &co);
	co.on_push = listen_push;
	co.on_event = listen_event;
	co.user = &st;
	ctx = make_ctx(&o);
	c = rb_conn_new(ctx, &co);
	if (!c) {
		rb_ctx_free(ctx);
		usage_error("listen", "bad URL (ws:// or wss:// expected)");
	}
	end = duration_ms >= 0 ? now_ms() + duration_ms : 0;
	while (rb_ctx_conns(ctx) && !interrupted) {
		int slice = 200;
		if (end) {
			int64_t left = end - now_ms();
			if (left <= 0) {
				st.stop = true;
				break;
			}
			if (left < slice)
				slice = (int)left;
		}
		if (rb_ctx_run(ctx, slice) != RB_OK) {
			fprintf(stderr, "rainbow-cli listen: the event loop failed\n");
			st.exit_code = EX_ERR;
			break;
		}
	}
	if (rb_ctx_conns(ctx)) {
		/* a clean close: the gateway need not wait for a timeout */
		int64_t limit = now_ms() + 2000;
		rb_conn_close(c);
		while (rb_ctx_conns(ctx) && now_ms() < limit)
			rb_ctx_run(ctx, 100);
	}
	rb_ctx_free(ctx);
	return st.stop || interrupted ? EX_OK : st.exit_code;
}

/* ------------------------------------------------------------ send */

struct send_st {
	struct rb_ctx *ctx;
	bool done;
	enum rb_send_status status;
	int exit_code;
	bool nak0;
	struct common *o;
};

static void print_nak(const struct rb_nak *n)
{
	printf("NAK %d %s%s\n", n->code, n->message, n->temporary ? " (temporary)" : "");
	fflush(stdout);
}

static void send_done(struct rb_conn *c, const struct rb_result *r, void *arg)
{
	struct send_st *st = arg;

	(void)c;
	st->done = true;
	st->status = r->status;
	rb_ctx_break(st->ctx);
	switch (r->status) {
	case RB_SENT_OK:
		if (r->msgid) {
			fwrite(r->reply, 1, r->reply_len, stdout);
			putchar('\n');
			fflush(stdout);
		}
		st->exit_code = EX_OK;
		break;
	case RB_SENT_NAK:
		print_nak(&r->nak);
		st->exit_code = EX_REFUSED;
		break;
	case RB_SENT_TIMEOUT:
		fprintf(stderr, "timeout: no answer\n");
		st->exit_code = EX_TIMEOUT;
		break;
	case RB_SENT_TOOBIG:
		fprintf(stderr, "too big for the gateway's max_message_size\n");
		st->exit_code = EX_ERR;
		break;
	case RB_SENT_CLOSED:
		st->exit_code = EX_CLOSED;
		break;
	}
}

static void send_event(struct rb_conn *c, const struct rb_event *ev, void *user)
{
	struct send_st *st = user;

	(void)c;
	switch (ev->type) {
	case RB_EV_OPEN:
		if (st->o->verbose)
			fprintf(stderr, "open identity=%s session_present=%d v2=%d\n",
				*ev->identity ? ev->identity : "-", ev->session_present, ev->v2);
		break;
	case RB_EV_CLOSED:
		if (st->o->verbose)
			fprintf(stderr, "closed code=%d reason=%s retry_ms=%d\n", ev->code,
				ev->reason, ev->retry_ms);
		break;
	case RB_EV_NAK:
		if (!st->nak0) {
			st->nak0 = true;
			print_nak(ev->nak);
		}
		break;
	case RB_EV_DONE:
		if (!st->done || st->status == RB_SENT_CLOSED)
			fprintf(stderr, "connection closed: %s%s%d\n", ev->reason,
				*ev->reason ? ", code " : "code ", ev->code);
		break;
	}
}

static const char send_help[] =
	"usage: rainbow-cli send URL MSGTYPE DATA [options]\n"
	"Send one message (DATA, or - for stdin) of MSGTYPE (0..65535) and print the\n"
	"backend's reply (QoS 1: the ACK's payload, QoS 2: the REC's; the exchange\n"
	"ends with REL/COM before exit). A NAK prints \"NAK CODE MESSAGE\" and exits 2;\n"
	"no answer in time exits 3. Reconnects until the timeout.\n"
	"  --qos N              0, 1 or 2 (default 1)\n"
	"  --timeout S          seconds to wait for the answer (default 10)\n"
	"  --linger S           QoS 0: wait S seconds for a NAK before exiting (default 0)\n";

static int cmd_send(int argc, char **argv)
{
	static const struct option own[] = {
		{ "qos", required_argument, NULL, O_QOS },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "linger", required_argument, NULL, O_LINGER },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), true);
	struct common o;
	struct send_st st = { .o = &o, .exit_code = EX_TIMEOUT };
	struct rb_conn_opts co;
	int qos = 1, timeout_ms = 10000, linger_ms = 0, ch, rc;
	long msgtype;
	struct rb_ctx *ctx;
	struct rb_conn *c;
	char *data;
	size_t len;
	int64_t end;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_QOS: qos = (int)parse_int(optarg, 0, 2, "--qos"); break;
		case O_TIMEOUT: timeout_ms = parse_secs_or_die(optarg, "--timeout"); break;
		case O_LINGER: linger_ms = parse_secs_or_die(optarg, "--linger"); break;
		case 'h':
			printf("%s%s", send_help, conn_help);
			return EX_OK;
		default:
			usage_error("send", "unknown option");
		}
	}
	if (argc - optind != 3)
		usage_error("send", "expects URL MSGTYPE DATA");
	if (timeout_ms <= 0)
		timeout_ms = 1;
	msgtype = parse_int(argv[optind + 1], 0, 65535, "MSGTYPE");
	data = read_data(argv[optind + 2], &len);
	fill_conn_opts(&o, argv[optind], &co);
	co.on_event = send_event;
	co.user = &st;
	ctx = make_ctx(&o);
	st.ctx = ctx;
	c = rb_conn_new(ctx, &co);
	if (!c) {
		free(data);
		rb_ctx_free(ctx);
		usage_error("send", "bad URL (ws:// or wss:// expected)");
	}
	rc = rb_send(c, (uint16_t)msgtype, qos, data, len, timeout_ms, send_done, &st);
	free(data);
	if (rc != RB_OK) {
		fprintf(stderr, "rainbow-cli send: %s\n", rb_strerror(rc));
		rb_ctx_free(ctx);
		return EX_ERR;
	}
	end = now_ms() + timeout_ms + 1000;
	while (!st.done && !interrupted && rb_ctx_conns(ctx) && now_ms() < end)
		rb_ctx_run(ctx, 100);
	if (st.done && st.status == RB_SENT_OK) {
		/* QoS 2: REL/COM; QoS 0: a NAK may still come */
		int64_t limit = now_ms() + (qos == 2 ? 5000 : linger_ms);
		while (!interrupted && rb_ctx_conns(ctx) && now_ms() < limit &&
		       (qos == 2 ? rb_conn_pending(c) > 0 : !st.nak0))
			rb_ctx_run(ctx, 50);
		if (st.nak0)
			st.exit_code = EX_REFUSED;
	}
	if (rb_ctx_conns(ctx)) {
		int64_t limit = now_ms() + 2000;
		rb_conn_close(c);
		while (rb_ctx_conns(ctx) && now_ms() < limit)
			rb_ctx_run(ctx, 100);
	}
	rb_ctx_free(ctx);
	if (!st.done)
		fprintf(stderr, "timeout: no answer\n");
	return interrupted ? EX_ERR : st.exit_code;
}

/* ------------------------------------------------------------ swarm */

struct swarm_st {
	long ok, nak, timeout, closed, other, opened, done;
};

static void swarm_done(struct rb_conn *c, const struct rb_result *r, void *arg)
{
	struct swarm_st *st = arg;

	(void)c;
	st->done++;
	switch (r->status) {
	case RB_SENT_OK: st->ok++; break;
	case RB_SENT_NAK: st->nak++; break;
	case RB_SENT_TIMEOUT: st->timeout++; break;
	case RB_SENT_CLOSED: st->closed++; break;
	default: st->other++; break;
	}
}

static void swarm_event(struct rb_conn *c, const struct rb_event *ev, void *user)
{
	struct swarm_st *st = user;

	(void)c;
	if (ev->type == RB_EV_OPEN)
		st->opened++;
}

static const char swarm_help[] =
	"usage: rainbow-cli swarm URL [options]\n"
	"Open many connections on one libwebsockets context, send COUNT messages on\n"
	"each (payload \"CONN:SEQ\"), wait for every answer, print one JSON line:\n"
	"{\"conns\":N,\"opened\":O,\"sent\":S,\"ok\":K,\"nak\":A,\"timeout\":T,\"closed\":C,\n"
	"\"seconds\":X} and exit 0 when every send succeeded.\n"
	"  --conns N            connections (default 10)\n"
	"  --count M            messages per connection (default 1)\n"
	"  --qos N              0, 1 or 2 (default 1)\n"
	"  --msgtype T          (default 1)\n"
	"  --timeout S          per message (default 30)\n"
	"  --device-prefix P    device ids P0, P1, ... (default: none)\n";

static int cmd_swarm(int argc, char **argv)
{
	static const struct option own[] = {
		{ "conns", required_argument, NULL, O_CONNS },
		{ "count", required_argument, NULL, O_COUNT },
		{ "qos", required_argument, NULL, O_QOS },
		{ "msgtype", required_argument, NULL, O_MSGTYPE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
		{ "device-prefix", required_argument, NULL, O_PREFIX },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), true);
	struct common o;
	struct swarm_st st = { 0 };
	struct rb_conn_opts co;
	long nconns = 10, count = 1, msgtype = 1, total;
	int qos = 1, timeout_ms = 30000, ch;
	const char *prefix = NULL;
	struct rb_conn **conns;
	struct rb_ctx *ctx;
	int64_t t0, end;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_CONNS: nconns = parse_int(optarg, 1, 1000000, "--conns"); break;
		case O_COUNT: count = parse_int(optarg, 0, 1000000, "--count"); break;
		case O_QOS: qos = (int)parse_int(optarg, 0, 2, "--qos"); break;
		case O_MSGTYPE: msgtype = parse_int(optarg, 0, 65535, "--msgtype"); break;
		case O_TIMEOUT: timeout_ms = parse_secs_or_die(optarg, "--timeout"); break;
		case O_PREFIX: prefix = optarg; break;
		case 'h':
			printf("%s%s", swarm_help, conn_help);
			return EX_OK;
		default:
			usage_error("swarm", "unknown option");
		}
	}
	if (argc - optind != 1)
		usage_error("swarm", "expects one URL");
	conns = calloc((size_t)nconns, sizeof(*conns));
	if (!conns)
		return EX_ERR;
	ctx = make_ctx(&o);
	t0 = now_ms();
	fill_conn_opts(&o, argv[optind], &co);
	co.on_event = swarm_event;
	co.user = &st;
	co.send_timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
	for (long i = 0; i < nconns; i++) {
		char dev[128];
		if (prefix) {
			snprintf(dev, sizeof(dev), "%s%ld", prefix, i);
			co.device = dev;
		}
		conns[i] = rb_conn_new(ctx, &co);
		if (!conns[i]) {
			fprintf(stderr, "rainbow-cli swarm: cannot open connection %ld\n", i);
			rb_ctx_free(ctx);
			free(conns);
			return EX_ERR;
		}
		for (long j = 0; j < count; j++) {
			char payload[64];
			int n = snprintf(payload, sizeof(payload), "%ld:%ld", i, j);
			if (rb_send(conns[i], (uint16_t)msgtype, qos, payload, (size_t)n, 0, swarm_done,
				    &st) != RB_OK)
				st.other++, st.done++;
		}
	}
	total = nconns * count;
	end = now_ms() + timeout_ms + 5000;
	while (st.done < total && !interrupted && rb_ctx_conns(ctx) && now_ms() < end)
		rb_ctx_run(ctx, 100);
	/* QoS 2: let the REL/COM exchanges finish */
	for (int64_t limit = now_ms() + 5000; now_ms() < limit && !interrupted;) {
		size_t pending = 0;
		for (long i = 0; i < nconns; i++)
			pending += rb_conn_pending(conns[i]);
		if (!pending)
			break;
		rb_ctx_run(ctx, 50);
	}
	for (long i = 0; i < nconns; i++)
		rb_conn_close(conns[i]);
	for (int64_t limit = now_ms() + 3000; rb_ctx_conns(ctx) && now_ms() < limit;)
		rb_ctx_run(ctx, 100);
	printf("{\"conns\":%ld,\"opened\":%ld,\"sent\":%ld,\"ok\":%ld,\"nak\":%ld,\"timeout\":%ld,"
	       "\"closed\":%ld,\"seconds\":%.3f}\n", nconns, st.opened, total, st.ok, st.nak,
	       st.timeout, st.closed + st.other, (double)(now_ms() - t0) / 1000.0);
	rb_ctx_free(ctx);
	free(conns);
	return st.ok == total ? EX_OK : st.timeout ? EX_TIMEOUT : EX_REFUSED;
}

/* ------------------------------------------------------------ REST */

/* Print the answer; the exit status from its HTTP status and JSON status. */
static int rest_result(int rc, struct rb_http_resp *r, const char *err)
{
	json_t *j, *s;
	int code;

	if (rc != RB_OK) {
		fprintf(stderr, "rainbow-cli: %s\n", err);
		return rc == RB_ETIMEDOUT ? EX_TIMEOUT : EX_ERR;
	}
	fwrite(r->body, 1, r->body_len, stdout);
	if (!r->body_len || r->body[r->body_len - 1] != '\n')
		putchar('\n');
	fflush(stdout);
	j = json_loadb(r->body, r->body_len, 0, NULL);
	s = json_is_object(j) ? json_object_get(j, "status") : NULL;
	if (r->status != 200) {
		fprintf(stderr, "HTTP %d\n", r->status);
		code = r->status == 504 ? EX_TIMEOUT : EX_REFUSED;
	} else if (json_is_integer(s) && json_integer_value(s) == 0) {
		code = EX_OK;
	} else if (json_is_integer(s)) {
		json_t *m = json_object_get(j, "msg");
		code = json_is_string(m) && !strcmp(json_string_value(m), "timeout") ? EX_TIMEOUT
										  : EX_REFUSED;
	} else {
		code = EX_REFUSED;
	}
	json_decref(j);
	rb_http_resp_free(r);
	return code;
}

static int rest_json(const char *api, const char *path, json_t *body, const char *token)
{
	struct rb_http_resp r;
	char err[256];
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	int rc;

	json_decref(body);
	if (!text) {
		fprintf(stderr, "rainbow-cli: out of memory\n");
		return EX_ERR;
	}
	rc = rb_rest_call(api, "POST", path, NULL, token, "Content-Type: application/json\r\n",
			  text, strlen(text), 15000, &r, err, sizeof(err));
	free(text);
	return rest_result(rc, &r, err);
}

static void need_token(const struct common *o, const char *cmd)
{
	if (!o->token)
		usage_error(cmd, "needs the security token: --token T or RAINBOW_TOKEN");
}

static const char rest_help[] =
	"  --token T            security token for the v1 signature (default: $RAINBOW_TOKEN)\n"
	"The answer's JSON is printed on stdout; exit 0 when it says status 0.\n";

static const char push_help[] =
	"usage: rainbow-cli push API_URL TARGET DATA [options]\n"
	"POST /send/ (signed): push DATA (or - for stdin) to the channel TARGET.\n"
	"  --to KIND            TARGET is a channel (default), identity or device\n"
	"  --qos N              0, 1 or 2 (default: the gateway's, 2)\n"
	"  --msgtype T          0..65535 (default: the gateway's, 1)\n"
	"  --timeout S          seconds the gateway waits for acknowledgements (default 10)\n";

static int cmd_push(int argc, char **argv)
{
	static const struct option own[] = {
		{ "to", required_argument, NULL, O_TO },
		{ "qos", required_argument, NULL, O_QOS },
		{ "msgtype", required_argument, NULL, O_MSGTYPE },
		{ "timeout", required_argument, NULL, O_TIMEOUT },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), false);
	struct common o;
	const char *to = "channel", *qos = NULL, *msgtype = NULL, *timeout = NULL;
	char query[4096] = "";
	struct rb_http_resp r;
	char err[256];
	int ch, rc, wait_ms = 10000;
	char *data;
	size_t len;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_TO:
			if (strcmp(optarg, "channel") && strcmp(optarg, "identity") &&
			    strcmp(optarg, "device"))
				usage_error("push", "--to is channel, identity or device");
			to = optarg;
			break;
		case O_QOS: parse_int(optarg, 0, 2, "--qos"); qos = optarg; break;
		case O_MSGTYPE: parse_int(optarg, 0, 65535, "--msgtype"); msgtype = optarg; break;
		case O_TIMEOUT: wait_ms = parse_secs_or_die(optarg, "--timeout"); timeout = optarg; break;
		case 'h':
			printf("%s%s", push_help, rest_help);
			return EX_OK;
		default:
			usage_error("push", "unknown option");
		}
	}
	if (argc - optind != 3)
		usage_error("push", "expects API_URL TARGET DATA");
	need_token(&o, "push");
	rc = rbc_query_add(query, sizeof(query), to, argv[optind + 1]);
	if (msgtype)
		rc |= rbc_query_add(query, sizeof(query), "msgtype", msgtype);
	if (qos)
		rc |= rbc_query_add(query, sizeof(query), "qos", qos);
	if (timeout)
		rc |= rbc_query_add(query, sizeof(query), "timeout", timeout);
	if (rc != RB_OK)
		usage_error("push", "TARGET too long");
	data = read_data(argv[optind + 2], &len);
	rc = rb_rest_call(argv[optind], "POST", "/send/", query + 1, o.token,
			  "Content-Type: application/octet-stream\r\n", data, len,
			  (wait_ms > 0 ? wait_ms : 10000) + 10000, &r, err, sizeof(err));
	free(data);
	return rest_result(rc, &r, err);
}

static const char sub_help[] =
	"usage: rainbow-cli sub API_URL IDENTITY CHANNEL [--occupy]\n"
	"POST /sub/ (signed): put the connection IDENTITY in CHANNEL; --occupy first\n"
	"removes every other member.\n";
static const char unsub_help[] =
	"usage: rainbow-cli unsub API_URL IDENTITY CHANNEL\n"
	"POST /unsub/ (signed): take the connection IDENTITY out of CHANNEL.\n";

static int cmd_sub(int argc, char **argv, bool sub)
{
	static const struct option own[] = {
		{ "occupy", no_argument, NULL, O_OCCUPY },
	};
	struct option *table = options(own, sub ? 1 : 0, false);
	const char *name = sub ? "sub" : "unsub";
	struct common o;
	bool occupy = false;
	json_t *body;
	int ch;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_OCCUPY: occupy = true; break;
		case 'h':
			printf("%s%s", sub ? sub_help : unsub_help, rest_help);
			return EX_OK;
		default:
			usage_error(name, "unknown option");
		}
	}
	if (argc - optind != 3)
		usage_error(name, "expects API_URL IDENTITY CHANNEL");
	need_token(&o, name);
	body = json_pack("{s:s,s:s}", "identity", argv[optind + 1], "channel", argv[optind + 2]);
	if (body && occupy)
		json_object_set_new(body, "occupy", json_true());
	return rest_json(argv[optind], sub ? "/sub/" : "/unsub/", body, o.token);
}

static const char kick_help[] =
	"usage: rainbow-cli kick API_URL IDENTITY [--code N] [--reason R]\n"
	"POST /kick/ (signed): close the connection IDENTITY (default code 4000,\n"
	"reason \"kicked\"; code 1000 or 3000..4999).\n";

static int cmd_kick(int argc, char **argv)
{
	static const struct option own[] = {
		{ "code", required_argument, NULL, O_CODE },
		{ "reason", required_argument, NULL, O_REASON },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), false);
	struct common o;
	long code = -1;
	const char *reason = NULL;
	json_t *body;
	int ch;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_CODE: code = parse_int(optarg, 0, 65535, "--code"); break;
		case O_REASON: reason = optarg; break;
		case 'h':
			printf("%s%s", kick_help, rest_help);
			return EX_OK;
		default:
			usage_error("kick", "unknown option");
		}
	}
	if (argc - optind != 2)
		usage_error("kick", "expects API_URL IDENTITY");
	need_token(&o, "kick");
	body = json_pack("{s:s}", "identity", argv[optind + 1]);
	if (body && code >= 0)
		json_object_set_new(body, "code", json_integer(code));
	if (body && reason)
		json_object_set_new(body, "reason", json_string(reason));
	return rest_json(argv[optind], "/kick/", body, o.token);
}

static const char info_help[] =
	"usage: rainbow-cli info API_URL [--token T] [--password P]\n"
	"GET /serverinfo/?cluster=1: the node as JSON. Signed when a token is known\n"
	"(serverinfo_auth = signature); --password for serverinfo_auth = password.\n";

static int cmd_info(int argc, char **argv)
{
	static const struct option own[] = {
		{ "password", required_argument, NULL, O_PASSWORD },
	};
	struct option *table = options(own, RB_ARRAY_LEN(own), false);
	struct common o;
	const char *password = NULL;
	char headers[600] = "", userpass[300], b64[420];
	struct rb_http_resp r;
	char err[256];
	int ch, rc;

	init_common(&o);
	while ((ch = getopt_long(argc, argv, "hv", table, NULL)) != -1) {
		if (common_opt(&o, ch, optarg))
			continue;
		switch (ch) {
		case O_PASSWORD: password = optarg; break;
		case 'h':
			printf("%s", info_help);
			return EX_OK;
		default:
			usage_error("info", "unknown option");
		}
	}
	if (argc - optind != 1)
		usage_error("info", "expects API_URL");
	if (password) {
		int n = snprintf(userpass, sizeof(userpass), "rainbow:%s", password);
		if (n >= (int)sizeof(userpass) ||
		    lws_b64_encode_string(userpass, n, b64, sizeof(b64)) < 0)
			usage_error("info", "--password too long");
		snprintf(headers, sizeof(headers), "Authorization: Basic %s\r\n", b64);
	}
	rc = rb_rest_call(argv[optind], "GET", "/serverinfo/", "cluster=1", o.token,
			  headers[0] ? headers : NULL, NULL, 0, 15000, &r, err, sizeof(err));
	return rest_result(rc, &r, err);
}

/* ------------------------------------------------------------ main */

static const char main_help[] =
	"usage: rainbow-cli COMMAND [ARGS] [options]   (rainbow-cli COMMAND --help)\n"
	"WebSocket (ws://host:port[/connect/], wss://):\n"
	"  listen URL                      print pushes, one line each\n"
	"  send URL MSGTYPE DATA           send one message, print the reply or the NAK\n"
	"  swarm URL                       many connections on one context (load test)\n"
	"REST (http://host:port, signed with --token or $RAINBOW_TOKEN):\n"
	"  push API_URL CHANNEL DATA       POST /send/\n"
	"  sub API_URL IDENTITY CHANNEL    POST /sub/\n"
	"  unsub API_URL IDENTITY CHANNEL  POST /unsub/\n"
	"  kick API_URL IDENTITY           POST /kick/\n"
	"  info API_URL                    GET /serverinfo/?cluster=1\n"
	"Exit status: 0 ok; 1 usage or local/network error; 2 refused (NAK, REST\n"
	"status != 0 or HTTP error); 3 timeout; 4 connection refused or closed for\n"
	"good by the gateway (HTTP 401 at the upgrade, kicked, session taken over).\n";

int main(int argc, char **argv)
{
	const char *cmd;
	struct sigaction sa;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		printf("%s", main_help);
		return argc < 2 ? EX_ERR : EX_OK;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	cmd = argv[1];
	argc--;
	argv++;
	if (!strcmp(cmd, "listen"))
		return cmd_listen(argc, argv);
	if (!strcmp(cmd, "send"))
		return cmd_send(argc, argv);
	if (!strcmp(cmd, "swarm"))
		return cmd_swarm(argc, argv);
	if (!strcmp(cmd, "push"))
		return cmd_push(argc, argv);
	if (!strcmp(cmd, "sub"))
		return cmd_sub(argc, argv, true);
	if (!strcmp(cmd, "unsub"))
		return cmd_sub(argc, argv, false);
	if (!strcmp(cmd, "kick"))
		return cmd_kick(argc, argv);
	if (!strcmp(cmd, "info"))
		return cmd_info(argc, argv);
	fprintf(stderr, "rainbow-cli: unknown command \"%s\" (see rainbow-cli --help)\n", cmd);
	return EX_ERR;
}
