"""The report of ``reclaim run``: when and how it is printed, and the signals around it.

When the program's main code ends (:func:`main_ended`) its leaks are checked at
once, before shutdown joins threads and runs atexit handlers (which would
release some of them). The report is printed by :func:`after_atexit`, the last
atexit handler, with what the program's own handlers acquired and left open,
and without what they released by a call (a file ``logging.shutdown()`` closed,
a socket the program's cleanup closed; threads and children the interpreter
joins stay reported);
or at once when shutdown may wait for ever (a non-daemon thread, a multiprocessing
child still running), without the files ``logging.shutdown()`` will close, what
atexit handlers leak then following in a second report.
``os._exit``, signals and forked children print through :func:`report`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import types
from collections import Counter

from ._sites import warned_again_at
from .leaks._kinds import CLIENT_KINDS

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._runner import Options, Target
    from .leaks import Leak, Snapshot, Tracker

__all__ = [
    "EXIT_LEAKED",
    "Ended",
    "Session",
    "after_atexit",
    "defer_signals",
    "die_by_signal",
    "flush",
    "json_path_problem",
    "main_ended",
    "print_pending",
    "report",
    "report_and_die",
]

#: Exit status of ``reclaim run --fail`` when the program exited 0 but leaked.
EXIT_LEAKED = 3


# Plain classes, as _runner.Options: a dataclass would import dataclasses and inspect.
class Ended:
    """The check made when the program's main code ended in process *pid*."""

    __slots__ = ("exit_code", "leaks", "mark", "pid", "printed", "status")

    def __init__(
        self, pid: int, leaks: list[Leak], status: int, exit_code: int, mark: Snapshot, printed: bool = False
    ) -> None:
        self.pid = pid
        self.leaks = leaks
        #: The program's exit status, and the one ``run()`` returned (``--fail`` may have changed it).
        self.status = status
        self.exit_code = exit_code
        #: Where acquisitions made during shutdown (atexit handlers) start.
        self.mark = mark
        #: Already printed, because shutdown might have waited for ever before the atexit handlers.
        self.printed = printed


class Session:
    """What the report at exit needs; after a fork the child re-labels it as its own."""

    __slots__ = (
        "ended",
        "is_child",
        "nested",
        "options",
        "pid",
        "reported_pid",
        "signals",
        "since",
        "target",
        "tracker",
        "untracked_fds",
    )

    def __init__(self, options: Options, target: Target, tracker: Tracker, since: Snapshot | None) -> None:
        self.options = options
        self.target = target
        self.tracker = tracker
        self.since = since
        self.pid = os.getpid()
        self.is_child = False
        #: The same ``reclaim run`` command run again inside the program it runs (a program that
        #: re-runs itself from ``sys.orig_argv``, as werkzeug's reloader does): its JSON goes to
        #: ``PATH`` with its pid, and ``--fail`` is the outer run's to apply.
        self.nested = False
        self.reported_pid = 0
        self.ended: Ended | None = None
        #: SIGINT/SIGTERM noted while the report is being made (see defer_signals): they end
        #: its grace wait for threads and children still finishing.
        self.signals: list[int] | None = None
        #: Diff the descriptor table; not in a process a library forked for itself (a pool worker,
        #: a manager's server), whose threads open and close descriptors of their own meanwhile.
        self.untracked_fds = True


def defer_signals() -> tuple[list[int], dict[int, Any]]:
    """While the report is written, SIGINT/SIGTERM are noted and delivered after it.

    Returns the signals noted so far (a list that fills in) and the handlers replaced.
    """
    pending: list[int] = []
    before: dict[int, Any] = {}

    def note(signum: int, frame: types.FrameType | None) -> None:
        pending.append(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            handler = signal.getsignal(signum)
            if handler not in (signal.SIG_IGN, None):
                signal.signal(signum, note)
                before[signum] = handler
        except ValueError:  # not the main thread (a forked child of a worker thread)
            pass
    return pending, before


def flush(stream: Any) -> None:
    """Flush *stream*, if it still can be."""
    with contextlib.suppress(Exception):  # a closed or broken stream must not hide the exit
        stream.flush()


def die_by_signal(signum: int) -> None:
    """End the process by *signum*'s default action, as it would have ended without reclaim."""
    for stream in (sys.stdout, sys.stderr):
        flush(stream)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)
    # Only reached if the signal is blocked: exit with the shell's convention.
    os._exit(128 + signum)


