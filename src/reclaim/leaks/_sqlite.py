"""sqlite3 connections never closed, on every version (Python warns only from 3.13).

``sqlite3.Connection`` supports no weak references and its ``close`` is C code,
so ids alone would leave us blind to a connection the GC closed. Instead
``sqlite3.connect`` is wrapped to pass a ``factory`` that subclasses the one
asked for (``sqlite3.Connection`` by default) by adding only a ``close`` that
releases the record: the subclass gets weak references for free, ``isinstance``
checks keep working, and every other behaviour is the base class's. Note that
``with conn:`` commits and does *not* close, so it is no release: its ``__exit__`` marks the
connection, whose report then says so. The cost is that ``type(conn)`` is the subclass (named
like its base) while tracking.
Connections made through a ``connect`` imported before tracking started are
not seen, nor are connections whose factory cannot be subclassed.

A connection to an in-memory database that a library's plumbing opens directly
(Django's ``get_new_connection``, see :data:`._owning.PROCESS_WIDE`) is never
recorded: Django's ``close()`` keeps it, as closing would drop the database (its
test database, by default). To a file database it is recorded as any other:
that one ``close()`` closes.

An aiosqlite connection is a worker thread that runs the sqlite3 connection's calls. The
thread is the connection's machinery (its start is owned), so the sqlite3 connection is the
one leak, at the program's ``await aiosqlite.connect()`` through the thread's start. Dropped
unclosed, its ``__del__`` has the worker close the sqlite3 connection: a close from the worker
thread that looked like the program's, and left nothing reported. The garbage collector closed
it: the ``__del__`` is wrapped to mark the connection, whose close then says so. (Marked, not
reported at once: its descriptors are open until the worker gets to it, and would show as
untracked ones meanwhile.)
"""

from __future__ import annotations

import os
import sys
from types import ModuleType

from reclaim import _sites

from . import _fds, _records
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, own
from ._patch import Patches, call_as, closing_subclass, instance_dict, with_factory
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install", "install_aiosqlite"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_subclasses: dict[type, type] = {}
#: reclaim's note on a tracked connection whose aiosqlite connection was dropped unclosed (kept
#: by instance_dict(): a tracked connection has no ``__dict__``, as sqlite3's has none): the
#: program's line that dropped it, read in the ``__del__`` (the worker thread that closes the
#: connection afterwards has no such line on its stack), as a 1-tuple.
DROPPED = "_reclaim_dropped"
# Position of ``factory`` in sqlite3.connect(database, timeout, detect_types,
# isolation_level, check_same_thread, factory, ...).
_FACTORY_ARG = 5
_URI_ARG = 7  # ... factory, cached_statements, uri
#: Whether ``sqlite3.connect()`` warns of arguments after the database given positionally (3.13
#: deprecates them), about the Python frame that called it: so it is called as from the program's.
_WARNS_POSITIONAL = sys.version_info >= (3, 13)


def _tracked(base: type) -> type:
    return closing_subclass(base, _closing, _subclasses, on_exit=_exited)


#: What a connection left open after its with-block is described with: the block looks like the
#: release, so "release it with a with-block" would say nothing (CPython's own test_backup did it).
WITH_BLOCK = "its with-block commits or rolls back, it does not close: contextlib.closing() closes"


def _exited(conn: Any) -> None:
    """*conn* ends a with-block: said in its report, should it be left open (see WITH_BLOCK). Not
    once it ended a second: a connection kept for many transactions, each a with-block
    (datasette's writer thread's), is meant to stay open, and closing() would not fit it."""
    rec = _records.live.get(id(conn))
    if rec is not None and rec() is conn and len(rec.info) == 2:
        rec.info = (*rec.info, True)
    elif rec is not None and rec() is conn and rec.info[2] is True:
        rec.info = (*rec.info[:2], False)


def _closing(conn: Any, frame: Any) -> None:
    notes = instance_dict(conn, create=False)
    dropped = notes.pop(DROPPED, None) if notes is not None else None
    if dropped is not None:  # an aiosqlite worker closing it for the collector
        _closed_by_collector(conn, dropped[0])
    else:
        _records.closing(conn, frame)  # its owner's __del__, or the program


def _is_open(obj: Any, rec: Record | None) -> bool:
    sqlite3 = sys.modules["sqlite3"]
    try:
        obj.total_changes  # noqa: B018 - raises ProgrammingError once the connection is closed
    except sqlite3.ProgrammingError:
        return False
    return True


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    database = rec.info[0]
    details: Details = {"database": database}
    if obj is not None and _is_open(obj, rec):
        details["in_transaction"] = obj.in_transaction
    if len(rec.info) > 2 and rec.info[2]:  # it ended one with-block (see _exited)
        details["with_block"] = True
        return f"{database} ({WITH_BLOCK})", details
    return f"{database}", details


def _files_of(database: str, uri: bool) -> tuple[str, ...]:
    """The database file a connection opens (none: in memory or a temporary database).

    A ``file:`` name is a URI with ``uri=True``, and also without it when SQLite was
    built with SQLITE_USE_URI (Debian's is): then both readings are kept.
    """
    if not database.startswith("file:"):
        return () if database in (":memory:", "") else (database,)
    import urllib.parse  # here: only URIs need it, and the tracker's import stays small

    # file:path, file:///abs/path or file://localhost/abs/path, then ?query and #fragment
    rest, _, query = database[5:].partition("#")[0].partition("?")
    if rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        rest = slash + path if host in ("", "localhost") else ""
    path = urllib.parse.unquote(rest)
    memory = "mode=memory" in query.split("&") or path in (":memory:", "")
    return (*(() if memory else (path,)), *(() if uri else (database,)))


