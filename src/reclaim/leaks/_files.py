"""Files opened with ``open()``, ``io.open``, ``pathlib``, ``os.fdopen`` and ``tempfile``.

``open()`` is the hottest acquisition there is (the benchmark opens 20,000
files), so this module is written for it:

* ``builtins.open`` and ``io.open`` are replaced by :func:`tracked_open`, which
  builds the same object stack as the C ``open()`` (raw, buffer, text wrapper:
  the same classes, line buffering on a tty, the same ``mode`` attribute) with
  one difference: the raw layer is :class:`FileIO`, a subclass of ``io.FileIO``.
* That subclass is how we learn that the *garbage collector*, not the program,
  closed a file. Wrapping ``close`` is impossible on the C classes (and
  overriding it on the subclass cost 0.3 us per file), and a weakref callback
  cannot tell closed from collected, since finalization closes the file before
  any callback runs. Instead the subclass hooks the two steps CPython takes
  only when it finalizes an *unclosed* file (see :class:`FileIO`): they cost
  nothing on every other path.
* The acquisition facts live in a slot of the raw layer, the site capture is
  inlined and keeps at most ``_records.FILE_DEPTH`` frames, and the registry is
  a list of weak references without callbacks, swept in batches.
* Calls the fast path does not cover (unusual mode strings, explicit buffer
  sizes, ``-X warn_default_encoding`` without an encoding, file arguments that
  are neither paths nor descriptors) go to the C ``open()`` unchanged, so their
  errors and warnings stay exactly CPython's; those files are still reported
  while open, but one the GC closes is not told apart from one the program closed.
"""

from __future__ import annotations

import builtins
import io
import os
import sys
import time
import warnings
import weakref
from typing import Any

from reclaim._sites import _framework_cache as _fw_cache

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record

__all__ = ["FileIO", "install", "tracked_open"]

_c_open = io.open
_getframe = sys._getframe
_capture = _records.capture
_names = _records.names
_thread_name = _records.thread_name
_time = time.time
_TextIOWrapper = io.TextIOWrapper
_FileIO = io.FileIO
_fspath = os.fspath


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


#: Weak references to the raw layer of every file built by the fast path, its acquisition
#: facts in the raw object's ``_r_facts`` slot. No callback (a Python call per file death);
#: dead references are swept in batches, so the list stays short.
table: list[weakref.ref[FileIO]] = []
_sweep_at = 512
_ref = weakref.ref
_member_finalizing = io.FileIO.__dict__["_finalizing"]


class FileIO(io.FileIO):
    """``io.FileIO`` that notices when the file is finalized unclosed.

    Only the raw layer of files opened while tracking is of this class;
    ``open()`` still returns the usual ``TextIOWrapper``/``BufferedReader``.
    Its one slot holds the acquisition facts. Both hooks run only on the paths
    that emit "ResourceWarning: unclosed file", so they cost nothing otherwise:

    * ``_dealloc_warn(source)``: the text or buffer layer is finalized unclosed
      (a file dropped by reference counting);
    * the ``_finalizing`` setter: the raw layer itself is finalized unclosed
      (unbuffered files, and files in reference cycles, where the collector
      finalizes the raw layer first).
    """

    __slots__ = ("_r_facts",)

    #: (generation, time, thread, context, name, mode, *site), None once reported or disowned.
    _r_facts: tuple[Any, ...] | None

    def _dealloc_warn(self, source: object) -> None:
        self._collected()
        if self.closefd and not self.closed:
            # CPython's own warning, but from the frame that dropped the file: the C method would
            # file it under this one, a line of reclaim's, where without us it names the program's.
            try:
                warnings.warn(f"unclosed file {source!r}", ResourceWarning, stacklevel=2, source=source)
            except Exception:  # an error filter (or a late shutdown): the C method reports it,
                _FileIO._dealloc_warn(self, source)  # type: ignore[attr-defined]  # unraisable

    @property
    def _finalizing(self) -> bool:
        return bool(_member_finalizing.__get__(self, _FileIO))

    @_finalizing.setter
    def _finalizing(self, value: bool) -> None:
        # IOBase's finalizer sets this just before closing a file nobody closed.
        if value:
            self._collected()
        _member_finalizing.__set__(self, value)

    def _collected(self) -> None:
        facts = getattr(self, "_r_facts", None)
        if facts is not None and self.closefd:
            self._r_facts = None
            rec = _record(self, facts)
            _records.leak(rec, _records.COLLECTED)


def _record(raw: FileIO, facts: tuple[Any, ...]) -> Record:
    """A record for a fast-path file (reports and leaks use records)."""
    generation, when, thread, context, name, mode = facts[:6]
    site = facts[6:]
    rec = Record(NO_OBJECT)
    rec.key = ("file", id(raw))
    rec.seq = generation
    rec.kind = "file"
    rec.info = (name, mode)
    rec.site = site
    rec.thread = thread
    rec.context = context
    rec.time = when
    rec.state = OPEN
    rec.why = None
    return rec


def open_files() -> list[tuple[Record, Any]]:
    """(record, raw layer) of every fast-path file still open."""
    out = []
    for ref in table:
        raw = ref()
        if raw is not None and not raw.closed:
            facts = raw._r_facts
            if facts is not None:
                out.append((_record(raw, facts), raw))
    return out


def _sweep() -> None:
    """Drop the references to dead files; with many files alive, wait until the list doubles."""
    global _sweep_at
    table[:] = [ref for ref in table if ref() is not None]
    _sweep_at = max(512, 2 * len(table))


