"""AMQPStorm (RabbitMQ): a connection never closed is one leak at the line that made it, holding
its socket, its inbound thread and its heartbeat timer, not three entries at amqpstorm's lines.

Against the real broker on 127.0.0.1 (the ``rabbitmq`` fixture: skipped when it does not answer,
failed instead under RECLAIM_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

from typing import Any

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line, reclaim_pytest
from conftest import Service

amqpstorm = pytest.importorskip("amqpstorm")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.rabbitmq


def connect(service: Service) -> Any:
    return amqpstorm.Connection(service.host, service.user, service.password, port=service.port, timeout=10)


def test_a_connection_closed_or_in_a_with_block_leaves_nothing(leakwatch: Watch, rabbitmq: Service) -> None:
    connection = connect(rabbitmq)
    channel = connection.channel()
    channel.queue.declare("reclaim-amqpstorm", auto_delete=True)
    channel.close()
    connection.close()
    with connect(rabbitmq) as connection, connection.channel() as channel:
        channel.queue.declare("reclaim-amqpstorm", auto_delete=True)
    # A heartbeat timer close() cancelled ends as its wait wakes: the grace waits for it.
    assert leakwatch.leaks(grace=10.0) == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_left_open_is_one_entry_holding_its_socket_and_threads(
    leakwatch: Watch, rabbitmq: Service
) -> None:
    """It was a socket, a thread 'amqpstorm.io' and a thread running ``Timer.run()``, each at
    amqpstorm's lines, none naming a connection or saying ``close()``."""
    connection = connect(rabbitmq)
    at = line() - 1
    try:
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("amqpstorm", "open")
        assert_site(leak, connect.__code__.co_firstlineno + 1)  # the helper's line, then this one
        assert (leak.frames[1].filename, leak.frames[1].lineno) == (__file__, at)
        target = f"{rabbitmq.host}:{rabbitmq.port}"
        assert leak.description == f"connection to {target} not closed (close(), or a with-block)"
        assert leak.details == {"class": "amqpstorm.Connection", "target": target}
        assert sorted(part.kind for part in leak.holds) == ["socket", "thread", "thread"]
    finally:
        connection.close()
    assert leakwatch.leaks(grace=10.0) == []


def test_under_pytest_the_test_that_left_a_connection_open_fails_with_one_entry(
    pytester: pytest.Pytester, rabbitmq: Service
) -> None:
    pytester.makepyfile(
        test_broker=f"""
        import amqpstorm

        def connect():
            return amqpstorm.Connection({rabbitmq.host!r}, {rabbitmq.user!r}, {rabbitmq.password!r},
                                        port={rabbitmq.port}, timeout=10)

        KEEP = []

        def test_closes():
            with connect():
                pass

        def test_leaves_open():
            KEEP.append(connect())
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_open*",
            "*this test leaked 1 resource*",
            "amqpstorm connection to * not closed (close(), or a with-block)",
            "  acquired at test_broker.py:4 in connect",
            "         from test_broker.py:14 in test_leaves_open",
        ]
    )
