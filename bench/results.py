#!/usr/bin/python3
"""The benchmarks' results: one summary table, gnuplot plots, bench/RESULTS.md.

Every side-by-side scenario (bench/rpc.py, fanout.py, idle.py,
mqtt_durable.py) saves build/bench/results/<scenario>.json with a "summary"
list (one row per headline figure: gateway, peer, ratio, p50/p99 of each,
server CPU per message) and its rounds.  bench/run turns the output of the
older scenarios (faulty_route.py, cluster_fanout.py) into the same shape
with `ingest`.  Then:

    bench/results.py ingest NAME OUTPUT_FILE   # RESULT/BENCH lines -> results/NAME.json
    bench/results.py summary                   # the table of this run ($BENCH_RUN_ID)
    bench/results.py plot [--out bench/plots]  # PNGs with gnuplot (gnuplot-nox)
    bench/results.py markdown [--out bench/RESULTS.md] [--plots bench/plots]

`summary`, `plot` and `markdown` read every results/*.json of the run id
given by --run-id or $BENCH_RUN_ID (all of them when neither is set).
Python 3 standard library only (gnuplot for the plots).
"""
import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import peers

RESULTS = peers.RESULTS_DIR
ORDER = ["rpc", "fanout", "durable", "idle", "cluster_fanout", "faulty_route"]

# The targets (issue 11): key -> (text, check(row) -> bool or None).
TARGETS = {
    "rpc_qos1": (">= 20x pushpin", lambda r: r["ratio"] >= 20),
    "fanout_qos0_1000": (">= 2x nchan; p99 < 250 ms",
                         lambda r: r["ratio"] >= 2 and r["gw_p99_ms"] < 250),
    "fanout_qos0_10000": (">= 2x nchan; p99 < 250 ms",
                          lambda r: r["ratio"] >= 2 and r["gw_p99_ms"] < 250),
    "durable_qos1_normal": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    "durable_qos1_full": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    "durable_qos2_normal": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    "durable_qos2_full": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    # the same pushes through POST /batch/ (bench/mqtt_durable.py --batch)
    "durable_qos1_batch": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    "durable_qos2_batch": (">= 3x mosquitto", lambda r: r["ratio"] >= 3),
    "idle_kb_per_conn": ("< 4 KB each, opened as fast as nchan",
                         lambda r: r["gateway"] < 4 and r["gw_open_s"] <= r["peer_open_s"]),
    "faulty_route_p99": ("protected p99 under attack <= 2x its baseline",
                         lambda r: r.get("protected_ratio", float("nan")) <= 2),
}


def log(*a):
    print(*a, flush=True)


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def f(v, spec=None):
    v = num(v)
    if v != v:
        return "?"
    if spec:
        return spec % v
    if abs(v) >= 1000:
        return "{:,.0f}".format(v)
    if abs(v) >= 100:
        return "%.0f" % v
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


# ====================================================================== ingest

def parse_output(text):
    """RESULT key=value pairs and BENCH lines of a scenario's output."""
    result, bench = {}, []
    for line in text.splitlines():
        if line.startswith("RESULT "):
            result = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        elif line.startswith("BENCH "):
            parts = line.split(" unit=", 1)
            head = parts[0].split()
            d = dict(kv.split("=", 1) for kv in head[2:] if "=" in kv)
            d["name"] = head[1]
            if len(parts) > 1:
                d["unit"] = parts[1]
            bench.append(d)
    return result, bench


