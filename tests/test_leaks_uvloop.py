"""uvloop's loops: a clean program reports nothing, a loop never closed is one entry, tasks are tracked."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import textwrap
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import (
    LEAN,
    Watch,
    ignore_gc_warnings,
    leakwatch,
    lease_site_in_a_task_made_in_a_task,
    line,
    reclaim_pytest_fails_one,
    reclaim_run_json,
    task_site_in_a_task_made_in_a_task,
)

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


class _Holds:
    task: asyncio.Task[Any] | None = None


@pytest.mark.reclaim_allow  # the pending case leaks on purpose
@ignore_gc_warnings
@pytest.mark.parametrize("pending", [True, False], ids=["pending", "done"])
def test_task_dropped_in_a_reference_cycle_on_uvloop_is_a_leak_only_if_pending(
    leakwatch: Watch, pending: bool
) -> None:
    """Its weak reference is cleared before its finalizer runs, which says whether it was pending
    ("Task was destroyed but it is pending!") through uvloop's own ``call_exception_handler``."""
    loop = uvloop.new_event_loop()

    async def holds(holder: _Holds) -> _Holds:
        if pending:
            await asyncio.Event().wait()
        return holder  # a result that holds the task, which holds it

    async def main() -> None:
        holder = _Holds()
        holder.task = loop.create_task(holds(holder))
        await asyncio.sleep(0)  # it starts (and, unless pending, ends)

    made_at = line() - 3
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    gc.collect()
    if pending:
        leak = leakwatch.one("task")
        assert leak.state == "collected"
        assert leak.frames[0].lineno == made_at
    else:
        assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_task_made_in_a_task_on_uvloop_goes_on_at_the_line_that_made_that_task(leakwatch: Watch) -> None:
    """uvloop steps tasks in C: past a task's coroutine came the frame that ran the loop, taken
    as its caller (aio-pika's connection tasks under aiomisc's uvloop were blamed on aiomisc's
    runner), and the line that made the outer task was lost."""
    frames, expected = task_site_in_a_task_made_in_a_task(leakwatch, uvloop.new_event_loop)
    assert frames == expected, frames


def test_lease_taken_in_a_tasks_own_coroutine_on_uvloop_goes_on_at_the_line_that_made_the_task(
    leakwatch: Watch,
) -> None:
    """An AsyncPool lease's site, resolved as it is taken, went on past its task's coroutine too."""
    frames, expected = lease_site_in_a_task_made_in_a_task(leakwatch, uvloop.new_event_loop)
    assert frames == expected, frames
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


async def _handled(server: asyncio.Server, started: asyncio.Event) -> tuple[int, asyncio.StreamWriter]:
    """Connect to *server* and wait until its handler runs: the connection it accepted exists."""
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)  # the client's line: 2 up
    await started.wait()
    return port, writer


