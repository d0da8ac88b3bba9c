"""Helpers for the leak tracker's tests: the line a statement runs on, leaks of one kind, a program run."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reclaim.leaks import Leak, Snapshot, Tracker

# A leak test leaks on purpose; the objects it then drops make Python warn while the garbage
# collector runs, and pytest turns those warnings into unraisable-exception warnings.
ignore_gc_warnings = pytest.mark.filterwarnings(
    "ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning"
)


class ClosesAtDel:
    """Owns ``resource`` (set after it is made) in a reference cycle and closes it from its
    ``__del__``, as aiopg's ``Connection`` does its psycopg2 connection: dropped, the collector is
    what closes it. Made first, as aiopg's is, the collector finalizes it first too."""

    resource: Any

    def __init__(self) -> None:
        self.cycle = self

    def __del__(self) -> None:
        self.resource.close()


def untracked_epoll() -> Any:
    """An epoll instance no hook sees made, as C code makes one (Linux only): while tracking,
    ``select.epoll`` records what it makes, and its ``__wrapped__`` is the C type."""
    import select

    return getattr(select.epoll, "__wrapped__", select.epoll)()


@contextlib.contextmanager
def fresh_untracked_epoll(watch: Watch) -> Iterator[Any]:
    """:func:`untracked_epoll` at a number *watch*'s mark did not hold, nor C code's descriptors
    kept for good (``leaks._fds.KEPT``): every epoll has the one inode, so one at such a number
    is taken for that one. Under xdist an earlier test's library (pycares' reaper thread, a zmq
    context) frees such numbers at any time. The others made on the way stay open meanwhile."""
    from reclaim.leaks import _fds

    taken = set(watch.mark.fds or ()) | set(_fds.KEPT)
    made = [untracked_epoll()]
    while made[-1].fileno() in taken and len(made) < 64:
        made.append(untracked_epoll())
    try:
        yield made[-1]
    finally:
        for each in made:
            each.close()


@contextlib.contextmanager
def loop_in_a_thread(get: Callable[[], Any] | None = None) -> Iterator[Any]:
    """An event loop run by ``asyncio.run()`` in a thread of its own, as a library keeps one
    (tornado's IOLoop, in joblib's dask backend): yields its loop (or what *get* gives inside
    it); on exit stops it, ``asyncio.run`` cancelling what is left pending, and joins the thread."""
    ready = threading.Event()
    got: list[Any] = []

    def run() -> None:
        async def main() -> None:
            stop = asyncio.Event()
            got.extend((asyncio.get_running_loop(), stop, get() if get is not None else None))
            ready.set()
            await stop.wait()

        asyncio.run(main())

    thread = threading.Thread(target=run)
    thread.start()
    ready.wait()
    loop, stop, made = got
    try:
        yield made if get is not None else loop
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join()


def line() -> int:
    """The line number of the statement that calls this (put it on the acquiring line)."""
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


@dataclass
class Watch:
    """A running tracker and the snapshot a test's window starts at."""

    tracker: Tracker
    mark: Snapshot

    def leaks(self, kind: str | None = None, **options: object) -> list[Leak]:
        """Leaks found since the mark (of *kind* when given)."""
        found = self.tracker.leaks(self.mark, **options)  # type: ignore[arg-type]
        return [leak for leak in found if kind is None or leak.kind == kind]

    def records(self) -> list[str]:
        """Every record since the mark, open or ended as a leak: what a failed assertion shows
        (a flaky test's message says which way the tracker went)."""
        from reclaim import _sites
        from reclaim.leaks import _records

        recs = [*_records.live.values(), *_records.collected]
        return [
            f"{rec.kind} {rec.state}/{rec.why} alive={rec() is not None} "
            f"framework={_sites.is_framework(getattr(_sites.first_code(rec.site), 'co_filename', ''))}"
            for rec in recs
            if rec.seq > self.mark.seq
        ]

    def one(self, kind: str, **options: object) -> Leak:
        """The single leak of *kind*; fails listing everything when there is not exactly one."""
        found = self.leaks(kind, **options)
        assert len(found) == 1, [leak.headline() for leak in self.leaks(**options)]
        return found[0]


@pytest.fixture
def leakwatch() -> Iterator[Watch]:
    """A running tracker and the snapshot this test's window starts at; stopped afterwards."""
    tracker = Tracker().start()
    try:
        yield Watch(tracker, tracker.snapshot())
    finally:
        tracker.stop()


#: A program's source that keeps a coroutine never awaited in a reference cycle, for a check's
#: last collection to finalize (and warn of), not one an allocation sets off: ``Box(coro())``.
NEVER_AWAITED_IN_A_CYCLE = """\
import gc

gc.disable()

class Box:
    def __init__(self, coro):
        self.me = self
        self.coro = coro

async def never_awaited():
    pass
"""


#: Seconds a program run under ``reclaim run`` may take (a hang fails, never blocks the suite).
RUN_TIMEOUT = 60


def assert_site(leak: Any, lineno: int) -> None:
    """*leak* was acquired at line *lineno* of the calling test's file."""
    assert leak.site is not None, leak
    here = sys._getframe(1).f_code.co_filename
    assert (leak.site.filename, leak.site.lineno) == (here, lineno), leak.headline()


