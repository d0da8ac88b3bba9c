"""psycopg 3 adapters (sync and async): what a pool needs to know about a PostgreSQL connection.

- **reset** (default, ``"transaction"``): a ``ROLLBACK`` only when libpq's transaction
  status says a transaction is open (``INTRANS``) or failed (``INERROR``); an idle
  connection costs no round trip. The client-side options a borrower may have changed
  (``autocommit``, ``isolation_level``, ``read_only``, ``deferrable``) are put back to the
  values the connection had when the pool made it; that costs nothing either.
- **reset** ``"session"``: the above, then ``DISCARD ALL`` (run in autocommit; psycopg's
  prepared-statement cache is emptied after it, as the server's is): session settings, ``SET ROLE``
  and ``SET SESSION AUTHORIZATION``, temporary tables, advisory locks, ``LISTEN``,
  prepared statements, open cursors, cached plans and sequence state are all gone; so are
  the notify and notice handlers a borrower added to the connection object, the
  ``row_factory``, cursor factories, ``prepare_threshold``, ``prepared_max`` and
  ``adapters`` it changed (back to what the connection had when the pool's ``configure``
  finished), and the notifications it received and did not read. Session settings go back to
  the connect options' (``options="-c search_path=..."``), so a ``SET`` in ``configure``
  reaches only the connection's first borrower.
- **connect**: bounded by ``connect_timeout``, 10 s unless the conninfo, the keywords or
  ``PGCONNECT_TIMEOUT`` set it (psycopg's own default is 130 s, and the pool connects in
  the acquiring caller).
- **check**, in two tiers. On reuse after ``probe_after`` (1 ms) idle, a zero-timeout
  ``poll()`` of the socket (about 0.3 µs, no round trip): an idle connection has nothing
  to read unless the server ended the session (``pg_terminate_backend``, a restart: its
  error and EOF are waiting) or sent a notification, so readable means "consume and see";
  a killed session is not lent. Only when the connection was idle ``check_after`` seconds
  or more, one empty query (the server answers ``EmptyQueryResponse``: the cheapest real
  round trip, no transaction started), driven at the libpq level so it is bounded by
  ``check_timeout`` even when the network has gone silent. A check that times out leaves
  the connection mid-query, so it is reported broken and discarded.
- **two-phase**: a connection given back after ``tpc_prepare()`` and before ``tpc_commit()``
  / ``tpc_rollback()`` is discarded, under either policy (psycopg would let the next
  borrower finish that transaction).
- **broken**: ``conn.closed``, ``conn.broken``, libpq status ``BAD``, or a transaction
  status of ``ACTIVE`` / ``UNKNOWN`` (a query still in flight: a cancelled task or a
  timed-out check left it there). An ``OperationalError`` is a disconnect exactly when it
  left the connection in one of those states.
"""

from __future__ import annotations

import asyncio
import operator
import os
import select
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Final

import psycopg
from psycopg import pq
from psycopg.adapt import AdaptersMap
from psycopg.conninfo import conninfo_to_dict

from ._adapter import NetworkAdapter, readability_probe
from ._watchdog import Guard

__all__ = ["AsyncPsycopgAdapter", "PsycopgAdapter"]

_IDLE: Final = pq.TransactionStatus.IDLE
_OPEN: Final = (pq.TransactionStatus.INTRANS, pq.TransactionStatus.INERROR)
_IN_FLIGHT: Final = (pq.TransactionStatus.ACTIVE, pq.TransactionStatus.UNKNOWN)
_BAD: Final = pq.ConnStatus.BAD
_COMMAND_OK: Final = pq.ExecStatus.COMMAND_OK
_monotonic = time.monotonic
_READ: Final = 1
_WRITE: Final = 2

#: Client-side options psycopg applies at the next BEGIN; a borrower may change them.
_OPTIONS: Final = ("autocommit", "isolation_level", "read_only", "deferrable")
_NOTHING: Final[list[tuple[str, Any]]] = []
_PUBLIC: Final = operator.attrgetter(*_OPTIONS)
#: What psycopg's option properties return: one C call on every release instead of four
#: Python property calls. Used only when they agree with the properties (_options_reader).
_PRIVATE: Final = operator.attrgetter(*(f"_{name}" for name in _OPTIONS))
#: The ``connect_timeout`` (seconds) a pool's connections get when none is set (PyMySQL's default).
CONNECT_TIMEOUT: Final = 10
#: Reuse within this many seconds of the release skips even the socket probe (the pool does
#: not call check): the window in which a session ended by the server could still be lent.
PROBE_AFTER: Final = 0.001


