"""02 forward: client SENDs to the backend (A.3), response headers (A.5), and
backend failures as seen by v1 (silence) and v2 (NAK) clients (B.1, B.3)."""
import os

import pytest

import rainbow as rb
from rainbow import Client, run

SIG_KEYS = {"timestamp", "nonce", "signature"}
V2 = ["rainbow.v2"]


def test_qos0_forward_exact_and_no_reply(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(bytes.fromhex("1000017b2261223a307d"))
        await backend.await_requests("/forward/", 1)
        await c.expect_no_frame(0.5)
        await c.qos1(2, 10, b'{"a":1}')  # still alive
        await c.expect_no_frame(0.2)
        await c.close()
        return c

    c = run(body())
    fw = backend.requests("/forward/")
    assert [(r.method, r.path) for r in fw] == [("POST", "/forward/1/"), ("POST", "/forward/2/")]
    r = fw[0]
    assert set(r.query) == SIG_KEYS, r.target
    rb.check_signature(r)
    assert r.body == b'{"a":0}'
    ident = c.identity
    assert r.header("RAINBOWCLIENTIDENTITY") == ident
    assert fw[1].header("RAINBOWCLIENTIDENTITY") == ident
    assert r.header("RAINBOWCLIENTCOOKIE") is None


def test_qos1_exact_ack(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(bytes.fromhex("120002000a7b2261223a317d"))
        await c.expect(bytes.fromhex("20000a") + b're:{"a":1}')
        await c.expect_no_frame(0.2)
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [(r.path, r.body) for r in fw] == [("/forward/2/", b'{"a":1}')]


def test_empty_payload_is_forwarded(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(5, b"", qos=0))
        await backend.await_requests("/forward/5/", 1)
        await c.send(bytes.fromhex("1200050001"))
        await c.expect(bytes.fromhex("200001") + b"re:")
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [(r.path, r.body) for r in fw] == [("/forward/5/", b""), ("/forward/5/", b"")]
    assert all(r.header("Content-Length") in (None, "0") for r in fw), [r.headers for r in fw]


def test_binary_and_large_payloads_are_exact(gateway, backend):
    gw = gateway()
    binary = bytes(range(256)) * 4
    large = os.urandom(60000)

    async def body():
        c = await Client.open(gw)
        await c.qos1(6, 1, binary)
        await c.qos1(6, 2, large)
        await c.close()
    run(body())
    assert [r.body for r in backend.requests("/forward/6/")] == [binary, large]


def test_binary_reply_is_exact(gateway, backend):
    reply = bytes(range(256))
    backend.rules({"prefix": "/forward/", "body_hex": reply.hex()})
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 7, b"q", reply=reply)
        await c.close()
    run(body())


@pytest.mark.parametrize("msgtype", [0, 7, 65535])
def test_msgtype_selects_route(gateway, backend, msgtype):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.qos1(msgtype, 3, b"t")
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [r.path for r in fw] == ["/forward/%d/" % msgtype]


def test_forward_url_placeholder(gateway, backend):
    gw = gateway(forward_url=backend.url("/api/{message_type}/x"))

    async def body():
        c = await Client.open(gw)
        await c.qos1(7, 1, b'{"p":7}')
        await c.qos1(65535, 2, b'{"p":65535}')
        await c.close()
    run(body())
    reqs = [r for r in backend.requests() if r.method == "POST"]
    assert [(r.path, r.body) for r in reqs] == [("/api/7/x", b'{"p":7}'),
                                                ("/api/65535/x", b'{"p":65535}')]
    for r in reqs:
        assert set(r.query) == SIG_KEYS, r.target


# ------------------------------------------------------- response headers (A.5)

def test_cookie_set_by_hook_and_replaced_by_forward(gateway, backend):
    backend.rules({"prefix": "/connect", "headers": {"RAINBOWCLIENTCOOKIE": "c1"}},
                  {"prefix": "/forward/2/", "headers": {"RAINBOWCLIENTCOOKIE": "c2"}, "times": 1})
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 1, b"a")
        await c.qos1(2, 2, b"b")   # carries c1, answer sets c2
        await c.qos1(1, 3, b"c")
        await c.send(rb.send(1, b"d"))  # qos0: same cookie
        await backend.await_requests("/forward/", 4)
        await c.close()
        await backend.await_requests("/close", 1, timeout=3)
        return c
    c = run(body())
    fw = backend.requests("/forward/")
    assert [(r.body, r.header("RAINBOWCLIENTCOOKIE")) for r in fw] == [
        (b"a", "c1"), (b"b", "c1"), (b"c", "c2"), (b"d", "c2")]
    closes = backend.requests("/close")
    assert len(closes) == 1
    assert closes[0].header("RAINBOWCLIENTCOOKIE") == "c2"
    assert closes[0].header("RAINBOWCLIENTIDENTITY") == c.identity


