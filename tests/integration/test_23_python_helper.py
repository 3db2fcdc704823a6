"""23 Python helper (clients/python/rainbow_backend): the signature vectors
shared with tests/unit/test_sign.c (tests/fixtures/sign_vectors.json), its
REST client against the real gateway (v1 and v2 signatures, every call),
the example backend of `make run` driving real clients, and a backend built
on the helper (WSGI under wsgiref) answering the gateway's calls: cookie
context, channels, refusals (NAK 422), unknown types, handler crashes."""
import asyncio
import json
import re
import urllib.parse

import pytest
import websockets

import rainbow as rb
from rainbow import Client, Collector, run
from py_helper import (EXAMPLE, Proc, helper_backend, helper_urls, json_lines, lines)

from rainbow_backend import RestClient, RestError, signing

VECTORS = json.loads((rb.FIXTURES / "sign_vectors.json").read_text())


# ---------------------------------------------------------------- shared vectors

def test_sign_v1_vectors():
    assert len(VECTORS["v1"]) >= 8
    for v in VECTORS["v1"]:
        assert signing.sign_v1(v["token"], v["timestamp"], v["nonce"]) == v["signature"], v
        # and the tests' own independent implementation agrees
        assert rb.sign_v1(v["token"], v["timestamp"], v["nonce"]) == v["signature"], v


def test_verify_v1_vectors():
    kinds = {"missing": "invalid", "mismatch": "invalid", "stale": "stale"}
    assert len(VECTORS["v1_verify"]) >= 30
    for v in VECTORS["v1_verify"]:
        try:
            signing.check_v1(v["token"], v["timestamp"], v["nonce"], v["signature"],
                             now=v["now"], window=v["window"])
            got = "ok"
        except signing.SignatureError as e:
            got = kinds[e.kind]
        assert got == v["result"], v["name"]


def test_sign_v2_vectors():
    for v in VECTORS["v2"]:
        pairs = [tuple(p) for p in v["query"]]
        assert signing.canonical_query(pairs) == v["canonical_query"], v["name"]
        assert signing.sign_v2(v["token"], v["method"], v["path"], pairs,
                               v["body"].encode()) == v["signature"], v["name"]
        assert rb.sign_v2(v["token"], v["method"], v["path"], pairs,
                          v["body"].encode()) == v["signature"], v["name"]


# ---------------------------------------------------------------- REST client

def api(gw, **kw):
    return RestClient("http://127.0.0.1:%d" % gw.port, gw.token, **kw)


