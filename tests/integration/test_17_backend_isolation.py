"""17 backend isolation: one slow or failing backend route (message type)
never stalls the others (docs/backend.md).

A real stub backend process hangs or fails one route; the other routes'
replies keep flowing, new clients connect at once (hooks have their own
pool), waiting forwards leave with their client, and the circuit breaker
fails a broken route fast and closes again after a successful probe.
"""
import asyncio

from rainbow import Client, ack, metric_value, nak_body, run, send, wait_until, NAK

V2 = ["rainbow.v2"]
HANG = 7      # the route that never answers in time
FAST = 1


def route(gw, name, **labels):
    return metric_value(gw.metrics(), name, **labels)


async def expect_nak(c, msgid, code, timeout=10.0):
    p = await c.recv_pkt(timeout)
    assert p.cmd == NAK and p.msgid == msgid, p
    body = nak_body(p)
    assert body["code"] == code, body
    return body


def test_hanging_route_leaves_other_routes_and_hooks_alone(gateway, backend):
    """Without per-route bounds the hanging route's 12 forwards took all 4
    backend connections: fast-route replies and connect hooks waited behind
    them for backend_timeout (30 s here)."""
    backend.rules({"prefix": "/forward/%d/" % HANG, "delay": 25})
    gw = gateway(backend_max_connections=4, route_max_inflight=2, route_max_queued=4,
                 breaker_failures=0, backend_timeout=30)
    hang_path = "/forward/%d/" % HANG

    async def first_frame(c, t):
        try:
            return await c.recv_pkt(timeout=t)
        except AssertionError:
            return None

    async def body():
        hang = [await Client.open(gw, subprotocols=V2) for _ in range(12)]
        for i, c in enumerate(hang):
            await c.send(send(HANG, b"h%d" % i, qos=1, msgid=1))
        # 2 in flight, 4 waiting, 6 refused at once with a temporary 429.
        wait_until(lambda: route(gw, "rainbow_route_rejected_total", msgtype=HANG,
                                 reason="queue_full") == 6, 10, what="6 refusals")
        assert route(gw, "rainbow_route_forwards_in_flight", msgtype=HANG) == 2
        assert route(gw, "rainbow_route_forwards_queued", msgtype=HANG) == 4
        got = await asyncio.gather(*(first_frame(c, 3.0) for c in hang))
        naks = [nak_body(p) for p in got if p is not None]
        assert len(naks) == 6, got
        assert all(p.msgid == 1 for p in got if p is not None)
        assert all(b["code"] == 429 and b["temporary"] is True for b in naks), naks
        wait_until(lambda: backend.count(hang_path) == 2, 10, what="2 hanging calls")

        # The fast route still answers every request while the hang lasts.
        fast = [await Client.open(gw, subprotocols=V2) for _ in range(5)]
        for rnd in range(20):
            for i, c in enumerate(fast):
                await c.send(send(FAST, b"f%d-%d" % (i, rnd), qos=1, msgid=rnd + 1))
            for i, c in enumerate(fast):
                await c.expect(ack(rnd + 1, b"re:f%d-%d" % (i, rnd)), timeout=10)
        # A new client's connect hook and a leaving client's close hook are not
        # queued behind the hanging forwards.
        newcomer = await Client.open(gw, subprotocols=V2, open_timeout=10)
        await newcomer.close()
        backend.wait("/close", count=1, timeout=10)
        # The waiting four start only when the hanging two end: all of the
        # above happened while the hang lasted.
        assert backend.count(hang_path) == 2
        assert route(gw, "rainbow_route_forwards_in_flight", msgtype=HANG) == 2
        for c in hang + fast:
            await c.close()

    run(body(), timeout=90)


def test_waiting_forwards_leave_with_their_client(gateway, backend):
    backend.rules({"prefix": "/forward/%d/" % HANG, "delay": 8})
    gw = gateway(route_max_inflight=1, route_max_queued=2, breaker_failures=0,
                 backend_timeout=30)

    async def body():
        a = await Client.open(gw, subprotocols=V2)
        await a.send(send(HANG, b"a", qos=1, msgid=1))
        wait_until(lambda: backend.count("/forward/%d/" % HANG) == 1, 10, what="a's call")
        b = await Client.open(gw, subprotocols=V2)
        c = await Client.open(gw, subprotocols=V2)
        await b.send(send(HANG, b"b", qos=1, msgid=1))
        await c.send(send(HANG, b"c", qos=1, msgid=1))
        wait_until(lambda: route(gw, "rainbow_route_forwards_queued", msgtype=HANG) == 2, 10,
                   what="b and c waiting")
        await b.close()
        await c.close()
        # Their places are free at once, not when a's call ends.
        wait_until(lambda: route(gw, "rainbow_route_forwards_queued", msgtype=HANG) == 0, 10,
                   what="the queue emptied")
        d = await Client.open(gw, subprotocols=V2)
        await d.send(send(HANG, b"d", qos=1, msgid=5))
        wait_until(lambda: route(gw, "rainbow_route_forwards_queued", msgtype=HANG) == 1, 10,
                   what="d waiting")
        assert route(gw, "rainbow_route_rejected_total", msgtype=HANG, reason="queue_full") == 0
        # When a's call returns, d's goes, and b's and c's never reach the backend.
        await a.expect(ack(1, b"re:a"), timeout=20)
        await d.expect(ack(5, b"re:d"), timeout=20)
        bodies = sorted(r.body for r in backend.requests("/forward/%d/" % HANG))
        assert bodies == [b"a", b"d"]
        await a.close()
        await d.close()

    run(body(), timeout=90)


def test_circuit_breaker_fails_fast_then_probes(gateway, backend):
    BAD = 5
    backend.rules({"prefix": "/forward/%d/" % BAD, "status": 500, "body": "down"})
    gw = gateway(breaker_failures=3, breaker_cooldown=5)
    path = "/forward/%d/" % BAD

    async def body():
        c = await Client.open(gw, subprotocols=V2)
        v1 = await Client.open(gw)
        for i in range(1, 4):
            await c.send(send(BAD, b"x", qos=1, msgid=i))
            b = await expect_nak(c, i, 502)
            assert b["temporary"] is True
        assert backend.count(path) == 3
        assert route(gw, "rainbow_route_breaker_state", msgtype=BAD) == 1
        assert route(gw, "rainbow_route_breaker_opened_total", msgtype=BAD) == 1

        # Open: refused at once, without a backend call, with a retry hint.
        await c.send(send(BAD, b"x", qos=1, msgid=4))
        b = await expect_nak(c, 4, 503)
        assert b["temporary"] is True
        assert 0 < b["retry_after"] <= 5, b
        # A v1 client gets the original's silence, and the backend no call.
        await v1.send(send(BAD, b"y", qos=1, msgid=9))
        # Other routes are not affected.
        await c.qos1(FAST, 5, b"ok")
        assert backend.count(path) == 3
        assert route(gw, "rainbow_route_rejected_total", msgtype=BAD, reason="breaker_open") == 2

        # After the cool-down one probe goes; it fails: open again at once.
        await asyncio.sleep(b["retry_after"] + 0.2)
        await c.send(send(BAD, b"x", qos=1, msgid=6))
        await expect_nak(c, 6, 502)
        assert backend.count(path) == 4
        await c.send(send(BAD, b"x", qos=1, msgid=7))
        b = await expect_nak(c, 7, 503)
        assert backend.count(path) == 4
        assert route(gw, "rainbow_route_breaker_opened_total", msgtype=BAD) == 2

        # The backend recovers: the next probe succeeds and closes the breaker.
        backend.reset()
        await asyncio.sleep(b["retry_after"] + 0.2)
        await c.qos1(BAD, 8, b"back")
        assert route(gw, "rainbow_route_breaker_state", msgtype=BAD) == 0
        for i in range(9, 12):
            await c.qos1(BAD, i, b"z")
        assert backend.count(path) == 4
        await c.close()
        await v1.close()

    run(body(), timeout=90)


def test_four_xx_does_not_trip_the_breaker(gateway, backend):
    """A route that answers 404 is a backend bug, not an overload: the
    breaker stays closed and every SEND still reaches the backend."""
    backend.rules({"prefix": "/forward/6/", "status": 404, "body": "no"})
    gw = gateway(breaker_failures=2)

    async def body():
        c = await Client.open(gw, subprotocols=V2)
        for i in range(1, 6):
            await c.send(send(6, b"q", qos=1, msgid=i))
            b = await expect_nak(c, i, 502)
            assert b["temporary"] is False
        assert backend.count("/forward/6/") == 5
        assert route(gw, "rainbow_route_breaker_state", msgtype=6) == 0
        await c.close()

    run(body(), timeout=60)
