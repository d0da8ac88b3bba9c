"""redis-py's connections (sync and asyncio): a connection left connected is one entry, kind
``redis-connection``, described as ``host:port/db``, at the program's line past redis-py's frames,
its socket under it: made and connected by the program, checked out of a pool by a ``pubsub()``
or a watching pipeline and kept, reconnected deep inside ``get_message()``, or closed for the
collector by the ``__del__`` of what held it.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import Watch, ignore_gc_warnings, leakwatch, line, reclaim_run_json

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytestmark = pytest.mark.redis


@pytest.fixture(params=["redis", "valkey"], ids=["redis-py", "valkey-py"])
def redis(request: pytest.FixtureRequest, redis_server: Any) -> Any:
    """redis-py, then valkey-py, its fork, tracked as it is (the test is skipped without it or
    the server)."""
    return pytest.importorskip(request.param)


def family(redis: Any) -> str:
    """What a report calls the pools of *redis* (the module)."""
    return f"{redis.__name__}-py"


@pytest.fixture
def client(redis: Any, redis_server: Any) -> Iterator[Any]:
    """A client of the server on 127.0.0.1 whose pool has connected nothing yet."""
    made = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield made
    made.close()


def target(redis_server: Any, db: int = 0) -> str:
    return f"{redis_server.host}:{redis_server.port}/{db}"


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["kept", "dropped"])
def test_a_connection_the_program_connects_is_one_entry_at_its_line_holding_its_socket(
    leakwatch: Watch, redis: Any, redis_server: Any, dropped: bool
) -> None:
    """It was a bare socket at redis-py's ``Connection._connect``, seven of its frames above
    the program's line."""
    conn = redis.Connection(host=redis_server.host, port=redis_server.port, db=3)
    made = line() - 1
    assert leakwatch.leaks() == []  # not connected: nothing open
    conn.connect()
    if dropped:
        del conn
        gc.collect()
    leak = leakwatch.one("redis-connection")
    assert leak.frames[0].lineno == made and leak.description == target(redis_server, 3)
    assert leak.details["class"] == f"{redis.__name__}.Connection"
    assert leak.state == ("collected" if dropped else "open")
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", leak.state)]
    assert [found.kind for found in leakwatch.leaks()] == ["redis-connection"]
    if not dropped:
        conn.disconnect()
        assert leakwatch.leaks() == []
        conn.connect()  # connected again: open again, still the line that made it
        assert leakwatch.one("redis-connection").frames[0].lineno == made
        conn.disconnect()
        assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_asyncio_connection_the_program_connects_is_one_entry_at_its_line(
    leakwatch: Watch, redis: Any, redis_server: Any
) -> None:
    aredis = pytest.importorskip(f"{redis.__name__}.asyncio")

    async def main() -> None:
        conn = aredis.Connection(host=redis_server.host, port=redis_server.port)
        made = line() - 1
        await conn.connect()
        try:
            leak = leakwatch.one("redis-connection")
            assert leak.frames[0].lineno == made and leak.description == target(redis_server)
            assert [held.kind for held in leak.holds] == ["socket"]
        finally:
            await conn.disconnect()
        assert [leak.kind for leak in leakwatch.leaks() if leak.kind.startswith(("redis", "socket"))] == []

    asyncio.run(main())


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pools_connection_used_again_after_a_disconnect_is_at_the_line_that_used_it_again(
    leakwatch: Watch, redis: Any, redis_server: Any
) -> None:
    """A pool's ``disconnect()``, then a command: the socket open now was made by that command,
    and its connection was reported at the first command's line, whose socket was long closed
    (taskiq-redis's tests). An asyncio pool's too: its ``disconnect()`` closes its writer itself."""
    pool = redis.ConnectionPool(host=redis_server.host, port=redis_server.port, db=4)
    client = redis.Redis(connection_pool=pool)
    client.ping()
    pool.disconnect()
    client.ping()
    again = line() - 1
    try:
        [held] = [leak for leak in leakwatch.leaks() if leak.kind == "redis-connection"] or [
            part for leak in leakwatch.leaks() for part in leak.holds if part.kind == "redis-connection"
        ]
        assert held.frames[0].lineno == again
    finally:
        pool.disconnect()
    aredis = pytest.importorskip(f"{redis.__name__}.asyncio")

    async def main() -> None:
        pool = aredis.ConnectionPool(host=redis_server.host, port=redis_server.port, db=4)
        client = aredis.Redis(connection_pool=pool)
        await client.ping()
        await pool.disconnect()
        await client.ping()
        again = line() - 1
        try:
            parts = [part for leak in leakwatch.leaks() for part in (leak, *leak.holds)]
            [held] = [part for part in parts if part.kind == "redis-connection"]
            assert held.frames[0].lineno == again
        finally:
            await pool.disconnect()

    asyncio.run(main())


