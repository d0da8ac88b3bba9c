"""The tracker's API: windows, contexts, filters, reports (text and JSON), no_leaks, sharing."""

from __future__ import annotations

import asyncio
import builtins
import gc
import io
import json
import os
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import reclaim
from _leakhelp import RUN_TIMEOUT, Watch, ignore_gc_warnings, leakwatch, line, untracked_epoll
from reclaim.leaks import SCHEMA, LeakError, Report, Tracker, context, current_context, no_leaks, set_context

__all__ = ["leakwatch"]  # the fixture, imported for pytest

HERE = os.path.abspath(__file__)
# Text reports show paths below the current directory relative to it.
SHOWN = HERE.removeprefix(os.getcwd() + os.sep)


# -- tracker lifecycle ----------------------------------------------------------------------


def test_instrumentation_is_shared_and_removed_by_the_last_stop() -> None:
    import _io

    original = builtins.open  # the C open(), or already tracked when the pytest plugin runs
    first, second = Tracker().start(), Tracker().start()
    assert builtins.open is not _io.open and first.statistics().users >= 2
    first.stop()
    assert builtins.open is not _io.open
    second.stop()
    assert builtins.open is original and io.open is original
    assert not first.running and "stopped" in repr(first)


@pytest.mark.parametrize(
    "where",
    [
        "builtins.open",
        "io.open",
        "os.open",
        "os.pipe",
        "os.dup",
        "fcntl.fcntl",
        "os.waitpid",
        "tempfile.mkdtemp",
        "tempfile.mkstemp",
        "tempfile.TemporaryFile",
        "sqlite3.connect",
        "mmap.mmap",
        "select.epoll",
        "socket.dup",
    ],
)
def test_a_tracked_function_pickles_and_describes_itself_as_the_original(where: str) -> None:
    """``executor.submit(tempfile.mkdtemp)`` to a process pool pickles the function by name:
    the replacement failed ("Can't pickle local object 'install.<locals>.mkdtemp_'")."""
    import importlib
    import inspect
    import pickle
    import sys

    module_name, name = where.split(".")
    original = getattr(importlib.import_module(module_name), name)
    with Tracker():
        tracked = getattr(importlib.import_module(module_name), name)
        assert pickle.loads(pickle.dumps(tracked)) is tracked
        assert tracked.__name__ == name
        assert getattr(sys.modules[tracked.__module__], tracked.__qualname__) is tracked
        if where not in ("os.waitpid", "mmap.mmap", "select.epoll"):  # classes; os.waitpid: `reclaim run`
            # what inspect.signature() and help() describe: the original's parameters (``open``,
            # a bound method, has its own; the others lead to the original by ``__wrapped__``)
            try:
                expected = list(inspect.signature(original).parameters)
            except ValueError:  # a builtin without a text signature
                expected = None
            if expected is not None:
                assert list(inspect.signature(tracked).parameters) == expected


