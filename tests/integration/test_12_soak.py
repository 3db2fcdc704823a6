"""12 soak: a session client takes RAINBOW_SOAK_N (default 2000) QoS 1 pushes
in batches, alternately queued while it is offline and delivered while it is
online, and ACKs them all; meanwhile short-lived sessions with queued messages
expire. The database must stay bounded: every delivery and message row gone at
the end, only the held session left, and the file small once checkpointed.

Marked `soak`: it runs in the normal suite (a few seconds here; RAINBOW_SOAK_N,
RAINBOW_SOAK_BATCH and RAINBOW_SOAK_EXPIRING make it bigger), -m "not soak" skips it."""
import asyncio
import concurrent.futures
import os
import time

import pytest

import rainbow as rb
from rainbow import Collector, run
from session_helpers import (await_db, deliveries, dq, open_session, pending_answer,
                             wait_offline)

N = int(os.environ.get("RAINBOW_SOAK_N", "2000"))
BATCH = int(os.environ.get("RAINBOW_SOAK_BATCH", "250"))
EXPIRING = int(os.environ.get("RAINBOW_SOAK_EXPIRING", "40"))   # short-lived sessions
DB_BOUND = 2 * 1024 * 1024      # bytes, the database file once checkpointed
WAL_BOUND = 16 * 1024 * 1024    # bytes, the WAL while running (SQLite checkpoints at ~4 MB)


def file_sizes(gw):
    out = {}
    for suffix in ("", "-wal", "-shm"):
        p = str(gw.db_path) + suffix
        out["db" + suffix] = os.path.getsize(p) if os.path.exists(p) else 0
    return out


@pytest.mark.soak
def test_soak_qos1_batches_and_expiring_sessions(gateway, backend):
    gw = gateway(session_expiry=2, retry_interval=5, max_inflight_messages=1000,
                 log_level="warn")
    pool = concurrent.futures.ThreadPoolExecutor(12)
    stats = {"queued": 0, "online": 0, "frames": 0, "expired": 0}

    async def push_many(queries_bodies):
        loop = asyncio.get_running_loop()
        futs = [loop.run_in_executor(pool, lambda qb=qb: gw.push(qb[0], qb[1]))
                for qb in queries_bodies]
        return await asyncio.gather(*futs)

    async def body():
        t0 = time.monotonic()
        rounds = (N + BATCH - 1) // BATCH
        per_round = max(1, EXPIRING // rounds)
        made = [0]

        async def short_lived():
            """per_round more sessions, each with two queued messages, left to
            expire (session_expiry 2 s) while the rounds go on."""
            names = ["e%d" % (made[0] + i) for i in range(per_round)]
            made[0] += per_round
            for name in names:
                c = await open_session(gw, name)
                await c.close()
            for name in names:
                await wait_offline(gw, name)
            answers = await push_many([(dq(name, timeout=3), b"x-" + name.encode() + b"-%d" % k)
                                       for name in names for k in range(2)])
            for r in answers:
                assert (r.status, r.json) == (200, pending_answer(1)), (r.status, r.json)

        c = await open_session(gw, "main")      # the session the rounds use
        await c.close()
        await wait_offline(gw, "main")
        sent = 0
        rnd = 0
        while sent < N:
            n = min(BATCH, N - sent)
            await short_lived()
            payloads = [b'{"soak":%d}' % (sent + i) for i in range(n)]
            if rnd % 2 == 0:
                # offline: queued, answered at once; delivered on reconnect
                answers = await push_many([(dq("main", timeout=3), p) for p in payloads])
                for r in answers:
                    assert (r.status, r.json) == (200, pending_answer(1)), (r.status, r.json)
                queued = [d["payload"] for d in deliveries(gw, "main")]
                assert sorted(queued) == sorted(payloads), "round %d: %d rows queued" % (
                    rnd, len(queued))
                c = await open_session(gw, "main")
                col = Collector(c, auto=True, reply=b"k")
                await col.wait_count(n, timeout=20)
                stats["queued"] += n
            else:
                c = await open_session(gw, "main")
                col = Collector(c, auto=True, reply=b"k")
                answers = await push_many([(dq("main", timeout=10), p) for p in payloads])
                for r in answers:
                    assert (r.status, r.json) == (200, pending_answer(0, connections=1,
                                                                     data="k")), r.json
                await col.wait_count(n, timeout=20)
                stats["online"] += n
            await await_db(gw, lambda g: g.db_count("deliveries", "main") == 0, 10,
                           "round %d acknowledged" % rnd)
            await asyncio.sleep(0.1)            # nothing more may come
            await col.stop()
            pkts = col.packets()
            got = [p.payload for p in pkts]
            assert sorted(got) == sorted(payloads), "round %d: %d frames for %d pushes" % (
                rnd, len(got), n)
            assert all(p.cmd == rb.SEND and p.qos == 1 and not p.dup for p in pkts)
            if rnd % 2 == 0:
                # queued while offline: delivered in the order they were queued
                assert got == queued, "round %d: not in queue order" % rnd
            stats["frames"] += len(pkts)
            await c.close()
            await wait_offline(gw, "main")
            print("round %d: %d pushes (%s) at %.1f s; rows %r; files %r" % (
                rnd, n, "online" if rnd % 2 else "queued", time.monotonic() - t0,
                gw.db_counts(), file_sizes(gw)))
            sent += n
            rnd += 1
        # keep the main session held so that only the short-lived ones expire
        c = await open_session(gw, "main")
        await await_db(gw, lambda g: g.db_count("sessions") == 1, 2 + 0.5 + 3,
                       "short-lived sessions expired")
        await c.expect_no_frame(0.2)
        rows = gw.db_counts()
        running = file_sizes(gw)
        stats["expired"] = made[0]
        await c.close()
        return rows, running, time.monotonic() - t0

    try:
        rows, running, elapsed = run(body(), timeout=120)
    finally:
        pool.shutdown(wait=False)
    print("soak: %d pushes (%d queued, %d online) in %.1f s, %d frames; %d sessions expired"
          % (N, stats["queued"], stats["online"], elapsed, stats["frames"], stats["expired"]))
    print("rows at the end: %r" % rows)
    print("files while running: %r" % running)
    assert stats["frames"] == N
    assert rows == {"sessions": 1, "subscriptions": 0, "messages": 0, "deliveries": 0,
                    "upstream": 0}, rows
    assert gw.stop() == 0
    stopped = file_sizes(gw)
    pages = gw.db("PRAGMA page_count")[0][0]
    page_size = gw.db("PRAGMA page_size")[0][0]
    free = gw.db("PRAGMA freelist_count")[0][0]
    print("files after a clean stop (checkpointed): %r; %d pages of %d bytes, %d free" % (
        stopped, pages, page_size, free))
    assert stopped["db-wal"] == 0, "WAL not checkpointed at a clean stop: %r" % stopped
    assert stopped["db"] < DB_BOUND, "database grew to %d bytes" % stopped["db"]
    assert running["db"] < DB_BOUND, "database grew to %d bytes while running" % running["db"]
    assert running["db-wal"] < WAL_BOUND, "WAL grew to %d bytes" % running["db-wal"]
