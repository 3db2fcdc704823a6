"""14 compat: the REST API as a backend written for the original Rainbow sees it
(docs/protocol.md Pushing, Signatures; docs/rest-api.md "Compatibility").

The calls here are the original's, with its parameters: v1 signatures with a
4-digit integer nonce (the original SDK drew them from 1000..9999), /send/
without msgtype, qos or timeout, /sub/ and /unsub/ JSON bodies, an unsigned
GET /serverinfo/?cluster=1, a signed GET /send/. Every outcome travels in the
JSON "status" over HTTP 200 (rest_status_codes = compat, the default), and the
remaining differences from the original are pinned one by one: strict mode,
serverinfo_auth, api_signature = v2, v1 replay, partial success, the /send/
log line, decimal outbound nonces."""
import asyncio
import base64
import json
import os
import pwd
import random
import re
import time
import urllib.parse

import pytest

import rainbow as rb
from rainbow import Client, Collector, run

PAYLOAD = b'{"m":1}'
NOBODY = "0" * 64
SIG_ERROR = {"status": 1, "msg": "signature error"}
EMPTY_QOS12 = {"status": 0, "connections": 0, "data": ""}


# ---------------------------------------------------------------- an original backend

def original_target(gw, path, params=None, token=None, nonce=None, now=None):
    """path?params&timestamp&nonce&signature as the original SDK built it:
    v1 sha1 signature, nonce an integer in 1000..9999."""
    ts = str(int(time.time() if now is None else now))
    nonce = str(random.randint(1000, 9999) if nonce is None else nonce)
    sig = rb.sign_v1(gw.token if token is None else token, ts, nonce)
    q = list((params or {}).items()) + [("timestamp", ts), ("nonce", nonce), ("signature", sig)]
    return path + "?" + urllib.parse.urlencode(q)


def call(gw, method, target, body=None, timeout=30.0, headers=None):
    """One raw HTTP call; body bytes (or None)."""
    return rb.http_request(gw.port, method, target, body=body, headers=headers or {},
                           timeout=timeout)


def answer(resp):
    """(HTTP status, JSON) of a REST answer; asserts application/json."""
    r = rb.api_response(resp)
    return r.status, r.json


def original_send(gw, params, body=PAYLOAD, **kw):
    return answer(call(gw, "POST", original_target(gw, "/send/", params), body, **kw))


def original_json(gw, path, obj, **kw):
    return answer(call(gw, "POST", original_target(gw, path), json.dumps(obj).encode(),
                       headers={"Content-Type": "application/json"}, **kw))


async def in_thread(fn, *a, **kw):
    return await asyncio.to_thread(fn, *a, **kw)


def push_lines(gw):
    return [ln for ln in gw.log_text().splitlines() if "rest: push to " in ln]


# ---------------------------------------------------------------- /send/

def test_original_load_script_push(gateway, backend):
    """POST /send/?channel=X&timestamp&nonce&signature, nothing else: QoS 2,
    msgtype 1 (exact bytes 14 0001 <id> payload), answered with the REC's
    payload over HTTP 200. (Before: HTTP 400, msgtype required.)"""
    gw = gateway(retry_interval=5)

    async def body():
        a = await Client.open(gw)
        st, js = await in_thread(original_json, gw, "/sub/", {"identity": a.identity,
                                                              "channel": "load"})
        assert (st, js) == (200, {"status": 0})
        col = Collector(a, auto=True, reply=b'{"got":1}')
        st, js = await in_thread(original_send, gw, {"channel": "load"})
        assert st == 200, (st, js)
        assert js == {"status": 0, "connections": 1, "failed": 0, "pending": 0,
                      "data": '{"got":1}'}, js
        await col.wait_count(2)   # SEND, then REL (answered with COM)
        await col.stop()
        send, rel = col.data()[:2]
        mid = int.from_bytes(send[3:5], "big")
        assert send == bytes([0x14, 0x00, 0x01]) + mid.to_bytes(2, "big") + PAYLOAD, send.hex()
        assert rel == rb.rel(mid), rel.hex()
        await a.close()
    run(body())


