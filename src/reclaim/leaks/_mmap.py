"""``mmap`` objects never closed (Python never warns about them, 3.11-3.13).

``mmap.mmap`` is a C type whose constructor gives no audit event with the
object, so while tracking ``mmap.mmap`` is replaced by a subclass (named
``mmap``) that records the acquisition in ``__init__`` and, in ``__del__``,
notices a map the garbage collector is about to unmap. The cost: a map created
*before* tracking started is not an instance of the subclass, so
``isinstance(old_map, mmap.mmap)`` is False while tracking runs.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from . import _fds, _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import OPEN, Record

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    length, fileno, path = rec.info
    details: Details = {"length": length, "fileno": fileno, "path": path}
    what = f"{path}" if path else "anonymous"
    return f"{what}, {length} bytes", details


def _paths(obj: Any, rec: Record) -> tuple[str, ...]:
    # The map holds a duplicate of the file's descriptor; it is the map's, not untracked.
    path = rec.info[2]
    return (path,) if path else ()


register(Kind("mmap", is_open=_is_open, describe=_describe, paths=_paths))


def install(patches: Patches, mmap: ModuleType) -> None:
    """Swap ``mmap.mmap`` for a recording subclass."""
    base = mmap.mmap

    class TrackedMmap(base):  # type: ignore[valid-type,misc]
        def __init__(self, fileno: int, length: int, *args: Any, **kwargs: Any) -> None:
            path = _fds.describe_fd(fileno) if fileno != -1 else None
            site = _records.capture(sys._getframe(1), _records.depth)
            _records.new(self, "mmap", (len(self), fileno, path), site)

        def __del__(self) -> None:
            rec = _records.live.get(id(self))
            if rec is not None and rec.state == OPEN and rec.kind == "mmap" and not self.closed:
                _records.leak(rec, _records.COLLECTED)

    TrackedMmap.__name__ = TrackedMmap.__qualname__ = "mmap"
    TrackedMmap.__module__ = "mmap"
    patches.set(mmap, "mmap", TrackedMmap)
