/*
 * link.c - the cluster link codec. The contract is in link.h.
 */
#include "protocol/link.h"

#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "protocol/rb.h"
#include "protocol/wire.h"

#define AUTH_LABEL "rainbow-link-auth-v1"

static const char *const type_names[] = {
	[LINK_HELLO] = "HELLO",
	[LINK_AUTH] = "AUTH",
	[LINK_PING] = "PING",
	[LINK_PONG] = "PONG",
	[LINK_INTEREST_FULL] = "INTEREST_FULL",
	[LINK_INTEREST_DELTA] = "INTEREST_DELTA",
	[LINK_PUBLISH] = "PUBLISH",
	[LINK_RECEIPT] = "RECEIPT",
	[LINK_OP] = "OP",
	[LINK_OP_RESULT] = "OP_RESULT",
	[LINK_PRESENCE_REQ] = "PRESENCE_REQ",
	[LINK_PRESENCE_RESP] = "PRESENCE_RESP",
	[LINK_BYE] = "BYE",
	[LINK_DEVICES_FULL] = "DEVICES_FULL",
	[LINK_DEVICE_DELTA] = "DEVICE_DELTA",
	[LINK_SESSION_TAKE] = "SESSION_TAKE",
	[LINK_SESSION_STATE] = "SESSION_STATE",
	[LINK_SESSION_DONE] = "SESSION_DONE",
	[LINK_INFO_REQ] = "INFO_REQ",
	[LINK_INFO_RESP] = "INFO_RESP",
};

const char *link_type_name(uint8_t type)
{
	return type >= 1 && type <= LINK_TYPE_MAX ? type_names[type] : "?";
}

/* --- encode ------------------------------------------------------------ */

/* A NULL pointer with bytes behind it is the caller's bug: refuse it. */
static void put_str(struct wire_w *w, struct link_str s)
{
	if (s.p == NULL && s.n != 0)
		w->err = true;
	else
		wire_str(w, s.p, s.n);
}

static void put_blob(struct wire_w *w, struct link_str s)
{
	if (s.p == NULL && s.n != 0)
		w->err = true;
	else
		wire_blob(w, s.p, s.n);
}

static void put_count(struct wire_w *w, size_t n)
{
	if (n > UINT32_MAX)
		w->err = true;
	wire_u32(w, (uint32_t)n);
}

/* A list is written from its items or, for a decoded one (items NULL),
 * copied from its raw bytes: the count, then true when that copy was it. */
static bool put_list_head(struct wire_w *w, size_t n, bool has_items, const uint8_t *raw,
			  size_t raw_len)
{
	put_count(w, n);
	if (has_items || n == 0)
		return false;
	if (raw == NULL)
		w->err = true;
	else
		wire_put(w, raw, raw_len);
	return true;
}

static void put_names(struct wire_w *w, const struct link_names *l)
{
	if (put_list_head(w, l->n, l->items != NULL, l->raw, l->raw_len))
		return;
	for (size_t i = 0; i < l->n; i++)
		put_str(w, l->items[i]);
}

static void put_members(struct wire_w *w, const struct link_presence_list *l)
{
	if (put_list_head(w, l->n, l->items != NULL, l->raw, l->raw_len))
		return;
	for (size_t i = 0; i < l->n; i++) {
		put_str(w, l->items[i].identity);
		put_str(w, l->items[i].device);
		put_str(w, l->items[i].platform);
	}
}

static bool dlv_ok(const struct link_dlv_entry *d)
{
	return d->state >= 1 && d->state <= 3 && d->qos >= 1 && d->qos <= 2;
}

static void put_dlvs(struct wire_w *w, const struct link_dlv_list *l)
{
	if (put_list_head(w, l->n, l->items != NULL, l->raw, l->raw_len))
		return;
	for (size_t i = 0; i < l->n; i++) {
		const struct link_dlv_entry *d = &l->items[i];
		if (!dlv_ok(d))
			w->err = true;
		wire_u16(w, d->msgid);
		wire_u8(w, d->state);
		wire_u8(w, d->sent ? 1 : 0);
		wire_u8(w, d->qos);
		wire_u16(w, d->msgtype);
		put_blob(w, d->payload);
	}
}

