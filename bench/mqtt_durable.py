#!/usr/bin/python3
"""Durable QoS 1 / QoS 2 end to end: the gateway (bench/durable.py) beside
mosquitto with persistence (bench/README.md, "Durable QoS").

For each QoS (--qos 1,2) and each of --rounds rounds (3; 1 with
BENCH_QUICK=1), one after the other:
  - the gateway, durability=normal and durability=full: bench/durable.py run
    as it is (one rainbow.v2 device session answering at once, 64 keep-alive
    HTTP connections doing POST /send/?device=..&qos=Q, v1-signed, 100-byte
    body; msgs/s = answers with "connections": 1);
  - the gateway, durability=normal, through POST /batch/ (target "batch"):
    bench/durable.py --batch N (--batch, 50): the same, but each of the 64
    connections sends one /batch/ of N messages at a time; msgs/s = results
    with "connections": 1; its p50/p99 are per call of N messages.  MQTT lets
    a publisher keep many PUBLISH packets in flight on one connection; an HTTP
    backend gets the same from /batch/ (many pushes per round trip);
  - mosquitto 2.0.11 (bench/peers.py Mosquitto: MQTT over TCP on 127.0.0.1,
    persistence true with a persistence_location in a temp dir,
    max_inflight_messages 0, max_queued_messages 1,000,000,
    set_tcp_nodelay true): ONE subscriber with a persistent session
    (clean session false, client id bench-sub, subscription at QoS Q to
    bench/durable) answering at once (QoS 1: PUBACK; QoS 2: PUBREC, then
    PUBCOMP on PUBREL), and --conns (64) publisher connections (in a
    process of their own), each publishing the next 100-byte message at QoS
    Q as soon as the previous one was acknowledged (PUBACK; PUBREC ->
    PUBREL -> PUBCOMP).  msgs/s = messages the subscriber received in the
    window; p50/p99 = publish -> subscriber latency (send time in the
    payload).  --mqtt-window W (1) lets each publisher keep W messages in
    flight instead of one (pipelined PUBLISHes; not in the default runs).
    The order of the runs rotates every round.

What mosquitto's persistence means: 2.0 keeps messages in memory and writes
its whole store to persistence_location every autosave_interval (1800 s by
default) and at shutdown; so, in a short run, the messages of the persistent
session sit in memory (the store file is written at SIGTERM; its size is
reported).  The gateway commits every message to SQLite before sending it
(normal: WAL, no fsync per commit; full: fsync per group commit).  This is
"mosquitto with persistence" as mosquitto users run it; --autosave N
(autosave_on_changes true, autosave_interval N) makes it save after every N
changes instead.

Python 3 standard library only: the MQTT 3.1.1 client is a small asyncio
Protocol written here.  Prints each run, a table (with the SQLite ceilings if
--ceiling-normal / --ceiling-full are given, as bench/run does), BENCH lines,
`RESULT key=value ...`, and saves build/bench/results/durable.json.
    bench/mqtt_durable.py [--qos 1,2] [--rounds 3] [--duration 5] [--batch 50]
                          [--targets normal,full,batch,mosquitto] [--mqtt-window 1]
"""
import argparse
import asyncio
import os
import shutil
import struct
import subprocess
import sys
import time

import benchlib
import peers
from peers import Mosquitto, Sampler, bench_line, fnum, log, median, ratio

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOPIC = b"bench/durable"
SUB_ID = b"bench-sub"
PAYLOAD_LEN = 100
TS = struct.Struct(">d")

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK = \
    1, 2, 3, 4, 5, 6, 7, 8, 9


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def s16(b):
    return len(b).to_bytes(2, "big") + b


def connect_pkt(cid, clean):
    var = s16(b"MQTT") + bytes([4, 0x02 if clean else 0x00]) + (60).to_bytes(2, "big")
    return packet(CONNECT << 4, var + s16(cid))


def parse(buf):
    """Whole MQTT packets at the front of bytearray buf -> ([(type, flags,
    body)], bytes used)."""
    out = []
    pos, n = 0, len(buf)
    while n - pos >= 2:
        mult, length, i = 1, 0, pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            length += (b & 0x7F) * mult
            mult *= 128
            i += 1
            if not b & 0x80:
                break
        if n - i < length:
            break
        out.append((buf[pos] >> 4, buf[pos] & 0x0F, bytes(buf[i:i + length])))
        pos = i + length
    return out, pos


