"""A fake LAN of hosts on one machine, for cluster tests that need real
broadcast (loopback has none, so test_19_discovery.py can only use seeds).

Each host is a network namespace with its own loopback and one veth pair:
the end inside is eth0 with 198.18.0.(10+i)/24, the other end is a port of
a bridge in the root namespace, which holds 198.18.0.254/24. So:
    - hosts reach each other (and 198.18.0.255 is the LAN's broadcast),
    - the test process, in the root namespace, reaches every host through
      the bridge (HTTP and WebSocket clients go to 198.18.0.x directly),
    - nothing leaves the machine: ip_forward plays no part, broadcasts are
      never routed, and the hosts have no default route (so 255.255.255.255
      finds no route there: a gateway logs that once and beacons to the
      subnet broadcast, which is what these tests are about).
198.18.0.0/15 is the benchmarking range (RFC 2544): never a real network.

The subnet is fixed, so one run at a time per machine (a second one skips).
Every name carries the pid of the pytest process, rbt<pid>br, rbt<pid>n<i>
(namespaces), rbt<pid>v<i> (root-side veth), so a run never touches what a
concurrent run made, and a crashed run's leftovers are recognised (their pid
is gone) and removed at the next start (remove_leftovers).

A partition is the root-side veth set down: the host keeps its address and
its interface stays up (so it goes on sending into the void, as a host
behind a dead switch port would), but nothing reaches it or leaves it.

Needs root and iproute2; unavailable() says why not, for a pytest.skip.
"""
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

SUBNET = "198.18.0"
BRIDGE_ADDR = SUBNET + ".254"
PREFIX = "rbt"
NETNS_DIR = "/var/run/netns"       # where `ip netns add` pins namespaces
CLONE_NEWNET = 0x40000000

# rbt<pid> followed by what it names: the bridge, a probe, a host's namespace
# or its root-side veth.
_NAME = re.compile(r"^%s(\d+)(br|p|n\d+|v\d+)$" % PREFIX)


def ip(*args, check=True):
    """Run `ip args...`; raise with its stderr when it fails and check is set."""
    r = subprocess.run(("ip",) + tuple(str(a) for a in args), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("ip %s: %s" % (" ".join(map(str, args)), r.stderr.strip()))
    return r


def _links():
    """Names of the root namespace's interfaces ("veth@if7" -> "veth")."""
    out = ip("-o", "link", "show", check=False).stdout
    return [line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()
            if line.count(":") >= 2]


def _namespaces():
    """Named namespaces ("name (id: 3)" -> "name")."""
    return [line.split()[0] for line in ip("netns", "list", check=False).stdout.splitlines()
            if line.strip()]


def _kill_pids_in(ns, timeout=10.0):
    """SIGKILL what still runs in namespace ns (our gateways, if a teardown
    was skipped) and wait until it is gone: a namespace with a process in it
    outlives `ip netns del`, and so would its veth."""
    pids = [int(p) for p in ip("netns", "pids", ns, check=False).stdout.split()]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if os.path.exists("/proc/%d" % p)]
        time.sleep(0.02)


def _owner_alive(pid):
    """Whether the run that made rbt<pid>... is still going: its pid exists
    and is a python (a recycled pid running something else is no owner)."""
    if pid == os.getpid():
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"python" in f.read()
    except OSError:
        return False


def _remove(owner_pred, kill=False):
    """Delete the namespaces and links named rbt<pid>... whose pid satisfies
    owner_pred; veths first, so both ends go at once, bridges last. kill:
    first SIGKILL what runs in those namespaces (only for this process's
    own: gateways it started; an earlier run's died with it, by
    PR_SET_PDEATHSIG)."""
    mine = [ns for ns in _namespaces()
            if _NAME.match(ns) and owner_pred(int(_NAME.match(ns).group(1)))]
    if kill:
        for ns in mine:
            _kill_pids_in(ns)
    links = [(n, _NAME.match(n)) for n in _links()]
    for name, m in sorted(links, key=lambda x: x[0].endswith("br")):
        if m and owner_pred(int(m.group(1))):
            ip("link", "del", name, check=False)
    for ns in mine:
        ip("netns", "del", ns, check=False)


def remove_leftovers():
    """Remove namespaces, veths and bridges of earlier runs that died
    without cleaning up (killed pytest, reboot of a container...)."""
    _remove(lambda pid: not _owner_alive(pid))


def unavailable():
    """Why these tests cannot run here (a skip message), or None: they need
    root, iproute2, and a kernel that lets us make namespaces, veths and
    bridges (a container without CAP_NET_ADMIN/CAP_SYS_ADMIN does not)."""
    if os.geteuid() != 0:
        return "network namespace tests need root (run the suite as root to include them)"
    if not shutil.which("ip"):
        return "network namespace tests need iproute2 (`ip`)"
    for name in _links():
        m = _NAME.match(name)
        if m and m.group(2) == "br" and int(m.group(1)) != os.getpid() and \
                _owner_alive(int(m.group(1))):
            return "another test run (pid %s) is using %s.0/24 on %s" % (
                m.group(1), SUBNET, name)
    probe = "%s%dp" % (PREFIX, os.getpid())
    try:
        ip("netns", "add", probe)
        ip("link", "add", probe, "type", "bridge")
        ip("link", "del", probe)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return "cannot create network namespaces or bridges here: %s" % e
    finally:
        ip("link", "del", probe, check=False)
        ip("netns", "del", probe, check=False)
    return None


