"""Temporary files and directories not removed: ``tempfile``'s classes and functions.

* ``TemporaryDirectory``: open until ``cleanup()`` (or its ``with`` block)
  removes it; collected unremoved, its own finalizer cleans up ("Implicitly
  cleaning up"): reported as collected, with the line that made it.
* ``NamedTemporaryFile``: the wrapper is open until it is closed; the file
  object inside belongs to it and is not reported separately. A subclass of
  the wrapper is no temporary file: urllib's responses (``addinfourl``, the
  body of an ``HTTPError``, a ``file://`` response) wrap a file of their own,
  which stays reported as itself, at the line that opened it.
* ``mkdtemp()``/``mkstemp()``: the path is open while it exists (the caller
  owns its removal); ``mkstemp``'s descriptor is tracked as an ``fd``. So is a
  ``NamedTemporaryFile(delete=False)``'s once its wrapper is closed.
* ``TemporaryFile()`` is a plain file object and is tracked as a ``file``;
  it has no path (CPython opens its directory with ``O_TMPFILE``, or makes it
  with ``mkstemp()`` and unlinks it at once), so it is described as an unnamed
  file in its directory rather than as the directory or a bare descriptor.
* ``SpooledTemporaryFile`` holds no file until it rolls over (a write past
  ``max_size``, ``fileno()``); the ``TemporaryFile`` it then makes is reported
  as the spooled file itself, at the line that made it, not at the write;
  one dropped unclosed (its ``__del__`` closes it) as closed by the garbage collector.
* ``reclaim.temp_dir()``/``reclaim.temp_file()`` report themselves through
  :mod:`reclaim._track` as these same kinds, with the path as the record's
  info; every record made here has ``(path, how)`` instead, which tells them
  apart once the object is gone. Their ``mkdtemp()``/``mkstemp()`` belongs to
  them: those functions are marked owned (``_files_temp`` does it, see
  :func:`reclaim._sites.mark_owned`), so what they acquire is recorded as
  reclaim's and not reported a second time.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
import weakref
from types import FunctionType, ModuleType

from . import _files, _records
from ._fds import _C
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


#: What made a record whose info is a bare path: the reclaim owner that reported it, by kind.
_RECLAIMS = {"tempdir": "reclaim.temp_dir()", "tempfile": "reclaim.temp_file()"}


def _path_and_maker(rec: Record) -> tuple[str, str]:
    if type(rec.info) is str:
        return rec.info, _RECLAIMS[rec.kind]
    return rec.info[0], rec.info[1]


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    """What tells the file made at a path from one made there later: its device and inode, and
    its type, as a freed inode is given again at once (a socket bound where the file was)."""
    return st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)


def _still_there(rec: Record) -> bool:
    """Whether *rec*'s path still names what was made there: for ``mkstemp()`` and ``mkdtemp()``,
    the same file or directory (their record keeps its identity), not another one a later user
    of the path made there (CherryPy's tests remove a ``mkstemp()`` file and bind a Unix socket
    at its path). One of the same type on the very inode freed is taken for the one made."""
    path = _path_and_maker(rec)[0]
    made = rec.info[2] if type(rec.info) is tuple and len(rec.info) > 2 else None
    try:
        st = _C.lstat(path)  # posix's own: a test may have patched os.lstat (see install)
    except (OSError, TypeError, ValueError):  # gone, or no longer reachable
        return False
    return made is None or _identity(st) == made


def hand_over_nested(context: str, wider: Callable[[str | None], bool] = bool) -> int:
    """Give a temp path made under *context* inside a temp directory made under another label,
    still there, to that label: the directory's removal removes it with it. pyfilesystem2's
    ``setUpClass`` makes a directory its ``tearDownClass`` removes with everything in it, and
    each test makes its own inside: each test of the class was said to leak its own. Only a
    label *wider* says is a wider scope's takes them: a directory an earlier test leaked is that
    test's leak, and a path made inside it (ZODB's tests leave ``tempfile.tempdir`` pointing at
    one) is still its maker's. Returns how many were given."""
    outer: list[tuple[str, Record]] = []
    mine: list[Record] = []
    for rec in list(_records.live.values()):
        if rec.kind not in ("tempdir", "tempfile") or rec.state != OPEN:
            continue
        if rec.context == context:
            mine.append(rec)
        elif rec.kind == "tempdir" and wider(rec.context):
            # Absolute: mkdtemp() gives a relative path as it was given one before 3.12, where
            # mkstemp() makes its path absolute.
            outer.append((os.path.join(os.path.abspath(_path_and_maker(rec)[0]), ""), rec))
    moved = 0
    for rec in mine if outer else ():
        path = os.path.abspath(_path_and_maker(rec)[0])
        for prefix, parent in outer:
            if path.startswith(prefix) and _still_there(parent):
                rec.context = parent.context
                moved += 1
                break
    return moved


