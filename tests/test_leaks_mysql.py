"""mysqlclient's, MySQL Connector/Python's and aiomysql's connections as the leak tracker follows
them, against the real MariaDB: one entry naming the connection at the program's line, not an
untracked descriptor (mysqlclient, Connector's C extension), a bare socket at the driver's line
(Connector in pure Python, aiomysql), or nothing at all (either dropped unclosed).

Each test skips when its driver is not installed; the server is the ``mariadb`` service.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from _dbserver import maria_kwargs
from _leakhelp import ClosesAtDel, Watch, assert_site, ignore_gc_warnings, leakwatch, line, python_prog

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytestmark = pytest.mark.mariadb


def _mysqlclient() -> Any:
    # ImportError too: installed, its C extension may not load (libmariadb missing).
    return pytest.importorskip("MySQLdb", reason="mysqlclient is not usable here", exc_type=ImportError)


def _connector() -> Any:
    return pytest.importorskip(
        "mysql.connector", reason="mysql-connector-python is not usable here", exc_type=ImportError
    )


def _target(mariadb: Any) -> str:
    return f"{mariadb.user}@{mariadb.host}:{mariadb.port}/{mariadb.database}"


def _connector_kwargs(mariadb: Any) -> dict[str, Any]:
    """Keyword arguments for a pure-Python Connector/Python connection to the test server."""
    kwargs = maria_kwargs(mariadb, use_pure=True)
    kwargs["connection_timeout"] = kwargs.pop("connect_timeout")
    return kwargs


def _kill(mariadb: Any, thread_id: int) -> None:
    """End the server's session *thread_id* from another connection, as an admin would."""
    pymysql = pytest.importorskip("pymysql")
    with pymysql.connect(**maria_kwargs(mariadb)) as admin, admin.cursor() as cur:
        cur.execute(f"KILL {int(thread_id)}")


# -- mysqlclient ------------------------------------------------------------------------


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_mysqlclient_connection_left_open_is_one_entry_at_its_line(leakwatch: Watch, mariadb: Any) -> None:
    """Not an untracked descriptor with no line: the connection, at the program's line, naming its
    server, database and session, holding its socket's descriptor."""
    mysqldb = _mysqlclient()
    conn = mysqldb.connect(**maria_kwargs(mariadb))
    at = line() - 1
    try:
        conn.cursor().execute("SELECT 1")
        assert [leak.kind for leak in leakwatch.leaks()] == ["mysqlclient"]
        leak = leakwatch.one("mysqlclient")
        assert_site(leak, at)
        assert leak.description == f"connection {_target(mariadb)} (server thread id {conn.thread_id()})"
        assert leak.details["fd"] == conn.fileno()
        assert leak.details["class"] == "MySQLdb.connections.Connection"
    finally:
        conn.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_mysqlclient_connection_dropped_open_is_closed_by_the_gc(leakwatch: Watch, mariadb: Any) -> None:
    """Its C dealloc closes it: before, nothing at all was reported."""
    mysqldb = _mysqlclient()
    mysqldb.connect(**maria_kwargs(mariadb)).cursor().execute("SELECT 1")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("mysqlclient")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_mysqlclient_connection_its_owner_closes_in_a_del_is_closed_by_the_gc(
    leakwatch: Watch, mariadb: Any
) -> None:
    mysqldb = _mysqlclient()
    owner = ClosesAtDel()
    owner.resource = mysqldb.connect(**maria_kwargs(mariadb))
    at = line() - 1
    del owner
    gc.collect()
    leak = leakwatch.one("mysqlclient")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_mysqlclient_connection_configured_from_an_option_file_names_no_unknown_user(
    leakwatch: Watch, mariadb: Any, tmp_path: Path
) -> None:
    """Host, user and database read from ``read_default_file`` are not the connection's attributes:
    it names where it connected (its host info), not ``None@None:3306``."""
    mysqldb = _mysqlclient()
    option_file = tmp_path / "my.cnf"
    option_file.write_text(f"[client]\nhost = {mariadb.host}\nuser = {mariadb.user}\n", encoding="utf-8")
    conn = mysqldb.connect(read_default_file=str(option_file), port=mariadb.port, password=mariadb.password)
    try:
        leak = leakwatch.one("mysqlclient")
        assert leak.details["target"] == f"{mariadb.host}:{mariadb.port}"
    finally:
        conn.close()


