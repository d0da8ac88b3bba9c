"""Where a resource was acquired: cheap capture now, formatting only when asked.

Capturing a site walks a few frames and keeps ``(code, lineno)`` pairs: no
frame objects, no locals, no strings are kept alive, so the cost is a couple
of microseconds per acquisition and nothing elsewhere. Frames that belong to
reclaim itself, the standard library's plumbing or test frameworks are
skipped at the *start* of the stack, so the first frame recorded is the
user's line that asked for the resource.

Some library code acquires on behalf of an object of its own that is tracked
as a whole (a ``multiprocessing.Pool`` and its pipes, threads and workers), or
of process-wide machinery the library owns (multiprocessing's resource
tracker). Its functions are marked *owned* (:func:`mark_owned`): an
acquisition made under one of them, before any user frame, is recorded with
the framework frame first, so it counts as the library's own resource, not as
the user's.

Other library code runs work that someone else handed over: a thread pool's
work item calls ``open`` for ``asyncio.to_thread(open, path)`` in a worker
whose stack is the standard library's only. Such a function is marked a
*hand-off* (:func:`mark_handoff`); the object running it carries the site of
the code that handed the work over, and an acquisition made under it before
any user frame is recorded at that site.
"""

from __future__ import annotations

import gc
import os
import sys
import sysconfig
import time
import weakref
from _thread import get_ident
from collections import namedtuple
from collections.abc import Callable
from types import CodeType, FrameType, FunctionType, TracebackType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any, NamedTuple

#: The real clock, bound at import, as in reclaim's other modules: a test that patches
#: ``time.time`` (ZODB's fake clock, which advances on each call under a lock) was called
#: from reclaim's hooks and its collection callback: its clock ran faster under tracking, and a
#: collection setting off the callback while the fake held its lock hung the test.
_time = time.time

__all__ = [
    "Frame",
    "RawSite",
    "Site",
    "capture",
    "capture_flat",
    "capture_from",
    "capture_task",
    "closing_in_finalizer",
    "dropped_at",
    "dropped_by_program",
    "finalizer_closing",
    "finalizing_close",
    "first_code",
    "first_filename",
    "first_user_frame",
    "format_site",
    "frame_is_framework",
    "frame_is_program",
    "frames",
    "handed_over_site",
    "in_owned",
    "in_test_runner",
    "is_framework",
    "is_owned",
    "is_program",
    "is_user_code",
    "line_at",
    "mark_framework",
    "mark_handoff",
    "mark_launcher",
    "mark_owned",
    "mark_program",
    "mark_runner",
    "resolve",
    "where",
]

if TYPE_CHECKING:
    #: A captured site: ``(code, lineno)`` pairs, innermost (the user's line) first.
    Site = tuple[tuple[CodeType, int], ...]
    #: A flat capture from :func:`capture_flat`: ``(code, lasti, code, lasti, ...)``.
    RawSite = tuple[Any, ...]
else:
    Site = RawSite = tuple

# Bound now: a tool that patches os later (blockbuster raises on os.path.abspath and
# os.getcwd inside an event loop) must never see reclaim's bookkeeping inside the program's
# socket() or open(): an error there orphans the resource just made.
_getcwd = os.getcwd
_isabs = os.path.isabs
_join = os.path.join
_normpath = os.path.normpath
_dirname = os.path.dirname


def _absolute(path: str) -> str:
    """``os.path.abspath`` with the functions bound at import (see above)."""
    return _normpath(path if _isabs(path) else _join(_getcwd(), path))


_RECLAIM_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
# get_path() expands every path of its scheme to return one: ask for them all once.
_PATHS = sysconfig.get_paths()
_STDLIB_DIRS = tuple({os.path.abspath(p) + os.sep for p in (_PATHS["stdlib"], _PATHS["platstdlib"])})


def _scripts_dirs() -> frozenset[str]:
    """Where the interpreter's console scripts live (a venv's ``bin/``, the base install's, the
    user's ``~/.local/bin``): launchers of installed code (``bin/pytest``), not the program."""
    found = {os.path.dirname(sys.executable)} if sys.executable else set()
    found.add(_PATHS["scripts"])
    base = {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}
    for scheme, config in ((sysconfig.get_default_scheme(), base), (f"{os.name}_user", None)):
        try:
            found.add(sysconfig.get_path("scripts", scheme, config))
        except (KeyError, ValueError):  # a scheme this build does not have
            continue
    return frozenset(os.path.abspath(d) for d in found if d)


_SCRIPTS_DIRS = _scripts_dirs()
# Third-party packages whose frames are plumbing, never the user's code.
_FRAMEWORK_PACKAGES = (
    "_pytest",
    "pytest",
    "pluggy",
    "_hypothesis_pytestplugin",
    "hypothesis",  # runs a test's examples: its frames are plumbing, as pytest's are
    "xdist",
    "execnet",
    # run a test's protocol again themselves (runtestprotocol): their frames sit under every
    # rerun test's, and an event loop pytest-asyncio made there was blamed on the test
    "pytest_rerunfailures",
    "flaky",
    "pytest_asyncio",  # runs async tests and fixtures: its frames sit under every loop callback
    "pytest_trio",  # runs trio tests and fixtures in tasks of its own, as pytest_asyncio does
    "uvloop",  # an event loop, as asyncio is: uvloop.run() and new_event_loop() sit under its loops
    "gevent",  # an event loop too: its hub runs greenlets, its servers accept and spawn handlers
    # an event loop too, whose green modules stand in for the standard library's once monkey-patched
    # (os.open under multiprocessing's heap: the walk goes on to the standard library's callers)
    "eventlet",
    "twisted",  # an event loop too: its reactor runs the protocols, its ports listen and connect
    # dill's copy of multiprocessing, a standard-library package under another name (mpire,
    # pathos and datasets run on it): its frames are plumbing, as multiprocessing's are
    "multiprocess",
)

_framework_cache: dict[str, bool] = {}


def _framework_locations() -> tuple[str, ...]:
    """Where the imported framework packages live (a package's directory, a module's file).

    They are found wherever they were imported from: site-packages, but also a
    ``PYTHONPATH`` directory or a ``pip --target`` one. Looked up when a file is
    first classified: a framework file can only run once its package is in
    ``sys.modules``, so one not imported yet is not needed yet.
    """
    found: list[str] = []
    for name in _FRAMEWORK_PACKAGES:
        module = sys.modules.get(name)
        if module is None:
            continue
        paths = getattr(module, "__path__", None)
        if paths is not None:
            found.extend(_absolute(p) + os.sep for p in paths)
        elif isinstance(getattr(module, "__file__", None), str):
            found.append(_absolute(module.__file__ or ""))
    return tuple(found)


def _classify(filename: str) -> bool | None:
    if filename.startswith("<"):
        # <frozen importlib._bootstrap>, and code a library generates under a name that says so
        # (<attrs generated methods app.C>): plumbing, with no source behind its lines.
        if filename.startswith("<frozen") or "generated" in filename:
            return True
        # <string> (exec, compile), <stdin>, <ipython-input-1-...>: whose code it is depends on
        # what made it, which only the frame running it tells (see frame_is_framework).
        return None
    path = _absolute(filename)
    if path.startswith(_RECLAIM_DIR):
        # reclaim's own tests and examples live outside the package directory.
        return True
    if _dirname(path) in _SCRIPTS_DIRS:
        # A console script (``.venv/bin/pytest``): a launcher of installed code, as plumbing as
        # ``python -m pytest``'s runpy frames are; it says nothing as a report's line.
        return True
    for location in _framework_locations():
        if path == location or path.startswith(location):
            return True
    parts = path.split(os.sep)
    for marker in ("site-packages", "dist-packages"):
        if marker in parts:
            # Third-party code is the user's (it shows where inside a library), except test plumbing.
            rest = parts[len(parts) - parts[::-1].index(marker) :]
            return bool(rest) and rest[0].split(".", 1)[0] in _FRAMEWORK_PACKAGES
    return any(path.startswith(d) for d in _STDLIB_DIRS)


