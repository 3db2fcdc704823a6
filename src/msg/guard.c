#include "src/msg/guard.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#define ROUTES 65536

struct route {
	int inflight, queued;
	int failures;          /* consecutive, toward the breaker */
	enum guard_breaker state;
	bool probe_out;        /* HALF_OPEN: the probe is in flight */
	double open_until;
	struct guard_wait *head, *tail;
	uint64_t rejected_full, rejected_open, failed, opened;
};

struct guard {
	struct guard_opts o;
	/* Indexed by route; allocated on first use. calloc'd pages that are
	 * never touched cost no memory. */
	struct route **r;
};

struct guard *guard_new(const struct guard_opts *o)
{
	if (o->max_inflight < 1 || o->max_queued < 0 || o->breaker_failures < 0 ||
	    !(o->cooldown > 0))
		return NULL;
	struct guard *g = calloc(1, sizeof(*g));
	if (!g || !(g->r = calloc(ROUTES, sizeof(*g->r)))) {
		free(g);
		return NULL;
	}
	g->o = *o;
	return g;
}

void guard_free(struct guard *g)
{
	if (!g)
		return;
	for (size_t i = 0; i < ROUTES; i++)
		free(g->r[i]);
	free(g->r);
	free(g);
}

static struct route *route_get(struct guard *g, uint16_t id)
{
	if (!g->r[id])
		g->r[id] = calloc(1, sizeof(struct route));
	return g->r[id];
}

static void trip(struct guard *g, struct route *r, double now)
{
	r->state = BREAKER_OPEN;
	r->open_until = now + g->o.cooldown;
	r->probe_out = false;
	r->opened++;
}

static double left(const struct route *r, double now)
{
	double s = r->open_until - now;
	return s < 0.001 ? 0.001 : s;
}

/* May a new forward start now? Moves OPEN to HALF_OPEN once the cool-down
 * is over. Returns GO (with *probe), OPEN, or WAIT when only a slot is
 * missing. */
static enum guard_verdict may_start(struct guard *g, struct route *r, double now, bool *probe,
				    double *retry_after)
{
	*probe = false;
	if (r->state == BREAKER_OPEN) {
		if (now < r->open_until) {
			*retry_after = left(r, now);
			return GUARD_OPEN;
		}
		r->state = BREAKER_HALF_OPEN;
		r->probe_out = false;
	}
	if (r->state == BREAKER_HALF_OPEN) {
		if (r->probe_out) {
			*retry_after = g->o.cooldown;
			return GUARD_OPEN;
		}
		r->probe_out = true;
		*probe = true;
		r->inflight++;
		return GUARD_GO;
	}
	if (r->inflight < g->o.max_inflight) {
		r->inflight++;
		return GUARD_GO;
	}
	return GUARD_WAIT;
}

enum guard_verdict guard_admit(struct guard *g, uint16_t route, struct guard_wait *w,
			       double now, bool *probe, double *retry_after)
{
	struct route *r = route_get(g, route);
	*retry_after = 0;
	*probe = false;
	if (!r) {
		/* Out of memory: protection cannot be tracked, let it through
		 * uncounted rather than refuse every forward. */
		return GUARD_GO;
	}
	/* Waiting ones go first: a newcomer never overtakes them. */
	enum guard_verdict v = r->head && r->state == BREAKER_CLOSED ? GUARD_WAIT
								      : may_start(g, r, now, probe,
										  retry_after);
	if (v == GUARD_OPEN) {
		r->rejected_open++;
		return v;
	}
	if (v == GUARD_GO)
		return v;
	if (r->queued >= g->o.max_queued) {
		r->rejected_full++;
		return GUARD_FULL;
	}
	w->route = route;
	w->since = now;
	w->next = NULL;
	w->prev = r->tail;
	if (r->tail)
		r->tail->next = w;
	else
		r->head = w;
	r->tail = w;
	r->queued++;
	return GUARD_WAIT;
}

void guard_done(struct guard *g, uint16_t route, enum guard_outcome outcome, bool probe,
		double now)
{
	bool ok = outcome != GUARD_FAILURE;
	struct route *r = g->r[route];
	if (!r)
		return; /* admitted uncounted (out of memory) */
	if (r->inflight > 0)
		r->inflight--;
	if (!ok)
		r->failed++;
	if (probe) {
		r->probe_out = false;
		if (outcome == GUARD_NEUTRAL)
			return; /* the next forward probes instead */
		if (ok) {
			r->state = BREAKER_CLOSED;
			r->failures = 0;
		} else {
			trip(g, r, now);
		}
		return;
	}
	if (r->state != BREAKER_CLOSED)
		return; /* started before the breaker opened: no say in it */
	if (outcome == GUARD_SUCCESS) {
		r->failures = 0;
	} else if (outcome == GUARD_FAILURE && g->o.breaker_failures &&
		   ++r->failures >= g->o.breaker_failures) {
		r->failures = 0;
		trip(g, r, now);
	}
}

