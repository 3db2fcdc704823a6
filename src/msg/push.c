#include "src/msg/push.h"

#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "src/base/timeutil.h"

struct push {
	struct push *prev, *next;  /* in its set */
	struct push_set *set;
	push_done_fn done;
	void *arg;
	struct push_leg *legs;     /* still open */
	size_t total, acked, failed, pending;
	uint8_t *data;
	size_t data_len;
	bool has_data, sealed;
	struct event *timer;
};

static void finish(struct push *p, bool timed_out)
{
	/* Open legs: not answered in time. Each is detached before its owner
	 * is asked (which may free it). */
	while (p->legs) {
		struct push_leg *l = p->legs;
		p->legs = l->next;
		if (p->legs)
			p->legs->prev = NULL;
		l->prev = l->next = NULL;
		l->push = NULL;
		enum push_outcome o = l->expire ? l->expire(l) : PUSH_FAILED;
		p->total--;
		push_count(p, o, 1);
	}
	struct push_result r = {
		.total = p->total, .acked = p->acked, .failed = p->failed, .pending = p->pending,
		.data = p->has_data ? p->data : NULL, .data_len = p->data_len,
		.timed_out = timed_out,
	};
	if (p->prev)
		p->prev->next = p->next;
	else
		p->set->head = p->next;
	if (p->next)
		p->next->prev = p->prev;
	p->set->n--;
	if (p->timer)
		event_free(p->timer);
	p->done(&r, p->arg);
	free(p->data);
	free(p);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	finish(arg, true);
}

struct push *push_new(struct push_set *set, struct event_base *base, double timeout,
		      push_done_fn done, void *arg)
{
	struct push *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->timer = evtimer_new(base, on_timeout, p);
	if (!p->timer) {
		free(p);
		return NULL;
	}
	struct timeval tv = tv_from_seconds(timeout);
	evtimer_add(p->timer, &tv);
	p->set = set;
	p->done = done;
	p->arg = arg;
	p->next = set->head;
	if (set->head)
		set->head->prev = p;
	set->head = p;
	set->n++;
	return p;
}

void push_leg_add(struct push *p, struct push_leg *l)
{
	l->push = p;
	l->prev = NULL;
	l->next = p->legs;
	if (p->legs)
		p->legs->prev = l;
	p->legs = l;
	p->total++;
}

static void keep_data(struct push *p, const void *data, size_t len)
{
	if (p->has_data || !data)
		return;
	p->data = malloc(len ? len : 1);
	if (!p->data)
		return; /* the receipt goes without it */
	memcpy(p->data, data, len);
	p->data_len = len;
	p->has_data = true;
}

static void maybe_done(struct push *p)
{
	if (p->sealed && !p->legs)
		finish(p, false);
}

static struct push *detach(struct push_leg *l)
{
	struct push *p = l->push;
	if (!p)
		return NULL;
	if (l->prev)
		l->prev->next = l->next;
	else
		p->legs = l->next;
	if (l->next)
		l->next->prev = l->prev;
	l->prev = l->next = NULL;
	l->push = NULL;
	return p;
}

void push_count(struct push *p, enum push_outcome o, size_t n)
{
	p->total += n;
	if (o == PUSH_ACKED)
		p->acked += n;
	else if (o == PUSH_PENDING)
		p->pending += n;
	else
		p->failed += n;
}

void push_leg_done(struct push_leg *l, enum push_outcome o, const void *data, size_t len)
{
	struct push *p = detach(l);
	if (!p)
		return;
	p->total--; /* push_count adds it back with its outcome */
	push_count(p, o, 1);
	if (o == PUSH_ACKED)
		keep_data(p, data, len);
	maybe_done(p);
}

void push_leg_counts(struct push_leg *l, size_t acked, size_t failed, size_t pending,
		     const void *data, size_t len)
{
	struct push *p = detach(l);
	if (!p)
		return;
	/* The leg stood for an unknown number of recipients: its counts
	 * replace the one it was counted as. */
	p->total--;
	push_count(p, PUSH_ACKED, acked);
	push_count(p, PUSH_FAILED, failed);
	push_count(p, PUSH_PENDING, pending);
	if (acked)
		keep_data(p, data, len);
	maybe_done(p);
}

void push_seal(struct push *p)
{
	p->sealed = true;
	maybe_done(p);
}

void push_set_abort(struct push_set *set)
{
	while (set->head)
		finish(set->head, true);
}