# -- the report ----------------------------------------------------------------------------


#: Where the interpreter shows a warning its collection at exit sets off (no frame runs then).
_AT_EXIT = ("<sys>", 0) if sys.version_info >= (3, 13) else ("sys", 1)


def _check(session: Session, since: Snapshot | None) -> list[Leak]:
    options = session.options
    signals = session.signals
    # What the check's collection finalizes (a coroutine never awaited) warns as the
    # interpreter's own collection at exit would have, not at reclaim's line.
    with warned_again_at(*_AT_EXIT):
        return session.tracker.leaks(
            since,
            grace=options.grace,
            ignore_kinds=options.ignore,
            ignore=options.allow or None,  # None: no filter to compile, so no re to import
            collect=True,
            untracked_fds=session.untracked_fds,
            _interrupted=None if signals is None else signals.__len__,
        )


#: Kinds whose release is a call the program (or a library on its behalf) makes: one made by an
#: atexit handler counts (logging.shutdown() closing a FileHandler's file, the program's own
#: cleanup, ``atexit.register(conn.close)``). Not non-daemon threads, which the interpreter's
#: shutdown joins for everyone, nor what a library's own exit releases for every program
#: (multiprocessing's children and objects, dask's clusters); see _released_by_call for the
#: daemon threads, children and multiprocessing objects that count.
_RELEASED_BY_CALL = frozenset(
    {"file", "fd", "socket", "sqlite3", "mmap", "selector", "eventloop", "tempdir", "tempfile", "filelock"}
    | {"sharedmemory", "dbm"}
    | {"scope", "resource", "lease", "pool", "untracked-fd"}
    | set(CLIENT_KINDS)  # a client an atexit handler closes, with its connections
    # Connections no driver closes at exit by itself: only the program's handler can have.
    | {"psycopg", "psycopg2", "pymysql", "pg8000", "mysqlclient", "mysql-connector", "asyncpg"}
    | {"redis-connection", "amqp", "aiormq", "mqtt", "nats", "pexpect", "ptyprocess", "watchdog"}
)


def _released_by_call(leak: Leak) -> bool:
    """Whether what ended *leak* after the main code can only have been a call: of a kind in
    :data:`_RELEASED_BY_CALL`; a child its library does not join at exit (a ``subprocess`` or
    ``os.fork()`` one, which the program's handler waited for); a daemon thread (the interpreter
    joins none: one that ended was stopped by an atexit handler, as loguru's ``logger.remove``
    stops its ``enqueue=True`` writer, or finished by itself) that is no executor
    (``concurrent.futures`` shuts those down at exit for everyone); or a multiprocessing object
    nothing of multiprocessing's own exit releases (see
    ``_multiprocessing.closed_only_by_a_call``: loguru's ``SimpleQueue``)."""
    if leak.kind in _RELEASED_BY_CALL:
        return True
    if leak.kind == "thread":
        return leak.details.get("daemon") is True and "problem" not in leak.details
    if leak.kind == "subprocess":  # nothing but the program waits for a child at exit, but
        return leak.details.get("joined_at_exit") is not True  # multiprocessing joins its own
    if leak.kind == "multiprocessing":
        from .leaks._records import integration

        pipes = integration("_multiprocessing")
        return pipes is not None and bool(pipes.closed_only_by_a_call(leak.details))
    return False


