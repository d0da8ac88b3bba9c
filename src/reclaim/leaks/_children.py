"""Child processes: a ``subprocess.Popen`` never waited for is a leak, zombies included.

``Popen.__init__`` is wrapped to record the child once it exists. It is open
while ``returncode`` is None: nothing (``wait``, ``poll``, ``communicate``, the
``with`` block) has collected its exit status, whether it still runs or is a
zombie. ``Popen.__del__`` is wrapped too: a Popen garbage-collected with its
status uncollected is remembered as a leak even though ``subprocess`` later
reaps it in the background, also when it dies in a reference cycle (its record
is kept for that ``__del__``: see ``_records.AT_DEL``).

A ``multiprocessing`` process is recorded the same way, by its Popen (see
:mod:`._multiprocessing`): open until ``join()`` (or anything else) collected
its exit status.

An asyncio subprocess is its transport's Popen, recorded at the user's line.
asyncio watches the child for the program: a thread per child on 3.11
(``ThreadedChildWatcher``), a pidfd read by the loop on 3.12 and 3.13
(``PidfdChildWatcher``). The watchers' functions are owned, so that thread and
that pidfd are the child's plumbing, never reported beside it. A transport
garbage-collected unclosed drops its Popen: if the status was never delivered
to it (the loop closed before the child ended, nothing awaited ``wait()``),
the child is reported as collected, before the transport's ``close()`` polls
it. That poll cannot be trusted as a wait: on 3.11 the watcher thread has
often reaped the child already, after the loop closed, and ``poll()`` then
invents a ``returncode`` of 0 (``ECHILD``); on 3.12 it reaps a zombie the
program never waited for. A child that ends while its loop runs is reaped by
the watcher and its status handed to the Popen: that is collected, and so is one the
watcher thread reaped while its loop is open but not running (its status queued for that
loop's next run, see install_asyncio_watchers): else the test that read such a child's
output to its end passed or failed on which thread ran first. gevent's
``Popen`` is tracked as the standard one (see :mod:`._gevent`); uvloop makes no
Popen, and its children are recorded as made without one (see :mod:`._uvloop`).

A child made without a Popen (``os.fork()``, ``os.forkpty()``, ``os.posix_spawn()``,
``os.posix_spawnp()``, ``os.spawn*(P_NOWAIT)``) by code outside the standard library
(which makes its own for subprocess and multiprocessing, tracked as theirs) is recorded by
pid. So is one ``pty.fork()`` makes for such code: it hands the child over to its caller,
who must wait for it (``pty.spawn()`` waits for its own). It is open until some
``waitpid``/``wait``/``wait3``/``wait4``/``waitid`` reaps it, whoever calls it; a child the
kernel reaps itself (``SIGCHLD`` ignored) is not ours to wait for, and so not open either;
nor is a daemon, an ``os.fork()`` child in a session other than the one the program started
in (it called ``os.setsid()``, or its parent did before forking it, in a double fork).
"""

from __future__ import annotations

import functools
import os
import sys
from _thread import _count as _thread_count  # threads other than the main one
from _thread import get_ident
from collections.abc import Callable, Mapping
from functools import partial
from types import ModuleType

from reclaim._sites import frame_above, frame_is_framework

from . import _files, _imports, _lineage, _records
from ._fds import track_fd
from ._kinds import Details, Kind, register
from ._owning import own
from ._patch import Patches, call_as, outside_warnings_stack
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "FORKED",
    "install",
    "install_asyncio_transport",
    "install_asyncio_watchers",
    "install_os",
    "record_child",
    "track_popen",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: asyncio's child watchers that acquire for a child: a thread (3.11), a pidfd (3.12+).
_WATCHERS = ("ThreadedChildWatcher", "_ThreadedChildWatcher", "PidfdChildWatcher", "_PidfdChildWatcher")


#: Where ``env`` is among ``Popen.__init__``'s positional arguments (after ``args``, ``bufsize``,
#: ``executable``, the three streams, ``preexec_fn``, ``close_fds``, ``shell`` and ``cwd``).
_ENV_AT = 10
#: And ``preexec_fn`` (after ``args``, ``bufsize``, ``executable`` and the three streams).
_PREEXEC_AT = 6

#: The Popen attributes that hold the parent's ends of the child's pipes.
_STREAMS = ("stdin", "stdout", "stderr")

