"""redis-py: a connection left open is one leak, ``redis-connection host:port/db``, at the program's line.

A redis-py connection (``redis.Connection``, its asyncio twin, their TLS and Unix-socket
subclasses) left connected was reported as a bare socket to port 6379, at redis-py's line
that opened it (``Connection._connect``) with seven more of redis-py's frames below: nothing
said it was a redis connection, to which server and database, and a reconnect made inside a
``pubsub.get_message()`` showed no line of the program at all.

So redis-py's ``AbstractConnection`` (sync and asyncio) is a holder (see :mod:`._holders`),
as PyMySQL's connection is (see :mod:`._pymysql`): each one the program makes, itself or
through a pool, gets a record (kind ``redis-connection``) at the program's line past
redis-py's frames (a pool makes one on the first command that needs it), open while it has a
socket (``disconnect()`` ends it; it may connect again), its socket listed under it. One a
client or a pool keeps idle is listed under that client or pool (see ``_holders.PARTS``); one
checked out of a pool and never given back (a ``pubsub()`` never closed) is blamed on the
program's line that checked it out (see :mod:`._pooled`). One a client makes in its own
``__init__`` (``single_connection_client=True``) is part of the client, which lists its socket.

A connection another object's ``__del__`` disconnects (a ``Redis`` client's, closing its pool;
a ``PubSub``'s, dropped subscribed) was closed for the garbage collector: it is a leak then,
with its socket, as one dropped connected is (its own ``__del__`` disconnects it too).

A pool's connection the program disconnected and that the pool connects again as it lends it
(a pool's ``disconnect()``, then a command) is a new acquisition: its record is made anew at the
program's line that connected it again, under the label current then, not left at its first
connect's line (taskiq-redis's tests). A connection the program made and connects again itself
stays at the line that made it; so does a pubsub's, reconnected inside ``get_message()``.

Only the making, ``__del__``, connecting and disconnecting of a connection are wrapped: a
command pays nothing more, a checkout one look whether the connection is connected.
"""

from __future__ import annotations

import functools
import inspect
import sys
from collections.abc import Callable, Iterable
from types import ModuleType

from reclaim import _sites

from . import _holders, _owning, _records, _sockets
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KIND", "install", "install_async", "socket_of"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "redis-connection"


def _target(conn: Any) -> str:
    """``host:port/db`` of *conn* (``path/db`` over a Unix socket; ``user@`` first when it
    authenticates as a named user), from what its ``repr()`` shows: never the password."""
    try:
        pieces = dict(conn.repr_pieces())
    except Exception:  # half-built (a subclass sets its path after our __init__ ran), or exotic
        return "?"
    if "path" in pieces:
        where = str(pieces["path"])
    else:
        where = f"{pieces.get('host', '?')}:{pieces.get('port', '?')}"
    user = getattr(conn, "username", None)
    return f"{user}@{where}/{pieces.get('db', 0)}" if user else f"{where}/{pieces.get('db', 0)}"


def _label(conn: Any) -> tuple[str, str]:
    """``(class, target)`` of *conn*, just made (not connected yet)."""
    return _holders.public_name(type(conn)), _target(conn)


def socket_of(conn: Any) -> Any:
    """The socket of a redis-py connection, sync or asyncio (under an asyncio stream's
    transport, under TLS too), or None while it is not connected."""
    sock = getattr(conn, "_sock", None)
    if sock is not None:
        return sock
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or not hasattr(transport, "get_extra_info"):
        return None  # not connected, or a writer of no asyncio stream (fakeredis's)
    return _sockets.of_transport(transport)


def _socket(conn: Any) -> Iterable[object]:
    """*conn*'s socket, in a tuple :func:`._holders.claim` looks into and no further (the
    connection reaches the program's objects: its callbacks, its credential provider)."""
    sock = socket_of(conn)
    return ((sock,),) if sock is not None else ()


def _closed(conn: Any) -> bool:
    return getattr(conn, "_sock", None) is None and getattr(conn, "_writer", None) is None


def _is_open(obj: Any, rec: Record) -> bool:
    return not _closed(obj)


def _last_look(conn: Any, rec: Record) -> None:
    """*conn*, dropped connected: its target as it is now (a maintenance may have moved it)."""
    rec.info = (_label(conn), *rec.info[1:])


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, target = rec.info[0]
    if obj is not None:
        target = _target(obj)
    details: Details = {"class": cls, "target": target}
    name = getattr(obj, "client_name", None) if obj is not None else None
    if name:
        details["client_name"] = name
    return target, details


