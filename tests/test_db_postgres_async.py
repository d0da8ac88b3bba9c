"""reclaim.db.AsyncConnectionPool against the real PostgreSQL server, with psycopg (async) and asyncpg.

Every test runs once per driver. Sessions are counted and killed by application_name;
faults are real (pg_terminate_backend, the TCP fault proxy, task cancellation).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Awaitable, Iterator
from typing import Any

import pytest

import reclaim.db
from _dbserver import (
    PgAdmin,
    asyncpg_kwargs,
    can_control_pg,
    idle_past_probe,
    pg_conninfo,
    pg_start,
    pg_stop,
    stay_idle,
    unique,
    wait_until,
)
from _proxy import FaultProxy
from helpers import until
from pool_support import run_in_child
from reclaim.db._asyncpg import SESSION_RESET

pytestmark = pytest.mark.postgres

LOW_ROLE = "reclaim_low"


class Driver:
    """What a test needs from one async driver: a pool, a scalar query, its error classes."""

    name = ""
    errors: tuple[type[BaseException], ...] = ()

    def pool(self, postgres: Any, app: str, **kw: Any) -> reclaim.db.AsyncConnectionPool:
        raise NotImplementedError

    async def value(self, conn: Any, sql: str) -> Any:
        raise NotImplementedError

    async def run(self, conn: Any, sql: str) -> None:
        raise NotImplementedError

    async def backend(self, conn: Any) -> int:
        return int(await self.value(conn, "SELECT pg_backend_pid()"))


class Psycopg(Driver):
    name = "psycopg"

    def __init__(self) -> None:
        import psycopg

        self.mod = psycopg
        self.errors = (psycopg.OperationalError,)

    def pool(self, postgres: Any, app: str, **kw: Any) -> reclaim.db.AsyncConnectionPool:
        conninfo = pg_conninfo(postgres, application_name=app)
        for key in ("port", "connect_timeout"):
            if key in kw:
                conninfo[key] = kw.pop(key)
        conninfo["autocommit"] = kw.pop("autocommit", True)
        return reclaim.db.AsyncConnectionPool(self.mod.AsyncConnection.connect, **conninfo, **kw)

    async def value(self, conn: Any, sql: str) -> Any:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
        return row[0]

    async def run(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)


class Asyncpg(Driver):
    name = "asyncpg"

    def __init__(self) -> None:
        import asyncpg

        self.mod = asyncpg
        self.errors = (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError)

    def pool(self, postgres: Any, app: str, **kw: Any) -> reclaim.db.AsyncConnectionPool:
        conn_kw = asyncpg_kwargs(postgres, server_settings={"application_name": app})
        if "port" in kw:
            conn_kw["port"] = kw.pop("port")
        if "connect_timeout" in kw:
            conn_kw["timeout"] = kw.pop("connect_timeout")
        kw.pop("autocommit", None)  # asyncpg has no implicit transactions
        return reclaim.db.AsyncConnectionPool(self.mod.connect, **conn_kw, **kw)

    async def value(self, conn: Any, sql: str) -> Any:
        return await conn.fetchval(sql)

    async def run(self, conn: Any, sql: str) -> None:
        await conn.execute(sql)


@pytest.fixture(params=["psycopg", "asyncpg"])
def driver(request: pytest.FixtureRequest) -> Driver:
    pytest.importorskip(request.param)
    return Psycopg() if request.param == "psycopg" else Asyncpg()


@pytest.fixture
def admin(postgres: Any) -> Iterator[PgAdmin]:
    a = PgAdmin(postgres)
    try:
        yield a
    finally:
        a.close()


@pytest.fixture
def app() -> str:
    return unique("reclaim")


@pytest.fixture
def low_role(admin: PgAdmin) -> str:
    with admin._lock:
        admin.conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOW_ROLE}') "
            f"THEN CREATE ROLE {LOW_ROLE} NOLOGIN; END IF; END $$"
        )
    return LOW_ROLE


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def assert_counts_exact(pool: Any, *, size: int | None = None) -> None:
    stats = pool.statistics()
    assert stats.in_use == 0 and stats.waiting == 0 and stats.creating == 0
    assert stats.idle == stats.size
    if size is not None:
        assert stats.size == size


# -- reset ------------------------------------------------------------------------------


def test_idle_release_sends_nothing_to_the_server(driver: Driver, postgres: Any, app: str) -> None:
    """No catch-all reset query per release (asyncpg.Pool sends one): an idle release costs 0 bytes."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            async with driver.pool(postgres, app, max_size=1, port=proxy.port) as pool:
                async with pool.acquire() as conn:
                    await driver.value(conn, "SELECT 1")
                before = proxy.bytes_up
                async with pool.acquire() as conn:
                    await driver.value(conn, "SELECT 1")
                one_query = proxy.bytes_up - before
                before = proxy.bytes_up
                for _ in range(50):
                    async with pool.acquire():
                        pass
                async with pool.acquire() as conn:
                    await driver.value(conn, "SELECT 1")
                assert proxy.bytes_up - before == one_query

    run(main())


