"""21 LAN cluster mesh on one host (nodes find each other through
cluster_seeds on loopback, as in test 19): authenticated links come up, a
channel push from any node reaches every member on every node exactly once
and the receipt sums them, /sub/ /unsub/ /kick/ /presence/ and occupy act on
identities held by other nodes, an identity push crosses nodes, and a node
killed with SIGKILL during a push has its leg counted as failed long before
the push's timeout. The same scenarios between network namespaces (real
broadcast) are in test 20. Every wait is on a condition with a generous
deadline."""
import asyncio
import time

import rainbow as rb
from rainbow import Client, Collector, run
from test_19_discovery import DEADLINE, cluster, counter, peers

PAYLOAD = b'{"m":1}'


def links_up(gws):
    for gw in gws:
        others = {"127.0.0.1:%d" % o.port for o in gws if o is not gw}
        rb.wait_until(lambda: {a for a, p in peers(gw).items() if p["link"] == "up"} == others,
                      DEADLINE, what="%s: links to the others up" % gw.name)


def sends(col):
    return [rb.decode(m) for _, m in col.frames if rb.decode(m).cmd == rb.SEND]


async def members(gws, per_node, channel="room"):
    """per_node clients on each gateway, each subscribed through its own node;
    returns [(gw, client, collector)] once every node lists all members."""
    out = []
    for gw in gws:
        for _ in range(per_node):
            c = await Client.open(gw)
            out.append((gw, c, Collector(c, auto=True)))
    for gw, c, _ in out:
        await asyncio.to_thread(gw.sub, c.identity, channel)
    want = {c.identity for _, c, _ in out}
    for gw in gws:
        await rb.await_until(lambda: set(gw.presence(channel)) == want, DEADLINE,
                             what="%s: presence lists the members of all nodes" % gw.name)
    return out


def test_links_come_up_and_channel_push_sums(gateway):
    gws, _ = cluster(gateway)
    links_up(gws)

    async def main():
        ms = await members(gws, 2)
        # Whole-cluster pages: /channels/ sums the members of every node,
        # the HTML /serverinfo/ has one table per node.
        for gw in gws:
            assert await asyncio.to_thread(gw.channels) == {"room": 6}
        page = (await asyncio.to_thread(gws[1].get, "/serverinfo/")).body.decode()
        for gw in gws:
            assert "<h1>127.0.0.1:%d</h1><p>2 connections, 1 channels</p>" % gw.port in page, page
        for qos in (1, 2):
            r = await asyncio.to_thread(gws[0].push, {"channel": "room", "qos": qos}, PAYLOAD)
            assert r.status == 200 and r.json["status"] == 0, r.json
            assert (r.json["connections"], r.json["failed"], r.json["pending"]) == (6, 0, 0), r.json
        r = await asyncio.to_thread(gws[1].push, {"channel": "room", "qos": 0}, PAYLOAD)
        assert r.json["status"] == 0, r.json
        for _, c, col in ms:
            await rb.await_until(lambda: len(sends(col)) == 3, DEADLINE,
                                 what="each member gets each push once")
        await asyncio.sleep(0.3)
        for _, c, col in ms:
            got = sends(col)
            assert [p.qos for p in got] == [1, 2, 0], got
            assert all(p.payload == PAYLOAD for p in got), got
    run(main())
    for gw in gws:
        m = gw.metrics()
        assert m["rainbow_cluster_links_established_total"][3][0][2] >= 2
        up = m["rainbow_cluster_link_up"][3]
        assert sorted(v for _, _, v in up) == [1, 1], up
        frames = {lbl["dir"]: v for _, lbl, v in m["rainbow_cluster_link_frames_total"][3]}
        assert frames["in"] > 0 and frames["out"] > 0, frames