class MqttConn(asyncio.Protocol):
    def __init__(self, cid, clean, on_packets):
        self.cid, self.clean, self.on_packets = cid, clean, on_packets
        self.buf = bytearray()
        self.connack = None
        self.transport = None

    def connection_made(self, t):
        self.transport = t
        t.get_extra_info("socket").setsockopt(6, 1, 1)      # TCP_NODELAY
        self.connack = asyncio.get_running_loop().create_future()
        t.write(connect_pkt(self.cid, self.clean))

    def data_received(self, data):
        self.buf += data
        pkts, used = parse(self.buf)
        del self.buf[:used]
        rest = []
        for p in pkts:
            if p[0] == CONNACK and not self.connack.done():
                self.connack.set_result(p[2])
            else:
                rest.append(p)
        if rest:
            self.on_packets(self, rest)

    def connection_lost(self, exc):
        if self.connack is not None and not self.connack.done():
            self.connack.set_exception(ConnectionError("closed before CONNACK"))


# ====================================================================== publishers (child)

async def publishers_main(port, qos, conns, seconds, window=1):
    """--role publishers: conns closed-loop publishers for `seconds`, each
    keeping `window` messages in flight (the next one published as soon as
    one is acknowledged); prints {"published", "cpu_s"} at the end."""
    loop = asyncio.get_running_loop()
    filler = bytes(PAYLOAD_LEN - TS.size)
    head = (PUBLISH << 4) | (qos << 1)
    state = {"published": 0, "stop": False}
    topic = s16(TOPIC)

    def publish(c):
        c.pid = c.pid % 65535 + 1
        body = topic + c.pid.to_bytes(2, "big") + TS.pack(time.monotonic()) + filler
        c.transport.write(bytes([head]) + varint(len(body)) + body)

    def on_packets(c, pkts):
        out = []
        for t, fl, body in pkts:
            if t == PUBACK or t == PUBCOMP:
                state["published"] += 1
                if not state["stop"]:
                    publish(c)
            elif t == PUBREC:
                out.append(packet((PUBREL << 4) | 0x2, body[:2]))
        if out:
            c.transport.write(b"".join(out))

    cs = []
    for i in range(conns):
        _, c = await loop.create_connection(
            lambda i=i: MqttConn(b"bench-pub-%d" % i, True, on_packets), "127.0.0.1", port)
        c.pid = 0
        await c.connack
        cs.append(c)
    for c in cs:
        for _ in range(window):
            publish(c)
    await asyncio.sleep(seconds)
    state["stop"] = True
    await asyncio.sleep(0.2)
    for c in cs:
        c.transport.write(b"\xe0\x00")
        c.transport.close()
    r = os.times()
    print('{"published": %d, "cpu_s": %.3f}' % (state["published"], r.user + r.system),
          flush=True)


# ====================================================================== subscriber (this process)

class Sub:
    def __init__(self, qos):
        self.qos = qos
        self.got = 0
        self.w0 = self.w1 = float("inf")
        self.in_win = 0
        self.lat = []
        self.last = time.monotonic()

    def on_packets(self, c, pkts):
        now = time.monotonic()
        out = []
        for t, fl, body in pkts:
            if t == PUBLISH:
                q = (fl >> 1) & 3
                n = int.from_bytes(body[:2], "big")
                pid = body[2 + n:4 + n]
                ts = TS.unpack_from(body, 4 + n)[0]
                self.got += 1
                if self.w0 <= now <= self.w1:
                    self.in_win += 1
                    self.lat.append(now - ts)
                if q == 1:
                    out.append(b"\x40\x02" + pid)
                elif q == 2:
                    out.append(b"\x50\x02" + pid)
            elif t == PUBREL:
                out.append(b"\x70\x02" + body[:2])
            elif t == SUBACK:
                self.suback.set_result(body)
        if out:
            self.last = now
            c.transport.write(b"".join(out))


