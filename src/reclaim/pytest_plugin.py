"""pytest plugin: ``pytest --reclaim`` fails the test that leaked, showing where it acquired it.

Turn it on with ``pytest --reclaim`` or in the ini file::

    [tool.pytest.ini_options]
    reclaim = true          # --no-reclaim turns it off for one run
    reclaim_grace = 1.0     # seconds to wait for threads/children still finishing
    reclaim_collect = true  # gc.collect() after a test that left something open
    reclaim_ignore_kinds = ["untracked-fd"]  # kinds never reported
    reclaim_allow = ["sqlite3: memorydb_"]  # KIND:REGEX lines allowed in every test and fixture
    reclaim_depth = 8       # frames per stack; unset, files keep 2 (each costs on every open())

Every resource acquired while a test's setup, call or teardown runs -- its
function-scoped fixtures included -- is stamped with the test's node id.
After the test's teardown the plugin looks at what the test acquired; when
something is left it collects garbage (so what a reference cycle holds is
closed, and warns, now rather than during a later test) and waits a little,
with back-off, for threads and children that are winding down. It fails the
test's teardown with the report when anything the test acquired is still
open or was closed by the garbage collector. A clean test costs one lookup. Wider-scoped
fixtures get their own label, so their resources are never blamed on the test
that first used them; they are checked at the end of the session. Whatever
shows only after its test ended (a session fixture's file, a socket opened at
import time) is reported against the test or fixture that acquired it, in a
"reclaim" summary section, and the session fails: nothing is lost. What the interpreter
closes after the session (a ``logging`` handler's file or socket, what an ``atexit`` handler registered
during the run or a ``weakref.finalize`` still waiting closes) is not a leak, as ``reclaim run``
counts it. With pytest-xdist
each worker tracks its own tests and sends its session-end findings to the
controller. In junit XML (``--junitxml``) a leaking test carries its leaks as JSON in a
``reclaim_leaks`` property; ``--reclaim-json PATH`` writes every leak of the run (each
with the ``context`` that acquired it) in the ``reclaim.leaks/1`` layout.

Allow a leak on purpose with a marker::

    @pytest.mark.reclaim_allow(kind="thread", match="heartbeat")
    def test_starts_background_heartbeat(): ...

``kind`` is a kind name or a tuple of them; ``match`` is a regular expression
searched in the leak's description and its acquisition site; without
arguments every leak of the test is allowed.

PYTEST_DONT_REWRITE: a second session in the process (pytester's in-process runs) imports
this module again, found loaded already, with its bytecode, by the first one (see
``_past_rewriter``); without the marker, pytest warned that it could not rewrite it, an error
under ``-W error``.
"""

from __future__ import annotations

import _io
import collections
import contextlib
import dataclasses
import fnmatch
import functools
import gc
import itertools
import json
import os
import re
import sys
import threading
import time
import traceback
import types
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from . import _past_rewriter

if TYPE_CHECKING:
    from pathlib import Path

    from .leaks import Leak, Tracker
    from .leaks._allow import AllowRule

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time
_monotonic = time.monotonic

__all__ = ["LeakChecker", "LeakCheckerStatistics"]

# reclaim may have been imported before pytest's hook was there (``reclaim run -m pytest``): the
# modules this plugin imports later (an integration, as its library is imported) skip it too.
_past_rewriter.install()

_sessions = itertools.count(1)
_STASH_LEAKS = pytest.StashKey[list["Leak"]]()
#: The failure a test's teardown raised for its leaks (see pytest_runtest_makereport).
_STASH_FAILURE = pytest.StashKey[BaseException]()
#: Set when pytest keeps a test's failure (``sys.last_value``) from its call: see _failure_holders.
_STASH_FAILED = pytest.StashKey[bool]()
#: What pytest's unraisable-exception check raised for a leaking test's check (see
#: _collect_unraisable): reported in the leak failure, not as an error through reclaim's frames.
_STASH_UNRAISABLE = pytest.StashKey[BaseException]()
_MARKER_HELP = (
    "reclaim_allow(kind=None, match=None): allow leaks of this kind (a name or a tuple of "
    "names) whose description or acquisition site matches this regular expression; "
    "without arguments, allow every leak of the test"
)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--reclaim`` / ``--no-reclaim`` and the ``reclaim*`` ini options."""
    group = parser.getgroup("reclaim", "reclaim leak detection")
    group.addoption(
        "--reclaim",
        action="store_true",
        default=None,
        dest="reclaim",
        help="fail tests that leak files, sockets, threads, processes, connections...",
    )
    group.addoption(
        "--no-reclaim",
        action="store_false",
        dest="reclaim",
        help="do not check for leaks, even when the ini file says reclaim = true",
    )
    group.addoption(
        "--reclaim-json",
        dest="reclaim_json",
        metavar="PATH",
        default=None,
        help="also write every leak found (with the test or fixture that acquired it) as JSON",
    )
    parser.addini("reclaim", type="bool", default=False, help="check every test for leaks")
    parser.addini(
        "reclaim_grace",
        default="1.0",
        help="seconds to wait (with back-off, only when something is left) for threads and "
        "children still finishing at the end of a test",
    )
    parser.addini(
        "reclaim_collect",
        type="bool",
        default=True,
        help="run gc.collect() after a test that left something open, so resources held by "
        "reference cycles are closed (and warn) during that test, not a later one",
    )
    parser.addini(
        "reclaim_depth",
        default="",
        help="frames recorded and shown per acquisition stack (default 8; files keep 2 unless "
        "this is set, as each frame costs on every open())",
    )
    parser.addini(
        "reclaim_allow",
        type="linelist",
        default=[],
        help="leaks allowed in every test and fixture, one KIND:REGEX per line (KIND a kind, "
        "several joined by commas, or * for any; REGEX searched in the description and the site)",
    )
    parser.addini(
        "reclaim_ignore_kinds",
        type="linelist",
        default=[],
        help="leak kinds never reported (one per line), e.g. untracked-fd",
    )


#: The exit handlers recorded from before the other plugins' early hooks (see below).
_EARLY_EXIT_HANDLERS = pytest.StashKey["_ExitHandlers"]()


@dataclass
class _EarlyTracking:
    """The session's tracker, started before the first conftests are imported (see below)."""

    tracker: Any
    number: int  # the session's (see LeakChecker.session_label)
    previous_context: str | None


_EARLY_TRACKING = pytest.StashKey[_EarlyTracking]()


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config) -> Generator[None, object, object]:
    """With ``--reclaim`` (or ``reclaim = true``), record the ``atexit`` handlers from before the
    other plugins' earliest hook: pytest-cov starts coverage there, and what coverage's exit
    handler closes (the data files of its report) was a leak at the session's end."""
    if _enabled(early_config, getattr(early_config.known_args_namespace, "reclaim", None)):
        handlers = _ExitHandlers()
        handlers.start()
        early_config.stash[_EARLY_EXIT_HANDLERS] = handlers
    try:
        return (yield)
    finally:
        early = early_config.stash.get(_EARLY_TRACKING, None)
        if early is not None:
            # The first conftests are imported. What plugins and conftests acquire from here to
            # the session's start (their pytest_configure) is theirs, left to them as before.
            from .leaks import set_context

            set_context(_configuring_label(early.number))


@pytest.hookimpl(specname="pytest_load_initial_conftests", tryfirst=True)
def pytest_load_initial_conftests_tracked(early_config: pytest.Config) -> None:
    """With ``--reclaim``, start tracking as pytest imports the conftests of the rootdir and of
    the paths given: what their import opened (dramatiq's ``tests/conftest.py``, through a
    module that connects to RabbitMQ at import) went unseen, while what a conftest further down,
    imported during collection, opened was reported. After the other plugins' wrappers of this
    hook set up (pytest's capture duplicates the standard descriptors there)."""
    if early_config.stash.get(_EARLY_EXIT_HANDLERS, None) is not None:
        early = _start_early(early_config)
        if early is not None:
            early_config.stash[_EARLY_TRACKING] = early


def _start_early(config: pytest.Config) -> _EarlyTracking | None:
    """Start the session's tracker, labelled as the session; None when the ini asks for a depth
    that is no number (the checker reports that as pytest configures it)."""
    from .leaks import Tracker, _records, set_context

    try:
        depth_given, depth = _depth_of(config)
    except pytest.UsageError:
        return None
    if depth_given:
        _records.ask_file_depth(depth)
    number = next(_sessions)
    tracker = Tracker(depth=depth)
    tracker.start()
    _mark_launchers(sys._getframe())  # a pytest-xdist worker's bootstrap, before what it runs
    return _EarlyTracking(tracker, number, set_context(_session_label(number)))


def _stop_early(early: _EarlyTracking, config: pytest.Config) -> None:
    """Stop the tracker :func:`_start_early` started, no checker having taken it over."""
    from .leaks import _records, set_context

    early.tracker.stop()
    set_context(early.previous_context)
    depth_given, depth = _depth_of(config)
    if depth_given:
        _records.unask_file_depth(depth)


def _depth_of(config: pytest.Config) -> tuple[bool, int]:
    """(given in the ini or with ``-o``, the depth of the stacks kept): by default 8, and files
    keep two frames."""
    given = bool(str(config.getini("reclaim_depth")).strip())
    return given, max(1, _ini_number(config, "reclaim_depth", int)) if given else 8


def _session_label(number: int) -> str:
    """The label of what the session's plugins and collection acquire, the *number*-th session
    in this process (a pytester session nested in it gets a label of its own)."""
    nested = f" #{number}" if number > 1 else ""
    return f"pytest session (pid {os.getpid()}{nested}): collection and plugins"


def _configuring_label(number: int) -> str:
    """The label of what is acquired while pytest configures session *number*, after its first
    conftests were imported (see :func:`_as_before_configure`)."""
    return f"{_session_label(number)}, configuring"


def _as_before_configure(tracker: Any, configuring: str) -> None:
    """Forget what was acquired under *configuring*, as the session starts: plugins' and
    conftests' ``pytest_configure`` stay untracked, as they were when tracking started with the
    session (an engine made there and kept on the config holds what tests leave in its pool,
    reported as held by the config; a thread started there is the session's, see
    _started_before). The descriptors open now are the session's baseline, as they were then:
    only what the first conftests' import opened, and tracking saw, is added to it."""
    from .leaks import _files, _records, _tracker

    for rec in list(_records.live.values()):
        if rec.context == configuring and rec.state == _records.OPEN:
            _records.release(rec.key)
    for ref in list(_files.table):
        raw = ref()
        facts = _files.facts_of(raw) if raw is not None else None
        if facts is not None and _files.label_of(facts) == configuring:
            _files.forget(raw)
    start, now = tracker._start, _tracker._take_snapshot()
    if start is not None:
        tracker._start = _tracker.Snapshot(start.seq, start.time, now.fds, now.fd_ids)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop recording exit handlers, and tracking, should no checker have taken them over (a
    usage error)."""
    early = config.stash.get(_EARLY_EXIT_HANDLERS, None)
    if early is not None:
        early.stop()
    tracking = config.stash.get(_EARLY_TRACKING, None)
    if tracking is not None:
        del config.stash[_EARLY_TRACKING]
        _stop_early(tracking, config)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register the marker; start the checker when ``--reclaim`` or ``reclaim = true`` says so.

    First, so that it sees the ``atexit`` handlers the other plugins' and conftests'
    ``pytest_configure`` register (a run's temp directory, removed at exit: see _ExitHandlers)."""
    config.addinivalue_line("markers", _MARKER_HELP)
    if _enabled(config, config.getoption("reclaim")):
        config.pluginmanager.register(LeakChecker(config), "reclaim-leak-checker")


def _enabled(config: pytest.Config, given: object) -> bool:
    """Whether the checker runs: ``--reclaim`` or ``--no-reclaim`` as *given*, else the ini's
    ``reclaim``."""
    if given is not None:
        return bool(given)
    try:
        return bool(config.getini("reclaim"))
    except ValueError:  # early, before pytest knows the ini option
        return False


def _json_destination(config: pytest.Config) -> str | None:
    """The absolute ``--reclaim-json`` path, checked before any test runs (as ``reclaim run --json``
    does): a bad one found only when the run ends would lose the whole run's report."""
    path = config.getoption("reclaim_json")
    if path is None:
        return None
    from ._exitreport import json_path_problem

    full = os.path.join(str(config.invocation_params.dir), path)  # a test may chdir
    problem = json_path_problem(path, full)
    if problem is not None:
        raise pytest.UsageError(f"--reclaim-json: {problem}")
    return full


def _ini_number(config: pytest.Config, name: str, convert: type[float] | type[int]) -> Any:
    raw = config.getini(name)
    try:
        value = convert(raw)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"ini option {name}: expected a number, got {raw!r}") from None
    if not value >= 0:  # NaN too
        raise pytest.UsageError(f"ini option {name}: must be >= 0, got {raw!r}")
    if value == float("inf"):
        raise pytest.UsageError(f"ini option {name}: must be finite, got {raw!r}")
    return value


