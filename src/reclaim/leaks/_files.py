"""Files opened with ``open()``, ``io.open``, ``pathlib``, ``os.fdopen`` and ``tempfile``.

``open()`` is the hottest acquisition there is (the benchmark opens 20,000
files), and what a tracked file costs afterwards, on every ``read``, ``write``
and line, matters as much. So:

* ``builtins.open`` and ``io.open`` are replaced by :func:`tracked_open`, which
  calls the C ``open()`` unchanged (same objects, same errors and warnings) and
  then records the file on its raw layer, an ``io.FileIO`` of the exact type.
  The C buffered and text layers read and write fastest over an exact
  ``io.FileIO``: over a subclass, each call looks ``closed`` up by name (a
  subclass made 200,000 small writes 1.6x slower and line iteration 1.9x).
* How we learn that the *garbage collector*, not the program, closed a file:
  CPython looks two methods of the raw layer up by name, and an instance
  attribute overrides a method in that lookup. The raw layer gets two, in its
  ``__dict__``:

  - ``_dealloc_warn`` (:func:`_dealloc_warn`): what the text or buffer layer
    calls when it is finalized unclosed (a file dropped by reference counting);
  - ``close`` (a bound :func:`_close`): how every close of the raw layer
    arrives, the program's through the buffer layer as well as IOBase's
    finalizer's, which sets ``_finalizing`` first (unbuffered files, and files in
    reference cycles, where the collector often finalizes the raw layer first).
    It removes itself, so the raw layer and its bound method are a cycle only
    while the file is open.

* The acquisition facts are one flat tuple, the ``__self__`` of the ``close`` hook
  (no attribute of their own to set: see :func:`facts_of`), the site capture is
  inlined and keeps at most ``_records.FILE_DEPTH`` frames, and the registry is a
  list of weak references without callbacks, swept in batches.
* An unbuffered file (``buffering=0``) *is* its raw layer, which no C layer reads
  through, so it is built as :class:`FileIO`, a subclass whose ``_finalizing``
  setter is the finalizer's hook: a bound ``close`` in its ``__dict__`` would make
  the file the cycle that outlives it when dropped.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import io
import os
import sys
import time
import types
import warnings
import weakref
from _thread import get_ident
from collections import namedtuple

from reclaim import _sites
from reclaim._sites import _FINALIZE_CALL, is_program
from reclaim._sites import _framework_cache as _fw_cache
from reclaim._sites import acquired_in_finalizer as _acquired_in_finalizer
from reclaim._sites import closing_in_finalizer as _closing_in_finalizer

from . import _records
from ._fds import describe_fd
from ._kinds import Details, Kind, register
from ._patch import Patches, call_as
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any, NamedTuple

__all__ = ["collected", "install", "install_text_opener", "is_tracked", "raw_layer", "tracked_open"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_c_open = io.open
_getframe = sys._getframe
_capture = _records.capture
_names = _records.names
_thread_name = _records.thread_name
_time = time.time
_TextIOWrapper = io.TextIOWrapper
_FileIO = io.FileIO
_fileio_close = io.FileIO.close
_bound = types.MethodType
_fspath = os.fspath
_member_finalizing = io.FileIO.__dict__["_finalizing"]
_NO_ENCODING_WARNING = not sys.flags.warn_default_encoding


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

#: Weak references to the raw layer of every file opened while tracking, its acquisition facts on
#: it (see facts_of()). No callback (a Python call per file death); dead references are swept in
#: batches, so the list stays short.
table: list[weakref.ref[Any]] = []
_sweep_at = 512
_ref = weakref.ref


class FileIO(io.FileIO):
    """The unbuffered file ``open(..., buffering=0)`` returns while tracking.

    IOBase's finalizer sets ``_finalizing`` just before it closes a file nobody
    closed: the setter is the hook, and costs nothing on any other path.
    """

    @property
    def _finalizing(self) -> bool:
        return bool(_member_finalizing.__get__(self, _FileIO))

    @_finalizing.setter
    def _finalizing(self, value: bool) -> None:
        if value:
            collected(self)
        _member_finalizing.__set__(self, value)

    def close(self) -> None:
        """Close it; one a library's ``__del__`` closes (ptyprocess's, for a pexpect ``spawn``
        dropped unclosed) was closed by the garbage collector, as a buffered file's is."""
        if not _FileIO.closed.__get__(self) and not _member_finalizing.__get__(self, _FileIO):
            try:
                caller = _getframe(1)
            except ValueError:  # called from C code with no Python frame (a with-block's exit)
                caller = None
            if caller is not None and (
                (_closing_from(caller) and not _acquired_in_finalizer(caller, (facts_of(self) or ())[7:]))
                or (_sites._collecting_in is not None and _for_finalizer(facts_of(self)))
            ):
                collected(self)
        _FileIO.close(self)


