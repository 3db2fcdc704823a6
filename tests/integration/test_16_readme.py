"""16 readme: a newcomer's first run, as README.md tells it.

The example backend (clients/python/example_backend.py) and the gateway run
on a copy of conf/rainbow.ini with only the ports (and data_dir) changed, as
`make run` runs them; the README's own client snippet (Python, and the
browser one under Node when it has a WebSocket) joins channel "room"; the
README's shell lines compute the v1 signature and curl the push; the client
must print it. Also: the promises the README makes about conf/rainbow.ini,
the example backend refusing bad signatures, `make run` stopping the
backend with the gateway, and the warning for an empty security_token."""
import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

import rainbow as rb

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
CONF = REPO / "conf" / "rainbow.ini"
EXAMPLE = REPO / "clients" / "python" / "example_backend.py"


def readme_block(lang, must_contain):
    """The one ```lang fenced block of README.md containing must_contain."""
    blocks = re.findall(r"^```%s\n(.*?)^```" % re.escape(lang), README.read_text(), re.M | re.S)
    found = [b for b in blocks if must_contain in b]
    assert len(found) == 1, "expected one ```%s block with %r in README.md, found %d" % (
        lang, must_contain, len(found))
    return found[0]


def conf_main():
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    cp.read(CONF)
    return cp["main"]


def port_open(port):
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port, proc, timeout=15, what="port"):
    def ready():
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s" % (what, proc.returncode))
        return port_open(port)
    rb.wait_until(ready, timeout, what="%s on %d" % (what, port))


def stop(proc, timeout=10):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# ---------------------------------------------------------------- the promises

def test_conf_is_what_the_readme_promises():
    m = conf_main()
    assert m["port"] == "1984" and m["bind"] == "127.0.0.1"
    assert "127.0.0.1:1984" in README.read_text()
    for k in ("connect_url", "forward_url", "close_url"):
        u = urllib.parse.urlsplit(m[k])
        assert (u.scheme, u.hostname, u.port) == ("http", "127.0.0.1", 8000), (k, m[k])
    token = m["security_token"]
    assert token, "conf/rainbow.ini needs a development security_token"
    assert "TOKEN=%s " % token in readme_block("sh", "sha1sum"), \
        "the README's TOKEN is not conf/rainbow.ini's security_token"


# ---------------------------------------------------------------- the first run

@pytest.fixture
def first_run(tmp_path):
    """Example backend + gateway on a copy of conf/rainbow.ini (free ports)."""
    gw_port, be_port = rb.free_port(), rb.free_port()
    text = CONF.read_text()
    text, n = re.subn(r"^port = 1984$", "port = %d" % gw_port, text, flags=re.M)
    assert n == 1
    text = text.replace("127.0.0.1:8000", "127.0.0.1:%d" % be_port)
    text, n = re.subn(r"^data_dir = .*$", "data_dir = %s" % (tmp_path / "data"), text, flags=re.M)
    assert n == 1
    conf = tmp_path / "rainbow.ini"
    conf.write_text(text)
    belog = open(tmp_path / "backend.log", "wb")
    backend = subprocess.Popen([rb.PY, str(EXAMPLE), "-f", str(conf)], stdout=belog,
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               preexec_fn=rb._die_with_parent)
    gw = rb.Gateway(tmp_path, None, name="readme", port=gw_port)
    gw.conf = conf
    try:
        wait_port(be_port, backend, what="example backend")
        gw.start()
        yield gw, be_port, tmp_path
        problems = gw.teardown()
        assert not problems, problems
        assert backend.poll() is None, "the example backend died"
    finally:
        if gw.running():
            gw.stop()
        stop(backend)
        belog.close()
        print("---- example backend log ----")
        print((tmp_path / "backend.log").read_text(errors="replace")[-3000:])


def start_client(cmd, log):
    return subprocess.Popen(cmd, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, preexec_fn=rb._die_with_parent)


def wait_line(log, text, proc, timeout=20):
    def seen():
        out = Path(log).read_text(errors="replace")
        if text in out:
            return True
        if proc.poll() is not None:
            raise AssertionError("client exited with %s before printing %r:\n%s" % (
                proc.returncode, text, out))
        return False
    rb.wait_until(seen, timeout, what="%r from the client" % text)


