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
	long reconnect_min_ms, reconnect_max_ms, heartbeat_s, heartbeat_timeout_s;
};

/* The arguments of a repeatable option (listen --channel). */
struct strlist {
	const char *v[MAX_CHANNELS];
	int n;
};

/* What an option does with its argument. OPT_HELP and OPT_FLAG take none. */
enum opt_kind {
	OPT_HELP, /* print the command's help, exit 0 */
	OPT_FLAG, /* *(bool *)to = true */
	OPT_STR,  /* *(const char **)to = the argument (one of choices, if set) */
	OPT_INT,  /* *(long *)to = the argument, an integer in lo..hi */
	OPT_SECS, /* *(int *)to = the argument, seconds, in milliseconds */
	OPT_LIST, /* the argument appended to *(struct strlist *)to */
};

/* A row of an option table: the parser and the help both read it. */
struct opt {
	const char *name;            /* --name */
	enum opt_kind kind;
	void *to;                    /* where the value goes; NULL: checked only */
	const char *arg;             /* the argument's name in the help */
	const char *help;            /* its help, lines separated by \n; NULL: not listed */
	long lo, hi;                 /* OPT_INT: the range */
	const char **raw;            /* if set, also gets the argument as given */
	const char *const *choices;  /* OPT_STR: the values allowed, NULL-terminated */
	char letter;                 /* the short form (-v), or 0 */
};

/* A row's first fields: { OPT(...), .lo = 0, .hi = 2 } adds the others. */
#define OPT(name_, kind_, to_, arg_, help_) \
	.name = (name_), .kind = (kind_), .to = (to_), .arg = (arg_), .help = (help_)
/* --token and --api, which every command takes (help NULL: not listed). */
#define OPT_TOKEN(o, help) { OPT("token", OPT_STR, &(o)->token, "T", help) }
#define OPT_API(o, help) { OPT("api", OPT_STR, &(o)->api, "URL", help) }

/* A command, for its option parsing and help. */
struct cmd {
	const char *name;
	const char *usage;    /* the help before the option list */
	const char *footer;   /* the help after it, or NULL */
	bool conn;            /* a WebSocket command: takes the connection options */
	int operands;         /* how many it takes */
	const char *expects;  /* the usage error when that many are not given */
};

static void usage_error(const char *cmd, const char *msg)
{
	fprintf(stderr, "rainbow-cli %s: %s (see rainbow-cli %s --help)\n", cmd, msg, cmd);
	exit(EX_ERR);
}

/* A command's options as parse_opts lays them out: its own, the general
 * ones (NGENERAL), then a WebSocket command's connection options. */
#define MAX_OPTS 32
#define NGENERAL 2

static void add_opts(struct opt *t, size_t *n, const struct opt *v, size_t nv)
{
	if (*n + nv > MAX_OPTS) {
		fprintf(stderr, "rainbow-cli: more than MAX_OPTS options\n");
		abort();
	}
	memcpy(t + *n, v, nv * sizeof(*v));
	*n += nv;
}

/* The options every command takes after its own (-h, -v: the general ones)
 * and, for a WebSocket command, the connection options, storing into o. */
