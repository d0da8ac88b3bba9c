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
pool closes it.

A connection of the program's (``await asyncpg.connect(...)``) was likewise its socket at
asyncpg's line. So ``connect_utils._connect``, which every connect goes through, records the
connection (kind ``asyncpg``) at the program's line that awaited it, and its socket becomes the
connection's (owned); ``close()`` or ``terminate()`` releases it, asyncpg's ``__del__`` (or its
death, once its loop is closed) means the garbage collector closed it. One a pool's holder
connects is the pool's: re-sited under the holder's ``connect`` (owned), as its socket is.

A pool's connection handed out (``holder.acquire``, under ``await pool.acquire()`` and ``async
with pool.acquire()``) is blamed on the program's acquire line until the holder takes it back
(``_release``: ``pool.release()``, the block's exit, the connection closed). One the pool
terminates while still out (``pool.terminate()``, or ``pool.close()`` failing or cancelled: it
waits for every connection to come back, forever, so a program that kept one hangs there until
a timeout or Ctrl-C cancels it into ``terminate()``) is reported as ``terminated`` at its acquire
line: the pool closed it, the program never released it, and that is the line to fix. A program
that does not import asyncpg pays nothing.
"""

from __future__ import annotations

import functools
import sys
from types import ModuleType

from . import _pooled, _records, _sockets
from ._holders import public_name, record_of
from ._kinds import Details, Kind, register
from ._owning import caller, lookup, outside, own
from ._patch import Patches
from ._records import NO_OBJECT, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "asyncpg"
NOT_CLOSED = "not closed (await pool.close(), or async with)"
CONN_NOT_CLOSED = "not closed (await conn.close())"
NOT_RELEASED = "not released to its pool (await pool.release(conn), or async with pool.acquire())"
#: State of a connection its pool's ``terminate()`` closed while the program still had it.
TERMINATED = "terminated"
#: What that connection was: out, when the pool closed under it (an ``async with
#: pool.acquire()`` block still running, whose exit gives it back too late). Not the advice to
#: release it, which such a block follows.
STILL_OUT = "still acquired from its pool when the pool terminated (let it go back before closing the pool)"

# A pool's info is its class's name; a connection's is (class, address, problem).


def _is_open(obj: Any, rec: Record) -> bool:
    return obj is None or not obj.is_closed()  # None: a pool (no object); see the module doc


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if type(rec.info) is str:
        return f"{rec.info} {NOT_CLOSED}", {"class": rec.info, "problem": NOT_CLOSED}
    label, where, problem = rec.info
    return f"connection to {where} {problem}", {"class": label, "address": where, "problem": problem}


register(Kind(KIND, is_open=_is_open, describe=_describe, death_leak=True))


def _key(pool: object) -> tuple[str, int]:
    return (KIND, id(pool))


def _socket(con: Any) -> Any:
    """The socket under an asyncpg connection's transport (None when it has none)."""
    transport = getattr(con, "_transport", None)
    return _sockets.of_transport(transport) if transport is not None else None


def _record_of(obj: Any) -> Record | None:
    return record_of(obj) if obj is not None else None


def _where(con: Any) -> str:
    try:
        addr, database = con._addr, con._params.database
        host = f"{addr[0]}:{addr[1]}" if type(addr) is tuple else str(addr)  # else a Unix socket's path
    except Exception:  # must never break the program's connect
        return "PostgreSQL"
    return f"{host}/{database}"


def _record(con: Any, frame: Any, owned_site: Any) -> None:
    """*con* was just connected, awaited from *frame*: recorded at the program's line there; its
    socket is its own."""
    sock_rec = _record_of(_socket(con))
    if sock_rec is not None:
        sock_rec.site = owned_site
    site = _records.capture(caller(frame, "asyncpg"), _records.depth)
    _records.new(con, KIND, (public_name(type(con)), _where(con), CONN_NOT_CLOSED), site)


def _ended(con: Any, frame: Any) -> None:
    """*con*'s ``close()`` or ``terminate()``, called from *frame*, returned."""
    if con.is_closed():
        _records.closing(con, frame)


def _member(cls: type, name: str) -> Any:
    return vars(cls).get(name)


def install(patches: Patches, module: ModuleType) -> None:
    """Record ``asyncpg.pool.Pool``'s pools while open and the connections made, at the program's
    lines; a pool's connections are its own, blamed on the acquire line while handed out."""
    pool, holder = getattr(module, "Pool", None), getattr(module, "PoolConnectionHolder", None)
    utils = sys.modules.get("asyncpg.connect_utils")
    con_cls = getattr(sys.modules.get("asyncpg.connection"), "Connection", None)
    if not isinstance(pool, type) or not isinstance(holder, type) or not isinstance(con_cls, type):
        return
    init, close, terminate = (_member(pool, name) for name in ("_async__init__", "close", "terminate"))
    connect, acquire, release = (_member(holder, name) for name in ("connect", "acquire", "_release"))
    con_close, con_terminate = _member(con_cls, "close"), _member(con_cls, "terminate")
    make: Any = getattr(utils, "_connect", None)
    if (
        None in (init, close, terminate, connect, acquire, release, con_close, con_terminate, make)
        or "__del__" in vars(pool)
        or "__del__" not in vars(con_cls)
    ):
        return  # not the layout this was written for: its sockets are reported as before
    # The task that restores min_size after a connection was lost is the pool's too.
    own(connect, lookup(pool, "_schedule_min_size_maintenance"), make)
    pool_site = (connect.__code__, 0)
    connection_site = (make.__code__, 0)

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
        if not self._closed:
            for ch in self._holders:
                rec = _record_of(ch._con) if ch._in_use is not None else None
                if rec is not None and rec.info[2] is NOT_RELEASED:
                    rec.info = (*rec.info[:2], STILL_OUT)
                    _records.leak(rec, TERMINATED)
        terminate(self)

    def __del__(self: Any) -> None:
        rec = _records.live.get(_key(self))
        if rec is not None:
            _records.leak(rec, _records.COLLECTED)

    @functools.wraps(make)
    async def _connect(*args: Any, **kwargs: Any) -> Any:
        con = await make(*args, **kwargs)
        # Only a connection: a test that patches what connects gets back what its mock makes (a
        # Mock with the connection's spec, which asyncpg's metaclass tells apart), no leak.
        if isinstance(con, con_cls):
            _record(con, sys._getframe(1), connection_site)
        return con

    @functools.wraps(con_close)
    async def con_close_(self: Any, *args: Any, **kwargs: Any) -> None:
        frame = sys._getframe(1)
        try:
            await con_close(self, *args, **kwargs)
        finally:
            _ended(self, frame)

    @functools.wraps(con_terminate)
    def con_terminate_(self: Any) -> None:
        frame = sys._getframe(1)
        try:
            con_terminate(self)
        finally:
            _ended(self, frame)

    @functools.wraps(connect)
    async def connect_(self: Any) -> None:
        await connect(self)
        con = self._con
        for rec in (_record_of(con), _record_of(_socket(con))):
            if rec is not None:
                rec.site = pool_site

    @functools.wraps(acquire)
    async def acquire_(self: Any) -> Any:
        proxy = await acquire(self)
        rec = _record_of(self._con)
        if rec is not None:
            _pooled.lend(rec, _records.capture(caller(sys._getframe(1), "asyncpg"), _records.depth))
            rec.info = (*rec.info[:2], NOT_RELEASED)
            _pooled.lent(self)  # a session fixture's pool reaches it only through its holder
        return proxy

    @functools.wraps(release)
    def _release(self: Any) -> None:
        if self._in_use is not None:  # handed out until now
            _pooled.back(self)
            rec = _record_of(self._con)
            if rec is not None and rec.info[2] is NOT_RELEASED:
                rec.site, rec.info = pool_site, (*rec.info[:2], CONN_NOT_CLOSED)
        release(self)

    patches.set(pool, "_async__init__", _async__init__)
    patches.set(pool, "close", close_)
    patches.set(pool, "terminate", terminate_)
    patches.set(pool, "__del__", __del__)
    patches.set(holder, "connect", connect_)
    patches.set(holder, "acquire", acquire_)
    patches.set(holder, "_release", _release)
    patches.set(utils, "_connect", _connect)
    patches.set(con_cls, "close", con_close_)
    patches.set(con_cls, "terminate", con_terminate_)
