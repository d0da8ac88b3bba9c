"""Lease: one object lent by a thread Pool, given back by release(), discard() or leaving ``with``."""

from __future__ import annotations

import time
from types import TracebackType
from typing import TYPE_CHECKING, Generic, TypeVar

from reclaim import _track
from reclaim.errors import ResourceClosed

from ._core import Slot, warn_lost

if TYPE_CHECKING:
    from ._sync import Pool

__all__ = ["Lease"]

T = TypeVar("T")
_monotonic = time.monotonic


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
        if self._slot is None:
            # Its object may be another borrower's by now: never hand it out again.
            raise ResourceClosed(
                f"{self!r} was released; acquire a new lease (`with pool.acquire() as obj:`)"
            )
        return self._value

    if not TYPE_CHECKING:  # hidden from type checkers, so that they flag `async with` themselves

        def __aenter__(self) -> None:
            # pool.acquire() already lent the object: give it back before saying so.
            if self._slot is not None:
                self.release()
            raise TypeError(
                f"pool {self._pool._name!r} is a thread Pool: use `with pool.acquire() as obj:` "
                "(reclaim.AsyncPool for async code), not `async with`"
            )

        def __aexit__(self, *exc_info: object) -> None:
            return None  # never called (__aenter__ raised)

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
        if exc is not None and pool._is_broken is not None:
            try:
                broken = pool._broken(slot, exc)
            except BaseException:
                pool._discard(slot, "broken")  # is_broken interrupted (Ctrl-C): state unknown
                raise
            if broken:
                pool._discard(slot, "broken")
                return
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
        warn_lost(
            slot,
            f"lease of pool {pool._name!r} was garbage-collected without release; it was "
            f"acquired at {slot.where()}. Use `with pool.acquire() as obj:`",
        )
        if pool._closed:  # no maintenance thread is left to close its object
            pool._reap_closed()

    def __repr__(self) -> str:
        slot = self._slot
        if slot is None:
            return f"<Lease of pool {self._pool._name!r} released>"
        held = _monotonic() - slot.acquired_at
        return f"<Lease of pool {self._pool._name!r} held {held:.3g} s, acquired at {slot.where()}>"
