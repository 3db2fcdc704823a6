#!/usr/bin/python3
"""QoS 0 channel fan-out: one gateway against a LAN cluster of three (bench/README.md,
"Cluster fan-out").

Two configurations, one after the other, each with 3,000 rainbow.v2 subscribers
of one channel:
  - single:  one gateway (cluster off) holding all 3,000 connections;
  - cluster: three gateways with the same cluster_name / cluster_secret, 1,000
    connections on each, every node listing the two others with link "up" in
    GET /serverinfo/?cluster=1 before anything starts.
Every connection is subscribed with a v1-signed POST /sub/ sent to the node
that holds it (bench/benchlib.py has no backend for the connect hook's
RAINBOWCLIENTCHANNEL).  Pushes are v1-signed
    POST /send/?channel=bench&msgtype=1&qos=0      (16-byte body: send time, seq)
always to node 1.

Where the gateways run: as root, each in a network namespace of its own
(rbb<pid>n<i>, eth0 198.18.1.(10+i)/24 with `brd +`, a veth to a bridge
rbb<pid>br holding 198.18.1.254/24 in the root namespace, where the clients
run), so nodes find each other by subnet broadcast as separate machines
would.  198.18.1.0/24, not the 198.18.0.0/24 of tests/integration/netns.py,
so that a test run and a benchmark on the same machine do not fight over a
route.  Not root, or namespaces cannot be made: three gateways on 127.0.0.1
joined by cluster_seeds (each node its own UDP port); the output says which.

Phases per configuration:
  1. latency (QoS 0, --lat-duration s each, 5; 2 with BENCH_QUICK=1): pushes
     at --pace/s (10) to the channel of all 3,000, then at --small-pace/s
     (100) to a channel of the probes only (--probes per node, 30, spread
     evenly over each node's connections; they read the send time in every
     push):
     publish->delivery p50/p99 for subscribers on node 1 (local) and on nodes
     2 and 3 (one hop).  On the big channel a copy's latency is mostly its
     place in the fan-out (one gateway writes ~100k copies/s, so 3,000 take
     ~30 ms; at 50 pushes/s it would be overloaded); the small channel shows
     what the hop itself adds.
  2. throughput: --publishers (8) concurrent publishers on keep-alive HTTP
     connections to node 1, each sending its next push once the previous one
     was answered AND seen by one "sentinel" subscriber on every node (the
     sentinels are in this process): at most 8 pushes in the gateways at a
     time, enough to keep them busy.  QoS 0 /send/ answers before the
     fan-out, so publishing as fast as the gateway answers (--mode flood)
     only fills its queues (see bench/README.md).  After --warmup s (1),
     deliveries received by all subscribers are counted for --duration s (8;
     2 with BENCH_QUICK=1): each client process reads everything waiting on
     its sockets at both ends of the window.
CPU (from /proc): each gateway (and its busiest threads, and the kernel's
share), each client process (receivers; this process: publishers and
sentinels) and the whole machine, during the throughput
window; gateway CPU per 1,000 deliveries; peak RSS of each gateway.

The subscribers live in --workers (2) processes, each one epoll loop that
only counts received bytes (every push is one 21-byte frame) but on its
probes, with SO_RCVLOWAT so that a socket is read once 8 pushes wait on it
(probes: at once): 3,000 Python clients then take ~0.15 cores instead of
~0.8 (one read per push each).
Whether the client was the limit anyway is printed (CLIENT-BOUND when a
client process used >= 85% of a core; MACHINE SATURATED with the clients'
share when all cores were busy).

Prints the phases, a table, and one line per figure:
    BENCH cluster_fanout_qos0 gateway=<cluster deliveries/s> peer=<single> ratio=<c/s> unit=deliveries/s
    BENCH cluster_hop_latency_p50 gateway=<hop ms> peer=<local ms> ratio=.. unit=ms (lower is better)
    ...
then `RESULT key=value ...` for bench/run.  It never fails on timing: the
exit status is non-zero only when something could not run.  Everything it
starts stops by itself (gateways and client processes get SIGKILL if this
script dies; namespaces are removed on exit and on SIGTERM, and leftovers of
dead runs at start).

Python 3 standard library only.  BENCH_QUICK=1 shortens every phase.
    bench/cluster_fanout.py [--configs single,cluster] [--duration 8] [--keep] [--loopback]
"""
import argparse
import asyncio
import base64
import http.client
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import benchlib
from benchlib import (TOKEN, Signer, WsClient, default_bin, die_with_parent, log, machine_cores,
                      machine_cpu, percentile, proc_cpu, read_metrics, self_cpu, stop_process,
                      take_response, thread_cpu)

CHANNEL = "bench"                   # every subscriber
SMALL_CHANNEL = "bench-small"       # the probes only
MSGTYPE = 1
PAY = struct.Struct(">dQ")          # payload: time.monotonic() at send, sequence number
FRAME_LEN = 2 + 3 + PAY.size        # server frame: 2-byte header, SEND QoS 0 (0x10, msgtype)
SEND0 = 0x10
PACED = 1 << 40                     # sequence numbers of the latency phase, big channel
SMALL = 2 << 40                     # ... and small channel
SECRET = "bench-cluster-secret-0123456789abcdef"
NODES = 3


# ====================================================================== LAN

SUBNET = "198.18.1"
BRIDGE_ADDR = SUBNET + ".254"
PREFIX = "rbb"
_NAME = re.compile(r"^%s(\d+)(br|p|n\d+|v\d+)$" % PREFIX)


def ip(*args, check=True):
    r = subprocess.run(("ip",) + tuple(str(a) for a in args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(map(str, args)), r.stderr.strip()))
    return r


def _links():
    out = ip("-o", "link", "show", check=False).stdout
    return [l.split(":", 2)[1].strip().split("@")[0] for l in out.splitlines() if l.count(":") >= 2]


def _namespaces():
    return [l.split()[0] for l in ip("netns", "list", check=False).stdout.splitlines() if l.strip()]


def _alive(pid):
    """The run that made rbb<pid>... is still going (a recycled pid running
    something other than python is no owner)."""
    if pid == os.getpid():
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"python" in f.read()
    except OSError:
        return False


def lan_remove(pred):
    """Delete rbb<pid>... namespaces (after SIGKILL of what runs in them),
    veths, then bridges, for the pids satisfying pred."""
    mine = [ns for ns in _namespaces() if _NAME.match(ns) and pred(int(_NAME.match(ns).group(1)))]
    for ns in mine:
        pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if os.path.exists("/proc/%d" % p)]
            time.sleep(0.02)
    for name in sorted(_links(), key=lambda n: n.endswith("br")):
        m = _NAME.match(name)
        if m and pred(int(m.group(1))):
            ip("link", "del", name, check=False)
    for ns in mine:
        ip("netns", "del", ns, check=False)


def netns_unavailable():
    """Why namespaces cannot be used here, or None."""
    if os.geteuid() != 0:
        return "not root"
    if not shutil.which("ip"):
        return "no iproute2 (ip)"
    lan_remove(lambda pid: not _alive(pid))        # leftovers of dead runs
    out = ip("-o", "-4", "addr", "show", check=False).stdout
    if " %s." % SUBNET in out:
        return "%s.0/24 is already in use here (another benchmark run?)" % SUBNET
    probe = "%s%dp" % (PREFIX, os.getpid())
    try:
        ip("netns", "add", probe)
        ip("link", "add", probe, "type", "bridge")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return "cannot create network namespaces or bridges: %s" % e
    finally:
        ip("link", "del", probe, check=False)
        ip("netns", "del", probe, check=False)
    return None