def _pubsub(client: Any) -> tuple[Any, int]:
    """A subscribed ``pubsub()``, and the line that subscribed."""
    pubsub = client.pubsub()
    pubsub.subscribe("reclaim-test:redis")
    return pubsub, line() - 1


def _watching(client: Any) -> tuple[Any, int]:
    """A pipeline watching a key (its connection is out until ``reset()``), and the line of ``watch()``."""
    pipe = client.pipeline()
    pipe.watch("reclaim-test:redis")
    return pipe, line() - 1


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("keeps", [_pubsub, _watching], ids=["pubsub", "watching-pipeline"])
def test_a_connection_checked_out_on_first_use_and_kept_is_blamed_on_the_programs_line(
    leakwatch: Watch, client: Any, redis: Any, redis_server: Any, keeps: Any
) -> None:
    """The pool connects it inside the checkout, which ``PubSub.execute_command`` (or
    ``Pipeline.watch``'s) makes: it was reported at that line of redis-py's, with the program's
    line two frames below, and as a bare socket."""
    held, at = keeps(client)
    try:
        leak = leakwatch.one("redis-connection")
        assert leak.frames[0].lineno == at
        assert leak.details["checked_out_of"] == family(redis)
        assert leak.description.startswith(
            f"{target(redis_server)}, checked out of a {family(redis)} connection pool"
        )
        assert [held.kind for held in leak.holds] == ["socket"]
    finally:
        held.reset()  # given back: idle in the client's pool (a pipeline's still connected)
    assert leakwatch.leaks("redis-connection") == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pubsub_reconnected_inside_get_message_stays_blamed_on_its_subscribe(
    leakwatch: Watch, client: Any
) -> None:
    """redis-py's own suite does this (``test_resubscribe_to_channels_on_reconnection``): the new
    socket was made eight frames deep in redis-py, and the report showed no line of the program."""
    pubsub = client.pubsub()
    pubsub.subscribe("reclaim-test:redis")
    at = line() - 1
    pubsub.connection.disconnect()
    pubsub.get_message(timeout=0.01)  # reconnects, and subscribes again
    try:
        leak = leakwatch.one("redis-connection")
        assert leak.frames[0].lineno == at
        [sock] = leak.holds
        assert sock.kind == "socket" and sock.state == "open"
        assert [found.kind for found in leakwatch.leaks()] == ["redis-connection"]
    finally:
        pubsub.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pubsub_dropped_subscribed_on_a_new_client_is_the_collectors_at_its_subscribe(
    leakwatch: Watch, client: Any, redis: Any, redis_server: Any
) -> None:
    """Its ``__del__`` disconnects the connection and gives it back: the collector's doing, at
    the line that subscribed (it was a bare socket at ``PubSub.execute_command``), still a
    checkout never given back."""
    client.pubsub().subscribe("reclaim-test:redis")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("redis-connection")
    assert leak.state == "collected" and leak.frames[0].lineno == at
    assert leak.description == (
        f"{target(redis_server)}, checked out of a {family(redis)} connection pool and never given back"
        " (close() the pubsub() or pipeline() that holds it, or release() it to its pool)"
    )
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]
    assert [found.kind for found in leakwatch.leaks()] == ["redis-connection"]


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("client_older", [False, True], ids=["one-generation", "client-older"])
def test_a_client_dropped_in_a_reference_cycle_is_the_client_holding_its_connection(
    leakwatch: Watch, redis: Any, redis_server: Any, client_older: bool
) -> None:
    """A client dropped unclosed in a reference cycle (rq's command line keeps it on a click
    context that refers to itself): its pool's ``__del__`` may disconnect its connection before
    the connection's own record is looked at, and the leak was a bare socket at the first line
    that used the client. It is the client, at the line that made it, holding its connection,
    as one dropped of its last reference is.

    Whichever ``__del__`` the collector runs first: the collector finalizes the youngest
    generation's objects first, so a client moved to an older generation (by a collection run
    while it connected) saw its connection's ``__del__`` disconnect it before its own ran, looked
    closed, and the leak was the bare connection."""

    class Config:
        def __init__(self) -> None:
            self.client: Any = None
            self.me = self  # the cycle

    def command() -> int:
        config = Config()
        config.client = redis.Redis(host=redis_server.host, port=redis_server.port, db=9)
        made = line() - 1
        if client_older:
            gc.collect(0)  # the client into an older generation than the connection ping() makes
        config.client.ping()
        return made

    made = command()
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("redis", "collected"), leak.headline()
    assert leak.frames[0].lineno == made
    assert [(held.kind, held.state) for held in leak.holds] == [("redis-connection", "collected")]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_single_connection_clients_own_connection_is_not_said_to_be_checked_out(
    leakwatch: Watch, redis: Any, redis_server: Any
) -> None:
    """The client checks it out of its pool as it is made, and gives it back as it closes: it is
    the client's, not a checkout the program kept."""
    single = redis.Redis(host=redis_server.host, port=redis_server.port, single_connection_client=True)
    made = line() - 1
    single.ping()
    try:
        leak = leakwatch.one("redis")
        assert leak.frames[0].lineno == made
        [held] = leak.holds
        assert held.kind == "socket" and "checked_out_of" not in held.details
        assert "checked out" not in held.description
    finally:
        single.close()
    assert leakwatch.leaks() == []


