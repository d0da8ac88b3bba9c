"""Database clients' own pools under the leak tracker, against the real servers: psycopg_pool's
(sync and asyncio) and asyncpg's. A pool closed reports nothing; one never closed is one leak at
the line that made it, not its connections, threads and tasks at the library's lines; a
connection ``getconn()`` or ``acquire()`` kept is blamed on that line. asyncpg's own connections
too. redis.asyncio's clients, as its docs use them.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
from typing import Any

import pytest

from _dbserver import maria_kwargs, pg_conninfo
from _leakhelp import Watch, assert_site, ignore_gc_warnings, leakwatch, line, reclaim_pytest

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytest_plugins = ["pytester"]


# -- psycopg_pool -----------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "asyncio"])
def test_psycopg_pool_never_closed_is_one_leak_at_its_line_and_a_kept_getconn_its_own(
    leakwatch: Watch, postgres: Any, asynchronous: bool
) -> None:
    """Its workers, scheduler and connections are its own; a connection ``close()`` hands back
    (``close_returns``) is the pool's again, no untracked descriptor; ``getconn()`` without
    ``putconn()`` is blamed on the ``getconn()``."""
    psycopg_pool = pytest.importorskip("psycopg_pool")
    kwargs = pg_conninfo(postgres)
    found: list[Any] = []

    if not asynchronous:
        options = {"min_size": 2, "open": True, "close_returns": True, "name": "writer"}
        pool = psycopg_pool.ConnectionPool(kwargs=kwargs, **options)
        made = line() - 1
        pool.wait()
        with pool.connection() as conn:
            conn.execute("select 1")
        pool.getconn().close()  # back to the pool
        kept = pool.getconn()
        at = line() - 1
        found = leakwatch.leaks()
        pool.putconn(kept)
        pool.close()
    else:

        async def main() -> tuple[int, int]:
            mark = leakwatch.tracker.snapshot()  # after the event loop and this task began
            pool = psycopg_pool.AsyncConnectionPool(kwargs=kwargs, min_size=2, open=False, name="writer")
            await pool.open(wait=True)
            made = line() - 1
            async with pool.connection() as conn:
                await conn.execute("select 1")
            kept = await pool.getconn()
            at = line() - 1
            found.extend(leakwatch.tracker.leaks(mark))
            await pool.putconn(kept)
            await pool.close()
            return made, at

        made, at = asyncio.run(main())
    by_kind = {(leak.kind, leak.details.get("class")): leak for leak in found}
    assert len(found) == 2, [leak.headline() for leak in found]
    name = "AsyncConnectionPool" if asynchronous else "ConnectionPool"
    assert_site(by_kind["psycopg", f"psycopg_pool.{name}"], made)
    kept_leak = by_kind["psycopg", None]
    assert_site(kept_leak, at)
    assert kept_leak.details["checked_out_of"] == "psycopg_pool"
    assert kept_leak.details["pool_name"] == "writer"  # which pool: two of one database differ by it
    assert (
        "checked out of a psycopg_pool pool named 'writer' and never given back"
        " (putconn(), or a with pool.connection() block)"
    ) in kept_leak.description
    assert leakwatch.leaks() == []


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_psycopg_pool_dropped_unclosed_is_the_collectors_at_its_line(leakwatch: Watch, postgres: Any) -> None:
    psycopg_pool = pytest.importorskip("psycopg_pool")
    pool = psycopg_pool.NullConnectionPool(kwargs=pg_conninfo(postgres), open=True)
    made = line() - 1
    with pool.connection() as conn:
        conn.execute("select 1")
    del pool
    gc.collect()
    leak = leakwatch.one("psycopg")
    assert leak.state == "collected" and leak.details["class"] == "psycopg_pool.NullConnectionPool"
    assert_site(leak, made)


@pytest.mark.postgres
def test_under_pytest_a_session_pools_parts_are_its_own_and_a_test_is_blamed_for_its_leaks(
    pytester: pytest.Pytester, postgres: Any
) -> None:
    """A session fixture's pool, used by ``connection()`` and ``getconn()``/``putconn()``, fails
    no test; a test keeping a ``getconn()`` fails at that line, one leaving a pool open at the
    line that made it, each with one leak."""
    # Not imported here: pytester drops from sys.modules what a test imported, and importing
    # psycopg's C extension again crashes the interpreter (see the asyncpg test below).
    if importlib.util.find_spec("psycopg_pool") is None:
        pytest.skip("psycopg_pool is not installed")
    pytester.makepyfile(
        test_pool=f"""
        import psycopg_pool
        import pytest

        KWARGS = {pg_conninfo(postgres)!r}
        KEEP = []

        @pytest.fixture(scope="session")
        def pool():
            with psycopg_pool.ConnectionPool(kwargs=KWARGS, min_size=1, max_size=3) as p:
                yield p

        def test_borrows(pool):
            with pool.connection() as a, pool.connection() as b:
                b.execute("select 1")
            conn = pool.getconn()
            pool.putconn(conn)

        def test_keeps(pool):
            KEEP.append(pool.getconn())

        def test_leaves_a_pool_open():
            KEEP.append(psycopg_pool.ConnectionPool(kwargs=KWARGS, min_size=1, open=True))

        def test_last(pool):
            pool.putconn(KEEP[0])
            KEEP[1].close()
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps*",
            "*this test leaked 1 resource*",
            "*psycopg connection*",
            "*test_pool.py:19 in test_keeps*",
            "*ERROR at teardown of test_leaves_a_pool_open*",
            "*this test leaked 1 resource*",
            "*psycopg_pool.ConnectionPool 'pool-2' not closed*",
            "*test_pool.py:22 in test_leaves_a_pool_open*",
        ]
    )
    out = result.stdout.str()
    assert "untracked-fd" not in out and "leaks found after their test ended" not in out


