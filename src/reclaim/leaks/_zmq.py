"""pyzmq: a socket never closed, a context never terminated, each at the program's line; what
libzmq opens for a context is that context's.

libzmq opens its descriptors in C, seen by no hook: an eventfd as a context is made; with its
first socket, an epoll descriptor and an eventfd each for its reaper thread and its I/O
threads; an eventfd per socket (its mailbox); and, on its I/O threads, when it decides, the
listening and connected TCP or IPC sockets of binds and connects. Closing a socket hands its
teardown to the reaper thread (its connections go after its linger), so they close a moment
later; terminating the context waits for all of it. So a socket or context left open showed
only as untracked descriptors with no line, and a correct program checked while a context was
open (``zmq.Context.instance()`` is kept for the process) had libzmq's own reported.

Each ``zmq.Context`` (``zmq.asyncio``'s too; not a shadow, which owns nothing) is recorded
(kind ``zmq-context``) at the program's line that made it, released by ``term()``, which
``destroy()`` and the with-block call; dropped unterminated, pyzmq's ``__del__`` destroys it:
the garbage collector's doing. The one ``Context.instance()`` makes is pyzmq's, for the
process: not recorded (see :data:`._owning.PROCESS_WIDE`).

What libzmq opens for a context is held (:data:`._fds.HELD_BY_C`) while the context is open,
recorded or not: what appeared in the descriptor table while the context and its first socket
were made (two reads of the table each), each open socket's mailbox (its ``FD`` option), and,
read when a check asks (Linux's ``/proc/self/fdinfo``), what libzmq's epoll descriptors watch:
its listening and connected sockets, and the mailboxes of sockets being torn down. While a
context is open, a check's grace period waits for an untracked descriptor
(:data:`._fds.CLOSING_IN_C`): libzmq's threads may be closing it, or about to watch it.

Each socket is recorded (kind ``zmq-socket``) at the program's line that made it
(``ctx.socket()``, ``zmq.Socket(ctx, ...)``), with its type and the endpoints it bound or
connected, released by ``close()`` (its with-block, the context's ``destroy()``); dropped
unclosed, pyzmq's ``__del__`` closes it: the collector's doing. Its descriptors are its
context's.

Not held: what libzmq opens for a context made before pyzmq was instrumented (the first
tracker started), or made outside pyzmq and shadowed; and, where ``/proc/self/fdinfo`` is
missing, connections (reported as untracked while open). A program that does not import zmq
pays nothing; one that does pays the table reads above per context, and a few microseconds per
socket, bind and connect.
"""

from __future__ import annotations

import functools
import io
import os
import sys
import weakref
from collections.abc import Iterator
from types import FrameType, ModuleType

from reclaim import _sites