#: Children whose status the program collected itself, by pid (``os.waitpid``, ``os.wait``):
#: their Popen's returncode stays None, yet nothing is left to wait for.
_waited_by_pid: set[int] = set()

#: Children asyncio's watcher thread reaped after their loop closed, by pid, with that thread:
#: it dropped their status, so their Popen's returncode stays None and nothing but the
#: program's own poll can change that. Once the thread has ended (it holds the transport's
#: callback till then), a check has nothing to wait for: the transport goes with the next
#: collection (it is in a reference cycle), and the child is then reported as collected.
_status_dropped: dict[int, Any] = {}


#: What a child os.fork() made is called in its record (and report).
FORKED = "os.fork() child"
#: The session the program started in (a forked process keeps its parent's value).
SESSION = os.getsid(0) if hasattr(os, "getsid") else None


def _is_open(obj: Any, rec: Record) -> bool:
    if obj is None:  # a child made without a Popen (no object): open while unreaped
        pid, what = rec.info[:2]
        return exited(pid) is not None and not (what == FORKED and _detached(pid))
    return obj.returncode is None and obj.pid not in _waited_by_pid


def _detached(pid: int) -> bool:
    """Whether an ``os.fork()`` child left the session the program started in: it (or the process
    that forked it, the first child of a double fork) called ``os.setsid()``. That is a daemon,
    orphaned on purpose by a parent that exits at once (python-daemon's
    ``detach_process_context``): no process of the program's is there to wait for it. Not a
    ``forkpty()`` child, which is made a session leader (of its terminal) for its parent to wait."""
    if SESSION is None:
        return False
    try:
        return os.getsid(pid) != SESSION
    except OSError:  # gone, or not ours to ask
        return False


def exited(pid: int) -> bool | None:
    """Whether the child has exited (a zombie), without reaping it; None when unknown (reaped
    already, not our child, or no ``waitid()``)."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return None
    try:
        result = waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    return result is not None


def one_line(command: str, limit: int = 120) -> str:
    """*command* on one line of at most *limit* characters, for a report's headline (a
    ``python -c`` script can be a page; the details keep it whole)."""
    line = " ".join(command.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    # (pid, args) for a Popen; a multiprocessing process adds the verb that collects its status.
    pid, args, *rest = rec.info
    waited = rest[0] if rest else "waited for"
    details: Details = {"pid": pid, "args": args}
    if rest:  # its library (multiprocessing, billiard) joins it at exit, for every program
        details["joined_at_exit"] = True
    text = f"pid {pid}: {one_line(args)}"
    if obj is None or obj.returncode is None:  # dropped unwaited, or still unwaited
        ended = exited(pid)
        details["exited"] = ended
        if rec.state != OPEN:  # dropped: the report's note says it was never waited for
            if ended:
                text += " (exited: a zombie)"
            elif ended is False:
                text += " (still running)"
        elif ended:
            text += f" (exited but never {waited}: a zombie)"
        elif ended is False:
            text += f" (still running, never {waited})"
        else:  # not our child to ask (a fork server's), or no waitid()
            text += f" (never {waited})"
    return text, details


def _may_still_end(details: Mapping[str, Any]) -> bool:
    """Whether a check's grace period may see an unwaited child stop being open: one still
    running may end (and be reaped by whoever waits for it), and so may a zombie while another
    thread that may reap it runs (see _reaper_running). A zombie with no such thread is left for
    the program's next wait, which a check never sees: waiting for it cost every test that left
    one (``Process.join(timeout)`` timing out, a ``multiprocessing`` child never joined) the
    whole grace period. Nor is a child whose status asyncio's watcher thread dropped (see
    _status_dropped), once that thread has ended."""
    watcher = _status_dropped.get(details["pid"])
    if watcher is not None and not watcher.is_alive():
        return False
    return details.get("exited") is not True or _reaper_running()


#: Standard-library modules with functions that reap children, so a thread running one may be
#: about to reap a zombie: ``Popen.wait()``/``poll()``, asyncio's watcher thread (3.11),
#: ``Process.join()``, a ``multiprocessing.Pool``'s worker handler, a process pool's manager.
_REAPING_MODULES = (
    "subprocess",
    "asyncio.unix_events",
    "multiprocessing.popen_fork",
    "multiprocessing.process",
    "multiprocessing.pool",
    "multiprocess.popen_fork",  # dill's copy of multiprocessing
    "multiprocess.process",
    "multiprocess.pool",
    "concurrent.futures.process",
)


def _reaper_running() -> bool:
    """Whether a thread other than the checking one may reap a zombie: one with the program's or
    a library's code on its stack (it may poll its children, its stack says not when), or one in
    a standard-library function that reaps (see _REAPING_MODULES). Not a thread that runs only
    plumbing that never reaps: execnet's, in every pytest-xdist worker, made every test there
    that left a zombie wait out its grace period, as an idle executor's worker would."""
    if not _thread_count():
        return False
    reaping = {getattr(sys.modules.get(name), "__file__", None) for name in _REAPING_MODULES}
    me = get_ident()
    for ident, top in sys._current_frames().items():
        frame = None if ident == me else top
        while frame is not None:
            if frame.f_code.co_filename in reaping or not frame_is_framework(frame):
                return True
            frame = frame.f_back
    return False


