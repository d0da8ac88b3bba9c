"""reclaim.AsyncPool: the same behaviour awaited, and cancellation that loses nothing."""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import itertools
import logging
import re
import sys
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import pytest

from helpers import line_of, until
from pool_support import Factory
from reclaim import AsyncLease, AsyncPool, PoolClosed, PoolTimeout, _sites


class Thing:
    ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(Thing.ids)
        self.closes = 0
        self.alive = True

    async def close(self) -> None:
        await asyncio.sleep(0)
        self.closes += 1


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_async_with_and_await_forms_lend_and_return() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=2, name="a") as pool:
            async with pool.acquire() as first:
                assert isinstance(first, Thing)
            lease = await pool.acquire()
            assert lease.value is first
            await lease.release()
            stats = pool.statistics()
            assert (stats.size, stats.idle, stats.in_use, stats.acquired) == (1, 1, 0, 2)
        assert first.closes == 1
        with pytest.raises(PoolClosed):
            await pool.acquire()

    run(main())


def test_async_callables_are_awaited_and_sync_ones_called() -> None:
    calls: list[str] = []

    async def create() -> Thing:
        calls.append("create")
        return Thing()

    async def configure(thing: Thing) -> None:
        calls.append("configure")

    def reset(thing: Thing) -> None:
        calls.append("reset")

    async def check(thing: Thing) -> bool:
        calls.append("check")
        return thing.alive

    async def main() -> None:
        async with AsyncPool(create, configure=configure, reset=reset, check=check, check_after=0) as pool:
            async with pool.acquire():
                pass
            async with pool.acquire():
                pass

    run(main())
    assert calls == ["create", "configure", "reset", "check", "reset"]


def test_timeout_lists_holders_with_their_line() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, name="api") as pool:
            async with pool.acquire():  # async-holder
                with pytest.raises(PoolTimeout) as info:
                    await pool.acquire(timeout=0.01)
            line = line_of("async-holder", sys.modules[__name__])
            assert f"test_pool_async.py:{line}" in str(info.value)
            assert "'api'" in str(info.value)
            assert pool.statistics().timeouts == 1

    run(main())


def test_fair_hand_off_in_arrival_order() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            lease = await pool.acquire()
            served: list[int] = []

            async def wait(number: int) -> None:
                async with pool.acquire():
                    served.append(number)
                    await asyncio.sleep(0)

            tasks = []
            for number in range(5):
                tasks.append(asyncio.create_task(wait(number)))
                await until(lambda n=number: pool.statistics().waiting == n + 1, "queued")
            await lease.release()
            await asyncio.gather(*tasks)
            assert served == list(range(5))

    run(main())


def test_cancelled_while_waiting_loses_nothing() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            lease = await pool.acquire()
            task = asyncio.create_task(pool.acquire(timeout=30).__aenter__())
            await until(lambda: pool.statistics().waiting == 1, "queued")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.statistics().waiting == 0
            await lease.release()
            async with pool.acquire(timeout=0):
                pass

    run(main())


