"""Twisted: what its reactor keeps for the process is its own; its frames are plumbing.

A reactor has no ``close()``: what it opens as it is made is open for as long
as the process runs (the global one, ``from twisted.internet import reactor``,
is made on that import). That is a pipe it wakes itself through (its waker,
``os.pipe`` in ``_FDWaker.__init__``) and, for the epoll reactor (Linux's
default), an epoll descriptor made in C that no hook sees. Twisted also opens
``/dev/null`` with the first port that listens, and keeps it for the process in
reserve (``tcp._reservedFD``: closed to accept and drop a connection when out
of descriptors, then opened again). Every correct Twisted program reported all
three. The waker's and the reserve's functions are owned
(:func:`._owning.own`): what they open is recorded, never reported, and holds
its descriptor (the ``SIGCHLD`` waker ``reactor.run()`` makes goes through the
same ``_FDWaker.__init__``: it closes it when the run ends). So is the asyncio
reactor's ``__init__``, which makes an asyncio loop when it is given none and
never closes it (one the program gives it is the program's). ``EPollReactor``'s
``__init__`` reads the descriptor table before and after, as gRPC's channel
makers do (see :mod:`._grpc`): the epoll descriptor is kept
(:data:`._fds.KEPT`) while it is the same one. Making a reactor costs two reads
of the table; a program that does not import twisted pays nothing.

Twisted's frames are plumbing (see :mod:`reclaim._sites`), as an event loop's
are: a port or a connection is reported at the program's ``listenTCP`` or
``connectTCP`` line (one a port accepted, at its port's line, see
:func:`._sockets._accepted_at`), and what a protocol's callback opens at that
callback's line. ``reactor.stop()`` disconnects every port and connection
still open: the reactor owns them, as Twisted's programs are written, so what it
closed is closed. One still open at a check (a reactor never run or stopped, a
test's on a reactor that outlives the test: what trial calls an unclean
reactor) is reported as open.

The reactor's thread pool (``reactor.getThreadPool()``, made on first use: ``deferToThread``,
and the name resolution of every ``HostnameEndpoint``) is the reactor's too: started as the
reactor runs and stopped as it shuts down. Its worker threads are never recorded, as the
threads of trio's cache are not (see :func:`install_threadpool`); what their work opens is the
program's as ever. A ``ThreadPool`` the program makes is its own.

Twisted keeps ``open`` and ``os.close`` as class attributes in two places and
calls them through an instance (:data:`UNBOUND`): the functions reclaim puts in
their place bind as methods where the builtins did not, so ``spawnProcess``
failed under reclaim. Those two attributes are made plain callables again.
"""

from __future__ import annotations

import sys
import threading
from types import FunctionType, ModuleType
from typing import Any

from . import _fds
from ._owning import PLUMBING, lookup, own
from ._patch import Patches

__all__ = [
    "OWNED",
    "POLLERS",
    "UNBOUND",
    "install_owned",
    "install_poller",
    "install_threadpool",
    "install_unbound",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: module -> the functions in it that open what Twisted keeps for the process (see the docstring).
OWNED = {
    "twisted.internet._signals": ("_FDWaker.__init__",),
    "twisted.internet.tcp": ("_reservedFD._fileFactory",),
    # The asyncio reactor's own event loop, made when it is given none (one given is the giver's).
    "twisted.internet.asyncioreactor": ("AsyncioSelectorReactor.__init__",),
}

#: module -> the reactor class in it whose making opens a poller in C.
POLLERS = {"twisted.internet.epollreactor": "EPollReactor"}

#: module -> (class, attribute): a class that keeps ``open`` or ``os.close`` as a class attribute
#: and calls it through an instance (``self.openfile(path)``, as ``spawnProcess`` does). The
#: builtin does not bind as a method; the function reclaim put in its place does, so the call
#: got the instance as its first argument and failed.
UNBOUND = {
    "twisted.internet.process": ("_FDDetector", "openfile"),
    "twisted.internet.endpoints": ("AdoptedStreamServerEndpoint", "_close"),
}


def install_owned(patches: Patches, module: ModuleType) -> None:
    """Own the functions of *module* that open what Twisted keeps (see :data:`OWNED`)."""
    own(*(lookup(module, name) for name in OWNED[module.__name__]))


def install_poller(patches: Patches, module: ModuleType) -> None:
    """Keep the poller a reactor of *module* opens in C as it is made (see :data:`POLLERS`)."""
    cls = getattr(module, POLLERS[module.__name__], None)
    init = vars(cls).get("__init__") if isinstance(cls, type) else None
    if init is not None:
        patches.set(cls, "__init__", _fds.keeping(init))


def install_unbound(patches: Patches, module: ModuleType) -> None:
    """Make *module*'s class attribute of :data:`UNBOUND` a plain callable again, as the builtin was."""
    cls_name, name = UNBOUND[module.__name__]
    cls = getattr(module, cls_name, None)
    value = vars(cls).get(name) if isinstance(cls, type) else None
    if type(value) is FunctionType:  # reclaim's (the class was made after it was installed)
        patches.set(cls, name, staticmethod(value))


class _ReactorThread(threading.Thread):
    """A worker of the reactor's thread pool: Twisted's machinery, never recorded."""

    def start(self) -> None:
        super().start()


PLUMBING.add(_ReactorThread.start.__code__)  # a thread it starts is not recorded (see _threads)


def _reactors_own(reactor: Any) -> None:
    """Make the workers of *reactor*'s thread pool, made already or not yet, its own."""
    pool = vars(reactor).get("threadpool")
    if pool is not None and getattr(pool, "threadFactory", None) is threading.Thread:
        pool.threadFactory = _ReactorThread  # read through self by ThreadPool's factory


def install_threadpool(patches: Patches, module: ModuleType) -> None:
    """The reactor's thread pool, made by ``ReactorBase._initThreadPool``: its workers are the
    reactor's (see the module's docstring)."""
    base = getattr(module, "ReactorBase", None)
    init = vars(base).get("_initThreadPool") if isinstance(base, type) else None
    if not isinstance(init, FunctionType):
        return

    def _initThreadPool(self: Any) -> None:
        init(self)
        _reactors_own(self)

    _initThreadPool.__doc__ = init.__doc__
    patches.set(base, "_initThreadPool", _initThreadPool)
    installed: Any = sys.modules.get("twisted.internet.reactor")  # the reactor installs itself there
    if installed is not None and not isinstance(installed, ModuleType):  # made before tracking
        _reactors_own(installed)
