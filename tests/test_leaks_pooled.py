"""Connections a client library's pool hands out (redis-py, sync and asyncio; urllib3; httpx's
httpcore; SQLAlchemy's DB-API connections, sync and asyncio): a connection checked out and never
given back is blamed on the line that checked it out, not on the line that first connected it,
and under pytest on the test that checked it out, not on the session fixture whose client or
engine made it. Connections resting in their pool are blamed as before.
"""

from __future__ import annotations

import asyncio
import gc
import http.server
import json
import socket
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import reclaim
from _leakhelp import RUN_TIMEOUT, Watch, ignore_gc_warnings, leakwatch, line, reclaim_pytest
from _proxy import FaultProxy
from reclaim.leaks import context

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytest_plugins = ["pytester"]


def program_line(leak: Any) -> int | None:
    """The line of this file the leak's stack passes through first (its frames start in the library)."""
    return next((frame.lineno for frame in leak.frames if frame.filename == __file__), None)


def idle_in_engine(watch: Watch, kind: str) -> int | None:
    """The line that first connected the one connection (of *kind*) a SQLAlchemy engine keeps
    idle in its pool: the engine, not disposed, is the entry, and the connection is under it."""
    engine = watch.one("sqlalchemy")
    assert [leak.kind for leak in watch.leaks() if leak.kind in ("sqlite3", "psycopg")] == []
    [held] = engine.holds
    assert held.kind == kind
    return program_line(held)


def kept_out(watch: Watch, kind: str) -> Any:
    """The one connection (of *kind*) a test checked out of an engine's pool and kept, when the
    engine, not disposed, keeps none idle: the engine is the entry, the connection under it. It
    was an entry of its own, and the engine, holding nothing, none; once the connection went
    back, the engine was reported too, at the session's end, holding it (SQLAlchemy-Utils)."""
    engine = watch.one("sqlalchemy")
    [held] = engine.holds
    assert held.kind == kind and held.details["checked_out_of"] == "SQLAlchemy"
    return held


def sqlalchemy_url(driver: str, service: Any) -> Any:
    """SQLAlchemy's URL of the test *service* (PostgreSQL, MariaDB) through *driver*."""
    import sqlalchemy

    return sqlalchemy.URL.create(
        driver,
        username=service.user,
        password=service.password or None,
        host=service.host,
        port=service.port,
        database=service.database,
    )


# -- redis-py ---------------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_server: Any) -> Iterator[Any]:
    """A redis-py client of the server on 127.0.0.1 (its pool connects on first use)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield client
    client.close()


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_pubsub_never_closed_is_blamed_on_its_subscribe_not_on_the_ping_that_connected(
    leakwatch: Watch, redis_client: Any
) -> None:
    redis_client.ping()  # connects the pool's socket, and gives it back
    pubsub = redis_client.pubsub()
    pubsub.subscribe("reclaim-test:pooled")  # checks that connection out, never to give it back
    at = line() - 1
    try:
        leak = leakwatch.one("redis-connection")
        assert leak.frames[0].lineno == at  # the program's line, not PubSub.execute_command's
        assert leak.details["checked_out_of"] == "redis-py"
        server = redis_client.connection_pool.connection_kwargs
        assert leak.description == (
            f"{server['host']}:{server['port']}/0, checked out of a redis-py connection pool and never"
            " given back (close() the pubsub() or pipeline() that holds it, or release() it to its pool)"
        )
        assert [held.kind for held in leak.holds] == ["socket"]
    finally:
        pubsub.close()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("connected", [True, False], ids=["connected-before", "connected-by-the-checkout"])
@pytest.mark.parametrize("kept", ["pubsub", "watching-pipeline"])
def test_a_checkout_kept_is_blamed_on_the_programs_line_not_on_redis_pys(
    leakwatch: Watch, redis_client: Any, connected: bool, kept: str
) -> None:
    """``PubSub.execute_command`` (or ``Pipeline.watch``) is what checks the connection out: the
    leak was at that line of redis-py's, the program's line two frames below it."""
    if connected:
        redis_client.ping()
    if kept == "pubsub":
        holder = redis_client.pubsub()
        holder.subscribe("reclaim-test:pooled")
        at = line() - 1
    else:
        holder = redis_client.pipeline()
        holder.watch("reclaim-test:pooled")
        at = line() - 1
    try:
        [leak] = [found for found in leakwatch.leaks() if found.details.get("checked_out_of") == "redis-py"]
        assert leak.frames[0].lineno == at and leak.frames[0].filename == __file__
    finally:
        holder.reset()


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_pubsub_dropped_unclosed_is_the_collectors_at_its_subscribe(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Its ``__del__`` disconnects the socket it checked out, then gives the connection back:
    closed by the garbage collector, and still said to be a checkout never given back, with how
    to give it back (the report named only the connection)."""
    redis_client.ping()
    redis_client.pubsub().subscribe("reclaim-test:pooled")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("redis-connection")
    assert leak.state == "collected" and leak.frames[0].lineno == at
    assert leak.details["checked_out_of"] == "redis-py"
    assert "close() the pubsub()" in leak.description
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]


