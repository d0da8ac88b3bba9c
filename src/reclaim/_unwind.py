"""The no-error-lost policy of a closing scope, free of I/O; shared by Scope, AsyncScope and @resource.

An entry is a plain tuple ``(kind, fn, obj, args, kwds, code, lineno)``:
*kind* says how to call *fn* (an exit method, an exit callable, a plain
callback, or their async twins), *obj* is what is held (for descriptions),
and ``(code, lineno)`` is where the user handed it over.
"""

from __future__ import annotations

from collections import namedtuple
from types import CodeType, TracebackType

from ._sites import Frame
from .errors import CleanupError

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any, NamedTuple

__all__ = ["Held", "ScopeStatistics", "cleanup_errors"]

ExcInfo = tuple[type[BaseException] | None, BaseException | None, TracebackType | None]

# Entry kinds. An entry is a plain tuple: (kind, fn, obj, args, kwds, code, lineno).
_CM, _EXIT, _CALLBACK, _ACM, _AEXIT, _ACALLBACK = range(6)
_ASYNC_KINDS = frozenset((_ACM, _AEXIT, _ACALLBACK))
_NO_DETAILS: ExcInfo = (None, None, None)
_ATTR = "__reclaim_cleanup_errors__"


def describe(obj: object, limit: int = 120) -> str:
    """A one-line description of a held object: files by name and mode, others by a shortened repr."""
    name, mode = getattr(obj, "name", None), getattr(obj, "mode", None)
    if isinstance(name, str | int) and isinstance(mode, str):
        return f"file {name!r} (mode {mode!r})"
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not break a report
        text = f"<{type(obj).__qualname__} object>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _name(fn: object) -> str:
    return getattr(fn, "__qualname__", None) or describe(fn, 60)


def cleanup_errors(exc: BaseException) -> tuple[BaseException, ...]:
    """The cleanup failures a Scope attached to *exc* (empty when there were none).

    Example::

        try:
            with reclaim.Scope() as scope:
                scope.callback(flaky_close)
                raise ValueError("body failed")
        except ValueError as exc:
            for failure in reclaim.cleanup_errors(exc):
                log.warning("also failed: %r", failure)
    """
    return tuple(getattr(exc, _ATTR, ()))


# Named tuples, not dataclasses: importing dataclasses (and the inspect it imports) and making
# the classes cost `from reclaim import Scope` 10 ms.
if TYPE_CHECKING:

    class _HeldFields(NamedTuple):
        description: str
        site: Frame | None

    class _StatisticsFields(NamedTuple):
        held: int
        released: int
        failed: int
        entered: bool

else:
    _HeldFields = namedtuple("Held", ("description", "site"))
    _StatisticsFields = namedtuple("ScopeStatistics", ("held", "released", "failed", "entered"))


class Held(_HeldFields):
    """One resource a scope holds: ``description``, what it is, and ``site``, the user's frame
    that handed it to the scope (``None`` if unknown)."""

    __slots__ = ()

    def __str__(self) -> str:
        return f"{self.description} (acquired at {self.site})" if self.site else self.description


class ScopeStatistics(_StatisticsFields):
    """A snapshot of a scope's counters: ``held`` (resources and callbacks held now),
    ``released`` and ``failed`` (releases run, and that raised, since the scope was created),
    ``entered`` (whether the scope is inside its ``with`` block)."""

    __slots__ = ()


def _describe(entry: tuple[Any, ...]) -> str:
    kind, fn, obj = entry[0], entry[1], entry[2]
    if kind in (_CALLBACK, _ACALLBACK) and obj is fn:
        return f"callback {_name(fn)}()"
    if kind in (_EXIT, _AEXIT):
        return f"exit callback {_name(fn)}"
    return describe(obj)


def _frame_of(entry: tuple[Any, ...]) -> Frame | None:
    code: CodeType | None = entry[5]
    if code is None:
        return None
    return Frame(code.co_filename, entry[6], code.co_qualname)