# -- asyncpg ----------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_asyncpg_pool_never_closed_is_one_leak_at_its_line(leakwatch: Watch, postgres: Any) -> None:
    """Not its sockets at asyncpg's lines; dropped, the garbage collector's. One closed or
    terminated reports nothing."""
    asyncpg = pytest.importorskip("asyncpg")
    kwargs = _asyncpg_kwargs(postgres)

    async def main() -> tuple[Any, int]:
        async with asyncpg.create_pool(**kwargs, min_size=2) as closed:
            await closed.fetchval("select 1")
        (await asyncpg.create_pool(**kwargs, min_size=1)).terminate()
        pool = await asyncpg.create_pool(**kwargs, min_size=2)
        made = line() - 1
        async with pool.acquire() as conn:
            await conn.fetchval("select 1")
        return pool, made

    pool, made = asyncio.run(main())
    leak = leakwatch.one("asyncpg")
    assert leak.state == "open" and leak.details["class"] == "asyncpg.Pool"
    assert_site(leak, made)
    assert len(leakwatch.leaks()) == 1, [found.headline() for found in leakwatch.leaks()]
    del pool
    gc.collect()
    [leak] = leakwatch.leaks()
    assert leak.kind == "asyncpg" and leak.state == "collected"
    assert_site(leak, made)


def _run_on_a_loop_left_open(loop: str, main: Any) -> None:
    """Run ``main()`` on a new loop of *loop* ("asyncio" or "uvloop"), open while its checks run
    (uvloop's ``close()`` closes every connection on it), closed afterwards."""
    factory = asyncio.new_event_loop if loop == "asyncio" else pytest.importorskip("uvloop").new_event_loop
    running = factory()
    try:
        running.run_until_complete(main())
    finally:
        running.close()


def _asyncpg_kwargs(postgres: Any) -> dict[str, Any]:
    return {
        "host": postgres.host,
        "port": postgres.port,
        "user": postgres.user,
        "password": postgres.password or None,
        "database": postgres.database,
    }


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_asyncpg_connection_never_closed_is_one_leak_at_its_line(leakwatch: Watch, postgres: Any) -> None:
    """Not its socket at asyncpg's line; dropped, the garbage collector's. One closed or
    terminated reports nothing, nor do a pool's connections."""
    asyncpg = pytest.importorskip("asyncpg")
    kwargs = _asyncpg_kwargs(postgres)

    async def main() -> tuple[Any, int]:
        await (await asyncpg.connect(**kwargs)).close()
        (await asyncpg.connect(**kwargs)).terminate()
        async with asyncpg.create_pool(**kwargs, min_size=1, connect=asyncpg.connect) as pool:
            await pool.fetchval("select 1")
        conn = await asyncpg.connect(**kwargs)
        made = line() - 1
        await conn.fetchval("select 1")
        return conn, made

    conn, made = asyncio.run(main())
    [leak] = leakwatch.leaks()
    assert leak.kind == "asyncpg" and leak.state == "open", leak.headline()
    assert leak.details["class"] == "asyncpg.Connection"
    assert leak.description.startswith(f"connection to {postgres.host}:{postgres.port}/{postgres.database}")
    assert_site(leak, made)
    del conn
    gc.collect()
    [leak] = leakwatch.leaks()
    assert leak.kind == "asyncpg" and leak.state == "collected"
    assert_site(leak, made)


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_asyncpg_connection_and_pool_left_open_are_one_leak_each_on_either_loop(
    leakwatch: Watch, postgres: Any, loop: str
) -> None:
    """On uvloop, whose connections are recorded as their transports, a connection left open was
    reported with its socket beside it, and a pool as its bare sockets."""
    asyncpg = pytest.importorskip("asyncpg")
    kwargs = _asyncpg_kwargs(postgres)

    async def main() -> None:
        mark = leakwatch.tracker.snapshot()  # after the event loop and this task began
        conn = await asyncpg.connect(**kwargs)
        conn_line = line() - 1
        pool = await asyncpg.create_pool(**kwargs, min_size=2)
        pool_line = line() - 1
        try:
            found = sorted(leakwatch.tracker.leaks(mark), key=lambda leak: leak.frames[0].lineno)
            assert [(leak.kind, leak.frames[0].lineno) for leak in found] == [
                ("asyncpg", conn_line),
                ("asyncpg", pool_line),
            ], [leak.headline() for leak in found]
        finally:
            await conn.close()
            await pool.close()
        assert leakwatch.tracker.leaks(mark) == []

    _run_on_a_loop_left_open(loop, main)