def test_connections_given_back_and_clients_closed_leave_nothing(
    leakwatch: Watch, client: Any, redis: Any, redis_server: Any
) -> None:
    client.ping()
    with client.pubsub() as pubsub:
        pubsub.subscribe("reclaim-test:redis")
    with client.pipeline() as pipe:
        pipe.watch("reclaim-test:redis")
        pipe.multi()
        pipe.get("reclaim-test:redis")
        pipe.execute()
    client.close()
    with redis.Redis(host=redis_server.host, port=redis_server.port) as other:
        other.ping()
    assert leakwatch.leaks() == []


class _Kept:
    """What a pool keeps idle (a stand-in for a connection): here, a socket closed long ago."""

    is_connected = True  # as redis-py's connections say: the pool is open while one is

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pool_dying_in_a_cycle_does_not_take_a_socket_collected_before_it_was_made(
    leakwatch: Watch, redis: Any
) -> None:
    """Under pytest every record is of one generation, so "collected since the holder was made"
    let a pool of a later test take the sockets an earlier test's were reported for: a closed
    socket it reached (through a mock's traceback, in redis-py's suite) was made at the address
    of one collected before, and taken for it."""
    dropped = socket.socket()
    address = id(dropped)
    del dropped  # closed by the collector: a leak, and its record keyed by that address
    [leak] = leakwatch.leaks("socket")
    assert leak.state == "collected"
    # A socket made at that address now, and closed: the program's, untracked from then on.
    made = [socket.socket() for _ in range(64)]
    reused = next((sock for sock in made if id(sock) == address), None)
    for sock in made:
        sock.close()
    if reused is None:
        pytest.skip("the allocator gave no new socket the dropped one's address")
    pool = redis.ConnectionPool()
    pool._available_connections.append(_Kept(reused))
    pool.cycle = pool  # dies in a collection: its claim searches the collected records
    del pool, made
    gc.collect()
    assert [found.kind for found in leakwatch.leaks()] == ["socket"]  # no pool holding it


