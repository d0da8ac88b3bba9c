"""Shared fixtures: real services on 127.0.0.1, skipped or failed by RECLAIM_REQUIRE_SERVICES."""

from __future__ import annotations

import gc
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pool_support import Factory, Thing
from reclaim import Pool

REQUIRE_SERVICES = os.environ.get("RECLAIM_REQUIRE_SERVICES") == "1"

# No garbage crosses a fork: collected in the parent first. gRPC is not fork-safe: a channel an
# earlier test dropped (on purpose) and left to the collector was collected in a forked child, by
# whatever allocation came first (a pool's after-fork hook), and its finalizer spun there for
# ever, holding the database tests' lock (seen once, after the leak check stopped collecting
# after tests whose leaks the collector had already closed).
os.register_at_fork(before=gc.collect)


@dataclass(frozen=True)
class Service:
    """Where a server listens, and how tests log in to it."""

    name: str
    host: str
    port: int
    user: str | None = None
    password: str | None = None
    database: str | None = None


SERVICES = {
    "postgres": Service(
        "PostgreSQL",
        os.environ.get("RECLAIM_PG_HOST", "127.0.0.1"),
        int(os.environ.get("RECLAIM_PG_PORT", "5432")),
        os.environ.get("RECLAIM_PG_USER", "postgres"),
        os.environ.get("RECLAIM_PG_PASSWORD", ""),
        os.environ.get("RECLAIM_PG_DATABASE", "test"),
    ),
    "mariadb": Service(
        "MariaDB",
        os.environ.get("RECLAIM_MYSQL_HOST", "127.0.0.1"),
        int(os.environ.get("RECLAIM_MYSQL_PORT", "3306")),
        os.environ.get("RECLAIM_MYSQL_USER", "root"),
        os.environ.get("RECLAIM_MYSQL_PASSWORD", ""),
        os.environ.get("RECLAIM_MYSQL_DATABASE", "test"),
    ),
    "redis": Service("Redis", "127.0.0.1", int(os.environ.get("RECLAIM_REDIS_PORT", "6379"))),
    "rabbitmq": Service(
        "RabbitMQ",
        os.environ.get("RECLAIM_RABBITMQ_HOST", "127.0.0.1"),
        int(os.environ.get("RECLAIM_RABBITMQ_PORT", "5672")),
        os.environ.get("RECLAIM_RABBITMQ_USER", "guest"),
        os.environ.get("RECLAIM_RABBITMQ_PASSWORD", "guest"),
    ),
    "mosquitto": Service(
        "Mosquitto",
        os.environ.get("RECLAIM_MQTT_HOST", "127.0.0.1"),
        int(os.environ.get("RECLAIM_MQTT_PORT", "1883")),
    ),
    "nats": Service(
        "NATS",
        os.environ.get("RECLAIM_NATS_HOST", "127.0.0.1"),
        int(os.environ.get("RECLAIM_NATS_PORT", "4222")),
    ),
}


def _answers(service: Service) -> str | None:
    """None when the server accepts a TCP connection, else why not."""
    try:
        with socket.create_connection((service.host, service.port), timeout=2.0):
            return None
    except OSError as exc:
        return f"{service.name} does not answer on {service.host}:{service.port} ({exc})"


def require_service(key: str) -> Service:
    """Return the service, or skip (fail under RECLAIM_REQUIRE_SERVICES=1) when it is down."""
    service = SERVICES[key]
    problem = _answers(service)
    if problem is not None:
        if REQUIRE_SERVICES:
            pytest.fail(f"{problem}; RECLAIM_REQUIRE_SERVICES=1 says it must run here", pytrace=False)
        pytest.skip(f"{problem}; start it to run this test")
    return service


#: Held by every test that uses a database server, so that under pytest-xdist (make test runs
#: -n 4), and between test runs on one machine, they run one at a time: a test that restarts a
#: server or kills sessions must never land in another's test.
DB_LOCK = Path(tempfile.gettempdir()) / "reclaim-db-tests.lock"


@pytest.fixture(autouse=True)
def _one_database_test_at_a_time(request: pytest.FixtureRequest) -> Iterator[None]:
    node = request.node
    if node.get_closest_marker("postgres") is None and node.get_closest_marker("mariadb") is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # Windows: make test's workers are a POSIX affair; run there with -n 0
        yield
        return
    fd = os.open(DB_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


@pytest.fixture
def postgres() -> Service:
    """The PostgreSQL server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("postgres")


@pytest.fixture
def mariadb() -> Service:
    """The MariaDB server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("mariadb")


@pytest.fixture
def redis_server() -> Service:
    """The Redis server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("redis")


@pytest.fixture
def rabbitmq() -> Service:
    """The RabbitMQ server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("rabbitmq")


@pytest.fixture
def mosquitto() -> Service:
    """The Mosquitto (MQTT) server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("mosquitto")


@pytest.fixture
def nats_server() -> Service:
    """The NATS server on 127.0.0.1 (skips or fails when it is down)."""
    return require_service("nats")


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, its runs loading only the plugins they name (see _leakhelp.LEAN): not every
    plugin installed in the dev extra."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    return pytester


# -- pools of test objects (tests/pool_support.py) -----------------------------------------


@pytest.fixture
def factory() -> Factory:
    return Factory()


@pytest.fixture
def make_pool(factory: Factory) -> Iterator[Callable[..., Pool[Thing]]]:
    pools: list[Pool[Thing]] = []

    def make(**options: Any) -> Pool[Thing]:
        options.setdefault("max_lifetime", None)
        options.setdefault("max_idle", None)
        pool = Pool(factory, **options)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close(timeout=0)