def _attach(primary: BaseException, failures: list[tuple[BaseException, tuple[Any, ...]]]) -> None:
    """Record *failures* on *primary*: an attribute for code, a note each for the traceback."""
    if not failures:
        return
    try:
        existing = list(getattr(primary, _ATTR, ()))
        setattr(primary, _ATTR, existing + [exc for exc, _ in failures])
    except AttributeError:  # an exception type without __dict__: notes still carry everything
        pass
    for exc, entry in failures:
        where = _frame_of(entry)
        acquired = f" (acquired at {where.location})" if where else ""
        raised = ""
        tb = exc.__traceback__
        if tb is not None:
            while tb.tb_next is not None:
                tb = tb.tb_next
            code = tb.tb_frame.f_code
            raised = f", raised at {code.co_filename}:{tb.tb_lineno} in {code.co_qualname}"
        primary.add_note(
            f"reclaim: releasing {_describe(entry)}{acquired} also failed: "
            f"{type(exc).__qualname__}: {exc}{raised}"
        )


class _Unwind:
    """The no-error-lost policy for one close: no I/O, shared by sync and async."""

    __slots__ = ("body", "failures", "original", "pending", "suppressed")

    def __init__(self, exc: BaseException | None) -> None:
        self.original = exc  # what the with statement re-raises when __exit__ returns False
        self.body = exc  # the body's exception while it is still going to propagate
        self.pending = exc  # what exit functions are shown (and may suppress)
        self.failures: list[tuple[BaseException, tuple[Any, ...]]] = []
        self.suppressed = False

    def details(self) -> ExcInfo:
        p = self.pending
        return _NO_DETAILS if p is None else (type(p), p, p.__traceback__)

    def returned(self, result: object) -> None:
        p = self.pending
        if result and p is not None:
            if p is self.body:
                self.body = None
                self.suppressed = True
            else:
                self.failures = [f for f in self.failures if f[0] is not p]
            self.pending = None

    def failed(self, exc: BaseException, entry: tuple[Any, ...]) -> bool:
        """Record what a release raised; False when it was not a failure of the release's own."""
        p = self.pending
        if exc is p:
            return False  # the release re-raised what it was shown: it just did not suppress it
        if p is not None and exc.__cause__ is p:
            # `raise Other(...) from exc`: the release translated the error on purpose (a driver
            # error into a domain error, say). The translation propagates in its place, and the
            # original stays reachable as its __cause__, so nothing is lost.
            if p is self.body:
                self.body = exc
            else:
                self.failures = [(exc, entry) if f[0] is p else f for f in self.failures]
            self.pending = exc
            return False
        self.failures.append((exc, entry))
        if p is None:
            self.pending = exc
        return True

    def finish(self) -> tuple[bool, BaseException | None]:
        """(suppress the body's exception?, exception to raise instead or None)."""
        failures = self.failures
        body = self.body
        translated = body if body is not self.original else None
        if not failures:
            return (False, translated) if body is not None else (self.suppressed, None)
        interrupt = next((f for f in failures if not isinstance(f[0], Exception)), None)
        if interrupt is not None and (body is None or isinstance(body, Exception)):
            # An interrupt from a release outranks an ordinary error: raise it bare.
            others = [f for f in failures if f is not interrupt]
            _attach(interrupt[0], others)
            if body is not None and interrupt[0].__context__ is None:
                interrupt[0].__context__ = body
            return False, interrupt[0]
        if body is not None:
            _attach(body, failures)
            return False, translated
        if not failures:
            return self.suppressed, None
        if len(failures) == 1:
            return self.suppressed, failures[0][0]
        errors = [f[0] for f in failures]
        group = CleanupError(f"{len(errors)} releases failed while closing the scope", errors)  # type: ignore[arg-type]
        for exc, entry in failures:
            where = _frame_of(entry)
            if where is not None:
                group.add_note(
                    f"{type(exc).__qualname__} came from releasing {_describe(entry)} "
                    f"acquired at {where.location}"
                )
        return self.suppressed, group
