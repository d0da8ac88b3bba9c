"""Tracked, an ``open()`` file is what CPython's would be: its name, and where its ResourceWarning points."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import socket
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import Watch, leakwatch, line, reclaim_run_prog

__all__ = ["leakwatch"]  # the fixture, imported for pytest

HERE = os.path.abspath(__file__)

# Line 6 drops a file unclosed: the garbage collector closes it, with a ResourceWarning.
PROGRAM = """\
    import pathlib
    path = pathlib.Path("data.txt")
    path.write_text("x", encoding="utf-8")
    with open(path, encoding="utf-8") as text, open(path, "rb") as binary:
        print(repr(text.name), repr(binary.name))
    data = open(path, encoding="utf-8").read()
"""


def test_a_path_opened_keeps_a_str_name_and_its_resource_warning_names_the_programs_line(
    tmp_path: Path,
) -> None:
    """``open(Path)``'s name is a str, not the Path; the warning is the program's line, not reclaim's file."""
    out = reclaim_run_prog(tmp_path, PROGRAM, python_options=("-W", "always::ResourceWarning"))
    assert out.stdout == "'data.txt' 'data.txt'\n"
    warning = [line for line in out.stderr.splitlines() if "ResourceWarning: unclosed" in line]
    assert len(warning) == 1, out.stderr
    assert "prog.py:6: ResourceWarning: unclosed file <_io.TextIOWrapper name='data.txt'" in warning[0]
    assert "acquired at prog.py:6" in out.stderr


def test_a_tracked_file_is_built_of_the_exact_io_classes_and_freed_by_reference_counting(
    tmp_path: Path,
) -> None:
    """CPython reads and writes fastest through layers of the exact ``io`` classes (over a
    subclass, every call looked ``closed`` up by name: 1.6x slower writes, 1.9x slower lines).
    The hooks that see the collector close a file leave no cycle behind: a file closed, or
    dropped unclosed, is gone at once, as without tracking."""
    program = """\
        import gc, io, sys, weakref
        gc.disable()  # reference counting alone, as for most files
        for mode in ("r", "rb", "w", "wb", "r+b", "a"):
            f = open("data.txt", mode)
            assert type(f) is not io.FileIO
            raw = getattr(f, "buffer", f).raw
            assert type(raw) is io.FileIO, (mode, type(raw))
            f.close()
            gone = weakref.ref(raw)
            del f, raw
            assert gone() is None, mode
        f = open("data.txt", "rb", buffering=0)
        gone = weakref.ref(f)
        del f  # closed by its finalizer at once: reported as closed by the collector
        assert gone() is None
        dropped = open("data.txt")
        gone = weakref.ref(dropped.buffer.raw)
        del dropped  # closed by its finalizer at once: reported as closed by the collector
        assert gone() is None
        print("ok")
    """
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    out = reclaim_run_prog(tmp_path, program)
    assert out.stdout == "ok\n"
    assert "leaked 2 resources (2 file)" in out.stderr, out.stderr
    for lineno in (12, 16):  # the two dropped unclosed: unbuffered, and text
        assert f"acquired at prog.py:{lineno} in <module>" in out.stderr, out.stderr
    assert out.stderr.count("(closed by the garbage collector, not the program)") == 2, out.stderr


def test_a_tracked_file_closed_from_c_code_with_no_python_frame_closes(tmp_path: Path) -> None:
    """C code may call a tracked file's close with no Python frame at all (a C object's
    destructor at shutdown; here a thread whose only callables are C ones): the close must
    still close it, and raise nothing (its caller was looked up, and there was none)."""
    program = """\
        import _thread, collections, operator
        f = open("data.txt", "rb")
        done = _thread.allocate_lock()
        done.acquire()
        # deque(map(call, ...)) runs both in C: f.close's caller has no Python frame.
        _thread.start_new_thread(collections.deque, (map(operator.call, [f.close, done.release]),))
        assert done.acquire(timeout=30), "the close raised"
        print(f.closed)
    """
    (tmp_path / "data.txt").write_text("x", encoding="utf-8")
    out = reclaim_run_prog(tmp_path, program)
    assert out.stdout == "True\n", out.stderr
    assert "no leaks" in out.stderr, out.stderr


