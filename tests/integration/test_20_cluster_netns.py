"""20 LAN cluster on real (virtual) hosts: one gateway per network namespace,
all on one bridge (tests/integration/netns.py), each on the same TCP port
1984 and UDP port 2014 as separate machines would be, with no cluster_seeds:
they find each other by subnet broadcast, which test_19_discovery.py cannot
test on loopback.

Discovery (works now): three nodes list each other; a cluster of another
name on the same LAN stays apart and is counted; a beacon with the wrong
key, a stale one and a recorded one sent again are ignored and counted;
kill -9 drops a node within cluster_peer_timeout and a restart brings it
back with a greater incarnation; a partitioned node drops out on both sides
and comes back when healed.

Mesh (MESH_TESTS, the TCP links between nodes, contract of issue 9): a
channel push to one node reaches members on every node exactly once and the
receipt sums them; /sub/, /unsub/, /kick/, /presence/ and occupy act on
identities held by other nodes; an identity push crosses nodes; a node
killed during a push fails its deliveries without holding the call to its
timeout; /serverinfo/?cluster=1 peers show their link "up".

Needs root and iproute2, else every test is skipped. Every wait is on a
condition with a generous deadline; timing bounds (15 s for a killed node's
push) are far above what the contract needs."""
import asyncio
import hashlib
import hmac
import secrets
import socket
import struct
import time

import pytest

import netns
import rainbow as rb
from rainbow import Client, Collector, run
import test_07_push as t07
import test_19_discovery as t19
import test_21_cluster_mesh as t21

PORT = 1984            # every host has its own, as real machines would
UDP = 2014
NAME = "lan"
SECRET = "netns-test-secret-0123456789abcdef"
INTERVAL = t19.INTERVAL            # cluster_beacon_interval, 0.2 s
PEER_TIMEOUT = t19.PEER_TIMEOUT    # cluster_peer_timeout, 2 s
DEADLINE = t19.DEADLINE            # 10 s: discovery takes about one interval
MSGTYPE = t07.MSGTYPE
PAYLOAD = t07.PAYLOAD


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def _netns_usable():
    """Skip the module where namespaces cannot be made; clear what a crashed
    earlier run left behind."""
    why = netns.unavailable()
    if why:
        pytest.skip(why)
    netns.remove_leftovers()


@pytest.fixture
def lan():
    with netns.Lan() as net:
        yield net


@pytest.fixture
def nodes(lan, gateway):
    """nodes(n, name=NAME, secret=SECRET) starts n gateways, each on a new
    host. Requested after lan, so the gateways stop before the LAN goes."""
    def make(n, name=NAME, secret=SECRET, **opts):
        return [netns.start_gateway(gateway, lan.add_host(), port=PORT,
                                    udp_ports="%d-%d" % (UDP, UDP), cluster_name=name,
                                    cluster_secret=secret, cluster_beacon_interval=INTERVAL,
                                    cluster_peer_timeout=PEER_TIMEOUT, **opts)
                for _ in range(n)]
    make.lan = lan
    return make


# ---------------------------------------------------------------- peers

peers = t19.peers      # {addr: peer} of /serverinfo/?cluster=1, shape checked


def addr(gw):
    """How peers name gw: the beacon's source address and its TCP port."""
    return "%s:%d" % (gw.host, gw.port)


def exactly(gw, others):
    """gw lists exactly `others`, each known (heard by beacon or over a
    link: incarnation > 0; the mesh may list a node for a moment before
    that, with incarnation 0 and age_ms -1)."""
    want = {addr(o) for o in others}

    def check():
        ps = peers(gw)
        return set(ps) == want and all(p["incarnation"] > 0 for p in ps.values())
    return check


def wait_listed(gws, timeout=DEADLINE, what="to list all the others"):
    """Every node lists exactly all the others."""
    for gw in gws:
        rb.wait_until(exactly(gw, [o for o in gws if o is not gw]), timeout,
                      what="%s (%s) %s" % (gw.name, gw.host, what))