static void add_common_opts(struct opt *t, size_t *n, struct common *o, bool conn)
{
	const struct opt general[NGENERAL] = {
		{ OPT("help", OPT_HELP, NULL, NULL, NULL), .letter = 'h' },
		{ OPT("verbose", OPT_FLAG, &o->verbose, NULL,
		      "connection events and libwebsockets notices on stderr"), .letter = 'v' },
	};
	const struct opt conn_opts[] = {
		{ OPT("device", OPT_STR, &o->device, "D",
		      "device id (X-DEVICEID); with rainbow.v2 it holds a session") },
		{ OPT("platform", OPT_STR, &o->platform, "P", "X-CLIENT-OS") },
		{ OPT("client-token", OPT_STR, &o->client_token, "T",
		      "query argument token=T for the backend's connect hook") },
		{ OPT("query", OPT_STR, &o->query, "Q",
		      "more query arguments, already encoded (a=1&b=2)") },
		{ OPT("v1", OPT_FLAG, &o->v1, NULL,
		      "speak the original protocol (no rainbow.v2: no HELLO, no NAK)") },
		{ OPT("session", OPT_FLAG, &o->session, NULL,
		      "with --v1 and --device: ask for a session (session=1)") },
		{ OPT("insecure", OPT_FLAG, &o->insecure, NULL, "wss://: accept any certificate") },
		{ OPT("ca", OPT_STR, &o->ca_file, "FILE",
		      "wss://: trust the CA certificates in FILE (PEM)") },
		{ OPT("no-reconnect", OPT_FLAG, &o->no_reconnect, NULL,
		      "give up at the first lost connection") },
		{ OPT("reconnect-min", OPT_INT, &o->reconnect_min_ms, "MS",
		      "first reconnect delay (default 500; jittered, doubling)"),
		  .lo = 1, .hi = 3600000 },
		{ OPT("reconnect-max", OPT_INT, &o->reconnect_max_ms, "MS",
		      "longest reconnect delay (default 30000)"), .lo = 1, .hi = 3600000 },
		{ OPT("heartbeat", OPT_INT, &o->heartbeat_s, "S",
		      "liveness interval when the gateway announces none (v1)"),
		  .lo = 0, .hi = 3600 },
		{ OPT("heartbeat-timeout", OPT_INT, &o->heartbeat_timeout_s, "S",
		      "silence past the interval that counts as a dead\n"
		      "connection (default 10): the client pings after one\n"
		      "quiet interval and reconnects after this much more"),
		  .lo = 1, .hi = 3600 },
	};

	add_opts(t, n, general, NGENERAL);
	if (conn)
		add_opts(t, n, conn_opts, RB_ARRAY_LEN(conn_opts));
}

/* "  --name ARG           help", continuation lines under the help; rows
 * without help are not listed. */
static void print_opts(const struct opt *t, size_t n)
{
	enum { LABEL_W = 19 }; /* the help starts at column 2 + LABEL_W + 2 */

	for (size_t i = 0; i < n; i++) {
		const char *h = t[i].help, *nl;
		char label[64];
		int k = 0;

		if (!h)
			continue;
		if (t[i].letter)
			k = snprintf(label, sizeof(label), "-%c, ", t[i].letter);
		snprintf(label + k, sizeof(label) - k, "--%s%s%s", t[i].name, t[i].arg ? " " : "",
			 t[i].arg ? t[i].arg : "");
		printf("  %-*s  ", LABEL_W, label);
		for (; (nl = strchr(h, '\n')); h = nl + 1)
			printf("%.*s\n%*s", (int)(nl - h), h, 2 + LABEL_W + 2, "");
		printf("%s\n", h);
	}
}

/* The help: usage, the command's own options, then for a WebSocket command
 * the connection options and the general ones, then the footer. t is as
 * parse_opts lays it out: own, general, connection options. */
static void print_help(const struct cmd *cmd, const struct opt *t, size_t nown, size_t n)
{
	printf("%s", cmd->usage);
	print_opts(t, nown);
	if (cmd->conn) {
		printf("connection options:\n");
		print_opts(t + nown + NGENERAL, n - nown - NGENERAL);
		print_opts(t + nown, NGENERAL);
	}
	if (cmd->footer)
		printf("%s", cmd->footer);
}

/* arg is not one of e->choices: "--to is channel, identity or device". */
static void bad_choice(const struct cmd *cmd, const struct opt *e)
{
	char msg[160];
	int k = snprintf(msg, sizeof(msg), "--%s is %s", e->name, e->choices[0]);

	for (const char *const *c = e->choices + 1; *c && k < (int)sizeof(msg); c++)
		k += snprintf(msg + k, sizeof(msg) - k, "%s%s", c[1] ? ", " : " or ", *c);
	usage_error(cmd->name, msg);
}

