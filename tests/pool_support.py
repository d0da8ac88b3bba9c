"""Pooled test objects shared by the Pool test modules (their fixtures live in conftest.py)."""

from __future__ import annotations

import itertools
import threading
from typing import Any

from helpers import eventually


class Thing:
    """A pooled object that records how often it was closed."""

    ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(Thing.ids)
        self.closes = 0
        self.alive = True

    def close(self) -> None:
        self.closes += 1
        self.alive = False


class Factory:
    """Makes Things, remembers them, and fails on demand."""

    def __init__(self) -> None:
        self.made: list[Thing] = []
        self.fail_next = 0

    def __call__(self) -> Thing:
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionRefusedError("server down")
        thing = Thing()
        self.made.append(thing)
        return thing


def queued_waiter(pool: Any, timeout: float = 30.0) -> tuple[threading.Thread, list[Any]]:
    """A thread in ``pool.acquire(timeout=...)``, queued once this returns; what it got (inside
    its with-block, then released) is appended to the list."""
    got: list[Any] = []

    def wait() -> None:
        with pool.acquire(timeout=timeout) as thing:
            got.append(thing)

    waiter = threading.Thread(target=wait)
    waiter.start()
    eventually(lambda: pool.statistics().waiting == 1, "waiter queued")
    return waiter, got
