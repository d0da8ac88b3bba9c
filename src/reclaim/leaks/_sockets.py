"""Sockets (``socket()``, ``accept()``, ``socketpair()``, ``dup()``, ``fromfd``, ssl) and selectors.

Every ``socket.socket`` (and subclasses such as ``ssl.SSLSocket``) runs
``socket.socket.__init__``; wrapping it catches them all, including the ones
``accept()`` and ``socketpair()`` build around a descriptor, without an audit
hook (a hook would run for every audit event in the process, forever). Release
is ``_real_close`` (what ``close()`` calls once no ``makefile()`` object holds the
socket); a socket that dies without it was closed by the GC, and so was one found closed
without it (the ResourceWarning its finalizer raised keeps it alive). ``detach()`` hands
the descriptor to whoever called it: from then on it is tracked as an ``fd``
acquired where the socket was (``multiprocessing.connection`` keeps its sockets
that way), released by ``os.close`` or by a new owner (``socket(fileno=fd)``),
unless C code that reports the descriptor itself holds it (:data:`claimed`). A new
owner that detaches it in turn only borrowed it: it is acquired where it was before
(see :data:`_lent`).
A socket libuv holds for uvloop has a record of this kind too, whose object is
the server or transport that owns it (see :mod:`._uvloop`).

A connection is made when its client connects; a server thread may accept it
much later (it waits for the GIL, or serves the one before). One a client of
this process made is acquired when that client called ``connect()``, wherever
the accept falls: a snapshot taken in between (a test's window opening once its
client fixture connected) does not count it, nor the handler thread started for
it (see :func:`._records.caused`), as acquired after the snapshot; and one whose
client connects after a snapshot is acquired after it, though the server thread
waited in ``accept()`` since before. A client connecting to a loopback address
is kept, with its generation, in :data:`_clients` under the port; an ``accept()``
on that port reads no more than that while no snapshot was taken since any of
them connected (they and it are of the generation now), and otherwise looks for
its client among the older ones by address (``getsockname()``, a system call
each). A connection from another process, or from a client that connected
before tracking started, is acquired when accepted.

Selectors are tracked at the ``selectors`` level (``_BaseSelectorImpl.__init__``
and ``close``), which covers asyncio's loops and direct users alike; an asyncio
loop's selector and self-pipe sockets are the loop's own, reported as the loop
(see :mod:`._loops`).
"""

from __future__ import annotations

import errno
import sys
import threading
from collections.abc import Callable
from types import CodeType, FrameType, ModuleType

from reclaim import _sites

