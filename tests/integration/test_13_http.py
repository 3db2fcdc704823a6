"""13 HTTP: the front door and the small HTTP server, byte for byte, over raw
sockets: body framing (no request smuggling), the body deadline
(request_body_timeout) and http_idle_timeout, running out of file
descriptors (accept back-off, 503 on the reserve descriptor), WebSocket
upgrade checks before the connect hook (426 / 400), HEAD, Expect:
100-continue, HTTP/1.0 keep-alive.

Contract: issue 7 section 3, RFC 9112 6.3 (message body length), RFC 9110
9.3.2 (HEAD), 10.1.1 (Expect), RFC 6455 4.2.2 (version negotiation)."""
import base64
import json
import os
import resource
import socket
import time

import pytest

import rainbow as rb
from rainbow import Client, run


# ---------------------------------------------------------------- raw HTTP

class Resp:
    """One response as it came over the wire."""

    def __init__(self, status_line, headers, body):
        self.status_line = status_line
        self.headers = headers      # [(name, value)] in order, as sent
        self.body = body

    def header(self, name):
        vals = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(vals) <= 1, "header %s sent %d times: %r" % (name, len(vals), self.headers)
        return vals[0] if vals else None

    @property
    def json(self):
        return json.loads(self.body.decode())

    def __repr__(self):
        return "<%s %r %r>" % (self.status_line, self.headers, self.body[:200])


