#!/usr/bin/python3
"""Durable QoS 1 / QoS 2 push throughput of one rainbow-server (bench/README.md).

Starts build/rainbow-server with a generated config (a free port on 127.0.0.1,
its own temporary data_dir, heartbeat 0, the chosen durability), connects ONE
device-session client (subprotocol rainbow.v2, ?X-DEVICEID=bench1) that answers
every pushed SEND at once (QoS 1: ACK; QoS 2: REC, then COM on REL), and drives
    POST /send/?device=bench1&msgtype=1&qos=Q&timeout=30   (100-byte body)
from C concurrent keep-alive HTTP/1.1 connections (raw asyncio, v1
signatures, Content-Length, JSON answers parsed) for a warm-up and then a measured window.

Reported (human lines, then one `RESULT key=value ...` line for bench/run):
  - delivered msgs/s: answers with "connections": 1 completed inside the window;
  - p50 / p99 latency of those /send/ calls (write of the request to the whole
    answer read);
  - rows left in the gateway's database (messages, deliveries) after the load
    stopped, the client answered everything and the gateway exited on SIGTERM
    (read with sqlite3 read-only); should be ~0;
  - CPU: this (client) process and the gateway, per second of wall time over
    the window (1.0 = one core busy), and the gateway's busiest threads.

It measures, it never fails on timing: the exit status is non-zero only when
the benchmark could not run (gateway did not start, client could not connect).
Everything listens on / connects to 127.0.0.1 only and stops by itself.

Python stdlib only: the HTTP connections and the WebSocket client are small
asyncio Protocols written here.  A first version on asyncio streams and the
websockets library needed about 55 us of client CPU per QoS 2 message and
used ~90% of a core; these Protocols need about 32-42 us, which matters on this
2-core machine where the client shares the CPU with the gateway.  Usage:
    bench/durable.py --qos 1 --durability normal [--conns 64] [--duration 8]
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchtoken"
DEVICE = "bench1"
BODY = bytes((i * 7 + 1) & 0xFF for i in range(100))   # 100-byte payload
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Packet first bytes (PROTOCOL.md A.2): cmd << 4 | dup << 3 | qos << 1.
SEND, ACK, REC, REL, COM, HELLO = 1, 2, 3, 4, 5, 7
ACK0, REC0, COM0 = bytes([ACK << 4]), bytes([REC << 4]), bytes([COM << 4])


def log(*a):
    print(*a, flush=True)


# ------------------------------------------------------------------ helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sign_v1(token, timestamp, nonce):
    """A.6: sha1_hex(concat(sorted([token, timestamp, nonce])))."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()


class Signer:
    """Signed query suffix, recomputed once per second (v1 has no replay check;
    the timestamp just has to be inside signature_window)."""

    def __init__(self, token):
        self.token = token
        self.sec = None
        self.suffix = ""

    def query(self):
        sec = int(time.time())
        if sec != self.sec:
            ts, nonce = str(sec), secrets.token_hex(8)
            self.suffix = "&timestamp=%s&nonce=%s&signature=%s" % (
                ts, nonce, sign_v1(self.token, ts, nonce))
            self.sec = sec
        return self.suffix


