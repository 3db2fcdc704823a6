"""07 push: channels (subscribe/unsubscribe by header and REST), POST /send/ to
channels and identities with exact bytes for QoS 0/1/2, retransmission with DUP,
REL retransmission, in-flight limit, fan-out to 500 members.

Contract: docs/rest-api.md, docs/protocol.md Packets, Pushing, Response headers. Every REST answer is
checked for Content-Type application/json by Gateway.api()."""
import asyncio
import base64
import concurrent.futures
import struct
import time

import pytest

import rainbow as rb
from rainbow import Client, Collector, run

PAYLOAD = b'{"m":1}'   # 7b226d223a317d
MSGTYPE = 1002         # 03ea
NOBODY = "0" * 64      # a well-formed identity no connection has


def check_send(data, qos, payload=PAYLOAD, msgtype=MSGTYPE, dup=False):
    """Assert the exact bytes of a pushed SEND; return its msgid (None for QoS 0).
    The msgid is the connection's own, so it is read from the frame, range-checked
    and everything else compared byte for byte."""
    if qos == 0:
        want = rb.send(msgtype, payload)
        assert data == want, "got %s, want %s" % (data.hex(), want.hex())
        return None
    assert len(data) >= 5, "short frame %s" % data.hex()
    mid = struct.unpack(">H", data[3:5])[0]
    want = rb.send(msgtype, payload, qos=qos, msgid=mid, dup=dup)
    assert data == want, "got %s (%s), want %s" % (data.hex(), rb.describe(data), want.hex())
    assert 1 <= mid <= 65535, mid
    return mid


async def push(gw, query, body=PAYLOAD, **kw):
    """POST /send/ from a thread, so the event loop keeps serving the clients."""
    return await asyncio.to_thread(gw.push, query, body, **kw)


def start_push(gw, query, body=PAYLOAD, **kw):
    return asyncio.get_running_loop().create_task(push(gw, query, body, **kw))


async def quiet(clients, t):
    """None of the clients gets a frame (or is closed) within t seconds."""
    await asyncio.gather(*[c.expect_no_frame(t) for c in clients])


async def open_many(gw, n, batch=100, **kw):
    clients = []
    for start in range(0, n, batch):
        clients += await asyncio.gather(*[Client.open(gw, open_timeout=30, **kw)
                                          for _ in range(start, min(n, start + batch))])
    return clients


def channel_rule(channels, times=None):
    r = {"prefix": "/connect", "headers": {"RAINBOWCLIENTCHANNEL": channels}}
    if times is not None:
        r["times"] = times
    return r


def qos0_answer(n):
    return {"status": 0, "connections": n}


def acked_answer(n, data, failed=0):
    return {"status": 0, "connections": n, "failed": failed, "pending": 0, "data": data}


# ---------------------------------------------------------------- subscribing

