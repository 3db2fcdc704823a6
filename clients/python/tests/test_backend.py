"""rainbow_backend.Backend, RainbowResponse and the stores, without a
gateway: calls are built here exactly as the gateway makes them."""
import base64
import io
import json
import threading
import time
import urllib.parse

import pytest

from rainbow_backend import (Backend, InvalidRequest, MemoryStore, RainbowRequest,
                             RainbowResponse, SQLiteStore, decode_context, encode_context,
                             signed_query_v1)

TOKEN = "t0ken"


def call(b, kind, msg_type=None, body=b"", headers=(), token=TOKEN, now=None, method=None):
    path = {"connect": "/rainbow/connect", "close": "/rainbow/close"}.get(
        kind, "/rainbow/msg/%s/" % msg_type)
    q = signed_query_v1(token, now=now)
    status, hdrs, out = b.handle(method or ("POST" if kind == "message" else "GET"), path, q,
                                 list(headers), body)
    return status, {k.lower(): v for k, v in hdrs}, out


def fwd(msgid=None, qos=0, dup=False, identity="id1", cookie=None):
    h = [("RAINBOWCLIENTIDENTITY", identity), ("RAINBOWQOS", str(qos))]
    if msgid is not None:
        h.append(("RAINBOWMESSAGEID", "dev:%d" % msgid))
    if dup:
        h.append(("RAINBOWDUP", "1"))
    if cookie is not None:
        h.append(("RAINBOWCLIENTCOOKIE", cookie))
    return h


# ------------------------------------------------------------------ responses

def test_context_cookie_round_trip():
    c = encode_context({"user": "ann", "n": 1})
    assert json.loads(base64.b64decode(c)) == {"user": "ann", "n": 1}
    assert decode_context(c) == {"user": "ann", "n": 1}
    assert decode_context(None) == {} and decode_context("") == {}
    for bad in ("not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{").decode()):
        with pytest.raises(ValueError):
            decode_context(bad)


def test_sub_and_unsub_many_times():
    """rainbow-django's .unsub() broke the response (its list got nested);
    here both accumulate and render joined by ;;."""
    r = RainbowResponse({"ok": 1})
    r.sub("a")
    r.sub("b", ["c"])
    r.unsub("x")
    r.unsub("y")
    assert r.subscribes == ["a", "b", "c"] and r.unsubscribes == ["x", "y"]
    status, h, body = r.render()
    h = dict(h)
    assert status == 200 and body == b'{"ok":1}'
    assert h["RAINBOWCLIENTCHANNEL"] == "a;;b;;c"
    assert h["RAINBOWCLIENTCHANNELUNSUB"] == "x;;y"
    for bad in ("", "a;;b", "a\nb"):
        with pytest.raises(ValueError):
            r.sub(bad)


def test_cookie_sent_only_when_the_context_changed():
    req = RainbowRequest("id", 1, context=decode_context(encode_context({"u": 1})),
                         cookie=encode_context({"u": 1}))
    assert "RAINBOWCLIENTCOOKIE" not in dict(RainbowResponse("x", req).render()[1])
    r = RainbowResponse("x", req)
    r.context["u"] = 2
    assert decode_context(dict(r.render()[1])["RAINBOWCLIENTCOOKIE"]) == {"u": 2}
    r = RainbowResponse("x", req)
    r.context.clear()                    # clearing is sent too
    assert decode_context(dict(r.render()[1])["RAINBOWCLIENTCOOKIE"]) == {}
    # no cookie before, nothing set: nothing sent
    assert "RAINBOWCLIENTCOOKIE" not in dict(RainbowResponse("x", RainbowRequest("i", 1)).render()[1])
    # original call shape: context given directly
    assert "RAINBOWCLIENTCOOKIE" in dict(RainbowResponse("x", context={"a": 1}).render()[1])


def test_render_data_kinds():
    assert RainbowResponse(None).render()[2] == b""
    assert RainbowResponse(None).render(kind="connect")[2] == b'{"status":"success"}'
    assert RainbowResponse("é").render()[2] == "é".encode()
    assert RainbowResponse(b"\x00\xff").render()[2] == b"\x00\xff"
    assert RainbowResponse([1, "é"]).render()[2] == '[1,"é"]'.encode()
    assert json.loads(RainbowResponse().refuse("no").render(kind="connect")[2]) == {
        "status": "fail", "msg": "no"}
    assert dict(RainbowResponse().invalid("bad\nthing").render()[1])[
        "RAINBOWREQUESTINVALID"] == "bad thing"


