#include "src/msg/session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <event2/event.h>

#include "protocol/rb.h"
#include "src/base/conf.h"
#include "src/core/commit.h"
#include "src/core/core.h"
#include "src/msg/engine.h"
#include "src/msg/membership.h"
#include "src/base/log.h"
#include "src/base/metrics.h"
#include "src/base/strmap.h"
#include "src/base/timeutil.h"
#include "storage/db.h"
#include "storage/qos_store.h"

static void on_expire(evutil_socket_t fd, short what, void *arg)
{
	struct core *c = arg;
	size_t n = 0;

	core_batch(c);
	if (db_sessions_expire(c->db, (int64_t)time(NULL), &n) == RB_OK && n)
		log_info("sessions: %zu expired and deleted", n);
}

int session_init(struct core *c, char *err, size_t errlen)
{
	const struct conf *conf = c->conf;
	char path[1024];
	enum db_durability d = !strcmp(conf->durability, "full") ? DB_FULL :
			       !strcmp(conf->durability, "off") ? DB_OFF : DB_NORMAL;

	if (*conf->database)
		snprintf(path, sizeof(path), "%s", conf->database);
	else
		snprintf(path, sizeof(path), "%s/rainbow.db", *conf->data_dir ? conf->data_dir : ".");
	c->db = db_open(path, d, err, errlen);
	if (!c->db)
		return RB_EIO;
	c->dstore = qos_sqlite_new(c->db);
	if (c->dstore)
		commit_set_store(c->commit, c->dstore); /* batches drive its transactions */
	c->sessions = strmap_new();
	c->expire_timer = event_new(c->base, -1, EV_PERSIST, on_expire, c);
	if (!c->dstore || !c->sessions || !c->expire_timer) {
		snprintf(err, errlen, "out of memory");
		return RB_ENOMEM;
	}
	/* After a crash no connection holds any session: their clocks start
	 * now. */
	if (db_sessions_release_all(c->db, (int64_t)time(NULL) + (int64_t)conf->session_expiry) !=
	    RB_OK) {
		snprintf(err, errlen, "%s: cannot update sessions", path);
		return RB_EIO;
	}
	struct db_counts n;
	if (db_counts(c->db, &n) == RB_OK)
		log_info("storage: %s (durability %s): %zu sessions, %zu subscriptions, "
			 "%zu undelivered, %zu QoS 2 replies", path, conf->durability, n.sessions,
			 n.subscriptions, n.deliveries, n.upstream);
	double every = conf->session_expiry / 4 < 60 ? conf->session_expiry / 4 : 60;
	struct timeval tv = tv_from_seconds(every < 0.1 ? 0.1 : every);
	event_add(c->expire_timer, &tv);
	on_expire(-1, 0, c);
	return RB_OK;
}

void session_fini(struct core *c)
{
	if (c->expire_timer)
		event_free(c->expire_timer);
	strmap_free(c->sessions);
	if (c->dstore)
		c->dstore->ops->free(c->dstore);
	db_close(c->db);
}

bool session_wanted(const struct conn *cn)
{
	return cn->device_given && (cn->wants_session || cn->v2);
}

struct conn *session_holder(struct core *c, const char *device)
{
	return c->sessions ? strmap_get(c->sessions, device) : NULL;
}

bool session_offline(struct core *c, const char *device)
{
	struct db_session s;
	return !session_holder(c, device) && db_session_get(c->db, device, &s) == RB_OK &&
	       s.expires_at > (int64_t)time(NULL);
}

static void restore_sub(const char *channel, void *arg)
{
	struct conn *cn = arg;
	conn_join(cn->core, cn, channel); /* already persisted */
}