def _close(facts: tuple[Any, ...]) -> None:
    """``raw.close()`` of a tracked file: the program's close, or IOBase's finalizer's.

    Bound to the file's facts in its raw layer's ``__dict__`` (see the module's docstring;
    the raw layer is their first item), it removes itself first: from then on ``close`` is
    the C method again and nothing refers back to the raw layer.
    """
    raw = facts[0]
    try:
        del raw.close
    except AttributeError:
        pass
    if raw._finalizing:  # set by IOBase's finalizer just before it closes a file nobody closed
        _leaked(raw, facts)
    else:
        # A wrapper's finalizer (a GzipFile's: IOBase's sets the wrapper's _finalizing and calls
        # its close) or a library's __del__ (a ZipFile's: close, _fpclose) closing it. Every
        # close of a tracked file passes here: the program's own (its caller is neither a close
        # nor a private method) is told apart by the caller's name, and the code last found to
        # be the program's by identity alone.
        try:
            caller = _getframe(1)
        except ValueError:  # called from C code with no Python frame (a C object's dealloc)
            caller = None
        if caller is not None:
            code = caller.f_code
            if code is _plain_closer:
                finalizer = False
            elif code is _private_closer and caller.f_back is not None:
                finalizer = caller.f_back.f_code is not _private_caller and _closing_from(caller)
            else:
                finalizer = _closing_from(caller)
            if finalizer and _acquired_in_finalizer(caller, facts[7:]):
                finalizer = False
            # No collection running (nearly every close): no call to ask whether it is one's.
            if finalizer or (_sites._collecting_in is not None and _for_finalizer(facts)):
                _leaked(raw, facts)
    _fileio_close(raw)


#: The code object that last closed a tracked file as the program does (its name neither a
#: close nor a private method's): the next close from it skips the name check.
_plain_closer: Any = None


#: A private function (not a ``close``, nor a ``__del__``) that last closed a tracked file as the
#: program does, called from _private_caller, a function neither a close nor private: a close from
#: the one called from the other skips the walk up the stack (``_files()`` in the benchmark).
_private_closer: Any = None
_private_caller: Any = None


def _closing_from(caller: Any) -> bool:
    """Whether the close of a tracked file called from the frame *caller* is a finalizer's."""
    global _plain_closer, _private_closer, _private_caller
    code = caller.f_code
    name = code.co_name
    if name == "close" or name[0] == "_" or name == "cleanup":  # cleanup: see closing_in_finalizer
        if name == "close" or name == "__del__" or code is _FINALIZE_CALL:
            return _closing_in_finalizer(caller)
        back = caller.f_back
        if back is not None:
            above = back.f_code.co_name
            if above != "close" and above[0] != "_":  # the walk would stop there: the program's
                _private_closer, _private_caller = code, back.f_code
                return False
        return _closing_in_finalizer(caller)
    _plain_closer = code
    return False


def _for_finalizer(facts: tuple[Any, ...] | None) -> bool:
    """Whether the close of the tracked file with *facts*, one the name walk of
    :func:`_closing_from` took for the program's, is a finalizer's all the same: the collector
    is collecting in this thread, and the file was opened before it began. What runs then is a
    ``__del__`` or a finalize callback of an owner dropped in a reference cycle, through whatever
    calls it makes (pytest-xprocess's ``__del__`` -> ``release()`` -> close); a file it opened
    itself and closes (a source line read to log a dropped task's error) is its own.

    Two reads, no walk: under a ``__del__`` run by the owner's last reference, a close through
    a method of a public name is still taken for the program's.
    """
    return _sites._collecting_in == get_ident() and facts is not None and facts[2] < _sites._collecting_since


