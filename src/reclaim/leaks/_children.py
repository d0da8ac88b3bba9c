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
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import OPEN, Record

__all__ = ["install"]


def _is_open(obj: Any, rec: Record) -> bool:
    return obj.returncode is None


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
        site = _records.capture(sys._getframe(1), _records.depth)
        rec = _records.new(self, "subprocess", (self.pid, _args(self.args)), site)
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL  # kept for our __del__ if it dies in a reference cycle

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _records.at_del(self)
        unwaited = getattr(self, "returncode", 0) is None
        if rec is not None and rec.state == OPEN and rec.kind == "subprocess" and unwaited:
            _records.leak(rec, _records.COLLECTED)
        finalize(self, *args, **kwargs)

    patches.set(popen, "__init__", __init__)
    patches.set(popen, "__del__", __del__)
