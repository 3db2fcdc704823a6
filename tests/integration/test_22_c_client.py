"""22 C client: rainbow-cli (clients/c/cli.c, on librainbow) against the real
gateway and the stub backend: send at each QoS with the backend's reply, NAKs
and timeouts as exit codes, listen printing pushes made with push, sub / unsub
/ kick / info over REST (v1 signatures), a refused upgrade, QoS 2 duplicate
suppression, heartbeat both ways, reconnection with session resume after a
gateway restart, sends queued while the gateway is down, and many connections
on one lws context (swarm).

The binary is rainbow-cli beside $RAINBOW_BIN (make builds both). Every
process started here is killed at teardown, and fails the test if its output
holds a sanitizer report."""
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import rainbow as rb

CLI = Path(rb.rainbow_bin()).resolve().parent / "rainbow-cli"
LIB = CLI.parent / "librainbow-client.a"
REPO = Path(__file__).resolve().parents[2]
TOKEN = rb.TOKEN

# exit statuses (rainbow-cli --help)
EX_OK, EX_ERR, EX_REFUSED, EX_TIMEOUT, EX_CLOSED = 0, 1, 2, 3, 4


def cli_env():
    env = dict(os.environ)
    env["RAINBOW_TOKEN"] = TOKEN
    return env


def check_sanitizer(text, what):
    for mark in rb.SANITIZER_MARKS:
        assert mark not in text, "%s: sanitizer report (%s):\n%s" % (what, mark, text[-4000:])


def run_cli(*args, timeout=30, env=None, stdin=None):
    """Run rainbow-cli to completion; (exit status, stdout, stderr)."""
    assert CLI.exists(), "%s is missing: build it with make" % CLI
    p = subprocess.run([str(CLI)] + [str(a) for a in args], capture_output=True,
                       timeout=timeout, env=env or cli_env(), input=stdin,
                       preexec_fn=rb._die_with_parent)
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    check_sanitizer(err, "rainbow-cli %s" % " ".join(str(a) for a in args[:1]))
    return p.returncode, out, err


