"""APScheduler: a scheduler never shut down is one entry at the line that started it, holding
its thread, its executors and its tasks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line, reclaim_pytest

pytest.importorskip("apscheduler")
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]


def until(condition: Callable[[], bool]) -> None:
    """Poll *condition* until it holds (failing after 30 s)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)  # a poll's pace, not a wait for something to happen


async def shut(scheduler: AsyncIOScheduler) -> None:
    """Shut *scheduler* down: an ``AsyncIOScheduler`` does it in a callback on its loop."""
    scheduler.shutdown()
    while scheduler.running:
        await asyncio.sleep(0)  # one turn of the loop: not a wait for time to pass


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_background_scheduler_never_shut_down_is_one_entry_holding_its_thread_and_pool(
    leakwatch: Watch,
) -> None:
    """Its main-loop thread and the thread pool its job ran on were two entries at APScheduler's
    lines, neither naming a scheduler: one now, at the line that started it, holding both."""
    ran = threading.Event()
    scheduler = BackgroundScheduler()
    scheduler.add_job(ran.set)
    scheduler.start()
    started = line() - 1
    try:
        assert ran.wait(timeout=30), "the job never ran"
        # Its thread is in the pool's set once submit_job() returned, which the scheduler's
        # thread follows by removing the job (a one-off): shut down before that, it would fail.
        until(lambda: not scheduler.get_jobs())
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("apscheduler", "open")
        assert_site(leak, started)
        assert leak.description == "BackgroundScheduler not shut down (shutdown())"
        assert leak.details["class"] == "apscheduler.schedulers.background.BackgroundScheduler"
        assert leak.details["executors"] == ["default"]
        held = sorted((part.kind, part.details.get("target") or part.details["class"]) for part in leak.holds)
        assert held == [
            ("thread", "BlockingScheduler._main_loop"),
            ("thread", "concurrent.futures.ThreadPoolExecutor"),
        ]
    finally:
        scheduler.shutdown()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_out_of_its_job_stores_engine_is_the_schedulers(leakwatch: Watch, tmp_path: Any) -> None:
    """A ``SQLAlchemyJobStore`` checks a connection out for each call, on the scheduler's thread:
    a check that came while one was out reported it as "never given back" beside the scheduler,
    and again at the session's end (five runs in five). Checked out of a store's engine, it is
    the scheduler's, listed under it (held out here, as the race would have it)."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    scheduler = BackgroundScheduler(
        jobstores={"default": {"type": "sqlalchemy", "url": f"sqlite:///{tmp_path}/j.db"}}
    )
    scheduler.start()
    started = line() - 1
    engine = scheduler._jobstores["default"].engine
    out = engine.connect()
    try:
        out.execute(sqlalchemy.text("select 1"))
        # Looked at while the scheduler's thread is between two calls of its store: a connection
        # that thread was still making (sqlite3's, out of the dialect's connect(), not in the pool
        # yet) was a second leak beside the scheduler, in two fresh clones' 3.12 runs of three.
        with scheduler._jobstores_lock:
            found = leakwatch.leaks()
        assert len(found) == 1, [leak.headline() for leak in found]
        [leak] = found
        assert (leak.kind, leak.state) == ("apscheduler", "open")
        assert_site(leak, started)
        found = [held for part in leak.holds for held in (part, *part.holds)]
        # The one checked out, beside its engine's idle one (or the scheduler's thread's, out too).
        sqlite = [held.details.get("checked_out_of") for held in found if held.kind == "sqlite3"]
        assert "SQLAlchemy" in sqlite
    finally:
        out.close()
        scheduler.shutdown()
        engine.dispose()  # its store's shutdown() disposed it, and the scheduler's thread may connect again
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_asyncio_scheduler_never_shut_down_holds_its_job_task(leakwatch: Watch) -> None:
    """The task a coroutine job runs in was an entry of its own made in ``AsyncIOScheduler.wakeup``
    (a timer callback: no line of the program's): it is under the scheduler, at its start line."""
    loop = asyncio.new_event_loop()
    release = asyncio.Event()
    running = asyncio.Event()

    async def job() -> None:
        running.set()
        await release.wait()

    async def main() -> None:
        scheduler = AsyncIOScheduler()
        scheduler.add_job(job)
        scheduler.start()
        started = line() - 1
        try:
            await running.wait()
            [leak] = leakwatch.leaks("apscheduler")
            assert_site(leak, started)
            assert leak.description == "AsyncIOScheduler not shut down (shutdown())"
            [task] = leak.holds
            assert (task.kind, task.details["coroutine"]) == ("task", "run_coroutine_job")
            # Not an entry of its own too: the only other task is the one running main().
            tasks = [found.details["coroutine"].rpartition(".")[2] for found in leakwatch.leaks("task")]
            assert tasks == ["main"]
        finally:
            release.set()
            await shut(scheduler)
        assert leakwatch.leaks("apscheduler") == []

    try:
        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_blocking_scheduler_run_in_a_thread_holds_that_thread(leakwatch: Watch) -> None:
    """A thread the program starts to run a ``BlockingScheduler`` was an entry of its own beside
    the scheduler's: it is listed under the scheduler, which stops it (``shutdown()``)."""
    ran = threading.Event()
    scheduler = BlockingScheduler()
    scheduler.add_job(ran.set)
    runner = threading.Thread(target=scheduler.start)
    runner.start()
    started = line() - 1
    try:
        assert ran.wait(timeout=30), "the job never ran"
        until(lambda: not scheduler.get_jobs())  # see the BackgroundScheduler's test
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.description) == (
            "apscheduler",
            "BlockingScheduler not shut down (shutdown())",
        )
        assert_site(leak, started)
        held = sorted((part.kind, part.details.get("target") or part.details["class"]) for part in leak.holds)
        assert held == [
            ("thread", "BlockingScheduler.start"),
            ("thread", "concurrent.futures.ThreadPoolExecutor"),
        ]
    finally:
        scheduler.shutdown()
        runner.join(timeout=30)
    assert not runner.is_alive()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_gevent_scheduler_never_shut_down_holds_its_greenlet(leakwatch: Watch) -> None:
    """Its main loop's greenlet was a task made at APScheduler's line (``GeventScheduler.start``):
    it is under the scheduler now, at the line that started it."""
    event = pytest.importorskip("gevent.event")
    from apscheduler.schedulers.gevent import GeventScheduler

    ran = event.Event()
    scheduler = GeventScheduler()
    scheduler.add_job(lambda: ran.set())  # APScheduler cannot name the method of a C class
    scheduler.start()
    started = line() - 1
    try:
        assert ran.wait(timeout=30), "the job never ran"
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.description) == ("apscheduler", "GeventScheduler not shut down (shutdown())")
        assert_site(leak, started)
        [greenlet] = leak.holds
        assert (greenlet.kind, greenlet.details["function"]) == ("task", "BlockingScheduler._main_loop")
    finally:
        scheduler.shutdown()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_asyncio_scheduler_dropped_with_its_loop_holds_the_job_task_the_shutdown_cancelled(
    leakwatch: Watch,
) -> None:
    """A scheduler made in the coroutine ``asyncio.run()`` runs and never shut down: the loop's
    shutdown cancels its job's task, whose done callback takes it out of the executor, and the
    scheduler dies with the loop. The task was an entry of its own at the ``asyncio.run()`` line;
    it is under its scheduler now, at the line that started it."""
    started = 0

    async def job() -> None:
        await asyncio.Event().wait()  # nobody sets it: pending when the loop shuts down

    async def main() -> None:
        nonlocal started
        scheduler = AsyncIOScheduler()
        scheduler.add_job(job)
        scheduler.start()
        started = line() - 1
        while not scheduler._executors["default"]._pending_futures:
            await asyncio.sleep(0)  # one turn of the loop, until the job's task is made

    asyncio.run(main())
    # Alive still, here: the error APScheduler logged for the cancelled job keeps its traceback,
    # whose frames reach the job and so its scheduler (once dropped: "collected", as under pytest).
    [leak] = leakwatch.leaks()
    assert leak.kind == "apscheduler"
    assert_site(leak, started)
    [task] = leak.holds
    assert (task.kind, task.state, task.details["coroutine"]) == ("task", "cancelled", "run_coroutine_job")