static void put_ups(struct wire_w *w, const struct link_up_list *l)
{
	if (put_list_head(w, l->n, l->items != NULL, l->raw, l->raw_len))
		return;
	for (size_t i = 0; i < l->n; i++) {
		const struct link_up_entry *u = &l->items[i];
		if (u->state < 1 || u->state > 2)
			w->err = true;
		wire_u16(w, u->msgid);
		wire_u8(w, u->state);
		put_blob(w, u->reply);
	}
}

/* The payload of m; false when a field is out of range. */
static bool put_payload(struct wire_w *w, const struct link_msg *m)
{
	const uint8_t part_mask = LINK_PART_FIRST | LINK_PART_LAST;

	switch (m->type) {
	case LINK_HELLO:
		if (m->u.hello.node_id == 0)
			return false;
		wire_u8(w, m->u.hello.version);
		wire_u32(w, m->u.hello.node_id);
		wire_u64(w, m->u.hello.incarnation);
		wire_u16(w, m->u.hello.port);
		put_str(w, m->u.hello.cluster);
		wire_put(w, m->u.hello.challenge, LINK_CHALLENGE_LEN);
		return true;
	case LINK_AUTH:
		wire_put(w, m->u.auth.mac, LINK_MAC_LEN);
		return true;
	case LINK_PING:
	case LINK_PONG:
		wire_u64(w, m->u.ping.seq);
		return true;
	case LINK_INTEREST_FULL:
	case LINK_DEVICES_FULL: /* the same layout, naming devices */
		if (m->u.interest_full.flags & ~part_mask)
			return false;
		wire_u8(w, m->u.interest_full.flags);
		put_names(w, &m->u.interest_full.channels);
		return true;
	case LINK_INTEREST_DELTA:
	case LINK_DEVICE_DELTA:
		wire_u8(w, m->u.interest_delta.add ? 1 : 0);
		put_str(w, m->u.interest_delta.channel);
		return true;
	case LINK_PUBLISH:
		if (m->u.publish.target_kind < LINK_TO_CHANNEL ||
		    m->u.publish.target_kind > LINK_TO_DEVICE || m->u.publish.qos > 2)
			return false;
		wire_u64(w, m->u.publish.push_id);
		wire_u8(w, m->u.publish.target_kind);
		put_str(w, m->u.publish.target);
		wire_u8(w, m->u.publish.qos);
		wire_u16(w, m->u.publish.msgtype);
		wire_u32(w, m->u.publish.timeout_ms);
		put_blob(w, m->u.publish.payload);
		return true;
	case LINK_RECEIPT:
		wire_u64(w, m->u.receipt.push_id);
		wire_u32(w, m->u.receipt.acked);
		wire_u32(w, m->u.receipt.failed);
		wire_u32(w, m->u.receipt.pending);
		wire_u8(w, m->u.receipt.has_data ? 1 : 0);
		if (m->u.receipt.has_data)
			put_blob(w, m->u.receipt.data);
		else if (m->u.receipt.data.n != 0)
			return false;
		return true;
	case LINK_OP:
		if (m->u.op.kind < LINK_OP_SUB || m->u.op.kind > LINK_OP_OCCUPY)
			return false;
		wire_u64(w, m->u.op.op_id);
		wire_u8(w, m->u.op.kind);
		put_str(w, m->u.op.identity);
		put_str(w, m->u.op.channel);
		wire_u32(w, (uint32_t)m->u.op.code);
		put_str(w, m->u.op.reason);
		return true;
	case LINK_OP_RESULT:
		wire_u64(w, m->u.op_result.op_id);
		wire_u32(w, (uint32_t)m->u.op_result.rc);
		return true;
	case LINK_PRESENCE_REQ:
		wire_u64(w, m->u.presence_req.req_id);
		put_str(w, m->u.presence_req.channel);
		return true;
	case LINK_PRESENCE_RESP:
		if (m->u.presence_resp.flags & ~part_mask)
			return false;
		wire_u64(w, m->u.presence_resp.req_id);
		wire_u8(w, m->u.presence_resp.flags);
		put_members(w, &m->u.presence_resp.members);
		return true;
	case LINK_BYE:
		return true;
	case LINK_SESSION_TAKE:
		wire_u64(w, m->u.session_take.req_id);
		put_str(w, m->u.session_take.device);
		return true;
	case LINK_SESSION_STATE:
		wire_u64(w, m->u.session_state.req_id);
		wire_u32(w, (uint32_t)m->u.session_state.rc);
		wire_u16(w, m->u.session_state.next_msgid);
		put_names(w, &m->u.session_state.channels);
		put_dlvs(w, &m->u.session_state.dlvs);
		put_ups(w, &m->u.session_state.ups);
		return true;
	case LINK_SESSION_DONE:
		wire_u64(w, m->u.session_done.req_id);
		wire_u32(w, (uint32_t)m->u.session_done.rc);
		return true;
	case LINK_INFO_REQ:
		if (m->u.info.json.n)
			return false;
		wire_u64(w, m->u.info.req_id);
		return true;
	case LINK_INFO_RESP:
		wire_u64(w, m->u.info.req_id);
		put_blob(w, m->u.info.json);
		return true;
	default:
		return false;
	}
}