@pytest.mark.parametrize("order", ["pool-first", "connection-first"])
def test_a_pool_keeping_only_connections_over_no_socket_of_ours_is_no_leak(
    leakwatch: Watch, order: str
) -> None:
    """A redis-py pool keeping an idle connection whose transport is not a socket (fakeredis's):
    the pool, found before the connection, took it out of the check's index, and the connection,
    holding nothing, was deleted from it again: a KeyError out of every check from then on,
    the session's end too. Neither holds anything of ours, in either order."""
    redis = pytest.importorskip("redis")

    class Transport:  # what fakeredis's connections keep in place of a socket
        def shutdown(self, how: int) -> None:
            pass

        def close(self) -> None:
            pass

    class NoSocket(redis.Connection):  # type: ignore[misc]
        def connect(self, *args: Any, **kwargs: Any) -> None:
            self._sock = Transport()

    if order == "pool-first":
        pool = redis.ConnectionPool(connection_class=NoSocket)
        conn = pool.get_connection()
        conn.connect()
        pool.release(conn)
    else:  # a connection made before the pool that keeps it
        conn = NoSocket()
        conn.connect()
        pool = redis.ConnectionPool(connection_class=NoSocket)
        pool._available_connections.append(conn)
    assert [leak.kind for leak in leakwatch.leaks()] == []
    pool.disconnect()


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_back_in_the_pool_is_blamed_where_it_connected(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Returned, the socket is the pool's again: an unclosed client's idle connection is listed
    under the client at the line that connected it, not at the last line that used it."""
    redis_client.ping()
    at = line() - 1
    redis_client.echo("again")
    [held] = leakwatch.one("redis").holds
    assert held.kind == "redis-connection" and held.frames[0].lineno == at
    assert "checked_out_of" not in held.details and "checked out" not in held.description
    redis_client.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["kept", "dropped"])
def test_a_redis_client_never_closed_is_one_entry_at_its_line_holding_its_sockets(
    leakwatch: Watch, redis_server: Any, dropped: bool
) -> None:
    """Its idle connections were each a socket, seven redis-py frames above the command that
    connected it: the client is the entry, at the line that made it. A pool it was handed is
    not its to close: a client of a shared pool is no entry (the pool is, at its own line)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    made = line() - 1
    client.ping()
    connected = line() - 1
    shared = redis.ConnectionPool(host=redis_server.host, port=redis_server.port)
    try:
        redis.Redis(connection_pool=shared).ping()
        if dropped:
            del client
        client_leak, pool_leak = leakwatch.leaks("redis")  # the shared pool is the second
        assert pool_leak.description.startswith("redis.ConnectionPool not closed")
        leak = client_leak
        assert leak.frames[0].lineno == made and leak.state == ("collected" if dropped else "open")
        assert leak.description == "redis.Redis not closed (close(), or a with-block)"
        assert [(held.kind, held.state, held.frames[0].lineno) for held in leak.holds] == [
            ("redis-connection", leak.state, connected)
        ]
        assert [part.kind for part in leak.holds[0].holds] == ["socket"]
    finally:
        shared.disconnect()
    if dropped:
        assert [found.kind for found in leakwatch.leaks()] == ["redis"]  # collected: it stays reported
    else:
        client.close()
        assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pool_the_program_makes_is_the_entry_at_its_line_not_the_command_that_connected(
    leakwatch: Watch, redis_server: Any
) -> None:
    """redis-py's docs make a pool handed to clients the program's to disconnect (rq's scheduler
    makes one): its idle sockets were reported at the first command, deep in the program."""
    redis = pytest.importorskip("redis")
    pool = redis.ConnectionPool(host=redis_server.host, port=redis_server.port, max_connections=1_000)
    made = line() - 1
    redis.Redis(connection_pool=pool).ping()
    connected = line() - 1
    try:
        leak = leakwatch.one("redis")
        assert leak.description == "redis.ConnectionPool not closed (pool.disconnect(), or a with-block)"
        assert leak.frames[0].lineno == made
        assert [(held.kind, held.frames[0].lineno) for held in leak.holds] == [
            ("redis-connection", connected)
        ]
        assert [found.kind for found in leakwatch.leaks()] == ["redis"]
    finally:
        pool.disconnect()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("how", ["from_url", "from_pool"])
def test_a_client_given_its_pool_to_close_is_the_one_entry(
    leakwatch: Watch, redis_server: Any, how: str
) -> None:
    """``from_url()`` and ``from_pool()`` make the client close the pool: one entry, the client's."""
    redis = pytest.importorskip("redis")
    url = f"redis://{redis_server.host}:{redis_server.port}/0"
    if how == "from_url":
        client = redis.Redis.from_url(url)
        made = line() - 1
    else:
        client = redis.Redis.from_pool(redis.ConnectionPool.from_url(url))
        made = line() - 1
    client.ping()
    try:
        leak = leakwatch.one("redis")
        assert leak.description == "redis.Redis not closed (close(), or a with-block)"
        assert leak.frames[0].lineno == made and [held.kind for held in leak.holds] == ["redis-connection"]
        assert [found.kind for found in leakwatch.leaks()] == ["redis"]
    finally:
        client.close()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_asyncio_pool_the_program_makes_is_the_entry_at_its_line(
    leakwatch: Watch, redis_server: Any
) -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")

    async def main() -> None:
        pool = redis_asyncio.ConnectionPool(host=redis_server.host, port=redis_server.port)
        made = line() - 1
        await redis_asyncio.Redis(connection_pool=pool).ping()
        try:
            leak = leakwatch.one("redis")
            assert leak.description == (
                "redis.asyncio.ConnectionPool not closed (await pool.disconnect(), or async with)"
            )
            assert leak.frames[0].lineno == made and [held.kind for held in leak.holds] == [
                "redis-connection"
            ]
        finally:
            await pool.disconnect()
        assert [leak.kind for leak in leakwatch.leaks() if leak.kind in ("redis", "socket")] == []

    asyncio.run(main())


@pytest.mark.redis
def test_an_asyncio_redis_client_left_open_is_one_entry_until_aclose(
    leakwatch: Watch, redis_server: Any
) -> None:
    redis_asyncio = pytest.importorskip("redis.asyncio")

    async def main() -> None:
        client = redis_asyncio.Redis(host=redis_server.host, port=redis_server.port)
        made = line() - 1
        await client.ping()
        connected = line() - 1
        leak = leakwatch.one("redis")
        assert leak.description == "redis.asyncio.Redis not closed (await client.aclose(), or async with)"
        assert leak.frames[0].lineno == made
        assert [(held.kind, held.frames[0].lineno) for held in leak.holds] == [
            ("redis-connection", connected)
        ]
        await client.aclose()
        assert [leak.kind for leak in leakwatch.leaks() if leak.kind in ("redis", "socket")] == []

    asyncio.run(main())


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_checkout_inside_no_leaks_of_a_socket_connected_before_is_that_blocks(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Checked out inside the block and kept: the block's leak; given back: nothing. (The
    socket is tracked from its connect, before the block: *leakwatch* runs a tracker.)"""
    redis_client.ping()
    with reclaim.no_leaks():
        redis_client.echo("borrowed and returned")
    pubsub = redis_client.pubsub()
    try:
        with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
            pubsub.subscribe("reclaim-test:pooled")
            at = line() - 1
        [leak] = caught.value.leaks
        assert leak.kind == "redis-connection" and leak.frames[0].lineno == at
    finally:
        pubsub.close()


@pytest.mark.redis
def test_checkouts_closed_while_out_and_never_given_back_are_not_remembered_for_ever(
    leakwatch: Watch, redis_server: Any
) -> None:
    """A connection a pool lent and the program closed, then dropped without giving it back (as
    urllib3 does with a broken one), has nothing left to report: the table of what is out
    forgets it, and does not grow with each one."""
    redis = pytest.importorskip("redis")
    from reclaim.leaks import _pooled

    pool = redis.ConnectionPool(host=redis_server.host, port=redis_server.port, max_connections=1_000)
    for _ in range(3 * _pooled._out_limit):
        conn = pool.get_connection()
        conn.disconnect()
        pool._in_use_connections.discard(conn)  # dropped: the pool never sees it again
    del conn
    assert len(_pooled._out) <= 2 * 256
    assert leakwatch.leaks() == []


@pytest.mark.redis
def test_a_blocking_pools_checkouts_given_back_leave_nothing(leakwatch: Watch, redis_server: Any) -> None:
    redis = pytest.importorskip("redis")
    pool = redis.BlockingConnectionPool(host=redis_server.host, port=redis_server.port, max_connections=2)
    client = redis.Redis(connection_pool=pool)
    client.ping()
    with client.pubsub() as pubsub:
        pubsub.subscribe("reclaim-test:pooled")
    with client.pipeline() as pipe:
        pipe.echo("a").echo("b").execute()
    client.close()
    pool.disconnect()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_pubsub_never_closed_is_blamed_on_its_subscribe(leakwatch: Watch, redis_server: Any) -> None:
    aredis = pytest.importorskip("redis.asyncio")

    async def main() -> None:
        client = aredis.Redis(host=redis_server.host, port=redis_server.port)
        await client.ping()
        pubsub = client.pubsub()
        await pubsub.subscribe("reclaim-test:pooled")
        at = line() - 1
        try:
            assert leakwatch.one("redis-connection").frames[0].lineno == at
        finally:
            await pubsub.aclose()
            await client.aclose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.redis
def test_async_clients_holder_takes_its_idle_connections_not_one_checked_out_and_kept(
    leakwatch: Watch, redis_server: Any
) -> None:
    """What the pytest plugin asks at a test's end (see hand_over_held): a session fixture's
    client takes what rests in its pool, never a connection a later test checked out."""
    aredis = pytest.importorskip("redis.asyncio")
    tracker = leakwatch.tracker

    async def main() -> None:
        client = aredis.Redis(host=redis_server.host, port=redis_server.port)
        with context("reclaim-test: connects"):
            await client.ping()
        # The connection resting in its pool, and its socket.
        assert tracker.hand_over_held("reclaim-test: connects", {"fixture": client}) == 2
        pubsub = client.pubsub()
        with context("reclaim-test: keeps"):
            await pubsub.subscribe("reclaim-test:pooled")
            at = line() - 1
        try:
            assert tracker.hand_over_held("reclaim-test: keeps", {"fixture": client}) == 0
            [leak] = leakwatch.leaks("redis-connection", context="reclaim-test: keeps")
            assert leak.frames[0].lineno == at
        finally:
            await pubsub.aclose()
            await client.aclose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.redis
def test_under_pytest_a_checkout_kept_is_the_tests_not_the_session_fixtures(
    pytester: pytest.Pytester, redis_server: Any
) -> None:
    """A session fixture's client connects in one test; a later test's ``pubsub()`` kept (or
    dropped) unclosed fails that test at its own line. A fixture's pubsub that first subscribes
    in a test, and a client's connections resting in its pool, are the fixture's."""
    pytest.importorskip("redis")
    pytester.makepyfile(
        test_pooled=f"""
        import pytest
        import redis

        KEEP = []

        @pytest.fixture(scope="session")
        def client():
            c = redis.Redis(host={redis_server.host!r}, port={redis_server.port})
            yield c
            c.close()

        @pytest.fixture(scope="session")
        def listener(client):
            p = client.pubsub()
            yield p
            p.close()

        def test_connects(client):
            client.ping()

        def test_listens_through_the_fixture(listener, client):
            listener.subscribe("reclaim-test:fixture")
            client.echo("meanwhile")

        def test_keeps_a_pubsub(client):
            p = client.pubsub()
            p.subscribe("reclaim-test:kept")
            KEEP.append(p)

        def test_drops_a_pubsub(client):
            client.pubsub().subscribe("reclaim-test:dropped")

        def test_closes_its_pubsub(client):
            with client.pubsub() as p:
                p.subscribe("reclaim-test:closed")
            client.echo("after")

        def test_last(client):
            for p in KEEP:
                p.close()
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=6, errors=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_a_pubsub*",
            "*test_pooled.py:27 in test_keeps_a_pubsub*",
            "*ERROR at teardown of test_drops_a_pubsub*",
            "*closed by the garbage collector*",
            "*test_pooled.py:31 in test_drops_a_pubsub*",
        ]
    )
    assert "leaks found after their test ended" not in out
    for clean in ("test_connects", "test_listens_through_the_fixture", "test_closes_its_pubsub"):
        assert f"teardown of {clean}" not in out