def test_cancelled_after_the_hand_off_passes_the_object_on() -> None:
    """The releaser gave the waiter the object, then the waiter was cancelled before it ran."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=0) as pool:
            lease = await pool.acquire()
            waiter = asyncio.create_task(pool.acquire(timeout=30).__aenter__())
            await until(lambda: pool.statistics().waiting == 1, "queued")
            await lease.release()  # handed to the waiter's future
            waiter.cancel()  # ...which is cancelled before it resumes
            with pytest.raises(asyncio.CancelledError):
                await waiter
            stats = pool.statistics()
            assert (stats.in_use, stats.idle, stats.size) == (0, 1, 1)
            async with pool.acquire(timeout=0):
                pass

    run(main())


def test_cancelled_while_holding_returns_the_slot() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            holding = asyncio.Event()

            async def hold() -> None:
                async with pool.acquire():
                    holding.set()
                    await asyncio.Event().wait()

            task = asyncio.create_task(hold())
            await holding.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stats = pool.statistics()
            assert (stats.in_use, stats.idle) == (0, 1)

    run(main())


def test_cancelled_mid_reset_discards_the_object() -> None:
    async def main() -> None:
        started = asyncio.Event()

        async def reset(thing: Thing) -> None:
            started.set()
            await asyncio.Event().wait()  # a ROLLBACK that never answers

        things: list[Thing] = []

        def create() -> Thing:
            things.append(Thing())
            return things[-1]

        async with AsyncPool(create, max_size=1, reset=reset) as pool:

            async def use() -> None:
                async with pool.acquire():
                    pass

            task = asyncio.create_task(use())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert pool.statistics().size == 0
            await until(lambda: things[0].closes == 1, "closed in the background")

    run(main())


def test_cancelled_mid_create_frees_the_slot() -> None:
    async def main() -> None:
        started = asyncio.Event()
        block = [True]

        async def create() -> Thing:
            if block[0]:
                started.set()
                await asyncio.Event().wait()
            return Thing()

        async with AsyncPool(create, max_size=1) as pool:
            task = asyncio.create_task(pool.acquire().__aenter__())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            stats = pool.statistics()
            assert (stats.size, stats.creating) == (0, 0)
            block[0] = False
            async with pool.acquire(timeout=1):
                pass

    run(main())


def test_wait_for_timeout_around_acquire_leaks_nothing() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            lease = await pool.acquire()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(pool.acquire(timeout=30).__aenter__(), 0.01)
            await lease.release()
            stats = pool.statistics()
            assert (stats.waiting, stats.in_use, stats.idle) == (0, 0, 1)

    run(main())


def test_failed_create_reaches_the_caller_and_frees_the_slot() -> None:
    async def main() -> None:
        fail = [True]

        async def create() -> Thing:
            if fail[0]:
                raise ConnectionRefusedError("down")
            return Thing()

        async with AsyncPool(create, max_size=1) as pool:
            with pytest.raises(ConnectionRefusedError):
                await pool.acquire()
            fail[0] = False
            async with pool.acquire(timeout=0):
                pass
            assert pool.statistics().failed_creates == 1

    run(main())


def test_is_broken_and_discard_close_the_object() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, is_broken=lambda t, e: isinstance(e, ConnectionResetError)) as pool:
            with pytest.raises(ConnectionResetError):
                async with pool.acquire() as thing:
                    raise ConnectionResetError
            lease = await pool.acquire()
            other = lease.value
            await lease.discard()
            await until(lambda: thing.closes == 1 and other.closes == 1, "closed")
            assert pool.statistics().discarded_broken == 2

    run(main())


def test_close_with_timeout_zero_and_nothing_out_logs_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        pool = AsyncPool(Thing)
        async with pool.acquire():
            pass
        await pool.close(timeout=0)

    run(main())
    assert "leases still out" not in caplog.text


def test_close_gives_up_on_an_async_close_that_never_ends(caplog: pytest.LogCaptureFixture) -> None:
    """close(timeout) bounds the objects' own closes too: one still running then is cancelled."""
    cancelled: list[Thing] = []

    async def close_forever(thing: Thing) -> None:
        try:
            await asyncio.Event().wait()  # a goodbye the network never answers
        except asyncio.CancelledError:
            cancelled.append(thing)
            raise

    async def main() -> None:
        pool = AsyncPool(Thing, close=close_forever)
        async with pool.acquire():
            pass
        await asyncio.wait_for(pool.close(timeout=0.1), 30)  # a hang fails here
        await until(lambda: cancelled, "the close to be cancelled")
        assert pool.statistics().closed == 1

    run(main())
    assert "1 objects still closing when close() gave up waiting" in caplog.text


def test_an_async_is_broken_is_refused_at_construction() -> None:
    async def is_broken(thing: Thing, exc: BaseException) -> bool:  # pragma: no cover - never called
        return False

    with pytest.raises(TypeError, match=r"^is_broken must be a plain function"):
        AsyncPool(Thing, is_broken=is_broken)


def test_resize_below_the_leased_count_closes_them_as_they_come_back() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=3, max_idle=None) as pool:
            leases = [await pool.acquire() for _ in range(3)]
            await pool.resize(max_size=1)
            for lease in leases:
                await lease.release()
            stats = pool.statistics()
            assert (stats.size, stats.idle) == (1, 1)
            async with pool.acquire(timeout=0):  # the one kept is lent again
                pass

    run(main())


