"""pyzmq: a socket never closed and a context never terminated are reported at their lines; what
libzmq opens for a context is that context's, not untracked descriptors."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import (
    Watch,
    assert_site,
    ignore_gc_warnings,
    leakwatch,
    line,
    reclaim_pytest_fails_one,
    reclaim_run_json,
)

zmq = pytest.importorskip("zmq")
zmq_asyncio = pytest.importorskip("zmq.asyncio")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

# Every way pyzmq's documentation ends a socket and a context, over TCP and inproc; zmq.asyncio
# too; and the process's own context, Context.instance(), and garbage collector thread (with its
# context and sockets), left for the process.
CLEAN = """\
    import asyncio
    import zmq
    import zmq.asyncio

    def exchange(ctx, endpoint):
        pull = ctx.socket(zmq.PULL)
        pull.bind(endpoint)
        push = ctx.socket(zmq.PUSH)
        push.connect(pull.getsockopt_string(zmq.LAST_ENDPOINT))
        push.send(b"hi")
        assert pull.recv() == b"hi"
        return pull, push

    ctx = zmq.Context()
    for sock in exchange(ctx, "tcp://127.0.0.1:*"):
        sock.close(linger=0)
    ctx.term()

    with zmq.Context() as ctx:
        pull, push = exchange(ctx, "inproc://clean")
        with pull, push:
            pass

    ctx = zmq.Context()
    sockets = exchange(ctx, "tcp://127.0.0.1:*")
    ctx.destroy(linger=0)

    with zmq.Context() as ctx:
        pull, push = exchange(ctx, "inproc://zero-copy")
        # A tracked zero-copy send starts pyzmq's garbage collector: its thread, context, sockets.
        tracker = push.send(b"x" * 100_000, copy=False, track=True)
        assert len(pull.recv()) == 100_000
        tracker.wait(10)
        push.close()
        pull.close()

    async def main():
        ctx = zmq.asyncio.Context()
        pull = ctx.socket(zmq.PULL)
        pull.bind("tcp://127.0.0.1:*")
        push = ctx.socket(zmq.PUSH)
        push.connect(pull.getsockopt_string(zmq.LAST_ENDPOINT))
        await push.send(b"hi")
        assert await pull.recv() == b"hi"
        push.close(linger=0)
        pull.close(linger=0)
        ctx.term()
        zmq.asyncio.Context.instance().socket(zmq.PUB).close()

    asyncio.run(main())
    for sock in exchange(zmq.Context.instance(), "tcp://127.0.0.1:*"):
        sock.close(linger=0)
"""


def test_a_correct_zmq_program_reports_nothing(tmp_path: Path) -> None:
    """libzmq opens eventfds, epoll descriptors and its connections in C: a correct program
    that kept Context.instance() for the process had them reported as untracked."""
    report, stderr = reclaim_run_json(tmp_path, CLEAN)
    assert report["leaks"] == [], stderr


@pytest.fixture
def context() -> Iterator[Any]:
    """A context of the test's own, destroyed afterwards whatever the test left open."""
    ctx = zmq.Context()
    try:
        yield ctx
    finally:
        ctx.destroy(linger=0)


def pair(ctx: Any, endpoint: str = "tcp://127.0.0.1:*") -> tuple[Any, Any, str]:
    """A PULL socket bound to *endpoint* and a PUSH connected to it, one message through."""
    pull = ctx.socket(zmq.PULL)
    pull.bind(endpoint)
    where = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    push = ctx.socket(zmq.PUSH)
    push.connect(where)
    push.send(b"hi")
    assert pull.recv() == b"hi"
    return pull, push, where


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_open_contexts_descriptors_are_its_own(leakwatch: Watch) -> None:
    """Its threads' epoll and eventfd descriptors, its sockets' mailboxes, its listening and
    connected sockets: held by the context, listed as none of them."""
    ctx = zmq.Context()
    try:
        pull, push, _ = pair(ctx)
        found = sorted(leak.kind for leak in leakwatch.leaks())
        assert found == ["zmq-context", "zmq-socket", "zmq-socket"]
        push.close(linger=0)
        pull.close(linger=0)
        assert [leak.kind for leak in leakwatch.leaks(grace=10.0)] == ["zmq-context"]
    finally:
        ctx.destroy(linger=0)
    assert leakwatch.leaks() == []


