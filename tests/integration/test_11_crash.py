"""11 crash: kill -9 the gateway at each step of a durable exchange, restart it
on the same database, reconnect with the same device and check exactly what
docs/sessions.md promises: how many times the client gets each packet, how many
times the backend is called, and which rows are left in SQLite.

Kills come from two places:
  - the test sends SIGKILL (Gateway.kill9) at a point it can observe (a SEND
    received, a REL received, the backend holding a forward);
  - the gateway kills itself (RAINBOW_CRASH_AT, test-only fault injection) right
    after the COMMIT of a batch holding the event, before anything depending on
    it leaves: push_committed (before the SEND), ack_committed (before the
    /send/ answer), rec_committed (before the REL and the answer).
Only the process meant to crash gets RAINBOW_CRASH_AT; restarts run without it.
"""
import asyncio
import time

import pytest

import rainbow as rb
from rainbow import run
from session_helpers import (MSGTYPE, await_db, call_error, check_send, deliveries, dq,
                             expect_dead, frames_for, open_session, pending_answer,
                             session_row, start_push, upstream, wait_db)

EMPTY = {"sessions": 1, "subscriptions": 0, "messages": 0, "deliveries": 0, "upstream": 0}


def crash_env(point):
    return {"RAINBOW_CRASH_AT": point}


def crash_gateway(gateway, point=None, **opts):
    """A gateway with short retries; point: its RAINBOW_CRASH_AT (first process only)."""
    opts.setdefault("retry_interval", 0.5)
    gw = gateway(start=False, **opts)
    gw.start(env=crash_env(point) if point else None)
    return gw


def log_has(gw, text):
    return text in gw.log_text()


# ---------------------------------------------------------------- downstream QoS 1

def test_crash_after_push_committed(gateway, backend):
    """(a) The push is committed, then the gateway dies before the SEND leaves:
    the client never saw it, /send/ got no answer; after the restart the client
    gets it exactly once and its ACK empties the tables."""
    gw = crash_gateway(gateway, "push_committed")
    p = b'{"crash":"a"}'

    async def before():
        c = await open_session(gw, "ca")
        call = start_push(gw, dq("ca", timeout=3), p)
        await expect_dead(c, 10)               # no SEND before the kill
        return await call_error(call)
    err = run(before())
    gw.wait_killed()
    print("the /send/ call failed with %r" % err)
    assert log_has(gw, "RAINBOW_CRASH_AT")
    rows = deliveries(gw, "ca")
    assert [(d["payload"], d["qos"], d["msgtype"]) for d in rows] == [(p, 1, MSGTYPE)], rows
    assert gw.db_counts() == dict(EMPTY, messages=1, deliveries=1), gw.db_counts()

    gw.restart()

    async def after():
        c = await open_session(gw, "ca")
        f = await c.recv(3)
        mid, dup = check_send(f, 1, p, dup=None)   # DUP: either (it may have left)
        await c.send(rb.ack(mid, b"ok"))
        await await_db(gw, lambda g: g.db_count("deliveries") == 0, 3, "ACK committed")
        rest = await frames_for(c, 1.2)            # retry_interval 0.5: nothing more
        assert rest == [], [x.hex() for x in rest]
        await c.close()
        return dup
    dup = run(after())
    print("redelivered with DUP=%d" % dup)
    assert gw.db_counts() == EMPTY, gw.db_counts()
    assert backend.count("/forward/") == 0


def test_kill_after_first_send(gateway, backend):
    """(b) The client got the SEND and did not ACK; kill -9; after the restart
    it gets it again, DUP=1, exactly once; its ACK deletes the rows."""
    gw = crash_gateway(gateway)
    p = b'{"crash":"b"}'

    async def before():
        c = await open_session(gw, "cb")
        call = start_push(gw, dq("cb", timeout=5), p)
        f = await c.recv(3)
        mid, _ = check_send(f, 1, p, dup=False)
        gw.kill9()
        await expect_dead(c, 5)
        await call_error(call)
    run(before())
    rows = deliveries(gw, "cb")
    assert [(d["payload"], d["sent"]) for d in rows] == [(p, 1)], rows
    gw.restart()

    async def after():
        c = await open_session(gw, "cb", v2=True)
        assert c.hello["session_present"] is True, c.hello
        f = await c.recv(3)
        assert f[0] == 0x1A, f.hex()
        mid2, _ = check_send(f, 1, p, dup=True)
        await c.send(rb.ack(mid2, b"ok"))
        await await_db(gw, lambda g: g.db_count("deliveries") == 0, 3, "ACK committed")
        rest = await frames_for(c, 1.2)
        assert rest == [], [x.hex() for x in rest]
        await c.close()
    run(after())
    assert gw.db_counts() == EMPTY, gw.db_counts()