def test_min_size_warm_and_leak_reported_in_the_background(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with AsyncPool(Thing, min_size=2, leak_timeout=0.01) as pool:
            await until(lambda: pool.statistics().idle == 2, "warm")
            lease = await pool.acquire()
            await until(lambda: pool.statistics().leaks_reported == 1, "leak logged")
            await lease.release()

    run(main())
    assert "leak_timeout" in caplog.text
    assert "came back" in caplog.text


def test_wait_returns_once_made_and_times_out_naming_the_last_failed_create() -> None:
    factory = Factory()
    factory.fail_next = 10**9  # the server is down

    async def main() -> None:
        async with AsyncPool(
            factory,
            min_size=2,
            max_lifetime=None,
            max_idle=None,
            reconnect_delay=0.001,
            reconnect_max_delay=0.01,
        ) as pool:
            with pytest.raises(PoolTimeout) as caught:
                await pool.wait(timeout=0.05)
            assert "0 of min_size=2" in str(caught.value) and "server down" in str(caught.value)
            assert isinstance(caught.value.__cause__, ConnectionRefusedError)
            factory.fail_next = 0  # back: the refill goes on
            await pool.wait(timeout=10)
            stats = pool.statistics()
            assert (stats.size, stats.idle) == (2, 2)
            assert not pool._refill_waiters
        with pytest.raises(PoolClosed):
            await pool.wait()

    run(main())


def test_wait_in_progress_ends_with_pool_closed_when_the_pool_closes() -> None:
    factory = Factory()
    factory.fail_next = 10**9

    async def main() -> None:
        pool = AsyncPool(factory, min_size=1, max_lifetime=None, max_idle=None)
        waiting = asyncio.ensure_future(pool.wait(timeout=30))
        await asyncio.sleep(0)  # one loop turn: it is waiting for a signal
        assert pool._refill_waiters
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiting

    run(main())


def test_an_object_lent_during_drain_is_closed_on_return_and_not_lent_again() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=2, max_lifetime=None, max_idle=None) as pool:
            async with pool.acquire() as old:
                await pool.drain()
            await until(lambda: old.closes == 1, "the drained object closed on return")
            async with pool.acquire() as new:
                assert new is not old
            stats = pool.statistics()
            assert (stats.size, stats.idle, stats.in_use, stats.acquired) == (1, 1, 0, 2)

    run(main())


def test_an_acquire_line_in_a_file_marked_framework_later_is_no_longer_the_site(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The site skips a file from when mark_framework() names it, even for code seen before."""
    helper = tmp_path / "lend_helper.py"
    helper.write_text(
        "async def hold(pool, out):\n"
        "    lease = pool.acquire()\n"
        "    async with lease:\n"
        "        out.append(repr(lease))\n"
    )
    spec = importlib.util.spec_from_file_location("lend_helper", helper)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    filename = module.hold.__code__.co_filename
    monkeypatch.setitem(_sites._framework_cache, filename, False)  # restored afterwards
    seen: list[str] = []

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            await module.hold(pool, seen)
            _sites.mark_framework(filename)
            await module.hold(pool, seen)  # hold-caller

    run(main())
    assert "lend_helper.py:3 in hold" in seen[0]
    line = line_of("hold-caller", sys.modules[__name__])
    assert f"test_pool_async.py:{line} in " in seen[1]


def test_drain_resize_and_close_wait_for_leases() -> None:
    async def main() -> None:
        pool = AsyncPool(Thing, max_size=2)
        held = await pool.acquire()
        async with pool.acquire() as idle_thing:
            pass
        await pool.drain()
        await until(lambda: idle_thing.closes == 1, "idle one closed")
        await pool.resize(max_size=4)
        assert pool.statistics().max_size == 4
        closer = asyncio.create_task(pool.close(timeout=30))
        await until(lambda: pool.closed, "closing")
        assert not closer.done()
        held_thing = held.value
        await held.release()
        await closer
        assert held_thing.closes == 1
        assert "closed" in repr(pool)

    run(main())


@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_collected_without_release_warns_with_its_line() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            lease: AsyncLease[Thing] | None = await pool.acquire()  # async-forgotten
            line = line_of("async-forgotten", sys.modules[__name__])
            with pytest.warns(ResourceWarning, match=rf"test_pool_async\.py:{line}"):
                del lease
                gc.collect()
            async with pool.acquire(timeout=1):
                pass
            assert pool.statistics().leases_lost == 1

    run(main())


def test_a_short_timeout_behind_a_long_one_still_times_out_first() -> None:
    """Waiters share one deadline timer: a later waiter with a nearer deadline re-arms it."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, name="t") as pool:
            held = await pool.acquire()
            lease = pool.acquire(timeout=30.0)
            patient = asyncio.ensure_future(lease.__aenter__())
            await until(lambda: pool.statistics().waiting == 1, "first waiter queued")
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0.01)
            assert not patient.done()
            assert pool.statistics().waiting == 1
            await held.release()
            assert isinstance(await patient, Thing)
            await lease.release()
            assert pool.statistics().timeouts == 1

    run(main())


