"""PyMySQL adapter (MariaDB / MySQL): ``ping(reconnect=False)`` as the check, rollback as the reset.

- **reset** (default, ``"transaction"``): ``ROLLBACK`` when autocommit is off (PyMySQL's
  default) or the server's status flags say a transaction is open; with autocommit on and
  no ``BEGIN``, no round trip. The connection's starting autocommit mode is put back if a
  borrower changed it.
- **reset** ``"session"``: ``COM_RESET_CONNECTION`` (MariaDB 10.2.4+, MySQL 5.7.3+), which
  rolls back, drops temporary tables, user variables and prepared statements, releases
  ``GET_LOCK`` locks and resets session variables and the current role, without a new
  login. PyMySQL's own settings (autocommit mode, ``init_command``) are then re-applied.
- **check**: ``ping(reconnect=False)`` (``COM_PING``), bounded by ``check_timeout``: the
  socket timeouts are lowered for the ping and restored after it.
- **broken**: the socket is gone (PyMySQL drops it on every network error) or the error is
  one of the client's "server gone / lost connection" codes.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["PyMySQLAdapter"]

_COM_RESET_CONNECTION: Final = 0x1F
_SERVER_STATUS_IN_TRANS: Final = 1
#: CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE_ERROR, CR_SERVER_LOST; ER_CONNECTION_KILLED
_DISCONNECT_CODES: Final = frozenset({2002, 2003, 2006, 2013, 1927})


class PyMySQLAdapter:
    """Adapter for ``pymysql.connections.Connection``.

    Example::

        pool = reclaim.db.ConnectionPool(pymysql.connect, host="127.0.0.1", user="app")
    """

    name = "pymysql"

    def __init__(self, *, session: bool = False, check_timeout: float = 5.0) -> None:
        self.session = session
        self.check_timeout = check_timeout

    def configure(self, conn: Any) -> None:
        """Remember the autocommit mode the connection starts with (once per new connection)."""
        conn._reclaim_autocommit = conn.autocommit_mode

    def _restore_autocommit(self, conn: Any) -> None:
        wanted = getattr(conn, "_reclaim_autocommit", conn.autocommit_mode)
        if wanted is not None and (conn.autocommit_mode != wanted or conn.get_autocommit() != wanted):
            conn.autocommit(wanted)

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
        """``COM_PING`` bounded by ``check_timeout``; raises when the server does not answer."""
        read_timeout, write_timeout = conn._read_timeout, conn._write_timeout
        conn._read_timeout = conn._write_timeout = self.check_timeout
        try:
            conn.ping(reconnect=False)
        finally:
            conn._read_timeout, conn._write_timeout = read_timeout, write_timeout

    def reset(self, conn: Any) -> None:
        """Roll back an open transaction; ``COM_RESET_CONNECTION`` under ``"session"``."""
        if self.session:
            conn._execute_command(_COM_RESET_CONNECTION, b"")
            conn._read_ok_packet()
            self._restore_autocommit(conn)
            if conn.init_command is not None:
                with conn.cursor() as cursor:
                    cursor.execute(conn.init_command)
                conn.commit()
            return
        if self.in_transaction(conn) or not conn.get_autocommit():
            # With autocommit off, InnoDB holds a read view after a plain SELECT while
            # the server does *not* set SERVER_STATUS_IN_TRANS: skipping the rollback
            # would show the next borrower a stale snapshot. So: always, unless autocommit.
            conn.rollback()
        self._restore_autocommit(conn)

    def close(self, conn: Any) -> None:
        """Send ``COM_QUIT`` and close the socket (nothing to do when already closed)."""
        if conn.open:
            conn.close()
        elif not conn._closed:
            conn._closed = True