def counter(gw, name):
    return t19.counter(gw, "rainbow_cluster_" + name + "_total")


def links_up(gws):
    """Every node lists all the others with link "up"."""
    def check():
        for gw in gws:
            ps = peers(gw)
            if set(ps) != {addr(o) for o in gws if o is not gw}:
                return False
            if any(p["link"] != "up" for p in ps.values()):
                return False
        return True
    return check


def cluster(nodes, n=3):
    gws = nodes(n)
    wait_listed(gws)
    return gws


def mesh_cluster(nodes, n=3):
    """n nodes discovered and linked: pushes and ops may cross."""
    gws = cluster(nodes, n)
    rb.wait_until(links_up(gws), DEADLINE, what="every peer's link 'up'")
    return gws


# ---------------------------------------------------------------- beacons

def beacon(node, incarnation, ts_ms, name=NAME, secret=SECRET, port=PORT, leaving=False):
    """A beacon as docs/cluster-protocol.md lays it out: RBCN, version 1,
    flags, node id, incarnation, TCP port, timestamp ms, name, then
    HMAC-SHA256(secret) of all that."""
    name = name.encode()
    body = b"RBCN" + struct.pack(">BBIQHqH", 1, 1 if leaving else 0, node, incarnation,
                                 port, ts_ms, len(name)) + name
    return body + hmac.new(secret.encode(), body, hashlib.sha256).digest()


def parse_beacon(data, secret=SECRET):
    """The fields of a received beacon; asserts its layout and MAC."""
    assert data[:4] == b"RBCN" and len(data) >= 62, data.hex()
    ver, flags, node, inc, port, ts, n = struct.unpack(">BBIQHqH", data[4:30])
    assert ver == 1 and len(data) == 30 + n + 32, data.hex()
    mac = hmac.new(secret.encode(), data[:30 + n], hashlib.sha256).digest()
    assert hmac.compare_digest(mac, data[30 + n:]), "MAC does not verify: %s" % data.hex()
    return {"leaving": bool(flags & 1), "node": node, "incarnation": inc, "port": port,
            "timestamp_ms": ts, "name": data[30:30 + n].decode()}


def test_beacon_encoder_matches_the_documented_vector():
    """The encoder the forgeries use is the documented format (example of
    docs/cluster-protocol.md), so a refusal below is the key's doing."""
    want = bytes.fromhex(
        "5242434e 01 00 01020304 0000000000000005 07c0 0000018bcfe56800 0003 6c616e"
        "bf111b340b450581d0986f0f513c7650008a1cda1e85a7f267c46751b6f72c5f".replace(" ", ""))
    assert beacon(0x01020304, 5, 1700000000000, name="lan", secret="s3cret") == want


def now_ms():
    return int(time.time() * 1000)


