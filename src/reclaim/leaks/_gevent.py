"""gevent: its hubs' loop descriptors accounted for; its sockets, greenlets and children tracked
as the standard sockets, asyncio's tasks and ``subprocess``'s children are.

A gevent hub runs a libev (or libuv) loop that opens its descriptors in C as
the hub is made: an epoll descriptor and an eventfd it wakes itself through. No
hook sees them opened, so every clean gevent program reported them as
untracked descriptors. ``Hub.__init__`` reads the descriptor table before and
after, as uvloop's loops do (see :mod:`._uvloop`): what appeared is the hub's
loop's. The main thread's hub runs libev's default loop, which lives as long as
the process: its descriptors are kept (:data:`._fds.KEPT`) at once. A hub made
in another thread has a loop of its own, closed by ``hub.destroy()``; until then
it is one record (kind ``eventloop``, see :mod:`._loops`) at the program's line
that made it (its first gevent call in that thread), claiming those
descriptors, so a thread that ends without destroying its hub is reported as
such. ``destroy(destroy_loop=False)`` leaves the loop for the thread's next hub:
its descriptors are kept then. A hub made on a loop already made (passed in, or
the one a destroyed hub left) makes no descriptor and gets no record. Only
making and destroying a hub pay (two reads of the descriptor table).

``gevent.socket.socket`` (what ``create_connection``, ``StreamServer`` and, once
monkey-patched, ``socket.socket`` make) is no ``socket.socket``: it wraps a raw
``_socket.socket`` itself, so the standard class's wrappers never saw it. The
same wrappers are put on it (see :func:`._sockets.track_class`): kind
``socket``, described with its addresses, at the program's line; gevent's own
frames are plumbing (see :mod:`reclaim._sites`). A ``StreamServer`` unwraps its
listening socket and keeps only the raw one, closed by ``stop()``/``close()``:
the record is handed to the raw socket then, and released by that close, so a
server never stopped is its listening socket, at the line that started it. A gevent socket
has no ``__del__``: one dropped unclosed is closed by its raw socket's
deallocation and reported as closed by the garbage collector. gevent's
threadpool and its resolver (which runs in that threadpool) start their
threads with the raw ``start_new_thread``: they are not tracked threads, and
report nothing.

``gevent.os.close`` (``os.close`` once monkey-patched) closes a pipe or socket
descriptor a loop turn later, so as not to pull it from under a watcher: a
program that closes one and ends before its hub runs again still has it open.
It is the program's close all the same: the descriptor's record is released at
the call, and the descriptor, still open until gevent closes it, is kept
(:data:`._fds.KEPT`) rather than reported as untracked.

A greenlet left pending (``gevent.spawn(f)`` where ``f`` waits for what never
comes, and nothing joins or kills it) is what an asyncio task left pending is:
kind ``task``, described with its name, function and the program's line it waits
at, at the line that spawned it. ``Greenlet`` is compiled and takes no wrapper;
its spawn callback (``Greenlet.add_spawn_callback``), called by every
``start()``/``start_later()`` (so ``spawn``, ``spawn_later``, a pool's
``spawn``), records it and links a callback (``rawlink``) that releases it once
it is dead: finished, raised, or killed, started or not. The hubs are raw greenlets, never
started so: never recorded; nor the greenlet a monkey-patched ``Thread`` runs
in (the thread is tracked); what gevent spawns from its hub alone (a server's
handlers) is recorded at gevent's lines, and so not reported. Spawning pays for
this (the record, and the link gevent calls when the greenlet ends): ~30,000
instructions on top of ~45,000 for a spawn and join, where an asyncio task's
record costs ~43,000.

``gevent.subprocess.Popen`` (``subprocess.Popen`` once monkey-patched) is no
``subprocess.Popen``: it is tracked as that is (see :mod:`._children`), and the
pipes it wraps in gevent's file objects are named as the child's pipes.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from types import ModuleType

from reclaim import _sites

from . import _children, _fds, _loops, _records
from ._owning import PLUMBING, plumbing
from ._patch import Patches, own_methods
from ._sockets import track_class
from ._tasks import Greenlet, _coro_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "install_greenlet",
    "install_hub",
    "install_os",
    "install_server",
    "install_socket",
    "install_subprocess",
    "install_thread",
    "reset",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def _library(loop: Any) -> str:
    """``libev`` or ``libuv``: the package of gevent the loop's class comes from."""
    parts = type(loop).__module__.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "gevent" else type(loop).__module__


def install_hub(patches: Patches, hub: ModuleType) -> None:
    """Account for the descriptors of each ``gevent.hub.Hub``'s loop (see the module's docstring)."""
    found = own_methods(hub, "Hub", "__init__", "destroy")
    if found is None:
        return  # not the layout this was written for: leave gevent as it is
    cls, (init, destroy) = found

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        before = _fds.table()
        init(self, *args, **kwargs)
        made = _fds.made_between(before, _fds.table() if before is not None else None)
        if not made:
            return  # a loop made before: its descriptors are accounted for already
        loop = self.loop
        if getattr(loop, "default", False):
            _fds.keep(made)  # libev's default loop: the process's for as long as it runs
            return
        info = (f"{type(self).__module__}.{type(self).__qualname__}", _library(loop), None, (), made)
        _records.new(self, _loops.KIND, info, _records.capture(sys._getframe(1), _records.depth))

    def destroy_(self: Any, destroy_loop: Any = None) -> None:
        try:
            destroy(self, destroy_loop)
        finally:
            rec = _records.live.get(id(self))
            if self.loop is None and rec is not None and rec.kind == _loops.KIND:
                _records.release(id(self))
                _fds.keep(rec.info[4])  # still open: the loop was left for the thread's next hub

    __init__.__doc__ = init.__doc__
    destroy_.__doc__ = destroy.__doc__
    patches.set(cls, "__init__", __init__)
    patches.set(cls, "destroy", destroy_)


