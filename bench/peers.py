#!/usr/bin/python3
"""The peer servers of the side-by-side benchmarks (bench/README.md, "Peers").

Each peer runs in the foreground under this script's control, on 127.0.0.1,
with a config generated into a temporary directory of its own (no system
service, nothing under /etc touched): started with PR_SET_PDEATHSIG, checked
to answer before it is used, stopped by its pid (SIGTERM, then SIGKILL), always
(finally blocks, atexit, and SIGTERM / SIGINT / SIGHUP turned into SystemExit
by install_signal_handlers()).  Processes left by a run that was killed with
SIGKILL (nginx workers, pushpin's children outlive a killed parent) are found
by the run's temporary directory in their command line and killed by pid at
the next start (cleanup_leftovers).

  - Nchan:     nginx 1.22 + nchan 1.3.6, `nchan_subscriber websocket` on
               /sub/<ch>, `nchan_publisher http` on /pub/<ch>; worker_processes
               = cores (2 here), worker_connections up to the 20,000 open files
               this machine allows per process.
  - Nginx:     the same nginx as a plain HTTP backend: `location /rainbow/ {
               return 200 ""; }` for the gateway's forward_url, and /ws/ answering
               WebSocket-over-HTTP for pushpin (an OPEN request is 6 bytes,
               "OPEN\\r\\n", and gets "OPEN\\r\\n"; any other request gets the fixed
               TEXT event "ok": a static echo, nginx cannot read the body in a
               `return`).
  - Mosquitto: mosquitto 2.0.11, MQTT over TCP, persistence true with a
               persistence_location in the temp dir, max_inflight_messages 0,
               max_queued_messages 1,000,000, set_tcp_nodelay true.
  - Pushpin:   pushpin 1.36 with zurl under its own runner
               (services=condure,zurl,pushpin-proxy,pushpin-handler), route
               `* 127.0.0.1:<nginx>,over_http` (WebSocket-over-HTTP to a Nginx
               backend above, started and stopped with it), log_level 1,
               message_rate 1,000,000.

Python 3 standard library only.  The Debian packages are installed when
missing (ensure_packages, apt-get as .ci/deps does).  By hand:
    bench/peers.py install            # the packages, if missing
    bench/peers.py versions
    bench/peers.py check              # start each peer, check it answers, stop it
    bench/peers.py run nchan|nginx|mosquitto|pushpin   # until Ctrl-C
"""
import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from benchlib import proc_cpu  # noqa: E402 (one copy, in benchlib)

CLK_TCK = os.sysconf("SC_CLK_TCK")
TMP_PREFIX = "rainbow-peer-"
NCHAN_SO = "/usr/lib/nginx/modules/ngx_nchan_module.so"

# Debian packages per peer (mosquitto-clients: mosquitto_pub/sub for checks
# by hand; gnuplot-nox: bench/plot.sh).
PACKAGES = {
    "nchan": ["nginx", "libnginx-mod-nchan"],
    "nginx": ["nginx"],
    "mosquitto": ["mosquitto", "mosquitto-clients"],
    "pushpin": ["pushpin", "nginx"],
    "plot": ["gnuplot-nox"],
}
ALL_PACKAGES = sorted({p for v in PACKAGES.values() for p in v})


_CAPTURE = []


def log(*a):
    print(*a, flush=True)
    if _CAPTURE:
        _CAPTURE[-1].append(" ".join(str(x) for x in a))


def capture():
    """Start keeping what log() prints (for the results file); -> the list."""
    _CAPTURE.append([])
    return _CAPTURE[-1]


def end_capture():
    return _CAPTURE.pop() if _CAPTURE else []


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ====================================================================== packages

def missing_packages(pkgs):
    out = []
    for p in pkgs:
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if "ok installed" not in r.stdout:
            out.append(p)
    return out


