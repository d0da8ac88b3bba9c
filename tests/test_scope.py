"""Scope: ExitStack's behaviour where it is right, and no error lost where ExitStack loses one."""

from __future__ import annotations

import gc
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Any

import pytest

import helpers
import reclaim
from reclaim import CleanupError, Scope, cleanup_errors


def line_of(marker: str) -> int:
    return helpers.line_of(marker, sys.modules[__name__])


class Recorder:
    """A context manager that records enter/exit and what it was told."""

    def __init__(self, log: list[Any], name: str, *, suppress: bool = False) -> None:
        self.log = log
        self.name = name
        self.suppress = suppress

    def __enter__(self) -> str:
        self.log.append(("enter", self.name))
        return self.name

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self.log.append(("exit", self.name, typ))
        return self.suppress


def raiser(exc: BaseException) -> Callable[[], None]:
    def release() -> None:
        raise exc

    return release


# -- ExitStack parity -----------------------------------------------------------


def test_releases_run_lifo_across_enter_callback_and_push() -> None:
    log: list[Any] = []
    with Scope() as scope:
        assert scope.enter_context(Recorder(log, "a")) == "a"
        scope.callback(log.append, "callback")
        scope.push(lambda *exc: log.append("push") and None)
        assert scope.enter(Recorder(log, "b")) == "b"
    assert log == [
        ("enter", "a"),
        ("enter", "b"),
        ("exit", "b", None),
        "push",
        "callback",
        ("exit", "a", None),
    ]


def test_callback_passes_args_and_kwargs_and_returns_the_callback() -> None:
    seen: list[Any] = []

    def record(*args: Any, **kwargs: Any) -> None:
        seen.append((args, kwargs))

    with Scope() as scope:
        assert scope.callback(record, 1, 2, key="v") is record
        scope.callback(record)
    assert seen == [((), {}), ((1, 2), {"key": "v"})]


def test_callback_rejects_a_non_callable_naming_the_argument() -> None:
    with Scope() as scope, pytest.raises(TypeError, match=r"callback\(callback\)"):
        scope.callback(42)  # type: ignore[call-overload]


def test_a_sync_scope_refuses_an_async_exit_and_never_drops_an_async_release() -> None:
    """An async def given to push() is refused at once (its coroutine would read as "suppress");
    one given to callback() or adopt() fails its release, naming it, where it would never run."""
    import functools

    class Session:
        async def close(self) -> None:  # pragma: no cover - closed, never run
            pass

    async def aexit(*exc_info: object) -> bool:  # pragma: no cover - never called
        return False

    with (
        Scope() as scope,
        pytest.raises(TypeError, match=r"push\(exit\): .*coroutine function.*push_async_exit"),
    ):
        scope.push(aexit)
    for register in (
        lambda scope: scope.callback(Session().close),
        lambda scope: scope.callback(functools.partial(Session.close, Session())),
        lambda scope: scope.adopt(Session()),
        lambda scope: scope.adopt(Session(), release=Session.close),
    ):
        # The with block ends cleanly: the failing release is the error raised.
        failed = pytest.raises(
            TypeError, match=r"(Session\.close|partial).* returned an awaitable.*push_async_callback"
        )
        with failed, Scope() as scope:
            register(scope)


def test_an_exit_returning_an_awaitable_does_not_swallow_the_body_error() -> None:
    async def aexit(*exc_info: object) -> bool:  # pragma: no cover - closed, never run
        return True

    with pytest.raises(KeyError) as caught, Scope() as scope:
        scope.push(lambda *exc_info: aexit())  # a coroutine: truthy, but never an answer
        raise KeyError("body")
    (failure,) = reclaim.cleanup_errors(caught.value)
    assert isinstance(failure, TypeError)
    assert "returned an awaitable" in str(failure)


def test_enter_context_rejects_an_object_without_the_protocol() -> None:
    with Scope() as scope, pytest.raises(TypeError, match="does not support the context manager protocol"):
        scope.enter_context(object())  # type: ignore[arg-type]


