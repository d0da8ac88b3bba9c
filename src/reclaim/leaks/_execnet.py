"""execnet: a gateway's child, once ``Gateway.exit()`` hands it over, is its group's to wait for.

A popen (or ssh) gateway runs its other side in a child process. ``gw.exit()`` is how execnet
says to close one: it sends the child its termination and closes the pipe to it, and leaves
waiting for the child to ``Group.terminate()``, which every ``Group`` (``execnet.default_group``
too) registers with ``atexit`` when made, killing what has not ended a second later. So the
child of a gateway closed as documented was reported as "exited but never waited for: a
zombie" at the line that made the gateway (17 errors in pytest-xdist's own suite), though
execnet reaps it at exit in any case.

Once ``exit()`` returned, the child's record is released: the gateway was closed. A gateway
never exited stays the program's leak, its child still running. Only ``Gateway.exit`` is
wrapped; a program that never imports execnet loads none of this.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from . import _records
from ._patch import Patches


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap ``execnet.gateway.Gateway.exit`` (*module* is ``execnet.gateway``)."""
    cls = getattr(module, "Gateway", None)
    real_exit = getattr(cls, "exit", None)
    if real_exit is None:
        return

    def exit_(self: Any) -> None:
        real_exit(self)
        popen = getattr(getattr(self, "_io", None), "popen", None)  # a socket gateway has none
        if popen is not None:
            _records.release(id(popen))

    patches.set(cls, "exit", exit_)
