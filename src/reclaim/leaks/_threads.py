"""Threads started and still running at the check.

``threading.Thread.start`` is wrapped on every version: the audit events differ
(none on 3.11, ``_thread.start_new_thread`` on 3.12, ``_thread.start_joinable_thread``
on 3.13) and a hook would run for every audit event in the process, while the
wrapper costs nothing outside ``start()``. Threads made with ``_thread``
directly are not seen (the descriptor diff does not help there either).

A thread is a leak while it is alive at the check; checks wait up to their
grace period, with back-off, for threads that are winding down.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

__all__ = ["install"]


def _target(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    if target is not None:
        return str(getattr(target, "__qualname__", None) or repr(target))
    return f"{type(thread).__qualname__}.run"


def _is_open(obj: Any, rec: Record) -> bool:
    return bool(obj.is_alive())


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    name, target, daemon = rec.info
    details: Details = {"name": name, "target": target, "daemon": daemon}
    if obj is not None:
        details["ident"] = obj.ident
        details["alive"] = obj.is_alive()
    return f"{name!r} running {target}()" + (" (daemon)" if daemon else ""), details


register(Kind("thread", is_open=_is_open, describe=_describe, waitable=True))


def install(patches: Patches) -> None:
    """Record every ``Thread.start()``."""
    start = threading.Thread.start

    def start_(self: threading.Thread) -> None:
        start(self)
        info = (self.name, _target(self), self.daemon)
        _records.new(self, "thread", info, _records.capture(sys._getframe(1), _records.depth))

    start_.__doc__ = start.__doc__
    patches.set(threading.Thread, "start", start_)
