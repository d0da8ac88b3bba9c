"""reclaim: resource management for Python.

Every file, socket, connection, thread, process and lock a program takes has an
owner, is released on every path, and when it is not, reclaim says which
resource, where it was acquired, and by whom.

The public names live here; the modules behind them are private unless their
name says otherwise (``reclaim.leaks``, ``reclaim.db``, ``reclaim.files``,
``reclaim.net``).

``import reclaim`` loads only the errors (and not ``typing``): pytest imports this
package in every session through the plugin's entry point, and ``reclaim run`` at
its start, so it must stay cheap. Everything else (``Scope``, ``@resource``, the
pools, which import asyncio, sockets, files and the leak tracker) is imported on
first use of one of its names (PEP 562 ``__getattr__``); type checkers see them
through the ``TYPE_CHECKING`` imports below.

PYTEST_DONT_REWRITE: pytest marks a plugin's package for assertion rewriting and warns
when it was imported first, as ``reclaim run -m pytest`` does; reclaim has no asserts
for pytest to rewrite, and this marker (pytest's own) says so. Nor does pytest compile
reclaim's modules again from source (see ``_past_rewriter``).
"""

# First: its finder, installed as it is imported, finds every reclaim module imported after it.
from . import _past_rewriter  # noqa: F401

# isort: split
from . import _lazy
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

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)

if TYPE_CHECKING:
    from . import db as db
    from . import files as files
    from . import leaks as leaks
    from . import net as net
    from . import pool as pool
    from ._resource import resource
    from .files import atomic_write, locked, temp_dir, temp_file
    from .leaks import no_leaks
    from .net import SocketPool, connect, is_alive
    from .pool import AsyncLease, AsyncPool, Lease, Pool, PoolStatistics
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

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "AsyncScope": "scope",
    "Held": "scope",
    "Scope": "scope",
    "ScopeStatistics": "scope",
    "cleanup_errors": "scope",
    "resource": "_resource",
    "AsyncLease": "pool",
    "AsyncPool": "pool",
    "Lease": "pool",
    "Pool": "pool",
    "PoolStatistics": "pool",
    "SocketPool": "net",
    "connect": "net",
    "is_alive": "net",
    "atomic_write": "files",
    "locked": "files",
    "temp_dir": "files",
    "temp_file": "files",
    "no_leaks": "leaks",
}
# Subpackages reachable as ``reclaim.<name>`` after a bare ``import reclaim``, as before.
_SUBMODULES = frozenset({"db", "files", "leaks", "net", "pool"})


_load, __dir__ = _lazy.exports(__name__, globals(), _LAZY, _SUBMODULES)

if not TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make mypy accept any
    # attribute (a typo like reclaim.Pol would type-check as object).
    __getattr__ = _load
