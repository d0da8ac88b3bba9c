"""grpc: the descriptors gRPC's C core opens for the process are its own; a channel never closed is
reported at its line."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line, reclaim_run_json

grpc = pytest.importorskip("grpc")
pytest.importorskip("grpc.aio")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

# A server and a client channel, each closed as gRPC's documentation says; grpc.aio too.
CLEAN = """\
    import asyncio
    from concurrent import futures

    import grpc
    import grpc.aio

    def echo(request, context):
        return request

    handler = grpc.method_handlers_generic_handler(
        "t.Echo", {"Say": grpc.unary_unary_rpc_method_handler(echo)}
    )
    with futures.ThreadPoolExecutor(max_workers=2) as executor:
        server = grpc.server(executor)
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert channel.unary_unary("/t.Echo/Say")(b"hi") == b"hi"

        async def main():
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert await channel.unary_unary("/t.Echo/Say")(b"hi") == b"hi"

        asyncio.run(main())
        server.stop(None).wait()
"""


def test_a_correct_grpc_program_reports_nothing(tmp_path: Path) -> None:
    """gRPC's C core opens epoll and eventfd descriptors with the first channel or server and
    keeps them for the process: every correct gRPC program reported them as untracked."""
    report, stderr = reclaim_run_json(tmp_path, CLEAN)
    assert report["leaks"] == [], stderr


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_channel_never_closed_is_reported_at_the_line_that_made_it(leakwatch: Watch) -> None:
    """gRPC connects in C: a channel left open was only untracked sockets, with no line."""
    channel = grpc.insecure_channel("127.0.0.1:9")
    at = line() - 1
    try:
        leak = leakwatch.one("grpc")
        assert_site(leak, at)
        assert leak.description == "channel to 127.0.0.1:9 not closed (close(), or a with-block)"
        assert leak.state == "open"
    finally:
        channel.close()
    assert leakwatch.leaks() == []
    with grpc.insecure_channel("127.0.0.1:9"):
        pass
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow
def test_a_channel_dropped_unclosed_is_the_collectors(leakwatch: Watch) -> None:
    """Its C channel closes when the last reference goes (stubs hold it too): never closed."""
    grpc.insecure_channel("127.0.0.1:9")
    at = line() - 1
    gc.collect()
    leak = leakwatch.one("grpc")
    assert_site(leak, at)
    assert leak.state == "collected"


@pytest.mark.reclaim_allow
def test_an_aio_channel_never_closed_is_reported_and_one_closed_is_not(leakwatch: Watch) -> None:
    async def main() -> None:
        async with grpc.aio.insecure_channel("127.0.0.1:9"):
            pass
        assert channels() == []
        channel = grpc.aio.insecure_channel("127.0.0.1:9")
        at = line() - 1
        assert_site(leakwatch.one("grpc"), at)
        await channel.close()
        assert channels() == []

    def channels() -> list[object]:  # the loop running this is open, and no leak of the test's
        return [leak for leak in leakwatch.leaks() if leak.kind == "grpc"]

    asyncio.run(main())