int link_encode(const struct link_msg *m, uint8_t *out, size_t cap)
{
	struct wire_w count = { 0 }, w = { .p = out, .cap = cap };
	size_t total;

	if (!put_payload(&count, m) || count.err)
		return RB_EINVAL;
	if (count.len > LINK_FRAME_MAX - 1)
		return RB_ETOOBIG;
	total = LINK_HDR_LEN + count.len;
	if (out == NULL)
		return (int)total;
	if (cap < total)
		return RB_ETOOBIG;
	wire_u32(&w, (uint32_t)(1 + count.len));
	wire_u8(&w, m->type);
	put_payload(&w, m);
	if (w.err || w.len != total)
		return RB_EINVAL; /* cannot happen: the same walk as counted */
	return (int)total;
}

/* --- decode ------------------------------------------------------------ */

int link_frame_len(const uint8_t *buf, size_t len)
{
	uint32_t fl;

	if (len < 4)
		return 0;
	fl = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
	     (uint32_t)buf[2] << 8 | buf[3];
	if (fl > LINK_FRAME_MAX)
		return RB_ETOOBIG;
	if (fl == 0)
		return RB_EPROTO;
	if (len < 5)
		return 0;
	if (buf[4] < 1 || buf[4] > LINK_TYPE_MAX)
		return RB_EPROTO;
	if (len - 4 < fl)
		return 0;
	return (int)(4 + fl);
}

static bool get_str(struct wire_r *r, struct link_str *s)
{
	return wire_get_str(r, &s->p, &s->n);
}

static bool get_blob(struct wire_r *r, struct link_str *s)
{
	return wire_get_blob(r, &s->p, &s->n);
}

/* count entries of per strings each: validated, kept as raw bytes. */
static void get_list(struct wire_r *r, size_t per, size_t *n, const uint8_t **raw,
		     size_t *raw_len)
{
	uint32_t count = wire_get_u32(r);
	size_t start = r->off;
	struct link_str s;

	/* Every string takes at least its 2-byte length: a count that cannot
	 * fit fails at once instead of looping. */
	if (r->err || count > wire_left(r) / (2 * per)) {
		r->err = true;
		return;
	}
	for (uint32_t i = 0; i < count && !r->err; i++)
		for (size_t k = 0; k < per; k++)
			get_str(r, &s);
	if (r->err)
		return;
	*n = count;
	*raw = r->p + start;
	*raw_len = r->off - start;
}

static bool get_dlv(struct wire_r *r, struct link_dlv_entry *d)
{
	d->msgid = wire_get_u16(r);
	d->state = wire_get_u8(r);
	uint8_t sent = wire_get_u8(r);
	d->sent = sent == 1;
	d->qos = wire_get_u8(r);
	d->msgtype = wire_get_u16(r);
	get_blob(r, &d->payload);
	return !r->err && sent <= 1 && dlv_ok(d);
}

