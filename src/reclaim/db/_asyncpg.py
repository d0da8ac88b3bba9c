"""asyncpg adapter: reset only what needs resetting (asyncpg.Pool sends a catch-all query on every release).

- **reset** (default, ``"transaction"``): ``ROLLBACK`` only when the connection is in a
  transaction (asyncpg knows it from the server's ReadyForQuery status, no round trip);
  an idle connection is released with zero round trips.
- **reset** ``"session"``: the above, then one round trip of ``pg_advisory_unlock_all()``,
  ``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``, ``SET SESSION AUTHORIZATION DEFAULT``
  (which also undoes ``SET ROLE``: asyncpg's own reset query, ``RESET ALL``, does *not*),
  ``DISCARD TEMP``, ``DISCARD SEQUENCES``, ``DISCARD PLANS`` and a ``DEALLOCATE`` of the
  statements the borrower ``PREPARE``\\ d by SQL. asyncpg's own cached statements are kept
  (a ``DISCARD ALL`` would invalidate them behind its back). Callbacks left by
  ``add_listener`` / ``add_log_listener`` are removed as well.
- **check**: on every reuse, ``conn.is_closed()`` (asyncpg learns of a server-ended session
  from the event loop, no round trip); after ``check_after`` seconds idle, ``SELECT 1``
  bounded by ``check_timeout`` (asyncpg cannot send the empty query).
- **broken**: ``conn.is_closed()``; a connection whose last operation was cancelled
  mid-query is terminated rather than reused.
"""

from __future__ import annotations

import time
import weakref
from typing import Any, Final

__all__ = ["AsyncpgAdapter"]

SESSION_RESET: Final = """\
SELECT pg_advisory_unlock_all();
CLOSE ALL;
UNLISTEN *;
RESET ALL;
SET SESSION AUTHORIZATION DEFAULT;
DISCARD TEMP;
DISCARD SEQUENCES;
DISCARD PLANS;
DO $reclaim$
DECLARE s record;
BEGIN
    FOR s IN SELECT name FROM pg_prepared_statements WHERE from_sql
    LOOP
        EXECUTE 'DEALLOCATE ' || quote_ident(s.name);
    END LOOP;
END
$reclaim$;
"""


class AsyncpgAdapter:
    """Adapter for ``asyncpg.Connection`` (async pools only).

    Example::

        pool = reclaim.db.AsyncConnectionPool(asyncpg.connect, "postgresql://127.0.0.1/test")
    """

    name = "asyncpg"

    def __init__(
        self, *, session: bool = False, check_after: float = 0.5, check_timeout: float = 5.0
    ) -> None:
        self.session = session
        self.check_after = check_after
        self.check_timeout = check_timeout
        # asyncpg connections have __slots__: when each was last given back, kept aside.
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()

    def configure(self, conn: Any) -> None:
        """Start the connection's idle clock (called once per new connection)."""
        self._used[conn] = time.monotonic()

    def in_transaction(self, conn: Any) -> bool:
        """True when the server reported an open or failed transaction."""
        return bool(conn.is_in_transaction())

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """True when asyncpg considers the connection closed or aborted."""
        return bool(conn.is_closed())

    async def check(self, conn: Any) -> None:
        """``is_closed()``; after ``check_after`` idle, ``SELECT 1`` bounded by ``check_timeout``.

        Raises:
            asyncpg.InterfaceError, OSError, TimeoutError: the connection is dead.
        """
        if conn.is_closed():
            raise ConnectionError("the connection was closed (the server ended the session?)")
        if time.monotonic() - self._used.get(conn, 0.0) >= self.check_after:
            await conn.execute("SELECT 1", timeout=self.check_timeout)

    async def reset(self, conn: Any) -> bool:
        """Roll back an open transaction; under ``"session"`` also undo the session state.

        Returns False (discard it) when the connection is closed.
        """
        if conn.is_closed():
            return False
        if conn.is_in_transaction():
            await conn.execute("ROLLBACK")
        if getattr(conn, "_top_xact", None) is not None:
            # A Transaction object the borrower started and never finished: asyncpg
            # would treat the next borrower's transaction() as nested in it.
            conn._top_xact = None
        if self.session:
            await conn.execute(SESSION_RESET)
            for attr in ("_listeners", "_log_listeners"):
                listeners = getattr(conn, attr, None)
                if listeners:
                    listeners.clear()
        self._used[conn] = time.monotonic()
        return True

    async def close(self, conn: Any) -> None:
        """Close politely; a connection that cannot be closed cleanly is terminated."""
        if conn.is_closed():
            return
        try:
            await conn.close(timeout=self.check_timeout)
        except BaseException:
            conn.terminate()
            raise