#: Attribute of a ``Popen`` holding the file of the pidfd a library waits for the child through
#: (trio's ``Process``, see :mod:`._trio`): the child's plumbing, not an untracked descriptor.
PIDFD = "_reclaim_pidfd"


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    pidfd = getattr(obj, PIDFD, None)
    if pidfd is None or pidfd.closed:
        return ()
    return (pidfd.fileno(),)


register(Kind("subprocess", is_open=_is_open, describe=_describe, fds=_fds, waitable=_may_still_end))


def _args(args: Any) -> str:
    if isinstance(args, (list, tuple)):
        return " ".join(os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args)
    return os.fsdecode(args) if isinstance(args, (bytes, os.PathLike)) else str(args)


def install(patches: Patches, subprocess: ModuleType) -> None:
    """Wrap ``Popen.__init__`` (acquisition) and ``Popen.__del__`` (collected unwaited)."""
    track_popen(patches, subprocess.Popen)
    # asyncio imports subprocess before these two modules, so waiting for them from here is in
    # time, and a program that never imports asyncio pays nothing for it.
    _imports.when_imported("asyncio.base_subprocess", partial(install_asyncio_transport, patches))
    _imports.when_imported("asyncio.unix_events", partial(install_asyncio_watchers, patches))


def track_popen(patches: Patches, popen: type) -> None:
    """Track the children of *popen*, ``subprocess.Popen`` or a class with its interface (gevent's,
    see :mod:`._gevent`): wrap its ``__init__`` and, when it has one, its ``__del__``."""
    init: Any = vars(popen)["__init__"]
    # None for gevent's Popen (put in subprocess by monkey-patching before tracking started, or
    # gevent.subprocess's own).
    finalize = getattr(popen, "__del__", None)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        name = None
        if _lineage.ENABLED:  # the child's descendants carry its name (see _lineage)
            if len(args) > _ENV_AT:
                env, name = _lineage.marked(args[_ENV_AT])
                args = (*args[:_ENV_AT], env, *args[_ENV_AT + 1 :])
            elif kwargs.get("env") is None and len(args) > _PREEXEC_AT and args[_PREEXEC_AT] is not None:
                preexec_fn, name = _lineage.putting_before(args[_PREEXEC_AT])
                args = (*args[:_PREEXEC_AT], preexec_fn, *args[_PREEXEC_AT + 1 :])
            elif kwargs.get("env") is None and kwargs.get("preexec_fn") is not None:
                kwargs["preexec_fn"], name = _lineage.putting_before(kwargs["preexec_fn"])
            else:
                kwargs["env"], name = _lineage.marked(kwargs.get("env"))
        init(self, *args, **kwargs)
        if type(self.pid) is not int:  # no child was made (a test mocked _execute_child): nothing to wait for
            return
        _given_again(self.pid)
        site = _records.capture(sys._getframe(1), _records.depth)
        rec = _records.new(self, "subprocess", (self.pid, _args(self.args)), site)
        if name is not None:
            _lineage.spawned(name, rec)
        for stream in _STREAMS:  # opened by Popen before the child existed: named now
            pipe = getattr(self, stream, None)
            if pipe is not None:
                _name_pipe(pipe, _files.PipeEnd(stream, self.pid))
        if getattr(type(self), "__del__", None) is __del__:  # a subclass's own may never call ours
            rec.why = _records.AT_DEL  # kept for our __del__ if it dies in a reference cycle

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        _dropped(self)
        finalize(self, *args, **kwargs)  # type: ignore[misc]

    # Popen's warnings name the program's line (an EncodingWarning for text=True without an
    # encoding, issued with stacklevel=2), not this wrapper's.
    __init__.__code__ = outside_warnings_stack(__init__.__code__)
    patches.set(popen, "__init__", __init__)
    if finalize is not None:
        patches.set(popen, "__del__", __del__)