def test_waiters_time_out_when_the_pool_moves_to_a_new_event_loop() -> None:
    """A timer armed on a finished loop does not stop a waiter on the next loop timing out."""
    pool = AsyncPool(Thing, max_size=1, name="loops", max_lifetime=None, max_idle=None)

    async def first() -> Any:
        lease = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire(timeout=0.05).__aenter__())
        # One turn of the loop: the waiter's task queues before this task resumes, and no
        # later turn runs before the cancel, so its 50 ms timer cannot fire first however
        # slow the machine (a polling wait could let it).
        await asyncio.sleep(0)
        assert pool.statistics().waiting == 1
        waiter.cancel()  # the loop ends with the waiters' timer still armed on it
        await asyncio.gather(waiter, return_exceptions=True)
        return lease

    async def second(lease: Any) -> None:
        stale = time.monotonic() + 0.06
        await until(lambda: time.monotonic() > stale, "the old timer's deadline passed")
        with pytest.raises(PoolTimeout):
            # A deadline later than the stale timer's: only a timer on this loop ends the wait.
            await asyncio.wait_for(pool.acquire(timeout=0.05).__aenter__(), 5.0)
        await lease.release()
        await pool.close()

    lease = run(first())
    run(second(lease))
    assert pool.statistics().timeouts == 1


# -- bounded barging: handoff_after ------------------------------------------------------


async def _holder_and_waiter(
    pool: AsyncPool[Thing],
) -> tuple[AsyncLease[Thing], asyncio.Task[AsyncLease[Thing]]]:
    """This task holds the only object; another waits for it (its result: the lease it got)."""
    lease = await pool.acquire()
    waiter = asyncio.create_task(_wait(pool))
    await until(lambda: pool.statistics().waiting == 1, "waiter queued")
    return lease, waiter


async def _wait(pool: AsyncPool[Thing]) -> AsyncLease[Thing]:
    return await pool.acquire(timeout=30)


async def _served(waiter: asyncio.Task[AsyncLease[Thing]]) -> Thing:
    """The waiter's object (its lease is given back)."""
    lease = await asyncio.wait_for(waiter, 5)
    value = lease.value
    await lease.release()
    return value


def test_a_returning_task_may_take_its_object_back_while_the_waiter_is_young() -> None:
    """No await between release and acquire: the object never leaves this task."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=60.0) as pool:
            lease, waiter = await _holder_and_waiter(pool)
            mine = lease.value
            await lease.release()
            again = await pool.acquire(timeout=0)  # the same step: taken back, no wait
            assert again.value is mine
            assert not waiter.done() and pool.statistics().waiting == 1
            await again.release()
            assert await _served(waiter) is mine  # at the loop's next turn: the waiter's

    run(main())


def test_an_object_the_returning_task_leaves_goes_to_the_waiter_at_the_next_turn() -> None:
    """A young waiter is not stranded behind an object kept for a task that did not come back."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=60.0) as pool:
            lease, waiter = await _holder_and_waiter(pool)
            mine = lease.value
            await lease.release()
            assert pool.statistics().idle == 1  # kept for this task, which does not take it
            assert await _served(waiter) is mine
            assert pool.statistics().waiting == 0

    run(main())


def test_a_waiter_older_than_handoff_after_is_handed_the_object() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=0.005) as pool:
            lease, waiter = await _holder_and_waiter(pool)
            oldest = pool._waiters[0]
            await until(lambda: time.monotonic() - oldest.since >= 0.005, "waiter older than handoff_after")
            await lease.release()
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0)  # handed to the waiter, not left idle
            await _served(waiter)

    run(main())


def test_handoff_after_zero_hands_every_returned_object_to_the_waiter() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=0) as pool:
            lease, waiter = await _holder_and_waiter(pool)
            await lease.release()
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0)
            await _served(waiter)

    run(main())