def test_crash_after_ack_committed(gateway, backend):
    """(c) The ACK is committed, then the gateway dies before answering /send/:
    the HTTP call fails, and after the restart nothing is sent again."""
    gw = crash_gateway(gateway, "ack_committed")
    p = b'{"crash":"c"}'

    async def before():
        c = await open_session(gw, "cc")
        call = start_push(gw, dq("cc", timeout=5), p)
        mid, _ = check_send(await c.recv(3), 1, p, dup=False)
        await c.send(rb.ack(mid, b"acked"))
        await expect_dead(c, 10)
        return await call_error(call)
    err = run(before())
    gw.wait_killed()
    print("the /send/ call failed with %r" % err)
    assert deliveries(gw, "cc") == []
    assert gw.db_counts() == EMPTY, gw.db_counts()
    gw.restart()

    async def after():
        c = await open_session(gw, "cc")
        await c.expect_no_frame(1.5)
        await c.close()
    run(after())
    assert gw.db_counts() == EMPTY, gw.db_counts()


# ---------------------------------------------------------------- downstream QoS 2

def test_crash_after_rec_committed(gateway, backend):
    """(d) The REC is committed, then the gateway dies before the REL: after the
    restart the client gets REL for that id (not the SEND again); COM ends it."""
    gw = crash_gateway(gateway, "rec_committed")
    p = b'{"crash":"d"}'

    async def before():
        c = await open_session(gw, "cd")
        call = start_push(gw, dq("cd", qos=2, timeout=5), p)
        mid, _ = check_send(await c.recv(3), 2, p, dup=False)
        await c.send(rb.rec(mid, b"received"))
        await expect_dead(c, 10)               # no REL before the kill
        await call_error(call)
        return mid
    mid = run(before())
    gw.wait_killed()
    rows = deliveries(gw, "cd")
    assert [(d["msgid"], d["payload"], d["qos"]) for d in rows] == [(mid, p, 2)], rows
    gw.restart()

    async def after():
        c = await open_session(gw, "cd")
        await c.expect(rb.rel(mid), 3)         # 40 <id>, not the SEND
        await c.send(rb.com(mid))
        await await_db(gw, lambda g: g.db_count("deliveries") == 0, 3, "COM committed")
        rest = await frames_for(c, 1.2)
        assert rest == [], [x.hex() for x in rest]
        await c.close()
    run(after())
    assert gw.db_counts() == EMPTY, gw.db_counts()


def test_kill_after_rel_before_com(gateway, backend):
    """(e) REC answered the /send/ call, REL received, no COM; kill -9: after the
    restart REL comes again (not the SEND); COM deletes the rows."""
    gw = crash_gateway(gateway)
    p = b'{"crash":"e"}'

    async def before():
        c = await open_session(gw, "ce")
        call = start_push(gw, dq("ce", qos=2, timeout=5), p)
        mid, _ = check_send(await c.recv(3), 2, p, dup=False)
        await c.send(rb.rec(mid, b"got"))
        r = await call
        assert (r.status, r.json) == (200, pending_answer(0, connections=1, data="got"))
        await c.expect(rb.rel(mid), 3)
        gw.kill9()
        await frames_for(c, 0.5)               # REL retransmissions until the end
        return mid
    mid = run(before())
    assert [(d["msgid"], d["payload"]) for d in deliveries(gw, "ce")] == [(mid, p)]
    gw.restart()

    async def after():
        c = await open_session(gw, "ce")
        await c.expect(rb.rel(mid), 3)
        await c.send(rb.com(mid))
        await await_db(gw, lambda g: g.db_count("deliveries") == 0, 3, "COM committed")
        rest = await frames_for(c, 1.2)
        assert rest == [], [x.hex() for x in rest]
        await c.close()
    run(after())
    assert gw.db_counts() == EMPTY, gw.db_counts()


# ---------------------------------------------------------------- upstream QoS 2

