"""jupyter_client: a kernel never shut down and a client never stopped are one entry each at the
program's line, holding their child, connection file, sockets and threads; jupyter_core's loops
and runner threads, kept for the process, are its own."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_json

pytest.importorskip("jupyter_client")

# A kernel spec whose "kernel" only waits: starting it launches a child, writes a connection
# file and connects the control socket; a client's channels connect whether or not it answers.
SLEEPER = """\
    import json, os, shutil, sys, tempfile

    spec = tempfile.mkdtemp()
    os.makedirs(os.path.join(spec, "kernels", "sleeper"))
    with open(os.path.join(spec, "kernels", "sleeper", "kernel.json"), "w") as f:
        # It ends with its parent: one left running must not outlive the program under test.
        sleeper = "import os, time\\nparent = os.getppid()\\nwhile os.getppid() == parent: time.sleep(0.05)"
        argv = [sys.executable, "-c", sleeper, "{connection_file}"]
        json.dump({"argv": argv, "display_name": "sleeper", "language": "python"}, f)
    os.environ["JUPYTER_PATH"] = spec

    from subprocess import DEVNULL

    from jupyter_client import AsyncKernelManager, KernelManager
    from jupyter_client.threaded import ThreadedKernelClient
"""


def test_a_kernel_shut_down_and_a_client_stopped_leave_nothing(tmp_path: Path) -> None:
    """Started, restarted, shut down; a blocking and a threaded client stopped; the asyncio
    manager too: nothing is reported, jupyter_core's loops and runner threads included."""
    source = (
        SLEEPER
        + """\
    import asyncio

    km = KernelManager(kernel_name="sleeper")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.stop_channels()
    km.restart_kernel(now=True)
    tc = ThreadedKernelClient(**km.get_connection_info(session=True))
    tc.start_channels()
    tc.stop_channels()
    km.shutdown_kernel(now=True)

    async def main():
        km = AsyncKernelManager(kernel_name="sleeper")
        await km.start_kernel()
        km.client().stop_channels()
        await km.shutdown_kernel(now=True)
        KernelManager(kernel_name="sleeper").is_alive()  # blocking, where a loop runs: a runner

    asyncio.run(main())
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr
