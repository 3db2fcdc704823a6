"""25 push back-pressure (docs/rest-api.md Back-pressure): while more than
push_backlog copies of earlier pushes wait to be written (between the
threads or in the connections' send queues), /send/ is refused at once
with "busy" and retry_after (HTTP 200 status 1 in compat mode; 503 with
Retry-After under rest_status_codes = strict), counted, and every push that
was accepted is delivered to every member. The edge is slowed by the test
hook RAINBOW_TEST_SEND_DELAY_MS so that the backlog is certain, not a race.
A client that stops reading holds its copies in its send queue: they count
until its queue has not moved for a second, then that client is left out
of the backlog so that it cannot hold back every publisher."""
import asyncio
import concurrent.futures
import socket
import time

import pytest

import rainbow as rb
from rainbow import Client, Collector, run

MEMBERS = 10


def flood(gw, n):
    """n QoS 0 pushes to channel "flood" at once, from threads: the answers."""
    def one(i):
        return gw.push({"channel": "flood", "qos": 0}, b"m%d" % i)
    with concurrent.futures.ThreadPoolExecutor(n) as ex:
        return list(ex.map(one, range(n)))


@pytest.mark.parametrize("codes", ["compat", "strict"])
def test_busy_pushes_refused_accepted_ones_delivered(gateway, backend, codes):
    gw = gateway(start=False, push_backlog=5, rest_status_codes=codes)
    gw.start(env={"RAINBOW_TEST_SEND_DELAY_MS": "300"})

    async def body():
        cs = [await Client.open(gw) for _ in range(MEMBERS)]
        cols = [Collector(c) for c in cs]
        for c in cs:
            await asyncio.to_thread(gw.sub, c.identity, "flood")
        answers = await asyncio.to_thread(flood, gw, 12)
        ok = [r for r in answers if r.json.get("status") == 0]
        busy = [r for r in answers if r.json.get("status") == 1]
        assert len(ok) + len(busy) == 12, [r.json for r in answers]
        assert ok and busy, [r.json for r in answers]
        for r in busy:
            assert r.json == {"status": 1, "msg": "busy", "retry_after": 1}, r.json
            if codes == "strict":
                assert r.status == 503 and r.headers.get("retry-after") == "1", r.headers
            else:
                assert r.status == 200
        for r in ok:
            assert r.status == 200 and r.json["connections"] == MEMBERS, r.json
        # Every accepted push reaches every member (each carries its own
        # payload, so count per member).
        want = len(ok)
        for col in cols:
            await rb.await_until(lambda: len(col.frames) >= want, 30,
                                 what="the accepted pushes at every member")
        await asyncio.sleep(0.5)
        for col in cols:
            assert len(col.frames) == want, (len(col.frames), want)
        m = gw.metrics()
        assert m["rainbow_pushes_refused_busy_total"][3][0][2] == len(busy)
        # Once the edge caught up, pushes go through again.
        await rb.await_until(lambda: gw.metrics()["rainbow_push_backlog"][3][0][2] == 0, 30,
                             what="the backlog drained")
        r = await asyncio.to_thread(gw.push, {"channel": "flood", "qos": 0}, b"after")
        assert r.json["status"] == 0, r.json
        for c in cs:
            await c.close()
    run(body(), timeout=120)
    assert "push refused: busy" in gw.log_text()


def test_unbounded_when_push_backlog_is_zero(gateway, backend):
    gw = gateway(start=False, push_backlog=0)
    gw.start(env={"RAINBOW_TEST_SEND_DELAY_MS": "100"})

    async def body():
        c = await Client.open(gw)
        await asyncio.to_thread(gw.sub, c.identity, "flood")
        answers = await asyncio.to_thread(flood, gw, 6)
        assert all(r.json["status"] == 0 for r in answers), [r.json for r in answers]
        await c.close()
    run(body(), timeout=60)


def test_queued_copies_count_until_their_client_stalls(gateway, backend):
    gw = gateway(push_backlog=5, send_queue_bytes="16m", send_queue_hard_bytes="32m",
                 max_message_size="1m")
    tag = rb.new_tag()
    raw = rb.RawClient(gw.port, "/connect/?rbtag=" + tag, rcvbuf=4096, mss=1024)
    assert raw.status == 101, raw.status_line
    gw.sub(backend.connect_request(tag).header("RAINBOWCLIENTIDENTITY"), "stuck")
    # 400 x 2 KB in one call: far more than the socket buffers of a client
    # that does not read, so most copies wait in its send queue.
    n, size = 400, 2048
    msgs = [{"channel": "stuck", "qos": 0, "data": "%04d" % i + "x" * (size - 4)}
            for i in range(n)]
    r = gw.api("POST", "/batch/", body={"messages": msgs}, timeout=30)
    assert r.status == 200 and r.json["status"] == 0, r.json
    assert all(x["connections"] == 1 for x in r.json["results"])
    # Those copies count: the next push is refused, with a retry_after.
    r = gw.push({"channel": "stuck", "qos": 0}, b"refused")
    assert r.json["status"] == 1 and r.json["msg"] == "busy", r.json
    assert 0.01 <= r.json["retry_after"] <= 1, r.json
    # Within about a second nothing of that queue moved: the client is
    # left out of the backlog, and pushes go through again.
    rb.wait_until(lambda: gw.metrics()["rainbow_push_backlog"][3][0][2] == 0, 30,
                  what="the stalled client's copies left out of the backlog")
    assert rb.metric_value(gw.metrics(), "rainbow_connections_stalled_total") == 1
    r = gw.push({"channel": "stuck", "qos": 0}, b"last")
    assert r.json["status"] == 0 and r.json["connections"] == 1, r.json
    assert "left out of the push backlog" in gw.log_text()
    # Nothing was dropped: once the client reads, it gets all of it, in order.
    got = []
    deadline = time.monotonic() + 60
    while len(got) < n + 1 and time.monotonic() < deadline:
        try:
            op, data = raw.read_frame(5)
        except socket.timeout:
            continue
        if op == 0x2:
            got.append(data)
    assert len(got) == n + 1, len(got)
    assert [g[-size:][:4] for g in got[:n]] == [b"%04d" % i for i in range(n)]
    assert got[n].endswith(b"last")