@ignore_gc_warnings
def test_uvloop_server_and_connections_left_open_are_sockets_at_the_programs_lines(leakwatch: Watch) -> None:
    """As under asyncio: the listening socket and the one it accepted at the line that made the
    server, the client's at its open_connection; no descriptor of theirs is left untracked, nor
    the spare /dev/null libuv opens on the loop's first listen. Closed, nothing is left."""
    started = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never closed by the handler
        writer.get_extra_info("peername")  # what servers ask: no descriptor adopted at this line
        started.set()

    async def serve() -> tuple[asyncio.Server, int, asyncio.StreamWriter]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)  # made here
        return server, *await _handled(server, started)

    at_server, at_client = line() - 3, _handled.__code__.co_firstlineno + 3
    loop = uvloop.new_event_loop()
    try:
        server, port, client = loop.run_until_complete(serve())
        assert sorted({leak.kind for leak in leakwatch.leaks()}) == ["eventloop", "socket"]
        found = {leak.description.split(" (fd")[0]: leak for leak in leakwatch.leaks("socket")}
        local = client.get_extra_info("sockname")[1]
        listening = f"AF_INET/SOCK_STREAM 127.0.0.1:{port}, listening"  # libuv's listen(), asked
        accepted = f"AF_INET/SOCK_STREAM 127.0.0.1:{port} accepted from 127.0.0.1:{local}"
        outgoing = f"AF_INET/SOCK_STREAM 127.0.0.1:{local} -> 127.0.0.1:{port}"
        assert sorted(found) == sorted([listening, accepted, outgoing])
        assert found[listening].frames[0].lineno == at_server
        assert found[accepted].frames[0].lineno == at_server
        assert found[outgoing].frames[0].lineno == at_client

        async def close() -> None:
            for writer in (client, *held):
                writer.close()
                await writer.wait_closed()
            server.close()
            await server.wait_closed()

        loop.run_until_complete(close())
        assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
    finally:
        loop.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_uvloop_connections_left_for_the_loops_close_are_leaks_closed_by_it(leakwatch: Watch) -> None:
    """Under asyncio, connections never closed stay open past the loop's close() and are reported
    open; uvloop's close() closes them: the loop's doing, not the program's, so each is still
    reported, at the line that opened it (that made the server, for the one it accepted). One
    the program closed, its close not finished when the loop closes, is no leak."""
    started = [asyncio.Event(), asyncio.Event()]
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never closed by the handler
        started[len(held) - 1].set()

    async def serve() -> tuple[int, asyncio.StreamWriter]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)  # made here
        port, client = await _handled(server, started[0])
        _, other = await _handled(server, started[1])
        for writer in (other, held[1]):
            writer.close()  # by the program; the loop closes before that is done
        server.close()
        await server.wait_closed()
        return port, client

    at_server, at_client = line() - 9, _handled.__code__.co_firstlineno + 3
    loop = uvloop.new_event_loop()
    try:
        port, client = loop.run_until_complete(serve())
    finally:
        loop.close()
    found = {leak.frames[0].lineno: leak for leak in leakwatch.leaks()}
    assert sorted(found) == sorted([at_server, at_client]), leakwatch.records()
    local = client.get_extra_info("sockname")[1]
    accepted, outgoing = found[at_server], found[at_client]
    assert accepted.kind == outgoing.kind == "socket"
    assert accepted.state == outgoing.state == "loop-closed"
    server_end = f"AF_INET/SOCK_STREAM 127.0.0.1:{port} accepted from 127.0.0.1:{local} "
    assert accepted.description.startswith(server_end)
    assert outgoing.description.startswith(f"AF_INET/SOCK_STREAM 127.0.0.1:{local} -> 127.0.0.1:{port} ")
    del client, accepted, outgoing, found
    held.clear()
    gc.collect()  # their writers warn that their loop is closed: here, not in a later test


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # uvloop's close() warns of the server; as an error it hangs (uvloop 0.23)
def test_uvloop_server_left_for_the_loops_close_is_a_leak_closed_by_it(leakwatch: Watch) -> None:
    """A server never closed is closed by uvloop's close() (asyncio's leaves its socket open, and
    reports it open): a leak at its line, listening; one the program closed is none."""

    async def serve() -> int:
        closed = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        closed.close()  # by the program; wait_closed() not awaited
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
        return int(server.sockets[0].getsockname()[1])

    at = line() - 3
    loop = uvloop.new_event_loop()
    try:
        port = loop.run_until_complete(serve())
    finally:
        loop.close()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state, leak.frames[0].lineno) == ("socket", "loop-closed", at)
    assert leak.description.startswith(f"AF_INET/SOCK_STREAM 127.0.0.1:{port}, listening ")
    assert leak.details["listening"] is True


def test_pytest_with_a_session_uvloop_loop_fails_only_the_test_leaving_its_server_open(
    pytester: pytest.Pytester,
) -> None:
    """A loop that outlives the tests: the /dev/null libuv opens on its first listen, in the
    first test to start a server, is the loop's; a server closed properly leaves nothing, one
    left open fails its test at its line, as a socket."""
    pytester.makepyfile(
        test_uv="""
        import asyncio
        import pytest
        import uvloop

        @pytest.fixture(scope="session")
        def loop():
            loop = uvloop.new_event_loop()
            yield loop
            loop.close()

        async def handle(reader, writer):
            writer.get_extra_info("peername")
            await reader.read()
            writer.close()
            await writer.wait_closed()

        async def serve_once():
            server = await asyncio.start_server(handle, "127.0.0.1", 0)
            reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
            writer.close()
            await writer.wait_closed()
            return server

        def test_clean(loop):
            server = loop.run_until_complete(serve_once())
            server.close()
            loop.run_until_complete(server.wait_closed())

        def test_server_left(loop):
            loop.run_until_complete(serve_once())

        def test_clean_after(loop):
            test_clean(loop)
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server_left*",
            "*this test leaked 1 resource*",
            "*socket AF_INET/SOCK_STREAM 127.0.0.1:*",
            "*test_uv.py:18*",
        ]
    )
    assert "untracked-fd" not in result.stdout.str()


# A server as uvicorn runs one: a protocol that asks its transport for both ends, answers and
# closes; the client closes its side; the server shuts down.
PROTOCOL_SERVER = """\
    import asyncio

    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.ends = transport.get_extra_info("sockname"), transport.get_extra_info("peername")

        def data_received(self, data):
            self.transport.write(b"ok")
            self.transport.close()

    async def start():
        return await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", 0)

    async def ask(server):
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        writer.write(b"?")
        assert await reader.read() == b"ok"
        writer.close()
        await writer.wait_closed()

    async def stop(server):
        server.close()
        await server.wait_closed()
"""


def test_clean_protocol_server_on_uvloop_reports_nothing(tmp_path: Path) -> None:
    """Connections asked for their ends, answered and closed, the server shut down: no leak."""
    source = PROTOCOL_SERVER + textwrap.indent(
        textwrap.dedent("""\
        import uvloop

        async def main():
            server = await start()
            for _ in range(3):
                await ask(server)
            await stop(server)

        uvloop.run(main())
        """),
        "    ",
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


def test_pytest_with_a_session_uvloop_server_fails_no_test_that_connects(pytester: pytest.Pytester) -> None:
    """A session-wide loop and server, tests that connect and close: every test passes clean."""
    pytester.makepyfile(server=textwrap.dedent(PROTOCOL_SERVER))
    pytester.makepyfile(
        test_uv="""
        import pytest
        import uvloop
        from server import ask, start, stop

        @pytest.fixture(scope="session")
        def loop():
            loop = uvloop.new_event_loop()
            yield loop
            loop.close()

        @pytest.fixture(scope="session")
        def server(loop):
            server = loop.run_until_complete(start())
            yield server
            loop.run_until_complete(stop(server))

        @pytest.mark.parametrize("n", range(3))
        def test_asks(loop, server, n):
            loop.run_until_complete(ask(server))
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=3)
    assert "leaked" not in result.stdout.str()


