"""Every public error: a ReclaimError, also the builtin whose meaning fits, with a one-line docstring."""

from __future__ import annotations

import inspect

import pytest

import reclaim
from reclaim import errors

PUBLIC_ERRORS = [
    obj
    for name, obj in vars(errors).items()
    if inspect.isclass(obj)
    and issubclass(obj, BaseException)
    and not name.startswith("_")
    and obj.__module__ == errors.__name__
]


def test_there_are_errors_to_walk() -> None:
    assert reclaim.ReclaimError in PUBLIC_ERRORS
    assert len(PUBLIC_ERRORS) >= 8


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda e: e.__name__)
def test_error_is_a_reclaim_error_and_a_fitting_builtin(error: type[BaseException]) -> None:
    assert issubclass(error, reclaim.ReclaimError)
    if error is not reclaim.ReclaimError:
        builtin_bases = [
            base
            for base in error.__mro__[1:]
            if base.__module__ == "builtins" and base not in (Exception, BaseException, object)
        ]
        assert builtin_bases, f"{error.__name__} should also subclass the builtin whose meaning fits"


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda e: e.__name__)
def test_error_has_a_one_line_summary(error: type[BaseException]) -> None:
    doc = inspect.getdoc(error)
    assert doc, f"{error.__name__} has no docstring"
    summary = doc.splitlines()[0]
    assert summary.endswith("."), summary
    assert len(summary) <= 100


@pytest.mark.parametrize("error", PUBLIC_ERRORS, ids=lambda e: e.__name__)
def test_error_is_exported_from_the_package(error: type[BaseException]) -> None:
    assert getattr(reclaim, error.__name__) is error


def test_errors_map_onto_the_builtins_callers_already_catch() -> None:
    assert issubclass(reclaim.PoolTimeout, TimeoutError)
    assert issubclass(reclaim.LockTimeout, TimeoutError)
    assert issubclass(reclaim.PoolClosed, reclaim.ResourceClosed)
    assert issubclass(reclaim.LeakError, AssertionError)
    assert issubclass(reclaim.CleanupError, ExceptionGroup)
