"""reclaim.Pool under real threads: FIFO fairness, bounds under contention, barging mode."""

from __future__ import annotations

import threading
import time

import pytest

from helpers import eventually
from pool_support import queued_waiter
from reclaim import Pool, PoolTimeout


class Thing:
    """A pooled object that notices when two threads hold it at once."""

    def __init__(self) -> None:
        self.holders = 0
        self.overlaps = 0
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def test_a_returned_object_goes_to_the_longest_waiter() -> None:
    """Order of service equals order of arrival."""
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None) as pool:
        first = pool.acquire()
        served: list[int] = []

        def wait(number: int) -> None:
            with pool.acquire(timeout=30):
                served.append(number)

        threads = []
        for number in range(6):
            thread = threading.Thread(target=wait, args=(number,))
            thread.start()
            threads.append(thread)
            eventually(lambda n=number: pool.statistics().waiting == n + 1, f"waiter {number} queued")
        first.release()
        for thread in threads:
            thread.join()
        assert served == list(range(6))


def test_a_releasing_thread_cannot_barge_ahead_of_waiters() -> None:
    """With handoff_after=0 every release hands off at once."""
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0) as pool:
        lease = pool.acquire()
        checked = threading.Event()
        waiter, got = _queue_waiter(pool, checked)
        lease.release()
        with pytest.raises(PoolTimeout):
            pool.acquire(timeout=0)  # the object was handed to the waiter, not left idle
        checked.set()
        waiter.join()
        assert got.is_set()


def test_a_waiter_older_than_handoff_after_is_handed_the_object() -> None:
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0.005) as pool:
        lease = pool.acquire()
        checked = threading.Event()
        waiter, got = _queue_waiter(pool, checked)
        oldest = pool._waiters[0]
        eventually(lambda: time.monotonic() - oldest.since >= 0.005, "waiter older than handoff_after")
        lease.release()
        with pytest.raises(PoolTimeout):
            pool.acquire(timeout=0)
        checked.set()
        waiter.join()
        assert got.is_set()


def test_a_young_waiter_collects_an_object_left_idle() -> None:
    """Released while every waiter was young, and no other release follows: the waiter still gets it."""
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0.05) as pool:
        lease = pool.acquire()
        done = threading.Event()

        def wait() -> None:
            with pool.acquire(timeout=30):
                done.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
        lease.release()  # most likely kept idle: the waiter is younger than 50 ms
        waiter.join()
        assert done.is_set()


class _Clock:
    """pool's clock, moved by the test: holds and waiter ages are exactly what it says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    from reclaim.pool import _sync, _wait

    fake = _Clock()
    monkeypatch.setattr(_sync, "_monotonic", fake)
    monkeypatch.setattr(_wait, "_monotonic", fake)
    return fake


def _queue_waiter(
    pool: Pool[Thing], keep_until: threading.Event | None = None
) -> tuple[threading.Thread, threading.Event]:
    """A thread queued in ``pool.acquire``, and an Event set once it holds the object, which it
    keeps until *keep_until* is set: a test that then finds the pool empty must not find the
    object back in it because the waiter already ran its with-block (as it may while the test's
    thread is descheduled right after its release)."""
    got = threading.Event()

    def wait() -> None:
        with pool.acquire(timeout=30):
            got.set()
            if keep_until is not None:
                assert keep_until.wait(30), "the test never let the waiter go"

    thread = threading.Thread(target=wait)
    thread.start()
    eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
    return thread, got


def test_long_holds_end_the_patience_a_young_waiter_is_handed_the_object(clock: _Clock) -> None:
    """Borrowers that keep objects long (a network round trip) gain nothing from keeping a
    returned object from a young waiter, and the waiter's early wake-ups cost a third of the
    throughput (PostgreSQL, 16 threads on 4 connections): after long holds, hand off at once."""
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0.001) as pool:
        lease = pool.acquire()
        first, got_first = _queue_waiter(pool)
        clock.now += 1.0  # held one second while a caller waited
        lease.release()
        first.join()
        assert got_first.is_set()

        lease = pool.acquire()
        checked = threading.Event()
        second, got_second = _queue_waiter(pool, checked)
        assert pool._waiters[0].timed is False  # it sleeps until handed an object
        lease.release()  # the waiter is younger than handoff_after (no time passed)
        with pytest.raises(PoolTimeout):
            pool.acquire(timeout=0)  # handed over, not kept for this thread
        checked.set()
        second.join()
        assert got_second.is_set()


def test_short_holds_keep_the_patience_the_releasing_thread_may_take_it_again(
    clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short holds (in-process work, sqlite): a release keeps its object from a waiter younger
    than handoff_after, saving a thread switch; the waiter wakes at that age to collect it."""
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0.001) as pool:
        lease = pool.acquire()
        # The waiter's nap is handoff_after of real time (1 ms): held between queueing and
        # sleeping (it starts the maintenance thread there) so that it has not looked yet.
        go = threading.Event()
        monkeypatch.setattr(pool, "_ensure_worker", lambda: go.wait(30))
        waiter, got = _queue_waiter(pool)
        assert pool._waiters[0].timed is True
        lease.release()  # held no time at all, the waiter is young: kept idle
        again = pool.acquire(timeout=0)  # this thread takes it back without waiting
        again.release()
        go.set()
        waiter.join()  # the waiter, asleep in steps, finds it idle
        assert got.is_set()


