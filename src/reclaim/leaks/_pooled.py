"""What a client library's pool hands out: a leak is the checkout's that kept one, not the first connect's.

redis-py and urllib3 keep their connections, sockets open, in a pool: the socket is made by
the first command that needs one (a correct ``r.ping()``, a ``session.get()`` read to the
end), goes back to the pool and is handed out again to whoever asks next. Code that checks
one out and never gives it back (``r.pubsub()`` subscribed and never closed, a
``stream=True`` response never read nor closed) was reported at the line that first
connected the socket, and under pytest on the session fixture whose client made it.

So the pool's checkout and return are wrapped (redis-py's ``get_connection`` and
``release``, sync and asyncio; urllib3's ``_get_conn`` and ``_put_conn``; httpcore's request
and its response stream's close, under httpx). At checkout the socket's record takes the
checkout's site, label, generation, time and thread, and keeps what it had on the connection
object; at return that is put back: the socket is the pool's again, blamed where it was
before (on the pool's owner, once the pytest plugin handed it over). A connection never
returned is reported at the line that checked it out, under the test that did. A socket made
while checked out (a reconnect) is recorded where it is made. A redis-py connection has a record
of its own (see :mod:`._redis`): that is what a checkout blames, with its socket, at the
program's line past redis-py's frames (a ``pubsub()`` checks its connection out in
``PubSub.execute_command``).

psycopg_pool's pools are the same story with psycopg connections (``getconn`` and ``putconn``,
sync and asyncio; ``connection()`` goes through them): a connection the pool's worker opened, the
pool's own while it rests there (see :mod:`._psycopg`), is blamed on the ``getconn()`` that kept it.

SQLAlchemy's pool is the same story with DB-API connections: an ``engine.connect()`` or a
``Session`` never closed keeps one out of the engine's pool, and the record re-sited is the
sqlite3 or psycopg connection's (or what the asyncio engine's driver connection holds).

A redis-py pool also references the connections it has handed out (``_in_use_connections``;
a ``BlockingConnectionPool``'s ``_connections``, whose idle ones its queue holds too): what
a session fixture's client reaches through them is not the fixture's (see :func:`in_use`),
or a test's leaked ``pubsub()`` would be handed over to the fixture (redis.asyncio's pools
too). urllib3's pools keep only their idle connections.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import time
import weakref
from collections.abc import Callable, Iterator
from types import ModuleType

from reclaim import _sites

from . import _holders, _owning, _records, _sockets
from ._patch import Patches, instance_dict

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = [
    "back",
    "in_use",
    "install_httpcore",
    "install_httpcore_async",
    "install_redis",
    "install_redis_async",
    "install_sqlalchemy",
    "install_urllib3",
    "lend",
    "lent",
    "reset",
    "take",
    "wrap_getconn",
    "wrap_psycopg_pool",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: Attribute of a checked-out connection: (record, site, context, seq, time, thread) of its
#: socket as the pool had it.
POOLED = "_reclaim_pooled"
#: The same, of what that resource holds (a redis-py connection's socket), when it is tracked too.
POOLED_PART = "_reclaim_pooled_part"

#: id -> weak reference of each pool (redis-py's, sync or asyncio; psycopg2's) seen handing out
#: a connection (see in_use()): a dict, not a WeakSet, so a checkout pays one lookup and a check
#: may list it while threads add to it.
_pools: dict[int, weakref.ref[Any]] = {}

#: The attributes of such a pool that reference the connections it handed out, by the package
#: its class (or the first of its bases that one of them knows) comes from: redis-py's (valkey's
#: the same), psycopg2's ``_used`` (key -> connection; its ``_rused`` maps ids to keys and holds
#: none), and peewee's ``_in_use`` and ``_state``, the per-thread state of a ``PooledDatabase``,
#: which holds the connection its thread checked out with ``connect()`` until ``close()`` (its
#: ``_connections`` holds the idle ones, the pool's own).
_IN_USE = {
    "redis": ("_in_use_connections", "_connections"),
    "valkey": ("_in_use_connections", "_connections"),
    "psycopg2": ("_used",),
    "playhouse": ("_in_use", "_state"),
    "aiohttp": ("_acquired", "_acquired_per_host"),
}

#: _in_use_names()'s answers, by class (kept with the answer, so that its id is not reused).
_IN_USE_BY_CLASS: dict[int, tuple[type, tuple[str, ...]]] = {}


def _in_use_names(cls: type) -> tuple[str, ...]:
    known = _IN_USE_BY_CLASS.get(id(cls))
    if known is None:
        packages = (str(getattr(base, "__module__", "")).partition(".")[0] for base in cls.__mro__)
        names = next((_IN_USE[package] for package in packages if package in _IN_USE), ())
        known = _IN_USE_BY_CLASS[id(cls)] = (cls, names)
    return known[1]


#: id -> weak reference of each object through which a pool references a connection it handed
#: out, while it is out (an asyncpg pool's holder): see lent() and in_use().
_handed_out: dict[int, weakref.ref[Any]] = {}

#: Each pool family (the *source* of a checkout): what a report calls it, and how the program
#: gives back what it checked out.
POOLS = {
    "redis-py": (
        "a redis-py connection pool",
        "close() the pubsub() or pipeline() that holds it, or release() it to its pool",
    ),
    "valkey-py": (
        "a valkey-py connection pool",
        "close() the pubsub() or pipeline() that holds it, or release() it to its pool",
    ),
    "urllib3": ("urllib3's connection pool", "read the response to its end, or close() it"),
    "httpcore": ("httpx's connection pool", "read the response, or close() it: a with client.stream() block"),
    "aiohttp": ("aiohttp's connection pool", "read the response, or release() it: an async with block"),
    "psycopg_pool": ("a psycopg_pool pool", "putconn(), or a with pool.connection() block"),
    "psycopg2.pool": ("a psycopg2 pool", "putconn()"),
    "SQLAlchemy": ("a SQLAlchemy engine's pool", "close() its Connection or Session, or a with-block"),
    "peewee": ("a peewee pool", "db.close(), or a with db.connection_context() block"),
}


def _psycopg_pool_name(conn: Any) -> object:
    # psycopg_pool keeps itself on each connection it makes (putconn() checks it), and every
    # pool has a name: the program's (name="writer"), or psycopg_pool's ("pool-2").
    return getattr(getattr(conn, "_pool", None), "name", None)


#: Each pool family whose pools have names: how the name is found from what one lent, for a
#: report to say which pool it was (two pools of one database differ by nothing else).
_NAMES: dict[str, Callable[[Any], object]] = {"psycopg_pool": _psycopg_pool_name}


def lender(source: str, obj: Any) -> tuple[str, str, str | None]:
    """What a report says of the pool of family *source* that lent *obj*: the pool, how to give
    it back, and the pool's name if it has one."""
    pool, give_back = POOLS[source]
    name_of = _NAMES.get(source)
    try:
        name = name_of(obj) if name_of is not None else None
    except Exception:  # an exotic connection: the pool goes unnamed
        name = None
    if not isinstance(name, str):
        return pool, give_back, None
    return f"{pool} named {name!r}", give_back, name


