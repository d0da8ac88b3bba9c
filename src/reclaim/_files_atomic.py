"""atomic_write: replace a file so that readers and crashes see the old or the new content, never a mix.

The steps follow the Linux crash-safety checklist: the temp file is created in
the target's directory (``rename`` is atomic only within one filesystem)
relative to an open directory descriptor with ``O_CREAT|O_EXCL|O_NOFOLLOW``,
gets its final mode and owner before any byte is written, is written, flushed
and ``fsync``'d, renamed over the target with ``os.replace``, and then the
directory itself is ``fsync``'d so the rename survives a power cut. Any failure
(any ``BaseException``) before the rename removes the temp file; a failed
``fsync`` fails the write and is never retried (after ``EIO`` Linux may have
dropped the dirty pages, so a second ``fsync`` can succeed falsely).

While a temp file is being written its writer holds a ``flock`` on it, and its
name carries the writer's pid, so :func:`remove_stale_temps` can tell a temp
file left by a killed process from one that is still being written. Without
the ``fcntl`` module there is no ``flock``: the pid in the name is then the only
protection, as on a filesystem that refuses ``flock``.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
import stat
import sys
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Generic, Literal, TextIO, TypeVar, overload

try:
    import fcntl
except ImportError:  # Windows: no flock on temp files (see the module docstring); imports anyway
    _HAVE_FCNTL = False
else:
    _HAVE_FCNTL = True

__all__ = ["AtomicWrite", "atomic_write", "remove_stale_temps"]

F = TypeVar("F", bound=IO[Any])

TextMode = Literal["w", "wt", "x", "xt"]
BinaryMode = Literal["wb", "xb"]
_MODES = {"w": "w", "wt": "w", "x": "w", "xt": "w", "wb": "wb", "xb": "wb"}

#: What open() accepts as newline=.
_NEWLINES = (None, "", "\n", "\r", "\r\n")


def _typed(value: object) -> str:
    """``str '0640'``: the type first, so a wrong type does not read as a value out of range."""
    return f"{type(value).__name__} {value!r}"


#: Suffix of every temp file atomic_write creates; remove_stale_temps matches it.
TEMP_SUFFIX = ".reclaim-tmp"
_TEMP_RE = re.compile(r"\A\..*\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + r"\Z", re.DOTALL)
_NAME_MAX = 255

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC

if sys.platform == "darwin":  # pragma: no cover - fsync on macOS does not reach the platter

    def _fsync(fd: int) -> None:
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)

else:
    _fsync = os.fsync


def _temp_name(name: str) -> str:
    tail = f".{os.getpid()}.{os.urandom(4).hex()}{TEMP_SUFFIX}"
    if len(name) <= 48:  # at most 4 bytes a character: always fits, skip the encoding
        return f".{name}{tail}"
    base = name
    while len(os.fsencode(f".{base}{tail}")) > _NAME_MAX:
        base = base[: max(len(base) - 8, 0)]
    return f".{base}{tail}"


class AtomicWrite(Generic[F]):
    """The context manager :func:`atomic_write` returns; entering it yields the file to write.

    Single use: it opens the temp file on ``__enter__`` and publishes or discards
    it on ``__exit__``.
    """

    __slots__ = (
        "_dir_fd",
        "_directory",
        "_durable",
        "_encoding",
        "_exclusive",
        "_file",
        "_follow",
        "_mode",
        "_name",
        "_newline",
        "_path",
        "_permissions",
        "_state",
        "_temp",
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        mode: str,
        *,
        encoding: str | None,
        newline: str | None,
        durable: bool,
        permissions: int | None,
        follow_symlinks: bool,
    ) -> None:
        # A wrong type is a TypeError, a value of the right type that is not accepted a ValueError.
        if not isinstance(mode, str):
            raise TypeError(f"atomic_write(mode=...) must be a str, not {_typed(mode)}")
        if mode not in _MODES:
            raise ValueError(f"atomic_write(mode=...) must be one of {sorted(_MODES)}, not {mode!r}")
        if encoding is not None and not isinstance(encoding, str):
            raise TypeError(f"atomic_write(encoding=...) must be None or a str, not {_typed(encoding)}")
        if newline is not None and not isinstance(newline, str):
            raise TypeError(f"atomic_write(newline=...) must be None or a str, not {_typed(newline)}")
        if encoding is not None:
            try:
                codecs.lookup(encoding)
            except LookupError:
                raise ValueError(
                    f"atomic_write(encoding=...) must be a known codec such as 'utf-8', not {encoding!r}"
                ) from None
        if newline not in _NEWLINES:
            raise ValueError(f"atomic_write(newline=...) must be one of {_NEWLINES}, not {newline!r}")
        binary = "b" in mode
        if binary and encoding is not None:
            raise ValueError("atomic_write(encoding=...) cannot be used with a binary mode")
        if binary and newline is not None:
            raise ValueError("atomic_write(newline=...) cannot be used with a binary mode")
        if not isinstance(durable, bool):
            raise TypeError(f"atomic_write(durable=...) must be a bool, not {_typed(durable)}")
        if not isinstance(follow_symlinks, bool):
            raise TypeError(
                f"atomic_write(follow_symlinks=...) must be a bool, not {_typed(follow_symlinks)}"
            )
        if permissions is not None:
            if isinstance(permissions, bool) or not isinstance(permissions, int):
                raise TypeError(
                    f"atomic_write(permissions=...) must be None or an int mode such as 0o640, "
                    f"not {_typed(permissions)}"
                )
            if not 0 <= permissions <= 0o7777:
                raise ValueError(
                    f"atomic_write(permissions=...) must be a mode from 0 to 0o7777, not {permissions!r}"
                )
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"atomic_write(path=...) must be a str or os.PathLike[str], not {_typed(path)}")
        self._path = os.fspath(path)
        if not self._path:
            raise ValueError("atomic_write(path=...) must name a file, not ''")
        if not isinstance(self._path, str):
            raise TypeError(f"atomic_write(path=...) must be a str or os.PathLike[str], not {path!r}")
        self._mode = mode
        self._exclusive = mode.startswith("x")
        self._encoding = encoding
        self._newline = newline
        self._durable = durable
        self._permissions = permissions
        self._follow = follow_symlinks
        self._state = "new"
        self._file: IO[Any] | None = None
        self._dir_fd = -1
        self._directory = ""
        self._name = ""
        self._temp = ""

    def __repr__(self) -> str:
        durable = "durable" if self._durable else "not durable"
        return f"<AtomicWrite {self._path!r} mode={self._mode!r} {durable} {self._state}>"

    @property
    def temp_path(self) -> Path | None:
        """Where the content is being written before it is published (``None`` outside the block)."""
        if self._state != "writing":
            return None
        return Path(self._directory, self._temp)

    def _target(self) -> tuple[str, os.stat_result | None]:
        """The file to replace (a symlink's target when following) and its stat, or None if new."""
        path = self._path
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return path, None
        if stat.S_ISLNK(st.st_mode):
            if self._exclusive:  # as open(path, "x"): even a dangling link is an existing name
                raise FileExistsError(errno.EEXIST, "already exists (atomic_write mode 'x')", path)
            if not self._follow:
                raise OSError(
                    errno.ELOOP,
                    "is a symbolic link and atomic_write(follow_symlinks=False) will not replace it",
                    path,
                )
            path = os.path.realpath(path)
            try:
                st = os.lstat(path)
            except FileNotFoundError:  # a dangling link: create its target, as open() would
                return path, None
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory, atomic_write needs a file", path)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(
                errno.EINVAL,
                "is not a regular file; atomic_write would replace it with one",
                path,
            )
        if self._exclusive:
            raise FileExistsError(errno.EEXIST, "already exists (atomic_write mode 'x')", path)
        return path, st

    def __enter__(self) -> F:
        if self._state != "new":
            raise RuntimeError(f"{self!r} can be entered only once")
        self._state = "opening"
        target, existing = self._target()
        directory, self._name = os.path.split(target)
        self._directory = directory or "."
        self._dir_fd = os.open(self._directory, _DIR_FLAGS)
        fd = -1
        created = False
        try:
            # A new file gets what open() would give: 0o666 filtered by the umask, applied by the
            # kernel without reading the umask. When the final mode is set explicitly, the temp
            # file starts owner-only so it is never more open than the file it becomes.
            create_mode = 0o666 if existing is None and self._permissions is None else 0o600
            for _ in range(100):
                self._temp = _temp_name(self._name)
                try:
                    fd = os.open(self._temp, _TEMP_FLAGS, create_mode, dir_fd=self._dir_fd)
                    break
                except FileExistsError:
                    continue
            else:  # pragma: no cover - 100 collisions of 32 random bits
                raise FileExistsError(errno.EEXIST, "no free temp file name", self._directory)
            created = True
            try:  # held until the descriptor closes: remove_stale_temps skips locked temp files
                if _HAVE_FCNTL:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # a filesystem without flock: the pid in the name still protects it
                pass
            if existing is not None:
                _copy_owner(fd, existing)
            if self._permissions is not None:
                if self._permissions != create_mode:
                    os.fchmod(fd, self._permissions)
            elif existing is not None and stat.S_IMODE(existing.st_mode) != create_mode:
                try:
                    os.fchmod(fd, stat.S_IMODE(existing.st_mode))
                except OSError:  # a filesystem that stores no modes (vfat...): nothing to keep
                    pass
            # open() owns the descriptor from here: it closes it itself when it fails, and
            # closing it again could close a descriptor another thread opened meanwhile.
            owned, fd = fd, -1
            self._file = open(owned, _MODES[self._mode], encoding=self._encoding, newline=self._newline)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if created:
                self._unlink_temp()
            self._temp = ""
            self._close_dir()
            self._state = "failed"
            raise
        self._state = "writing"
        return self._file  # type: ignore[return-value]

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        file = self._file
        assert file is not None, "AtomicWrite.__exit__ without __enter__"
        self._file = None
        if exc is not None:
            try:
                file.close()
            except Exception as close_error:  # the body's error is the one to report
                exc.add_note(f"reclaim: closing the discarded temp file also failed: {close_error!r}")
            self._unlink_temp()
            self._close_dir()
            self._state = "discarded"
            return
        try:
            self._publish(file)
        except BaseException:
            self._unlink_temp()
            self._state = "failed"
            raise
        finally:
            self._close_dir()
        self._state = "published"

    def _publish(self, file: IO[Any]) -> None:
        if file.closed:
            # The body closed the file itself; its data reached the kernel, and fsync needs an fd.
            if self._durable:
                fd = os.open(self._temp, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=self._dir_fd)
                try:
                    _fsync(fd)
                finally:
                    os.close(fd)
        else:
            try:
                file.flush()
                if self._durable:
                    _fsync(file.fileno())
            finally:
                file.close()
        dir_fd = self._dir_fd
        if self._exclusive:
            # link() fails if the name exists, so a file created meanwhile is never overwritten.
            try:
                os.link(self._temp, self._name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except FileExistsError:
                raise FileExistsError(
                    errno.EEXIST,
                    "was created by someone else while atomic_write(mode 'x') wrote it",
                    os.path.join(self._directory, self._name),
                ) from None
            os.unlink(self._temp, dir_fd=dir_fd)
        else:
            os.replace(self._temp, self._name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        self._temp = ""
        if self._durable:
            _fsync(dir_fd)

    def _unlink_temp(self) -> None:
        if self._temp:
            try:
                os.unlink(self._temp, dir_fd=self._dir_fd)
            except FileNotFoundError:
                pass
            self._temp = ""

    def _close_dir(self) -> None:
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1


def _copy_owner(fd: int, existing: os.stat_result) -> None:
    """Give the temp file the replaced file's owner and group, as far as we are allowed to."""
    if existing.st_uid == os.geteuid() and existing.st_gid == os.getegid():
        return  # the common case, decided without a system call on the new file
    current = os.fstat(fd)
    if (current.st_uid, current.st_gid) == (existing.st_uid, existing.st_gid):
        return
    try:
        os.fchown(fd, existing.st_uid, existing.st_gid)
        return
    except OSError:  # not allowed (or a filesystem without owners): keep what we can
        pass
    if current.st_gid != existing.st_gid:
        try:  # an unprivileged owner may still set a group it belongs to
            os.fchown(fd, -1, existing.st_gid)
        except OSError:
            pass


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: TextMode = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    durable: bool = True,
    permissions: int | None = None,
    follow_symlinks: bool = True,
) -> AtomicWrite[TextIO]: ...


@overload
def atomic_write(
    path: str | os.PathLike[str],
    mode: BinaryMode,
    *,
    encoding: None = None,
    newline: None = None,
    durable: bool = True,
    permissions: int | None = None,
    follow_symlinks: bool = True,
) -> AtomicWrite[BinaryIO]: ...


def atomic_write(
    path: str | os.PathLike[str],
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
    durable: bool = True,
    permissions: int | None = None,
    follow_symlinks: bool = True,
) -> AtomicWrite[Any]:
    """Write a file so that it holds exactly the old content or exactly the new, even after a crash.

    Use it as a context manager: the block writes to a temp file in the same
    directory; when the block succeeds the temp file replaces *path* in one
    ``rename``; when it raises (anything, ``KeyboardInterrupt`` included) the temp
    file is removed and *path* is untouched. Readers never see a partial file.

    * ``mode``: ``"w"``/``"wt"`` (text), ``"wb"`` (binary); ``"x"``/``"xb"`` publish
      only if *path* does not exist yet (``FileExistsError`` otherwise, also when
      it appears while the block runs).
    * ``durable=True`` (default): the file is ``fsync``'d before the rename and
      the directory after it, so the new content survives a power cut or kernel
      crash once the block has exited. ``durable=False`` skips both ``fsync``
      calls: still old-or-new for readers and for a crash of the *process*
      (``SIGKILL``, ``os._exit``), but after a power cut or OS crash the file may
      hold the old content, or on some filesystems be empty.
    * Permissions: an existing file's mode is kept (and its owner and group,
      where this process may set them); a new file gets what ``open()`` gives,
      ``0o666`` less the umask; ``permissions=`` sets an exact mode (not
      filtered by the umask). Extended attributes and ACLs are not copied, and
      other hard links to the old file keep the old content.
    * Symlinks: a symlink at *path* is followed and its final target is replaced
      (the link stays a link, and a dangling link gets its target created);
      with ``follow_symlinks=False`` a symlink is refused with ``OSError``
      (``ELOOP``) and never replaced. Directories, FIFOs and devices are refused.

    Temp files are named ``.<name>.<pid>.<random>.reclaim-tmp``; one left by a
    process killed mid-write is removed by :func:`remove_stale_temps`.

    Raises:
        TypeError: an argument of the wrong type (``permissions="0640"``), naming it.
        ValueError: an argument of the right type but not accepted (a mode other than
            those above, ``permissions`` outside 0..0o7777), naming it.
        FileExistsError: mode ``"x"`` and *path* exists.
        OSError: the directory is missing or not writable, *path* is a
            directory or special file, a refused symlink, or ``fsync`` failed.

    Example::

        with atomic_write("settings.json") as f:
            json.dump(settings, f)
    """
    return AtomicWrite(
        path,
        mode,
        encoding=encoding,
        newline=newline,
        durable=durable,
        permissions=permissions,
        follow_symlinks=follow_symlinks,
    )


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child not yet reaped still answers kill(0): a zombie writes nothing
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def remove_stale_temps(directory: str | os.PathLike[str]) -> list[Path]:
    """Remove the temp files that :func:`atomic_write` calls killed mid-write left in *directory*.

    A temp file is removed only when no process holds its lock (its writer is
    gone: the kernel drops a dead process's locks) and the pid in its name is
    not a live process on this machine; a write in progress is never disturbed.
    Returns the paths removed. Not recursive.

    Raises:
        TypeError: *directory* is not a str or path-like of str.
        OSError: *directory* cannot be listed.

    Example::

        for path in remove_stale_temps("/var/lib/app"):
            log.info("removed %s left by a crash", path)
    """
    directory = os.fspath(directory) if isinstance(directory, str | os.PathLike) else directory
    if not isinstance(directory, str):
        raise TypeError(
            f"remove_stale_temps(directory=...) must be a str or os.PathLike[str], not {_typed(directory)}"
        )
    removed: list[Path] = []
    dir_fd = os.open(directory, _DIR_FLAGS)
    try:
        for name in os.listdir(dir_fd):
            match = _TEMP_RE.match(name)
            if match is None:
                continue
            try:
                fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=dir_fd)
            except OSError:  # gone meanwhile, or a symlink: not ours to touch
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                try:
                    if _HAVE_FCNTL:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its writer is alive and still writing
                # The writer locks right after creating the file: a live pid may be in that gap.
                if _pid_alive(int(match.group(1))):
                    continue
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_ino != os.fstat(fd).st_ino:
                    continue
                os.unlink(name, dir_fd=dir_fd)
                removed.append(Path(directory, name))
            except FileNotFoundError:
                continue
            finally:
                os.close(fd)
    finally:
        os.close(dir_fd)
    return removed
