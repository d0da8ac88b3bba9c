"""filelock (py-filelock): a lock left held is one ``filelock`` leak at the program's line, its
descriptor part of it, judged by that descriptor and not by ``is_locked`` (thread-local)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import (
    Watch,
    assert_site,
    ignore_gc_warnings,
    leakwatch,
    line,
    reclaim_pytest,
    reclaim_run_prog,
)

filelock = pytest.importorskip("filelock")

pytest_plugins = ["pytester"]

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

#: The sync locks a program takes, by the name it takes them under: the platform's (a
#: ``UnixFileLock`` here), the soft one (an exclusive marker file), and where filelock has them,
#: the strict soft lock and the lease (whose hold runs a heartbeat thread, part of the hold).
SYNC_LOCKS = [
    name
    for name in ("FileLock", "SoftFileLock", "StrictSoftFileLock", "SoftFileLease")
    if hasattr(filelock, name)
]

#: The async locks, where this filelock has them (3.15 on).
ASYNC_LOCKS = [name for name in ("AsyncFileLock", "AsyncSoftFileLock") if hasattr(filelock, name)]


def _make(name: str, path: Path, **options: Any) -> Any:
    return getattr(filelock, name)(str(path), **options)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("name", SYNC_LOCKS)
def test_a_lock_left_held_is_one_filelock_leak_at_the_programs_line(
    leakwatch: Watch, tmp_path: Path, name: str
) -> None:
    """Not a bare fd opened at filelock's lines (the program's last, or cut off): one entry,
    at the line that took it, saying which lock on which file; its descriptor is not reported
    again, as an fd or as an untracked one (nor a lease's heartbeat thread, as a thread)."""
    path = tmp_path / "x.lock"
    lock = _make(name, path)
    lock.acquire()
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["filelock"], leakwatch.records()
        leak = leakwatch.one("filelock")
        assert_site(leak, at)
        assert leak.description == f"filelock.{name} {path} held"
        assert leak.details["path"] == str(path)
        assert leak.state == "open"
    finally:
        lock.release()
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("name", SYNC_LOCKS)
def test_a_warning_acquire_issues_names_the_programs_line_not_reclaims(
    leakwatch: Watch, tmp_path: Path, name: str
) -> None:
    """filelock warns of ``acquire(poll_intervall=...)`` with a *stacklevel* that names its
    caller's line: reclaim's wrapper in between is passed over, as it is not there without
    reclaim (filelock's own test of the warning failed under ``--reclaim``)."""
    lock = getattr(filelock, name)(str(tmp_path / f"{name}.lock"))
    try:
        with pytest.warns(DeprecationWarning, match="poll_interval") as caught:
            lock.acquire(poll_intervall=0.01)
        at = line() - 1
    finally:
        lock.release()
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, at)]
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("name", SYNC_LOCKS)
def test_acquire_and_release_pairs_with_blocks_and_nested_acquires_leave_nothing(
    leakwatch: Watch, tmp_path: Path, name: str
) -> None:
    lock = _make(name, tmp_path / "x.lock")
    lock.acquire()
    lock.release()
    with lock, lock, lock.acquire():  # nested: the counter goes to 3 and back
        pass
    with lock.acquire(timeout=0):
        pass
    assert not lock.is_locked
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_reentrant_lock_is_held_from_its_first_acquire_until_its_counter_is_back_at_zero(
    leakwatch: Watch, tmp_path: Path
) -> None:
    lock = filelock.FileLock(str(tmp_path / "x.lock"))
    lock.acquire()
    at = line() - 1
    try:
        lock.acquire()
        lock.acquire()
        lock.release()
        assert lock.lock_counter == 2
        assert_site(leakwatch.one("filelock"), at)  # still the first acquire's, and one entry
        lock.release()
        assert_site(leakwatch.one("filelock"), at)
    finally:
        lock.release()
    assert leakwatch.leaks() == []
    lock.acquire()
    lock.acquire()
    lock.release(force=True)  # every level at once
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_thread_local_lock_held_by_another_thread_is_reported_held(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """``is_locked`` read from the checking thread says False (filelock's locks are thread-local
    by default): the descriptor says it is held, and by which thread, at that thread's line."""
    lock = filelock.FileLock(str(tmp_path / "x.lock"))
    taken, done = threading.Event(), threading.Event()
    where: list[int] = []

    def hold() -> None:
        lock.acquire()
        where.append(line() - 1)
        taken.set()
        done.wait()
        lock.release()

    worker = threading.Thread(target=hold, name="holder")
    worker.start()
    try:
        assert taken.wait(timeout=30)
        assert not lock.is_locked  # this thread's view: not what decides
        leak = leakwatch.one("filelock")
        assert_site(leak, where[0])
        assert leak.thread == "holder"
        assert leak.state == "open"
    finally:
        done.set()
        worker.join(timeout=30)
    assert leakwatch.leaks() == []


def test_a_lock_shared_between_threads_released_by_another_thread_leaves_nothing(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """With ``thread_local=False`` one hold is the lock's, whichever thread gives it back; a
    second thread's acquire while it is held only counts (no second entry)."""
    lock = filelock.FileLock(str(tmp_path / "x.lock"), thread_local=False)
    lock.acquire()
    counted = threading.Thread(target=lock.acquire)
    counted.start()
    counted.join(timeout=30)
    assert len(leakwatch.leaks("filelock")) == 1
    for _ in range(2):
        releaser = threading.Thread(target=lock.release)
        releaser.start()
        releaser.join(timeout=30)
    assert not lock.is_locked
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", ["last reference", "reference cycle"])
@pytest.mark.parametrize("name", SYNC_LOCKS)
def test_a_lock_dropped_while_held_is_reported_as_released_by_the_garbage_collector(
    leakwatch: Watch, tmp_path: Path, name: str, dropped: str
) -> None:
    """filelock's ``__del__`` releases it (``release(force=True)``): the collector, not the
    program, gave it back, reported as a file dropped open is, once, at the line that took it
    (the collector may clear the cycle before that ``__del__`` runs: the same)."""
    lock = _make(name, tmp_path / "x.lock")
    lock.acquire()
    at = line() - 1
    if dropped == "reference cycle":
        lock.me = lock
    del lock
    gc.collect()
    assert [leak.kind for leak in leakwatch.leaks()] == ["filelock"], leakwatch.records()
    leak = leakwatch.one("filelock")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc
    assert leak.description == f"filelock.{name} {tmp_path / 'x.lock'}"  # held no more


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_descriptor_a_release_failed_to_close_is_one_fd_entry_at_the_line_that_took_the_lock(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``release()`` unlocks, then closes the descriptor; when that close fails (filelock's own
    tests inject it) the descriptor outlives the lock. It was two entries: the hold "released
    by its finalizer", which released nothing, and the same descriptor untracked."""
    lock = filelock.FileLock(str(tmp_path / "x.lock"))
    lock.acquire()
    at = line() - 1
    [fd] = [leak.details["fd"] for leak in leakwatch.leaks("filelock")]

    def failing_close(fd: int) -> None:
        raise OSError(errno.EIO, "injected")

    with monkeypatch.context() as patched:
        patched.setattr(os, "close", failing_close)
        with contextlib.suppress(OSError):
            lock.release()
    del lock  # of its last reference: its __del__ finds nothing held
    try:
        leak = leakwatch.one("fd")
        assert_site(leak, at)
        assert leak.state == "open" and leak.details["fd"] == fd
        assert leak.description.endswith("(filelock.FileLock's lock file, left open when the lock was gone)")
        assert [found.kind for found in leakwatch.leaks()] == ["fd"]
    finally:
        os.close(fd)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_soft_lock_left_held_keeps_its_marker_and_is_reported(leakwatch: Watch, tmp_path: Path) -> None:
    """A SoftFileLock is held while its marker file exists: reported until its release removes it."""
    path = tmp_path / "x.lock"
    lock = filelock.SoftFileLock(str(path))
    lock.acquire()
    at = line() - 1
    try:
        assert path.exists()
        assert_site(leakwatch.one("filelock"), at)
    finally:
        lock.release()
    assert not path.exists()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("name", ASYNC_LOCKS)
def test_an_async_lock_left_held_is_one_leak_at_the_awaiting_line(
    leakwatch: Watch, tmp_path: Path, name: str
) -> None:
    """Its descriptor is opened in an executor's worker thread; the hold is the task's, at the
    line that awaited ``acquire()``. ``async with`` and an awaited release leave nothing."""
    path = tmp_path / "x.lock"
    where: list[int] = []

    async def main() -> None:
        lock = _make(name, path)
        async with lock:
            pass
        await lock.acquire()
        where.append(line() - 1)
        try:
            # The loop running this, and its task, are open too: only what is the lock's counts.
            assert leakwatch.leaks("fd") == leakwatch.leaks("untracked-fd") == []
            leak = leakwatch.one("filelock")
            assert_site(leak, where[0])
            assert leak.description == f"filelock.{name} {path} held"
        finally:
            await lock.release()
        assert leakwatch.leaks("filelock") == []

    asyncio.run(main())
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("name", ASYNC_LOCKS)
def test_an_async_lock_dropped_while_held_is_released_by_the_garbage_collector(
    leakwatch: Watch, tmp_path: Path, name: str
) -> None:
    """Its ``__del__`` cannot await: it makes a task on the running loop that releases it later.
    The hold is still the collector's to end, as a sync lock's is, at the line that took it; the
    task is filelock's (it was reported instead of the lock, at filelock's line)."""
    path = tmp_path / "x.lock"
    where: list[int] = []

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())  # after the loop and this task
        lock = _make(name, path)
        await lock.acquire()
        where.append(line() - 1)
        del lock
        gc.collect()
        await asyncio.sleep(0)  # the release task runs
        leak = window.one("filelock")
        assert_site(leak, where[0])
        assert leak.state == "collected" and leak.closed_by_gc
        assert [found.kind for found in window.leaks()] == ["filelock"]

    asyncio.run(main())
    assert [leak.kind for leak in leakwatch.leaks()] == ["filelock"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("name", SYNC_LOCKS)
def test_an_acquire_that_times_out_records_nothing_held(leakwatch: Watch, tmp_path: Path, name: str) -> None:
    """The descriptor a failed attempt opened is closed by filelock: only the holder is reported."""
    path = tmp_path / "x.lock"
    holder = _make(name, path)
    other = _make(name, path)
    holder.acquire()
    at = line() - 1
    try:
        with pytest.raises(filelock.Timeout):
            other.acquire(timeout=0)
        with pytest.raises(filelock.Timeout):
            other.acquire(blocking=False)
        assert not other.is_locked
        assert_site(leakwatch.one("filelock"), at)
    finally:
        holder.release()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_filelock_whose_hold_cannot_be_read_is_reported_as_its_descriptor(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filelock that keeps its hold where this integration does not look gets today's report,
    a bare fd, not nothing. Replaced by monkeypatch because no installed filelock has another
    layout to produce this for real."""
    from reclaim.leaks import _filelock

    monkeypatch.setattr(_filelock, "_held_fd", lambda lock: None)
    lock = filelock.FileLock(str(tmp_path / "x.lock"))
    lock.acquire()
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["fd"]
    finally:
        lock.release()
    assert leakwatch.leaks() == []


def test_a_test_that_keeps_a_lock_fails_at_its_line_alone(pytester: pytest.Pytester) -> None:
    """Under ``pytest --reclaim``: the test that took it fails, with one leak at its line."""
    pytester.makepyfile(
        test_kept_lock="""
        import filelock

        def test_keeps_it(tmp_path):
            lock = filelock.FileLock(tmp_path / "x.lock")
            lock.acquire()
            globals()["kept"] = lock

        def test_after(tmp_path):
            with filelock.FileLock(tmp_path / "y.lock"):
                pass
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_it*",
            "*this test leaked 1 resource*",
            "filelock.FileLock *x.lock held",
            "  acquired at test_kept_lock.py:5 in test_keeps_it",
        ]
    )
    assert "untracked-fd" not in result.stdout.str()


def _releases_held_locks_at_exit() -> bool:
    """Whether this filelock releases the locks still held at exit itself (an atexit handler:
    filelock 4 does, 3 does not)."""
    import importlib.util

    try:
        return importlib.util.find_spec("filelock._core._shutdown") is not None
    except ModuleNotFoundError:  # no filelock._core package at all
        return False


KEPT_TO_THE_END = 'import filelock\nlock = filelock.FileLock("x.lock")\nlock.acquire()\n'


def test_reclaim_run_reports_a_lock_the_program_left_held_once_at_its_line(tmp_path: Path) -> None:
    """Ended by ``os._exit`` (no atexit handler runs): the lock is still held when reported."""
    out = reclaim_run_prog(tmp_path, KEPT_TO_THE_END + "import os\nos._exit(0)\n")
    assert "leaked 1 resource (1 filelock)" in out.stderr, out.stderr
    assert "filelock.FileLock x.lock held" in out.stderr, out.stderr
    assert "acquired at prog.py:3 in <module>" in out.stderr, out.stderr


def test_reclaim_run_counts_filelocks_own_release_at_exit(tmp_path: Path) -> None:
    """A lock kept to the end of the program and released by filelock's atexit handler is
    released by a call, as a client's pools closed at exit are: no leak. Where filelock has no
    such handler, the lock is still held at exit, and reported."""
    out = reclaim_run_prog(tmp_path, KEPT_TO_THE_END)
    if _releases_held_locks_at_exit():
        assert "no leaks" in out.stderr, out.stderr
    else:
        assert "leaked 1 resource (1 filelock)" in out.stderr, out.stderr
