"""locked / FileLock: real processes and threads contend; death frees the lock; timeouts name the holder."""

from __future__ import annotations

import errno
import gc
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import reclaim
import reclaim.leaks
from _leakhelp import line
from reclaim.files import FileLock, LockTimeout, locked

HOLDER = """
import sys
from reclaim.files import locked
with locked(sys.argv[1], shared=sys.argv[2] == "shared"):
    print("held", flush=True)
    sys.stdin.read()
print("released", flush=True)
"""

WAITER = """
import sys
from reclaim.files import locked
print("waiting", flush=True)
with locked(sys.argv[1]):
    print("acquired", flush=True)
"""


@contextmanager
def holder(path: Path, kind: str = "exclusive") -> Iterator[subprocess.Popen[str]]:
    """A child process that holds the lock until its stdin closes (or it is killed)."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(path), kind],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdin is not None
    try:
        assert child.stdout.readline() == "held\n"
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stdin.close()
        child.stdout.close()


def test_a_timeout_names_the_lock_file_and_the_holder_pid(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    with holder(path) as child:
        with pytest.raises(LockTimeout) as caught, locked(path, timeout=0.05):
            pass
        error = caught.value
        assert isinstance(error, TimeoutError) and isinstance(error, reclaim.ReclaimError)
        assert error.pid == child.pid
        assert error.path == str(path)
        assert str(path) in str(error) and f"pid {child.pid}" in str(error)


def test_a_sigkilled_holder_frees_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    with holder(path) as child:
        with pytest.raises(LockTimeout), locked(path, timeout=0):
            pass
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        with locked(path, timeout=30) as lock:
            assert lock.held
            assert path.read_text().split()[0] == str(os.getpid())
    assert path.read_text() == "", "the holder's pid is cleared on release"


def test_a_process_waiting_without_timeout_gets_the_lock_when_it_is_released(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    lock = locked(path).acquire()
    waiter = subprocess.Popen([sys.executable, "-c", WAITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert waiter.stdout is not None
    try:
        assert waiter.stdout.readline() == "waiting\n"
        assert waiter.poll() is None
        lock.release()
        assert waiter.stdout.readline() == "acquired\n"
        assert waiter.wait(timeout=30) == 0
    finally:
        lock.release()
        if waiter.poll() is None:
            waiter.kill()
        waiter.wait()
        waiter.stdout.close()


def test_two_threads_contend_like_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    held, release, done = threading.Event(), threading.Event(), threading.Event()

    def hold() -> None:
        with locked(path):
            held.set()
            release.wait(30)
        done.set()

    thread = threading.Thread(target=hold, name="holder")
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(LockTimeout) as caught, locked(path, timeout=0):
            pass
        assert "held by this process (thread 'holder', taken at " in str(caught.value)
        assert ".hold)" in str(caught.value) and "held by pid" not in str(caught.value)
        assert caught.value.pid == os.getpid()
        release.set()
        with locked(path, timeout=30) as lock:
            assert done.is_set() and lock.held
    finally:
        release.set()
        thread.join()


def test_a_timeout_behind_another_threads_shared_lock_names_that_thread(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with locked(path, shared=True):
            held.set()
            release.wait(30)

    thread = threading.Thread(target=hold, name="reader")
    thread.start()
    try:
        assert held.wait(30)
        with pytest.raises(LockTimeout) as caught, locked(path, timeout=0):
            pass
        assert "held shared by this process (thread 'reader', taken at " in str(caught.value)
        with locked(path, shared=True, timeout=0):
            pass  # shared with the other thread's
    finally:
        release.set()
        thread.join()


def test_shared_holders_coexist_and_exclude_an_exclusive_one(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    with holder(path, "shared"):
        with locked(path, shared=True, timeout=0) as mine:
            assert mine.shared and mine.held
        with pytest.raises(LockTimeout, match="shared") as caught, locked(path, timeout=0):
            pass
        assert caught.value.pid is None


def test_closing_another_descriptor_of_the_file_keeps_the_lock(tmp_path: Path) -> None:
    """The POSIX fcntl trap (any close drops the process's locks) does not apply."""
    path = tmp_path / "app.lock"
    with locked(path):
        with open(path) as other:
            other.read()
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from reclaim.files import locked, LockTimeout\n"
                "try:\n    locked(sys.argv[1], timeout=0).acquire()\nexcept LockTimeout:\n"
                "    sys.exit(3)\n",
                str(path),
            ],
            check=False,
            timeout=60,
        )
        assert child.returncode == 3