class Listener:
    """A UDP socket on the beacon port of a host with no gateway (the
    attacker's machine on the LAN): hears every broadcast beacon and sends
    whatever it likes to a node."""

    def __init__(self, host):
        self.host = host
        self.sock = host.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        self.sock.bind(("", UDP))

    def capture(self, src, timeout=DEADLINE):
        """The next beacon from address src."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no beacon from %s within %.0f s" % (src, timeout))
            self.sock.settimeout(left)
            try:
                data, (ip, _) = self.sock.recvfrom(2048)
            except socket.timeout:
                continue
            if ip == src:
                return data

    def send(self, data, gw):
        assert self.sock.sendto(data, (gw.host, UDP)) == len(data)

    def close(self):
        self.sock.close()


# ---------------------------------------------------------------- discovery

def test_three_find_each_other_by_broadcast(nodes):
    a, b, c = cluster(nodes)
    ids = set()
    for gw in (a, b, c):
        ps = peers(gw)
        assert set(ps) == {addr(o) for o in (a, b, c) if o is not gw}, ps
        for p in ps.values():
            assert p["incarnation"] > 0 and 0 <= p["age_ms"] <= DEADLINE * 1000, p
            ids.add(p["node"])
        # Heard by broadcast (a peer may be listed first through the link
        # the other side dialed, so wait for the beacons themselves).
        rb.wait_until(lambda: counter(gw, "beacons_received") >= 2, DEADLINE,
                      what="%s to accept beacons of both others" % gw.name)
        assert gw.metrics()["rainbow_cluster_peers"].samples[0][2] == 2
    assert len(ids) == 3 and 0 not in ids, ids
    # Every node agrees on each node's id.
    assert peers(a)[addr(c)]["node"] == peers(b)[addr(c)]["node"]
    # No seeds: what was heard came by broadcast, from the hosts' own
    # addresses (the peers' addr is the beacon's source).
    assert all(p.startswith(netns.SUBNET + ".") for p in peers(a)), peers(a)


def test_another_cluster_name_stays_apart(nodes):
    lan3 = cluster(nodes)
    other = nodes(2, name="other")        # same secret, same port, same LAN
    wait_listed(other)
    for gw in lan3 + other:
        rb.wait_until(lambda: counter(gw, "beacons_ignored_foreign") >= 3, DEADLINE,
                      what="%s to count the other cluster's beacons" % gw.name)
    # Long after both saw the other's beacons, each still lists only its own.
    for group in (lan3, other):
        for gw in group:
            assert set(peers(gw)) == {addr(o) for o in group if o is not gw}, peers(gw)
            assert counter(gw, "beacons_ignored_forged") == 0   # same secret: not forged


def test_forged_stale_and_replayed_beacons_ignored(nodes):
    """From a host of the LAN without a gateway: a real beacon captured and
    sent again, a beacon with the wrong key (a new node; a's id with the
    leaving flag) and one a minute old are each counted under their own
    reason and change nothing; the same encoder with the right key does
    make a node (the control)."""
    a, b, c = cluster(nodes)
    attacker = Listener(nodes.lan.add_host())
    try:
        before = peers(b)
        dropped0 = counter(b, "peers_dropped")

        # A real beacon of a, off the wire: the documented layout, a's id.
        data = attacker.capture(a.host)
        got = parse_beacon(data)
        assert got["node"] == before[addr(a)]["node"], (got, before)
        assert (got["name"], got["port"], got["leaving"]) == (NAME, PORT, False), got
        # Sent again once a's next one went by: b had both (the bridge floods
        # a broadcast to every port at once) before the copy, on the one
        # socket that reads them in order, so it has taken a newer beacon of
        # a by then. (Not a's age_ms in /serverinfo/: link frames refresh it.)
        later = parse_beacon(attacker.capture(a.host))
        assert (later["incarnation"], later["timestamp_ms"]) > \
            (got["incarnation"], got["timestamp_ms"]), (got, later)
        replayed0 = counter(b, "beacons_ignored_replayed")
        attacker.send(data, b)
        rb.wait_until(lambda: counter(b, "beacons_ignored_replayed") >= replayed0 + 1, DEADLINE,
                      what="the replayed beacon counted")

        # Wrong key: a new node, and a's own id with the leaving flag.
        fake = secrets.randbits(31) | 1
        forged0 = counter(b, "beacons_ignored_forged")
        attacker.send(beacon(fake + 2, 1, now_ms(), secret="not-the-secret"), b)
        attacker.send(beacon(got["node"], got["incarnation"], now_ms(), leaving=True,
                             secret="not-the-secret"), b)
        rb.wait_until(lambda: counter(b, "beacons_ignored_forged") >= forged0 + 2, DEADLINE,
                      what="2 forged beacons counted")

        # Right key, a minute old (beyond the 30 s window).
        stale0 = counter(b, "beacons_ignored_stale")
        attacker.send(beacon(fake + 4, 1, now_ms() - 60000), b)
        rb.wait_until(lambda: counter(b, "beacons_ignored_stale") >= stale0 + 1, DEADLINE,
                      what="the stale beacon counted")

        after = peers(b)
        assert set(after) == set(before), (before, after)
        for k in before:
            assert (after[k]["node"], after[k]["incarnation"]) == \
                (before[k]["node"], before[k]["incarnation"]), (before, after)
        # The forged leaving beacon did not drop a, not even for a moment.
        assert counter(b, "peers_dropped") == dropped0
        assert "peer %08x at %s left" % (got["node"], addr(a)) not in b.log_text()

        # Control: the right key makes a node of the attacker's host, so the
        # refusals above are the key's, the clock's and the replay table's.
        attacker.send(beacon(fake, 1, now_ms()), b)
        fake_addr = "%s:%d" % (attacker.host.addr, PORT)
        rb.wait_until(lambda: fake_addr in peers(b), DEADLINE, what="b to list the control node")
        rb.wait_until(lambda: fake_addr not in peers(b), PEER_TIMEOUT + DEADLINE,
                      what="b to time the control node out")
    finally:
        attacker.close()


def test_kill9_dropped_and_rejoins(nodes):
    a, b, c = cluster(nodes)
    old = peers(a)[addr(c)]
    c.kill9()
    for gw in (a, b):
        rb.wait_until(exactly(gw, [o for o in (a, b) if o is not gw]), PEER_TIMEOUT + DEADLINE,
                      what="%s to time the killed node out" % gw.name)
        assert "not heard from" in gw.log_text()
        assert gw.get("/hello/").body == b"ok"
    c.restart()
    wait_listed([a, b, c], what="to list the restarted node again")
    for gw in (a, b):
        new = peers(gw)[addr(c)]
        assert new["incarnation"] > old["incarnation"], (old, new)
        assert new["node"] != old["node"], (old, new)


def test_partition_and_heal(nodes):
    a, b, c = cluster(nodes)
    old = peers(a)[addr(c)]
    nodes.lan.partition(c.netns_host)
    for gw, want in ((a, [b]), (b, [a])):
        rb.wait_until(exactly(gw, want), PEER_TIMEOUT + DEADLINE,
                      what="%s to drop the other side of the partition" % gw.name)
    # The cut-off node is asked from its own host (the test process cannot
    # reach it now): it hears nobody either.
    rb.wait_until(lambda: c.netns_host.run(exactly(c, [])), PEER_TIMEOUT + DEADLINE,
                  what="the cut-off node to drop both others")
    nodes.lan.heal(c.netns_host)
    wait_listed([a, b, c], timeout=DEADLINE * 2, what="to list all again after the heal")
    # The same process all along: same node id, same incarnation.
    new = peers(a)[addr(c)]
    assert (new["node"], new["incarnation"]) == (old["node"], old["incarnation"]), (old, new)


# ---------------------------------------------------------------- mesh helpers

async def open_client(gw):
    """A v2 client of gw: its identity comes in HELLO (no connect hook)."""
    return await Client.open(gw, subprotocols=["rainbow.v2"], tag=False)


async def call(fn, *args, **kw):
    """A blocking REST call from a thread, so the clients' frames (and the
    Collectors' ACKs) keep flowing meanwhile."""
    return await asyncio.to_thread(fn, *args, **kw)


