"""08 REST: parameter errors, methods, content types, signatures v1/v2 (nonce
replay, tampering, api_signature), /kick/, /channels/, /presence/, /serverinfo/,
/healthz and /metrics (strict Prometheus text parser in rainbow.py).

Error statuses are tested here under rest_status_codes = strict (403, 400,
404...); test_14_compat.py tests the same outcomes over HTTP 200 (compat, the
default) as a backend written for the original sees them.

Contract: docs/rest-api.md, docs/protocol.md Pushing, Signatures."""
import asyncio
import time

import pytest

import rainbow as rb
from rainbow import Client, Collector, run

PAYLOAD = b'{"m":1}'
MSGTYPE = 1002
SIG_ERROR = {"status": 1, "msg": "signature error"}
STRICT = {"rest_status_codes": "strict"}


def assert_params_error(r, status, names):
    """{"status":1,"msg":"params error","detail":<names one of names>}."""
    assert r.status == status, "HTTP %d (want %d): %r" % (r.status, status, r.raw[:300])
    assert set(r.json) == {"status", "msg", "detail"}, r.json
    assert (r.json["status"], r.json["msg"]) == (1, "params error"), r.json
    assert isinstance(r.json["detail"], str), r.json
    if names:
        assert any(n in r.json["detail"] for n in names), (r.json, names)


async def push(gw, query, body=PAYLOAD, **kw):
    return await asyncio.to_thread(gw.push, query, body, **kw)


# ---------------------------------------------------------------- /send/ errors

@pytest.mark.parametrize("codes", ["compat", "strict"])
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_send_empty_channel_is_not_an_error(gateway, backend, qos, codes):
    gw = gateway(rest_status_codes=codes)
    r = gw.push({"channel": "empty", "msgtype": MSGTYPE, "qos": qos, "timeout": 1}, PAYLOAD)
    want = {"status": 0} if qos == 0 else {"status": 0, "connections": 0, "data": ""}
    assert (r.status, r.json) == (200, want)


# name -> (query without the target, names one of which the detail must
#          contain, or None with the exact msg); "target" is filled in per case.
# (A missing msgtype, timeout=0 and timeout=3601 are no longer errors: the
# original's defaults, see test_14_compat.py.)
SEND_BAD = {
    "qos_3": ({"msgtype": MSGTYPE, "qos": 3}, None, "qos level error"),
    "qos_x": ({"msgtype": MSGTYPE, "qos": "x"}, None, "qos level error"),
    "qos_neg": ({"msgtype": MSGTYPE, "qos": -1}, None, "qos level error"),
    "msgtype_abc": ({"msgtype": "abc", "qos": 0}, ["msgtype"], None),
    "msgtype_65536": ({"msgtype": 65536, "qos": 0}, ["msgtype"], None),
    "msgtype_neg": ({"msgtype": -1, "qos": 0}, ["msgtype"], None),
    "msgtype_empty": ({"msgtype": "", "qos": 0}, ["msgtype"], None),
    "timeout_abc": ({"msgtype": MSGTYPE, "qos": 1, "timeout": "abc"}, ["timeout"], None),
    "timeout_empty": ({"msgtype": MSGTYPE, "qos": 1, "timeout": ""}, ["timeout"], None),
    "timeout_exp": ({"msgtype": MSGTYPE, "qos": 1, "timeout": "1e1"}, ["timeout"], None),
    "timeout_hex": ({"msgtype": MSGTYPE, "qos": 1, "timeout": "0x10"}, ["timeout"], None),
    "both_channel_and_identity": ({"msgtype": MSGTYPE, "qos": 0, "both": 1},
                                  ["channel", "identity"], None),
    "neither_channel_nor_identity": ({"msgtype": MSGTYPE, "qos": 0, "neither": 1},
                                     None, "channel miss"),
}


@pytest.mark.parametrize("name", sorted(SEND_BAD))
def test_send_bad_params_400(gateway, backend, name):
    gw = gateway(**STRICT)
    query, names, msg = SEND_BAD[name]

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "c")
        q = dict(query)
        if q.pop("both", None):
            q = dict({"channel": "c", "identity": a.identity}, **q)
        elif not q.pop("neither", None):
            q = dict({"channel": "c"}, **q)
        r = await push(gw, q)
        if msg is not None:
            rb.assert_error(r, 400, msg)
        else:
            assert_params_error(r, 400, names)
        await a.expect_no_frame(0.2)   # nothing was delivered
        await a.close()
    run(body())


