"""Pieces shared by the benchmark scripts (bench/durable.py, faulty_route.py,
cluster_fanout.py, rpc.py, fanout.py, idle.py, ...).

Python 3 standard library only.  Not run by itself: the scripts are run as
bench/<script>.py, so this directory is sys.path[0] and `import benchlib` finds
this file.  Holds the gateway process with a generated config (start, stop,
GET /metrics, log), a minimal asyncio rainbow.v2 WebSocket client, the v1 API
signature, CPU accounting from /proc and percentiles, and the frame of the
side-by-side scenarios (SideBySide: options, checks, rounds alternating the
gateway and its peer, medians, the report's table, results file, RESULT line).
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "benchtoken"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Packet commands, the high nibble of a packet's first byte (docs/protocol.md,
# PROTOCOL.md A.2): cmd << 4 | dup << 3 | qos << 1.
SEND, ACK, REC, REL, COM, NAK, HELLO = 1, 2, 3, 4, 5, 6, 7


def log(*a):
    print(*a, flush=True)


def default_bin():
    """The gateway binary: $RAINBOW_BIN, else build/rainbow-server."""
    return os.environ.get("RAINBOW_BIN") or str(ROOT / "build" / "rainbow-server")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


# ------------------------------------------------------------------ v1 signature

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


# ------------------------------------------------------------------ worker processes

class CmdChannel:
    """A load worker's side of its parent's pipe: commands arrive as JSON
    lines on stdin, answers leave as JSON lines on stdout (bench/pyload.py
    recv, bench/cluster_fanout.py workers)."""

    def __init__(self):
        self.inbuf = b""

    @staticmethod
    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    def read(self, block):
        """The next command; None if none is waiting and not block; {"cmd":
        "quit"} once stdin is closed."""
        while b"\n" not in self.inbuf:
            if not block and not select.select([0], [], [], 0)[0]:
                return None
            d = os.read(0, 1 << 20)
            if not d:
                return {"cmd": "quit"}
            self.inbuf += d
        line, _, self.inbuf = self.inbuf.partition(b"\n")
        return json.loads(line)


# ------------------------------------------------------------------ CPU accounting

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
    """(busy, steal, total) jiffies of all CPUs from /proc/stat (steal is not busy)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = f[3] + (f[4] if len(f) > 4 else 0)          # idle + iowait
    steal = f[7] if len(f) > 7 else 0
    total = sum(f[:8])
    return total - idle - steal, steal, total


def machine_cores(m0, m1):
    """(busy, steal) cores between two machine_cpu() samples (1.0 = one core);
    nan when unknown."""
    if m0 and m1 and m1[2] > m0[2]:
        ncpu = os.cpu_count() or 1
        total = m1[2] - m0[2]
        return (m1[0] - m0[0]) / total * ncpu, (m1[1] - m0[1]) / total * ncpu
    return float("nan"), float("nan")


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ------------------------------------------------------------------ processes

def die_with_parent():
    """preexec_fn: the child gets SIGKILL if the script that started it dies."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def stop_process(p, timeout=10.0, on_kill=None):
    """SIGTERM, wait, SIGKILL (then on_kill()). Works for Popen objects.
    Returns the exit status."""
    if p is None:
        return None
    if p.poll() is None:
        try:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
            if on_kill is not None:
                on_kill()
        except OSError:
            pass
    return p.returncode


def read_metrics(base_url):
    """{sample line name: value} of base_url + /metrics (best effort: {} when
    the gateway does not answer)."""
    out = {}
    try:
        with urllib.request.urlopen(base_url + "/metrics", timeout=3) as r:
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, _, v = line.rpartition(" ")
                    try:
                        out[k] = float(v)
                    except ValueError:
                        pass
    except (OSError, ValueError):
        pass
    return out


def take_response(buf):
    """One whole HTTP/1.1 answer off the front of bytearray buf:
    (status, body, connection_close), removed from buf; None while it is
    incomplete. Content-Length framing only (what the gateway sends)."""
    i = buf.find(b"\r\n\r\n")
    if i < 0:
        return None
    lines = bytes(buf[:i]).split(b"\r\n")
    n = 0
    close = False
    for h in lines[1:]:
        k, _, v = h.partition(b":")
        k = k.strip().lower()
        if k == b"content-length":
            n = int(v)
        elif k == b"connection" and b"close" in v.lower():
            close = True
    if len(buf) < i + 4 + n:
        return None
    body = bytes(buf[i + 4:i + 4 + n])
    del buf[:i + 4 + n]
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        status = 0
    return status, body, close


class Gateway:
    """rainbow-server on a free port of 127.0.0.1, run in the directory tmp
    with the config file tmp/conf_name; its output goes to tmp/gateway.log.
    A script's subclass builds the options (self.port is the port to listen
    on) and calls write_conf."""

    def __init__(self, binary, tmp, conf_name):
        self.binary = binary
        self.tmp = Path(tmp)
        self.port = free_port()
        self.log_path = self.tmp / "gateway.log"
        self.conf = self.tmp / conf_name
        self.proc = None

    def write_conf(self, opts, generator):
        # BENCH_GATEWAY_CONF="edge_threads=1 push_backlog=0": options over
        # the scenario's own, for A/B runs by hand.
        for kv in os.environ.get("BENCH_GATEWAY_CONF", "").split():
            k, _, v = kv.partition("=")
            opts[k] = v
        self.opts = opts
        self.conf.write_text("; generated by %s\n[main]\n" % generator + "".join(
            "%s = %s\n" % (k, v) for k, v in opts.items()))

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
        return read_metrics("http://127.0.0.1:%d" % self.port)

    def stop(self, timeout=15.0, warn_kill=False):
        """SIGTERM and wait; SIGKILL after timeout (with a WARNING line if
        warn_kill). Returns the exit status."""
        def killed():
            log("  WARNING: gateway did not exit within %.0f s of SIGTERM; killed" % timeout)
        rc = stop_process(self.proc, timeout, killed if warn_kill else None)
        if self.proc is not None:
            self.logf.close()
        return rc

    def log_lines(self):
        """The gateway's non-blank output lines."""
        try:
            return [l for l in self.log_path.read_text(errors="replace").splitlines()
                    if l.strip()]
        except OSError:
            return []

    def log_tail(self, n=30):
        return "\n".join(self.log_lines()[-n:])


