"""pexpect and ptyprocess: a ``pexpect.spawn`` (or a ``ptyprocess.PtyProcess``) never closed is one
leak at the program's line, holding its terminal and its child.

A ``PtyProcess`` forks its child on a pseudo-terminal (``pty.fork()``) and keeps the terminal's
master end as a file (``io.open(fd)``); a ``pexpect.spawn`` makes one and keeps it. Never closed,
it was reported as a file on ``/dev/ptmx`` "acquired at ptyprocess/ptyprocess.py:160", and its
child, if still there, as an ``os.forkpty()`` child beside it: neither named the spawn nor its
command, and a test that dropped one was told of a file it never opened.

So each is recorded (kind ``pexpect``, or ``ptyprocess`` for a ``PtyProcess`` of its own) at the
program's line that made it, past pexpect's and ptyprocess's frames, open until ``close()``; the
``PtyProcess`` a spawn makes (a ``pxssh`` in ``login()``) is part of that spawn, its record released. One
``PtyProcess.spawn()`` made and then raised (its child could not exec, or ``preexec_fn`` raised)
is ptyprocess's to close and it drops it unclosed: its entry says so, as the program never had
it to close. A check lists its terminal's file and its child under it (see :func:`fold`),
matched by descriptor and pid: the ``BufferedRWPair`` it keeps the terminal in shows the
collector neither of its files, so no search through references finds them. Dropped unclosed, it
is closed by ptyprocess's ``__del__`` (which closes the terminal, and kills and reaps the
child): reported as closed by the garbage collector, its terminal under it. ``wait()`` reaps the
child but leaves the terminal open: only ``close()`` (or a with-block, for a spawn) releases
both.

A ``pexpect.popen_spawn.PopenSpawn`` (kind ``pexpect`` too) runs its child under a
``subprocess.Popen`` with pipes, and a thread that moves the child's output to a queue. It has
no ``close()`` (a with-block fails in ``__exit__``): never finished, it was a child, two pipe
files and a thread, none naming it. It is one entry now at the program's line, holding those,
until it is finished: its child's status collected (``wait()``) and both pipes closed
(``sendeof()`` closes stdin; nothing of pexpect's closes stdout: ``proc.stdout.close()``, once
the output was read to EOF, as the thread reads it until then). Python itself warns of a stdout
pipe left to the collector. The thread ends by itself at EOF: one past it (it queued the EOF) is
no part of a finished spawn, nor waited for; one still reading after its spawn finished (a
grandchild keeps the pipe's other end) stays an entry of its own. Dropped unfinished, it is
reported as collected, what its collection closed under it (see :func:`fold`); its ``__del__``
(one of reclaim's: it has none) decides.

An ``fdspawn`` wraps a descriptor the program opened and owns: not tracked, what it wraps is
reported as the program opened it (its ``close()`` closes that descriptor only, not the file or
socket object made over it).

Only the making and ``__del__`` of these classes, ``PtyProcess.spawn`` and
``spawn._spawnpty`` are wrapped; a program that imports neither library loads none of this.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import ModuleType

from . import _records
from ._children import one_line
from ._fds import fileno_of
from ._files import PipeEnd
from ._holders import fold_into, public_name
from ._kinds import Details, Kind, register
from ._owning import caller, outside
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = ["KINDS", "MODULES", "fold", "install_popen", "install_ptyprocess", "install_spawn", "parts"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: A spawn's kind, and a ``PtyProcess``'s made on its own (each report names the class under its
#: package: ``pexpect.spawn``, ``ptyprocess.PtyProcess``).
KINDS = ("pexpect", "ptyprocess")

#: kind -> what one still open was not given (``wait()`` leaves the terminal open; a
#: ``PtyProcess`` is no context manager).
FIX = {"pexpect": "close(), or a with-block", "ptyprocess": "close()"}

# A record's info: (class's public name, pid, command line or None, terminal's descriptor), and
# the name of the error PtyProcess.spawn() raised after making it, if it did. A PopenSpawn's has no
# terminal (None), then what it still lacked as it was collected (a tuple, see _unfinished()).
_INFO = ("class", "pid", "command", "fd")

#: What a PopenSpawn lacks to be finished, when it has none of it: it has no ``close()``.
_NO_CLOSE = "a PopenSpawn has no close()"

#: The attribute of a PopenSpawn's reader thread that refers (weakly) to its spawn.
_READER_OF = "_reclaim_reader_of"


def _command(proc: Any) -> str | None:
    """The command line *proc* runs, None while unknown (a ``PtyProcess`` is given its ``argv``
    only once it is made; a ``PopenSpawn``'s is its Popen's)."""
    if hasattr(proc, "ptyproc"):
        args = getattr(proc, "args", None)
    elif hasattr(proc, "proc"):  # a PopenSpawn: its Popen's
        args = getattr(proc.proc, "args", None)
    else:
        args = getattr(proc, "argv", None)
    if not isinstance(args, (list, tuple)) or not args:
        return None
    return " ".join(arg.decode(errors="replace") if isinstance(arg, bytes) else str(arg) for arg in args)


def _info(proc: Any) -> tuple[str, int | None, str | None, int | None]:
    pid = getattr(proc, "pid", None)
    fd = getattr(getattr(proc, "ptyproc", proc), "fd", None)
    return (
        public_name(type(proc)),
        pid if type(pid) is int else None,
        _command(proc),
        fd if type(fd) is int else None,
    )


def _unfinished(spawn: Any) -> tuple[str, ...]:
    """The calls a PopenSpawn lacks to be finished: ``wait()`` for its child, ``sendeof()`` and
    ``proc.stdout.close()`` for its pipes (none once it is)."""
    proc = spawn.proc
    left: tuple[str, ...] = () if proc.returncode is not None else ("wait()",)
    if proc.stdin is not None and not proc.stdin.closed:
        left += ("sendeof()",)
    if proc.stdout is not None and not proc.stdout.closed:
        left += ("proc.stdout.close()",)
    return left


def _is_popen(rec: Record) -> bool:
    return len(rec.info) > len(_INFO) and type(rec.info[len(_INFO)]) is tuple


def _is_open(obj: Any, rec: Record) -> bool:
    try:
        return bool(_unfinished(obj)) if _is_popen(rec) else not obj.closed
    except Exception:  # a half-built one: it opened nothing
        return False


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, pid, command, fd, *raised = (*_info(obj), *rec.info[4:]) if obj is not None else rec.info
    details: Details = {"class": cls, "pid": pid, "command": command, "fd": fd}
    text = cls if pid is None else f"{cls} pid {pid}"
    if command is not None:
        text += f": {one_line(command)}"
    if _is_popen(rec):
        left = _unfinished(obj) if obj is not None else raised[0]
        details["unfinished"] = list(left)
        return f"{text} not finished ({', '.join(left)}: {_NO_CLOSE})", details
    if raised:
        # The program never had it to close: a leak of ptyprocess's own (seen in 0.7.0).
        details["spawn_raised"] = raised[0]
        return f"{text}: PtyProcess.spawn() raised {raised[0]} and dropped it unclosed", details
    return f"{text} not closed ({FIX[rec.kind]})", details


for _kind in KINDS:
    register(Kind(_kind, is_open=_is_open, describe=_describe))

#: The record of the ``PtyProcess`` that ``PtyProcess.spawn()`` made last in this thread (``made``).
_spawning = threading.local()


def _open_with_command(spawn: Any, rec: Record) -> tuple[Any, ...] | None:
    """A spawn's info as it dies still open (its command, learnt after it was made), else None."""
    return (*_info(spawn), *rec.info[4:]) if _is_open(spawn, rec) else None


