"""PoolStatistics: a frozen snapshot of a pool's state and counters."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

__all__ = ["PoolStatistics", "percentiles"]


class PoolStatistics(NamedTuple):
    """What :meth:`reclaim.Pool.statistics` returns (a named tuple); every time is in seconds.

    Example::

        stats = pool.statistics()
        print(f"{stats.in_use}/{stats.max_size} in use, p99 wait {stats.wait_p99 * 1e3:.1f} ms")

    Attributes:
        name: the pool's name.
        size: live objects, counting ones being created (never above ``max_size``).
        idle: objects waiting in the pool.
        in_use: objects held by leases.
        creating: objects being created right now.
        waiting: callers waiting for an object.
        min_size / max_size: the current bounds.
        acquired: leases handed out since the pool was made.
        waited: acquisitions that had to wait (the others waited 0 s).
        timeouts: acquisitions that raised ``PoolTimeout``.
        rejected: acquisitions refused at once with ``PoolFull`` (``max_waiting`` callers were waiting).
        created: objects created successfully.
        closed: objects closed by the pool (discarded, expired, shrunk, drained, at close).
        failed_creates: calls to ``create`` (or ``configure``) that raised.
        discarded_by_check: objects whose ``check`` failed before reuse.
        discarded_broken: objects discarded by ``lease.discard()``, ``is_broken`` or a failing ``reset``.
        expired: objects retired for ``max_lifetime``.
        idle_closed: objects retired for ``max_idle``.
        leaks_reported: leases logged for outliving ``leak_timeout``.
        leases_lost: leases garbage-collected without release (their slot was reclaimed).
        wait_p50 / wait_p99 / wait_max: wait times of recent acquisitions that waited.
        hold_p50 / hold_p99 / hold_max: how long recent leases were held.
    """

    name: str
    size: int
    idle: int
    in_use: int
    creating: int
    waiting: int
    min_size: int
    max_size: int
    acquired: int
    waited: int
    timeouts: int
    rejected: int
    created: int
    closed: int
    failed_creates: int
    discarded_by_check: int
    discarded_broken: int
    expired: int
    idle_closed: int
    leaks_reported: int
    leases_lost: int
    wait_p50: float
    wait_p99: float
    wait_max: float
    hold_p50: float
    hold_p99: float
    hold_max: float


def percentiles(samples: Iterable[float]) -> tuple[float, float, float]:
    """(p50, p99, max) of *samples* by nearest rank; zeros when there are none."""
    ordered = sorted(samples)
    if not ordered:
        return 0.0, 0.0, 0.0
    n = len(ordered)
    return ordered[(n - 1) // 2], ordered[min(n - 1, (n * 99) // 100)], ordered[-1]
