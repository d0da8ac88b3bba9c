"""``multiprocessing.shared_memory.SharedMemory``: one entry per handle, its map and descriptor part of it.

A POSIX ``SharedMemory`` is a descriptor from ``shm_open`` and an ``mmap`` of
it; the segment itself is a name in the system (``/dev/shm/psm_…`` on Linux)
that outlives the process until someone calls ``unlink()``. Reported part by
part, a handle never closed read ``mmap /dev/shm/psm_…`` and one closed but
never unlinked was not reported at all. So ``SharedMemory.__init__`` is
wrapped: its inner map's record is released (the handle's now; its descriptors
stay claimed through the kind's ``paths``), and the handle gets one record
(kind ``sharedmemory``) at the user's line. It is open while the handle is not
closed, or, for one made with ``create=True``, while the segment was not
unlinked and still exists when checked (another handle or process may unlink
it: then nothing outlives the process). A handle attached with
``create=False`` needs only ``close()``. A segment nobody unlinked is left to
the resource tracker, which removes it (with a warning) once the program's
processes end; with 3.13's ``track=False`` it stays for good. Either way the
program forgot ``unlink()``, and the entry says so.

The record refers to no object (:data:`._records.NO_OBJECT`) and follows the
handle through a weak reference: a handle closed and dropped still leaves a
segment to unlink. ``SharedMemory.__del__`` closes a handle left open, which
would pass for the program's ``close()``: it is wrapped to report such a handle
as closed by the garbage collector (still saying when it was not unlinked).

Segments made by ``SharedMemoryManager.SharedMemory()``/``ShareableList()`` are
the manager's (it unlinks them at shutdown; see ``install_managers``), so they
carry no user frame and are never reported. Only a handle's creation,
``close()``, ``unlink()`` and ``__del__`` are wrapped. Windows (no
``_posixshmem``: segments die with their last handle) is not tracked.
"""

from __future__ import annotations

import os
import sys
import weakref
from types import ModuleType

from . import _fds, _records
from ._kinds import Details, Kind, register
from ._owning import site
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install", "reset"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_CLASS = "multiprocessing.shared_memory.SharedMemory"
_UNLINK = "unlink(): the segment lives on after close(), until the resource tracker's clean-up at exit"


class _Segment:
    """What one ``SharedMemory`` handle was made with, and what has been done with it."""

    __slots__ = ("created", "gone", "handle", "name", "path", "raw_name", "size", "unlinked")

    def __init__(self, handle: Any) -> None:
        self.handle = weakref.ref(handle)
        self.name: str = handle.name
        self.raw_name: str = handle._name  # as shm_open takes it (with the leading slash)
        self.size: int = handle.size
        self.created = bool(handle._flags & os.O_EXCL)
        self.path = _fds.describe_fd(handle._fd)
        self.unlinked = False
        #: None while the handle lives, then "closed" or "collected" (closed by its __del__).
        self.gone: str | None = None

    def state(self) -> str:
        """``open``, ``closed`` or ``collected``."""
        if self.gone is not None:
            return self.gone
        handle = self.handle()
        return "open" if handle is not None and handle._mmap is not None else "closed"

    def must_unlink(self) -> bool:
        """Made by this handle, not unlinked by it, and still there."""
        return self.created and not self.unlinked and _exists(self.raw_name)

    def problem(self, unlink: bool) -> str:
        """What was not done (the report says when the garbage collector closed the handle)."""
        state = self.state()
        if state == "closed":
            return f"not unlinked ({_UNLINK})" if unlink else "closed and unlinked"
        if state == "collected":
            return f"not closed, not unlinked ({_UNLINK})" if unlink else "not closed"
        if unlink:
            return f"not closed and not unlinked (close(), then {_UNLINK})"
        return "not closed (close())"


def _exists(raw_name: str) -> bool:
    """Whether the segment is still there (someone else may have unlinked it)."""
    posixshmem = sys.modules.get("_posixshmem")
    if posixshmem is None:
        return True
    try:
        fd = posixshmem.shm_open(raw_name, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:  # there, but not ours to open
        return True
    os.close(fd)
    return True


def _is_open(obj: Any, rec: Record) -> bool:
    segment: _Segment = rec.info
    return segment.state() == "open" or segment.must_unlink()


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    segment: _Segment = rec.info
    unlink = segment.created and not segment.unlinked
    problem = segment.problem(unlink)
    details: Details = {
        "class": _CLASS,
        "name": segment.name,
        "size": segment.size,
        "created": segment.created,
        "handle": segment.state(),
        "unlinked": segment.unlinked,
        "problem": problem,
    }
    return f"SharedMemory {segment.name!r} ({segment.size} bytes) {problem}", details


def _paths(obj: Any, rec: Record) -> tuple[str, ...]:
    # The shm_open descriptor and the map's duplicate of it both point at the segment.
    segment: _Segment = rec.info
    return (segment.path,) if segment.path and segment.state() == "open" else ()


register(Kind("sharedmemory", is_open=_is_open, describe=_describe, paths=_paths))

#: id(handle) -> its record, until the handle's __del__ runs.
_handles: dict[int, Record] = {}


def _settle(rec: Record) -> None:
    """Release *rec* once its handle is closed and its segment, if it made it, unlinked."""
    segment: _Segment = rec.info
    if segment.state() != "open" and (segment.unlinked or not segment.created):
        _records.release(rec.key)


def install(patches: Patches, module: ModuleType) -> None:
    """Record each POSIX ``SharedMemory`` handle as one resource; see it closed, unlinked or collected."""
    if getattr(module, "_USE_POSIX", False) is not True:
        return
    cls = module.SharedMemory
    init, close, unlink = (vars(cls)[name] for name in ("__init__", "close", "unlink"))
    finalize = vars(cls).get("__del__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _records.release(id(self._mmap))  # the handle's own now: close() closes it
        segment = _Segment(self)
        rec = _records.new(NO_OBJECT, "sharedmemory", segment, site(self), ("sharedmemory", id(segment)))
        _handles[id(self)] = rec

    def close_(self: Any) -> None:
        try:
            close(self)
        finally:
            rec = _handles.get(id(self))
            if rec is not None and rec.state == OPEN:
                _settle(rec)

    def unlink_(self: Any) -> None:
        unlink(self)
        rec = _handles.get(id(self))
        if rec is not None:
            rec.info.unlinked = True
            if rec.state == OPEN:
                _settle(rec)

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _handles.pop(id(self), None)
        if rec is not None and rec.state == OPEN:
            segment: _Segment = rec.info
            if getattr(self, "_mmap", None) is not None:
                segment.gone = "collected"
                _records.leak(rec, _records.COLLECTED)  # before the close() below passes for the program's
            else:
                segment.gone = "closed"
        if finalize is not None:
            finalize(self, *args, **kwargs)

    for wrapper, original in ((__init__, init), (close_, close), (unlink_, unlink), (__del__, finalize)):
        if original is not None:
            wrapper.__doc__ = original.__doc__
    patches.set(cls, "__init__", __init__)
    patches.set(cls, "close", close_)
    patches.set(cls, "unlink", unlink_)
    patches.set(cls, "__del__", __del__)


def reset() -> None:
    """Forget the handles followed (the instrumentation is being removed)."""
    _handles.clear()
