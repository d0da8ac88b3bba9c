"""dask.distributed: a cluster or client never closed is one entry at the line that made it, holding
its loop thread and what runs on it; what distributed keeps by design is not reported."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import Watch, assert_site, leakwatch, line, reclaim_run_prog

pytest.importorskip("distributed")
from distributed import Client, LocalCluster

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

#: A cluster's options for these tests: its dashboard on a free port (another program may hold 8787).
SMALL = {"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"}


def names_held(leak: object) -> list[str]:
    """The names of the threads *leak* holds, directly or under a thread it holds."""
    found: list[str] = []
    for part in getattr(leak, "holds", ()):
        if part.kind == "thread" and "name" in part.details:
            found.append(part.details["name"])
        found.extend(names_held(part))
    return found


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_local_cluster_never_closed_is_one_entry_holding_its_loop_thread(leakwatch: Watch) -> None:
    """Its 'IO loop' thread (with the scheduler's sockets and tasks under it), the scheduler's and
    the worker's scratch directories and lock files were entries at distributed's lines: one now,
    at the line that made the cluster."""
    cluster = LocalCluster(processes=False, **SMALL)  # type: ignore[arg-type]
    made = line() - 1
    try:
        with Client(cluster) as client:
            assert client.submit(sum, [1, 2]).result() == 3
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("dask", "open")
        assert_site(leak, made)
        assert leak.description == "LocalCluster not closed (close(), or a with-block)"
        assert leak.details["class"] == "distributed.LocalCluster"
        assert "IO loop" in names_held(leak)
        assert {part.kind for part in leak.holds} >= {"thread", "tempdir", "file"}
    finally:
        cluster.close()
    assert leakwatch.leaks(grace=10) == []  # its loop thread and the Profile thread (3.12+) wind down


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_local_cluster_of_processes_never_closed_holds_its_worker_processes(leakwatch: Watch) -> None:
    """Each nanny's worker process, queues, keep-alive pipe and watcher threads were entries of
    their own at distributed's lines: they are under the cluster, at the line that made it."""
    cluster = LocalCluster(processes=True, **SMALL)  # type: ignore[arg-type]
    made = line() - 1
    try:
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("dask", "open")
        assert_site(leak, made)
        kinds = {part.kind for part in leak.holds}
        assert {"thread", "subprocess", "multiprocessing"} <= kinds, kinds
    finally:
        cluster.close()


def test_a_local_cluster_of_processes_closed_leaks_nothing(leakwatch: Watch) -> None:
    """Each worker's ``AsyncProcess`` keeps a pipe distributed never closes, on purpose (its child
    exits when it reads EOF): closed as the ``AsyncProcess`` is collected, it was reported as a
    ``Pipe()`` pair "closed by the garbage collector" after every cluster of processes closed."""
    with LocalCluster(processes=True, **SMALL) as cluster, Client(cluster) as client:  # type: ignore[arg-type]
        assert client.submit(sum, [1, 2]).result() == 3
    del cluster, client
    assert leakwatch.leaks(grace=10) == []  # its loop thread and the Profile thread (3.12+) wind down


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_client_never_closed_is_one_entry_holding_the_loop_thread_it_started(leakwatch: Watch) -> None:
    """A client connected by address runs its own 'IO loop' thread: never closed, it is the entry,
    at the line that made it, not that thread at distributed's lines."""
    with LocalCluster(processes=False, **SMALL) as cluster:  # type: ignore[arg-type]
        client = Client(cluster.scheduler_address)
        made = line() - 1
        try:
            assert client.submit(sum, [1, 2]).result() == 3
            found = {leak.description: leak for leak in leakwatch.leaks()}  # the cluster's still open
            assert sorted(found) == [
                "Client not closed (close(), or a with-block)",
                "LocalCluster not closed (close(), or a with-block)",
            ]
            leak = found["Client not closed (close(), or a with-block)"]
            assert (leak.kind, leak.state) == ("dask", "open")
            assert_site(leak, made)
            assert names_held(leak) == ["IO loop"]
        finally:
            client.close()
    assert leakwatch.leaks(grace=10) == []  # its loop thread and the Profile thread (3.12+) wind down


def test_distributeds_offload_executor_made_at_import_is_not_the_programs(tmp_path: Path) -> None:
    """``distributed.utils`` makes a one-thread executor at import for the process and never shuts
    it down: once it ran work, it was reported as a ``ThreadPoolExecutor`` not shut down at the
    program's import line."""
    source = """\
        import asyncio

        from distributed.utils import offload

        assert asyncio.run(offload(sum, [1, 2])) == 3
    """
    out = reclaim_run_prog(tmp_path, source)
    assert "reclaim: no leaks in prog.py" in out.stderr, out.stderr