# asyncio's program (see test_leaks_eventloop.py) on uvloop: closed two ways, then a writer
# dropped unclosed at line 15 while its loop runs (its __del__ closes the connection).
WRITER_DROPPED = """\
    import asyncio, uvloop

    async def handle(reader, writer):
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            r1, w1 = await asyncio.open_connection("127.0.0.1", port)
            w1.close()
            await w1.wait_closed()
            t2, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.1", port)
            t2.close()
            r3, w3 = await asyncio.open_connection("127.0.0.1", port)
            del r3, w3
            await asyncio.sleep(0)

    uvloop.run(main())
"""


def test_stream_writer_dropped_unclosed_on_uvloop_is_a_socket_closed_by_the_garbage_collector(
    tmp_path: Path,
) -> None:
    """As under asyncio: the writer's __del__ closed the connection, not the program; one entry at
    the open_connection line, naming where it connected."""
    report, stderr = reclaim_run_json(tmp_path, WRITER_DROPPED)
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("socket", "collected", 15)], stderr
    assert report["leaks"][0]["details"]["peer"].startswith("127.0.0.1:"), stderr


@pytest.mark.parametrize(
    "new_loop", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)
def test_subprocess_left_running_on_uvloop_is_reported_as_on_asyncio(leakwatch: Watch, new_loop: Any) -> None:
    """Its child never waited for and its two pipes, at the line that made it, as asyncio's loop
    reports them (libuv's spare /dev/null, opened with the loop's first pipe, is the loop's);
    waited for, nothing is left."""
    pipe = asyncio.subprocess.PIPE

    async def spawn() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec("cat", stdin=pipe, stdout=pipe)  # made here

    made_at = line() - 2
    loop = new_loop()
    proc = None
    try:
        proc = loop.run_until_complete(spawn())
        found = sorted(
            (leak.kind, leak.description.replace(str(proc.pid), "PID"), leak.site and leak.site.lineno)
            for leak in leakwatch.leaks()
            if leak.kind != "eventloop"
        )
        assert found == [
            ("file", "stdin pipe of subprocess pid PID (mode 'wb')", made_at),
            ("file", "stdout pipe of subprocess pid PID (mode 'rb')", made_at),
            ("subprocess", "pid PID: cat (still running, never waited for)", made_at),
        ]
        assert loop.run_until_complete(proc.communicate(b"x")) == (b"x", None)
        assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
    finally:
        if proc is not None and proc.returncode is None:  # a failed check: no child outlives it
            proc.kill()
            loop.run_until_complete(proc.communicate())
        loop.close()
    assert leakwatch.leaks() == []


# A child left running by a program whose uvloop loop closed (closing its pipes): line 4 made it.
# Its output goes nowhere: inheriting the test's capture pipes, it would hold the run open 30 s.
# The shell execs the sleep, so the pid the test kills is the one running (a shell that forked
# it would leave the sleep running, an orphan).
CHILD_LEFT = """\
    import asyncio, uvloop

    async def main():
        return await asyncio.create_subprocess_shell(
            "exec sleep 30", stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )

    proc = uvloop.run(main())
    with open("pid", "w") as out:
        out.write(str(proc.pid))
"""


