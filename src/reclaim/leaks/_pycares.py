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
"""

from __future__ import annotations

from types import ModuleType

from . import _fds
from ._patch import Patches, own_methods

__all__ = ["MODULES", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The modules defining a ``Channel`` class whose making is watched.
MODULES = ("pycares",)


def install(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s ``Channel`` keep the descriptors its making opens."""
    found = own_methods(module, "Channel", "__init__")
    if found is not None:
        cls, (init,) = found
        patches.set(cls, "__init__", _fds.keeping(init))