@pytest.mark.parametrize("scheme", ["v1", "v2"])
def test_rest_client_every_call(gateway, scheme):
    gw = gateway(connect_url="", forward_url="", close_url="")
    a = api(gw, signature=scheme)
    assert a.hello()

    async def body():
        c1 = await Client.open(gw, query={"X-DEVICEID": "pa"}, subprotocols=["rainbow.v2"])
        c2 = await Client.open(gw, query={"X-DEVICEID": "pb"}, subprotocols=["rainbow.v2"])
        col1 = Collector(c1, auto=True, reply=b"ack-1")
        col2 = Collector(c2, auto=True, reply=b"ack-2")
        i1, i2 = c1.hello["identity"], c2.hello["identity"]
        await asyncio.to_thread(a.sub, i1, "room")
        await asyncio.to_thread(a.sub, i2, "room")
        assert sorted(x["identity"] for x in await asyncio.to_thread(a.presence, "room")) == \
            sorted([i1, i2])
        assert (await asyncio.to_thread(a.channels))["room"] == 2
        r = await asyncio.to_thread(a.send, {"m": 1}, channel="room", msgtype=1002, qos=1,
                                    timeout=5)
        assert r["status"] == 0 and r["connections"] == 2 and r["failed"] == 0, r
        assert r["data"] in ("ack-1", "ack-2")
        r = await asyncio.to_thread(a.send, b"\x00raw", identity=i1, qos=0)
        assert r == {"status": 0, "connections": 1}, r
        r = await asyncio.to_thread(a.send, "text", device="pb", qos=2, msgtype=7, timeout=5)
        assert r["connections"] == 1 and r["data"] == "ack-2", r
        await col1.wait_count(2)
        await col2.wait_count(2)
        got1 = [p for p in col1.packets() if p.cmd == rb.SEND]
        assert [(p.msgtype, p.qos, p.payload) for p in got1] == [
            (1002, 1, b'{"m":1}'), (1, 0, b"\x00raw")]
        await rb.await_until(lambda: any(p.cmd == rb.REL for p in col2.packets()), 5,
                             what="REL of the QoS 2 push")
        got2 = [p for p in col2.packets() if p.cmd == rb.SEND]
        assert [(p.msgtype, p.qos, p.payload) for p in got2] == [
            (1002, 1, b'{"m":1}'), (7, 2, b"text")]
        # occupy: c1 takes the room alone; unsub; kick with a code
        await asyncio.to_thread(a.sub, i1, "room", occupy=True)
        assert [x["identity"] for x in await asyncio.to_thread(a.presence, "room")] == [i1]
        await asyncio.to_thread(a.unsub, i1, "room")
        assert await asyncio.to_thread(a.presence, "room") == []
        await asyncio.to_thread(a.kick, i2, code=4001, reason="bye")
        await rb.await_until(lambda: col2.closed is not None, 5, what="c2 kicked")
        assert col2.closed.code == 4001 and col2.closed.reason == "bye"
        with pytest.raises(RestError) as e:
            await asyncio.to_thread(a.send, "x", identity=i2, qos=0)
        assert e.value.msg == "no such connection"
        await col1.stop()
        await col2.stop()
        await c1.close()
    run(body())
    # a wrong token is refused with the gateway's reason
    with pytest.raises(RestError) as e:
        RestClient("http://127.0.0.1:%d" % gw.port, "wrong", signature=scheme).channels()
    assert e.value.msg == "signature error"


def test_rest_client_v2_only_gateway_and_strict_codes(gateway):
    gw = gateway(connect_url="", forward_url="", close_url="", api_signature="v2",
                 rest_status_codes="strict")
    assert api(gw, signature="v2").channels() == {}
    with pytest.raises(RestError) as e:
        api(gw, signature="v1").channels()
    assert (e.value.msg, e.value.http_status) == ("signature error", 403)
    with pytest.raises(RestError) as e:
        api(gw).send("x", identity="0" * 64, qos=0)
    assert (e.value.msg, e.value.http_status) == ("no such connection", 404)
    with pytest.raises(ValueError):
        api(gw).send("x", channel="a", identity="b")


# ---------------------------------------------------------------- the example backend

def test_example_backend_drives_clients(gateway, tmp_path):
    """clients/python/example_backend.py (rebuilt on the helper), as `make
    run` starts it: connect hook joins ?channel=, forwards echo, close hook
    logs; a push through the helper's REST client reaches the client."""
    port = rb.free_port()
    be = Proc("example", [rb.PY, str(EXAMPLE), "--port", str(port), "--token", rb.TOKEN],
              tmp_path, port=port).start()
    try:
        gw = gateway(connect_url=be.url("/rainbow/connect"), forward_url=be.url("/rainbow/msg/"),
                     close_url=be.url("/rainbow/close"))

        async def body():
            c = await Client.open(gw, query={"channel": "room"})
            await c.send(rb.send(1, b'{"hello":1}', qos=1, msgid=1))
            await c.expect(rb.ack(1, b'{"hello":1}'))
            await c.send(rb.send(2, b"two", qos=2, msgid=2))
            await c.expect(rb.rec(2, b"two"))
            await c.send(rb.rel(2))
            await c.expect(rb.com(2))
            call = asyncio.create_task(asyncio.to_thread(
                api(gw).send, {"m": 1}, channel="room", msgtype=1002, qos=1, timeout=5))
            p = await c.recv_pkt()
            assert (p.cmd, p.msgtype, p.qos, p.payload) == (rb.SEND, 1002, 1, b'{"m":1}')
            await c.send(rb.ack(p.msgid, b"got it"))
            r = await call
            assert (r["connections"], r["data"]) == (1, "got it"), r
            await c.close()
        run(body())
        rb.wait_until(lambda: "close " in be.log(), 10, what="the close hook")
        log = be.log()
        assert "-> channel room" in log and "bad signature" not in log, log
    finally:
        be.stop()