def _unfinished_with_command(spawn: Any, rec: Record) -> tuple[Any, ...] | None:
    """A ``PopenSpawn``'s info as it dies with what it lacked, else None (it was finished)."""
    left = _unfinished(spawn)
    return (*_info(spawn), left) if left else None


def _track(patches: Patches, cls: type, package: str) -> None:
    """Record each *cls* made (and its subclasses', ``PtyProcessUnicode``, ``pxssh``) at the
    program's line past *package*'s frames, its ``__del__`` deciding whether its death leaked."""
    init: Callable[..., None] = vars(cls)["__init__"]
    finalize: Callable[..., None] | None = vars(cls).get("__del__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        started = _time()
        init(self, *args, **kwargs)
        maker = outside(self, sys._getframe(1))
        if maker is not None:  # past ptyprocess's spawn(), and pexpect's, which called it
            maker = caller(caller(maker, package), "pexpect")
        rec = _records.new(self, package, _info(self), _records.capture(maker, _records.depth))
        rec.time = started  # acquired as its making began: its terminal and child are after it
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL
        inner = getattr(self, "ptyproc", None)
        if inner is not None:
            _part_of_spawn(inner)  # a subclass's own _spawnpty() (see _making_part)
        elif package == "ptyprocess":
            _spawning.made = rec

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:  # before its terminal is closed for it
            _records.judge_at_del(self, package, _open_with_command)
        finally:  # its own finalizer runs whatever happened to our bookkeeping
            if finalize is not None:
                finalize(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    patches.set(cls, "__init__", __init__)
    if finalize is not None:
        __del__.__doc__ = finalize.__doc__
    patches.set(cls, "__del__", __del__)


def install_ptyprocess(patches: Patches, module: ModuleType) -> None:
    """Record each ``PtyProcess`` (and ``PtyProcessUnicode``) made outside a ``pexpect.spawn``."""
    cls = getattr(module, "PtyProcess", None)
    if not (isinstance(cls, type) and "__init__" in vars(cls)):
        return
    _track(patches, cls, "ptyprocess")
    spawn = vars(cls).get("spawn")
    if isinstance(spawn, classmethod):
        patches.set(cls, "spawn", _noting_raise(spawn.__func__))


def _noting_raise(spawn: Callable[..., Any]) -> classmethod[Any, Any, Any]:
    """``PtyProcess.spawn``, noting on the record of the instance it made that it raised after
    making it (its child failed to exec, or ``preexec_fn`` raised): ptyprocess drops it unclosed,
    and the program, never handed it, cannot close it."""

    def spawn_(cls: Any, *args: Any, **kwargs: Any) -> Any:
        _spawning.made = None
        started = _time()
        try:
            made = spawn(cls, *args, **kwargs)
            rec = getattr(_spawning, "made", None)
            if rec is not None and rec() is made:
                # Acquired as spawn() began: it forks the child, and opens the terminal, before it
                # makes the instance, and the child was an entry of its own beside it.
                rec.time = min(rec.time, started)
            return made
        except BaseException as exc:
            rec = getattr(_spawning, "made", None)
            if rec is not None and rec.state == OPEN and len(rec.info) == len(_INFO):
                rec.info = (*rec.info, type(exc).__name__)
            raise
        finally:
            _spawning.made = None

    spawn_.__doc__ = spawn.__doc__
    return classmethod(spawn_)


def install_spawn(patches: Patches, module: ModuleType) -> None:
    """Record each ``pexpect.spawn`` (and ``pxssh``): the ``PtyProcess`` it makes is part of it
    (one it made before it raised is not: recorded on its own)."""
    cls = getattr(module, "spawn", None)
    if not (isinstance(cls, type) and "__init__" in vars(cls)):
        return
    _track(patches, cls, "pexpect")
    spawnpty = vars(cls).get("_spawnpty")
    if spawnpty is not None:
        patches.set(cls, "_spawnpty", _making_part(spawnpty))


def _part_of_spawn(proc: object) -> None:
    """*proc*, a ``PtyProcess`` a spawn made, is part of that spawn: its record goes."""
    part = _records.live.get(id(proc))
    if part is not None and part() is proc:
        _records.release(part.key)


def _making_part(spawnpty: Callable[..., Any]) -> Callable[..., Any]:
    """``spawn._spawnpty``: the ``PtyProcess`` it makes is the spawn's, also when a ``pxssh`` makes
    it in ``login()``, long after the spawn was made (with no command)."""

    def _spawnpty(self: Any, *args: Any, **kwargs: Any) -> Any:
        proc = spawnpty(self, *args, **kwargs)
        _part_of_spawn(proc)
        return proc

    _spawnpty.__doc__ = spawnpty.__doc__
    return _spawnpty


def install_popen(patches: Patches, module: ModuleType) -> None:
    """Record each ``PopenSpawn`` at the program's line, open until it is finished (see the
    module's docstring); its Popen, pipes and reader thread are listed under it (see :func:`fold`)."""
    cls = getattr(module, "PopenSpawn", None)
    if not (isinstance(cls, type) and "__init__" in vars(cls)):
        return
    init: Callable[..., None] = vars(cls)["__init__"]
    finalize: Callable[..., None] | None = vars(cls).get("__del__")  # none in 4.9: never wrap one unread

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        started = _time()
        init(self, *args, **kwargs)
        maker = outside(self, sys._getframe(1))
        if maker is not None:
            maker = caller(maker, "pexpect")
        info = (*_info(self), ())
        rec = _records.new(self, "pexpect", info, _records.capture(maker, _records.depth))
        rec.time = started  # acquired as its making began: its child, pipes and thread are after it
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL
        reader = getattr(self, "_read_thread", None)
        with contextlib.suppress(AttributeError, TypeError):  # no such thread in this pexpect
            setattr(reader, _READER_OF, weakref.ref(self))

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:  # before its pipes are closed for it
            _records.judge_at_del(self, "pexpect", _unfinished_with_command)
        finally:
            if finalize is not None:
                finalize(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    patches.set(cls, "__init__", __init__)
    patches.set(cls, "__del__", __del__)


def _past_eof(reader: Any) -> bool:
    """Whether *reader*, a PopenSpawn's reader thread, read its pipe to EOF (it queued that last:
    it is ending), or its spawn is gone (the thread kept it alive until its work returned)."""
    spawn = getattr(reader, _READER_OF)()
    if spawn is None:
        return True
    queued = getattr(getattr(spawn, "_read_queue", None), "queue", None)
    return bool(getattr(spawn, "_read_reached_eof", False) or (queued and queued[-1] is None))


def _file_fd(rec: Record, obj: Any) -> int | None:
    """The descriptor of the tracked file *rec* (*obj*: its raw layer, or None once collected)."""
    if obj is not None:
        return fileno_of(obj)
    name = rec.info[0] if isinstance(rec.info, tuple) and rec.info else None
    fd = getattr(name, "fd", name)  # a Descriptor (see _files), or the number it was opened from
    return fd if type(fd) is int else None


def parts(proc: Any) -> tuple[int | None, list[Record]]:
    """What a spawn or pty process *proc* holds that is tracked on its own: the descriptor of its
    terminal (a file opened on it is its), and the record of its child (by pid). A check lists
    them under it (see :func:`fold`); handed to a holder (the traceback of its test's failure),
    they go with it."""
    _, pid, _, fd = _info(proc)
    child = _records.live.get(("pid", pid)) if pid is not None else None
    return fd, ([child] if child is not None else [])


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take the terminal files and children of the spawns and pty processes among *found* out of
    it, into ``out[id(their record)]``. A descriptor or a pid is reused once freed, so each goes
    to the newest record of its descriptor or pid made before it was acquired."""
    _drop_ended_readers(found)
    procs = [(rec, obj) for rec, obj, _ in found if rec.kind in KINDS]
    if not procs:
        return
    by_fd: dict[int, list[Record]] = {}
    by_pid: dict[int, list[Record]] = {}
    by_popen_pid: dict[int, list[Record]] = {}  # a PopenSpawn's: its Popen and its pipes
    readers: dict[int, Record] = {}  # id(reader thread) -> its PopenSpawn's record
    for rec, obj in procs:
        _, pid, _, fd = _info(obj) if obj is not None else rec.info[:4]
        if fd is not None:
            by_fd.setdefault(fd, []).append(rec)
        if pid is not None:
            (by_popen_pid if _is_popen(rec) else by_pid).setdefault(pid, []).append(rec)
        reader = getattr(obj, "_read_thread", None) if _is_popen(rec) else None
        if reader is not None:
            readers[id(reader)] = rec

    def owner(candidates: list[Record] | None, part: Record) -> Record | None:
        best = None
        for rec in candidates or ():
            if rec.time <= part.time and (best is None or rec.time > best.time):
                best = rec
        return best

    def owner_of(item: Found) -> Record | None:
        part, obj, _ = item
        if part.kind == "file":
            name = part.info[0] if isinstance(part.info, tuple) and part.info else None
            if type(name) is PipeEnd:
                return owner(by_popen_pid.get(name.pid), part)
            fd = _file_fd(part, obj)
            return owner(by_fd.get(fd) if fd is not None else None, part)
        if part.kind == "subprocess" and type(part.key) is tuple and part.key[0] == "pid":
            return owner(by_pid.get(part.key[1]), part)
        if part.kind == "subprocess" and isinstance(part.info, tuple) and part.info:
            return owner(by_popen_pid.get(part.info[0]), part)
        if part.kind == "thread" and obj is not None:
            return readers.get(id(obj))
        return None

    fold_into(found, out, owner_of)


def _drop_ended_readers(found: list[Found]) -> None:
    """Take out of *found* the reader threads of PopenSpawns not among it (finished, or gone)
    that read their pipe to EOF: ending by themselves, nothing of the program's, not waited for."""
    ended = [
        item
        for item in found
        if item[0].kind == "thread" and item[1] is not None and hasattr(item[1], _READER_OF)
    ]
    if not ended:
        return
    spawns = {id(obj) for rec, obj, _ in found if rec.kind == "pexpect" and obj is not None}
    gone = {
        id(item[0])
        for item in ended
        if id(getattr(item[1], _READER_OF)()) not in spawns and _past_eof(item[1])
    }
    if gone:
        found[:] = [item for item in found if id(item[0]) not in gone]


#: module -> what tracks its part of pexpect, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "ptyprocess.ptyprocess": install_ptyprocess,
    "pexpect.pty_spawn": install_spawn,
    "pexpect.popen_spawn": install_popen,
}