@pytest.mark.parametrize("timeout", ["0", "-5"])
def test_send_timeout_not_positive_means_10(gateway, backend, timeout):
    """timeout <= 0 is the default 10 s: a member that acknowledges after
    1.5 s is counted (a zero timeout would have answered "timeout" at once).
    (Before: HTTP 400, timeout must be 1..3600.)"""
    gw = gateway(retry_interval=30)

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "slow")
        task = asyncio.get_running_loop().create_task(
            in_thread(original_send, gw, {"channel": "slow", "qos": 1, "timeout": timeout}))
        p = await a.recv_pkt(timeout=10)
        assert (p.cmd, p.qos, p.msgtype) == (rb.SEND, 1, 1), rb.describe(p.raw)
        await asyncio.sleep(1.5)
        assert not task.done(), "answered before the acknowledgement"
        await a.send(rb.ack(p.msgid, b"late"))
        st, js = await task
        assert (st, js) == (200, {"status": 0, "connections": 1, "failed": 0, "pending": 0,
                                  "data": "late"})
        await a.close()
    run(body())


@pytest.mark.parametrize("qos", [None, "0", "1", "2"])
def test_send_to_empty_channel(gateway, backend, qos):
    """No members is not an error: the original's exact answers, at once.
    (Before: HTTP 404 "channel miss".)"""
    gw = gateway()
    params = {"channel": "nobody-here"}
    if qos is not None:
        params["qos"] = qos
    t0 = time.monotonic()
    st, js = original_send(gw, params)
    assert (st, js) == (200, {"status": 0} if qos == "0" else EMPTY_QOS12)
    assert time.monotonic() - t0 < 5, "waited for a timeout with nobody to wait for"


@pytest.mark.parametrize("params", [{}, {"channel": ""}, {"qos": "1", "msgtype": "3"}])
def test_send_without_channel_is_channel_miss(gateway, backend, params):
    gw = gateway()
    assert original_send(gw, params) == (200, {"status": 1, "msg": "channel miss"})


def test_send_bad_params_over_200(gateway, backend):
    """qos out of range: the original's "qos level error"; other bad values:
    "params error" (with a "detail" naming the parameter), all over 200."""
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "c")
        assert original_send(gw, {"channel": "c", "qos": "3"}) == (
            200, {"status": 1, "msg": "qos level error"})
        for bad, name in (({"msgtype": "abc"}, "msgtype"), ({"msgtype": "65536"}, "msgtype"),
                          ({"timeout": "soon"}, "timeout"),
                          ({"identity": a.identity}, "exactly one")):
            st, js = original_send(gw, dict({"channel": "c"}, **bad))
            assert st == 200 and set(js) == {"status", "msg", "detail"}, (bad, st, js)
            assert (js["status"], js["msg"]) == (1, "params error"), (bad, js)
            assert name in js["detail"], (bad, js)
        await a.expect_no_frame(0.3)   # nothing was delivered
        await a.close()
    run(body())


def test_send_timeout_and_partial_success_over_200(gateway, backend):
    """Nobody acknowledges: 200 {"status":1,"msg":"timeout"} (plus the added
    counts). Some do: status 0, connections = those that did, failed = the
    others (the gateway's choice, docs/rest-api.md). (Before: 504.)"""
    gw = gateway(retry_interval=0.5)

    async def body():
        a, b = await Client.open(gw), await Client.open(gw)
        for x in (a, b):
            gw.sub(x.identity, "t")
        cb = Collector(b)                      # never acknowledges
        ca = Collector(a)
        st, js = await in_thread(original_send, gw, {"channel": "t", "qos": 1, "timeout": 1})
        assert (st, js) == (200, {"status": 1, "msg": "timeout", "connections": 0,
                                  "failed": 2, "pending": 0, "data": None})
        await ca.stop()
        ca = Collector(a, auto=True, reply=b"ok-a")
        st, js = await in_thread(original_send, gw, {"channel": "t", "qos": 1, "timeout": 1})
        assert (st, js) == (200, {"status": 0, "connections": 1, "failed": 1, "pending": 0,
                                  "data": "ok-a"})
        await ca.stop()
        await cb.stop()
        await a.close()
        await b.close()
    run(body())


def test_send_unknown_identity_or_device_over_200(gateway, backend):
    gw = gateway()
    assert original_send(gw, {"identity": NOBODY}) == (
        200, {"status": 1, "msg": "no such connection"})
    assert original_send(gw, {"device": "never-seen"}) == (
        200, {"status": 1, "msg": "no such device"})


