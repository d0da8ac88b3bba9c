"""watchdog: an observer never stopped, or an inotify reader whose descriptors stay open, is one
entry at the program's line, not the threads and descriptors it is made of.

A watchdog ``Observer`` is a thread dispatching events, an emitter thread per scheduled watch
and, on Linux, an ``InotifyFD`` of its own: an inotify descriptor (opened through ctypes, which
no hook sees), a wake-up pipe, a reader thread and the dispatcher thread that reader starts.
Never stopped, an observer was reported as four threads at watchdog's lines, two pipe
descriptors and an ``untracked-fd`` "acquired at <unknown>", none of them named an observer.

So an observer, once started, is recorded (kind ``watchdog``) at the program's line that started
it, open while its thread runs; its emitters' threads and its ``InotifyFD`` are listed under it
(see :func:`fold`). An ``InotifyFD`` is recorded at the program's line that made it (the
``schedule()`` that made its observer's), under the key of its inotify descriptor, so that
closing that descriptor is its release; open, it holds that descriptor and its pipe (never
reported on their own: ``InotifyFD``'s functions are owned, see :func:`._owning.own`, so the
pipe and the dispatcher thread are recorded, not reported), and its reader thread is listed
under it. watchdog closes those descriptors on the reader thread only: an ``InotifyFD`` closed
before that thread ever read (never started, or stopped at once) keeps them open for good, and
the entry says so.

The reader ``InotifyFD.get_instance()`` starts for the process, which every emitter not handed
one of its own shares (an ``InotifyEmitter`` made by the program), is watchdog's: it outlives
every observer, and is not reported (its descriptors are kept, see :data:`._fds.KEPT`).

Only ``InotifyFD``'s ``__init__``, ``add_callback``, ``close`` and ``get_instance`` and
``BaseObserver.start`` are wrapped; a program that does not import watchdog loads none of this.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from types import ModuleType

from . import _records
from ._fds import identity, keep
from ._holders import fold_into, public_name
from ._kinds import Details, Kind, register
from ._owning import caller, outside, own
from ._patch import Patches
from ._records import NO_OBJECT, Record
from ._threads import _running

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

__all__ = ["KIND", "MODULES", "fold", "install_inotify", "install_observers"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "watchdog"

#: What an observer or a reader still running was not given.
STOP = "stop(), then join()"

#: Paths an ``InotifyFD``'s entry names, at most (a recursive watch adds one per directory).
PATHS = 3

# An InotifyFD's info: ("inotify", identity of its descriptor, its pipe's descriptors, a weak
# reference to it, the paths it was asked to watch, whether close() ran). An observer's:
# ("observer", its class's name).


#: The fields of an ``InotifyFD``'s info (an observer's has two).
_INOTIFY_INFO = ("kind", "identity", "pipe", "reader", "paths", "closed")


def _is_open(obj: Any, rec: Record) -> bool:
    if rec.info[0] == "observer":
        return bool(_running(obj))
    ident = rec.info[1]
    return ident is not None and identity(rec.key[1]) == ident  # type: ignore[index]


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if rec.info[0] == "observer" or len(rec.info) != len(_INOTIFY_INFO):
        return ()
    return (rec.key[1], *rec.info[2])  # type: ignore[index]


def _watching(paths: list[str]) -> str:
    if not paths:
        return ""
    more = len(paths) - PATHS
    return " watching " + ", ".join(paths[:PATHS]) + (f" and {more} more" if more > 0 else "")


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if rec.info[0] == "observer":
        label = rec.info[1]
        details: Details = {"class": label}
        paths: list[str] = []
        if obj is not None:
            paths = sorted(str(watch.path) for watch in tuple(getattr(obj, "_watches", ())))
            details["paths"] = paths
        return f"{label}{_watching(paths)} not stopped ({STOP})", details
    fd: int = rec.key[1]  # type: ignore[index]
    if len(rec.info) != len(_INOTIFY_INFO):  # closed in a finalizer: _fds noted what it was instead
        return f"InotifyFD (inotify descriptor {fd} and its wake-up pipe)", {"fd": fd}
    _, _, _, ref, watched, closed = rec.info
    reader = ref()
    paths = list(watched)
    details = {"class": "watchdog.observers.inotify_c.InotifyFD", "fd": fd, "paths": paths, "closed": closed}
    text = f"InotifyFD (inotify descriptor {fd} and its wake-up pipe){_watching(paths)}"
    running = reader is not None and _running(reader)
    details["reader_alive"] = running
    if running:
        return f"{text}: its reader thread still running ({STOP})", details
    if closed:
        # watchdog closes them on the reader thread, as it reads again after close(): a reader
        # never started, or stopped before it first read, never does.
        why = "watchdog closes them on its reader thread, which was not reading: never started,"
        why += " or stopped before it read"
        return f"{text}: closed, but its descriptors were left open ({why})", details
    if reader is None:
        return f"{text}: dropped with its descriptors open ({STOP})", details
    return f"{text}: not closed ({STOP}, or close())", details


def _may_end(details: Mapping[str, Any]) -> bool:
    """Whether a check's grace period may see it end: an observer stopped, not yet joined, or a
    reader thread closing its descriptors; not descriptors no thread of watchdog's will close."""
    return bool(details.get("reader_alive", True))


