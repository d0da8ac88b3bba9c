"""Pool: the thread shell around the shared pool core.

The hot path takes no lock: an idle object is popped from a deque (atomic)
and pushed back on release; the lock is taken only when someone waits, an
object is created or retired, or the pool changes size. A release that races
with a caller queueing up re-checks the queue after pushing (and the queuer
re-checks the idle deque after queueing), so no object sits idle while a
caller waits.
"""

from __future__ import annotations

import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from reclaim import _sites, _track
from reclaim.errors import PoolClosed, PoolFull

from . import _explain
from ._core import CLOSED, CREATE, RETRY, PoolCore, Slot, close_value, log, note_create_failed
from ._lease import Lease
from ._options import _seconds, acquire_deadline, check_close_timeout, refuse_coroutine_functions, validate
from ._stats import PoolStatistics
from ._wait import ThreadWaiter, wait
from ._worker import maintain

__all__ = ["Pool"]

T = TypeVar("T")

_monotonic = time.monotonic
_getframe = sys._getframe
_is_user_code = _sites.is_user_code
_new = object.__new__
_allocate_lock = threading.Lock
_TIMEOUT_MAX = threading.TIMEOUT_MAX  # a longer wait raises OverflowError
#: How long ``close()`` waits for leases when no timeout is given.
CLOSE_TIMEOUT = 5.0
#: Weight of each contended release's hold in the pool's smoothed hold time.
HOLD_SMOOTHING = 0.125
#: Patience (handoff_after) applies while the smoothed hold is under this share of it.
#: Measured, 16 threads on 4 objects: sqlite3 holds about 10 us and patience doubles its
#: throughput; a PostgreSQL round trip holds about 1 ms and waiters waking to check
#: cost a third of its throughput.
SHORT_HOLD = 0.25
_names = iter(range(1, sys.maxsize))


