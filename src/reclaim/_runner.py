"""Run a Python program in this process as ``python`` would, and report its leaks at exit.

The machinery behind ``reclaim run`` (:mod:`reclaim.cli` parses the command
line): the program gets the ``sys.argv``, ``__main__`` module and
``sys.path[0]`` the interpreter would give it; the tracker starts before its
first line. When its main code ends (return, ``sys.exit``, uncaught
exception) the leaks are checked, before the interpreter joins threads and runs
``atexit`` handlers and finalizers, which would release some of them; the
report is printed after the program's ``atexit`` handlers ran, with what
*they* acquired and left open added. When shutdown may wait on something
still running (a non-daemon thread, a child process), possibly for ever, the
report is printed at once instead, and what atexit handlers leak follows in a
second one. Ctrl-C, SIGTERM and ``os._exit`` report at once: SIGTERM is turned
into an exception so the program unwinds its ``with`` blocks first; after the
report the process dies of the signal as it would have without reclaim. After
``os.fork()`` a child reports only what it acquired itself.
"""

from __future__ import annotations

import _thread
import atexit
import builtins
import contextlib
import importlib.machinery
import io
import os
import runpy
import signal
import sys
import threading
import time
import types
import weakref
import zipimport
from collections.abc import Callable
from functools import partial

from . import _sites
from ._exitreport import (
    EXIT_LEAKED,
    Session,
    after_atexit,
    defer_signals,
    die_by_signal,
    handed_over,
    main_ended,
    print_pending,
    report,
    report_and_die,
)
from .leaks import Tracker, _records
from .leaks._patch import RELAY

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import NoReturn

    from .leaks._allow import AllowRule

__all__ = ["DEFAULT_DEPTH", "EXIT_LEAKED", "Options", "Target", "run"]

#: Frames recorded and shown per acquisition stack when --depth is not given.
DEFAULT_DEPTH = 8

_HERE = os.path.dirname(os.path.abspath(__file__))
# Frames of these files sit above the program's in a traceback (runpy is frozen on 3.11+).
_OUR_FILES = (
    os.path.join(_HERE, "_runner.py"),
    os.path.join(_HERE, "cli.py"),
    os.path.abspath(runpy.__file__),
    "<frozen runpy>",
)


class _Terminated(SystemExit):
    """Raised in the main thread by SIGTERM so the program unwinds before the report.

    A SystemExit, as the common ``signal.signal(SIGTERM, lambda *_: sys.exit())`` makes it:
    asyncio re-raises a SystemExit that lands in one of its tasks or callbacks, where it keeps
    any other exception as that task's own (SIGTERM landing in a background task would then
    never reach the program), and ``except SystemExit`` cleanup runs for it.
    """

    #: Read by the asyncio runner's shutdown (leaks/_tasks.py): cancel the main task first.
    unwinds_the_program = True


# Options and Target are plain classes: a dataclass imports dataclasses and inspect, which
# the program would find loaded at its first line (and pay for, ~7 ms).
#: How long a program that SIGTERM made unwind may take by default (``--unwind-timeout``): a
#: ``with`` block whose exit waits on hung work (``executor.shutdown(wait=True)``) would keep it
#: alive where Python dies at once. Then the report of what is open is printed and the process
#: dies of SIGTERM.
TERM_UNWIND = 5.0


class Options:
    """What ``reclaim run``'s options asked for."""

    __slots__ = ("allow", "depth", "depth_given", "fail", "grace", "ignore", "json_path", "unwind_timeout")

    def __init__(
        self,
        json_path: str | None,
        fail: bool,
        depth: int,
        ignore: tuple[str, ...],
        grace: float,
        depth_given: bool = False,
        allow: tuple[AllowRule, ...] = (),
        unwind_timeout: float = TERM_UNWIND,
    ) -> None:
        self.json_path = json_path
        self.fail = fail
        self.depth = depth
        self.ignore = ignore
        self.grace = grace
        #: --depth was given: files keep that many frames too (by default they keep two, for speed).
        self.depth_given = depth_given
        #: --allow rules: leaks they match are left out.
        self.allow = allow
        #: --unwind-timeout: how long a program that SIGTERM made unwind may take.
        self.unwind_timeout = unwind_timeout


