"""Pool and Lease: the thread shell around the shared pool core.

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
from types import TracebackType
from typing import Any, Generic, TypeVar

from reclaim import _sites, _track
from reclaim.errors import PoolClosed, PoolTimeout, ResourceClosed

from ._core import _ABANDONED, CLOSED, CREATE, RETRY, PoolCore, Slot, Waiter, close_value, log
from ._options import validate
from ._stats import PoolStatistics

__all__ = ["Lease", "Pool"]

T = TypeVar("T")

_monotonic = time.monotonic
_getframe = sys._getframe
_framework = _sites._framework_cache
_allocate_lock = threading.Lock
#: How long ``close()`` waits for leases when no timeout is given.
CLOSE_TIMEOUT = 5.0
_names = iter(range(1, sys.maxsize))


class _ThreadWaiter(Waiter):
    __slots__ = ("lock",)

    def __init__(self, since: float) -> None:
        super().__init__(since)
        self.lock = _allocate_lock()
        self.lock.acquire()

    def deliver(self, result: Any) -> bool:
        self.result = result
        self.lock.release()
        return True


class Lease(Generic[T]):
    """One object lent by a :class:`Pool`; give it back with ``release()`` or by leaving ``with``.

    Example::

        with pool.acquire() as conn:        # released (or discarded, see is_broken) on exit
            conn.execute("SELECT 1")

        lease = pool.acquire()
        try:
            use(lease.value)
        finally:
            lease.release()                 # or lease.discard() to close it instead

    A lease garbage-collected without release is reported with a
    ``ResourceWarning`` naming where it was acquired, and its object is closed.
    """

    __slots__ = ("__weakref__", "_pool", "_slot", "_value")

    def __init__(self, pool: Pool[T], slot: Slot) -> None:
        self._pool = pool
        self._slot: Slot | None = slot
        self._value: T = slot.value

    @property
    def value(self) -> T:
        """The pooled object. Raises ResourceClosed after the lease was released."""
        if self._slot is None:
            raise ResourceClosed(f"{self!r} was released; acquire a new lease")
        return self._value

    def __enter__(self) -> T:
        return self._value

    def __exit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        slot = self._slot
        if slot is None:
            return
        self._slot = None
        if _track.on_release is not None:
            _track.released(self)
        pool = self._pool
        if exc is not None and pool._is_broken is not None and pool._broken(slot, exc):
            pool._discard(slot, "broken")
        else:
            pool._release(slot)

    def release(self) -> None:
        """Give the object back to the pool. Raises ResourceClosed when already released."""
        slot = self._slot
        if slot is None:
            raise ResourceClosed(f"{self!r} was already released")
        self._slot = None
        if _track.on_release is not None:
            _track.released(self)
        self._pool._release(slot)

    def discard(self) -> None:
        """Close the object instead of returning it (it is broken or in an unknown state)."""
        slot = self._slot
        if slot is None:
            raise ResourceClosed(f"{self!r} was already released")
        self._slot = None
        if _track.on_release is not None:
            _track.released(self)
        self._pool._discard(slot, "broken")

    def __del__(self) -> None:
        slot = self._slot
        if slot is None:
            return
        self._slot = None
        pool = self._pool
        pool._orphans.append(slot)  # reclaimed outside the collector (no lock taken here)
        try:
            warnings.warn(
                f"lease of pool {pool._name!r} was garbage-collected without release; it was "
                f"acquired at {slot.where()}. Use `with pool.acquire() as obj:`",
                ResourceWarning,
                stacklevel=1,
            )
        except Exception:  # interpreter shutdown: warnings may be gone
            return

    def __repr__(self) -> str:
        slot = self._slot
        if slot is None:
            return f"<Lease of pool {self._pool._name!r} released>"
        held = _monotonic() - slot.acquired_at
        return f"<Lease of pool {self._pool._name!r} held {held:.3g} s, acquired at {slot.where()}>"


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
    than ``check_after`` seconds ago), ``reset`` (on return; raising or False
    discards), ``configure`` (once per new object), ``is_broken(obj, exc)``
    (an exception in the ``with`` body that means discard it), ``leak_timeout``
    (log leases held longer), ``name``, ``fair`` (False lets callers barge
    for throughput), ``reconnect_delay`` / ``reconnect_max_delay`` (backoff
    of background refills after a failing ``create``).

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
        reconnect_delay: float = 0.1,
        reconnect_max_delay: float = 10.0,
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
            reconnect_delay=reconnect_delay,
            reconnect_max_delay=reconnect_max_delay,
        )
        super().__init__(opts)
        self._close_fn = opts.close
        self._acquire_timeout = opts.acquire_timeout
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._all_back = threading.Event()
        self._worker: threading.Thread | None = None
        if min_size:
            self._ensure_worker()

    # -- acquire -------------------------------------------------------------

    def acquire(self, *, timeout: float | None = None) -> Lease[T]:
        """Lend an object now; wait up to *timeout* (default ``acquire_timeout``) for one.

        Raises:
            PoolTimeout: none became free in time (the message lists who holds them).
            PoolClosed: the pool was closed.
            Exception: whatever ``create`` raised when a new object was needed.
        """
        try:
            slot = self._idle.pop()
        except IndexError:
            slot = self._acquire_slow(timeout)
            now = slot.acquired_at
        else:
            now = _monotonic()
            if (
                now >= slot.expires
                or slot.gen != self._gen
                or (self._check is not None and self._needs_check(slot, now))
            ) and not self._usable(slot, now):
                slot = self._acquire_slow(timeout)
                now = slot.acquired_at
        slot.leased = True
        slot.acquired_at = now
        self._acquired += 1
        frame = _getframe(1)
        code = frame.f_code
        if _framework.get(code.co_filename) is False:
            slot.code = code
            slot.line = frame.f_lineno
            slot.site = None
        else:
            slot.site = _sites.capture_from(frame)
        lease = Lease(self, slot)
        if _track.on_acquire is not None:
            _track.acquired("lease", lease, f"lease of pool {self._name!r}", _sites.capture_from(frame))
        return lease

    def _acquire_slow(self, timeout: float | None) -> Slot:
        start = _monotonic()
        if timeout is None:
            timeout = self._acquire_timeout
        elif timeout < 0:
            raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
        deadline = start + timeout
        misses = 0
        lock = self._lock
        while True:
            waiter = None
            lock.acquire()
            try:
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
                    if self._reserve():
                        result = CREATE
                    else:
                        waiter = _ThreadWaiter(start)
                        waiter.misses = misses
                        if misses:
                            self._waiters.appendleft(waiter)
                        else:
                            self._waiters.append(waiter)
                        if idle:
                            self._pump()
            finally:
                lock.release()
            if lost:
                self._close_all(lost)
            if waiter is not None:
                remaining = deadline - _monotonic()
                got = waiter.lock.acquire(timeout=max(remaining, 0.0))
                if not got:
                    with lock:
                        if waiter.result is None:
                            try:
                                self._waiters.remove(waiter)
                            except ValueError:
                                pass
                            self._timeouts += 1
                            message = self._timeout_message(_monotonic() - start, _monotonic())
                            raise PoolTimeout(message)
                result = waiter.result
                if result is CLOSED:
                    raise PoolClosed(f"pool {self._name!r} was closed while waiting")
                if result is RETRY:
                    misses += 1
                    continue
                self._waited += 1
                self._waits.append(_monotonic() - start)
            if result is CREATE:
                return self._create_slot()
            now = _monotonic()
            if self._usable(result, now):
                result.acquired_at = now
                return result  # type: ignore[no-any-return]

    def _usable(self, slot: Slot, now: float) -> bool:
        """Whether a slot taken from idle may be lent; when not, it is discarded here."""
        if now >= slot.expires:
            self._discard(slot, "expired")
            return False
        if slot.gen != self._gen:
            self._discard(slot, "drained")
            return False
        if self._check is not None and self._needs_check(slot, now):
            try:
                ok = self._check(slot.value) is not False
            except Exception as exc:
                log.info("pool %r: check failed, discarding the object: %r", self._name, exc)
                ok = False
            if not ok:
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
                self._creating -= 1
                self._failed_creates += 1
                self._free_capacity()
            exc.add_note(f"(while pool {self._name!r} was creating an object)")
            raise
        now = _monotonic()
        with self._lock:
            self._creating -= 1
            if self._closed:
                self._size -= 1
                closed = True
            else:
                slot = self._new_slot(value, now)
                closed = False
        if closed:
            self._close_value(value)
            raise PoolClosed(f"pool {self._name!r} was closed while creating an object")
        if self._needs_maintenance and self._worker is None:
            self._ensure_worker()
        return slot

    # -- release -------------------------------------------------------------

    def _broken(self, slot: Slot, exc: BaseException) -> bool:
        assert self._is_broken is not None
        try:
            broken = bool(self._is_broken(slot.value, exc))
        except Exception:
            log.exception("pool %r: is_broken raised; discarding the object", self._name)
            broken = True
        if broken:
            self._on_broken(_monotonic())
        return broken

    def _release(self, slot: Slot) -> None:
        now = _monotonic()
        self._holds.append(now - slot.acquired_at)
        reset = self._reset
        if reset is not None:
            try:
                ok = reset(slot.value) is not False
            except Exception as exc:
                log.info("pool %r: reset failed, discarding the object: %r", self._name, exc)
                ok = False
            if not ok:
                self._discard(slot, "broken")
                return
        if now >= slot.expires or slot.gen != self._gen or slot.leak_reported:
            self._release_slow(slot, now)
            return
        slot.last_used = now
        slot.leased = False
        if self._waiters:
            with self._lock:
                self._offer(slot)
            return
        self._idle.append(slot)
        if self._waiters or self._closed:
            with self._lock:
                if self._closed:
                    close = self._sweep_after_close(slot)
                else:
                    self._pump()
                    return
            if close:
                self._close_value(slot.value)

    def _release_slow(self, slot: Slot, now: float) -> None:
        if slot.leak_reported:
            slot.leak_reported = False
            log.warning(
                "pool %r: lease reported as leaked came back after %.3g s; acquired at %s",
                self._name,
                now - slot.acquired_at,
                slot.where(),
            )
        if now >= slot.expires:
            self._discard(slot, "expired")
        elif slot.gen != self._gen:
            self._discard(slot, "drained")
        else:
            slot.last_used = now
            slot.leased = False
            with self._lock:
                self._offer(slot)
                close = self._closed and self._sweep_after_close(slot)
            if close:
                self._close_value(slot.value)

    def _sweep_after_close(self, slot: Slot) -> bool:
        """With the lock: a slot pushed back as the pool closed is forgotten; True: close it."""
        try:
            self._idle.remove(slot)
        except ValueError:
            return False  # close() took it
        forgotten = self._forget(slot)
        if not any(s.leased for s in self._slots):
            self._all_back.set()
        return forgotten

    def _discard(self, slot: Slot, reason: str) -> None:
        """Forget *slot* and close its object (outside the lock)."""
        with self._lock:
            slot.leased = False
            if slot.pid != self._pid:
                _ABANDONED.append(slot.value)  # the parent's object: never closed by a child
                return
            if reason == "check":
                self._discarded_check += 1
                self._on_broken(_monotonic())
            elif reason == "broken":
                self._discarded_broken += 1
            elif reason == "expired":
                self._expired += 1
            forgotten = self._forget(slot)
            if self._closed and not any(s.leased for s in self._slots):
                self._all_back.set()
        if forgotten:
            self._close_value(slot.value)
        if self._worker is not None and self._min_size:
            self._wake.set()

    def _close_value(self, value: Any) -> None:
        try:
            close_value(self._close_fn, value)
        except Exception:
            log.exception("pool %r: closing an object failed", self._name)

    def _close_all(self, slots: list[Slot]) -> None:
        for slot in slots:
            self._close_value(slot.value)

    # -- maintenance ---------------------------------------------------------

    def _ensure_worker(self) -> None:
        with self._lock:
            if self._worker is not None or self._closed:
                return
            worker = threading.Thread(
                target=_maintain, args=(weakref.ref(self),), name=f"reclaim-pool-{self._name}", daemon=True
            )
            self._worker = worker
        worker.start()

    def _background_create(self) -> Slot | None:
        """Create one object in the background; None when full, closed, or create failed."""
        with self._lock:
            if not self._reserve():
                return None
        try:
            return self._create_slot()
        except PoolClosed:
            return None
        except Exception as exc:
            log.warning("pool %r: background create failed: %r", self._name, exc)
            return None

    def _reinit_after_fork(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._all_back = threading.Event()
        self._worker = None

    # -- control -------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Close the pool: idle objects now, leased ones when they come back (waits *timeout*, 5 s default).

        Acquire after close raises PoolClosed; closing twice is harmless. Leases
        still held after *timeout* are logged and closed when they come back.
        """
        with self._lock:
            self._closed = True
            self._gen += 1
            idle = list(self._idle)
            self._idle.clear()
            closing = [s for s in idle if self._forget(s)]
            while self._waiters:
                self._waiters.popleft().deliver(CLOSED)
            worker, self._worker = self._worker, None
            lost = self._take_orphans()
            if not any(s.leased for s in self._slots):
                self._all_back.set()
        self._close_all(closing + lost)
        self._wake.set()
        if worker is not None and worker is not threading.current_thread():
            worker.join()
        if not self._all_back.wait(CLOSE_TIMEOUT if timeout is None else timeout):
            with self._lock:
                held = [s.where() for s in self._slots if s.leased]
            log.warning(
                "pool %r closed with %d leases still held (closed when returned): %s",
                self._name,
                len(held),
                "; ".join(held),
            )

    def drain(self) -> None:
        """Replace every object: idle ones are closed now, leased ones when they come back."""
        with self._lock:
            self._gen += 1
            idle = list(self._idle)
            self._idle.clear()
            closing = [s for s in idle if self._forget(s)]
        self._close_all(closing)
        self._wake.set()

    def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the bounds at runtime; extra idle objects are closed, min_size is refilled.

        Raises:
            TypeError, ValueError: the new sizes are invalid (nothing changes).
        """
        with self._lock:
            self._resize(min_size, max_size)
            closing = self._shrink_idle()
            while self._waiters and self._size < self._max_size and not self._closed:
                if self._waiters.popleft().deliver(CREATE):
                    self._size += 1
                    self._creating += 1
        self._close_all(closing)
        if self._min_size:
            self._ensure_worker()
            self._wake.set()

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of sizes, counters and wait/hold percentiles."""
        with self._lock:
            lost = self._take_orphans()
            stats = self._statistics()
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
        return self._repr()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._slots:
            try:
                warnings.warn(
                    f"{self._repr()} was garbage-collected unclosed; call close() or use "
                    "`with Pool(...) as pool:`",
                    ResourceWarning,
                    stacklevel=1,
                )
            except Exception:
                return