from . import _holders, _records
from ._fds import adopt as _adopt_fd
from ._fds import wrapped as _tracking_fd
from ._kinds import Details, Kind, register
from ._owning import PLUMBING
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["collected", "install_selectors", "install_socket", "of_transport", "track_class", "tracked"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_getframe = sys._getframe
_in_finalizer = _sites.in_finalizer
_closing_in_finalizer = _sites.closing_in_finalizer
_capture = _records.capture
_live_pop = _records.live.pop
_live_get = _records.live.get
_RELEASED = _records.RELEASED
_OPEN = _records.OPEN
_serving = _records.serving
_get_ident = threading.get_ident


def _socket(obj: Any, rec: Record) -> Any:
    """The socket *rec* is about: *obj*, or for a socket libuv holds (uvloop's servers and
    connections, see :mod:`._uvloop`), the one the recorded owner gives for its descriptor
    (None once that is closed)."""
    info = rec.info
    return info[4](obj, info[2]) if len(info) > 4 else obj


def _is_open(obj: Any, rec: Record) -> bool:
    sock = _socket(obj, rec)
    if sock is None:
        return False
    if sock.fileno() != -1:
        return True
    if sock is obj and _live_get(rec.key) is rec:
        # Closed, yet never through _real_close (which takes the record out of the table): its
        # C finalizer closed it, and the ResourceWarning that finalizer raised keeps it alive as
        # the warning's source (pytest records every warning under always::ResourceWarning).
        collected(rec, sock)
    return False


class _Reason(str):
    """A leak's ``why`` that reads as its state (``"collected"``) and tells the description more."""

    __slots__ = ()


class _MakefileKept(_Reason):
    """Why a socket the program closed was closed by the garbage collector all the same: its
    ``close()`` waited for a ``makefile()`` object (an HTTP response) that was never closed;
    ``dropped`` is ``(code, line)`` of the line whose drop of that object's last reference
    finalized it (None for a collection: a reference cycle, no line dropped it)."""

    # No __slots__: a str subclass takes none that hold something; its dict keeps ``dropped``.
    dropped: tuple[CodeType, int] | None


def of_transport(transport: Any) -> Any:
    """What the socket under an asyncio *transport* is tracked as (None when it has none): the
    socket, out of asyncio's ``TransportSocket`` around it; under uvloop, whose sockets libuv
    makes and whose records are its transports' (see :mod:`._uvloop`), the transport itself.
    A client's holder finds its socket through it: under uvloop, a ``redis.asyncio`` client
    never closed was reported as a bare socket, its client not at all."""
    return tracked(transport.get_extra_info("socket"), transport)


def tracked(sock: Any, transport: Any) -> Any:
    """What *sock*, the socket an asyncio *transport* gives (None for none), is tracked as (see
    :func:`of_transport`)."""
    if sock is None:
        return None
    if type(sock).__module__ == "uvloop.loop":  # a PseudoSocket: a view of libuv's descriptor
        return transport
    return getattr(sock, "_sock", sock)


def makefile_kept(dropped: tuple[CodeType, int] | None) -> str:
    """The ``why`` of a socket its last ``makefile()`` object kept open until the collector closed
    it, that object dropped at *dropped* (see :class:`_MakefileKept`)."""
    why = _MakefileKept(_records.COLLECTED)
    why.dropped = dropped
    return why


def collected(rec: Record, sock: Any, why: str = _records.COLLECTED) -> None:
    """*sock*, still open, is being closed for the garbage collector: a leak. Its ends are read
    now, while it still has them, for the report."""
    family, type_, fd, known, *rest = rec.info  # rest: how a uvloop record reads its socket
    local, peer = _raw_endpoints(sock)
    if known is not None:  # what was read on accept or kept on connect, where the kernel says no more
        local, peer = (local if local is not None else known[0]), (peer if peer is not None else known[1])
    if _noted_accepted(known):
        ends: tuple[Any, ...] = (local, peer, ACCEPTED)
    elif _noted_listening(known) or _listening(sock):  # said so once it is closed
        ends = (local, peer, True)
    else:
        ends = (local, peer)
    rec.info = (family, type_, fd, ends, *rest)
    _records.leak(rec, why)


def _listening(sock: Any) -> bool:
    """Whether *sock* is a server's, ``listen()`` called on it (a system call: asked only when a
    leak is described, or closed for the collector). False when it cannot say: as the interpreter
    shuts down, ``socket`` is gone from ``sys.modules`` (an eventlet socket's ``__del__`` closes it
    then), and importing it raised in that ``__del__``."""
    socket: Any = sys.modules.get("socket")  # loaded: a socket was made
    option = getattr(socket, "SO_ACCEPTCONN", None)
    if option is None:  # not every platform says (or socket is gone)
        return False
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, option))
    except (OSError, ValueError, AttributeError, TypeError):  # closed, not a socket, no such option
        return False


def _endpoints(sock: Any) -> Details:
    return _formatted(_raw_endpoints(sock))


def _raw_endpoints(sock: Any) -> tuple[Any, Any]:
    """``(getsockname(), getpeername())`` as the kernel gives them, None for either it refuses."""
    try:
        local = _sockname(sock)
    except (OSError, ValueError):
        local = None
    try:
        peer = _peername(sock)
    except (OSError, ValueError):
        peer = None
    return local, peer


#: ``_socket.socket``'s own ``getsockname`` and ``getpeername`` (set by install_socket): reading a
#: socket's ends runs no method the program patched onto ``socket.socket`` or a subclass
#: overrides, which would see calls the program never made. CPython's
#: ``test_injected_authentication_failure`` patches ``getsockname`` to connect to a server at its
#: first call: reclaim's read at ``bind()`` made that call before ``listen()``, and the test's
#: injected connection was refused.
_c_getsockname: Any = None
_c_getpeername: Any = None


