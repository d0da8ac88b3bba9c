"""An asyncio event loop never closed is one ``eventloop`` entry, not its selector and self-pipe sockets."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from _leakhelp import LEAN, reclaim_pytest_fails_one, reclaim_run_json

pytest_plugins = ["pytester"]


# Line 2 makes the loop in each program (the line of `loop = ...` in make() when dropped).
LEFT_OPEN = """\
    import asyncio
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
"""

DROPPED = """\
    import asyncio
    def make():
        loop = asyncio.new_event_loop()
        loop.run_until_complete(asyncio.sleep(0))
    make()
"""

IN_A_CYCLE = """\
    import asyncio, gc
    def make():
        loop = asyncio.new_event_loop()
        loop.itself = loop
    make()
    gc.collect()
"""

# Every loop closed but the last, made at the last line.
CLOSED_ONES = """\
    import asyncio, io, unittest

    async def main():
        await asyncio.sleep(0)

    closed = asyncio.new_event_loop()
    closed.run_until_complete(main())
    closed.close()
    asyncio.run(main())
    with asyncio.Runner() as runner:
        runner.run(main())

    # pytest-asyncio's way: a loop made, set as the current one, closed at teardown.
    fixture_loop = asyncio.new_event_loop()
    asyncio.set_event_loop(fixture_loop)
    fixture_loop.run_until_complete(main())
    asyncio.set_event_loop(None)
    fixture_loop.close()

    class Case(unittest.IsolatedAsyncioTestCase):
        async def test_it(self):
            await main()

    suite = unittest.defaultTestLoader.loadTestsFromTestCase(Case)
    assert unittest.TextTestRunner(stream=io.StringIO()).run(suite).wasSuccessful()
    LEFT = asyncio.new_event_loop()
"""


@pytest.mark.parametrize(
    ("source", "at", "state"),
    [(LEFT_OPEN, 2, "open"), (DROPPED, 3, "collected"), (IN_A_CYCLE, 3, "collected")],
    ids=["left-open", "dropped", "in-a-cycle"],
)
def test_loop_never_closed_is_one_eventloop_entry_at_the_line_that_made_it(
    tmp_path: Path, source: str, at: int, state: str
) -> None:
    """Not a selector and two sockets: one event loop, open or closed by the garbage collector."""
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["counts"] == {"eventloop": 1}, stderr
    (leak,) = report["leaks"]
    assert leak["frames"][0]["line"] == at, stderr
    assert leak["state"] == state
    assert leak["description"].startswith("_UnixSelectorEventLoop (selector fd "), stderr
    assert leak["details"]["selector"] in ("EpollSelector", "PollSelector", "SelectSelector")
    assert len(leak["details"]["self_pipe"]) == 2
    if state == "collected":
        assert "closed by the garbage collector" in stderr


def test_closed_loops_asyncio_run_runner_and_isolated_test_cases_report_nothing(tmp_path: Path) -> None:
    """Only the loop left open at the last line is reported: none of the closed ones, nothing of theirs."""
    report, stderr = reclaim_run_json(tmp_path, CLOSED_ONES)
    last = len(textwrap.dedent(CLOSED_ONES).splitlines())
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("eventloop", last)], stderr


def test_pytest_fails_the_test_that_leaked_a_loop_naming_it(pytester: pytest.Pytester) -> None:
    """--reclaim: the leaking test errors with one event loop entry; closed loops and allowed ones pass."""
    pytester.makepyfile(
        test_loops="""
        import asyncio
        import unittest
        import pytest

        KEEP = []

        @pytest.fixture
        def event_loop():
            loop = asyncio.new_event_loop()
            yield loop
            loop.close()

        def test_fixture_loop_closed(event_loop):
            event_loop.run_until_complete(asyncio.sleep(0))

        def test_leaks_a_loop():
            KEEP.append(asyncio.new_event_loop())

        @pytest.mark.reclaim_allow(kind="eventloop")
        def test_allowed():
            KEEP.append(asyncio.new_event_loop())

        class TestIsolated(unittest.IsolatedAsyncioTestCase):
            async def test_it(self):
                await asyncio.sleep(0)
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_loop*",
            "*this test leaked 1 resource*",
            "*eventloop _UnixSelectorEventLoop (selector fd *",
            "*test_loops.py:17*",
        ]
    )
    assert "socket" not in result.stdout.str() and "selector EpollSelector" not in result.stdout.str()