def _maintain(ref: weakref.ref[Pool[Any]]) -> None:
    """The maintenance thread: refill min_size, retire idle/expired, replace early, report leaks."""
    delay: float | None = None
    while True:
        pool = ref()
        if pool is None:
            return
        now = _monotonic()
        with pool._lock:
            if pool._closed or pool._worker is not threading.current_thread():
                return
            lost = pool._take_orphans()
            plan = pool._plan(now)
        pool._close_all(lost + [slot for slot, _ in plan.retire])
        for slot in plan.leaks:
            log.warning(
                "pool %r: lease held %.3g s (leak_timeout %.3g s), acquired at %s",
                pool._name,
                now - slot.acquired_at,
                pool._leak_timeout,
                slot.where(),
            )
        failed = False
        for old in plan.replace:
            new = pool._background_create()
            if new is None:
                failed = True
                break
            with pool._lock:
                pool._offer(new)
                retire = pool._replaced(old)
            if retire:
                pool._close_value(old.value)
        for _ in range(plan.create):
            new = pool._background_create()
            if new is None:
                failed = pool._size < pool._min_size and not pool._closed
                break
            with pool._lock:
                pool._offer(new)
        if failed:
            o = pool._o
            delay = o.reconnect_delay if delay is None else min(delay * 2, o.reconnect_max_delay)
            nap = delay
        else:
            delay = None
            nap = plan.wake_in
        wake = pool._wake
        del pool  # do not keep the pool alive while sleeping
        wake.wait(nap)
        wake.clear()
