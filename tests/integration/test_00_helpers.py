"""The test helpers themselves, against PROTOCOL.md's verified vectors (no gateway)."""
import hashlib
import json

import rainbow as rb


def test_packet_vectors():
    assert rb.send(1, b'{"a":0}') == bytes.fromhex("1000017b2261223a307d")
    assert rb.send(2, b'{"a":1}', qos=1, msgid=10) == bytes.fromhex("120002000a7b2261223a317d")
    assert rb.send(2, b'{"a":1}', qos=1, msgid=10, dup=True)[0] == 0x1A
    assert rb.send(3, b'{"a":2}', qos=2, msgid=11) == bytes.fromhex("140003000b7b2261223a327d")
    assert rb.send(3, b'{"a":2}', qos=2, msgid=11, dup=True)[0] == 0x1C
    assert rb.ack(10, b"r") == bytes.fromhex("20000a72")
    assert rb.rec(11) == bytes.fromhex("30000b")
    assert rb.rel(11) == bytes.fromhex("40000b")
    assert rb.com(11) == bytes.fromhex("50000b")
    assert rb.send(1002, b'{"m":1}', qos=1, msgid=1) == bytes.fromhex("1203ea00017b226d223a317d")


def test_decode():
    p = rb.decode(bytes.fromhex("1203ea00017b226d223a317d"))
    assert (p.cmd, p.qos, p.dup, p.msgtype, p.msgid, p.payload) == (1, 1, False, 1002, 1, b'{"m":1}')
    p = rb.decode(bytes.fromhex("1c0003000b"))
    assert (p.cmd, p.qos, p.dup, p.msgid, p.payload) == (1, 2, True, 11, b"")
    p = rb.decode(bytes.fromhex("1000017b7d"))
    assert (p.msgtype, p.msgid, p.payload) == (1, None, b"{}")
    p = rb.decode(b"\x60\x00\x05" + json.dumps({"code": 502, "message": "x", "temporary": True}).encode())
    assert p.cmd == rb.NAK and p.msgid == 5
    assert rb.nak_body(p) == {"code": 502, "message": "x", "temporary": True}
    p = rb.decode(b"\x70{}")
    assert p.cmd == rb.HELLO and p.payload == b"{}"
    for bad in (b"", b"\x20", b"\x16\x00\x01\x00\x01", b"\x90\x00\x01", b"\x12\x00"):
        try:
            rb.decode(bad)
        except ValueError:
            continue
        raise AssertionError("decoded malformed %r" % bad)


def test_signature():
    parts = sorted(["tok", "1700000000", "abc"])
    assert rb.sign_v1("tok", "1700000000", "abc") == hashlib.sha1("".join(parts).encode()).hexdigest()
    # sorted as strings: "1700000000" < "abc" < "tok"
    assert rb.sign_v1("tok", 1700000000, "abc") == hashlib.sha1(b"1700000000abctok").hexdigest()
    q = rb.signed_query("tok")
    assert q["signature"] == rb.sign_v1("tok", q["timestamp"], q["nonce"])


def test_stub_backend_defaults_and_rules(backend):
    r = rb.http_request(backend.port, "GET", "/connect?x=1", headers={"X-Foo": "bar"})
    assert (r.status, r.body) == (200, b'{"status":"success"}')
    r = rb.http_request(backend.port, "POST", "/forward/3/", body=b"hi")
    assert (r.status, r.body) == (200, b"re:hi")
    r = rb.http_request(backend.port, "GET", "/close")
    assert (r.status, r.body) == (200, b"ok")
    backend.rules({"prefix": "/forward/9/", "status": 500, "body": "no",
                   "headers": {"RAINBOWCLIENTCOOKIE": "c"}, "times": 1})
    r = rb.http_request(backend.port, "POST", "/forward/9/", body=b"x")
    assert (r.status, r.body, r.headers.get("rainbowclientcookie")) == (500, b"no", "c")
    r = rb.http_request(backend.port, "POST", "/forward/9/", body=b"x")
    assert (r.status, r.body) == (200, b"re:x")
    reqs = backend.requests()
    assert [q.path for q in reqs] == ["/connect", "/forward/3/", "/close", "/forward/9/", "/forward/9/"]
    assert reqs[0].header("x-foo") == "bar" and reqs[0].query == {"x": "1"}
    assert ("X-Foo", "bar") in reqs[0].headers
    assert reqs[1].body == b"hi"
    assert backend.count("/forward/") == 3
    backend.reset()  # these unsigned requests are not the gateway's