# ------------------------------------------------------------------ WebSocket client

class WsClient(asyncio.Protocol):
    """A minimal RFC 6455 client (subprotocol rainbow.v2) on an asyncio Protocol.
    open() returns once the gateway's HELLO arrived (in self.hello).  All the
    packets after HELLO that arrived in one read are passed to packets(),
    which calls on_packet(client, bytes) for each; a subclass may override
    packets() to answer them all with one write."""

    GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, on_packet=None, on_close=None, path=b"/connect/"):
        self.on_packet = on_packet
        self.on_close = on_close
        self.path = path
        self.buf = bytearray()
        self.upgraded = False
        self.frag = None
        self.mask = os.urandom(4)
        self.hello = None
        self.closing = False
        self.closed = None
        self.transport = None
        self.ready = None

    async def open(self, port, timeout):
        loop = asyncio.get_running_loop()
        self.ready = loop.create_future()
        self.key = base64.b64encode(os.urandom(16))
        try:
            await asyncio.wait_for(self._open(loop, port), timeout)
        except BaseException:
            self.abort()
            raise

    async def _open(self, loop, port):
        await loop.create_connection(lambda: self, "127.0.0.1", port)
        self.transport.write(
            b"GET %s HTTP/1.1\r\n"
            b"Host: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: rainbow.v2\r\n\r\n" % (self.path, port, self.key))
        await self.ready

    def frame(self, payload, op=0x2):
        """A masked frame (binary unless op says otherwise)."""
        k = self.mask
        n = len(payload)
        if n < 126:
            h = bytes((0x80 | op, 0x80 | n))
        elif n < 65536:
            h = bytes((0x80 | op, 0x80 | 126)) + n.to_bytes(2, "big")
        else:
            h = bytes((0x80 | op, 0x80 | 127)) + n.to_bytes(8, "big")
        kk = (k * (n // 4 + 1))[:n]
        return h + k + (int.from_bytes(payload, "big") ^ int.from_bytes(kk, "big")).to_bytes(
            n, "big") if n else h + k

    def send(self, payload):
        self.transport.write(self.frame(payload))

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        if self.closed is None and not self.closing:
            self.closed = "connection lost (%s)" % (exc or "EOF")
        if self.ready is not None and not self.ready.done():
            self.ready.set_exception(RuntimeError("closed during handshake: %r"
                                                  % bytes(self.buf[:120])))
        if self.on_close and not self.closing:
            self.on_close(self)

    def fail_open(self, why):
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        self.transport.close()

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
                return self.fail_open("upgrade refused: %r" % head[0])
            if hdrs.get("sec-websocket-protocol") != "rainbow.v2":
                return self.fail_open("server did not pick rainbow.v2: %r"
                                      % hdrs.get("sec-websocket-protocol"))
            self.upgraded = True
        buf = self.buf
        pos, n_buf = 0, len(buf)
        pkts = []
        while n_buf - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, h = b1 & 0x7F, 2
            if n == 126:
                if n_buf - pos < 4:
                    break
                n, h = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif n == 127:
                if n_buf - pos < 10:
                    break
                n, h = int.from_bytes(buf[pos + 2:pos + 10], "big"), 10
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
                    self.transport.write(self.frame(m[:2], 0x8))
                self.transport.close()
                del buf[:pos]
                return
            elif op == 0x9:                                          # ping -> pong
                self.transport.write(self.frame(m, 0xA))
                continue
            elif op == 0xA:
                continue
            if not m:
                continue
            if self.hello is None and m[0] >> 4 == HELLO:
                try:
                    self.hello = json.loads(m[1:].decode())
                except ValueError:
                    self.hello = {}
                if not self.ready.done():
                    self.ready.set_result(True)
                continue
            pkts.append(m)
        del buf[:pos]
        if pkts:
            self.packets(pkts)

    def packets(self, pkts):
        if self.on_packet:
            for m in pkts:
                self.on_packet(self, m)

    def close(self):
        """Close frame, then FIN (the gateway sees a clean close)."""
        self.closing = True
        t = self.transport
        if t is not None and not t.is_closing():
            try:
                t.write(self.frame(b"\x03\xe8", 0x8))
            except Exception:
                pass
            t.close()

    async def close_after(self, wait):
        """Close frame, then FIN `wait` seconds later (time for the gateway's
        own close frame to arrive first)."""
        self.closing = True
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(self.frame(b"\x03\xe8", 0x8))
            await asyncio.sleep(wait)
            t.close()

    def abort(self):
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


# ------------------------------------------------------------------ side-by-side scenarios

class SideBySide:
    """The frame of a side-by-side scenario (bench/rpc.py, fanout.py, idle.py):
    the gateway and one peer doing the same job, --rounds rounds (3; 1 with
    BENCH_QUICK=1), each running every --targets once, in their order in odd
    rounds and reversed in even ones; medians of the rounds.  The script keeps
    what is its own: its options, how to run and show one target, its table's
    rows, BENCH lines, summary rows and RESULT values.

        sc = SideBySide("rpc", "pushpin", __doc__)
        sc.ap.add_argument(...)                     # the script's own options
        a = sc.parse()                              # + --rounds --targets --bin
        if not sc.start(header_line, peers.PACKAGES["pushpin"]):
            return 2
        sc.run({"gateway": run_gateway, "pushpin": run_pushpin}, show)
        sc.begin_report(); sc.head(...); sc.table(...); bench_line(...)
        return sc.finish(ok, summary, ["k=v", ...])

    Everything it prints goes through peers.log, so that the report (from
    begin_report on) is captured into build/bench/results/<name>.json."""

    def __init__(self, name, peer, doc):
        import peers
        self.peers = peers
        self.name = name
        self.peer = peer
        self.quick = os.environ.get("BENCH_QUICK") == "1"
        self.ap = argparse.ArgumentParser(description=doc.split("\n")[0])
        self.a = None
        self.targets = []
        self.cases = [None]
        self.lg = None
        self.res = {}          # target, or (target, case) -> [one dict per round]
        self.failed = []       # "target[ case]: error"

    def parse(self):
        """The script's options plus --rounds, --targets (gateway,<peer>), --bin."""
        self.ap.add_argument("--rounds", type=int, default=1 if self.quick else 3)
        self.ap.add_argument("--targets", default="gateway,%s" % self.peer)
        self.ap.add_argument("--bin", default=default_bin())
        a = self.a = self.ap.parse_args()
        a.bin = os.path.abspath(a.bin)
        self.targets = [t for t in a.targets.split(",") if t]
        return a

    def quick_note(self):
        return " (BENCH_QUICK)" if self.quick else ""

    def start(self, header, packages):
        """Signal handlers, servers left by killed runs, the header and the
        client line; then the gateway binary and the peer's Debian packages.
        False (with an ERROR line and `RESULT exit=error`) when the scenario
        cannot run."""
        peers, log = self.peers, self.peers.log
        peers.install_signal_handlers()
        peers.cleanup_leftovers()
        self.lg = peers.loadgen_path()
        log(header)
        log("  client: %s" % ("build/bench/loadgen (C)" if self.lg else
                              "bench/pyload.py (Python stand-in: build/bench/loadgen not built, "
                              "or BENCH_LOADGEN=python)"))
        if not os.access(self.a.bin, os.X_OK):
            log("  ERROR: %s missing (run make)" % self.a.bin)
            log("RESULT exit=error")
            return False
        try:
            peers.ensure_packages(packages)
        except RuntimeError as e:
            log("  ERROR: %s" % e)
            log("RESULT exit=error")
            return False
        return True

    @staticmethod
    def key(t, case):
        return t if case is None else (t, case)

    def run(self, runners, show, cases=None, announce=False):
        """For each case (e.g. a channel size; none by default), --rounds
        rounds of every target: runners[t](a, tmpbase[, case]) -> one run's
        dict, shown with show(t, r).  A run that raises is logged and counted
        in self.failed; the others go on.  announce: a "round N" line per
        round.  tmpbase, a temporary directory, is removed at the end."""
        log = self.peers.log
        a = self.a
        self.cases = list(cases) if cases is not None else [None]
        for t in self.targets:
            for c in self.cases:
                self.res[self.key(t, c)] = []
        tmpbase = tempfile.mkdtemp(prefix="rainbow-bench-%s-" % self.name)
        try:
            for c in self.cases:
                extra = () if c is None else (c,)
                for rnd in range(a.rounds):
                    order = self.targets if rnd % 2 == 0 else self.targets[::-1]
                    if announce:
                        log("  round %d" % (rnd + 1))
                    for t in order:
                        what = " ".join([t] + ["%s" % x for x in extra])
                        try:
                            r = runners[t](a, tmpbase, *extra)
                            self.res[self.key(t, c)].append(r)
                            show(t, r)
                        except Exception as e:
                            self.failed.append("%s: %s" % (what, e))
                            log("  %s FAILED: %s: %s" % (what, type(e).__name__, e))
        finally:
            shutil.rmtree(tmpbase, ignore_errors=True)

    def rounds(self, t, case=None):
        return self.res.get(self.key(t, case), [])

    def med(self, t, k, case=None):
        """The median of figure k over target t's rounds (nan if none)."""
        return self.peers.median([r[k] for r in self.rounds(t, case)])

    def complete(self):
        """Every round of each target ran (the gateway and the peer, unless the
        script left the peer out), and nothing failed."""
        return all(self.rounds(t, c) for t in self.targets
                   for c in self.cases) and not self.failed

    def tool(self):
        return "loadgen" if self.lg else "python"

    def client(self):
        """The client, as the report's head names it."""
        return "loadgen" if self.lg else "pyload.py (Python)"

    @staticmethod
    def loadavg():
        return " ".join(open("/proc/loadavg").read().split()[:3])

    def begin_report(self):
        """From here on what is printed is also kept for the results file."""
        self.peers.capture()

    def table(self, rows, width, peer_head=None):
        """figure | gateway | <peer> | gateway/<peer>: rows of (name, gateway
        value, peer value, fnum spec), the ratio of each beside them."""
        log, fnum = self.peers.log, self.peers.fnum
        peer = peer_head or self.peer
        head = "gateway/%s" % peer
        fmt = "%-" + str(width) + "s | %14s | %14s | %s"
        log(fmt % ("figure", "gateway", peer, head))
        log("-" * (width + 1) + "+" + "-" * 16 + "+" + "-" * 16 + "+" + "-" * (len(head) + 1))
        for name, x, y, spec in rows:
            log(fmt % (name, fnum(x, spec), fnum(y, spec), fnum(self.peers.ratio(x, y), "%.2f")))

    def summary_row(self, scenario, key, unit, figure, cpu, case=None, cpu_div=1.0):
        """One row of the run's summary (bench/results.py): medians of
        figure, of p50_ms / p99_ms and of cpu (divided by cpu_div) for the
        gateway and the peer."""
        g, p = "gateway", self.peer
        x, y = self.med(g, figure, case), self.med(p, figure, case)
        return {"scenario": scenario, "key": key, "unit": unit, "peer": p,
                "gateway": x, "peer_value": y, "ratio": self.peers.ratio(x, y),
                "gw_p50_ms": self.med(g, "p50_ms", case), "gw_p99_ms": self.med(g, "p99_ms", case),
                "peer_p50_ms": self.med(p, "p50_ms", case),
                "peer_p99_ms": self.med(p, "p99_ms", case),
                "gw_cpu_us": self.med(g, cpu, case) / cpu_div,
                "peer_cpu_us": self.med(p, cpu, case) / cpu_div}

    def kv(self, items, case=None):
        """RESULT values: [(name, target, figure, fnum spec)] -> ["name=<median>"]."""
        return ["%s=%s" % (n, self.peers.fnum(self.med(t, k, case), spec))
                for n, t, k, spec in items]

    def report_failed(self):
        for f in self.failed:
            self.peers.log("FAILED: %s" % f)

    def finish(self, ok, summary, result):
        """Save build/bench/results/<name>.json (the captured report, the
        rounds, the summary rows, versions), print `RESULT <result> tool=..
        exit=ok|error`; -> the exit status (0 when ok)."""
        peers = self.peers
        peers.save_result(self.name, {
            "table": peers.end_capture(), "ok": ok, "tool": self.tool(),
            "params": vars(self.a),
            "rounds": {("%s_%s" % k if isinstance(k, tuple) else k): v
                       for k, v in self.res.items()},
            "failed": self.failed, "summary": summary,
            "versions": dict(peers.versions(), gateway=peers.gateway_version(self.a.bin),
                             commit=peers.git_commit())})
        peers.log("RESULT %s tool=%s exit=%s" % (" ".join(result), self.tool(),
                                                "ok" if ok else "error"))
        return 0 if ok else 1