def is_framework(filename: str) -> bool:
    """Whether frames from *filename* are plumbing (reclaim, stdlib, pytest, pluggy, console scripts).

    A pseudo-file such as ``<string>`` is not, by its name alone: see :func:`frame_is_framework`.
    """
    return _cached(_framework_cache, _classify, filename, False)


def _cached(
    cache: dict[str, bool], classify: Callable[[str], bool | None], filename: str, pseudo: bool
) -> bool:
    """*classify*'s answer for *filename*, cached; *pseudo* for a pseudo-file its name cannot
    tell (never cached: the frames that run its code are asked instead, see frame_is_framework)."""
    try:
        return cache[filename]
    except KeyError:
        pass
    try:
        result = classify(filename)
    except Exception:  # never fail an acquisition over where it happened (asked again next time)
        return False
    if result is None:
        return pseudo
    cache[filename] = result
    return result


def frame_is_framework(frame: FrameType) -> bool:
    """:func:`is_framework` for the code *frame* runs: a pseudo-file's by what made the code.

    The same ``<string>`` names the program's own ``python -c`` code and code a library
    generated at run time with ``exec``: dataclasses' ``__init__`` (which calls a field's
    ``default_factory``), a library's decorator wrappers, timeit's loop (``<timeit-src>``).
    A library's has no line worth reporting, so it is plumbing (see _generated_by_library);
    the program's own (``-c``, ``<stdin>``, an IPython cell, its ``exec``) is not. Rare
    enough to be asked each time: such names are never cached (see :func:`is_framework`).
    """
    code = frame.f_code
    filename = code.co_filename
    framework = _framework_cache.get(filename)
    if framework is None:
        framework = is_framework(filename) or (filename[:1] == "<" and _not_the_programs(frame))
    return framework


def frame_is_program(frame: FrameType) -> bool:
    """:func:`is_program` for the code *frame* runs: a pseudo-file's by what made the code."""
    filename = frame.f_code.co_filename
    program = _program_cache.get(filename)
    if program is None:
        program = is_program(filename) and not (filename[:1] == "<" and _not_the_programs(frame))
    return program


#: id(code) -> code of the pseudo-file code that launched a test runner (see mark_launcher),
#: kept so ids stay theirs.
_launchers: dict[int, CodeType] = {}


def mark_launcher(code: CodeType) -> None:
    """Frames running *code*, pseudo-file code that launched the test runner, are plumbing.

    A pytest-xdist worker runs its session under execnet's bootstrap: ``python -c`` code
    that execs more code, both ``<string>`` in ``__main__``, as the program's own ``-c``
    code is. Only frames of those very code objects are marked, not every ``<string>``.
    """
    _launchers[id(code)] = code


def _not_the_programs(frame: FrameType) -> bool:
    """Whether *frame*, running pseudo-file code, runs a launcher's (see :func:`mark_launcher`)
    or code a library generated (see :func:`_generated_by_library`)."""
    code = frame.f_code
    return _launchers.get(id(code)) is code or _generated_by_library(frame)


#: How dataclasses names the functions it generates (``__init__``, ``__eq__``, ...) and execs
#: in the globals of the class's module: the program's own globals, for a program's class.
_DATACLASS_MADE = "__create_fn__."


def _generated_by_library(frame: FrameType) -> bool:
    """Whether *frame* runs pseudo-file code a library generated: a dataclass's method, or code
    run in the globals of a module that is not the program's (a library's ``exec``).

    Code run in ``__main__``'s globals is the program's (``-c``, ``<stdin>``, an IPython
    cell), and so is code in globals that name no imported module with a file (the
    program's ``exec(source, {})``): which library made it, if one did, is not known.
    """
    code = frame.f_code
    if code.co_qualname.startswith(_DATACLASS_MADE):
        return True
    return _libraries_globals(frame.f_globals)


def _libraries_globals(names: dict[str, object]) -> bool:
    """Whether *names*, globals pseudo-file code runs in, are a library module's (or a copy)."""
    try:
        name = names.get("__name__")
        if name == "__main__" or type(name) is not str:
            return False
        path = getattr(sys.modules.get(name), "__file__", None)
        return type(path) is str and path[:1] != "<" and not is_program(path)
    except Exception:  # an exotic module or globals must never break an acquisition
        return False


#: id(code) -> (code, whether a library generated it), for the pseudo-file codes a report met.
_generated: dict[int, tuple[CodeType, bool]] = {}


def generated_by_library(code: CodeType) -> bool:
    """Whether pseudo-file *code* (``<string>``) is a library's generated code, as
    :func:`_generated_by_library` tells from a frame, told once a site is only codes: by the
    globals of the functions that run it. Asked when a report is made, never on acquisition
    (finding them scans the heap: one look per code, kept)."""
    known = _generated.get(id(code))
    if known is not None and known[0] is code:
        return known[1]
    answer = code.co_qualname.startswith(_DATACLASS_MADE)
    if not answer:
        functions = [f for f in gc.get_referrers(code) if type(f) is FunctionType and f.__code__ is code]
        answer = bool(functions) and all(_libraries_globals(f.__globals__) for f in functions)
    _generated[id(code)] = (code, answer)
    return answer


#: The code object an acquisition last found to be the program's (its file cached as not
#: plumbing): an acquire from the same function again is known by identity, without reading
#: ``co_filename`` and looking it up (about 500 instructions, a twentieth of an AsyncPool
#: acquire + release). Forgotten by mark_framework(), the only way a file stops being the program's.
last_user_code: CodeType | None = None


def is_user_code(code: CodeType) -> bool:
    """Whether *code*'s file is known as the program's (cached, not plumbing); remembered when so."""
    global last_user_code
    if _framework_cache.get(code.co_filename) is False:
        last_user_code = code
        return True
    return False


def mark_framework(filename: str) -> None:
    """Treat frames from *filename* as plumbing from now on (a launcher's own files, say)."""
    global last_user_code
    _framework_cache[filename] = True
    last_user_code = None


_program_cache: dict[str, bool] = {}


def mark_program(filename: str) -> None:
    """Treat frames from *filename* as the program's own, wherever it lives.

    ``reclaim run -m pickletools`` runs a module of the standard library as the
    program: its frames would otherwise be plumbing, and what it leaks never reported.
    """
    _framework_cache[filename] = False
    _program_cache[filename] = True


#: How far past the captured frames a site looks for the program's own line (see _stitch_program).
PROGRAM_SEARCH = 64


def is_program(filename: str) -> bool:
    """Whether *filename* is the program's own code: neither plumbing, nor an installed library,
    nor a console script of the interpreter's (``.venv/bin/pytest``)."""
    return _cached(_program_cache, _classify_program, filename, True)


def _classify_program(filename: str) -> bool | None:
    if filename.startswith("<"):
        return None if _classify(filename) is None else False
    parts = _absolute(filename).split(os.sep)
    return not is_framework(filename) and "site-packages" not in parts and "dist-packages" not in parts


