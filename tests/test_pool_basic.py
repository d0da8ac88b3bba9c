"""reclaim.Pool with one thread: options, leases, health, lifetimes, leaks, control, explanations."""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import sqlite3
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import reclaim
from _leakhelp import Watch, ignore_gc_warnings, leakwatch, line
from helpers import eventually, line_of
from pool_support import Factory, Thing, queued_waiter
from reclaim import Lease, Pool, PoolClosed, PoolStatistics, PoolTimeout, ResourceClosed

__all__ = ["leakwatch"]  # the fixture, imported for pytest

# -- options ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "argument"),
    [
        ({"max_size": 0}, ValueError, "max_size"),
        ({"max_size": 2.5}, TypeError, "max_size"),
        ({"min_size": -1}, ValueError, "min_size"),
        ({"min_size": 5, "max_size": 2}, ValueError, "min_size"),
        ({"acquire_timeout": float("inf")}, ValueError, "acquire_timeout"),
        ({"acquire_timeout": None}, TypeError, "acquire_timeout"),
        ({"acquire_timeout": -1}, ValueError, "acquire_timeout"),
        ({"max_lifetime": 0}, ValueError, "max_lifetime"),
        ({"max_idle": "10"}, TypeError, "max_idle"),
        ({"check": 3}, TypeError, "check"),
        ({"check_after": -0.1}, ValueError, "check_after"),
        ({"reset": "rollback"}, TypeError, "reset"),
        ({"configure": 1}, TypeError, "configure"),
        ({"is_broken": True}, TypeError, "is_broken"),
        ({"close": object()}, TypeError, "close"),
        ({"leak_timeout": 0}, ValueError, "leak_timeout"),
        ({"name": 3}, TypeError, "name"),
        ({"fair": 1}, TypeError, "fair"),
        ({"reconnect_delay": 2, "reconnect_max_delay": 1}, ValueError, "reconnect_max_delay"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_argument(
    factory: Factory, options: dict[str, Any], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error, match=argument):
        Pool(factory, **options)


def test_create_must_be_callable() -> None:
    with pytest.raises(TypeError, match="create"):
        Pool(42)  # type: ignore[arg-type]


@pytest.mark.parametrize("hook", ["create", "close", "check", "reset", "configure"])
def test_a_coroutine_function_is_refused_naming_the_hook_and_asyncpool(factory: Factory, hook: str) -> None:
    import functools

    async def make() -> Thing:  # pragma: no cover - never called
        return factory()

    async def use(thing: Thing) -> None:  # pragma: no cover - never called
        pass

    options: dict[str, Any] = {hook: functools.partial(make) if hook == "create" else use}
    create = options.pop("create", factory)
    with pytest.raises(TypeError, match=rf"^{hook} is a coroutine function .*use reclaim.AsyncPool"):
        Pool(create, **options)


def test_options_are_keyword_only(factory: Factory) -> None:
    with pytest.raises(TypeError):
        Pool(factory, None)  # type: ignore[misc]


def test_public_names_are_exported() -> None:
    assert reclaim.Pool is Pool
    for name in ("AsyncPool", "Lease", "AsyncLease", "PoolStatistics"):
        assert getattr(reclaim, name).__doc__


# -- leases -------------------------------------------------------------------


def test_with_block_lends_and_returns_the_same_object(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(max_size=2)
    with pool.acquire() as first:
        assert isinstance(first, Thing)
    with pool.acquire() as again:
        assert again is first
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use, stats.created, stats.acquired) == (1, 1, 0, 1, 2)


def test_lease_release_and_discard(make_pool: Callable[..., Pool[Thing]], factory: Factory) -> None:
    pool = make_pool(max_size=2)
    lease = pool.acquire()
    thing = lease.value
    lease.release()
    with pytest.raises(ResourceClosed):
        lease.release()
    with pytest.raises(ResourceClosed):
        _ = lease.value
    lease = pool.acquire()
    assert lease.value is thing
    lease.discard()
    assert thing.closes == 1
    assert pool.statistics().size == 0
    assert pool.statistics().discarded_broken == 1


def test_release_inside_the_with_block_is_not_repeated(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool()
    with pool.acquire() as thing:
        lease_count = pool.statistics().in_use
        assert lease_count == 1
    lease = pool.acquire()
    with lease:
        lease.release()
    assert pool.statistics().in_use == 0
    assert thing.closes == 0


def test_async_with_on_a_thread_pool_lease_says_so_and_gives_the_object_back(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    import asyncio

    pool = make_pool(max_size=1)

    async def main() -> None:
        async with pool.acquire():  # type: ignore[attr-defined]
            pass  # pragma: no cover - never entered

    with pytest.raises(TypeError, match=r"is a thread Pool: use `with pool.acquire\(\) as obj:`"):
        asyncio.run(main())
    assert pool.statistics().in_use == 0


def test_a_released_lease_cannot_be_entered_again(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(max_size=1)
    lease = pool.acquire()
    lease.release()
    other = pool.acquire()  # the only object is someone else's now
    with pytest.raises(ResourceClosed, match="was released; acquire a new lease"), lease:
        pass  # pragma: no cover - never entered
    assert pool.statistics().in_use == 1
    other.release()
    assert pool.statistics().idle == 1


def test_resize_below_the_leased_count_closes_them_as_they_come_back(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    pool = make_pool(max_size=3)
    leases = [pool.acquire() for _ in range(3)]
    pool.resize(max_size=1)
    for lease in leases:
        lease.release()
    stats = pool.statistics()
    assert (stats.size, stats.idle) == (1, 1)
    assert sum(thing.closes for thing in factory.made) == 2


def test_never_more_than_max_size_objects(make_pool: Callable[..., Pool[Thing]], factory: Factory) -> None:
    pool = make_pool(max_size=3)
    leases = [pool.acquire() for _ in range(3)]
    assert len({id(lease.value) for lease in leases}) == 3
    with pytest.raises(PoolTimeout):
        pool.acquire(timeout=0)
    assert len(factory.made) == 3
    for lease in leases:
        lease.release()


def test_timeout_names_the_pool_and_every_holder_with_its_line(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=2, name="orders-db")
    first = pool.acquire()  # holder-one
    second = pool.acquire()  # holder-two
    with pytest.raises(PoolTimeout) as info:
        pool.acquire(timeout=0.01)
    message = str(info.value)
    module = sys.modules[__name__]
    assert "'orders-db'" in message
    assert "2/2 in use" in message
    assert f"test_pool_basic.py:{line_of('holder-one', module)} in " in message
    assert f"test_pool_basic.py:{line_of('holder-two', module)} in " in message
    assert re.search(r"held [0-9.]+ m?s", message)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, reclaim.ReclaimError)
    assert pool.statistics().timeouts == 1
    first.release()
    second.release()


def test_negative_per_call_timeout_is_rejected(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(max_size=1)
    with pool.acquire(), pytest.raises(ValueError, match="timeout"):
        pool.acquire(timeout=-1)


@pytest.mark.parametrize(
    ("timeout", "error"), [(-1, ValueError), (float("nan"), ValueError), ("5", TypeError)]
)
def test_a_bad_per_call_timeout_is_rejected_with_an_object_idle(
    make_pool: Callable[..., Pool[Thing]], timeout: object, error: type[Exception]
) -> None:
    """Refused on the fast path too, not only once the pool is busy enough to make callers wait."""
    pool = make_pool(max_size=1)
    with pool.acquire():
        pass
    with pytest.raises(error, match=r"^timeout must be"):
        pool.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert pool.statistics().in_use == 0


# -- health ---------------------------------------------------------------------


def test_failed_create_frees_its_slot_and_reaches_the_caller(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    pool = make_pool(max_size=1)
    factory.fail_next = 1
    with pytest.raises(ConnectionRefusedError) as info:
        pool.acquire()
    assert any("creating" in note for note in info.value.__notes__)
    stats = pool.statistics()
    assert (stats.size, stats.creating, stats.failed_creates) == (0, 0, 1)
    with pool.acquire() as thing:  # not poisoned
        assert thing.alive


def test_failing_configure_closes_the_object_and_frees_the_slot(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    def configure(thing: Thing) -> None:
        raise RuntimeError("SET search_path failed")

    pool = make_pool(max_size=1, configure=configure)
    with pytest.raises(RuntimeError, match="search_path"):
        pool.acquire()
    assert factory.made[0].closes == 1
    assert pool.statistics().size == 0


def test_configure_runs_once_per_new_object(make_pool: Callable[..., Pool[Thing]]) -> None:
    configured: list[int] = []
    pool = make_pool(configure=lambda t: configured.append(t.id))
    for _ in range(3):
        with pool.acquire():
            pass
    assert len(configured) == 1


def test_failed_check_discards_and_falls_back_to_a_new_object(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    def check(thing: Thing) -> bool:
        return thing.alive

    pool = make_pool(check=check, check_after=0)
    with pool.acquire() as first:
        pass
    first.alive = False  # the server ended the session while it sat idle
    with pool.acquire() as second:
        assert second is not first
    assert first.closes == 1
    assert pool.statistics().discarded_by_check == 1


def test_check_is_skipped_for_an_object_used_within_check_after(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    checked: list[int] = []
    pool = make_pool(check=lambda t: checked.append(t.id), check_after=3600)
    for _ in range(5):
        with pool.acquire():
            pass
    assert checked == []


def test_one_dead_object_makes_older_ones_suspect(make_pool: Callable[..., Pool[Thing]]) -> None:
    checked: list[int] = []

    def check(thing: Thing) -> bool:
        checked.append(thing.id)
        return thing.alive

    pool = make_pool(
        max_size=3,
        check=check,
        check_after=3600,
        is_broken=lambda thing, exc: isinstance(exc, ConnectionResetError),
    )
    leases = [pool.acquire() for _ in range(3)]
    things = [lease.value for lease in leases]
    for lease in leases:
        lease.release()
    things[1].alive = False  # the server restarted: every idle session is gone
    with pytest.raises(ConnectionResetError), pool.acquire() as newest:
        assert newest is things[2]
        raise ConnectionResetError  # found dead while in use
    assert checked == []
    with pool.acquire() as survivor:  # older ones are checked despite check_after
        assert survivor is things[0]
    assert checked == [things[1].id, things[0].id]
    assert pool.statistics().discarded_by_check == 1


def test_is_broken_discards_on_matching_errors_only(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(is_broken=lambda thing, exc: isinstance(exc, ConnectionResetError))
    with pytest.raises(ValueError), pool.acquire() as kept:
        raise ValueError("a bad query: the connection is fine")
    with pytest.raises(ConnectionResetError), pool.acquire() as broken:
        assert broken is kept
        raise ConnectionResetError
    assert kept.closes == 1
    assert pool.statistics().discarded_broken == 1


def test_reset_runs_on_return_and_a_failing_reset_discards(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    resets: list[int] = []

    def reset(thing: Thing) -> None:
        resets.append(thing.id)
        if not thing.alive:
            raise OSError("rollback failed")

    pool = make_pool(reset=reset)
    with pool.acquire() as thing:
        pass
    assert resets == [thing.id]
    with pool.acquire() as same:
        same.alive = False
    assert same.closes == 1
    assert pool.statistics().size == 0


def test_default_close_uses_the_close_method_and_a_custom_close_wins(factory: Factory) -> None:
    closed: list[Thing] = []
    with Pool(factory, close=closed.append, max_lifetime=None, max_idle=None) as pool:
        lease = pool.acquire()
        lease.discard()
    assert closed == factory.made
    assert factory.made[0].closes == 0
    with Pool(lambda: 42, max_lifetime=None, max_idle=None) as plain:  # no close(): nothing to call
        with plain.acquire() as value:
            assert value == 42
        plain.drain()


# -- lifetimes -------------------------------------------------------------------


def test_max_lifetime_is_enforced_on_acquire_and_on_return(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    pool = make_pool(max_lifetime=1e-9)
    with pool.acquire() as first:
        pass  # already past its lifetime when it comes back: closed on return
    assert first.closes == 1
    with pool.acquire() as second:
        assert second is not first
    stats = pool.statistics()
    assert stats.expired == 2
    assert stats.size == 0


def test_lifetimes_are_jittered(factory: Factory) -> None:
    with Pool(factory, max_lifetime=1000.0, max_idle=None, max_size=20) as pool:
        leases = [pool.acquire() for _ in range(20)]
        spans = {round(s.expires - s.created, 6) for s in pool._slots}
        for lease in leases:
            lease.release()
    assert len(spans) > 1
    assert all(950.0 <= span <= 1000.0 for span in spans)


def test_min_size_is_kept_warm_in_the_background(factory: Factory) -> None:
    with Pool(factory, min_size=3, max_size=5, max_lifetime=None, max_idle=None) as pool:
        eventually(lambda: pool.statistics().idle == 3, "3 idle objects")
        with pool.acquire() as thing:
            thing.close()
        lease = pool.acquire()
        lease.discard()
        eventually(lambda: pool.statistics().size == 3, "refilled to min_size")


def test_max_idle_shrinks_toward_min_size(factory: Factory) -> None:
    with Pool(factory, min_size=1, max_size=4, max_idle=0.01, max_lifetime=None) as pool:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            lease.release()
        eventually(lambda: pool.statistics().size == 1, "shrunk to min_size")
        assert pool.statistics().idle_closed == 3


def test_objects_near_expiry_are_replaced_in_the_background(factory: Factory) -> None:
    with Pool(factory, min_size=2, max_size=4, max_lifetime=0.2, max_idle=None) as pool:
        eventually(lambda: len(factory.made) >= 4, "replacements made before expiry")
        eventually(lambda: pool.statistics().expired >= 2, "old ones retired")
        assert pool.statistics().size <= 4


def test_background_refill_retries_with_backoff(factory: Factory) -> None:
    factory.fail_next = 3
    with Pool(
        factory,
        min_size=1,
        max_lifetime=None,
        max_idle=None,
        reconnect_delay=0.001,
        reconnect_max_delay=0.004,
    ) as pool:
        eventually(lambda: pool.statistics().idle == 1, "reconnected")
        assert pool.statistics().failed_creates == 3


def test_wait_returns_once_min_size_objects_are_made(factory: Factory) -> None:
    with Pool(factory, min_size=3, max_size=5, max_lifetime=None, max_idle=None) as pool:
        pool.wait(timeout=10)
        stats = pool.statistics()
        assert (stats.size, stats.idle, stats.creating) == (3, 3, 0)
        pool.wait(timeout=0)  # already made: at once, whatever the timeout
    with Pool(factory, max_lifetime=None, max_idle=None) as pool:
        pool.wait(timeout=0)  # min_size 0: nothing to wait for
        assert pool.statistics().size == 0


def test_a_create_that_times_out_with_no_message_is_said_to_have_timed_out() -> None:
    """asyncpg's connect timeout is a bare TimeoutError(): the pool's note and wait()'s message
    say it timed out, rather than show an empty message."""

    def create() -> Thing:
        raise TimeoutError

    with Pool(create, max_size=1, reconnect_delay=0.001, reconnect_max_delay=0.01) as pool:
        with pytest.raises(TimeoutError) as info:
            pool.acquire()
        assert any(note.endswith("was creating an object (it timed out))") for note in info.value.__notes__)
        pool.resize(min_size=1)
        with pytest.raises(PoolTimeout, match=r"the last create failed: TimeoutError\(\) \(it timed out\)"):
            pool.wait(timeout=0.05)


def test_wait_times_out_naming_the_last_failed_create_and_the_pool_stays_usable(factory: Factory) -> None:
    factory.fail_next = 10**9  # the server is down
    with Pool(
        factory, min_size=2, max_lifetime=None, max_idle=None, reconnect_delay=0.001, reconnect_max_delay=0.01
    ) as pool:
        with pytest.raises(PoolTimeout) as caught:
            pool.wait(timeout=0.05)
        message = str(caught.value)
        assert "0 of min_size=2" in message and "server down" in message, message
        assert isinstance(caught.value.__cause__, ConnectionRefusedError)
        factory.fail_next = 0  # the server is back: the refill goes on, wait() succeeds
        pool.wait(timeout=10)
        assert pool.statistics().size == 2


def test_wait_on_a_closed_or_closing_pool_raises_pool_closed(factory: Factory) -> None:
    factory.fail_next = 10**9  # never filled: the wait lasts until the close
    pool = Pool(factory, min_size=1, max_lifetime=None, max_idle=None)
    outcome: list[BaseException] = []

    def waiting() -> None:
        try:
            pool.wait(timeout=30)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=waiting)
    waiter.start()
    pool.close()
    waiter.join(30)
    assert [type(exc) for exc in outcome] == [PoolClosed]
    with pytest.raises(PoolClosed):
        pool.wait()


@pytest.mark.parametrize(
    ("timeout", "error"), [("1", TypeError), (None, TypeError), (-1, ValueError), (float("inf"), ValueError)]
)
def test_wait_refuses_a_bad_timeout_naming_it(factory: Factory, timeout: Any, error: type[Exception]) -> None:
    with Pool(factory, max_lifetime=None, max_idle=None) as pool, pytest.raises(error, match="timeout"):
        pool.wait(timeout=timeout)


# -- leaks -----------------------------------------------------------------------


def test_a_long_held_lease_is_logged_once_and_again_when_it_comes_back(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reclaim.pool")
    with Pool(factory, leak_timeout=0.01, max_lifetime=None, max_idle=None, name="slow") as pool:
        lease = pool.acquire()  # long-holder
        eventually(lambda: pool.statistics().leaks_reported == 1, "leak reported")
        lease.release()
    line = line_of("long-holder", sys.modules[__name__])
    messages = [r.getMessage() for r in caplog.records if r.name == "reclaim.pool"]
    held = [m for m in messages if "leak_timeout" in m]
    back = [m for m in messages if "came back" in m]
    assert len(held) == 1
    assert len(back) == 1
    assert f"test_pool_basic.py:{line}" in held[0]
    assert f"test_pool_basic.py:{line}" in back[0]


@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_collected_without_release_warns_with_its_line_and_frees_the_slot(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    pool = make_pool(max_size=1)
    lease = pool.acquire()  # forgotten-lease
    line = line_of("forgotten-lease", sys.modules[__name__])
    with pytest.warns(ResourceWarning, match=rf"test_pool_basic\.py:{line}"):
        del lease
        gc.collect()
    with pool.acquire(timeout=1) as thing:  # the slot was reclaimed
        assert thing is not factory.made[0]
    stats = pool.statistics()
    assert stats.leases_lost == 1
    assert factory.made[0].closes == 1


def test_leases_are_reported_to_the_leak_tracker(make_pool: Callable[..., Pool[Thing]]) -> None:
    from reclaim import _track

    seen: list[tuple[str, object, str]] = []
    released: list[object] = []
    previous = (_track.on_acquire, _track.on_release)
    _track.install(lambda kind, obj, desc, site: seen.append((kind, obj, desc)), released.append)
    try:
        pool = make_pool(name="tracked")
        lease = pool.acquire()
        lease.release()
    finally:
        _track.install(*previous)
    assert seen == [("lease", lease, "lease of pool 'tracked'")]
    assert released == [lease]


# -- control ---------------------------------------------------------------------


def test_close_waits_for_leases_then_closes_everything(factory: Factory) -> None:
    import threading

    pool = Pool(factory, max_size=2, max_lifetime=None, max_idle=None)
    idle_one = pool.acquire()
    held = pool.acquire()
    idle_one.release()
    closer = threading.Thread(target=pool.close, kwargs={"timeout": 30})
    closer.start()
    eventually(lambda: pool.closed, "close started")
    with pytest.raises(PoolClosed):
        pool.acquire()
    eventually(lambda: factory.made[0].closes == 1, "idle object closed at once")
    assert closer.is_alive()
    held.release()
    closer.join()
    assert [t.closes for t in factory.made] == [1, 1]
    pool.close()  # twice is harmless
    assert "closed" in repr(pool)


def test_close_gives_up_after_its_timeout_and_closes_stragglers_on_return(
    factory: Factory, caplog: pytest.LogCaptureFixture
) -> None:
    pool = Pool(factory, max_lifetime=None, max_idle=None)
    held = pool.acquire()  # straggler
    pool.close(timeout=0)
    assert f"test_pool_basic.py:{line_of('straggler', sys.modules[__name__])}" in caplog.text
    assert factory.made[0].closes == 0
    held.release()
    assert factory.made[0].closes == 1


def test_waiters_are_woken_by_close(factory: Factory) -> None:
    import threading

    pool = Pool(factory, max_size=1, max_lifetime=None, max_idle=None)
    held = pool.acquire()
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            # Released, not dropped: when the waiter ran before close(), a dropped lease was
            # garbage-collected from an open pool, a leak the suite's own checker reported.
            with pool.acquire(timeout=30):
                pass
        except BaseException as exc:
            errors.append(exc)

    waiter = threading.Thread(target=wait)
    waiter.start()
    eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
    held.release()  # handed to the waiter, or closed if close came first
    pool.close(timeout=0)
    waiter.join()
    assert errors == [] or isinstance(errors[0], PoolClosed)


def test_drain_replaces_idle_now_and_leased_on_return(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    pool = make_pool(max_size=2)
    held = pool.acquire()
    with pool.acquire():
        pass
    idle_thing = factory.made[1]
    pool.drain()
    assert idle_thing.closes == 1
    assert held.value.closes == 0
    held_thing = held.value
    held.release()
    assert held_thing.closes == 1
    with pool.acquire() as fresh:
        assert fresh not in (idle_thing, held_thing)


def test_resize_grows_wakes_waiters_and_shrinks_idle(make_pool: Callable[..., Pool[Thing]]) -> None:
    import threading

    pool = make_pool(max_size=1)
    held = pool.acquire()
    got: list[Lease[Thing]] = []
    waiter = threading.Thread(target=lambda: got.append(pool.acquire(timeout=30)))
    waiter.start()
    eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
    pool.resize(max_size=3)  # the waiter may create now
    waiter.join()
    assert got[0].value is not held.value
    assert pool.statistics().max_size == 3
    with pytest.raises(ValueError, match="min_size"):
        pool.resize(min_size=5)
    with pytest.raises(ValueError, match="max_size"):
        pool.resize(max_size=0)
    held.release()
    pool.resize(max_size=1)  # the idle one goes; the other lease is still out
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use, stats.max_size) == (1, 0, 1, 1)
    got[0].release()
    assert pool.statistics().size == 1


def test_statistics_is_a_frozen_snapshot_and_repr_is_one_line(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(name="stats", max_size=4)
    with pool.acquire(), pool.acquire():
        stats = pool.statistics()
        text = repr(pool)
    assert isinstance(stats, PoolStatistics)
    assert (stats.name, stats.in_use, stats.size, stats.max_size) == ("stats", 2, 2, 4)
    with pytest.raises(AttributeError):
        stats.size = 3  # type: ignore[misc]
    assert "\n" not in text
    assert "'stats'" in text
    assert "in_use=2" in text
    after = pool.statistics()
    assert after.hold_max >= after.hold_p50 >= 0
    assert after.acquired == 2


@pytest.mark.reclaim_allow(kind="pool")  # dropped unclosed on purpose: the leak checker sees it too
def test_a_pool_collected_unclosed_warns(factory: Factory) -> None:
    pool = Pool(factory, max_lifetime=None, max_idle=None)
    with pool.acquire():
        pass
    with pytest.warns(ResourceWarning, match="unclosed"):
        del pool
        gc.collect()


def test_an_interrupt_during_reset_or_check_loses_no_slot(make_pool: Callable[..., Pool[Thing]]) -> None:
    interrupt = [False]

    def hook(thing: Thing) -> None:
        if interrupt[0]:
            interrupt[0] = False
            raise KeyboardInterrupt

    pool = make_pool(max_size=1, reset=hook, check=hook, check_after=0)
    with pytest.raises(KeyboardInterrupt), pool.acquire():
        interrupt[0] = True  # the reset on the way out is interrupted
    assert pool.statistics().size == 0  # discarded, not lost
    with pool.acquire():
        pass
    interrupt[0] = True  # now the check on the next acquire is interrupted
    with pytest.raises(KeyboardInterrupt):
        pool.acquire()
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use) == (0, 0, 0)
    with pool.acquire(timeout=0):
        pass


def test_an_interrupt_while_waiting_loses_no_object(make_pool: Callable[..., Pool[Thing]]) -> None:
    import signal

    pool = make_pool(max_size=1)
    held = pool.acquire()
    first = held.value

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(KeyboardInterrupt):
            pool.acquire(timeout=5)  # Ctrl-C while waiting
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert pool.statistics().waiting == 0  # out of the queue
    held.release()
    with pool.acquire(timeout=0) as thing:  # the object came back to the pool
        assert thing is first


def test_an_object_handed_over_as_an_interrupt_lands_goes_back_to_the_pool(
    make_pool: Callable[..., Pool[Thing]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import reclaim.pool._sync as sync

    pool = make_pool(max_size=1, handoff_after=0)
    held = pool.acquire()

    def released_then_interrupted(*args: object) -> None:
        held.release()  # delivered to the waiting caller...
        raise KeyboardInterrupt  # ...which is interrupted before it takes it

    monkeypatch.setattr(sync, "wait", released_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.acquire(timeout=0)
    monkeypatch.undo()
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (1, 1, 0, 0)
    with pool.acquire(timeout=0):
        pass


@pytest.mark.parametrize(
    ("timeout", "error"), [("1", TypeError), (True, TypeError), (float("nan"), ValueError)]
)
def test_a_bad_per_call_timeout_names_the_argument(
    make_pool: Callable[..., Pool[Thing]], timeout: object, error: type[Exception]
) -> None:
    pool = make_pool(max_size=1)
    with pool.acquire(), pytest.raises(error, match=r"^timeout must be"):
        pool.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert pool.statistics().waiting == 0


def test_an_infinite_per_call_timeout_waits_instead_of_overflowing(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1)
    held = pool.acquire()
    timer = threading.Timer(0.05, held.release)
    timer.start()
    with pool.acquire(timeout=float("inf")):
        pass
    timer.join()
    assert pool.statistics().waiting == 0


def test_a_lease_held_past_a_no_leaks_block_is_reported_with_its_line(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    from reclaim.leaks import no_leaks

    pool = make_pool(name="reported")
    with pool.acquire():  # warm: the pool's object is made outside the checked block
        pass
    with pytest.raises(reclaim.LeakError) as info, no_leaks():
        lease = pool.acquire()  # tracked-lease
    line = line_of("tracked-lease", sys.modules[__name__])
    assert f"test_pool_basic.py:{line}" in str(info.value)
    assert "reported" in str(info.value)
    lease.release()
    with no_leaks(), pool.acquire():
        pass


@ignore_gc_warnings
def test_an_unclosed_pool_with_a_create_of_the_users_is_one_leak_and_what_create_kept_is_its_own(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """The connection a lambda ``create`` returns is the pool's; a file it opened and kept is the user's."""
    kept: list[Any] = []

    def create() -> sqlite3.Connection:
        kept.append(open(tmp_path / "create.log", "a"))  # noqa: SIM115 - the user's own leak
        opened_at.append(line())
        return sqlite3.connect(":memory:")

    opened_at: list[int] = []
    pool = Pool(lambda: create(), max_size=2)
    made_at = line() - 1
    try:
        with pool.acquire() as conn:
            conn.execute("select 1")
        found = sorted(leakwatch.leaks(), key=lambda leak: leak.kind)
        assert [leak.kind for leak in found] == ["file", "pool"], [leak.headline() for leak in found]
        assert found[1].site is not None and found[1].site.lineno == made_at
        assert found[0].site is not None and found[0].site.lineno == opened_at[0] - 1
    finally:
        pool.close()
        for log in kept:
            log.close()
    assert leakwatch.leaks() == []


def test_an_unclosed_async_pool_with_a_create_of_the_users_is_one_leak(leakwatch: Watch) -> None:
    async def main() -> list[str]:
        pool = reclaim.AsyncPool(lambda: sqlite3.connect(":memory:"), max_size=2)
        try:
            async with pool.acquire() as conn:
                conn.execute("select 1")
            # asyncio.run's loop and task are open here too
            return [leak.kind for leak in leakwatch.leaks() if leak.kind not in ("eventloop", "task")]
        finally:
            await pool.close()

    assert asyncio.run(main()) == ["pool"]
    assert leakwatch.leaks() == []


def test_an_object_made_in_the_background_as_the_pool_closes_is_closed(factory: Factory) -> None:
    """close() between a background create and its hand-over: the new object is closed, not kept."""
    made = threading.Event()

    class ClosingAfterCreate(Pool[Thing]):
        # The window is a few bytecodes wide; the only way to land in it every time is to
        # close from inside it (no user callback runs there).
        def _create_slot(self) -> Any:
            slot = super()._create_slot()
            if threading.current_thread().name.startswith("reclaim-pool-"):
                self.close(timeout=0)
                made.set()
            return slot

    pool = ClosingAfterCreate(factory, min_size=1, max_lifetime=None, max_idle=None)
    assert made.wait(10.0)
    eventually(lambda: factory.made and factory.made[0].closes == 1, "the new object closed")
    stats = pool.statistics()
    assert (stats.size, stats.idle) == (0, 0)


# -- argument checks of close() and resize() ------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        (-1, ValueError, "timeout must be >= 0 seconds, got -1"),
        (float("nan"), ValueError, "timeout must be >= 0 seconds, got nan"),
        (float("inf"), ValueError, "timeout must be finite, got inf"),
        ("x", TypeError, "timeout must be a number of seconds or None (5 s), got str 'x'"),
        (True, TypeError, "timeout must be a number of seconds or None (5 s), got bool True"),
    ],
)
def test_close_refuses_a_bad_timeout_before_closing_anything(
    factory: Factory, timeout: object, error: type[Exception], message: str
) -> None:
    """A bad timeout is refused with the acquire(timeout=) wording, and the pool stays open and usable."""
    with Pool(factory, max_size=1) as pool:
        with pool.acquire() as thing:
            pass
        with pytest.raises(error, match=re.escape(message)):
            pool.close(timeout=timeout)  # type: ignore[arg-type]
        assert not pool.closed and thing.alive
        with pool.acquire() as again:
            assert again is thing


@pytest.mark.parametrize("max_size", [-1, 0])
def test_a_max_size_below_one_is_refused_with_one_message_at_construction_and_resize(
    factory: Factory, max_size: int
) -> None:
    """-1 and 0 both say max_size must be >= 1, whether passed to Pool() or resize()."""
    message = f"max_size must be >= 1, got {max_size}"
    with pytest.raises(ValueError, match=re.escape(message)):
        Pool(factory, max_size=max_size)
    with Pool(factory, max_size=2) as pool:
        with pytest.raises(ValueError, match=re.escape(message)):
            pool.resize(max_size=max_size)
        assert pool.statistics().max_size == 2


@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lost_lease_warning_is_filed_under_the_acquire_line_not_inside_reclaim(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    """The ResourceWarning's own location (what -W and filters show) is the user's acquire line."""
    pool = make_pool(max_size=1)
    lease = pool.acquire()  # lost-lease-location
    line = line_of("lost-lease-location", sys.modules[__name__])
    with pytest.warns(ResourceWarning, match="without release") as caught:
        del lease
        gc.collect()
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_an_interrupt_inside_is_broken_loses_no_slot(make_pool: Callable[..., Pool[Thing]]) -> None:
    def is_broken(thing: Thing, exc: BaseException) -> bool:
        raise KeyboardInterrupt  # Ctrl-C while deciding

    pool = make_pool(max_size=1, is_broken=is_broken)
    with pytest.raises(KeyboardInterrupt), pool.acquire() as thing:
        raise ConnectionResetError
    assert thing.closes == 1  # state unknown: discarded, not lost
    stats = pool.statistics()
    assert (stats.size, stats.in_use, stats.discarded_broken) == (0, 0, 1)
    with pool.acquire(timeout=0):
        pass


class _InterruptedAsTaken:
    """The pool's lock, with a Ctrl-C pending as it is taken.

    CPython runs a signal handler at the first check after a C call returns: with
    ``lock.acquire()`` that is the call itself, so KeyboardInterrupt is raised with the lock
    held and before any ``try``; with ``with lock:`` it is the first instruction of the
    block, whose ``__exit__`` releases the lock. Here that first check is the pool's test
    of its orphans deque.
    """

    def __init__(self, pool: Pool[Thing]) -> None:
        self._lock = threading.Lock()
        self.armed = True
        self.pending = False
        lock = self

        class Tripwire(deque):  # type: ignore[type-arg]
            def __bool__(self) -> bool:
                if lock.pending:
                    lock.pending = False
                    raise KeyboardInterrupt
                return len(self) > 0

        pool._orphans = Tripwire()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        got = self._lock.acquire(blocking, timeout)
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt  # the check right after the call
        return got

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        got = self._lock.acquire()
        if self.armed:
            self.armed = False
            self.pending = True  # the check at the block's first instruction
        return got

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_an_interrupt_as_the_pool_lock_is_taken_does_not_leave_it_held(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1)
    lock = _InterruptedAsTaken(pool)
    pool._lock = lock  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        pool.acquire()  # an empty pool: the slow path takes the lock
    assert not lock.locked()  # else every later acquire, release and close() deadlocks
    with pool.acquire(timeout=0):
        pass
    assert pool.statistics().size == 1


@ignore_gc_warnings
@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_lost_after_close_has_its_object_closed(make_pool: Callable[..., Pool[Thing]]) -> None:
    pool = make_pool(max_size=1)
    lease = pool.acquire()
    thing = lease.value
    pool.close(timeout=0)  # the lease is still out: its object is closed when it comes back...
    del lease  # ...or when the collector finds it (no maintenance thread is left)
    gc.collect()
    assert thing.closes == 1
    assert pool.statistics().leases_lost == 1


@ignore_gc_warnings
@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_a_lease_lost_while_a_caller_waits_is_reclaimed_for_it_without_maintenance_options(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1)  # no min_size, max_lifetime, max_idle or leak_timeout
    lease = pool.acquire()
    waiter, got = queued_waiter(pool)
    del lease
    gc.collect()
    waiter.join()
    assert len(got) == 1
    assert pool.statistics().leases_lost == 1


def test_close_racing_the_start_of_the_maintenance_thread(
    factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pool = Pool(factory, max_size=1)  # max_lifetime: the first create starts a maintenance thread
    errors: list[BaseException] = []
    original = threading.Thread

    class Thread(original):  # type: ignore[misc, valid-type]
        def start(self) -> None:
            if self.name.startswith("reclaim-pool"):  # published in pool._worker, not started yet

                def close() -> None:
                    try:
                        pool.close(timeout=0)
                    except BaseException as exc:
                        errors.append(exc)

                closer = original(target=close)
                closer.start()
                closer.join()
            super().start()

    monkeypatch.setattr(threading, "Thread", Thread)
    with pool.acquire():  # its first create starts the thread; close() runs meanwhile
        pass
    assert errors == []  # was: RuntimeError("cannot join thread before it is started")
    assert factory.made[0].closes == 1  # closed on return to the closed pool


class _InterruptedWhileWaiting:
    """The pool's lock, contended, with Ctrl-C arriving while a thread waits for it.

    A blocking ``lock.acquire()`` is interrupted by a signal: ``with lock:`` then raises
    KeyboardInterrupt without the lock. ``interrupt_in`` counts the ``with`` entries down
    to the interrupted one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.interrupt_in = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def __enter__(self) -> bool:
        if self.interrupt_in:
            self.interrupt_in -= 1
            if not self.interrupt_in:
                raise KeyboardInterrupt
        return self._lock.__enter__()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def test_an_interrupt_while_a_release_waits_for_the_lock_loses_no_object(
    make_pool: Callable[..., Pool[Thing]],
) -> None:
    pool = make_pool(max_size=1, handoff_after=0)  # the waiter sleeps until handed an object
    held = pool.acquire()
    first = held.value
    waiter, got = queued_waiter(pool)
    lock = _InterruptedWhileWaiting()
    pool._lock = lock  # type: ignore[assignment]
    lock.interrupt_in = 1
    with pytest.raises(KeyboardInterrupt):
        held.release()  # it waits for the lock to hand the object over: Ctrl-C
    waiter.join()
    assert got == [first]
    stats = pool.statistics()
    assert (stats.size, stats.idle, stats.in_use) == (1, 1, 0)


def test_an_interrupt_while_a_new_object_waits_for_the_lock_closes_it(
    make_pool: Callable[..., Pool[Thing]], factory: Factory
) -> None:
    lock = _InterruptedWhileWaiting()

    def create() -> Thing:
        thing = factory()
        if len(factory.made) == 1:
            lock.interrupt_in = 1  # Ctrl-C as the creator waits for the lock to register it
        return thing

    pool = make_pool(max_size=1)
    pool._create = create
    pool._lock = lock  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        pool.acquire()
    assert factory.made[0].closes == 1  # not leaked
    stats = pool.statistics()
    assert (stats.size, stats.creating) == (0, 0)  # its slot freed
    with pool.acquire(timeout=0) as thing:
        assert thing is factory.made[1]


@ignore_gc_warnings
@pytest.mark.reclaim_allow(kind="lease")  # the point of the test
def test_an_interrupt_closing_a_lost_leases_object_leaves_no_waiter_behind(
    make_pool: Callable[..., Pool[Thing]], factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def close(thing: Thing) -> None:
        thing.closes += 1
        if thing is factory.made[0]:
            raise KeyboardInterrupt  # Ctrl-C while the lost lease's object is closed

    pool = make_pool(max_size=2, handoff_after=0, close=close)
    monkeypatch.setattr(pool, "_ensure_worker", lambda: None)  # the next acquire reclaims it
    lost, held = pool.acquire(), pool.acquire()

    def other() -> None:
        with pool.acquire(timeout=30):
            pass

    waiter = threading.Thread(target=other)
    waiter.start()
    eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
    del lost
    gc.collect()
    with pytest.raises(KeyboardInterrupt):
        pool.acquire(timeout=30)  # reclaims the lost slot (for `other`), queues, closes: Ctrl-C
    waiter.join()
    held.release()
    stats = pool.statistics()
    assert (stats.waiting, stats.in_use) == (0, 0)
    assert stats.idle == stats.size == 2  # nothing delivered to the interrupted caller's waiter


def test_an_interrupted_young_waiter_passes_on_the_object_kept_for_it(
    make_pool: Callable[..., Pool[Thing]], monkeypatch: pytest.MonkeyPatch
) -> None:
    import reclaim.pool._sync as sync

    pool = make_pool(max_size=1, handoff_after=30.0)  # a long patience: releases keep objects idle
    held = pool.acquire()
    got: list[Thing] = []

    def second() -> None:
        with pool.acquire(timeout=30) as thing:
            got.append(thing)

    other = threading.Thread(target=second)

    def released_then_interrupted(*args: object) -> None:
        pool._hold_avg = 100.0  # holds are long now: the next waiter sleeps until handed an object
        other.start()
        eventually(lambda: pool.statistics().waiting == 2, "second waiter queued")
        held.release()  # the longest waiter (this one) is young: the object is kept idle for it
        raise KeyboardInterrupt  # ...and it gives up

    monkeypatch.setattr(sync, "wait", released_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        pool.acquire(timeout=30)
    monkeypatch.undo()
    assert pool.statistics().idle == 0  # handed on at once, not left idle while the other waits
    other.join()
    assert len(got) == 1
