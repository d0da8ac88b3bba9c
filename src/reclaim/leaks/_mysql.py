"""mysqlclient and MySQL Connector/Python: a connection never closed is one leak at the line that made it.

mysqlclient (``MySQLdb``) connects in C, through libmariadb or libmysqlclient: a connection
left open showed only as an untracked descriptor with no line, and one dropped unclosed (its
C dealloc closes it) was not seen at all. MySQL Connector/Python's C extension
(``CMySQLConnection``) was the same. Its pure-Python connection (``MySQLConnection``) was a
bare socket to port 3306 at the driver's line, saying nothing of the server, the database or
the session.

So each connection the program makes gets a record at the program's line past the driver's
frames (kind ``mysqlclient``, or ``mysql-connector`` for both of Connector/Python's), naming
``user@host:port/database`` (never the password), the server's thread id (the session
``SHOW PROCESSLIST`` lists and ``KILL`` takes) and the descriptor of its socket, which it
holds: that descriptor is not reported again as untracked, and a pure-Python connection's
socket, tracked as any socket is, is listed under it (see :func:`fold`). One the program
swapped out (a test's stand-in socket) and dropped is reported on its own, at the line that
connected: only the connection it was made for holds it. ``close()`` (a with-block, Connector's
``disconnect()`` and ``shutdown()``) releases it; closed from a ``__del__``, or dropped
unclosed (the driver's dealloc, or its socket's finalizer, closes it), it was the garbage
collector's doing, and is reported as such. Connector/Python records each connect, so a
``reconnect()`` (``ping(reconnect=True)``) is a new record at the line that asked for it.

Whether a connection is still open is read from its descriptor, kept with its identity as it
connected: libmariadb closes the socket of a connection the server broke (``KILL``, a restart)
while mysqlclient still says it is open, and the descriptor's number may then be another
file's. Dropped in that state, it left nothing to the collector: no leak. The C extension
gives no descriptor, so the socket it made is the one that appeared while it connected; when
that cannot be told (another thread opened sockets meanwhile), the driver's word is taken.

Only the making, the closing and the ``__del__`` of a connection are wrapped. A connection
made through ``MySQLdb._mysql.connect()`` (the bare C type) is not seen, nor are Connector's
asyncio connections (``mysql.connector.aio``).
"""

from __future__ import annotations

import sys
from types import ModuleType

from reclaim._sites import frame_above

