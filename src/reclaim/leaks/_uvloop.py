"""uvloop: its loops recorded as asyncio's are, and the tasks made on them tracked.

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

Not tracked: the sockets and pipes libuv makes in C for a loop's servers,
connections and subprocesses (reported as untracked descriptors while open;
the loop's ``close()`` closes them all), and loops of a subclass of
``uvloop.loop.Loop`` that is not one of ``uvloop.Loop``.
"""

from __future__ import annotations

import sys
import weakref
from types import ModuleType
from typing import Any

from . import _fds, _records, _tasks
from ._patch import Patches

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: id(loop) -> (weak reference to it, what its creation made), for each loop not closed yet.
_open: dict[int, tuple[weakref.ref[Any], _fds.Made]] = {}


def _watch(loop: Any, made: _fds.Made) -> None:
    key = id(loop)

    def gone(ref: weakref.ref[Any]) -> None:
        entry = _open.get(key)
        if entry is not None and entry[0] is ref:  # collected unclosed: uvloop closes nothing then
            del _open[key]
            _fds.keep(made)

    _open[key] = (weakref.ref(loop, gone), made)


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
    """Record each ``uvloop.Loop`` with its descriptors, and the tasks created on it."""
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

    def close_(self: Any) -> None:
        try:
            close(self)
        finally:
            if self.is_closed():  # not when refused (a running loop) before closing anything
                _records.release(id(self))
                entry = _open.pop(id(self), None)
                if entry is not None:
                    _fds.keep(entry[1])  # what survives its close is libuv's own (its signal lock pipe)

    close_.__doc__ = close.__doc__
    patches.set(loop_cls, "__new__", staticmethod(__new__))
    patches.set(loop_cls, "close", close_)
    patches.set(loop_cls, "create_task", _tasks.tracking_create_task(base.create_task))
