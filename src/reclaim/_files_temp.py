"""temp_dir / temp_file: temporary paths that are removed on every exit path, and reported when not.

Each one is created at once (so it can be used with or without ``with``),
registered with the leak tracker while it exists, and removed by ``close()`` or
at the end of the ``with`` block. One that is garbage-collected while it still
exists warns with ``ResourceWarning`` and is removed then; the tracker is not
told it was released, so it reports the garbage collector's cleanup as a leak.
A forked child never removes its parent's temp paths: only the creating process
does.

They are tracked as the kinds ``tempfile``'s own are (``tempdir``,
``tempfile``); the ``mkdtemp()``/``mkstemp()`` inside belongs to them (see
:mod:`reclaim.leaks._tempfiles`).
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import warnings
from pathlib import Path
from types import TracebackType

from . import _sites, _track
from ._unwind import _ATTR

__all__ = ["TempDir", "TempFile", "temp_dir", "temp_file"]


def _directory(value: object, function: str) -> str | None:
    """``dir=`` as tempfile takes it: None, or a str path (a PathLike of one)."""
    if value is None:
        return None
    path = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(path, str):
        raise TypeError(f"{function}(dir=...) must be None, a str or an os.PathLike[str], not {value!r}")
    return path


def _check_affix(value: object, name: str, function: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{function}({name}=...) must be a str, not {value!r}")
    if os.sep in value or (os.altsep and os.altsep in value):
        raise ValueError(f"{function}({name}=...) must not contain a path separator: {value!r}")


def _remove_tree(path: str) -> None:
    try:
        shutil.rmtree(path)
        return
    except FileNotFoundError:
        return
    except PermissionError:
        pass

    # Read-only directories inside the tree stop rmtree: make every directory ours again, retry.
    def make_ours(directory: str) -> None:
        if not os.path.islink(directory):
            os.chmod(directory, stat.S_IMODE(os.lstat(directory).st_mode) | stat.S_IRWXU)

    make_ours(path)
    for root, dirs, _files in os.walk(path):  # top-down: a child is fixed before it is listed
        for name in dirs:
            make_ours(os.path.join(root, name))
    shutil.rmtree(path)


class _TempPath:
    """Shared life cycle of TempDir and TempFile."""

    #: The leak tracker's kind, and the noun messages use.
    _kind = "temp path"
    _noun = "temp path"
    __slots__ = ("__weakref__", "_creator", "_path", "_removed")

    def __init__(self, path: str) -> None:
        self._path = path
        self._creator = os.getpid()
        self._removed = False
        if _track.on_acquire is not None:
            _track.acquired(self._kind, self, path, _sites.capture(skip=2))

    @property
    def path(self) -> Path:
        """Where it is."""
        return Path(self._path)

    @property
    def removed(self) -> bool:
        """Whether :meth:`close` has removed it."""
        return self._removed

    def _remove(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Remove it now (idempotent). A forked child only forgets it: the parent removes it.

        Raises:
            OSError: it could not be removed; it stays tracked, and ``close()`` may be retried.
        """
        if self._removed:
            return
        if self._creator == os.getpid():
            self._remove()
        self._removed = True
        _track.released(self)

    def __enter__(self) -> Path:
        return Path(self._path)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.close()
            return
        try:
            self.close()
        except Exception as failure:  # the body's error wins; the cleanup's is attached to it
            try:
                setattr(exc, _ATTR, [*getattr(exc, _ATTR, ()), failure])
            except AttributeError:
                pass
            exc.add_note(f"reclaim: removing {self._noun} {self._path} also failed: {failure!r}")

    def __repr__(self) -> str:
        state = "removed" if self._removed else "exists"
        return f"<{type(self).__name__} {self._path!r} {state}>"

    def __del__(self) -> None:
        if getattr(self, "_removed", True) or self._creator != os.getpid():
            return
        warnings.warn(
            f"{self!r} was garbage-collected before close(); use 'with' or call close()",
            ResourceWarning,
            stacklevel=2,
            source=self,
        )
        try:
            self._remove()
        except OSError:
            return  # nothing to raise to from a finalizer; the warning above already reported it
        # Not _track.released(): the tracker sees this object die with its record open, a leak
        # the garbage collector cleaned up (reported as collected), as for TemporaryDirectory.
        self._removed = True


class TempDir(_TempPath):
    """A temporary directory, removed with everything in it by :meth:`close` or ``with``.

    Example::

        with temp_dir() as path:
            (path / "data.csv").write_text("a,b\\n")
    """

    _kind = "tempdir"
    _noun = "temp dir"
    __slots__ = ()

    def _remove(self) -> None:
        try:
            _remove_tree(self._path)
        except FileNotFoundError:
            pass


class TempFile(_TempPath):
    """A temporary (initially empty, closed) file, removed by :meth:`close` or ``with``.

    Example::

        with temp_file(suffix=".json") as path:
            path.write_text("{}")
    """

    _kind = "tempfile"
    _noun = "temp file"
    __slots__ = ()

    def _remove(self) -> None:
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass


def temp_dir(
    *,
    prefix: str = "reclaim-",
    suffix: str = "",
    dir: str | os.PathLike[str] | None = None,
) -> TempDir:
    """Create a temporary directory (mode ``0o700``) now; ``with`` yields its :class:`~pathlib.Path`.

    It is removed, with its content (read-only parts included), when the ``with``
    block exits by any path or :meth:`TempDir.close` is called. Until then it is
    registered with the leak tracker, which reports it, with where it was
    created, if it is never removed.

    Raises:
        TypeError, ValueError: a bad *prefix* or *suffix*.
        OSError: the directory could not be created.

    Example::

        with temp_dir() as work:
            (work / "out.txt").write_text("hello")
    """
    _check_affix(prefix, "prefix", "temp_dir")
    _check_affix(suffix, "suffix", "temp_dir")
    return TempDir(tempfile.mkdtemp(suffix, prefix, _directory(dir, "temp_dir")))


def temp_file(
    *,
    prefix: str = "reclaim-",
    suffix: str = "",
    dir: str | os.PathLike[str] | None = None,
) -> TempFile:
    """Create an empty temporary file (mode ``0o600``) now; ``with`` yields its :class:`~pathlib.Path`.

    The file is created and closed, so any code (or another process) can open
    it by path. It is removed when the ``with`` block exits by any path or
    :meth:`TempFile.close` is called, and reported by the leak tracker if never.

    Raises:
        TypeError, ValueError: a bad *prefix* or *suffix*.
        OSError: the file could not be created.

    Example::

        with temp_file(suffix=".json") as path:
            path.write_text('{"ok": true}')
    """
    _check_affix(prefix, "prefix", "temp_file")
    _check_affix(suffix, "suffix", "temp_file")
    fd, path = tempfile.mkstemp(suffix, prefix, _directory(dir, "temp_file"))
    os.close(fd)
    return TempFile(path)


# The mkdtemp()/mkstemp() these make is their TempDir/TempFile's: recorded, never reported
# on its own (the tracker cannot mark them itself: it loads with tempfile, before this module).
for _func in (temp_dir, temp_file):
    _sites.mark_owned(_func.__code__)
