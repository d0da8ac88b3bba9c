"""Thread pools: what a work item opens for the program is reported where the program handed it over.

``asyncio.to_thread(open, path)``, ``loop.run_in_executor(None, open, path)`` and
``executor.submit(open, path)`` (what aiofiles does) open the file in a worker
thread whose stack is the standard library's only; the file is still the
program's to close.
"""

from __future__ import annotations

from pathlib import Path

from _leakhelp import reclaim_run_json

# Lines 6, 9 and 12 hand an open() to a worker thread; only the file of line 12 is closed.
HANDED_OVER = """\
    import asyncio, concurrent.futures, functools
    KEEP = []

    async def main():
        loop = asyncio.get_running_loop()
        KEEP.append(await asyncio.to_thread(open, "a.txt", "w"))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Dropped, not kept: the garbage collector closes it.
            await loop.run_in_executor(pool, functools.partial(open, "b.txt", "w"))
            KEEP.append(pool.submit(open, "c.txt", "w").result())
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            closed = pool.submit(open, "d.txt", "w").result()
            closed.close()

    asyncio.run(main())
"""


def test_a_file_opened_by_a_work_item_is_reported_at_the_line_that_handed_it_over(tmp_path: Path) -> None:
    """to_thread, run_in_executor, submit: one file entry each, at the program's line; not the closed one."""
    report, stderr = reclaim_run_json(tmp_path, HANDED_OVER)
    found = sorted(
        (leak["kind"], Path(leak["details"]["path"]).name, leak["state"], leak["frames"][0]["line"])
        for leak in report["leaks"]
    )
    assert found == [
        ("file", "a.txt", "open", 6),
        ("file", "b.txt", "collected", 9),
        ("file", "c.txt", "open", 10),
    ], stderr


# A library's executor made at import and never used (asgiref's, which importing Django makes),
# one dropped unused, and one that ran work and was never shut down (line 8, the only leak).
UNUSED = """\
    import concurrent.futures, gc
    MODULE_LEVEL = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    def dropped():
        concurrent.futures.ThreadPoolExecutor(2)
    dropped()
    gc.collect()
    KEEP = []
    KEEP.append(concurrent.futures.ThreadPoolExecutor(1))
    assert KEEP[0].submit(abs, -1).result() == 1
"""


def test_an_executor_that_never_started_a_worker_is_not_reported(tmp_path: Path) -> None:
    """It holds no thread; only the one that ran work and was never shut down is reported."""
    report, stderr = reclaim_run_json(tmp_path, UNUSED)
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("thread", "open", 8)], stderr


# A one-thread pool: line 9's job starts its thread; line 12's opens the socket in the program's
# function of line 5, which line 14 handed over through line 12.
SECOND_JOB = """\
    import concurrent.futures, socket
    KEEP = []

    def open_socket():
        KEEP.append(socket.socket())

    def warm_up(pool):
        pool.submit(abs, -1).result()

    def leak_it(pool):
        pool.submit(open_socket).result()

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        warm_up(pool)
        leak_it(pool)
"""


def test_what_a_second_job_acquires_in_the_programs_code_goes_on_at_its_submit(tmp_path: Path) -> None:
    """Past the program's function a worker ran, the stack went on at the line that started the
    thread: the line that submitted an earlier job (cashews' disk cache, in asyncio's default
    executor; with a module-scoped pool, another test's line)."""
    report, stderr = reclaim_run_json(tmp_path, SECOND_JOB)
    [leak] = report["leaks"]
    assert [frame["line"] for frame in leak["frames"]] == [5, 11, 15], stderr