from . import _fds, _owning, _records
from ._kinds import Details, Kind, register
from ._patch import Patches, own_methods
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["any_open", "held", "install_context", "install_socket"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: Endpoints kept per socket, for its report (a socket may bind and connect many).
MAX_ENDPOINTS = 8


class _Libzmq:
    """What libzmq opened for one of its contexts, which its shadows share."""

    __slots__ = ("ended", "made", "mailboxes", "pid", "ref", "started")

    def __init__(self, context: Any, made: _fds.Made) -> None:
        address = context.underlying

        def gone(ref: weakref.ref[Any]) -> None:  # destroyed by its __del__, or never terminated
            if _open.get(address) is self:
                del _open[address]

        #: The pyzmq context that made it.
        self.ref = weakref.ref(context, gone)
        #: fd -> identity: eventfds and epoll descriptors libzmq made for it (its threads').
        self.made: dict[int, tuple[int, int]] = dict(made)
        #: Its sockets, each with its mailbox: held while the socket is open, then while the
        #: reaper's epoll descriptor watches it (a number freed then is no longer held).
        self.mailboxes: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
        #: A shadow terminated it (the context that made it still says it is open).
        self.ended = False
        #: Its threads were started: its first socket was made.
        self.started = False
        self.pid = os.getpid()

    def is_open(self) -> bool:
        """Whether it is still open, in this process (a forked child inherits no threads)."""
        context = self.ref()
        return context is not None and not context.closed and not self.ended and self.pid == os.getpid()

    def held(self) -> Iterator[int]:
        """The descriptors libzmq holds for it now (forgetting those closed since)."""
        made = self.made
        for fd in [fd for fd, ident in made.items() if _fds.identity(fd) != ident]:
            del made[fd]
        for fd in list(made):
            yield fd
            if _fds.describe_fd(fd) == "anon_inode:[eventpoll]":
                yield from _watched(fd)
        for sock, fd in list(self.mailboxes.items()):
            if not getattr(sock, "_closed", True):
                yield fd


#: address of each libzmq context made through pyzmq while instrumented -> what it opened.
_open: dict[int, _Libzmq] = {}


def _watched(epoll: int) -> list[int]:
    """The descriptors *epoll* watches, each still the one it watches (Linux; none elsewhere)."""
    try:
        # io.FileIO, not open() or os.open(): a check's own reads are not the program's files.
        with io.FileIO(f"/proc/self/fdinfo/{epoll}") as info:
            text = info.read().decode("ascii", "replace")
    except OSError:
        return []
    found = []
    for line in text.splitlines():
        # tfd:        9 events:       19 data:     7f3a70000b70  pos:0 ino:97ae sdev:9
        fields = line.split()
        if len(fields) < 2 or fields[0] != "tfd:":
            continue
        ino = next((field[4:] for field in fields if field.startswith("ino:")), None)
        try:
            fd = int(fields[1])
            ident = _fds.identity(fd)
            if ident is not None and (ino is None or ident[1] == int(ino, 16)):
                found.append(fd)
        except ValueError:
            continue
    return found


def held() -> list[int]:
    """The descriptors libzmq holds for the open contexts (see :data:`._fds.HELD_BY_C`)."""
    return [fd for libzmq in list(_open.values()) if libzmq.is_open() for fd in libzmq.held()]


def any_open() -> bool:
    """Whether a context is open: its threads may be closing descriptors (see :data:`._fds.CLOSING_IN_C`)."""
    return any(libzmq.is_open() for libzmq in list(_open.values()))


def _context_open(obj: Any, rec: Record) -> bool:
    libzmq: _Libzmq = rec.info[1]
    return libzmq.is_open()


def _context_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label = rec.info[0]
    return f"{label} not terminated (term(), destroy(), or a with-block)", {"class": label}


register(Kind("zmq-context", is_open=_context_open, describe=_context_describe, death_leak=True))


class _Socket:
    """A socket's record's info: its type, and the endpoints it bound and connected."""

    __slots__ = ("bound", "connected", "type")

    def __init__(self, type_: str) -> None:
        self.type = type_
        self.bound: list[str] = []
        self.connected: list[str] = []


def _socket_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _socket_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    info: _Socket = rec.info
    text = f"zmq.{info.type} socket"
    for verb, endpoints in (("bound to", info.bound), ("connected to", info.connected)):
        if endpoints:
            text += f" {verb} {', '.join(endpoints)}"
    details = {"type": info.type, "bound": list(info.bound), "connected": list(info.connected)}
    return f"{text} not closed (close(), or a with-block)", details


register(Kind("zmq-socket", is_open=_socket_open, describe=_socket_describe, death_leak=True))


def _maker(obj: object, frame: FrameType) -> FrameType | None:
    """Where *obj* was made: the first frame from *frame* outwards that is neither pyzmq's, nor
    plumbing (reclaim's wrappers), nor a method running on *obj* (a subclass's ``__init__``):
    the line that made the context or socket, not ``Context.socket``'s. None when pyzmq made it
    for itself (``Context.instance``)."""
    found = _owning.outside(obj, frame)
    while found is not None:
        code = found.f_code
        if code in _owning.PLUMBING:
            return None
        name = found.f_globals.get("__name__")
        if not (type(name) is str and name.partition(".")[0] == "zmq") and not _sites.is_framework(
            code.co_filename
        ):
            return found
        found = _owning.outside(obj, found.f_back)
    return frame


def _libzmq_of(context: Any) -> _Libzmq | None:
    """What libzmq opened for *context*'s libzmq context, if it was made while instrumented."""
    try:
        return _open.get(context.underlying)
    except Exception:  # not a pyzmq context (a socket to shadow, None): nothing known
        return None


def install_context(patches: Patches, module: ModuleType) -> None:
    """Record each ``zmq.Context`` at the program's line and hold what libzmq opens for it,
    until its ``term()``."""
    found = own_methods(module, "Context", "__init__", "term")
    if found is None:
        return  # not the layout this was written for
    cls, (init, term) = found

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        before = _fds.table()
        init(self, *args, **kwargs)
        if getattr(self, "_shadow", True):
            return  # shares another's libzmq context: that one owns it
        libzmq = _Libzmq(self, _fds.made_between(before, _fds.table() if before is not None else None))
        _open[self.underlying] = libzmq
        maker = _maker(self, sys._getframe(1))
        if maker is None:
            return  # pyzmq's own, for the process
        kind = type(self)
        label = vars(kind).get("_repr_cls") or f"{kind.__module__}.{kind.__qualname__}"
        _records.new(self, "zmq-context", (label, libzmq), _records.capture(maker, _records.depth))

    @functools.wraps(term)
    def term_(self: Any, *args: Any, **kwargs: Any) -> Any:
        address = self.underlying  # NULL once terminated
        done = term(self, *args, **kwargs)
        libzmq = _open.pop(address, None)
        if libzmq is not None:
            libzmq.ended = True  # term() waited for libzmq's threads: its descriptors are closed
            owner = libzmq.ref()
            if owner is not None and owner is not self:
                _records.release(id(owner))  # a shadow ended it: the context that made it leaked nothing
        _records.closing(self, sys._getframe(1))  # destroy() from __del__: the collector's doing
        return done

    patches.set(cls, "__init__", __init__)
    patches.set(cls, "term", term_)
    patches.set(_fds, "HELD_BY_C", (*_fds.HELD_BY_C, held))
    patches.set(_fds, "CLOSING_IN_C", (*_fds.CLOSING_IN_C, any_open))


def install_socket(patches: Patches, module: ModuleType) -> None:
    """Record each ``zmq.Socket`` at the program's line with its endpoints, released by its
    ``close()``; its context holds its mailbox."""
    cls = getattr(module, "Socket", None)
    if not isinstance(cls, type):
        return
    init: Any = vars(cls).get("__init__")
    close: Any = vars(cls).get("close")
    bind: Any = vars(cls).get("bind")
    connect: Any = vars(cls).get("connect")
    monitor: Any = getattr(cls, "monitor", None)  # the Cython base class's
    option = getattr(sys.modules.get("zmq.constants"), "SocketOption", None)
    fd_option, last_endpoint = getattr(option, "FD", None), getattr(option, "LAST_ENDPOINT", None)
    if None in (init, close, bind, connect, monitor, fd_option, last_endpoint):
        return  # not the layout this was written for

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        libzmq = _libzmq_of(args[0] if args else kwargs.get("ctx_or_socket"))
        # The context's first socket starts its threads: their descriptors are the context's.
        before = _fds.table() if libzmq is not None and not libzmq.started else None
        init(self, *args, **kwargs)
        if getattr(self, "_shadow", True):
            return  # another socket's, tracked as that one
        if libzmq is not None:
            if before is not None:
                libzmq.made.update(_fds.made_between(before, _fds.table()))
                libzmq.started = True
            _hold_mailbox(self, libzmq, fd_option)
        maker = _maker(self, sys._getframe(1))
        if maker is not None:
            info = _Socket(str(getattr(self, "_type_name", "?")))
            _records.new(self, "zmq-socket", info, _records.capture(maker, _records.depth))

    @functools.wraps(close)
    def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        done = close(self, *args, **kwargs)
        # From a __del__ (its own, or its context's destroy()): the collector's doing.
        _records.closing(self, sys._getframe(1))
        return done

    @functools.wraps(bind)
    def bind_(self: Any, addr: Any, *args: Any, **kwargs: Any) -> Any:
        done = bind(self, addr, *args, **kwargs)
        info = _info(self)
        if info is not None and len(info.bound) < MAX_ENDPOINTS:
            where = str(addr)
            if "*" in where:  # a port or an interface the system chose: the one it chose
                try:
                    where = self.get(last_endpoint).decode(errors="replace")
                except Exception:  # noqa: S110 - the endpoint as given, then
                    pass
            info.bound.append(where)
        return done

    @functools.wraps(connect)
    def connect_(self: Any, addr: Any, *args: Any, **kwargs: Any) -> Any:
        done = connect(self, addr, *args, **kwargs)
        info = _info(self)
        if info is not None and len(info.connected) < MAX_ENDPOINTS:
            info.connected.append(str(addr))
        return done

    @functools.wraps(monitor)
    def monitor_(self: Any, *args: Any, **kwargs: Any) -> Any:
        # zmq_socket_monitor() makes a socket of libzmq's own, with its mailbox, in C.
        libzmq = _libzmq_of(self.context)
        before = _fds.table() if libzmq is not None else None
        done = monitor(self, *args, **kwargs)
        if libzmq is not None:
            libzmq.made.update(_fds.made_between(before, _fds.table() if before is not None else None))
        return done

    patches.set(cls, "__init__", __init__)
    patches.set(cls, "close", close_)
    patches.set(cls, "bind", bind_)
    patches.set(cls, "connect", connect_)
    patches.set(cls, "monitor", monitor_)


def _hold_mailbox(sock: Any, libzmq: _Libzmq, fd_option: Any) -> None:
    """Hold *sock*'s mailbox, its ``FD`` option, for its context while it is open."""
    try:
        fd = sock.get(fd_option)
    except Exception:  # a thread-safe socket (libzmq's draft API) has none: left to the checks
        return
    libzmq.made.pop(fd, None)  # made with the context's threads, yet the socket's: freed with it
    libzmq.mailboxes[sock] = fd


def _info(sock: Any) -> _Socket | None:
    """The recorded endpoints of *sock*, None when it is not recorded."""
    rec = _records.live.get(id(sock))
    return rec.info if rec is not None and rec.kind == "zmq-socket" and rec() is sock else None