bool session_attach(struct core *c, struct conn *cn)
{
	struct db_session s;
	bool present;
	time_t now = time(NULL);

	struct conn *old = session_holder(c, cn->device_id);
	if (old) {
		/* MQTT's rule: the newest connection of a client wins. */
		log_info("device %s: session taken over by conn %s from %s", cn->device_id,
			 cn->identity, old->identity);
		session_detach(c, old);
		core_close_conn(c, old->id, 4409, "session taken over");
	}
	core_batch(c);
	present = db_session_get(c->db, cn->device_id, &s) == RB_OK &&
		  (s.expires_at == 0 || s.expires_at > (int64_t)now);
	if (!present) {
		/* Expired (or never was): start clean. */
		db_session_delete(c->db, cn->device_id);
		s.next_msgid = 0;
	}
	s.expires_at = 0;
	if (db_session_put(c->db, cn->device_id, &s) != RB_OK ||
	    strmap_put(c->sessions, cn->device_id, cn) != RB_OK) {
		log_warn("device %s: cannot keep its session; continuing without one",
			 cn->device_id);
		return false;
	}
	cn->session = true;
	cn->next_msgid = s.next_msgid;
	/* Channels joined before the session was attached (from the connect
	 * hook's answer, or a /sub/ during the upgrade) belong to it too. */
	for (size_t i = 0; i < cn->chans.n; i++)
		db_sub_add(c->db, cn->device_id, cn->chans.v[i].name);
	if (present)
		db_subs_of(c->db, cn->device_id, restore_sub, cn);
	log_info("device %s: session %s by conn %s", cn->device_id,
		 present ? "resumed" : "started", cn->identity);
	c->engine->ops->device(c->engine, cn->device_id, true);
	return present;
}

struct admit {
	struct core *c;
	uint64_t conn_id;
	char device[];
};

static void on_taken(int rc, void *arg)
{
	struct admit *a = arg;
	struct conn *cn = core_conn(a->c, a->conn_id);
	if (rc != RB_OK)
		log_warn("device %s: its session could not move here (%s); starting without it",
			 a->device, rb_strerror(rc));
	if (cn)
		core_admit(a->c, cn);
	free(a);
}

void session_admit(struct core *c, struct conn *cn)
{
	uint32_t node;
	struct db_session s;
	bool here = session_holder(c, cn->device_id) ||
		    (db_session_get(c->db, cn->device_id, &s) == RB_OK &&
		     (s.expires_at == 0 || s.expires_at > (int64_t)time(NULL)));
	if (session_wanted(cn) && !here &&
	    (node = c->engine->ops->locate_device(c->engine, cn->device_id))) {
		size_t n = strlen(cn->device_id) + 1;
		struct admit *a = malloc(sizeof(*a) + n);
		if (a) {
			a->c = c;
			a->conn_id = cn->id;
			memcpy(a->device, cn->device_id, n);
			log_info("device %s: its session is on node %08x; moving it here",
				 cn->device_id, node);
			if (c->engine->ops->take_session(c->engine, node, cn->device_id, on_taken,
							 a) == RB_OK)
				return;
			free(a);
		}
	}
	core_admit(c, cn);
}

void session_evict(struct core *c, const char *device)
{
	struct conn *cn = session_holder(c, device);
	if (!cn)
		return;
	log_info("device %s: session moves to another node; closing conn %s", device,
		 cn->identity);
	session_detach(c, cn);
	core_close_conn(c, cn->id, 4409, "session moved to another node");
}

void session_detach(struct core *c, struct conn *cn)
{
	/* A connection whose session was taken over no longer speaks for it. */
	if (!cn->session || strmap_get(c->sessions, cn->device_id) != cn)
		return;
	struct db_session s = {
		.expires_at = (int64_t)time(NULL) + (int64_t)c->conf->session_expiry,
		.next_msgid = cn->next_msgid,
	};
	core_batch(c);
	db_session_put(c->db, cn->device_id, &s);
	strmap_del(c->sessions, cn->device_id);
	/* cn->session stays set: its in-memory deliveries go with the
	 * connection, their rows stay for the next holder. */
}

void session_sub(struct core *c, struct conn *cn, const char *channel, bool sub)
{
	if (!cn->session)
		return;
	core_batch(c);
	if (sub)
		db_sub_add(c->db, cn->device_id, channel);
	else
		db_sub_del(c->db, cn->device_id, channel);
}

int session_next_msgid(struct core *c, const char *device, uint16_t *msgid)
{
	struct db_session s;
	if (db_session_get(c->db, device, &s) != RB_OK)
		return RB_ENOTFOUND;
	s.next_msgid = (uint16_t)(s.next_msgid % 65535 + 1);
	*msgid = s.next_msgid;
	core_batch(c);
	return db_session_put(c->db, device, &s);
}