def _dealloc_warn(source: Any) -> None:
    """The text or buffer layer *source* is finalized unclosed: its raw layer's hook."""
    layer = getattr(source, "buffer", source)
    raw = getattr(layer, "raw", layer)
    if not raw.closefd or raw.closed:
        return
    collected(raw)
    # CPython's own warning, but from the frame that dropped the file: the C method would
    # file it under this one, a line of reclaim's, where without us it names the program's.
    try:
        warnings.warn(f"unclosed file {source!r}", ResourceWarning, stacklevel=2, source=source)
    except Exception:  # an error filter (or a late shutdown): the C method reports it,
        _FileIO._dealloc_warn(raw, source)  # type: ignore[attr-defined]  # unraisable


def collected(raw: Any) -> None:
    """The tracked raw layer *raw*, still open, is being closed by the garbage collector: a leak."""
    facts = facts_of(raw)
    if facts is not None:
        _leaked(raw, facts)


def _leaked(raw: Any, facts: tuple[Any, ...]) -> None:
    """Report the file of raw layer *raw* and its *facts* as closed by the garbage collector."""
    if raw.closefd:
        forget(raw)
        rec = _record(raw, facts)
        name = facts[5]
        if type(name) is int:  # os.fdopen(fd): read what it is while it is still open
            rec.info = (Descriptor(name, describe_fd(name)), rec.info[1])
        _records.leak(rec, _records.COLLECTED)


def facts_of(raw: Any) -> tuple[Any, ...] | None:
    """The acquisition facts of the tracked raw layer *raw*, None once forgotten (or never tracked).

    ``(raw or None, generation, time, (thread, label it was started under), label, name, mode,
    *flat site)``: a file with hooks keeps them as the ``__self__`` of its ``close`` hook (one
    attribute less to set per ``open()``), its raw layer first; one without, in ``_r_facts``.
    """
    found = getattr(raw, "__dict__", None)
    if not found:
        return None
    hook = _hook(found)
    facts: tuple[Any, ...] | None = hook.__self__ if hook is not None else found.get("_r_facts")
    return facts


def _hook(found: dict[str, Any]) -> Any:
    """The ``close`` hook (a method of :func:`_close`) in a raw layer's ``__dict__``, or None."""
    hook = found.get("close")
    return hook if type(hook) is _bound and hook.__func__ is _close else None


def set_facts(raw: Any, facts: tuple[Any, ...]) -> None:
    """Replace the facts of the tracked raw layer *raw* (see :func:`facts_of`)."""
    if _hook(vars(raw)) is not None:
        raw.close = _bound(_close, facts)
    else:
        raw._r_facts = facts


def forget(raw: Any) -> None:
    """Stop reporting the tracked raw layer *raw*: its hooks go, its facts become None."""
    if _hook(vars(raw)) is not None:
        del raw.close
    raw._r_facts = None


def label_of(facts: tuple[Any, ...]) -> str | None:
    """The label a file with these facts was acquired under (its thread's own wins)."""
    started_in: str | None = facts[3][1]
    label: str | None = facts[4]
    return label if started_in is None else started_in


def relabel(raw: Any, label: str | None) -> None:
    """Report the tracked raw layer *raw* as acquired under *label* (a holder's)."""
    facts = facts_of(raw)
    if facts is not None:
        set_facts(raw, (*facts[:3], (facts[3][0], None), label, *facts[5:]))


def is_tracked(raw: Any) -> bool:
    """Whether *raw* is the raw layer of a file opened while tracking (its facts on it)."""
    return facts_of(raw) is not None or "_r_facts" in getattr(raw, "__dict__", ())


def _record(raw: Any, facts: tuple[Any, ...]) -> Record:
    """A record for a tracked file (reports and leaks use records)."""
    _, generation, when, (thread, started_in), label, name, mode = facts[:7]
    site = facts[7:]
    rec = Record(NO_OBJECT)
    rec.key = ("file", id(raw))
    rec.seq = generation
    rec.kind = "file"
    rec.info = (name, mode)
    rec.site = site
    rec.thread = thread
    rec.context = label if started_in is None else started_in  # the thread's own wins
    rec.time = when
    rec.state = OPEN
    rec.why = None
    return rec


def open_files() -> list[tuple[Record, Any]]:
    """(record, raw layer) of every tracked file still open."""
    out = []
    for ref in table:
        raw = ref()
        if raw is not None and not raw.closed:
            facts = facts_of(raw)
            if facts is not None:
                out.append((_record(raw, facts), raw))
    return out


