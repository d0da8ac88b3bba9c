"""gRPC: the descriptors its C core opens for the process are its own.

gRPC's core (``grpcio``) starts its event engine with the first channel or
server: epoll descriptors and eventfds it wakes its pollers through, opened in
C, kept for the life of the process, closed by no ``close()`` of the program's.
No hook sees them opened, so every correct gRPC program reported them as
untracked descriptors. The functions that make channels and servers
(``grpc.insecure_channel``, ``secure_channel``, ``server`` and their
``grpc.aio`` twins) read the descriptor table before and after, as a uvloop
loop's creation does (see :mod:`._uvloop`): what appeared that is neither a file
nor a socket is gRPC's, kept (:data:`._fds.KEPT`) while it is the same
descriptor. Each call pays two reads of the table (tens of microseconds,
against the milliseconds a channel takes); a program that does not import grpc
pays nothing.

A channel (``grpc.Channel``, ``grpc.aio.Channel``) connects in C too, so one
never closed was only untracked sockets with no line. Each is recorded (kind
``grpc``) at the program's line that made it, released by ``close()`` or its
with-block (both go through ``_close``); dropped unclosed, it is reported as
closed by the garbage collector (its C channel closes once nothing, stubs
included, references it). Its sockets are not tracked: while it is open they
are untracked descriptors, listed besides it.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _fds, _records
from ._kinds import Details, Kind, register
from ._owning import caller
from ._patch import Patches, own_methods
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["CHANNELS", "MAKERS", "install", "install_channel"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: module -> the functions in it that make a channel or a server (and may start gRPC's core).
MAKERS = {
    "grpc": ("insecure_channel", "secure_channel", "server"),
    "grpc.aio": ("insecure_channel", "secure_channel", "server"),
}


#: The modules defining a ``Channel`` class whose instances are recorded.
CHANNELS = ("grpc._channel", "grpc.aio._channel")


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    target = rec.info
    return f"channel to {target} not closed (close(), or a with-block)", {"target": target}


register(Kind("grpc", describe=_describe, death_leak=True))


def install_channel(patches: Patches, module: ModuleType) -> None:
    """Record each ``Channel`` of *module* at the program's line, released by its ``_close``."""
    found = own_methods(module, "Channel", "__init__", "_close")
    if found is None:
        return  # not the layout this was written for
    cls, (init, close) = found

    @functools.wraps(init)
    def __init__(self: Any, target: Any, *args: Any, **kwargs: Any) -> None:
        init(self, target, *args, **kwargs)
        label = target.decode(errors="replace") if isinstance(target, bytes) else str(target)
        _records.new(self, "grpc", label, _records.capture(caller(sys._getframe(1), "grpc"), _records.depth))

    @functools.wraps(close)
    def _close(self: Any, *args: Any, **kwargs: Any) -> Any:
        _records.release(id(self))  # an aio channel's: when close() is called, before its await
        return close(self, *args, **kwargs)

    patches.set(cls, "__init__", __init__)
    patches.set(cls, "_close", _close)


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap *module*'s channel and server makers (see :data:`MAKERS`)."""
    for name in MAKERS[module.__name__]:
        make = getattr(module, name, None)
        if callable(make):
            patches.set(module, name, _fds.keeping(make))
