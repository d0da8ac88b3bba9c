"""PyMySQL adapter (MariaDB / MySQL): ``ping(reconnect=False)`` as the check, rollback as the reset.

- **reset** (default, ``"transaction"``): ``ROLLBACK`` when autocommit is off (PyMySQL's
  default) or the server's status flags say a transaction is open; with autocommit on and
  no ``BEGIN``, no round trip. The connection's starting autocommit mode is put back if a
  borrower changed it.
- **reset** ``"session"``: ``COM_RESET_CONNECTION`` (MariaDB 10.2.4+, MySQL 5.7.3+), which
  rolls back, drops temporary tables, user variables and prepared statements, releases
  ``GET_LOCK`` locks and resets session variables, without a new login. It does *not*
  reset the current role on MariaDB, so the role the connection logged in with
  (remembered at creation) is set again: a ``SET ROLE`` never passes to the next borrower.
  Nor the current database: the login one is selected again (``COM_INIT_DB``), and a
  connection that logged in with none is discarded if a borrower ran ``USE``.
  PyMySQL's own settings (``collation``, ``sql_mode``, autocommit mode, ``init_command``)
  are then re-applied, each only when given to ``connect``. On the connection object, the
  character set goes back to the login's, and the encoders, decoders and cursor class to
  those the pool's ``configure`` left.
- **check**: on every reuse, a zero-timeout ``poll()`` of the socket: the protocol never
  sends anything to an idle client, so a readable socket means the server closed the
  session (``KILL``, a restart) and the connection is not lent. After ``check_after``
  seconds idle, ``ping(reconnect=False)`` (``COM_PING``), bounded by ``check_timeout``: the
  socket timeouts are lowered for the ping and restored after it.
- **broken**: the socket is gone (PyMySQL drops it on every network error) or the error is
  one of the client's "server gone / lost connection" codes.
"""

from __future__ import annotations

import importlib
import time
from typing import Any, Final

from ._adapter import NetworkAdapter, readability_probe
from ._watchdog import Guard

__all__ = ["PyMySQLAdapter"]

_COM_RESET_CONNECTION: Final = 0x1F
_SERVER_STATUS_IN_TRANS: Final = 1
#: CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST; ER_CONNECTION_KILLED
_DISCONNECT_CODES: Final = frozenset({2002, 2003, 2006, 2013, 1927})


def _readable(conn: Any, sock: Any) -> bool:
    """Whether the connection's socket has something to read now (no waiting), through a probe
    made once per socket (``poll()``: see :func:`readability_probe`)."""
    probe = conn.__dict__.get("_reclaim_probe")
    if probe is None or probe[0] is not sock:
        probe = conn._reclaim_probe = (sock, readability_probe(sock.fileno()))
    return bool(probe[1](0))