def test_mysqlclient_connections_the_program_closes_are_not_reported(leakwatch: Watch, mariadb: Any) -> None:
    mysqldb = _mysqlclient()
    conn = mysqldb.connect(**maria_kwargs(mariadb))
    conn.close()
    with mysqldb.connect(**maria_kwargs(mariadb)) as other:
        other.cursor().execute("SELECT 1")
    del conn, other
    gc.collect()
    assert leakwatch.leaks() == []


def test_mysqlclient_connection_the_server_broke_holds_nothing_then_dropped_is_no_leak(
    leakwatch: Watch, mariadb: Any
) -> None:
    """libmariadb closes the socket of a connection the server ended while mysqlclient still says
    it is open: neither kept nor dropped is it a leak, and its old descriptor's number is not
    taken for it."""
    mysqldb = _mysqlclient()
    conn = mysqldb.connect(**maria_kwargs(mariadb))
    _kill(mariadb, conn.thread_id())
    with pytest.raises(mysqldb.OperationalError):
        conn.cursor().execute("SELECT 1")
    assert conn.open
    assert leakwatch.leaks() == []
    del conn
    gc.collect()
    assert leakwatch.leaks() == []


# -- MySQL Connector/Python, pure Python ---------------------------------------------------


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_connector_connection_left_open_is_one_entry_not_a_socket_at_the_drivers_line(
    leakwatch: Watch, mariadb: Any
) -> None:
    connector = _connector()
    conn = connector.connect(**_connector_kwargs(mariadb))
    at = line() - 1
    try:
        assert [leak.kind for leak in leakwatch.leaks()] == ["mysql-connector"]
        leak = leakwatch.one("mysql-connector")
        assert_site(leak, at)
        assert leak.description == f"connection {_target(mariadb)} (server thread id {conn.connection_id})"
        assert leak.details["fd"] == conn._socket.sock.fileno()
        assert [(held.kind, held.details["fd"]) for held in leak.holds] == [("socket", leak.details["fd"])]
    finally:
        conn.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connector_socket_swapped_out_and_dropped_is_still_reported(leakwatch: Watch, mariadb: Any) -> None:
    """A test that puts a stand-in in place of the connection's socket drops the real one open:
    that socket, closed by the collector, is the leak, though the connection is closed later."""
    connector = _connector()
    socket = pytest.importorskip("socket")
    conn = connector.connect(**_connector_kwargs(mariadb))
    at = line() - 1
    stand_in, other_end = socket.socketpair()
    try:
        conn._socket.sock = stand_in
        gc.collect()
        conn.close()
    finally:
        stand_in.close()
        other_end.close()
    (leak,) = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("socket", "collected")
    assert (__file__, at) in [(frame.filename, frame.lineno) for frame in leak.frames]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connector_connection_dropped_open_is_closed_by_the_gc(leakwatch: Watch, mariadb: Any) -> None:
    connector = _connector()
    connector.connect(**_connector_kwargs(mariadb)).cmd_query("SELECT 1")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("mysql-connector")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)
    assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_connector_connection_dropped_in_a_reference_cycle_is_still_closed_by_the_gc(
    leakwatch: Watch, mariadb: Any
) -> None:
    """Its socket's finalizer may close the socket before the connection's ``__del__`` runs: never
    closed by the program, it is the collector's all the same."""
    connector = _connector()
    conn = connector.connect(**_connector_kwargs(mariadb))
    at = line() - 1
    conn.cycle = conn
    del conn
    gc.collect()
    leak = leakwatch.one("mysql-connector")
    assert leak.state == "collected" and leak.closed_by_gc
    assert_site(leak, at)