async def mosquitto_run(a, qos, mq):
    loop = asyncio.get_running_loop()
    sub = Sub(qos)
    sub.suback = loop.create_future()
    _, c = await loop.create_connection(lambda: MqttConn(SUB_ID, False, sub.on_packets),
                                        "127.0.0.1", mq.port)
    ack = await asyncio.wait_for(c.connack, 5)
    if ack[1:2] != b"\x00":
        raise RuntimeError("subscriber CONNACK %r" % ack)
    c.transport.write(packet((SUBSCRIBE << 4) | 0x2, (1).to_bytes(2, "big") + s16(TOPIC) +
                             bytes([qos])))
    granted = await asyncio.wait_for(sub.suback, 5)
    if granted[2:3] != bytes([qos]):
        raise RuntimeError("SUBACK granted %r, asked QoS %d" % (granted[2:], qos))
    seconds = a.warmup + a.duration
    child = await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), "--role", "publishers", "--port",
        str(mq.port), "--qos", str(qos), "--conns", str(a.conns), "--seconds", str(seconds),
        "--mqtt-window", str(a.mqtt_window), stdout=subprocess.PIPE,
        preexec_fn=peers.die_with_parent)
    t0 = time.monotonic()
    sub.w0, sub.w1 = t0 + a.warmup, t0 + a.warmup + a.duration
    with Sampler(mq.pids) as ss:
        await asyncio.sleep(a.warmup)
        s0 = os.times()
        pc0 = peers.proc_cpu(child.pid) or 0.0
        await asyncio.sleep(a.duration)
        s1 = os.times()
        pc1 = peers.proc_cpu(child.pid) or pc0
        out, _ = await child.communicate()
        # the last messages arrive
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and time.monotonic() - sub.last < 0.3:
            await asyncio.sleep(0.05)
    c.transport.write(b"\xe0\x00")
    c.transport.close()
    pub = peers.last_json(out.decode()) or {}
    lat = sorted(sub.lat)
    wall = a.duration
    r = {"msgs_s": sub.in_win / wall,
         "p50_ms": benchlib.percentile(lat, 50) * 1e3, "p99_ms": benchlib.percentile(lat, 99) * 1e3,
         "published": pub.get("published"), "received": sub.got,
         "server_cores": ss.cores(sub.w0, sub.w1), "server_rss_mb": ss.rss_peak_kb() / 1024.0,
         "sub_cores": ((s1.user + s1.system) - (s0.user + s0.system)) / wall,
         "pub_cores": (pc1 - pc0) / wall, "machine_cores": ss.machine_cores(sub.w0, sub.w1)}
    r["client_cpu"] = r["sub_cores"] + r["pub_cores"]
    r["client_bound"] = max(r["sub_cores"], r["pub_cores"]) >= 0.85
    r["other_cpu"] = r["machine_cores"] - r["server_cores"] - r["client_cpu"]
    r["cpu_us"] = r["server_cores"] / r["msgs_s"] * 1e6 if r["msgs_s"] else float("nan")
    return r


def run_mosquitto(a, qos):
    mq = Mosquitto(autosave_interval=a.autosave if a.autosave else None,
                   autosave_on_changes=bool(a.autosave), keep=True)
    try:
        mq.start()
        r = asyncio.run(mosquitto_run(a, qos, mq))
        r["store_kb_during"] = store_kb(mq)
    finally:
        rc = mq.stop()
        r_store = store_kb(mq)
        shutil.rmtree(mq.tmp, ignore_errors=True)
    r["exit"] = rc
    r["store_kb_at_exit"] = r_store
    return r


def store_kb(mq):
    try:
        return (mq.store / "mosquitto.db").stat().st_size / 1024.0
    except OSError:
        return 0.0


def run_mosquitto_logged(a, qos):
    r = run_mosquitto(a, qos)
    log("  mosquitto        QoS %d: %9s msgs/s  p50 %6s ms  p99 %6s ms | server %s cores "
        "(%s us/msg); client sub %s + pub %s cores; %s published, %s received%s%s"
        % (qos, fnum(r["msgs_s"], ","), fnum(r["p50_ms"], "%.2f"), fnum(r["p99_ms"], "%.2f"),
           fnum(r["server_cores"], "%.2f"), fnum(r["cpu_us"], "%.1f"),
           fnum(r["sub_cores"], "%.2f"), fnum(r["pub_cores"], "%.2f"),
           fnum(r["published"], ","), fnum(r["received"], ","),
           "; CLIENT-BOUND" if r["client_bound"] else "",
           "; OTHER LOAD %.2f cores" % r["other_cpu"] if r["other_cpu"] >= 0.15 else ""))
    log("                   store file %d bytes before SIGTERM, %d bytes after (exit %s)"
        % (r["store_kb_during"] * 1024, r["store_kb_at_exit"] * 1024, r["exit"]))
    return r


