#!/usr/bin/python3
"""Durable QoS 1 / QoS 2 push throughput of one rainbow-server (bench/README.md).

Starts build/rainbow-server with a generated config (a free port on 127.0.0.1,
its own temporary data_dir, heartbeat 0, the chosen durability), connects ONE
device-session client (subprotocol rainbow.v2, ?X-DEVICEID=bench1) that answers
every pushed SEND at once (QoS 1: ACK; QoS 2: REC, then COM on REL), and drives
    POST /send/?device=bench1&msgtype=1&qos=Q&timeout=30   (100-byte body)
from C concurrent keep-alive HTTP/1.1 connections (raw asyncio, v1
signatures, Content-Length, JSON answers parsed) for a warm-up and then a measured window.
With --batch N (N > 1) each connection sends instead one
    POST /batch/  {"messages": [N x {"device": "bench1", "qos": Q, "msgtype": 1,
                                     "timeout": 30, "data_base64": <100 bytes>}]}
at a time (docs/rest-api.md "/batch/"), and the generated config raises
max_message_size (1m), session_max_messages and max_inflight_messages so that
the C * N messages in flight fit.

Reported (human lines, then one `RESULT key=value ...` line for bench/run):
  - delivered msgs/s: answers with "connections": 1 completed inside the window
    (with --batch: results with "connections": 1 in the answers completed
    inside the window);
  - p50 / p99 latency of those /send/ calls (write of the request to the whole
    answer read); with --batch, of the /batch/ calls (one figure per call of
    N messages, not per message);
  - rows left in the gateway's database (messages, deliveries) after the load
    stopped, the client answered everything and the gateway exited on SIGTERM
    (read with sqlite3 read-only); should be ~0;
  - CPU: this (client) process and the gateway, per second of wall time over
    the window (1.0 = one core busy), and the gateway's busiest threads.

It measures, it never fails on timing: the exit status is non-zero only when
the benchmark could not run (gateway did not start, client could not connect).
Everything listens on / connects to 127.0.0.1 only and stops by itself.

Python stdlib only: the HTTP connections and the WebSocket client are small
asyncio Protocols written here and in bench/benchlib.py.  A first version on
asyncio streams and the websockets library needed about 55 us of client CPU
per QoS 2 message and used ~90% of a core; these Protocols need about 32-42 us,
which matters on this 2-core machine where the client shares the CPU with the
gateway.  Usage:
    bench/durable.py --qos 1 --durability normal [--conns 64] [--duration 8] [--batch 50]
"""
import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import sqlite3
import sys
import tempfile
import time

import benchlib
from benchlib import (ACK, COM, REC, REL, SEND, TOKEN, Signer, WsClient, default_bin, log,
                      machine_cores, machine_cpu, percentile, proc_cpu, self_cpu, take_response,
                      thread_cpu)

DEVICE = "bench1"
BODY = bytes((i * 7 + 1) & 0xFF for i in range(100))   # 100-byte payload

# Packet first bytes (PROTOCOL.md A.2): cmd << 4 | dup << 3 | qos << 1.
ACK0, REC0, COM0 = bytes([ACK << 4]), bytes([REC << 4]), bytes([COM << 4])


# ------------------------------------------------------------------ gateway

class Gateway(benchlib.Gateway):
    def __init__(self, binary, tmp, durability, inflight, log_level, extra=None):
        super().__init__(binary, tmp, "bench.ini")
        self.data_dir = self.tmp / "data"
        self.db_path = self.data_dir / "rainbow.db"
        self.write_conf(dict({
            "port": self.port, "bind": "127.0.0.1", "api_port": 0,
            "data_dir": self.data_dir, "log_level": log_level, "log_file": "",
            "security_token": TOKEN, "api_signature": "v1",
            "connect_url": "", "forward_url": "", "close_url": "",
            "heartbeat": 0, "durability": durability,
            "max_inflight_messages": inflight, "retry_interval": 5,
            "shutdown_grace": 2, "max_connections": 1000,
        }, **(extra or {})), "bench/durable.py")

    def db_counts(self):
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=5)
        try:
            return {t: con.execute("SELECT count(*) FROM %s" % t).fetchone()[0]
                    for t in ("sessions", "messages", "deliveries", "upstream")}
        finally:
            con.close()


# ------------------------------------------------------------------ session client

class Device(WsClient):
    """One rainbow.v2 session client answering every push at once (QoS 1:
    ACK; QoS 2: REC, then COM on REL).  Every packet that arrived in one read
    is answered with one write, which keeps the Python side cheap."""

    def __init__(self):
        super().__init__(path=b"/connect/?X-DEVICEID=" + DEVICE.encode())
        self.sends = 0
        self.rels = 0
        self.other = 0
        self.last_frame = time.monotonic()

    def packets(self, pkts):
        out = []
        frame = self.frame
        for m in pkts:
            b0 = m[0]
            cmd = b0 >> 4
            if cmd == SEND:
                self.sends += 1
                q = (b0 >> 1) & 3
                if q == 1:
                    out.append(frame(ACK0 + m[3:5]))
                elif q == 2:
                    out.append(frame(REC0 + m[3:5]))
            elif cmd == REL:
                self.rels += 1
                out.append(frame(COM0 + m[1:3]))
            else:
                self.other += 1
        if out:
            self.last_frame = time.monotonic()
            self.transport.write(b"".join(out))