def install_socket(patches: Patches, socket3: ModuleType) -> None:
    """Track ``gevent._socket3.socket`` (``gevent.socket.socket``) as ``socket.socket`` is tracked."""
    cls = getattr(socket3, "socket", None)
    if not isinstance(cls, type) or not all(
        hasattr(cls, name) for name in ("_sock", "_real_close", "detach", "connect", "connect_ex", "bind")
    ):
        return  # not the layout this was written for: leave gevent as it is
    # Its raw socket's C-level members (ints), read without gevent's __getattr__ forwarding.
    track_class(patches, cls, attrgetter("_sock.family"), attrgetter("_sock.type"))


def install_server(patches: Patches, server: ModuleType) -> None:
    """A ``StreamServer``'s listening socket: its record follows it into the raw socket the server
    keeps, and is released by the server's ``close()`` (see the module's docstring)."""
    cls = getattr(server, "StreamServer", None)
    unwrap = vars(cls).get("_make_socket_stdlib") if isinstance(cls, type) else None
    close = getattr(cls, "close", None)
    if unwrap is None or close is None:
        return  # not the layout this was written for: leave gevent as it is

    def _make_socket_stdlib(self: Any, fresh: Any) -> None:
        wrapped = self.socket
        unwrap(self, fresh)
        raw = self.socket
        rec = _records.live.get(id(wrapped))
        if raw is not wrapped and rec is not None and rec.kind == "socket" and rec() is wrapped:
            _records.succeed(raw, rec, "socket", rec.info)

    def close_(self: Any) -> None:
        sock = self.__dict__.get("socket")
        rec = _records.live.get(id(sock)) if sock is not None else None
        if rec is not None and rec.kind == "socket" and rec() is sock:
            _records.release(id(sock))
        close(self)

    close_.__doc__ = close.__doc__
    patches.set(cls, "_make_socket_stdlib", _make_socket_stdlib)
    patches.set(cls, "close", close_)


def install_os(patches: Patches, gevent_os: ModuleType) -> None:
    """``gevent.os.close``: the program's close, though gevent closes the descriptor later."""
    close = getattr(gevent_os, "close", None)
    if close is None:
        return  # not on this platform: os.close is not replaced

    def close_(fd: int) -> None:
        close(fd)
        _records.release(("fd", fd))
        ident = _fds.identity(fd)
        if ident is not None:  # deferred to the loop's next turn
            _fds.KEPT[fd] = ident

    close_.__doc__ = close.__doc__
    patches.set(gevent_os, "close", close_)


def _started(greenlet: Any) -> None:
    """Spawn callback: record *greenlet*, started by the line that called ``spawn()``/``start()``."""
    caller = sys._getframe(1)  # gevent's spawn() and start() are compiled: no frame of theirs
    if caller.f_code in PLUMBING:  # a monkey-patched thread's greenlet: the thread is tracked
        return
    site = _records.capture(caller, _records.depth)
    _records.new(greenlet, "task", Greenlet(_coro_name(greenlet._run)), site)
    greenlet.rawlink(_finished)


def _finished(greenlet: Any) -> None:
    _records.release(id(greenlet))


def _spawned_at(greenlet: Any) -> Any:
    """The flat site of the line that spawned *greenlet*, while it is tracked, else empty: what
    it acquires goes on there (see ``_sites.greenlet_site``), not at its function alone."""
    rec = _records.live.get(id(greenlet))
    if rec is None or rec.kind != "task" or rec() is not greenlet or type(rec.info) is not Greenlet:
        return ()
    site = rec.site
    return site if site and type(site[0]) is not tuple else ()


#: ``Greenlet.remove_spawn_callback`` of each greenlet class hooked, for :func:`reset`.
_unhook: list[Any] = []


def install_greenlet(patches: Patches, greenlet: ModuleType) -> None:
    """Record every ``Greenlet`` started as a task, released once it is dead (see the module's
    docstring)."""
    cls = getattr(greenlet, "Greenlet", None)
    add = getattr(cls, "add_spawn_callback", None)
    remove = getattr(cls, "remove_spawn_callback", None)
    if add is None or remove is None:
        return  # not the layout this was written for: leave gevent as it is
    # A compiled class, which takes no attribute: its spawn callbacks are the hook it offers.
    add(_started)
    _unhook.append(remove)
    _sites.greenlet_site = _spawned_at


def install_thread(patches: Patches, thread: ModuleType) -> None:
    """A monkey-patched ``threading.Thread`` runs in a greenlet: the thread is what is tracked."""
    plumbing(thread, "_start_new_greenlet")


def reset() -> None:
    """Stop recording greenlets (the last tracker stopped)."""
    while _unhook:
        _unhook.pop()(_started)
    _sites.greenlet_site = None


def install_subprocess(patches: Patches, subprocess: ModuleType) -> None:
    """Track ``gevent.subprocess.Popen`` (``subprocess.Popen`` once monkey-patched) as the
    standard ``Popen`` is."""
    popen = getattr(subprocess, "Popen", None)
    if not isinstance(popen, type) or "__init__" not in vars(popen):
        return  # not the layout this was written for: leave gevent as it is
    if popen is getattr(sys.modules.get("subprocess"), "Popen", None):
        return  # monkey-patched before tracking started: tracked as subprocess.Popen already
    _children.track_popen(patches, popen)