def test_special_methods_are_looked_up_on_the_type_like_with() -> None:
    """An instance attribute __exit__ is ignored, as by the with statement."""
    log: list[Any] = []
    rec = Recorder(log, "x")
    rec.__exit__ = lambda *a: log.append("instance")  # type: ignore[method-assign]
    with Scope() as scope:
        scope.enter_context(rec)
    assert log == [("enter", "x"), ("exit", "x", None)]


def test_push_passes_exception_details_and_can_suppress() -> None:
    seen: list[Any] = []

    def exit_fn(typ: Any, exc: Any, tb: Any) -> bool:
        seen.append((typ, exc))
        return True

    err = ValueError("body")
    with Scope() as scope:
        scope.push(exit_fn)
        raise err
    assert seen == [(ValueError, err)]


def test_push_of_a_context_manager_object_registers_its_exit() -> None:
    log: list[Any] = []
    rec = Recorder(log, "r")
    with Scope() as scope:
        assert scope.push(rec) is rec
    assert log == [("exit", "r", None)]


def test_suppression_hides_the_exception_from_later_exits() -> None:
    log: list[Any] = []
    with Scope() as scope:
        scope.enter_context(Recorder(log, "outer"))
        scope.enter_context(Recorder(log, "inner", suppress=True))
        raise KeyError("x")
    assert log[-2:] == [("exit", "inner", KeyError), ("exit", "outer", None)]


def test_pop_all_transfers_ownership() -> None:
    log: list[Any] = []
    with Scope() as scope:
        scope.callback(log.append, "released")
        moved = scope.pop_all()
    assert log == []
    assert isinstance(moved, Scope)
    moved.close()
    assert log == ["released"]


def test_close_releases_and_the_scope_stays_usable() -> None:
    log: list[str] = []
    scope = Scope()
    scope.callback(log.append, "first")
    scope.close()
    scope.callback(log.append, "second")
    scope.close()
    assert log == ["first", "second"]


def test_cleanup_raised_during_a_body_error_has_the_body_error_as_context() -> None:
    body = ValueError("body")
    failure = OSError("release")
    with pytest.raises(ValueError) as info, Scope() as scope:
        scope.callback(raiser(failure))
        raise body
    assert info.value is body
    assert failure.__context__ is body


def test_ten_thousand_releases_do_not_recurse() -> None:
    count = 0

    def bump() -> None:
        nonlocal count
        count += 1

    with Scope() as scope:
        for _ in range(10_000):
            scope.callback(bump)
    assert count == 10_000


def test_behaves_like_exitstack_when_nothing_fails() -> None:
    """The same registrations give the same order of events in ExitStack and Scope."""

    def run(stack_type: type[Any]) -> list[Any]:
        log: list[Any] = []
        with stack_type() as stack:
            stack.enter_context(Recorder(log, "a"))
            stack.callback(log.append, "cb")
            stack.push(Recorder(log, "pushed"))
            stack.enter_context(Recorder(log, "b", suppress=True))
            raise RuntimeError("suppressed by b")
        return log

    assert run(Scope) == run(ExitStack)


# -- No error is lost -----------------------------------------------------------------


def test_body_error_keeps_its_type_and_carries_every_cleanup_failure() -> None:
    first, second = OSError("first registered"), KeyError("second registered")
    with pytest.raises(ValueError, match="body") as info, Scope() as scope:
        scope.callback(raiser(first))
        scope.callback(raiser(second))
        raise ValueError("body")
    # LIFO: the second registered ran (and failed) first.
    assert cleanup_errors(info.value) == (second, first)
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 2
    assert "KeyError" in notes[0] and "OSError" in notes[1]


def test_printed_traceback_shows_each_cleanup_failure() -> None:
    with pytest.raises(ValueError) as info, Scope() as scope:
        scope.callback(raiser(OSError("disk full")))
        scope.callback(raiser(TimeoutError("socket stuck")))
        raise ValueError("body")
    text = "".join(traceback.format_exception(info.value))
    assert "disk full" in text and "socket stuck" in text and "ValueError: body" in text


