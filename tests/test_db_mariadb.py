"""reclaim.db.ConnectionPool with PyMySQL against the real MariaDB server.

Each test gets a private database (made and dropped by the ``admin`` fixture), so the
sessions it counts and KILLs in information_schema.processlist are only its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import reclaim.db
from _dbserver import (
    MariaAdmin,
    can_control_maria,
    hammer,
    idle_past_probe,
    kill_under_load,
    maria_kwargs,
    maria_start,
    maria_stop,
    release_cut_off,
    reuse_bytes,
    wait_until,
)
from _proxy import FaultProxy
from reclaim.db import PyMySQLAdapter

pymysql = pytest.importorskip("pymysql")

pytestmark = pytest.mark.mariadb

LOW_ROLE = "reclaim_low"


@pytest.fixture
def admin(mariadb: Any) -> Iterator[MariaAdmin]:
    a = MariaAdmin(mariadb)
    try:
        yield a
    finally:
        a.close()


def make_pool(mariadb: Any, admin: MariaAdmin, **kw: Any) -> reclaim.db.ConnectionPool:
    conn_kw = maria_kwargs(mariadb, database=admin.database)
    for key in ("host", "port", "connect_timeout", "autocommit", "database"):
        if key in kw:
            conn_kw[key] = kw.pop(key)
    return reclaim.db.ConnectionPool(pymysql.connect, **conn_kw, **kw)


def one(conn: Any, sql: str, *params: object) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql, params or None)
        row = cur.fetchone()
    assert row is not None
    return tuple(row)


def run(conn: Any, sql: str, *params: object) -> None:
    with conn.cursor() as cur:
        cur.execute(sql, params or None)


@pytest.fixture
def table(admin: MariaAdmin) -> str:
    admin.query(f"CREATE TABLE `{admin.database}`.t (a INT) ENGINE=InnoDB")
    return f"`{admin.database}`.t"


# -- adapter and the default reset ------------------------------------------------------


def test_pymysql_connections_get_the_pymysql_adapter(mariadb: Any, admin: MariaAdmin) -> None:
    """ConnectionPool(pymysql.connect, ...) picks the PyMySQL adapter from the registry."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        assert isinstance(pool.adapter, PyMySQLAdapter)
        with pool.acquire() as conn:
            assert one(conn, "SELECT 1") == (1,)


def test_uncommitted_writes_are_rolled_back(mariadb: Any, admin: MariaAdmin, table: str) -> None:
    """Default policy: a transaction left open is rolled back before the next borrower."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        with pool.acquire() as conn:
            run(conn, f"INSERT INTO {table} VALUES (1)")
        with pool.acquire() as conn:
            assert one(conn, f"SELECT count(*) FROM {table}") == (0,)
        assert admin.query(f"SELECT count(*) FROM {table}") == [(0,)]


def test_next_borrower_sees_fresh_data_not_a_stale_snapshot(
    mariadb: Any, admin: MariaAdmin, table: str
) -> None:
    """A plain SELECT with autocommit off leaves an InnoDB read view that the reset must end."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        with pool.acquire() as conn:
            assert one(conn, f"SELECT count(*) FROM {table}") == (0,)
        admin.query(f"INSERT INTO {table} VALUES (1)")  # committed by someone else
        with pool.acquire() as conn:
            assert one(conn, f"SELECT count(*) FROM {table}") == (1,)


