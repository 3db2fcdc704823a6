"""Exactly-once replies for QoS 2 forwards (docs/protocol.md Idempotency
toward the backend, docs/sessions.md Upstream QoS 2 exactly once).

The gateway stores a QoS 2 reply before it sends REC, so a duplicate SEND
is answered without a backend call. The one gap: the gateway dies after
calling the backend and before storing the reply. Then the client's
retransmission is forwarded again with RAINBOWDUP: 1 and the same
RAINBOWMESSAGEID. A store here closes the gap: it records each reply under
the message id, and a forward marked DUP whose id, type and payload match a
recorded reply gets that reply again without running the handler.

Only a DUP forward is answered from the store. A message id is
"<key>:<msgid>" with a 16-bit msgid that a client reuses once an exchange
is over (the gateway forgets it at REL, which the backend never sees), so a
forward without RAINBOWDUP is a new message: it runs and replaces the
record. The replay also requires the same message type and payload (a
SHA-256 fingerprint), so a DUP of a different message under a reused id
runs too. What remains: a client that reuses a msgid for an identical
payload and whose first copy never reached the backend gets the older
reply; and a client that retransmits without the DUP flag runs twice.

Two stores, one interface:

    MemoryStore()          per process; covers the gateway's crash (the
                           backend keeps running), not a backend restart
                           nor several worker processes
    SQLiteStore(path)      a file (stdlib sqlite3, WAL): survives backend
                           restarts and is shared by worker processes

store.run(key, dup, fingerprint, fn) calls fn(db) -> (response, keep) at
most once per message: it returns (response, replayed). SQLiteStore runs fn
inside "BEGIN IMMEDIATE" and records the reply in the same transaction, so
whatever the handler writes through `db` (request.db) commits atomically
with the reply: exactly once even if the backend itself dies mid-way. The
price: QoS 2 handlers sharing one store file run one at a time.
"""
import hashlib
import json
import sqlite3
import threading
import time

__all__ = ["fingerprint", "MemoryStore", "SQLiteStore"]

DEFAULT_TTL = 24 * 3600


def fingerprint(msg_type, body):
    h = hashlib.sha256()
    h.update(str(msg_type).encode() + b"\0")
    h.update(body or b"")
    return h.hexdigest()


class MemoryStore:
    """Replies kept in this process for ttl seconds (at most max_entries)."""

    def __init__(self, ttl=DEFAULT_TTL, max_entries=100000):
        self.ttl = ttl
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._keys = {}      # key -> [lock, users]
        self._replies = {}   # key -> (fingerprint, response, stored_at)
        self._stores = 0

    def _key_lock(self, key):
        with self._lock:
            ent = self._keys.setdefault(key, [threading.Lock(), 0])
            ent[1] += 1
            return ent

    def _release(self, key, ent):
        with self._lock:
            ent[1] -= 1
            if ent[1] == 0:
                self._keys.pop(key, None)

    def _prune(self, now):
        """Drop replies older than ttl, then the oldest beyond max_entries
        (called under the lock, every 256 stores)."""
        horizon = now - self.ttl
        for k in [k for k, v in self._replies.items() if v[2] < horizon]:
            del self._replies[k]
        extra = len(self._replies) - self.max_entries
        if extra > 0:
            for k, _ in sorted(self._replies.items(), key=lambda kv: kv[1][2])[:extra]:
                del self._replies[k]

    def lookup(self, key):
        with self._lock:
            v = self._replies.get(key)
        return None if v is None else {"fingerprint": v[0], "response": v[1], "stored": v[2]}

    def run(self, key, dup, fp, fn):
        ent = self._key_lock(key)
        try:
            with ent[0]:
                now = time.time()
                with self._lock:
                    old = self._replies.get(key)
                if dup and old and old[0] == fp and old[2] >= now - self.ttl:
                    return old[1], True
                try:
                    response, keep = fn(None)
                except BaseException:
                    with self._lock:
                        self._replies.pop(key, None)
                    raise
                with self._lock:
                    if keep:
                        self._replies[key] = (fp, response, now)
                        self._stores += 1
                        if self._stores % 256 == 0 or len(self._replies) > self.max_entries:
                            self._prune(now)
                    else:
                        self._replies.pop(key, None)
                return response, False
        finally:
            self._release(key, ent)


class SQLiteStore:
    """Replies in an SQLite file (table rainbow_replies), for ttl seconds."""

    SCHEMA = ("CREATE TABLE IF NOT EXISTS rainbow_replies ("
              "key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, "
              "headers TEXT NOT NULL, body BLOB NOT NULL, stored REAL NOT NULL)")

    def __init__(self, path, ttl=DEFAULT_TTL, busy_timeout=60.0):
        if not path:
            raise ValueError("SQLiteStore needs a file path")
        self.path = str(path)
        self.ttl = ttl
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._runs = 0
        db = self._db()
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(self.SCHEMA)

    def _db(self):
        db = getattr(self._local, "db", None)
        if db is None:
            # isolation_level None: transactions are begun and ended here,
            # never implicitly by the sqlite3 module
            db = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def close(self):
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def lookup(self, key):
        row = self._db().execute(
            "SELECT fingerprint, status, headers, body, stored FROM rainbow_replies "
            "WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return {"fingerprint": row[0], "stored": row[4],
                "response": (row[1], [tuple(h) for h in json.loads(row[2])], bytes(row[3]))}

    def count(self):
        return self._db().execute("SELECT count(*) FROM rainbow_replies").fetchone()[0]

    def run(self, key, dup, fp, fn):
        db = self._db()
        now = time.time()
        db.execute("BEGIN IMMEDIATE")
        try:
            row = db.execute("SELECT fingerprint, status, headers, body, stored FROM "
                             "rainbow_replies WHERE key = ?", (key,)).fetchone()
            if dup and row and row[0] == fp and row[4] >= now - self.ttl:
                db.execute("COMMIT")
                return (row[1], [tuple(h) for h in json.loads(row[2])], bytes(row[3])), True
            response, keep = fn(db)
            if keep:
                status, headers, body = response
                db.execute("INSERT OR REPLACE INTO rainbow_replies VALUES (?, ?, ?, ?, ?, ?)",
                           (key, fp, status, json.dumps([list(h) for h in headers]),
                            sqlite3.Binary(body), now))
            else:
                db.execute("DELETE FROM rainbow_replies WHERE key = ?", (key,))
            self._runs += 1
            if self._runs % 256 == 0:
                db.execute("DELETE FROM rainbow_replies WHERE stored < ?", (now - self.ttl,))
            db.execute("COMMIT")
            return response, False
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # Whatever is recorded under this key belongs to an earlier
            # message: this one ran (and failed), so it must run again.
            try:
                db.execute("DELETE FROM rainbow_replies WHERE key = ?", (key,))
            except sqlite3.Error:
                pass
            raise