register(Kind(KIND, is_open=_is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _socket
_holders.LAST_LOOK[KIND] = _last_look
_holders.PARTS.add(KIND)


#: The keys of the records of connections the program disconnected: one connected again is
#: recorded anew (see :func:`_reconnected`).
_DISCONNECTED: set[object] = set()


#: The pool methods that connect a connection as they lend it (redis-py's, sync and asyncio).
_CHECKOUTS = frozenset({"get_connection", "ensure_connection"})


def _reconnected(conn: Any, frame: Any, started: float) -> None:
    """*conn*, disconnected by the program, connected again from *frame*: a new acquisition, at
    the program's line past redis-py's frames, under the label current now, made as the connect
    began (*started*): the socket it opened meanwhile is after it, its own."""
    rec = _records.live.get(id(conn))
    if rec is None or rec() is not conn or rec.kind != KIND or rec.state != OPEN:
        return
    if frame.f_code.co_name not in _CHECKOUTS:
        # The program's own conn.connect(): still the connection it made at its line; a
        # pubsub's connection reconnected inside get_message(): still blamed on its subscribe.
        return
    package = next(
        (
            base.__module__.partition(".")[0]
            for base in type(conn).__mro__
            if base.__name__ == "AbstractConnection"
        ),
        "redis",
    )  # redis, or valkey (its fork)
    maker = _owning.caller(_owning.outside(conn, frame) or frame, package)
    site = _records.capture(maker, _records.depth)
    _records.release(rec.key)
    again = _records.new(conn, KIND, rec.info, site)
    again.why, again.time = rec.why, started


def _again(conn: Any) -> float | None:
    """When a connect of *conn*, disconnected by the program, begins: now; else None."""
    return _records._time() if id(conn) in _DISCONNECTED and _closed(conn) else None


def _connected_again(conn: Any, frame: Any, started: float) -> None:
    """The connect :func:`_again` dated *started* ended: recorded anew if it connected."""
    if not _closed(conn):
        _DISCONNECTED.discard(id(conn))
        _reconnected(conn, frame, started)


def _connects(connect: Callable[..., Any]) -> Callable[..., Any]:
    """*connect*, recording anew a connection the program disconnected before."""

    @functools.wraps(connect)
    def connecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _again(self)
        result = connect(self, *args, **kwargs)
        if started is not None:
            _connected_again(self, sys._getframe(1), started)
        return result

    return connecting


def _connects_async(connect: Callable[..., Any]) -> Callable[..., Any]:
    """:func:`_connects` for redis.asyncio's ``connect()``, a coroutine function."""

    @functools.wraps(connect)
    async def connecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = _again(self)
        result = await connect(self, *args, **kwargs)
        if started is not None:
            _connected_again(self, sys._getframe(1), started)
        return result

    return connecting


def _closes(close: Callable[..., Any]) -> Callable[..., Any]:
    """*close* (``disconnect``, or asyncio's ``_close``), noting a connection it closes for a
    finalizer: the collector's doing (see the module's docstring); one the program disconnects
    is noted for :func:`_reconnected`."""

    @functools.wraps(close)
    def closing(self: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _records.live.get(id(self))
        if rec is None or rec() is not self:
            # Dying in a reference cycle with what closes it (a client kept by a click context,
            # rq's command line): its weak reference was cleared first, its record kept for its
            # __del__, and a pool's __del__ may disconnect it before that runs. While it lives
            # no other object has its id: the record kept under it is its own.
            rec = _records.dying.get(id(self))
        if (
            rec is not None
            and rec.state == OPEN
            and rec.kind == KIND
            and not _closed(self)
            and _sites.in_finalizer(sys._getframe(1))
        ):
            _holders.dies(self, KIND)
        else:
            _note_disconnect(self, rec)
        return close(self, *args, **kwargs)

    return closing


def _note_disconnect(conn: Any, rec: Record | None) -> None:
    """The program disconnects *conn* (*rec*: its live record): see :func:`_reconnected`."""
    if rec is not None and rec.kind == KIND and rec() is conn and not _closed(conn):
        _DISCONNECTED.add(id(conn))
        if len(_DISCONNECTED) > _records.MAX_COLLECTED:  # ids of connections long gone
            _DISCONNECTED.clear()


def _disconnects_async(disconnect: Callable[..., Any]) -> Callable[..., Any]:
    """redis.asyncio's ``disconnect()``, which closes its writer itself, not through ``_close``:
    a connection it disconnects is noted for :func:`_reconnected`."""

    @functools.wraps(disconnect)
    async def disconnecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        _note_disconnect(self, _records.live.get(id(self)))
        return await disconnect(self, *args, **kwargs)

    return disconnecting


def _install(patches: Patches, module: ModuleType, fix: str, close: str) -> None:
    cls = getattr(module, "AbstractConnection", None)
    if not isinstance(cls, type) or "__init__" not in vars(cls):
        return
    _holders.track(patches, cls, KIND, _closed, fix, _holders.nothing_owned, _label)
    found = vars(cls).get(close)
    if found is not None:
        patches.set(cls, close, _closes(found))
    connect = vars(cls).get("connect")
    if connect is not None:
        wrap = _connects_async if inspect.iscoroutinefunction(connect) else _connects
        patches.set(cls, "connect", wrap(connect))
    disconnect = vars(cls).get("disconnect") if close != "disconnect" else None
    if disconnect is not None and inspect.iscoroutinefunction(disconnect):
        patches.set(cls, "disconnect", _disconnects_async(disconnect))


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``redis.connection.AbstractConnection`` (and its subclasses) as a holder."""
    _install(patches, module, "disconnect(), or give it back to its pool", "disconnect")


def install_async(patches: Patches, module: ModuleType) -> None:
    """Track ``redis.asyncio.connection.AbstractConnection`` (and its subclasses) as a holder."""
    _install(patches, module, "await disconnect(), or give it back to its pool", "_close")
