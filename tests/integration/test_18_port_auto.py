"""18 port = auto: the first free port of port_range, so several gateways
share a host; none free stops the start with a clear error."""
import re
import socket
import subprocess
import time

import rainbow as rb


def free_run(n):
    """n consecutive ports free on 127.0.0.1 (a run above the ephemeral range)."""
    for base in range(20000, 32000, 97):
        socks = []
        try:
            for p in range(base, base + n):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", p))
                socks.append(s)
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise AssertionError("no run of %d free ports" % n)


def start(tmp_path, name, lo, hi):
    conf = tmp_path / (name + ".ini")
    conf.write_text("[main]\nport = auto\nport_range = %d-%d\nbind = 127.0.0.1\n"
                    "data_dir = %s\nheartbeat = 0\nshutdown_grace = 1\n"
                    % (lo, hi, tmp_path / ("data-" + name)))
    log = open(tmp_path / (name + ".log"), "wb")
    return subprocess.Popen([rb.rainbow_bin(), "-f", str(conf)], stdout=log,
                            stderr=subprocess.STDOUT), tmp_path / (name + ".log")


def listening_port(proc, log, timeout=10):
    def found():
        m = re.search(r"rainbow listening on 127\.0\.0\.1:(\d+)", log.read_text())
        return int(m.group(1)) if m else None
    port = rb.wait_until(lambda: found() or proc.poll() is not None, timeout,
                         what="the listening line")
    assert proc.poll() is None, log.read_text()
    return port


def stop(proc):
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return proc.returncode


def test_port_auto_takes_the_first_free_ports(tmp_path):
    lo = free_run(3)
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", lo + 1))
    blocker.listen(1)
    procs = []
    try:
        a, alog = start(tmp_path, "a", lo, lo + 2)
        procs.append(a)
        assert listening_port(a, alog) == lo
        b, blog = start(tmp_path, "b", lo, lo + 2)
        procs.append(b)
        assert listening_port(b, blog) == lo + 2      # lo + 1 is taken
        for port in (lo, lo + 2):
            r = rb.http_request(port, "GET", "/hello/")
            assert (r.status, r.body) == (200, b"ok")
        # Nothing left: a clear error, exit status 1.
        c, clog = start(tmp_path, "c", lo, lo + 2)
        assert c.wait(10) == 1
        assert "port = auto: no free port in port_range %d-%d on 127.0.0.1" % (lo, lo + 2) \
            in clog.read_text(), clog.read_text()
    finally:
        blocker.close()
        for p in procs:
            assert stop(p) == 0


def test_port_range_is_checked(tmp_path):
    conf = tmp_path / "bad.ini"
    conf.write_text("[main]\nport = auto\nport_range = 2000-1999\n")
    r = subprocess.run([rb.rainbow_bin(), "--check", "-f", str(conf)], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode != 0
    assert "port_range: '2000-1999' is not a range like 1984-2013" in r.stderr, r.stderr
    r = subprocess.run([rb.rainbow_bin(), "--check", "-p", "auto"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0, r.stderr
