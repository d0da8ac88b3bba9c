"""jupyter_client: a kernel never shut down and a client never stopped are one entry each at the
program's line, holding their child, connection file, sockets and threads; jupyter_core's loops
and runner threads, kept for the process, are its own."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

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


#: SLEEPER, and a kernel started: ``km``.
STARTED = (
    SLEEPER
    + """\
    from jupyter_client.channels import HBChannel

    # The sleeper answers no heartbeat: after the first miss, the client's heartbeat thread
    # remade its socket, at times just as the report at exit looked for it (a loaded machine).
    HBChannel.time_to_dead = 3600.0
    km = KernelManager(kernel_name="sleeper")
    km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)
"""
)


def _program_line(leak: dict[str, Any]) -> int:
    """The line of ``prog.py`` a leak was acquired at (past jupyter_client's frames)."""
    return next(int(frame["line"]) for frame in leak["frames"] if Path(frame["file"]).name == "prog.py")


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


def test_a_kernel_and_a_client_left_running_are_one_entry_each(tmp_path: Path) -> None:
    """Neither shut down nor stopped: the manager at the line that started its kernel, holding
    its child, connection file, context and control socket; the client at the line that
    started its channels, holding its sockets, threads and context."""
    source = (
        STARTED
        + """\
    tc = ThreadedKernelClient(**km.get_connection_info(session=True))
    tc.start_channels()
    pid = km.provisioner.process.pid
    print(pid, km.connection_file)
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    leaks = report["leaks"]
    assert [leak["kind"] for leak in leaks] == ["jupyter-kernel", "jupyter-client"], stderr
    kernel, client = leaks
    lines = textwrap.dedent(source).splitlines()
    assert _program_line(kernel) == lines.index("km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)") + 1
    assert _program_line(client) == lines.index("tc.start_channels()") + 1
    assert "not shut down (shutdown_kernel())" in kernel["description"]
    assert sorted(part["kind"] for part in kernel["holds"]) == [
        "subprocess",
        "tempfile",
        "zmq-context",
        "zmq-socket",
    ]
    assert "channels not stopped (stop_channels())" in client["description"]
    kinds = [part["kind"] for part in client["holds"]]
    assert kinds.count("zmq-socket") == 5
    assert kinds.count("zmq-context") == 1
    assert "thread" in kinds


def test_a_kernel_manager_dropped_with_its_kernel_running_is_the_collectors(tmp_path: Path) -> None:
    """Its __del__ closes its control socket and removes its connection file, not its kernel:
    one entry, collected, at the line that started it, holding its child and its socket."""
    source = (
        SLEEPER
        + """\
    import gc
    import zmq

    # A context of the program's: one the manager made, collected in one cycle with its control
    # socket, hangs in its __del__ (term() waits for the socket, not closed yet).
    ctx = zmq.Context()

    def start():
        km = KernelManager(kernel_name="sleeper", context=ctx)
        km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)

    start()
    gc.collect()
    ctx.destroy(linger=0)
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    leaks = report["leaks"]
    assert [leak["kind"] for leak in leaks] == ["jupyter-kernel"], stderr
    (kernel,) = leaks
    assert kernel["closed_by_gc"]
    # Not "closed by the garbage collector": its __del__ leaves the kernel running (nbclient's).
    assert "not shut down (shutdown_kernel()) (its manager dropped: the garbage collector" in stderr
    assert "finalized it, and the kernel runs on)" in stderr
    lines = textwrap.dedent(source).splitlines()
    assert _program_line(kernel) == lines.index("    km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)") + 1
    assert sorted(part["kind"] for part in kernel["holds"]) == ["subprocess", "zmq-socket"]


def test_a_client_dropped_with_its_channels_running_is_one_entry_holding_them(tmp_path: Path) -> None:
    """Its __del__ closes nothing while its channels run (it logs "Could not destroy zmq
    context"): one entry, collected, whose parts still open are listed under it, not as five
    entries of their own, and not said to be closed by the collector."""
    source = (
        STARTED
        + """\
    import gc

    def start():
        kc = km.client()
        kc.start_channels()

    start()
    gc.collect()
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    leaks = report["leaks"]
    assert [leak["kind"] for leak in leaks] == ["jupyter-kernel", "jupyter-client"], stderr
    client = leaks[1]
    assert client["closed_by_gc"]
    assert "channels not stopped (stop_channels()) (its client dropped: the garbage collector" in stderr
    assert "finalized it, and its channels run on)" in stderr
    lines = textwrap.dedent(source).splitlines()
    assert _program_line(client) == lines.index("    kc.start_channels()") + 1
    kinds = [part["kind"] for part in client["holds"]]
    assert kinds.count("zmq-socket") == 5, kinds
    assert "thread" in kinds


def test_a_kernel_started_again_after_a_shutdown_is_at_the_new_line(tmp_path: Path) -> None:
    """Shut down, then started again, restarted and left: the entry is at the second start, not
    the first one's line (a restart keeps it)."""
    source = (
        SLEEPER
        + """\
    import zmq

    ctx = zmq.Context()  # a context it made is destroyed as it shuts down: no second start
    km = KernelManager(kernel_name="sleeper", context=ctx)
    km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)
    km.shutdown_kernel(now=True)
    km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)  # again
    km.restart_kernel(now=True)
    ctx.destroy(linger=0)
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    leaks = report["leaks"]
    assert [leak["kind"] for leak in leaks] == ["jupyter-kernel"], stderr
    again = (
        textwrap.dedent(source).splitlines().index("km.start_kernel(stdout=DEVNULL, stderr=DEVNULL)  # again")
    )
    assert _program_line(leaks[0]) == again + 1


def test_a_kernel_that_died_and_was_cleaned_up_is_no_leak(tmp_path: Path) -> None:
    """nbclient cleans up after a kernel that killed itself with ``cleanup_resources()``, never
    ``shutdown_kernel()``: the public method keeps the function its class was made with
    (``run_sync(_async_cleanup_resources)``; on ``AsyncKernelManager`` that function itself),
    so the kernel was "not shut down"."""
    source = (
        SLEEPER
        + """\
    import asyncio
    import signal

    km = KernelManager(kernel_name="sleeper")
    km.start_kernel()
    km.provisioner.process.send_signal(signal.SIGKILL)
    km.provisioner.process.wait()
    km.cleanup_resources()

    async def main():
        km = AsyncKernelManager(kernel_name="sleeper")
        await km.start_kernel()
        km.provisioner.process.send_signal(signal.SIGKILL)
        km.provisioner.process.wait()
        await km.cleanup_resources()

    asyncio.run(main())
    shutil.rmtree(spec)
    """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


def test_a_client_whose_channels_say_they_run_after_stop_channels_is_stopped(tmp_path: Path) -> None:
    """jupyter_server's gateway client keeps queues of its own as channels, whose ``is_alive()``
    stays true once stopped: its client, ``stop_channels()`` called, was reported as channels not
    stopped. One never stopped still is."""
    source = """\
    import asyncio
    from jupyter_client.asynchronous.client import AsyncKernelClient

    class QueueChannel:
        def __init__(self):
            self.channel_socket = object()  # a websocket closed elsewhere, never reset

        def start(self):
            pass

        def stop(self):
            pass

        def is_alive(self):
            return self.channel_socket is not None

    class QueueClient(AsyncKernelClient):
        @property
        def shell_channel(self):
            if self._shell_channel is None:
                self._shell_channel = QueueChannel()
            return self._shell_channel

    def started():
        kc = QueueClient()
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        return kc

    async def main():
        started().stop_channels()
        return started()

    KEEP = asyncio.run(main())
    """
    report, stderr = reclaim_run_json(tmp_path, source)
    assert [leak["kind"] for leak in report["leaks"]] == ["jupyter-client"], stderr
    lines = textwrap.dedent(source).splitlines()
    start = "    kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)"
    assert _program_line(report["leaks"][0]) == lines.index(start) + 1
