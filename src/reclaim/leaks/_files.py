"""Files opened with ``open()``, ``io.open``, ``pathlib`` and ``os.fdopen``.

``open()`` is the hottest acquisition there is (the benchmark opens 20,000
files), so this module is written for it:

* ``builtins.open`` and ``io.open`` are replaced by :func:`tracked_open`, which
  builds the same object stack as the C ``open()`` (raw, buffer, text wrapper:
  the same classes, line buffering on ttys, the same ``mode`` attribute) with one
  difference: the raw layer is :class:`FileIO`, a subclass of ``io.FileIO``.
  That subclass is how we learn that the *garbage collector*, not the program,
  closed a file: CPython calls ``raw._dealloc_warn()`` (text and buffered
  files finalized unclosed) or ``raw.close()`` with ``_finalizing`` set (the raw
  file finalized first, as happens in reference cycles) exactly on the path that
  emits "ResourceWarning: unclosed file". Wrapping ``close`` on the C classes is
  impossible and a weakref callback alone cannot tell closed from collected, since
  finalization closes the file before any callback runs.
* The record is created inline (no helper call) and captures the site with one
  frame walk; the thread name and the time are two attribute reads.
* Calls the fast path does not cover (unusual mode strings, ``buffering=1`` in
  binary mode, ``-X warn_default_encoding`` without an encoding, file arguments
  that are neither paths nor descriptors) go to the C ``open()`` unchanged so
  their errors and warnings stay exactly CPython's; those files are still tracked
  while alive, but one the GC closes is not told apart from one the program closed.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import threading
import time
from typing import Any

from reclaim._sites import capture_from

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import OPEN, Record, died, live

__all__ = ["FileIO", "install", "tracked_open"]

_c_open = io.open
_getframe = sys._getframe
_current_thread = threading.current_thread
_time = time.time
_counter = _records.counter
_TextIOWrapper = io.TextIOWrapper
_FileIO = io.FileIO
_isatty_open_only = getattr(io.FileIO, "_isatty_open_only", None)  # 3.14+: no ioctl for regular files


def _modes() -> dict[str, tuple[str, type, bool]]:
    """mode string -> (raw mode, buffer class, binary), for the spellings people write."""
    table: dict[str, tuple[str, type, bool]] = {}
    for base in "rwxa":
        for plus in ("", "+"):
            buffer_cls = (
                io.BufferedRandom if plus else io.BufferedReader if base == "r" else io.BufferedWriter
            )
            for tb in ("", "t", "b"):
                for spelling in (base + tb + plus, base + plus + tb):
                    table[spelling] = (base + plus, buffer_cls, tb == "b")
    return table


_MODES = _modes()


class FileIO(io.FileIO):
    """``io.FileIO`` that notices when it is closed by finalization rather than by the program.

    Only the raw layer of files opened while tracking is of this class;
    ``open()`` still returns the usual ``TextIOWrapper``/``BufferedReader``.
    """

    __slots__ = ("_reclaim",)
    _reclaim: Record | None

    def _dealloc_warn(self, source: object) -> None:
        # Called by the buffer/text layer while it is finalized unclosed.
        _collected(self)
        _FileIO._dealloc_warn(self, source)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self._finalizing:  # type: ignore[attr-defined]
            _collected(self)
        _FileIO.close(self)


def _collected(raw: FileIO) -> None:
    rec: Record | None = getattr(raw, "_reclaim", None)
    if rec is not None and rec.state == OPEN and raw.closefd:
        _records.leak(rec, _records.COLLECTED)


def tracked_open(
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> Any:
    """``open()`` with the acquisition recorded; same arguments, same result."""
    spec = _MODES.get(mode)
    raw: FileIO | None = None
    if (
        spec is not None
        and buffering >= -1
        and (type(file) is str or type(file) is int or hasattr(file, "__fspath__"))
        and (
            (encoding is None and errors is None and newline is None and buffering != 1)
            if spec[2]
            else (buffering != 0 and (encoding is not None or not _WARN_ENCODING))
        )
    ):
        rawmode, buffer_cls, binary = spec
        if type(file) is int and closefd:
            # The descriptor now belongs to the file object: report it as the file.
            _records.release(("fd", file))
        raw = FileIO(file, rawmode, closefd, opener)
        try:
            line_buffering = False
            if buffering == 1 or (
                buffering < 0 and (raw._isatty_open_only() if _isatty_open_only else raw.isatty())  # type: ignore[attr-defined]
            ):
                buffering = -1
                line_buffering = True
            if buffering < 0:
                buffering = raw._blksize  # type: ignore[attr-defined]
            if buffering == 0:
                result: Any = raw
            else:
                result = buffer_cls(raw, buffering)
                if not binary:
                    result = _TextIOWrapper(result, encoding, errors, newline, line_buffering)
                    result.mode = mode
        except BaseException:
            raw.close()
            raise
    else:
        result = _c_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    rec = Record(result, died)
    rec.key = key = id(result)
    rec.seq = next(_counter)
    rec.kind = "file"
    rec.info = (file if type(file) is str or type(file) is int else os.fsdecode(file), mode)
    rec.site = capture_from(_getframe(1), _records.depth)
    rec.thread = _current_thread().name
    rec.context = _records.context
    rec.time = _time()
    rec.state = OPEN
    rec.why = None
    if raw is not None:
        raw._reclaim = rec
    live[key] = rec
    return result


_WARN_ENCODING = bool(sys.flags.warn_default_encoding)


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    name, mode = rec.info
    details: Details = {"path": name if isinstance(name, str) else None, "mode": mode}
    if isinstance(name, int):
        details["fd"] = name
    if obj is not None:
        try:
            details["fd"] = obj.fileno()
        except (OSError, ValueError):
            pass
    label = f"fd {name}" if isinstance(name, int) else name
    return f"{label} (mode {mode!r})", details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    try:
        return (obj.fileno(),)
    except (OSError, ValueError):
        return ()


register(Kind("file", is_open=_is_open, describe=_describe, fds=_fds))


def install(patches: Patches) -> None:
    """Route ``open``/``io.open`` (and so pathlib, ``os.fdopen``, tempfile) through the tracker."""
    global _WARN_ENCODING
    _WARN_ENCODING = bool(sys.flags.warn_default_encoding)
    patches.set(builtins, "open", tracked_open)
    patches.set(io, "open", tracked_open)
