"""eventlet: the epoll descriptor of each hub is the hub's, kept while it lives.

eventlet runs its greenthreads on a hub per thread; on Linux the hub polls an epoll instance
it makes as it is made (``eventlet.hubs.epolls.Hub``, on the first ``get_hub()``: at
``monkey_patch()``, often in a test package's ``__init__``). The main thread's hub lives as
long as the process, and nothing closes its descriptor: it was reported as an untracked
``select.epoll`` at the line that first needed a hub. Making a hub reads the descriptor table
before and after, as a gevent hub's making does (see :mod:`._gevent`): what appeared is kept
(:data:`._fds.KEPT`) while it is the same descriptor. eventlet's frames are plumbing, as
gevent's are (see ``reclaim._sites``): its green ``os``, ``socket`` and ``select`` stand in for
the standard library's, and what the standard library's own machinery acquires through them
(multiprocessing's shared-memory heap) stays that machinery's.
"""

from __future__ import annotations

from types import ModuleType

from . import _fds
from ._patch import Patches

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def install(patches: Patches, module: ModuleType) -> None:
    """Make the ``Hub`` of *module* (``eventlet.hubs.epolls``) keep the descriptors its making opens."""
    cls = getattr(module, "Hub", None)
    init = vars(cls).get("__init__") if isinstance(cls, type) else None
    if init is not None:  # else not the layout this was written for: reported as before
        patches.set(cls, "__init__", _fds.keeping(init))