# -- urllib3 ----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool keeps the connection

    def do_GET(self) -> None:
        body = b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    """An HTTP/1.1 server on 127.0.0.1 (one thread per connection), shut down afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.block_on_close = True  # server_close() joins the connections' threads
    thread = threading.Thread(target=server.serve_forever, name="http-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_urllib3_response_never_released_is_blamed_on_its_request(leakwatch: Watch, http_port: int) -> None:
    urllib3 = pytest.importorskip("urllib3")
    with urllib3.HTTPConnectionPool("127.0.0.1", http_port, maxsize=1) as pool:
        pool.request("GET", "/")  # read whole: its connection goes back to the pool
        response = pool.urlopen("GET", "/", preload_content=False)
        at = line() - 1
        try:
            [leak] = _clients(leakwatch, http_port)
            assert program_line(leak) == at and leak.details["checked_out_of"] == "urllib3"
        finally:
            response.read()
            response.release_conn()
    assert _clients(leakwatch, http_port) == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("reused", [False, True], ids=["new-connection", "reused-connection"])
def test_urllib3_response_dropped_unread_is_closed_by_the_collector(
    leakwatch: Watch, http_port: int, reused: bool
) -> None:
    """A streamed response dropped before its end: IOBase's finalizer calls its ``close()``,
    which closes the connection it kept out of the pool. The collector's doing, at the request
    (the socket made for it, or the one it checked out), not the program's close; either way
    the connection was checked out of the pool."""
    urllib3 = pytest.importorskip("urllib3")
    with urllib3.HTTPConnectionPool("127.0.0.1", http_port, maxsize=1) as pool:
        if reused:
            pool.request("GET", "/")  # read whole: its connection goes back to the pool
        response = pool.urlopen("GET", "/", preload_content=False)
        at = line() - 1
        assert response.read(1)
        del response
        [leak] = _clients(leakwatch, http_port)
        assert leak.state == "collected" and program_line(leak) == at
        assert leak.details["checked_out_of"] == "urllib3"


@pytest.fixture
def broken_then_ok_port() -> Iterator[int]:
    """A server on 127.0.0.1 whose first connection answers with a bad status line (urllib3 retries
    on a new connection), its second with a body the client may leave unread."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        for answer in (b"HTTP/0.5 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"):
            conn, _ = server.accept()
            with conn:
                while not conn.recv(65536).endswith(b"\r\n\r\n"):
                    pass
                conn.sendall(answer)
                if answer.startswith(b"HTTP/1.1"):
                    done.wait(RUN_TIMEOUT)  # open until the client is done: it may read, or not

    thread = threading.Thread(target=serve, name="broken-then-ok")
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join()
        server.close()


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_urllib3_response_after_a_retried_error_is_not_kept_alive_by_reclaim(
    leakwatch: Watch, broken_then_ok_port: int
) -> None:
    """urllib3 keeps the error it retried after in the response's Retry history, its traceback
    going through the frame that called ``urlopen()``: reclaim's wrapper, which kept the response
    in a local. A response the program dropped stayed alive, its socket open, as long as the error
    did (a log record of pytest's caplog, to the test's end): reported open, never collected."""
    urllib3 = pytest.importorskip("urllib3")
    with urllib3.HTTPConnectionPool("127.0.0.1", broken_then_ok_port, maxsize=1) as pool:
        response = pool.urlopen("GET", "/", preload_content=False, retries=urllib3.Retry(read=1))
        at = line() - 1
        errors = [entry.error for entry in response.retries.history]  # kept, as a log record does
        assert errors and response.status == 200
        dropped = weakref.ref(response)
        del response
        assert dropped() is None
        [leak] = _clients(leakwatch, broken_then_ok_port)
        assert leak.state == "collected" and program_line(leak) == at


