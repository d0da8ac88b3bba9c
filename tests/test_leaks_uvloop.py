"""uvloop's loops: a clean program reports nothing, a loop never closed is one entry, tasks are tracked."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from _leakhelp import Watch, ignore_gc_warnings, leakwatch, line, reclaim_pytest_fails_one, reclaim_run_json

uvloop = pytest.importorskip("uvloop")

pytest_plugins = ["pytester"]

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

CLEAN = """\
    import asyncio, uvloop

    async def main():
        task = asyncio.create_task(asyncio.sleep(0))
        await task
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    uvloop.run(main())
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
    loop = uvloop.new_event_loop()
    loop.run_until_complete(main())
    loop.close()
"""

# Line 2 makes the loop in each program (the line of `loop = ...` in make() when dropped).
LEFT_OPEN = """\
    import asyncio, uvloop
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
"""

# A uvloop loop that ran is never freed (its libuv handles hold it): this one never runs, and
# uvloop closes none of its descriptors when it is freed.
DROPPED = """\
    import gc, uvloop
    def make():
        loop = uvloop.new_event_loop()
    make()
    gc.collect()
"""

# The task left pending is made at line 7.
PENDING_TASK = """\
    import asyncio, uvloop

    async def forever():
        await asyncio.Event().wait()

    async def main():
        asyncio.create_task(forever())
        await asyncio.sleep(0)

    uvloop.run(main())
"""


def test_clean_programs_on_uvloop_report_nothing(tmp_path: Path) -> None:
    """uvloop.run, a Runner with uvloop's factory, a loop closed by hand: libuv's descriptors are no leak."""
    report, stderr = reclaim_run_json(tmp_path, CLEAN)
    assert report["leaks"] == [], stderr


@pytest.mark.parametrize(
    ("source", "state"), [(LEFT_OPEN, "open"), (DROPPED, "collected")], ids=["left-open", "dropped"]
)
def test_uvloop_loop_never_closed_is_one_eventloop_entry_at_the_line_that_made_it(
    tmp_path: Path, source: str, state: str
) -> None:
    """Not its epoll, eventfd and pipe descriptors as untracked ones: one event loop, claiming them."""
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["counts"] == {"eventloop": 1}, stderr
    (leak,) = report["leaks"]
    assert leak["frames"][0]["line"] == (2 if state == "open" else 3), stderr
    assert leak["state"] == state
    assert leak["description"].startswith("uvloop.Loop (libuv, fds "), stderr
    assert leak["details"]["fds"], stderr


def test_pending_task_on_uvloop_is_reported_at_its_line(tmp_path: Path) -> None:
    """A task uvloop.run cancels at shutdown is a leak at its create_task line, as under asyncio.run."""
    report, stderr = reclaim_run_json(tmp_path, PENDING_TASK)
    assert report["counts"] == {"task": 1}, stderr
    (leak,) = report["leaks"]
    assert leak["frames"][0]["line"] == 7, stderr
    assert "forever()" in leak["description"]


def test_closed_uvloop_loop_leaves_nothing_behind(leakwatch: Watch) -> None:
    """Made, run and closed in the window: no event loop and no untracked descriptor reported."""
    loop = uvloop.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
    loop.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings
def test_task_left_pending_on_uvloop_loop_is_reported_and_released_once_done(leakwatch: Watch) -> None:
    """create_task on a uvloop loop records the task at its line; once it is done it is released."""

    async def waits(event: asyncio.Event) -> None:
        await event.wait()

    async def start() -> tuple[asyncio.Task[None], asyncio.Event]:
        event = asyncio.Event()
        return asyncio.get_running_loop().create_task(waits(event)), event  # made here

    made_at = line() - 2
    loop = uvloop.new_event_loop()
    try:
        task, event = loop.run_until_complete(start())
        leak = leakwatch.one("task")
        assert leak.frames[0].lineno == made_at
        assert "waits()" in leak.description
        event.set()
        loop.run_until_complete(task)
        assert leakwatch.leaks("task") == []
    finally:
        loop.close()
    del loop
    gc.collect()
    assert leakwatch.leaks() == []


def test_pytest_passes_tests_closing_their_uvloop_loops_and_fails_the_one_leaving_a_task(
    pytester: pytest.Pytester,
) -> None:
    """--reclaim: libuv's descriptors fail no test; a task left pending fails its test, at its line."""
    pytester.makepyfile(
        test_uv="""
        import asyncio
        import uvloop

        def test_run():
            uvloop.run(asyncio.sleep(0))

        def test_runner():
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(asyncio.sleep(0))

        def test_task_left():
            async def main():
                asyncio.create_task(asyncio.Event().wait())
                await asyncio.sleep(0)
            uvloop.run(main())
        """
    )
    reclaim_pytest_fails_one(pytester, 3, "test_task_left", "test_uv.py:13")
