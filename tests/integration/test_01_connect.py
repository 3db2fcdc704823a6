"""01 connect: the front door (docs/protocol.md Connecting) and the REST basics on the same port."""
import re
import time
import urllib.parse

import pytest
import websockets.exceptions

import rainbow as rb
from rainbow import Client, run

IDENTITY_RE = re.compile(r"[0-9a-f]{64}")
SIG_KEYS = {"timestamp", "nonce", "signature"}


def open_refused(gw, **kw):
    """Try to open a client; return the HTTP status the upgrade was refused with."""
    async def body():
        c = await Client.open(gw, **kw)
        await c.close()
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
        run(body(), timeout=15)
    return ei.value.status_code


def test_connect_hook_admits_and_gets_client_headers(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw, query={"X-DEVICEID": "dev1", "foo": "1"},
                              headers={"X-Foo": "bar"}, origin="http://origin.example")
        await c.qos1(2, 1, b'{"x":1}')  # the websocket is open and usable
        await c.close()
        return c

    c = run(body())
    reqs = backend.requests("/connect")
    assert len(reqs) == 1, reqs
    r = reqs[0]
    assert r.method == "GET"
    assert r.path == "/connect"
    assert set(r.query) == SIG_KEYS, r.target
    rb.check_signature(r)
    # client headers arrive; upgrade query arguments arrive as headers
    assert r.header("X-Foo") == "bar"
    assert r.header("X-DEVICEID") == "dev1"
    assert r.header("foo") == "1"
    assert r.header("rbtag") == c.tag
    # the upgrade-specific ones do not
    for name in ("Upgrade", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Origin"):
        assert r.header(name) is None, "%s forwarded to the hook: %r" % (name, r.header(name))
    conn = r.header("Connection")
    assert conn is None or "upgrade" not in conn.lower(), conn
    # Host is the hook's own, and only one
    assert r.header_all("Host") == ["127.0.0.1:%d" % backend.port], r.headers
    ident = r.header("RAINBOWCLIENTIDENTITY")
    assert ident is not None and IDENTITY_RE.fullmatch(ident), ident


def test_identity_unique_per_connection_and_used_on_forwards(gateway, backend):
    gw = gateway()

    async def body():
        clients = [await Client.open(gw) for _ in range(5)]
        for i, c in enumerate(clients):
            await c.qos1(1, 100 + i, b"c%d" % i)
        for c in clients:
            await c.close()
        return clients

    clients = run(body())
    idents = [c.identity for c in clients]
    for ident in idents:
        assert ident and IDENTITY_RE.fullmatch(ident), ident
    assert len(set(idents)) == 5, idents
    fw = backend.requests("/forward/")
    assert len(fw) == 5
    by_body = {r.body: r.header("RAINBOWCLIENTIDENTITY") for r in fw}
    assert by_body == {b"c%d" % i: idents[i] for i in range(5)}


@pytest.mark.parametrize("reply", ['{"status":"fail"}', '{"status":"error","msg":"no"}', "{}"])
def test_connect_hook_refusal_is_401(gateway, backend, reply):
    backend.rules({"prefix": "/connect", "body": reply})
    gw = gateway()
    assert open_refused(gw) == 401
    assert backend.count("/connect") == 1


@pytest.mark.parametrize("kind", ["status500", "not_json", "timeout", "closed_port"])
def test_connect_hook_failure_is_503(gateway, backend, kind):
    opts = {}
    if kind == "status500":
        backend.rules({"prefix": "/connect", "status": 500, "body": '{"status":"success"}'})
    elif kind == "not_json":
        backend.rules({"prefix": "/connect", "body": "success"})
    elif kind == "timeout":
        opts["backend_timeout"] = 1
        backend.rules({"prefix": "/connect", "delay": 2.5, "times": 1})
    else:
        opts["connect_url"] = "http://127.0.0.1:%d/connect" % rb.closed_port()
    gw = gateway(**opts)
    assert open_refused(gw) == 503
    if kind == "closed_port":
        return
    assert backend.count("/connect") == 1
    # the gateway recovers once the hook behaves again
    backend.rules()

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 1, b"after")
        await c.close()
    run(body())


@pytest.mark.parametrize("path", ["/connect", "/connect/"])
def test_connect_path_with_and_without_slash(gateway, backend, path):
    gw = gateway()

    async def body():
        c = await Client.open(gw, path=path)
        await c.qos1(4, 9, b"p")
        await c.close()
    run(body())
    assert backend.count("/connect") == 1


def test_without_connect_url_everyone_is_admitted(gateway, backend):
    gw = gateway(connect_url="")

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 1, b"hi")
        await c.close()
    run(body())
    assert backend.count("/connect") == 0
    fw = backend.requests("/forward/")
    assert len(fw) == 1
    assert IDENTITY_RE.fullmatch(fw[0].header("RAINBOWCLIENTIDENTITY") or ""), fw[0].headers


