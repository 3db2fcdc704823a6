#!/usr/bin/python3
"""The Python stand-in for build/bench/loadgen, and the HTTP publishers of
the fan-out scenario (bench/README.md, "Peers").

bench/rpc.py, bench/fanout.py and bench/idle.py run build/bench/loadgen (the
C load generator, bench/loadgen.c) when it is built, and this script when it
is not.  For that it takes the same command line (a subset: MODE URL and the
options below) and prints the same JSON object (the fields the scenarios
read), so a scenario builds one argv and swaps the program.  It is slower:
one Python epoll loop per process, a figure it gives is marked with its CPU
(loadgen_bound when a process used >= 85% of a core).

    pyload.py rpc ws://127.0.0.1:P/connect/ [--proto rainbow|ws] [-c 50] [-q 1]
              [-s 32] [--warmup 1] [-d 5] [--sources N] [--ready-file F]
        closed loop per connection: rainbow = SEND QoS 1 (rainbow.v2) and wait
        for its ACK (a NAK counts as such); ws = a text message and wait for
        any message back (pushpin's WebSocket-over-HTTP echo).
    pyload.py fanout URL [--proto rainbow|ws] [-c N] [--warmup 0] [-d 5]
              [--sources N] [--ready-file F] [--workers 2]
        N subscribers in --workers receiver processes; a message whose payload
        starts with "t=<CLOCK_REALTIME ns>;" gives its publish->delivery
        latency (read on every connection: they are all sampled); deliveries
        are counted on all.
    pyload.py idle URL [--proto rainbow|ws] [-c N] [--sources N] [--ready-file F]
              [--workers 2]
        open, write the ready file, hold until SIGTERM/SIGINT, print the JSON.

and, not a loadgen mode:

    pyload.py publish --url http://127.0.0.1:P/path?query [--sign-token T]
              [--publishers 4] [--size 32] [--guard-pids 1,2 --guard-rss-mb 3000]
        keep-alive HTTP publishers POSTing flat out (the next request when the
        previous answer arrived) until SIGTERM/SIGINT or stdin closes; the
        body starts with "t=<ns>;".  A refusal (HTTP 429/503, or a JSON body
        with retry_after, as the gateway's {"status":1,"msg":"busy",
        "retry_after":1}) is counted and its retry_after honoured (at most
        --retry-cap s, 5).  Prints {"accepted", "refused", "errors", "series": [[t, ok,
        refused] per 0.1 s, t in CLOCK_MONOTONIC s], "guard_stopped_at",
        "cpu_s"}.

The source addresses are --source-base (127.0.0.2) and the --sources - 1
following it, as loadgen's (0: the kernel's choice, 127.0.0.1).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import (ACK, HELLO, NAK, SEND, CmdChannel, Signer, die_with_parent,  # noqa: E402
                      take_response)

SUBPROTO = b"Sec-WebSocket-Protocol: rainbow.v2\r\n"
STOP = {"sig": 0}


def on_signal(signum, frame):
    if STOP["sig"]:
        os._exit(128 + signum)
    STOP["sig"] = signum


def cpu_self():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def source_list(n, base):
    if n <= 0:
        return [None]
    b = [int(x) for x in base.split(".")]
    return ["%d.%d.%d.%d" % (b[0], b[1], b[2], b[3] + i) for i in range(n)]


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(p / 100.0 * len(sorted_vals) + 0.999999) - 1))
    return sorted_vals[k]


def hist(vals_s):
    """loadgen's latency object (ms) from a list of seconds."""
    v = sorted(vals_s)
    if not v:
        return {"count": 0}
    ms = [x * 1e3 for x in (v[0], pct(v, 50), pct(v, 90), pct(v, 99), pct(v, 99.9), v[-1])]
    return {"count": len(v), "min": ms[0], "mean": sum(v) / len(v) * 1e3, "p50": ms[1],
            "p90": ms[2], "p99": ms[3], "p999": ms[4], "max": ms[5]}


