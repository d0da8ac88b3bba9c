"""Sockets a client library's pool hands out (redis-py, sync and asyncio; urllib3): a connection
checked out and never given back is blamed on the line that checked it out, not on the line
that first connected its socket, and under pytest on the test that checked it out, not on the
session fixture whose client made it. Connections resting in their pool are blamed as before.
"""

from __future__ import annotations

import asyncio
import gc
import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import reclaim
from _leakhelp import Watch, ignore_gc_warnings, leakwatch, line
from reclaim.leaks import context

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytest_plugins = ["pytester"]


def program_line(leak: Any) -> int | None:
    """The line of this file the leak's stack passes through first (its frames start in the library)."""
    return next((frame.lineno for frame in leak.frames if frame.filename == __file__), None)


# -- redis-py ---------------------------------------------------------------------------------


@pytest.fixture
def redis_client(redis_server: Any) -> Iterator[Any]:
    """A redis-py client of the server on 127.0.0.1 (its pool connects on first use)."""
    redis = pytest.importorskip("redis")
    client = redis.Redis(host=redis_server.host, port=redis_server.port)
    yield client
    client.close()


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_pubsub_never_closed_is_blamed_on_its_subscribe_not_on_the_ping_that_connected(
    leakwatch: Watch, redis_client: Any
) -> None:
    redis_client.ping()  # connects the pool's socket, and gives it back
    pubsub = redis_client.pubsub()
    pubsub.subscribe("reclaim-test:pooled")  # checks that socket out, never to give it back
    at = line() - 1
    try:
        assert program_line(leakwatch.one("socket")) == at
    finally:
        pubsub.close()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_pubsub_dropped_unclosed_is_the_collectors_at_its_subscribe(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Its ``__del__`` disconnects the socket it checked out: closed by the garbage collector."""
    redis_client.ping()
    redis_client.pubsub().subscribe("reclaim-test:pooled")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("socket")
    assert leak.state == "collected" and program_line(leak) == at


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_back_in_the_pool_is_blamed_where_it_connected(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Returned, the socket is the pool's again: an unclosed client's idle connection is
    reported at the line that connected it, not at the last line that used it."""
    redis_client.ping()
    at = line() - 1
    redis_client.echo("again")
    assert program_line(leakwatch.one("socket")) == at
    redis_client.close()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_checkout_inside_no_leaks_of_a_socket_connected_before_is_that_blocks(
    leakwatch: Watch, redis_client: Any
) -> None:
    """Checked out inside the block and kept: the block's leak; given back: nothing. (The
    socket is tracked from its connect, before the block: *leakwatch* runs a tracker.)"""
    redis_client.ping()
    with reclaim.no_leaks():
        redis_client.echo("borrowed and returned")
    pubsub = redis_client.pubsub()
    try:
        with pytest.raises(reclaim.LeakError) as caught, reclaim.no_leaks():
            pubsub.subscribe("reclaim-test:pooled")
            at = line() - 1
        [leak] = caught.value.leaks
        assert leak.kind == "socket" and program_line(leak) == at
    finally:
        pubsub.close()


@pytest.mark.redis
def test_a_blocking_pools_checkouts_given_back_leave_nothing(leakwatch: Watch, redis_server: Any) -> None:
    redis = pytest.importorskip("redis")
    pool = redis.BlockingConnectionPool(host=redis_server.host, port=redis_server.port, max_connections=2)
    client = redis.Redis(connection_pool=pool)
    client.ping()
    with client.pubsub() as pubsub:
        pubsub.subscribe("reclaim-test:pooled")
    with client.pipeline() as pipe:
        pipe.echo("a").echo("b").execute()
    client.close()
    pool.disconnect()
    assert leakwatch.leaks() == []


@pytest.mark.redis
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_async_pubsub_never_closed_is_blamed_on_its_subscribe(leakwatch: Watch, redis_server: Any) -> None:
    aredis = pytest.importorskip("redis.asyncio")

    async def main() -> None:
        client = aredis.Redis(host=redis_server.host, port=redis_server.port)
        await client.ping()
        pubsub = client.pubsub()
        await pubsub.subscribe("reclaim-test:pooled")
        at = line() - 1
        try:
            assert program_line(leakwatch.one("socket")) == at
        finally:
            await pubsub.aclose()
            await client.aclose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.redis
def test_async_clients_holder_takes_its_idle_connections_not_one_checked_out_and_kept(
    leakwatch: Watch, redis_server: Any
) -> None:
    """What the pytest plugin asks at a test's end (see hand_over_held): a session fixture's
    client takes what rests in its pool, never a connection a later test checked out."""
    aredis = pytest.importorskip("redis.asyncio")
    tracker = leakwatch.tracker

    async def main() -> None:
        client = aredis.Redis(host=redis_server.host, port=redis_server.port)
        with context("reclaim-test: connects"):
            await client.ping()
        assert tracker.hand_over_held("reclaim-test: connects", {"fixture": client}) == 1
        pubsub = client.pubsub()
        with context("reclaim-test: keeps"):
            await pubsub.subscribe("reclaim-test:pooled")
            at = line() - 1
        try:
            assert tracker.hand_over_held("reclaim-test: keeps", {"fixture": client}) == 0
            [leak] = leakwatch.leaks("socket", context="reclaim-test: keeps")
            assert program_line(leak) == at
        finally:
            await pubsub.aclose()
            await client.aclose()

    asyncio.run(main())
    assert leakwatch.leaks() == []


@pytest.mark.redis
def test_under_pytest_a_checkout_kept_is_the_tests_not_the_session_fixtures(
    pytester: pytest.Pytester, redis_server: Any
) -> None:
    """A session fixture's client connects in one test; a later test's ``pubsub()`` kept (or
    dropped) unclosed fails that test at its own line. A fixture's pubsub that first subscribes
    in a test, and a client's connections resting in its pool, are the fixture's."""
    pytest.importorskip("redis")
    pytester.makepyfile(
        test_pooled=f"""
        import pytest
        import redis

        KEEP = []

        @pytest.fixture(scope="session")
        def client():
            c = redis.Redis(host={redis_server.host!r}, port={redis_server.port})
            yield c
            c.close()

        @pytest.fixture(scope="session")
        def listener(client):
            p = client.pubsub()
            yield p
            p.close()

        def test_connects(client):
            client.ping()

        def test_listens_through_the_fixture(listener, client):
            listener.subscribe("reclaim-test:fixture")
            client.echo("meanwhile")

        def test_keeps_a_pubsub(client):
            p = client.pubsub()
            p.subscribe("reclaim-test:kept")
            KEEP.append(p)

        def test_drops_a_pubsub(client):
            client.pubsub().subscribe("reclaim-test:dropped")

        def test_closes_its_pubsub(client):
            with client.pubsub() as p:
                p.subscribe("reclaim-test:closed")
            client.echo("after")

        def test_last(client):
            for p in KEEP:
                p.close()
        """
    )
    result = pytester.runpytest_subprocess(
        "-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:anyio", "--reclaim", timeout=120
    )
    result.assert_outcomes(passed=6, errors=2)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_a_pubsub*",
            "*test_pooled.py:27 in test_keeps_a_pubsub*",
            "*ERROR at teardown of test_drops_a_pubsub*",
            "*closed by the garbage collector*",
            "*test_pooled.py:31 in test_drops_a_pubsub*",
        ]
    )
    assert "leaks found after their test ended" not in out
    for clean in ("test_connects", "test_listens_through_the_fixture", "test_closes_its_pubsub"):
        assert f"teardown of {clean}" not in out


# -- urllib3 ----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool keeps the connection

    def do_GET(self) -> None:
        body = b"x" * 1000
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    """An HTTP/1.1 server on 127.0.0.1 (one thread per connection), shut down afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.block_on_close = True  # server_close() joins the connections' threads
    thread = threading.Thread(target=server.serve_forever, name="http-server")
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_urllib3_response_never_released_is_blamed_on_its_request(leakwatch: Watch, http_port: int) -> None:
    urllib3 = pytest.importorskip("urllib3")
    with urllib3.HTTPConnectionPool("127.0.0.1", http_port, maxsize=1) as pool:
        pool.request("GET", "/")  # read whole: its connection goes back to the pool
        response = pool.urlopen("GET", "/", preload_content=False)
        at = line() - 1
        try:
            assert [program_line(leak) for leak in _clients(leakwatch, http_port)] == [at]
        finally:
            response.read()
            response.release_conn()
    assert _clients(leakwatch, http_port) == []


def _clients(watch: Watch, port: int) -> list[Any]:
    """The client sockets to the server on *port* still open (not the server's own)."""
    return [leak for leak in watch.leaks("socket") if leak.details.get("peer") == f"127.0.0.1:{port}"]