def _ini_kinds(config: pytest.Config) -> tuple[str, ...]:
    from .leaks import KINDS

    kinds = tuple(str(k) for k in config.getini("reclaim_ignore_kinds"))
    for kind in kinds:
        if kind not in KINDS:
            raise pytest.UsageError(
                f"ini option reclaim_ignore_kinds: unknown kind {kind!r}; kinds: {', '.join(KINDS)}"
            )
    return kinds


def _allow_rules(item: pytest.Item | pytest.Collector) -> list[AllowRule]:
    from .leaks._allow import allow_rule  # imported late, as in _ini_kinds (the plugin loads first)

    rules = []
    for mark in item.iter_markers("reclaim_allow"):
        if mark.args:
            raise TypeError("reclaim_allow takes keyword arguments only: kind=..., match=...")
        unknown = sorted(set(mark.kwargs) - {"kind", "match"})
        if unknown:
            raise TypeError(f"reclaim_allow: unknown argument {unknown[0]!r}; use kind= and match=")
        rules.append(allow_rule(mark.kwargs.get("kind"), mark.kwargs.get("match"), "reclaim_allow"))
    return rules


#: The prefixes of the names pytest gives the fixtures it makes for xunit-style setups -> what
#: the label names instead: ``TestDownload.setUpClass``, not pytest's internal
#: ``_unittest_setUpClass_fixture_TestDownload``.
_XUNIT_FIXTURES = (
    ("_unittest_setUpClass_fixture_", "{}.setUpClass"),
    ("_xunit_setup_class_fixture_", "{}.setup_class"),
    ("_xunit_setup_module_fixture_", "{}.setup_module"),
)


def _fixture_name(argname: str) -> str:
    """*argname* as a label shows it: the setup a pytest-made xunit fixture runs, by its name."""
    for prefix, shown in _XUNIT_FIXTURES:
        if argname.startswith(prefix):
            return shown.format(argname[len(prefix) :])
    return argname


def _is_pytest_djangos_database_setup(fixturedef: pytest.FixtureDef[Any]) -> bool:
    """Whether *fixturedef* is pytest-django's own ``django_db_setup`` (not a conftest's)."""
    func = getattr(fixturedef, "func", None)
    return (
        fixturedef.argname == "django_db_setup"
        and getattr(func, "__module__", "") == "pytest_django.fixtures"
    )


def _tool_files(config: pytest.Config) -> frozenset[str]:
    """The files of the plugins pytest loaded that are not the program's (installed ones, as
    pytest-rerunfailures), and of execnet (pytest-xdist's): what their threads run is a test
    tool's (see ``_tracker.TOOL_FILES``)."""
    from . import _sites

    files = set()
    for plugin in config.pluginmanager.get_plugins():
        filename = getattr(plugin, "__file__", None) if isinstance(plugin, types.ModuleType) else None
        if isinstance(filename, str) and not _sites.is_program(filename):
            files.add(filename)
    # pytest-xdist's worker talks to its controller through execnet, whose thread runs for the
    # whole session: a tool's as well (every check that found an untracked descriptor waited
    # its whole grace period in every worker).
    for name, module in list(sys.modules.items()):
        filename = _module_file(module) if name == "execnet" or name.startswith("execnet.") else None
        if filename is not None:
            files.add(filename)
    return frozenset(files)


def _is_program_file(filename: str) -> bool:
    from . import _sites  # imported late: the plugin loads before the tracker is wanted

    return _sites.is_program(filename)


def _module_file(module: object) -> str | None:
    """The ``__file__`` of *module*, an entry of ``sys.modules``, if it is a module and has one.

    Not every entry is a module: Pyro5's Pyro4 compatibility layer puts objects there whose
    ``__getattr__`` raises NotImplementedError, which crashed every check and the session's end.
    """
    if not issubclass(type(module), types.ModuleType):  # type(): see _module_holders
        return None
    try:
        filename = getattr(module, "__file__", None)
    except Exception:  # a module's own __getattr__ (PEP 562) raising its own error
        return None
    return filename if isinstance(filename, str) else None


def _set_meanwhile(cls: type, before: dict[str, object]) -> tuple[str, ...]:
    """The names of *cls*'s own attributes set since its dict was *before* (added or rebound),
    its methods left out (not a callable object: ``cls.Session = sessionmaker(engine)`` holds
    the engine): what a class-scoped fixture's setup (a unittest ``setUpClass``, a fixture
    setting ``request.cls.db``) keeps on the class."""
    missing = object()
    methods = (types.FunctionType, types.MethodType, classmethod, staticmethod, property)
    return tuple(
        name
        for name, value in list(vars(cls).items())
        if before.get(name, missing) is not value and not isinstance(value, methods)
    )


def _name_of(module: types.ModuleType, key: str) -> str:
    """*module*'s ``__name__``, read from its dict (no module ``__getattr__`` runs), else *key*."""
    name = vars(module).get("__name__")
    return name if type(name) is str else key


def _own_test_module(path: Path) -> None:
    """The test module at *path* is the program's, wherever it lives.

    ``pytest --pyargs test.test_sqlite3`` runs CPython's own tests from the standard library's
    directory, whose frames are plumbing: what those tests leaked had no program line, and
    nothing was reported. Marked as pytest collects it, before it is imported: a file whose
    frames changed sides during the run would report a leak again at the session's end, its
    frames no longer those it was reported with. So inside an installed package (h5py's tests,
    run with ``--pyargs h5py``): its frames were not the program's, and a report left out the
    line that dropped a test's file ("last reference dropped at").
    """
    from . import _sites

    if _sites.is_framework(str(path)) or not _sites.is_program(str(path)):
        _sites.mark_program(str(path))


def _mark_launchers(frame: types.FrameType | None) -> None:
    """Mark the pseudo-file code under this session (see ``_sites.mark_launcher``) as plumbing.

    A pytest-xdist worker runs under execnet's bootstrap, ``<string>`` code in ``__main__``:
    taken for the program's own ``-c`` code, its line was the site of what only plugins
    acquired (the event loop pytest-asyncio leaves set for the next test), and every test
    that used the loop leaked one, "acquired at <string>:8 in <module>".
    """
    from . import _sites

    while frame is not None:
        if frame.f_code.co_filename[:1] == "<" and not _sites.frame_is_framework(frame):
            _sites.mark_launcher(frame.f_code)
        frame = frame.f_back


def _ini_allow(config: pytest.Config) -> list[AllowRule]:
    """The ``reclaim_allow`` ini lines (``KIND:REGEX``): allowed in every test and fixture."""
    from .leaks._allow import parse_allow

    rules = []
    for line in config.getini("reclaim_allow"):
        try:
            rules.append(parse_allow(str(line), "ini option reclaim_allow"))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return rules


#: Module-level values that hold nothing for the program: code, plain containers and scalars
#: (a test that appends what it leaks to a module's list leaked it all the same), and files
#: (a file a test stores as a module global is its leak, not something a holder keeps). Every
#: one a concrete type: ``issubclass`` against an ABC (``io.IOBase``) hashes the class asked
#: about, which runs its metaclass's ``__hash__``, and a metaclass defining ``__eq__`` makes
#: its classes unhashable: the search crashed on one. Every file class derives from ``_io._IOBase``.
_NOT_HOLDERS = (
    _io._IOBase,
    type,
    types.ModuleType,
    types.FunctionType,
    types.BuiltinFunctionType,
    list,
    dict,
    set,
    frozenset,
    tuple,
    collections.deque,
    str,
    bytes,
    int,
    float,
    type(None),
)


#: Most of what a module of constants keeps, skipped first, before a label is made: _module_holders
#: runs after every test that left something. A subclass check, not a set's lookup: that hashes
#: the type, and a metaclass defining ``__eq__`` makes its classes unhashable (see _NOT_HOLDERS).
_SCALARS = (str, int, float, bytes, type(None))

#: The label of what a module-level object of the program holds (see _module_holders).
MODULE_GLOBAL = "module global "

#: The label of what a class attribute of the program holds (see _module_holders).
CLASS_ATTRIBUTE = "class attribute "


def _module_holders(is_test_file: Callable[[str], bool], first: str | None = None) -> dict[str, object]:
    """``"module global mod.name"`` -> value, for the objects the program's own modules keep.

    In the modules of the program under test (not its test files and conftests), also one
    level down: the values of a module-level dict, list, tuple or deque (``_clients = {}``
    filled by ``get_client(name)``: ``"module global mod._clients['db']"``), and the
    attributes of a class the module defines (``Client._instance``, a singleton kept on its
    class: ``"class attribute mod.Client._instance"``). Each of those is a holder for what it
    holds, never for itself: a file a test appends to a module's list is still its leak. A
    test module's ``KEEP = []``, which tests fill to keep what they leak alive, holds nothing.
    """
    holders: dict[str, object] = {}
    for _, found in _holders_by_module(is_test_file, (first,) if first is not None else ()):
        holders.update(found)
    return holders


def _holders_by_module(
    is_test_file: Callable[[str], bool], first: Sequence[str] = ()
) -> Iterator[tuple[str, dict[str, object]]]:
    """(module key, its holders) for each program module in ``sys.modules`` (see
    _module_holders), the modules *first* names first, in that order; each module's holders
    are listed only when the search comes to it, and not at all once it found what it wanted."""
    imported = _Imported()
    modules = list(sys.modules.items())
    if first:
        # The running test's module first: the search for holders shares one budget, and a
        # large graph kept by a module before it (an ORM's registry) spent it all, so a test's
        # connection its own module's global keeps was that test's leak or not by what else
        # was imported (pony's suite). Then the modules whose objects took something over
        # lately (a framework's current session, set anew by each test's fixture on a class of
        # a package that comes after its 150 submodules in sys.modules: rocketry's).
        front = [(key, sys.modules[key]) for key in dict.fromkeys(first) if key in sys.modules]
        named = {key for key, _ in front}
        modules = [*front, *(entry for entry in modules if entry[0] not in named)]
    for key, module in modules:
        filename = _module_file(module)
        if filename is None or not _is_program_file(filename):
            continue
        found = _holders_of_module(key, module, not is_test_file(filename), imported)
        if found:
            yield key, found


#: Module globals that are the exit machinery's, not what the program keeps for use: billiard's
#: and multiprocess's copies of ``multiprocessing.util._finalizer_registry``, which reaches every
#: pool through its finalizer's arguments. Installed from source (the program, for Celery's
#: developers), it took a pool a test leaked, and the test passed.
_EXIT_REGISTRIES = frozenset({"_finalizer_registry"})

#: How many modules whose objects took something over lately are searched first.
_RECENT_TAKERS = 8

#: Py_TPFLAGS_HAVE_GC: a type without it references nothing the collector sees.
_HAVE_GC = 1 << 14


def _holders_of_module(
    key: str, module: types.ModuleType, program: bool, imported: _Imported
) -> dict[str, object]:
    """The holders of one program module (see _module_holders); *program*: not a test file."""
    holders: dict[str, object] = {}
    # Its own name, or the one it is loaded under when it lost that: loguru's tests take
    # ``__name__`` out of a module's globals, and every check after crashed here.
    prefix = _name_of(module, key)
    for name, value in list(vars(module).items()):
        # type(), never isinstance(): that asks a proxy for its __class__, which sets up
        # what it stands for (Django's LazyObject: its admin site, its storage), running the
        # program's code at a time it did not choose, and crashing the session when it raises.
        kind = type(value)
        if issubclass(kind, _SCALARS) or name.startswith("__") or name in _EXIT_REGISTRIES:
            continue  # most of a module of constants, asked first: this runs per leaking test
        if issubclass(kind, types.FunctionType):
            # A decorator applied at import keeps what it was given in the closure of the
            # function it returns (``@process(pool=ProcessPool(1))``): that object is the
            # module's as a global's would be; so is a default argument. Only the cells and
            # defaults: a function's globals reach
            # the whole module, what a test stored there included. Not a test module's: its
            # test functions' decorators keep what the tests hand them (``@patch``'s mock,
            # whose side effect's traceback keeps the test's frame, and what it opened).
            if not program:
                continue
            value = tuple(_kept_by_function(value))
            if not value:
                continue
        elif issubclass(kind, type):
            if program and vars(value).get("__module__") == prefix:  # defined here, not imported
                _class_holders(value, f"{CLASS_ATTRIBUTE}{prefix}.{name}", holders, _module_file(module))
            continue
        elif issubclass(kind, _CONTAINERS):
            if program:
                _item_holders(value, f"{MODULE_GLOBAL}{prefix}.{name}", holders, _module_file(module))
            continue
        elif (
            not kind.__flags__ & _HAVE_GC  # a sentinel object(), a Decimal: it references nothing
            or issubclass(kind, _NOT_HOLDERS)
            or imported.of_library(name, value, kind)
        ):
            continue
        holders[f"{MODULE_GLOBAL}{prefix}.{name}"] = value
    return holders