class CheckTimeout(psycopg.OperationalError):
    """The liveness check got no answer within ``check_timeout`` (network silent?)."""


def _ping_steps(pgconn: pq.abc.PGconn) -> Generator[int, None, None]:
    """Send an empty query and read its answer; yields _READ/_WRITE when it must wait."""
    pgconn.send_query(b"")
    while pgconn.flush():
        yield _WRITE
    while True:
        pgconn.consume_input()
        while pgconn.is_busy():
            yield _READ
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            return
        if result.status == pq.ExecStatus.FATAL_ERROR:
            message = (result.error_message or b"").decode("utf-8", "replace").strip()
            raise psycopg.OperationalError(f"liveness check failed: {message}")


def _wait_fd(fd: int, what: int, deadline: float, timeout: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise CheckTimeout(f"no answer from the server within check_timeout={timeout} s")
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN if what == _READ else select.POLLOUT)
        ready: object = poller.poll(remaining * 1000.0)
    else:  # Windows
        fds = [fd]
        ready = any(
            select.select(fds, [], [], remaining) if what == _READ else select.select([], fds, [], remaining)
        )
    if not ready:
        raise CheckTimeout(f"no answer from the server within check_timeout={timeout} s")


def _broken(conn: Any) -> bool:
    if conn.closed or conn.broken:
        return True
    pgconn = conn.pgconn
    return bool(pgconn.status == _BAD or pgconn.transaction_status in _IN_FLIGHT)


def _lean_queue(conn: Any) -> str | None:
    """Where psycopg queues its prepared-statement upkeep (``_to_flush`` from 3.2,
    ``_maint_commands`` in 3.1), when the connection has every attribute :func:`_rollback`
    reads; None (always ``conn.rollback()``) for a psycopg laid out otherwise."""
    prepared = getattr(conn, "_prepared", None)
    needed: list[tuple[object, str]] = [(conn, "_num_transactions"), (conn, "_tpc"), (conn, "_pipeline")]
    needed += [(prepared, "_names"), (prepared, "_counts")]
    if not all(hasattr(owner, name) for owner, name in needed):
        return None
    return next((name for name in ("_to_flush", "_maint_commands") if hasattr(prepared, name)), None)


def _rollback(conn: Any) -> None:
    """``conn.rollback()`` of an open or failed transaction, in one libpq call when that is all it does.

    psycopg's ``rollback()`` drives ``ROLLBACK`` through its generators and waiting loop,
    about 28 k client instructions on top of the round trip, then forgets the statements
    it prepared. With no statement prepared or queued for deallocation, no ``transaction()``
    block, no two-phase transaction and no pipeline, all it does is the round trip and
    clearing its usage counts: done here with ``PQexec`` (the GIL released while it waits,
    the reset's watchdog bounding it) under the connection's lock. Otherwise, or with a
    psycopg whose attributes differ (:func:`_lean_queue`), psycopg's own ``rollback()``.
    """
    queue = conn.__dict__.get("_reclaim_lean")
    if queue is not None:
        prepared = conn._prepared
        if not (
            conn._num_transactions
            or conn._tpc
            or conn._pipeline
            or prepared._names
            or getattr(prepared, queue)
        ):
            with conn.lock:
                result = conn.pgconn.exec_(b"ROLLBACK")
                prepared._counts.clear()
            if result.status != _COMMAND_OK:
                message = (result.error_message or b"").decode("utf-8", "replace").strip()
                raise psycopg.OperationalError(f"ROLLBACK failed: {message}")
            return
    conn.rollback()


def _options_reader(conn: Any) -> Callable[[Any], tuple[Any, ...]]:
    """How to read a connection's options cheaply: the attributes behind psycopg's properties
    when they hold the same values (psycopg 3.0 to 3.3 do), else the properties themselves."""
    try:
        if _PRIVATE(conn) == _PUBLIC(conn):
            return _PRIVATE
    except AttributeError:
        pass
    return _PUBLIC


#: psycopg's lists of callbacks on the connection object (``add_notify_handler``, ``add_notice_handler``).
_HANDLERS: Final = ("_notify_handlers", "_notice_handlers")
#: Client-side settings of the connection object a borrower may change: the factories run on
#: every later borrower's rows and cursors, so a session reset puts them back.
_CLIENT: Final = (
    "row_factory",
    "cursor_factory",
    "server_cursor_factory",
    "prepare_threshold",
    "prepared_max",
)