def _stitch_program(out: list[Any], kept: FrameType | None, frame: FrameType | None) -> None:
    """Make the program's line the outermost frame kept, when no frame kept is the program's own.

    A library acquiring deep in its own code (SQLAlchemy's pool opening sqlite3 fifteen
    frames below the program's ``session.execute()``) would otherwise be reported with
    library frames only. The walk goes on from *frame*, past the depth kept, to the first
    frame of the program (at most PROGRAM_SEARCH frames), which takes the place of the
    outermost frame kept. A task's stack ends where the event loop runs it (anyio's
    ``connect_tcp`` connects in a task of its own): what follows is the loop's, so the site
    goes on at the program's line in the site that created the task instead. A trio task's
    stack ends in trio's run loop the same way (``open_tcp_stream`` connects in tasks of its
    own): the site goes on at the program's line its parent task waits at. A library's code
    run as work handed over (trio's thread cache runs ``to_thread.run_sync``'s function under
    trio's own frames) goes on at the program's line that handed it over (see
    :func:`mark_handoff`). *kept* is the innermost frame kept (*out* holds one code per frame
    from it), *frame* the first past the depth kept: frames, not codes, tell whose a
    pseudo-file's code is (frame_is_program).
    """
    cache = _program_cache
    for i in range(0, len(out), 2):
        code = out[i]
        if code is task_root and i:
            line = first_program(task_site() if task_site is not None else ())
            del out[i:]
            if line:
                out.extend(line)
                return
            # A callback registered outside any task (before the loop ran, as tornado's
            # run_sync() does, or from another thread): the line driving the loop is the only
            # one of the program's that led here.
            frame = kept.f_back if kept is not None else None
            break
        if i and kept is not None and id(code) in _handoffs:
            line = first_program(_handed(kept))
            if line:
                del out[i:]
                out.extend(line)
                return
        if code is trio_root and i:
            line = first_program(trio_site() if trio_site is not None else ())
            if line:  # else on past the run loop as before (a task no program's code spawned)
                del out[i:]
                out.extend(line)
                return
        program = cache.get(code.co_filename)
        if program or (program is None and kept is not None and frame_is_program(kept)):
            return
        kept = kept.f_back if kept is not None else None
    for _ in range(PROGRAM_SEARCH):
        if frame is None:
            return
        code = frame.f_code
        program = cache.get(code.co_filename)
        if program or (program is None and frame_is_program(frame)):
            out[-2:] = (code, frame.f_lasti)
            return
        if code is thread_root or code is task_root:
            if code is thread_root:
                carried = _started_at(frame)
            else:
                carried = task_site() if task_site is not None else ()
            line = first_program(carried)
            if line:
                out[-2:] = line
            if line or code is thread_root:
                return
            # else on past the loop's step, as above: what drives the loop is the program's
            frame = frame.f_back
            continue
        if code is trio_root:
            line = first_program(trio_site() if trio_site is not None else ())
            if line:
                out[-2:] = line
                return
        if id(code) in _handoffs:
            line = first_program(_handed(frame))
            if line:
                out[-2:] = line
            return
        frame = frame.f_back


def from_first_program(site: RawSite) -> RawSite:
    """A flat *site* from its first frame of the program's on, else *site* itself."""
    for i in range(0, len(site), 2):
        if is_program(site[i].co_filename):
            return site[i:]
    return site


class warned_again_at:
    """The warnings raised in a ``with`` block, warned again at *filename*:*line*.

    For a check's ``gc.collect()``: a finalizer it runs (a coroutine never awaited, a socket
    left in a cycle) warns from reclaim's frame, which is not where the program went wrong.
    Warned again as they came: the filters then decide, an error among them raised here.
    """

    def __init__(self, filename: str, line: int) -> None:
        import warnings

        self._where = (filename, line)
        self._catching = warnings.catch_warnings(record=True)

    def __enter__(self) -> None:
        # No collection while the catching is set up: one set off by its allocations finalized a
        # test's dropped socket before the record was in place, and its warning named
        # warnings.py's line (which allocation sets one off varies from run to run).
        held = _hold_collections()
        try:
            self._caught = self._catching.__enter__()
        finally:
            if held:
                gc.enable()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        import warnings

        held = _hold_collections()
        try:
            self._catching.__exit__(exc_type, exc, tb)
        finally:
            if held:
                gc.enable()
        filename, line = self._where
        for warned in self._caught or ():
            warnings.warn_explicit(warned.message, warned.category, filename, line, source=warned.source)


def _hold_collections() -> bool:
    """Hold the garbage collector's automatic collections off; whether they were on (to turn on
    again after)."""
    enabled = gc.isenabled()
    gc.disable()
    return enabled


def first_program(site: RawSite) -> RawSite:
    """``(code, lasti)`` of the first of the program's frames in a flat *site*, else empty."""
    for i in range(0, len(site), 2):
        if is_program(site[i].co_filename):
            return site[i : i + 2]
    return ()


#: id(code) -> code of the functions marked by mark_owned(); the codes are kept so ids stay theirs.
_owned: dict[int, CodeType] = {}
#: The files those functions live in: a frame from any other file needs no id() lookup.
_owned_files: set[str] = set()


def mark_owned(code: CodeType) -> None:
    """Acquisitions made under *code* (before any user frame) belong to the library, not the user.

    For functions of an object tracked as a whole (its pipes and threads are
    its business) or of a library's process-wide machinery.
    """
    _owned[id(code)] = code
    _owned_files.add(code.co_filename)


#: id(code) -> code of the hand-off functions (see mark_handoff), kept so ids stay theirs.
_handoffs: dict[int, CodeType] = {}
#: The attribute of a hand-off's ``self`` that holds the site of whoever handed the work over.
HANDED_OVER = "_reclaim_site"


def mark_handoff(code: CodeType) -> None:
    """*code* runs work handed over by other code (a method whose ``self`` carries that code's site).

    What is acquired under it before any user frame is recorded at the site
    in ``self._reclaim_site`` (see :func:`handed_over_site`), not as the library's own.
    """
    _handoffs[id(code)] = code
    _owned_files.add(code.co_filename)


def handed_over_site(frame: FrameType | None, depth: int) -> RawSite:
    """Where the user's code handed over the work that *frame* (and its callers) runs.

    The flat capture (see :func:`capture_flat`) of the first user frame from
    *frame* outwards, ownership aside: a pool's ``submit`` is owned, yet the
    work it is handed is its caller's. A hand-off met first (work submitted by
    work) gives its own site; an empty tuple when no user frame is found.
    """
    while frame is not None:
        code = frame.f_code
        if id(code) in _handoffs:
            return _carried(frame, depth)
        if not frame_is_framework(frame):
            return capture_flat(frame, depth)
        frame = frame.f_back
    return ()


def _handed(frame: FrameType) -> RawSite:
    """The site the hand-off running in *frame* carries, else empty."""
    try:
        site = getattr(frame.f_locals.get("self"), HANDED_OVER, None)
    except Exception:  # an exotic frame must never break an acquisition
        site = None
    return tuple(site) if site else ()


def _carried(frame: FrameType, depth: int) -> RawSite:
    """The site the hand-off running in *frame* carries, else the frame's own (the library's)."""
    site = _handed(frame)
    if not site:  # handed over before tracking started, or by no user code
        return _flat(frame, depth)
    # Whole: it was captured with the usual depth when the work was handed over, so the line in
    # the program shows though a file's own capture keeps two frames (at most, within a library).
    return site


