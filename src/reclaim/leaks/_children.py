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
the watcher and its status handed to the Popen: that is collected.
"""

from __future__ import annotations

import os
import sys
from functools import partial
from types import ModuleType
from typing import Any

from reclaim._sites import is_framework

from . import _imports, _records
from ._kinds import Details, Kind, register
from ._owning import own
from ._patch import Patches
from ._records import OPEN, Record

__all__ = ["install", "install_asyncio_transport", "install_asyncio_watchers"]

#: asyncio's child watchers that acquire for a child: a thread (3.11), a pidfd (3.12+).
_WATCHERS = ("ThreadedChildWatcher", "_ThreadedChildWatcher", "PidfdChildWatcher", "_PidfdChildWatcher")


#: Children whose status the program collected itself, by pid (``os.waitpid``, ``os.wait``):
#: their Popen's returncode stays None, yet nothing is left to wait for.
_waited_by_pid: set[int] = set()


def _is_open(obj: Any, rec: Record) -> bool:
    return obj.returncode is None and obj.pid not in _waited_by_pid


def _exited(pid: int) -> bool | None:
    """Whether the child has exited (a zombie), without reaping it; None when unknown."""
    waitid = getattr(os, "waitid", None)
    if waitid is None:
        return None
    try:
        result = waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except (ChildProcessError, OSError):
        return None
    return result is not None


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    # (pid, args) for a Popen; a multiprocessing process adds the verb that collects its status.
    pid, args, *rest = rec.info
    waited = rest[0] if rest else "waited for"
    details: Details = {"pid": pid, "args": args}
    text = f"pid {pid}: {args}"
    if obj is None or obj.returncode is None:  # dropped unwaited, or still unwaited
        exited = _exited(pid)
        details["exited"] = exited
        if exited:
            text += f" (exited but never {waited}: a zombie)"
        elif exited is False:
            text += f" (still running, never {waited})"
        else:  # not our child to ask (a fork server's), or no waitid()
            text += f" (never {waited})"
    return text, details


register(Kind("subprocess", is_open=_is_open, describe=_describe, waitable=True))


def _args(args: Any) -> str:
    if isinstance(args, (list, tuple)):
        return " ".join(os.fsdecode(a) if isinstance(a, (bytes, os.PathLike)) else str(a) for a in args)
    return os.fsdecode(args) if isinstance(args, (bytes, os.PathLike)) else str(args)


def install(patches: Patches, subprocess: ModuleType) -> None:
    """Wrap ``Popen.__init__`` (acquisition) and ``Popen.__del__`` (collected unwaited)."""
    popen = subprocess.Popen
    init = popen.__init__
    finalize = popen.__del__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        _waited_by_pid.discard(self.pid)  # a pid the system gave again
        site = _records.capture(sys._getframe(1), _records.depth)
        rec = _records.new(self, "subprocess", (self.pid, _args(self.args)), site)
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL  # kept for our __del__ if it dies in a reference cycle

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        _dropped(self)
        finalize(self, *args, **kwargs)

    patches.set(popen, "__init__", __init__)
    patches.set(popen, "__del__", __del__)
    for name in ("waitpid", "wait"):
        if hasattr(os, name):
            patches.set(os, name, _noting_waits(getattr(os, name)))
    # asyncio imports subprocess before these two modules, so waiting for them from here is in
    # time, and a program that never imports asyncio pays nothing for it.
    _imports.when_imported("asyncio.base_subprocess", partial(install_asyncio_transport, patches))
    _imports.when_imported("asyncio.unix_events", install_asyncio_watchers)


def _noting_waits(wait: Any) -> Any:
    """``os.waitpid``/``os.wait`` that note the child the program itself reaped.

    Only a call from the program's code counts: asyncio's watcher thread reaps children too,
    so that none is left a zombie, which is no wait of the program's.
    """

    def noting(*args: Any) -> Any:
        result = wait(*args)
        if result[0] > 0 and not is_framework(sys._getframe(1).f_code.co_filename):
            _waited_by_pid.add(result[0])
        return result

    noting.__doc__ = wait.__doc__
    noting.__name__ = wait.__name__
    return noting


def _dropped(popen: Any) -> None:
    """*popen* is being dropped: a leak the garbage collector found if its status was never collected."""
    if getattr(popen, "returncode", 0) is not None or getattr(popen, "pid", 0) in _waited_by_pid:
        return  # checked first: at_del() takes a record dying in a cycle out of the table
    rec = _records.at_del(popen)
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


def install_asyncio_watchers(unix_events: ModuleType) -> None:
    """Own asyncio's child watchers: their waiting thread or pidfd is the child's, reported as it."""
    own(*(getattr(unix_events, name) for name in _WATCHERS if hasattr(unix_events, name)))