def _handlers(conn: Any) -> tuple[list[Any], ...]:
    return tuple(list(getattr(conn, attr, ())) for attr in _HANDLERS)


def _restore_handlers(conn: Any) -> None:
    """Put the connection's callback lists back to what they were when it was made (session reset)."""
    baseline = getattr(conn, "_reclaim_handlers", None)
    if baseline is None:
        return
    for attr, kept in zip(_HANDLERS, baseline, strict=True):
        handlers = getattr(conn, attr, None)
        if isinstance(handlers, list) and handlers != kept:
            handlers[:] = kept


#: A setting or adapters map reclaim cannot put back (a psycopg laid out otherwise).
_UNKNOWN: Final = object()


def _client_state(conn: Any) -> tuple[tuple[Any, ...], object]:
    """The connection's client-side settings and its adapters: None when psycopg has not made
    them yet (it copies the global ones at first use), else a copy (psycopg copies on write,
    so later registrations on either side do not reach the other)."""
    adapters = getattr(conn, "_adapters", _UNKNOWN)
    if isinstance(adapters, AdaptersMap):
        adapters = AdaptersMap(adapters)
    elif adapters is not None:
        adapters = _UNKNOWN
    return tuple(getattr(conn, name, _UNKNOWN) for name in _CLIENT), adapters


def _restore_client_state(conn: Any) -> None:
    """Put the client-side settings and adapters back to what they were when the pool's
    ``configure`` finished (session reset): a dumper, loader or row factory a borrower set
    would otherwise run on the next borrower's parameters and rows."""
    baseline = getattr(conn, "_reclaim_client", None)
    if baseline is None:
        return
    values, adapters = baseline
    for name, value in zip(_CLIENT, values, strict=True):
        if value is not _UNKNOWN and getattr(conn, name) != value:
            setattr(conn, name, value)
    if adapters is None:
        # psycopg makes them again from the global adapters when next asked.
        conn._adapters = None
    elif isinstance(adapters, AdaptersMap):
        # Cheaper to copy the baseline (a few dicts, shared until written) than to find out
        # whether the borrower registered anything.
        conn._adapters = AdaptersMap(adapters)


def _forget_prepared(conn: Any) -> None:
    """After ``DISCARD ALL``, which deallocated them: psycopg forgets its prepared statements too.

    psycopg notices a ``DISCARD ALL`` by itself only the first time that text runs on a
    connection (later runs are counted in its cache and skip the check): from the second
    session reset on, it would execute statements the server no longer has ("prepared
    statement "_pg3_0" does not exist"), and in time prepare the ``DISCARD ALL`` itself.
    """
    prepared = getattr(conn, "_prepared", None)
    for attr in ("_names", "_counts", "_to_flush", "_maint_commands"):
        kept = getattr(prepared, attr, None)
        if kept is not None:
            kept.clear()


def _drop_notifications(conn: Any) -> None:
    """After ``DISCARD ALL`` (which ran ``UNLISTEN *``): the notifications that reached the
    connection before it and that no handler took are dropped, not kept for the next borrower.

    psycopg keeps those in a backlog (3.2 and later) that ``conn.notifies()`` yields first, and
    libpq in a queue of its own: either way the next borrower, another tenant, would read
    the previous one's messages.
    """
    backlog = getattr(conn, "_notifies_backlog", None)
    if backlog is not None:
        backlog.clear()
    pgconn = conn.pgconn
    while pgconn.notifies() is not None:
        pass


def _prepared_two_phase(conn: Any) -> bool:
    """Whether psycopg still tracks a two-phase transaction on an idle session: the borrower
    ran ``tpc_prepare()`` and gave the connection back before ``tpc_commit()`` /
    ``tpc_rollback()``. The next borrower's ``commit()`` would fail, and its ``tpc_commit()``
    would finish the other's transaction: the connection is discarded instead (the prepared
    transaction, no longer tied to the session, waits on the server for ``tpc_recover()``)."""
    return getattr(conn, "_tpc", None) is not None


def _changed(conn: Any) -> bool:
    """Whether a borrower changed the connection's client options (one C call when not)."""
    try:
        changed: bool = conn._reclaim_options(conn) != conn._reclaim_baseline  # tuples: a bool
    except AttributeError:  # not configured by this adapter: no baseline to restore
        return False
    return changed


