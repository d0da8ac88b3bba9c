"""pycares: the descriptors c-ares opens for a channel are the channel's, closed on pycares' thread.

A ``pycares.Channel`` (aiodns's ``DNSResolver``, and so aiohttp's ``AsyncResolver``, the
default resolver of every ``TCPConnector`` once aiodns is installed) runs c-ares with its event
thread: C code opens an epoll descriptor, a pipe to wake it and an inotify descriptor that
watches ``/etc/resolv.conf``. Closing the channel, or dropping it, only queues it for pycares'
reaper thread, which destroys it, and closes them, a moment later: an aiohttp test whose
session was open at the check, or whose channel that thread had yet to destroy, was reported
with four untracked descriptors (about 60 tests of aiohttp's suite). No hook sees
them opened: making a channel reads the descriptor table before and after, as watchfiles'
watcher does (see :mod:`._watchfiles`), and what appeared that is neither a file nor a socket is
kept (:data:`._fds.KEPT`) while it is the same descriptor. A channel costs two reads of the
table (tens of microseconds, against the reading of the resolver's configuration); a program
that does not import pycares pays nothing.

c-ares' event thread may open its inotify descriptor (its watch of ``/etc/resolv.conf``) a moment
after the channel is made, past the second read: about one check in thirty reported it as an
untracked descriptor. While a channel made under tracking is open, an inotify descriptor that was
not open when it was made is held for it (:data:`._fds.HELD_BY_C`).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from types import ModuleType

from . import _fds
from ._patch import Patches, own_methods

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The modules defining a ``Channel`` class whose making is watched.
MODULES = ("pycares",)


#: Each channel made under tracking -> the descriptors open before it was made.
_before: weakref.WeakKeyDictionary[Any, frozenset[int]] = weakref.WeakKeyDictionary()


def _open(channel: Any) -> bool:
    """Whether *channel* is not closed (pycares 5 drops its ``_channel`` as it closes)."""
    return getattr(channel, "_channel", True) is not None


def _held() -> list[int]:
    """The inotify descriptors opened since an open channel was made: its event thread's."""
    befores = [before for channel, before in list(_before.items()) if _open(channel)]
    if not befores:
        return []
    return [
        fd
        for fd in _fds.list_fds() or ()
        if any(fd not in before for before in befores) and _fds.describe_fd(fd) == "anon_inode:inotify"
    ]


def install(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s ``Channel`` keep the descriptors its making opens, and hold the inotify
    descriptor its event thread opens after."""
    found = own_methods(module, "Channel", "__init__")
    if found is not None:
        cls, (init,) = found

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            before = _fds.table()
            init(self, *args, **kwargs)
            if before is not None:
                _fds.keep(_fds.made_between(before, _fds.table()))
                with contextlib.suppress(TypeError):  # no weak reference to it: nothing more held
                    _before[self] = before

        patches.set(cls, "__init__", __init__)
        patches.set(_fds, "HELD_BY_C", (*_fds.HELD_BY_C, _held))
