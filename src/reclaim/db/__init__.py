"""Connection pools for DB-API 2.0 drivers: ``ConnectionPool`` (threads), ``AsyncConnectionPool``.

``ConnectionPool(connect, *args, **kwargs)``: pool options are taken out of the
keyword arguments, the rest go to ``connect``. An adapter picked by driver
(sqlite3 built in; psycopg, asyncpg and PyMySQL when installed; else a
generic DB-API one) says how to ping, reset and recognise a broken connection.
To tune one (its ``check_timeout``, ``reset_timeout``, ``check_after``), pass it:
``ConnectionPool(psycopg.connect, dsn, adapter=PsycopgAdapter(reset_timeout=2.0))``.

Example::

    import sqlite3, reclaim.db

    with reclaim.db.ConnectionPool(sqlite3.connect, "app.db", max_size=4) as pool:
        with pool.acquire() as conn:
            conn.execute("SELECT 1")
"""

from typing import TYPE_CHECKING

from reclaim import _lazy

from ._adapter import ADAPTERS, Adapter, GenericAdapter, adapter_for, register_adapter
from ._pools import POOL_OPTIONS, ConnectionPool

if TYPE_CHECKING:
    from ._apools import AsyncConnectionPool
    from ._asyncpg import AsyncpgAdapter
    from ._psycopg import AsyncPsycopgAdapter, PsycopgAdapter
    from ._pymysql import PyMySQLAdapter
    from ._sqlite import SqliteAdapter

__all__ = [
    "ADAPTERS",
    "POOL_OPTIONS",
    "Adapter",
    "AsyncConnectionPool",
    "AsyncPsycopgAdapter",
    "AsyncpgAdapter",
    "ConnectionPool",
    "GenericAdapter",
    "PsycopgAdapter",
    "PyMySQLAdapter",
    "SqliteAdapter",
    "adapter_for",
    "register_adapter",
]


#: Loaded on first use: AsyncConnectionPool imports asyncio (a thread pool need not), and each
#: driver's adapter imports its driver (an optional extra).
_LAZY = {
    "AsyncConnectionPool": "_apools",
    "AsyncPsycopgAdapter": "_psycopg",
    "AsyncpgAdapter": "_asyncpg",
    "PsycopgAdapter": "_psycopg",
    "PyMySQLAdapter": "_pymysql",
    "SqliteAdapter": "_sqlite",
}
_load, __dir__ = _lazy.exports(__name__, globals(), _LAZY)

if not TYPE_CHECKING:  # hidden from type checkers, as in reclaim/__init__.py
    __getattr__ = _load
