"""watchdog: an observer never stopped, or an inotify reader left with its descriptors open, is
one entry at the program's line."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line
from reclaim.leaks import _kinds

inotify_c = pytest.importorskip(
    "watchdog.observers.inotify_c", reason="watchdog's inotify observer is Linux's"
)
if not hasattr(inotify_c, "InotifyFD"):
    pytest.skip("a watchdog without InotifyFD (before 7.0)", allow_module_level=True)
from watchdog.events import FileSystemEvent, FileSystemEventHandler  # noqa: E402 - after the skip
from watchdog.observers.inotify import InotifyObserver  # noqa: E402
from watchdog.observers.polling import PollingObserver  # noqa: E402

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


class Seen(FileSystemEventHandler):
    """Sets ``seen`` at the first event: the observer's threads are running by then."""

    def __init__(self) -> None:
        self.seen = threading.Event()

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.seen.set()


class Ignored:
    """An ``InotifyFD`` watch callback (watchdog's ``WatchCallback``) that does nothing."""

    def on_event(self, event: object) -> None:
        pass

    def on_watch_deleted(self, wd: object) -> None:
        pass

    def on_queue_overflow(self) -> None:
        pass

    def on_events_lost(self) -> None:
        pass


def running(observer: Any, directory: Path, handler: Seen) -> None:
    """Wait until *observer*, started, delivered an event from *directory*: its reader reads.

    watchdog closes an ``InotifyFD``'s descriptors on its reader thread only: stopped before
    that thread read once, it leaves them open for good (see test_a_reader_closed_before_it_read).
    """
    (directory / "touched").write_text("x")
    assert handler.seen.wait(timeout=30), "the observer delivered no event"


def shut(observer: Any) -> None:
    observer.stop()
    observer.join(timeout=30)
    assert not observer.is_alive()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_reader_closed_before_it_read_is_one_entry_at_its_line(leakwatch: Watch, tmp_path: Path) -> None:
    """watchdog's ``close()`` on an ``InotifyFD`` whose reader never read leaves its inotify
    descriptor and wake-up pipe open: one ``watchdog`` entry at the line that made it, which
    says so, not two pipe descriptors at watchdog's line and an untracked one at <unknown>."""
    reader = inotify_c.InotifyFD()
    at = line() - 1
    try:
        reader.add_callback(os.fsencode(tmp_path), inotify_c.InotifyConstants.IN_CREATE, Ignored(), 1)
        reader.close()
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("watchdog", "open")
        assert_site(leak, at)
        assert leak.details["paths"] == [str(tmp_path)]
        assert f"watching {tmp_path}" in leak.description
        assert "closed, but its descriptors were left open" in leak.description
        assert leak.details["fd"] == reader._inotify_fd
        # Nothing of watchdog's will close them now: a check's grace period does not wait for it.
        assert not _kinds.kind_of("watchdog").worth_waiting_for(leak.details)
    finally:
        reader._close_resources()  # what watchdog's reader thread would have done
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_inotify_observer_never_stopped_is_one_entry_holding_its_parts(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Its thread, its emitter's, its reader's and dispatcher's, its inotify descriptor and pipe
    were six entries at watchdog's lines (and "<unknown>"): one now, the observer at the line that
    started it, with its emitter's thread and its reader (at ``schedule()``'s line) under it."""
    handler = Seen()
    observer = InotifyObserver()
    observer.schedule(handler, str(tmp_path))
    scheduled = line() - 1
    observer.start()
    started = line() - 1
    try:
        running(observer, tmp_path, handler)
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("watchdog", "open")
        assert_site(leak, started)
        observed = f"watchdog.observers.inotify.InotifyObserver watching {tmp_path}"
        assert leak.description == f"{observed} not stopped (stop(), then join())"
        held = {part.kind: part for part in leak.holds}
        assert sorted(held) == ["thread", "watchdog"]
        assert held["thread"].details["target"] == "InotifyEmitter.run"
        reader = held["watchdog"]
        assert_site(reader, scheduled)
        assert "its reader thread still running" in reader.description
        assert [part.details["target"] for part in reader.holds] == ["InotifyFD.run"]
        # Stopped, not yet joined, an observer and its reader end by themselves: waited for.
        assert _kinds.kind_of("watchdog").worth_waiting_for(leak.details)
        assert _kinds.kind_of("watchdog").worth_waiting_for(reader.details)
    finally:
        shut(observer)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_polling_observer_never_stopped_holds_its_emitter(leakwatch: Watch, tmp_path: Path) -> None:
    """Any observer: a polling one is its thread and an emitter's, one entry."""
    observer = PollingObserver(timeout=0.05)
    observer.schedule(FileSystemEventHandler(), str(tmp_path))
    observer.start()
    started = line() - 1
    try:
        [leak] = leakwatch.leaks()
        assert leak.kind == "watchdog"
        assert_site(leak, started)
        assert [part.details["target"] for part in leak.holds] == ["PollingEmitter.run"]
    finally:
        shut(observer)
    assert leakwatch.leaks() == []


def test_an_observer_stopped_and_joined_leaks_nothing(leakwatch: Watch, tmp_path: Path) -> None:
    """Stopped once its reader read, an observer closes everything: nothing to report."""
    handler = Seen()
    observer = InotifyObserver()
    observer.schedule(handler, str(tmp_path))
    observer.start()
    try:
        running(observer, tmp_path, handler)
    finally:
        shut(observer)
    assert leakwatch.leaks() == []


class Created(Ignored):
    """Sets ``created`` at the first inotify event: its reader read."""

    def __init__(self) -> None:
        self.created = threading.Event()

    def on_event(self, event: object) -> None:
        self.created.set()


def test_the_reader_shared_by_the_process_is_watchdogs_own(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``InotifyFD.get_instance()`` starts one reader every emitter not handed one shares, for the
    rest of the process: its thread and its inotify descriptor were reported at the line of the
    program's first emitter, as if the program had left them running."""
    monkeypatch.setattr(inotify_c.InotifyFD, "_instance", None)  # as at the first call
    reader = inotify_c.InotifyFD.get_instance()
    try:
        assert leakwatch.leaks() == []
    finally:
        # Let it read once, so that stopping it closes its descriptors (see running()).
        created = Created()
        reader.add_callback(os.fsencode(tmp_path), inotify_c.InotifyConstants.IN_CREATE, created, 1)
        (tmp_path / "touched").write_text("x")
        assert created.created.wait(timeout=30), "the reader read no event"
        reader.stop()
        reader.join(timeout=30)
    assert not reader.is_alive()