def channels_of(info):
    chans = info["channels"]
    assert isinstance(chans, list), info
    out = {}
    for item in chans:
        assert isinstance(item, list) and len(item) == 2, info
        assert item[0] not in out, "channel listed twice: %r" % info
        out[item[0]] = item[1]
    assert info["channels_cnt"] == len(out), info
    assert info["status"] == 0, info
    return out


def test_channels_from_hook_headers(gateway, backend):
    backend.rules({"prefix": "/connect", "headers": {"RAINBOWCLIENTCHANNEL": "room1;;room2"}},
                  {"prefix": "/forward/8/", "headers": {"RAINBOWCLIENTCHANNELUNSUB": "room1"}})
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        info = gw.serverinfo()
        assert channels_of(info) == {"room1": 1, "room2": 1}
        assert info["server"].endswith(":%d" % gw.port), info
        assert isinstance(info["process"], dict), info
        b = await Client.open(gw)
        assert channels_of(gw.serverinfo()) == {"room1": 2, "room2": 2}
        await a.qos1(8, 1, b"unsub")
        assert channels_of(gw.serverinfo()) == {"room1": 1, "room2": 2}
        await b.close()
        await rb.await_until(lambda: channels_of(gw.serverinfo()) == {"room2": 1}, 3,
                             what="b's channels to go")
        await a.close()
        await rb.await_until(lambda: channels_of(gw.serverinfo()) == {}, 3,
                             what="a's channels to go")
    run(body())


@pytest.mark.parametrize("qos", [1, 2])
def test_request_invalid_v1_is_silent(gateway, backend, qos):
    backend.rules({"prefix": "/forward/9/", "headers": {"RAINBOWREQUESTINVALID": "bad thing"}})
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(9, b"x", qos=qos, msgid=1))
        await backend.await_requests("/forward/9/", 1)
        await c.expect_no_frame(0.5)
        await c.qos1(2, 2, b"alive")
        await c.expect_no_frame(0.2)
        await c.close()
    run(body())


@pytest.mark.parametrize("qos,status", [(0, 200), (1, 200), (2, 200), (1, 403), (2, 500)])
def test_request_invalid_v2_is_nak_422(gateway, backend, qos, status):
    """RAINBOWREQUESTINVALID wins whatever the HTTP status it comes with."""
    backend.rules({"prefix": "/forward/9/", "status": status,
                   "headers": {"RAINBOWREQUESTINVALID": "bad thing"}})
    gw = gateway()

    async def body():
        c = await Client.open(gw, subprotocols=V2)
        mid = None if qos == 0 else 21
        await c.send(rb.send(9, b"x", qos=qos, msgid=mid))
        p = await c.recv_pkt()
        assert p.cmd == rb.NAK and p.msgid == (mid or 0), rb.describe(p.raw)
        assert p.raw[0] == 0x60
        nak = rb.nak_body(p)
        assert nak["code"] == 422 and nak["temporary"] is False, nak
        assert "bad thing" in nak["message"], nak
        await c.qos1(2, 22, b"alive")
        await c.close()
    run(body())


# ------------------------------------------------- backend failures, v1 vs v2

