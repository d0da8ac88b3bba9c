"""tornado: what a server's accept callback makes is at the program's line that started the server."""

from __future__ import annotations

import asyncio
import socket

import pytest

from _leakhelp import Watch, leakwatch, line, loop_in_a_thread

pytest.importorskip("tornado")
from tornado.iostream import IOStream
from tornado.tcpserver import TCPServer

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


class Waiting(TCPServer):
    """A server whose handler waits for a byte its client never sends."""

    def __init__(self) -> None:
        super().__init__()
        self.streams: list[IOStream] = []
        self.accepted = asyncio.Event()

    async def handle_stream(self, stream: IOStream, address: object) -> None:
        self.streams.append(stream)
        self.accepted.set()
        await stream.read_bytes(1)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_handler_task_left_pending_is_at_the_line_that_started_the_server(leakwatch: Watch) -> None:
    """The task a ``TCPServer`` runs its handler in was made in a loop callback, at tornado's lines
    only (``accept_handler``, ``_handle_connection``, ``convert_yielded``): it goes on at the line
    that started the server, as an ``asyncio.start_server`` handler's does."""
    server = Waiting()
    client = socket.socket()

    started: list[int] = []
    listening: list[int] = []

    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        listening.append(line() - 1)
        listener.setblocking(False)  # as tornado's bind_sockets() makes them: its accept loop needs it
        server.add_sockets([listener])  # closed by server.stop()
        started.append(line() - 1)
        client.connect(listener.getsockname())
        await server.accepted.wait()
        server.stop()

    try:
        asyncio.run(main())  # the handler still waits: cancelled as the loop shuts down
        [task] = leakwatch.leaks("task")
        [accepted] = [leak for leak in leakwatch.leaks("socket") if leak.details["fd"] != client.fileno()]
        for leak, at in ((task, started[0]), (accepted, listening[0])):
            # After tornado's frames (the report's "inside tornado"), the program's line: the one
            # that started the server, or for the socket, as for any accept(), the listener's.
            here = [(frame.filename, frame.lineno) for frame in leak.frames if frame.filename == __file__]
            assert here[:1] == [(__file__, at)], leak.headline()
            text = leakwatch.tracker.report([leak]).to_text()
            [acquired] = [row for row in text.splitlines() if row.lstrip().startswith("acquired at ")]
            assert f"test_leaks_tornado.py:{at} in " in acquired, text
        assert "Waiting.handle_stream" in task.description, task.description
    finally:
        client.close()
        for stream in server.streams:
            stream.socket.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_task_a_run_sync_callback_made_is_at_the_run_sync_line(leakwatch: Watch) -> None:
    """``IOLoop.run_sync`` registers a callback before it runs the loop, outside any task; the
    callback makes the coroutine's task at tornado's lines only. Its stack ended there, with no
    line of the program's at any depth: it goes on at the line that ran the loop."""
    from tornado.ioloop import IOLoop

    loop = IOLoop(make_current=False)

    async def stuck() -> None:
        IOLoop.current().stop()  # run_sync returns at once, its task still pending
        await asyncio.Event().wait()

    try:
        with pytest.raises(RuntimeError):
            loop.run_sync(stuck)
        at = line() - 1
        [task] = leakwatch.leaks("task")
        here = [frame.lineno for frame in task.frames if frame.filename == __file__]
        assert here == [at], task.headline()
        text = leakwatch.tracker.report([task]).to_text()
        assert f"acquired at tests/test_leaks_tornado.py:{at} in " in text, text
    finally:
        pending = asyncio.all_tasks(loop.asyncio_loop)
        for each in pending:
            each.cancel()
        loop.asyncio_loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.close()
    assert leakwatch.leaks() == []


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("where", ["another thread", "a task on the loop"])
def test_a_task_an_add_callback_made_is_at_the_add_callback_line(leakwatch: Watch, where: str) -> None:
    """``IOLoop.add_callback(coroutine_function)`` makes the task in a loop callback, at tornado's
    lines only: from another thread (joblib's dask backend runs its loop so) it was reported at
    no line of the program's, from a task on the loop at the line that ran the loop. It goes
    on at the line that added the callback."""
    from tornado.ioloop import IOLoop

    at = 0
    if where == "another thread":
        with loop_in_a_thread(IOLoop.current) as io_loop:  # cancels the task left pending as it stops
            io_loop.add_callback(_forever)
            at = line() - 1
    else:

        async def main() -> None:
            nonlocal at
            IOLoop.current().add_callback(_forever)
            at = line() - 1
            await asyncio.sleep(0)  # the callback runs, making the task
            await asyncio.sleep(0)  # which starts

        asyncio.run(main())
    [task] = leakwatch.leaks("task")
    here = [frame.lineno for frame in task.frames if frame.filename == __file__]
    assert here[:1] == [at], task.headline()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_task_an_add_future_callback_made_is_at_the_add_future_line(leakwatch: Watch) -> None:
    """``IOLoop.add_future(future, callback)`` runs the callback as the future's done callback:
    a task it made was at the line that ran the loop (jupyter_server's gateway connection, its
    message reader). It goes on at the line that added it."""
    from tornado.ioloop import IOLoop

    at = 0

    async def main() -> None:
        nonlocal at
        future = asyncio.get_running_loop().create_future()
        IOLoop.current().add_future(future, lambda done: _forever())
        at = line() - 1
        future.set_result(None)
        for _ in range(3):  # done callback, task made, task started
            await asyncio.sleep(0)

    asyncio.run(main())
    [task] = leakwatch.leaks("task")
    here = [frame.lineno for frame in task.frames if frame.filename == __file__]
    assert here[:1] == [at], task.headline()