class _Imported:
    """Tells a library's object a program module imported by name (``from django.db import
    connections``: Django's connection handler, whatever keeps it) from the program's own: found
    under that name in a module, not the program's, of the package its class comes from. What
    it holds is the library's as it is without the import: the test's leak, not held by a
    "module global" of the program (procrastinate's Django contrib imported it so, and a test's
    Django connection was reported at the end as held by it, its test passing).

    The library modules of each package are listed at the first question, and again only once
    ``sys.modules`` has grown or shrunk: a search runs after every test that left something.
    """

    #: (len(sys.modules) when listed, package -> its modules that are not the program's)
    listed: tuple[int, dict[str, list[types.ModuleType]]] = (-1, {})

    def of_library(self, name: str, value: object, kind: type) -> bool:
        module_name = getattr(kind, "__module__", None)
        if not isinstance(module_name, str):
            return False
        count, by_package = _Imported.listed
        if count != len(sys.modules):
            by_package = {}
            for loaded in list(sys.modules.values()):
                filename = _module_file(loaded)
                if filename is not None and not _is_program_file(filename):
                    package = _name_of(loaded, "").partition(".")[0]
                    by_package.setdefault(package, []).append(loaded)
            _Imported.listed = (len(sys.modules), by_package)
        return any(vars(m).get(name) is value for m in by_package.get(module_name.partition(".")[0], ()))


def _test_files(config: pytest.Config, collected: set[str]) -> Callable[[str], bool]:
    """Whether a file is one of the suite's test modules or conftests, by pytest's own
    ``python_files`` patterns (a pattern with a slash matches the end of the path), or one that
    tests were *collected* from (see LeakChecker.pytest_itemcollected)."""
    patterns = [str(p) for p in config.getini("python_files")]
    names = [p for p in patterns if "/" not in p] + ["conftest.py"]
    paths = [f"*/{p}" for p in patterns if "/" in p]

    def is_test_file(filename: str) -> bool:
        if filename in collected:
            return True
        base = os.path.basename(filename)
        path = filename.replace(os.sep, "/")
        return any(fnmatch.fnmatch(base, p) for p in names) or any(fnmatch.fnmatch(path, p) for p in paths)

    return is_test_file


#: Module-level containers whose items are looked at, one level down (see _module_holders).
_CONTAINERS = (dict, list, tuple, collections.deque)

#: How many items of one container, or attributes of one class, are looked at.
_ITEMS_LOOKED_AT = 1000

#: How many parts of a container's item that is a tuple or a list are looked at.
_PARTS_LOOKED_AT = 8

#: Dict keys shown in a holder's label as they are (their repr runs none of the program's code).
_PLAIN_KEYS = (str, int, bytes, float, bool, type(None))


def _class_holders(cls: type, label: str, holders: dict[str, object], made_in: str | None) -> None:
    """Add the attributes of *cls* that may hold something (a singleton kept on its class), and
    the items of a container it keeps as a module's are (a cache on the class: kombu's
    ``Channel._engines``); *made_in* is the file of the module that defines it.

    Descriptors (methods, properties, slots) are how instances see an attribute, not
    objects the class keeps: they are skipped, as is what _NOT_HOLDERS lists.
    """
    for name, value in itertools.islice(list(vars(cls).items()), _ITEMS_LOOKED_AT):
        kind = type(value)
        if id(kind) in _SKIPPED or name.startswith("__"):
            continue
        if issubclass(kind, _CONTAINERS):
            _item_holders(value, f"{label}.{name}", holders, made_in)
        elif not _skipped(kind):
            holders[f"{label}.{name}"] = value


#: The ids of the types of most class attributes (methods, constants), skipped at a set lookup.
#: Ids, not the types: a type's hash is its metaclass's, the program's code (a metaclass that
#: defines ``__eq__`` makes its classes unhashable).
_SKIPPED = {
    id(kind)
    for kind in (types.FunctionType, str, int, bool, float, type(None), property, classmethod, staticmethod)
}

#: _skipped()'s answers, by id of the type (kept with the answer, so that its id is not reused).
_SKIPPED_KINDS: dict[int, tuple[type, bool]] = {}


def _skipped(kind: type) -> bool:
    """Whether a class attribute of type *kind* holds nothing: one _NOT_HOLDERS lists, one that
    references nothing the collector sees (a sentinel ``object()``), or a descriptor (found in
    the classes' own dicts: no metaclass ``__getattr__`` of the program runs)."""
    known = _SKIPPED_KINDS.get(id(kind))
    if known is None:
        answer = (
            not kind.__flags__ & _HAVE_GC
            or issubclass(kind, _NOT_HOLDERS)
            or any("__get__" in vars(k) for k in kind.__mro__)
        )
        known = _SKIPPED_KINDS[id(kind)] = (kind, answer)
    return known[1]


def _item_holders(container: Any, label: str, holders: dict[str, object], made_in: str | None = None) -> None:
    """Add the items of a module-level container that may hold something, labelled by key.

    An item holds what it holds, not itself: a socket a test appends to a module's list is the
    test's. But a resource the code of the module *made_in* (its file) acquired, and keeps in
    its own cache (``_POOLS[n] = Pool(n)`` in ``get_pool(n)``: pathos' pools), is the cache's,
    as a client it keeps there holds its socket: it was the leak of the test that first asked.

    Read through the base type's own methods: a subclass's ``items()`` or ``__iter__`` (the
    program's code) does not run."""
    kind = type(container)
    if issubclass(kind, dict):
        pairs: Iterable[tuple[object, object]] = dict.items(container)
    else:
        base = next(base for base in _CONTAINERS if issubclass(kind, base))
        pairs = enumerate(base.__iter__(container))
    for index, (key, value) in enumerate(list(itertools.islice(pairs, _ITEMS_LOOKED_AT))):
        value_kind = type(value)
        entry = issubclass(value_kind, (tuple, list))
        if not entry and issubclass(value_kind, _NOT_HOLDERS):
            if issubclass(value_kind, _io._IOBase) and _acquired_in(value, made_in):
                holders[f"{label}[{_key_shown(key, index)}]"] = (value,)  # a file its own code opened
            continue
        shown = f"{label}[{_key_shown(key, index)}]"
        if not entry:
            holders[shown] = (value,) if _acquired_in(value, made_in) else value
            continue
        # An entry of several parts (``_CACHE[url] = (engine, sessionmaker)``): its parts are
        # items as the entry's would be, one level down only.
        parts: Iterator[object] = (tuple if issubclass(value_kind, tuple) else list).__iter__(value)  # type: ignore[arg-type]
        for place, part in enumerate(itertools.islice(parts, _PARTS_LOOKED_AT)):
            if not issubclass(type(part), _NOT_HOLDERS):
                holders[f"{shown}[{place}]"] = (part,) if _acquired_in(part, made_in) else part
            elif issubclass(type(part), _io._IOBase) and _acquired_in(part, made_in):
                holders[f"{shown}[{place}]"] = (part,)


def _key_shown(key: object, index: int) -> str:
    """A container's key as a holder's label shows it (see _item_holders)."""
    plain = any(type(key) is kind for kind in _PLAIN_KEYS)  # `is`: a metaclass's __eq__ is the program's
    return (repr(key) if plain else f"<{type(key).__name__} key #{index}>")[:60]


def _acquired_in(obj: object, filename: str | None) -> bool:
    """Whether *obj* is a tracked resource, still open, that code of the file *filename* acquired
    (a frame of its site runs there)."""
    if filename is None:
        return False
    from .leaks import _files, _records

    rec = _records.live.get(id(obj))
    if rec is not None and rec.state == _records.OPEN and rec() is obj:
        site = rec.site
    else:
        # A file keeps its facts on its raw layer, under its buffer and text layers: moto's
        # backend keeps the files its own code opened, as the module keeps a socket it made.
        raw = _files.raw_layer(obj) if isinstance(obj, _IO_LAYERS) else obj
        facts = _files.facts_of(raw) if isinstance(raw, _io.FileIO) and not raw.closed else None
        if facts is None:
            return False
        site = facts[7:]
    return any(code.co_filename == filename for code, _ in _records.site_of(site))


#: The io layers over a raw file (see _acquired_in): text, then buffered.
_IO_LAYERS = (_io.TextIOWrapper, _io.BufferedReader, _io.BufferedWriter, _io.BufferedRandom)


def _kept_by_function(function: types.FunctionType) -> Iterator[object]:
    """What *function*'s closure cells and default arguments hold that may hold something for the
    program: a default made at import (httpie's ``main(args=sys.argv, env=Environment())``) keeps
    what each call leaves on it, as a global would."""
    for cell in function.__closure__ or ():
        try:
            value = cell.cell_contents
        except ValueError:  # a cell not filled yet
            continue
        if not issubclass(type(value), _NOT_HOLDERS):  # type(): see _module_holders
            yield value
    defaults = _plain_attribute(function, "__defaults__") or ()
    keywords = _plain_attribute(function, "__kwdefaults__") or {}
    for value in (*defaults, *keywords.values()):
        if not issubclass(type(value), (*_NOT_HOLDERS, *_SCALARS)):
            yield value


_KEPT_FROM = " (kept from "


def _kept_label(holder: str, nodeid: str) -> str:
    """The label of what *holder* (a module global, a config attribute) took over from a test."""
    return f"{holder}{_KEPT_FROM}{nodeid})"


def _kept_origin(label: str, holders: tuple[str, ...] | None = None) -> tuple[str, str] | None:
    """(holder, test node id) of a :func:`_kept_label` whose holder is one of *holders* (labels'
    starts; default: a program's object's or a wider fixture's), or None for another label."""
    holder, found, rest = label.partition(_KEPT_FROM)
    if not found or not label.startswith(_KEPT_BY if holders is None else holders) or not rest.endswith(")"):
        return None
    return holder, rest[:-1]


def _during_their_test(leaks: list[Leak]) -> list[Leak]:
    """*leaks*, those a holder kept shown as acquired during the test that acquired them: their
    block's heading names the holder ("held by module global app.cache (kept from ...)"), and
    "during module global app.cache" would say nothing of when they were acquired."""
    shown = []
    for leak in leaks:
        kept = None if leak.context is None else _kept_origin(leak.context)
        shown.append(leak if kept is None else dataclasses.replace(leak, context=kept[1]))
    return shown


#: The label of what an object a plugin or conftest keeps on pytest's config holds (see
#: _config_holders); reported at the end of the session, as a module global's is.
CONFIG_ATTRIBUTE = "pytest config attribute "

#: The label of what the traceback of a failed test holds (see _failure_holders): pytest keeps
#: it, and the locals of its frames, until the next test runs.
FAILURE_TRACEBACK = "the traceback pytest keeps of the failed test"

#: Labels of what outlives the test that acquired it, held by what the program keeps.
_KEPT = (MODULE_GLOBAL, CLASS_ATTRIBUTE, CONFIG_ATTRIBUTE, FAILURE_TRACEBACK)

#: The starts of the labels of wider fixtures (see ``pytest_fixture_setup``): what a test
#: acquired and one's value keeps is the fixture's, "kept from" that test.
_FIXTURES = tuple(f"{scope}-scoped fixture " for scope in ("session", "package", "module", "class"))

#: Labels of what a holder kept from the test that acquired it (see :func:`_kept_label`).
_KEPT_BY = (*_KEPT, *_FIXTURES)


def _failure_holders(error: BaseException | None) -> tuple[object, ...]:
    """What the traceback of *error*, a test's failure, keeps alive: the locals of each frame it
    went through, and what its exceptions hold, down its chain (pytest's own objects left out).

    pytest keeps a failed test's exception in ``sys.last_value`` (for post-mortem debugging)
    until the next test's call: what the frames' locals reference is alive until then. A
    urllib3 pool a failing test made, which urllib3 closes once nothing references it, was
    reported open as that test's leak. It is the failure's now, and judged once that is gone.
    """
    roots: list[object] = []
    seen: set[int] = set()
    pending = [] if error is None else [error]
    while pending:
        exc = pending.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        roots.extend((exc.args, getattr(exc, "__dict__", None)))
        tb = exc.__traceback__
        while tb is not None:
            roots.extend(value for value in tb.tb_frame.f_locals.values() if not _pytests(value))
            tb = tb.tb_next
        pending.extend(e for e in (exc.__cause__, exc.__context__) if e is not None)
        if isinstance(exc, BaseExceptionGroup):
            pending.extend(exc.exceptions)
    return tuple(roots)


def _pytests(value: object) -> bool:
    """Whether *value* is one of pytest's (or pluggy's) objects: a frame's ``item`` or ``request``."""
    return type(value).__module__.partition(".")[0] in ("_pytest", "pytest", "pluggy")


def _kept_failure() -> BaseException | None:
    """The failure pytest keeps now (``sys.last_value``), if any."""
    return getattr(sys, "last_value", None)


def _config_holders(config: pytest.Config) -> dict[str, object]:
    """``"pytest config attribute engine"`` -> value, for the objects a plugin
    or conftest keeps on the config (``config.engine = create_engine(...)`` in ``pytest_configure``,
    as SQLAlchemy's own test plugin does) or in its stash: pytest's own are left out."""
    from . import _sites

    holders: dict[str, object] = {}
    stash = getattr(config.stash, "_storage", {})
    values = [*vars(config).items(), *((f"stash[{key!r}]", value) for key, value in list(stash.items()))]
    for name, value in values:
        if name.startswith("_") or issubclass(type(value), _NOT_HOLDERS):  # see _module_holders
            continue
        module = sys.modules.get(type(value).__module__)
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str) and not _sites.is_framework(filename):  # not pytest's, nor stdlib's
            holders[f"{CONFIG_ATTRIBUTE}{name}"] = value
    return holders


