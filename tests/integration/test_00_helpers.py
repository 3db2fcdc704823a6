"""The test helpers themselves, against docs/protocol.md verified vectors (no gateway)."""
import hashlib
import json
import urllib.parse

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


def test_signature_v2():
    import hmac
    pairs = [("timestamp", "1700000000"), ("qos", "1"), ("nonce", "n1"), ("channel", "a b/\u00e9~"),
             ("msgtype", "2"), ("signature", "ignored")]
    canon = "channel=a%20b%2F%C3%A9~&msgtype=2&nonce=n1&qos=1&timestamp=1700000000"
    assert rb.canonical_query(pairs) == canon
    # sorted by name, then value
    assert rb.canonical_query([("b", "2"), ("a", "z"), ("a", "y")]) == "a=y&a=z&b=2"
    body = b'{"m":1}'
    sts = "POST\n/send/\n" + canon + "\n" + hashlib.sha256(body).hexdigest()
    assert rb.string_to_sign_v2("POST", "/send/", pairs, body) == sts
    want = hmac.new(b"tok", sts.encode(), hashlib.sha256).hexdigest()
    assert rb.sign_v2("tok", "POST", "/send/", pairs, body) == want and len(want) == 64
    # empty body hashes the empty string
    assert rb.string_to_sign_v2("GET", "/channels/", [], b"").endswith(
        "\n\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    # a signed target carries the args and verifies against what it sent
    t = rb.signed_target("POST", "/send/", {"channel": "c d", "qos": 0}, body, "v2", "tok",
                         now=1700000000, nonce="abc")
    path, _, q = t.partition("?")
    sent = [tuple(urllib.parse.unquote(x) for x in a.split("=", 1)) for a in q.split("&")]
    assert dict(sent)["signature"] == rb.sign_v2("tok", "POST", path, sent, body)
    assert dict(sent)["timestamp"] == "1700000000" and dict(sent)["nonce"] == "abc"
    t1 = rb.signed_target("GET", "/channels/", None, b"", "v1", "tok", now=1700000000, nonce="abc")
    assert t1 == "/channels/?timestamp=1700000000&nonce=abc&signature=" + rb.sign_v1(
        "tok", "1700000000", "abc")
    assert rb.signed_target("GET", "/channels/", None, b"", None) == "/channels/"


GOOD_PROM = """# HELP rainbow_x_total Things.
# TYPE rainbow_x_total counter
rainbow_x_total{cmd="SEND",qos="1"} 3
rainbow_x_total{cmd="ACK",qos="0"} 0
# TYPE rainbow_g gauge
rainbow_g 1.5e3
# an ordinary comment
# HELP rainbow_h_seconds Latency.
# TYPE rainbow_h_seconds histogram
rainbow_h_seconds_bucket{le="0.1"} 1
rainbow_h_seconds_bucket{le="1"} 4
rainbow_h_seconds_bucket{le="+Inf"} 5
rainbow_h_seconds_sum 2.5
rainbow_h_seconds_count 5
# TYPE rainbow_e gauge
rainbow_e{path="a\\"b\\\\c\\nd",} NaN 1700000000000
"""


def test_prometheus_parser_accepts_good():
    fams = rb.parse_prometheus(GOOD_PROM)
    assert fams["rainbow_x_total"].type == "counter"
    assert fams["rainbow_x_total"].help == "Things."
    assert rb.metric_value(fams, "rainbow_x_total", cmd="SEND", qos="1") == 3
    assert rb.metric_value(fams, "rainbow_x_total") == 3
    assert rb.metric_value(fams, "rainbow_x_total", cmd="NAK") is None
    assert rb.metric_value(fams, "rainbow_g") == 1500
    assert rb.metric_value(fams, "rainbow_h_seconds_count") == 5
    assert fams["rainbow_e"].samples[0][1] == {"path": 'a"b\\c\nd'}


def test_prometheus_parser_rejects_bad():
    bad = {
        "no newline at end": GOOD_PROM.rstrip("\n"),
        "sample without TYPE": GOOD_PROM + "rainbow_new 1\n",
        "counter not _total": GOOD_PROM + "# TYPE rainbow_c counter\nrainbow_c 1\n",
        "buckets decrease": GOOD_PROM.replace('le="1"} 4', 'le="1"} 0'),
        "+Inf != count": GOOD_PROM.replace("rainbow_h_seconds_count 5", "rainbow_h_seconds_count 6"),
        "no +Inf": GOOD_PROM.replace('rainbow_h_seconds_bucket{le="+Inf"} 5\n', ""),
        "bad value": GOOD_PROM.replace("rainbow_g 1.5e3", "rainbow_g one"),
        "unquoted label": GOOD_PROM.replace('qos="1"', "qos=1"),
        "duplicate sample": GOOD_PROM.replace("rainbow_x_total{cmd=\"ACK\",qos=\"0\"} 0",
                                              "rainbow_x_total{qos=\"1\",cmd=\"SEND\"} 0"),
        "not grouped": GOOD_PROM + 'rainbow_x_total{cmd="COM",qos="0"} 1\n',
        "TYPE twice": GOOD_PROM + "# TYPE rainbow_g gauge\n",
        "bad type": GOOD_PROM.replace("rainbow_g gauge", "rainbow_g gouge"),
        "two spaces": GOOD_PROM.replace("rainbow_g 1.5e3", "rainbow_g  1.5e3"),
    }
    for name, text in bad.items():
        try:
            rb.parse_prometheus(text)
        except AssertionError:
            continue
        raise AssertionError("parser accepted: %s" % name)