def push_q(target, qos, timeout=10, **extra):
    q = dict(target, msgtype=MSGTYPE, qos=qos)
    if qos:
        q["timeout"] = timeout
    q.update(extra)
    return q


async def present(gw, channel, idents, timeout=DEADLINE):
    """Wait until gw's /presence/ lists exactly idents. Also a barrier: the
    answer of a node crossed the same link as its interest updates, after
    them, so a push from gw then knows every member listed."""
    want = sorted(idents)
    await rb.await_until(lambda: sorted(gw.presence(channel)) == want, timeout,
                         interval=0.1, what="%s presence(%s) == %s" % (gw.name, channel, want))


def sends(col):
    return [p for p in col.packets() if p.cmd == rb.SEND]


# ---------------------------------------------------------------- mesh

def test_mesh_links_up_and_again_after_partition(nodes):
    a, b, c = mesh_cluster(nodes)
    nodes.lan.partition(c.netns_host)
    rb.wait_until(exactly(a, [b]), PEER_TIMEOUT + DEADLINE, what="a to drop c")
    rb.wait_until(lambda: c.netns_host.run(exactly(c, [])), PEER_TIMEOUT + DEADLINE,
                  what="c to drop a and b")
    nodes.lan.heal(c.netns_host)
    rb.wait_until(links_up([a, b, c]), DEADLINE * 2, what="every link 'up' after the heal")


