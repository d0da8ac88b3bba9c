"""How AsyncPool's tasks wait: the waiter future, the one deadline timer, the next-turn hand-over.

A waiting task awaits the future of a :class:`TaskWaiter`, its entry in the core's FIFO
queue. One timer per pool, due at the nearest deadline, times waiters out
(:func:`time_out`); :func:`hand_over` gives the waiters what a release kept idle for its
own task when that task did not take it back.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._core import _Token

if TYPE_CHECKING:
    from ._async import AsyncPool

__all__ = ["DEAD", "TIMEOUT", "TaskWaiter", "call", "hand_over", "is_awaitable", "time_out"]

#: Handed to a waiter whose deadline passed.
TIMEOUT = _Token("TIMEOUT")
_monotonic = time.monotonic
_INF = float("inf")


def is_awaitable(value: object) -> bool:
    """Whether a hook's result must be awaited (an async hook returned a coroutine)."""
    return value is not None and hasattr(value, "__await__")


async def call(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a sync or async callable and return its result."""
    result = fn(*args)
    if is_awaitable(result):
        result = await result
    return result


class TaskWaiter:
    """A waiting task's entry in the core's FIFO queue (a Waiter, see _core); it awaits ``future``.

    ``future`` is the loop's own future (or :data:`DEAD`), not a subclass: a task awaiting an exact future
    takes the event loop's fast path (a subclass cost a tenth of a contended acquire). Its
    result is what the waiter was given (a Slot or a token). One object per contended
    acquire, with no Python ``__init__``: the pool sets the fields.
    """

    __slots__ = ("deadline", "future", "handed", "misses", "since")
    future: asyncio.Future[Any]
    since: float
    deadline: float
    misses: int
    handed: float

    def deliver(self, result: Any) -> bool:
        future = self.future
        if future.done():
            return False  # cancelled or timed out: it removes itself
        self.handed = _monotonic()
        try:
            future.set_result(result)
        except RuntimeError:  # its loop is closed: the task never runs again
            self.future = DEAD
            return False
        return True

    def done(self) -> bool:
        """Whether something was delivered, or the wait was cancelled."""
        return self.future.done()

    def given(self) -> Any:
        """What was delivered (None: nothing, or the wait was cancelled first)."""
        future = self.future
        return None if not future.done() or future.cancelled() else future.result()


class _Dead:
    """Stands in for the future of a waiter whose event loop was closed while it waited: that
    task never runs again, so it is treated as one that gave up (done, cancelled, given nothing)."""

    __slots__ = ()

    def done(self) -> bool:
        return True

    def cancelled(self) -> bool:
        return True


#: What ``TaskWaiter.future`` becomes when a delivery found its loop closed.
DEAD: Any = _Dead()


def time_out(ref: weakref.ref[AsyncPool[Any]]) -> None:
    """The pool's deadline timer fired: time out every waiter past its deadline, re-arm."""
    pool = ref()
    if pool is None:
        return
    pool._timer = None
    pool._timer_at = _INF
    now = _monotonic()
    due = [w for w in pool._waiters if w.deadline <= now]  # type: ignore[attr-defined]
    for waiter in due:
        try:
            pool._waiters.remove(waiter)
        except ValueError:
            pass
        waiter.deliver(TIMEOUT)
    nearest = min((w.deadline for w in pool._waiters), default=_INF)  # type: ignore[attr-defined]
    if nearest < _INF:
        pool._arm(asyncio.get_running_loop(), nearest)


def hand_over(ref: weakref.ref[AsyncPool[Any]]) -> None:
    """The loop's next turn after a release kept its object idle: what is still idle goes to the waiters."""
    pool = ref()
    if pool is None:
        return
    pool._nudge = None
    if pool._idle and pool._waiters:
        pool._pump()
