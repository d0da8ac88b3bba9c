"""trio tasks: what a task spawned by a library acquires is recorded at the program's line too.

trio runs each task's step from its run loop (``unrolled_run``), so a task's
stack is its own coroutines and then the loop, down to whatever called
``trio.run``: pytest-trio's runner and the pytest script under ``pytest``.
``trio.open_tcp_stream`` connects in tasks of its own, anyio's ``connect_tcp``
and ``trio.serve_tcp`` likewise: their sockets were recorded at trio's frames
and the pytest line. Nothing is wrapped: when a site walks into trio's run
loop before any of the program's frames (see :data:`reclaim._sites.trio_root`),
the parent tasks of the task running now are asked, innermost first, for the
program's line they wait at: the ``await trio.open_tcp_stream(...)`` that
opened the nursery the connecting task runs in. Only such a site pays for it.
"""

from __future__ import annotations

from types import FrameType, ModuleType

from reclaim import _sites

from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

#: Parent tasks and awaited coroutines looked through at most (a nesting deeper is not a program's).
_SEARCH = 64


def install(patches: Patches, run: ModuleType) -> None:
    """Point sites that walk into trio's run loop at the program's line their task was spawned under."""
    loop = getattr(run, "unrolled_run", None)
    current_task = getattr(run, "current_task", None)
    code = getattr(loop, "__code__", None)
    if code is None or current_task is None:  # private: a release may rename them
        return

    def spawned_at() -> _sites.RawSite:
        try:
            task = current_task()
        except RuntimeError:  # not in a task: trio's own run loop
            return ()
        return _parents_line(task)

    _sites.trio_root = code
    _sites.trio_site = spawned_at


def _parents_line(task: Any) -> _sites.RawSite:
    """``(code, lasti)`` of the program's innermost frame that a parent of *task* waits in, else ()."""
    for _ in range(_SEARCH):
        nursery = getattr(task, "parent_nursery", None)
        task = getattr(nursery, "parent_task", None)
        if task is None:
            return ()
        for frame in reversed(_awaiting(getattr(task, "coro", None))):
            if _sites.frame_is_program(frame):
                return (frame.f_code, frame.f_lasti)
    return ()


def _awaiting(coro: Any) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < _SEARCH:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return frames