from . import _fds, _records
from ._holders import Found, fold_into, public_name
from ._kinds import Details, Kind, register
from ._owning import caller, outside
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["fold", "install_connector", "install_mysqlclient"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

MYSQLCLIENT = "mysqlclient"
CONNECTOR = "mysql-connector"


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def _target(user: Any, host: Any, port: Any, unix_socket: Any, database: Any) -> str:
    """``user@host:port/database`` (``user@/path/to/socket/database`` over a Unix socket; no
    ``/database`` or ``user@`` when the program did not give them: read from an option file,
    ``read_default_file``, mysqlclient does not say them, and asking the server costs a query)."""
    where = _text(unix_socket) if unix_socket else f"{host}:{port}"
    who = f"{_text(user)}@{where}" if user else where
    return f"{who}/{_text(database)}" if database else who


#: class -> its public name (see ``_holders.public_name``), found once per class, not per connect.
_names: dict[type, str] = {}


def _info(
    conn: Any, target: str, thread_id: Any, fd: int | None, sock: Record | None = None
) -> tuple[Any, ...]:
    """A record's info: ``(class, target, server thread id, fd, fd's identity as it connected,
    the record of its socket when Python made it)``."""
    ident = None if fd is None else _fds.identity(fd)
    cls = type(conn)
    name = _names.get(cls)
    if name is None:
        name = _names[cls] = public_name(cls)
    return name, target, thread_id if isinstance(thread_id, int) else None, fd, ident, sock


def _holds_socket(rec: Record) -> bool:
    """Whether *rec*'s descriptor is still the socket it connected over (libmariadb closes it when
    the server breaks the connection; its number may be another file's by then)."""
    fd, ident = rec.info[3], rec.info[4]
    return fd is not None and ident is not None and _fds.identity(fd) == ident


def _driver_says_open(conn: Any) -> bool:
    """Whether the driver says *conn* is connected: for a C-extension connection whose socket
    could not be told (another thread opened sockets while it connected)."""
    try:
        cmysql = getattr(conn, "_cmysql", None)
        return bool(cmysql.connected()) if cmysql is not None else bool(getattr(conn, "open", False))
    except Exception:  # a connection in a state its driver will not answer for
        return False


def _still_open(conn: Any, rec: Record) -> bool:
    return _holds_socket(rec) if rec.info[4] is not None else _driver_says_open(conn)


def _is_open(obj: Any, rec: Record) -> bool:
    return _still_open(obj, rec)


def _fds_of(obj: Any, rec: Record) -> tuple[int, ...]:
    return (rec.info[3],) if _holds_socket(rec) else ()


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, target, thread_id, fd, *_ = rec.info
    details: Details = {"class": cls, "target": target, "thread_id": thread_id, "fd": fd}
    # As PyMySQL's: what it is, not what to do (one a pool lent is given back, not closed).
    session = "" if thread_id is None else f" (server thread id {thread_id})"
    return f"connection {target}{session}", details


for _kind in (MYSQLCLIENT, CONNECTOR):
    register(Kind(_kind, is_open=_is_open, describe=_describe, fds=_fds_of))


def _made(conn: Any, kind: str, info: tuple[Any, ...], package: str) -> None:
    """Record *conn*, just connected, at the program's line that called into *package*."""
    frame = outside(conn, sys._getframe(2))
    site = _records.capture(caller(frame, package) if frame is not None else None, _records.depth)
    _records.new(conn, kind, info, site).why = _records.AT_DEL  # its __del__ decides: see _dropped


def _dropped(conn: Any, kind: str, in_python: bool) -> None:
    """*conn* dies with its record open: the collector closes it (a leak), unless its socket is
    gone already (libmariadb closed it when the server broke the connection). A pure-Python
    connection's socket is closed by its own finalizer, maybe first in a reference cycle: never
    closed by the program, it was the collector's."""
    rec = _records.at_del(conn)
    if rec is None or rec.state != OPEN or rec.kind != kind:
        return
    if in_python or _still_open(conn, rec):
        _records.leak(rec, _records.COLLECTED)
    else:
        _records.released(rec)


def _wrap_close(patches: Patches, cls: type, names: tuple[str, ...]) -> None:
    """Wrap each of *names* *cls* has (its own or inherited) to release the connection's record
    once it returned (one that raised may have closed nothing, as ``closing_subclass``'s close
    does): from a ``__del__``, the collector's doing (see ``_records.closing``)."""
    for name in names:
        close: Callable[..., Any] | None = getattr(cls, name, None)
        if close is None:
            continue

        def close_(self: Any, *args: Any, __close: Callable[..., Any] = close, **kwargs: Any) -> Any:
            caller = frame_above()  # None as an atexit callback: the program's close
            result = __close(self, *args, **kwargs)
            _records.closing(self, caller)
            return result

        close_.__doc__ = close.__doc__
        patches.set(cls, name, close_)


def _wrap_del(patches: Patches, cls: type, kind: str, in_python: bool) -> None:
    finalize: Callable[[Any], None] | None = getattr(cls, "__del__", None)

    def __del__(self: Any) -> None:
        try:
            _dropped(self, kind, in_python)
        finally:
            if finalize is not None:
                finalize(self)

    patches.set(cls, "__del__", __del__)


def install_mysqlclient(patches: Patches, module: ModuleType) -> None:
    """Track ``MySQLdb.connections.Connection``: recorded as it is made (connected), released by
    ``close()``."""
    cls = getattr(module, "Connection", None)
    init = vars(cls).get("__init__") if isinstance(cls, type) else None
    if cls is None or init is None or not hasattr(cls, "close"):
        return  # not the layout this was written for: its sockets stay untracked descriptors

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        try:
            # "127.0.0.1 via TCP/IP", "Localhost via UNIX socket": where it went, with no host given.
            host, _, via = self.get_host_info().partition(" via ")
            unix = kwargs.get("unix_socket") or (host if "socket" in via.lower() else None)
            target = _target(self.user, self.host or host, self.port, unix, self.database)
            info = _info(self, target, self.thread_id(), self.fileno())
        except Exception:  # must never break the program's connect
            return
        _made(self, MYSQLCLIENT, info, "MySQLdb")

    __init__.__doc__ = init.__doc__
    patches.set(cls, "__init__", __init__)
    _wrap_close(patches, cls, ("close",))
    _wrap_del(patches, cls, MYSQLCLIENT, in_python=False)


def _connector_facts(conn: Any, fd: int | None, sock: Record | None) -> tuple[Any, ...]:
    target = _target(conn._user, conn._host, conn._port, conn._unix_socket, conn._database)
    return _info(conn, target, conn.connection_id, fd, sock)


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take the sockets of the pure-Python Connector/Python connections among *found* out of it,
    into ``out[id(their connection's record)]``; a socket whose connection is not among them (it
    was swapped out, then dropped) stays an entry of its own."""
    owners = {
        id(rec.info[5]): rec for rec, _, _ in found if rec.kind == CONNECTOR and rec.info[5] is not None
    }
    if owners:
        fold_into(found, out, lambda item: owners.get(id(item[0])))


def install_connector(patches: Patches, module: ModuleType) -> None:
    """Track ``mysql.connector.connection.MySQLConnection`` (pure Python) or, for
    ``connection_cext``, ``CMySQLConnection``: recorded at each connect, released by ``close()``,
    ``disconnect()`` or ``shutdown()``."""
    in_python = module.__name__.endswith(".connection")
    cls = getattr(module, "MySQLConnection" if in_python else "CMySQLConnection", None)
    connect = vars(cls).get("_open_connection") if isinstance(cls, type) else None
    if cls is None or connect is None:
        return  # not the layout this was written for: reported as before

    def _open_connection(self: Any) -> None:
        # Open before it (a table: the descriptor listdir() read it through is closed, and may be
        # the socket's number next), then the numbers only: fewer fstat()s.
        before = None if in_python else _fds.table()
        connect(self)
        sock_rec = None
        try:
            if in_python:
                sock = self._socket.sock
                fd = sock.fileno()
                found = _records.live.get(id(sock))
                sock_rec = found if found is not None and found() is sock else None
            else:
                after = _fds.list_fds() if before is not None else None
                made = sorted(fd for fd in after if fd not in before) if after is not None and before else []
                sockets = [fd for fd in made if (_fds.describe_fd(fd) or "").startswith("socket:")]
                fd = sockets[0] if len(sockets) == 1 else None
            info = _connector_facts(self, fd, sock_rec)
        except Exception:  # must never break the program's connect
            return
        _made(self, CONNECTOR, info, "mysql")

    _open_connection.__doc__ = connect.__doc__
    patches.set(cls, "_open_connection", _open_connection)
    _wrap_close(patches, cls, ("close", "disconnect", "shutdown"))
    _wrap_del(patches, cls, CONNECTOR, in_python)