# ---------------------------------------------------------------- /sub/ /unsub/ errors

SUB_BAD = {
    "not_json": (b"identity=x&channel=y", None),
    "json_array": ('["ID", "c"]', None),
    "json_string": ('"hello"', None),
    "empty_body": (b"", None),
    "missing_identity": ({"channel": "c"}, ["identity"]),
    "missing_channel": ({"identity": "ID"}, ["channel"]),
    "identity_not_string": ({"identity": 12, "channel": "c"}, ["identity"]),
    "channel_not_string": ({"identity": "ID", "channel": ["c"]}, ["channel"]),
    "occupy_yes": ({"identity": "ID", "channel": "c", "occupy": "yes"}, ["occupy"]),
    "occupy_1": ({"identity": "ID", "channel": "c", "occupy": 1}, ["occupy"]),
}


@pytest.mark.parametrize("name,path", [(n, p) for n in sorted(SUB_BAD) for p in ("/sub/", "/unsub/")
                                       if not (p == "/unsub/" and n.startswith("occupy"))])
def test_sub_unsub_bad_params_400(gateway, backend, name, path):
    body_, names = SUB_BAD[name]
    gw = gateway(**STRICT)

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "keep")
        b = body_
        if isinstance(b, dict):
            b = {k: (a.identity if v == "ID" else v) for k, v in b.items()}
        elif isinstance(b, str):
            b = b.replace("ID", a.identity).encode()
        r = gw.api("POST", path, body=b, headers={"Content-Type": "application/json"})
        assert_params_error(r, 400, names)
        # nothing changed
        assert gw.channels() == {"keep": 1}
        assert gw.presence("keep") == [a.identity]
        await a.close()
    run(body())


# ---------------------------------------------------------------- methods, types

@pytest.mark.parametrize("codes", ["compat", "strict"])
@pytest.mark.parametrize("method,path", [
    ("DELETE", "/send/"), ("PUT", "/send/"), ("GET", "/sub/"), ("GET", "/unsub/"),
    ("GET", "/kick/"), ("POST", "/channels/"), ("DELETE", "/presence/"),
    ("POST", "/serverinfo/"),
])
def test_wrong_method_405(gateway, backend, method, path, codes):
    """An HTTP matter, 405 in both modes (GET /send/ is the original's "ok")."""
    gw = gateway(rest_status_codes=codes)
    q = {"channel": "c", "msgtype": MSGTYPE} if path in ("/send/", "/presence/") else None
    r = gw.api(method, path, q, body=b"" if method in ("POST", "PUT") else None)
    rb.assert_error(r, 405)


def test_content_types_of_plain_endpoints(gateway, backend):
    gw = gateway()
    r = gw.get("/hello/")
    assert (r.status, r.body) == (200, b"ok")
    r = gw.get("/metrics")
    assert r.status == 200 and r.headers.get("content-type", "").startswith("text/plain"), \
        (r.status, r.headers)
    r = gw.rest("GET", "/serverinfo/")
    assert r.status == 200, (r.status, r.body[:200])
    assert r.headers.get("content-type", "").split(";")[0].strip() == "text/html", r.headers
    assert b"<" in r.body, r.body[:200]
    r = gw.api("GET", "/serverinfo/", {"cluster": 1})
    assert r.status == 200 and r.json["status"] == 0, r.json


def test_healthz(gateway, backend):
    gw = gateway()
    r = rb.api_response(gw.get("/healthz"))   # unsigned
    assert (r.status, r.json) == (200, {"status": 0, "msg": "ok"})


# ---------------------------------------------------------------- signatures

def bad_variants():
    """name -> rest() keyword arguments producing a refused signature."""
    now = time.time()
    return {
        "unsigned": {"sign": None},
        "v1_wrong": {"sign": "v1", "token": "not-the-token"},
        "v2_wrong": {"sign": "v2", "token": "not-the-token"},
        "v1_stale": {"sign": "v1", "now": now - 60},
        "v1_future": {"sign": "v1", "now": now + 60},
        "v2_stale": {"sign": "v2", "now": now - 60},
        "v2_future": {"sign": "v2", "now": now + 60},
    }


def _truncated_sig_target(gw, method, path, query):
    """A v1 signature with one hex digit missing (neither 40 nor 64 chars)."""
    t = rb.signed_target(method, path, query, b"", "v1", gw.token)
    return t[:-1]


