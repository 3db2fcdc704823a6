"""Helpers for the Rainbow integration tests (imported by conftest and tests).

Written from docs/protocol.md alone, independently of the gateway's C code:
    - packet codec (A.2, B.1), v1 signatures (A.6) and v2 HMAC signatures
      (docs/rest-api.md),
    - a REST client (Gateway.rest / Gateway.api) signing with v1, v2 or not at all,
    - a strict Prometheus text-format parser (parse_prometheus),
    - Stub: client of tests/fixtures/stub_backend.py's control API,
    - Gateway: one rainbow-server process with a generated config (kill9(),
      wait_killed() and restart() on the same data_dir and ports; read-only
      queries on its SQLite database: db(), db_counts()),
    - Client: an asyncio websockets client speaking Rainbow packets,
    - RawClient: a hand-rolled blocking WebSocket client (never answers pings),
    - Collector: reads a Client's frames in the background (optionally answering
      pushed SENDs with ACK/REC and RELs with COM),
    - bounded waiting helpers (no fixed sleeps where a condition can be polled).

RAINBOW_BIN selects the binary; RAINBOW_LOG_LEVEL (default info) the gateways'
log_level, e.g. debug to see connections open and close in a failing test's log.
"""
import asyncio
import base64
import collections
import contextlib
import hashlib
import hmac
import http.client
import json
import math
import os
import re
import secrets
import signal
import socket
import sqlite3
import ssl
import struct
import subprocess
import time
import urllib.parse
from pathlib import Path

import websockets
import websockets.exceptions

HERE = Path(__file__).resolve().parent
FIXTURES = HERE.parent / "fixtures"
PY = "/usr/bin/python3"

TOKEN = "testtoken"

# ---------------------------------------------------------------- packets (A.2)

SEND, ACK, REC, REL, COM, NAK, HELLO = 1, 2, 3, 4, 5, 6, 7
CMD_NAMES = {1: "SEND", 2: "ACK", 3: "REC", 4: "REL", 5: "COM", 6: "NAK", 7: "HELLO"}


def hdr(cmd, qos=0, dup=False):
    """First byte: command<<4 | dup<<3 | qos<<1."""
    return (cmd << 4) | ((1 if dup else 0) << 3) | (qos << 1)


def _b(payload):
    if isinstance(payload, str):
        return payload.encode()
    return bytes(payload)


def send(msgtype, payload=b"", qos=0, msgid=None, dup=False):
    """SEND qos0: hdr, msgtype:u16, payload; qos1/2: hdr, msgtype, msgid, payload."""
    if qos == 0:
        assert msgid is None, "qos0 SEND has no msgid"
        return bytes([hdr(SEND, 0, dup)]) + struct.pack(">H", msgtype) + _b(payload)
    assert msgid is not None
    return (bytes([hdr(SEND, qos, dup)]) + struct.pack(">HH", msgtype, msgid)
            + _b(payload))


def ack(msgid, payload=b""):
    return bytes([hdr(ACK)]) + struct.pack(">H", msgid) + _b(payload)


def rec(msgid, payload=b""):
    return bytes([hdr(REC)]) + struct.pack(">H", msgid) + _b(payload)


def rel(msgid):
    return bytes([hdr(REL)]) + struct.pack(">H", msgid)


def com(msgid):
    return bytes([hdr(COM)]) + struct.pack(">H", msgid)


Packet = collections.namedtuple("Packet", "cmd dup qos msgtype msgid payload raw")


def decode(data):
    """Decode a packet as sent by the server. Raises ValueError when malformed."""
    if isinstance(data, str):
        raise ValueError("text frame: %r" % data[:40])
    if len(data) < 1:
        raise ValueError("empty frame")
    b0 = data[0]
    cmd, dup, qos = b0 >> 4, bool(b0 & 0x08), (b0 >> 1) & 3
    if qos == 3:
        raise ValueError("qos 3 in %s" % data[:8].hex())
    if cmd == SEND:
        need = 3 if qos == 0 else 5
        if len(data) < need:
            raise ValueError("short SEND %s" % data.hex())
        mtype = struct.unpack(">H", data[1:3])[0]
        if qos == 0:
            return Packet(cmd, dup, qos, mtype, None, data[3:], data)
        mid = struct.unpack(">H", data[3:5])[0]
        return Packet(cmd, dup, qos, mtype, mid, data[5:], data)
    if cmd in (ACK, REC, REL, COM, NAK):
        if len(data) < 3:
            raise ValueError("short %s %s" % (CMD_NAMES[cmd], data.hex()))
        mid = struct.unpack(">H", data[1:3])[0]
        return Packet(cmd, dup, qos, None, mid, data[3:], data)
    if cmd == HELLO:
        return Packet(cmd, dup, qos, None, None, data[1:], data)
    raise ValueError("unknown command %d in %s" % (cmd, data[:8].hex()))


def describe(data):
    try:
        p = decode(data)
    except ValueError as e:
        return "<undecodable: %s>" % e
    extra = "" if p.msgid is None else " id=%d" % p.msgid
    if p.msgtype is not None:
        extra += " type=%d" % p.msgtype
    return "%s qos=%d dup=%d%s payload=%r" % (CMD_NAMES[p.cmd], p.qos, p.dup, extra,
                                              p.payload[:200])


