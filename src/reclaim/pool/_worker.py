"""Maintenance: one daemon thread per Pool, one task per AsyncPool; started lazily, stopped by close.

Each pass asks the core for a plan (``_explain.plan``) and carries it out:
close retired objects, log leaks, replace objects near expiry, refill
``min_size`` with exponential backoff after a failing create. Between passes
only a weak reference is held, so a pool dropped without close() is collected
(and warns) instead of being kept alive by its worker.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from reclaim.errors import PoolClosed

from . import _explain
from ._core import Slot, log

if TYPE_CHECKING:
    from ._async import AsyncPool
    from ._sync import Pool

__all__ = ["amaintain", "maintain"]

_monotonic = time.monotonic


def maintain(ref: weakref.ref[Pool[Any]]) -> None:
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
            plan = _explain.plan(pool, now)
        pool._close_all(lost + [slot for slot, _ in plan.retire])
        for slot in plan.leaks:
            pool._report_leak(slot, now)
        failed = False
        for old in plan.replace:
            new = _background_create(pool)
            if new is None:
                break
            # close() may have run since the create finished: then the new object is closed
            # here, not left in a closed pool.
            with pool._lock:
                stale = pool._place(new)
                retire = not stale and pool._replaced(old)
            if stale:
                pool._close_value(new.value)
            if retire:
                pool._close_value(old.value)
        for _ in range(plan.create):
            new = _background_create(pool)
            if new is None:
                failed = pool._size < pool._min_size and not pool._closed
                break
            with pool._lock:
                stale = pool._place(new)
            if stale:
                pool._close_value(new.value)
        pool._signal_refill()  # a wait() looks again
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


def _background_create(pool: Pool[Any]) -> Slot | None:
    """Create one object in the background; None when full, closed, or create failed."""
    with pool._lock:
        if not pool._reserve():
            return None
    try:
        return pool._create_slot()
    except PoolClosed:
        return None
    except Exception as exc:
        log.warning("pool %r: background create failed: %r", pool._name, exc)
        pool._last_create_error = exc
        return None


async def amaintain(ref: weakref.ref[AsyncPool[Any]]) -> None:
    """The maintenance task: refill min_size, retire idle/expired, replace early, report leaks."""
    import asyncio as _asyncio  # here, not at the top: the thread pool's import stays asyncio-free

    delay: float | None = None
    while True:
        pool = ref()
        if pool is None or pool._closed:
            return
        now = _monotonic()
        pool._close_slots(pool._take_orphans())
        plan = _explain.plan(pool, now)
        pool._close_slots([slot for slot, _ in plan.retire])
        for slot in plan.leaks:
            pool._report_leak(slot, now)
        failed = False
        for old in plan.replace:
            new = await _abackground_create(pool)
            if new is None:
                break
            pool._offer(new)
            if pool._replaced(old):
                pool._close_later(old.value)
        for _ in range(plan.create):
            new = await _abackground_create(pool)
            if new is None:
                failed = pool._size < pool._min_size and not pool._closed
                break
            pool._offer(new)
        pool._signal_refill()  # a wait() looks again
        if failed:
            o = pool._o
            delay = o.reconnect_delay if delay is None else min(delay * 2, o.reconnect_max_delay)
            nap = delay
        else:
            delay = None
            nap = plan.wake_in
        wake = pool._wake
        del pool
        # asyncio.timeout, not wait_for(): on 3.11 wait_for() wraps the wait in a task of its
        # own, which a loop closed with this worker pending never starts, and whose coroutine
        # then warns "was never awaited" wherever it is collected.
        try:
            async with _asyncio.timeout(nap):
                await wake.wait()
        except TimeoutError:
            pass
        wake.clear()


async def _abackground_create(pool: AsyncPool[Any]) -> Slot | None:
    if not pool._reserve():
        return None
    try:
        return await pool._create_slot()
    except PoolClosed:
        return None
    except Exception as exc:
        log.warning("pool %r: background create failed: %r", pool._name, exc)
        pool._last_create_error = exc
        return None
