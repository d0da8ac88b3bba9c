"""gevent: its hubs' loops report nothing, its sockets and servers are tracked at the program's line."""

from __future__ import annotations

import gc
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import reclaim.leaks._tracker
from _leakhelp import (
    Watch,
    ignore_gc_warnings,
    leakwatch,
    line,
    python_prog,
    reclaim_pytest_fails_one,
    reclaim_run_json,
)

gevent = pytest.importorskip("gevent")
gevent_event = pytest.importorskip("gevent.event")
gevent_server = pytest.importorskip("gevent.server")
gevent_socket = pytest.importorskip("gevent.socket")

pytest_plugins = ["pytester"]

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

CLEAN = """\
    import threading
    import gevent, gevent.server, gevent.socket

    def handle(sock, addr):
        sock.sendall(sock.recv(10))
        sock.close()

    server = gevent.server.StreamServer(("127.0.0.1", 0), handle)
    server.start()
    with gevent.socket.create_connection(server.address) as conn:
        conn.sendall(b"hi")
        assert conn.recv(10) == b"hi"
    server.stop()
    assert gevent.spawn(lambda: 1).get() == 1
    assert gevent.socket.getaddrinfo("127.0.0.1", 80)
    assert gevent.get_hub().threadpool.spawn(lambda: 2).get() == 2
"""

# Run in a real thread only without monkey-patching (which makes threads greenlets of one hub).
THREAD_HUB = """\
    def other():
        hub = gevent.get_hub()
        gevent.sleep(0)
        hub.destroy()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
"""

# What monkey-patching changes: socket.socket is gevent's, os.close closes a loop turn later.
PATCHED = """\
    import os, socket, subprocess
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, _ = listener.accept()
    for sock in (accepted, client, listener):
        sock.close()
    a, b = socket.socketpair()
    a.close()
    b.close()
    assert subprocess.check_output(["echo", "x"]) == b"x\\n"
    r, w = os.pipe()
    os.close(r)
    os.close(w)
"""

MONKEY = "    from gevent import monkey; monkey.patch_all()\n"


@pytest.mark.parametrize("patched", [False, True], ids=["plain", "monkey-patched"])
def test_clean_gevent_programs_report_nothing(tmp_path: Path, patched: bool) -> None:
    """The hub's epoll and eventfd, its threadpool and resolver, a thread's hub destroyed: no leak."""
    source = MONKEY + CLEAN + PATCHED if patched else CLEAN + THREAD_HUB
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


# Line 3 makes the socket.
PATCHED_SOCKET_LEFT_OPEN = """\
    from gevent import monkey; monkey.patch_all()
    import socket
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
"""


def test_monkey_patched_socket_left_open_is_reported_at_its_line(tmp_path: Path) -> None:
    """socket.socket is gevent's class once patched: it is still a socket leak, with its address."""
    report, stderr = reclaim_run_json(tmp_path, PATCHED_SOCKET_LEFT_OPEN)
    assert report["counts"] == {"socket": 1}, stderr
    (leak,) = report["leaks"]
    assert leak["frames"][0]["line"] == 3, stderr
    assert leak["description"].startswith("AF_INET/SOCK_STREAM 127.0.0.1:"), stderr


# A tracker started once monkey-patching replaced socket.socket and subprocess.Popen.
TRACKER_AFTER_PATCHING = """\
    from gevent import monkey; monkey.patch_all()
    import socket, subprocess
    from reclaim.leaks import Tracker
    with Tracker() as tracker:
        subprocess.run(["true"], check=True)
        sock = socket.socket()  # line 6
        print([(leak.kind, leak.frames[0].lineno) for leak in tracker.leaks()])
        sock.close()
        print(tracker.leaks())
"""


def test_tracker_started_after_monkey_patching_tracks_gevent_sockets(tmp_path: Path) -> None:
    """Started after patch_all(): it starts (gevent's Popen has no __del__), and tracks gevent's sockets."""
    out = python_prog(tmp_path, TRACKER_AFTER_PATCHING)
    assert out.stdout.splitlines() == ["[('socket', 6)]", "[]"], out.stderr


