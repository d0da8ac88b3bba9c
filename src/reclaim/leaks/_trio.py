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

A trio run is an event loop (kind ``eventloop``, see :mod:`._loops`): its epoll (kqueue)
object and the two socket pairs it wakes itself through are its own, made by
``setup_runner`` and closed by ``Runner.close()`` as ``trio.run`` (or a guest run)
ends. Reported part by part, a run never ended (an anyio blocking portal on trio never
exited) was four sockets and an epoll descriptor no hook sees, none named a run: it is
one record, held by the thread it runs in (see :func:`._threads.fold`).

A trio ``Process`` waits for its child through a pidfd it opens with the ``os.pidfd_open``
it imported before tracking began, kept in a ``FileIO``: the child's plumbing, reported as
an untracked descriptor beside a child never waited for. The child's ``Popen`` holds it now
(see :data:`._children.PIDFD`).

trio runs ``trio.to_thread.run_sync`` (anyio's ``to_thread.run_sync``, ``open_file``,
``open_process``) in a worker of its thread cache, started by an earlier job (another
test's, maybe) and owned: a file or child made there was recorded at trio's frames and
no line of the program's. Each job handed to the cache carries the site of the code that
handed it over (one capture per job, see :func:`reclaim._sites.mark_handoff`), as a
``ThreadPoolExecutor``'s work item does.
"""

from __future__ import annotations

import gc
import os
import sys
from types import FrameType, ModuleType

from reclaim import _sites

from . import _children, _fds, _loops, _records
from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["install", "install_subprocess", "install_thread_cache"]

__tracebackhide__ = True  # a job's __call__ stands in for the function it runs: see _patch

#: Parent tasks and awaited coroutines looked through at most (a nesting deeper is not a program's).
_SEARCH = 64


def install(patches: Patches, run: ModuleType) -> None:
    """Point sites that walk into trio's run loop at the program's line their task was spawned under."""
    loop = getattr(run, "unrolled_run", None)
    current_task = getattr(run, "current_task", None)
    code = getattr(loop, "__code__", None)
    if code is None or current_task is None:  # private: a release may rename them
        return

    def running(look: Callable[[Any], _sites.RawSite]) -> Callable[[], _sites.RawSite]:
        """*look*, asked of the task running now; empty in trio's own run loop, in no task."""

        def of_running_task() -> _sites.RawSite:
            try:
                task = current_task()
            except RuntimeError:  # not in a task: trio's own run loop
                return ()
            return look(task)

        return of_running_task

    spawned_at = running(_parents_line)
    parents = running(_parents_frames)

    # trio/, from trio/_core/_run.py: the frames a parent task waits in there (its traps, its
    # nurseries' __aexit__, the system task's init) are never a parent's line.
    _sites.trio_dir = os.path.dirname(os.path.dirname(code.co_filename)) + os.sep
    _sites.trio_root = code
    _sites.trio_site = spawned_at
    _sites.trio_parents = parents
    _track_runs(patches, run)


def _track_runs(patches: Patches, run: ModuleType) -> None:
    """Record each trio run as one event loop, made by ``setup_runner``, released by ``Runner.close()``."""
    setup = getattr(run, "setup_runner", None)
    runner_cls = getattr(run, "Runner", None)
    close = vars(runner_cls).get("close") if isinstance(runner_cls, type) else None
    if setup is None or close is None:  # private: a release may rename them
        return

    def setup_runner(*args: Any, **kwargs: Any) -> Any:
        runner = setup(*args, **kwargs)
        poller, sockets = _parts(runner)
        for part in (poller, *sockets):
            _records.release(id(part))  # the run's own now: it closes them
        fds = [fd for fd in map(_loops._fileno, (poller, *sockets)) if fd is not None]
        made = tuple((fd, _fds.identity(fd)) for fd in fds)
        info = ("trio run", type(poller).__name__ if poller is not None else None, None, (), made)
        _records.new(runner, _loops.KIND, info, _records.capture(sys._getframe(1), _records.depth))
        return runner

    def close_(self: Any) -> None:
        _records.release(id(self))
        close(self)

    setup_runner.__doc__ = setup.__doc__
    close_.__doc__ = close.__doc__
    patches.set(run, "setup_runner", setup_runner)
    patches.set(runner_cls, "close", close_)


def _parts(runner: Any) -> tuple[Any, list[Any]]:
    """A trio run's poller (an epoll or kqueue object; None on Windows) and its wakeup sockets."""
    io = getattr(runner, "io_manager", None)
    poller = getattr(io, "_epoll", None) or getattr(io, "_kqueue", None)
    # The I/O manager's socket pair, and the entry queue's (what run_sync_soon wakes the run with).
    queue = getattr(runner, "entry_queue", None)
    pairs = (getattr(io, "_force_wakeup", None), getattr(queue, "wakeup", None))
    sockets = [getattr(pair, name, None) for pair in pairs for name in ("wakeup_sock", "write_sock")]
    return poller, [sock for sock in sockets if sock is not None]


class _Job:
    """A job handed to trio's thread cache, run as it, with the site of whoever handed it over."""

    def __init__(self, fn: Any, site: _sites.RawSite) -> None:
        self.fn = fn
        setattr(self, _sites.HANDED_OVER, site)

    def __call__(self) -> Any:
        return self.fn()


_sites.mark_handoff(_Job.__call__.__code__)


def install_thread_cache(patches: Patches, module: ModuleType) -> None:
    """Make each job handed to trio's thread cache carry the site of the code that handed it over."""
    cache = getattr(module, "ThreadCache", None)
    start = vars(cache).get("start_thread_soon") if isinstance(cache, type) else None
    if start is None:  # private: a release may rename it
        return

    def start_thread_soon(self: Any, fn: Any, deliver: Any, name: Any = None) -> None:
        site = _sites.handed_over_site(sys._getframe(1), _records.depth)
        start(self, _Job(fn, site) if site else fn, deliver, name)

    start_thread_soon.__doc__ = start.__doc__
    patches.set(cache, "start_thread_soon", start_thread_soon)


def install_subprocess(patches: Patches, module: ModuleType) -> None:
    """Make the pidfd each trio ``Process`` opens its child's ``Popen``'s."""
    process = getattr(module, "Process", None)
    init = vars(process).get("__init__") if isinstance(process, type) else None
    if init is None:  # private: a release may rename it
        return

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        pidfd, popen = getattr(self, "_pidfd", None), getattr(self, "_proc", None)
        if pidfd is not None and popen is not None:
            setattr(popen, _children.PIDFD, pidfd)

    __init__.__doc__ = init.__doc__
    patches.set(process, "__init__", __init__)


def _parents_line(task: Any) -> _sites.RawSite:
    """``(code, lasti)`` of the program's innermost frame that a parent of *task* waits in, else ()."""
    for _ in range(_SEARCH):
        nursery = getattr(task, "parent_nursery", None)
        task = getattr(nursery, "parent_task", None)
        if task is None:
            return ()
        for frame in reversed(_awaiting(getattr(task, "coro", None))):
            if _sites.frame_is_program(frame) and not frame.f_code.co_filename.startswith(_sites.trio_dir):
                return (frame.f_code, frame.f_lasti)
    return ()


def _parents_frames(task: Any) -> _sites.RawSite:
    """``(code, lasti, ...)`` of the program's frames the parents of *task* wait in, innermost
    first, parent after parent, at most :data:`_SEARCH` of them."""
    out: list[Any] = []
    for _ in range(_SEARCH):
        nursery = getattr(task, "parent_nursery", None)
        task = getattr(nursery, "parent_task", None)
        if task is None:
            break
        for frame in reversed(_awaiting(getattr(task, "coro", None))):
            if _sites.frame_is_program(frame) and not frame.f_code.co_filename.startswith(_sites.trio_dir):
                out.append(frame.f_code)
                out.append(frame.f_lasti)
    return tuple(out)


def _awaiting(coro: Any) -> list[FrameType]:
    """The frames of a suspended coroutine and of what it awaits, outermost first: through an
    async generator's step too (``await anext(gen)``: an ``@asynccontextmanager``'s
    ``__aenter__``, whose generator waits in ``nursery.start()``), which names no generator but
    references it."""
    frames: list[FrameType] = []
    while coro is not None and len(frames) < _SEARCH:
        frame = (
            getattr(coro, "cr_frame", None)
            or getattr(coro, "gi_frame", None)
            or getattr(coro, "ag_frame", None)
        )
        if frame is None:
            if type(coro).__name__ != "async_generator_asend":
                break
            coro = next((ref for ref in gc.get_referents(coro) if hasattr(ref, "ag_frame")), None)
            continue
        frames.append(frame)
        coro = (
            getattr(coro, "cr_await", None)
            or getattr(coro, "gi_yieldfrom", None)
            or getattr(coro, "ag_await", None)
        )
    return frames
