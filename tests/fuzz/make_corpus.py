#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/)
from the vectors of the unit tests: tests/unit/test_packet.c,
test_http_head.c, test_http_resp.c, test_link.c and test_beacon.c. The files are committed; run this
again after changing it (it rewrites only the seed-* files, so regression
inputs added by hand, named regress-*, stay).

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

# --- test_packet.c ----------------------------------------------------------
A0, A1, A2 = b'{"a":0}', b'{"a":1}', b'{"a":2}'
M1, REPLY = b'{"m":1}', b'{"ok":true}'
PACKET = {
    # vectors[]
    "send-q0": b"\x10\x00\x01" + A0,
    "send-q1": b"\x12\x00\x02\x00\x0a" + A1,
    "send-q1-dup": b"\x1a\x00\x02\x00\x0a" + A1,
    "send-q2": b"\x14\x00\x03\x00\x0b" + A2,
    "send-q2-dup": b"\x1c\x00\x03\x00\x0b" + A2,
    "ack": b"\x20\x00\x0a" + REPLY,
    "ack-empty": b"\x20\x00\x0a",
    "rec": b"\x30\x00\x0b" + REPLY,
    "rec-empty": b"\x30\x00\x0b",
    "rel": b"\x40\x00\x0b",
    "com": b"\x50\x00\x0b",
    "server-send": b"\x12\x03\xea\x00\x01" + M1,
    # test_short_packets
    "short-send-q1": b"\x12\x00\x02\x00",
    "short-rel": b"\x40",
    "short-nak": b"\x60\x00",
    # test_empty_payloads
    "send-q0-empty": b"\x10\xff\xfe",
    "send-q2-empty": b"\x14\x00\x07\xab\xcd",
    "nak-empty": b"\x60\x00\x01",
    # test_rel_com_trailing_ignored
    "rel-trailing": b"\x40\x00\x0b\xde\xad\xbe",
    "com-dup-qos1": b"\x5a\x00\x0b\x01",
    # test_msgid_kept_on_failure
    "ack-qos3": b"\x26\x00\x0a",
    "rec-qos3": b"\x36\x12\x34\x00",
    "nak-qos3": b"\x66\xff\xff",
    "nak": b"\x60\x00\x0a\x7b\x7d",
    "send-qos3": b"\x16\x00\x01\x00\x0a\x7b",
    "unknown-0": b"\x00\x00\x0a\x00\x0a",
    "unknown-9": b"\x92\x00\x0a\x00\x0a",
    "hello": b"\x70\x00\x0a",
    # test_header_matrix (one frame; the fuzzer flips byte 0)
    "matrix": b"\x13\x12\x34\x56\x78xy",
}

# --- test_http_head.c -------------------------------------------------------
HEAD = {
    "upgrade": b"GET /connect/?X-DEVICEID=dev%201&foo=1&foo=2&flag HTTP/1.1\r\n"
               b"Host: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
               b"X-Foo:   bar  \r\n\r\nEXTRA",
    "incomplete": b"GET / HTTP/1.1\r\nHost: x\r\n",
    "bad-no-target": b"GET\r\n\r\n",
    "bad-http2": b"GET / HTTP/2.0\r\n\r\n",
    "bad-no-colon": b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
    "bad-folded": b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
    "bad-no-method": b" / HTTP/1.1\r\n\r\n",
    "bad-empty-target": b"GET  HTTP/1.1\r\n\r\n",
    "lf-only": b"POST /send/?a=%41%zz+b HTTP/1.0\nContent-Length: 3\n\n",
    # test_refuses_what_others_read_differently
    "smuggle-space-colon": b"POST / HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
    "smuggle-tab-colon": b"POST / HTTP/1.1\r\nContent-Length\t: 5\r\n\r\n",
    "smuggle-space-name": b"POST / HTTP/1.1\r\nX Y: 1\r\n\r\n",
    "smuggle-quoted-name": b"POST / HTTP/1.1\r\n\"X\": 1\r\n\r\n",
    "smuggle-method": b"G(T / HTTP/1.1\r\n\r\n",
    "smuggle-bare-cr": b"GET / HTTP/1.1\r\nX: a\rContent-Length: 5\r\n\r\n",
    "smuggle-cr-target": b"GET /\r HTTP/1.1\r\n\r\n",
    "smuggle-nul": b"GET / HTTP/1.1\r\nX: a\0b\r\n\r\n",
    "tchars": b"M-1.!#$%&'*+^_`|~ / HTTP/1.1\r\nX-a.b!#$%&'*+^_`|~: v\t\xe9 w\r\n\r\n",
}
# test_body_framing: each case as the test wraps it.
FRAMING = [
    b"Content-Length: 0\r\n",
    b"content-length: 42\r\n",
    b"Content-Length: 5\r\nContent-Length: 5\r\n",
    b"Content-Length: 5,5 ,\t5\r\n",
    b"Content-Length: 18446744073709551606\r\n",
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: 6\r\nContent-Length: 6, 7\r\n",
    b"Content-Length: 5\r\nContent-Length: x\r\n",
    b"Content-Length: +5\r\n",
    b"Content-Length: 5,\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    b"Content-Length: x\r\nTransfer-Encoding: gzip\r\n",
    b"Transfer-Encoding: gzip, chunked\r\n",
    b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
    b"Transfer-Encoding: \r\n",
]
for i, h in enumerate(FRAMING):
    HEAD["framing-%02d" % i] = b"POST / HTTP/1.1\r\n" + h + b"\r\n"

