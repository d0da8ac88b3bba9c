"""pyfakefs: its ``fs`` fixture (any ``Patcher``) fakes ``open()`` while tracking too.

pyfakefs finds what to fake by looking through every module for the functions it fakes, known
by name and module, and only as C functions or Python functions (``open`` of ``io``, ``close``
of ``os``). While tracking, ``builtins.open`` is reclaim's stand-in, a bound method, and the
``os`` functions reclaim replaces are staticmethod objects: neither kind, so pyfakefs left
them in place, and its tests read and wrote the real file system (121 of pyfakefs' own tests
failed, after creating ``/baz`` and ``/fake_file.txt``). Its test of a function is asked about
the C function a stand-in replaces instead; the stand-in has that function's name and module,
so pyfakefs fakes it where it finds it, and puts it back when it stops. A file opened through
a fake is pyfakefs' own, no descriptor: nothing to track.
"""

from __future__ import annotations

from types import ModuleType

from . import _files
from ._patch import Patches, _Unbound, _unbound

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def original(fct: Any) -> Any:
    """The C function *fct* stands in for, when it is one of reclaim's stand-ins, else *fct*."""
    if type(fct) is _Unbound:
        return getattr(fct.__func__, "__wrapped__", fct)
    if fct is _unbound.get(_files.tracked_open):  # type: ignore[call-overload]
        return _files._c_open
    return fct


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap ``Patcher._is_fs_function``, pyfakefs' test of a function it fakes."""
    cls = getattr(module, "Patcher", None)
    is_fs = vars(cls).get("_is_fs_function") if isinstance(cls, type) else None
    if is_fs is None:
        return

    def _is_fs_function(self: Any, fct: Any) -> bool:
        return bool(is_fs(self, original(fct)))

    patches.set(cls, "_is_fs_function", _is_fs_function)