def parse_ws_url(url):
    """ws://host:port/path?query -> (host, port, path)."""
    if not url.startswith("ws://"):
        raise SystemExit("pyload: URL must be ws://...: %s" % url)
    rest = url[5:]
    hp, slash, path = rest.partition("/")
    host, _, port = hp.partition(":")
    return host, int(port or 80), "/" + path


def mask_frame(payload, op=0x2):
    """A masked client frame (the mask is zero: XOR is then the identity,
    which RFC 6455 allows and which costs no CPU here)."""
    n = len(payload)
    if n < 126:
        h = bytes((0x80 | op, 0x80 | n))
    elif n < 65536:
        h = bytes((0x80 | op, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        h = bytes((0x80 | op, 0x80 | 127)) + n.to_bytes(8, "big")
    return h + b"\0\0\0\0" + payload


def handshake(host, port, path, proto):
    key = base64.b64encode(os.urandom(16))
    return (b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s\r\n"
            % (path.encode(), host.encode(), port, key, SUBPROTO if proto == "rainbow" else b""))


def frames(buf):
    """Complete server frames at the front of bytearray buf -> ([(op, payload)], used)."""
    out = []
    pos, nb = 0, len(buf)
    while nb - pos >= 2:
        b1 = buf[pos + 1]
        n, h = b1 & 0x7F, 2
        if n == 126:
            if nb - pos < 4:
                break
            n, h = (buf[pos + 2] << 8) | buf[pos + 3], 4
        elif n == 127:
            if nb - pos < 10:
                break
            n, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
        if nb - pos < h + n:
            break
        out.append((buf[pos] & 0x0F, bytes(buf[pos + h:pos + h + n])))
        pos += h + n
    return out, pos


def frame_len(b):
    """Length of the whole frame at the front of b (complete)."""
    n, h = b[1] & 0x7F, 2
    if n == 126:
        n, h = (b[2] << 8) | b[3], 4
    elif n == 127:
        n, h = int.from_bytes(b[2:10], "big"), 10
    return h + n


def hs256_token(secret, claims):
    """An HS256 JWT (docs/protocol.md, connection tokens)."""
    def b64(b):
        return base64.urlsafe_b64encode(b).rstrip(b"=")
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret.encode(), head + b"." + body, hashlib.sha256).digest())
    return (head + b"." + body + b"." + sig).decode()


def stamp_ns(m):
    """The <ns> of a payload starting "t=<ns>;" (anywhere in the first 8
    bytes: a Rainbow SEND has a 3-byte header before it), or None."""
    i = m.find(b"t=", 0, 8)
    if i < 0:
        return None
    j = m.find(b";", i + 2, i + 24)
    if j < 0:
        return None
    try:
        return int(m[i + 2:j])
    except ValueError:
        return None


def write_ready(path, obj):
    sys.stderr.write("pyload: READY opened=%d failed=%d open_s=%.3f\n"
                     % (obj["opened"], obj["failed"], obj["open_s"]))
    sys.stderr.flush()
    if path:
        with open(path + ".tmp", "w") as f:
            f.write(json.dumps(obj) + "\n")
        os.rename(path + ".tmp", path)


# ====================================================================== opening connections

class Conn:
    __slots__ = ("sock", "fd", "state", "buf", "nbytes", "t0", "msgid", "count")

    def __init__(self, sock):
        self.sock, self.fd = sock, sock.fileno()
        self.state, self.buf, self.nbytes, self.t0, self.msgid, self.count = \
            0, bytearray(), 0, 0.0, 0, 0