class Target:
    """The program to run: a script path or a module name, and its arguments."""

    __slots__ = ("args", "module", "path")

    def __init__(self, module: str | None, path: str | None, args: list[str]) -> None:
        self.module = module
        self.path = path
        self.args = args

    @property
    def label(self) -> str:
        return f"-m {self.module}" if self.module is not None else str(self.path)


# -- running the program -------------------------------------------------------------------


def _load_script(path: str) -> types.CodeType | str | None:
    """Compile the script as the interpreter would; a str is an error message, None: use runpy."""
    if os.path.isdir(path):
        return None
    full = os.path.abspath(path)
    try:
        with io.open_code(full) as f:
            source = f.read()
    except OSError as exc:
        return f"reclaim run: can't open file {full!r}: [Errno {exc.errno}] {exc.strerror}"
    if _is_zip(full):  # a zip application: runpy runs it as python does
        return None
    return compile(source, full, "exec", dont_inherit=True)


def _is_zip(path: str) -> bool:
    """Whether *path* is a zip, asked of the importer python itself runs zip applications with
    (loaded at start-up: importing zipfile would cost 10 ms, and the program would see it)."""
    try:
        zipimport.zipimporter(path)
    except zipimport.ZipImportError:
        return False
    return True


def _exec_script(path: str, code: types.CodeType) -> None:
    """Run compiled script code in a fresh ``__main__`` module, as ``python script.py`` does."""
    full = os.path.abspath(path)
    module = types.ModuleType("__main__")
    module.__file__ = full
    module.__cached__ = None  # type: ignore[attr-defined]
    module.__loader__ = importlib.machinery.SourceFileLoader("__main__", full)
    module.__builtins__ = builtins  # type: ignore[attr-defined]
    # The program's module stays __main__ after it ends, for its atexit handlers and pickling.
    sys.modules["__main__"] = module
    exec(code, module.__dict__)


#: Modules that run the tests they are named (``-m unittest test.test_bz2``, CPython's own
#: runner ``-m test test_bz2``), each with the package its bare names are in: the program is
#: those tests, the runner is plumbing. Marked the program, the runner's ``__main__`` was the
#: line every leak of CPython's own tests (standard-library files, plumbing) was blamed on.
_TEST_RUNNERS = {"unittest.__main__": "", "test.__main__": "test.", "test.regrtest": "test."}
#: Test runners whose tests are the program's already (files of the project, not of an installed
#: package), so none are marked: their ``__main__`` only stays plumbing. Marked the program,
#: pytest's was where every socket a test left to be dropped as it returned was "dropped at".
_PLAIN_TEST_RUNNERS = frozenset({"pytest.__main__"})
#: unittest's options that take a value (``-k PATTERN``; discover's ``-s``, ``-p``, ``-t``).
_RUNNER_VALUES = frozenset(
    {"-k", "-s", "--start-directory", "-p", "--pattern", "-t", "--top-level-directory"}
)


