"""Django's database connections: which alias a driver's connection serves, and who closes it.

Django opens one connection per alias and thread on its first query
(``BaseDatabaseWrapper.connect``) and closes it at the end of a request: at once, or once
older than ``CONN_MAX_AGE`` (a persistent connection, kept for the thread's next requests).
It never closes one when the thread or the program ends. Left so, it was reported as the
driver's (psycopg, psycopg2, sqlite3...) at the line of that first query, with the usual
advice to close it there; but the query is not where the fix goes, and the entry said
neither that Django kept it nor which database alias it was. ``connect`` is wrapped to note
the alias and ``CONN_MAX_AGE`` of the connection it made: the report names them and says
that ``django.db.connections.close_all()`` closes it, where the thread or program is done.

Only a connection a driver integration records is noted: Django's connection to an
in-memory sqlite3 database is none (see :mod:`._sqlite`).

Under pytest-django, while its ``django_db_setup`` fixture is up (see :data:`KEEPER`), a
connection Django opens in the thread that set it up is that fixture's, whichever test's query
opened it: Django's ``TestCase.tearDownClass`` and a transactional test's teardown close every
connection, the next test's query opens its alias's again, and ``django.db.connections`` keeps it
for every later test until the fixture's teardown closes it. It was the leak of that next test
alone, whichever it was in the run's order. One opened in another thread is the test's still.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from types import ModuleType

from . import _records
from ._kinds import Details
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install", "noted"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: id(record) -> (record, alias, CONN_MAX_AGE) of a connection Django made (a record's seq is
#: its generation's, shared); the oldest go first past :data:`_records.MAX_COLLECTED`, as the
#: collected leaks that would be described with them do. The record is kept for its id.
NOTES: dict[int, tuple[Record, str, Any]] = {}

FIX = "django.db.connections.close_all() where done with it"

#: (context label, thread ident) of the pytest-django ``django_db_setup`` fixture set up now, set
#: by the pytest plugin: what Django connects in that thread is labelled the fixture's.
KEEPER: tuple[str, int] | None = None


def _note(wrapper: Any) -> None:
    conn = wrapper.connection
    rec = _records.live.get(id(conn))
    if rec is None or rec() is not conn:
        return  # not one a driver integration records
    NOTES[id(rec)] = (rec, str(wrapper.alias), wrapper.settings_dict.get("CONN_MAX_AGE", 0))
    keeper = KEEPER
    if keeper is not None and keeper[1] == threading.get_ident():
        rec.context = keeper[0]
    if len(NOTES) > _records.MAX_COLLECTED:
        del NOTES[next(iter(NOTES))]


def noted(rec: Record) -> tuple[str, Details] | None:
    """What to add to the description (and details) of *rec*, if Django made its connection."""
    note = NOTES.get(id(rec))
    if note is None or note[0] is not rec:
        return None
    _, alias, max_age = note
    kept = "Django closes it when a request ends"
    if max_age is None or max_age > 0:  # None: for good
        kept = f"persistent, CONN_MAX_AGE={max_age}: Django keeps it for the thread's next requests"
    text = f", Django's connection {alias!r} ({kept}, never when a thread or the program does; {FIX})"
    return text, {"django_alias": alias, "conn_max_age": max_age}


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap ``django.db.backends.base.base.BaseDatabaseWrapper.connect``."""
    cls = getattr(module, "BaseDatabaseWrapper", None)
    connect = vars(cls).get("connect") if isinstance(cls, type) else None
    if connect is None:
        return

    @functools.wraps(connect)
    def connect_(self: Any, *args: Any, **kwargs: Any) -> Any:
        result = connect(self, *args, **kwargs)
        with contextlib.suppress(Exception):  # noting must never break the program's connect
            _note(self)
        return result

    patches.set(cls, "connect", connect_)