def test_asyncpg_connect_patched_to_return_a_mock_records_no_connection(leakwatch: Watch) -> None:
    """A test that patches what connects (asyncpg's own connection-cleanup tests) gets back its
    mock, a ``Mock(spec=Connection)``: no connection, and no leak once it is dropped."""
    asyncpg = pytest.importorskip("asyncpg")
    from unittest import mock

    from asyncpg import connect_utils

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())  # after the loop and this task
        fake = mock.Mock(spec=asyncpg.Connection)
        with mock.patch.object(connect_utils, "_connect_addr", side_effect=[fake]):
            con = await asyncpg.connect(host="nowhere", user="nobody", database="none", ssl=False)
        assert con is fake
        assert window.leaks() == []

    asyncio.run(main())
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.postgres
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_asyncpg_pool_connection_never_released_is_blamed_on_its_acquire_line(
    leakwatch: Watch, postgres: Any
) -> None:
    """Released, closed or its block left: nothing; kept, it is its own leak at the ``acquire()``
    line beside the pool's, and still kept when the pool's ``close()`` gave up (it waits for it)
    and terminated it, it is reported as terminated there."""
    asyncpg = pytest.importorskip("asyncpg")
    found: list[Any] = []

    async def main() -> tuple[int, int, int]:
        mark = leakwatch.tracker.snapshot()  # after the event loop and this task began
        pool = await asyncpg.create_pool(**_asyncpg_kwargs(postgres), min_size=1, max_size=2)
        made = line() - 1
        async with pool.acquire() as conn:
            await conn.fetchval("select 1")
        await pool.release(await pool.acquire())
        await (await pool.acquire()).close()  # closed: back to the pool, which makes another
        await pool.acquire()  # kept, never released
        at = line() - 1
        entered = pool.acquire()
        await entered.__aenter__()  # an async with-block entered and never left
        entered_at = line() - 1
        found.extend(leakwatch.tracker.leaks(mark))
        with pytest.raises(TimeoutError):  # close() waits for them forever: never released
            await asyncio.wait_for(pool.close(), 0.05)
        return made, at, entered_at

    made, at, entered_at = asyncio.run(main())
    assert len(found) == 3, [leak.headline() for leak in found]
    assert found[0].details["class"] == "asyncpg.Pool"
    assert_site(found[0], made)
    for leak, where in zip(found[1:], (at, entered_at), strict=True):
        assert leak.details["class"] == "asyncpg.Connection" and "not released" in leak.description
        assert_site(leak, where)
    terminated = leakwatch.leaks()
    assert [leak.state for leak in terminated] == ["terminated", "terminated"]
    assert_site(terminated[0], at)
    assert_site(terminated[1], entered_at)
    # What it was, not the advice to release it (or use async with), which a block still
    # running when the pool closed follows (asyncpg's test_pool_close_timeout).
    for leak in terminated:
        assert "not released" not in leak.description
        assert leak.description.endswith(
            "still acquired from its pool when the pool terminated (let it go back before closing the pool)"
        )