def _in_memory(database: str) -> bool:
    """Whether *database* is held in memory: ``:memory:``, or a ``file:`` URI with ``mode=memory``
    or the path ``:memory:`` (Django's test database is ``file:memorydb_default?mode=memory&...``)."""
    if not database.startswith("file:"):
        return database == ":memory:"
    path, _, query = database[5:].partition("#")[0].partition("?")
    return "mode=memory" in query.split("&") or path == ":memory:"


def _paths(obj: Any, rec: Record) -> tuple[str, ...]:
    # sqlite's C code holds the database (and -journal/-wal/-shm) descriptors: they are this
    # connection's, not untracked ones.
    return tuple(os.path.realpath(path) for path in rec.info[1])


def _attached(obj: Any, rec: Record) -> tuple[str, ...]:
    # The files of the databases ATTACHed since: sqlite's C code opened them for the connection,
    # which closes them as it closes (a session fixture's, attached to in a test, is no leak of
    # the test's). Asked with a query on the connection, so only about a descriptor nothing else
    # explains; a trace callback the program set sees it.
    sqlite3 = sys.modules["sqlite3"]
    try:
        rows = obj.execute("PRAGMA database_list").fetchall()
    except sqlite3.ProgrammingError:
        # A connection of another thread (check_same_thread) refuses the query: every aiosqlite
        # connection, made and used in its worker thread. What it may have attached is then any
        # database file open with no owner that Python code saw open it.
        return _database_files()
    return tuple(os.path.realpath(file) for _, _, file in rows if file)


#: The first bytes of every SQLite database file that has been written to.
_HEADER = b"SQLite format 3\x00"


def _database_files() -> tuple[str, ...]:
    """The SQLite database files the process has open, told by their header.

    A file opened from Python (``open``, ``os.open``) is tracked, so one that shows as untracked
    was opened by C code: with this header, sqlite's. An attached database never written to is
    still empty, without a header: it stays unexplained.
    """
    found = []
    for fd in _fds.list_fds() or ():
        target = _fds.describe_fd(fd)
        if target is not None and target.startswith("/") and _fds.head(fd, len(_HEADER)) == _HEADER:
            found.append(target)  # the -wal, -shm and -journal files are named after it
    return tuple(found)


register(
    Kind(
        "sqlite3",
        is_open=_is_open,
        describe=_describe,
        paths=_paths,
        death_leak=True,
        later_paths=_attached,
    )
)


def install(patches: Patches, sqlite3: ModuleType) -> None:
    """Wrap ``sqlite3.connect`` (and ``sqlite3.dbapi2.connect``, the same function)."""
    connect = sqlite3.connect

    def connect_(database: Any, *args: Any, **kwargs: Any) -> Any:
        given = with_factory(args, kwargs, _FACTORY_ARG, "factory", sqlite3.Connection, _tracked)
        if given is None:
            return connect(database, *args, **kwargs)  # not a class of ours to subclass: left alone
        args, kwargs = given
        caller = sys._getframe(1)
        if args and _WARNS_POSITIONAL:
            conn = call_as(caller, connect, (database, *args), kwargs)
        else:
            conn = connect(database, *args, **kwargs)
        if not _is_open(conn, None):  # its factory's __init__ never called Connection's: nothing open
            return conn
        name = os.fsdecode(database) if isinstance(database, (bytes, os.PathLike)) else str(database)
        uri = bool(args[_URI_ARG - 1] if len(args) >= _URI_ARG else kwargs.get("uri", False))
        if caller.f_code in PLUMBING and _in_memory(name):
            return conn  # kept for the process by the library that opened it (see the docstring)
        info = (name, _files_of(name, uri))
        _records.new(conn, "sqlite3", info, _records.capture(caller, _records.depth))
        return conn

    connect_.__doc__ = connect.__doc__
    patches.set(sqlite3, "connect", connect_)
    dbapi2 = sys.modules.get("sqlite3.dbapi2")
    if dbapi2 is not None and getattr(dbapi2, "connect", None) is connect:
        patches.set(dbapi2, "connect", connect_)


def install_aiosqlite(patches: Patches, module: ModuleType) -> None:
    """Own ``aiosqlite.core.Connection.__await__`` (it starts the worker); wrap its ``__del__``."""
    cls = getattr(module, "Connection", None)
    if not isinstance(cls, type):
        return
    start = vars(cls).get("__await__")
    if start is not None:
        own(start)
    delete = vars(cls).get("__del__")
    if delete is None:  # an aiosqlite whose dropped connection keeps its thread: it stays open
        return

    def __del__(self: Any) -> None:
        conn = getattr(self, "__dict__", {}).get("_connection")
        # Unclosed: the stop() below has the worker close it. Only a tracked connection (see
        # _tracked) is noted: a plain one has neither a __dict__ nor weak references.
        if conn is not None and any(type(conn) is cls for cls in _subclasses.values()):
            notes = instance_dict(conn, create=True)
            if notes is not None:
                notes[DROPPED] = (_sites.dropped_by_program(sys._getframe()),)
        delete(self)

    patches.set(cls, "__del__", __del__)


def _closed_by_collector(conn: Any, dropped: tuple[Any, int] | None) -> None:
    rec = _records.live.get(id(conn))
    if rec is not None and rec() is conn:
        _records.leak(rec, _records.COLLECTED)
        rec.dropped = dropped