def test_one_cleanup_failure_with_a_clean_body_is_raised_as_itself() -> None:
    failure = OSError("close failed")
    with pytest.raises(OSError) as info, Scope() as scope:
        scope.callback(raiser(failure))
    assert info.value is failure


def test_several_cleanup_failures_with_a_clean_body_raise_a_group_of_all() -> None:
    """ExitStack raises only one of these (CPython gh-102201); Scope raises all three."""
    failures = [OSError("a"), ValueError("b"), KeyError("c")]
    with pytest.raises(CleanupError) as info, Scope() as scope:
        for failure in failures:
            scope.callback(raiser(failure))
    assert list(info.value.exceptions) == failures[::-1]
    assert isinstance(info.value, ExceptionGroup)
    assert isinstance(info.value, reclaim.ReclaimError)


def test_cleanup_error_group_works_with_except_star() -> None:
    caught: list[BaseException] = []
    try:
        with Scope() as scope:
            scope.callback(raiser(OSError("a")))
            scope.callback(raiser(ValueError("b")))
    except* OSError as group:
        caught.extend(group.exceptions)
    except* ValueError as group:
        caught.extend(group.exceptions)
    assert sorted(type(e).__name__ for e in caught) == ["OSError", "ValueError"]


def test_every_release_runs_even_when_earlier_ones_raise() -> None:
    ran: list[int] = []

    def release(n: int) -> None:
        ran.append(n)
        raise OSError(n)

    with pytest.raises(CleanupError), Scope() as scope:
        for n in range(5):
            scope.callback(release, n)
    assert ran == [4, 3, 2, 1, 0]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_an_interrupt_from_a_release_still_runs_the_rest_and_is_raised_bare(
    interrupt: type[BaseException],
) -> None:
    ran: list[str] = []
    other = OSError("other release failed")
    with pytest.raises(interrupt) as info, Scope() as scope:
        scope.callback(ran.append, "first registered")
        scope.callback(raiser(other))
        scope.callback(raiser(interrupt()))
        scope.callback(ran.append, "last registered")
    assert ran == ["last registered", "first registered"]
    assert cleanup_errors(info.value) == (other,)


def test_an_interrupt_from_a_release_outranks_the_body_error_which_stays_visible() -> None:
    body = ValueError("body")
    with pytest.raises(KeyboardInterrupt) as info, Scope() as scope:
        scope.callback(raiser(KeyboardInterrupt()))
        raise body
    assert info.value.__context__ is body


def test_an_interrupt_in_the_body_keeps_its_type_and_carries_cleanup_failures() -> None:
    failure = OSError("release")
    with pytest.raises(KeyboardInterrupt) as info, Scope() as scope:
        scope.callback(raiser(failure))
        raise KeyboardInterrupt
    assert cleanup_errors(info.value) == (failure,)


def test_suppressing_exit_may_handle_a_release_failure_like_nested_with() -> None:
    """As with nested with statements, an outer exit returning True handles an inner release's error."""
    with Scope() as scope:
        scope.push(lambda *exc: True)
        scope.callback(raiser(OSError("handled by the outer exit")))


def test_body_error_suppressed_later_does_not_lose_an_earlier_release_failure() -> None:
    failure = OSError("release")
    with pytest.raises(OSError) as info, Scope() as scope:
        scope.push(lambda typ, exc, tb: isinstance(exc, ValueError))  # suppresses only ValueError
        scope.callback(raiser(failure))
        raise ValueError("body")
    assert info.value is failure


# -- What a scope knows about what it holds -------------------------------------------


def test_resources_lists_what_is_held_with_the_users_line() -> None:
    log: list[Any] = []
    with Scope() as scope:
        scope.enter(Recorder(log, "a"))  # held-a
        scope.callback(print)  # held-cb
        held = scope.resources
    assert [h.site.lineno for h in held if h.site] == [line_of("held-a"), line_of("held-cb")]
    assert all(h.site and h.site.filename == __file__ for h in held)
    assert "Recorder" in held[0].description
    assert held[1].description == "callback print()"
    assert "acquired at" in str(held[0])


