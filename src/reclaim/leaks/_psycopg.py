"""PostgreSQL connections of psycopg 3 never closed, at the line that connected.

libpq opens the connection's socket from C code: without this a leaked connection
showed only as an untracked descriptor, with no line and no owner, and one a
session fixture's pool opened in a background thread was blamed on whichever test
ran then. ``Connection.connect`` and ``AsyncConnection.connect`` (the classmethods
``psycopg.connect``, pools and subclasses all go through) are wrapped to record the
connection; it is open until ``closed`` says otherwise, and one collected while open
was closed by the garbage collector (psycopg's ``__del__`` warns; libpq's finish
runs when its ``PGconn`` dies). One the server broke (``pg_terminate_backend``, a
restart) is closed already: libpq dropped its socket, ``closed`` is true and psycopg's
``__del__`` does not warn; dropped so, it left nothing to the collector. The dead object can
no longer say which it was, so its ``__del__`` (wrapped) decides, also in a reference cycle
(see ``_records.AT_DEL``). A ``psycopg.connect`` or ``psycopg.crdb.connect`` bound before
tracking started (psycopg imported first) is rebound too.

A psycopg_pool pool (``ConnectionPool``, ``AsyncConnectionPool``, their null pools) runs
worker threads (tasks, for the asyncio one) and a scheduler, and its workers open its
connections. Left open, it was reported as each of them, at psycopg_pool's lines. So the
functions that start them and open its connections are owned (:func:`._owning.own`): recorded,
never reported; the pool itself gets one record of kind ``psycopg`` at the program's line that
opened it (the one that made it, unless made with ``open=False``), open until ``close()`` (a
with-block closes it), collected if dropped before. A connection it hands out with
``getconn()`` and never takes back is blamed on that line (see :mod:`._pooled`).
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _pooled, _records
from ._holders import public_name
from ._kinds import Details, Kind, register
from ._owning import lookup, outside, own
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["POOL_MODULES", "install_async", "install_pool", "install_sync"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


# A connection's info is (dsn, backend pid); a pool's is (class, name, problem).


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if len(rec.info) == 3:
        label, name, problem = rec.info
        return f"{label} {name!r} {problem}", {"class": label, "name": name, "problem": problem}
    dsn, backend = rec.info
    details: Details = {"dsn": dsn, "backend_pid": backend}
    text = f"connection {dsn} (backend pid {backend})" if backend else f"connection {dsn}"
    if obj is not None and not obj.closed:
        details["transaction_status"] = obj.info.transaction_status.name
    return text, details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if len(rec.info) == 3:
        return ()  # a pool: its connections' descriptors are theirs
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
    rec = _records.new(conn, "psycopg", facts, _records.capture(frame, _records.depth))
    if type(conn).__del__ in _DELS:  # a subclass's own __del__ may never call ours
        rec.why = _records.AT_DEL


#: The ``__del__`` wrappers :func:`_wrap_del` made.
_DELS: set[Any] = set()


def _wrap_del(patches: Patches, cls: type) -> None:
    """Wrap the ``__del__`` *cls* inherits: a connection dropped while open is the collector's
    to close, a leak; one the server broke was closed already (``closed`` is true)."""
    finalize = getattr(cls, "__del__", None)
    if finalize is None:
        return

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _records.at_del(self)
        if rec is not None and rec.state == _records.OPEN and rec.kind == "psycopg":
            try:
                broken = bool(self.closed)
            except Exception:  # a connection in a state libpq will not answer for
                broken = False
            if broken:
                _records.released(rec)
            else:
                _records.leak(rec, _records.COLLECTED)
        finalize(self, *args, **kwargs)

    __del__.__doc__ = finalize.__doc__
    _DELS.add(__del__)
    patches.set(cls, "__del__", __del__)


def _closed(conn: Any, frame: Any) -> None:
    """*conn*'s ``close()``, called from *frame*, returned: it is closed, unless a psycopg_pool
    pool with ``close_returns=True`` took it back instead (then it is the pool's again)."""
    if conn.closed:
        _records.closing(conn, frame)


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
        frame = sys._getframe(1)
        try:
            close(self)
        finally:
            _closed(self, frame)

    patches.set(cls, "connect", classmethod(connect_))
    patches.set(cls, "close", close_)
    _wrap_del(patches, cls)
    _rebind(patches, func)


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
        frame = sys._getframe(1)
        try:
            await close(self)
        finally:
            _closed(self, frame)

    patches.set(cls, "connect", classmethod(connect_))
    patches.set(cls, "close", close_)
    _wrap_del(patches, cls)


#: Modules that bind the ``connect`` of a connection class to their own ``connect`` when
#: imported: ``psycopg.connect`` is ``Connection.connect``, ``psycopg.crdb.connect``
#: ``CrdbConnection.connect``.
_ALIASES = ("psycopg", "psycopg.crdb")


def _rebind(patches: Patches, func: Any) -> None:
    """Bind again the ``connect`` of each of :data:`_ALIASES` imported before tracking started:
    it is the classmethod as it was, untracked (a ``psycopg.crdb.connect`` so bound left its
    connection an untracked descriptor with no line, and one dropped open was never seen)."""
    for name in _ALIASES:
        module = sys.modules.get(name)
        bound: Any = getattr(module, "connect", None)
        if getattr(bound, "__func__", None) is func:
            patches.set(module, "connect", bound.__self__.connect)


# -- psycopg_pool -----------------------------------------------------------------------------

#: module -> (the pool class it defines, whether asyncio's; its functions that start the pool's
#: workers and scheduler and open its connections). Private names: a release may rename them.
POOL_MODULES: dict[str, tuple[str | None, bool, tuple[str, ...]]] = {
    "psycopg_pool._acompat": (
        None,
        False,
        ("spawn", "aspawn", "AEvent.wait_timeout", "ACondition.wait_timeout"),
    ),
    "psycopg_pool.pool": ("ConnectionPool", False, ("ConnectionPool._connect",)),
    "psycopg_pool.pool_async": ("AsyncConnectionPool", True, ("AsyncConnectionPool._connect",)),
}

NOT_CLOSED = "not closed (close() or a with-block)"
NOT_CLOSED_ASYNC = "not closed (await close() or an async with-block)"


def install_pool(patches: Patches, module: ModuleType) -> None:
    """Own *module*'s pool workings; record its pool class's pools while open (see :data:`POOL_MODULES`)."""
    name, asynchronous, workings = POOL_MODULES[module.__name__]
    own(*(lookup(module, working) for working in workings))
    cls = getattr(module, name, None) if name is not None else None
    if not isinstance(cls, type):
        return
    opener, close = vars(cls).get("_open"), vars(cls).get("close")
    if opener is None or close is None:
        return  # a psycopg_pool this does not know: its parts are reported as before
    problem = NOT_CLOSED_ASYNC if asynchronous else NOT_CLOSED

    @functools.wraps(opener)
    def _open(self: Any, *args: Any, **kwargs: Any) -> Any:
        was_closed = self.closed
        result = opener(self, *args, **kwargs)
        if was_closed and not self.closed:  # opened now (psycopg_pool opens a pool once at most)
            site = _records.capture(outside(self, sys._getframe(1)), _records.depth)
            _records.new(self, "psycopg", (public_name(type(self)), self.name, problem), site)
        return result

    if asynchronous:

        @functools.wraps(close)
        async def aclose(self: Any, *args: Any, **kwargs: Any) -> Any:
            _records.release(id(self))
            return await close(self, *args, **kwargs)

        patches.set(cls, "close", aclose)
    else:

        @functools.wraps(close)
        def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
            _records.release(id(self))
            return close(self, *args, **kwargs)

        patches.set(cls, "close", close_)
    patches.set(cls, "_open", _open)
    _pooled.wrap_psycopg_pool(patches, cls, asynchronous=asynchronous)
