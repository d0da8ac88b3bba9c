"""asyncpg's pool never closed: one leak at the line that made it, its connections part of it.

``await asyncpg.create_pool(...)`` (or ``async with``) opens *min_size* connections, each
an asyncio transport whose socket is made deep in asyncpg (``connect_utils``). A pool
left open was reported as that many sockets at asyncpg's line, while the fix is one
``close()`` at the program's line that made the pool.

So the pool gets a record (kind ``asyncpg``) once it is initialized, at the program's
line that awaited it (``create_pool`` has returned by then: no asyncpg frame comes
first), released by ``close()`` or ``terminate()``; dropped before, it is reported as
closed by the garbage collector (its ``__del__``, which asyncpg's ``Pool`` lacks, is
ours). The pool has ``__slots__`` and no weak reference, so the record refers to no
object (:data:`._records.NO_OBJECT`) and is keyed by the pool's id. Each socket a pool's
connection holder connects is the pool's: its record is re-sited under the holder's
``connect`` (owned, see :func:`._owning.own`), so it is never reported on its own; the
pool closes it. A program that does not import asyncpg pays nothing.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _records
from ._holders import public_name
from ._kinds import Details, Kind, register
from ._owning import lookup, outside, own
from ._patch import Patches
from ._records import NO_OBJECT, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "asyncpg"
NOT_CLOSED = "not closed (await pool.close(), or async with)"


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    return f"{rec.info} {NOT_CLOSED}", {"class": rec.info, "problem": NOT_CLOSED}


register(Kind(KIND, describe=_describe))


def _key(pool: object) -> tuple[str, int]:
    return (KIND, id(pool))


def _socket(con: Any) -> Any:
    """The socket under an asyncpg connection's transport (None when it has none)."""
    transport = getattr(con, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    return getattr(sock, "_sock", sock)  # asyncio's TransportSocket around it


def install(patches: Patches, module: ModuleType) -> None:
    """Record ``asyncpg.pool.Pool``'s pools while open; their holders' sockets are theirs."""
    pool, holder = getattr(module, "Pool", None), getattr(module, "PoolConnectionHolder", None)
    if not isinstance(pool, type) or not isinstance(holder, type):
        return
    init, close, terminate = (vars(pool).get(name) for name in ("_async__init__", "close", "terminate"))
    connect = vars(holder).get("connect")
    if init is None or close is None or terminate is None or connect is None or "__del__" in vars(pool):
        return  # not the layout this was written for: its sockets are reported as before
    # The task that restores min_size after a connection was lost is the pool's too.
    own(connect, lookup(pool, "_schedule_min_size_maintenance"))
    owned_site = (connect.__code__, 0)

    @functools.wraps(init)
    async def _async__init__(self: Any) -> Any:
        result = await init(self)
        key = _key(self)
        if not self._closed and key not in _records.live:
            site = _records.capture(outside(self, sys._getframe(1)), _records.depth)
            _records.new(NO_OBJECT, KIND, public_name(type(self)), site, key)
        return result

    @functools.wraps(close)
    async def close_(self: Any) -> None:
        _records.release(_key(self))
        await close(self)

    @functools.wraps(terminate)
    def terminate_(self: Any) -> None:
        _records.release(_key(self))
        terminate(self)

    def __del__(self: Any) -> None:
        rec = _records.live.get(_key(self))
        if rec is not None:
            _records.leak(rec, _records.COLLECTED)

    @functools.wraps(connect)
    async def connect_(self: Any) -> None:
        await connect(self)
        sock = _socket(self._con)
        rec = _records.live.get(id(sock)) if sock is not None else None
        if rec is not None and rec() is sock:
            rec.site = owned_site

    patches.set(pool, "_async__init__", _async__init__)
    patches.set(pool, "close", close_)
    patches.set(pool, "terminate", terminate_)
    patches.set(pool, "__del__", __del__)
    patches.set(holder, "connect", connect_)
