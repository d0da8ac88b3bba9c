"""nats-py: a connection never closed is one leak at the program's line that connected it.

A NATS client (``await nats.connect(...)``, or ``Client()`` then ``await
nc.connect(...)``) runs on tasks of its own: a reader, a pinger and a flusher,
one per subscription with a callback, one reconnecting after a lost connection;
its socket is made by asyncio under its transport. Left open, it was reported
as a socket and three tasks at nats's lines (``asyncio.run`` cancels the tasks
at its end), none at the program's line, none named a connection.

So it is tracked as a whole (see :mod:`._owning`): the functions of nats's
client, subscription and transport classes are owned, and its JetStream client's
(a subscription's heartbeat and flow-control tasks, which see a closed connection
only seconds later), so what they acquire is
recorded but never reported, and each connection gets one record (kind
``nats``) at the program's line that connected it, made once ``connect()``
succeeded, released by ``_close``: ``close()``, ``drain()`` (which ends by
closing), ``async with``, and nats itself when it gives a lost connection up.
Dropped unclosed, it is reported as closed by the garbage collector: its tasks
end with their loop, the collector closes its socket. What the program's own
callbacks acquire, run by nats's tasks, is the program's, at its lines (the
innermost frame is theirs). A program that does not import nats pays nothing.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from types import ModuleType

from . import _records
from ._kinds import Details, Kind, register
from ._owning import caller, install_owned, own
from ._patch import Patches, own_methods
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install_client", "install_owned"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "nats"


def _target(client: Any) -> str:
    """``host:port`` of the server *client* connected to (no credentials), else ``?``."""
    uri = getattr(getattr(client, "_current_server", None), "uri", None)
    return f"{uri.hostname}:{uri.port}" if uri is not None else "?"


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.is_closed


#: What a connection left open was not given.
FIX = "close() or drain(), or async with"


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    return f"connection to {rec.info} not closed ({FIX})", {"target": rec.info}  # "nats connection to ..."


register(Kind(KIND, is_open=_is_open, describe=_describe, death_leak=True))


def install_client(patches: Patches, module: ModuleType) -> None:
    """Own ``Client``; record each connection at the program's line, released by its ``_close``."""
    found = own_methods(module, "Client", "connect", "_close")
    if found is None:
        return  # not the layout this was written for
    cls, (connect, close) = found
    own(cls)

    @functools.wraps(connect)
    async def connect_(self: Any, *args: Any, **kwargs: Any) -> None:
        # The line that awaits nats.connect() (or nc.connect()): read before connecting, while
        # this coroutine's caller is the program's.
        site = _records.capture(caller(sys._getframe(1), "nats"), _records.depth)
        await connect(self, *args, **kwargs)
        _records.new(self, KIND, _target(self), site)

    @functools.wraps(close)
    async def _close(self: Any, *args: Any, **kwargs: Any) -> None:
        _records.release(id(self))
        await close(self, *args, **kwargs)

    patches.set(cls, "connect", connect_)
    patches.set(cls, "_close", _close)


#: module -> what tracks its part of nats, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "nats.aio.client": install_client,
    "nats.aio.subscription": install_owned,
    "nats.aio.transport": install_owned,
    "nats.js.client": install_owned,  # a JetStream subscription's heartbeat and flow-control tasks
}