class _Base(NetworkAdapter):
    """Policy shared by the sync and async psycopg adapters (no waiting here)."""

    name = "psycopg"
    probe_after = PROBE_AFTER

    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Bound the connect by ``connect_timeout=10`` unless the conninfo, the keywords or
        ``PGCONNECT_TIMEOUT`` set one.

        The pool connects in the acquiring caller, and psycopg's own default is 130 s (3.2
        and later; before it, as long as TCP tries): an acquire that must connect over a
        network gone silent would wait that long, whatever ``acquire_timeout`` says.
        """
        if "connect_timeout" in kwargs or "PGCONNECT_TIMEOUT" in os.environ:
            return args, kwargs
        conninfo = args[0] if args else kwargs.get("conninfo", "")
        try:
            given = "connect_timeout" in conninfo_to_dict(conninfo)
        except Exception:  # not a conninfo string: connect will say what is wrong with it
            return args, kwargs
        if given:
            return args, kwargs
        return args, {**kwargs, "connect_timeout": CONNECT_TIMEOUT}

    def remember(self, conn: Any) -> None:
        """Record the connection's starting options; set up its socket probe and reset guard."""
        conn._reclaim_baseline = _PUBLIC(conn)
        conn._reclaim_options = _options_reader(conn)
        fd = conn.pgconn.socket  # a psycopg connection keeps its socket for life
        conn._reclaim_poll = readability_probe(fd)
        conn._reclaim_guard = Guard(conn, fd, self.reset_timeout)
        conn._reclaim_used = _monotonic()
        conn._reclaim_handlers = _handlers(conn)
        if self.session:  # only a session reset puts them back
            conn._reclaim_client = _client_state(conn)
        if not isinstance(conn, psycopg.AsyncConnection):
            conn._reclaim_lean = _lean_queue(conn)

    def configured(self, conn: Any) -> None:
        """After the pool's own ``configure=``: the handlers, factories and adapters it set are
        the connection's baseline."""
        conn._reclaim_handlers = _handlers(conn)
        if self.session:
            conn._reclaim_client = _client_state(conn)

    def _guard(self, conn: Any) -> Guard:
        """What bounds the connection's reset round trips (see _watchdog)."""
        try:
            guard: Guard = conn._reclaim_guard
        except AttributeError:  # a connection remember() never saw
            guard = Guard(conn, conn.pgconn.socket, self.reset_timeout)
        return guard

    def in_transaction(self, conn: Any) -> bool:
        """True when a transaction is open or failed on the connection."""
        return bool(conn.pgconn.transaction_status in _OPEN)

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """True when the connection is closed, lost, or stuck mid-query."""
        return _broken(conn)

    def _probe(self, conn: Any) -> bool:
        """No round trip: raise when the idle connection was ended by the server.

        Returns True when the connection has been idle long enough to need a round trip.
        """
        if conn.closed or conn.broken:
            raise psycopg.OperationalError("the connection is closed")
        poll = getattr(conn, "_reclaim_poll", None)
        if poll is None:
            self.remember(conn)
            return True
        if poll(0):
            pgconn = conn.pgconn
            for _ in range(16):  # a burst of notifications is consumed, an EOF raises
                pgconn.consume_input()
                if not poll(0):
                    break
            if _broken(conn):
                raise psycopg.OperationalError("the server ended the session while it was idle")
        return bool(_monotonic() - conn._reclaim_used >= self.check_after)

    def _dirty_options(self, conn: Any) -> list[tuple[str, Any]]:
        if not _changed(conn):
            return _NOTHING
        baseline = conn._reclaim_baseline
        return [
            (name, value)
            for name, value, now in zip(_OPTIONS, baseline, _PUBLIC(conn), strict=True)
            if now != value
        ]