def test_a_scheduler_started_that_holds_nothing_is_not_reported(leakwatch: Watch) -> None:
    """An ``AsyncIOScheduler`` started with no job ran holds no thread, pool or task of the
    process's: not an entry, though it was never shut down."""
    loop = asyncio.new_event_loop()

    async def main() -> None:
        scheduler = AsyncIOScheduler()
        scheduler.start()
        try:
            assert scheduler.running
            assert leakwatch.leaks("apscheduler") == []
        finally:
            await shut(scheduler)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert leakwatch.leaks() == []


def test_an_asyncio_scheduler_dropped_unshut_under_pytest_is_its_tests_one_entry(
    pytester: pytest.Pytester,
) -> None:
    """Under pytest the scheduler is collected by the check: one ``apscheduler`` entry, at the
    line that started it, the job's cancelled task under it; not a task at ``asyncio.run()``."""
    pytester.makepyfile(
        test_scheduled="""
        import asyncio
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        async def job():
            await asyncio.Event().wait()

        def test_leaks():
            async def main():
                scheduler = AsyncIOScheduler()
                scheduler.add_job(job)
                scheduler.start()
                while not scheduler._executors["default"]._pending_futures:
                    await asyncio.sleep(0)
            asyncio.run(main())
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*this test leaked 1 resource*",
            "apscheduler AsyncIOScheduler not shut down (shutdown()) (closed by the garbage collector*",
            "*acquired at test_scheduled.py:11 in test_leaks.<locals>.main*",
            "*holds task * running run_coroutine_job()*cancelled*",
        ]
    )


def test_a_scheduler_a_test_keeps_as_a_module_global_itself_is_that_tests_leak(
    pytester: pytest.Pytester,
) -> None:
    """``global S; S = BackgroundScheduler()``: the global is the scheduler, which stays the
    test's. Its thread and pool, reached through it, were handed to the global, and the
    scheduler, holding nothing then, was no entry: the test passed with it running, and the
    session's end reported it."""
    pytester.makepyfile(
        test_scheduled="""
        import threading
        from apscheduler.schedulers.background import BackgroundScheduler

        ran = threading.Event()

        def test_keeps():
            global S
            S = BackgroundScheduler()
            S.add_job(ran.set)
            S.start()
            assert ran.wait(timeout=30)

        def test_other():
            pass
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps*",
            "apscheduler BackgroundScheduler not shut down (shutdown())",
            "*holds thread*",
        ]
    )
    assert "leaks found after their test ended" not in result.stdout.str()


def test_what_a_reported_scheduler_held_is_not_reported_again_when_collected(
    pytester: pytest.Pytester,
) -> None:
    """A scheduler reported with its test, its executor under it, is that test's one leak: the
    executor dropped with the scheduler later (the collector freed it, unshut) is not reported
    again at the end of the session as a leak found after its test ended."""
    pytester.makepyfile(
        test_scheduled="""
        import gc
        import threading

        import pytest
        from apscheduler.schedulers.base import BaseScheduler


        class Scheduler(BaseScheduler):
            def wakeup(self):
                self._process_jobs()  # at once, in the caller: the job is submitted on return

            def shutdown(self, wait=True):
                super().shutdown(wait)


        ran = threading.Event()


        @pytest.fixture
        def scheduler():
            return Scheduler()


        def test_leaks(scheduler):
            scheduler.start()
            scheduler.add_job(ran.set)
            assert ran.wait(timeout=30)


        def test_after():
            gc.collect()  # the scheduler of test_leaks, dropped in a cycle, and its executor
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*this test leaked 1 resource*",
            "apscheduler Scheduler not shut down (shutdown())",
            "*acquired at test_scheduled.py:25 in test_leaks*",
            "*holds thread concurrent.futures.ThreadPoolExecutor not shut down*",
        ]
    )
    assert "leaks found after their test ended" not in result.stdout.str()