def test_while_a_context_is_open_a_check_waits_for_an_untracked_descriptor(leakwatch: Watch) -> None:
    """libzmq's threads close a closed socket's connections a moment later, as Python threads
    would: a check's grace period waits for what no hook saw opened. (One closed here by a
    timer signal's handler; another library's epoll descriptor is not libzmq's.)"""
    import select
    import signal

    if not hasattr(select, "epoll") or not hasattr(signal, "setitimer"):
        pytest.skip("select.epoll and signal.setitimer are Linux's")
    with zmq.Context() as ctx, ctx.socket(zmq.PAIR):
        poller = select.epoll()  # a descriptor no hook sees opened
        previous = signal.signal(signal.SIGALRM, lambda *_: poller.close())
        try:
            assert [leak.kind for leak in leakwatch.leaks("untracked-fd")] == ["untracked-fd"]
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            assert leakwatch.leaks("untracked-fd", grace=30.0) == []
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
            poller.close()


@pytest.mark.reclaim_allow
def test_a_socket_never_closed_is_reported_at_the_line_that_made_it(leakwatch: Watch, context: Any) -> None:
    """libzmq connects in C: a socket left open was only untracked descriptors, with no line."""
    pull = context.socket(zmq.PULL)
    pull.bind("tcp://127.0.0.1:*")
    where = pull.getsockopt_string(zmq.LAST_ENDPOINT)
    push = context.socket(zmq.PUSH)
    at = line() - 1
    push.connect(where)
    push.send(b"hi")
    assert pull.recv() == b"hi"
    pull.close(linger=0)
    leak = leakwatch.one("zmq-socket", grace=10.0)
    assert_site(leak, at)
    assert leak.description == f"zmq.PUSH socket connected to {where} not closed (close(), or a with-block)"
    assert leak.details == {"type": "PUSH", "bound": [], "connected": [where]}
    assert leak.state == "open"
    assert [found.kind for found in leakwatch.leaks(grace=10.0)] == ["zmq-context", "zmq-socket"]
    push.close(linger=0)
    assert [found.kind for found in leakwatch.leaks(grace=10.0)] == ["zmq-context"]


@pytest.mark.reclaim_allow
def test_a_bound_socket_says_the_port_the_system_chose(leakwatch: Watch, context: Any) -> None:
    sock = context.socket(zmq.PUB)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    assert leakwatch.one("zmq-socket").details["bound"] == [f"tcp://127.0.0.1:{port}"]
    sock.close(linger=0)


@pytest.mark.reclaim_allow
def test_a_context_never_terminated_is_reported_at_its_line(leakwatch: Watch) -> None:
    ctx = zmq.Context()
    at = line() - 1
    try:
        pull, push, _ = pair(ctx, "inproc://never-terminated")
        push.close()
        pull.close()
        leak = leakwatch.one("zmq-context")
        assert_site(leak, at)
        assert leak.description == "zmq.Context not terminated (term(), destroy(), or a with-block)"
        assert leak.state == "open"
        assert [found.kind for found in leakwatch.leaks(grace=10.0)] == ["zmq-context"]
    finally:
        ctx.term()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow
@ignore_gc_warnings  # pyzmq warns when its __del__ closes a socket or destroys a context
def test_a_socket_and_context_dropped_open_are_the_collectors(leakwatch: Watch) -> None:
    """pyzmq's __del__ closes a socket and destroys a context the program dropped: never released."""

    def drop() -> int:
        ctx = zmq.Context()
        ctx.socket(zmq.PUSH).connect("tcp://127.0.0.1:9")
        return line() - 2

    at = drop()
    gc.collect()
    found = sorted(leakwatch.leaks(), key=lambda leak: leak.kind)
    assert [(leak.kind, leak.state) for leak in found] == [
        ("zmq-context", "collected"),
        ("zmq-socket", "collected"),
    ]
    assert_site(found[0], at)
    assert_site(found[1], at + 1)


