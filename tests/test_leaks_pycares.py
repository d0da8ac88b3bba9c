"""pycares: the descriptors c-ares opens for a channel (and closes on pycares' thread) are its own."""

from __future__ import annotations

import os

import pytest

from _leakhelp import Watch, leakwatch, untracked_epoll

pycares = pytest.importorskip("pycares")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


def test_a_channels_descriptors_are_not_reported_as_untracked(leakwatch: Watch) -> None:
    """Its epoll, wake-up pipe and inotify descriptors are opened in C, unseen by any hook, and
    closed on pycares' reaper thread a moment after the channel is closed or dropped: every
    aiohttp session with aiodns installed was reported with them as untracked. Checked while
    it is open, when they were reported every time, and once it is closed."""
    channel = pycares.Channel()
    try:
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        channel.close()
    assert leakwatch.leaks("untracked-fd") == []


def test_a_descriptor_the_program_opens_meanwhile_is_still_reported(leakwatch: Watch) -> None:
    """Only what making the channel opened is the channel's: an epoll opened afterwards where no
    hook sees it (as C code opens one) is still an untracked descriptor."""
    import select

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux's")
    # An epoll at a number open at the mark is taken for that one, seen before (every epoll has
    # the one inode): an earlier test's channel, whose descriptors pycares' reaper thread closes
    # a moment after it is closed, can free such a number at any time, even after a check. So
    # the poller is one at a number the mark did not have; the others made on the way are kept
    # open meanwhile. They are the program's too: reported when the mark had something else
    # at their number, so what is found must be the poller and, at most, them.
    channel = pycares.Channel()
    on_the_way: list[select.epoll] = []
    poller = untracked_epoll()
    while poller.fileno() in (leakwatch.mark.fds or ()):
        on_the_way.append(poller)
        poller = untracked_epoll()
    try:
        found = {leak.details["fd"] for leak in leakwatch.leaks("untracked-fd")}
        assert poller.fileno() in found
        assert found <= {each.fileno() for each in (poller, *on_the_way)}, found
    finally:
        for each in (poller, *on_the_way):
            each.close()
        channel.close()


def test_an_inotify_descriptor_made_after_an_open_channel_is_the_channels(leakwatch: Watch) -> None:
    """c-ares' event thread may open its watch of /etc/resolv.conf a moment after the channel is
    made: about one check in thirty reported it untracked. While a channel is open, an inotify
    descriptor made since is its; once the channel is closed, one still open is reported."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    if not hasattr(libc, "inotify_init1"):
        pytest.skip("inotify is Linux's")
    channel = pycares.Channel()
    fd = libc.inotify_init1(os.O_CLOEXEC)  # as c-ares' thread opens it, unseen by any hook
    assert fd >= 0
    try:
        assert leakwatch.leaks("untracked-fd") == []
        channel.close()
        [leak] = leakwatch.leaks("untracked-fd")
        assert leak.details["fd"] == fd
    finally:
        channel.close()
        os.close(fd)
