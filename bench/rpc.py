#!/usr/bin/python3
"""RPC round trips, the gateway beside pushpin (bench/README.md, "RPC").

Both do the same job for a WebSocket client: a message in, one HTTP call to a
backend, the backend's answer back to the client on the same socket.

  - gateway: rainbow-server (generated config, free port on 127.0.0.1,
    heartbeat 0, durability off, defaults otherwise), forward_url at an nginx
    that answers `location /rainbow/ { return 200 ""; }` (bench/peers.py
    Nginx, 1 worker): each client sends SEND QoS 1 (rainbow.v2, msgtype 1,
    32-byte payload) and waits for its ACK (the backend's empty reply);
  - pushpin 1.36 (bench/peers.py Pushpin): route `* <nginx>,over_http`, every
    WebSocket message becomes a WebSocket-over-HTTP POST to an nginx (1
    worker) that answers a fixed TEXT event: each client sends a 32-byte text
    message and waits for the answer.

--conns (50) connections, closed loop (the next message when the answer
arrived), a warm-up then a measured window; round trips/s, p50/p99 of the
round trip, server and backend CPU (sampled from /proc: the gateway process;
pushpin's condure + zurl + pushpin-proxy + pushpin-handler; each backend
nginx apart), CPU per round trip.  --rounds (3; 1 with BENCH_QUICK=1) rounds,
each running the gateway and pushpin one after the other (the order swaps
every round), medians reported.

The client is build/bench/loadgen (mode rpc) when built, else bench/pyload.py
(Python); the output says which, and the client's own CPU.  Prints the rounds,
a table, BENCH lines (higher is better unless the unit says otherwise),
`RESULT key=value ...` for bench/run, and saves build/bench/results/rpc.json.
It never fails on timing: non-zero exit only when something could not run.
    bench/rpc.py [--rounds 3] [--duration 5] [--conns 50] [--targets gateway,pushpin]
"""
import os
import sys
import tempfile
import time

import benchlib
import peers
from peers import Nginx, Pushpin, Sampler, bench_line, fnum, log, ratio, run_tool

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))


def tool_argv(port, path, proto, a):
    """The client command: loadgen rpc, else bench/pyload.py rpc (same options)."""
    prog, tool = peers.load_prog()
    return prog + ["rpc", "ws://127.0.0.1:%d%s" % (port, path), "--proto", proto,
                   "--conns", str(a.conns), "--qos", "1", "--warmup", str(a.warmup),
                   "--duration", str(a.duration), "--size", str(a.payload), "--quiet"], tool


def measure(name, port, path, proto, server_pids, backend_pids, a):
    argv, tool = tool_argv(port, path, proto, a)
    with Sampler(server_pids) as ss, Sampler(backend_pids) as sb:
        t0 = time.monotonic()
        j, err, rc, tool_cpu = run_tool(argv, a.warmup + a.duration + 60)
        t1 = time.monotonic()
    if not j or j.get("error") or not j.get("window_s"):
        raise RuntimeError("%s: the load tool failed (exit %s): %s %s"
                           % (name, rc, (j or {}).get("error", ""), err))
    win = j["window_s"]
    # the tool's window starts --warmup after every connection is open
    w0 = t0 + (j.get("open_s") or 0.0) + (j.get("warmup_s") or a.warmup)
    w1 = min(w0 + win, t1)
    r = {"tool": tool, "rate": j.get("rate"), "count": j.get("round_trips"),
         "p50_ms": peers.lat_ms(j, "latency_ms", "p50"),
         "p99_ms": peers.lat_ms(j, "latency_ms", "p99"),
         "max_ms": peers.lat_ms(j, "latency_ms", "max"),
         "naks": j.get("naks", 0), "timeouts": j.get("timeouts", 0),
         "nak_codes": j.get("nak_codes") or {}, "errors": j.get("errors") or {},
         "opened": j.get("opened"), "failed": j.get("failed", 0), "window_s": win}
    r["server_cores"] = ss.cores(w0, w1)
    r["backend_cores"] = sb.cores(w0, w1)
    r["server_rss_mb"] = ss.rss_peak_kb() / 1024.0
    r["client_cores"] = j.get("cpu_window_cores", float("nan"))
    rate = r["rate"] or float("nan")
    r["server_us"] = r["server_cores"] / rate * 1e6 if rate == rate and rate else float("nan")
    r["backend_us"] = r["backend_cores"] / rate * 1e6 if rate == rate and rate else float("nan")
    r["client_bound"] = bool(j.get("loadgen_bound"))
    r["machine_cores"] = ss.machine_cores(w0, w1)
    r["other_cores"] = r["machine_cores"] - r["server_cores"] - r["backend_cores"] - \
        r["client_cores"]
    return r