register(Kind(KIND, is_open=_is_open, describe=_describe, fds=_fds, waitable=_may_end))


def _site(obj: object, frame: Any) -> Any:
    """The capture at the program's line, past *obj*'s own methods and watchdog's frames."""
    maker = outside(obj, frame)
    if maker is not None:
        maker = caller(maker, "watchdog")
    return _records.capture(maker, _records.depth)


def install_inotify(patches: Patches, module: ModuleType) -> None:
    """Record each ``InotifyFD`` at the program's line, its descriptors and threads its own."""
    cls = getattr(module, "InotifyFD", None)
    if not (isinstance(cls, type) and "__init__" in vars(cls)):
        return
    own(cls)  # its pipe and its dispatcher thread: recorded, never reported on their own
    init: Callable[..., None] = vars(cls)["__init__"]
    add: Callable[..., Any] | None = vars(cls).get("add_callback")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        fd = getattr(self, "_inotify_fd", None)
        pipe = (getattr(self, "_kill_r", None), getattr(self, "_kill_w", None))
        if type(fd) is not int or not all(type(end) is int for end in pipe):
            return  # a release that keeps them elsewhere: left to the descriptor table
        paths: list[str] = []  # add_callback() adds to it
        info = ("inotify", identity(fd), pipe, weakref.ref(self), paths, False)
        _records.new(NO_OBJECT, KIND, info, _site(self, sys._getframe(1)), ("fd", fd))

    __init__.__doc__ = init.__doc__
    patches.set(cls, "__init__", __init__)
    close: Callable[..., Any] | None = vars(cls).get("close")
    if close is not None:
        patches.set(cls, "close", _noting_close(close))
    shared = vars(cls).get("get_instance")
    if isinstance(shared, classmethod):
        patches.set(cls, "get_instance", _sharing(shared.__func__))
    if add is None:
        return

    def add_callback(self: Any, path: Any, *args: Any, **kwargs: Any) -> Any:
        added = add(self, path, *args, **kwargs)
        rec = _record(self)
        if rec is not None:
            name = path.decode(errors="replace") if isinstance(path, bytes) else str(path)
            if name not in rec.info[4]:
                rec.info[4].append(name)
        return added

    add_callback.__doc__ = add.__doc__
    patches.set(cls, "add_callback", add_callback)


def _record(reader: Any) -> Record | None:
    """The record of the ``InotifyFD`` *reader*, while its inotify descriptor is open."""
    rec = _records.live.get(("fd", getattr(reader, "_inotify_fd", None)))
    if rec is None or rec.kind != KIND or len(rec.info) != len(_INOTIFY_INFO) or rec.info[3]() is not reader:
        return None
    return rec