/* Store an option's argument as its row says; a bad one is a usage error. */
static void set_opt(const struct cmd *cmd, const struct opt *e, const char *arg)
{
	char what[64], msg[96];
	const char *const *c;
	struct strlist *l;
	long v;

	snprintf(what, sizeof(what), "--%s", e->name);
	switch (e->kind) {
	case OPT_HELP: /* parse_opts' */
		break;
	case OPT_FLAG:
		*(bool *)e->to = true;
		break;
	case OPT_STR:
		for (c = e->choices; c && *c && strcmp(*c, arg); c++)
			;
		if (c && !*c)
			bad_choice(cmd, e);
		*(const char **)e->to = arg;
		break;
	case OPT_INT:
		v = parse_int(arg, e->lo, e->hi, what);
		if (e->to)
			*(long *)e->to = v;
		break;
	case OPT_SECS:
		*(int *)e->to = parse_secs_or_die(arg, what);
		break;
	case OPT_LIST:
		l = e->to;
		if (l->n == (int)RB_ARRAY_LEN(l->v)) {
			snprintf(msg, sizeof(msg), "too many %s", what);
			usage_error(cmd->name, msg);
		}
		l->v[l->n++] = arg;
		break;
	}
	if (e->raw)
		*e->raw = arg;
}

/* Parse the options of command cmd in argv, each as it comes: own[] (its
 * table), then the general and, for a WebSocket command, the connection
 * options (add_common_opts), into o, which starts zeroed with the token from
 * $RAINBOW_TOKEN. --help prints the help from the same tables and exits 0;
 * an unknown option, a missing or bad argument, or a number of operands other
 * than cmd->operands is a usage error (exit 1). Leaves optind at the first
 * operand, as getopt_long does. */
static void parse_opts(const struct cmd *cmd, const struct opt *own, size_t nown,
		       struct common *o, int argc, char **argv)
{
	enum { VAL0 = 1000 }; /* getopt_long's value for t[i]: VAL0 + i */
	struct opt t[MAX_OPTS];
	struct option lo[MAX_OPTS + 1];
	char letters[2 * MAX_OPTS + 1];
	size_t n = 0, nl = 0;
	int ch;