def test_the_same_thread_asking_again_raises_instead_of_deadlocking(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    with locked(path), pytest.raises(RuntimeError, match="deadlock"), locked(path):
        pass
    with locked(path, shared=True), locked(path, shared=True, timeout=0):
        pass  # two shared locks in one thread do not conflict


@pytest.mark.parametrize("timeout", [None, 0, 30])
@pytest.mark.parametrize("outer_shared", [False, True])
def test_nesting_in_one_thread_fails_at_once_saying_where_the_lock_was_taken(
    tmp_path: Path, timeout: float | None, outer_shared: bool
) -> None:
    """Whatever the timeout: no wait, no 'held by pid <our own pid>', but where this thread took it."""
    path = tmp_path / "app.lock"
    with locked(path, shared=outer_shared):
        at = line() - 1
        with pytest.raises(RuntimeError) as caught, locked(path, timeout=timeout):
            pass
    message = str(caught.value)
    held = "a shared" if outer_shared else "an exclusive"
    assert f"this thread already holds {held} lock on this file" in message
    assert "not re-entrant" in message and str(path) in message
    assert f"taken at {os.path.abspath(__file__)}:{at} in " in message
    with locked(path, timeout=0):
        pass  # the refused attempt left nothing held


FORK_THEN_LOCK = """
import os, sys
from reclaim.files import LockTimeout, locked
with locked(sys.argv[1]):
    pid = os.fork()
    if pid == 0:
        try:
            locked(sys.argv[1], timeout=0).acquire()
        except LockTimeout as error:
            os._exit(3 if error.pid == os.getppid() else 4)
        except RuntimeError:
            os._exit(5)
        os._exit(6)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status))
"""


def test_a_forked_child_does_not_count_its_parents_locks_as_its_own(tmp_path: Path) -> None:
    """In the child the parent's lock is another process's: a timeout naming it, not 'not re-entrant'."""
    result = subprocess.run(
        [sys.executable, "-c", FORK_THEN_LOCK, str(tmp_path / "app.lock")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3", "3: the child got LockTimeout naming its parent"


def test_a_symlinked_lock_file_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "app.lock"
    link.symlink_to(victim)
    with pytest.raises(OSError) as caught, locked(link):
        pass
    assert caught.value.errno == errno.ELOOP
    assert caught.value.filename == str(link)
    assert "is a symbolic link and locked() will not follow it" in str(caught.value)
    assert victim.read_text() == "precious"


def test_a_hard_linked_lock_file_is_refused_and_its_other_name_untouched(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.link(victim, tmp_path / "app.lock")
    with pytest.raises(OSError, match="hard links"), locked(tmp_path / "app.lock"):
        pass
    assert victim.read_text() == "precious"


def test_a_lock_gc_ed_while_held_warns_and_is_released(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    lock = locked(path).acquire()
    with pytest.warns(ResourceWarning, match="garbage-collected while held"):
        del lock
        gc.collect()
    with locked(path, timeout=0):
        pass


def test_repr_and_statistics_tell_the_state(tmp_path: Path) -> None:
    lock = FileLock(tmp_path / "app.lock", timeout=0)
    assert "not held" in repr(lock) and "exclusive" in repr(lock)
    with lock:
        assert " held" in repr(lock)
        assert lock.statistics().held
        with pytest.raises(RuntimeError, match="already held"):
            lock.acquire()
    stats = lock.statistics()
    assert (stats.held, stats.acquisitions, stats.contended, stats.timeouts) == (False, 1, 0, 0)
    lock.release()  # releasing again does nothing


@pytest.mark.parametrize("timeout", [-1, -0.5, float("nan")])
def test_a_timeout_out_of_range_is_a_value_error_naming_it(tmp_path: Path, timeout: float) -> None:
    with pytest.raises(ValueError, match=r"locked\(timeout=\.\.\.\) must be a number of seconds >= 0"):
        locked(tmp_path / "x", timeout=timeout)
    with pytest.raises(ValueError, match=r"FileLock\(timeout=\.\.\.\)"):
        FileLock(tmp_path / "x", timeout=timeout)
    with pytest.raises(ValueError, match=r"FileLock.acquire\(timeout=\.\.\.\)"):
        FileLock(tmp_path / "x").acquire(timeout=timeout)


@pytest.mark.parametrize("timeout", ["10", True, b"1", [1]])
def test_a_timeout_of_the_wrong_type_is_a_type_error_naming_it(tmp_path: Path, timeout: object) -> None:
    expected = r"locked\(timeout=\.\.\.\) must be None or a number of seconds \(int or float\), not "
    with pytest.raises(TypeError, match=expected + type(timeout).__name__):
        locked(tmp_path / "x", timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"FileLock.acquire\(timeout=\.\.\.\) must be None or a number"):
        FileLock(tmp_path / "x").acquire(timeout=timeout)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists(), "a refused call creates no lock file"


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"shared": 1}, "shared"), ({"path": 3}, "path"), ({"path": b"x"}, "path")]
)
def test_other_arguments_of_the_wrong_type_are_a_type_error_naming_them(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    arguments: dict[str, object] = {"path": tmp_path / "x", **kwargs}
    with pytest.raises(TypeError, match=rf"locked\({name}=\.\.\.\) must be"):
        locked(**arguments)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=rf"FileLock\({name}=\.\.\.\) must be"):
        FileLock(**arguments)  # type: ignore[arg-type]


def test_it_is_exported_from_the_package() -> None:
    assert reclaim.locked is locked


def test_without_fcntl_a_lock_raises_naming_the_platform_and_what_to_do(tmp_path: Path) -> None:
    """Without fcntl (Windows; simulated by blocking the module) reclaim imports but a lock refuses."""
    code = (
        "import sys\n"
        "sys.modules['fcntl'] = None  # `import fcntl` raises ImportError, as on Windows\n"
        "from reclaim.files import FileLock, locked\n"
        "for make in (lambda: locked(sys.argv[1]), lambda: FileLock(sys.argv[1], shared=True)):\n"
        "    try:\n"
        "        make()\n"
        "    except NotImplementedError as error:\n"
        "        print(error)\n"
    )
    path = tmp_path / "app.lock"
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    messages = result.stdout.splitlines()
    assert len(messages) == 2, result.stdout
    for message in messages:
        assert str(path) in message and "fcntl" in message and sys.platform in message
        assert "on Windows use" in message
    assert not path.exists(), "a refused lock creates no lock file"


def test_a_held_lock_is_reported_by_the_leak_checker(tmp_path: Path) -> None:
    lock = locked(tmp_path / "app.lock")
    try:
        with pytest.raises(reclaim.LeakError, match="filelock") as caught, reclaim.no_leaks():
            lock.acquire()
        assert "app.lock (exclusive)" in str(caught.value)
    finally:
        lock.release()
    with reclaim.no_leaks(), locked(tmp_path / "app.lock"):
        pass  # released inside the checked block: nothing to report


def test_releasing_one_of_two_shared_locks_keeps_the_self_deadlock_check(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    with locked(path, shared=True):
        with locked(path, shared=True):
            pass
        with pytest.raises(RuntimeError, match="deadlock"), locked(path):
            pass


def test_a_lock_left_held_is_one_filelock_leak_at_the_users_line_not_also_an_fd(tmp_path: Path) -> None:
    """The lock's descriptor is part of the lock: one leak, of a kind reports and --ignore know."""
    tracker = reclaim.leaks.Tracker().start()
    try:
        mark = tracker.snapshot()
        lock = locked(tmp_path / "app.lock")
        lock.acquire()
        at = line() - 1
        try:
            found = tracker.leaks(mark)
            assert [leak.kind for leak in found] == ["filelock"], [leak.headline() for leak in found]
            assert found[0].site is not None
            assert (found[0].site.filename, found[0].site.lineno) == (os.path.abspath(__file__), at)
            assert found[0].description == f"{tmp_path / 'app.lock'} (exclusive)"
        finally:
            lock.release()
        assert tracker.leaks(mark) == []
    finally:
        tracker.stop()


def test_the_lock_kind_is_one_the_reports_and_docs_list() -> None:
    assert "filelock" in reclaim.leaks.KINDS
    doc = (Path(__file__).parent.parent / "docs" / "leaks-json.md").read_text()
    assert "`filelock`" in doc


LEFT_HELD = """
import sys
import reclaim
lock = reclaim.locked(sys.argv[1])
lock.acquire()
"""


def test_reclaim_run_reports_a_lock_left_held_once_and_can_ignore_it(tmp_path: Path) -> None:
    script = tmp_path / "held.py"
    script.write_text(LEFT_HELD)
    lock_file = str(tmp_path / "app.lock")
    report = tmp_path / "leaks.json"
    run = [sys.executable, "-m", "reclaim", "run"]
    result = subprocess.run(
        [*run, "--json", str(report), str(script), lock_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "leaked 1 resource (1 filelock)" in result.stderr, result.stderr
    (leak,) = json.loads(report.read_text())["leaks"]
    assert (leak["kind"], leak["frames"][0]["line"]) == ("filelock", 5)
    ignored = subprocess.run(
        [*run, "--ignore", "filelock", str(script), lock_file],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ignored.returncode == 0, ignored.stderr
    assert "no leaks" in ignored.stderr, ignored.stderr


FORKER = """
import os, sys
from reclaim.files import locked
lock = locked(sys.argv[1]).acquire()
pid = os.fork()
if pid == 0:
    lock.release()          # the child's copy only: the parent must keep its lock
    os._exit(0)
os.waitpid(pid, 0)
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_forked_child_releasing_its_copy_does_not_release_the_parents_lock(tmp_path: Path) -> None:
    path = tmp_path / "app.lock"
    parent = subprocess.Popen(
        [sys.executable, "-c", FORKER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert parent.stdin is not None and parent.stdout is not None
    try:
        assert parent.stdout.readline() == "ready\n"
        with pytest.raises(LockTimeout) as caught, locked(path, timeout=0):
            pass
        assert caught.value.pid == parent.pid
    finally:
        parent.stdin.close()
        parent.wait()
        parent.stdout.close()