def run_push(port, qos=1):
    """The README's terminal-3 lines, run by sh, aimed at this gateway."""
    script = readme_block("sh", "sha1sum").replace("127.0.0.1:1984", "127.0.0.1:%d" % port)
    script = script.replace("qos=1&", "qos=%d&" % qos)
    r = subprocess.run(["sh", "-c", "set -e\n" + script], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    return json.loads(r.stdout)


def test_readme_python_client_gets_the_readme_push(first_run):
    gw, be_port, tmp = first_run
    code = readme_block("python", "websockets.connect").replace("127.0.0.1:1984",
                                                                "127.0.0.1:%d" % gw.port)
    (tmp / "client.py").write_text(code)
    client = start_client([rb.PY, str(tmp / "client.py")], tmp / "client.log")
    try:
        # the forward went through the example backend and came back as the ACK
        wait_line(tmp / "client.log", 'reply to id 1: {"hello":1}', client)
        assert run_push(gw.port) == {"status": 0, "connections": 1, "failed": 0,
                                     "pending": 0, "data": ""}
        wait_line(tmp / "client.log", 'push type 1002 qos 1: {"m":1}', client)
        # QoS 2 through the same snippet: REC, then REL -> COM
        assert run_push(gw.port, qos=2)["connections"] == 1
        wait_line(tmp / "client.log", 'push type 1002 qos 2: {"m":1}', client)
    finally:
        stop(client)
    log = (tmp / "backend.log").read_text()
    assert "-> channel room" in log, log
    assert "bad signature" not in log, log


def test_readme_browser_snippet_under_node(first_run):
    node = shutil.which("node")
    if not node:
        pytest.skip("node is not installed")
    probe = subprocess.run([node, "--experimental-websocket", "-e",
                            "process.exit(typeof WebSocket === 'function' ? 0 : 3)"],
                           capture_output=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip("this node has no WebSocket")
    gw, be_port, tmp = first_run
    code = readme_block("js", "new WebSocket").replace("127.0.0.1:1984", "127.0.0.1:%d" % gw.port)
    (tmp / "client.js").write_text(code + "\nws.onopen = () => console.log('open');\n")
    client = start_client([node, "--experimental-websocket", "--no-warnings",
                           str(tmp / "client.js")], tmp / "client.log")
    try:
        wait_line(tmp / "client.log", "open", client)
        rb.wait_until(lambda: "-> channel room" in (tmp / "backend.log").read_text(), 10,
                      what="the connect hook")
        assert run_push(gw.port)["connections"] == 1
        wait_line(tmp / "client.log", 'push type 1002 qos 1 {"m":1}', client)
    finally:
        stop(client)


def test_example_backend_refuses_bad_signatures(first_run):
    gw, be_port, tmp = first_run
    url = "/rainbow/msg/1/?" + urllib.parse.urlencode(rb.signed_query(token="wrong"))
    r = rb.http_request(be_port, "POST", url, body=b"x")
    assert r.status == 403, r
    m = conf_main()
    good = "/rainbow/msg/1/?" + urllib.parse.urlencode(rb.signed_query(token=m["security_token"]))
    r = rb.http_request(be_port, "POST", good, body=b"echo me")
    assert (r.status, r.body) == (200, b"echo me")
    r = rb.http_request(be_port, "GET", "/rainbow/connect?" + urllib.parse.urlencode(
        rb.signed_query(token=m["security_token"])), headers={"channel": "c1"})
    assert r.status == 200 and json.loads(r.body) == {"status": "success"}
    assert r.headers.get("rainbowclientchannel") == "c1"


# ---------------------------------------------------------------- make run

def test_make_run_stops_the_backend_with_the_gateway(tmp_path):
    """`make serve` (what `make run` runs after building) on a copy of the
    configuration: SIGTERM to make stops the gateway gracefully, and the
    example backend goes with it."""
    binary = Path(rb.rainbow_bin()).resolve()
    gw_port, be_port = rb.free_port(), rb.free_port()
    text = CONF.read_text()
    text = re.sub(r"^port = 1984$", "port = %d" % gw_port, text, flags=re.M)
    text = text.replace("127.0.0.1:8000", "127.0.0.1:%d" % be_port)
    text = re.sub(r"^data_dir = .*$", "data_dir = %s" % (tmp_path / "data"), text, flags=re.M)
    conf = tmp_path / "rainbow.ini"
    conf.write_text(text)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    log = open(tmp_path / "make.log", "wb")
    # `make run` is `make deps all serve`; serve is the part that runs things
    # (building here would touch a shared build directory).
    mk = subprocess.Popen(["make", "--no-print-directory", "-C", str(REPO), "serve",
                           "SERVER=%s" % binary, "CONF=%s" % conf],
                          stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                          env=env, start_new_session=True)
    try:
        wait_port(be_port, mk, timeout=60, what="make run's backend")
        wait_port(gw_port, mk, timeout=30, what="make run's gateway")
        assert rb.http_request(gw_port, "GET", "/hello/").body == b"ok"
        mk.send_signal(signal.SIGTERM)
        mk.wait(30)
        rb.wait_until(lambda: not port_open(be_port) and not port_open(gw_port), 10,
                      what="both ports closed")
        out = (tmp_path / "make.log").read_text(errors="replace")
        assert "signal 15: shutting down" in out, out
        assert "rainbow stopped" in out, out
    finally:
        if mk.poll() is None:
            os.killpg(mk.pid, signal.SIGKILL)
            mk.wait(5)
        else:
            # nothing of the session may be left behind
            try:
                os.killpg(mk.pid, 0)
                left = True
            except ProcessLookupError:
                left = False
            if left:
                os.killpg(mk.pid, signal.SIGKILL)
                raise AssertionError("make run left processes behind")
        log.close()


# ---------------------------------------------------------------- empty token

def test_empty_security_token_warns_at_start(gateway):
    gw = gateway(security_token="")
    rb.wait_until(lambda: "security_token is empty" in gw.log_text(), 10,
                  what="the empty-token warning")
    line = [ln for ln in gw.log_text().splitlines() if "security_token is empty" in ln][0]
    assert re.search(r"\bWARN\b", line), line


def test_no_warning_with_a_token(gateway):
    gw = gateway()  # the harness's token
    assert gw.get("/hello/").body == b"ok"
    assert "security_token is empty" not in gw.log_text()


def test_check_warns_about_an_empty_token(tmp_path):
    conf = rb.write_conf(tmp_path / "empty.ini", {"security_token": ""})
    r = subprocess.run([rb.rainbow_bin(), "--check", "-f", str(conf)], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r
    assert "warning: security_token is empty" in r.stderr, r
    conf = rb.write_conf(tmp_path / "token.ini", {"security_token": "t"})
    r = subprocess.run([rb.rainbow_bin(), "--check", "-f", str(conf)], capture_output=True,
                       text=True, timeout=10, stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and r.stderr == "", r