def test_gevent_socket_left_open_is_reported_with_its_addresses(leakwatch: Watch) -> None:
    """create_connection's gevent socket is a socket leak at the program's line, until closed."""
    with gevent_server.StreamServer(("127.0.0.1", 0), lambda sock, addr: sock.close()) as server:
        server.start()
        conn = gevent_socket.create_connection(server.address)  # made here
        made_at = line() - 1
        try:
            (leak,) = [leak for leak in leakwatch.leaks("socket") if "peer" in leak.details]
            assert leak.frames[0].lineno == made_at
            assert leak.details["peer"] == f"127.0.0.1:{server.address[1]}"
        finally:
            conn.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_gevent_socket_dropped_unclosed_is_closed_by_the_collector(leakwatch: Watch) -> None:
    """A gevent socket has no __del__: its raw socket's deallocation closing it is the collector's doing."""

    def make() -> None:
        gevent_socket.socket()  # made here

    made_at = line() - 2
    make()
    gc.collect()
    leak = leakwatch.one("socket")
    assert (leak.state, leak.frames[0].lineno) == ("collected", made_at)


def test_stream_server_never_stopped_is_its_listening_socket_at_the_start_line(leakwatch: Watch) -> None:
    """The server keeps only the raw socket it unwraps: that is the leak, and stop() releases it."""
    server = gevent_server.StreamServer(("127.0.0.1", 0), lambda sock, addr: sock.close())
    server.start()  # the listening socket is made here
    started_at = line() - 1
    try:
        leak = leakwatch.one("socket")
        assert leak.frames[0].lineno == started_at
        assert leak.details["local"] == f"127.0.0.1:{server.address[1]}"
    finally:
        server.stop()
    gc.collect()
    assert leakwatch.leaks() == []


def test_hub_of_a_thread_not_destroyed_is_an_eventloop_until_destroyed(leakwatch: Watch) -> None:
    """A thread's hub has its own loop: one eventloop entry, claiming its descriptors, until destroy()."""
    made: list[object] = []
    done = threading.Event()

    def other() -> None:
        made.append(gevent.get_hub())  # made here
        done.set()

    made_at = line() - 3
    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert done.is_set()
    leak = leakwatch.one("eventloop")
    assert leak.frames[0].lineno == made_at
    assert leak.description.startswith("gevent.hub.Hub (libev, fds "), leak.description
    assert [found.kind for found in leakwatch.leaks()] == ["eventloop"]
    made[0].destroy()  # type: ignore[attr-defined]
    assert leakwatch.leaks() == []


def test_pytest_passes_clean_gevent_tests_and_fails_the_one_leaving_a_socket(
    pytester: pytest.Pytester,
) -> None:
    """--reclaim: the hub's descriptors fail no test; a gevent socket left open fails its test."""
    pytester.makepyfile(
        test_gv="""
        import gevent, gevent.server, gevent.socket

        def test_spawn():
            assert gevent.spawn(lambda: 1).get() == 1

        def test_echo():
            server = gevent.server.StreamServer(("127.0.0.1", 0), lambda s, a: s.close())
            server.start()
            with gevent.socket.create_connection(server.address):
                pass
            server.stop()

        def test_left_open():
            test_left_open.sock = gevent.socket.socket()
        """
    )
    reclaim_pytest_fails_one(pytester, 3, "test_left_open", "test_gv.py:14")


# Greenlets joined, finished, killed before and after starting, and one left pending at line 16.
GREENLETS = """\
    import gevent, gevent.event, gevent.pool

    def forever():
        gevent.event.Event().wait()

    gevent.spawn(lambda: 1).join()
    finished = gevent.spawn(lambda: 2)
    killed = gevent.spawn(forever)
    never_started = gevent.spawn(forever)
    never_started.kill()
    gevent.sleep(0)
    killed.kill()
    pool = gevent.pool.Pool(2)
    pool.spawn(forever).kill()
    assert finished.dead
    pending = gevent.spawn(forever)
    gevent.sleep(0)
"""


def test_greenlet_left_pending_is_a_task_at_its_spawn_line(tmp_path: Path) -> None:
    """As an asyncio task left pending: kind task, its function and where it waits, at the spawn
    line; greenlets that finished or were killed, and gevent's hub, are no leak."""
    report, stderr = reclaim_run_json(tmp_path, GREENLETS)
    assert report["counts"] == {"task": 1}, stderr
    (leak,) = report["leaks"]
    assert (leak["state"], leak["frames"][0]["line"]) == ("open", 16), stderr
    assert leak["description"].startswith("'Greenlet-"), stderr
    assert leak["description"].endswith("' running forever(), suspended at prog.py:4")  # run in tmp_path
    assert leak["details"]["awaiting"].endswith("prog.py:4"), stderr


