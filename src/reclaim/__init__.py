"""reclaim: resource management for Python.

Every file, socket, connection, thread, process and lock a program takes has an
owner, is released on every path, and when it is not, reclaim says which
resource, where it was acquired, and by whom.

The public names live here; the modules behind them are private unless their
name says otherwise (``reclaim.leaks``, ``reclaim.db``, ``reclaim.files``,
``reclaim.net``).
"""

from ._version import __version__
from .errors import (
    CleanupError,
    ConnectTimeout,
    LeakError,
    LockTimeout,
    PoolBroken,
    PoolClosed,
    PoolFull,
    PoolTimeout,
    ReclaimError,
    ResourceClosed,
)
from .files import atomic_write, locked, temp_dir, temp_file
from .leaks import no_leaks
from .net import SocketPool, connect, is_alive
from .pool import AsyncLease, AsyncPool, Lease, Pool, PoolStatistics
from .resource import resource
from .scope import AsyncScope, Held, Scope, ScopeStatistics, cleanup_errors

__all__ = [
    "AsyncLease",
    "AsyncPool",
    "AsyncScope",
    "CleanupError",
    "ConnectTimeout",
    "Held",
    "LeakError",
    "Lease",
    "LockTimeout",
    "Pool",
    "PoolBroken",
    "PoolClosed",
    "PoolFull",
    "PoolStatistics",
    "PoolTimeout",
    "ReclaimError",
    "ResourceClosed",
    "Scope",
    "ScopeStatistics",
    "SocketPool",
    "__version__",
    "atomic_write",
    "cleanup_errors",
    "connect",
    "is_alive",
    "locked",
    "no_leaks",
    "resource",
    "temp_dir",
    "temp_file",
]