def test_signed_get_send_answers_ok(gateway, backend):
    gw = gateway()
    r = call(gw, "GET", original_target(gw, "/send/"))
    assert (r.status, r.body) == (200, b"ok"), (r.status, r.body)
    assert r.headers.get("content-type", "").split(";")[0] == "text/plain", r.headers
    r = call(gw, "GET", "/send/")             # unsigned: a signature error, as any call
    assert answer(r) == (200, SIG_ERROR)
    r = call(gw, "PUT", original_target(gw, "/send/"), b"")
    st, js = answer(r)
    assert st == 405 and js["status"] == 1, (st, js)


def test_push_log_line(gateway, backend):
    """log_level info: one line per accepted /send/ (target, qos, msgtype,
    recipients), none for a refused one."""
    gw = gateway(log_level="info")

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "logged")
        col = Collector(a, auto=True)
        assert push_lines(gw) == []
        assert (await in_thread(original_send, gw, {"channel": "logged", "msgtype": "7",
                                                    "qos": "0"}))[0] == 200
        assert (await in_thread(original_send, gw, {"identity": a.identity}))[1]["status"] == 0
        assert (await in_thread(original_send, gw, {"channel": "empty\nline"}))[1] == EMPTY_QOS12
        # refused: no line
        await in_thread(original_send, gw, {"channel": "logged", "qos": "9"})
        await in_thread(answer, call(gw, "POST", "/send/?channel=logged", PAYLOAD))
        await col.wait_count(2)
        await col.stop()
        lines = push_lines(gw)
        assert len(lines) == 3, lines
        assert lines[0].endswith('rest: push to channel "logged": qos 0, msgtype 7, '
                                 '1 recipients (0 offline)'), lines[0]
        assert lines[1].endswith('rest: push to identity "%s": qos 2, msgtype 1, '
                                 '1 recipients (0 offline)' % a.identity), lines[1]
        assert lines[2].endswith('rest: push to channel "empty?line": qos 2, msgtype 1, '
                                 '0 recipients (0 offline)'), lines[2]
        assert all(" INFO " in ln for ln in lines), lines
        await a.close()
    run(body())


# ---------------------------------------------------------------- /sub/ /unsub/

def test_sub_unsub_original_answers(gateway, backend):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        ok = (200, {"status": 0})
        assert original_json(gw, "/sub/", {"identity": a.identity, "channel": "s"}) == ok
        assert gw.presence("s") == [a.identity]
        # unknown identity: /sub/ says so, /unsub/ is a success (before: 404 both)
        assert original_json(gw, "/sub/", {"identity": NOBODY, "channel": "s"}) == (
            200, {"status": 1, "msg": "no such connection"})
        assert original_json(gw, "/unsub/", {"identity": NOBODY, "channel": "s"}) == ok
        # not a member (the original answered 500 here, a bug): a success
        assert original_json(gw, "/unsub/", {"identity": a.identity, "channel": "x"}) == ok
        assert original_json(gw, "/unsub/", {"identity": a.identity, "channel": "s"}) == ok
        assert gw.presence("s") == []
        # bad params: "params error" over 200
        for path, obj in (("/sub/", {"channel": "s"}), ("/sub/", {"identity": a.identity}),
                          ("/unsub/", {"identity": 5, "channel": "s"}),
                          ("/sub/", {"identity": a.identity, "channel": "s", "occupy": "y"})):
            st, js = original_json(gw, path, obj)
            assert st == 200 and (js["status"], js["msg"]) == (1, "params error"), (obj, js)
        st, js = answer(call(gw, "POST", original_target(gw, "/sub/"), b"identity=x"))
        assert st == 200 and (js["status"], js["msg"]) == (1, "params error"), js
        assert gw.channels() == {}
        await a.close()
    run(body())


# ---------------------------------------------------------------- signatures