def _unless_released_at_exit(session: Session, leaks: list[Leak]) -> list[Leak]:
    """*leaks* (found when the main code ended) without those an atexit handler released since."""
    if not any(leak.state == "open" and _released_by_call(leak) for leak in leaks):
        return leaks
    options = session.options
    still = {
        _identity(leak)
        for leak in session.tracker.leaks(
            session.since,
            ignore_kinds=options.ignore,
            ignore=options.allow or None,
            collect=True,
            untracked_fds=session.untracked_fds,
        )
    }
    return [
        leak
        for leak in leaks
        if leak.state != "open" or not _released_by_call(leak) or _identity(leak) in still
    ]


def _identity(leak: Leak) -> tuple[object, ...]:
    return (leak.kind, leak.pid, leak.acquired_at, leak.thread, leak.frames, leak.seq)


def _fail_status(session: Session, leaks: list[Leak], status: int) -> int:
    fail = session.options.fail and not session.nested
    return EXIT_LEAKED if fail and leaks and status == 0 else status


def _shutdown_may_wait() -> bool:
    """Whether shutdown may block before the atexit handlers end: on a non-daemon thread (the
    interpreter joins it) or a multiprocessing child still running (multiprocessing's atexit
    handler joins its non-daemon ones). Not on a ``subprocess`` or ``os.fork()`` child: nothing
    waits for those at exit, so the report waits for the atexit handlers' releases. Nor on an
    idle ``ThreadPoolExecutor`` worker, which concurrent.futures' exit wakes and joins at once."""
    main = threading.main_thread()
    running = [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]
    if running:
        frames = sys._current_frames()  # one snapshot for every thread asked about
        if not all(_idle_executor_worker(t, frames.get(t.ident or 0)) for t in running):
            return True
    children = [
        child
        for name in ("multiprocessing.process", "multiprocess.process")  # and dill's copy
        for child in getattr(sys.modules.get(name), "_children", ())
    ]
    if not children:
        return False
    from .leaks._children import exited

    for child in list(children):
        popen = getattr(child, "_popen", None)
        if popen is None or popen.returncode is not None or child.daemon:  # daemons are terminated
            continue
        if exited(popen.pid) is not True:  # running, or not ours to ask (a fork server's child)
            return True
    return False


def _idle_executor_worker(thread: threading.Thread, frame: types.FrameType | None) -> bool:
    """Whether *thread*, its top frame *frame*, is a ``ThreadPoolExecutor``'s worker waiting for
    work, none queued: its only Python frame is the worker loop's (blocked in the queue's C
    ``get``)."""
    pool = sys.modules.get("concurrent.futures.thread")
    worker = getattr(pool, "_worker", None)
    if worker is None or getattr(thread, "_target", None) is not worker:
        return False
    if frame is None or frame.f_code is not getattr(worker, "__code__", None):
        return False
    args: tuple[Any, ...] = getattr(thread, "_args", ())
    queue = args[1] if len(args) > 1 else None
    return queue is not None and bool(queue.empty())


def _unless_logging_closes(leaks: list[Leak]) -> list[Leak]:
    """*leaks* without the files of logging's file handlers, which ``logging.shutdown()`` (an
    atexit handler) closes: for a report printed before the atexit handlers run."""
    logging = sys.modules.get("logging")
    if logging is None or not any(leak.kind == "file" for leak in leaks):
        return leaks
    closing = set()
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        stream = getattr(handler, "stream", None)
        if stream is not None and isinstance(handler, logging.FileHandler):
            with contextlib.suppress(Exception):  # closed already, or no descriptor
                closing.add((stream.fileno(), handler.baseFilename))
    return [
        leak
        for leak in leaks
        if leak.kind != "file"
        or leak.state != "open"
        or (leak.details.get("fd"), leak.details.get("path")) not in closing
    ]


