"""aiormq and aio-pika: a connection never closed is one leak at the program's line that
connected it; its tasks, channels and socket are its own, never separate entries.

Against the real broker on 127.0.0.1 (the ``rabbitmq`` fixture: skipped when it does not answer,
failed instead under RECLAIM_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
from pathlib import Path

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

aiormq = pytest.importorskip("aiormq")
aio_pika = pytest.importorskip("aio_pika")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.rabbitmq

#: Seconds a test waits for the broker's answer (a hang fails, never blocks the suite).
TIMEOUT = 10


def url(service: Service, port: int | None = None) -> str:
    port = service.port if port is None else port
    return f"amqp://{service.user}:{service.password}@{service.host}:{port}/"


def target(service: Service) -> str:
    """How a report names the broker: no password."""
    return f"amqp://{service.user}@{service.host}:{service.port}/"


def queue() -> str:
    """A queue of this run's own (auto-deleted): tests running at once never see each other's."""
    return f"reclaim.{uuid.uuid4().hex}"


# Closed each way aio-pika and aiormq document: async with, close() of a robust connection,
# close() of aiormq's own; with a channel, a queue, a message sent and read.
CLEAN = """\
    import asyncio
    import aio_pika
    import aiormq

    URL, QUEUE = {url!r}, {queue!r}

    async def main():
        async with await aio_pika.connect(URL) as connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(QUEUE, auto_delete=True)
            await channel.default_exchange.publish(aio_pika.Message(b"hello"), routing_key=QUEUE)
            message = await queue.get(timeout={timeout})
            await message.ack()
        robust = await aio_pika.connect_robust(URL)
        await robust.channel()
        await robust.close()
        connection = await aiormq.connect(URL)
        channel = await connection.channel()
        await channel.queue_declare(QUEUE, auto_delete=True)
        await connection.close()

    asyncio.run(main())
"""


def test_a_correct_aio_pika_program_reports_nothing(tmp_path: Path, rabbitmq: Service) -> None:
    source = CLEAN.format(url=url(rabbitmq), queue=queue(), timeout=TIMEOUT)
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


LEAK = """\
    import asyncio
    import aio_pika

    async def main():
        connection = await aio_pika.connect({url!r})
        channel = await connection.channel()
        await channel.declare_queue({queue!r}, auto_delete=True)

    asyncio.run(main())
"""


def test_a_connection_never_closed_is_one_leak_at_its_line(tmp_path: Path, rabbitmq: Service) -> None:
    """Not four tasks at aiormq's lines (``asyncio.run`` cancels them at its end) and one of
    aio-pika's destroyed pending: one connection, at the program's line, which the loop's
    shutdown closed."""
    report, stderr = reclaim_run_json(tmp_path, LEAK.format(url=url(rabbitmq), queue=queue()))
    [leak] = report["leaks"]
    assert (leak["kind"], leak["state"]) == ("aiormq", "cancelled"), stderr
    fix = "close(), or async with"
    assert leak["description"] == f"connection to {target(rabbitmq)} not closed ({fix})"
    assert leak["details"] == {"target": target(rabbitmq)}
    assert (Path(leak["frames"][0]["file"]).name, leak["frames"][0]["line"]) == ("prog.py", 5)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_left_open_is_reported_at_its_connect_line(leakwatch: Watch, rabbitmq: Service) -> None:
    """aiormq's own connect(): the line that connected it, open; closed, nothing is left."""

    async def main() -> None:
        connection = await aiormq.connect(url(rabbitmq))
        at = line() - 1
        try:
            channel = await connection.channel()
            await channel.queue_declare(queue(), auto_delete=True)
            # Besides the loop and the task running this: no socket, no reader, writer,
            # heartbeat or channel task.
            assert sorted(leak.kind for leak in leakwatch.leaks()) == ["aiormq", "eventloop", "task"]
            leak = leakwatch.one("aiormq")
            assert leak.state == "open"
            assert_site(leak, at)
        finally:
            await connection.close()
        assert leakwatch.leaks("aiormq") == []

    asyncio.run(main())
    assert leakwatch.leaks() == []


def test_a_connection_the_broker_ended_is_no_leak_of_the_program(leakwatch: Watch, rabbitmq: Service) -> None:
    """Lost (the network cut), aiormq closes it itself."""

    async def main() -> None:
        with FaultProxy((rabbitmq.host, rabbitmq.port)) as proxy:
            connection = await aiormq.connect(url(rabbitmq, proxy.port))
            proxy.cut()
            await asyncio.wait_for(asyncio.shield(connection.closing), TIMEOUT)
            assert connection.is_closed

    with pytest.raises(aiormq.exceptions.AMQPError):  # what closing ends with: the connection's error
        asyncio.run(main())
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_robust_connection_left_open_is_reported_at_its_line(leakwatch: Watch, rabbitmq: Service) -> None:
    """aio-pika's ``connect_robust()``: past aio-pika's frames, the program's line."""
    lines: list[int] = []

    async def main() -> None:
        connection = await aio_pika.connect_robust(url(rabbitmq))
        lines.append(line() - 1)
        await connection.channel()

    asyncio.run(main())
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("aiormq", "cancelled")
    assert_site(leak, lines[0])
    # aio-pika's close callback, left pending as its loop closed, complains when collected:
    # here, where the warning is ignored, not in a later test.
    gc.collect()


def test_under_pytest_only_the_test_that_left_a_connection_open_fails(
    pytester: pytest.Pytester, rabbitmq: Service
) -> None:
    """Tests that close or use ``async with`` pass; the one that leaves its connection open
    fails, at its line."""
    pytester.makepyfile(
        test_amqp=f"""
        import asyncio
        import aio_pika

        URL = {url(rabbitmq)!r}

        def test_closes():
            async def main():
                connection = await aio_pika.connect(URL)
                await connection.channel()
                await connection.close()
            asyncio.run(main())

        def test_leaves_it_open():
            async def main():
                connection = await aio_pika.connect(URL)
                await connection.channel()
            asyncio.run(main())

        def test_with_block():
            async def main():
                async with await aio_pika.connect(URL) as connection:
                    await connection.channel()
            asyncio.run(main())
        """
    )
    reclaim_pytest_fails_one(pytester, 3, "test_leaves_it_open", "test_amqp.py:15")


LAZY = """\
    import asyncio
    import sys

    asyncio.run(asyncio.sleep(0))
    assert not [name for name in sys.modules if name.split(".")[0] in ("aiormq", "aio_pika")], "imported"
"""


def test_a_program_that_does_not_import_aiormq_loads_none_of_it(tmp_path: Path) -> None:
    """aiormq's part is installed when the program imports it, never by reclaim itself."""
    report, stderr = reclaim_run_json(tmp_path, LAZY)
    assert report["leaks"] == [], stderr