def test_a_tracked_os_function_is_named_in_the_capability_sets_of_the_original() -> None:
    """``os.open in os.supports_dir_fd`` is how shutil (at its import) chooses the ``rmtree``
    that resists symlink races, and filelock its locking scheme: with ``os.open`` replaced it
    was false, and both took the other path (seen in filelock's suite)."""
    import subprocess

    program = (
        "import importlib\n"
        "import os\n"
        "import shutil\n"
        "from reclaim.leaks import Tracker\n"
        "c_open = os.open\n"
        "with Tracker():\n"
        "    importlib.reload(shutil)  # as if imported now\n"
        "    assert os.open is not c_open and os.open in os.supports_dir_fd, 'tracked'\n"
        "    assert shutil._use_fd_functions, 'shutil'\n"
        "    tracked = os.open\n"
        "assert os.open is c_open and tracked not in os.supports_dir_fd, 'stopped'\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_start_twice_and_use_while_stopped_are_errors() -> None:
    tracker = Tracker()
    with pytest.raises(RuntimeError, match="not running"):
        tracker.leaks()
    with pytest.raises(RuntimeError, match="not running"):
        tracker.snapshot()
    with tracker:
        with pytest.raises(RuntimeError, match="already started"):
            tracker.start()
        with pytest.raises(ValueError, match="grace"):
            tracker.leaks(grace=-1)
    tracker.stop()  # idempotent


@pytest.mark.parametrize("depth", [0, -3])
def test_depth_must_be_a_positive_int(depth: object) -> None:
    with pytest.raises(ValueError, match="depth"):
        Tracker(depth=depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("depth", [1.5, "3", None, True])
def test_depth_of_another_type_is_a_type_error_naming_depth(depth: object) -> None:
    with pytest.raises(TypeError, match=r"depth must be an int >= 1 .*, got"):
        Tracker(depth=depth)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["leaks", "report"])
@pytest.mark.parametrize("kinds", [["files"], {"thread", "threads"}])
def test_leaks_and_report_refuse_an_unknown_kind_as_no_leaks_does(
    leakwatch: Watch, method: str, kinds: list[str]
) -> None:
    """A misspelt kind in ignore_kinds (which would ignore nothing) is refused, listing the kinds."""
    check = getattr(leakwatch.tracker, method)
    with pytest.raises(ValueError, match=r"ignore_kinds: unknown kind '\w+'; kinds: file, fd, socket"):
        check(ignore_kinds=kinds)
    with pytest.raises(TypeError, match="ignore_kinds must be a collection of kinds"):
        check(ignore_kinds="thread")


def test_report_of_given_leaks_still_checks_ignore_kinds(leakwatch: Watch) -> None:
    with pytest.raises(ValueError, match="unknown kind 'files'"):
        leakwatch.tracker.report([], ignore_kinds=["files"])
    assert not leakwatch.tracker.report([], ignore_kinds=["file", "untracked-fd"])


def test_only_acquisitions_after_the_snapshot_count(tmp_path: Path) -> None:
    with Tracker() as tracker:
        before = open(tmp_path / "before", "w")  # noqa: SIM115
        mark = tracker.snapshot()
        after = open(tmp_path / "after", "w")  # noqa: SIM115
        at = line() - 1
        try:
            assert [leak.site.lineno for leak in tracker.leaks(mark) if leak.site] == [at]
            assert len(tracker.leaks()) == 2  # since the tracker's own start
        finally:
            before.close()
            after.close()


def test_a_snapshot_behaves_as_the_frozen_dataclass_it_was() -> None:
    """Written out so that starting a tracker imports no dataclasses: same fields, repr,
    equality, hash, frozenness, pattern matching, pickling and copying."""
    import copy
    import dataclasses
    import pickle

    from reclaim.leaks import Snapshot

    mark = Snapshot(3, 1.5, frozenset({0, 1}))
    assert repr(mark) == "Snapshot(seq=3, time=1.5, fds=frozenset({0, 1}), fd_ids=None)"
    assert mark == Snapshot(seq=3, time=1.5, fds=frozenset({0, 1}), fd_ids=None)
    assert mark != Snapshot(4, 1.5, frozenset({0, 1})) and mark != (3, 1.5, frozenset({0, 1}), None)
    assert hash(mark) == hash(Snapshot(3, 1.5, frozenset({0, 1})))
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'seq'"):
        mark.seq = 4
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot delete field 'fds'"):
        del mark.fds
    with pytest.raises(TypeError):
        mark < mark  # type: ignore[operator]  # noqa: B015
    match mark:
        case Snapshot(seq, when, fds, ids):
            assert (seq, when, fds, ids) == (3, 1.5, frozenset({0, 1}), None)
    with Tracker() as tracker:
        taken = tracker.snapshot()
    assert pickle.loads(pickle.dumps(taken)) == taken == copy.copy(taken) == copy.deepcopy(taken)
    assert not hasattr(taken, "__dict__")


def test_resources_from_before_start_are_never_reported(tmp_path: Path) -> None:
    older = open(tmp_path / "older", "w")  # noqa: SIM115
    try:
        with Tracker() as tracker:
            assert tracker.leaks() == []
    finally:
        older.close()


# -- what a leak says -------------------------------------------------------------------------


def test_a_leak_names_thread_context_pid_and_age(leakwatch: Watch, tmp_path: Path) -> None:
    opened: list[object] = []

    def work() -> None:
        opened.append(open(tmp_path / "t", "w"))  # noqa: SIM115

    outer = current_context()  # the test's own id when the pytest plugin runs
    with context("test_one"):
        assert current_context() == "test_one"
        worker = threading.Thread(target=work, name="loader")
        worker.start()
        worker.join()
    assert current_context() == outer
    leak = leakwatch.one("file")
    assert leak.thread == "loader" and leak.context == "test_one"
    assert leak.pid == os.getpid() and 0 <= leak.age < 60
    assert leak.frames[0].function == "test_a_leak_names_thread_context_pid_and_age.<locals>.work"
    opened[0].close()  # type: ignore[attr-defined]


def test_context_filter_keeps_only_that_label(leakwatch: Watch, tmp_path: Path) -> None:
    previous = set_context("a")
    try:
        fa = open(tmp_path / "a", "w")  # noqa: SIM115
        set_context("b")
        fb = open(tmp_path / "b", "w")  # noqa: SIM115
    finally:
        set_context(previous)
    try:
        assert [leak.details["path"] for leak in leakwatch.leaks(context="a")] == [str(tmp_path / "a")]
        assert [leak.context for leak in leakwatch.leaks()] == ["a", "b"]
    finally:
        fa.close()
        fb.close()


def test_ignore_by_kind_pattern_and_predicate(leakwatch: Watch, tmp_path: Path) -> None:
    f = open(tmp_path / "app.log", "w")  # noqa: SIM115
    r, w = os.pipe()
    try:
        assert {leak.kind for leak in leakwatch.leaks(ignore_kinds={"fd"})} == {"file"}
        assert {leak.kind for leak in leakwatch.leaks(ignore=r"\.log ")} == {"fd"}
        assert leakwatch.leaks(ignore=[r"\.log ", lambda leak: leak.kind == "fd"]) == []
    finally:
        f.close()
        os.close(r)
        os.close(w)


def test_framework_only_acquisitions_are_left_out_unless_asked(leakwatch: Watch, tmp_path: Path) -> None:
    # A thread that code in the standard library started, running only such code: no user frame
    # on its stack or where it was started, like the resources pytest opens for itself (a low-level
    # thread runs the starter, so that no test frame is under it). One the program started is the
    # program's: see test_leaks_kinds.
    import _thread

    fake_stdlib = os.path.join(sysconfig.get_path("stdlib"), "reclaim_fake_module.py")
    done = threading.Event()
    namespace: dict[str, object] = {"path": str(tmp_path / "fw"), "kept": [], "threading": threading}
    source = (
        "def work():\n"
        "    kept.append(open(path, 'w'))\n"
        "def start(done):\n"
        "    worker = threading.Thread(target=work)\n"
        "    worker.start()\n"
        "    worker.join()\n"
        "    done.set()\n"
    )
    exec(compile(source, fake_stdlib, "exec"), namespace)
    _thread.start_new_thread(namespace["start"], (done,))  # type: ignore[arg-type]
    assert done.wait(30)
    try:
        assert leakwatch.leaks() == []
        [leak] = leakwatch.leaks(include_framework=True)
        assert leak.site is not None and (leak.site.filename, leak.site.lineno) == (fake_stdlib, 2)
    finally:
        namespace["kept"][0].close()  # type: ignore[index]


def test_pytest_asyncios_frames_are_plumbing_like_pytests(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Its frames sit under every event-loop callback of a test: a session-scoped server's accepted
    # socket was reported "acquired at pytest_asyncio/plugin.py:915", blamed on the running test.
    import importlib

    from reclaim import _sites

    package = tmp_path / "site-packages" / "pytest_asyncio"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path / "site-packages"))
    monkeypatch.delitem(sys.modules, "pytest_asyncio", raising=False)
    importlib.import_module("pytest_asyncio")
    assert _sites.is_framework(str(package / "plugin.py"))


def test_a_site_captured_in_a_task_is_the_flat_capture_of_it(leakwatch: Watch, tmp_path: Path) -> None:
    # capture_in_task, create_task's shortcut for a task made in a task, must give what
    # capture_flat gives: from the task's own coroutine, from a function it calls, past a
    # library's frames, from a coroutine it awaits, and with too little room for the frames up
    # to the task's first (where it hands over to capture_flat), at every depth.
    from reclaim import _sites
    from reclaim.leaks import _tasks

    library = tmp_path / "site-packages" / "reclaim_fake_spawner.py"
    library.parent.mkdir()
    namespace: dict[str, Any] = {}
    exec(compile("def spawn(probe):\n    return probe()\n", str(library), "exec"), namespace)
    spawn = namespace["spawn"]
    pairs: list[tuple[str, int, _sites.RawSite, _sites.RawSite]] = []

    def probe(shape: str) -> None:
        frame = sys._getframe(1)  # where loop.create_task() would be called from
        task = asyncio.current_task()
        assert task is not None
        task_frame = task.get_coro().cr_frame  # type: ignore[union-attr]
        made = _tasks._site_of(task)
        assert made, "the running task is tracked"
        pairs.extend(
            (
                shape,
                depth,
                _sites.capture_in_task(frame, depth, task_frame, made),
                _sites.capture_flat(frame, depth),
            )
            for depth in (1, 2, 3, 8)
        )

    def helper() -> None:
        probe("in a function the coroutine calls")

    def deep(n: int) -> None:
        if n:
            deep(n - 1)
        else:
            probe("deeper than the depth kept")

    async def awaited() -> None:
        probe("in a coroutine the task awaits")

    async def main() -> None:
        probe("in the task's coroutine")
        helper()
        spawn(lambda: probe("past a library's frames"))
        deep(10)
        await awaited()

    asyncio.run(main())
    assert len(pairs) == 5 * 4
    for shape, depth, fast, flat in pairs:
        assert fast == flat, (shape, depth)
    assert all(fast for *_, fast, _ in pairs)