# kind -> (gateway options, stub rules, expected NAK code, temporary)
def failure_setup(kind, backend):
    opts = {"forward_concurrency": 4}
    rules = []
    if kind == "http500":
        rules = [{"prefix": "/forward/9/", "status": 500, "body": "boom"}]
        want = (502, True)
    elif kind == "http404":
        rules = [{"prefix": "/forward/9/", "status": 404, "body": "nope"}]
        want = (502, False)
    elif kind == "timeout":
        opts["backend_timeout"] = 1
        rules = [{"prefix": "/forward/9/", "delay": 2.5}]
        want = (504, True)
    elif kind == "refused":
        opts["forward_url"] = "http://127.0.0.1:%d/forward/" % rb.closed_port()
        want = (503, True)
    else:
        raise AssertionError(kind)
    if rules:
        backend.rules(*rules)
    return opts, want


KINDS = ["http500", "http404", "timeout", "refused"]


@pytest.mark.parametrize("kind", KINDS)
def test_backend_failure_v1_is_silent(gateway, backend, kind):
    opts, _ = failure_setup(kind, backend)
    gw = gateway(**opts)

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(9, b"f1", qos=1, msgid=1))
        await c.send(rb.send(9, b"f2", qos=2, msgid=2))
        await c.send(rb.send(9, b"f0"))
        if kind == "refused":
            await c.expect_no_frame(1.0)
            await c.ping_ok()
            await c.send(rb.send(9, b"f3", qos=1, msgid=3))
            await c.expect_no_frame(0.5)
            await c.ping_ok()
        else:
            await backend.await_requests("/forward/9/", 3)
            await c.expect_no_frame(1.6 if kind == "timeout" else 0.5)
            await c.qos1(2, 4, b"alive")
            await c.expect_no_frame(0.2)
        await c.close()
    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_backend_failure_v2_is_nak(gateway, backend, kind):
    opts, (code, temporary) = failure_setup(kind, backend)
    gw = gateway(**opts)

    async def body():
        c = await Client.open(gw, subprotocols=V2)
        await c.send(rb.send(9, b"f1", qos=1, msgid=1))
        await c.send(rb.send(9, b"f2", qos=2, msgid=2))
        await c.send(rb.send(9, b"f0"))
        naks = {}
        for _ in range(3):
            p = await c.recv_pkt(timeout=5)
            assert p.cmd == rb.NAK, rb.describe(p.raw)
            assert p.msgid not in naks, "two NAKs for id %d" % p.msgid
            naks[p.msgid] = rb.nak_body(p)
        assert set(naks) == {0, 1, 2}, naks
        for mid, nak in naks.items():
            assert (nak["code"], nak["temporary"]) == (code, temporary), (mid, nak)
        if kind != "refused":
            await c.qos1(2, 4, b"alive")
        await c.expect_no_frame(0.2)
        await c.close()
    run(body())


def test_backend_drops_connection_v2(gateway, backend):
    """The backend closes the connection without answering (every time)."""
    backend.rules({"prefix": "/forward/9/", "close": True})
    gw = gateway()

    async def body():
        c = await Client.open(gw, subprotocols=V2)
        await c.send(rb.send(9, b"d", qos=1, msgid=5))
        p = await c.recv_pkt()
        nak = rb.nak_body(p)
        assert p.msgid == 5
        assert nak["code"] in (502, 503) and nak["temporary"] is True, nak
        await c.qos1(2, 6, b"alive")
        await c.close()
    run(body())
    # at most one retry (a stale keep-alive connection), never more
    assert 1 <= backend.count("/forward/9/") <= 2


def test_no_forward_url_v1_silent_v2_nak(gateway, backend):
    gw = gateway(forward_url="")

    async def body():
        a = await Client.open(gw)
        await a.send(rb.send(2, b"x", qos=1, msgid=1))
        await a.expect_no_frame(0.5)
        await a.ping_ok()
        b = await Client.open(gw, subprotocols=V2)
        await b.send(rb.send(2, b"x", qos=1, msgid=2))
        p = await b.recv_pkt()
        assert p.cmd == rb.NAK and p.msgid == 2, rb.describe(p.raw)
        rb.nak_body(p)
        await a.close()
        await b.close()
    run(body())
    assert backend.count("/forward/") == 0
