"""pika (RabbitMQ): a connection never closed is one leak at the line that made it, holding its socket.

A ``pika.BlockingConnection`` runs a ``SelectConnection`` on an ``IOLoop`` of
its own: a socket to the broker, the epoll (kqueue, poll) descriptor the loop
polls, and a socket pair another thread wakes the loop through, all made deep
inside pika. Left open, it was reported as three sockets at pika's lines and
an untracked epoll descriptor, none of them named a connection.

So pika's connections are holders (see :mod:`._holders`): a
``BlockingConnection``, and every ``BaseConnection`` the program makes
(``SelectConnection``, and pika's asyncio, Tornado, Twisted and gevent
adapters; not the one a ``BlockingConnection`` makes for itself, a part of
it), gets a record (kind ``amqp``) at the program's line that made it, open
until ``is_closed``: ``close()`` or a with-block. Its socket to the broker is
listed under it, and the descriptor its loop polls while running is its
(``fds``). Dropped unclosed, it is reported as closed by the garbage collector.

The wake-up socket pair is the loop's, made by ``pika.compat.
nonblocking_socketpair``, which pika calls for nothing else: it is marked owned
(:func:`reclaim._sites.mark_owned`), so the pair is recorded (its descriptors are
not untracked) but never reported. ``IOLoop.close()`` closes it, and a
``BlockingConnection`` calls that when it closes; a ``SelectConnection`` leaves
its loop to the collector, as pika's examples do and its docstring says, which
is no leak of the program's. Only the making and ``__del__`` of a connection are
wrapped; a program that does not import pika pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType

from . import _holders
from ._kinds import Details, Kind, register
from ._owning import own
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install_base", "install_blocking", "install_compat"]

KIND = "amqp"


def _impl(conn: Any) -> Any:
    """The pika ``Connection`` doing the work: a ``BlockingConnection``'s, or *conn* itself."""
    return getattr(conn, "_impl", conn)


def _label(conn: Any) -> tuple[str, str]:
    """``(class, host:port)`` of *conn*, just made: where it connected, or is connecting."""
    params = getattr(_impl(conn), "params", None)
    target = f"{params.host}:{params.port}" if params is not None else "?"
    return _holders.public_name(type(conn)), target


def _sockets(conn: Any) -> Iterable[object]:
    """Where *conn*'s socket to the broker is: its transport's once connected, its connector's
    while connecting. In a tuple that :func:`._holders.claim` looks into, and no further: a
    search through the connection would reach the program's objects its callbacks are bound to,
    and take their sockets for the connection's."""
    impl = _impl(conn)
    transport = getattr(impl, "_transport", None)
    workflow = getattr(impl, "_connection_workflow", None)
    connector = getattr(workflow, "_connector", None)
    found = tuple(
        sock
        for sock in (getattr(transport, "_sock", None), getattr(connector, "_sock", None))
        if sock is not None
    )
    return (found,) if found else ()


def _poller(conn: Any) -> Any:
    """The polling object (epoll, kqueue, poll) of *conn*'s loop while it runs, else None."""
    try:
        loop = _impl(conn).ioloop
    except Exception:  # a half-built connection: it polls nothing
        return None
    poller = getattr(loop, "_poller", None)  # None for a loop not pika's own (asyncio's, Tornado's)
    return getattr(poller, "_poll", None) or getattr(poller, "_kqueue", None)


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    poller = _poller(obj)
    fileno = getattr(poller, "fileno", None)  # select.poll has none: it is no descriptor
    if fileno is None:
        return ()
    try:
        fd = fileno()
    except (OSError, ValueError):
        return ()
    return (fd,) if isinstance(fd, int) and fd != -1 else ()


def _is_open(obj: Any, rec: Record) -> bool:
    try:
        return not obj.is_closed
    except Exception:  # a half-built connection: it cannot have opened anything
        return False


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    (cls, target), _, fix, _ = rec.info
    details: Details = {"class": cls, "target": target}
    if obj is not None:
        fds = _fds(obj, rec)
        if fds:
            details["poll_fd"] = fds[0]
    return f"connection to {target} not closed ({fix})", details


register(Kind(KIND, is_open=_is_open, describe=_describe, fds=_fds, holder=True))
_holders.ROOTS[KIND] = _sockets


def install_blocking(patches: Patches, module: ModuleType) -> None:
    """Track ``BlockingConnection`` as a holder of kind ``amqp``."""
    cls = getattr(module, "BlockingConnection", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        fix = "close(), or a with-block"
        _holders.track(patches, cls, KIND, "is_closed", fix, _holders.nothing_owned, _label)


def install_base(patches: Patches, module: ModuleType) -> None:
    """Track ``BaseConnection`` (``SelectConnection`` and the other adapters) as holders of kind ``amqp``."""
    cls = getattr(module, "BaseConnection", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        _holders.track(patches, cls, KIND, "is_closed", "close()", _holders.nothing_owned, _label)


def install_compat(patches: Patches, module: ModuleType) -> None:
    """The loop's wake-up socket pair is pika's own (see the module's docstring)."""
    make = getattr(module, "nonblocking_socketpair", None)
    if make is not None:
        own(make)


#: module -> what tracks its part of pika, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "pika.compat": install_compat,
    "pika.adapters.base_connection": install_base,
    "pika.adapters.blocking_connection": install_blocking,
}
