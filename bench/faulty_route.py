#!/usr/bin/python3
"""One hanging backend route against the others (bench/README.md, "Faulty route").

The scenario that once took the gateway down: many clients sending to one
backend route that never answers fill the shared pool of backend connections,
and every other route (and, before hooks had a pool of their own, every new
connection) waits behind them.  This script measures it end to end, twice in
one run: with the gateway's default protection (per-route bounds, circuit
breaker) and with it switched off (route_max_inflight = backend_max_connections,
route_max_queued = backend_max_queue, breaker_failures = 0: the behaviour before
the fix, except that hooks keep their own pool).

For each configuration it starts
  - a backend (this script, --role backend, its own process): a small asyncio
    HTTP/1.1 keep-alive server; POST /forward/1/ (the fast route) answers at
    once, POST /forward/7/ (the hanging route) answers only after --hang
    seconds (longer than backend_timeout), GET /connect answers
    {"status":"success"}, GET /close 200; it accepts any signature;
  - the gateway with a generated config (free port on 127.0.0.1, its own
    temporary data_dir, backend_timeout 10 s, pool of 64, log_level warn);
  - 50 "fast" rainbow.v2 clients in this process, each doing sequential QoS 1
    round trips (SEND 0x12, msgtype 1, 32-byte payload; the next SEND as soon
    as the ACK or NAK of the previous one arrived), for all three phases;
  - 80 attackers (this script, --role attackers, its own process so that their
    flood does not delay this process's clocks): rainbow.v2 clients sending
    QoS 1 SENDs to msgtype 7, each resending as soon as it gets any answer
    (ACK or NAK, honouring nothing else: no retry_after, no back-off).

Phases (the fast clients run through all of them):
  1. baseline (--duration s, after a --warmup): fast-route replies, replies/s,
     p50/p99 latency; --connects new clients connect (a full WebSocket open
     through the connect hook up to HELLO), spread over the phase.
  2. attack (--duration s): the same figures while the attackers run, plus the
     connect time of --connects new clients spread over the phase.
  3. recovery: the attackers disconnect; then how long until a fast-route
     round trip and a new connect are back to baseline latency, and the p99 /
     max over the following --settle seconds.  Ends --settle s after both are
     back (at most --recovery-max s).

Latency of a fast round trip = SEND written to its answer (ACK or NAK) read;
p50/p99 are over every answer completed in the phase, plus, as lower bounds,
the age of the round trips still unanswered when the phase ended (so that
clients stuck behind the hanging route are not left out).  "replies" are ACKs.

Prints each phase with its figures, a side-by-side table, one line per
configuration
    BENCH faulty_route <config>_p99_ratio=<attack p99 / baseline p99> ...
and a `RESULT key=value ...` line for bench/run.  It measures and prints; it
never fails on timing: the exit status is non-zero only when something could
not run.  Everything is on 127.0.0.1; every process it starts is stopped
(SIGTERM, then SIGKILL) when it ends or dies.

Python 3 standard library only.  Knobs: flags, or the environment variables
named in --help (FAULTY_*).
"""
import argparse
import asyncio
import bisect
import gc
import json
import operator
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import benchlib
from benchlib import (ACK, NAK, TOKEN, WsClient, default_bin, die_with_parent, log,
                      machine_cores, machine_cpu, percentile, proc_cpu, self_cpu, stop_process)

SCRIPT = Path(__file__).resolve()
PY = "/usr/bin/python3"

FAST_TYPE, HANG_TYPE = 1, 7
PAYLOAD = bytes((i * 7 + 1) & 0xFF for i in range(32))

# Packet first bytes (docs/protocol.md): cmd << 4 | dup << 3 | qos << 1.
SEND1 = 0x12

BIN_S = 0.5          # recovery: bin width for "back to baseline"
CONN_FLOOR_MS = 50.0  # recovery: a connect within this is "back" whatever the baseline
ANSWER_DONE = operator.itemgetter(1)   # answers: (t_sent, t_done, ok, nak code)
STUCK_S = 1.0        # recovery: a fast round trip unanswered this long is "stuck"


def env(name, default, conv=float):
    v = os.environ.get(name)
    if v is None or v == "":
        return default
    try:
        return conv(v)
    except ValueError:
        sys.exit("faulty_route: bad %s=%r" % (name, v))


# ------------------------------------------------------------------ formatting

def fmt_ms(x):
    if x != x:   # nan
        return "-"
    return "%.1f" % x if x < 100 else "%.0f" % x


def fmt_s(x):
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    return "%.2f" % x


def fmt_int(n):
    return "{:,}".format(n) if isinstance(n, int) else str(n)


# ------------------------------------------------------------------ backend role

