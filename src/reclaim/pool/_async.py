"""AsyncPool: the asyncio shell around the shared pool core.

The event loop is the pool's exclusion: the core's locked operations run
between awaits. Waiters are futures in the same FIFO queue the thread pool
uses. Objects are closed without awaiting on paths that may be cancelled
(a discard schedules an async ``close`` as a task the pool keeps and awaits
in ``close()``), so a cancelled task never leaves a slot or an object behind.
"""

from __future__ import annotations

import asyncio
import sys
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, TypeVar, Unpack, overload

from reclaim import _sites, _track
from reclaim.errors import PoolClosed, PoolTimeout

from . import _explain
from ._alease import AsyncLease
from ._await import DEAD, TIMEOUT, TaskWaiter, call, hand_over, is_awaitable, time_out
from ._core import CLOSED, CREATE, RETRY, PoolCore, Slot, close_value, log, note_create_failed
from ._options import (
    AsyncPoolOptions,
    _seconds,
    acquire_deadline,
    check_close_timeout,
    refuse_async_is_broken,
    validate,
)
from ._stats import PoolStatistics
from ._worker import amaintain

__all__ = ["AsyncPool"]

T = TypeVar("T")
_monotonic = time.monotonic
_getframe = sys._getframe
_framework = _sites._framework_cache
_new = object.__new__
CLOSE_TIMEOUT = 5.0
_names = iter(range(1, sys.maxsize))
_INF = float("inf")
_get_running_loop = asyncio.get_running_loop
_running_loop = asyncio._get_running_loop  # None outside a loop; no exception to raise


def _loop_closed(future: asyncio.Future[Any]) -> bool:
    """Whether *future* can no longer be resolved: its loop is closed (or it is DEAD)."""
    return future is DEAD or future.get_loop().is_closed()