def _no_timestamp_target(gw, method, path, query):
    t = rb.signed_target(method, path, query, b"", "v1", gw.token)
    head, _, q = t.partition("?")
    return head + "?" + "&".join(a for a in q.split("&") if not a.startswith("timestamp="))


class Endpoint:
    """One signed endpoint: a request that succeeds when signed and a check
    that a refused request had no effect."""

    def __init__(self, gw, a, b, c):
        self.gw, self.a, self.b, self.c = gw, a, b, c

    def request(self, victim):
        raise NotImplementedError

    async def unchanged(self):
        pass

    async def took_effect(self, victim):
        pass


class SendEp(Endpoint):
    def request(self, victim):
        return "POST", "/send/", {"channel": "s", "msgtype": MSGTYPE, "qos": 0}, PAYLOAD

    async def unchanged(self):
        await self.a.expect_no_frame(0.1)

    async def took_effect(self, victim):
        await self.a.expect(rb.send(MSGTYPE, PAYLOAD))


class SubEp(Endpoint):
    def request(self, victim):
        return "POST", "/sub/", None, {"identity": victim.identity, "channel": "new"}

    async def unchanged(self):
        assert self.gw.presence("new") == []

    async def took_effect(self, victim):
        assert victim.identity in self.gw.presence("new")


class UnsubEp(Endpoint):
    def request(self, victim):
        return "POST", "/unsub/", None, {"identity": victim.identity, "channel": "s"}

    async def unchanged(self):
        assert sorted(self.gw.presence("s")) == sorted(x.identity for x in (self.a, self.b, self.c))

    async def took_effect(self, victim):
        assert victim.identity not in self.gw.presence("s")


class KickEp(Endpoint):
    def request(self, victim):
        return "POST", "/kick/", None, {"identity": victim.identity}

    async def unchanged(self):
        for x in (self.b, self.c):
            await x.ping_ok()

    async def took_effect(self, victim):
        assert await victim.expect_closed(5) == 4000


class ChannelsEp(Endpoint):
    def request(self, victim):
        return "GET", "/channels/", None, None


class PresenceEp(Endpoint):
    def request(self, victim):
        return "GET", "/presence/", {"channel": "s"}, None


ENDPOINTS = {"send": SendEp, "sub": SubEp, "unsub": UnsubEp, "kick": KickEp,
             "channels": ChannelsEp, "presence": PresenceEp}


@pytest.mark.parametrize("ep", sorted(ENDPOINTS))
def test_signature_required(gateway, backend, ep):
    """Unsigned, wrong, stale (now-60), future (now+60), truncated or without
    timestamp: 403 signature error (strict) and no effect; valid v1 and valid
    v2 work."""
    gw = gateway(**STRICT)

    async def body():
        a, b, c = [await Client.open(gw) for _ in range(3)]
        for x in (a, b, c):
            gw.sub(x.identity, "s")
        e = ENDPOINTS[ep](gw, a, b, c)
        method, path, query, data = e.request(b)
        for name, kw in sorted(bad_variants().items()):
            r = gw.api(method, path, query, data, **kw)
            assert (r.status, r.json) == (403, SIG_ERROR), (name, r.status, r.json)
        for name, fn in (("truncated", _truncated_sig_target),
                         ("no_timestamp", _no_timestamp_target)):
            r = gw.api(method, path, query, data, target=fn(gw, method, path, query))
            assert (r.status, r.json) == (403, SIG_ERROR), (name, r.status, r.json)
        await e.unchanged()
        for scheme, victim in (("v1", b), ("v2", c)):
            method, path, query, data = e.request(victim)
            r = gw.api(method, path, query, data, sign=scheme)
            assert r.status == 200 and r.json.get("status") == 0, (scheme, r.status, r.json)
            await e.took_effect(victim)
        for x in (a, b, c):
            await x.close()
    run(body())


def test_signature_within_window_accepted(gateway, backend):
    gw = gateway(signature_window=10)
    now = time.time()
    for kw in ({"sign": "v1", "now": now - 5}, {"sign": "v1", "now": now + 5},
               {"sign": "v2", "now": now - 5}, {"sign": "v2", "now": now + 5}):
        r = gw.api("GET", "/channels/", **kw)
        assert (r.status, r.json) == (200, {"status": 0, "channels": []}), (kw, r.json)


