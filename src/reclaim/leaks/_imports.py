"""Run a function when a module is imported, without importing it ourselves.

Instrumenting asyncio, sqlite3, subprocess, tempfile or mmap must not import
them: ``reclaim run`` would pay asyncio's import for every program, and the
import benchmark would measure our imports rather than the program's. Modules
already imported are patched at once; the others when they finish executing,
through a finder on ``sys.meta_path`` that answers only for those names (every
other import pays one dict lookup).

A callback stays registered until :func:`cancel_all`: a module dropped from
``sys.modules`` and imported again (pytest's pytester does that to what a test
imported, so do test isolation tools) is a new module with new classes, which
are patched too; an import found in ``sys.modules`` never reaches the finder.
``importlib.reload()`` runs a module again in the same module object, whose
extension types may be the ones already patched: it is not patched twice.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
import weakref
from collections.abc import Callable
from importlib.machinery import ModuleSpec
from types import ModuleType

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._patch import Patches

__all__ = ["cancel_all", "install_pytest_rewrite", "when_imported"]

_pending: dict[str, list[Callable[[ModuleType], None]]] = {}

#: The start of the ``sys.modules`` key under which eventlet keeps its unpatched copy of a
#: module (``eventlet.patcher.original("socket")``, imported anew under its own name, then
#: moved there). One imported before tracking started (eventlet imported by an initial
#: conftest: its own suite) gets the callbacks as the module does: its green sockets, made
#: from that copy's class, were untracked descriptors with no line, or went unseen. A copy
#: made later is imported under the module's name, and seen then.
_ORIGINAL = "__original_module_"
_busy: set[str] = set()
_lock = threading.Lock()
#: The module objects the callbacks ran on (a reload runs the same one again).
_done: weakref.WeakSet[ModuleType] = weakref.WeakSet()


class _Loader:
    """Runs the real loader, then the callbacks; puts the real loader back on the module."""

    def __init__(self, real: Any, name: str) -> None:
        self._real = real
        self._name = name

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._real.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        spec = module.__spec__
        if spec is not None:
            spec.loader = self._real
        module.__loader__ = self._real
        self._real.exec_module(module)
        _loaded(module, self._name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def _loaded(module: ModuleType, name: str) -> None:
    """*module*, imported as *name*, has run: its callbacks run now, once per module object."""
    with _lock:
        if module in _done:
            return
        _done.add(module)
        callbacks = list(_pending.get(name, ()))
    for callback in callbacks:
        callback(module)


def install_pytest_rewrite(patches: Patches, rewrite: ModuleType) -> None:
    """Run the callbacks of the modules pytest's assertion rewriter loads itself.

    pytest puts its ``AssertionRewritingHook`` first on ``sys.meta_path`` (ahead of the finder
    here under ``reclaim run -m pytest``, which started tracking before) and loads every module
    of a package that ships a pytest plugin, anyio's included, with no other finder asked:
    their integrations never ran (anyio's runner task, cancelled at shutdown by design, was
    reported leaked). Each module it runs is looked up in the names waited for, once.
    """
    hook = getattr(rewrite, "AssertionRewritingHook", None)
    exec_module = vars(hook).get("exec_module") if isinstance(hook, type) else None
    if exec_module is None:  # pytest laid out otherwise: as before, its modules are not seen
        return

    def exec_module_(self: Any, module: ModuleType) -> None:
        exec_module(self, module)
        name = module.__name__
        if name in _pending:
            _loaded(module, name)

    exec_module_.__doc__ = exec_module.__doc__
    patches.set(hook, "exec_module", exec_module_)


class _Finder:
    """A ``sys.meta_path`` entry that wraps the loader of the modules we wait for."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if fullname not in _pending or fullname in _busy:
            return None
        _busy.add(fullname)
        try:
            spec = importlib.util.find_spec(fullname)
        except (ImportError, ValueError):
            return None  # let the import system report it as it would without us
        finally:
            _busy.discard(fullname)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        spec.loader = _Loader(spec.loader, fullname)  # type: ignore[assignment]
        return spec


_finder = _Finder()


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` now if *name* is imported, and each time it is imported anew."""
    with _lock:
        _pending.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
    for key in (name, _ORIGINAL + name):
        module = sys.modules.get(key)
        if (
            isinstance(module, ModuleType)
            and getattr(module.__spec__, "_initializing", False) is False
            and (key == name or module.__name__ == name)
        ):
            with _lock:
                _done.add(module)
            callback(module)


def cancel_all() -> None:
    """Forget every pending callback and leave ``sys.meta_path`` as it was."""
    with _lock:
        _pending.clear()
        _done.clear()
        if _finder in sys.meta_path:
            sys.meta_path.remove(_finder)