def test_child_left_running_by_uvloop_run_is_a_subprocess_never_waited_for(tmp_path: Path) -> None:
    """uvloop.run closed the loop, not the child: it is reported at its line, with its command."""
    report, stderr = reclaim_run_json(tmp_path, CHILD_LEFT)
    try:
        assert report["counts"] == {"subprocess": 1}, stderr
        (leak,) = report["leaks"]
        assert leak["frames"][0]["line"] == 4, stderr
        pid = leak["details"]["pid"]
        assert leak["description"] == f"pid {pid}: exec sleep 30 (still running, never waited for)", stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int((tmp_path / "pid").read_text()), signal.SIGKILL)


def test_connection_first_on_a_uvloop_loop_leaves_no_untracked_descriptor(leakwatch: Watch) -> None:
    """libuv opens its spare /dev/null with a loop's first stream, a client connection too: the loop's."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    async def connect() -> None:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        writer.close()
        await writer.wait_closed()

    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(connect())
        listener.close()
        assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
    finally:
        loop.close()
        listener.close()
    assert leakwatch.leaks() == []


def test_uvloop_connection_works_when_os_listdir_and_readlink_refuse_in_the_loop(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The descriptor table a loop's first connection reads is read through os's C module: a test
    tool that makes ``os.listdir``/``os.readlink`` raise in an event loop (blockbuster, in anyio's
    suite) saw reclaim's reads as the program's blocking calls, and the program's call failed."""

    def refuse(*args: object) -> None:
        raise AssertionError("a blocking call in the event loop")

    with socket.create_server(("127.0.0.1", 0)) as listener:

        async def main() -> None:
            with monkeypatch.context() as patched:
                patched.setattr(os, "listdir", refuse)
                patched.setattr(os, "readlink", refuse)
                loop = asyncio.get_running_loop()
                transport, _ = await loop.create_connection(asyncio.Protocol, *listener.getsockname())
                transport.close()

        uvloop.run(main())
    assert leakwatch.leaks() == []


def _run_as_task(coro: Any) -> Any:
    """Run *coro* as a task on a uvloop loop, as pytest-sanic runs a test; close the loop after."""
    loop = uvloop.new_event_loop()
    try:
        return loop.run_until_complete(loop.create_task(coro))
    finally:
        loop.close()


class _Started:
    """Awaits *coro* as a task of its own, as sanic's ``AsyncioServer.__await__`` does."""

    def __init__(self, coro: Any) -> None:
        self.coro = coro

    def __await__(self) -> Any:
        task = asyncio.get_running_loop().create_task(self.coro)
        while not task.done():
            yield
        return task.result()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_what_a_task_of_its_own_connects_or_serves_names_the_programs_line_not_the_loops(
    leakwatch: Watch,
) -> None:
    """uvloop steps a task in C: past the task's first coroutine comes whatever ran the loop.
    A connection ``wait_for()`` made in a task of its own, and a server made by a
    ``create_server()`` that is itself a task's coroutine (sanic's), were at the line that ran
    the loop (pytest-sanic's ``run_until_complete``); they are at the program's lines."""
    lines: dict[str, int] = {}
    kept: list[Any] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await _Started(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
        lines["server"] = line() - 1
        port = server.sockets[0].getsockname()[1]
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        lines["client"] = line() - 1
        kept.append(writer)
        found = {}
        for leak in leakwatch.leaks("socket"):  # the server's, the client's, the one it accepted
            details = leak.details
            found[
                "server" if details.get("listening") else "accepted" if details.get("accepted") else "client"
            ] = leak
        lines["found"] = len(found)
        for name in ("server", "client"):
            shown = [(frame.filename, frame.lineno) for frame in found[name].frames]
            assert (__file__, lines[name]) in shown, found[name].frames
        writer.close()
        server.close()

    _run_as_task(main())
    assert lines["found"] == 3


def test_what_a_preexec_fn_puts_in_a_uvloop_childs_environment_reaches_it(leakwatch: Watch) -> None:
    """uvloop's test_process_preexec_fn: the child's ``preexec_fn`` sets a variable with
    ``os.putenv()``; the child was exec'd with a copy of the environment made before, naming it
    for its lineage, and lost that variable. It gets both now, as a Popen's child does."""
    import subprocess
    import sys

    from reclaim.leaks import _lineage

    async def main() -> bytes:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import os; print(os.getenv('RECLAIM_TEST_FRUIT'), os.getenv('RECLAIM_LINEAGE', '-'))",
            stdout=subprocess.PIPE,
            preexec_fn=lambda: os.putenv("RECLAIM_TEST_FRUIT", "apple"),
        )
        out, _ = await proc.communicate()
        return out

    fruit, lineage = uvloop.run(main()).decode().split()
    assert fruit == "apple"
    assert lineage.startswith(f"{os.getpid()}.") or not _lineage.ENABLED
    assert "RECLAIM_TEST_FRUIT" not in os.environ
