"""pg8000: a connection never closed is one leak at the line that made it, holding its socket.

A pg8000 connection (``pg8000.native.Connection``, ``pg8000.dbapi.connect()``, the legacy
``pg8000.connect()``) left open was reported as a bare socket to port 5432, at pg8000's line
that opened it (``_make_socket``, its callers below): nothing said it was a database
connection, to which server and database, as whom, or which backend on the server it holds.

So pg8000's ``CoreConnection``, the base of all three, is a holder (see :mod:`._holders`), as
PyMySQL's connection is (see :mod:`._pymysql`): each one the program makes gets a record (kind
``pg8000``) at the program's line that made it, open while it has a socket (``close()``, or a
with-block, ends it), its socket listed under it. Its description names
``user@host:port/database`` as the program asked for them (never the password) and the
backend's pid, the one ``pg_stat_activity`` lists and ``pg_terminate_backend()`` takes. pg8000
keeps no host, port or database, so the arguments of its ``__init__`` are read as it is made.
One that failed to connect (refused, a missing database: pg8000 closes it) holds nothing.

pg8000's ``close()`` closes the socket and drops the ``makefile()`` object over it unclosed
(``self._sock = None``): that object's finalizer makes the socket's real close, which a library
unknown to reclaim is reported for (a socket closed for the collector, dropped at its line, see
:mod:`._socketio`). On CPython the finalizer runs as that reference goes, so the socket is closed
before pg8000's ``close()`` returns: that close is its release (see
:func:`._socketio.closes_its_own`), and a connection the program closed leaves nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import ModuleType

from . import _holders, _socketio
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "pg8000"

#: ``(id, target)`` of the connection this thread made last: its ``__init__``'s arguments read
#: as it was made, for the label its holder's record takes once it is made (see install()).
_made = threading.local()


def _text(value: Any) -> str:
    """*value* as pg8000 takes it: str or bytes (its user once encoded, a database given as bytes)."""
    return value.decode(errors="replace") if isinstance(value, bytes | bytearray) else str(value)


def _peer(sock: Any) -> str:
    """The address of the server at the other end of *sock* (a socket the program handed over)."""
    try:
        peer = sock.getpeername()
    except (OSError, AttributeError):
        return "?"
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else _text(peer)


def _target(arguments: dict[str, Any]) -> str:
    """``user@host:port/database`` from the arguments of ``CoreConnection.__init__`` (``user@path``
    over a Unix socket, the server's address for a socket handed over; no ``/database`` when
    none is given: the server takes the user's name)."""
    user = _text(arguments.get("user"))
    unix, sock = arguments.get("unix_sock"), arguments.get("sock")
    if unix is not None:
        where = _text(unix)
    elif sock is not None:
        where = _peer(sock)
    else:
        where = f"{arguments.get('host')}:{arguments.get('port')}"
    db = arguments.get("database")
    return f"{user}@{where}/{_text(db)}" if db else f"{user}@{where}"


def _backend_pid(conn: Any) -> int | None:
    """The backend's pid from its BackendKeyData (pid, then secret key), None before it came."""
    data = getattr(conn, "_backend_key_data", None)
    if not isinstance(data, bytes | bytearray) or len(data) < 4:
        return None
    return int.from_bytes(data[:4], "big", signed=True)


def _label(conn: Any) -> tuple[str, str, int | None]:
    """``(class, target, backend pid)`` of *conn*, just made and connected."""
    made = getattr(_made, "target", None)
    target = made[1] if made is not None and made[0] == id(conn) else "?"
    return _holders.public_name(type(conn)), target, _backend_pid(conn)


def _usock(conn: Any) -> Any:
    """*conn*'s socket, None once closed (or before it connected)."""
    return getattr(conn, "_usock", None)


def _socket(conn: Any) -> Iterable[object]:
    """*conn*'s socket, in a tuple :func:`._holders.claim` looks into and no further (the
    connection reaches the program's objects: its type adapters, its notifications)."""
    sock = _usock(conn)
    return ((sock,),) if sock is not None else ()


def _closed(conn: Any) -> bool:
    return _usock(conn) is None


def _is_open(obj: Any, rec: Record) -> bool:
    return not _closed(obj)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    (cls, target, pid), *_ = rec.info
    details: Details = {"class": cls, "target": target, "backend_pid": pid}
    backend = "" if pid is None else f" (backend pid {pid})"
    return f"connection {target}{backend}", details


register(Kind(KIND, is_open=_is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _socket


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``pg8000.core.CoreConnection`` (and so its subclasses) as a holder of kind ``pg8000``."""
    cls = getattr(module, "CoreConnection", None)
    if not isinstance(cls, type) or "__init__" not in vars(cls):
        return
    import inspect  # loaded once, with pg8000

    init = vars(cls)["__init__"]
    signature = inspect.signature(init)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError:  # pg8000's own __init__ says what is wrong
            pass
        else:
            bound.apply_defaults()
            _made.target = (id(self), _target(bound.arguments))
        init(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    __init__.__signature__ = signature  # type: ignore[attr-defined]  # help() shows pg8000's
    patches.set(cls, "__init__", __init__)
    close = vars(cls).get("close")
    if close is not None:
        patches.set(cls, "close", _socketio.closes_its_own(close, _usock))
    _holders.track(patches, cls, KIND, _closed, "close(), or a with-block", _holders.nothing_owned, _label)
