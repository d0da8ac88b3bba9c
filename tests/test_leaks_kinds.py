"""Every resource kind, leaked for real and detected at its exact line; handled right, not reported."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import errno
import functools
import gc
import http.client
import http.server
import importlib
import io
import json
import mmap
import multiprocessing
import multiprocessing.pool
import os
import pty
import queue
import select
import selectors
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import timeit
import types
import urllib.parse
import urllib.request
import warnings
import weakref
from collections.abc import Callable, Iterator
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Any

import pytest

import reclaim
from _leakhelp import (
    RUN_TIMEOUT,
    Watch,
    assert_site,
    ignore_gc_warnings,
    leakwatch,
    lease_site_in_a_task_made_in_a_task,
    line,
    loop_in_a_thread,
    python_prog,
    reclaim_run_json,
    task_site_in_a_task_made_in_a_task,
    untracked_epoll,
)

__all__ = ["leakwatch"]  # the fixture, imported for pytest

HERE = os.path.abspath(__file__)


# -- files ----------------------------------------------------------------------------------


def _collected(leakwatch: Watch, kind: str, at: int, **options: object) -> reclaim.leaks.Leak:
    """The one leak of *kind*, acquired at line *at*, closed by the garbage collector."""
    leak = leakwatch.one(kind, **options)
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc
    return leak


def test_file_left_open_is_reported_at_the_open_line(leakwatch: Watch, tmp_path: Path) -> None:
    f = open(tmp_path / "a.txt", "w")  # noqa: SIM115
    at = line() - 1
    leak = leakwatch.one("file")
    assert_site(leak, at)
    assert leak.state == "open" and not leak.closed_by_gc
    assert leak.details["path"] == str(tmp_path / "a.txt") and leak.details["mode"] == "w"
    assert leak.thread == threading.current_thread().name
    f.close()
    assert leakwatch.leaks("file") == []


def test_files_closed_by_with_close_or_pathlib_are_not_reported(leakwatch: Watch, tmp_path: Path) -> None:
    path = tmp_path / "b.txt"
    with open(path, "w") as f:
        f.write("x")
    g = open(path, "rb", buffering=0)  # noqa: SIM115
    g.close()
    path.write_text("y")
    assert path.read_text() == "y"
    with path.open() as h:
        h.read()
    with os.fdopen(os.open(path, os.O_RDONLY)) as k:
        k.read()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("mode", ["r", "rb", "rb0"])
def test_file_dropped_unclosed_is_reported_as_closed_by_the_gc(
    leakwatch: Watch, tmp_path: Path, mode: str
) -> None:
    path = tmp_path / "c.txt"
    path.write_text("data")
    buffering = 0 if mode == "rb0" else -1
    open(path, mode[:2], buffering=buffering).read()  # noqa: SIM115
    at = line() - 1
    _collected(leakwatch, "file", at)


class _Wrapper:
    """A library-style wrapper whose __del__ closes the file it opened (unbuffered, as
    ptyprocess opens a pexpect child's terminal)."""

    def __init__(self, path: Path, buffering: int = -1) -> None:
        self.file = open(path, "rb", buffering=buffering)  # noqa: SIM115

    def close(self) -> None:
        self.file.close()

    def __del__(self) -> None:
        self.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize(
    "opener", ["gzip", "gzip-text", "bz2-text", "lzma-text", "zipfile", "wrapper", "wrapper-unbuffered"]
)
def test_file_a_dropped_wrapper_closes_from_its_finalizer_is_reported_as_closed_by_the_gc(
    leakwatch: Watch, tmp_path: Path, opener: str
) -> None:
    """A GzipFile (IOBase's finalizer calls its close), a ZipFile (its __del__ does) or any
    wrapper whose __del__ closes its file: the program never closed it. In a text mode, the
    ``TextIOWrapper`` over a GzipFile finalizes, not the GzipFile, and it went unseen
    (python-can's ``.log.gz`` logger)."""
    import bz2
    import gzip
    import lzma
    import zipfile

    path = tmp_path / "data"
    with gzip.open(path, "wb") if opener == "gzip" else zipfile.ZipFile(path, "w") as made:
        if opener != "gzip":
            made.writestr("a.txt", "x")  # type: ignore[union-attr]
    if opener == "gzip":
        gzip.open(path).read()  # noqa: SIM115
        at = line() - 1
    elif opener.endswith("-text"):
        {"gzip": gzip, "bz2": bz2, "lzma": lzma}[opener[:-5]].open(tmp_path / "text", "wt").write("x")
        at = line() - 1
    elif opener == "zipfile":
        zipfile.ZipFile(path).namelist()
        at = line() - 1
    else:
        _Wrapper(path, buffering=0 if opener == "wrapper-unbuffered" else -1)
    leak = leakwatch.one("file")
    assert leak.state == "collected" and leak.closed_by_gc
    if opener.startswith("wrapper"):
        assert leak.frames[0].lineno == _Wrapper.__init__.__code__.co_firstlineno + 1
    else:
        assert_site(leak, at)


@pytest.mark.parametrize("module", ["gzip", "bz2", "lzma"])
def test_a_compressed_text_file_closed_is_not_reported(leakwatch: Watch, tmp_path: Path, module: str) -> None:
    opener = importlib.import_module(module).open
    with opener(tmp_path / "a", "wt") as made:
        made.write("x")
    made = opener(tmp_path / "b", "wt")
    made.write("x")
    made.close()
    with pytest.raises(ValueError, match="raised in the block"), opener(tmp_path / "c", "wt") as made:
        raise ValueError("raised in the block")
    assert leakwatch.leaks() == []


class _Forwarding:
    """A file wrapper that forwards attributes to its file and raises (not AttributeError) once
    closed, as gevent's ``FileObject`` does."""

    def __init__(self, path: Path) -> None:
        self._io: Any = open(path)  # noqa: SIM115

    def __getattr__(self, name: str) -> Any:
        if self._io is None:
            raise ValueError("I/O operation on closed wrapper")
        return getattr(self._io, name)

    def close(self) -> None:
        io_, self._io = self._io, None
        io_.close()


def test_file_a_forwarding_wrapper_closes_is_closed_without_asking_the_wrapper(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Whether a ``close()`` runs under IOBase's finalizer was asked of its object's attributes:
    a wrapper's ``__getattr__`` raised out of its own ``close()``, which left the file open,
    reported as an untracked descriptor (gevent's ``test__fileobject``)."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    _Forwarding(path).close()
    assert leakwatch.leaks() == []


class _Releaser:
    """A library-style owner whose ``__del__`` closes its files through methods of public names
    (pytest-xprocess's ``XProcessResources``: ``__del__`` -> ``release()``), kept in a reference
    cycle (as pytest's config keeps pytest-xprocess's), so only the collector frees it."""

    def __init__(self, path: Path) -> None:
        self.files = [open(path, "rb")]  # noqa: SIM115
        self.me = self

    def release(self) -> None:
        for f in self.files:
            f.close()

    def drop_files(self) -> None:
        self.release()

    def __del__(self) -> None:
        self.drop_files()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_file_an_owner_in_a_cycle_closes_from_its_finalizer_through_public_methods_is_closed_by_the_gc(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """``__del__`` -> ``drop_files()`` -> ``release()`` -> close, run by the collector, is not
    the program's close."""
    import gc

    path = tmp_path / "data"
    path.write_bytes(b"x")
    _Releaser(path)
    gc.collect()
    leak = leakwatch.one("file")
    assert leak.state == "collected" and leak.closed_by_gc
    assert leak.frames[0].lineno == _Releaser.__init__.__code__.co_firstlineno + 1


class _Reader:
    """A finalizer that opens a file and closes it itself (as logging a dropped task's error
    reads source lines), in an object kept in a reference cycle."""

    def __init__(self, path: Path) -> None:
        self.path, self.me, self.read = path, self, b""

    def load(self) -> None:
        with open(self.path, "rb") as f:
            self.read = f.read()

    def __del__(self) -> None:
        self.load()


def test_file_a_finalizer_opens_and_closes_during_a_collection_is_not_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Opened and closed by the finalizer the collector runs: its own file, released."""
    import gc

    path = tmp_path / "data"
    path.write_bytes(b"x")
    _Reader(path)
    gc.collect()
    assert leakwatch.leaks("file") == []


class _Farewell:
    """Writes a line in its ``__del__``, with what it opens and closes there: files, a socket,
    a sqlite3 connection, a descriptor."""

    def __init__(self, path: Path, *, cycle: bool) -> None:
        self.path = path
        self.me = self if cycle else None

    def _note(self) -> None:  # a helper the finalizer calls
        with open(self.path, "ab", buffering=0) as f:
            f.write(b"bye\n")

    def __del__(self) -> None:
        with open(self.path, "a") as f:
            f.write("bye\n")
        self._note()
        with socket.socket() as s:
            s.setblocking(False)
        connection = sqlite3.connect(":memory:")
        connection.close()
        os.close(os.open(self.path, os.O_RDONLY))


@pytest.mark.parametrize("cycle", [False, True], ids=["its-last-reference", "the-collector"])
def test_what_a_del_opens_and_closes_itself_is_not_reported(
    leakwatch: Watch, tmp_path: Path, cycle: bool
) -> None:
    """A ``with`` in a ``__del__`` (or a helper it calls) releases its own file, socket, ..., under
    the finalizer though it runs: the finalizer's own resources, not the collector's doing."""
    import gc

    path = tmp_path / "log"
    _Farewell(path, cycle=cycle)
    gc.collect()
    assert path.read_text() == "bye\nbye\n"
    assert leakwatch.leaks() == []


def test_file_an_owner_the_program_releases_is_not_reported(leakwatch: Watch, tmp_path: Path) -> None:
    """The same owner released by the program's call, then collected: nothing to report."""
    import gc

    path = tmp_path / "data"
    path.write_bytes(b"x")
    owner = _Releaser(path)
    owner.release()
    del owner
    gc.collect()
    assert leakwatch.leaks("file") == []


def test_file_a_wrapper_closes_when_the_program_closes_it_is_not_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    import gzip

    path = tmp_path / "data.gz"
    with gzip.open(path, "wb") as made:
        made.write(b"x")
    reader = gzip.open(path)  # noqa: SIM115 - closed by hand: the close under test
    reader.read()
    reader.close()
    _Wrapper(path).close()
    _Wrapper(path, buffering=0).close()
    with open(path, "rb", buffering=0) as raw:  # closed by the with-block, from C
        raw.read()
    unbuffered = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by hand
    unbuffered.close()
    assert leakwatch.leaks() == []


class _Cycle:
    def __init__(self, path: Path) -> None:
        self.me = self
        self.file = open(path, "w")  # noqa: SIM115


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_file_opened_with_a_str_subclass_is_named_by_its_path(leakwatch: Watch, tmp_path: Path) -> None:
    """matplotlib's ``findfont()`` returns a ``FontPath(str)``: a file opened with one was named
    by its repr, ``FontPath('/.../a.ttf', 0)``, which an allow pattern for the path missed."""

    class FontPath(str):
        def __repr__(self) -> str:
            return f"FontPath({str(self)!r}, 0)"

    path = tmp_path / "a.ttf"
    path.write_bytes(b"x")
    f = open(FontPath(path), "rb")  # noqa: SIM115
    try:
        assert leakwatch.one("file").description == f"{path} (mode 'rb')"
    finally:
        f.close()


def test_open_run_by_c_code_with_no_python_frame_opens(tmp_path: Path) -> None:
    """A thread started on ``open`` itself has no Python frame under it: an ``open()`` off the
    fast path (an explicit buffer size) raised "call stack is not deep enough" under tracking."""
    path = tmp_path / "a.txt"
    path.write_text("x")
    script = tmp_path / "started.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import _thread, time
            _thread.start_new_thread(open, ({str(path)!r}, "r", 1))
            for _ in range(1000):
                if not _thread._count():
                    break
                time.sleep(0.01)
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "reclaim", "run", str(script)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "Error" not in done.stderr, done.stderr


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_file_in_a_reference_cycle_is_reported_when_collected(leakwatch: Watch, tmp_path: Path) -> None:
    _Cycle(tmp_path / "d.txt")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("file")
    assert leak.state == "collected"
    assert leak.frames[0].lineno == _Cycle.__init__.__code__.co_firstlineno + 2
    assert (leak.frames[1].filename, leak.frames[1].lineno) == (HERE, at)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("how", ["collected", "dropped", "called"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["text", "gzip"])
def test_file_a_weakref_finalize_closes_for_an_owner_that_died_is_a_leak(
    leakwatch: Watch, tmp_path: Path, how: str, wrapped: bool
) -> None:
    """``weakref.finalize(owner, f.close)``: run by a collection for an owner dropped in a
    reference cycle, the collector closed the file (a socket was reported so, a file was not).
    So it did for an owner dropped by its last reference, as for one whose ``__del__`` closes
    it (such an owner dropped was not reported: asyncinotify's ``Inotify``). The finalizer
    called is the program's close."""
    import gzip

    owner = _Cycle(tmp_path / "owner.txt")
    owner.file.close()
    f = gzip.open(tmp_path / "d.gz", "wb") if wrapped else open(tmp_path / "d.txt", "w")  # noqa: SIM115
    at = line() - 1
    finalizer = weakref.finalize(owner, f.close)
    del f
    if how == "called":
        finalizer()
    elif how == "dropped":
        owner.me = None  # type: ignore[assignment]
    del owner
    gc.collect()
    if how == "called":
        assert leakwatch.leaks() == []
    else:
        leak = leakwatch.one("file")
        assert leak.state == "collected"
        assert_site(leak, at)


def test_closed_file_in_a_reference_cycle_is_not_reported(leakwatch: Watch, tmp_path: Path) -> None:
    _Cycle(tmp_path / "e.txt").file.close()
    gc.collect()
    assert leakwatch.leaks() == []


# -- raw descriptors ------------------------------------------------------------------------


def test_os_open_pipe_and_dup_left_open_are_reported(leakwatch: Watch, tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("x")
    fd = os.open(path, os.O_RDONLY)
    at_open = line() - 1
    r, w = os.pipe()
    at_pipe = line() - 1
    d = os.dup(fd)
    at_dup = line() - 1
    try:
        found = {leak.details["fd"]: leak for leak in leakwatch.leaks("fd")}
        assert set(found) == {fd, r, w, d}
        assert_site(found[fd], at_open)
        assert found[fd].details["target"] == str(path)
        assert_site(found[r], at_pipe)
        assert_site(found[w], at_pipe)
        assert found[r].details["target"].startswith("pipe:")
        assert_site(found[d], at_dup)
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        for n in (fd, r, w, d):
            os.close(n)
    assert leakwatch.leaks() == []


@pytest.mark.skipif(sys.platform == "win32", reason="fcntl is POSIX's")
def test_a_descriptor_fcntl_duplicates_is_reported_at_its_line(leakwatch: Watch) -> None:
    """``fcntl.fcntl(fd, F_DUPFD, n)`` (and ``F_DUPFD_CLOEXEC``) makes a descriptor: it was an
    untracked one, with no line. Other commands (``F_GETFL`` ...) make none."""
    import fcntl

    r, w = os.pipe()
    d = fcntl.fcntl(r, fcntl.F_DUPFD, 100)
    at_dupfd = line() - 1
    e = fcntl.fcntl(w, fcntl.F_DUPFD_CLOEXEC, 0)
    at_cloexec = line() - 1
    assert fcntl.fcntl(r, fcntl.F_GETFD) == fcntl.FD_CLOEXEC  # a command that makes none
    try:
        found = {leak.details["fd"]: leak for leak in leakwatch.leaks("fd")}
        assert set(found) == {r, w, d, e}
        assert d >= 100
        assert_site(found[d], at_dupfd)
        assert_site(found[e], at_cloexec)
        assert found[d].details["call"] == found[e].details["call"] == "fcntl.fcntl"
        assert found[d].details["target"].startswith("pipe:")
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        for n in (r, w, d, e):
            os.close(n)
    assert leakwatch.leaks() == []


def test_os_dup2_onto_a_free_number_is_reported_and_onto_an_open_one_is_not(leakwatch: Watch) -> None:
    """``os.dup2(fd, fd2)`` opens *fd2* when nothing had that number (an untracked descriptor
    with no line, before); onto an open number it only makes that one point elsewhere."""
    r, w = os.pipe()
    free = max(r, w) + 50
    while True:  # the first number above the pipe's that nothing holds
        try:
            os.fstat(free)
        except OSError:
            break
        free += 1
    got = os.dup2(r, free, inheritable=False)
    at = line() - 1
    os.dup2(w, r)  # r now points at the write end: no acquisition
    try:
        found = {leak.details["fd"]: leak for leak in leakwatch.leaks("fd")}
        assert set(found) == {r, w, free}
        assert got == free and found[free].details["call"] == "os.dup2"
        assert_site(found[free], at)
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        for n in (r, w, free):
            os.close(n)
    assert leakwatch.leaks() == []


def test_os_dup2_putting_a_closed_standard_stream_back_is_not_reported(tmp_path: Path) -> None:
    """CPython's test_subprocess closes stdin/stdout/stderr and ``os.dup2()``s saved copies back:
    the standard stream is the process's again, no descriptor of the program's line."""
    report, _ = reclaim_run_json(
        tmp_path,
        """\
        import os
        saved = os.dup(0)
        os.close(0)
        os.dup2(saved, 0)
        os.close(saved)
        """,
    )
    assert report["leaks"] == []


def _interrupted(
    at: Callable[[types.FrameType], bool],
    operation: Callable[[], object],
    error: BaseException | type[BaseException],
) -> None:
    """Run *operation*, raising *error* at the first return of a C function in a frame *at*
    accepts, as a signal arriving then would (a profiler stands in for the signal)."""
    pending: list[BaseException | type[BaseException]] = [error]

    def interrupt(frame: types.FrameType, event: str, _: object) -> None:
        if event == "c_return" and pending and at(frame):
            raise pending.pop()

    sys.setprofile(interrupt)
    try:
        operation()
    finally:
        sys.setprofile(None)


def _in_reclaim(frame: types.FrameType) -> bool:
    return frame.f_code.co_filename.endswith(os.path.join("reclaim", "leaks", "_fds.py"))


@pytest.mark.parametrize("call", ["open", "pipe"])
def test_a_keyboard_interrupt_as_a_descriptor_comes_back_reaches_a_caller_holding_it(
    leakwatch: Watch, tmp_path: Path, call: str
) -> None:
    """Code that must not lose a descriptor takes it where no bytecode runs between the call and
    its record, ``opened.extend(map(os.open, ...))``, so a KeyboardInterrupt finds it recorded
    (filelock: its lock marker is removed). One that came as the call returned came in
    reclaim's wrapper, and the descriptor was lost. It comes in the caller now, which holds it."""
    from itertools import starmap

    opened: list[Any] = []
    if call == "open":
        path = str(tmp_path / "marker")
        args: tuple[Any, ...] = (path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    else:
        args = ()
    make = getattr(os, call)
    # SIGINT's default handler, as in a program run from a terminal: a background job (``cmd &``)
    # starts with SIGINT ignored, and there an interrupt is raised from the wrapper, the
    # descriptor closed (see the test below).
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            _interrupted(_in_reclaim, lambda: opened.extend(starmap(make, (args,))), KeyboardInterrupt)
    finally:
        signal.signal(signal.SIGINT, handler)
    assert len(opened) == 1, "the caller holds what the call made"
    for fd in opened if call == "open" else opened[0]:
        os.close(fd)
    assert leakwatch.leaks() == []


def test_a_keyboard_interrupt_with_sigint_not_the_defaults_closes_the_descriptor(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """With SIGINT ignored (a background job) or handled by the program, no signal will raise a
    KeyboardInterrupt again in the caller: the one that came is raised from the wrapper, the
    descriptor closed first, as if the call had failed."""
    opened: list[int] = []
    path = str(tmp_path / "marker")
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt):
            _interrupted(
                _in_reclaim,
                lambda: opened.extend(map(os.open, (path,), (os.O_WRONLY | os.O_CREAT,))),
                KeyboardInterrupt,
            )
    finally:
        signal.signal(signal.SIGINT, handler)
    assert opened == []
    assert leakwatch.leaks() == []


def test_another_interruption_as_a_descriptor_comes_back_closes_it(leakwatch: Watch, tmp_path: Path) -> None:
    """What cannot be raised again in the caller is raised from the wrapper, the descriptor it
    cannot hand over closed first: as if the call had failed, and nothing left open."""
    opened: list[int] = []
    path = str(tmp_path / "marker")
    with pytest.raises(RuntimeError, match="interrupted"):
        _interrupted(
            _in_reclaim,
            lambda: opened.extend(map(os.open, (path,), (os.O_WRONLY | os.O_CREAT,))),
            RuntimeError("interrupted"),
        )
    assert opened == []
    assert leakwatch.leaks() == []


def test_an_interrupt_as_os_close_notes_the_close_still_closes(leakwatch: Watch, tmp_path: Path) -> None:
    """``os.close`` notes the release, then closes: a KeyboardInterrupt that came while it noted
    left the descriptor open, where the C close can only have closed it."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    fd = os.open(path, os.O_RDONLY)
    with pytest.raises(KeyboardInterrupt):
        _interrupted(_in_reclaim, lambda: os.close(fd), KeyboardInterrupt)
    with pytest.raises(OSError) as closed:
        os.fstat(fd)
    assert closed.value.errno == errno.EBADF
    assert leakwatch.leaks() == []


class _RawOwner:
    """An object that keeps a raw descriptor and closes it in its ``__del__`` (as filelock's
    locks and ptyprocess's processes do with theirs)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        os.close(self.fd)

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()


class _RawIOOwner(io.RawIOBase):
    """An io class keeping a raw descriptor, closed by its ``close()``, which IOBase's finalizer
    calls for one dropped unclosed (pyserial's ``Serial``)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)

    def close(self) -> None:
        if self.fd != -1:
            os.close(self.fd)
            self.fd = -1
        super().close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("how", ["closed", "dropped", "in-a-cycle"])
@pytest.mark.parametrize("owner_class", [_RawOwner, _RawIOOwner], ids=["__del__", "IOBase"])
def test_descriptor_an_owners_finalizer_closes_is_collected(
    leakwatch: Watch, tmp_path: Path, how: str, owner_class: type[_RawOwner | _RawIOOwner]
) -> None:
    """A raw descriptor closed by its owner's ``__del__``, or by the ``close()`` IOBase's finalizer
    calls (a pyserial ``Serial`` dropped unclosed), the owner dropped unclosed: the collector's
    doing, as for files and sockets (it was taken for the program's close: the IOBase one was no
    leak), dropped at the program's line, not at the owner's ``close()``."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    owner = owner_class(path)
    if how == "closed":
        owner.close()
        owner.fd = -1
    elif how == "in-a-cycle":
        owner.itself = owner  # type: ignore[union-attr]
    del owner
    dropped = line() - 1
    gc.collect()
    if how == "closed":
        assert leakwatch.leaks() == []
    else:
        leak = leakwatch.one("fd")
        assert leak.state == "collected" and leak.details["target"] == str(path)
        assert leak.frames[0].lineno == owner_class.__init__.__code__.co_firstlineno + 1
        if how == "dropped":
            assert leak.details["dropped_at"].split(" in ")[0].endswith(f"test_leaks_kinds.py:{dropped}")


class _DeepScanner:
    """Opens and closes a descriptor of its own from its ``__del__``, the open deeper under it
    than ``in_finalizer()`` looks and the close nearer (a dropped filelock
    ``StrictSoftFileLock``'s release opens its claim directories 13 frames under its ``__del__``)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __del__(self) -> None:
        self._down(8)

    def _down(self, n: int) -> None:
        if n:
            self._down(n - 1)
        else:
            self._scan()

    def _scan(self) -> None:
        fd = self._open()
        os.close(fd)  # 10 frames under __del__: in_finalizer() sees it

    def _open(self) -> int:
        return self._open_here()

    def _open_here(self) -> int:
        return os.open(self.path, os.O_RDONLY)  # 12 frames under __del__: in_finalizer() does not


def test_descriptor_a_finalizer_opens_and_closes_itself_deep_under_it_is_no_leak(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Its close, under the ``__del__``, is by a function its open ran under: the finalizer's own
    descriptor, as for files and sockets, not one the collector closed for a dropped owner."""
    path = tmp_path / "f.txt"
    path.write_text("x")
    _DeepScanner(path)  # dropped at once: its __del__ runs here
    gc.collect()
    assert leakwatch.leaks() == []


def test_descriptor_handed_to_a_file_object_belongs_to_it(leakwatch: Watch) -> None:
    r, w = os.pipe()
    with os.fdopen(r, "rb") as reader, os.fdopen(w, "wb") as writer:
        writer.write(b"x")
        writer.flush()
        assert reader.read(1) == b"x"
        assert {leak.kind for leak in leakwatch.leaks()} == {"file"}
    assert leakwatch.leaks() == []


def test_descriptor_opened_by_c_code_is_reported_as_untracked(leakwatch: Watch, tmp_path: Path) -> None:
    ctypes = pytest.importorskip("ctypes")
    if not os.path.isdir("/proc/self/fd") and not os.path.isdir("/dev/fd"):
        pytest.skip("no descriptor table to read here")
    libc = ctypes.CDLL(None, use_errno=True)
    path = tmp_path / "g.txt"
    path.write_text("x")
    with open(path) as f:
        fd = libc.dup(f.fileno())  # a descriptor no Python object knows about
    try:
        found = leakwatch.leaks("untracked-fd")
        assert [leak.details["fd"] for leak in found] == [fd]
        assert found[0].frames == () and found[0].site is None
        if os.path.isdir("/proc/self/fd"):
            assert found[0].details["target"] == str(path)
    finally:
        os.close(fd)
    assert leakwatch.leaks("untracked-fd") == []


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="the kernel names what a descriptor is on")
def test_a_random_device_c_code_keeps_open_is_no_leak(leakwatch: Watch) -> None:
    """libqpdf (in pikepdf's wheel) opens ``/dev/urandom`` the first time it needs random bytes
    and keeps that descriptor for the process: it was the leak of whichever test encrypted
    first. A random device C code opened is not reported; another device it opened still is."""
    ctypes = pytest.importorskip("ctypes")
    libc = ctypes.CDLL(None, use_errno=True)
    fds = [libc.open(path, os.O_RDONLY) for path in (b"/dev/urandom", b"/dev/random", b"/dev/zero")]
    try:
        assert all(fd >= 0 for fd in fds)
        assert [leak.details["target"] for leak in leakwatch.leaks("untracked-fd")] == ["/dev/zero"]
    finally:
        for fd in fds:
            os.close(fd)


@pytest.mark.skipif(not os.path.isdir("/proc/self/net"), reason="the kernel lists sockets in /proc/self/net")
def test_a_socket_c_code_opened_says_what_it_connects(leakwatch: Watch) -> None:
    """A socket a C library made (pylibmc's connection to memcached) was "fd 12 ->
    socket:[681469]", nothing more: its ends, as the kernel lists them, are in its entry now."""
    ctypes = pytest.importorskip("ctypes")
    libc = ctypes.CDLL(None, use_errno=True)
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        fd = libc.socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        try:
            address = struct.pack("=H", socket.AF_INET) + struct.pack(
                "!H4s8x", port, socket.inet_aton("127.0.0.1")
            )
            assert libc.connect(fd, ctypes.c_char_p(address), len(address)) == 0
            accepted, (_, local_port) = server.accept()
            accepted.close()
            [leak] = leakwatch.leaks("untracked-fd")
            ends = f"tcp 127.0.0.1:{local_port} -> 127.0.0.1:{port}"
            assert leak.details["socket"] == ends
            assert leak.description == f"fd {fd} -> {leak.details['target']} ({ends})"
        finally:
            os.close(fd)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_what_is_acquired_under_frozen_time_has_its_real_time(leakwatch: Watch, tmp_path: Path) -> None:
    """freezegun replaces ``time.time`` in every module, reclaim's too: a file opened under
    ``freeze_time`` was "acquired 6929338.5 min ago" (httpretty's suite). reclaim's own modules
    are on freezegun's ignore list now, so its clock stays the real one."""
    freezegun = pytest.importorskip("freezegun")
    before = time.time()
    with freezegun.freeze_time("2013-10-04 04:20:00"):
        assert time.time() < before  # frozen, for the program
        handle = open(tmp_path / "x", "w")  # noqa: SIM115 - left open on purpose
        try:
            [leak] = leakwatch.leaks("file")
        finally:
            handle.close()
    assert before <= leak.acquired_at <= time.time()
    assert leak.age >= 0


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_clock_the_program_patches_is_not_reclaims(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ZODB's tests swap ``time.time`` for a fake that advances a second per call, under a lock:
    reclaim called it from its hooks (so the fake clock ran faster under tracking) and from its
    collection callback (a collection started while the fake held its lock hung the test)."""
    calls: list[int] = []
    real = time.time
    lock = threading.RLock()  # ZODB's is a Lock: with one, the old code hung here instead of failing

    def fake_time() -> float:
        with lock:
            calls.append(1)
            gc.collect()  # any allocation may start one while the lock is held
            return real() + len(calls)

    # An earlier test's garbage first: a task it left pending, collected while the fake clock is
    # in place, has asyncio log "Task was destroyed", and the log record reads the clock.
    gc.collect()
    monkeypatch.setattr(time, "time", fake_time)
    handle = open(tmp_path / "x", "w")  # noqa: SIM115 - left open on purpose
    try:
        thread = threading.Thread(target=int)
        thread.start()
        thread.join()
        gc.collect()
        [leak] = leakwatch.leaks("file")
    finally:
        handle.close()
        monkeypatch.undo()
    assert calls == []
    assert leak.acquired_at <= time.time()


@pytest.fixture
def held_fd() -> Iterator[int]:
    """A descriptor open before the tracker under test starts: part of its baseline."""
    fd = os.open(os.devnull, os.O_RDONLY)
    yield fd
    with contextlib.suppress(OSError):
        os.close(fd)


def test_untracked_descriptor_given_a_number_of_the_baseline_is_reported(
    held_fd: int, leakwatch: Watch, tmp_path: Path
) -> None:
    # The kernel hands out the lowest free number: a descriptor open when tracking started,
    # closed since, has its number reused (watchdog's inotify descriptor went unreported so).
    ctypes = pytest.importorskip("ctypes")
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("no descriptor table to read here")
    libc = ctypes.CDLL(None, use_errno=True)
    with open(tmp_path / "h.txt", "w") as f:
        os.close(held_fd)
        assert libc.dup2(f.fileno(), held_fd) == held_fd  # C code's descriptor, that number
    try:
        found = leakwatch.leaks("untracked-fd")
        assert [(leak.details["fd"], leak.details["target"]) for leak in found] == [
            (held_fd, str(tmp_path / "h.txt"))
        ]
    finally:
        os.close(held_fd)
    assert leakwatch.leaks("untracked-fd") == []


# -- sockets and selectors ------------------------------------------------------------------


def test_a_detached_socket_leaves_its_descriptor_to_the_caller(leakwatch: Watch) -> None:
    sock = socket.socket()
    at = line() - 1
    fd = sock.detach()
    try:
        leak = leakwatch.one("fd")
        assert_site(leak, at)
        assert leak.details["call"] == "socket.detach"
    finally:
        os.close(fd)
    assert leakwatch.leaks() == []


def test_a_socket_that_borrows_a_descriptor_gives_it_back_where_it_was_acquired(leakwatch: Watch) -> None:
    """A socket made on a descriptor then detached (anyio's ``from_socket(fd)`` checks one that
    way) leaves it acquired at the line that made it, not at the borrower's line."""
    fd = socket.socket().detach()
    at = line() - 1
    borrower = socket.socket(fileno=fd)
    assert borrower.detach() == fd
    try:
        leak = leakwatch.one("fd")
        assert_site(leak, at)
        assert leak.details["call"] == "socket.detach"
    finally:
        os.close(fd)
    assert leakwatch.leaks() == []


def test_a_socket_wrapped_in_ssl_is_one_leak(leakwatch: Watch) -> None:
    # ssl makes the SSLSocket on the plain socket's descriptor, then detaches the plain one:
    # one socket was reported twice (the SSLSocket, and the descriptor "socket.detach" left).
    import ssl

    wrapped = ssl.create_default_context().wrap_socket(
        socket.socket(), server_hostname="example.invalid", do_handshake_on_connect=False
    )
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["socket"]
    finally:
        wrapped.close()
    assert leakwatch.leaks() == []


def test_a_tls_socket_says_it_is_tls_and_a_listening_one_that_it_listens(leakwatch: Watch) -> None:
    """A socket ssl wrapped reads as TLS; a server's, wrapped once it listens, as listening too."""
    import ssl

    plain = socket.create_server(("127.0.0.1", 0))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).wrap_socket(plain, server_side=True)
    client = ssl.create_default_context().wrap_socket(
        socket.socket(), server_hostname="example.invalid", do_handshake_on_connect=False
    )
    try:
        listening, connecting = leakwatch.leaks("socket")
        assert listening.details["tls"] is True
        assert listening.details["listening"] is True
        assert " TLS 127.0.0.1:" in listening.description
        assert listening.description.endswith(f", listening (fd {server.fileno()})")
        assert connecting.details["tls"] is True
        assert connecting.description.startswith("AF_INET/SOCK_STREAM TLS (fd")
    finally:
        server.close()
        client.close()
    assert leakwatch.leaks() == []


def test_a_socket_accepted_then_wrapped_in_tls_is_still_accepted_from_its_client(leakwatch: Watch) -> None:
    """``conn, _ = server.accept(); ctx.wrap_socket(conn, server_side=True)``: the SSLSocket, made
    on the accepted descriptor at the wrap's line, read as a connection "->" the client's port.
    It is the accepted connection still, at the accept's line, and says it is TLS."""
    import ssl

    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        at_accept = line() - 1
        wrapped = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).wrap_socket(
            conn, server_side=True, do_handshake_on_connect=False
        )
        try:
            [leak] = [found for found in leakwatch.leaks("socket") if found.details.get("tls")]
            assert_site(leak, at_accept)
            assert leak.details["accepted"] is True
            assert f"accepted from {leak.details['peer']}" in leak.description
        finally:
            wrapped.close()
            client.close()
    assert leakwatch.leaks() == []


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets")
def test_an_accepted_unix_socket_says_it_was_accepted(leakwatch: Watch, tmp_path: Path) -> None:
    """Its client has no name: it read exactly as the listening socket (aiomisc's worker pool)."""
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        server.listen()
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        conn, _ = server.accept()
        at = line() - 1
        try:
            [leak] = [found for found in leakwatch.leaks("socket") if found.details.get("accepted")]
            assert_site(leak, at)
            assert leak.description == f"AF_UNIX/SOCK_STREAM {path}, accepted (fd {conn.fileno()})"
        finally:
            conn.close()
            client.close()
    assert leakwatch.leaks() == []


def test_socket_left_open_is_reported(leakwatch: Watch) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    at = line() - 1
    try:
        leak = leakwatch.one("socket")
        assert_site(leak, at)
        assert leak.details["family"] == "AF_INET"
    finally:
        s.close()
    assert leakwatch.leaks() == []


def test_accepted_and_socketpair_sockets_are_tracked(leakwatch: Watch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        at_server = line() - 1
        client = socket.create_connection(server.getsockname())
        client_address = client.getsockname()
        conn, _ = server.accept()
        at_accept = line() - 1
        a, b = socket.socketpair()
        at_pair = line() - 1
        client.close()
        b.close()
        found = leakwatch.leaks("socket")
        assert [leak.site.lineno for leak in found if leak.site] == [at_server, at_accept, at_pair]
        assert found[1].details["local"] == "{}:{}".format(*server.getsockname())
        assert found[1].details["peer"] == "{}:{}".format(*client_address)
        conn.close()
        a.close()
    assert leakwatch.leaks() == []


def test_socket_a_librarys_accept_made_is_blamed_on_the_listening_sockets_line(leakwatch: Watch) -> None:
    """asyncio's server accepts in a loop callback (no program frame on the stack): the connection
    a handler kept is blamed on the program's start_server() line, not on the asyncio.run() line
    that happens to be outermost. The program's own accept() keeps its line (test above)."""
    kept: list[asyncio.StreamWriter] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kept.append(writer)

    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        at = line() - 1
        _, client = await asyncio.open_connection(*server.sockets[0].getsockname()[:2])
        while not kept:
            await asyncio.sleep(0)
        client.close()
        await client.wait_closed()
        try:
            accepted = [leak for leak in leakwatch.leaks("socket") if "peer" in leak.details]
            assert [leak.site.lineno for leak in accepted if leak.site] == [at], accepted
        finally:
            kept[0].close()
            await kept[0].wait_closed()
            server.close()  # (3.12 on: wait_closed() waits for the connections too)
            await server.wait_closed()

    asyncio.run(main())
    assert leakwatch.leaks("socket") == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_socket_dropped_unclosed_is_reported_as_collected(leakwatch: Watch) -> None:
    socket.socket()
    at = line() - 1
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.state == "collected"
    assert (leak.details["family"], leak.details["type"]) == ("AF_INET", "SOCK_STREAM")


class _SocketProxy:
    """A handle whose ``__del__`` closes the socket its manager keeps (supervisor's socket
    manager): dropping the last handle is how the socket is given back."""

    def __init__(self, manager: list[socket.socket]) -> None:
        self.manager = manager

    def __del__(self) -> None:
        self.manager[0].close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_socket_a_handles_del_closes_names_that_finalizer_not_a_drop_of_the_socket(leakwatch: Watch) -> None:
    """Closed by a finalizer as its owner went: the collector's doing, as ever, but the socket
    itself is still referenced, so "last reference dropped at" the handle's del read as false."""
    manager = [socket.socket()]
    handle = _SocketProxy(manager)
    del handle
    at = line() - 1
    leak = leakwatch.one("socket")
    assert leak.state == "collected" and manager[0].fileno() == -1
    assert leak.details["closed_by"] == "_SocketProxy.__del__"
    text = reclaim.leaks.Report((leak,)).to_text()
    closed_by = [row for row in text.splitlines() if row.startswith("  closed by ")]
    assert closed_by == [
        "  closed by _SocketProxy.__del__(), run as the last reference to that object was dropped at "
        f"{leak.details['dropped_at']}"
    ], text
    assert leak.details["dropped_at"].split(" in ")[0].endswith(f"test_leaks_kinds.py:{at}")
    assert "last reference dropped at" not in text


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_accepted_socket_dropped_unclosed_keeps_its_ends(leakwatch: Watch) -> None:
    # A server's usual leak: the connection a handler dropped. Its ends were read when it was
    # accepted, since a socket the collector closed has none left to ask for.
    with socket.create_server(("127.0.0.1", 0)) as server:
        client = socket.create_connection(server.getsockname())
        server.accept()
        at = line() - 1
        [leak] = [leak for leak in leakwatch.leaks("socket") if leak.state == "collected"]
        assert_site(leak, at)
        assert leak.details["local"] == "{}:{}".format(*server.getsockname())
        assert leak.details["peer"] == "{}:{}".format(*client.getsockname())
        # The server's end of a connection: its peer is the client it was accepted from, not
        # where it connected to ("local -> peer", as a client's socket reads).
        assert leak.details["accepted"] is True
        assert leak.description == "AF_INET/SOCK_STREAM {} accepted from {} (fd {})".format(
            leak.details["local"], leak.details["peer"], leak.details["fd"]
        )
        [own] = [
            other for other in leakwatch.leaks("socket") if other.details.get("peer") == leak.details["local"]
        ]
        assert "accepted" not in own.details  # the client's own socket reads as a connection made
        client.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("how", ["create_connection", "connect_ex"])
def test_connected_socket_dropped_unclosed_keeps_the_address_it_connected_to(
    leakwatch: Watch, how: str
) -> None:
    # A client's usual leak (a dropped asyncio stream, a redis-py client): the garbage collector
    # closed it before it was reported, so it read as a bare "AF_INET/SOCK_STREAM (fd 7)".
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()
        if how == "create_connection":
            socket.create_connection(address)
        else:
            assert socket.socket().connect_ex(address) == 0
        at = line() - 3 if how == "create_connection" else line() - 1
        accepted, _ = server.accept()
        accepted.close()
        [leak] = [leak for leak in leakwatch.leaks("socket") if leak.site and leak.site.lineno == at]
        assert leak.state == "collected"
        assert leak.details["peer"] == "{}:{}".format(*address)
        assert leak.description.endswith(" -> {}:{} (fd {})".format(*address, leak.details["fd"]))


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("how", ["connect", "connect_ex"])
def test_socket_whose_connect_failed_says_it_never_connected(leakwatch: Watch, how: str) -> None:
    """rpyc's ``socket_backoff_connect`` leaves the socket of a refused ``connect()`` open: it
    read as ``-> 127.0.0.1:18878``, a connection made and never closed."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()
    sock = socket.socket()  # nothing listens there any more: refused
    at = line() - 1
    if how == "connect":
        with pytest.raises(ConnectionRefusedError):
            sock.connect(address)
    else:
        assert sock.connect_ex(address) == errno.ECONNREFUSED
    error = "ConnectionRefusedError" if how == "connect" else "ECONNREFUSED"
    expected = " -> {}:{} (never connected: connect() raised {}) (fd {})"  # after the kernel's bind
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.description.endswith(expected.format(*address, error, sock.fileno()))
    assert leak.details["connect_error"] == error
    del sock
    gc.collect()
    leak = leakwatch.one("socket")
    assert leak.state == "collected"
    assert leak.description.endswith(expected.format(*address, error, leak.details["fd"]))


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_client_bound_to_any_address_dropped_unclosed_keeps_the_local_address_it_connected_from(
    leakwatch: Watch,
) -> None:
    """``create_connection(source_address=("", 0))`` (paho connects every client so) binds to
    0.0.0.0 first, and the kernel picks the local address at ``connect()``: the collector
    closed it before the report, which named its local end 0.0.0.0."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()
        client = socket.create_connection(address, source_address=("", 0))
        at = line() - 1
        local = "{}:{}".format(*client.getsockname())
        del client
        accepted, _ = server.accept()
        accepted.close()
        [leak] = [leak for leak in leakwatch.leaks("socket") if leak.site and leak.site.lineno == at]
        assert leak.state == "collected"
        assert (leak.details["local"], leak.details["peer"]) == (local, "{}:{}".format(*address))


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_listening_socket_dropped_unclosed_keeps_the_address_it_was_bound_to(leakwatch: Watch) -> None:
    """A server never closed (an aiohttp site, an asyncio server): the collector closes its
    socket before the report, which still names the address it listened on, and says it
    listened (a socket bound to a local address alone read like any other)."""
    server = socket.socket()
    at = line() - 1
    server.bind(("127.0.0.1", 0))
    server.listen()
    address = "{}:{}".format(*server.getsockname())
    del server
    gc.collect()
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.details["local"] == address and leak.details["listening"]
    assert leak.description == f"AF_INET/SOCK_STREAM {address}, listening (fd {leak.details['fd']})"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_server_socket_left_open_says_it_listens_a_socket_only_bound_does_not(leakwatch: Watch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.socket() as bound:
        bound.bind(("127.0.0.1", 0))
        found = {leak.details["fd"]: leak for leak in leakwatch.leaks("socket")}
        served, only_bound = found[server.fileno()], found[bound.fileno()]
        assert served.description.endswith(f"{server.getsockname()[1]}, listening (fd {server.fileno()})")
        assert served.details["listening"] is True
        assert "listening" not in only_bound.description and "listening" not in only_bound.details
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_socket_never_bound_or_connected_names_no_address(leakwatch: Watch, family: int) -> None:
    """A socket made and left unbound (pymodbus's TLS client with its connect() mocked) read as
    "AF_INET/SOCK_STREAM 0.0.0.0:0", an address it never had: as if listening on every interface."""
    try:
        sock = socket.socket(family)
    except OSError:
        pytest.skip("no IPv6 on this machine")
    try:
        leak = leakwatch.one("socket")
    finally:
        sock.close()
    assert "local" not in leak.details and "peer" not in leak.details
    kind = "AF_INET" if family == socket.AF_INET else "AF_INET6"
    assert leak.description == f"{kind}/SOCK_STREAM (fd {leak.details['fd']})"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_socket_its_resource_warning_keeps_alive_is_still_collected(leakwatch: Watch) -> None:
    """Dropped while warnings are recorded (pytest's ``always::ResourceWarning``), the socket is
    closed by its finalizer but kept by the warning's ``source``: it read as closed by the program."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        sock = socket.socket()
        at = line() - 1
        sock.bind(("127.0.0.1", 0))
        address = "{}:{}".format(*sock.getsockname())
        del sock
        [warning] = caught
        assert isinstance(warning.source, socket.socket)  # alive, its descriptor closed
        leak = leakwatch.one("socket")
        assert_site(leak, at)
        assert leak.state == "collected" and leak.details["local"] == address


class _Client:
    """A client library's connection object that closes what it holds in ``__del__``, as
    redis-py's ``PubSub`` does: dropped unclosed, the garbage collector closes its resources."""

    def __init__(self, make: Callable[[], object]) -> None:
        self.held = make()

    def disconnect(self) -> None:
        self.held.close()

    def __del__(self) -> None:
        self.disconnect()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_socket_its_owners_del_closes_is_closed_by_the_garbage_collector(leakwatch: Watch) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        address = server.getsockname()
        client = _Client(lambda: socket.create_connection(address))
        local = "{}:{}".format(*client.held.getsockname())
        del client
        conn, _ = server.accept()
        conn.close()
        [leak] = [leak for leak in leakwatch.leaks("socket") if leak.state == "collected"]
        assert leak.closed_by_gc
        assert (leak.details["local"], leak.details["peer"]) == (local, "{}:{}".format(*address))
    with socket.create_server(("127.0.0.1", 0)) as server:
        closed = _Client(lambda: socket.create_connection(server.getsockname()))
        closed.disconnect()  # the program's own close: then __del__'s second one is nothing
        del closed
        server.accept()[0].close()
    assert [leak.state for leak in leakwatch.leaks("socket")] == ["collected"]


class _Stream:
    """An RPC library's stream over a socket: a read that meets the end closes it (rpyc's)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def read(self) -> bytes:
        data = self.sock.recv(16)
        if not data:
            self.close()
        return data

    def close(self) -> None:
        self.sock.close()


class _RpcConnection:
    """An RPC connection whose ``__del__`` closes it as its ``close()`` does, with a goodbye
    round trip: rpyc's ``Connection.__del__`` reaches the socket's close ten frames up
    (close, sync_request, AsyncResult.value, wait, serve, recv, read, the stream's close)."""

    def __init__(self, sock: socket.socket) -> None:
        self.stream = _Stream(sock)
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.stream.sock.sendall(b"bye")
        self._request()

    def _request(self) -> None:
        self._wait()

    def _wait(self) -> None:
        self._serve()

    def _serve(self) -> None:
        self._recv()

    def _recv(self) -> None:
        self.stream.read()

    def __del__(self) -> None:
        self.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_socket_an_rpc_connections_del_closes_deep_down_is_closed_by_the_garbage_collector(
    leakwatch: Watch,
) -> None:
    """A close many frames below the ``__del__`` that started it is still the collector's."""
    ours, theirs = socket.socketpair()
    at = line() - 1
    theirs.shutdown(socket.SHUT_WR)  # the peer is gone: the goodbye's answer is the end
    connection = _RpcConnection(ours)
    del ours, connection
    theirs.close()
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc
    ours, theirs = socket.socketpair()
    theirs.shutdown(socket.SHUT_WR)
    closed = _RpcConnection(ours)
    closed.close()  # the program's own close, as deep: not a leak
    del ours, closed
    theirs.close()
    assert len(leakwatch.leaks("socket")) == 1


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_sqlite_connection_its_owners_del_closes_is_closed_by_the_garbage_collector(
    leakwatch: Watch,
) -> None:
    client = _Client(lambda: sqlite3.connect(":memory:"))
    del client
    leak = leakwatch.one("sqlite3")
    assert leak.state == "collected" and leak.closed_by_gc
    closed = _Client(lambda: sqlite3.connect(":memory:"))
    closed.disconnect()
    del closed
    assert len(leakwatch.leaks("sqlite3")) == 1


def test_socket_family_and_type_are_named_when_reported(leakwatch: Watch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM):
        at = line() - 1
        leak = leakwatch.one("socket")
        assert_site(leak, at)
        assert (leak.details["family"], leak.details["type"]) == ("AF_INET", "SOCK_DGRAM")
    # Recorded as numbers, named for the report; one the enum does not know stays a number.
    from reclaim.leaks._sockets import _name

    assert _name(999, socket.AddressFamily) == "999"


def test_reading_a_sockets_ends_calls_no_getsockname_the_program_patched(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the tracker reads of a socket (at bind(), accept(), socketpair()) goes to the kernel,
    never through a ``getsockname``/``getpeername`` the program patched: CPython's
    test_injected_authentication_failure connects from its patched getsockname's first call."""
    calls: list[str] = []
    real_name, real_peer = socket.socket.getsockname, socket.socket.getpeername

    def getsockname(self: socket.socket) -> Any:
        calls.append("getsockname")
        return real_name(self)

    def getpeername(self: socket.socket) -> Any:
        calls.append("getpeername")
        return real_peer(self)

    monkeypatch.setattr(socket.socket, "getsockname", getsockname)
    monkeypatch.setattr(socket.socket, "getpeername", getpeername)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = real_name(server)[1]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            conn, _ = server.accept()
            conn.close()
            client.dup().close()
    a, b = socket.socketpair()
    a.close()
    b.close()
    assert calls == []
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_descriptor_fromfd_duplicated_for_no_socket_is_reported_at_its_line(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """``socket.fromfd()`` duplicates the descriptor (the module's ``dup()``), then makes a socket
    of the copy; given a file, that raises ENOTSOCK and the copy stays open, owned by nobody
    (python-daemon's is_socket_file, in 72 of its tests). It was an untracked descriptor with
    no line; it is an fd at the fromfd() line. Made into a socket, the copy is the socket's."""
    with socket.socket() as sock:
        copy = socket.fromfd(sock.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        copy.close()
        sock.dup().close()
    assert leakwatch.leaks() == []
    with open(tmp_path / "plain.txt", "w") as plain:
        with pytest.raises(OSError):
            socket.fromfd(plain.fileno(), socket.AF_INET, socket.SOCK_STREAM)
        at = line() - 1
        leak = leakwatch.one("fd")
        assert_site(leak, at)
        assert leak.details["call"] == "socket.dup" and leak.details["target"] == str(tmp_path / "plain.txt")
        assert leakwatch.leaks("untracked-fd") == []
        os.close(leak.details["fd"])
    assert leakwatch.leaks() == []


def test_selector_not_closed_is_reported(leakwatch: Watch) -> None:
    sel = selectors.DefaultSelector()
    at = line() - 1
    try:
        assert_site(leakwatch.one("selector"), at)
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        sel.close()
    with selectors.DefaultSelector():
        pass
    assert leakwatch.leaks() == []


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="select.epoll is Linux's")
def test_an_epoll_never_closed_is_reported_at_its_line(leakwatch: Watch) -> None:
    """``select.epoll()`` made by the program (kombu's hub, Twisted's reactor make theirs so) was
    an untracked descriptor with no line; it is reported at its line now. The stand-in behaves
    as the C type for ``isinstance`` and ``fromfd``, and one closed is no leak."""
    poller = select.epoll()
    at = line() - 1
    try:
        leak = leakwatch.one("untracked-fd")
        assert_site(leak, at)
        assert leak.description == f"fd {poller.fileno()} -> anon_inode:[eventpoll] (select.epoll)"
        assert leak.thread == threading.current_thread().name
        text = leakwatch.tracker.report([leak]).to_text()
        assert "first seen" not in text and " ago" in text, text
        assert isinstance(poller, select.epoll) and issubclass(type(poller), select.epoll)
        c_type = select.epoll.__wrapped__  # what a library kept before tracking started
        assert isinstance(poller, c_type)
        with c_type() as raw:
            assert isinstance(raw, select.epoll)
        adopted = select.epoll.fromfd(os.dup(poller.fileno()))
        assert isinstance(adopted, select.epoll)
        assert leakwatch.one("untracked-fd").details["fd"] == poller.fileno()  # adopted: not noted
        adopted.close()
    finally:
        poller.close()
    with select.epoll(1, select.EPOLL_CLOEXEC) as ep:
        assert ep.poll(0) == []
    assert leakwatch.leaks() == []


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="select.epoll is Linux's")
def test_an_epoll_closed_does_not_give_its_line_to_the_next_one_at_its_number(leakwatch: Watch) -> None:
    """Its close is not seen (a C type's method): its number is forgotten once a check finds it
    closed, and an epoll no hook saw made at that number later has no line."""
    first = select.epoll()
    fd = first.fileno()
    first.close()
    assert leakwatch.leaks() == []
    second = untracked_epoll()  # as C code makes one: the lowest free number, the first's
    try:
        assert second.fileno() == fd
        leak = leakwatch.one("untracked-fd")
        assert leak.frames == () and "made by C code" in leak.description
    finally:
        second.close()


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="select.epoll is Linux's")
def test_an_epoll_selectors_epoll_is_the_selectors_own(leakwatch: Watch) -> None:
    """An ``EpollSelector`` whose epoll is the stand-in's (``selectors`` imported while tracking
    takes ``select.epoll`` then) is one entry, the selector, not its epoll besides."""

    class Selector(selectors.EpollSelector):
        _selector_cls = select.epoll  # what EpollSelector has when selectors is imported now

    sel = Selector()
    at = line() - 1
    try:
        # The C type's own: no Python method between an event loop and each of its polls.
        assert type(sel._selector) is select.epoll.__wrapped__  # type: ignore[attr-defined]
        [leak] = leakwatch.leaks()
        assert leak.kind == "selector"
        assert_site(leak, at)
    finally:
        sel.close()
    assert leakwatch.leaks() == []


def test_websockets_sync_server_selector_is_its_own(leakwatch: Watch) -> None:
    """websockets' ``serve_forever()`` drops the selector it waits on, unclosed, when it returns:
    a server shut down and its thread joined (a correct program) leaves nothing."""
    sync_server = pytest.importorskip("websockets.sync.server")
    with sync_server.serve(lambda ws: None, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever)
        thread.start()
        server.shutdown()
        thread.join()
    gc.collect()
    assert leakwatch.leaks() == []


def test_socket_sendfile_selector_is_the_standard_librarys_own(leakwatch: Watch, tmp_path: Path) -> None:
    """``socket.sendfile()`` waits on a ``PollSelector`` it makes and drops unclosed (one with no
    descriptor, CPython's choice): a program that closes its socket and file leaves nothing
    (CPython's test_socket SendfileUsingSendfileTest, every test)."""
    path = tmp_path / "payload"
    path.write_bytes(b"x" * 1000)
    a, b = socket.socketpair()
    with a, b, path.open("rb") as payload:
        a.settimeout(30)  # a blocking socket: sendfile() refuses a non-blocking one
        assert a.sendfile(payload) == 1000
        a.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := b.recv(4096):
            received += chunk
    assert len(received) == 1000
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # serves while the tracker under test looks, on purpose
def test_socketserver_left_serving_is_its_socket_and_thread_not_its_selector(leakwatch: Watch) -> None:
    """A socketserver left serving is its listening socket and the thread serving it: the selector
    ``serve_forever()`` waits on is closed by its own with-block, never a third entry."""
    import socketserver

    looped = threading.Event()

    class Server(socketserver.TCPServer):
        def service_actions(self) -> None:  # called by serve_forever() in its selector's with-block
            looped.set()

    server = Server(("127.0.0.1", 0), socketserver.BaseRequestHandler)
    at_server = line() - 1
    serving = threading.Thread(target=server.serve_forever, args=(0.01,), name="serving")
    serving.start()
    at = line() - 1
    try:
        assert looped.wait(30)
        leaks = {leak.kind: leak for leak in leakwatch.leaks()}
        assert sorted(leaks) == ["socket", "thread"], [leak.headline() for leak in leaks.values()]
        assert_site(leaks["socket"], at_server)
        assert_site(leaks["thread"], at)
    finally:
        server.shutdown()
        serving.join()
        server.server_close()
    assert leakwatch.leaks() == []


# -- sqlite3 ----------------------------------------------------------------------------------


def test_sqlite_connection_not_closed_is_reported_on_every_version(leakwatch: Watch, tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "app.db")
    at = line() - 1
    with conn:  # commits; does not close
        conn.execute("create table t (x)")
    try:
        leak = leakwatch.one("sqlite3")
        assert_site(leak, at)
        assert leak.details["database"] == str(tmp_path / "app.db")
        assert isinstance(conn, sqlite3.Connection)
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        conn.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_sqlite_connection_dropped_unclosed_is_collected(leakwatch: Watch) -> None:
    sqlite3.connect(":memory:").execute("select 1").fetchall()
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("sqlite3")
    assert_site(leak, at)
    assert leak.state == "collected"


@pytest.mark.parametrize("form", ["file:{}?mode=rwc", "file://{}", "file://localhost{}?cache=private"])
def test_sqlite_uri_connection_owns_its_wal_and_shm_descriptors(
    leakwatch: Watch, tmp_path: Path, form: str
) -> None:
    """A database opened by URI in WAL mode: one sqlite3 entry, its -wal/-shm not untracked fds."""
    path = tmp_path / "my app.db"
    conn = sqlite3.connect(form.format(urllib.parse.quote(str(path))), uri=True)
    try:
        conn.execute("pragma journal_mode=wal")
        conn.execute("create table t (x)")
        conn.commit()
        assert (tmp_path / "my app.db-wal").exists()
        assert len(leakwatch.leaks("sqlite3")) == 1
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        conn.close()
    assert leakwatch.leaks() == []


def test_sqlite_file_colon_name_without_uri_is_a_plain_file(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    conn = sqlite3.connect("file:plain.db")  # no uri=True: a file named so, unless SQLite says not
    try:
        conn.execute("pragma journal_mode=wal")
        conn.execute("create table t (x)")
        conn.commit()
        # SQLite built with SQLITE_USE_URI (Debian's) reads it as a URI anyway: either way,
        # the WAL's descriptors are the connection's.
        assert {"file:plain.db-wal", "plain.db-wal"} & set(os.listdir(tmp_path))
        assert leakwatch.leaks("untracked-fd") == []
    finally:
        conn.close()


def test_sqlite_custom_factory_is_kept(leakwatch: Watch) -> None:
    class Mine(sqlite3.Connection):
        pass

    conn = sqlite3.connect(":memory:", factory=Mine)
    assert isinstance(conn, Mine)
    assert len(leakwatch.leaks("sqlite3")) == 1
    conn.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_aiosqlite_connection_dropped_unclosed_is_the_collectors_at_its_connect(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Its ``__del__`` has its worker thread close the sqlite3 connection: the garbage
    collector closed it, not the program; the worker, the connection's machinery, is no leak.
    The line that dropped it is the program's ``del``, not the worker's close (aiosqlite's own
    line when aiosqlite is the program, as in its own suite)."""
    aiosqlite = pytest.importorskip("aiosqlite")

    async def main() -> tuple[threading.Thread, int, int]:
        conn = await aiosqlite.connect(tmp_path / "app.db")
        at = line() - 1
        async with conn.execute("select 1"):  # closes its cursor: the close is not deferred
            pass
        worker = conn._thread
        del conn
        dropped = line() - 1
        gc.collect()  # the connection, if a cycle holds it
        # The worker closes the sqlite3 connection, then ends; it answers on this loop, so
        # the loop must still be open then (aiosqlite's worker raises on a closed one).
        worker.join(timeout=60)
        return worker, at, dropped

    worker, at, dropped = asyncio.run(main())
    assert not worker.is_alive()
    leak = leakwatch.one("sqlite3")
    assert leak.state == "collected"
    assert program_line(leak) == at
    assert f"test_leaks_kinds.py:{dropped} in " in leak.details.get("dropped_at", ""), leak.details
    assert [leak.kind for leak in leakwatch.leaks()] == ["sqlite3"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_aiosqlite_connection_left_open_is_one_leak_at_its_connect_not_a_thread_too(
    leakwatch: Watch, tmp_path: Path
) -> None:
    aiosqlite = pytest.importorskip("aiosqlite")

    async def main() -> None:
        conn = await aiosqlite.connect(tmp_path / "app.db")
        at = line() - 1
        try:
            assert program_line(leakwatch.one("sqlite3")) == at
            assert leakwatch.leaks("thread") == []
        finally:
            await conn.close()
        async with aiosqlite.connect(tmp_path / "app.db") as conn:
            await conn.execute_fetchall("select 1")

    asyncio.run(main())
    assert leakwatch.leaks() == []


def test_aiosqlite_database_attached_in_the_window_is_its_connections_not_an_untracked_fd(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """The connection lives in its worker thread, so it refuses reclaim's query (check_same_thread):
    a database attached to one made before the window (a fixture's) is still the connection's."""
    aiosqlite = pytest.importorskip("aiosqlite")

    async def main() -> list[reclaim.leaks.Leak]:
        async with aiosqlite.connect(tmp_path / "app.db") as conn:
            window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())
            await conn.execute(f"ATTACH DATABASE '{tmp_path / 'other.db'}' AS other")
            await conn.execute("CREATE TABLE other.t (x)")
            return window.leaks()

    assert asyncio.run(main()) == []


def program_line(leak: Any) -> int | None:
    """The line of this file the leak's stack passes through first (its frames start in the library)."""
    return next((frame.lineno for frame in leak.frames if frame.filename == HERE), None)


# -- child processes --------------------------------------------------------------------------


@ignore_gc_warnings
def test_child_never_waited_is_reported_even_as_a_zombie(leakwatch: Watch) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    at = line() - 1
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
    leak = leakwatch.one("subprocess")
    assert_site(leak, at)
    assert leak.details["pid"] == proc.pid and leak.details["exited"] is True
    assert "zombie" in leak.description
    proc.wait()
    assert leakwatch.leaks() == []


def test_zombie_no_thread_can_reap_is_reported_without_waiting_the_grace_period(tmp_path: Path) -> None:
    """A child that exited unwaited, with no other thread to wait for it, cannot stop being
    open during a check's grace period: the check reports it without sleeping through it."""
    # In a process of its own: a pytest-xdist worker always runs execnet's thread, which might
    # be the one to reap it. time.sleep() failing is the probe that the check did not wait.
    out = python_prog(
        tmp_path,
        """
        import os, subprocess, sys, time
        from reclaim.leaks import Tracker

        tracker = Tracker().start()
        mark = tracker.snapshot()
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie

        real_sleep = time.sleep

        def sleep(seconds):
            if sys._getframe(1).f_code.co_name == "_environ":  # another program's process mid-exec,
                return real_sleep(seconds)  # read again (see _lineage): no wait for the zombie
            raise AssertionError("the check waited for a zombie no thread can reap")

        time.sleep = sleep
        # Children only: a descriptor opened where no hook looks is waited for too, while
        # another thread runs Python (see the test below).
        leaks = tracker.leaks(mark, grace=30.0, untracked_fds=False)
        print(sorted((leak.kind, leak.details.get("exited")) for leak in leaks))
        proc.wait()
        tracker.stop()
        """,
    )
    assert out.stdout.strip() == "[('subprocess', True)]"


@pytest.mark.parametrize("other", ["plumbing", "program"])
def test_zombie_is_waited_for_only_while_a_thread_that_may_reap_it_runs(tmp_path: Path, other: str) -> None:
    """Another thread that runs only plumbing (execnet's in a pytest-xdist worker, blocked on
    its pipe) never reaps a zombie: the check reports it at once. One running the program's code
    may (it may poll its children): the check waits, and sees the child reaped."""
    target = "os.read, args=(hold_r, 1)" if other == "plumbing" else "read_forever, args=(hold_r,)"
    out = python_prog(
        tmp_path,
        f"""
        import os, subprocess, sys, threading, time
        from reclaim.leaks import Tracker

        def read_forever(fd):
            os.read(fd, 1)

        hold_r, hold_w = os.pipe()
        threading.Thread(target={target}).start()
        tracker = Tracker().start()
        mark = tracker.snapshot()
        proc = subprocess.Popen([sys.executable, "-c", "pass"])
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        waits = []

        real_sleep = time.sleep

        def sleep(seconds):
            if sys._getframe(1).f_code.co_name == "_environ":  # another program's process mid-exec,
                return real_sleep(seconds)  # read again (see _lineage): no wait for the zombie
            waits.append(seconds)
            proc.wait()  # what the other thread might have done meanwhile

        time.sleep = sleep
        # Children only: a descriptor no hook saw opened is waited for while another thread
        # runs Python, the reading one included (seen once, on 3.13 under load: 7 waits).
        leaks = tracker.leaks(mark, grace=30.0, untracked_fds=False)
        print(len(waits), sorted((leak.kind, leak.details.get("exited")) for leak in leaks))
        proc.wait()
        tracker.stop()
        os.close(hold_w)
        """,
    )
    expected = "0 [('subprocess', True)]" if other == "plumbing" else "1 []"
    assert out.stdout.strip() == expected


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_child_dropped_while_running_says_the_program_never_collected_its_status(leakwatch: Watch) -> None:
    hold_r, hold_w = os.pipe()  # the child runs until this write end closes
    try:
        child = [sys.executable, "-c", f"import os; os.read({hold_r}, 1)"]
        pid = subprocess.Popen(child, pass_fds=[hold_r]).pid
        at = line() - 1
        gc.collect()
        leak = leakwatch.one("subprocess")
        assert_site(leak, at)
        assert (leak.state, leak.details["exited"]) == ("collected", False)
        assert leak.description.endswith(" (still running)")  # the note says it was not waited for
        text = reclaim.leaks.Report((leak,)).to_text()
        assert "(still running) (dropped without a wait: " in text
        # subprocess reaps it in the background (asyncio's child watcher, an asyncio child's):
        # not "nothing collected" it, as it said.
        assert "the program never collected the child's exit status" in text
        assert "closed by the garbage collector" not in text
    finally:
        os.close(hold_w)
        os.close(hold_r)
    with contextlib.suppress(ChildProcessError):  # subprocess may have reaped it already
        os.waitpid(pid, 0)


def test_child_running_a_script_is_described_on_one_line_and_detailed_whole(leakwatch: Watch) -> None:
    script = "import sys\n" + "\n".join(f"x{i} = {i}" for i in range(60))
    with subprocess.Popen([sys.executable, "-c", script]) as proc:
        leak = leakwatch.one("subprocess")  # not waited for yet
        command = leak.description.removeprefix(f"pid {proc.pid}: ").partition(" (")[0]
        assert command.startswith(f"{sys.executable} -c import sys x0 = 0 x1 = 1")
        assert len(command) == 120 and command.endswith("...")
        assert leak.details["args"] == f"{sys.executable} -c {script}"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_trio_child_never_waited_is_one_leak_with_no_untracked_pidfd(leakwatch: Watch) -> None:
    """trio waits for its children through a pidfd of its own (opened with the os.pidfd_open it
    imported first, kept in a FileIO): beside a child never waited for, it was reported as an
    untracked descriptor "opened by code reclaim does not hook"."""
    trio = pytest.importorskip("trio")

    async def main() -> list[str]:
        process = await trio.lowlevel.open_process([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            return [leak.kind for leak in leakwatch.leaks(ignore_kinds={"eventloop"})]
        finally:
            process.kill()
            await process.wait()

    assert trio.run(main) == ["subprocess"]
    assert leakwatch.leaks() == []


def test_waited_children_are_not_reported(leakwatch: Watch) -> None:
    with subprocess.Popen([sys.executable, "-c", "pass"]):
        pass
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    out = subprocess.check_output([sys.executable, "-c", "print(1)"])
    assert out.strip() == b"1"
    assert leakwatch.leaks() == []


def test_a_waited_childs_pipe_left_open_names_its_stream_and_pid(leakwatch: Watch) -> None:
    # Popen opens the pipes before the child exists: they were reported as bare "fd N" files.
    child = subprocess.Popen(
        [sys.executable, "-c", "print('out')"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    at = line() - 3
    try:
        child.stdin.close()  # type: ignore[union-attr]
        assert child.wait() == 0
        leak = leakwatch.one("file")
        assert_site(leak, at)
        assert leak.description == f"stdout pipe of subprocess pid {child.pid} (mode 'rb')"
        assert leak.details["pipe"] == "stdout" and leak.details["pid"] == child.pid
        assert leak.details["path"] is None
        assert leak.details["fd"] == child.stdout.fileno()  # type: ignore[union-attr]
    finally:
        child.stdout.close()  # type: ignore[union-attr]
    assert leakwatch.leaks() == []


def test_popen_waited_for_and_dropped_leaves_no_record_for_a_later_popen_given_its_id(
    leakwatch: Watch,
) -> None:
    """A Popen waited for, then collected (in a reference cycle or not), left its record waiting
    for a ``__del__`` that never took it: the next Popen given its id and dropped unwaited (one
    whose ``__init__`` failed) took it, and the waited child was reported (CPython's test_wait)."""
    from reclaim.leaks import _records

    class Cycle:
        def __init__(self) -> None:
            self.me = self
            self.proc = subprocess.Popen([sys.executable, "-c", "pass"])

    held = Cycle()
    held.proc.wait()
    ident = id(held.proc)
    del held
    gc.collect()
    # Which later object gets the id is the allocator's choice: what must hold is that no record
    # is left waiting under it.
    assert ident not in _records.dying
    # Dropped by its last reference, its __del__ runs before its weak reference is cleared.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    ident = id(proc)
    del proc
    assert ident not in _records.dying
    assert leakwatch.leaks() == []


@ignore_gc_warnings  # CPython's Popen.__del__ says "still running": it never saw the waitpid
def test_child_reaped_with_os_waitpid_is_not_reported(leakwatch: Watch) -> None:
    # Code that manages its children by pid collects their status itself: Popen.returncode
    # stays None, but there is nothing left to wait for.
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    pid, _status = os.waitpid(proc.pid, 0)
    assert pid == proc.pid and proc.returncode is None
    assert leakwatch.leaks() == []
    del proc
    gc.collect()  # dropped with returncode None: still no leak (its status was collected)
    assert leakwatch.leaks() == []


def test_popen_that_made_no_child_is_not_reported(leakwatch: Watch, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Popen whose ``_execute_child`` made no child (pid None) holds none: CPython's
    test_subprocess mocks it (test_repr), and every later check failed on a pid of None."""
    # Replaced: only a stubbed _execute_child leaves a Popen with no child and no error.
    monkeypatch.setattr(subprocess.Popen, "_execute_child", lambda self, *args: None)
    proc = subprocess.Popen(["never-run"])
    assert proc.pid is None and proc.returncode is None
    assert leakwatch.leaks() == []


def _start_child(how: str) -> int:
    """A child made without a Popen, *how* the program asked for it (exits at once)."""
    argv = [sys.executable, "-c", "pass"]
    if how == "fork":
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        return pid
    if how == "posix_spawn":
        return os.posix_spawn(sys.executable, argv, os.environ)
    return os.spawnv(os.P_NOWAIT, sys.executable, argv)


@pytest.mark.parametrize("how", ["fork", "posix_spawn", "spawnv"])
def test_child_made_without_a_popen_and_never_reaped_is_reported(leakwatch: Watch, how: str) -> None:
    # os.fork() left unreaped is a zombie for the program's whole life; nothing reported it.
    pid = _start_child(how)
    at = line() - 1
    try:
        leak = leakwatch.one("subprocess")
        assert leak.frames[0].function == "_start_child"
        assert (leak.frames[1].filename, leak.frames[1].lineno) == (HERE, at)
        assert leak.details["pid"] == pid
        assert "never waited for" in leak.description
    finally:
        os.waitpid(pid, 0)
    assert leakwatch.leaks() == []  # reaped: released


@pytest.mark.parametrize("reap", ["waitpid", "wait4", "waitid"])
def test_child_made_without_a_popen_and_reaped_is_not_reported(leakwatch: Watch, reap: str) -> None:
    pid = _start_child("fork")
    if reap == "waitpid":
        os.waitpid(pid, 0)
    elif reap == "wait4":
        os.wait4(pid, 0)
    else:
        os.waitid(os.P_PID, pid, os.WEXITED)
    assert leakwatch.leaks() == []


def _start_pty_child(how: str) -> int:
    """A child on a pseudo-terminal, *how* the program asked for it (exits at once)."""
    pid, fd = pty.fork() if how == "pty.fork" else os.forkpty()
    if pid == 0:
        os._exit(0)
    os.close(fd)
    return pid


@pytest.mark.parametrize("how", ["pty.fork", "os.forkpty"])
def test_child_on_a_pty_never_reaped_is_reported_at_the_programs_line(leakwatch: Watch, how: str) -> None:
    # pty.fork() is the standard library's, and its os.forkpty() call was skipped as such:
    # its child, the caller's to wait for, was never reported.
    pid = _start_pty_child(how)
    at = line() - 1
    try:
        leak = leakwatch.one("subprocess")
        assert leak.frames[0].function == "_start_pty_child"
        assert (leak.frames[1].filename, leak.frames[1].lineno) == (HERE, at)
        assert leak.details["pid"] == pid
    finally:
        os.waitpid(pid, 0)
    assert leakwatch.leaks() == []  # reaped, its terminal closed: released


def test_child_of_pty_spawn_is_waited_for_by_it_and_not_reported(leakwatch: Watch) -> None:
    # pty.spawn() forks through pty.fork() and waits for the child itself.
    pty.spawn([sys.executable, "-c", "pass"], lambda fd: os.read(fd, 1024), lambda fd: b"")
    assert leakwatch.leaks() == []


def test_spawn_that_waits_and_popen_children_are_not_counted_twice(leakwatch: Watch) -> None:
    assert os.spawnv(os.P_WAIT, sys.executable, [sys.executable, "-c", "pass"]) == 0
    assert leakwatch.leaks() == []
    proc = subprocess.Popen([sys.executable, "-c", "pass"], close_fds=False)  # posix_spawn inside
    try:
        assert leakwatch.one("subprocess").details["pid"] == proc.pid
    finally:
        proc.wait()


def test_tracking_never_calls_what_a_tool_patched_to_raise_inside_the_programs_call(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # blockbuster raises on os.path.abspath and os.getcwd inside an event loop: reclaim's
    # first look at a new file's frames called them inside the program's socket(), which
    # raised with the descriptor made and orphaned (aiohttp's suite: ~1,000 failures).
    (tmp_path / "fresh_library_module.py").write_text(
        "import socket\ndef make():\n    return socket.socket()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    make = importlib.import_module("fresh_library_module").make

    def refuse(*args: object) -> None:
        raise RuntimeError("blocking call refused")

    with monkeypatch.context() as patched:
        patched.setattr(os.path, "abspath", refuse)
        patched.setattr(os, "getcwd", refuse)
        sock = make()
    try:
        assert leakwatch.one("socket").frames[0].filename == str(tmp_path / "fresh_library_module.py")
    finally:
        sock.close()


# -- acquisitions deep inside a library -------------------------------------------------------


@pytest.fixture
def deep_library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    """An installed library (under a site-packages directory) that acquires 12 calls deep."""
    package = tmp_path / "site-packages"
    package.mkdir()
    (package / "deeplib.py").write_text(
        "import sqlite3\n"
        "def nested(n, acquire):\n"
        "    return acquire() if n == 0 else nested(n - 1, acquire)\n"
        "def connect(path):\n"
        "    return nested(12, lambda: sqlite3.connect(path))\n"
        "def read(path):\n"
        "    return nested(12, lambda: open(path))\n"
        "async def connect_in_a_task(path):\n"  # as anyio's connect_tcp connects in a task
        "    import asyncio\n"
        "    async def attempt():\n"
        "        return nested(2, lambda: sqlite3.connect(path))\n"
        "    return await asyncio.get_running_loop().create_task(attempt())\n"
        # A wrapper generated at run time, in the library's globals (SQLAlchemy's decorators).
        "exec('def read_wrapped(path):\\n    return read(path)\\n', globals())\n"
    )
    monkeypatch.syspath_prepend(str(package))

    return importlib.import_module("deeplib")


@pytest.mark.parametrize("kind", ["sqlite3", "file"])
def test_what_a_library_acquires_deep_in_its_own_code_names_the_programs_line(
    leakwatch: Watch, deep_library: Any, tmp_path: Path, kind: str
) -> None:
    # SQLAlchemy's pool opens sqlite3 fifteen frames below the program's session.execute():
    # the frames kept (eight, two for a file) were all the library's, so the report never
    # said which line of the program it was. The outermost frame kept is now that line.
    target = tmp_path / "data"
    target.write_text("x")
    acquire = deep_library.connect if kind == "sqlite3" else deep_library.read
    held = acquire(str(target))
    at = line() - 1
    try:
        frames = leakwatch.one(kind).frames
        assert "deeplib.py" in frames[0].filename
        assert len(frames) == (2 if kind == "file" else 8)
        assert (frames[-1].filename, frames[-1].lineno) == (HERE, at)
    finally:
        held.close()


def test_what_a_library_acquires_under_code_it_generated_names_the_programs_line(
    leakwatch: Watch, deep_library: Any, tmp_path: Path
) -> None:
    # The library's generated wrapper ("<string>", its globals the library's) was taken for the
    # program's line, which the site's outermost frame names: "from <string>:2 in read_wrapped".
    target = tmp_path / "data"
    target.write_text("x")
    held = deep_library.read_wrapped(str(target))
    at = line() - 1
    try:
        frames = leakwatch.one("file").frames
        assert "deeplib.py" in frames[0].filename
        assert (frames[-1].filename, frames[-1].lineno) == (HERE, at)
    finally:
        held.close()


def _made_by_generated_code(how: str, path: Path) -> Any:
    """What code a library generated at run time acquires for the program, *how* it is made."""
    if how == "attrs":
        attrs = pytest.importorskip("attrs")

        @attrs.define
        class WithAttrs:  # its __init__: "<attrs generated methods ...WithAttrs>"
            spool: Any = attrs.field(factory=tempfile.TemporaryFile)

        return WithAttrs().spool
    if how == "dataclass":

        @dataclasses.dataclass
        class WithDataclass:  # its __init__: "<string>", exec'd in this module's globals
            spool: Any = dataclasses.field(default_factory=tempfile.TemporaryFile)

        return WithDataclass().spool
    # "<timeit-src>", exec'd in timeit's globals: the file is dropped when the loop returns.
    return timeit.timeit(f"open({str(path)!r})", number=1)


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # timeit's file leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("how", ["attrs", "dataclass", "timeit"])
def test_what_code_a_library_generated_acquires_names_the_programs_line(
    leakwatch: Watch, tmp_path: Path, how: str
) -> None:
    # A pseudo-file (<string>, <attrs generated ...>) counted as the program's code: the
    # leak was reported at a line of generated code with no source, not at the program's.
    target = tmp_path / "data"
    target.write_text("x")
    held = _made_by_generated_code(how, target)
    at = line() - 1
    try:
        frames = leakwatch.one("file").frames
        assert [frame.filename for frame in frames] == [HERE, HERE]
        assert frames[0].function == "_made_by_generated_code"
        assert (frames[1].filename, frames[1].lineno) == (HERE, at)
    finally:
        if how != "timeit":
            held.close()


@pytest.mark.parametrize("name", [None, "__main__"])
def test_code_the_program_execs_itself_is_the_programs_line(
    leakwatch: Watch, tmp_path: Path, name: str | None
) -> None:
    # The program's own pseudo-file code (its exec, python -c, <stdin>: __main__'s) stays its own.
    target = tmp_path / "data"
    target.write_text("x")
    namespace: dict[str, Any] = {"path": str(target)}
    if name is not None:
        namespace["__name__"] = name
    exec("held = open(path)", namespace)
    at = line() - 1
    try:
        frames = leakwatch.one("file").frames
        assert (frames[0].filename, frames[0].lineno, frames[0].function) == ("<string>", 1, "<module>")
        assert (frames[1].filename, frames[1].lineno) == (HERE, at)
    finally:
        namespace["held"].close()


def test_what_a_library_acquires_in_a_task_of_its_own_names_the_line_that_awaited_it(
    leakwatch: Watch, deep_library: Any, tmp_path: Path
) -> None:
    # The task's stack ends where the event loop runs it: past the library's frames came the
    # loop's and asyncio.run()'s, never the program's line that led to the task.
    async def main() -> sqlite3.Connection:
        connection: sqlite3.Connection = await deep_library.connect_in_a_task(str(tmp_path / "db"))
        return connection

    at = main.__code__.co_firstlineno + 1
    held = asyncio.run(main())
    try:
        frames = leakwatch.one("sqlite3").frames
        [first] = [i for i, frame in enumerate(frames) if "deeplib.py" not in frame.filename][:1]
        assert first > 0, frames
        assert (frames[first].filename, frames[first].lineno) == (HERE, at)
    finally:
        held.close()


@pytest.mark.parametrize("via", ["wait_for", "gather"])
def test_what_the_standard_library_acquires_in_a_task_it_made_names_the_line_that_awaited_it(
    leakwatch: Watch, via: str
) -> None:
    # wait_for() and gather() run the coroutine in a task of their own: open_connection()'s
    # socket had only asyncio's frames on its stack, and the walk went on through the event loop
    # to the line that called asyncio.run() (nats.connect() uses wait_for: every leaked NATS
    # connection was reported there).
    async def main() -> list[reclaim.leaks.Leak]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        connect = asyncio.open_connection("127.0.0.1", port)
        if via == "wait_for":
            _, writer = await asyncio.wait_for(connect, 30)
        else:
            [(_, writer)] = await asyncio.gather(connect)
        server.close()
        found = leakwatch.leaks("socket")
        writer.close()
        await writer.wait_closed()
        return found

    found = asyncio.run(main())
    at = main.__code__.co_firstlineno + (5 if via == "wait_for" else 7)
    # The client's socket; the server's is asyncio's own (no program frame on its stack).
    [leak] = [leak for leak in found if leak.site is not None and leak.site.filename == HERE]
    assert leak.site is not None and leak.site.lineno == at, leak.headline()


#: An HTTP/1.0 response: http.client closes the connection once the body is read.
RESPONSE = b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _response(sock: socket.socket) -> http.client.HTTPResponse:
    """The response read from *sock*, its headers only, as ``urlopen`` returns it."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response


def _response_dropped_unread(sock: socket.socket) -> None:
    response = _response(sock)
    sock.close()  # urllib's do_open does so: the response holds the socket through makefile()
    del response


def _reader_dropped(sock: socket.socket, mode: Any, buffering: Any = None) -> None:
    reader = sock.makefile(mode, buffering)
    sock.close()  # the socket stays open while a makefile() object holds it
    del reader


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize(
    "drop",
    [
        _response_dropped_unread,
        functools.partial(_reader_dropped, mode="rb"),
        functools.partial(_reader_dropped, mode="r"),
        functools.partial(_reader_dropped, mode="rb", buffering=0),
    ],
    ids=["http.client response", "makefile rb", "makefile r", "makefile unbuffered"],
)
def test_socket_its_last_makefile_object_closes_for_the_collector_is_collected(
    leakwatch: Watch, drop: Callable[[socket.socket], None]
) -> None:
    """The program's close() of the socket waits for its makefile() objects: when the garbage
    collector closes the last one, the collector closed the socket (it read as released)."""
    a, b = socket.socketpair()
    at = line() - 1
    b.sendall(RESPONSE)
    b.close()
    drop(a)
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc
    # What the program did is said: it closed the socket, not what kept it open; and where it
    # dropped that (the helper's del, whichever of the finalizer's hooks saw it).
    dropped = drop.func if isinstance(drop, functools.partial) else drop
    where = f"{os.path.relpath(HERE)}:{dropped.__code__.co_firstlineno + 3} in {dropped.__name__}"
    assert leak.description.endswith(
        ": its close() waited for a makefile() object (a response, a reader) never closed, "
        f"dropped at {where}"
    )
    assert leak.to_json()["state"] == "collected"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_socket_whose_makefile_object_plumbing_dropped_is_dropped_at_the_programs_line(
    leakwatch: Watch,
) -> None:
    """A function's local reader goes as it returns, while its caller's line runs: when that
    caller is plumbing (pytest calling a test, here contextlib calling a callback), the line
    named is the program's past it, never the plumbing's (it was pytest's ``pytest_pyfunc_call``
    for a test that returned holding the reader, in requests' suite)."""
    a, b = socket.socketpair()
    at = line() - 1
    b.close()
    with contextlib.ExitStack() as stack:
        stack.callback(_returns_holding_a_reader, a)
    exits = line() - 2
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.description.endswith(f"dropped at {os.path.relpath(HERE)}:{exits} in {_name()}")


def _name() -> str:
    return "test_socket_whose_makefile_object_plumbing_dropped_is_dropped_at_the_programs_line"


def _returns_holding_a_reader(sock: socket.socket) -> None:
    reader = sock.makefile("rb")  # noqa: F841  (dropped as this returns, while its caller runs)
    sock.close()


class _ClosesSocketOnly:
    """A client whose ``close()`` closes its socket and drops its ``makefile()`` object unclosed,
    as pg8000's connection does: CPython's refcounting closes the socket in that ``close()``."""

    def __init__(self, sock: socket.socket) -> None:
        self._usock = sock
        self._sock: Any = sock.makefile("rwb")

    def close(self) -> None:
        self._usock.close()
        self._sock = None  # the makefile() object's last reference: its finalizer closes the socket


_DROPS_AT = _ClosesSocketOnly.close.__code__.co_firstlineno + 2


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_socket_its_makefile_object_kept_open_names_the_line_that_dropped_that_object(
    leakwatch: Watch,
) -> None:
    """The line is the fix's place (a library's close(), not the program's line that called it);
    in a reference cycle, the collector's doing, no line dropped it and none is named."""
    a, b = socket.socketpair()
    b.close()
    _ClosesSocketOnly(a).close()
    leak = leakwatch.one("socket")
    where = f"{os.path.relpath(HERE)}:{_DROPS_AT} in _ClosesSocketOnly.close"
    assert leak.details["dropped_at"] == where
    assert leak.description.endswith(f"never closed, dropped at {where}")
    assert leak.state == "collected" and leak.closed_by_gc

    c, d = socket.socketpair()
    d.close()
    reader = c.makefile("rb")
    c.close()
    cycle = [reader]
    cycle.append(cycle)  # type: ignore[arg-type]
    del reader, cycle
    gc.collect()
    [_, leak] = leakwatch.leaks("socket")
    assert "dropped_at" not in leak.details
    assert leak.description.endswith("never closed")


class _ClosesInItsDel:
    """Closes its socket in ``close()``, which its ``__del__`` runs (Pyro5's connections)."""

    def __init__(self) -> None:
        self.sock = socket.socket()

    def __del__(self) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_the_line_that_dropped_an_object_its_del_closes_for_is_the_programs_drop(leakwatch: Watch) -> None:
    """Its ``__del__`` calls the program's ``close()``: "last reference dropped at" named the
    socket's close() line in that method, not the line that let the object go (seen in Pyro5's
    and trio's suites)."""
    held = _ClosesInItsDel()
    del held
    dropped = line() - 1
    leak = leakwatch.one("socket")
    assert leak.state == "collected"
    name = test_the_line_that_dropped_an_object_its_del_closes_for_is_the_programs_drop.__qualname__
    assert leak.details["dropped_at"] == f"{os.path.relpath(HERE)}:{dropped} in {name}"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_makefile_kept_sockets_json_is_plain_data_xdist_can_send(leakwatch: Watch) -> None:
    """A pytest-xdist worker sends its leaks' JSON to the controller through execnet, which takes
    builtin types only: the state of a socket its makefile() kept was a str subclass, and the
    worker crashed at the end of its session ("can't serialize"), its findings lost."""
    execnet = pytest.importorskip("execnet")
    a, b = socket.socketpair()
    b.sendall(RESPONSE)
    b.close()
    _response_dropped_unread(a)
    data = leakwatch.one("socket").to_json()
    assert type(data["state"]) is str and data["state"] == "collected"
    assert execnet.loads(execnet.dumps(data)) == data


def test_socket_closed_through_makefile_objects_the_program_closed_is_not_reported(
    leakwatch: Watch,
) -> None:
    pairs = [socket.socketpair() for _ in range(6)]
    for _, b in pairs:
        b.sendall(RESPONSE)
        b.close()
    (a1, _), (a2, _), (a3, _), (a4, _), (a5, _), (a6, _) = pairs
    response = _response(a1)  # read, then closed
    a1.close()
    assert response.read() == b"ok"
    response.close()
    with _response(a2) as response:  # closed unread
        a2.close()
    with a3.makefile("rb") as reader:  # the makefile() object closed, then the socket
        reader.read()
    a3.close()
    reader = a4.makefile("rb")  # dropped while the socket is still open: the socket is the program's
    del reader
    a4.close()
    response = _response(a5)  # a kept-alive connection's response dropped: the socket is still open
    del response
    a5.close()
    with a6, a6.makefile("rb", buffering=0) as raw:
        raw.read()
    assert leakwatch.leaks() == []


class _StandIn:
    """What urllib3's ``SSLTransport`` is to the ``SocketIO`` its ``makefile()`` makes: an object
    standing in for the socket, which passes the release on."""

    def __init__(self, sock: socket.socket) -> None:
        self.socket = sock

    def _decref_socketios(self) -> None:
        self.socket._decref_socketios()


@pytest.mark.parametrize("release", ["close", "drop"])
def test_makefile_object_over_a_socket_stand_in_still_closes_the_socket(
    leakwatch: Watch, release: str
) -> None:
    """The hooks on ``SocketIO`` read the socket's state from its ``_sock``: one over a stand-in
    (no ``_closed``) made its close fail, so the socket's deferred real close never came."""
    a, b = socket.socketpair()
    b.close()
    raw = socket.SocketIO(_StandIn(a), "r")  # type: ignore[arg-type]
    a._io_refs += 1  # type: ignore[attr-defined]  # as SSLTransport.makefile() does
    a.close()  # waits for raw
    if release == "close":
        raw.close()
    else:
        del raw  # IOBase's finalizer closes it
    assert a.fileno() == -1
    assert leakwatch.leaks() == []


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.wfile.write(RESPONSE)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_urlopen_response_dropped_unread_is_collected_and_one_closed_by_a_with_block_is_not(
    leakwatch: Watch,
) -> None:
    # No proxy from the environment: the request goes to the server below.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with http.server.HTTPServer(("127.0.0.1", 0), _Ok) as server:
        url = f"http://127.0.0.1:{server.server_port}/"
        serving = threading.Thread(target=server.handle_request)
        serving.start()
        assert opener.open(url).status == 200
        at = line() - 1
        serving.join()
        serving = threading.Thread(target=server.handle_request)
        serving.start()
        with opener.open(url) as response:
            assert response.status == 200
        serving.join()
    leak = leakwatch.one("socket")
    assert_site(leak, at)
    assert leak.state == "collected"


# -- threads ----------------------------------------------------------------------------------


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_what_a_thread_acquires_leads_back_to_the_line_that_started_it(leakwatch: Watch) -> None:
    # A library's worker thread (aiosqlite's opens its sqlite3 connection) has none of the
    # program's frames on its stack: past the thread's own frames, the stack goes on at the
    # line that started the thread.
    kept: list[sqlite3.Connection] = []

    def work() -> None:
        kept.append(sqlite3.connect(":memory:", check_same_thread=False))

    worker = threading.Thread(target=work)
    worker.start()
    started = line() - 1
    worker.join()
    try:
        leak = leakwatch.one("sqlite3")
        assert [(frame.filename, frame.lineno) for frame in leak.frames][:2] == [
            (HERE, work.__code__.co_firstlineno + 1),
            (HERE, started),
        ]
    finally:
        kept[0].close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("kind", ["sqlite3", "scope"])
@pytest.mark.parametrize("nested", [5, 6, 7])
def test_a_threads_own_bootstrap_frames_leave_room_for_the_line_that_started_it(
    leakwatch: Watch, nested: int, kind: str
) -> None:
    """``Thread.run``, ``_bootstrap_inner`` and ``_bootstrap`` are never shown: with the thread's
    own frames fewer than the depth (8 here), they do not take the start line's place (peewee's
    SqliteQueueDatabase writer opens its connection 5 frames down its thread). Both ways a site
    is captured: a driver's connection, and a reclaim owner's."""
    assert reclaim.leaks._records.depth == 8  # the default
    kept: list[Any] = []

    def down(left: int) -> None:
        if left > 1:
            down(left - 1)
        elif kind == "sqlite3":
            kept.append(sqlite3.connect(":memory:", check_same_thread=False))
        else:
            kept.append(reclaim.Scope().__enter__())

    worker = threading.Thread(target=down, args=(nested,))
    worker.start()
    started = line() - 1
    worker.join()
    try:
        leak = leakwatch.one(kind)
        lines = [(frame.filename, frame.lineno) for frame in leak.frames]
        assert lines[: nested + 1][-1:] == [(HERE, started)], lines
    finally:
        if kind == "sqlite3":
            kept[0].close()
        else:
            kept[0].__exit__(None, None, None)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("nested", [3, 4, 5])
def test_a_threads_stack_that_ran_out_near_the_depth_still_reaches_the_callers_line(
    leakwatch: Watch, nested: int
) -> None:
    """A thread's stack that ran out with a frame or two of the depth left kept its bootstrap's
    frames' room: the line that started the thread was kept, the line that called the helper
    starting it cut (dnspython's test server, at the default depth only: 7 and 9 showed it)."""
    assert reclaim.leaks._records.depth == 8  # the default
    kept: list[Any] = []

    def down(left: int) -> None:
        if left > 1:
            down(left - 1)
        else:
            kept.append(sqlite3.connect(":memory:", check_same_thread=False))

    def start() -> None:
        worker = threading.Thread(target=down, args=(nested,))
        worker.start()
        worker.join()

    start()
    called = line() - 1
    try:
        lines = [(frame.filename, frame.lineno) for frame in leakwatch.one("sqlite3").frames]
        assert (HERE, called) in lines, lines
    finally:
        kept[0].close()


def test_a_thread_the_standard_library_starts_in_a_thread_the_program_started_is_reported(
    leakwatch: Watch,
) -> None:
    # socketserver's ThreadingMixIn starts a thread per connection from the thread serving it:
    # only standard-library frames, so that thread and its accepted socket were never reported.
    import socketserver

    handling, done = threading.Semaphore(0), threading.Event()

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            handling.release()
            done.wait(30)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    at_server = line() - 1
    serving = threading.Thread(target=server.serve_forever, name="serving")
    serving.start()
    at = line() - 1
    clients = []
    try:
        # Two connections: the serving thread records the first handler thread once start()
        # returns, which is before it accepts the second.
        for _ in range(2):
            clients.append(socket.create_connection(server.server_address))
            assert handling.acquire(timeout=30)
        leaks = leakwatch.leaks()
        handlers = [
            leak for leak in leaks if leak.details.get("target") == "ThreadingMixIn.process_request_thread"
        ]
        # What the library's accept() made: at the line that made the listening socket.
        connections = [leak for leak in leaks if leak.kind == "socket" and "peer" in leak.details]
        accepted = [leak for leak in connections if leak.site and leak.site.lineno == at_server]
        assert handlers and len(accepted) == 2, [leak.headline() for leak in leaks]
        assert_site(handlers[0], at)
    finally:
        done.set()
        for client in clients:
            client.close()
        server.shutdown()
        serving.join()
        server.server_close()  # joins the handler threads


def test_a_connection_the_program_accepts_through_a_librarys_accept_is_at_its_accept_line(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyOpenSSL's Connection.accept() calls the raw socket's accept(): a connection cheroot's TLS
    # server accepted through it and dropped was reported at the line that made the listening
    # socket, as if a library had accepted it on its own, not at the server's accept() line. So
    # was one through a helper of another name (eventlet's GreenSocket.accept -> socket_accept).
    package = tmp_path / "site-packages"
    package.mkdir()
    (package / "acceptlib.py").write_text(
        "class Listener:\n"
        "    def __init__(self, sock):\n"
        "        self._socket = sock\n"
        "    def accept(self):\n"
        "        client, addr = self._socket.accept()\n"
        "        return client, addr\n"
        "    def accept_through_helper(self):\n"
        "        return socket_accept(self._socket)\n"
        "def socket_accept(sock):\n"
        "    return sock.accept()\n"
    )
    monkeypatch.syspath_prepend(str(package))

    acceptlib = importlib.import_module("acceptlib")
    listening = socket.create_server(("127.0.0.1", 0))
    for through, accepted_at in (("accept", 5), ("accept_through_helper", 10)):
        with socket.create_connection(listening.getsockname()):
            accepted, _ = getattr(acceptlib.Listener(listening), through)()
            at = line() - 1
            with accepted:
                fd = accepted.fileno()
                [leak] = [leak for leak in leakwatch.leaks("socket") if leak.details.get("fd") == fd]
                frames = [(frame.filename, frame.lineno) for frame in leak.frames]
                assert frames[0] == (str(package / "acceptlib.py"), accepted_at), leak.headline()
                assert frames[-1] == (HERE, at), leak.headline()
    listening.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_thread_running_an_event_loop_holds_its_loop_tasks_and_workers(leakwatch: Watch) -> None:
    """A server or portal run in a thread never stopped (uvicorn's ``Server.run``, anyio's
    blocking portal under Starlette's ``TestClient``) is one entry, the thread at its line, with
    the loop it runs, the loop's tasks and the worker threads the loop started under it; a kind
    filtered out of what it holds leaves the thread. Stopped, it leaves nothing."""
    ready, stop = threading.Event(), threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        await asyncio.to_thread(lambda: None)  # starts the loop's worker thread
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)

    def run() -> None:
        loops.append(asyncio.new_event_loop())
        loops[0].run_until_complete(serve())

    server = threading.Thread(target=run, name="server", daemon=True)
    server.start()
    started = line() - 1
    try:
        assert ready.wait(30)
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.details["name"]) == ("thread", "server")
        assert_site(leak, started)
        assert sorted(held.kind for held in leak.holds) == ["eventloop", "task", "thread"]
        [kept] = leakwatch.leaks(ignore_kinds={"task", "eventloop"})
        assert [held.kind for held in kept.holds] == ["thread"]
    finally:
        stop.set()
        server.join()
        loops[0].run_until_complete(loops[0].shutdown_default_executor())
        loops[0].close()
    assert leakwatch.leaks() == []
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_thread_running_an_event_loop_holds_the_sockets_its_loop_opened(leakwatch: Watch) -> None:
    """A server run in a thread never stopped (uvicorn's ``Server.run``, as httpx's tests run it)
    listens on a socket its loop opened in that thread: it is under the thread with the loop and
    its task, not an entry of its own at asyncio's line. Stopped, it leaves nothing."""
    ready = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []
    stops: list[asyncio.Event] = []

    async def serve() -> None:
        stops.append(asyncio.Event())
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        ready.set()
        async with server:
            await stops[0].wait()

    def run() -> None:
        loops.append(asyncio.new_event_loop())
        loops[0].run_until_complete(serve())

    thread = threading.Thread(target=run, name="server", daemon=True)
    thread.start()
    started = line() - 1
    try:
        assert ready.wait(30)
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.details["name"]) == ("thread", "server")
        assert_site(leak, started)
        assert sorted(held.kind for held in leak.holds) == ["eventloop", "socket", "task"]
    finally:
        loops[0].call_soon_threadsafe(stops[0].set)
        thread.join()
        loops[0].close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_thread_running_trio_holds_its_run_as_one_event_loop(leakwatch: Watch) -> None:
    """A trio run in a thread never stopped (anyio's blocking portal on trio) was the thread, its
    run's two wakeup socket pairs, and an epoll descriptor "opened by code reclaim does not hook":
    it is the thread, holding the run as an event loop. Ended, the run leaves nothing."""
    trio = pytest.importorskip("trio")
    ready, stop = threading.Event(), threading.Event()

    async def serve() -> None:
        ready.set()
        await trio.to_thread.run_sync(stop.wait)

    server = threading.Thread(target=trio.run, args=(serve,), name="server", daemon=True)
    server.start()
    started = line() - 1
    try:
        assert ready.wait(30)
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.details["name"]) == ("thread", "server")
        assert_site(leak, started)
        [run] = [held for held in leak.holds if held.kind == "eventloop"]
        assert run.description.startswith("trio run")
    finally:
        stop.set()
        server.join()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_event_loop_set_as_the_current_one_says_so(leakwatch: Watch) -> None:
    """gql's sync ``execute()`` makes a loop and sets it as the thread's current one: asyncio
    keeps it, and the entry read as a loop dropped. It says it is the current loop now."""
    loop = asyncio.new_event_loop()
    made = line() - 1
    asyncio.set_event_loop(loop)
    try:
        leak = leakwatch.one("eventloop")
        assert_site(leak, made)
        assert leak.details["current"] is True
        assert "still the thread's current event loop (set_event_loop(None), then close() it)" in (
            leak.description
        )
        asyncio.set_event_loop(None)
        assert "current" not in leakwatch.one("eventloop").details
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    assert leakwatch.leaks() == []


def test_threads_of_one_name_each_hold_their_own_loop(leakwatch: Watch) -> None:
    """pyrate-limiter starts a "Leaker" thread per limiter, each running a loop of its own: the
    first thread of that name was said to hold both loops and both tasks, the second none."""
    ready = [threading.Event(), threading.Event()]
    stop = threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    def run(started: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loops.append(loop)

        async def serve() -> None:
            started.set()
            await loop.run_in_executor(None, stop.wait)

        loop.run_until_complete(serve())

    threads = [threading.Thread(target=run, args=(event,), name="leaker", daemon=True) for event in ready]
    for thread in threads:
        thread.start()
        assert ready[threads.index(thread)].wait(30)
    try:
        found = [leak for leak in leakwatch.leaks() if leak.kind == "thread"]
        assert [leak.details["name"] for leak in found] == ["leaker", "leaker"]
        held = [sorted(part.kind for part in leak.holds if part.kind != "thread") for leak in found]
        assert held == [["eventloop", "task"], ["eventloop", "task"]]
        selectors = {part.description for leak in found for part in leak.holds if part.kind == "eventloop"}
        assert len(selectors) == 2
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        for loop in loops:
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
    assert leakwatch.leaks() == []


def test_a_thread_that_renames_itself_as_it_starts_still_holds_its_loop(leakwatch: Watch) -> None:
    """anyio's blocking portal makes its loop, then renames its thread: when that ran before
    ``start()`` returned, the thread was recorded under its new name only, and the loop, made
    under the old one, was reported beside it instead of under it."""
    renamed, stop = threading.Event(), threading.Event()
    loops: list[asyncio.AbstractEventLoop] = []

    class Started(threading.Event):
        # start() returns once the thread says it started: here, once it also renamed itself.
        # Nothing public runs a thread's code before its start() returns; the race did that.
        def wait(self, timeout: float | None = None) -> bool:
            return super().wait(timeout) and renamed.wait(30)

    def run() -> None:
        loops.append(asyncio.new_event_loop())
        threading.current_thread().name = "portal"
        renamed.set()
        loops[0].run_until_complete(asyncio.to_thread(stop.wait))

    server = threading.Thread(target=run, daemon=True)
    if not isinstance(getattr(server, "_started", None), threading.Event):
        pytest.skip("threading.Thread keeps its start event otherwise")
    server._started = Started()
    server.start()
    try:
        # The thread's first executor job imports concurrent.futures.thread under 3.12, which may
        # be reading its bytecode file as this looks: a check waits such a descriptor out.
        [leak] = [found for found in leakwatch.leaks() if found.kind != "untracked-fd"]
        assert leak.kind == "thread"
        assert "eventloop" in [held.kind for held in leak.holds]
    finally:
        stop.set()
        server.join()
        loops[0].run_until_complete(loops[0].shutdown_default_executor())
        loops[0].close()
    assert leakwatch.leaks() == []


def test_thread_still_running_is_reported_with_name_and_target(leakwatch: Watch) -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, name="stuck-worker")
    worker.start()
    at = line() - 1
    try:
        leak = leakwatch.one("thread")
        assert_site(leak, at)
        assert leak.details["name"] == "stuck-worker"
        assert leak.details["target"] == "Event.wait"
    finally:
        stop.set()
        worker.join()
    assert leakwatch.leaks() == []


class _Proxy:
    """A remote object's local proxy (an rpyc netref): every attribute, its repr too, is asked of
    the other side, over a connection the call the thread makes is using."""

    def __init__(self, function: Callable[[], object]) -> None:
        object.__setattr__(self, "_function", function)
        object.__setattr__(self, "asked", [])

    def __getattribute__(self, name: str) -> Any:
        if name not in ("_function", "asked"):
            object.__getattribute__(self, "asked").append(name)
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        object.__getattribute__(self, "asked").append(name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        object.__getattribute__(self, "asked").append("__repr__")
        return "<proxy>"

    def __call__(self) -> object:
        return object.__getattribute__(self, "_function")()


def test_a_threads_target_is_named_without_asking_the_target_anything(leakwatch: Watch) -> None:
    """``Thread(target=netref).start()`` asked the netref its ``__qualname__`` and repr: two remote
    calls waiting for the connection the new thread's call held, so rpyc's 50 calls run in 50
    threads took 50 s, one after the other, instead of 1 s."""
    stop = threading.Event()
    proxy = _Proxy(stop.wait)
    worker = threading.Thread(target=proxy)
    partial = threading.Thread(target=functools.partial(stop.wait, 30))
    proxy.asked.clear()  # Thread() asks for its __name__, to name the thread
    worker.start()
    partial.start()
    try:
        assert proxy.asked == []
        targets = {leak.details["name"]: leak.details["target"] for leak in leakwatch.leaks("thread")}
        assert targets == {worker.name: "_Proxy.__call__", partial.name: "Event.wait"}
    finally:
        stop.set()
        worker.join()
        partial.join()


class _SnapshotAsItStarts(threading.Thread):
    """Takes a snapshot in the new thread while its starter still waits in ``start()``: as a
    test's window may open while a server thread starts a handler thread that has already
    answered the client."""

    def __init__(self, watch: Watch, stop: threading.Event) -> None:
        super().__init__(target=stop.wait, name="quick-starter")
        self.watch = watch
        self.mark: Any = None

    def _bootstrap_inner(self) -> None:
        self.mark = self.watch.tracker.snapshot()  # start() returns once the thread is running
        super()._bootstrap_inner()  # type: ignore[misc]


def test_a_thread_is_acquired_when_start_is_called_not_when_it_returns(leakwatch: Watch) -> None:
    """A snapshot taken while ``start()`` waits for the new thread does not count that thread as
    acquired after it (a handler thread started before a test's window was that test's leak)."""
    stop = threading.Event()
    worker = _SnapshotAsItStarts(leakwatch, stop)
    worker.start()
    try:
        assert leakwatch.one("thread").details["name"] == "quick-starter"
        assert leakwatch.tracker.leaks(worker.mark) == []
    finally:
        stop.set()
        worker.join()


class _HoldingServer:
    """A server thread on 127.0.0.1 that accepts one connection once *go* is set and starts a
    handler thread holding it until *stop* (socketserver's shape); *served* once it started it."""

    def __init__(self, go: threading.Event) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.go, self.stop, self.served = go, threading.Event(), threading.Semaphore(0)
        self.handlers: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, name="accepting")
        self.thread.start()

    def _serve(self) -> None:
        self.go.wait()
        conn, _ = self.listener.accept()
        handler = threading.Thread(target=self._hold, args=(conn,), name="handling")
        self.handlers.append(handler)
        handler.start()
        self.served.release()

    def _hold(self, conn: socket.socket) -> None:
        with conn:
            self.stop.wait()

    def close(self) -> None:
        self.go.set()
        self.stop.set()
        self.thread.join()
        for handler in self.handlers:
            handler.join()
        self.listener.close()


def _in_accept(thread: threading.Thread) -> bool:
    """Whether *thread* waits in ``socket.accept()``."""
    frame = sys._current_frames().get(thread.ident or 0)
    while frame is not None and frame.f_code.co_name != "accept":
        frame = frame.f_back
    return frame is not None


def test_a_connection_accepted_after_a_snapshot_is_acquired_when_its_client_connected(
    leakwatch: Watch,
) -> None:
    """What a server thread accepts (and the handler thread it starts for it) after a snapshot, for
    a client of this process that connected before it, is not acquired after that snapshot: a
    client fixture's connection, accepted once the test's window had opened, was the test's leak."""
    server = _HoldingServer(threading.Event())
    try:
        client = socket.create_connection(server.listener.getsockname())
        with client:
            mark = leakwatch.tracker.snapshot()
            server.go.set()  # accepts now, as a server thread waiting for the GIL would
            assert server.served.acquire(timeout=30)
            server.thread.join(timeout=30)  # it released *served* and ends: not what is checked
            assert not server.thread.is_alive()
            assert leakwatch.tracker.leaks(mark) == []
            peer = "{}:{}".format(*client.getsockname())
            assert [leak.kind for leak in leakwatch.leaks() if leak.details.get("peer") == peer] == ["socket"]
            assert [leak.details["name"] for leak in leakwatch.leaks("thread")] == ["handling"]
    finally:
        server.close()


def test_a_connection_accepted_for_a_client_that_connected_after_a_snapshot_is_acquired_after_it(
    leakwatch: Watch,
) -> None:
    """A server thread that waited in ``accept()`` since before a snapshot accepts, after it, a
    connection made after it: acquired after it (a test's own connection is its own)."""
    server = _HoldingServer(threading.Event())
    try:
        server.go.set()
        deadline = time.monotonic() + 30
        while not _in_accept(server.thread):
            assert time.monotonic() < deadline, "the server thread never waited in accept()"
            time.sleep(0.001)  # polling a condition, not synchronising on time
        mark = leakwatch.tracker.snapshot()
        with socket.create_connection(server.listener.getsockname()) as client:
            assert server.served.acquire(timeout=30)
            peer = "{}:{}".format(*client.getsockname())
            found = leakwatch.tracker.leaks(mark)
            assert [leak.kind for leak in found if leak.details.get("peer") == peer] == ["socket"]
            assert [leak.details["name"] for leak in found if leak.kind == "thread"] == ["handling"]
    finally:
        server.close()


def test_thread_finishing_within_the_grace_period_is_not_reported(leakwatch: Watch) -> None:
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    # The thread ends only after the check began waiting: release it from another thread.
    threading.Timer(0.05, release.set).start()
    assert leakwatch.leaks("thread", grace=10.0) == []
    worker.join()


class _Interrupted(Exception):
    """What a signal handler raises in the main thread's join(), as Ctrl-C or pytest-timeout do."""


@contextlib.contextmanager
def _join_interrupted() -> Iterator[None]:
    """The main thread's ``Thread.join()`` in the block is interrupted by a signal handler's
    exception: SIGUSR1, sent to it until its handler finds it waiting there."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers run in the main thread only")
    main, done = threading.get_ident(), threading.Event()

    def handler(signum: int, frame: Any) -> None:
        code = getattr(frame, "f_code", None)
        if code is None or done.is_set() or code.co_filename != threading.__file__:
            return
        if code.co_name in ("join", "_wait_for_tstate_lock"):  # 3.13's; 3.11's and 3.12's
            done.set()
            raise _Interrupted

    def send() -> None:
        while not done.wait(0.01):
            signal.pthread_kill(main, signal.SIGUSR1)

    previous = signal.signal(signal.SIGUSR1, handler)
    sender = threading.Thread(target=send)
    sender.start()
    try:
        with pytest.raises(_Interrupted):
            yield
    finally:
        done.set()
        sender.join()
        signal.signal(signal.SIGUSR1, previous)


def test_thread_whose_join_was_interrupted_is_still_reported(leakwatch: Watch) -> None:
    """A join() interrupted by Ctrl-C, SIGTERM or pytest-timeout: on 3.11 and 3.12 the thread
    is marked stopped and is_alive() says False while it still runs."""
    release = threading.Event()
    worker = threading.Thread(target=release.wait, name="stuck-worker")
    worker.start()
    at = line() - 1
    try:
        with _join_interrupted():
            worker.join()
        leak = leakwatch.one("thread")
        assert_site(leak, at)
        assert leak.state == "open" and leak.details["alive"] is True
    finally:
        release.set()
        worker.join()  # returns at once where the thread is marked stopped: the check waits
    assert leakwatch.leaks("thread", grace=30.0) == []  # ended: not kept open


# -- asyncio tasks ----------------------------------------------------------------------------


async def _forever() -> None:
    await asyncio.Event().wait()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("main_fails", [False, True], ids=["returns", "raises"])
def test_task_left_pending_is_reported_though_asyncio_run_cancels_it(
    leakwatch: Watch, main_fails: bool
) -> None:
    """Also when main raised an error: only an interruption (Ctrl-C, SystemExit) unwinds tasks."""
    at = 0
    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def main() -> None:
        nonlocal at
        kept.append(asyncio.create_task(_forever()))
        at = line() - 1
        await asyncio.sleep(0)
        if main_fails:
            raise ValueError("main failed")

    with pytest.raises(ValueError, match="main failed") if main_fails else contextlib.nullcontext():
        asyncio.run(main())
    leak = leakwatch.one("task")
    assert_site(leak, at)
    assert leak.state == "cancelled"
    assert leak.details["coroutine"] == "_forever"


async def _two_numbers() -> Any:
    yield 1
    yield 2


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_generator_dropped_unfinished_is_reported_at_the_drop_naming_the_generator(
    leakwatch: Watch,
) -> None:
    """The loop's own task that closes an async generator left by ``break`` is cancelled at
    shutdown before it runs: it was reported as running async_generator_athrow() at the
    asyncio.run() line (python-socketio's pubsub listener), naming neither."""
    at = 0

    async def main() -> None:
        nonlocal at
        async for _ in _two_numbers():
            at = line() + 1
            break

    asyncio.run(main())
    leak = leakwatch.one("task")
    assert leak.state == "cancelled"
    assert leak.details["coroutine"] == "_two_numbers().aclose"
    assert "async generator dropped unfinished" in leak.description
    assert_site(leak, at)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_generator_a_task_drops_as_it_ends_is_reported_at_that_task_not_the_loops_caller(
    leakwatch: Watch,
) -> None:
    """A local async generator left unfinished dies as its task's coroutine returns, under the
    loop's own frames: the drop was reported at the line that ran the loop (a pytest-asyncio
    test run by pytester in-process: the outer test's runpytest() line, the inner test named
    nowhere). It is the task's, whose coroutine ended: its last line, where it returned (not its
    first, a decorator's line: aiostream's ``@pytest.mark.asyncio``), then where it was made."""
    started = 0

    @functools.wraps(_two_numbers)  # any decorator: the code's first line is its line
    async def main() -> None:
        numbers = _two_numbers()
        await numbers.__anext__()

    asyncio.run(main())
    started = line() - 1
    leak = leakwatch.one("task")
    assert leak.details["coroutine"] == "_two_numbers().aclose"
    assert [(frame.filename, frame.lineno) for frame in leak.frames[:2]] == [
        (__file__, main.__code__.co_firstlineno + 3),
        (__file__, started),
    ]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_generator_dropped_as_a_coroutine_a_library_awaits_returns_is_at_that_coroutine(
    leakwatch: Watch, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anyio's pytest plugin awaits each test in one runner task (``retval = await coro``): a
    generator the test left in a local died as the test returned, under the runner's frame, and
    its aclose() task was placed at the runner's line (hishel), not at the test."""
    package = tmp_path / "site-packages"
    package.mkdir()
    (package / "runnerlib.py").write_text(
        "async def run(coro):\n    retval = await coro\n    return retval\n"
    )
    monkeypatch.syspath_prepend(str(package))
    runnerlib = importlib.import_module("runnerlib")

    async def test() -> None:
        numbers = _two_numbers()
        await numbers.__anext__()

    asyncio.run(runnerlib.run(test()))
    leak = leakwatch.one("task")
    assert leak.details["coroutine"] == "_two_numbers().aclose"
    frames = [(frame.filename, frame.lineno) for frame in leak.frames]
    assert frames[:2] == [(__file__, test.__code__.co_firstlineno + 2), (str(package / "runnerlib.py"), 2)]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_task_left_pending_is_reported_by_the_name_create_task_gave_it(leakwatch: Watch) -> None:
    """asyncio.create_task(name=...) names the task after the loop made it (before 3.13): it was
    reported as 'Task-N'."""

    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def main() -> None:
        kept.append(asyncio.create_task(_forever(), name="heartbeat"))
        await asyncio.sleep(0)

    asyncio.run(main())
    leak = leakwatch.one("task")
    assert leak.details["name"] == "heartbeat"
    assert leak.description.startswith("'heartbeat' running _forever()")


def test_a_task_site_asked_while_it_runs_is_at_the_line_its_coroutine_is_at(leakwatch: Watch) -> None:
    """A stack cut short before the task's own coroutine (azure-core's pipeline awaited through an
    object whose ``__await__`` returns another coroutine's) goes on at the site that made the
    task, headed by its coroutine: at its first line, a test's decorator, where the socket it
    opened was said to be "opened at". It is the line the coroutine is at now."""
    from reclaim import _sites
    from reclaim.leaks import _records

    loop = asyncio.new_event_loop()
    done: asyncio.Future[tuple[int, Any]] = loop.create_future()

    async def main() -> None:
        await asyncio.sleep(0)
        assert _sites.task_site is not None
        done.set_result((line(), _sites.task_site()))

    # Made by framework code alone (as pytest-asyncio makes a test's task): its site is headed by
    # its coroutine's own code.
    loop.call_soon(functools.partial(asyncio.ensure_future, main(), loop=loop))
    try:
        at, site = loop.run_until_complete(done)
    finally:
        loop.close()
    [first, *_] = _sites.frames(_records.site_of(site))
    assert (first.function.rpartition(".")[2], first.lineno) == ("main", at)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_task_made_in_a_task_goes_on_at_the_line_that_made_that_task_not_the_loops_runner(
    leakwatch: Watch,
) -> None:
    """A task's stack ends where the loop runs its step; the frames past it were taken as its
    callers: the line that ran the loop came next, and the line that made the outer task was
    lost (aiormq's reader task, made in aio-pika's reconnect task: blamed on aiomisc's runner,
    never on the test's ``connect_robust()``)."""
    frames, expected = task_site_in_a_task_made_in_a_task(leakwatch, asyncio.new_event_loop)
    assert frames == expected, frames


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.skipif(sys.version_info < (3, 12), reason="asyncio.eager_task_factory is 3.12's")
def test_task_made_in_an_eager_tasks_first_step_goes_on_at_the_line_that_made_that_task(
    leakwatch: Watch,
) -> None:
    """``asyncio.eager_task_factory`` (mitmproxy's conftest sets it) runs a task's first step as
    it is made, before it was recorded: a task made in that step went on at no line of it."""
    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def inner() -> None:
        kept.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))

    async def middle() -> None:
        await asyncio.get_running_loop().create_task(inner())

    async def outer() -> None:
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
        await asyncio.get_running_loop().create_task(middle())

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(outer())
        lines = [frame.lineno for frame in leakwatch.one("task").frames if frame.filename == __file__]
        kept[0].cancel()
        loop.run_until_complete(asyncio.gather(*kept, return_exceptions=True))
    finally:
        loop.close()
    assert lines[:3] == [f.__code__.co_firstlineno + 1 for f in (inner, middle)] + [
        outer.__code__.co_firstlineno + 2
    ], lines


def test_lease_taken_in_a_task_made_in_a_task_goes_on_at_the_line_that_made_that_task(
    leakwatch: Watch,
) -> None:
    """An AsyncPool lease's site, resolved as it is taken, went on past its task's step too."""
    frames, expected = lease_site_in_a_task_made_in_a_task(leakwatch, asyncio.new_event_loop)
    assert frames == expected, frames
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("interrupt", [SystemExit, KeyboardInterrupt])
def test_tasks_an_interruption_escaping_asyncio_run_unwinds_are_not_reported(
    leakwatch: Watch, interrupt: type[BaseException]
) -> None:
    """A SystemExit from a task (or a KeyboardInterrupt from a callback) escaped the loop with the
    main task still pending: asyncio.run() cancelled and finished it and its children on the way
    out. They were reported as left pending, then the main one as collected pending."""

    async def crash() -> None:
        raise interrupt

    async def main() -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(_forever())
            group.create_task(crash())
            await _forever()

    with pytest.raises(interrupt):
        asyncio.run(main())
    gc.collect()
    assert leakwatch.leaks() == []


def test_anyios_process_pool_shutdown_task_is_its_own(leakwatch: Watch) -> None:
    """anyio.to_process starts one task per loop that waits for the loop's shutdown to kill and
    reap its workers: it was reported as a task the program left pending."""
    anyio = pytest.importorskip("anyio")
    to_process = pytest.importorskip("anyio.to_process")

    async def main() -> None:
        assert await to_process.run_sync(abs, -42) == 42

    anyio.run(main)
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow(kind="task")  # the other task is left pending on purpose
def test_task_cancelled_but_not_yet_run_at_shutdown_is_not_reported(leakwatch: Watch) -> None:
    """Cancelled by the program (asyncpg's terminate() cancels its cancel-request tasks) in the
    loop's last turn: it ends at the shutdown's first, as asked; one left pending is a leak."""
    cancelled: list[asyncio.Task[None]] = []
    left: list[asyncio.Task[None]] = []

    async def main() -> None:
        cancelled.append(asyncio.create_task(_forever()))
        left.append(asyncio.create_task(_forever()))
        await asyncio.sleep(0)  # both start, and wait
        # Cancelled in the turn that stops the loop (before main's end is seen): not run since.
        asyncio.get_running_loop().call_soon(cancelled[0].cancel)

    asyncio.run(main())
    assert cancelled[0].cancelled()  # it ended at shutdown
    [leak] = leakwatch.leaks("task")
    assert leak.state == "cancelled"


def test_a_task_made_by_a_task_cancelled_and_still_unwinding_at_shutdown_is_not_reported(
    leakwatch: Watch,
) -> None:
    """The program cancelled a task and returned without awaiting it; that task's cleanup takes a
    turn of the loop before it cancels the task it made (taskiq's receiver: the task its
    prefetcher waits on through ``asyncio.wait()``), and the shutdown comes first. What it made
    was reported as left pending; the cancel the program asked for ends both."""

    async def worker() -> None:
        helper = asyncio.create_task(asyncio.Event().wait())
        try:
            await asyncio.wait({helper})
        finally:
            await asyncio.sleep(0)  # a turn of its cleanup: the shutdown begins meanwhile
            helper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await helper

    async def main() -> None:
        task = asyncio.create_task(worker())
        await asyncio.sleep(0)
        task.cancel()  # not awaited

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow(kind="task")  # the starting tasks are left pending on purpose
@pytest.mark.parametrize("how", ["await", "gather", "wait_for", "TaskGroup"])
def test_task_a_pending_task_awaits_at_shutdown_is_part_of_its_leak(leakwatch: Watch, how: str) -> None:
    """arq's watch_reload leaves a task running Worker.async_run(), which starts the worker's main
    task and awaits it: the awaited task was reported too, at the line that made it, in code
    that awaits what it starts. Cancelling the task left pending cancels it: one leak. So for
    ``wait_for()`` (on 3.11, a task of its own) and a ``TaskGroup``'s children (gunicorn's and
    hypercorn's suites: two and three entries)."""
    at = 0
    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def start_and_wait() -> None:
        if how == "wait_for":
            await asyncio.wait_for(_forever(), 3600)
            return
        if how == "TaskGroup":
            async with asyncio.TaskGroup() as group:
                kept.append(group.create_task(_forever()))
                kept.append(group.create_task(_forever()))
            return
        inner = asyncio.create_task(_forever())
        kept.append(inner)
        if how == "await":
            await inner
        else:
            await asyncio.gather(inner, asyncio.create_task(_forever()))

    async def main() -> None:
        nonlocal at
        kept.append(asyncio.create_task(start_and_wait()))
        at = line() - 1
        await asyncio.sleep(0)  # it starts its task and waits for it
        await asyncio.sleep(0)  # which starts too

    asyncio.run(main())
    assert all(task.cancelled() for task in kept)
    leak = leakwatch.one("task")
    assert_site(leak, at)
    assert leak.details["coroutine"].endswith("<locals>.start_and_wait")


@pytest.mark.reclaim_allow(kind="task")  # the starting task is dropped pending on purpose
@ignore_gc_warnings
@pytest.mark.parametrize("how", ["await", "gather", "wait_for", "TaskGroup"])
def test_task_a_task_destroyed_pending_awaits_is_part_of_its_leak(leakwatch: Watch, how: str) -> None:
    """As at shutdown (above), when the collector destroys them: the awaiting task and what it
    awaits die in one reference cycle, and only the awaiting one is the program's leak."""
    loop = asyncio.new_event_loop()
    at = 0

    async def start_and_wait() -> None:
        if how == "wait_for":
            await asyncio.wait_for(_forever(), 3600)
        elif how == "TaskGroup":
            async with asyncio.TaskGroup() as group:
                group.create_task(_forever())
                group.create_task(_forever())
        elif how == "await":
            await asyncio.create_task(_forever())
        else:
            await asyncio.gather(asyncio.create_task(_forever()), asyncio.create_task(_forever()))

    async def main() -> None:
        nonlocal at
        loop.create_task(start_and_wait())  # noqa: RUF006  # dropped pending on purpose
        at = line() - 1
        await asyncio.sleep(0)  # it starts its tasks and waits for them
        await asyncio.sleep(0)  # which start too

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    gc.collect()  # asyncio logs each "destroyed but it is pending"
    leak = leakwatch.one("task")
    assert leak.state == "collected"
    assert_site(leak, at)
    assert leak.details["coroutine"].endswith("<locals>.start_and_wait")


@pytest.mark.reclaim_allow(kind="task")  # left pending on purpose
def test_a_task_a_callback_from_another_thread_made_is_at_the_registering_line(leakwatch: Watch) -> None:
    """``loop.call_soon_threadsafe(asyncio.ensure_future, coro)`` from another thread: the task
    the callback makes was at its coroutine, then the line that ran the loop in its thread, then
    where that thread started; never the line that registered the callback. It is that line."""
    with loop_in_a_thread() as loop:  # cancels the task left pending as it stops
        loop.call_soon_threadsafe(asyncio.ensure_future, _forever())
        at = line() - 1
    [task] = leakwatch.leaks("task")
    here = [frame.lineno for frame in task.frames if frame.filename == __file__]
    assert at in here and here.index(at) <= 1, task.headline()  # after _forever's own def line


@pytest.mark.reclaim_allow(kind="task")  # left pending on purpose
def test_a_task_a_callback_posted_by_a_fixtures_thread_made_is_labelled_as_the_loop_runs(
    leakwatch: Watch,
) -> None:
    """A thread a session fixture started runs a test's jobs, one of which posts a callback to
    the test's loop: the task the callback makes is the test's (the label the loop runs under),
    not the fixture's; only the line is the poster's."""
    from reclaim.leaks import set_context

    jobs: queue.Queue[Callable[[], object] | None] = queue.Queue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            job()

    previous = set_context("a session fixture")
    worker = threading.Thread(target=work)
    worker.start()
    set_context("the test")
    at = 0
    try:

        async def main() -> None:
            nonlocal at
            loop = asyncio.get_running_loop()
            posted = asyncio.Event()

            def post() -> None:
                nonlocal at
                loop.call_soon_threadsafe(asyncio.ensure_future, _forever())
                at = line() - 1
                loop.call_soon_threadsafe(posted.set)

            jobs.put(post)
            await posted.wait()
            await asyncio.sleep(0)  # the task starts

        asyncio.run(main())
    finally:
        jobs.put(None)
        worker.join()
        set_context(previous)
    [task] = leakwatch.leaks("task")
    assert task.context == "the test"
    assert at in [frame.lineno for frame in task.frames if frame.filename == __file__], task.headline()


@pytest.mark.reclaim_allow(kind="task")  # left pending on purpose
@pytest.mark.parametrize("end", ["asyncio.run", "loop closed"])
def test_task_left_pending_before_its_first_step_is_reported_not_started(leakwatch: Watch, end: str) -> None:
    """A task made in the loop's last turn (arq's worker main task, started by a task that
    itself first ran then) never ran: it was "suspended at" its coroutine's def line."""
    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def spawn() -> None:
        kept.append(asyncio.create_task(_forever()))

    if end == "asyncio.run":

        async def main() -> None:
            kept.append(asyncio.create_task(spawn()))  # runs in the last turn: its task never does

        asyncio.run(main())
        assert kept[1].cancelled()
    else:
        loop = asyncio.new_event_loop()
        kept.append(loop.create_task(_forever()))
        loop.close()
    leak = leakwatch.one("task")
    assert leak.details["coroutine"] == "_forever"
    assert "awaiting" not in leak.details
    assert ", not started yet" in leak.description
    assert "suspended" not in leak.description
    kept[-1].get_coro().close()  # its loop never will: no "never awaited" warning


def test_awaited_and_cancelled_tasks_are_not_reported(leakwatch: Watch) -> None:
    async def main() -> None:
        await asyncio.create_task(asyncio.sleep(0))
        task = asyncio.create_task(_forever())
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.TaskGroup() as group:
            group.create_task(asyncio.sleep(0))

    asyncio.run(main())
    assert leakwatch.leaks() == []


def test_task_done_before_its_loop_stopped_then_dropped_is_not_reported(leakwatch: Watch) -> None:
    """Done in the loop's last step, its done callback still queued: dropped later, no leak."""
    loop = asyncio.new_event_loop()

    async def stop_the_loop() -> None:
        loop.stop()  # the loop ends after this step, before the task's done callbacks run

    try:
        task = loop.create_task(stop_the_loop())
        loop.run_forever()
        assert task.done()
        assert leakwatch.leaks("task") == []  # a check between tests sees it done
        del task
        gc.collect()
        assert leakwatch.leaks("task") == []
    finally:
        loop.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("left", ["closed", "stopped"])
def test_task_pending_on_a_loop_nothing_runs_says_so_and_is_not_waited_for(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch, left: str
) -> None:
    """Nothing can run it again (its loop closed), or no thread runs it while the check waits (a
    loop made and run for a step, then left neither running nor closed: sanic's
    ``test_timeout_logic`` fixture): a check's grace period does not wait for it (tornado's
    ``test_stop_no_timeout`` paid the whole second, each sanic test so too)."""
    from reclaim.leaks import _tracker

    loop = asyncio.new_event_loop()

    async def main() -> asyncio.Task[None]:
        task = loop.create_task(_forever())
        await asyncio.sleep(0)  # it starts, and waits
        return task

    task = loop.run_until_complete(main())
    if left == "closed":
        loop.close()

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the check waited ({seconds} s) for a task no loop runs")

    try:
        with monkeypatch.context() as patched:
            patched.setattr(_tracker.time, "sleep", no_sleep)
            leak = leakwatch.one("task", grace=30.0)
        if left == "closed":
            assert leak.details["loop_closed"] is True
            assert leak.description.endswith("(its loop is closed: it can never finish)")
        else:
            assert leak.details["loop_stopped"] is True
            assert leak.description.endswith("(its loop is not running)")
    finally:
        if left == "closed":
            task.get_coro().close()  # type: ignore[union-attr]
        else:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
            loop.close()
    assert leakwatch.leaks("task") == []


def test_a_task_cancelled_and_not_awaited_on_a_stopped_loop_says_so(leakwatch: Watch) -> None:
    """cancel() without awaiting the task, on a loop that outlives the test (pytest-asyncio's
    loop_scope="module"): it unwinds, and its finally releases what it holds, only when the loop
    runs next, in another test. Still the test's leak, but the report said only "suspended at"
    the line it waited at, not that it was cancelled."""
    loop = asyncio.new_event_loop()
    flushed = asyncio.Event()

    async def worker() -> None:
        try:
            await _forever()
        finally:
            await flushed.wait()  # cleanup that takes turns of the loop (a flush, a goodbye)

    async def main() -> asyncio.Task[None]:
        task = loop.create_task(worker())
        await asyncio.sleep(0)  # it starts, and waits
        task.cancel()  # and is never awaited
        return task

    task = loop.run_until_complete(main())
    try:
        leak = leakwatch.one("task")
        assert leak.details["cancelled"] is True and leak.details["loop_stopped"] is True
        assert (
            ", cancelled but not awaited (its loop is not running: it unwinds when the loop runs next;"
            in (leak.description)
        )
    finally:
        flushed.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(task)
        loop.close()
    assert leakwatch.leaks("task") == []


def test_task_pending_on_a_loop_another_thread_runs_is_waited_for(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loop running in a thread may still finish its task: the check waits for it, and a task
    that finishes within the grace period is no leak."""
    from reclaim.leaks import _tracker

    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, name="loop-runner")
    runner.start()
    release = asyncio.Event()

    async def until_released() -> None:
        await release.wait()

    async def start() -> asyncio.Task[None]:
        return asyncio.get_running_loop().create_task(until_released())

    task = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    waited: list[float] = []

    def sleep(seconds: float) -> None:  # the check waits: the task ends meanwhile
        waited.append(seconds)
        asyncio.run_coroutine_threadsafe(_released(), loop).result(timeout=10)
        # And the thread that runs the loop, which holds the task in a report: while it ran,
        # the check sat out its whole grace period (30 s) for it.
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=10)

    async def _released() -> None:
        release.set()
        await task

    try:
        with monkeypatch.context() as patched:
            patched.setattr(_tracker.time, "sleep", sleep)
            assert leakwatch.leaks("task", grace=30.0) == []
        assert waited, "the check did not wait for a task its running loop may finish"
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join(timeout=10)
        loop.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_task_the_collector_destroyed_pending_is_not_said_to_be_closed(leakwatch: Watch) -> None:
    """A task dropped pending is destroyed, as asyncio's "Task was destroyed but it is pending!"
    says: "closed by the garbage collector", as for a file, named nothing a task has."""
    loop = asyncio.new_event_loop()

    async def main() -> None:
        task = loop.create_task(_forever())
        await asyncio.sleep(0)  # it starts, and waits: once main returns, nothing keeps it
        assert not task.done()

    loop.run_until_complete(main())
    loop.close()
    gc.collect()  # asyncio logs "Task was destroyed but it is pending!"
    leak = leakwatch.one("task")
    assert leak.state == "collected"
    text = reclaim.leaks.Report((leak,)).to_text()
    assert "(destroyed by the garbage collector while still pending)" in text, text
    assert "closed by the garbage collector" not in text, text


def test_a_task_done_and_dropped_is_freed_at_once_as_without_reclaim(leakwatch: Watch) -> None:
    """Nothing of reclaim's holds a task: a done callback's queued handle kept a finished task
    alive one more turn of its loop, so a program that dropped it and checked that it was gone
    failed under reclaim (databases' test_connection_cleanup_garbagecollector), and asyncio's
    "Task was destroyed but it is pending!" showed that callback as the task's."""

    async def main() -> tuple[str, bool]:
        woken = asyncio.Event()

        async def wake() -> None:
            woken.set()

        task = asyncio.create_task(wake())
        shown = repr(task)
        await woken.wait()  # the task ended in the turn before this one
        assert task.done()
        gone = weakref.ref(task)
        del task
        return shown, gone() is None

    shown, freed = asyncio.run(main())
    assert "cb=" not in shown, shown
    assert freed, "the finished task was still alive once the program dropped it"
    assert leakwatch.leaks() == []


def test_a_task_made_in_debug_mode_says_it_was_made_at_the_programs_line(leakwatch: Watch) -> None:
    """In asyncio's debug mode a task keeps where it was made, which its repr (and asyncio's
    "Task was destroyed" and slow-callback logs) shows: that was reclaim's wrapper (pexpect's
    suite, whose IsolatedAsyncioTestCase runs in debug mode)."""
    shown: list[str] = []

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        shown.append(repr(task))
        await task

    asyncio.run(main(), debug=True)
    assert f"created at {__file__}:{line() - 5}" in shown[0], shown[0]
    assert leakwatch.leaks() == []


class _Awaitable:
    def __await__(self) -> Any:
        yield from asyncio.sleep(0).__await__()
        return 1


def test_a_task_running_a_generator_based_coroutine_done_and_dropped_is_not_reported(
    leakwatch: Watch,
) -> None:
    """``ensure_future()`` of an awaitable that is no coroutine runs it in a task of asyncio's
    ``_wrap_awaitable()``, a generator made a coroutine by ``types.coroutine`` on 3.11 (aiormq's
    ``FutureStore``): it has no ``cr_frame`` to tell it ended, and such a task, done and dropped,
    was reported destroyed pending."""

    async def main() -> None:
        task = asyncio.ensure_future(_Awaitable())
        assert await task == 1

    asyncio.run(main())
    gc.collect()
    assert leakwatch.leaks() == []


class _Holds:
    task: asyncio.Task[_Holds] | None = None


def test_a_task_done_and_dropped_in_a_reference_cycle_is_not_reported(leakwatch: Watch) -> None:
    """Its coroutine, in the cycle, loses its weak reference as the task does: whether the task
    was pending is then what its finalizer says (nothing, for a finished one)."""

    async def ends(holder: _Holds) -> _Holds:
        return holder  # the result holds the holder, which holds the task

    async def main() -> None:
        holder = _Holds()
        holder.task = asyncio.create_task(ends(holder))
        await holder.task

    asyncio.run(main())
    gc.collect()
    assert leakwatch.leaks() == []


def test_task_done_in_its_loops_last_step_then_loop_closed_and_task_dropped_is_not_reported(
    leakwatch: Watch,
) -> None:
    """Its done callback dropped with the loop's ready queue, and no check seeing it done first."""
    loop = asyncio.new_event_loop()

    async def quick() -> int:
        return 1

    async def main() -> asyncio.Task[int]:
        return loop.create_task(quick())  # runs in the step main's end stops the loop in

    try:
        task = loop.run_until_complete(main())
        assert task.done()
    finally:
        loop.close()
    del task
    gc.collect()
    assert leakwatch.leaks() == []


def test_task_done_held_only_by_its_queued_done_callback_dies_in_close_and_is_not_reported(
    leakwatch: Watch,
) -> None:
    """The task a loop made to close an async generator the program dropped, done in the loop's
    last step: only its queued done callback held it, and ``close()`` dropping the ready queue
    killed it before a check could see it done (CPython's test_asyncgen_finalization_by_gc)."""
    loop = asyncio.new_event_loop()

    async def numbers() -> Any:
        yield 1

    async def main() -> None:
        gen = numbers()
        await gen.__anext__()
        del gen  # unfinished: the loop's finalizer hook schedules a task for its aclose()

    try:
        loop.run_until_complete(main())  # stops with the aclose() task's first step queued
        loop.stop()
        loop.run_forever()  # one step: the aclose() task ends, its done callback queued
    finally:
        loop.close()
    gc.collect()
    assert leakwatch.leaks() == []


class _ActsAsATask:
    """What a task factory may return: a Task inside, with only the methods asyncio calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> None:
        self._task = asyncio.Task(coro, loop=loop, **kwargs)

    @property
    def _asyncio_future_blocking(self) -> bool:
        return self._task._asyncio_future_blocking

    def get_loop(self) -> asyncio.AbstractEventLoop:
        return self._task.get_loop()

    def set_name(self, name: object) -> None:  # 3.13's create_task() names what the factory made
        self._task.set_name(name)

    def done(self) -> bool:
        return self._task.done()

    def cancelled(self) -> bool:
        return self._task.cancelled()

    def result(self) -> Any:
        return self._task.result()

    def exception(self) -> BaseException | None:
        return self._task.exception()

    def add_done_callback(self, fn: Any, **kwargs: Any) -> None:
        self._task.add_done_callback(lambda _: fn(self), **kwargs)

    def remove_done_callback(self, fn: Any) -> int:
        return 0  # run_until_complete's callback: called once, harmless


@pytest.mark.parametrize("where", ["outside a task", "in a task"])
def test_task_factory_returning_what_only_acts_as_a_task_runs_as_untracked(
    leakwatch: Watch, where: str
) -> None:
    """``create_task`` returns what the loop's task factory made, also an object with no
    ``get_name()`` (CPython's test_asyncio_run_without_uncancel): recording it raised in the
    program's ``create_task``; it is left alone."""
    loop = asyncio.new_event_loop()
    loop.set_task_factory(_ActsAsATask)  # type: ignore[arg-type]

    async def answer() -> int:
        return 42

    async def in_a_task() -> int:
        made = loop.create_task(answer())
        assert type(made) is _ActsAsATask
        return await made._task  # type: ignore[no-any-return]

    try:
        if where == "in a task":
            assert loop.run_until_complete(asyncio.Task(in_a_task(), loop=loop)) == 42
        else:
            made = loop.create_task(answer())
            assert type(made) is _ActsAsATask
            assert loop.run_until_complete(made) == 42  # type: ignore[arg-type]
    finally:
        loop.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # the unclosed case leaks on purpose
@ignore_gc_warnings
@pytest.mark.parametrize("coro_closed", [True, False], ids=["closed", "only-cancelled"])
@pytest.mark.parametrize("dropped", [True, False], ids=["dropped", "kept"])
def test_task_its_loop_never_ran_is_released_by_closing_its_coroutine(
    leakwatch: Watch, coro_closed: bool, dropped: bool
) -> None:
    """A task made as its loop stopped, cancelled and its coroutine closed by hand before the loop
    closed (tornado's SelectorThread.close()), was reported as collected pending once dropped."""
    loop = asyncio.new_event_loop()
    made: list[asyncio.Task[None]] = []
    loop.call_soon(lambda: made.append(loop.create_task(_forever())))
    at = line() - 1
    loop.call_soon(loop.stop)  # the task's first step is queued after this one: it never runs
    loop.run_forever()
    task = made.pop()
    assert not task.done()
    task._log_destroy_pending = False  # type: ignore[attr-defined]  # as tornado does: asyncio's own log of it
    task.cancel()
    if coro_closed:
        task.get_coro().close()  # type: ignore[union-attr]
    loop.close()
    if dropped:
        del task
        gc.collect()
    found = leakwatch.leaks("task")
    if coro_closed:
        assert found == [], leakwatch.records()
    else:
        [leak] = found
        assert leak.state == ("collected" if dropped else "open")
        assert leak.details["coroutine"] == "_forever"
        assert_site(leak, at)
        if not dropped:
            task.get_coro().close()  # type: ignore[union-attr]
            assert leakwatch.leaks("task") == []


# -- temporary files and directories --------------------------------------------------------


def test_temporary_directory_not_cleaned_up_is_reported(leakwatch: Watch) -> None:
    holder = tempfile.TemporaryDirectory()
    at = line() - 1
    try:
        leak = leakwatch.one("tempdir")
        assert_site(leak, at)
        assert leak.details["path"] == holder.name
        # Not "not removed": its finalizer removes it at exit (aioquic's module-level one), the
        # program never did.
        left = "never cleaned up: left to its finalizer, cleanup() or a with-block"
        assert leak.description == f"{holder.name} (TemporaryDirectory, {left})"
    finally:
        holder.cleanup()
    with tempfile.TemporaryDirectory():
        pass
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_temporary_directory_cleaned_by_the_gc_is_reported(leakwatch: Watch) -> None:
    tempfile.TemporaryDirectory()
    at = line() - 1
    leak = leakwatch.one("tempdir")
    assert_site(leak, at)
    assert leak.state == "collected"


def test_mkdtemp_and_mkstemp_not_removed_are_reported(leakwatch: Watch) -> None:
    directory = tempfile.mkdtemp()
    at_dir = line() - 1
    fd, path = tempfile.mkstemp()
    at_file = line() - 1
    try:
        assert_site(leakwatch.one("tempdir"), at_dir)
        assert_site(leakwatch.one("tempfile"), at_file)
        opened = leakwatch.one("fd")
        assert_site(opened, at_file)
        # The program's call, not the os.open() tempfile made it with (supervisor's suite).
        assert opened.details["call"] == "tempfile.mkstemp" and opened.description.endswith(
            "(tempfile.mkstemp)"
        )
    finally:
        os.rmdir(directory)
        os.close(fd)
        os.unlink(path)
    assert leakwatch.leaks() == []


def test_a_mkstemp_or_mkdtemp_path_removed_then_used_again_is_not_reported(leakwatch: Watch) -> None:
    """CherryPy's tests take a path from ``mkstemp()``, remove the file, and bind a Unix socket
    there: "not removed" judged by the path, the socket made it the file never removed (the
    socket's inode is often the one the file freed). What the path names now is another file,
    the program's own; so a file where ``mkdtemp()``'s directory was."""
    fd, path = tempfile.mkstemp(suffix=".sock")
    os.close(fd)
    os.unlink(path)
    directory = tempfile.mkdtemp()
    os.rmdir(directory)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        Path(directory).write_text("")
        assert [leak.kind for leak in leakwatch.leaks()] == ["socket"]
    finally:
        server.close()
        os.unlink(path)
        os.unlink(directory)
    assert leakwatch.leaks() == []


def test_named_temporary_file_not_closed_is_reported_once(leakwatch: Watch) -> None:
    handle = tempfile.NamedTemporaryFile()  # noqa: SIM115 - the leak under test
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["tempfile"]
        assert_site(leakwatch.one("tempfile"), at)
    finally:
        handle.close()
    with tempfile.NamedTemporaryFile() as other:
        other.write(b"x")
    with tempfile.TemporaryFile() as anonymous:
        anonymous.write(b"x")
    assert leakwatch.leaks() == []


# -- mmap -------------------------------------------------------------------------------------


def test_mmap_not_closed_is_reported(leakwatch: Watch, tmp_path: Path) -> None:
    anonymous = mmap.mmap(-1, 4096)
    at = line() - 1
    path = tmp_path / "m.bin"
    path.write_bytes(b"\0" * 4096)
    with open(path, "r+b") as f:
        mapped = mmap.mmap(f.fileno(), 0)
    at_file = line() - 1
    try:
        found = leakwatch.leaks("mmap")
        assert [leak.site.lineno for leak in found if leak.site] == [at, at_file]
        assert found[1].details["path"] == str(path)
        assert leakwatch.leaks("untracked-fd") == []
        assert isinstance(anonymous, mmap.mmap)
    finally:
        anonymous.close()
        mapped.close()
    with mmap.mmap(-1, 4096) as m:
        m[0] = 1
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_mmap_dropped_unclosed_is_collected(leakwatch: Watch) -> None:
    mmap.mmap(-1, 4096)
    at = line() - 1
    leak = leakwatch.one("mmap")
    assert_site(leak, at)
    assert leak.state == "collected"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_mmap_whose_close_a_view_refused_is_released_as_the_view_dies(leakwatch: Watch) -> None:
    """``close()`` raises ``BufferError`` while a view of the map is alive: the program closed
    it as far as it could, and the view's end releases it (astropy.io.fits drops its maps so).
    One dropped with its view and never closed is still the collector's."""
    refused = mmap.mmap(-1, 4096)
    view = memoryview(refused)
    with pytest.raises(BufferError):
        refused.close()
    assert leakwatch.leaks("mmap") != []  # open still: its view keeps it mapped
    del refused
    view.release()  # the map's last reference: unmapped here
    assert leakwatch.leaks() == []
    forgotten = mmap.mmap(-1, 4096)
    at = line() - 1
    view = memoryview(forgotten)
    del forgotten
    view.release()
    leak = leakwatch.one("mmap")
    assert_site(leak, at)
    assert leak.state == "collected"


def test_mmap_subclass_whose_new_passes_other_arguments_is_made_and_reported(leakwatch: Watch) -> None:
    """A subclass's ``__new__`` may call mmap's with arguments its ``__init__`` is never given
    (CPython's test_mmap): made as without tracking, and reported at the program's line. A map's
    repr names ``mmap.mmap`` as mmap's own does, a subclass's its own name."""

    class Anonymous(mmap.mmap):
        def __new__(cls, *args: Any, **kwargs: Any) -> Anonymous:
            return mmap.mmap.__new__(cls, -1, *args, **kwargs)

    made = Anonymous(4096)
    at = line() - 1
    try:
        leak = leakwatch.one("mmap")
        assert [frame.lineno for frame in leak.frames][:2] == [at - 2, at]
        assert repr(made).startswith("<Anonymous closed=False, ")
    finally:
        made.close()
    with mmap.mmap(-1, 16) as plain:
        assert repr(plain).startswith("<mmap.mmap closed=False, access=ACCESS_DEFAULT, length=16, ")
    assert repr(plain) == "<mmap.mmap closed=True>"
    assert leakwatch.leaks() == []


# -- dbm and shelve ---------------------------------------------------------------------------

#: The dbm modules whose databases are tracked: dbm.sqlite3 is 3.13's (and its dbm.open default).
DBM_MODULES = ["dbm.dumb", *(["dbm.sqlite3"] if sys.version_info >= (3, 13) else [])]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("module", DBM_MODULES)
def test_dbm_database_and_shelf_never_closed_are_one_entry_each_at_the_programs_line(
    leakwatch: Watch, tmp_path: Path, module: str
) -> None:
    """A dbm database never closed is one ``dbm`` entry naming its file and module, at the line
    that opened it (``dbm.dumb`` holds no descriptor: it was never reported; ``dbm.sqlite3``'s
    connection was a ``sqlite3`` entry named by a URI). A shelf dropped unclosed is its
    database's entry, closed by the garbage collector; one closed or in a with-block is none."""
    import dbm
    import shelve

    opener = importlib.import_module(module)
    with opener.open(str(tmp_path / "in-block"), "c") as db:
        db[b"k"] = b"v"
    closed = opener.open(str(tmp_path / "closed"), "c")
    closed.close()
    with shelve.Shelf(opener.open(str(tmp_path / "shelf-ok"), "c")) as shelf:
        shelf["k"] = 1
    assert leakwatch.leaks() == []
    kept = opener.open(str(tmp_path / "kept"), "c")
    at = line() - 1
    shelve.Shelf(opener.open(str(tmp_path / "dropped"), "c"))["k"] = 1
    dropped_at = line() - 1
    try:
        found = leakwatch.leaks()
        assert [(leak.kind, leak.site.lineno if leak.site else None, leak.state) for leak in found] == [
            ("dbm", at, "open"),
            ("dbm", dropped_at, "collected"),
        ]
        assert found[0].description == f"{tmp_path / 'kept'} ({module} database)"
        assert found[0].details == {"path": str(tmp_path / "kept"), "module": module}
    finally:
        kept.close()
    assert dbm.whichdb(str(tmp_path / "kept")) == module


def test_numpy_memmap_dropped_is_released_and_one_still_alive_is_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """numpy.memmap has no close: dropping the array (and its views) is how its map is released."""
    np = pytest.importorskip("numpy")
    mapped = np.memmap(tmp_path / "a.dat", dtype="float32", mode="w+", shape=(100,))
    mapped[:] = 1
    mapped.flush()
    del mapped
    np.save(tmp_path / "b.npy", np.arange(5))
    loaded = np.load(tmp_path / "b.npy", mmap_mode="r")
    assert loaded.sum() == 10
    del loaded
    assert leakwatch.leaks() == []
    kept = np.memmap(tmp_path / "a.dat", dtype="float32", mode="r")[10:20]  # a view holds the map
    leak = leakwatch.one("mmap")
    assert leak.state == "open" and leak.details["path"] == str(tmp_path / "a.dat")
    del kept
    assert leakwatch.leaks() == []


def test_a_pillow_images_map_is_released_by_close_and_one_still_loaded_is_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Pillow maps an uncompressed image's pixels in ``ImageFile.load()`` and releases the map by
    dropping it (``Image.close()``): 70 of its tests that closed their image were told they left
    the map to the garbage collector, at the line that loaded it."""
    image = pytest.importorskip("PIL.Image")
    path = tmp_path / "gray.bmp"
    image.new("L", (64, 64), 128).save(path)  # 8-bit BMP: load() maps the file
    im = image.open(path)
    im.load()
    assert getattr(im, "map", None) is not None  # mapped, as the tests under test are
    im.close()
    with image.open(path) as im:
        im.load()
    del im  # the with-block closed the file; dropping the image releases the map
    assert leakwatch.leaks() == []
    kept = image.open(path)
    kept.load()
    at = line() - 1
    leak = leakwatch.one("mmap")  # still loaded: its map is open, at the line that loaded it
    assert leak.state == "open" and leak.details["path"] == str(path)
    assert (__file__, at) in [(frame.filename, frame.lineno) for frame in leak.frames]  # under Pillow's
    kept.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings  # 3.13's sqlite3 warns of the connection pony leaves to the collector
def test_a_pony_in_memory_database_keeps_its_connection_and_a_file_ones_is_the_programs(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Pony keeps a ``":memory:"`` database's one connection for as long as the Database lives
    (its ``disconnect()`` a no-op: closing it would drop the data), so a test that dropped its
    database was told the collector closed the connection (250 of pony's own tests). A file
    database's connections are still the program's to close (``disconnect()``)."""
    orm = pytest.importorskip("pony.orm")

    def bound(filename: str) -> Any:
        db = orm.Database()

        class Item(db.Entity):  # pony's entities are built at run time
            name = orm.Required(str)

        db.bind(provider="sqlite", filename=filename, create_db=True)
        db.generate_mapping(create_tables=True)
        with orm.db_session:
            Item(name="one")
        return db

    db = bound(":memory:")
    db.disconnect()
    del db
    gc.collect()  # a Database is a reference cycle: its connection goes with it now
    assert leakwatch.leaks() == []
    db = bound(str(tmp_path / "items.db"))
    [leak] = leakwatch.leaks("sqlite3")
    assert leak.details["database"] == str(tmp_path / "items.db")
    # pony's connect() is wrapped by code its vendored decorator package execs as "<string>":
    # that was the line the report led with, not the program's bind() under it.
    shown = [frame.filename for frame in leak.frames]
    assert __file__ in shown and not [name for name in shown if name.startswith("<")], leak.frames
    db.disconnect()
    assert leakwatch.leaks() == []


def test_coverages_data_kept_in_memory_is_coverages(leakwatch: Watch) -> None:
    """coverage keeps a report's remapped data (``no_disk``) in an in-memory database whose
    ``close()`` keeps it unless forced: pytest-cov's report under ``[paths]`` left two such
    connections, a leak at the end of every run."""
    sqldata = pytest.importorskip("coverage.sqldata")
    data = sqldata.CoverageData(no_disk=True)
    data.add_lines({"/app/mod.py": [1, 2, 3]})
    assert data.measured_files() == {"/app/mod.py"}
    assert leakwatch.leaks() == []  # open until forced closed, as coverage means it to be
    data.close(force=True)


def test_aiomultiprocess_keeps_one_manager_for_the_process(leakwatch: Watch) -> None:
    """``aiomultiprocess.core.get_manager()`` starts a ``SyncManager`` on first use and keeps it
    in a module global for every later call (multiprocessing shuts it down at exit): it was the
    leak of whichever test called first."""
    core = pytest.importorskip("aiomultiprocess.core")
    namespace = core.get_manager().Namespace()
    namespace.value = 1
    assert core.get_manager().Namespace() is not None
    del namespace
    assert leakwatch.leaks() == []


# -- reclaim's own owners -------------------------------------------------------------------


def test_scope_entered_and_never_exited_is_reported(leakwatch: Watch) -> None:
    scope = reclaim.Scope()
    scope.__enter__()
    at = line() - 1
    try:
        assert_site(leakwatch.one("scope"), at)
    finally:
        scope.__exit__(None, None, None)
    with reclaim.Scope() as inner:
        inner.callback(lambda: None)
    assert leakwatch.leaks() == []


@reclaim.resource
def _connection() -> object:
    yield object()


def test_resource_entered_and_never_exited_is_reported(leakwatch: Watch) -> None:
    held = _connection()
    held.__enter__()
    at = line() - 1
    try:
        leak = leakwatch.one("resource")
        assert_site(leak, at)
        assert "_connection" in leak.description
    finally:
        held.__exit__(None, None, None)
    with _connection():
        pass
    assert leakwatch.leaks() == []


# -- modules imported after tracking started ------------------------------------------------

LATE_IMPORTS = """
import json, sys
from reclaim.leaks import Tracker
# reclaim itself imports asyncio, socket, subprocess...; these two come later:
assert not {"sqlite3", "mmap"} & set(sys.modules), "imported too early"
tracker = Tracker().start()
import asyncio, mmap, selectors, socket, sqlite3, subprocess, tempfile  # after start()
conn = sqlite3.connect(":memory:")
proc = subprocess.Popen([sys.executable, "-c", "pass"])
holder = tempfile.TemporaryDirectory()
m = mmap.mmap(-1, 4096)
sock = socket.socket()
sel = selectors.DefaultSelector()
async def forever():
    await asyncio.Event().wait()
async def main():
    asyncio.create_task(forever())
    await asyncio.sleep(0)
asyncio.run(main())
kinds = sorted({leak.kind for leak in tracker.leaks()})
print(json.dumps(kinds))
proc.wait(); conn.close(); holder.cleanup(); m.close(); sock.close(); sel.close()
tracker.stop()
"""


def test_modules_imported_after_start_are_instrumented_when_imported(tmp_path: Path) -> None:
    """The tracker patches sqlite3, asyncio, subprocess... when the program imports them."""
    script = tmp_path / "late.py"
    script.write_text(LATE_IMPORTS)
    out = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    kinds = json.loads(out.stdout.strip().splitlines()[-1])
    assert kinds == ["mmap", "selector", "socket", "sqlite3", "subprocess", "task", "tempdir"]


REIMPORTED = """
import json, sys
from reclaim.leaks import Tracker
tracker = Tracker().start()
import sqlite3
first = sqlite3.connect(":memory:")
# What pytest's pytester does after a test: the modules the test imported are dropped from
# sys.modules, and the next import makes new ones.
for name in [name for name in sys.modules if name == "sqlite3" or name.startswith("sqlite3.")]:
    del sys.modules[name]
import sqlite3 as again
second = again.connect(":memory:")
print(json.dumps(sorted(leak.kind for leak in tracker.leaks())))
first.close(); second.close()
tracker.stop()
"""


def test_a_module_imported_again_after_leaving_sys_modules_is_instrumented_again(tmp_path: Path) -> None:
    """pytester, and test isolation tools, drop the modules a test imported: the next import makes
    new module objects, which the tracker patches too (they went unpatched, their leaks unseen)."""
    script = tmp_path / "again.py"
    script.write_text(REIMPORTED)
    out = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["sqlite3", "sqlite3"]


BROKEN_INSTALLER = """
import json, os, sys, warnings
sys.path.insert(0, os.getcwd())
from reclaim.leaks import Tracker, _instrument
# A library whose shape the integration does not know: its installer raises on it.
_instrument.HOOKS += (("oddlib", "_sqlite:install"),)
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    tracker = Tracker().start()
    import oddlib
    import sqlite3
    conn = sqlite3.connect(":memory:")
print(json.dumps({"value": oddlib.VALUE, "kinds": [leak.kind for leak in tracker.leaks()],
                  "warnings": [str(w.message) for w in caught]}))
conn.close()
tracker.stop()
"""


def test_an_integration_whose_installer_raises_leaves_the_programs_import_alone(tmp_path: Path) -> None:
    """An installer that fails on a library's version raised into the program's ``import``: the
    program broke because it was tracked. The library is imported untracked now, with a warning
    naming it, and the other kinds are tracked as before."""
    (tmp_path / "oddlib.py").write_text("VALUE = 42\n")
    script = tmp_path / "odd.py"
    script.write_text(BROKEN_INSTALLER)
    out = subprocess.run(
        [sys.executable, "-I", str(script)], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["value"] == 42
    assert found["kinds"] == ["sqlite3"]
    (warned,) = [w for w in found["warnings"] if "oddlib" in w]
    assert "reclaim could not instrument oddlib" in warned
    assert "_sqlite:install" in warned


def test_an_installer_raising_under_warnings_as_errors_leaves_the_import_alone(tmp_path: Path) -> None:
    """``filterwarnings = error`` (many projects' pytest setting) turns the warning into an error:
    it must not reach the program's import either. It goes to stderr instead."""
    (tmp_path / "oddlib.py").write_text("VALUE = 42\n")
    script = tmp_path / "odd.py"
    script.write_text(BROKEN_INSTALLER.replace('simplefilter("always")', 'simplefilter("error")'))
    out = subprocess.run(
        [sys.executable, "-I", "-W", "error", str(script)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["value"] == 42
    assert "RuntimeWarning: reclaim could not instrument oddlib" in out.stderr


# -- reclaim's own resources ------------------------------------------------------------------


def test_reclaims_own_resources_used_right_are_not_reported(leakwatch: Watch, tmp_path: Path) -> None:
    with reclaim.atomic_write(tmp_path / "out.txt", durable=False) as f:
        f.write("x")
    with reclaim.temp_dir() as directory:
        (Path(directory) / "inner").write_text("y")
    with reclaim.locked(tmp_path / "lock"):
        pass
    pool = reclaim.Pool(lambda: sqlite3.connect(":memory:"), close=lambda c: c.close(), max_size=2)
    with pool, pool.acquire() as conn:
        conn.execute("select 1")
    assert leakwatch.leaks() == []


def test_pool_lease_never_released_is_reported(leakwatch: Watch) -> None:
    pool = reclaim.Pool(lambda: sqlite3.connect(":memory:"), close=lambda c: c.close(), max_size=1)
    lease = pool.acquire()
    at = line() - 1
    try:
        leak = leakwatch.one("lease")
        assert_site(leak, at)
        # The connection the lambda made for that lease is the pool's, not an entry of its own.
        assert sorted(leak.kind for leak in leakwatch.leaks()) == ["lease", "pool"]
    finally:
        lease.release()
        pool.close()
    assert leakwatch.leaks() == []


# -- multiprocessing ----------------------------------------------------------------------------


def test_multiprocessing_queue_not_closed_is_one_leak_not_its_pipe_and_thread(leakwatch: Watch) -> None:
    """An unclosed mp.Queue is reported once, as itself, at its line; closed and joined, not at all."""
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    at = line() - 1
    queue.put(1)  # starts the feeder thread
    assert queue.get() == 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["multiprocessing"]
        leak = leakwatch.one("multiprocessing")
        assert_site(leak, at)
        assert leak.description == "multiprocessing.Queue not closed (close() and join_thread())"
    finally:
        queue.close()
        queue.join_thread()
    assert leakwatch.leaks() == []


def test_multiprocessing_thread_pool_left_running_is_one_leak(leakwatch: Watch) -> None:
    """A pool never closed is one leak at its line; one used in a with-block leaves nothing."""
    with ThreadPool(2) as used:
        assert used.map(abs, [-1, -2]) == [1, 2]
    assert leakwatch.leaks(grace=10.0) == []  # its worker threads end right after terminate()
    pool = ThreadPool(1)
    at = line() - 1
    try:
        assert pool.apply(abs, (-3,)) == 3
        assert [leak.kind for leak in leakwatch.leaks()] == ["multiprocessing"]
        leak = leakwatch.one("multiprocessing")
        assert_site(leak, at)
        assert leak.description.startswith("multiprocessing.pool.ThreadPool not closed")
    finally:
        pool.terminate()
        pool.join()
    assert leakwatch.leaks(grace=10.0) == []
    # A pool closes its pipes only when collected; do it now, not during some later test.
    del used, pool
    gc.collect()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_manager_never_shut_down_is_reported_and_dropped_is_reported_as_collected(leakwatch: Watch) -> None:
    """A started manager never shut down is one leak at its line; dropped unshut, its finalizer
    (run by the garbage collector) stops its server: reported as collected, not forgotten."""
    spawn = multiprocessing.get_context("spawn")  # no fork() in this multi-threaded process
    with spawn.Manager() as used:
        assert used.list([1])[0] == 1
    assert leakwatch.leaks(grace=10.0) == []
    manager = spawn.Manager()
    at = line() - 1
    assert manager.dict(a=1)["a"] == 1
    leak = leakwatch.one("multiprocessing")
    assert_site(leak, at)
    problem = "not shut down (shutdown() or a with-block)"
    assert leak.description == f"multiprocessing.managers.SyncManager {problem}"
    assert leak.state == "open"
    server = manager._process
    del manager, leak  # its finalizer shuts its server down
    gc.collect()
    assert not server.is_alive()
    leak = _collected(leakwatch, "multiprocessing", at)
    assert "(dropped without shutdown(): its finalizer, run by the garbage collector, stopped its server" in (
        reclaim.leaks.Report((leak,)).to_text()
    )


def test_joblib_memmapping_pool_is_one_leak_not_its_queues_pipes(leakwatch: Watch) -> None:
    """joblib's MemmappingPool (Parallel's "multiprocessing" backend) makes its queues' pipes as
    multiprocessing.Pool makes its own, closed when it is collected: they are the pool's, not
    two leaks of the caller; the pool never terminated is one leak at its line."""
    joblib_pool = pytest.importorskip("joblib.pool")
    pool = joblib_pool.MemmappingPool(1)
    at = line() - 1
    try:
        assert pool.apply(abs, (-3,)) == 3
        assert [leak.kind for leak in leakwatch.leaks()] == ["multiprocessing"]
        leak = leakwatch.one("multiprocessing")
        assert_site(leak, at)
        assert leak.description.startswith("joblib.pool.MemmappingPool not closed")
    finally:
        pool.terminate()
        pool.join()
    del pool, leak
    assert leakwatch.leaks(grace=10.0) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_process_pool_executor_not_shut_down_is_one_leak_and_collected_is_reported(leakwatch: Watch) -> None:
    """An executor never shut down is one leak at its line; dropped unshut, it is reported as collected."""
    spawn = multiprocessing.get_context("spawn")  # no fork() in this multi-threaded process
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as used:
        assert list(used.map(abs, [-1, -2])) == [1, 2]
    assert leakwatch.leaks(grace=10.0) == []
    executor = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    at = line() - 1
    assert executor.submit(abs, -3).result() == 3
    manager = executor._executor_manager_thread
    assert manager is not None
    assert [leak.kind for leak in leakwatch.leaks()] == ["multiprocessing"]
    leak = leakwatch.one("multiprocessing")
    assert_site(leak, at)
    problem = "not shut down (shutdown() or a with-block)"
    assert leak.description == f"concurrent.futures.ProcessPoolExecutor {problem}"
    assert leak.state == "open"
    del executor  # its manager thread sees it gone and shuts the worker down
    manager.join()
    leak = _collected(leakwatch, "multiprocessing", at)
    assert "(dropped without shutdown(): once the garbage collector freed it" in (
        reclaim.leaks.Report((leak,)).to_text()
    )
    del leak
    gc.collect()  # the queues close their pipes when collected: now, not during a later test


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_loky_executor_not_shut_down_is_reported_and_its_reusable_executor_is_not(leakwatch: Watch) -> None:
    """A loky ProcessPoolExecutor the program made and never shut down is one leak at its line,
    as a concurrent.futures one is (loky's package is owned as a whole: it went unreported);
    loky's reusable executor, kept for the process and shut down at exit, is loky's own."""
    loky = pytest.importorskip("joblib.externals.loky")
    reusable = loky.get_reusable_executor(max_workers=1)
    assert reusable.submit(abs, -1).result() == 1
    with loky.ProcessPoolExecutor(1) as used:
        assert used.submit(abs, -2).result() == 2
    assert leakwatch.leaks(grace=10.0) == []
    executor = loky.ProcessPoolExecutor(1)
    at = line() - 1
    assert executor.submit(abs, -3).result() == 3
    manager = executor._executor_manager_thread
    assert manager is not None
    leak = leakwatch.one("multiprocessing")
    assert_site(leak, at)
    problem = "not shut down (shutdown() or a with-block)"
    assert leak.description == f"joblib.externals.loky.ProcessPoolExecutor {problem}"
    del executor, leak  # its manager thread sees it gone and shuts the worker down
    manager.join()
    leak = _collected(leakwatch, "multiprocessing", at)
    assert "(dropped without shutdown(): once the garbage collector freed it" in (
        reclaim.leaks.Report((leak,)).to_text()
    )
    del leak
    gc.collect()  # the queues close their pipes when collected: now, not during a later test


def test_thread_pool_executor_not_shut_down_is_one_leak_not_its_workers(leakwatch: Watch) -> None:
    """An executor never shut down is one leak at its line, not a thread per worker at submit()."""
    executor = concurrent.futures.ThreadPoolExecutor(2)
    at = line() - 1
    try:
        futures = [executor.submit(abs, -n) for n in range(4)]
        assert [future.result() for future in futures] == [0, 1, 2, 3]
        assert [leak.kind for leak in leakwatch.leaks()] == ["thread"]
        leak = leakwatch.one("thread")
        assert_site(leak, at)
        problem = "not shut down (shutdown() or a with-block)"
        assert leak.description == f"concurrent.futures.ThreadPoolExecutor {problem}"
        assert leak.details == {"class": "concurrent.futures.ThreadPoolExecutor", "problem": problem}
        assert leak.state == "open"
        # Its idle workers never end by themselves: a check's grace period must not wait for
        # them, as it does for a thread (the whole period, once per test that forgot shutdown()).
        from reclaim.leaks._kinds import kind_of

        assert not kind_of("thread").worth_waiting_for(leak.details)
        assert kind_of("thread").worth_waiting_for({"name": "worker", "target": "run", "daemon": False})
    finally:
        executor.shutdown()
    assert leakwatch.leaks() == []


def test_thread_pool_executor_in_a_with_block_or_shut_down_without_waiting_is_not_reported(
    leakwatch: Watch,
) -> None:
    """A with-block, shutdown() and shutdown(wait=False) all count as shut down; the workers never show."""
    with concurrent.futures.ThreadPoolExecutor(2) as used:
        assert list(used.map(abs, [-1, -2])) == [1, 2]
    assert leakwatch.leaks() == []
    unwaited = concurrent.futures.ThreadPoolExecutor(2)
    release = threading.Event()
    running = unwaited.submit(release.wait)  # a worker still busy when shutdown returns
    unwaited.shutdown(wait=False)
    assert not running.done()
    assert leakwatch.leaks() == []
    release.set()
    unwaited.shutdown()  # joins the workers, so none outlives the test
    assert running.result() is True
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_thread_pool_executor_dropped_unshut_is_reported_as_collected(leakwatch: Watch) -> None:
    """Its workers end once the executor is gone: the garbage collector shut it down, which is a leak."""
    executor = concurrent.futures.ThreadPoolExecutor(1)
    at = line() - 1
    assert executor.submit(abs, -3).result() == 3
    workers = list(executor._threads)
    del executor
    for worker in workers:
        worker.join()
    leak = _collected(leakwatch, "thread", at)
    assert leak.description.startswith("concurrent.futures.ThreadPoolExecutor not shut down")
    assert "(dropped without shutdown(): once the garbage collector freed it, its workers finished" in (
        reclaim.leaks.Report((leak,)).to_text()
    )


@pytest.mark.parametrize("duplex", [True, False])
def test_pipe_left_open_is_one_leak_naming_the_end_still_open(leakwatch: Watch, duplex: bool) -> None:
    """Both ends open: one entry, not two descriptors; one end closed: still one, naming the open end."""
    first, second = multiprocessing.Pipe(duplex)
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["multiprocessing"]
        leak = leakwatch.one("multiprocessing")
        assert_site(leak, at)
        label = "multiprocessing.Pipe() connection pair"
        assert leak.description == f"{label} not closed: both ends open (close() each)"
        assert leak.details["first"] == leak.details["second"] == "open"
        assert leak.details["duplex"] is duplex
        second.close()
        leak = leakwatch.one("multiprocessing")
        assert_site(leak, at)
        ends = ("first end", "second end") if duplex else ("read end (first)", "write end (second)")
        problem = f"not closed: the {ends[0]} open (close() it), the {ends[1]} closed"
        assert leak.description == f"{label} {problem}"
        assert (leak.details["first"], leak.details["second"]) == ("open", "closed")
    finally:
        first.close()
        second.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_pipe_dropped_unclosed_is_reported_as_collected(leakwatch: Watch) -> None:
    """Ends the program never closed, closed by their __del__, make the pair a collected leak."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    at = line() - 1
    writer.close()
    del reader, writer
    leak = _collected(leakwatch, "multiprocessing", at)
    assert leak.details["first"] == "collected" and leak.details["second"] == "closed"


def test_pipe_and_pool_never_closed_are_not_waited_for(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing but the program's own close() ends them: a check does not sit out its grace period
    (pebble's handler left its result pipe open in every test, each check waiting a second)."""
    from reclaim.leaks import _tracker

    def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the check waited ({seconds} s) for what cannot end by itself")

    ends = multiprocessing.Pipe(duplex=False)
    pool = ThreadPool(1)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(_tracker.time, "sleep", no_sleep)
            found = leakwatch.leaks("multiprocessing", grace=30.0)
        assert sorted(leak.description.split()[0] for leak in found) == [
            "multiprocessing.Pipe()",
            "multiprocessing.pool.ThreadPool",
        ]
    finally:
        pool.terminate()
        pool.join()
        for end in ends:
            end.close()


def test_pool_closed_but_not_joined_is_waited_for(leakwatch: Watch) -> None:
    """Its threads end by themselves after close(): the grace period waits for them, and nothing is left."""
    pool = ThreadPool(1)
    assert pool.apply(abs, (-3,)) == 3
    pool.close()
    try:
        assert leakwatch.leaks(grace=RUN_TIMEOUT) == []
    finally:
        pool.join()


def test_multiprocessing_queue_used_right_reports_nothing_of_its_pipe(leakwatch: Watch) -> None:
    """A queue closed and joined leaves nothing; the Pipe() inside it is never reported, even while open."""
    queue: multiprocessing.Queue[int] = multiprocessing.Queue()
    queue.put(1)
    assert queue.get() == 1
    try:
        assert [leak.description.split()[0] for leak in leakwatch.leaks()] == ["multiprocessing.Queue"]
    finally:
        queue.close()
        queue.join_thread()
    assert leakwatch.leaks() == []


# -- executors, pools and pipes dropped in a reference cycle ---------------------------------
# The collector clears weakrefs before it runs finalizers: the record's callback runs before the
# __del__ that tells whether the object was ever shut down or closed, and must leave it the record.


class _Held:
    """An object in a reference cycle, so only the garbage collector frees what it holds."""

    def __init__(self, obj: object) -> None:
        self.obj = obj
        self.me = self


@contextlib.contextmanager
def _only_the_collector() -> Iterator[None]:
    """Keep the collector from freeing cycles on its own while the test looks at them."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _collect_in_a_cycle(leakwatch: Watch, kind: str, box: list[object]) -> None:
    """Hold *box*'s one object (its only reference) in a reference cycle, then collect the cycle.

    The leak of *kind* is still open until the collector, not a dropped reference, frees it.
    """
    with _only_the_collector():
        held = weakref.ref(_Held(box.pop()))
        assert leakwatch.one(kind).state == "open"
    gc.collect()
    assert held() is None


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_thread_pool_executor_never_shut_down_collected_in_a_cycle_is_reported_as_collected(
    leakwatch: Watch,
) -> None:
    """As when dropped: its workers end once it is gone, the garbage collector shut it down."""
    executor = concurrent.futures.ThreadPoolExecutor(1)
    at = line() - 1
    assert executor.submit(abs, -3).result() == 3
    workers = list(executor._threads)
    box: list[object] = [executor]
    del executor
    _collect_in_a_cycle(leakwatch, "thread", box)
    for worker in workers:
        worker.join()
    leak = _collected(leakwatch, "thread", at)
    assert leak.description.startswith("concurrent.futures.ThreadPoolExecutor not shut down")


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_process_pool_executor_never_shut_down_collected_in_a_cycle_is_reported_as_collected(
    leakwatch: Watch,
) -> None:
    """As when dropped: its manager thread sees it gone and shuts the worker down."""
    spawn = multiprocessing.get_context("spawn")  # no fork() in this multi-threaded process
    executor = concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn)
    at = line() - 1
    assert executor.submit(abs, -3).result() == 3
    manager = executor._executor_manager_thread
    assert manager is not None
    box: list[object] = [executor]
    del executor
    _collect_in_a_cycle(leakwatch, "multiprocessing", box)
    manager.join()
    leak = _collected(leakwatch, "multiprocessing", at)
    assert leak.description.startswith("concurrent.futures.ProcessPoolExecutor not shut down")
    del leak
    gc.collect()  # the queues close their pipes when collected: now, not during a later test


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # the pool's own __del__ warns that it was collected running
@pytest.mark.parametrize("spawned", [True, False], ids=["Pool", "ThreadPool"])
def test_pool_never_closed_collected_in_a_cycle_is_reported_as_collected(
    leakwatch: Watch, spawned: bool
) -> None:
    """As when dropped: the pool's finalizer terminated it, which is the garbage collector's doing."""
    if spawned:
        pool = multiprocessing.pool.Pool(1, context=multiprocessing.get_context("spawn"))
        at = line() - 1
    else:
        pool = ThreadPool(1)
        at = line() - 1
    assert pool.apply(abs, (-3,)) == 3
    # The answer's ApplyResult lets go of the pool only after it woke apply(): until its result
    # thread gets there, the pool outlives the cycle and dies of its last reference there. Either
    # way it dies unclosed; wait for that death, not for a given thread.
    gone = threading.Event()
    weakref.finalize(pool, gone.set)
    box: list[object] = [pool]
    del pool
    _collect_in_a_cycle(leakwatch, "multiprocessing", box)
    assert gone.wait(RUN_TIMEOUT)
    leak = _collected(leakwatch, "multiprocessing", at, grace=10.0)
    name = "multiprocessing.Pool" if spawned else "multiprocessing.pool.ThreadPool"
    assert leak.description.startswith(f"{name} not closed")
    assert "(dropped without close(): its finalizer, run by the garbage collector, terminated" in (
        reclaim.leaks.Report((leak,)).to_text()
    )


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_child_never_waited_collected_in_a_cycle_is_reported_as_collected(leakwatch: Watch) -> None:
    """As when dropped: subprocess reaps it later, but the program never collected its status."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    at = line() - 1
    pid = proc.pid
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped
    box: list[object] = [proc]
    del proc
    _collect_in_a_cycle(leakwatch, "subprocess", box)
    leak = _collected(leakwatch, "subprocess", at)
    assert leak.details["pid"] == pid
    subprocess._cleanup()  # type: ignore[attr-defined]  # reap it now, as Popen would later


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_pipe_never_closed_collected_in_a_cycle_is_reported_as_collected(leakwatch: Watch) -> None:
    """Ends closed by their __del__ in a collected cycle make the pair a collected leak, as when dropped."""
    reader, writer = multiprocessing.Pipe(duplex=False)
    at = line() - 1
    box: list[object] = [(reader, writer)]
    del reader, writer
    _collect_in_a_cycle(leakwatch, "multiprocessing", box)
    leak = _collected(leakwatch, "multiprocessing", at)
    assert leak.details["first"] == leak.details["second"] == "collected"


def _released_thread_pool_executor() -> object:
    executor = concurrent.futures.ThreadPoolExecutor(1)
    assert executor.submit(abs, -3).result() == 3
    executor.shutdown()
    return executor


def _released_process_pool_executor() -> object:
    executor = concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    assert executor.submit(abs, -3).result() == 3
    executor.shutdown()
    return executor


def _released_pool() -> object:
    pool = multiprocessing.pool.Pool(1, context=multiprocessing.get_context("spawn"))
    assert pool.apply(abs, (-3,)) == 3
    pool.close()
    pool.join()
    return pool


def _released_pipe() -> object:
    ends = multiprocessing.Pipe()
    for end in ends:
        end.close()
    return ends


def _waited_child() -> object:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc


@pytest.mark.parametrize(
    "make",
    [
        _released_thread_pool_executor,
        _released_process_pool_executor,
        _released_pool,
        _released_pipe,
        _waited_child,
    ],
    ids=["ThreadPoolExecutor", "ProcessPoolExecutor", "Pool", "Pipe", "Popen"],
)
def test_released_then_collected_in_a_cycle_reports_nothing(
    leakwatch: Watch, make: Callable[[], object]
) -> None:
    """Shut down, or closed (and joined), before the cycle holding it is collected: nothing to report."""
    with _only_the_collector():
        held = weakref.ref(_Held(make()))
        assert leakwatch.leaks() == []
    gc.collect()
    assert held() is None
    assert leakwatch.leaks() == []


# -- reclaim.temp_dir() / reclaim.temp_file() -------------------------------------------------
# Each is one resource of the kind tempfile's own are reported as: the mkdtemp()/mkstemp() inside
# belongs to it, as TemporaryDirectory's does.


def test_reclaim_temp_dir_and_temp_file_not_removed_are_one_leak_each(leakwatch: Watch) -> None:
    directory = reclaim.temp_dir()
    at_dir = line() - 1
    file = reclaim.temp_file()
    at_file = line() - 1
    try:
        assert sorted(leak.kind for leak in leakwatch.leaks()) == ["tempdir", "tempfile"]
        made = leakwatch.one("tempdir")
        assert_site(made, at_dir)
        assert made.details == {"path": str(directory.path), "made_by": "reclaim.temp_dir()"}
        assert made.description == f"{directory.path} (reclaim.temp_dir(), not removed)"
        made = leakwatch.one("tempfile")
        assert_site(made, at_file)
        assert made.details == {"path": str(file.path), "made_by": "reclaim.temp_file()"}
        assert leakwatch.leaks(ignore_kinds={"tempdir", "tempfile"}) == []
    finally:
        directory.close()
        file.close()
    assert leakwatch.leaks() == []


def test_reclaim_temp_paths_removed_by_with_or_close_are_not_reported(leakwatch: Watch) -> None:
    with reclaim.temp_dir() as directory:
        (directory / "inner").write_text("x")
    with reclaim.temp_file() as path:
        path.write_text("x")
    for handle in (reclaim.temp_dir(), reclaim.temp_file()):
        handle.close()
    assert leakwatch.leaks(include_framework=True) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # it warns that it was collected before close()
def test_reclaim_temp_dir_dropped_unremoved_is_reported_once_as_collected(leakwatch: Watch) -> None:
    """Its finalizer removed it: the garbage collector cleaned up, which is a leak, reported once."""
    directory = reclaim.temp_dir()
    at = line() - 1
    path = directory.path
    del directory
    dropped = line() - 1
    assert not path.exists()
    assert [leak.kind for leak in leakwatch.leaks()] == ["tempdir"]
    leak = _collected(leakwatch, "tempdir", at)
    # The line that let it go is named; the test's own, as its file is the program's under pytest.
    where = f"{os.path.relpath(HERE)}:{dropped} in {sys._getframe().f_code.co_qualname}"
    assert leak.details == {"path": str(path), "made_by": "reclaim.temp_dir()", "dropped_at": where}


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # it warns that it was collected before close()
def test_reclaim_temp_file_never_removed_collected_in_a_cycle_is_reported_as_collected(
    leakwatch: Watch,
) -> None:
    """As when dropped: its finalizer, run by the collector, removed it."""
    file = reclaim.temp_file()
    at = line() - 1
    path = file.path
    box: list[object] = [file]
    del file
    _collect_in_a_cycle(leakwatch, "tempfile", box)
    assert not path.exists()
    assert [leak.kind for leak in leakwatch.leaks()] == ["tempfile"]
    _collected(leakwatch, "tempfile", at)


def test_reclaim_temp_dir_removed_then_collected_in_a_cycle_reports_nothing(leakwatch: Watch) -> None:
    handle = reclaim.temp_dir()
    handle.close()
    with _only_the_collector():
        held = weakref.ref(_Held(handle))
        del handle
        assert leakwatch.leaks() == []
    gc.collect()
    assert held() is None
    assert leakwatch.leaks() == []


LEAKS_TEMP_PATHS = """\
import reclaim
directory = reclaim.temp_dir()
file = reclaim.temp_file()
"""


@pytest.mark.parametrize(
    ("ignore", "expected"),
    [((), {"tempdir": 1, "tempfile": 1}), (("--ignore", "tempdir"), {"tempfile": 1})],
    ids=["all", "ignore-tempdir"],
)
def test_reclaim_run_reports_reclaim_temp_paths_by_kind_once(
    tmp_path: Path, ignore: tuple[str, ...], expected: dict[str, int]
) -> None:
    script = tmp_path / "leaks_temp_paths.py"
    script.write_text(LEAKS_TEMP_PATHS)
    report = tmp_path / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "reclaim", "run", "--json", str(report), *ignore, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(report.read_text())
    assert found["counts"] == expected, out.stderr
    assert {(leak["kind"], leak["frames"][0]["line"]) for leak in found["leaks"]} <= {
        ("tempdir", 2),
        ("tempfile", 3),
    }


# -- reclaim's own pools ------------------------------------------------------------------------


def test_reclaim_pool_never_closed_is_one_leak_at_its_line_not_its_connections_and_thread(
    leakwatch: Watch,
) -> None:
    """Its connection and maintenance thread are the pool's own; a lease still out stays an entry."""
    pool = reclaim.db.ConnectionPool(sqlite3.connect, ":memory:", name="app", max_size=3)
    at = line() - 1
    try:
        with pool.acquire() as conn:
            conn.execute("select 1")
        assert pool._worker is not None  # the maintenance thread runs, and is not reported
        assert [leak.kind for leak in leakwatch.leaks()] == ["pool"]
        leak = leakwatch.one("pool")
        assert_site(leak, at)
        problem = "not closed (close() or a with-block)"
        assert (
            leak.description == f"reclaim.db.ConnectionPool 'app' (max_size 3, holding 1, 0 leased) {problem}"
        )
        assert leak.details == {
            "class": "reclaim.db.ConnectionPool",
            "name": "app",
            "max_size": 3,
            "size": 1,
            "leased": 0,
            "problem": problem,
        }
        assert leak.state == "open"
        lease = pool.acquire()
        lease_at = line() - 1
        try:
            assert [leak.kind for leak in leakwatch.leaks()] == ["pool", "lease"]
            assert_site(leakwatch.one("lease"), lease_at)
        finally:
            lease.release()
    finally:
        pool.close()
    assert leakwatch.leaks() == []


def test_async_pool_never_closed_is_one_leak_at_its_line_not_its_connections_and_task(
    leakwatch: Watch,
) -> None:
    """As for Pool: one entry at the line that made it; await close() and nothing is left."""
    found: list[reclaim.leaks.Leak] = []

    async def main() -> int:
        pool = reclaim.AsyncPool(functools.partial(sqlite3.connect, ":memory:"), name="api", max_size=2)
        at = line() - 1
        try:
            async with pool.acquire() as conn:
                conn.execute("select 1")
            assert pool._task is not None  # the maintenance task runs, and is not reported
            found.extend(leakwatch.leaks())
        finally:
            await pool.close()
        return at

    at = asyncio.run(main())
    run_at = line() - 1
    # The event loop's selector, sockets and main task are asyncio.run()'s, acquired on its line.
    own = [leak for leak in found if leak.site is None or leak.site.lineno != run_at]
    assert [leak.kind for leak in own] == ["pool"]
    assert_site(own[0], at)
    problem = "not closed (await close() or an async with-block)"
    assert own[0].description == f"reclaim.AsyncPool 'api' (max_size 2, holding 1, 0 leased) {problem}"
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings  # the pool's own __del__ warns that it was collected unclosed
def test_reclaim_pool_dropped_unclosed_is_reported_as_collected(leakwatch: Watch) -> None:
    """The garbage collector, not the program, ended it: a collected leak naming the pool."""
    # Objects with nothing to close: a sqlite3 connection collected with the pool warns on 3.13+.
    pool = reclaim.Pool(object, close=lambda obj: None, name="dropped", max_lifetime=None, max_idle=None)
    at = line() - 1
    with pool.acquire():
        pass
    del pool
    leak = _collected(leakwatch, "pool", at)
    assert leak.description.startswith("reclaim.Pool 'dropped' (max_size 10) not closed")
    assert [leak.kind for leak in leakwatch.leaks()] == ["pool"]


def test_reclaim_pool_closed_then_collected_reports_nothing(leakwatch: Watch) -> None:
    """Closed, then dropped: nothing of the pool, its connections or its thread is reported."""
    pool = reclaim.db.ConnectionPool(sqlite3.connect, ":memory:", min_size=1)
    with pool.acquire():
        pass
    pool.close()
    del pool
    gc.collect()
    assert leakwatch.leaks() == []


# -- asyncio child processes ----------------------------------------------------------------


def _reap(pid: int) -> None:
    """Reap *pid* unless asyncio's watcher or subprocess did it first."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


async def _spawn_held(hold_r: int) -> int:
    """Start a child that runs until the write end of *hold_r*'s pipe closes; never wait for it."""
    code = f"import os; os.read({hold_r}, 1)"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, pass_fds=[hold_r])
    await asyncio.sleep(0)
    return proc.pid


_SPAWN_AT = _spawn_held.__code__.co_firstlineno + 3


def test_asyncio_child_left_running_is_one_subprocess_not_its_watcher_thread_or_pidfd(
    leakwatch: Watch,
) -> None:
    """asyncio's thread (3.11) or pidfd (3.12+) watching the child is its plumbing, not a leak of its own."""
    hold_r, hold_w = os.pipe()  # the child runs until the write end closes
    found: list[reclaim.leaks.Leak] = []

    async def main() -> tuple[int, int]:
        code = f"import os; os.read({hold_r}, 1)"
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, pass_fds=[hold_r])
        at = line() - 1
        try:
            await asyncio.sleep(0)
            found.extend(leakwatch.leaks(ignore=lambda leak: leak.details.get("fd") in (hold_r, hold_w)))
        finally:
            os.close(hold_w)
            await proc.wait()
        return at, proc.pid

    try:
        at, pid = asyncio.run(main())
        run_at = line() - 1
    finally:
        os.close(hold_r)
    # The event loop's selector, sockets and main task are asyncio.run()'s, acquired on its line.
    own = [leak for leak in found if leak.site is None or leak.site.lineno != run_at]
    assert [leak.kind for leak in own] == ["subprocess"], [leak.headline() for leak in own]
    assert_site(own[0], at)
    assert own[0].details["pid"] == pid
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_asyncio_child_ending_after_its_loop_closed_is_reported_on_every_version(leakwatch: Watch) -> None:
    """Never awaited, the child ends after asyncio.run: on 3.11 the watcher thread's reaping is no wait."""
    hold_r, hold_w = os.pipe()
    pid = 0
    try:
        pid = asyncio.run(_spawn_held(hold_r))
    finally:
        os.close(hold_w)  # the child ends now, with its loop closed
        os.close(hold_r)
    try:
        # Waits for the watcher thread, which holds the transport till the child ends, then
        # collects: the transport, in a cycle, drops its Popen.
        leak = leakwatch.one("subprocess", grace=30.0, collect=True)
        assert_site(leak, _SPAWN_AT)
        assert (leak.state, leak.details["pid"]) == ("collected", pid)
        assert "(dropped without a wait: " in reclaim.leaks.Report((leak,)).to_text()
    finally:
        _reap(pid)


@pytest.mark.skipif(
    sys.version_info >= (3, 12) and hasattr(os, "pidfd_open"),
    reason="3.12+ watch a child with a pidfd, no thread: the child stays a zombie till reaped",
)
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_asyncio_child_whose_status_its_closed_loop_lost_is_no_wait(leakwatch: Watch) -> None:
    """Reaped by the watcher thread after its loop closed, its status lost: nothing but the
    collector can change the record, so a check does not spend its grace period on it."""
    hold_r, hold_w = os.pipe()
    pid = 0
    polls: list[int] = []
    with _only_the_collector():  # the transport stays in its cycle till the test collects
        try:
            pid = asyncio.run(_spawn_held(hold_r))
            watchers = [t for t in threading.enumerate() if t.name.startswith("asyncio-waitpid")]
        finally:
            os.close(hold_w)  # the child ends now, with its loop closed
            os.close(hold_r)
        for thread in watchers:
            thread.join()
        leak = leakwatch.one("subprocess", grace=30.0, _interrupted=lambda: polls.append(1))
        assert (leak.state, leak.details["pid"], polls) == ("open", pid, [])
    assert leakwatch.one("subprocess", collect=True).state == "collected"


@pytest.mark.skipif(
    sys.version_info >= (3, 12) and hasattr(os, "pidfd_open"),
    reason="3.12+ watch a child with a pidfd its loop reads: until the loop runs it is a zombie",
)
def test_asyncio_child_reaped_by_the_watcher_thread_with_its_loop_open_is_collected(leakwatch: Watch) -> None:
    """Ended while its open loop is not running: the watcher reaped it and queued its status, no leak."""
    hold_r, hold_w = os.pipe()
    loop = asyncio.new_event_loop()

    async def read_to_end() -> asyncio.subprocess.Process:
        # The child closes its stdout, then runs until the write end of the pipe closes.
        code = f"import os; os.close(1); os.read({hold_r}, 1)"
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, pass_fds=[hold_r]
        )
        assert await proc.stdout.read() == b""  # type: ignore[union-attr]
        return proc  # never waited for

    try:
        proc = loop.run_until_complete(read_to_end())
        os.close(hold_w)  # the child ends now, its loop open but not running
        assert leakwatch.leaks("subprocess", grace=10.0) == []
        assert proc.returncode is None  # its status still queued for the loop
        loop.run_until_complete(proc.wait())
    finally:
        os.close(hold_r)
        loop.close()
    assert leakwatch.leaks() == []


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="os.pidfd_open is Linux-only")
def test_pidfd_the_program_opens_is_reported_at_its_line(leakwatch: Watch) -> None:
    """Owning asyncio's pidfds hides none of the program's own: one left open is an fd leak at its line."""
    pidfd = os.pidfd_open(os.getpid())
    at = line() - 1
    try:
        leak = leakwatch.one("fd")
        assert_site(leak, at)
        assert leak.details["call"] == "os.pidfd_open"
        assert [leak.kind for leak in leakwatch.leaks()] == ["fd"]
    finally:
        os.close(pidfd)
    assert leakwatch.leaks() == []


def _pymysql_with_passwd() -> None:
    pymysql = pytest.importorskip("pymysql")
    pymysql.connections.Connection(host="127.0.0.1", user="root", passwd="", defer_connect=True).close()


def _redis_with_retry_on_timeout() -> None:
    redis = pytest.importorskip("redis")
    redis.Redis(retry_on_timeout=True).close()


@pytest.mark.parametrize(
    ("make", "message", "in_maker"),
    [(_pymysql_with_passwd, "passwd", False), (_redis_with_retry_on_timeout, "retry_on_timeout", True)],
    ids=["pymysql", "redis"],
)
def test_a_warning_a_tracked_constructor_issues_for_its_caller_names_the_callers_line(
    leakwatch: Watch, make: Callable[[], None], message: str, in_maker: bool
) -> None:
    """A constructor's warning issued for its caller (redis-py's for ``retry_on_timeout``, at
    ``stacklevel=2``; PyMySQL's for ``passwd=``, at 3: its caller's caller) named reclaim's
    wrapper around ``__init__``, or its generated stand-in: a test of where it points failed,
    and a filter by module missed it."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make()
        called = line() - 1
    found = [w for w in caught if issubclass(w.category, DeprecationWarning) and message in str(w.message)]
    assert found, [str(w.message) for w in caught]
    expected = make.__code__.co_firstlineno + 2 if in_maker else called
    assert {(w.filename, w.lineno) for w in found} == {(__file__, expected)}


def test_popens_encoding_warning_names_the_callers_line(tmp_path: Path) -> None:
    """``Popen(text=True)`` without an encoding warns (under ``-X warn_default_encoding``) at the
    line that called it: it named reclaim's wrapper around ``Popen.__init__``."""
    script = tmp_path / "popen_warns.py"
    script.write_text(
        textwrap.dedent(
            """
            import subprocess, sys, warnings
            from reclaim.leaks import Tracker

            Tracker().start()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                with subprocess.Popen([sys.executable, "-V"], stdout=subprocess.PIPE, text=True) as child:
                    child.communicate()
            print(sorted({(w.filename, w.lineno) for w in caught if w.category is EncodingWarning}))
            """
        )
    )
    out = subprocess.run(
        [sys.executable, "-X", "warn_default_encoding", str(script)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    at = next(n for n, text in enumerate(script.read_text().splitlines(), 1) if "subprocess.Popen(" in text)
    assert out.strip() == repr([(str(script), at)]), out