def test_capture_from_resolves_as_the_flat_capture_does(leakwatch: Watch, tmp_path: Path) -> None:
    # capture_from reads f_lineno on its usual path and resolves the flat capture otherwise:
    # both must give the same site, for a shallow stack, a stack deeper than the depth kept
    # whose kept frames are a library's (the program's line takes the outermost one's place),
    # and a thread's stack, which goes on at the line that started the thread.
    from reclaim import _sites

    def both(depth: int) -> tuple[_sites.Site, _sites.Site]:
        frame = sys._getframe(1)
        return _sites.capture_from(frame, depth), _sites.resolve(_sites.capture_flat(frame, depth))

    shallow, flat = both(8)
    assert shallow == flat and shallow[0][0].co_filename == __file__
    again, flat = both(8)  # once the test's file is known to be the program's
    assert again == flat

    library = tmp_path / "site-packages" / "reclaim_fake_library.py"
    library.parent.mkdir()
    namespace: dict[str, object] = {"both": both}
    source = "def inner():\n    return both(2)\ndef outer():\n    return inner()\n"
    exec(compile(source, str(library), "exec"), namespace)
    for _ in range(2):
        deep, flat = namespace["outer"]()  # type: ignore[operator]
        assert deep == flat
        assert [code.co_filename for code, _ in deep] == [str(library), __file__]

    out: list[tuple[_sites.Site, _sites.Site]] = []
    worker = threading.Thread(target=lambda: out.append(both(8)))
    worker.start()
    start_line = line() - 1
    worker.join()
    threaded, flat = out[0]
    assert threaded == flat
    assert (__file__, start_line) in [(code.co_filename, lineno) for code, lineno in threaded]


def test_a_console_script_is_not_the_programs_line(tmp_path: Path) -> None:
    # The interpreter's scripts directory (a venv's bin/) holds console scripts, not the program:
    # a library's acquisition under pytest was reported "from .venv/bin/pytest:8 in <module>".
    from reclaim import _sites

    script = os.path.join(sysconfig.get_path("scripts"), "reclaim-fake-console-script")
    assert not _sites.is_program(script)
    library = tmp_path / "site-packages" / "reclaim_fake_library_used_by_a_script.py"
    library.parent.mkdir()
    namespace: dict[str, object] = {"capture": lambda: _sites.capture_from(sys._getframe(1), 2)}
    exec(compile("def acquire():\n    return capture()\n", str(library), "exec"), namespace)
    exec(compile("def main():\n    return acquire()\n", script, "exec"), namespace)
    site = namespace["main"]()  # type: ignore[operator]
    assert [code.co_filename for code, _ in site] == [str(library), __file__]


# -- unnamed temporary files ------------------------------------------------------------------


