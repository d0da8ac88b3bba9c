"""asyncpg adapter: reset only what needs resetting (asyncpg.Pool sends a catch-all query on every release).

- **reset** (default, ``"transaction"``): ``ROLLBACK`` only when the connection is in a
  transaction (asyncpg knows it from the server's ReadyForQuery status, no round trip);
  an idle connection is released with zero round trips.
- **reset** ``"session"``: the above, then one round trip of ``pg_catalog.pg_advisory_unlock_all()``,
  ``CLOSE ALL``, ``UNLISTEN *``, ``RESET ALL``, ``SET SESSION AUTHORIZATION DEFAULT``
  (which also undoes ``SET ROLE``: asyncpg's own reset query, ``RESET ALL``, does *not*),
  ``DISCARD TEMP``, ``DISCARD SEQUENCES``, ``DISCARD PLANS`` and a ``DEALLOCATE`` of the
  statements the borrower ``PREPARE``\\ d by SQL. asyncpg's own cached statements are kept
  (a ``DISCARD ALL`` would invalidate them behind its back). Callbacks a borrower left on
  the connection object are removed as well: ``add_listener`` ones all (``UNLISTEN *``
  ended their channels), ``add_log_listener``, ``add_query_logger`` and
  ``add_termination_listener`` ones back to those the pool's ``configure`` left (a query
  logger would otherwise read the next borrower's queries and their arguments).
- **check**: on every reuse, ``conn.is_closed()`` and a zero-timeout ``poll()`` of the
  socket (no round trip): asyncpg learns of a server-ended session only when the event loop
  reads it, so bytes still waiting on an idle connection (the server's goodbye, or a
  notification) trigger a ``SELECT 1``, as does ``check_after`` seconds of idleness; the
  round trip is bounded by ``check_timeout`` (asyncpg cannot send the empty query).
- **broken**: ``conn.is_closed()``; a connection whose last operation was cancelled
  mid-query is terminated rather than reused.
- **event loops**: an asyncpg connection works only in the loop it was made in. A pool used
  again from a new loop (a second ``asyncio.run``) finds, at the check, that an idle
  connection belongs to another loop and discards it; closing it ends the session without
  that loop (its socket is closed here when that loop is closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final

from ._adapter import NetworkAdapter
from ._watchdog import Guard

__all__ = ["AsyncpgAdapter"]

#: The session reset. Its first line runs under the borrower's search_path (RESET ALL comes
#: after it), which may put a schema of the borrower's before pg_catalog: unqualified, the
#: call could find a function of that schema and keep the borrower's advisory locks.
SESSION_RESET: Final = """\
SELECT pg_catalog.pg_advisory_unlock_all();
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


#: The sets of callbacks on an asyncpg connection object that a session reset puts back to what
#: the pool's configure left: they see notices, every query with its arguments, the close.
_CALLBACKS: Final = ("_log_listeners", "_query_loggers", "_termination_listeners")


_Callbacks = tuple[frozenset[Any], ...]
_NO_CALLBACKS: Final[_Callbacks] = tuple(frozenset() for _ in _CALLBACKS)


def _callbacks(conn: Any) -> _Callbacks:
    return tuple(frozenset(getattr(conn, attr, ())) for attr in _CALLBACKS)


def _foreign(conn: Any) -> asyncio.AbstractEventLoop | None:
    """The loop *conn* belongs to when that is not the running one, else None."""
    loop: asyncio.AbstractEventLoop | None = getattr(conn, "_loop", None)
    return loop if loop is not None and loop is not asyncio.get_running_loop() else None


def _abandon(conn: Any, loop: asyncio.AbstractEventLoop) -> None:
    """End a connection of another event loop without awaiting anything in this one."""
    if loop.is_running():  # in another thread: let that loop terminate it
        loop.call_soon_threadsafe(conn.terminate)
        return
    if not loop.is_closed():
        conn.terminate()  # its socket is closed when that loop runs again (or collected)
        return
    # terminate() sends Terminate and marks the connection closed; its transport's close then
    # fails on the dead loop (RuntimeError), which the lines below do instead.
    with contextlib.suppress(Exception):
        conn.terminate()
    transport = getattr(conn, "_transport", None)
    if transport is not None and getattr(transport, "_sock", None) is not None:
        # What the loop would have run: closes the socket, so the server ends the session.
        getattr(transport, "_call_connection_lost", lambda exc: None)(None)


def _socket_of(conn: Any) -> Any:
    """The connection's socket (asyncio's wrapper of it), or None."""
    transport = getattr(conn, "_transport", None)
    return transport.get_extra_info("socket") if transport is not None else None


