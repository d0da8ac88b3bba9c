"""ConnectionPool: Pool wired to a DB-API driver through an adapter (split_options: shared with _apools)."""

from __future__ import annotations

import copy
import functools
import inspect
import itertools
from collections.abc import Callable
from typing import Any

from reclaim._coroutines import is_coroutine_function
from reclaim.pool import Pool
from reclaim.pool._options import _seconds

from ._adapter import Adapter, adapter_for

__all__ = ["POOL_OPTIONS", "ConnectionPool", "split_options"]

#: Keyword arguments that configure the pool; every other keyword goes to ``connect``.
POOL_OPTIONS = frozenset(
    {
        name
        for name, p in inspect.signature(Pool.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    | {"adapter", "connect_kwargs"}
)
_HOOKS = ("check", "reset", "is_broken", "close", "configure")
_names = itertools.count(1)


def split_options(
    connect: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], *, asynchronous: bool
) -> tuple[Any, Callable[..., Any], dict[str, Any]]:
    """(adapter, create, pool options): pool option names are taken out of *kwargs*."""
    if not callable(connect):
        raise TypeError(f"connect must be callable (a driver's connect), got {connect!r}")
    pool_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in POOL_OPTIONS}
    _refuse_misspelt_options(connect, kwargs)
    extra = pool_kw.pop("connect_kwargs", None)
    if extra is not None:
        if not isinstance(extra, dict):
            raise TypeError("connect_kwargs must be a dict of keyword arguments for connect")
        kwargs.update(extra)
    adapter = pool_kw.pop("adapter", None)
    if adapter is None:
        adapter = adapter_for(connect, asynchronous=asynchronous)
        blocking = not is_coroutine_function(connect)
        if asynchronous and blocking and getattr(adapter, "name", None) == "psycopg":
            # psycopg.connect in an async pool: blocking connections, lent to coroutines, whose
            # async reset and close then fail on them ("NoneType can't be used in 'await'").
            raise TypeError(
                f"{getattr(connect, '__qualname__', connect)!r} makes blocking psycopg.Connection "
                "objects: an AsyncConnectionPool takes psycopg.AsyncConnection.connect "
                "(or use reclaim.db.ConnectionPool for psycopg.connect)"
            )
    elif isinstance(adapter, type):
        # A class passes the protocol check (its methods are there) and failed at the first
        # acquire: "configure() missing 1 required positional argument: 'conn'".
        raise TypeError(
            f"adapter= takes an adapter instance, got the class {adapter.__name__}: "
            f"pass adapter={adapter.__name__}()"
        )
    elif not isinstance(adapter, Adapter):
        # One that lacks a hook would silently turn off that part (no reset, no check).
        raise TypeError(
            f"adapter= must have name, check, reset, is_broken, close and in_transaction "
            f"(reclaim.db.Adapter), got {type(adapter).__name__}; subclass reclaim.db.GenericAdapter"
        )
    else:
        # reset= and check_after= below set the pool's own policy on it: one adapter passed to
        # several pools must not take the last pool's.
        adapter = copy.copy(adapter)
    _refuse_adapter_options(connect, kwargs, adapter)
    if isinstance(pool_kw.get("reset"), str):
        _reset_policy(adapter, pool_kw.pop("reset"))
    if hasattr(adapter, "check_after") and pool_kw.get("check") is None:
        # The adapter gates its own round trip by check_after and probes the socket (no
        # round trip) on reuse, so a session the server ended is not lent: the pool calls
        # its check on every acquire after the adapter's probe_after (1 ms) of idleness.
        check_after = pool_kw.pop("check_after", adapter.check_after)
        _seconds("check_after", check_after, optional=False, positive=False)
        adapter.check_after = check_after
        pool_kw["check_after"] = min(check_after, getattr(adapter, "probe_after", 0.0))
    if "handoff_after" not in pool_kw and hasattr(adapter, "handoff_after"):
        # A networked driver's next operation waits on I/O anyway, so letting the releasing
        # thread keep the connection saves no switch; handing it over at once serves the
        # waiters in order (measured: PostgreSQL, 16 threads on 4 connections).
        pool_kw["handoff_after"] = adapter.handoff_after
    prepare = getattr(adapter, "prepare", None)
    if prepare is not None:
        args, kwargs = prepare(args, kwargs)
    adapter_configure = getattr(adapter, "configure", None)
    user_configure = pool_kw.get("configure")
    # Told when the user's configure is done: what it set up is the connection's baseline.
    configured = getattr(adapter, "configured", None) or (lambda conn: None)
    if adapter_configure is not None and user_configure is not None:
        # The adapter's configure finishes the connection (PyMySQL's bounded handshake,
        # the baseline the reset restores); the user's runs after it. In an async pool either
        # may be a coroutine function.
        if asynchronous:
            from reclaim.pool._await import call  # asyncio: only for an async pool

            async def aconfigure(conn: Any) -> object:
                await call(adapter_configure, conn)
                result = await call(user_configure, conn)
                configured(conn)
                return result

            pool_kw["configure"] = aconfigure
        else:

            def configure(conn: Any) -> object:
                adapter_configure(conn)
                result = user_configure(conn)
                configured(conn)
                return result

            pool_kw["configure"] = configure
    for hook in _HOOKS:
        if pool_kw.get(hook) is None:
            method = getattr(adapter, hook, None)
            if method is not None:
                pool_kw[hook] = method
    if pool_kw.get("name") is None:
        pool_kw["name"] = f"{getattr(adapter, 'name', 'db')}-{next(_names)}"
    create = functools.partial(connect, *args, **kwargs) if (args or kwargs) else connect
    return adapter, create, pool_kw