def test_sub_via_connect_hook_header(gateway, backend):
    backend.rules(channel_rule("hk1;;hk2", times=1))
    gw = gateway()

    async def body():
        a = await Client.open(gw)   # gets the header
        b = await Client.open(gw)   # does not
        assert gw.presence("hk1") == [a.identity]
        assert gw.presence("hk2") == [a.identity]
        assert gw.channels() == {"hk1": 1, "hk2": 1}
        r = await push(gw, {"channel": "hk2", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await a.recv(), 0)
        await quiet([a, b], 0.3)
        await a.close()
        await b.close()
    run(body())


def test_sub_via_forward_response_header(gateway, backend):
    backend.rules({"prefix": "/forward/5/", "headers": {"RAINBOWCLIENTCHANNEL": "fw1;;fw2"}})
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        assert gw.presence("fw1") == []
        await a.qos1(5, 1, b"join")
        assert gw.presence("fw1") == [a.identity]
        assert gw.presence("fw2") == [a.identity]
        r = await push(gw, {"channel": "fw1", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await a.recv(), 0)
        await quiet([a, b], 0.3)
        await a.close()
        await b.close()
    run(body())


def test_sub_via_rest(gateway, backend):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        gw.sub(a.identity, "rs")
        assert gw.presence("rs") == [a.identity]
        gw.sub(a.identity, "rs")   # again: still one membership, one delivery
        assert gw.presence("rs") == [a.identity]
        assert gw.channels() == {"rs": 1}
        r = await push(gw, {"channel": "rs", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await a.recv(), 0)
        await quiet([a, b], 0.3)
        await a.close()
        await b.close()
    run(body())


def test_sub_occupy_evicts_every_other_member(gateway, backend):
    gw = gateway()

    async def body():
        a, b, c, d = [await Client.open(gw) for _ in range(4)]
        for x in (a, b, c):
            gw.sub(x.identity, "room")
        for x in (a, b):
            gw.sub(x.identity, "other")
        assert sorted(gw.presence("room")) == sorted([a.identity, b.identity, c.identity])
        gw.sub(d.identity, "room", occupy=True)
        assert gw.presence("room") == [d.identity]
        # occupy touches only that channel
        assert sorted(gw.presence("other")) == sorted([a.identity, b.identity])
        r = await push(gw, {"channel": "room", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await d.recv(), 0)
        await quiet([a, b, c, d], 0.3)
        # occupy: false is a plain subscribe
        gw.sub(a.identity, "room", occupy=False)
        assert sorted(gw.presence("room")) == sorted([a.identity, d.identity])
        for x in (a, b, c, d):
            await x.close()
    run(body())


def test_unsub_via_forward_response_header(gateway, backend):
    backend.rules({"prefix": "/forward/6/", "headers": {"RAINBOWCLIENTCHANNELUNSUB": "u1;;u2"}})
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        for ch in ("u1", "u2", "u3"):
            gw.sub(a.identity, ch)
        await a.qos1(6, 1, b"leave")
        assert gw.presence("u1") == [] and gw.presence("u2") == []
        assert gw.presence("u3") == [a.identity]
        assert gw.channels() == {"u3": 1}
        r = await push(gw, {"channel": "u1", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, {"status": 0})   # nobody left in u1
        r = await push(gw, {"channel": "u3", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await a.recv(), 0)
        await quiet([a], 0.3)
        await a.close()
    run(body())


def test_unsub_via_rest(gateway, backend):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        gw.sub(a.identity, "r")
        gw.sub(b.identity, "r")
        gw.unsub(a.identity, "r")
        assert gw.presence("r") == [b.identity]
        r = await push(gw, {"channel": "r", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await b.recv(), 0)
        await quiet([a, b], 0.3)
        gw.unsub(a.identity, "r")          # no longer a member: still status 0
        gw.unsub(a.identity, "never-was")  # a channel that does not exist
        assert gw.presence("r") == [b.identity]
        await a.close()
        await b.close()
    run(body())


@pytest.mark.parametrize("codes", ["compat", "strict"])
def test_unknown_identity(gateway, backend, codes):
    """strict: 404 "no such connection" for /sub/, /unsub/ and /send/?identity=;
    compat: the same bodies over HTTP 200, except /unsub/, a success as in
    the original."""
    gw = gateway(rest_status_codes=codes)
    status = 404 if codes == "strict" else 200

    async def body():
        a = await Client.open(gw)
        gone = await Client.open(gw)
        gone_id = gone.identity
        await gone.close()
        backend.wait("/close", 1, timeout=3)
        gw.sub(a.identity, "k")
        for ident in (NOBODY, gone_id):
            for path, b in (("/sub/", {"identity": ident, "channel": "k"}),
                            ("/unsub/", {"identity": ident, "channel": "k"})):
                r = gw.api("POST", path, body=b)
                if path == "/unsub/" and codes == "compat":
                    assert (r.status, r.json) == (200, {"status": 0})
                else:
                    rb.assert_error(r, status, "no such connection")
            r = await push(gw, {"identity": ident, "msgtype": MSGTYPE, "qos": 0})
            rb.assert_error(r, status, "no such connection")
        assert gw.presence("k") == [a.identity]
        await quiet([a], 0.2)
        await a.close()
    run(body())


def test_connection_leaves_channels_when_closed(gateway, backend):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "bye1")
        gw.sub(a.identity, "bye2")
        await a.close()
        await rb.await_until(lambda: gw.channels() == {}, 3, what="channels to empty")
        r = await push(gw, {"channel": "bye1", "msgtype": MSGTYPE, "qos": 1, "timeout": 1})
        assert (r.status, r.json) == (200, {"status": 0, "connections": 0, "data": ""})
    run(body())


# ---------------------------------------------------------------- exact bytes

@pytest.mark.parametrize("n", [1, 3, 500])
def test_push_qos0_exact_bytes(gateway, backend, raise_nofile, n):
    backend.rules(channel_rule("c"))
    gw = gateway()

    async def body():
        members = await open_many(gw, n)
        assert len(gw.presence("c")) == n
        r = await push(gw, {"channel": "c", "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(n))
        got = await asyncio.gather(*[m.recv(timeout=10) for m in members])
        for data in got:
            assert data == bytes.fromhex("1003ea7b226d223a317d"), data.hex()
        await quiet(members, 0.3)
        await asyncio.gather(*[m.close() for m in members])
    run(body(), timeout=90)


@pytest.mark.parametrize("n", [1, 3, 500])
def test_push_qos1_exact_bytes_and_acks(gateway, backend, raise_nofile, n):
    """n = 500 is also the fan-out case: all 500 ACK, connections = 500, and
    the call answers on the last ACK, not at its timeout."""
    backend.rules(channel_rule("c"))
    gw = gateway()
    replies = [b'{"ack":%d}' % i for i in range(n)]

    async def member(m, reply):
        data = await m.recv(timeout=10)
        mid = check_send(data, 1)
        await m.send(rb.ack(mid, reply))
        return mid

    async def body():
        members = await open_many(gw, n)
        assert len(gw.presence("c")) == n
        t0 = time.monotonic()
        call = start_push(gw, {"channel": "c", "msgtype": MSGTYPE, "qos": 1, "timeout": 30})
        await asyncio.gather(*[member(m, rp) for m, rp in zip(members, replies)])
        r = await call
        elapsed = time.monotonic() - t0
        assert r.status == 200, (r.status, r.json)
        assert set(r.json) == {"status", "connections", "failed", "pending", "data"}, r.json
        assert r.json["data"] in [x.decode() for x in replies], r.json
        assert r.json == acked_answer(n, r.json["data"]), r.json
        if n == 1:
            assert r.json["data"] == '{"ack":0}'
        # Contract: the call returns once every recipient acknowledged. A call
        # sitting out its timeout would answer after 30 s; the margin (the
        # acknowledgements themselves take well under 1 s) is for a loaded
        # machine.
        print("answered %.2f s after the call" % elapsed)
        assert elapsed < 30, "answered after %.1f s: sat out the call's timeout" % elapsed
        await quiet(members, 0.3)   # acknowledged: no retransmission
        await asyncio.gather(*[m.close() for m in members])
    run(body(), timeout=90)


def test_push_qos1_ids_distinct_while_in_flight(gateway, backend):
    backend.rules(channel_rule("c"))
    gw = gateway()
    p1, p2 = b'{"m":1}', b'{"m":2}'

    async def body():
        members = [await Client.open(gw) for _ in range(3)]
        q = {"channel": "c", "msgtype": MSGTYPE, "qos": 1, "timeout": 5}
        c1 = start_push(gw, q, p1)
        c2 = start_push(gw, q, p2)
        for i, m in enumerate(members):
            frames = [await m.recv(), await m.recv()]
            by_payload = {rb.decode(f).payload: f for f in frames}
            assert set(by_payload) == {p1, p2}, [f.hex() for f in frames]
            id1 = check_send(by_payload[p1], 1, p1)
            id2 = check_send(by_payload[p2], 1, p2)
            assert id1 != id2, "one msgid %d for two messages in flight" % id1
            await m.send(rb.ack(id2, b"r2-%d" % i))
            await m.send(rb.ack(id1, b"r1-%d" % i))
        r1, r2 = await c1, await c2
        assert r1.status == 200 and r1.json == acked_answer(3, r1.json.get("data")), r1.json
        assert r2.status == 200 and r2.json == acked_answer(3, r2.json.get("data")), r2.json
        assert r1.json["data"] in ("r1-0", "r1-1", "r1-2"), r1.json
        assert r2.json["data"] in ("r2-0", "r2-1", "r2-2"), r2.json
        await quiet(members, 0.3)
        for m in members:
            await m.close()
    run(body())


def test_push_qos2_rec_rel_com(gateway, backend):
    backend.rules(channel_rule("c"))
    gw = gateway(retry_interval=0.3)

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        call = start_push(gw, {"channel": "c", "msgtype": MSGTYPE, "qos": 2, "timeout": 5})
        ids = []
        for m, reply in ((a, b"rec-a"), (b, b"rec-b")):
            data = await m.recv()
            assert data[0] == 0x14, data.hex()
            mid = check_send(data, 2)
            await m.send(rb.rec(mid, reply))
            ids.append(mid)
        # the call answers on the RECs, before any COM
        r = await asyncio.wait_for(call, 10)
        assert r.status == 200, (r.status, r.json)
        assert r.json == acked_answer(2, r.json.get("data")), r.json
        assert r.json["data"] in ("rec-a", "rec-b"), r.json
        for m, mid in zip((a, b), ids):
            await m.expect(rb.rel(mid))       # 40 <id>
            assert rb.rel(mid) == b"\x40" + struct.pack(">H", mid)
            await m.send(rb.com(mid))         # 50 <id>
        await quiet([a, b], 1.0)              # > 3 retry intervals: REL not resent after COM
        await a.close()
        await b.close()
    run(body())


@pytest.mark.parametrize("size", [100, 40000])
def test_channel_push_across_edge_threads_each_copy_its_own_msgid(gateway, backend, size):
    """Members spread over two edge threads (docs/architecture.md) whose next
    msgids differ get one channel push, small (frames built per connection)
    and long (written in place from a buffer each edge must have to itself):
    each sees its own msgid, and every ACK lands."""
    backend.rules(channel_rule("spread"))
    gw = gateway(edge_threads=2, max_message_size="1m")
    big = b"%d:" % size + b"z" * size

    async def body():
        members = [await Client.open(gw) for _ in range(6)]
        assert len(gw.presence("spread")) == 6
        # member i has taken i msgids already
        for i, m in enumerate(members):
            for _ in range(i):
                call = start_push(gw, {"identity": m.identity, "msgtype": MSGTYPE, "qos": 1,
                                       "timeout": 10})
                await m.send(rb.ack(check_send(await m.recv(), 1), b"ok"))
                assert (await call).json["status"] == 0
        call = start_push(gw, {"channel": "spread", "msgtype": MSGTYPE, "qos": 1,
                               "timeout": 20}, big)
        mids = []
        for m in members:
            mid = check_send(await m.recv(timeout=10), 1, big)
            mids.append(mid)
            await m.send(rb.ack(mid, b"got"))
        assert len(set(mids)) == 6, mids
        assert [b - a for a, b in zip(mids, mids[1:])] == [1] * 5, mids
        r = await call
        assert (r.status, r.json) == (200, acked_answer(6, "got")), r.json
        await quiet(members, 0.3)
        for m in members:
            await m.close()
    run(body(), timeout=60)
    assert "2 edge threads" in gw.log_text()


def test_push_to_identity_reaches_only_that_connection(gateway, backend):
    backend.rules(channel_rule("room"))
    gw = gateway()

    async def body():
        a, b, c = [await Client.open(gw) for _ in range(3)]
        assert len(gw.presence("room")) == 3
        call = start_push(gw, {"identity": b.identity, "msgtype": MSGTYPE, "qos": 1,
                               "timeout": 5})
        mid = check_send(await b.recv(), 1)
        await b.send(rb.ack(mid, b"only-b"))
        r = await call
        assert (r.status, r.json) == (200, acked_answer(1, "only-b"))
        r = await push(gw, {"identity": c.identity, "msgtype": MSGTYPE, "qos": 0})
        assert (r.status, r.json) == (200, qos0_answer(1))
        check_send(await c.recv(), 0)
        await quiet([a, b, c], 0.3)
        for x in (a, b, c):
            await x.close()
    run(body())


def test_push_ack_payload_not_utf8(gateway, backend):
    """docs: data_base64 is added when the ACK payload is not valid UTF-8."""
    gw = gateway()
    reply = b"\xff\x00\xfe"

    async def body():
        a = await Client.open(gw)
        call = start_push(gw, {"identity": a.identity, "msgtype": MSGTYPE, "qos": 1,
                               "timeout": 5})
        mid = check_send(await a.recv(), 1)
        await a.send(rb.ack(mid, reply))
        r = await call
        assert r.status == 200, (r.status, r.json)
        assert r.json.get("data_base64") == base64.b64encode(reply).decode(), r.json
        assert {k: r.json[k] for k in ("status", "connections", "failed", "pending")} == \
            {"status": 0, "connections": 1, "failed": 0, "pending": 0}, r.json
        assert "data" in r.json, r.json
        await a.close()
    run(body())


# ---------------------------------------------------------------- retransmission

def test_qos1_retransmitted_with_dup_until_timeout(gateway, backend):
    """docs/rest-api.md Retransmission: an unacknowledged QoS 1 SEND is sent
    again with DUP=1 (same msgid, same bytes otherwise) every retry_interval
    until acknowledged (a: never again) or the call's timeout (b: none after
    the call returned). Ordering, not timing, decides "after": a QoS 0 marker
    pushed once the call returned reaches each connection after everything
    sent to it before (one ordered WebSocket stream)."""
    backend.rules(channel_rule("rt"))
    retry, timeout = 0.5, 2
    gw = gateway(retry_interval=retry)
    marker = rb.send(MSGTYPE + 1, b"marker")

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        ca = Collector(a, auto=True, reply=b"a-ok")
        cb = Collector(b)              # never acknowledges
        t0 = time.monotonic()
        r = await push(gw, {"channel": "rt", "msgtype": MSGTYPE, "qos": 1, "timeout": timeout})
        answered = time.monotonic() - t0
        assert (r.status, r.json) == (200, acked_answer(1, "a-ok", failed=1))
        # Contract: b never acknowledges, so the call answers at its timeout:
        # not before (a loaded machine only makes it later; 0.2 s for the
        # timer's rounding), and by it (margin 10 s for a loaded machine, as
        # the HTTP client's own timeout).
        print("answered %.2f s after the call (timeout %g s)" % (answered, timeout))
        assert answered >= timeout - 0.2, "answered after %.2f s, before the %g s timeout" % (
            answered, timeout)
        assert answered < timeout + 10, "answered after %.2f s" % answered
        r = await push(gw, {"channel": "rt", "msgtype": MSGTYPE + 1, "qos": 0}, b"marker")
        assert (r.status, r.json) == (200, qos0_answer(2)), (r.status, r.json)
        for c in (ca, cb):
            await rb.await_until(lambda: marker in c.data() or c.closed, 5, what="the marker")
        await ca.stop()
        await cb.stop()
        # Nothing after the marker either: 3 retry intervals of quiet.
        await quiet([a, b], 3 * retry)

        # a acknowledged the first copy: never sent again.
        assert len(ca.frames) == 2 and ca.frames[1][1] == marker, [m.hex() for m in ca.data()]
        check_send(ca.frames[0][1], 1)
        frames = cb.data()
        assert frames[-1] == marker, [m.hex() for m in frames]
        mid = check_send(frames[0], 1)
        dup = rb.send(MSGTYPE, PAYLOAD, qos=1, msgid=mid, dup=True)
        assert dup[0] == 0x1A
        copies = frames[1:-1]       # everything b got before the call returned
        assert copies, "no retransmission within the %g s timeout (retry_interval %g)" % (
            timeout, retry)
        for m in copies:
            assert m == dup, "got %s, want the DUP %s" % (m.hex(), dup.hex())
        # At most one copy per retry_interval within the timeout. A loaded
        # machine only delays retransmissions (the retry timer is re-armed
        # after each one), so it can make fewer, never more.
        assert len(copies) <= timeout / retry, "%d retransmissions in %g s, retry_interval %g" % (
            len(copies), timeout, retry)
        print("%d retransmission(s) before the timeout" % len(copies))
        await a.close()
        await b.close()
    run(body())


@pytest.mark.parametrize("codes", ["compat", "strict"])
def test_qos1_nobody_acks_is_timeout(gateway, backend, codes):
    """status 1 "timeout": HTTP 504 under strict, 200 under compat (the original's)."""
    backend.rules(channel_rule("none"))
    gw = gateway(retry_interval=0.5, rest_status_codes=codes)

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        cs = [Collector(a), Collector(b)]
        t0 = time.monotonic()
        r = await push(gw, {"channel": "none", "msgtype": MSGTYPE, "qos": 1, "timeout": 1})
        elapsed = time.monotonic() - t0
        assert r.status == (504 if codes == "strict" else 200), (r.status, r.json)
        want = {"status": 1, "msg": "timeout", "connections": 0, "failed": 2, "pending": 0}
        assert {k: v for k, v in r.json.items() if k != "data"} == want, r.json
        assert r.json.get("data") is None, r.json   # docs: null when none arrived
        # Contract: nobody acknowledges, so the call answers at its timeout
        # (1 s): not before it (a loaded machine only makes it later; 0.1 s for
        # the timer's rounding), and by it (margin 10 s for a loaded machine,
        # as the HTTP client's own timeout).
        print("answered %.2f s after the call (timeout 1 s)" % elapsed)
        assert 0.9 <= elapsed < 11, elapsed
        for c in cs:
            await c.stop()
            assert len(c.frames) >= 1
            check_send(c.frames[0][1], 1)
        await a.close()
        await b.close()
    run(body())


def test_qos2_send_and_rel_retransmitted(gateway, backend):
    """QoS 2: SEND is resent (DUP, 1c) until REC; then REL 40 <id> is resent every
    retry_interval until COM, and not after."""
    gw = gateway(retry_interval=0.5)

    async def body():
        a = await Client.open(gw)
        call = start_push(gw, {"identity": a.identity, "msgtype": MSGTYPE, "qos": 2,
                               "timeout": 5})
        mid = check_send(await a.recv(), 2)
        dup = await a.recv(timeout=2)           # ignored the first copy
        assert dup[0] == 0x1C, dup.hex()
        check_send(dup, 2, dup=True)
        assert struct.unpack(">H", dup[3:5])[0] == mid
        await a.send(rb.rec(mid, b"got-it"))
        r = await call
        assert (r.status, r.json) == (200, acked_answer(1, "got-it"))
        await a.expect(rb.rel(mid), timeout=2)
        for _ in range(2):                      # no COM yet: REL again
            await a.expect(rb.rel(mid), timeout=2)
        await a.send(rb.com(mid))               # right after a REL: the next is 0.5 s away
        await a.expect_no_frame(1.5)
        await a.close()
    run(body())


def test_max_inflight_messages(gateway, backend):
    """A push beyond max_inflight_messages counts as failed for that recipient."""
    gw = gateway(max_inflight_messages=1, retry_interval=10, rest_status_codes="strict")

    async def body():
        a = await Client.open(gw)
        q = {"identity": a.identity, "msgtype": MSGTYPE, "qos": 1, "timeout": 3}
        first = start_push(gw, q, b'{"n":1}')
        check_send(await a.recv(), 1, b'{"n":1}')   # in flight, never acknowledged
        t0 = time.monotonic()
        r = await push(gw, dict(q, timeout=30), b'{"n":2}')
        elapsed = time.monotonic() - t0
        assert r.status == 504, (r.status, r.json)
        assert {k: v for k, v in r.json.items() if k != "data"} == {
            "status": 1, "msg": "timeout", "connections": 0, "failed": 1, "pending": 0}, r.json
        # Contract: over the limit, the recipient fails at once. Waiting would
        # answer at the earliest after 3 s (when the first push's timeout frees
        # the slot), at the latest after this call's 30 s timeout; below 3 s
        # is the margin for a loaded machine.
        print("over-limit push answered after %.2f s" % elapsed)
        assert elapsed < 3, "over-limit push waited %.1f s instead of failing" % elapsed
        await a.expect_no_frame(0.3)                # the second was never sent
        r = await first
        assert r.status == 504 and r.json.get("failed") == 1, (r.status, r.json)
        await a.close()
    run(body())


# ---------------------------------------------------------------- fan-out under retry

def test_fanout_500_qos1_with_some_late_acks(gateway, backend, raise_nofile):
    """500 members; 50 of them acknowledge only the DUP: the call still answers
    connections = 500 within its timeout."""
    backend.rules(channel_rule("fan"))
    gw = gateway(retry_interval=0.5)
    n = 500

    async def member(i, m):
        data = await m.recv(timeout=10)
        mid = check_send(data, 1)
        if i % 10 == 0:
            data = await m.recv(timeout=3)
            check_send(data, 1, dup=True)
            assert struct.unpack(">H", data[3:5])[0] == mid
        await m.send(rb.ack(mid, b"%d" % i))

    async def body():
        members = await open_many(gw, n)
        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            call = asyncio.get_running_loop().run_in_executor(
                ex, lambda: gw.push({"channel": "fan", "msgtype": MSGTYPE, "qos": 1,
                                     "timeout": 5}, PAYLOAD))
            await asyncio.gather(*[member(i, m) for i, m in enumerate(members)])
            r = await call
        assert r.status == 200, (r.status, r.json)
        assert r.json == acked_answer(n, r.json.get("data")), r.json
        assert r.json["data"] in [str(i) for i in range(n)], r.json
        await asyncio.gather(*[m.close() for m in members])
    run(body(), timeout=90)