@pytest.mark.parametrize("end", ["close", "disconnect", "shutdown", "with"])
def test_connector_connections_the_program_ends_are_not_reported(
    leakwatch: Watch, mariadb: Any, end: str
) -> None:
    connector = _connector()
    if end == "with":
        with connector.connect(**_connector_kwargs(mariadb)) as conn:
            conn.cmd_query("SELECT 1")
    else:
        conn = connector.connect(**_connector_kwargs(mariadb))
        getattr(conn, end)()
    del conn
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_connector_reconnect_is_a_connection_at_the_line_that_asked(leakwatch: Watch, mariadb: Any) -> None:
    connector = _connector()
    conn = connector.connect(**_connector_kwargs(mariadb))
    try:
        conn.reconnect()
        at = line() - 1
        leak = leakwatch.one("mysql-connector")
        assert_site(leak, at)
        assert leak.details["thread_id"] == conn.connection_id
    finally:
        conn.close()
    assert leakwatch.leaks() == []


# -- MySQL Connector/Python, C extension -----------------------------------------------------


def test_connector_c_extension_connections_are_reported_at_their_lines(tmp_path: Path, mariadb: Any) -> None:
    """``CMySQLConnection`` connects in C, as mysqlclient does: one kept open is an entry at its
    line, one dropped the collector's, one closed nothing. Run in a program of its own that loads
    the extension first (its wheel carries a newer OpenSSL than a process that imported ``ssl``
    first, or libmariadb, can load)."""
    _connector()
    kwargs = maria_kwargs(mariadb)
    kwargs["connection_timeout"] = kwargs.pop("connect_timeout")
    out = python_prog(
        tmp_path,
        f"""
        try:
            import _mysql_connector
        except ImportError:
            raise SystemExit(print("no C extension") or 0)
        import gc
        import mysql.connector
        from reclaim.leaks import Tracker

        tracker = Tracker().start()
        mark = tracker.snapshot()
        kept = mysql.connector.connect(**{kwargs!r})
        mysql.connector.connect(**{kwargs!r})
        mysql.connector.connect(**{kwargs!r}).close()
        gc.collect()
        leaks = tracker.leaks(mark, grace=0)
        print(type(kept).__name__, kept.connection_id)
        print(sorted((leak.kind, leak.state, leak.site and leak.site.lineno) for leak in leaks))
        print([leak.details["thread_id"] for leak in leaks if leak.state == "open"])
        kept.close()
        print([leak for leak in tracker.leaks(mark, grace=0) if leak.state == "open"])
        tracker.stop()
        """,
    )
    if out.stdout.strip() == "no C extension":
        pytest.skip("Connector/Python's C extension does not load here")
    cls, thread_id = out.stdout.splitlines()[0].split()
    assert cls == "CMySQLConnection"
    assert out.stdout.splitlines()[1:] == [
        "[('mysql-connector', 'collected', 13), ('mysql-connector', 'open', 12)]",
        f"[{thread_id}]",
        "[]",
    ]


def test_connector_c_extension_connection_whose_socket_cannot_be_told_is_still_reported(
    tmp_path: Path, mariadb: Any
) -> None:
    """Another socket opened while it connects (here by the program's subclass, as another thread
    could): which is the connection's cannot be told, so the driver says whether it is open."""
    _connector()
    kwargs = maria_kwargs(mariadb)
    kwargs["connection_timeout"] = kwargs.pop("connect_timeout")
    out = python_prog(
        tmp_path,
        f"""
        try:
            import _mysql_connector
        except ImportError:
            raise SystemExit(print("no C extension") or 0)
        import gc
        import socket
        from mysql.connector.connection_cext import CMySQLConnection
        from reclaim.leaks import Tracker

        class Busy(CMySQLConnection):
            opened = []

            @property
            def converter(self):  # read by _open_connection() once connected
                if not self.opened and self._cmysql is not None and self._cmysql.connected():
                    self.opened.extend(socket.socketpair())
                return self.__dict__.get("_converter")

            @converter.setter
            def converter(self, value):
                self.__dict__["_converter"] = value

        tracker = Tracker().start()
        mark = tracker.snapshot()
        kept = Busy(**{kwargs!r})
        Busy(**{kwargs!r})
        for sock in Busy.opened:
            sock.close()
        gc.collect()
        leaks = [leak for leak in tracker.leaks(mark, grace=0) if leak.kind == "mysql-connector"]
        print(sorted((leak.state, leak.site.lineno, leak.details["fd"] is None) for leak in leaks))
        kept.close()
        tracker.stop()
        """,
    )
    if out.stdout.strip() == "no C extension":
        pytest.skip("Connector/Python's C extension does not load here")
    # The first could not be told; the second, made once the extra socket was open, could.
    assert out.stdout.strip() == "[('collected', 27, False), ('open', 26, True)]"


