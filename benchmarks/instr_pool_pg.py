"""Client CPU instructions per pooled operation on PostgreSQL, counted by valgrind (callgrind).

Wall-clock ratios in bench_pool_pg.py move by +-15 % on a shared 2-core machine, and
the server's work shares those cores. An instruction count does not: it is the same
within about 1 % from run to run, whatever else the machine does. This tool runs
bench_pool_pg's own contenders (same work, same connections) in a child process under
``valgrind --tool=callgrind``, twice, with LOW and HIGH operations per task, and
prints the difference divided by the extra operations: what one operation costs the
client process (Python, psycopg, libpq, everything in user space; not the kernel, not
the server).

Not part of ``make bench`` (it takes minutes and needs valgrind): run it by hand,
``.venv/bin/python benchmarks/instr_pool_pg.py [--only=AB]``. Skipped cleanly without
valgrind or a server.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_pool_pg as bench  # noqa: E402  (after the path is set)

LOW, HIGH = 20, 120  # operations per task (16 tasks or threads)
ONLY = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--only=")), "AB")
SYNC = [
    "LifoQueue floor (unfair) + rollback",
    bench.FAIR_FLOOR,
    "psycopg_pool ConnectionPool",
    "reclaim.db.ConnectionPool(psycopg.connect)",
]
ASYNC = [
    "psycopg async: LifoQueue floor (autocommit)",
    "psycopg async: deque + future fair FIFO hand-off",
    "psycopg_pool AsyncConnectionPool (autocommit)",
    "reclaim AsyncConnectionPool(psycopg, autocommit)",
]


def child(section: str, name: str, ops: int) -> None:
    """Run one contender: a warm-up round, then THREADS x *ops* operations."""
    if section == "A":
        acquire, close = dict(bench.sync_contenders())[name]()
        bench.SYNC_OPS = ops
        bench.run_sync_once(acquire)
        close()
        return

    async def run() -> None:
        make = next(m for n, _, m in bench.async_contenders() if n == name)
        acquire, aclose, query = await make()
        bench.ASYNC_OPS = ops
        await bench.run_async_once(acquire, query)
        await aclose()

    asyncio.run(run())


def instructions(section: str, name: str, ops: int) -> int:
    out = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "--child",
            section,
            name,
            str(ops),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts in every run
    )
    found = re.search(r"Collected\s*:\s*(\d+)", out.stderr) or re.search(r"I\s+refs:\s*([\d,]+)", out.stderr)
    if found is None:
        raise RuntimeError(f"no instruction count in valgrind's output:\n{out.stderr[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main() -> int:
    if shutil.which("valgrind") is None:
        print("instr_pool_pg: skipped: valgrind is not installed")
        return 0
    problem = bench.server_problem()
    if problem is not None:
        print(f"instr_pool_pg: skipped: {problem}")
        return 0
    extra = bench.THREADS * (HIGH - LOW)
    for section, names, title in (
        ("A", SYNC, "A. sync, 16 threads, pool of 4, acquire + SELECT 1 + rollback + release"),
        ("B", ASYNC, "B. async psycopg, 16 tasks, pool of 4, acquire + SELECT 1 + release"),
    ):
        if section not in ONLY:
            continue
        print(f"{title}: client instructions per operation (callgrind, ({HIGH} - {LOW}) x 16 ops)")
        per_op: dict[str, float] = {}
        for name in names:
            per_op[name] = (instructions(section, name, HIGH) - instructions(section, name, LOW)) / extra
        peer = next(n for n in names if n.startswith("psycopg_pool"))
        for name in names:
            print(
                f"  {name:52s} {per_op[name] / 1e3:8.1f} k/op   "
                f"psycopg_pool / this: {per_op[peer] / per_op[name]:.2f}x"
            )
    return 0


if __name__ == "__main__":
    if "--child" in sys.argv:
        i = sys.argv.index("--child")
        child(sys.argv[i + 1], sys.argv[i + 2], int(sys.argv[i + 3]))
    else:
        sys.exit(main())