static bool get_up(struct wire_r *r, struct link_up_entry *u)
{
	u->msgid = wire_get_u16(r);
	u->state = wire_get_u8(r);
	get_blob(r, &u->reply);
	return !r->err && u->state >= 1 && u->state <= 2;
}

/* A list of count entries of at least min bytes each, each checked by
 * get: validated, kept as raw bytes. False for a bad entry (r->err for a
 * truncated one). */
static bool get_entries(struct wire_r *r, size_t min, bool (*get)(struct wire_r *, void *),
			void *scratch, size_t *n, const uint8_t **raw, size_t *raw_len)
{
	uint32_t count = wire_get_u32(r);
	size_t start = r->off;

	if (r->err || count > wire_left(r) / min) {
		r->err = true;
		return true;
	}
	for (uint32_t i = 0; i < count; i++)
		if (!get(r, scratch))
			return r->err;
	*n = count;
	*raw = r->p + start;
	*raw_len = r->off - start;
	return true;
}

static bool get_dlv_v(struct wire_r *r, void *d)
{
	return get_dlv(r, d);
}

static bool get_up_v(struct wire_r *r, void *u)
{
	return get_up(r, u);
}

/* The payload of a message of type m->type; NULL or a reason. */
static const char *get_payload(struct wire_r *r, struct link_msg *m)
{
	const uint8_t part_mask = LINK_PART_FIRST | LINK_PART_LAST;
	const uint8_t *q;
	uint8_t b;

	switch (m->type) {
	case LINK_HELLO:
		m->u.hello.version = wire_get_u8(r);
		m->u.hello.node_id = wire_get_u32(r);
		m->u.hello.incarnation = wire_get_u64(r);
		m->u.hello.port = wire_get_u16(r);
		get_str(r, &m->u.hello.cluster);
		q = wire_get(r, LINK_CHALLENGE_LEN);
		if (q)
			memcpy(m->u.hello.challenge, q, LINK_CHALLENGE_LEN);
		if (!r->err && m->u.hello.node_id == 0)
			return "HELLO with node id 0";
		break;
	case LINK_AUTH:
		q = wire_get(r, LINK_MAC_LEN);
		if (q)
			memcpy(m->u.auth.mac, q, LINK_MAC_LEN);
		break;
	case LINK_PING:
	case LINK_PONG:
		m->u.ping.seq = wire_get_u64(r);
		break;
	case LINK_INTEREST_FULL:
	case LINK_DEVICES_FULL: /* the same layout, naming devices */
		m->u.interest_full.flags = wire_get_u8(r);
		if (!r->err && (m->u.interest_full.flags & ~part_mask))
			return m->type == LINK_INTEREST_FULL ? "unknown INTEREST_FULL flags"
							     : "unknown DEVICES_FULL flags";
		get_list(r, 1, &m->u.interest_full.channels.n,
			 &m->u.interest_full.channels.raw,
			 &m->u.interest_full.channels.raw_len);
		break;
	case LINK_INTEREST_DELTA:
	case LINK_DEVICE_DELTA:
		b = wire_get_u8(r);
		if (!r->err && b > 1)
			return m->type == LINK_INTEREST_DELTA ? "INTEREST_DELTA is neither add nor remove"
							      : "DEVICE_DELTA add is not 0 or 1";
		m->u.interest_delta.add = b == 1;
		get_str(r, &m->u.interest_delta.channel);
		break;
	case LINK_PUBLISH:
		m->u.publish.push_id = wire_get_u64(r);
		m->u.publish.target_kind = wire_get_u8(r);
		if (!r->err && (m->u.publish.target_kind < LINK_TO_CHANNEL ||
				m->u.publish.target_kind > LINK_TO_DEVICE))
			return "unknown PUBLISH target kind";
		get_str(r, &m->u.publish.target);
		m->u.publish.qos = wire_get_u8(r);
		if (!r->err && m->u.publish.qos > 2)
			return "PUBLISH qos over 2";
		m->u.publish.msgtype = wire_get_u16(r);
		m->u.publish.timeout_ms = wire_get_u32(r);
		get_blob(r, &m->u.publish.payload);
		break;
	case LINK_RECEIPT:
		m->u.receipt.push_id = wire_get_u64(r);
		m->u.receipt.acked = wire_get_u32(r);
		m->u.receipt.failed = wire_get_u32(r);
		m->u.receipt.pending = wire_get_u32(r);
		b = wire_get_u8(r);
		if (!r->err && b > 1)
			return "RECEIPT data flag is neither 0 nor 1";
		m->u.receipt.has_data = b == 1;
		if (b == 1)
			get_blob(r, &m->u.receipt.data);
		break;
	case LINK_OP:
		m->u.op.op_id = wire_get_u64(r);
		m->u.op.kind = wire_get_u8(r);
		if (!r->err && (m->u.op.kind < LINK_OP_SUB || m->u.op.kind > LINK_OP_OCCUPY))
			return "unknown OP kind";
		get_str(r, &m->u.op.identity);
		get_str(r, &m->u.op.channel);
		m->u.op.code = (int32_t)wire_get_u32(r);
		get_str(r, &m->u.op.reason);
		break;
	case LINK_OP_RESULT:
		m->u.op_result.op_id = wire_get_u64(r);
		m->u.op_result.rc = (int32_t)wire_get_u32(r);
		break;
	case LINK_PRESENCE_REQ:
		m->u.presence_req.req_id = wire_get_u64(r);
		get_str(r, &m->u.presence_req.channel);
		break;
	case LINK_PRESENCE_RESP:
		m->u.presence_resp.req_id = wire_get_u64(r);
		m->u.presence_resp.flags = wire_get_u8(r);
		if (!r->err && (m->u.presence_resp.flags & ~part_mask))
			return "unknown PRESENCE_RESP flags";
		get_list(r, 3, &m->u.presence_resp.members.n,
			 &m->u.presence_resp.members.raw,
			 &m->u.presence_resp.members.raw_len);
		break;
	case LINK_BYE:
		break;
	case LINK_SESSION_TAKE:
		m->u.session_take.req_id = wire_get_u64(r);
		get_str(r, &m->u.session_take.device);
		break;
	case LINK_SESSION_STATE: {
		struct link_dlv_entry d;
		struct link_up_entry u;
		m->u.session_state.req_id = wire_get_u64(r);
		m->u.session_state.rc = (int32_t)wire_get_u32(r);
		m->u.session_state.next_msgid = wire_get_u16(r);
		get_list(r, 1, &m->u.session_state.channels.n, &m->u.session_state.channels.raw,
			 &m->u.session_state.channels.raw_len);
		if (!get_entries(r, 11, get_dlv_v, &d, &m->u.session_state.dlvs.n,
				 &m->u.session_state.dlvs.raw, &m->u.session_state.dlvs.raw_len))
			return "bad delivery in SESSION_STATE";
		if (!get_entries(r, 7, get_up_v, &u, &m->u.session_state.ups.n,
				 &m->u.session_state.ups.raw, &m->u.session_state.ups.raw_len))
			return "bad upstream entry in SESSION_STATE";
		break;
	}
	case LINK_SESSION_DONE:
		m->u.session_done.req_id = wire_get_u64(r);
		m->u.session_done.rc = (int32_t)wire_get_u32(r);
		break;
	case LINK_INFO_REQ:
		m->u.info.req_id = wire_get_u64(r);
		break;
	case LINK_INFO_RESP:
		m->u.info.req_id = wire_get_u64(r);
		get_blob(r, &m->u.info.json);
		break;
	default:
		return "unknown frame type"; /* link_frame_len refused it already */
	}
	if (r->err)
		return "payload truncated";
	if (wire_left(r) != 0)
		return "trailing bytes in the payload";
	return NULL;
}

