#include "src/core/commit.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "protocol/rb.h"
#include "src/base/log.h"
#include "src/edge/seam.h"
#include "src/http/httpd.h"
#include "storage/qos_store.h"

struct held_reply {
	struct held_reply *next;
	struct httpd_req *req;
	int status;
	char *ctype;
	char *body;
	size_t len;
};

struct held_call {
	struct held_call *next;
	void (*fn)(void *arg, bool committed);
	void *arg;
};

struct commit {
	struct qos_store *store;
	commit_edge_fn to_edge;
	void *edge_arg;
	struct event *ev;          /* the COMMIT, at the lowest priority */
	bool open;
	unsigned ops;              /* writes in the open batch */
	unsigned marks;            /* BATCH_* events it contains */
	unsigned crash_at;
	struct xq_msg *edge_head, *edge_tail;
	struct held_reply *rep_head, *rep_tail;
	struct held_call *call_head, *call_tail;
	size_t held;
};

static unsigned crash_point_from_env(void)
{
	const char *v = getenv("RAINBOW_CRASH_AT");
	if (!v)
		return 0;
	if (!strcmp(v, "push_committed"))
		return BATCH_PUSH;
	if (!strcmp(v, "ack_committed"))
		return BATCH_ACK;
	if (!strcmp(v, "rec_committed"))
		return BATCH_REC;
	log_warn("RAINBOW_CRASH_AT=%s: unknown crash point, ignored", v);
	return 0;
}

static void on_commit(evutil_socket_t fd, short what, void *arg)
{
	commit_now(arg);
}

struct commit *commit_new(struct event_base *base, commit_edge_fn to_edge, void *arg)
{
	struct commit *cm = calloc(1, sizeof(*cm));
	if (!cm)
		return NULL;
	commit_set_edge(cm, to_edge, arg);
	cm->crash_at = crash_point_from_env();
	cm->ev = event_new(base, -1, 0, on_commit, cm);
	if (!cm->ev || event_priority_set(cm->ev, 2) != 0) {
		commit_free(cm);
		return NULL;
	}
	return cm;
}

void commit_set_store(struct commit *cm, struct qos_store *store)
{
	cm->store = store;
}

void commit_set_edge(struct commit *cm, commit_edge_fn to_edge, void *arg)
{
	cm->to_edge = to_edge;
	cm->edge_arg = arg;
}

/* Acknowledgements (anything a client reads as a promise) are packets;
 * everything else that goes to the edge is control. */
static bool acknowledges(const struct xq_msg *m)
{
	return m->type == XQ_SEND;
}

static void release(struct commit *cm, bool committed)
{
	struct xq_msg *m = cm->edge_head, *mn;
	cm->edge_head = cm->edge_tail = NULL;
	for (; m; m = mn) {
		mn = m->next;
		if ((committed || !acknowledges(m)) && cm->to_edge)
			cm->to_edge(cm->edge_arg, m);
		else
			xq_msg_free(m);
	}
	struct held_reply *r = cm->rep_head, *rn;
	cm->rep_head = cm->rep_tail = NULL;
	for (; r; r = rn) {
		rn = r->next;
		if (committed)
			httpd_reply(r->req, r->status, r->ctype, r->body, r->len);
		else
			httpd_reply_error(r->req, 503, "storage error");
		free(r->ctype);
		free(r->body);
		free(r);
	}
	struct held_call *k = cm->call_head, *kn;
	cm->call_head = cm->call_tail = NULL;
	for (; k; k = kn) {
		kn = k->next;
		k->fn(k->arg, committed);
		free(k);
	}
	cm->held = 0;
}

void commit_now(struct commit *cm)
{
	if (!cm->open)
		return;
	cm->open = false;
	cm->ops = 0;
	int rc = cm->store->ops->commit(cm->store);
	if (rc != RB_OK) {
		/* Not durable, so not acknowledged: drop what depended on it.
		 * Clients retransmit; REST callers get 503. */
		log_error("storage: COMMIT failed (%s); dropping its acknowledgements",
			  rb_strerror(rc));
		cm->store->ops->rollback(cm->store);
	}
	unsigned marks = cm->marks;
	cm->marks = 0;
	if (rc == RB_OK && (marks & cm->crash_at)) {
		log_warn("RAINBOW_CRASH_AT: killing the process after a commit (test fault injection)");
		raise(SIGKILL);
	}
	release(cm, rc == RB_OK);
}

void commit_free(struct commit *cm)
{
	if (!cm)
		return;
	if (cm->open)
		commit_now(cm);
	release(cm, true);
	if (cm->ev)
		event_free(cm->ev);
	free(cm);
}

void commit_batch(struct commit *cm)
{
	if (!cm->store)
		return;
	if (cm->open && ++cm->ops >= COMMIT_MAX_OPS)
		commit_now(cm);
	if (cm->open)
		return;
	if (cm->store->ops->begin(cm->store) != RB_OK) {
		log_error("storage: cannot begin a transaction");
		return;
	}
	cm->open = true;
	/* Lowest priority: it runs once this loop pass has nothing else to
	 * do, so everything handled meanwhile shares one COMMIT. */
	event_active(cm->ev, EV_TIMEOUT, 0);
}

bool commit_is_open(const struct commit *cm)
{
	return cm->open;
}

void commit_mark(struct commit *cm, unsigned mark)
{
	cm->marks |= mark;
}

void commit_push_edge(struct commit *cm, struct xq_msg *m)
{
	if (!cm->open) {
		cm->to_edge(cm->edge_arg, m);
		return;
	}
	m->next = NULL;
	if (cm->edge_tail)
		cm->edge_tail->next = m;
	else
		cm->edge_head = m;
	cm->edge_tail = m;
	cm->held++;
}

void commit_reply(struct commit *cm, struct httpd_req *req, int status, const char *ctype,
		  const char *body, size_t len)
{
	if (!cm->open) {
		httpd_reply(req, status, ctype, body, len);
		return;
	}
	struct held_reply *r = calloc(1, sizeof(*r));
	if (r) {
		r->ctype = ctype ? strdup(ctype) : NULL;
		r->body = malloc(len ? len : 1);
	}
	if (!r || !r->body || (ctype && !r->ctype)) {
		if (r) {
			free(r->ctype);
			free(r->body);
		}
		free(r);
		httpd_reply_error(req, 503, "out of memory");
		return;
	}
	memcpy(r->body, body, len);
	r->req = req;
	r->status = status;
	r->len = len;
	if (cm->rep_tail)
		cm->rep_tail->next = r;
	else
		cm->rep_head = r;
	cm->rep_tail = r;
	cm->held++;
}

void commit_hold_call(struct commit *cm, void (*fn)(void *arg, bool committed), void *arg)
{
	struct held_call *k = cm->open ? calloc(1, sizeof(*k)) : NULL;
	if (!k) {
		/* Nothing open: everything written so far is committed. No
		 * memory to wait: say it is not (never claim durability). */
		fn(arg, !cm->open);
		return;
	}
	k->fn = fn;
	k->arg = arg;
	if (cm->call_tail)
		cm->call_tail->next = k;
	else
		cm->call_head = k;
	cm->call_tail = k;
	cm->held++;
}

size_t commit_held(const struct commit *cm)
{
	return cm->held;
}