# Line 6 publishes through kombu's global producer pool (Celery's producer pool is that one);
# line 10 connects a redis-py pool of the program's own and keeps it connected.
KOMBU = """\
    import redis
    from kombu import Connection, pools

    conn = Connection("redis://{host}:{port}/7")
    with pools.producers[conn].acquire(block=True) as producer:
        producer.publish({{"n": 1}}, routing_key="reclaim-kombu-test", declare=[])
    conn.release()
    own = redis.ConnectionPool(host="{host}", port={port}, db=7)
    client = redis.Redis(connection_pool=own)
    client.ping()
"""


def test_a_check_that_finds_nothing_searches_no_librarys_holders(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a library keeps for the process (kombu's global pools) was claimed, its object graph
    searched, on every check, a clean test's too: 0.28 s a test in kombu's own suite, 4.6x its
    time. Only a check that found something left open asks."""
    from reclaim.leaks import _holders

    class Pools:  # kombu's global connection pools, as far as the search goes
        connections = [object() for _ in range(10)]

    pools = Pools()
    monkeypatch.setattr(_holders, "_libraries", [])
    _holders._leave_to_library(pools, _holders.KOMBU_POOLS)
    claims: list[object] = []
    claim = _holders.claim

    def counted(holder: object, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        claims.append(holder)
        return claim(holder, *args, **kwargs)

    monkeypatch.setattr(_holders, "claim", counted)
    assert leakwatch.leaks() == []
    assert claims == []
    sock = socket.socket()
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["socket"]
        assert len(claims) == 1
    finally:
        sock.close()


def test_a_librarys_holder_is_searched_past_what_holds_nothing(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kombu's global pool, its limit set high, is preloaded with placeholders: every object the
    search met took a share of its budget, an int or a string too, and a connection past a
    large list of them was never reached (and each check spent 0.6 s getting there)."""
    from reclaim.leaks import _holders

    class Holder:
        pass

    kept = Holder()
    kept.sock = socket.socket()  # type: ignore[attr-defined]
    pools = Holder()
    pools.items = [list(range(2 * _holders.SEARCH)), [[kept]]]  # type: ignore[attr-defined]
    monkeypatch.setattr(_holders, "_libraries", [])
    _holders._leave_to_library(pools, _holders.KOMBU_POOLS)
    try:
        assert leakwatch.leaks() == []  # the socket is the library's
    finally:
        kept.sock.close()  # type: ignore[attr-defined]


def test_what_kombus_global_pools_keep_is_kombus_not_the_first_publishers(
    tmp_path: Path, redis_server: Any
) -> None:
    """The channel of kombu's global pools' connection keeps two redis-py pools, connected as
    the first publish() went through: kombu's for the process (``kombu.pools.reset()`` closes
    them), not the publisher's leaks; a pool the program made itself still is."""
    pytest.importorskip("redis")
    pytest.importorskip("kombu.pools")
    report, stderr = reclaim_run_json(tmp_path, KOMBU.format(host=redis_server.host, port=redis_server.port))
    # kombu's poller (its epoll, a descriptor no object of ours owns) is reported at the
    # publish that made it: not followed to kombu's pools here
    found = [
        (leak["kind"], [frame["line"] for frame in leak["frames"] if frame["file"].endswith("prog.py")])
        for leak in report["leaks"]
    ]
    assert found == [("redis", [8]), ("untracked-fd", [6])], stderr


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("aclose", [True, False], ids=["redis-py-5", "redis-py-4.6"])
def test_an_async_client_left_open_is_told_the_close_its_version_has(leakwatch: Watch, aclose: bool) -> None:
    """redis-py's asyncio client has ``aclose()`` since 5.0.1; before, ``close()`` only (arq pins
    4.6): the report told the program to await a method its client does not have."""
    from reclaim.leaks import _holders
    from reclaim.leaks._patch import Patches

    module = types.ModuleType("redis.asyncio.client")

    class Connection:
        def __init__(self) -> None:
            self.sock = socket.socket()  # what the client holds: a socket of ours
            self.is_connected = True

    class Redis:
        def __init__(self) -> None:
            self.connection = Connection()
            self.connection_pool = None

        async def close(self) -> None:
            self.connection.sock.close()
            self.connection.is_connected = False

    if aclose:
        Redis.aclose = Redis.close  # type: ignore[attr-defined]
    module.Redis = Redis  # type: ignore[attr-defined]
    patches = Patches()
    _holders.install(patches, module)
    try:
        client = Redis()
        leak = leakwatch.one("redis")
        method = "aclose" if aclose else "close"
        fix = f"not closed (await client.{method}(), or async with)"
        assert leak.description.endswith(fix), leak.description
        asyncio.run(client.close())
        assert leakwatch.leaks() == []
    finally:
        patches.restore()


def test_a_client_class_keeps_its_init_functions_attributes(leakwatch: Watch) -> None:
    """redis-py 8.2's ``@deprecated_args`` keeps the names it warns of on ``Redis.__init__``;
    fakeredis reads them so as not to pass them on. Tracking's stand-in for ``__init__`` dropped
    them: every ``FakeRedis()`` warned three times, and fakeredis's tests of that failed."""
    redis = pytest.importorskip("redis", minversion="8.2")
    assert "retry_on_timeout" in str(redis.Redis.__init__._deprecated_args_layers)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_whose_writer_is_no_asyncio_stream_breaks_no_check(leakwatch: Watch) -> None:
    """fakeredis's TCP server makes a redis-py ``Connection`` per client whose ``_writer`` is a
    plain object of its own: the check asked it for ``get_extra_info()`` and crashed, every test
    of that server erring and the session's last check with them. It is a connection holding no
    socket reclaim can name."""
    redis = pytest.importorskip("redis")

    class Writer:
        def write(self, data: bytes) -> None:
            pass

    conn = redis.Connection(host="127.0.0.1", port=1)
    conn._writer = Writer()
    leaks = leakwatch.leaks()
    assert all("get_extra_info" not in leak.description for leak in leaks)
    conn._writer = None


def test_django_redis_pool_per_url_is_the_librarys(tmp_path: Path, redis_server: Any) -> None:
    """django-redis keeps one pool per URL for the process, in ``ConnectionFactory._pools``, made
    by the first call that needs it and closed by nothing: it was the leak of whichever test
    first used the cache (django-rq's ``USE_REDIS_CACHE``), or of the program at its end. A pool
    the program makes itself is still its own."""
    pytest.importorskip("django_redis")
    url = f"redis://{redis_server.host}:{redis_server.port}/11"
    source = f"""
import django
from django.conf import settings

settings.configure(CACHES={{"default": {{"BACKEND": "django_redis.cache.RedisCache", "LOCATION": "{url}"}}}})
django.setup()
from django.core.cache import cache
import redis

cache.set("reclaim-test:django-redis", 1, timeout=5)
cache.delete("reclaim-test:django-redis")
mine = redis.ConnectionPool.from_url("{url}")
redis.Redis(connection_pool=mine).ping()
"""
    report, stderr = reclaim_run_json(tmp_path, source)
    assert [(leak["kind"], leak["frames"][0]["line"]) for leak in report["leaks"]] == [("redis", 12)], stderr