def _name_pipe(pipe: Any, name: _files.PipeEnd) -> None:
    """Report *pipe*, a Popen's end of one of its child's pipes, as that pipe (a file)."""
    raw = getattr(pipe, "fileio", None)
    if raw is None:  # a file open() made, tracked as such: renamed
        _files.rename(pipe, name)
        return
    # gevent's FileObjectPosix: its raw layer, on a descriptor tracked as os.pipe's, is the file now.
    try:
        rec = _records.live.get(("fd", raw.fileno()))
        if rec is not None and rec.kind == "fd":
            # Closed by the buffered layer's finalizer, dropped unclosed, it tells its raw layer
            # so (as a file open() made tells reclaim's hook): the collector closed it.
            raw._dealloc_warn = functools.partial(
                _pipe_collected, _records.succeed(raw, rec, "file", (name, raw.mode))
            )
    except (OSError, ValueError, AttributeError, TypeError):  # closed already, or no such layer
        pass


def _pipe_collected(rec: Record, source: object) -> None:
    """A gevent pipe's raw layer is closed by its buffered layer's finalizer: the collector's doing."""
    if rec.state == _records.OPEN:
        _records.leak(rec, _records.COLLECTED)


def install_os(patches: Patches) -> None:
    """Wrap what makes a child without a Popen (recorded by pid) and what reaps one."""
    for name in ("waitpid", "wait", "wait3", "wait4"):
        if hasattr(os, name):
            patches.set(os, name, _noting_waits(getattr(os, name)))
    if hasattr(os, "waitid"):
        patches.set(os, "waitid", _noting_waits(os.waitid, _waitid_reaped))
    if hasattr(os, "fork"):
        patches.set(os, "fork", _recording_fork(os.fork))
    if hasattr(os, "forkpty"):
        patches.set(os, "forkpty", _recording_forkpty(os.forkpty))
    for name in ("posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            patches.set(os, name, _recording_spawn(name, getattr(os, name)))
    spawnvef = getattr(os, "_spawnvef", None)  # what every os.spawn*() runs (POSIX)
    if spawnvef is not None:
        patches.set(os, "_spawnvef", _recording_spawnvef(spawnvef))


def _given_again(pid: int) -> None:
    """*pid* is a new child's: what was known of an earlier child with that pid is forgotten."""
    _waited_by_pid.discard(pid)
    _status_dropped.pop(pid, None)


def _reaped(pid: int, by_program: bool) -> None:
    _records.release(("pid", pid))
    if by_program:
        _waited_by_pid.add(pid)


def _noting_waits(wait: Any, reaped: Callable[[Any, tuple[Any, ...]], int] = lambda r, a: r[0]) -> Any:
    """``os.waitpid``/``wait``/``wait3``/``wait4``/``waitid`` that note the child they reaped.

    *reaped* tells the pid reaped (0 for none) from the result and the arguments. A child
    made without a Popen is released whoever reaps it. A Popen's child counts as waited for
    only when the program's code reaped it: asyncio's watcher thread reaps children too, so
    that none is left a zombie, which is no wait of the program's.
    """

    def noting(*args: Any, **kwargs: Any) -> Any:
        result = wait(*args, **kwargs)
        pid = reaped(result, args)
        if pid > 0:
            caller = frame_above()  # None as an atexit callback: the program's wait
            _reaped(pid, caller is None or not frame_is_framework(caller))
        return result

    return noting


def _waitid_reaped(result: Any, args: tuple[Any, ...]) -> int:
    """The pid ``os.waitid(idtype, id, options)`` reaped: none with ``WNOWAIT`` (a look only)."""
    if result is None or len(args) < 3 or args[2] & getattr(os, "WNOWAIT", 0):
        return 0
    return int(result.si_pid)


def record_child(pid: int, args: Any, site: Any) -> Record:
    """Record the child *pid*, running *args*, made at *site* without a Popen: open while it is
    there to be reaped (see _is_open), released by whatever reaps it through ``os``."""
    _given_again(pid)
    return _records.new(NO_OBJECT, "subprocess", (pid, _args(args)), site, ("pid", pid))


#: ``(module, function)`` of the standard-library functions that fork a child for their caller
#: and hand it over, pid and all: ``pty.fork()`` calls ``os.forkpty()`` (``os.fork()`` where
#: that fails), and its caller must wait for the child.
_HANDS_OVER = frozenset({("pty", "fork")})

#: Framework packages whose forks and spawns are children the program asked for: Twisted's
#: ``reactor.spawnProcess()`` (``os.posix_spawnp()``, or ``os.fork()``), reaped by its reactor,
#: which under pytest never runs again (treq's httpbin children outlived the run, unreported).
_SPAWN_FOR_THE_PROGRAM = ("twisted.",)


def _programs_child(frame: Any) -> bool:
    """Whether a child forked from *frame* is the caller's to wait for: forked by code outside
    the standard library, or by a function that hands it over (see _HANDS_OVER) to such code,
    or by a framework that spawns it for the program (see _SPAWN_FOR_THE_PROGRAM).

    The standard library's other forks are its own: multiprocessing tracks its children by
    their Popen, ``socketserver.ForkingMixIn`` and ``pty.spawn()`` wait for theirs; so do the
    other frameworks' (pytest's, execnet's).
    """
    while frame is not None:
        if not frame_is_framework(frame):
            return True
        module = frame.f_globals.get("__name__")
        if (module, frame.f_code.co_name) not in _HANDS_OVER and not (
            type(module) is str and module.startswith(_SPAWN_FOR_THE_PROGRAM)
        ):
            return False
        frame = frame.f_back
    return False


def _forked(pid: int, what: str, frame: Any, name: str | None) -> Record | None:
    """Record the program's child *pid* forked from *frame* (in the parent), or give the child
    its *name* (in the child: what it execs or starts carries it, see _lineage)."""
    if not _programs_child(frame):
        if pid == 0 and (started := _lineage.start_name()) is not None:
            _lineage.carry(started)  # a multiprocessing process's, an os.spawn*()'s
        return None
    if pid == 0:
        if name is not None:
            _lineage.carry(name)
        return None
    rec = record_child(pid, what, _records.capture(frame, _records.depth))
    if name is not None:
        _lineage.spawned(name, rec)
    return rec


#: Whether ``os.fork()`` (and ``forkpty()``) may warn of a multi-threaded process (3.12 on): a
#: warning C code issues names the frame that called it, so they are called as the program.
_FORK_WARNS = sys.version_info >= (3, 12)


def _recording_fork(fork: Any) -> Any:
    def recording() -> int:
        name = _lineage.new_name() if _lineage.ENABLED else None
        caller = sys._getframe(1)
        pid: int = call_as(caller, fork, (), {}) if _FORK_WARNS else fork()
        _forked(pid, FORKED, caller, name)
        return pid

    return recording


def _recording_forkpty(forkpty: Any) -> Any:
    def recording() -> tuple[int, int]:
        name = _lineage.new_name() if _lineage.ENABLED else None
        frame = sys._getframe(1)
        pid, fd = call_as(frame, forkpty, (), {}) if _FORK_WARNS else forkpty()
        # pty.fork()'s child and terminal are its caller's
        if _forked(pid, "os.forkpty() child", frame, name) is not None:
            track_fd(fd, "os.forkpty", _records.capture(frame, _records.depth))
        return pid, fd

    return recording


def _recording_spawn(name: str, spawn: Any) -> Any:
    def recording(path: Any, argv: Any, *args: Any, **kwargs: Any) -> int:
        frame = sys._getframe(1)
        if not _programs_child(frame):  # subprocess's are its Popen's
            return spawn(path, argv, *args, **kwargs)  # type: ignore[no-any-return]
        lineage = None
        if _lineage.ENABLED:  # the child's descendants carry its name (see _lineage)
            if args:
                env, lineage = _lineage.marked(args[0])
                args = (env, *args[1:])
            elif "env" in kwargs:
                kwargs["env"], lineage = _lineage.marked(kwargs["env"])
        pid: int = spawn(path, argv, *args, **kwargs)
        rec = record_child(pid, argv, _records.capture(frame, _records.depth))
        if lineage is not None:
            _lineage.spawned(lineage, rec)
        return pid

    return recording


def _recording_spawnvef(spawnvef: Any) -> Any:
    def recording(mode: int, file: Any, args: Any, env: Any, func: Any) -> int:
        # The child's descendants carry its name (see _lineage): what it execs gets the *env*
        # passed, or else its own environment, which the fork gives the name.
        name = _lineage.new_name() if _lineage.ENABLED else None
        if name is not None and env is not None:
            env, _ = _lineage.marked(env, name)
        _lineage.starting(name)
        try:
            result: int = spawnvef(mode, file, args, env, func)
        finally:
            _lineage.starting(None)
        if mode == os.P_NOWAIT:  # with P_WAIT it is the exit status, the child reaped
            rec = record_child(result, args, _records.capture(sys._getframe(1), _records.depth))
            if name is not None:
                _lineage.spawned(name, rec)
        return result

    return recording


def _dropped(popen: Any) -> None:
    """*popen* is being dropped: a leak the garbage collector found if its status was never collected."""
    # Asked first, whatever the state: at_del() takes a record dying in a cycle out of the table,
    # where one left behind (a Popen waited for, dropped in a cycle) was taken by the next Popen
    # given its id and dropped unwaited (one whose __init__ failed), and reported as a leak of the
    # test that had waited for it (CPython's test_subprocess, test_wait).
    rec = _records.at_del(popen)
    if getattr(popen, "returncode", 0) is not None or getattr(popen, "pid", 0) in _waited_by_pid:
        return
    if rec is not None and rec.state == OPEN and rec.kind == "subprocess":
        _records.leak(rec, _records.COLLECTED)


def install_asyncio_transport(patches: Patches, base_subprocess: ModuleType) -> None:
    """Wrap the subprocess transport's ``__del__``: collected unclosed, it drops its Popen unwaited."""
    transport = base_subprocess.BaseSubprocessTransport
    finalize = vars(transport).get("__del__")
    if finalize is None:  # 3.11 to 3.13 have one; never wrap one we did not read
        return

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Before close(): it polls the child, which reaps it or (reaped already by the
        # watcher thread after the loop closed) sets a made-up returncode of 0.
        proc = getattr(self, "_proc", None)
        if proc is not None and not getattr(self, "_closed", True):
            _dropped(proc)
        finalize(self, *args, **kwargs)

    __del__.__doc__ = finalize.__doc__
    patches.set(transport, "__del__", __del__)


def install_asyncio_watchers(patches: Patches, unix_events: ModuleType) -> None:
    """Own asyncio's child watchers: their waiting thread or pidfd is the child's, reported as it.

    The watcher thread's reaping, with the child's loop still open, collects the child: its
    status is queued for that loop, whose next run hands it to the transport, which closes.
    """
    from threading import current_thread  # asyncio imported it

    watchers = [getattr(unix_events, name) for name in _WATCHERS if hasattr(unix_events, name)]
    own(*watchers)
    for watcher in watchers:
        do_waitpid = vars(watcher).get("_do_waitpid")
        if do_waitpid is not None:  # the thread's (the pidfd one's is run by the loop itself)
            handing = _handing_status_to_loop(do_waitpid, current_thread)
            patches.set(watcher, "_do_waitpid", handing)
            own(handing)


def _handing_status_to_loop(do_waitpid: Any, current_thread: Callable[[], Any]) -> Any:
    """The watcher thread's ``_do_waitpid(loop, pid, callback, args)``, noting a child it reaped
    and whose status it queued for *loop*: collected, though the loop has not run since.

    Without this, a child the program never awaited counted as collected only when its loop
    happened to run the status callback before the test's check: a test reading a child's
    output to its end passed or failed on which thread ran first. A loop closed before the
    child ended gets no status (the watcher drops it): still reported, when its transport is
    dropped unclosed, and no check waits for it meanwhile (see _status_dropped).
    """

    def handing(self: Any, loop: Any, expected_pid: int, *args: Any, **kwargs: Any) -> None:
        do_waitpid(self, loop, expected_pid, *args, **kwargs)
        if loop.is_closed():
            _status_dropped[expected_pid] = current_thread()
        else:
            _waited_by_pid.add(expected_pid)

    return handing