def run_gateway(a, qos, target):
    """bench/durable.py as it is (target normal or full), or at durability
    normal with --batch (target batch); its RESULT line as a dict."""
    dur = "normal" if target == "batch" else target
    argv = [sys.executable, os.path.join(BENCH_DIR, "durable.py"), "--qos", str(qos),
            "--durability", dur, "--conns", str(a.conns), "--warmup", str(a.warmup),
            "--duration", str(a.duration), "--bin", a.bin]
    if target == "batch":
        argv += ["--batch", str(a.batch)]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                       timeout=a.warmup + a.duration + 120)
    res = {}
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            res = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    if not res or res.get("exit") == "error":
        raise RuntimeError("durable.py %s QoS %d failed:\n%s" % (target, qos, p.stdout[-1500:]))
    r = {}
    for k, v in res.items():
        try:
            r[k] = float(v)
        except ValueError:
            r[k] = v
    r["client_bound"] = r.get("client_bound") == 1.0
    r["cpu_us"] = r["gw_cpu"] / r["msgs_s"] * 1e6 if r.get("msgs_s") else float("nan")
    notes = [l.strip() for l in p.stdout.splitlines()
             if "WARNING" in l or "client errors" in l or "FAILED" in l or "calls refused" in l]
    r["notes"] = notes
    log("  gateway %-8s QoS %d: %9s msgs/s  p50 %6s ms  p99 %6s ms | gateway %s cores (%s "
        "us/msg); client %s cores; rows left %s%s%s"
        % (target_label(a, target), qos, fnum(r["msgs_s"], ","), fnum(r["p50_ms"], "%.2f"),
           fnum(r["p99_ms"], "%.2f"),
           fnum(r["gw_cpu"], "%.2f"), fnum(r["cpu_us"], "%.1f"), fnum(r["client_cpu"], "%.2f"),
           fnum(r.get("left")), "; CLIENT-BOUND" if r["client_bound"] else "",
           "; OTHER LOAD %.2f cores" % r["other_cpu"] if r.get("other_cpu", 0) >= 0.15 else ""))
    for n in notes[:3]:
        log("      %s" % n)
    return r


def target_label(a, t):
    """normal, full, mosquitto; batch50 for the /batch/ runs."""
    return "batch%d" % a.batch if t == "batch" else t


def main():
    quick = os.environ.get("BENCH_QUICK") == "1"
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--role", default="main", choices=("main", "publishers"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--qos", default="1,2")
    ap.add_argument("--rounds", type=int, default=1 if quick else 3)
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--warmup", type=float, default=0.5 if quick else 1.0)
    ap.add_argument("--duration", type=float, default=2.0 if quick else 5.0)
    ap.add_argument("--targets", default="normal,full,batch,mosquitto",
                    help="gateway durability normal / full through /send/, normal through "
                    "/batch/ (batch), mosquitto (normal,full,batch,mosquitto)")
    ap.add_argument("--batch", type=int, default=50,
                    help="messages per /batch/ call of the batch target (50)")
    ap.add_argument("--mqtt-window", type=int, default=1,
                    help="messages each mosquitto publisher keeps in flight (1)")
    ap.add_argument("--autosave", type=int, default=0,
                    help="mosquitto autosave_on_changes with this autosave_interval (0: "
                    "mosquitto's default, a save every 1800 s and at exit)")
    ap.add_argument("--ceiling-normal", type=float, default=float("nan"))
    ap.add_argument("--ceiling-full", type=float, default=float("nan"))
    ap.add_argument("--bin", default=benchlib.default_bin())
    a = ap.parse_args()
    if a.role == "publishers":
        asyncio.run(publishers_main(a.port, int(a.qos), a.conns, a.seconds, a.mqtt_window))
        return 0
    a.bin = os.path.abspath(a.bin)
    peers.install_signal_handlers()
    peers.cleanup_leftovers()
    if not 1 <= a.batch <= 1000:
        ap.error("--batch takes 1 to 1000 messages")
    qoss = [int(q) for q in a.qos.split(",") if q]
    targets = [t for t in a.targets.split(",") if t]
    log("== durable: QoS %s end to end, gateway (bench/durable.py, durability %s%s) vs mosquitto "
        "with persistence (persistent session, MQTT over TCP%s); %d round(s) of %g s warm-up + "
        "%g s, %d publisher connections%s"
        % ("/".join(map(str, qoss)),
           "/".join(t for t in targets if t not in ("mosquitto", "batch")),
           "; normal through /batch/ of %d" % a.batch if "batch" in targets else "",
           ", %d messages in flight per publisher" % a.mqtt_window if a.mqtt_window > 1 else "",
           a.rounds, a.warmup, a.duration, a.conns, " (BENCH_QUICK)" if quick else ""))
    if not os.access(a.bin, os.X_OK):
        log("  ERROR: %s missing (run make)" % a.bin)
        log("RESULT exit=error")
        return 2
    res = {(t, q): [] for t in targets for q in qoss}
    failed = []
    for q in qoss:
        for rnd in range(a.rounds):
            k = rnd % len(targets)
            for t in targets[k:] + targets[:k]:
                try:
                    r = run_mosquitto_logged(a, q) if t == "mosquitto" else run_gateway(a, q, t)
                    res[(t, q)].append(r)
                except Exception as e:
                    failed.append("%s QoS %d: %s" % (t, q, e))
                    log("  %s QoS %d FAILED: %s: %s" % (t, q, type(e).__name__, e))
    return report(a, qoss, targets, res, failed)


