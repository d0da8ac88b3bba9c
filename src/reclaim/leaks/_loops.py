"""asyncio event loops never closed: one entry per loop, not its selector and self-pipe sockets.

A selector event loop (what ``asyncio.new_event_loop()``, ``asyncio.run`` and
``asyncio.Runner`` make on Unix) is a selector and a socket pair it wakes
itself through. Reported part by part, a loop nobody closed was three entries
naming none of them a loop. So ``BaseSelectorEventLoop.__init__`` is wrapped:
once the loop is built, the records of its selector (made there, or passed in:
the loop closes it either way) and of its two self-pipe sockets are released,
as they are the loop's now (their descriptors stay claimed through the loop's
``fds``), and the loop gets one record (kind ``eventloop``) at the line of the
user's code that made it. ``close()`` releases it; ``asyncio.run`` and
``Runner.close()`` call it, so neither reports anything.

``BaseEventLoop.__del__`` closes a loop the garbage collector finds unclosed,
which would pass for the program's ``close()``: it is wrapped to mark such a
loop as collected first. A loop dying in a reference cycle loses its weak
reference before that ``__del__`` runs, and the kind being a death leak
reports it then. A ``__del__`` stopped by its own ResourceWarning made an error (pytest's
``filterwarnings = error``) leaves the loop unclosed, kept alive by the exception: its
selector and self-pipe stay the loop's, not untracked descriptors. Only the creation,
``close()`` and ``__del__`` of a loop are wrapped: running it, its selector and its sockets
pay nothing more. uvloop's
loops are recorded as this kind too (see :mod:`._uvloop`), and so are gevent's
hubs made in threads (see :mod:`._gevent`); the Windows proactor's are not tracked.

A stream or transport dropped unclosed is closed by its ``__del__``
(``StreamWriter.__del__`` closes the transport, ``_SelectorTransport.__del__``
the socket), with a ResourceWarning: that too would pass for the program's
``close()``. Both are wrapped to mark the socket collected first, so ``reader,
writer = await asyncio.open_connection(...)`` with no ``writer.close()`` is
reported at its line as closed by the garbage collector.

The thread pool a loop makes for ``run_in_executor(None, ...)`` (its default executor) is the
loop's too: ``close()`` shuts it down (``asyncio.run`` and ``Runner.close()`` wait for it first).
A check that finds one still running while its loop is open does not report it on its own (see
:func:`fold_executors`): a module- or session-scoped loop (pytest-asyncio's ``loop_scope``, an
anyio runner kept by a wider async fixture) makes it in the first test that hands work to the loop,
and shuts it down when the loop closes; a loop left open is reported, the executor under it.
"""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType

from reclaim import _sites
from reclaim._sites import frame_above
from reclaim._sites import in_finalizer as _in_finalizer

from . import _fds as fd_table
from . import _records, _sockets
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, first_outside_framework, site
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

