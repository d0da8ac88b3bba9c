"""PyMySQL: a connection never closed is one leak at the line that made it, holding its socket.

A ``pymysql.connect()`` left open was reported as a bare socket to port 3306, at PyMySQL's
line that opened it (its callers below): nothing said it was a database connection, to
which server and database, as whom, or which session on the server it holds.

So PyMySQL's ``Connection`` is a holder (see :mod:`._holders`): each one the program makes
gets a record (kind ``pymysql``) at the program's line that made it, open while it has a
socket (``close()``, or a with-block, ends it), its socket listed under it. Its description
names ``user@host:port/database`` (never the password) and the server's thread id, the
session ``SHOW PROCESSLIST`` lists and ``KILL`` takes. One another holder keeps (a SQLAlchemy
engine's pool, idle) is listed under it (see ``_holders.PARTS``).
Dropped unclosed, its ``__del__`` (``_force_close``) closes the socket for the garbage
collector: reported as such. One made with ``defer_connect=True`` and never connected holds
nothing, and is no leak. A connection a pool lends (SQLAlchemy's) and never gets back says
so (see :mod:`._pooled`). Only the making and ``__del__`` of a connection are wrapped.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from . import _holders
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

KIND = "pymysql"


def _text(value: Any) -> str:
    """*value* as PyMySQL keeps it: bytes once it has authenticated (user, database), else str."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _target(conn: Any) -> str:
    """``user@host:port/database`` of *conn* (``user@/path/to/socket/database`` over a Unix socket)."""
    user = _text(getattr(conn, "user", "?"))
    unix = getattr(conn, "unix_socket", None)
    where = _text(unix) if unix else f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
    db = getattr(conn, "db", None)
    return f"{user}@{where}/{_text(db)}" if db else f"{user}@{where}"


def _thread_id(conn: Any) -> int | None:
    """The server's thread id for *conn*'s session, None before it connected."""
    found = getattr(conn, "server_thread_id", None)
    return found[0] if isinstance(found, tuple) and found and isinstance(found[0], int) else None


def _label(conn: Any) -> tuple[str, str, int | None]:
    """``(class, target, server thread id)`` of *conn*, just made (and connected, unless deferred)."""
    return _holders.public_name(type(conn)), _target(conn), _thread_id(conn)


def _socket(conn: Any) -> Iterable[object]:
    """*conn*'s socket, in a tuple :func:`._holders.claim` looks into and no further (the
    connection reaches the program's objects: its converters, its cursor class)."""
    sock = getattr(conn, "_sock", None)
    return ((sock,),) if sock is not None else ()


def _closed(conn: Any) -> bool:
    return getattr(conn, "_sock", None) is None


def _is_open(obj: Any, rec: Record) -> bool:
    return not _closed(obj)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    (cls, target, thread_id), *_ = rec.info
    if obj is not None:  # a reconnect (ping(reconnect=True)) gave it another session
        thread_id = _thread_id(obj) or thread_id
    details: Details = {"class": cls, "target": target, "thread_id": thread_id}
    # As psycopg's: what it is, not what to do (one a pool lent is given back, not closed).
    session = "" if thread_id is None else f" (server thread id {thread_id})"
    return f"connection {target}{session}", details


register(Kind(KIND, is_open=_is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _socket


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``pymysql.connections.Connection`` as a holder of kind ``pymysql``."""
    cls = getattr(module, "Connection", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        fix = "close(), or a with-block"
        _holders.track(patches, cls, KIND, _closed, fix, _holders.nothing_owned, _label)