def test_remote_sub_unsub_kick_presence_occupy(gateway):
    a, b, c = gws = cluster(gateway)[0]
    links_up(gws)

    async def main():
        cb = await Client.open(b)
        colb = Collector(cb, auto=True)
        cc = await Client.open(c)
        colc = Collector(cc, auto=True)
        # /sub/ through node a of identities held by b and c.
        await asyncio.to_thread(a.sub, cb.identity, "news")
        await asyncio.to_thread(a.sub, cc.identity, "news")
        await rb.await_until(lambda: set(a.presence("news")) == {cb.identity, cc.identity},
                             DEADLINE, what="presence across nodes")
        r = await asyncio.to_thread(c.push, {"channel": "news", "qos": 1}, PAYLOAD)
        assert (r.json["connections"], r.json["failed"]) == (2, 0), r.json
        # /unsub/ through a: the next push misses it.
        await asyncio.to_thread(a.unsub, cb.identity, "news")
        await rb.await_until(lambda: set(c.presence("news")) == {cc.identity}, DEADLINE,
                             what="unsub seen on c")
        r = await asyncio.to_thread(a.push, {"channel": "news", "qos": 1}, PAYLOAD)
        assert (r.json["connections"], r.json["failed"]) == (1, 0), r.json
        assert len(sends(colb)) == 1 and len(sends(colc)) == 2
        # occupy through a for b's client: c's member leaves.
        await asyncio.to_thread(a.sub, cb.identity, "news", True)
        await rb.await_until(lambda: set(a.presence("news")) == {cb.identity}, DEADLINE,
                             what="occupy leaves only b's client")
        # identity push through a to c's client.
        r = await asyncio.to_thread(a.push, {"identity": cc.identity, "qos": 1}, PAYLOAD)
        assert (r.json["status"], r.json["connections"]) == (0, 1), r.json
        # an unknown identity of a live node: no such connection.
        ghost = cc.identity[:50] + "00000000000000"[:6] + cc.identity[56:]
        r = a.api("POST", "/sub/", body={"identity": ghost, "channel": "x"})
        assert r.json["status"] == 1, r.json
        # /kick/ through a of c's client.
        r = a.api("POST", "/kick/", body={"identity": cc.identity, "code": 4321,
                                          "reason": "bye"})
        assert r.json == {"status": 0}, r.json
        await rb.await_until(lambda: colc.closed is not None, DEADLINE, what="kicked")
        assert colc.closed.code == 4321, colc.closed
    run(main())


def test_kill9_node_counts_its_leg_failed(gateway):
    a, b, c = gws = cluster(gateway)[0]
    links_up(gws)

    async def main():
        ca = await Client.open(a)
        Collector(ca, auto=True)
        cc = await Client.open(c)
        silent = Collector(cc, auto=False)   # receives, never ACKs
        await asyncio.to_thread(a.sub, ca.identity, "k")
        await asyncio.to_thread(c.sub, cc.identity, "k")
        await rb.await_until(lambda: len(a.presence("k")) == 2, DEADLINE, what="members")
        t0 = time.monotonic()
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(a.push, {"channel": "k", "qos": 1, "timeout": 30}, PAYLOAD))
        await rb.await_until(lambda: sends(silent), DEADLINE, what="c's client got the push")
        c.kill9()
        r = await task
        took = time.monotonic() - t0
        assert took < 20, took
        assert (r.json["connections"], r.json["failed"]) == (1, 1), r.json
    run(main())
    rb.wait_until(lambda: "127.0.0.1:%d" % c.port not in peers(a), DEADLINE,
                  what="a drops the killed node")
    assert a.serverinfo()["status"] == 0