class Lan:
    """A bridge in the root namespace (198.18.1.254/24) and one namespace per
    host, each with lo and eth0 (198.18.1.(10+i)/24, a veth to the bridge)."""

    def __init__(self, n):
        self.prefix = "%s%d" % (PREFIX, os.getpid())
        self.bridge = self.prefix + "br"
        self.hosts = []
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", BRIDGE_ADDR + "/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for i in range(1, n + 1):
                ns, veth, addr = "%sn%d" % (self.prefix, i), "%sv%d" % (self.prefix, i), \
                    "%s.%d" % (SUBNET, 10 + i)
                ip("netns", "add", ns)
                ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                ip("link", "set", veth, "master", self.bridge, "up")
                ip("-n", ns, "addr", "add", addr + "/24", "brd", "+", "dev", "eth0")
                ip("-n", ns, "link", "set", "eth0", "up")
                ip("-n", ns, "link", "set", "lo", "up")
                self.hosts.append((addr, ("ip", "netns", "exec", ns)))
        except BaseException:
            self.close()
            raise

    def close(self):
        me = os.getpid()
        lan_remove(lambda pid: pid == me)
        left = [n for n in _links() + _namespaces()
                if _NAME.match(n) and int(_NAME.match(n).group(1)) == me]
        if left:
            log("  WARNING: could not remove %s" % left)


# ====================================================================== gateways

class Node(benchlib.Gateway):
    """rainbow-server on host:port (run through prefix, e.g. ip netns exec),
    in tmp/<name>/ with its own data_dir and log."""

    def __init__(self, binary, tmp, name, host, port, bind, opts, prefix=()):
        d = Path(tmp) / name
        d.mkdir(parents=True, exist_ok=True)
        super().__init__(binary, d, "gw.ini")
        self.name, self.host, self.port, self.prefix = name, host, port, tuple(prefix)
        o = {"port": port, "bind": bind, "data_dir": d / "data", "log_level": "warn",
             "log_file": "", "security_token": TOKEN, "api_signature": "v1",
             "connect_url": "", "forward_url": "", "close_url": "", "heartbeat": 0,
             "durability": "off", "shutdown_grace": 2, "max_connections": 10000}
        o.update(opts)
        self.write_conf(o, "bench/cluster_fanout.py")

    def url(self, path):
        return "http://%s:%d%s" % (self.host, self.port, path)

    def start(self, timeout=10.0):
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(list(self.prefix) + [self.binary, "-f", str(self.conf)],
                                     cwd=str(self.tmp), stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s during start:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            try:
                with urllib.request.urlopen(self.url("/hello/"), timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready within %.0f s:\n%s" % (self.name, timeout,
                                                                self.log_tail()))

    def get_json(self, path, timeout=5):
        with urllib.request.urlopen(self.url(path), timeout=timeout) as r:
            return json.loads(r.read())

    def metrics(self):
        return read_metrics(self.url(""))

    def links_up(self):
        """The peers listed with link "up" in /serverinfo/?cluster=1."""
        try:
            j = self.get_json("/serverinfo/?cluster=1", 2)
        except (OSError, ValueError):
            return []
        return [p.get("addr") for p in j.get("peers") or [] if p.get("link") == "up"]


def proc_user_sys(pid):
    """(user, system) CPU seconds of a process, or (None, None)."""
    try:
        f = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
        return int(f[11]) / benchlib.CLK_TCK, int(f[12]) / benchlib.CLK_TCK
    except (OSError, IndexError, ValueError):
        return None, None


def proc_rss_mb(pid):
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return float("nan")


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ====================================================================== client processes

class Conn:
    __slots__ = ("sock", "fd", "group", "probe", "state", "buf", "identity", "nbytes", "pbuf")

    def __init__(self, sock, group, probe):
        self.sock, self.fd, self.group, self.probe = sock, sock.fileno(), group, probe
        self.state, self.buf, self.identity, self.nbytes = 0, bytearray(), None, 0
        self.pbuf = bytearray()


def _hello(c):
    """Parse the upgrade answer and the HELLO frame out of c.buf; True when
    done (the rest of the buffer is the first pushes)."""
    i = c.buf.find(b"\r\n\r\n")
    if i < 0:
        return False
    status = bytes(c.buf[:c.buf.find(b"\r\n")])
    if b" 101 " not in status + b" ":
        raise RuntimeError("upgrade refused: %r" % status[:80])
    b = c.buf
    p = i + 4
    if len(b) - p < 2:
        return False
    n, h = b[p + 1] & 0x7F, 2
    if n == 126:
        if len(b) - p < 4:
            return False
        n, h = int.from_bytes(b[p + 2:p + 4], "big"), 4
    if len(b) - p < h + n:
        return False
    m = bytes(b[p + h:p + h + n])
    if not m or m[0] >> 4 != 7:
        raise RuntimeError("first packet is not HELLO: %r" % m[:40])
    c.identity = json.loads(m[1:].decode())["identity"]
    rest = bytes(b[p + h + n:])
    c.buf = bytearray()
    c.nbytes = len(rest)
    c.pbuf = bytearray(rest)
    return True


def connect_all(targets, timeout=30.0, batch=128):
    """[(group, host, port, probe)] -> [Conn] with the WebSocket open (HELLO
    read), opened in that order, batch at a time."""
    pending = list(reversed(targets))
    done, active = [], {}
    ep = select.epoll()
    deadline = time.monotonic() + timeout
    try:
        while pending or active:
            while pending and len(active) < batch:
                g, host, port, probe = pending.pop()
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex((host, port))
                c = Conn(s, g, probe)
                c.buf = bytearray()
                c.identity = (host, port)
                active[c.fd] = c
                ep.register(c.fd, select.EPOLLOUT)
            if time.monotonic() > deadline:
                raise RuntimeError("%d connections not open within %.0f s"
                                   % (len(active) + len(pending), timeout))
            for fd, ev in ep.poll(0.5):
                c = active[fd]
                if c.state == 0:
                    err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                    if err:
                        raise RuntimeError("connect to %s:%d: %s" % (c.identity[0], c.identity[1],
                                                                     os.strerror(err)))
                    key = base64.b64encode(os.urandom(16))
                    c.sock.send(b"GET /connect/ HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                                b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                                b"Sec-WebSocket-Version: 13\r\n"
                                b"Sec-WebSocket-Protocol: rainbow.v2\r\n\r\n"
                                % (c.identity[0].encode(), c.identity[1], key))
                    c.state = 1
                    ep.modify(fd, select.EPOLLIN)
                    continue
                data = c.sock.recv(65536)
                if not data:
                    raise RuntimeError("closed during the upgrade: %r" % bytes(c.buf[:80]))
                c.buf += data
                if _hello(c):
                    ep.unregister(fd)
                    del active[fd]
                    c.state = 2
                    done.append(c)
    finally:
        ep.close()
    return done