class Raw:
    """A blocking TCP connection that writes exact bytes and reads responses."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, timeout):
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise AssertionError("nothing received within %.1f s (buffered %r)" % (
                timeout, self.buf[:300])) from None
        if not chunk:
            raise AssertionError("connection closed; buffered %r" % self.buf[:300])
        self.buf += chunk

    def response(self, timeout=10.0, head_only=False):
        """Read one response; its body by Content-Length unless head_only."""
        while b"\r\n\r\n" not in self.buf:
            self._fill(timeout)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = []
        for line in lines[1:]:
            k, sep, v = line.partition(": ")
            assert sep, "malformed header line %r" % line
            headers.append((k, v))
        r = Resp(lines[0], headers, b"")
        if head_only:
            return r
        n = int(r.header("Content-Length") or 0)
        while len(self.buf) < n:
            self._fill(timeout)
        r.body, self.buf = self.buf[:n], self.buf[n:]
        return r

    def closed(self, timeout=10.0):
        """True once the peer closed with nothing more to read (FIN or reset)."""
        self.sock.settimeout(timeout)
        try:
            extra = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            extra = b""
        assert not extra and not self.buf, "unexpected bytes %r" % (self.buf + extra)[:300]
        return True

    def close(self):
        self.sock.close()


def exchange(gw, data, timeout=10.0):
    """Send data on a new connection; the one response, the connection closed after."""
    c = Raw(gw.port, timeout)
    try:
        c.send(data)
        r = c.response(timeout)
        assert c.closed(timeout), "connection still open after %r" % r
        return r
    finally:
        c.close()


def json_headers(body, close=True, extra=()):
    """The exact header list of a JSON answer from the gateway."""
    h = [("Content-Type", "application/json")]
    h += list(extra)
    h.append(("Content-Length", str(len(body))))
    if close:
        h.append(("Connection", "close"))
    return h


def assert_json_error(r, status_line, msg, extra=()):
    want = json.dumps({"status": 1, "msg": msg}, separators=(",", ":")).encode()
    assert r.status_line == status_line, r
    assert r.body == want, r
    assert r.headers == json_headers(want, extra=extra), r


def metric(gw, name):
    return rb.metric_value(gw.metrics(), name)


def post(path, body, *headers, version="1.1"):
    lines = ["POST %s HTTP/%s" % (path, version), "Host: x"] + list(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


OK_HEADERS = [("Content-Type", "text/plain"), ("Content-Length", "2")]


def hello_ok_headers(gw):
    r = exchange(gw, b"GET /hello/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (r.status_line, r.body) == ("HTTP/1.1 200 OK", b"ok"), r
    return r.headers[:-1]     # without Connection: close


# ---------------------------------------------------------------- 1. framing

@pytest.mark.parametrize("name,headers,body,msg", [
    ("two_lengths_differ", ["Content-Length: 5", "Content-Length: 6"], b"hello!",
     "conflicting Content-Length"),
    ("length_list_differs", ["Content-Length: 5, 6"], b"hello!", "conflicting Content-Length"),
    ("length_and_chunked", ["Content-Length: 5", "Transfer-Encoding: chunked"],
     b"0\r\n\r\n", "Content-Length with Transfer-Encoding"),
    ("chunked_and_length", ["Transfer-Encoding: chunked", "Content-Length: 5"],
     b"0\r\n\r\n", "Content-Length with Transfer-Encoding"),
    ("gzip", ["Transfer-Encoding: gzip"], b"", "unsupported Transfer-Encoding"),
    ("gzip_chunked", ["Transfer-Encoding: gzip, chunked"], b"0\r\n\r\n",
     "unsupported Transfer-Encoding"),
    ("chunked_twice", ["Transfer-Encoding: chunked", "Transfer-Encoding: chunked"],
     b"0\r\n\r\n", "unsupported Transfer-Encoding"),
    ("identity", ["Transfer-Encoding: identity"], b"", "unsupported Transfer-Encoding"),
    ("plus_sign", ["Content-Length: +5"], b"hello", "bad Content-Length"),
    ("hex", ["Content-Length: 0x5"], b"hello", "bad Content-Length"),
])
def test_ambiguous_framing_is_400_and_closed(gateway, backend, name, headers, body, msg):
    """Never guess where a body ends: a second request hidden in the first
    would otherwise be answered (request smuggling)."""
    gw = gateway()
    smuggled = b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n"
    r = exchange(gw, post("/hello/", body, *headers) + smuggled)
    assert_json_error(r, "HTTP/1.1 400 Bad Request", msg)


def test_space_before_colon_is_400(gateway, backend):
    """'Content-Length : 5' must not be read as a header named 'Content-Length '
    (then the body would be taken for the next request)."""
    gw = gateway()
    r = exchange(gw, post("/hello/", b"GET /hello/ HTTP/1.1\r\n\r\n", "Content-Length : 24"))
    assert_json_error(r, "HTTP/1.1 400 Bad Request", "malformed request head")


def test_chunked_alone_is_411(gateway, backend):
    gw = gateway()
    r = exchange(gw, post("/hello/", b"2\r\nhi\r\n0\r\n\r\n", "Transfer-Encoding: chunked"))
    assert_json_error(r, "HTTP/1.1 411 Length Required",
                      "chunked request bodies are not supported; send Content-Length")


def test_equal_content_lengths_are_one(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(post("/hello/", b"hello", "Content-Length: 5", "Content-Length: 5")
           + post("/hello/", b"hey", "Content-Length: 3, 3"))
    for _ in range(2):
        r = c.response()
        assert (r.status_line, r.headers, r.body) == ("HTTP/1.1 200 OK", OK_HEADERS, b"ok"), r
    c.close()


def test_framing_errors_on_the_api_port(gateway, backend):
    """The REST listener (api_port) runs the same server."""
    port = rb.free_port()
    gw = gateway(api_port=port)
    c = Raw(port)
    c.send(post("/hello/", b"hello!", "Content-Length: 5", "Content-Length: 6"))
    assert_json_error(c.response(), "HTTP/1.1 400 Bad Request", "conflicting Content-Length")
    assert c.closed()
    c.close()


# ---------------------------------------------------------------- 2. deadlines

def trickle(c, data, every):
    """Send data one byte at a time; stop early once the server answers or
    closes. Returns the number of bytes sent."""
    for i in range(len(data)):
        try:
            c.send(data[i:i + 1])
        except OSError:
            return i
        c.sock.settimeout(every)
        try:
            chunk = c.sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            return i + 1
        c.buf += chunk
        return i + 1
    return len(data)


def test_trickled_body_gets_408_at_the_deadline(gateway, backend):
    gw = gateway(request_body_timeout=1, http_idle_timeout=60)
    before = metric(gw, "rainbow_http_request_timeouts_total") or 0
    c = Raw(gw.port)
    body = b"x" * 40
    c.send(post("/hello/", b"", "Content-Length: %d" % len(body)))
    t0 = time.monotonic()
    sent = trickle(c, body, 0.25)      # 10 s for the whole body; the deadline is 1 s
    assert sent < len(body), "the whole trickled body was accepted"
    r = c.response()
    assert time.monotonic() - t0 >= 0.9, "408 before the deadline"
    assert_json_error(r, "HTTP/1.1 408 Request Timeout", "request body not received in time")
    assert c.closed()
    c.close()
    assert metric(gw, "rainbow_http_request_timeouts_total") == before + 1


def test_trickled_head_on_a_kept_alive_connection_gets_408(gateway, backend):
    """The door's head_timeout guards only the first head: later heads on a
    kept-alive connection are bounded by request_body_timeout too."""
    gw = gateway(request_body_timeout=1, http_idle_timeout=60)
    c = Raw(gw.port)
    c.send(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    assert c.response().body == b"ok"
    sent = trickle(c, b"GET /hello/ HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 40 + b"\r\n\r\n",
                   0.25)
    assert sent < 40
    assert_json_error(c.response(), "HTTP/1.1 408 Request Timeout",
                      "request head not received in time")
    assert c.closed()
    c.close()


def test_body_in_time_is_served(gateway, backend):
    gw = gateway(request_body_timeout=5)
    c = Raw(gw.port)
    c.send(post("/hello/", b"", "Content-Length: 4"))
    for ch in b"abcd":
        time.sleep(0.1)
        c.send(bytes([ch]))
    r = c.response()
    assert (r.status_line, r.headers, r.body) == ("HTTP/1.1 200 OK", OK_HEADERS, b"ok"), r
    c.close()


def test_http_idle_timeout_closes_kept_alive_connection(gateway, backend):
    gw = gateway(http_idle_timeout=1)
    c = Raw(gw.port)
    c.send(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.response()
    assert (r.status_line, r.body) == ("HTTP/1.1 200 OK", b"ok"), r
    t0 = time.monotonic()
    assert c.closed(timeout=15), "kept-alive connection still open 15 s later"
    assert time.monotonic() - t0 >= 0.9
    c.close()


# ---------------------------------------------------------------- 3. out of fds

def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


ACCEPT_LOG_MARKS = ("accept", "Too many open files")


def accept_log_lines(gw):
    return [l for l in gw.log_text().splitlines() if any(m in l for m in ACCEPT_LOG_MARKS)]


@pytest.mark.parametrize("listener", ["door", "api_port"])
def test_out_of_file_descriptors(gateway, backend, raise_nofile, listener):
    """With RLIMIT_NOFILE reached, the gateway pauses accepting with back-off
    instead of spinning on EMFILE (and flooding its log), answers what it can
    with 503, and serves again once descriptors are free."""
    api_port = rb.free_port() if listener == "api_port" else None
    gw = gateway(handshake_timeout=60, http_idle_timeout=60, api_port=api_port)
    port = api_port or gw.port
    pid = gw.proc.pid
    rb.wait_until(lambda: gw.log_text(), 5, what="log output")   # its start is logged
    limit = open_fds(pid) + 8
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (limit, limit))
    lines_before = len(accept_log_lines(gw))
    held = []
    try:
        # Idle connections: each one accepted holds a descriptor in the gateway
        # (a head still awaited); past the limit the rest wait in the backlog.
        for _ in range(40):
            held.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        rb.wait_until(lambda: open_fds(pid) >= limit - 1, 20, what="the gateway to run out")
        time.sleep(3)   # out of descriptors for a while: nothing may spin
        lines = accept_log_lines(gw)[lines_before:]
        assert 1 <= len(lines) < 50, "%d log lines about accept failures, e.g. %r" % (
            len(lines), lines[:3])
        # Some of the waiting clients were answered 503 on the reserve descriptor.
        answered = []
        for s in held:
            s.setblocking(False)
            try:
                data = s.recv(4096)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b"<reset>"
            answered.append(data)
        busy = json.dumps({"status": 1, "msg": "out of file descriptors"},
                          separators=(",", ":")).encode()
        want = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(busy)) + busy
        assert answered and all(a == want for a in answered), answered[:3]
    finally:
        for s in held:
            s.close()
    # Responsive again: REST and WebSocket. The gateway frees its side of the
    # closed connections when it reads their EOF, so the first tries may still
    # be shed with the 503 above.
    def hello_again():
        try:
            return hello_ok_headers(gw)
        except (AssertionError, OSError):
            return False
    rb.wait_until(hello_again, 20, interval=0.2, what="/hello/ again")

    async def ws():
        a = await Client.open(gw)
        await a.close()
    run(ws())
    fams = gw.metrics()
    errors = rb.metric_value(fams, "rainbow_accept_errors_total")
    shed = rb.metric_value(fams, "rainbow_accept_shed_total")
    assert errors is not None and errors >= 1, errors
    # Every 503 received was counted; more may have been shed afterwards
    # (connections closed while still in the backlog, /hello/ tries above).
    assert len(answered) <= shed < 200, (shed, len(answered))
    # The back-off spaced the failures out (10 ms doubling to 1 s): a spinning
    # accept loop fails hundreds of thousands of times in 3 s.
    assert errors < 200, errors


# ---------------------------------------------------------------- 4. upgrades

def upgrade(path="/connect/", version="13", key="dGhlIHNhbXBsZSBub25jZQ==", extra=()):
    lines = ["GET %s HTTP/1.1" % path, "Host: x", "Upgrade: websocket",
             "Connection: Upgrade"]
    if key is not None:
        lines.append("Sec-WebSocket-Key: " + key)
    if version is not None:
        lines.append("Sec-WebSocket-Version: " + version)
    lines += list(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize("version", ["8", "14", "", None])
def test_upgrade_with_other_version_is_426(gateway, backend, version):
    gw = gateway()
    before = metric(gw, "rainbow_bad_upgrades_total") or 0
    r = exchange(gw, upgrade(version=version))
    assert_json_error(r, "HTTP/1.1 426 Upgrade Required",
                      "unsupported Sec-WebSocket-Version (use 13)",
                      extra=[("Sec-WebSocket-Version", "13")])
    assert backend.count("/connect") == 0, "the connect hook was called"
    assert metric(gw, "rainbow_bad_upgrades_total") == before + 1


@pytest.mark.parametrize("key", [None, ""])
def test_upgrade_without_key_is_400(gateway, backend, key):
    gw = gateway()
    before = metric(gw, "rainbow_bad_upgrades_total") or 0
    r = exchange(gw, upgrade(key=key, extra=["X-DEVICEID: d1"]))
    assert_json_error(r, "HTTP/1.1 400 Bad Request", "missing Sec-WebSocket-Key")
    assert backend.count("/connect") == 0, "the connect hook was called"
    assert metric(gw, "rainbow_bad_upgrades_total") == before + 1


def test_upgrade_with_a_body_is_400(gateway, backend):
    gw = gateway()
    r = exchange(gw, upgrade(extra=["Content-Length: 4"]) + b"\x81\x80ab")
    assert_json_error(r, "HTTP/1.1 400 Bad Request", "an upgrade request has no body")
    assert backend.count("/connect") == 0


def test_good_upgrade_still_switches(gateway, backend):
    gw = gateway()
    key = base64.b64encode(os.urandom(16)).decode()
    c = Raw(gw.port)
    c.send(upgrade(key=key, extra=["Content-Length: 0"]))
    r = c.response(head_only=True)
    assert r.status_line == "HTTP/1.1 101 Switching Protocols", r
    c.close()
    backend.wait("/connect")


# ---------------------------------------------------------------- 5. HTTP gaps

def test_head_has_no_body(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(b"HEAD /hello/ HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.response(head_only=True)
    assert (r.status_line, r.headers) == ("HTTP/1.1 200 OK", OK_HEADERS), r
    # The next bytes are the GET's answer: the HEAD answer carried no body.
    r = c.response()
    assert (r.status_line, r.headers, r.body) == ("HTTP/1.1 200 OK", OK_HEADERS, b"ok"), r
    c.close()


def test_head_error_has_no_body(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(b"HEAD /nowhere/ HTTP/1.1\r\nHost: x\r\n\r\nGET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.response(head_only=True)
    assert r.status_line == "HTTP/1.1 404 Not Found", r
    assert r.header("Content-Length") == str(len(b'{"status":1,"msg":"no such endpoint"}')), r
    r = c.response()
    assert (r.status_line, r.body) == ("HTTP/1.1 200 OK", b"ok"), r
    c.close()


def test_expect_100_continue(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(post("/hello/", b"", "Content-Length: 5", "Expect: 100-continue"))
    c.sock.settimeout(5)
    while b"\r\n\r\n" not in c.buf:
        c._fill(5)
    assert c.buf == b"HTTP/1.1 100 Continue\r\n\r\n", c.buf
    c.buf = b""
    c.send(b"hello")
    r = c.response()
    assert (r.status_line, r.headers, r.body) == ("HTTP/1.1 200 OK", OK_HEADERS, b"ok"), r
    c.close()


def test_expect_100_continue_refused_body_gets_only_the_error(gateway, backend):
    gw = gateway(max_message_size=1024)
    r = exchange(gw, post("/hello/", b"", "Content-Length: 100000", "Expect: 100-continue"))
    assert_json_error(r, "HTTP/1.1 413 Payload Too Large", "request body too large")


def test_expect_100_continue_ignored_for_http_10(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(post("/hello/", b"", "Content-Length: 5", "Expect: 100-continue", version="1.0"))
    c.sock.settimeout(1)
    with pytest.raises(socket.timeout):
        c.sock.recv(100)
    c.send(b"hello")
    r = c.response()
    assert (r.status_line, r.body) == ("HTTP/1.1 200 OK", b"ok"), r
    assert r.header("Connection") == "close", r
    c.close()


def test_http10_keep_alive_is_acknowledged(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    for _ in range(2):
        c.send(b"GET /hello/ HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        r = c.response()
        assert (r.status_line, r.headers, r.body) == (
            "HTTP/1.1 200 OK", OK_HEADERS + [("Connection", "keep-alive")], b"ok"), r
    c.send(b"GET /hello/ HTTP/1.0\r\n\r\n")
    r = c.response()
    assert (r.status_line, r.headers, r.body) == (
        "HTTP/1.1 200 OK", OK_HEADERS + [("Connection", "close")], b"ok"), r
    assert c.closed()
    c.close()


def test_http11_keep_alive_has_no_connection_header(gateway, backend):
    gw = gateway()
    c = Raw(gw.port)
    c.send(b"GET /hello/ HTTP/1.1\r\nHost: x\r\n\r\n")
    r = c.response()
    assert (r.status_line, r.headers, r.body) == ("HTTP/1.1 200 OK", OK_HEADERS, b"ok"), r
    c.close()
