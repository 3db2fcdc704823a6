"""24 connection tokens (docs/protocol.md Connection tokens): HS256 JWTs
minted here with Python's hmac (not the gateway's code). A valid token admits
the client with no connect-hook round trip, joins its channels and gives it
a cookie naming its sub; a bad one is refused 401 with its reason (expired,
forged, alg none / confusion, malformed, missing when required); with a
connect hook also set, the hook still runs, sees the claims and not the
token, and may still refuse. Shares its vectors with tests/unit/test_token.c
(tests/fixtures/token_vectors.json)."""
import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import pytest

import rainbow as rb
from rainbow import Client, run

SECRET = "tok-secret-for-tests-0123456789"
VECTORS = Path(__file__).resolve().parents[1] / "fixtures" / "token_vectors.json"
UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"}


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def mint(claims, secret=SECRET, header=None, digest=hashlib.sha256):
    h = b64u(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64u(json.dumps(claims).encode())
    sig = b64u(hmac.new(secret.encode(), (h + "." + p).encode(), digest).digest())
    return h + "." + p + "." + sig


def claims(sub="user-7", ttl=60, **kw):
    c = {"sub": sub, "exp": int(time.time()) + ttl}
    c.update(kw)
    return c


def refusal(gw, token=None, headers=None):
    """A raw upgrade with this token: (HTTP status, JSON body)."""
    target = "/connect/" + ("?token=" + token if token is not None else "")
    r = gw.request("GET", target, headers=dict(UPGRADE, **(headers or {})))
    return r.status, rb.json_body(r) if r.status != 101 else None


async def open_v2(gw, token=None, headers=None):
    return await Client.open(gw, query={"token": token} if token else None, headers=headers,
                             subprotocols=["rainbow.v2"])


def test_vectors_shared_with_the_unit_tests():
    """The shared file holds what this module's minting makes: same
    encoding, same signature."""
    vs = json.loads(VECTORS.read_text())["vectors"]
    v = vs[0]
    h, p, _ = v["token"].split(".")
    payload = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    sig = b64u(hmac.new(v["secret"].encode(), (h + "." + p).encode(), hashlib.sha256).digest())
    assert v["token"].endswith("." + sig)
    assert payload["sub"] == v["sub"] and v["ok"]
    assert {x["why"] for x in vs if not x["ok"]} >= {
        "token expired", "bad token signature", "token alg must be HS256", "malformed token"}


def test_valid_token_admits_without_hook_and_joins_channels(gateway, backend):
    gw = gateway(token_secret=SECRET, connect_url="")
    tok = mint(claims(info={"name": "Ann"}, channels=["room", "news"]))

    async def body():
        c = await open_v2(gw, tok)
        ident = c.identity
        assert sorted(gw.presence("room")) == [ident] and gw.presence("news") == [ident]
        await c.qos1(1, 1, b"hi")
        await backend.await_requests("/forward/", 1)
        # Bearer header works the same (clients that can set headers).
        c2 = await open_v2(gw, headers={"Authorization": "Bearer " + mint(claims("u2"))})
        await c2.close()
        await c.close()
    run(body())
    fw = backend.requests("/forward/")[0]
    cookie = json.loads(base64.b64decode(fw.header("RAINBOWCLIENTCOOKIE")))
    assert cookie == {"sub": "user-7", "info": {"name": "Ann"}}, cookie
    assert backend.count("/connect") == 0
    m = gw.metrics()
    assert m["rainbow_tokens_accepted_total"][3][0][2] == 2


@pytest.mark.parametrize("case", ["expired", "forged", "alg_none", "alg_hs512", "malformed",
                                  "not_yet_valid", "no_sub"])
def test_bad_tokens_refused_with_reason(gateway, backend, case):
    gw = gateway(token_secret=SECRET, connect_url="")
    now = int(time.time())
    tok, why = {
        "expired": (mint({"sub": "u", "exp": now - 60}), "token expired"),
        "forged": (mint(claims(), secret="not-the-secret"), "bad token signature"),
        "alg_none": (mint(claims(), header={"alg": "none"}).rsplit(".", 1)[0] + ".",
                     "token alg must be HS256"),
        "alg_hs512": (mint(claims(), header={"alg": "HS512", "typ": "JWT"},
                           digest=hashlib.sha512), "token alg must be HS256"),
        "malformed": ("not-a-token", "malformed token"),
        "not_yet_valid": (mint(claims(nbf=now + 600)), "token not yet valid"),
        "no_sub": (mint({"exp": now + 60}), "token has no valid sub"),
    }[case]
    assert refusal(gw, tok) == (401, {"status": 1, "msg": why})
    assert "refused: " + why in gw.log_text()
    assert gw.metrics()["rainbow_tokens_refused_total"][3][0][2] == 1
    assert backend.count("/connect") == 0


def test_token_required(gateway, backend):
    gw = gateway(token_secret=SECRET, token_required=True, connect_url="")
    assert refusal(gw) == (401, {"status": 1, "msg": "token required"})

    async def body():
        c = await open_v2(gw, mint(claims()))
        await c.close()
    run(body())
    # Without token_required a client with no token is admitted as before.
    gw2 = gateway(token_secret=SECRET, connect_url="")

    async def body2():
        c = await open_v2(gw2)
        await c.close()
    run(body2())


def test_connect_hook_still_runs_and_sees_the_claims(gateway, backend):
    gw = gateway(token_secret=SECRET)
    tok = mint(claims("ann", info={"plan": "pro"}, channels=["vip"]))

    async def body():
        c = await Client.open(gw, query={"token": tok, "other": "1"})
        assert gw.presence("vip") == [c.identity]
        await c.close()
    run(body())
    hook = backend.requests("/connect")[0]
    assert hook.header("RAINBOWTOKENSUB") == "ann"
    assert json.loads(hook.header("RAINBOWTOKENINFO")) == {"plan": "pro"}
    assert int(hook.header("RAINBOWTOKENEXP")) > time.time()
    assert hook.header("token") is None, "the token itself is not passed on"
    assert hook.header("other") == "1"
    # The hook still decides: a refusal refuses a client with a good token.
    backend.rules({"prefix": "/connect", "body": '{"status":"nope"}'})
    assert refusal(gw, mint(claims()))[0] == 401
    # A bad token never reaches the hook.
    n = backend.count("/connect")
    assert refusal(gw, mint(claims(), secret="x"))[0] == 401
    assert backend.count("/connect") == n


def test_mass_reconnect_costs_the_backend_nothing(gateway, backend):
    """200 clients with tokens: no backend call at all (no hook configured)."""
    gw = gateway(token_secret=SECRET, connect_url="", close_url="")

    async def body():
        cs = []
        for i in range(0, 200, 50):
            cs += await asyncio.gather(*[open_v2(gw, mint(claims("u%d" % k, channels=["all"])))
                                         for k in range(i, i + 50)])
        assert len(gw.presence("all")) == 200
        for c in cs:
            await c.close()
    run(body(), timeout=120)
    assert backend.count("") == 0
