"""APScheduler: a scheduler never shut down is one entry at the program's line, not the threads,
executors and tasks it is made of.

An APScheduler 3 scheduler, started, runs its jobs on executors (a ``concurrent.futures`` thread
or process pool, asyncio tasks) and, a ``BackgroundScheduler``, its main loop on a thread of its
own; ``shutdown()`` shuts all of them down, and its job stores (a SQLAlchemy engine, a redis-py
client). Never shut down, a ``BackgroundScheduler`` was reported as a
``concurrent.futures.ThreadPoolExecutor`` made in ``BaseScheduler._create_default_executor``
and a thread ``'APScheduler'`` running ``BlockingScheduler._main_loop()``, an
``AsyncIOScheduler`` as the tasks its executor ran, made in ``AsyncIOScheduler.wakeup`` (a timer
callback: no line of the program's at all); none of them said "scheduler", nor that
``shutdown()`` is the fix.

So a scheduler, as it starts, is recorded (kind ``apscheduler``) at the program's line that
started it, open until it is shut down; what it holds is listed under it (see :func:`fold`): its
thread (a ``GeventScheduler``'s greenlet, the program's thread running a ``BlockingScheduler``), its
executors' pools and pending tasks, its job stores' engines and clients. A scheduler
that holds nothing a check finds (started, but no job ever ran on a thread) is not reported: it
owns nothing of the process's. Only ``BaseScheduler.start`` is wrapped; a program that does not
import APScheduler loads none of this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

from . import _records
from ._holders import LENT, fold_into, public_name
from ._kinds import Details, Kind, register
from ._owning import caller, outside
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

__all__ = ["KIND", "MODULES", "fold", "install", "install_asyncio_executor"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "apscheduler"

#: What a scheduler still running was not given.
FIX = "shutdown()"

#: APScheduler's ``STATE_STOPPED`` (``apscheduler.schedulers.base``): never started, or shut down.
STOPPED = 0

#: Where a scheduler keeps what runs its main loop: a ``BackgroundScheduler``'s thread, a
#: ``GeventScheduler``'s greenlet.
MAIN_LOOPS = ("_thread", "_greenlet")

#: Where a job store keeps what its ``shutdown()`` closes: SQLAlchemy's engine, redis-py's client,
#: pymongo's.
STORE_PARTS = ("engine", "redis", "client")


#: id(record of a task an ``AsyncIOExecutor`` made) -> (that record, its scheduler's record). The
#: executor's done callback takes a task out of ``_pending_futures`` as the loop's shutdown cancels
#: it, before a check looks, and the task (and a scheduler that was a local of the coroutine
#: ``asyncio.run()`` ran) is gone by then: it was an entry of its own, at the line of
#: ``asyncio.run()``, and its scheduler was no entry at all.
_made_for: dict[int, tuple[Record, Record]] = {}

#: How many entries _made_for keeps before dropping those of tasks released since.
_MADE_FOR_PRUNED_AT = 256


def _is_open(obj: Any, rec: Record) -> bool:
    return getattr(obj, "state", STOPPED) != STOPPED


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label: str = rec.info[0]
    details: Details = {"class": label}
    if obj is not None:
        details["paused"] = getattr(obj, "state", None) == 2  # STATE_PAUSED
        details["executors"] = sorted(map(str, dict(getattr(obj, "_executors", {}))))
        details["jobstores"] = sorted(map(str, dict(getattr(obj, "_jobstores", {}))))
    # A report heads it with its kind: "apscheduler BackgroundScheduler not shut down (shutdown())".
    return f"{label.rpartition('.')[2]} not shut down ({FIX})", details


# death_leak: an AsyncIOScheduler never shut down dies once its loop let go of its timer (a local
# of the coroutine asyncio.run() ran): a leak, with the job tasks the loop's shutdown cancelled.
register(Kind(KIND, is_open=_is_open, describe=_describe, death_leak=True))


def parts(scheduler: Any) -> list[object]:
    """What *scheduler*'s ``shutdown()`` stops or closes: its thread or greenlet, its executors'
    pools and pending futures, its job stores' engines and clients (and, see :func:`fold`, a
    thread the program runs its ``start()`` in)."""
    # A BackgroundScheduler's thread, a GeventScheduler's greenlet: its main loop.
    held = [loop for name in MAIN_LOOPS if (loop := getattr(scheduler, name, None)) is not None]
    for executor in tuple(dict(getattr(scheduler, "_executors", {})).values()):
        pool = getattr(executor, "_pool", None)
        if pool is not None:
            held.append(pool)
        held.extend(tuple(getattr(executor, "_pending_futures", ())))  # AsyncIOExecutor's tasks
    lent = LENT.get("sqlalchemy")
    for store in tuple(dict(getattr(scheduler, "_jobstores", {})).values()):
        for name in STORE_PARTS:
            part = getattr(store, name, None)
            if part is None:
                continue
            held.append(part)
            if lent is not None and name == "engine":
                # A connection the store has checked out for the scheduler's thread at this very
                # moment (each job-store call takes one and gives it back): its, not a connection
                # "never given back" beside it (SQLAlchemyJobStore under a running scheduler).
                held.extend(obj for rec in lent(part) if (obj := rec()) is not None)
    return held


def install(patches: Patches, module: ModuleType) -> None:
    """Record each scheduler started (``BaseScheduler.start``) at the program's line."""
    cls = getattr(module, "BaseScheduler", None)
    if not (isinstance(cls, type) and "start" in vars(cls)):
        return
    start: Callable[..., None] = vars(cls)["start"]

    def start_(self: Any, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        maker = outside(self, sys._getframe(1))  # past a subclass's start(), which calls this
        if maker is not None:
            maker = caller(maker, "apscheduler")
        # Started again after a shutdown(): a new record, at the line that started it again.
        _records.new(self, KIND, (public_name(type(self)),), _records.capture(maker, _records.depth))

    start_.__doc__ = start.__doc__
    patches.set(cls, "start", start_)


def install_asyncio_executor(patches: Patches, module: ModuleType) -> None:
    """Keep the tasks ``AsyncIOExecutor._do_submit_job`` makes as its scheduler's (see _made_for)."""
    cls = getattr(module, "AsyncIOExecutor", None)
    submit: Callable[..., None] | None = vars(cls).get("_do_submit_job") if isinstance(cls, type) else None
    if submit is None:  # private: a release may rename it
        return

    def _do_submit_job(self: Any, *args: Any, **kwargs: Any) -> None:
        pending = getattr(self, "_pending_futures", None)
        before = set(pending) if isinstance(pending, set) else set()
        submit(self, *args, **kwargs)
        scheduler = getattr(self, "_scheduler", None)
        started = _records.live.get(id(scheduler)) if scheduler is not None else None
        if started is None or started.kind != KIND or started() is not scheduler:
            return
        if not isinstance(pending, set):
            return
        for future in pending - before:
            rec = _records.live.get(id(future))
            if rec is not None and rec.kind == "task" and rec() is future:
                if len(_made_for) >= _MADE_FOR_PRUNED_AT:
                    for key, (made, by) in list(_made_for.items()):
                        if _records.RELEASED in (made.state, by.state):
                            del _made_for[key]
                _made_for[id(rec)] = (rec, started)

    _do_submit_job.__doc__ = submit.__doc__
    patches.set(cls, "_do_submit_job", _do_submit_job)


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take what the schedulers among *found* hold out of it, into ``out[id(their record)]``
    (see :func:`parts`), and the schedulers that hold none of it (*found* is ``(record, live
    object or None, state)``)."""
    schedulers = [item for item in found if item[0].kind == KIND]
    if not schedulers:
        return
    owner: dict[int, Record] = {}
    for rec, obj, _ in schedulers:
        if obj is not None:
            for part in parts(obj):
                owner.setdefault(id(part), rec)
    running = {id(obj): rec for rec, obj, _ in schedulers if obj is not None}
    listed = {id(rec) for rec, _, _ in schedulers}

    def scheduler_of(item: Found) -> Record | None:
        scheduler = owner.get(id(item[1])) if item[1] is not None else None
        made_for = _made_for.get(id(item[0])) if scheduler is None else None
        if made_for is not None and made_for[0] is item[0] and id(made_for[1]) in listed:
            # A job's task, cancelled as its loop shut down: gone from the executor by now.
            scheduler = made_for[1]
        if scheduler is None and item[0].kind == "thread" and item[1] is not None:
            # A thread the program started to run a BlockingScheduler (target=scheduler.start).
            scheduler = running.get(id(getattr(getattr(item[1], "_target", None), "__self__", None)))
        return scheduler if scheduler is not item[0] else None

    holding = fold_into(found, out, scheduler_of)
    found[:] = [item for item in found if item[0].kind != KIND or id(item[0]) in holding]


#: module -> what tracks its part of APScheduler, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "apscheduler.schedulers.base": install,
    "apscheduler.executors.asyncio": install_asyncio_executor,
}
