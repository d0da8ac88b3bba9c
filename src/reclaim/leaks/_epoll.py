"""Where each ``select.epoll()`` instance was made, for the report of one never closed.

A program (or a library: kombu's hub, Twisted's epoll reactor) that makes an epoll instance
itself and never closes it leaks a descriptor. Python never warns about it, and no hook saw it
made: it is found as an ``untracked-fd``, and had no line to show (kombu's pollers were 17 bare
entries in Celery's tests). ``select.epoll`` is a C type that cannot be subclassed and whose
instances take no weak reference, so while tracking ``select.epoll`` is a small class whose
instances hold the real one and pass every call on to it; each notes, by its descriptor's
number, the site that made it (:data:`MADE`). An untracked epoll descriptor found at that
number, while the instance made there lives and is open, is reported at that site (see
``_tracker._untracked``). What owns or keeps such a descriptor (an integration's
``Kind.fds``, C code's kept ones) is unchanged by this.

``isinstance(x, select.epoll)`` holds for either kind of instance while tracking runs, as
does ``isinstance(x, <the C type>)`` (a library kept ``select.epoll`` before tracking started);
``type(x)`` is the stand-in, and the stand-in can be subclassed, as the C type cannot. An
epoll a ``selectors.EpollSelector`` makes is the selector's, reported as the selector: not
noted, and the C type's own even when ``selectors`` was first imported while tracking (an
asyncio loop polls it on every turn).
"""

from __future__ import annotations

import sys
import time
import weakref
from types import ModuleType

from . import _records
from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = ["MADE", "install", "made_at"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_ref = weakref.ref

#: descriptor number -> (the instance made with it, weakly; site, thread name, time, label).
MADE: dict[int, tuple[weakref.ref[Any], Any, str, float, str | None]] = {}


def made_at(fd: int) -> tuple[Any, str, float, str | None] | None:
    """``(site, thread name, time, label)`` of the epoll instance at *fd*, if one made while
    tracking is still open there: the label (the test, or pytest's collection) it was made
    under, not the one current when a check first finds it."""
    noted = MADE.get(fd)
    if noted is None:
        return None
    made = noted[0]()
    if made is None or made.closed or made.fileno() != fd:
        del MADE[fd]
        return None
    return noted[1:]


def install(patches: Patches, select: ModuleType) -> None:
    """Replace ``select.epoll`` (where the platform has it) with a recording stand-in."""
    base: Any = getattr(select, "epoll", None)
    if base is None:
        return

    class _Epoll(type):
        def __instancecheck__(cls, obj: object) -> bool:
            return type.__instancecheck__(cls, obj) or isinstance(obj, base)

        def __subclasscheck__(cls, sub: type) -> bool:
            return type.__subclasscheck__(cls, sub) or issubclass(sub, base)

    class epoll(metaclass=_Epoll):  # the name it stands in for
        __slots__ = ("__weakref__", "_epoll")
        _epoll: Any  # the C type's instance every call is passed on to
        __doc__ = base.__doc__
        __wrapped__ = base  # the C type, as a replaced function's __wrapped__ is the original

        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            caller = sys._getframe(1)
            if caller.f_globals.get("__name__") == "selectors":
                # An EpollSelector's (selectors imported while tracking takes the stand-in as its
                # class's epoll): the C type's own, the selector's part, with no Python method
                # between an event loop and each of its polls.
                return base(*args, **kwargs)
            self = object.__new__(cls)
            self._epoll = base(*args, **kwargs)
            site = _records.capture(caller, _records.depth)
            thread = _records.thread_name()  # label_here() reads what it caches
            MADE[self._epoll.fileno()] = (_ref(self), site, thread, _time(), _records.label_here())
            return self

        @classmethod
        def fromfd(cls, fd: int) -> Any:
            self = object.__new__(cls)
            self._epoll = base.fromfd(fd)
            return self

        @property  # type: ignore[misc]
        def __class__(self) -> Any:
            # What isinstance() asks after the type: the C type, so a check against the one a
            # library kept before tracking started (``EPOLL = select.epoll``) still holds.
            return base

        @property
        def closed(self) -> bool:
            return bool(self._epoll.closed)

        def close(self) -> None:
            self._epoll.close()

        def fileno(self) -> int:
            return int(self._epoll.fileno())

        def register(self, *args: Any, **kwargs: Any) -> None:
            self._epoll.register(*args, **kwargs)

        def modify(self, *args: Any, **kwargs: Any) -> None:
            self._epoll.modify(*args, **kwargs)

        def unregister(self, *args: Any, **kwargs: Any) -> None:
            self._epoll.unregister(*args, **kwargs)

        def poll(self, *args: Any, **kwargs: Any) -> list[tuple[int, int]]:
            return self._epoll.poll(*args, **kwargs)  # type: ignore[no-any-return]

        def __enter__(self) -> Any:
            self._epoll.__enter__()  # raises as the C type's does on a closed one
            return self

        def __exit__(self, *exc_info: object) -> None:
            self._epoll.__exit__(*exc_info)

    epoll.__qualname__ = "epoll"
    epoll.__module__ = "select"
    patches.set(select, "epoll", epoll)
