"""Object pools: :class:`Pool` (threads) and :class:`AsyncPool` (asyncio), one design.

Bounded (never more than ``max_size`` live objects), fair (a returned object
goes to the longest waiter), health-checked, lifetime-limited, leak-finding and
fork-safe. ``reclaim.db`` builds DB-API connection pools on top.
"""

from typing import TYPE_CHECKING

from ._lease import Lease
from ._stats import PoolStatistics
from ._sync import Pool

if TYPE_CHECKING:
    from ._alease import AsyncLease
    from ._async import AsyncPool

__all__ = ["AsyncLease", "AsyncPool", "Lease", "Pool", "PoolStatistics"]


def _load(name: str) -> object:
    """AsyncPool and AsyncLease import asyncio: loaded on first use, so a thread pool does not."""
    if name not in ("AsyncPool", "AsyncLease"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import _alease, _async

    value: object = _async.AsyncPool if name == "AsyncPool" else _alease.AsyncLease
    globals()[name] = value
    return value


if not TYPE_CHECKING:  # hidden from type checkers, as in reclaim/__init__.py
    __getattr__ = _load
