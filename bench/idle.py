#!/usr/bin/python3
"""Idle connections, the gateway beside nginx + nchan (bench/README.md, "Idle").

--conns (19,000; 10,000 with BENCH_QUICK=1) WebSocket connections opened as
fast as the client can (--concurrency 256 attempts at a time, round-robin over
--sources 8 source addresses 127.0.0.2-9) and then held idle:

  - gateway: rainbow-server (generated config: free port on 127.0.0.1,
    heartbeat 0, durability off, max_connections 20000, a token_secret), each
    client on /connect/?token=<HS256 JWT with channels ["idle"]> (rainbow.v2,
    open at its HELLO), so every connection is a channel member as on nchan;
  - nchan: nginx 1.22 + nchan 1.3.6 (2 workers, worker_connections 19,900),
    each client a WebSocket subscriber of /sub/idle (open at the 101).

Figures: memory per connection = (RSS with every connection open and 1 s of
quiet) - (RSS before the first connection), divided by the connections:
VmRSS of /proc/<pid>/status summed over the server's processes (the gateway's
one; nginx's master + workers), and PSS (smaps_rollup, shared pages split
among the processes sharing them: the fair sum for nginx's processes) beside
it; time to open all (first connect to the last one open, as the client saw
it); server CPU per connection opened.

--rounds (3; 1 with BENCH_QUICK=1), gateway and nchan one after the other
(order swapped every round), medians.  The client is build/bench/loadgen
(mode idle: one process, one epoll loop) when built, else bench/pyload.py
(2 processes; the output says which); it writes a ready file when every
connection is open, holds them until SIGTERM, then prints its JSON.  Prints
a table, BENCH lines, `RESULT key=value ...`, saves
build/bench/results/idle.json.  Never fails on timing.
    bench/idle.py [--conns 19000] [--rounds 3] [--targets gateway,nchan]
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
from peers import Nginx, bench_line, fnum, log, ratio

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
TOKEN_SECRET = "bench-token-secret-0123456789abcdef"
CHANNEL = "idle"


def tool_argv(a, url, proto, ready):
    """loadgen idle, else bench/pyload.py idle (same options): open, write the
    ready file, hold until SIGTERM, print the JSON."""
    prog, tool = peers.load_prog()
    return prog + ["idle", url, "--proto", proto, "--conns", str(a.conns),
                   "--sources", str(a.sources), "--concurrency", str(a.concurrency),
                   "--duration", "0", "--ready-file", ready, "--quiet"], tool


def measure(name, port, path, proto, pids_fn, a, tmp):
    ready = tempfile.mktemp(prefix="ready-%s-" % name, suffix=".json", dir=tmp)
    argv, tool = tool_argv(a, "ws://127.0.0.1:%d%s" % (port, path), proto, ready)
    time.sleep(0.5)
    pids = pids_fn()
    base_rss = sum(v for v in (peers.proc_status_kb(p) for p in pids) if v)
    base_pss = sum(v for v in (peers.proc_pss_kb(p) for p in pids) if v)
    cpu0 = sum(c for c in (peers.proc_cpu(p) for p in pids) if c is not None)
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL, preexec_fn=peers.die_with_parent)
    try:
        t0 = time.monotonic()
        rj = None
        while time.monotonic() - t0 < a.open_timeout and p.poll() is None:
            if os.path.exists(ready):
                try:
                    with open(ready) as f:
                        rj = json.loads(f.read())
                    break
                except ValueError:
                    pass
            time.sleep(0.02)
        t1 = time.monotonic()
        if rj is None:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
            raise RuntimeError("%s: the load tool did not report its connections open "
                               "(exit %s): %s" % (name, p.returncode,
                                                  err.decode(errors="replace")[-400:]))
        pids = pids_fn()
        cpu1 = sum(c for c in (peers.proc_cpu(q) for q in pids) if c is not None)
        time.sleep(a.settle)
        rss = sum(v for v in (peers.proc_status_kb(q) for q in pids) if v)
        pss = sum(v for v in (peers.proc_pss_kb(q) for q in pids) if v)
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    j = peers.last_json(out.decode()) or {}
    opened = rj.get("opened", 0)
    r = {"tool": tool, "conns": a.conns, "opened": opened, "failed": a.conns - opened,
         "failures": j.get("fail_reasons") or {},
         "open_s": rj.get("open_s") or (t1 - t0),
         "open_rate_tool": j.get("open_rate"), "client_cpu_s": j.get("cpu_s"),
         "base_rss_mb": base_rss / 1024.0, "rss_mb": rss / 1024.0,
         "base_pss_mb": base_pss / 1024.0, "pss_mb": pss / 1024.0,
         "kb_per_conn": (rss - base_rss) / opened if opened else float("nan"),
         "pss_kb_per_conn": (pss - base_pss) / opened if opened else float("nan"),
         "server_cpu_open_s": cpu1 - cpu0,
         "server_us_per_open": (cpu1 - cpu0) / opened * 1e6 if opened else float("nan"),
         "server_processes": len(pids), "closed_by_server": j.get("closed")}
    r["open_rate"] = opened / r["open_s"] if r["open_s"] else float("nan")
    return r


def run_gateway(a, tmpbase):
    d = tempfile.mkdtemp(prefix="gw-", dir=tmpbase)
    gw = benchlib.Gateway(a.bin, d, "idle.ini")
    gw.write_conf({
        "port": gw.port, "bind": "127.0.0.1", "api_port": 0, "data_dir": d + "/data",
        "log_level": "warn", "log_file": "", "security_token": benchlib.TOKEN,
        "connect_url": "", "close_url": "", "forward_url": "", "heartbeat": 0,
        "durability": "off", "shutdown_grace": 2, "max_connections": 20000,
        "token_secret": TOKEN_SECRET}, "bench/idle.py")
    tok = pyload.hs256_token(TOKEN_SECRET, {"sub": "idle", "exp": int(time.time()) + 3600,
                                            "channels": [CHANNEL]})
    try:
        gw.start()
        r = measure("gateway", gw.port, "/connect/?token=" + tok, "rainbow",
                    lambda: [gw.proc.pid], a, tmpbase)
        r["log"] = gw.log_lines()[:5]
        return r
    finally:
        gw.stop(timeout=15, warn_kill=True)


def run_nchan(a, tmpbase):
    ng = Nginx(nchan=True)
    try:
        ng.start()
        r = measure("nchan", ng.port, "/sub/%s" % CHANNEL, "ws", ng.pids, a, tmpbase)
        r["log"] = [l for l in ng.log_tail(5).splitlines() if l and not l.startswith("[")][:5]
        return r
    finally:
        ng.stop()


def show(name, r):
    log("  %-8s %s of %s open in %.2f s (%s/s) | RSS %.1f -> %.1f MB: %.2f KB per connection "
        "(PSS %.2f KB) | server CPU %.1f us per open%s"
        % (name, "{:,}".format(r["opened"]), "{:,}".format(r["conns"]), r["open_s"],
           fnum(r["open_rate"], ","), r["base_rss_mb"], r["rss_mb"], r["kb_per_conn"],
           r["pss_kb_per_conn"], r["server_us_per_open"],
           ("; FAILED %d: %s" % (r["failed"], r["failures"])) if r["failed"] else ""))
    if r.get("closed_by_server"):
        log("           %d connections closed by the server while idle" % r["closed_by_server"])


def main():
    sc = benchlib.SideBySide("idle", "nchan", __doc__)
    sc.ap.add_argument("--conns", type=int, default=10000 if sc.quick else 19000)
    sc.ap.add_argument("--sources", type=int, default=8)
    sc.ap.add_argument("--concurrency", type=int, default=256)
    sc.ap.add_argument("--settle", type=float, default=1.0)
    sc.ap.add_argument("--open-timeout", type=float, default=120.0)
    a = sc.parse()
    if not sc.start("== idle: %s WebSocket connections from %d source addresses, held idle; "
                    "gateway vs nginx+nchan; %d round(s)%s"
                    % ("{:,}".format(a.conns), a.sources, a.rounds, sc.quick_note()),
                    peers.PACKAGES["nchan"]):
        return 2
    sc.run({"gateway": run_gateway, "nchan": run_nchan}, show)
    return report(sc)


def report(sc):
    a = sc.a
    sc.begin_report()
    med = sc.med
    g, p = "gateway", "nchan"
    log("\n== Idle results (median of %d round(s); %s connections; client %s; load average %s)"
        % (a.rounds, "{:,}".format(a.conns), sc.client(), sc.loadavg()))
    sc.table([(name, med(g, k), med(p, k), spec) for name, k, spec in (
        ("connections open", "opened", ","),
        ("KB RSS per connection", "kb_per_conn", "%.2f"),
        ("KB PSS per connection", "pss_kb_per_conn", "%.2f"),
        ("RSS before, MB", "base_rss_mb", "%.1f"),
        ("RSS with all open, MB", "rss_mb", "%.1f"),
        ("seconds to open all", "open_s", "%.2f"),
        ("connections opened per second", "open_rate", ","),
        ("server CPU us per connection open", "server_us_per_open", "%.1f"))], 34)
    for t in (g, p):
        rr = sc.rounds(t)
        if rr:
            log("%s rounds: %s KB/conn, %s s to open" % (
                t, ", ".join(fnum(r["kb_per_conn"], "%.2f") for r in rr),
                ", ".join(fnum(r["open_s"], "%.2f") for r in rr)))
    sc.report_failed()
    bench_line("idle_kb_per_conn", med(g, "kb_per_conn"), med(p, "kb_per_conn"),
               "KB of RSS per idle connection (%d connections; peer=nginx+nchan; lower is better)"
               % a.conns)
    bench_line("idle_open_s", med(g, "open_s"), med(p, "open_s"),
               "s to open %d connections (lower is better)" % a.conns)
    bench_line("idle_open_rate", med(g, "open_rate"), med(p, "open_rate"),
               "connections opened per second (higher is better)")
    ok = sc.complete() and all(r["failed"] == 0 for rr in sc.res.values() for r in rr)
    summary = [{"scenario": "%s idle connections: KB RSS each" % "{:,}".format(a.conns),
                "key": "idle_kb_per_conn", "unit": "KB per connection (lower is better)",
                "peer": "nchan", "gateway": med(g, "kb_per_conn"),
                "peer_value": med(p, "kb_per_conn"),
                "ratio": ratio(med(g, "kb_per_conn"), med(p, "kb_per_conn")),
                "gw_open_s": med(g, "open_s"), "peer_open_s": med(p, "open_s"),
                "gw_cpu_us": med(g, "server_us_per_open"),
                "peer_cpu_us": med(p, "server_us_per_open")}]
    return sc.finish(ok, summary, ["conns=%d" % a.conns] + sc.kv([
        ("gw_kb", g, "kb_per_conn", "%.2f"), ("nchan_kb", p, "kb_per_conn", "%.2f"),
        ("gw_pss_kb", g, "pss_kb_per_conn", "%.2f"), ("nchan_pss_kb", p, "pss_kb_per_conn", "%.2f"),
        ("gw_open_s", g, "open_s", "%.2f"), ("nchan_open_s", p, "open_s", "%.2f")]))


if __name__ == "__main__":
    sys.exit(main())