@pytest.mark.parametrize("path", ["/send/", "/sub/", "/unsub/"])
def test_bad_signature_is_status_1_over_200(gateway, backend, path):
    """The original answered a bad signature with JSON status 1 over HTTP 200;
    nothing happens. (Before: 403.)"""
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "s")
        data = PAYLOAD if path == "/send/" else json.dumps(
            {"identity": a.identity, "channel": "s2"}).encode()
        params = {"channel": "s", "qos": "0"} if path == "/send/" else None
        for target in (path + ("?" + urllib.parse.urlencode(params) if params else ""),
                       original_target(gw, path, params, token="wrong"),
                       original_target(gw, path, params, now=time.time() - 60)):
            assert answer(call(gw, "POST", target, data)) == (200, SIG_ERROR), target
        await a.expect_no_frame(0.2)
        assert gw.channels() == {"s": 1}
        await a.close()
    run(body())


def test_v1_signature_may_repeat(gateway, backend):
    """v1 has no replay check, as the original (its SDK's nonces are 4-digit):
    the byte-identical call is accepted twice (docs/rest-api.md)."""
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "r")
        target = original_target(gw, "/send/", {"channel": "r", "qos": "0"}, nonce=1234)
        for _ in range(2):
            assert answer(await in_thread(call, gw, "POST", target, PAYLOAD)) == (
                200, {"status": 0, "connections": 1})
            await a.expect(rb.send(1, PAYLOAD))
        await a.close()
    run(body())


def test_api_signature_v2_refuses_v1_and_replay(gateway, backend):
    gw = gateway(api_signature="v2")

    async def body():
        a = await Client.open(gw)
        r = gw.api("POST", "/sub/", body={"identity": a.identity, "channel": "v"}, sign="v2")
        assert (r.status, r.json) == (200, {"status": 0})
        # the original's v1 call is refused
        st, js = await in_thread(original_send, gw, {"channel": "v", "qos": "0"})
        assert (st, js) == (200, SIG_ERROR)
        await a.expect_no_frame(0.2)
        q = {"channel": "v", "qos": 0}
        t = rb.signed_target("POST", "/send/", q, PAYLOAD, "v2", gw.token)
        assert answer(call(gw, "POST", t, PAYLOAD)) == (200, {"status": 0, "connections": 1})
        await a.expect(rb.send(1, PAYLOAD))
        assert answer(call(gw, "POST", t, PAYLOAD)) == (200, SIG_ERROR)   # replay
        await a.expect_no_frame(0.2)
        await a.close()
    run(body())


# ---------------------------------------------------------------- strict mode

def test_strict_mode_status_codes(gateway, backend):
    """rest_status_codes = strict: the same bodies with meaningful HTTP codes."""
    gw = gateway(rest_status_codes="strict", retry_interval=0.5)

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "k")
        assert answer(call(gw, "POST", original_target(gw, "/send/", {"channel": "k"},
                                                       token="wrong"), PAYLOAD)) == (403, SIG_ERROR)
        assert original_send(gw, {}) == (400, {"status": 1, "msg": "channel miss"})
        assert original_send(gw, {"channel": "k", "qos": "7"}) == (
            400, {"status": 1, "msg": "qos level error"})
        st, js = original_send(gw, {"channel": "k", "msgtype": "x"})
        assert (st, js["status"], js["msg"]) == (400, 1, "params error"), js
        assert original_send(gw, {"identity": NOBODY}) == (
            404, {"status": 1, "msg": "no such connection"})
        assert original_send(gw, {"device": "nope"}) == (404, {"status": 1, "msg": "no such device"})
        for path in ("/sub/", "/unsub/"):
            assert original_json(gw, path, {"identity": NOBODY, "channel": "k"}) == (
                404, {"status": 1, "msg": "no such connection"})
        # an empty channel is not an error in either mode
        assert original_send(gw, {"channel": "empty"}) == (200, EMPTY_QOS12)
        col = Collector(a)                     # never acknowledges
        st, js = await in_thread(original_send, gw, {"channel": "k", "qos": "1", "timeout": "1"})
        assert (st, js) == (504, {"status": 1, "msg": "timeout", "connections": 0, "failed": 1,
                                  "pending": 0, "data": None})
        await col.stop()
        await a.close()
    run(body())


# ---------------------------------------------------------------- /serverinfo/