def _socket_in_a_greenlet() -> socket.socket:
    return socket.socket()


def test_what_a_raw_greenlet_acquires_goes_on_at_the_line_that_switched_to_it(leakwatch: Watch) -> None:
    """``greenlet(fn).switch()`` (SQLAlchemy's asyncio ``run_sync()``, peewee's ``db.run()``) runs
    ``fn`` on a stack of its own: its socket was at ``fn``'s line alone, the line that switched to
    it never shown. A gevent greenlet, whose parent is the hub, still goes on at its spawn line."""
    greenlet = pytest.importorskip("greenlet")
    made = greenlet.greenlet(_socket_in_a_greenlet).switch()
    at = line() - 1
    with made:
        leak = leakwatch.one("socket")
        assert [(frame.filename, frame.lineno) for frame in leak.frames[:2]] == [
            (__file__, _socket_in_a_greenlet.__code__.co_firstlineno + 1),
            (__file__, at),
        ]
    spawned = gevent.spawn(_socket_in_a_greenlet)
    spawned_at = line() - 1
    with spawned.get():
        leak = leakwatch.one("socket")
        assert [frame.lineno for frame in leak.frames[:2]] == [
            _socket_in_a_greenlet.__code__.co_firstlineno + 1,
            spawned_at,
        ], leak.frames
    assert leakwatch.leaks() == []


def test_greenlet_suspended_in_compiled_code_is_not_said_to_be_unstarted(leakwatch: Watch) -> None:
    """A greenlet running gevent's compiled ``Channel.put`` has no Python frame while it waits
    for a taker: it was "not started yet", though its item had been taken (gevent's
    ``test__queue``)."""
    from gevent.queue import Channel

    channel: Any = Channel()
    greenlet = gevent.spawn(channel.put, StopIteration)
    try:
        assert leakwatch.one("task").description.endswith("running Channel.put(), not started yet")
        assert list(channel) == []  # put() ran: it handed StopIteration over, and waits on
        assert leakwatch.one("task").description.endswith("running Channel.put(), suspended in compiled code")
    finally:
        greenlet.kill()
    assert leakwatch.leaks() == []


def test_pending_greenlet_is_a_task_until_killed(leakwatch: Watch) -> None:
    """Spawned, then waiting: a task at its spawn line, waiting in its function; killed, released."""
    event = gevent_event.Event()

    def wait_for_event() -> None:
        event.wait()

    greenlet = gevent.spawn(wait_for_event)  # spawned here
    spawned_at = line() - 1
    try:
        function = wait_for_event.__qualname__
        assert leakwatch.one("task").description == f"{greenlet.name!r} running {function}(), not started yet"
        gevent.sleep(0)
        leak = leakwatch.one("task")
        assert leak.frames[0].lineno == spawned_at
        assert leak.details["awaiting"] == f"{__file__}:{wait_for_event.__code__.co_firstlineno + 1}"
    finally:
        greenlet.kill()
    assert leakwatch.leaks() == []