def _clients(watch: Watch, port: int) -> list[Any]:
    """The client sockets to the server on *port* still open (not the server's own)."""
    return [leak for leak in watch.leaks("socket") if leak.details.get("peer") == f"127.0.0.1:{port}"]


# -- SQLAlchemy -------------------------------------------------------------------------------


@pytest.fixture
def sqlite_engine(tmp_path: Any) -> Iterator[Any]:
    """A SQLAlchemy engine with a QueuePool over a sqlite3 file database, disposed afterwards."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}", poolclass=sqlalchemy.pool.QueuePool)
    yield engine
    engine.dispose()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_sqlalchemy_connection_never_closed_is_blamed_on_its_connect_not_on_the_first(
    leakwatch: Watch, sqlite_engine: Any
) -> None:
    """Kept, the DB-API connection is blamed on ``engine.connect()``; closed, it is the pool's
    again, blamed on the checkout that first connected it; the pool disposed, nothing is left."""
    from sqlalchemy import text

    with sqlite_engine.connect() as conn:
        first = line() - 1
        conn.execute(text("select 1"))
    assert idle_in_engine(leakwatch, "sqlite3") == first
    kept = sqlite_engine.connect()
    at = line() - 1
    try:
        leak = kept_out(leakwatch, "sqlite3")
        assert program_line(leak) == at
        assert "never given back (close() its Connection or Session, or a with-block)" in leak.description
    finally:
        kept.close()
    assert idle_in_engine(leakwatch, "sqlite3") == first
    sqlite_engine.dispose()
    assert leakwatch.leaks() == []


def test_an_engine_and_its_connection_a_test_never_closed_are_reported_once(
    pytester: pytest.Pytester,
) -> None:
    """An ``engine`` fixture never disposed and a ``connection`` fixture never closed (as
    SQLAlchemy-Utils' conftest has them): the connection was the test's leak, the engine none
    (it held nothing idle), and at the session's end the engine was reported again, holding the
    connection that had gone back to its pool. One entry now, the engine holding it."""
    pytest.importorskip("sqlalchemy")
    pytester.makepyfile(
        test_double="""
        import pytest
        import sqlalchemy as sa

        @pytest.fixture
        def engine(tmp_path):
            return sa.create_engine(f"sqlite:///{tmp_path}/x.db")

        @pytest.fixture
        def connection(engine):
            return engine.connect()

        def test_query(connection):
            assert connection.execute(sa.select(sa.literal(1))).scalar() == 1

        def test_other():
            pass
        """
    )
    result = reclaim_pytest(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*this test leaked 1 resource*",
            "sqlalchemy.Engine sqlite:///* not closed (engine.dispose())",
            "  acquired at test_double.py:6 in engine",
            "  holds sqlite3 *, checked out of a SQLAlchemy engine's pool and never given back*",
        ]
    )
    assert "leaks found after their test ended" not in result.stdout.str()


def test_a_checkout_reported_then_given_back_to_a_disposed_pool_is_not_reported_again(
    pytester: pytest.Pytester,
) -> None:
    """records' ``query()`` leaves its connection checked out; the test's check reports it, its
    engine's fixture disposes the pool, and the connection, dropped later, goes back to that
    pool, blamed as it was before the checkout: the session's end reported it again, counted
    twice. It is the same leak."""
    pytest.importorskip("sqlalchemy")
    pytester.makepyfile(
        test_twice="""
        import pytest
        import sqlalchemy

        KEEP = []

        @pytest.fixture
        def engine(tmp_path):
            made = sqlalchemy.create_engine(f"sqlite:///{tmp_path}/x.db")
            yield made
            made.dispose()

        def test_leak(engine):
            KEEP.append(engine.connect())
            KEEP[-1].exec_driver_sql("select 1")

        def test_next():
            KEEP.clear()
        """
    )
    result = reclaim_pytest(pytester, "-p", "no:randomly", "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=2, errors=1)
    assert "leaks found after their test ended" not in result.stdout.str(), result.stdout.str()
    assert json.loads((pytester.path / "leaks.json").read_text())["count"] == 1


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["kept", "dropped"])
def test_sqlalchemy_engine_never_disposed_is_one_entry_at_create_engine_holding_its_connections(
    leakwatch: Watch, tmp_path: Any, dropped: bool
) -> None:
    """The connections an engine's pool keeps were reported each at the checkout that first
    made it (dropped, as sqlite3 connections the collector closed): the engine is the entry, at
    ``create_engine()``, and ``dispose()`` is what releases them."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}", poolclass=sqlalchemy.pool.QueuePool)
    made = line() - 1
    with engine.connect() as first, engine.connect() as second:
        connected = line() - 1
        first.execute(sqlalchemy.text("select 1"))
        second.execute(sqlalchemy.text("select 1"))
    if dropped:
        del engine, first, second
        gc.collect()  # an engine is a reference cycle
    leak = leakwatch.one("sqlalchemy")
    assert [found.kind for found in leakwatch.leaks()] == ["sqlalchemy"]
    assert program_line(leak) == made and leak.frames[0].lineno == made  # the program's line first
    url = f"sqlite:///{tmp_path / 'app.db'}"
    assert leak.description == f"sqlalchemy.Engine {url} not closed (engine.dispose())"
    assert leak.details == {"class": "sqlalchemy.Engine", "target": url}
    assert leak.state == ("collected" if dropped else "open")
    assert [(held.kind, held.state, program_line(held)) for held in leak.holds] == [
        ("sqlite3", leak.state, connected)
    ] * 2
    if not dropped:
        engine.dispose()
        assert leakwatch.leaks() == []
        return
    # Not "not closed (engine.dispose()) (closed by the garbage collector, not the program)",
    # which read as a contradiction.
    head = leakwatch.tracker.report([leak]).to_text().splitlines()[0]
    assert head == (
        f"sqlalchemy.Engine {url} not closed (engine.dispose()); "
        "left to the garbage collector, which closed it"
    )


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_engine_connected_again_after_its_dispose_is_said_to_be(leakwatch: Watch, tmp_path: Any) -> None:
    """SQLAlchemy's test harness disposes a test's engines, then alembic's ``tearDown`` connected
    again on one (``dispose()`` leaves a new pool behind, which connects on use): "not closed
    (engine.dispose())" read as if nothing had disposed it. The connection under it has the line
    that connected again."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(f"sqlite:///{tmp_path / 'app.db'}", poolclass=sqlalchemy.pool.QueuePool)
    made = line() - 1
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("select 1"))
    engine.dispose()
    assert leakwatch.leaks() == []
    with engine.connect() as conn:
        again = line() - 1
        conn.execute(sqlalchemy.text("select 1"))
    leak = leakwatch.one("sqlalchemy")
    assert program_line(leak) == made
    assert leak.description == (
        f"sqlalchemy.Engine sqlite:///{tmp_path / 'app.db'} disposed, then connected again and not"
        " disposed since (engine.dispose())"
    )
    assert [(held.kind, program_line(held)) for held in leak.holds] == [("sqlite3", again)]
    engine.dispose()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_sqlalchemy_engine_tracked_still_takes_the_keyword_arguments_its_init_names(
    leakwatch: Watch, tmp_path: Any
) -> None:
    """``create_engine()`` hands an ``Engine`` the keyword arguments its ``__init__``'s code names
    (``execution_options``, ``query_cache_size``) and rejects those left over: tracked, its
    ``__init__`` still names them, and the engine is still reported at ``create_engine()``."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine(
        f"sqlite:///{tmp_path / 'app.db'}",
        poolclass=sqlalchemy.pool.QueuePool,
        execution_options={"isolation_level": "AUTOCOMMIT"},
        query_cache_size=10,
    )
    made = line() - 6
    with engine.connect() as conn:
        assert conn.get_execution_options()["isolation_level"] == "AUTOCOMMIT"
        assert conn.execute(sqlalchemy.text("select 1")).scalar() == 1
    leak = leakwatch.one("sqlalchemy")
    assert program_line(leak) == made
    engine.dispose()
    assert leakwatch.leaks() == []


