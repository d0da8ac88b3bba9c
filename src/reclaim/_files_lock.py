"""locked / FileLock: an inter-process lock on a file that the kernel releases when its holder dies.

Why not filelock or portalocker: both lock with ``flock``/``lockf`` and neither
records who holds a kernel lock, so a timeout cannot name the holder (filelock
knows a holder only for its soft, exists-file locks); filelock is also
re-entrant per thread by default, where reclaim wants two threads to contend
like two processes. The kernel part is a few system calls, written here.

The lock is a Linux open-file-description lock (``F_OFD_SETLK``) on the whole
file; elsewhere ``flock``. Both belong to the open file, not to the process, so:

* two ``locked()`` calls contend whether they come from two processes or two
  threads of one process (each opens the file anew);
* closing some *other* descriptor of the same file does not drop the lock (the
  trap of POSIX ``fcntl`` locks, which SQLite documents);
* the kernel releases it when the holder exits or is killed.

An exclusive holder writes ``"<pid> <host>"`` into the lock file and empties it
before releasing, so a waiter that times out can say who holds the lock. The
file is opened with ``O_NOFOLLOW`` and never truncated on open, and one that is
not a regular file or has other hard links is refused, so a planted symlink or
hard link cannot make the lock write into someone else's file. Lock files are
never deleted (deleting one while others wait on it breaks mutual exclusion);
a holder re-checks after locking that the path still names the file it locked.

Without the ``fcntl`` module (Windows) this module still imports, so ``import
reclaim`` and the rest of :mod:`reclaim.files` work; creating a lock raises
``NotImplementedError`` saying so. A Windows lock (``msvcrt.locking``) is not
written because it could not be tested on the reference platform.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from . import _sites, _track
from .errors import LockTimeout

try:
    import fcntl
except ImportError:  # Windows: FileLock() says it cannot lock here; everything else imports
    _HAVE_FCNTL = False
else:
    _HAVE_FCNTL = True

__all__ = ["FileLock", "FileLockStatistics", "locked"]

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # Windows has none
_OPEN_FLAGS = os.O_CREAT | _O_NONBLOCK | _O_NOFOLLOW | _O_CLOEXEC

_OFD = _HAVE_FCNTL and sys.platform.startswith("linux") and hasattr(fcntl, "F_OFD_SETLK")
# struct flock on Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
_FLOCK = struct.Struct("hhqqi")
_MAX_POLL = 0.05
#: The kind a held lock is reported as by the leak tracker (listed in ``reclaim.leaks.KINDS``).
_LEAK_KIND = "filelock"


@dataclass(frozen=True, slots=True, eq=False)
class _Holding:
    """One lock this process holds: who took it and where (for errors, never for reports)."""

    thread: int
    thread_name: str
    shared: bool
    site: _sites.Site

    def conflicts(self, shared: bool) -> bool:
        return not (self.shared and shared)

    def where(self) -> str:
        return _sites.format_site(self.site)


# (st_dev, st_ino) of the lock file -> the locks this process holds on it. The kernel cannot tell
# us that the holder is ourselves (OFD locks belong to open files, not to threads), so this is
# how a nested locked() fails at once and a timeout names the thread instead of our own pid.
_held: dict[tuple[int, int], list[_Holding]] = {}
_held_lock = threading.Lock()


def _forget_held_after_fork() -> None:
    # A forked child holds none of its parent's locks: its own open of the file contends with
    # them like any other process's, and its copies of held FileLocks only close on release().
    global _held_lock
    _held_lock = threading.Lock()  # another thread may have held it at the fork
    _held.clear()


if hasattr(os, "register_at_fork"):  # not on Windows (no fork there either)
    os.register_at_fork(after_in_child=_forget_held_after_fork)


def _holdings(key: tuple[int, int], shared: bool) -> list[_Holding]:
    """The locks this process holds on the file *key* that a *shared* (or exclusive) lock conflicts with."""
    with _held_lock:
        return [h for h in _held.get(key, ()) if h.conflicts(shared)]


def _try_lock(fd: int, shared: bool, wait: bool) -> bool:
    """Take the lock on *fd*; without *wait*, return False instead of blocking."""
    try:
        if _OFD:
            kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
            cmd = fcntl.F_OFD_SETLKW if wait else fcntl.F_OFD_SETLK
            fcntl.fcntl(fd, cmd, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
        else:  # pragma: no cover - non-Linux
            op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
            fcntl.flock(fd, op if wait else op | fcntl.LOCK_NB)
    except OSError as exc:
        if not wait and exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            return False
        raise
    return True


def _conflict(fd: int, shared: bool) -> str | None:
    """'exclusive', 'shared' or 'none' for the lock that blocks us (Linux), else None."""
    if not _OFD:  # pragma: no cover - flock cannot be queried
        return None
    kind = fcntl.F_RDLCK if shared else fcntl.F_WRLCK
    try:
        answer = fcntl.fcntl(fd, fcntl.F_OFD_GETLK, _FLOCK.pack(kind, os.SEEK_SET, 0, 0, 0))
    except OSError:
        return None
    found = _FLOCK.unpack(answer)[0]
    if found == fcntl.F_UNLCK:
        return "none"
    return "shared" if found == fcntl.F_RDLCK else "exclusive"


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Default:
    """Marker: use the timeout given at construction."""


@dataclass(frozen=True, slots=True)
class FileLockStatistics:
    """A snapshot of one :class:`FileLock`'s counters."""

    #: Whether this object holds the lock now.
    held: bool
    #: Successful acquisitions since it was created.
    acquisitions: int
    #: Acquisitions that had to wait because another holder had the lock.
    contended: int
    #: Acquisitions that gave up with :class:`~reclaim.LockTimeout`.
    timeouts: int
    #: Seconds spent waiting for the lock, summed over all acquisitions.
    waited: float


