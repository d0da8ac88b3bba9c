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

Not tracked: the sockets gRPC connects in C (a channel never closed shows its
connections as untracked descriptors, with no line).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import Any

from . import _fds
from ._patch import Patches

__all__ = ["MAKERS", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: module -> the functions in it that make a channel or a server (and may start gRPC's core).
MAKERS = {
    "grpc": ("insecure_channel", "secure_channel", "server"),
    "grpc.aio": ("insecure_channel", "secure_channel", "server"),
}


def _keeping(make: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(make)
    def keeping(*args: Any, **kwargs: Any) -> Any:
        before = _fds.table()
        made = make(*args, **kwargs)
        _fds.keep(_fds.made_between(before, _fds.table() if before is not None else None))
        return made

    return keeping


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap *module*'s channel and server makers (see :data:`MAKERS`)."""
    for name in MAKERS[module.__name__]:
        make = getattr(module, name, None)
        if callable(make):
            patches.set(module, name, _keeping(make))