@pytest.mark.reclaim_allow
def test_a_with_block_or_destroy_releases_the_context_and_its_sockets(leakwatch: Watch) -> None:
    """destroy() closes the sockets left open, then terminates: the program's own doing."""
    with zmq.Context() as ctx:
        pull, push, _ = pair(ctx, "inproc://with-block")
        push.close()
        pull.close()
    assert leakwatch.leaks() == []
    ctx = zmq.Context()
    sockets = pair(ctx)
    assert sorted(leak.kind for leak in leakwatch.leaks()) == ["zmq-context", "zmq-socket", "zmq-socket"]
    ctx.destroy(linger=0)
    assert leakwatch.leaks() == []
    with pytest.warns(ResourceWarning, match="unclosed socket"), zmq.Context() as ctx:
        sockets = pair(ctx, "inproc://left-to-the-with-block")
        assert len(leakwatch.leaks("zmq-socket")) == 2
    assert all(sock.closed for sock in sockets[:2])
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow
def test_the_process_wide_context_is_not_a_leak_its_sockets_are(leakwatch: Watch) -> None:
    """Context.instance() is pyzmq's, kept for the process; a socket made on it is the program's."""
    ctx = zmq.Context.instance()
    try:
        pull, push, _ = pair(ctx)
        push.close(linger=0)
        pull.close(linger=0)
        assert leakwatch.leaks(grace=10.0) == []
        sock = ctx.socket(zmq.DEALER)
        at = line() - 1
        try:
            assert_site(leakwatch.one("zmq-socket"), at)
            assert [leak.kind for leak in leakwatch.leaks()] == ["zmq-socket"]
        finally:
            sock.close(linger=0)
        assert leakwatch.leaks(grace=10.0) == []
    finally:
        # Not left for the rest of the session: while a context is open, checks wait their grace
        # period for any untracked descriptor (libzmq's threads may be closing it).
        ctx.term()


@pytest.mark.reclaim_allow
def test_asyncio_sockets_and_contexts_are_tracked_alike(leakwatch: Watch) -> None:
    async def main() -> None:
        ctx = zmq_asyncio.Context()
        made_at = line() - 1
        pull = ctx.socket(zmq.PULL)
        pull.bind("tcp://127.0.0.1:*")
        try:
            push = ctx.socket(zmq.PUSH)
            push.connect(pull.getsockopt_string(zmq.LAST_ENDPOINT))
            await push.send(b"hi")
            assert await pull.recv() == b"hi"
            # the loop and task running this are open too: no grace period (it would wait for it)
            found = [leak for leak in leakwatch.leaks() if leak.kind.startswith("zmq-")]
            assert [leak.kind for leak in found] == ["zmq-context", "zmq-socket", "zmq-socket"]
            assert_site(found[0], made_at)
            assert found[0].details == {"class": "zmq.asyncio.Context"}
            assert_site(found[2], made_at + 5)
            assert found[2].description.startswith("zmq.PUSH socket connected to tcp://127.0.0.1:")
            push.close(linger=0)
        finally:
            pull.close(linger=0)
            ctx.term()

    asyncio.run(main())
    assert leakwatch.leaks() == []


def test_pytest_fails_the_test_that_left_a_zmq_socket_open(pytester: pytest.Pytester) -> None:
    """--reclaim: tests that close their sockets pass, on a context of their own or the process's;
    the one leaving a socket open fails, at its line."""
    pytester.makepyfile(
        test_zq="""
        import zmq

        def test_own_context():
            with zmq.Context() as ctx, ctx.socket(zmq.PAIR) as a, ctx.socket(zmq.PAIR) as b:
                a.bind("inproc://own")
                b.connect("inproc://own")

        def test_process_context():
            ctx = zmq.Context.instance()
            with ctx.socket(zmq.PUB) as pub:
                pub.bind("tcp://127.0.0.1:*")
                pub.linger = 0

        def test_left_open():
            test_left_open.sock = zmq.Context.instance().socket(zmq.PUSH)
        """
    )
    reclaim_pytest_fails_one(pytester, 3, "test_left_open", "test_zq.py:15")


def test_a_contexts_descriptors_are_found_by_numbers_not_one_stat_per_descriptor_open(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Making a context and its first socket reads the descriptor table before and after: with
    an identity (a ``fstat()``) per descriptor open, 400 of them made that 30x slower (ipykernel's
    heartbeat thread then lost a race to its test's close()). Only what appeared is looked at;
    the descriptor the listing was read through, closed by then, is no number the next one
    opened may take unseen."""
    from reclaim.leaks import _fds

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(50)]
    looked: list[int] = []
    identity = _fds.identity
    monkeypatch.setattr(_fds, "identity", lambda fd: looked.append(fd) or identity(fd))
    try:
        before = _fds.table()
        fd = os.open(os.devnull, os.O_RDONLY)  # the lowest free number: listdir's, before
        try:
            assert before is not None and fd not in before
        finally:
            os.close(fd)
        ctx = zmq.Context()
        sock = ctx.socket(zmq.PAIR)
        sock.close()
        ctx.term()
        assert len(looked) < 20, looked
    finally:
        for fd in held:
            os.close(fd)
    assert leakwatch.leaks() == []
