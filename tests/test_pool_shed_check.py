"""Pool and AsyncPool: load shedding (max_waiting, PoolFull) and the on-demand check()."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import reclaim
from helpers import eventually, until
from pool_support import Factory, Thing
from reclaim import AsyncPool, Pool, PoolClosed, PoolFull


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def alive(thing: Thing) -> bool:
    return thing.alive


# -- max_waiting: options and the error ------------------------------------------------


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError), ("2", TypeError)]
)
@pytest.mark.parametrize("cls", [Pool, AsyncPool])
def test_bad_max_waiting_fails_at_construction_naming_it(
    factory: Factory, cls: type[Any], value: object, error: type[Exception]
) -> None:
    with pytest.raises(error, match="max_waiting"):
        cls(factory, max_waiting=value)


def test_pool_full_is_a_reclaim_error_and_a_runtime_error() -> None:
    assert reclaim.PoolFull is PoolFull
    assert issubclass(PoolFull, reclaim.ReclaimError)
    assert issubclass(PoolFull, RuntimeError)


# -- max_waiting: Pool ------------------------------------------------------------------


def test_max_waiting_zero_refuses_at_once_when_every_object_is_out(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1, max_waiting=0, name="shed", acquire_timeout=60)
    with pool.acquire(), pytest.raises(PoolFull) as caught:
        pool.acquire()  # would wait 60 s without max_waiting
    message = str(caught.value)
    assert "'shed'" in message
    assert "max_waiting=0" in message
    assert "1/1 in use" in message
    assert "raise max_waiting or max_size" in message
    stats = pool.statistics()
    assert (stats.rejected, stats.timeouts, stats.waiting) == (1, 0, 0)
    with pool.acquire():  # the pool still works
        pass


def test_max_waiting_refuses_only_beyond_the_queued_callers(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1, max_waiting=1, acquire_timeout=60)
    got: list[Thing] = []
    held = pool.acquire()

    def waiter() -> None:
        with pool.acquire() as thing:
            got.append(thing)

    thread = threading.Thread(target=waiter)
    thread.start()
    eventually(lambda: pool.statistics().waiting == 1, "the first caller to queue up")
    with pytest.raises(PoolFull, match="1 other caller already waiting"):
        pool.acquire()
    first = held.value
    held.release()
    thread.join(30)
    assert got == [first]
    assert pool.statistics().rejected == 1


def test_without_max_waiting_callers_queue(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(max_size=1, acquire_timeout=60)
    held = pool.acquire()
    done = []
    threads = [threading.Thread(target=lambda: done.append(pool.acquire().release())) for _ in range(3)]
    for thread in threads:
        thread.start()
    eventually(lambda: pool.statistics().waiting == 3, "three queued callers")
    held.release()
    for thread in threads:
        thread.join(30)
    assert len(done) == 3
    assert pool.statistics().rejected == 0


# -- check(): Pool ----------------------------------------------------------------------


def test_check_discards_dead_idle_objects_and_leaves_leases_alone(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    checked: list[int] = []

    def check(thing: Thing) -> bool:
        checked.append(thing.id)
        return thing.alive

    pool = make_pool(max_size=4, check=check, check_after=3600)
    leases = [pool.acquire() for _ in range(4)]
    things = [lease.value for lease in leases]
    for lease in leases[:3]:
        lease.release()
    things[0].alive = False
    things[3].alive = False  # leased: not checked now
    assert pool.check() == 1
    assert sorted(checked) == sorted(t.id for t in things[:3])
    assert things[0].closes == 1
    assert things[3].closes == 0
    stats = pool.statistics()
    assert (stats.idle, stats.in_use, stats.discarded_by_check) == (2, 1, 1)
    leases[3].release()


def test_check_counts_a_raising_check_as_a_failure(make_pool: Callable[..., Pool[Thing]]) -> None:
    def check(thing: Thing) -> None:
        raise ConnectionResetError("gone")

    pool = make_pool(check=check)
    with pool.acquire() as thing:
        pass
    assert pool.check() == 1
    assert thing.closes == 1
    assert pool.statistics().idle == 0


def test_check_refills_toward_min_size(make_pool: Callable[..., Pool[Thing]], factory: Factory) -> None:
    pool = make_pool(min_size=2, check=alive)
    eventually(lambda: pool.statistics().idle == 2, "min_size filled")
    for thing in factory.made:
        thing.alive = False
    assert pool.check() == 2
    eventually(lambda: pool.statistics().idle == 2, "min_size refilled after the check")
    assert len(factory.made) == 4


def test_no_borrower_gets_an_object_while_it_is_checked(make_pool: Callable[..., Pool[Thing]]) -> None:
    in_check = threading.Event()
    go = threading.Event()
    checking = [False]

    def check(thing: Thing) -> bool:
        checking[0] = True
        in_check.set()
        go.wait(30)
        checking[0] = False
        return True

    pool = make_pool(max_size=1, check=check, check_after=3600, acquire_timeout=60)
    with pool.acquire() as first:
        pass
    checker = threading.Thread(target=pool.check)
    checker.start()
    assert in_check.wait(30)
    seen: list[tuple[Thing, bool]] = []

    def borrow() -> None:
        with pool.acquire() as thing:
            seen.append((thing, checking[0]))

    borrower = threading.Thread(target=borrow)
    borrower.start()
    eventually(lambda: pool.statistics().waiting == 1, "the borrower waits for the checked object")
    go.set()
    checker.join(30)
    borrower.join(30)
    assert seen == [(first, False)]


def test_check_retires_objects_drained_meanwhile_without_checking_them(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    in_check = threading.Event()
    go = threading.Event()
    checked: list[int] = []

    def check(thing: Thing) -> bool:
        checked.append(thing.id)
        in_check.set()
        go.wait(30)
        return True

    pool = make_pool(max_size=2, check=check, check_after=3600)
    leases = [pool.acquire() for _ in range(2)]
    things = [lease.value for lease in leases]
    for lease in leases:
        lease.release()
    failed: list[int] = []
    checker = threading.Thread(target=lambda: failed.append(pool.check()))
    checker.start()
    assert in_check.wait(30)
    pool.drain()  # both are out for the check: retired when they come back
    go.set()
    checker.join(30)
    assert failed == [0]
    assert len(checked) == 1  # the second one was already stale: not checked
    assert [t.closes for t in things] == [1, 1]
    assert pool.statistics().size == 0


def test_check_needs_the_check_option_and_an_open_pool(make_pool: Callable[..., Pool[Thing]]) -> None:
    with pytest.raises(ValueError, match="check="):
        make_pool().check()
    pool = make_pool(check=alive)
    pool.close()
    with pytest.raises(PoolClosed):
        pool.check()


# -- AsyncPool --------------------------------------------------------------------------


def test_async_max_waiting_refuses_beyond_the_queued_tasks(factory: Factory) -> None:
    async def main() -> None:
        async with AsyncPool(factory, max_size=1, max_waiting=1, acquire_timeout=60, name="ash") as pool:
            held = await pool.acquire()
            got: list[Thing] = []

            async def waiter() -> None:
                async with pool.acquire() as thing:
                    got.append(thing)

            task = asyncio.create_task(waiter())
            await until(lambda: pool.statistics().waiting == 1, "the first task to queue up")
            with pytest.raises(PoolFull, match=r"'ash'.*max_waiting=1.*1/1 in use"):
                await pool.acquire()
            first = held.value
            await held.release()
            await task
            assert got == [first]
            stats = pool.statistics()
            assert (stats.rejected, stats.timeouts) == (1, 0)

    run(main())


def test_async_max_waiting_zero_never_waits(factory: Factory) -> None:
    async def main() -> None:
        async with AsyncPool(factory, max_size=1, max_waiting=0, acquire_timeout=60) as pool:
            async with pool.acquire():
                with pytest.raises(PoolFull):
                    await pool.acquire()
            async with pool.acquire():
                pass
            assert pool.statistics().rejected == 1

    run(main())


def test_async_check_discards_dead_objects_and_refills(factory: Factory) -> None:
    async def check(thing: Thing) -> bool:
        await asyncio.sleep(0)
        return thing.alive

    async def main() -> None:
        async with AsyncPool(factory, min_size=2, max_size=3, check=check, check_after=3600) as pool:
            await until(lambda: pool.statistics().idle == 2, "min_size filled")
            held = await pool.acquire()
            dead = [t for t in factory.made if t is not held.value]
            assert len(dead) == 1
            dead[0].alive = False
            held.value.alive = False  # leased: not checked now
            assert await pool.check() == 1
            assert dead[0].closes == 1
            # the lease counts toward min_size: one new object makes it up
            await until(lambda: pool.statistics().size == 2, "min_size refilled after the check")
            assert len(factory.made) == 3
            assert held.value.closes == 0
            assert pool.statistics().discarded_by_check == 1
            await held.release()

    run(main())


def test_async_no_task_gets_an_object_while_it_is_checked(factory: Factory) -> None:
    async def main() -> None:
        go = asyncio.Event()
        checking = [False]

        async def check(thing: Thing) -> bool:
            checking[0] = True
            await go.wait()
            checking[0] = False
            return True

        async with AsyncPool(factory, max_size=1, check=check, check_after=3600) as pool:
            async with pool.acquire() as first:
                pass
            checker = asyncio.create_task(pool.check())
            await until(lambda: checking[0], "the check to start")
            seen: list[tuple[Thing, bool]] = []

            async def borrow() -> None:
                async with pool.acquire() as thing:
                    seen.append((thing, checking[0]))

            borrower = asyncio.create_task(borrow())
            await until(lambda: pool.statistics().waiting == 1, "the borrower waits")
            go.set()
            assert await checker == 0
            await borrower
            assert seen == [(first, False)]

    run(main())


def test_async_check_cancelled_midway_loses_no_object(factory: Factory) -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def check(thing: Thing) -> bool:
            started.set()
            await asyncio.Event().wait()  # hangs until cancelled
            return True

        async with AsyncPool(factory, max_size=2, check=check, check_after=3600) as pool:
            leases = [await pool.acquire() for _ in range(2)]
            for lease in leases:
                await lease.release()
            checker = asyncio.create_task(pool.check())
            await started.wait()
            checker.cancel()
            with pytest.raises(asyncio.CancelledError):
                await checker
            stats = pool.statistics()
            # the one interrupted mid-check is discarded (state unknown), the other is back
            assert (stats.size, stats.idle, stats.discarded_broken) == (1, 1, 1)

    run(main())


def test_async_check_needs_the_check_option(factory: Factory) -> None:
    async def main() -> None:
        async with AsyncPool(factory) as pool:
            with pytest.raises(ValueError, match="check="):
                await pool.check()

    run(main())