def proc_cpu(pid):
    """utime + stime of a process (all its threads), seconds; None if gone."""
    try:
        f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def thread_cpu(pid):
    """{tid: cpu seconds} for each thread of pid."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for t in tids:
        try:
            f = Path("/proc/%d/task/%s/stat" % (pid, t)).read_text().rsplit(")", 1)[1].split()
            out[int(t)] = (int(f[11]) + int(f[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            pass
    return out


def machine_cpu():
    """(busy, steal, total) jiffies of all CPUs from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)          # idle + iowait
    steal = f[7] if len(f) > 7 else 0
    total = sum(f[:8])
    return total - idle - steal, steal, total


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def die_with_parent():
    """preexec_fn: the gateway gets SIGKILL if this script dies."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


# ------------------------------------------------------------------ gateway

class Gateway:
    def __init__(self, binary, tmp, durability, inflight, log_level):
        self.binary = binary
        self.tmp = Path(tmp)
        self.port = free_port()
        self.data_dir = self.tmp / "data"
        self.db_path = self.data_dir / "rainbow.db"
        self.log_path = self.tmp / "gateway.log"
        self.conf = self.tmp / "bench.ini"
        opts = {
            "port": self.port, "bind": "127.0.0.1", "api_port": 0,
            "data_dir": self.data_dir, "log_level": log_level, "log_file": "",
            "security_token": TOKEN, "api_signature": "v1",
            "connect_url": "", "forward_url": "", "close_url": "",
            "heartbeat": 0, "durability": durability,
            "max_inflight_messages": inflight, "retry_interval": 5,
            "shutdown_grace": 2, "max_connections": 1000,
        }
        self.conf.write_text("; generated by bench/durable.py\n[main]\n" + "".join(
            "%s = %s\n" % (k, v) for k, v in opts.items()))
        self.proc = None

    def start(self, timeout=10.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", str(self.conf)], cwd=str(self.tmp),
                                     stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gateway exited with %s during start:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/hello/" % self.port,
                                            timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("gateway not ready within %.0f s:\n%s" % (timeout, self.log_tail()))

    def metrics(self):
        """{sample line name: value} of GET /metrics (best effort)."""
        out = {}
        try:
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.port,
                                        timeout=3) as r:
                for line in r.read().decode().splitlines():
                    if line and not line.startswith("#"):
                        k, _, v = line.rpartition(" ")
                        out[k] = float(v)
        except (OSError, ValueError):
            pass
        return out

    def stop(self, timeout=15.0):
        """SIGTERM and wait; SIGKILL after timeout. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                log("  WARNING: gateway did not exit within %.0f s of SIGTERM; killed" % timeout)
        self.logf.close()
        return self.proc.returncode

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, n=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def db_counts(self):
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=5)
        try:
            return {t: con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
                    for t in ("sessions", "messages", "deliveries", "upstream")}
        finally:
            con.close()


# ------------------------------------------------------------------ session client