def test_after_check_after_idle_the_check_is_one_round_trip(driver: Driver, postgres: Any, app: str) -> None:
    """Reused within ``check_after``, a connection costs no round trip; idle longer, one check
    goes up before it is lent (psycopg: an empty query, 6 bytes; asyncpg: its own query)."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            async with driver.pool(postgres, app, max_size=1, port=proxy.port, check_after=0.05) as pool:
                async with pool.acquire():
                    pass
                before = proxy.bytes_up
                async with pool.acquire():
                    pass
                assert proxy.bytes_up == before  # reused at once: lent as is
                stay_idle(0.05)  # past check_after
                async with pool.acquire() as conn:
                    sent = proxy.bytes_up - before  # counted before forwarded: the check is in
                    assert await driver.value(conn, "SELECT 1") == 1
                assert sent > 0
                if driver.name == "psycopg":
                    assert sent == 6  # 'Q', its int32 length (5), an empty string's NUL
                assert pool.statistics().discarded_by_check == 0

    run(main())


def test_psycopg_client_side_options_are_put_back(postgres: Any, app: str) -> None:
    """An async borrower's set_autocommit / set_read_only / set_isolation_level / set_deferrable."""
    pytest.importorskip("psycopg")
    import psycopg

    async def main() -> None:
        async with Psycopg().pool(postgres, app, autocommit=False, max_size=1) as pool:
            async with pool.acquire() as conn:
                await conn.set_autocommit(True)
                await conn.set_read_only(True)
                await conn.set_isolation_level(psycopg.IsolationLevel.SERIALIZABLE)
                await conn.set_deferrable(True)
            async with pool.acquire() as conn:
                assert (conn.autocommit, conn.read_only, conn.isolation_level, conn.deferrable) == (
                    False,
                    None,
                    None,
                    None,
                )

    run(main())


@pytest.mark.parametrize("user_configure", ["sync", "async"])
def test_psycopg_options_are_put_back_when_the_user_passes_configure(
    postgres: Any, app: str, user_configure: str
) -> None:
    """configure= runs after the adapter's own, as in ConnectionPool: it does not replace it."""
    pytest.importorskip("psycopg")
    configured: list[Any] = []

    def sync_configure(conn: Any) -> None:
        configured.append(conn)

    async def async_configure(conn: Any) -> None:
        configured.append(conn)

    hook = sync_configure if user_configure == "sync" else async_configure

    async def main() -> None:
        async with Psycopg().pool(postgres, app, autocommit=False, max_size=1, configure=hook) as pool:
            async with pool.acquire() as conn:
                await conn.set_read_only(True)
            async with pool.acquire() as conn:
                assert conn.read_only is None
        assert len(configured) == 1

    run(main())


