"""Temporary files and directories not removed: ``tempfile``'s classes and functions.

* ``TemporaryDirectory``: open until ``cleanup()`` (or its ``with`` block)
  removes it; collected unremoved, its own finalizer cleans up ("Implicitly
  cleaning up"): reported as collected, with the line that made it.
* ``NamedTemporaryFile``: the wrapper is open until it is closed; the file
  object inside belongs to it and is not reported separately.
* ``mkdtemp()``/``mkstemp()``: the path is open while it exists (the caller
  owns its removal); ``mkstemp``'s descriptor is tracked as an ``fd``.
* ``TemporaryFile()`` is a plain file object and is tracked as a ``file``.
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

from . import _files, _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import NO_OBJECT, Record

__all__ = ["install"]


def _dir_open(obj: Any, rec: Record) -> bool:
    return os.path.isdir(rec.info)


def _file_open(obj: Any, rec: Record) -> bool:
    if obj is not None:
        return not obj.file.closed
    return os.path.lexists(rec.info)


def _describe_dir(obj: Any, rec: Record) -> tuple[str, Details]:
    how = "mkdtemp()" if obj is None and rec.key == ("path", rec.info) else "TemporaryDirectory"
    return f"{rec.info} ({how}, not removed)", {"path": rec.info, "made_by": how}


def _describe_file(obj: Any, rec: Record) -> tuple[str, Details]:
    how = "mkstemp()" if rec.key == ("path", rec.info) else "NamedTemporaryFile"
    return f"{rec.info} ({how}, not removed)", {"path": rec.info, "made_by": how}


def _file_fds(obj: Any, rec: Record) -> tuple[int, ...]:
    if obj is None or obj.file.closed:
        return ()
    return (obj.file.fileno(),)


register(Kind("tempdir", is_open=_dir_open, describe=_describe_dir, death_leak=True))
register(Kind("tempfile", is_open=_file_open, describe=_describe_file, fds=_file_fds, death_leak=True))


def install(patches: Patches, tempfile: ModuleType) -> None:
    """Wrap the ``tempfile`` classes' construction and cleanup, and ``mkdtemp``/``mkstemp``."""
    mkdtemp = tempfile.mkdtemp
    mkstemp = tempfile.mkstemp

    def mkdtemp_(*args: Any, **kwargs: Any) -> Any:
        path = mkdtemp(*args, **kwargs)
        site = _records.capture(sys._getframe(1), _records.depth)
        _records.new(NO_OBJECT, "tempdir", os.fsdecode(path), site, ("path", os.fsdecode(path)))
        return path

    def mkstemp_(*args: Any, **kwargs: Any) -> Any:
        fd, path = mkstemp(*args, **kwargs)
        site = _records.capture(sys._getframe(1), _records.depth)
        _records.new(NO_OBJECT, "tempfile", os.fsdecode(path), site, ("path", os.fsdecode(path)))
        return fd, path

    mkdtemp_.__doc__ = mkdtemp.__doc__
    mkstemp_.__doc__ = mkstemp.__doc__
    patches.set(tempfile, "mkdtemp", mkdtemp_)
    patches.set(tempfile, "mkstemp", mkstemp_)

    tdir = tempfile.TemporaryDirectory
    tdir_init = tdir.__init__
    tdir_cleanup = tdir.cleanup

    def tdir_init_(self: Any, *args: Any, **kwargs: Any) -> None:
        tdir_init(self, *args, **kwargs)
        name = os.fsdecode(self.name)
        _records.release(("path", name))  # the mkdtemp() inside belongs to this object
        _records.new(self, "tempdir", name, _records.capture(sys._getframe(1), _records.depth))

    def tdir_cleanup_(self: Any) -> None:
        _records.release(id(self))
        tdir_cleanup(self)

    patches.set(tdir, "__init__", tdir_init_)
    patches.set(tdir, "cleanup", tdir_cleanup_)

    wrapper = tempfile._TemporaryFileWrapper
    wrapper_init = wrapper.__init__
    wrapper_close = wrapper.close
    wrapper_exit = wrapper.__exit__

    def wrapper_init_(self: Any, file: Any, name: Any, *args: Any, **kwargs: Any) -> None:
        wrapper_init(self, file, name, *args, **kwargs)
        _files.disown(file)  # the file object inside belongs to this wrapper
        site = _records.capture(sys._getframe(1), _records.depth)
        _records.new(self, "tempfile", os.fsdecode(name), site)

    def wrapper_close_(self: Any) -> None:
        _records.release(id(self))
        wrapper_close(self)

    def wrapper_exit_(self: Any, *exc_info: Any) -> Any:
        _records.release(id(self))
        return wrapper_exit(self, *exc_info)

    patches.set(wrapper, "__init__", wrapper_init_)
    patches.set(wrapper, "close", wrapper_close_)
    patches.set(wrapper, "__exit__", wrapper_exit_)