def in_owned(frame: FrameType | None) -> bool:
    """Whether *frame* or one of its callers runs a function marked by :func:`mark_owned`."""
    while frame is not None:
        code = frame.f_code
        if code.co_filename in _owned_files and id(code) in _owned:
            return True
        frame = frame.f_back
    return False


#: The callers :func:`in_finalizer` looks through (a library's ``__del__`` closes through a
#: ``close()``/``disconnect()`` or three: redis-py's is four frames up from the socket's close).
#: rpyc's ``Connection.__del__`` says goodbye first and meets the end of the stream: the socket's
#: close is ten frames below it (close, sync_request, AsyncResult.value, wait, serve, recv, read,
#: the stream's close), and with six a dropped connection read as closed by the program. Each
#: frame more costs a close in a deep stack about 0.15 us.
_FINALIZER_DEPTH = range(12)


#: ``weakref.finalize.__call__``: called with the dead object's weak reference when that object
#: died, without one when the program (or the interpreter's exit) runs the finalizer itself.
_FINALIZE_CALL = weakref.finalize.__call__.__code__

#: The thread the garbage collector collects in, while it does (kept while
#: :func:`watch_collections` is on).
_collecting_in: int | None = None
#: How many collections began while watched: tells one collection's notes from another's.
collections = 0
#: When (``time.time()``) the collection under way began: what was acquired after it is what
#: its finalizers made for themselves (a source line read to log a dropped task's error).
_collecting_since = 0.0


#: Code that Python calls where an exception is only logged ("Exception ignored in"): the
#: collector's callback here, the weak reference callback of every record (see leaks._records).
#: ``reclaim run``'s SIGTERM handler does not raise its exception while one of these runs.
unraisable_codes: set[CodeType] = set()


#: Called as each collection watched ends, after every finalizer it ran.
collection_ended: list[Callable[[], None]] = []


def collecting_here() -> bool:
    """Whether the garbage collector is collecting in the calling thread now (while watched):
    a weak reference callback or finalizer it runs, not a death of a last reference."""
    return _collecting_in == get_ident()


def _collection(phase: str, info: object) -> None:
    global _collecting_in, collections, _collecting_since
    if phase == "start":
        _collecting_in = get_ident()
        _collecting_since = _time()
        collections += 1
    else:
        _collecting_in = None
        for ended in collection_ended:
            ended()


unraisable_codes.add(_collection.__code__)


def finalizer_args(frame: FrameType | None) -> tuple[object, ...]:
    """The arguments of the ``weakref.finalize`` callback *frame* (or one of its nearest callers)
    runs for, if one does (urllib3's: the queue of the pool that died)."""
    for _ in _FINALIZER_DEPTH:
        if frame is None:
            return ()
        if frame.f_code is _FINALIZE_CALL:
            return tuple(getattr(frame.f_locals.get("info"), "args", None) or ())
        frame = frame.f_back
    return ()


def watch_collections(on: bool) -> None:
    """Keep track of when the collector runs (a ``gc.callbacks`` entry), for :func:`in_finalizer`."""
    global _collecting_in
    if on and _collection not in gc.callbacks:
        gc.callbacks.append(_collection)
    elif not on:
        while _collection in gc.callbacks:
            gc.callbacks.remove(_collection)
        _collecting_in = None


def in_finalizer(frame: FrameType | None) -> bool:
    """Whether *frame* or one of its nearest callers is a ``__del__``, or a ``weakref.finalize``
    callback the garbage collector runs: the collector's doing.

    A resource an object closes in its ``__del__`` (redis-py's ``PubSub``, say, when the
    program dropped it unclosed) was released by the collector, not by the program; so was
    one a finalize callback closes for an owner that died (see :func:`finalize_run_by_collector`:
    not when a library's code dropped it). Nor at exit, for an owner kept to the end: the
    program's cleanup.
    """
    for _ in _FINALIZER_DEPTH:  # every socket close pays for this loop: no counter to keep
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "__del__":
            return True
        if code is _FINALIZE_CALL:
            return finalize_run_by_collector(frame)
        frame = frame.f_back
    return False


def finalize_run_by_collector(frame: FrameType) -> bool:
    """Whether the ``weakref.finalize`` call *frame* runs was the collector's doing, as a
    ``__del__``'s is: run for an owner that died (not called by the program, nor at exit), in a
    collection or as its last reference went.

    ``weakref.finalize`` is the idiom the docs give for ``__del__``: an owner the program dropped
    unclosed (asyncinotify's ``Inotify``, which closes its descriptors so) was left to the
    collector whichever it uses. Not urllib3's callback for its pools: its ``PoolManager.clear()``,
    and a full manager's eviction, release a pool's sockets by dropping the pool, by design."""
    local = frame.f_locals
    if local.get("_") is None:
        return False
    if _collecting_in == get_ident():
        return True
    module = getattr(getattr(local.get("info"), "func", None), "__module__", None)
    return not (type(module) is str and module.startswith(_RELEASE_BY_DROPPING))


#: The libraries whose ``weakref.finalize`` callbacks are their way to release what they own,
#: run as they drop it (see finalize_run_by_collector).
_RELEASE_BY_DROPPING = ("urllib3.",)


#: The directory report paths are shown relative to (see show_paths_from); None: the current one.
_shown_from: str | None = None


def show_paths_from(directory: str | None) -> str | None:
    """Show report paths relative to *directory* from now on (None: to the current directory of
    each report) and return the previous setting.

    ``reclaim run`` and the pytest plugin fix it where they started: a test that changes
    directory and never changes back (sanic's CLI tests) made every later report name
    ``tests/conftest.py`` as ``conftest.py``, and the files outside it by absolute path.
    """
    global _shown_from
    previous, _shown_from = _shown_from, directory
    return previous


def shown(location: str) -> str:
    """*location* (a path, or ``path:line``) for people: relative to the directory reports show
    paths from (the current one, unless fixed by :func:`show_paths_from`) when it lies below it,
    as a report shows the lines that acquired a resource."""
    base = os.path.join(_shown_from if _shown_from is not None else os.getcwd(), "")
    return location[len(base) :] if location.startswith(base) else location


def acquired_in_finalizer(frame: FrameType | None, site: tuple[Any, ...]) -> bool:
    """Whether a resource closed from *frame* under a finalizer (see :func:`in_finalizer`) was
    acquired by that finalizer itself: a function between the close and the ``__del__`` (or
    ``weakref.finalize`` callback), that one included, is among the codes of its flat *site*.

    A ``with open(...)`` or ``with socket.socket()`` in a ``__del__``, or in a helper it calls,
    is the finalizer's own resource, opened and closed by it; what a ``__del__`` closes of its
    object's (acquired in ``__init__``, or in a library) is still the collector's doing. Asked
    only of a close already taken for a finalizer's.
    """
    # Only frames under the finalizer's own: above it runs whatever the collection or the last
    # reference's drop interrupted (the very function that acquired it, often), and a close
    # IOBase's finalizer calls (a GzipFile's) has no such frame at all.
    below: list[Any] = []
    for _ in _FINALIZER_DEPTH:
        if frame is None:
            return False
        code = frame.f_code
        below.append(code)
        if code.co_name == "__del__" or code is _FINALIZE_CALL:
            codes = site[0::2]
            return any(acquired is code for code in below for acquired in codes)
        frame = frame.f_back
    return False


#: How many frames :func:`closing_in_finalizer` looks through (ZipFile.__del__ -> close ->
#: _fpclose; HTTPResponse.close -> _close_conn -> the makefile() object's close).
_CLOSERS = (1, 2, 3)


