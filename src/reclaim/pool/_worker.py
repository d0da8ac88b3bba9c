"""The sync pool's maintenance thread: one daemon thread per pool, started lazily, stopped by close.

It holds only a weak reference between passes, so a pool dropped without
close() is collected (and warns) instead of being kept alive by its worker.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from . import _explain

if TYPE_CHECKING:
    from ._sync import Pool

__all__ = ["maintain"]

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
            new = pool._background_create()
            if new is None:
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