def nak_body(pkt):
    """Parse and check a NAK's JSON: keys code (int), message (str), temporary (bool)."""
    assert pkt.cmd == NAK, "expected NAK, got %s" % describe(pkt.raw)
    body = json.loads(pkt.payload.decode())
    assert isinstance(body.get("code"), int) and not isinstance(body["code"], bool), body
    assert isinstance(body.get("message"), str) and body["message"], body
    assert isinstance(body.get("temporary"), bool), body
    return body


# -------------------------------------------------------------- signatures (A.6)

def sign_v1(token, timestamp, nonce):
    parts = sorted([str(token), str(timestamp), str(nonce)])
    return hashlib.sha1("".join(parts).encode()).hexdigest()


def signed_query(token=TOKEN, now=None):
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(8)
    return {"timestamp": ts, "nonce": nonce, "signature": sign_v1(token, ts, nonce)}


def check_signature(req, token=TOKEN, window=10):
    """Assert a request the stub recorded carries a valid v1 query signature."""
    q = req.query
    for k in ("timestamp", "nonce", "signature"):
        assert k in q, "%s %s lacks query arg %s" % (req.method, req.target, k)
    assert re.fullmatch(r"-?\d+", q["timestamp"]), req.target
    assert abs(int(q["timestamp"]) - req.time) <= window, \
        "timestamp %s is %.1f s from arrival" % (q["timestamp"], int(q["timestamp"]) - req.time)
    # the original's nonces were integers, and backends parse them with int():
    # decimal, no leading zero, below 2^53 (exact in JavaScript too)
    assert re.fullmatch(r"[1-9][0-9]{0,15}", q["nonce"]) and int(q["nonce"]) < 2 ** 53, \
        "nonce %r on %s is not a decimal integer below 2^53" % (q["nonce"], req.target)
    assert q["signature"] == sign_v1(token, q["timestamp"], q["nonce"]), \
        "bad signature on %s %s" % (req.method, req.target)


# ----------------------------------------------------- v2 signatures (rest-api.md)

def rfc3986(s):
    """Percent-encode everything but A-Z a-z 0-9 - . _ ~ (UTF-8, uppercase hex)."""
    return urllib.parse.quote(str(s), safe="")


def query_pairs(query):
    """A dict or a sequence of (name, value) as a list of (str, str)."""
    if query is None:
        return []
    items = query.items() if isinstance(query, dict) else query
    return [(str(k), str(v)) for k, v in items]


def canonical_query(pairs):
    """Every argument except signature (decoded values), sorted by name then
    value, each re-encoded name=value (RFC 3986), joined by &."""
    items = sorted((k, v) for k, v in query_pairs(pairs) if k != "signature")
    return "&".join("%s=%s" % (rfc3986(k), rfc3986(v)) for k, v in items)


def string_to_sign_v2(method, path, pairs, body=b""):
    return "\n".join([method.upper(), path, canonical_query(pairs),
                      hashlib.sha256(_b(body)).hexdigest()])


def sign_v2(token, method, path, pairs, body=b""):
    """hmac_sha256_hex(token, METHOD\nPATH\nCANONICAL_QUERY\nsha256_hex(BODY))."""
    return hmac.new(str(token).encode(), string_to_sign_v2(method, path, pairs, body).encode(),
                    hashlib.sha256).hexdigest()


def encode_query(pairs):
    return "&".join("%s=%s" % (rfc3986(k), rfc3986(v)) for k, v in query_pairs(pairs))


def signed_target(method, path, query=None, body=b"", sign="v1", token=TOKEN, now=None,
                  nonce=None, sign_query=None, sign_body=None, sign_method=None,
                  sign_path=None):
    """Build `path?query` with signature arguments appended.

    sign: "v1", "v2" or None (unsigned). For v2 the signature covers `query`
    plus timestamp and nonce, and `body`; sign_query / sign_body / sign_method /
    sign_path sign something else instead (to tamper with a request)."""
    pairs = query_pairs(query)
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(8) if nonce is None else nonce
    if sign == "v1":
        pairs += [("timestamp", ts), ("nonce", nonce), ("signature", sign_v1(token, ts, nonce))]
    elif sign == "v2":
        extra = [("timestamp", ts), ("nonce", nonce)]
        signed = (query_pairs(sign_query) if sign_query is not None else pairs) + extra
        sig = sign_v2(token, sign_method or method, sign_path or path, signed,
                      body if sign_body is None else sign_body)
        pairs += extra + [("signature", sig)]
    else:
        assert sign is None, sign
    return path + ("?" + encode_query(pairs) if pairs else "")


def body_bytes(body):
    """REST body: bytes/str as is, anything else as JSON."""
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray, str)):
        return _b(body)
    return json.dumps(body).encode()


# ------------------------------------------------------------------ waiting

