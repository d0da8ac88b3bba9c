"""asyncio tasks left pending, including the ones ``asyncio.run`` silently cancels.

``BaseEventLoop.create_task`` is wrapped (every ``asyncio.create_task``,
``ensure_future``, ``TaskGroup.create_task`` and task factory goes through it)
to record the creating line and add a done callback that releases the record.
``asyncio.runners._cancel_all_tasks``, which ``asyncio.run`` and
``asyncio.Runner`` (and so pytest-asyncio) call at loop shutdown, is wrapped
to mark every task still pending there as a leak *before* it is cancelled:
afterwards it looks like any finished task. A task garbage-collected while
pending ("Task was destroyed but it is pending!") is a leak too.
"""

from __future__ import annotations

import contextvars
import sys
from types import ModuleType
from typing import Any

from reclaim import _sites

from . import _records
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, plumbing
from ._patch import Patches
from ._records import OPEN, Record

__all__ = ["install_base_events", "install_runners"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

CANCELLED = "cancelled"
# Done callbacks get this context instead of a fresh copy_context() per task.
_EMPTY = contextvars.Context()


def _coro_name(coro: Any) -> str:
    return str(getattr(coro, "__qualname__", None) or type(coro).__qualname__)


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.done()


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    name, coro = rec.info
    details: Details = {"name": name, "coroutine": coro}
    text = f"{name!r} running {coro}()"
    if obj is not None and not obj.done():
        frame = getattr(obj.get_coro(), "cr_frame", None)
        if frame is not None:
            details["awaiting"] = f"{frame.f_code.co_filename}:{frame.f_lineno}"
            text += f", suspended at {details['awaiting']}"
    return text, details


register(Kind("task", is_open=_is_open, describe=_describe, waitable=True, death_leak=True))


def _done(task: Any) -> None:
    _records.release(id(task))


def install_base_events(patches: Patches, base_events: ModuleType) -> None:
    """Record every task a loop creates, and release it when it is done."""
    loop_cls = base_events.BaseEventLoop
    create_task = loop_cls.create_task

    def create_task_(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
        task = create_task(self, coro, *args, **kwargs)
        caller = sys._getframe(1)
        if caller.f_code in PLUMBING:  # a test runner's own task (anyio's)
            return task
        site = _records.capture(caller, _records.depth)
        _records.new(task, "task", (task.get_name(), _coro_name(coro)), site)
        task.add_done_callback(_done, context=_EMPTY)
        return task

    create_task_.__doc__ = create_task.__doc__
    patches.set(loop_cls, "create_task", create_task_)
    _sites.task_root = sys.modules["asyncio.events"].Handle._run.__code__
    _sites.task_site = _running_task_site


def _running_task_site() -> Any:
    """The flat site that created the task running now (empty when none is tracked)."""
    try:
        task = sys.modules["asyncio.tasks"].current_task()
    except RuntimeError:  # no running event loop
        return ()
    rec = _records.live.get(id(task)) if task is not None else None
    if rec is None or rec.kind != "task" or not rec.site or type(rec.site[0]) is tuple:
        return ()
    return rec.site


def install_anyio(patches: Patches, module: ModuleType) -> None:
    """anyio's pytest plugin runs each test and fixture in one long-lived task that ``Runner.close()``
    cancels by design: the test harness's, never a test's leak."""
    plumbing(module, "TestRunner._call_in_runner_task")


def install_runners(patches: Patches, runners: ModuleType) -> None:
    """Mark the tasks ``asyncio.run``/``Runner.close`` cancel at shutdown as leaks first."""
    cancel_all = runners._cancel_all_tasks
    all_tasks = sys.modules["asyncio.tasks"].all_tasks

    def _cancel_all_tasks(loop: Any) -> Any:
        for task in all_tasks(loop):
            rec = _records.live.get(id(task))
            if rec is not None and rec.kind == "task" and rec.state == OPEN:
                _records.leak(rec, CANCELLED)
        return cancel_all(loop)

    patches.set(runners, "_cancel_all_tasks", _cancel_all_tasks)