def test_autocommit_mode_is_put_back(mariadb: Any, admin: MariaAdmin) -> None:
    """A borrower that switches autocommit on does not hand that mode to the next one."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.autocommit(True)
        with pool.acquire() as conn:
            assert conn.get_autocommit() is False
            assert one(conn, "SELECT @@autocommit") == (0,)


# -- session isolation ------------------------------------------------------------------


@pytest.fixture
def low_role(admin: MariaAdmin) -> str:
    """A role without privileges granted to the test user, so SET ROLE works (idempotent)."""
    admin.query(f"CREATE ROLE IF NOT EXISTS {LOW_ROLE}")
    admin.query(f"GRANT {LOW_ROLE} TO CURRENT_USER")
    return LOW_ROLE


@pytest.mark.parametrize("autocommit", [True, False])
def test_unread_sscursor_rows_never_reach_the_next_borrower(
    mariadb: Any, admin: MariaAdmin, autocommit: bool
) -> None:
    """A borrower that leaves an SSCursor's rows unread: the server is still streaming them,
    so the connection is discarded, not lent to B, whose first query would read them all and
    warn "Previous unbuffered result was left incomplete" (an error under -W error)."""
    with make_pool(mariadb, admin, max_size=1, autocommit=autocommit) as pool:
        with pool.acquire() as conn:
            cursor = conn.cursor(pymysql.cursors.SSCursor)
            cursor.execute("SELECT seq FROM seq_1_to_100000")
            assert cursor.fetchone() == (1,)
        with pool.acquire() as conn:  # filterwarnings = error: a warning here fails the test
            assert one(conn, "SELECT 42") == (42,)
        stats = pool.statistics()
        assert (stats.created, stats.discarded_broken) == (2, 1)


def test_session_reset_leaves_nothing_of_borrower_a(
    mariadb: Any, admin: MariaAdmin, table: str, low_role: str
) -> None:
    """reset='session': B on the same connection sees no variable, role, temp table, lock, tx of A."""
    with make_pool(mariadb, admin, max_size=1, reset="session") as pool:
        with pool.acquire() as conn:
            thread_id = one(conn, "SELECT CONNECTION_ID()")[0]
            run(conn, "SET @tenant = 'A'")
            run(conn, "SET SESSION sql_mode = 'ANSI_QUOTES'")
            run(conn, "SET SESSION wait_timeout = 77")
            run(conn, "CREATE TEMPORARY TABLE secret_a (v TEXT)")
            run(conn, "INSERT INTO secret_a VALUES ('tenant A')")
            assert one(conn, "SELECT GET_LOCK('reclaim_a', 0)") == (1,)
            run(conn, "PREPARE tenant_a_stmt FROM 'SELECT 1'")
            run(conn, f"SET ROLE {low_role}")
            run(conn, f"INSERT INTO {table} VALUES (1)")  # transaction left open
            assert one(conn, "SELECT CURRENT_ROLE()") == (low_role,)
            run(conn, f"HANDLER {table} OPEN AS tenant_a_handler")
            run(conn, "SELECT CAST('tenant A' AS INT)")  # a warning quoting A's value
        with pool.acquire() as conn:
            with conn.cursor() as cur:
                cur.execute("SHOW WARNINGS")
                assert cur.fetchall() == ()
            assert one(conn, "SELECT CONNECTION_ID()")[0] == thread_id  # same physical connection
            row = one(
                conn,
                "SELECT @tenant, CURRENT_ROLE(), @@session.wait_timeout = @@global.wait_timeout, "
                "@@session.sql_mode = @@global.sql_mode, IS_USED_LOCK('reclaim_a'), @@autocommit",
            )
            assert row == (None, None, 1, 1, None, 0)
            with pytest.raises(pymysql.err.ProgrammingError):
                run(conn, "SELECT * FROM secret_a")
            with pytest.raises(pymysql.err.Error):
                run(conn, "EXECUTE tenant_a_stmt")
            with pytest.raises(pymysql.err.Error):
                run(conn, "HANDLER tenant_a_handler READ FIRST")
            assert one(conn, f"SELECT count(*) FROM {table}") == (0,)


def test_session_reset_keeps_the_collation_and_sql_mode_given_to_connect(
    mariadb: Any, admin: MariaAdmin
) -> None:
    """COM_RESET_CONNECTION puts the session's collation and sql_mode back to the server's
    defaults: those the pool's connect() asked for are set again, so B compares strings and
    parses SQL as A did (utf8mb4_bin: 'a' <> 'A'; ANSI_QUOTES: "x" names a column)."""
    with make_pool(
        mariadb, admin, max_size=1, reset="session", collation="utf8mb4_bin", sql_mode="ANSI_QUOTES"
    ) as pool:
        for _ in range(2):
            with pool.acquire() as conn:
                row = one(conn, "SELECT @@collation_connection, @@sql_mode, 'a' = 'A', CONNECTION_ID()")
                assert row[:3] == ("utf8mb4_bin", "ANSI_QUOTES", 0)
        assert pool.statistics().created == 1  # the same connection both times


def test_session_reset_puts_back_the_converters_cursor_class_and_charset_borrower_a_set(
    mariadb: Any, admin: MariaAdmin
) -> None:
    """reset='session': an encoder or decoder A put on the connection object never sees B's
    parameters or values, A's cursor class is gone, and A's set_character_set is undone on
    both ends (PyMySQL encoding as the server decodes, with the collation given to connect);
    the decoder configure= set stays."""
    seen: list[object] = []

    def configure(conn: Any) -> None:
        conn.decoders[pymysql.constants.FIELD_TYPE.LONG] = lambda value: f"configure {value}"

    with make_pool(
        mariadb, admin, max_size=1, reset="session", collation="utf8mb4_bin", configure=configure
    ) as pool:
        with pool.acquire() as conn:
            conn.encoders[int] = lambda value, mapping=None: seen.append(value) or str(value)
            conn.decoders[pymysql.constants.FIELD_TYPE.VAR_STRING] = lambda value: seen.append(value) or value
            conn.cursorclass = pymysql.cursors.DictCursor
            conn.set_character_set("latin1", "latin1_bin")
        with pool.acquire() as conn:
            with conn.cursor() as cur:
                sql = "SELECT %s, CAST('B secret' AS CHAR), %s, @@collation_connection, 7"
                cur.execute(sql, (4242, "é€"))
                assert cur.fetchone() == ("configure 4242", "B secret", "é€", "utf8mb4_bin", "configure 7")
            assert (conn.charset, conn.collation) == ("utf8mb4", "utf8mb4_bin")
        assert pool.statistics().created == 1
    assert seen == []


@pytest.mark.parametrize("login_database", ["private", "none"])
def test_session_reset_gives_b_the_login_database_not_the_one_a_chose(
    mariadb: Any, admin: MariaAdmin, login_database: str
) -> None:
    """MariaDB's search_path: A's ``USE other`` must not send B's unqualified names to A's
    database. COM_RESET_CONNECTION keeps the current database, so the reset puts back the one
    the connection logged in with; one that logged in with none cannot be given none again,
    so it is discarded rather than lent with A's database selected."""
    database = admin.database if login_database == "private" else None
    with make_pool(mariadb, admin, max_size=1, reset="session", database=database) as pool:
        with pool.acquire() as conn:
            thread_id = one(conn, "SELECT CONNECTION_ID()")[0]
            run(conn, "USE mysql")
            assert one(conn, "SELECT DATABASE()") == ("mysql",)
        with pool.acquire() as conn:
            assert one(conn, "SELECT DATABASE()") == (database,)
            same = one(conn, "SELECT CONNECTION_ID()")[0] == thread_id
        assert same is (database is not None)
        assert pool.statistics().discarded_broken == (0 if same else 1)


