"""Pooled test objects shared by the Pool test modules (their fixtures live in conftest.py)."""

from __future__ import annotations

import itertools
import os
import sys
import threading
import traceback
import warnings
from collections.abc import Callable
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


def run_in_child(body: Callable[[], None]) -> None:
    """Fork; run *body* in the child (exit status 0 when it passed); wait and assert here."""
    with warnings.catch_warnings():
        # 3.12+ warns about forking a process with threads (pytest's own, other pools');
        # the child below uses no lock those threads could hold.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        status = 1
        try:
            body()
            status = 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child's assertions failed (see stderr)"