def standard_streams() -> set[int]:
    """The ids of the raw layers of the files now installed as ``sys.stdin``, ``sys.stdout`` and
    ``sys.stderr``: a file the program made its standard stream (``sys.stdin = open(os.devnull)``
    in a forked worker, ``sys.stdout = open(log, "a")`` in a daemon) is the process's stream, which
    the interpreter flushes at exit and nobody closes, not a leak."""
    ids = set()
    for name in ("stdin", "stdout", "stderr"):
        stream = getattr(sys, name, None)
        raw = getattr(getattr(stream, "buffer", stream), "raw", stream)
        if raw is not None:
            ids.add(id(raw))
    return ids


def _sweep() -> None:
    """Drop the references to dead files; with many files alive, wait until the list doubles."""
    global _sweep_at
    table[:] = [ref for ref in table if ref() is not None]
    _sweep_at = max(512, 2 * len(table))


if TYPE_CHECKING:

    class _PipeEndFields(NamedTuple):
        stream: str  # "stdin", "stdout" or "stderr", as the Popen attribute that holds it
        pid: int

else:  # the same, without importing typing (see reclaim._sites.Frame)
    _PipeEndFields = namedtuple("PipeEnd", ("stream", "pid"))


class PipeEnd(_PipeEndFields):
    """The name of a file that is one of a subprocess's pipes: which stream, and the child's pid."""

    __slots__ = ()


if TYPE_CHECKING:

    class _DescriptorFields(NamedTuple):
        fd: int
        target: str | None  # what /proc/self/fd/N pointed at (see _fds.describe_fd)

else:
    _DescriptorFields = namedtuple("Descriptor", ("fd", "target"))


class Descriptor(_DescriptorFields):
    """The name of a file opened over a descriptor (``os.fdopen(fd)``) the collector closed: what
    the descriptor pointed at, read just before (a ``mkstemp()`` file unlinked at once, a pipe)."""

    __slots__ = ()


def raw_layer(file: Any) -> Any:
    """The raw layer under a file object (its text and buffered layers looked through)."""
    return getattr(getattr(file, "buffer", file), "raw", file)


def rename(file: Any, name: object) -> None:
    """Report the tracked *file* under *name* (a path, a descriptor, ``(maker, directory)``, a PipeEnd).

    ``open()`` recorded the name it was given; the code that made the file may know better
    what it is. The site stays the one ``open()`` recorded.
    """
    raw = raw_layer(file)
    facts = facts_of(raw)
    if facts is not None:  # the facts live on the raw layer
        set_facts(raw, (*facts[:5], name, *facts[6:]))


def disown(file: Any) -> None:
    """*file* now belongs to another tracked object (a NamedTemporaryFile): stop reporting it."""
    raw = raw_layer(file)
    if is_tracked(raw):
        forget(raw)
    _records.release(id(file))


def reset() -> None:
    """Forget every file (the last tracker stopped)."""
    for ref in table:
        raw = ref()
        if raw is not None:
            forget(raw)
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
    if not is_program(code.co_filename):
        return False  # a library's open(): _capture() looks further out for the program's line
    _user_code = code
    return True


def depth_changed() -> None:
    """The frames kept per ``open()`` may have changed: check the next caller again."""
    global _user_code
    _user_code = None