def _sockname(sock: Any) -> Any:
    if _c_getsockname is not None:
        try:
            return _c_getsockname(sock)
        except TypeError:  # no _socket.socket: gevent's wrapper of one, uvloop's pseudo-socket
            pass
    return sock.getsockname()


def _peername(sock: Any) -> Any:
    if _c_getpeername is not None:
        try:
            return _c_getpeername(sock)
        except TypeError:
            pass
    return sock.getpeername()


def _formatted(raw: tuple[Any, Any] | None) -> Details:
    out: Details = {}
    if raw is not None:
        for key, addr in zip(("local", "peer"), raw[:2], strict=True):  # [2]: listening, if there
            if addr not in ("", b"", None) and not _unbound(addr):
                out[key] = _address(addr)
    return out


#: The hosts ``getsockname()`` gives for a socket bound to any address, or to none yet:
#: ``connect()`` replaces them.
_ANY_ADDRESS = frozenset(("0.0.0.0", "::"))


#: The third item of the ends kept of a socket ``accept()`` made: its local end is the server's,
#: its peer the client it was accepted from (a report says so, not ``local -> peer`` as for a
#: client's connection).
ACCEPTED = "accepted"


def _noted_listening(known: tuple[Any, ...] | None) -> bool:
    """Whether the ends kept of a socket, ``(local, peer[, True])``, say it listened (see
    :func:`_note_listening`)."""
    return known is not None and len(known) > 2 and known[2] is True


def _noted_accepted(known: tuple[Any, ...] | None) -> bool:
    """Whether the ends kept of a socket, ``(local, peer, ACCEPTED)``, say ``accept()`` made it."""
    return known is not None and len(known) > 2 and known[2] is ACCEPTED


def _unbound(addr: Any) -> bool:
    """Whether *addr* is the name of an IP socket neither bound nor connected, ``('0.0.0.0', 0)``
    or ``('::', 0, 0, 0)``: no address at all (a bind to port 0 gets a port, a connect too), not
    one that reads as listening on every interface."""
    return type(addr) is tuple and len(addr) >= 2 and addr[1] == 0 and addr[0] in _ANY_ADDRESS


class _Unreached:
    """The address a ``connect()`` that failed was for, and its error's name: the socket never had
    that peer. A client library that leaves such a socket open (rpyc's ``socket_backoff_connect``
    on a refused connection) leaked a socket that read as a connection made and never closed."""

    __slots__ = ("address", "error")

    def __init__(self, address: Any, error: str) -> None:
        self.address = address
        self.error = error


def _address(addr: Any) -> Any:
    if type(addr) is _Unreached:
        return _address(addr.address)
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}" if len(addr) >= 2 else str(addr)
    if isinstance(addr, bytes):
        return addr.decode(errors="replace")
    return str(addr)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    family, type_, fd, known = rec.info[:4]
    import socket  # loaded: a socket was made

    family = _name(family, socket.AddressFamily)
    type_ = _name(type_, socket.SocketKind)
    details: Details = {"family": family, "type": type_, "fd": fd, **_formatted(known)}
    sock = _socket(obj, rec) if obj is not None else None
    live = _endpoints(sock) if sock is not None and sock.fileno() != -1 else {}
    details.update(live)
    text = f"{family}/{type_}"
    ssl: Any = sys.modules.get("ssl")
    if ssl is not None and isinstance(obj, ssl.SSLSocket):  # the plain one it wrapped is detached
        details["tls"] = True
        text += " TLS"
    if "local" in details:
        text += f" {details['local']}"
    if "peer" not in details and (_noted_listening(known) or (live and _listening(sock))):
        details["listening"] = True  # a server's socket: bound, waiting for connections
        text += ", listening"
    if "peer" in details and _noted_accepted(known):
        details["accepted"] = True  # a server's end of a connection: the peer is its client
        text += f" accepted from {details['peer']}"
    elif "peer" in details:
        text += f" -> {details['peer']}"
        unreached = known[1] if known is not None else None
        if type(unreached) is _Unreached and "peer" not in live:  # no connect() since has made it
            details["connect_error"] = unreached.error
            text += f" (never connected: connect() raised {unreached.error})"
    elif _noted_accepted(known):
        details["accepted"] = True  # a Unix socket's client most often has no name to show
        text += ", accepted"
    text += f" (fd {fd})"
    why = rec.why
    if type(why) is _MakefileKept:
        text += ": its close() waited for a makefile() object (a response, a reader) never closed"
        if why.dropped is not None:  # the line that dropped it says whose bug it is (a library's close)
            code, line = why.dropped
            details["dropped_at"] = _sites.where(code, line)
            text += f", dropped at {details['dropped_at']}"
    return text, details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    sock = _socket(obj, rec)
    fd = sock.fileno() if sock is not None else -1
    return (fd,) if fd != -1 else ()