def session_follows_its_device(a, b, c, v2=False):
    """A device with a session on node a (offline, two QoS 1 messages queued
    there, one channel) reconnects to node b: b takes the session (committed
    on b before a deletes it), the client gets each queued message exactly
    once, keeps its channel, and /send/?device= from node c reaches it on b.
    Then it moves back to a while online on b: b closes its connection
    (4409) and a takes the session. v2: clients speak rainbow.v2 (their
    identity from HELLO, for gateways without a connect hook). Shared with
    test 20 (network namespaces)."""
    from session_helpers import open_session, wait_offline, session_row, dq
    dev = "dev-moving-1"

    async def main():
        c1 = await open_session(a, dev, v2=v2)
        await asyncio.to_thread(a.sub, c1.identity, "tv")
        await c1.ws.close()
        await wait_offline(a, dev)
        # c learns where the device is: its push is kept pending on a.
        for i in range(2):
            r = None

            def pushed():
                nonlocal r
                r = c.push(dq(dev, qos=1, timeout=5), b"queued-%d" % i)
                return r.json.get("pending") == 1
            await asyncio.to_thread(rb.wait_until, pushed, DEADLINE,
                                    what="c's device push kept pending on a")
            assert r.json["status"] == 0 and r.json["failed"] == 0, r.json
        c2 = await open_session(b, dev, v2=v2)
        col = Collector(c2, auto=True)
        await rb.await_until(lambda: len(sends(col)) == 2, DEADLINE,
                             what="the queued messages on b")
        assert [p.payload for p in sends(col)] == [b"queued-0", b"queued-1"]
        # a deletes its copy when b's SESSION_DONE arrives, which b sends
        # as it admits the client: soon, not necessarily before the pushes.
        await rb.await_until(lambda: session_row(a, dev) is None, DEADLINE,
                             what="a deletes its copy")
        assert b.db("SELECT channel FROM subscriptions WHERE device = ?", (dev,)) == [("tv",)]
        # The channel subscription moved with it: a channel push from a.
        await rb.await_until(lambda: c2.identity in a.presence("tv"), DEADLINE,
                             what="a sees the member on b")
        r = await asyncio.to_thread(a.push, {"channel": "tv", "qos": 1}, b"ch")
        assert r.json["connections"] == 1, r.json
        # A device push from c reaches it on b once c has learned the move.
        def direct():
            r = c.push(dq(dev, qos=1, timeout=5), b"direct")
            return r.json.get("connections") == 1
        await asyncio.to_thread(rb.wait_until, direct, DEADLINE, what="c reaches b")
        await asyncio.sleep(0.3)
        got = [p.payload for p in sends(col)]
        assert got.count(b"queued-0") == 1 and got.count(b"queued-1") == 1, got
        # Back to a while online on b: b's connection is closed, a holds it.
        c3 = await open_session(a, dev, v2=v2)
        await rb.await_until(lambda: col.closed is not None, DEADLINE, what="b closes 4409")
        assert col.closed.code == 4409, col.closed
        await rb.await_until(lambda: session_row(b, dev) is None, DEADLINE,
                             what="b deletes its copy")
        await c3.ws.close()
    run(main(), timeout=120)


def test_session_follows_its_device(gateway):
    a, b, c = gws = cluster(gateway)[0]
    links_up(gws)
    session_follows_its_device(a, b, c)


def make_certs(d, names, ca="ca"):
    """A CA and one certificate per name it signs (EC P-256, PEM), with the
    openssl command line; returns {name: (cert, key)} and the CA file."""
    import subprocess

    def run_ssl(*args):
        subprocess.run(("openssl",) + args, check=True, capture_output=True, timeout=60)
    ca_key, ca_pem = d / (ca + ".key"), d / (ca + ".pem")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    run_ssl("req", "-x509", *ec, "-keyout", str(ca_key), "-out", str(ca_pem),
            "-subj", "/CN=" + ca, "-days", "2")
    out = {}
    for n in names:
        key, csr, pem = d / (n + ".key"), d / (n + ".csr"), d / (n + ".pem")
        run_ssl("req", *ec, "-keyout", str(key), "-out", str(csr), "-subj", "/CN=" + n)
        run_ssl("x509", "-req", "-in", str(csr), "-CA", str(ca_pem), "-CAkey", str(ca_key),
                "-CAcreateserial", "-out", str(pem), "-days", "2")
        out[n] = (str(pem), str(key))
    return out, str(ca_pem)


