"""aiormq (and aio-pika over it): a connection never closed is one leak at the program's line.

An aiormq connection (``await aiormq.connect(url)``, which aio-pika's ``connect()`` and
``connect_robust()`` call) runs on tasks of its own: a reader, a writer, a heartbeat, one
reader per channel; its socket is made by asyncio under its stream. Left open, it was
reported as four or more tasks at aiormq's lines (``asyncio.run`` cancels them at its end),
with the program's line at the bottom of each, and aio-pika's close callbacks as one more
task destroyed pending; none was named a connection. A record of the connection as a holder
of its socket would not do: cancelling its writer task at the loop's shutdown closes the
socket, and a holder that holds nothing is no leak.

So it is tracked as a whole, as nats-py's is (see :mod:`._nats`): the classes of aiormq's
connection, channel and base modules, and aio-pika's connections, channels and callbacks,
are owned (see :mod:`._owning`), so what they acquire is recorded but never reported; and
each connection gets one record (kind ``aiormq``) at the program's line that connected it
(past aio-pika's frames too), made once ``connect()`` succeeded, released by ``close()``:
the program's, ``async with``, aio-pika's, and aiormq's own when the broker or the network
ends the connection. Left open when ``asyncio.run`` (or a ``Runner``) shuts its loop down,
it is marked a leak then, ``cancelled`` with its tasks, before the cancel of its reader
closes it (see :data:`._tasks.AT_SHUTDOWN`). Dropped unclosed, it is reported as closed by
the garbage collector. A program that imports neither pays nothing.
"""

from __future__ import annotations

import functools
import sys
import weakref
from collections.abc import Callable
from types import ModuleType

from reclaim._sites import from_first_program

from . import _records, _tasks
from ._kinds import Details, Kind, register
from ._owning import caller, install_owned
from ._patch import Patches, own_methods
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install_connection", "install_owned"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "aiormq"

#: What a connection left open was not given.
FIX = "close(), or async with"

#: The connections recorded and not closed yet, for the shutdown of their loop.
_open: weakref.WeakSet[Any] = weakref.WeakSet()


def _target(conn: Any) -> str:
    """``amqp://user@host:port/vhost`` of *conn* (no password, no query), else ``?``."""
    url = getattr(conn, "url", None)
    if url is None:
        return "?"
    try:
        user = f"{url.user}@" if url.user else ""
        return f"{url.scheme}://{user}{url.host}:{url.port}{url.path or '/'}"
    except Exception:  # not the URL object this was written for
        return "?"


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.is_closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    return f"connection to {rec.info} not closed ({FIX})", {"target": rec.info}


register(Kind(KIND, is_open=_is_open, describe=_describe, death_leak=True))


def _shutting_down(loop: Any) -> None:
    """*loop*'s runner cancels its tasks: a connection on it still open is a leak now, before
    the cancel of its reader closes it (which is no close of the program's)."""
    for conn in list(_open):
        rec = _records.live.get(id(conn))
        if rec is not None and rec() is conn and rec.state == OPEN and getattr(conn, "loop", None) is loop:
            _records.leak(rec, _tasks.CANCELLED)


def install_connection(patches: Patches, module: ModuleType) -> None:
    """Own ``aiormq.connection``; record each ``Connection`` once connected, released by ``close()``."""
    found = own_methods(module, "Connection", "connect")
    close = getattr(getattr(module, "Connection", None), "close", None)
    if found is None or close is None:
        return  # not the layout this was written for
    cls, (connect,) = found
    install_owned(patches, module)

    @functools.wraps(connect)
    async def connect_(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The line that awaits aiormq.connect() or aio-pika's connect(): read before connecting,
        # while this coroutine's callers are the program's. A robust connection connects in a
        # task of aio-pika's: its site goes on where that task was made, past aio-pika's frames.
        depth = _records.depth
        site = _records.capture(caller(caller(sys._getframe(1), "aiormq"), "aio_pika"), 2 * depth)
        site = from_first_program(site)[: 2 * depth]
        result = await connect(self, *args, **kwargs)
        _records.new(self, KIND, _target(self), site)
        _open.add(self)
        return result

    @functools.wraps(close)
    async def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        _records.release(id(self))
        _open.discard(self)
        return await close(self, *args, **kwargs)

    patches.set(cls, "connect", connect_)
    patches.set(cls, "close", close_)
    if _shutting_down not in _tasks.AT_SHUTDOWN:
        _tasks.AT_SHUTDOWN.append(_shutting_down)


#: module -> what tracks its part of aiormq and aio-pika, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "aiormq.base": install_owned,
    "aiormq.channel": install_owned,
    "aiormq.connection": install_connection,
    "aio_pika.connection": install_owned,
    "aio_pika.robust_connection": install_owned,
    "aio_pika.channel": install_owned,
    "aio_pika.robust_channel": install_owned,
    "aio_pika.tools": install_owned,
}
