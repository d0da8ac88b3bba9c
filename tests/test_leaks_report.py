"""The text report: leaks alike but for their time (one line leaking in a loop) are one block."""

from __future__ import annotations

import sqlite3

import pytest

from _leakhelp import Watch, leakwatch, line

__all__ = ["leakwatch"]  # the fixture, imported for pytest


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_leaks_alike_at_one_line_are_one_block_saying_how_many(leakwatch: Watch) -> None:
    """Three connections left open at one line, one elsewhere: two blocks, the first 'x 3'."""
    kept: list[sqlite3.Connection] = []
    try:
        kept.extend(sqlite3.connect(":memory:") for _ in range(3))
        at = line() - 1
        other = sqlite3.connect(":memory:")
        kept.append(other)
        found = leakwatch.leaks("sqlite3")
        assert len(found) == 4
        text = leakwatch.tracker.report(found).to_text()
    finally:
        for connection in kept:
            connection.close()
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 2, text
    assert blocks[0].splitlines()[0] == "sqlite3 :memory: x 3 (all alike but for their time)", text
    assert f"test_leaks_report.py:{at} " in blocks[0], text
    assert " x " not in blocks[1].splitlines()[0], text