def test_a_waiter_whose_timeout_ends_first_still_takes_an_idle_object(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=3600) as pool:
        lease = pool.acquire()
        done = threading.Event()
        # Held between queueing and sleeping (it starts the maintenance thread there) until the
        # release below: a test thread slower than the 50 ms timeout must not time it out first.
        go = threading.Event()
        monkeypatch.setattr(pool, "_ensure_worker", lambda: go.wait(30))

        def wait() -> None:
            with pool.acquire(timeout=0.05):
                done.set()

        waiter = threading.Thread(target=wait)
        waiter.start()
        eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
        lease.release()  # kept idle: the waiter is younger than an hour
        go.set()
        waiter.join()
        assert done.is_set()


@pytest.mark.parametrize("fair", [True, False], ids=["fair", "barging"])
def test_contention_keeps_the_bound_and_never_shares_an_object(fair: bool) -> None:
    made: list[Thing] = []
    lock = threading.Lock()

    def create() -> Thing:
        thing = Thing()
        with lock:
            made.append(thing)
        return thing

    pool = Pool(create, max_size=3, fair=fair, max_lifetime=None, max_idle=None)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work() -> None:
        try:
            start.wait()
            for i in range(300):
                with pool.acquire(timeout=30) as thing:
                    thing.holders += 1
                    if thing.holders > 1:
                        thing.overlaps += 1
                    if i % 50 == 0:
                        time.sleep(0)  # let another thread run while holding
                    thing.holders -= 1
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stats = pool.statistics()
    pool.close()
    assert errors == []
    assert len(made) <= 3
    assert sum(t.overlaps for t in made) == 0
    assert stats.acquired == 8 * 300
    assert stats.in_use == 0
    assert stats.size == len(made)
    assert [t.closes for t in made] == [1] * len(made)


def test_barging_mode_serves_every_waiter() -> None:
    """With fair=False a waiter that keeps losing is handed an object directly: no starvation."""
    with Pool(Thing, max_size=1, fair=False, max_lifetime=None, max_idle=None) as pool:
        lease = pool.acquire()
        done: list[int] = []

        def wait(number: int) -> None:
            with pool.acquire(timeout=30):
                done.append(number)

        threads = [threading.Thread(target=wait, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        eventually(lambda: pool.statistics().waiting == 4, "waiters queued")
        lease.release()
        for thread in threads:
            thread.join()
        assert sorted(done) == [0, 1, 2, 3]


def test_timeouts_under_contention_leave_no_waiter_behind() -> None:
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None) as pool:
        lease = pool.acquire()
        outcomes: list[str] = []

        def wait() -> None:
            try:
                with pool.acquire(timeout=0.01):
                    outcomes.append("got")
            except PoolTimeout:
                outcomes.append("timeout")

        threads = [threading.Thread(target=wait) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert outcomes == ["timeout"] * 5
        stats = pool.statistics()
        assert (stats.waiting, stats.timeouts) == (0, 5)
        lease.release()
        with pool.acquire(timeout=0):
            pass


def test_a_waiter_creates_when_a_discard_frees_capacity() -> None:
    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None) as pool:
        lease = pool.acquire()
        old = lease.value
        waiter, got = queued_waiter(pool)
        lease.discard()
        waiter.join()
        assert got[0] is not old
        assert old.closes == 1


def test_a_waiter_come_of_age_before_it_sleeps_collects_what_a_release_kept_for_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A release keeps its object for a young waiter, which collects it at its patience age; a
    waiter that reached that age before it went to sleep (its thread descheduled between
    queueing and sleeping) must look at once, not sleep to its deadline beside the object."""
    import reclaim.pool._wait as wait_module

    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=60) as pool:
        held = pool.acquire()
        first = held.value
        released = threading.Event()
        # Between queueing and sleeping the waiter starts the maintenance thread: held here
        # until the release below, after which its clock says it is of age.
        monkeypatch.setattr(pool, "_ensure_worker", lambda: released.wait(30))
        monkeypatch.setattr(wait_module, "_monotonic", lambda: time.monotonic() + 120)
        waiter, got = queued_waiter(pool, timeout=600)
        held.release()  # kept idle: the waiter is young by the pool's clock
        released.set()
        waiter.join(30)
        assert got == [first]


def test_a_release_that_read_its_clock_before_the_waiter_came_of_age_still_hands_it_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A release reads the clock, then runs reset (which may do I/O) before taking the lock. If
    the young waiter comes of age meanwhile, looks (nothing idle yet) and goes back to sleep,
    the release must hand the object over, not keep it idle by its stale clock reading: the
    waiter sleeps to its deadline beside it otherwise."""
    import reclaim.pool._wait as wait_module

    looked = threading.Event()
    reads = [0]

    def waiter_clock() -> float:
        reads[0] += 1  # only the waiter's thread reads this clock here
        if reads[0] == 2:  # its second read: its one look is done, it goes to sleep untimed
            looked.set()
        return time.monotonic()

    def reset(thing: Thing) -> None:
        if threading.current_thread() is threading.main_thread():  # the release below
            assert looked.wait(30), "the waiter never took its look"

    with Pool(Thing, max_size=1, max_lifetime=None, max_idle=None, handoff_after=0.05, reset=reset) as pool:
        held = pool.acquire()
        first = held.value
        monkeypatch.setattr(wait_module, "_monotonic", waiter_clock)
        waiter, got = queued_waiter(pool, timeout=600)
        # Reads its clock at once (the waiter is young by it), then waits in reset for the
        # waiter's look: if main was held up past 50 ms, the waiter is old and takes it anyway.
        held.release()
        waiter.join(30)
        assert got == [first]
