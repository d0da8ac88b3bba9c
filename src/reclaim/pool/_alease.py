"""AsyncLease: one object lent by an AsyncPool; acquired by ``await`` or ``async with``."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Generator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from reclaim import _sites, _track
from reclaim.errors import ResourceClosed

from ._core import Slot, warn_lost

if TYPE_CHECKING:
    from ._async import AsyncPool

__all__ = ["AsyncLease"]

T = TypeVar("T")
_monotonic = time.monotonic
_getframe = sys._getframe
_is_user_code = _sites.is_user_code


class AsyncLease(Generic[T]):
    """An object lent by an :class:`AsyncPool`; made by ``pool.acquire()``, acquired when awaited.

    Example::

        async with pool.acquire() as conn:      # released (or discarded) on exit
            await conn.execute("SELECT 1")

        lease = await pool.acquire(timeout=2.0)
        try:
            await use(lease.value)
        finally:
            await lease.release()               # or: await lease.discard()

    A task cancelled while waiting or while holding the lease loses nothing:
    the slot comes back to the pool (an object interrupted mid-reset is closed).
    """

    __slots__ = ("__weakref__", "_pool", "_slot", "_timeout")
    # No __init__: AsyncPool.acquire() sets the fields. Calling a class without one runs no
    # Python code and costs less than object.__new__(AsyncLease) (about 300 instructions).
    _pool: AsyncPool[T]
    _timeout: float | None
    _slot: Slot | Literal[False] | None  # None: not acquired yet; a Slot: held; False: released

    def __aenter__(self) -> Awaitable[T]:
        # Synchronous fast path: with an idle object at hand, the bookkeeping is done here and
        # a finished future holding the object is returned (no coroutine, nothing to cancel).
        pool = self._pool
        if self._slot is not None:
            raise RuntimeError(f"{self!r} was already acquired; call pool.acquire() again")
        frame = _getframe(1)  # the code running `async with` (or reclaim's __await__)
        idle = pool._idle
        if not idle:  # tested, not raised and caught: the contended case stays cheap too
            self._slot = False
            return pool._lend(self, frame, None)
        slot = idle.pop()
        now = _monotonic()
        if now >= slot.fresh_until or (pool._check is not None and pool._needs_check(slot, now)):
            self._slot = False
            return pool._lend(self, frame, slot)
        # _take(), inlined
        slot.leased = True
        slot.acquired_at = now
        code = frame.f_code
        if code is _sites.last_user_code or _is_user_code(code):
            slot.code = code
            slot.lasti = frame.f_lasti  # the line is worked out only when shown
        else:
            slot.code = None
            slot.site = _sites.capture_from(frame)
        pool._acquired += 1
        self._slot = slot
        if _track.on_acquire is not None:
            _track.acquired("lease", self, f"lease of pool {pool._name!r}", _sites.capture_from(frame))
        return slot.ready  # type: ignore[no-any-return]

    if not TYPE_CHECKING:  # hidden from type checkers, so that they flag `with pool.acquire()` themselves

        def __enter__(self) -> None:
            raise TypeError(
                f"pool {self._pool._name!r} is an AsyncPool: use `async with pool.acquire() as obj:` "
                "(or `lease = await pool.acquire()`), not `with`"
            )

        def __exit__(self, *exc_info: object) -> None:
            # Never called (__enter__ raised), but `with` looks both up before calling __enter__.
            return None

    def _take(self, slot: Slot, now: float, frame: FrameType) -> None:
        """The lease now holds *slot* (no await between getting the slot and this)."""
        pool = self._pool
        slot.leased = True
        slot.acquired_at = now
        code = frame.f_code
        if code is _sites.last_user_code or _is_user_code(code):
            slot.code = code
            slot.lasti = frame.f_lasti  # the line is worked out only when shown
        else:
            slot.code = None
            slot.site = _sites.capture_from(frame)
        pool._acquired += 1
        self._slot = slot
        if _track.on_acquire is not None:
            _track.acquired("lease", self, f"lease of pool {pool._name!r}", _sites.capture_from(frame))

    def __await__(self) -> Generator[Any, None, AsyncLease[T]]:
        # The site is found by skipping reclaim's frames (this one) up to the awaiting code.
        yield from self.__aenter__().__await__()
        return self

    def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> Awaitable[None]:
        pool = self._pool
        slot = self._slot
        if not slot:  # None (never acquired) or False (released): a Slot is true
            return pool._done()
        self._slot = False
        if _track.on_release is not None:
            _track.released(self)
        if exc is not None and pool._is_broken is not None:
            try:
                broken = pool._broken(slot, exc)
            except BaseException:
                pool._discard(slot, "broken")  # is_broken interrupted: state unknown
                raise
            if broken:
                pool._discard(slot, "broken")
                return pool._done()
        now = _monotonic()
        pool._holds.append(now - slot.acquired_at)
        reset = pool._reset
        if reset is not None:
            try:
                answer = reset(slot.value)
            except Exception as error:
                answer = pool._reset_failed(error)
            except BaseException:
                pool._discard(slot, "broken")  # interrupted mid-reset: state unknown
                raise
            if answer is not True and answer is not None:  # True/None: the common answers
                return pool._after_reset(slot, answer, now)
        # pool._put_back(), inlined: the common case of every release
        if now < slot.fresh_until:  # not expired, drained or reported leaked
            slot.last_used = now
            slot.leased = False
            if pool._waiters:
                pool._hand_off(slot, now)
            else:
                pool._idle.append(slot)
        else:
            pool._release_slow(slot, now)
        return pool._done_future or pool._done()

    def _held(self) -> Slot:
        slot = self._slot
        if not isinstance(slot, Slot):
            raise ResourceClosed(f"{self!r} holds no object (not acquired yet, or released)")
        return slot

    @property
    def value(self) -> T:
        """The pooled object. Raises ResourceClosed before acquisition or after release."""
        return self._held().value  # type: ignore[no-any-return]

    async def release(self) -> None:
        """Give the object back. Raises ResourceClosed when not held."""
        self._held()
        await self.__aexit__(None, None, None)

    async def discard(self) -> None:
        """Close the object instead of returning it. Raises ResourceClosed when not held."""
        slot = self._held()
        self._slot = False
        if _track.on_release is not None:
            _track.released(self)
        self._pool._discard(slot, "broken")

    def __del__(self) -> None:
        slot = self._slot
        if not slot:
            return
        self._slot = False
        pool = self._pool
        pool._orphans.append(slot)
        warn_lost(
            slot,
            f"lease of pool {pool._name!r} was garbage-collected without release; it was "
            f"acquired at {slot.where()}. Use `async with pool.acquire() as obj:`",
        )
        if pool._closed:  # no maintenance task is left to close its object
            pool._reap_closed()

    def __repr__(self) -> str:
        slot = self._slot
        name = self._pool._name
        if slot is None:
            # Shown by asyncio.create_task(pool.acquire()) ("a coroutine was expected, got ..."):
            # the lease is awaitable, not a coroutine, so say what works instead.
            return (
                f"<AsyncLease of pool {name!r} pending: awaitable, not a coroutine (await it, "
                "or asyncio.ensure_future(pool.acquire()) for a task)>"
            )
        if not isinstance(slot, Slot):
            return f"<AsyncLease of pool {name!r} released>"
        held = _monotonic() - slot.acquired_at
        return f"<AsyncLease of pool {name!r} held {held:.3g} s, acquired at {slot.where()}>"
