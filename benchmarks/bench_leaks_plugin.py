"""Cost of checking every test for leaks: ``pytest --reclaim`` vs its peers, on a clean suite.

A generated suite of ``--tests`` small tests, each doing what ordinary tests do
(open and read a file in ``tmp_path``, start and join a thread, open and close
a sqlite3 connection), runs in a fresh ``python -m pytest`` process per
configuration; the CPU time (user + system) of the whole run is measured,
runs are interleaved and the median is reported with its ratio to plain pytest:

* ``pytest``: no leak checking;
* ``--reclaim``: every kind checked per test, ``gc.collect()`` after each test;
* ``--reclaim, no per-test gc``: the same with ``reclaim_collect = false``;
* ``--threadleak``: pytest-threadleak, thread leaks only, call phase only;
* ``tracemalloc=25 + -W error``: the stdlib way to get acquisition sites
  (``PYTHONTRACEMALLOC=25`` and ResourceWarnings turned into failures).

    python benchmarks/bench_leaks_plugin.py [--tests 300] [--reps 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TEST_MODULE = """
import sqlite3
import threading

import pytest


@pytest.mark.parametrize("n", range({count}))
def test_ordinary(n, tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("x" * 100)
    with open(path) as f:
        assert f.read()
    done = threading.Event()
    worker = threading.Thread(target=done.set)
    worker.start()
    worker.join()
    conn = sqlite3.connect(":memory:")
    try:
        conn.execute("select 1").fetchone()
    finally:
        conn.close()
"""

BASE = ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist"]


def configs() -> dict[str, tuple[list[str], dict[str, str]]]:
    out: dict[str, tuple[list[str], dict[str, str]]] = {
        "pytest": ([], {}),
        "--reclaim": (["--reclaim"], {}),
        "--reclaim, no per-test gc": (["--reclaim", "-o", "reclaim_collect=false"], {}),
    }
    if importlib.util.find_spec("pytest_threadleak") is not None:
        out["--threadleak (peer)"] = (["--threadleak"], {})
    out["tracemalloc=25 + -W error (peer)"] = (
        ["-W", "error::ResourceWarning", "-W", "error::pytest.PytestUnraisableExceptionWarning"],
        {"PYTHONTRACEMALLOC": "25"},
    )
    return out


def run_once(directory: Path, args: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one pytest run: steadier than wall time on a busy machine."""
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", *BASE, *args],
            cwd=directory,
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            raise SystemExit(f"pytest {' '.join(args)} failed:\n{out.read()[-2000:]}")
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tests", type=int, default=300)
    parser.add_argument("--reps", type=int, default=3)
    options = parser.parse_args()
    table = configs()
    times: dict[str, list[float]] = {name: [] for name in table}
    with tempfile.TemporaryDirectory(prefix="bench-leaks-plugin-") as tmp:
        directory = Path(tmp)
        (directory / "test_suite.py").write_text(TEST_MODULE.format(count=options.tests))
        (directory / "pytest.ini").write_text("[pytest]\n")
        names = list(table)
        for rep in range(options.reps):
            for name in names[rep % len(names) :] + names[: rep % len(names)]:
                args, env = table[name]
                times[name].append(run_once(directory, args, env))
    base = statistics.median(times["pytest"])
    print(
        f"{options.tests} ordinary tests (file + thread + sqlite3 each), "
        f"CPU time of the whole run, median of {options.reps}, Python {sys.version.split()[0]}"
    )
    print(f"{'configuration':38} {'time':>8} {'ratio':>7} {'per test':>10}")
    for name, values in times.items():
        median = statistics.median(values)
        per_test = (median - base) / options.tests * 1000
        print(f"{name:38} {median:7.2f}s {median / base:6.2f}x {per_test:+8.2f}ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
