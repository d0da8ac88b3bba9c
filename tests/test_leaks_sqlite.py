"""sqlite3 under the tracker: the program sees what it would see untracked (CPython's own
test_sqlite3 run under ``pytest --reclaim`` found where it did not)."""

from __future__ import annotations

import contextlib
import gc
import json
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from _leakhelp import Watch, assert_site, ignore_gc_warnings, leakwatch, line, python_prog

__all__ = ["leakwatch"]  # the fixture, imported for pytest

#: A program that calls sqlite3.connect() with its arguments after the database given
#: positionally, untracked then tracked, from the same line, and prints the warnings each call
#: raised as (category, message, filename, lineno, whether the caller's registry holds it).
POSITIONAL = """
import json, sqlite3, warnings
from reclaim.leaks import Tracker

def connect():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sqlite3.connect(":memory:", 5.0, 0, None, True, sqlite3.Connection).close()
    return [(w.category.__name__, str(w.message), w.filename, w.lineno) for w in caught]

untracked = connect()
tracker = Tracker().start()
tracked = connect()
tracker.stop()
print(json.dumps([untracked, tracked]))
"""


def test_a_warning_sqlite3_connect_raises_names_the_programs_line_not_reclaims(tmp_path: Path) -> None:
    """Python 3.13 deprecates connect()'s arguments after the database given positionally,
    warning about the Python frame that called it: the program's line, never the wrapper's."""
    out = python_prog(tmp_path, POSITIONAL)
    untracked, tracked = json.loads(out.stdout.strip().splitlines()[-1])
    assert tracked == untracked
    if sys.version_info >= (3, 13):  # the comparison compares something here
        assert untracked
        assert {(Path(filename).name, lineno) for _, _, filename, lineno in untracked} == {("prog.py", 8)}


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_close_that_raises_leaves_the_connection_open(leakwatch: Watch) -> None:
    """close() from a thread other than the connection's raises ProgrammingError and closes
    nothing (CPython's ThreadTests do it): the connection is still open, and a leak if dropped."""
    conn = sqlite3.connect(":memory:")
    at = line() - 1
    refused: list[str] = []

    def close(conn: sqlite3.Connection) -> None:
        try:
            conn.close()
        except sqlite3.ProgrammingError as exc:
            refused.append(str(exc))  # not exc: its traceback's frames hold the connection

    closer = threading.Thread(target=close, args=(conn,))
    closer.start()
    closer.join()
    assert refused
    conn.execute("select 1")  # still open
    assert_site(leakwatch.one("sqlite3"), at)
    del conn
    gc.collect()
    leak = leakwatch.one("sqlite3")
    assert_site(leak, at)
    assert leak.state == "collected"


class _Unopened(sqlite3.Connection):
    """A factory whose ``__init__`` never calls Connection's: no database is opened."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass


class _WithAttributes(sqlite3.Connection):
    """A factory of the program's own: its connections take attributes, tracked or not."""


def test_a_tracked_connection_takes_the_attributes_an_untracked_one_takes(leakwatch: Watch) -> None:
    """Tracked, sqlite3's connection has no ``__dict__`` either: an attribute set on it fails as
    it does untracked (a suite passing under tracking must not break without it), while one of a
    ``factory=`` class that has a ``__dict__`` still takes it."""
    with contextlib.closing(sqlite3.connect(":memory:")) as conn:
        with pytest.raises(AttributeError, match="has no attribute 'app_state'"):
            conn.app_state = 1  # type: ignore[attr-defined]
        assert not hasattr(conn, "__dict__")
    with contextlib.closing(sqlite3.connect(":memory:", factory=_WithAttributes)) as mine:
        mine.app_state = 1  # type: ignore[attr-defined]
        assert vars(mine) == {"app_state": 1}
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("closed", [False, True])
def test_a_connection_its_factory_never_opened_holds_nothing(leakwatch: Watch, closed: bool) -> None:
    """CPython's test_connection_factories makes one: dropped, or its close() refused (nothing to
    close), it is no leak."""
    conn = sqlite3.connect(":memory:", factory=_Unopened)
    assert isinstance(conn, _Unopened)
    if closed:
        with pytest.raises(sqlite3.ProgrammingError, match="__init__ not called"):
            conn.close()
    del conn
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
@pytest.mark.parametrize("dropped", [False, True])
def test_a_connection_left_open_after_its_with_block_is_reported_saying_the_block_does_not_close(
    leakwatch: Watch, dropped: bool
) -> None:
    """``with conn:`` commits and closes nothing (CPython's test_backup did so twelve times): the
    report says so, since "release it with a with-block" is what the program thinks it did."""
    with sqlite3.connect(":memory:") as conn:
        at = line() - 1
        conn.execute("create table t (x)")
    if dropped:
        del conn
        gc.collect()
    leak = leakwatch.one("sqlite3")
    assert_site(leak, at)
    assert leak.details["with_block"] is True
    assert "does not close" in leak.description and "contextlib.closing()" in leak.description
    assert leak.state == ("collected" if dropped else "open")
    if not dropped:
        conn.close()
        assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_kept_for_transactions_each_a_with_block_is_not_told_to_use_closing(
    leakwatch: Watch,
) -> None:
    """A connection a writer keeps for its transactions, each ``with conn:`` (datasette's writer
    thread): left open, it is reported, but not told that its with-block does not close it and to
    use ``contextlib.closing()``, which would close it after its first transaction."""
    conn = sqlite3.connect(":memory:")
    try:
        for value in range(3):
            with conn:
                conn.execute("create table if not exists t (x)")
                conn.execute("insert into t values (?)", (value,))
        leak = leakwatch.one("sqlite3")
        assert "with_block" not in leak.details
        assert leak.description == ":memory:"
    finally:
        conn.close()


def test_a_connection_closed_after_its_with_block_is_no_leak(leakwatch: Watch) -> None:
    with contextlib.closing(sqlite3.connect(":memory:")) as conn, conn:
        conn.execute("create table t (x)")
    assert leakwatch.leaks() == []