def main_ended(session: Session, status: int) -> int:
    """Check for leaks now that the main code ended; print them now or after the atexit handlers.

    Returns the exit status to use (``--fail`` turns 0 into 3 when something leaked).
    """
    try:
        leaks = _check(session, session.since)
        ended = Ended(os.getpid(), leaks, status, status, session.tracker.snapshot())
    except Exception as exc:  # the program's outcome must survive a broken report
        print(f"reclaim: could not build the leak report: {exc!r}", file=sys.stderr)
        return status
    session.ended = ended
    if _shutdown_may_wait():
        ended.leaks = leaks = _unless_logging_closes(leaks)
        ended.printed = True
        if not _print(session, leaks, status):
            status = status or 1
    ended.exit_code = _fail_status(session, leaks, status)
    return ended.exit_code


def print_pending(session: Session) -> None:
    """A signal ends the program before its atexit handlers: print the report it would have printed."""
    ended = session.ended
    if ended is None or ended.printed or ended.pid != os.getpid() or session.reported_pid == ended.pid:
        return
    ended.printed = True
    session.reported_pid = ended.pid
    with contextlib.suppress(Exception):  # the signal's outcome must survive a broken report
        _print(session, ended.leaks, ended.status)


def after_atexit(session: Session) -> None:
    """The last atexit handler: print the report, with what the program's handlers leaked."""
    ended = session.ended
    if ended is None or ended.pid != os.getpid() or session.reported_pid == ended.pid:
        return
    pending, before = defer_signals()
    code = report(session, ended.status)
    for signum, handler in before.items():
        with contextlib.suppress(ValueError, TypeError):
            signal.signal(signum, handler)
    if pending:
        die_by_signal(pending[0])
    if code != ended.exit_code:
        # Only --fail (leaks made during shutdown only, or none left once the atexit handlers
        # released theirs) or a failed --json changes the status this late, and nothing but
        # os._exit can change it after sys.exit.
        for stream in (sys.stdout, sys.stderr):
            flush(stream)
        os._exit(code)


def report(session: Session, status: int) -> int:
    """Print (and write as JSON) this process's leaks once; return the exit status to use.

    After the main code ended, that is what it left plus what was acquired since and is still
    open (by atexit handlers); otherwise (``os._exit``, a signal, a forked child) what is open now.
    """
    pid = os.getpid()
    if session.reported_pid == pid:
        return status
    session.reported_pid = pid
    ended = session.ended if session.ended is not None and session.ended.pid == pid else None
    try:
        if ended is None:
            leaks = _check(session, session.since)
            earlier: list[Leak] = []
        else:
            leaks = _check(session, ended.mark)
            # What was printed already stands; else an atexit handler's release counts.
            earlier = ended.leaks if ended.printed else _unless_released_at_exit(session, ended.leaks)
    except Exception as exc:  # the program's outcome must survive a broken report
        print(f"reclaim: could not build the leak report: {exc!r}", file=sys.stderr)
        return status
    if ended is not None and ended.printed:
        if leaks and not _print(session, leaks, status, late=True, also=earlier):
            status = status or 1
    elif not _print(session, earlier + leaks, status):
        status = status or 1
    return _fail_status(session, earlier + leaks, status)


def _stderr() -> Any:
    """Where the report goes: ``sys.stderr``, as Python's own tracebacks, unless the program
    closed or removed the one it installed (the report would be lost): then the original."""
    stream = sys.stderr
    if stream is None or getattr(stream, "closed", False):
        return sys.__stderr__
    return stream


