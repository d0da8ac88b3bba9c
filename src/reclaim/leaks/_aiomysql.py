"""aiomysql: a connection never closed is one leak at the line that made it, holding its socket.

An ``await aiomysql.connect()`` left open was reported as a bare socket to port 3306, at
asyncio's line that opened it under aiomysql's: nothing said it was a database connection, to
which server and database, as whom, or which session on the server it holds.

So aiomysql's ``Connection`` is a holder (see :mod:`._holders`), as PyMySQL's is (see
:mod:`._pymysql`): each one gets a record (kind ``aiomysql-connection``) at the program's line
that awaited ``connect()``, open while it has a stream writer (``close()``, ``await
ensure_closed()`` or an ``async with`` ends it), its socket (under the writer's transport,
asyncio's or uvloop's) listed under it. Its description names ``user@host:port/database``
(never the password) and the server's thread id, the session ``SHOW PROCESSLIST`` lists and
``KILL`` takes. One an aiomysql pool keeps, idle or lent, is listed under the pool (see
``_holders.PARTS``), as one a SQLAlchemy engine keeps is under the engine. Dropped unclosed, its
``__del__`` closes its transport for the garbage collector: reported as such. Only the making
and ``__del__`` of a connection are wrapped.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType

from . import _holders
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._pymysql import _thread_id  # aiomysql keeps it as PyMySQL does (and imports PyMySQL)
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

KIND = "aiomysql-connection"


def _target(conn: Any) -> str:
    """``user@host:port/database`` of *conn* (``user@/path/to/socket/database`` over a Unix socket)."""
    user = getattr(conn, "_user", None) or "?"
    unix = getattr(conn, "_unix_socket", None)
    where = str(unix) if unix else f"{getattr(conn, '_host', '?')}:{getattr(conn, '_port', '?')}"
    db = getattr(conn, "_db", None)
    return f"{user}@{where}/{db}" if db else f"{user}@{where}"


def _label(conn: Any) -> tuple[str, str, int | None]:
    """``(class, target, server thread id)`` of *conn*: just made, it has no session yet."""
    return _holders.public_name(type(conn)), _target(conn), _thread_id(conn)


def _transport(conn: Any) -> Iterable[object]:
    """*conn*'s transport, in a tuple :func:`._holders.claim` looks into: its socket is under it
    (the connection reaches the program's objects: its converters, its cursor class)."""
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    return ((transport,),) if transport is not None else ()


def _closed(conn: Any) -> bool:
    return getattr(conn, "_writer", None) is None


def _last_look(conn: Any, rec: Record) -> None:
    """*conn*, dropped connected: its session as it is now, for the report once it is gone."""
    rec.info = (_label(conn), *rec.info[1:])


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    (cls, target, thread_id), *_ = rec.info
    if obj is not None:
        thread_id = _thread_id(obj) or thread_id
    details: Details = {"class": cls, "target": target, "thread_id": thread_id}
    # As redis-py's connections: the kind says what it is ("aiomysql-connection root@host...").
    session = "" if thread_id is None else f" (server thread id {thread_id})"
    return f"{target}{session}", details


# Open while _closed(), which track() keeps in the record, says it is not: the holders' own test.
register(Kind(KIND, is_open=_holders._is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _transport
_holders.LAST_LOOK[KIND] = _last_look
_holders.PARTS.add(KIND)


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``aiomysql.connection.Connection`` as a holder of kind ``aiomysql-connection``."""
    cls = getattr(module, "Connection", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        fix = "conn.close(), await conn.ensure_closed(), or async with"
        _holders.track(patches, cls, KIND, _closed, fix, _holders.nothing_owned, _label)
