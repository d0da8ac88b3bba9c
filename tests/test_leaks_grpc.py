"""grpc: the descriptors gRPC's C core opens for the process are its own, not a program's leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_json

pytest.importorskip("grpc")

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
