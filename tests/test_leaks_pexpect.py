"""pexpect and ptyprocess: a spawn never closed is one entry at the program's line, holding its
pseudo-terminal and its child, not a file on /dev/ptmx at ptyprocess's line."""

from __future__ import annotations

import gc
import weakref

import pytest

from _leakhelp import Watch, assert_site, ignore_gc_warnings, leakwatch, line

pexpect = pytest.importorskip("pexpect")
ptyprocess = pytest.importorskip("ptyprocess")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below


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


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_spawn_dropped_unclosed_is_collected_at_its_line(leakwatch: Watch) -> None:
    """ptyprocess's ``__del__`` closes the terminal and kills the child: the spawn is the entry,
    closed by the garbage collector, its terminal under it (not a file the test never opened)."""
    child, at = _spawn_cat()
    pid = child.pid  # type: ignore[attr-defined]
    del child
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("pexpect", "collected")
    assert_site(leak, at)
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
