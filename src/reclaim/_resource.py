"""``@reclaim.resource``: define a resource from a generator, as contextlib.contextmanager does.

The one addition to contextlib's semantics: **the code after a bare yield
runs on every exit path.** With ``contextlib.contextmanager`` this::

    @contextmanager
    def connection():
        conn = connect()
        yield conn
        conn.close()        # skipped when the with-body raises

leaks the connection whenever the body raises, unless the author remembered
``try``/``finally``. A ``@reclaim.resource`` whose ``yield`` is not inside a
``try`` or ``with`` statement is resumed normally on every exit, so the release
runs, and then the body's exception propagates unchanged (a release failure
is attached to it, as a Scope does). A ``yield`` inside ``try`` or ``with``
means the author wants to see the exception: it is thrown in at the ``yield``
exactly as contextlib does, and may be handled or suppressed there. To run
code only on success, write ``try: yield … except: …; raise`` or
``try``/``else``.

Which rule applies is read from the function's source, once. Where there is
no source to read (a function typed at the interactive prompt or built by
``exec``), the resource behaves exactly as contextlib does.

Instances are single-use, like contextlib's: entering one twice raises
``RuntimeError``. The decorated function is a factory; call it again for a
new instance (any number may be live at once, in any threads).
"""

from __future__ import annotations

import ast
import functools
import inspect
import textwrap
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from types import TracebackType
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import _sites, _track
from ._unwind import _attach

__all__ = ["AsyncResource", "Resource", "resource"]

T = TypeVar("T")
P = ParamSpec("P")

# Operations the exit protocol asks the driver to perform on the user's generator.
_NEXT = "next"
_CLOSE = "close"
_THROW = "throw"
# Outcomes the driver reports back.
_YIELDED, _STOPPED, _RAISED = "yielded", "stopped", "raised"

Op = tuple[str, BaseException | None]
Outcome = tuple[str, Any]


def _bare_yield(func: Callable[..., Any]) -> bool:
    """True when every ``yield`` of *func* is outside any ``try``/``with``: nothing there handles exceptions.

    Decided from the source; when the source cannot be read, False (contextlib's behaviour).
    """
    try:
        source = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(source)
    except (OSError, TypeError, SyntaxError):
        return False
    target = next(
        (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)),
        None,
    )
    if target is None:
        return False
    protected = (ast.Try, ast.TryStar, ast.With, ast.AsyncWith)
    nested_scope = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
    found = False

    def visit(node: ast.AST, inside: bool) -> bool:
        nonlocal found
        for child in ast.iter_child_nodes(node):
            if isinstance(child, nested_scope):
                continue
            if isinstance(child, ast.Yield | ast.YieldFrom):
                found = True
                if inside:
                    return False
            if not visit(child, inside or isinstance(child, protected)):
                return False
        return True

    return visit(target, False) and found


def _exit_protocol(
    name: str, bare: bool, exc: BaseException | None, tb: TracebackType | None
) -> Generator[Op, Outcome, bool]:
    """The exit rules, free of I/O: yields operations on the user's generator, returns 'suppress?'."""
    if exc is None:
        outcome, value = yield (_NEXT, None)
        if outcome == _STOPPED:
            return False
        if outcome == _RAISED:
            raise value
        yield (_CLOSE, None)
        raise RuntimeError(f"{name}() yielded more than once; a resource yields exactly once")

    if bare:
        # Nothing in the generator could handle the exception: resume it so the release runs.
        outcome, value = yield (_NEXT, None)
        if outcome == _YIELDED:
            yield (_CLOSE, None)
            value = RuntimeError(f"{name}() yielded more than once; a resource yields exactly once")
            outcome = _RAISED
        if outcome == _RAISED:
            if not isinstance(value, Exception) and isinstance(exc, Exception):
                value.__context__ = exc
                raise value  # an interrupt from the release outranks the body's error
            _attach(exc, [(value, (0, None, f"{name}()", None, None, None, 0))])
        exc.__traceback__ = tb
        return False

    outcome, value = yield (_THROW, exc)
    if outcome == _STOPPED:
        # The generator handled the exception and returned: suppressed, as in contextlib.
        return value is not exc
    if outcome == _YIELDED:
        yield (_CLOSE, None)
        raise RuntimeError(f"{name}() did not stop after the exception was thrown into it")
    if value is exc:
        exc.__traceback__ = tb
        return False
    if (
        isinstance(value, RuntimeError)
        and isinstance(exc, StopIteration | StopAsyncIteration)
        and value.__cause__ is exc
    ):
        # PEP 479 turned the StopIteration we threw into RuntimeError: re-raise the original.
        exc.__traceback__ = tb
        return False
    raise value


