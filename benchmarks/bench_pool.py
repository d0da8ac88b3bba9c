"""reclaim's pools against SQLAlchemy's QueuePool, DBUtils' PooledDB and bare queues, on sqlite3.

One run, one process, contenders interleaved within every repeat; the median
repeat is reported (contended: the median-throughput repeat).

Goals (issue 4):
  1. uncontended acquire+release, options off: <= 1.0x the queue.LifoQueue floor.
  2. uncontended, default features on: <= 1.5x the floor and >= 3x faster than SQLAlchemy.
  3. 16 threads sharing 4 connections, acquire + SELECT 1 + release: throughput >= 0.9x
     SQLAlchemy's and worst wait <= 1/20 of SQLAlchemy's.
  4. AsyncPool uncontended acquire+release: <= 2x a bare asyncio.LifoQueue get/put.

``--quick`` runs fewer operations. Peers come from the ``bench`` extra
(``pip install -e '.[bench]'``); a missing peer is reported and skipped.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import queue
import sqlite3
import statistics
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from reclaim import AsyncPool, Pool
from reclaim.db import ConnectionPool

QUICK = "--quick" in sys.argv
POOL = 4
THREADS = 16
LOOPS = 20_000 if QUICK else 100_000
REPEATS = 3 if QUICK else 7
CONTENDED_OPS = 1_000 if QUICK else 5_000  # per thread
CONTENDED_REPEATS = 3 if QUICK else 5
perf = time.perf_counter


def connect() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", check_same_thread=False)


# -- contenders: each returns (acquire_release_loop, contended_worker, closer) ----------------


def make_floor() -> dict[str, Any]:
    q: queue.LifoQueue[sqlite3.Connection] = queue.LifoQueue()
    for _ in range(POOL):
        q.put(connect())

    def loop(n: int) -> None:
        get, put = q.get, q.put
        for _ in range(n):
            c = get()
            put(c)

    def op() -> tuple[float, float]:
        t0 = perf()
        c = q.get()
        t1 = perf()
        c.execute("SELECT 1").fetchone()
        q.put(c)
        return t0, t1

    def close() -> None:
        while not q.empty():
            q.get().close()

    return {"loop": loop, "op": op, "close": close}


def make_reclaim(**options: Any) -> dict[str, Any]:
    pool = Pool(connect, max_size=POOL, **options)
    return _reclaim_like(pool)


def make_reclaim_db(**options: Any) -> dict[str, Any]:
    pool = ConnectionPool(sqlite3.connect, ":memory:", max_size=POOL, **options)
    return _reclaim_like(pool)


def _reclaim_like(pool: Pool[Any]) -> dict[str, Any]:
    leases = [pool.acquire() for _ in range(POOL)]  # warm: all connections made
    for lease in leases:
        lease.release()

    def loop(n: int) -> None:
        acquire = pool.acquire
        for _ in range(n):
            with acquire():
                pass

    def op() -> tuple[float, float]:
        t0 = perf()
        with pool.acquire() as c:
            t1 = perf()
            c.execute("SELECT 1").fetchone()
        return t0, t1

    return {"loop": loop, "op": op, "close": pool.close}


def make_sqlalchemy(**options: Any) -> dict[str, Any]:
    from sqlalchemy.pool import QueuePool

    pool = QueuePool(connect, pool_size=POOL, max_overflow=0, **options)
    conns = [pool.connect() for _ in range(POOL)]
    for c in conns:
        c.close()

    def loop(n: int) -> None:
        get = pool.connect
        for _ in range(n):
            c = get()
            c.close()

    def op() -> tuple[float, float]:
        t0 = perf()
        c = pool.connect()
        t1 = perf()
        c.cursor().execute("SELECT 1").fetchone()
        c.close()
        return t0, t1

    return {"loop": loop, "op": op, "close": pool.dispose}


def make_dbutils(**options: Any) -> dict[str, Any]:
    from dbutils.pooled_db import PooledDB

    pool = PooledDB(
        sqlite3,
        maxconnections=POOL,
        blocking=True,
        database=":memory:",
        check_same_thread=False,
        **options,
    )
    conns = [pool.connection() for _ in range(POOL)]
    for c in conns:
        c.close()

    def loop(n: int) -> None:
        get = pool.connection
        for _ in range(n):
            c = get()
            c.close()

    def op() -> tuple[float, float]:
        t0 = perf()
        c = pool.connection()
        t1 = perf()
        cur = c.cursor()
        cur.execute("SELECT 1")
        cur.fetchone()
        cur.close()
        c.close()
        return t0, t1

    return {"loop": loop, "op": op, "close": pool.close}


CONTENDERS: list[tuple[str, Callable[[], dict[str, Any]]]] = [
    ("queue.LifoQueue (floor)", make_floor),
    ("reclaim Pool, options off", lambda: make_reclaim(max_lifetime=None, max_idle=None)),
    ("reclaim ConnectionPool, defaults", make_reclaim_db),
    ("reclaim ConnectionPool, fair=False", lambda: make_reclaim_db(fair=False)),
    ("SQLAlchemy QueuePool (default reset)", make_sqlalchemy),
    ("SQLAlchemy QueuePool reset_on_return=None", lambda: make_sqlalchemy(reset_on_return=None)),
    ("DBUtils PooledDB (default)", make_dbutils),
    ("DBUtils PooledDB ping=0 reset=False", lambda: make_dbutils(ping=0, reset=False)),
]


def available() -> list[tuple[str, Callable[[], dict[str, Any]]]]:
    out = []
    for name, factory in CONTENDERS:
        try:
            factory()["close"]()
        except ImportError as exc:
            print(f"  skipped {name}: {exc} (pip install -e '.[bench]')")
            continue
        out.append((name, factory))
    return out


# -- measurements ------------------------------------------------------------------------------


def uncontended(contenders: list[tuple[str, Callable[[], dict[str, Any]]]]) -> dict[str, float]:
    samples: dict[str, list[float]] = {name: [] for name, _ in contenders}
    built = {name: factory() for name, factory in contenders}
    for _ in range(REPEATS):
        for name, _ in contenders:
            loop = built[name]["loop"]
            start = perf()
            loop(LOOPS)
            samples[name].append((perf() - start) / LOOPS * 1e6)
    for b in built.values():
        b["close"]()
    return {name: statistics.median(v) for name, v in samples.items()}


def contended_once(factory: Callable[[], dict[str, Any]]) -> dict[str, float]:
    bench = factory()
    op = bench["op"]
    barrier = threading.Barrier(THREADS + 1)
    waits: list[list[float]] = [[] for _ in range(THREADS)]
    finished: list[float] = [0.0] * THREADS

    def work(i: int) -> None:
        mine = waits[i]
        barrier.wait()
        for _ in range(CONTENDED_OPS):
            t0, t1 = op()
            mine.append(t1 - t0)
        finished[i] = perf()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    barrier.wait()
    start = perf()
    for t in threads:
        t.join()
    wall = perf() - start
    bench["close"]()
    every = sorted(w for per in waits for w in per)
    n = len(every)
    return {
        "ops": n / wall,
        "p50": every[n // 2] * 1e6,
        "p99": every[(n * 99) // 100] * 1e6,
        "max": every[-1] * 1e6,
        "first_done": (min(finished) - start) / wall * 100,
    }


def contended(contenders: list[tuple[str, Callable[[], dict[str, Any]]]]) -> dict[str, dict[str, float]]:
    runs: dict[str, list[dict[str, float]]] = {name: [] for name, _ in contenders}
    for _ in range(CONTENDED_REPEATS):
        for name, factory in contenders:
            runs[name].append(contended_once(factory))
    out = {}
    for name, results in runs.items():
        results.sort(key=lambda r: r["ops"])
        median = results[len(results) // 2]
        median["worst_max"] = max(r["max"] for r in results)
        out[name] = median
    return out


async def async_uncontended() -> dict[str, float]:
    q: asyncio.LifoQueue[sqlite3.Connection] = asyncio.LifoQueue()
    for _ in range(POOL):
        q.put_nowait(connect())
    off = AsyncPool(connect, max_size=POOL, max_lifetime=None, max_idle=None)
    defaults = AsyncPool(connect, max_size=POOL, reset=lambda c: c.rollback() if c.in_transaction else None)
    for pool in (off, defaults):
        leases = [await pool.acquire() for _ in range(POOL)]
        for lease in leases:
            await lease.release()

    async def floor(n: int) -> None:
        get, put = q.get, q.put_nowait
        for _ in range(n):
            c = await get()
            put(c)

    async def ours(pool: AsyncPool[Any], n: int) -> None:
        acquire = pool.acquire
        for _ in range(n):
            async with acquire():
                pass

    samples: dict[str, list[float]] = {"floor": [], "off": [], "defaults": []}
    for _ in range(REPEATS):
        for key, run in (
            ("floor", lambda: floor(LOOPS)),
            ("off", lambda: ours(off, LOOPS)),
            ("defaults", lambda: ours(defaults, LOOPS)),
        ):
            start = perf()
            await run()
            samples[key].append((perf() - start) / LOOPS * 1e6)
    await off.close()
    await defaults.close()
    while not q.empty():
        q.get_nowait().close()
    return {k: statistics.median(v) for k, v in samples.items()}


def site_capture_cost() -> tuple[float, float]:
    """(the pool's (code, instruction offset) capture, full _sites.capture()) in µs."""
    from reclaim import _sites

    getframe = sys._getframe
    cache = _sites._framework_cache

    def fast() -> None:
        frame = getframe(1)
        code = frame.f_code
        if cache.get(code.co_filename) is False:
            _ = (code, frame.f_lasti)

    def full() -> None:
        _sites.capture()

    out = []
    for fn in (fast, full):
        best = float("inf")
        for _ in range(5):
            start = perf()
            for _ in range(LOOPS):
                fn()
            best = min(best, (perf() - start) / LOOPS * 1e6)
        out.append(best)
    return out[0], out[1]


def main() -> int:
    print(
        f"{datetime.date.today()}  {platform.system()} {platform.machine()}, {os.cpu_count()} cores, "
        f"CPython {platform.python_version()}, sqlite {sqlite3.sqlite_version}; "
        f"{'quick' if QUICK else 'full'} run"
    )
    contenders = available()
    names = dict(contenders)
    floor_name = "queue.LifoQueue (floor)"

    print(
        f"\n(i) uncontended acquire + release, pool of {POOL} sqlite3 connections, µs/op, median of {REPEATS}"
    )
    un = uncontended(contenders)
    floor = un[floor_name]
    print(f"  {'pool':44} {'µs/op':>7} {'vs floor':>9}")
    for name in names:
        print(f"  {name:44} {un[name]:7.2f} {un[name] / floor:8.2f}x")

    print(
        f"\n(ii) contended: {THREADS} threads, pool of {POOL}, {CONTENDED_OPS} x (acquire, SELECT 1, release)"
        f" each; median of {CONTENDED_REPEATS} by throughput; waits in µs"
    )
    co = contended(contenders)
    print(
        f"  {'pool':44} {'ops/s':>9} {'vs floor':>9} {'p50':>8} {'p99':>8} {'max':>10} "
        f"{'worst max':>10} {'1st done':>9}"
    )
    for name in names:
        r = co[name]
        print(
            f"  {name:44} {r['ops']:9.0f} {r['ops'] / co[floor_name]['ops']:8.2f}x {r['p50']:8.1f} "
            f"{r['p99']:8.1f} {r['max']:10.0f} {r['worst_max']:10.0f} {r['first_done']:8.0f}%"
        )

    print(f"\n(iii) AsyncPool uncontended acquire + release, µs/op, median of {REPEATS}")
    au = asyncio.run(async_uncontended())
    print(f"  asyncio.LifoQueue get/put (floor)            {au['floor']:7.2f}    1.00x")
    print(f"  reclaim AsyncPool, options off               {au['off']:7.2f} {au['off'] / au['floor']:8.2f}x")
    print(
        f"  reclaim AsyncPool, reset-if-needed + lifetimes {au['defaults']:5.2f} "
        f"{au['defaults'] / au['floor']:8.2f}x"
    )

    fast, full = site_capture_cost()
    print(
        f"\n(iv) acquisition site: (code, offset) of the caller, as the pools take it, {fast:.3f} µs; "
        f"full _sites.capture() {full:.3f} µs"
    )

    print("\nGoals")
    off = un["reclaim Pool, options off"] / floor
    on = un["reclaim ConnectionPool, defaults"] / floor
    goals = [
        (f"1. options off <= 1.0x floor: {off:.2f}x", off <= 1.0),
        (f"2a. defaults <= 1.5x floor: {on:.2f}x", on <= 1.5),
    ]
    sa = "SQLAlchemy QueuePool (default reset)"
    if sa in un:
        speed = un[sa] / un["reclaim ConnectionPool, defaults"]
        goals.append((f"2b. defaults >= 3x faster than SQLAlchemy: {speed:.2f}x", speed >= 3.0))
        ours_c = co["reclaim ConnectionPool, defaults"]
        thr = ours_c["ops"] / co[sa]["ops"]
        wait = co[sa]["max"] / ours_c["max"]
        goals.append((f"3a. contended throughput >= 0.9x SQLAlchemy: {thr:.2f}x", thr >= 0.9))
        goals.append((f"3b. worst wait <= 1/20 SQLAlchemy's: 1/{wait:.0f}", wait >= 20))
    ratio = au["off"] / au["floor"]
    goals.append((f"4. AsyncPool <= 2x asyncio.LifoQueue: {ratio:.2f}x", ratio <= 2.0))
    for text, met in goals:
        print(f"  [{'met' if met else 'MISSED'}] {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