def finalizing_close(frame: FrameType) -> bool:
    """Whether *frame* is the ``close`` of a Python io class that IOBase's finalizer called for an
    object dropped unclosed: it sets the object's ``_finalizing`` first (a ``GzipFile``, a
    pyserial ``Serial``, any ``io.RawIOBase`` subclass).

    Looked up past the object's ``__getattr__``, and whatever its descriptor raises is a no: a
    wrapper that forwards attributes and raises once closed (gevent's ``FileObject``) raised out
    of its own ``close()``, leaving its file open."""
    if frame.f_code.co_name != "close":
        return False
    this = frame.f_locals.get("self")
    try:
        if object.__getattribute__(this, "_finalizing") is True:
            return True
    except Exception:  # noqa: S110 - no such attribute: its text wrapper is asked below
        pass
    # Or the text file over it is finalizing (``gzip.open(path, "wt")``'s ``TextIOWrapper``):
    # that calls this close, and its own ``_finalizing`` is set, not this object's.
    wrapper = text_wrappers.get(id(this)) if text_wrappers else None
    try:
        return wrapper is not None and wrapper()._finalizing is True
    except Exception:
        return False


#: id(binary file) -> a weak reference to the ``io.TextIOWrapper`` a library's ``open()`` made
#: over it (``gzip.open``, ``bz2.open``, ``lzma.open`` in a text mode; see ``leaks._files``).
text_wrappers: dict[int, Any] = {}


def closing_in_finalizer(frame: FrameType | None) -> bool:
    """Whether *frame*, a close or private method closing a resource, runs under a finalizer: a
    ``__del__``, the ``close`` of a Python io class IOBase's finalizer called (it sets the
    object's ``_finalizing`` first), or a ``weakref.finalize`` callback a collection runs (for an
    owner dropped in a reference cycle); looked for up through closes, cleanups and private methods only.

    A file a ``GzipFile`` or ``ZipFile`` dropped unclosed closes, or the socket under an
    ``http.client.HTTPResponse`` dropped unread, was closed by the garbage collector.
    """
    for _ in _CLOSERS:
        if frame is None:
            return False
        name = frame.f_code.co_name
        if name == "__del__":
            return True
        if frame.f_code is _FINALIZE_CALL:  # a weakref.finalize callback: see in_finalizer()
            return finalize_run_by_collector(frame)
        if name == "close" and finalizing_close(frame):
            return True
        # cleanup: tempfile's closer closes its file from one (3.12+: its __del__ calls cleanup(),
        # as does a with-block's exit), and urllib's responses are such wrappers.
        if name != "close" and name[0] != "_" and name != "cleanup":
            return False
        frame = frame.f_back
    return False


def dropped_at(frame: FrameType | None, past_finalizer: bool = False) -> tuple[CodeType, int] | None:
    """Where the last reference to an object a finalizer is closing was dropped, as ``(code,
    line)``: *frame* itself, the frame a C finalizer's hook was called under (the one whose drop
    ran it); with *past_finalizer*, the frame under the finalizer *frame* runs in, found as
    :func:`closing_in_finalizer` finds it (a ``__del__``, or the ``close`` IOBase's finalizer
    called). None while the collector collects in this thread (a reference cycle: no line
    dropped it), or when no such frame is found.

    ``self._sock = None`` in a library's ``close()`` (pg8000's, after closing the socket under
    its ``makefile()`` reader) is that library's bug, not the program's that called it. Plumbing
    is never the line (a test's local dropped as the test returns, under pytest's call of it):
    the first frame past it is, or none.
    """
    if _collecting_in == get_ident():
        return None
    if past_finalizer:
        for _ in _CLOSERS:
            if frame is None:
                return None
            ends = frame.f_code.co_name == "__del__" or finalizing_close(frame)
            frame = frame.f_back
            if ends:
                break
        else:
            return None
        # And past a close() the finalizer called first, that called this one: a program's
        # wrapper of HTTPResponse.close (sentry-sdk's) was named as the line that dropped it.
        for _ in _CLOSERS:
            if frame is None or not finalizing_close(frame):
                break
            frame = frame.f_back
    while frame is not None and frame_is_framework(frame):
        frame = frame.f_back
    return None if frame is None else (frame.f_code, frame.f_lineno)


def dropped_by_program(frame: FrameType | None) -> tuple[CodeType, int] | None:
    """The program's line that was running when the last reference to a dying object went, as
    ``(code, line)``: the first frame of the program's from *frame* (a frame of what the death
    ran: a weakref callback, a ``__del__``, a library's ``close()`` or ``connect()`` that let go
    of it) outwards, past every ``__del__`` and what it called (the program's ``close()`` a
    ``__del__`` runs is not where the object was let go). A local dropped as its function returns
    goes while the caller's line runs: that line is the one named. None while the collector
    frees a reference cycle in this thread (no line dropped it), or when no frame of the
    program's is on the stack (a library's thread). The ``close()`` IOBase's finalizer calls is
    a finalizer as a ``__del__`` is (an io class's own, the program's or not). A pytest hook
    (``pytest_runtest_protocol``, ``pytest_pyfunc_call``), a conftest's or a plugin's run from its
    source, only ran the test whose local went as it returned: not named either; nor is trio
    (its run loop drops what its tasks' coroutines kept as they end; its own suite runs it from
    its source)."""
    if _collecting_in == get_ident():
        return None
    outer = frame
    while outer is not None:  # the outermost finalizer running: what died of the line past it
        name = outer.f_code.co_name
        if name == "__del__" or (name == "close" and finalizing_close(outer)):
            frame = outer.f_back
        outer = outer.f_back
    while frame is not None:
        code = frame.f_code
        if (
            frame_is_program(frame)
            and not code.co_name.startswith("pytest_")
            and not code.co_filename.startswith(trio_dir)
        ):
            return code, frame.f_lineno
        frame = frame.f_back
    return None


def finalizer_closing(frame: FrameType | None) -> str | None:
    """The qualified name of the outermost finalizer running from *frame* outwards, reclaim's own
    left out: a ``__del__`` (``Proxy.__del__``), or the ``close()`` IOBase's finalizer called
    (``GzipFile.close``). What closed a resource as its owner lost its last reference: the
    resource itself may still be referenced (supervisor's socket proxies close the socket their
    manager keeps), so its report says whose finalizer it was, not that it was dropped. Not a
    private class of the standard library's: tempfile's ``_TemporaryFileCloser`` closes the
    response an ``HTTPError`` wraps, which says nothing of what the program dropped."""
    found = None
    while frame is not None:
        code = frame.f_code
        name = code.co_name
        if (
            (name == "__del__" or (name == "close" and finalizing_close(frame)))
            and not code.co_filename.startswith(_RECLAIM_DIR)
            and not (code.co_qualname[0] == "_" and is_framework(code.co_filename))
        ):
            found = code.co_qualname
        frame = frame.f_back
    return found


def where(code: CodeType, line: int) -> str:
    """``file:line in function`` for a report, the file as :func:`shown` shows it."""
    return f"{shown(code.co_filename)}:{line} in {code.co_qualname}"


def first_user_frame(frame: FrameType | None) -> FrameType | None:
    """The first frame from *frame* outwards that is not framework code, else *frame* itself.

    When every frame is framework code (a thread started by the standard
    library, say), the innermost frame is returned, so a site is never empty
    while there is a stack at all. So it is when an owned function (see
    :func:`mark_owned`) is met before any user frame: the acquisition is the
    library's own. A hand-off (see :func:`mark_handoff`) met first is returned
    itself: the site it carries is the acquisition's.
    """
    return _walk(frame)[0]


