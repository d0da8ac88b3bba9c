"""A model-based test of AsyncPool: hypothesis drives tasks that wait, are cancelled and give back.

One event loop lives as long as the machine; every rule runs it until nothing more
happens. Each example picks strict hand-off (``handoff_after=0``) or barging
(``handoff_after`` 60 s: a returning task may always take its object back while
waiters are young). After every step: no object is in two leases; the pool never
lends more than ``max_size``; no object sits idle while a task waits (the next-turn
hand-over); statistics agree with the model. At the end every created object has been
closed exactly once.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pool_support import Thing
from reclaim import AsyncLease, AsyncPool, PoolTimeout


class AsyncPoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.made: list[Thing] = []
        self.held: list[AsyncLease[Thing]] = []
        self.waiting: list[asyncio.Task[AsyncLease[Thing]]] = []
        self.cancelled: list[asyncio.Task[AsyncLease[Thing]]] = []
        self.acquired = 0
        # Leases lent before a drain() (weak: a freed lease's id may be reused by a new one).
        self.stale: weakref.WeakSet[AsyncLease[Thing]] = weakref.WeakSet()
        self.max_size = 2
        self.pool: AsyncPool[Thing] | None = None

    @initialize(max_size=st.integers(1, 3), barging=st.booleans())
    def make_pool(self, max_size: int, barging: bool) -> None:
        self.max_size = max_size
        self.barging = barging
        self.pool = AsyncPool(
            self.create,
            max_size=max_size,
            max_lifetime=None,
            max_idle=None,
            handoff_after=60.0 if barging else 0.0,
        )

    def create(self) -> Thing:
        thing = Thing()
        self.made.append(thing)
        return thing

    @property
    def p(self) -> AsyncPool[Thing]:
        assert self.pool is not None
        return self.pool

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        result = self.loop.run_until_complete(coro)
        self.settle()
        return result

    def settle(self) -> None:
        """Run the loop until no task makes progress; collect the waiters that got a lease."""
        for _ in range(50):
            before = (len(self.waiting), self.p.statistics().idle, self.p.statistics().waiting)
            self.loop.run_until_complete(asyncio.sleep(0))
            for task in [t for t in self.waiting if t.done()]:
                self.waiting.remove(task)
                self.held.append(task.result())
                self.acquired += 1
            for task in [t for t in self.cancelled if t.done()]:
                self.cancelled.remove(task)
                if not task.cancelled():  # it got the object before the cancel landed
                    self.held.append(task.result())
                    self.acquired += 1
            if (len(self.waiting), self.p.statistics().idle, self.p.statistics().waiting) == before:
                return

    async def _wait(self) -> AsyncLease[Thing]:
        return await self.p.acquire(timeout=30)

    @rule()
    def acquire_now(self) -> None:
        """With timeout=0: lent iff an object is idle or the pool may create one."""
        stats = self.p.statistics()
        can = stats.idle > 0 or stats.size < stats.max_size
        try:
            lease = self.run(self._now())
        except PoolTimeout:
            assert not can, f"timed out with {stats}"
            return
        assert can, f"lent beyond the model with {stats}"
        self.held.append(lease)
        self.acquired += 1

    async def _now(self) -> AsyncLease[Thing]:
        return await self.p.acquire(timeout=0)

    @rule()
    def start_waiter(self) -> None:
        self.waiting.append(self.loop.create_task(self._wait()))
        self.settle()

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(min_value=0), discard=st.booleans())
    def give_back(self, index: int, discard: bool) -> None:
        lease = self.held.pop(index % len(self.held))
        self.run(lease.discard() if discard else lease.release())

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(min_value=0))
    def give_back_and_take_again(self, index: int) -> None:
        """Release and acquire in one step: barging keeps the object, strict hand-off gives it away."""
        lease = self.held.pop(index % len(self.held))
        thing = lease.value
        queued = self.p.statistics().waiting

        async def again() -> AsyncLease[Thing] | None:
            await lease.release()
            try:
                return await self.p.acquire(timeout=0)
            except PoolTimeout:
                return None

        stale = lease in self.stale  # drained while lent: retired on return
        got = self.run(again())
        if queued and (stale or not self.barging):
            assert got is None  # the longest waiter got the object, or the retired one's place
            return
        assert got is not None, "the object was not taken back though nobody else was served first"
        assert (got.value is not thing) if stale else (got.value is thing)
        self.held.append(got)
        self.acquired += 1

    @precondition(lambda self: bool(self.waiting))
    @rule(index=st.integers(min_value=0))
    def cancel_waiter(self, index: int) -> None:
        task = self.waiting.pop(index % len(self.waiting))
        task.cancel()
        self.cancelled.append(task)
        self.settle()

    @precondition(lambda self: bool(self.held) and bool(self.waiting))
    @rule(index=st.integers(min_value=0), which=st.integers(min_value=0))
    def give_back_then_cancel_a_waiter(self, index: int, which: int) -> None:
        """The cancel lands after the release handed the object over, before the waiter ran."""
        lease = self.held.pop(index % len(self.held))
        task = self.waiting.pop(which % len(self.waiting))

        async def release_and_cancel() -> None:
            await lease.release()  # no suspension: the hand-off is done when this returns
            task.cancel()

        self.cancelled.append(task)
        self.run(release_and_cancel())

    @rule()
    def drain(self) -> None:
        self.stale.update(self.held)
        self.run(self.p.drain())

    @invariant()
    def consistent(self) -> None:
        if self.pool is None:
            return
        stats = self.p.statistics()
        assert stats.in_use == len(self.held)
        assert stats.size == stats.idle + stats.in_use + stats.creating, f"a slot went missing: {stats}"
        assert stats.size <= stats.max_size
        assert stats.waiting == len(self.waiting)
        assert not (stats.idle and stats.waiting), f"an object idle while a task waits: {stats}"
        assert stats.acquired == self.acquired
        values = [lease.value for lease in self.held]
        assert len({id(v) for v in values}) == len(values)  # no object in two leases
        assert all(v.closes == 0 for v in values)

    def teardown(self) -> None:
        try:
            if self.pool is not None:
                for task in self.waiting:
                    task.cancel()
                self.cancelled += self.waiting
                self.waiting = []
                self.settle()
                for lease in self.held:
                    self.loop.run_until_complete(lease.release())
                self.loop.run_until_complete(self.p.close())
                assert [t.closes for t in self.made] == [1] * len(self.made)
        finally:
            self.loop.close()


AsyncPoolMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestAsyncPoolModel = AsyncPoolMachine.TestCase
