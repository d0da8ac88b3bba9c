"""pexpect and ptyprocess: a spawn never closed is one entry at the program's line, holding its
pseudo-terminal and its child, not a file on /dev/ptmx at ptyprocess's line."""

from __future__ import annotations

import gc
import os
import signal
import sys
import weakref
from collections.abc import Callable

import pytest

from _leakhelp import Watch, assert_site, ignore_gc_warnings, leakwatch, line, reclaim_pytest
from reclaim.leaks import Leak

pexpect = pytest.importorskip("pexpect")
ptyprocess = pytest.importorskip("ptyprocess")
popen_spawn = pytest.importorskip("pexpect.popen_spawn")
fdpexpect = pytest.importorskip("pexpect.fdpexpect")
replwrap = pytest.importorskip("pexpect.replwrap")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]


def _spawn_cat() -> tuple[object, int]:
    """A spawn of ``cat`` (it runs until its terminal closes), dropped as this returns."""
    child = pexpect.spawn("cat")
    return child, line() - 1


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_spawn_never_closed_is_one_entry_holding_its_terminal_and_child(leakwatch: Watch) -> None:
    """Its terminal was a file "acquired at ptyprocess/ptyprocess.py:160" and its child an
    ``os.forkpty()`` child beside it: one ``pexpect`` entry at the spawn's line now."""
    child = pexpect.spawn("cat", ["-u"])
    at = line() - 1
    try:
        child.sendline("hello")
        child.expect("hello")
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert leak.description == f"pexpect.spawn pid {child.pid}: {child.command} -u not closed" + (
            " (close(), or a with-block)"
        )
        held = {part.kind: part for part in leak.holds}
        assert sorted(held) == ["file", "subprocess"]
        assert held["subprocess"].details["pid"] == child.pid
        assert held["file"].details["fd"] == child.child_fd
    finally:
        child.close(force=True)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_spawn_that_starts_its_child_later_is_still_one_entry(leakwatch: Watch) -> None:
    """A ``pxssh`` is made with no command and spawns its ssh in ``login()``: that terminal and
    child are the spawn's, not a ``ptyprocess.PtyProcess`` entry of their own at ``login()``'s line."""
    child = pexpect.spawn(None)
    at = line() - 1
    child._spawn("cat")  # what pxssh's login() does
    try:
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert sorted(part.kind for part in leak.holds) == ["file", "subprocess"]
    finally:
        child.close(force=True)
    assert leakwatch.leaks() == []


def test_a_spawn_closed_by_its_with_block_leaks_nothing(leakwatch: Watch) -> None:
    with pexpect.spawn("echo", ["done"]) as child:
        child.expect(pexpect.EOF)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_spawn_waited_for_but_never_closed_still_holds_its_terminal(leakwatch: Watch) -> None:
    """``wait()`` reaps the child, the terminal stays open: the spawn, holding only that."""
    child = pexpect.spawn("echo", ["done"])
    at = line() - 1
    try:
        child.expect(pexpect.EOF)
        child.wait()
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert [part.kind for part in leak.holds] == ["file"]
    finally:
        child.close()
    assert leakwatch.leaks() == []