@pytest.mark.postgres
def test_under_pytest_an_asyncpg_pool_fixtures_connections_fail_only_the_test_that_kept_one(
    pytester: pytest.Pytester, postgres: Any
) -> None:
    """A session fixture's asyncpg pool fails no test that releases what it acquires; a test
    keeping an ``acquire()`` fails at that line, one leaving an ``asyncpg.connect()`` open at its."""
    # Not imported here: pytester's teardown would drop it from sys.modules, and its extension
    # modules, imported again by a later test, crash the interpreter.
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed")
    pytester.makepyfile(
        test_apool=f"""
        import asyncio
        import asyncpg
        import pytest

        KWARGS = {_asyncpg_kwargs(postgres)!r}
        KEEP = []

        @pytest.fixture(scope="session")
        def db():
            async def make():  # asyncpg's pool takes the running loop
                return await asyncpg.create_pool(**KWARGS, min_size=1, max_size=3)
            loop = asyncio.new_event_loop()
            pool = loop.run_until_complete(make())
            yield loop, pool
            loop.run_until_complete(pool.close())
            loop.close()

        def test_borrows(db):
            loop, pool = db
            async def borrow():
                async with pool.acquire() as conn:
                    await conn.fetchval("select 1")
                await pool.release(await pool.acquire())
            loop.run_until_complete(borrow())

        def test_keeps(db):
            loop, pool = db
            KEEP.append(loop.run_until_complete(pool.acquire()))

        def test_connects(db):
            loop, pool = db
            KEEP.append(loop.run_until_complete(asyncpg.connect(**KWARGS)))

        def test_last(db):
            loop, pool = db
            loop.run_until_complete(pool.release(KEEP[0]))
            loop.run_until_complete(KEEP[1].close())
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps*",
            "*this test leaked 1 resource*",
            "*asyncpg connection to*not released to its pool*",
            "*test_apool.py:28 in test_keeps*",
            "*ERROR at teardown of test_connects*",
            "*this test leaked 1 resource*",
            "*asyncpg connection to*not closed*",
            "*test_apool.py:32 in test_connects*",
        ]
    )
    out = result.stdout.str()
    assert "untracked-fd" not in out and "leaks found after their test ended" not in out


# -- aiomysql ---------------------------------------------------------------------------------


@pytest.mark.mariadb
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aiomysql_pool_never_closed_and_waited_for_is_one_leak_at_its_line(
    leakwatch: Watch, mariadb: Any, loop: str
) -> None:
    """Its sockets were each reported at aiomysql's line that opened it; it holds its connections,
    each holding its socket. ``close()`` alone only marks the pool closing, ``wait_closed()``
    closes its connections. On uvloop too, whose connections'
    sockets are recorded by descriptor, not by the transport's id."""
    aiomysql = pytest.importorskip("aiomysql")
    run = asyncio.run if loop == "asyncio" else pytest.importorskip("uvloop").run
    kwargs = maria_kwargs(mariadb)
    kwargs["db"] = kwargs.pop("database")

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())  # after the loop and this task
        pool = await aiomysql.create_pool(minsize=2, maxsize=2, **kwargs)
        made = line() - 1
        try:
            async with pool.acquire() as conn, conn.cursor() as cur:
                await cur.execute("SELECT 1")
            leak = window.one("aiomysql")
            assert leak.description == (
                "aiomysql.Pool not closed (pool.close() and await pool.wait_closed(), or async with)"
            )
            assert leak.frames[0].lineno == made
            assert [held.kind for held in leak.holds] == ["aiomysql-connection", "aiomysql-connection"]
            assert [[part.kind for part in held.holds] for held in leak.holds] == [["socket"], ["socket"]]
            assert [found.kind for found in window.leaks()] == ["aiomysql"]
            pool.close()
            assert [found.kind for found in window.leaks()] == ["aiomysql"]
        finally:  # a pool left open hangs uvloop's loop.close(): a failed check must not
            pool.close()
            await pool.wait_closed()
        await asyncio.sleep(0)  # the transports close their sockets on the loop's next turn
        assert [found.kind for found in window.leaks() if found.kind in ("aiomysql", "socket")] == []

    run(main())


# -- redis.asyncio ----------------------------------------------------------------------------


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_redis_asyncio_clients_closed_report_nothing_one_left_open_its_command(
    leakwatch: Watch, redis_server: Any, loop: str
) -> None:
    """``aclose()``, ``async with``, a pool of the program's closed: nothing; a client left open
    is the entry, at its line, holding its connection, made at the command that connected it (as
    for sync redis-py). On uvloop too, whose connections are recorded as their transports: the
    client was not reported, its connection's socket was, alone (pottery's suite)."""
    aredis = pytest.importorskip("redis.asyncio")
    url = f"redis://{redis_server.host}:{redis_server.port}"

    async def main() -> None:
        mark = leakwatch.tracker.snapshot()  # after the event loop and this task began
        client = aredis.Redis(host=redis_server.host, port=redis_server.port)
        await client.ping()
        await client.aclose()
        async with aredis.from_url(url) as client:
            await client.set("reclaim-test:dbpools", "1")
        pool = aredis.ConnectionPool.from_url(url)
        client = aredis.Redis(connection_pool=pool)
        await client.get("reclaim-test:dbpools")
        await client.aclose()
        await pool.aclose()
        assert leakwatch.tracker.leaks(mark) == []
        client = aredis.from_url(url)
        made = line() - 1
        await client.get("reclaim-test:dbpools")
        at = line() - 1
        try:
            [leak] = leakwatch.tracker.leaks(mark)
            assert leak.kind == "redis" and leak.frames[0].lineno == made
            [held] = leak.holds
            assert held.kind == "redis-connection" and held.frames[0].lineno == at
        finally:
            await client.aclose()

    _run_on_a_loop_left_open(loop, main)
    assert leakwatch.leaks() == []
