"""AsyncConnectionPool: the asyncio twin of ConnectionPool (its own module: it imports asyncio)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reclaim.pool._async import AsyncPool

from ._pools import split_options

__all__ = ["AsyncConnectionPool"]


class AsyncConnectionPool(AsyncPool[Any]):
    """The asyncio twin of :class:`ConnectionPool`: ``AsyncConnectionPool(connect, *args, **kwargs)``.

    *connect* may be a coroutine function (``asyncpg.connect``,
    ``psycopg.AsyncConnection.connect``) or a plain one (``sqlite3.connect``);
    the adapter's hooks may be sync or async.

    Example::

        async with reclaim.db.AsyncConnectionPool(sqlite3.connect, "app.db") as pool:
            async with pool.acquire() as conn:
                conn.execute("SELECT 1")

    Raises:
        TypeError, ValueError: a pool option is invalid (the message names it).
    """

    def __init__(self, connect: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        adapter, create, pool_kw = split_options(connect, args, kwargs, asynchronous=True)
        #: The adapter in use (``pool.adapter.name`` says which driver it serves).
        self.adapter = adapter
        super().__init__(create, **pool_kw)
