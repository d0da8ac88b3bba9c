"""billiard (Celery's fork of multiprocessing): its process-wide machinery is its own, and its pools,
queues, pipes and processes are reported as multiprocessing's are."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_json, reclaim_run_prog

pytest.importorskip("billiard")

# A shared value lives in billiard's heap: an arena (a descriptor of an unlinked file, and its
# mmap) kept for the whole process and reused by the next value, as multiprocessing's heap does.
SHARED_VALUE = """\
    import billiard

    counter = billiard.Value("i", 0)
    counter.value += 1
    del counter
    print(billiard.RawArray("i", 4)[:])
"""


def test_billiard_heap_arenas_are_its_own(tmp_path: Path) -> None:
    """A shared value's arena, kept by billiard's heap for the process, is not the program's leak."""
    result = reclaim_run_prog(tmp_path, SHARED_VALUE, "--fail")
    assert result.stdout == "[0, 0, 0, 0]\n"
    assert "reclaim: no leaks" in result.stderr, result.stderr


# Every part released but for lines 8 (a pool with a time-limit thread), 12 (a queue), 14 (a pipe
# with billiard's own arguments), 15 (a pipe with one end closed), 16 (a pipe with an end dropped)
# and 17 (a process never joined).
PARTS = """\
    import billiard

    def work():
        pass

    if __name__ == "__main__":
        closed = billiard.Pool(2, maxtasksperchild=1)
        kept = billiard.Pool(1, soft_timeout=30, timeout=60)
        print(closed.map(abs, [-1, -2]), kept.apply(abs, (-3,)))
        closed.close(); closed.join()
        billiard.Pool(1).terminate()
        queue = billiard.Queue(); queue.put(1); print(queue.get())
        done = billiard.Queue(); done.close(); done.join_thread()
        reader, writer = billiard.Pipe(duplex=False, rnonblock=True)
        first, second = billiard.Pipe(); second.close()
        billiard.Pipe()[0].close()
        proc = billiard.Process(target=work); proc.start()
        joined = billiard.Process(target=work); joined.start(); joined.join()
"""


def test_billiards_pools_queues_pipes_and_processes_are_one_entry_each_at_the_programs_line(
    tmp_path: Path,
) -> None:
    """A billiard pool never closed is one entry, not its workers, pipes and threads (11 entries
    before, at billiard's lines); its queues, pipes and processes are as multiprocessing's."""
    report, stderr = reclaim_run_json(tmp_path, PARTS)
    found = sorted(
        (leak["frames"][0]["line"], leak["kind"], leak["description"], leak["state"])
        for leak in report["leaks"]
    )
    assert [entry[:2] for entry in found] == [
        (8, "multiprocessing"),
        (12, "multiprocessing"),
        (14, "multiprocessing"),
        (15, "multiprocessing"),
        (16, "multiprocessing"),
        (17, "subprocess"),
    ], stderr
    pool, queue, pipe, half_closed, dropped, process = found
    assert pool[2] == "billiard.Pool not closed (close() then join(), or terminate())", stderr
    assert queue[2] == "billiard.Queue not closed (close() and join_thread())", stderr
    assert pipe[2] == "billiard.Pipe() connection pair not closed: both ends open (close() each)", stderr
    assert "the first end open (close() it), the second end closed" in half_closed[2], stderr
    assert dropped[3] == "collected", stderr
    assert "billiard Process 'Process-" in process[2], stderr
    assert "running work()" in process[2], stderr


# Celery's worker pool (a billiard pool) makes a queue pair per worker process in its own code.
CELERY_POOL = """\
    from celery.concurrency.asynpool import AsynPool

    stopped = AsynPool(processes=1, threads=False)
    stopped.terminate(); stopped.join()
    kept = AsynPool(processes=2, threads=False)
"""


def test_celerys_worker_pool_is_one_entry_with_its_queues_per_process(tmp_path: Path) -> None:
    """Celery's ``AsynPool`` never closed is one entry at the program's line (before: one more
    per worker process, its queues' pipes, at Celery's lines); one terminated leaves nothing."""
    pytest.importorskip("celery.concurrency.asynpool")
    report, stderr = reclaim_run_json(tmp_path, CELERY_POOL)
    found = [(leak["frames"][0]["line"], leak["description"]) for leak in report["leaks"]]
    assert found == [
        (5, "celery.concurrency.asynpool.AsynPool not closed (close() then join(), or terminate())")
    ], stderr
