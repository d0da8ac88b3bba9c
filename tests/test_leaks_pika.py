"""pika (RabbitMQ): a connection never closed is one leak at the line that made it, holding its
socket; its loop's poll descriptor and wake-up socket pair are its own, never reported apart.

Against the real broker on 127.0.0.1 (the ``rabbitmq`` fixture: skipped when it does not answer,
failed instead under RECLAIM_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import (
    Watch,
    assert_site,
    ignore_gc_warnings,
    leakwatch,
    line,
    reclaim_pytest_fails_one,
    reclaim_run_json,
)
from _proxy import FaultProxy
from conftest import Service

pika = pytest.importorskip("pika")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.rabbitmq


def parameters(service: Service, port: int | None = None) -> Any:
    """Connection parameters for the broker (or a proxy in front of it, on *port*)."""
    return pika.ConnectionParameters(
        host=service.host,
        port=service.port if port is None else port,
        credentials=pika.PlainCredentials(service.user, service.password),
        connection_attempts=1,
    )


def params_source(service: Service) -> str:
    """The source of an expression making ``parameters(service)`` in a program run apart."""
    return (
        f"pika.ConnectionParameters(host={service.host!r}, port={service.port}, "
        f"credentials=pika.PlainCredentials({service.user!r}, {service.password!r}))"
    )


# Closed each way pika documents: close(), a with-block, and a SelectConnection closed from its
# callbacks whose loop is stopped and left to the collector (pika's examples never close it).
CLEAN = """\
    import pika

    params = {params}

    conn = pika.BlockingConnection(params)
    channel = conn.channel()
    queue = channel.queue_declare(queue="", exclusive=True).method.queue
    channel.basic_publish("", queue, b"hello")
    assert channel.basic_get(queue, auto_ack=True)[2] == b"hello"
    conn.close()

    with pika.BlockingConnection(params) as conn:
        conn.channel().queue_declare(queue="", exclusive=True)

    def on_open(conn):
        conn.channel(on_open_callback=lambda channel: conn.close())

    def on_close(conn, reason):
        conn.ioloop.stop()

    conn = pika.SelectConnection(params, on_open_callback=on_open, on_close_callback=on_close)
    conn.ioloop.start()
    assert conn.is_closed
"""


def test_a_correct_pika_program_reports_nothing(tmp_path: Path, rabbitmq: Service) -> None:
    """A SelectConnection's loop keeps its wake-up socket pair until the collector closes it, as
    pika means it to: it was reported as two sockets the program never opened."""
    report, stderr = reclaim_run_json(tmp_path, CLEAN.format(params=params_source(rabbitmq)))
    assert report["leaks"] == [], stderr


LEAK = """\
    import pika

    conn = pika.BlockingConnection({params})
    conn.channel().queue_declare(queue="", exclusive=True)
"""


def test_a_blocking_connection_never_closed_is_one_leak_at_its_line(
    tmp_path: Path, rabbitmq: Service
) -> None:
    """Not three sockets at pika's lines and an untracked epoll descriptor: one connection, at
    the program's line, its socket to the broker listed under it."""
    report, stderr = reclaim_run_json(tmp_path, LEAK.format(params=params_source(rabbitmq)))
    [leak] = report["leaks"]
    assert leak["kind"] == "amqp", stderr
    target = f"{rabbitmq.host}:{rabbitmq.port}"
    assert leak["description"] == f"connection to {target} not closed (close(), or a with-block)"
    assert leak["details"]["class"] == "pika.BlockingConnection"
    assert (Path(leak["frames"][0]["file"]).name, leak["frames"][0]["line"]) == ("prog.py", 3)
    [held] = leak["holds"]
    assert held["kind"] == "socket" and held["details"]["peer"] == target


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_blocking_connection_left_open_holds_its_socket_and_its_poll_descriptor(
    leakwatch: Watch, rabbitmq: Service
) -> None:
    conn = pika.BlockingConnection(parameters(rabbitmq))
    at = line() - 1
    try:
        conn.channel()
        [leak] = leakwatch.leaks()  # no untracked epoll descriptor, no wake-up sockets
        assert leak.kind == "amqp" and leak.state == "open"
        assert_site(leak, at)
        [held] = leak.holds
        assert held.kind == "socket" and held.details["peer"] == f"{rabbitmq.host}:{rabbitmq.port}"
        assert isinstance(leak.details["poll_fd"], int)
    finally:
        conn.close()
    assert leakwatch.leaks() == []
    with pika.BlockingConnection(parameters(rabbitmq)) as conn:
        conn.channel()
    assert leakwatch.leaks() == []