def run_gateway(a, tmpbase):
    backend = Nginx(workers=1, connections=4096)
    gw = None
    try:
        backend.start()
        d = tempfile.mkdtemp(prefix="gw-", dir=tmpbase)
        gw = benchlib.Gateway(a.bin, d, "rpc.ini")
        gw.write_conf({
            "port": gw.port, "bind": "127.0.0.1", "api_port": 0, "data_dir": d + "/data",
            "log_level": "warn", "log_file": "", "security_token": benchlib.TOKEN,
            "connect_url": "", "close_url": "", "forward_url": backend.url("/rainbow/"),
            "heartbeat": 0, "durability": "off", "shutdown_grace": 2,
            "max_connections": 1000}, "bench/rpc.py")
        gw.start()
        r = measure("gateway", gw.port, "/connect/", "rainbow", lambda: [gw.proc.pid],
                    backend.pids, a)
        m = gw.metrics()
        r["forwards"] = {k.split('"')[1]: v for k, v in m.items()
                         if k.startswith("rainbow_forwards_total{")}
        r["log"] = gw.log_lines()[:5]
        return r
    finally:
        if gw is not None:
            rc = gw.stop(timeout=10, warn_kill=True)
            if rc not in (0, None):
                log("  gateway exit status %s" % rc)
        backend.stop()


def run_pushpin(a, tmpbase):
    pp = Pushpin()
    try:
        pp.start()
        r = measure("pushpin", pp.port, "/ws/rpc", "ws", pp.pids, pp.backend.pids, a)
        r["log"] = [l for l in pp.log_tail(5).splitlines() if l and not l.startswith("[")][:5]
        return r
    finally:
        pp.stop()


def show(name, r):
    log("  %-8s %s: %9s round trips/s  p50 %6s ms  p99 %6s ms  | server %s cores (%s us/rt), "
        "backend nginx %s cores, client (%s) %s cores%s%s"
        % (name, "", fnum(r["rate"], ","), fnum(r["p50_ms"], "%.2f"), fnum(r["p99_ms"], "%.2f"),
           fnum(r["server_cores"], "%.2f"), fnum(r["server_us"], "%.1f"),
           fnum(r["backend_cores"], "%.2f"), r["tool"], fnum(r["client_cores"], "%.2f"),
           "; NAKs %d %s" % (r["naks"], r["nak_codes"]) if r["naks"] else "",
           "; errors %s" % r["errors"] if r["errors"] else ""))
    if r["timeouts"] or r["failed"]:
        log("           %s timeouts, %s connections failed to open" % (r["timeouts"], r["failed"]))
    if r["other_cores"] >= 0.15:
        log("           OTHER LOAD: %.2f cores used outside the benchmark" % r["other_cores"])
    if r["client_bound"]:
        log("           CLIENT-BOUND: the client used %.0f%% of a core" % (r["client_cores"] * 100))


