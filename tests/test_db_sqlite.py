"""reclaim.db on sqlite3: file databases and :memory:, reset only when needed, broken means discarded."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import reclaim.db
from reclaim import PoolTimeout
from reclaim.db import AsyncConnectionPool, ConnectionPool, GenericAdapter
from reclaim.db._adapter import driver_of


@pytest.fixture
def database(tmp_path: Path) -> str:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x INTEGER)")
    conn.close()
    return str(path)


def test_pool_options_are_split_from_connect_arguments(database: str) -> None:
    with ConnectionPool(sqlite3.connect, database, timeout=2.5, max_size=3, name="app") as pool:
        assert pool.statistics().max_size == 3
        assert pool.adapter.name == "sqlite3"
        with pool.acquire() as conn:
            assert isinstance(conn, sqlite3.Connection)
    with pytest.raises(ValueError, match="max_size"):
        ConnectionPool(sqlite3.connect, database, max_size=0)
    with pytest.raises(TypeError, match="connect"):
        ConnectionPool("sqlite3", database)  # type: ignore[arg-type]


def test_an_adapter_missing_a_hook_is_refused() -> None:
    """An adapter without reset or check would silently turn that part off."""

    class Partial:
        name = "partial"

        def check(self, conn: object) -> None:
            pass

    with pytest.raises(TypeError, match=r"adapter= must have .*subclass reclaim\.db\.GenericAdapter"):
        reclaim.db.ConnectionPool(sqlite3.connect, ":memory:", adapter=Partial())
    with pytest.raises(TypeError, match="adapter= must have"):
        reclaim.db.ConnectionPool(sqlite3.connect, ":memory:", adapter=object())


@pytest.mark.parametrize("pool_class", [ConnectionPool, AsyncConnectionPool])
def test_an_adapter_class_instead_of_an_instance_is_refused(pool_class: type) -> None:
    """adapter=SqliteAdapter (the class) has every hook, unbound: refused when the pool is made,
    not at the first acquire as "missing 1 required positional argument"."""
    with pytest.raises(TypeError, match=r"got the class SqliteAdapter: pass adapter=SqliteAdapter\(\)"):
        pool_class(sqlite3.connect, ":memory:", adapter=reclaim.db.SqliteAdapter)


@pytest.mark.parametrize("pool_class", [ConnectionPool, AsyncConnectionPool])
def test_a_misspelt_pool_option_is_refused_at_once(pool_class: type) -> None:
    """One typo from a pool option: refused naming the option, not sent to connect()."""
    with pytest.raises(TypeError, match=r"max_sise= is not a pool option: did you mean max_size=\?"):
        pool_class(sqlite3.connect, ":memory:", max_sise=2)
    with pytest.raises(TypeError, match="did you mean acquire_timeout="):
        pool_class(sqlite3.connect, ":memory:", acquire_timout=2)


@pytest.mark.parametrize(
    ("option", "hint"),
    [
        ("timeout", "acquire_timeout="),
        ("kwargs", "pass connect's keyword arguments to the pool itself"),
        ("open", "open once made"),
        ("reconnect_timeout", "never gives up"),
        ("pool_recycle", "max_lifetime="),
        ("init", "configure="),
    ],
)
def test_another_pools_option_is_refused_with_reclaims_way(option: str, hint: str) -> None:
    """psycopg_pool's, SQLAlchemy's and asyncpg's option names, which a connect() taking
    **kwargs would only reject at the first acquire ("invalid connection option"), are
    refused when the pool is made, saying what reclaim calls them."""

    def connect(database: str, **kwargs: Any) -> sqlite3.Connection:  # like psycopg.connect
        return sqlite3.connect(database, **kwargs)

    with pytest.raises(TypeError, match=rf"^{option}= is not a pool option: .*{re.escape(hint)}"):
        ConnectionPool(connect, ":memory:", **{option: 1})


def test_another_pools_option_name_that_connect_takes_goes_to_connect(database: str) -> None:
    """sqlite3.connect takes timeout= (and asyncpg.connect does): it is not refused."""
    with ConnectionPool(sqlite3.connect, database, timeout=2.0) as pool, pool.acquire() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with ConnectionPool(sqlite3.connect, database, connect_kwargs={"timeout": 2.0}) as pool, pool.acquire():
        pass


def test_connect_kwargs_passes_a_name_close_to_a_pool_option(database: str) -> None:
    """The escape hatch: connect_kwargs= goes to connect() untouched (here it is a real error)."""
    pool = ConnectionPool(sqlite3.connect, database, connect_kwargs={"max_sise": 2})
    with pool, pytest.raises(TypeError, match="max_sise"):
        pool.acquire()


def test_committed_work_persists_and_uncommitted_work_is_rolled_back(database: str) -> None:
    with ConnectionPool(sqlite3.connect, database, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
            conn.execute("INSERT INTO t VALUES (2)")  # left open by the borrower
        with pool.acquire() as conn:
            assert not conn.in_transaction
            assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_reset_sends_no_rollback_when_no_transaction_is_open(database: str) -> None:
    statements: list[str] = []
    with ConnectionPool(
        sqlite3.connect, database, configure=lambda c: c.set_trace_callback(statements.append)
    ) as pool:
        for _ in range(3):
            with pool.acquire() as conn:
                conn.execute("SELECT 1").fetchall()
        assert "ROLLBACK" not in statements
        with pool.acquire() as conn:
            conn.execute("INSERT INTO t VALUES (3)")
        assert statements.count("ROLLBACK") == 1


def test_each_memory_connection_is_its_own_database() -> None:
    with ConnectionPool(sqlite3.connect, ":memory:", max_size=2) as pool:
        with pool.acquire() as first, pool.acquire() as second:
            first.execute("CREATE TABLE only_here (x)")
            tables = second.execute("SELECT name FROM sqlite_master").fetchall()
            assert tables == []
        with pool.acquire() as again:  # the same connection comes back, with its table
            assert again.execute("SELECT name FROM sqlite_master").fetchall() in ([("only_here",)], [])


def test_shared_memory_database_through_a_uri() -> None:
    uri = "file:reclaim-shared?mode=memory&cache=shared"
    pool = ConnectionPool(sqlite3.connect, uri, uri=True, max_size=2, min_size=1)
    with pool, pool.acquire() as first, pool.acquire() as second:
        first.execute("CREATE TABLE shared (x)")
        first.commit()
        assert second.execute("SELECT name FROM sqlite_master").fetchall() == [("shared",)]


def test_a_connection_closed_in_use_is_discarded_as_broken(database: str) -> None:
    with ConnectionPool(sqlite3.connect, database, max_size=1) as pool:
        with pytest.raises(sqlite3.ProgrammingError), pool.acquire() as conn:
            conn.close()
            conn.execute("SELECT 1")
        stats = pool.statistics()
        assert (stats.size, stats.discarded_broken) == (0, 1)
        with pool.acquire() as fresh:
            assert fresh is not conn
            fresh.execute("SELECT 1")


def test_an_ordinary_sql_error_keeps_the_connection(database: str) -> None:
    with ConnectionPool(sqlite3.connect, database, max_size=1) as pool:
        with pytest.raises(sqlite3.OperationalError), pool.acquire() as conn:
            conn.execute("SELECT * FROM no_such_table")
        with pool.acquire() as again:
            assert again is conn


def test_a_connection_dead_while_idle_fails_its_check_and_is_replaced(database: str) -> None:
    with ConnectionPool(sqlite3.connect, database, max_size=1, check_after=0) as pool:
        with pool.acquire() as conn:
            pass
        conn.close()  # behind the pool's back
        with pool.acquire() as fresh:
            assert fresh is not conn
            assert fresh.execute("SELECT 1").fetchone() == (1,)
        assert pool.statistics().discarded_by_check == 1


def test_threads_share_a_file_database(database: str) -> None:
    errors: list[BaseException] = []
    with ConnectionPool(sqlite3.connect, database, max_size=3, timeout=30) as pool:

        def work(n: int) -> None:
            try:
                for i in range(20):
                    with pool.acquire(timeout=30) as conn:
                        conn.execute("INSERT INTO t VALUES (?)", (n * 100 + i,))
                        conn.commit()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with pool.acquire() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (120,)
        assert pool.statistics().size <= 3
    assert errors == []


def test_timeout_names_the_holder(database: str) -> None:
    pool = ConnectionPool(sqlite3.connect, database, max_size=1, name="orders")
    expected = r"(?s)'orders'.*test_db_sqlite\.py:"
    with pool, pool.acquire(), pytest.raises(PoolTimeout, match=expected):
        pool.acquire(timeout=0)


def test_async_pool_on_sqlite(database: str) -> None:
    async def main() -> None:
        async with AsyncConnectionPool(sqlite3.connect, database, max_size=2) as pool:
            async with pool.acquire() as conn:
                conn.execute("INSERT INTO t VALUES (7)")
                conn.commit()
                conn.execute("INSERT INTO t VALUES (8)")
            async with pool.acquire() as conn:
                assert conn.execute("SELECT x FROM t").fetchall() == [(7,)]

    asyncio.run(main())


def test_generic_adapter_rolls_back_and_pings_with_select_1(database: str) -> None:
    statements: list[str] = []
    with ConnectionPool(
        sqlite3.connect,
        database,
        adapter=GenericAdapter(),
        check_after=0,
        configure=lambda c: c.set_trace_callback(statements.append),
    ) as pool:
        with pool.acquire() as conn:
            conn.execute("INSERT INTO t VALUES (5)")
        with pool.acquire() as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert "ROLLBACK" in statements
        assert "SELECT 1" in statements
        assert pool.adapter.is_broken(conn, sqlite3.InterfaceError("gone"))
        assert not pool.adapter.is_broken(conn, sqlite3.IntegrityError("dup"))


def test_adapters_are_chosen_by_driver_and_registrable() -> None:
    assert driver_of(sqlite3.connect) == "sqlite3"
    assert reclaim.db.adapter_for(sqlite3.connect, asynchronous=False).name == "sqlite3"

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(":memory:")

    assert isinstance(reclaim.db.adapter_for(connect, asynchronous=False), GenericAdapter)

    class Custom(GenericAdapter):
        name = "custom"

    reclaim.db.register_adapter(__name__.split(".")[0], Custom, None)
    try:
        assert reclaim.db.adapter_for(connect, asynchronous=False).name == "custom"
        with pytest.raises(ValueError, match="no async adapter"):
            reclaim.db.adapter_for(connect, asynchronous=True)
    finally:
        del reclaim.db.ADAPTERS[__name__.split(".")[0]]


def test_importing_reclaim_db_needs_no_driver() -> None:
    """Each driver's adapter is public (to pass tuned, as adapter=) and imports its driver
    only when it is looked up."""
    code = (
        "import sys, reclaim.db\n"
        "names = {'PsycopgAdapter', 'AsyncPsycopgAdapter', 'AsyncpgAdapter', 'PyMySQLAdapter',"
        " 'SqliteAdapter'}\n"
        "assert names <= set(dir(reclaim.db)) and names <= set(reclaim.db.__all__)\n"
        "bad = {'psycopg', 'asyncpg', 'pymysql'} & set(sys.modules)\n"
        "assert not bad, bad\n"
        "assert reclaim.db.PsycopgAdapter(reset_timeout=2.0).reset_timeout == 2.0\n"
        "assert reclaim.db.PsycopgAdapter.__module__ == 'reclaim.db._psycopg'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