class AsyncpgAdapter(NetworkAdapter):
    """Adapter for ``asyncpg.Connection`` (async pools only).

    Example::

        pool = reclaim.db.AsyncConnectionPool(asyncpg.connect, "postgresql://127.0.0.1/test")
    """

    name = "asyncpg"

    def __init__(
        self,
        *,
        session: bool = False,
        check_after: float = 0.5,
        check_timeout: float = 5.0,
        reset_timeout: float | None = 5.0,
    ) -> None:
        super().__init__(
            session=session, check_after=check_after, check_timeout=check_timeout, reset_timeout=reset_timeout
        )
        # asyncpg connections have __slots__: when each was last given back, kept aside,
        # and a zero-timeout poll of each one's socket.
        self._used: weakref.WeakKeyDictionary[Any, float] = weakref.WeakKeyDictionary()
        self._polls: weakref.WeakKeyDictionary[Any, Callable[[float], object]] = weakref.WeakKeyDictionary()
        self._callbacks: weakref.WeakKeyDictionary[Any, _Callbacks] = weakref.WeakKeyDictionary()

    def configure(self, conn: Any) -> None:
        """Start the connection's idle clock and socket probe (once per new connection)."""
        self._used[conn] = time.monotonic()
        sock = _socket_of(conn)
        if sock is not None and hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN)
            self._polls[conn] = poller.poll
        self._callbacks[conn] = _callbacks(conn)

    def configured(self, conn: Any) -> None:
        """After the pool's own ``configure=``: the callbacks it added are the connection's baseline."""
        self._callbacks[conn] = _callbacks(conn)

    def in_transaction(self, conn: Any) -> bool:
        """True when the server reported an open or failed transaction."""
        return bool(conn.is_in_transaction())

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """True when asyncpg considers the connection closed or aborted, or it belongs to
        another event loop."""
        return bool(conn.is_closed()) or _foreign(conn) is not None

    def check(self, conn: Any) -> Coroutine[Any, Any, object] | None:
        """``is_closed()``; after ``check_after`` idle, ``SELECT 1`` bounded by ``check_timeout``.

        Returns None (nothing to await) when no round trip is due.

        Raises:
            ConnectionError: the connection was closed (the server ended the session).
        """
        if conn.is_closed():
            raise ConnectionError("the connection was closed (the server ended the session?)")
        if _foreign(conn) is not None:
            raise ConnectionError("the connection belongs to another event loop (asyncpg's are tied to one)")
        poll = self._polls.get(conn)
        if (poll is not None and poll(0)) or time.monotonic() - self._used.get(conn, 0.0) >= self.check_after:
            # Bytes the event loop has not read yet on an idle connection: a notification,
            # or the server's goodbye (pg_terminate_backend, shutdown). A round trip tells.
            return conn.execute("SELECT 1", timeout=self.check_timeout)  # type: ignore[no-any-return]
        return None

    def reset(self, conn: Any) -> bool | Coroutine[Any, Any, bool]:
        """Roll back an open transaction; under ``"session"`` also undo the session state.

        Returns False (discard it) when the connection is closed, True at once when there
        is nothing to undo, else a coroutine doing the round trips.
        """
        if conn.is_closed():
            return False
        if not self.session and not conn.is_in_transaction() and getattr(conn, "_top_xact", None) is None:
            self._used[conn] = time.monotonic()
            return True
        return self._reset(conn)

    async def _reset(self, conn: Any) -> bool:
        sock = _socket_of(conn)
        with Guard(conn, sock.fileno() if sock is not None else None, self.reset_timeout):
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            if self.session:
                await conn.execute(SESSION_RESET)
        if getattr(conn, "_top_xact", None) is not None:
            # A Transaction object the borrower started and never finished: asyncpg
            # would treat the next borrower's transaction() as nested in it.
            conn._top_xact = None
        if self.session:
            listeners = getattr(conn, "_listeners", None)
            if listeners:
                listeners.clear()
            self._restore_callbacks(conn)
        self._used[conn] = time.monotonic()
        return True

    def _restore_callbacks(self, conn: Any) -> None:
        """Put the connection's log listeners, query loggers and termination listeners back to
        what the pool's ``configure`` left (none, for a connection this adapter did not configure)."""
        baseline = self._callbacks.get(conn, _NO_CALLBACKS)
        for attr, kept in zip(_CALLBACKS, baseline, strict=True):
            callbacks = getattr(conn, attr, None)
            if isinstance(callbacks, set) and not callbacks <= kept:
                callbacks.intersection_update(kept)

    async def close(self, conn: Any) -> None:
        """Close politely; a connection that cannot be closed cleanly is terminated."""
        if conn.is_closed():
            return
        loop = _foreign(conn)
        if loop is not None:
            _abandon(conn, loop)
            return
        try:
            await conn.close(timeout=self.check_timeout)
        except BaseException:
            conn.terminate()
            raise
