"""``dbm`` databases never closed (and so ``shelve``'s): ``dbm.dumb``'s, and ``dbm.sqlite3``'s (3.13).

A ``dbm.dumb`` database holds no descriptor between calls, so one never closed was never
reported, though the index changes it keeps in memory are written only by ``close()`` or
``sync()`` (by its ``__del__``, when the collector gets to it). A ``dbm.sqlite3`` database is a
sqlite3 connection made in dbm's code: it was reported as a ``sqlite3`` entry named by a
``file:`` URI. Each is one ``dbm`` entry now, at the program's line that opened it
(``dbm.open()``, ``shelve.open()``), naming its file and module; the connection is the
database's (its ``__init__`` is owned). A shelf dropped unclosed closes its database from its
``__del__``, and a database dropped unclosed is closed by its own or by the collector: both are
reported as closed by the garbage collector.

Only ``__init__`` and ``close`` of these two classes are wrapped. ``dbm.gnu`` and ``dbm.ndbm``
objects are C types, made by C code with no hook here: they are not tracked (neither was built
on the machine this was written on, so nothing about them could be tried).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from . import _records
from ._kinds import Details, Kind, register
from ._owning import outside, own
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The attribute each module's database sets to None as it closes.
_OPEN_WHILE = {"dbm.dumb": "_index", "dbm.sqlite3": "_cx"}


def _is_open(obj: Any, rec: Record) -> bool:
    return getattr(obj, _OPEN_WHILE[rec.info[1]], None) is not None


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    path, module = rec.info
    details: Details = {"path": path, "module": module}
    return f"{path} ({module} database)", details


register(Kind("dbm", is_open=_is_open, describe=_describe, death_leak=True))


def install(patches: Patches, module: ModuleType) -> None:
    """Record each ``_Database`` *module* (``dbm.dumb``, ``dbm.sqlite3``) opens; own what it opens."""
    cls = getattr(module, "_Database", None)
    if not isinstance(cls, type) or module.__name__ not in _OPEN_WHILE:
        return
    init = vars(cls).get("__init__")
    close = vars(cls).get("close")
    if init is None or close is None:  # laid out otherwise than this was written for
        return
    own(init)  # dbm.sqlite3's connection: the database's, not a second entry
    name = module.__name__

    def __init__(self: Any, path: Any, *args: Any, **kwargs: Any) -> None:
        init(self, path, *args, **kwargs)
        site = _records.capture(outside(self, sys._getframe(1)), _records.depth)
        _records.new(self, "dbm", (os.fsdecode(path), name), site)

    def close_(self: Any) -> None:
        # A shelf's __del__ closing it: its owner was dropped unclosed (see _records.closing).
        _records.closing(self, sys._getframe(1))
        close(self)

    __init__.__doc__ = init.__doc__
    close_.__doc__ = close.__doc__
    patches.set(cls, "__init__", __init__)
    patches.set(cls, "close", close_)