__all__ = ["KIND", "fold_executors", "install", "install_streams", "releasing_close", "watched"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


#: The descriptor of a socket or selector (an epoll, kqueue or devpoll one), else None.
_fileno = fd_table.fileno_of


def _closed(obj: Any) -> bool:
    is_closed = getattr(obj, "is_closed", None)
    if is_closed is None:
        # A gevent hub (see _gevent): closed once destroyed. A trio run (see _trio), whose close()
        # releases its record: open while tracked.
        return getattr(obj, "loop", True) is None
    return bool(is_closed())


def _is_open(obj: Any, rec: Record) -> bool:
    return not _closed(obj)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, selector, fd, pipe, *made = rec.info
    details: Details = {"class": cls, "selector": selector, "fd": fd, "self_pipe": list(pipe)}
    if obj is not None and not _closed(obj) and hasattr(obj, "is_running"):
        details["running"] = obj.is_running()
    text = cls + (f" (selector fd {fd})" if fd is not None else "")
    if made:  # a loop whose descriptors C code made (uvloop's, a gevent hub's: see _uvloop, _gevent)
        fds = [fd for fd, _ in made[0]]
        details["fds"] = fds
        text += f" ({selector}, fds {', '.join(map(str, fds))})" if fds else f" ({selector})"
    if obj is not None and _current(obj):
        # asyncio keeps it for the thread: no collection frees it, and a later test that asks
        # for the current loop reuses it. Said, so the entry does not read as a loop dropped.
        details["current"] = True
        text += ", still the thread's current event loop (set_event_loop(None), then close() it)"
    return text, details


def _current(loop: Any) -> bool:
    """Whether *loop* is the current event loop set for the checking thread (the main thread, at
    a test's check or the program's end): ``asyncio.set_event_loop()``'s, read without making one."""
    events = sys.modules.get("asyncio.events")
    policy = getattr(events, "_event_loop_policy", None)
    local = getattr(policy, "_local", None)
    return local is not None and getattr(local, "_loop", None) is loop


def _fds(obj: Any, rec: Record) -> list[int]:
    if len(rec.info) > 4:  # the descriptors its creation made (uvloop's, gevent's: see _uvloop)
        return [fd for fd, _ in rec.info[4]]
    parts = (getattr(obj, name, None) for name in ("_selector", "_ssock", "_csock"))
    return [fd for fd in map(_fileno, parts) if fd is not None]


#: The kind of an event loop's record (a gevent hub's loop is one too, see _gevent).
KIND = "eventloop"


def watched(loops: Iterable[Any]) -> dict[int, tuple[str | None, str]]:
    """Descriptor -> (label, callback) for each descriptor a selector event loop of *loops*
    watches (``add_reader()``/``add_writer()``), with the label current where it was added.

    C code a coroutine drives opens descriptors no hook sees, and has the loop watch them while
    it waits: a connection psycopg_pool's background task is opening (libpq's socket) is such
    a descriptor until ``connect()`` returns. A loop that outlives a test (pytest-asyncio's
    ``loop_scope="module"``) does not run between tests: the descriptor is still there when the
    test ends, and is not the test's but the task's, whose label the callback's context holds
    (see :data:`._records.origin`; None where it holds none).
    """
    out: dict[int, tuple[str | None, str]] = {}
    origin = _records.origin
    for loop in loops:
        selector = getattr(loop, "_selector", None)  # asyncio's selector loops only
        get_map = getattr(selector, "get_map", None)
        if get_map is None:
            continue
        try:
            keys = list((get_map() or {}).values())
        except Exception:  # a closed or exotic selector watches nothing we can read
            continue
        for key in keys:
            handles = key.data if isinstance(key.data, tuple) else ()
            for handle in handles:
                context = getattr(handle, "_context", None)
                callback = getattr(handle, "_callback", None)
                if context is None or callback is None:
                    continue
                started = context.get(origin, None)
                name = getattr(callback, "__qualname__", None) or type(callback).__qualname__
                module = getattr(callback, "__module__", None)
                out[key.fd] = (
                    started[1] if started is not None else None,
                    f"{module}.{name}" if isinstance(module, str) else str(name),
                )
                break
    return out


register(Kind(KIND, is_open=_is_open, describe=_describe, fds=_fds, death_leak=True))


def _holds_as_default(loop: Any, executor: object) -> bool:
    """Whether *executor* is *loop*'s default executor (uvloop's loop keeps it in a C field,
    which only the loop's referents show)."""
    if hasattr(loop, "_default_executor"):
        return loop._default_executor is executor
    return any(part is executor for part in gc.get_referents(loop))


def fold_executors(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take the default executors of event loops still open out of *found* (``(record, live
    object or None, state)`` of each leak a check found): beside the loop when the loop is a leak
    of this check too (into ``out[id(loop record)]``, or under what holds the loop, a thread
    running it: call this after the other folds), else away, as the loop is someone else's (a
    wider fixture's) and shuts its executor down when it closes."""
    # An executor's record is of kind "thread" with its class's label, a str, as its info.
    executors = [item for item in found if item[0].kind == "thread" and type(item[0].info) is str]
    executors = [item for item in executors if item[1] is not None]
    if not executors:
        return
    loops: list[tuple[Record | None, Any]] = []
    for rec in list(_records.live.values()):
        obj = rec() if rec.kind == KIND and rec.state == OPEN else None
        if obj is not None and obj is not NO_OBJECT and not _closed(obj):
            loops.append((rec, obj))
    # A loop with no record open: one a plugin made in pytest_configure (pytest-twisted's asyncio
    # reactor's, which aiohttp's resolver hands getaddrinfo() to), whose records are forgotten.
    recorded = {id(obj) for _, obj in loops}
    loops.extend((None, obj) for obj in list(_every_loop) if id(obj) not in recorded and not _closed(obj))
    if not loops:
        return
    # Where a loop of this check is listed: its own entry, or the entry of what holds it.
    listed = {id(rec): id(rec) for rec, _, _ in found}
    for holder, items in out.items():
        for rec, _, _ in items:
            listed.setdefault(id(rec), holder)
    parts: dict[int, Record | None] = {}
    for item in executors:
        for loop_rec, loop in loops:
            if _holds_as_default(loop, item[1]):
                parts[id(item[0])] = loop_rec
                break
    keep: list[Found] = []
    for item in found:
        if id(item[0]) not in parts:
            keep.append(item)
        elif (loop_rec := parts[id(item[0])]) is not None and id(loop_rec) in listed:
            out.setdefault(listed[id(loop_rec)], []).append(item)
    found[:] = keep


def releasing_close(close: Callable[[Any], None], then: Callable[[Any], None] | None = None) -> Any:
    """A loop's *close*, which releases the loop's record once the loop is closed (not when
    refused, a running loop's, before closing anything), then calls *then* with the loop."""

    def close_(self: Any) -> None:
        try:
            close(self)
        finally:
            if self.is_closed():
                _records.release(id(self))
                if then is not None:
                    then(self)

    close_.__doc__ = close.__doc__
    return close_


def _keep_descriptors(loop: Any) -> None:
    """*loop*'s ``__del__`` did not close it: its ResourceWarning, made an error (``-W error``,
    pytest's ``filterwarnings = error``), stopped it first. The exception's traceback then keeps
    the loop alive, its selector and self-pipe open, until whoever took it (pytest's unraisable
    hook) drops it. They are the loop's, reported already as collected (in a reference cycle,
    its record lost its weak reference first and claims them no more): kept (see
    ``_fds.KEPT``), as a uvloop loop's collected unclosed, not reported a second time as
    untracked."""
    made = []
    for name in ("_selector", "_ssock", "_csock"):
        fd = _fileno(getattr(loop, name, None))
        ident = None if fd is None else fd_table.identity(fd)
        if fd is not None and ident is not None:
            made.append((fd, ident))
    fd_table.keep(tuple(made))


#: Every selector event loop made while tracking, recorded or not (see fold_executors).
_every_loop: weakref.WeakSet[Any] = weakref.WeakSet()


def install(patches: Patches, selector_events: ModuleType) -> None:
    """Record each selector event loop as one resource; see it closed, or collected unclosed."""
    loop_cls = selector_events.BaseSelectorEventLoop
    base = sys.modules["asyncio.base_events"].BaseEventLoop
    init = vars(loop_cls)["__init__"]
    close = vars(loop_cls)["close"]
    finalize = vars(base).get("__del__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        # getattr: a subclass may make no self-pipe (its own _make_self_pipe); it must still work.
        selector, ssock, csock = (getattr(self, name, None) for name in ("_selector", "_ssock", "_csock"))
        for part in (selector, ssock, csock):
            if part is not None:
                _records.release(id(part))  # the loop's own now: it closes them
        pipe = tuple(fd for fd in (_fileno(ssock), _fileno(csock)) if fd is not None)
        selector_class = type(selector).__name__ if selector is not None else None
        info = (type(self).__name__, selector_class, _fileno(selector), pipe)
        _every_loop.add(self)
        maker = first_outside_framework(sys._getframe(1))
        if maker is not None and maker.f_code in PLUMBING:
            # A library's loop for the process (fsspec's IO loop, see _owning.PROCESS_WIDE): at
            # its own line, owned, so never reported, while its descriptors stay accounted for.
            _sites.mark_owned(maker.f_code)
            _records.new(self, "eventloop", info, _records.capture(maker, _records.depth))
            return
        _records.new(self, "eventloop", info, site(self))

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _records.at_del(self)
        unclosed = not self.is_closed()
        if rec is not None and rec.state == OPEN and rec.kind == "eventloop" and unclosed:
            _records.leak(rec, _records.COLLECTED)  # before the close() below passes for the program's
        if finalize is None:
            return
        try:
            finalize(self, *args, **kwargs)
        finally:
            if unclosed and not self.is_closed():
                _keep_descriptors(self)

    transport_cls = getattr(selector_events, "_SelectorTransport", None)
    if transport_cls is not None and "__del__" in vars(transport_cls):
        _collects_socket(patches, transport_cls, _transport_closes)
    if transport_cls is not None and "close" in vars(transport_cls):
        _closed_by_finalizers(patches, transport_cls)

    __init__.__doc__ = init.__doc__
    patches.set(loop_cls, "__init__", __init__)
    patches.set(loop_cls, "close", releasing_close(close))
    if finalize is not None:
        __del__.__doc__ = finalize.__doc__
        patches.set(base, "__del__", __del__)


def install_streams(patches: Patches, streams: ModuleType) -> None:
    """A ``StreamWriter`` collected unclosed: its ``__del__`` closes the socket, the GC did."""
    writer = getattr(streams, "StreamWriter", None)
    if writer is not None and "__del__" in vars(writer):  # 3.11.5 and later
        _collects_socket(patches, writer, _writer_closes)


def _writer_closes(writer: Any) -> Any:
    """The socket ``writer.__del__`` is about to close (only while its loop runs on), or None."""
    transport = writer._transport
    if transport.is_closing() or transport._loop.is_closed():
        return None
    return _transport_closes(transport)


def _transport_closes(transport: Any) -> Any:
    """The socket ``transport.__del__`` is about to close, or None (closed, or closing already)."""
    return None if transport.is_closing() else transport._sock


def _closed_by_finalizers(patches: Patches, cls: type) -> None:
    """Wrap ``cls.close`` and ``cls.abort``: a transport a ``__del__`` closes or aborts (a client
    library's connection object dropped unclosed: ``writer.close()``, asyncpg's ``terminate()``)
    closes its socket a loop turn later, outside that ``__del__``: its socket is marked
    collected now."""
    for name in ("close", "abort"):
        method = vars(cls).get(name)
        if method is not None:
            patches.set(cls, name, _marking_collected(method))


def _marking_collected(method: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _in_finalizer(frame_above()):
            try:
                sock = _transport_closes(self)
            except Exception:  # a half-built transport: its own close copes
                sock = None
            rec = _records.live.get(id(sock)) if sock is not None else None
            if rec is not None and rec.kind == "socket":
                _sockets.collected(rec, sock)
        return method(self, *args, **kwargs)

    wrapper.__name__ = method.__name__
    wrapper.__doc__ = method.__doc__
    return wrapper


def _collects_socket(patches: Patches, cls: type, closes: Any) -> None:
    """Wrap ``cls.__del__``, which closes a socket left open: mark that socket collected first."""
    finalize = vars(cls)["__del__"]

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            sock = closes(self)
        except Exception:  # a half-built object: its own __del__ copes, ours must not get in the way
            sock = None
        rec = _records.live.get(id(sock)) if sock is not None else None
        if rec is not None and rec.kind == "socket":
            _records.leak(rec, _records.COLLECTED)  # before the close() below passes for the program's
        finalize(self, *args, **kwargs)

    __del__.__doc__ = finalize.__doc__
    patches.set(cls, "__del__", __del__)