def test_default_reset_keeps_session_state_as_documented(
    mariadb: Any, admin: MariaAdmin, low_role: str
) -> None:
    """reset='transaction' ends the transaction but keeps session variables and the role."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        with pool.acquire() as conn:
            run(conn, "SET @tenant = 'A'")
            run(conn, f"SET ROLE {low_role}")
        with pool.acquire() as conn:
            assert one(conn, "SELECT @tenant, CURRENT_ROLE()") == ("A", low_role)
            run(conn, "SET ROLE NONE")


@pytest.mark.parametrize("policy", ["transaction", "session"])
def test_table_locks_and_a_pending_set_transaction_reach_b_only_under_the_default_reset(
    mariadb: Any, admin: MariaAdmin, table: str, policy: str
) -> None:
    """With autocommit on, the default reset makes no round trip, so what only one could undo
    reaches B, as the README says: A's LOCK TABLES, and A's SET TRANSACTION (meant for the
    next transaction: B's). reset='session' undoes both."""
    kept = policy == "transaction"
    with make_pool(mariadb, admin, max_size=1, autocommit=True, reset=policy) as pool:
        with pool.acquire() as conn:
            run(conn, f"LOCK TABLES {table} READ")
        with pool.acquire() as conn:
            if kept:
                with pytest.raises(pymysql.err.OperationalError, match="READ lock"):
                    run(conn, f"INSERT INTO {table} VALUES (1)")
                run(conn, "UNLOCK TABLES")
            run(conn, f"INSERT INTO {table} VALUES (1)")
        with pool.acquire() as conn:
            run(conn, "SET TRANSACTION READ ONLY")
        with pool.acquire() as conn:
            run(conn, "START TRANSACTION")
            if kept:
                with pytest.raises(pymysql.err.OperationalError, match="READ ONLY"):
                    run(conn, f"INSERT INTO {table} VALUES (2)")
            else:
                run(conn, f"INSERT INTO {table} VALUES (2)")
            conn.rollback()
        assert pool.statistics().created == 1  # one connection throughout


# -- faults -----------------------------------------------------------------------------


def test_killed_sessions_fail_only_operations_in_flight(mariadb: Any, admin: MariaAdmin) -> None:
    """16 threads, pool of 4, every session KILLed: later acquires all get live connections."""
    pool = make_pool(mariadb, admin, max_size=4, acquire_timeout=10.0)

    def kill() -> None:
        ids = admin.ids()
        assert admin.kill() == 4
        wait_until(lambda: not set(ids) & set(admin.ids()), 10, "the killed sessions to end")

    failed, most_sessions = kill_under_load(
        pool,
        query=lambda conn: one(conn, "SELECT 1"),
        errors=pymysql.err.Error,
        sessions=admin.sessions,
        kill=kill,
    )
    try:
        # Each killed session fails at most one operation: the one in flight on it, or the next
        # one it is lent to when reused within probe_after (1 ms) of its release, which skips
        # the socket probe. Then it is discarded, and every later acquire gets a live session.
        assert failed <= 4
        assert most_sessions <= 4
        stats = pool.statistics()
        assert stats.size <= 4 and stats.in_use == 0
    finally:
        pool.close()
    wait_until(lambda: admin.sessions() == 0, 10, "the pool's sessions to end")


def test_sessions_killed_while_idle_are_never_lent(mariadb: Any, admin: MariaAdmin) -> None:
    """Every idle pooled session KILLed, then 16 threads start: not one operation fails."""
    pool = make_pool(mariadb, admin, max_size=4)
    try:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            one(lease.value, "SELECT 1")
            lease.release()
        ids = admin.ids()
        assert admin.kill() == 4
        wait_until(lambda: not set(ids) & set(admin.ids()), 10, "the killed sessions to end")
        idle_past_probe(pool)
        assert hammer(pool, lambda conn: one(conn, "SELECT 1")) == []
        assert pool.statistics().discarded_by_check == 4
    finally:
        pool.close()


@pytest.fixture
def many_files_open() -> Iterator[None]:
    """Descriptors up to past 1024 taken, so that the next socket is numbered beyond select()'s range."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1200 and hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip("the descriptor limit is below 1200")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    taken = []
    try:
        while not taken or taken[-1] < 1030:
            taken.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_socket_numbered_past_1024_is_probed_not_discarded(
    mariadb: Any, admin: MariaAdmin, many_files_open: None
) -> None:
    """The idle probe works on any descriptor: a live session is reused, a killed one is not lent
    (select() raised "filedescriptor out of range", so every reuse logged in again)."""
    with make_pool(mariadb, admin, max_size=1) as pool:
        with pool.acquire() as conn:
            assert conn._sock.fileno() >= 1024
            first = one(conn, "SELECT CONNECTION_ID()")
        idle_past_probe(pool)
        with pool.acquire() as conn:
            assert one(conn, "SELECT CONNECTION_ID()") == first
        assert admin.kill() == 1
        wait_until(lambda: admin.sessions() == 0, 10, "the killed session to end")
        idle_past_probe(pool)
        with pool.acquire() as conn:
            assert one(conn, "SELECT CONNECTION_ID()") != first
        stats = pool.statistics()
        assert (stats.created, stats.discarded_by_check) == (2, 1)


@pytest.fixture
def maria_restartable(mariadb: Any) -> Iterator[Any]:
    """A server the test may stop: started again (and waited for) whatever the outcome."""
    if not can_control_maria():
        pytest.skip("stopping MariaDB needs root and /usr/sbin/mariadbd")
    try:
        yield mariadb
    finally:
        maria_start(mariadb)


@pytest.mark.server_restart
def test_server_restart_fails_fast_then_recovers(admin: MariaAdmin, maria_restartable: Any) -> None:
    """While MariaDB is down acquires fail fast naming the refusal; once back the pool serves."""
    mariadb = maria_restartable
    pool = make_pool(mariadb, admin, max_size=4, acquire_timeout=5.0, connect_timeout=2)
    try:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            one(lease.value, "SELECT 1")
            lease.release()
        maria_stop(mariadb)
        try:
            for _ in range(3):
                started = time.monotonic()
                with pytest.raises(pymysql.err.OperationalError) as caught, pool.acquire() as conn:
                    one(conn, "SELECT 1")
                assert time.monotonic() - started < 5.0
                assert "refused" in str(caught.value).lower()
        finally:
            maria_start(mariadb)
        back = time.monotonic()

        def serves() -> bool:
            try:
                with pool.acquire() as conn:
                    return one(conn, "SELECT 1") == (1,)
            except pymysql.err.OperationalError:
                return False

        wait_until(serves, 2.0, "the pool to serve again")
        assert time.monotonic() - back < 2.0
        stats = pool.statistics()
        assert stats.size <= 4 and stats.in_use == 0
    finally:
        pool.close()
    stats = pool.statistics()
    assert stats.created == stats.closed  # every connection object made was closed


def test_black_holed_network_is_bounded_by_the_timeouts_then_recovers(
    mariadb: Any, admin: MariaAdmin
) -> None:
    """A silent network: ping and connect give up within their timeouts; healing restores service."""
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        pool = make_pool(
            mariadb,
            admin,
            max_size=2,
            port=proxy.port,
            connect_timeout=1,
            adapter=PyMySQLAdapter(check_timeout=0.5),
            check_after=0.0,  # ping on every reuse, so the silence is noticed at once
        )
        with pool:
            with pool.acquire() as conn:
                one(conn, "SELECT 1")
            proxy.blackhole()
            started = time.monotonic()
            # PyMySQL 1.1+ warns about ping(reconnect=True): ignored here, so that only the
            # count of connections below tells whether the check reconnected.
            with warnings.catch_warnings(), pytest.raises(pymysql.err.OperationalError) as caught:
                warnings.simplefilter("ignore", DeprecationWarning)
                pool.acquire()
            elapsed = time.monotonic() - started
            assert "timed out" in str(caught.value).lower()
            assert elapsed < 0.5 + 1.0 + 5.0
            stats = pool.statistics()
            assert stats.discarded_by_check == 1
            # The failed ping did not reconnect behind the pool's back (ping(reconnect=False)):
            # every connection the proxy saw was one the pool tried to create.
            assert proxy.accepted == stats.created + stats.failed_creates == 2
            proxy.heal()
            with pool.acquire() as conn:
                assert one(conn, "SELECT 1") == (1,)


def test_session_pools_first_query_on_a_silent_network_is_bounded_by_connect_timeout(
    mariadb: Any, admin: MariaAdmin
) -> None:
    """reset='session' reads the login role and database once the login is done: a network
    that goes silent at that query fails the acquire within connect_timeout, like the login
    itself (it used to wait for ever); once healed, the next acquire connects."""
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        pool = make_pool(mariadb, admin, max_size=1, port=proxy.port, connect_timeout=1, reset="session")
        with pool:
            proxy.blackhole_on(b"CURRENT_ROLE()")
            outcome: list[BaseException | None] = []
            done = threading.Event()

            def acquire() -> None:
                try:
                    pool.acquire().release()
                    outcome.append(None)
                except BaseException as exc:  # handed to the test thread, which asserts on it
                    outcome.append(exc)
                finally:
                    done.set()

            # In a daemon thread: a hang fails the test instead of hanging it.
            threading.Thread(target=acquire, name="acquirer", daemon=True).start()
            assert done.wait(30), "the acquire hung on the silent network"
            assert isinstance(outcome[0], pymysql.err.OperationalError), outcome
            assert "timed out" in str(outcome[0]).lower()
            stats = pool.statistics()
            assert (stats.failed_creates, stats.size) == (1, 0)
            proxy.heal()
            with pool.acquire() as conn:
                assert one(conn, "SELECT CURRENT_ROLE(), DATABASE()") == (None, admin.database)


def test_after_check_after_idle_the_check_is_one_ping(mariadb: Any, admin: MariaAdmin) -> None:
    """Reused within ``check_after``, a connection costs no round trip; idle longer, exactly one
    COM_PING goes up before it is lent."""
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        pool = make_pool(mariadb, admin, max_size=1, port=proxy.port, autocommit=True, check_after=0.05)
        with pool:
            # a 3-byte length (1), the sequence number, the command byte
            assert reuse_bytes(pool, proxy, check_after=0.05) == (0, 5)
            assert pool.statistics().discarded_by_check == 0


def test_cut_connections_are_replaced_after_the_network_heals(mariadb: Any, admin: MariaAdmin) -> None:
    """Connections reset by the network are never lent again; new ones work once it heals."""
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        pool = make_pool(mariadb, admin, max_size=2, port=proxy.port, connect_timeout=2)
        with pool:
            leases = [pool.acquire() for _ in range(2)]
            for lease in leases:
                one(lease.value, "SELECT 1")
                lease.release()
            proxy.cut()
            idle_past_probe(pool)
            with pytest.raises(pymysql.err.OperationalError):
                pool.acquire()  # both idle ones are found dead by the probe, the new connect is reset
            assert pool.statistics().discarded_by_check == 2
            proxy.heal()
            with pool.acquire() as conn:
                assert one(conn, "SELECT 1") == (1,)
            stats = pool.statistics()
            assert (stats.size, stats.in_use, stats.creating) == (1, 0, 0)


@pytest.mark.parametrize("policy", ["transaction", "session"])
def test_release_on_a_silent_network_is_cut_off_at_reset_timeout(
    mariadb: Any, admin: MariaAdmin, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The reset of a release (ROLLBACK, COM_RESET_CONNECTION) gets no answer: cut off, discarded."""
    caplog.set_level(logging.INFO, logger="reclaim")
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        adapter = PyMySQLAdapter(reset_timeout=0.3)
        pool = make_pool(mariadb, admin, max_size=1, port=proxy.port, adapter=adapter, reset=policy)
        with pool:
            lease = pool.acquire()
            one(lease.value, "SELECT 1")  # autocommit off: the release rolls back
            release_cut_off(pool, lease, proxy, caplog.records)
            with pool.acquire() as conn:
                assert one(conn, "SELECT 1") == (1,)


def test_release_that_puts_autocommit_back_on_a_silent_network_is_cut_off(
    mariadb: Any, admin: MariaAdmin, caplog: pytest.LogCaptureFixture
) -> None:
    """A borrower switched autocommit on: switching it back off (SET AUTOCOMMIT) is a round
    trip too, bounded by reset_timeout like the rollback (it used to wait for the network)."""
    caplog.set_level(logging.INFO, logger="reclaim")
    with FaultProxy((mariadb.host, mariadb.port)) as proxy:
        adapter = PyMySQLAdapter(reset_timeout=0.3)
        pool = make_pool(mariadb, admin, max_size=1, port=proxy.port, adapter=adapter)
        with pool:
            lease = pool.acquire()
            lease.value.autocommit(True)  # no rollback due on release, only autocommit to restore
            one(lease.value, "SELECT 1")
            release_cut_off(pool, lease, proxy, caplog.records)
            with pool.acquire() as conn:
                assert one(conn, "SELECT @@autocommit") == (0,)


def test_fork_child_gets_its_own_connections_and_parent_keeps_working(
    mariadb: Any, admin: MariaAdmin
) -> None:
    """A pool used before fork(): the child makes its own session; the parent's survives."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    pool = make_pool(mariadb, admin, max_size=2)
    try:
        with pool.acquire() as conn:
            parent_id = one(conn, "SELECT CONNECTION_ID()")[0]
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with the pool's thread alive
            pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(read_end)
                with pool.acquire() as conn:
                    child_id = one(conn, "SELECT CONNECTION_ID()")[0]
                os.write(write_end, str(child_id).encode())
                pool.close()
                import gc

                gc.collect()
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            child_id = int(reader.read() or b"0")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_id not in (0, parent_id)
        with pool.acquire() as conn:
            assert one(conn, "SELECT CONNECTION_ID()") == (parent_id,)
    finally:
        pool.close()
