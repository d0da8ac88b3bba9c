"""``mmap`` objects never closed (Python never warns about them, 3.11-3.13).

``mmap.mmap`` is a C type whose constructor gives no audit event with the
object, so while tracking ``mmap.mmap`` is replaced by a subclass (named
``mmap``) that records the acquisition in ``__init__`` and, in ``__del__``,
notices a map the garbage collector is about to unmap. The cost: a map created
*before* tracking started is not an instance of the subclass, so
``isinstance(old_map, mmap.mmap)`` is False while tracking runs.

``numpy.memmap`` (and ``numpy.load(mmap_mode=...)``, which makes one) has no
close: its map is released by dropping the array and its views, as numpy's
documentation says (``del mm``). Nor has Pillow's: ``ImageFile.load()`` maps an
uncompressed image file for its pixels, and ``Image.close()`` releases the map by
dropping it (it closes maps only on Windows and PyPy), so a test that closed its
image was told it left its map to the collector (70 of Pillow's tests). A map
either made is therefore released when it dies of its last reference; one still
alive at the check is reported as any other. So is astropy.io.fits's: ``_File.close()``
closes its map only when no array of the file's data is a view of it, and drops it
otherwise, as the views keep it (725 of its tests failed for a ``with fits.open(...)``
block). And so is any map whose ``close()`` was refused because a view of it was still
alive (``BufferError``): the program closed it as far as it could, and the views' end
releases it. Any other map dropped unclosed is still the collector's.
"""

from __future__ import annotations

import sys
from types import FrameType, ModuleType

from . import _fds, _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch


def _is_open(obj: Any, rec: Record) -> bool:
    return not obj.closed


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    length, fileno, path, _ = rec.info
    details: Details = {"length": length, "fileno": fileno, "path": path}
    what = f"{path}" if path else "anonymous"
    return f"{what}, {length} bytes", details


def _paths(obj: Any, rec: Record) -> tuple[str, ...]:
    # The map holds a duplicate of the file's descriptor; it is the map's, not untracked.
    path = rec.info[2]
    return (path,) if path else ()


register(Kind("mmap", is_open=_is_open, describe=_describe, paths=_paths))


#: ``(module, function)`` of the callers of ``mmap()`` whose map has no close: dropping what
#: holds it is its release. numpy's ``memmap.__new__`` (numpy 2, 1), Pillow's ``ImageFile.load``
#: and astropy.io.fits's ``_File.readarray``.
DROPPED_TO_RELEASE = frozenset(
    {
        ("numpy._core.memmap", "__new__"),
        ("numpy.core.memmap", "__new__"),
        ("PIL.ImageFile", "load"),
        ("astropy.io.fits.file", "readarray"),
    }
)


def _dropped_to_release(frame: FrameType) -> bool:
    """Whether *frame*, the caller of ``mmap()``, makes a map that dropping releases."""
    return (frame.f_globals.get("__name__"), frame.f_code.co_name) in DROPPED_TO_RELEASE


def install(patches: Patches, mmap: ModuleType) -> None:
    """Swap ``mmap.mmap`` for a recording subclass."""
    base = mmap.mmap

    class TrackedMmap(base):  # type: ignore[valid-type,misc]
        # Recorded in __new__, where mmap takes its arguments: a subclass's __new__ may call
        # ours with arguments its own __init__ is never given (CPython's test_mmap).
        def __new__(cls, *args: Any, **kwargs: Any) -> Any:
            self = base.__new__(cls, *args, **kwargs)
            fileno = args[0] if args else kwargs.get("fileno", -1)
            path = _fds.describe_fd(fileno) if fileno != -1 else None
            caller = sys._getframe(1)
            site = _records.capture(caller, _records.depth)
            _records.new(self, "mmap", (len(self), fileno, path, _dropped_to_release(caller)), site)
            return self

        def close(self) -> None:
            try:
                base.close(self)
            except BufferError:  # a view of it is alive: that view's end releases it
                rec = _records.live.get(id(self))
                if rec is not None and rec.kind == "mmap" and rec() is self:
                    rec.info = (*rec.info[:3], True)
                raise

        def __repr__(self) -> str:
            # mmap's repr names the C type's tp_name, "mmap.mmap"; this class's is "mmap".
            text: str = base.__repr__(self)
            if type(self) is TrackedMmap and text.startswith("<mmap "):
                text = "<mmap.mmap " + text[6:]
            return text

        def __del__(self) -> None:
            rec = _records.live.get(id(self))
            if rec is not None and rec.state == OPEN and rec.kind == "mmap" and not self.closed:
                if rec.info[3]:  # a numpy.memmap's or a Pillow image's: dropping it is its release
                    _records.release(id(self))
                else:
                    _records.leak(rec, _records.COLLECTED)

    TrackedMmap.__name__ = TrackedMmap.__qualname__ = "mmap"
    TrackedMmap.__module__ = "mmap"
    patches.set(mmap, "mmap", TrackedMmap)