def ingest(name, path):
    text = Path(path).read_text(errors="replace")
    result, bench = parse_output(text)
    summary = []
    if name == "cluster_fanout" and result:
        summary.append({
            "scenario": "cluster fan-out QoS 0, 3,000 subs: cluster of 3 vs one gateway",
            "key": "cluster_fanout_qos0", "unit": "deliveries/s", "peer": "one gateway",
            "gateway": num(result.get("cluster_rate")),
            "peer_value": num(result.get("single_rate")),
            "ratio": num(result.get("ratio")),
            "gw_p50_ms": num(result.get("hop_p50_ms")), "gw_p99_ms": num(result.get("hop_p99_ms")),
            "peer_p50_ms": num(result.get("local_p50_ms")),
            "peer_p99_ms": num(result.get("local_p99_ms")),
            "gw_cpu_us": num(result.get("cluster_cpu_1k")),
            "peer_cpu_us": num(result.get("single_cpu_1k")),
            "note": "latency: one hop (cluster) vs local (node 1)"})
    if name == "faulty_route" and result:
        pa, ua = num(result.get("protected_attack_p99_ms")), \
            num(result.get("unprotected_attack_p99_ms"))
        summary.append({
            "scenario": "faulty route: fast-route p99 under attack, protected vs unprotected",
            "key": "faulty_route_p99", "unit": "ms (lower is better)", "peer": "unprotected",
            "gateway": pa, "peer_value": ua, "ratio": pa / ua if ua == ua and ua else float("nan"),
            "gw_p50_ms": float("nan"), "gw_p99_ms": pa, "peer_p50_ms": float("nan"),
            "peer_p99_ms": ua, "gw_cpu_us": float("nan"), "peer_cpu_us": float("nan"),
            "protected_ratio": num(result.get("protected_ratio")),
            "note": "baseline p99 %s ms protected, %s ms unprotected" % (
                result.get("protected_base_p99_ms", "?"),
                result.get("unprotected_base_p99_ms", "?"))})
    ok = result.get("exit") == "ok"
    lines = text.splitlines()
    heads = [i for i, l in enumerate(lines) if l.startswith("== ") and "results" in l.lower()]
    table = [l for l in lines[heads[-1]:] if not l.startswith("RESULT ")] if heads else []
    p = peers.save_result(name, {"ok": ok, "result": result, "bench": bench, "summary": summary,
                                 "table": table,
                                 "ingested_from": "output of bench/%s.py" % name})
    log("results: %s" % p)


# ====================================================================== load

def load(run_id=None):
    run_id = run_id if run_id is not None else os.environ.get("BENCH_RUN_ID")
    out = {}
    for p in sorted(RESULTS.glob("*.json")):
        try:
            j = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if run_id and j.get("run_id") != run_id:
            continue
        out[j.get("scenario", p.stem)] = j
    return dict(sorted(out.items(), key=lambda kv: ORDER.index(kv[0])
                       if kv[0] in ORDER else 99))


def rows_of(res):
    for name, j in res.items():
        for r in j.get("summary") or []:
            yield name, j, r


def target_of(r):
    t = TARGETS.get(r.get("key"))
    if not t:
        return "", None
    try:
        met = bool(t[1]({k: num(v) if not isinstance(v, str) else v for k, v in r.items()}))
    except (TypeError, KeyError):
        met = None
    if any(num(r.get(k)) != num(r.get(k)) for k in ("gateway", "peer_value")):
        met = None
    return t[0], met


def table_rows(res):
    out = []
    for name, j, r in rows_of(res):
        tgt, met = target_of(r)
        lat = lambda a, b: "%s / %s" % (f(r.get(a), "%.2f") if num(r.get(a)) < 100 else
                                        f(r.get(a), "%.0f"),
                                        f(r.get(b), "%.2f") if num(r.get(b)) < 100 else
                                        f(r.get(b), "%.0f"))
        out.append([r["scenario"], "%s %s" % (f(r.get("gateway")), short_unit(r["unit"])),
                    "%s %s" % (r.get("peer", "peer"), f(r.get("peer_value"))),
                    f(r.get("ratio"), "%.2fx" if num(r.get("ratio")) >= 0.1 else "%.4fx"),
                    lat("gw_p50_ms", "gw_p99_ms"),
                    lat("peer_p50_ms", "peer_p99_ms"),
                    "%s / %s" % (f(r.get("gw_cpu_us")), f(r.get("peer_cpu_us"))),
                    ("%s: %s" % (tgt, "met" if met else "NOT met" if met is False else "?"))
                    if tgt else "", j.get("tool", "")])
    return out