def _logging_handlers() -> Callable[[Leak], Any]:
    """The logging handler still registered whose file or socket a leak is, else None:
    ``logging.shutdown()`` closes it at exit (``reclaim run`` counts that too), as when the app
    configures a FileHandler, or a SysLogHandler (``socket``) or SocketHandler (``sock``), at
    import."""
    logging = sys.modules.get("logging")
    socket_type = getattr(sys.modules.get("socket"), "socket", None)
    files: dict[tuple[object, object], Any] = {}
    sockets: dict[int, Any] = {}
    for ref in list(getattr(logging, "_handlerList", ())):
        handler = ref()
        stream = getattr(handler, "stream", None)
        # No stream, a closed one, or a handler's own kind of stream raising its own error.
        with contextlib.suppress(Exception):
            files[getattr(stream, "name", None), stream.fileno()] = handler  # type: ignore[union-attr]
        for name in ("socket", "sock"):
            sock = getattr(handler, name, None)
            # Only a socket.socket is a "socket" leak: pyzmq's PUBHandler keeps a zmq socket here,
            # whose fileno() raises ZMQError once it is closed.
            if socket_type is not None and sock is not None and issubclass(type(sock), socket_type):
                fd = sock.fileno()  # -1 once closed (type(), not isinstance(): see _module_holders)
                if fd >= 0:
                    sockets[fd] = handler

    def handler_of(leak: Leak) -> Any:
        if leak.kind == "file":
            return files.get((leak.details.get("path"), leak.details.get("fd")))
        # An open socket's descriptor is its own: one the collector closed may share the number.
        if leak.kind == "socket" and leak.state == "open":
            return sockets.get(leak.details.get("fd"))  # type: ignore[arg-type]
        return None

    return handler_of


def _logged_to(leaks: list[Leak]) -> list[Leak]:
    """*leaks*, the file or socket of a logging handler a test left on a logger saying so, and
    how to let it go: the handler's own ``close()``, once off the logger (a with-block fits
    nothing here). hypercorn's suite left a FileHandler on its ``hypercorn.access`` logger."""
    if not any(leak.kind in ("file", "socket") for leak in leaks):
        return leaks
    handler_of = _logging_handlers()
    logging = sys.modules.get("logging")
    named: list[Leak] = []
    for leak in leaks:
        handler = handler_of(leak)
        if handler is None or logging is None:
            named.append(leak)
            continue
        loggers = [
            name
            # a copy made in one C call: a thread of the program's may add a logger meanwhile
            for name, logger in [("root", logging.root), *logging.Logger.manager.loggerDict.copy().items()]
            if type(logger) is not logging.PlaceHolder
            and handler in (getattr(logger, "__dict__", {}).get("handlers") or ())
        ]
        on = "on logger " + ", ".join(repr(name) for name in loggers) if loggers else "on no logger"
        note = (
            f", the stream of a logging.{type(handler).__name__} {on}"
            " (logger.removeHandler(handler), then handler.close())"
        )
        details = {**leak.details, "logging_handler": type(handler).__name__, "loggers": loggers}
        named.append(dataclasses.replace(leak, description=leak.description + note, details=details))
    return named


def _made_in_pytest_temp(config: pytest.Config) -> Callable[[Leak], bool]:
    """Whether a leak is a path ``mkstemp()``/``mkdtemp()`` made in pytest's base temporary
    directory (``mkstemp(dir=tmp_path)``, or ``tempfile.tempdir`` set to it): pytest removes
    those directories, as the files a test writes there, so the path is not the test's to remove."""
    # pytest's tmp_path factory, set by its tmpdir plugin; its base directory is made on first
    # use, so None means no test asked for one (and nothing was made in it).
    factory = getattr(config, "_tmp_path_factory", None)
    base = getattr(factory, "_basetemp", None)
    if base is None:
        return lambda leak: False
    inside = os.path.join(os.fspath(base), "")
    return lambda leak: (
        leak.details.get("made_by") in _PATHS_MADE and str(leak.details.get("path", "")).startswith(inside)
    )


#: How deep :func:`_reached` looks for what an ``atexit`` handler may close: its arguments and
#: the object of a bound method, then what that object's attributes keep (one level, and the
#: items of a list, set or dict there), a ``functools.partial``'s own, and what a function's code
#: names, in its cells or its module's globals (``atexit.register(lambda: LOG.close())``).
_EXIT_FOLLOWED = 2


class _ExitHandlers:
    """The ``atexit`` handlers registered while the session is tracked, and what they (or a
    ``weakref.finalize`` still waiting) will close.

    pytest's session ends before the interpreter runs them, so a module that opens
    ``os.devnull`` and registers its ``close`` (psutil's tests, IPython) still has it open
    when the plugin looks. ``reclaim run`` looks after the handlers ran: what they close is
    the program's cleanup, not a leak; the plugin counts it so too.
    """

    def __init__(self) -> None:
        #: (func, args, kwargs, number): *number* counts the registrations, in order.
        self.handlers: list[tuple[Callable[..., object], tuple[object, ...], dict[str, object], int]] = []
        self.registered = 0
        self._patches: Any = None

    def start(self) -> None:
        import atexit

        from .leaks._patch import Patches

        register, unregister = atexit.register, atexit.unregister
        handlers = self.handlers

        def register_(
            func: Callable[..., object], /, *args: object, **kwargs: object
        ) -> Callable[..., object]:
            registered = register(func, *args, **kwargs)  # a bad call fails there, as it would
            handlers.append((func, args, kwargs, self.registered))
            self.registered += 1
            return registered

        def unregister_(func: Callable[..., object], /) -> None:
            unregister(func)
            handlers[:] = [handler for handler in handlers if handler[0] != func]  # atexit compares so

        self._patches = Patches()
        self._patches.set(atexit, "register", register_)
        self._patches.set(atexit, "unregister", unregister_)

    def stop(self) -> None:
        if self._patches is not None:
            self._patches.undo()
            self._patches = None

    def will_close(self, since: int | None = None) -> Callable[[Leak], bool]:
        """Whether a leak still open is what a handler will close: by identity, by descriptor
        for files and sockets (a text file's handler closes the raw file under it), or by path
        for temp directories and files. One the collector closed is a leak all the same (a
        finalize callback run by a collection).

        With *since* (the number of handlers registered when a test began), an object a handler
        registered before that reaches only as an item of a list, set or dict counts for nothing:
        such a handler is a safety net over a registry of every live instance (paramiko's
        ``_join_lingering_threads`` stops each transport its module lists), and what the test left
        in it runs on through the later tests. A path in such a list still counts (astropy's temp
        files, removed at exit on purpose), and so does everything at the session's end."""
        import shutil

        from . import _sites
        from .leaks import _records

        # A record's generation is shared by what one test (or the collection) acquired: its
        # time and stack tell it apart, as a leak's report key does (_key). The stack is resolved
        # only for a record whose generation, kind and time a leak shares: litestar registers an
        # exit handler per app, and resolving every record they reach at every check cost
        # O(handlers) line lookups a test, quadratic over the suite (7x its CPU).
        acquisitions: dict[tuple[object, ...], list[Any]] = {}
        fds: set[int] = set()
        paths: set[str] = set()
        trees: list[str] = []  # directories shutil.rmtree removes with what is in them
        # The names of the threads a handler stops: what one acquired, it closes on its way out
        # (IPython's HistorySavingThread registers its stop(), and closes its database as it ends).
        stopped: set[str] = set()
        for func, args, kwargs, number in [*self.handlers, *_finalizers_at_exit()]:
            if func is os.close:
                fds.update(arg for arg in args if type(arg) is int)
            if not _implicit_cleanup(func):
                # A temp path handed over (fsspec's cache directory, to a finalize of the
                # filesystem its instance cache keeps; ``atexit.register(os.remove, path)``).
                for arg in (*args, *kwargs.values()):
                    if isinstance(arg, (str, os.PathLike)):
                        with contextlib.suppress(Exception):  # a PathLike whose __fspath__ fails
                            path = os.fspath(arg)
                            if isinstance(path, str):
                                paths.add(path)
                                if func is shutil.rmtree:  # Django's runner, for its TMPDIR
                                    trees.append(os.path.join(path, ""))
            in_items: list[object] = []
            direct = _reached(func, (*args, *kwargs.values()), _EXIT_FOLLOWED, in_items)
            own_items = since is None or number >= since
            for obj in [*direct, *in_items]:
                if isinstance(obj, (str, os.PathLike)) and not _implicit_cleanup(func):
                    with contextlib.suppress(Exception):  # a PathLike whose __fspath__ fails
                        path = os.fspath(obj)
                        if isinstance(path, str):
                            paths.add(path)  # one a handler's list of what it removes keeps
            for obj in direct if not own_items else [*direct, *in_items]:
                rec = _records.live.get(id(obj))
                if rec is not None and rec() is obj:
                    acquisitions.setdefault((rec.seq, rec.kind, rec.time), []).append(rec.site)
                    if rec.kind == "thread":
                        stopped.add(rec.info[0])
                fd = _fileno_of(obj)
                if fd is not None:
                    fds.add(fd)

        def acquired_so(leak: Leak) -> bool:
            sites = acquisitions.get((leak.seq, leak.kind, leak.acquired_at), ())
            return any(tuple(_sites.frames(_records.site_of(site))) == leak.frames for site in sites)

        return lambda leak: (
            leak.state == "open"
            and (
                acquired_so(leak)
                or (leak.thread in stopped and leak.thread != "MainThread")
                or (leak.kind in ("file", "socket", "fd") and leak.details.get("fd") in fds)
                or (leak.kind in ("tempdir", "tempfile") and _removed(leak.details.get("path"), paths, trees))
            )
        )


def _removed(path: object, paths: set[str], trees: list[str]) -> bool:
    """Whether an exit handler removes temp *path*: it was handed *path*, or ``shutil.rmtree`` a
    directory *path* is in (what a test module made in the run's TMPDIR at import goes with it)."""
    return path in paths or (type(path) is str and path.startswith(tuple(trees)))


def _implicit_cleanup(func: object) -> bool:
    """Whether *func* is a ``TemporaryDirectory``'s own finalizer: the "Implicitly cleaning up"
    it warns of is the program's leak (see ``leaks._tempfiles``), though it removes the path."""
    import tempfile

    owner = getattr(func, "__self__", None)
    return isinstance(owner, type) and issubclass(owner, tempfile.TemporaryDirectory)


def _finalizers_at_exit() -> list[tuple[Callable[..., object], tuple[object, ...], dict[str, object], int]]:
    """The calls of the ``weakref.finalize`` objects still waiting that run at exit (``atexit``
    true, the default): ``weakref.finalize(app, sock.close)`` with *app* kept to the end. Each
    is numbered as a handler registered before any test (see :meth:`_ExitHandlers.will_close`)."""
    import weakref

    calls = []
    for info in list(getattr(weakref.finalize, "_registry", {}).values()):
        with contextlib.suppress(AttributeError):  # a Python whose finalize keeps other fields
            if info.atexit:
                calls.append((info.func, tuple(info.args), dict(info.kwargs or {}), -1))
    return calls


def _plain_attribute(obj: object, name: str) -> Any:
    """*obj*'s attribute *name*, else None, looked up without its class's ``__getattr__`` and
    with whatever a descriptor raises taken as none: what an exit handler's object keeps is read
    at every check that found something, and the program's code must not run there (ipykernel's
    ``BackgroundSocket`` warns, or asserts, in its ``__getattr__``: under ``filterwarnings =
    error`` every later check, and the session's last, crashed)."""
    try:
        return object.__getattribute__(obj, name)
    except Exception:
        return None


def _fileno_of(obj: object) -> int | None:
    """The descriptor *obj* (not a class) has, by a ``fileno()`` its class defines; None when it
    has none, is closed, or its ``fileno()`` fails. Its warnings are not the program's to see."""
    kind = type(obj)
    if issubclass(kind, type):
        return None
    fileno = next((vars(base)["fileno"] for base in kind.__mro__ if "fileno" in vars(base)), None)
    bind = getattr(type(fileno), "__get__", None)
    if bind is None:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return int(bind(fileno, obj, kind)())
        except Exception:  # closed already, or not a descriptor
            return None


