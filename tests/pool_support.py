"""Pooled test objects shared by the Pool test modules (their fixtures live in conftest.py)."""

from __future__ import annotations

import itertools


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