@pytest.fixture(params=["O_TMPFILE", "mkstemp"])
def tmpfile_way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways CPython makes a TemporaryFile on Linux."""
    if request.param == "mkstemp":
        # The flag CPython itself clears when the kernel refuses O_TMPFILE: its real fallback
        # (mkstemp, then unlink) runs, nothing is faked.
        monkeypatch.setattr(tempfile, "_O_TMPFILE_WORKS", False)
    return str(request.param)


@pytest.mark.parametrize(
    "options",
    [{}, {"mode": "w+"}, {"buffering": 4096}],  # the last goes through the C open()
    ids=["binary", "text", "buffering"],
)
def test_temporary_file_left_open_is_an_unnamed_file_in_its_directory(
    leakwatch: Watch, tmp_path: Path, tmpfile_way: str, options: dict[str, object]
) -> None:
    handle = tempfile.TemporaryFile(dir=tmp_path, **options)  # type: ignore[call-overload]  # noqa: SIM115
    at = line() - 1
    try:
        leak = leakwatch.one("file")
        mode = options.get("mode", "w+b")
        assert leak.description == f"unnamed TemporaryFile in {tmp_path} (mode {mode!r})"
        assert leak.details == {"path": None, "directory": str(tmp_path), "mode": mode, "fd": handle.fileno()}
        assert leak.site is not None and (leak.site.filename, leak.site.lineno) == (HERE, at)
    finally:
        handle.close()
    assert leakwatch.leaks() == []


def test_temporary_file_without_dir_names_the_default_temporary_directory(leakwatch: Watch) -> None:
    handle = tempfile.TemporaryFile("w+b", -1, None, None, None, None, None)  # noqa: SIM115
    try:
        leak = leakwatch.one("file")
        assert leak.description == f"unnamed TemporaryFile in {tempfile.gettempdir()} (mode 'w+b')"
        assert leak.details["directory"] == tempfile.gettempdir()
    finally:
        handle.close()


def test_temporary_file_given_dir_by_position_names_that_directory(leakwatch: Watch, tmp_path: Path) -> None:
    with tempfile.TemporaryFile("w+b", -1, None, None, None, None, tmp_path):
        assert leakwatch.one("file").details["directory"] == str(tmp_path)


def test_temporary_file_closed_or_in_a_with_block_reports_nothing(leakwatch: Watch, tmpfile_way: str) -> None:
    with tempfile.TemporaryFile() as inside:
        inside.write(b"x")
    closed = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
    closed.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_temporary_file_dropped_unclosed_is_collected_and_still_unnamed(
    leakwatch: Watch, tmp_path: Path, tmpfile_way: str
) -> None:
    tempfile.TemporaryFile(dir=tmp_path).write(b"x")  # noqa: SIM115
    at = line() - 1
    leak = leakwatch.one("file")
    assert leak.state == "collected" and leak.closed_by_gc
    assert leak.description == f"unnamed TemporaryFile in {tmp_path} (mode 'w+b')"
    assert leak.details["path"] is None and leak.details["directory"] == str(tmp_path)
    assert leak.site is not None and (leak.site.filename, leak.site.lineno) == (HERE, at)


# -- reports ----------------------------------------------------------------------------------


def test_text_report_has_one_block_per_leak(leakwatch: Watch, tmp_path: Path) -> None:
    f = open(tmp_path / "shown.txt", "w")  # noqa: SIM115
    at = line() - 1
    try:
        report = leakwatch.tracker.report(leakwatch.leaks())
        text = report.to_text()
        assert f"file {tmp_path / 'shown.txt'} (mode 'w')" in text
        assert f"acquired at {SHOWN}:{at} in test_text_report_has_one_block_per_leak" in text
        assert "thread 'MainThread'" in text and f"pid {os.getpid()}" in text
        assert "\x1b[" not in text  # no colour without a terminal
        assert "\x1b[" in report.to_text(color=True)
        out = io.StringIO()
        report.print(out, depth=1)
        assert "acquired at" in out.getvalue() and " from " not in out.getvalue()
        assert report and len(report) == 1 and report.summary() == "1 leak: 1 file"
        assert Report(()).to_text().strip() == "no leaks" and not Report(())
    finally:
        f.close()


@pytest.mark.parametrize("options", [{"depth": "3"}, {"depth": 2.0}, {"width": "80"}])
def test_text_report_refuses_a_number_option_of_the_wrong_type(options: dict[str, object]) -> None:
    """to_text(depth="3") is a TypeError naming the argument, not a failed comparison inside."""
    name = next(iter(options))
    with pytest.raises(TypeError, match=f"^{name} must be an int"):
        Report(()).to_text(**options)  # type: ignore[arg-type]


def test_json_report_follows_the_documented_schema(leakwatch: Watch, tmp_path: Path) -> None:
    f = open(tmp_path / "j.txt", "w")  # noqa: SIM115
    at = line() - 1
    try:
        data = json.loads(json.dumps(leakwatch.tracker.report(since=leakwatch.mark).to_json()))
    finally:
        f.close()
    assert data["schema"] == SCHEMA == "reclaim.leaks/1"
    assert data["count"] == 1 and data["counts"] == {"file": 1}
    [leak] = data["leaks"]
    assert set(leak) == {
        "kind", "description", "state", "closed_by_gc", "frames", "thread", "context",
        "pid", "acquired_at", "age", "details", "seq",
    }  # fmt: skip
    assert leak["frames"][0] == {
        "file": HERE,
        "line": at,
        "function": "test_json_report_follows_the_documented_schema",
    }
    assert leak["state"] == "open" and leak["closed_by_gc"] is False
    assert leak["details"]["path"] == str(tmp_path / "j.txt")
    doc = (Path(__file__).parent.parent / "docs" / "leaks-json.md").read_text()
    documented = [*data, *leak, *(f"frames[].{key}" for key in leak["frames"][0])]
    for field in documented:
        assert f"`{field}`" in doc, f"docs/leaks-json.md does not document {field!r}"


# -- no_leaks ---------------------------------------------------------------------------------


def test_no_leaks_raises_with_the_leaks_acquired_inside(tmp_path: Path) -> None:
    with pytest.raises(LeakError) as caught, reclaim.no_leaks():
        f = open(tmp_path / "n", "w")  # noqa: SIM115
        at = line() - 1
    f.close()
    error = caught.value
    assert isinstance(error, AssertionError) and isinstance(error, reclaim.ReclaimError)
    assert [leak.site.lineno for leak in error.leaks if leak.site] == [at]
    assert error.report is not None and f"{SHOWN}:{at}" in str(error)


def test_no_leaks_passes_a_clean_block_and_ignores_what_existed_before(tmp_path: Path) -> None:
    older = open(tmp_path / "old", "w")  # noqa: SIM115
    try:
        with no_leaks() as check, open(tmp_path / "new", "w") as f:
            f.write("x")
        assert check.report is not None and not check.report
    finally:
        older.close()


def test_no_leaks_sees_leaks_from_other_threads_and_waits_for_finishing_ones() -> None:
    done = threading.Event()
    with no_leaks(grace=10.0):
        finishing = threading.Thread(target=done.wait)
        finishing.start()
        threading.Timer(0.05, done.set).start()
    finishing.join()
    stop = threading.Event()
    with pytest.raises(LeakError) as caught, no_leaks(grace=0.05):
        stuck = threading.Thread(target=stop.wait, name="stuck")
        stuck.start()
    stop.set()
    stuck.join()
    assert [leak.details["name"] for leak in caught.value.leaks] == ["stuck"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_collecting_check_collects_before_and_after_its_wait_not_on_every_poll(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A check that collects and waits for a thread polls with back-off; a full collection on
    every poll (the pytest plugin's check of a test that left a thread and a socket: up to 16
    in its second of grace, tens of ms each in paramiko's suite) changed nothing the thread
    waits on. It collects first, and once as the wait ends."""
    import gc
    import socket
    import types

    from reclaim.leaks import _tracker

    real_collect = gc.collect
    collections: list[tuple[int, ...]] = []

    def counting_collect(*args: int) -> int:  # the real collection, counted
        collections.append(args)
        return real_collect(*args)

    stop = threading.Event()
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the check's wait: the thread ends on its third poll
        polls.append(seconds)
        if len(polls) == 3:
            stop.set()
        time.sleep(seconds)

    monkeypatch.setattr(gc, "collect", counting_collect)
    monkeypatch.setattr(
        _tracker, "time", types.SimpleNamespace(monotonic=time.monotonic, time=time.time, sleep=sleep)
    )
    stuck = threading.Thread(target=stop.wait, name="stuck")
    stuck.start()
    try:
        cycle: dict[str, object] = {"sock": socket.socket()}
        cycle["self"] = cycle
        del cycle
        leaks = leakwatch.leaks(grace=RUN_TIMEOUT, collect=True)
    finally:
        stop.set()
        stuck.join()
    assert [(leak.kind, leak.state) for leak in leaks] == [("socket", "collected")]
    assert len(polls) >= 3 and len(collections) == 2