def _reached(func: object, args: Sequence[object], levels: int, in_items: list[object]) -> list[object]:
    """The objects the atexit handler call ``func(*args)`` may close (see :data:`_EXIT_FOLLOWED`).
    What it reaches only as the item of a list, set or dict (and what such an item keeps) goes in
    *in_items* instead."""
    owner = _plain_attribute(func, "__self__")
    found = [*args, owner]
    if levels > 1:
        if owner is not None and not issubclass(type(owner), (type, types.ModuleType)):
            # A registry's cleanup (``atexit.register(self.cleanup)``): what its attributes keep,
            # and what a list, set or dict of them keeps (children it waits for at exit). Only
            # the attributes its code names: jupyter_client's ``cleanup_connection_file`` removes
            # a file, and the kernel its manager keeps running was excused with it.
            _attributes_reached(owner, _names_used(func), _OBJECTS_FOLLOWED, found, {id(owner)}, in_items)
        if isinstance(func, functools.partial):
            found += _reached(func.func, (*func.args, *func.keywords.values()), levels - 1, in_items)
        if isinstance(func, types.FunctionType):  # what its code names: a cell, or a global
            for cell in func.__closure__ or ():
                with contextlib.suppress(ValueError):  # an empty cell
                    found += _reached(cell.cell_contents, (cell.cell_contents,), levels - 1, in_items)
            names = func.__globals__
            called: frozenset[str] | None = None
            for value in [names[name] for name in func.__code__.co_names if name in names]:
                # A module's list of what it cleans up at exit, and what is in it (astropy's
                # ``_tempfilestodel``, the paths its ``_deltemps`` removes), and what the
                # methods it calls on each item reach (paramiko's ``_join_lingering_threads``
                # stops each transport, which closes its socket).
                found.append(value)
                items = _items(value)
                in_items += items
                for item in items:
                    kind = type(item)
                    if issubclass(kind, (type, types.ModuleType, *_SCALARS, *_CONTAINER_TYPES, dict)):
                        continue
                    if called is None:
                        called = _names_used_by(func, object) or frozenset()
                    named = _names_called(kind, called)
                    if named is not None:
                        depth = _OBJECTS_FOLLOWED - 1
                        _attributes_reached(item, named, depth, in_items, {id(item)}, in_items)
    return [obj for obj in found if obj is not None and not issubclass(type(obj), types.ModuleType)]


#: How many objects deep the walk from an exit handler's object goes (see _attributes_reached):
#: OpenTelemetry's ``MeterProvider.shutdown`` stops each reader its config keeps, and each
#: joins its thread (provider, config, reader, thread).
_OBJECTS_FOLLOWED = 4

_CONTAINER_TYPES = (list, tuple, set, frozenset, collections.deque)


def _items(value: object) -> list[object]:
    """The items of *value* if it is a list, tuple, set or deque, the values of a dict; else none."""
    if type(value) in _CONTAINER_TYPES:
        return list(itertools.islice(value, _ITEMS_LOOKED_AT))  # type: ignore[call-overload]
    if type(value) is dict:
        return list(itertools.islice(value.values(), _ITEMS_LOOKED_AT))
    return []


def _attributes_reached(
    obj: object,
    named: frozenset[str] | None,
    depth: int,
    found: list[object],
    seen: set[int],
    in_items: list[object],
) -> None:
    """Add to *found* what the attributes of *obj* that *named* names keep (every one, when None),
    and to *in_items* the items of a container there; then, *depth* objects deep, what the code
    the handler calls on each of those by name reaches in turn (``self._reader.shutdown()``: the
    reader's own method, which joins its thread), in the same list as the object it is kept by."""
    attributes = _plain_attribute(obj, "__dict__")
    for name, value in list(attributes.items() if type(attributes) is dict else ()):
        if named is not None and name not in named:
            continue
        for item, into in ((value, found), *((each, in_items) for each in _items(value))):
            if id(item) in seen:
                continue
            seen.add(id(item))
            into.append(item)
            kind = type(item)
            if (
                depth > 1
                and named is not None
                and kind not in _CONTAINER_TYPES
                and kind is not dict
                and not issubclass(kind, (type, types.ModuleType, *_SCALARS))
            ):
                _attributes_reached(item, _names_called(kind, named), depth - 1, into, seen, in_items)


def _names_called(cls: type, named: frozenset[str]) -> frozenset[str] | None:
    """*named*, with the names used by the methods of *cls* it names (their code, and what it
    calls in turn, as :func:`_names_used`): what of an object of *cls* a handler's code may reach.
    None when that cannot be told."""
    known = _NAMES_CALLED.get((id(cls), named))
    if known is not None and known[0] is cls:
        return known[1]
    names = set(named)
    answer: frozenset[str] | None = None
    for name in named:
        method = next((vars(klass)[name] for klass in cls.__mro__ if name in vars(klass)), None)
        method = getattr(method, "__func__", method)  # a staticmethod or classmethod
        if isinstance(method, types.FunctionType):
            used = _names_used_by(method, cls)
            if used is None:
                break
            names |= used
    else:
        answer = frozenset(names)
    _NAMES_CALLED[(id(cls), named)] = (cls, answer)
    return answer


#: (id of a class, names) -> (the class, :func:`_names_called`'s answer).
_NAMES_CALLED: dict[tuple[int, frozenset[str]], tuple[type, frozenset[str] | None]] = {}


#: Names that reach an object's attributes without naming them: a method using one may close
#: any of them.
_ANY_ATTRIBUTE = frozenset({"__dict__", "vars", "getattr"})


def _names_used(method: object) -> frozenset[str] | None:
    """The names the code of bound *method* uses, and the code it calls on its object's class or
    from its module's globals (:data:`_CALLS_FOLLOWED` calls deep, properties' getters too):
    what of its object it may close. None when that cannot be told (C code, or a method that
    reaches attributes without naming them)."""
    func = getattr(method, "__func__", None)
    owner = getattr(method, "__self__", None)
    if not isinstance(func, types.FunctionType) or owner is None:
        return None
    # Asked at every check that found something, for every handler registered (litestar's apps
    # each register one): the answer is the code's and the class's, kept with both.
    cls = type(owner)
    known = _NAMES_USED.get((func.__code__, id(cls)))
    if known is not None and known[0] is cls:
        return known[1]
    answer = _names_used_by(func, cls)
    _NAMES_USED[(func.__code__, id(cls))] = (cls, answer)
    return answer


#: How many calls deep :func:`_names_used` follows a handler's code (worked out once per code and
#: class, so a deep walk costs once).
_CALLS_FOLLOWED = 6

#: (code, id of the class) -> (the class, :func:`_names_used`'s answer).
_NAMES_USED: dict[tuple[types.CodeType, int], tuple[type, frozenset[str] | None]] = {}


def _names_used_by(func: types.FunctionType, cls: type) -> frozenset[str] | None:
    """:func:`_names_used` for *func*, a method of *cls*."""
    names: set[str] = set()
    seen: set[types.CodeType] = set()
    todo: list[tuple[types.CodeType, dict[str, Any], int]] = [(func.__code__, func.__globals__, 0)]
    while todo:
        code, globals_, depth = todo.pop()
        if code in seen:
            continue
        seen.add(code)
        todo += [(const, globals_, depth) for const in code.co_consts if isinstance(const, types.CodeType)]
        if depth > _CALLS_FOLLOWED:
            continue
        for name in code.co_names:
            if name in names:
                continue
            names.add(name)
            # The same name up the class's hierarchy (a super() call reaches the base's), and a
            # function of the module by that name.
            callees = [vars(klass).get(name) for klass in cls.__mro__]
            callees.append(globals_.get(name))
            for callee in callees:
                callee = getattr(callee, "__func__", callee)  # a staticmethod or classmethod
                callee = getattr(callee, "fget", callee)  # a property's getter
                if isinstance(callee, types.FunctionType):
                    todo.append((callee.__code__, callee.__globals__, depth + 1))
    return None if names & _ANY_ATTRIBUTE else frozenset(names)


def _started_before(label: str, configuring: str) -> None:
    """Label the threads started before the session did as started under *label*, the session's:
    those started before tracking, and those started while pytest configured (*configuring*).

    What a thread acquires is labelled as where it was started; one started before (a conftest's
    server thread, started in ``pytest_configure``: CacheControl's cheroot) had no label, and
    each connection it accepted was the leak of whichever test ran then, though the test had
    closed its end and the server closed its own a poll later."""
    import threading

    from .leaks._records import STARTED_IN

    here = threading.current_thread()
    for thread in threading.enumerate():
        if thread is here or thread is threading.main_thread():
            continue
        if getattr(thread, STARTED_IN, configuring) == configuring:
            with contextlib.suppress(AttributeError):  # a thread class with __slots__
                setattr(thread, STARTED_IN, label)


#: How the temp paths with no object of their own were made (see ``leaks._tempfiles``).
_PATHS_MADE = ("mkstemp()", "mkdtemp()", "NamedTemporaryFile(delete=False)")


def _hand_over_nested(context: str, tests: set[str]) -> int:
    """See ``leaks._tempfiles.hand_over_nested``: 0 where tempfile is not tracked. A directory made
    under a test's label (one of *tests*, the node ids collected) takes nothing."""
    tempfiles = sys.modules.get("reclaim.leaks._tempfiles")
    if tempfiles is None:
        return 0
    return int(tempfiles.hand_over_nested(context, lambda label: label not in tests))


#: Kinds whose open resources have no object of their own: what owns them is unknown.
_NO_OBJECT_KINDS = frozenset({"untracked-fd", "fd"})


def _path_only(leak: Leak) -> bool:
    """Whether *leak* is a path ``mkdtemp()`` or ``mkstemp()`` made and nothing removed: no object
    holds it, and a full collection frees none that would remove it (pyfilesystem2's suite, a
    directory left by each of 480 tests: 4.5x the CPU, most of it in those collections). The
    young generations, collected first, hold what a test just dropped that might."""
    return leak.kind in ("tempdir", "tempfile") and leak.details.get("made_by") in _PATHS_MADE


def _winding_down(leak: Leak) -> bool:
    """Whether *leak* may still end by itself (a thread, a child, a task: see ``Kind.waitable``)."""
    from .leaks._tracker import _winding_down as winding_down

    return winding_down(leak)


@contextlib.contextmanager
def _warnings_of(item: pytest.Item) -> Iterator[None]:
    """Warnings raised while the check runs are the test's: shown at its line.

    A socket or file the check's ``gc.collect()`` (or a collection its allocations set off)
    finalizes warns (ResourceWarning) from the Python frame running then, reclaim's own: under
    ``-W default::ResourceWarning`` pytest showed "reclaim/leaks/_tracker.py:511:
    ResourceWarning: unclosed <socket...>", as if reclaim had left it open. Each is warned
    again at the test's ``def`` line, with its source (tracemalloc's traceback), through the
    filters as it came. One the filters made an error is unraisable, not a warning, and is
    reported with the test (see _collect_unraisable).
    """
    from ._sites import warned_again_at

    with warned_again_at(str(item.path), (item.location[1] or 0) + 1):
        yield


#: Where a warning the session's last check sets off is shown: no test is running then, and
#: reclaim's frame is not where the program went wrong.
SESSION_END = "<garbage collected at the end of the session>"


def _drop_finished_log_records(item: pytest.Item) -> None:
    """Let go of the log records pytest keeps of *item*'s setup and call, its fixtures torn down.

    pytest keeps them (for ``caplog.get_records()``) until the end of the teardown, after the
    check: a record whose arguments hold an exception (urllib3 logs the error it retries after)
    keeps its traceback's frames, the test's own among them, and all their locals. What the
    test dropped would be checked while still alive: a urllib3 pool ``clear()`` let go, which
    urllib3 closes once nothing references it, was the test's leak. The teardown's own records
    are left to its handler.
    """
    try:
        from _pytest.logging import caplog_records_key
    except ImportError:  # another pytest: its records are its business
        return
    records = item.stash.get(caplog_records_key, None)
    if records is None:
        return
    for when in ("setup", "call"):
        if when in records:
            records[when] = []  # a new list: one a test kept for itself stays as it is


def _collect_unraisable(config: pytest.Config) -> None:
    """Report with this test what the check's ``gc.collect()`` made unraisable (ResourceWarnings).

    pytest 8.4+ gathers unraisable exceptions in a queue and reports them from its own
    ``trylast`` hooks, which run before this plugin's: left alone, they would surface at the
    next test's setup, an error there under ``filterwarnings = error``. Earlier pytests
    catch them around the whole phase, this check included.
    """
    __tracebackhide__ = True  # what it raises is the test's (see pytest_runtest_teardown)
    try:
        from _pytest.unraisableexception import collect_unraisable
    except ImportError:
        return
    collect_unraisable(config)


def _unraisable_text(error: BaseException) -> str:
    """The lines a leak report adds for what its check's collection raised (see _collect_unraisable).

    Under ``filterwarnings = error`` the ResourceWarning of a socket the collection closed is
    an error: pytest raised it from reclaim's hook, and it led the teardown's failure with a
    traceback through reclaim's frames (where the collector ran the finalizer), the leak
    report, which says where the socket came from, a section below it. The report leads now,
    and says what was raised; an exception other than a warning keeps its traceback.
    """
    errors = error.exceptions if isinstance(error, BaseExceptionGroup) else (error,)
    lines = ["the check's garbage collection also raised (your warning filters make these errors):"]
    for each in errors:
        summary = str(each).split("\n", 1)[0]  # "Exception ignored in: <socket.socket ...>"
        cause = each.__cause__
        if cause is None:
            lines.append(f"  {summary}")
        elif isinstance(cause, Warning):  # "unclosed <socket.socket ...>" names its object
            named = summary.partition(": ")[2] in str(cause)
            lines.append(f"  {'' if named else summary + ': '}{type(cause).__name__}: {cause}")
        else:
            lines.append(f"  {summary}:")
            formatted = "".join(traceback.format_exception(cause)).rstrip("\n")
            lines.extend("    " + line for line in formatted.split("\n"))
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class LeakCheckerStatistics:
    """What the plugin checked in this process.

    Attributes:
        tests_checked: tests whose teardown was checked.
        tests_leaked: tests that failed because they leaked.
        leaks: leaks reported with their test.
        late_leaks: leaks reported at the end of the session (wider fixtures,
            collection, or found after their test ended); on an xdist
            controller, the workers' added up.
    """

    tests_checked: int
    tests_leaked: int
    leaks: int
    late_leaks: int