def test_open_transaction_is_rolled_back(driver: Driver, postgres: Any, app: str) -> None:
    """Default policy: a transaction left open (with SET LOCAL ROLE in it) is gone for the next one."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1) as pool:
            async with pool.acquire() as conn:
                login = await driver.value(conn, "SELECT session_user")
                await driver.run(conn, "BEGIN")
                await driver.run(conn, "CREATE TEMP TABLE t_in_tx (a int)")
                await driver.run(conn, "SET LOCAL search_path TO pg_catalog")
            async with pool.acquire() as conn:
                assert await driver.value(conn, "SELECT to_regclass('pg_temp.t_in_tx') IS NULL") is True
                assert await driver.value(conn, "SELECT current_setting('search_path')") == '"$user", public'
                assert await driver.value(conn, "SELECT current_user") == login

    run(main())


def test_session_reset_leaves_nothing_of_borrower_a(
    driver: Driver, postgres: Any, app: str, low_role: str, admin: PgAdmin
) -> None:
    """reset='session': B on the same backend sees no search_path, role, temp table, lock, LISTEN, tx."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1, reset="session") as pool:
            async with pool.acquire() as conn:
                backend = await driver.backend(conn)
                login = await driver.value(conn, "SELECT session_user")
                for sql in (
                    "SET search_path TO pg_catalog",
                    "SET statement_timeout = 1234",
                    "CREATE TEMP TABLE secret_a (v text)",
                    "SELECT pg_advisory_lock(4244)",
                    "LISTEN tenant_a_channel",
                    "PREPARE tenant_a_stmt AS SELECT 'A'",
                    f"SET ROLE {low_role}",
                    "BEGIN",
                    "SELECT 1",
                ):
                    await driver.run(conn, sql)
            async with pool.acquire() as conn:
                assert await driver.backend(conn) == backend
                checks = {
                    "SELECT current_user": login,
                    "SELECT current_setting('search_path')": '"$user", public',
                    "SELECT current_setting('statement_timeout')": "0",
                    "SELECT to_regclass('pg_temp.secret_a') IS NULL": True,
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()": 0,
                    "SELECT count(*) FROM pg_listening_channels()": 0,
                    "SELECT count(*) FROM pg_prepared_statements WHERE name = 'tenant_a_stmt'": 0,
                    "SELECT pg_current_xact_id_if_assigned() IS NULL": True,
                }
                for sql, expected in checks.items():
                    assert await driver.value(conn, sql) == expected, sql
        with admin._lock:
            assert admin.conn.execute("SELECT pg_try_advisory_lock(4244)").fetchone() == (True,)
            admin.conn.execute("SELECT pg_advisory_unlock(4244)")

    run(main())


