#!/usr/bin/python3
"""QoS 0 fan-out, the gateway beside nginx + nchan (bench/README.md, "Fan-out").

One channel of --sizes subscribers (1,000 and 10,000), WebSocket clients on
several 127.0.0.x source addresses, and --publishers (4) keep-alive HTTP
publishers posting flat out (the next POST as soon as the previous answer
arrived; a refusal, HTTP 429/503 or a body with retry_after, is counted and its
retry_after honoured, at most --retry-cap s, 5):

  - gateway: rainbow-server (generated config: free port on 127.0.0.1,
    heartbeat 0, durability off, max_connections 20000, a token_secret);
    subscribers connect to /connect/?token=<HS256 JWT with channels
    ["bench"]> (rainbow.v2) and so join the channel without a backend;
    publishers POST /send/?channel=bench&msgtype=1&qos=0 (v1-signed);
  - nchan: nginx 1.22 + nchan 1.3.6 (bench/peers.py Nchan: 2 workers),
    subscribers on /sub/bench (nchan_subscriber websocket), publishers POST
    /pub/bench.

The subscribers are build/bench/loadgen (mode fanout) when it is built, else
bench/pyload.py fanout (same options and JSON; the output says which); the
publishers are `bench/pyload.py publish` (Python: a few hundred to a few
thousand messages/s is all either server accepts here), started when every
subscriber is open and stopped after the subscribers' window.  Each message is
--size (32) bytes starting "t=<CLOCK_REALTIME ns>;", so every delivery gives
its publish->delivery latency (p50/p99 over every delivery in the window, at
the rate the server accepted: with a backlog it grows with it).
Deliveries/s = WebSocket messages received by all subscribers in the measured
window (after --warmup).  Server CPU (gateway process; nginx master +
workers) from /proc during the window and per delivery; peak RSS.  The
publishers stop when the server's RSS passes --rss-limit-mb (3000): the
output says so.

--qos 1 (or 2) pushes acknowledged deliveries instead: each subscriber
answers every SEND (ACK, or REC then COM) and a publisher's /send/ answers
once every subscriber acknowledged, so --publishers is the number of pushes
in flight. The gateway runs alone then (nchan has no acknowledged delivery;
the issue's peer for it, the original Python Rainbow, is not installable
here: not in Debian, and PyPI is out of reach); results go to
build/bench/results/fanout_qos<Q>.json and BENCH lines fanout_qos<Q>_<size>.
    bench/fanout.py --qos 1 --sizes 100 --targets gateway

--rounds (3; 1 with BENCH_QUICK=1) rounds, gateway and nchan one after the
other (order swapped every round), medians reported.  Prints a table, BENCH
lines, `RESULT key=value ...` for bench/run, and saves
build/bench/results/fanout.json.  Never fails on timing.
    bench/fanout.py [--sizes 1000,10000] [--rounds 3] [--duration 4] [--targets gateway,nchan]
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import benchlib
import peers
import pyload
from peers import Nginx, Sampler, bench_line, fnum, log, ratio

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOKEN_SECRET = "bench-token-secret-0123456789abcdef"
CHANNEL = "bench"


def sub_argv(a, url, proto, subs, ready):
    """The subscribers: loadgen fanout, else bench/pyload.py fanout (same options)."""
    prog, tool = peers.load_prog()
    return prog + ["fanout", url, "--proto", proto, "--conns", str(subs),
                   "--sources", str(a.sources), "--warmup", str(a.warmup),
                   "--duration", str(a.duration), "--ready-file", ready, "--quiet"], tool


def pub_argv(a, url, sign, guard_pids):
    """The publishers: bench/pyload.py publish (flat out until SIGTERM)."""
    argv = [sys.executable, os.path.join(BENCH_DIR, "pyload.py"), "publish", "--url", url,
            "--publishers", str(a.publishers), "--size", str(a.size),
            "--guard-pids", ",".join(str(p) for p in guard_pids),
            "--guard-rss-mb", str(a.rss_limit_mb), "--retry-cap", str(a.retry_cap)]
    if sign:
        argv += ["--sign-token", sign]
    return argv


def wait_ready(proc, path, timeout):
    """Poll for the subscriber tool's ready file; its JSON, or None if the
    tool exited or the time ran out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                with open(path) as f:
                    return json.loads(f.read())
            except ValueError:
                pass
        if proc.poll() is not None:
            return None
        time.sleep(0.02)
    return None