class FileLock:
    """An inter-process lock on *path*, shared or exclusive; see :func:`locked`.

    One object is one holder: use one per thread (or per ``with``). It is not
    re-entrant: asking for a lock that conflicts with one the same thread holds
    on the same file raises ``RuntimeError`` at once, whatever the timeout,
    instead of deadlocking. Another thread's lock is waited for like another
    process's, and a timeout names that thread.

    Example::

        lock = FileLock("/var/lib/app/state.lock", timeout=5)
        with lock:
            update_state()
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        timeout: float | None = None,
        shared: bool = False,
    ) -> None:
        _check_timeout(timeout, "FileLock(timeout=...)")
        if not isinstance(shared, bool):
            raise TypeError(f"FileLock(shared=...) must be a bool, not {type(shared).__name__} {shared!r}")
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"FileLock(path=...) must be a str or os.PathLike[str], not {path!r}")
        self._path = os.fspath(path)
        if not isinstance(self._path, str):
            raise TypeError(f"FileLock(path=...) must be a str or os.PathLike[str], not {path!r}")
        if not _HAVE_FCNTL:
            raise NotImplementedError(
                f"FileLock({self._path!r}): reclaim's file locks need the fcntl module "
                f"(Linux, macOS, BSD), which this platform ({sys.platform}) does not have; "
                "on Windows use a lock built on msvcrt.locking or LockFileEx (such as the "
                "'filelock' package), or run under WSL"
            )
        self._timeout = timeout
        self._shared = shared
        self._fd = -1
        self._key: tuple[int, int] | None = None
        self._holding: _Holding | None = None
        self._owner_pid = 0
        self._thread = 0
        self._acquisitions = 0
        self._contended = 0
        self._timeouts = 0
        self._waited = 0.0

    @property
    def path(self) -> Path:
        """The lock file."""
        return Path(self._path)

    @property
    def shared(self) -> bool:
        """Whether this is a shared (reader) lock rather than an exclusive one."""
        return self._shared

    @property
    def held(self) -> bool:
        """Whether this object holds the lock now."""
        return self._fd >= 0

    def __repr__(self) -> str:
        kind = "shared" if self._shared else "exclusive"
        state = "held" if self._fd >= 0 else "not held"
        return f"<FileLock {self._path!r} {kind} {state}>"

    def statistics(self) -> FileLockStatistics:
        """Counters of this lock object (see :class:`FileLockStatistics`)."""
        return FileLockStatistics(
            self._fd >= 0, self._acquisitions, self._contended, self._timeouts, self._waited
        )

    def _open(self) -> int:
        try:
            try:
                fd = os.open(self._path, os.O_RDWR | _OPEN_FLAGS, 0o666)
            except PermissionError:
                if not self._shared:
                    raise
                fd = os.open(self._path, os.O_RDONLY | _OPEN_FLAGS, 0o666)
        except OSError as error:
            # O_NOFOLLOW fails with ELOOP (EMLINK on FreeBSD) on a symlink; say so, not "too many levels".
            if error.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(self._path):
                raise OSError(
                    errno.ELOOP,
                    "is a symbolic link and locked() will not follow it: a link planted where "
                    "the lock file belongs could make the lock write its holder's pid into the "
                    "file it points at; lock the target's path instead, or remove the link",
                    self._path,
                ) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "is not a regular file; refusing to use it as a lock", self._path)
            if st.st_nlink != 1:
                raise OSError(
                    errno.EMLINK,
                    f"has {st.st_nlink} hard links; refusing to use it as a lock file",
                    self._path,
                )
        except BaseException:
            os.close(fd)
            raise
        return fd

    def acquire(self, *, timeout: float | type[_Default] | None = _Default) -> Self:
        """Take the lock, waiting at most *timeout* seconds (default: the one given at construction).

        ``timeout=None`` waits as long as it takes; ``0`` tries once.

        Raises:
            LockTimeout: not obtained in time; the message names the lock file and,
                when it is known, the holder's pid (also on ``.pid``).
            RuntimeError: this object already holds it, or this thread holds a conflicting
                lock on the same file (locks are not re-entrant: waiting would never end);
                the message says where that lock was taken.
            OSError: the lock file cannot be opened, or is a symlink, special file or hard link.
            TypeError, ValueError: *timeout* is not a number (TypeError) or is negative or NaN.
        """
        if timeout is _Default:
            timeout = self._timeout
        else:
            _check_timeout(timeout, "FileLock.acquire(timeout=...)")
        wait_for: float | None = timeout  # type: ignore[assignment]
        if self._fd >= 0:
            raise RuntimeError(f"{self!r} is already held; it is not re-entrant")
        start = time.monotonic()
        deadline = None if wait_for is None else start + wait_for
        contended = False
        while True:
            fd = self._open()
            try:
                st = os.fstat(fd)
                key = (st.st_dev, st.st_ino)
                self._check_self_deadlock(key)
                if not _try_lock(fd, self._shared, wait=False):
                    contended = True
                    if not self._wait(fd, deadline):
                        self._timeouts += 1
                        self._waited += time.monotonic() - start
                        raise self._timeout_error(fd, key, wait_for)
                try:
                    now = os.stat(self._path, follow_symlinks=False)
                except FileNotFoundError:
                    now = None
                if now is None or (now.st_dev, now.st_ino) != key:
                    os.close(fd)  # the file was removed or replaced while we waited: lock the new one
                    continue
            except BaseException:
                if fd >= 0:
                    os.close(fd)
                raise
            break
        if not self._shared:
            record = f"{os.getpid()} {os.uname().nodename}\n".encode()
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
            except BaseException:
                os.close(fd)
                raise
        self._fd, self._key, self._owner_pid = fd, key, os.getpid()
        self._thread = threading.get_ident()
        holding = _Holding(self._thread, threading.current_thread().name, self._shared, _sites.capture(1))
        self._holding = holding
        with _held_lock:
            _held.setdefault(key, []).append(holding)
        self._acquisitions += 1
        self._contended += contended
        self._waited += time.monotonic() - start
        if _track.on_acquire is not None:
            kind = "shared" if self._shared else "exclusive"
            _track.acquired(_LEAK_KIND, self, f"{self._path} ({kind})", _sites.capture())
        return self

    def _check_self_deadlock(self, key: tuple[int, int]) -> None:
        me = threading.get_ident()
        mine = [h for h in _holdings(key, self._shared) if h.thread == me]
        if mine:
            kind = "shared" if self._shared else "exclusive"
            held = "a shared" if mine[0].shared else "an exclusive"
            raise RuntimeError(
                f"{kind} lock on {self._path}: this thread already holds {held} lock on this "
                f"file, taken at {mine[0].where()}; file locks are not re-entrant, so waiting "
                "for it would deadlock: release that lock first, or pass it down instead of "
                "locking again"
            )

    def _wait(self, fd: int, deadline: float | None) -> bool:
        """Wait until the lock is ours (True) or the deadline passes (False)."""
        if deadline is None:
            return _try_lock(fd, self._shared, wait=True)
        pause = 0.001
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            # The kernel has no timed wait for these locks: poll, backing off up to 50 ms.
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, _MAX_POLL)
            if _try_lock(fd, self._shared, wait=False):
                return True

    def _timeout_error(self, fd: int, key: tuple[int, int], timeout: float | None) -> LockTimeout:
        conflict = _conflict(fd, self._shared)
        pid: int | None = None
        holder = "holder unknown"
        here = _holdings(key, self._shared)
        if here and conflict != "none":
            # Our own pid in the file would only say "this process": name the thread instead.
            pid = os.getpid()
            threads = ", ".join(f"thread {h.thread_name!r}, taken at {h.where()}" for h in here)
            if all(h.shared for h in here):  # other processes may share it too
                holder = f"held shared by this process ({threads}) and maybe others"
            else:
                holder = f"held by this process ({threads})"
        elif conflict == "shared":
            holder = "held shared by other holders"
        elif conflict == "none":
            holder = "released just as the wait ended"
        else:
            try:
                fields = os.pread(fd, 256, 0).decode("utf-8", "replace").split()
            except OSError:
                fields = []
            if fields and fields[0].isdigit():
                host = fields[1] if len(fields) > 1 else ""
                if host and host != os.uname().nodename:
                    pid = int(fields[0])
                    holder = f"held by pid {pid} on {host}"
                elif _pid_exists(int(fields[0])):
                    pid = int(fields[0])
                    holder = f"held by pid {pid}"
            elif conflict == "exclusive":
                holder = "held exclusively by a process that has not written its pid yet"
        kind = "shared" if self._shared else "exclusive"
        error = LockTimeout(f"{kind} lock on {self._path} not obtained within {timeout} s: {holder}")
        error.path = self._path
        error.pid = pid
        return error

    def release(self) -> None:
        """Give the lock back. Releasing a lock that is not held does nothing.

        In a forked child that inherited the held lock, this only closes the
        child's copy: the parent keeps its lock.
        """
        fd = self._fd
        if fd < 0:
            return
        self._fd = -1
        key, holding = self._key, self._holding
        self._key = self._holding = None
        if key is not None and holding is not None:
            with _held_lock:
                holders = _held.get(key)
                if holders is not None and holding in holders:  # absent in a forked child
                    holders.remove(holding)
                    if not holders:
                        del _held[key]
        try:
            if self._owner_pid == os.getpid() and not self._shared:
                os.ftruncate(fd, 0)  # forget our pid before anyone else can take the lock
        finally:
            os.close(fd)  # the last descriptor of the open file: the kernel drops the lock
            _track.released(self)

    def __enter__(self) -> Self:
        return self.acquire(timeout=_Default)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __del__(self) -> None:
        if getattr(self, "_fd", -1) >= 0 and self._owner_pid == os.getpid():
            warnings.warn(
                f"{self!r} was garbage-collected while held; release it or use 'with locked(...)'",
                ResourceWarning,
                stacklevel=2,
                source=self,
            )
            self.release()


# The lock's descriptor is part of the lock: the leak tracker records what _open() opens as
# reclaim's own, so a lock left held is one "filelock" leak at the user's line, not also an "fd".
_sites.mark_owned(FileLock._open.__code__)


def _check_timeout(timeout: object, name: str) -> None:
    """A TypeError for a timeout of the wrong type, a ValueError for a number out of range."""
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise TypeError(
            f"{name} must be None or a number of seconds (int or float), "
            f"not {type(timeout).__name__} {timeout!r}"
        )
    if not timeout >= 0:  # also NaN
        raise ValueError(f"{name} must be a number of seconds >= 0 (or None: no limit), not {timeout!r}")


def locked(
    path: str | os.PathLike[str],
    *,
    timeout: float | None = None,
    shared: bool = False,
) -> FileLock:
    """An inter-process lock on the file *path*, taken by ``with`` and released when the block ends.

    The lock file is created if missing (mode ``0o666`` less the umask) and never
    deleted. The kernel releases the lock if the holder dies, even by
    ``SIGKILL``. Two threads contend as two processes do. ``shared=True`` takes a
    reader lock that other shared holders may hold at the same time.

    * ``timeout=None`` waits as long as it takes; ``timeout=0`` tries once. When
      another thread of this process holds the lock, the timeout names the thread.

    Raises:
        TypeError: an argument of the wrong type (a *timeout* that is not a number, say).
        ValueError: a negative or NaN *timeout*.
        LockTimeout: not obtained within *timeout*; also a ``TimeoutError``. The
            message names the lock file and, when known, the holder's pid
            (``.path`` and ``.pid`` carry them).
        RuntimeError: the calling thread already holds a conflicting lock on the same
            file (locks are not re-entrant; waiting would never end), whatever the
            timeout; the message says where that lock was taken.
        OSError: the lock file is a symlink (refused, not followed), a special file or
            has other hard links.
        NotImplementedError: the platform has no ``fcntl`` module (Windows).

    Example::

        with locked("/var/lib/app/state.lock", timeout=10):
            update_state()
    """
    _check_timeout(timeout, "locked(timeout=...)")  # named as the caller wrote it, not as FileLock
    if not isinstance(shared, bool):
        raise TypeError(f"locked(shared=...) must be a bool, not {type(shared).__name__} {shared!r}")
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"locked(path=...) must be a str or os.PathLike[str], not {path!r}")
    return FileLock(path, timeout=timeout, shared=shared)