#: The last line's word for what the end-of-session section blamed ("173 errors, 1 leaked at
#: session end"): "1 leaked" beside the errors of the tests that leaked read as a count of all.
LATE_OUTCOME = "leaked at session end"


class _LateLeak:
    """An entry of the terminal's statistics for leaks found after their test ended."""

    count_towards_summary = True
    when = "session"
    outcome = LATE_OUTCOME

    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


#: How many lines :func:`_common_sites` lists, at most.
_COMMON_SHOWN = 5


def _common_sites(found: list[dict[str, Any]]) -> list[str]:
    """The program's lines (past the libraries' frames a stack starts with) that acquired what
    more than one test (or holder) leaked, most tests first: ``"89 tests: thread at
    tests/conftest.py:737 in run_sync_test_inner"``. Empty when no line did."""
    from ._sites import is_program, shown

    tests: dict[tuple[str, str], set[str]] = {}
    where: dict[tuple[str, str], str] = {}
    for leak in found:
        frames = leak.get("frames") or ()
        frame = next((f for f in frames if is_program(str(f.get("file", "")))), frames[0] if frames else None)
        if frame is None:
            continue
        location = f"{shown(str(frame['file']))}:{frame['line']}"
        key = (str(leak.get("kind")), location)
        tests.setdefault(key, set()).add(str(leak.get("context")))
        where[key] = f"{location} in {frame['function']}"
    common = sorted((key for key in tests if len(tests[key]) > 1), key=lambda key: -len(tests[key]))
    lines = [f"{len(tests[key])} tests: {key[0]} at {where[key]}" for key in common[:_COMMON_SHOWN]]
    if len(common) > _COMMON_SHOWN:
        lines.append(
            f"and {len(common) - _COMMON_SHOWN} more lines (the JSON report, --reclaim-json, has them all)"
        )
    return lines


def _key(leak: Leak) -> tuple[object, ...]:
    # The same leak must not be reported twice, though its state and description change when
    # the GC closes it (a socket loses its peer address): its acquisition (when, where, by
    # whom) identifies it. seq is only the tracker generation: two leaks of one kind by one
    # test share it (the second was dropped: a rerun's leak, a thread's late socket).
    # Untracked descriptors have no site: their number and target tell them apart, not their
    # description, which says what watches one only while an event loop does (see _loops.watched).
    if leak.seq:
        return (leak.seq, leak.kind, leak.context, leak.acquired_at, leak.pid, leak.thread, leak.frames)
    if leak.kind == "untracked-fd":
        # Its file removed since (" (deleted)" after its path), it is the same descriptor.
        target = str(leak.details.get("target", "")).removesuffix(" (deleted)")
        return (0, leak.kind, leak.details.get("fd"), target, leak.context)
    return (0, leak.kind, leak.description, leak.context)


def _keys(leak: Leak) -> Iterator[tuple[object, ...]]:
    """The keys of *leak* and of what it holds, at every depth: a holder reported with its test
    reported them too (a scheduler's executor, dropped with it later, is not a leak again)."""
    yield _key(leak)
    if leak.was is not None:
        # A pool's connection never given back is the same leak once it is: blamed as it was
        # before the checkout, then (records' connections, given back to a disposed pool).
        seq, context, acquired_at, thread, frames = leak.was
        yield (seq, leak.kind, context, acquired_at, leak.pid, thread, frames)
    for part in leak.holds:
        yield from _keys(part)


def _signature(leaks: Sequence[Leak]) -> tuple[tuple[str, tuple[object, ...]], ...]:
    """What a test's late leaks are, whichever test's: their kinds and the lines that acquired them."""
    return tuple(sorted((leak.kind, leak.frames) for leak in leaks))


def _several(contexts: Sequence[str]) -> str:
    """The tests (or fixtures) of one block of late leaks: the first three, and how many more."""
    shown = ", ".join(contexts[:3])
    return shown if len(contexts) <= 3 else f"{shown} and {len(contexts) - 3} more"


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {words or word + 's'}"


