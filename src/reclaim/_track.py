"""The seam between resource owners and the leak tracker.

Owners (Scope, ``@resource`` instances, pool leases, temp dirs) call
:func:`acquired` when they take something and :func:`released` when they give
it back. While no tracker runs, both are a global lookup and a ``None`` check.
``reclaim.leaks`` installs the real hooks when tracking starts.
"""

from __future__ import annotations

from collections.abc import Callable

from ._sites import Site

__all__ = ["acquired", "install", "released"]

#: (kind, object, description, site) -> None; set by the leak tracker while it runs.
on_acquire: Callable[[str, object, str, Site], None] | None = None
#: (object) -> None; set by the leak tracker while it runs.
on_release: Callable[[object], None] | None = None


def install(
    acquire: Callable[[str, object, str, Site], None] | None,
    release: Callable[[object], None] | None,
) -> None:
    """Install (or, with ``None``, remove) the tracker's hooks."""
    global on_acquire, on_release
    on_acquire, on_release = acquire, release


def acquired(kind: str, obj: object, description: str, site: Site) -> None:
    """Tell the tracker, if one runs, that *obj* of *kind* was acquired at *site*."""
    hook = on_acquire
    if hook is not None:
        hook(kind, obj, description, site)


def released(obj: object) -> None:
    """Tell the tracker, if one runs, that *obj* was released."""
    hook = on_release
    if hook is not None:
        hook(obj)