def worker_main():
    """--role clients: read {"targets": [[group, host, port, probe], ...],
    "lowat": frames} on stdin, open them, answer {"identities": [[group,
    identity, probe], ...]}, then receive until "quit" (or EOF).  Counts bytes
    per group (node) and per connection; on a probe connection (no
    SO_RCVLOWAT) reads every frame and records the latency of the latency
    phases' pushes.  Commands, one JSON line each:
      "mark":   read everything waiting on every socket, answer {"t", "bytes"}
                (bytes received per group so far): the throughput window's ends;
      "report": answer {"lat": {"big"|"small": [[s, ...] per group]}, "counts",
                "zero", "bytes"} and start new latency lists;
      "quit"."""

    cmds = benchlib.CmdChannel()
    reply, read_cmd = cmds.reply, cmds.read

    req = read_cmd(True)
    if req.get("cmd") == "quit":
        return 0
    lowat = int(req.get("lowat", 0))
    try:
        conns = connect_all([tuple(t) for t in req["targets"]])
    except Exception as e:
        reply({"error": "%s: %s" % (type(e).__name__, e)})
        return 1
    reply({"identities": [[c.group, c.identity, c.probe] for c in conns]})

    byfd = {c.fd: c for c in conns}
    gbytes = [0] * NODES
    for c in conns:
        gbytes[c.group] += c.nbytes

    def new_lat():
        return {"big": [[] for _ in range(NODES)], "small": [[] for _ in range(NODES)]}
    lat = new_lat()
    counts = {"closed": 0, "other_frames": 0, "recvs": 0}
    ep = select.epoll()
    ep.register(0, select.EPOLLIN)
    for c in conns:
        if lowat > 1 and not c.probe:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, lowat * FRAME_LEN)
        ep.register(c.fd, select.EPOLLIN)
    buf = bytearray(1 << 18)
    mv = memoryview(buf)
    mono = time.monotonic
    unpack = PAY.unpack_from

    def feed(c, now):
        b = c.pbuf
        pos, nb = 0, len(b)
        while nb - pos >= 2:
            n, h = b[pos + 1] & 0x7F, 2
            if n == 126:
                if nb - pos < 4:
                    break
                n, h = (b[pos + 2] << 8) | b[pos + 3], 4
            elif n == 127:
                if nb - pos < 10:
                    break
                n, h = int.from_bytes(b[pos + 2:pos + 10], "big"), 10
            if nb - pos < h + n:
                break
            if (b[pos] & 0x0F) == 2 and n == FRAME_LEN - 2 and b[pos + h] == SEND0:
                ts, seq = unpack(b, pos + h + 3)
                if seq >= SMALL:
                    lat["small"][c.group].append(round(now - ts, 6))
                elif seq >= PACED:
                    lat["big"][c.group].append(round(now - ts, 6))
            else:
                counts["other_frames"] += 1
            pos += h + n
        del b[:pos]

    def pull(c, now):
        """One read; False when the socket had nothing (or is gone)."""
        try:
            n = c.sock.recv_into(buf)
        except BlockingIOError:
            return False
        except OSError:
            n = 0
        if n == 0:
            counts["closed"] += 1
            ep.unregister(c.fd)
            del byfd[c.fd]
            return False
        gbytes[c.group] += n
        c.nbytes += n
        counts["recvs"] += 1
        if c.probe:
            c.pbuf += mv[:n]
            feed(c, mono())
        return True

    for c in conns:
        if c.probe and c.pbuf:
            feed(c, mono())
    while True:
        evs = ep.poll()
        now = mono()
        for fd, ev in evs:
            if fd != 0:
                c = byfd.get(fd)
                if c is not None:
                    pull(c, now)
                continue
            cmd = read_cmd(False)
            while cmd is not None:
                if cmd["cmd"] == "quit":
                    for c in byfd.values():
                        c.sock.close()
                    return 0
                if cmd["cmd"] == "mark":
                    for c in list(byfd.values()):
                        while pull(c, mono()):
                            pass
                    reply({"t": mono(), "bytes": gbytes})
                elif cmd["cmd"] == "report":
                    reply({"lat": lat, "counts": counts, "bytes": gbytes,
                           "zero": sum(1 for c in conns if c.nbytes == 0)})
                    lat = new_lat()
                cmd = read_cmd(False)


class Worker:
    """One client process (this script, --role clients)."""

    def __init__(self, name, targets, lowat=0):
        self.name = name
        self.targets = targets
        self.p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--role", "clients"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  preexec_fn=die_with_parent)
        self.pid = self.p.pid
        self.inbuf = b""
        self.send({"targets": targets, "lowat": lowat})

    def send(self, obj):
        self.p.stdin.write((json.dumps(obj) + "\n").encode())
        self.p.stdin.flush()

    def reply(self, timeout):
        fd = self.p.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.inbuf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError("client process %s: no answer within %.0f s"
                                   % (self.name, timeout))
            d = os.read(fd, 1 << 20)
            if not d:
                raise RuntimeError("client process %s exited (%s)" % (self.name, self.p.poll()))
            self.inbuf += d
        line, _, self.inbuf = self.inbuf.partition(b"\n")
        j = json.loads(line)
        if "error" in j:
            raise RuntimeError("client process %s: %s" % (self.name, j["error"]))
        return j

    def report(self):
        self.send({"cmd": "report"})
        return self.reply(20)

    def mark(self):
        self.send({"cmd": "mark"})
        return self.reply(20)

    def stop(self):
        try:
            self.send({"cmd": "quit"})
        except OSError:
            pass
        stop_process(self.p, 5)


# ============================================================ this process: HTTP, sentinels

class HttpConn(asyncio.Protocol):
    """A keep-alive HTTP/1.1 connection, one request at a time."""

    def __init__(self):
        self.buf = bytearray()
        self.fut = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, data):
        self.fut = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.fut

    def connection_lost(self, exc):
        if self.fut is not None and not self.fut.done():
            self.fut.set_exception(ConnectionError("connection lost: %s" % (exc or "EOF")))

    def data_received(self, data):
        self.buf += data
        got = take_response(self.buf)
        if got is None:
            return
        status, body, _ = got
        if self.fut is not None and not self.fut.done():
            self.fut.set_result((status, body))


class Sentinel(WsClient):
    """A subscriber in this process: tells the publishers when a push arrived."""

    def __init__(self, host, group, book):
        super().__init__()
        self.host, self.group, self.book = host, group, book
        self.got = 0

    async def _open(self, loop, port):
        await loop.create_connection(lambda: self, self.host, port)
        self.transport.write(
            b"GET /connect/ HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: rainbow.v2\r\n\r\n" % (self.host.encode(), port, self.key))
        await self.ready

    def packets(self, pkts):
        book = self.book
        for m in pkts:
            if len(m) == 3 + PAY.size and m[0] == SEND0:
                self.got += 1
                book.seen(PAY.unpack_from(m, 3)[1], time.monotonic())


class Book:
    """Which pushes every sentinel has seen."""

    def __init__(self, n):
        self.n = n
        self.wait = {}          # seq -> [sentinels still to see it, future]
        self.in_window = 0      # sentinel deliveries inside the measured window
        self.w0 = self.w1 = float("inf")

    def expect(self, seq):
        f = asyncio.get_running_loop().create_future()
        self.wait[seq] = [self.n, f]
        return f

    def seen(self, seq, now):
        if self.w0 <= now <= self.w1:
            self.in_window += 1
        w = self.wait.get(seq)
        if w is not None:
            w[0] -= 1
            if w[0] <= 0:
                del self.wait[seq]
                if not w[1].done():
                    w[1].set_result(now)


