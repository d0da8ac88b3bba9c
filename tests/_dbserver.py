"""Helpers for the database fault tests: count and kill server sessions, stop and start servers.

Sessions are counted per test: PostgreSQL pools get a unique ``application_name``, MariaDB
pools a unique database, so a test sees only its own sessions in ``pg_stat_activity`` /
``information_schema.processlist`` even when other tests use the same server.
"""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: How long a restarted server may take to accept connections again.
START_TIMEOUT = 60.0


def unique(prefix: str) -> str:
    """A name no other test uses (for application_name, databases, roles)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    """Poll *predicate* until it is true; fail naming *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def idle_past_probe(pool: Any) -> None:
    """Wait until the pool's idle connections are old enough to be probed on reuse.

    Adapters skip the socket probe when a connection is reused within ``probe_after``
    (1 ms) of its release; fault tests that kill idle sessions wait that out first.
    """
    stay_idle(getattr(pool.adapter, "probe_after", 0.0))


def stay_idle(seconds: float) -> None:
    """Let *seconds* pass (a connection released just before is then that long idle)."""
    released = time.monotonic()
    wait_until(lambda: time.monotonic() - released > seconds, 5.0 + seconds, f"{seconds} s to pass")


def reuse_bytes(pool: Any, proxy: Any, check_after: float) -> tuple[int, int]:
    """Bytes a sync pool's acquire sends through *proxy*: reused at once, then after *check_after* idle.

    The proxy counts what it forwards before forwarding it, so a check's bytes are counted
    by the time its answer lets the acquire return.
    """
    with pool.acquire():
        pass
    before = proxy.bytes_up
    with pool.acquire():
        pass
    at_once = proxy.bytes_up - before
    stay_idle(check_after)
    before = proxy.bytes_up
    with pool.acquire():
        pass
    return at_once, proxy.bytes_up - before


def release_cut_off(pool: Any, lease: Any, proxy: Any, records: list[Any]) -> None:
    """Black-hole *proxy*, release *lease* (its reset must talk to the server): the release
    returns, its connection is discarded with a reset_timeout message in *records*, and the
    pool is left empty and healed.

    The release runs in a daemon thread, so a hang fails the test instead of hanging it.
    """
    proxy.blackhole()
    released = threading.Event()

    def run() -> None:
        try:
            lease.release()
        finally:
            released.set()

    threading.Thread(target=run, name="releaser", daemon=True).start()
    assert released.wait(30), "the release hung on the silent network"
    stats = pool.statistics()
    assert (stats.discarded_broken, stats.size, stats.closed) == (1, 0, 1)
    assert any("reset_timeout=0.3" in r.getMessage() for r in records)
    proxy.heal()


def port_refuses(host: str, port: int) -> bool:
    """True when a connection to host:port is refused: nothing listens there any more.

    A failed connection is not enough: a server that stopped accepting while it shuts down
    leaves each probe in its listen queue, and once that queue is full a probe times out although
    the socket is still there (and a connection made then is dropped, not refused).
    """
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except ConnectionRefusedError:
        return True
    except OSError:
        return False


def process_gone(pid: int | None) -> bool:
    """True when process *pid* has exited (a zombie nobody reaps counts: its sockets are closed)."""
    if pid is None:
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


# -- PostgreSQL ----------------------------------------------------------------------


def pg_conninfo(service: Any, **extra: object) -> dict[str, Any]:
    """Keyword arguments for psycopg.connect to the test server."""
    kw: dict[str, Any] = {
        "host": service.host,
        "port": service.port,
        "user": service.user,
        "dbname": service.database,
        "connect_timeout": 5,
    }
    if service.password:
        kw["password"] = service.password
    kw.update(extra)
    return kw


def asyncpg_kwargs(service: Any, **extra: object) -> dict[str, Any]:
    """Keyword arguments for asyncpg.connect to the test server."""
    kw: dict[str, Any] = {
        "host": service.host,
        "port": service.port,
        "user": service.user,
        "database": service.database,
        "timeout": 5,
    }
    if service.password:
        kw["password"] = service.password
    kw.update(extra)
    return kw


def pg8000_kwargs(service: Any, **extra: object) -> dict[str, Any]:
    """Keyword arguments for pg8000 (``native.Connection``, ``dbapi.connect``): asyncpg's names."""
    return asyncpg_kwargs(service, **extra)


