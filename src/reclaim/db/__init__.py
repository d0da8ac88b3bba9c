"""Connection pools for DB-API 2.0 drivers: ``ConnectionPool`` (threads), ``AsyncConnectionPool``.

``ConnectionPool(connect, *args, **kwargs)``: pool options are taken out of the
keyword arguments, the rest go to ``connect``. An adapter picked by driver
(sqlite3 built in; psycopg, asyncpg and PyMySQL when installed; else a
generic DB-API one) says how to ping, reset and recognise a broken connection.

Example::

    import sqlite3, reclaim.db

    with reclaim.db.ConnectionPool(sqlite3.connect, "app.db", max_size=4) as pool:
        with pool.acquire() as conn:
            conn.execute("SELECT 1")
"""

from typing import TYPE_CHECKING

from ._adapter import ADAPTERS, Adapter, GenericAdapter, adapter_for, register_adapter
from ._pools import POOL_OPTIONS, ConnectionPool

if TYPE_CHECKING:
    from ._apools import AsyncConnectionPool

__all__ = [
    "ADAPTERS",
    "POOL_OPTIONS",
    "Adapter",
    "AsyncConnectionPool",
    "ConnectionPool",
    "GenericAdapter",
    "adapter_for",
    "register_adapter",
]


def _load(name: str) -> object:
    """AsyncConnectionPool imports asyncio: loaded on first use, so a thread pool does not."""
    if name != "AsyncConnectionPool":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from ._apools import AsyncConnectionPool

    globals()[name] = AsyncConnectionPool
    return AsyncConnectionPool


if not TYPE_CHECKING:  # hidden from type checkers, as in reclaim/__init__.py
    __getattr__ = _load
