"""05 v2: subprotocol negotiation, HELLO, heartbeat (docs/protocol.md rainbow.v2)."""
import json
import socket
import time

import pytest

import rainbow as rb
from rainbow import Client, run


def test_hello_first_frame(gateway, backend):
    gw = gateway(heartbeat=7, max_message_size=4096)

    async def body():
        c = await Client.open(gw, subprotocols=["rainbow.v2"], v2_hello=False)
        assert c.ws.subprotocol == "rainbow.v2"
        raw = await c.recv()
        assert raw[0] == 0x70, raw[:16].hex()
        hello = json.loads(raw[1:].decode())
        await c.qos1(2, 1, b"after hello")
        await c.close()
        return c, hello
    c, hello = run(body())
    assert hello["identity"] == c.identity, hello
    assert hello["session_present"] is False, hello
    assert hello["heartbeat"] == 7 and isinstance(hello["heartbeat"], int), hello
    assert hello["max_message_size"] == 4096, hello


def test_hello_heartbeat_off_and_default_size(gateway, backend):
    gw = gateway(heartbeat=0)

    async def body():
        c = await Client.open(gw, subprotocols=["rainbow.v2"])
        await c.close()
        return c.hello
    hello = run(body())
    assert hello["heartbeat"] == 0, hello
    assert hello["max_message_size"] == 65536, hello  # the documented default, 64k


def test_v2_selected_among_other_offers(gateway, backend):
    gw = gateway()

    async def body():
        c = await Client.open(gw, subprotocols=["foo", "rainbow.v2"], v2_hello=False)
        assert c.ws.subprotocol == "rainbow.v2"
        p = await c.recv_pkt()
        assert p.cmd == rb.HELLO, rb.describe(p.raw)
        await c.close()
    run(body())


@pytest.mark.parametrize("offer", [None, ["foo"]])
def test_v1_client_gets_no_hello_and_no_nak(gateway, backend, offer):
    backend.rules({"prefix": "/forward/9/", "status": 500})
    gw = gateway()

    async def body():
        c = await Client.open(gw, subprotocols=offer, v2_hello=False)
        assert c.ws.subprotocol is None
        await c.qos1(2, 1, b"first")  # the first frame is this ACK, not a HELLO
        await c.send(rb.send(9, b"fail", qos=1, msgid=2))
        await backend.await_requests("/forward/9/", 1)
        await c.expect_no_frame(0.5)  # v1: silence, never a NAK
        await c.close()
    run(body())


def test_heartbeat_closes_silent_client(gateway, backend):
    """heartbeat 1 s, timeout 1 s: a client that never answers pings is closed
    within a few seconds and the close hook fires."""
    gw = gateway(heartbeat=1, heartbeat_timeout=1)
    tag = rb.new_tag()
    raw = rb.RawClient(gw.port, "/connect/?rbtag=" + tag)
    try:
        assert raw.status == 101, raw.status_line
        ident = backend.connect_request(tag).header("RAINBOWCLIENTIDENTITY")
        pings, closed, t0 = 0, False, time.monotonic()
        while time.monotonic() - t0 < 6:
            try:
                op, data = raw.read_frame(6 - (time.monotonic() - t0))
            except (EOFError, ConnectionResetError):
                closed = True
                break
            except socket.timeout:
                break
            if op == 0x9:
                pings += 1
            elif op == 0x8:
                closed = True
                break
        assert pings >= 1, "no ping from the server"
        assert closed, "a client that never answers pings was not closed within 6 s"
    finally:
        raw.close()
    closes = backend.wait("/close", 1, timeout=3)
    assert [r.header("RAINBOWCLIENTIDENTITY") for r in closes] == [ident]


def test_heartbeat_any_message_is_a_sign_of_life(gateway, backend):
    """docs/protocol.md: a pong or any message is a sign of life, and only a
    connection silent for `heartbeat` seconds is pinged. A client that
    answers no ping but sends a message every 0.3 s is neither pinged nor
    hung up (heartbeat 3 s: a stall of 2.7 s on a busy machine would be
    needed to see a ping); once it falls silent it is pinged, then hung up
    (timeout 1 s) within a few seconds."""
    gw = gateway(heartbeat=3, heartbeat_timeout=1)
    tag = rb.new_tag()
    raw = rb.RawClient(gw.port, "/connect/?rbtag=" + tag)
    try:
        assert raw.status == 101, raw.status_line
        t0, pings, sent = time.monotonic(), 0, 0
        while time.monotonic() - t0 < 7:
            raw.send_frame(0x2, rb.send(1, b"alive"))
            sent += 1
            deadline = time.monotonic() + 0.3
            while time.monotonic() < deadline:
                try:
                    op, _ = raw.read_frame(max(0.01, deadline - time.monotonic()))
                except socket.timeout:
                    break
                assert op != 0x8, "closed although it kept sending"
                pings += op == 0x9
        assert pings == 0, "pinged although it kept sending"
        closed, t1 = False, time.monotonic()
        while time.monotonic() - t1 < 20:
            try:
                op, _ = raw.read_frame(20 - (time.monotonic() - t1))
            except (EOFError, ConnectionResetError):
                closed = True
                break
            except socket.timeout:
                break
            pings += op == 0x9
            if op == 0x8:
                closed = True
                break
        assert pings >= 1, "no ping once the client fell silent"
        assert closed, "a silent client that answers no ping stayed open"
    finally:
        raw.close()
    assert rb.metric_value(gw.metrics(), "rainbow_heartbeat_timeouts_total") == 1


def test_heartbeat_keeps_answering_client(gateway, backend):
    """The same settings do not close a client that answers pings (websockets
    answers them automatically), v1 or v2."""
    gw = gateway(heartbeat=1, heartbeat_timeout=1)

    async def body():
        a = await Client.open(gw)
        b = await Client.open(gw, subprotocols=["rainbow.v2"])
        assert b.hello["heartbeat"] == 1
        await a.expect_no_frame(3.5)
        await b.expect_no_frame(0.1)
        await a.qos1(1, 1, b"still here")
        await b.qos1(1, 1, b"still here")
        assert backend.count("/close") == 0
        await a.close()
        await b.close()
    run(body())
