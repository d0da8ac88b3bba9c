"""PostgreSQL connections of psycopg 3 never closed, at the line that connected.

libpq opens the connection's socket from C code: without this a leaked connection
showed only as an untracked descriptor, with no line and no owner, and one a
session fixture's pool opened in a background thread was blamed on whichever test
ran then. ``Connection.connect`` and ``AsyncConnection.connect`` (the classmethods
``psycopg.connect``, pools and subclasses all go through) are wrapped to record the
connection; it is open until ``closed`` says otherwise, and one collected while open
was closed by the garbage collector (psycopg's ``__del__`` warns; libpq's finish
runs when its ``PGconn`` dies). A ``psycopg.connect`` bound before tracking started
(psycopg imported first) is rebound too.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install_async", "install_sync"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    dsn, backend = rec.info
    details: Details = {"dsn": dsn, "backend_pid": backend}
    text = f"connection {dsn} (backend pid {backend})" if backend else f"connection {dsn}"
    if obj is not None and not obj.closed:
        details["transaction_status"] = obj.info.transaction_status.name
    return text, details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    try:
        return () if obj.closed else (obj.pgconn.socket,)
    except Exception:  # a connection in a state libpq will not answer for
        return ()


register(Kind("psycopg", is_open=_is_open, describe=_describe, fds=_fds, death_leak=True))


def _record(conn: Any, frame: Any) -> None:
    try:
        info = conn.info
        where = f"{info.user}@{info.host}:{info.port}/{info.dbname}"  # no password
        facts = (where, info.backend_pid)
    except Exception:  # must never break the program's connect
        facts = ("", 0)
    _records.new(conn, "psycopg", facts, _records.capture(frame, _records.depth))


def install_sync(patches: Patches, module: ModuleType) -> None:
    """Wrap ``psycopg.connection.Connection.connect``."""
    cls = module.Connection
    connect = vars(cls).get("connect")
    if not isinstance(connect, classmethod):
        return
    func = connect.__func__

    @functools.wraps(func)
    def connect_(cls_: Any, *args: Any, **kwargs: Any) -> Any:
        conn = func(cls_, *args, **kwargs)
        _record(conn, sys._getframe(1))
        return conn

    close = vars(cls)["close"]

    @functools.wraps(close)
    def close_(self: Any) -> None:
        _records.closing(self, sys._getframe(1))
        close(self)

    patches.set(cls, "connect", classmethod(connect_))
    patches.set(cls, "close", close_)
    _rebind(patches, func, cls.connect)


def install_async(patches: Patches, module: ModuleType) -> None:
    """Wrap ``psycopg.connection_async.AsyncConnection.connect`` (a coroutine)."""
    cls = module.AsyncConnection
    connect = vars(cls).get("connect")
    if not isinstance(connect, classmethod):
        return
    func = connect.__func__

    @functools.wraps(func)
    async def connect_(cls_: Any, *args: Any, **kwargs: Any) -> Any:
        conn = await func(cls_, *args, **kwargs)
        _record(conn, sys._getframe(1))
        return conn

    close = vars(cls)["close"]

    @functools.wraps(close)
    async def close_(self: Any) -> None:
        _records.closing(self, sys._getframe(1))
        await close(self)

    patches.set(cls, "connect", classmethod(connect_))
    patches.set(cls, "close", close_)


def _rebind(patches: Patches, func: Any, bound: Any) -> None:
    """``psycopg.connect`` is ``Connection.connect`` as the package bound it when imported."""
    package = sys.modules.get("psycopg")
    if package is not None and getattr(getattr(package, "connect", None), "__func__", None) is func:
        patches.set(package, "connect", bound)