class Bg:
    """A rainbow-cli process in the background; its stdout and stderr lines
    are collected by threads."""

    def __init__(self, *args):
        assert CLI.exists(), "%s is missing: build it with make" % CLI
        self.args = [str(a) for a in args]
        self.proc = subprocess.Popen([str(CLI)] + self.args, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     env=cli_env(), preexec_fn=rb._die_with_parent)
        self.out, self.err = [], []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def _read(self, f, into):
        for line in iter(f.readline, b""):
            with self.lock:
                into.append(line.decode(errors="replace").rstrip("\n"))

    def lines(self, which="out"):
        with self.lock:
            return list(self.out if which == "out" else self.err)

    def wait_line(self, pattern, which="err", timeout=10.0, count=1):
        """The first line matching pattern (regex search) once `count` match."""
        rx = re.compile(pattern)

        def found():
            hits = [l for l in self.lines(which) if rx.search(l)]
            return hits[0] if len(hits) >= count else None
        try:
            return rb.wait_until(found, timeout, what="%r in %s" % (pattern, which))
        except AssertionError:
            raise AssertionError("no %r on %s within %.0f s; exit %s\nstdout: %s\nstderr: %s" % (
                pattern, which, timeout, self.proc.poll(), self.lines("out"), self.lines("err")))

    def identity(self, timeout=10.0):
        line = self.wait_line(r"^open identity=[0-9a-f]{64} ", timeout=timeout)
        return re.search(r"identity=([0-9a-f]{64})", line).group(1)

    def wait_exit(self, timeout=10.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("rainbow-cli %s still running after %.0f s\nstderr: %s" % (
                self.args[0], timeout, self.lines("err"))) from None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for t in self.threads:
            t.join(5)
        check_sanitizer("\n".join(self.lines("err")), "rainbow-cli %s" % self.args[0])


@pytest.fixture
def bg():
    started = []

    def factory(*args):
        p = Bg(*args)
        started.append(p)
        return p
    yield factory
    for p in started:
        p.stop()


def api(gw):
    return "http://127.0.0.1:%d" % gw.port


def ws(gw):
    return "ws://127.0.0.1:%d" % gw.port


# ---------------------------------------------------------------- help

@pytest.mark.parametrize("cmd", ["listen", "send", "swarm", "push", "sub", "unsub", "kick",
                                 "info"])
def test_help(cmd):
    rc, out, _ = run_cli(cmd, "--help")
    assert rc == EX_OK and out.startswith("usage: rainbow-cli %s" % cmd), (rc, out)


def test_usage_errors():
    rc, out, _ = run_cli("--help")
    assert rc == EX_OK and "listen URL" in out and "Exit status" in out
    assert run_cli()[0] == EX_ERR
    assert run_cli("nonsense")[0] == EX_ERR
    rc, _, err = run_cli("send", "ws://127.0.0.1:1/", "5")
    assert rc == EX_ERR and "expects URL MSGTYPE DATA" in err, err
    rc, _, err = run_cli("send", "http://127.0.0.1:1/", "5", "x")
    assert rc == EX_ERR and "bad URL" in err, err
    rc, _, err = run_cli("send", "ws://127.0.0.1:1/", "70000", "x")
    assert rc == EX_ERR and "MSGTYPE" in err, err
    rc, _, err = run_cli("push", "http://127.0.0.1:1/", "room", "x",
                         env={k: v for k, v in os.environ.items() if k != "RAINBOW_TOKEN"})
    assert rc == EX_ERR and "security token" in err, err


# ---------------------------------------------------------------- send

@pytest.mark.parametrize("qos", [0, 1, 2])
def test_send_each_qos_gets_the_reply(gateway, backend, qos):
    gw = gateway()
    payload = '{"q":%d,"s":"héllo"}' % qos
    rc, out, err = run_cli("send", ws(gw), 5, payload, "--qos", qos, "--device", "dev-s%d" % qos,
                           "--platform", "linux", "--client-token", "tok en")
    assert rc == EX_OK, (rc, out, err)
    assert out == ("" if qos == 0 else "re:%s\n" % payload), out
    reqs = backend.wait("/forward/5/", 1)
    assert len(reqs) == 1, reqs
    r = reqs[0]
    assert r.body == payload.encode()
    assert r.header("RAINBOWQOS") == str(qos)
    if qos:
        # a v2 client with a device id holds a session: the key is the device
        assert r.header("RAINBOWMESSAGEID") == "dev-s%d:1" % qos, r.headers
    # the connect hook saw the query arguments (as headers)
    hook = backend.requests("/connect")[0]
    assert hook.header("X-DEVICEID") == "dev-s%d" % qos
    assert hook.header("X-CLIENT-OS") == "linux"
    assert hook.header("token") == "tok en"
    if qos == 2:
        # REL / COM ran before exit: nothing left in the gateway's QoS 2 store
        assert rb.wait_until(lambda: gw.db_count("upstream") == 0, 5, what="upstream row gone")


def test_send_v1(gateway, backend):
    gw = gateway()
    rc, out, err = run_cli("send", ws(gw) + "/connect/", 3, "old", "--qos", 1, "--v1")
    assert (rc, out) == (EX_OK, "re:old\n"), (rc, out, err)
    r = backend.wait("/forward/3/", 1)[0]
    # no session: the key is the connection's identity
    assert re.fullmatch(r"[0-9a-f]{64}:1", r.header("RAINBOWMESSAGEID")), r.headers


def test_send_stdin_and_binary(gateway, backend):
    gw = gateway()
    data = bytes(range(256))
    p = subprocess.run([str(CLI), "send", ws(gw), "4", "-", "--qos", "1"], input=data,
                       capture_output=True, timeout=30, env=cli_env(),
                       preexec_fn=rb._die_with_parent)
    assert p.returncode == EX_OK, p
    assert p.stdout == b"re:" + data + b"\n"
    assert backend.wait("/forward/4/", 1)[0].body == data


@pytest.mark.parametrize("qos", [1, 2])
def test_send_nak_exits_nonzero(gateway, backend, qos):
    gw = gateway()
    backend.rules({"prefix": "/forward/7/", "status": 500, "body": "boom"},
                  {"prefix": "/forward/8/", "headers": {"RAINBOWREQUESTINVALID": "no way"}})
    rc, out, err = run_cli("send", ws(gw), 7, "x", "--qos", qos)
    assert rc == EX_REFUSED, (rc, out, err)
    assert out == "NAK 502 backend answered HTTP 500 (temporary)\n", out
    rc, out, err = run_cli("send", ws(gw), 8, "x", "--qos", qos)
    assert (rc, out) == (EX_REFUSED, "NAK 422 no way\n"), (rc, out, err)


def test_send_qos0_nak_with_linger(gateway, backend):
    gw = gateway(forward_url="")
    rc, out, err = run_cli("send", ws(gw), 1, "x", "--qos", 0, "--linger", 10)
    assert rc == EX_REFUSED, (rc, out, err)
    assert out.startswith("NAK 503 "), out
    # without --linger a QoS 0 send is done once written
    rc, out, err = run_cli("send", ws(gw), 1, "x", "--qos", 0)
    assert (rc, out) == (EX_OK, ""), (rc, out, err)


def test_send_timeout(gateway, backend):
    """A v1 client hears nothing when the forward fails: the send times out."""
    gw = gateway()
    backend.rules({"prefix": "/forward/9/", "status": 500})
    t0 = time.monotonic()
    rc, out, err = run_cli("send", ws(gw), 9, "x", "--qos", 1, "--v1", "--timeout", "1.5")
    elapsed = time.monotonic() - t0
    assert rc == EX_TIMEOUT and out == "" and "timeout" in err, (rc, out, err)
    assert elapsed >= 1.4, elapsed
    backend.wait("/forward/9/", 1)


def test_send_to_nowhere_times_out():
    rc, out, err = run_cli("send", "ws://127.0.0.1:%d/" % rb.closed_port(), 1, "x", "--timeout",
                           "1.5", "--reconnect-min", 100)
    assert (rc, out) == (EX_TIMEOUT, ""), (rc, out, err)


def test_refused_upgrade(gateway, backend, bg):
    gw = gateway()
    backend.rules({"prefix": "/connect", "body": '{"status":"nope"}'})
    rc, out, err = run_cli("send", ws(gw), 1, "x", "--timeout", 10)
    assert rc == EX_CLOSED, (rc, out, err)
    assert "upgrade refused: HTTP 401" in err, err
    l = bg("listen", ws(gw))
    assert l.wait_exit(10) == EX_CLOSED
    l.wait_line(r"^done code=401 reason=upgrade refused: HTTP 401$")
    assert backend.count("/forward/") == 0


def test_wss(gateway, backend, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    tls = rb.free_port()
    gateway(tls_port=tls, tls_cert=str(cert), tls_key=str(key))
    rc, out, err = run_cli("send", "wss://127.0.0.1:%d" % tls, 2, "tls", "--qos", 1,
                           "--insecure")
    assert (rc, out) == (EX_OK, "re:tls\n"), (rc, out, err)
    rc, out, err = run_cli("send", "wss://localhost:%d/connect/" % tls, 2, "ca", "--qos", 2,
                           "--ca", cert)
    assert (rc, out) == (EX_OK, "re:ca\n"), (rc, out, err)
    # a self-signed certificate is refused without --insecure or --ca
    rc, out, err = run_cli("send", "wss://127.0.0.1:%d" % tls, 2, "no", "--qos", 1,
                           "--no-reconnect")
    assert rc == EX_CLOSED and out == "" and "SSL" in err, (rc, out, err)
    assert [r.body for r in backend.requests("/forward/")] == [b"tls", b"ca"]


# ---------------------------------------------------------------- listen + REST

def test_listen_prints_pushes(gateway, backend, bg):
    gw = gateway()
    l = bg("listen", ws(gw), "--device", "dev-l", "--channel", "room", "--channel", "hall",
           "--reply", "thanks")
    l.identity()
    l.wait_line(r"^subscribed room$")
    l.wait_line(r"^subscribed hall$")
    l.wait_line(r"^ready$")
    # the channels were also asked for in the query (for backends that honour it)
    assert backend.requests("/connect")[0].header("channel") == "room;;hall"
    for qos in (0, 1, 2):
        rc, out, err = run_cli("push", api(gw), "room", "p%d" % qos, "--qos", qos,
                               "--msgtype", 40 + qos, "--timeout", 5)
        assert rc == EX_OK, (rc, out, err)
        ans = json.loads(out)
        assert ans["status"] == 0 and ans["connections"] == 1, ans
        if qos:
            assert ans["data"] == "thanks", ans
        l.wait_line(r"^%d %d p%d$" % (40 + qos, qos, qos), "out")
    rc, out, _ = run_cli("push", api(gw), "hall", "line1\nline2\\\t\x01é", "--qos", 1)
    assert rc == EX_OK, out
    l.wait_line(r"^1 1 line1\\nline2\\\\\\t\\x01é$", "out")
    rc, out, _ = run_cli("push", api(gw), "dev-l", "direct", "--to", "device", "--qos", 2)
    assert rc == EX_OK and json.loads(out)["connections"] == 1, out
    l.wait_line(r"^1 2 direct$", "out")
    assert l.lines("out") == ["40 0 p0", "41 1 p1", "42 2 p2",
                              "1 1 line1\\nline2\\\\\\t\\x01é", "1 2 direct"]
    # every QoS 2 exchange finished (REL / COM)
    assert rb.wait_until(lambda: gw.db_counts()["deliveries"] == 0, 5, what="deliveries done")


def test_listen_count_exits_after_answering(gateway, backend, bg):
    gw = gateway()
    l = bg("listen", ws(gw), "--channel", "c1", "--count", 2)
    l.wait_line(r"^ready$")
    for i in range(2):
        rc, out, _ = run_cli("push", api(gw), "c1", "m%d" % i, "--qos", 1)
        assert rc == EX_OK and json.loads(out)["connections"] == 1, out
    assert l.wait_exit(10) == EX_OK
    assert l.lines("out") == ["1 1 m0", "1 1 m1"]


def test_sub_unsub_kick_info(gateway, backend, bg):
    gw = gateway()
    l = bg("listen", ws(gw))
    ident = l.identity()
    l.wait_line(r"^ready$")

    rc, out, _ = run_cli("sub", api(gw), ident, "news")
    assert (rc, json.loads(out)) == (EX_OK, {"status": 0}), out
    rc, out, _ = run_cli("push", api(gw), "news", "n1", "--qos", 1)
    assert rc == EX_OK and json.loads(out)["connections"] == 1, out
    l.wait_line(r"^1 1 n1$", "out")

    rc, out, _ = run_cli("info", api(gw))
    assert rc == EX_OK, out
    info = json.loads(out)
    assert info["status"] == 0 and info["server"] == "127.0.0.1:%d" % gw.port, info
    assert ["news", 1] in info["channels"], info
    assert info["process"]["connections"] == 1, info

    rc, out, _ = run_cli("unsub", api(gw), ident, "news")
    assert (rc, json.loads(out)) == (EX_OK, {"status": 0}), out
    rc, out, _ = run_cli("push", api(gw), "news", "n2", "--qos", 1, "--timeout", 1)
    assert rc == EX_OK and json.loads(out)["connections"] == 0, out

    # occupy: the only member afterwards
    rc, out, _ = run_cli("sub", api(gw), ident, "desk", "--occupy")
    assert (rc, json.loads(out)) == (EX_OK, {"status": 0}), out
    assert gw.presence("desk") == [ident]

    # refusals exit 2 with the gateway's answer printed
    rc, out, _ = run_cli("kick", api(gw), "0" * 64)
    assert rc == EX_REFUSED and json.loads(out)["msg"] == "no such connection", out
    rc, out, _ = run_cli("sub", api(gw), ident, "x", "--token", "wrong")
    assert rc == EX_REFUSED and json.loads(out)["msg"] == "signature error", out

    rc, out, _ = run_cli("kick", api(gw), ident, "--code", 4001, "--reason", "go away")
    assert (rc, json.loads(out)) == (EX_OK, {"status": 0}), out
    assert l.wait_exit(10) == EX_CLOSED
    l.wait_line(r"^done code=4001 reason=go away$")
    assert l.lines("out") == ["1 1 n1"]


def test_info_signed_and_password(gateway, backend):
    gw = gateway(serverinfo_auth="signature")
    rc, out, _ = run_cli("info", api(gw))
    assert rc == EX_OK and json.loads(out)["status"] == 0, out
    rc, out, _ = run_cli("info", api(gw), "--token", "wrong")
    assert rc == EX_REFUSED and json.loads(out)["msg"] == "signature error", out
    gw2 = gateway(serverinfo_auth="password", admin_password="s3cret")
    rc, out, _ = run_cli("info", api(gw2), "--password", "s3cret")
    assert rc == EX_OK and json.loads(out)["status"] == 0, out
    rc, out, err = run_cli("info", api(gw2), "--password", "nope")
    assert rc == EX_REFUSED and "HTTP 401" in err, (out, err)


def test_rest_to_nowhere():
    rc, out, err = run_cli("info", "http://127.0.0.1:%d" % rb.closed_port())
    assert rc == EX_ERR and "cannot connect" in err, (rc, out, err)


# ---------------------------------------------------------------- QoS 2 dedup

def test_qos2_retransmissions_are_delivered_once(gateway, backend, bg):
    """The listener is stopped while the gateway retransmits a QoS 2 push
    (DUP) every retry_interval: on resuming it reads several copies, prints
    one and answers each with REC; REL/COM then clear the delivery."""
    gw = gateway(retry_interval=0.3)
    l = bg("listen", ws(gw), "--device", "dev-d")
    l.wait_line(r"^ready$")
    l.signal(signal.SIGSTOP)
    try:
        rc, out, _ = run_cli("push", api(gw), "dev-d", "once", "--to", "device", "--qos", 2,
                             "--timeout", 1.5)
        assert rc == EX_OK, out
        # the session keeps it when nobody acknowledged in time
        assert json.loads(out)["pending"] == 1, out
    finally:
        l.signal(signal.SIGCONT)
    l.wait_line(r"^1 2 once$", "out")
    assert rb.wait_until(lambda: gw.db_counts()["deliveries"] == 0, 10, what="delivery done")
    time.sleep(1.0)  # any copy still on its way would be printed by now
    assert l.lines("out") == ["1 2 once"]


# ---------------------------------------------------------------- heartbeat

def test_client_answers_the_gateways_pings(gateway, backend, bg):
    gw = gateway(heartbeat=1, heartbeat_timeout=1)
    l = bg("listen", ws(gw))
    l.wait_line(r"^open .* heartbeat=1$")
    time.sleep(4)  # four ping intervals; a silent client is dropped after two
    assert not [x for x in l.lines("err") if x.startswith("closed")], l.lines("err")
    assert gw.serverinfo()["process"]["connections"] == 1


def test_client_drops_a_silent_gateway(gateway, backend, bg):
    gw = gateway(heartbeat=1, heartbeat_timeout=5)
    l = bg("listen", ws(gw), "--heartbeat-timeout", 1, "--reconnect-min", 200)
    l.wait_line(r"^open .* heartbeat=1$")
    gw.kill_with(signal.SIGSTOP)
    try:
        l.wait_line(r"^closed code=0 reason=heartbeat timeout retry_ms=\d+$", timeout=10)
    finally:
        gw.kill_with(signal.SIGCONT)
    # and it comes back by itself
    l.wait_line(r"^open ", count=2, timeout=15)


# ---------------------------------------------------------------- reconnect

def test_reconnect_and_resume_after_restart(gateway, backend, bg):
    """A v2 client with a device holds a session: a QoS 1 push queued while
    the gateway restarted and the client was away arrives after it
    reconnects on its own, with session_present."""
    gw = gateway()
    l = bg("listen", ws(gw), "--device", "dev-r", "--channel", "room-r",
           "--reconnect-min", 200, "--reconnect-max", 1000)
    l.wait_line(r"^open .*session_present=0")
    l.wait_line(r"^subscribed room-r$")
    # Stopped, the client cannot come back before the push below is queued.
    l.signal(signal.SIGSTOP)
    try:
        assert gw.stop() == 0
        gw.restart()
        rc, out, _ = run_cli("push", api(gw), "dev-r", "while away", "--to", "device",
                             "--qos", 1, "--timeout", 2)
        assert rc == EX_OK, out
        # queued for the offline session: nobody acknowledged, so data is null
        assert json.loads(out) == {"status": 0, "connections": 0, "failed": 0, "pending": 1,
                                   "data": None}, out
        # the channel subscription survived in the session too
        rc, out, _ = run_cli("push", api(gw), "room-r", "to the room", "--qos", 1,
                             "--timeout", 2)
        assert rc == EX_OK and json.loads(out)["pending"] == 1, out
    finally:
        l.signal(signal.SIGCONT)
    l.wait_line(r"^closed code=1001 ", timeout=10)
    l.wait_line(r"^open .*session_present=1", timeout=15)
    l.wait_line(r"^1 1 to the room$", "out", timeout=10)
    assert l.lines("out") == ["1 1 while away", "1 1 to the room"]
    assert rb.wait_until(lambda: gw.db_counts()["deliveries"] == 0, 5, what="acknowledged")


def test_send_queued_while_the_gateway_is_down(gateway, backend, bg):
    gw = gateway()
    assert gw.stop() == 0
    s = bg("send", ws(gw), 6, "queued", "--qos", 2, "--timeout", 30, "--device", "dev-q",
           "--reconnect-min", 100, "--reconnect-max", 300, "-v")
    s.wait_line(r"^closed code=0 ", timeout=10)  # at least one failed attempt
    gw.restart()
    assert s.wait_exit(20) == EX_OK, s.lines("err")
    assert s.lines("out") == ["re:queued"]
    reqs = backend.wait("/forward/6/", 1)
    assert len(reqs) == 1 and reqs[0].body == b"queued", reqs
    assert rb.wait_until(lambda: gw.db_count("upstream") == 0, 5, what="upstream row gone")


# ---------------------------------------------------------------- many connections

@pytest.mark.parametrize("qos", [1, 2])
def test_swarm_many_connections_on_one_context(gateway, backend, raise_nofile, qos):
    gw = gateway()
    conns, count = 60, 3
    rc, out, err = run_cli("swarm", ws(gw), "--conns", conns, "--count", count, "--qos", qos,
                           "--msgtype", 11, "--device-prefix", "sw%d-" % qos, "--timeout", 30,
                           timeout=90)
    assert rc == EX_OK, (rc, out, err)
    res = json.loads(out)
    assert res["conns"] == conns and res["opened"] == conns, res
    assert res["sent"] == res["ok"] == conns * count, res
    assert res["nak"] == res["timeout"] == res["closed"] == 0, res
    reqs = backend.wait("/forward/11/", conns * count)
    assert len(reqs) == conns * count
    # every (device, msgid) once: no duplicate forward
    keys = sorted(r.header("RAINBOWMESSAGEID") for r in reqs)
    assert keys == sorted("sw%d-%d:%d" % (qos, i, j) for i in range(conns)
                          for j in range(1, count + 1)), keys[:10]
    # and in order per connection (forward_concurrency 1)
    by_dev = {}
    for r in sorted(reqs, key=lambda r: r.seq):
        dev = r.header("RAINBOWMESSAGEID").split(":")[0]
        by_dev.setdefault(dev, []).append(r.body.decode())
    for i in range(conns):
        assert by_dev["sw%d-%d" % (qos, i)] == ["%d:%d" % (i, j) for j in range(count)]
    if qos == 2:
        assert rb.wait_until(lambda: gw.db_count("upstream") == 0, 5, what="upstream rows gone")


# ---------------------------------------------------------------- README

def test_readme_example_program(gateway, backend, tmp_path, bg):
    """The complete program of clients/c/README.md, compiled against the
    library as built, behaves as the README says."""
    text = (REPO / "clients" / "c" / "README.md").read_text()
    blocks = [b for b in re.findall(r"^```c\n(.*?)^```", text, re.M | re.S) if "int main" in b]
    assert len(blocks) == 1, "one complete C program expected in clients/c/README.md"
    src = tmp_path / "example.c"
    src.write_text(blocks[0])
    assert LIB.exists(), "%s is missing: build it with make" % LIB
    flags = []
    nm = subprocess.run(["nm", str(LIB)], capture_output=True, text=True, timeout=60).stdout
    if "__asan_" in nm:
        flags = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
    if "__tsan_" in nm:
        flags = ["-fsanitize=thread"]
    libs = subprocess.run(["pkg-config", "--libs", "libwebsockets", "jansson", "openssl"],
                          capture_output=True, text=True, check=True, timeout=60).stdout.split()
    exe = tmp_path / "example"
    cc = subprocess.run([os.environ.get("CC", "cc"), "-std=c11", "-D_GNU_SOURCE", "-Wall",
                         "-Werror", "-Wno-unused-parameter", "-I", str(REPO)] + flags +
                        ["-o", str(exe), str(src), str(LIB)] + libs + ["-lpthread"],
                        capture_output=True, text=True, timeout=120)
    assert cc.returncode == 0, cc.stderr
    gw = gateway()
    p = subprocess.Popen([str(exe), ws(gw) + "/connect/"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, preexec_fn=rb._die_with_parent)
    try:
        out = []
        t = threading.Thread(target=lambda: out.extend(
            l.decode().rstrip("\n") for l in iter(p.stdout.readline, b"")), daemon=True)
        t.start()
        rb.wait_until(lambda: 'reply: re:{"hello":"world"}' in out, 10, what="the reply")
        assert re.fullmatch(r"open [0-9a-f]{64}", out[0]), out
        rc, ans, _ = run_cli("push", api(gw), "readme-device", "bye", "--to", "device",
                             "--qos", 1)
        assert rc == EX_OK and json.loads(ans)["data"] == "got it", ans
        assert p.wait(10) == 0
        t.join(5)
        assert out == [out[0], 'reply: re:{"hello":"world"}', "push type 1 qos 1: bye"], out
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        err = p.stderr.read().decode(errors="replace")
        p.stderr.close()
        p.stdout.close()
    check_sanitizer(err, "the README example")
    assert "done: 0 closed by the client" in err, err
    r = backend.wait("/forward/1/", 1)[0]
    assert r.header("RAINBOWMESSAGEID") == "readme-device:1"
    assert backend.requests("/connect")[0].header("X-CLIENT-OS") == "c"