def test_v2_tampered_body_or_query_refused(gateway, backend):
    gw = gateway(**STRICT)

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "t")
        # body: signed for channel x, sent for channel y
        r = gw.api("POST", "/sub/", body={"identity": a.identity, "channel": "y"}, sign="v2",
                   sign_body={"identity": a.identity, "channel": "x"})
        assert (r.status, r.json) == (403, SIG_ERROR)
        assert gw.presence("x") == [] and gw.presence("y") == []
        # /send/ body: a payload other than the signed one
        q = {"channel": "t", "msgtype": MSGTYPE, "qos": 0}
        r = gw.api("POST", "/send/", q, b'{"m":2}', sign="v2", sign_body=PAYLOAD)
        assert (r.status, r.json) == (403, SIG_ERROR)
        # query: msgtype 1 signed, 1002 sent
        r = gw.api("POST", "/send/", q, PAYLOAD, sign="v2", sign_query=dict(q, msgtype=1))
        assert (r.status, r.json) == (403, SIG_ERROR)
        # query: an extra argument that was not signed
        r = gw.api("POST", "/send/", dict(q, timeout=5), PAYLOAD, sign="v2", sign_query=q)
        assert (r.status, r.json) == (403, SIG_ERROR)
        # method: signed as GET, sent as POST
        t = rb.signed_target("GET", "/send/", q, PAYLOAD, "v2", gw.token)
        r = gw.api("POST", "/send/", body=PAYLOAD, target=t)
        assert (r.status, r.json) == (403, SIG_ERROR)
        # path: signed for /presence/, sent to /channels/
        t = rb.signed_target("GET", "/presence/", None, b"", "v2", gw.token)
        r = gw.api("GET", "/channels/", target="/channels/?" + t.split("?", 1)[1])
        assert (r.status, r.json) == (403, SIG_ERROR)
        await a.expect_no_frame(0.2)
        # the untampered request works
        r = gw.api("POST", "/send/", q, PAYLOAD, sign="v2")
        assert (r.status, r.json) == (200, {"status": 0, "connections": 1})
        await a.expect(rb.send(MSGTYPE, PAYLOAD))
        await a.close()
    run(body())


def test_v2_nonce_replay_refused(gateway, backend):
    gw = gateway(**STRICT)

    async def body():
        a = await Client.open(gw)
        gw.sub(a.identity, "rp")
        q = {"channel": "rp", "msgtype": MSGTYPE, "qos": 0}
        t = rb.signed_target("POST", "/send/", q, PAYLOAD, "v2", gw.token)
        r = gw.api("POST", "/send/", body=PAYLOAD, target=t)
        assert (r.status, r.json) == (200, {"status": 0, "connections": 1})
        await a.expect(rb.send(MSGTYPE, PAYLOAD))
        r = gw.api("POST", "/send/", body=PAYLOAD, target=t)   # byte-identical replay
        assert (r.status, r.json) == (403, SIG_ERROR)
        # same nonce, new timestamp and a valid signature: still a replay
        nonce = dict(x.split("=", 1) for x in t.split("?", 1)[1].split("&"))["nonce"]
        r = gw.api("POST", "/send/", q, PAYLOAD, sign="v2", nonce=nonce, now=time.time() + 1)
        assert (r.status, r.json) == (403, SIG_ERROR)
        await a.expect_no_frame(0.3)
        r = gw.api("POST", "/send/", q, PAYLOAD, sign="v2")      # fresh nonce
        assert (r.status, r.json) == (200, {"status": 0, "connections": 1})
        await a.expect(rb.send(MSGTYPE, PAYLOAD))
        await a.close()
    run(body())


def test_v2_canonical_query_decodes_and_reencodes(gateway, backend):
    """The gateway signs the decoded arguments re-encoded (uppercase hex, RFC 3986),
    sorted: a request sent with lowercase hex, in unsorted order, verifies."""
    gw = gateway()
    channel = "room \u00e9/1~x"

    async def body():
        a = await Client.open(gw)
        r = gw.api("POST", "/sub/", body={"identity": a.identity, "channel": channel}, sign="v2")
        assert (r.status, r.json) == (200, {"status": 0})
        ts, nonce = str(int(time.time())), "n-" + rb.new_tag()
        pairs = [("timestamp", ts), ("qos", "0"), ("nonce", nonce), ("msgtype", str(MSGTYPE)),
                 ("channel", channel)]
        sig = rb.sign_v2(gw.token, "POST", "/send/", pairs, PAYLOAD)
        assert rb.canonical_query(pairs) == (
            "channel=room%20%C3%A9%2F1~x&msgtype=1002&nonce=" + rb.rfc3986(nonce)
            + "&qos=0&timestamp=" + ts)
        target = ("/send/?timestamp=%s&qos=0&nonce=%s&msgtype=%d&channel=room%%20%%c3%%a9%%2f1~x"
                  "&signature=%s" % (ts, rb.rfc3986(nonce), MSGTYPE, sig))
        r = gw.api("POST", "/send/", body=PAYLOAD, target=target)
        assert (r.status, r.json) == (200, {"status": 0, "connections": 1})
        await a.expect(rb.send(MSGTYPE, PAYLOAD))
        assert gw.presence(channel) == [a.identity]
        await a.close()
    run(body())