#: id(record) -> (record, source) of each resource checked out of a pool, until it goes back:
#: a report says where it came from and how to give it back (see :func:`checked_out_of`).
_out: dict[int, tuple[_records.Record, str, tuple[Any, ...]]] = {}
#: _out's size above which take() drops what is no longer open (a connection a pool discarded
#: while it was out, never given back as itself: urllib3 puts back None for a broken one).
_out_limit = 256


def _seen(pool: Any) -> None:
    key = id(pool)
    if key not in _pools:
        _pools[key] = weakref.ref(pool, lambda ref: _forget(key, ref))


def _forget(key: int, ref: weakref.ref[Any]) -> None:
    if _pools.get(key) is ref:
        del _pools[key]


def checked_out(
    conn: Any, socket_of: Callable[[Any], Any], frame: Any, source: str, kind: str = "socket"
) -> None:
    """The pool of family *source* (see :data:`POOLS`) handed *conn* (what it holds, of *kind*,
    found by *socket_of*) to the code running in *frame*."""
    try:
        sock = socket_of(conn)
    except Exception:  # an exotic connection: it stays where it was made, the checkout goes on
        return
    rec = _holders.record_of(sock) if sock is not None else None  # a uvloop transport: by its key
    if rec is None or rec.kind != kind:
        return  # not connected yet (the request that follows connects it), or not tracked
    take(conn, rec, frame, source)