def test_a_task_that_keeps_taking_its_object_back_cannot_starve_a_waiter() -> None:
    """Once the waiter has waited handoff_after, the next release is its."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, handoff_after=0.002) as pool:
            lease, waiter = await _holder_and_waiter(pool)
            since = pool._waiters[0].since
            while True:
                await asyncio.sleep(0)  # work while holding it, yielding to the loop
                old = time.monotonic() - since >= 0.002  # read before the pool's own clock
                await lease.release()
                try:
                    lease = await pool.acquire(timeout=0)  # taken back in the same step?
                except PoolTimeout:
                    break  # no: it went to the waiter
                assert not old, "a waiter older than handoff_after was overtaken"
            await _served(waiter)
            assert pool.statistics().waiting == 0

    run(main())


# -- one pool, successive event loops -----------------------------------------------------


# The first loop ends with the pool open, so asyncio.run cancels the pool's maintenance task
# (and its timed wait), which the leak checker reports: that is what these tests exercise.
_MAINTENANCE_CUT = pytest.mark.reclaim_allow(kind="task", match="reclaim-pool-|Event.wait")


@_MAINTENANCE_CUT
def test_a_pool_used_in_one_event_loop_closes_in_the_next() -> None:
    """Its maintenance task belonged to the first loop, which asyncio.run closed."""
    pool = AsyncPool(Thing, max_size=2, name="two-loops")  # max_lifetime: a maintenance task

    async def use() -> None:
        async with pool.acquire() as thing:
            assert thing.alive

    run(use())
    run(pool.close())
    stats = pool.statistics()
    assert pool.closed and (stats.size, stats.created, stats.closed) == (0, 1, 1)


@_MAINTENANCE_CUT
def test_a_pool_keeps_its_minimum_in_the_next_event_loop() -> None:
    """The maintenance task is started again on the new loop and refills min_size there."""
    pool = AsyncPool(Thing, max_size=3, name="refill")

    async def first() -> None:
        await pool.resize(min_size=2)  # starts the maintenance task on this loop
        await until(lambda: pool.statistics().idle == 2, "min_size warm in the first loop")

    run(first())

    async def second() -> None:
        async with pool.acquire(timeout=5) as thing:
            discard = thing
        await pool.drain()  # every object replaced: the refill runs on this loop
        await until(lambda: pool.statistics().idle == 2, "min_size refilled in the second loop")
        assert discard.closes == 1
        await pool.close()

    run(second())


def _abandon_loop(loop: asyncio.AbstractEventLoop, main: Awaitable[Any]) -> Any:
    """Run *main* on *loop*, then close the loop with its other tasks still pending (no
    cancelling them, as asyncio.run would): they never run again."""
    try:
        return loop.run_until_complete(main)
    finally:
        loop.close()


def _forget(loop: asyncio.AbstractEventLoop) -> None:
    """Close the tasks a closed loop left pending: their coroutines run their cleanup (the
    waiter's leaves the queue), and none is reported destroyed pending or never awaited."""
    for task in asyncio.all_tasks(loop):
        task.get_coro().close()  # type: ignore[union-attr]
        task._log_destroy_pending = False  # type: ignore[attr-defined]


#: Tests that close a loop with its tasks pending, on purpose.
_ABANDONED = pytest.mark.reclaim_allow(kind="task")


@_ABANDONED
def test_a_release_skips_a_task_left_waiting_on_a_closed_loop() -> None:
    """The object goes to the next waiter or idle; before, the hand-over raised "Event loop is closed"."""
    pool = AsyncPool(Thing, max_size=1, name="dead-waiter", handoff_after=0, max_lifetime=None)

    async def first() -> tuple[AsyncLease[Thing], asyncio.Future[Any]]:
        lease = await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire().__aenter__())
        await asyncio.sleep(0)  # one turn: its task queues
        assert pool.statistics().waiting == 1
        return lease, waiting

    old_loop = asyncio.new_event_loop()
    lease, _waiting = _abandon_loop(old_loop, first())

    async def second() -> None:
        await lease.release()
        assert pool.statistics().waiting == 0
        async with pool.acquire(timeout=5) as thing:
            assert thing.alive
        await pool.close()

    run(second())
    _forget(old_loop)
    stats = pool.statistics()
    assert (stats.in_use, stats.waiting, stats.created, stats.closed) == (0, 0, 1, 1)


