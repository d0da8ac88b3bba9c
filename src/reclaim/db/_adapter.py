"""The Adapter protocol, the generic DB-API 2.0 adapter, and the registry that picks one per driver.

An adapter tells a pool what it cannot know about a driver: how to ping a
connection cheaply (``check``), how to put it back in a clean state
(``reset``: roll back only when a transaction is open), which errors mean the
connection is gone (``is_broken``), and how to close it. Async adapters have
the same methods as coroutines.

The registry maps a driver's top-level module name to ``"module:attribute"``
strings (one for sync pools, one for async pools), imported only when a pool
for that driver is made, so ``import reclaim.db`` needs no driver installed.
A driver module of reclaim's own adds a line to :data:`ADAPTERS`; a third party
calls :func:`register_adapter`.
"""

from __future__ import annotations

import importlib
import select
import sys
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from reclaim.pool._options import _seconds

__all__ = [
    "ADAPTERS",
    "Adapter",
    "GenericAdapter",
    "adapter_for",
    "driver_of",
    "readability_probe",
    "register_adapter",
]


def readability_probe(fd: int) -> Callable[[float], object]:
    """A probe of *fd* made once per connection: called with a timeout in milliseconds (0: no
    waiting), it returns something truthy when *fd* has something to read.

    ``poll()``, not ``select()``, which refuses descriptors numbered 1024 or more
    ("filedescriptor out of range"); ``select()`` only where there is no ``poll()`` (Windows).
    """
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return poller.poll
    return lambda timeout: select.select([fd], [], [], timeout / 1000.0)[0]


@runtime_checkable
class Adapter(Protocol):
    """What a connection pool needs to know about one DB-API driver.

    Example (a custom adapter)::

        class MyAdapter(reclaim.db.GenericAdapter):
            name = "mydriver"
            def in_transaction(self, conn): return conn.txn_open

        pool = reclaim.db.ConnectionPool(mydriver.connect, adapter=MyAdapter())
    """

    name: str

    def check(self, conn: Any) -> Any:
        """The cheapest real ping; raises (or returns False) when the connection is dead."""

    def reset(self, conn: Any) -> Any:
        """Make the connection clean for the next borrower (rollback only when needed)."""

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """Whether *exc* (or, with None, the connection's state) means the connection is gone."""

    def close(self, conn: Any) -> Any:
        """Close the connection."""

    def in_transaction(self, conn: Any) -> bool | None:
        """Whether a transaction is open; None when the driver cannot say."""


def _dbapi_error(exc: BaseException, name: str) -> bool:
    return any(cls.__name__ == name for cls in type(exc).__mro__)


class NetworkAdapter:
    """Settings shared by the adapters of networked drivers (psycopg, asyncpg, PyMySQL).

    ``handoff_after = 0``: a returned connection goes to the longest waiter at
    once, since the releasing thread's next operation waits on the network
    anyway. ``probe_after``: reuse within this many seconds of the release
    skips the zero-timeout socket probe. *session* selects ``reset="session"``;
    *check_after* and *check_timeout* gate and bound the round-trip check;
    *reset_timeout* bounds the round trips of a release (a reset with no answer by
    then is cut off and its connection discarded; None: wait as long as the driver does).
    """

    name = "network"
    handoff_after = 0.0
    probe_after = 0.001

    def __init__(
        self,
        *,
        session: bool = False,
        check_after: float = 0.5,
        check_timeout: float = 5.0,
        reset_timeout: float | None = 5.0,
    ) -> None:
        _seconds("check_after", check_after, optional=False, positive=False)
        _seconds("check_timeout", check_timeout, optional=False)
        _seconds("reset_timeout", reset_timeout, optional=True)
        if not isinstance(session, bool):  # "no" would switch the session reset on
            raise TypeError(f"session must be True or False, got {session!r}")
        self.session = session
        self.check_after = check_after
        self.check_timeout = check_timeout
        self.reset_timeout = reset_timeout


