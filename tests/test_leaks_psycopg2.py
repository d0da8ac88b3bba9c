"""psycopg2 connections as the leak tracker follows them, against the real server.

libpq opens the socket from C code and psycopg2's connection is a C type: before this kind, one
left open was an untracked descriptor with no line, and one the garbage collector closed (a
connection pool dropped with its idle connections, as peewee's tests do) was not seen at all.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from _dbserver import pg_conninfo
from _leakhelp import ClosesAtDel, Watch, assert_site, ignore_gc_warnings, leakwatch, line, reclaim_run_json
from reclaim.leaks import context

__all__ = ["leakwatch"]  # the fixture, imported for pytest

psycopg2 = pytest.importorskip("psycopg2")
extras = pytest.importorskip("psycopg2.extras")

pytestmark = pytest.mark.postgres


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_connection_left_open_is_reported_at_its_line_and_only_once(leakwatch: Watch, postgres: Any) -> None:
    """Reported as psycopg2, with where it connects and the backend's pid; its socket is not
    reported again as an untracked descriptor."""
    conn = psycopg2.connect(**pg_conninfo(postgres))
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["psycopg2"]
        leak = leakwatch.one("psycopg2")
        assert_site(leak, at)
        where = f"{postgres.user}@{postgres.host}:{postgres.port}/{postgres.database}"
        assert leak.description == f"connection {where} (backend pid {conn.info.backend_pid})"
    finally:
        conn.close()
    assert leakwatch.leaks() == []


def test_a_connect_stubbed_to_return_no_connection_returns_what_it_returned(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg2's own tests stub its C ``_connect`` to record its arguments and return None:
    tracked, ``connect()`` raised TypeError (no weak reference to None), and the stub was given
    reclaim's connection class where the program passed none (``test_module.py``'s
    ``ConnectTestCase`` asserts ``connection_factory`` is None)."""
    seen: list[tuple[str, Any]] = []

    def stub(dsn: str, connection_factory: Any = None, async_: bool = False) -> None:
        seen.append((dsn, connection_factory))

    monkeypatch.setattr(psycopg2, "_connect", stub)
    assert psycopg2.connect("dbname=app host=nowhere") is None
    assert psycopg2.connect("dbname=app", connection_factory=psycopg2.extensions.connection) is None
    assert seen == [("dbname=app host=nowhere", None), ("dbname=app", psycopg2.extensions.connection)]
    assert leakwatch.leaks() == []


def test_a_tracked_connection_takes_no_attribute_as_psycopg2s_takes_none(
    leakwatch: Watch, postgres: Any
) -> None:
    """Tracked, psycopg2's connection still has no ``__dict__``: an attribute set on it fails as
    it does untracked; a ``LoggingConnection`` (a factory with one) still keeps its own."""
    conn = psycopg2.connect(**pg_conninfo(postgres))
    try:
        with pytest.raises(AttributeError, match="has no attribute 'app_state'"):
            conn.app_state = 1
        assert not hasattr(conn, "__dict__")
    finally:
        conn.close()
    logged = psycopg2.connect(**pg_conninfo(postgres), connection_factory=extras.LoggingConnection)
    try:
        logged.app_state = 1
        assert vars(logged)["app_state"] == 1
    finally:
        logged.close()
    assert leakwatch.leaks() == []


def test_connections_closed_are_not_reported_and_keep_their_factorys_class(
    leakwatch: Watch, postgres: Any
) -> None:
    """close() releases it, whatever ``connection_factory`` made it (given by keyword or in its
    place); the connection is still an instance of that class."""
    plain = psycopg2.connect(**pg_conninfo(postgres))
    by_keyword = psycopg2.connect(connection_factory=extras.DictConnection, **pg_conninfo(postgres))
    in_place = psycopg2.connect("", extras.DictConnection, **pg_conninfo(postgres))
    assert isinstance(plain, psycopg2.extensions.connection)
    assert isinstance(by_keyword, extras.DictConnection) and isinstance(in_place, extras.DictConnection)
    assert len(leakwatch.leaks("psycopg2")) == 3
    for conn in (plain, by_keyword, in_place):
        with conn, conn.cursor() as cur:  # ends the transaction; closes the cursor, not the connection
            cur.execute("SELECT 1")
        conn.close()
    del plain, by_keyword, in_place, conn
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_pooled_connections_dropped_open_are_reported_as_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    """A pool dropped with its idle connections (never closed) leaves them to the collector."""
    pool = [psycopg2.connect(**pg_conninfo(postgres)) for _ in range(2)]
    at = line() - 1
    del pool
    gc.collect()
    found = leakwatch.leaks("psycopg2")
    assert len(found) == 2, leakwatch.records()
    for leak in found:
        assert_site(leak, at)
        assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connection_dropped_open_in_a_reference_cycle_is_still_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    conn = psycopg2.connect(**pg_conninfo(postgres))
    at = line() - 1
    cycle: list[Any] = [conn]  # psycopg2's connection takes no attributes: a list makes the cycle
    cycle.append(cycle)
    del conn, cycle
    gc.collect()
    leak = leakwatch.one("psycopg2")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connection_its_owner_closes_when_collected_in_a_cycle_is_closed_by_the_gc(
    leakwatch: Watch, postgres: Any
) -> None:
    """The owner's ``__del__`` closes the connection, both collected in one cycle (the
    connection's weak reference cleared before that ``__del__`` runs): the collector's doing."""
    owner = ClosesAtDel()
    owner.resource = psycopg2.connect(**pg_conninfo(postgres))
    at = line() - 1
    del owner
    gc.collect()
    leak = leakwatch.one("psycopg2")
    assert_site(leak, at)
    assert leak.state == "collected" and leak.closed_by_gc


