"""psycopg2 connections as the leak tracker follows them, against the real server.

libpq opens the socket from C code and psycopg2's connection is a C type: before this kind, one
left open was an untracked descriptor with no line, and one the garbage collector closed (a
connection pool dropped with its idle connections, as peewee's tests do) was not seen at all.
"""

from __future__ import annotations

import gc
from typing import Any

import pytest

from _dbserver import pg_conninfo
from _leakhelp import Watch, assert_site, ignore_gc_warnings, leakwatch, line

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