def ensure_packages(pkgs=ALL_PACKAGES, quiet=False):
    """apt-get install the Debian packages of pkgs that are missing (as root,
    or through sudo).  Installing a service package does not start it here:
    the image's policy-rc.d forbids it; in any case the benchmark never uses
    the system's instance.  Raises RuntimeError when they cannot be had."""
    miss = missing_packages(pkgs)
    if not miss:
        return []
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if not quiet:
        log("  installing Debian packages: %s" % " ".join(miss))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (sudo + ["apt-get", "update", "-qq"],
                sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + miss):
        r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, stdin=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), r.stdout[-2000:]))
    still = missing_packages(pkgs)
    if still:
        raise RuntimeError("packages still missing after apt-get: %s" % " ".join(still))
    return miss


def pkg_version(p):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
    return r.stdout.strip() or "?"


def versions():
    """{name: version text} of the peers (Debian package versions)."""
    return {"nginx": pkg_version("nginx"), "nchan": pkg_version("libnginx-mod-nchan"),
            "mosquitto": pkg_version("mosquitto"), "pushpin": pkg_version("pushpin"),
            "zurl": pkg_version("zurl"), "condure": pkg_version("condure"),
            "gnuplot": pkg_version("gnuplot-nox")}


# ====================================================================== /proc

def children_of(pid):
    """Every descendant pid of pid (scan of /proc/*/stat)."""
    parent = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            f = Path("/proc/%s/stat" % d).read_text().rsplit(")", 1)[1].split()
            parent[int(d)] = int(f[1])
        except (OSError, IndexError, ValueError):
            pass
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parent.items() if pp == p]
        out += kids
        todo += kids
    return out


def proc_status_kb(pid, key="VmRSS"):
    try:
        for line in Path("/proc/%d/status" % pid).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def proc_pss_kb(pid):
    """Proportional set size (shared pages divided among their users): the
    fair figure for nginx's master + workers sharing memory."""
    try:
        for line in Path("/proc/%d/smaps_rollup" % pid).read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cmdline(pid):
    try:
        return Path("/proc/%d/cmdline" % pid).read_bytes().replace(b"\0", b" ").decode(
            "utf-8", "replace")
    except OSError:
        return ""


# ====================================================================== lifetime

