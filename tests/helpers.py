"""Small helpers shared by the tests."""

from __future__ import annotations

import inspect


def line_of(marker: str, module: object) -> int:
    """The line number in *module*'s source of the line ending with the comment ``# marker``."""
    source = inspect.getsource(module)  # type: ignore[arg-type]
    for number, text in enumerate(source.splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r} in {module!r}")
