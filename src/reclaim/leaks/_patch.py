"""Set attributes on modules and classes, and put them back exactly."""

from __future__ import annotations

from typing import Any

__all__ = ["Patches"]

_MISSING: Any = object()


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
