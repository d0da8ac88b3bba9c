"""What only framework code stood over (a loop callback, a trio task a library spawned) is blamed
on the program's line: the coroutine a callback made a task of, the line that started the server,
the line that awaited the library."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import reclaim
from _leakhelp import LEAN, Watch, ignore_gc_warnings, leakwatch, line, reclaim_run_json
from reclaim import _sites
from reclaim.leaks import set_context

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytest_plugins = ["pytester"]

HERE = os.path.abspath(__file__)


def where(frame: reclaim.leaks.Leak | Any) -> tuple[str, int]:
    return (frame.filename, frame.lineno)


def defined_at(function: Any) -> tuple[str, int]:
    return (HERE, function.__code__.co_firstlineno)


async def _connect_and_close(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    await writer.wait_closed()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_servers_handler_task_names_its_coroutine_then_the_line_that_started_the_server(
    leakwatch: Watch,
) -> None:
    """start_server's handler task was made in a loop callback: it was reported at the line that
    called asyncio.run(), not at the handler or the server."""
    at = 0
    handler: Any = None

    async def main() -> None:
        nonlocal at, handler
        writers: list[asyncio.StreamWriter] = []
        connected = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            connected.set()
            await asyncio.Event().wait()  # nobody stops it: pending when the loop shuts down

        handler = handle
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        at = line() - 1
        await _connect_and_close(server.sockets[0].getsockname()[1])
        await connected.wait()
        server.close()  # not wait_closed(): from 3.12 on it waits for the handler too
        writers[0].close()  # the connection is closed: only the task is left
        await writers[0].wait_closed()

    asyncio.run(main())
    leak = leakwatch.one("task")
    assert leak.state == "cancelled"
    assert leak.details["coroutine"] == handler.__qualname__
    assert [where(frame) for frame in leak.frames[:2]] == [
        (HERE, handler.__code__.co_firstlineno),
        (HERE, at),
    ]
    # Cancelled at shutdown, it was gone by the report: where it waited is kept from before.
    waited = handler.__code__.co_firstlineno + 3
    assert leak.details["awaiting"] == f"{HERE}:{waited}"
    # The description's path is relative to the current directory, as the report's lines are.
    assert f"suspended at {_sites.shown(f'{HERE}:{waited}')}" in leak.description


@pytest.mark.reclaim_allow
@ignore_gc_warnings
def test_a_socket_a_server_accepted_names_the_line_that_started_the_server(leakwatch: Watch) -> None:
    """The accepting callback's socket had only asyncio's frames: it was reported at the line that
    called asyncio.run(). It goes on as the listening socket does, past the line that started the
    server (a helper's): it stopped there (mitmproxy's tests' ``tcp_server``)."""
    kept: list[asyncio.StreamWriter] = []
    at = 0

    async def main() -> list[reclaim.leaks.Leak]:
        nonlocal at
        accepted = asyncio.Event()

        def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            kept.append(writer)  # never closed: the leak under test
            accepted.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        at = line() - 1
        async with server:
            await _connect_and_close(server.sockets[0].getsockname()[1])
            await accepted.wait()
            found = [leak for leak in leakwatch.leaks("socket") if leak.details.get("peer")]
            kept[0].close()
            await kept[0].wait_closed()
            return found

    [leak] = asyncio.run(main())
    ran = line() - 1
    assert [where(frame) for frame in leak.frames[:2]] == [(HERE, at), (HERE, ran)]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("closed_by", ["peer", "program"])
def test_a_task_a_protocol_makes_in_a_transport_callback_names_the_line_that_connected(
    leakwatch: Watch, closed_by: str
) -> None:
    """A client protocol that schedules a reconnect in ``connection_lost`` (pymodbus's): its task
    went on at the line that called ``asyncio.run()`` (or a pytest-asyncio test's decorator),
    past the ``create_connection()`` that made the transport whose callback made it. So when the
    program closed the transport itself (gmqtt's), which queues ``connection_lost`` from its own
    task."""
    at = made = 0
    lost = asyncio.Event()

    class Client(asyncio.Protocol):
        def connection_lost(self, exc: Exception | None) -> None:
            nonlocal made
            self.reconnect = asyncio.get_running_loop().create_task(_pending(), name="reconnect")
            made = line() - 1
            lost.set()

    async def main() -> None:
        nonlocal at

        writers: list[asyncio.StreamWriter] = []

        def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if closed_by == "peer":
                writer.close()  # the server drops each connection at once
            else:
                writers.append(writer)

        async with await asyncio.start_server(handle, "127.0.0.1", 0) as server:
            loop = asyncio.get_running_loop()
            transport, _ = await loop.create_connection(Client, *server.sockets[0].getsockname()[:2])
            at = line() - 1
            if closed_by == "program":
                transport.close()
            await lost.wait()
            transport.close()
            for writer in writers:
                writer.close()

    asyncio.run(main())
    leak = leakwatch.one("task")
    assert leak.details["name"] == "reconnect"
    assert [where(frame) for frame in leak.frames[:2]] == [(HERE, made), (HERE, at)]


def test_a_thread_with_no_python_frame_can_wake_a_loop(leakwatch: Watch) -> None:
    """``call_soon_threadsafe()`` called straight from a thread that has no Python frame of its
    own (a Rust runtime's, as pyreqwest's tokio threads resolve asyncio futures): reclaim's
    wrapper asked for its caller's frame and raised, the future was never resolved, and the
    program hung (vcrpy's suite, 3 runs in 5). It goes through now, as without reclaim."""
    import _thread

    async def main() -> int:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        _thread.start_new_thread(loop.call_soon_threadsafe, (future.set_result, 42))
        return await asyncio.wait_for(future, 30)

    assert asyncio.run(main()) == 42
    assert leakwatch.leaks() == []


async def _pending() -> None:
    await asyncio.Event().wait()


@pytest.mark.reclaim_allow
def test_a_task_a_callback_made_of_a_partial_names_its_coroutine_then_the_registering_task(
    leakwatch: Watch,
) -> None:
    """``call_soon(partial(ensure_future, coro))`` ran only asyncio's code: the task was reported at
    the line that called asyncio.run(), its coroutine named nowhere in the site."""

    async def main() -> None:
        asyncio.get_running_loop().call_soon(functools.partial(asyncio.ensure_future, _pending()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    at = line() - 1
    leak = leakwatch.one("task")
    # The coroutine first, then the program's line that made the task that registered the callback.
    assert [where(frame) for frame in leak.frames[:2]] == [defined_at(_pending), (HERE, at)]


@pytest.mark.reclaim_allow
@ignore_gc_warnings
def test_what_a_callbacks_task_acquires_names_its_coroutine_once(leakwatch: Watch) -> None:
    """A task only asyncio's code made starts its site with its coroutine's def line; a socket that
    coroutine opened showed that coroutine twice, the second time as called from its def line
    (a pytest-asyncio test's socket: "from test.py:169 in test_x", a decorator line)."""
    kept: list[socket.socket] = []
    opened = 0

    async def opens() -> None:
        nonlocal opened
        kept.append(socket.socket())
        opened = line() - 1

    async def main() -> None:
        asyncio.get_running_loop().call_soon(functools.partial(asyncio.ensure_future, opens()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(main())
    at = line() - 1
    try:
        leak = leakwatch.one("socket")
    finally:
        kept[0].close()
    # The socket's line, then the program's line that made the task that registered the callback.
    assert [where(frame) for frame in leak.frames[:2]] == [(HERE, opened), (HERE, at)]


def test_a_task_given_a_fresh_context_finds_nothing_of_reclaims_in_it(leakwatch: Watch) -> None:
    """uvicorn's ``reset_contextvars`` runs each request in ``create_task(..., context=Context())``
    and its tests check that context holds nothing the app did not set: reclaim set its origin
    there, and the app found a variable of reclaim's (whose code objects json.dumps refused)."""
    seen: list[dict[str, object]] = []

    async def request() -> None:
        seen.append({var.name: value for var, value in contextvars.copy_context().items()})

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def data_received() -> None:  # a protocol's callback: no task runs
            task = loop.create_task(request(), context=contextvars.Context())
            task.add_done_callback(lambda _: done.set_result(None))

        loop.call_soon(data_received)
        await done

    asyncio.run(main())
    assert seen == [{}]
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow
@ignore_gc_warnings
def test_what_a_task_given_a_fresh_context_acquires_is_labelled_where_it_was_made(
    leakwatch: Watch,
) -> None:
    """Its origin kept beside the task, not in its context: what it, and a task it makes, open
    while another test runs is still the label's that made it (a session fixture's server)."""
    kept: list[socket.socket] = []

    async def child() -> None:
        kept.append(socket.socket())

    async def request() -> None:
        kept.append(socket.socket())
        await asyncio.create_task(child())

    loop = asyncio.new_event_loop()
    previous = set_context("the server's fixture")
    try:
        task = loop.create_task(request(), context=contextvars.Context())
        set_context("a later test")
        loop.run_until_complete(task)
    finally:
        set_context(previous)
        loop.close()
    try:
        found = leakwatch.leaks("socket")
    finally:
        for sock in kept:
            sock.close()
    assert [leak.context for leak in found] == ["the server's fixture"] * 2


def test_correct_servers_and_callback_tasks_report_nothing(leakwatch: Watch) -> None:
    """Handlers that close their streams, a server closed, a callback's task awaited: clean."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.read()
        finally:
            writer.close()
            await writer.wait_closed()
            done.set()

    async def main() -> None:
        nonlocal done
        done = asyncio.Event()
        async with await asyncio.start_server(handle, "127.0.0.1", 0) as server:
            await _connect_and_close(server.sockets[0].getsockname()[1])
            await done.wait()
        tasks: list[asyncio.Future[None]] = []
        loop = asyncio.get_running_loop()
        loop.call_soon(lambda: tasks.append(asyncio.ensure_future(asyncio.sleep(0))))
        loop.call_soon(lambda: tasks.append(asyncio.ensure_future(_pending())))
        await asyncio.sleep(0)
        await tasks[0]
        tasks[1].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[1]

    done: asyncio.Event
    asyncio.run(main())
    assert leakwatch.leaks() == []


# -- trio ---------------------------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        yield sock


@pytest.mark.reclaim_allow
@pytest.mark.parametrize("via", ["trio", "anyio"])
def test_what_trio_connects_in_a_task_of_its_own_names_the_line_that_awaited_it(
    leakwatch: Watch, listener: socket.socket, via: str
) -> None:
    """trio.open_tcp_stream (and anyio.connect_tcp on trio) connect in tasks of their own: the
    site went on through trio's run loop to the line that called trio.run(), past the line that
    awaited them."""
    trio = pytest.importorskip("trio")
    anyio = pytest.importorskip("anyio")
    port = listener.getsockname()[1]
    at = 0

    async def main() -> list[reclaim.leaks.Leak]:
        nonlocal at
        if via == "trio":
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            at = line() - 1
        else:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            at = line() - 1
        found = [
            leak for leak in leakwatch.leaks("socket") if leak.details.get("peer", "").endswith(f":{port}")
        ]
        await stream.aclose()
        return found

    [leak] = trio.run(main)
    ran = line() - 1
    # trio's frames, then the line that awaited them, then the task's parents' (none: main is
    # the run's first task) and the line that ran trio.
    assert [where(frame) for frame in leak.frames[-2:]] == [(HERE, at), (HERE, ran)], leak.frames
    assert all("/trio/" in frame.filename or "/anyio/" in frame.filename for frame in leak.frames[:-2])


@pytest.mark.reclaim_allow
def test_what_a_trio_child_task_opens_names_the_lines_its_parent_tasks_wait_in(leakwatch: Watch) -> None:
    """trio keeps no task's spawn site: past the child's own frames the stack went through
    trio's run loop to the line that called trio.run(), and no line of the task that opened
    the nursery was shown. Its parents' lines now come first, innermost first."""
    trio = pytest.importorskip("trio")
    kept: list[socket.socket] = []
    lines: list[int] = []

    async def opens() -> None:
        kept.append(socket.socket())
        lines.append(line() - 1)

    async def spawns() -> None:
        async with trio.open_nursery() as nursery:
            lines.append(line() - 1)
            nursery.start_soon(opens)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            lines.append(line() - 1)
            nursery.start_soon(spawns)

    trio.run(main)
    ran = line() - 1
    try:
        leak = leakwatch.one("socket")
        [main_at, spawns_at, opens_at] = lines
        assert [where(frame) for frame in leak.frames] == [
            (HERE, opens_at),
            (HERE, spawns_at),
            (HERE, main_at),
            (HERE, ran),
        ], leak.frames
    finally:
        kept[0].close()


@pytest.mark.reclaim_allow
def test_a_trio_task_started_in_an_asynccontextmanager_names_the_generators_line(leakwatch: Watch) -> None:
    """A parent task waiting in ``async with background():``, whose generator waits in
    ``nursery.start(child)``, awaits ``anext()`` of that generator, which names no frame: the
    generator's line was left out, and the stack went from the child's line to the ``async
    with`` line (trio's own suite)."""
    trio = pytest.importorskip("trio")
    kept: list[socket.socket] = []
    lines: list[int] = []

    async def child(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        kept.append(socket.socket())
        lines.append(line() - 1)
        task_status.started()
        await trio.sleep_forever()

    @contextlib.asynccontextmanager
    async def background() -> Any:
        async with trio.open_nursery() as nursery:
            await nursery.start(child)
            lines.append(line() - 1)
            yield
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with background():
            lines.append(line() - 1)

    trio.run(main)
    try:
        leak = leakwatch.one("socket")
        assert [where(frame) for frame in leak.frames[:3]] == [(HERE, at) for at in lines], leak.frames
    finally:
        kept[0].close()


def test_trio_run_from_its_source_is_no_line_of_a_report(tmp_path: Path) -> None:
    """Where trio is the program (its own suite, run from its source), the frames its parent
    tasks wait in were shown as lines, its traps, nurseries and system task's ``init`` first, and
    the stack never reached the line that ran it; its run loop was where the child's socket was
    "dropped"."""
    trio = pytest.importorskip("trio")
    shutil.copytree(os.path.dirname(trio.__file__), tmp_path / "trio")  # imported from prog.py's dir
    report, stderr = reclaim_run_json(
        tmp_path,
        """
        import socket
        import trio

        async def child(task_status=trio.TASK_STATUS_IGNORED):
            sock = socket.socket()
            task_status.started()
            await trio.sleep_forever()

        async def main():
            async with trio.open_nursery() as nursery:
                await nursery.start(child)
                nursery.cancel_scope.cancel()

        trio.run(main)
        """,
    )
    [leak] = [leak for leak in report["leaks"] if leak["kind"] == "socket"]
    assert [frame["line"] for frame in leak["frames"]] == [6, 12, 15], stderr
    assert leak["details"]["dropped_at"] == "prog.py:11 in main", leak  # as the nursery closed


@pytest.mark.reclaim_allow
@pytest.mark.parametrize("kind", ["file", "subprocess"])
@pytest.mark.parametrize("via", ["trio", "anyio"])
def test_what_trios_thread_cache_runs_names_the_line_that_handed_it_over(
    leakwatch: Watch, tmp_path: Any, via: str, kind: str
) -> None:
    """trio.to_thread.run_sync (anyio's to_thread on trio) runs the function in a worker of trio's
    thread cache, which an earlier job started: a file or child made there was recorded at trio's
    frames only, with no line of the program's."""
    trio = pytest.importorskip("trio")
    anyio = pytest.importorskip("anyio")
    run_sync = trio.to_thread.run_sync if via == "trio" else anyio.to_thread.run_sync
    at = 0

    async def main() -> list[reclaim.leaks.Leak]:
        nonlocal at
        await run_sync(int)  # starts a worker, or finds one idle: the next job runs in it
        if kind == "file":
            made = await run_sync(open, tmp_path / "x", "w")
            at = line() - 1
        else:
            made = await run_sync(functools.partial(subprocess.Popen, [sys.executable, "-c", "pass"]))
            at = line() - 1
        found = leakwatch.leaks(kind)
        await run_sync(made.close if kind == "file" else made.wait)
        return found

    [leak] = trio.run(main)
    assert [where(frame) for frame in leak.frames if frame.filename == HERE][:1] == [(HERE, at)], leak.frames


# -- pytest -----------------------------------------------------------------------------------

#: Inner runs with reclaim's plugin and anyio's: these tests run on it.
BASE_ARGS = (*LEAN, "-p", "anyio", "--reclaim")


def test_a_session_servers_connections_are_the_servers_not_the_tests_that_connected(
    pytester: pytest.Pytester,
) -> None:
    """A session fixture's server serves each connection until the server stops: its handler
    task and accepted socket, made by a loop callback while a test ran, failed that test."""
    pytest.importorskip("anyio")
    pytester.makepyfile(
        test_server="""
        import asyncio
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture(scope="session")
        def anyio_backend():
            return "asyncio"

        @pytest.fixture(scope="session")
        async def server(anyio_backend):
            stop, handlers = asyncio.Event(), []

            async def handle(reader, writer):
                handlers.append(asyncio.current_task())
                try:
                    await stop.wait()  # served until the server stops
                finally:
                    writer.close()
                    await writer.wait_closed()

            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            yield server.sockets[0].getsockname()[1]
            server.close()
            stop.set()
            await asyncio.gather(*handlers)
            await server.wait_closed()

        @pytest.mark.parametrize("n", range(3))
        async def test_connects(server, n):
            reader, writer = await asyncio.open_connection("127.0.0.1", server)
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.01)  # accepted by now
            writer.close()
            await writer.wait_closed()
        """
    )
    result = pytester.runpytest_subprocess(*BASE_ARGS, timeout=120)
    result.assert_outcomes(passed=3)


def test_a_socket_trio_connects_in_a_task_of_its_own_names_the_tests_line(pytester: pytest.Pytester) -> None:
    """Under anyio's trio backend the site ended in trio's and pytest's frames: never the test."""
    pytest.importorskip("anyio")
    pytest.importorskip("trio")
    pytester.makepyfile(
        test_trio="""
        import socket
        import anyio
        import pytest

        KEEP = []

        @pytest.fixture
        def anyio_backend():
            return "trio"

        @pytest.fixture
        def listener():
            with socket.create_server(("127.0.0.1", 0)) as sock:
                yield sock

        @pytest.mark.anyio
        async def test_connects(listener):
            KEEP.append(await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1]))
        """
    )
    result = pytester.runpytest_subprocess(*BASE_ARGS, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_connects*",
            "  acquired at test_trio.py:18 in test_connects",
            "  inside anyio, then trio: *trio*_socket.py:* in socket",
        ]
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_anyio_runner_and_trio_loop_frames_are_left_out_of_a_tests_report(
    pytester: pytest.Pytester, backend: str
) -> None:
    """anyio's ``TestRunner`` (in its backend's module) and pytest plugin run the test, and
    trio's run loop drives it, as pytest-asyncio and asyncio do: their frames under the test's
    line were listed as its callers."""
    pytest.importorskip("anyio")
    pytest.importorskip(backend)
    pytester.makepyfile(
        test_runner=f"""
        import threading
        import pytest

        pytestmark = pytest.mark.anyio

        @pytest.fixture
        def anyio_backend():
            return {backend!r}

        async def test_leaks():
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        """
    )
    result = pytester.runpytest_subprocess(*BASE_ARGS, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*running Event.wait()*",
            "  acquired at test_runner.py:11 in test_leaks",
        ]
    )
    callers = result.stdout.str().partition("acquired at")[2].partition("thread '")[0]
    assert "from " not in callers, callers


TRIO_RUNS = {
    "trio.run": """
        import threading
        import trio

        def test_leaks():
            async def main():
                threading.Thread(target=threading.Event().wait, daemon=True).start()

            trio.run(main)
        """,
    "pytest-trio": """
        import threading
        import pytest

        @pytest.mark.trio
        async def test_leaks():
            threading.Thread(target=threading.Event().wait, daemon=True).start()
        """,
}


@pytest.mark.parametrize("runner", sorted(TRIO_RUNS))
def test_trio_run_and_pytest_trio_frames_are_left_out_of_a_tests_report(
    pytester: pytest.Pytester, runner: str
) -> None:
    """``trio.run`` and pytest-trio's runner were listed as the test's callers, as neither
    ``asyncio.run`` nor pytest-asyncio is (seen in hypercorn's trio tests)."""
    pytest.importorskip("trio")
    if runner == "pytest-trio":
        pytest.importorskip("pytest_trio")
    pytester.makepyfile(test_runner=TRIO_RUNS[runner])
    # The suite turns plugin autoload off: pytest-trio is loaded by name, as anyio's is.
    plugin = ("-p", "pytest_trio.plugin") if runner == "pytest-trio" else ()
    result = pytester.runpytest_subprocess(*BASE_ARGS, *plugin, timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*running Event.wait()*"])
    callers = result.stdout.str().partition("acquired at")[2].partition("thread '")[0]
    assert "trio" not in callers, callers


def test_the_pytest_console_script_is_plumbing_as_python_m_pytest_is() -> None:
    """What only pytest's and asyncio's code stood over was reported at the console script's line."""
    from reclaim import _sites

    script = os.path.join(sysconfig.get_path("scripts"), "reclaim-test-console-script")
    assert _sites.is_framework(script)
    # A test module (run as a script that calls pytest.main(), say) stays the program's.
    assert not _sites.is_framework(HERE)
