"""Helpers shared by test_10_sessions, test_11_crash and test_12_soak (device
sessions and durable QoS, docs/sessions.md). Not a test module.

The database is read through Gateway.db() (read-only, stdlib sqlite3); the
schema is the one documented at the top of storage/db.c:
    sessions(device, expires_at, next_msgid)      expires_at 0 = held by a connection
    subscriptions(device, channel)
    messages(id, msgtype, qos, payload)
    deliveries(device, msgid, message_id, state, sent, seq)
    upstream(device, msgid, state, reply)
"""
import asyncio
import http.client
import struct
import time

import rainbow as rb
from rainbow import Client

MSGTYPE = 1002          # 03ea


def session_query(device):
    """v1 upgrade query of a client that asks for its device's session."""
    return {"X-DEVICEID": device, "session": "1"}


async def open_session(gw, device, v2=False, via_header=False, held=True, **kw):
    """A connection holding `device`'s session: v1 with ?X-DEVICEID=&session=1,
    or v2 (rainbow.v2 subprotocol, device id only). via_header: send the device
    id (and session=1) as headers instead of query arguments.

    held: return only once the session row says it is held (expires_at = 0).
    The 101 can reach the client before the gateway has attached the session
    (see test_device_push_right_after_handshake), and a v1 client has no HELLO
    to wait for; the tests that are not about that race wait here."""
    q, h = {}, {}
    want = {"X-DEVICEID": device} if v2 else session_query(device)
    (h if via_header else q).update(want)
    c = await Client.open(gw, query=q, headers=h,
                          subprotocols=["rainbow.v2"] if v2 else None, **kw)
    if held:
        await wait_held(gw, device)
    return c


async def wait_held(gw, device, timeout=5.0):
    """The device's session row exists and is held by a connection (expires_at 0)."""
    await await_db(gw, lambda g: (session_row(g, device) or (1,))[0] == 0, timeout,
                   "session %s held (expires_at = 0)" % device)


async def push(gw, query, body, **kw):
    """POST /send/ from a thread (the event loop keeps serving the clients)."""
    return await asyncio.to_thread(gw.push, query, body, **kw)


def start_push(gw, query, body, **kw):
    return asyncio.get_running_loop().create_task(push(gw, query, body, **kw))


async def call_error(call):
    """The outcome of a start_push() task whose gateway died before answering:
    the HTTP call must fail with a connection error (no status line at all).
    Returns the exception."""
    try:
        r = await call
    except (OSError, http.client.HTTPException) as e:
        return e
    raise AssertionError("the gateway answered /send/ before dying: HTTP %d %r" % (
        r.status, r.json))


def dq(device, qos=1, timeout=3, msgtype=MSGTYPE):
    """/send/ query targeting a device."""
    return {"device": device, "msgtype": msgtype, "qos": qos, "timeout": timeout}


def cq(channel, qos=1, timeout=3, msgtype=MSGTYPE):
    """/send/ query targeting a channel."""
    return {"channel": channel, "msgtype": msgtype, "qos": qos, "timeout": timeout}


def pending_answer(pending=1, connections=0, failed=0, data=None):
    return {"status": 0, "connections": connections, "failed": failed, "pending": pending,
            "data": data}


def check_send(data, qos, payload, msgtype=MSGTYPE, dup=False):
    """Assert the exact bytes of a pushed SEND (qos 1/2) whatever its msgid;
    dup=None accepts either DUP flag. Returns (msgid, dup)."""
    assert len(data) >= 5, "short frame %s" % data.hex()
    mid = struct.unpack(">H", data[3:5])[0]
    got_dup = bool(data[0] & 0x08)
    want = rb.send(msgtype, payload, qos=qos, msgid=mid,
                   dup=got_dup if dup is None else dup)
    assert data == want, "got %s (%s), want %s (%s)" % (
        data.hex(), rb.describe(data), want.hex(), rb.describe(want))
    assert 1 <= mid <= 65535, mid
    return mid, got_dup


async def frames_for(c, t):
    """Every frame a client receives within t seconds (stops at a close)."""
    out = []
    deadline = time.monotonic() + t
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        try:
            m = await asyncio.wait_for(c.ws.recv(), left)
        except asyncio.TimeoutError:
            return out
        except Exception:   # closed
            return out
        out.append(m if isinstance(m, bytes) else m.encode())


async def expect_dead(c, timeout=5.0):
    """The connection ends (gateway killed) without delivering any frame."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "connection still open %.1f s after the gateway died" % timeout
        try:
            m = await asyncio.wait_for(c.ws.recv(), left)
        except asyncio.TimeoutError:
            raise AssertionError("connection still open %.1f s after the gateway died"
                                 % timeout) from None
        except Exception:
            return
        raise AssertionError("frame before the connection died: %s (%s)" % (
            m.hex() if isinstance(m, bytes) else m, rb.describe(m)
            if isinstance(m, bytes) else "text"))


# ------------------------------------------------------------------ database

def deliveries(gw, device):
    """The device's deliveries, oldest first: dicts with msgid, state, sent, seq,
    msgtype, qos, payload (joined with messages)."""
    rows = gw.db("SELECT d.msgid, d.state, d.sent, d.seq, m.msgtype, m.qos, m.payload "
                 "FROM deliveries d JOIN messages m ON m.id = d.message_id "
                 "WHERE d.device = ? ORDER BY d.seq", (device,))
    keys = ("msgid", "state", "sent", "seq", "msgtype", "qos", "payload")
    return [dict(zip(keys, r)) for r in rows]


def session_row(gw, device):
    """(expires_at, next_msgid) of the device's session, or None."""
    rows = gw.db("SELECT expires_at, next_msgid FROM sessions WHERE device = ?", (device,))
    return rows[0] if rows else None


def subscriptions(gw, device):
    return sorted(r[0] for r in gw.db(
        "SELECT channel FROM subscriptions WHERE device = ?", (device,)))


def upstream(gw, device=None):
    if device is None:
        return gw.db("SELECT device, msgid, state, reply FROM upstream ORDER BY device, msgid")
    return gw.db("SELECT device, msgid, state, reply FROM upstream WHERE device = ? "
                 "ORDER BY msgid", (device,))


def wait_db(gw, pred, timeout=5.0, what="database condition"):
    """Poll a condition on the database (pred(gw) -> truthy) with a deadline."""
    last = [None]

    def check():
        last[0] = gw.db_counts()
        return pred(gw)
    try:
        return rb.wait_until(check, timeout, interval=0.05, what=what)
    except AssertionError as e:
        raise AssertionError("%s; rows: %r" % (e, last[0])) from None


async def await_db(gw, pred, timeout=5.0, what="database condition"):
    """wait_db without blocking the event loop."""
    return await asyncio.to_thread(wait_db, gw, pred, timeout, what)


async def wait_offline(gw, device, timeout=5.0):
    """The gateway noticed the device's last connection closed: its session row
    carries an expiry time (expires_at > 0)."""
    await await_db(gw, lambda g: (session_row(g, device) or (0,))[0] > 0, timeout,
                   "session %s released (expires_at > 0)" % device)


def drops(gw, reason):
    return rb.metric_value(gw.metrics(), "rainbow_drops_total", reason=reason) or 0