def tracked_open(
    _home: object,
    file: Any,
    mode: str = "r",
    buffering: int = -1,
    encoding: str | None = None,
    errors: str | None = None,
    newline: str | None = None,
    closefd: bool = True,
    opener: Any = None,
) -> Any:
    """``open()`` with the acquisition recorded; same arguments, same result.

    Set as a bound method (see ``_patch._standing_in``): *_home* is what it is bound to.
    """
    result: Any
    raw: Any
    ftype = type(file)
    try:
        raw_mode, buffer_cls, binary = _MODES[mode]
    except (KeyError, TypeError):  # unusual (or invalid) modes; try/except costs nothing until then
        buffer_cls = None
    if buffer_cls is not None and (
        (buffering == -1 or (buffering == 0 and binary))
        and (ftype is str or ftype is int or hasattr(file, "__fspath__"))
        and (
            (encoding is None and errors is None and newline is None)
            if binary
            else (encoding is not None or _NO_ENCODING_WARNING)
        )
    ):
        # What the C open() builds, built here: its C argument building costs more than these
        # calls. The same classes, line buffering on a tty, the same ``mode`` attribute.
        if ftype is not str and ftype is not int:
            file = _fspath(file)  # as the C open() does: the name is the path's str, not the Path
        if not buffering:
            raw = result = FileIO(file, raw_mode, closefd, opener)
            owner = None
        else:
            raw = _FileIO(file, raw_mode, closefd, opener)
            try:
                tty = raw.isatty()
                result = buffer_cls(raw, raw._blksize)
                if not binary:
                    result = _TextIOWrapper(result, encoding, errors, newline, tty)
                    result.mode = mode
            except BaseException:
                raw.close()
                raise
            owner = raw
    else:
        # Explicit buffer sizes, unusual modes, ``-X warn_default_encoding`` without an encoding,
        # other file arguments: the C open() itself, with its own errors and warnings, which
        # name the frame that called it: run as the program's (line buffering asked of a binary
        # file warned at this line).
        try:
            caller = _getframe(1)
        except ValueError:  # called from C with no Python frame (a thread started on open): as below
            return _c_open(file, mode, buffering, encoding, errors, newline, closefd, opener)
        result = call_as(
            caller, _c_open, (file, mode, buffering, encoding, errors, newline, closefd, opener), {}
        )
        kind = type(result)
        raw = result.buffer.raw if kind is _TextIOWrapper else result if kind is _FileIO else result.raw
        # An unbuffered file made here (buffering=0 spelled unusually) gets no hooks: it is
        # reported while open, but one the collector closes is not told apart.
        owner = raw if kind is not _FileIO else None
    if not closefd:
        # A file over a descriptor it does not own (``open(fd, closefd=False)``, ``os.fdopen``'s
        # too) closes nothing, dropped or not: the descriptor's owner (an ``os.open``, a socket)
        # must close it, and is reported as itself. Only a descriptor can be given so.
        return result
    if ftype is str or ftype is int or type(file) is str:  # (a path-like one was made a str above)
        name = file
    elif isinstance(file, str):  # a str subclass (matplotlib's FontPath): its path, not its repr
        name = str.__str__(file)
    elif isinstance(file, (bytes, os.PathLike)):
        name = os.fsdecode(file)
    else:  # anything else the C open() took (an object with __index__, say)
        name = repr(file)
    if ftype is int or opener is not None:
        # The descriptor (passed in, or made by the opener with os.open) now belongs to the
        # file object: it is reported as the file, not as a raw descriptor.
        _records.release(("fd", raw.fileno()))
    if len(table) >= _sweep_at:
        _sweep()
    try:  # costs nothing until it raises
        both = _names.both  # (thread name, label it was started under): see _record()
    except AttributeError:
        _thread_name()
        both = _names.both
    # The facts and the site in one flat tuple (one allocation), the raw layer first when it gets
    # hooks (see facts_of()). _records.capture() inlined for the usual case, a user's frame
    # calling open(): this saves a Python call.
    try:
        frame: Any = _getframe(1)
    except ValueError:
        # Called from C code with no Python frame on the stack (the interpreter's traceback
        # printer reading a source line for "Exception ignored in atexit callback"): no line of
        # the program's acquired it, and the caller closes it. Untracked, as the C open().
        return result
    code = frame.f_code
    if code is _user_code or _user_caller(code):
        # The usual depth, unrolled: the caller and its caller.
        back = frame.f_back
        if back is not None:
            facts: tuple[Any, ...] = (
                owner,
                _records.generation,
                _time(),
                both,
                _records.context,
                name,
                mode,
                code,
                frame.f_lasti,
                back.f_code,
                back.f_lasti,
            )
        else:  # the caller is the outermost frame
            facts = (
                owner,
                _records.generation,
                _time(),
                both,
                _records.context,
                name,
                mode,
                code,
                frame.f_lasti,
            )
    else:
        site = _capture(frame, _records.file_depth)
        facts = (owner, _records.generation, _time(), both, _records.context, name, mode, *site)
    if owner is not None:
        # The hooks that see the collector close it (see the module's docstring); the facts are
        # the close hook's own.
        raw._dealloc_warn = _dealloc_warn
        raw.close = _bound(_close, facts)
    else:
        raw._r_facts = facts
    table.append(_ref(raw))
    return result


def _held(obj: Any, rec: Record) -> int | None:
    """The descriptor of a file that a libuv handle holds (a uvloop subprocess's pipe: its
    record's info ends with what reads it, and its key is ``(_uvloop.KEY, fd)``), None once
    closed."""
    fd: int = rec.key[1]  # type: ignore[index]
    return fd if rec.info[2](obj, fd) is not None else None