def open_many(host, port, path, proto, n, srcs, concurrency=256, timeout=120.0):
    """Open n WebSockets, round-robin over the source addresses, at most
    `concurrency` attempts at a time.  A rainbow connection is open when
    its HELLO arrived, any other at its 101 answer.
    -> (conns, failures {reason: count}, seconds)."""
    todo = list(range(n))[::-1]
    active, done, fails = {}, [], {}
    ep = select.epoll()
    t0 = time.monotonic()
    deadline = t0 + timeout

    def fail(why):
        fails[why] = fails.get(why, 0) + 1
    try:
        while todo or active:
            while todo and len(active) < concurrency:
                i = todo.pop()
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                src = srcs[i % len(srcs)]
                if src:
                    try:
                        s.bind((src, 0))
                    except OSError as e:
                        fail("bind %s: %s" % (src, e.strerror))
                        s.close()
                        continue
                s.setblocking(False)
                s.connect_ex((host, port))
                c = Conn(s)
                active[c.fd] = c
                ep.register(c.fd, select.EPOLLOUT)
            if time.monotonic() > deadline or STOP["sig"]:
                fails["not open within %.0f s" % timeout] = len(active) + len(todo)
                for c in active.values():
                    c.sock.close()
                break
            for fd, ev in ep.poll(0.2):
                c = active[fd]
                why = None
                if c.state == 0:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        why = "connect: %s" % os.strerror(err)
                    else:
                        try:
                            c.sock.send(handshake(host, port, path, proto))
                            c.state = 1
                            ep.modify(fd, select.EPOLLIN)
                            continue
                        except OSError as e:
                            why = "send: %s" % e.strerror
                else:
                    try:
                        d = c.sock.recv(65536)
                    except OSError as e:
                        d, why = b"", "recv: %s" % e.strerror
                    if d:
                        c.buf += d
                        r = upgraded(c, proto)
                        if r is True:
                            ep.unregister(fd)
                            del active[fd]
                            done.append(c)
                            continue
                        if r is False:
                            continue
                        why = r
                    else:
                        why = why or ("closed during the upgrade: %r" % bytes(c.buf[:60]))
                fail(why)
                ep.unregister(fd)
                del active[fd]
                c.sock.close()
    finally:
        ep.close()
    return done, fails, time.monotonic() - t0


def upgraded(c, proto):
    """True when c.buf holds the whole upgrade (and HELLO for rainbow): the
    rest of the buffer stays in c.buf; False while incomplete; a string on
    refusal."""
    b = c.buf
    if c.state == 1:
        i = b.find(b"\r\n\r\n")
        if i < 0:
            return False
        line = bytes(b[:b.find(b"\r\n")])
        if b" 101 " not in line + b" ":
            return "upgrade refused: %s" % line[:60].decode("latin-1")
        del b[:i + 4]
        c.state = 2
        if proto != "rainbow":
            return True
    fs, used = frames(b)
    if not fs:
        return False
    op, m = fs[0]
    if not m or m[0] >> 4 != HELLO:
        return "first packet is not HELLO: %r" % m[:40]
    del b[:frame_len(b)]            # the HELLO frame; what follows stays
    return True


# ====================================================================== rpc

