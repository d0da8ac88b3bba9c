"""AsyncScope: AsyncExitStack's behaviour, with the same no-error-lost rules as Scope."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any

import pytest

from reclaim import AsyncScope, CleanupError, cleanup_errors


class AsyncRecorder:
    def __init__(self, log: list[Any], name: str, *, suppress: bool = False) -> None:
        self.log, self.name, self.suppress = log, name, suppress

    async def __aenter__(self) -> str:
        self.log.append(("aenter", self.name))
        return self.name

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        await asyncio.sleep(0)  # a real suspension point, not synchronisation
        self.log.append(("aexit", self.name, typ))
        return self.suppress


def test_async_and_sync_releases_run_lifo_together() -> None:
    log: list[Any] = []

    async def main() -> None:
        async def async_cb(tag: str) -> None:
            log.append(tag)

        async with AsyncScope() as scope:
            assert await scope.enter_async_context(AsyncRecorder(log, "a")) == "a"
            scope.callback(log.append, "sync cb")
            scope.push_async_callback(async_cb, "async cb")
            scope.push_async_exit(AsyncRecorder(log, "pushed"))

    asyncio.run(main())
    assert log == [("aenter", "a"), ("aexit", "pushed", None), "async cb", "sync cb", ("aexit", "a", None)]


def test_async_exit_can_suppress_the_body_error() -> None:
    log: list[Any] = []

    async def main() -> None:
        async with AsyncScope() as scope:
            await scope.enter_async_context(AsyncRecorder(log, "s", suppress=True))
            raise KeyError("x")

    asyncio.run(main())
    assert log[-1] == ("aexit", "s", KeyError)


def test_body_error_keeps_type_with_async_cleanup_failures_attached() -> None:
    async def fail(msg: str) -> None:
        raise OSError(msg)

    async def main() -> None:
        async with AsyncScope() as scope:
            scope.push_async_callback(fail, "one")
            scope.push_async_callback(fail, "two")
            raise ValueError("body")

    with pytest.raises(ValueError, match="body") as info:
        asyncio.run(main())
    assert [str(e) for e in cleanup_errors(info.value)] == ["two", "one"]


def test_several_async_cleanup_failures_raise_a_group() -> None:
    async def fail(msg: str) -> None:
        raise OSError(msg)

    async def main() -> None:
        async with AsyncScope() as scope:
            scope.push_async_callback(fail, "one")
            scope.push_async_callback(fail, "two")

    with pytest.raises(CleanupError) as info:
        asyncio.run(main())
    assert [str(e) for e in info.value.exceptions] == ["two", "one"]


def test_cancellation_inside_a_release_runs_the_rest_then_propagates() -> None:
    ran: list[str] = []

    async def cancelled_release() -> None:
        raise asyncio.CancelledError

    async def main() -> None:
        async with AsyncScope() as scope:
            scope.callback(ran.append, "earliest")
            scope.push_async_callback(cancelled_release)
            scope.callback(ran.append, "latest")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert ran == ["latest", "earliest"]


def test_a_task_cancelled_in_the_body_still_releases_everything() -> None:
    released: list[str] = []
    started = asyncio.Event

    async def main() -> None:
        ready = started()

        async def worker() -> None:
            async with AsyncScope() as scope:

                async def release() -> None:
                    released.append("async")

                scope.push_async_callback(release)
                scope.callback(released.append, "sync")
                ready.set()
                await asyncio.Event().wait()  # until cancelled

        task = asyncio.create_task(worker())
        await ready.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert released == ["sync", "async"]


def test_enter_async_context_rejects_a_sync_only_object() -> None:
    async def main() -> None:
        async with AsyncScope() as scope:
            await scope.enter_async_context(object())  # type: ignore[arg-type]

    with pytest.raises(TypeError, match="asynchronous context manager protocol"):
        asyncio.run(main())


def test_adopt_async_awaits_aclose() -> None:
    closed: list[str] = []

    class Conn:
        async def aclose(self) -> None:
            closed.append("conn")

    async def main() -> None:
        async with AsyncScope() as scope:
            scope.adopt_async(Conn())

    asyncio.run(main())
    assert closed == ["conn"]


def test_aclose_and_pop_all() -> None:
    log: list[str] = []

    @asynccontextmanager
    async def res() -> AsyncIterator[None]:
        yield
        log.append("released")

    async def main() -> None:
        scope = AsyncScope()
        await scope.enter_async_context(res())
        moved = scope.pop_all()
        await scope.aclose()
        assert log == []
        await moved.aclose()

    asyncio.run(main())
    assert log == ["released"]