def _print(
    session: Session, leaks: list[Leak], status: int, *, late: bool = False, also: list[Leak] | None = None
) -> bool:
    """Print *leaks* to stderr and write them (and *also*, printed before) to --json; False if that failed.

    *late*: the leaks that shutdown's atexit handlers made after the report was printed.
    """
    options = session.options
    pid = os.getpid()
    err = _stderr()
    everything = [*(also or []), *leaks]
    try:
        color = _color(err)
        # Built only when there is something to show: rendering imports rich (tens of ms), and
        # every forked child with nothing to report would pay that at its exit.
        text = session.tracker.report(leaks).to_text(depth=options.depth, color=color) if leaks else ""
        report = session.tracker.report(everything) if options.json_path is not None else None
    except Exception as exc:  # the program's outcome must survive a broken report
        print(f"reclaim: could not build the leak report: {exc!r}", file=err)
        return True
    who = "forked child pid" if session.is_child else "pid"
    where = f"{session.target.label} ({who} {pid}, exit status {status})"
    if leaks:
        counts = Counter(leak.kind for leak in leaks).most_common()
        kinds = ", ".join(f"{n} {kind}" for kind, n in counts)
        noun = "resource" if len(leaks) == 1 else "resources"
        more = " more" if late else ""
        when = " during shutdown (atexit handlers)" if late else ""
        headline = f"reclaim: {where} leaked {len(leaks)}{more} {noun}{when} ({kinds}):"
        if color:
            headline = f"\x1b[1;31m{headline}\x1b[0m"
        print(f"\n{headline}\n", file=err)
        err.write(text if text.endswith("\n") else text + "\n")
        if not late:
            print(_LEGEND, file=err)
    elif not session.is_child:
        clean = f"reclaim: no leaks in {where}"
        print(f"\x1b[32m{clean}\x1b[0m" if color else clean, file=err)
    ok = True
    path = options.json_path
    if report is not None and path is not None and (everything or not session.is_child):
        if session.is_child or session.nested:
            stem, suffix = os.path.splitext(path)
            path = f"{stem}.{pid}{suffix}"
        try:
            # Which run this is: the program, the process and how it ended (the report's own
            # fields say nothing of that; added fields, the schema stays reclaim.leaks/1).
            document = {
                **report.to_json(),
                "program": session.target.label,
                "pid": pid,
                "exit_status": status,
                "forked_child": session.is_child,
            }
            import json  # only --json needs it

            with open(path, "w", encoding="utf-8") as f:
                json.dump(document, f, indent=2)
                f.write("\n")
        except OSError as exc:
            print(f"reclaim: could not write --json {path!r}: {exc}", file=err)
            ok = False
    flush(err)
    return ok


_LEGEND = (
    "\nEach entry: what leaked, the line that acquired it (callers below, then the library code it\n"
    "ran in, under 'inside'), the thread and when.\n"
    "'closed by the garbage collector' means the program dropped it without releasing it.\n"
    "Release each where it is acquired: a with-block, close(), join(), wait()."
)


def _color(stream: Any) -> bool:
    """Color on a terminal, unless NO_COLOR says otherwise (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return bool(stream.isatty())
    except Exception:
        return False


def handed_over(session: Session, child: int) -> None:
    """Say that this process left with ``os._exit(0)`` with its forked *child* going on: what it
    held is the child's now, which reports its own (a daemon's handover). A forked child that
    does so (a double fork's first child) says nothing, as a child with nothing to report."""
    if session.is_child:
        return
    line = (
        f"reclaim: {session.target.label} (pid {os.getpid()}) left with os._exit(0) after forking:"
        f" what it held is its child's (pid {child}), which reports its own"
    )
    print(line, file=_stderr())


def report_and_die(session: Session, signum: int, frame: types.FrameType | None) -> None:
    """SIGTERM with no handler of the program's: print the report, then die of the signal."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    report(session, 128 + signum)
    die_by_signal(signum)


def json_path_problem(given: str, full: str) -> str | None:
    """What stops a report being written to *full* (the absolute form of *given*), else None.

    ``reclaim run --json`` and ``pytest --reclaim-json`` check it before the program or the
    first test runs: found only at the end, it would lose the whole run's report.
    """
    directory = os.path.dirname(full)
    if os.path.isdir(full):
        return f"{given!r} is a directory; give a file path"
    if not os.path.isdir(directory):
        return f"directory {directory!r} does not exist; create it first"
    if not os.access(directory, os.W_OK | os.X_OK) or (os.path.exists(full) and not os.access(full, os.W_OK)):
        return f"{given!r} is not writable"
    return None