def short_unit(u):
    return u.split(" (")[0]


HEAD = ["scenario", "gateway", "peer", "ratio", "gw p50/p99 ms", "peer p50/p99 ms",
        "CPU us/msg gw / peer", "target (issue 11)", "client"]


def batch_note(res):
    """The footnote for the durable /batch/ rows ("" when there are none)."""
    ns = sorted({int(r["batch"]) for _, _, r in rows_of(res) if r.get("batch")})
    if not ns:
        return ""
    return ("durable /batch/ rows: gateway p50/p99 are per POST /batch/ call of %s messages "
            "(all pushed and acknowledged), not per message." % "/".join(map(str, ns)))


def summary(res):
    rows = table_rows(res)
    if not rows:
        log("(no results)")
        return
    w = [max(len(HEAD[i]), max(len(r[i]) for r in rows)) for i in range(len(HEAD))]
    log(" | ".join(h.ljust(w[i]) for i, h in enumerate(HEAD)).rstrip())
    log("-+-".join("-" * x for x in w))
    for r in rows:
        log(" | ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip())
    failed = [n for n, j in res.items() if not j.get("ok")]
    log("ratio = gateway / peer (for ms and KB rows lower is better); CPU us/msg = server CPU "
        "per message, per delivery (fan-out), per connection opened (idle); latency of the "
        "cluster row: one hop vs local.")
    if batch_note(res):
        log(batch_note(res))
    if failed:
        log("scenarios with failures: %s (see their output above)" % ", ".join(failed))


# ====================================================================== plots

GP_HEAD = """set terminal pngcairo size 520,300 font "sans,8"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key below
set yrange [0:*]
set offsets 0, 0, graph 0.12, 0
set xtics nomirror
"""


def bars(out, stem, title, ylabel, labels, series, logscale=False, extra=""):
    """A clustered bar chart: labels (x groups), series [(name, [values])];
    extra: gnuplot commands added before the plot."""
    dat = out / ("%s.dat" % stem)
    with open(dat, "w") as fh:
        fh.write("# group %s\n" % " ".join('"%s"' % s for s, _ in series))
        for i, lab in enumerate(labels):
            vals = [v[i] if i < len(v) else float("nan") for _, v in series]
            fh.write('"%s" %s\n' % (lab, " ".join(("%.6g" % x) if x == x else "NaN"
                                                   for x in vals)))
    n = len(series)
    width = 0.9 / (n + 1)
    plots = []
    for k, (name, _) in enumerate(series):
        col = k + 2
        spec = "using %d%s title \"%s\"" % (col, ":xtic(1)" if k == 0 else "", name)
        plots.append(("'%s' " % dat.name if k == 0 else "'' ") + spec)
    for k in range(n):
        off = (k - (n - 1) / 2.0) * width
        plots.append("'' using ($0%+.3f):%d:(($%d)>=100?sprintf(\"%%.0f\",$%d):"
                     "sprintf(\"%%.2g\",$%d)) with labels offset 0,0.6 notitle"
                     % (off, k + 2, k + 2, k + 2, k + 2))
    gp = GP_HEAD + "set output '%s.png'\nset title \"%s\"\nset ylabel \"%s\"\n" % (
        stem, title.replace('"', "'"), ylabel)
    if logscale:
        gp += "set logscale y\nset yrange [*:*]\nset offsets 0, 0, 0, 0\n"
    gp += extra
    gp += "plot " + ", \\\n     ".join(plots) + "\n"
    (out / ("%s.gp" % stem)).write_text(gp)
    r = subprocess.run(["gnuplot", "%s.gp" % stem], cwd=str(out), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        log("  gnuplot %s: %s" % (stem, r.stdout.strip()[-300:]))
        try:
            (out / ("%s.png" % stem)).unlink()
        except OSError:
            pass
        return None
    return out / ("%s.png" % stem)


def plot(res, out):
    peers.ensure_packages(peers.PACKAGES["plot"])
    out.mkdir(parents=True, exist_ok=True)
    made = []

    def row(name, key):
        for r in res.get(name, {}).get("summary") or []:
            if r.get("key") == key:
                return r
        return {}

    if "rpc" in res:
        r = row("rpc", "rpc_qos1")
        made.append(bars(out, "rpc-throughput", "RPC round trips, 50 connections",
                         "round trips/s", ["QoS 1 round trips"],
                         [("gateway", [num(r.get("gateway"))]),
                          ("pushpin", [num(r.get("peer_value"))])]))
        made.append(bars(out, "rpc-latency", "RPC round-trip latency", "ms",
                         ["p50", "p99"],
                         [("gateway", [num(r.get("gw_p50_ms")), num(r.get("gw_p99_ms"))]),
                          ("pushpin", [num(r.get("peer_p50_ms")), num(r.get("peer_p99_ms"))])]))
    if "fanout" in res:
        rs = res["fanout"].get("summary") or []
        labs = ["{:,} subs".format(int(r["key"].rsplit("_", 1)[1])) for r in rs]
        made.append(bars(out, "fanout-throughput", "QoS 0 fan-out, flat out", "deliveries/s",
                         labs, [("gateway", [num(r.get("gateway")) for r in rs]),
                                ("nginx+nchan", [num(r.get("peer_value")) for r in rs])]))
        labs2 = []
        g, p = [], []
        for lab, r in zip(labs, rs):
            for q in ("p50", "p99"):
                labs2.append("%s %s" % (lab, q))
                g.append(num(r.get("gw_%s_ms" % q)))
                p.append(num(r.get("peer_%s_ms" % q)))
        made.append(bars(out, "fanout-latency", "publish -> delivery latency (accepted rate)",
                         "ms (log)", labs2, [("gateway", g), ("nginx+nchan", p)],
                         logscale=True))
    if "durable" in res:
        rs = res["durable"].get("summary") or []
        # "QoS 1\nnormal": two lines under each group (gnuplot reads \n in
        # a quoted data-file string), else six groups overlap at 520 px.
        lab = lambda r: r["key"].replace("durable_qos", "QoS ").replace("_", "\\n", 1)
        labs = [lab(r) for r in rs]
        two_lines = "set bmargin 5\n"
        made.append(bars(out, "durable-throughput", "durable QoS end to end", "msgs/s", labs,
                         [("gateway", [num(r.get("gateway")) for r in rs]),
                          ("mosquitto", [num(r.get("peer_value")) for r in rs])],
                         extra=two_lines))
        # the /batch/ rows' latency is per call of N messages: not on this chart
        rl = [r for r in rs if not r.get("batch")]
        made.append(bars(out, "durable-latency", "durable QoS latency p99", "ms",
                         [lab(r) for r in rl],
                         [("gateway p99", [num(r.get("gw_p99_ms")) for r in rl]),
                          ("mosquitto p99", [num(r.get("peer_p99_ms")) for r in rl])],
                         extra=two_lines))
    if "idle" in res:
        r = row("idle", "idle_kb_per_conn")
        made.append(bars(out, "idle-memory", "idle connections: memory each", "KB RSS",
                         ["KB per connection"], [("gateway", [num(r.get("gateway"))]),
                                                 ("nginx+nchan", [num(r.get("peer_value"))])]))
        made.append(bars(out, "idle-open", "idle connections: time to open all", "s",
                         ["seconds to open"], [("gateway", [num(r.get("gw_open_s"))]),
                                               ("nginx+nchan", [num(r.get("peer_open_s"))])]))
    if "cluster_fanout" in res:
        r = row("cluster_fanout", "cluster_fanout_qos0")
        made.append(bars(out, "cluster-throughput", "cluster fan-out, 3,000 subscribers",
                         "deliveries/s", ["QoS 0"],
                         [("cluster of 3", [num(r.get("gateway"))]),
                          ("one gateway", [num(r.get("peer_value"))])]))
        made.append(bars(out, "cluster-latency", "cluster: one hop vs local", "ms",
                         ["p50", "p99"],
                         [("one hop", [num(r.get("gw_p50_ms")), num(r.get("gw_p99_ms"))]),
                          ("local", [num(r.get("peer_p50_ms")), num(r.get("peer_p99_ms"))])]))
    if "faulty_route" in res:
        j = res["faulty_route"].get("result") or {}
        made.append(bars(out, "faulty-latency", "faulty route: fast-route p99", "ms (log)",
                         ["baseline", "under attack"],
                         [("protected", [num(j.get("protected_base_p99_ms")),
                                         num(j.get("protected_attack_p99_ms"))]),
                          ("unprotected", [num(j.get("unprotected_base_p99_ms")),
                                           num(j.get("unprotected_attack_p99_ms"))])],
                         logscale=True))
    made = [m for m in made if m]
    for ext in ("dat", "gp"):
        for p in out.glob("*.%s" % ext):
            p.unlink()
    log("plots: %s" % ", ".join(str(m) for m in made))
    return made


# ====================================================================== markdown

def markdown(res, out, plots_dir, commands):
    first = next(iter(res.values()), {})
    m = first.get("machine") or peers.machine()
    v = {}
    for j in res.values():
        v.update(j.get("versions") or {})
    lines = ["# Benchmark results", "",
             "The latest `make bench` on this machine, written by `bench/results.py markdown` "
             "from build/bench/results/*.json (run %s, %s%s). How each figure is measured: "
             "bench/README.md." % (first.get("run_id") or "?", first.get("time", "?"),
                                   ", BENCH_QUICK: short rounds, not comparable"
                                   if first.get("quick") else ""),
             "", "## Machine and versions", "",
             "- machine: %s CPUs (%s), Linux %s; load average at the start of the first "
             "scenario %s" % (m.get("cores"), m.get("cpu"), m.get("kernel"),
                              " ".join(m.get("loadavg") or [])),
             "- gateway: %s, commit %s" % (v.get("gateway", "?"), v.get("commit", "?")),
             "- peers (Debian 12 packages): nginx %s + nchan %s; pushpin %s (condure %s, zurl "
             "%s); mosquitto %s" % (v.get("nginx", "?"), v.get("nchan", "?"),
                                    v.get("pushpin", "?"), v.get("condure", "?"),
                                    v.get("zurl", "?"), v.get("mosquitto", "?")),
             "- load generator: %s" % ", ".join(sorted({"%s: %s" % (n, j.get("tool"))
                                                       for n, j in res.items() if j.get("tool")})),
             "", "## Commands", "", "```"] + commands + ["```", "", "## Summary", ""]
    rows = table_rows(res)
    lines.append("| " + " | ".join(HEAD) + " |")
    lines.append("|" + "---|" * len(HEAD))
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "/") for c in r) + " |")
    lines += ["", "ratio = gateway / peer (rows in ms or KB: lower is better). CPU us/msg = "
              "server CPU per message (per delivery for fan-out, per connection opened for "
              "idle). The cluster row compares three clustered gateways with one; the faulty "
              "route row the gateway's route protection with none.%s" % (
                  (" " + batch_note(res)) if batch_note(res) else ""), ""]
    lines += ["## Workloads", ""]
    for name, j in res.items():
        p = j.get("params") or {}
        if name == "rpc":
            lines.append("- **rpc**: %s connections, closed loop, %s-byte messages, %s round(s) "
                         "of %s s warm-up + %s s; gateway SEND QoS 1 -> nginx `return 200` -> "
                         "ACK; pushpin WebSocket-over-HTTP -> nginx -> message back."
                         % (p.get("conns"), p.get("payload"), p.get("rounds"), p.get("warmup"),
                            p.get("duration")))
        elif name == "fanout":
            lines.append("- **fanout**: QoS 0, one channel of %s subscribers, %s HTTP "
                         "publishers flat out (retry_after honoured), %s-byte messages, %s "
                         "round(s) of %s s warm-up + %s s."
                         % (p.get("sizes"), p.get("publishers"), p.get("size"), p.get("rounds"),
                            p.get("warmup"), p.get("duration")))
        elif name == "durable":
            lines.append("- **durable**: QoS %s, %s connections, %s round(s) of %s s warm-up + "
                         "%s s; gateway: bench/durable.py (HTTP /send/ to one device session%s); "
                         "mosquitto: MQTT publishers to one persistent-session subscriber, "
                         "persistence true%s."
                         % (p.get("qos"), p.get("conns"), p.get("rounds"), p.get("warmup"),
                            p.get("duration"),
                            "; and at durability normal through POST /batch/ of %s messages "
                            "per call, one call at a time per connection" % p.get("batch")
                            if "batch" in str(p.get("targets", "")).split(",") else "",
                            ", %s messages in flight per publisher" % p.get("mqtt_window")
                            if (p.get("mqtt_window") or 1) > 1 else ""))
        elif name == "idle":
            lines.append("- **idle**: %s WebSocket connections from %s source addresses, "
                         "%s round(s); memory = (RSS with all open) - (RSS before)."
                         % (p.get("conns"), p.get("sources"), p.get("rounds")))
        elif name == "cluster_fanout":
            lines.append("- **cluster_fanout**: bench/cluster_fanout.py (3,000 subscribers, "
                         "one gateway vs three clustered).")
        elif name == "faulty_route":
            lines.append("- **faulty_route**: bench/faulty_route.py (80 attackers on a hanging "
                         "route, 50 clients on a fast one).")
    tables = [(n, j.get("table")) for n, j in res.items() if j.get("table")]
    if tables:
        lines += ["", "## Per scenario", "",
                  "Each scenario's own table, as it printed it (medians of its rounds; the "
                  "rounds and every figure are in build/bench/results/<scenario>.json).", ""]
        for n, t in tables:
            lines += ["### %s" % n, "", "```"] + [l.rstrip() for l in t] + ["```", ""]
    if plots_dir:
        pngs = sorted(Path(plots_dir).glob("*.png"))
        if pngs:
            lines += ["", "## Plots", ""]
            rel = os.path.relpath(plots_dir, Path(out).parent)
            for png in pngs:
                lines.append("![%s](%s/%s)" % (png.stem, rel, png.name))
    lines.append("")
    Path(out).write_text("\n".join(lines))
    log("wrote %s" % out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=("ingest", "summary", "plot", "markdown"))
    ap.add_argument("args", nargs="*")
    ap.add_argument("--run-id")
    ap.add_argument("--out")
    ap.add_argument("--plots")
    ap.add_argument("--command", action="append", default=[],
                    help="markdown: a command line to list (repeatable)")
    a = ap.parse_args()
    if a.cmd == "ingest":
        if len(a.args) != 2:
            ap.error("ingest NAME OUTPUT_FILE")
        ingest(a.args[0], a.args[1])
        return 0
    res = load(a.run_id)
    if a.cmd == "summary":
        summary(res)
    elif a.cmd == "plot":
        plot(res, Path(a.out or peers.ROOT / "bench" / "plots"))
    elif a.cmd == "markdown":
        markdown(res, a.out or peers.ROOT / "bench" / "RESULTS.md", a.plots,
                 a.command or ["make bench"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
