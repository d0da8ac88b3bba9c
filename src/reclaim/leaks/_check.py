"""``no_leaks()``: fail a block or a function that leaks."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from reclaim.errors import LeakError

from ._tracker import Snapshot, Tracker

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:  # annotations only (strings at run time): typing and the report are imported late
    from typing import Any, ParamSpec, TypeVar

    from ._report import Ignore, Report

    P = ParamSpec("P")
    R = TypeVar("R")

__all__ = ["NoLeaks", "known_kinds", "no_leaks"]


def known_kinds(kinds: Iterable[str], argument: str) -> frozenset[str]:
    """*kinds* as a set, each checked against :data:`reclaim.leaks.KINDS`.

    A misspelt kind would ignore nothing, silently: it is refused as the CLI's
    ``--ignore``, the ``reclaim_ignore_kinds`` ini option and the
    ``reclaim_allow`` marker refuse it.

    Raises:
        TypeError: *kinds* is a string (one kind goes in a set: ``{"thread"}``) or holds a non-string.
        ValueError: a kind is not one of ``KINDS``.
    """
    from . import KINDS  # the package defines KINDS after importing this module

    if isinstance(kinds, str):
        raise TypeError(f"{argument} must be a collection of kinds, e.g. {{'thread'}}, not a string")
    found = frozenset(kinds)
    for kind in sorted(found, key=repr):
        if not isinstance(kind, str):
            raise TypeError(f"{argument}: a kind is a str, got {kind!r}")
        if kind not in KINDS:
            raise ValueError(f"{argument}: unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
    return found


def _ignore_filters(ignore: Ignore | Iterable[Ignore] | None) -> tuple[Ignore, ...]:
    """*ignore* as a tuple of filters: one regular expression (a str) or predicate stays one, as
    for ``Tracker.leaks`` (a str iterated would be a regex per character, hiding nearly every leak)."""
    import re  # here: a program that never calls no_leaks() does not import re for it

    if ignore is None:
        return ()
    if isinstance(ignore, str | re.Pattern) or callable(ignore):
        filters: tuple[Any, ...] = (ignore,)
    elif isinstance(ignore, Iterable):
        filters = tuple(ignore)
    else:
        raise TypeError(
            f"ignore must be a regular expression (str), a predicate taking a Leak, or a list of "
            f"them, got {type(ignore).__name__} {ignore!r}"
        )
    for spec in filters:
        if isinstance(spec, str):
            try:
                re.compile(spec)
            except re.error as exc:
                raise ValueError(f"ignore: {spec!r} is not a valid regular expression: {exc}") from None
        elif not (isinstance(spec, re.Pattern) or callable(spec)):
            raise TypeError(
                f"ignore: each item must be a regular expression (str) or a predicate taking a Leak, "
                f"got {type(spec).__name__} {spec!r}"
            )
    return filters


class NoLeaks:
    """A leak check usable as ``with``, ``async with`` and as a decorator; made by :func:`no_leaks`."""

    def __init__(
        self,
        *,
        ignore_kinds: Iterable[str] = (),
        ignore: Ignore | Iterable[Ignore] = (),
        grace: float = 1.0,
        collect: bool = False,
        include_framework: bool = False,
    ) -> None:
        kinds = known_kinds(ignore_kinds, "ignore_kinds")
        if isinstance(grace, bool) or not isinstance(grace, (int, float)):
            raise TypeError(f"grace must be a number of seconds >= 0, got {grace!r}")
        if not grace >= 0:  # also refuses NaN
            raise ValueError(f"grace must be a number of seconds >= 0, got {grace!r}")
        if grace == float("inf"):
            raise ValueError("grace must be finite: it is how long the check waits for threads still running")
        self._options: dict[str, Any] = {
            "grace": float(grace),
            "ignore_kinds": kinds,
            "ignore": _ignore_filters(ignore),
            "collect": collect,
            "include_framework": include_framework,
        }
        self._active: list[tuple[Tracker, Snapshot]] = []
        #: The report of the last check (empty when it passed), for inspection after the block.
        self.report: Report | None = None

    def __repr__(self) -> str:
        state = "checking" if self._active else "idle"
        return f"<NoLeaks {state} grace={self._options['grace']}s>"

    def __enter__(self) -> NoLeaks:
        tracker = Tracker().start()
        self._active.append((tracker, tracker.snapshot()))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        tracker, mark = self._active.pop()
        try:
            # When the body failed, do not wait for stragglers: report what is there now.
            options = dict(self._options, grace=0.0) if exc is not None else self._options
            report = self.report = tracker.report(since=mark, **options)
        finally:
            tracker.stop()
        if not report:
            return
        if exc is not None:
            # The body's error wins (it keeps its type); the leaks ride along as a note.
            exc.add_note(f"reclaim.no_leaks also found {report.summary()}:\n{report.to_text()}")
            return
        raise LeakError(f"{report.summary()}\n{report.to_text()}", report)

    async def __aenter__(self) -> NoLeaks:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        """Decorate *func* (sync or ``async def``) so every call is checked."""
        import inspect  # here: with ast, dis and tokenize it costs ~6 ms, and only decorating needs it

        if inspect.iscoroutinefunction(func):
            afunc: Callable[P, Awaitable[Any]] = func

            @functools.wraps(func)
            async def acheck(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with self.copy():
                    return await afunc(*args, **kwargs)

            return acheck  # type: ignore[return-value]

        @functools.wraps(func)
        def check(*args: P.args, **kwargs: P.kwargs) -> R:
            with self.copy():
                return func(*args, **kwargs)

        return check

    def copy(self) -> NoLeaks:
        """A fresh check with the same options (each decorated call gets its own)."""
        return NoLeaks(**self._options)


def no_leaks(
    *,
    ignore_kinds: Iterable[str] = (),
    ignore: Ignore | Iterable[Ignore] = (),
    grace: float = 1.0,
    collect: bool = False,
    include_framework: bool = False,
) -> NoLeaks:
    """Raise :class:`reclaim.LeakError` if the block leaks: resources acquired inside it, by any
    thread, still open at its end (or closed by the garbage collector instead of the program).

    Threads, child processes and asyncio tasks still running at the end get up
    to *grace* seconds to finish, polled with back-off; when nothing is left
    over the check returns at once. If the block raises, its exception
    propagates unchanged and the leaks are attached to it as a note.

    Args:
        ignore_kinds: kinds not to check, e.g. ``{"thread"}``.
        ignore: a regular expression searched in each leak's description, or a
            predicate taking a :class:`reclaim.leaks.Leak`, or a list of them.
        grace: seconds to wait for threads, children and tasks winding down.
        collect: run ``gc.collect()`` before checking.
        include_framework: also report resources acquired by framework code only.

    Example::

        with reclaim.no_leaks():
            serve_one_request()

        @reclaim.no_leaks(ignore_kinds={"thread"})
        def test_download(): ...

    Raises:
        LeakError: leaks were found; ``error.leaks`` lists them, ``error.report`` has the rest.
        TypeError: *ignore_kinds* is a string or *grace* is not a number (when called).
        ValueError: *ignore_kinds* names an unknown kind or *grace* is negative (when called).
    """
    return NoLeaks(
        ignore_kinds=ignore_kinds,
        ignore=ignore,
        grace=grace,
        collect=collect,
        include_framework=include_framework,
    )
