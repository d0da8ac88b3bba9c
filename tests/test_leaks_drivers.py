"""Database drivers' connections as the leak tracker follows them, against the real servers:
psycopg 3 connections as a kind of their own, PyMySQL's and pg8000's sockets.

libpq opens the socket from C code: before this kind, a leaked connection was an untracked
descriptor with no line, and one a pool opened in a background thread was nobody's.
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path
from typing import Any

import pytest

import reclaim.db
from _dbserver import pg8000_kwargs, pg_conninfo
from _leakhelp import ClosesAtDel, Watch, assert_site, ignore_gc_warnings, leakwatch, line, python_prog

__all__ = ["leakwatch"]  # the fixture, imported for pytest

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_connection_left_open_is_reported_at_its_line_and_only_once(leakwatch: Watch, postgres: Any) -> None:
    """Reported as psycopg, with where it connects and the backend's pid; its socket is not
    reported again as an untracked descriptor."""
    conn = psycopg.connect(**pg_conninfo(postgres))
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["psycopg"]
        leak = leakwatch.one("psycopg")
        assert_site(leak, at)
        backend = conn.info.backend_pid
        where = f"{postgres.user}@{postgres.host}:{postgres.port}/{postgres.database}"
        assert leak.description == f"connection {where} (backend pid {backend})"
        assert leak.details["transaction_status"] == "IDLE"
    finally:
        conn.close()
    assert leakwatch.leaks() == []


def test_connections_closed_by_with_or_close_are_not_reported(leakwatch: Watch, postgres: Any) -> None:
    with psycopg.connect(**pg_conninfo(postgres)) as conn:
        conn.execute("SELECT 1")
    other = psycopg.Connection.connect(**pg_conninfo(postgres))
    other.close()
    del conn, other
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_connection_dropped_open_is_reported_as_closed_by_the_gc(leakwatch: Watch, postgres: Any) -> None:
    psycopg.connect(**pg_conninfo(postgres)).execute("SELECT 1")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("psycopg")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.parametrize("dropped", ["last reference", "reference cycle"])
def test_connection_broken_by_the_server_then_dropped_is_not_closed_by_the_gc(
    leakwatch: Watch, postgres: Any, dropped: str
) -> None:
    """A connection whose backend was terminated is closed (libpq dropped its socket; psycopg's
    ``closed`` says so and its ``__del__`` does not warn): dropped unclosed, whether by its last
    reference or in a reference cycle, nothing is left to the collector, so it is not a leak."""
    conn = psycopg.connect(**pg_conninfo(postgres))
    with psycopg.connect(**pg_conninfo(postgres)) as killer:
        killer.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    assert conn.closed and conn.broken
    assert leakwatch.leaks() == []
    if dropped == "reference cycle":
        conn.cycle = conn  # type: ignore[attr-defined]
    del conn
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_connection_dropped_open_in_a_reference_cycle_is_still_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    conn = psycopg.connect(**pg_conninfo(postgres))
    at = line() - 1
    conn.cycle = conn  # type: ignore[attr-defined]
    del conn
    gc.collect()
    leak = leakwatch.one("psycopg")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connection_its_owner_closes_when_collected_in_a_cycle_is_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    """The owner's ``__del__`` closes the connection, both collected in one cycle (the
    connection's weak reference cleared before that ``__del__`` runs, its record left for its
    own ``__del__``, which then found it closed): the collector's doing all the same."""
    owner = ClosesAtDel()
    owner.resource = psycopg.connect(**pg_conninfo(postgres))
    at = line() - 1
    del owner
    gc.collect()
    leak = leakwatch.one("psycopg")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_connection_broken_by_the_server_then_dropped_is_not_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    async def main() -> None:
        conn = await psycopg.AsyncConnection.connect(**pg_conninfo(postgres))
        async with await psycopg.AsyncConnection.connect(**pg_conninfo(postgres)) as killer:
            await killer.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
        assert conn.closed

    asyncio.run(main())
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_connection_left_open_is_reported_at_the_awaiting_line(leakwatch: Watch, postgres: Any) -> None:
    async def main() -> tuple[Any, int]:
        conn = await psycopg.AsyncConnection.connect(**pg_conninfo(postgres))
        return conn, line() - 1

    async def close(conn: Any) -> None:
        await conn.close()

    conn, at = asyncio.run(main())
    try:
        assert_site(leakwatch.one("psycopg"), at)
    finally:
        asyncio.run(close(conn))
    assert leakwatch.leaks() == []


