"""19 LAN cluster discovery on one host (loopback has no broadcast, so the
nodes find each other through cluster_seeds): three gateways with the same
cluster_name and cluster_secret list each other in /serverinfo/?cluster=1;
another secret or another name never appears and is counted; a clean exit
drops a node at once (leaving beacon), SIGKILL within cluster_peer_timeout;
a restarted node comes back with a greater incarnation. Every wait is on a
condition with a generous deadline."""
import socket

import rainbow as rb

INTERVAL = 0.2        # cluster_beacon_interval
PEER_TIMEOUT = 2      # cluster_peer_timeout
DEADLINE = 10         # generous: discovery takes about one interval


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node(gateway, udp, seeds, name="lan", secret="s3cret", **opts):
    """A gateway with port = auto (a range of one free port) and its own UDP
    port; seeds: the UDP ports of the others; opts: more settings."""
    tcp = rb.free_port()
    gw = gateway(start=False, port=None, port_range="%d-%d" % (tcp, tcp),
                 udp_ports="%d-%d" % (udp, udp), cluster_name=name,
                 cluster_secret=secret,
                 cluster_seeds=",".join("127.0.0.1:%d" % p for p in seeds),
                 cluster_beacon_interval=INTERVAL, cluster_peer_timeout=PEER_TIMEOUT, **opts)
    gw.port = tcp
    gw.start(extra_args=["-p", "auto"])
    return gw


def info(gw):
    r = gw.get("/serverinfo/?cluster=1")
    assert r.status == 200, (r.status, r.body[:200])
    return rb.json_body(r)


def peers(gw):
    """{addr: peer} of gw's /serverinfo/?cluster=1."""
    j = info(gw)
    assert isinstance(j["peers"], list), j
    out = {}
    for p in j["peers"]:
        assert set(p) == {"node", "addr", "incarnation", "age_ms", "link"}, p
        assert p["addr"] not in out, j
        out[p["addr"]] = p
    return out


def addr(gw):
    return "127.0.0.1:%d" % gw.port


def counter(gw, name):
    fam = gw.metrics()[name]
    return fam[3][0][2]


def exactly(gw, others):
    want = {addr(o) for o in others}
    return lambda: set(peers(gw)) == want


def cluster(gateway):
    udp = [free_udp_port() for _ in range(3)]
    gws = [node(gateway, udp[i], [udp[k] for k in range(3) if k != i]) for i in range(3)]
    for i, gw in enumerate(gws):
        rb.wait_until(exactly(gw, [o for o in gws if o is not gw]), DEADLINE,
                      what="%s to list the two others" % gw.name)
    return gws, udp


def test_three_find_each_other_and_others_stay_apart(gateway):
    (a, b, c), udp = cluster(gateway)
    pa = peers(a)
    # Node ids are distinct, non-zero; none is the node itself.
    ids = {p["node"] for p in pa.values()} | {p["node"] for p in peers(b).values()}
    assert len(ids) == 3 and 0 not in ids, ids
    for p in pa.values():
        assert p["incarnation"] > 0 and 0 <= p["age_ms"] <= DEADLINE * 1000, p
    # The node id a peer announces is the one its identities carry (their
    # last 8 hex digits): an identity can be routed to its node.

    async def identity_on(gw):
        cl = await rb.Client.open(gw, subprotocols=["rainbow.v2"])
        await cl.close()
        return cl.hello["identity"]
    ident_b = rb.run(identity_on(b))
    assert pa[addr(b)]["node"] == int(ident_b[56:], 16), (pa, ident_b)
    m = a.metrics()
    assert m["rainbow_cluster_peers"][3][0][2] == 2
    assert counter(a, "rainbow_cluster_beacons_received_total") >= 2
    assert counter(a, "rainbow_cluster_beacons_sent_total") >= 2

    # Another secret and another name beacon to all three, and are ignored.
    forged0 = counter(a, "rainbow_cluster_beacons_ignored_forged_total")
    foreign0 = counter(a, "rainbow_cluster_beacons_ignored_foreign_total")
    d = node(gateway, free_udp_port(), udp, secret="other-secret")
    e = node(gateway, free_udp_port(), udp, name="other-name")
    rb.wait_until(lambda: counter(a, "rainbow_cluster_beacons_ignored_forged_total")
                  >= forged0 + 3, DEADLINE, what="forged beacons counted")
    rb.wait_until(lambda: counter(a, "rainbow_cluster_beacons_ignored_foreign_total")
                  >= foreign0 + 3, DEADLINE, what="foreign beacons counted")
    for gw in (a, b, c):
        assert set(peers(gw)) == {addr(o) for o in (a, b, c) if o is not gw}
        # Both kept sending, all the time.
        assert counter(gw, "rainbow_cluster_beacons_ignored_forged_total") >= 3
        assert counter(gw, "rainbow_cluster_beacons_ignored_foreign_total") >= 3
    # They only know nobody: they heard no one of their own.
    assert peers(d) == {} and peers(e) == {}


def test_leave_kill_and_restart(gateway):
    (a, b, c), udp = cluster(gateway)
    old_c = peers(a)[addr(c)]

    # A clean exit: its leaving beacon drops it at once, long before the
    # peer timeout would.
    assert c.stop() == 0
    rb.wait_until(exactly(a, [b]), PEER_TIMEOUT * 0.75, what="a to drop c on its leaving beacon")
    rb.wait_until(exactly(b, [a]), PEER_TIMEOUT * 0.75, what="b to drop c on its leaving beacon")
    assert "left" in a.log_text()

    # Back: a new node id and a greater incarnation.
    c.restart(extra_args=["-p", "auto"])
    rb.wait_until(exactly(a, [b, c]), DEADLINE, what="a to see c again")
    new_c = peers(a)[addr(c)]
    assert new_c["incarnation"] > old_c["incarnation"], (old_c, new_c)
    assert new_c["node"] != old_c["node"], (old_c, new_c)

    # SIGKILL: no leaving beacon, dropped after cluster_peer_timeout.
    old_b = peers(a)[addr(b)]
    b.kill9()
    rb.wait_until(exactly(a, [c]), PEER_TIMEOUT + DEADLINE, what="a to time b out")
    rb.wait_until(exactly(c, [a]), PEER_TIMEOUT + DEADLINE, what="c to time b out")
    assert "not heard from" in a.log_text()
    assert counter(a, "rainbow_cluster_peers_dropped_total") >= 2

    b.restart(extra_args=["-p", "auto"])
    rb.wait_until(exactly(a, [b, c]), DEADLINE, what="a to see b again")
    assert peers(a)[addr(b)]["incarnation"] > old_b["incarnation"]


def test_cluster_off_by_default(gateway):
    gw = gateway()
    assert "peers" not in info(gw)
    assert "rainbow_cluster_peers" not in gw.metrics()
    assert counter(gw, "rainbow_cluster_beacons_sent_total") == 0