def test_no_leaks_keeps_the_body_error_and_notes_the_leaks(tmp_path: Path) -> None:
    with pytest.raises(KeyError) as caught, no_leaks():
        f = open(tmp_path / "k", "w")  # noqa: SIM115
        raise KeyError("body")
    f.close()
    assert any("reclaim.no_leaks also found 1 leak" in note for note in caught.value.__notes__)


def test_no_leaks_as_decorator_checks_every_call(tmp_path: Path) -> None:
    kept: list[object] = []

    @no_leaks(ignore_kinds={"thread"})
    def work(leak: bool) -> int:
        f = open(tmp_path / "d", "w")  # noqa: SIM115
        if leak:
            kept.append(f)
        else:
            f.close()
        return 7

    assert work(False) == 7
    with pytest.raises(LeakError):
        work(True)
    kept[0].close()  # type: ignore[attr-defined]
    assert work.__name__ == "work"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_no_leaks_on_coroutines_and_async_with() -> None:
    @no_leaks()
    async def clean() -> str:
        await asyncio.sleep(0)
        return "ok"

    async def leaky() -> None:
        async with no_leaks():
            asyncio.get_running_loop().create_task(asyncio.Event().wait())

    assert asyncio.run(clean()) == "ok"
    with pytest.raises(LeakError, match="task"):
        asyncio.run(leaky())


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"grace": -1}, ValueError),
        ({"grace": float("nan")}, ValueError),
        ({"grace": "1"}, TypeError),
        ({"grace": None}, TypeError),
        ({"ignore_kinds": "thread"}, TypeError),
        ({"ignore_kinds": [1]}, TypeError),
        ({"ignore": [3]}, TypeError),
        ({"ignore": 3}, TypeError),
        ({"ignore": ["("]}, ValueError),
    ],
)
def test_no_leaks_checks_its_options(options: dict[str, object], error: type[Exception]) -> None:
    """A value of the wrong type is a TypeError, a wrong value of the right type a ValueError."""
    with pytest.raises(error, match=r"grace|ignore_kinds|ignore"):
        no_leaks(**options)  # type: ignore[arg-type]


