"""pyarrow: the pipe Arrow's signal handling opens for the process is its own.

pyarrow's readers (``pyarrow.csv.read_csv``, dataset scans, ``to_pandas`` of a large table)
run in a ``SignalStopHandler`` block, which lets Ctrl-C stop them: entering the first one makes
Arrow's C++ code open a pipe it wakes its signal-handling thread through, kept for the life of
the process. No hook sees it opened, so the first test that read a CSV with pyarrow was failed
for two untracked descriptors with no line (dask's and pandas' suites); the next read opens
nothing. Entering the block reads the descriptor table before and after, as making a c-ares
channel does (see :mod:`._pycares`), and what appeared that is neither a file nor a socket is
kept (:data:`._fds.KEPT`) while it is the same descriptor. Each block costs two reads of the
table (tens of microseconds, against a read's milliseconds); a program that does not import
pyarrow pays nothing.

Arrow's readers open files in C++ and close them on Arrow's own I/O threads, native threads
Python does not see, a few milliseconds after the read returned: a check right after it found
one in about ten reads still open, and failed the test for it (pyarrow's dataset, feather and
parquet tests, at random). Once pyarrow is loaded, a check waits out its grace period for an
untracked descriptor as it does while another Python thread runs (:data:`._fds.CLOSING_IN_C`).
"""

from __future__ import annotations

from types import ModuleType

from . import _fds
from ._patch import Patches, own_methods

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def install(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s (``pyarrow.lib``'s) ``SignalStopHandler`` keep what entering it opens.

    Its class is immutable (compiled): the module's name for it is given a subclass, which the
    pyarrow modules imported next (``pyarrow._csv``, ``pyarrow._dataset``) take by that name."""
    patches.set(_fds, "CLOSING_IN_C", (*_fds.CLOSING_IN_C, _io_threads))
    found = own_methods(module, "SignalStopHandler", "__enter__")
    if found is None:
        return
    cls, (enter,) = found
    try:
        keeping = type(cls.__name__, (cls,), {"__enter__": _fds.keeping(enter), "__module__": cls.__module__})
    except TypeError:  # not a base class: left as it is
        return
    keeping.__qualname__ = cls.__qualname__
    patches.set(module, "SignalStopHandler", keeping)


def _io_threads() -> bool:
    """Arrow's I/O threads may be closing a file its reader opened (see the module's docstring)."""
    return True