def test_mesh_channel_push_summed(nodes):
    gws = mesh_cluster(nodes)

    async def body():
        pairs = [(gw, await open_client(gw)) for gw in gws for _ in range(2)]
        cols = [Collector(cl, auto=True, reply=b"ok") for _, cl in pairs]
        for gw, cl in pairs:
            await call(gw.sub, cl.identity, "room")      # each on its own node
        idents = [cl.identity for _, cl in pairs]
        await present(gws[0], "room", idents)

        r = await call(gws[0].push, push_q({"channel": "room"}, 1), PAYLOAD)
        assert (r.status, r.json) == (200, t07.acked_answer(6, "ok")), r.json
        # QoS 0 answers at once: it counts this node's members only (the
        # others send no receipt), so the deliveries below are the check.
        r = await call(gws[0].push, push_q({"channel": "room"}, 0), b"q0")
        assert (r.status, r.json) == (200, {"status": 0, "connections": 2}), r.json
        # A third push from the same node: each client's frames come in order
        # over the same path, so once it has the third, a second copy of the
        # first two would have come before it.
        r = await call(gws[0].push, push_q({"channel": "room"}, 1), b"end")
        assert (r.status, r.json) == (200, t07.acked_answer(6, "ok")), r.json
        for (gw, cl), col in zip(pairs, cols):
            await rb.await_until(lambda: len(sends(col)) >= 3, DEADLINE,
                                 what="3 pushes at a client of %s" % gw.name)
            got = sends(col)
            assert [(p.qos, p.msgtype, p.payload) for p in got] == [
                (1, MSGTYPE, PAYLOAD), (0, MSGTYPE, b"q0"), (1, MSGTYPE, b"end")], (
                gw.name, [rb.describe(p.raw) for p in got])
            assert not any(p.dup for p in got), [rb.describe(p.raw) for p in got]
        for col in cols:
            await col.stop()
        for _, cl in pairs:
            await cl.close()
    run(body(), timeout=120)


def test_mesh_remote_ops(nodes):
    n1, n2, n3 = mesh_cluster(nodes)

    async def body():
        a2 = await open_client(n2)
        col = Collector(a2, auto=True, reply=b"a2")
        # /sub/ of a node-2 identity, sent to node 1; a push from node 3.
        await call(n1.sub, a2.identity, "room")
        await present(n3, "room", [a2.identity])
        r = await call(n3.push, push_q({"channel": "room"}, 1), PAYLOAD)
        assert (r.status, r.json) == (200, t07.acked_answer(1, "a2")), r.json
        assert [p.payload for p in sends(col)] == [PAYLOAD]

        # /unsub/ the same way: the channel is empty everywhere, and a
        # marker pushed afterwards to the identity is the next frame.
        await call(n1.unsub, a2.identity, "room")
        await present(n3, "room", [])
        r = await call(n3.push, push_q({"channel": "room"}, 1), b"not for a2")
        assert r.status == 200 and r.json["connections"] == 0, r.json
        assert r.json.get("failed", 0) == 0, r.json
        r = await call(n3.push, push_q({"identity": a2.identity}, 1), b"marker")
        assert (r.status, r.json) == (200, t07.acked_answer(1, "a2")), r.json
        assert [p.payload for p in sends(col)] == [PAYLOAD, b"marker"]
        await col.stop()

        # /kick/ of a node-2 identity, sent to node 1.
        r = await call(n1.api, "POST", "/kick/",
                       body={"identity": a2.identity, "code": 4321, "reason": "bye"})
        assert (r.status, r.json) == (200, {"status": 0}), r.json
        assert await a2.expect_closed(DEADLINE) == 4321
        assert a2.ws.close_reason == "bye", a2.ws.close_reason

        # /presence/ on any node lists the members of every node.
        b = [await open_client(gw) for gw in (n1, n2, n3)]
        for gw, cl in zip((n1, n2, n3), b):
            await call(gw.sub, cl.identity, "room")
        ids = [cl.identity for cl in b]
        for gw in (n1, n2, n3):
            await present(gw, "room", ids)

        # occupy on node 1: the members on nodes 2 and 3 leave the channel.
        await call(n1.sub, b[0].identity, "room", occupy=True)
        for gw in (n1, n2, n3):
            await present(gw, "room", [b[0].identity])
        cols = [Collector(cl, auto=True, reply=b"b") for cl in b]
        r = await call(n2.push, push_q({"channel": "room"}, 1), PAYLOAD)
        assert (r.status, r.json) == (200, t07.acked_answer(1, "b")), r.json
        for cl, col in zip(b[1:], cols[1:]):   # markers: nothing came before them
            r = await call(n1.push, push_q({"identity": cl.identity}, 1), b"marker")
            assert (r.status, r.json) == (200, t07.acked_answer(1, "b")), r.json
            assert [p.payload for p in sends(col)] == [b"marker"]
        assert [p.payload for p in sends(cols[0])] == [PAYLOAD]
        for col in cols:
            await col.stop()
        for cl in b:
            await cl.close()
    run(body(), timeout=120)