def _mark_tests(args: list[str], package: str = "") -> None:
    """Mark the modules the test runner is named in *args* (a package's files too) the program's.

    Only the standard library's need it (``test.test_bz2``): anyone else's are the program's
    already. A name may go on past its module (``test.test_bz2.BZ2FileTest.testRead``), and
    may be bare, in *package* (regrtest's ``test_bz2``). An option's value that names no
    module (regrtest's ``-m test_read`` pattern, ``-j 4``) is passed over as found nothing.
    """
    import importlib.util  # here: only a test runner needs it

    values = iter(args)
    for arg in values:
        if arg in _RUNNER_VALUES:
            next(values, None)
            continue
        if arg.startswith("-") or not arg.replace(".", "").replace("_", "").isalnum():
            continue
        if package and not arg.startswith(package):
            arg = package + arg
        parts = arg.split(".")
        spec = None
        # Never *package* itself: a value that names nothing in it (``-j 4``) would mark all.
        for end in range(len(parts), package.count("."), -1):
            with contextlib.suppress(ImportError, ValueError):
                spec = importlib.util.find_spec(".".join(parts[:end]))
            if spec is not None:
                break
        if spec is None:
            continue
        files = [spec.origin] if spec.origin and spec.origin.endswith(".py") else []
        for location in spec.submodule_search_locations or ():
            for directory, _dirs, names in os.walk(location):
                files += [os.path.join(directory, name) for name in names if name.endswith(".py")]
        for file in files:
            if _sites.is_framework(file):
                _sites.mark_program(file)


def _exec_module(name: str) -> None:
    """Run module *name* as ``python -m name`` does: in a fresh ``__main__`` that stays one.

    Not ``runpy.run_module``: its temporary ``__main__`` is dropped when the code
    ends, taking the module's globals with it, so a file a module-level name
    still holds would be closed by the garbage collector before the leak check
    and reported as such, unlike the same program run by path. runpy's own
    helpers (``python -m`` runs through them) find the code and set the
    module's attributes, so the module sees what ``python -m`` gives it.
    """
    # Private, but what `python -m` itself calls, in 3.11 to 3.13; ImportError when not found.
    _name, spec, code = getattr(runpy, "_get_module_details")(name)  # noqa: B009
    module = types.ModuleType("__main__")
    # The program's module stays __main__ after it ends, for its atexit handlers and pickling.
    sys.modules["__main__"] = module
    sys.argv[0] = spec.origin
    if spec.name in _TEST_RUNNERS:
        _mark_tests(sys.argv[1:], _TEST_RUNNERS[spec.name])  # the tests are the program, not the runner
    elif spec.origin and spec.name not in _PLAIN_TEST_RUNNERS:
        # The program, though it may be a module of the standard library.
        _sites.mark_program(spec.origin)
    getattr(runpy, "_run_code")(code, module.__dict__, None, "__main__", spec)  # noqa: B009


def _program_traceback(tb: types.TracebackType | None) -> types.TracebackType | None:
    """Drop reclaim's and runpy's frames from the top, so the traceback starts in the program."""
    while tb is not None and _abspath(tb.tb_frame.f_code.co_filename) in _OUR_FILES:
        tb = tb.tb_next
    return tb


def _abspath(filename: str) -> str:
    return filename if filename.startswith("<") else os.path.abspath(filename)


#: The leak tracker's replacements (open(), socket(), ...) live here: see _hide_replacements().
_LEAKS_DIR = os.path.join(_HERE, "leaks") + os.sep


def _hide_replacements(exc: BaseException) -> None:
    """Drop the tracker's replacement functions from the tip of *exc*'s traceback and its chain's.

    A failed ``open()`` raised through ``tracked_open``: the traceback ended in a frame of
    reclaim's that plain ``python`` never shows.
    """
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        error = pending.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        last_theirs = None
        entry = error.__traceback__
        while entry is not None:
            frame = entry.tb_frame
            # A frame call_as() runs at the program's line (for warnings) is a replacement's too.
            if not _abspath(frame.f_code.co_filename).startswith(_LEAKS_DIR) and RELAY not in frame.f_locals:
                last_theirs = entry
            entry = entry.tb_next
        if last_theirs is not None:
            last_theirs.tb_next = None  # what followed it was ours only
        pending += (error.__cause__, error.__context__)


def _print_exception(exc: BaseException) -> None:
    # The default hook prints exc.__traceback__ whatever tb it is given: trim it in place.
    _hide_replacements(exc)
    tb = _program_traceback(exc.__traceback__)
    exc.__traceback__ = tb
    try:
        sys.excepthook(type(exc), exc, tb)
    except Exception:  # a broken excepthook must not cost the report
        sys.__excepthook__(type(exc), exc, tb)


