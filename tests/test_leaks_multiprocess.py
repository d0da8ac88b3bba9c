"""multiprocess, dill's copy of multiprocessing (mpire, pathos and datasets run on it): tracked as
multiprocessing is, module for module. Unknown to reclaim, a program using it was reported as
raw pipes, sockets, descriptors and forked children: a pool terminated by its with-block as pipe
pairs closed by the garbage collector, its resource tracker and heap arenas as the leaks of the
first test that used them, a manager's proxies as hundreds of sockets."""

from __future__ import annotations

from pathlib import Path

import pytest

from _leakhelp import reclaim_run_json

pytest.importorskip("multiprocess")

# The same program for either package (its name is the argument), fork context: a pool used in
# a with-block, a process joined, a queue closed and joined and a manager shut down leak
# nothing; a pool never closed and a Pipe() pair left open are one entry each, at their lines.
PROGRAM = """\
import sys
mp = __import__(sys.argv[1]).get_context("fork")

def square(x):
    return x * x

if __name__ == "__main__":
    with mp.Pool(2) as used:
        assert used.map(square, [1, 2]) == [1, 4]
    left = mp.Pool(1)
    assert left.apply(square, (3,)) == 9
    joined = mp.Process(target=square, args=(1,))
    joined.start()
    joined.join()
    first, second = mp.Pipe()
    queue = mp.Queue()
    queue.put(1)
    assert queue.get() == 1
    queue.close()
    queue.join_thread()
    with mp.Manager() as manager:
        assert manager.list([1])[0] == 1
"""


@pytest.mark.parametrize("package", ["multiprocessing", "multiprocess"])
def test_multiprocess_is_reported_as_multiprocessing_is(tmp_path: Path, package: str) -> None:
    report, stderr = reclaim_run_json(tmp_path, PROGRAM.replace("sys.argv[1]", repr(package)))
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("multiprocessing", "open", 10), ("multiprocessing", "open", 15)], stderr
    pool, pipe = (leak["description"] for leak in report["leaks"])
    assert pool.startswith(f"{package}.Pool not closed"), stderr
    assert pipe == f"{package}.Pipe() connection pair not closed: both ends open (close() each)", stderr
    assert "forked child" not in stderr, stderr  # no process it forked reports anything either


# A descriptor pickled outside a child's start starts the process's resource sharer: a listener
# socket and a daemon thread kept to the end (a Connection put on a queue for a running child).
SHARER = """\
import os
from PACKAGE import reduction

read, write = os.pipe()
duplicate = reduction.DupFd(read)
os.close(duplicate.detach())
os.close(read)
os.close(write)
"""


@pytest.mark.parametrize("package", ["multiprocessing", "multiprocess"])
def test_the_resource_sharer_is_the_processs_not_the_first_users(tmp_path: Path, package: str) -> None:
    """Its listener and thread were the leaks of the program, or of the first test that pickled
    a descriptor (CPython's and multiprocess's own connection-pickling tests)."""
    report, stderr = reclaim_run_json(tmp_path, SHARER.replace("PACKAGE", package))
    assert report["leaks"] == [], stderr