def main():
    sc = benchlib.SideBySide("rpc", "pushpin", __doc__)
    quick = sc.quick
    sc.ap.add_argument("--conns", type=int, default=50)
    sc.ap.add_argument("--warmup", type=float, default=0.5 if quick else 1.0)
    sc.ap.add_argument("--duration", type=float, default=2.0 if quick else 5.0)
    sc.ap.add_argument("--payload", type=int, default=32)
    a = sc.parse()
    if not sc.start("== rpc: %d connections, closed loop, %d-byte messages; gateway (SEND QoS 1 -> "
                    "nginx static 200 -> ACK) vs pushpin (WebSocket-over-HTTP -> nginx -> message "
                    "back); %d round(s) of %g s warm-up + %g s%s"
                    % (a.conns, a.payload, a.rounds, a.warmup, a.duration, sc.quick_note()),
                    peers.PACKAGES["pushpin"]):
        return 2
    sc.run({"gateway": run_gateway, "pushpin": run_pushpin}, show, announce=True)
    return report(sc)


def report(sc):
    a = sc.a
    sc.begin_report()
    med = sc.med
    g, p = "gateway", "pushpin"
    log("\n== RPC results (median of %d round(s); %d connections; client %s; %d CPUs; load "
        "average %s)" % (len(sc.rounds(g)), a.conns, sc.client(), os.cpu_count(), sc.loadavg()))
    sc.table([("round trips/s", med(g, "rate"), med(p, "rate"), ","),
              ("p50 ms", med(g, "p50_ms"), med(p, "p50_ms"), "%.2f"),
              ("p99 ms", med(g, "p99_ms"), med(p, "p99_ms"), "%.2f"),
              ("server CPU, cores", med(g, "server_cores"), med(p, "server_cores"), "%.2f"),
              ("server CPU us per round trip", med(g, "server_us"), med(p, "server_us"), "%.1f"),
              ("backend nginx CPU, cores", med(g, "backend_cores"), med(p, "backend_cores"),
               "%.2f"),
              ("backend CPU us per round trip", med(g, "backend_us"), med(p, "backend_us"),
               "%.1f"),
              ("server peak RSS, MB", med(g, "server_rss_mb"), med(p, "server_rss_mb"), "%.0f"),
              ("client CPU, cores", med(g, "client_cores"), med(p, "client_cores"), "%.2f")], 32)
    for t in (g, p):
        rr = sc.rounds(t)
        if rr:
            log("%s rounds: %s%s" % (t, ", ".join(fnum(r["rate"], ",") for r in rr),
                                    "; CLIENT-BOUND in %d" % sum(r["client_bound"] for r in rr)
                                    if any(r["client_bound"] for r in rr) else ""))
    sc.report_failed()
    bench_line("rpc_qos1", med(g, "rate"), med(p, "rate"),
               "round trips/s (%d connections; peer=pushpin; higher is better)" % a.conns)
    bench_line("rpc_p50", med(g, "p50_ms"), med(p, "p50_ms"), "ms (lower is better)")
    bench_line("rpc_p99", med(g, "p99_ms"), med(p, "p99_ms"), "ms (lower is better)")
    bench_line("rpc_cpu_per_msg", med(g, "server_us"), med(p, "server_us"),
               "us of server CPU per round trip, backend excluded (lower is better)")
    summary = [sc.summary_row("RPC round trips, %d conns (QoS 1 SEND -> backend -> ACK)"
                              % a.conns, "rpc_qos1", "round trips/s", "rate", "server_us")]
    return sc.finish(sc.complete(), summary, sc.kv([
        ("gateway_rate", g, "rate", "%.0f"), ("pushpin_rate", p, "rate", "%.0f")]) + [
        "ratio=%s" % fnum(ratio(med(g, "rate"), med(p, "rate")), "%.2f")] + sc.kv([
            ("gw_p50_ms", g, "p50_ms", "%.2f"), ("gw_p99_ms", g, "p99_ms", "%.2f"),
            ("pp_p50_ms", p, "p50_ms", "%.2f"), ("pp_p99_ms", p, "p99_ms", "%.2f"),
            ("gw_us", g, "server_us", "%.1f"), ("pp_us", p, "server_us", "%.1f")]))


if __name__ == "__main__":
    sys.exit(main())
