"""Helpers for the Rainbow integration tests (imported by conftest and tests).

Written from PROTOCOL.md alone, independently of the gateway's C code:
    - packet codec (A.2, B.1) and v1 signatures (A.6),
    - Stub: client of tests/fixtures/stub_backend.py's control API,
    - Gateway: one rainbow-server process with a generated config,
    - Client: an asyncio websockets client speaking Rainbow packets,
    - RawClient: a hand-rolled blocking WebSocket client (never answers pings),
    - bounded waiting helpers (no fixed sleeps where a condition can be polled).
"""
import asyncio
import base64
import collections
import contextlib
import hashlib
import http.client
import json
import os
import re
import secrets
import signal
import socket
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
    assert q["nonce"], req.target
    assert q["signature"] == sign_v1(token, q["timestamp"], q["nonce"]), \
        "bad signature on %s %s" % (req.method, req.target)


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


class Gateway:
    """One rainbow-server process on free ports with a generated config."""

    def __init__(self, tmp_path, stub, name="gw", **overrides):
        self.tmp_path = Path(tmp_path)
        self.stub = stub
        self.name = name
        self.port = free_port()
        self.opts = {
            "port": self.port,
            "bind": "127.0.0.1",
            "data_dir": str(self.tmp_path / ("data-" + name)),
            "log_level": "info",
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
    def start(self, extra_args=(), ready_timeout=10.0):
        binary = rainbow_bin()
        if not os.access(binary, os.X_OK):
            raise AssertionError("gateway binary %s is missing or not executable "
                                 "(set RAINBOW_BIN or run make)" % binary)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([binary, "-f", str(self.conf)] + list(extra_args),
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=str(self.tmp_path),
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
                r = http_request(self.port, "GET", "/hello/", timeout=1)
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
            return "wss://127.0.0.1:%d%s" % (int(self.opts["tls_port"]), path)
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def get(self, target, **kw):
        return http_request(self.port, "GET", target, **kw)

    def request(self, method, target, **kw):
        return http_request(self.port, method, target, **kw)

    def signed(self, path, **query):
        q = dict(query)
        q.update(signed_query(self.token))
        return path + "?" + urllib.parse.urlencode(q)

    def serverinfo(self):
        r = self.get(self.signed("/serverinfo/", cluster=1))
        assert r.status == 200, (r.status, r.body)
        return json_body(r)


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

    def __init__(self, port, path="/connect/", headers=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
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