def measure(name, port, sub_path, proto, pub_path, sign, subs, pids_fn, a, tmp):
    ready = tempfile.mktemp(prefix="ready-%s-%d-" % (name, subs), suffix=".json", dir=tmp)
    argv, tool = sub_argv(a, "ws://127.0.0.1:%d%s" % (port, sub_path), proto, subs, ready)
    pub = None
    sub = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL, preexec_fn=peers.die_with_parent)
    try:
        with Sampler(pids_fn) as ss:
            rj = wait_ready(sub, ready, a.open_timeout)
            if rj is None:
                sub.kill()
                out, err = sub.communicate(timeout=10)
                raise RuntimeError("%s: subscribers not open within %.0f s: %s" % (
                    name, a.open_timeout, (peers.last_json(out.decode()) or {}).get(
                        "fail_reasons") or err.decode(errors="replace")[-400:]))
            t_ready = time.monotonic()
            pub = subprocess.Popen(pub_argv(a, "http://127.0.0.1:%d%s" % (port, pub_path), sign,
                                            pids_fn()),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   stdin=subprocess.PIPE, preexec_fn=peers.die_with_parent)
            try:
                out, err = sub.communicate(timeout=a.warmup + a.duration + 120)
            except subprocess.TimeoutExpired:
                sub.kill()
                out, err = sub.communicate(timeout=10)
            t_end = time.monotonic()
            pub.send_signal(signal.SIGTERM)
            pout, perr = pub.communicate(timeout=20)
    finally:
        for p in (sub, pub):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
    j = peers.last_json(out.decode())
    pj = peers.last_json(pout.decode())
    if not j or j.get("error") or not j.get("window_s"):
        raise RuntimeError("%s: the subscriber tool failed (exit %s): %s %s"
                           % (name, sub.returncode, (j or {}).get("error", ""),
                              err.decode(errors="replace")[-400:]))
    if not pj:
        raise RuntimeError("%s: the publishers failed (exit %s): %s"
                           % (name, pub.returncode, perr.decode(errors="replace")[-400:]))
    win = j["window_s"]
    w0 = t_ready + (j.get("warmup_s") or a.warmup)
    w1 = min(w0 + win, t_end)
    acc = sum(ok for t, ok, ref in pj["series"] if w0 <= t < w1)
    ref = sum(rf for t, ok, rf in pj["series"] if w0 <= t < w1)
    r = {"tool": tool, "subs": subs, "opened": j.get("opened"), "failed": j.get("failed", 0),
         "open_s": j.get("open_s"), "deliveries_s": j.get("rate"),
         "deliveries": j.get("deliveries"), "stamped": j.get("stamped"),
         "publishes_s": acc / win, "refused_s": ref / win, "accepted": pj["accepted"],
         "refused": pj["refused"], "pub_errors": pj["errors"],
         "p50_ms": peers.lat_ms(j, "latency_ms", "p50"),
         "p99_ms": peers.lat_ms(j, "latency_ms", "p99"),
         "max_ms": peers.lat_ms(j, "latency_ms", "max"),
         "per_conn_min": j.get("per_conn_min"), "per_conn_max": j.get("per_conn_max"),
         "closed": j.get("closed", 0), "window_s": win,
         "guard_stopped_after_s": (pj["guard_stopped_at"] - w0)
         if pj.get("guard_stopped_at") else None}
    r["server_cores"] = ss.cores(w0, w1)
    r["machine_cores"] = ss.machine_cores(w0, w1)
    r["server_rss_mb"] = ss.rss_peak_kb() / 1024.0
    d = r["deliveries_s"] or float("nan")
    r["server_us_per_1k"] = r["server_cores"] / d * 1e9 if d == d and d else float("nan")
    r["sub_cores"] = j.get("cpu_window_cores", float("nan"))
    r["pub_cores"] = pj["cpu_s"] / pj["wall_s"] if pj.get("wall_s") else float("nan")
    r["client_cores"] = r["sub_cores"] + r["pub_cores"]
    r["client_max_cores"] = max(j.get("cpu_window_max_process_cores", r["sub_cores"]),
                                r["pub_cores"])
    r["client_bound"] = bool(j.get("loadgen_bound")) or r["pub_cores"] >= 0.85
    r["other_cores"] = r["machine_cores"] - r["server_cores"] - r["client_cores"]
    return r