def test_links_in_mutual_tls(gateway, tmp_path):
    """cluster_tls_*: two nodes with certificates of the cluster's CA link
    over TLS and carry pushes; a node whose certificate another CA signed is
    refused in the TLS handshake (counted), and so is a node without TLS
    (plaintext is never accepted by a TLS node, counted as refused)."""
    from test_19_discovery import free_udp_port, node
    certs, ca = make_certs(tmp_path, ["n1", "n2"])
    rogue, rogue_ca = make_certs(tmp_path, ["n3"], ca="rogue")
    udp = [free_udp_port() for _ in range(4)]

    def tls(name, cafile, c=certs):
        return dict(cluster_tls_cert=c[name][0], cluster_tls_key=c[name][1],
                    cluster_tls_ca=cafile)
    seeds = lambda i: [udp[k] for k in range(4) if k != i]  # noqa: E731
    a = node(gateway, udp[0], seeds(0), **tls("n1", ca))
    b = node(gateway, udp[1], seeds(1), **tls("n2", ca))
    c = node(gateway, udp[2], seeds(2), **tls("n3", rogue_ca, rogue))
    d = node(gateway, udp[3], seeds(3))
    for gw, other in ((a, b), (b, a)):
        rb.wait_until(lambda: peers(gw).get("127.0.0.1:%d" % other.port, {}).get("link") == "up",
                      DEADLINE, what="%s: TLS link up" % gw.name)
    assert "TLS, incarnation" in a.log_text()

    async def main():
        cb = await Client.open(b)
        col = Collector(cb, auto=True)
        await asyncio.to_thread(b.sub, cb.identity, "sec")
        await rb.await_until(lambda: a.presence("sec") == [cb.identity], DEADLINE,
                             what="presence over the TLS link")
        r = await asyncio.to_thread(a.push, {"channel": "sec", "qos": 1}, PAYLOAD)
        assert (r.json["connections"], r.json["failed"]) == (1, 0), r.json
        assert [p.payload for p in sends(col)] == [PAYLOAD]
    run(main())
    # The rogue and the plaintext node are seen by discovery (same secret)
    # but never get a link.
    rb.wait_until(lambda: counter(a, "rainbow_cluster_link_tls_failures_total") +
                  counter(c, "rainbow_cluster_link_tls_failures_total") > 0, DEADLINE,
                  what="the rogue certificate refused")
    rb.wait_until(lambda: counter(a, "rainbow_cluster_links_refused_total") +
                  counter(b, "rainbow_cluster_links_refused_total") +
                  counter(d, "rainbow_cluster_links_refused_total") > 0, DEADLINE,
                  what="plaintext refused by TLS nodes")
    for gw in (a, b):
        p = peers(gw)
        assert p["127.0.0.1:%d" % c.port]["link"] != "up", p
        assert p["127.0.0.1:%d" % d.port]["link"] != "up", p


def test_offline_members_on_another_node_get_channel_pushes(gateway):
    """A channel whose only member on node b is an offline session: b keeps
    announcing it, so a QoS 1 push from node a is kept pending there (the
    receipt says so) and delivered when the device comes back to b."""
    from session_helpers import open_session, wait_offline
    a, b, c = gws = cluster(gateway)[0]
    links_up(gws)
    dev = "dev-offline-member"

    async def main():
        c1 = await open_session(b, dev)
        await asyncio.to_thread(b.sub, c1.identity, "alerts")
        await c1.ws.close()
        await wait_offline(b, dev)
        r = await asyncio.to_thread(a.push, {"channel": "alerts", "qos": 1, "timeout": 5},
                                    b"while away")
        assert r.json == {"status": 0, "connections": 0, "failed": 0, "pending": 1,
                          "data": None}, r.json
        c2 = await open_session(b, dev)
        col = Collector(c2, auto=True)
        await rb.await_until(lambda: [p.payload for p in sends(col)] == [b"while away"],
                             DEADLINE, what="the pending push on return")
    run(main())
    # A node that comes up later learns it in the full announcement.
    b.stop()
    b.start(extra_args=["-p", "auto"])
    links_up(gws)
    r = a.push({"channel": "alerts", "qos": 1, "timeout": 5}, b"after restart")
    assert r.json["pending"] == 1, r.json