static void unlink_wait(struct route *r, struct guard_wait *w)
{
	if (w->prev)
		w->prev->next = w->next;
	else
		r->head = w->next;
	if (w->next)
		w->next->prev = w->prev;
	else
		r->tail = w->prev;
	w->prev = w->next = NULL;
	r->queued--;
}

struct guard_wait *guard_next(struct guard *g, uint16_t route, double now, bool *go,
			      bool *probe, double *retry_after)
{
	struct route *r = g->r[route];
	if (!r || !r->head)
		return NULL;
	enum guard_verdict v = may_start(g, r, now, probe, retry_after);
	if (v == GUARD_WAIT)
		return NULL;
	struct guard_wait *w = r->head;
	unlink_wait(r, w);
	*go = v == GUARD_GO;
	if (!*go)
		r->rejected_open++;
	return w;
}

void guard_cancel(struct guard *g, struct guard_wait *w)
{
	struct route *r = g->r[w->route];
	if (r)
		unlink_wait(r, w);
}

static struct guard_route_stats stats_of(const struct route *r, uint16_t id)
{
	struct guard_route_stats s = { .route = id };
	if (!r)
		return s;
	s.inflight = r->inflight;
	s.queued = r->queued;
	s.state = r->state;
	s.rejected_full = r->rejected_full;
	s.rejected_open = r->rejected_open;
	s.failures = r->failed;
	s.breaker_opened = r->opened;
	return s;
}

void guard_foreach(const struct guard *g,
		   void (*fn)(const struct guard_route_stats *s, void *arg), void *arg)
{
	for (size_t i = 0; i < ROUTES; i++) {
		if (g->r[i]) {
			struct guard_route_stats s = stats_of(g->r[i], (uint16_t)i);
			fn(&s, arg);
		}
	}
}

struct guard_route_stats guard_stats(const struct guard *g, uint16_t route)
{
	return stats_of(g->r[route], route);
}

static const struct family {
	const char *name, *type, *help;
} families[] = {
	{ "rainbow_route_forwards_in_flight", "gauge", "Forwards in flight per message type" },
	{ "rainbow_route_forwards_queued", "gauge",
	  "Forwards waiting for a slot of their message type" },
	{ "rainbow_route_rejected_total", "counter",
	  "Forwards refused at once per message type (queue_full, breaker_open)" },
	{ "rainbow_route_failures_total", "counter",
	  "Forwards that failed (timeout, unreachable, HTTP 5xx) per message type" },
	{ "rainbow_route_breaker_state", "gauge",
	  "Circuit breaker per message type: 0 closed, 1 open, 2 half-open" },
	{ "rainbow_route_breaker_opened_total", "counter",
	  "Times the circuit breaker of a message type opened" },
};

struct render {
	struct evbuffer *b;
	size_t family;
};

static void render_one(const struct guard_route_stats *s, void *arg)
{
	struct render *rd = arg;
	struct evbuffer *b = rd->b;
	unsigned t = s->route;
	switch (rd->family) {
	case 0:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\"} %d\n", families[0].name, t, s->inflight);
		break;
	case 1:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\"} %d\n", families[1].name, t, s->queued);
		break;
	case 2:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\",reason=\"queue_full\"} %llu\n",
				    families[2].name, t, (unsigned long long)s->rejected_full);
		evbuffer_add_printf(b, "%s{msgtype=\"%u\",reason=\"breaker_open\"} %llu\n",
				    families[2].name, t, (unsigned long long)s->rejected_open);
		break;
	case 3:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\"} %llu\n", families[3].name, t,
				    (unsigned long long)s->failures);
		break;
	case 4:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\"} %d\n", families[4].name, t, (int)s->state);
		break;
	case 5:
		evbuffer_add_printf(b, "%s{msgtype=\"%u\"} %llu\n", families[5].name, t,
				    (unsigned long long)s->breaker_opened);
		break;
	}
}

char *guard_metrics(const struct guard *g)
{
	struct evbuffer *b = evbuffer_new();
	if (!b)
		return NULL;
	/* Prometheus wants each family's samples together: one pass each. */
	for (size_t f = 0; f < sizeof(families) / sizeof(families[0]); f++) {
		evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s %s\n", families[f].name,
				    families[f].help, families[f].name, families[f].type);
		struct render rd = { b, f };
		guard_foreach(g, render_one, &rd);
	}
	size_t len = evbuffer_get_length(b);
	char *s = malloc(len + 1);
	if (s) {
		evbuffer_remove(b, s, len);
		s[len] = 0;
	}
	evbuffer_free(b);
	return s;
}
