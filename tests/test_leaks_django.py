"""Django's database connections: one Django opened for a thread and never closed is the
driver's leak (here sqlite3's, on a database file), at the program's line that queried, and its
description names the alias, whether ``CONN_MAX_AGE`` keeps it, and that
``connections.close_all()`` closes it: Django closes none when a thread or the program ends.
"""

from __future__ import annotations

import gc
import threading
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import Watch, ignore_gc_warnings, leakwatch, line

__all__ = ["leakwatch"]  # the fixture, imported for pytest


@pytest.fixture
def connections(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A Django connection handler of its own: alias ``files``, a sqlite3 database file (and
    ``default``, which Django requires, never used)."""
    django = pytest.importorskip("django")
    from django.conf import settings
    from django.db.utils import ConnectionHandler

    if not settings.configured:
        settings.configure()
    django.setup()  # apps ready: a query before warns
    database = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "app.db")}
    return ConnectionHandler(
        {"default": {**database, "NAME": ":memory:"}, "files": {**database, "CONN_MAX_AGE": request.param}}
    )


def query_in_a_thread(connections: Any, close: bool) -> int:
    """Query in a thread of its own, which ends; the line of the query."""
    where = []

    def work() -> None:
        with connections["files"].cursor() as cursor:
            where.append(line())
            cursor.execute("select 1")
        if close:
            connections.close_all()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    return where[0] - 1


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize(
    ("connections", "kept"),
    [
        (0, "Django closes it when a request ends"),
        (60, "persistent, CONN_MAX_AGE=60: Django keeps it"),
        (None, "persistent, CONN_MAX_AGE=None: Django keeps it"),
    ],
    ids=["closed-at-request-end", "persistent", "unlimited"],
    indirect=["connections"],
)
def test_a_connection_a_thread_left_to_django_names_its_alias_and_the_fix(
    leakwatch: Watch, connections: Any, kept: str
) -> None:
    """It read as a bare sqlite3 connection to close where it was queried."""
    queried = query_in_a_thread(connections, close=False)
    leak = leakwatch.one("sqlite3")
    assert [frame.lineno for frame in leak.frames if frame.filename == __file__] == [queried]
    assert f", Django's connection 'files' ({kept}" in leak.description
    assert leak.description.endswith("django.db.connections.close_all() where done with it)")
    assert leak.details["django_alias"] == "files"
    assert leak.details["conn_max_age"] == connections.settings["files"]["CONN_MAX_AGE"]
    # The connection, dropped with its thread's Django state (a reference cycle), is collected
    # here, where its ResourceWarning (3.13) is ignored: not in a later test.
    del leak
    gc.collect()


@pytest.mark.parametrize("connections", [60], indirect=True)
def test_a_connection_closed_with_close_all_is_no_leak(leakwatch: Watch, connections: Any) -> None:
    """``connections.close_all()`` in the thread closes it: nothing is reported."""
    query_in_a_thread(connections, close=True)
    assert leakwatch.leaks() == []
