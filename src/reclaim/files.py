"""reclaim.files: crash-safe writes, inter-process locks and temporary paths that always go away.

* :func:`atomic_write` replaces a file so that it holds exactly the old or
  exactly the new content, whatever happens (exception, ``SIGKILL``, power cut
  with ``durable=True``); :func:`remove_stale_temps` clears the temp files a
  killed writer left.
* :func:`locked` is an inter-process lock on a file, released by the kernel when
  its holder dies; a timeout names the holder's pid.
* :func:`temp_dir` / :func:`temp_file` are removed on every exit path and
  reported by the leak tracker when they are not.

Linux is the reference platform (OFD locks, ``O_NOFOLLOW``, directory
``fsync``); other POSIX systems use ``flock`` and the same steps.
"""

from __future__ import annotations

from ._files_atomic import TEMP_SUFFIX, AtomicWrite, atomic_write, remove_stale_temps
from ._files_lock import FileLock, FileLockStatistics, locked
from ._files_temp import TempDir, TempFile, temp_dir, temp_file
from .errors import LockTimeout

__all__ = [
    "TEMP_SUFFIX",
    "AtomicWrite",
    "FileLock",
    "FileLockStatistics",
    "LockTimeout",
    "TempDir",
    "TempFile",
    "atomic_write",
    "locked",
    "remove_stale_temps",
    "temp_dir",
    "temp_file",
]

for _name in __all__:
    _obj = globals()[_name]
    if getattr(_obj, "__module__", "").startswith("reclaim._files_"):
        _obj.__module__ = __name__  # shown, documented and pickled as reclaim.files.<name>
del _name, _obj