register(Kind("socket", is_open=_is_open, describe=_describe, fds=_fds, death_leak=True))


def _sel_open(obj: Any, rec: Record) -> bool:
    return getattr(obj, "_map", None) is not None


def _sel_fds(obj: Any, rec: Record) -> tuple[int, ...]:
    inner = getattr(obj, "_selector", None)
    try:
        return (inner.fileno(),) if inner is not None else ()
    except (OSError, ValueError, AttributeError):
        return ()


def _sel_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    details: Details = {"class": rec.info}
    if obj is not None:
        fds = _sel_fds(obj, rec)
        if fds:
            details["fd"] = fds[0]
        registered = getattr(obj, "_fd_to_key", None)
        if registered is not None:
            details["registered"] = len(registered)
    return f"{rec.info}" + (f" (fd {details['fd']})" if "fd" in details else ""), details


register(Kind("selector", is_open=_sel_open, describe=_sel_describe, fds=_sel_fds, death_leak=True))


#: Whether a descriptor is held by C code that reports it itself, set while uvloop is tracked (see
#: :mod:`._uvloop`): uvloop's ``PseudoSocket`` reads a libuv socket's address through a socket
#: made on its descriptor then detached, which would otherwise adopt the descriptor as the ``fd``
#: of whatever line asked (``transport.get_extra_info("peername")``).
claimed: Callable[[int], bool] | None = None

#: Loopback port -> [(generation it called ``connect()`` in, record), ...]: the clients of this
#: process that connected to it, oldest first, whose connection no ``accept()`` here was known to
#: take yet (see :func:`_accepted`). One the server accepted before the client was put here, or
#: that another process accepts, stays until a list passes MAX_PENDING and the closed ones go.
_clients: dict[int, list[tuple[int, Record]]] = {}
MAX_PENDING = 64
_LOOPBACK = frozenset(("127.0.0.1", "::1", "localhost"))

#: fd -> id() of the socket last made on that existing descriptor (``socket(fileno=fd)``): one
#: entry per descriptor number, so never more than the process has descriptors.
_made_on: dict[int, int] = {}

#: fd -> (the record of the socket last made on that tracked descriptor, the descriptor's record it
#: took over): a socket that only borrows a descriptor (made on it, then detached: anyio's
#: ``from_socket(fd)`` checking it) gives it back to where it was acquired, not to the borrower's
#: line. One entry per descriptor number, like :data:`_made_on`.
_lent: dict[int, tuple[Record, Record]] = {}


def _owned_by_another(fd: int, sock: Any) -> bool:
    """Whether another open socket was made on *fd* already: ``ssl`` makes the SSLSocket on the
    plain socket's descriptor, then detaches the plain one (one socket, reported twice)."""
    owner = _made_on.get(fd)
    if owner is None or owner == id(sock):
        return False
    rec = _records.live.get(owner)
    return rec is not None and rec.kind == "socket" and rec.info[2] == fd


