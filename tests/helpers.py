"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable


def line_of(marker: str, module: object) -> int:
    """The line number in *module*'s source of the line ending with the comment ``# marker``."""
    source = inspect.getsource(module)  # type: ignore[arg-type]
    for number, text in enumerate(source.splitlines(), 1):
        if text.rstrip().endswith(f"# {marker}"):
            return number
    raise AssertionError(f"no line marked {marker!r} in {module!r}")


def eventually(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll *condition* until it holds (a deadline, not a sleep-as-synchronisation)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.001)


async def until(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    """Let the event loop run until *condition* holds (a deadline, not a sleep-as-synchronisation)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.001)
