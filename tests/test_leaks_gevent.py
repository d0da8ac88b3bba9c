"""gevent: its hubs' loops report nothing, its sockets and servers are tracked at the program's line."""

from __future__ import annotations

import gc
import threading
from pathlib import Path

import pytest

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
