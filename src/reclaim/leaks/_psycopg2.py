"""PostgreSQL connections of psycopg2 never closed, at the line that connected.

libpq opens the connection's socket from C code, and psycopg2's connection is a C type
with no weak references and a ``close`` in C: without this a connection left open showed
only as an untracked descriptor with no line, and one the garbage collector closed (a
pool dropped with its idle connections) was not seen at all. As for sqlite3 (see
:mod:`._sqlite`), ``psycopg2.connect`` is wrapped to pass a ``connection_factory`` that
subclasses the one asked for (``psycopg2.extensions.connection`` by default) by adding
only a ``close`` that releases the record: the subclass gets weak references, and
``isinstance`` checks and every other behaviour stay the base class's; ``type(conn)`` is
the subclass (named like its base) while tracking. ``with conn:`` ends a transaction and
does not close, so it is no release. One collected while open was closed by the garbage
collector (psycopg2's dealloc closes it). One the server broke (``pg_terminate_backend``,
a restart: ``closed`` is 2) was closed already: libpq dropped its socket when it read the
end, so dropped unclosed (aiopg's pool forgets such ones) it left nothing to the collector.
The dead object can no longer say which it was, so the subclass's ``__del__`` decides, also
in a reference cycle (see ``_records.AT_DEL``), as psycopg 3's does (see :mod:`._psycopg`).
A factory that is not a class (a function returning a connection) is left alone, and its
connections are not seen; nor are those of a ``connect`` bound before tracking started
(psycopg2 imported first, ``from psycopg2 import connect``). A ``connect()`` whose C
``_connect`` the program replaced (a stub: nothing connects) is left alone.

psycopg2's own pools (``psycopg2.pool.SimpleConnectionPool``, ``ThreadedConnectionPool``)
were reported connection by connection, at the pool's line that connected each. Now a pool
never closed (``closeall()``) is one entry at the line that made it, its connections its
own (see :mod:`._owning`); dropped unclosed, it is closed by the garbage collector. A
connection ``getconn()`` handed out and ``putconn()`` never took back is blamed on that
``getconn()`` (see :mod:`._pooled`).
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _pooled, _records
from ._holders import public_name
from ._kinds import Details, Kind, register
from ._owning import outside, own
from ._patch import Patches, closing_subclass, with_factory
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install", "install_pool"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_subclasses: dict[type, type] = {}
# Position of ``connection_factory`` in psycopg2.connect(dsn, connection_factory, cursor_factory).
_FACTORY_ARG = 2


def _tracked(base: type) -> type:
    # Closed by its owner's __del__ or by the program; its own __del__ says whether it was left open.
    return closing_subclass(base, _records.closing, _subclasses, on_del=_dropped)


def _dropped(conn: Any) -> None:
    """*conn* dies: left open, the collector closes it (a leak); closed already (the server broke
    it, ``closed`` is 2; or closed by a path we do not see), nothing is left to close."""
    rec = _records.at_del(conn)
    if rec is None or rec.state != _records.OPEN or rec.kind != "psycopg2":
        return
    if conn.closed:
        _records.released(rec)
    else:
        _records.leak(rec, _records.COLLECTED)


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if len(rec.info) == 3:  # a pool
        label, _, problem = rec.info
        return f"{label} {problem}", {"class": label, "problem": problem}
    dsn, backend = rec.info
    text = f"connection {dsn} (backend pid {backend})" if backend else f"connection {dsn}"
    return text, {"dsn": dsn, "backend_pid": backend}


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if len(rec.info) == 3:
        return ()  # a pool: its connections' descriptors are theirs
    try:
        return () if obj.closed else (obj.fileno(),)
    except Exception:  # a connection in a state libpq will not answer for
        return ()


register(Kind("psycopg2", is_open=_is_open, describe=_describe, fds=_fds, death_leak=True))


def _facts(conn: Any) -> tuple[str, int]:
    try:
        info = conn.info
        return f"{info.user}@{info.host}:{info.port}/{info.dbname}", info.backend_pid  # no password
    except Exception:  # must never break the program's connect
        return "", 0


def install(patches: Patches, psycopg2: ModuleType) -> None:
    """Wrap ``psycopg2.connect``."""
    connect = psycopg2.connect
    default = psycopg2.extensions.connection
    real = getattr(psycopg2, "_connect", None)

    def connect_(*args: Any, **kwargs: Any) -> Any:
        if getattr(psycopg2, "_connect", None) is not real:
            # A stub of the C _connect (psycopg2's own tests): nothing connects, and the stub
            # is given the arguments the program passed, not our connection class.
            return connect(*args, **kwargs)
        given = with_factory(args, kwargs, _FACTORY_ARG, "connection_factory", default, _tracked)
        if given is None:
            return connect(*args, **kwargs)  # not a class of ours to subclass: left alone
        conn = connect(*given[0], **given[1])
        if not isinstance(conn, default):  # not a connection (no weak reference to it)
            return conn
        rec = _records.new(conn, "psycopg2", _facts(conn), _records.capture(sys._getframe(1), _records.depth))
        rec.why = _records.AT_DEL  # its __del__ decides: see _dropped
        return conn

    connect_.__doc__ = connect.__doc__
    patches.set(psycopg2, "connect", connect_)


#: What a psycopg2 pool left open was not given.
POOL_NOT_CLOSED = "not closed (closeall())"


def install_pool(patches: Patches, module: ModuleType) -> None:
    """Own ``psycopg2.pool``'s pools; record each at the line that made it, open until
    ``closeall()``; blame a connection ``getconn()`` handed out on that call until ``putconn()``."""
    base = getattr(module, "AbstractConnectionPool", None)
    init = vars(base).get("__init__") if isinstance(base, type) else None
    close = vars(base).get("_closeall") if isinstance(base, type) else None
    if base is None or init is None or close is None:
        return  # not the layout this was written for: its connections are reported as before
    own(*(value for value in vars(module).values() if isinstance(value, type) and issubclass(value, base)))

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)  # connects minconn connections: the pool's own
        site = _records.capture(outside(self, sys._getframe(1)), _records.depth)
        _records.new(self, "psycopg2", (public_name(type(self)), None, POOL_NOT_CLOSED), site)

    @functools.wraps(close)
    def _closeall(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = close(self, *args, **kwargs)
        _records.release(id(self))  # once closed: closeall() on a closed pool raises
        return result

    patches.set(base, "__init__", __init__)
    patches.set(base, "_closeall", _closeall)
    for name in ("SimpleConnectionPool", "ThreadedConnectionPool"):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            if vars(cls).get("closeall") is close:  # SimpleConnectionPool's is _closeall itself
                patches.set(cls, "closeall", _closeall)
            # Its _used references what getconn() handed out: the pool, a fixture's value say,
            # does not hold it (see _pooled.in_use()).
            _pooled.wrap_getconn(patches, cls, "psycopg2.pool", "psycopg2", track_pool=True)