def wait_until(pred, timeout, interval=0.02, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        time.sleep(interval)


async def await_until(pred, timeout, interval=0.02, what="condition"):
    """Async variant: pred is a plain (quick, blocking) callable."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))
        await asyncio.sleep(interval)


def run(coro, timeout=60):
    """Run an async test body with an overall deadline."""
    async def bounded():
        return await asyncio.wait_for(coro, timeout)
    return asyncio.run(bounded())


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_port():
    """A port on 127.0.0.1 where nothing listens (connections are refused)."""
    return free_port()


# ------------------------------------------------------------------ HTTP

HttpResponse = collections.namedtuple("HttpResponse", "status headers body")


def http_request(port, method, target, body=None, headers=None, timeout=5.0, host="127.0.0.1"):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return HttpResponse(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


def json_body(resp):
    try:
        return json.loads(resp.body.decode())
    except (ValueError, UnicodeDecodeError):
        raise AssertionError("not JSON (HTTP %d): %r" % (resp.status, resp.body[:300]))


ApiResponse = collections.namedtuple("ApiResponse", "status json headers raw")


def is_json_type(headers):
    return headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"


def api_response(resp):
    """A REST answer: assert Content-Type application/json and a JSON body."""
    assert is_json_type(resp.headers), "HTTP %d Content-Type %r (want application/json): %r" % (
        resp.status, resp.headers.get("content-type"), resp.body[:200])
    return ApiResponse(resp.status, json_body(resp), resp.headers, resp.body)


def assert_error(r, status, msg=None, names=None):
    """A REST error: exact HTTP status, {"status":1,"msg":<non-empty str>}; msg
    exact when given, or containing one of `names`."""
    assert r.status == status, "HTTP %d (want %d): %r" % (r.status, status, r.raw[:300])
    assert isinstance(r.json, dict) and set(r.json) == {"status", "msg"}, r.json
    assert r.json["status"] == 1, r.json
    m = r.json.get("msg")
    assert isinstance(m, str) and m, r.json
    if msg is not None:
        assert m == msg, "msg %r, want %r" % (m, msg)
    if names:
        assert any(n in m for n in names), "msg %r names none of %r" % (m, names)
    return r.json


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL if pytest dies (killed by a timeout,
    ^C twice...), so no gateway or stub outlives the run."""
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ------------------------------------------------------------------ stub backend

class Request:
    """One request recorded by the stub."""

    def __init__(self, d):
        self.seq = d["seq"]
        self.time = d["time"]
        self.method = d["method"]
        self.path = d["path"]
        self.target = d["target"]
        self.query = d["query"]
        self.headers = [tuple(h) for h in d.get("headers", [])]
        self.hdr = {}
        for k, v in self.headers:
            self.hdr.setdefault(k.lower(), v)
        self.body = base64.b64decode(d["body_b64"])

    def header(self, name, default=None):
        return self.hdr.get(name.lower(), default)

    def header_all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def __repr__(self):
        return "<%s %s body=%r>" % (self.method, self.target, self.body[:60])


class Stub:
    """Control client for tests/fixtures/stub_backend.py."""

    def __init__(self):
        self.proc = subprocess.Popen([PY, str(FIXTURES / "stub_backend.py")],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.proc.kill()
            raise RuntimeError("stub backend did not start: %r" % line)
        self.port = int(line)
        self.token = TOKEN  # signature token used by the current gateway

    def alive(self):
        return self.proc.poll() is None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(5)
        self.proc.stdout.close()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def _ctl(self, method, path, body=None, timeout=10.0):
        r = http_request(self.port, method, path,
                         body=json.dumps(body).encode() if body is not None else None,
                         headers={"Content-Type": "application/json"}, timeout=timeout)
        assert r.status == 200, (path, r.status, r.body)
        return json.loads(r.body)

    def reset(self):
        self._ctl("POST", "/__stub__/reset")
        self.token = TOKEN

    def rules(self, *rules, append=False):
        """Set behaviours; each rule is a dict (see stub_backend.py)."""
        self._ctl("POST", "/__stub__/config", {"rules": list(rules), "append": append})

    def requests(self, prefix="", since=0, brief=False):
        q = urllib.parse.urlencode({"prefix": prefix, "since": since,
                                    "brief": "1" if brief else "0"})
        return [Request(d) for d in self._ctl("GET", "/__stub__/requests?" + q, timeout=60)]

    def count(self, prefix=""):
        return self._ctl("GET", "/__stub__/count?" + urllib.parse.urlencode({"prefix": prefix}))["count"]

    def wait(self, prefix, count=1, timeout=5.0):
        """Block until `count` requests under prefix arrived; return them (all of them)."""
        q = urllib.parse.urlencode({"prefix": prefix, "count": count, "timeout": timeout})
        n = self._ctl("GET", "/__stub__/wait?" + q, timeout=timeout + 5)["count"]
        assert n >= count, "stub got %d request(s) under %s within %.1f s, want %d" % (
            n, prefix, timeout, count)
        return self.requests(prefix)

    async def await_requests(self, prefix, count=1, timeout=5.0):
        """Like wait() but without blocking the event loop for long."""
        await await_until(lambda: self.count(prefix) >= count, timeout,
                          what="%d request(s) under %s" % (count, prefix))
        return self.requests(prefix)

    def identities(self, clients):
        """Identities of many tagged clients with one request listing."""
        by_tag = {}
        for r in self.requests("/connect"):
            by_tag.setdefault(r.header("rbtag"), []).append(r.header("RAINBOWCLIENTIDENTITY"))
        out = []
        for c in clients:
            got = by_tag.get(c.tag, [])
            assert len(got) == 1, "expected one connect hook for tag %s, got %d" % (c.tag, len(got))
            out.append(got[0])
        return out

    def connect_request(self, tag):
        """The connect-hook request made for the client tagged `tag`."""
        found = [r for r in self.requests("/connect") if r.header("rbtag") == tag]
        assert len(found) == 1, "expected one connect hook for tag %s, got %d" % (tag, len(found))
        return found[0]

    def verify_all_signatures(self):
        for r in self.requests():
            check_signature(r, self.token)


# ------------------------------------------------------------------ gateway

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "WARNING: ThreadSanitizer",
                   "runtime error:", "LeakSanitizer")


def rainbow_bin():
    b = os.environ.get("RAINBOW_BIN") or str(HERE.parent.parent / "build" / "rainbow-server")
    return b


def write_conf(path, opts):
    """Write a [main] config; an option whose value is None is left out."""
    lines = ["; generated by tests/integration", "[main]"]
    for k, v in opts.items():
        if v is None:
            continue
        if isinstance(v, bool):
            v = "true" if v else "false"
        lines.append("%s = %s" % (k, v))
    Path(path).write_text("\n".join(lines) + "\n")
    return path


DB_TABLES = ("sessions", "subscriptions", "messages", "deliveries", "upstream")


def db_query(path, sql, args=(), timeout=5.0):
    """Run one query on an SQLite file opened read-only (mode=ro)."""
    con = sqlite3.connect("file:%s?mode=ro" % urllib.parse.quote(str(path)), uri=True,
                          timeout=timeout)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


class Gateway:
    """One rainbow-server process on free ports with a generated config.

    host: the address HTTP and WebSocket requests go to; cmd_prefix: argv
    run before the binary (e.g. ("ip", "netns", "exec", "ns1") to start it in
    another network namespace, which execs it: the pid stays the gateway's).
    Both are plain attributes (set them before start()), so restart() keeps
    them."""

    host = "127.0.0.1"
    cmd_prefix = ()

    def __init__(self, tmp_path, stub, name="gw", **overrides):
        self.tmp_path = Path(tmp_path)
        self.stub = stub
        self.name = name
        self.port = free_port()
        self.opts = {
            "port": self.port,
            "bind": "127.0.0.1",
            "data_dir": str(self.tmp_path / ("data-" + name)),
            "log_level": os.environ.get("RAINBOW_LOG_LEVEL", "info"),
            "log_file": "",
            "security_token": TOKEN,
            "connect_url": stub.url("/connect") if stub else "",
            "forward_url": stub.url("/forward/") if stub else "",
            "close_url": stub.url("/close") if stub else "",
            "backend_timeout": 2,
            "heartbeat": 0,
            "shutdown_grace": 2,
        }
        self.opts.update(overrides)
        if "port" in overrides and overrides["port"] is not None:
            self.port = int(overrides["port"])
        self.token = self.opts.get("security_token") or ""
        if stub is not None:
            stub.token = self.token
        self.conf = write_conf(self.tmp_path / ("%s.ini" % name), self.opts)
        self.log_path = self.tmp_path / ("%s.log" % name)
        self.proc = None
        self.exit_code = None
        self.expect_exit = False
        self.problems = []  # found at teardown

    # -- process
    def start(self, extra_args=(), ready_timeout=10.0, env=None):
        """env: extra environment variables for this process only (e.g.
        {"RAINBOW_CRASH_AT": "push_committed"})."""
        binary = rainbow_bin()
        if not os.access(binary, os.X_OK):
            raise AssertionError("gateway binary %s is missing or not executable "
                                 "(set RAINBOW_BIN or run make)" % binary)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(list(self.cmd_prefix) + [binary, "-f", str(self.conf)]
                                     + list(extra_args),
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.tmp_path),
                                     env=dict(os.environ, **env) if env else None,
                                     preexec_fn=_die_with_parent)
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.expect_exit = True  # reported here, not again at teardown
                raise AssertionError("gateway exited with %s during start:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            try:
                r = http_request(self.port, "GET", "/hello/", timeout=1, host=self.host)
                if r.status == 200 and r.body.strip() == b"ok":
                    return
                last = "HTTP %d %r" % (r.status, r.body[:100])
            except OSError as e:
                last = repr(e)
            time.sleep(0.02)
        raise AssertionError("gateway not ready within %.0f s (last: %s):\n%s" % (
            timeout, last, self.log_tail()))

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill_with(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=None):
        """Signal and wait for exit; SIGKILL after timeout. Returns the exit code
        (None if it had to be killed)."""
        if self.proc is None:
            return None
        if timeout is None:
            timeout = float(self.opts.get("shutdown_grace") or 0) + 3
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.problems.append("did not exit within %.1f s of %s; killed" % (
                    timeout, signal.Signals(sig).name))
                self.exit_code = None
                return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    # -- expected kills and restarts on the same config, data_dir and ports
    def kill9(self, timeout=10.0):
        """SIGKILL the process (an expected kill, not reported as a crash) and reap it."""
        assert self.running(), "kill9: the gateway is not running"
        self.expect_exit = True
        self.proc.kill()
        self.proc.wait(timeout)
        return self.proc.returncode

    def wait_killed(self, timeout=10.0):
        """Wait for the process to SIGKILL itself (RAINBOW_CRASH_AT fault
        injection); asserts it died of SIGKILL within timeout."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("gateway still running %.1f s after the crash point "
                                 "should have been reached" % timeout) from None
        self.expect_exit = True
        assert self.proc.returncode == -signal.SIGKILL, (
            "gateway exited with %s, want death by SIGKILL:\n%s" % (
                self.proc.returncode, self.log_tail()))
        return self.proc.returncode

    def restart(self, env=None, extra_args=(), ready_timeout=10.0):
        """Start a new process on the same config (data_dir, database, ports) once
        the previous one is gone (stop(), kill9() or wait_killed()). An earlier
        exit that was neither expected nor clean is kept as a problem."""
        if self.proc is not None:
            assert not self.running(), "restart: the previous process is still running"
            rc = self.proc.returncode
            if not self.expect_exit and rc != 0:
                self.problems.append("exit status %s before a restart" % rc)
            with contextlib.suppress(Exception):
                self.logf.close()
        self.expect_exit = False
        self.exit_code = None
        return self.start(extra_args=extra_args, ready_timeout=ready_timeout, env=env)

    # -- the SQLite database (read only)
    @property
    def db_path(self):
        return Path(self.opts.get("database") or Path(self.opts["data_dir"]) / "rainbow.db")

    def db(self, sql, args=()):
        """Rows of one query on the gateway's database, opened read-only (WAL:
        safe beside a running gateway, and after a kill)."""
        return db_query(self.db_path, sql, args)

    def db_count(self, table, device=None):
        if device is None:
            return self.db("SELECT count(*) FROM %s" % table)[0][0]
        return self.db("SELECT count(*) FROM %s WHERE device = ?" % table, (device,))[0][0]

    def db_counts(self):
        """{table: rows} for sessions, subscriptions, messages, deliveries, upstream."""
        return {t: self.db_count(t) for t in DB_TABLES}

    def teardown(self):
        """Always stop; return a list of problems (sanitizer output, crash, hang)."""
        if self.proc is None:
            return []
        died_early = self.proc.poll() is not None
        if died_early and not self.expect_exit and self.exit_code is None:
            self.problems.append("gateway died on its own with status %s" % self.proc.returncode)
        if not died_early:
            code = self.stop()
            if code not in (0, None):
                self.problems.append("exit status %s after SIGTERM" % code)
        with contextlib.suppress(Exception):
            self.logf.close()
        log = self.log_text()
        for mark in SANITIZER_MARKS:
            if mark in log:
                self.problems.append("sanitizer report (%s) in gateway log" % mark)
        return self.problems

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    # -- urls
    def ws_url(self, path="/connect/", query=None, tls=False):
        if query:
            path += ("&" if "?" in path else "?") + urllib.parse.urlencode(query)
        if tls:
            return "wss://%s:%d%s" % (self.host, int(self.opts["tls_port"]), path)
        return "ws://%s:%d%s" % (self.host, self.port, path)

    def get(self, target, **kw):
        return http_request(self.port, "GET", target, host=self.host, **kw)

    def request(self, method, target, **kw):
        return http_request(self.port, method, target, host=self.host, **kw)

    def signed(self, path, **query):
        q = dict(query)
        q.update(signed_query(self.token))
        return path + "?" + urllib.parse.urlencode(q)

    def serverinfo(self):
        r = self.get(self.signed("/serverinfo/", cluster=1))
        assert r.status == 200, (r.status, r.body)
        return json_body(r)

    sign_scheme = "v1"  # default scheme for rest()/api()

    def rest(self, method, path, query=None, body=None, sign="default", now=None, nonce=None,
             token=None, sign_query=None, sign_body=None, timeout=10.0, headers=None,
             target=None):
        """One REST call (signed with v1 unless told otherwise); HttpResponse.
        `target` sends that exact path?query instead of building one."""
        data = body_bytes(body)
        if target is None:
            target = signed_target(method, path, query, data,
                                   self.sign_scheme if sign == "default" else sign,
                                   self.token if token is None else token, now, nonce,
                                   sign_query, None if sign_body is None else body_bytes(sign_body))
        h = {"Content-Type": "application/json" if body is not None and not isinstance(
            body, (bytes, bytearray, str)) else "application/octet-stream"}
        h.update(headers or {})
        return http_request(self.port, method, target, body=data if body is not None else None,
                            headers=h, timeout=timeout, host=self.host)

    def api(self, method, path, query=None, body=None, **kw):
        """rest() + the answer must be JSON with Content-Type application/json."""
        return api_response(self.rest(method, path, query, body, **kw))

    def push(self, query, body, timeout=None, **kw):
        """POST /send/ (query: dict); HTTP timeout defaults to the call's + 10 s."""
        if timeout is None:
            try:
                timeout = float(dict(query).get("timeout", 10)) + 10
            except ValueError:
                timeout = 20
        return self.api("POST", "/send/", query, body, timeout=timeout, **kw)

    def sub(self, identity, channel, occupy=None):
        b = {"identity": identity, "channel": channel}
        if occupy is not None:
            b["occupy"] = occupy
        t0 = time.time()
        r = self.api("POST", "/sub/", body=b)
        assert (r.status, r.json) == (200, {"status": 0}), (
            "/sub/ %s at %.3f (%.3f s): HTTP %d %r" % (b, t0, time.time() - t0, r.status, r.json))

    def unsub(self, identity, channel):
        b = {"identity": identity, "channel": channel}
        r = self.api("POST", "/unsub/", body=b)
        assert (r.status, r.json) == (200, {"status": 0}), (
            "/unsub/ %s: HTTP %d %r" % (b, r.status, r.json))

    def presence(self, channel):
        """Identities in a channel (GET /presence/), checking the answer's shape."""
        r = self.api("GET", "/presence/", {"channel": channel})
        assert r.status == 200, (r.status, r.json)
        assert set(r.json) == {"status", "channel", "connections"}, r.json
        assert r.json["status"] == 0 and r.json["channel"] == channel, r.json
        conns = r.json["connections"]
        assert isinstance(conns, list), r.json
        for c in conns:
            assert isinstance(c, dict) and set(c) == {"identity", "device", "platform"}, r.json
        ids = [c["identity"] for c in conns]
        assert len(ids) == len(set(ids)), "identity listed twice: %r" % r.json
        return ids

    def channels(self):
        """GET /channels/ as {name: members}, checking the answer's shape."""
        r = self.api("GET", "/channels/")
        assert r.status == 200 and set(r.json) == {"status", "channels"}, (r.status, r.json)
        assert r.json["status"] == 0, r.json
        out = {}
        for item in r.json["channels"]:
            assert isinstance(item, list) and len(item) == 2, r.json
            assert isinstance(item[0], str) and isinstance(item[1], int), r.json
            assert item[0] not in out, "channel listed twice: %r" % r.json
            out[item[0]] = item[1]
        return out

    def metrics(self):
        """GET /metrics parsed strictly (parse_prometheus)."""
        r = self.get("/metrics")
        assert r.status == 200, (r.status, r.body[:200])
        ctype = r.headers.get("content-type", "")
        assert ctype.split(";")[0].strip() == "text/plain", ctype
        return parse_prometheus(r.body.decode())