class Pool(PoolCore[T]):
    """A bounded, fair, health-checked pool of objects made by ``create``.

    Example::

        with reclaim.Pool(lambda: sqlite3.connect("app.db", check_same_thread=False),
                          max_size=4, name="db") as pool:
            with pool.acquire() as conn:
                conn.execute("SELECT 1")

    Options (keyword-only, validated here; errors name the argument): ``close``
    (default ``obj.close()``), ``min_size`` (kept warm in the background),
    ``max_size`` (live objects, counting ones being created), ``acquire_timeout``
    (seconds, finite), ``max_lifetime`` (with up to 5 % jitter; None: never),
    ``max_idle`` (idle objects beyond ``min_size`` are closed), ``check``
    (raises or returns False for a dead object; skipped when it was used less
    than ``check_after`` seconds ago; an object handed straight from a returning
    caller to a waiting one counts as just used), ``reset`` (on return; raising or False
    discards), ``configure`` (once per new object), ``is_broken(obj, exc)``
    (an exception in the ``with`` body that means discard it), ``leak_timeout``
    (log leases held longer), ``name``, ``fair`` (waiters are served in
    arrival order; False lets callers barge for throughput), ``handoff_after``
    (with fair: a returned object goes straight to the longest waiter once it
    has waited this long, 1 ms by default; until then the returning thread may
    keep it, saving a thread switch per operation, as long as contended holds
    average under a quarter of it; 0 hands off always),
    ``reconnect_delay`` / ``reconnect_max_delay`` (backoff of background
    refills after a failing ``create``), ``max_waiting`` (once that many callers
    wait, a further acquire raises ``PoolFull`` at once instead of queueing; None:
    no limit, 0: never wait).

    Raises:
        TypeError, ValueError: an option is invalid (the message names it).
    """

    def __init__(
        self,
        create: Callable[[], T],
        *,
        close: Callable[[T], object] | None = None,
        min_size: int = 0,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        check: Callable[[T], object] | None = None,
        check_after: float = 0.5,
        reset: Callable[[T], object] | None = None,
        configure: Callable[[T], object] | None = None,
        is_broken: Callable[[T, BaseException], bool] | None = None,
        leak_timeout: float | None = None,
        name: str | None = None,
        fair: bool = True,
        handoff_after: float = 0.001,
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 10.0,
        max_waiting: int | None = None,
    ) -> None:
        opts = validate(
            f"pool-{next(_names)}",
            create=create,
            close=close,
            min_size=min_size,
            max_size=max_size,
            acquire_timeout=acquire_timeout,
            max_lifetime=max_lifetime,
            max_idle=max_idle,
            check=check,
            check_after=check_after,
            reset=reset,
            configure=configure,
            is_broken=is_broken,
            leak_timeout=leak_timeout,
            name=name,
            fair=fair,
            handoff_after=handoff_after,
            reconnect_delay=reconnect_delay,
            reconnect_max_delay=reconnect_max_delay,
            max_waiting=max_waiting,
        )
        refuse_coroutine_functions(opts)
        super().__init__(opts)
        self._close_fn = opts.close
        self._acquire_timeout = opts.acquire_timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._refill = threading.Condition()  # wait() sleeps on it; the worker notifies
        self._all_back = threading.Event()
        self._worker: threading.Thread | None = None
        self._hold_avg = 0.0
        # No patience (handoff_after=0 or unfair): -1 keeps every waiter untimed.
        self._short_hold = self._patience * SHORT_HOLD if self._patience else -1.0
        if min_size:
            self._ensure_worker()

    # -- acquire -------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> Lease[T]:
        """Lend an object now; wait up to *timeout* (default ``acquire_timeout``) for one.

        Raises:
            PoolTimeout: none became free in time (the message lists who holds them).
            PoolClosed: the pool was closed.
            Exception: whatever ``create`` raised when a new object was needed.
            TypeError, ValueError: *timeout* is not None or a number >= 0 (also when an
                object is idle: a bad value must not wait for a busy pool to show).
        """
        if timeout is not None:
            acquire_deadline(0.0, timeout, 0.0)
        idle = self._idle
        try:
            # An empty deque is the contended case: test it rather than raise and catch
            # IndexError (an exception costs more than the whole uncontended acquire).
            slot = idle.pop() if idle else None
        except IndexError:  # emptied by another thread since the test
            slot = None
        if slot is None:
            slot = self._acquire_slow(timeout)  # sets acquired_at
        else:
            now = _monotonic()
            if (
                now >= slot.expires
                or slot.gen != self._gen
                or (self._check is not None and self._needs_check(slot, now))
            ) and not self._usable(slot, now):
                slot = self._acquire_slow(timeout)
            else:
                slot.acquired_at = now
        slot.leased = True
        self._acquired += 1
        frame = _getframe(1)
        code = frame.f_code
        if code is _sites.last_user_code or _is_user_code(code):
            slot.code = code
            slot.lasti = frame.f_lasti  # the line is worked out only when shown
        else:
            slot.code = None
            slot.site = _sites.capture_from(frame)
        lease: Lease[T] = _new(Lease)  # Lease.__init__ without its frame
        lease._pool = self
        lease._slot = slot
        lease._value = slot.value
        if _track.on_acquire is not None:
            _track.acquired("lease", lease, f"lease of pool {self._name!r}", _sites.capture_from(frame))
        return lease

    def _acquire_slow(self, timeout: float | None) -> Slot:
        """Queue up (or create, or take what a race left idle); the slot's acquired_at is set."""
        start = _monotonic()
        deadline = acquire_deadline(start, timeout, self._acquire_timeout)
        misses = 0
        lock = self._lock
        while True:
            waiter = None
            # `with`, not acquire() + try: Ctrl-C as acquire() returns would leave the lock held.
            with lock:
                if self._closed:
                    raise PoolClosed(f"pool {self._name!r} is closed; no object can be acquired")
                lost = self._take_orphans() if self._orphans else None
                result: Any = None
                idle = self._idle
                if idle and not (self._fair and self._waiters):
                    try:
                        result = idle.pop()
                    except IndexError:
                        result = None
                if result is None:
                    if self._size < self._max_size and self._reserve():  # full is the usual
                        result = CREATE
                    elif len(self._waiters) >= self._wait_limit and not misses:
                        result = self._reject()  # raised once the lock is released
                    else:
                        # ThreadWaiter.__init__ without its frame: the contended acquire.
                        waiter = _new(ThreadWaiter)
                        waiter.result = None
                        waiter.since = start
                        waiter.misses = misses
                        # Sleeps in steps (to collect an object a release kept for it while
                        # young) only while holds are short; see _release.
                        waiter.timed = self._hold_avg < self._short_hold
                        waiter.lock = gate = _allocate_lock()
                        gate.acquire()
                        if misses:
                            self._waiters.appendleft(waiter)
                        else:
                            self._waiters.append(waiter)
                        if idle:
                            self._pump()
            if waiter is not None:
                # With an immediate hand-off the wait is one blocking acquire of the waiter's
                # lock; wait() handles the rest (young waiters, a delivery racing a timeout).
                try:
                    if lost:  # in here: Ctrl-C in a close must not leave the waiter queued
                        self._close_all(lost)
                        lost = None
                    if self._worker is None:  # only it reclaims a lease lost while we wait
                        self._ensure_worker()
                    if waiter.timed or not waiter.lock.acquire(
                        True, min(max(deadline - _monotonic(), 0.0), _TIMEOUT_MAX)
                    ):
                        wait(self, waiter, deadline)
                except BaseException:  # Ctrl-C, or PoolTimeout (already out of the queue)
                    self._abandon_wait(waiter)
                    raise
                result = waiter.result
                if result.__class__ is Slot:
                    self._waited += 1
                    # The wait ends when the object is handed over (no clock read here).
                    handed = waiter.handed
                    self._waits.append(handed - start)
                    if handed == result.last_used and self._check_after:
                        # Handed straight over by a release that found it fresh a moment ago.
                        result.acquired_at = handed
                        return result
                elif result is CREATE:
                    self._waited += 1
                    self._waits.append(_monotonic() - start)
                    return self._create_slot()
                elif result is CLOSED:
                    raise PoolClosed(f"pool {self._name!r} was closed while waiting")
                else:
                    assert result is RETRY, result  # a barging race lost: queue up again
                    misses += 1
                    continue
            if lost:
                try:
                    self._close_all(lost)
                except BaseException:  # Ctrl-C in a close: the slot (or the right to create) goes on
                    with lock:
                        self._pass_on(result)
                    raise
            if result is CREATE:
                return self._create_slot()
            elif result.__class__ is PoolFull:
                raise result
            now = _monotonic()
            if waiter is None:
                handed = now
            if not (
                now >= result.expires
                or result.gen != self._gen
                or (self._check is not None and self._needs_check(result, handed))
            ) or self._usable(result, now):
                result.acquired_at = now
                return result  # type: ignore[no-any-return]

    def _abandon_wait(self, waiter: ThreadWaiter) -> None:
        """A wait ended by an exception: leave the queue and pass on what was delivered meanwhile.

        Without this, an object (or a slot to create one) handed to a caller interrupted by
        Ctrl-C would go to a waiter nobody is left to collect: lost to the pool for good.
        """
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            given, waiter.result = waiter.result, None
            if given is not None:
                self._pass_on(given)
            elif self._idle and self._waiters:
                self._pump()  # one a release kept idle for this (young) waiter: to the next

    def _usable(self, slot: Slot, now: float) -> bool:
        """Whether a slot taken from idle may be lent; when not, it is discarded here."""
        reason = self._stale(slot, now)
        if reason is not None:
            self._discard(slot, reason)
            return False
        if self._check is not None and self._needs_check(slot, now):
            try:
                ok = self._check(slot.value) is not False
            except Exception as exc:
                log.info("pool %r: check failed, discarding the object: %r", self._name, exc)
                ok = False
            except BaseException:
                self._discard(slot, "broken")  # interrupted mid-check: state unknown
                raise
            if not ok:
                self._on_broken(now)
                self._discard(slot, "check")
                return False
            slot.last_used = now
        return True

    def _create_slot(self) -> Slot:
        """Create an object in a slot already reserved for this caller."""
        try:
            value = self._create()
            if self._configure is not None:
                try:
                    self._configure(value)
                except BaseException:
                    self._close_value(value)
                    raise
        except BaseException as exc:
            with self._lock:
                self._create_failed()
            note_create_failed(self._name, exc)
            raise
        now = _monotonic()
        entered = False
        try:
            with self._lock:
                entered = True
                slot = self._create_done(value, now)
        except BaseException:
            if not entered:  # Ctrl-C while waiting for the lock: close it, free the slot
                self._close_value(value)
                with self._lock:
                    self._create_failed()
            raise
        if slot is None:
            self._close_value(value)
            raise PoolClosed(f"pool {self._name!r} was closed while creating an object")
        if self._needs_maintenance and self._worker is None:
            self._ensure_worker()
        return slot

    # -- release -------------------------------------------------------------

    def _release(self, slot: Slot) -> None:
        now = _monotonic()
        hold = now - slot.acquired_at
        self._holds.append(hold)
        reset = self._reset
        if reset is not None:
            try:
                ok = reset(slot.value) is not False
            except Exception as exc:
                log.info("pool %r: reset failed, discarding the object: %r", self._name, exc)
                ok = False
            except BaseException:
                self._discard(slot, "broken")  # interrupted mid-reset: state unknown
                raise
            if not ok:
                self._discard(slot, "broken")
                return
        if now >= slot.expires or slot.gen != self._gen or slot.leak_reported or self._size > self._max_size:
            self._release_slow(slot, now)
            return
        slot.last_used = now
        slot.leased = False
        if self._waiters:
            entered = False
            try:
                with self._lock:
                    entered = True
                    # How long borrowers keep an object while others wait, smoothed: short holds
                    # (in-process work, e.g. sqlite) make the patience below pay; long ones (a
                    # network round trip, the GIL released) make waking early pure cost.
                    self._hold_avg += (hold - self._hold_avg) * HOLD_SMOOTHING
                    waiters = self._waiters
                    if not waiters:
                        self._idle.append(slot)
                    elif not self._fair:
                        self._offer(slot)
                    elif waiters[0].timed and now - waiters[0].since < self._patience:  # type: ignore[attr-defined]
                        # The longest waiter is younger than handoff_after and wakes by itself at
                        # that age: keep the object in the pool (this thread may take it again
                        # without a switch); the waiter collects it if it is still idle then.
                        # `timed` is cleared (under this lock) once it has looked: `now`, read
                        # before reset, may be older than that look.
                        self._idle.append(slot)
                    else:
                        # Core._offer() and ThreadWaiter.deliver(), inlined: the contended release.
                        waiter = waiters.popleft()  # a thread's waiter always takes it
                        waiter.result = slot  # type: ignore[attr-defined]
                        waiter.handed = now
                        waiter.lock.release()  # type: ignore[attr-defined]
                        if self._idle:
                            self._pump()  # one kept for a timed waiter served meanwhile: the next
            except BaseException:
                if not entered:  # Ctrl-C while waiting for the lock: the object must not be lost
                    self._idle.append(slot)
                    self._settle(slot)  # to a waiter
                raise
            return
        self._idle.append(slot)
        # Racing a caller that is queueing up, or close(): one of us sees the other.
        if self._waiters or self._closed:
            self._settle(slot)

    def _settle(self, slot: Slot) -> None:
        with self._lock:
            if not self._closed:
                self._pump()
                return
            try:
                self._idle.remove(slot)
            except ValueError:
                return  # close() took it
            close = self._forget(slot)
            self._check_all_back()
        if close:
            self._close_value(slot.value)

    def _release_slow(self, slot: Slot, now: float) -> None:
        if slot.leak_reported:
            self._returned_late(slot, now)
        reason = self._stale(slot, now)
        if reason is not None:
            self._discard(slot, reason)
            return
        slot.last_used = now
        slot.leased = False
        self._idle.append(slot)
        self._settle(slot)

    def _discard(self, slot: Slot, reason: str) -> None:
        """Forget *slot* and close its object (outside the lock)."""
        entered = False
        try:
            with self._lock:
                entered = True
                close = self._discard_locked(slot, reason)
        except BaseException:
            if not entered:  # Ctrl-C while waiting for the lock: reclaimed like a lost lease
                slot.leased = True
                self._orphans.append(slot)
            raise
        if close:
            self._close_value(slot.value)
        if self._worker is not None and self._min_size:
            self._wake.set()

    def _signal_all_back(self) -> None:
        self._all_back.set()

    def _reap_closed(self) -> None:
        """A lease of the closed pool was garbage-collected: close its object now."""
        lock = self._lock
        if lock.locked():  # maybe by this very thread, interrupted by the collector: never wait
            return  # left to statistics()
        with lock:
            lost = self._take_orphans()
        self._close_all(lost)

    def _close_value(self, value: Any) -> None:
        try:
            close_value(self._close_fn, value)
        except Exception:
            log.exception("pool %r: closing an object failed", self._name)

    def _close_all(self, slots: list[Slot]) -> None:
        for i, slot in enumerate(slots):
            try:
                self._close_value(slot.value)
            except BaseException:  # Ctrl-C in one close: the others are closed all the same
                self._close_all(slots[i + 1 :])
                raise

    # -- maintenance ---------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            worker = threading.Thread(
                target=maintain,
                args=(weakref.ref(self),),
                name=f"reclaim-pool-{self._name}",
                daemon=True,
            )
            self._worker = worker
        worker.start()

    def _reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._refill = threading.Condition()
        self._wake = threading.Event()
        self._all_back = threading.Event()
        self._worker = None

    # -- control -------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Close the pool: idle objects now, leased ones as they come back (waits *timeout*, 5 s default).

        Acquire after close raises PoolClosed; closing twice is harmless. Leases
        still out after *timeout* are logged and closed when they come back.

        Raises:
            TypeError, ValueError: *timeout* is not None or a finite number >= 0
                (checked first: the pool is left open).
        """
        check_close_timeout(timeout)  # before anything changes
        if _track.on_release is not None:
            _track.released(self)  # the pool's own record (see _tracking)
        with self._lock:
            closing = self._close_locked()
            worker, self._worker = self._worker, None
        self._close_all(closing)
        self._wake.set()
        self._signal_refill()  # a wait() raises PoolClosed
        if worker is not None and worker is not threading.current_thread():
            try:
                worker.join(CLOSE_TIMEOUT if timeout is None else max(timeout, 0.1))
            except RuntimeError:  # not started yet by the thread creating it: it starts, sees
                pass  # the pool closed and ends
        if not self._all_back.wait(CLOSE_TIMEOUT if timeout is None else timeout):
            with self._lock:
                held = [s.where() for s in _explain.holders(self)]
            log.warning(
                "pool %r closed with %d leases still out (closed when returned): %s",
                self._name,
                len(held),
                "; ".join(held),
            )

    def wait(self, timeout: float = 30.0) -> None:
        """Block until ``min_size`` objects are made (the background refill), e.g. at startup.

        Returns at once when they are (or ``min_size`` is 0). Unlike psycopg_pool's ``wait()``,
        a timeout leaves the pool open: it keeps refilling, and acquires still work.

        Raises:
            PoolTimeout: fewer than ``min_size`` after *timeout* seconds; it names the last
                failed create, which is chained to it (``__cause__``).
            PoolClosed: the pool is closed, or was closed while waiting.
            TypeError, ValueError: *timeout* is not a finite number >= 0.
        """
        _seconds("timeout", timeout, optional=False, positive=False)
        deadline = _monotonic() + timeout
        if not self._refilled():
            self._ensure_worker()
            self._wake.set()  # a worker napping (backing off after failed creates) tries now
        with self._refill:
            while (left := self._refill_left(deadline, timeout)) is not None:
                self._refill.wait(left)

    def _signal_refill(self) -> None:
        with self._refill:
            self._refill.notify_all()

    def check(self) -> int:
        """Run ``check`` on every idle object now; discard (close) the failing ones; return how many.

        Each object is taken out of the pool while it is checked, outside the lock
        (no borrower gets one mid-check); the ones that pass go back (to a waiter
        first), and the maintenance thread refills ``min_size``. Leased objects are
        not touched.

        Example::

            dead = pool.check()  # e.g. after the database restarted

        Raises:
            ValueError: the pool has no ``check`` option.
            PoolClosed: the pool was closed.
        """
        lock = self._lock
        with lock:
            slots = self._take_for_check()
        check = self._check
        assert check is not None
        failed = 0
        try:
            while slots:
                slot = slots[0]
                try:
                    # past max_lifetime or drained: not checked, retired on the way back
                    stale = self._stale(slot, _monotonic()) is not None
                    ok = stale or check(slot.value) is not False
                except Exception as exc:
                    log.info("pool %r: check failed, discarding the object: %r", self._name, exc)
                    ok = False
                except BaseException:
                    slots.pop(0)
                    self._discard(slot, "broken")  # interrupted mid-check: state unknown
                    raise
                slots.pop(0)
                failed += not ok
                with lock:
                    close = self._return_checked(slot, ok, _monotonic())
                if close:
                    self._close_value(slot.value)
        finally:
            for slot in slots:  # not checked (interrupted): back as they were
                with lock:
                    close = self._return_checked(slot, True, _monotonic())
                if close:
                    self._close_value(slot.value)
            if failed and self._min_size:
                self._ensure_worker()
                self._wake.set()
        return failed

    def drain(self) -> None:
        """Replace every object: idle ones are closed now, leased ones when they come back."""
        with self._lock:
            closing = self._drain_locked()
        self._close_all(closing)
        self._wake.set()

    def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the bounds at runtime; extra idle objects are closed, min_size is refilled.

        Raises:
            TypeError, ValueError: the new sizes are invalid (nothing changes).
        """
        with self._lock:
            closing = self._resize_locked(min_size, max_size)
        self._close_all(closing)
        if self._min_size:
            self._ensure_worker()
            self._wake.set()

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of sizes, counters and wait/hold percentiles."""
        with self._lock:
            lost = self._take_orphans()
            stats = _explain.statistics(self)
        self._close_all(lost)
        return stats

    @property
    def name(self) -> str:
        """The pool's name (used in logs and errors)."""
        return self._name

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def __enter__(self) -> Pool[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return _explain.describe(self)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._slots:
            try:
                warnings.warn(
                    f"{_explain.describe(self)} was garbage-collected unclosed; call close() "
                    "or use `with Pool(...) as pool:`",
                    ResourceWarning,
                    stacklevel=1,
                )
            except Exception:  # interpreter shutdown
                return