int link_decode(const uint8_t *buf, size_t len, struct link_msg *m, const char **why)
{
	int n = link_frame_len(buf, len);
	struct wire_r r;
	const char *bad;

	memset(m, 0, sizeof(*m));
	if (why)
		*why = NULL;
	if (n <= 0) {
		if (why && n == RB_ETOOBIG)
			*why = "frame over LINK_FRAME_MAX";
		else if (why && n < 0)
			*why = buf[0] == 0 && buf[1] == 0 && buf[2] == 0 && buf[3] == 0 ?
			       "empty frame" : "unknown frame type";
		return n;
	}
	m->type = buf[4];
	r = (struct wire_r){ .p = buf + LINK_HDR_LEN, .len = (size_t)n - LINK_HDR_LEN };
	bad = get_payload(&r, m);
	if (bad != NULL) {
		memset(m, 0, sizeof(*m));
		if (why)
			*why = bad;
		return RB_EPROTO;
	}
	return n;
}

bool link_names_next(const struct link_names *l, size_t *pos, struct link_str *out)
{
	struct wire_r r = { .p = l->raw, .len = l->raw_len, .off = *pos };

	if (*pos >= l->raw_len || !get_str(&r, out))
		return false;
	*pos = r.off;
	return true;
}

bool link_presence_next(const struct link_presence_list *l, size_t *pos,
			struct link_presence_entry *out)
{
	struct wire_r r = { .p = l->raw, .len = l->raw_len, .off = *pos };

