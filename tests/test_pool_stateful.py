"""A model-based test: hypothesis drives real threads through a Pool's operations and checks invariants.

Every operation runs on a thread of its own (acquires and releases cross
threads, as in a server), and a "burst" step runs several threads at once.
After every step: in-use + idle <= max_size (or the in-use count when a resize
went below it), no object is in two leases, statistics agree with the model.
At the end every created object has been closed exactly once.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from reclaim import Lease, Pool, PoolClosed, PoolTimeout


class Thing:
    ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(Thing.ids)
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def on_thread(fn: Callable[[], Any]) -> Any:
    """Run *fn* on a new thread and return its result (or raise its exception) here."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.made: list[Thing] = []
        self.made_lock = threading.Lock()
        self.max_size = 3
        self.pool: Pool[Thing] = Pool(self.create, max_size=self.max_size, max_lifetime=None, max_idle=None)
        self.held: list[Lease[Thing]] = []
        self.acquired = 0
        self.closed = False

    def create(self) -> Thing:
        thing = Thing()
        with self.made_lock:
            self.made.append(thing)
        return thing

    @precondition(lambda self: not self.closed)
    @rule()
    def acquire(self) -> None:
        if len(self.held) >= self.pool.statistics().max_size:
            try:
                on_thread(lambda: self.pool.acquire(timeout=0))
            except PoolTimeout:
                return
            raise AssertionError("acquire beyond max_size did not time out")
        self.held.append(on_thread(lambda: self.pool.acquire(timeout=5)))
        self.acquired += 1

    @precondition(lambda self: self.closed)
    @rule()
    def acquire_after_close(self) -> None:
        try:
            on_thread(lambda: self.pool.acquire(timeout=0))
        except PoolClosed:
            return
        raise AssertionError("acquire after close did not raise PoolClosed")

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(min_value=0), discard=st.booleans())
    def give_back(self, index: int, discard: bool) -> None:
        lease = self.held.pop(index % len(self.held))
        on_thread(lease.discard if discard else lease.release)

    @precondition(lambda self: not self.closed)
    @rule(threads=st.integers(min_value=2, max_value=5), rounds=st.integers(1, 20))
    def burst(self, threads: int, rounds: int) -> None:
        errors: list[BaseException] = []
        done = [0]
        count_lock = threading.Lock()

        def work() -> None:
            try:
                for _ in range(rounds):
                    with self.pool.acquire(timeout=10), count_lock:
                        done[0] += 1
            except BaseException as exc:
                errors.append(exc)

        free = self.pool.statistics().max_size - len(self.held)
        if free <= 0:
            return
        workers = [threading.Thread(target=work) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        assert errors == []
        self.acquired += done[0]

    @precondition(lambda self: not self.closed)
    @rule(new_max=st.integers(min_value=1, max_value=5))
    def resize(self, new_max: int) -> None:
        new_max = max(new_max, len(self.held))
        on_thread(lambda: self.pool.resize(min_size=0, max_size=new_max))
        self.max_size = new_max

    @precondition(lambda self: not self.closed)
    @rule()
    def drain(self) -> None:
        on_thread(self.pool.drain)

    @precondition(lambda self: not self.closed)
    @rule()
    def close(self) -> None:
        on_thread(lambda: self.pool.close(timeout=0))
        self.closed = True

    @invariant()
    def bounded_and_consistent(self) -> None:
        stats = self.pool.statistics()
        assert stats.in_use == len(self.held)
        assert stats.size == stats.idle + stats.in_use + stats.creating, f"a slot went missing: {stats}"
        assert stats.in_use + stats.idle <= max(stats.max_size, len(self.held))
        assert stats.size <= max(stats.max_size, len(self.held))
        assert stats.waiting == 0
        assert stats.creating == 0
        assert stats.acquired == self.acquired
        assert stats.created == len(self.made)
        values = [lease.value for lease in self.held]
        assert len({id(v) for v in values}) == len(values)  # no object in two leases
        assert all(v.closes == 0 for v in values)  # nobody holds a closed object
        if self.closed:
            assert stats.idle == 0

    def teardown(self) -> None:
        for lease in self.held:
            lease.release()
        self.pool.close()
        assert [t.closes for t in self.made] == [1] * len(self.made)


PoolMachine.TestCase.settings = settings(
    max_examples=30,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestPoolModel = PoolMachine.TestCase
