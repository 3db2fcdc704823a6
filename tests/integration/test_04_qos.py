"""04 qos: QoS 1/2 state machines toward the client (A.2, A.3, B.4), ordering and
many concurrent connections."""
import asyncio
import json
import time

import rainbow as rb
from rainbow import Client, run


def test_qos2_rec_rel_com(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(bytes.fromhex("140003000b7b2261223a327d"))
        await c.expect(bytes.fromhex("30000b") + b're:{"a":2}')
        await c.send(bytes.fromhex("40000b"))
        await c.expect(bytes.fromhex("50000b"))
        await c.expect_no_frame(0.2)
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [(r.path, r.body) for r in fw] == [("/forward/3/", b'{"a":2}')]


def test_rel_unknown_id_gets_com(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(rb.rel(0x1234))
        await c.expect(bytes.fromhex("501234"))
        # REL is idempotent: again after a complete exchange
        await c.send(rb.send(3, b"q", qos=2, msgid=5))
        await c.expect(rb.rec(5, b"re:q"))
        await c.send(rb.rel(5))
        await c.expect(rb.com(5))
        await c.send(rb.rel(5))
        await c.expect(rb.com(5))
        await c.close()
    run(body())
    assert backend.count("/forward/") == 1


def test_qos2_duplicate_send_answered_from_stored_reply(gateway, backend):
    # the first call answers "first"; a second backend call would answer differently
    backend.rules({"prefix": "/forward/3/", "body": "first", "times": 1})
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(3, b'{"a":2}', qos=2, msgid=12))
        await c.expect(bytes.fromhex("30000c") + b"first")
        dup = rb.send(3, b'{"a":2}', qos=2, msgid=12, dup=True)
        assert dup[0] == 0x1C
        await c.send(dup)
        await c.expect(bytes.fromhex("30000c") + b"first")
        await c.send(rb.rel(12))
        await c.expect(rb.com(12))
        await c.expect_no_frame(0.2)
        await c.close()
    run(body())
    assert backend.count("/forward/") == 1


def test_qos1_and_qos2_interleaved_ids(gateway, backend):
    """The same msgid used by a QoS 1 and a QoS 2 exchange, and ACKs with
    the right ids for several outstanding requests."""
    gw = gateway(forward_concurrency=4)

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(1, b"one", qos=1, msgid=1))
        await c.send(rb.send(1, b"two", qos=2, msgid=2))
        await c.send(rb.send(1, b"three", qos=1, msgid=3))
        got = set()
        for _ in range(3):
            got.add(await c.recv())
        assert got == {rb.ack(1, b"re:one"), rb.rec(2, b"re:two"), rb.ack(3, b"re:three")}
        await c.send(rb.rel(2))
        await c.expect(rb.com(2))
        await c.close()
    run(body())
    assert sorted(r.body for r in backend.requests("/forward/")) == [b"one", b"three", b"two"]


def test_idempotency_headers(gateway, backend):
    """B.4: QoS 1/2 forwards carry RAINBOWQOS and RAINBOWMESSAGEID (<session or
    identity>:<msgid>); a retransmission (DUP) carries RAINBOWDUP: 1."""
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 10, b"a")
        await c.send(rb.send(1, b"a", qos=1, msgid=10, dup=True))
        await c.expect(rb.ack(10, b"re:a"))
        await c.send(rb.send(1, b"b", qos=2, msgid=11))
        await c.expect(rb.rec(11, b"re:b"))
        await c.send(rb.rel(11))
        await c.expect(rb.com(11))
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [r.body for r in fw] == [b"a", b"a", b"b"]
    assert [r.header("RAINBOWQOS") for r in fw] == ["1", "1", "2"]
    ids = [r.header("RAINBOWMESSAGEID") or "" for r in fw]
    assert ids[0].endswith(":10") and ids[1] == ids[0] and ids[2].endswith(":11"), ids
    assert ids[0][:-3] == ids[2][:-3] and ids[0][:-3], ids
    assert fw[0].header("RAINBOWDUP") in (None, "0")
    assert fw[1].header("RAINBOWDUP") == "1"


def test_forward_order_with_concurrency_1(gateway, backend):
    gw = gateway(forward_concurrency=1)
    n = 50

    async def body():
        c = await Client.open(gw)
        for i in range(1, n + 1):
            await c.send(rb.send(2, b'{"i":%d}' % i, qos=1, msgid=i))
        for i in range(1, n + 1):
            await c.expect(rb.ack(i, b're:{"i":%d}' % i))
        await c.close()
    run(body())
    bodies = [r.body for r in backend.requests("/forward/")]
    assert bodies == [b'{"i":%d}' % i for i in range(1, n + 1)]


def test_forward_concurrency_is_respected(gateway, backend):
    """forward_concurrency = 1: while one forward is held, no second one starts;
    forward_concurrency = 3: three are in flight at once."""
    backend.rules({"prefix": "/forward/", "delay": 1.5})
    one = gateway(forward_concurrency=1)
    three = gateway(forward_concurrency=3)

    async def body():
        a = await Client.open(one)
        b = await Client.open(three)
        for mid in (1, 2, 3):
            await a.send(rb.send(1, b"a%d" % mid, qos=1, msgid=mid))
            await b.send(rb.send(2, b"b%d" % mid, qos=1, msgid=mid))
        await backend.await_requests("/forward/1/", 1, timeout=1.0)
        await backend.await_requests("/forward/2/", 3, timeout=1.0)
        assert backend.count("/forward/1/") == 1  # the 2nd may start only after 1.5 s
        # in parallel, replies come in completion order
        got = {await b.recv(timeout=5) for _ in range(3)}
        assert got == {rb.ack(mid, b"re:b%d" % mid) for mid in (1, 2, 3)}, got
        for mid in (1, 2, 3):
            await a.expect(rb.ack(mid, b"re:a%d" % mid), timeout=5)
        await a.close()
        await b.close()
    run(body())


def test_thousand_connections_twenty_thousand_requests(gateway, backend, raise_nofile):
    assert raise_nofile >= 2500, "RLIMIT_NOFILE too low: %d" % raise_nofile
    conns, per_conn = 1000, 20
    gw = gateway(max_connections=1100, backend_timeout=30)
    t0 = time.monotonic()

    def payload(i, mid):
        return json.dumps({"c": i, "m": mid}).encode()

    async def body():
        clients = []
        for start in range(0, conns, 100):
            clients += await asyncio.gather(*[Client.open(gw, tag=False, open_timeout=30)
                                              for _ in range(start, min(conns, start + 100))])

        async def drive(i, c):
            for mid in range(1, per_conn + 1):
                await c.send(rb.send(1, payload(i, mid), qos=1, msgid=mid))
            got = {}
            for _ in range(per_conn):
                p = await c.recv_pkt(timeout=60)
                assert p.cmd == rb.ACK and p.msgid not in got, rb.describe(p.raw)
                got[p.msgid] = p.payload
            assert got == {mid: b"re:" + payload(i, mid) for mid in range(1, per_conn + 1)}, i

        await asyncio.gather(*[drive(i, c) for i, c in enumerate(clients)])
        await asyncio.gather(*[c.close() for c in clients])

    # A guard against a hang, not a speed bound: the speed is printed (bench/
    # measures it).
    run(body(), timeout=300)
    print("%d connections x %d QoS 1 requests: %.1f s" % (conns, per_conn,
                                                        time.monotonic() - t0))
    fw = backend.requests("/forward/", brief=True)
    assert len(fw) == conns * per_conn
    want = sorted(payload(i, m) for i in range(conns) for m in range(1, per_conn + 1))
    assert sorted(r.body for r in fw) == want