def test_sqlalchemys_test_runner_loop_is_the_librarys_not_the_sessions(pytester: pytest.Pytester) -> None:
    """SQLAlchemy's test plugin runs its provisioning at session start on one loop for the
    process (``sqlalchemy.testing.asyncio``'s runner), which it closes at ``pytest_unconfigure``,
    after reclaim's check of the session: each of its suite's runs failed on that loop. A loop a
    test makes itself is still the test's."""
    pytest.importorskip("greenlet")
    pytest.importorskip("sqlalchemy")
    pytester.makeconftest(
        """
        from sqlalchemy.util.concurrency import _AsyncUtil

        RUNNER = _AsyncUtil()  # as sqlalchemy.testing.asyncio keeps it

        def pytest_sessionstart(session):
            RUNNER.run_in_greenlet(lambda: None)

        def pytest_unconfigure(config):
            RUNNER.close()
        """
    )
    pytester.makepyfile(
        test_loops="""
        import asyncio

        from conftest import RUNNER

        KEEP = []

        def test_runs_on_the_session_runner():
            RUNNER.run_in_greenlet(lambda: None)

        def test_leaks_a_loop():
            KEEP.append(asyncio.new_event_loop())
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks_a_loop*", "*test_loops.py:11*"])
    assert "after their test ended" not in result.stdout.str()


def test_a_loop_whose_del_fails_under_warnings_as_errors_is_one_entry_not_its_selector_too(
    pytester: pytest.Pytester,
) -> None:
    """filterwarnings = error stops a dropped loop's ``__del__`` at its ResourceWarning, before
    its close(): pytest's unraisable hook then keeps the loop and its selector open. The loop is
    reported once, at its line; its epoll descriptor is not an untracked one besides."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_dropped_loop="""
        import asyncio

        def test_drops_a_loop():
            loop = asyncio.new_event_loop()
            loop.run_until_complete(asyncio.sleep(0))

        def test_after():
            pass
        """
    )
    reclaim_pytest_fails_one(pytester, 2, "test_drops_a_loop", "test_dropped_loop.py:4")


# Closed three ways, then a writer dropped unclosed at line 18 (its __del__ closes the socket).
STREAM_DROPPED = """\
    import asyncio

    async def handle(reader, writer):
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        async with server:
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            w1.close()
            await w1.wait_closed()
            r2, w2 = await asyncio.open_connection("127.0.0.1", port)
            w2.close()
            t3, _ = await loop.create_connection(asyncio.Protocol, "127.0.0.1", port)
            t3.close()
            r4, w4 = await asyncio.open_connection("127.0.0.1", port)
            del r4, w4

    asyncio.run(main())
"""

# A transport never closed, over the socket made at line 6: collected after its loop closed.
TRANSPORT_NEVER_CLOSED = """\
    import asyncio, socket

    async def main(sock):
        await asyncio.get_running_loop().create_connection(asyncio.Protocol, sock=sock)

    mine, theirs = socket.socketpair()
    asyncio.run(main(mine))
    theirs.close()
"""


# A client dropped unclosed while its loop runs on, its socket made at line 5 (the class is
# prepended below): the server and the drop are the same for each client.
_DROPS_A_CLIENT = """\

    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        async with server:
            client = Client()
            await client.connect(server.sockets[0].getsockname()[1])
            del client
            await asyncio.sleep(0)

    asyncio.run(main())
"""

# A client library's connection object (redis.asyncio's, say) whose __del__ closes the writer it
# was left with: dropped unclosed, its socket closes a loop turn later.
CLIENT_DEL_CLOSES_WRITER = (
    """\
    import asyncio

    class Client:
        async def connect(self, port):
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)

        def __del__(self):
            self.writer.close()
"""
    + _DROPS_A_CLIENT
)

# asyncpg's Connection.__del__ calls terminate(): the transport is aborted, and its socket
# closed a loop turn later, with no __del__ on the stack any more.
CLIENT_DEL_ABORTS_TRANSPORT = (
    """\
    import asyncio; from asyncio import Protocol, get_running_loop as running

    class Client:
        async def connect(self, port):
            self.transport, _ = await running().create_connection(Protocol, "127.0.0.1", port)

        def __del__(self):
            self.transport.abort()
"""
    + _DROPS_A_CLIENT
)


@pytest.mark.parametrize(
    ("source", "at"),
    [
        (STREAM_DROPPED, 18),
        (TRANSPORT_NEVER_CLOSED, 6),
        (CLIENT_DEL_CLOSES_WRITER, 5),
        (CLIENT_DEL_ABORTS_TRANSPORT, 5),
    ],
    ids=["stream-writer-dropped", "transport-never-closed", "client-del-closes-writer", "client-del-aborts"],
)
def test_a_stream_or_transport_closed_by_its_del_is_a_socket_closed_by_the_garbage_collector(
    tmp_path: Path, source: str, at: int
) -> None:
    """Its __del__ closes the socket, with a ResourceWarning: one entry, not the program's close."""
    report, stderr = reclaim_run_json(tmp_path, source)
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("socket", "collected", at)], stderr


