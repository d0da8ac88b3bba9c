"""execnet: a gateway closed with ``exit()`` leaves its child to its group's exit handler, which
waits for it; a gateway never closed is the program's leak, its child at the line that made it."""

from __future__ import annotations

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line

execnet = pytest.importorskip("execnet")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


def test_a_gateway_closed_with_exit_leaves_no_zombie(leakwatch: Watch) -> None:
    """``gw.exit()`` is execnet's close: it defers waiting for the child to ``Group.terminate()``,
    which the group registered with atexit. The child was "exited but never waited for: a
    zombie" at ``makegateway()``'s line (pytest-xdist's own suite: 17 errors)."""
    group = execnet.Group()
    gw = group.makegateway("popen")
    channel = gw.remote_exec("channel.send(channel.receive() + 1)")
    channel.send(1)
    assert channel.receive() == 2
    gw.exit()
    assert gw._io.popen.returncode is None  # not waited for: that is the group's, at exit
    assert leakwatch.leaks("subprocess") == []
    group.terminate()  # the same, now: nothing of the group's outlives the test


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_gateway_never_exited_is_a_child_left_running(leakwatch: Watch) -> None:
    group = execnet.Group()
    gw = group.makegateway("popen")
    at = line() - 1
    try:
        assert gw.remote_exec("channel.send(7)").receive() == 7
        [child] = leakwatch.leaks("subprocess")
        assert child.state == "open" and child.details["pid"] == gw._io.popen.pid
        assert_site(child, at)
    finally:
        group.terminate(timeout=10)
    assert leakwatch.leaks("subprocess") == []
