"""reclaim.db.ConnectionPool with psycopg 3 (sync) against the real PostgreSQL server.

Each pool gets a unique application_name so the test counts (and kills) only its own
server sessions. Faults are real: pg_terminate_backend, stopping the cluster, a TCP
proxy that cuts or black-holes the traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import reclaim
import reclaim.db
from _dbserver import (
    PgAdmin,
    can_control_pg,
    hammer,
    idle_past_probe,
    kill_under_load,
    pg_conninfo,
    pg_start,
    pg_stop,
    release_cut_off,
    reuse_bytes,
    unique,
    wait_until,
)
from _proxy import FaultProxy
from reclaim.db import PsycopgAdapter
from reclaim.db._psycopg import _PRIVATE, CheckTimeout

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres

LOW_ROLE = "reclaim_low"


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


def make_pool(postgres: Any, app: str, **kw: Any) -> reclaim.db.ConnectionPool:
    conninfo = pg_conninfo(postgres, application_name=app)
    for key in ("host", "port", "connect_timeout"):
        if key in kw:
            conninfo[key] = kw.pop(key)
    return reclaim.db.ConnectionPool(psycopg.connect, **conninfo, **kw)


def _connect_timeout(conn: Any) -> str | None:
    """The connection's connect_timeout as libpq has it (None: not set)."""
    values = {o.keyword: o.val for o in conn.pgconn.info}
    value = values.get(b"connect_timeout")
    return None if value is None else value.decode()