def test_no_leaks_takes_one_ignore_pattern_as_one_pattern(tmp_path: Path) -> None:
    """ignore="thread" is one regular expression, as for Tracker.leaks: not one per character."""
    with pytest.raises(LeakError) as caught, no_leaks(ignore="heartbeat", grace=0):
        held = open(tmp_path / "f", "w")  # noqa: SIM115 - leaked on purpose
    held.close()
    assert [leak.kind for leak in caught.value.leaks] == ["file"]


@pytest.mark.parametrize("kinds", [["files"], {"thread", "threads"}])
def test_no_leaks_refuses_an_unknown_kind_as_the_cli_does(kinds: list[str]) -> None:
    """A misspelt kind in ignore_kinds (which would ignore nothing) is refused, listing the kinds."""
    with pytest.raises(ValueError, match=r"ignore_kinds: unknown kind '\w+'; kinds: file, fd, socket"):
        no_leaks(ignore_kinds=kinds)


def test_a_kept_descriptor_closed_before_a_check_starts_does_not_hide_the_next_one_on_its_number() -> None:
    """C code's descriptors kept for good (uvloop's, gevent's, gRPC's: see _fds.KEPT) are told
    apart by number and identity, and every epoll or eventfd has the same identity (the one
    anonymous inode): one closed after all, its number taken by a new epoll, hid that epoll from
    every later check in the process (the tests of untracked descriptors failed after uvloop's)."""
    import select

    from reclaim.leaks import Tracker, _fds

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux's")
    first = select.epoll()
    fd = first.fileno()
    _fds.keep(((fd, _fds.identity(fd)),))  # as uvloop keeps a loop's descriptors
    first.close()
    with Tracker() as tracker:
        mark = tracker.snapshot()
        second = untracked_epoll()  # the lowest free number: the kept one's
        try:
            assert second.fileno() == fd
            assert [leak.kind for leak in tracker.leaks(since=mark)] == ["untracked-fd"]
        finally:
            second.close()
    assert fd not in _fds.KEPT


