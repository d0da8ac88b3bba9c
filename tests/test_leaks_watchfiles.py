"""watchfiles: the descriptors its Rust watcher opens (and closes on its own thread) are its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import Watch, leakwatch, reclaim_run_json

watchfiles_main = pytest.importorskip("watchfiles.main")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


def test_a_watchers_descriptors_are_not_reported_as_untracked(leakwatch: Watch, tmp_path: Path) -> None:
    """Its inotify, epoll and eventfd descriptors are opened in Rust, unseen by any hook; they
    close on the watcher's thread a moment after the program closed it, so they were reported
    as untracked, now and then, at the end of a correct program. Checked while it runs: that
    is when the same descriptors were reported, every time."""
    watcher = watchfiles_main.RustNotify([str(tmp_path)], False, False, 0, True, False)
    try:
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        watcher.close()


def test_a_watcher_made_from_the_extension_directly_is_its_too(leakwatch: Watch, tmp_path: Path) -> None:
    """watchfiles' own tests make ``RustNotify`` from ``watchfiles._rust_notify``, not through
    ``watch()``: its descriptors were untracked leaks whenever the check came before its thread
    closed them (12 to 18 tests of 30)."""
    from watchfiles._rust_notify import RustNotify

    watcher = RustNotify([str(tmp_path)], False, False, 0, True, False)
    try:
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        watcher.close()


# A watch loop stopped by its stop_event as the program ends, then a file left open at line 12.
PROGRAM = """\
    import os
    import threading
    from watchfiles import watch

    directory = os.environ["WATCHED"]
    stop = threading.Event()
    with open(os.path.join(directory, "a"), "w") as f:
        f.write("x")
    for changes in watch(directory, stop_event=stop, rust_timeout=50, yield_on_timeout=True):
        stop.set()
    # the watch loop's descriptors are still closing on its thread: only this file is a leak
    kept = open(os.path.join(directory, "a"))
"""


def test_a_program_that_stops_its_watch_loop_reports_only_its_own_leak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher's descriptors, closing on its thread after the loop ended, are not reported;
    the file the program left open is, at its line."""
    watched = tmp_path / "watched"
    watched.mkdir()
    monkeypatch.setenv("WATCHED", str(watched))
    report, stderr = reclaim_run_json(tmp_path, PROGRAM)
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("file", 12)], stderr
