"""After os.fork() a child's pool starts empty and never closes or lends the parent's objects."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from pool_support import run_in_child
from reclaim import AsyncLease, AsyncPool, Pool
from reclaim.db import ConnectionPool

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


class Logged:
    """An object whose close() appends 'pid id' to a file shared by parent and child."""

    def __init__(self, log: Path, number: int) -> None:
        self.log = log
        self.number = number

    def close(self) -> None:
        with self.log.open("a") as f:
            f.write(f"{os.getpid()} {self.number}\n")


def test_child_starts_empty_and_never_closes_parent_objects(tmp_path: Path) -> None:
    log = tmp_path / "closes.log"
    log.touch()
    numbers = iter(range(100))
    pool = Pool(lambda: Logged(log, next(numbers)), max_size=3, max_lifetime=None, max_idle=None)
    idle = pool.acquire()
    held = pool.acquire()
    idle.release()
    parent_objects = {0, 1}  # made before the fork

    def child() -> None:
        stats = pool.statistics()
        assert (stats.size, stats.idle, stats.in_use) == (0, 0, 0)
        with pool.acquire() as mine:
            assert mine.number not in parent_objects  # a new object, made in the child
        held.release()  # a lease from before the fork: dropped, not closed, not pooled
        assert pool.statistics().size == 1
        pool.close()

    run_in_child(child)
    closes = [line.split() for line in log.read_text().splitlines()]
    child_closed = {int(number) for pid, number in closes if int(pid) != os.getpid()}
    assert child_closed.isdisjoint(parent_objects)
    assert len(child_closed) == 1
    # The parent's pool is untouched: same objects, still lent normally.
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use) == (2, 1, 1)
    held.release()
    pool.close()
    closed_here = {int(number) for pid, number in closes if int(pid) == os.getpid()}
    assert closed_here == set()
    final = {tuple(line.split()) for line in log.read_text().splitlines()}
    assert {(str(os.getpid()), "0"), (str(os.getpid()), "1")} <= final


def test_async_child_drops_a_lease_held_across_the_fork(tmp_path: Path) -> None:
    """An AsyncPool lease taken before the fork, given back in the child: neither pooled nor closed."""
    log = tmp_path / "closes.log"
    log.touch()
    numbers = iter(range(100))
    pool = AsyncPool(lambda: Logged(log, next(numbers)), max_size=3, max_lifetime=None, max_idle=None)

    async def lend() -> AsyncLease[Logged]:
        async with pool.acquire():  # a slot lent and given back on the fast paths first
            pass
        return await pool.acquire()

    held = asyncio.run(lend())
    assert held.value.number == 0

    async def in_child() -> None:
        await held.release()  # the release `async with` makes, on a lease from before the fork
        stats = pool.statistics()
        assert (stats.size, stats.idle, stats.in_use) == (0, 0, 0)
        async with pool.acquire() as mine:
            assert mine.number != 0  # a new object, made in the child
        await pool.close()

    run_in_child(lambda: asyncio.run(in_child()))
    closes = [line.split() for line in log.read_text().splitlines()]
    assert all(number != "0" for pid, number in closes)  # the child closed only its own
    asyncio.run(held.release())
    assert pool.statistics().idle == 1
    asyncio.run(pool.close())
    assert [str(os.getpid()), "0"] in [line.split() for line in log.read_text().splitlines()]


def test_sqlite_pool_keeps_working_in_parent_and_child(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    with ConnectionPool(sqlite3.connect, str(database), max_size=2, min_size=1) as pool:
        with pool.acquire() as conn:
            conn.execute("CREATE TABLE t (who TEXT)")
            conn.commit()

        def child() -> None:
            assert pool.statistics().size == 0
            with pool.acquire() as conn:
                conn.execute("INSERT INTO t VALUES ('child')")
                conn.commit()
            pool.close()

        run_in_child(child)
        with pool.acquire() as conn:
            conn.execute("INSERT INTO t VALUES ('parent')")
            conn.commit()
            rows = sorted(r[0] for r in conn.execute("SELECT who FROM t"))
        assert rows == ["child", "parent"]
