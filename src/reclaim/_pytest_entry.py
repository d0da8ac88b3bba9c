"""What installing reclaim registers with pytest (entry point ``reclaim``): it loads the plugin.

The plugin itself is :mod:`reclaim.pytest_plugin`, registered under that, its module's name,
by this module's hook as pytest registers this one. So every way of naming it works and
loads it once: installed and left alone, ``-p reclaim`` (with autoloading off), and
``-p reclaim.pytest_plugin`` or ``pytest_plugins = ["reclaim.pytest_plugin"]`` (each found
registered already, where an entry point naming the plugin module itself made pytest refuse
the second name with "Plugin already registered under a different name"). ``-p no:reclaim``
blocks this module, and so the plugin; ``-p no:reclaim.pytest_plugin`` blocks the plugin.

PYTEST_DONT_REWRITE, as in the plugin's module: nothing here for pytest to rewrite, and a
second session in the process finds this module imported already.
"""

from __future__ import annotations

import sys
from typing import Any

from . import _past_rewriter

__all__ = ["PLUGIN", "pytest_plugin_registered"]

#: The plugin's module, and the name it is registered under.
PLUGIN = "reclaim.pytest_plugin"


def pytest_plugin_registered(plugin: object, manager: Any) -> None:
    """pytest registered *plugin*: when it is this module, load the plugin (once)."""
    if plugin is sys.modules[__name__] and manager.get_plugin(PLUGIN) is None:
        _past_rewriter.install()  # reclaim may have been imported before pytest's hook was there
        manager.import_plugin(PLUGIN)  # a no-op when blocked (-p no:reclaim.pytest_plugin)