class Cycle:
    """An object that keeps itself alive: what it holds goes only with the garbage collector."""

    def __init__(self) -> None:
        self.itself: Cycle | None = self
        self.held: Any = None


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("cycle", [False, True], ids=["dropped", "in-a-cycle"])
def test_a_blocking_connection_dropped_unclosed_is_the_collectors(
    leakwatch: Watch, rabbitmq: Service, cycle: bool
) -> None:
    """Dropped, or in a reference cycle (the collector then clears its socket's weak reference
    before the connection's ``__del__`` runs): closed by the garbage collector, at its line."""
    keeper = Cycle()
    keeper.held = pika.BlockingConnection(parameters(rabbitmq))
    at = line() - 1
    keeper.held.channel()
    if not cycle:
        keeper.itself = None
    del keeper
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("amqp", "collected")
    assert_site(leak, at)
    [held] = leak.holds
    assert (held.kind, held.state) == ("socket", "collected")


def run_until_closed(conn: Any) -> None:
    """Close a SelectConnection and run its loop until it is; then close the loop, so that
    its wake-up sockets are not left to the collector in some later test."""
    if not conn.is_closed:
        conn.close()
        conn.ioloop.start()
    conn.ioloop.close()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_select_connection_never_closed_is_reported_at_its_line(
    leakwatch: Watch, rabbitmq: Service
) -> None:
    """Its socket is made later, as its loop runs: still listed under it."""
    opened: list[object] = []

    def on_open(conn: Any) -> None:
        opened.append(conn)
        conn.ioloop.stop()

    def on_close(conn: Any, reason: object) -> None:
        conn.ioloop.stop()

    conn = pika.SelectConnection(parameters(rabbitmq), on_open_callback=on_open, on_close_callback=on_close)
    at = line() - 1
    try:
        conn.ioloop.start()
        assert opened == [conn]
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("amqp", "open")
        assert leak.description.endswith("not closed (close())")
        assert leak.details["class"] == "pika.SelectConnection"
        assert_site(leak, at)
        assert [held.kind for held in leak.holds] == ["socket"]
    finally:
        run_until_closed(conn)
    assert leakwatch.leaks() == []


def test_a_connection_the_broker_dropped_is_no_leak_of_the_program(
    leakwatch: Watch, rabbitmq: Service
) -> None:
    """Lost under it, it is closed: ``close()`` would raise, and pika closed its loop."""
    with FaultProxy((rabbitmq.host, rabbitmq.port)) as proxy:
        conn = pika.BlockingConnection(parameters(rabbitmq, proxy.port))
        proxy.cut()
        with pytest.raises(pika.exceptions.AMQPConnectionError):
            conn.process_data_events(time_limit=None)
        assert conn.is_closed
    assert leakwatch.leaks() == []


def test_a_connection_refused_leaves_nothing(leakwatch: Watch, rabbitmq: Service) -> None:
    with FaultProxy((rabbitmq.host, rabbitmq.port)) as proxy:
        proxy.cut()  # accepted and closed at once: refused at the AMQP handshake
        # or before it: when the reset comes before pika's own check that the socket is
        # connected (getpeername), pika raises ValueError instead (seen on a loaded machine)
        with pytest.raises((pika.exceptions.AMQPConnectionError, ValueError)):
            pika.BlockingConnection(parameters(rabbitmq, proxy.port))
    assert leakwatch.leaks() == []


def test_under_pytest_only_the_test_that_left_a_connection_open_fails(
    pytester: pytest.Pytester, rabbitmq: Service
) -> None:
    """A module fixture's connection closed at its teardown, a with-block, and a test that
    closes its own pass; the one that leaves its connection open fails, at its line."""
    pytester.makepyfile(
        test_amqp=f"""
        import pika
        import pytest

        PARAMS = {params_source(rabbitmq)}

        @pytest.fixture(scope="module")
        def conn():
            conn = pika.BlockingConnection(PARAMS)
            yield conn
            conn.close()

        def test_publishes(conn):
            conn.channel().basic_publish("", "nowhere", b"x")

        def test_with_block():
            with pika.BlockingConnection(PARAMS) as conn:
                conn.channel()

        def test_closes():
            conn = pika.BlockingConnection(PARAMS)
            conn.close()

        def test_leaves_it_open():
            pytest.kept = pika.BlockingConnection(PARAMS)

        def test_last(conn):
            conn.process_data_events()
        """
    )
    reclaim_pytest_fails_one(pytester, 5, "test_leaves_it_open", "test_amqp.py:24")


LAZY = """\
    import sys
    import socket

    socket.socket().close()
    assert not [name for name in sys.modules if name.split(".")[0] == "pika"], "pika was imported"
"""


def test_a_program_that_does_not_import_pika_loads_none_of_it(tmp_path: Path) -> None:
    """pika's part is installed when the program imports pika, never by reclaim itself."""
    report, stderr = reclaim_run_json(tmp_path, LAZY)
    assert report["leaks"] == [], stderr