def _sharing(get_instance: Callable[..., Any]) -> classmethod[Any, Any, Any]:
    """``InotifyFD.get_instance``, leaving the reader it starts for the process to watchdog."""

    def get_instance_(cls: Any, *args: Any, **kwargs: Any) -> Any:
        before = getattr(cls, "_instance", None)
        reader = get_instance(cls, *args, **kwargs)
        if reader is not before:
            _leave_to_watchdog(reader)
        return reader

    get_instance_.__doc__ = get_instance.__doc__
    return classmethod(get_instance_)


def _leave_to_watchdog(reader: Any) -> None:
    """*reader*, the ``InotifyFD`` shared by every emitter not handed one of its own, is watchdog's:
    its descriptors are kept (see :data:`._fds.KEPT`) and neither it nor its thread is reported."""
    rec = _record(reader)
    if rec is not None:
        fds = (rec.key[1], *rec.info[2])  # type: ignore[index]
        _records.release(rec.key)
        keep(tuple((fd, ident) for fd in fds if (ident := identity(fd)) is not None))
    thread = _records.live.get(id(reader))
    if thread is not None and thread() is reader and thread.kind == "thread":
        _records.release(id(reader))


def _noting_close(close: Callable[..., Any]) -> Callable[..., Any]:
    """``InotifyFD.close``, noting that it ran: what its entry says if the descriptors stay open."""

    def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return close(self, *args, **kwargs)
        finally:
            rec = _record(self)
            if rec is not None:
                rec.info = (*rec.info[:5], True)

    close_.__doc__ = close.__doc__
    return close_


def install_observers(patches: Patches, module: ModuleType) -> None:
    """Record each ``BaseObserver`` started, at the program's line, in place of its thread's record."""
    cls = getattr(module, "BaseObserver", None)
    if not (isinstance(cls, type) and "start" in vars(cls)):
        return
    start: Callable[..., None] = vars(cls)["start"]

    def start_(self: Any, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        rec = _records.live.get(id(self))
        if rec is not None and rec() is self and rec.kind == "thread":
            _records.succeed(self, rec, KIND, ("observer", public_name(type(self)))).site = _site(
                self, sys._getframe(1)
            )

    start_.__doc__ = start.__doc__
    patches.set(cls, "start", start_)


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take the parts of the observers and ``InotifyFD``\\ s among *found* out of it, into
    ``out[id(their record)]``: an observer's emitter threads and its ``InotifyFD``, an
    ``InotifyFD``'s reader thread (*found* is ``(record, live object or None, state)``)."""
    threads = {id(obj): item for item in found if item[0].kind == "thread" and (obj := item[1]) is not None}
    readers: dict[int, Found] = {}
    for item in found:
        rec = item[0]
        if rec.kind == KIND and len(rec.info) == len(_INOTIFY_INFO) and (reader := rec.info[3]()) is not None:
            readers[id(reader)] = item
    parts: dict[int, Record] = {}
    for rec, obj, _ in found:
        if rec.kind != KIND:
            continue
        if rec.info[0] == "inotify":
            reader = rec.info[3]() if len(rec.info) == len(_INOTIFY_INFO) else None
            thread = threads.get(id(reader)) if reader is not None else None
            if thread is not None:
                parts[id(thread[0])] = rec
        elif obj is not None:
            for emitter in tuple(getattr(obj, "_emitters", ())):
                thread = threads.get(id(emitter))
                if thread is not None:
                    parts[id(thread[0])] = rec
            reader_item = readers.get(id(getattr(obj, "_inotify_fd", None)))
            if reader_item is not None:
                parts[id(reader_item[0])] = rec
    if parts:
        fold_into(found, out, lambda item: parts.get(id(item[0])))


#: module -> what tracks its part of watchdog, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "watchdog.observers.inotify_c": install_inotify,
    "watchdog.observers.api": install_observers,
}
