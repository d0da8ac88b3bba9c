"""Validation of the pool's keyword-only options, shared by Pool and AsyncPool.

Every option is checked at construction and a bad value raises ``TypeError``
or ``ValueError`` naming the argument, so a mistake fails where it was made
and not at the first acquire under load.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Generic, NamedTuple, TypedDict, TypeVar

from reclaim._coroutines import is_coroutine_function

__all__ = ["AsyncPoolOptions", "Options", "validate"]

T = TypeVar("T")


class Options(NamedTuple):
    """The validated options of one pool (internal; a named tuple: a dataclass would import
    dataclasses and inspect, a third of ``from reclaim import Pool``)."""

    create: Callable[[], Any]
    close: Callable[[Any], object] | None
    min_size: int
    max_size: int
    acquire_timeout: float
    max_lifetime: float | None
    max_idle: float | None
    check: Callable[[Any], object] | None
    check_after: float
    reset: Callable[[Any], object] | None
    configure: Callable[[Any], object] | None
    is_broken: Callable[[Any, BaseException], bool] | None
    leak_timeout: float | None
    name: str
    fair: bool
    handoff_after: float
    reconnect_delay: float
    reconnect_max_delay: float
    max_waiting: int | None


def _callable(name: str, value: object, *, optional: bool = True) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")


def _seconds(name: str, value: object, *, optional: bool, positive: bool = True) -> None:
    if value is None:
        if optional:
            return
        raise TypeError(f"{name} must be a number of seconds, got None")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if math.isnan(value) or value < 0 or (positive and value == 0):
        raise ValueError(
            f"{name} must be {'> 0' if positive else '>= 0'} seconds, got {value!r}"
            + (" (use None to turn it off)" if optional else "")
        )
    if math.isinf(value) and not optional:
        raise ValueError(f"{name} must be finite, got {value!r}")


def _size(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_sizes(min_size: object, max_size: object) -> None:
    """Raise when the sizes are not ints with ``0 <= min_size <= max_size`` and ``max_size >= 1``."""
    _size("min_size", min_size, 0)
    _size("max_size", max_size, 1)  # one bound, one message: -1 and 0 are refused alike
    assert isinstance(min_size, int)
    assert isinstance(max_size, int)
    if min_size > max_size:
        raise ValueError(f"min_size ({min_size}) must be <= max_size ({max_size})")


def check_close_timeout(timeout: object) -> None:
    """Raise unless *timeout* (of ``close()``) is None or a finite number of seconds >= 0.

    Checked before the pool changes at all; the messages are those of ``acquire(timeout=...)``.
    """
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or None (5 s), got {type(timeout).__name__} {timeout!r}"
        )
    if math.isnan(timeout) or timeout < 0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
    if math.isinf(timeout):
        raise ValueError(f"timeout must be finite, got {timeout!r}")


def acquire_deadline(start: float, timeout: object, default: float) -> float:
    """The monotonic deadline of an acquire started at *start* with ``timeout=`` *timeout*.

    None means the pool's ``acquire_timeout`` (*default*); ``inf`` waits as long as it takes.
    A wrong type is a TypeError and a negative or NaN number a ValueError, both naming
    ``timeout``; nothing has changed in the pool when they are raised.
    """
    if timeout is None:
        return start + default
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"timeout must be a number of seconds or None (the pool's acquire_timeout), "
            f"got {type(timeout).__name__} {timeout!r}"
        )
    if not timeout >= 0:  # NaN too
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
    return start + timeout


def refuse_coroutine_functions(opts: Options) -> None:
    """Raise TypeError for an ``async def`` hook given to the thread Pool, which never awaits.

    Its coroutine would be lent as the object (``create``), taken for a pass (``check``,
    ``reset``: true), or dropped unrun (``close``, ``configure``).
    """
    for name in ("create", "close", "check", "reset", "configure", "is_broken"):
        fn = getattr(opts, name)
        if fn is not None and is_coroutine_function(fn):
            raise TypeError(
                f"{name} is a coroutine function ({getattr(fn, '__qualname__', fn)!r}) and a thread "
                "Pool never awaits: use reclaim.AsyncPool (or reclaim.db.AsyncConnectionPool), or "
                f"pass a plain function as {name}="
            )


def refuse_async_is_broken(opts: Options) -> None:
    """AsyncPool: ``is_broken`` is called without await (on the way out of ``async with``)."""
    if opts.is_broken is not None and is_coroutine_function(opts.is_broken):
        raise TypeError(
            f"is_broken must be a plain function (obj, exc) -> bool, got the coroutine function "
            f"{getattr(opts.is_broken, '__qualname__', opts.is_broken)!r}: it is called without await"
        )


def validate(default_name: str, **kw: Any) -> Options:
    """Check every option and return them frozen; raises TypeError/ValueError naming the argument."""
    _callable("create", kw["create"], optional=False)
    for name in ("close", "check", "reset", "configure", "is_broken"):
        _callable(name, kw[name])
    check_sizes(kw["min_size"], kw["max_size"])
    _seconds("acquire_timeout", kw["acquire_timeout"], optional=False)
    _seconds("max_lifetime", kw["max_lifetime"], optional=True)
    _seconds("max_idle", kw["max_idle"], optional=True)
    _seconds("check_after", kw["check_after"], optional=False, positive=False)
    _seconds("leak_timeout", kw["leak_timeout"], optional=True)
    _seconds("handoff_after", kw["handoff_after"], optional=False, positive=False)
    _seconds("reconnect_delay", kw["reconnect_delay"], optional=False)
    _seconds("reconnect_max_delay", kw["reconnect_max_delay"], optional=False)
    if kw["reconnect_max_delay"] < kw["reconnect_delay"]:
        raise ValueError(
            f"reconnect_max_delay ({kw['reconnect_max_delay']}) must be >= "
            f"reconnect_delay ({kw['reconnect_delay']})"
        )
    max_waiting = kw["max_waiting"]
    if max_waiting is not None:
        if isinstance(max_waiting, bool) or not isinstance(max_waiting, int):
            raise TypeError(
                f"max_waiting must be an int or None, got {type(max_waiting).__name__} {max_waiting!r}"
            )
        if max_waiting < 0:
            raise ValueError(f"max_waiting must be >= 0 (0: never wait; None: no limit), got {max_waiting}")
    name = kw["name"]
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, got {type(name).__name__}")
    if not isinstance(kw["fair"], bool):
        raise TypeError(f"fair must be a bool, got {type(kw['fair']).__name__}")
    kw["name"] = name if name is not None else default_name
    return Options(**kw)


class AsyncPoolOptions(TypedDict, Generic[T], total=False):
    """The keyword options of :class:`AsyncPool` (for type checkers; see Pool for their meaning)."""

    close: Callable[[T], Any] | None
    min_size: int
    max_size: int
    acquire_timeout: float
    max_lifetime: float | None
    max_idle: float | None
    check: Callable[[T], Any] | None
    check_after: float
    reset: Callable[[T], Any] | None
    configure: Callable[[T], Any] | None
    is_broken: Callable[[T, BaseException], bool] | None
    leak_timeout: float | None
    name: str | None
    fair: bool
    handoff_after: float
    reconnect_delay: float
    reconnect_max_delay: float
    max_waiting: int | None