def test_a_traceback_through_a_tracked_clients_init_names_no_line_of_reclaims_it_did_not_run(
    leakwatch: Watch,
) -> None:
    """The stand-in that gives a tracked ``__init__`` its original's parameters was compiled as
    reclaim's ``_holders.py``: a plain traceback (doctest's) showed that file's line 2, its
    docstring, as if it had run. It is named as generated code."""
    import traceback

    from reclaim.leaks import _holders

    requests = pytest.importorskip("requests")
    with pytest.raises(AttributeError) as raised:
        requests.Session.__init__(None)  # fails inside requests' own __init__
    frames = traceback.extract_tb(raised.value.__traceback__)
    assert [(f.filename, f.lineno) for f in frames if f.filename == _holders.__file__ and f.lineno < 5] == []
    assert any(f.filename.startswith("<reclaim-generated stand-in for Session.__init__,") for f in frames)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_sqlalchemy_checkouts_inside_no_leaks_are_its_leaks_only_when_kept(
    leakwatch: Watch, sqlite_engine: Any
) -> None:
    """A connection made before the block and checked out inside it: given back (a with-block, a
    Session closed), nothing; kept, the block's leak at its checkout."""
    from sqlalchemy import text
    from sqlalchemy.orm import Session

    with sqlite_engine.connect() as conn:
        conn.execute(text("select 1"))
    with reclaim.no_leaks():
        with sqlite_engine.connect() as conn:
            conn.execute(text("select 1"))
        with Session(sqlite_engine) as session:
            session.execute(text("select 1"))
    with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
        kept = sqlite_engine.connect()
        at = line() - 1
    try:
        [leak] = caught.value.leaks
        assert leak.kind == "sqlite3" and program_line(leak) == at
    finally:
        kept.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_sqlalchemy_asyncio_connection_never_closed_is_blamed_on_its_awaited_connect(
    leakwatch: Watch, tmp_path: Any
) -> None:
    """Under the asyncio engine the checkout runs in a greenlet: the blame still reaches the
    program's ``await engine.connect()``. aiosqlite's worker thread is no leak of its own."""
    pytest.importorskip("aiosqlite")
    pytest.importorskip("greenlet")
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def main() -> None:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
        try:
            async with engine.connect() as conn:
                first = line() - 1
                await conn.execute(text("select 1"))
            kept = await engine.connect()
            at = line() - 1
            try:
                assert program_line(kept_out(leakwatch, "sqlite3")) == at
                assert leakwatch.leaks("thread") == []
            finally:
                await kept.close()
            assert idle_in_engine(leakwatch, "sqlite3") == first
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "asyncio"])
def test_sqlalchemy_psycopg_connection_never_closed_is_blamed_on_its_connect(
    leakwatch: Watch, postgres: Any, asynchronous: bool
) -> None:
    pytest.importorskip("psycopg")
    import sqlalchemy
    from sqlalchemy.ext.asyncio import create_async_engine

    url = sqlalchemy_url("postgresql+psycopg", postgres)
    if not asynchronous:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                first = line() - 1
                conn.execute(sqlalchemy.text("select 1"))
            kept = engine.connect()
            at = line() - 1
            try:
                assert program_line(kept_out(leakwatch, "psycopg")) == at
            finally:
                kept.close()
            assert idle_in_engine(leakwatch, "psycopg") == first
        finally:
            engine.dispose()
        assert leakwatch.leaks() == []
        return

    async def main() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                first = line() - 1
                await conn.execute(sqlalchemy.text("select 1"))
            kept = await engine.connect()
            at = line() - 1
            try:
                assert program_line(kept_out(leakwatch, "psycopg")) == at
            finally:
                await kept.close()
            assert idle_in_engine(leakwatch, "psycopg") == first
        finally:
            await engine.dispose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.mariadb
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["kept", "dropped"])
def test_sqlalchemy_engine_on_pymysql_holds_its_connections_each_holding_its_socket(
    leakwatch: Watch, mariadb: Any, dropped: bool
) -> None:
    """A PyMySQL connection is an entry of its own, holding its socket: one an engine's pool keeps
    idle is listed under the engine (the entry is still the engine, at ``create_engine()``), and
    so is one checked out and never given back, at the ``connect()`` that took it, when the
    engine holds nothing else."""
    pytest.importorskip("pymysql")
    import sqlalchemy

    url = sqlalchemy_url("mysql+pymysql", mariadb)
    engine = sqlalchemy.create_engine(url)
    made = line() - 1
    with engine.connect() as conn:
        connected = line() - 1
        conn.execute(sqlalchemy.text("select 1"))
    kept = engine.connect()
    taken = line() - 1
    try:
        leak = kept_out(leakwatch, "pymysql")
        assert program_line(leak) == taken
        assert [held.kind for held in leak.holds] == ["socket"]
    finally:
        kept.close()
    if dropped:
        del engine, conn, kept
        gc.collect()  # an engine is a reference cycle
    [leak] = leakwatch.leaks()
    state = "collected" if dropped else "open"
    assert (leak.kind, program_line(leak), leak.state) == ("sqlalchemy", made, state)
    [held] = leak.holds
    assert (held.kind, held.state, program_line(held)) == ("pymysql", leak.state, connected)
    if not dropped:
        assert [part.kind for part in held.holds] == ["socket"]
        engine.dispose()
        assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("driver", ["psycopg", "psycopg2"])