@pytest.mark.parametrize("setting", ["v1", "v2", "both"])
def test_api_signature_setting(gateway, backend, setting):
    gw = gateway(api_signature=setting, **STRICT)
    for scheme in ("v1", "v2"):
        for method, path, query in (("GET", "/channels/", None),
                                    ("GET", "/presence/", {"channel": "z"}),
                                    ("POST", "/send/", {"channel": "z", "msgtype": 1})):
            r = gw.api(method, path, query, PAYLOAD if method == "POST" else None, sign=scheme)
            if setting in (scheme, "both"):
                assert r.json != SIG_ERROR and r.status != 403, (scheme, path, r.status, r.json)
                if path == "/send/":   # qos 2 by default, nobody in z
                    assert (r.status, r.json) == (
                        200, {"status": 0, "connections": 0, "data": ""})
                else:
                    assert r.status == 200, (scheme, path, r.status, r.json)
            else:
                assert (r.status, r.json) == (403, SIG_ERROR), (scheme, path, r.status, r.json)


# ---------------------------------------------------------------- /kick/

@pytest.mark.parametrize("code,reason", [(None, None), (4321, "bye"), (1000, None), (3000, "x")])
def test_kick(gateway, backend, code, reason):
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        req = {"identity": a.identity}
        if code is not None:
            req["code"] = code
        if reason is not None:
            req["reason"] = reason
        r = gw.api("POST", "/kick/", body=req)
        assert (r.status, r.json) == (200, {"status": 0})
        got = await a.expect_closed(5)
        assert got == (4000 if code is None else code), got
        if reason is not None or code is None:
            assert a.ws.close_reason == (reason or "kicked"), a.ws.close_reason
        closes = await backend.await_requests("/close", 1, timeout=3)
        assert [x.header("RAINBOWCLIENTIDENTITY") for x in closes] == [a.identity]
        await b.ping_ok()
        await b.qos1(1, 1, b"still here")
        await b.close()
    run(body())


@pytest.mark.parametrize("code", [999, 1001, 2999, 5000, "4000", 4000.5])
def test_kick_bad_code_400(gateway, backend, code):
    gw = gateway(**STRICT)

    async def body():
        a = await Client.open(gw)
        r = gw.api("POST", "/kick/", body={"identity": a.identity, "code": code})
        assert_params_error(r, 400, ["code"])
        await a.ping_ok()
        await a.qos1(1, 1, b"alive")
        await a.close()
    run(body())
    closes = backend.wait("/close", 1, timeout=3)   # our own close only
    assert len(closes) == 1, closes


@pytest.mark.parametrize("codes", ["compat", "strict"])
def test_kick_unknown_identity_and_bad_body(gateway, backend, codes):
    gw = gateway(rest_status_codes=codes)
    strict = codes == "strict"
    r = gw.api("POST", "/kick/", body={"identity": "0" * 64})
    rb.assert_error(r, 404 if strict else 200, "no such connection")
    r = gw.api("POST", "/kick/", body={"code": 4000})
    assert_params_error(r, 400 if strict else 200, ["identity"])
    r = gw.api("POST", "/kick/", body=b"not json")
    assert_params_error(r, 400 if strict else 200, ["JSON"])