#: How a ``NamedTemporaryFile(delete=False)`` is made, and then its path, closed and left on disk.
KEPT_ON_DISK = "NamedTemporaryFile(delete=False)"


def _left_on_disk(wrapper: Any, rec: Record | None) -> None:
    """*wrapper*, a ``NamedTemporaryFile(delete=False)`` whose record *rec* was, is closed: its
    path stays on disk, the caller's to remove, as a ``mkstemp()`` path's is (aiosqlite's perf
    test left one behind unseen). It is recorded as one, acquired where the file was made."""
    if rec is None or rec() is not wrapper or type(rec.info) is not tuple or rec.info[1] != KEPT_ON_DISK:
        return
    name = rec.info[0]
    try:
        made = _identity(_C.lstat(name))
    except (OSError, TypeError, ValueError):  # removed already
        return
    path = _records.new(NO_OBJECT, "tempfile", (name, KEPT_ON_DISK, made), rec.site, ("path", name))
    path.context, path.seq, path.time, path.thread = rec.context, rec.seq, rec.time, rec.thread


def _is_wrapper(obj: Any, rec: Record) -> bool:
    """Whether *obj* is a live ``NamedTemporaryFile`` wrapper (not a reclaim ``TempFile``)."""
    return obj is not None and type(rec.info) is not str


def _parameters(function: Any) -> list[str]:
    """The names of *function*'s parameters, in order: read from its code when it is a plain
    function, for inspect (with ast, dis and tokenize) costs ~6 ms to import."""
    if type(function) is FunctionType and not hasattr(function, "__wrapped__"):
        code = function.__code__
        return list(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])
    import inspect  # a wrapped or foreign callable: what its signature says

    return list(inspect.signature(function).parameters)


def _dir_open(obj: Any, rec: Record) -> bool:
    return _still_there(rec) and _is_dir(_path_and_maker(rec)[0])


def _is_dir(path: str) -> bool:
    """``os.path.isdir``, through posix's own ``stat`` (see _still_there)."""
    try:
        return stat.S_ISDIR(_C.stat(path).st_mode)
    except (OSError, TypeError, ValueError):
        return False


def _file_open(obj: Any, rec: Record) -> bool:
    if _is_wrapper(obj, rec):
        return not obj.file.closed
    return _still_there(rec)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    path, how = _path_and_maker(rec)
    if rec.state != OPEN and not _still_there(rec):  # its finalizer removed it
        return f"{path} ({how})", {"path": path, "made_by": how}
    if how == "TemporaryDirectory":
        # Its finalizer removes it, at exit for one kept to the end, warning "Implicitly cleaning
        # up": the program never did (see _implicit_cleanup), which "not removed" did not say.
        text = "TemporaryDirectory, never cleaned up: left to its finalizer, cleanup() or a with-block"
        return f"{path} ({text})", {"path": path, "made_by": how}
    return f"{path} ({how}, not removed)", {"path": path, "made_by": how}


#: Path -> record of each TemporaryDirectory not cleaned up by the program (yet).
_implicit: dict[str, Record] = {}


def _implicit_cleanup(patches: Patches, tdir: type, cleanup: Any) -> None:
    """``TemporaryDirectory._cleanup`` runs only from its finalizer ("Implicitly cleaning up"):
    when the garbage collector drops the object, or at the interpreter's exit (an atexit
    handler) for one still referenced, a module's global say. Either way the program never
    cleaned it up: a leak, though its directory is gone afterwards."""

    def _cleanup(cls: type, name: Any, *args: Any, **kwargs: Any) -> Any:
        rec = _implicit.pop(os.fsdecode(name), None)
        if rec is not None:
            _records.leak(rec, _records.COLLECTED)
        return cleanup(cls, name, *args, **kwargs)

    patches.set(tdir, "_cleanup", classmethod(_cleanup))


def _file_fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if not _is_wrapper(obj, rec) or obj.file.closed:
        return ()
    return (obj.file.fileno(),)


