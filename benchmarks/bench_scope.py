"""Scope vs contextlib.ExitStack: enter + exit of a scope holding 3 callbacks, in one run.

Goal (issue 2): Scope at most 1.3x ExitStack. Both are timed interleaved in
the same process, several repetitions, and the median per-operation time is
reported with the ratio.
"""

from __future__ import annotations

import platform
import statistics
import sys
import timeit
from contextlib import ExitStack

import reclaim


def noop(_: int) -> None:
    pass


def with_exitstack() -> None:
    with ExitStack() as stack:
        stack.callback(noop, 1)
        stack.callback(noop, 2)
        stack.callback(noop, 3)


def with_scope() -> None:
    with reclaim.Scope() as scope:
        scope.callback(noop, 1)
        scope.callback(noop, 2)
        scope.callback(noop, 3)


def with_exitstack_enter() -> None:
    with ExitStack() as stack:
        stack.enter_context(NULL)
        stack.enter_context(NULL)
        stack.enter_context(NULL)


def with_scope_enter() -> None:
    with reclaim.Scope() as scope:
        scope.enter(NULL)
        scope.enter(NULL)
        scope.enter(NULL)


class _Null:
    def __enter__(self) -> _Null:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


NULL = _Null()


def measure(fn: object, number: int, repeat: int) -> float:
    """Median seconds per call over *repeat* runs of *number* calls."""
    times = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(times) / number


def main() -> None:
    quick = "--quick" in sys.argv
    number, rounds = (20_000, 3) if quick else (100_000, 7)
    pairs = {
        "3 callbacks": (with_exitstack, with_scope),
        "3 context managers": (with_exitstack_enter, with_scope_enter),
    }
    where = f"CPython {platform.python_version()}, {platform.machine()}"
    print(f"Scope vs ExitStack — {where}, {number:,} ops x {rounds}")
    print(f"{'workload':<22}{'ExitStack µs':>14}{'Scope µs':>12}{'ratio':>8}  goal")
    for name, (base, ours) in pairs.items():
        base_t: list[float] = []
        ours_t: list[float] = []
        for _ in range(rounds):  # interleave so drift hits both alike
            base_t.append(measure(base, number, 1))
            ours_t.append(measure(ours, number, 1))
        b, o = statistics.median(base_t) * 1e6, statistics.median(ours_t) * 1e6
        goal = "<= 1.30x (issue 2)" if name == "3 callbacks" else "-"
        print(f"{name:<22}{b:>14.2f}{o:>12.2f}{o / b:>7.2f}x  {goal}")


if __name__ == "__main__":
    main()