def install_socket(patches: Patches, socket: ModuleType) -> None:
    """Wrap ``socket.socket`` construction and release."""
    cls = socket.socket
    raw = socket._socket.socket
    if not issubclass(cls, raw):
        # Replaced by a class wrapping a raw socket (gevent's monkey-patching ran before tracking
        # started): that class is tracked where it is defined (see _gevent).
        return
    _clients.clear()  # a previous tracking's
    global _c_getsockname, _c_getpeername
    _c_getsockname, _c_getpeername = raw.getsockname, raw.getpeername
    # The C-level members (ints): socket.socket's properties build an enum on every read.
    track_class(patches, cls, raw.__dict__["family"].__get__, raw.__dict__["type"].__get__)
    # fromfd() and socket.dup() duplicate through the module's dup(): the copy of a descriptor
    # that is no socket (fromfd() of a file raises ENOTSOCK, python-daemon's is_socket_file)
    # was left open with no line to show, an untracked descriptor.
    dup = vars(socket).get("dup")
    if callable(dup):
        patches.set(socket, "dup", _tracking_fd("socket", "dup", dup))


def track_class(patches: Patches, cls: type, family_of: Any, type_of: Any) -> None:
    """Track the sockets of *cls*, a ``socket.socket`` or a class with its methods (gevent's,
    which wraps a raw socket rather than being one): made, closed, detached, connected, bound.
    *family_of* and *type_of* read a socket's family and type as ints."""
    init: Any = vars(cls)["__init__"]
    real_close: Any = cls._real_close  # type: ignore[attr-defined]
    # The socket's own close(): what called it may be a wrapper's close() that IOBase's finalizer
    # called (urllib3's HTTPResponse, dropped with its connection out). A close deferred until a
    # makefile() object is closed (_decref_socketios) is _socketio's to judge.
    close: Any = getattr(cls.close, "__code__", None)  # type: ignore[attr-defined]
    deferred: Any = getattr(getattr(cls, "_decref_socketios", None), "__code__", None)

    def _wrapper_finalized(frame: Any) -> bool:
        if frame is None:
            return False
        code = frame.f_code
        name = code.co_name  # a close, a private method, __del__ or finalize's __call__ only
        return (name == "close" or name[0] == "_") and code is not deferred and _closing_in_finalizer(frame)

    detach: Any = cls.detach  # type: ignore[attr-defined]

    # socket.socket.__init__'s own signature (3.11 to 3.13): no argument tuple or dict per socket.
    def __init__(self: Any, family: Any = -1, type: Any = -1, proto: Any = -1, fileno: Any = None) -> None:
        init(self, family, type, proto, fileno)
        fd = self.fileno()
        known: tuple[Any, ...] | None = None
        lent = None
        wrapped = None
        if fileno is not None:
            # accept(), socketpair(), dup(), fromfd(): the descriptor now belongs to this socket.
            lent = _live_pop(("fd", fd), None)
            if lent is not None:
                lent.state = _RELEASED
            # Kept raw, formatted only for a report: a socket the GC closes has no ends left.
            known = _raw_endpoints(self)
            wrapped = _live_get(_made_on.get(fd))
            _made_on[fd] = id(self)
        try:
            frame = _getframe(1)
        except ValueError:  # made from C with no Python frame: no line made it
            frame = None
        if known is not None and frame is not None and frame.f_code.co_name == "accept":
            known = (*known, ACCEPTED)
        info = (family_of(self), type_of(self), fd, known)
        site = _capture(frame, _records.depth)
        if fileno is not None and frame is not None:
            site = _accepted_at(frame, site)
            if (
                wrapped is not None
                and wrapped.kind == "socket"
                and _wrapping_in_ssl(frame)
                and _on(wrapped, fd)
            ):
                # ssl's SSLSocket made on a socket it then detaches (wrap_socket, a TLS server's
                # accept()): the same connection, acquired where that one was (accepted from
                # its client, not a connection "->" the client's port, at the wrap's line).
                info, site = (*info[:3], wrapped.info[3]), wrapped.site
        rec = _records.new(self, "socket", info, site)
        if lent is not None:
            _lent[fd] = (rec, lent)
        if fileno is not None and (_clients or _serving) and frame is not None:
            _accepted(rec, frame, known)

    def _real_close(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _live_pop(id(self), None)  # _records.release(), inlined
        if rec is not None:
            caller = _getframe(1)
            if (_in_finalizer(caller) or (caller.f_code is close and _wrapper_finalized(caller.f_back))) and (
                not _sites.acquired_in_finalizer(caller, rec.site)
            ):
                # Its owner's __del__, or the close() IOBase's finalizer called: the owner was dropped
                # unclosed (not the finalizer's own socket).
                if _sites._collecting_in is not None and _holders.dropped(_getframe(1)):
                    rec.state = _RELEASED  # a pool a PoolManager.clear() dropped, a cycle kept
                else:
                    collected(rec, self)
                    if _sites._collecting_in is not None:  # urllib3's finalize callback, maybe
                        _holders.closed_for(_getframe(1), rec)
            else:
                rec.state = _RELEASED
        real_close(self, *args, **kwargs)

    def detach_(self: Any) -> int:
        rec = _records.live.pop(id(self), None)
        fd: int = detach(self)
        if rec is not None:
            rec.state = _records.RELEASED
            if fd != -1 and not _owned_by_another(fd, self) and not (claimed is not None and claimed(fd)):
                lent = _lent.pop(fd, None)
                if lent is not None and lent[0] is rec:  # given back: acquired where it was before
                    _adopt_fd(fd, lent[1].info[0], lent[1])
                else:
                    _adopt_fd(fd, "socket.detach", rec)
        return fd

    def connect_(self: Any, address: Any) -> None:
        seq = _records.generation  # the connection is made when connect() is called
        peer = address  # in progress (non-blocking): still where it is going
        try:
            connect(self, address)
        except OSError as exc:
            if not isinstance(exc, (BlockingIOError, InterruptedError)) and exc.errno not in _UNDER_WAY:
                peer = _Unreached(address, type(exc).__name__)  # refused, unreachable, timed out
            raise
        finally:
            _note_peer(self, peer, seq)

    def connect_ex_(self: Any, address: Any) -> int:
        seq = _records.generation
        peer = address
        try:
            code = int(connect_ex(self, address))
            if code not in _UNDER_WAY:
                peer = _Unreached(address, errno.errorcode.get(code, str(code)))
            return code
        finally:
            _note_peer(self, peer, seq)

    def bind_(self: Any, address: Any) -> None:
        bind(self, address)
        _note_local(self)

    def listen_(self: Any, *backlog: Any) -> None:
        listen(self, *backlog)
        _note_listening(self)

    connect: Any = cls.connect  # type: ignore[attr-defined]
    connect_ex: Any = cls.connect_ex  # type: ignore[attr-defined]
    bind: Any = cls.bind  # type: ignore[attr-defined]
    listen: Any = cls.listen  # type: ignore[attr-defined]
    patches.set(cls, "__init__", __init__)
    patches.set(cls, "_real_close", _real_close)
    patches.set(cls, "detach", detach_)
    patches.set(cls, "connect", connect_)
    patches.set(cls, "connect_ex", connect_ex_)
    patches.set(cls, "bind", bind_)
    patches.set(cls, "listen", listen_)


def _on(rec: Record, fd: int) -> bool:
    """Whether *rec*'s socket is alive and has descriptor *fd* (an id kept may be another's now)."""
    sock = rec()
    try:
        return sock is not None and int(sock.fileno()) == fd
    except Exception:  # not a socket after all
        return False


def _wrapping_in_ssl(frame: Any) -> bool:
    """Whether *frame* is ssl's ``SSLSocket._create``, making a TLS socket on another's descriptor."""
    return bool(frame.f_code.co_name == "_create" and frame.f_globals.get("__name__") == "ssl")


def _accepted_at(frame: Any, site: Any) -> Any:
    """The site of a socket a library's ``accept()`` made (asyncio's, Tornado's, socketserver's
    accept callbacks): its own frames, then the program's line that made the listening socket,
    the line the program can act on (else the line running the event loop would be blamed).

    The program's own ``accept()`` keeps its line, also through a library's ``accept`` that
    wraps the socket's (pyOpenSSL's ``Connection.accept``: a TLS server such as cheroot's
    accepts through it, and its connection was reported at the line that made the listening
    socket, not at the accept that took it), or through a library's helper of another name
    (eventlet's ``GreenSocket.accept`` calls ``greenio.base.socket_accept``)."""
    caller = frame.f_back
    while caller is not None and "accept" in caller.f_code.co_name and not _sites.frame_is_program(caller):
        caller = caller.f_back  # a wrapper's accept(): whoever called it accepted
    if frame.f_code.co_name != "accept" or caller is None or _sites.frame_is_program(caller):
        return site  # the program's own accept(): its line
    rec = _live_get(id(frame.f_locals.get("self")))
    listening = rec.site if rec is not None and rec.kind == "socket" and type(rec.site) is tuple else ()
    line = _sites.first_program(listening)
    if not line:
        return site
    # The program's frames of the listening socket's site, the lines that called the one that
    # made it too (a helper of the tests' that starts a server: the test that used it).
    room = 2 * _records.depth
    at = next(i for i in range(0, len(listening), 2) if listening[i : i + 2] == line)
    line = listening[at : at + room - 2]
    kept: list[Any] = []
    for i in range(0, len(site), 2):
        if _sites.is_program(site[i].co_filename):
            break
        kept += site[i : i + 2]
    return (*kept[: room - len(line)], *line)


#: What ``connect_ex()`` returns, or ``connect()`` raises, for a connection made or under way.
_UNDER_WAY = frozenset({0, errno.EINPROGRESS, errno.EAGAIN, errno.EWOULDBLOCK, errno.EALREADY, errno.EINTR})


def _note_peer(sock: Any, address: Any, seq: int) -> None:
    """Keep the address *sock* connects to: one the garbage collector closes has no ends left to
    read when it is reported (a dropped asyncio stream, a redis-py client). Its local end is not
    read here (a system call on every connect); one still open is read when reported. One bound
    to any address first (``create_connection(source_address=("", 0))``, as paho connects) is
    read again: the kernel chose the local address at connect, and the bound one would be
    reported. A client of a loopback address (a server of this process, maybe) is one of
    :data:`_clients`, with *seq*, the generation it called ``connect()`` in."""
    rec = _live_get(id(sock))
    if rec is not None and rec.kind == "socket":
        info = rec.info
        local = info[3][0] if info[3] is not None else None  # bound first, say
        if type(local) is tuple and local[0] in _ANY_ADDRESS:
            try:
                local = _sockname(sock)
            except (OSError, ValueError):
                pass
        rec.info = (info[0], info[1], info[2], (local, address))
        host = address[0] if type(address) is tuple and len(address) > 1 else None
        if type(host) is str and (host in _LOOPBACK or host[:4] == "127.") and type(address[1]) is int:
            pending = _clients.get(address[1])
            if pending is None:
                _clients[address[1]] = [(seq, rec)]
            else:
                if len(pending) >= MAX_PENDING:
                    _prune(pending)
                pending.append((seq, rec))


def _accepted(rec: Record, frame: Any, known: Any) -> None:
    """*rec*, a socket made on a descriptor from *frame*, is what ``accept()`` made: acquired when
    its client connected if that is a socket of this process (see the module's docstring); the
    handler thread the accepting thread starts for it too, when that was before now."""
    if frame.f_code.co_name != "accept":
        return
    if _serving:
        _serving.pop(_get_ident(), None)  # its last connection is served: this one is next
    local = known[0]
    pending = _clients.get(local[1]) if type(local) is tuple and len(local) > 1 else None
    if not pending:
        return
    now = rec.seq
    for seq, _client in pending:
        if seq != now:
            _from_older(rec, pending, known[1])
            return
    # No snapshot since any of them connected: whichever client this is, it is as old as now.
    # (Slices: another thread may have changed the list meanwhile; this must never raise.)
    del pending[:1]


def _from_older(rec: Record, pending: list[tuple[int, Record]], peer: Any) -> None:
    """A snapshot was taken since some of *pending* connected: the one whose address is *peer*,
    if one, is the client *rec* was accepted from (still open, so the address is still its)."""
    now = rec.seq
    for i, (seq, client) in enumerate(pending):
        sock = client() if seq != now and client.state == _OPEN else None
        if sock is None:
            continue
        try:
            local = _sockname(sock)
        except (OSError, ValueError):
            continue
        if local == peer:
            del pending[i : i + 1]
            rec.seq = seq
            _serving[_get_ident()] = (rec, _records.generation)
            break
    else:  # a client of this generation's, or another process's
        for i, (seq, _client) in enumerate(pending):
            if seq == now:
                del pending[i : i + 1]
                break
    _prune(pending)


def _prune(pending: list[tuple[int, Record]]) -> None:
    """Drop the clients closed since from *pending*, and its older half if that leaves too many."""
    pending[:] = [item for item in pending if item[1].state == _OPEN]
    if len(pending) >= MAX_PENDING:
        del pending[: MAX_PENDING // 2]


def _note_listening(sock: Any) -> None:
    """*sock* listens: a server's socket, which a report says, also once the garbage collector
    closed it (in a reference cycle, no ``close()`` of ours sees it go). Listens are rare."""
    rec = _live_get(id(sock))
    if rec is not None and rec.kind == "socket":
        info = rec.info
        local, peer = info[3][:2] if info[3] is not None else (None, None)
        rec.info = (info[0], info[1], info[2], (local, peer, True), *info[4:])


def _note_local(sock: Any) -> None:
    """Keep the address *sock* was bound to, as the kernel gives it (the port chosen for 0): a
    listening socket the garbage collector closes is reported with it (an aiohttp site, an
    asyncio server never closed). Binds are rare: one system call each."""
    rec = _live_get(id(sock))
    if rec is not None and rec.kind == "socket":
        try:
            local = _sockname(sock)
        except (OSError, ValueError):
            return
        info = rec.info
        peer = info[3][1] if info[3] is not None else None
        rec.info = (info[0], info[1], info[2], (local, peer))


#: Classes whose ``__del__`` is a method of another name, by module: what it closes was
#: dropped unclosed all the same (PyMySQL's Connection: ``__del__ = _force_close``).
FINALIZER_ALIASES = {"pymysql.connections": ("Connection",)}


def install_finalizer_aliases(patches: Patches, module: ModuleType) -> None:
    """Give *module*'s renamed finalizers a frame named ``__del__``, which is what
    :func:`reclaim._sites.in_finalizer` looks for. Not the renamed function itself: PyMySQL's
    ``close()`` calls ``_force_close()`` too, and that close is the program's."""
    for name in FINALIZER_ALIASES[module.__name__]:
        cls = getattr(module, name, None)
        finalize = vars(cls).get("__del__") if isinstance(cls, type) else None
        if finalize is None or getattr(finalize, "__name__", "__del__") == "__del__":
            continue

        def __del__(self: Any, finalize: Any = finalize) -> None:
            finalize(self)

        patches.set(cls, "__del__", __del__)


def install_selectors(patches: Patches, selectors: ModuleType) -> None:
    """Wrap the selectors' common base class (``__init__`` and ``close``)."""
    base = selectors._BaseSelectorImpl
    sel_init = base.__init__
    sel_close = base.close
    here = selectors.__file__

    def sel_init_(self: Any) -> None:
        sel_init(self)
        caller = sys._getframe(1)
        maker: FrameType | None = caller
        while maker is not None and maker.f_code.co_filename == here:  # EpollSelector.__init__ ...
            maker = maker.f_back
        if maker is not None and maker.f_code in PLUMBING:
            return  # a library's own, made and dropped by design (websockets' serve_forever)
        _records.new(self, "selector", type(self).__name__, _records.capture(caller, _records.depth))

    def sel_close_(self: Any) -> None:
        _records.release(id(self))
        sel_close(self)

    patches.set(base, "__init__", sel_init_)
    patches.set(base, "close", sel_close_)


def _name(value: int, enum: Any) -> str:
    """``AF_INET`` for 2: the member's name, or the number for one the enum does not know."""
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)