register(Kind("tempdir", is_open=_dir_open, describe=_describe, death_leak=True))
register(Kind("tempfile", is_open=_file_open, describe=_describe, fds=_file_fds, death_leak=True))


def _unnamed(file: Any, directory: str) -> None:
    """Describe *file*, just made by ``TemporaryFile()`` in *directory*, as the unnamed file it is.

    ``open()`` recorded the name it was given: the directory (opened with ``O_TMPFILE``)
    or, where CPython passes one, the descriptor. The name becomes ``("TemporaryFile",
    directory)``, which the ``file`` kind describes; the site stays the one ``open()``
    recorded (the user's line: tempfile's frames and ours are framework).
    """
    _files.rename(file, ("TemporaryFile", directory))


def _relabel(file: Any, maker: str, site: Any) -> None:
    """The unnamed *file* belongs to a *maker* object made at *site*: reported as it, there."""
    raw = getattr(getattr(file, "buffer", file), "raw", file)
    facts = _files.facts_of(raw)
    if facts is not None and type(facts[5]) is tuple:  # (owner, ..., name, mode, *site): see _files
        _files.set_facts(raw, (*facts[:5], (maker, facts[5][1]), facts[6], *(site or facts[7:])))


#: The site that made each ``SpooledTemporaryFile``, for the file it may roll over to. Kept
#: beside it, not in it: a program that walks its ``vars()`` (FastAPI encoding an ``UploadFile``
#: for a 422 response) met reclaim's attribute there, a tuple of code objects, and failed.
_spooled_sites: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _spool(patches: Patches, spooled: type) -> None:
    """Each ``SpooledTemporaryFile`` keeps the site that made it, for the file it may roll over to."""
    init = vars(spooled)["__init__"]
    rollover = vars(spooled)["rollover"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        with contextlib.suppress(TypeError):  # a subclass with __slots__ and no weak references
            _spooled_sites[self] = _records.capture(sys._getframe(1), _records.depth)

    def rollover_(self: Any) -> None:
        rolled = getattr(self, "_rolled", True)
        rollover(self)
        if not rolled and getattr(self, "_rolled", False):
            _relabel(self._file, "SpooledTemporaryFile", _spooled_sites.get(self))

    __init__.__doc__ = init.__doc__
    rollover_.__doc__ = rollover.__doc__
    patches.set(spooled, "__init__", __init__)
    patches.set(spooled, "rollover", rollover_)
    finalize = vars(spooled).get("__del__")
    close = vars(spooled).get("close")
    if finalize is None or close is None:
        return
    finalizing = finalize.__code__

    def close_(self: Any) -> None:
        # Its __del__ closes one nobody closed (with a ResourceWarning): the garbage collector
        # closes its file then, which would pass for the program's close(). Told here, not in a
        # __del__ of reclaim's: the warning names the frame under __del__ (stacklevel=2), and a
        # wrapper's frame there made it reclaim's, past a project's filter by module.
        if sys._getframe(1).f_code is finalizing and getattr(self, "_rolled", False) and not self.closed:
            _collected(self._file)
        close(self)

    close_.__doc__ = close.__doc__
    patches.set(spooled, "close", close_)


def _collected(file: Any) -> None:
    """*file*, open, is about to be closed by the garbage collector: a leak."""
    raw = getattr(getattr(file, "buffer", file), "raw", file)
    if _files.is_tracked(raw) and not raw.closed:
        _files.collected(raw)


def install(patches: Patches, tempfile: ModuleType) -> None:
    """Wrap the ``tempfile`` classes' construction and cleanup, ``mkdtemp``/``mkstemp`` and ``TemporaryFile``.

    ``reclaim.temp_dir``/``temp_file`` are owned: the path each makes is its object's
    (marked in ``_files_temp``, which this module must not import: it imports tempfile).
    """
    mkdtemp = tempfile.mkdtemp
    mkstemp = tempfile.mkstemp

    def mkdtemp_(*args: Any, **kwargs: Any) -> Any:
        path = mkdtemp(*args, **kwargs)
        site = _records.capture(sys._getframe(1), _records.depth)
        name = os.fsdecode(path)
        try:
            # posix's own lstat and fstat: celery's tests patch os.fstat around mkstemp(), and the
            # patched one raised here, the program's mkstemp() failing with its file open.
            made: tuple[int, int, int] | None = _identity(_C.lstat(path))
        except (OSError, TypeError, ValueError):  # removed already by another thread: judged by its path
            made = None
        _records.new(NO_OBJECT, "tempdir", (name, "mkdtemp()", made), site, ("path", name))
        return path

    def mkstemp_(*args: Any, **kwargs: Any) -> Any:
        fd, path = mkstemp(*args, **kwargs)
        site = _records.capture(sys._getframe(1), _records.depth)
        name = os.fsdecode(path)
        made = _identity(_C.fstat(fd))
        _records.new(NO_OBJECT, "tempfile", (name, "mkstemp()", made), site, ("path", name))
        opened = _records.live.get(("fd", fd))  # by tempfile's os.open(): the program's call was this
        if opened is not None and opened.kind == "fd":
            opened.info = ("tempfile.mkstemp", *opened.info[1:])
        return fd, path

    mkdtemp_.__doc__ = mkdtemp.__doc__
    mkstemp_.__doc__ = mkstemp.__doc__
    patches.set(tempfile, "mkdtemp", mkdtemp_)
    patches.set(tempfile, "mkstemp", mkstemp_)

    temporary_file = tempfile.TemporaryFile
    if temporary_file is not tempfile.NamedTemporaryFile:  # outside POSIX it is that one
        # Where ``dir`` sits among the positional parameters (6 on 3.11 to 3.13), found once:
        # binding the signature on every call cost more than the rest of tracking the file.
        at = _parameters(temporary_file).index("dir")
        gettempdir = tempfile.gettempdir

        def temporary_file_(*args: Any, **kwargs: Any) -> Any:
            file = temporary_file(*args, **kwargs)  # invalid arguments raised here, as always
            directory = args[at] if len(args) > at else kwargs.get("dir")
            _unnamed(file, os.fsdecode(gettempdir() if directory is None else directory))
            return file

        temporary_file_.__doc__ = temporary_file.__doc__
        patches.set(tempfile, "TemporaryFile", temporary_file_)

    spooled = getattr(tempfile, "SpooledTemporaryFile", None)
    if isinstance(spooled, type) and "__init__" in vars(spooled) and "rollover" in vars(spooled):
        _spool(patches, spooled)

    tdir = tempfile.TemporaryDirectory
    tdir_init = tdir.__init__
    tdir_cleanup = tdir.cleanup

    def tdir_init_(self: Any, *args: Any, **kwargs: Any) -> None:
        tdir_init(self, *args, **kwargs)
        name = os.fsdecode(self.name)
        _records.release(("path", name))  # the mkdtemp() inside belongs to this object
        site = _records.capture(sys._getframe(1), _records.depth)
        _implicit[name] = _records.new(self, "tempdir", (name, "TemporaryDirectory"), site)

    def tdir_cleanup_(self: Any) -> None:
        _implicit.pop(os.fsdecode(self.name), None)
        _records.release(id(self))
        tdir_cleanup(self)

    patches.set(tdir, "__init__", tdir_init_)
    patches.set(tdir, "cleanup", tdir_cleanup_)
    implicit = vars(tdir).get("_cleanup")
    if isinstance(implicit, classmethod):
        _implicit_cleanup(patches, tdir, implicit.__func__)

    wrapper = tempfile._TemporaryFileWrapper
    wrapper_init = wrapper.__init__
    wrapper_close = wrapper.close
    wrapper_exit = wrapper.__exit__

    def wrapper_init_(self: Any, file: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        wrapper_init(self, file, name, *args, **kwargs)
        if type(self) is not wrapper:  # urllib's responses (HTTPError's body): the file they wrap
            return
        _files.disown(file)  # the file object inside belongs to this wrapper
        site = _records.capture(sys._getframe(1), _records.depth)
        # (file, name, delete=True, delete_on_close=True): one that is not deleted stays on disk.
        how = "NamedTemporaryFile" if kwargs.get("delete", args[0] if args else True) else KEPT_ON_DISK
        _records.new(self, "tempfile", (os.fsdecode(name), how), site)

    def wrapper_close_(self: Any) -> None:
        rec = _records.live.get(id(self))
        _records.release(id(self))
        wrapper_close(self)
        _left_on_disk(self, rec)

    def wrapper_exit_(self: Any, *exc_info: Any) -> Any:
        rec = _records.live.get(id(self))
        _records.release(id(self))
        try:
            return wrapper_exit(self, *exc_info)
        finally:
            _left_on_disk(self, rec)

    patches.set(wrapper, "__init__", wrapper_init_)
    patches.set(wrapper, "close", wrapper_close_)
    patches.set(wrapper, "__exit__", wrapper_exit_)
