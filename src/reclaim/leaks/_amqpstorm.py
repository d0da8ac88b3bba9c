"""AMQPStorm (RabbitMQ): a connection never closed is one leak at the line that made it, holding
its socket, its inbound thread and its heartbeat timer.

An ``amqpstorm.Connection`` opens as it is made: a socket to the broker, a daemon thread
(``amqpstorm.io``) that reads from it, and a ``threading.Timer`` that checks the broker's
heartbeats, made anew at each beat. Left open, it was three entries at amqpstorm's lines (a
socket, a thread, a thread running ``Timer.run()``), none of them named a connection nor said
``close()``.

So a connection is a holder (see :mod:`._holders`), of kind ``amqpstorm``, at the program's line
that made it (``Connection(...)``, ``UriConnection(...)``), open until ``is_closed``:
``close()`` or a with-block. What of those three a check finds is listed under it. Dropped open,
it is reported as closed by the garbage collector. Only the making of a connection is wrapped; a
program that does not import amqpstorm pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType

from . import _holders
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install"]

KIND = "amqpstorm"

#: What a connection left open was not given.
FIX = "close(), or a with-block"


def _closed(conn: Any) -> bool:
    return bool(conn.is_closed)


def _parts(conn: Any) -> Iterable[object]:
    """Its socket, inbound thread and heartbeat timer, in a tuple :func:`._holders.claim` looks
    into and no further (the connection reaches its channels' consumers, the program's)."""
    io = getattr(conn, "_io", None)
    timer = getattr(getattr(conn, "heartbeat", None), "_timer", None)
    found = tuple(
        part
        for part in (getattr(io, "socket", None), getattr(io, "_inbound_thread", None), timer)
        if part is not None
    )
    return (found,) if found else ()


def _label(conn: Any) -> tuple[str, str]:
    """``(class, host:port)`` of *conn*, just made."""
    parameters = getattr(conn, "parameters", None) or {}
    target = f"{parameters.get('hostname', '?')}:{parameters.get('port', '?')}"
    return _holders.public_name(type(conn)), target


def _is_open(obj: Any, rec: Record) -> bool:
    try:
        return not _closed(obj)
    except Exception:  # a half-built connection: it never opened
        return False


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label = rec.info[0]
    cls, target = label if isinstance(label, tuple) else (label, "?")
    # After the kind: "amqpstorm connection to host:port not closed (...)".
    return f"connection to {target} not closed ({FIX})", {"class": cls, "target": target}


register(Kind(KIND, is_open=_is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _parts


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``Connection`` (``amqpstorm.connection``) as a holder of kind ``amqpstorm``."""
    cls = getattr(module, "Connection", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        _holders.track(patches, cls, KIND, _closed, FIX, _holders.nothing_owned, _label)


#: module -> what tracks its part of amqpstorm, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {"amqpstorm.connection": install}
