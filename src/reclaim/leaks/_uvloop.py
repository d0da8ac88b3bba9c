"""uvloop: its loops recorded as asyncio's are, and the tasks, connections and children made on them tracked.

uvloop's loop is a Cython class (``uvloop.loop.Loop``) whose libuv loop opens
its descriptors in C as the object is made: an epoll (kqueue) descriptor, an
io_uring one, an eventfd it wakes itself through, a pipe for signals and, with
the process's first loop, the pipe libuv's signal handling locks with and never
closes. No hook sees them opened, so a clean program's were reported as
untracked descriptors. ``uvloop.Loop``, the Python subclass that
``uvloop.new_event_loop()``, ``uvloop.run()`` and uvloop's policy make, gets a
``__new__`` that reads the descriptor table before and after the C part is
made: what appeared is the loop's. The loop gets one record (kind
``eventloop``, see :mod:`._loops`) at the program's line that made it, which
claims those descriptors while it is open. ``close()`` releases it; those of
its descriptors still open afterwards are libuv's for good
(:data:`._fds.KEPT`). A loop collected unclosed is reported as such, and as
uvloop then closes none of its descriptors, they are kept too rather than
reported a second time (a loop that ran is never freed: its libuv handles hold
it, so one dropped unclosed stays open). Only making a loop (two reads of the
descriptor table, ~0.1 ms) and closing it pay for this.

``create_task`` is the Cython class's own, not ``BaseEventLoop.create_task``:
it is wrapped on ``uvloop.Loop`` with the wrapper asyncio's loops get (see
:mod:`._tasks`), so a task left pending is reported at the program's line, and
``asyncio.run``/``Runner`` (which ``uvloop.run`` uses) mark the ones they cancel
at shutdown through the same ``_cancel_all_tasks``.

Servers and connections: libuv makes their sockets in C, or takes over a socket
uvloop made and detached. ``create_server``/``create_unix_server`` and
``create_connection``/``create_unix_connection`` are wrapped on ``uvloop.Loop``
(``asyncio.start_server``, ``open_connection`` and uvicorn call them): a server
gets one record (kind ``socket``, as asyncio's listening socket) per listening
socket at the program's line, and a client connection one at the line that
opened it; each claims its descriptor while libuv holds it open, which is read
when asked (the handle's ``PseudoSocket``), as uvloop's ``close()`` is C code no
wrapper sees. The connections a server accepts are made in C with no Python
call to hook, so they are found when asked instead: before each snapshot and
each check, every open loop's table of transports (uvloop's own, fd ->
transport) is read, and an accepted connection not recorded yet is recorded at
the line that made its server, labelled as the server (as asyncio's accepted
sockets are, see :func:`._sockets._accepted_at`); what it says of when it was
accepted is when it was first seen. Accepting costs nothing more. These records
keep no death callback: a handle dies long after libuv closed it, which must not
pass for a leak the garbage collector closed; so one dropped unclosed (uvloop's
``__dealloc__`` closes it) is missed rather than reported wrongly, unless its
``StreamWriter`` is what was dropped (below). A server or connection the program never
closed is closed by its loop's ``close()`` (which closes every libuv handle, where asyncio's
leaves them open): marked a leak then, of state ``loop-closed``. Servers and
connections made on a socket the program passed in (``sock=``,
``connect_accepted_socket``) are that socket's, tracked as it is.

A ``StreamWriter`` dropped unclosed while its loop runs closes its connection in
its ``__del__``: that is wrapped (over :mod:`._loops`' wrapper, for asyncio's
own transports) to mark the connection's record collected first, with its
addresses, as asyncio's is; an accepted connection not recorded yet is recorded
then.

Subprocesses: libuv spawns the child, no ``Popen`` is made. ``subprocess_exec``
and ``subprocess_shell`` are wrapped (``asyncio.create_subprocess_exec``/``_shell``
call them): the pipes libuv holds (socket pairs) are files (kind ``file``,
named as ``Popen``'s pipes, see :mod:`._files`) while open, and the child is one
made without a Popen (see :mod:`._children`): open while it is there to be
reaped, released once libuv reaped it (the transport's exit future), as
asyncio's child watcher hands a child's status to its Popen. A loop closed
before its child ended leaves it running, or a zombie, never waited for.

On a loop's first stream (a server's listening socket, a connection, a
subprocess's pipe), libuv opens ``/dev/null`` and keeps it until the loop closes
(it frees it to accept and drop a connection when out of descriptors). The
wrapped calls that may make the first one read the descriptor table before and
after (only until it is found), and the loop's record claims it.

Not tracked: ``connect_*_pipe`` transports (reported as untracked descriptors
while open; the loop's ``close()`` closes them all), the spare ``/dev/null`` of
a loop whose first stream came from another call, a connection whose transport
is dropped with no ``StreamWriter`` or closed by a library's ``__del__``
(uvloop's transports are compiled: no wrapper sees either), and loops of a
subclass of ``uvloop.loop.Loop`` that is not one of ``uvloop.Loop``.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import weakref
from functools import partial
from types import ModuleType

from . import _children, _fds, _files, _holders, _lineage, _loops, _records, _sockets, _tasks
from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KEY", "SPARE", "claimed", "discover", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


class _Loop:
    """What is known of a loop not closed yet: a weak reference to it, the descriptors libuv
    opened for it, its table of transports, and whether its spare descriptor is claimed."""

    __slots__ = ("made", "ref", "spared", "transports")

    def __init__(self, ref: weakref.ref[Any], made: _fds.Made, transports: Any) -> None:
        self.ref = ref
        self.made = made
        #: uvloop's ``Loop._transports`` (a private ``WeakValueDictionary``, fd -> transport,
        #: the only one among the loop's referents), or None where uvloop keeps none.
        self.transports = transports
        self.spared = False


#: id(loop) -> what is known of it, for each loop not closed yet.
_open: dict[int, _Loop] = {}

#: Key of the record of a socket libuv holds: by descriptor, so that one record is kept per
#: descriptor number at most (a new handle on a reused number replaces the old record), as
#: these records are never dropped by a death callback (see the module's docstring).
KEY = "uvloop"

#: The site and label of each server made through a wrapped ``create_server``, for the
#: connections it accepts.
_server_sites: weakref.WeakKeyDictionary[Any, tuple[Any, str | None]] = weakref.WeakKeyDictionary()

#: ``uvloop.loop.Server``, set by :func:`install`: what a transport's referents hold when a
#: server accepted it (until its connection is lost).
_server_cls: Any = None


def _watch(loop: Any, made: _fds.Made) -> None:
    key = id(loop)

    def gone(ref: weakref.ref[Any]) -> None:
        entry = _open.get(key)
        if entry is not None and entry.ref is ref:  # collected unclosed: uvloop closes nothing then
            del _open[key]
            _fds.keep(entry.made)

    transports = next((x for x in gc.get_referents(loop) if type(x) is weakref.WeakValueDictionary), None)
    _open[key] = _Loop(weakref.ref(loop, gone), made, transports)


def _listening(server: Any, fd: int) -> Any:
    """The ``PseudoSocket`` of *server* listening on *fd*, None once closed (``sockets`` is
    empty then)."""
    for sock in server.sockets:
        if sock.fileno() == fd:
            return sock
    return None


def _connected(transport: Any, fd: int) -> Any:
    """The ``PseudoSocket`` of *transport* on *fd*, None once libuv closed it (its descriptor is
    -1 then, or the transport has none)."""
    sock = transport.get_extra_info("socket")
    return sock if sock is not None and sock.fileno() == fd else None


def _record(
    owner: Any, sock: Any, via: Any, site: Any, label: Any = _records.HERE, known: Any = None
) -> None:
    """Record *sock*, a ``PseudoSocket`` of *owner* (read through *via*), as a socket at *site*
    (*known*: what is known of its ends, as ``_sockets`` keeps it: that a server accepted it)."""
    fd = sock.fileno()
    if fd == -1:
        return
    info = (int(sock.family), int(sock.type), fd, known, via)
    # The socket uvloop made for a server and detached (tracked as that descriptor since) is
    # this record's now.
    _records.release(("fd", fd))
    with contextlib.suppress(TypeError):  # not weakly referable: left to the descriptor diff
        _records.new(owner, "socket", info, site, (KEY, fd), callback=False, label=label)


def claimed(fd: int) -> bool:
    """Whether *fd* is held open by a libuv handle of a loop open now (see :data:`._sockets.claimed`)."""
    rec = _records.live.get((KEY, fd))
    owner = rec() if rec is not None else None
    if owner is not None and rec is not None and rec.info[-1](owner, fd) is not None:
        return True
    for entry in list(_open.values()):
        transport = entry.transports.get(fd) if entry.transports is not None else None
        if transport is not None and _connected(transport, fd) is not None:
            return True
    return False


def discover() -> None:
    """Record the connections the tracked servers accepted that are open and not recorded yet.

    Called before each snapshot and each check (see :mod:`._tracker`): one made before a
    snapshot is recorded before it, so only those accepted since are in its window.
    """
    if not _open:
        return
    live = _records.live
    for entry in list(_open.values()):
        transports = entry.transports
        if not transports:
            continue
        for fd, transport in list(transports.items()):
            rec = live.get((KEY, fd))
            if rec is None or rec() is not transport:
                _record_accepted(transport, fd)


def _record_accepted(transport: Any, fd: int) -> _records.Record | None:
    """Record *transport* on *fd* if a tracked server accepted it and it is open; its record."""
    server = next((x for x in gc.get_referents(transport) if type(x) is _server_cls), None)
    started = _server_sites.get(server) if server is not None else None
    sock = _connected(transport, fd) if started is not None else None
    if started is None or sock is None:
        return None
    _record(transport, sock, _connected, started[0], started[1], (None, None, _sockets.ACCEPTED))
    return _records.live.get((KEY, fd))


def _before_first_stream(loop: Any) -> frozenset[int] | None:
    """The descriptor table before a call that may make *loop*'s first stream; None when its
    spare descriptor is claimed already (or it is no loop tracked here)."""
    entry = _open.get(id(loop))
    return _fds.table() if entry is not None and not entry.spared else None


def _claim_spare(loop: Any, before: frozenset[int]) -> None:
    """*loop* made its first stream: the ``/dev/null`` libuv opened then is the loop's."""
    entry = _open.get(id(loop))
    after = _fds.table()
    if entry is None or after is None:
        return
    entry.spared = True
    for fd in sorted(after - before):
        ident = _fds.identity(fd)
        if ident is not None and ("fd", fd) not in _records.live and _fds.describe_fd(fd) in SPARE:
            entry.made += ((fd, ident),)
            rec = _records.live.get(id(loop))
            if rec is not None and rec.kind == "eventloop" and rec() is loop:
                rec.info = (*rec.info[:4], entry.made)
            return