def report(a, qoss, targets, res, failed):
    peers.capture()
    def med(t, q, k):
        return median([r.get(k) for r in res.get((t, q), []) if isinstance(r.get(k), float)])
    log("\n== Durable QoS results (median of %d round(s); %d CPUs; load average %s)"
        % (a.rounds, os.cpu_count(), " ".join(open("/proc/loadavg").read().split()[:3])))
    log("workload: gateway: POST /send/?device=bench1&qos=Q (100-byte body, v1-signed) from %d "
        "keep-alive HTTP connections to ONE rainbow.v2 device session that ACKs / RECs+COMs at "
        "once; msgs/s = answers with connections=1" % a.conns)
    if "batch" in targets:
        log("          gateway batch %d: the same at durability normal, but each connection "
            "sends one POST /batch/ of %d messages at a time; msgs/s = results with "
            "connections=1; p50/p99 per /batch/ call" % (a.batch, a.batch))
    log("          mosquitto: %d MQTT publishers (QoS Q, closed loop%s) to ONE persistent-session "
        "subscriber (clean session false, QoS Q); msgs/s = messages it received; persistence "
        "true (store written every autosave_interval and at exit)"
        % (a.conns, ", %d in flight each" % a.mqtt_window if a.mqtt_window > 1 else ""))
    log("          %g s warm-up + %g s measured per run" % (a.warmup, a.duration))
    log("")
    log("%-24s | %10s | %7s | %7s | %9s | %10s | %9s | %s"
        % ("scenario", "msgs/s", "p50 ms", "p99 ms", "server us", "SQLite ceil", "vs mosq.",
           "notes"))
    log("-" * 25 + "+" + "-" * 12 + "+" + "-" * 9 + "+" + "-" * 9 + "+" + "-" * 11 + "+" +
        "-" * 12 + "+" + "-" * 11 + "+------")
    for q in qoss:
        mq = med("mosquitto", q, "msgs_s")
        for t in targets:
            rr = res.get((t, q), [])
            notes = []
            if t == "mosquitto":
                name = "mosquitto QoS %d" % q
                cl = med(t, q, "client_cpu")
                notes.append("cpu client %s (sub %s, pub %s) server %s"
                             % (fnum(cl, "%.2f"), fnum(med(t, q, "sub_cores"), "%.2f"),
                                fnum(med(t, q, "pub_cores"), "%.2f"),
                                fnum(med(t, q, "server_cores"), "%.2f")))
                ceil = "-"
                vs = "-"
            else:
                name = "gateway QoS %d %s" % (q, "batch %d" % a.batch if t == "batch" else t)
                notes.append("cpu client %s gw %s; rows left %s"
                             % (fnum(med(t, q, "client_cpu"), "%.2f"),
                                fnum(med(t, q, "gw_cpu"), "%.2f"),
                                ",".join(fnum(r.get("left")) for r in rr) or "?"))
                c = a.ceiling_full if t == "full" else a.ceiling_normal
                ceil = fnum(c, ",")
                vs = fnum(ratio(med(t, q, "msgs_s"), mq), "%.2fx")
            if any(r.get("client_bound") for r in rr):
                notes.append("CLIENT-BOUND in %d" % sum(bool(r.get("client_bound")) for r in rr))
            oth = med(t, q, "other_cpu")
            if oth == oth and oth >= 0.15:
                notes.append("OTHER LOAD %.2f cores" % oth)
            if not rr:
                notes = ["FAILED (see above)"]
            log("%-24s | %10s | %7s | %7s | %9s | %10s | %9s | %s"
                % (name, fnum(med(t, q, "msgs_s"), ","), fnum(med(t, q, "p50_ms"), "%.2f"),
                   fnum(med(t, q, "p99_ms"), "%.2f"), fnum(med(t, q, "cpu_us"), "%.1f"), ceil, vs,
                   "; ".join(notes)))
    log("rounds: " + "; ".join("%s QoS %d: %s" % (t, q, ", ".join(fnum(r.get("msgs_s"), ",")
                                                                  for r in res[(t, q)]))
                               for q in qoss for t in targets))
    log("server us = server CPU per message (gateway process; mosquitto process). The gateway's "
        "p50/p99 is the /send/ round trip (push -> device ack -> answer)%s; mosquitto's is publish "
        "-> subscriber receipt." % (", for batch %d the /batch/ call's (all %d messages pushed "
                                    "and acknowledged)" % (a.batch, a.batch)
                                    if "batch" in targets else ""))
    for f in failed:
        log("FAILED: %s" % f)
    summary = []
    for q in qoss:
        for t in [x for x in targets if x != "mosquitto"]:
            x, y = med(t, q, "msgs_s"), med("mosquitto", q, "msgs_s")
            if t == "batch":
                how = "durability=normal, POST /batch/ of %d messages per call" % a.batch
                scen = "durable QoS %d end to end, /batch/ of %d (durability=normal)" % (q, a.batch)
            else:
                how = "durability=%s" % t
                scen = "durable QoS %d end to end (durability=%s)" % (q, t)
            bench_line("durable_qos%d_%s" % (q, t), x, y,
                       "msgs/s end to end (%s; peer=mosquitto with persistence, "
                       "persistent session; higher is better)" % how)
            row = {
                "scenario": scen,
                "key": "durable_qos%d_%s" % (q, t), "unit": "msgs/s", "peer": "mosquitto",
                "gateway": x, "peer_value": y, "ratio": ratio(x, y),
                "gw_p50_ms": med(t, q, "p50_ms"), "gw_p99_ms": med(t, q, "p99_ms"),
                "peer_p50_ms": med("mosquitto", q, "p50_ms"),
                "peer_p99_ms": med("mosquitto", q, "p99_ms"),
                "gw_cpu_us": med(t, q, "cpu_us"), "peer_cpu_us": med("mosquitto", q, "cpu_us")}
            if t == "batch":
                row["batch"] = a.batch
                row["note"] = "gateway p50/p99 per /batch/ call of %d messages" % a.batch
            summary.append(row)
        bench_line("durable_qos%d_cpu_per_msg" % q, med("normal", q, "cpu_us"),
                   med("mosquitto", q, "cpu_us"),
                   "us of server CPU per message (gateway durability=normal; lower is better)")
    ok = all(res.get(k) for k in res) and not failed
    peers.save_result("durable", {
        "table": peers.end_capture(), "ok": ok, "tool": "python", "params": vars(a),
        "rounds": {"%s_qos%d" % k: v for k, v in res.items()}, "failed": failed,
        "summary": summary,
        "ceilings": {"normal": a.ceiling_normal, "full": a.ceiling_full},
        "versions": dict(peers.versions(), gateway=peers.gateway_version(a.bin),
                         commit=peers.git_commit())})
    kv = []
    for q in qoss:
        for t in targets:
            kv.append("%s_q%d=%s" % (t, q, fnum(med(t, q, "msgs_s"))))
            kv.append("%s_q%d_p99_ms=%s" % (t, q, fnum(med(t, q, "p99_ms"), "%.2f")))
    log("RESULT %s exit=%s" % (" ".join(kv), "ok" if ok else "error"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
