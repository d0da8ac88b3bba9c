"""Helpers for the leak tracker's tests: the line a statement runs on, and leaks of one kind."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from reclaim.leaks import Leak, Snapshot, Tracker

# A leak test leaks on purpose; the objects it then drops make Python warn while the garbage
# collector runs, and pytest turns those warnings into unraisable-exception warnings.
ignore_gc_warnings = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


def line() -> int:
    """The line number of the statement that calls this (put it on the acquiring line)."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


@dataclass
class Watch:
    """A running tracker and the snapshot a test's window starts at."""

    tracker: Tracker
    mark: Snapshot

    def leaks(self, kind: str | None = None, **options: object) -> list[Leak]:
        """Leaks found since the mark (of *kind* when given)."""
        found = self.tracker.leaks(self.mark, **options)  # type: ignore[arg-type]
        return [leak for leak in found if kind is None or leak.kind == kind]

    def one(self, kind: str, **options: object) -> Leak:
        """The single leak of *kind*; fails listing everything when there is not exactly one."""
        found = self.leaks(kind, **options)
        assert len(found) == 1, [leak.headline() for leak in self.leaks(**options)]
        return found[0]


@pytest.fixture
def leakwatch() -> Iterator[Watch]:
    """A running tracker and the snapshot this test's window starts at; stopped afterwards."""
    tracker = Tracker().start()
    try:
        yield Watch(tracker, tracker.snapshot())
    finally:
        tracker.stop()
