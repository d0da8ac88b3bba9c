"""Which modules instrument which kinds, in install order."""

from __future__ import annotations

from ._patch import Patches

__all__ = ["install"]


def install(patches: Patches) -> None:
    """Install the wrappers of every kind; *patches* records them for undo."""
    from . import _fds, _files, _sockets

    for module in (_files, _fds, _sockets):
        module.install(patches)