def test_require_device_id(gateway, backend):
    gw = gateway(require_device_id=True)
    assert open_refused(gw) == 401
    assert open_refused(gw, headers={"X-CLIENT-OS": "linux"}) == 401
    # Both are required, as the refusal says (a device id alone once passed).
    assert open_refused(gw, headers={"X-DEVICEID": "dev-only"}) == 401
    assert open_refused(gw, query={"X-DEVICEID": "dev-only"}) == 401

    async def body():
        a = await Client.open(gw, headers={"X-DEVICEID": "dev-h", "X-CLIENT-OS": "linux"})
        await a.qos1(1, 1, b"a")
        b = await Client.open(gw, query={"X-DEVICEID": "dev-q", "X-CLIENT-OS": "web"})
        await b.qos1(1, 2, b"b")
        await a.close()
        await b.close()
        return a, b
    a, b = run(body())
    assert backend.connect_request(a.tag).header("X-DEVICEID") == "dev-h"
    assert backend.connect_request(b.tag).header("X-DEVICEID") == "dev-q"


def test_device_id_optional_by_default(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 1, b"x")
        await c.close()
    run(body())


def test_permessage_deflate_client_interoperates(gateway, backend):
    """A client offering permessage-deflate (browsers do) works either way."""
    gw = gateway()
    payload = b'{"k":"' + b"abcdefgh" * 1000 + b'"}'

    async def body():
        c = await Client.open(gw, compression="deflate")
        await c.qos1(3, 77, payload)
        await c.close()
    run(body())
    fw = backend.requests("/forward/")
    assert [r.body for r in fw] == [payload]


# ---------------------------------------------------------------- REST basics

def test_hello(gateway, backend):
    gw = gateway()
    r = gw.get("/hello/")
    assert (r.status, r.body) == (200, b"ok")


def test_unknown_path_is_json_404(gateway, backend):
    gw = gateway()
    r = gw.get("/no/such/path")
    assert r.status == 404
    body = rb.json_body(r)
    assert body.get("status") == 1 and isinstance(body.get("msg"), str) and body["msg"], body


def test_serverinfo_unsigned_by_default(gateway, backend):
    """The original served /serverinfo/ unsigned (peers and dashboards rely on
    it): serverinfo_auth = none is the default."""
    gw = gateway()
    r = gw.get("/serverinfo/?cluster=1")
    assert r.status == 200, (r.status, r.body)
    info = rb.json_body(r)
    assert info["status"] == 0 and info["server"] == "127.0.0.1:%d" % gw.port, info


@pytest.mark.parametrize("codes", ["compat", "strict"])
@pytest.mark.parametrize("kind", ["missing", "bad", "stale"])
def test_serverinfo_requires_signature_when_configured(gateway, backend, kind, codes):
    gw = gateway(serverinfo_auth="signature", rest_status_codes=codes)
    if kind == "missing":
        target = "/serverinfo/?cluster=1"
    else:
        q = rb.signed_query(rb.TOKEN, now=time.time() - (60 if kind == "stale" else 0))
        if kind == "bad":
            q["signature"] = "0" * 40
        target = "/serverinfo/?cluster=1&" + urllib.parse.urlencode(q)
    r = gw.get(target)
    assert r.status == (403 if codes == "strict" else 200), (r.status, r.body)
    assert rb.json_body(r) == {"status": 1, "msg": "signature error"}, (r.status, r.body)
    assert rb.json_body(gw.get(gw.signed("/serverinfo/", cluster=1)))["status"] == 0


def test_serverinfo_signed_empty(gateway, backend):
    gw = gateway()
    info = gw.serverinfo()
    assert info["status"] == 0
    assert info["channels"] == [] and info["channels_cnt"] == 0, info
    assert isinstance(info["server"], str) and info["server"].endswith(":%d" % gw.port), info
    assert isinstance(info["process"], dict), info


def test_identities_carry_their_node(gateway, backend):
    """Every identity is 64 lowercase hex digits; its last 8 are the node's
    id (random per start, the same for every connection of a node, so a
    cluster routes an identity without asking), the rest random."""
    gw = gateway()

    async def body():
        cs = [await Client.open(gw, subprotocols=["rainbow.v2"]) for _ in range(3)]
        ids = [c.hello["identity"] for c in cs]
        for c in cs:
            await c.close()
        return ids
    ids = run(body())
    assert all(re.fullmatch(r"[0-9a-f]{64}", i) for i in ids), ids
    assert len({i[56:] for i in ids}) == 1, ids
    assert ids[0][56:] != "00000000"
    assert len({i[:56] for i in ids}) == 3, ids
    gw.stop()
    gw2 = gateway()

    async def again():
        c = await Client.open(gw2, subprotocols=["rainbow.v2"])
        await c.close()
        return c.hello["identity"]
    assert run(again())[56:] != ids[0][56:]   # a new start, a new node id
