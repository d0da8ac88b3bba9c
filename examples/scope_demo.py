"""Scope at work: several resources, a failing body, a failing cleanup, and nothing lost.

Run it with `python examples/scope_demo.py`.
"""

from __future__ import annotations

import sqlite3
import tempfile
import traceback
from pathlib import Path

import reclaim


def flush_cache() -> None:
    raise OSError("cache flush failed: disk full")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        log_path = Path(tmp) / "app.log"
        print("1. A body that fails while a cleanup also fails:\n")
        try:
            with reclaim.Scope() as scope:
                log = scope.enter(open(log_path, "w"))  # noqa: SIM115 - the scope owns it
                db = scope.adopt(sqlite3.connect(":memory:"))
                scope.callback(flush_cache)
                print("   holding:")
                for held in scope.resources:
                    print(f"     - {held}")
                log.write("starting\n")
                db.execute("SELECT no_such_column FROM no_such_table")
        except sqlite3.OperationalError as exc:
            print("\n   The body's error arrives with its own type, so `except` still works,")
            print("   and the failed cleanup is attached, not lost:\n")
            print("   " + "".join(traceback.format_exception_only(exc)).replace("\n", "\n   "))
            print(f"   log file closed: {log.closed}")

        print("2. Only cleanups fail (ExitStack would keep one of the two):\n")
        try:
            with reclaim.Scope() as scope:
                scope.callback(flush_cache)
                scope.callback(db.execute, "SELECT 1")  # db is closed now: this fails too
        except reclaim.CleanupError as group:
            for failure in group.exceptions:
                print(f"   - {type(failure).__name__}: {failure}")


if __name__ == "__main__":
    main()