def _walk(frame: FrameType | None) -> tuple[FrameType | None, FrameType | None]:
    """:func:`first_user_frame`, and the thread's outermost frame when the stack ran out there
    having met only framework code (nothing owned): the thread's start site is then the site."""
    first = frame
    last = None
    cache = _framework_cache
    owned_files = _owned_files
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        framework = cache.get(filename)
        if framework is None:
            framework = frame_is_framework(frame)
        if filename in owned_files:
            if id(code) in _owned:
                # The library's own: a standard-library site starts at the innermost frame,
                # an installed library's at its owned function (see is_owned).
                return (first if framework else frame), None
            if id(code) in _handoffs:
                return frame, None  # capture_flat/capture_from take the site it carries
        if not framework:
            return frame, None
        if code is task_root and _started_by_user(frame, 1):
            return first, frame
        back = frame.f_back
        if (
            code.co_flags & _COROUTINE
            and back is not None
            and back.f_code is not task_root
            and _task_start(frame)
        ):
            # A task's outermost coroutine, the standard library's (``open_connection()`` run
            # by ``wait_for()``), stepped by uvloop in C: past it is whatever ran the loop, not
            # the program's line; the site goes on where the task was made (see _flat).
            return first, frame
        last = frame
        frame = back
    return first, (last if last is not None and last.f_code is thread_root else None)


def _started_by_user(root: FrameType, depth: int) -> RawSite:
    """The site that started the thread or task whose root frame is *root*, from its first user frame.

    *root* is a thread's outermost frame (``Thread._bootstrap``) or the event loop's
    ``Handle._run`` running a task's step. socketserver's ThreadingMixIn starts a thread
    per request from a thread the program started for ``serve_forever``: only
    standard-library frames on the stack, so that thread (and what it accepts) was the
    standard library's, never reported. ``asyncio.wait_for()`` and ``gather()`` run the
    program's coroutine in a task of their own: what ``open_connection()`` made there was
    reported at the line that started the event loop, not at the program's ``wait_for()``.
    """
    if root.f_code is thread_root:
        site = _started_at(root)
    elif task_site is not None:
        site = task_site()  # empty for a plain callback, which runs in no task
    else:
        site = ()
    for i in range(0, len(site), 2):
        if not is_framework(site[i].co_filename):
            return site[i : i + 2 * depth]
    return ()


def capture_from(frame: FrameType | None, depth: int = 8) -> Site:
    """Record up to *depth* frames starting at the first non-framework frame from *frame* outwards.

    The usual case reads each frame's ``f_lineno`` (decoded in C); a site that carries a
    hand-off's, a thread's or a task's start site, or goes on to the program's line, is resolved
    from :func:`capture_flat`.
    """
    start, root = _walk(frame)
    if root is None and (start is None or id(start.f_code) not in _handoffs):
        out: list[tuple[CodeType, int]] = []
        last = rest = start
        left = depth
        while rest is not None and left:
            code = rest.f_code
            if (code is task_root and out) or (code.co_flags & _COROUTINE and _task_start(rest)):
                return resolve(capture_flat(frame, depth))  # goes on where the task was made
            out.append((code, rest.f_lineno))
            last = rest
            rest = rest.f_back
            left -= 1
        if not out or not (
            _goes_on(out[0][0], rest, last, left) or (not left and _thread_root_past(rest, last))
        ):
            return tuple(out)
    return resolve(capture_flat(frame, depth))


def capture_task(frame: FrameType | None, depth: int, code: CodeType | None) -> RawSite:
    """:func:`capture_flat` for a task being created from *frame*, its coroutine running *code*.

    A task created by the program's code (``create_task``, ``gather``, a ``TaskGroup``) gets the
    usual site. One created by framework code alone, from a loop callback (the handler task
    ``asyncio.start_server`` makes for each connection, ``call_soon(partial(ensure_future,
    coro))``) or from a framework's own task, had the line outside the event loop as its site,
    a pytest or ``asyncio.run()`` line that says nothing: its coroutine's own code comes first
    instead (the line it is defined at), then the program's line that registered the callback
    or created the task running now (see :data:`task_site`), if one is known.
    """
    start = frame
    cache = _framework_cache
    while frame is not None:
        f_code = frame.f_code
        filename = f_code.co_filename
        framework = cache.get(filename)
        if framework is None:
            framework = frame_is_framework(frame)
        if not framework or filename in _owned_files or f_code is thread_root:
            return capture_flat(start, depth)  # the program's line (or a library's own, a hand-off's)
        if f_code is task_root:
            break
        frame = frame.f_back
    if code is None or depth < 2:
        return capture_flat(start, depth)
    carried = _started_by_user(frame, depth - 1) if frame is not None else ()
    return (code, 0, *(carried or capture_flat(start, depth - 1)))


def capture_flat(frame: FrameType | None, depth: int) -> RawSite:
    """:func:`capture_from` for hot paths: a flat ``(code, lasti, code, lasti, ...)`` tuple.

    ``f_lasti`` is a plain read while ``f_lineno`` decodes the line table, and
    one flat tuple is one allocation; :func:`resolve` turns it into a
    :data:`Site` when a report needs the lines.
    """
    frame, root = _walk(frame)
    if root is not None:
        started = _started_by_user(root, depth)
        if started:
            return started
    elif frame is not None and id(frame.f_code) in _handoffs:
        return _carried(frame, depth)
    return _flat(frame, depth)


def capture_in_task(frame: FrameType, depth: int, task_frame: Any, task_made_at: RawSite) -> RawSite:
    """:func:`capture_flat` of *frame*, run in a task whose coroutine's outermost frame is
    *task_frame* and whose creation site is *task_made_at*: the same site in fewer calls in the
    usual case, ``asyncio.create_task()`` or ``gather()`` called in the task's own coroutine (or
    in a function it calls, a comprehension on 3.11) with room left for its frames. Past
    asyncio's own frames, the frames up to the task's first are kept, then *task_made_at*, as
    :func:`_walk` and :func:`_flat` find them one call each; any other stack goes to those."""
    first = frame
    cache = _framework_cache
    owned_files = _owned_files
    while True:  # the leading framework frames, none owned (as _walk skips them)
        filename = frame.f_code.co_filename
        framework = cache.get(filename)
        if not framework or filename in owned_files or frame is task_frame:
            break
        back = frame.f_back
        if back is None:
            return capture_flat(first, depth)
        frame = back
    if framework is not False or filename in owned_files or task_began is None or not task_made_at:
        return capture_flat(first, depth)  # uncached, owned, or no user frame before the task's
    out: list[Any] = []
    left = depth
    while left > 1:  # the program's frames up to the task's first, as _flat keeps them
        out.append(frame.f_code)
        out.append(frame.f_lasti)
        left -= 1
        if frame is task_frame:
            back = frame.f_back
            if not frame.f_code.co_flags & _COROUTINE or back is None or back.f_code.co_flags & _AWAITING:
                break
            return _carry(out, task_made_at, left)
        back = frame.f_back
        if back is None or back.f_code is task_root:
            break
        frame = back
    return capture_flat(first, depth)


