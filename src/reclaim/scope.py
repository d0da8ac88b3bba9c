"""Scope and AsyncScope: an ExitStack that owns resources and loses no error.

Both classes keep the methods and semantics of :class:`contextlib.ExitStack`
and :class:`contextlib.AsyncExitStack`, so code switches by changing the class
name. One rule differs on purpose:

* ExitStack lets a failing cleanup replace the body's exception, and when the
  body succeeded and several cleanups fail it raises only one of them
  (CPython gh-102201).
* A Scope keeps the body's exception, with its own type, and attaches every
  cleanup failure to it (as notes in the traceback, and through
  :func:`cleanup_errors`). When only cleanups failed, one failure is raised as
  itself and several as a :class:`~reclaim.CleanupError` holding all of them.
  A release that deliberately translates the error (``raise Other(...) from
  exc``) replaces it, as with nested ``with`` statements: the original stays
  reachable as ``__cause__``.
  An interrupt (``KeyboardInterrupt``, ``SystemExit``, ``CancelledError``…)
  raised by a cleanup is raised bare, after every other cleanup has run, with
  the rest attached: a Ctrl-C must still stop the program.

The unwinding loop is written once, as a generator that yields the awaitables
of async cleanups: :class:`Scope` drives it without awaiting (it never holds
async cleanups) and :class:`AsyncScope` awaits each one.
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from types import CodeType, TracebackType

from . import _sites, _track
from ._coroutines import is_coroutine_function
from ._unwind import (
    _ACALLBACK,
    _ACM,
    _AEXIT,
    _CALLBACK,
    _CM,
    _EXIT,
    Held,
    ScopeStatistics,
    _describe,
    _frame_of,
    _name,
    _Unwind,
    cleanup_errors,
)

__all__ = ["AsyncScope", "Held", "Scope", "ScopeStatistics", "cleanup_errors"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:  # annotations only (they are strings at run time): typing costs 5 ms to import
    from typing import Any, ParamSpec, Self, TypeVar

    T = TypeVar("T")
    P = ParamSpec("P")
    R = TypeVar("R")


_getframe = sys._getframe
_framework_cache = _sites._framework_cache


def _caller(depth: int) -> tuple[CodeType | None, int]:
    """(code, lineno) of the first non-reclaim frame, starting *depth* frames up."""
    try:
        frame = _getframe(depth + 1)
    except ValueError:
        return None, 0
    code = frame.f_code
    framework = _framework_cache.get(code.co_filename)
    if framework is None:
        framework = _sites.frame_is_framework(frame)
    if framework:
        site = _sites.capture_from(frame, 1)
        return site[0] if site else (None, 0)
    return code, frame.f_lineno


def _not_awaitable(result: object, fn: object) -> None:
    """Raise when a sync release returned an awaitable (an ``async def`` given to ``callback``
    or ``adopt``): it never ran, and as an exit's answer it would have suppressed the error.
    Checked when it runs, not when registered, which would cost every registration."""
    if hasattr(result, "__await__"):
        close = getattr(result, "close", None)
        if close is not None:
            close()  # no "coroutine was never awaited" warning on top of this error
        raise TypeError(
            f"{_name(fn)} returned an awaitable, which a sync release cannot await: it never ran; "
            "register it with AsyncScope's push_async_callback(), push_async_exit() or adopt_async()"
        )


class _BaseScope:
    """State and registration shared by Scope and AsyncScope."""

    __slots__ = ("__weakref__", "_entered", "_entries", "_failed", "_released")

    def __init__(self, *args: object, **kwargs: object) -> None:
        if args or kwargs:  # else the error would name _BaseScope, not the class called
            raise TypeError(
                f"{type(self).__name__}() takes no arguments; register resources on it "
                f"instead: scope.enter(cm), scope.callback(fn, *args)"
            )
        self._entries: deque[tuple[Any, ...]] = deque()
        self._entered = False
        self._released = 0
        self._failed = 0

    # -- registration (ExitStack's API) ------------------------------------

    def enter_context(self, cm: AbstractContextManager[T]) -> T:
        """Enter *cm* and hold it until the scope closes; returns what ``__enter__`` returned.

        :meth:`enter` is the same method under a shorter name:
        ``f = scope.enter(open(path))``.

        Raises:
            TypeError: *cm* is not a context manager.
        """
        cls = type(cm)
        try:
            enter = cls.__enter__
            exit_ = cls.__exit__
        except AttributeError:
            raise TypeError(
                f"'{cls.__module__}.{cls.__qualname__}' object does not support the context "
                "manager protocol (enter/enter_context need __enter__ and __exit__)"
            ) from None
        result: T = enter(cm)
        # _caller(1) inlined for the common case of a call from known user code: this is the hot path.
        frame = _getframe(1)
        code: CodeType | None = frame.f_code
        if _framework_cache.get(code.co_filename) is False:  # type: ignore[union-attr]
            lineno = frame.f_lineno
        else:
            code, lineno = _caller(1)
        self._entries.append((_CM, exit_, cm, None, None, code, lineno))
        return result

    enter = enter_context

    def push(self, exit: Any) -> Any:
        """Register an ``__exit__``-style callable, or the ``__exit__`` of an object that has one.

        The callable gets the pending exception's details and may suppress it by
        returning a true value, as in :meth:`contextlib.ExitStack.push`.
        Returns *exit* so it can be used as a decorator.
        """
        return self._push(
            exit, "__exit__", _CM, _EXIT, "push(exit): expected a callable or a context manager"
        )

    def _push(self, exit: Any, dunder: str, cm_kind: int, fn_kind: int, wrong: str) -> Any:
        """Register *exit*: its type's *dunder* method when it has one, else *exit* itself."""
        code, lineno = _caller(2)
        method = getattr(type(exit), dunder, None)
        if method is not None:
            self._entries.append((cm_kind, method, exit, None, None, code, lineno))
        elif callable(exit):
            if fn_kind == _EXIT and is_coroutine_function(exit):
                # Its coroutine, never awaited, would be taken for "suppress the error".
                raise TypeError(
                    f"push(exit): {_name(exit)} is a coroutine function, which an exit run without "
                    "await never runs; use AsyncScope.push_async_exit()"
                )
            self._entries.append((fn_kind, exit, exit, None, None, code, lineno))
        else:
            raise TypeError(f"{wrong}, got {type(exit).__qualname__}")
        return exit

    def callback(self, callback: Callable[P, R], /, *args: P.args, **kwds: P.kwargs) -> Callable[P, R]:
        """Register ``callback(*args, **kwds)`` to run when the scope closes; returns *callback*.

        Raises:
            TypeError: *callback* is not callable.
        """
        if not callable(callback):
            raise TypeError(f"callback(callback): expected a callable, got {type(callback).__qualname__}")
        code, lineno = _caller(1)
        self._entries.append((_CALLBACK, callback, callback, args, kwds, code, lineno))
        return callback

    def adopt(self, obj: T, release: Callable[[T], object] | None = None) -> T:
        """Take ownership of *obj*: ``release(obj)`` (default ``obj.close()``) runs when the scope closes.

        Returns *obj*, so acquisition and ownership are one line::

            conn = scope.adopt(sqlite3.connect(path))

        Raises:
            TypeError: *release* is not given and *obj* has no ``close()``, or
                *release* is not callable.
        """
        code, lineno = _caller(1)
        self._entries.append(self._adopt_entry(obj, release, code, lineno))
        return obj

    def _adopt_entry(
        self, obj: Any, release: Callable[..., object] | None, code: CodeType | None, lineno: int
    ) -> tuple[Any, ...]:
        if release is None:
            close = getattr(obj, "close", None)
            if not callable(close):
                raise TypeError(
                    f"adopt(obj): {type(obj).__qualname__} has no close() method; "
                    "pass release= to say how to release it"
                )
            return (_CALLBACK, close, obj, (), {}, code, lineno)
        if not callable(release):
            raise TypeError(f"adopt(release=): expected a callable, got {type(release).__qualname__}")
        return (_CALLBACK, release, obj, (obj,), {}, code, lineno)

    def pop_all(self) -> Self:
        """Move everything held to a new scope of the same type and return it; this one ends up empty."""
        new = type(self)()
        new._entries, self._entries = self._entries, deque()
        return new

    # -- introspection -------------------------------------------------------

    @property
    def resources(self) -> tuple[Held, ...]:
        """What the scope holds now, oldest first, each with where it was acquired."""
        return tuple(Held(_describe(e), _frame_of(e)) for e in list(self._entries))

    def statistics(self) -> ScopeStatistics:
        """Counters: held now, releases run, releases failed, whether entered."""
        return ScopeStatistics(
            held=len(self._entries),
            released=self._released,
            failed=self._failed,
            entered=self._entered,
        )

    def __repr__(self) -> str:
        state = "entered" if self._entered else "open"
        return f"<{type(self).__name__} {state}, holding {len(self._entries)}>"

    def __del__(self) -> None:
        entries = getattr(self, "_entries", None)
        if not entries:
            return
        try:
            held = "; ".join(str(h) for h in self.resources[:5])
            more = f" and {len(entries) - 5} more" if len(entries) > 5 else ""
            warnings.warn(
                f"{self!r} was garbage-collected while still holding {len(entries)} resource(s): "
                f"{held}{more}. Close it (use 'with {type(self).__name__}() as scope:') "
                "so they are released.",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
        except Exception:  # noqa: S110 - at interpreter shutdown the warnings machinery may be gone
            pass

    # -- the one unwinding loop ----------------------------------------------

    def _begin(self) -> None:
        self._entered = True
        if _track.on_acquire is not None:
            _track.acquired("scope", self, repr(self), _sites.capture(skip=2))

    def _end(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> _Unwind | None:
        """Leave the with block; None when everything was released cleanly, else the policy to finish."""
        self._entered = False
        if _track.on_release is not None:
            _track.released(self)
        if exc_type is None:
            return self._release_clean()
        return _Unwind(exc if exc is not None else exc_type())

    def _release_clean(self) -> _Unwind | None:
        """Release LIFO while nothing is pending; at the first failure hand over to :meth:`_unwind`.

        This is the common case (no exception anywhere) without the general
        loop's generator and policy object; it only calls sync releases with no
        exception details, so it needs none of the policy. It returns the policy
        object, holding the failure, when the general loop must take over.
        """
        entries = self._entries
        released = 0
        try:
            while True:
                try:
                    entry = entries.pop()
                except IndexError:
                    return None
                kind, fn, obj, args, kwds, _, _ = entry
                if kind > _CALLBACK:  # async entries go to the general loop
                    entries.append(entry)
                    return _Unwind(None)
                released += 1
                try:
                    if kind == _CALLBACK:
                        result = fn(*args, **kwds)
                        if result is not None:
                            _not_awaitable(result, fn)
                    elif kind == _CM:
                        fn(obj, None, None, None)
                    else:
                        fn(None, None, None)
                except BaseException as error:
                    u = _Unwind(None)
                    self._failed += u.failed(error, entry)
                    return u
        finally:
            self._released += released

    def _unwind(self, u: _Unwind) -> Generator[Awaitable[Any], Any, tuple[bool, BaseException | None]]:
        """Release everything LIFO; yields the awaitables of async releases to the driver."""
        entries = self._entries
        released = 0
        while True:
            try:
                entry = entries.pop()
            except IndexError:
                break
            released += 1
            kind, fn, obj, args, kwds, _, _ = entry
            try:
                if kind == _CALLBACK:
                    result = fn(*args, **kwds)
                    if result is not None:
                        _not_awaitable(result, fn)
                    continue
                elif kind == _CM:
                    result = fn(obj, *u.details())
                    if result is not None:
                        _not_awaitable(result, fn)
                elif kind == _EXIT:
                    result = fn(*u.details())
                    if result is not None:
                        _not_awaitable(result, fn)
                elif kind == _ACALLBACK:
                    yield fn(*args, **kwds)
                    continue
                elif kind == _ACM:
                    result = yield fn(obj, *u.details())
                else:
                    result = yield fn(*u.details())
            except BaseException as error:
                self._failed += u.failed(error, entry)
            else:
                if result:
                    u.returned(result)
        self._released += released
        return u.finish()


class Scope(_BaseScope, AbstractContextManager["Scope"]):
    """Owns resources and releases them LIFO on every path; loses no error.

    A drop-in superset of :class:`contextlib.ExitStack` (see the module
    docstring for the one deliberate difference). Registration is safe from
    several threads: entries go into a deque, whose appends and pops are
    atomic. Racing a :meth:`pop_all` or a close against registration in another
    thread hands the late entry to either side, never loses it.

    Example::

        with reclaim.Scope() as scope:
            src = scope.enter(open("in.txt"))
            conn = scope.adopt(sqlite3.connect("app.db"))
            scope.callback(print, "closing")
            ...
        # conn closed, src closed, in that order, whatever happened above.

    Raises:
        CleanupError: the body succeeded and several releases failed.
    """

    __slots__ = ()

    def __enter__(self) -> Self:
        self._begin()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        u = self._end(exc_type, exc)
        if u is None:
            return False
        gen = self._unwind(u)
        try:
            next(gen)
        except StopIteration as stop:
            suppress: bool = stop.value[0]
            error: BaseException | None = stop.value[1]
        else:  # pragma: no cover - a sync Scope has no method that registers an async release
            gen.close()
            raise TypeError(f"{self!r} holds an async release; use AsyncScope") from None
        if error is not None:
            raise error
        return suppress

    def close(self) -> None:
        """Release everything now (the scope stays usable, as ExitStack does)."""
        self.__exit__(None, None, None)


class AsyncScope(_BaseScope, AbstractAsyncContextManager["AsyncScope"]):
    """The async twin of :class:`Scope`: a drop-in superset of :class:`contextlib.AsyncExitStack`.

    Holds sync and async resources alike; async releases are awaited in LIFO
    order with the sync ones. A ``CancelledError`` raised while releasing is
    treated as an interrupt: every other release still runs, then it is
    re-raised bare.

    Example::

        async with reclaim.AsyncScope() as scope:
            conn = await scope.enter_async_context(pool.acquire())
            writer = scope.enter(open("out.txt", "w"))
    """

    __slots__ = ()

    async def enter_async_context(self, cm: AbstractAsyncContextManager[T]) -> T:
        """Enter the async context manager *cm* and hold it; returns ``__aenter__``'s result.

        Raises:
            TypeError: *cm* is not an async context manager.
        """
        cls = type(cm)
        try:
            aenter = cls.__aenter__
            aexit = cls.__aexit__
        except AttributeError:
            raise TypeError(
                f"'{cls.__module__}.{cls.__qualname__}' object does not support the asynchronous "
                "context manager protocol (enter_async_context needs __aenter__ and __aexit__)"
            ) from None
        result: T = await aenter(cm)
        code, lineno = _caller(1)
        self._entries.append((_ACM, aexit, cm, None, None, code, lineno))
        return result

    def push_async_exit(self, exit: Any) -> Any:
        """Register an async ``__aexit__``-style callable, or the ``__aexit__`` of an object that has one."""
        return self._push(
            exit,
            "__aexit__",
            _ACM,
            _AEXIT,
            "push_async_exit(exit): expected a coroutine function or an async context manager",
        )

    def push_async_callback(
        self, callback: Callable[P, Awaitable[R]], /, *args: P.args, **kwds: P.kwargs
    ) -> Callable[P, Awaitable[R]]:
        """Register ``await callback(*args, **kwds)`` to run when the scope closes; returns *callback*."""
        if not callable(callback):
            raise TypeError(
                "push_async_callback(callback): expected a coroutine function, "
                f"got {type(callback).__qualname__}"
            )
        code, lineno = _caller(1)
        self._entries.append((_ACALLBACK, callback, callback, args, kwds, code, lineno))
        return callback

    def adopt_async(self, obj: T, release: Callable[[T], Awaitable[object]] | None = None) -> T:
        """Take ownership of *obj*: ``await release(obj)`` (default ``await obj.aclose()``) runs at close.

        Raises:
            TypeError: *release* is not given and *obj* has no ``aclose()``.
        """
        code, lineno = _caller(1)
        if release is None:
            aclose = getattr(obj, "aclose", None)
            if not callable(aclose):
                raise TypeError(
                    f"adopt_async(obj): {type(obj).__qualname__} has no aclose() method; "
                    "pass release= to say how to release it"
                )
            self._entries.append((_ACALLBACK, aclose, obj, (), {}, code, lineno))
        elif callable(release):
            self._entries.append((_ACALLBACK, release, obj, (obj,), {}, code, lineno))
        else:
            raise TypeError(f"adopt_async(release=): expected a callable, got {type(release).__qualname__}")
        return obj

    async def __aenter__(self) -> Self:
        self._begin()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        u = self._end(exc_type, exc)
        if u is None:
            return False
        gen = self._unwind(u)
        send: Any = None
        throw: BaseException | None = None
        while True:
            try:
                awaitable = gen.throw(throw) if throw is not None else gen.send(send)
            except StopIteration as stop:
                suppress: bool = stop.value[0]
                error: BaseException | None = stop.value[1]
                break
            try:
                send, throw = await awaitable, None
            except BaseException as failure:  # handed back to the loop, which records it
                send, throw = None, failure
        if error is not None:
            raise error
        return suppress

    async def aclose(self) -> None:
        """Release everything now, awaiting async releases (the scope stays usable)."""
        await self.__aexit__(None, None, None)