@pytest.mark.parametrize("given", ["none", "keyword", "conninfo", "environment"])
def test_connects_are_bounded_by_a_connect_timeout_unless_one_is_set(
    postgres: Any, app: str, given: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg's own default is 130 s; the pool's connections get 10 s, unless the user set one."""
    conninfo = pg_conninfo(postgres, application_name=app)
    del conninfo["connect_timeout"]  # the tests' own
    args: tuple[str, ...] = ()
    if given == "keyword":
        conninfo["connect_timeout"] = 4
    elif given == "conninfo":
        args = ("connect_timeout=3",)
    elif given == "environment":
        monkeypatch.setenv("PGCONNECT_TIMEOUT", "5")
    expected = {"none": "10", "keyword": "4", "conninfo": "3", "environment": "5"}[given]
    with reclaim.db.ConnectionPool(psycopg.connect, *args, **conninfo) as pool, pool.acquire() as conn:
        assert _connect_timeout(conn) == expected


@pytest.fixture
def low_role(admin: PgAdmin) -> str:
    """A NOLOGIN role without privileges, that the test user may SET ROLE to (idempotent)."""
    with admin._lock:
        admin.conn.execute(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{LOW_ROLE}') "
            f"THEN CREATE ROLE {LOW_ROLE} NOLOGIN; END IF; END $$"
        )
    return LOW_ROLE


# -- adapter wiring and the default reset -----------------------------------------------


def test_psycopg_connections_get_the_psycopg_adapter(postgres: Any, app: str) -> None:
    """ConnectionPool(psycopg.connect, ...) picks the psycopg adapter from the registry."""
    with make_pool(postgres, app, max_size=1) as pool:
        assert isinstance(pool.adapter, PsycopgAdapter)
        assert pool.adapter.session is False
        with pool.acquire() as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)


def test_release_of_an_idle_connection_sends_nothing_to_the_server(postgres: Any, app: str) -> None:
    """Reset and check cost no round trip when no transaction is open and the connection is fresh."""
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        pool = make_pool(postgres, app, max_size=1, port=proxy.port, autocommit=True)
        with pool:
            with pool.acquire() as conn:
                conn.execute("SELECT 1").fetchone()
            before = proxy.bytes_up
            with pool.acquire() as conn:
                conn.execute("SELECT 1").fetchone()
            one_query = proxy.bytes_up - before
            before = proxy.bytes_up
            for _ in range(50):
                with pool.acquire():
                    pass
            with pool.acquire() as conn:
                conn.execute("SELECT 1").fetchone()
            assert proxy.bytes_up - before == one_query


def test_after_check_after_idle_the_check_is_one_empty_query(postgres: Any, app: str) -> None:
    """Reused within ``check_after``, a connection costs no round trip; idle longer, exactly one
    empty query (the server's cheapest answer) goes up before it is lent."""
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        pool = make_pool(postgres, app, max_size=1, port=proxy.port, autocommit=True, check_after=0.05)
        with pool:
            # 'Q', its int32 length (5), an empty string's NUL
            assert reuse_bytes(pool, proxy, check_after=0.05) == (0, 6)
            assert pool.statistics().discarded_by_check == 0


def test_open_transaction_is_rolled_back_before_the_next_borrower(postgres: Any, app: str) -> None:
    """Default policy: rows written in a transaction left open are gone, the next borrower starts IDLE."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.execute("CREATE TEMP TABLE t (a int)")
            conn.commit()
            conn.execute("INSERT INTO t VALUES (1)")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
        with pool.acquire() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)


def test_failed_transaction_is_rolled_back(postgres: Any, app: str) -> None:
    """A transaction left in error (INERROR) is rolled back, the connection stays in the pool."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            first = conn.info.backend_pid
            with pytest.raises(psycopg.errors.DivisionByZero):
                conn.execute("SELECT 1 / 0")
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pool.acquire() as conn:
            assert conn.info.backend_pid == first
            assert conn.execute("SELECT 2").fetchone() == (2,)


def _prepared_on_server(conn: Any) -> int:
    row = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
    conn.rollback()
    return int(row[0])


def test_plain_open_transaction_is_rolled_back_without_psycopgs_rollback_machinery(
    postgres: Any, app: str
) -> None:
    """The usual release (a transaction open, nothing prepared) is one libpq ROLLBACK, not
    psycopg's generator-driven rollback(): about 28 k client instructions less per release."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.execute("SELECT 1").fetchone()
        calls: list[int] = []
        plain_rollback = conn.rollback
        conn.rollback = lambda: calls.append(1) or plain_rollback()
        with pool.acquire() as conn:
            conn.execute("CREATE TEMP TABLE t (a int)")
            conn.commit()
            conn.execute("INSERT INTO t VALUES (1)")
        with pool.acquire() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        assert calls == []  # the INSERT's transaction went by the lean path


def test_release_keeps_psycopgs_prepared_statements_as_its_own_rollback_would(
    postgres: Any, app: str
) -> None:
    """A borrower that prepared statements: psycopg's rollback() forgets them (DEALLOCATE ALL),
    so the pool lets it; server and psycopg's cache agree and the next borrower prepares anew."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.execute("SELECT %s::int", [1], prepare=True).fetchone()
            assert _prepared_on_server(conn) == 1
            conn.execute("SELECT %s::int + 1", [1], prepare=True).fetchone()  # left open
        with pool.acquire() as conn:
            assert _prepared_on_server(conn) == 0
            assert conn.execute("SELECT %s::int", [2], prepare=True).fetchone() == (2,)
            assert _prepared_on_server(conn) == 1


def test_release_clears_psycopgs_usage_counts_as_its_own_rollback_would(postgres: Any, app: str) -> None:
    """psycopg prepares a query on its fifth use, counting uses since the last rollback: after
    each borrower's four uses and the pool's reset, nothing is ever prepared, as with rollback()."""
    with make_pool(postgres, app, max_size=1) as pool:
        for _ in range(3):
            with pool.acquire() as conn:
                for _ in range(4):
                    conn.execute("SELECT %s::int", [1]).fetchone()
                here = conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()
                assert here == (0,)  # four uses since the last rollback: not prepared


def test_a_psycopg_laid_out_otherwise_gets_its_own_rollback(postgres: Any) -> None:
    """The lean rollback reads psycopg's private state; lacking any of it, rollback() is used."""
    from types import SimpleNamespace

    from reclaim.db._psycopg import _lean_queue

    with psycopg.connect(**pg_conninfo(postgres)) as conn:
        assert _lean_queue(conn) in ("_to_flush", "_maint_commands")
    prepared = SimpleNamespace(_names={}, _counts={})
    fake = SimpleNamespace(_num_transactions=0, _tpc=None, _prepared=prepared)  # no _pipeline
    assert _lean_queue(fake) is None
    fake._pipeline = None
    assert _lean_queue(fake) is None  # neither upkeep queue
    prepared._to_flush = []
    assert _lean_queue(fake) == "_to_flush"


def test_release_inside_an_open_transaction_block_discards_the_connection(postgres: Any, app: str) -> None:
    """A lease given back inside an unfinished ``conn.transaction()`` block: psycopg forbids
    rollback() there, so the connection is discarded, never handed on with the block open."""
    with make_pool(postgres, app, max_size=1) as pool:
        lease = pool.acquire()
        conn = lease.__enter__()
        first = conn.info.backend_pid
        block = conn.transaction()  # kept referenced: collecting it would end the block
        block.__enter__()
        conn.execute("SELECT 1").fetchone()
        lease.release()
        with pool.acquire() as conn:
            assert conn.info.backend_pid != first
        assert pool.statistics().discarded_broken == 1


def test_client_side_options_are_put_back(postgres: Any, app: str) -> None:
    """autocommit / read_only / isolation_level changed by a borrower are restored for the next one."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            conn.autocommit = True
            conn.read_only = True
            conn.isolation_level = psycopg.IsolationLevel.SERIALIZABLE
        with pool.acquire() as conn:
            assert conn.autocommit is False
            assert conn.read_only is None
            assert conn.isolation_level is None


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("autocommit", True),
        ("read_only", True),
        ("isolation_level", "SERIALIZABLE"),
        ("deferrable", True),
    ],
)
def test_each_client_side_option_alone_is_put_back(postgres: Any, app: str, option: str, value: Any) -> None:
    """Each option on its own: the release compares them all through one reader."""
    if option == "isolation_level":
        value = psycopg.IsolationLevel.SERIALIZABLE
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            before = getattr(conn, option)
            # psycopg 3.0-3.3 keep each option in an attribute its property returns: the
            # adapter reads those (one C call per release); a psycopg that changes this
            # falls back to the properties and this says so.
            assert conn._reclaim_options is _PRIVATE
            setattr(conn, option, value)
        with pool.acquire() as conn:
            assert getattr(conn, option) == before


def test_an_error_in_the_body_that_broke_the_connection_discards_it(
    postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A disconnect error raised inside `with` discards the connection; the next one is new."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pytest.raises(psycopg.OperationalError), pool.acquire() as conn:
            first = conn.info.backend_pid
            with admin._lock:
                admin.conn.execute("SELECT pg_terminate_backend(%s, 5000)", (first,))
            conn.execute("SELECT 1")
        with pool.acquire() as conn:
            assert conn.info.backend_pid != first
        stats = pool.statistics()
        assert stats.discarded_broken == 1


# -- session isolation ------------------------------------------------------------------


def _dirty_the_session(conn: Any, role: str) -> None:
    """Borrower A: everything a tenant could leave behind in a PostgreSQL session."""
    conn.autocommit = True
    conn.execute("SET search_path TO pg_catalog")
    conn.execute("SET statement_timeout = 1234")
    conn.execute("CREATE TEMP TABLE secret_a (v text)")
    conn.execute("INSERT INTO secret_a VALUES ('tenant A')")
    conn.execute("SELECT pg_advisory_lock(4242)")
    conn.execute("LISTEN tenant_a_channel")
    conn.execute("PREPARE tenant_a_stmt AS SELECT 'A'")
    conn.execute(f"SET ROLE {role}")
    conn.autocommit = False
    conn.execute("SELECT 1")  # leaves a transaction open


def test_session_reset_leaves_nothing_of_borrower_a(
    postgres: Any, admin: PgAdmin, app: str, low_role: str
) -> None:
    """reset='session': B on the same backend sees no search_path, role, temp table, lock, LISTEN, tx."""
    with make_pool(postgres, app, max_size=1, reset="session") as pool:
        with pool.acquire() as conn:
            backend = conn.info.backend_pid
            login = conn.execute("SELECT session_user").fetchone()[0]
            conn.rollback()
            _dirty_the_session(conn, low_role)
            assert conn.execute("SELECT current_user").fetchone() == (low_role,)
        with pool.acquire() as conn:
            assert conn.info.backend_pid == backend  # the same physical connection
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            row = conn.execute(
                "SELECT current_user, current_setting('search_path'), current_setting('statement_timeout'), "
                "to_regclass('pg_temp.secret_a') IS NULL, "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
                "(SELECT count(*) FROM pg_listening_channels()), "
                "(SELECT count(*) FROM pg_prepared_statements WHERE name = 'tenant_a_stmt')"
            ).fetchone()
            assert row == (login, '"$user", public', "0", True, 0, 0, 0)
        # Another session can take the advisory lock A held: it was released, not kept.
        with admin._lock:
            assert admin.conn.execute("SELECT pg_try_advisory_lock(4242)").fetchone() == (True,)
            admin.conn.execute("SELECT pg_advisory_unlock(4242)")


def test_session_reset_keeps_psycopgs_prepared_statements_in_step_with_the_server(
    postgres: Any, app: str
) -> None:
    """reset='session': DISCARD ALL deallocates every prepared statement, and psycopg forgets
    them on every release (by itself it notices only a DISCARD ALL text it has not run yet on
    the connection): the next borrower never runs a statement the server dropped."""
    with make_pool(postgres, app, max_size=1, reset="session", autocommit=True) as pool:
        for uses in (1, 6, 1, 6):  # released with nothing prepared, then with one prepared
            with pool.acquire() as conn:
                for _ in range(uses):  # prepared on its fifth use (prepare_threshold)
                    assert conn.execute("SELECT %s::int", [uses]).fetchone() == (uses,)
                assert _prepared_on_server(conn) == (uses > 4)  # no rollback forgets it
        stats = pool.statistics()
        assert (stats.created, stats.discarded_broken) == (1, 0)


def test_session_reset_drops_the_notify_and_notice_handlers_borrower_a_added(postgres: Any, app: str) -> None:
    """reset='session': callbacks A registered on the connection object never see B's
    notifications or notices (asyncpg's listeners are dropped likewise); the handler the
    pool's configure= installed stays."""
    seen: list[tuple[str, str]] = []

    def configure(conn: Any) -> None:
        conn.add_notice_handler(lambda d: seen.append(("configure", d.message_primary)))

    with make_pool(postgres, app, max_size=1, reset="session", autocommit=True, configure=configure) as pool:
        with pool.acquire() as conn:
            conn.add_notify_handler(lambda n: seen.append(("A notify", n.payload)))
            conn.add_notice_handler(lambda d: seen.append(("A notice", d.message_primary)))
        with pool.acquire() as conn:
            conn.execute("LISTEN tenant_b")
            conn.execute("NOTIFY tenant_b, 'B secret'")
            conn.execute("DO $$ BEGIN RAISE NOTICE 'B notice'; END $$")
            conn.execute("UNLISTEN *")
    assert seen == [("configure", "B notice")]


def test_session_reset_puts_back_the_client_side_state_borrower_a_changed(postgres: Any, app: str) -> None:
    """reset='session': a dumper or row factory A set on the connection object never sees B's
    parameters or rows, and A's cursor factory and prepare threshold are gone; what the pool's
    configure= set stays."""
    seen: list[object] = []

    class Spy(psycopg.types.string.StrDumper):
        def dump(self, obj: str) -> Any:
            seen.append(obj)
            return super().dump(obj)

    def configure(conn: Any) -> None:
        conn.row_factory = psycopg.rows.dict_row
        conn.adapters.register_loader("numeric", psycopg.types.numeric.FloatLoader)

    with make_pool(postgres, app, max_size=1, reset="session", autocommit=True, configure=configure) as pool:
        with pool.acquire() as conn:
            configured = (conn.cursor_factory, conn.server_cursor_factory, conn.prepare_threshold)
            conn.adapters.register_dumper(str, Spy)
            conn.row_factory = lambda cursor: lambda values: seen.append(values) or values
            conn.cursor_factory = type("ACursor", (psycopg.Cursor,), {})
            conn.server_cursor_factory = type("AServerCursor", (psycopg.ServerCursor,), {})
            conn.prepare_threshold = None
        with pool.acquire() as conn:
            row = conn.execute("SELECT %s::text AS v, 1.5::numeric AS n", ["B secret"]).fetchone()
            assert row == {"v": "B secret", "n": 1.5} and isinstance(row["n"], float)
            assert (conn.cursor_factory, conn.server_cursor_factory, conn.prepare_threshold) == configured
    assert seen == []


def test_session_reset_drops_the_notifications_borrower_a_left_unread(postgres: Any, app: str) -> None:
    """reset='session': a notification that reached A's session before the release (kept by
    psycopg for A's conn.notifies()) is not read by B, another tenant."""
    with make_pool(postgres, app, max_size=1, reset="session", autocommit=True) as pool:
        with pool.acquire() as conn:
            conn.execute("LISTEN tenant_a")
            conn.execute("NOTIFY tenant_a, 'A secret'")  # delivered with the answer: kept unread
        with pool.acquire() as conn:
            assert [n.payload for n in conn.notifies(timeout=0)] == []


def test_role_change_does_not_leak_to_the_next_borrower_under_session_reset(
    postgres: Any, app: str, low_role: str
) -> None:
    """Privilege boundary: SET ROLE and SET SESSION AUTHORIZATION by A are undone before B."""
    with make_pool(postgres, app, max_size=1, reset="session", autocommit=True) as pool:
        with pool.acquire() as conn:
            login = conn.execute("SELECT session_user").fetchone()[0]
            conn.execute(f"SET SESSION AUTHORIZATION {low_role}")
            assert conn.execute("SELECT session_user, current_user").fetchone() == (low_role, low_role)
        with pool.acquire() as conn:
            assert conn.execute("SELECT session_user, current_user").fetchone() == (login, login)
            conn.execute(f"SET ROLE {low_role}")
        with pool.acquire() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (login,)


def test_default_reset_always_ends_the_open_transaction(postgres: Any, app: str, low_role: str) -> None:
    """reset='transaction' (default): a transaction A left open (with SET LOCAL ROLE in it) is gone."""
    with make_pool(postgres, app, max_size=1) as pool:
        with pool.acquire() as conn:
            login = conn.execute("SELECT session_user").fetchone()[0]
            conn.execute(f"SET LOCAL ROLE {low_role}")
            conn.execute("SET LOCAL search_path TO pg_catalog")
            conn.execute("SELECT pg_advisory_xact_lock(4343)")
        with pool.acquire() as conn:
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            row = conn.execute(
                "SELECT current_user, current_setting('search_path'), "
                "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid())"
            ).fetchone()
            assert row == (login, '"$user", public', 0)


@pytest.mark.parametrize("policy", ["transaction", "session"])
def test_a_two_phase_transaction_left_prepared_never_reaches_the_next_borrower(
    postgres: Any, admin: PgAdmin, app: str, policy: str
) -> None:
    """A borrower that prepared a two-phase transaction (tpc_prepare) and released the
    connection: the session is idle, but psycopg still tracks A's transaction, so B's commit()
    would fail and B's tpc_commit() would finish A's. The connection is discarded; the prepared
    transaction stays on the server for whoever finishes it (tpc_recover)."""
    gtrid = unique("reclaim_tpc")
    with make_pool(postgres, app, max_size=1, reset=policy) as pool:
        with pool.acquire() as conn:
            conn.tpc_begin(conn.xid(1, gtrid, "a"))
            conn.execute("SELECT 1")
            try:
                conn.tpc_prepare()
            except psycopg.NotSupportedError:
                pass  # max_prepared_transactions = 0 on this server: psycopg's state is the same
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        with pool.acquire() as conn:
            conn.execute("SELECT 1")
            conn.commit()
        assert pool.statistics().discarded_broken == 1
    with admin._lock:
        for (gid,) in admin.conn.execute(
            "SELECT gid FROM pg_prepared_xacts WHERE gid LIKE %s", [f"%{gtrid}%"]
        ).fetchall():
            admin.conn.execute(psycopg.sql.SQL("ROLLBACK PREPARED {}").format(gid))


def test_default_reset_keeps_session_state_as_documented(postgres: Any, app: str, low_role: str) -> None:
    """reset='transaction' does not undo session-level SET ROLE: the README says to use 'session'."""
    with make_pool(postgres, app, max_size=1, autocommit=True) as pool:
        with pool.acquire() as conn:
            conn.execute(f"SET ROLE {low_role}")
        with pool.acquire() as conn:
            assert conn.execute("SELECT current_user").fetchone() == (low_role,)
            conn.execute("RESET ROLE")


# -- faults -----------------------------------------------------------------------------


@pytest.mark.parametrize("autocommit", [False, True], ids=["transactions", "autocommit"])
def test_killed_backends_fail_only_operations_in_flight(
    postgres: Any, admin: PgAdmin, app: str, autocommit: bool
) -> None:
    """16 threads, pool of 4, every backend terminated: later acquires all get live connections.

    Server sessions are sampled throughout and never exceed max_size. With autocommit the
    release sends nothing, so only the reuse probe can tell a killed session.
    """
    pool = make_pool(postgres, app, max_size=4, acquire_timeout=10.0, autocommit=autocommit)
    pids: list[int] = []

    def kill() -> None:
        with admin._lock:
            pids.extend(
                r[0]
                for r in admin.conn.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s", (app,)
                ).fetchall()
            )
            results = admin.conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM unnest(%s::int[]) AS pid", (pids,)
            ).fetchall()
        assert len(pids) == 4 and all(r[0] for r in results)

    failed, most_sessions = kill_under_load(
        pool,
        query=lambda conn: conn.execute("SELECT 1").fetchone(),
        errors=psycopg.OperationalError,
        sessions=lambda: admin.sessions(app),
        kill=kill,
    )
    try:
        # Each killed session fails at most one operation: the one in flight on it, or the next
        # one it is lent to when reused within probe_after (1 ms) of its release, which skips
        # the socket probe. Then it is discarded, and every later acquire gets a live session.
        assert failed <= 4
        assert most_sessions <= 4
        assert not set(pids) & set(admin.pids(app))  # every killed backend was replaced
        stats = pool.statistics()
        assert stats.size <= 4 and stats.in_use == 0
    finally:
        pool.close()
    wait_until(lambda: admin.sessions(app) == 0, 10, "the pool's sessions to end")


@pytest.mark.parametrize("autocommit", [False, True], ids=["transactions", "autocommit"])
def test_backends_killed_while_idle_are_never_lent(
    postgres: Any, admin: PgAdmin, app: str, autocommit: bool
) -> None:
    """Every idle pooled backend terminated, then 16 threads start: not one operation fails."""
    pool = make_pool(postgres, app, max_size=4, autocommit=autocommit)
    try:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            lease.value.execute("SELECT 1").fetchone()
            lease.release()
        with admin._lock:
            admin.conn.execute(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity WHERE application_name = %s",
                (app,),
            )
        idle_past_probe(pool)
        assert hammer(pool, lambda conn: conn.execute("SELECT 1").fetchone()) == []
        assert pool.statistics().discarded_by_check == 4
    finally:
        pool.close()


@pytest.fixture
def pg_restartable(postgres: Any) -> Iterator[Any]:
    """A server the test may stop: started again (and waited for) whatever the outcome."""
    if not can_control_pg():
        pytest.skip("stopping PostgreSQL needs root and pg_ctlcluster")
    try:
        yield postgres
    finally:
        pg_start(postgres)


@pytest.mark.server_restart
def test_wait_at_startup_fails_naming_the_refusal_and_succeeds_once_the_server_answers(
    postgres: Any, app: str
) -> None:
    """``pool.wait()`` as a service's startup check: min_size connections, or a PoolTimeout that
    says why (here: nothing listens on the port)."""
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        with make_pool(postgres, app, min_size=2, port=closed_port.getsockname()[1]) as pool:
            with pytest.raises(reclaim.PoolTimeout, match="refused") as caught:
                pool.wait(timeout=0.5)
            assert "0 of min_size=2" in str(caught.value)
            assert isinstance(caught.value.__cause__, psycopg.OperationalError)
    finally:
        closed_port.close()
    with make_pool(postgres, app, min_size=2) as pool:
        pool.wait(timeout=10)
        assert pool.statistics().idle == 2


def test_server_restart_fails_fast_then_recovers(pg_restartable: Any, app: str) -> None:
    """While the server is down acquires fail fast naming the refusal; once back the pool serves."""
    postgres = pg_restartable
    pool = make_pool(postgres, app, max_size=4, acquire_timeout=5.0, connect_timeout=2)
    try:
        leases = [pool.acquire() for _ in range(4)]
        for lease in leases:
            lease.value.execute("SELECT 1").fetchone()
            lease.release()
        pg_stop(postgres)
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as caught, pool.acquire() as conn:
                conn.execute("SELECT 1")
            assert time.monotonic() - started < 5.0
            assert "refused" in str(caught.value).lower()
        pg_start(postgres)
        back = time.monotonic()

        def serves() -> bool:
            try:
                with pool.acquire() as conn:
                    return conn.execute("SELECT 1").fetchone() == (1,)
            except psycopg.OperationalError:
                return False

        wait_until(serves, 2.0, "the pool to serve again")
        assert time.monotonic() - back < 2.0
        stats = pool.statistics()
        assert stats.size <= 4 and stats.in_use == 0
        assert stats.created - stats.closed == stats.size - stats.creating
    finally:
        pool.close()
    stats = pool.statistics()
    assert stats.created == stats.closed  # every connection object made was closed


def test_black_holed_network_is_bounded_by_the_timeouts_then_recovers(postgres: Any, app: str) -> None:
    """A silent network: check and connect give up within their timeouts; healing restores service."""
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        adapter = PsycopgAdapter(check_timeout=0.5)
        pool = make_pool(
            postgres,
            app,
            max_size=2,
            port=proxy.port,
            connect_timeout=2,
            adapter=adapter,
            check_after=0.0,  # round trip on every reuse, so the silence is noticed at once
            autocommit=True,
        )
        with pool:
            with pool.acquire() as conn:
                conn.execute("SELECT 1").fetchone()
            proxy.blackhole()
            started = time.monotonic()
            with pytest.raises(psycopg.OperationalError) as caught:
                pool.acquire()
            elapsed = time.monotonic() - started
            # the check timed out (0.5 s), then a new connect timed out (2 s)
            assert "timeout" in str(caught.value).lower()
            assert elapsed < 0.5 + 2.0 + 5.0
            stats = pool.statistics()
            assert stats.discarded_by_check == 1 and stats.size == 0
            proxy.heal()
            with pool.acquire() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("policy", ["transaction", "session"])
def test_release_on_a_silent_network_is_cut_off_at_reset_timeout(
    postgres: Any, app: str, policy: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The ROLLBACK of a release gets no answer: cut off at reset_timeout, the connection discarded."""
    caplog.set_level(logging.INFO, logger="reclaim")
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        adapter = PsycopgAdapter(reset_timeout=0.3)
        pool = make_pool(postgres, app, max_size=1, port=proxy.port, adapter=adapter, reset=policy)
        with pool:
            lease = pool.acquire()
            lease.value.execute("SELECT 1").fetchone()  # autocommit off: a transaction is open
            release_cut_off(pool, lease, proxy, caplog.records)
            with pool.acquire() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)


def test_adapter_timeouts_are_validated_by_name() -> None:
    with pytest.raises(ValueError, match="reset_timeout must be > 0 seconds"):
        PsycopgAdapter(reset_timeout=0)
    with pytest.raises(TypeError, match="check_timeout must be a number of seconds"):
        PsycopgAdapter(check_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="session must be True or False, got 'no'"):
        PsycopgAdapter(session="no")  # type: ignore[arg-type]
    assert PsycopgAdapter(reset_timeout=None).reset_timeout is None  # None: unbounded


def test_one_adapter_given_to_two_pools_keeps_each_pools_policy() -> None:
    """reset= and check_after= are the pool's: they are not written into the caller's adapter."""
    adapter = PsycopgAdapter(reset_timeout=2.0)
    shared = reclaim.db.ConnectionPool(psycopg.connect, "host=127.0.0.1", adapter=adapter, reset="session")
    own = reclaim.db.ConnectionPool(psycopg.connect, "host=127.0.0.1", adapter=adapter, check_after=3.0)
    try:
        assert (shared.adapter.session, own.adapter.session, adapter.session) == (True, False, False)
        assert (own.adapter.check_after, adapter.check_after) == (3.0, 0.5)
        assert own.adapter.reset_timeout == shared.adapter.reset_timeout == 2.0
    finally:
        shared.close()
        own.close()


def test_an_adapter_option_given_to_the_pool_says_how_to_set_it() -> None:
    """reset_timeout= is the adapter's: given to the pool, it would reach psycopg.connect."""
    with pytest.raises(TypeError, match=r"pass adapter=reclaim\.db\.PsycopgAdapter\(reset_timeout=\.\.\.\)"):
        reclaim.db.ConnectionPool(psycopg.connect, "host=127.0.0.1", reset_timeout=2.0)
    with pytest.raises(TypeError, match=r"reclaim\.db\.AsyncPsycopgAdapter\(check_timeout=\.\.\.\)"):
        reclaim.db.AsyncConnectionPool(psycopg.AsyncConnection.connect, "host=127.0.0.1", check_timeout=1)


def test_check_timeout_is_reported_as_a_check_timeout(postgres: Any) -> None:
    """The bounded check raises CheckTimeout (an OperationalError) on a silent network."""
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        conn = psycopg.connect(**pg_conninfo(postgres, port=proxy.port))
        try:
            adapter = PsycopgAdapter(check_after=0.0, check_timeout=0.3)
            adapter.configure(conn)
            adapter.check(conn)
            proxy.blackhole()
            with pytest.raises(CheckTimeout):
                adapter.check(conn)
            assert adapter.is_broken(conn)  # left mid-query: never reused
        finally:
            conn.close()


def test_cut_connections_are_replaced_after_the_network_heals(postgres: Any, app: str) -> None:
    """Connections reset by the network are never lent again; new ones work once it heals."""
    with FaultProxy((postgres.host, postgres.port)) as proxy:
        pool = make_pool(postgres, app, max_size=2, port=proxy.port, connect_timeout=2)
        with pool:
            leases = [pool.acquire() for _ in range(2)]
            for lease in leases:
                lease.value.execute("SELECT 1")
                lease.release()
            proxy.cut()
            idle_past_probe(pool)
            with pytest.raises(psycopg.OperationalError):
                pool.acquire()  # both idle ones are found dead by the probe, the new connect is reset
            proxy.heal()
            with pool.acquire() as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
            assert pool.statistics().discarded_by_check == 2


def test_fork_child_gets_its_own_connections_and_parent_keeps_working(
    postgres: Any, admin: PgAdmin, app: str
) -> None:
    """A pool used before fork(): the child makes its own session; the parent's session survives."""
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    pool = make_pool(postgres, app, max_size=2)
    try:
        with pool.acquire() as conn:
            parent_backend = conn.info.backend_pid
        read_end, write_end = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with the pool's thread alive
            pid = os.fork()
        if pid == 0:  # child
            code = 1
            try:
                os.close(read_end)
                with pool.acquire() as conn:
                    child_backend = conn.info.backend_pid
                    conn.execute("SELECT 1").fetchone()
                os.write(write_end, str(child_backend).encode())
                pool.close()
                import gc

                gc.collect()
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as reader:
            child_backend = int(reader.read() or b"0")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert child_backend not in (0, parent_backend)
        with pool.acquire() as conn:
            assert conn.info.backend_pid == parent_backend
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert parent_backend in admin.pids(app)
    finally:
        pool.close()


def test_reclaim_db_imports_and_works_without_any_database_driver(tmp_path: Any) -> None:
    """The drivers are optional extras: with psycopg, asyncpg and PyMySQL absent, reclaim.db works."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "for name in ('psycopg', 'psycopg_pool', 'asyncpg', 'pymysql'):\n"
        "    sys.modules[name] = None  # import fails as if not installed\n"
        "import sqlite3, reclaim.db\n"
        "with reclaim.db.ConnectionPool(sqlite3.connect, ':memory:', max_size=1) as pool:\n"
        "    with pool.acquire() as conn:\n"
        "        assert conn.execute('SELECT 1').fetchone() == (1,)\n"
        "assert 'psycopg' in reclaim.db.ADAPTERS\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