def disown(file: Any) -> None:
    """*file* now belongs to another tracked object (a NamedTemporaryFile): stop reporting it."""
    raw = getattr(getattr(file, "buffer", file), "raw", file)
    if isinstance(raw, FileIO):
        raw._r_facts = None
    _records.release(id(file))


def reset() -> None:
    """Forget every file (the last tracker stopped)."""
    for ref in table:
        raw = ref()
        if raw is not None:
            raw._r_facts = None
    table.clear()
    depth_changed()


#: The code object that last called open() from user code while two frames are kept: the next
#: call from it skips the framework check (an identity test instead of a dict lookup).
_user_code: Any = None


def _user_caller(code: Any) -> bool:
    """Whether an ``open()`` called from *code* takes the unrolled two-frame capture (remembered)."""
    global _user_code
    if _fw_cache.get(code.co_filename, True) or _records.file_depth != 2:
        return False
    _user_code = code
    return True


def depth_changed() -> None:
    """The frames kept per ``open()`` may have changed: check the next caller again."""
    global _user_code
    _user_code = None


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
    try:
        raw_mode, buffer_cls, binary = _MODES[mode]
    except (KeyError, TypeError):  # unusual (or invalid) modes; try/except costs nothing until then
        return _other_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    ftype = type(file)
    if not (
        (buffering == -1 or (buffering == 0 and binary))
        and (ftype is str or ftype is int or hasattr(file, "__fspath__"))
        and (
            (encoding is None and errors is None and newline is None)
            if binary
            else (encoding is not None or _NO_ENCODING_WARNING)
        )
    ):
        return _other_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if ftype is not str and ftype is not int:
        file = _fspath(file)  # as the C open() does: the name is the path's str, not the Path
    raw = FileIO(file, raw_mode, closefd, opener)
    result: Any = raw
    if buffering:
        # What the C open() does for buffering=-1: line buffering on a tty, else the block size.
        try:
            tty = raw.isatty()
            result = buffer_cls(raw, raw._blksize)  # type: ignore[attr-defined]
            if not binary:
                result = _TextIOWrapper(result, encoding, errors, newline, tty)
                result.mode = mode
        except BaseException:
            raw.close()
            raise
    if (ftype is int or opener is not None) and closefd:
        # The descriptor (passed in, or made by the opener with os.open) now belongs to the
        # file object: it is reported as the file, not as a raw descriptor.
        _records.release(("fd", raw.fileno()))
    if len(table) >= _sweep_at:
        _sweep()
    try:  # costs nothing until it raises
        thread = _names.name
    except AttributeError:
        thread = _thread_name()
    name = file if ftype is str or ftype is int else os.fsdecode(file)
    # The facts and the site in one flat tuple (one allocation). _records.capture() inlined for
    # the usual case, a user's frame calling open(): this saves a Python call. Code objects,
    # ints and strings: the collector stops tracking the tuple on first sight.
    frame: Any = _getframe(1)
    code = frame.f_code
    if code is _user_code or _user_caller(code):
        # The usual depth, unrolled: the caller and its caller.
        back = frame.f_back
        try:
            raw._r_facts = (
                _records.generation,
                _time(),
                thread,
                _records.context,
                name,
                mode,
                code,
                frame.f_lasti,
                back.f_code,
                back.f_lasti,
            )
        except AttributeError:  # the caller is the outermost frame
            raw._r_facts = (
                _records.generation,
                _time(),
                thread,
                _records.context,
                name,
                mode,
                code,
                frame.f_lasti,
            )
    else:
        site = _capture(frame, _records.file_depth)
        raw._r_facts = (_records.generation, _time(), thread, _records.context, name, mode, *site)
    table.append(_ref(raw))
    return result


def _other_open(
    file: Any,
    mode: Any,
    buffering: int,
    encoding: str | None,
    errors: str | None,
    newline: str | None,
    closefd: bool,
    opener: Any,
) -> Any:
    """The calls the fast path does not cover: the C ``open()`` and a weakly referenced record.

    Explicit buffer sizes, unusual modes: the C ``open()`` keeps its own errors and warnings;
    such files are reported while open, but never as collected.
    """
    result = _c_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
    if (type(file) is int or opener is not None) and closefd:
        _records.release(("fd", result.fileno()))
    if isinstance(file, (bytes, os.PathLike)):
        name: Any = os.fsdecode(file)
    else:
        name = file if isinstance(file, (str, int)) else repr(file)
    # Frame 1 is tracked_open(), frame 2 its caller.
    _records.new(result, "file", (name, mode), _capture(_getframe(2), _records.file_depth))
    return result


_NO_ENCODING_WARNING = not sys.flags.warn_default_encoding


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    name, mode = rec.info
    details: Details
    if type(name) is tuple:
        # A file with no path (``tempfile.TemporaryFile``): ``(maker, directory)``, set by
        # _tempfiles in place of the directory or descriptor that open() was given.
        maker, directory = name
        details = {"path": None, "directory": directory, "mode": mode}
        if obj is not None:
            try:
                details["fd"] = obj.fileno()
            except (OSError, ValueError):
                pass
        return f"unnamed {maker} in {directory} (mode {mode!r})", details
    details = {"path": name if isinstance(name, str) else None, "mode": mode}
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
    patches.set(builtins, "open", tracked_open)
    patches.set(io, "open", tracked_open)