@_ABANDONED
def test_a_hand_over_left_pending_on_a_closed_loop_does_not_stop_the_next_ones() -> None:
    """A release that kept its object for a young waiter scheduled the hand-over on a loop that
    then closed; on the next loop, the same kind of release still reaches the waiter."""
    # Every waiter is young for an hour: a release always keeps its object and schedules a hand-over.
    pool = AsyncPool(Thing, max_size=1, name="dead-nudge", handoff_after=3600, max_lifetime=None)

    async def first() -> asyncio.Future[Any]:
        lease = await pool.acquire()
        waiting = asyncio.ensure_future(pool.acquire().__aenter__())
        await asyncio.sleep(0)  # one turn: its task queues
        asyncio.get_running_loop().stop()  # this turn is the loop's last: the hand-over never runs
        await lease.release()
        return waiting

    loop = asyncio.new_event_loop()
    try:
        task = loop.create_task(first())
        loop.run_forever()
        assert not task.result().done()
        assert pool.statistics().waiting == 1
    finally:
        loop.close()

    async def second() -> None:
        async with pool.acquire(timeout=5):
            patient = asyncio.ensure_future(_wait(pool))
            await asyncio.sleep(0)  # one turn: it queues (and the dead waiter is dropped)
            assert pool.statistics().waiting == 1
        # This task does not take it back: only the hand-over at the next turn serves the waiter
        # (before, the pending one on the closed loop stopped it being scheduled: a 5 s timeout).
        lease = await patient
        assert lease.value.alive
        await lease.release()
        await pool.close()

    run(second())
    _forget(loop)


@pytest.mark.parametrize("answer", ["raises", "false", "async-false", "async-raises"])
def test_a_failing_reset_discards_the_object(answer: str, caplog: pytest.LogCaptureFixture) -> None:
    """reset raising or answering False, sync or async: the object is closed, its slot freed."""
    caplog.set_level(logging.INFO, logger="reclaim.pool")

    async def async_reset(thing: Thing) -> bool:
        await asyncio.sleep(0)
        if answer == "async-raises":
            raise OSError("rollback failed")
        return False

    def reset(thing: Thing) -> Any:
        if answer == "raises":
            raise OSError("rollback failed")
        return False if answer == "false" else async_reset(thing)

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, reset=reset, max_lifetime=None, max_idle=None) as pool:
            async with pool.acquire() as first:
                pass
            await until(lambda: first.closes == 1, "the object closed")
            stats = pool.statistics()
            assert (stats.size, stats.idle, stats.discarded_broken) == (0, 0, 1)
            async with pool.acquire(timeout=1) as second:
                assert second is not first

    run(main())
    assert ("reset failed" in caplog.text) == answer.endswith("raises")


# -- argument checks of close() and resize() ------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (-1, ValueError, "timeout must be >= 0 seconds, got -1"),
        (float("inf"), ValueError, "timeout must be finite, got inf"),
        ("x", TypeError, "timeout must be a number of seconds or None (5 s), got str 'x'"),
    ],
)
def test_close_refuses_a_bad_timeout_before_closing_anything(
    timeout: object, error: type[Exception], message: str
) -> None:
    """As Pool.close(): refused with the acquire(timeout=) wording; the pool stays open and usable."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            async with pool.acquire() as thing:
                pass
            with pytest.raises(error, match=re.escape(message)):
                await pool.close(timeout=timeout)  # type: ignore[arg-type]
            assert not pool.closed and thing.closes == 0
            async with pool.acquire() as again:
                assert again is thing

    run(main())


@pytest.mark.parametrize(
    ("timeout", "error"), [(-1, ValueError), (float("nan"), ValueError), ("5", TypeError)]
)
def test_a_bad_per_call_timeout_is_rejected_with_an_object_idle(
    timeout: object, error: type[Exception]
) -> None:
    """As Pool.acquire(): refused when acquire() is called, also when an object is idle."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            async with pool.acquire():
                pass
            with pytest.raises(error, match=r"^timeout must be"):
                pool.acquire(timeout=timeout)  # type: ignore[arg-type]
            assert pool.statistics().in_use == 0

    run(main())


@pytest.mark.parametrize("max_size", [-1, 0])
def test_a_max_size_below_one_is_refused_with_one_message_at_construction_and_resize(max_size: int) -> None:
    """-1 and 0 both say max_size must be >= 1, whether passed to AsyncPool() or resize()."""
    message = f"max_size must be >= 1, got {max_size}"
    with pytest.raises(ValueError, match=re.escape(message)):
        AsyncPool(Thing, max_size=max_size)

    async def main() -> None:
        async with AsyncPool(Thing, max_size=2) as pool:
            with pytest.raises(ValueError, match=re.escape(message)):
                await pool.resize(max_size=max_size)
            assert pool.statistics().max_size == 2

    run(main())