def _dropped_and_collected(leakwatch: Watch, make: Callable[[], tuple[object, int]]) -> tuple[Leak, int]:
    """The one leak of what *make* makes, dropped unclosed and collected: checked to be a
    ``pexpect`` entry the collector closed, at the line that made it; and its child's pid."""
    child, at = make()
    pid: int = child.pid  # type: ignore[attr-defined]
    del child
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("pexpect", "collected")
    assert_site(leak, at)
    return leak, pid


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_spawn_dropped_unclosed_is_collected_at_its_line(leakwatch: Watch) -> None:
    """ptyprocess's ``__del__`` closes the terminal and kills the child: the spawn is the entry,
    closed by the garbage collector, its terminal under it (not a file the test never opened)."""
    leak, pid = _dropped_and_collected(leakwatch, _spawn_cat)
    assert leak.description.startswith(f"pexpect.spawn pid {pid}: ")
    assert [part.kind for part in leak.holds] == ["file"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_pty_process_dropped_unclosed_is_one_entry_with_its_command(leakwatch: Watch) -> None:
    """A ``PtyProcess`` of the program's own (ptyprocess's tests never close theirs): it is
    given its command after it is made, and its entry names it."""
    proc = ptyprocess.PtyProcess.spawn(["true"])
    at = line() - 1
    pid = proc.pid
    assert proc.wait() == 0
    del proc
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("ptyprocess", "collected")
    assert_site(leak, at)
    assert leak.description.startswith(f"ptyprocess.PtyProcess pid {pid}: ")
    assert leak.description.endswith("true not closed (close())")
    assert [part.kind for part in leak.holds] == ["file"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("cls", ["PtyProcess", "PtyProcessUnicode"])
def test_a_pty_process_left_running_is_one_entry_holding_its_child(leakwatch: Watch, cls: str) -> None:
    """``PtyProcess.spawn()`` forks its child before it makes the instance: the child was an entry
    of its own beside it (jupyter_server's terminals)."""
    proc = getattr(ptyprocess, cls).spawn(["sleep", "30"])
    at = line() - 1
    try:
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("ptyprocess", "open")
        assert_site(leak, at)
        assert sorted(part.kind for part in leak.holds) == ["file", "subprocess"]
    finally:
        proc.close(force=True)
    assert leakwatch.leaks() == []


def test_a_pty_process_closed_leaks_nothing(leakwatch: Watch) -> None:
    proc = ptyprocess.PtyProcess.spawn(["true"])
    proc.close()
    assert leakwatch.leaks() == []


def _fails() -> None:
    raise ValueError("refused")


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_pty_process_spawn_that_raised_is_said_to_have_dropped_it(leakwatch: Watch) -> None:
    """``PtyProcess.spawn()`` made the process, then raised (``preexec_fn`` failed in the child):
    ptyprocess dropped it unclosed, which the entry says, as the program never had it to close."""
    with pytest.raises(ValueError, match="refused"):
        ptyprocess.PtyProcess.spawn(["true"], preexec_fn=_fails)
    at = line() - 1
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("ptyprocess", "collected")
    assert_site(leak, at)
    assert "PtyProcess.spawn() raised ValueError and dropped it unclosed" in leak.description
    assert leak.details["spawn_raised"] == "ValueError"


class _Program:
    """The program's own class: its methods take ``self`` as pexpect's do."""

    def spawn_twice_and_drop_the_first(self) -> bool:
        """Whether the first spawn, closed, is gone the moment its last name is, a second made
        meanwhile (whose making looks at this frame)."""
        first = pexpect.spawn("true")
        first.expect(pexpect.EOF)
        first.close()
        second = pexpect.spawn("true")
        gone = weakref.ref(first)
        first = None
        freed = gone() is None
        second.expect(pexpect.EOF)
        second.close()
        return freed


def test_a_spawn_made_in_the_programs_method_dies_with_its_last_name(leakwatch: Watch) -> None:
    """Finding the program's line read ``f_locals`` of the program's method that made the spawn:
    on 3.11 and 3.12 that left a snapshot of its locals on its frame, which kept what it dropped
    alive until its next spawn (pexpect's test_destructor saw its descriptors freed late)."""
    assert _Program().spawn_twice_and_drop_the_first()
    assert leakwatch.leaks() == []


def _finish(child: object) -> None:
    """What finishes a PopenSpawn: its stdin closed, its output read to EOF (its reader thread
    has queued that last), its child waited for, its stdout closed."""
    child.sendeof()  # type: ignore[attr-defined]
    child.expect(pexpect.EOF)  # type: ignore[attr-defined]
    child.wait()  # type: ignore[attr-defined]
    child.proc.stdout.close()  # type: ignore[attr-defined]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_popen_spawn_never_finished_is_one_entry_holding_its_child_pipes_and_thread(
    leakwatch: Watch,
) -> None:
    """It was a child, two pipe files and a thread, none naming it: one ``pexpect`` entry at the
    program's line now, saying what finishes it (it has no ``close()``)."""
    child = popen_spawn.PopenSpawn(["cat"])
    at = line() - 1
    try:
        child.sendline("hello")
        child.expect("hello")
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert leak.description == (
            f"pexpect.popen_spawn.PopenSpawn pid {child.pid}: cat not finished "
            "(wait(), sendeof(), proc.stdout.close(): a PopenSpawn has no close())"
        )
        assert leak.details["unfinished"] == ["wait()", "sendeof()", "proc.stdout.close()"]
        held = sorted((part.kind, part.details.get("pipe")) for part in leak.holds)
        assert held == [("file", "stdin"), ("file", "stdout"), ("subprocess", None), ("thread", None)]
    finally:
        _finish(child)
    assert leakwatch.leaks() == []


def test_a_popen_spawn_finished_leaks_nothing_at_once(leakwatch: Watch) -> None:
    """Finished, its reader thread (past EOF, maybe not yet ended) is no leak: a check with no
    grace period finds nothing, so none waits for it."""
    child = popen_spawn.PopenSpawn(["echo", "done"])
    _finish(child)
    assert child.exitstatus == 0
    assert leakwatch.leaks(grace=0.0) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_popen_spawn_waited_for_still_holds_its_pipes(leakwatch: Watch) -> None:
    """``wait()`` collects the child's status, its pipes stay open: nothing of pexpect's closes
    its stdout."""
    child = popen_spawn.PopenSpawn(["echo", "done"])
    at = line() - 1
    try:
        child.expect(pexpect.EOF)
        assert child.wait() == 0
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert leak.details["unfinished"] == ["sendeof()", "proc.stdout.close()"]
        assert sorted(part.details["pipe"] for part in leak.holds) == ["stdin", "stdout"]
    finally:
        _finish(child)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_popen_spawn_killed_but_not_waited_for_holds_its_zombie(leakwatch: Watch) -> None:
    """``kill()`` sends a signal and collects nothing: the child is a zombie until ``wait()``."""
    child = popen_spawn.PopenSpawn(["cat"])
    at = line() - 1
    try:
        child.kill(signal.SIGKILL)
        child.expect(pexpect.EOF)  # the child is gone: its stdout is at its end
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert leak.details["unfinished"][0] == "wait()"
        [zombie] = [part for part in leak.holds if part.kind == "subprocess"]
        assert zombie.details["pid"] == child.pid
    finally:
        _finish(child)
    assert child.signalstatus == signal.SIGKILL
    assert leakwatch.leaks() == []


def _popen_spawn_true() -> tuple[object, int]:
    """A PopenSpawn of ``true``, read to EOF (its reader thread has let go of it), returned."""
    child = popen_spawn.PopenSpawn(["true"])
    at = line() - 1
    child.expect(pexpect.EOF)
    child._read_thread.join()
    return child, at


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_popen_spawn_dropped_unfinished_is_collected_at_its_line(leakwatch: Watch) -> None:
    """Its child unwaited and its pipes closed by the collector: the spawn is the entry, what
    its collection closed under it, not a subprocess and two files."""
    leak, pid = _dropped_and_collected(leakwatch, _popen_spawn_true)
    # wait() is missing whatever the order; its pipes may be closed before its __del__ runs (the
    # collector finalizes a cycle in no set order), so the pipes' calls may or may not be listed.
    assert leak.description.startswith(f"pexpect.popen_spawn.PopenSpawn pid {pid}: true not finished (wait()")
    assert sorted(part.kind for part in leak.holds) == ["file", "file", "subprocess"]


def test_a_popen_spawn_finished_then_dropped_leaks_nothing(leakwatch: Watch) -> None:
    child, _ = _popen_spawn_true()
    _finish(child)
    del child
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_fdspawn_reports_the_descriptor_at_the_line_that_opened_it(leakwatch: Watch) -> None:
    """An ``fdspawn`` wraps the program's descriptor: never closed, it is the program's
    ``os.pipe()`` at its line, not pexpect's; ``fdspawn.close()`` closes it."""
    read, write = os.pipe()
    at = line() - 1
    os.write(write, b"hello\n")
    os.close(write)
    wrapped = fdpexpect.fdspawn(read)
    wrapped.expect("hello")
    [leak] = leakwatch.leaks()
    assert leak.details["fd"] == read
    assert_site(leak, at)
    wrapped.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_repl_wrapper_never_closed_is_its_spawn_at_the_programs_line(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``replwrap.python()`` makes the spawn in replwrap: the entry is at the line that called it."""
    monkeypatch.setenv("PYTHON_BASIC_REPL", "1")  # 3.13's own REPL draws its prompt in colours
    repl = replwrap.python(sys.executable)
    at = line() - 1
    try:
        assert repl.run_command("6 * 7").strip() == "42"
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("pexpect", "open")
        assert_site(leak, at)
        assert leak.details["class"] == "pexpect.spawn"
    finally:
        repl.child.close(force=True)
    assert leakwatch.leaks() == []


def test_a_spawn_a_failing_tests_traceback_keeps_is_one_entry_with_its_terminal(
    pytester: pytest.Pytester,
) -> None:
    """The traceback of the test's failure keeps the spawn, which goes to that failure, reported
    at the end: its terminal and child went with it. They stayed the test's, the terminal a bare
    /dev/ptmx file failing its teardown, and the spawn, at the end, held it again (pytest-timeout's
    xfail tests)."""
    pytester.makepyfile(
        """
        import pexpect

        def test_fails_keeping_its_spawn():
            child = pexpect.spawn("/bin/sh -c 'echo hi'")
            assert b"nope" in child.read()
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(failed=1)
    out = result.stdout.str()
    assert "ERROR at teardown" not in out, out
    result.stdout.fnmatch_lines(
        ["*leaks found after their test ended*", "pexpect.spawn pid *", "  holds file fd * -> /dev/ptmx*"]
    )
    assert out.count("/dev/ptmx") == 1, out