def python_prog(tmp_path: Path, source: str, *python_args: str) -> subprocess.CompletedProcess[str]:
    """Run *source* as ``prog.py`` in *tmp_path*: ``python <python_args> prog.py``; it must exit 0."""
    (tmp_path / "prog.py").write_text(textwrap.dedent(source), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, *python_args, "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out


def reclaim_run_prog(
    tmp_path: Path, source: str, *run_options: str, python_options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """Run *source* as ``prog.py`` under ``reclaim run`` in *tmp_path*; it must exit 0."""
    return python_prog(tmp_path, source, *python_options, "-m", "reclaim", "run", *run_options)


def reclaim_run_json(tmp_path: Path, source: str) -> tuple[Any, str]:
    """Run *source* as ``prog.py`` under ``reclaim run --json``; return the report and stderr."""
    report = tmp_path / "report.json"
    out = reclaim_run_prog(tmp_path, source, "--json", str(report))
    return json.loads(report.read_text()), out.stderr


#: Options for a pytester run in a fresh interpreter: reclaim's plugin, and no cache. No other
#: installed plugin is loaded (the ``pytester`` fixture of tests/conftest.py turns pytest's
#: autoloading off; a run that needs one names it: ``-p xdist``): their imports (hypothesis,
#: anyio and trio, Django) cost each run 0.15 s of CPU, ~70 runs per interpreter. The plugin is
#: named by its module: ``-p reclaim`` would have pytest rewrite the asserts of every module of
#: the package, compiled from source in every run where bytecode is not written
#: (PYTHONDONTWRITEBYTECODE): 0.1 s more.
LEAN = ("-p", "reclaim.pytest_plugin", "-p", "no:cacheprovider")


def reclaim_pytest(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """Run pytester's tests under ``pytest --reclaim`` in a fresh interpreter, in file order."""
    return pytester.runpytest_subprocess(*LEAN, "--reclaim", *args, timeout=RUN_TIMEOUT * 2)


def reclaim_pytest_fails_one(pytester: pytest.Pytester, passed: int, test: str, at: str) -> None:
    """Run pytester's tests under ``pytest --reclaim``: *passed* pass, *test* fails at teardown with
    one leak acquired at *at* (``file.py:line``), and no untracked descriptor fails any of them."""
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=passed, errors=1)
    result.stdout.fnmatch_lines(
        [f"*ERROR at teardown of {test}*", "*this test leaked 1 resource*", f"*{at}*"]
    )
    assert "untracked-fd" not in result.stdout.str()


def lease_site_in_a_task_made_in_a_task(
    watch: Watch, new_loop: Any
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The first three frames of an ``AsyncPool`` lease taken in a task made in a task run on a
    loop from *new_loop*, and what they should be: the line that took it, the line that made its
    task, the line that ran the outer one (not the frames that run the loop). Nothing is left."""
    import asyncio

    import reclaim

    pool: reclaim.AsyncPool[object] = reclaim.AsyncPool(object, max_size=1)
    leases: list[Any] = []

    async def inner() -> None:
        leases.append(await pool.acquire())

    async def outer() -> list[tuple[str, int]]:
        await asyncio.get_running_loop().create_task(inner())
        try:
            return [(frame.filename, frame.lineno) for frame in watch.one("lease").frames]
        finally:
            await leases[0].release()
            await pool.close()

    def run(loop: asyncio.AbstractEventLoop) -> list[tuple[str, int]]:
        return loop.run_until_complete(outer())

    loop = new_loop()
    try:
        frames = run(loop)
    finally:
        loop.close()
    here = inspect.getsourcefile(lease_site_in_a_task_made_in_a_task) or __file__
    return frames[:3], [(here, f.__code__.co_firstlineno + 1) for f in (inner, outer, run)]


def task_site_in_a_task_made_in_a_task(
    watch: Watch, new_loop: Any
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """The first three frames of a task left pending, made in a task made in a task run on a loop
    from *new_loop*, and what they should be (as :func:`lease_site_in_a_task_made_in_a_task`).
    The task is cancelled and the loop closed afterwards."""
    import asyncio

    kept: list[asyncio.Task[None]] = []  # the loop refers to tasks weakly: a collection may end it

    async def inner() -> None:
        kept.append(asyncio.get_running_loop().create_task(asyncio.sleep(3600)))

    async def outer() -> None:
        await asyncio.get_running_loop().create_task(inner())

    def run(loop: asyncio.AbstractEventLoop) -> None:
        loop.run_until_complete(outer())

    loop = new_loop()
    try:
        run(loop)
        frames = [(frame.filename, frame.lineno) for frame in watch.one("task").frames]
        kept[0].cancel()
        loop.run_until_complete(asyncio.gather(*kept, return_exceptions=True))
    finally:
        loop.close()
    here = inspect.getsourcefile(task_site_in_a_task_made_in_a_task) or __file__
    return frames[:3], [(here, f.__code__.co_firstlineno + 1) for f in (inner, outer, run)]