def test_request_delegates_to_the_framework_request():
    class Dj:
        GET = {"a": "1"}
        META = {"HTTP_X": "y"}
    r = RainbowRequest("ident", "connect", kind="connect", http=Dj())
    assert r.GET == {"a": "1"} and r.META["HTTP_X"] == "y" and r.rbidentity == "ident"
    with pytest.raises(AttributeError):
        RainbowRequest("i", 1).nothing


# ------------------------------------------------------------------ dispatch

def make(**kw):
    b = Backend(TOKEN, **kw)
    runs = []

    @b.connect
    def connect(req):
        r = RainbowResponse(request=req).sub("lobby")
        r.context["who"] = req.header("user")
        return r

    @b.message(1)
    def echo(req):
        runs.append((req.message_id, req.dup, req.data))
        return {"echo": req.data, "who": req.context.get("who")}

    @b.message(2)
    def refuse(req):
        raise InvalidRequest("not today")

    @b.message(3)
    def boom(req):
        runs.append("boom")
        raise RuntimeError("boom")
    return b, runs


def test_signature_window_and_errors():
    b, runs = make()
    assert call(b, "message", 1, b"1", fwd())[0] == 200
    for kw in ({"token": "wrong"}, {"now": time.time() - 11}, {"now": time.time() + 11}):
        status, h, body = call(b, "message", 1, b"1", fwd(), **kw)
        assert status == 403 and h["rainbowrequestinvalid"] == "signature error", kw
        assert json.loads(body) == {"status": 1, "msg": "signature error"}
    # no signature at all
    assert b.handle("POST", "/rainbow/msg/1/", {}, fwd(), b"1")[0] == 403
    assert len(runs) == 1


def test_connect_sets_channels_and_context():
    b, _ = make()
    status, h, body = call(b, "connect", headers=[("user", "ann"), ("RAINBOWCLIENTIDENTITY", "i")])
    assert status == 200 and json.loads(body) == {"status": "success"}
    assert h["rainbowclientchannel"] == "lobby"
    cookie = h["rainbowclientcookie"]
    assert decode_context(cookie) == {"who": "ann"}
    status, h, body = call(b, "message", 1, b'{"x":1}', fwd(cookie=cookie))
    assert json.loads(body) == {"echo": {"x": 1}, "who": "ann"}
    assert "rainbowclientcookie" not in h      # unchanged: not sent again


def test_unknown_type_invalid_payload_refusal_and_crash():
    b, runs = make()
    status, h, body = call(b, "message", 9, b"{}", fwd())
    assert status == 200 and h["rainbowrequestinvalid"] == "unknown message type 9"
    status, h, _ = call(b, "message", 1, b"not json", fwd())
    assert status == 200 and h["rainbowrequestinvalid"] == "payload is not JSON"
    status, h, _ = call(b, "message", 2, b"{}", fwd())
    assert status == 200 and h["rainbowrequestinvalid"] == "not today"
    status, h, body = call(b, "message", 3, b"{}", fwd())
    assert status == 500 and "rainbowrequestinvalid" not in h
    assert call(b, "message", 1, b"{}", fwd(), method="GET")[0] == 405
    assert b.handle("GET", "/elsewhere", {}, [], b"")[0] == 404
    # a default handler takes the types without one
    b.message()(lambda req: "default")
    assert call(b, "message", 9, b"{}", fwd())[2] == b"default"


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_qos2_replay_rules(store, tmp_path):
    st = MemoryStore() if store == "memory" else SQLiteStore(tmp_path / "d.db")
    b, runs = make(store=st)
    first = call(b, "message", 1, b'{"n":1}', fwd(7, qos=2))
    assert len(runs) == 1
    # the gateway's crash case: same id, DUP, same payload -> stored reply
    again = call(b, "message", 1, b'{"n":1}', fwd(7, qos=2, dup=True))
    assert len(runs) == 1 and again[2] == first[2] and again[1]["x-rainbow-replayed"] == "1"
    # not DUP: a new message reusing the id -> runs
    call(b, "message", 1, b'{"n":1}', fwd(7, qos=2))
    assert len(runs) == 2
    # DUP but another payload under the id -> runs
    call(b, "message", 1, b'{"n":2}', fwd(7, qos=2, dup=True))
    assert len(runs) == 3
    # QoS 1 is not deduplicated by default; QoS 0 has no id
    call(b, "message", 1, b'{"n":2}', fwd(8, qos=1, dup=True))
    call(b, "message", 1, b'{"n":2}', fwd(8, qos=1, dup=True))
    assert len(runs) == 5
    # a refusal is final and replayed; a crash is not stored
    assert call(b, "message", 2, b"{}", fwd(9, qos=2))[1]["rainbowrequestinvalid"] == "not today"
    assert call(b, "message", 2, b"{}", fwd(9, qos=2, dup=True))[1]["x-rainbow-replayed"] == "1"
    assert call(b, "message", 3, b"{}", fwd(10, qos=2))[0] == 500
    assert call(b, "message", 3, b"{}", fwd(10, qos=2, dup=True))[0] == 500
    assert runs.count("boom") == 2