@pytest.mark.parametrize("n", [63, 120])
def test_kick_reason_at_most_120_bytes(gateway, backend, n):
    """docs: reason is at most 120 bytes (a close frame holds 123); longer is
    a params error, and a reason that is accepted arrives whole."""
    gw = gateway(**STRICT)

    async def body():
        a = await Client.open(gw)
        r = gw.api("POST", "/kick/", body={"identity": a.identity, "reason": "\u00e9" * 61})
        assert_params_error(r, 400, ["reason"])    # 122 bytes of UTF-8
        await a.ping_ok()
        r = gw.api("POST", "/kick/", body={"identity": a.identity, "reason": "r" * n})
        assert (r.status, r.json) == (200, {"status": 0})
        assert await a.expect_closed(5) == 4000
        assert a.ws.close_reason == "r" * n, len(a.ws.close_reason)
    run(body())


def test_channels_presence_shapes(gateway, backend):
    """/serverinfo/ shapes: test_14_compat.py (check_info)."""
    gw = gateway()

    async def body():
        a = await Client.open(gw, headers={"X-DEVICEID": "dev-a", "X-CLIENT-OS": "ios"})
        b = await Client.open(gw, headers={"X-DEVICEID": "dev-b", "X-CLIENT-OS": "android"})
        assert gw.channels() == {}
        gw.sub(a.identity, "c1")
        gw.sub(a.identity, "c2")
        gw.sub(b.identity, "c2")
        r = gw.api("GET", "/channels/")
        assert r.status == 200 and set(r.json) == {"status", "channels"}, r.json
        assert sorted(r.json["channels"]) == [["c1", 1], ["c2", 2]], r.json
        r = gw.api("GET", "/presence/", {"channel": "c2"})
        assert r.status == 200, r.json
        assert r.json["status"] == 0 and r.json["channel"] == "c2", r.json
        got = sorted(r.json["connections"], key=lambda x: x["device"])
        assert got == [{"identity": a.identity, "device": "dev-a", "platform": "ios"},
                       {"identity": b.identity, "device": "dev-b", "platform": "android"}], r.json
        r = gw.api("GET", "/presence/", {"channel": "nope"})
        assert (r.status, r.json) == (200, {"status": 0, "channel": "nope", "connections": []})
        gw.unsub(a.identity, "c1")
        assert gw.channels() == {"c2": 2}     # a channel exists while it has members
        await a.close()
        await b.close()
    run(body())


# ---------------------------------------------------------------- /metrics

def test_metrics_prometheus_format_and_push_counters(gateway, backend):
    gw = gateway(retry_interval=0.3)
    before = gw.metrics()   # parses strictly even before any traffic

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        # a acknowledges at once; b only the first retransmission
        ca = Collector(a, auto=True, reply=b"ok")
        r = await push(gw, {"identity": a.identity, "msgtype": MSGTYPE, "qos": 1, "timeout": 5})
        assert (r.status, r.json["connections"]) == (200, 1), r.json
        call = asyncio.get_running_loop().create_task(
            push(gw, {"identity": b.identity, "msgtype": MSGTYPE, "qos": 1, "timeout": 5}))
        first = rb.decode(await b.recv())
        dup = rb.decode(await b.recv(timeout=3))
        assert dup.dup and dup.msgid == first.msgid, rb.describe(dup.raw)
        await b.send(rb.ack(first.msgid, b"late"))
        r = await call
        assert (r.status, r.json["connections"]) == (200, 1), r.json
        await ca.stop()
        await a.close()
        await b.close()
    run(body())
    fams = gw.metrics()
    assert "rainbow_messages_out_total" in fams, sorted(fams)
    assert fams["rainbow_messages_out_total"].type == "counter"
    sent = rb.metric_value(fams, "rainbow_messages_out_total", cmd="SEND", qos="1")
    assert sent is not None and sent >= 2, fams["rainbow_messages_out_total"].samples
    old = rb.metric_value(before, "rainbow_messages_out_total", cmd="SEND", qos="1") or 0
    assert sent - old >= 2, (old, sent)
    assert "rainbow_retransmissions_total" in fams, sorted(fams)
    assert fams["rainbow_retransmissions_total"].type == "counter"
    assert rb.metric_value(fams, "rainbow_retransmissions_total") >= 1, \
        fams["rainbow_retransmissions_total"].samples
    # the backend latency histogram is fed by forwards (it once stayed 0)
    lat0 = rb.metric_value(before, "rainbow_backend_latency_seconds_count") or 0

    async def forward():
        c = await Client.open(gw)
        await c.qos1(2, 1, b"x")
        await c.close()
    run(forward())
    lat = rb.metric_value(gw.metrics(), "rainbow_backend_latency_seconds_count")
    assert lat == lat0 + 1, (lat0, lat)