def _flat(frame: FrameType | None, depth: int) -> RawSite:
    out: list[Any] = []
    start = last = frame
    root = task_root
    # No asyncio tracked and no trio: no task to end at.
    coroutine = _COROUTINE if task_began is not None or trio_parents is not None else 0
    while frame is not None and depth:
        code = frame.f_code
        if code is root and out:
            # A task's stack ends where the event loop runs its step: the frames past it drive
            # the loop (run_until_complete's caller), none of them led to this task. It goes on
            # at the site that created the task, as a thread's goes on at its start (a task
            # made in a task made in a test: the test's line, not the line that ran the loop).
            carried = task_site() if task_site is not None else ()
            if carried:
                return _carry(out, carried, depth)
        out.append(code)
        out.append(frame.f_lasti)
        last = frame
        frame = frame.f_back
        depth -= 1
        if coroutine and code.co_flags & coroutine and depth and frame is not None:
            if frame.f_code is trio_root and trio_parents is not None:
                # A trio task's outermost coroutine, run by trio's loop. trio keeps no task's
                # spawn site: the lines its parent tasks wait in (their nursery blocks) come
                # before the frames past the run loop (trio.run's caller).
                carried = trio_parents()[: 2 * (depth - 1)]
                out.extend(carried)
                depth -= len(carried) // 2
                continue
            carried = _task_start(last)
            if carried:
                return _carry(out, carried, depth)
    if (not depth or frame is None) and len(out) > 2 * THREAD_BOOTSTRAP:  # not a file's two frames
        # Work a pool's thread runs goes on at the line that handed it over, before the pool's
        # frames are dropped below: it went on at the line that started the thread, an earlier
        # job's (a one-thread executor: the line that submitted its first job).
        kept = len(out)
        carried = _handed_within(out, start)
        if carried:
            return _carry(out, carried, depth + (kept - len(out)) // 2)
        # A thread's bootstrap frames (never shown) used the room its start site would take: all
        # of it, or all but a frame or two, when the thread's stack ran out with those left (the
        # line that started the thread kept, the test's line past it cut).
        bootstrap = _thread_root_past(frame, last)
        room = _drop_framework_tail(out) if bootstrap is not None else 0
        if room:
            depth, frame, last = depth + room, None, bootstrap
    if frame is None and depth and last is not None and last.f_code is not thread_root:
        switched = _greenlet_switched_from()
        if switched:  # run in a greenlet another one switched to, waiting for it to switch back
            return _carry(out, switched, depth)
    if out and _goes_on(out[0], frame, last, depth):
        if frame is not None:
            _stitch_program(out, start, frame)
        elif last is not None:
            kept = len(out)
            carried = _handed_within(out, start)
            return _carry(out, carried or _started_at(last), depth + (kept - len(out)) // 2)
    return tuple(out)


def _greenlet_switched_from() -> RawSite:
    """The flat stack the parent of the greenlet running now waits in, when that greenlet's own
    stack ran out and the parent's holds a line of the program's, else empty.

    ``greenlet(fn).switch()`` runs ``fn`` in a stack of its own, which starts at ``fn``: what it
    acquires was recorded with no line of the code that switched to it (SQLAlchemy's asyncio
    ``run_sync()``, peewee's ``await db.run(fn)``), which waits in ``switch()`` in the parent
    greenlet. A gevent or eventlet hub, the parent of their greenlets, waits in its own loop:
    none of its frames is the program's; a gevent greenlet goes on at the line that spawned it
    (see :data:`greenlet_site`). One dict lookup where greenlet is not imported."""
    module = sys.modules.get("greenlet")
    if module is None:
        return ()
    current = module.getcurrent()
    parent = current.parent
    frame = parent.gr_frame if parent is not None else None
    out: list[Any] = []
    program = False
    while frame is not None and len(out) < 2 * PROGRAM_SEARCH:
        code = frame.f_code
        program = program or frame_is_program(frame)
        out.append(code)
        out.append(frame.f_lasti)
        frame = frame.f_back
    if program:
        return tuple(out)
    return greenlet_site(current) if greenlet_site is not None and parent is not None else ()


def _handed_within(out: list[Any], frame: FrameType | None) -> RawSite:
    """The site carried by a hand-off among the frames kept in *out* (from *frame*), which then
    ends before it, else empty: work a library's thread runs (trio's thread cache) goes on at
    the program's line that handed it over, not at the line that started the thread, which
    was an earlier job's."""
    for i in range(0, len(out), 2):
        if frame is None:
            break
        if i and id(out[i]) in _handoffs:
            carried = _handed(frame)
            if carried:
                del out[i:]
                return carried
        frame = frame.f_back
    return ()


def _carry(out: list[Any], carried: RawSite, depth: int) -> RawSite:
    """*out*, a stack that ended where a thread or task began, going on at *carried*, the flat
    site that started it, in the *depth* frames of room left."""
    if len(carried) > 1 and out and carried[0] is out[-2] and carried[1] == 0:
        # A task only framework code made (pytest-asyncio's test task) starts its site with its
        # coroutine at offset 0 (see capture_task): the stack carried ends in that coroutine's own
        # frame already, and the repeat read as a call from its def (or first decorator) line.
        carried = carried[2:]
    out.extend(carried[: 2 * depth])
    if depth and len(carried) > 2 * depth and not first_program(tuple(out)):
        # The start site is cut where the program's line comes after the room left
        # (aiosqlite's worker, started from SQLAlchemy's greenlet_spawn): it takes the
        # outermost frame kept, as _stitch_program does.
        line = first_program(carried)
        if line:
            out[-2:] = line
    return tuple(out)


#: ``co_flags`` of a coroutine's code (``inspect.CO_COROUTINE``, ``CO_ITERABLE_COROUTINE``).
COROUTINE = _COROUTINE = 0x80 | 0x100
#: ``co_flags`` of code that resumes the frame it calls with ``await`` or ``yield from``: a
#: coroutine's, a generator's, an async generator's (``CO_GENERATOR``, ``CO_ASYNC_GENERATOR``).
AWAITING = _AWAITING = _COROUTINE | 0x20 | 0x200


def _task_start(frame: FrameType) -> RawSite:
    """The flat site that created the task whose coroutine's outermost frame is *frame*, else empty.

    asyncio runs a task's step from ``Handle._run`` (see :data:`task_root`); uvloop runs it in
    C, so past a task's coroutine comes whichever frame called into the loop
    (``run_until_complete``'s caller, a test runner's), no caller of the task's. A coroutine
    frame whose caller does not await it is where a task's stack ends: asked of the running task.
    """
    back = frame.f_back
    if back is None or back.f_code.co_flags & _AWAITING or task_began is None:
        return ()
    return task_began(frame)


#: Frames of the threading module a thread's target runs under (``Thread.run``,
#: ``_bootstrap_inner``, ``_bootstrap``).
THREAD_BOOTSTRAP = 3


def _thread_root_past(frame: FrameType | None, last: FrameType | None) -> FrameType | None:
    """The thread's outermost frame (``Thread._bootstrap``), when a site that used all its depth
    ends in a thread's bootstrap: at *last*, the outermost frame kept, or within the bootstrap's
    framework frames past it, from *frame*. None otherwise (the usual case: more to go)."""
    if frame is None:
        return last if last is not None and last.f_code is thread_root else None
    root = frame
    for _ in range(THREAD_BOOTSTRAP - 1):  # attribute reads only, as most stacks go on
        if root.f_back is None:
            break
        root = root.f_back
    if root.f_back is not None or root.f_code is not thread_root:
        return None
    between: FrameType | None = frame
    while between is not None and between is not root:
        if not frame_is_framework(between):  # a Thread subclass's own run(): the program's
            return None
        between = between.f_back
    return root


def _drop_framework_tail(out: list[Any]) -> int:
    """Drop the framework frames ending *out* (a thread's bootstrap: never shown), keeping its
    first frame; how many were dropped, the room they leave for the thread's start site."""
    dropped = 0
    while len(out) > 2 and is_framework(out[-2].co_filename):
        del out[-2:]
        dropped += 1
    return dropped


def _goes_on(first: CodeType, rest: FrameType | None, last: FrameType | None, left: int) -> bool:
    """Whether a site whose innermost kept frame runs *first* goes on past its own stack.

    When the stack ran out (*rest* is None) where a thread began, with room *left*, it
    goes on at the line that started the thread, so what a library's worker thread
    acquires still leads to the program's line. When the stack goes on past the depth
    kept and the innermost frame is not known to be the program's (the usual case is the
    program's own line first), the program's line may take the outermost kept frame's place.
    """
    if rest is None:
        return bool(left) and last is not None and last.f_code is thread_root
    return not _program_cache.get(first.co_filename)


#: Attribute of a ``threading.Thread`` holding the flat site of its ``start()`` (see _threads).
STARTED_AT = "_reclaim_started_at"
#: The code of ``threading.Thread._bootstrap``, the outermost frame of every thread; set when
#: thread starts are tracked (see leaks._threads), so _flat() compares, never imports.
thread_root: CodeType | None = None
#: The code of ``asyncio.events.Handle._run``, where the event loop runs a task's step, and what
#: gives the flat creation site of the task running now; set when tasks are tracked (leaks._tasks).
task_root: CodeType | None = None
task_site: Callable[[], RawSite] | None = None
#: The flat creation site of the running task when the frame given runs its coroutine's outermost
#: frame, else empty (see :func:`_task_start`); set when tasks are tracked (leaks._tasks).
task_began: Callable[[FrameType], RawSite] | None = None
#: The code of trio's run loop (``trio._core._run.unrolled_run``), the outermost frame of every
#: trio task's step, and what gives the flat site of the program's line the task running now was
#: spawned under; set when trio is imported (see leaks._trio).
trio_root: CodeType | None = None

#: The flat site that spawned a greenlet (gevent's, tracked as a task), else empty; set when
#: gevent's greenlets are tracked (see leaks._gevent).
greenlet_site: Callable[[Any], RawSite] | None = None

#: trio's package directory, with a trailing separator, once trio is imported (see leaks._trio):
#: its frames are plumbing to a report even where trio is the program (trio's own suite).
trio_dir = "\0"
trio_site: Callable[[], RawSite] | None = None
#: The program's frames the parent tasks of the trio task running now wait in, innermost first,
#: flat: where a stack that reached trio's run loop past the program's own frames goes on, as an
#: asyncio task's goes on at its creation site (set with trio_site).
trio_parents: Callable[[], RawSite] | None = None


def _started_at(root: FrameType) -> RawSite:
    try:
        site = getattr(root.f_locals.get("self"), STARTED_AT, None)
    except Exception:  # an exotic frame must never break an acquisition
        return ()
    # Flat only (code, offset, code, offset, ...): a resolved site would not mix with them.
    return site if site and type(site) is tuple and type(site[0]) is not tuple else ()


def line_at(code: CodeType, lasti: int) -> int:
    """The source line of the instruction at byte offset *lasti* of *code*."""
    for start, end, line in code.co_lines():
        if start <= lasti < end:
            return line if line is not None else code.co_firstlineno
    return code.co_firstlineno


def resolve(raw: Any) -> Site:
    """A :data:`Site` from a flat capture (a site already resolved is returned as it is)."""
    if not raw or type(raw[0]) is tuple:
        return tuple(raw)
    codes = raw[0::2]
    return tuple(zip(codes, map(line_at, codes, raw[1::2]), strict=True))


def is_owned(code: CodeType) -> bool:
    """Whether *code* was marked by :func:`mark_owned` (a site starting there is a library's own)."""
    return id(code) in _owned and _owned[id(code)] is code


def first_code(raw: Any) -> CodeType | None:
    """The code of the innermost captured frame, or None for an empty site."""
    if not raw:
        return None
    first = raw[0]
    code: CodeType = first[0] if type(first) is tuple else first
    return code


def first_filename(raw: Any) -> str | None:
    """The file of the innermost captured frame, or None for an empty site."""
    if not raw:
        return None
    first = raw[0]
    code: CodeType = first[0] if type(first) is tuple else first
    return code.co_filename


def frame_above(skip: int = 1) -> FrameType | None:
    """The frame *skip* calls above the function calling this (1: its caller); None when the
    stack is shorter: a function called straight from C with no Python frame under it, as an
    atexit callback is (``atexit.register(conn.close)``)."""
    try:
        return sys._getframe(skip + 1)
    except ValueError:
        return None


def capture(depth: int = 8, skip: int = 1) -> Site:
    """Capture the caller's site; *skip* counts frames above this function's caller to skip."""
    try:
        frame: FrameType | None = sys._getframe(skip + 1)
    except ValueError:
        return ()
    return capture_from(frame, depth)


if TYPE_CHECKING:

    class _FrameFields(NamedTuple):
        filename: str
        lineno: int
        function: str

else:  # the same, without importing typing (or dataclasses, which imports inspect): 10 ms
    _FrameFields = namedtuple("Frame", ("filename", "lineno", "function"))


class Frame(_FrameFields):
    """One formatted frame of an acquisition site: ``filename``, ``lineno``, ``function``."""

    __slots__ = ()

    @property
    def location(self) -> str:
        """``file:line``, the form editors and terminals link."""
        return f"{self.filename}:{self.lineno}"

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}"


#: id(code) -> code of a test runner's functions that live in a library's own files (anyio's
#: ``TestRunner``, beside its event-loop backend): left out of a report's callers, as framework
#: files are, though what the library's other code in those files does is shown.
_runners: dict[int, CodeType] = {}


def mark_runner(code: CodeType) -> None:
    """Leave frames running *code*, a test runner's, out of reports (see :func:`frames`)."""
    _runners[id(code)] = code


def _shown(code: CodeType) -> bool:
    filename = code.co_filename
    if filename[:1] == "<" and generated_by_library(code):
        return False  # a library's wrapper (pony's decorators): its caller's line is shown
    return not is_framework(filename) and _runners.get(id(code)) is not code


def frames(site: Site, *, trim: bool = True) -> list[Frame]:
    """Turn a captured site into frames; with *trim*, framework frames after the first are
    dropped (and a test runner's, see :func:`mark_runner`)."""
    if trim and site:
        site = (site[0], *(part for part in site[1:] if _shown(part[0])))
    return [Frame(code.co_filename, lineno, code.co_qualname) for code, lineno in site]


#: Where a test runner's own code lives: a stack whose frames reach it reached the runner.
_RUNNER_PARTS = tuple(f"{os.sep}{name}{os.sep}" for name in ("unittest", "_pytest", "pluggy"))


def in_test_runner(code: CodeType) -> bool:
    """Whether *code* is a test runner's (unittest's, pytest's, pluggy's): a stack cut at the
    depth with such a frame outermost went past the program's lines already (a base class's
    ``setUp``, which unittest calls, holds no test's line at any depth)."""
    filename = code.co_filename
    return any(part in filename for part in _RUNNER_PARTS)


def format_site(site: Site) -> str:
    """The innermost frame as ``file:line in function``, or ``<unknown>`` for an empty site."""
    if not site:
        return "<unknown>"
    code, lineno = site[0]
    return f"{code.co_filename}:{lineno} in {code.co_qualname}"
