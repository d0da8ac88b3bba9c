"""A SharedMemory is reported as itself: not closed, or made and never unlinked, at the line that made it."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import reclaim_run_json

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX shared memory only")

#: What every not-unlinked entry ends with.
UNLINK = "the segment lives on after close(), until the resource tracker's clean-up at exit)"


def _run(tmp_path: Path, source: str) -> tuple[list[Any], str]:
    """Run *source*; unlink every segment the report names (before any assertion can fail)."""
    report, stderr = reclaim_run_json(tmp_path, source)
    posixshmem = pytest.importorskip("_posixshmem")
    for leak in report["leaks"]:
        if leak["kind"] == "sharedmemory":
            # The program's resource tracker may unlink it first (3.11-3.13 do at its exit).
            with contextlib.suppress(FileNotFoundError):
                posixshmem.shm_unlink("/" + leak["details"]["name"])
    return report["leaks"], stderr


# Made at line 2, closed, never unlinked; made at line 5 in a function, closed, then dropped.
CLOSED_NOT_UNLINKED = """\
    from multiprocessing import shared_memory
    kept = shared_memory.SharedMemory(create=True, size=4096)
    kept.close()
    def drop():
        gone = shared_memory.SharedMemory(create=True, size=100)
        gone.close()
    drop()
"""


def test_a_segment_closed_but_never_unlinked_is_reported_at_the_line_that_made_it(tmp_path: Path) -> None:
    """Its segment is left to the resource tracker, whether the closed handle is kept or dropped."""
    leaks, stderr = _run(tmp_path, CLOSED_NOT_UNLINKED)
    assert [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in leaks] == [
        ("sharedmemory", "open", 2),
        ("sharedmemory", "open", 5),
    ], stderr
    first = leaks[0]
    name = first["details"]["name"]
    assert first["description"] == f"SharedMemory {name!r} (4096 bytes) not unlinked (unlink(): {UNLINK}"
    assert first["details"]["created"] is True and first["details"]["handle"] == "closed"


# Never closed at line 2; a ShareableList at line 3; made at line 5, dropped unclosed and not unlinked.
NEVER_CLOSED = """\
    from multiprocessing import shared_memory
    left = shared_memory.SharedMemory(create=True, size=4096)
    items = shared_memory.ShareableList([1, 2, 3])
    def drop():
        shared_memory.SharedMemory(create=True, size=100)
    drop()
"""


def test_a_segment_never_closed_is_one_entry_not_its_mmap(tmp_path: Path) -> None:
    """Its map and descriptor are part of it; one dropped unclosed was closed by the garbage collector."""
    leaks, stderr = _run(tmp_path, NEVER_CLOSED)
    assert [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in leaks] == [
        ("sharedmemory", "open", 2),
        ("sharedmemory", "open", 3),
        ("sharedmemory", "collected", 5),
    ], stderr
    left, _, dropped = leaks
    assert left["description"].endswith(
        f"(4096 bytes) not closed and not unlinked (close(), then unlink(): {UNLINK}"
    )
    assert dropped["closed_by_gc"] is True
    assert dropped["description"].endswith(f"(100 bytes) not closed, not unlinked (unlink(): {UNLINK}")


# Closed and unlinked (either order); attached with create=False and closed; a ShareableList released;
# segments a SharedMemoryManager made in its with-block (it unlinks them at shutdown).
RELEASED = """\
    from multiprocessing import shared_memory
    from multiprocessing.managers import SharedMemoryManager
    made = shared_memory.SharedMemory(create=True, size=64)
    attached = shared_memory.SharedMemory(made.name)
    attached.close()
    made.close()
    made.unlink()
    other = shared_memory.SharedMemory(create=True, size=64)
    other.unlink()
    other.close()
    items = shared_memory.ShareableList([1, 2, 3])
    items.shm.close()
    items.shm.unlink()
    with SharedMemoryManager() as manager:
        block = manager.SharedMemory(128)
        listed = manager.ShareableList(range(10))
"""


def test_segments_released_or_made_by_a_manager_report_nothing(tmp_path: Path) -> None:
    """Attached needs only close(); a SharedMemoryManager's segments are its own, not separate mmaps."""
    leaks, stderr = _run(tmp_path, RELEASED)
    assert leaks == [], stderr
