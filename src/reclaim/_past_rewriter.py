"""reclaim's modules load from their bytecode under pytest too, never compiled again from source.

pytest marks every top-level package of a distribution that registers a plugin for
assertion rewriting (reclaim registers ``pytest --reclaim``), so each reclaim module imported
afterwards went through pytest's import hook: read, parsed, rewritten and compiled from
source. Where pytest cannot keep its rewritten bytecode (``PYTHONDONTWRITEBYTECODE``, as
many container images set it, or a read-only site-packages) that was paid in every session:
31 modules with ``--reclaim`` (6 without), about 0.35 s of a 1.6 s pytest start on a 2-core
machine. reclaim has no asserts for pytest to rewrite (it says so with pytest's
``PYTEST_DONT_REWRITE`` in its package docstring), so a finder of its own, put just ahead of
pytest's hook, finds reclaim's submodules as the standard path finder does, with their
bytecode, and nothing else: every other module, tests and conftests and the other plugins,
goes to pytest's hook as before.

Installed as ``import reclaim`` imports it (first of its modules), where it imports nothing:
the path finder is imported only once pytest's hook (which imported it) is there.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

__all__ = ["install"]

#: Submodules of this package (``reclaim.``) are the finder's, no other name.
_PREFIX = __name__.rpartition(".")[0] + "."
#: The class of pytest's assertion-rewriting import hook, by its module.
_PYTEST_HOOK = "_pytest.assertion.rewrite"


class _OwnModules:
    """A meta path finder for reclaim's submodules only: the standard path finder's spec."""

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if path is None or not name.startswith(_PREFIX):
            return None
        from importlib.machinery import PathFinder  # loaded: pytest's hook imported it

        return PathFinder.find_spec(name, path, target)


_FINDER = _OwnModules()


def install() -> None:
    """Put the finder just ahead of pytest's first assertion-rewriting hook, if there is one.

    Called when reclaim is imported and again when its pytest plugin loads (reclaim may have
    been imported before pytest, as under ``reclaim run -m pytest``). Each pytest session
    (pytester's in-process runs too) puts its own hook first, so the finder moves ahead of
    the newest one; a session that removes its hook leaves the finder, which then only
    answers as the standard path finder would.
    """
    meta = sys.meta_path
    for index, finder in enumerate(meta):
        if finder is _FINDER:
            return  # ahead of every pytest hook already
        if type(finder).__module__ == _PYTEST_HOOK:
            if _FINDER in meta:
                meta.remove(_FINDER)
            meta.insert(index, _FINDER)
            return


install()