def _exit_status(code: object) -> int:
    """What the interpreter does with ``SystemExit(code)``: the status the process exits with."""
    if code is None:
        return 0
    if isinstance(code, int):  # bool too: sys.exit(True) is status 1
        # The C exit() keeps the low 8 bits: sys.exit(-15) is 241, sys.exit(256) is 0; an int
        # too large for a C long reads as -1, so 255.
        return (int(code) if -(2**63) <= code < 2**63 else -1) & 0xFF
    with contextlib.suppress(Exception):  # as the interpreter: a failed print changes nothing
        print(code, file=sys.stderr)
    return 1


def _hide_launcher_frames() -> None:
    """Frames below the program (the console script, runpy, reclaim) are plumbing in reports."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        _sites.mark_framework(frame.f_code.co_filename)
        frame = frame.f_back


#: Set by ``reclaim run`` for the program it runs (and so for that program's children): its
#: command line, which a copy re-run from ``sys.orig_argv`` has too.
NESTED_ENV = "RECLAIM_RUN_ARGV"
#: The session whose program SIGTERM unwinds (set by run() before the handler is installed).
_term_session: Session | None = None


#: How long SIGTERM's exception waits for the code it landed in to return, when raised there
#: it would only be logged (see _unraisable_at): past that, it is raised there all the same.
UNRAISABLE_PATIENCE = 1.0
#: When SIGTERM first landed where its exception would be lost (``time.monotonic()``), or None.
_deferred_since: float | None = None


#: Code Python calls from a dying object, not reclaim's (see _sites.unraisable_codes): what a
#: ``weakref.finalize`` runs. (A bare weak reference's callback has no frame of its own to tell.)
_FINALIZE = weakref.finalize.__call__.__code__


def _unraisable_at(frame: types.FrameType | None) -> bool:
    """Whether an exception raised in *frame* would only be logged as "Exception ignored in",
    never unwinding the program: *frame* or a caller of it runs a ``__del__``, a
    ``weakref.finalize`` callback, or one of the callbacks reclaim's tracking runs from the
    collector and from dying objects."""
    while frame is not None:
        code = frame.f_code
        if code.co_name == "__del__" or code is _FINALIZE or code in _sites.unraisable_codes:
            return True
        frame = frame.f_back
    return False


def _raise_terminated(signum: int, frame: types.FrameType | None) -> None:
    global _deferred_since
    if _unraisable_at(frame):
        # A signal's handler runs wherever the main thread is, the garbage collector's callback
        # or a finalizer too, where the exception would be logged and dropped: the program went
        # on as if no SIGTERM had come. Sent again a moment later, until that code has returned.
        now = time.monotonic()
        if _deferred_since is None:
            _deferred_since = now
        if now - _deferred_since < UNRAISABLE_PATIENCE:
            _thread.start_new_thread(_signal_again, (os.getpid(), signum))
            return
    _deferred_since = None
    _terminate()


def _signal_again(pid: int, signum: int) -> None:
    """A bare thread (not the program's): *signum* once more, once the handler that started it
    has returned (sent at once, it would run the handler again inside itself)."""
    time.sleep(0.001)
    os.kill(pid, signum)


def _terminate() -> NoReturn:
    session = _term_session
    if session is None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    else:
        # A second SIGTERM while the program unwinds: the report of what is open now, then death.
        signal.signal(signal.SIGTERM, partial(report_and_die, session))
        _thread.start_new_thread(_unwind_deadline, (session, os.getpid()))
    raise _Terminated


#: How long (in 50 ms naps) a report the main thread's SIGTERM handler began may take.
_REPORT_WAITS = range(600)


def _unwind_deadline(session: Session, pid: int) -> None:
    """A bare thread (not the program's): SIGTERM once more if unwinding takes too long."""
    patience = session.options.unwind_timeout
    time.sleep(patience)
    if session.reported_pid == pid:
        return  # unwound, and the report is under way or done
    with contextlib.suppress(Exception):
        print(
            f"reclaim: still unwinding {patience:g} s after SIGTERM (--unwind-timeout): "
            "what is open now is reported and the process dies of the signal",
            file=sys.stderr,
            flush=True,
        )
    os.kill(pid, signal.SIGTERM)  # the main thread's handler prints the report and dies
    time.sleep(patience)
    # The handler began its report (a loaded machine can take longer than the patience over
    # it): it dies of the signal once done. Ended here, the process exited 143 instead.
    for _ in _REPORT_WAITS:
        if session.reported_pid != pid:
            break
        time.sleep(0.05)
    # Still here: the main thread never got back to Python to run its handler (C code that
    # ignores signals). The report from here, then the status SIGTERM gives in a shell.
    report(session, 128 + signal.SIGTERM)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(128 + signal.SIGTERM)


def run(options: Options, target: Target) -> int:
    """Run *target* as ``python`` would, print its leaks at exit; return the exit status.

    May not return: a program ended by SIGTERM or Ctrl-C dies of that signal after the report.
    """
    code: types.CodeType | str | None = None
    if target.path is not None:
        try:
            code = _load_script(target.path)
        except SyntaxError as exc:
            exc.__traceback__ = None  # as the interpreter shows it: no frames, just the caret
            sys.excepthook(type(exc), exc, None)
            return 1
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 2
        sys.argv[:] = [target.path, *target.args]
        main_dir = os.path.dirname(os.path.realpath(target.path))
    else:
        assert target.module is not None
        sys.argv[:] = [target.module, *target.args]
        main_dir = os.getcwd()
    if not sys.flags.safe_path:
        if sys.path:
            sys.path[0] = main_dir
        else:
            sys.path.insert(0, main_dir)

    _hide_launcher_frames()
    if options.depth_given:
        _records.ask_file_depth(options.depth)
    # Paths as seen from where the run started, whatever directory the program moves to. Not
    # put back: the report may come from an atexit handler or a fork's exit, after run() returns.
    _sites.show_paths_from(os.getcwd())
    tracker = Tracker(depth=options.depth)
    tracker.start()
    session = Session(options, target, tracker, tracker.snapshot())
    # A program that re-runs itself from sys.orig_argv runs its copy under reclaim run too: that
    # one reports as well, but must not take the outer run's --json file or exit status. Only
    # the same command line counts: a program that runs `reclaim run --fail` on another keeps it.
    invocation = "\x1f".join(sys.orig_argv[1:])
    session.nested = os.environ.get(NESTED_ENV) == invocation
    os.environ[NESTED_ENV] = invocation
    _install_fork_and_exit_hooks(session)
    # Registered before the program's own handlers, so it runs after all of them.
    atexit.register(after_atexit, session)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        global _term_session
        _term_session = session
        with contextlib.suppress(ValueError):  # run() called outside the main thread
            signal.signal(signal.SIGTERM, _raise_terminated)

    status = 0
    die_by: int | None = None
    try:
        if target.module is not None:
            _exec_module(target.module)
        elif isinstance(code, types.CodeType):
            _exec_script(target.path or "", code)
        else:
            runpy.run_path(target.path or "", run_name="__main__")
    except _Terminated:  # before SystemExit, which it is
        status, die_by = 128 + signal.SIGTERM, signal.SIGTERM
    except SystemExit as exc:
        status = _exit_status(exc.code)
    except KeyboardInterrupt as exc:
        _print_exception(exc)
        status, die_by = 128 + signal.SIGINT, signal.SIGINT
    except BaseException as exc:
        if isinstance(exc, ImportError) and _program_traceback(exc.__traceback__) is None:
            # runpy could not find the module: say it as `python -m` does, no report.
            print(f"reclaim run: {exc}", file=sys.stderr)
            tracker.stop()
            if options.depth_given:
                _records.unask_file_depth(options.depth)
            return 1
        _print_exception(exc)
        status = 1
    pending, before = defer_signals()
    session.signals = pending  # a signal ends the report's grace wait
    status = report(session, status) if die_by is not None else main_ended(session, status)
    if die_by is None:
        # Shutdown (joining threads, atexit) reacts to Ctrl-C and SIGTERM as without reclaim;
        # while the report waits for the atexit handlers, SIGTERM prints it before dying.
        waiting = session.ended is not None and not session.ended.printed
        for signum, handler in before.items():
            if handler is _raise_terminated:
                handler = partial(report_and_die, session) if waiting else signal.SIG_DFL
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signum, handler)
        if not pending:  # checked after the restore: a signal noted until then is not lost
            session.signals = None
            return status
        print_pending(session)  # the atexit handler that would print it will not run
    die_by_signal(pending[0] if pending else die_by or signal.SIGTERM)
    return status


# -- fork and os._exit ---------------------------------------------------------------------


def _hands_over() -> int | None:
    """The pid of a child this process forked (``os.fork()``) and has not reaped, if any:
    ``os._exit(0)`` then, as a daemon's parent leaves right after ``fork()`` (python-daemon's
    fork_then_exit_parent), hands over what it holds to that child, which goes on with it and
    reports its own. The parent's report said every file it opened before the fork leaked, and
    the child, a zombie."""
    children = _records.integration("_children")  # loaded before any fork is recorded
    if children is None:
        return None
    pid = os.getpid()
    for key, rec in list(_records.live.items()):
        if (
            type(key) is tuple
            and key[0] == "pid"
            and rec.kind == "subprocess"
            and rec.info[1:2] == (children.FORKED,)
            and _records.pid_of(rec.seq) == pid
        ):
            return int(key[1])
    return None


def _install_fork_and_exit_hooks(session: Session) -> None:
    """Children report their own leaks; ``os._exit`` (which skips everything) still reports."""
    real_exit: Callable[[int], NoReturn] = os._exit

    def exit_with_report(status: int) -> NoReturn:
        try:
            child = _hands_over() if status == 0 else None
            if child is None:
                status = report(session, status)
            else:
                handed_over(session, child)
        finally:
            real_exit(status)

    # SIGTERM is blocked in the forking thread across fork(): a child gets the parent's Python
    # handler, and a SIGTERM that reaches it before the interpreter's after-fork code (a pool
    # terminated while a worker has not run yet) would be caught, then dropped by that code,
    # and the child would never end. Blocked, it waits until the child has its own handler.
    masks: dict[int, set[int | signal.Signals]] = {}

    def before() -> None:
        masks[threading.get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def unblock() -> None:
        mask = masks.pop(threading.get_ident(), None)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def after_in_child() -> None:
        session.is_child = True
        session.pid = os.getpid()
        # A process a library forks for itself (multiprocessing's workers, a manager's server).
        library = _sites.in_owned(sys._getframe(1))
        session.untracked_fds = not library
        try:
            session.since = session.tracker.snapshot()
        except Exception:
            session.since = None
        # SIGTERM in a child we forked: report and die, no unwinding, so the child ends as it
        # would without reclaim. Not in the library's: multiprocessing terminates its workers as
        # a matter of course, and a Python handler can miss a signal that lands just before a
        # blocking call (CPython runs handlers between bytecodes and on EINTR), leaving
        # terminate() waiting for ever; they keep the default action, as without reclaim.
        try:
            if signal.getsignal(signal.SIGTERM) is _raise_terminated:
                signal.signal(signal.SIGTERM, signal.SIG_DFL if library else die_reporting)
        except ValueError:
            pass
        unblock()

    die_reporting = partial(report_and_die, session)

    os._exit = exit_with_report
    if hasattr(os, "register_at_fork"):  # POSIX only
        os.register_at_fork(before=before, after_in_parent=unblock, after_in_child=after_in_child)