def take(
    conn: Any, rec: _records.Record, frame: Any, source: str, part: _records.Record | None = None
) -> None:
    """The pool of family *source* handed *conn*, whose resource *rec* tracks, to the code running
    in *frame*; *part* is the record of what that resource holds (a redis-py connection's socket),
    blamed there with it, as a check that sees the one must see the other acquired then."""
    global _out_limit
    marks = instance_dict(conn, create=True)
    if marks is None:  # neither __dict__ nor weak references: the resource stays blamed where made
        return
    saved = marks.get(POOLED)
    if saved is None or saved[0] is not rec:  # a second wrapper (a subclass's) keeps the first's
        saved = marks[POOLED] = _saved(rec)
        if part is not None:
            marks[POOLED_PART] = _saved(part)
        else:
            marks.pop(POOLED_PART, None)
    site = _site(frame)
    lend(rec, site)
    if part is not None:
        lend(part, site)
    _out[id(rec)] = (rec, source, saved)
    if len(_out) > _out_limit:
        for key, (out, *_) in list(_out.items()):
            if out.state != _records.OPEN:
                del _out[key]
        _out_limit = max(256, 2 * len(_out))


def _saved(rec: _records.Record) -> tuple[Any, ...]:
    return (rec, rec.site, rec.context, rec.seq, rec.time, rec.thread)


def before_checkout(rec: _records.Record) -> tuple[Any, ...] | None:
    """``(site, label, generation, time, thread)`` of *rec*, checked out, as it was before: what it
    is blamed as again once given back (see :func:`returned`), else None."""
    entry = _out.get(id(rec))
    return entry[2][1:] if entry is not None and entry[0] is rec else None


def checked_out_of(rec: _records.Record) -> str | None:
    """The family (a key of :data:`POOLS`) of the pool *rec*'s resource is checked out of, if it is."""
    entry = _out.get(id(rec))
    return entry[1] if entry is not None and entry[0] is rec else None


def lend(rec: _records.Record, site: Any) -> None:
    """*rec*'s resource is handed to the code running now, at *site*: blamed there, on its thread
    and label, as acquired now."""
    rec.site = site
    rec.thread = _records.thread_name()
    rec.context = _records.label_here()
    rec.seq = _records.generation
    rec.time = _time()


def _site(frame: Any) -> Any:
    """The flat site of *frame*, going on at the program's line past a greenlet's first frame.

    SQLAlchemy's asyncio engine runs its synchronous core in a greenlet whose stack starts at
    the function it was given: the program's ``await engine.connect()`` is on the stack of the
    greenlet that switched to it, suspended in ``greenlet_spawn``. Only code in a greenlet
    with a parent pays more than one lookup.
    """
    site = _records.capture(frame, _records.depth)
    greenlet = sys.modules.get("greenlet")
    if greenlet is None or not site or type(site[0]) is tuple:
        return site
    parent = greenlet.getcurrent().parent
    if parent is None or _sites.first_program(site):
        return site
    line = _sites.first_program(_records.capture(parent.gr_frame, _records.depth))
    return (*site[:-2], *line) if line else site


def returned(conn: Any) -> None:
    """*conn* is going back to its pool: its resource is blamed as it was before the checkout."""
    marks = instance_dict(conn, create=False)
    if marks is None:  # None (urllib3's placeholder), or never checked out
        return
    saved = marks.pop(POOLED, None)
    part = marks.pop(POOLED_PART, None)
    if saved is None:
        return
    rec = saved[0]
    entry = _out.get(id(rec))
    if entry is not None and entry[0] is rec and rec.state != _records.LEAKED:
        # One the collector closed while it was out (a pubsub()'s __del__ disconnects, then
        # gives back) is still the checkout never given back: its report says so (see take()).
        del _out[id(rec)]
    _restore(saved)
    if part is not None:
        _restore(part)


def _restore(saved: tuple[Any, ...]) -> None:
    """Blame a record as :func:`_saved` kept it, if its resource is still open."""
    rec: _records.Record = saved[0]
    if rec.state == _records.OPEN and _records.live.get(rec.key) is rec:
        rec.site, rec.context, rec.seq, rec.time, rec.thread = saved[1:]