@pytest.mark.parametrize("factory", ["asyncio.new_event_loop", "uvloop.new_event_loop"])
def test_a_wider_loops_default_executor_is_the_loops_not_the_first_test_that_used_it(
    pytester: pytest.Pytester, factory: str
) -> None:
    """run_in_executor(None, ...) makes the loop's default executor in the first test that hands
    the loop work: on a module-scoped loop (pytest-asyncio's loop_scope, anyio's runner kept by a
    wider async fixture) it was reported as that test's executor never shut down, though the loop
    shuts it down when it closes. A loop a test leaves open is one entry with its executor under
    it, and an executor of the test's own is still its leak."""
    if factory.startswith("uvloop"):
        pytest.importorskip("uvloop")
    pytester.makepyfile(
        test_executor=f"""
        import asyncio
        import concurrent.futures
        import {factory.split(".")[0]}
        import pytest

        KEEP = []

        @pytest.fixture(scope="module")
        def runner():
            with asyncio.Runner(loop_factory={factory}) as runner:
                yield runner

        def test_hands_work_to_the_modules_loop(runner):
            loop = runner.get_loop()
            loop.run_until_complete(loop.run_in_executor(None, lambda: None))

        def test_uses_it_again(runner):
            loop = runner.get_loop()
            loop.run_until_complete(loop.run_in_executor(None, lambda: None))

        def test_leaves_its_own_loop_open():
            loop = {factory}()
            loop.run_until_complete(loop.run_in_executor(None, lambda: None))
            KEEP.append(loop)

        def test_leaves_its_own_executor_running(runner):
            executor = concurrent.futures.ThreadPoolExecutor()
            loop = runner.get_loop()
            loop.run_until_complete(loop.run_in_executor(executor, lambda: None))
            KEEP.append(executor)
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", "-o", "reclaim_grace=0.1", timeout=120)
    result.assert_outcomes(passed=4, errors=2)
    out = result.stdout.str()
    assert "at teardown of test_hands_work_to_the_modules_loop" not in out
    assert "leaks found after their test ended" not in out
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_its_own_loop_open*",
            "*this test leaked 1 resource*",
            "*ERROR at teardown of test_leaves_its_own_executor_running*",
            "*this test leaked 1 resource*",
            "*ThreadPoolExecutor not shut down*",
        ]
    )


def test_the_default_executor_of_a_loop_a_plugin_made_in_pytest_configure_is_that_loops(
    pytester: pytest.Pytester,
) -> None:
    """pytest-twisted's asyncio reactor makes its loop in ``pytest_configure``, whose records are
    the plugin's and forgotten: the executor that loop made for the first ``getaddrinfo()``
    (aiohttp's resolver, in scrapy's suite) was reported as that test's, never shut down."""
    pytester.makeconftest(
        """
        import asyncio

        LOOP = []

        def pytest_configure(config):
            LOOP.append(asyncio.new_event_loop())

        def pytest_unconfigure(config):
            LOOP[0].close()
        """
    )
    pytester.makepyfile(
        test_resolves="""
        import conftest

        def test_resolves_on_the_plugins_loop():
            loop = conftest.LOOP[0]
            assert loop.run_until_complete(loop.getaddrinfo("127.0.0.1", 80))
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", "-o", "reclaim_grace=0.1", timeout=120)
    result.assert_outcomes(passed=1)


def test_a_descriptor_a_wider_loop_watches_for_a_fixtures_task_is_not_the_tests(
    pytester: pytest.Pytester,
) -> None:
    """C code a coroutine drives opens descriptors no hook sees, and has the loop watch them while
    it waits (psycopg_pool's background task opening a connection: libpq's socket, until
    connect() returns). A module-scoped loop does not run between tests: the descriptor of a
    fixture's task was still there at the end of the test that ran the loop, and was that test's
    untracked descriptor, naming nothing (one run in two). It is the task's. One the test leaves
    watched is still the test's, and says the loop watches it for what."""
    pytester.makepyfile(
        test_watched="""
        import asyncio
        import ctypes
        import os
        import socket

        import pytest

        LIBC = ctypes.CDLL(None, use_errno=True)
        KEEP = []

        def c_socket():  # made by C code, no hook sees it; listening, so never ready
            fd = LIBC.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
            LIBC.listen(fd, 1)
            return fd

        async def connecting():  # a driver's connect: C code's socket, watched while it waits
            fd = c_socket()
            ready = asyncio.Event()
            asyncio.get_running_loop().add_reader(fd, ready.set)
            try:
                await ready.wait()
            finally:
                asyncio.get_running_loop().remove_reader(fd)
                os.close(fd)

        @pytest.fixture(scope="module")
        def runner():
            with asyncio.Runner() as runner:
                task = runner.get_loop().create_task(connecting())  # started by the loop's next run
                yield runner
                task.cancel()
                runner.get_loop().run_until_complete(asyncio.wait([task]))

        def test_runs_the_modules_loop(runner):
            runner.run(asyncio.sleep(0))

        def test_leaves_a_descriptor_watched(runner):
            runner.get_loop().add_reader(c_socket(), print)

        def test_last_of_the_module():  # the module's loop closes at its teardown
            pass
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", "-o", "reclaim_grace=0.1", timeout=120)
    result.assert_outcomes(passed=3, errors=1)
    out = result.stdout.str()
    assert "at teardown of test_runs_the_modules_loop" not in out
    assert "leaks found after their test ended" not in out
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_descriptor_watched*",
            "*this test leaked 1 resource*",
            "untracked-fd fd * -> socket:* (an event loop watches it for builtins.print)",
        ]
    )
