"""Processes that outlive the child that started them: a grandchild left running (Linux).

A test starts a server (``flask run --reload``, a shell script, a launcher), stops it with
``terminate()`` and ``wait()``, and passes: the child is gone and reaped. The process that
child started (the reloader's server, the script's background job) still runs, now an
orphan the init process adopted, holding its port for the next test. No wait of the
program's can reach it, and nothing in the parent refers to it.

So each child reclaim records through ``subprocess.Popen`` (asyncio's and gevent's
included), uvloop's ``subprocess_exec``/``_shell`` or ``os.posix_spawn()`` gets one more
environment variable, :data:`VARIABLE`, and so does the program's ``os.fork()`` or
``os.forkpty()`` child, in its own ``os.environ`` (it is a copy; for what it execs or starts),
a ``multiprocessing`` process the ``fork`` or ``spawn`` start method makes, and an
``os.spawn*()`` child, naming that child: ``<this process's pid>.<number>``, after what an
outer tracked process put there (``:``-separated: the pytest run of a test of a pytest plugin
is such a child).
Every process it starts inherits the variable unless it replaces its environment. Once the
child has ended (reaped, or a zombie), a check reads ``/proc``: a process that carries the
child's name, was started after this process, and whose parent is neither this process nor
another carrier of one of its names outlived the child and is reported against it, at the
line that started the child, blamed on the test that did. It stays reported while it runs
(a check's grace period waits for one still ending).

Not reported: a daemon, one that left the session its ancestor ran in (it or its parent
called ``os.setsid()``: ``redis-server --daemonize``, gpg-agent), as ``os.fork()``
daemons are not (see :mod:`._children`). Not seen: a process started with an environment
built from scratch by a descendant (``env -i``), a process a forked child forked in turn
without an exec (``/proc/<pid>/environ`` shows only what a process was exec'd with), and
what a ``forkserver`` process starts (its parent is the fork server, no child of ours).

The costs. The variable: a Popen with ``env=None`` is given a copy of ``os.environ`` with
it instead (with what ``os.putenv()``/``os.unsetenv()`` changed since tracking started,
which ``os.environ`` does not show, and which are wrapped to note it; one with a
``preexec_fn`` keeps ``env=None``, its ``preexec_fn`` putting the variable first, so the
child's own ``os.putenv()`` there still counts), and an ``env`` the program passes is copied
with it added, never changed in place; 15 µs per child with 40 variables, against 600 µs for
``subprocess.run(["true"])``. The look: two small reads per process on the machine, about
1 ms with a hundred, paid by a check only after a child ended since the last one.
"""

from __future__ import annotations

import io
import itertools
import os
import sys
import time
from _thread import get_ident

from . import _records
from ._kinds import Details, Kind, register
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from ._patch import Patches

__all__ = [
    "KIND",
    "VARIABLE",
    "carry",
    "install",
    "look",
    "marked",
    "new_name",
    "putting_before",
    "reset",
    "spawn_environment",
    "spawned",
    "start_name",
    "starting",
]

#: The environment variable that names the children a process's descendants came from.
VARIABLE = "RECLAIM_LINEAGE"
_BYTES_VARIABLE = VARIABLE.encode()
KIND = "orphan-process"
#: Only where ``/proc`` tells a process's parent, session, start time and environment.
ENABLED = sys.platform.startswith("linux") and os.path.isdir("/proc/self")

#: name -> the record of the child it was given to, until nothing carrying it runs.
_spawned: dict[str, Record] = {}
#: Names whose child has ended, and whose descendants a check looked for since.
_ended: set[str] = set()
_numbers = itertools.count(1)


def _read(path: str) -> bytes | None:
    # io.FileIO, not open() or os.open(): a check's own reads are not the program's files.
    try:
        with io.FileIO(path) as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return None


def _stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/<pid>/stat`` after the command: state, ppid, pgrp, session, ...;
    the start time (in clock ticks since boot) is ``[19]``."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return fields if len(fields) > 19 else None


#: This process's start time in clock ticks since boot: no descendant started earlier.
_STARTED: int | None = None


def _started() -> int:
    global _STARTED
    if _STARTED is None:
        fields = _stat("self")
        _STARTED = int(fields[19]) if fields is not None else 0
    return _STARTED


def new_name() -> str:
    """A name for the next child (see :func:`marked` and :func:`carry`)."""
    return f"{os.getpid()}.{next(_numbers)}"


def _after(outer: object, name: str) -> str:
    return f"{outer}:{name}" if isinstance(outer, str) and outer else name


