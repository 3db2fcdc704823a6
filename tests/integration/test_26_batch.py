"""26 POST /batch/ (docs/rest-api.md): several pushes in one signed call,
each as /send/ would do it, answered once all are done with one result per
message, in order; a bad message fails alone."""
import asyncio
import base64

import rainbow as rb
from rainbow import Client, Collector, run


def test_batch_mixed_targets_results_in_order(gateway, backend):
    gw = gateway()

    async def body():
        a, b, c = [await Client.open(gw) for _ in range(3)]
        cols = {x: Collector(x, auto=True, reply=b"ok") for x in (a, b, c)}
        for x in (a, b):
            await asyncio.to_thread(gw.sub, x.identity, "room")
        msgs = [
            {"channel": "room", "qos": 1, "msgtype": 7, "data": "to the room"},
            {"identity": c.identity, "qos": 0, "data": "just c"},
            {"device": "nobody-here", "qos": 1, "data": "x"},
            {"channel": "room", "qos": 5, "data": "x"},
            {"identity": c.identity, "qos": 2, "data_base64":
             base64.b64encode(b"\x00\xff bin").decode()},
            {"channel": "empty-room", "qos": 1, "data": "x"},
        ]
        r = await asyncio.to_thread(gw.api, "POST", "/batch/", body={"messages": msgs},
                                    timeout=30)
        assert r.status == 200 and r.json["status"] == 0, r.json
        res = r.json["results"]
        assert len(res) == len(msgs), res
        assert res[0] == {"status": 0, "connections": 2, "failed": 0, "pending": 0,
                          "data": "ok"}, res[0]
        assert res[1] == {"status": 0, "connections": 1}, res[1]
        assert res[2] == {"status": 1, "msg": "no such device"}, res[2]
        assert res[3]["status"] == 1 and res[3]["msg"] == "params error", res[3]
        assert "qos" in res[3]["detail"], res[3]
        assert res[4]["status"] == 0 and res[4]["connections"] == 1, res[4]
        assert res[5] == {"status": 0, "connections": 0, "data": ""}, res[5]

        def payloads(x):
            return [rb.decode(m).payload for _, m in cols[x].frames
                    if rb.decode(m).cmd == rb.SEND]
        await rb.await_until(lambda: len(payloads(c)) == 2, 10, what="c's two pushes")
        assert payloads(a) == [b"to the room"] and payloads(b) == [b"to the room"]
        assert payloads(c) == [b"just c", b"\x00\xff bin"]
        for x in (a, b, c):
            await x.close()
    run(body())


def test_batch_bad_bodies(gateway, backend):
    gw = gateway()
    for body in ({"messages": []}, {"messages": [{}] * 1001}, {"x": 1}, "nope"):
        r = gw.api("POST", "/batch/", body=body)
        assert r.json["status"] == 1 and r.json["msg"] == "params error", (body, r.json)
    # Messages that are not objects fail alone.
    r = gw.api("POST", "/batch/", body=[1])
    assert r.json["results"][0]["detail"] == "each message must be a JSON object", r.json
    # A bare array works as well as {"messages": [...]}.
    r = gw.api("POST", "/batch/", body=[{"channel": "none", "qos": 0, "data": "x"}])
    assert r.json == {"status": 0, "results": [{"status": 0}]}, r.json
    r = gw.rest("POST", "/batch/", body={"messages": []}, sign=None)
    assert rb.json_body(r)["msg"] == "signature error"


def test_python_helper_batch(gateway, backend):
    """clients/python's RestClient.batch against the real gateway."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python"))
    from rainbow_backend import RestClient
    gw = gateway()
    rest = RestClient("http://127.0.0.1:%d" % gw.port, token=gw.token, signature="v1")
    res = rest.batch([{"channel": "nobody", "qos": 0, "data": "x"},
                      {"identity": "0" * 64, "qos": 1, "data": "x"}])
    assert res == [{"status": 0}, {"status": 1, "msg": "no such connection"}], res