def mode_rpc(a):
    host, port, path = parse_ws_url(a.url)
    t_start = time.monotonic()
    conns, fails, open_s = open_many(host, port, path, a.proto, a.conns,
                                     source_list(a.sources, a.source_base), a.concurrency)
    write_ready(a.ready_file, {"opened": len(conns), "failed": a.conns - len(conns),
                               "open_s": open_s})
    out = {"mode": "rpc", "proto": a.proto, "url": a.url, "conns": a.conns, "tool": "pyload",
           "opened": len(conns), "failed": a.conns - len(conns), "fail_reasons": fails,
           "open_s": open_s}
    if not conns:
        out["error"] = "no connection opened: %s" % fails
        return out
    if a.proto == "ws":
        payload = b"x" * a.size
    else:
        payload = (b'{"p":"' + b"x" * max(0, a.size - 8) + b'"}')[:a.size] if a.size >= 8 \
            else b"x" * a.size
    ep = select.epoll()
    byfd = {}
    perf = time.monotonic
    for c in conns:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock.setblocking(False)
        byfd[c.fd] = c
        ep.register(c.fd, select.EPOLLIN)
    send_hdr = bytes([SEND << 4 | a.qos << 1]) + a.msgtype.to_bytes(2, "big")

    def send(c):
        if a.proto == "rainbow":
            c.msgid = c.msgid % 65535 + 1
            fr = mask_frame(send_hdr + c.msgid.to_bytes(2, "big") + payload, 0x2)
        else:
            fr = mask_frame(payload, 0x1)
        c.t0 = perf()
        c.sock.send(fr)

    w0 = perf() + a.warmup
    w1 = w0 + a.duration
    lat = []
    naks = 0
    sent_win = 0
    errors = {}
    total = 0
    c0 = None
    for c in conns:
        send(c)
    while not STOP["sig"]:
        now = perf()
        if c0 is None and now >= w0:
            c0 = cpu_self()
        if now >= w1:
            break
        for fd, ev in ep.poll(0.05):
            c = byfd.get(fd)
            if c is None:
                continue
            try:
                d = c.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                errors["closed by server"] = errors.get("closed by server", 0) + 1
                ep.unregister(fd)
                del byfd[fd]
                continue
            c.buf += d
            fs, used = frames(c.buf)
            del c.buf[:used]
            t1 = perf()
            answered = False
            for op, m in fs:
                if op in (0x8, 0x9, 0xA):
                    if op == 0x8:
                        errors["close frame"] = errors.get("close frame", 0) + 1
                    continue
                if a.proto == "rainbow":
                    cmd = m[0] >> 4 if m else 0
                    if cmd == ACK or cmd == 3:            # ACK, or REC at QoS 2
                        answered = True
                        if cmd == 3:
                            c.sock.send(mask_frame(bytes([4 << 4]) + m[1:3], 0x2))
                    elif cmd == NAK:
                        naks += w0 <= t1 <= w1
                        answered = True
                    elif cmd == 5:                         # COM
                        pass
                    else:
                        k = "unexpected packet %d" % cmd
                        errors[k] = errors.get(k, 0) + 1
                else:
                    answered = True
            if answered:
                total += 1
                if w0 <= t1 <= w1:
                    lat.append(t1 - c.t0)
                if w0 <= perf() <= w1:
                    sent_win += 1
                send(c)
    c1 = cpu_self()
    win = max(0.0, min(perf(), w1) - w0)
    for c in byfd.values():
        c.sock.close()
    wcpu = c1 - (c0 if c0 is not None else c1)
    out.update({"warmup_s": a.warmup, "window_s": win, "qos": a.qos, "size": len(payload),
                "sent": sent_win, "round_trips": len(lat), "naks": naks, "timeouts": 0,
                "rate": len(lat) / win if win > 0 else 0.0, "latency_ms": hist(lat),
                "errors": errors, "totals": {"round_trips": total},
                "cpu_s": cpu_self(), "cpu_window_s": wcpu,
                "cpu_window_cores": wcpu / win if win > 0 else 0.0,
                "loadgen_bound": bool(win > 0 and wcpu / win >= 0.85),
                "wall_s": perf() - t_start})
    return out


# ====================================================================== fanout (subscribers)

