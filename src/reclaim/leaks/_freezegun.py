"""freezegun: reclaim's clock is the real one while a test's time is frozen.

``freeze_time()`` replaces ``time.time``, ``time.monotonic`` and their kin in every module
loaded, reclaim's too: what a test acquired under it was "acquired 6929338.5 min ago" (its
``acquired_at`` the frozen date), and a grace period's deadline was measured on a clock that
does not move. freezegun gives the real time to calls made from the modules on its ignore list:
reclaim's modules are added to it as freezegun is imported. A program that does not import
freezegun loads none of this.
"""

from __future__ import annotations

from types import ModuleType

from ._patch import Patches

__all__ = ["install"]

#: The start of the names of the modules freezegun leaves on the real clock (reclaim's).
IGNORED = "reclaim."


def install(patches: Patches, module: ModuleType) -> None:
    """Add reclaim's modules to freezegun's ignore list (*module* is ``freezegun.config``)."""
    configure = getattr(module, "configure", None)
    if callable(configure):
        try:
            configure(extend_ignore_list=[IGNORED])
        except Exception:  # noqa: S110 - a freezegun whose configure() differs: its clock, as before
            pass