def _one_edit_apart(a: str, b: str) -> bool:
    """Whether *a* becomes *b* by one insertion, deletion, substitution or swap of neighbours."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    i = 0
    while i < min(len(a), len(b)) and a[i] == b[i]:
        i += 1
    return (
        a[i + 1 :] == b[i + 1 :]
        or a[i + 1 :] == b[i:]
        or a[i:] == b[i + 1 :]
        or (a[i : i + 2] == b[i : i + 2][::-1] and a[i + 2 :] == b[i + 2 :])
    )


#: Options of other pools (psycopg_pool, SQLAlchemy, asyncpg.create_pool) someone moving to
#: reclaim passes by habit: refused with reclaim's way, not sent to connect() to fail there.
PEER_OPTIONS = {
    "timeout": "psycopg_pool's timeout= is acquire_timeout= here (per call: acquire(timeout=))",
    "kwargs": "pass connect's keyword arguments to the pool itself, e.g. "
    "ConnectionPool(psycopg.connect, conninfo, autocommit=True)",
    "open": "a reclaim pool is open once made; pool.wait() waits for min_size connections",
    "num_workers": "connections are made by the acquiring caller and one maintenance thread",
    "reconnect_timeout": "the background refill never gives up; it backs off by "
    "reconnect_delay= up to reconnect_max_delay=",
    "reconnect_failed": "the background refill never gives up (it logs each failed create); "
    "pool.wait(timeout) raises naming the last one",
    "connection_class": "pass that class's connect, e.g. ConnectionPool(MyConnection.connect, ...)",
    "pool_size": "the bound is max_size= (min_size= connections are kept open)",
    "max_overflow": "the bound is max_size= alone",
    "pool_timeout": "it is acquire_timeout= here (per call: acquire(timeout=))",
    "pool_recycle": "it is max_lifetime= here",
    "pool_pre_ping": "the adapter checks connections on reuse (check_after=)",
    "max_inactive_connection_lifetime": "it is max_idle= here",
    "init": "it is configure= here (once per new connection)",
}


def _refuse_misspelt_options(connect: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """A keyword one typo away from a pool option (``max_sise``), or another pool's option
    (psycopg_pool's ``timeout``: :data:`PEER_OPTIONS`), is refused, not passed to connect.

    Every other keyword goes to ``connect``, so a misspelt pool option would otherwise
    surface only at the first acquire, as the driver's "invalid keyword argument". Names
    that ``connect`` declares itself are never refused; ``connect_kwargs=`` passes any.
    """
    for key in kwargs:
        hint = PEER_OPTIONS.get(key)
        # Refused only when connect's signature is known to lack it (sqlite3's builtin connect
        # has none, and takes timeout=).
        if hint is not None and _declares(connect, key, unknown=True) is False:
            raise TypeError(
                f"{key}= is not a pool option: {hint} (keywords that are not pool options go to "
                f"connect(); if connect really takes {key}=, pass it in connect_kwargs={{{key!r}: ...}})"
            )
        if len(key) < 5:
            continue
        near = next((opt for opt in sorted(POOL_OPTIONS) if _one_edit_apart(key, opt)), None)
        if near is None:
            continue
        if not _declares(connect, key):
            raise TypeError(
                f"{key}= is not a pool option: did you mean {near}=? (keywords that are not pool "
                f"options go to connect(); if connect really takes {key}=, pass it in "
                f"connect_kwargs={{{key!r}: ...}})"
            )


def _declares(connect: Callable[..., Any], key: str, *, unknown: bool = False) -> bool:
    """Whether *connect* names *key* as a parameter of its own (not only ``**kwargs``);
    *unknown* when it has no signature to tell (a builtin)."""
    try:
        param = inspect.signature(connect).parameters.get(key)
    except (TypeError, ValueError):  # a builtin without a signature
        return unknown
    # psycopg.connect(..., **kwargs) does not take kwargs=
    return param is not None and param.kind not in (param.VAR_KEYWORD, param.VAR_POSITIONAL)


#: Options of the networked adapters that are neither pool options nor the driver's.
ADAPTER_OPTIONS = ("check_timeout", "reset_timeout")


def _refuse_adapter_options(connect: Callable[..., Any], kwargs: dict[str, Any], adapter: Any) -> None:
    """``reset_timeout=`` given to the pool is refused with the way to set it, not passed to connect.

    It would otherwise reach the driver and fail at the first acquire (psycopg: "invalid
    connection option").
    """
    for key in ADAPTER_OPTIONS:
        if key in kwargs and hasattr(adapter, key) and not _declares(connect, key):
            raise TypeError(
                f"{key}= is an option of the {getattr(adapter, 'name', 'db')!r} adapter, not of the "
                f"pool: pass adapter=reclaim.db.{type(adapter).__name__}({key}=...)"
            )


#: ``reset=`` may name a policy instead of a callable.
RESET_POLICIES = ("transaction", "session")


def _reset_policy(adapter: Any, policy: str) -> None:
    """Apply ``reset="transaction"`` (the default) or ``reset="session"`` to *adapter*."""
    if policy not in RESET_POLICIES:
        raise ValueError(f"reset must be a callable or one of {RESET_POLICIES}, got {policy!r}")
    if not hasattr(adapter, "session"):
        if policy == "transaction":
            return
        raise ValueError(
            f"reset='session': the {getattr(adapter, 'name', 'db')!r} adapter cannot undo a "
            "whole session; pass reset=<callable> that does"
        )
    adapter.session = policy == "session"


class ConnectionPool(Pool[Any]):
    """A :class:`reclaim.Pool` of DB-API connections: ``ConnectionPool(connect, *args, **kwargs)``.

    Keyword arguments named like a pool option (``max_size``, ``acquire_timeout``,
    ``max_lifetime``, ``check``…, plus ``adapter=`` and ``connect_kwargs=``) configure
    the pool; the rest go to ``connect`` (one a typo away from a pool option, such as
    ``max_sise``, is refused: pass it in ``connect_kwargs`` if connect takes it). The
    adapter chosen for the driver (sqlite3, psycopg, PyMySQL, else the generic DB-API
    one) supplies ``check``
    (cheapest ping, skipped within ``check_after`` of the last use), ``reset``
    (rollback only when a transaction is open), ``is_broken`` (errors that mean
    the connection is gone: discarded) and ``close``; an option you pass wins.
    ``reset="session"`` makes the adapter undo everything a borrower changed in the
    session (PostgreSQL ``DISCARD ALL``, MariaDB ``COM_RESET_CONNECTION``) for pools
    shared by different users or tenants; ``reset="transaction"`` is the default.

    Example::

        with reclaim.db.ConnectionPool(sqlite3.connect, "app.db", max_size=4) as pool:
            with pool.acquire() as conn:
                conn.execute("INSERT INTO t VALUES (1)")
                conn.commit()

    Raises:
        TypeError, ValueError: a pool option is invalid (the message names it).
    """

    def __init__(self, connect: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        adapter, create, pool_kw = split_options(connect, args, kwargs, asynchronous=False)
        #: The adapter in use (``pool.adapter.name`` says which driver it serves).
        self.adapter = adapter
        super().__init__(create, **pool_kw)