# -- aiomysql ---------------------------------------------------------------------------


def _aiomysql_kwargs(mariadb: Any) -> dict[str, Any]:
    kwargs = maria_kwargs(mariadb)
    kwargs["db"] = kwargs.pop("database")
    return kwargs


def _runner(loop: str) -> Callable[[Coroutine[Any, Any, None]], None]:
    return asyncio.run if loop == "asyncio" else pytest.importorskip("uvloop").run


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aiomysql_connection_left_open_is_one_entry_naming_its_server_and_session(
    leakwatch: Watch, mariadb: Any, loop: str
) -> None:
    """Not a bare socket to port 3306 at asyncio's line under aiomysql's: the connection, at the
    line that awaited ``connect()``, says as whom, to which server and database, and the
    session the server knows it by; its socket (under asyncio's or uvloop's transport) is its."""
    aiomysql = pytest.importorskip("aiomysql")
    kwargs = _aiomysql_kwargs(mariadb)

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())  # after the loop and this task
        conn = await aiomysql.connect(**kwargs)
        at = line() - 1
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
            leak = window.one("aiomysql-connection")
            assert_site(leak, at)
            target = f"{kwargs['user']}@{kwargs['host']}:{kwargs['port']}/{kwargs['db']}"
            assert leak.description == f"{target} (server thread id {conn.server_thread_id[0]})"
            assert (leak.details["target"], leak.details["thread_id"]) == (target, conn.server_thread_id[0])
            assert [held.kind for held in leak.holds] == ["socket"]
            assert [found.kind for found in window.leaks()] == ["aiomysql-connection"]
        finally:
            conn.close()
        await asyncio.sleep(0)  # the transport closes its socket on the loop's next turn
        assert window.leaks() == []

    _runner(loop)(main())


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_aiomysql_connections_the_program_closes_are_not_reported(
    leakwatch: Watch, mariadb: Any, loop: str
) -> None:
    """``close()``, ``await ensure_closed()`` and ``async with`` each end it; one whose session
    the server ended, closed, is not reported either."""
    aiomysql = pytest.importorskip("aiomysql")
    kwargs = _aiomysql_kwargs(mariadb)

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())
        conn = await aiomysql.connect(**kwargs)
        conn.close()
        conn = await aiomysql.connect(**kwargs)
        await conn.ensure_closed()
        async with aiomysql.connect(**kwargs) as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1")
        await asyncio.sleep(0)
        assert window.leaks() == []

    _runner(loop)(main())


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_aiomysql_connection_dropped_open_is_the_collectors_at_its_line(
    leakwatch: Watch, mariadb: Any
) -> None:
    """Its ``__del__`` closes its transport for the garbage collector: the leak is the
    connection's, at its line, with its session, holding its socket."""
    aiomysql = pytest.importorskip("aiomysql")
    kwargs = _aiomysql_kwargs(mariadb)

    async def main() -> None:
        window = Watch(leakwatch.tracker, leakwatch.tracker.snapshot())
        conn = await aiomysql.connect(**kwargs)
        at = line() - 1
        session = conn.server_thread_id[0]
        del conn
        gc.collect()
        await asyncio.sleep(0)
        leak = window.one("aiomysql-connection")
        assert leak.state == "collected" and leak.closed_by_gc
        assert_site(leak, at)
        assert leak.details["thread_id"] == session
        assert [(held.kind, held.state) for held in leak.holds] == [("socket", "collected")]

    asyncio.run(main())


def test_drivers_are_not_loaded_unless_the_program_imports_them(tmp_path: Path) -> None:
    """The integration is loaded with its driver, never at start."""
    out = python_prog(
        tmp_path,
        """
        import sys
        from reclaim.leaks import Tracker

        tracker = Tracker().start()
        print("reclaim.leaks._mysql" in sys.modules, "MySQLdb" in sys.modules, "mysql" in sys.modules)
        tracker.stop()
        """,
    )
    assert out.stdout.strip() == "False False False"