def test_sqlite_store_survives_a_restart_and_commits_handler_writes(tmp_path):
    path = tmp_path / "d.db"

    def backend():
        b = Backend(TOKEN, store=SQLiteStore(path))

        @b.message(5)
        def count(req):
            req.db.execute("CREATE TABLE IF NOT EXISTS hits (id TEXT)")
            req.db.execute("INSERT INTO hits VALUES (?)", (req.message_id,))
            n = req.db.execute("SELECT count(*) FROM hits").fetchone()[0]
            if req.data == "fail":
                raise RuntimeError("after writing")
            return {"hits": n}
        return b
    b1 = backend()
    assert json.loads(call(b1, "message", 5, b'"x"', fwd(1, qos=2))[2]) == {"hits": 1}
    b2 = backend()                        # a new process on the same file
    out = call(b2, "message", 5, b'"x"', fwd(1, qos=2, dup=True))
    assert json.loads(out[2]) == {"hits": 1} and out[1]["x-rainbow-replayed"] == "1"
    # a handler that fails leaves none of its writes behind
    assert call(b2, "message", 5, b'"fail"', fwd(2, qos=2))[0] == 500
    assert json.loads(call(b2, "message", 5, b'"y"', fwd(3, qos=2))[2]) == {"hits": 2}


def test_concurrent_duplicates_run_once(tmp_path):
    """A DUP arriving while the first copy still runs (the gateway restarted
    meanwhile) waits for it and gets its reply."""
    for st in (MemoryStore(), SQLiteStore(tmp_path / "c.db")):
        b = Backend(TOKEN, store=st)
        gate, runs = threading.Event(), []

        @b.message(1)
        def slow(req):
            runs.append(1)
            gate.wait(10)
            return {"run": len(runs)}
        out = []
        t1 = threading.Thread(target=lambda: out.append(call(b, "message", 1, b"1", fwd(4, qos=2))))
        t1.start()
        deadline = time.time() + 10
        while not runs and time.time() < deadline:
            time.sleep(0.01)
        t2 = threading.Thread(target=lambda: out.append(
            call(b, "message", 1, b"1", fwd(4, qos=2, dup=True))))
        t2.start()
        time.sleep(0.2)
        gate.set()
        t1.join(10)
        t2.join(10)
        assert len(runs) == 1 and [json.loads(o[2]) for o in out] == [{"run": 1}] * 2


def test_wsgi_adapter():
    b, _ = make()
    q = urllib.parse.urlencode(signed_query_v1(TOKEN))
    body = '{"x":"é"}'.encode()
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/rainbow/msg/1/", "QUERY_STRING": q,
           "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
           "HTTP_RAINBOWCLIENTIDENTITY": "i", "HTTP_RAINBOWQOS": "1",
           "HTTP_USER": "zoé".encode().decode("latin-1")}
    got = {}

    def start(status, headers):
        got["status"], got["headers"] = status, dict(headers)
    out = b"".join(b.wsgi(env, start))
    assert got["status"] == "200 OK" and json.loads(out) == {"echo": {"x": "é"}, "who": None}
    # connect: a UTF-8 header value arrives whole and leaves as UTF-8 bytes
    env.update(PATH_INFO="/rainbow/connect", REQUEST_METHOD="GET", CONTENT_LENGTH="0",
               QUERY_STRING=urllib.parse.urlencode(signed_query_v1(TOKEN)))
    out = b"".join(b.wsgi(env, start))
    assert got["status"] == "200 OK" and json.loads(out) == {"status": "success"}
    cookie = got["headers"]["RAINBOWCLIENTCOOKIE"].encode("latin-1").decode()
    assert decode_context(cookie) == {"who": "zoé"}