_libc = None


def _setns(fd):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


class Host:
    """One host of the LAN: a namespace, its address, its root-side veth."""

    def __init__(self, lan, index):
        self.lan = lan
        self.index = index
        self.ns = "%sn%d" % (lan.prefix, index)
        self.veth = "%sv%d" % (lan.prefix, index)
        self.addr = "%s.%d" % (SUBNET, 10 + index)

    @property
    def exec_prefix(self):
        """argv prefix running a command on this host. `ip netns exec` execs
        the command (no fork), so a Popen's pid is the command's own and
        kill -9 of it is a real crash of that host's process."""
        return ("ip", "netns", "exec", self.ns)

    def run(self, fn, *args, **kw):
        """fn(*args, **kw) as a program of this host: called in a thread
        switched into the namespace with setns() (which moves only the calling
        thread), so the sockets it makes are this host's. A socket keeps its
        namespace afterwards. E.g. a partitioned host is still reached on its
        own address from inside (local addresses route over its lo)."""
        out = {}

        def target():
            own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
            try:
                ns = os.open(os.path.join(NETNS_DIR, self.ns), os.O_RDONLY)
                try:
                    _setns(ns)
                finally:
                    os.close(ns)
                try:
                    out["value"] = fn(*args, **kw)
                except BaseException as e:   # re-raised in the caller
                    out["error"] = e
                finally:
                    _setns(own)
            except BaseException as e:
                out.setdefault("error", e)
            finally:
                os.close(own)

        t = threading.Thread(target=target, name="in-" + self.ns)
        t.start()
        t.join()
        if "error" in out:
            raise out["error"]
        return out["value"]

    def socket(self, family=socket.AF_INET, type=socket.SOCK_DGRAM):
        """A socket on this host's network stack, usable from any thread."""
        return self.run(socket.socket, family, type)

    def __repr__(self):
        return "<host %s %s>" % (self.ns, self.addr)


class Lan:
    """The bridge and its hosts; a context manager that removes all of it.

    One Lan per test (the fixture's scope): every test starts with no
    namespace, no peer table and no neighbour cache from an earlier one."""

    def __init__(self):
        self.prefix = "%s%d" % (PREFIX, os.getpid())
        self.bridge = self.prefix + "br"
        self.hosts = []
        _remove(lambda pid: pid == os.getpid(), kill=True)   # a Lan of ours that failed to close
        try:
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", BRIDGE_ADDR + "/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
        except Exception:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add_host(self):
        """A new namespace plugged into the bridge, with lo and eth0 up.
        Addresses are static and duplicate address detection is an IPv6
        matter, so the host is reachable as soon as this returns."""
        h = Host(self, len(self.hosts) + 1)
        assert 10 + h.index < 254, "the /24 is full"
        self.hosts.append(h)
        ip("netns", "add", h.ns)
        ip("link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        ip("link", "set", h.veth, "master", self.bridge, "up")
        # brd +: the broadcast address a DHCP client or a distribution's
        # network config sets; `ip addr add` alone leaves none, and then
        # getifaddrs() reports no broadcast address for the interface.
        ip("-n", h.ns, "addr", "add", h.addr + "/24", "brd", "+", "dev", "eth0")
        ip("-n", h.ns, "link", "set", "eth0", "up")
        ip("-n", h.ns, "link", "set", "lo", "up")
        return h

    def partition(self, host):
        """Cut the host off the LAN (its switch port goes down)."""
        ip("link", "set", host.veth, "down")

    def heal(self, host):
        ip("link", "set", host.veth, "up")

    def close(self, timeout=10.0):
        """Remove every namespace, veth and the bridge, killing what still
        runs in the namespaces; then wait until the kernel no longer lists
        any of them, so the next Lan can take the same names."""
        _remove(lambda pid: pid == os.getpid(), kill=True)
        deadline = time.monotonic() + timeout
        while True:
            left = [n for n in _links() + _namespaces()
                    if _NAME.match(n) and int(_NAME.match(n).group(1)) == os.getpid()]
            if not left:
                return
            if time.monotonic() >= deadline:
                raise AssertionError("network namespace cleanup left %s" % left)
            time.sleep(0.05)


def start_gateway(factory, host, **opts):
    """Start a gateway on `host` with the conftest `gateway` factory (so its
    log, teardown checks, kill9() and restart() are the usual ones).

    bind is 0.0.0.0: a UDP socket bound to the host's unicast address would
    not receive the LAN's broadcast beacons. The backend hooks are off: the
    stub backend listens on 127.0.0.1 of the root namespace, out of reach
    from a host, and without connect_url a client is admitted at once (its
    identity is in the v2 HELLO)."""
    o = {"bind": "0.0.0.0", "connect_url": "", "forward_url": "", "close_url": ""}
    o.update(opts)
    assert o.get("port"), "a fixed port: every host has its own"
    gw = factory(start=False, **o)
    gw.host = host.addr
    gw.cmd_prefix = host.exec_prefix
    gw.netns_host = host
    gw.start()
    return gw