def run_gateway(a, tmpbase, subs):
    d = tempfile.mkdtemp(prefix="gw-", dir=tmpbase)
    gw = benchlib.Gateway(a.bin, d, "fanout.ini")
    gw.write_conf({
        "port": gw.port, "bind": "127.0.0.1", "api_port": 0, "data_dir": d + "/data",
        "log_level": "warn", "log_file": "", "security_token": benchlib.TOKEN,
        "api_signature": "v1", "connect_url": "", "close_url": "", "forward_url": "",
        "heartbeat": 0, "durability": "off", "shutdown_grace": 2, "max_connections": 20000,
        "token_secret": TOKEN_SECRET}, "bench/fanout.py")
    tok = pyload.hs256_token(TOKEN_SECRET, {"sub": "bench", "exp": int(time.time()) + 3600,
                                            "channels": [CHANNEL]})
    try:
        gw.start()
        m0 = gw.metrics()
        r = measure("gateway", gw.port, "/connect/?token=" + tok, "rainbow",
                    "/send/?channel=%s&msgtype=1&qos=%d" % (CHANNEL, a.qos), benchlib.TOKEN, subs,
                    lambda: [gw.proc.pid], a, tmpbase)
        m = gw.metrics()
        r["drops"] = {k.split('"')[1]: v - m0.get(k, 0) for k, v in m.items()
                      if k.startswith("rainbow_drops_total{") and v - m0.get(k, 0)}
        r["log"] = gw.log_lines()[:5]
        return r
    finally:
        t = time.monotonic()
        rc = gw.stop(timeout=10, warn_kill=True)
        if rc not in (0, None) or time.monotonic() - t > 5:
            log("  gateway exit status %s, %.1f s after SIGTERM" % (rc, time.monotonic() - t))


def run_nchan(a, tmpbase, subs):
    ng = Nginx(nchan=True)
    try:
        ng.start()
        r = measure("nchan", ng.port, "/sub/%s" % CHANNEL, "ws", "/pub/%s" % CHANNEL, "",
                    subs, ng.pids, a, tmpbase)
        r["log"] = [l for l in ng.log_tail(5).splitlines() if l and not l.startswith("[")][:5]
        return r
    finally:
        ng.stop()


def show(name, r):
    log("  %-8s %6d subs: %10s deliveries/s  %8s msgs/s accepted%s  latency p50 %s p99 %s ms | "
        "server %s cores (%s ms per 1k), RSS %s MB; client (%s) %s cores"
        % (name, r["subs"], fnum(r["deliveries_s"], ","), fnum(r["publishes_s"], ","),
           (" (%s/s refused)" % fnum(r["refused_s"], ",")) if r["refused"] else "",
           fnum(r["p50_ms"], "%.1f"), fnum(r["p99_ms"], "%.1f"),
           fnum(r["server_cores"], "%.2f"), fnum(r["server_us_per_1k"] / 1e3, "%.2f"),
           fnum(r["server_rss_mb"], "%.0f"), r["tool"], fnum(r["client_cores"], "%.2f")))
    notes = []
    if r["pub_errors"]:
        notes.append("publish errors %s" % r["pub_errors"])
    if r.get("drops"):
        notes.append("gateway drops %s (read after the subscribers left: \"closed\" = copies "
                     "still queued for them then)" % r["drops"])
    if r["failed"] or r["closed"] or not r["per_conn_min"]:
        notes.append("%s subscribers failed to open, %s closed; least deliveries to one "
                     "subscriber in the window: %s" % (r["failed"], r["closed"],
                                                       r["per_conn_min"]))
    if r["guard_stopped_after_s"] is not None:
        notes.append("RSS GUARD: publishing stopped %.1f s into the window (RSS > limit)"
                     % r["guard_stopped_after_s"])
    if r["client_bound"]:
        notes.append("CLIENT-BOUND (a client process at %.0f%% of a core)"
                     % (r["client_max_cores"] * 100))
    if r["other_cores"] >= 0.15:
        notes.append("OTHER LOAD %.2f cores" % r["other_cores"])
    for n in notes:
        log("           %s" % n)


def main():
    sc = benchlib.SideBySide("fanout", "nchan", __doc__)
    quick = sc.quick
    ap = sc.ap
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--warmup", type=float, default=0.5 if quick else 1.0)
    ap.add_argument("--duration", type=float, default=2.0 if quick else 4.0)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--size", type=int, default=32,
                    help="message bytes (\"t=<ns>;\" and padding; 32)")
    ap.add_argument("--open-timeout", type=float, default=120.0)
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--rss-limit-mb", type=float, default=3000)
    ap.add_argument("--retry-cap", type=float, default=5.0,
                    help="a publisher waits min(retry_after, this) after a refusal (5 s)")
    ap.add_argument("--qos", type=int, choices=(0, 1, 2), default=0,
                    help="1 or 2: acknowledged deliveries, the gateway alone (above)")
    a = sc.parse()
    if a.qos:
        sc.name = "fanout_qos%d" % a.qos
        if "nchan" in sc.targets:
            log("fanout: --qos %d: nchan has no acknowledged delivery; the gateway runs alone"
                % a.qos)
            sc.targets = [t for t in sc.targets if t != "nchan"]
    sizes = [int(x) for x in a.sizes.split(",") if x]
    if not sc.start("== fanout: QoS %d, one channel of %s subscribers, %d publishers flat out, "
                    "%d-byte messages; gateway vs nginx+nchan; %d round(s) of %g s warm-up + "
                    "%g s%s" % (a.qos, " / ".join("{:,}".format(s) for s in sizes), a.publishers,
                                a.size, a.rounds, a.warmup, a.duration, sc.quick_note()),
                    peers.PACKAGES["nchan"]):
        return 2
    sc.run({"gateway": run_gateway, "nchan": run_nchan}, show, cases=sizes)
    return report(sc, sizes)