def die_with_parent():
    """preexec_fn: the child gets SIGKILL if this script dies."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


_LIVE = []


def stop_all():
    for p in list(_LIVE):
        try:
            p.stop()
        except Exception as e:       # keep stopping the others
            log("  WARNING: stopping %s: %s" % (p.name, e))


atexit.register(stop_all)


def _on_signal(signum, frame):
    log("  terminated by signal %d: stopping the peers" % signum)
    raise SystemExit(128 + signum)


def install_signal_handlers():
    """SIGTERM, SIGINT, SIGHUP -> SystemExit, so that every finally block and
    atexit stop the servers this process started."""
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, _on_signal)


def _owner_alive(pid):
    if pid == os.getpid():
        return True
    return b"python" in Path("/proc/%d/cmdline" % pid).read_bytes() \
        if os.path.exists("/proc/%d" % pid) else False


def cleanup_leftovers():
    """Kill (by pid) the servers of earlier runs that died without stopping
    them: processes whose command line or working directory names a
    rainbow-peer-<pid>- directory of a run that is gone (nginx workers show
    only "nginx: worker process" but keep the master's directory, where we
    start it); then remove those directories."""
    base = tempfile.gettempdir()
    pat = re.compile(re.escape(os.path.join(base, TMP_PREFIX)) + r"(\d+)-")
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == me:
            continue
        try:
            cwd = os.readlink("/proc/%s/cwd" % d)
        except OSError:
            cwd = ""
        m = pat.search(cmdline(int(d))) or pat.search(cwd + "/")
        if m and not _owner_alive(int(m.group(1))):
            try:
                os.kill(int(d), signal.SIGKILL)
            except OSError:
                pass
    for d in Path(base).glob(TMP_PREFIX + "*-*"):
        m = re.match(re.escape(TMP_PREFIX) + r"(\d+)-", d.name)
        if m and not _owner_alive(int(m.group(1))):
            shutil.rmtree(d, ignore_errors=True)


def make_tmp(name):
    return tempfile.mkdtemp(prefix="%s%d-%s-" % (TMP_PREFIX, os.getpid(), name))


# ====================================================================== peers

class Peer:
    """One peer server: generated config in self.tmp, started in the
    foreground (self.proc), its pids, CPU and memory from /proc."""

    name = "peer"
    packages = []

    def __init__(self, tmp=None, keep=False):
        self.tmp = Path(tmp or make_tmp(self.name))
        self.own_tmp = tmp is None
        self.keep = keep
        self.port = free_port()
        self.proc = None
        self.logf = None
        self.out_path = self.tmp / ("%s.out" % self.name)

    # -- to override
    def command(self):
        raise NotImplementedError

    def ready(self):
        """True once the server answers."""
        raise NotImplementedError

    def version(self):
        return "?"

    # -- common
    def start(self, timeout=15.0):
        ensure_packages(self.packages)
        self.logf = open(self.out_path, "ab")
        self.proc = subprocess.Popen(self.command(), cwd=str(self.tmp), stdout=self.logf,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=die_with_parent)
        _LIVE.append(self)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s during start:\n%s" % (
                    self.name, self.proc.returncode, self.log_tail()))
            try:
                if self.ready():
                    return self
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not answering within %.0f s:\n%s" % (self.name, timeout,
                                                                   self.log_tail()))

    def pids(self):
        """The server's processes: the one started and its descendants."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + children_of(self.proc.pid)

    def cpu(self, pids=None):
        """CPU seconds (user + system) of the server's processes."""
        return sum(c for c in (proc_cpu(p) for p in (pids or self.pids())) if c is not None)

    def rss_kb(self, pids=None):
        return sum(v for v in (proc_status_kb(p) for p in (pids or self.pids())) if v)

    def pss_kb(self, pids=None):
        return sum(v for v in (proc_pss_kb(p) for p in (pids or self.pids())) if v)

    def stop(self, timeout=10.0):
        """SIGTERM by pid, wait, SIGKILL (the descendants too, by pid).
        Returns the exit status."""
        if self in _LIVE:
            _LIVE.remove(self)
        rc = None
        if self.proc is not None:
            kids = children_of(self.proc.pid) if self.proc.poll() is None else []
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(5)
            rc = self.proc.returncode
            deadline = time.monotonic() + 3
            while kids and time.monotonic() < deadline:
                kids = [k for k in kids if self._ours(k)]
                time.sleep(0.05)
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except OSError:
                    pass
            self.proc = None
        if self.logf is not None:
            self.logf.close()
            self.logf = None
        if self.own_tmp and not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return rc

    def _ours(self, pid):
        """pid still runs in (or names) this peer's directory."""
        t = self.tmp.as_posix()
        try:
            cwd = os.readlink("/proc/%d/cwd" % pid)
        except OSError:
            cwd = ""
        return os.path.exists("/proc/%d" % pid) and (t in cmdline(pid) or cwd.startswith(t))

    def log_files(self):
        return [self.out_path]

    def log_tail(self, n=20):
        out = []
        for f in self.log_files():
            try:
                lines = [l for l in Path(f).read_text(errors="replace").splitlines() if l.strip()]
            except OSError:
                continue
            if lines:
                out.append("[%s]\n%s" % (Path(f).name, "\n".join(lines[-n:])))
        return "\n".join(out)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def http_ok(url, timeout=1.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status == 200


class Nginx(Peer):
    """nginx in the foreground (daemon off, master + worker_processes workers).
    nchan=True loads nchan: /sub/<ch> (WebSocket subscriber), /pub/<ch> (HTTP
    publisher).  Always: /ready, /rainbow/ (static 200, empty body: the
    gateway's forward_url), /ws/ (WebSocket-over-HTTP static echo for pushpin)."""

    name = "nginx"
    packages = PACKAGES["nginx"]

    def __init__(self, tmp=None, nchan=False, workers=None, connections=19900, keep=False,
                 buffer_length=16, message_timeout="10s", shm="512M"):
        super().__init__(tmp, keep)
        if nchan:
            self.name = "nchan"
            self.packages = PACKAGES["nchan"]
        self.nchan = nchan
        self.workers = workers or os.cpu_count() or 1
        self.connections = connections
        self.conf = self.tmp / "nginx.conf"
        self.err = self.tmp / "error.log"
        nchan_http = ""
        nchan_loc = ""
        if nchan:
            nchan_http = (
                "  nchan_max_reserved_memory %s;\n"
                "  nchan_message_buffer_length %d;\n"
                "  nchan_message_timeout %s;\n" % (shm, buffer_length, message_timeout))
            nchan_loc = (
                "    location ~ ^/sub/([A-Za-z0-9_.-]+)$ {\n"
                "      nchan_subscriber websocket;\n"
                "      nchan_channel_id $1;\n"
                "    }\n"
                "    location ~ ^/pub/([A-Za-z0-9_.-]+)$ {\n"
                "      nchan_publisher http;\n"
                "      nchan_channel_id $1;\n"
                "    }\n")
        t = self.tmp.as_posix()
        user = "user root;\n" if os.geteuid() == 0 else ""
        self.conf.write_text(
            "# generated by bench/peers.py\n"
            + ("load_module %s;\n" % NCHAN_SO if nchan else "")
            + "daemon off;\nmaster_process on;\n" + user
            + "worker_processes %d;\n" % self.workers
            + "worker_rlimit_nofile 20000;\n"
            + "pid %s/nginx.pid;\n" % t
            + "error_log %s warn;\n" % self.err
            + "events {\n  worker_connections %d;\n  multi_accept on;\n}\n" % self.connections
            + "http {\n  access_log off;\n  keepalive_requests 1000000;\n"
            + "  keepalive_timeout 300s;\n"
            + "".join("  %s_temp_path %s/%s;\n" % (k, t, k)
                      for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            + nchan_http
            + "  server {\n    listen 127.0.0.1:%d backlog=8192;\n" % self.port
            + "    location = /ready { return 200 \"ok\"; }\n"
            + "    location /rainbow/ { return 200 \"\"; }\n"
            + "    location /ws/ {\n"
            + "      default_type application/websocket-events;\n"
            + "      if ($http_content_length = 6) { return 200 \"OPEN\\r\\n\"; }\n"
            + "      return 200 \"TEXT 2\\r\\nok\\r\\n\";\n"
            + "    }\n"
            + nchan_loc
            + "  }\n}\n")

    def command(self):
        return ["nginx", "-p", self.tmp.as_posix(), "-c", self.conf.as_posix(),
                "-e", self.err.as_posix()]

    def ready(self):
        if not http_ok("http://127.0.0.1:%d/ready" % self.port):
            return False
        # every worker up (the master forks them after binding)
        return len(self.pids()) >= 1 + self.workers

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def version(self):
        v = "nginx %s" % pkg_version("nginx")
        if self.nchan:
            v += " + nchan %s" % pkg_version("libnginx-mod-nchan")
        return v

    def log_files(self):
        return [self.out_path, self.err]

    def workers_pids(self):
        return children_of(self.proc.pid) if self.proc else []


class Mosquitto(Peer):
    """mosquitto -c <tmp>/mosquitto.conf: one MQTT (TCP) listener on
    127.0.0.1, persistence in <tmp>/store/."""

    name = "mosquitto"
    packages = ["mosquitto"]

    def __init__(self, tmp=None, persistence=True, keep=False, autosave_interval=None,
                 autosave_on_changes=False):
        super().__init__(tmp, keep)
        self.store = self.tmp / "store"
        self.store.mkdir(exist_ok=True)
        self.conf = self.tmp / "mosquitto.conf"
        self.logfile = self.tmp / "mosquitto.log"
        lines = [
            "# generated by bench/peers.py",
            "per_listener_settings false",
            "allow_anonymous true",
            "listener %d 127.0.0.1" % self.port,
            "protocol mqtt",
            "max_inflight_messages 0",
            "max_queued_messages 1000000",
            "max_queued_bytes 0",
            "set_tcp_nodelay true",
            "log_dest file %s" % self.logfile,
            "log_type error",
            "log_type warning",
            "connection_messages false",
        ]
        if os.geteuid() == 0:
            lines.append("user root")     # keep root: the store dir is ours
        if persistence:
            lines += ["persistence true", "persistence_location %s/" % self.store,
                      "persistence_file mosquitto.db"]
            if autosave_interval is not None:
                lines.append("autosave_interval %d" % autosave_interval)
            if autosave_on_changes:
                lines.append("autosave_on_changes true")
        else:
            lines.append("persistence false")
        self.persistence = persistence
        self.conf.write_text("\n".join(lines) + "\n")

    def command(self):
        return ["mosquitto", "-c", self.conf.as_posix()]

    def ready(self):
        """A CONNECT answered by CONNACK 0 (MQTT 3.1.1, clean session)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            cid = b"ready-check"
            var = b"\x00\x04MQTT\x04\x02\x00\x0a"
            payload = len(cid).to_bytes(2, "big") + cid
            s.sendall(bytes([0x10, len(var) + len(payload)]) + var + payload)
            a = s.recv(4)
            s.sendall(b"\xe0\x00")          # DISCONNECT
            return a[:2] == b"\x20\x02" and a[3:4] == b"\x00"

    def version(self):
        return "mosquitto %s" % pkg_version("mosquitto")

    def log_files(self):
        return [self.out_path, self.logfile]


class Pushpin(Peer):
    """pushpin (runner: condure, zurl, pushpin-proxy, pushpin-handler) on
    127.0.0.1:port, every request routed to its own Nginx backend
    (WebSocket-over-HTTP, `over_http`), started and stopped with it."""

    name = "pushpin"
    packages = PACKAGES["pushpin"]

    def __init__(self, tmp=None, keep=False, message_rate=1000000, backend_workers=1):
        super().__init__(tmp, keep)
        self.backend = None       # made by start(): its port goes into the routes
        self.backend_workers = backend_workers
        self.run = self.tmp / "run"
        self.logdir = self.tmp / "log"
        for d in (self.run, self.logdir):
            d.mkdir(exist_ok=True)
        self.conf = self.tmp / "pushpin.conf"
        self.routes = self.tmp / "routes"
        self.message_rate = message_rate

    def _write_conf(self):
        hp = [free_port() for _ in range(4)]
        self.routes.write_text("* 127.0.0.1:%d,over_http\n" % self.backend.port)
        self.conf.write_text("""# generated by bench/peers.py
[global]
include={libdir}/internal.conf
rundir=%(run)s
ipc_prefix=pushpin-
port_offset=0
stats_connection_ttl=120

[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=%(port)d
logdir=%(logdir)s
log_level=1
client_buffer_size=8192
client_maxconn=50000
condure_bin=condure
zurl_bin=zurl

[proxy]
routesfile=%(routes)s
zurl_out_specs=ipc://{rundir}/{ipc_prefix}zurl-in
zurl_out_stream_specs=ipc://{rundir}/{ipc_prefix}zurl-in-stream
zurl_in_specs=ipc://{rundir}/{ipc_prefix}zurl-out
debug=false
auto_cross_origin=false
accept_x_forwarded_protocol=false
set_x_forwarded_protocol=proto-only
x_forwarded_for=
x_forwarded_for_trusted=
orig_headers_need_mark=
accept_pushpin_route=false
log_from=false
log_user_agent=false
sig_iss=pushpin
sig_key=changeme
upstream_key=
updates_check=off

[handler]
push_in_spec=tcp://127.0.0.1:%(p0)d
push_in_sub_specs=tcp://127.0.0.1:%(p1)d
push_in_sub_connect=false
push_in_http_addr=127.0.0.1
push_in_http_port=%(p2)d
stats_spec=ipc://{rundir}/{ipc_prefix}stats
command_spec=tcp://127.0.0.1:%(p3)d
message_rate=%(rate)d
message_hwm=25000
message_wait=5000
id_cache_ttl=60
connection_subscription_max=20
subscription_linger=60
stats_subscription_ttl=60
stats_report_interval=10
stats_format=tnetstring
""" % {"run": self.run.as_posix(), "port": self.port, "logdir": self.logdir.as_posix(),
       "routes": self.routes.as_posix(), "p0": hp[0], "p1": hp[1], "p2": hp[2], "p3": hp[3],
       "rate": self.message_rate})

    def command(self):
        return ["pushpin", "--config", self.conf.as_posix(), "--port",
                "127.0.0.1:%d" % self.port, "--loglevel", "1"]

    def start(self, timeout=20.0):
        ensure_packages(self.packages)
        (self.tmp / "backend").mkdir(exist_ok=True)
        self.backend = Nginx(tmp=self.tmp / "backend", workers=self.backend_workers,
                             connections=8192)
        self.backend.start()
        self._write_conf()
        try:
            return super().start(timeout)
        except BaseException:
            self.backend.stop()
            raise

    def ready(self):
        """A WebSocket through pushpin to the backend: OPEN, one message echoed."""
        return ws_echo_check(self.port, "/ws/ready")

    def stop(self, timeout=10.0):
        rc = super().stop(timeout)
        if self.backend is not None:
            self.backend.stop()
        return rc

    def server_pids(self):
        """pushpin's processes and the backend nginx's."""
        return self.pids() + (self.backend.pids() if self.backend else [])

    def version(self):
        return "pushpin %s (condure %s, zurl %s) + nginx %s backend" % (
            pkg_version("pushpin"), pkg_version("condure"), pkg_version("zurl"),
            pkg_version("nginx"))

    def log_files(self):
        return [self.out_path] + sorted(self.logdir.glob("*.log"))


def ws_echo_check(port, path, timeout=2.0):
    """Open a WebSocket at path, send a text message, expect a text answer."""
    import base64
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        key = base64.b64encode(os.urandom(16))
        s.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13"
                  b"\r\n\r\n" % (path.encode(), port, key))
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(4096)
            if not d:
                return False
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n")[0] + b" ":
            return False
        m = os.urandom(4)
        p = b"ping"
        s.sendall(bytes([0x81, 0x80 | len(p)]) + m + bytes(b ^ m[i % 4] for i, b in enumerate(p)))
        while len(rest) < 2:
            d = s.recv(4096)
            if not d:
                return False
            rest += d
        return rest[0] == 0x81


# ====================================================================== scenario helpers
# Shared by bench/rpc.py, bench/fanout.py, bench/idle.py, bench/mqtt_durable.py.

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "build" / "bench" / "results"


def load_prog():
    """(argv prefix, name) of the load generator: build/bench/loadgen, else
    the Python stand-in bench/pyload.py (same command line and JSON)."""
    lg = loadgen_path()
    if lg:
        return [lg], "loadgen"
    return [sys.executable, str(ROOT / "bench" / "pyload.py")], "pyload"


def lat_ms(j, key, field):
    """A latency field (ms) of a load tool's JSON histogram, nan if absent."""
    v = (j.get(key) or {}).get(field)
    return float(v) if isinstance(v, (int, float)) else float("nan")


def loadgen_path():
    """build/bench/loadgen ($LOADGEN) when it is built and runs, else None
    (the scenarios then run bench/pyload.py).  BENCH_LOADGEN=python forces
    the Python stand-in."""
    if os.environ.get("BENCH_LOADGEN") == "python":
        return None
    p = Path(os.environ.get("LOADGEN") or ROOT / "build" / "bench" / "loadgen")
    return str(p) if p.is_file() and os.access(p, os.X_OK) else None


class Sampler:
    """A thread sampling the summed CPU seconds and VmRSS of pids_fn()'s
    processes every `period` s, with time.monotonic() stamps (the clock the
    load tools report their measured window in): cores(t0, t1) is the CPU
    used between two instants (interpolated), rss_peak_kb the largest RSS."""

    def __init__(self, pids_fn, period=0.1):
        import threading
        self.pids_fn = pids_fn
        self.period = period
        self.samples = []
        self.machine = []
        self.stop_ev = threading.Event()
        self.pids = []
        self.t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        last_pids_t = 0.0
        while not self.stop_ev.is_set():
            now = time.monotonic()
            if now - last_pids_t > 1.0:
                try:
                    self.pids = self.pids_fn()
                except Exception:
                    pass
                last_pids_t = now
            cpu = sum(c for c in (proc_cpu(p) for p in self.pids) if c is not None)
            rss = sum(v for v in (proc_status_kb(p) for p in self.pids) if v)
            self.samples.append((time.monotonic(), cpu, rss))
            self.machine.append((self.samples[-1][0], machine_busy_s()))
            self.stop_ev.wait(self.period)

    def __enter__(self):
        self.t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        self.t.join(2)

    @staticmethod
    def _at(s, t):
        if not s:
            return float("nan")
        if t <= s[0][0]:
            return s[0][1]
        for (ta, ca), (tb, cb) in zip(s, s[1:]):
            if ta <= t <= tb:
                return ca + (cb - ca) * ((t - ta) / (tb - ta) if tb > ta else 0.0)
        return s[-1][1]

    def cores(self, t0, t1):
        """CPU of the processes between t0 and t1, in cores (1.0 = one busy)."""
        s = [(t, c) for t, c, _ in self.samples]
        if not s or t1 <= t0:
            return float("nan")
        return (self._at(s, t1) - self._at(s, t0)) / (t1 - t0)

    def machine_cores(self, t0, t1):
        """Busy cores of the whole machine between t0 and t1."""
        if not self.machine or t1 <= t0:
            return float("nan")
        return (self._at(self.machine, t1) - self._at(self.machine, t0)) / (t1 - t0)

    def rss_peak_kb(self):
        return max((r for _, _, r in self.samples), default=0)


def machine_busy_s():
    """CPU seconds all cores have been busy since boot (/proc/stat; idle,
    iowait and steal are not busy)."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    busy = sum(f[:8]) - f[3] - (f[4] if len(f) > 4 else 0) - (f[7] if len(f) > 7 else 0)
    return busy / CLK_TCK


def median(xs):
    v = sorted(x for x in xs if x is not None and x == x)
    if not v:
        return float("nan")
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def fnum(v, spec="%.0f"):
    """A number for a table: '?' when unknown."""
    if v is None or v != v:
        return "?"
    if spec == ",":
        return "{:,.0f}".format(v)
    return spec % v


def ratio(a, b):
    try:
        return a / b if a == a and b == b and b else float("nan")
    except TypeError:
        return float("nan")


def bench_line(name, gw, peer, unit):
    """`BENCH <name> gateway=<x> peer=<y> ratio=<x/y> unit=<unit>`; the unit
    says "(lower is better)" where that is so."""
    def f(v):
        if v is None or v != v:
            return "?"
        return "%.2f" % v if abs(v) < 100 else "%.0f" % v
    log("BENCH %s gateway=%s peer=%s ratio=%s unit=%s"
        % (name, f(gw), f(peer), fnum(ratio(gw, peer), "%.2f"), unit))


def machine():
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": model, "kernel": os.uname().release,
            "loadavg": Path("/proc/loadavg").read_text().split()[:3]}


def gateway_version(binary):
    try:
        r = subprocess.run([binary, "--version"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=5)
        return r.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def git_commit():
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, timeout=5)
        c = r.stdout.strip()
        d = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                            "src"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                           timeout=10).stdout.strip()
        return c + ("+dirty src" if d else "")
    except (OSError, subprocess.SubprocessError):
        return "?"


def save_result(name, data):
    """build/bench/results/<name>.json with the run id (BENCH_RUN_ID, set by
    bench/run), time, machine and versions added; returns the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = {"scenario": name, "run_id": os.environ.get("BENCH_RUN_ID", ""),
           "time": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine(),
           "quick": os.environ.get("BENCH_QUICK") == "1"}
    out.update(data)
    p = RESULTS_DIR / ("%s.json" % name)
    tmp = p.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(out, indent=1, default=str))
    tmp.replace(p)
    return p


def last_json(text):
    """The last line of text that parses as a JSON object, or None."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


def run_tool(argv, timeout):
    """Run a load tool to its end: -> (its last JSON object or None, stderr
    tail, exit status, CPU seconds of the tool and its children)."""
    r0 = os.times()
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        out, err, rc = r.stdout, r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = "timed out after %.0f s" % timeout
        rc = None
    r1 = os.times()
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return last_json(out), "\n".join(err.strip().splitlines()[-5:]), rc, cpu


# ====================================================================== CLI

def _check():
    ok = True
    for cls, kw in ((Nginx, {"nchan": True}), (Nginx, {}), (Mosquitto, {}), (Pushpin, {})):
        p = cls(**kw)
        t0 = time.monotonic()
        try:
            p.start()
            extra = ""
            if isinstance(p, Nginx) and p.nchan:
                extra = "; publish %s" % nchan_publish_check(p)
            log("%-10s ok: %s, answered %.2f s after start, pids %s, RSS %d kB%s"
                % (p.name, p.version(), time.monotonic() - t0, p.pids(), p.rss_kb(), extra))
        except Exception as e:
            ok = False
            log("%-10s FAILED: %s" % (p.name, e))
        finally:
            pids = p.pids() + (p.backend.pids() if isinstance(p, Pushpin) and p.backend else [])
            rc = p.stop()
            left = [k for k in pids if os.path.exists("/proc/%d" % k)]
            log("%-10s stopped (exit %s)%s" % (p.name, rc, (", LEFT RUNNING: %s" % left)
                                                if left else ", no process left"))
    return 0 if ok else 1


def nchan_publish_check(p):
    req = urllib.request.Request(p.url("/pub/check"), data=b"x", method="POST")
    with urllib.request.urlopen(req, timeout=2) as r:
        return "HTTP %d" % r.status


def main(argv):
    install_signal_handlers()
    cmd = argv[1] if len(argv) > 1 else "check"
    if cmd == "install":
        got = ensure_packages(ALL_PACKAGES)
        log("installed: %s" % (" ".join(got) or "nothing (all present)"))
        return 0
    if cmd == "versions":
        for k, v in versions().items():
            log("%-10s %s" % (k, v))
        return 0
    cleanup_leftovers()
    if cmd == "check":
        return _check()
    if cmd == "run" and len(argv) > 2:
        kinds = {"nchan": lambda: Nginx(nchan=True), "nginx": Nginx, "mosquitto": Mosquitto,
                 "pushpin": Pushpin}
        p = kinds[argv[2]]()
        p.start()
        log("%s on 127.0.0.1:%d (pids %s, dir %s); Ctrl-C stops it"
            % (p.name, p.port, p.pids(), p.tmp))
        try:
            while p.proc.poll() is None:
                time.sleep(1)
        finally:
            p.stop()
        return 0
    log(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