	if (*pos >= l->raw_len)
		return false;
	get_str(&r, &out->identity);
	get_str(&r, &out->device);
	get_str(&r, &out->platform);
	if (r.err)
		return false;
	*pos = r.off;
	return true;
}

bool link_dlv_next(const struct link_dlv_list *l, size_t *pos, struct link_dlv_entry *out)
{
	struct wire_r r = { .p = l->raw, .len = l->raw_len, .off = *pos };

	if (*pos >= l->raw_len || !get_dlv(&r, out))
		return false;
	*pos = r.off;
	return true;
}

bool link_up_next(const struct link_up_list *l, size_t *pos, struct link_up_entry *out)
{
	struct wire_r r = { .p = l->raw, .len = l->raw_len, .off = *pos };

	if (*pos >= l->raw_len || !get_up(&r, out))
		return false;
	*pos = r.off;
	return true;
}

/* --- handshake --------------------------------------------------------- */

int link_challenge(uint8_t out[LINK_CHALLENGE_LEN])
{
	return RAND_bytes(out, LINK_CHALLENGE_LEN) == 1 ? RB_OK : RB_EIO;
}

int link_auth_mac(const char *secret, const struct link_hello *prover,
		  const struct link_hello *verifier, uint8_t out[LINK_MAC_LEN])
{
	uint8_t buf[sizeof(AUTH_LABEL) - 1 + 2 * LINK_CHALLENGE_LEN + 2 * (4 + 8)];
	struct wire_w w = { .p = buf, .cap = sizeof(buf) };
	unsigned int outlen = 0;

	if (secret == NULL)
		return RB_EINVAL;
	wire_put(&w, AUTH_LABEL, sizeof(AUTH_LABEL) - 1);
	wire_put(&w, verifier->challenge, LINK_CHALLENGE_LEN);
	wire_put(&w, prover->challenge, LINK_CHALLENGE_LEN);
	wire_u32(&w, prover->node_id);
	wire_u64(&w, prover->incarnation);
	wire_u32(&w, verifier->node_id);
	wire_u64(&w, verifier->incarnation);
	if (w.err || w.len != sizeof(buf))
		return RB_EINVAL; /* cannot happen */
	if (HMAC(EVP_sha256(), secret, (int)strlen(secret), buf, w.len, out,
		 &outlen) == NULL || outlen != LINK_MAC_LEN)
		return RB_EIO;
	return RB_OK;
}

int link_auth_verify(const char *secret, const struct link_hello *prover,
		     const struct link_hello *verifier, const uint8_t mac[LINK_MAC_LEN])
{
	uint8_t expect[LINK_MAC_LEN];
	int rc = link_auth_mac(secret, prover, verifier, expect);

	if (rc != RB_OK)
		return rc;
	return CRYPTO_memcmp(expect, mac, LINK_MAC_LEN) == 0 ? RB_OK : RB_EREFUSED;
}