class BackendConn(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection (the gateway
    does not pipeline; if it did, requests would still be answered in order:
    parsing stops while a hanging answer is pending)."""

    def __init__(self, srv):
        self.srv = srv
        self.buf = bytearray()
        self.held = None          # TimerHandle of a hanging answer

    def connection_made(self, transport):
        self.transport = transport
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.srv.conns += 1
        self.srv.max_conns = max(self.srv.max_conns, self.srv.conns)

    def connection_lost(self, exc):
        self.srv.conns -= 1
        if self.held is not None:
            self.held.cancel()
            self.held = None
            self.srv.hanging -= 1
            self.srv.abandoned += 1

    def data_received(self, data):
        self.buf += data
        self.parse()

    def parse(self):
        out = []
        while self.held is None:
            buf = self.buf
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                break
            head = bytes(buf[:i])
            n = 0
            j = head.lower().find(b"\ncontent-length:")
            if j >= 0:
                e = head.find(b"\r\n", j + 1)
                n = int(head[j + 16:e if e >= 0 else len(head)].strip() or b"0")
            if len(buf) < i + 4 + n:
                break
            body = bytes(buf[i + 4:i + 4 + n])
            del buf[:i + 4 + n]
            sp = head.find(b" ")
            path = head[sp + 1:head.find(b" ", sp + 1)]
            srv = self.srv
            if path.startswith(b"/forward/%d/" % FAST_TYPE):
                srv.count["fast"] += 1
                out.append(srv.response(b"ok:" + body[:16]))
            elif path.startswith(b"/forward/%d/" % HANG_TYPE):
                srv.count["hang"] += 1
                srv.hanging += 1
                srv.max_hanging = max(srv.max_hanging, srv.hanging)
                self.held = asyncio.get_running_loop().call_later(srv.hang, self.release)
            elif path.startswith(b"/connect"):
                srv.count["connect"] += 1
                out.append(srv.response(b'{"status":"success"}', b"application/json"))
            elif path.startswith(b"/close"):
                srv.count["close"] += 1
                out.append(srv.response(b"ok"))
            elif path.startswith(b"/__stats__"):
                out.append(srv.response(json.dumps(srv.stats()).encode(), b"application/json"))
            else:
                srv.count["other"] += 1
                out.append(srv.response(b"ok:" + body[:16]))
        if out:
            self.transport.write(b"".join(out))

    def release(self):
        self.held = None
        self.srv.hanging -= 1
        self.srv.count["hang_answered"] += 1
        if not self.transport.is_closing():
            self.transport.write(self.srv.response(b"late"))
            self.parse()


class BackendServer:
    def __init__(self, hang):
        self.hang = hang
        self.conns = self.max_conns = 0
        self.hanging = self.max_hanging = self.abandoned = 0
        self.count = {"fast": 0, "hang": 0, "connect": 0, "close": 0, "other": 0,
                      "hang_answered": 0}
        self.cache = {}

    def response(self, body, ctype=b"text/plain"):
        key = (body, ctype)
        r = self.cache.get(key)
        if r is None:
            r = (b"HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n"
                 % (ctype, len(body))) + body
            if len(self.cache) < 4096:
                self.cache[key] = r
        return r

    def stats(self):
        return dict(self.count, conns=self.conns, max_conns=self.max_conns,
                    hanging=self.hanging, max_hanging=self.max_hanging,
                    abandoned=self.abandoned)


def run_backend(args):
    async def main():
        srv = BackendServer(args.hang)
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: BackendConn(srv), "127.0.0.1", 0,
                                          backlog=1024, reuse_address=True)
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write("%d\n" % port)
        sys.stdout.flush()
        stop = loop.create_future()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, lambda: stop.done() or stop.set_result(True))
        loop.add_reader(0, lambda: (os.read(0, 4096) or stop.done() or stop.set_result(True)))
        await stop
        server.close()
    asyncio.run(main())
    return 0


def nak_code(m):
    try:
        return int(json.loads(m[3:].decode()).get("code", 0))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return 0


# ------------------------------------------------------------------ attackers role

def run_attackers(args):
    """Wait for "go" on stdin, connect N clients, flood msgtype 7; on "stop"
    (or EOF) close them all and print the counters as one JSON line."""

    async def main():
        loop = asyncio.get_running_loop()
        st = {"sent": 0, "ack": 0, "nak": {}, "closed_by_server": 0, "connect_failed": 0,
              "connected": 0}
        clients = []
        msgid = {}
        state = {"stopping": False}

        def send(c):
            i = msgid.get(c, 0) % 65535 + 1
            msgid[c] = i
            c.send(bytes((SEND1,)) + HANG_TYPE.to_bytes(2, "big") + i.to_bytes(2, "big")
                   + PAYLOAD)
            st["sent"] += 1

        def on_packet(c, m):
            cmd = m[0] >> 4
            if cmd == ACK:
                st["ack"] += 1
            elif cmd == NAK:
                k = str(nak_code(m))
                st["nak"][k] = st["nak"].get(k, 0) + 1
            else:
                return
            if not state["stopping"] and not c.transport.is_closing():
                send(c)

        def on_close(c):
            if not state["stopping"]:
                st["closed_by_server"] += 1

        lines = asyncio.Queue()
        loop.add_reader(0, lambda: lines.put_nowait(os.read(0, 4096)))
        while True:
            d = await lines.get()
            if not d or b"go" in d:
                break
        if not d:
            return
        t0 = time.monotonic()

        async def one():
            c = WsClient(on_packet, on_close)
            try:
                await c.open(args.port, args.connect_timeout)
            except (OSError, RuntimeError, asyncio.TimeoutError):
                st["connect_failed"] += 1
                return
            st["connected"] += 1
            clients.append(c)
            send(c)
        await asyncio.gather(*(one() for _ in range(args.attackers)))
        sys.stdout.write("ready %d %.3f\n" % (st["connected"], time.monotonic() - t0))
        sys.stdout.flush()
        while True:
            d = await lines.get()
            if not d or b"stop" in d:
                break
        state["stopping"] = True
        for c in clients:
            c.close()
        await asyncio.sleep(0.2)
        for c in clients:
            c.abort()
        sys.stdout.write("stats %s\n" % json.dumps(st))
        sys.stdout.flush()

    asyncio.run(main())
    return 0


# ------------------------------------------------------------------ fast clients

class FastClients:
    """N clients, each with one QoS 1 SEND to msgtype 1 outstanding at a time."""

    def __init__(self, n, port, stuck_after):
        self.n = n
        self.port = port
        self.stuck_after = stuck_after
        self.clients = []
        self.pending = {}     # client -> (msgid, t_sent)
        self.msgid = {}
        self.answers = []     # (t_sent, t_done, ok, nak code)
        self.lost = 0         # no answer within stuck_after (resent)
        self.closed = 0
        self.stopping = False

    async def start(self, timeout):
        async def one():
            c = WsClient(self.on_packet, self.on_close)
            await c.open(self.port, timeout)
            self.clients.append(c)
        res = await asyncio.gather(*(one() for _ in range(self.n)), return_exceptions=True)
        bad = [r for r in res if isinstance(r, BaseException)]
        if bad:
            raise RuntimeError("%d of %d fast clients could not connect: %s"
                               % (len(bad), self.n, bad[0]))
        for c in self.clients:
            self.send(c)

    def send(self, c):
        i = self.msgid.get(c, 0) % 65535 + 1
        self.msgid[c] = i
        self.pending[c] = (i, time.monotonic())
        c.send(bytes((SEND1,)) + FAST_TYPE.to_bytes(2, "big") + i.to_bytes(2, "big") + PAYLOAD)

    def on_packet(self, c, m):
        cmd = m[0] >> 4
        if cmd not in (ACK, NAK) or len(m) < 3:
            return
        p = self.pending.get(c)
        if p is None or (m[1] << 8 | m[2]) != p[0]:
            return      # an answer to a SEND given up on (resent)
        now = time.monotonic()
        del self.pending[c]
        self.answers.append((p[1], now, cmd == ACK, 0 if cmd == ACK else nak_code(m)))
        if not self.stopping:
            self.send(c)

    def on_close(self, c):
        if not self.stopping:
            self.closed += 1
        self.pending.pop(c, None)

    def check_stuck(self):
        now = time.monotonic()
        for c, (i, t) in list(self.pending.items()):
            if now - t > self.stuck_after and not c.transport.is_closing():
                self.lost += 1
                self.send(c)

    def outstanding_ages(self, at):
        """Ages at time `at` of the round trips sent before it and still unanswered then."""
        ages = [at - t for (i, t) in self.pending.values() if t <= at]
        # answers that completed after `at` were outstanding at `at` too
        for ts, td, ok, code in reversed(self.answers):
            if td <= at:
                break
            if ts <= at:
                ages.append(at - ts)
        return ages

    def stop(self):
        self.stopping = True
        for c in self.clients:
            c.close()


def answers_between(answers, t0, t1):
    """The answers completed in [t0, t1) (the list is in completion order)."""
    i = bisect.bisect_left(answers, t0, key=ANSWER_DONE)
    j = bisect.bisect_left(answers, t1, lo=i, key=ANSWER_DONE)
    return answers[i:j]


def window_stats(fast, t0, t1):
    """Figures of the fast-route answers completed in [t0, t1), latencies
    including the ages of the round trips still unanswered at t1."""
    sel = answers_between(fast.answers, t0, t1)
    outstanding = fast.outstanding_ages(t1)
    ok = sum(1 for a in sel if a[2])
    naks = {}
    for a in sel:
        if not a[2]:
            naks[a[3]] = naks.get(a[3], 0) + 1
    lat = sorted([(a[1] - a[0]) * 1e3 for a in sel] + [x * 1e3 for x in outstanding])
    return {"ok": ok, "ok_s": ok / (t1 - t0), "naks": naks, "answers": len(sel),
            "p50": percentile(lat, 50), "p99": percentile(lat, 99),
            "max": lat[-1] if lat else float("nan"),
            "stuck": sum(1 for x in outstanding if x > STUCK_S),
            "n_out": len(outstanding)}


# ------------------------------------------------------------------ connect probes

async def connect_once(port, timeout, results, tag):
    """One full WebSocket open through the connect hook up to HELLO, then a
    clean close.  Appends (tag, t_start, seconds or None, error)."""
    c = WsClient()
    t = time.monotonic()
    try:
        await c.open(port, timeout)
        results.append((tag, t, time.monotonic() - t, None))
        c.close()
    except asyncio.TimeoutError:
        results.append((tag, t, None, "no HELLO within %g s" % timeout))
    except (OSError, RuntimeError) as e:
        results.append((tag, t, None, str(e)[:80]))


async def spread_connects(port, n, t0, dur, timeout, results, tag):
    tasks = []
    for i in range(n):
        at = t0 + (i + 0.5) * dur / n
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        tasks.append(asyncio.ensure_future(connect_once(port, timeout, results, tag)))
    return tasks


def connect_stats(results, tag):
    sel = [r for r in results if r[0] == tag]
    ok = sorted(r[2] * 1e3 for r in sel if r[2] is not None)
    return {"n": len(sel), "ok": len(ok), "failed": len(sel) - len(ok),
            "p50": percentile(ok, 50), "max": ok[-1] if ok else float("nan"),
            "errors": sorted({r[3] for r in sel if r[3]})}


# ------------------------------------------------------------------ gateway

class Gateway(benchlib.Gateway):
    def __init__(self, binary, tmp, backend_port, args, protected):
        super().__init__(binary, tmp, "faulty.ini")
        base = "http://127.0.0.1:%d" % backend_port
        opts = {
            "port": self.port, "bind": "127.0.0.1", "api_port": 0,
            "data_dir": self.tmp / "data", "log_level": args.log_level, "log_file": "",
            "security_token": TOKEN,
            "connect_url": base + "/connect", "forward_url": base + "/forward/",
            "close_url": base + "/close",
            "heartbeat": 0, "shutdown_grace": 2, "max_connections": 10000,
            "backend_timeout": args.backend_timeout,
            "backend_max_connections": args.pool,
            "backend_max_queue": args.backend_queue,
        }
        if protected:
            self.protection = ("gateway defaults (route_max_inflight 0 = 3/4 of the pool, "
                               "route_max_queued 0 = backend_max_queue, breaker_failures 5, "
                               "breaker_cooldown 5)")
        else:
            opts.update({"route_max_inflight": args.pool,
                         "route_max_queued": args.backend_queue,
                         "breaker_failures": 0})
            self.protection = ("off: route_max_inflight %d, route_max_queued %d, "
                               "breaker_failures 0" % (args.pool, args.backend_queue))
        self.write_conf(opts, "bench/faulty_route.py")


def backend_stats(port):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d/__stats__" % port, timeout=3) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------ one configuration

class CpuMeter:
    def __init__(self, pids):
        self.pids = pids      # name -> pid (None = this process)

    def snap(self):
        d = {n: (self_cpu() if p is None else proc_cpu(p)) for n, p in self.pids.items()}
        return time.monotonic(), d, machine_cpu()

    @staticmethod
    def diff(a, b):
        wall = b[0] - a[0]
        out = {}
        for n in b[1]:
            x, y = a[1].get(n), b[1].get(n)
            out[n] = (y - x) / wall if x is not None and y is not None else float("nan")
        out["machine"] = machine_cores(a[2], b[2])[0]
        known = sum(v for k, v in out.items() if k != "machine" and v == v)
        out["other"] = out["machine"] - known
        return out


def cpu_line(c):
    def f(x):
        return "-" if x != x else "%.2f" % x
    return ("client %s, attackers %s, backend %s, gateway %s; machine busy %s of %d "
            "(other processes %s)" % (f(c.get("client", 0)), f(c.get("attackers", 0)),
                                      f(c.get("backend", 0)), f(c.get("gateway", 0)),
                                      f(c["machine"]), os.cpu_count() or 1, f(c["other"])))


def naks_text(naks):
    return ", ".join("%s x%d" % (k, v) for k, v in sorted(naks.items())) or "none"


async def scenario(args, gw, backend_port, res):
    """Runs the three phases and records raw data in res; figures are
    computed afterwards (report_config), so that no statistics run while the
    fast clients are being measured."""
    loop = asyncio.get_running_loop()
    att = await asyncio.create_subprocess_exec(
        PY, str(SCRIPT), "--role", "attackers", "--port", str(gw.port),
        "--attackers", str(args.attackers), "--connect-timeout", str(args.connect_timeout),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=die_with_parent)
    cpu = CpuMeter({"client": None, "attackers": att.pid, "backend": res["backend_pid"],
                    "gateway": gw.proc.pid})
    fast = FastClients(args.fast, gw.port, args.backend_timeout + 10)
    res["fast"] = fast
    await fast.start(args.connect_timeout)

    async def stuck_checker():
        while True:
            await asyncio.sleep(0.5)
            fast.check_stuck()
    checker = asyncio.ensure_future(stuck_checker())
    conns = res["conns"] = []
    ctasks = []
    try:
        # One connect during the warm-up, not counted: it opens the hook
        # pool's first backend connection.
        await connect_once(gw.port, args.connect_timeout, [], "warmup")
        await asyncio.sleep(args.warmup)

        # ---- 1. baseline
        log("  1. baseline: %d fast clients for %g s (after %g s of warm-up)"
            % (args.fast, args.duration, args.warmup))
        t1 = time.monotonic()
        c1 = cpu.snap()
        ctasks += await spread_connects(gw.port, args.connects, t1, args.duration,
                                        args.connect_timeout, conns, "baseline")
        await asyncio.sleep(max(0.0, t1 + args.duration - time.monotonic()))

        # ---- 2. attack
        att.stdin.write(b"go\n")
        await att.stdin.drain()
        t2 = time.monotonic()
        c2 = cpu.snap()
        log("  2. attack: %d attackers on msgtype %d for %g s"
            % (args.attackers, HANG_TYPE, args.duration))
        ready = asyncio.ensure_future(att.stdout.readline())
        ctasks += await spread_connects(gw.port, args.connects, t2, args.duration,
                                        args.connect_timeout, conns, "attack")
        await asyncio.sleep(max(0.0, t2 + args.duration - time.monotonic()))
        t3 = time.monotonic()
        c3 = cpu.snap()
        res["metrics_attack"] = await loop.run_in_executor(None, gw.metrics)
        res["backend_attack"] = await loop.run_in_executor(None, backend_stats, backend_port)

        # thresholds for "back to baseline": 2x the baseline p99, estimated
        # from at most ~5000 evenly spread answers so that this takes a
        # couple of milliseconds (the printed baseline p99 uses all of them)
        sel = answers_between(fast.answers, t1, t2)
        sel = sel[::max(1, len(sel) // 5000)]
        p99 = percentile(sorted((x[1] - x[0]) * 1e3 for x in sel), 99)
        bc = connect_stats(conns, "baseline")
        thr_fast = max(2 * p99, 5.0) if p99 == p99 else 50.0
        thr_conn = max(2 * bc["max"], CONN_FLOOR_MS) if bc["max"] == bc["max"] else 100.0
        rec = []
        stop_probe = [False]
        probing = [None]      # start time of the probe in progress

        async def prober():
            while not stop_probe[0]:
                probing[0] = time.monotonic()
                await connect_once(gw.port, args.connect_timeout, rec, "recovery")
                probing[0] = None
                await asyncio.sleep(args.probe_interval)

        # ---- 3. recovery: the attackers leave; connect probes one after
        # another from then on, the fast clients keep going
        att.stdin.write(b"stop\n")
        await att.stdin.drain()
        T0 = time.monotonic()
        c4 = cpu.snap()
        probe_task = asyncio.ensure_future(prober())
        log("  3. recovery: attackers gone; observing (at most %g s)" % args.recovery_max)
        try:
            line = (await asyncio.wait_for(ready, 5)).decode().split()
            res["attackers_ready"] = (int(line[1]), float(line[2]))
        except (asyncio.TimeoutError, IndexError, ValueError):
            res["attackers_ready"] = None
        try:
            line = (await asyncio.wait_for(att.stdout.readline(), 5)).decode()
            res["attackers"] = json.loads(line.split(" ", 1)[1])
        except (asyncio.TimeoutError, IndexError, ValueError):
            res["attackers"] = None
        await asyncio.gather(*ctasks)
        ctasks = []
        end = T0 + args.recovery_max
        bins = {}             # bin index -> good (computed once the bin is over)
        nsettle = max(2, int(round(args.settle / BIN_S)))
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            if now >= end:
                break
            k1 = int((now - T0) / BIN_S)          # bins 0 .. k1-1 are over
            for k in range(k1):
                if k not in bins:
                    bins[k] = fast_bin(fast, T0, k, thr_fast)[0]
            if k1 < nsettle or not all(bins[k] for k in range(k1 - nsettle, k1)):
                continue
            w0 = T0 + (k1 - nsettle) * BIN_S
            cw = [r for r in rec if r[1] >= w0]
            if (len(cw) >= 2 and all(r[2] is not None and r[2] * 1e3 <= thr_conn for r in cw)
                    and (probing[0] is None or (now - probing[0]) * 1e3 <= thr_conn)):
                break
        stop_probe[0] = True
        t_end = time.monotonic()
        c5 = cpu.snap()
        res["rec"] = list(rec)  # a probe still running at t_end is left out
        await asyncio.wait_for(probe_task, args.connect_timeout + 2)
        res["metrics_end"] = await loop.run_in_executor(None, gw.metrics)
        res.update(t1=t1, t2=t2, t3=t3, T0=T0, t_end=t_end, thr_fast=thr_fast,
                   thr_conn=thr_conn, baseline_cpu=CpuMeter.diff(c1, c2),
                   attack_cpu=CpuMeter.diff(c2, c3), recovery_cpu=CpuMeter.diff(c4, c5))
    finally:
        checker.cancel()
        fast.stop()
        for t in ctasks:
            t.cancel()
        if att.returncode is None:
            try:
                att.stdin.close()
            except Exception:
                pass
            try:
                await asyncio.wait_for(att.wait(), 3)
            except asyncio.TimeoutError:
                att.kill()
                await att.wait()
        await asyncio.sleep(0.2)


def report_config(args, res):
    """Figures of one configuration from the raw data scenario() recorded;
    prints the phase lines and stores the figures in res."""
    fast = res["fast"]
    t1, t2, t3, T0, t_end = res["t1"], res["t2"], res["t3"], res["T0"], res["t_end"]
    thr_fast, thr_conn = res["thr_fast"], res["thr_conn"]
    conns = res["conns"]
    b = res["baseline"] = window_stats(fast, t1, t2)
    bc = res["baseline_conn"] = connect_stats(conns, "baseline")
    log("  1. baseline (%.0f s): fast route %s replies, %.0f/s, p50 %s ms, p99 %s ms, "
        "max %s ms; NAKs %s" % (t2 - t1, fmt_int(b["ok"]), b["ok_s"], fmt_ms(b["p50"]),
                                fmt_ms(b["p99"]), fmt_ms(b["max"]), naks_text(b["naks"])))
    log("     new connects: %d of %d ok, p50 %s ms, max %s ms"
        % (bc["ok"], bc["n"], fmt_ms(bc["p50"]), fmt_ms(bc["max"])))
    log("     cpu (cores): " + cpu_line(res["baseline_cpu"]))

    a = res["attack"] = window_stats(fast, t2, t3)
    # p99 per third of the attack: with the default backend_timeout and
    # duration the breaker opens (first timeouts) in the last third
    th = [t2 + (t3 - t2) * k / 3 for k in range(4)]
    thirds = [window_stats(fast, th[k], th[k + 1]) for k in range(3)]
    res["attack_thirds"] = [x["p99"] for x in thirds]
    res["attack_thirds_ok_s"] = [x["ok_s"] for x in thirds]
    log("  2. attack (%.0f s, %d attackers on msgtype %d): fast route %s replies, %.0f/s, "
        "p50 %s ms, p99 %s ms, max %s ms; NAKs %s; unanswered at the end %d (%d > 1 s)"
        % (t3 - t2, args.attackers, HANG_TYPE, fmt_int(a["ok"]), a["ok_s"],
           fmt_ms(a["p50"]), fmt_ms(a["p99"]), fmt_ms(a["max"]), naks_text(a["naks"]),
           a["n_out"], a["stuck"]))
    log("     fast route per third of the attack: p99 %s ms; replies/s %s"
        % (" / ".join(fmt_ms(x) for x in res["attack_thirds"]),
           " / ".join("%.0f" % x for x in res["attack_thirds_ok_s"])))
    ar = res["attackers"] or {}
    rd = res["attackers_ready"]
    log("     attackers: %s connected in %s s; %s SENDs, %s ACKs, NAKs %s; closed by "
        "server %s" % (rd[0] if rd else "?", fmt_s(rd[1]) if rd else "?",
                       fmt_int(ar.get("sent", "?")), fmt_int(ar.get("ack", "?")),
                       naks_text(ar.get("nak", {})), ar.get("closed_by_server", "?")))
    m = res["metrics_attack"]
    bs = res["backend_attack"]
    log("     at the end of the attack: gateway route %d in flight %s, queued %s, breaker "
        "opened %s, rejected queue_full %s / breaker_open %s, failures %s; backend: %s "
        "hanging requests (max %s), %s connections (max %s)"
        % (HANG_TYPE, *(fmt_metric(m.get('%s{msgtype="%d"%s}' % (k, HANG_TYPE, extra)))
                        for k, extra in (("rainbow_route_forwards_in_flight", ""),
                                         ("rainbow_route_forwards_queued", ""),
                                         ("rainbow_route_breaker_opened_total", ""),
                                         ("rainbow_route_rejected_total",
                                          ',reason="queue_full"'),
                                         ("rainbow_route_rejected_total",
                                          ',reason="breaker_open"'),
                                         ("rainbow_route_failures_total", ""))),
           bs.get("hanging", "?"), bs.get("max_hanging", "?"), bs.get("conns", "?"),
           bs.get("max_conns", "?")))
    ac = res["attack_conn"] = connect_stats(conns, "attack")
    log("     new connects: %d of %d ok, p50 %s ms, max %s ms%s"
        % (ac["ok"], ac["n"], fmt_ms(ac["p50"]), fmt_ms(ac["max"]),
           ("; errors: " + "; ".join(ac["errors"])) if ac["errors"] else ""))
    log("     cpu (cores): " + cpu_line(res["attack_cpu"]))

    r = res["recovery"] = recovery_figures(fast, res["rec"], T0, t_end, thr_fast, thr_conn,
                                           args)
    log("  3. recovery (observed %.1f s after the attackers left; 'back' = p99 <= %s ms "
        "per %.1f s bin for the fast route, connect <= %s ms, from then on):"
        % (t_end - T0, fmt_ms(thr_fast), BIN_S, fmt_ms(thr_conn)))
    log("     fast route: first ACK after %s s, back to baseline after %s s, then p99 %s ms "
        "over %s s (%s replies/s); NAKs during recovery %s"
        % (fmt_s(r["fast_first"]), fmt_s(r["fast_back"]), fmt_ms(r["fast_p99_after"]),
           fmt_s(r["after_s"]), "%.0f" % r["fast_ok_s_after"] if r["fast_ok_s_after"]
           == r["fast_ok_s_after"] else "-", naks_text(r["naks"])))
    if r["timeline"] and (isinstance(r["fast_back"], str) or r["fast_back"] >= BIN_S):
        log("     fast timeline (t s: answers / p99 ms / max ms [/ waiting > %g s (oldest)]): "
            "%s" % (STUCK_S, " ".join(r["timeline"])))
    log("     new connects: %d probes; first ok after %s s, back to baseline after %s s, "
        "then p50 %s ms, max %s ms; slowest %s ms%s"
        % (r["conn_n"], fmt_s(r["conn_first"]), fmt_s(r["conn_back"]),
           fmt_ms(r["conn_p50_after"]), fmt_ms(r["conn_max_after"]), fmt_ms(r["conn_max"]),
           ("; errors: " + "; ".join(r["conn_errors"])) if r["conn_errors"] else ""))
    log("     cpu (cores): " + cpu_line(res["recovery_cpu"]))
    res["fast_lost"], res["fast_closed"] = fast.lost, fast.closed
    if fast.lost or fast.closed:
        log("     WARNING: fast clients: %d round trips unanswered for %d s (resent), %d "
            "connections closed by the gateway" % (fast.lost, fast.stuck_after, fast.closed))
    del res["fast"]


def fmt_metric(v):
    return "?" if v is None else "%d" % v


def fast_bin(fast, T0, i, thr_fast):
    """Bin i (BIN_S wide) after T0: (good, timeline text).  Good = at least one
    answer, all of them ACKs, their p99 within thr_fast, and no round trip
    outstanding at the bin's end for longer than STUCK_S."""
    s, e = T0 + i * BIN_S, T0 + (i + 1) * BIN_S
    sel = answers_between(fast.answers, s, e)
    lat = sorted((a[1] - a[0]) * 1e3 for a in sel)
    p99 = percentile(lat, 99)
    out = [x for x in fast.outstanding_ages(e) if x > STUCK_S]
    good = bool(sel) and all(a[2] for a in sel) and p99 <= thr_fast and not out
    # timeline: t / answers / p99 ms / max ms [/ waiting > STUCK_S (oldest)]
    return good, "%.1f:%d/%s/%s%s" % (i * BIN_S, len(sel), fmt_ms(p99),
                                       fmt_ms(lat[-1] if lat else float("nan")),
                                       "/%d(%.1fs)" % (len(out), max(out)) if out else "")


def recovery_figures(fast, rec, T0, t_end, thr_fast, thr_conn, args):
    r = {}
    after = answers_between(fast.answers, T0, t_end)
    r["naks"] = {}
    for a in after:
        if not a[2]:
            r["naks"][a[3]] = r["naks"].get(a[3], 0) + 1
    first = [a[1] for a in after if a[2] and a[0] >= T0]
    r["fast_first"] = (min(first) - T0) if first else None
    # 0.5 s bins: good = at least one answer, all of them ACKs, their p99
    # within thr_fast, and no round trip outstanding at the bin's end for
    # longer than STUCK_S.  "back" = start of the first bin from which every
    # later bin is good.
    nb = int((t_end - T0) / BIN_S)
    good, tl = [], []
    for i in range(nb):
        g, text = fast_bin(fast, T0, i, thr_fast)
        good.append(g)
        tl.append(text)
    back = None
    for i in range(nb - 1, -1, -1):
        if not good[i]:
            break
        back = i
    # The timeline up to one bin after "back" (at most 40 bins).
    tl = tl[:min(40, (back if back is not None else nb) + 1)]
    r["timeline"] = tl
    # (not before the first ACK, which may come late inside that bin)
    r["fast_back"] = (max(back * BIN_S, r["fast_first"] or 0.0) if back is not None
                      else ">%.0f" % (t_end - T0))
    s = T0 + (back * BIN_S if back is not None else 0)
    e = min(t_end, s + args.settle)
    r["after_s"] = e - s if back is not None else None
    if back is not None and e > s:
        ws = window_stats(fast, s, e)
        r["fast_p99_after"], r["fast_ok_s_after"] = ws["p99"], ws["ok_s"]
    else:
        r["fast_p99_after"] = r["fast_ok_s_after"] = float("nan")
    # connects: in start order
    rec = sorted(rec, key=lambda x: x[1])
    r["conn_n"] = len(rec)
    okc = [x for x in rec if x[2] is not None]
    r["conn_first"] = (okc[0][1] + okc[0][2] - T0) if okc else None
    back = None
    for x in reversed(rec):
        if x[2] is None or x[2] * 1e3 > thr_conn:
            break
        back = x
    if back is not None:
        r["conn_back"] = back[1] + back[2] - T0
        sel = sorted(x[2] * 1e3 for x in rec if x[1] >= back[1]
                     and x[1] + x[2] <= back[1] + back[2] + args.settle)
        r["conn_p50_after"], r["conn_max_after"] = percentile(sel, 50), sel[-1]
    else:
        r["conn_back"] = ">%.0f" % (t_end - T0)
        r["conn_p50_after"] = r["conn_max_after"] = float("nan")
    r["conn_max"] = max([x[2] * 1e3 for x in okc], default=float("nan"))
    r["conn_errors"] = sorted({x[3] for x in rec if x[3]})
    return r


def run_config(args, name, protected):
    log("")
    log("== faulty_route, %s" % name)
    tmp = tempfile.mkdtemp(prefix="rainbow-faulty-")
    res = {"name": name}
    backend = gw = None
    try:
        backend = subprocess.Popen([PY, str(SCRIPT), "--role", "backend", "--hang",
                                    str(args.hang)], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, preexec_fn=die_with_parent)
        line = backend.stdout.readline().decode().strip()
        if not line.isdigit():
            raise RuntimeError("backend did not start (said %r)" % line)
        bport = int(line)
        res["backend_pid"] = backend.pid
        gw = Gateway(args.bin, tmp, bport, args, protected)
        log("  protection: " + gw.protection)
        log("  backend_timeout %g s, backend_max_connections %d, hook pool default; backend "
            "on port %d: msgtype %d answers at once, msgtype %d after %g s"
            % (args.backend_timeout, args.pool, bport, FAST_TYPE, HANG_TYPE, args.hang))
        gw.start()
        t = time.monotonic()
        asyncio.run(scenario(args, gw, bport, res))
        report_config(args, res)
        res["scenario_s"] = time.monotonic() - t
        t = time.monotonic()
        res["gw_exit"] = gw.stop()
        res["gw_stop_s"] = time.monotonic() - t
        lines = gw.log_lines()
        log("  gateway: exit %s after SIGTERM (%.1f s); %d log line(s) at log_level %s%s"
            % (res["gw_exit"], res["gw_stop_s"], len(lines), args.log_level,
               "".join("\n    | " + l[:160] for l in lines[:4])))
        res["ok"] = True
    except Exception as e:
        log("  ERROR: %s: %s" % (type(e).__name__, e))
        if gw is not None:
            log("  gateway log tail:\n%s" % gw.log_tail())
        res["ok"] = False
    finally:
        if gw is not None:
            gw.stop()
        if backend is not None:
            try:
                backend.stdin.close()
            except OSError:
                pass
            stop_process(backend, 5.0)
        if args.keep:
            log("  kept %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return res


# ------------------------------------------------------------------ report

def ratio(res):
    try:
        a, b = res["attack"]["p99"], res["baseline"]["p99"]
        return a / b if b > 0 and a == a else float("nan")
    except (KeyError, TypeError):
        return float("nan")


def table(results):
    names = [r["name"] for r in results]

    def g(r, *path, f=str):
        try:
            v = r
            for p in path:
                v = v[p]
            return f(v)
        except (KeyError, TypeError, IndexError):
            return "?"

    def both(fn):
        return [fn(r) if r.get("ok") else "FAILED" for r in results]

    rows = [
        ("baseline", "fast replies", both(lambda r: g(r, "baseline", "ok", f=fmt_int))),
        ("baseline", "fast replies/s", both(lambda r: g(r, "baseline", "ok_s", f="{:.0f}".format))),
        ("baseline", "fast p50 / p99 ms", both(lambda r: "%s / %s" % (
            g(r, "baseline", "p50", f=fmt_ms), g(r, "baseline", "p99", f=fmt_ms)))),
        ("baseline", "connect p50 / max ms", both(lambda r: "%s / %s" % (
            g(r, "baseline_conn", "p50", f=fmt_ms), g(r, "baseline_conn", "max", f=fmt_ms)))),
        ("attack", "fast replies", both(lambda r: g(r, "attack", "ok", f=fmt_int))),
        ("attack", "fast replies/s", both(lambda r: g(r, "attack", "ok_s", f="{:.0f}".format))),
        ("attack", "fast NAKs", both(lambda r: g(r, "attack", "naks", f=naks_text))),
        ("attack", "fast p50 / p99 ms", both(lambda r: "%s / %s" % (
            g(r, "attack", "p50", f=fmt_ms), g(r, "attack", "p99", f=fmt_ms)))),
        ("attack", "fast max ms", both(lambda r: g(r, "attack", "max", f=fmt_ms))),
        ("attack", "fast p99 per third ms", both(lambda r: " / ".join(
            fmt_ms(x) for x in r.get("attack_thirds", ())) or "?")),
        ("attack", "fast replies/s per third", both(lambda r: " / ".join(
            "%.0f" % x for x in r.get("attack_thirds_ok_s", ())) or "?")),
        ("attack", "p99 attack / baseline", both(lambda r: "%.2fx" % ratio(r))),
        ("attack", "connect p50 / max ms", both(lambda r: "%s / %s (%s failed)" % (
            g(r, "attack_conn", "p50", f=fmt_ms), g(r, "attack_conn", "max", f=fmt_ms),
            g(r, "attack_conn", "failed")))),
        ("attack", "attacker SENDs", both(lambda r: g(r, "attackers", "sent", f=fmt_int))),
        ("attack", "attacker answers", both(lambda r: "ACK %s, NAK %s" % (
            g(r, "attackers", "ack"), g(r, "attackers", "nak", f=naks_text)))),
        ("recovery", "fast first ACK s", both(lambda r: g(r, "recovery", "fast_first", f=fmt_s))),
        ("recovery", "fast back to baseline s",
         both(lambda r: g(r, "recovery", "fast_back", f=fmt_s))),
        ("recovery", "fast p99 after ms", both(lambda r: g(r, "recovery", "fast_p99_after",
                                                            f=fmt_ms))),
        ("recovery", "connect first ok s", both(lambda r: g(r, "recovery", "conn_first",
                                                            f=fmt_s))),
        ("recovery", "connect back s", both(lambda r: g(r, "recovery", "conn_back", f=fmt_s))),
        ("recovery", "connect p50 / max after ms", both(lambda r: "%s / %s" % (
            g(r, "recovery", "conn_p50_after", f=fmt_ms),
            g(r, "recovery", "conn_max_after", f=fmt_ms)))),
        ("cpu attack", "client / attackers", both(lambda r: "%s / %s" % (
            g(r, "attack_cpu", "client", f="{:.2f}".format),
            g(r, "attack_cpu", "attackers", f="{:.2f}".format)))),
        ("cpu attack", "backend / gateway", both(lambda r: "%s / %s" % (
            g(r, "attack_cpu", "backend", f="{:.2f}".format),
            g(r, "attack_cpu", "gateway", f="{:.2f}".format)))),
        ("cpu attack", "machine / other", both(lambda r: "%s / %s" % (
            g(r, "attack_cpu", "machine", f="{:.2f}".format),
            g(r, "attack_cpu", "other", f="{:.2f}".format)))),
    ]
    w = [10, 27] + [max(14, len(n)) for n in names]
    for _, _, vals in rows:
        for i, v in enumerate(vals):
            w[2 + i] = max(w[2 + i], len(v))
    fmt = "%-*s | %-*s" + " | %*s" * len(names)

    def line(cols):
        a = [w[0], cols[0], w[1], cols[1]]
        for i, c in enumerate(cols[2:]):
            a += [w[2 + i], c]
        return fmt % tuple(a)
    out = [line(["phase", "figure"] + names), "-+-".join("-" * x for x in w)]
    out += [line([p, f] + vals) for p, f, vals in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--role", choices=("bench", "backend", "attackers"), default="bench",
                    help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=env("FAULTY_DURATION", 15.0),
                    help="seconds of the baseline and of the attack phase (FAULTY_DURATION)")
    ap.add_argument("--warmup", type=float, default=env("FAULTY_WARMUP", 1.0),
                    help="seconds before the baseline (FAULTY_WARMUP)")
    ap.add_argument("--first-warmup", type=float, default=env("FAULTY_FIRST_WARMUP", 10.0),
                    help="warm-up of the first configuration, seconds: the first 10 s or "
                         "so after the start run ~25%% slower on the test machine "
                         "(FAULTY_FIRST_WARMUP)")
    ap.add_argument("--fast", type=int, default=env("FAULTY_FAST", 50, int),
                    help="fast-route clients (FAULTY_FAST)")
    ap.add_argument("--attackers", type=int, default=env("FAULTY_ATTACKERS", 80, int),
                    help="clients on the hanging route (FAULTY_ATTACKERS)")
    ap.add_argument("--connects", type=int, default=env("FAULTY_CONNECTS", 10, int),
                    help="new connects measured per phase (FAULTY_CONNECTS)")
    ap.add_argument("--recovery-max", type=float, default=env("FAULTY_RECOVERY_MAX", 30.0),
                    help="longest recovery observed, seconds (FAULTY_RECOVERY_MAX)")
    ap.add_argument("--settle", type=float, default=env("FAULTY_SETTLE", 3.0),
                    help="recovery: seconds observed after getting back (FAULTY_SETTLE)")
    ap.add_argument("--probe-interval", type=float, default=0.2,
                    help="recovery: pause between connect probes, seconds")
    ap.add_argument("--backend-timeout", type=float, default=env("FAULTY_BACKEND_TIMEOUT", 10.0),
                    help="gateway backend_timeout (FAULTY_BACKEND_TIMEOUT)")
    ap.add_argument("--hang", type=float, default=None,
                    help="seconds the backend holds msgtype 7 (default backend_timeout + 5)")
    ap.add_argument("--pool", type=int, default=env("FAULTY_POOL", 64, int),
                    help="gateway backend_max_connections (FAULTY_POOL)")
    ap.add_argument("--backend-queue", type=int, default=10000,
                    help="gateway backend_max_queue")
    ap.add_argument("--connect-timeout", type=float, default=20.0,
                    help="a connect (up to HELLO) is given up after this many seconds")
    ap.add_argument("--configs", default=os.environ.get("FAULTY_CONFIGS",
                                                        "protected,unprotected"),
                    help="which configurations, comma-separated (FAULTY_CONFIGS)")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (gateway logs)")
    args = ap.parse_args()
    if args.hang is None:
        args.hang = args.backend_timeout + 5
    if args.role == "backend":
        return run_backend(args)
    if args.role == "attackers":
        return run_attackers(args)

    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    for c in configs:
        if c not in ("protected", "unprotected"):
            log("faulty_route: unknown configuration %r" % c)
            return 2
    args.bin = os.path.abspath(args.bin)
    log("== faulty_route: %d fast clients (QoS 1, msgtype %d) vs %d attackers (msgtype %d, "
        "hangs %g s > backend_timeout %g s); %g s baseline + %g s attack + recovery (<= %g s); "
        "%d connects per phase" % (args.fast, FAST_TYPE, args.attackers, HANG_TYPE, args.hang,
                                   args.backend_timeout, args.duration, args.duration,
                                   args.recovery_max, args.connects))
    if not os.access(args.bin, os.X_OK):
        log("  ERROR: %s missing (run make)" % args.bin)
        log("RESULT exit=error")
        return 2
    t_all = time.monotonic()
    # The fast clients keep every answer (hundreds of thousands of tuples);
    # the cyclic garbage collector's full passes would walk them all, inside
    # the measured windows.  Nothing here needs it: collect between
    # configurations instead.
    gc.disable()
    results = []
    warmup = args.warmup
    for i, c in enumerate(configs):
        gc.collect()
        args.warmup = max(warmup, args.first_warmup) if i == 0 else warmup
        results.append(run_config(args, c, c == "protected"))
    args.warmup = warmup
    total = time.monotonic() - t_all
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])

    log("")
    log("== faulty_route results (%d CPUs; load average at the end %s; whole run %.0f s)"
        % (os.cpu_count() or 1, load, total))
    log(table(results))
    log("  p99: over every fast-route answer (ACK or NAK) in the phase plus, as lower bounds, "
        "the round trips still unanswered at its end; replies = ACKs.")
    log("  recovery: seconds after the attackers disconnected; 'back' = from then on the "
        "fast route's p99 within 2x baseline p99 in every %.1f s bin (all ACKs, nothing "
        "waiting > %g s) / every connect within 2x baseline max (floors 5 ms / %g ms)."
        % (BIN_S, STUCK_S, CONN_FLOOR_MS))
    log("  cpu: cores used during the attack phase; client = this process (fast clients and "
        "connect probes), attackers = their own process.")
    kv = []
    for r in results:
        n = r["name"]
        if not r.get("ok"):
            log("BENCH faulty_route %s_p99_ratio=nan error=1" % n)
            kv.append("%s_ratio=nan" % n)
            continue
        b, a, rc = r["baseline"], r["attack"], r["recovery"]
        client = r["attack_cpu"].get("client", float("nan"))
        bound = int(max(client, r["baseline_cpu"].get("client", 0)) >= 0.85)
        if bound:
            log("  NOTE: %s: the client used >= 85%% of a core: fast-route figures may be "
                "limited by the client" % n)
        other = max(r["baseline_cpu"].get("other", 0), r["attack_cpu"].get("other", 0))
        if other >= 0.15:
            log("  NOTE: %s: processes outside the benchmark used up to %.2f cores during "
                "the baseline or the attack: the machine was not quiet, the ratio is noisy"
                % (n, other))
        fields = {
            "%s_p99_ratio" % n: "%.2f" % ratio(r),
            "baseline_p99_ms": fmt_ms(b["p99"]), "attack_p99_ms": fmt_ms(a["p99"]),
            "baseline_ok_s": "%.0f" % b["ok_s"], "attack_ok_s": "%.0f" % a["ok_s"],
            "attack_connect_max_ms": fmt_ms(r["attack_conn"]["max"]),
            "recovery_fast_s": fmt_s(rc["fast_back"]),
            "recovery_connect_s": fmt_s(rc["conn_back"]),
            "client_cpu": "%.2f" % client,
            "other_cpu": "%.2f" % r["attack_cpu"]["other"],
            "client_bound": bound,
        }
        log("BENCH faulty_route " + " ".join("%s=%s" % kvp for kvp in fields.items()))
        kv += ["%s_ratio=%.2f" % (n, ratio(r)), "%s_base_p99_ms=%s" % (n, fmt_ms(b["p99"])),
               "%s_attack_p99_ms=%s" % (n, fmt_ms(a["p99"])),
               "%s_base_ok_s=%.0f" % (n, b["ok_s"]), "%s_attack_ok_s=%.0f" % (n, a["ok_s"]),
               "%s_attack_conn_max_ms=%s" % (n, fmt_ms(r["attack_conn"]["max"])),
               "%s_recovery_fast_s=%s" % (n, fmt_s(rc["fast_back"])),
               "%s_recovery_connect_s=%s" % (n, fmt_s(rc["conn_back"])),
               "%s_client_cpu=%.2f" % (n, client), "%s_client_bound=%d" % (n, bound)]
    failed = not all(r.get("ok") for r in results)
    log("RESULT %s load=%s seconds=%.0f exit=%s"
        % (" ".join(kv), load.replace(" ", "/"), total, "error" if failed else "ok"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