class Device(asyncio.Protocol):
    """One rainbow.v2 session client answering every push at once (QoS 1:
    ACK; QoS 2: REC, then COM on REL).  A minimal hand-rolled RFC 6455 client
    on an asyncio Protocol: every frame that arrived in one read is answered
    with one write, which keeps the Python side cheap."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self):
        self.sends = 0
        self.rels = 0
        self.other = 0
        self.last_frame = time.monotonic()
        self.closed = None
        self.buf = bytearray()
        self.upgraded = False
        self.frag = None
        self.mask = os.urandom(4)
        self.hello = None
        self.closing = False

    async def open(self, port, timeout=10):
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.key = base64.b64encode(os.urandom(16))
        self.transport, _ = await loop.create_connection(lambda: self, "127.0.0.1", port)
        self.transport.get_extra_info("socket").setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.write(
            b"GET /connect/?X-DEVICEID=" + DEVICE.encode() + b" HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: rainbow.v2\r\n\r\n" % (port, self.key))
        await asyncio.wait_for(self.ready, timeout)

    def frame(self, payload):
        """A masked binary frame (payloads here are < 126 bytes)."""
        k = self.mask
        return bytes((0x82, 0x80 | len(payload))) + k + bytes(
            b ^ k[i & 3] for i, b in enumerate(payload))

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        if self.closed is None and not self.closing:
            self.closed = "connection lost (%s)" % (exc or "EOF")
        if not self.ready.done():
            self.ready.set_exception(RuntimeError("closed during handshake: %r"
                                                  % bytes(self.buf[:200])))

    def data_received(self, data):
        self.buf += data
        if not self.upgraded:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            del self.buf[:i + 4]
            hdrs = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                hdrs[k.strip().lower()] = v.strip()
            accept = base64.b64encode(hashlib.sha1(self.key + self.GUID).digest()).decode()
            if head[0].split()[1:2] != ["101"] or hdrs.get("sec-websocket-accept") != accept:
                self.ready.set_exception(RuntimeError("upgrade refused: %r" % head))
                self.transport.close()
                return
            if hdrs.get("sec-websocket-protocol") != "rainbow.v2":
                self.ready.set_exception(RuntimeError("server did not pick rainbow.v2: %r"
                                                      % hdrs.get("sec-websocket-protocol")))
                self.transport.close()
                return
            self.upgraded = True
        out = []
        buf = self.buf
        pos = 0
        n_buf = len(buf)
        while n_buf - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n = b1 & 0x7F
            h = 2
            if n == 126:
                if n_buf - pos < 4:
                    break
                n = (buf[pos + 2] << 8) | buf[pos + 3]
                h = 4
            elif n == 127:
                if n_buf - pos < 10:
                    break
                n = int.from_bytes(buf[pos + 2:pos + 10], "big")
                h = 10
            if b1 & 0x80:
                raise RuntimeError("server sent a masked frame")
            if n_buf - pos < h + n:
                break
            m = bytes(buf[pos + h:pos + h + n])
            pos += h + n
            op = b0 & 0x0F
            if op == 0x0 or (op in (0x1, 0x2) and not b0 & 0x80):   # fragments
                self.frag = (self.frag or b"") + m
                if not b0 & 0x80:
                    continue
                m, self.frag = self.frag, None
            elif op == 0x8:                                          # close
                if not self.closing:
                    self.closed = "close frame %r" % m[:60]
                self.transport.write(self.frame(m[:2]).replace(b"\x82", b"\x88", 1))
                self.transport.close()
                return
            elif op == 0x9:                                          # ping -> pong
                out.append(self.frame(m).replace(b"\x82", b"\x8a", 1))
                continue
            elif op == 0xA:
                continue
            self.handle(m, out)
        del buf[:pos]
        if out:
            self.last_frame = time.monotonic()
            self.transport.write(b"".join(out))

    def handle(self, m, out):
        b0 = m[0]
        cmd = b0 >> 4
        if cmd == SEND:
            self.sends += 1
            q = (b0 >> 1) & 3
            if q == 1:
                out.append(self.frame(ACK0 + m[3:5]))
            elif q == 2:
                out.append(self.frame(REC0 + m[3:5]))
        elif cmd == REL:
            self.rels += 1
            out.append(self.frame(COM0 + m[1:3]))
        elif cmd == HELLO and self.hello is None:
            self.hello = json.loads(m[1:].decode())
            self.ready.set_result(True)
        else:
            self.other += 1

    async def close(self):
        self.closing = True
        if not self.transport.is_closing():
            self.transport.write(self.frame(b"\x03\xe8").replace(b"\x82", b"\x88", 1))
            await asyncio.sleep(0.1)
            self.transport.close()


# ------------------------------------------------------------------ HTTP load

class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one /send/ at a time, the next
    written as soon as the previous answer is complete."""

    def __init__(self, load):
        self.load = load
        self.buf = bytearray()
        self.t0 = 0.0
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send_next()

    def send_next(self):
        load = self.load
        if load.stop:
            self.transport.close()
            return
        self.t0 = time.perf_counter()
        self.transport.write(load.request())
        load.sent += 1

    def connection_lost(self, exc):
        if not self.load.stop:
            self.load.error("connection lost: %s" % (exc or "closed by server"))
        if not self.done.done():
            self.done.set_result(True)

    def data_received(self, data):
        self.buf += data
        i = self.buf.find(b"\r\n\r\n")
        if i < 0:
            return
        lines = bytes(self.buf[:i]).split(b"\r\n")
        n = 0
        close = False
        for h in lines[1:]:
            k, _, v = h.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                n = int(v)
            elif k == b"connection" and b"close" in v.lower():
                close = True
        if len(self.buf) < i + 4 + n:
            return
        t1 = time.perf_counter()
        body = bytes(self.buf[i + 4:i + 4 + n])
        del self.buf[:i + 4 + n]
        if self.buf:
            self.load.error("unexpected bytes after an answer")
            self.buf.clear()
        try:
            status = int(lines[0].split()[1])
        except (IndexError, ValueError):
            status = 0
        self.load.answer(status, body, t1 - self.t0, t1)
        if close:
            self.transport.close()
        else:
            self.send_next()


