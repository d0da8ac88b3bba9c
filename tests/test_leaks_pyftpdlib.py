"""pyftpdlib: the IOLoop it keeps for the process is its own; a loop the program makes is not."""

from __future__ import annotations

import pytest

from _leakhelp import Watch, leakwatch, reclaim_pytest

ioloop = pytest.importorskip("pyftpdlib.ioloop")

pytest_plugins = ["pytester"]

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

needs_poller = pytest.mark.skipif(
    not hasattr(ioloop.IOLoop, "fileno"), reason="this platform's IOLoop (select, poll) has no descriptor"
)


@needs_poller
def test_the_process_loop_made_by_instance_is_not_an_untracked_descriptor(leakwatch: Watch) -> None:
    """``IOLoop.instance()`` makes the loop pyftpdlib keeps for the process; its epoll (kqueue)
    descriptor, opened in C, was reported as untracked by the check of whoever asked first."""
    ioloop.IOLoop.instance().close()  # closing any loop drops the instance: the next is made here
    loop = ioloop.IOLoop.instance()
    try:
        assert leakwatch.leaks("untracked-fd") == []
        assert ioloop.IOLoop.instance() is loop
    finally:
        loop.close()


@needs_poller
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_loop_the_program_makes_itself_and_never_closes_is_still_reported(leakwatch: Watch) -> None:
    """Only the process's loop is pyftpdlib's: one made with ``IOLoop()`` is the program's."""
    loop = ioloop.IOLoop()
    try:
        leak = leakwatch.one("untracked-fd")
        assert leak.details["fd"] == loop.fileno()
    finally:
        loop.close()


@needs_poller
def test_pytest_fails_no_test_for_the_loop_a_fixture_asks_for_after_each_test(
    pytester: pytest.Pytester,
) -> None:
    """--reclaim: pyftpdlib's own conftest asks for ``IOLoop.instance()`` after every test, to check
    it is empty; a test that closed a loop (which drops the instance) had the next one made in its
    teardown and failed for its descriptor. A server left open still fails its test."""
    pytester.makeconftest(
        """
        import pytest
        from pyftpdlib.ioloop import IOLoop

        @pytest.fixture(autouse=True)
        def empty_loop():
            yield
            assert not IOLoop.instance().socket_map
        """
    )
    source = """\
import socket
from pyftpdlib.ioloop import IOLoop

def test_first():
    pass

def test_closes_its_own_loop():
    with IOLoop.factory():
        pass

def test_socket_left():
    socket.socket()
"""
    pytester.makepyfile(test_loop=source)
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_socket_left*", "*this test leaked 1 resource*"])
    assert "untracked-fd" not in result.stdout.str()