# ------------------------------------------------------------------ HTTP load

class HttpConn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: one /send/ (or /batch/) at a time,
    the next written as soon as the previous answer is complete (a /batch/
    refused as busy: after its retry_after)."""

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
        load.sent += load.batch

    def connection_lost(self, exc):
        if not self.load.stop:
            self.load.error("connection lost: %s" % (exc or "closed by server"))
        if not self.done.done():
            self.done.set_result(True)

    def data_received(self, data):
        self.buf += data
        got = take_response(self.buf)
        if got is None:
            return
        t1 = time.perf_counter()
        status, body, close = got
        if self.buf:
            self.load.error("unexpected bytes after an answer")
            self.buf.clear()
        delay = self.load.answer(status, body, t1 - self.t0, t1)
        if close:
            self.transport.close()
        elif delay:
            asyncio.get_running_loop().call_later(delay, self.send_next)
        else:
            self.send_next()


class Load:
    def __init__(self, port, qos, conns, warmup, duration, timeout, batch=1):
        self.port = port
        self.qos = qos
        self.conns = conns
        self.warmup = warmup
        self.duration = duration
        self.batch = batch
        self.signer = Signer(TOKEN)
        if batch > 1:
            # The same N messages every call; only the signature changes.
            self.path = "/batch/?"
            msg = json.dumps({"device": DEVICE, "qos": qos, "msgtype": 1, "timeout": timeout,
                              "data_base64": base64.b64encode(BODY).decode()},
                             separators=(",", ":"))
            self.body = ('{"messages":[%s]}' % ",".join([msg] * batch)).encode()
            ctype = "application/json"
        else:
            self.path = "/send/?device=%s&msgtype=1&qos=%d&timeout=%d" % (DEVICE, qos, timeout)
            self.body = BODY
            ctype = "application/octet-stream"
        self.head_tpl = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                         "Content-Type: " + ctype + "\r\n"
                         "Content-Length: %d\r\n\r\n")
        self.calls = 0            # calls answered inside the window (--batch)
        self.call_answers = {}    # (HTTP status, msg) -> count of /batch/ calls not answered
                                  # with results (--batch)
        self.busy = 0             # /batch/ calls refused as busy (retried after retry_after)
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
            path = self.path + q if self.batch <= 1 else self.path + q.lstrip("&")
            self.req = (self.head_tpl % (path, self.port, len(self.body))).encode() + self.body
        return self.req

    def error(self, what):
        self.errors[what] = self.errors.get(what, 0) + 1

    def answer(self, status, body, lat, t1):
        """Count one answer; -> seconds to wait before the next call (0: at once)."""
        try:
            j = json.loads(body)
        except ValueError:
            j = {}
        if not isinstance(j, dict):
            j = {}
        if self.batch > 1:
            return self.batch_answer(status, j, lat, t1)
        key = (status, j.get("connections"), j.get("failed"), j.get("pending"), j.get("msg"))
        self.answers[key] = self.answers.get(key, 0) + 1
        if status == 200 and j.get("connections") == 1:
            self.total_delivered += 1
            if self.w0 <= t1 <= self.w1:
                self.delivered += 1
                self.lat.append(lat)
        return 0

    def batch_answer(self, status, j, lat, t1):
        """A /batch/ answer: one result per message, counted like /send/
        answers; the latency is the call's.  A call refused as a whole
        ("busy") is sent again after its retry_after (at most 1 s)."""
        results = j.get("results") if status == 200 and j.get("status") == 0 else None
        if not isinstance(results, list):
            key = (status, j.get("msg"))
            self.call_answers[key] = self.call_answers.get(key, 0) + 1
            if j.get("msg") == "busy":
                self.busy += 1
                ra = j.get("retry_after")
                return min(1.0, ra) if isinstance(ra, (int, float)) and ra > 0 else 0.01
            return 0
        ok = 0
        answers = self.answers
        for r in results:
            if not isinstance(r, dict):
                r = {}
            key = (200, r.get("connections"), r.get("failed"), r.get("pending"), r.get("msg"))
            answers[key] = answers.get(key, 0) + 1
            if r.get("status") == 0 and r.get("connections") == 1:
                ok += 1
        self.total_delivered += ok
        if self.w0 <= t1 <= self.w1:
            self.calls += 1
            self.delivered += ok
            if ok:
                self.lat.append(lat)
        return 0

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
        self.machine, self.steal = machine_cores(m0, m1)
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
        await dev.open(gw.port, 10)
    except asyncio.TimeoutError:
        raise RuntimeError("session client: no HELLO within 10 s") from None
    if dev.hello.get("session_present") is None:
        log("  note: HELLO has no session_present: %r" % dev.hello)
    load = Load(gw.port, args.qos, args.conns, args.warmup, args.duration, args.timeout,
                args.batch)
    await load.run(gw.proc.pid)
    # Wait until the device has been quiet for 0.5 s (its last COMs/ACKs are
    # written), at most 5 s.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and time.monotonic() - dev.last_frame < 0.5:
        await asyncio.sleep(0.1)
    m = gw.metrics()
    await dev.close_after(0.1)
    return dev, load, m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qos", type=int, choices=(1, 2), required=True)
    ap.add_argument("--durability", choices=("off", "normal", "full"), required=True)
    ap.add_argument("--conns", type=int, default=64, help="concurrent HTTP connections (64)")
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds before measuring (1)")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds (8)")
    ap.add_argument("--timeout", type=int, default=30, help="/send/ timeout argument (30)")
    ap.add_argument("--batch", type=int, default=1,
                    help="messages per call: 1 = POST /send/ (default); N > 1 = one "
                    "POST /batch/ of N messages at a time per connection (at most 1000)")
    ap.add_argument("--inflight", type=int, default=None,
                    help="max_inflight_messages (5000, or conns x batch when larger)")
    ap.add_argument("--log-level", default="warn")
    ap.add_argument("--bin", default=default_bin())
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (log, database)")
    args = ap.parse_args()
    if not 1 <= args.batch <= 1000:
        ap.error("--batch takes 1 to 1000 messages")
    extra = {}
    if args.batch > 1:
        # All conns x batch messages may be in flight to the one session at
        # once: the session's cap (session_max_messages, 1000 by default,
        # drop_oldest past it) and max_inflight_messages must hold them (as
        # mosquitto's max_queued_messages / max_inflight_messages 0 do), and
        # the request body (max_message_size + 4 KB) a whole batch.
        extra = {"max_message_size": "1m",
                 "session_max_messages": max(1000, 2 * args.conns * args.batch)}
    if args.inflight is None:
        args.inflight = max(5000, args.conns * args.batch)

    scen = "QoS %d durability=%s" % (args.qos, args.durability)
    if args.batch > 1:
        scen += " /batch/ of %d" % args.batch
    log("== durable %s: %d HTTP conns, %g s warm-up + %g s measured, 100-byte body"
        % (scen, args.conns, args.warmup, args.duration))
    args.bin = os.path.abspath(args.bin)
    if not os.access(args.bin, os.X_OK):
        log("  ERROR: %s missing (run make)" % args.bin)
        return 2
    tmp = tempfile.mkdtemp(prefix="rainbow-bench-")
    gw = Gateway(args.bin, tmp, args.durability, args.inflight, args.log_level, extra)
    try:
        gw.start()
        dev, load, m = asyncio.run(bench(args, gw))
        t_stop = time.monotonic()
        rc = gw.stop(warn_kill=True)
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
        if args.batch > 1:
            log("  /batch/ calls  %.0f calls/s of %d messages answered in the window"
                % (load.calls / load.wall, args.batch))
            log("  /batch/ latency per call of %d messages: p50 %.2f ms, p99 %.2f ms, max %.2f ms"
                % (args.batch, p50, p99, (lat[-1] * 1e3) if lat else float("nan")))
        else:
            log("  /send/ latency p50 %.2f ms, p99 %.2f ms, max %.2f ms"
                % (p50, p99, (lat[-1] * 1e3) if lat else float("nan")))
        for (st, msg), n in sorted(load.call_answers.items(), key=lambda kv: -kv[1]):
            log("  calls refused  %7d x HTTP %d msg=%r%s" % (
                n, st, msg, " (sent again after retry_after)" if msg == "busy" else ""))
        for (st, conns, failed, pend, msg), n in sorted(load.answers.items(),
                                                        key=lambda kv: -kv[1]):
            log("  %s %7d x HTTP %d connections=%s failed=%s pending=%s%s"
                % ("results       " if args.batch > 1 else "answers       ",
                   n, st, conns, failed, pend, (" msg=%r" % msg) if msg else ""))
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
        drops = {k: v for k, v in m.items() if k.startswith("rainbow_drops_total{") and v}
        if drops:
            log("  WARNING: gateway drops %s" % drops)
        log("  rows left      messages=%d deliveries=%d upstream=%d sessions=%d "
            "(db+wal %.1f MB)" % (rows["messages"], rows["deliveries"], rows["upstream"],
                                  rows["sessions"], db_mb))
        glog = gw.log_lines()
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
            "%sexit=%s" % (args.qos, args.durability, args.conns, rate, p50, p99, left,
                           load.client_cpu, load.gw_cpu, load.machine, other, int(client_bound),
                           ("batch=%d calls_s=%.0f busy=%d " % (args.batch, load.calls / load.wall,
                                                                load.busy))
                           if args.batch > 1 else "", rc))
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