def post_many(node, path, bodies):
    """POST each body to node (keep-alive, v1-signed); -> [(status, json)]."""
    signer = Signer(TOKEN)
    out = []
    conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
    try:
        for b in bodies:
            conn.request("POST", path + "?" + signer.query()[1:], body=b,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            data = r.read()
            try:
                out.append((r.status, json.loads(data)))
            except ValueError:
                out.append((r.status, {"raw": data[:80].decode("latin-1")}))
    finally:
        conn.close()
    return out


def subscribe(node_ids, channel):
    """[(node, [identity, ...])]: /sub/ each identity to channel on its node,
    4 connections per node in parallel; -> number of failures and one example."""
    jobs = []
    for node, ids in node_ids:
        for k in range(4):
            part = ids[k::4]
            if part:
                jobs.append((node, part))
    res = [None] * len(jobs)

    def run(i, node, part):
        try:
            res[i] = post_many(node, "/sub/", [json.dumps({"identity": x, "channel": channel})
                                               for x in part])
        except Exception as e:
            res[i] = [(0, {"error": str(e)})] * len(part)
    ts = [threading.Thread(target=run, args=(i,) + j) for i, j in enumerate(jobs)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    bad = [r for rr in res for r in rr if not (r[0] == 200 and r[1].get("status") == 0)]
    return len(bad), (bad[0] if bad else None)


def presence_count(node, channel):
    signer = Signer(TOKEN)
    try:
        j = node.get_json("/presence/?channel=%s%s" % (channel, signer.query()), 10)
        return len(j.get("connections") or [])
    except (OSError, ValueError):
        return -1


# ====================================================================== one configuration

class Run:
    """One configuration: its gateways, clients, phases and figures."""

    def __init__(self, args, name, nodes):
        self.args, self.name, self.nodes = args, name, nodes
        self.clustered = len(nodes) > 1
        self.r = {}

    # ---- clients ----------------------------------------------------------

    def plan(self):
        """Where each subscriber goes: per worker a list of (group, host, port,
        probe), and the sentinels, one per node (three on the one node when
        single).  A node's connections are dealt to the workers in turn and
        its probes are spread evenly among them, so that they sit all over
        the node's fan-out order, whatever that order is."""
        a = self.args
        per_node = a.subs // NODES
        if self.clustered:
            homes = [[(g, self.nodes[g])] for g in range(NODES)]
        else:
            homes = [[(0, self.nodes[0])] * NODES]
        work, sentinels = [[] for _ in range(a.workers)], []
        k = 0
        for home in homes:
            g, node = home[0]
            n = (per_node - 1) * len(home)
            nprobes = a.probes * len(home)
            step = n / nprobes
            probe_at = {int(step * i + step / 2) for i in range(nprobes)}
            sentinels += [(g, node.host, node.port)] * len(home)
            for i in range(n):
                work[k % a.workers].append((g, node.host, node.port, i in probe_at))
                k += 1
        return work, sentinels

    async def open_clients(self):
        work, sent = self.plan()
        t0 = time.monotonic()
        self.workers = [Worker("clients%d" % i, t, self.args.rx_lowat)
                        for i, t in enumerate(work)]
        self.book = Book(len(sent))
        self.sentinels = []
        for g, host, port in sent:
            s = Sentinel(host, g, self.book)
            await s.open(port, 15)
            self.sentinels.append(s)
        ids, probe_ids = {}, {}
        for w in self.workers:
            j = await asyncio.to_thread(w.reply, 60)
            for g, ident, probe in j["identities"]:
                ids.setdefault(g, []).append(ident)
                if probe:
                    probe_ids.setdefault(g, []).append(ident)
        for s in self.sentinels:
            ids.setdefault(s.group, []).append(s.hello["identity"])
        n = sum(len(v) for v in ids.values())
        log("  %d subscribers connected in %.1f s (%s)" % (
            n, time.monotonic() - t0, ", ".join(
                "node %d: %d" % (g + 1, len(v)) for g, v in sorted(ids.items()))))
        t1 = time.monotonic()
        for ch, who in ((CHANNEL, ids), (SMALL_CHANNEL, probe_ids)):
            bad, ex = await asyncio.to_thread(
                subscribe, [(self.nodes[g], v) for g, v in sorted(who.items())], ch)
            if bad:
                raise RuntimeError("%d /sub/ calls to %r failed, e.g. %r" % (bad, ch, ex))
            want = sum(len(v) for v in who.values())
            deadline = time.monotonic() + 15
            while True:
                pc = await asyncio.to_thread(presence_count, self.nodes[0], ch)
                if pc == want or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            if pc != want:
                raise RuntimeError("node 1 lists %d members of %r, not %d" % (pc, ch, want))
        self.nsubs = n
        self.nprobes = sum(len(v) for v in probe_ids.values())
        log("  subscribed in %.1f s (/sub/ on each connection's node; node 1's /presence/ lists "
            "%d members of %r and %d of %r)" % (time.monotonic() - t1, n, CHANNEL,
                                                self.nprobes, SMALL_CHANNEL))

    async def close_clients(self):
        for w in getattr(self, "workers", []):
            await asyncio.to_thread(w.stop)
        for s in getattr(self, "sentinels", []):
            s.abort()

    # ---- publishing ---------------------------------------------------------

    async def pub_conns(self, n):
        loop = asyncio.get_running_loop()
        out = []
        for _ in range(n):
            _, p = await loop.create_connection(HttpConn, self.nodes[0].host, self.nodes[0].port)
            out.append(p)
        return out

    def request(self, seq, channel=CHANNEL):
        n1 = self.nodes[0]
        return (("POST /send/?channel=%s&msgtype=%d&qos=0%s HTTP/1.1\r\nHost: %s:%d\r\n"
                 "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n")
                % (channel, MSGTYPE, self.signer.query(), n1.host, n1.port, PAY.size)
                ).encode() + PAY.pack(time.monotonic(), seq)

    async def paced(self, kind, channel, pace, base, members):
        """Publish to channel at pace for lat_duration s; the probes' latencies."""
        a = self.args
        conns = await self.pub_conns(4)
        for w in self.workers:                                # new latency lists
            await asyncio.to_thread(w.report)
        loop = asyncio.get_running_loop()
        n = max(1, int(pace * a.lat_duration))
        period = 1.0 / pace
        skips, bad = 0, {}
        t0 = time.monotonic()

        async def one(c, seq):
            try:
                st, body = await c.request(self.request(seq, channel))
                j = json.loads(body)
                if st != 200 or j.get("status") != 0:
                    bad[(st, j.get("msg"))] = bad.get((st, j.get("msg")), 0) + 1
            except Exception as e:
                bad[str(e)] = bad.get(str(e), 0) + 1
        tasks = []
        for i in range(n):
            await asyncio.sleep(max(0.0, t0 + i * period - time.monotonic()))
            c = next((c for c in conns if c.fut is None or c.fut.done()), None)
            if c is None:
                skips += 1
                continue
            tasks.append(loop.create_task(one(c, base + i)))
        await asyncio.gather(*tasks)
        sent = len(tasks)
        wall = time.monotonic() - t0
        await asyncio.sleep(1.0)                              # the last copies arrive
        lat = [[] for _ in range(NODES)]
        for w in self.workers:
            rep = await asyncio.to_thread(w.report)
            for g in range(NODES):
                lat[g] += rep["lat"][kind][g]
        for c in conns:
            c.transport.close()
        local = sorted(lat[0])
        hop = sorted(lat[1] + lat[2])
        per_node = self.args.probes
        exp_local = sent * (per_node if self.clustered else self.nprobes)
        exp_hop = sent * per_node * (NODES - 1) if self.clustered else 0
        rate = sent / wall if wall > 0 else float("nan")

        def stats(v, exp):
            return (percentile(v, 50) * 1e3, percentile(v, 99) * 1e3,
                    (v[-1] * 1e3) if v else float("nan"), len(v), exp)
        out = {"pushes": sent, "rate": rate, "local": stats(local, exp_local),
               "hop": stats(hop, exp_hop)}
        log("  latency, channel %r (%d members): %d pushes in %.1f s (%.0f/s%s), about %.0f "
            "deliveries/s%s" % (channel, members, sent, wall, rate,
                                ", %d skipped: all 4 publishers busy" % skips if skips else "",
                                rate * members, "; errors %s" % bad if bad else ""))
        for what, v in (("local (node 1)", out["local"]), ("one hop (nodes 2, 3)", out["hop"])):
            if v[4]:
                log("    %-22s p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms  (%d of %d copies to "
                    "the probes)" % (what, v[0], v[1], v[2], v[3], v[4]))
        return out

    async def latency_phase(self):
        a = self.args
        self.r["lat_big"] = await self.paced("big", CHANNEL, a.pace, PACED, self.nsubs)
        self.r["lat_small"] = await self.paced("small", SMALL_CHANNEL, a.small_pace, SMALL,
                                               self.nprobes)

    async def marks(self):
        """Ask every client process to read all it has and say how much it got."""
        ws = self.workers
        for w in ws:
            w.send({"cmd": "mark"})
        return [await asyncio.to_thread(w.reply, 20) for w in ws]

    async def throughput_phase(self):
        a = self.args
        conns = await self.pub_conns(a.publishers)
        book = self.book
        perf = time.monotonic
        state = {"seq": 0, "stop": False, "in_window": 0, "timeouts": 0, "bad": {}}
        t_start = perf()
        w0 = t_start + a.warmup
        w1 = w0 + a.duration
        book.w0, book.w1 = w0, w1
        window_mode = a.mode == "window"

        async def publisher(c):
            while not state["stop"]:
                seq = state["seq"]
                state["seq"] += 1
                fut = book.expect(seq) if window_mode else None
                try:
                    st, body = await c.request(self.request(seq))
                except Exception as e:
                    state["bad"][str(e)] = state["bad"].get(str(e), 0) + 1
                    return
                if st != 200 or b'"status":0' not in body:
                    k = (st, body[:60])
                    state["bad"][k] = state["bad"].get(k, 0) + 1
                if window_mode:
                    try:
                        await asyncio.wait_for(fut, 5)
                    except asyncio.TimeoutError:
                        state["timeouts"] += 1
                        book.wait.pop(seq, None)
                if w0 <= perf() <= w1:
                    state["in_window"] += 1

        tasks = [asyncio.get_running_loop().create_task(publisher(c)) for c in conns]
        pids = [n.proc.pid for n in self.nodes]
        cpids = [w.pid for w in self.workers]

        def sample():
            return (perf(), machine_cpu(), [proc_cpu(p) for p in pids],
                    [thread_cpu(p) for p in pids], [proc_cpu(p) for p in cpids], self_cpu(),
                    [proc_user_sys(p) for p in pids])
        rss = [0.0] * len(pids)

        async def watch_rss():
            """Peak RSS of each gateway; in flood mode, stop publishing past the limit."""
            while True:
                for i, p in enumerate(pids):
                    v = proc_rss_mb(p)
                    if v == v:
                        rss[i] = max(rss[i], v)
                if not window_mode and max(rss) > a.flood_rss_limit and not state["stop"]:
                    state["stop"] = True
                    state["rss_stop"] = perf()
                await asyncio.sleep(0.25)
        watcher = asyncio.get_running_loop().create_task(watch_rss())
        await asyncio.sleep(max(0.0, w0 - perf()))
        s0 = sample()
        mk0 = await self.marks()
        await asyncio.sleep(max(0.0, w1 - perf()))
        s1 = sample()
        mk1 = await self.marks()
        state["stop"] = True
        await asyncio.wait(tasks, timeout=10)
        await asyncio.sleep(0.5)
        watcher.cancel()
        reps = [await asyncio.to_thread(w.report) for w in self.workers]
        for c in conns:
            c.transport.close()
        wall = s1[0] - s0[0]
        # Each client process's own window (its two marks), scaled to the common one.
        d_groups = [0.0] * NODES
        for a0, a1 in zip(mk0, mk1):
            span = a1["t"] - a0["t"]
            for g in range(NODES):
                d_groups[g] += (a1["bytes"][g] - a0["bytes"][g]) / FRAME_LEN * (
                    wall / span if span > 0 else 1.0)
        deliveries = sum(d_groups) + book.in_window

        def cores(x0, x1):
            return (x1 - x0) / wall if x0 is not None and x1 is not None else float("nan")
        r = self.r
        r["wall"] = wall
        r["deliveries"] = deliveries
        r["rate"] = deliveries / wall
        r["group_rates"] = [d / wall for d in d_groups]
        r["pushes_s"] = state["in_window"] / wall
        r["pushes_total"] = state["seq"]
        r["timeouts"] = state["timeouts"]
        r["bad"] = state["bad"]
        r["gw_cores"] = [cores(x0, x1) for x0, x1 in zip(s0[2], s1[2])]
        r["threads"] = [sorted((((b[t] - a_.get(t, 0.0)) / wall, "main" if t == p else str(t))
                                for t in b), reverse=True)[:3]
                        for p, a_, b in zip(pids, s0[3], s1[3])]
        r["client_cores"] = [cores(x0, x1) for x0, x1 in zip(s0[4], s1[4])]
        r["self_cores"] = (s1[5] - s0[5]) / wall
        us = [(u1 - u0, y1 - y0) for (u0, y0), (u1, y1) in zip(s0[6], s1[6])
              if None not in (u0, y0, u1, y1)]
        r["gw_sys_share"] = sum(y for _, y in us) / max(1e-9, sum(u + y for u, y in us)) \
            if us else float("nan")
        r["rss_mb"] = rss
        r["machine"], r["steal"] = machine_cores(s0[1], s1[1])
        r["gw_cpu_ms_per_1k"] = sum(r["gw_cores"]) * wall / deliveries * 1e6 if deliveries else \
            float("nan")
        ccores = sum(r["client_cores"]) + r["self_cores"]
        r["client_total"] = ccores
        r["client_cpu_ms_per_1k"] = ccores * wall / deliveries * 1e6 if deliveries else float("nan")
        r["zero"] = sum(rp["zero"] for rp in reps)
        r["closed"] = sum(rp["counts"]["closed"] for rp in reps)
        r["other_frames"] = sum(rp["counts"]["other_frames"] for rp in reps)
        r["recvs"] = sum(rp["counts"]["recvs"] for rp in reps)
        r["client_max"] = max(r["client_cores"] + [r["self_cores"]])
        r["client_bound"] = r["client_max"] >= 0.85
        r["other_load"] = r["machine"] - sum(r["gw_cores"]) - ccores
        r["edge_max"] = max((th[0][0] for th in r["threads"] if th), default=float("nan"))
        per_push = deliveries / (r["pushes_s"] * wall) if r["pushes_s"] else float("nan")
        log("  throughput (%s mode, %d publishers, %.1f s): %.0f deliveries/s, %.1f pushes/s "
            "(%.0f deliveries per push of %d subscribers)%s"
            % (a.mode, a.publishers, wall, r["rate"], r["pushes_s"], per_push, self.nsubs,
               ("; %d pushes not seen by every sentinel within 5 s" % state["timeouts"])
               if state["timeouts"] else ""))
        if self.clustered:
            log("    per node: %s deliveries/s" % ", ".join(
                "node %d %.0f" % (g + 1, v) for g, v in enumerate(r["group_rates"])))
        if state["bad"]:
            log("    /send/ errors: %s" % state["bad"])
        log("    CPU (cores): gateways %s = %.2f; clients: receivers %s, publishers + "
            "sentinels %.2f = %.2f; machine busy %.2f of %d%s" % (
                " + ".join("%.2f" % x for x in r["gw_cores"]), sum(r["gw_cores"]),
                " + ".join("%.2f" % x for x in r["client_cores"]),
                r["self_cores"], ccores, r["machine"], os.cpu_count(),
                (", steal %.2f" % r["steal"]) if r["steal"] >= 0.01 else ""))
        log("    CPU per 1,000 deliveries: gateways %.2f ms (%.0f%% of it in the kernel), "
            "clients %.2f ms" % (r["gw_cpu_ms_per_1k"], r["gw_sys_share"] * 100,
                                 r["client_cpu_ms_per_1k"]))
        log("    gateway peak RSS: %s MB" % ", ".join("%.0f" % x for x in rss))
        if "rss_stop" in state:
            log("    WARNING: flood stopped %.1f s into the window: a gateway's RSS passed %d MB"
                % (state["rss_stop"] - w0, a.flood_rss_limit))
        log("    busiest gateway threads (cores; main = the core thread): %s" % "; ".join(
            "%s: %s" % (n.name, ", ".join("%s %.2f" % (t, c) for c, t in th))
            for n, th in zip(self.nodes, r["threads"])))
        log("    receivers: %.1f pushes per read (SO_RCVLOWAT %d pushes but on the probes)"
            % (sum(sum(rp["bytes"]) for rp in reps) / FRAME_LEN / max(1, r["recvs"]),
               a.rx_lowat))
        if r["zero"] or r["closed"] or r["other_frames"]:
            log("    WARNING: %d subscribers received nothing, %d closed by the gateway, "
                "%d unexpected frames" % (r["zero"], r["closed"], r["other_frames"]))
        if r["client_bound"]:
            log("    CLIENT-BOUND: a client process used %.0f%% of a core: the figure is a "
                "lower bound" % (r["client_max"] * 100))
        if r["other_load"] >= 0.15:
            log("    OTHER LOAD: processes outside the benchmark used %.2f cores"
                % r["other_load"])

    async def main(self):
        self.signer = Signer(TOKEN)
        try:
            await self.open_clients()
            await self.latency_phase()
            await self.throughput_phase()
        finally:
            await self.close_clients()


# ====================================================================== main

def start_nodes(args, tmp, name, env, clustered):
    """Start the gateways of one configuration; env is the Lan or None (loopback)."""
    nodes = []
    n = NODES if clustered else 1
    if env is not None:
        port = 1984 if clustered else 1985
        udp = 2014
        for i in range(n):
            host, prefix = env.hosts[i]
            opts = {}
            if clustered:
                opts = {"cluster_name": "bench", "cluster_secret": SECRET,
                        "udp_ports": "%d-%d" % (udp, udp), "cluster_beacon_interval": 0.5}
            nodes.append(Node(args.bin, tmp, "%s%d" % (name, i + 1), host, port, "0.0.0.0", opts,
                              prefix))
    else:
        ports = [benchlib.free_port() for _ in range(n)]
        udps = [free_udp_port() for _ in range(n)]
        for i in range(n):
            opts = {}
            if clustered:
                opts = {"cluster_name": "bench", "cluster_secret": SECRET,
                        "udp_ports": "%d-%d" % (udps[i], udps[i]), "cluster_beacon_interval": 0.5,
                        "cluster_seeds": ",".join("127.0.0.1:%d" % udps[j]
                                                  for j in range(n) if j != i)}
            nodes.append(Node(args.bin, tmp, "%s%d" % (name, i + 1), "127.0.0.1", ports[i],
                              "127.0.0.1", opts))
    for nd in nodes:
        nd.start()
    if clustered:
        t0 = time.monotonic()
        while True:
            up = [len(nd.links_up()) for nd in nodes]
            if all(u == n - 1 for u in up):
                break
            if time.monotonic() - t0 > 20:
                raise RuntimeError("cluster links not all up within 20 s (links up per node: %s)"
                                   % up)
            time.sleep(0.1)
        log("  every node lists %d peers with link \"up\" after %.1f s"
            % (n - 1, time.monotonic() - t0))
    return nodes


def gateway_notes(nodes, m0s):
    """Counters and log lines worth a look, per node."""
    out = []
    for nd, m0 in zip(nodes, m0s):
        m = nd.metrics()

        def d(k):
            return m.get(k, 0) - m0.get(k, 0)
        drops = {k.split('"')[1]: d(k) for k in m if k.startswith("rainbow_drops_total") and d(k)}
        extra = []
        for k, label in (("rainbow_cluster_link_backpressure_total", "link backpressure"),
                         ("rainbow_cluster_legs_failed_total", "legs failed"),
                         ("rainbow_cluster_links_lost_total", "links lost"),
                         ("rainbow_cluster_publishes_sent_total", "publishes sent"),
                         ("rainbow_cluster_publishes_received_total", "publishes received")):
            if d(k):
                extra.append("%s %d" % (label, d(k)))
        out.append((nd.name, m.get('rainbow_messages_out_total{cmd="SEND",qos="0"}', 0),
                    drops, extra,
                    m.get('rainbow_seam_queue_depth_max{queue="core_to_edge"}', float("nan"))))
    return out


def run_config(args, tmp, env, clustered):
    name = "cluster" if clustered else "single"
    if clustered:
        log("\n== %s: %d gateways, %d subscribers on each" % (name, NODES, args.subs // NODES))
    else:
        log("\n== %s: one gateway (cluster off), all %d subscribers on it" % (name, args.subs))
    nodes = []
    res = {"ok": False}
    try:
        nodes = start_nodes(args, tmp, name, env, clustered)
        m0s = [nd.metrics() for nd in nodes]
        run = Run(args, name, nodes)
        asyncio.run(run.main())
        res.update(run.r)
        notes = gateway_notes(nodes, m0s)
        res["notes"] = notes
        for nm, sent, drops, extra, seam in notes:
            log("  %s: %d QoS 0 SENDs handed to connections; drops %s; seam core->edge max depth "
                "%.0f%s" % (nm, sent, drops or "none", seam,
                            ("; " + ", ".join(extra)) if extra else ""))
        res["ok"] = True
    except Exception as e:
        log("  ERROR: %s: %s" % (type(e).__name__, e))
        for nd in nodes:
            log("  %s log tail:\n%s" % (nd.name, nd.log_tail(10)))
    finally:
        for nd in nodes:
            rc = nd.stop(timeout=10, warn_kill=True)
            lines = nd.log_lines()
            res.setdefault("logs", []).append((nd.name, rc, lines))
            if lines:
                log("  %s log: %d line(s)%s" % (nd.name, len(lines), "".join(
                    "\n    | " + l[:160] for l in lines[:6])))
            if rc not in (0, None):
                log("  %s exit status %s" % (nd.name, rc))
    return res


def fmt(v, spec="%.0f"):
    if v is None or v != v:
        return "?"
    return spec % v


def num(v):
    if v is None or v != v:
        return "?"
    return "{:,.0f}".format(v)


def main():
    quick = os.environ.get("BENCH_QUICK") == "1"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", default="main", choices=("main", "clients"), help=argparse.SUPPRESS)
    ap.add_argument("--configs", default="single,cluster")
    ap.add_argument("--subs", type=int, default=3000, help="subscribers in all (3000)")
    ap.add_argument("--workers", type=int, default=2, help="receiver processes (2)")
    ap.add_argument("--probes", type=int, default=30,
                    help="latency probe subscribers per node (30)")
    ap.add_argument("--publishers", type=int, default=8, help="concurrent publishers (8)")
    ap.add_argument("--mode", choices=("window", "flood"), default="window",
                    help="window: a publisher waits until its push reached every node's "
                    "sentinel; flood: only for the /send/ answer")
    ap.add_argument("--flood-rss-limit", type=int, default=4096,
                    help="--mode flood stops publishing when a gateway's RSS passes this many "
                    "MB (4096)")
    ap.add_argument("--warmup", type=float, default=0.5 if quick else 1.0)
    ap.add_argument("--duration", type=float, default=2.0 if quick else 8.0,
                    help="throughput window, s (8; 2 with BENCH_QUICK=1)")
    ap.add_argument("--rx-lowat", type=int, default=8,
                    help="bulk receivers are woken only when this many pushes wait on a "
                    "socket (SO_RCVLOWAT; 8): fewer, larger reads; probes read every push")
    ap.add_argument("--pace", type=float, default=10.0,
                    help="pushes/s to the channel of every subscriber in the latency phase "
                    "(10, i.e. 30,000 deliveries/s: well under one gateway's capacity)")
    ap.add_argument("--small-pace", type=float, default=100.0,
                    help="pushes/s to the probes' channel in the latency phase (100)")
    ap.add_argument("--lat-duration", type=float, default=2.0 if quick else 5.0)
    ap.add_argument("--loopback", action="store_true",
                    help="three gateways on 127.0.0.1 with cluster_seeds even as root")
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    if args.role == "clients":
        return worker_main()

    args.bin = os.path.abspath(args.bin)
    configs = [c for c in args.configs.split(",") if c]
    log("== cluster fan-out: QoS 0 pushes to one channel of %d subscribers, single gateway vs "
        "cluster of %d%s" % (args.subs, NODES, " (BENCH_QUICK)" if quick else ""))
    if not os.access(args.bin, os.X_OK):
        log("  ERROR: %s missing (run make)" % args.bin)
        log("RESULT exit=error")
        return 2
    if args.subs // NODES <= args.probes + 1:
        log("  ERROR: --subs too small for --probes")
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    need = args.subs + 200
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < need:
        log("  WARNING: RLIMIT_NOFILE %d < %d: connections may fail" % (soft, need))

    lan = None
    base = tempfile.gettempdir()
    for d in Path(base).glob("rainbow-bench-cluster-*-*"):   # of runs that were killed
        m = re.match(r"rainbow-bench-cluster-(\d+)-", d.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)
    tmp = tempfile.mkdtemp(prefix="rainbow-bench-cluster-%d-" % os.getpid())

    def on_term(signum, frame):
        log("  terminated by signal %d: stopping everything" % signum)
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    results = {}
    try:
        why = "--loopback" if args.loopback else netns_unavailable()
        if why is None:
            try:
                lan = Lan(NODES)
            except Exception as e:
                why = "namespace set-up failed: %s" % e
                lan = None
        if lan is not None:
            where = ("network namespaces: %d hosts on a bridge, %s.11-%d, clients in the root "
                     "namespace (%s.254); discovery by subnet broadcast"
                     % (NODES, SUBNET, 10 + NODES, SUBNET))
        else:
            where = ("LOOPBACK FALLBACK (%s): %d gateways on 127.0.0.1 joined by cluster_seeds"
                     % (why, NODES))
        log("  where: %s" % where)
        log("  workload: %d subscribers (%d in %d receiver processes, %d of them latency probes "
            "per node; 1 sentinel per node), %d-byte pushes; latency at %g pushes/s (%g to the "
            "probes' channel) for %g s each; throughput %s mode, %d publishers, %g s warm-up + "
            "%g s measured"
            % (args.subs, args.subs - NODES, args.workers, args.probes, PAY.size, args.pace,
               args.small_pace, args.lat_duration, args.mode, args.publishers, args.warmup,
               args.duration))
        for c in configs:
            if c not in ("single", "cluster"):
                log("  ERROR: unknown config %r" % c)
                continue
            results[c] = run_config(args, tmp, lan, c == "cluster")
    finally:
        if lan is not None:
            lan.close()
        if args.keep:
            log("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return report(args, results, lan is not None)


def report(args, results, netns):
    s, c = results.get("single", {}), results.get("cluster", {})
    ok = all(r.get("ok") for r in results.values()) and bool(results)
    nan = float("nan")

    def g(r, *path):
        v = r
        for k in path:
            try:
                v = v[k]
            except (KeyError, IndexError, TypeError):
                return nan
        return v

    def ratio(a, b):
        return a / b if a == a and b == b and b else nan

    def pp(r, kind, where):
        return "%s / %s" % (fmt(g(r, kind, where, 0), "%.2f"), fmt(g(r, kind, where, 1), "%.2f"))

    def gw(r):
        if "gw_cores" not in r:
            return "?"
        return "%s (%.2f)" % (" + ".join("%.2f" % x for x in r["gw_cores"]), r["edge_max"])

    def cl(r):
        return "%s (%s)" % (fmt(g(r, "client_total"), "%.2f"), fmt(g(r, "client_max"), "%.2f"))

    log("\n== Cluster fan-out results (%s; %d CPUs; load average %s)"
        % ("network namespaces" if netns else "LOOPBACK + cluster_seeds", os.cpu_count(),
           " ".join(open("/proc/loadavg").read().split()[:3])))
    rows = [
        ("QoS 0 deliveries/s", num(g(s, "rate")), num(g(c, "rate")),
         fmt(ratio(g(c, "rate"), g(s, "rate")), "%.2f")),
        ("pushes/s (each to %d subscribers)" % args.subs, fmt(g(s, "pushes_s"), "%.1f"),
         fmt(g(c, "pushes_s"), "%.1f"), fmt(ratio(g(c, "pushes_s"), g(s, "pushes_s")), "%.2f")),
        ("deliveries/s on node 1 / 2 / 3", "-",
         " / ".join(num(x) for x in c.get("group_rates", [])) or "?", ""),
        ("gateway CPU, cores (busiest thread)", gw(s), gw(c), ""),
        ("gateway CPU ms per 1,000 deliveries", fmt(g(s, "gw_cpu_ms_per_1k"), "%.2f"),
         fmt(g(c, "gw_cpu_ms_per_1k"), "%.2f"),
         fmt(ratio(g(c, "gw_cpu_ms_per_1k"), g(s, "gw_cpu_ms_per_1k")), "%.2f")),
        ("gateway CPU in the kernel", fmt(g(s, "gw_sys_share") * 100, "%.0f%%"),
         fmt(g(c, "gw_sys_share") * 100, "%.0f%%"), ""),
        ("gateway peak RSS, MB", " + ".join("%.0f" % x for x in s.get("rss_mb", [])) or "?",
         " + ".join("%.0f" % x for x in c.get("rss_mb", [])) or "?", ""),
        ("client CPU, cores (busiest process)", cl(s), cl(c), ""),
        ("machine busy, cores of %d" % os.cpu_count(), fmt(g(s, "machine"), "%.2f"),
         fmt(g(c, "machine"), "%.2f"), ""),
        ("latency %d-ch. local p50 / p99 ms" % args.subs, pp(s, "lat_big", "local"),
         pp(c, "lat_big", "local"), ""),
        ("latency %d-ch. one hop p50 / p99 ms" % args.subs, "-", pp(c, "lat_big", "hop"), ""),
        ("latency %d-ch. local p50 / p99 ms" % (args.probes * NODES), pp(s, "lat_small", "local"),
         pp(c, "lat_small", "local"), ""),
        ("latency %d-ch. one hop p50 / p99 ms" % (args.probes * NODES), "-",
         pp(c, "lat_small", "hop"), ""),
    ]
    log("%-38s | %18s | %27s | %s" % ("figure", "single gateway", "cluster of 3",
                                      "cluster/single"))
    log("-" * 39 + "+" + "-" * 20 + "+" + "-" * 29 + "+" + "-" * 15)
    for row in rows:
        log("%-38s | %18s | %27s | %s" % row)
    for nm, r in (("single", s), ("cluster", c)):
        if not r:
            continue
        notes = []
        if not r.get("ok"):
            notes.append("FAILED (see above)")
        if r.get("client_bound"):
            notes.append("CLIENT-BOUND (a client process at %.0f%% of a core)"
                         % (r["client_max"] * 100))
        if r.get("machine", 0) >= os.cpu_count() - 0.15:
            notes.append("MACHINE SATURATED (clients took %.2f of %.2f busy cores)"
                         % (r["client_total"], r["machine"]))
        if r.get("other_load", 0) >= 0.15:
            notes.append("OTHER LOAD %.2f cores" % r["other_load"])
        drops = {}
        for _, _, dr, _, _ in r.get("notes", []):
            for k, v in dr.items():
                drops[k] = drops.get(k, 0) + v
        extra = [e for _, _, _, ex, _ in r.get("notes", []) for e in ex
                 if "backpressure" in e or "failed" in e or "lost" in e]
        notes.append("drops %s" % (drops or "none"))
        if extra:
            notes.append(", ".join(extra))
        lines = [l for _, _, ls in r.get("logs", []) for l in ls]
        benign = [l for l in lines if "cannot send beacons to" in l]
        notes.append("%d gateway log line(s) at warn%s" % (
            len(lines), " (%d: a beacon destination without a route, expected here)"
            % len(benign) if benign else ""))
        log("%s: %s" % (nm, "; ".join(notes)))

    lb = [g(c, "lat_big", w, i) for w in ("local", "hop") for i in (0, 1)]
    ls = [g(c, "lat_small", w, i) for w in ("local", "hop") for i in (0, 1)]
    log("one hop adds %s ms at p50, %s ms at p99 on the %d-member channel (%g pushes/s); "
        "%s / %s ms on the %d-member one (%g pushes/s)"
        % (fmt(lb[2] - lb[0], "%.2f"), fmt(lb[3] - lb[1], "%.2f"), args.subs, args.pace,
           fmt(ls[2] - ls[0], "%.2f"), fmt(ls[3] - ls[1], "%.2f"), args.probes * NODES,
           args.small_pace))
    log("cluster / single: %s of the deliveries/s, %s of the gateway CPU per delivery"
        % (fmt(ratio(g(c, "rate"), g(s, "rate")) * 100, "%.0f%%"),
           fmt(ratio(g(c, "gw_cpu_ms_per_1k"), g(s, "gw_cpu_ms_per_1k")) * 100, "%.0f%%")))

    def bench(name, x, y, unit):
        log("BENCH %s gateway=%s peer=%s ratio=%s unit=%s" % (
            name, fmt(x, "%.2f" if x == x and x < 100 else "%.0f"),
            fmt(y, "%.2f" if y == y and y < 100 else "%.0f"), fmt(ratio(x, y), "%.2f"), unit))
    bench("cluster_fanout_qos0", g(c, "rate"), g(s, "rate"),
          "deliveries/s (gateway=cluster of 3, peer=single gateway; higher is better)")
    bench("cluster_hop_latency_p50", lb[2], lb[0],
          "ms (%d-member channel; gateway=one hop, peer=local on node 1; lower is better)"
          % args.subs)
    bench("cluster_hop_latency_p99", lb[3], lb[1],
          "ms (%d-member channel; gateway=one hop, peer=local on node 1; lower is better)"
          % args.subs)
    bench("cluster_hop_latency_small_p50", ls[2], ls[0],
          "ms (%d-member channel; gateway=one hop, peer=local on node 1; lower is better)"
          % (args.probes * NODES))
    bench("cluster_hop_latency_small_p99", ls[3], ls[1],
          "ms (%d-member channel; gateway=one hop, peer=local on node 1; lower is better)"
          % (args.probes * NODES))
    bench("cluster_gw_cpu_per_1k", g(c, "gw_cpu_ms_per_1k"), g(s, "gw_cpu_ms_per_1k"),
          "cpu-ms per 1000 deliveries (gateway=cluster, peer=single; lower is better)")
    log("RESULT netns=%d single_rate=%s cluster_rate=%s ratio=%s hop_p50_ms=%s local_p50_ms=%s "
        "hop_p99_ms=%s local_p99_ms=%s small_hop_p50_ms=%s small_local_p50_ms=%s "
        "single_cpu_1k=%s cluster_cpu_1k=%s single_client_cpu=%s cluster_client_cpu=%s "
        "single_client_bound=%d cluster_client_bound=%d exit=%s" % (
            int(netns), fmt(g(s, "rate")), fmt(g(c, "rate")),
            fmt(ratio(g(c, "rate"), g(s, "rate")), "%.2f"), fmt(lb[2], "%.2f"),
            fmt(lb[0], "%.2f"), fmt(lb[3], "%.2f"), fmt(lb[1], "%.2f"), fmt(ls[2], "%.2f"),
            fmt(ls[0], "%.2f"), fmt(g(s, "gw_cpu_ms_per_1k"), "%.2f"),
            fmt(g(c, "gw_cpu_ms_per_1k"), "%.2f"), fmt(g(s, "client_total"), "%.2f"),
            fmt(g(c, "client_total"), "%.2f"),
            int(bool(s.get("client_bound"))), int(bool(c.get("client_bound"))),
            "ok" if ok else "error"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