# --- test_http_resp.c -------------------------------------------------------
# Byte 0 flags (bit 0 HEAD; bits 1-2 max_body 1 MiB/64/0; bits 3-4 mode:
# 0 raw, 2 generated chunked, 3 generated Content-Length), byte 1 the split
# seed (bits 0-1: pieces of 1, <=8, <=64, <=1024 bytes). See fuzz_http_resp.c.
RAW, HEAD_REQ, SMALL, GEN_CHUNKED, GEN_LENGTH = 0x00, 0x01, 0x02, 0x10, 0x18
OK = b"HTTP/1.1 200 OK\r\n"
CHUNKED = OK + b"Transfer-Encoding: chunked\r\n\r\n"
RESP = {
    "chunked-bytewise": (RAW, 0, OK +
        b"Transfer-Encoding: gzip, chunked\r\nX-Fold: a\r\n \t b  \r\n"
        b"x-dup: first\r\nX-Dup: second\n\r\n"
        b"5;ext=1;name=\"v\"\r\nhello\r\n6 ; ext\r\n world\r\n000\r\n"
        b"Trailer-X: y\r\nTrailer-Y: z\r\n\r\nHTTP/1.1 200"),
    "chunked-no-crlf": (RAW, 1, CHUNKED + b"3\r\nabcX\r\n"),
    "chunked-bad-size": (RAW, 2, CHUNKED + b"3x\r\n"),
    "chunked-size-too-large": (RAW, 3, CHUNKED + b"1000000000000000\r\n"),
    "length": (RAW, 1, b"HTTP/1.1 201 Created\r\nContent-Length: 5\r\n"
               b"content-length: 5\r\n\r\nhelloEXTRA"),
    "length-lf": (RAW, 2, b"HTTP/1.0 404\nContent-Length: 3\n\nabc"),
    "length-zero": (RAW, 3, OK + b"Content-Length: 0\r\n\r\n"),
    "length-conflict": (RAW, 0, OK + b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"),
    "length-list": (RAW, 1, OK + b"Content-Length: 5, 5\r\n\r\n"),
    "length-19-digits": (RAW, 2, OK + b"Content-Length: 1234567890123456789\r\n\r\n"),
    "eof-body": (RAW, 1, OK + b"Connection: keep-alive\r\n\r\nsome more"),
    "eof-te-gzip": (RAW, 2, OK + b"Transfer-Encoding: chunked, gzip\r\n\r\n5\r\nabc"),
    "eof-early": (RAW, 3, OK + b"Content-Length: 5\r\n\r\nabc"),
    "head": (HEAD_REQ, 1, OK + b"Content-Length: 10\r\n\r\n0123456789"),
    "head-chunked": (HEAD_REQ, 2, CHUNKED),
    "204": (RAW, 1, b"HTTP/1.1 204 No Content\r\nContent-Length: 4\r\n\r\nbody"),
    "304": (RAW, 2, b"HTTP/1.1 304 Not Modified\r\nContent-Length: 4\r\n\r\nbody"),
    "interim": (RAW, 0, b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                b"HTTP/1.1 102 Processing\r\n\r\n" + OK + b"Content-Length: 2\r\n\r\nok"),
    "101": (RAW, 1, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"),
    # test_body_cap, with the fuzzer's small max_body (64)
    "cap-length": (SMALL, 1, OK + b"Content-Length: 65\r\n\r\n"),
    "cap-chunked": (SMALL, 2, CHUNKED + b"20\r\n" + b"x" * 32 + b"\r\n21\r\n"),
    "cap-eof": (SMALL, 3, OK + b"\r\n" + b"x" * 65),
    "bad-http2": (RAW, 1, b"HTTP/2 200 OK\r\n"),
    "bad-status-20": (RAW, 1, b"HTTP/1.1 20 OK\r\n"),
    "bad-status-099": (RAW, 1, b"HTTP/1.1 099 Low\r\n"),
    "bad-status-bytes": (RAW, 1, b"ICY 200 \x01\xff\r\n"),
    "bad-no-colon": (RAW, 1, OK + b"No colon\r\n"),
    "bad-name": (RAW, 1, OK + b"Bad name: x\r\n"),
    "bad-fold-first": (RAW, 1, OK + b" folded\r\n"),
    # test_keepalive
    "keepalive-close": (RAW, 2, OK + b"Connection: Upgrade, CLOSE \r\n"
                        b"Content-Length: 1\r\n\r\nx"),
    "keepalive-10": (RAW, 2, b"HTTP/1.0 200 OK\r\nConnection: foo,keep-alive\r\n"
                     b"Content-Length: 1\r\n\r\nx"),
    "keepalive-both": (RAW, 2, OK + b"Transfer-Encoding: chunked\r\n"
                       b"Content-Length: 0\r\n\r\n0\r\n\r\n"),
    # generated modes: the body is known exactly
    "gen-chunked": (GEN_CHUNKED, 1, b"\x04abcde\x85" + b"0123456" + b"\x01xy"),
    "gen-chunked-lf-100-trailer": (GEN_CHUNKED | 0x20 | 0x40 | 0x80, 0,
                                   b"\x02hel\x01lo"),
    "gen-length": (GEN_LENGTH, 2, b"hello world"),
    "gen-length-head": (GEN_LENGTH | HEAD_REQ, 3, b"0123456789"),
}


# --- test_link.c and test_beacon.c -------------------------------------------
# The same vectors as the unit tests (which spell them in hex), built here
# from the layouts of docs/cluster-protocol.md. fuzz_link reads byte 0 as a
# split seed and the rest both as a link stream and as a beacon (see
# fuzz_link.c).
import hashlib  # noqa: E402
import hmac  # noqa: E402
import struct  # noqa: E402

LINK_SECRET = b"s3cret"


def lstr(b):
    return struct.pack(">H", len(b)) + b


def lblob(b):
    return struct.pack(">I", len(b)) + b


def frame(t, payload):
    return struct.pack(">IB", 1 + len(payload), t) + payload


CHAL_A = bytes(range(32))
CHAL_B = bytes(range(0x20, 0x40))
HELLO_A = (1, 0x0A0B0C0D, 7, 1984, b"lan", CHAL_A)
HELLO_B = (1, 0x01020304, 2, 1985, b"lan", CHAL_B)


def hello(h):
    v, node, inc, port, name, chal = h
    return frame(1, struct.pack(">BIQH", v, node, inc, port) + lstr(name) + chal)


def auth_mac(prover, verifier):
    msg = (b"rainbow-link-auth-v1" + verifier[5] + prover[5] +
           struct.pack(">IQIQ", prover[1], prover[2], verifier[1], verifier[2]))
    return hmac.new(LINK_SECRET, msg, hashlib.sha256).digest()


LINK = {
    "hello": hello(HELLO_A),
    "auth": frame(2, auth_mac(HELLO_A, HELLO_B)),
    "ping": frame(3, struct.pack(">Q", 1)),
    "pong": frame(4, struct.pack(">Q", 0x0102030405060708)),
    "interest-full": frame(5, b"\x03" + struct.pack(">I", 2) + lstr(b"a") + lstr(b"room")),
    "interest-add": frame(6, b"\x01" + lstr(b"room")),
    "interest-remove": frame(6, b"\x00" + lstr(b"")),
    "publish": frame(7, struct.pack(">QB", 42, 1) + lstr(b"room") +
                     struct.pack(">BHI", 1, 1002, 5000) + lblob(b'{"m":1}')),
    "receipt": frame(8, struct.pack(">QIIIB", 42, 3, 1, 2, 1) + lblob(b'{"x":1}')),
    "receipt-nodata": frame(8, struct.pack(">QIIIB", 42, 0, 0, 0, 0)),
    "op": frame(9, struct.pack(">QB", 9, 3) + lstr(b"id1") + lstr(b"") +
                struct.pack(">i", 4001) + lstr(b"bye")),
    "op-result": frame(10, struct.pack(">Qi", 9, -8)),
    "presence-req": frame(11, struct.pack(">Q", 77) + lstr(b"room")),
    "presence-resp": frame(12, struct.pack(">QBI", 77, 3, 2) +
                           lstr(b"id1") + lstr(b"dev1") + lstr(b"ios") +
                           lstr(b"id2") + lstr(b"") + lstr(b"")),
    "bye": frame(13, b""),
    "devices-full": frame(14, b"\x03" + struct.pack(">I", 1) + lstr(b"d1")),
    "device-add": frame(15, b"\x01" + lstr(b"d1")),
    "session-take": frame(16, struct.pack(">Q", 5) + lstr(b"d1")),
    "session-state": frame(17, struct.pack(">QiH", 5, 0, 7) +
                           struct.pack(">I", 2) + lstr(b"a") + lstr(b"room") +
                           struct.pack(">IHBBBH", 1, 3, 1, 1, 1, 1002) + lblob(b"x") +
                           struct.pack(">IHB", 1, 9, 2) + lblob(b"ok")),
    "session-done": frame(18, struct.pack(">Qi", 5, -8)),
    "info-req": frame(19, struct.pack(">Q", 6)),
    "info-resp": frame(20, struct.pack(">Q", 6) + lblob(b"{}")),
}


def beacon(node, inc, port, leaving, ts, name, secret=LINK_SECRET):
    body = (b"RBCN" + bytes([1, 1 if leaving else 0]) +
            struct.pack(">IQHQ", node, inc, port, ts) + lstr(name))
    return body + hmac.new(secret, body, hashlib.sha256).digest()


BEACON_TS = 1700000000000
BEACON = {
    "beacon": beacon(0x01020304, 5, 1984, False, BEACON_TS, b"lan"),
    "beacon-leaving": beacon(0x0A0B0C0D, 6, 2000, True, BEACON_TS + 1, b"lan"),
}


# --- test_token.c ------------------------------------------------------------
# The shared vectors' tokens, and claims texts for the token_make half.
import json  # noqa: E402

with open(os.path.join(HERE, "..", "fixtures", "token_vectors.json")) as f:
    TOKEN = {"vec-" + v["name"]: v["token"].encode() for v in json.load(f)["vectors"]}
TOKEN["claims-full"] = b'{"sub":"u","exp":2000000000,"info":{"a":[1,2]},"channels":["x"]}'
TOKEN["claims-expired"] = b'{"sub":"u","exp":1}'
# Found by fuzz_token: an exp past int64 (its cast was undefined behaviour).
TOKEN["regress-huge-exp"] = b'{"sub":"u","exp":3.3e109}'


def write(target, seeds):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.startswith("seed-"):
            os.unlink(os.path.join(d, f))
    for name, data in seeds.items():
        with open(os.path.join(d, "seed-" + name), "wb") as f:
            f.write(data)


def main():
    write("packet", PACKET)
    write("http_head", HEAD)
    write("http_resp", {k: bytes([fl, sd]) + data
                        for k, (fl, sd, data) in RESP.items()})
    # fuzz_link: byte 0 is the split seed
    seeds = {k: b"\x00" + v for k, v in LINK.items()}
    seeds["stream-all"] = b"\x06" + b"".join(LINK.values())
    seeds["stream-bytewise"] = b"\x02" + LINK["publish"] + LINK["presence-resp"]
    seeds["partial"] = b"\x04" + LINK["op"][:-3]
    seeds["oversize"] = b"\x00" + struct.pack(">IB", 16 * 1024 * 1024 + 1, 7)
    seeds["empty-frame"] = b"\x00" + struct.pack(">I", 0)
    seeds["unknown-type"] = b"\x00" + struct.pack(">IB", 1, 21)
    seeds["trailing"] = b"\x00" + frame(3, struct.pack(">Q", 1) + b"x")
    for k, v in BEACON.items():
        seeds[k] = b"\x01" + v
    write("link", seeds)
    write("token", TOKEN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