class _Base:
    __slots__ = ("__weakref__", "_args", "_bare", "_func", "_gen", "_kwds")

    def __init__(
        self, func: Callable[..., Any], args: tuple[Any, ...], kwds: dict[str, Any], bare: bool
    ) -> None:
        self._func = func
        self._args = args
        self._kwds = kwds
        self._bare = bare
        self._gen: Any = None

    @property
    def _name(self) -> str:
        return getattr(self._func, "__qualname__", repr(self._func))

    def __repr__(self) -> str:
        state = "unused" if self._gen is None else "entered"
        return f"<{type(self).__name__} {self._name}() {state}>"

    def _start(self) -> Any:
        if self._gen is not None:
            raise RuntimeError(
                f"{self!r} was already entered; resources are single-use: call {self._name}() again"
            )
        self._gen = self._func(*self._args, **self._kwds)
        return self._gen

    def _acquired(self) -> None:
        if _track.on_acquire is not None:
            _track.acquired("resource", self, f"{self._name}()", _sites.capture(skip=2))


class Resource(_Base, Generic[T]):
    """An instance made by a ``@resource`` generator function; a single-use context manager."""

    __slots__ = ()

    def __enter__(self) -> T:
        gen = self._start()
        try:
            value: T = next(gen)
        except StopIteration:
            raise RuntimeError(
                f"{self._name}() returned without yielding; a resource yields exactly once"
            ) from None
        self._acquired()
        return value

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        gen = self._gen
        if gen is None:
            raise RuntimeError(f"{self!r} was exited without being entered")
        if exc is None and typ is not None:
            exc = typ()
        try:
            protocol = _exit_protocol(self._name, self._bare, exc, tb)
            op = next(protocol)
            while True:
                kind, arg = op
                try:
                    if kind == _NEXT:
                        outcome: Outcome = (_YIELDED, gen.send(None))
                    elif kind == _THROW:
                        outcome = (_YIELDED, gen.throw(arg))
                    else:
                        gen.close()
                        outcome = (_YIELDED, None)
                except StopIteration as stop:
                    outcome = (_STOPPED, stop)
                except BaseException as error:
                    outcome = (_RAISED, error)
                try:
                    op = protocol.send(outcome)
                except StopIteration as done:
                    result: bool = done.value
                    return result
        finally:
            if _track.on_release is not None:
                _track.released(self)


class AsyncResource(_Base, Generic[T]):
    """An instance made by an async ``@resource`` generator function; a single-use async context manager."""

    __slots__ = ()

    async def __aenter__(self) -> T:
        gen = self._start()
        try:
            value: T = await gen.__anext__()
        except StopAsyncIteration:
            raise RuntimeError(
                f"{self._name}() returned without yielding; a resource yields exactly once"
            ) from None
        self._acquired()
        return value

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        gen = self._gen
        if gen is None:
            raise RuntimeError(f"{self!r} was exited without being entered")
        if exc is None and typ is not None:
            exc = typ()
        try:
            protocol = _exit_protocol(self._name, self._bare, exc, tb)
            op = next(protocol)
            while True:
                kind, arg = op
                try:
                    if kind == _NEXT:
                        outcome: Outcome = (_YIELDED, await gen.asend(None))
                    elif kind == _THROW:
                        outcome = (_YIELDED, await gen.athrow(arg))
                    else:
                        await gen.aclose()
                        outcome = (_YIELDED, None)
                except StopAsyncIteration as stop:
                    outcome = (_STOPPED, stop)
                except BaseException as error:
                    outcome = (_RAISED, error)
                try:
                    op = protocol.send(outcome)
                except StopIteration as done:
                    result: bool = done.value
                    return result
        finally:
            if _track.on_release is not None:
                _track.released(self)


@overload
def resource(func: Callable[P, Iterator[T]]) -> Callable[P, Resource[T]]: ...
@overload
def resource(func: Callable[P, AsyncIterator[T]]) -> Callable[P, AsyncResource[T]]: ...
def resource(func: Callable[P, Any]) -> Callable[P, Any]:
    """Turn a generator function that yields once into a resource factory.

    Like :func:`contextlib.contextmanager` (and ``asynccontextmanager`` for an
    ``async def`` generator), plus: the code after a bare ``yield`` runs on
    every exit path, and the leak tracker reports instances entered and never
    exited. See the module docstring for the exact rules.

    Example::

        @reclaim.resource
        def temp_table(conn, name):
            conn.execute(f"CREATE TEMP TABLE {name} (x)")
            yield name
            conn.execute(f"DROP TABLE {name}")   # runs even if the body raised

        with temp_table(conn, "t") as t:
            ...

    Raises:
        TypeError: *func* is not a generator function or async generator function.
    """
    if inspect.isasyncgenfunction(func):
        cls: type[_Base] = AsyncResource
    elif inspect.isgeneratorfunction(func):
        cls = Resource
    else:
        raise TypeError(
            f"resource(func): {getattr(func, '__qualname__', func)!r} is not a generator function; "
            "write it with exactly one 'yield' (or use an 'async def' with one 'yield')"
        )
    bare: list[bool] = []  # decided on first use: parsing source at import time would slow imports

    @functools.wraps(func)
    def factory(*args: P.args, **kwds: P.kwargs) -> Any:
        if not bare:
            bare.append(_bare_yield(func))
        return cls(func, args, kwds, bare[0])

    return factory