class PsycopgAdapter(_Base):
    """Adapter for ``psycopg.Connection``.

    Example::

        pool = reclaim.db.ConnectionPool(psycopg.connect, "dbname=test", max_size=4)
    """

    def configure(self, conn: Any) -> None:
        """Remember the connection's starting options (called once per new connection)."""
        self.remember(conn)

    def check(self, conn: Any) -> None:
        """Probe the socket; after ``check_after`` idle, one bounded empty-query round trip.

        Raises:
            psycopg.OperationalError: the connection is dead (CheckTimeout: no answer in time).
        """
        if not self._probe(conn):
            return
        deadline = _monotonic() + self.check_timeout
        with conn.lock:
            pgconn = conn.pgconn
            fd = pgconn.socket
            steps = _ping_steps(pgconn)
            for what in steps:
                _wait_fd(fd, what, deadline, self.check_timeout)

    def reset(self, conn: Any) -> bool:
        """Roll back an open/failed transaction, restore options; ``DISCARD ALL`` for sessions.

        Returns False (discard it) when the connection is broken.
        """
        pgconn = conn.pgconn
        status = pgconn.transaction_status
        if status != _IDLE:
            if status not in _OPEN:  # closed, lost or mid-query
                return False
            with self._guard(conn):
                _rollback(conn)
        elif conn._tpc is not None:  # _prepared_two_phase(), inline: on every idle release
            return False
        if _changed(conn):
            for name, value in self._dirty_options(conn):
                setattr(conn, name, value)
        conn._reclaim_used = _monotonic()
        if self.session:
            autocommit = conn.autocommit
            conn.autocommit = True
            try:
                with self._guard(conn):
                    conn.execute("DISCARD ALL", prepare=False)
            finally:
                if not conn.broken and not conn.closed:
                    conn.autocommit = autocommit
            _forget_prepared(conn)
            _restore_handlers(conn)
            _restore_client_state(conn)
            _drop_notifications(conn)
        return True

    def close(self, conn: Any) -> None:
        """Close the connection (sends the protocol's Terminate message when still open)."""
        conn.close()


async def _await_fd(loop: asyncio.AbstractEventLoop, fd: int, what: int) -> None:
    future: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not future.done():
            future.set_result(None)

    if what == _READ:
        loop.add_reader(fd, ready)
        try:
            await future
        finally:
            loop.remove_reader(fd)
    else:
        loop.add_writer(fd, ready)
        try:
            await future
        finally:
            loop.remove_writer(fd)


class AsyncPsycopgAdapter(_Base):
    """Adapter for ``psycopg.AsyncConnection``.

    ``check`` and ``reset`` answer synchronously when no round trip is needed (the pool
    then awaits nothing) and return a coroutine only when they must talk to the server.

    Example::

        pool = reclaim.db.AsyncConnectionPool(psycopg.AsyncConnection.connect, "dbname=test")
    """

    def configure(self, conn: Any) -> None:
        """Remember the connection's starting options (called once per new connection)."""
        self.remember(conn)

    def check(self, conn: Any) -> Coroutine[Any, Any, None] | None:
        """Probe the socket; after ``check_after`` idle, one bounded empty-query round trip.

        Raises:
            psycopg.OperationalError: the connection is dead (CheckTimeout: no answer in time).
        """
        if not self._probe(conn):
            return None
        return self._round_trip(conn)

    async def _round_trip(self, conn: Any) -> None:
        loop = asyncio.get_running_loop()
        async with conn.lock:
            pgconn = conn.pgconn
            fd = pgconn.socket
            try:
                async with asyncio.timeout(self.check_timeout):
                    for what in _ping_steps(pgconn):
                        await _await_fd(loop, fd, what)
            except TimeoutError:
                raise CheckTimeout(
                    f"no answer from the server within check_timeout={self.check_timeout} s"
                ) from None

    def reset(self, conn: Any) -> bool | Coroutine[Any, Any, bool]:
        """Roll back an open/failed transaction, restore options; ``DISCARD ALL`` for sessions.

        Returns False (discard it) when the connection is broken; True at once when there
        is nothing to undo; else a coroutine doing the round trips.
        """
        status = conn.pgconn.transaction_status
        if status == _IDLE and _prepared_two_phase(conn):
            return False
        if status == _IDLE and not self.session and not _changed(conn):
            conn._reclaim_used = _monotonic()
            return True
        if status != _IDLE and status not in _OPEN:  # closed, lost or mid-query
            return False
        return self._reset(conn)

    async def _reset(self, conn: Any) -> bool:
        with self._guard(conn):
            if conn.pgconn.transaction_status != _IDLE:
                await conn.rollback()
            for name, value in self._dirty_options(conn):
                await getattr(conn, f"set_{name}")(value)
            if self.session:
                autocommit = conn.autocommit
                await conn.set_autocommit(True)
                try:
                    await conn.execute("DISCARD ALL", prepare=False)
                finally:
                    if not conn.broken and not conn.closed:
                        await conn.set_autocommit(autocommit)
                _forget_prepared(conn)
                _restore_handlers(conn)
                _restore_client_state(conn)
                _drop_notifications(conn)
        conn._reclaim_used = _monotonic()
        return True

    async def close(self, conn: Any) -> None:
        """Close the connection (sends the protocol's Terminate message when still open)."""
        await conn.close()