class Load:
    def __init__(self, port, qos, conns, warmup, duration, timeout):
        self.port = port
        self.qos = qos
        self.conns = conns
        self.warmup = warmup
        self.duration = duration
        self.signer = Signer(TOKEN)
        self.path = "/send/?device=%s&msgtype=1&qos=%d&timeout=%d" % (DEVICE, qos, timeout)
        self.head_tpl = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         "Content-Type: application/octet-stream\r\n"
                         "Content-Length: %d\r\n\r\n")
        self.req_sec = None
        self.req = b""
        self.stop = False
        self.lat = []             # seconds, calls completed inside the window
        self.delivered = 0        # "connections": 1, completed inside the window
        self.total_delivered = 0  # including warm-up and the drain
        self.answers = {}         # (HTTP status, connections, failed, pending, msg) -> count
        self.errors = {}          # text -> count
        self.sent = 0
        self.w0 = self.w1 = float("inf")

    def request(self):
        """The whole request, re-signed once per second (same bytes otherwise)."""
        q = self.signer.query()
        if q is not self.req_sec:
            self.req_sec = q
            self.req = (self.head_tpl % (self.path + q, self.port, len(BODY))).encode() + BODY
        return self.req

    def error(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    def answer(self, status, body, lat, t1):
        try:
            j = json.loads(body)
        except ValueError:
            j = {}
        if not isinstance(j, dict):
            j = {}
        key = (status, j.get("connections"), j.get("failed"), j.get("pending"), j.get("msg"))
        self.answers[key] = self.answers.get(key, 0) + 1
        if status == 200 and j.get("connections") == 1:
            self.total_delivered += 1
            if self.w0 <= t1 <= self.w1:
                self.delivered += 1
                self.lat.append(lat)

    async def run(self, gw_pid):
        loop = asyncio.get_running_loop()
        perf = time.perf_counter
        start = perf()
        self.w0 = start + self.warmup
        self.w1 = self.w0 + self.duration
        conns = []
        for _ in range(self.conns):
            try:
                _, p = await loop.create_connection(lambda: HttpConn(self), "127.0.0.1",
                                                    self.port)
                conns.append(p)
            except OSError as e:
                self.error("connect: %s" % e)
        await asyncio.sleep(max(0.0, self.w0 - perf()))
        m0 = machine_cpu()
        c0, g0, th0, t0 = self_cpu(), proc_cpu(gw_pid), thread_cpu(gw_pid), perf()
        await asyncio.sleep(max(0.0, self.w1 - perf()))
        c1, g1, th1, t1 = self_cpu(), proc_cpu(gw_pid), thread_cpu(gw_pid), perf()
        m1 = machine_cpu()
        self.stop = True
        wall = t1 - t0
        self.wall = wall
        self.client_cpu = (c1 - c0) / wall
        self.gw_cpu = (g1 - g0) / wall if g0 is not None and g1 is not None else float("nan")
        self.machine = self.steal = float("nan")
        if m0 and m1 and m1[2] > m0[2]:
            ncpu = os.cpu_count() or 1
            self.machine = (m1[0] - m0[0]) / (m1[2] - m0[2]) * ncpu
            self.steal = (m1[1] - m0[1]) / (m1[2] - m0[2]) * ncpu
        self.threads = sorted(((th1[t] - th0.get(t, 0.0)) / wall, t) for t in th1)[::-1]
        # Let in-flight calls finish (each ends within its /send/ timeout).
        done, pending = await asyncio.wait([c.done for c in conns], timeout=40)
        for c in conns:
            c.transport.abort()
        self.unfinished = len(pending)


# ------------------------------------------------------------------ main

async def bench(args, gw):
    dev = Device()
    try:
        await dev.open(gw.port)
    except asyncio.TimeoutError:
        raise RuntimeError("session client: no HELLO within 10 s") from None
    if dev.hello.get("session_present") is None:
        log("  note: HELLO has no session_present: %r" % dev.hello)
    load = Load(gw.port, args.qos, args.conns, args.warmup, args.duration, args.timeout)
    await load.run(gw.proc.pid)
    # Wait until the device has been quiet for 0.5 s (its last COMs/ACKs are
    # written), at most 5 s.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and time.monotonic() - dev.last_frame < 0.5:
        await asyncio.sleep(0.1)
    m = gw.metrics()
    await dev.close()
    return dev, load, m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qos", type=int, choices=(1, 2), required=True)
    ap.add_argument("--durability", choices=("off", "normal", "full"), required=True)
    ap.add_argument("--conns", type=int, default=64, help="concurrent HTTP connections (64)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (1)")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds (8)")
    ap.add_argument("--timeout", type=int, default=30, help="/send/ timeout argument (30)")
    ap.add_argument("--inflight", type=int, default=5000, help="max_inflight_messages (5000)")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--bin", default=os.environ.get("RAINBOW_BIN")
                    or str(ROOT / "build" / "rainbow-server"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (log, database)")
    args = ap.parse_args()

    scen = "QoS %d durability=%s" % (args.qos, args.durability)
    log("== durable %s: %d HTTP conns, %g s warm-up + %g s measured, 100-byte body"
        % (scen, args.conns, args.warmup, args.duration))
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        log("  ERROR: %s missing (run make)" % args.bin)
        return 2
    tmp = tempfile.mkdtemp(prefix="rainbow-bench-")
    gw = Gateway(args.bin, tmp, args.durability, args.inflight, args.log_level)
    try:
        gw.start()
        dev, load, m = asyncio.run(bench(args, gw))
        t_stop = time.monotonic()
        rc = gw.stop()
        stop_s = time.monotonic() - t_stop
        rows = gw.db_counts()
        wal = gw.db_path.with_name(gw.db_path.name + "-wal")
        db_mb = (gw.db_path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 1e6

        rate = load.delivered / load.wall
        lat = sorted(load.lat)
        p50, p99 = percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3
        left = rows["messages"] + rows["deliveries"]

        log("  delivered      %.0f msgs/s (%d in %.2f s; %d delivered in all, %d sends)"
            % (rate, load.delivered, load.wall, load.total_delivered, load.sent))
        log("  /send/ latency p50 %.2f ms, p99 %.2f ms, max %.2f ms"
            % (p50, p99, (lat[-1] * 1e3) if lat else float("nan")))
        for (st, conns, failed, pend, msg), n in sorted(load.answers.items(),
                                                        key=lambda kv: -kv[1]):
            log("  answers        %7d x HTTP %d connections=%s failed=%s pending=%s%s"
                % (n, st, conns, failed, pend, (" msg=%r" % msg) if msg else ""))
        for e, n in load.errors.items():
            log("  client errors  %7d x %s" % (n, e))
        if load.unfinished:
            log("  WARNING: %d HTTP calls still unanswered 40 s after the load stopped"
                % load.unfinished)
        log("  device         %d SENDs, %d RELs, %d other frames received%s"
            % (dev.sends, dev.rels, dev.other,
               "" if dev.closed is None else "; closed by server: %s" % dev.closed))
        dup = m.get('rainbow_retransmissions_total{cmd="SEND"}', 0) + \
            m.get('rainbow_retransmissions_total{cmd="REL"}', 0)
        log("  gateway        exit %s after SIGTERM (%.1f s); retransmissions %d; "
            "deliveries in flight at end %s"
            % (rc, stop_s, dup, m.get("rainbow_deliveries_in_flight", "?")))
        log("  rows left      messages=%d deliveries=%d upstream=%d sessions=%d "
            "(db+wal %.1f MB)" % (rows["messages"], rows["deliveries"], rows["upstream"],
                                  rows["sessions"], db_mb))
        glog = [l for l in gw.log_text().splitlines() if l.strip()]
        log("  gateway log    %d line(s) at log_level %s%s" % (
            len(glog), args.log_level, "".join("\n    | " + l[:200] for l in glog[:5])))
        top = ", ".join("tid %d%s %.2f" % (t, " (main)" if t == gw.proc.pid else "", c)
                        for c, t in load.threads[:3])
        log("  CPU (cores)    client %.2f, gateway %.2f [%s]; whole machine busy %.2f of %d"
            "%s" % (load.client_cpu, load.gw_cpu, top, load.machine, os.cpu_count(),
                    (", steal %.2f" % load.steal) if load.steal >= 0.01 else ""))
        other = load.machine - load.client_cpu - load.gw_cpu
        if other >= 0.15:
            log("  WARNING: other processes used %.2f cores during the window: the machine "
                "was not quiet, this figure is low" % other)
        client_bound = load.client_cpu >= 0.85
        if client_bound:
            log("  NOTE: the Python client used %.0f%% of a core: it is (close to) the "
                "bottleneck, the gateway figure is a lower bound" % (load.client_cpu * 100))
        log("RESULT qos=%d durability=%s conns=%d msgs_s=%.0f p50_ms=%.2f p99_ms=%.2f "
            "left=%d client_cpu=%.2f gw_cpu=%.2f machine_cpu=%.2f other_cpu=%.2f client_bound=%d "
            "exit=%s" % (args.qos, args.durability, args.conns, rate, p50, p99, left,
                         load.client_cpu, load.gw_cpu, load.machine, other, int(client_bound), rc))
        return 0
    except Exception as e:
        log("  ERROR: %s: %s" % (type(e).__name__, e))
        log("  gateway log tail:\n%s" % gw.log_tail())
        log("RESULT qos=%d durability=%s conns=%d msgs_s=nan p50_ms=nan p99_ms=nan "
            "left=nan client_cpu=nan gw_cpu=nan machine_cpu=nan other_cpu=nan client_bound=0 "
            "exit=error"
            % (args.qos, args.durability, args.conns))
        return 1
    finally:
        if gw.proc is not None and gw.proc.poll() is None:
            gw.proc.kill()
            gw.proc.wait(5)
        if args.keep:
            log("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
