"""The pool's bookkeeping and policy, shared by Pool and AsyncPool; no I/O and no waiting.

Everything here runs with the pool's exclusion held (the sync pool's lock, or
the event loop for the async pool) unless it says otherwise. The shells
(``_sync.py``, ``_async.py``) do the waiting, call the user's callables, and
inline the few lines of the hot path; every decision (is it expired, does it
need a check, who gets a freed slot, what the maintenance pass must do, what
a timeout says) is made here once.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from types import CodeType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from reclaim import _sites, _track
from reclaim.errors import PoolClosed, PoolFull, PoolTimeout

from ._options import Options, check_sizes

__all__ = [
    "CLOSED",
    "CREATE",
    "RETRY",
    "PoolCore",
    "Slot",
    "Waiter",
    "describe_error",
    "log",
    "note_create_failed",
    "warn_lost",
]

if TYPE_CHECKING:
    import logging


class _Log:
    """``logging.getLogger("reclaim.pool")``, looked up on first use.

    A pool logs only when something goes wrong (a failed check, reset or close); importing
    logging for it cost every ``from reclaim import Pool`` about a fifth of its time.
    """

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        import logging

        return getattr(logging.getLogger("reclaim.pool"), name)


log: logging.Logger = _Log()  # type: ignore[assignment]

T = TypeVar("T")

_INF = math.inf
#: How much of ``max_lifetime`` is taken off at random per object, so they do not expire together.
LIFETIME_JITTER = 0.05
#: Longest sleep of the maintenance pass, so lost leases are reclaimed without a caller.
MAX_NAP = 1.0
#: Samples kept for the wait and hold percentiles.
SAMPLES = 1024

#: Objects a forked child inherited: kept referenced so their finalizers never run in the child
#: (closing them there would end the parent's session).
_ABANDONED: list[object] = []
_POOLS: weakref.WeakSet[PoolCore[Any]] = weakref.WeakSet()


def line_of(code: CodeType, lasti: int) -> int:
    """The source line of instruction offset *lasti* in *code* (what ``frame.f_lineno`` says)."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line or code.co_firstlineno
    return code.co_firstlineno


class Slot:
    """One live pooled object and its timestamps (internal)."""

    __slots__ = (
        "acquired_at",
        "code",
        "created",
        "expires",
        "fresh_until",
        "gen",
        "last_used",
        "lasti",
        "leak_reported",
        "leased",
        "pid",
        "ready",
        "replacing",
        "site",
        "value",
    )

    def __init__(self, value: Any, now: float, expires: float, gen: int, pid: int) -> None:
        self.value = value
        self.created = now
        self.last_used = now
        self.expires = expires
        self.gen = gen
        # Until when it may be lent and taken back with no closer look: ``expires`` while of the
        # pool's generation and not reported leaked, else -inf. One float to compare on
        # AsyncPool's fast paths instead of three fields; kept so by every change of those.
        self.fresh_until = expires
        self.pid = pid
        self.acquired_at = now
        self.code: CodeType | None = None
        self.lasti = -1  # instruction offset of the acquire: cheaper to take than f_lineno
        self.site: _sites.Site | None = None
        self.leased = False
        self.leak_reported = False
        self.replacing = False
        self.ready: Any = None  # AsyncPool: a done future holding value (set when it makes the slot)

    def location(self) -> tuple[str, int] | None:
        """``(filename, line)`` of the acquisition (the user's line), or None when unknown."""
        code = self.code
        if code is not None:
            return code.co_filename, line_of(code, self.lasti)
        if self.site:
            code, lineno = self.site[0]
            return code.co_filename, lineno
        return None

    def where(self) -> str:
        """``file:line in function`` of the acquisition (the user's line)."""
        code = self.code  # set when the acquiring frame was the user's (the fast case)
        if code is not None:
            return f"{code.co_filename}:{line_of(code, self.lasti)} in {code.co_qualname}"
        if self.site is not None:  # else the site captured past framework frames
            return _sites.format_site(self.site)
        return "<unknown>"


class _Token:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


#: Handed to a waiter instead of an object: "a slot is reserved for you, create one".
CREATE = _Token("CREATE")
#: Handed to a waiter in barging mode: "something came back, try again".
RETRY = _Token("RETRY")
#: Handed to every waiter when the pool closes.
CLOSED = _Token("CLOSED")