@pytest.fixture
def shadow_schema(admin: PgAdmin) -> Iterator[str]:
    """A schema holding a do-nothing ``pg_advisory_unlock_all()``, dropped after the test."""
    schema = unique("reclaim_shadow")
    with admin._lock:
        admin.conn.execute(f"CREATE SCHEMA {schema}")
        admin.conn.execute(
            f"CREATE FUNCTION {schema}.pg_advisory_unlock_all() RETURNS void LANGUAGE sql AS 'SELECT NULL'"
        )
    try:
        yield schema
    finally:
        with admin._lock:
            admin.conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_session_reset_releases_advisory_locks_whatever_search_path_a_left(
    driver: Driver, postgres: Any, app: str, shadow_schema: str, admin: PgAdmin
) -> None:
    """reset='session': a borrower that puts a schema of its own before pg_catalog in its
    search_path cannot swap the reset's unlock for a function of that schema and so hand its
    advisory locks to the next borrower: the reset names pg_catalog's."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1, reset="session") as pool:
            async with pool.acquire() as conn:
                backend = await driver.backend(conn)
                await driver.run(conn, f"SET search_path = {shadow_schema}, pg_catalog")
                await driver.run(conn, "SELECT pg_advisory_lock(4245)")
            async with pool.acquire() as conn:
                assert await driver.backend(conn) == backend
                held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
                assert await driver.value(conn, held) == 0

    run(main())
    with admin._lock:
        assert admin.conn.execute("SELECT pg_try_advisory_lock(4245)").fetchone() == (True,)
        admin.conn.execute("SELECT pg_advisory_unlock(4245)")


def test_psycopg_async_connects_get_the_pools_connect_timeout(postgres: Any, app: str) -> None:
    """As in the sync pool: 10 s unless one is set (psycopg's own default is 130 s)."""
    psycopg = pytest.importorskip("psycopg")
    conninfo = pg_conninfo(postgres, application_name=app)
    del conninfo["connect_timeout"]  # the tests' own

    async def main() -> None:
        async with (
            reclaim.db.AsyncConnectionPool(psycopg.AsyncConnection.connect, **conninfo) as pool,
            pool.acquire() as conn,
        ):
            values = {o.keyword: o.val for o in conn.pgconn.info}
            assert values[b"connect_timeout"] == b"10"

    run(main())


def test_psycopgs_blocking_connect_is_refused_by_the_async_pool() -> None:
    """AsyncConnectionPool(psycopg.connect) would lend blocking connections to coroutines and
    fail on their async reset and close: refused when made, naming AsyncConnection.connect."""
    psycopg = pytest.importorskip("psycopg")
    for connect in (psycopg.connect, psycopg.Connection.connect):
        with pytest.raises(TypeError, match=r"AsyncConnectionPool takes psycopg\.AsyncConnection\.connect"):
            reclaim.db.AsyncConnectionPool(connect, "dbname=test")


def test_session_reset_keeps_prepared_statements_in_step_with_the_server(
    driver: Driver, postgres: Any, app: str
) -> None:
    """reset='session': a query used often enough to be prepared keeps working across releases
    (psycopg forgets what DISCARD ALL deallocated on every release, not only when it notices
    the command itself; asyncpg's own statements are not discarded)."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1, reset="session") as pool:
            for uses in (1, 6, 1, 6):  # released with nothing prepared, then with one prepared
                async with pool.acquire() as conn:
                    for _ in range(uses):  # psycopg prepares it on its fifth use
                        assert await driver.value(conn, "SELECT 41 + 1") == 42
            stats = pool.statistics()
            assert (stats.created, stats.discarded_broken) == (1, 0)

    run(main())


def test_psycopg_session_reset_drops_the_handlers_borrower_a_added(postgres: Any, app: str) -> None:
    """reset='session': an AsyncConnection's notify / notice callbacks from A never see B's
    messages (as the asyncpg adapter drops listeners); the one configure= installed stays."""
    pytest.importorskip("psycopg")
    seen: list[tuple[str, str]] = []

    async def configure(conn: Any) -> None:
        conn.add_notice_handler(lambda d: seen.append(("configure", d.message_primary)))

    async def main() -> None:
        async with Psycopg().pool(postgres, app, max_size=1, reset="session", configure=configure) as pool:
            async with pool.acquire() as conn:
                conn.add_notify_handler(lambda n: seen.append(("A notify", n.payload)))
                conn.add_notice_handler(lambda d: seen.append(("A notice", d.message_primary)))
            async with pool.acquire() as conn:
                await conn.execute("LISTEN tenant_b")
                await conn.execute("NOTIFY tenant_b, 'B secret'")
                await conn.execute("DO $$ BEGIN RAISE NOTICE 'B notice'; END $$")
                await conn.execute("UNLISTEN *")

    run(main())
    assert seen == [("configure", "B notice")]


def test_asyncpg_session_reset_drops_the_callbacks_borrower_a_added(postgres: Any, app: str) -> None:
    """reset='session': a query logger, log listener or termination listener A added to an
    asyncpg connection never sees B's queries (with their arguments), notices or close; those
    the pool's configure= added stay."""
    pytest.importorskip("asyncpg")
    seen: list[tuple[str, object]] = []
    closed = asyncio.Event()

    def configure(conn: Any) -> None:
        conn.add_query_logger(lambda record: seen.append(("configure query", record.args)))
        conn.add_termination_listener(lambda conn: closed.set())

    async def main() -> None:
        async with Asyncpg().pool(postgres, app, max_size=1, reset="session", configure=configure) as pool:
            async with pool.acquire() as conn:
                conn.add_query_logger(lambda record: seen.append(("A query", record.query)))
                conn.add_log_listener(lambda conn, message: seen.append(("A notice", message.message)))
                conn.add_termination_listener(lambda conn: seen.append(("A close", None)))
            async with pool.acquire() as conn:
                assert await conn.fetchval("SELECT $1::text", "B secret") == "B secret"
                await conn.execute("DO $$ BEGIN RAISE NOTICE 'B notice'; END $$")
        # Termination listeners are called soon after the close: all of them in the same turn.
        await until(closed.is_set, "the termination listener configure= added")

    run(main())
    assert ("configure query", ("B secret",)) in seen  # the logger configure= added still works
    # A's logger saw A's release (the reset's query, while A still held the connection), no more.
    assert [entry for entry in seen if not entry[0].startswith("configure")] == [("A query", SESSION_RESET)]


def test_psycopg_session_reset_puts_back_the_dumpers_and_row_factory_borrower_a_set(
    postgres: Any, app: str
) -> None:
    """reset='session': a dumper or row factory A set on an AsyncConnection never sees B's
    parameters or rows; the row factory configure= set stays."""
    psycopg = pytest.importorskip("psycopg")
    seen: list[object] = []

    class Spy(psycopg.types.string.StrDumper):
        def dump(self, obj: str) -> Any:
            seen.append(obj)
            return super().dump(obj)

    def configure(conn: Any) -> None:
        conn.row_factory = psycopg.rows.dict_row

    async def main() -> Any:
        async with Psycopg().pool(postgres, app, max_size=1, reset="session", configure=configure) as pool:
            async with pool.acquire() as conn:
                conn.adapters.register_dumper(str, Spy)
                conn.row_factory = lambda cursor: lambda values: seen.append(values) or values
            async with pool.acquire() as conn:
                cur = await conn.execute("SELECT %s::text AS v", ["B secret"])
                return await cur.fetchone()

    assert run(main()) == {"v": "B secret"}
    assert seen == []


@pytest.mark.parametrize("policy", ["transaction", "session"])
def test_psycopg_two_phase_transaction_left_prepared_never_reaches_the_next_borrower(
    postgres: Any, app: str, admin: PgAdmin, policy: str
) -> None:
    """An AsyncConnection whose borrower left a prepared two-phase transaction (psycopg still
    tracks it, the session is idle) is discarded: B's commit() works on a fresh one."""
    psycopg = pytest.importorskip("psycopg")
    gtrid = unique("reclaim_tpc")

    async def main() -> Any:
        async with Psycopg().pool(postgres, app, max_size=1, reset=policy, autocommit=False) as pool:
            async with pool.acquire() as conn:
                await conn.tpc_begin(conn.xid(1, gtrid, "a"))
                await conn.execute("SELECT 1")
                try:
                    await conn.tpc_prepare()
                except psycopg.NotSupportedError:
                    pass  # max_prepared_transactions = 0 on this server: psycopg's state is the same
            async with pool.acquire() as conn:
                await conn.execute("SELECT 1")
                await conn.commit()
            return pool.statistics().discarded_broken

    try:
        assert run(main()) == 1
    finally:
        with admin._lock:
            for (gid,) in admin.conn.execute(
                "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", [f"%{gtrid}%"]
            ).fetchall():
                admin.conn.execute(psycopg.sql.SQL("ROLLBACK PREPARED {}").format(gid))


def test_psycopg_session_reset_drops_the_notifications_borrower_a_left_unread(
    postgres: Any, app: str
) -> None:
    """reset='session': a notification that reached A's session before the release (kept by
    psycopg for A's conn.notifies()) is not read by B, another tenant."""
    pytest.importorskip("psycopg")

    async def main() -> list[str]:
        async with Psycopg().pool(postgres, app, max_size=1, reset="session") as pool:
            async with pool.acquire() as conn:
                await conn.execute("LISTEN tenant_a")
                await conn.execute("NOTIFY tenant_a, 'A secret'")  # delivered with the answer: unread
            async with pool.acquire() as conn:
                return [n.payload async for n in conn.notifies(timeout=0)]

    assert run(main()) == []


def test_role_change_does_not_leak_under_session_reset(
    driver: Driver, postgres: Any, app: str, low_role: str
) -> None:
    """Privilege boundary: SET ROLE / SET SESSION AUTHORIZATION by A never reach borrower B."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1, reset="session") as pool:
            async with pool.acquire() as conn:
                login = await driver.value(conn, "SELECT session_user")
                await driver.run(conn, f"SET SESSION AUTHORIZATION {low_role}")
            async with pool.acquire() as conn:
                assert await driver.value(conn, "SELECT session_user") == login
                await driver.run(conn, f"SET ROLE {low_role}")
            async with pool.acquire() as conn:
                assert await driver.value(conn, "SELECT current_user") == login

    run(main())


# -- killed sessions --------------------------------------------------------------------


def test_killed_backends_fail_only_operations_in_flight(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """16 tasks, pool of 4, every backend terminated: later acquires all get live connections."""
    most = [0]
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            most[0] = max(most[0], admin.sessions(app))

    async def main() -> None:
        pool = driver.pool(postgres, app, max_size=4, acquire_timeout=10.0)
        killed = False
        stop = False
        counts = {"before": 0, "after": 0}
        failed_after: list[BaseException] = []
        failed_in_flight: list[BaseException] = []

        async def work() -> None:
            while not stop:
                after = killed
                try:
                    async with pool.acquire() as conn:
                        await driver.value(conn, "SELECT 1")
                except Exception as exc:
                    (failed_after if after else failed_in_flight).append(exc)
                else:
                    counts["after" if after else "before"] += 1

        tasks = [asyncio.ensure_future(work()) for _ in range(16)]
        try:
            await until(lambda: counts["before"] >= 200 and admin.sessions(app) == 4, "the pool to warm up")
            pids = admin.pids(app)
            assert len(pids) == 4
            with admin._lock:
                admin.conn.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (pids,)
                )
            await asyncio.sleep(0)  # let the loop read the servers' goodbyes
            killed = True
            await until(lambda: counts["after"] >= 400, "operations after the kill")
        finally:
            stop = True
            await asyncio.gather(*tasks)
        # Each killed session fails at most one operation: the one in flight on it, or the next
        # one it is lent to when reused within probe_after (1 ms) of its release, which skips
        # the socket probe. Then it is discarded, and every later acquire gets a live session.
        assert len(failed_in_flight) + len(failed_after) <= 4
        assert_counts_exact(pool)
        assert not set(pids) & set(admin.pids(app))
        await pool.close()

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        run(main())
    finally:
        stop_sampling.set()
        sampler.join()
    assert most[0] <= 4


def test_backends_killed_while_idle_are_never_lent(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """Every idle pooled backend terminated, then 16 tasks start: not one operation fails."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=4) as pool:
            leases = [await pool.acquire() for _ in range(4)]
            for lease in leases:
                await driver.value(lease.value, "SELECT 1")
                await lease.release()
            with admin._lock:
                admin.conn.execute(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                    "WHERE application_name = %s",
                    (app,),
                )
            await asyncio.sleep(0)
            idle_past_probe(pool)

            async def work() -> None:
                for _ in range(25):
                    async with pool.acquire() as conn:
                        await driver.value(conn, "SELECT 1")

            await asyncio.gather(*(work() for _ in range(16)))
            assert pool.statistics().discarded_by_check == 4

    run(main())


# -- cancellation -----------------------------------------------------------------------


def test_cancelled_while_waiting_loses_nothing(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A task cancelled while queued for a connection leaves the counts and the server exact."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=1) as pool:
            holder = await pool.acquire()
            waiter = asyncio.ensure_future(pool.acquire().__aenter__())
            await until(lambda: pool.statistics().waiting == 1, "the waiter to queue")
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await holder.release()
            assert_counts_exact(pool, size=1)
            assert admin.sessions(app) == 1
            async with pool.acquire() as conn:
                assert await driver.value(conn, "SELECT 1") == 1

    run(main())


def test_cancelled_mid_query_leaves_no_orphaned_session(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A task cancelled while its query runs: no backend keeps running it, the counts are exact."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=2) as pool:

            async def long_query() -> None:
                async with pool.acquire() as conn:
                    await driver.run(conn, "SELECT pg_sleep(30)")

            task = asyncio.ensure_future(long_query())

            def running() -> bool:
                with admin._lock:
                    rows = admin.conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                        "AND state = 'active' AND query LIKE %s",
                        (app, "%pg_sleep(30)%"),
                    ).fetchall()
                return bool(rows[0][0])

            await until(running, "the query to run on the server")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await until(lambda: not running(), "the server to stop running the cancelled query")
            stats = pool.statistics()
            assert stats.in_use == 0 and stats.creating == 0
            await until(lambda: admin.sessions(app) == pool.statistics().size, "sessions == pool size")
            async with pool.acquire() as conn:
                assert await driver.value(conn, "SELECT 1") == 1
            assert_counts_exact(pool)
            assert admin.sessions(app) == pool.statistics().size

    run(main())


def test_cancelled_while_connecting_leaves_nothing_behind(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A task cancelled while the pool is creating its connection: no slot, no session is left."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            pool = driver.pool(postgres, app, max_size=1, port=proxy.port, connect_timeout=10)
            async with pool:
                proxy.blackhole()  # the connection attempt reaches the proxy and hangs there
                task = asyncio.ensure_future(pool.acquire().__aenter__())
                await until(lambda: proxy.accepted == 1, "the pool to start connecting")
                assert pool.statistics().creating == 1
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                assert_counts_exact(pool, size=0)
                proxy.heal()
                async with pool.acquire() as conn:
                    assert await driver.value(conn, "SELECT 1") == 1
                await until(lambda: admin.sessions(app) == 1, "exactly the pool's one session")
                assert_counts_exact(pool, size=1)

    run(main())


# -- event loops ------------------------------------------------------------------------


def test_a_pool_used_again_from_a_new_event_loop_serves_there(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A second asyncio.run() with the same pool: an asyncpg connection belongs to the loop
    it was made in, so it is discarded (its session ended) and a new one made; a psycopg
    AsyncConnection is not tied to a loop and is lent again. Nothing fails, nothing leaks."""
    caplog.set_level(logging.INFO, logger="reclaim")
    pool = driver.pool(postgres, app, max_size=1)

    async def borrow() -> int:
        async with pool.acquire() as conn:
            return await driver.backend(conn)

    async def twice() -> tuple[int, int]:
        return await borrow(), await borrow()

    first = run(borrow())
    idle_past_probe(pool)
    second, again = run(twice())
    assert again == second  # in its own loop, the new connection is lent as usual
    tied = driver.name == "asyncpg"
    assert (second != first) is tied
    assert pool.statistics().discarded_by_check == (1 if tied else 0)
    run(pool.close())
    wait_until(lambda: admin.sessions(app) == 0, 10, "the pool's sessions to end")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_new_event_loop_is_noticed_even_when_the_connection_was_released_just_before(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A second asyncio.run() may start within the probe window of the last release (1 ms): the
    change of loop alone gets the connection checked, so an asyncpg one (tied to its loop) is
    replaced rather than lent there. A probe window no test can outrun makes that certain."""
    adapter = reclaim.db.AsyncpgAdapter() if driver.name == "asyncpg" else reclaim.db.AsyncPsycopgAdapter()
    adapter.probe_after = adapter.check_after = 3600.0  # never checked for having been idle
    pool = driver.pool(postgres, app, max_size=1, adapter=adapter)

    async def borrow() -> int:
        async with pool.acquire() as conn:
            return await driver.backend(conn)

    first = run(borrow())
    second = run(borrow())
    third = run(borrow())
    tied = driver.name == "asyncpg"
    assert (first != second != third) is tied
    assert pool.statistics().discarded_by_check == (2 if tied else 0)
    run(pool.close())
    wait_until(lambda: admin.sessions(app) == 0, 10, "the pool's sessions to end")


# -- fork -------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_child_gets_its_own_connections_and_parent_keeps_working(
    driver: Driver, postgres: Any, admin: PgAdmin, app: str
) -> None:
    """An async pool used before fork(): the child (its own event loop) gets its own session,
    closes its pool and collects the parent's connection objects; the parent's session was
    never ended by it and keeps serving."""

    async def main() -> None:
        async with driver.pool(postgres, app, max_size=2) as pool:
            async with pool.acquire() as conn:
                parent_backend = await driver.backend(conn)
            read_end, write_end = os.pipe()

            async def in_child() -> None:
                async with pool.acquire() as conn:
                    os.write(write_end, str(await driver.backend(conn)).encode())
                await pool.close()

            def child() -> None:
                os.close(read_end)
                # A thread of its own: the parent's loop is still marked running in this one.
                worker = threading.Thread(target=lambda: asyncio.run(in_child()))
                worker.start()
                worker.join()
                import gc

                gc.collect()  # the parent's connection objects, if the child kept any

            run_in_child(child)
            os.close(write_end)
            with os.fdopen(read_end, "rb") as reader:
                child_backend = int(reader.read() or b"0")
            assert child_backend not in (0, parent_backend)
            async with pool.acquire() as conn:
                assert await driver.backend(conn) == parent_backend
                assert await driver.value(conn, "SELECT 1") == 1
            assert parent_backend in admin.pids(app)
            wait_until(lambda: admin.pids(app) == [parent_backend], 10, "the child's session to end")

    run(main())


# -- network ----------------------------------------------------------------------------


def test_black_holed_network_is_bounded_by_the_timeouts_then_recovers(
    driver: Driver, postgres: Any, app: str
) -> None:
    """A silent network: the check and the new connect give up in time; healing restores service."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            pool = driver.pool(postgres, app, max_size=1, port=proxy.port, connect_timeout=2, check_after=0.0)
            pool.adapter.check_timeout = 0.5
            async with pool:
                async with pool.acquire() as conn:
                    await driver.value(conn, "SELECT 1")
                proxy.blackhole()
                loop = asyncio.get_running_loop()
                started = loop.time()
                with pytest.raises((*driver.errors, TimeoutError)):
                    async with pool.acquire():
                        pass
                assert loop.time() - started < 0.5 + 2.0 + 5.0
                assert pool.statistics().discarded_by_check == 1
                proxy.heal()
                async with pool.acquire() as conn:
                    assert await driver.value(conn, "SELECT 1") == 1

    run(main())


def test_cut_connections_are_replaced_after_the_network_heals(
    driver: Driver, postgres: Any, app: str
) -> None:
    """Connections reset by the network are never lent again; new ones work once it heals."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            async with driver.pool(postgres, app, max_size=2, port=proxy.port, connect_timeout=2) as pool:
                leases = [await pool.acquire() for _ in range(2)]
                for lease in leases:
                    await driver.value(lease.value, "SELECT 1")
                    await lease.release()
                proxy.cut()
                idle_past_probe(pool)
                with pytest.raises((*driver.errors, OSError)):
                    await pool.acquire()  # both idle ones found dead, the new connect is reset
                assert pool.statistics().discarded_by_check == 2
                proxy.heal()
                async with pool.acquire() as conn:
                    assert await driver.value(conn, "SELECT 1") == 1
                assert_counts_exact(pool, size=1)

    run(main())


def test_release_on_a_silent_network_is_cut_off_at_reset_timeout(
    driver: Driver, postgres: Any, app: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The ROLLBACK of a release gets no answer: cut off at reset_timeout, the connection discarded."""
    caplog.set_level(logging.INFO, logger="reclaim")

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            pool = driver.pool(postgres, app, max_size=1, port=proxy.port)
            pool.adapter.reset_timeout = 0.3
            async with pool:

                async def borrow() -> None:
                    async with pool.acquire() as conn:
                        await driver.run(conn, "BEGIN")  # the release must roll it back
                        proxy.blackhole()

                await asyncio.wait_for(borrow(), 30)  # a hang fails here, not forever
                stats = pool.statistics()
                assert (stats.discarded_broken, stats.size) == (1, 0)
                assert any("reset_timeout=0.3" in r.getMessage() for r in caplog.records)
                proxy.heal()
                async with pool.acquire() as conn:
                    assert await driver.value(conn, "SELECT 1") == 1
            assert_counts_exact(pool, size=0)

    run(main())


def test_close_on_a_silent_network_keeps_to_its_timeout(
    driver: Driver, postgres: Any, app: str, admin: PgAdmin
) -> None:
    """close(timeout) is not held up by polite closes the network never answers (asyncpg's
    waited for the server's goodbye up to its check_timeout): they are cut short, no session stays."""

    async def main() -> None:
        with FaultProxy((postgres.host, postgres.port)) as proxy:
            pool = driver.pool(postgres, app, max_size=2, port=proxy.port)
            pool.adapter.check_timeout = 60.0  # the bound close() used to wait out
            leases = [await pool.acquire() for _ in range(2)]
            for lease in leases:
                await lease.release()
            proxy.blackhole()
            await asyncio.wait_for(pool.close(timeout=0.3), 30)  # a hang fails here
            assert_counts_exact(pool, size=0)
            proxy.heal()
            await until(lambda: admin.sessions(app) == 0, "the pool's sessions to end")

    run(main())


@pytest.fixture
def pg_restartable(admin: PgAdmin, postgres: Any) -> Iterator[Any]:
    """A server the test may stop: started again (and waited for) whatever the outcome."""
    if not can_control_pg():
        pytest.skip("stopping PostgreSQL needs root and pg_ctlcluster")
    try:
        yield postgres
    finally:
        pg_start(postgres)
        admin.reconnect()


@pytest.mark.server_restart
def test_server_restart_fails_fast_then_recovers(driver: Driver, pg_restartable: Any, app: str) -> None:
    """Async pools: while the server is down acquires fail fast naming the refusal; then serve again."""
    postgres = pg_restartable

    async def main() -> None:
        pool = driver.pool(postgres, app, max_size=4, acquire_timeout=5.0, connect_timeout=2)
        try:
            leases = [await pool.acquire() for _ in range(4)]
            for lease in leases:
                await driver.value(lease.value, "SELECT 1")
                await lease.release()
            pg_stop(postgres)
            loop = asyncio.get_running_loop()
            for _ in range(3):
                started = loop.time()
                with pytest.raises((*driver.errors, OSError)) as caught:
                    async with pool.acquire() as conn:
                        await driver.value(conn, "SELECT 1")
                assert loop.time() - started < 5.0
                # psycopg says "Connection refused"; asyncpg raises ConnectionRefusedError
                refused = isinstance(caught.value, ConnectionRefusedError)
                assert refused or "refused" in str(caught.value).lower()
            pg_start(postgres)
            back = loop.time()
            while True:
                try:
                    async with pool.acquire() as conn:
                        assert await driver.value(conn, "SELECT 1") == 1
                    break
                except (*driver.errors, OSError):
                    assert loop.time() - back < 2.0, "the pool did not serve again within 2 s"
                    await asyncio.sleep(0.02)
            stats = pool.statistics()
            assert stats.size <= 4 and stats.in_use == 0
        finally:
            await pool.close()
        stats = pool.statistics()
        assert stats.created == stats.closed  # every connection object made was closed

    run(main())
