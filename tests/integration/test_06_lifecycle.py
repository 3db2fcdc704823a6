"""06 lifecycle: close hook, SIGTERM/SIGINT shutdown, TLS listener, command line."""
import asyncio
import re
import signal
import socket
import subprocess
import time

import pytest

import rainbow as rb
from rainbow import Client, run


def wait_exit(gw, deadline):
    """Wait for the gateway to exit by `deadline` (monotonic); return its status."""
    try:
        code = gw.proc.wait(max(0.05, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise AssertionError("gateway still running %.1f s after the signal" % (
            time.monotonic() - deadline)) from None
    gw.exit_code = code
    gw.expect_exit = True
    return code


# ---------------------------------------------------------------- close hook

def test_close_hook(gateway, backend):
    backend.rules({"prefix": "/connect", "headers": {"RAINBOWCLIENTCOOKIE": "ck1"}, "times": 1})
    gw = gateway()

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw)
        await a.close()
        ra = (await backend.await_requests("/close", 1, timeout=2))[0]
        await b.close()
        rs = await backend.await_requests("/close", 2, timeout=2)
        await asyncio.sleep(0.5)  # and nothing more arrives
        assert backend.count("/close") == 2
        return a, b, ra, rs[1]
    a, b, ra, rb_ = run(body())
    for r in (ra, rb_):
        assert r.method == "GET" and r.path == "/close", r
        assert set(r.query) == {"timestamp", "nonce", "signature"}, r.target
        rb.check_signature(r)
    assert ra.header("RAINBOWCLIENTIDENTITY") == a.identity
    assert ra.header("RAINBOWCLIENTCOOKIE") == "ck1"
    assert rb_.header("RAINBOWCLIENTIDENTITY") == b.identity
    assert rb_.header("RAINBOWCLIENTCOOKIE") is None
    assert a.identity != b.identity


def test_close_hook_on_abrupt_disconnect(gateway, backend):
    gw = gateway()
    tag = rb.new_tag()
    raw = rb.RawClient(gw.port, "/connect/?rbtag=" + tag)
    assert raw.status == 101, raw.status_line
    ident = backend.connect_request(tag).header("RAINBOWCLIENTIDENTITY")
    raw.close()  # TCP close, no WebSocket close frame
    closes = backend.wait("/close", 1, timeout=2)
    assert [r.header("RAINBOWCLIENTIDENTITY") for r in closes] == [ident]
    assert gw.get("/hello/").body == b"ok"


# ---------------------------------------------------------------- shutdown

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_signal_closes_clients_1001(gateway, backend, sig):
    gw = gateway(shutdown_grace=2)
    sent_at = []

    async def body():
        cs = [await Client.open(gw) for _ in range(3)]
        for i, c in enumerate(cs):
            await c.qos1(1, i + 1, b"x")
        idents = [c.identity for c in cs]
        sent_at.append(time.monotonic())
        gw.kill_with(sig)
        codes = await asyncio.gather(*[c.expect_closed(5) for c in cs])
        assert codes == [1001, 1001, 1001], codes
        return idents
    idents = run(body())
    assert wait_exit(gw, sent_at[0] + 2 + 2) == 0
    closes = backend.wait("/close", 3, timeout=2)
    assert sorted(r.header("RAINBOWCLIENTIDENTITY") for r in closes) == sorted(idents)


def test_sigterm_lets_inflight_forward_finish(gateway, backend):
    backend.rules({"prefix": "/forward/", "delay": 1.0})
    gw = gateway(shutdown_grace=5)
    sent_at = []

    async def body():
        c = await Client.open(gw)
        await c.send(rb.send(2, b'{"late":1}', qos=1, msgid=1))
        await backend.await_requests("/forward/", 1)
        sent_at.append(time.monotonic())
        gw.kill_with(signal.SIGTERM)
        await c.expect(rb.ack(1, b're:{"late":1}'), timeout=5)
        assert await c.expect_closed(5) == 1001
        return c.identity
    ident = run(body())
    assert wait_exit(gw, sent_at[0] + 5 + 2) == 0
    closes = backend.wait("/close", 1, timeout=2)
    assert [r.header("RAINBOWCLIENTIDENTITY") for r in closes] == [ident]


# ---------------------------------------------------------------- TLS

@pytest.fixture(scope="module")
def tls_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-subj", "/CN=localhost", "-days", "1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def tls_gateway(gateway, tls_files):
    cert, key = tls_files
    # two edges: TLS sockets are dealt to both (docs/architecture.md)
    gw = gateway(tls_port=rb.free_port(), tls_cert=str(cert), tls_key=str(key), edge_threads=2)
    port = int(gw.opts["tls_port"])

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    rb.wait_until(listening, 10, what="the TLS listener")
    return gw


def test_tls_roundtrip(gateway, backend, tls_files):
    gw = tls_gateway(gateway, tls_files)

    async def body():
        a = await Client.open(gw, tls=True)
        await a.qos1(2, 1, b'{"tls":1}')
        b = await Client.open(gw, tls=True, subprotocols=["rainbow.v2"])
        await b.qos1(2, 2, b'{"tls":2}')
        c = await Client.open(gw)  # the plain listener still works
        await c.qos1(2, 3, b'{"tls":0}')
        for x in (a, b, c):
            await x.close()
        return a, b
    a, b = run(body())
    assert b.hello["identity"] == b.identity
    fw = backend.requests("/forward/")
    assert sorted(r.body for r in fw) == [b'{"tls":0}', b'{"tls":1}', b'{"tls":2}']
    assert {r.body: r.header("RAINBOWCLIENTIDENTITY") for r in fw}[b'{"tls":1}'] == a.identity


@pytest.mark.parametrize("kind,code", [("refuse", 4401), ("status500", 4503), ("not_json", 4503)])
def test_tls_hook_failure_close_codes(gateway, backend, tls_files, kind, code):
    if kind == "refuse":
        backend.rules({"prefix": "/connect", "body": '{"status":"fail"}'})
    elif kind == "status500":
        backend.rules({"prefix": "/connect", "status": 500})
    else:
        backend.rules({"prefix": "/connect", "body": "nope"})
    gw = tls_gateway(gateway, tls_files)

    async def body():
        c = await Client.open(gw, tls=True)
        return await c.expect_closed(5)
    assert run(body()) == code
    assert backend.count("/connect") == 1
    assert backend.count("/forward/") == 0


# ---------------------------------------------------------------- command line

def run_bin(*args, timeout=10):
    return subprocess.run([rb.rainbow_bin()] + [str(a) for a in args], capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, text=True)


def test_cli_version():
    r = run_bin("--version")
    assert r.returncode == 0, r
    assert re.search(r"\d+\.\d+", r.stdout + r.stderr), r


def test_cli_help():
    r = run_bin("--help")
    assert r.returncode == 0, r
    assert "-f" in r.stdout + r.stderr, r


def good_conf(tmp_path, backend, **extra):
    gw = rb.Gateway(tmp_path, backend, name="check", **extra)
    return gw.conf


def test_cli_check_good(tmp_path, backend):
    conf = good_conf(tmp_path, backend)
    r = run_bin("--check", "-f", conf)
    assert r.returncode == 0, r


BAD_LINES = {
    "unknown_option": ("bogus_option = 1", "bogus_option"),
    "not_a_number": ("max_message_size = abc", "max_message_size"),
    "out_of_range": ("port = 70000", "port"),
    "bad_bool": ("strict_frames = maybe", "strict_frames"),
    "unknown_section": ("[foo]", "foo"),
}


@pytest.mark.parametrize("mode", ["check", "start"])
@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_cli_bad_config(tmp_path, backend, name, mode):
    conf = good_conf(tmp_path, backend)
    line, option = BAD_LINES[name]
    text = conf.read_text().splitlines()
    text.insert(3, line)  # becomes line 4
    conf.write_text("\n".join(text) + "\n")
    args = ["--check", "-f", conf] if mode == "check" else ["-f", conf]
    r = run_bin(*args, timeout=10)
    assert r.returncode != 0, r
    err = r.stderr
    assert re.search(re.escape(conf.name) + r":4\b", err), "no file:line in %r" % err
    assert option in err, "option not named in %r" % err


def test_cli_port_override(gateway, backend):
    gw = gateway(start=False)
    config_port = gw.port
    gw.port = rb.free_port()
    gw.start(extra_args=("-p", str(gw.port)))
    assert gw.get("/hello/").body == b"ok"
    with pytest.raises(OSError):
        rb.http_request(config_port, "GET", "/hello/", timeout=1)

    async def body():
        c = await Client.open(gw)
        await c.qos1(1, 1, b"p")
        await c.close()
    run(body())
