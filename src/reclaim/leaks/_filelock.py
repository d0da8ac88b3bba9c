"""filelock (py-filelock): a lock left held is one leak at the program's line that took it.

A ``filelock.FileLock`` (``UnixFileLock``, ``SoftFileLock``, ``AsyncFileLock`` and the other
locks filelock builds on ``BaseFileLock``) holds the descriptor it opens on the lock file (the
marker file, for a soft lock) from its first acquire until its counter is back at 0, or a
``release(force=True)``. Left held, that descriptor was the report: a bare ``fd`` opened at
filelock's own lines, the program's line last among them or cut off by the depth.

So each hold gets a record (kind ``filelock``, as reclaim's own :class:`reclaim.files.FileLock`)
at the program's line whose ``acquire()`` (or ``with``, ``async with``) took it, past filelock's
frames, and the descriptor's record becomes it: same key, so filelock's ``os.close`` of it ends
the hold (see :mod:`._fds`), and no separate ``fd`` is left to report. Whether it is still held
is the descriptor's to say (the same open file, by identity), never ``is_locked``: a lock is
thread-local by default, and read from the checking thread it says False while its owner
holds it. A re-entrant acquire (the counter going up) or a release that only counts down
changes nothing; a thread that holds the lock through its own hold (a thread-local lock taken
in two threads) has a record of its own; an acquire that fails (``Timeout``) records nothing.

Dropped while held, filelock's ``__del__`` releases the lock (``release(force=True)``): its
descriptor is closed under a finalizer, and the hold is reported as released by the garbage
collector (``collected``), as a file dropped open is reported closed by it (the same when the
collector clears a reference cycle before that ``__del__`` runs). An async lock's ``__del__``
hands that release to a task: the hold ends as a leak as the ``__del__`` runs, and the task is
filelock's (see :func:`install_release`). One the program keeps to its
end is released by filelock's atexit handler (filelock 4): under ``reclaim run`` that is a
release by a call, as a client's pools closed at exit are (see ``_exitreport``), not a leak.

Only ``acquire`` of ``BaseFileLock`` and ``BaseAsyncFileLock`` is wrapped: it reads the calling
thread's (or task's) hold before and after, and a program that does not import filelock loads
none of this. A filelock that keeps its hold where this was not written for (no
``_context.lock_file_fd``, nor the older ``_lock_file_fd``) records nothing: its descriptor is
reported as before. filelock's read-write locks (``ReadWriteLock`` on sqlite3,
``SoftReadWriteLock``) are other classes, not covered.
"""

from __future__ import annotations

import sys
from types import FunctionType, ModuleType

from reclaim import _sites

