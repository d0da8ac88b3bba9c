"""A pool under the leak tracker: one record of its own, and what it holds is its own.

Only a pool made while a tracker runs is recorded: ``PoolCore.__init__`` tests
one global and, when a tracker runs, calls :func:`track`; ``close()`` tests one
more and releases the record. Acquire and release never pay anything.

The record is of kind ``pool``, at the line that made the pool (reclaim's
frames and a subclass's ``__init__`` are skipped), open until ``close()``. A
pool collected before ``close()`` is reported as collected, as reclaim's other
owners are (the kind is a death leak). Leases still out stay ``lease`` entries
of their own.

The methods that make the pool's objects and start its maintenance thread or
task are *owned* (:func:`reclaim._sites.mark_owned`): a connection that
``create`` opens there and the worker are recorded under reclaim's frames, so
they are never reported apart from the pool. A ``create`` written in the
user's own code (a lambda, say) is the user's frame, so what it opens is
recorded at that line; the object it returns is then *adopted*
(:func:`adopt`): its record moves under the pool's frames, as if the pool had
opened it. Anything else that ``create`` opened and kept (a log file, say)
stays the user's, reported where it was opened.
"""

from __future__ import annotations

import sys
from typing import Any

from reclaim import _sites
from reclaim.leaks import _records
from reclaim.leaks._kinds import Details, Kind, register
from reclaim.leaks._owning import own, site
from reclaim.leaks._records import Record

from . import _worker
from ._core import PoolCore
from ._worker import amaintain, maintain

__all__ = ["adopt", "track"]

#: What is wrong with a pool never closed, by shell.
NOT_CLOSED = "not closed (close() or a with-block)"
NOT_CLOSED_ASYNC = "not closed (await close() or an async with-block)"

#: The packages whose public names label a pool's class (``reclaim.db.ConnectionPool``).
_PACKAGES = ("reclaim", "reclaim.db", "reclaim.net")

#: The methods of each shell that make its objects and start its worker or task.
_WORKINGS = {
    "reclaim.pool._sync.Pool": ("_create_slot", "_ensure_worker"),
    "reclaim.pool._async.AsyncPool": ("_create_slot", "_ensure_task"),
}
#: The shells (and the _worker module) whose functions are owned already.
_owned: set[object] = set()


def _label(cls: type) -> str:
    name = cls.__qualname__
    for package in _PACKAGES:
        if getattr(sys.modules.get(package), name, None) is cls:
            return f"{package}.{name}"
    return f"{cls.__module__}.{name}"


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj._closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label, name, max_size, problem = rec.info
    details: Details = {"class": label, "name": name, "max_size": max_size, "problem": problem}
    if obj is None:
        return f"{label} {name!r} (max_size {max_size}) {problem}", details
    slots = list(obj._slots)
    leased = sum(slot.leased for slot in slots)
    details |= {"max_size": obj._max_size, "size": len(slots), "leased": leased}
    held = f"max_size {obj._max_size}, holding {len(slots)}, {leased} leased"
    return f"{label} {name!r} ({held}) {problem}", details


register(Kind("pool", is_open=_is_open, describe=_describe, death_leak=True))


def _own_workings(cls: type) -> None:
    """Mark the methods that make the objects of *cls*'s shell and start its worker as the pool's own."""
    for base in cls.__mro__:
        names = _WORKINGS.get(f"{base.__module__}.{base.__qualname__}")
        if names is not None and base not in _owned:
            # Looked up on the shell, not imported: the thread pool's tracking stays asyncio-free.
            own(*(vars(base)[name] for name in names))
            _owned.add(base)
    if _worker not in _owned:
        # The maintenance thread and task, and what they create.
        own(maintain, amaintain, _worker._background_create, _worker._abackground_create)
        _owned.add(_worker)


def track(pool: PoolCore[Any]) -> None:
    """Record *pool* at the line that made it (called from ``PoolCore.__init__`` while a tracker runs)."""
    _own_workings(type(pool))
    problem = NOT_CLOSED_ASYNC if hasattr(type(pool), "__aexit__") else NOT_CLOSED
    info = (_label(type(pool)), pool._name, pool._max_size, problem)
    _records.new(pool, "pool", info, site(pool))


def adopt(value: Any) -> None:
    """*value*, just made by ``create``, is the pool's: its record (if any) is sited inside the pool.

    Called from the pool's owned ``_create_slot`` (while a tracker runs), so the site
    taken here is reclaim's frames: never reported apart from the pool, still open, so
    still owning its descriptors and paths.
    """
    rec = _records.live.get(id(value))
    if rec is not None and rec() is value:
        rec.site = _sites.capture_from(sys._getframe())
