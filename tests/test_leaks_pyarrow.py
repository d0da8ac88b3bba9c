"""pyarrow: the pipe Arrow's signal handling opens for the process, as its first reader's
``SignalStopHandler`` block is entered, is its own.

pyarrow is not installed for the suite (its wheel is large, and the test needs only this): a
module named ``pyarrow.lib`` stands in, its handler opening a pipe in C, as Arrow's does, the
first time it is entered.
"""

from __future__ import annotations

import ctypes
import os
import types

from _leakhelp import Watch, leakwatch

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

LIBC = ctypes.CDLL(None, use_errno=True)


def _stand_in() -> tuple[types.ModuleType, list[int]]:
    """A ``pyarrow.lib`` whose ``SignalStopHandler`` opens a pipe in C as it is first entered."""
    module = types.ModuleType("pyarrow.lib")
    pipe: list[int] = []

    class SignalStopHandler:
        def __enter__(self) -> SignalStopHandler:
            if not pipe:
                fds = (ctypes.c_int * 2)()
                assert LIBC.pipe(fds) == 0
                pipe.extend(fds)
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    SignalStopHandler.__module__ = "pyarrow.lib"
    module.SignalStopHandler = SignalStopHandler  # type: ignore[attr-defined]
    return module, pipe


def test_the_pipe_the_first_signal_stop_handler_opens_is_not_reported(leakwatch: Watch) -> None:
    """The first test that read a CSV with pyarrow was failed for two untracked descriptors with
    no line (dask's and pandas' suites). What the program opens in C besides is still reported."""
    from reclaim.leaks import _pyarrow
    from reclaim.leaks._patch import Patches

    module, pipe = _stand_in()
    patches = Patches()
    _pyarrow.install(patches, module)
    try:
        with module.SignalStopHandler():
            pass
        with module.SignalStopHandler():
            pass
        assert len(pipe) == 2
        assert leakwatch.leaks("untracked-fd") == []
        fds = (ctypes.c_int * 2)()
        assert LIBC.pipe(fds) == 0  # the program's own, opened in C
        try:
            assert sorted(leak.details["fd"] for leak in leakwatch.leaks("untracked-fd")) == sorted(fds)
        finally:
            for fd in (*fds, *pipe):
                os.close(fd)
    finally:
        patches.undo()


def test_a_check_waits_for_what_arrows_io_threads_may_still_close() -> None:
    """Arrow closes a file its reader opened on its own I/O threads, native ones, a moment after
    the read returned: a check found one read in ten still open and failed the test for it. Once
    pyarrow is loaded, a check waits out its grace period for an untracked descriptor."""
    from reclaim.leaks import _fds, _pyarrow, _tracker
    from reclaim.leaks._patch import Patches

    module, _ = _stand_in()
    patches = Patches()
    _pyarrow.install(patches, module)
    try:
        assert _tracker._may_close_meanwhile({})
    finally:
        patches.undo()
    assert _pyarrow._io_threads not in _fds.CLOSING_IN_C