def _is_open(obj: Any, rec: Record) -> bool:
    if len(rec.info) > 2:
        return _held(obj, rec) is not None
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    name, mode = rec.info[:2]
    details: Details
    if type(name) is PipeEnd:
        details = {"path": None, "mode": mode, "pipe": name.stream, "pid": name.pid}
        _add_fd(details, obj, rec)
        return f"{name.stream} pipe of subprocess pid {name.pid} (mode {mode!r})", details
    if type(name) is tuple:
        # A file with no path (``tempfile.TemporaryFile``): ``(maker, directory)``, set by
        # _tempfiles in place of the directory or descriptor that open() was given.
        maker, directory = name
        details = {"path": None, "directory": directory, "mode": mode}
        _add_fd(details, obj, rec)
        return f"unnamed {maker} in {directory} (mode {mode!r})", details
    if isinstance(name, (Descriptor, int)):
        # A file opened over a descriptor: what the descriptor points at says more than its
        # number (read now while open; as the collector closed it, see _leaked()).
        fd, target = (name.fd, name.target) if isinstance(name, Descriptor) else (name, None)
        if target is None and obj is not None and not obj.closed:
            target = describe_fd(fd)
        details = {"path": None, "mode": mode, "fd": fd, "target": target}
        _add_fd(details, obj, rec)
        return f"fd {fd}" + (f" -> {target}" if target else "") + f" (mode {mode!r})", details
    details = {"path": name if isinstance(name, str) else None, "mode": mode}
    _add_fd(details, obj, rec)
    return f"{name} (mode {mode!r})", details


def _add_fd(details: Details, obj: Any, rec: Record) -> None:
    """The descriptor of *obj* (a file still open) in *details*, when it has one."""
    if obj is not None:
        fds = _fds(obj, rec)
        if fds:
            details["fd"] = fds[0]


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if len(rec.info) > 2:
        fd = _held(obj, rec)
        return () if fd is None else (fd,)
    try:
        return (obj.fileno(),)
    except (OSError, ValueError):
        return ()


register(Kind("file", is_open=_is_open, describe=_describe, fds=_fds))


#: Standard-library modules that bind ``open`` when imported (``from builtins import open as
#: _builtin_open``): one imported before the hook (the runner's own imports bring in bz2 with
#: shutil) keeps the untracked ``open`` unless its name is routed too.
OPEN_ALIASES = (("bz2", "_builtin_open"), ("tarfile", "bltn_open"), ("tokenize", "_builtin_open"))


def install(patches: Patches) -> None:
    """Route ``open``/``io.open`` (and so pathlib, ``os.fdopen``, tempfile) through the tracker."""
    untracked = builtins.open
    # io first: it names the replacement (see _patch._present_as), and the C function's
    # ``__module__`` is "io" too (pyfakefs knows ``open`` by that name and module).
    patches.set(io, "open", tracked_open)
    patches.set(builtins, "open", tracked_open)
    for name, alias in OPEN_ALIASES:
        module = sys.modules.get(name)
        if module is not None and getattr(module, alias, None) is untracked:
            patches.set(module, alias, tracked_open)


def install_text_opener(patches: Patches, module: types.ModuleType) -> None:
    """Wrap *module*'s ``open`` (``gzip``'s, ``bz2``'s, ``lzma``'s): the ``io.TextIOWrapper`` it
    makes over its binary file in a text mode is noted (see ``_sites.text_wrappers``).

    Dropped unclosed, that wrapper's finalizer, in C, closes the binary file, whose own
    ``_finalizing`` is unset: the file under ``gzip.open(path, "wt")`` (python-can's ``.log.gz``
    logger) was closed by the program as far as the check could tell, and never reported.
    """
    opener = getattr(module, "open", None)
    if not callable(opener):
        return
    wrappers = _sites.text_wrappers

    @functools.wraps(opener)
    def open_(*args: Any, **kwargs: Any) -> Any:
        made = opener(*args, **kwargs)
        if type(made) is io.TextIOWrapper:
            key = id(made.buffer)
            with contextlib.suppress(TypeError):
                wrappers[key] = weakref.ref(made, lambda ref: _forget(wrappers, key, ref))
        return made

    patches.set(module, "open", open_)


def _forget(wrappers: dict[int, Any], key: int, ref: Any) -> None:
    if wrappers.get(key) is ref:
        del wrappers[key]