from . import _fds, _records
from ._holders import public_name
from ._kinds import Details, Kind, register
from ._owning import caller, lookup, own
from ._patch import Patches, outside_warnings_stack
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["KIND", "LEASES", "MODULES", "install", "install_lease"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The kind reclaim's own ``FileLock`` is reported as too (``reclaim._files_lock._LEAK_KIND``).
KIND = "filelock"

#: The modules defining filelock's base lock classes: ``_core._lock`` and ``_async_lock._lock``
#: since filelock 4, ``_api`` and ``asyncio`` before (4's ``asyncio`` re-exports its async base,
#: wrapped once).
MODULES = ("filelock._core._lock", "filelock._async_lock._lock", "filelock._api", "filelock.asyncio")

#: The modules of filelock's leases (4's ``SoftFileLease``), whose hold runs a heartbeat thread.
LEASES = ("filelock._soft._lease",)

#: The classes whose ``acquire`` is wrapped, where their module defines them.
_BASES = ("BaseFileLock", "BaseAsyncFileLock")


def _held_fd(lock: Any) -> int | None:
    """The descriptor of the calling thread's (an async lock: task's) hold of *lock*, None when it
    holds none, or keeps it where this filelock does not."""
    try:
        context = getattr(lock, "_context", None)
        fd = (
            getattr(context, "lock_file_fd", None)
            if context is not None
            else getattr(lock, "_lock_file_fd", None)  # an older filelock, with no FileLockContext
        )
    except Exception:  # a lock half made, or of a layout unknown: its descriptor is reported as before
        return None
    return fd if type(fd) is int else None


def _took(lock: Any, frame: Any) -> None:
    """*lock* may have just been taken by the calling thread (or task), whose acquire was called
    from *frame*: its descriptor's record becomes the hold's, at the program's line."""
    fd = _held_fd(lock)
    if fd is None:
        return  # a version that keeps it elsewhere, or a hold released meanwhile by a signal handler
    key = ("fd", fd)
    rec = _records.live.get(key)
    if rec is not None and rec.kind == KIND and rec() is lock:
        return  # its hold already (a shared lock another thread took meanwhile)
    ident = _fds.identity(fd)
    if ident is None:
        return
    site = _records.capture(caller(frame, "filelock"), _records.depth)
    _records.new(lock, KIND, ((type(lock), getattr(lock, "lock_file", "?")), ident), site, key)


def _wrap(acquire: FunctionType) -> FunctionType:
    """``BaseFileLock.acquire``, noting a hold it took."""

    def acquire_(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = _held_fd(self)
        proxy = acquire(self, *args, **kwargs)
        if before is None:
            _took(self, sys._getframe(1))
        return proxy

    acquire_.__doc__ = acquire.__doc__
    acquire_.__code__ = outside_warnings_stack(acquire_.__code__)
    return acquire_  # type: ignore[return-value]


def _wrap_async(acquire: FunctionType) -> FunctionType:
    """``BaseAsyncFileLock.acquire``, noting a hold it took (in the loop's thread, once awaited:
    an executor's worker opened the descriptor, the task holds it)."""

    async def acquire_(self: Any, *args: Any, **kwargs: Any) -> Any:
        before = _held_fd(self)
        proxy = await acquire(self, *args, **kwargs)
        if before is None:
            _took(self, sys._getframe(1))
        return proxy

    acquire_.__doc__ = acquire.__doc__
    acquire_.__code__ = outside_warnings_stack(acquire_.__code__)
    return acquire_  # type: ignore[return-value]


#: The codes of the wrappers: a base met twice (4's ``asyncio`` re-exports the async one) is
#: wrapped once.
_WRAPPERS = frozenset(
    outside_warnings_stack(code)
    for make in (_wrap, _wrap_async)
    for code in make.__code__.co_consts
    if type(code) is type(make.__code__)
)


def _name(cls: type) -> str:
    """How the program named *cls*: ``filelock.FileLock`` for the platform's lock (``UnixFileLock``
    on Unix), else where filelock exports it (``filelock.SoftFileLock``), else module.Class."""
    package = sys.modules.get("filelock")
    for alias in ("FileLock", "AsyncFileLock"):
        # vars(), not getattr(): AsyncFileLock is made on first access, by an import.
        if package is not None and vars(package).get(alias) is cls:
            return f"filelock.{alias}"
    return public_name(cls)


def _is_open(obj: Any, rec: Record) -> bool:
    key = rec.key
    if type(key) is not tuple:  # reclaim's own FileLock: open until its release() ends the record
        return True
    held: bool = _fds.identity(key[1]) == rec.info[1]
    return held


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    info = rec.info
    if type(info) is str:  # reclaim's own FileLock: "<path> (exclusive)"
        return info, {}
    (cls, path), *_ = info
    name = _name(cls)
    details: Details = {"class": name, "path": path, "fd": rec.key[1]}  # type: ignore[index]
    # Released by its finalizer, it is no longer held: the state says by whom.
    held = "" if rec.state == _records.LEAKED else " held"
    return f"{name} {path}{held}", details


def _fds_of(obj: Any, rec: Record) -> tuple[int, ...]:
    key = rec.key
    return (key[1],) if type(key) is tuple else ()


def _death_is_leak(rec: Record) -> bool:
    """A lock dying with its hold's record open: filelock's ``__del__`` releases a hold, and the
    ``os.close`` of its descriptor then marks it a leak the collector ended. Open still, that
    descriptor outlived the lock (a ``release()`` whose close failed, after it unlocked): one
    entry, the descriptor, at the line that took the lock, not a hold "released by its
    finalizer" and the same descriptor untracked. In a reference cycle the lock dies before
    its ``__del__`` runs: the collector's doing, as before."""
    key = rec.key
    if type(key) is not tuple or _sites.collecting_here():
        return True  # reclaim's own FileLock, or a cycle's
    if _fds.identity(key[1]) == rec.info[1]:
        (cls, _), *_ = rec.info
        _fds.adopt(key[1], f"{_name(cls)}'s lock file, left open when the lock was gone", rec)
    return False  # else closed where no wrapper saw it: the hold ended


register(Kind(KIND, is_open=_is_open, describe=_describe, fds=_fds_of, death_leak=_death_is_leak))


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap the ``acquire`` of the filelock base classes *module* defines (or re-exports)."""
    for name in _BASES:
        cls = vars(module).get(name)
        acquire = vars(cls).get("acquire") if isinstance(cls, type) else None
        if type(acquire) is not FunctionType or acquire.__code__ in _WRAPPERS:
            continue  # not the layout this was written for, or wrapped already
        coroutine = acquire.__code__.co_flags & _sites.COROUTINE
        patches.set(cls, "acquire", (_wrap_async if coroutine else _wrap)(acquire))


def install_release(patches: Patches, module: ModuleType) -> None:
    """An async lock dropped while held: its ``__del__`` cannot await, so it hands the release to
    a task it makes on the running loop, which closes the descriptor later, outside any
    finalizer. Its hold is then the garbage collector's to end, as a sync lock's is: a leak as
    the ``__del__`` runs, released by its finalizer, and the task is filelock's, not a task
    the program left pending (it was both a task at filelock's line and no lock at all)."""
    cls = vars(module).get("AsyncRelease")
    abandoned = vars(cls).get("_release_abandoned_holds") if isinstance(cls, type) else None
    if type(abandoned) is not FunctionType:
        return  # not the layout this was written for: as before

    def _release_abandoned_holds(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _sites.in_finalizer(sys._getframe(1)):
            for rec in [rec for rec in _records.live.values() if rec.kind == KIND and rec() is self]:
                _records.leak(rec, _records.COLLECTED)
        return abandoned(self, *args, **kwargs)

    _release_abandoned_holds.__doc__ = abandoned.__doc__
    own(abandoned)
    patches.set(cls, "_release_abandoned_holds", _release_abandoned_holds)


def install_lease(patches: Patches, module: ModuleType) -> None:
    """A ``SoftFileLease``'s heartbeat thread, which renews its marker while it is held and stops
    as it is released, is part of the hold: owned by filelock, so a lease left held is its one
    ``filelock`` entry, not that and a thread at filelock's line (a version without the method
    reports the thread as before)."""
    own(lookup(module, "SoftFileLease._start_heartbeat"))
