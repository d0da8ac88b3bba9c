"""How Pool's threads wait: each waiter sleeps on its own lock until an object is delivered.

A release hands the object to the longest waiter and releases that waiter's lock
(:class:`ThreadWaiter`); :func:`wait` sleeps on it, wakes once a young waiter comes of
age to collect an object left idle meanwhile, and raises PoolTimeout at the deadline.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from reclaim.errors import PoolTimeout

from . import _explain

if TYPE_CHECKING:
    from ._sync import Pool

__all__ = ["ThreadWaiter", "wait"]

_monotonic = time.monotonic


class ThreadWaiter:
    """A Waiter (see _core) woken by releasing its lock; ``result`` is what it was given.

    No Python ``__init__`` (one object per contended acquire): the pool makes it with
    ``result`` None, ``since``, ``misses``, ``timed`` and ``lock`` already acquired;
    ``handed`` is set with ``result``.
    """

    __slots__ = ("handed", "lock", "misses", "result", "since", "timed")
    result: Any
    since: float
    misses: int
    lock: threading.Lock
    handed: float
    timed: bool  # wakes by itself at handoff_after to collect an object kept idle; False once it looked

    def deliver(self, result: Any) -> bool:
        self.result = result
        self.handed = _monotonic()
        self.lock.release()
        return True


def wait(pool: Pool[Any], waiter: ThreadWaiter, deadline: float) -> None:
    """Sleep until something is delivered to *waiter*; raises PoolTimeout at *deadline*.

    A timed waiter (the pool's holds are short) younger than ``handoff_after`` may be
    overtaken (the releasing thread keeps its object: no thread switch); it wakes once
    at that age to collect an object left idle meanwhile, and from then on every release
    hands off to it. An untimed one sleeps until it is handed an object or the deadline.
    """
    lock = pool._lock
    patience = pool._patience
    young = waiter.timed  # one nap until it comes of age, then a look at what was kept idle
    while True:
        now = _monotonic()
        remaining = deadline - now
        nap = remaining
        if young:
            # None when it came of age before it got here (the thread was descheduled): it
            # looks at once, else an object a release kept for it would sit idle all along.
            young = False
            nap = min(remaining, max(waiter.since + patience - now, 0.0))
        if waiter.lock.acquire(timeout=min(max(nap, 0.0), threading.TIMEOUT_MAX)):
            return
        with lock:
            # It looks now: from here on a release must hand off to it, whatever that release's
            # clock said (read before this look, e.g. ahead of a reset, it may say "young").
            waiter.timed = False
            if waiter.result is None and pool._idle:
                pool._pump()  # an object left idle while we were young
            if waiter.result is not None:  # delivered as we woke
                waiter.lock.acquire(False)
                return
            if nap < remaining:
                continue
            try:
                pool._waiters.remove(waiter)
            except ValueError:
                pass
            pool._timeouts += 1
            now = _monotonic()
            raise PoolTimeout(_explain.timeout_message(pool, now - waiter.since, now))
