"""Object pools: :class:`Pool` (threads) and :class:`AsyncPool` (asyncio), one design.

Bounded (never more than ``max_size`` live objects), fair (a returned object
goes to the longest waiter), health-checked, lifetime-limited, leak-finding and
fork-safe. ``reclaim.db`` builds DB-API connection pools on top.
"""

from ._alease import AsyncLease
from ._async import AsyncPool
from ._lease import Lease
from ._stats import PoolStatistics
from ._sync import Pool

__all__ = ["AsyncLease", "AsyncPool", "Lease", "Pool", "PoolStatistics"]
