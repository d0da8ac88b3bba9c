"""watchfiles: the descriptors its Rust watcher opens are its own, closed on its own thread.

``watchfiles.watch`` and ``awatch`` make a ``RustNotify``: Rust code (the
``notify`` crate) opens an inotify descriptor, an epoll descriptor and an eventfd
for its watcher thread. Closing the watcher (the with-block ``watch`` runs it
in) only tells that thread to stop; the thread closes them a moment later, so a
correct program that ends right after its watch loop was reported, now and
then, with untracked descriptors. No hook sees them opened: making a
``RustNotify`` reads the descriptor table before and after, as gRPC's channel
makers do (see :mod:`._grpc`), and what appeared that is neither a file nor a
socket is kept (:data:`._fds.KEPT`) while it is the same descriptor. A watcher
costs two reads of the table (tens of microseconds, against the milliseconds
it takes to start); a program that does not import watchfiles pays nothing.
"""

from __future__ import annotations

from types import ModuleType

from . import _fds
from ._patch import Patches

__all__ = ["MODULES", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The modules that make a ``RustNotify`` through their own global name for it: ``watch()``'s, and
#: the extension's own, which a program (watchfiles' own tests) may make one from directly.
MODULES = ("watchfiles.main", "watchfiles._rust_notify")


def install(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s ``RustNotify`` keep the descriptors its making opens."""
    make = getattr(module, "RustNotify", None)
    # watchfiles.main imports the extension's name, a stand-in already (which wraps the class).
    if callable(make) and not hasattr(make, "__wrapped__"):
        patches.set(module, "RustNotify", _fds.keeping(make))