def recv_worker():
    """--role recv: {"url","proto","n","sources","concurrency"} on stdin;
    opens; answers {"opened","fails","open_s"}; then commands "mark" (read
    all waiting, answer {"t","n","cpu"}), "report" ({"lat": [s...],
    "zero", "closed", "n"}), "quit"."""
    raise_nofile()

    cmds = CmdChannel()
    reply, read_cmd = cmds.reply, cmds.read

    req = read_cmd(True)
    if req.get("cmd") == "quit":
        return 0
    host, port, path = parse_ws_url(req["url"])
    conns, fails, open_s = open_many(host, port, path, req["proto"], req["n"], req["sources"],
                                     req["concurrency"])
    reply({"opened": len(conns), "fails": fails, "open_s": open_s})
    byfd = {c.fd: c for c in conns}
    ep = select.epoll()
    ep.register(0, select.EPOLLIN)
    for c in conns:
        c.sock.setblocking(False)
        ep.register(c.fd, select.EPOLLIN)
    st = {"n": 0, "closed": 0, "lat": [], "rec": False}
    rbuf = bytearray(1 << 18)
    mv = memoryview(rbuf)

    def feed(c):
        fs, used = frames(c.buf)
        del c.buf[:used]
        if not fs:
            return
        now = time.time_ns()
        for op, m in fs:
            if op in (1, 2) and m:
                st["n"] += 1
                c.count += 1
                ns = stamp_ns(m)
                if ns is not None and st["rec"]:
                    st["lat"].append((now - ns) / 1e9)

    def pull(c):
        try:
            n = c.sock.recv_into(rbuf)
        except BlockingIOError:
            return False
        except OSError:
            n = 0
        if n == 0:
            st["closed"] += 1
            ep.unregister(c.fd)
            del byfd[c.fd]
            return False
        c.buf += mv[:n]
        feed(c)
        return True

    for c in conns:
        feed(c)
    while True:
        for fd, ev in ep.poll():
            if fd != 0:
                c = byfd.get(fd)
                if c is not None:
                    pull(c)
                continue
            cmd = read_cmd(False)
            while cmd is not None:
                if cmd["cmd"] == "quit":
                    for c in byfd.values():
                        c.sock.close()
                    return 0
                if cmd["cmd"] == "mark":
                    for c in list(byfd.values()):
                        while pull(c):
                            pass
                    st["rec"] = bool(cmd.get("record"))
                    reply({"t": time.monotonic(), "n": st["n"], "cpu": cpu_self()})
                elif cmd["cmd"] == "report":
                    counts = [c.count for c in conns]
                    reply({"lat": [round(x, 7) for x in st["lat"]], "n": st["n"],
                           "closed": st["closed"], "zero": sum(1 for x in counts if x == 0),
                           "min": min(counts, default=0), "max": max(counts, default=0)})
                    st["lat"] = []
                cmd = read_cmd(False)


class Worker:
    def __init__(self, role, req):
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", role],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  preexec_fn=die_with_parent)
        self.inbuf = b""
        self.send(req)

    def send(self, o):
        self.p.stdin.write((json.dumps(o) + "\n").encode())
        self.p.stdin.flush()

    def reply(self, timeout=180):
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.inbuf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("worker process: no answer within %.0f s" % timeout)
            try:
                r = select.select([fd], [], [], left)[0]
            except InterruptedError:
                continue
            if not r:
                continue
            d = os.read(fd, 1 << 22)
            if not d:
                raise RuntimeError("worker process exited (%s)" % self.p.poll())
            self.inbuf += d
        line, _, self.inbuf = self.inbuf.partition(b"\n")
        return json.loads(line)

    def stop(self):
        try:
            self.send({"cmd": "quit"})
            self.p.stdin.close()
            self.p.wait(10)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            self.p.kill()
            self.p.wait(5)