# ------------------------------------------------------------------ websocket client

_tag_counter = [0]


def new_tag():
    _tag_counter[0] += 1
    return "t%d-%s" % (_tag_counter[0], secrets.token_hex(3))


def insecure_ssl_context():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    """A Rainbow client over websockets' asyncio client.

    Every client tags its upgrade URL with ?rbtag=<unique> so its connect-hook
    request (where the query argument arrives as a header) can be found.
    """

    def __init__(self, ws, tag, stub=None):
        self.ws = ws
        self.tag = tag
        self.stub = stub
        self.hello = None
        self._identity = None

    @classmethod
    async def open(cls, gw, path="/connect/", query=None, headers=None, subprotocols=None,
                   tls=False, compression=None, origin=None, tag=True, v2_hello=None,
                   open_timeout=10):
        q = dict(query or {})
        t = None
        if tag:
            t = new_tag()
            q["rbtag"] = t
        kw = {}
        if tls:
            kw["ssl"] = insecure_ssl_context()
        ws = await websockets.connect(
            gw.ws_url(path, q, tls=tls), subprotocols=subprotocols,
            extra_headers=headers or {}, max_size=None, ping_interval=None,
            compression=compression, origin=origin, open_timeout=open_timeout,
            close_timeout=3, **kw)
        c = cls(ws, t, gw.stub)
        if v2_hello is None:
            v2_hello = ws.subprotocol == "rainbow.v2"
        if v2_hello:
            p = await c.recv_pkt()
            assert p.cmd == HELLO, "first v2 frame is %s, not HELLO" % describe(p.raw)
            c.hello = json.loads(p.payload.decode())
            c._identity = c.hello.get("identity")
        return c

    @property
    def identity(self):
        """The identity the connect hook saw (or HELLO's for v2 without a hook)."""
        if self.stub is not None and self.tag is not None:
            try:
                return self.stub.connect_request(self.tag).header("RAINBOWCLIENTIDENTITY")
            except AssertionError:
                if self._identity:
                    return self._identity
                raise
        return self._identity

    async def send(self, data):
        await self.ws.send(data)

    async def recv(self, timeout=5.0, allow_text=False):
        try:
            m = await asyncio.wait_for(self.ws.recv(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError("no frame within %.1f s" % timeout) from None
        except websockets.exceptions.ConnectionClosed as e:
            raise AssertionError("connection closed while waiting for a frame: %s" % e) from None
        if isinstance(m, str):
            assert allow_text, "got a text frame: %r" % m[:100]
            m = m.encode()
        return m

    async def recv_pkt(self, timeout=5.0):
        data = await self.recv(timeout)
        return decode(data)

    async def expect(self, expected, timeout=5.0):
        """Receive one frame and assert its exact bytes."""
        got = await self.recv(timeout)
        assert got == expected, "got %s (%s), want %s (%s)" % (
            got.hex(), describe(got), expected.hex(), describe(expected))
        return got

    async def expect_no_frame(self, t):
        """Fail if any frame arrives, or the connection closes, within t seconds."""
        try:
            m = await asyncio.wait_for(self.ws.recv(), t)
        except asyncio.TimeoutError:
            return
        except websockets.exceptions.ConnectionClosed as e:
            raise AssertionError("connection closed (expected it to stay open): %s" % e) from None
        if isinstance(m, str):
            raise AssertionError("unexpected text frame within %.1f s: %r" % (t, m[:100]))
        raise AssertionError("unexpected frame within %.1f s: %s (%s)" % (t, m.hex()[:80], describe(m)))

    async def expect_closed(self, timeout=5.0):
        """Wait for the server to close; return the close code received."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("connection not closed within %.1f s" % timeout)
            try:
                m = await asyncio.wait_for(self.ws.recv(), left)
            except asyncio.TimeoutError:
                raise AssertionError("connection not closed within %.1f s" % timeout) from None
            except websockets.exceptions.ConnectionClosed:
                return self.ws.close_code
            raise AssertionError("frame instead of close: %r (%s)" % (
                m[:80], describe(m) if isinstance(m, bytes) else "text"))

    async def qos1(self, msgtype, msgid, payload, reply=None, timeout=5.0):
        """SEND qos1 and assert the exact ACK (default reply: the stub's echo)."""
        await self.send(send(msgtype, payload, qos=1, msgid=msgid))
        want = ack(msgid, b"re:" + _b(payload) if reply is None else reply)
        return await self.expect(want, timeout)

    async def ping_ok(self, timeout=3.0):
        """WebSocket-level liveness: a ping is answered with a pong."""
        waiter = await self.ws.ping()
        await asyncio.wait_for(waiter, timeout)

    async def close(self):
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


# ------------------------------------------------------------------ raw client

class RawClient:
    """Blocking WebSocket client written by hand: completes the handshake,
    reads frames, and never answers pings (unless told)."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, port, path="/connect/", headers=None, timeout=5.0, rcvbuf=None,
                 mss=None):
        if rcvbuf is None and mss is None:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        else:
            # before connect(), so the advertised window and segment size stay
            # small (a small MSS also keeps the peer's send buffer from
            # autotuning to megabytes on loopback)
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if rcvbuf is not None:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            if mss is not None:
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port,
                 "Upgrade: websocket", "Connection: Upgrade",
                 "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: 13"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError("connection closed during handshake: %r" % self.buf)
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        self.status_line = head.split(b"\r\n")[0].decode()
        self.headers = {}
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.status = int(self.status_line.split()[1])
        if self.status == 101:
            want = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
            assert self.headers.get("sec-websocket-accept") == want, self.headers

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout()
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError()
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self, timeout):
        """Return (opcode, payload); raises EOFError on EOF, socket.timeout on timeout."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8, deadline))[0]
        mask = self._read(4, deadline) if b1 & 0x80 else None
        data = self._read(n, deadline)
        if mask:
            data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
        return b0 & 0x0F, data

    def send_frame(self, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            head = struct.pack(">BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            head = struct.pack(">BBH", 0x80 | opcode, 0xFE, n)
        else:
            head = struct.pack(">BBQ", 0x80 | opcode, 0xFF, n)
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def close(self):
        with contextlib.suppress(OSError):
            self.sock.close()


# ------------------------------------------------------------------ collector

class Collector:
    """Reads a Client's frames in a background task, recording
    (monotonic time, bytes). With auto=True it answers pushed packets like a
    well-behaved client: SEND qos1 -> ACK(id, reply), SEND qos2 -> REC(id, reply),
    REL -> COM. `reply` is bytes or a callable(packet) -> bytes."""

    def __init__(self, client, auto=False, reply=b""):
        self.client = client
        self.auto = auto
        self.reply = reply
        self.frames = []
        self.closed = None   # the ConnectionClosed exception once closed
        self.errors = []
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self):
        ws = self.client.ws
        try:
            while True:
                m = await ws.recv()
                now = time.monotonic()
                if isinstance(m, str):
                    self.errors.append("text frame %r" % m[:80])
                    m = m.encode()
                self.frames.append((now, m))
                if self.auto:
                    await self._answer(m)
        except websockets.exceptions.ConnectionClosed as e:
            self.closed = e

    async def _answer(self, m):
        try:
            p = decode(m)
        except ValueError as e:
            self.errors.append(str(e))
            return
        reply = self.reply(p) if callable(self.reply) else self.reply
        if p.cmd == SEND and p.qos == 1:
            await self.client.send(ack(p.msgid, reply))
        elif p.cmd == SEND and p.qos == 2:
            await self.client.send(rec(p.msgid, reply))
        elif p.cmd == REL:
            await self.client.send(com(p.msgid))

    def data(self):
        return [m for _, m in self.frames]

    def packets(self):
        return [decode(m) for _, m in self.frames]

    async def wait_count(self, n, timeout=5.0):
        await await_until(lambda: len(self.frames) >= n or self.closed is not None, timeout,
                          what="%d frame(s) (have %d)" % (n, len(self.frames)))
        assert len(self.frames) >= n, "closed after %d of %d frames: %s" % (
            len(self.frames), n, self.closed)
        return self.data()

    async def stop(self):
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task
        assert not self.errors, self.errors


# ------------------------------------------------------------------ Prometheus text

PROM_TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
_PROM_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_PROM_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_PROM_VALUE = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN")
_PROM_TS = re.compile(r"-?\d+")

PromFamily = collections.namedtuple("PromFamily", "name type help samples")


def _prom_labels(s, pos, where):
    """Parse {a="x",b="y"} starting at s[pos] == '{'; return (dict, next pos)."""
    assert s[pos] == "{"
    pos += 1
    labels = {}
    while True:
        if s[pos:pos + 1] == "}":
            return labels, pos + 1
        m = _PROM_LABEL.match(s, pos)
        assert m, "%s: bad label name at column %d" % (where, pos)
        name = m.group(0)
        pos = m.end()
        assert s[pos:pos + 2] == '="', "%s: expected =\" after label %s" % (where, name)
        pos += 2
        val = []
        while True:
            assert pos < len(s), "%s: unterminated label value" % where
            ch = s[pos]
            if ch == "\\":
                nxt = s[pos + 1:pos + 2]
                assert nxt in ("\\", '"', "n"), "%s: bad escape \\%s" % (where, nxt)
                val.append("\n" if nxt == "n" else nxt)
                pos += 2
            elif ch == '"':
                pos += 1
                break
            else:
                assert ch != "\n"
                val.append(ch)
                pos += 1
        assert name not in labels, "%s: label %s twice" % (where, name)
        labels[name] = "".join(val)
        if s[pos:pos + 1] == ",":
            pos += 1
            continue
        assert s[pos:pos + 1] == "}", "%s: expected , or } at column %d" % (where, pos)


def parse_prometheus(text):
    """Strict parser for the Prometheus text exposition format (0.0.4).

    Returns {family: PromFamily(name, type, help, [(sample name, labels, value)])}.
    Raises AssertionError naming the line for: a malformed line, a sample whose
    family has no TYPE (or gets its TYPE after its samples), HELP/TYPE twice,
    a family's lines not grouped together, a duplicate sample, a counter whose
    name does not end in _total, a histogram without +Inf bucket, with
    decreasing cumulative buckets, +Inf != _count, or without _sum."""
    assert text.endswith("\n"), "exposition does not end with a newline"
    fams = {}
    helps = set()
    done = set()        # families whose group of lines is over
    current = None
    seen = set()

    def enter(fam, where):
        nonlocal current
        if fam != current:
            assert fam not in done, "%s: lines of %s are not grouped together" % (where, fam)
            if current is not None:
                done.add(current)
            current = fam

    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d %r" % (n, line[:120])
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                assert _PROM_NAME.fullmatch(name), "%s: bad metric name" % where
                enter(name, where)
                if parts[1] == "HELP":
                    assert name not in helps, "%s: second HELP" % where
                    helps.add(name)
                    if name in fams:
                        fams[name] = fams[name]._replace(help=parts[3] if len(parts) > 3 else "")
                    else:
                        fams[name] = PromFamily(name, None, parts[3] if len(parts) > 3 else "", [])
                else:
                    assert len(parts) == 4 and parts[3] in PROM_TYPES, "%s: bad TYPE" % where
                    f = fams.get(name)
                    assert f is None or f.type is None, "%s: second TYPE" % where
                    assert f is None or not f.samples, "%s: TYPE after samples" % where
                    fams[name] = PromFamily(name, parts[3], f.help if f else None, [])
            continue  # any other comment
        m = _PROM_NAME.match(line)
        assert m, "%s: bad sample name" % where
        sname, pos = m.group(0), m.end()
        labels = {}
        if line[pos:pos + 1] == "{":
            labels, pos = _prom_labels(line, pos, where)
        rest = line[pos:]
        assert rest.startswith(" "), "%s: no space before the value" % where
        fields = rest.split(" ")[1:]
        assert len(fields) in (1, 2) and _PROM_VALUE.fullmatch(fields[0]), \
            "%s: bad value" % where
        if len(fields) == 2:
            assert _PROM_TS.fullmatch(fields[1]), "%s: bad timestamp" % where
        value = float(fields[0].replace("Inf", "inf").replace("NaN", "nan"))
        fam = None
        if sname in fams and fams[sname].type is not None:
            fam = sname
        else:
            for suf, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                               ("_count", ("histogram", "summary"))):
                base = sname[:-len(suf)]
                if sname.endswith(suf) and base in fams and fams[base].type in kinds:
                    fam = base
                    break
        assert fam is not None, "%s: sample of a family without TYPE" % where
        enter(fam, where)
        key = (sname, tuple(sorted(labels.items())))
        assert key not in seen, "%s: duplicate sample" % where
        seen.add(key)
        f = fams[fam]
        if f.type == "counter":
            assert sname.endswith("_total"), "%s: counter not named *_total" % where
            assert value >= 0 and not math.isnan(value), "%s: negative counter" % where
        if f.type == "histogram" and sname == fam + "_bucket":
            assert "le" in labels, "%s: bucket without le" % where
        if f.type == "histogram":
            assert sname != fam, "%s: bare histogram sample" % where
        f.samples.append((sname, labels, value))

    for f in fams.values():
        if f.samples:
            assert f.type is not None, "family %s has no TYPE" % f.name
        if f.type != "histogram":
            continue
        groups = {}
        for sname, labels, value in f.samples:
            rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
            g = groups.setdefault(rest, {"buckets": [], "count": None, "sum": None})
            if sname.endswith("_bucket"):
                le = float(labels["le"].replace("Inf", "inf"))
                g["buckets"].append((le, value))
            elif sname.endswith("_count"):
                g["count"] = value
            else:
                g["sum"] = value
        for rest, g in groups.items():
            what = "histogram %s%s" % (f.name, dict(rest))
            b = sorted(g["buckets"])
            assert b and b[-1][0] == float("inf"), "%s: no +Inf bucket" % what
            assert len({le for le, _ in b}) == len(b), "%s: bucket le twice" % what
            for (_, c1), (_, c2) in zip(b, b[1:]):
                assert c1 <= c2, "%s: buckets not cumulative %r" % (what, b)
            assert g["count"] is not None and g["sum"] is not None, "%s: _count/_sum missing" % what
            assert b[-1][1] == g["count"], "%s: +Inf %s != _count %s" % (what, b[-1][1], g["count"])
    return fams


def metric_value(fams, name, **labels):
    """Sum of the samples named `name` whose labels include `labels`; None if none."""
    vals = [v for f in fams.values() for s, l, v in f.samples
            if s == name and all(l.get(k) == str(x) for k, x in labels.items())]
    return sum(vals) if vals else None