class PgAdmin:
    """An autocommit superuser connection that watches and kills a test's sessions."""

    def __init__(self, service: Any) -> None:
        import psycopg

        self.service = service
        self._lock = threading.Lock()
        self.conn = psycopg.connect(**pg_conninfo(service), autocommit=True)

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with self._lock:
            return self.conn.execute(sql, params).fetchall()

    def sessions(self, app: str) -> int:
        """How many server sessions carry application_name *app*."""
        return int(
            self._query("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", app)[0][0]
        )

    def pids(self, app: str) -> list[int]:
        """Backend pids of the sessions named *app*."""
        rows = self._query("SELECT pid FROM pg_stat_activity WHERE application_name = %s", app)
        return [r[0] for r in rows]

    def kill(self, app: str) -> int:
        """pg_terminate_backend every session named *app*; returns how many were killed."""
        rows = self._query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s", app
        )
        return sum(1 for r in rows if r[0])

    def reconnect(self) -> None:
        """Log in again (after the server was restarted under this connection)."""
        import psycopg

        with self._lock:
            self.conn.close()
            self.conn = psycopg.connect(**pg_conninfo(self.service), autocommit=True)

    def close(self) -> None:
        """Close the admin connection."""
        self.conn.close()


def _pg_cluster() -> tuple[str, str]:
    versions = sorted(os.listdir("/etc/postgresql"))
    return versions[-1], "main"


def pg_stop(service: Any) -> None:
    """Stop the local PostgreSQL cluster (fast shutdown: sessions are disconnected).

    pg_ctl returns once the postmaster has removed its pid file, a moment before its listening
    socket is gone: a connection made then is accepted and dropped ("server closed the
    connection unexpectedly"), not refused. This returns only once the postmaster has exited and
    the port refuses.
    """
    version, name = _pg_cluster()
    pid = _pg_postmaster_pid(version, name)
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast"],
        check=True,
        capture_output=True,
    )
    wait_until(lambda: process_gone(pid), START_TIMEOUT, "the postmaster to exit")
    wait_until(lambda: port_refuses(service.host, service.port), START_TIMEOUT, "PostgreSQL to stop")


def _pg_postmaster_pid(version: str, name: str) -> int | None:
    """The running postmaster's pid, from the cluster's data directory (None when not running)."""
    try:
        with open(f"/var/lib/postgresql/{version}/{name}/postmaster.pid", encoding="ascii") as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def pg_start(service: Any) -> None:
    """Start the local PostgreSQL cluster and wait until it accepts sessions."""
    version, name = _pg_cluster()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start"],
        check=False,
        capture_output=True,
    )
    import psycopg

    def ready() -> bool:
        try:
            with psycopg.connect(**pg_conninfo(service, connect_timeout=2)):
                return True
        except psycopg.OperationalError:
            return False

    wait_until(ready, START_TIMEOUT, "PostgreSQL to accept sessions again")


def can_control_pg() -> bool:
    """True when this process may stop and start the local cluster (root on Debian)."""
    return (
        os.path.isdir("/etc/postgresql") and os.geteuid() == 0 and bool(glob.glob("/usr/bin/pg_ctlcluster"))
    )


# -- MariaDB -------------------------------------------------------------------------


def maria_kwargs(service: Any, **extra: object) -> dict[str, Any]:
    """Keyword arguments for pymysql.connect to the test server."""
    kw: dict[str, Any] = {
        "host": service.host,
        "port": service.port,
        "user": service.user,
        "password": service.password or "",
        "database": service.database,
        "connect_timeout": 5,
    }
    kw.update(extra)
    return kw