def lent(obj: Any) -> None:
    """*obj* is what its pool references a connection it handed out through, until :func:`back`."""
    key = id(obj)
    _handed_out[key] = weakref.ref(obj, lambda ref: _forget_handed_out(key, ref))


def _forget_handed_out(key: int, ref: weakref.ref[Any]) -> None:
    if _handed_out.get(key) is ref:
        del _handed_out[key]


def back(obj: Any) -> None:
    """*obj*'s connection is its pool's again (see :func:`lent`)."""
    _handed_out.pop(id(obj), None)


def in_use() -> Iterator[object]:
    """The containers and objects through which pools reference the connections they handed out."""
    for ref in list(_pools.values()):
        pool = ref()
        for name in _in_use_names(type(pool)):
            held = getattr(pool, name, None)
            if held is not None:
                yield held
    for ref in list(_handed_out.values()):
        obj = ref()
        if obj is not None:
            yield obj


def reset() -> None:
    """Forget the pools seen and what was lent (the last tracker stopped)."""
    _pools.clear()
    _handed_out.clear()
    _out.clear()


# -- redis-py ---------------------------------------------------------------------------------


#: The functions of redis-py's clients that check a connection out for one command and give it
#: back in a ``finally`` (sync ``Redis._execute_command``, asyncio's ``Redis.execute_command``;
#: valkey-py's, a fork, ``Valkey``'s): nothing they take can be kept, so a command pays one
#: lookup for its checkout, not a site.
_REDIS_GIVES_BACK = frozenset(
    {"Redis._execute_command", "Redis.execute_command", "Valkey._execute_command", "Valkey.execute_command"}
)
_REDIS_CLIENTS = frozenset({"redis.client", "redis.asyncio.client", "valkey.client", "valkey.asyncio.client"})
#: The package of a redis-py-like connection (redis-py's, valkey-py's) -> its pools' family.
_REDIS_FAMILIES = {"redis": "redis-py", "valkey": "valkey-py"}


def _redis_records(conn: Any) -> tuple[_records.Record | None, _records.Record | None]:
    """The records of a redis-py connection a pool hands out, and of its socket: the connection's
    own (see :mod:`._redis`; a client-side cache's proxy wraps it) and its socket's, or only its
    socket's (one a client made in its ``__init__`` is untracked, part of the client)."""
    redis = _records.integration("_redis")
    live = _records.live
    inner = getattr(conn, "_conn", None)
    sock = redis.socket_of(conn if inner is None else inner)
    found = _holders.record_of(sock) if sock is not None else None  # a uvloop transport: by its key
    part = found if found is not None and found.kind == "socket" else None
    for obj in (conn, inner):
        rec = live.get(id(obj)) if obj is not None else None
        if rec is not None and rec.kind == redis.KIND and rec() is obj:
            return rec, part
    return part, None


def _redis_out(conn: Any, frame: Any) -> None:
    """A redis-py pool handed *conn* to the code running in *frame*: blamed on the program's line
    past redis-py's own frames (a ``pubsub()``'s first command checks its connection out in
    ``PubSub.execute_command``, a pipeline's in ``execute()``), with its socket. Not the one a
    client checks out as it is made (``single_connection_client=True``): that is the client's.
    Nor a command's (:data:`_REDIS_GIVES_BACK`): what it takes goes back before it returns."""
    code = frame.f_code
    if code.co_qualname in _REDIS_GIVES_BACK and frame.f_globals.get("__name__") in _REDIS_CLIENTS:
        return
    if _holders.making() is not None:
        return
    try:
        rec, part = _redis_records(conn)
    except Exception:  # an exotic connection: it stays where it was made, the checkout goes on
        return
    if rec is not None:
        package = type(conn).__module__.partition(".")[0]
        family = _REDIS_FAMILIES.get(package, "redis-py")
        take(conn, rec, _owning.caller(frame, package), family, part)


def install_redis(patches: Patches, module: ModuleType) -> None:
    """Wrap the checkout and return of ``redis.connection``'s pools (``valkey.connection``'s)."""
    from . import _redis  # noqa: F401  # its connections are what the pools hand out

    for name in ("ConnectionPool", "BlockingConnectionPool"):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            _wrap(patches, cls, "get_connection", "release", _redis_out, track_pool=True)