class GenericAdapter:
    """For any DB-API 2.0 driver: ``SELECT 1`` ping, rollback on return, InterfaceError means broken.

    The driver cannot say whether a transaction is open, so ``reset`` always
    rolls back (one round trip per return on a networked driver: register a
    driver-specific adapter to avoid it). An ``OperationalError`` is treated as
    broken when a ping after it fails too.

    Example::

        pool = reclaim.db.ConnectionPool(somedriver.connect, "dsn", adapter=GenericAdapter())
    """

    name = "dbapi"

    def check(self, conn: Any) -> None:
        """Run ``SELECT 1``; raises when the connection is dead."""
        cursor = conn.cursor()
        try:
            cursor.execute("SELECT 1")
            cursor.fetchall()
        finally:
            cursor.close()

    def reset(self, conn: Any) -> None:
        """Roll back (the generic driver cannot say whether a transaction is open)."""
        if self.in_transaction(conn) is not False:
            conn.rollback()

    def in_transaction(self, conn: Any) -> bool | None:
        """None: unknown for a generic driver."""
        return None

    def is_broken(self, conn: Any, exc: BaseException | None = None) -> bool:
        """True for InterfaceError / OSError, and for OperationalError when a ping fails after it."""
        if exc is None:
            return False
        if isinstance(exc, OSError) or _dbapi_error(exc, "InterfaceError"):
            return True
        if _dbapi_error(exc, "OperationalError"):
            try:
                self.check(conn)
            except Exception:
                return True
        return False

    def close(self, conn: Any) -> None:
        """``conn.close()``."""
        conn.close()


#: driver module -> ("module:attr" for sync pools, "module:attr" for async pools); None: unsupported.
ADAPTERS: dict[str, tuple[str | Callable[[], Any] | None, str | Callable[[], Any] | None]] = {
    "sqlite3": ("reclaim.db._sqlite:SqliteAdapter", "reclaim.db._sqlite:SqliteAdapter"),
    "psycopg": ("reclaim.db._psycopg:PsycopgAdapter", "reclaim.db._psycopg:AsyncPsycopgAdapter"),
    "asyncpg": (None, "reclaim.db._asyncpg:AsyncpgAdapter"),
    "pymysql": ("reclaim.db._pymysql:PyMySQLAdapter", None),
}


def register_adapter(
    driver: str,
    sync: str | Callable[[], Any] | None = None,
    asynchronous: str | Callable[[], Any] | None = None,
) -> None:
    """Register adapter factories (callables or ``"module:attr"`` strings) for *driver*.

    Example::

        reclaim.db.register_adapter("mydriver", "mypkg.adapters:MyDriverAdapter")
    """
    if not isinstance(driver, str) or not driver:
        raise TypeError("driver must be a module name such as 'psycopg'")
    ADAPTERS[driver] = (sync, asynchronous)


def driver_of(connect: Callable[..., Any]) -> str:
    """The driver module *connect* belongs to, without a leading underscore (``_sqlite3`` -> ``sqlite3``).

    A registered driver's own ``connect`` is recognised even when something (a
    tracer, reclaim's leak tracker) has replaced it with a wrapper.
    """
    for name in ADAPTERS:
        module = sys.modules.get(name)
        if module is not None and getattr(module, "connect", None) is connect:
            return name
    target: Any = connect
    while hasattr(target, "__wrapped__"):
        target = target.__wrapped__
    module_name = getattr(target, "__module__", None) or ""
    if not module_name:
        func = getattr(target, "func", None)  # functools.partial
        module_name = getattr(func, "__module__", None) or ""
    return module_name.split(".", 1)[0].lstrip("_")


def _load(factory: str | Callable[[], Any]) -> Any:
    if isinstance(factory, str):
        module_name, _, attr = factory.partition(":")
        loaded: Callable[[], Any] = getattr(importlib.import_module(module_name), attr)
        return loaded()
    return factory()


def adapter_for(connect: Callable[..., Any], *, asynchronous: bool) -> Any:
    """The registered adapter for the driver of *connect*, else a :class:`GenericAdapter`.

    Raises:
        ValueError: the driver is registered but has no adapter for this kind of pool.
    """
    driver = driver_of(connect)
    entry = ADAPTERS.get(driver)
    if entry is None:
        return GenericAdapter()
    factory = entry[1] if asynchronous else entry[0]
    if factory is None:
        kind = "async" if asynchronous else "sync"
        raise ValueError(
            f"driver {driver!r} has no {kind} adapter; use "
            f"{'ConnectionPool' if asynchronous else 'AsyncConnectionPool'} or pass adapter="
        )
    return _load(factory)