# ---------------------------------------------------------------- a backend on the helper

@pytest.fixture
def helper(tmp_path):
    be = helper_backend(tmp_path)
    yield be
    be.kill()
    print("---- helper backend log ----\n" + be.log()[-3000:])


def test_helper_backend_context_channels_refusals(gateway, helper, tmp_path):
    gw = gateway(**helper_urls(helper))

    async def body():
        c = await Client.open(gw, query={"channel": "lobby", "user": "ann", "X-DEVICEID": "d1"},
                              subprotocols=["rainbow.v2"])
        me = c.hello["identity"]
        assert gw.presence("lobby") == [me]

        async def ask(msgtype, payload, msgid):
            await c.send(rb.send(msgtype, payload, qos=1, msgid=msgid))
            return await c.recv_pkt()
        p = await ask(1, b'{"a":1}', 1)
        assert (p.cmd, p.msgid, json.loads(p.payload)) == (rb.ACK, 1, {"echo": {"a": 1},
                                                                        "user": "ann"})
        p = await ask(2, b'{"name":"bob"}', 2)
        assert (p.cmd, json.loads(p.payload)) == (rb.ACK, {"ok": True})
        p = await ask(1, b"[]", 3)                 # the cookie now says bob
        assert json.loads(p.payload) == {"echo": [], "user": "bob"}
        p = await ask(4, b"{}", 4)
        assert rb.nak_body(p) == {"code": 422, "message": "no thanks", "temporary": False}
        assert p.msgid == 4
        p = await ask(9, b"{}", 5)
        assert rb.nak_body(p) == {"code": 422, "message": "unknown message type 9",
                                  "temporary": False}
        p = await ask(1, b"not json", 6)
        assert rb.nak_body(p)["message"] == "payload is not JSON"
        p = await ask(5, b"{}", 7)
        n = rb.nak_body(p)
        assert (n["code"], n["temporary"]) == (502, True), n
        p = await ask(6, b'{"sub":["a","b"],"unsub":["lobby"]}', 8)
        assert p.cmd == rb.ACK
        assert gw.presence("a") == [me] and gw.presence("b") == [me]
        assert gw.presence("lobby") == []
        # QoS 0: no answer at all, but the backend ran
        await c.send(rb.send(1, b"{}", qos=0))
        await c.expect_no_frame(0.3)
        await c.close()
        # refused by the connect handler: HTTP 401
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await Client.open(gw, query={"deny": "1"})
        assert e.value.status_code == 401
    run(body())
    rb.wait_until(lambda: lines(tmp_path / "closed"), 10, what="the close hook")
    ident, user = lines(tmp_path / "closed")[0].split()
    assert user == "bob" and re.fullmatch(r"[0-9a-f]{64}", ident)
    calls = json_lines(tmp_path / "calls")
    msgs = [c for c in calls if c["kind"] == "message"]
    assert [c["type"] for c in msgs] == [1, 2, 1, 4, 9, 1, 5, 6, 1]
    assert msgs[0]["id"] == "d1:1" and msgs[0]["qos"] == "1" and msgs[-1]["qos"] == "0"
    assert "handler bug (expected by the test)" in helper.log()      # the traceback is logged


def test_helper_backend_refuses_bad_and_stale_signatures(gateway, helper, tmp_path):
    """A gateway with another token: its connect hook is refused (403), so
    the client gets 503; a well-signed call with an old timestamp is 403 too."""
    gw = gateway(security_token="not-the-backends", **helper_urls(helper))

    async def body():
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as e:
            await Client.open(gw)
        assert e.value.status_code == 503
    run(body())
    q = urllib.parse.urlencode(rb.signed_query(rb.TOKEN, now=rb.time.time() - 30))
    r = rb.http_request(helper.port, "POST", "/rainbow/msg/1/?" + q, body=b"{}")
    assert r.status == 403 and r.headers["rainbowrequestinvalid"] == "signature error"
    q = urllib.parse.urlencode(rb.signed_query(rb.TOKEN))
    r = rb.http_request(helper.port, "POST", "/rainbow/msg/1/?" + q, body=b"{}")
    assert r.status == 200
    assert helper.log().count("bad signature") == 2, helper.log()
