"""billiard (Celery's fork of multiprocessing): its process-wide machinery is its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_prog

pytest.importorskip("billiard")

# A shared value lives in billiard's heap: an arena (a descriptor of an unlinked file, and its
# mmap) kept for the whole process and reused by the next value, as multiprocessing's heap does.
SHARED_VALUE = """\
    import billiard

    counter = billiard.Value("i", 0)
    counter.value += 1
    del counter
    print(billiard.RawArray("i", 4)[:])
"""


def test_billiard_heap_arenas_are_its_own(tmp_path: Path) -> None:
    """A shared value's arena, kept by billiard's heap for the process, is not the program's leak."""
    result = reclaim_run_prog(tmp_path, SHARED_VALUE, "--fail")
    assert result.stdout == "[0, 0, 0, 0]\n"
    assert "reclaim: no leaks" in result.stderr, result.stderr