def test_mesh_device_moves_with_its_session(nodes):
    """Node 1 holds a device's session with QoS 1 messages queued; the
    device reconnects to node 2 and gets each exactly once (test 21's
    scenario, between hosts)."""
    n1, n2, n3 = mesh_cluster(nodes)
    t21.session_follows_its_device(n1, n2, n3, v2=True)


def test_mesh_identity_push(nodes):
    n1, n2, n3 = mesh_cluster(nodes)

    async def body():
        c3 = await open_client(n3)
        other = await open_client(n1)
        cols = [Collector(c3, auto=True, reply=b"c3"), Collector(other, auto=True)]
        r = await call(n1.push, push_q({"identity": c3.identity}, 1), PAYLOAD)
        assert (r.status, r.json) == (200, t07.acked_answer(1, "c3")), r.json
        r = await call(n1.push, push_q({"identity": c3.identity}, 0), b"q0")
        # No receipt at QoS 0: counted as the one connection held there.
        assert (r.status, r.json) == (200, {"status": 0, "connections": 1}), r.json
        await rb.await_until(lambda: len(sends(cols[0])) >= 2, DEADLINE, what="2 pushes at c3")
        assert [(p.qos, p.payload) for p in sends(cols[0])] == [(1, PAYLOAD), (0, b"q0")]
        assert sends(cols[1]) == []
        for col in cols:
            await col.stop()
        await c3.close()
        await other.close()
    run(body(), timeout=60)


def test_mesh_kill9_during_push(nodes):
    n1, n2, n3 = mesh_cluster(nodes)

    async def body():
        a1 = await open_client(n1)
        a3 = await open_client(n3)
        col1 = Collector(a1, auto=True, reply=b"a1")
        col3 = Collector(a3, auto=False)                 # never ACKs
        await call(n1.sub, a1.identity, "room")
        await call(n3.sub, a3.identity, "room")
        await present(n1, "room", [a1.identity, a3.identity])
        pending = asyncio.get_running_loop().create_task(
            call(n1.push, push_q({"channel": "room"}, 1, timeout=30), PAYLOAD, timeout=45))
        await rb.await_until(lambda: bool(sends(col3) and sends(col1)), DEADLINE,
                             what="the push at both members")
        assert sends(col3)[0].qos == 1
        t0 = time.monotonic()
        await call(n3.kill9)
        r = await asyncio.wait_for(pending, 15)
        took = time.monotonic() - t0
        assert r.status == 200, (r.status, r.json)
        assert r.json["connections"] == 1 and r.json["failed"] >= 1, r.json
        assert r.json["data"] == "a1", r.json
        assert took < 15, took
        await col1.stop()
        await col3.stop()
        await a1.close()
        await a3.close()
    run(body(), timeout=90)