def test_sqlalchemy_engine_dropped_holds_the_psycopg_connections_its_pool_kept(
    leakwatch: Watch, postgres: Any, driver: str
) -> None:
    """An engine dropped undisposed dies in a reference cycle with the connections its pool keeps,
    whose records wait for their own ``__del__`` (psycopg's decides whether it is a leak): the
    leak is still the engine, at ``create_engine()``, holding them, not a bare connection inside
    SQLAlchemy (as it was for psycopg and psycopg2, in the databases package's suite)."""
    pytest.importorskip(driver)
    import sqlalchemy

    def work() -> int:
        engine = sqlalchemy.create_engine(sqlalchemy_url(f"postgresql+{driver}", postgres))
        made = line() - 1
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        return made

    made = work()
    gc.collect()  # an engine is a reference cycle
    [leak] = leakwatch.leaks()
    assert (leak.kind, program_line(leak), leak.state) == ("sqlalchemy", made, "collected")
    assert [(held.kind, held.state) for held in leak.holds] == [(driver, "collected")]


def test_handing_over_looks_no_further_once_every_resource_left_open_is_found(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the pytest plugin asks after a test that left something (see hand_over_held) is
    searched for only until found: SQLAlchemy's session engine reaches the idle connection the
    first test of a class opens in a few objects, and its compiled-statement cache in a hundred
    thousand more, which each such test of its suite looked through. An engine the test
    disposed is closed, and not searched for."""
    import sqlite3

    sqlalchemy = pytest.importorskip("sqlalchemy")
    from reclaim.leaks import _tracker

    searches: list[Any] = []

    class Search(_tracker._Search):  # keeps each search, to tell how much it looked at
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            searches.append(self)

    monkeypatch.setattr(_tracker, "_Search", Search)
    with context("reclaim-test: connects"):
        disposed = sqlalchemy.create_engine("sqlite://", poolclass=sqlalchemy.pool.QueuePool)
        with disposed.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        disposed.dispose()  # its record stays open until a check finds it disposed
        kept = sqlite3.connect(":memory:")
    holder = [kept, [[] for _ in range(10_000)]]  # the connection first, then many more objects
    try:
        assert leakwatch.tracker.hand_over_held("reclaim-test: connects", {"fixture": holder}) == 1
        [search] = searches
        assert _tracker.HOLDER_SEARCH - search.budget == 1  # the holder itself, nothing past it
    finally:
        kept.close()
    assert leakwatch.leaks() == []


@pytest.mark.parametrize(
    ("poolclass", "deep"),
    [("QueuePool", False), ("QueuePool", True), ("SingletonThreadPool", True)],
    ids=["near", "deep", "deep-singleton"],
)
def test_an_engine_handed_over_takes_the_connections_its_pool_keeps_however_deep_they_are(
    leakwatch: Watch, tmp_path: Any, poolclass: str, deep: bool
) -> None:
    """What the pytest plugin asks at a test's end (see hand_over_held): an engine a module-level
    object keeps is that object's, and so are the connections resting in its pool, though the
    search ran out of objects to look at between the engine and them. SQLAlchemy's suite keeps the
    engines its tests make behind the session engine's caches: such an engine was handed over,
    and its connection reported as the test's leak, on its own. A connection checked out and kept
    stays the test's, though a SingletonThreadPool (SQLAlchemy's default for sqlite in memory)
    references it too."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    from reclaim.leaks import _tracker

    queue = poolclass == "QueuePool"
    with context("reclaim-test: connects"):
        url = f"sqlite:///{tmp_path / 'app.db'}"
        engine = sqlalchemy.create_engine(url, poolclass=getattr(sqlalchemy.pool, poolclass))
        kept = engine.connect()  # checked out and kept: the test's
        kept.execute(sqlalchemy.text("select 1"))
        if queue:  # a second connection, given back: resting in the pool
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))
    # The engine first; deep, then more objects than the search looks at in all, met before its pool.
    registry = [engine, [[] for _ in range(_tracker.HOLDER_SEARCH if deep else 0)]]
    try:
        holders = {"module global app.registry": registry}
        assert leakwatch.tracker.hand_over_held("reclaim-test: connects", {}, holders) == (2 if queue else 1)
        [leak] = leakwatch.leaks(context="reclaim-test: connects")
        assert leak.kind == "sqlite3" and leak.details["checked_out_of"] == "SQLAlchemy"
        found = leakwatch.leaks(context="module global app.registry")
        assert [(leak.kind, [part.kind for part in leak.holds]) for leak in found] == (
            [("sqlalchemy", ["sqlite3"])] if queue else []
        )
    finally:
        kept.close()
        engine.dispose()
    assert leakwatch.leaks() == []