#: What was put in (None: taken out of) this process's environment through ``os.putenv()`` and
#: ``os.unsetenv()`` since tracking started, by name: ``os.environ`` sets it through them too,
#: but ``os.putenv()`` alone changes only what a child inherits. :func:`marked` gives a child
#: with ``env=None`` a copy of ``os.environ`` changed by it, so the child sees what it would
#: have inherited (CPython's test_os.test_putenv_unsetenv).
_put: dict[str, str | None] = {}


def install(patches: Patches) -> None:
    """Note what ``os.putenv()``/``os.unsetenv()`` change (see :data:`_put`)."""
    if not ENABLED:
        return
    _put.clear()
    putenv, unsetenv = os.putenv, os.unsetenv

    def putenv_(name: Any, value: Any, /) -> None:
        putenv(name, value)
        _put[os.fsdecode(name)] = os.fsdecode(value)

    def unsetenv_(name: Any, /) -> None:
        unsetenv(name)
        _put[os.fsdecode(name)] = None

    putenv_.__doc__, unsetenv_.__doc__ = putenv.__doc__, unsetenv.__doc__
    patches.set(os, "putenv", putenv_)
    patches.set(os, "unsetenv", unsetenv_)


def marked(env: Mapping[Any, Any] | None, name: str | None = None) -> tuple[dict[Any, Any], str]:
    """A copy of *env* (``os.environ`` for None, with what :data:`_put` says) naming a new child
    (or *name*'s) in :data:`VARIABLE`, and the name."""
    name = name or new_name()
    copy = dict(os.environ if env is None else env)
    if env is None:
        for key, value in _put.items():
            if value is None:
                copy.pop(key, None)
            else:
                copy[key] = value
    outer = copy.pop(VARIABLE, None)
    if outer is None and _BYTES_VARIABLE in copy:  # an os.environb-style mapping's
        outer = os.fsdecode(copy.pop(_BYTES_VARIABLE))
    copy[VARIABLE] = _after(outer, name)
    return copy, name


#: ``(thread ident, name)`` while a child the standard library forks for the program (a
#: ``multiprocessing`` process, an ``os.spawn*()`` child) starts in that thread (see
#: :func:`starting`): the fork (or spawn) that makes it names the child.
_starting: tuple[int, str] | None = None


def starting(name: str | None) -> None:
    """A child (see :data:`_starting`) is starting in this thread under *name* (None: it started)."""
    global _starting
    _starting = None if name is None else (get_ident(), name)


def start_name() -> str | None:
    """The name of the child (see :data:`_starting`) this thread is starting, if it is starting one."""
    starting = _starting
    return starting[1] if starting is not None and starting[0] == get_ident() else None


def putting_before(preexec_fn: Callable[[], object]) -> tuple[Callable[[], object], str]:
    """A ``preexec_fn`` naming a new child in its own environment (``os.putenv``) before
    running *preexec_fn*, and the name: for a Popen with ``env=None`` that has one, which may
    ``os.putenv()`` what the child is to get (CPython's test_subprocess does). Given a copy of
    ``os.environ`` (see :func:`marked`), the child was exec'd with it and lost that variable."""
    name = new_name()
    value = _after(os.environ.get(VARIABLE), name)

    def naming() -> object:
        os.putenv(VARIABLE, value)
        return preexec_fn()

    return naming, name


def spawn_environment(name: str) -> list[bytes]:
    """The environment, as ``_posixsubprocess.fork_exec()`` takes it, of a child that a spawn
    makes with the program's own environment, naming it *name*."""
    env, _ = marked(None, name)
    return [os.fsencode(key) + b"=" + os.fsencode(value) for key, value in env.items()]


def carry(name: str) -> None:
    """In a child ``os.fork()`` made, named *name* by its parent: what it execs or starts carries
    the name (its own environment, a copy of the parent's, changed; the parent's never is)."""
    os.environ[VARIABLE] = _after(os.environ.get(VARIABLE), name)


def spawned(name: str, rec: Record) -> None:
    """The child *rec* records was started under *name* (see :func:`marked`)."""
    _spawned[name] = rec


def _child_ended(rec: Record) -> bool:
    from . import _children  # imports this module

    if rec.state != OPEN:  # reaped through os (released), or dropped unwaited
        return True
    obj = rec()
    if obj is not None and obj is not NO_OBJECT and obj.returncode is not None:
        return True
    return _children.exited(rec.info[0]) is not False  # a zombie, or reaped already


#: ``PF_KTHREAD`` in ``/proc/<pid>/stat``'s flags: a kernel thread, which has no environment.
_KERNEL_THREAD = 0x00200000


