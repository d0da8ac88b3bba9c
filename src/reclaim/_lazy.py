"""Names a package binds on first use (PEP 562): ``reclaim``'s and ``reclaim.leaks``' exports.

A package lists ``name -> submodule`` and calls :func:`exports`; the module-level
``__getattr__`` it gets back imports the submodule the first time a name is looked up and
binds the name in the package, so the next lookup is a plain global.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Set


def exports(
    package: str,
    namespace: dict[str, object],
    lazy: Mapping[str, str],
    submodules: Set[str] = frozenset(),
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for *package*, whose globals are *namespace*: each name of
    *lazy* comes from its submodule, each of *submodules* is ``package.<name>`` itself."""

    def load(name: str) -> object:
        import importlib  # already imported by the interpreter: costs a dict lookup

        if name in submodules:
            return importlib.import_module(f"{package}.{name}")
        module = lazy.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def names() -> list[str]:
        return sorted({*namespace, *lazy, *submodules})

    return load, names
