"""What the tracker knows about each kind of resource: how to tell it is still open, and
how to describe it.

Each instrumentation module registers one :class:`Kind` per resource kind it
tracks. Kinds reported through :mod:`reclaim._track` by reclaim's own owners
(``scope``, ``resource``, pool leases) get :func:`owned_kind` automatically.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from . import _records
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    Details = dict[str, Any]
else:  # the modules that import it name it in annotations only (strings at run time)
    Details = dict

__all__ = ["CLIENT_KINDS", "KINDS", "Kind", "kind_of", "owned_kind", "register"]

#: The kinds of the library clients :mod:`._holders` tracks: a client not closed, holding the
#: connections it keeps.
CLIENT_KINDS = ("aiohttp", "httpx", "httpcore", "requests", "urllib3", "sqlalchemy", "redis", "aiomysql")


def _no_fds(obj: Any, rec: Record) -> Iterable[int]:
    return ()


def _no_paths(obj: Any, rec: Record) -> Iterable[str]:
    return ()


def _always_open(obj: Any, rec: Record) -> bool:
    # The record is still in the live table, so nobody released it.
    return True


def _info_description(obj: Any, rec: Record) -> tuple[str, Details]:
    return str(rec.info), {}


class Kind:
    """How one kind of resource is checked and described.

    Attributes:
        name: the kind as reports show it (``"file"``, ``"thread"`` ...).
        is_open: ``(obj, record) -> bool`` for a record still in the live table
            whose object is alive; ``False`` means it was handled right after all.
        describe: ``(obj or None, record) -> (text, details)``; *obj* is None
            once the object died (describe from ``record.info``).
        fds: descriptors the live resource holds, so the descriptor-table diff
            does not report them again as untracked.
        paths: files the resource holds open from C code (sqlite3, mmap), for
            the same purpose.
        later_paths: files it may have opened from C code since it was made (the
            databases a sqlite3 connection ``ATTACH``ed): asked only about a descriptor
            nothing else explains, as asking may cost a query on the object.
        waitable: it may end by itself (thread, child, task): checks wait for
            it during their grace period. A function instead of True says, when
            asked with the leak's details, whether waiting can still change anything.
        death_leak: the object dying while its record is open means the
            garbage collector, not the program, released it. A function
            instead of True says, given the record of an object that just
            died, whether that death is one; or None, when it died in a
            reference cycle whose collection runs its finalizer next: that
            finalizer marks it a leak (:func:`._records.judge_at_del`), or the
            collection's end releases it (:func:`._records.settle`).
        holder: a library object that owns other tracked resources (an HTTP
            client's sockets): never reported on its own, only with the leaks it
            holds, listed under it (see :mod:`._holders`).

    A plain class, not a dataclass: the tracker registers one per kind as it is imported,
    and dataclasses would import inspect before ``reclaim run`` starts the program.
    """

    __slots__ = (
        "death_leak",
        "describe",
        "fds",
        "holder",
        "is_open",
        "later_paths",
        "name",
        "paths",
        "waitable",
    )

    def __init__(
        self,
        name: str,
        is_open: Callable[[Any, Record], bool] = _always_open,
        describe: Callable[[Any, Record], tuple[str, Details]] = _info_description,
        fds: Callable[[Any, Record], Iterable[int]] = _no_fds,
        paths: Callable[[Any, Record], Iterable[str]] = _no_paths,
        waitable: bool | Callable[[Mapping[str, Any]], bool] = False,
        death_leak: bool | Callable[[Record], bool | None] = False,
        holder: bool = False,
        later_paths: Callable[[Any, Record], Iterable[str]] = _no_paths,
    ) -> None:
        self.name = name
        self.is_open = is_open
        self.describe = describe
        self.fds = fds
        self.paths = paths
        self.later_paths = later_paths
        self.waitable = waitable
        self.death_leak = death_leak
        self.holder = holder

    def __repr__(self) -> str:
        return f"<Kind {self.name!r}>"

    def worth_waiting_for(self, details: Mapping[str, Any]) -> bool:
        """Whether a check's grace period should wait for an open resource of this kind, found
        with *details*."""
        waitable = self.waitable
        return waitable(details) if callable(waitable) else waitable


KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Add *kind* to the table (replacing one of the same name)."""
    KINDS[kind.name] = kind
    if kind.death_leak:
        _records.death_leaks[kind.name] = kind.death_leak if callable(kind.death_leak) else None
    else:
        _records.death_leaks.pop(kind.name, None)
    return kind


def owned_kind(name: str) -> Kind:
    """The kind of a resource that reports its own release through :mod:`reclaim._track`."""
    return Kind(name, death_leak=True)


def kind_of(name: str) -> Kind:
    """The registered kind called *name*, or an owned kind made for it."""
    kind = KINDS.get(name)
    if kind is None:
        kind = register(owned_kind(name))
    return kind