def test_pending_greenlet_of_the_checking_threads_hub_is_not_waited_for(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unpatched, a check's wait is a real time.sleep that never switches to this thread's hub:
    its greenlets cannot run meanwhile, and each test that left one (python-engineio's server
    tests, a ping greenlet spawned and never started) paid the whole grace period for it."""
    from reclaim.leaks import _tracker

    event = gevent_event.Event()
    greenlet = gevent.spawn(event.wait)

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the check waited ({seconds} s) for a greenlet its hub cannot run")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(_tracker.time, "sleep", no_sleep)
            leak = leakwatch.one("task", grace=30.0)
            gevent.sleep(0)  # it starts, and waits on the event
            assert leakwatch.one("task", grace=30.0).details["hub_held"] is True
        assert leak.details["hub_held"] is True
    finally:
        greenlet.kill()
    assert leakwatch.leaks() == []


def test_pending_greenlet_of_another_threads_hub_is_waited_for(leakwatch: Watch) -> None:
    """A greenlet of a hub another thread runs may still end while the check waits: it is waited
    for (only the checking thread's own hub is known to stand still)."""
    spawned = threading.Event()
    release = threading.Event()

    def other() -> None:
        event = gevent_event.Event()
        greenlet = gevent.spawn(event.wait)
        spawned.set()
        release.wait(30)  # a real wait: this hub does not run meanwhile, and the greenlet waits
        event.set()
        greenlet.join()  # runs the hub: the greenlet ends, and its record is released
        gevent.get_hub().destroy()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert spawned.wait(30)
        [task] = [held for held in leakwatch.one("thread").holds if held.kind == "task"]
        assert "hub_held" not in task.details
        assert reclaim.leaks._tracker._winding_down(task)
    finally:
        release.set()
        thread.join()
    assert leakwatch.leaks() == []


# A monkey-patched thread left running (line 4): its greenlet is the thread's, not a task too.
PATCHED_THREAD_LEFT = """\
    from gevent import monkey; monkey.patch_all()
    import threading
    stop = threading.Event()
    threading.Thread(target=stop.wait, daemon=True).start()
"""


def test_monkey_patched_thread_left_running_is_one_thread_not_also_a_task(tmp_path: Path) -> None:
    """A patched Thread runs in a greenlet: the thread is reported, not its greenlet beside it."""
    report, stderr = reclaim_run_json(tmp_path, PATCHED_THREAD_LEFT)
    assert report["counts"] == {"thread": 1}, stderr
    assert report["leaks"][0]["frames"][0]["line"] == 4, stderr


# A child waited for, then one never waited for at line 5 (the first line picks the Popen).
CHILD_LEFT = """\
    {popen}
    import subprocess
    done = Popen(["true"])
    done.wait()
    child = Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    with open("pid", "w") as out:
        out.write(str(child.pid))
"""

POPENS = {
    "standard": "from subprocess import Popen",
    "monkey-patched": "from gevent import monkey; monkey.patch_all(); from subprocess import Popen",
    "gevent.subprocess": "from gevent.subprocess import Popen",
}


@pytest.mark.parametrize("popen", POPENS.values(), ids=POPENS.keys())
def test_gevent_popen_never_waited_for_is_reported_as_the_standard_one(tmp_path: Path, popen: str) -> None:
    """gevent's Popen, monkey-patched or not: the child and its two pipes at its line, as subprocess's."""
    report, stderr = reclaim_run_json(tmp_path, CHILD_LEFT.format(popen=popen))
    pid = (tmp_path / "pid").read_text()
    found = sorted(
        (leak["kind"], leak["description"].replace(pid, "PID"), leak["frames"][0]["line"])
        for leak in report["leaks"]
    )
    assert found == [
        ("file", "stdin pipe of subprocess pid PID (mode 'wb')", 5),
        ("file", "stdout pipe of subprocess pid PID (mode 'rb')", 5),
        ("subprocess", "pid PID: cat (still running, never waited for)", 5),
    ], stderr


# A child waited for whose stdout pipe is read, then dropped unclosed (line 4); one closed (line 7).
PIPE_DROPPED = """\
    {popen}
    import subprocess, sys
    def run():
        child = Popen([sys.executable, "-c", "print('hi')"], stdout=subprocess.PIPE)
        child.wait()
        assert child.stdout.read() == b"hi\\n"
    run()
    child = Popen([sys.executable, "-c", "print('hi')"], stdout=subprocess.PIPE)
    child.wait()
    child.stdout.close()
"""


@pytest.mark.parametrize("popen", POPENS.values(), ids=POPENS.keys())
def test_gevent_popen_pipe_dropped_unclosed_is_closed_by_the_collector_as_the_standard_ones(
    tmp_path: Path, popen: str
) -> None:
    """gevent's pipe of a child waited for, dropped unclosed, was not reported (locust's
    ``PopenContextManager``): its buffered layer's finalizer closed it, as the standard one's
    does, which is reported."""
    report, stderr = reclaim_run_json(tmp_path, PIPE_DROPPED.format(popen=popen))
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("file", "collected", 4)], stderr


def test_hub_not_destroyed_is_an_eventloop_in_a_program_that_never_imports_asyncio(tmp_path: Path) -> None:
    """gevent's integration registers the eventloop kind its hubs are recorded as: asyncio's
    (which registers it too) is not loaded for a program that does not import asyncio."""
    report, _ = reclaim_run_json(
        tmp_path,
        """\
        import sys, threading
        import gevent

        hubs = []
        thread = threading.Thread(target=lambda: hubs.append(gevent.get_hub()))
        thread.start()
        thread.join()
        assert "asyncio" not in sys.modules
        """,
    )
    [leak] = report["leaks"]
    assert leak["kind"] == "eventloop"
    assert leak["description"].startswith("gevent.hub.Hub (libev, fds "), leak["description"]
