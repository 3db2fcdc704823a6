"""23 Python helper, QoS 2 exactly once end to end (docs/sessions.md
Upstream QoS 2 exactly once; clients/python/rainbow_backend/store.py).

The gap the gateway documents: it dies after calling the backend and before
storing the reply. Here the backend's handler runs (and blocks), the gateway
is frozen (SIGSTOP), the handler finishes and its answer is written to the
frozen gateway's socket, then the gateway gets SIGKILL: it never read the
reply, and its upstream row is still "forwarding". After a restart the
client (same device, session) retransmits with DUP; the gateway forwards
again with RAINBOWDUP: 1 and the same RAINBOWMESSAGEID; the helper answers
from its store. The handler ran once and the client gets the first run's
reply in its REC. Without a store (the control case) the handler runs twice:
the test does reach the gap."""
import json
import os
import signal

import pytest

import rainbow as rb
from rainbow import run
from py_helper import helper_backend, helper_urls, json_lines, lines
from session_helpers import expect_dead, open_session, upstream

PAYLOAD = b'{"order":"42"}'


def unread_from(port):
    """Bytes waiting unread in a local TCP socket connected to 127.0.0.1:port
    (/proc/net/tcp: the gateway's socket to the backend)."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in list(f)[1:]:
            fields = line.split()
            if fields[2] == want and int(fields[4].split(":")[1], 16) > 0:
                return True
    return False


@pytest.mark.parametrize("store,restart_backend", [
    ("sqlite", False), ("memory", False), ("sqlite", True), ("none", False)])
def test_gateway_killed_between_backend_call_and_stored_reply(gateway, tmp_path, store,
                                                              restart_backend):
    db = tmp_path / "replies.db"
    be = helper_backend(tmp_path, store=store, db=db)
    try:
        # backend_timeout well above the time the handler is held
        gw = gateway(backend_timeout=30, retry_interval=0.5, connect_url="", close_url="",
                     forward_url=helper_urls(be)["forward_url"])

        async def before():
            c = await open_session(gw, "qdev")
            await c.send(rb.send(3, PAYLOAD, qos=2, msgid=7))
            await rb.await_until(lambda: lines(tmp_path / "runs"), 10,
                                 what="the handler's first run")
            os.kill(gw.proc.pid, signal.SIGSTOP)        # it cannot read the answer now
            (tmp_path / "release").write_text("go")
            await rb.await_until(lambda: any(c["type"] == 3 for c in
                                             json_lines(tmp_path / "calls")), 10,
                                 what="the backend's answer")
            # the answer is written: it waits, unread, in the frozen gateway's socket
            await rb.await_until(lambda: unread_from(be.port), 10,
                                 what="the reply in the gateway's receive queue")
            gw.kill9()
            await expect_dead(c, 10)
        run(before())
        first = [c for c in json_lines(tmp_path / "calls") if c["type"] == 3]
        assert len(first) == 1 and first[0]["status"] == 200, first
        assert json.loads(first[0]["body"]) == {"run": 1, "payload": {"order": "42"}}
        # the gateway never stored the reply: its state is still "forwarding"
        rows = upstream(gw, "qdev")
        assert [r[1] for r in rows] == [7] and rows[0][3] in (None, b""), rows

        if restart_backend:
            port = be.port
            be.kill()
            be = helper_backend(tmp_path, store=store, db=db, port=port)
        gw.restart()

        async def after():
            c = await open_session(gw, "qdev")
            await c.send(rb.send(3, PAYLOAD, qos=2, msgid=7, dup=True))
            p = await c.recv_pkt(10)
            assert (p.cmd, p.msgid) == (rb.REC, 7), rb.describe(p.raw)
            await c.send(rb.rel(7))
            await c.expect(rb.com(7), 5)
            await c.expect_no_frame(0.5)
            await c.close()
            return json.loads(p.payload)
        reply = run(after())
        runs = lines(tmp_path / "runs")
        calls = [c for c in json_lines(tmp_path / "calls") if c["type"] == 3]
        assert len(calls) == 2, calls
        assert [c["id"] for c in calls] == ["qdev:7", "qdev:7"], calls
        assert [c["dup"] for c in calls] == [None, "1"], calls
        if store == "none":
            # the control: without the store the handler runs again
            assert len(runs) == 2 and reply["run"] == 2 and not calls[1]["replayed"]
        else:
            assert len(runs) == 1, runs                 # the handler ran once
            assert reply == {"run": 1, "payload": {"order": "42"}}, reply
            assert calls[1]["replayed"], calls
        if store == "sqlite":
            # the handler's own write committed with the reply, once
            n = rb.db_query(db, "SELECT count(*) FROM probe_runs")[0][0]
            assert n == 1
        assert upstream(gw) == []
    finally:
        be.kill()
        print("---- helper backend log ----\n" + be.log()[-3000:])