def install_redis_async(patches: Patches, module: ModuleType) -> None:
    """Wrap the checkout and return of ``redis.asyncio.connection``'s pools (coroutines; and
    ``valkey.asyncio.connection``'s)."""
    from . import _redis  # noqa: F401  # its connections are what the pools hand out

    for name in ("ConnectionPool", "BlockingConnectionPool"):
        cls = getattr(module, name, None)
        if isinstance(cls, type):
            _wrap(patches, cls, "get_connection", "release", _redis_out, track_pool=True, asynchronous=True)


def _checks_out(
    socket_of: Callable[[Any], Any], source: str, kind: str = "socket"
) -> Callable[[Any, Any], None]:
    """What a checkout does with the connection it got: *socket_of* finds what it holds, of *kind*,
    and that is blamed on the code that checked it out (see :func:`checked_out`)."""

    def out(conn: Any, frame: Any) -> None:
        checked_out(conn, socket_of, frame, source, kind)

    return out


def _wrap(
    patches: Patches,
    cls: type,
    get_name: str,
    put_name: str,
    out: Callable[[Any, Any], None],
    *,
    track_pool: bool = False,
    asynchronous: bool = False,
) -> None:
    """Wrap *cls*'s checkout (*get_name*) and return (*put_name*): plain methods, or coroutine
    methods with *asynchronous*. What is checked out is handed to ``out(conn, frame)`` with the
    frame of the code that took it (see :func:`_checks_out`)."""
    get = vars(cls).get(get_name)
    if get is not None:
        checkout = _async_checkout if asynchronous else _sync_checkout
        patches.set(cls, get_name, checkout(get, out, track_pool))
    put = vars(cls).get(put_name)
    if put is not None:
        patches.set(cls, put_name, (_async_return if asynchronous else _sync_return)(put))


