"""Rules that allow a leak on purpose: a kind (or several, or any) and a regular expression.

One rule type for every place a user allows leaks: pytest's ``reclaim_allow`` marker
(``kind=``, ``match=``), the ``reclaim_allow`` ini option and ``reclaim run --allow``
(both ``KIND:REGEX``). A rule is a callable ``leak -> bool``, so it is what a tracker's
``leaks(ignore=...)`` takes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from ._report import Leak

__all__ = ["AllowRule", "allow_rule", "parse_allow"]


class AllowRule:
    """Allows a leak of one of *kinds* (None: any) whose description or site *pattern* matches.

    A plain class: ``reclaim run --allow`` makes one before the program starts, and a
    dataclass would import dataclasses and inspect then.
    """

    __slots__ = ("kinds", "pattern")

    def __init__(self, kinds: frozenset[str] | None, pattern: re.Pattern[str] | None) -> None:
        self.kinds = kinds
        self.pattern = pattern

    def __repr__(self) -> str:
        return f"AllowRule(kinds={self.kinds!r}, pattern={self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AllowRule):
            return NotImplemented
        return (self.kinds, self.pattern) == (other.kinds, other.pattern)

    def __hash__(self) -> int:
        return hash((self.kinds, self.pattern))

    def __call__(self, leak: Leak) -> bool:
        if self.kinds is not None and leak.kind not in self.kinds:
            return False
        if self.pattern is None:
            return True
        site = str(leak.site) if leak.site is not None else ""
        return bool(self.pattern.search(leak.description) or self.pattern.search(site))


def allow_rule(kind: object, match: object, where: str) -> AllowRule:
    """The rule for *kind* (None, a kind name or an iterable of names) and *match* (None or a
    regular expression); *where* names the option in the errors.

    Raises:
        TypeError: *kind* or *match* has the wrong type.
        ValueError: an unknown kind (it would allow nothing, silently) or a bad expression.
    """
    from . import KINDS  # the package's list of every kind (loaded by now: this module is not)

    kinds: frozenset[str] | None
    if kind is None:
        kinds = None
    elif isinstance(kind, str):
        kinds = frozenset([kind])
    elif isinstance(kind, Iterable) and all(isinstance(k, str) for k in kind):
        kinds = frozenset(kind)
    else:
        raise TypeError(f"{where}: kind must be a str or a tuple of str, got {kind!r}")
    for name in sorted(kinds or ()):
        if name not in KINDS:
            raise ValueError(f"{where}: unknown kind {name!r}; kinds: {', '.join(KINDS)}")
    if match is not None and not isinstance(match, str):
        raise TypeError(f"{where}: match must be a regular expression str, got {match!r}")
    try:
        pattern = re.compile(match) if match is not None else None
    except re.error as exc:
        raise ValueError(f"{where}: match={match!r} is not a valid regular expression: {exc}") from None
    return AllowRule(kinds, pattern)


def parse_allow(spec: str, where: str) -> AllowRule:
    """The rule ``KIND:REGEX`` spells: KIND a kind, several joined by commas, or ``*`` for any.

    Raises:
        ValueError: no ``:``, an unknown kind, or a bad expression (the message names *where*).
    """
    kind, colon, match = spec.partition(":")
    kind, match = kind.strip(), match.strip()
    if not colon or not kind:
        raise ValueError(
            f"{where}: {spec!r} is not KIND:REGEX (e.g. 'thread:heartbeat', or '*:regex' for any kind)"
        )
    kinds = None if kind == "*" else [k.strip() for k in kind.split(",") if k.strip()]
    return allow_rule(kinds, match or None, where)