def test_a_builtin_kept_in_a_class_body_is_called_as_it_is_not_bound_to_the_instance(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """A builtin function is no method: kept in a class body, ``self._close(fd)`` calls
    ``os.close(fd)`` (CPython's test_tempfile) and ``self.open(path)`` calls ``io.open(path)``
    (its test_file). The replacements tracking puts in their place are not bound either, are one
    object wherever set (``builtins.open is io.open``), and pickle as the builtins they stand for."""

    class Holder:
        builtin_open = open
        open = io.open  # what test_file keeps
        _close = os.close
        _open = os.open

    holder = Holder()
    path = tmp_path / "data.txt"
    path.write_text("x", encoding="utf-8")
    fd = holder._open(path, os.O_RDONLY)
    f = holder.open(path, "rb")
    at = line() - 1
    g = holder.builtin_open(path, encoding="utf-8")
    try:
        assert [leak.site.lineno for leak in leakwatch.leaks("file") if leak.site] == [at, at + 2]
        assert [leak.kind for leak in leakwatch.leaks()] == ["fd", "file", "file"]
    finally:
        f.close()
        g.close()
        holder._close(fd)
    assert leakwatch.leaks() == []
    assert builtins.open is io.open  # the identity CPython has
    for replaced in (open, os.close, os.open):
        assert pickle.loads(pickle.dumps(replaced)) is replaced


#: What wraps a descriptor in a file that does not own it, as programs spell it.
NOT_OWNING: dict[str, Callable[[int], Any]] = {
    "open": lambda fd: open(fd, closefd=False),  # noqa: SIM115 - never closed, on purpose
    "open-unbuffered": lambda fd: open(fd, "rb", buffering=0, closefd=False),  # noqa: SIM115
    "io.open": lambda fd: io.open(fd, "rb", closefd=False),  # noqa: SIM115, UP020
    "os.fdopen": lambda fd: os.fdopen(fd, closefd=False),
}


@pytest.mark.parametrize("wrap", NOT_OWNING)
def test_a_file_over_a_descriptor_it_does_not_own_is_never_reported_its_owner_is(
    leakwatch: Watch, tmp_path: Path, wrap: str
) -> None:
    """``open(fd, closefd=False)`` closes nothing: kept or dropped it is no leak, while the
    descriptor's owner left open (an ``os.open``, a socket) is reported at its own line."""
    path = tmp_path / "data.txt"
    path.write_text("x", encoding="utf-8")
    fd = os.open(path, os.O_RDONLY)
    at = line() - 1
    kept = NOT_OWNING[wrap](fd)
    NOT_OWNING[wrap](fd)  # dropped at once
    try:
        leak = leakwatch.one("fd")
        assert (leak.frames[0].filename, leak.frames[0].lineno) == (HERE, at)
        assert leakwatch.leaks("file") == []
    finally:
        os.close(fd)
    assert leakwatch.leaks() == []  # the owner closed: nothing left, the wrapper kept or not
    with socket.socket() as sock:
        over_socket = NOT_OWNING[wrap](sock.fileno())
        assert [leak.kind for leak in leakwatch.leaks()] == ["socket"]
    assert leakwatch.leaks() == []
    del kept, over_socket


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("buffering", [0, -1])
@pytest.mark.parametrize("how", ["kept", "dropped"])
def test_a_file_opened_over_a_descriptor_names_what_the_descriptor_points_at(
    leakwatch: Watch, tmp_path: Path, how: str, buffering: int
) -> None:
    """``os.fdopen()`` of a ``mkstemp()`` file unlinked at once (gunicorn's worker heartbeat
    file) names the file it points at, left open or closed by the collector, not a bare fd."""
    fd, path = tempfile.mkstemp(dir=tmp_path)
    os.unlink(path)
    target = f"{path} (deleted)" if os.path.isdir("/proc/self/fd") else None
    f = os.fdopen(fd, "w+b", buffering)
    if how == "dropped":
        with pytest.warns(ResourceWarning, match="unclosed file"):
            del f
    try:
        leak = leakwatch.one("file")
        assert leak.state == ("open" if how == "kept" else "collected")
        assert leak.details["fd"] == fd and leak.details["path"] is None
        if target is not None:
            assert leak.details["target"] == target
            assert leak.description == f"fd {fd} -> {target} (mode 'w+b')"
        else:  # a descriptor table without link names: the device and inode, still not bare
            assert leak.details["target"]
    finally:
        if how == "kept":
            f.close()


def test_pyfakefs_fakes_open_and_os_functions_while_tracking(leakwatch: Watch, tmp_path: Path) -> None:
    """pyfakefs fakes the functions it finds as C or Python functions: reclaim's stand-ins for
    ``open`` (a bound method) and ``os.close`` (a staticmethod) are neither, so its ``fs``
    fixture left the real ones in place, and 121 of its tests used the real file system. So
    in a module that imported them by name while tracking. Once it stops, they are reclaim's
    again."""
    fake_filesystem_unittest = pytest.importorskip("pyfakefs.fake_filesystem_unittest")
    (tmp_path / "by_name.py").write_text(
        "from io import open as io_open\n"
        "from os import close as os_close\n"
        "\n"
        "def read(path):\n"
        "    with io_open(path) as f:\n"
        "        return f.read()\n",
        encoding="utf-8",
    )
    import importlib
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        by_name = importlib.import_module("by_name")
    finally:
        sys.path.remove(str(tmp_path))
    stand_ins = (builtins.open, io.open, os.close, by_name.io_open, by_name.os_close)
    import _io

    assert builtins.open is not _io.open and by_name.io_open is builtins.open  # tracking's
    fake = "/reclaim-pyfakefs-test/f.txt"
    try:
        with fake_filesystem_unittest.Patcher() as patcher:
            patcher.fs.create_file(fake, contents="faked")
            with open(fake) as f:
                assert f.read() == "faked"
            assert by_name.read(fake) == "faked"
            assert by_name.os_close is not stand_ins[-1]  # faked too
        assert not os.path.exists(fake)
        now = (builtins.open, io.open, os.close, by_name.io_open, by_name.os_close)
        assert all(a is b for a, b in zip(now, stand_ins, strict=True))
    finally:
        sys.modules.pop("by_name", None)
    assert leakwatch.leaks() == []


def test_a_warning_the_c_open_issues_names_the_programs_line_not_reclaims(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Arguments only the C ``open()`` takes (line buffering asked of a binary file) go to it,
    and what it warns of names the Python frame that called it: the program's line, as without
    reclaim, not reclaim's ``open()``."""
    path = tmp_path / "data.bin"
    path.write_bytes(b"x")
    with pytest.warns(RuntimeWarning, match="line buffering") as caught:
        f = open(path, "rb", buffering=1)  # noqa: SIM115
    at = line() - 1
    f.close()
    assert [(w.filename, w.lineno) for w in caught] == [(HERE, at)]
    assert leakwatch.leaks() == []


@pytest.mark.skipif(sys.version_info < (3, 12), reason="os.fork() warns of threads from 3.12 on")
def test_os_forks_warning_of_threads_names_the_programs_line_not_reclaims(leakwatch: Watch) -> None:
    """3.12 on, ``os.fork()`` in a process with other threads warns about the frame that called
    it: the program's line, not reclaim's wrapper (a pytest warnings summary pointed into
    reclaim's ``_children.py``)."""
    release = threading.Event()
    other = threading.Thread(target=release.wait)
    other.start()
    try:
        with pytest.warns(DeprecationWarning, match="multi-threaded") as caught:
            pid = os.fork()
            if pid == 0:
                os._exit(0)
        at = line() - 3
        os.waitpid(pid, 0)
    finally:
        release.set()
        other.join()
    assert [(w.filename, w.lineno) for w in caught] == [(HERE, at)]
    assert leakwatch.leaks() == []