# -- misuse says what to write instead ------------------------------------------------------


def test_with_on_an_async_lease_says_to_use_async_with() -> None:
    """A plain `with` fails before anything is acquired, naming `async with` and `await`."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, name="db") as pool:
            message = "pool 'db' is an AsyncPool: use `async with pool.acquire() as obj:`"
            with pytest.raises(TypeError, match=re.escape(message)) as raised, pool.acquire():  # type: ignore[attr-defined]
                pass
            assert "`lease = await pool.acquire()`" in str(raised.value)
            assert pool.statistics().in_use == 0
            async with pool.acquire() as thing:
                assert isinstance(thing, Thing)

    run(main())


def test_create_task_on_an_async_lease_says_it_is_awaitable_and_ensure_future_works() -> None:
    """asyncio's 'a coroutine was expected' shows the lease's repr, which says what works instead."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, name="db") as pool:
            with pytest.raises(TypeError, match="a coroutine was expected") as raised:
                task = asyncio.create_task(pool.acquire(timeout=5))  # type: ignore[arg-type]
                task.cancel()  # not reached: create_task refuses the lease
            assert "awaitable, not a coroutine (await it, or asyncio.ensure_future(pool.acquire())" in str(
                raised.value
            )
            lease = await asyncio.ensure_future(pool.acquire(timeout=5))
            assert isinstance(lease.value, Thing)
            await lease.release()

    run(main())


@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lost_lease_warning_is_filed_under_the_acquire_line_not_inside_reclaim() -> None:
    """As for Pool: the warning's own location is the awaiting line, not AsyncLease.__del__."""

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1) as pool:
            lease: AsyncLease[Thing] | None = await pool.acquire()  # async-lost-location
            line = line_of("async-lost-location", sys.modules[__name__])
            with pytest.warns(ResourceWarning, match="without release") as caught:
                del lease
                gc.collect()
            assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]

    run(main())


def test_an_interrupt_inside_is_broken_loses_no_slot() -> None:
    def is_broken(thing: Thing, exc: BaseException) -> bool:
        raise KeyboardInterrupt  # Ctrl-C while deciding

    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, is_broken=is_broken) as pool:
            with pytest.raises(KeyboardInterrupt):
                async with pool.acquire() as thing:
                    raise ConnectionResetError
            await until(lambda: thing.closes == 1, "the object closed")  # discarded, not lost
            stats = pool.statistics()
            assert (stats.size, stats.in_use, stats.discarded_broken) == (0, 0, 1)
            async with pool.acquire(timeout=0):
                pass

    run(main())


def test_a_resize_down_during_creates_shrinks_the_pool_once_they_come_back() -> None:
    async def main() -> None:
        gate = asyncio.Event()

        async def create() -> Thing:
            await gate.wait()
            return Thing()

        async with AsyncPool(create, max_size=3, max_lifetime=None, max_idle=None) as pool:
            creating = [asyncio.ensure_future(pool.acquire()) for _ in range(3)]
            await until(lambda: pool.statistics().creating == 3, "three creates under way")
            await pool.resize(max_size=1)
            gate.set()
            for lease in await asyncio.gather(*creating):
                await lease.release()
            stats = pool.statistics()
            assert (stats.size, stats.idle, stats.max_size) == (1, 1, 1)
            async with pool.acquire():
                assert pool.statistics().size == 1

    run(main())


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_lost_after_close_has_its_object_closed() -> None:
    async def main() -> None:
        pool = AsyncPool(Thing, max_size=1, max_lifetime=None, max_idle=None)
        lease = await pool.acquire()
        thing = lease.value
        await pool.close(timeout=0)
        del lease
        gc.collect()
        await until(lambda: thing.closes == 1, "the lost lease's object closed")

    run(main())


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_lost_while_a_task_waits_is_reclaimed_for_it_without_maintenance_options() -> None:
    async def main() -> None:
        async with AsyncPool(Thing, max_size=1, max_lifetime=None, max_idle=None) as pool:
            lease = await pool.acquire()
            waiting = asyncio.ensure_future(pool.acquire(timeout=30))
            await until(lambda: pool.statistics().waiting == 1, "the task queued")
            del lease
            gc.collect()
            got = await waiting
            assert pool.statistics().leases_lost == 1
            await got.release()

    run(main())