	memset(o, 0, sizeof(*o));
	o->token = getenv("RAINBOW_TOKEN");
	add_opts(t, &n, own, nown);
	add_common_opts(t, &n, o, cmd->conn);
	for (size_t i = 0; i < n; i++) {
		bool has_arg = t[i].kind != OPT_HELP && t[i].kind != OPT_FLAG;
		lo[i] = (struct option){ t[i].name, has_arg ? required_argument : no_argument,
					 NULL, VAL0 + (int)i };
		if (t[i].letter) {
			letters[nl++] = t[i].letter;
			if (has_arg)
				letters[nl++] = ':';
		}
	}
	memset(&lo[n], 0, sizeof(lo[n]));
	letters[nl] = '\0';
	while ((ch = getopt_long(argc, argv, letters, lo, NULL)) != -1) {
		const struct opt *e = NULL;

		if (ch >= VAL0 && ch < VAL0 + (int)n)
			e = &t[ch - VAL0];
		for (size_t i = 0; i < n && !e; i++)
			if (t[i].letter == ch)
				e = &t[i];
		if (!e)
			usage_error(cmd->name, "unknown option");
		if (e->kind == OPT_HELP) {
			print_help(cmd, t, nown, n);
			exit(EX_OK);
		}
		set_opt(cmd, e, optarg);
	}
	if (argc - optind != cmd->operands)
		usage_error(cmd->name, cmd->expects);
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
	co->reconnect_min_ms = (int)o->reconnect_min_ms;
	co->reconnect_max_ms = (int)o->reconnect_max_ms;
	co->heartbeat_s = (int)o->heartbeat_s;
	co->heartbeat_timeout_s = (int)o->heartbeat_timeout_s;
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

/* ------------------------------------------------------------ listen */

struct listen_st {
	struct common *o;
	const char *api;
	struct strlist channels;
	long count, seen;
	const char *reply;
	int exit_code;
	bool stop;
};

static void listen_subscribe(struct listen_st *st, struct rb_conn *c)
{
	const char *id = rb_conn_identity(c);

	if (!st->channels.n || !st->o->token || !st->api)
		return;
	if (!*id) {
		fprintf(stderr, "note: no identity under v1: channels are only asked for in the "
			"query\n");
		return;
	}
	for (int i = 0; i < st->channels.n; i++) {
		json_t *b = json_pack("{s:s,s:s}", "identity", id, "channel", st->channels.v[i]);
		char *body = b ? json_dumps(b, JSON_COMPACT) : NULL;
		struct rb_http_resp r;
		char err[256];
		int rc;

		json_decref(b);
		if (!body) {
			fprintf(stderr, "subscribe %s failed: out of memory\n", st->channels.v[i]);
			continue;
		}
		rc = rb_rest_call(st->api, "POST", "/sub/", NULL, st->o->token,
				  "Content-Type: application/json\r\n", body, strlen(body), 10000,
				  &r, err, sizeof(err));
		free(body);
		if (rc != RB_OK) {
			fprintf(stderr, "subscribe %s failed: %s\n", st->channels.v[i], err);
			continue;
		}
		json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
		json_t *s = json_is_object(j) ? json_object_get(j, "status") : NULL;
		if (r.status == 200 && json_is_integer(s) && json_integer_value(s) == 0)
			fprintf(stderr, "subscribed %s\n", st->channels.v[i]);
		else
			fprintf(stderr, "subscribe %s failed: HTTP %d %s\n", st->channels.v[i],
				r.status, r.body);
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

static const struct cmd listen_cmd = {
	"listen",
	"usage: rainbow-cli listen URL [options]\n"
	"Connect to the gateway (ws://host:port[/connect/]) and print every push on\n"
	"stdout, one line each: MSGTYPE QOS PAYLOAD (backslash, control characters\n"
	"and bytes of invalid UTF-8 escaped as \\\\ \\n \\r \\t \\xNN). QoS 1 pushes are\n"
	"answered ACK, QoS 2 REC then COM (a QoS 2 push is printed once per message\n"
	"id until its REL). Reconnects (jittered exponential backoff) and resumes the\n"
	"device's session. Connection events go to stderr (open ..., ready, closed\n"
	"..., done ...).\n",
	NULL, true, 1, "expects one URL",
};

static int cmd_listen(int argc, char **argv)
{
	struct common o;
	struct listen_st st = { .o = &o };
	struct rb_conn_opts co;
	char api[RBC_URL_HOST_MAX + 32], query[4096] = "", chans[2048] = "";
	int duration_ms = -1;
	struct rb_ctx *ctx;
	struct rb_conn *c;
	int64_t end;
	const struct opt own[] = {
		{ OPT("channel", OPT_LIST, &st.channels, "C",
		      "join channel C (repeatable): sent as the query argument\n"
		      "channel=C1;;C2 (backends like example_backend.py honour\n"
		      "it) and, when a token is known and the gateway speaks\n"
		      "rainbow.v2, subscribed with a signed POST /sub/ after\n"
		      "every (re)connection") },
		OPT_TOKEN(&o, "REST security token (default: $RAINBOW_TOKEN)"),
		OPT_API(&o, "REST base URL (default: http:// + the URL's host:port)"),
		{ OPT("count", OPT_INT, &st.count, "N",
		      "exit 0 after N pushes (once they are answered)"),
		  .lo = 1, .hi = 1000000000 },
		{ OPT("duration", OPT_SECS, &duration_ms, "S", "exit 0 after S seconds") },
		{ OPT("reply", OPT_STR, &st.reply, "DATA",
		      "payload of the ACK/REC answers (default empty)") },
	};

	parse_opts(&listen_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
	if (api_url(&o, argv[optind], api, sizeof(api)))
		st.api = api;
	if (st.channels.n) {
		for (int i = 0; i < st.channels.n; i++) {
			if (strlen(chans) + strlen(st.channels.v[i]) + 3 >= sizeof(chans))
				usage_error("listen", "channel names too long");
			if (i)
				strcat(chans, ";;");
			strcat(chans, st.channels.v[i]);
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

static const struct cmd send_cmd = {
	"send",
	"usage: rainbow-cli send URL MSGTYPE DATA [options]\n"
	"Send one message (DATA, or - for stdin) of MSGTYPE (0..65535) and print the\n"
	"backend's reply (QoS 1: the ACK's payload, QoS 2: the REC's; the exchange\n"
	"ends with REL/COM before exit). A NAK prints \"NAK CODE MESSAGE\" and exits 2;\n"
	"no answer in time exits 3. Reconnects until the timeout.\n",
	NULL, true, 3, "expects URL MSGTYPE DATA",
};

static int cmd_send(int argc, char **argv)
{
	struct common o;
	struct send_st st = { .o = &o, .exit_code = EX_TIMEOUT };
	struct rb_conn_opts co;
	long qos = 1, msgtype;
	int timeout_ms = 10000, linger_ms = 0, rc;
	struct rb_ctx *ctx;
	struct rb_conn *c;
	char *data;
	size_t len;
	int64_t end;
	const struct opt own[] = {
		{ OPT("qos", OPT_INT, &qos, "N", "0, 1 or 2 (default 1)"), .lo = 0, .hi = 2 },
		{ OPT("timeout", OPT_SECS, &timeout_ms, "S",
		      "seconds to wait for the answer (default 10)") },
		{ OPT("linger", OPT_SECS, &linger_ms, "S",
		      "QoS 0: wait S seconds for a NAK before exiting (default 0)") },
		OPT_TOKEN(&o, NULL),
		OPT_API(&o, NULL),
	};

	parse_opts(&send_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
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
	rc = rb_send(c, (uint16_t)msgtype, (int)qos, data, len, timeout_ms, send_done, &st);
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

static const struct cmd swarm_cmd = {
	"swarm",
	"usage: rainbow-cli swarm URL [options]\n"
	"Open many connections on one libwebsockets context, send COUNT messages on\n"
	"each (payload \"CONN:SEQ\"), wait for every answer, print one JSON line:\n"
	"{\"conns\":N,\"opened\":O,\"sent\":S,\"ok\":K,\"nak\":A,\"timeout\":T,\"closed\":C,\n"
	"\"seconds\":X} and exit 0 when every send succeeded.\n",
	NULL, true, 1, "expects one URL",
};

static int cmd_swarm(int argc, char **argv)
{
	struct common o;
	struct swarm_st st = { 0 };
	struct rb_conn_opts co;
	long nconns = 10, count = 1, qos = 1, msgtype = 1, total;
	int timeout_ms = 30000;
	const char *prefix = NULL;
	struct rb_conn **conns;
	struct rb_ctx *ctx;
	int64_t t0, end;
	const struct opt own[] = {
		{ OPT("conns", OPT_INT, &nconns, "N", "connections (default 10)"),
		  .lo = 1, .hi = 1000000 },
		{ OPT("count", OPT_INT, &count, "M", "messages per connection (default 1)"),
		  .lo = 0, .hi = 1000000 },
		{ OPT("qos", OPT_INT, &qos, "N", "0, 1 or 2 (default 1)"), .lo = 0, .hi = 2 },
		{ OPT("msgtype", OPT_INT, &msgtype, "T", "(default 1)"), .lo = 0, .hi = 65535 },
		{ OPT("timeout", OPT_SECS, &timeout_ms, "S", "per message (default 30)") },
		{ OPT("device-prefix", OPT_STR, &prefix, "P",
		      "device ids P0, P1, ... (default: none)") },
		OPT_TOKEN(&o, NULL),
		OPT_API(&o, NULL),
	};

	parse_opts(&swarm_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
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
			if (rb_send(conns[i], (uint16_t)msgtype, (int)qos, payload, (size_t)n, 0,
				    swarm_done, &st) != RB_OK)
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

/* The REST commands' --token, and the end of their help. */
static const char rest_token_help[] =
	"security token for the v1 signature (default: $RAINBOW_TOKEN)";
static const char rest_footer[] =
	"The answer's JSON is printed on stdout; exit 0 when it says status 0.\n";

static const struct cmd push_cmd = {
	"push",
	"usage: rainbow-cli push API_URL TARGET DATA [options]\n"
	"POST /send/ (signed): push DATA (or - for stdin) to the channel TARGET.\n",
	rest_footer, false, 3, "expects API_URL TARGET DATA",
};

static int cmd_push(int argc, char **argv)
{
	static const char *const kinds[] = { "channel", "identity", "device", NULL };
	struct common o;
	const char *to = "channel", *qos = NULL, *msgtype = NULL, *timeout = NULL;
	char query[4096] = "";
	struct rb_http_resp r;
	char err[256];
	int rc, wait_ms = 10000;
	char *data;
	size_t len;
	const struct opt own[] = {
		{ OPT("to", OPT_STR, &to, "KIND",
		      "TARGET is a channel (default), identity or device"), .choices = kinds },
		/* checked, then passed on as given */
		{ OPT("qos", OPT_INT, NULL, "N", "0, 1 or 2 (default: the gateway's, 2)"),
		  .lo = 0, .hi = 2, .raw = &qos },
		{ OPT("msgtype", OPT_INT, NULL, "T", "0..65535 (default: the gateway's, 1)"),
		  .lo = 0, .hi = 65535, .raw = &msgtype },
		{ OPT("timeout", OPT_SECS, &wait_ms, "S",
		      "seconds the gateway waits for acknowledgements (default 10)"),
		  .raw = &timeout },
		OPT_TOKEN(&o, rest_token_help),
		OPT_API(&o, NULL),
	};

	parse_opts(&push_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
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

static const struct cmd sub_cmd = {
	"sub",
	"usage: rainbow-cli sub API_URL IDENTITY CHANNEL [--occupy]\n"
	"POST /sub/ (signed): put the connection IDENTITY in CHANNEL; --occupy first\n"
	"removes every other member.\n",
	rest_footer, false, 3, "expects API_URL IDENTITY CHANNEL",
};
static const struct cmd unsub_cmd = {
	"unsub",
	"usage: rainbow-cli unsub API_URL IDENTITY CHANNEL\n"
	"POST /unsub/ (signed): take the connection IDENTITY out of CHANNEL.\n",
	rest_footer, false, 3, "expects API_URL IDENTITY CHANNEL",
};

static int cmd_sub(int argc, char **argv, bool sub)
{
	const char *name = sub ? "sub" : "unsub";
	struct common o;
	bool occupy = false;
	json_t *body;
	const struct opt own[] = {
		/* sub only: unsub's table starts after it */
		{ OPT("occupy", OPT_FLAG, &occupy, NULL, NULL) },
		OPT_TOKEN(&o, rest_token_help),
		OPT_API(&o, NULL),
	};

	parse_opts(sub ? &sub_cmd : &unsub_cmd, own + !sub, RB_ARRAY_LEN(own) - !sub, &o, argc,
		   argv);
	need_token(&o, name);
	body = json_pack("{s:s,s:s}", "identity", argv[optind + 1], "channel", argv[optind + 2]);
	if (body && occupy)
		json_object_set_new(body, "occupy", json_true());
	return rest_json(argv[optind], sub ? "/sub/" : "/unsub/", body, o.token);
}

static const struct cmd kick_cmd = {
	"kick",
	"usage: rainbow-cli kick API_URL IDENTITY [--code N] [--reason R]\n"
	"POST /kick/ (signed): close the connection IDENTITY (default code 4000,\n"
	"reason \"kicked\"; code 1000 or 3000..4999).\n",
	rest_footer, false, 2, "expects API_URL IDENTITY",
};

static int cmd_kick(int argc, char **argv)
{
	struct common o;
	long code = -1;
	const char *reason = NULL;
	json_t *body;
	const struct opt own[] = {
		/* in the usage line, not listed */
		{ OPT("code", OPT_INT, &code, "N", NULL), .lo = 0, .hi = 65535 },
		{ OPT("reason", OPT_STR, &reason, "R", NULL) },
		OPT_TOKEN(&o, rest_token_help),
		OPT_API(&o, NULL),
	};

	parse_opts(&kick_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
	need_token(&o, "kick");
	body = json_pack("{s:s}", "identity", argv[optind + 1]);
	if (body && code >= 0)
		json_object_set_new(body, "code", json_integer(code));
	if (body && reason)
		json_object_set_new(body, "reason", json_string(reason));
	return rest_json(argv[optind], "/kick/", body, o.token);
}

static const struct cmd info_cmd = {
	"info",
	"usage: rainbow-cli info API_URL [--token T] [--password P]\n"
	"GET /serverinfo/?cluster=1: the node as JSON. Signed when a token is known\n"
	"(serverinfo_auth = signature); --password for serverinfo_auth = password.\n",
	NULL, false, 1, "expects API_URL",
};

static int cmd_info(int argc, char **argv)
{
	struct common o;
	const char *password = NULL;
	char headers[600] = "", userpass[300], b64[420];
	struct rb_http_resp r;
	char err[256];
	int rc;
	const struct opt own[] = {
		/* in the usage line, not listed */
		{ OPT("password", OPT_STR, &password, "P", NULL) },
		OPT_TOKEN(&o, NULL),
		OPT_API(&o, NULL),
	};

	parse_opts(&info_cmd, own, RB_ARRAY_LEN(own), &o, argc, argv);
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
