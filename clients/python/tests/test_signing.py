"""Signatures beyond the shared vectors (those are checked in
tests/integration/test_23_python_helper.py): round trips, nonces, v2
verification with replay, and the vectors' own file read here too so a
helper change is caught without a gateway."""
import json
import re
from pathlib import Path

import pytest

from rainbow_backend import signing as s

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "sign_vectors.json"


def test_shared_vectors_quick():
    d = json.loads(VECTORS.read_text())
    for v in d["v1"]:
        assert s.sign_v1(v["token"], v["timestamp"], v["nonce"]) == v["signature"], v["name"]
    for v in d["v2"]:
        assert s.canonical_query(v["query"]) == v["canonical_query"], v["name"]


def test_sign_v1_is_order_free_and_bytes_sorted():
    a = s.sign_v1("secret", "1700000000", "12345")
    assert a == s.sign_v1("12345", "secret", "1700000000") == s.sign_v1(b"1700000000", "12345",
                                                                         b"secret")
    assert s.sign_v1(None, "1", "2") == s.sign_v1("", "1", "2")


def test_signed_query_v1_round_trip():
    q = s.signed_query_v1("tok", now=1700000000)
    assert q["timestamp"] == "1700000000"
    assert re.fullmatch(r"[1-9][0-9]{0,15}", q["nonce"]) and int(q["nonce"]) < 2 ** 53
    s.check_v1("tok", q["timestamp"], q["nonce"], q["signature"], now=1700000005)
    with pytest.raises(s.SignatureError) as e:
        s.check_v1("tok", q["timestamp"], q["nonce"], q["signature"], now=1700000011)
    assert e.value.kind == "stale"
    with pytest.raises(s.SignatureError) as e:
        s.check_v1("other", q["timestamp"], q["nonce"], q["signature"], now=1700000000)
    assert e.value.kind == "mismatch"
    with pytest.raises(s.SignatureError) as e:
        s.check_v1("tok", None, q["nonce"], q["signature"], now=1700000000)
    assert e.value.kind == "missing"


def test_nonces_are_random_and_wide():
    seen = {int(s.new_nonce()) for _ in range(256)}
    assert len(seen) == 256
    assert max(seen) >= 2 ** 52 and min(seen) >= 1 and max(seen) < 2 ** 53


def test_v2_round_trip_and_replay():
    pairs = s.signed_query_v2("tok", "POST", "/send/", [("channel", "a b/c"), ("qos", "1")],
                              b'{"m":1}', now=1700000000, nonce="n1")
    names = [k for k, _ in pairs]
    assert names == ["channel", "qos", "timestamp", "nonce", "signature"]
    sig = dict(pairs)["signature"]
    assert re.fullmatch(r"[0-9a-f]{64}", sig)
    s.check_v2("tok", "POST", "/send/", pairs, b'{"m":1}', now=1700000003)
    for method, path, body in (("GET", "/send/", b'{"m":1}'), ("POST", "/sub/", b'{"m":1}'),
                               ("POST", "/send/", b'{"m":2}')):
        assert not s.verify_v2("tok", method, path, pairs, body, now=1700000000)
    tampered = [(k, "room" if k == "channel" else v) for k, v in pairs]
    assert not s.verify_v2("tok", "POST", "/send/", tampered, b'{"m":1}', now=1700000000)
    assert not s.verify_v2("tok", "POST", "/send/", pairs, b'{"m":1}', now=1700000011)
    cache = s.NonceCache(window=10)
    s.check_v2("tok", "POST", "/send/", pairs, b'{"m":1}', now=1700000000, nonces=cache)
    with pytest.raises(s.SignatureError) as e:
        s.check_v2("tok", "POST", "/send/", pairs, b'{"m":1}', now=1700000001, nonces=cache)
    assert e.value.kind == "replayed"
    # a query string works as well as pairs
    qs = "&".join("%s=%s" % (k, s._escape(v)) for k, v in pairs)
    s.check_v2("tok", "POST", "/send/", qs, b'{"m":1}', now=1700000000)


def test_canonical_query_escapes_like_rfc3986():
    assert s.canonical_query([("b", "~-._"), ("a", "x y+z/é"), ("signature", "z")]) == \
        "a=x%20y%2Bz%2F%C3%A9&b=~-._"