class Waiter(Protocol):
    """A caller queued for an object; each shell's waiter says how it is woken.

    ``since``: when it started waiting; ``misses``: how often it lost a race in barging
    mode. ``handed`` is when the object was delivered: the time it spent idle is measured
    up to then (a direct hand-off: none), not up to when the woken caller got to run, so
    a connection passed straight from one borrower to the next is not probed on the way.
    """

    since: float
    misses: int
    handed: float

    def deliver(self, result: Any) -> bool:
        """Give *result* (a Slot, CREATE or RETRY); False when the waiter already gave up."""


class Plan:
    """What one maintenance pass must do outside the lock."""

    __slots__ = ("create", "leaks", "replace", "retire", "wake_in")

    def __init__(self) -> None:
        self.retire: list[tuple[Slot, str]] = []
        self.replace: list[Slot] = []
        self.leaks: list[Slot] = []
        self.create = 0
        self.wake_in = MAX_NAP


def _silent_timeout(error: BaseException) -> bool:
    """A timeout with no message (asyncpg's connect timeout is a bare ``TimeoutError()``)."""
    return isinstance(error, TimeoutError) and not str(error)


def describe_error(error: BaseException) -> str:
    """``repr`` of *error*, saying that it timed out when it has no message to say so."""
    return f"{error!r} (it timed out)" if _silent_timeout(error) else repr(error)


def note_create_failed(name: str, error: BaseException) -> None:
    """Add to *error* that pool *name* raised it while creating an object."""
    timed_out = " (it timed out)" if _silent_timeout(error) else ""
    error.add_note(f"(while pool {name!r} was creating an object{timed_out})")