class AsyncPool(PoolCore[T]):
    """The asyncio twin of :class:`reclaim.Pool`: same options, same behaviour, awaited.

    ``create``, ``close``, ``check``, ``reset`` and ``configure`` may be plain or
    async callables. Use it from one event loop. As in Pool, a returned object goes
    to the longest waiter once it has waited ``handoff_after`` (1 ms); before that
    the returning task may take it again before its next ``await`` (which saves two
    task switches per operation), and what it does not take goes to the longest
    waiter at the loop's next turn (``handoff_after=0``: always straight to it).

    Example::

        async with reclaim.AsyncPool(make_client, max_size=8, name="api") as pool:
            async with pool.acquire() as client:
                await client.get("/")

    Raises:
        TypeError, ValueError: an option is invalid (the message names it).
    """

    # Two signatures so a type checker infers T from a coroutine function's result too.
    @overload
    def __init__(
        self, create: Callable[[], Awaitable[T]], **options: Unpack[AsyncPoolOptions[T]]
    ) -> None: ...

    @overload
    def __init__(self, create: Callable[[], T], **options: Unpack[AsyncPoolOptions[T]]) -> None: ...

    def __init__(
        self,
        create: Callable[[], Any],
        *,
        close: Callable[[T], Any] | None = None,
        min_size: int = 0,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        max_lifetime: float | None = 3600.0,
        max_idle: float | None = 600.0,
        check: Callable[[T], Any] | None = None,
        check_after: float = 0.5,
        reset: Callable[[T], Any] | None = None,
        configure: Callable[[T], Any] | None = None,
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
            f"async-pool-{next(_names)}",
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
        refuse_async_is_broken(opts)
        super().__init__(opts)
        self._close_fn = opts.close
        self._acquire_timeout = opts.acquire_timeout
        self._wake = asyncio.Event()
        self._all_back = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._done_future: asyncio.Future[None] | None = None
        self._closing_tasks: set[asyncio.Future[Any]] = set()
        self._refill_waiters: list[asyncio.Future[None]] = []  # wait()'s; the task resolves them
        # One timer for all waiters, due at the nearest deadline (a timer per wait cost more
        # than the rest of a contended acquire): see _arm() and _time_out().
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = _INF
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        # The loop the pool was last used in: objects last used in another one are checked
        # before reuse (see _needs_check).
        self._loop: asyncio.AbstractEventLoop | None = None
        # While the longest waiter is younger than _patience, a release keeps its object idle
        # for the returning task to take again in the same step; _hand_over() gives the
        # waiters whatever is still idle at the loop's next turn.
        self._nudge: asyncio.Handle | None = None

    def acquire(self, *, timeout: float | None = None) -> AsyncLease[T]:
        """A lease to await (``lease = await pool.acquire()``) or enter (``async with``).

        Raises (when awaited):
            PoolTimeout: none became free within *timeout* (default ``acquire_timeout``).
            PoolClosed: the pool was closed.
            Exception: whatever ``create`` raised when a new object was needed.

        Raises (at once):
            TypeError, ValueError: *timeout* is not None or a number >= 0 (also when an
                object is idle: a bad value must not wait for a busy pool to show).
        """
        if timeout is not None:
            acquire_deadline(0.0, timeout, 0.0)
        lease: AsyncLease[T] = AsyncLease()  # it has no __init__: the fields are set here
        lease._pool = self
        lease._timeout = timeout
        lease._slot = None
        return lease

    async def _lend(self, lease: AsyncLease[T], frame: FrameType, slot: Slot | None) -> T:
        """The acquire that may wait: *slot* (taken from idle, needing a look) or the next free one.

        One coroutine from the lease's ``__aenter__`` until the lease holds its slot, with
        no await between getting the slot and taking it.
        """
        if slot is not None and await self._usable(slot, _monotonic()):
            lease._take(slot, _monotonic(), frame)
            return slot.value  # type: ignore[no-any-return]
        start = _monotonic()
        deadline = acquire_deadline(start, lease._timeout, self._acquire_timeout)
        misses = 0
        while True:
            if self._closed:
                raise PoolClosed(f"pool {self._name!r} is closed; no object can be acquired")
            if self._orphans:
                self._close_slots(self._take_orphans())
            idle = self._idle
            if idle and not (self._fair and self._waiters):
                result = idle.pop()
                now = handed = _monotonic()
            elif self._size < self._max_size and self._reserve():  # pre-test: full is the usual
                slot = await self._create_slot()
                lease._take(slot, _monotonic(), frame)
                return slot.value  # type: ignore[no-any-return]
            else:
                # The contended case: queue up; a release hands the object to the longest waiter.
                loop = _get_running_loop()
                if (self._task is None or self._task.get_loop() is not loop) and self._ensure_task():
                    continue  # a new loop: the waiters of a closed one were dropped; look again
                waiters = self._waiters
                if not misses and len(waiters) >= self._wait_limit:
                    raise self._reject()
                waiter = _new(TaskWaiter)
                waiter.future = future = loop.create_future()
                waiter.since = start
                waiter.deadline = deadline
                waiter.misses = misses
                if misses:
                    waiters.appendleft(waiter)
                else:
                    waiters.append(waiter)
                if deadline < self._timer_at or self._timer_loop is not loop:
                    self._arm(loop, deadline)
                try:
                    result = await future
                except BaseException:
                    self._abandon_wait(waiter)
                    raise
                if result.__class__ is not Slot:
                    if result is RETRY:
                        misses += 1
                        continue
                    if result is CREATE:
                        self._waited += 1
                        self._waits.append(_monotonic() - start)
                        slot = await self._create_slot()
                        lease._take(slot, _monotonic(), frame)
                        return slot.value  # type: ignore[no-any-return]
                    if result is TIMEOUT:
                        self._timeouts += 1
                        now = _monotonic()
                        raise PoolTimeout(_explain.timeout_message(self, now - start, now))
                    assert result is CLOSED, result
                    raise PoolClosed(f"pool {self._name!r} was closed while waiting")
                # The wait ends when the object is handed over (no clock read here).
                now = handed = waiter.handed
                self._waited += 1
                self._waits.append(now - start)
                if handed == result.last_used and self._check_after:
                    # Handed straight over by a release that found it fresh a moment ago.
                    lease._take(result, now, frame)
                    return result.value  # type: ignore[no-any-return]
            if not (
                now >= result.fresh_until or (self._check is not None and self._needs_check(result, handed))
            ) or await self._usable(result, now):
                lease._take(result, now, frame)
                return result.value  # type: ignore[no-any-return]

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """(Re)start the waiters' timer so it fires at *deadline* (a monotonic time)."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer_loop = loop
        self._timer = loop.call_at(
            loop.time() + max(0.0, deadline - _monotonic()), time_out, weakref.ref(self)
        )

    def _abandon_wait(self, waiter: TaskWaiter) -> None:
        """A waiting task was cancelled: pass on whatever it was given, leave the queue."""
        given = waiter.given()
        if given is not None:
            self._pass_on(given)
            return
        try:
            self._waiters.remove(waiter)
        except ValueError:
            pass

    async def _usable(self, slot: Slot, now: float) -> bool:
        """Whether a slot taken from idle may be lent; when not, it is discarded here."""
        reason = self._stale(slot, now)
        if reason is not None:
            self._discard(slot, reason)
            return False
        if self._check is not None and self._needs_check(slot, now):
            try:
                ok = await call(self._check, slot.value) is not False
            except Exception as exc:
                log.info("pool %r: check failed, discarding the object: %r", self._name, exc)
                ok = False
            except BaseException:
                self._discard(slot, "broken")  # cancelled mid-check: state unknown
                raise
            if not ok:
                self._on_broken(now)
                self._discard(slot, "check")
                return False
            slot.last_used = now
        return True

    def _needs_check(self, slot: Slot, now: float) -> bool:
        """The core's rule, and objects last used in another event loop are checked first.

        A second ``asyncio.run`` may start within ``check_after`` of the last release (the
        networked adapters' is 1 ms): without this, an asyncpg connection, which works only in
        the loop that made it, would be lent there unchecked ("attached to a different loop").
        """
        if _running_loop() is not self._loop:
            self._follow_loop(now)
        return now - slot.last_used >= self._check_after or slot.last_used <= self._distrust

    def _follow_loop(self, now: float) -> None:
        """The pool is used from a new event loop: distrust every object used before *now*."""
        loop = _running_loop()
        if loop is not self._loop:
            if self._loop is not None:
                self._on_broken(now)
            self._loop = loop

    async def _create_slot(self) -> Slot:
        """Create an object in a slot already reserved for this task."""
        self._follow_loop(_monotonic())  # the idle ones made in an earlier loop are checked
        try:
            value = await call(self._create)
            if self._configure is not None:
                try:
                    await call(self._configure, value)
                except BaseException:
                    self._close_later(value)
                    raise
        except BaseException as exc:
            self._create_failed()
            if isinstance(exc, Exception):
                note_create_failed(self._name, exc)
            raise
        slot = self._create_done(value, _monotonic())
        if slot is None:
            self._close_later(value)
            raise PoolClosed(f"pool {self._name!r} was closed while creating an object")
        # What a lease's fast path returns to `async with`: awaiting a done future costs less
        # than a coroutine. One per object, made here, so that path never tests for it.
        slot.ready = ready = _get_running_loop().create_future()
        ready.set_result(value)
        if self._needs_maintenance:
            self._ensure_task()
        return slot

    # -- release -------------------------------------------------------------

    # A lease's __aexit__ runs ``reset`` and gives the slot back; these are its other answers.

    def _reset_failed(self, error: Exception) -> bool:
        """``reset`` raised: logged, and the answer False (the object is discarded)."""
        log.info("pool %r: reset failed, discarding the object: %r", self._name, error)
        return False

    def _after_reset(self, slot: Slot, answer: Any, now: float) -> Awaitable[None]:
        """``reset`` answered neither True nor None: await it (async), discard (False), or keep."""
        if is_awaitable(answer):
            return self._finish_reset(slot, answer, now)
        if answer is False:
            self._discard(slot, "broken")
        else:
            self._put_back(slot, now)
        return self._done()

    async def _finish_reset(self, slot: Slot, pending: Any, now: float) -> None:
        try:
            ok = await pending is not False
        except Exception as exc:
            log.info("pool %r: reset failed, discarding the object: %r", self._name, exc)
            ok = False
        except BaseException:
            self._discard(slot, "broken")  # cancelled mid-reset: state unknown
            raise
        if ok:
            self._put_back(slot, now)
        else:
            self._discard(slot, "broken")

    def _put_back(self, slot: Slot, now: float) -> None:
        if now < slot.fresh_until:  # not expired, drained or reported leaked
            slot.last_used = now
            slot.leased = False
            if self._waiters:
                self._hand_off(slot, now)
            else:
                self._idle.append(slot)
        else:
            self._release_slow(slot, now)

    def _hand_off(self, slot: Slot, now: float) -> None:
        """A fresh object came back while tasks wait: to the longest waiter (or, young, idle)."""
        waiters = self._waiters
        if self._patience and now - waiters[0].since < self._patience:
            # The longest waiter is young: the returning task may take the object again
            # before it next awaits (no task switch); else the waiters get it next turn.
            self._idle.append(slot)
            if self._nudge is None:
                self._nudge = _get_running_loop().call_soon(hand_over, weakref.ref(self))
            return
        # Core._offer() and TaskWaiter.deliver(), inlined: the contended release.
        while waiters:
            waiter = waiters.popleft()
            future = waiter.future  # type: ignore[attr-defined]
            if not future.done():  # else it gave up
                waiter.handed = now
                try:
                    future.set_result(slot)
                except RuntimeError:  # its loop is closed: that task never runs again
                    waiter.future = DEAD  # type: ignore[attr-defined]
                    continue
                return
        self._idle.append(slot)

    def _done(self) -> asyncio.Future[None]:
        """A finished future: what the synchronous fast paths return to ``async with``."""
        done = self._done_future
        if done is None:
            done = self._done_future = asyncio.get_running_loop().create_future()
            done.set_result(None)
        return done

    def _release_slow(self, slot: Slot, now: float) -> None:
        if slot.leak_reported:
            self._returned_late(slot, now)
        reason = self._stale(slot, now)
        if reason is not None:
            self._discard(slot, reason)
            return
        if slot.gen == self._gen and not slot.leak_reported:
            slot.fresh_until = slot.expires  # outdated by a resize that no longer applies
        slot.last_used = now
        slot.leased = False
        self._offer(slot)

    def _discard(self, slot: Slot, reason: str) -> None:
        """Forget *slot*; its object is closed now (sync close) or by a kept task (async)."""
        if self._discard_locked(slot, reason):
            self._close_later(slot.value)
        if self._min_size:
            self._wake.set()

    def _close_later(self, value: Any) -> None:
        try:
            result = close_value(self._close_fn, value)
        except Exception:
            log.exception("pool %r: closing an object failed", self._name)
            return
        if is_awaitable(result):
            task = asyncio.ensure_future(result)  # type: ignore[call-overload]
            self._closing_tasks.add(task)
            task.add_done_callback(self._closed_one)

    def _closed_one(self, task: asyncio.Future[Any]) -> None:
        self._closing_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("pool %r: closing an object failed: %r", self._name, task.exception())

    def _close_slots(self, slots: list[Slot]) -> None:
        for slot in slots:
            self._close_later(slot.value)

    def _ensure_task(self) -> bool:
        """Start the maintenance task on the running loop unless it runs there already.

        Returns True when the pool moved to this loop from another and that dropped waiters
        (tasks of a closed loop) or a pending hand-over.
        """
        if self._closed:
            return False
        loop = _get_running_loop()
        task = self._task
        moved = False
        if task is not None and task.get_loop() is not loop:
            # The pool moved to a new event loop (e.g. a second asyncio.run): the old task
            # and the event it slept on belong to the old loop, which may be closed.
            task = None
            self._wake = asyncio.Event()
            moved = self._leave_closed_loops()
        elif task is not None and not task.done():
            return False
        self._task = loop.create_task(amaintain(weakref.ref(self)), name=f"reclaim-pool-{self._name}")
        return moved

    def _leave_closed_loops(self) -> bool:
        """Forget the waiters whose loop is closed (their tasks never run again) and a hand-over
        scheduled there (it never runs, and a pending one stops the next being scheduled).

        A loop closed with tasks still waiting (``loop.close()`` without cancelling them, as
        asyncio.run does) would otherwise keep objects from every waiter queued behind them.
        """
        nudge, self._nudge = self._nudge, None
        if nudge is not None:
            nudge.cancel()
        dead = [w for w in self._waiters if _loop_closed(w.future)]  # type: ignore[attr-defined]
        for waiter in dead:
            self._waiters.remove(waiter)
            waiter.future = DEAD  # type: ignore[attr-defined]
        return nudge is not None or bool(dead)

    def _signal_all_back(self) -> None:
        self._all_back.set()

    def _reap_closed(self) -> None:
        """A lease of the closed pool was garbage-collected: close its object at the loop's next turn."""
        loop = asyncio._get_running_loop()
        if loop is not None:  # else left to statistics()
            loop.call_soon(self._reap)

    def _reap(self) -> None:
        self._close_slots(self._take_orphans())

    def _reinit_after_fork(self) -> None:
        self._timer = None
        self._timer_at = _INF
        self._timer_loop = None
        self._nudge = None
        self._wake = asyncio.Event()
        self._all_back = asyncio.Event()
        self._task = None
        self._done_future = None
        self._closing_tasks = set()
        self._refill_waiters = []

    # -- control -------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:
        """Close the pool: idle objects now, leased ones as they come back (waits *timeout*, 5 s default).

        The closes of async ``close`` hooks share that wait: those still running at its end are
        cancelled (the networked adapters then drop the connection without a goodbye).

        Raises:
            TypeError, ValueError: *timeout* is not None or a finite number >= 0
                (checked first: the pool is left open).
        """
        check_close_timeout(timeout)  # before anything changes
        deadline = _monotonic() + (CLOSE_TIMEOUT if timeout is None else timeout)
        if _track.on_release is not None:
            _track.released(self)  # the pool's own record (see _tracking)
        self._close_slots(self._close_locked())
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, _INF
        if self._nudge is not None:
            self._nudge.cancel()
            self._nudge = None
        self._signal_refill()  # a wait() raises PoolClosed
        task, self._task = self._task, None
        if task is not None and task.get_loop() is _get_running_loop() and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        # A task of an earlier event loop is not awaited: that loop ended (asyncio.run
        # cancelled the task) or runs elsewhere; the pool is closed, so the task ends.
        try:
            # Tested first: no timer to arm when every lease is back already.
            if not self._all_back.is_set():
                async with asyncio.timeout(CLOSE_TIMEOUT if timeout is None else timeout):
                    await self._all_back.wait()  # no task of its own (see _worker.amaintain)
        except TimeoutError:
            held = [s.where() for s in _explain.holders(self)]
            log.warning(
                "pool %r closed with %d leases still out (closed when returned): %s",
                self._name,
                len(held),
                "; ".join(held),
            )
        if self._closing_tasks:
            # Bounded like the wait for leases: an async close may wait on the network (asyncpg's
            # polite close waits for the server's goodbye, up to its check_timeout, on a silent
            # network) or never end (a user's close=).
            _, late = await asyncio.wait(set(self._closing_tasks), timeout=max(deadline - _monotonic(), 0.0))
            if late:
                log.warning(
                    "pool %r: %d objects still closing when close() gave up waiting; cancelled",
                    self._name,
                    len(late),
                )
                for closing in late:
                    closing.cancel()

    async def wait(self, timeout: float = 30.0) -> None:
        """Wait until ``min_size`` objects are made, as :meth:`Pool.wait` (same errors)."""
        _seconds("timeout", timeout, optional=False, positive=False)
        deadline = _monotonic() + timeout
        if not self._refilled():
            self._ensure_task()
            self._wake.set()  # a task napping (backing off after failed creates) tries now
        loop = _get_running_loop()
        while (left := self._refill_left(deadline, timeout)) is not None:
            signal: asyncio.Future[None] = loop.create_future()
            self._refill_waiters.append(signal)
            try:
                await asyncio.wait_for(signal, left)
            except TimeoutError:
                pass
            finally:
                if signal in self._refill_waiters:
                    self._refill_waiters.remove(signal)

    def _signal_refill(self) -> None:
        signals, self._refill_waiters = self._refill_waiters, []
        for signal in signals:
            if not _loop_closed(signal) and not signal.done():
                signal.set_result(None)

    async def check(self) -> int:
        """Run ``check`` on every idle object now; discard (close) the failing ones; return how many.

        Each object is taken out of the pool while it is checked (no task gets one
        mid-check), the ones that pass go back (to a waiter first), and the
        maintenance task refills ``min_size``. Leased objects are not touched.

        Example::

            dead = await pool.check()  # e.g. after the database restarted

        Raises:
            ValueError: the pool has no ``check`` option.
            PoolClosed: the pool was closed.
        """
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
                    ok = stale or await call(check, slot.value) is not False
                except Exception as exc:
                    log.info("pool %r: check failed, discarding the object: %r", self._name, exc)
                    ok = False
                except BaseException:
                    slots.pop(0)
                    if self._discard_locked(slot, "broken"):  # cancelled mid-check: state unknown
                        self._close_later(slot.value)
                    raise
                slots.pop(0)
                failed += not ok
                if self._return_checked(slot, ok, _monotonic()):
                    self._close_later(slot.value)
        finally:
            for slot in slots:  # not checked (cancelled): back as they were
                if self._return_checked(slot, True, _monotonic()):
                    self._close_later(slot.value)
            if failed and self._min_size:
                self._ensure_task()
                self._wake.set()
        return failed

    async def drain(self) -> None:
        """Replace every object: idle ones are closed now, leased ones when they come back."""
        self._close_slots(self._drain_locked())
        if self._min_size:
            self._ensure_task()
        self._wake.set()

    async def resize(self, min_size: int | None = None, max_size: int | None = None) -> None:
        """Change the bounds at runtime; extra idle objects are closed, min_size is refilled."""
        self._close_slots(self._resize_locked(min_size, max_size))
        if self._min_size:
            self._ensure_task()
        self._wake.set()

    def statistics(self) -> PoolStatistics:
        """A frozen snapshot of sizes, counters and wait/hold percentiles."""
        self._close_slots(self._take_orphans())
        return _explain.statistics(self)

    @property
    def name(self) -> str:
        """The pool's name (used in logs and errors)."""
        return self._name

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    async def __aenter__(self) -> AsyncPool[T]:
        if self._min_size:
            self._ensure_task()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        return _explain.describe(self)

    def __del__(self) -> None:
        if not getattr(self, "_closed", True) and self._slots:
            try:
                warnings.warn(
                    f"{_explain.describe(self)} was garbage-collected unclosed; "
                    "use `async with AsyncPool(...) as pool:` or await close()",
                    ResourceWarning,
                    stacklevel=1,
                )
            except Exception:
                return