#: What libuv's spare descriptor opens (seen with the libuv uvloop 0.23 bundles).
SPARE = ("/dev/null",)


def _serving(create: Any) -> Any:
    """Wrap a loop's ``create_server``/``create_unix_server``: record the server's sockets."""

    async def create_server(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Read on the first step, where the caller awaits it: the program's line or the
        # framework's (asyncio.start_server), whose caller is the program's. From this frame:
        # made a task of its own (sanic's create_server), this coroutine is the task's first,
        # and its site goes on where the task was made, not at whatever ran the loop.
        site = _records.capture(sys._getframe(), _records.depth)
        before = _before_first_stream(self)
        server = await create(self, *args, **kwargs)
        if before is not None and server.is_serving():
            _claim_spare(self, before)
        _records.thread_name()  # label_here() reads what it caches
        label = _records.label_here()
        _server_sites[server] = (site, label)
        if kwargs.get("sock") is None:  # else the program's socket, tracked as it is
            for sock in server.sockets:
                _record(server, sock, _listening, site, label)
        return server

    create_server.__doc__ = create.__doc__
    return create_server


def _connecting(create: Any) -> Any:
    """Wrap a loop's ``create_connection``/``create_unix_connection``: record the connection."""

    async def create_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        site = _records.capture(sys._getframe(), _records.depth)  # see create_server above
        before = _before_first_stream(self)
        transport, protocol = await create(self, *args, **kwargs)
        if before is not None:
            _claim_spare(self, before)
        if kwargs.get("sock") is None:  # else the program's socket, tracked as it is
            sock = transport.get_extra_info("socket")
            if sock is not None:
                _record(transport, sock, _connected, site)
        return transport, protocol

    create_connection.__doc__ = create.__doc__
    return create_connection


def _writer_collected(finalize: Any) -> Any:
    """Wrap ``StreamWriter.__del__`` (wrapped by :mod:`._loops` already, for asyncio's own
    transports): a writer dropped unclosed while its uvloop loop runs closes its connection,
    which is then the garbage collector's doing, not the program's ``close()``."""

    def __del__(self: Any) -> None:
        try:  # closed first, the usual case: one call
            transport = self._transport
            if not transport.is_closing() and id(self._loop) in _open and not self._loop.is_closed():
                _collected(transport)
        except Exception:  # noqa: S110 - a half-built writer: its own __del__ copes, ours must not get in the way
            pass
        finalize(self)

    __del__.__doc__ = finalize.__doc__
    return __del__


def _collected(transport: Any, why: str = _records.COLLECTED) -> None:
    """Mark the connection of *transport*, about to be closed for the garbage collector (or as
    *why* says), as a leak (recorded now if a server accepted it since the last check)."""
    sock = transport.get_extra_info("socket")
    fd = sock.fileno() if sock is not None else -1
    if fd == -1:
        return
    rec = _records.live.get((KEY, fd))
    if rec is None or rec() is not transport:
        rec = _record_accepted(transport, fd)
    if rec is not None and rec.kind == "socket" and rec() is transport:
        _sockets.collected(rec, sock, why)


#: Why a connection was closed by its loop's ``close()``, not the program (see :func:`_closing`).
LOOP_CLOSED = "loop-closed"


def _closing(loop: Any) -> None:
    """*loop* is about to close: the connections and servers on it the program never closed are
    closed by uvloop's ``close()`` (which closes every libuv handle), not by the program. Under
    asyncio the same program leaves them open, and they are reported open; here they are marked
    leaks, at the line that opened them (that made the server, for one it accepted)."""
    entry = _open.get(id(loop))
    transports = entry.transports if entry is not None else None
    for transport in list(transports.values()) if transports else ():
        with contextlib.suppress(Exception):  # a transport half torn down: libuv closes it anyway
            if not transport.is_closing():  # one the program closed, its close not done yet
                _collected(transport, LOOP_CLOSED)
    # A server never closed: its listening sockets go with the loop too.
    for server in list(_server_sites):
        with contextlib.suppress(Exception):  # a server half torn down: libuv closes it anyway
            if server.get_loop() is loop:
                for sock in server.sockets:
                    rec = _records.live.get((KEY, sock.fileno()))
                    if rec is not None and rec.kind == "socket" and rec() is server:
                        _sockets.collected(rec, sock, LOOP_CLOSED)


#: The pipes of a subprocess, as ``subprocess.Popen`` names them: (fd, Popen attribute, mode).
_PIPES = ((0, "stdin", "wb"), (1, "stdout", "rb"), (2, "stderr", "rb"))


def _spawning(run: Any, shell: bool) -> Any:
    """Wrap ``subprocess_exec``/``subprocess_shell``: record the child and its pipes."""

    async def subprocess_run(self: Any, factory: Any, program: Any, *args: Any, **kwargs: Any) -> Any:
        site = _records.capture(sys._getframe(), _records.depth)  # see _serving
        before = _before_first_stream(self)
        lineage = None
        if _lineage.ENABLED:  # the child's descendants carry its name, as a Popen's do
            if kwargs.get("env") is None and kwargs.get("preexec_fn") is not None:
                # Its own environment, which the preexec_fn may os.putenv() into, as a Popen's
                kwargs["preexec_fn"], lineage = _lineage.putting_before(kwargs["preexec_fn"])
            else:
                kwargs["env"], lineage = _lineage.marked(kwargs.get("env"))
        transport, protocol = await run(self, factory, program, *args, **kwargs)
        # What Popen's args would be: the command line of the shell, else the argument list.
        command = program if shell else (program, *args)
        if _record_child(transport, command, site, lineage) and before is not None:
            _claim_spare(self, before)  # its pipes are streams
        return transport, protocol

    subprocess_run.__doc__ = run.__doc__
    return subprocess_run


def _record_child(transport: Any, args: Any, site: Any, lineage: str | None) -> bool:
    """Record the pipes of *transport*'s child as files while libuv holds them open, and the
    child as one made without a Popen until libuv reaps it (see the module's docstring), started
    under the name *lineage* (see _lineage); whether it has pipes."""
    pid = transport.get_pid()
    if not isinstance(pid, int):
        return False
    piped = False
    for fd, stream, mode in _PIPES:  # made before the child, as Popen makes them
        pipe = transport.get_pipe_transport(fd)
        sock = pipe.get_extra_info("socket") if pipe is not None else None
        if sock is not None and sock.fileno() != -1:
            info = (_files.PipeEnd(stream, pid), mode, _connected)
            _records.new(pipe, "file", info, site, (KEY, sock.fileno()))
            piped = True
    rec = _children.record_child(pid, args, site)
    if lineage is not None:
        _lineage.spawned(lineage, rec)
    wait = getattr(transport, "_wait", None)  # what asyncio's Process.wait() awaits
    if wait is not None:

        def reaped(_: Any) -> None:
            if _records.live.get(rec.key) is rec:
                _records.release(rec.key)

        wait().add_done_callback(reaped)
    return piped


#: uvloop's transports of connections, recorded by descriptor (see :data:`KEY`).
_TRANSPORTS = ("TCPTransport", "UnixTransport")


def _key_of(transports: tuple[type, ...], obj: object) -> object:
    """The key of *obj*'s record if it is one of *transports* with its socket open, else None:
    for a holder's search (see :data:`._holders.keyed`), which looks records up by ``id()``."""
    if type(obj) not in transports:
        return None
    try:
        fd = obj.get_extra_info("socket").fileno()  # type: ignore[attr-defined]
    except Exception:  # a transport half torn down: no socket to find
        return None
    return (KEY, fd) if fd != -1 else None


def _classes(uvloop: ModuleType) -> tuple[Any, Any] | None:
    """``uvloop.Loop`` and the Cython class it subclasses, None if uvloop is not laid out so."""
    loop_cls = getattr(uvloop, "Loop", None)
    base = getattr(sys.modules.get("uvloop.loop"), "Loop", None)
    if not isinstance(loop_cls, type) or not isinstance(base, type) or loop_cls is base:
        return None
    if not issubclass(loop_cls, base) or "__new__" in vars(loop_cls):
        return None
    return loop_cls, base


def install(patches: Patches, uvloop: ModuleType) -> None:
    """Record each ``uvloop.Loop`` with its descriptors, and the tasks, servers and connections
    made on it."""
    global _server_cls
    classes = _classes(uvloop)
    if classes is None:
        return  # not the layout this was written for: leave uvloop as it is
    loop_cls, base = classes
    make = base.__new__
    close = loop_cls.close

    def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
        before = _fds.table()
        self = make(cls, *args, **kwargs)
        made = _fds.made_between(before, _fds.table() if before is not None else None)
        info = (f"{cls.__module__}.{cls.__qualname__}", "libuv", None, (), made)
        _records.new(self, "eventloop", info, _records.capture(sys._getframe(1), _records.depth))
        _watch(self, made)
        return self

    def closed(self: Any) -> None:
        entry = _open.pop(id(self), None)
        if entry is not None:
            _fds.keep(entry.made)  # what survives its close is libuv's own (its signal lock pipe)

    patches.set(loop_cls, "__new__", staticmethod(__new__))
    releasing = _loops.releasing_close(close, closed)

    def close_(self: Any) -> None:
        if not self.is_running() and not self.is_closed():  # a running loop's close() refuses
            _closing(self)
        releasing(self)

    close_.__doc__ = close.__doc__
    patches.set(loop_cls, "close", close_)
    patches.set(loop_cls, "create_task", _tasks.tracking_create_task(base.create_task))
    patches.set(loop_cls, "call_exception_handler", _tasks.judging_destroyed(base.call_exception_handler))
    _server_cls = getattr(sys.modules["uvloop.loop"], "Server", None)
    for name, wrap in (
        ("create_server", _serving),
        ("create_unix_server", _serving),
        ("create_connection", _connecting),
        ("create_unix_connection", _connecting),
        ("subprocess_exec", partial(_spawning, shell=False)),
        ("subprocess_shell", partial(_spawning, shell=True)),
    ):
        method = getattr(base, name, None)
        if method is not None:
            patches.set(loop_cls, name, wrap(method))
    patches.set(_sockets, "claimed", claimed)
    transports = tuple(
        cls
        for cls in (getattr(sys.modules["uvloop.loop"], name, None) for name in _TRANSPORTS)
        if isinstance(cls, type)
    )
    if transports:
        patches.set(_holders, "keyed", partial(_key_of, transports))
    # uvloop imports asyncio, and so its streams, which _loops wrapped then.
    writer = getattr(sys.modules.get("asyncio.streams"), "StreamWriter", None)
    finalize = vars(writer).get("__del__") if writer is not None else None
    if finalize is not None:  # 3.11.5 and later
        patches.set(writer, "__del__", _writer_collected(finalize))
