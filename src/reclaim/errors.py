"""The errors reclaim raises.

Every public error subclasses :class:`ReclaimError`, and also the builtin
exception whose meaning fits, so existing ``except`` clauses keep working: a
pool that times out raises something that is both a ``ReclaimError`` and a
``TimeoutError``.

"Closed" errors mean *your code* closed the object; "Broken" errors mean
something outside failed (a server went away, a child died).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see __init__)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Self

    from .leaks import Leak, Report

__all__ = [
    "CleanupError",
    "ConnectTimeout",
    "LeakError",
    "LockTimeout",
    "PoolBroken",
    "PoolClosed",
    "PoolFull",
    "PoolTimeout",
    "ReclaimError",
    "ResourceClosed",
]


class ReclaimError(Exception):
    """Base class of every error reclaim raises on purpose."""


class ResourceClosed(ReclaimError, RuntimeError):
    """The object was closed by its owner and cannot be used any more."""


class CleanupError(ExceptionGroup[Exception], ReclaimError):
    """Several releases failed while a scope was closing; holds every one of them.

    Raised only when the body of the scope succeeded: when the body raised, its
    own exception propagates instead and the cleanup failures are attached to it
    (see :func:`reclaim.cleanup_errors`).

    Example::

        try:
            with reclaim.Scope() as scope:
                scope.callback(fail_a)
                scope.callback(fail_b)
        except* OSError as group:
            ...
    """

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> Self:
        return super().__new__(cls, message, exceptions)

    def derive(self, excs: Sequence[Exception]) -> CleanupError:  # type: ignore[override]
        return CleanupError(self.message, excs)


class LeakError(ReclaimError, AssertionError):
    """Resources acquired inside a checked block were still open at its end.

    Raised by :func:`reclaim.no_leaks`. ``leaks`` lists every leak found (kind,
    description, acquisition frames, thread, test); ``report`` is the whole
    :class:`reclaim.leaks.Report`, for ``to_text()``/``to_json()``.

    Example::

        try:
            with reclaim.no_leaks():
                f = open("data.txt")
        except reclaim.LeakError as error:
            assert error.leaks[0].kind == "file"
    """

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report
        self.leaks: tuple[Leak, ...] = report.leaks if report is not None else ()


class PoolClosed(ResourceClosed):
    """The pool was closed by its owner; no object can be acquired from it."""


class PoolTimeout(ReclaimError, TimeoutError):
    """No object became available from the pool within the acquire timeout."""


class PoolFull(ReclaimError, RuntimeError):
    """The pool's wait queue is full (``max_waiting``): the acquire was refused at once."""


class PoolBroken(ReclaimError, ConnectionError):
    """The pool cannot create objects: the last attempts to create one failed."""


class LockTimeout(ReclaimError, TimeoutError):
    """An inter-process lock was not obtained within its timeout."""

    #: The lock file, when the lock is a file lock.
    path: str | None = None
    #: The pid of the process holding the lock, when it is known.
    pid: int | None = None


class ConnectTimeout(ReclaimError, TimeoutError):
    """A connection was not established within its connect timeout; the message names the address."""