def test_adopt_takes_ownership_and_returns_the_object(tmp_path: Any) -> None:
    path = tmp_path / "f.txt"
    with Scope() as scope:
        f = scope.adopt(open(path, "w"))  # noqa: SIM115 - adopt is the point
        f.write("x")
    assert f.closed


def test_adopt_with_a_release_function() -> None:
    released: list[object] = []
    thing = object()
    with Scope() as scope:
        assert scope.adopt(thing, released.append) is thing
    assert released == [thing]


def test_adopt_without_close_names_the_argument_and_the_fix() -> None:
    with Scope() as scope, pytest.raises(TypeError, match=r"adopt\(obj\).*release="):
        scope.adopt(object())


def test_repr_and_statistics_show_state() -> None:
    scope = Scope()
    assert repr(scope) == "<Scope open, holding 0>"
    with scope:
        scope.callback(print, end="")
        assert repr(scope) == "<Scope entered, holding 1>"
        stats = scope.statistics()
        assert (stats.held, stats.entered) == (1, True)
    stats = scope.statistics()
    assert (stats.held, stats.released, stats.failed, stats.entered) == (0, 1, 0, False)
    with pytest.raises(AttributeError):
        stats.held = 3  # type: ignore[misc]


def test_registration_from_many_threads_loses_nothing() -> None:
    threads, per_thread = 8, 500
    ran: list[int] = []
    barrier = threading.Barrier(threads)
    with Scope() as scope:

        def add(n: int) -> None:
            barrier.wait()
            for i in range(per_thread):
                scope.callback(ran.append, n * per_thread + i)

        workers = [threading.Thread(target=add, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert scope.statistics().held == threads * per_thread
    assert sorted(ran) == list(range(threads * per_thread))


def test_a_scope_collected_while_holding_resources_warns_with_what_and_where() -> None:
    def forget() -> None:
        scope = Scope()
        scope.callback(print)  # forgotten-callback

    with pytest.warns(ResourceWarning) as record:
        forget()
        gc.collect()
    message = str(record[0].message)
    assert "callback print()" in message
    assert f"{__file__}:{line_of('forgotten-callback')}" in message


def test_entering_and_exiting_reports_to_the_tracker_seam() -> None:
    from reclaim import _track

    events: list[tuple[Any, ...]] = []
    previous = (_track.on_acquire, _track.on_release)
    _track.install(
        lambda kind, obj, desc, site: events.append((kind, obj, site[0][1])),
        lambda obj: events.append(("released", obj)),
    )
    try:
        with Scope() as scope:  # scope-entered
            pass
    finally:
        _track.install(*previous)
    assert events == [("scope", scope, line_of("scope-entered")), ("released", scope)]


def test_a_release_that_translates_the_error_with_from_replaces_it() -> None:
    """`raise Domain(...) from exc` in an exit is a deliberate translation, not a cleanup failure."""

    class DomainError(Exception):
        pass

    def translate(typ: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            raise DomainError("translated") from exc

    body = KeyError("driver")
    with pytest.raises(DomainError) as info, Scope() as scope:
        scope.push(translate)
        raise body
    assert info.value.__cause__ is body
    assert cleanup_errors(info.value) == ()


def test_a_release_that_re_raises_what_it_was_shown_is_not_a_failure() -> None:
    def reraise(typ: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            raise exc

    with pytest.raises(ValueError, match="body") as info, Scope() as scope:
        scope.push(reraise)
        raise ValueError("body")
    assert cleanup_errors(info.value) == ()
    assert scope.statistics().failed == 0


@pytest.mark.parametrize("cls", [reclaim.Scope, reclaim.AsyncScope])
def test_arguments_are_refused_naming_the_class_called(cls: type) -> None:
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) takes no arguments"):
        cls(foo=1)
    with pytest.raises(TypeError, match=rf"^{cls.__name__}\(\) takes no arguments"):
        cls(object())
