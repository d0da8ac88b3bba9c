"""sqlite3 adapter: rollback only inside a transaction, ``SELECT 1`` ping, closed/corrupt means broken.

sqlite3 connections refuse to be used from a thread other than the one that
made them unless ``check_same_thread=False``; a pool lends them to whichever
thread asks, so :meth:`SqliteAdapter.prepare` sets it (the pool guarantees one
user at a time). Each ``":memory:"`` connection is its own empty database; use
a file, or ``"file:name?mode=memory&cache=shared"`` with ``uri=True``, to share.
"""

from __future__ import annotations

import sqlite3
from typing import Any

__all__ = ["SqliteAdapter"]

#: Result codes after which the connection (or its file) cannot be trusted.
_BROKEN_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_CANTOPEN"})


class SqliteAdapter:
    """Adapter for the standard library's ``sqlite3``.

    Example::

        pool = reclaim.db.ConnectionPool(sqlite3.connect, "app.db", max_size=4)
    """

    name = "sqlite3"

    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Allow use from any thread (one at a time, which the pool guarantees)."""
        kwargs.setdefault("check_same_thread", False)
        return args, kwargs

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        """``conn.in_transaction``: no query needed."""
        return conn.in_transaction

    def reset(self, conn: sqlite3.Connection) -> None:
        """Roll back only when a transaction is open."""
        if conn.in_transaction:
            conn.rollback()

    def check(self, conn: sqlite3.Connection) -> None:
        """``SELECT 1``; raises ProgrammingError on a closed connection."""
        conn.execute("SELECT 1").fetchone()

    def is_broken(self, conn: sqlite3.Connection, exc: BaseException | None = None) -> bool:
        """Closed connection, corrupt or vanished file, or an I/O error."""
        if exc is None:
            try:
                conn.total_changes  # noqa: B018 - raises ProgrammingError when closed
            except sqlite3.ProgrammingError:
                return True
            return False
        if isinstance(exc, sqlite3.ProgrammingError):
            return "closed" in str(exc)
        if isinstance(exc, sqlite3.Error):
            code = getattr(exc, "sqlite_errorname", "") or ""
            return code in _BROKEN_CODES or code.startswith("SQLITE_IOERR")
        return False

    def close(self, conn: sqlite3.Connection) -> None:
        """``conn.close()`` (an open transaction is rolled back by sqlite)."""
        conn.close()