class PoolCore(Generic[T]):
    """State, counters and decisions of one pool."""

    def __init__(self, opts: Options) -> None:
        self._o = opts
        self._name = opts.name
        self._create = opts.create
        self._check = opts.check
        self._check_after = opts.check_after
        self._reset = opts.reset
        self._configure = opts.configure
        self._is_broken = opts.is_broken
        self._leak_timeout = opts.leak_timeout
        self._fair = opts.fair
        self._handoff_after = opts.handoff_after
        # How long a waiter may be overtaken by a returning caller (0: never; unfair pools
        # do not hand off at all, see _offer): read on every contended release.
        self._patience = opts.handoff_after if opts.fair else 0.0
        self._min_size = opts.min_size
        self._max_size = opts.max_size
        self._lifetime = opts.max_lifetime
        # One int compared on the wait path: no limit is a queue no pool reaches.
        self._wait_limit = sys.maxsize if opts.max_waiting is None else opts.max_waiting
        self._rejected = 0
        self._idle: deque[Slot] = deque()
        self._waiters: deque[Waiter] = deque()
        self._slots: set[Slot] = set()
        self._orphans: deque[Slot] = deque()
        self._size = 0  # live slots + slots reserved for a create in progress
        self._creating = 0
        self._gen = 0
        self._pid = os.getpid()
        self._closed = False
        self._distrust = -_INF  # slots last used before this are checked before reuse
        self._acquired = 0
        self._waited = 0
        self._timeouts = 0
        self._created = 0
        self._closed_count = 0
        self._failed_creates = 0
        self._last_create_error: Exception | None = None  # the background refill's, for wait()
        self._discarded_check = 0
        self._discarded_broken = 0
        self._expired = 0
        self._idle_closed = 0
        self._leaks = 0
        self._lost = 0
        self._waits: deque[float] = deque(maxlen=SAMPLES)
        self._holds: deque[float] = deque(maxlen=SAMPLES)
        self._needs_maintenance = bool(
            opts.min_size or opts.max_lifetime or opts.max_idle or opts.leak_timeout
        )
        _POOLS.add(self)
        if _track.on_acquire is not None:  # a leak tracker runs: record the pool as itself
            from ._tracking import track

            track(self)

    # -- slots ---------------------------------------------------------------

    def _new_slot(self, value: Any, now: float) -> Slot:
        """Register a freshly created object in a slot already counted in ``_size``."""
        lifetime = self._lifetime
        expires = _INF if lifetime is None else now + lifetime * (1 - LIFETIME_JITTER * random.random())
        slot = Slot(value, now, expires, self._gen, self._pid)
        if self._size > self._max_size:  # resize() lowered max_size during the create
            slot.fresh_until = -_INF
        self._slots.add(slot)
        self._created += 1
        return slot

    def _needs_check(self, slot: Slot, now: float) -> bool:
        return self._check is not None and (
            now - slot.last_used >= self._check_after or slot.last_used <= self._distrust
        )

    def _offer(self, slot: Slot) -> None:
        """A slot is free: hand it to the longest waiter (fair) or put it back idle."""
        waiters = self._waiters
        if self._fair:
            while waiters:
                if waiters.popleft().deliver(slot):
                    return
            self._idle.append(slot)
            return
        self._idle.append(slot)
        self._wake_one()

    def _pass_on(self, given: Any) -> None:
        """What a caller that gave up waiting had been handed goes to the next waiter (or idle):
        a slot, the right to create one (CREATE), or a barging retry (RETRY)."""
        if isinstance(given, Slot):
            self._offer(given)
        elif given is CREATE:
            self._creating -= 1
            self._free_capacity()
        elif given is RETRY:
            self._wake_one()

    def _wake_one(self) -> None:
        """Barging mode: wake the first waiter to retry; one that lost twice gets a slot directly."""
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.misses >= 2:
                try:
                    slot = self._idle.pop()
                except IndexError:
                    return
                waiters.popleft()
                if waiter.deliver(slot):
                    return
                self._idle.append(slot)
                continue
            waiters.popleft()
            if waiter.deliver(RETRY):
                return

    def _pump(self) -> None:
        """Hand idle slots to waiters; closes the race with a lock-free return."""
        idle, waiters = self._idle, self._waiters
        if not self._fair:
            if idle and waiters:
                self._wake_one()
            return
        while idle and waiters:
            try:
                slot = idle.pop()
            except IndexError:
                return
            self._offer(slot)

    def _free_capacity(self) -> None:
        """A slot's object is gone: a waiter may create one in its place, else the pool shrinks."""
        waiters = self._waiters
        if not self._closed and self._size <= self._max_size:
            while waiters:
                if waiters.popleft().deliver(CREATE):
                    self._creating += 1
                    return
        self._size -= 1

    def _forget(self, slot: Slot) -> bool:
        """Drop a live slot (its object is about to be closed); False when it was not live."""
        if slot not in self._slots:
            return False
        self._slots.discard(slot)
        self._closed_count += 1
        self._free_capacity()
        return True

    def _take_orphans(self) -> list[Slot]:
        """Slots of leases collected without release: forgotten here, to be closed by the caller."""
        out = []
        orphans = self._orphans
        while orphans:
            slot = orphans.popleft()
            if slot.leased and self._forget(slot):
                slot.leased = False
                self._lost += 1
                out.append(slot)
        if out and self._closed:
            self._check_all_back()  # close() may be waiting for this one
        return out

    def _on_broken(self, now: float) -> None:
        """One object was found dead: every object last used before *now* is checked before reuse."""
        if now > self._distrust:
            self._distrust = now

    def _broken(self, slot: Slot, exc: BaseException) -> bool:
        """Whether the exception *exc* raised in a lease's body means: discard the object."""
        assert self._is_broken is not None
        try:
            broken = bool(self._is_broken(slot.value, exc))
        except Exception:
            log.exception("pool %r: is_broken raised; discarding the object", self._name)
            broken = True
        if broken:
            self._on_broken(time.monotonic())
        return broken

    def _stale(self, slot: Slot, now: float) -> str | None:
        """Why a slot must not be lent or kept (``"expired"``, ``"drained"``), or None."""
        if now >= slot.expires:
            return "expired"
        if slot.gen != self._gen:
            return "drained"
        if self._size > self._max_size:
            return "resized"  # resize() lowered max_size below what is live: shrink as they come back
        return None

    def _discard_locked(self, slot: Slot, reason: str) -> bool:
        """Forget a slot whose object is to be closed; True when the caller must close it."""
        slot.leased = False
        if slot.pid != self._pid:
            _ABANDONED.append(slot.value)  # the parent's object: a forked child never closes it
            return False
        if reason == "check":
            self._discarded_check += 1
        elif reason == "broken":
            self._discarded_broken += 1
        elif reason == "expired":
            self._expired += 1
        forgotten = self._forget(slot)
        if self._closed:
            self._check_all_back()
        return forgotten

    def _outdate(self) -> None:
        """A new generation: every live slot is stale from now on (see ``Slot.fresh_until``)."""
        for slot in self._slots:
            slot.fresh_until = -_INF

    def _check_all_back(self) -> None:
        if not any(s.leased for s in self._slots):
            self._signal_all_back()

    def _signal_all_back(self) -> None:
        """Shell hook: the pool is closed and no lease is out any more."""

    def _refilled(self) -> bool:
        """Whether ``min_size`` objects are made (what ``wait()`` waits for)."""
        return self._size - self._creating >= self._min_size

    def _refill_left(self, deadline: float, timeout: float) -> float | None:
        """One look of ``wait()``: None once ``min_size`` objects are made, else the seconds left.

        Raises PoolClosed, or PoolTimeout (naming the last failed create, chained) at *deadline*.
        """
        if self._closed:
            raise PoolClosed(f"pool {self._name!r} is closed; nothing to wait for")
        if self._refilled():
            return None
        left = deadline - time.monotonic()
        if left > 0:
            return left
        error = self._last_create_error
        why = "creates are still running"
        if error is not None:
            why = f"the last create failed: {describe_error(error)}"
        raise PoolTimeout(
            f"pool {self._name!r} has {self._size - self._creating} of min_size={self._min_size} "
            f"objects after {timeout:g} s; {why}"
        ) from error

    def _create_failed(self) -> None:
        self._creating -= 1
        self._failed_creates += 1
        self._free_capacity()

    def _create_done(self, value: Any, now: float) -> Slot | None:
        """A reserved create finished; None when the pool closed meanwhile (close *value*)."""
        self._creating -= 1
        if self._closed:
            self._size -= 1
            return None
        if _track.on_acquire is not None:  # a leak tracker runs: the object is the pool's now
            from ._tracking import adopt

            adopt(value)
        return self._new_slot(value, now)

    def _close_locked(self) -> list[Slot]:
        """Mark the pool closed; returns the idle (and lost) slots to close now."""
        self._closed = True
        self._gen += 1
        self._outdate()
        closing = [s for s in self._take_idle() if self._forget(s)]
        while self._waiters:
            self._waiters.popleft().deliver(CLOSED)
        closing.extend(self._take_orphans())
        self._check_all_back()
        return closing

    def _drain_locked(self) -> list[Slot]:
        """New generation: idle slots are returned to close now, leased ones close on return."""
        self._gen += 1
        self._outdate()
        return [s for s in self._take_idle() if self._forget(s)]

    def _take_idle(self) -> list[Slot]:
        """Empty the idle deque one atomic pop at a time.

        Acquire pops idle slots without the lock; copying the deque and then
        clearing it would let one pop land in between, so the same slot would be
        both lent and closed.
        """
        taken: list[Slot] = []
        pop = self._idle.popleft
        while True:
            try:
                taken.append(pop())
            except IndexError:
                return taken

    def _resize_locked(self, min_size: int | None, max_size: int | None) -> list[Slot]:
        """Apply new bounds; wake waiters that may now create; returns idle slots to close."""
        self._resize(min_size, max_size)
        closing = self._shrink_idle()
        if self._size > self._max_size:
            # None is idle now: the leased ones, those handed to a waiter not yet running and
            # those out for check() are closed when given back (AsyncPool tests fresh_until
            # alone on its fast paths); so are the ones being created (see _new_slot).
            self._outdate()
        waiters = self._waiters
        while waiters and self._size < self._max_size and not self._closed:
            if waiters.popleft().deliver(CREATE):
                self._size += 1
                self._creating += 1
        return closing

    def _report_leak(self, slot: Slot, now: float) -> None:
        log.warning(
            "pool %r: lease held %.1f s (leak_timeout %.1f s), acquired at %s",
            self._name,
            now - slot.acquired_at,
            self._leak_timeout,
            slot.where(),
        )

    def _returned_late(self, slot: Slot, now: float) -> None:
        slot.leak_reported = False
        if slot.gen == self._gen:
            slot.fresh_until = slot.expires
        log.warning(
            "pool %r: lease reported as leaked came back after %.1f s; acquired at %s",
            self._name,
            now - slot.acquired_at,
            slot.where(),
        )

    def _reserve(self) -> bool:
        """Count one object about to be created; False when the pool is full or closed."""
        if self._closed or self._size >= self._max_size:
            return False
        self._size += 1
        self._creating += 1
        return True

    def _place(self, slot: Slot) -> bool:
        """Offer a slot the maintenance made; True when the pool closed meanwhile (close it)."""
        if self._closed:
            return self._forget(slot)
        self._offer(slot)
        return False

    def _replaced(self, old: Slot) -> bool:
        """After a replacement was made for *old*: retire *old* if still idle (True: close it)."""
        try:
            self._idle.remove(old)
        except ValueError:
            return False  # in use: it is retired when it comes back expired
        self._expired += 1
        return self._forget(old)

    def _resize(self, min_size: int | None, max_size: int | None) -> None:
        new_min = self._min_size if min_size is None else min_size
        new_max = self._max_size if max_size is None else max_size
        check_sizes(new_min, new_max)
        self._min_size, self._max_size = new_min, new_max
        self._needs_maintenance = self._needs_maintenance or new_min > 0

    def _shrink_idle(self) -> list[Slot]:
        """After a resize down: idle objects beyond max_size, forgotten, to be closed."""
        out = []
        while self._size > self._max_size and self._idle:
            try:
                slot = self._idle.popleft()
            except IndexError:
                break
            if self._forget(slot):
                out.append(slot)
        return out

    def _reject(self) -> PoolFull:
        """``max_waiting`` callers already wait: count the refusal and return the error to raise."""
        from ._explain import full_message  # _explain imports this module

        self._rejected += 1
        return PoolFull(full_message(self))

    # -- on-demand check -------------------------------------------------------

    def _take_for_check(self) -> list[Slot]:
        """Take every idle slot out of the pool for ``check()`` (one at a time: acquire pops lock-free)."""
        if self._check is None:
            raise ValueError(
                f"pool {self._name!r} has no check= option: pass check=callable (raising or "
                "returning False for a dead object) to use check()"
            )
        if self._closed:
            raise PoolClosed(f"pool {self._name!r} is closed; nothing to check")
        out = []
        idle = self._idle
        while True:
            try:
                out.append(idle.popleft())
            except IndexError:
                return out

    def _return_checked(self, slot: Slot, ok: bool, now: float) -> bool:
        """Put back a slot ``check()`` took out, or forget it; True when the caller must close it."""
        if not ok:
            return self._discard_locked(slot, "check")
        reason = self._stale(slot, now)
        if reason is not None:
            return self._discard_locked(slot, reason)
        return self._place(slot)

    # -- fork ----------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """The child starts empty and never touches the parent's objects."""
        _ABANDONED.extend(s.value for s in self._slots)
        self._outdate()  # a lease held across the fork gives back the parent's object: dropped
        self._slots = set()
        self._idle = deque()
        self._waiters = deque()
        self._orphans = deque()
        self._size = 0
        self._creating = 0
        self._gen += 1
        self._pid = os.getpid()
        self._waits.clear()
        self._holds.clear()
        self._reinit_after_fork()

    def _reinit_after_fork(self) -> None:
        """Shell hook: new locks, no maintenance worker."""


def _after_fork() -> None:
    for pool in list(_POOLS):
        try:
            pool._after_fork_in_child()
        except Exception:  # a broken pool must not break the child
            log.exception("reclaim.pool: resetting %r after fork failed", pool)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def close_value(close: Callable[[Any], object] | None, value: Any) -> object:
    """Close *value* with the pool's ``close`` option, or ``value.close()`` when it has one."""
    if close is not None:
        return close(value)
    method = getattr(value, "close", None)
    if method is not None:
        return method()
    return None


def warn_lost(slot: Slot, message: str) -> None:
    """Warn (``ResourceWarning``) that a lease of *slot* was collected unreleased, at its acquire line.

    Called from a lease's ``__del__``, which has no caller to point at: the
    warning is filed under the line that acquired it (the user's code) rather
    than under reclaim's ``__del__``. Never raises at interpreter shutdown.
    """
    try:
        where = slot.location()
        if where is None:
            warnings.warn(message, ResourceWarning, stacklevel=2)
        else:
            warnings.warn_explicit(message, ResourceWarning, where[0], where[1])
    except Exception:  # noqa: S110 - interpreter shutdown: warnings may be gone
        pass
