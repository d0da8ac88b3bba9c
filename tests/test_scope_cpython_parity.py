"""CPython's own ExitStack conformance tests, run against Scope and AsyncScope.

The interpreter ships them in its ``test`` package (``test.test_contextlib``
and ``test.test_contextlib_async``); they are imported, not copied. Tests that
read ExitStack's private ``_exit_callbacks`` are skipped, and the few that
assert the behaviour Scope changes on purpose (a cleanup error replacing the
body's error) are expected to fail, each with the reason.
"""

from __future__ import annotations

import unittest
from typing import Any

import pytest

import reclaim

test_contextlib = pytest.importorskip(
    "test.test_contextlib", reason="this Python ships without its test suite"
)

# Tests that inspect ExitStack internals (the private _exit_callbacks deque).
INTERNALS = {
    "test_callback",
    "test_push",
    "test_enter_context",
    "test_enter_context_errors",
    "test_instance_bypass",
    "test_instance_docs",
    "test_exit_exception_traceback",  # asserts ExitStack's own frame names in the traceback
    "test_async_callback",
    "test_async_push",
    "test_enter_async_context",
    "test_enter_async_context_errors",
    "test_instance_bypass_async",
}
# Tests asserting that a cleanup's own exception replaces the body's: Scope keeps the body's
# error and attaches the cleanup failure instead (the point of Scope; see reclaim/scope.py).
DELIBERATELY_DIFFERENT = {
    "test_exit_exception_chaining",
    "test_exit_exception_chaining_suppress",
    "test_exit_exception_with_correct_context",
    "test_exit_exception_with_existing_context",
    "test_exit_exception_explicit_none_context",
    "test_async_exit_exception_chaining",
    "test_async_exit_exception_explicit_none_context",
}


def _cases(base: type[Any], stack: type[Any]) -> list[Any]:
    class Case(base, unittest.TestCase):  # type: ignore[misc,valid-type]
        exit_stack = stack
        callback_error_internal_frames: list[tuple[str, str]] = []

    loader = unittest.defaultTestLoader
    return [pytest.param(case, id=case._testMethodName) for case in loader.loadTestsFromTestCase(Case)]


def _run(case: unittest.TestCase) -> None:
    name = case._testMethodName
    if name in INTERNALS:
        pytest.skip("reads ExitStack's private _exit_callbacks")
    result = unittest.TestResult()
    case.run(result)
    problems = result.failures + result.errors
    if name in DELIBERATELY_DIFFERENT:
        assert problems, f"{name} passed: Scope no longer differs from ExitStack here; update the list"
        return
    assert not problems, problems[0][1]


@pytest.mark.parametrize("case", _cases(test_contextlib.TestBaseExitStack, reclaim.Scope))
def test_cpython_exitstack_suite_on_scope(case: unittest.TestCase) -> None:
    _run(case)


def _async_cases() -> list[Any]:
    try:
        from test import test_contextlib_async
    except ImportError:  # pragma: no cover - same condition as the importorskip above
        return []
    base = test_contextlib_async.TestAsyncExitStack
    # The suite drives AsyncExitStack through a sync wrapper subclass (its `exit_stack`); graft
    # the wrapper's methods onto AsyncScope the same way.
    wrapper = {
        k: v
        for k, v in vars(base.exit_stack).items()
        if k not in ("__module__", "__dict__", "__weakref__", "__doc__")
    }
    return _cases(base, type("SyncAsyncScope", (reclaim.AsyncScope,), wrapper))


@pytest.mark.parametrize("case", _async_cases())
def test_cpython_async_exitstack_suite_on_async_scope(case: unittest.TestCase) -> None:
    _run(case)