@pytest.mark.parametrize("dropped", ["last reference", "reference cycle"])
def test_connection_broken_by_the_server_then_dropped_is_not_closed_by_the_gc(
    leakwatch: Watch, postgres: Any, dropped: str
) -> None:
    """A connection whose backend was terminated has no socket left (libpq dropped it when it
    read the end; psycopg2's ``closed`` is 2): dropped unclosed, as aiopg's pool drops such
    ones, whether by its last reference or in a reference cycle, it left nothing to the
    collector, so it is not a leak."""
    conn = psycopg2.connect(**pg_conninfo(postgres))
    killer = psycopg2.connect(**pg_conninfo(postgres))
    try:
        killer.autocommit = True
        with killer.cursor() as cur:  # waits (up to 10 s) for the backend to be gone
            cur.execute("SELECT pg_terminate_backend(%s, 10000)", [conn.info.backend_pid])
            assert cur.fetchone() == (True,)
    finally:
        killer.close()
    with pytest.raises(psycopg2.OperationalError):
        conn.cursor().execute("SELECT 1")
    assert conn.closed == 2
    assert leakwatch.leaks() == []
    cycle: list[Any] = [conn]  # psycopg2's connection takes no attributes: a list makes the cycle
    if dropped == "reference cycle":
        cycle.append(cycle)
    del conn, cycle
    gc.collect()
    assert leakwatch.leaks() == []


# -- psycopg2.pool ------------------------------------------------------------------------------


def test_a_connection_an_atexit_handler_closes_is_no_leak(tmp_path: Path, postgres: Any) -> None:
    """``atexit.register(conn.close)``: the close is called from C with no Python frame under it
    (it raised in reclaim's hook and closed nothing), and a driver's connection it closes is the
    program's cleanup, as a file's is; one nobody closes is still reported."""
    source = f"""\
import atexit, psycopg2
closed = psycopg2.connect(**{pg_conninfo(postgres)!r})
atexit.register(closed.close)
kept = psycopg2.connect(**{pg_conninfo(postgres)!r})
"""
    report, stderr = reclaim_run_json(tmp_path, source)
    assert "Exception ignored" not in stderr
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("psycopg2", 4)], stderr


pool_module = pytest.importorskip("psycopg2.pool")


@pytest.mark.parametrize("name", ["SimpleConnectionPool", "ThreadedConnectionPool"])
def test_a_pool_used_and_closed_reports_nothing(leakwatch: Watch, postgres: Any, name: str) -> None:
    """getconn()/putconn(), a connection made past minconn, closeall(): nothing is left."""
    pool = getattr(pool_module, name)(1, 3, **pg_conninfo(postgres))
    first, second = pool.getconn(), pool.getconn()  # the second is made now: the pool's own too
    for conn in (first, second):
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
        pool.putconn(conn)
    pool.closeall()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("name", ["SimpleConnectionPool", "ThreadedConnectionPool"])
def test_a_pool_never_closed_is_one_entry_at_its_line(leakwatch: Watch, postgres: Any, name: str) -> None:
    """Not each of its connections at psycopg2's line that connected it: the pool, at the line
    that made it; a connection handed out and never given back, at the getconn() that took it."""
    pool = getattr(pool_module, name)(2, 3, **pg_conninfo(postgres))
    made = line() - 1
    kept = pool.getconn()
    took = line() - 1
    pool.putconn(pool.getconn())
    try:
        leaks = sorted(leakwatch.leaks(), key=lambda leak: leak.seq)
        assert [leak.kind for leak in leaks] == ["psycopg2", "psycopg2"], leakwatch.records()
        entry, out = leaks
        assert_site(entry, made)
        assert entry.description == f"psycopg2.pool.{name} not closed (closeall())"
        assert entry.details == {"class": f"psycopg2.pool.{name}", "problem": "not closed (closeall())"}
        assert_site(out, took)
        assert out.details["backend_pid"] == kept.info.backend_pid
        assert "checked out of a psycopg2 pool and never given back (putconn())" in out.headline()
    finally:
        pool.putconn(kept)
        pool.closeall()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_pools_holder_does_not_take_a_connection_checked_out_and_kept(
    leakwatch: Watch, postgres: Any
) -> None:
    """What the pytest plugin asks at a test's end (see hand_over_held): a module fixture's pool
    references what getconn() handed out in its ``_used``, and a test's connection never given
    back was the fixture's, reported at the session's end if ever; with ``maxconn`` reached,
    the next test failed with "connection pool exhausted" and no test was blamed."""
    pool = pool_module.SimpleConnectionPool(1, 2, **pg_conninfo(postgres))
    try:
        with context("reclaim-test: keeps"):
            kept = pool.getconn()
            took = line() - 1
        assert leakwatch.tracker.hand_over_held("reclaim-test: keeps", {"fixture": pool}) == 0
        [leak] = leakwatch.leaks("psycopg2", context="reclaim-test: keeps")
        assert_site(leak, took)
        pool.putconn(kept)
    finally:
        pool.closeall()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_pool_dropped_unclosed_is_the_collectors(leakwatch: Watch, postgres: Any) -> None:
    """Its connections go with it: the pool is the one entry, closed by the garbage collector."""
    pool = pool_module.ThreadedConnectionPool(2, 2, **pg_conninfo(postgres))
    at = line() - 1
    pool.putconn(pool.getconn())
    del pool
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("psycopg2", "collected")
    assert_site(leak, at)
