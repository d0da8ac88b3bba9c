"""What :meth:`reclaim.leaks.Tracker.statistics` returns.

In its own module, imported on the first call: a dataclass imports :mod:`dataclasses` and
:mod:`inspect`, which the tracker (started by ``reclaim run`` before the program's first
line) does without.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TrackerStatistics"]


@dataclass(frozen=True, slots=True)
class TrackerStatistics:
    """Counters of the shared instrumentation, for debugging and tests.

    Attributes:
        running: this tracker is started.
        users: trackers (and checks) currently holding the instrumentation.
        live: records of resources that may still be open (all windows).
        collected: leaks the garbage collector closed, kept until reports are done with them.
        files: raw layers of files opened while tracking and not yet swept (open or recently closed).
    """

    running: bool
    users: int
    live: int
    collected: int
    files: int