def _sync_checkout(
    get: Callable[..., Any], out: Callable[[Any, Any], None], track_pool: bool
) -> Callable[..., Any]:
    @functools.wraps(get)
    def checkout(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = get(self, *args, **kwargs)
        if track_pool:
            _seen(self)
        out(conn, sys._getframe(1))
        return conn

    return checkout


def _sync_return(put: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(put)
    def checkin(self: Any, conn: Any, *args: Any, **kwargs: Any) -> Any:
        returned(conn)
        return put(self, conn, *args, **kwargs)

    return checkin


def _async_checkout(
    get: Callable[..., Any], out: Callable[[Any, Any], None], track_pool: bool
) -> Callable[..., Any]:
    @functools.wraps(get)
    async def get_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        conn = await get(self, *args, **kwargs)
        if track_pool:
            _seen(self)
        out(conn, sys._getframe(1))
        return conn

    return get_connection


def _async_return(release: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(release)
    async def release_(self: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        returned(connection)
        return await release(self, connection, *args, **kwargs)

    return release_


# -- urllib3 (requests) -----------------------------------------------------------------------


def _urllib3_socket(conn: Any) -> Any:
    return getattr(conn, "sock", None)


def install_urllib3(patches: Patches, module: ModuleType) -> None:
    """Wrap ``urllib3.connectionpool.HTTPConnectionPool``'s ``_get_conn`` and ``_put_conn``, and
    its ``urlopen``: a connection checked out before it had a socket (a new one, the request
    connects it) is out with that socket once the response comes back unread."""
    cls = getattr(module, "HTTPConnectionPool", None)
    if not isinstance(cls, type):
        return
    _wrap(patches, cls, "_get_conn", "_put_conn", _checks_out(_urllib3_socket, "urllib3"))
    urlopen = vars(cls).get("urlopen")
    if urlopen is None:
        return

    @functools.wraps(urlopen)
    def urlopen_(self: Any, *args: Any, **kwargs: Any) -> Any:
        # The response is never a local of this frame: an error urlopen() retried after keeps its
        # traceback (in the response's Retry history, in a log record), which goes on through this
        # frame, and would keep the response, its socket open, alive as long as the error.
        return _urllib3_response(urlopen(self, *args, **kwargs), sys._getframe(1))

    patches.set(cls, "urlopen", urlopen_)


def _urllib3_response(response: Any, frame: Any) -> Any:
    """*response*, which the code running in *frame* got from ``urlopen()``: its connection, if
    it keeps one (not read whole), is checked out to that code."""
    conn = getattr(response, "_connection", None)  # None once read whole and given back
    if conn is not None and POOLED not in getattr(conn, "__dict__", ()):
        checked_out(conn, _urllib3_socket, frame, "urllib3")
    return response


# -- aiohttp ----------------------------------------------------------------------------------


def _aiohttp_socket(conn: Any) -> Any:
    """The socket under an aiohttp ``Connection``'s transport (None once released)."""
    transport = getattr(conn, "transport", None)
    return _sockets.of_transport(transport) if transport is not None else None


def install_aiohttp(patches: Patches, module: ModuleType) -> None:
    """Wrap ``aiohttp.connector``'s ``BaseConnector.connect`` and ``Connection``'s ``release``
    and ``close``: a response never read nor released keeps its connection checked out of its
    session's pool, blamed on the program's request line, as a requests response never read is
    (a module-scoped session's: nothing was reported, where the requests one was)."""
    connector, connection = getattr(module, "BaseConnector", None), getattr(module, "Connection", None)
    if not isinstance(connector, type) or not isinstance(connection, type):
        return
    connect = vars(connector).get("connect")
    if connect is not None:
        patches.set(
            connector, "connect", _async_checkout(connect, _checks_out(_aiohttp_socket, "aiohttp"), True)
        )
    for name in ("release", "close"):
        give_back = vars(connection).get(name)
        if give_back is not None:
            patches.set(connection, name, _given_back(give_back))


def _given_back(give_back: Callable[..., Any]) -> Callable[..., Any]:
    """*give_back*, a method of what was checked out, that gives it back (or closes it)."""

    @functools.wraps(give_back)
    def given_back(self: Any, *args: Any, **kwargs: Any) -> Any:
        returned(self)
        return give_back(self, *args, **kwargs)

    return given_back


# -- psycopg_pool -----------------------------------------------------------------------------


def _itself(conn: Any) -> Any:
    return conn


def wrap_psycopg_pool(patches: Patches, cls: type, *, asynchronous: bool) -> None:
    """Wrap *cls*'s ``getconn`` and ``putconn`` (psycopg_pool's ``ConnectionPool``, or with
    *asynchronous* its ``AsyncConnectionPool``): what is checked out is a psycopg connection."""
    wrap_getconn(patches, cls, "psycopg_pool", "psycopg", asynchronous=asynchronous)


def wrap_getconn(
    patches: Patches,
    cls: type,
    source: str,
    kind: str,
    *,
    asynchronous: bool = False,
    track_pool: bool = False,
) -> None:
    """Wrap *cls*'s ``getconn`` and ``putconn``, of a pool of family *source* (see :data:`POOLS`)
    that hands out connections of *kind* (psycopg_pool's, psycopg2's); with *track_pool*, one
    that references what it handed out under a name of :data:`_IN_USE` (psycopg2's)."""
    out = _checks_out(_itself, source, kind)
    _wrap(patches, cls, "getconn", "putconn", out, asynchronous=asynchronous, track_pool=track_pool)


# -- SQLAlchemy -------------------------------------------------------------------------------

#: Attributes under which a DB-API connection, or its driver's connection, holds what is tracked:
#: aiosqlite's sqlite3 connection (under SQLAlchemy's asyncio engine), PyMySQL's socket.
_UNDER = ("_connection", "_sock")


def _sqlalchemy_record(entry: Any) -> _records.Record | None:
    """The record of what a SQLAlchemy pool entry's DB-API connection holds, if it is tracked.

    The DB-API connection itself for sqlite3 and psycopg; under an asyncio engine, the driver's
    connection the adapter wraps (psycopg's ``AsyncConnection``), or what that holds.
    """
    live = _records.live
    dbapi = entry.dbapi_connection
    rec = live.get(id(dbapi))
    if rec is not None and rec() is dbapi:
        return rec
    if dbapi is None:
        return None
    driver = entry.driver_connection
    rec = live.get(id(driver))
    if rec is not None and rec() is driver:
        return rec
    return _record_under(driver) or _record_under(dbapi)


def _record_under(obj: Any) -> _records.Record | None:
    """The record of what *obj*, a driver's connection, holds under one of :data:`_UNDER`."""
    live = _records.live
    for name in _UNDER:
        inner = getattr(obj, name, None)
        rec = live.get(id(inner)) if inner is not None else None
        if rec is not None and rec() is inner:
            return rec
    return None


def _peewee_out(conn: Any, frame: Any) -> None:
    """A ``PooledDatabase`` handed out *conn*, its driver's connection: tracked itself (sqlite3,
    psycopg2, psycopg), or holding what is (PyMySQL's socket)."""
    rec = _records.live.get(id(conn))
    if rec is None or rec() is not conn:
        rec = _record_under(conn)
    if rec is not None:
        take(conn, rec, frame, "peewee")


def install_peewee(patches: Patches, module: ModuleType) -> None:
    """Wrap ``playhouse.pool.PooledDatabase``'s ``_connect`` (a checkout: ``db.connect()``, or the
    first query of a thread with none) and ``_close`` (a return: ``db.close()``). A connection a
    test checked out and never gave back was blamed on the test that first made it, and held by
    the module's database until the session's end: the pool keeps it in its ``_in_use`` and the
    thread's state, which a search for holders no longer follows (see :data:`_IN_USE`)."""
    cls = getattr(module, "PooledDatabase", None)
    if isinstance(cls, type) and "_connect" in vars(cls) and "_close" in vars(cls):
        _wrap(patches, cls, "_connect", "_close", _peewee_out, track_pool=True)


def install_sqlalchemy(patches: Patches, module: ModuleType) -> None:
    """Wrap ``sqlalchemy.pool.base._ConnectionRecord``'s ``checkout`` and ``checkin``.

    Every pool (``QueuePool``, its asyncio twin, ``NullPool``, ``StaticPool``...) hands a
    connection out through the one and takes it back through the other: a ``close()``, a
    ``Connection`` or ``Session`` ending, the garbage collector finalizing a connection dropped
    unclosed, a failed checkout. The pool entry (the ``_ConnectionRecord``) is what carries
    the saved blame, as it is what goes out and comes back. A connection ``detach()``-ed from
    its pool stays blamed on its checkout: it is then the code's that detached it. While out,
    the entry is :func:`lent`: a ``SingletonThreadPool`` keeps every entry it made in a set,
    the checked-out ones too, and a search for holders that went through it handed a
    connection a test kept to the fixture or module owning the engine.
    """
    cls = getattr(module, "_ConnectionRecord", None)
    if not isinstance(cls, type):
        return
    checkout = vars(cls).get("checkout")
    checkin = vars(cls).get("checkin")
    if not isinstance(checkout, classmethod) or checkin is None:
        return
    get = checkout.__func__

    @functools.wraps(get)
    def checkout_(cls_: Any, pool: Any) -> Any:
        fairy = get(cls_, pool)
        try:
            entry = fairy._connection_record
            rec = _sqlalchemy_record(entry)
        except Exception:  # an exotic dialect or a newer SQLAlchemy: blamed where it connected
            return fairy
        if rec is not None:
            take(entry, rec, sys._getframe(1), "SQLAlchemy")
            lent(entry)
        else:  # untracked: what a detached connection left on the entry must not be put back
            getattr(entry, "__dict__", {}).pop(POOLED, None)
        return fairy

    @functools.wraps(checkin)
    def checkin_(self: Any, *args: Any, **kwargs: Any) -> Any:
        returned(self)
        back(self)
        return checkin(self, *args, **kwargs)

    patches.set(cls, "checkout", classmethod(checkout_))
    patches.set(cls, "checkin", checkin_)
    _holders.LENT["sqlalchemy"] = _engine_lent


def _engine_lent(engine: Any) -> list[_records.Record]:
    """The records of the connections *engine*'s pool has handed out (see ``_holders.LENT``)."""
    pool = getattr(engine, "pool", None)
    out = []
    for ref in list(_handed_out.values()):
        entry = ref()
        if entry is not None and getattr(entry, "_ConnectionRecord__pool", None) is pool:
            with contextlib.suppress(Exception):  # an exotic dialect: left out
                rec = _sqlalchemy_record(entry)
                if rec is not None:
                    out.append(rec)
    return out


# -- httpcore (httpx) -------------------------------------------------------------------------


def _httpcore_socket(conn: Any) -> Any:
    """The socket of an httpcore HTTP/1.1 connection, sync or async (None over HTTP/2, whose
    streams share one connection: the first stream back would restore a socket others hold).

    A forwarding proxy's connection holds an ``HTTPConnection`` to the proxy, which holds the
    HTTP/1.1 connection: the socket is one ``_connection`` further down.
    """
    inner = getattr(conn, "_connection", None)
    if inner is not None and not hasattr(inner, "_network_stream"):
        inner = getattr(inner, "_connection", None)
    if inner is None or hasattr(inner, "_h2_state"):
        return None
    stream = getattr(inner, "_network_stream", None)
    sock = stream.get_extra_info("socket") if stream is not None else None
    socket = sys.modules["socket"]
    if sock is not None and not isinstance(sock, socket.socket):
        # asyncio's TransportSocket, or uvloop's PseudoSocket, under anyio's stream
        sock = _sockets.tracked(sock, getattr(getattr(stream, "_stream", None), "_transport", None))
    return sock


def install_httpcore(patches: Patches, module: ModuleType) -> None:
    """Wrap ``httpcore._sync.connection_pool``: the pool's ``handle_request``, its stream's ``close``.

    A request takes a connection from the pool until the response's stream is closed: read to
    its end (``client.get()``), or closed by the program (``client.stream()``'s block, a
    ``send(..., stream=True)`` response's ``close()``). A request that failed gave none out.
    """
    _wrap_httpcore(patches, module, "ConnectionPool", "handle_request", "close", asynchronous=False)


def install_httpcore_async(patches: Patches, module: ModuleType) -> None:
    """Wrap ``httpcore._async.connection_pool``'s ``handle_async_request`` and ``aclose``."""
    _wrap_httpcore(
        patches, module, "AsyncConnectionPool", "handle_async_request", "aclose", asynchronous=True
    )


def _wrap_httpcore(
    patches: Patches, module: ModuleType, pool_name: str, get_name: str, put_name: str, *, asynchronous: bool
) -> None:
    pool, stream = getattr(module, pool_name, None), getattr(module, "PoolByteStream", None)
    if not isinstance(pool, type) or not isinstance(stream, type):
        return
    get, put = vars(pool).get(get_name), vars(stream).get(put_name)
    if get is None or put is None:
        return
    if asynchronous:
        patches.set(pool, get_name, _async_request(get))
        patches.set(stream, put_name, _async_stream_close(put))
        return

    @functools.wraps(get)
    def handle_request(self: Any, request: Any) -> Any:
        response = get(self, request)
        _lent(response, sys._getframe(1))
        return response

    @functools.wraps(put)
    def close(self: Any) -> None:
        _back(self)
        put(self)

    patches.set(pool, get_name, handle_request)
    patches.set(stream, put_name, close)


def _async_request(get: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(get)
    async def handle_async_request(self: Any, request: Any) -> Any:
        response = await get(self, request)
        _lent(response, sys._getframe(1))
        return response

    return handle_async_request


def _async_stream_close(put: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(put)
    async def aclose(self: Any) -> None:
        _back(self)
        await put(self)

    return aclose


def _lent(response: Any, frame: Any) -> None:
    """The connection an httpcore pool's *response* streams from is out until the stream closes.

    The pool lists every connection it has, idle or out (``_connections``): one out is reached
    through it only while lent, or a session fixture's client would take over the connection a
    test's response kept.
    """
    conn = getattr(getattr(getattr(response, "stream", None), "_pool_request", None), "connection", None)
    if conn is not None:
        checked_out(conn, _httpcore_socket, frame, "httpcore")
        if POOLED in getattr(conn, "__dict__", ()):
            lent(conn)


def _back(stream: Any) -> None:
    if not getattr(stream, "_closed", True):  # closed once: the pool takes its connection back then
        conn = getattr(getattr(stream, "_pool_request", None), "connection", None)
        back(conn)
        returned(conn)