def start_workers(a, role):
    srcs = source_list(a.sources, a.source_base)
    nw = max(1, min(a.workers, a.conns))
    per = [a.conns // nw + (1 if i < a.conns % nw else 0) for i in range(nw)]
    ws = []
    for i, n in enumerate(per):
        mine = srcs[i::nw] or srcs
        ws.append(Worker(role, {"url": a.url, "proto": a.proto, "n": n, "sources": mine,
                                "concurrency": max(16, a.concurrency // nw)}))
    return ws


def collect_open(ws):
    opened, fails = 0, {}
    for w in ws:
        r = w.reply(180)
        opened += r["opened"]
        for k, v in r["fails"].items():
            fails[k] = fails.get(k, 0) + v
    return opened, fails


def sleep_until(t):
    while not STOP["sig"]:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def mode_fanout(a):
    raise_nofile()
    t_start = time.monotonic()
    ws = start_workers(a, "recv")
    out = {"mode": "fanout", "proto": a.proto, "url": a.url, "conns": a.conns, "tool": "pyload"}
    try:
        opened, fails = collect_open(ws)
        open_s = time.monotonic() - t_start
        out.update({"opened": opened, "failed": a.conns - opened, "fail_reasons": fails,
                    "open_s": open_s})
        write_ready(a.ready_file, {"opened": opened, "failed": a.conns - opened,
                                   "open_s": open_s})
        sleep_until(time.monotonic() + a.warmup)
        for w in ws:
            w.send({"cmd": "mark", "record": True})
        m0 = [w.reply(60) for w in ws]
        sleep_until(time.monotonic() + (a.duration if a.duration > 0 else 1e9))
        for w in ws:
            w.send({"cmd": "mark", "record": False})
        m1 = [w.reply(60) for w in ws]
        for w in ws:
            w.send({"cmd": "report"})
        reps = [w.reply(60) for w in ws]
    finally:
        for w in ws:
            w.stop()
    win = max(x["t"] for x in m1) - min(x["t"] for x in m0)
    deliveries = 0.0
    wcpu = []
    for x0, x1 in zip(m0, m1):
        sp = x1["t"] - x0["t"]
        deliveries += (x1["n"] - x0["n"]) * (win / sp if sp > 0 else 1.0)
        wcpu.append(x1["cpu"] - x0["cpu"])
    lat = [x for r in reps for x in r["lat"]]
    out.update({"warmup_s": a.warmup, "window_s": win, "deliveries": int(deliveries),
                "rate": deliveries / win if win > 0 else 0.0, "stamped": len(lat),
                "per_conn_min": min((r["min"] for r in reps), default=0),
                "per_conn_max": max((r["max"] for r in reps), default=0),
                "closed": sum(r["closed"] for r in reps),
                "zero_conns": sum(r["zero"] for r in reps), "latency_ms": hist(lat),
                "cpu_s": cpu_self(), "cpu_window_s": sum(wcpu),
                "cpu_window_cores": sum(wcpu) / win if win > 0 else 0.0,
                "cpu_window_max_process_cores": max(wcpu) / win if win > 0 and wcpu else 0.0,
                "loadgen_bound": bool(win > 0 and wcpu and max(wcpu) / win >= 0.85),
                "processes": len(ws), "wall_s": time.monotonic() - t_start})
    return out


# ====================================================================== idle

def idle_worker():
    """--role idle: {"url","proto","n","sources","concurrency"} on stdin;
    opens; answers {"opened","fails","open_s","cpu"}; holds (answering
    pings) until stdin closes; answers {"closed"}."""
    raise_nofile()
    req = json.loads(sys.stdin.readline())
    host, port, path = parse_ws_url(req["url"])
    conns, fails, open_s = open_many(host, port, path, req["proto"], req["n"], req["sources"],
                                     req["concurrency"])
    sys.stdout.write(json.dumps({"opened": len(conns), "fails": fails, "open_s": open_s,
                                 "cpu": cpu_self()}) + "\n")
    sys.stdout.flush()
    ep = select.epoll()
    byfd = {c.fd: c for c in conns}
    for c in conns:
        ep.register(c.fd, select.EPOLLIN)
    ep.register(0, select.EPOLLIN)
    closed = 0
    while True:
        for fd, ev in ep.poll():
            if fd == 0:
                d = os.read(0, 4096)
                if not d or b"quit" in d:
                    for c in byfd.values():
                        c.sock.close()
                    sys.stdout.write(json.dumps({"closed": closed, "cpu": cpu_self()}) + "\n")
                    sys.stdout.flush()
                    return 0
                continue
            c = byfd.get(fd)
            try:
                d = c.sock.recv(65536)
            except OSError:
                d = b""
            if not d:
                closed += 1
                ep.unregister(fd)
                del byfd[fd]
            else:                       # answer pings; ignore the rest
                c.buf += d
                fs, used = frames(c.buf)
                del c.buf[:used]
                for op, m in fs:
                    if op == 0x9:
                        c.sock.send(mask_frame(m, 0xA))


def mode_idle(a):
    raise_nofile()
    t_start = time.monotonic()
    ws = start_workers(a, "idle")
    out = {"mode": "idle", "proto": a.proto, "url": a.url, "conns": a.conns, "tool": "pyload"}
    closed = 0
    cpu = 0.0
    try:
        opened, fails = collect_open(ws)
        open_s = time.monotonic() - t_start
        out.update({"opened": opened, "failed": a.conns - opened, "fail_reasons": fails,
                    "open_s": open_s, "open_rate": opened / open_s if open_s > 0 else 0.0,
                    "processes": len(ws)})
        write_ready(a.ready_file, {"opened": opened, "failed": a.conns - opened,
                                   "open_s": open_s})
        sleep_until(time.monotonic() + (a.duration if a.duration > 0 else 1e9))
    finally:
        for w in ws:
            try:
                w.p.stdin.close()
                r = w.reply(30)
                closed += r.get("closed", 0)
                cpu += r.get("cpu", 0.0)
            except (OSError, RuntimeError, ValueError):
                pass
            w.stop()
    out.update({"closed": closed, "cpu_s": cpu + cpu_self(),
                "wall_s": time.monotonic() - t_start})
    return out


# ====================================================================== publishers

def proc_rss_mb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


def classify(st, body, gateway):
    """-> ("ok" | "refused" | "error", retry_after seconds).  The gateway
    answers JSON with "status" (HTTP 200 in compat mode even when it refuses:
    {"status":1,"msg":"busy","retry_after":1}); a refusal is a 429/503 or a
    body with retry_after; nchan answers 201/202."""
    j = None
    if gateway or st in (429, 503):
        try:
            j = json.loads(body)
        except ValueError:
            j = None
    ra = 0.01
    if isinstance(j, dict) and isinstance(j.get("retry_after"), (int, float)):
        return "refused", float(j["retry_after"])
    if st in (429, 503):
        return "refused", ra
    if not 200 <= st < 300:
        return "error", ra
    if gateway and not (isinstance(j, dict) and j.get("status") == 0):
        return "error", ra
    return "ok", ra


def mode_publish(a):
    """Flat-out HTTP publishers until a signal or stdin closes."""
    if not a.url.startswith("http://"):
        raise SystemExit("pyload publish: --url http://host:port/path")
    hp, _, path = a.url[7:].partition("/")
    host, _, port = hp.partition(":")
    port = int(port or 80)
    path = "/" + path
    signer = Signer(a.sign_token) if a.sign_token else None
    head_tpl = "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/octet-stream" \
        "\r\nContent-Length: "
    cache = {"q": None, "head": b""}
    pad = max(0, a.size - 22)

    def request():
        body = b"t=%d;" % time.time_ns() + b"x" * pad
        if signer is not None:
            q = signer.query()
            if q is not cache["q"]:
                cache["q"] = q
                sep = "&" if "?" in path else "?"
                cache["head"] = (head_tpl % (path + sep + q[1:], host, port)).encode()
        elif cache["q"] is None:
            cache["q"] = 1
            cache["head"] = (head_tpl % (path, host, port)).encode()
        return cache["head"] + b"%d\r\n\r\n" % len(body) + body

    class P:
        __slots__ = ("sock", "buf", "wait_until", "busy")
    ep = select.epoll()
    pubs = {}
    for _ in range(a.publishers):
        s = socket.create_connection((host, port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        p = P()
        p.sock, p.buf, p.wait_until, p.busy = s, bytearray(), 0.0, False
        pubs[s.fileno()] = p
        ep.register(s.fileno(), select.EPOLLIN)
    ep.register(0, select.EPOLLIN)
    perf = time.monotonic
    t_start = perf()
    accepted = refused = 0
    errors = {}
    series = {}                 # 0.1 s bucket -> [ok, refused]
    guard = [int(x) for x in a.guard_pids.split(",") if x] if a.guard_pids else []
    guard_stop = None
    next_guard = t_start
    c0 = cpu_self()
    while not STOP["sig"]:
        now = perf()
        if guard and now >= next_guard:
            next_guard = now + 0.25
            if guard_stop is None and sum(proc_rss_mb(x) for x in guard) > a.guard_rss_mb:
                guard_stop = now
        for p in pubs.values():
            if not p.busy and guard_stop is None and now >= p.wait_until:
                p.sock.send(request())
                p.busy = True
        timeout = 0.005 if any(not p.busy for p in pubs.values()) else 0.1
        try:
            evs = ep.poll(timeout)
        except InterruptedError:
            continue
        quit_ = False
        for fd, ev in evs:
            if fd == 0:
                if not os.read(0, 4096):
                    quit_ = True
                    ep.unregister(0)
                continue
            p = pubs[fd]
            try:
                d = p.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                d = b""
            if not d:
                errors["publisher connection closed"] = errors.get(
                    "publisher connection closed", 0) + 1
                ep.unregister(fd)
                p.busy = True
                continue
            p.buf += d
            got = take_response(p.buf)
            if got is None:
                continue
            st, body, close = got
            t1 = perf()
            b = series.setdefault(int(t1 * 10), [0, 0])
            verdict, ra = classify(st, body, signer is not None)
            if verdict == "ok":
                accepted += 1
                b[0] += 1
                p.wait_until = 0.0
            elif verdict == "refused":
                refused += 1
                b[1] += 1
                p.wait_until = t1 + min(max(ra, 0.001), a.retry_cap)
            else:
                k = "HTTP %d %s" % (st, body[:60].decode("latin-1"))
                errors[k] = errors.get(k, 0) + 1
                p.wait_until = t1 + 0.01
            p.busy = False
        if quit_:
            break
    for p in pubs.values():
        p.sock.close()
    return {"mode": "publish", "accepted": accepted, "refused": refused, "errors": errors,
            "series": [[k / 10.0, v[0], v[1]] for k, v in sorted(series.items())],
            "guard_stopped_at": guard_stop, "cpu_s": cpu_self() - c0,
            "wall_s": perf() - t_start}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", nargs="?", choices=("rpc", "fanout", "idle", "publish"))
    ap.add_argument("url", nargs="?")
    ap.add_argument("--role", default="main", choices=("main", "recv", "idle"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--url", dest="url_opt", help="publish: http://host:port/path?query")
    ap.add_argument("--proto", default="rainbow", choices=("rainbow", "ws", "ws-text"))
    ap.add_argument("-c", "--conns", type=int, default=100)
    ap.add_argument("--sources", type=int, default=0)
    ap.add_argument("--source-base", default="127.0.0.2")
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--warmup", type=float, default=None)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("-q", "--qos", type=int, default=1)
    ap.add_argument("-s", "--size", type=int, default=32)
    ap.add_argument("--msgtype", type=int, default=1)
    ap.add_argument("--ready-file")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--progress", type=float, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--sign-token", default="")
    ap.add_argument("--guard-pids", default="")
    ap.add_argument("--guard-rss-mb", type=float, default=3000)
    ap.add_argument("--retry-cap", type=float, default=5.0,
                    help="publish: wait at most this long on a retry_after (5 s)")
    a = ap.parse_args()
    if a.role == "recv":
        return recv_worker()
    if a.role == "idle":
        return idle_worker()
    if a.proto == "ws-text":
        a.proto = "ws"
    if a.warmup is None:
        a.warmup = 1.0 if a.mode == "rpc" else 0.0
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if a.mode == "publish":
        a.url = a.url_opt or a.url
        out = mode_publish(a)
    elif not a.url:
        ap.error("a URL is required")
    elif a.mode == "rpc":
        out = mode_rpc(a)
    elif a.mode == "fanout":
        out = mode_fanout(a)
    elif a.mode == "idle":
        out = mode_idle(a)
    else:
        ap.error("a mode is required")
    print(json.dumps(out), flush=True)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    sys.exit(main())