def test_crdb_connect_bound_before_tracking_started_is_tracked(tmp_path: Path, postgres: Any) -> None:
    """``psycopg.crdb.connect`` is bound when psycopg.crdb is imported: imported before the
    tracker started, its connections were an untracked descriptor with no line (kept) or
    nothing at all (dropped open). Both are psycopg's, at their lines."""
    pytest.importorskip("psycopg.crdb")
    out = python_prog(
        tmp_path,
        f"""
        import gc
        import psycopg.crdb
        from reclaim.leaks import Tracker

        tracker = Tracker().start()
        mark = tracker.snapshot()
        kept = psycopg.crdb.connect(**{pg_conninfo(postgres)!r})
        psycopg.crdb.connect(**{pg_conninfo(postgres)!r})
        gc.collect()
        leaks = tracker.leaks(mark, grace=0)
        print(sorted((leak.kind, leak.state, leak.site and leak.site.lineno) for leak in leaks))
        kept.close()
        tracker.stop()
        """,
        "-W",
        "ignore::ResourceWarning",
    )
    assert out.stdout.strip() == "[('psycopg', 'collected', 9), ('psycopg', 'open', 8)]"


def test_a_pools_connections_are_the_pools_not_reported_apart(leakwatch: Watch, postgres: Any) -> None:
    """A reclaim.db pool's connections are adopted by the pool: closing the pool closes them."""
    with reclaim.db.ConnectionPool(psycopg.connect, **pg_conninfo(postgres), max_size=2) as pool:
        with pool.acquire() as a, pool.acquire() as b:
            a.execute("SELECT 1")
            b.execute("SELECT 1")
        assert [leak.kind for leak in leakwatch.leaks()] == ["pool"]
    assert leakwatch.leaks() == []


@pytest.mark.mariadb
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_pymysql_connection_left_open_is_one_entry_naming_its_server_and_session(
    leakwatch: Watch, mariadb: Any
) -> None:
    """Not a bare socket to port 3306 at PyMySQL's line: the connection, at the program's line,
    says as whom, to which server and database, and the session the server knows it by."""
    pymysql = pytest.importorskip("pymysql")
    from _dbserver import maria_kwargs

    kwargs = maria_kwargs(mariadb)
    conn = pymysql.connect(**kwargs)
    at = line() - 1
    try:
        leak = leakwatch.one("pymysql")
        assert_site(leak, at)
        target = f"{kwargs['user']}@{kwargs['host']}:{kwargs['port']}/{kwargs['database']}"
        assert leak.description == f"connection {target} (server thread id {conn.thread_id()})"
        assert (leak.details["target"], leak.details["thread_id"]) == (target, conn.thread_id())
        assert [(held.kind, held.details["fd"]) for held in leak.holds] == [("socket", conn._sock.fileno())]
    finally:
        conn.close()
    assert leakwatch.leaks() == []


@pytest.mark.mariadb
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_pymysql_connection_dropped_open_is_the_collectors_though_its_del_is_renamed(
    leakwatch: Watch, mariadb: Any
) -> None:
    """PyMySQL's Connection has ``__del__ = _force_close``: the close it makes when dropped
    unclosed is still the garbage collector's, not the program's."""
    pymysql = pytest.importorskip("pymysql")
    from _dbserver import maria_kwargs

    pymysql.connect(**maria_kwargs(mariadb)).ping()
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("pymysql")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]


@pytest.mark.mariadb
def test_pymysql_connection_deferred_and_never_connected_is_no_leak(leakwatch: Watch, mariadb: Any) -> None:
    """``defer_connect=True`` opens nothing until ``connect()``: such a connection holds nothing."""
    pymysql = pytest.importorskip("pymysql")
    from _dbserver import maria_kwargs

    conn = pymysql.connect(**maria_kwargs(mariadb), defer_connect=True)
    assert leakwatch.leaks() == []
    del conn
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.mariadb
def test_pymysql_connections_the_program_closes_are_not_reported(leakwatch: Watch, mariadb: Any) -> None:
    """PyMySQL's close() ends in the same _force_close its __del__ is: that close is the
    program's."""
    pymysql = pytest.importorskip("pymysql")
    from _dbserver import maria_kwargs

    conn = pymysql.connect(**maria_kwargs(mariadb))
    conn.ping()
    conn.close()
    with pymysql.connect(**maria_kwargs(mariadb)) as other:
        other.ping()
    del conn, other
    gc.collect()
    assert leakwatch.leaks() == []


