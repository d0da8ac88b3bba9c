"""@reclaim.resource: contextmanager semantics, plus the release after a bare yield runs on every path."""

from __future__ import annotations

import asyncio
import gc
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import reclaim
from helpers import line_of
from reclaim import Scope, cleanup_errors


@reclaim.resource
def bare(log: list[str], value: int = 1) -> Iterator[int]:
    log.append("acquire")
    yield value
    log.append("release")


@reclaim.resource
def guarded(log: list[Any]) -> Iterator[str]:
    log.append("acquire")
    try:
        yield "guarded"
    except KeyError as exc:
        log.append(("handled", exc))  # handled: the exception is suppressed
    finally:
        log.append("release")


@reclaim.resource
def only_on_success(log: list[str]) -> Iterator[None]:
    try:
        yield
    except Exception:
        log.append("rolled back")
        raise
    else:
        log.append("committed")


def test_value_is_yielded_and_release_runs_on_success() -> None:
    log: list[str] = []
    with bare(log, 7) as value:
        assert value == 7
    assert log == ["acquire", "release"]


def test_release_after_a_bare_yield_runs_when_the_body_raises() -> None:
    """contextlib.contextmanager would skip the release here; a resource never does."""
    log: list[str] = []
    with pytest.raises(ValueError, match="body"), bare(log):
        raise ValueError("body")
    assert log == ["acquire", "release"]


def test_release_after_a_bare_yield_runs_on_keyboard_interrupt() -> None:
    log: list[str] = []
    with pytest.raises(KeyboardInterrupt), bare(log):
        raise KeyboardInterrupt
    assert log == ["acquire", "release"]


def test_a_failing_release_is_attached_to_the_body_error() -> None:
    @reclaim.resource
    def breaks() -> Iterator[None]:
        yield
        raise OSError("release failed")

    with pytest.raises(ValueError, match="body") as info, breaks():
        raise ValueError("body")
    (failure,) = cleanup_errors(info.value)
    assert isinstance(failure, OSError)


def test_exceptions_are_thrown_in_when_the_yield_is_guarded_and_may_be_suppressed() -> None:
    log: list[Any] = []
    error = KeyError("k")
    with guarded(log):
        raise error
    assert log == ["acquire", ("handled", error), "release"]


def test_guarded_yield_sees_the_exception_and_it_propagates_unchanged() -> None:
    log: list[Any] = []
    with pytest.raises(ValueError, match="v"), guarded(log):
        raise ValueError("v")
    assert log == ["acquire", "release"]


def test_try_else_runs_only_on_success() -> None:
    log: list[str] = []
    with only_on_success(log):
        pass
    with pytest.raises(RuntimeError), only_on_success(log):
        raise RuntimeError
    assert log == ["committed", "rolled back"]


def test_stop_iteration_from_the_body_propagates_as_itself() -> None:
    log: list[Any] = []
    with pytest.raises(StopIteration), guarded(log):
        raise StopIteration("from the body")


def test_instances_are_single_use_and_the_factory_makes_fresh_ones() -> None:
    log: list[str] = []
    res = bare(log)
    with res:
        pass
    with pytest.raises(RuntimeError, match="single-use"), res:
        pass
    with bare(log), bare(log):
        pass
    assert log.count("release") == 3


def test_generator_that_does_not_yield_or_yields_twice_is_an_error() -> None:
    @reclaim.resource
    def never() -> Iterator[None]:
        return
        yield

    @reclaim.resource
    def twice() -> Iterator[int]:
        yield 1
        yield 2

    with pytest.raises(RuntimeError, match="without yielding"), never():
        pass
    with pytest.raises(RuntimeError, match="more than once"), twice():
        pass


def test_decorating_a_plain_function_names_the_argument() -> None:
    def plain() -> None:
        pass

    with pytest.raises(TypeError, match=r"resource\(func\).*not a generator function"):
        reclaim.resource(plain)  # type: ignore[call-overload]


def test_resources_enter_a_scope_and_release_in_order() -> None:
    log: list[str] = []
    with Scope() as scope:
        scope.enter(bare(log, 1))
        scope.enter(bare(log, 2))
        assert len(scope.resources) == 2
    assert log == ["acquire", "acquire", "release", "release"]


def test_concurrent_use_from_threads_is_independent() -> None:
    log: list[str] = []
    barrier = threading.Barrier(4)

    def use() -> None:
        with bare(log):
            barrier.wait()

    threads = [threading.Thread(target=use) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert log.count("acquire") == log.count("release") == 4


@pytest.mark.reclaim_allow(kind="resource")  # leaks on purpose: entered, never exited
def test_an_entered_resource_never_exited_runs_its_finally_when_collected() -> None:
    log: list[Any] = []
    res = guarded(log)
    res.__enter__()
    del res
    gc.collect()
    assert log == ["acquire", "release"]


def test_entering_and_exiting_reports_to_the_tracker_seam() -> None:
    from reclaim import _track

    events: list[Any] = []
    previous = (_track.on_acquire, _track.on_release)
    _track.install(
        lambda kind, obj, desc, site: events.append((kind, desc, site[0][1])),
        lambda obj: events.append("released"),
    )
    try:
        with bare([]):  # seam-enter
            pass
    finally:
        _track.install(*previous)
    assert events == [("resource", "bare()", line_of("seam-enter", sys.modules[__name__])), "released"]


# -- async -----------------------------------------------------------------------------


@reclaim.resource
async def abare(log: list[str]) -> AsyncIterator[str]:
    log.append("acquire")
    await asyncio.sleep(0)
    yield "async value"
    await asyncio.sleep(0)
    log.append("release")


@reclaim.resource
async def aguarded(log: list[Any]) -> AsyncIterator[None]:
    try:
        yield
    except KeyError:
        log.append("handled")


def test_async_release_after_bare_yield_runs_when_the_body_raises() -> None:
    log: list[str] = []

    async def main() -> None:
        async with abare(log) as value:
            assert value == "async value"
            raise ValueError("body")

    with pytest.raises(ValueError, match="body"):
        asyncio.run(main())
    assert log == ["acquire", "release"]


def test_async_guarded_yield_can_suppress() -> None:
    log: list[Any] = []

    async def main() -> None:
        async with aguarded(log):
            raise KeyError

    asyncio.run(main())
    assert log == ["handled"]


def test_async_resource_release_runs_when_its_task_is_cancelled() -> None:
    log: list[str] = []

    async def main() -> None:
        entered = asyncio.Event()

        async def worker() -> None:
            async with abare(log):
                entered.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(worker())
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert log == ["acquire", "release"]
