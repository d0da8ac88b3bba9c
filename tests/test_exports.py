"""The public surface: every name in reclaim.__all__ exists, is documented and belongs to reclaim."""

from __future__ import annotations

import inspect

import pytest

import reclaim

NAMES = sorted(set(reclaim.__all__) - {"__version__"})


def test_all_is_sorted_and_unique() -> None:
    assert len(reclaim.__all__) == len(set(reclaim.__all__))


@pytest.mark.parametrize("name", NAMES)
def test_public_name_has_a_docstring_and_lives_in_reclaim(name: str) -> None:
    obj = getattr(reclaim, name)
    assert inspect.getdoc(obj), f"reclaim.{name} has no docstring"
    module = getattr(obj, "__module__", "")
    assert module.startswith("reclaim"), f"reclaim.{name} comes from {module}"


def test_version_is_a_string() -> None:
    assert isinstance(reclaim.__version__, str)
    assert reclaim.__version__.count(".") >= 2


def test_package_ships_type_information() -> None:
    from importlib.resources import files

    assert files("reclaim").joinpath("py.typed").is_file()
