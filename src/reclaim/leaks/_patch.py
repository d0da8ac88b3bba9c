"""Set attributes on modules and classes, and put them back exactly.

A replacement stands in for what it replaced, so it is presented as it (see
``_present_as``), and a failure passes through it unchanged. The modules that define
replacements set ``__tracebackhide__``, so pytest leaves their frames out of a failing
test's traceback (a failed ``open()`` showed all of ``tracked_open``); ``reclaim run``
drops them from the tip of the tracebacks it prints.
"""

from __future__ import annotations

from types import FunctionType, ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Patches", "own_methods"]

_MISSING: Any = object()


def own_methods(module: ModuleType, class_name: str, *names: str) -> tuple[Any, list[Any]] | None:
    """The class *class_name* of *module* and the functions *names* its own body defines, or
    None when it lacks any: a library laid out otherwise than the hooks were written for, which
    they then leave as it is."""
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return None
    methods = [vars(cls).get(name) for name in names]
    return None if None in methods else (cls, methods)


def _present_as(fn: FunctionType, owner: Any, name: str, original: Any) -> None:
    """Give a replacement function the identity of what it replaced, as ``functools.wraps`` does.

    So the program sees what it would see without reclaim: ``pickle`` stores it by reference
    (``executor.submit(tempfile.mkdtemp)`` to a process pool), ``inspect.signature()`` and
    ``help()`` describe the original, and its repr and ``__name__`` are the original's. The
    first owner it is set on names it (``open`` is set on builtins, then io).
    """
    if not fn.__module__.startswith("reclaim."):
        return  # presented already, as set on an earlier owner
    if isinstance(owner, ModuleType):
        fn.__module__, fn.__qualname__ = owner.__name__, name
    elif isinstance(owner, type):
        fn.__module__, fn.__qualname__ = owner.__module__, f"{owner.__qualname__}.{name}"
    else:
        return
    fn.__name__ = name
    if original is not _MISSING and callable(original):
        doc = getattr(original, "__doc__", None)
        if isinstance(doc, str):
            fn.__doc__ = doc
        fn.__wrapped__ = original  # type: ignore[attr-defined]


class Patches:
    """A list of attribute replacements that can be undone in reverse order.

    Undo leaves an attribute alone when someone else replaced it after us
    (``monkeypatch``, another tool): restoring ours would silently drop theirs.
    """

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> Any:
        """Replace ``owner.name`` with *value*; return what was there."""
        if isinstance(owner, type):
            # Only what the class itself defines: an inherited attribute is restored by deleting.
            original = owner.__dict__.get(name, _MISSING)
        else:
            original = getattr(owner, name, _MISSING)
        if type(value) is FunctionType:
            _present_as(value, owner, name, original)
        setattr(owner, name, value)
        self._done.append((owner, name, original, value))
        return original

    def undo(self) -> None:
        """Put every replaced attribute back, newest first."""
        while self._done:
            owner, name, original, value = self._done.pop()
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
            if current is not value:
                continue
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