def report(sc, sizes):
    a = sc.a
    sc.begin_report()
    med = lambda t, s, k: sc.med(t, k, s)
    g, p = "gateway", "nchan"
    log("\n== Fan-out results (median of %d round(s); client %s; %d CPUs; load average %s)"
        % (a.rounds, sc.client(), os.cpu_count(), sc.loadavg()))
    rows = []
    for s in sizes:
        for name, k, spec in (("deliveries/s", "deliveries_s", ","),
                              ("messages/s accepted", "publishes_s", ","),
                              ("messages/s refused (retry_after)", "refused_s", ","),
                              ("latency p50 ms", "p50_ms", "%.1f"),
                              ("latency p99 ms", "p99_ms", "%.1f"),
                              ("server CPU, cores", "server_cores", "%.2f"),
                              ("server CPU ms per 1,000 deliveries", "server_us_per_1k", "%.2f"),
                              ("server peak RSS, MB", "server_rss_mb", "%.0f"),
                              ("client CPU, cores", "client_cores", "%.2f")):
            x, y = med(g, s, k), med(p, s, k)
            if k == "server_us_per_1k":
                x, y = x / 1e3, y / 1e3
            rows.append(("%s: %s" % ("{:,}".format(s), name), x, y, spec))
    sc.table(rows, 44)
    for (t, s), rr in sorted(sc.res.items()):
        flags = []
        if any(r["client_bound"] for r in rr):
            flags.append("CLIENT-BOUND in %d" % sum(r["client_bound"] for r in rr))
        if any(r["guard_stopped_after_s"] is not None for r in rr):
            flags.append("RSS GUARD in %d" % sum(r["guard_stopped_after_s"] is not None
                                                 for r in rr))
        if rr:
            log("%s %d rounds: %s%s" % (t, s, ", ".join(fnum(r["deliveries_s"], ",") for r in rr),
                                       ("; " + "; ".join(flags)) if flags else ""))
    sc.report_failed()
    summary = []
    for s in sizes:
        x, y = med(g, s, "deliveries_s"), med(p, s, "deliveries_s")
        bench_line("fanout_qos%d_%d" % (a.qos, s), x, y,
                   "deliveries/s (%d subscribers, %d publishers flat out; peer=%s; "
                   "higher is better)" % (s, a.publishers, "nginx+nchan" if not a.qos else
                                          "the original Rainbow, not installable here"))
        bench_line("fanout_latency_p50_%d" % s, med(g, s, "p50_ms"), med(p, s, "p50_ms"),
                   "ms publish->delivery at the accepted rate (lower is better)")
        bench_line("fanout_latency_p99_%d" % s, med(g, s, "p99_ms"), med(p, s, "p99_ms"),
                   "ms publish->delivery at the accepted rate (lower is better)")
        bench_line("fanout_cpu_per_1k_%d" % s, med(g, s, "server_us_per_1k") / 1e3,
                   med(p, s, "server_us_per_1k") / 1e3,
                   "ms of server CPU per 1,000 deliveries (lower is better)")
        summary.append(sc.summary_row("fan-out QoS %d, %s subscribers, flat out"
                                      % (a.qos, "{:,}".format(s)), "fanout_qos%d_%d" % (a.qos, s),
                                      "deliveries/s",
                                      "deliveries_s", "server_us_per_1k", s, 1e3))
    kv = []
    for s in sizes:
        kv += sc.kv([("gw_%d" % s, g, "deliveries_s", "%.0f"),
                     ("nchan_%d" % s, p, "deliveries_s", "%.0f")], s)
        kv.append("ratio_%d=%s" % (s, fnum(ratio(med(g, s, "deliveries_s"),
                                                 med(p, s, "deliveries_s")), "%.2f")))
        kv += sc.kv([("gw_p50_ms_%d" % s, g, "p50_ms", "%.1f"),
                     ("gw_p99_ms_%d" % s, g, "p99_ms", "%.1f"),
                     ("nchan_p50_ms_%d" % s, p, "p50_ms", "%.1f"),
                     ("nchan_p99_ms_%d" % s, p, "p99_ms", "%.1f")], s)
    return sc.finish(sc.complete(), summary, kv)


if __name__ == "__main__":
    sys.exit(main())
