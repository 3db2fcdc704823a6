/*
 * outq.c - see outq.h. Singly linked lists with tails; an unlink scans from
 * the head, which is where answers and deadlines usually are (order of
 * sending).
 */
#include "clients/c/outq.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

struct rbc_msg *rbc_msg_new(uint16_t msgtype, uint8_t qos, const void *data, size_t len)
{
	struct rbc_msg *m;

	if (qos > 2 || len > SIZE_MAX - sizeof(*m) - RBC_HEADROOM - PKT_MAX_HDR)
		return NULL;
	m = malloc(sizeof(*m) + RBC_HEADROOM + PKT_MAX_HDR + len);
	if (!m)
		return NULL;
	memset(m, 0, sizeof(*m));
	m->msgtype = msgtype;
	m->qos = qos;
	m->len = len;
	if (len)
		memcpy(rbc_msg_payload(m), data, len);
	return m;
}

uint8_t *rbc_msg_frame(struct rbc_msg *m, size_t *len)
{
	struct pkt p = {
		.cmd = PKT_SEND, .qos = m->qos, .dup = m->dup && m->qos > 0,
		.msgtype = m->msgtype, .msgid = m->msgid,
	};
	uint8_t hdr[PKT_MAX_HDR];
	size_t n = pkt_encode_header(&p, hdr);
	uint8_t *start = rbc_msg_payload(m) - n;

	memcpy(start, hdr, n);
	*len = n + m->len;
	return start;
}

void rbc_outq_init(struct rbc_outq *q, uint32_t max_flight)
{
	memset(q, 0, sizeof(*q));
	q->max_flight = max_flight == 0 || max_flight > 65535 ? 65535 : max_flight;
}

void rbc_outq_push(struct rbc_outq *q, struct rbc_msg *m)
{
	m->next = NULL;
	m->state = RBC_QUEUED;
	if (q->q_tail)
		q->q_tail->next = m;
	else
		q->q_head = m;
	q->q_tail = m;
	q->nqueued++;
	if (m->msgid)
		q->nids++;
}

static bool id_held(const struct rbc_outq *q, uint16_t id)
{
	for (const struct rbc_msg *m = q->f_head; m; m = m->next)
		if (m->msgid == id)
			return true;
	/* Requeued messages keep their ids and sit at the queue's head. */
	for (const struct rbc_msg *m = q->q_head; m && m->msgid; m = m->next)
		if (m->msgid == id)
			return true;
	return false;
}

bool rbc_outq_ready(const struct rbc_outq *q)
{
	const struct rbc_msg *m = q->q_head;

	if (!m)
		return false;
	return m->qos == 0 || m->msgid || q->nids < q->max_flight;
}

struct rbc_msg *rbc_outq_take(struct rbc_outq *q)
{
	struct rbc_msg *m = q->q_head;

	if (!rbc_outq_ready(q))
		return NULL;
	if (m->qos > 0 && !m->msgid) {
		/* nids < max_flight <= 65535, so a free id exists */
		uint16_t id = q->last_id;
		do
			id = id == 65535 ? 1 : (uint16_t)(id + 1);
		while (id_held(q, id));
		m->msgid = id;
		q->last_id = id;
		q->nids++;
	}
	q->q_head = m->next;
	if (!q->q_head)
		q->q_tail = NULL;
	q->nqueued--;
	m->next = NULL;
	if (m->qos == 0)
		return m;
	m->state = RBC_SENT;
	if (q->f_tail)
		q->f_tail->next = m;
	else
		q->f_head = m;
	q->f_tail = m;
	q->nflight++;
	return m;
}

struct rbc_msg *rbc_outq_find(const struct rbc_outq *q, uint16_t msgid)
{
	for (struct rbc_msg *m = q->f_head; m; m = m->next)
		if (m->msgid == msgid)
			return m;
	return NULL;
}

static bool unlink_from(struct rbc_msg **head, struct rbc_msg **tail, struct rbc_msg *m)
{
	struct rbc_msg *prev = NULL;

	for (struct rbc_msg *it = *head; it; prev = it, it = it->next) {
		if (it != m)
			continue;
		if (prev)
			prev->next = m->next;
		else
			*head = m->next;
		if (*tail == m)
			*tail = prev;
		m->next = NULL;
		return true;
	}
	return false;
}

void rbc_outq_drop(struct rbc_outq *q, struct rbc_msg *m)
{
	if (m->state == RBC_QUEUED) {
		bool found = unlink_from(&q->q_head, &q->q_tail, m);
		assert(found);
		(void)found;
		q->nqueued--;
	} else {
		bool found = unlink_from(&q->f_head, &q->f_tail, m);
		assert(found);
		(void)found;
		q->nflight--;
	}
	if (m->msgid)
		q->nids--;
}

uint32_t rbc_outq_requeue(struct rbc_outq *q)
{
	struct rbc_msg *head = NULL, *tail = NULL, *keep = NULL, *keep_tail = NULL;
	uint32_t n = 0;

	for (struct rbc_msg *m = q->f_head, *next; m; m = next) {
		next = m->next;
		m->next = NULL;
		if (m->state == RBC_SENT) {
			m->state = RBC_QUEUED;
			m->dup = true;
			if (tail)
				tail->next = m;
			else
				head = m;
			tail = m;
			n++;
		} else {
			if (keep_tail)
				keep_tail->next = m;
			else
				keep = m;
			keep_tail = m;
		}
	}
	q->f_head = keep;
	q->f_tail = keep_tail;
	q->nflight -= n;
	if (head) {
		tail->next = q->q_head;
		if (!q->q_head)
			q->q_tail = tail;
		q->q_head = head;
		q->nqueued += n;
	}
	return n;
}

static struct rbc_msg *scan(struct rbc_msg *m, int64_t now, int64_t *next)
{
	for (; m; m = m->next) {
		if (!m->deadline)
			continue;
		if (m->deadline <= now)
			return m;
		if (!*next || m->deadline < *next)
			*next = m->deadline;
	}
	return NULL;
}

struct rbc_msg *rbc_outq_expired(struct rbc_outq *q, int64_t now, int64_t *next)
{
	int64_t soonest = 0;
	struct rbc_msg *m = scan(q->f_head, now, &soonest);

	if (!m)
		m = scan(q->q_head, now, &soonest);
	if (m) {
		rbc_outq_drop(q, m);
		soonest = 0; /* not computed over every message */
	}
	if (next)
		*next = soonest;
	return m;
}

struct rbc_msg *rbc_outq_pop(struct rbc_outq *q)
{
	struct rbc_msg *m = q->q_head ? q->q_head : q->f_head;

	if (m)
		rbc_outq_drop(q, m);
	return m;
}