def _only_the_keeper_leaked(result: pytest.RunResult, site: str, keeper: str, clean: tuple[str, ...]) -> None:
    """Of a run of four tests on a session fixture's client, only *keeper* failed, for what it
    kept at *site*; nothing was left to the end, and the others' teardowns passed."""
    result.assert_outcomes(passed=4, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines([f"*ERROR at teardown of {keeper}*", f"*{site} in {keeper}*"])
    assert "leaks found after their test ended" not in out
    for name in clean:
        assert f"teardown of {name}" not in out


@pytest.mark.parametrize("poolclass", ["QueuePool", "SingletonThreadPool"])
def test_under_pytest_a_sqlalchemy_checkout_kept_is_the_tests_not_the_session_engines(
    pytester: pytest.Pytester, tmp_path: Any, poolclass: str
) -> None:
    """A session fixture's engine connects in one test; a later test's ``engine.connect()``
    kept fails that test at its own line; the connections resting in the pool are the fixture's.

    A ``SingletonThreadPool`` (SQLAlchemy's default for an in-memory SQLite database) keeps
    every connection it made in its set, the one checked out too: that reference is the pool's
    record of what it lent, not a hold, and the test that kept the checkout is blamed all the same.
    """
    pytest.importorskip("sqlalchemy")
    pytester.makepyfile(
        test_engine=f"""
        import pytest
        import sqlalchemy
        from sqlalchemy.orm import Session

        KEEP = []

        @pytest.fixture(scope="session")
        def engine():
            e = sqlalchemy.create_engine(
                "sqlite:///" + {str(tmp_path / "app.db")!r}, poolclass=sqlalchemy.pool.{poolclass}
            )
            yield e
            e.dispose()

        def test_connects(engine):
            with engine.connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))

        def test_keeps_a_connection(engine):
            KEEP.append(engine.connect())

        def test_closes_its_session(engine):
            with Session(engine) as session:
                session.execute(sqlalchemy.text("select 1"))

        def test_last(engine):
            for conn in KEEP:
                conn.close()
        """
    )
    result = reclaim_pytest(pytester)
    _only_the_keeper_leaked(
        result,
        "test_engine.py:20",
        "test_keeps_a_connection",
        ("test_connects", "test_closes_its_session", "test_last"),
    )


def test_under_pytest_what_an_engine_made_at_session_start_keeps_idle_is_not_the_tests_leak(
    pytester: pytest.Pytester, tmp_path: Any
) -> None:
    """An engine a plugin makes at session start, outside any fixture (SQLAlchemy's own test
    plugin keeps ``testing.db`` so), connects in the first test that uses it: the connection resting
    in its pool is the engine's, not that test's; one never given back is still the test's, and
    an engine never disposed is reported at the end, holding what its pool keeps."""
    pytest.importorskip("sqlalchemy")
    pytester.makeconftest(
        f"""
        import pytest
        import sqlalchemy

        ENGINES = {{}}

        def pytest_sessionstart(session):
            for name in ("tidy", "forgotten"):
                ENGINES[name] = sqlalchemy.create_engine(
                    "sqlite:///" + {str(tmp_path)!r} + "/" + name + ".db",
                    poolclass=sqlalchemy.pool.QueuePool,
                )

        @pytest.fixture(autouse=True)
        def check_database():
            yield
            with ENGINES["tidy"].connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))

        def pytest_sessionfinish(session):
            ENGINES["tidy"].dispose()
        """
    )
    pytester.makepyfile(
        test_engine="""
        import sqlalchemy
        from conftest import ENGINES

        KEEP = []

        def test_first():
            pass

        def test_uses_the_forgotten_one():
            with ENGINES["forgotten"].connect() as conn:
                conn.execute(sqlalchemy.text("select 1"))

        def test_keeps_a_connection():
            KEEP.append(ENGINES["tidy"].connect())

        def test_last():
            for conn in KEEP:
                conn.close()
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=4, errors=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_a_connection*",
            "*test_engine.py:14 in test_keeps_a_connection*",
            "*leaks found after their test ended*",
            "*sqlalchemy.Engine sqlite:* not closed (engine.dispose())*",
        ]
    )
    for clean in ("test_first", "test_uses_the_forgotten_one", "test_last"):
        assert f"teardown of {clean}" not in out
    assert out.count(" not closed (engine.dispose())") == 1


def test_under_pytest_a_peewee_pool_connection_a_test_never_gives_back_is_that_tests(
    pytester: pytest.Pytester, tmp_path: Any
) -> None:
    """A module's ``PooledSqliteDatabase``: the connection one test checks out and gives back is
    the pool's; the same connection checked out again by a later test and never given back was
    "held by module global app.db (kept from" the first test, the later one passing. It is the
    later test's leak now, at its ``connect()``."""
    pytest.importorskip("playhouse.pool")
    pytester.makepyfile(
        app=f"""
        from playhouse.pool import PooledSqliteDatabase

        db = PooledSqliteDatabase({str(tmp_path / "app.db")!r}, max_connections=4)
        """,
        test_pool="""
        import app

        def test_gives_it_back():
            with app.db:
                app.db.execute_sql("select 1")

        def test_keeps_it():
            app.db.connect()
            app.db.execute_sql("select 1")

        def test_last():
            app.db.close()
            app.db.close_all()
        """,
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_it*",
            "sqlite3 *app.db, checked out of a peewee pool and never given back (db.close(), *",
            "  acquired at test_pool.py:8 in test_keeps_it",
        ]
    )
    out = result.stdout.str()
    assert "teardown of test_gives_it_back" not in out and "held by" not in out


def test_under_pytest_what_an_engine_kept_on_the_config_keeps_idle_is_not_the_tests_leak(
    pytester: pytest.Pytester,
) -> None:
    """An engine made in ``pytest_configure``, before tracking starts, and kept on the config (or
    in its stash): the connection its first user leaves resting in its pool is the engine's, not
    that test's; never disposed, it is reported at the end, held by that attribute."""
    pytest.importorskip("sqlalchemy")
    pytester.makeconftest(
        """
        import pytest
        import sqlalchemy

        FORGOTTEN = pytest.StashKey()

        def pytest_configure(config):
            config.engine = sqlalchemy.create_engine("sqlite://")
            config.stash[FORGOTTEN] = sqlalchemy.create_engine("sqlite://")

        @pytest.fixture(autouse=True)
        def check_database(request):
            yield
            for engine in (request.config.engine, request.config.stash[FORGOTTEN]):
                with engine.connect() as conn:
                    conn.exec_driver_sql("select 1")

        def pytest_sessionfinish(session):
            session.config.engine.dispose()
        """
    )
    pytester.makepyfile(
        test_engine="""
        def test_first():
            pass

        def test_second():
            pass
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "at teardown of" not in out, out
    result.stdout.fnmatch_lines(
        [
            "*leaks found after their test ended*",
            "held by pytest config attribute stash*(kept from test_engine.py::test_first):",
            "sqlite3 :memory:",
        ]
    )
    assert out.count("sqlite3 :memory:") == 1, out


# -- httpx (httpcore) -------------------------------------------------------------------------


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpx_streamed_response_never_closed_is_blamed_on_its_send(leakwatch: Watch, http_port: int) -> None:
    """Inside ``no_leaks()``: a response read whole gives its connection back, nothing; one sent
    with ``stream=True`` and kept open is the block's leak, its socket at the ``send()``."""
    httpx = pytest.importorskip("httpx")
    url = f"http://127.0.0.1:{http_port}/"
    with httpx.Client() as client:
        client.get(url)  # connects, and gives the connection back
        with reclaim.no_leaks():
            client.get(url)
            with client.stream("GET", url) as response:
                response.read()
        with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
            kept = client.send(client.build_request("GET", url), stream=True)
            at = line() - 1
        try:
            [leak] = caught.value.leaks
            assert leak.kind == "socket" and program_line(leak) == at
            assert leak.details["checked_out_of"] == "httpcore"
        finally:
            kept.read()  # read whole, its connection can serve the next request
            kept.close()
        with reclaim.no_leaks():
            client.get(url)
    assert _clients(leakwatch, http_port) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpx_async_streamed_response_never_closed_is_blamed_on_its_send(
    leakwatch: Watch, http_port: int
) -> None:
    httpx = pytest.importorskip("httpx")
    url = f"http://127.0.0.1:{http_port}/"

    async def main() -> None:
        async with httpx.AsyncClient() as client:
            await client.get(url)
            with reclaim.no_leaks():
                await client.get(url)
            with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
                kept = await client.send(client.build_request("GET", url), stream=True)
                at = line() - 1
            try:
                [leak] = caught.value.leaks
                assert leak.kind == "socket" and program_line(leak) == at
            finally:
                await kept.aread()
                await kept.aclose()
            with reclaim.no_leaks():
                await client.get(url)

    asyncio.run(main())
    assert _clients(leakwatch, http_port) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpx_streamed_response_through_a_forwarding_proxy_is_blamed_on_its_send(
    leakwatch: Watch, http_port: int
) -> None:
    """Through an HTTP proxy the socket is one connection further down; a response kept open is
    the ``send()``'s all the same, not the earlier request's that connected to the proxy."""
    httpx = pytest.importorskip("httpx")
    url = f"http://127.0.0.1:{http_port}/"
    # Bytes passed through stand in for a forwarding proxy: the test server answers a request
    # line in absolute form (GET http://host:port/) like any other.
    with FaultProxy(("127.0.0.1", http_port)) as proxy:
        with httpx.Client(proxy=f"http://127.0.0.1:{proxy.port}") as client:
            client.get(url)  # connects to the proxy, and gives the connection back
            with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
                kept = client.send(client.build_request("GET", url), stream=True)
                at = line() - 1
            try:
                [leak] = caught.value.leaks
                assert leak.kind == "socket" and program_line(leak) == at
                assert leak.details["checked_out_of"] == "httpcore"
            finally:
                kept.read()
                kept.close()
            with reclaim.no_leaks():
                client.get(url)
        assert _clients(leakwatch, proxy.port) == []


def test_under_pytest_an_httpx_response_kept_is_the_tests_not_the_session_clients(
    pytester: pytest.Pytester, http_port: int
) -> None:
    """A session fixture's httpx client connects in one test; a later test's streamed response
    kept open fails that test at its ``send()``, though the client's pool lists the connection
    among its own; the connection resting in the pool is the fixture's."""
    pytest.importorskip("httpx")
    pytester.makepyfile(
        test_client=f"""
        import httpx
        import pytest

        URL = "http://127.0.0.1:{http_port}/"
        KEEP = []

        @pytest.fixture(scope="session")
        def client():
            with httpx.Client() as c:
                yield c

        def test_connects(client):
            client.get(URL)

        def test_keeps_a_response(client):
            KEEP.append(client.send(client.build_request("GET", URL), stream=True))

        def test_reads_its_response(client):
            with client.stream("GET", URL) as response:
                response.read()

        def test_last(client):
            for response in KEEP:
                response.close()
        """
    )
    result = reclaim_pytest(pytester)
    _only_the_keeper_leaked(
        result,
        "test_client.py:16",
        "test_keeps_a_response",
        ("test_connects", "test_reads_its_response", "test_last"),
    )