def test_an_untracked_descriptor_is_waited_for_while_another_thread_runs(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """C code may still be making the object that will own a descriptor (libpq inside a pool
    thread's connect): while another thread runs, a check with a grace period waits for it,
    as for a thread, and one closed meanwhile is no leak. (Closed here by a timer signal's
    handler, with "another thread runs" made true: a real thread would be waited for anyway.)"""
    import select
    import signal

    from reclaim.leaks import _kinds

    if not hasattr(select, "epoll") or not hasattr(signal, "setitimer"):
        pytest.skip("select.epoll and signal.setitimer are Linux's")
    monkeypatch.setitem(_kinds.KINDS, "untracked-fd", _kinds.Kind("untracked-fd", waitable=lambda _: True))
    poller = untracked_epoll()  # a descriptor no hook sees opened
    previous = signal.signal(signal.SIGALRM, lambda *_: poller.close())
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["untracked-fd"]
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        assert leakwatch.leaks(grace=30.0) == []
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        poller.close()


def test_an_untracked_descriptor_is_not_waited_for_with_the_checking_thread_alone(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing else runs, so nothing can close it: the check does not sit out its grace period
    (`reclaim run` at the exit of a program that left one waited half a second)."""
    import select

    from reclaim.leaks import _kinds, _tracker

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux's")

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the check waited ({seconds} s) with no other thread running")

    monkeypatch.setitem(_kinds.KINDS, "untracked-fd", _kinds.Kind("untracked-fd", waitable=lambda _: False))
    with untracked_epoll():
        monkeypatch.setattr(_tracker.time, "sleep", no_sleep)
        try:
            assert [leak.kind for leak in leakwatch.leaks(grace=30.0)] == ["untracked-fd"]
        finally:
            monkeypatch.undo()


def test_other_threads_run_sees_a_running_thread() -> None:
    """The predicate counts every thread that runs Python, started by threading or not."""
    import subprocess

    from reclaim.leaks import _tracker

    go = threading.Event()
    worker = threading.Thread(target=go.wait)
    worker.start()
    try:
        assert _tracker._other_threads_run()
    finally:
        go.set()
        worker.join()
    alone = subprocess.run(
        [sys.executable, "-c", "from reclaim.leaks import _tracker; print(_tracker._other_threads_run())"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert alone.stdout.strip() == "False"


def test_a_test_tools_thread_alone_does_not_make_a_check_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A plugin's thread parked in accept() for the whole session (pytest-rerunfailures' server)
    runs none of the program's code: an untracked descriptor is not waited for because of it, while
    the same thread running the program's code is."""
    import importlib.util
    import socket

    from reclaim.leaks import _tracker

    tool = tmp_path / "tool_server.py"
    tool.write_text("def serve(listener):\n    conn, _ = listener.accept()\n    conn.close()\n")
    spec = importlib.util.spec_from_file_location("tool_server", tool)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    listener = socket.create_server(("127.0.0.1", 0))
    server = threading.Thread(target=module.serve, args=(listener,))
    server.start()
    try:

        def serving() -> bool:
            frame = sys._current_frames().get(server.ident or 0)
            while frame is not None and frame.f_code.co_filename != str(tool):
                frame = frame.f_back
            return frame is not None

        deadline = time.monotonic() + RUN_TIMEOUT
        while not serving():  # until the thread runs the tool's function (a poll, not a wait)
            assert time.monotonic() < deadline, "the server thread never reached accept()"
            time.sleep(0.001)
        # That thread's stack alone: other threads of this run may be there (xdist's execnet).
        frame = sys._current_frames()[server.ident or 0]
        tools = _tracker.TOOL_FILES  # the plugins' of this run
        monkeypatch.setattr(_tracker, "TOOL_FILES", tools | {str(tool)})
        assert _tracker._tool_thread(frame)
        monkeypatch.setattr(_tracker, "TOOL_FILES", tools)
        assert not _tracker._tool_thread(frame)
    finally:
        socket.create_connection(listener.getsockname()).close()
        server.join()
        listener.close()


def _opened_and_dropped(path: Path) -> None:
    local = open(path, "w")  # noqa: SIM115 - dropped as this function returns
    local.write("x")


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # the files warn that they were collected open
def test_a_leak_the_collector_ended_names_the_programs_line_that_dropped_it(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """The line to fix is where the program let go of it: one rebinding the last reference, one
    whose call returned with it as a local; a reference cycle the collector freed has no line."""
    _opened_and_dropped(tmp_path / "local.txt")
    returned = line() - 1
    kept = open(tmp_path / "rebound.txt", "w")  # noqa: SIM115
    kept = None
    rebound = line() - 1
    cycle: list[object] = [open(tmp_path / "cycle.txt", "w")]  # noqa: SIM115
    cycle.append(cycle)
    del cycle
    gc.collect()
    me = sys._getframe().f_code.co_qualname
    dropped = {
        Path(leak.details["path"]).name: (leak.state, leak.details.get("dropped_at"))
        for leak in leakwatch.leaks("file")
    }
    here = os.path.relpath(HERE)
    assert dropped == {
        "local.txt": ("collected", f"{here}:{returned} in {me}"),
        "rebound.txt": ("collected", f"{here}:{rebound} in {me}"),
        "cycle.txt": ("collected", None),
    }
    assert kept is None
    text = Report(leakwatch.leaks("file")).to_text(width=300)
    assert f"  last reference dropped at {here}:{rebound} in {me}\n" in text