def _environ(entry: str) -> bytes | None:
    """The environment ``/proc/<entry>/environ`` shows (None: not ours to read, or gone).

    Empty while the process is still in ``execve()``: a vfork()ed child lets its parent go on
    (return from ``Popen()``, exit) once it has its new memory, before the kernel has laid its
    environment out there. Such a process is read again, waiting 0.5 ms doubling to 32 ms at
    most; one whose environment is really empty (``env -i``) costs each look that wait.
    """
    delay = 0.0005
    while True:
        environ = _read(f"/proc/{entry}/environ")
        if environ != b"" or delay > 0.032:
            return environ
        time.sleep(delay)
        delay *= 2


def _carriers(names: set[str]) -> tuple[dict[int, tuple[int, int, int, str]], bool]:
    """pid -> (ppid, session, start, name) of every running process carrying one of *names*, and
    whether a process started since this one showed no environment at all (see _environ)."""
    prefix = f"{os.getpid()}.".encode()
    since = _started()
    found: dict[int, tuple[int, int, int, str]] = {}
    unread = False
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(entry)
        if fields is None or fields[0] == b"Z" or int(fields[19]) < since or int(fields[6]) & _KERNEL_THREAD:
            continue
        environ = _environ(entry)
        if not environ:
            unread = unread or environ == b""
            continue
        at = environ.find(b"\0" + VARIABLE.encode() + b"=")
        if at < 0 and not environ.startswith(VARIABLE.encode() + b"="):
            continue
        start = at + 1 if at >= 0 else 0
        end = environ.find(b"\0", start)
        value = environ[start + len(VARIABLE) + 1 : end if end >= 0 else len(environ)]
        for part in value.split(b":"):
            if part.startswith(prefix) and (name := part.decode("ascii", "replace")) in names:
                found[int(entry)] = (int(fields[1]), int(fields[3]), int(fields[19]), name)
                break
    return found, unread


def look() -> None:
    """Record what outlived a child that ended since the last look (a check calls this first)."""
    if not _spawned:
        return
    ended = [name for name, rec in _spawned.items() if name not in _ended and _child_ended(rec)]
    if not ended:
        return
    _ended.update(ended)
    try:
        carriers, unread = _carriers(set(_spawned))
    except OSError:  # no /proc to read after all
        return
    from . import _children  # imports this module

    me = os.getpid()
    for pid, (ppid, session, start, name) in carriers.items():
        if ppid == me or ppid in carriers or name not in _ended:
            continue  # its parent runs (and is watched), or the child that started it does
        child = _spawned[name]
        if session not in (_children.SESSION, child.info[0]):
            continue  # a daemon: it left its ancestors' session
        key = (KIND, pid, start)
        if key in _records.live:
            continue
        command = (_read(f"/proc/{pid}/cmdline") or b"").rstrip(b"\0").replace(b"\0", b" ")
        info = (pid, command.decode(errors="replace"), child.info[0], child.info[1], start)
        rec = _records.new(NO_OBJECT, KIND, info, child.site, key, label=child.context)
        rec.seq, rec.time, rec.thread = child.seq, child.time, child.thread
    running = {name for *_, name in carriers.values()}
    for name in [name for name in _ended if name not in running]:
        _ended.discard(name)
        if not unread:  # else a process not yet read may carry it: the next check looks again
            del _spawned[name]


def reset() -> None:
    """Forget every child (the last tracker stopped)."""
    _spawned.clear()
    _ended.clear()


if hasattr(os, "register_at_fork"):  # a forked child's children are its own, named by its pid
    os.register_at_fork(after_in_child=reset)


def _is_open(obj: Any, rec: Record) -> bool:
    from . import _children  # imports this module

    pid, _, parent, _, start = rec.info
    fields = _stat(pid)
    # Running, and no daemon since: one whose parent exits at once may call setsid() only after
    # a check found it (ssh-agent), and so leave the session afterwards.
    return (
        fields is not None
        and fields[0] != b"Z"
        and int(fields[19]) == start
        and int(fields[3]) in (_children.SESSION, parent)
    )


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    pid, command, parent, parent_args, _ = rec.info
    details: Details = {"pid": pid, "args": command, "parent_pid": parent, "parent_args": parent_args}
    from ._children import one_line  # imports this module

    outlived = f"pid {parent}: {one_line(parent_args)}"
    text = f"pid {pid}: {one_line(command) or '?'} (still running; it outlived {outlived})"
    return text, details


register(Kind(KIND, is_open=_is_open, describe=_describe, waitable=True))
