"""nats-py: a connection never closed is one leak at the program's line that connected it; its
tasks and socket are its own, never separate entries.

Against the real server on 127.0.0.1 (the ``nats_server`` fixture: skipped when it does not
answer, failed instead under RECLAIM_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import asyncio
import gc
import uuid
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

nats = pytest.importorskip("nats")
from nats.aio.client import Client  # noqa: E402 - nats is there once importorskip passed

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.nats

#: Seconds a test waits for the server's answer (a hang fails, never blocks the suite).
TIMEOUT = 10


def subject() -> str:
    """A subject of this run's own: tests running at once on one server never see each other's."""
    return f"reclaim.{uuid.uuid4().hex}"


def url(service: Service, port: int | None = None) -> str:
    return f"nats://{service.host}:{service.port if port is None else port}"


async def quiet(error: Exception) -> None:
    """An error callback that prints nothing (nats's default prints every error's traceback)."""


# Closed each way nats documents: drain(), close(), async with; a subscription with a callback
# answering a request, one read with next_msg(), one iterated.
CLEAN = """\
    import asyncio
    import nats
    from nats.aio.client import Client

    URL, SUBJECT = {url!r}, {subject!r}

    async def main():
        nc = await nats.connect(URL)
        sub = await nc.subscribe(SUBJECT + ".1")
        await nc.publish(SUBJECT + ".1", b"hello")
        assert (await sub.next_msg(timeout={timeout})).data == b"hello"
        await nc.drain()

        async with await nats.connect(URL) as nc:
            async def respond(msg):
                await msg.respond(msg.data.upper())
            await nc.subscribe(SUBJECT + ".2", cb=respond)
            assert (await nc.request(SUBJECT + ".2", b"ping", timeout={timeout})).data == b"PING"

        nc = Client()
        await nc.connect(URL)
        sub = await nc.subscribe(SUBJECT + ".3")
        await nc.publish(SUBJECT + ".3", b"hello")
        async for msg in sub.messages:
            break
        await nc.close()

    asyncio.run(main())
"""


def test_a_correct_nats_program_reports_nothing(tmp_path: Path, nats_server: Service) -> None:
    source = CLEAN.format(url=url(nats_server), subject=subject(), timeout=TIMEOUT)
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


# An ordered consumer's helper tasks (heartbeat and flow control) see the connection closed only
# at their next turn, some seconds later; asyncio.run cancels them first.
JETSTREAM = """\
    import asyncio
    import nats

    STREAM, SUBJECT = {stream!r}, {subject!r}

    async def main():
        nc = await nats.connect({url!r})
        js = nc.jetstream()
        await js.add_stream(name=STREAM, subjects=[SUBJECT], storage="memory")
        try:
            sub = await js.subscribe(SUBJECT, ordered_consumer=True)
            await js.publish(SUBJECT, b"1")
            assert (await sub.next_msg(timeout={timeout})).data == b"1"
        finally:
            await js.delete_stream(STREAM)
            await nc.close()

    asyncio.run(main())
