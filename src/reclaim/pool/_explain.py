"""What a maintenance pass must do, and how a pool explains itself; no I/O, no waiting.

Functions over a :class:`~reclaim.pool._core.PoolCore`, called with the pool's
exclusion held, shared by the thread and asyncio shells.
"""

from __future__ import annotations

from math import inf
from typing import Any

from ._core import LIFETIME_JITTER, MAX_NAP, Plan, PoolCore, Slot
from ._stats import PoolStatistics, percentiles

__all__ = ["describe", "full_message", "holders", "plan", "seconds", "statistics", "timeout_message"]

#: Holders listed in a PoolTimeout message.
MAX_LISTED = 8


def plan(core: PoolCore[Any], now: float) -> Plan:
    """Decide one maintenance pass: retire idle ones, replace ones near expiry, refill, leaks."""
    out = Plan()
    # Objects lent or returned after this pass are not in it: never sleep past a fraction
    # of the shortest timer (a no-op for production-sized timers, which exceed MAX_NAP).
    timers = [t for t in (core._leak_timeout, core._o.max_idle) if t is not None]
    if core._lifetime is not None:
        timers.append(core._lifetime * LIFETIME_JITTER)
    wake = now + min([MAX_NAP, *(t / 2 for t in timers)])
    max_idle = core._o.max_idle
    lifetime = core._lifetime
    margin = 0.0 if lifetime is None else min(lifetime * LIFETIME_JITTER, 60.0)
    live = len(core._slots)
    idle = core._idle
    for slot in list(idle):  # least recently used first
        reason = None
        if slot.gen != core._gen:
            reason = "drained"
        elif now >= slot.expires:
            reason = "expired"
        elif max_idle is not None and now - slot.last_used >= max_idle and live > core._min_size:
            reason = "idle"
        if reason is not None:
            try:
                idle.remove(slot)
            except ValueError:
                continue  # taken by an acquire meanwhile
            live -= 1
            if reason == "expired":
                core._expired += 1
            elif reason == "idle":
                core._idle_closed += 1
            if core._forget(slot):
                out.retire.append((slot, reason))
            continue
        if lifetime is not None and not slot.replacing:
            if now >= slot.expires - margin:
                slot.replacing = True
                out.replace.append(slot)
            else:
                wake = min(wake, slot.expires - margin)
        if max_idle is not None and live > core._min_size:
            wake = min(wake, slot.last_used + max_idle)
    leak = core._leak_timeout
    if leak is not None:
        for slot in core._slots:
            if slot.leased and not slot.leak_reported:
                due = slot.acquired_at + leak
                if now >= due:
                    slot.leak_reported = True
                    slot.fresh_until = -inf  # its return takes the slow path, which logs it
                    core._leaks += 1
                    out.leaks.append(slot)
                else:
                    wake = min(wake, due)
    out.create = max(0, core._min_size - core._size)
    out.wake_in = max(0.0, wake - now)
    return out


def seconds(value: float) -> str:
    """A duration for people: ``41.2 s`` or ``3.5 ms``."""
    return f"{value:.1f} s" if value >= 1 else f"{value * 1e3:.1f} ms"


def holders(core: PoolCore[Any]) -> list[Slot]:
    """Leased slots, longest held first."""
    return sorted((s for s in core._slots if s.leased), key=lambda s: s.acquired_at)


def _callers(n: int) -> str:
    """How many callers wait besides this one, in words: ``1 other caller``, ``2 other callers``."""
    return f"{n} other caller" if n == 1 else f"{n} other callers"


def timeout_message(core: PoolCore[Any], waited: float, now: float) -> str:
    """The PoolTimeout text: sizes, waiters, and every current lease with its age and site."""
    held = holders(core)
    parts = [
        f"pool {core._name!r} timed out after {seconds(waited)}: {len(held)}/{core._max_size} "
        f"in use, {len(core._idle)} idle, {core._creating} being created, "
        f"{_callers(len(core._waiters))} waiting"
    ]
    if held:
        listed = [f"held {seconds(now - s.acquired_at)}, acquired at {s.where()}" for s in held[:MAX_LISTED]]
        parts.append("current leases (oldest first):\n  " + "\n  ".join(listed))
        if len(held) > MAX_LISTED:
            parts.append(f"  ... and {len(held) - MAX_LISTED} more")
    parts.append(
        "Release leases sooner (`with pool.acquire() as obj:`), raise max_size, or set "
        "leak_timeout= to log long holders."
    )
    return "\n".join(parts)


def full_message(core: PoolCore[Any]) -> str:
    """The PoolFull text: the pool, its wait limit, how full it is, and what to do."""
    in_use = sum(1 for s in core._slots if s.leased)
    return (
        f"pool {core._name!r} is full: {_callers(len(core._waiters))} already waiting "
        f"(max_waiting={core._o.max_waiting}), {in_use}/{core._max_size} in use, "
        f"{core._size} live or being created; the acquire was refused without waiting. "
        "Shed or retry this request later, raise max_waiting or max_size, or release leases sooner."
    )


def statistics(core: PoolCore[Any]) -> PoolStatistics:
    """The frozen snapshot behind ``statistics()``."""
    leased = sum(1 for s in core._slots if s.leased)
    w = percentiles(tuple(core._waits))
    h = percentiles(tuple(core._holds))
    return PoolStatistics(
        name=core._name,
        size=core._size,
        idle=len(core._idle),
        in_use=leased,
        creating=core._creating,
        waiting=len(core._waiters),
        min_size=core._min_size,
        max_size=core._max_size,
        acquired=core._acquired,
        waited=core._waited,
        timeouts=core._timeouts,
        rejected=core._rejected,
        created=core._created,
        closed=core._closed_count,
        failed_creates=core._failed_creates,
        discarded_by_check=core._discarded_check,
        discarded_broken=core._discarded_broken,
        expired=core._expired,
        idle_closed=core._idle_closed,
        leaks_reported=core._leaks,
        leases_lost=core._lost,
        wait_p50=w[0],
        wait_p99=w[1],
        wait_max=w[2],
        hold_p50=h[0],
        hold_p99=h[1],
        hold_max=h[2],
    )


def describe(core: PoolCore[Any]) -> str:
    """The one-line repr."""
    state = "closed" if core._closed else "open"
    leased = sum(1 for s in core._slots if s.leased)
    return (
        f"<{type(core).__name__} {core._name!r} {state} size={core._size}/{core._max_size} "
        f"idle={len(core._idle)} in_use={leased} waiting={len(core._waiters)}>"
    )