class PyMySQLAdapter(NetworkAdapter):
    """Adapter for ``pymysql.connections.Connection``.

    Example::

        pool = reclaim.db.ConnectionPool(pymysql.connect, host="127.0.0.1", user="app")
    """

    name = "pymysql"

    def prepare(
        self, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Defer the login to :meth:`configure`, which bounds the handshake by ``connect_timeout``.

        PyMySQL applies ``connect_timeout`` to the TCP connect only and then reads the
        server's greeting with ``read_timeout`` (None: forever), so a server that accepts
        and never answers would hang ``create`` for good.
        """
        if "defer_connect" not in kwargs and len(args) == 0:
            kwargs = {**kwargs, "defer_connect": True}
        return args, kwargs

    def configure(self, conn: Any) -> None:
        """Log in (if deferred) and, under ``"session"``, read the login role and database, all
        within ``connect_timeout``; remember the autocommit mode.

        The role and database query is part of making the connection: on a network gone
        silent after the login it would otherwise wait for ever (PyMySQL's ``read_timeout``
        defaults to none), so it gets the login's bound, not ``reset_timeout``.
        """
        saved = conn._read_timeout, conn._write_timeout
        conn._read_timeout = conn._write_timeout = conn.connect_timeout
        try:
            if conn._sock is None and not conn._closed:
                conn.connect()
            if self.session:
                with conn.cursor() as cursor:
                    cursor.execute("SELECT CURRENT_ROLE(), DATABASE()")
                    row = cursor.fetchone()
                conn._reclaim_role, conn._reclaim_database = row if row else (None, None)
        finally:
            conn._read_timeout, conn._write_timeout = saved
        conn._reclaim_autocommit = conn.autocommit_mode
        conn._reclaim_used = time.monotonic()
        if self.session:
            # The login's character set: the one COM_RESET_CONNECTION gives the session back.
            conn._reclaim_charset = conn.charset, conn.encoding, getattr(conn, "collation", None)
            self.configured(conn)

    def configured(self, conn: Any) -> None:
        """After the pool's own ``configure=``: the converters and cursor class it set on the
        connection object are the connection's baseline (a session reset puts them back)."""
        if self.session:
            conn._reclaim_client = dict(conn.encoders), dict(conn.decoders), conn.cursorclass

    def _restore_client_state(self, conn: Any) -> None:
        """Put back what a borrower changed on the connection object (session reset): its
        encoders and decoders would run on the next borrower's parameters and values, and its
        ``set_character_set`` would leave PyMySQL encoding in a character set the server no
        longer uses (and the collation it named would be set again below)."""
        baseline = getattr(conn, "_reclaim_client", None)
        if baseline is not None:
            encoders, decoders, cursorclass = baseline
            if conn.encoders != encoders:
                conn.encoders = dict(encoders)
            if conn.decoders != decoders:
                conn.decoders = dict(decoders)
            conn.cursorclass = cursorclass
        charset = getattr(conn, "_reclaim_charset", None)
        if charset is not None:
            conn.charset, conn.encoding, conn.collation = charset

    def _autocommit_changed(self, conn: Any) -> bool:
        """Whether a borrower changed the autocommit mode (putting it back is a round trip)."""
        wanted = getattr(conn, "_reclaim_autocommit", conn.autocommit_mode)
        return wanted is not None and (conn.autocommit_mode != wanted or conn.get_autocommit() != wanted)

    def _restore_autocommit(self, conn: Any) -> None:
        if self._autocommit_changed(conn):
            conn.autocommit(getattr(conn, "_reclaim_autocommit", conn.autocommit_mode))

    def in_transaction(self, conn: Any) -> bool:
        """True when the server's last reply said a transaction is open."""
        status = conn.server_status
        return bool(status is not None and status & _SERVER_STATUS_IN_TRANS)

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """True when the socket is gone or ``exc`` is a disconnect error."""
        if not conn.open:
            return True
        args = getattr(exc, "args", None)
        return bool(args and args[0] in _DISCONNECT_CODES)

    def check(self, conn: Any) -> None:
        """Probe the socket; after ``check_after`` idle, ``COM_PING`` bounded by ``check_timeout``.

        Raises:
            pymysql.err.Error: the connection is dead or the server did not answer in time.
        """
        err = importlib.import_module("pymysql.err")  # the driver's own error classes
        sock = conn._sock
        if sock is None:
            raise err.InterfaceError(0, "the connection is closed")
        if _readable(conn, sock):
            conn._force_close()
            raise err.OperationalError(2013, "the server ended the session while it was idle")
        if time.monotonic() - getattr(conn, "_reclaim_used", 0.0) < self.check_after:
            return
        read_timeout, write_timeout = conn._read_timeout, conn._write_timeout
        conn._read_timeout = conn._write_timeout = self.check_timeout
        try:
            conn.ping(reconnect=False)
        finally:
            conn._read_timeout, conn._write_timeout = read_timeout, write_timeout

    def reset(self, conn: Any) -> bool:
        """Roll back an open transaction; ``COM_RESET_CONNECTION`` under ``"session"``.

        Returns False (discard it) when the connection is closed, or an unbuffered result
        (``SSCursor``) was left unread.
        """
        if not conn.open:
            return False
        result = getattr(conn, "_result", None)
        if result is not None and getattr(result, "unbuffered_active", False):
            # An SSCursor's rows left unread: the server is still sending them, and PyMySQL would
            # read them all at the next command, warning "Previous unbuffered result was left
            # incomplete" in the next borrower's code. Closing the connection ends the stream;
            # the result is marked done first, as PyMySQL does on a network error, so that its
            # __del__ does not read the closed socket ("Exception ignored ... NoneType").
            result.unbuffered_active = False
            return False
        conn._reclaim_used = time.monotonic()
        if self.session:
            with Guard(conn, conn._sock.fileno(), self.reset_timeout):
                return self._reset_session(conn)
        if self.in_transaction(conn) or not conn.get_autocommit():
            # With autocommit off, InnoDB holds a read view after a plain SELECT while
            # the server does *not* set SERVER_STATUS_IN_TRANS: skipping the rollback
            # would show the next borrower a stale snapshot. So: always, unless autocommit.
            with Guard(conn, conn._sock.fileno(), self.reset_timeout):
                conn.rollback()
                self._restore_autocommit(conn)
            return True
        if self._autocommit_changed(conn):
            # A borrower switched autocommit on: switching it back off is a round trip
            # (SET AUTOCOMMIT), bounded like the others.
            with Guard(conn, conn._sock.fileno(), self.reset_timeout):
                self._restore_autocommit(conn)
        return True

    def _reset_session(self, conn: Any) -> bool:
        conn._execute_command(_COM_RESET_CONNECTION, b"")
        conn._read_ok_packet()
        self._restore_client_state(conn)
        # MariaDB's reset keeps the current role (checked on 10.11): a role a borrower
        # took would pass to the next one. Put back the role the connection logged in with.
        role = getattr(conn, "_reclaim_role", None)
        with conn.cursor() as cursor:
            quoted = "NONE" if role is None else "`" + str(role).replace("`", "``") + "`"
            cursor.execute(f"SET ROLE {quoted}")
        # It keeps the current database too (MariaDB's search_path: unqualified names would
        # reach the database a borrower chose with USE). Select the login one again
        # (COM_INIT_DB); a connection that logged in with none cannot be given none again,
        # so it is discarded when a borrower selected one.
        database = getattr(conn, "_reclaim_database", None)
        if database is not None:
            conn.select_db(database)
        else:
            with conn.cursor() as cursor:
                cursor.execute("SELECT DATABASE()")
                row = cursor.fetchone()
            if row is not None and row[0] is not None:
                return False
        # It resets what PyMySQL's connect() set after the login too: a collation given to
        # connect() (MariaDB keeps the handshake's character set, not SET NAMES' collation)
        # and sql_mode. Set again as connect() sets them, then autocommit and init_command.
        collation = getattr(conn, "collation", None)
        if collation is not None:
            conn.set_character_set(conn.charset, collation)
        sql_mode = getattr(conn, "sql_mode", None)
        if sql_mode is not None:
            with conn.cursor() as cursor:
                cursor.execute("SET sql_mode=%s", (sql_mode,))
        self._restore_autocommit(conn)
        if conn.init_command is not None:
            with conn.cursor() as cursor:
                cursor.execute(conn.init_command)
            conn.commit()
        return True

    def close(self, conn: Any) -> None:
        """Send ``COM_QUIT`` and close the socket (nothing to do when already closed)."""
        if conn.open:
            conn.close()
        elif not conn._closed:
            conn._closed = True