class MariaAdmin:
    """A root connection that makes a private database per test, counts and kills its sessions."""

    def __init__(self, service: Any) -> None:
        import pymysql

        self.service = service
        self._lock = threading.Lock()
        self.conn = pymysql.connect(**maria_kwargs(service), autocommit=True)
        self.database = unique("reclaim")
        self._query(f"CREATE DATABASE `{self.database}`")

    def _query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        import pymysql

        with self._lock:
            for attempt in (1, 2):
                try:
                    with self.conn.cursor() as cur:
                        cur.execute(sql, params or None)
                        return list(cur.fetchall())
                except (pymysql.err.OperationalError, pymysql.err.InterfaceError):
                    if attempt == 2:
                        raise
                    # the server was restarted under us: log in again once
                    if self.conn.open:
                        self.conn.close()
                    self.conn = pymysql.connect(**maria_kwargs(self.service), autocommit=True)
        raise AssertionError("unreachable")

    def query(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        """Run *sql* as root (autocommit) and return its rows."""
        return self._query(sql, *params)

    def ids(self) -> list[int]:
        """Thread ids of the sessions using this test's database."""
        rows = self._query("SELECT id FROM information_schema.processlist WHERE db = %s", self.database)
        return [int(r[0]) for r in rows]

    def sessions(self) -> int:
        """How many server sessions use this test's database."""
        return len(self.ids())

    def kill(self) -> int:
        """KILL every session using this test's database; returns how many were killed."""
        killed = 0
        for thread_id in self.ids():
            try:
                self._query(f"KILL {int(thread_id)}")
                killed += 1
            except Exception:  # it ended by itself meanwhile
                pass
        return killed

    def close(self) -> None:
        """Drop the test's database and close the admin connection."""
        try:
            self._query(f"DROP DATABASE IF EXISTS `{self.database}`")
        finally:
            self.conn.close()


def _maria_pid() -> int | None:
    try:
        with open("/run/mysqld/mysqld.pid", encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def maria_stop(service: Any) -> None:
    """Shut MariaDB down and wait until its process has exited."""
    pid = _maria_pid()
    subprocess.run(
        ["mariadb-admin", "-h", service.host, "-P", str(service.port), "-u", service.user, "shutdown"],
        check=True,
        capture_output=True,
    )
    wait_until(lambda: process_gone(pid), START_TIMEOUT, "mariadbd to exit")
    wait_until(lambda: port_refuses(service.host, service.port), START_TIMEOUT, "MariaDB to stop")


def maria_start(service: Any) -> None:
    """Start MariaDB in the background (again if a stopping one was still there); wait for it."""
    import pymysql

    def start() -> None:
        subprocess.run(
            ["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
            check=False,
            capture_output=True,
        )

    last_start = [time.monotonic()]
    start()

    def ready() -> bool:
        try:
            pymysql.connect(**maria_kwargs(service, connect_timeout=2)).close()
            return True
        except pymysql.err.OperationalError:
            if time.monotonic() - last_start[0] > 5.0:
                last_start[0] = time.monotonic()
                start()
            return False

    wait_until(ready, START_TIMEOUT, "MariaDB to accept sessions again")


def can_control_maria() -> bool:
    """True when this process may stop and start the local MariaDB (root, mariadbd present)."""
    return os.geteuid() == 0 and os.path.exists("/usr/sbin/mariadbd")


@contextmanager
def stopped(stop: Callable[[], None], start: Callable[[], None]) -> Iterator[None]:
    """Stop a server for the block; start it again on every way out (and wait for it)."""
    try:
        stop()
        yield
    finally:
        start()


def kill_under_load(
    pool: Any,
    *,
    query: Callable[[Any], object],
    errors: type[BaseException] | tuple[type[BaseException], ...],
    sessions: Callable[[], int],
    kill: Callable[[], object],
) -> tuple[int, int]:
    """16 threads loop acquire + *query* + release while *kill* ends every pooled session.

    Waits for 200 operations and 4 live sessions, calls *kill* (which returns once the
    sessions are gone), then waits for 400 successful operations after it. Returns
    (operations that failed with *errors*, the most server sessions sampled meanwhile).
    """
    killed = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()
    counts = {"before": 0, "after": 0, "failed": 0}
    most_sessions = [0]

    def work() -> None:
        while not stop.is_set():
            after = killed.is_set()
            try:
                with pool.acquire() as conn:
                    query(conn)
            except errors:
                with lock:
                    counts["failed"] += 1
            else:
                with lock:
                    counts["after" if after else "before"] += 1

    def sample() -> None:
        while not stop.is_set():
            most_sessions[0] = max(most_sessions[0], sessions())

    threads = [threading.Thread(target=work) for _ in range(16)] + [threading.Thread(target=sample)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: counts["before"] >= 200 and sessions() == 4, 30, "the pool to warm up")
        kill()
        killed.set()
        wait_until(lambda: counts["after"] >= 400, 30, "operations after the kill")
    finally:
        stop.set()
        for t in threads:
            t.join()
    return counts["failed"], most_sessions[0]


def hammer(
    pool: Any, query: Callable[[Any], object], threads: int = 16, each: int = 25
) -> list[BaseException]:
    """*threads* threads each run *each* times (acquire, *query*, release); returns what failed."""
    failures: list[BaseException] = []

    def work() -> None:
        for _ in range(each):
            try:
                with pool.acquire() as conn:
                    query(conn)
            except Exception as exc:
                failures.append(exc)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return failures