"""


def test_a_jetstream_ordered_consumer_closed_with_its_connection_reports_nothing(
    tmp_path: Path, nats_server: Service
) -> None:
    """Its heartbeat and flow-control tasks, made by nats's JetStream client, were two tasks left
    pending after a proper ``nc.close()`` (nine of nats-py's own tests): they are nats's, as
    its connection's other tasks are."""
    name = f"reclaim_{uuid.uuid4().hex}"
    source = JETSTREAM.format(url=url(nats_server), stream=name, subject=f"{name}.a", timeout=TIMEOUT)
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


LEAK = """\
    import asyncio
    import nats

    async def main():
        nc = await nats.connect({url!r})
        await nc.subscribe({subject!r}, cb=asyncio.sleep)
        await nc.publish({subject!r}, b"hello")

    asyncio.run(main())
"""


def test_a_connection_never_closed_is_one_leak_at_its_line(tmp_path: Path, nats_server: Service) -> None:
    """Not a socket and four tasks at nats's lines (``asyncio.run`` cancels the tasks at its
    end): one connection, at the program's line; the collector closed it."""
    report, stderr = reclaim_run_json(tmp_path, LEAK.format(url=url(nats_server), subject=subject()))
    [leak] = report["leaks"]
    assert (leak["kind"], leak["state"]) == ("nats", "collected"), stderr
    target = f"{nats_server.host}:{nats_server.port}"
    fix = "close() or drain(), or async with"
    assert leak["description"] == f"connection to {target} not closed ({fix})"
    assert leak["details"] == {"target": target}
    assert (Path(leak["frames"][0]["file"]).name, leak["frames"][0]["line"]) == ("prog.py", 5)


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_left_open_is_reported_at_its_connect_line(
    leakwatch: Watch, nats_server: Service
) -> None:
    """``Client()`` then ``connect()``: the line that connected it; closed, nothing is left."""

    async def main() -> None:
        nc = Client()
        await nc.connect(url(nats_server), error_cb=quiet)
        at = line() - 1
        try:
            await nc.subscribe(subject(), cb=quiet)
            # Besides the loop and the task running this: no socket, no reader, pinger, flusher or
            # subscription task.
            assert sorted(leak.kind for leak in leakwatch.leaks()) == ["eventloop", "nats", "task"]
            leak = leakwatch.one("nats")
            assert leak.state == "open"
            assert_site(leak, at)
        finally:
            await nc.close()
        assert leakwatch.leaks("nats") == []

    asyncio.run(main())
    assert leakwatch.leaks() == []


def test_a_connection_nats_gave_up_on_is_no_leak_of_the_program(
    leakwatch: Watch, nats_server: Service
) -> None:
    """Lost with reconnecting off, nats closes it itself."""

    async def main() -> None:
        closed = asyncio.Event()

        async def on_closed() -> None:
            closed.set()

        with FaultProxy((nats_server.host, nats_server.port)) as proxy:
            nc = await nats.connect(
                url(nats_server, proxy.port), allow_reconnect=False, error_cb=quiet, closed_cb=on_closed
            )
            proxy.cut()
            await asyncio.wait_for(closed.wait(), TIMEOUT)
            assert nc.is_closed

    asyncio.run(main())
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connection_dropped_unclosed_is_the_collectors(leakwatch: Watch, nats_server: Service) -> None:
    kept: list[Any] = []

    async def main() -> None:
        kept.append(line() + 1)
        await nats.connect(url(nats_server), error_cb=quiet)

    asyncio.run(main())  # cancels its tasks, closes its loop
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("nats", "collected")
    assert_site(leak, kept[0])


def test_under_pytest_only_the_test_that_left_a_connection_open_fails(
    pytester: pytest.Pytester, nats_server: Service
) -> None:
    """Tests that close, drain or use ``async with`` pass; the one that leaves its connection
    open fails, at its line."""
    pytester.makepyfile(
        test_nats=f"""
        import asyncio
        import nats

        URL, SUBJECT = {url(nats_server)!r}, {subject()!r}

        async def quiet(error):
            pass

        def test_closes():
            async def main():
                nc = await nats.connect(URL, error_cb=quiet)
                await nc.publish(SUBJECT, b"x")
                await nc.close()
            asyncio.run(main())

        def test_drains():
            async def main():
                nc = await nats.connect(URL, error_cb=quiet)
                await nc.subscribe(SUBJECT, cb=quiet)
                await nc.drain()
            asyncio.run(main())

        def test_leaves_it_open():
            async def main():
                nc = await nats.connect(URL, error_cb=quiet)
                await nc.flush()
            asyncio.run(main())

        def test_with_block():
            async def main():
                async with await nats.connect(URL, error_cb=quiet) as nc:
                    await nc.flush()
            asyncio.run(main())
        """
    )
    reclaim_pytest_fails_one(pytester, 4, "test_leaves_it_open", "test_nats.py:25")


LAZY = """\
    import asyncio
    import sys

    asyncio.run(asyncio.sleep(0))
    assert not [name for name in sys.modules if name.split(".")[0] == "nats"], "nats was imported"
"""


def test_a_program_that_does_not_import_nats_loads_none_of_it(tmp_path: Path) -> None:
    """nats's part is installed when the program imports nats, never by reclaim itself."""
    report, stderr = reclaim_run_json(tmp_path, LAZY)
    assert report["leaks"] == [], stderr
