"""Leak detection: which resources were acquired and never released, and where.

The tracker records every acquisition of a file, raw descriptor, socket,
sqlite3 connection, child process, thread, asyncio task, temporary file or
directory, mmap, selector, asyncio event loop, HTTP client that owns sockets
(aiohttp, httpx: its leaked sockets are listed under it, at the line that made
it), and reclaim's own scopes, ``@resource`` instances and pool leases, as a
few ``(code, line)`` pairs: no
tracemalloc, nothing kept alive. A check lists what was acquired inside its
window and is still open, or was closed by the garbage collector instead of
the program.

Public API (what the CLI and the pytest plugin build on):

* ``no_leaks(*, ignore_kinds=(), ignore=(), grace=1.0, collect=False,
  include_framework=False)`` - ``with``/``async with``/decorator; raises
  :class:`LeakError` (``.leaks``, ``.report``).
* ``Tracker()`` - ``start()`` (returns self), ``stop()``, ``running``,
  ``snapshot() -> Snapshot``, ``report(since=None, *, grace=0.0,
  ignore_kinds=(), ignore=(), collect=False, include_framework=False,
  untracked_fds=True) -> Report``, ``statistics()``; a context manager. Any
  number may run: the instrumentation is installed once, reference-counted.
* ``Report`` - falsy when clean; ``leaks``, ``summary()``, ``counts()``,
  ``to_text(color=False, width=100)``, ``render(console)`` (a rich Console),
  ``to_dict()``, ``to_json()`` (schema ``reclaim.leaks/1``, docs/leaks-json.md).
* ``Leak`` - ``kind``, ``description``, ``state`` (open/collected/cancelled),
  ``frames`` (user's line first), ``site``, ``thread``, ``context``,
  ``acquired``, ``age``, ``details``, ``seq``, ``holds``, ``to_dict()``, ``headline()``.
* ``set_context(label)``, ``current_context()``, ``context(label)`` - the label
  (a test id) recorded with every acquisition.
* ``KINDS`` - the kind names a report can contain.

``Leak``, ``Report``, ``Ignore``, ``SCHEMA`` and ``TrackerStatistics`` are imported
on first use (PEP 562 ``__getattr__``), as the tracker makes them: the dataclasses
among them import ``dataclasses`` and ``inspect``, a third of what ``reclaim run``
paid before the program's first line, and a clean run never needs them.

Example::

    import reclaim

    with reclaim.no_leaks():
        data = open("config.toml").read()   # LeakError: file config.toml, acquired at app.py:4
"""

from __future__ import annotations

from reclaim import _lazy
from reclaim.errors import LeakError

from ._check import NoLeaks, no_leaks
from ._kinds import CLIENT_KINDS
from ._tracker import Snapshot, Tracker, context, current_context, set_context

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from ._report import SCHEMA, Ignore, Leak, Report
    from ._stats import TrackerStatistics

#: Every kind a report can contain (pool leases and other owners may add their own).
KINDS = (
    "file",
    "fd",
    "socket",
    "sqlite3",
    "psycopg",
    "psycopg2",
    "pymysql",
    "aiomysql-connection",
    "pg8000",
    "mysqlclient",
    "mysql-connector",
    "asyncpg",
    "subprocess",
    "orphan-process",
    "thread",
    "task",
    "tempdir",
    "tempfile",
    "filelock",
    "mmap",
    "dbm",
    "selector",
    "eventloop",
    "multiprocessing",
    "sharedmemory",
    *CLIENT_KINDS,
    "redis-connection",
    "amqp",
    "amqpstorm",
    "aiormq",
    "mqtt",
    "nats",
    "watchdog",
    "apscheduler",
    "dask",
    "pexpect",
    "ptyprocess",
    "grpc",
    "zmq-socket",
    "zmq-context",
    "jupyter-kernel",
    "jupyter-client",
    "scope",
    "resource",
    "lease",
    "pool",
    "untracked-fd",
)

__all__ = [
    "KINDS",
    "SCHEMA",
    "Ignore",
    "Leak",
    "LeakError",
    "NoLeaks",
    "Report",
    "Snapshot",
    "Tracker",
    "TrackerStatistics",
    "context",
    "current_context",
    "no_leaks",
    "set_context",
]

# Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "Ignore": "_report",
    "Leak": "_report",
    "Report": "_report",
    "SCHEMA": "_report",
    "TrackerStatistics": "_stats",
}


_load, __dir__ = _lazy.exports(__name__, globals(), _LAZY)

if not TYPE_CHECKING:
    # Hidden from type checkers: a module __getattr__ would make mypy accept any
    # attribute (a typo like reclaim.leaks.Leek would type-check as object).
    __getattr__ = _load