def _pg8000_target(postgres: Any) -> str:
    return f"{postgres.user}@{postgres.host}:{postgres.port}/{postgres.database}"


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("api", ["native", "dbapi", "legacy"])
def test_pg8000_connection_left_open_is_one_entry_naming_its_server_and_backend(
    leakwatch: Watch, postgres: Any, api: str
) -> None:
    """Not a bare socket to port 5432 at pg8000's line: the connection, at the program's line
    (through pg8000's ``connect()`` functions too), says as whom, to which server and database,
    and the backend the server runs it in."""
    pytest.importorskip("pg8000")
    import pg8000.dbapi
    import pg8000.native

    make = {"native": pg8000.native.Connection, "dbapi": pg8000.dbapi.connect, "legacy": pg8000.connect}
    public = "pg8000.Connection" if api == "legacy" else f"pg8000.{api}.Connection"
    conn = make[api](**pg8000_kwargs(postgres))
    at = line() - 1
    try:
        leak = leakwatch.one("pg8000")
        assert_site(leak, at)
        pid = (conn.run if api == "native" else _pg8000_query(conn))("SELECT pg_backend_pid()")[0][0]
        target = _pg8000_target(postgres)
        assert leak.description == f"connection {target} (backend pid {pid})"
        assert (leak.details["target"], leak.details["backend_pid"]) == (target, pid)
        assert leak.details["class"] == public
        assert [(held.kind, held.details["fd"]) for held in leak.holds] == [("socket", conn._usock.fileno())]
    finally:
        conn.close()
    # pg8000's close() drops its makefile() reader unclosed, whose finalizer closes the socket
    # before that close() returns: closed by it, not by the collector.
    assert leakwatch.leaks() == []


def _pg8000_query(conn: Any) -> Any:
    def run(sql: str) -> Any:
        cursor = conn.cursor()
        cursor.execute(sql)
        return cursor.fetchall()

    return run


def test_pg8000_close_that_raises_on_a_session_the_server_ended_leaves_nothing(
    leakwatch: Watch, postgres: Any
) -> None:
    """Its close() still closes the socket when writing its goodbye fails, but the reader it drops
    lives on in the error's traceback until the program's ``except`` is done with it: the close
    was the program's all the same, not the collector's (seen in pg8000's broken-pipe tests)."""
    pytest.importorskip("pg8000")
    import pg8000.native
    from pg8000.exceptions import InterfaceError

    victim = pg8000.native.Connection(**pg8000_kwargs(postgres))
    pid = victim.run("SELECT pg_backend_pid()")[0][0]
    with pg8000.native.Connection(**pg8000_kwargs(postgres)) as admin:
        admin.run("SELECT pg_terminate_backend(:pid)", pid=pid)
    with pytest.raises((InterfaceError, ConnectionError)):
        victim.run("SELECT 1")  # the server has ended the session
    try:
        victim.close()
    except InterfaceError:  # "network error": its goodbye could not be written
        assert victim._usock is None  # closed, its reader alive in this error's traceback
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_pg8000_connection_dropped_open_is_the_collectors_with_its_socket(
    leakwatch: Watch, postgres: Any
) -> None:
    pytest.importorskip("pg8000")
    import pg8000.native

    pg8000.native.Connection(**pg8000_kwargs(postgres)).run("SELECT 1")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("pg8000")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)
    assert leak.description.startswith(f"connection {_pg8000_target(postgres)} (backend pid ")
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]


def test_pg8000_connection_that_failed_to_connect_is_no_leak(leakwatch: Watch, postgres: Any) -> None:
    """A missing database: pg8000 closes the connection it was making, which holds nothing."""
    pytest.importorskip("pg8000")
    import pg8000.native

    with pytest.raises(pg8000.native.DatabaseError, match="3D000"):
        pg8000.native.Connection(**pg8000_kwargs(postgres, database="reclaim_no_such_database"))
    gc.collect()
    assert leakwatch.leaks() == []