def test_kill_mid_forward_qos2_forwards_again_with_dup(gateway, backend):
    """(f) The backend holds the forward of SEND qos2 id=5 when the gateway is
    killed: its state is still "forwarding". The client's retransmission is
    forwarded again with RAINBOWDUP: 1 and the same RAINBOWMESSAGEID; one REC;
    a further duplicate is answered from the store (no third call); REL -> COM."""
    backend.rules({"prefix": "/forward/3/", "delay": 3, "body": "slow", "times": 1},
                  {"prefix": "/forward/3/", "body": "second"})
    gw = crash_gateway(gateway)
    payload = b'{"up":"f"}'

    async def before():
        c = await open_session(gw, "cf")
        await c.send(rb.send(3, payload, qos=2, msgid=5))
        await asyncio.to_thread(backend.wait, "/forward/3/", 1, 3)
        gw.kill9()
        await expect_dead(c, 5)
    run(before())
    assert upstream(gw, "cf") and [r[1] for r in upstream(gw, "cf")] == [5], upstream(gw)
    assert upstream(gw, "cf")[0][3] in (None, b""), "a reply stored before it came back"
    gw.restart()

    async def after():
        c = await open_session(gw, "cf")
        dup = rb.send(3, payload, qos=2, msgid=5, dup=True)
        assert dup[0] == 0x1C
        await c.send(dup)
        await c.expect(rb.rec(5, b"second"), 5)
        await c.expect_no_frame(0.5)           # exactly one REC
        await c.send(dup)                      # again: answered from the store
        await c.expect(rb.rec(5, b"second"), 3)
        await c.send(rb.rel(5))
        await c.expect(rb.com(5), 3)
        await c.expect_no_frame(0.5)
        await c.close()
    run(after())
    calls = backend.requests("/forward/3/")
    assert len(calls) == 2, calls
    for r in calls:
        assert r.body == payload
        assert r.header("RAINBOWMESSAGEID") == "cf:5", r.headers
        assert r.header("RAINBOWQOS") == "2", r.headers
    assert calls[0].header("RAINBOWDUP") in (None, "0"), calls[0].headers
    assert calls[1].header("RAINBOWDUP") == "1", calls[1].headers
    assert upstream(gw) == []
    assert gw.db_counts() == EMPTY, gw.db_counts()


@pytest.mark.parametrize("how,durability", [("kill", "normal"), ("term", "normal"),
                                            ("kill", "full")])
def test_upstream_qos2_exactly_once_across_restart(gateway, backend, how, durability):
    """(g) REC received (the reply is stored); the gateway restarts; the client's
    duplicate SEND gets REC with the same reply and no second backend call."""
    backend.rules({"prefix": "/forward/3/", "body": "once", "times": 1},
                  {"prefix": "/forward/3/", "body": "twice"})
    gw = crash_gateway(gateway, durability=durability)
    payload = b'{"up":"g"}'

    async def before():
        c = await open_session(gw, "cg")
        await c.send(rb.send(3, payload, qos=2, msgid=9))
        await c.expect(rb.rec(9, b"once"), 5)
        if how == "kill":
            gw.kill9()
        else:
            assert gw.stop() == 0
        await frames_for(c, 0.5)
    run(before())
    assert upstream(gw, "cg") == [("cg", 9, upstream(gw, "cg")[0][2], b"once")], upstream(gw)
    gw.restart()

    async def after():
        c = await open_session(gw, "cg")
        await c.expect_no_frame(0.3)           # nothing downstream to resume
        await c.send(rb.send(3, payload, qos=2, msgid=9, dup=True))
        await c.expect(rb.rec(9, b"once"), 3)
        await c.send(rb.rel(9))
        await c.expect(rb.com(9), 3)
        await c.expect_no_frame(0.3)
        await c.close()
    run(after())
    calls = backend.requests("/forward/3/")
    assert len(calls) == 1, calls
    assert calls[0].header("RAINBOWMESSAGEID") == "cg:9", calls[0].headers
    assert upstream(gw) == []
    assert gw.db_counts() == EMPTY, gw.db_counts()


# ---------------------------------------------------------------- sessions held at the crash

def test_session_held_at_crash_expires_after_restart(gateway, backend):
    """A session whose connection was up when the gateway died is released at
    the restart: it expires session_expiry seconds later if nobody comes back,
    taking its queued message with it."""
    gw = crash_gateway(gateway, session_expiry=2)

    async def before():
        c = await open_session(gw, "cx")
        call = start_push(gw, dq("cx", timeout=5), b"never-acked")
        check_send(await c.recv(3), 1, b"never-acked")
        gw.kill9()
        await call_error(call)
    run(before())
    assert session_row(gw, "cx")[0] == 0, "held at the crash: no expiry time yet"
    gw.restart()
    started = time.monotonic()
    # queued for the released session in the meantime
    r = gw.push(dq("cx"), b"while-away")
    assert (r.status, r.json) == (200, pending_answer(1)), (r.status, r.json)
    assert session_row(gw, "cx")[0] > 0, "not released by the restart"
    wait_db(gw, lambda g: session_row(g, "cx") is None, 5, "session cx expired")
    print("expired %.2f s after the restart" % (time.monotonic() - started))
    assert gw.db_counts() == dict(EMPTY, sessions=0), gw.db_counts()
    rb.assert_error(gw.push(dq("cx"), b"late"), 200, "no such device")  # compat: HTTP 200
