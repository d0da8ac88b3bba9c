"""pyftpdlib: the IOLoop it keeps for the process (``IOLoop.instance()``) is its own.

A pyftpdlib server or handler given no loop runs on ``IOLoop.instance()``: one
loop for the process, made on first use and kept in a class attribute, as
pyzmq's ``Context.instance()`` keeps its context (see ``_owning.PROCESS_WIDE``).
Its poller is an epoll (kqueue, ``/dev/poll``) descriptor that ``select.epoll()``
opens in C, which no hook sees: whichever test first asked for the loop was
failed for an untracked descriptor. pyftpdlib's own test suite asks for it after
every test, to check that it is empty; and a loop's ``close()`` drops the
instance, any loop's (a ``ThreadedFTPServer`` closes one per connection), so the
next test to ask made it again, and was failed for it.

The loop ``instance()`` returns keeps its poller's descriptor (:data:`._fds.KEPT`)
while it is the same one, read from the loop itself (``fileno()``), not by
reading the descriptor table around the call, so nothing another thread opens
meanwhile is taken for it. A select or poll loop has no descriptor of its own.
A loop the program makes itself (``IOLoop()``, ``IOLoop.factory()``) and never
closes is still reported. Each call costs an ``fstat``; a program that does not
import pyftpdlib pays nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType

from . import _fds
from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["LOOPS", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: module -> the class whose ``instance()`` classmethod makes (or returns) the process's loop.
LOOPS = {"pyftpdlib.ioloop": "_IOLoop"}


def _keeping_poller(instance: Callable[..., Any]) -> Callable[..., Any]:
    """*instance*, keeping the descriptor of the loop it returns (see the module's docstring)."""

    @functools.wraps(instance)
    def instance_(cls: type, *args: Any, **kwargs: Any) -> Any:
        loop = instance(cls, *args, **kwargs)
        try:
            fd = loop.fileno()
        except (AttributeError, OSError, ValueError):  # no poller descriptor (select, poll), or closed
            return loop
        if type(fd) is int:
            ident = _fds.identity(fd)
            if ident is not None:
                _fds.keep(((fd, ident),))
        return loop

    return instance_


def install(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s process loop keep its poller's descriptor (see :data:`LOOPS`)."""
    cls = getattr(module, LOOPS[module.__name__], None)
    method = vars(cls).get("instance") if isinstance(cls, type) else None
    if isinstance(method, classmethod):
        patches.set(cls, "instance", classmethod(_keeping_poller(method.__func__)))
