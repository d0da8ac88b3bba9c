"""atomic_write against a plain open/write/close and against the PyPI peers with the same guarantees.

One run, 4 KiB files, each write replacing an existing file in a fresh temp
directory (the case atomic writes exist for). Variants are measured in
interleaved rounds and the median round is kept, so drift hits all alike.

* not durable: plain ``open/write/close`` (no guarantee at all) vs
  ``atomic_write(durable=False)`` vs ``safer.open(temp_file=True)`` (temp file +
  ``os.replace``, no fsync: the same promise).
* durable: plain write + ``fsync`` (durable but not atomic) vs
  ``atomic_write()`` vs ``atomicwrites.atomic_write`` (fsync of file and
  directory: the same promise; archived upstream, still installable).
"""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

from reclaim.files import atomic_write

SIZE = 4096
DATA = os.urandom(SIZE)


def plain(path: str) -> None:
    with open(path, "wb") as f:
        f.write(DATA)


def plain_fsync(path: str) -> None:
    with open(path, "wb") as f:
        f.write(DATA)
        f.flush()
        os.fsync(f.fileno())


def reclaim_fast(path: str) -> None:
    with atomic_write(path, "wb", durable=False) as f:
        f.write(DATA)


def reclaim_durable(path: str) -> None:
    with atomic_write(path, "wb") as f:
        f.write(DATA)


def peers() -> dict[str, Callable[[str], None] | None]:
    found: dict[str, Callable[[str], None] | None] = {"safer": None, "atomicwrites": None}
    try:
        import safer

        def with_safer(path: str) -> None:
            with safer.open(path, "wb", temp_file=True) as f:
                f.write(DATA)

        found["safer"] = with_safer
    except ImportError:
        pass
    try:
        import atomicwrites

        def with_atomicwrites(path: str) -> None:
            with atomicwrites.atomic_write(path, mode="wb", overwrite=True) as f:
                f.write(DATA)

        found["atomicwrites"] = with_atomicwrites
    except ImportError:
        pass
    return found


def measure(
    variants: dict[str, Callable[[str], None]], directory: str, per_round: int, rounds: int
) -> dict[str, float]:
    """Median over rounds of the mean seconds per write, variants interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    paths = {}
    for index, (name, fn) in enumerate(variants.items()):
        paths[name] = os.path.join(directory, f"target-{index}.bin")
        for _ in range(10):  # warm up, and make the target exist
            fn(paths[name])
    for _ in range(rounds):
        for name, fn in variants.items():
            path = paths[name]
            start = time.perf_counter()
            for _ in range(per_round):
                fn(path)
            samples[name].append((time.perf_counter() - start) / per_round)
    return {name: statistics.median(values) for name, values in samples.items()}


def report(title: str, results: dict[str, float], base: str) -> None:
    print(f"\n{title}")
    for name, seconds in results.items():
        print(f"  {name:<34} {seconds * 1e6:9.1f} µs/write   {seconds / results[base]:5.2f}x {base}")


def main() -> int:
    found = peers()
    # BENCH_DIR=/dev/shm measures the syscall overhead alone: tmpfs has no writeback to pay for.
    directory = tempfile.mkdtemp(prefix="bench-files-", dir=os.environ.get("BENCH_DIR") or None)
    try:
        print(
            f"bench_files: {SIZE} B files replacing an existing file; Python {platform.python_version()}, "
            f"{os.cpu_count()} cores, {platform.system()} {platform.release()}, dir {directory}"
        )
        fast: dict[str, Callable[[str], None]] = {
            "plain open/write/close": plain,
            "atomic_write(durable=False)": reclaim_fast,
        }
        if found["safer"] is not None:
            fast["safer.open(temp_file=True)"] = found["safer"]
        fast_results = measure(fast, directory, per_round=400, rounds=9)
        report(
            "not durable (survives a process crash, not a power cut)", fast_results, "plain open/write/close"
        )

        durable: dict[str, Callable[[str], None]] = {
            "plain write + fsync": plain_fsync,
            "atomic_write()": reclaim_durable,
        }
        if found["atomicwrites"] is not None:
            durable["atomicwrites.atomic_write"] = found["atomicwrites"]
        durable_results = measure(durable, directory, per_round=40, rounds=7)
        report("durable (fsync; survives a power cut)", durable_results, "plain write + fsync")

        print("\nratios")
        ratio = fast_results["atomic_write(durable=False)"] / fast_results["plain open/write/close"]
        verdict = "met" if ratio <= 1.5 else "MISSED"
        print(
            f"  atomic_write(durable=False) / plain open-write-close = {ratio:.2f}x (goal <= 1.5x: {verdict})"
        )
        for peer, ours, results in (
            ("safer.open(temp_file=True)", "atomic_write(durable=False)", fast_results),
            ("atomicwrites.atomic_write", "atomic_write()", durable_results),
        ):
            if peer in results:
                print(f"  {ours} / {peer} = {results[ours] / results[peer]:.2f}x")
            else:
                print(f"  {peer}: not installed (pip install -e '.[bench]')")
        durable_cost = durable_results["atomic_write()"] / fast_results["atomic_write(durable=False)"]
        print(f"  atomic_write() / atomic_write(durable=False) = {durable_cost:.1f}x (the price of fsync)")
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