class LeakChecker:
    """The plugin object registered by ``--reclaim``: one tracker per pytest process.

    Example (what ``pytest --reclaim`` does)::

        config.pluginmanager.register(LeakChecker(config), "reclaim-leak-checker")
    """

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.collected_from: set[str] = set()
        self.test_ids: set[str] = set()  # the node ids collected: labels of no wider scope
        #: The files of the functions pytest calls as tests, their decorators' wrappers included
        #: (a helper module's ``@skip_if_...`` that connects first: psycopg2's testutils.py).
        self.test_calls_in: set[str] = set()
        self.is_test_file = _test_files(config, self.collected_from)
        self.grace: float = _ini_number(config, "reclaim_grace", float)
        # Given explicitly, the depth holds for files too; by default they keep two frames.
        self.depth_given, self.depth = _depth_of(config)
        self.collect: bool = bool(config.getini("reclaim_collect"))
        self.ignore_kinds: tuple[str, ...] = _ini_kinds(config)
        self.allow_everywhere: list[AllowRule] = _ini_allow(config)
        self.tracker: Tracker | None = None
        early = config.stash.get(_EARLY_EXIT_HANDLERS, None)
        if early is not None:  # recording since before the other plugins' earliest hook
            self.exit_handlers = early
        else:
            self.exit_handlers = _ExitHandlers()
            self.exit_handlers.start()  # from now: a conftest's pytest_configure registers some
        self.controller = False
        # Unique per session: a pytester session nested in this process gets a label of its own.
        early_tracking = config.stash.get(_EARLY_TRACKING, None)
        self._number = early_tracking.number if early_tracking is not None else next(_sessions)
        self.session_label = _session_label(self._number)
        self.previous_context: str | None = None
        self.previous_shown_from: str | None = None
        self.previous_tools: frozenset[str] = frozenset()
        self.contexts: set[str] = set()
        self.allow: dict[str, list[AllowRule]] = {}
        #: A wider-scoped fixture's label -> its FixtureDef, while it may be set up (its value
        #: may hold what a test made for it: see _hand_over_held()).
        self.wide_fixtures: dict[str, pytest.FixtureDef[Any]] = {}
        #: A wider-scoped fixture's label -> its value, when the test checked next tore it down
        #: (the last test of its scope): what that test made for it, it still holds as well.
        self.torn_down: dict[str, object] = {}
        #: label of a class-scoped fixture -> (its class, the attributes its setup set there).
        self.kept_on_class: dict[str, tuple[type, tuple[str, ...]]] = {}
        #: The keys of the modules whose objects took something over in the last checks, the
        #: latest last: searched first (see _holders_by_module).
        self.recent_takers: dict[str, None] = {}
        #: A wider-scoped fixture's label -> the rules of the markers where it is scoped.
        self.fixture_allow: dict[str, list[AllowRule]] = {}
        self.reported: set[tuple[object, ...]] = set()
        self.item: pytest.Item | None = None
        self.handlers_before = 0  # exit handlers registered before the running test began
        #: The test whose teardown runs now (its function-scoped fixtures', then the wider ones'
        #: its scope ends with).
        self.in_teardown: pytest.Item | None = None
        # (who acquired, rendered report, how many tests or fixtures) of leaks found after their
        # test ended.
        self.late: list[tuple[str, str, int]] = []
        self.late_count = 0
        #: The traceback of reclaim's own failure in the session's last check, shown in the summary.
        self.session_error: str | None = None
        self.tests_leaked = 0
        self.leak_count = 0
        # Every leak found, as JSON-ready dicts (their "context" names the test or fixture).
        self.found: list[dict[str, Any]] = []
        self.json_path: str | None = _json_destination(config)

    def __repr__(self) -> str:
        state = "controller" if self.controller else ("tracking" if self.tracker else "idle")
        return (
            f"<LeakChecker {state}: {len(self.allow)} tests checked, {self.tests_leaked} leaked, "
            f"{self.late_count} late leaks>"
        )

    def statistics(self) -> LeakCheckerStatistics:
        """Counts of what was checked and found (see :class:`LeakCheckerStatistics`)."""
        return LeakCheckerStatistics(
            tests_checked=len(self.allow),
            tests_leaked=self.tests_leaked,
            leaks=self.leak_count,
            late_leaks=self.late_count,
        )

    # -- session -------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_itemcollected(self, item: pytest.Item) -> None:
        """Remember the files *item*'s test comes from: its module's, whatever its name (one named
        on the command line needs no ``python_files`` match: aiosqlite's ``tests/smoke.py``), and
        its function's, which a mixin of test methods may hold (psycopg2's ``dbapi20.py``). A
        file of the suite's own tests keeps a test's leaks in its globals, and a stack that
        reaches one reaches the test."""
        self.test_ids.add(item.nodeid)
        module = getattr(item, "module", None)
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str):
            self.collected_from.add(filename)
        function = getattr(item, "function", None)
        for _ in range(16):  # decorators made with functools.wraps
            code = getattr(function, "__code__", None)
            if isinstance(code, types.CodeType):
                self.test_calls_in.add(code.co_filename)
            wrapped = getattr(function, "__wrapped__", None)
            if wrapped is None:
                break
            function = wrapped
        if isinstance(code, types.CodeType):
            self.collected_from.add(code.co_filename)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        early = self.config.stash.get(_EARLY_TRACKING, None)
        if early is not None:
            del self.config.stash[_EARLY_TRACKING]  # this checker's now
        if self.config.pluginmanager.get_plugin("dsession") is not None:
            # xdist controller: the workers run the tests and track them.
            self.controller = True
            self.exit_handlers.stop()
            if early is not None:
                _stop_early(early, self.config)
            return
        import tracemalloc  # noqa: F401  (see below)

        from . import _sites
        from .leaks import Tracker, _records, _report, _tracker, current_context, set_context

        # Imported now, not in a test's check: on Python 3.11 a collection during an import that
        # runs a finalizer which imports in turn raises KeyError from importlib's bookkeeping
        # (fixed in 3.12), and a check collects. _report is what every check imports;
        # tracemalloc, what formatting a warning the check's collection sets off imports.
        del _report
        # Report paths as pytest shows its own, from where it was started: a test that changes
        # directory does not move them.
        self.previous_shown_from = _sites.show_paths_from(str(self.config.invocation_params.dir))
        if early is not None:  # started before the first conftests were imported
            self.previous_context = early.previous_context
            self.tracker = early.tracker
            _as_before_configure(early.tracker, _configuring_label(self._number))
        else:
            self.previous_context = current_context()
            if self.depth_given:
                _records.ask_file_depth(self.depth)
            self.tracker = Tracker(depth=self.depth)
            self.tracker.start()
        _mark_launchers(sys._getframe())
        self.previous_tools = _tracker.TOOL_FILES
        _tracker.TOOL_FILES = self.previous_tools | _tool_files(self.config)
        self.contexts.add(self.session_label)
        set_context(self.session_label)
        _started_before(self.session_label, _configuring_label(self._number))

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        self.exit_handlers.stop()  # a session that never started (a usage error) never stopped it

    # Last: what other plugins (a conftest's server, a library's test plugin) stop in their own
    # pytest_sessionfinish is released by then. The terminal summary and xdist's report to
    # the controller come after every plain implementation (both are wrappers).
    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.tracker is not None:
            from .leaks import set_context

            try:
                self._check_session_end()
            except Exception:
                # reclaim's own fault (a library's object it could not read, say): raised out of
                # this hook, it ended pytest with a traceback and no summary, no results file.
                # The tests' results stand; the run fails as pytest's internal errors do. (After
                # any xdist worker's, gathered already.)
                self.session_error = f"{self.session_error or ''}{traceback.format_exc()}"
            finally:
                from . import _sites
                from .leaks import _tracker

                self.exit_handlers.stop()
                self.tracker.stop()
                self.tracker = None
                _tracker.TOOL_FILES = self.previous_tools
                set_context(self.previous_context)
                _sites.show_paths_from(self.previous_shown_from)
                if self.depth_given:
                    from .leaks import _records

                    _records.unask_file_depth(self.depth)
            workeroutput = getattr(self.config, "workeroutput", None)
            if workeroutput is not None:
                workeroutput["reclaim_late"] = [list(entry) for entry in self.late]
                workeroutput["reclaim_late_count"] = self.late_count
                workeroutput["reclaim_found"] = self.found
                workeroutput["reclaim_error"] = self.session_error
        if self.json_path is not None and not hasattr(self.config, "workerinput"):
            self._write_json(self.json_path)
        if self.late_count and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.session_error is not None:
            session.exitstatus = pytest.ExitCode.INTERNAL_ERROR

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object) -> None:
        """xdist controller: gather what a worker found at its session end."""
        output = getattr(node, "workeroutput", None) or {}
        self.late.extend((str(who), str(text), int(n)) for who, text, n in output.get("reclaim_late", ()))
        self.late_count += int(output.get("reclaim_late_count", 0))
        self.found.extend(output.get("reclaim_found", ()))
        error = output.get("reclaim_error")
        if error:
            worker = getattr(getattr(node, "gateway", None), "id", "a worker")
            self.session_error = f"{self.session_error or ''}in {worker}:\n{error}"

    def _write_json(self, path: str) -> None:
        from .leaks import SCHEMA

        counts: dict[str, int] = {}
        for leak in self.found:
            counts[leak["kind"]] = counts.get(leak["kind"], 0) + 1
        document = {
            "schema": SCHEMA,
            "checked": _time(),
            "count": len(self.found),
            "counts": dict(sorted(counts.items(), key=lambda item: -item[1])),
            "leaks": self.found,
        }
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2)
            f.write("\n")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.session_error is not None:
            terminalreporter.section("reclaim: the check at the end of the session failed", red=True)
            terminalreporter.write_line(self.session_error.rstrip())
            terminalreporter.write_line(
                "This is reclaim's fault, not the tests': their results above stand, and what the "
                "session's end would have found was not checked. Please report it with this traceback."
            )
        common = _common_sites(self.found)
        if common:
            # One fixture's executor in 89 tests (gql's suite) read as 89 unrelated errors.
            terminalreporter.section("reclaim: the lines that leaked in more than one test", yellow=True)
            for line in common:
                terminalreporter.write_line(line)
        if not self.late:
            return
        terminalreporter.section("reclaim: leaks found after their test ended", red=True)
        for who, text, _ in self.late:
            verb = "held by" if _kept_origin(who) is not None else "acquired by"
            terminalreporter.write_line(f"{verb} {who}:", bold=True)
            terminalreporter.write_line(text)
        # The last line counts the tests, fixtures and holders, not the resources: both said.
        blamed = _plural(
            sum(tests for _, _, tests in self.late),
            "test, fixture or module-level holder",
            "tests, fixtures or module-level holders",
        )
        terminalreporter.write_line(
            f"{_plural(self.late_count, 'resource')} leaked by {blamed}"
            f" (the '{LATE_OUTCOME}' count below); each is blamed on the test (or fixture) that acquired it, "
            "or the module-level object keeping it, not on the test running when it was found. "
            "Allow one on purpose with an ini line 'reclaim_allow = KIND:REGEX'."
        )
        # Counted in the last line ("3 passed, 1 leaked at session end"): a red exit status explained.
        terminalreporter.stats.setdefault(LATE_OUTCOME, []).extend(
            _LateLeak(who) for who, _, tests in self.late for _ in range(tests)
        )

    def _check_session_end(self) -> None:
        assert self.tracker is not None
        self._hand_back_let_go()
        # What a logging handler or an atexit handler closes at exit is the program's cleanup.
        handler_of = _logging_handlers()
        released_at_exit = [
            lambda leak: handler_of(leak) is not None,
            self.exit_handlers.will_close(),
            _made_in_pytest_temp(self.config),  # and what pytest removes with its temporary directories
        ]
        # A coroutine never awaited, a socket a test left in a cycle, finalized by this collection,
        # warns from reclaim's frame: shown at no line of reclaim's.
        from ._sites import warned_again_at

        with warned_again_at(SESSION_END, 0):
            leaks = self.tracker.leaks(
                grace=self.grace, collect=True, ignore_kinds=self.ignore_kinds, ignore=released_at_exit
            )
        by_context: dict[str, list[Leak]] = {}
        for leak in leaks:
            context = leak.context
            if context is None or _key(leak) in self.reported:
                continue  # already reported with its test
            kept = _kept_origin(context)
            if context not in self.contexts and kept is None:
                continue  # another (nested or outer) session's
            if kept is not None and kept[0].startswith(_FIXTURES):
                # A fixture's, kept from a test: the markers of either allow it.
                rules = [*self.allow.get(kept[1], ()), *self.fixture_allow.get(kept[0], ())]
            else:
                rules = self.allow.get(context) or self.fixture_allow.get(context, [])
            if any(rule(leak) for rule in (*self.allow_everywhere, *rules)):
                continue
            self.reported.update(_keys(leak))
            by_context.setdefault(context, []).append(leak)
        # Tests that leaked alike (each test's fixture started the same never-ending thread) are
        # one block, not one per test: what they leaked, acquired at the same lines.
        alike: dict[object, list[str]] = {}
        for context, found in by_context.items():
            kept = _kept_origin(context)
            if kept is not None and kept[0].startswith(_FIXTURES):
                signature: object = kept[0]  # a fixture's block, each resource during its test
            else:
                signature = context if kept is not None else _signature(found)
            alike.setdefault(signature, []).append(context)
        for signature, contexts in alike.items():
            found = [leak for context in contexts for leak in by_context[context]]
            report = self.tracker.report(found)
            self.found.extend(report.to_json()["leaks"])
            text = self.tracker.report(_during_their_test(found)).to_text(depth=self.depth)
            hint = self._cut_short(found)  # as under a test's report: how to see the test's line
            if hint:
                text = f"{text.rstrip()}\n{hint.rstrip()}\n"
            if type(signature) is str and signature.startswith(_FIXTURES):
                # One holder: "held by <fixture> (kept from <the tests>)", counted once.
                tests = [kept[1] for context in contexts if (kept := _kept_origin(context)) is not None]
                self.late.append((_kept_label(signature, _several(tests)), text, 1))
            else:
                self.late.append((_several(contexts), text, len(contexts)))
            self.late_count += len(found)

    def pytest_pycollect_makemodule(self, module_path: Path) -> None:
        _own_test_module(module_path)

    # -- one test --------------------------------------------------------------------------

    # pytest_runtest_setup and pytest_fixture_setup wrap as old-style hookwrappers (hookwrapper=True):
    # a setup error is handed to them in the outcome, never raised through their frames. Raised
    # through (and hidden, __tracebackhide__), they were all pytest kept of an error whose every
    # other frame is pytest's, pluggy's or generated code's, and it showed "All traceback entries
    # are hidden" where, without reclaim, it falls back to the whole traceback (coredis's suite).
    # Shown, pytest showed this wrapper's source first for a fixture's error in a conftest.py.

    @pytest.hookimpl(hookwrapper=True, tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> Generator[None, Any, None]:
        if self.tracker is not None:
            from .leaks import _tracker, set_context

            # A plugin that sets back what it kept before reclaim started (pytest-socket puts
            # socket.socket.connect back at each teardown) turned part of the tracking off.
            _tracker.restore_patches()
            self.item = item
            self.contexts.add(item.nodeid)
            set_context(item.nodeid)
            self.handlers_before = self.exit_handlers.registered  # see _ExitHandlers.will_close
            try:
                self.allow[item.nodeid] = _allow_rules(item)
            except (TypeError, ValueError) as exc:
                # Failed after the other plugins' setup ran, so their teardown finds their
                # state; the message says it all, with no traceback through the plugin (or re).
                outcome = yield
                if outcome.exception is None:
                    outcome.force_exception(
                        pytest.fail.Exception(f"{type(exc).__name__}: {exc}", pytrace=False)
                    )
                return
        yield

    @pytest.hookimpl(hookwrapper=True)
    def pytest_fixture_setup(
        self, fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
    ) -> Generator[None, Any, None]:
        if self.tracker is None or fixturedef.scope == "function":
            yield
            return
        from .leaks import current_context, set_context

        first_user = self.item.nodeid if self.item is not None else "collection"
        name = _fixture_name(fixturedef.argname)
        label = f"{fixturedef.scope}-scoped fixture {name!r} (set up for {first_user})"
        previous = current_context()
        self.contexts.add(label)
        # The markers where it is scoped (a module's pytestmark for a module-scoped fixture) allow
        # its leaks too; a bad one is reported by the tests it marks, so it allows nothing here.
        with contextlib.suppress(TypeError, ValueError):
            self.fixture_allow[label] = _allow_rules(request.node)
        if _is_pytest_djangos_database_setup(fixturedef):
            # A connection Django made and keeps for its thread: the test database's, which this
            # fixture opens and, under --reuse-db (the database kept), never closes; a run that
            # destroys the database closes it. Its description says Django's (see leaks._django).
            from .leaks._allow import AllowRule

            self.fixture_allow.setdefault(label, []).append(
                AllowRule(None, re.compile(r", Django's connection '"))
            )
            # What a later test's query connects again, after Django's teardown of a TestCase
            # closed every connection, Django keeps until this fixture's teardown too.
            from .leaks import _django

            _django.KEEPER = (label, threading.get_ident())
            fixturedef.addfinalizer(lambda: setattr(_django, "KEEPER", None))
        set_context(label)
        self.wide_fixtures[label] = fixturedef
        # Its teardown runs in whichever test is tearing down then (the session's last test):
        # what the teardown acquires is the fixture's too. Finalizers run last-added first, so
        # this one, added before the fixture's own, puts the context back after them.
        outer: list[str | None] = []
        fixturedef.addfinalizer(lambda: set_context(outer.pop()) if outer else None)
        look = "untracked-fd" not in self.ignore_kinds
        if look:
            from .leaks._fds import list_fds

            before = list_fds()
        cls = request.cls if fixturedef.scope == "class" else None
        attributes = dict(vars(cls)) if isinstance(cls, type) else None
        try:
            outcome = yield
        finally:
            if attributes is not None and isinstance(cls, type):
                self.kept_on_class[label] = (cls, _set_meanwhile(cls, attributes))
            # Only when a descriptor was opened: a plugin's autouse class-scoped fixture is set
            # up for every test outside a class (pytest-django's), and a look costs a check.
            if look and (before is None or (after := list_fds()) is None or after - before):
                # A descriptor C code opened for the fixture (watchdog's inotify one, say) has no
                # object to carry its label: one look now labels it the fixture's, before the
                # first test's check would blame that test.
                from .leaks import KINDS

                others = [kind for kind in KINDS if kind != "untracked-fd"]
                with contextlib.suppress(Exception):
                    self.tracker.leaks(context=label, ignore_kinds=others)
            set_context(previous)

        def tearing_down() -> None:  # added after the fixture's own finalizer: runs before it
            item = self.in_teardown
            if item is not None and _STASH_LEAKS not in item.stash:
                # The last test of a class, module or session is checked before their fixtures'
                # teardown, as the others are: a tearDownClass that closed what that test left
                # open (pygame's quit()) passed it alone of its class.
                self._check(item)
            outer.append(current_context())
            set_context(label)
            cached = fixturedef.cached_result
            if cached is not None and cached[2] is None and self.item is not None:
                self.torn_down[label] = cached[0]  # until the tearing-down test is checked

        if outcome.exception is None:  # set up: torn down, later, as the fixture's
            fixturedef.addfinalizer(tearing_down)

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_teardown(self, item: pytest.Item) -> None:
        # trylast: after pytest's own teardown of the fixtures, before its unraisable-exception
        # check, so a ResourceWarning the GC raises here is still reported with this test.
        if self.tracker is not None:
            leaks = item.stash.get(_STASH_LEAKS, None)
            if leaks is None:  # no wider fixture's teardown checked it first
                leaks = self._check(item)
            try:
                _collect_unraisable(item.config)
            except (pytest.PytestUnraisableExceptionWarning, ExceptionGroup) as exc:
                if not leaks:
                    # The test's object, finalized by the check's collection: its error, shown
                    # without reclaim's frames (it read as reclaim's own crash in CherryPy's run).
                    __tracebackhide__ = True
                    raise
                item.stash[_STASH_UNRAISABLE] = exc

    def _check(self, item: pytest.Item) -> list[Leak]:
        """Check *item*, its function-scoped fixtures torn down, and keep what it leaked."""
        _drop_finished_log_records(item)
        item.stash[_STASH_LEAKS] = leaks = self._test_leaks(item)
        return leaks

    @pytest.hookimpl(specname="pytest_runtest_teardown", wrapper=True, tryfirst=True)
    def pytest_runtest_teardown_fail_on_leaks(self, item: pytest.Item) -> Generator[None, object, object]:
        """Fail the teardown with the report when the test leaked (outermost wrapper)."""
        if self.tracker is None:
            return (yield)
        from .leaks import set_context

        error: BaseException | None = None
        self.in_teardown = item
        try:
            result = yield
        except BaseException as exc:
            error = exc
        finally:
            self.in_teardown = None
        try:
            leaks = item.stash.get(_STASH_LEAKS, None)
            if leaks is None:  # pytest's own teardown failed before the check ran
                leaks = self._test_leaks(item)
            else:
                del item.stash[_STASH_LEAKS]  # a rerun of the item is checked afresh
        finally:
            set_context(self.session_label)
            self.item = None
            self.torn_down.clear()
        if leaks:
            self.tests_leaked += 1
            self.leak_count += len(leaks)
            # Machine-readable too: junit XML carries it as the test's "reclaim_leaks" property.
            assert self.tracker is not None
            data = self.tracker.report(leaks).to_json()["leaks"]
            self.found.extend(data)
            item.user_properties.append(("reclaim_leaks", json.dumps(data)))
        unraisable = item.stash.get(_STASH_UNRAISABLE, None)
        if unraisable is not None:
            del item.stash[_STASH_UNRAISABLE]
        if error is not None:
            if leaks:
                item.add_report_section("teardown", "reclaim", self._render(leaks, unraisable))
            # A fixture's teardown error, raised again: its traceback is the fixture's, not this
            # wrapper's (pytest shows all of it when the fixture is not in the test's module). Set
            # on this path only: the report's own failure below has no traceback to hide, and
            # pytest would say that all its entries are hidden.
            __tracebackhide__ = True
            raise error
        if leaks:
            failure = pytest.fail.Exception(self._render(leaks, unraisable), pytrace=False)
            item.stash[_STASH_FAILURE] = failure
            raise failure
        return result

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """A leak fails the teardown of a test marked xfail too (outermost wrapper).

        pytest's skipping plugin takes a failure in any phase of an xfail-marked test for the
        failure it expects: the leak report became a second "xfailed" and the run passed.
        The expected failure is the test's own; its leak is reported as any test's is.
        """
        report = yield
        if call.when == "call":
            kept = call.excinfo is not None and call.excinfo.value is _kept_failure()
            item.stash[_STASH_FAILED] = kept
        failure = item.stash.get(_STASH_FAILURE, None)
        if failure is not None and call.when == "teardown":
            del item.stash[_STASH_FAILURE]
            if call.excinfo is not None and call.excinfo.value is failure and hasattr(report, "wasxfail"):
                report.outcome = "failed"
                del report.wasxfail
        return report

    def _test_leaks(self, item: pytest.Item) -> list[Leak]:
        from .leaks import _tracker

        assert self.tracker is not None
        rules = [*self.allow_everywhere, *self.allow.get(item.nodeid, [])]
        allowed = (lambda leak: any(rule(leak) for rule in rules)) if rules else None
        check = functools.partial(
            self.tracker.leaks,
            context=item.nodeid,
            ignore_kinds=self.ignore_kinds,
            ignore=[f for f in (allowed, _made_in_pytest_temp(self.config)) if f is not None],
        )
        # A clean test costs one cheap look. Only when something is left over do we pay for
        # gc.collect() (a cycle's resources are closed now, and their ResourceWarnings come
        # during this test, not a later one) and the grace period for what is winding down.
        with _warnings_of(item):  # what the collector finalizes meanwhile (its own, or ours)
            leaks = check(grace=0.0, collect=False)
            if leaks and self.collect:
                # The young generations first: what the test just dropped in a reference cycle (a
                # selector a server thread made and dropped, an ORM's database object) is there,
                # collected in well under a millisecond where a full collection can take tens,
                # and before the search for holders, which found nothing for it at up to 0.3 s a
                # test (pony's suite: 83 of 119 s).
                closed = _tracker.untracked_closed_by(functools.partial(gc.collect, 1), leaks)
                leaks = check(grace=0.0, collect=False) + closed
            if any(leak.state == "open" and not _path_only(leak) for leak in leaks) and self._hand_over_held(
                item
            ):
                leaks = check(grace=0.0, collect=False)
            if any(leak.kind in ("tempdir", "tempfile") for leak in leaks) and _hand_over_nested(
                item.nodeid, self.test_ids
            ):
                leaks = check(grace=0.0, collect=False)
            if leaks:
                # What closes at exit (an atexit handler's file, of a module the test imported; dask's
                # default thread pool, which its handler shuts down) is left out before the grace
                # period, which waited a second for that pool's threads to end, then excused them.
                closes_at_exit = self.exit_handlers.will_close(self.handlers_before)
                leaks = [leak for leak in leaks if not closes_at_exit(leak)]
                if leaks:
                    leaks = self._collected_and_waited(check, leaks, item)
                    leaks = [leak for leak in leaks if not closes_at_exit(leak)]
        fresh = [leak for leak in leaks if _key(leak) not in self.reported]
        self.reported.update(key for leak in fresh for key in _keys(leak))
        return _logged_to(fresh)

    def _collected_and_waited(
        self, check: Callable[..., list[Leak]], leaks: list[Leak], item: pytest.Item
    ) -> list[Leak]:
        """*leaks*, checked again after the grace period for what winds down and a full collection
        (the young generations were collected already, see _test_leaks)."""
        grace = self.grace
        if leaks and all(_winding_down(leak) for leak in leaks):
            # Only threads, children or tasks still finishing (a server's handler threads after
            # its shutdown): wait for them first, as most end within milliseconds, and collect
            # only if something is left after that (a collection can take tens of ms).
            started = _monotonic()
            leaks = check(grace=grace, collect=False)
            grace = max(0.0, grace - (_monotonic() - started))
        still_open = [leak for leak in leaks if leak.state == "open" and not _path_only(leak)]
        if still_open:
            # Only what is still open may change: the collector closes it (a cycle's), or it
            # ends (a thread). A leak the collector already closed stays as it is, and a full
            # collection takes up to a second in a big suite (sanic's, for its dropped sockets).
            # So does a path mkdtemp() made: no object of its own, none a collection frees.
            # Nor does one the test's fixtures surely keep alive: no cycle's garbage to free.
            # Nor C code's descriptor: a leak whether its owner is garbage or not, which would
            # only vanish from the report, closed by a full collection no one watches (pygit2's
            # repositories: 2.1x the suite's CPU, in a full collection after each test).
            # Nor, then, does C code's descriptor beside what the fixtures keep alive (a client a
            # fixture keeps, whose sockets C code opened: a gRPC channel's, once connected).
            objects = [leak for leak in still_open if leak.kind != "untracked-fd"]
            collect = self.collect and bool(objects) and not self._kept_alive(item, objects)
            leaks = check(grace=grace, collect=collect)
        return leaks

    def _kept_alive(self, item: pytest.Item, leaks: list[Leak]) -> bool:
        """Whether what the test leaves open is all reachable from its fixtures' values (or its
        instance): alive for sure, so a full collection would close none of it. Not when a
        descriptor with no object of its own is open (an ``os.open()``'s): its owner may be a
        cycle's garbage."""
        assert self.tracker is not None
        if any(leak.state == "open" and leak.kind in _NO_OBJECT_KINDS for leak in leaks):
            return False
        roots: list[object] = list(getattr(item, "funcargs", {}).values())
        instance = getattr(item, "instance", None)
        if instance is not None:
            roots.append(instance)
        return bool(roots) and self.tracker.all_reachable(item.nodeid, roots)

    def _hand_over_held(self, item: pytest.Item) -> int:
        """What the test acquired and a wider-scoped fixture's value, or an object the
        program keeps at module level, still holds is the fixture's, or that module's.

        A session-scoped client that connects on first use opens its socket in the first
        test that uses it; the fixture closes it at its teardown. An app's engine or HTTP
        session made at import keeps the connection its first user opened: not a leak of
        that test (at the end of the session, one never closed is reported as the module's).
        A fixture the test tore down (the last test of its scope: pytest tears the session's
        fixtures down in the last test's teardown, before this check) is a holder still, with
        the value it had: what its teardown left there is its own, as for the tests before.
        What only the traceback of the test's failure holds is that failure's (see
        _failure_holders). Returns how many moved.
        """
        assert self.tracker is not None
        nodeid = item.nodeid
        holders = dict(self.torn_down)
        for label, fixturedef in list(self.wide_fixtures.items()):
            cached = fixturedef.cached_result
            if cached is None:  # torn down
                del self.wide_fixtures[label]
            elif cached[2] is None:  # set up without an error: its value is the holder
                holders[label] = cached[0]
        for label, value in holders.items():
            kept_on = self.kept_on_class.get(label) if value is None else None
            if kept_on is not None:
                # A unittest class's setUpClass (pytest's fixture for it yields None), or a
                # class-scoped fixture that sets ``request.cls.db``: what its setup set on the
                # class (pony's Database, which connects on first use) is its. Not what a test
                # or a function-scoped fixture stores there later: that stays theirs.
                cls, names = kept_on
                holders[label] = tuple(vars(cls).get(name) for name in names)
        # The fixture's, kept from this test: reported so ("held by ... (kept from ...)", during
        # this test), not as acquired during the fixture's setup for the test that first used it.
        holders = {_kept_label(label, nodeid): value for label, value in holders.items()}
        module = getattr(item, "module", None)
        first = [_name_of(module, "")] if isinstance(module, types.ModuleType) else []
        modules: dict[str, str] = {}  # a holder's label -> its module's key

        def kept() -> Iterator[tuple[str, object]]:
            order = [*first, *reversed(self.recent_takers)]
            for key, found in _holders_by_module(self.is_test_file, order):
                for holder, value in found.items():
                    label = _kept_label(holder, nodeid)
                    modules[label] = key
                    yield label, value
            for holder, value in _config_holders(self.config).items():
                yield _kept_label(holder, nodeid), value
            if item.stash.get(_STASH_FAILED, False):  # searched last: what the program keeps comes first
                yield _kept_label(FAILURE_TRACEBACK, nodeid), _failure_holders(_kept_failure())

        def took(label: str) -> None:
            key = modules.get(label)
            if key is not None:
                self.recent_takers.pop(key, None)
                self.recent_takers[key] = None
                while len(self.recent_takers) > _RECENT_TAKERS:
                    del self.recent_takers[next(iter(self.recent_takers))]

        return self.tracker.hand_over_held(nodeid, holders, kept(), on_take=took)

    def _program_holders(self) -> dict[str, object]:
        """What the program keeps (module globals, class attributes, pytest config attributes)."""
        return {**_module_holders(self.is_test_file), **_config_holders(self.config)}

    def _hand_back_let_go(self) -> int:
        """What a module global (or config attribute) took over from a test and no longer holds
        at the end of the session is that test's again (see ``Tracker.hand_back``).

        A framework's current broker or app, set anew by each test's fixture
        (``dramatiq.set_broker``), holds at each test's end what that fixture started; by the end
        of the session it names the last one only, and each earlier one's thread, still running,
        is the leak of the test whose fixture started it, not "held by module global".
        """
        assert self.tracker is not None
        now = self._program_holders()
        now[FAILURE_TRACEBACK] = _failure_holders(_kept_failure())  # the last failure's, if kept

        tests: dict[str, None] = {}

        def holding(label: str) -> tuple[str, object] | None:
            kept = _kept_origin(label, _KEPT)  # a fixture keeps what it took over to its end
            if kept is None:
                return None
            holder, nodeid = kept
            tests[nodeid] = None
            return nodeid, now.get(holder)

        moved = self.tracker.hand_back(holding)
        if moved:
            # What another holder keeps now is that one's (httpie's parser let go of a file the
            # default argument of its main() keeps): said so, not given back with no holder named.
            for nodeid in tests:
                holders = [(_kept_label(holder, nodeid), value) for holder, value in now.items()]
                self.tracker.hand_over_held(nodeid, {}, holders)
        return moved

    def _render(self, leaks: Sequence[Leak], unraisable: BaseException | None = None) -> str:
        assert self.tracker is not None
        text = self.tracker.report(leaks).to_text(depth=self.depth)
        also = "" if unraisable is None else _unraisable_text(unraisable)
        also += self._cut_short(leaks)
        return (
            f"reclaim: this test leaked {_plural(len(leaks), 'resource')}:\n{text}\n{also}"
            "(allow one on purpose with @pytest.mark.reclaim_allow(kind=..., match=...))"
        )

    def _cut_short(self, leaks: Sequence[Leak]) -> str:
        """What to set to see a test's line, when a stack cut at the frames kept has none: a file's,
        at the two frames files keep by default (portalocker's lock file, two calls deep in the
        project's code), or another's, at ``reclaim_depth`` (coverage's own suite: eight frames of
        its data layer, and two tests' leaks merged into one block), with nothing saying the stack
        went on."""
        from .leaks import _records

        kept = _records.file_depth
        for leak in leaks:
            frames = leak.frames
            if any(
                self.is_test_file(frame.filename)
                or frame.filename in self.test_calls_in
                or frame.filename.startswith("<doctest ")  # a doctest's example: the test's line
                for frame in frames
            ):
                continue
            if leak.kind == "file" and not self.depth_given and kept < self.depth and len(frames) >= kept:
                return (
                    f"(files keep {kept} frames, as each costs on every open(): "
                    f"reclaim_depth = {self.depth} in the ini file, or -o reclaim_depth={self.depth}, "
                    "shows the lines that called them)\n"
                )
            if leak.kind != "file" and (len(frames) >= self.depth or leak.cut):
                deeper = 2 * self.depth
                return (
                    f"(stacks keep {self.depth} frames, none of them a test's here: "
                    f"reclaim_depth = {deeper} in the ini file, or -o reclaim_depth={deeper}, "
                    "shows the lines that called them)\n"
                )
        return ""
