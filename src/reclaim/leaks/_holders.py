"""Library objects that own sockets: what leaks through one is reported at the line that made it.

An aiohttp ``ClientSession`` (or a connector of its own), an ``httpx.Client`` or
``AsyncClient`` opens its sockets on its first request, deep in the library
(aiohappyeyeballs, httpcore), and keeps them in its pool. Left open or dropped
unclosed, it leaks them; reported on their own, they pointed at the request
line, while the fix is at the line that made the client. So these objects are
*holders* (:attr:`Kind.holder`): each gets a record at the user's line that
made it, and a leaked socket it holds is listed under it, the client being
the entry (``aiohttp.ClientSession not closed``, acquired at its line, ``holds
socket ...``). A holder that holds nothing leaked is not reported: it owns no
descriptor of its own (aiohttp still warns "Unclosed client session").

What a holder holds is the tracked resources it reaches (:func:`claim`,
through ``gc.get_referents``: instances and containers, not code, modules or
event loops, and not into another tracked resource, which holds its own):
looked at when a check finds it still open, or in its ``__del__`` when it is
dropped unclosed, before its sockets are closed for it (by aiohttp's connector
``__del__``, or as they die with an httpx client). The connector a session
makes is part of it, and so is one it is handed to own (``connector_owner``,
the default): closing the session closes it. One it does not own is a holder
of its own, at its line. Only construction and ``__del__`` of these classes
are wrapped: a socket pays nothing more.

A ``requests.Session`` is one too (kind ``requests``), though it has no closed state: it is
open while its adapters keep a urllib3 pool (``close()`` drops them; a request after that makes
them again). Dropped unclosed, its pools' sockets are closed by the ``weakref.finalize``
callbacks urllib3 gives each pool, which the program's own ``close()`` runs too (by dropping
the pools): so they are marked collected as the session dies (:data:`DIE_WITH`). Dropped in a
reference cycle, the collector runs those callbacks before any ``__del__``: the sockets are
closed for the collector (:func:`reclaim._sites.in_finalizer`) and out of the pools when the
session's finalizer runs, which finds them through the queues the callbacks were given
(:func:`closed_for`). One the program keeps to the end is closed by those callbacks at exit, as an
atexit handler: no leak. A urllib3 ``PoolManager`` the program makes itself is the same (kind
``urllib3``; ``clear()`` closes it): not one a session makes, which is part of the session.

An httpcore ``ConnectionPool`` or ``AsyncConnectionPool`` the program makes itself, or through an
``httpx.HTTPTransport`` it never hands to a client, is a holder too (kind ``httpcore``), at the
line that made it, holding its connections (``close()`` closes them); one a client made, or was
handed in a transport, is part of the client.

A redis-py client (kind ``redis``, sync or asyncio) holds the connections it keeps: its single
connection, and the idle ones of the pool it made (``close()`` disconnects them; a pool it was
handed is not its own, unless ``from_url()`` or ``from_pool()`` gave it the pool to close). A
``ConnectionPool`` the program makes itself holds its idle connections, at the line that made
it (``disconnect()`` closes them). Each pooled connection is a holder of its own, of kind
``redis-connection`` (see :mod:`._redis`), listed under the client or pool with its socket.

An aiomysql ``Pool`` (kind ``aiomysql``) holds its connections, idle or lent: never closed and
waited for (``close()`` only marks it closing; ``wait_closed()`` closes them), it is the entry at
the line that awaited ``create_pool()``, not each socket at aiomysql's line that opened it.

A SQLAlchemy ``Engine`` (kind ``sqlalchemy``) holds the connections its pool keeps idle, which
``dispose()`` closes: never disposed, it is the entry, at the line that called
``create_engine()``, with them under it. A connection checked out is not in the pool, so one
never given back is its own entry (see :mod:`._pooled`).

aiohttp's ``test_utils.TestServer`` and ``TestClient`` are holders of kind ``aiohttp`` too: one
never closed holds its listening and accepted sockets and its request handlers' tasks (a
client, the session it makes and the server it is handed, which it closes).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from types import BuiltinFunctionType, CodeType, FunctionType, ModuleType

from reclaim import _sites

from . import _records
from ._kinds import CLIENT_KINDS, Details, Kind, kind_of, register
from ._owning import PLUMBING, caller, outside
from ._patch import Patches, outside_warnings_stack
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = [
    "HOLDERS",
    "NOT_FOLLOWED",
    "ROOTS",
    "by_mro",
    "claim",
    "dies",
    "fold",
    "install",
    "install_kombu_pools",
    "is_kind",
    "leave_to_libraries",
    "making",
    "not_followed",
    "public_name",
    "record_of",
    "track",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def _aiohttp_owned(session: Any) -> Iterable[object]:
    connector = session._connector
    return (connector,) if connector is not None and session._connector_owner else ()


def nothing_owned(obj: Any) -> Iterable[object]:
    """What a holder that is handed nothing to close owns: nothing (see :func:`track`)."""
    return ()


def _itself(obj: Any) -> Iterable[object]:
    return (obj,)


def _test_server(client: Any) -> Iterable[object]:
    """The server an aiohttp ``TestClient`` is handed: its ``close()`` closes it."""
    server = getattr(client, "_server", None)
    return () if server is None else (server,)


def _requests_closed(session: Any) -> bool:
    """Whether a ``requests.Session`` keeps no urllib3 pool (see the module's docstring)."""
    for adapter in session.adapters.values():  # requests.get() pays for this: no list, no genexpr
        if len(getattr(getattr(adapter, "poolmanager", None), "pools", ())):
            return False
        for manager in getattr(adapter, "proxy_manager", {}).values():
            if len(getattr(manager, "pools", ())):
                return False
    return True


def _adapters(session: Any) -> Iterable[object]:
    return tuple(session.adapters.values())


def _engine_disposed(engine: Any) -> bool:
    """Whether a SQLAlchemy ``Engine``'s pool keeps no connection (``dispose()`` closes them);
    a pool that cannot say is searched."""
    pool = engine.pool
    try:
        return not (pool.checkedin() or pool.checkedout())
    except Exception:  # a pool without the counts (StaticPool, say)
        return False


def _engine_pool(engine: Any) -> Iterable[object]:
    return (engine.pool,)


def _engine_label(engine: Any) -> object:
    """``(class, url)`` of a SQLAlchemy ``Engine``, its URL with no password: engines made at one
    line for several databases (a fixture's loop over URLs) each say which they were."""
    name = public_name(type(engine))
    try:
        return name, engine.url.render_as_string(hide_password=True)
    except Exception:  # an engine made without a URL (a mock's)
        return name


def _redis_idle(pool: Any) -> list[object]:
    """The idle connections of a redis-py pool (a connection checked out and never given back is
    the borrower's, see :mod:`._pooled`)."""
    idle: Any = getattr(pool, "_available_connections", None)
    if idle is None:  # a BlockingConnectionPool: its queue, with None for room to grow
        idle = getattr(getattr(pool, "pool", None), "queue", ())
    return [conn for conn in idle if conn is not None]


def _redis_connections(holder: Any) -> list[object]:
    """The connections a redis-py client keeps of its own: its single connection, and the idle
    ones of the pool it made or was given to close (``from_url()``, ``from_pool()``; one it was
    merely handed is not its to close). For a pool the program made, its idle connections."""
    if not hasattr(holder, "connection_pool"):  # a ConnectionPool
        return _redis_idle(holder)
    own = [holder.connection] if holder.connection is not None else []
    if getattr(holder, "auto_close_connection_pool", False):
        own.extend(_redis_idle(holder.connection_pool))
    return own


def _redis_roots(holder: Any) -> Iterable[object]:
    """The connections a redis-py client or pool keeps (see :func:`_redis_connections`), in a list
    :func:`claim` looks into: each is a record of its own (see :mod:`._redis`), listed under it."""
    return (_redis_connections(holder),)


def _redis_closed(client: Any) -> bool:
    """Whether a redis-py client keeps no connected socket of its own (``close()`` disconnects them)."""
    return not any(_redis_connected(conn) for conn in _redis_connections(client))


def _redis_connected(conn: Any) -> bool:
    connected = getattr(conn, "is_connected", None)
    if connected is None:  # valkey-py's sync connections have no is_connected: their socket tells
        return getattr(conn, "_sock", None) is not None
    return bool(connected)


def _aiomysql_closed(pool: Any) -> bool:
    """Whether an aiomysql pool keeps no connection: ``wait_closed()`` closed the idle ones after
    ``close()`` (which only marks it closing), or it never made one."""
    return bool(pool.closed) or not (pool._free or pool._used)


def _aiomysql_connections(pool: Any) -> Iterable[object]:
    return (pool._free, pool._used)


def _urllib3_closed(manager: Any) -> bool:
    """Whether a urllib3 ``PoolManager`` keeps no pool (``clear()`` drops them all)."""
    return not len(getattr(manager, "pools", ()))


def _pools(manager: Any) -> Iterable[object]:
    return (manager.pools,)


def _httpx_transports(client: Any) -> Iterable[object]:
    """Where an httpx client's sockets are: its transports, less those that call an app in this
    process (``ASGITransport``, ``WSGITransport``, Starlette's ``TestClient``): they open none,
    and the app's own connections (a database pool its lifespan opened) are not the client's."""
    mounts = getattr(client, "_mounts", None)
    transports = [getattr(client, "_transport", None), *(mounts.values() if isinstance(mounts, dict) else ())]
    return tuple(t for t in transports if t is not None and not hasattr(t, "app"))


def _httpx_pools(client: Any) -> Iterable[object]:
    """The httpcore pools of the transports an httpx client was handed (``transport=``,
    ``mounts=``): its ``close()`` closes them."""
    pools = (getattr(transport, "_pool", None) for transport in _httpx_transports(client))
    return tuple(pool for pool in pools if pool is not None)


def _httpcore_closed(pool: Any) -> bool:
    """Whether an httpcore pool keeps no connection (``close()`` closes and drops them all)."""
    return not getattr(pool, "_connections", ())


#: module -> class -> (kind, attribute true once it is closed (or a function saying so), how to
#: close it, what it is handed to close: a connector). The classes' subclasses are tracked too
#: (TCPConnector, say).
if TYPE_CHECKING:
    Spec = tuple[str, str | Callable[[Any], bool], str, Callable[[Any], Iterable[object]]]

HOLDERS: dict[str, dict[str, Spec]] = {
    "aiohttp.client": {
        "ClientSession": ("aiohttp", "closed", "await session.close(), or async with", _aiohttp_owned),
    },
    "aiohttp.connector": {
        "BaseConnector": ("aiohttp", "closed", "await connector.close()", nothing_owned),
    },
    "aiohttp.test_utils": {
        "BaseTestServer": ("aiohttp", "closed", "await server.close(), or async with", nothing_owned),
        "TestClient": ("aiohttp", "_closed", "await client.close(), or async with", _test_server),
    },
    "httpx._client": {
        "Client": ("httpx", "is_closed", "close(), or a with-block", _httpx_pools),
        "AsyncClient": ("httpx", "is_closed", "await aclose(), or async with", _httpx_pools),
    },
    # A pool the program makes, itself or through an httpx transport (made in a client's
    # __init__, it is part of the client; handed to a client, the client closes it).
    "httpcore._sync.connection_pool": {
        "ConnectionPool": ("httpcore", _httpcore_closed, "close(), or a with-block", nothing_owned),
    },
    "httpcore._async.connection_pool": {
        "AsyncConnectionPool": ("httpcore", _httpcore_closed, "await aclose(), or async with", nothing_owned),
    },
    "requests.sessions": {
        "Session": ("requests", _requests_closed, "close(), or a with-block", nothing_owned),
    },
    # niquests, requests' fork (over urllib3-future, which installs as urllib3): its sessions too
    "niquests.sessions": {
        "Session": ("requests", _requests_closed, "close(), or a with-block", nothing_owned),
    },
    "niquests.async_session": {
        "AsyncSession": ("requests", _requests_closed, "await session.close(), or async with", nothing_owned),
    },
    "urllib3.poolmanager": {
        "PoolManager": ("urllib3", _urllib3_closed, "clear(), or a with-block", nothing_owned),
    },
    "redis.client": {
        "Redis": ("redis", _redis_closed, "close(), or a with-block", nothing_owned),
    },
    "redis.asyncio.client": {
        "Redis": ("redis", _redis_closed, "await client.aclose(), or async with", nothing_owned),
    },
    # A pool the program makes and hands to clients (Redis(connection_pool=pool)) is its to
    # disconnect; one a client makes in its __init__ is part of the client.
    "redis.connection": {
        "ConnectionPool": ("redis", _redis_closed, "pool.disconnect(), or a with-block", nothing_owned),
    },
    "redis.asyncio.connection": {
        "ConnectionPool": ("redis", _redis_closed, "await pool.disconnect(), or async with", nothing_owned),
    },
    # valkey-py, redis-py's fork: the same classes, its client named Valkey (reported as kind redis)
    "valkey.client": {
        "Valkey": ("redis", _redis_closed, "close(), or a with-block", nothing_owned),
    },
    "valkey.asyncio.client": {
        "Valkey": ("redis", _redis_closed, "await client.aclose(), or async with", nothing_owned),
    },
    "valkey.connection": {
        "ConnectionPool": ("redis", _redis_closed, "pool.disconnect(), or a with-block", nothing_owned),
    },
    "valkey.asyncio.connection": {
        "ConnectionPool": ("redis", _redis_closed, "await pool.disconnect(), or async with", nothing_owned),
    },
    "aiomysql.pool": {
        "Pool": (
            "aiomysql",
            _aiomysql_closed,
            "pool.close() and await pool.wait_closed(), or async with",
            nothing_owned,
        ),
    },
    "sqlalchemy.engine.base": {
        "Engine": ("sqlalchemy", _engine_disposed, "engine.dispose()", nothing_owned),
    },
}

# httpx2 and httpcore2, their fork (aiobotocore's preferred httpx backend): the same classes.
for _module in ("httpx._client", "httpcore._sync.connection_pool", "httpcore._async.connection_pool"):
    HOLDERS[_module.replace("httpx", "httpx2", 1).replace("httpcore", "httpcore2", 1)] = HOLDERS[_module]

#: Kind -> the label of a holder of that kind, when more than its class (see :func:`track`).
LABELS: dict[str, Callable[[Any], object]] = {"sqlalchemy": _engine_label}

#: What :func:`claim` searches kombu's global pools as (see :func:`install_kombu_pools`).
KOMBU_POOLS = "kombu-pools"

#: kind -> where a holder of that kind keeps its sockets: what :func:`claim` searches from (the
#: modules tracking holders of other kinds add theirs: pika's connections, see :mod:`._pika`;
#: paho's clients, :mod:`._paho`).
ROOTS: dict[str, Callable[[Any], Iterable[object]]] = {
    "aiohttp": _itself,
    "httpx": _httpx_transports,
    "httpcore": _itself,
    "requests": _adapters,
    "urllib3": _pools,
    "sqlalchemy": _engine_pool,
    "redis": _redis_roots,
    "aiomysql": _aiomysql_connections,
    # kombu's global pools (see install_kombu_pools): not a holder kind, only what they keep
    KOMBU_POOLS: _itself,
}

#: kind -> what a holder of that kind lent out and did not get back (a SQLAlchemy engine's
#: connections checked out of its pool, see :mod:`._pooled`): listed under a holder a check
#: finds holding nothing else, which was no entry then, and an entry at the session's end once
#: the connection went back, holding the connection its test was failed for already. One that
#: holds idle connections too is the entry for those, the connection kept an entry of its own.
#: Never searched for holders: a connection a test kept is that test's (see ``in_use``).
LENT: dict[str, Callable[[Any], Iterable[Record]]] = {}

#: Holder kinds that are a connection of their own, holding its socket (PyMySQL's, aiomysql's
#: and pg8000's, see :mod:`._pymysql`, :mod:`._aiomysql`, :mod:`._pg8000`; the modules of others
#: add theirs): one another holder reaches (a SQLAlchemy engine's or an aiomysql pool, which
#: keeps it) is listed under that holder, its socket under it, as a driver connection that holds
#: no socket of ours (psycopg's) is. Other holders reached are entries of
#: their own (a redis-py client reaches the pool the program handed it, which is that pool's to
#: disconnect).
PARTS = {"pymysql", "pg8000"}

#: kind -> what a holder of that kind, dropped unclosed, keeps of itself in its record as it dies,
#: for the report that describes it once it is gone: ``last_look(holder, record)`` (paho's client
#: learns its broker only at ``connect()``, see :mod:`._paho`).
LAST_LOOK: dict[str, Callable[[Any, Record], None]] = {}

#: Kinds whose holder, dropped unclosed, has its sockets closed by callbacks no ``__del__`` frame
#: shows (``weakref.finalize``'s, which a ``close()`` runs too): marked collected as it dies.
DIE_WITH = frozenset({"requests", "urllib3"})

#: Objects one search looks at, at most: a client's own graph is a few hundred.
SEARCH = 10_000

#: The key of the record of an object recorded under another key than its ``id()``, or None:
#: set while uvloop is tracked, whose connections are recorded by descriptor (see
#: :mod:`._uvloop`), so that a holder reaching a uvloop transport finds its socket.
keyed: Callable[[object], object] | None = None


def record_of(obj: object) -> Record | None:
    """The live record of *obj* (one :data:`keyed` finds, for a uvloop transport), or None."""
    rec = _records.live.get(id(obj))
    if rec is None and keyed is not None:
        other = keyed(obj)
        rec = _records.live.get(other) if other is not None else None
    return rec if rec is not None and rec() is obj else None


def _closed(obj: Any, rec: Record) -> bool:
    closed = rec.info[1]
    try:
        return bool(getattr(obj, closed) if type(closed) is str else closed(obj))
    except Exception:  # a half-built client: it cannot have opened anything
        return True


def _is_open(obj: Any, rec: Record) -> bool:
    return not _closed(obj, rec)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label, _, fix, _ = rec.info
    details: Details = {"class": label}
    if type(label) is tuple:  # (class, target): see LABELS
        details = {"class": label[0], "target": label[1]}
        label = " ".join(label)
    if type(fix) is _ConnectedAgain:  # see _wrap_dispose
        return f"{label} disposed, then connected again and not disposed since ({fix})", details
    return f"{label} not closed ({fix})", details


for _kind in CLIENT_KINDS:
    register(Kind(_kind, is_open=_is_open, describe=_describe, holder=True))


def public_name(cls: type) -> str:
    """``aiohttp.TCPConnector``, ``redis.asyncio.Redis``: the name under the outermost package
    that exports the class, else module.Class."""
    parts = cls.__module__.split(".")
    for end in range(1, len(parts)):
        package = ".".join(parts[:end])
        if getattr(sys.modules.get(package), cls.__qualname__, None) is cls:
            return f"{package}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


#: package -> the package whose code makes its holders on the program's behalf (an httpx
#: transport makes an httpcore pool): the line that made one is past the frames of both.
MADE_THROUGH = {"httpcore": "httpx"}

#: module defining holder classes -> (kind, package, global name) of the holder the package makes
#: as it is imported: found there when it was imported before tracking began.
LIBRARY_GLOBALS = {"urllib3.poolmanager": ("urllib3", "urllib3", "_DEFAULT_POOL")}


def install(patches: Patches, module: ModuleType) -> None:
    """Track the holder classes *module* defines (see :data:`HOLDERS`)."""
    for name, spec in HOLDERS[module.__name__].items():
        cls = getattr(module, name, None)
        if isinstance(cls, type) and "__init__" in vars(cls):
            kind, closed, fix, owned = spec
            if "aclose()" in fix and not hasattr(cls, "aclose"):
                fix = fix.replace("aclose()", "close()")  # redis-py before 5.0.1 has close() only
            track(patches, cls, kind, closed, fix, owned, LABELS.get(kind))
    if module.__name__ in _REDIS_CLIENTS:
        client = getattr(module, _REDIS_CLIENTS[module.__name__], None)
        if isinstance(client, type) and "auto_close_connection_pool" not in vars(client):
            _take_pools(patches, client)
    manager = getattr(module, "PoolManager", None) if module.__name__ == "urllib3.poolmanager" else None
    if isinstance(manager, type) and "clear" in vars(manager):
        _wrap_clear(patches, manager)
    engine = getattr(module, "Engine", None) if module.__name__ == "sqlalchemy.engine.base" else None
    if isinstance(engine, type) and "dispose" in vars(engine):
        _wrap_dispose(patches, engine)
    session = getattr(module, "Session", None) if module.__name__ in _MOUNTING else None
    if isinstance(session, type) and "mount" in vars(session):
        _wrap_mount(patches, session)
    if isinstance(session, type) and "close" in vars(session):
        _wrap_close_in_finalizer(patches, session, "requests")
    if module.__name__ in LIBRARY_GLOBALS:
        kind, package, name = LIBRARY_GLOBALS[module.__name__]
        holder = getattr(sys.modules.get(package), name, None)
        if holder is not None:
            _leave_to_library(holder, kind)


#: The modules of redis-py's clients (and valkey-py's) -> the client class.
_REDIS_CLIENTS = {
    "redis.client": "Redis",
    "redis.asyncio.client": "Redis",
    "valkey.client": "Valkey",
    "valkey.asyncio.client": "Valkey",
}


def _take_pools(patches: Patches, cls: type) -> None:
    """A redis-py client told to close its pool (``from_url()`` and ``from_pool()`` set
    ``auto_close_connection_pool`` once the client is made) takes the pool's record over: the
    pool, made at the same line or handed over, is part of the client from then on."""

    def get(self: Any) -> Any:
        return self.__dict__.get("auto_close_connection_pool", False)

    def set_(self: Any, value: Any) -> None:
        self.__dict__["auto_close_connection_pool"] = value
        pool = self.__dict__.get("connection_pool")
        rec = _records.live.get(id(pool))
        if value and rec is not None and rec() is pool:
            _records.release(id(pool))

    patches.set(cls, "auto_close_connection_pool", property(get, set_))


#: How many frames out from the line that made a holder a library's process-wide function (see
#: ``_owning.PROCESS_WIDE``) is looked for: its cache's getter calls the factory that makes it.
_PLUMBING_LOOKED_AT = 3


def _by_plumbing(frame: Any) -> bool:
    """Whether *frame*, or one of the few that called it, is a library's process-wide function."""
    for _ in range(_PLUMBING_LOOKED_AT):
        if frame is None:
            return False
        if frame.f_code in PLUMBING:
            return True
        frame = frame.f_back
    return False


def _leave_to_library(holder: object, kind: str) -> None:
    """*holder* is a library's own, made as it was imported: what it keeps is the library's."""
    if all(ref() is not holder for ref, _ in _libraries):
        with contextlib.suppress(TypeError):  # no weak references to it: nothing kept
            _libraries.append((weakref.ref(holder), kind))


#: The holder whose ``__init__`` runs in this thread, if any (``holder``): what it makes is its.
_making = threading.local()


def making() -> object | None:
    """The holder whose ``__init__`` runs in this thread, if any: what it makes is its own (a
    redis-py client's single connection, which it checks out of its pool as it is made)."""
    return getattr(_making, "holder", None)


#: id of each argument of a ``weakref.finalize`` callback that closed sockets in a collection ->
#: (a weak reference to it, their records), for a holder dying in that collection (see
#: closed_for()); and that collection. The reference tells the argument from an object made
#: after it died at its address, when no collection ran in between (see claim()).
_finalized: dict[int, tuple[weakref.ref[Any], list[Record]]] = {}
_finalized_in = -1

#: (weak reference, kind) of each holder a library made as it was imported (see track()).
_libraries: list[tuple[weakref.ref[Any], str]] = []


#: How many frames out :func:`_in_a_subclass_init` looks for the ``__init__`` making a holder.
_SUBCLASS_INIT_DEPTH = range(8)


def _in_a_subclass_init(frame: Any) -> bool:
    """Whether *frame*, or one of its callers, is the ``__init__`` of a holder already recorded:
    a subclass's, going on after the tracked class's own returned (locust's ``HttpSession``
    mounts an adapter of its own: its ``PoolManager`` was the entry, at the mount line, told to
    be ``clear()``-ed, the session none)."""
    for _ in _SUBCLASS_INIT_DEPTH:
        if frame is None:
            return False
        code = frame.f_code
        if code.co_name == "__init__" and code.co_argcount and code.co_varnames[0] == "self":
            obj = frame.f_locals.get("self")
            rec = _records.live.get(id(obj))
            if rec is not None and rec() is obj and rec.kind in ROOTS:
                return True
        frame = frame.f_back
    return False


def track(
    patches: Patches,
    cls: type,
    kind: str,
    closed: str | Callable[[Any], bool],
    fix: str,
    owned: Callable[[Any], Iterable[object]],
    label: Callable[[Any], object] | None = None,
) -> None:
    """Track *cls* (and its subclasses) as holders of *kind*: each instance made outside another
    holder's making gets a record at the line that made it, open while its attribute *closed* is
    false (or, a function, while ``closed(instance)`` is: a paho client has no such attribute),
    told to be closed by *fix*; *owned* gives what it was handed to close. Its record's
    info is ``(label, closed, fix, held)``, the label ``label(instance)`` once it is made (by
    default its class's public name)."""
    init: Callable[..., None] = vars(cls)["__init__"]
    finalize: Callable[..., None] | None = vars(cls).get("__del__")

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        outer = getattr(_making, "holder", None)
        _making.holder = self
        started = _time()
        try:
            init(self, *args, **kwargs)
        finally:
            _making.holder = outer
        if outer is not None:
            return  # made by a holder being made (a session's own connector): a part of it
        frame = sys._getframe(1)
        if frame.f_code in _SAME_PARAMETERS and frame.f_back is not None:
            frame = frame.f_back  # called through _same_parameters()'s stand-in
        if _in_a_subclass_init(frame):
            return  # made as a subclass's __init__ goes on: a part of that holder, as above
        if frame.f_code.co_name == "<module>" and not _sites.frame_is_program(frame):
            # A library's global, made as it is imported (urllib3's for urllib3.request()): not
            # an entry, and what it keeps is the library's (see leave_to_libraries()).
            _leave_to_library(self, kind)
            return
        name = public_name(type(self)) if label is None else label(self)
        # Made through the library's own factory (create_engine()): at the line that called it.
        maker = outside(self, frame)
        if maker is not None:
            package = type(self).__module__.partition(".")[0]
            if type(self) is not cls and _sites.frame_is_program(maker):
                # A subclass the program defines, made by its code (a test module's): not a
                # library's factory to look past, or the test's own line was looked past too.
                package = cls.__module__.partition(".")[0]
            maker = caller(maker, package)
            if package in MADE_THROUGH:
                maker = caller(maker, MADE_THROUGH[package])
            if _by_plumbing(maker):
                # A library's cache for the process (django-redis's pool per URL, kept in its
                # ConnectionFactory._pools): made for whichever test came first, closed by none.
                _leave_to_library(self, kind)
                return
        rec = _records.new(self, kind, (name, closed, fix, ()), _records.capture(maker, _records.depth))
        rec.time = started  # acquired as its making began: what it opened meanwhile is after it
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL
        for part in owned(self):
            _records.release(id(part))  # handed to it to close: what they hold is its

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            _dies(self, kind)
        finally:  # its own finalizer runs whatever happened to our bookkeeping
            if finalize is not None:
                finalize(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    # A warning the class's __init__ issues for its caller (redis-py's for retry_on_timeout,
    # PyMySQL's for passwd=) names the caller's line, not this wrapper's or its stand-in's.
    __init__.__code__ = outside_warnings_stack(__init__.__code__)
    patches.set(cls, "__init__", _same_parameters(__init__, init))
    if finalize is not None:
        __del__.__doc__ = finalize.__doc__
    patches.set(cls, "__del__", __del__)


#: The modules whose ``Session.mount()`` hands the session an adapter to own (requests', niquests').
_MOUNTING = frozenset({"requests.sessions", "niquests.sessions"})


def _wrap_mount(patches: Patches, cls: type) -> None:
    """Wrap *cls*'s ``mount()`` (a ``requests.Session``'s): the adapter mounted is the session's,
    its ``close()`` closes it, so the urllib3 pools the adapter made before it was mounted (made
    apart from the session: ``s.mount("https://", HTTPAdapter(max_retries=3))``) are the session's
    parts, not entries of their own at the adapter's line, which said to ``clear()`` them."""
    mount: Callable[..., None] = vars(cls)["mount"]

    def mount_(self: Any, prefix: Any, adapter: Any, *args: Any, **kwargs: Any) -> None:
        mount(self, prefix, adapter, *args, **kwargs)
        managers = [getattr(adapter, "poolmanager", None)]
        proxies = getattr(adapter, "proxy_manager", None)
        if isinstance(proxies, dict):
            managers += proxies.values()
        for manager in managers:
            rec = record_of(manager) if manager is not None else None
            if rec is not None and rec.kind == "urllib3" and rec.state == OPEN:
                _records.release(rec.key)  # handed to the session to close: what it holds is its

    patches.set(cls, "mount", functools.wraps(mount)(mount_))


def _wrap_close_in_finalizer(patches: Patches, cls: type, kind: str) -> None:
    """Wrap *cls*'s ``close()`` (a ``requests.Session``'s): called by another object's ``__del__``
    (google-auth's ``Request``, which closes the session it made only there), the session was
    dropped unclosed with its owner, the collector's doing: a leak with what it holds, as if it had
    been dropped itself. It was the program's close, and the socket it kept unseen."""
    close: Callable[..., Any] = vars(cls)["close"]

    def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _sites.in_finalizer(sys._getframe(1)):
            _dies(self, kind)
        return close(self, *args, **kwargs)

    patches.set(cls, "close", functools.wraps(close)(close_))


#: The queues of the pools a urllib3 ``PoolManager.clear()`` dropped (a with-block's end, a
#: ``requests.Session``'s ``close()``): the program's release, though a reference cycle (the
#: traceback ``pytest.raises`` keeps, through ``urlopen``'s frame) may keep such a pool until a
#: collection runs the ``weakref.finalize`` callback that closes its sockets (see dropped()).
_dropped: weakref.WeakSet[object] = weakref.WeakSet()


def _wrap_clear(patches: Patches, cls: type) -> None:
    """Wrap *cls*'s ``clear()`` (urllib3's ``PoolManager``) to note the pools it drops."""
    clear: Callable[..., None] = vars(cls)["clear"]

    def clear_(self: Any, *args: Any, **kwargs: Any) -> None:
        pools = getattr(getattr(self, "pools", None), "_container", None)
        for pool in tuple(pools.values()) if isinstance(pools, dict) else ():
            # A pool class of the program's (pool_classes_by_scheme) may keep no queue.
            with contextlib.suppress(TypeError, AttributeError):  # none, or not one to refer to weakly
                _dropped.add(pool.pool)
        clear(self, *args, **kwargs)

    clear_.__doc__ = clear.__doc__
    patches.set(cls, "clear", clear_)


class _ConnectedAgain(str):
    """The fix an engine's record names once its ``dispose()`` ran: still open, the engine was
    connected again since, which its report says."""

    __slots__ = ()


_CONNECTED_AGAIN = _ConnectedAgain("engine.dispose()")


def _wrap_dispose(patches: Patches, cls: type) -> None:
    """Wrap *cls*'s ``dispose()`` (SQLAlchemy's ``Engine``) to note on its record that it ran:
    a disposed engine leaves a new, empty pool behind, which connects again on the next use
    (SQLAlchemy's test harness disposes a test's engines, and alembic's ``tearDown`` then used
    one), and "not closed" would read as if nothing had disposed it."""
    dispose: Callable[..., None] = vars(cls)["dispose"]

    def dispose_(self: Any, *args: Any, **kwargs: Any) -> None:
        dispose(self, *args, **kwargs)
        rec = _records.live.get(id(self))
        if rec is not None and rec() is self and rec.kind == "sqlalchemy":
            rec.info = (rec.info[0], rec.info[1], _CONNECTED_AGAIN, rec.info[3])

    dispose_.__doc__ = dispose.__doc__
    patches.set(cls, "dispose", dispose_)


def dropped(frame: Any) -> bool:
    """Whether the ``weakref.finalize`` callback closing a socket from *frame* in a collection
    is urllib3's for a pool its ``PoolManager.clear()`` dropped: the program released it."""
    for arg in _sites.finalizer_args(frame):
        with contextlib.suppress(TypeError):
            if arg in _dropped:
                return True
    return False


#: inspect.CO_VARARGS and CO_VARKEYWORDS, without importing inspect.
_CO_VARARGS, _CO_VARKEYWORDS = 0x04, 0x08

#: The code of the stand-ins :func:`_same_parameters` made: a frame to look past for the maker.
_SAME_PARAMETERS: set[CodeType] = set()


def _same_parameters(wrapper: Callable[..., None], original: Callable[..., None]) -> Callable[..., None]:
    """*wrapper*, behind a stand-in taking *original*'s parameters, defaults included.

    What reads a constructor's parameters from its code, not ``inspect.signature()``, sees the
    original's: SQLAlchemy's ``create_engine()`` hands an ``Engine`` only the keyword arguments
    its ``__init__`` names (``execution_options``), and fails on those left over. It carries
    *original*'s attributes too: redis-py's ``@deprecated_args`` keeps the names it warns of on
    ``Redis.__init__``, which fakeredis reads so as not to pass them (every ``FakeRedis()`` warned
    three times, and its tests of that failed).
    """
    with contextlib.suppress(AttributeError, TypeError):  # a callable with no __dict__ of its own
        wrapper.__dict__.update(vars(original))
    code = getattr(original, "__code__", None)
    if not isinstance(code, CodeType):
        return wrapper
    names = code.co_varnames
    positional = names[: code.co_argcount]
    keywords = names[code.co_argcount : code.co_argcount + code.co_kwonlyargcount]
    rest = iter(names[code.co_argcount + code.co_kwonlyargcount :])
    star = next(rest) if code.co_flags & _CO_VARARGS else None
    stars = next(rest) if code.co_flags & _CO_VARKEYWORDS else None
    params = [*positional[: code.co_posonlyargcount], *(["/"] if code.co_posonlyargcount else [])]
    params += positional[code.co_posonlyargcount :]
    params += [f"*{star}"] if star else (["*"] if keywords else [])
    params += [*keywords, *([f"**{stars}"] if stars else [])]
    args = [*positional, *([f"*{star}"] if star else []), *(f"{k}={k}" for k in keywords)]
    args += [f"**{stars}"] if stars else []
    source = f"def {code.co_name}({', '.join(params)}):\n    return __reclaim_wrapper__({', '.join(args)})\n"
    namespace: dict[str, Any] = {
        "__name__": __name__,
        "__reclaim_wrapper__": wrapper,
        "__tracebackhide__": True,
    }
    # Named for what it is: compiled as this file, a traceback through it showed this file's
    # line 2 (its docstring), as if that line had run; a generated pseudo-file is plumbing.
    # "importlib" and "_bootstrap" in it: warnings passes it over as it does the import system's
    # frames when it counts a stacklevel (see _patch.outside_warnings_stack).
    name = getattr(original, "__qualname__", code.co_name)
    filename = f"<reclaim-generated stand-in for {name}, passed over by warnings as importlib._bootstrap is>"
    try:
        exec(compile(source, filename, "exec"), namespace)  # the source names only a code object's names
    except SyntaxError:  # names no def can take: keep the plain wrapper
        return wrapper
    stand_in: FunctionType = namespace[code.co_name]
    stand_in.__defaults__ = getattr(original, "__defaults__", None)
    stand_in.__kwdefaults__ = getattr(original, "__kwdefaults__", None)
    stand_in.__doc__ = wrapper.__doc__
    stand_in.__dict__.update(vars(wrapper))
    _SAME_PARAMETERS.add(stand_in.__code__)
    return stand_in


def closed_for(frame: Any, rec: Record) -> None:
    """*rec*'s socket is closed from *frame* by a ``weakref.finalize`` callback the collector runs:
    urllib3's, for a pool dying in a reference cycle with the session that made it. Its weak
    references are cleared first and its callbacks run before any ``__del__``, so when the
    session's runs, the sockets are closed and out of its pools; the queue the callback was
    given is still there, and leads the session's search to them (see :func:`claim`)."""
    global _finalized_in
    if _finalized_in != _sites.collections:
        _finalized.clear()
        _finalized_in = _sites.collections
    for arg in _sites.finalizer_args(frame):
        entry = _finalized.get(id(arg))
        if entry is None or entry[0]() is not arg:
            try:
                entry = _finalized[id(arg)] = (weakref.ref(arg), [])
            except TypeError:  # no weak references to it: nothing to tell it apart by
                continue
        entry[1].append(rec)


def dies(obj: object, kind: str) -> None:
    """*obj*, a holder, is closed for the collector by another's finalizer (a redis-py connection
    by its client's ``__del__``): as if dropped unclosed, it is a leak with what it holds now."""
    _dies(obj, kind)


def _dies(obj: object, kind: str) -> None:
    """*obj*, a holder, is being finalized: dropped unclosed, it is a leak with what it holds now."""
    rec = _records.at_del(obj)
    if rec is None or rec.state != OPEN or rec.kind != kind:
        return
    if not _closed(obj, rec):
        held = claim(obj, kind, dying=rec)
    elif rec() is None:
        # Dying in a reference cycle (its weak reference cleared): what it keeps may have been
        # finalized first, and closed by its own __del__ (a redis-py connection's disconnects
        # it, which runs first when the client is the older object), so the holder looks closed.
        # What the collector closed of it is still its: the leak is the holder's, holding them.
        held = tuple(part for part in claim(obj, kind, dying=rec) if part.why == _records.COLLECTED)
    else:
        held = ()
    if held:
        rec.info = (*rec.info[:3], held)
        last_look = LAST_LOOK.get(kind)
        if last_look is not None:
            with contextlib.suppress(Exception):  # a half-built holder: described as it was made
                last_look(obj, rec)
        _records.leak(rec, _records.COLLECTED)  # before its sockets are closed for it
        if kind in DIE_WITH:
            for part in held:
                sock = part()
                if part.state == OPEN and part.kind == "socket" and sock is not None:
                    _records.integration("_sockets").collected(part, sock)  # it recorded them
    else:
        rec.state = _records.RELEASED
        if _records.live.get(rec.key) is rec:
            del _records.live[rec.key]


#: What a search through an object's references looks through no further (:func:`claim`, and
#: the tracker's hand-over to the objects that outlive a test): code, not data an object keeps.
NOT_FOLLOWED = (type, ModuleType, FunctionType, BuiltinFunctionType, CodeType)


#: pytest's objects that reach every test's fixture values: the config reaches the session (a
#: plugin of its plugin manager), the session every item, and an item keeps its ``funcargs``
#: until its teardown has ended; a fixture request reaches its item.
_PYTEST_PLUMBING = ("Config", "PytestPluginManager", "Collector", "Item", "FixtureRequest")


def is_kind(kind: type, kinds: tuple[type, ...]) -> bool:
    """``issubclass(kind, kinds)`` for any class a search meets.

    An ABC among *kinds* (pytest's nodes) hashes the class asked about, which is its
    metaclass's business: a metaclass that defines ``__eq__`` and no ``__hash__`` makes its
    classes unhashable, and ``issubclass`` raises TypeError for them. Those are looked for in
    *kind*'s MRO, by identity (``==`` would be the metaclass's ``__eq__``): a class registered
    with an ABC without deriving from it is then not found.
    """
    try:
        return issubclass(kind, kinds)
    except TypeError:
        return by_mro(kind, kinds)


#: The answers of is_kind(class, the classes not followed), by id of the class (kept with it, so
#: that its id is not reused), for the tuple of classes not followed they were given for.
_skips: tuple[tuple[type, ...], dict[int, tuple[type, bool]]] = ((), {})


def skip_cache(skipped: tuple[type, ...]) -> dict[int, tuple[type, bool]]:
    """The cache of whether a class is one of *skipped* (see :func:`claim`), emptied when the
    classes not followed change (a library imported since adds its own)."""
    global _skips
    if _skips[0] is not skipped and _skips[0] != skipped:
        _skips = (skipped, {})
    return _skips[1]


def by_mro(kind: type, kinds: tuple[type, ...]) -> bool:
    """Whether one of *kinds* is in *kind*'s MRO (see :func:`is_kind`)."""
    return any(base is wanted for base in kind.__mro__ for wanted in kinds)


def not_followed() -> tuple[type, ...]:
    """:data:`NOT_FOLLOWED`, and asyncio's event loops and policies once asyncio is loaded: a
    loop reaches every task and transport of every test that ran on it, and a policy every
    child its watcher waits for, so a client that keeps its loop (or pytest-asyncio's
    ``event_loop_policy`` fixture) would otherwise take over what the tests left running.

    pytest's config, plugin manager, nodes and fixture requests too, once pytest is loaded
    (:data:`_PYTEST_PLUMBING`): through them anything reaches what a test's function-scoped
    fixtures made, so a test module's ``from pytest import mark`` (a module global whose mark
    generator keeps the config) took over the transport a fixture left running, and the test
    that leaked it passed.

    And logging's loggers and their manager, once logging is loaded: every logger reaches the
    manager, which reaches every logger's handlers, so a module's ``log = getLogger(__name__)``
    took over the file of a handler a test left on another logger (seen in gunicorn's tests),
    and whether that test failed depended on which modules happened to be imported. And a
    ``logging.LogRecord``: it names what was logged (its arguments, the frames of its traceback)
    and owns none of it, yet what keeps records (pytest's capture handler) reached a fixture's
    server logged in its teardown (seen in dramatiq's suite)."""
    skipped: tuple[type, ...] = NOT_FOLLOWED
    asyncio = sys.modules.get("asyncio")
    if asyncio is not None:
        skipped = (*skipped, asyncio.AbstractEventLoop, asyncio.AbstractEventLoopPolicy)
    logging = sys.modules.get("logging")
    if logging is not None:
        skipped = (*skipped, logging.Logger, logging.Manager, logging.LogRecord)
    pytest = sys.modules.get("pytest")
    if pytest is not None:
        found = (getattr(pytest, name, None) for name in _PYTEST_PLUMBING)
        skipped = (*skipped, *(cls for cls in found if isinstance(cls, type)))
    return skipped


def claim(
    holder: object, kind: str, dying: Record | None = None, *, holders: bool = False
) -> tuple[Record, ...]:
    """The records of the open resources *holder*, of *kind*, reaches from where it keeps its
    sockets (:data:`ROOTS`), breadth first (at most SEARCH objects).

    Code, modules and event loops are not looked through (the loop a client runs on is not
    its), nor is a tracked resource reached (what a task or another holder reaches is its
    own). A holder dropped in a reference cycle (*dying*: its record) dies with its sockets
    (or a SQLAlchemy engine with its connections, see :data:`DEAD_KINDS`): the collector
    clears their weak references, marking them collected, before it runs the holder's
    ``__del__``. Such an object is still in memory, under the id its record is keyed by;
    the newest collected record of its kind under that id, acquired since the holder was
    made, is its (an id is reused only once its object is freed, after this collection).

    With *holders*, the other holders reached are among the records (not searched through):
    what a library keeps for the process (see :func:`leave_to_libraries`).
    """
    skipped = not_followed()
    live = _records.live
    # type(), never isinstance(), on what the search meets: isinstance asks a proxy (Django's
    # LazyObject) for its __class__, which sets up what it stands for.
    roots = [root for root in ROOTS[kind](holder) if not is_kind(type(root), skipped)]
    seen = {id(holder), *map(id, roots)}
    held: list[Record] = []
    pending = deque(roots)
    budget = SEARCH
    dead: dict[object, Record] | None = None
    # Only while the collection that ran those callbacks runs: a holder dropped by its last
    # reference after it may reach an object made at the address of one of their arguments.
    in_that_collection = _sites._collecting_in is not None and _finalized_in == _sites.collections
    finalized = _finalized if dying is not None and in_that_collection else {}
    dead_types = _dead_types() if dying is not None else {}
    dead_classes = tuple(cls for classes in dead_types.values() for cls in classes)
    skips = skip_cache(skipped)
    while pending and budget:
        budget -= 1
        for ref in gc.get_referents(pending.popleft()):
            key = id(ref)
            if key in seen:
                continue
            # is_kind(), cached by class: this loop runs for every reference the search meets, and
            # an ABC among the classes not followed (pytest's nodes) costs a __subclasscheck__ per
            # ask (kombu's global pool preloaded with 100,000 placeholders: 0.6 s per check).
            cls = type(ref)
            known = skips.get(id(cls))
            if known is None or known[0] is not cls:
                known = skips[id(cls)] = (cls, is_kind(cls, skipped))
            if known[1]:
                continue
            seen.add(key)
            rec = live.get(key)
            if rec is None and keyed is not None:
                other = keyed(ref)
                rec = live.get(other) if other is not None else None
            if rec is not None and rec() is ref:
                if rec.state == OPEN and (holders or rec.kind in PARTS or not kind_of(rec.kind).holder):
                    held.append(rec)
            elif key in finalized and finalized[key][0]() is ref:
                held.extend(part for part in finalized[key][1] if part.seq >= dying.seq)  # type: ignore[union-attr]
            elif dead_classes and dying is not None and is_kind(type(ref), dead_classes):
                if dead is None:
                    dead = _collected(dying)
                found = dead.get(key)
                if found is not None and is_kind(type(ref), dead_types[found.kind]):
                    held.append(found)
                else:  # a part dying with it, whose own __del__ has yet to run (see _records.died):
                    # a connection of its own (PyMySQL's), or one of a driver whose __del__ decides
                    # (psycopg's, psycopg2's), as one found alive is
                    part = _records.dying.get(key)
                    if (
                        part is not None
                        and part.state == OPEN
                        and (part.kind in PARTS or not kind_of(part.kind).holder)
                    ):
                        held.append(part)
            elif gc.is_tracked(ref):  # an int, a str, a tuple of them: holds nothing, costs no budget
                pending.append(ref)
    return tuple(held)


#: Collected records looked through for the sockets a holder dying in a cycle reaches, newest first.
DEAD_SEARCH = 1_000


#: Kind -> (module, class) of the objects a holder dying in a cycle is searched for among the
#: collected (see :func:`claim`): what holders keep. A kind whose objects are of more than one
#: class names the others in :data:`DEAD_KINDS_MORE`.
DEAD_KINDS = {
    "socket": ("socket", "socket"),
    "sqlite3": ("sqlite3", "Connection"),
    "psycopg": ("psycopg", "Connection"),
    "psycopg2": ("psycopg2.extensions", "connection"),
    "pymysql": ("pymysql.connections", "Connection"),
    "aiomysql-connection": ("aiomysql.connection", "Connection"),
    "pg8000": ("pg8000.core", "CoreConnection"),
    "mysqlclient": ("MySQLdb.connections", "Connection"),
    "mysql-connector": ("mysql.connector.connection", "MySQLConnection"),
    "redis-connection": ("redis.connection", "AbstractConnection"),
}

#: Kind -> more (module, class) pairs of :data:`DEAD_KINDS` (redis-py's asyncio connections).
DEAD_KINDS_MORE = {
    "mysql-connector": (("mysql.connector.connection_cext", "CMySQLConnection"),),
    "redis-connection": (
        ("redis.asyncio.connection", "AbstractConnection"),
        ("valkey.connection", "AbstractConnection"),
        ("valkey.asyncio.connection", "AbstractConnection"),
    ),
}


def _dead_types() -> dict[str, tuple[type, ...]]:
    """Kind -> its classes, of the :data:`DEAD_KINDS` whose module is loaded."""
    found = {}
    for kind, first in DEAD_KINDS.items():
        loaded = (
            getattr(sys.modules.get(module), name, None)
            for module, name in (first, *DEAD_KINDS_MORE.get(kind, ()))
        )
        classes = tuple(cls for cls in loaded if isinstance(cls, type))
        if classes:
            found[kind] = classes
    return found


def _collected(holder: Record) -> dict[object, Record]:
    """Key -> the newest collected record of one of :data:`DEAD_KINDS` acquired since *holder*'s
    was (in its generation or later, and not before its time) whose object is gone (see
    :func:`claim`).

    The time, as well as the generation: under pytest every record is of one generation, and a
    pool of a later test that reached a closed socket made at the address of one an earlier
    test's was reported for (through a mock's traceback, in redis-py's suite) took it for its own.
    """
    out: dict[object, Record] = {}
    since, made = holder.seq, holder.time
    for rec in itertools.islice(reversed(_records.collected), DEAD_SEARCH):
        if (
            rec.kind in DEAD_KINDS
            and rec.seq >= since
            and rec.time >= made
            and rec() is None
            and rec.why == _records.COLLECTED
        ):
            out.setdefault(rec.key, rec)
    return out


if TYPE_CHECKING:
    Found = tuple[Record, Any, str]
else:
    Found = tuple


def fold_into(
    found: list[Found], out: dict[int, list[Found]], owner_of: Callable[[Found], Record | None]
) -> set[int]:
    """Move each item of *found* that ``owner_of(item)`` says a record holds into
    ``out[id(that record)]`` (a report's ``holds``), keeping the others in *found*, in order;
    return the ids of the records that took something."""
    keep: list[Found] = []
    took: set[int] = set()
    for item in found:
        owner = owner_of(item)
        if owner is None:
            keep.append(item)
        else:
            out.setdefault(id(owner), []).append(item)
            took.add(id(owner))
    found[:] = keep
    return took


def leave_to_libraries(found: list[Found]) -> None:
    """Take out of *found* what the holders libraries made at import keep (urllib3's module-level
    ``PoolManager`` keeps the connection of each ``urllib3.request()``): the library's, as
    its other process-wide machinery is, closed by it at exit. A holder kept so (a redis-py pool
    in kombu's global pools) keeps what it holds too."""
    kept: dict[int, Record] = {}
    pending: list[tuple[object, str]] = []
    for ref, kind in list(_libraries):
        holder = ref()
        if holder is None:
            with contextlib.suppress(ValueError):
                _libraries.remove((ref, kind))
        else:
            pending.append((holder, kind))
    while pending:
        holder, kind = pending.pop()
        for rec in claim(holder, kind, holders=True):
            if id(rec) not in kept:
                kept[id(rec)] = rec
                obj = rec()
                if obj is not None and rec.kind in ROOTS:
                    pending.append((obj, rec.kind))
    if kept:
        found[:] = [item for item in found if id(item[0]) not in kept]


def install_kombu_pools(patches: Patches, module: ModuleType) -> None:
    """kombu's global connection and producer pools (``kombu.pools.connections``, ``producers``)
    are kombu's for the process: what their connections keep (a redis-py pool a channel made
    as the program's first ``publish()`` went through them, with its connections) is kombu's,
    as its other process-wide machinery is, not the first publisher's. Celery's producer pool
    is kombu's global one. ``kombu.pools.reset()`` closes them."""
    for group in (getattr(module, "connections", None), getattr(module, "producers", None)):
        if group is not None:
            _leave_to_library(group, KOMBU_POOLS)


def fold(found: list[Found]) -> dict[int, list[Found]]:
    """Take what the holders among *found* hold out of it, to be listed under them.

    *found* is ``(record, live object or None, state)`` of each leak a check found.
    A holder still open is searched now; one that died unclosed says what it held
    then. Returns ``id(holder record) -> its leaks``; *found* keeps the rest, and no
    holder that holds none of them.
    """
    if _libraries and found:
        # Not for a check that found nothing (a clean test's): claiming what kombu's global
        # pools keep walks up to SEARCH objects each, 0.14 s a test in kombu's own suite.
        leave_to_libraries(found)
    holders = [item for item in found if kind_of(item[0].kind).holder]
    if not holders:
        return {}
    index = {id(item[0]): item for item in found}
    claims: dict[int, list[int]] = {}
    # Dropped unclosed while it held something open: a leak whatever of that has ended since (a
    # thread its finalizer told to stop, which niquests' idle watchers do): it was one or none
    # by how soon the thread saw it.
    died_holding = {id(rec) for rec, obj, _ in holders if obj is None and rec.state != OPEN and rec.info[3]}
    for rec, obj, _ in holders:
        if obj is not None:
            rec.info = (*rec.info[:3], claim(obj, rec.kind))
        key = id(rec)
        claims[key] = [id(held) for held in rec.info[3] if id(held) in index and id(held) != key]
        lent = LENT.get(rec.kind) if obj is not None and not claims[key] else None
        if lent is not None:  # holding nothing else: it would be no entry now, and one later
            claims[key] = [id(out) for out in lent(obj) if id(out) in index]
    # A holder holding nothing of ours (a redis-py pool's connection over fakeredis, whose
    # "socket" is none) is no leak, nor one holding only such holders, in whatever order they
    # come: a pool found before its connection took it out of the index, and the connection,
    # holding nothing, was then deleted from it a second time (KeyError).
    empty: dict[int, bool] = {}

    def holds_nothing(key: int) -> bool:
        if key not in empty:
            empty[key] = True  # a holder reached again through its own parts holds nothing more
            empty[key] = all(held in claims and holds_nothing(held) for held in claims[key])
        return empty[key]

    out: dict[int, list[Found]] = {}
    taken: set[int] = set()  # listed under a holder, or no leak: out of *found*
    for key, held in claims.items():
        parts = [part for part in held if part not in taken and not (part in claims and holds_nothing(part))]
        if parts:
            taken.update(parts)
            out[key] = [index[part] for part in parts]
        elif key not in died_holding:  # holds nothing, or only what an earlier holder listed already
            taken.add(key)
    found[:] = [item for item in found if id(item[0]) not in taken]
    return out