def check_info(gw, js, channels):
    assert set(js) == {"server", "channels_cnt", "channels", "status", "process"}, js
    assert js["server"] == "127.0.0.1:%d" % gw.port, js
    assert js["status"] == 0 and js["channels_cnt"] == len(channels), js
    assert sorted(js["channels"]) == sorted([list(x) for x in channels.items()]), js
    p = js["process"]
    assert p["user"] == pwd.getpwuid(os.geteuid()).pw_name, p
    assert p["pid"] == str(gw.proc.pid), p
    for k in ("cpu", "mem"):
        assert isinstance(p[k], str) and re.fullmatch(r"\d+\.\d", p[k]), p
    assert 0 <= float(p["mem"]) <= 100, p
    # %MEM as ps computes it, from this side: RSS over MemTotal
    with open("/proc/%d/status" % gw.proc.pid) as f:
        rss = int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
    with open("/proc/meminfo") as f:
        total = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    assert abs(float(p["mem"]) - rss * 100.0 / total) < 0.5, (p, rss, total)
    for k in ("uptime", "connections", "forwards_in_flight"):   # the gateway's additions
        assert isinstance(p[k], int), p


def test_serverinfo_unsigned_by_default(gateway, backend):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "room<1>")
        st, js = answer(call(gw, "GET", "/serverinfo/?cluster=1"))
        assert st == 200, js
        check_info(gw, js, {"room<1>": 1})
        r = call(gw, "GET", "/serverinfo/")
        assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
        assert b"room&lt;1&gt;" in r.body and ("127.0.0.1:%d" % gw.port).encode() in r.body, \
            r.body
        await a.close()
    run(body())


@pytest.mark.parametrize("codes", ["compat", "strict"])
def test_serverinfo_auth_signature(gateway, backend, codes):
    gw = gateway(serverinfo_auth="signature", rest_status_codes=codes)
    for target in ("/serverinfo/?cluster=1", "/serverinfo/"):
        assert answer(call(gw, "GET", target)) == (200 if codes == "compat" else 403, SIG_ERROR)
    st, js = answer(call(gw, "GET", original_target(gw, "/serverinfo/", {"cluster": 1})))
    assert st == 200, js
    check_info(gw, js, {})
    r = call(gw, "GET", original_target(gw, "/serverinfo/"))
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r


def test_serverinfo_auth_password(gateway, backend):
    gw = gateway(serverinfo_auth="password", admin_password="pa:ss-w0rd")

    def basic(user, pw):
        return {"Authorization": "Basic " + base64.b64encode(
            ("%s:%s" % (user, pw)).encode()).decode()}

    refused = [None, basic("admin", "pa:ss-w0rd!"), basic("admin", "pa:ss"),
               basic("admin", ""), basic("pa", "ss-w0rd"), {"Authorization": "Basic !!!!"},
               {"Authorization": "Bearer pa:ss-w0rd"}]
    for h in refused:
        for target in ("/serverinfo/?cluster=1", original_target(gw, "/serverinfo/")):
            r = call(gw, "GET", target, headers=h)
            assert r.status == 401, (h, r.status, r.body)
            assert r.headers.get("www-authenticate") == 'Basic realm="rainbow"', r.headers
            assert answer(r) == (401, {"status": 1, "msg": "authentication required"})
    for user in ("admin", "", "anyone"):
        st, js = answer(call(gw, "GET", "/serverinfo/?cluster=1",
                             headers=basic(user, "pa:ss-w0rd")))
        assert st == 200, js
        check_info(gw, js, {})
    r = call(gw, "GET", "/serverinfo/", headers=basic("x", "pa:ss-w0rd"))
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    # the other calls keep their signatures
    assert answer(call(gw, "GET", "/channels/", headers=basic("x", "pa:ss-w0rd"))) == (
        200, SIG_ERROR)


# ---------------------------------------------------------------- outbound nonces

def test_outbound_nonce_is_decimal_integer(gateway, backend):
    """Hook and forward signatures carry an integer nonce (backends parse it
    with int()), below 2^53 (JavaScript-safe). (Before: 16 hex chars.)"""
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        for i in range(1, 9):
            await a.qos1(5, i, b"n%d" % i)
        await a.close()
    run(body())
    reqs = backend.wait("/close", 1, timeout=5) and backend.requests()
    kinds = {r.path.split("/")[1] for r in reqs}
    assert {"connect", "forward", "close"} <= kinds, kinds
    nonces = [r.query["nonce"] for r in reqs]
    for n in nonces:
        assert re.fullmatch(r"[1-9][0-9]{0,15}", n), n
        assert int(n) < 2 ** 53, n
    assert len(set(nonces)) == len(nonces), nonces
