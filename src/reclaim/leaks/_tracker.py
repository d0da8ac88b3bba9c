"""The :class:`Tracker`: starts the shared instrumentation and turns records into reports.

Instrumentation is global (one set of wrappers for the process) and
reference-counted: every running tracker holds one reference, the wrappers
are installed by the first ``start()`` and removed by the last ``stop()``.
Each tracker reports only what was acquired after its own start (or after a
:class:`Snapshot`), so trackers started from several places (the CLI, the
pytest plugin, a ``no_leaks`` block) do not see each other's windows.
"""

from __future__ import annotations

import _thread
import gc
import math
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress

from reclaim import _sites, _track
from reclaim._sites import Site

from . import _fds, _files, _holders, _lineage, _records, _threads
from ._holders import is_kind, skip_cache
from ._holders import not_followed as _not_followed
from ._kinds import KINDS, Details, Kind, kind_of, register
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record

# Leak, Report and TrackerStatistics are dataclasses, imported where one is made: dataclasses
# imports inspect, a third of what `reclaim run` paid before the program's first line.
TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Self

    from reclaim._sites import Frame

    from ._report import Ignore, Leak, Report
    from ._stats import TrackerStatistics

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time
_monotonic = time.monotonic

__all__ = [
    "Snapshot",
    "Tracker",
    "context",
    "current_context",
    "set_context",
]

_lock = threading.Lock()
_users = 0
_patches: Patches | None = None


_depths: list[int] = []


def _set_depth() -> None:
    _records.depth = max(_depths)
    _records.file_depth = min(_records.depth, _records.FILE_DEPTH)
    _files.depth_changed()


def _install(depth: int) -> None:
    """Install every kind's instrumentation (first user) or count one more user."""
    global _users, _patches
    with _lock:
        _users += 1
        _depths.append(depth)
        _set_depth()
        if _users > 1:
            return
        from . import _instrument

        patches = Patches()
        try:
            _instrument.install(patches)
            _track.install(_on_acquire, _on_release)
        except BaseException:
            _instrument.uninstall()
            patches.undo()
            _users -= 1
            _depths.remove(depth)
            raise
        _patches = patches


def _uninstall(depth: int) -> None:
    global _users, _patches
    with _lock:
        _users -= 1
        _depths.remove(depth)
        if _depths:
            _set_depth()
        if _users > 0:
            return
        _track.install(None, None)
        from . import _instrument

        _instrument.uninstall()
        if _patches is not None:
            _patches.undo()
            _patches = None
        _records.reset()
        _files.reset()
        _untracked_seen.clear()


def restore_patches() -> int:
    """Set the instrumentation again where another tool put back what it replaced (see
    :meth:`Patches.restore`); return how many replacements were set again."""
    with _lock:
        return _patches.restore() if _patches is not None else 0


def _on_acquire(kind: str, obj: object, description: str, site: Site) -> None:
    kind_of(kind)
    try:
        _records.new(obj, kind, description, site)
    except TypeError:
        # Not weakrefable: track by id; it stays "open" until released (no death notice).
        _records.new(NO_OBJECT, kind, description, site, id(obj))


def _on_release(obj: object) -> None:
    _records.release(id(obj))


def set_context(label: str | None) -> str | None:
    """Label what runs from now on (the pytest plugin sets the test id); return the old label.

    Every acquisition records the label current at that moment, so a leak found
    later (a reference cycle collected two tests on) still names the test that
    made it. The label is process-wide rather than a context variable on purpose:
    threads and tasks a test starts must carry the test's label too.
    """
    old = _records.context
    _records.context = label
    return old


def current_context() -> str | None:
    """The label set by :func:`set_context`, or None."""
    return _records.context


@contextmanager
def context(label: str | None) -> Iterator[None]:
    """Set the context label for the duration of a ``with`` block.

    Inside asyncio code too: a task keeps the label current when it was created (as a thread
    keeps the one it was started under), except within this block, in the task running it.
    """
    old = set_context(label)
    started = _records.origin.get(None)
    token = _records.origin.set((started[0] if started is not None else (), label))
    try:
        yield
    finally:
        with suppress(ValueError):  # left in another context than it was entered in
            _records.origin.reset(token)
        set_context(old)


class Snapshot:
    """A point in time: a report ``since`` it shows only what was acquired after it.

    Attributes:
        seq: the generation the snapshot ended: acquisitions before it have this number or
            lower, later ones a higher one.
        time: ``time.time()`` when it was taken.
        fds: the descriptor table then (None where it cannot be read), the
            baseline for reporting untracked descriptors.
        fd_ids: what each of those descriptors was then (device and inode): one closed
            since and its number given to a new one is not in the baseline any more.

    Frozen, with the ``repr``, equality and hash of the frozen dataclass it was; written out
    because every ``start()`` makes one, and a dataclass imports ``dataclasses`` and
    ``inspect`` (``reclaim run`` would load them before the program's first line).
    """

    __slots__ = ("seq", "time", "fds", "fd_ids")  # noqa: RUF023 - field order, as the dataclass had
    __match_args__ = ("seq", "time", "fds", "fd_ids")

    seq: int
    time: float
    fds: frozenset[int] | None
    fd_ids: Mapping[int, tuple[int, int]] | None

    def __init__(
        self,
        seq: int,
        time: float,
        fds: frozenset[int] | None,
        fd_ids: Mapping[int, tuple[int, int]] | None = None,
    ) -> None:
        set_field = object.__setattr__  # the class's own refuses, as a frozen dataclass's does
        set_field(self, "seq", seq)
        set_field(self, "time", time)
        set_field(self, "fds", fds)
        set_field(self, "fd_ids", fd_ids)

    def _values(self) -> tuple[object, ...]:
        return (self.seq, self.time, self.fds, self.fd_ids)

    def __repr__(self) -> str:
        return (
            f"{type(self).__qualname__}(seq={self.seq!r}, time={self.time!r}, fds={self.fds!r}, "
            f"fd_ids={self.fd_ids!r})"
        )

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Snapshot) and other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: object) -> None:
        if type(self) is Snapshot or name in Snapshot.__slots__:
            raise _frozen(f"cannot assign to field {name!r}")
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        if type(self) is Snapshot or name in Snapshot.__slots__:
            raise _frozen(f"cannot delete field {name!r}")
        super().__delattr__(name)

    def __getstate__(self) -> list[object]:
        return list(self._values())

    def __setstate__(self, state: list[object]) -> None:
        for name, value in zip(Snapshot.__slots__, state, strict=False):
            object.__setattr__(self, name, value)


def _frozen(message: str) -> AttributeError:
    """The error assigning to a frozen dataclass raises (its module is imported only now)."""
    from dataclasses import FrozenInstanceError

    return FrozenInstanceError(message)


_integration = _records.integration


def _discover() -> None:
    """Record the connections uvloop's servers accepted (see :func:`._uvloop.discover`)."""
    uvloop = _integration("_uvloop")
    if uvloop is not None:
        uvloop.discover()


def _take_snapshot() -> Snapshot:
    _discover()  # what C code made before the snapshot is recorded before it
    fds = _fds.list_fds()
    ids = None if fds is None else {fd: ident for fd in fds if (ident := _fds.identity(fd)) is not None}
    if fds is not None:
        _fds.prune(fds)
    return Snapshot(_records.checkpoint(), _time(), fds, ids)


class Tracker:
    """Records every resource acquisition while started, and lists what is still open.

    Safe to create and start from several places: they share one global
    instrumentation, counted, and each lists only its own window (or, with
    ``context=``, only what was acquired under one label).

    Args:
        depth: frames recorded per acquisition (the user's line and its callers);
            ``open()``, the hot path, keeps at most two whatever the depth.

    Example::

        from reclaim.leaks import Tracker

        with Tracker() as tracker:
            mark = tracker.snapshot()
            run_step()
            report = tracker.report(since=mark, grace=1.0)
            if report:
                print(report.to_text())

    Raises:
        TypeError: *depth* is not an int.
        ValueError: *depth* is below 1.
        RuntimeError: ``start()`` on a running tracker, or ``snapshot()``/``leaks()`` on a stopped one.
    """

    def __init__(self, *, depth: int = 8) -> None:
        if isinstance(depth, bool) or not isinstance(depth, int):
            raise TypeError(f"depth must be an int >= 1 (frames kept per acquisition), got {depth!r}")
        if depth < 1:
            raise ValueError(f"depth must be an int >= 1 (frames kept per acquisition), got {depth!r}")
        self.depth = depth
        self._start: Snapshot | None = None

    def __repr__(self) -> str:
        if self._start is None:
            return f"<Tracker stopped depth={self.depth}>"
        return f"<Tracker running depth={self.depth}: {len(_records.live)} live records, {_users} users>"

    @property
    def running(self) -> bool:
        """Whether this tracker is started."""
        return self._start is not None

    def start(self) -> Self:
        """Begin tracking (installing the instrumentation if nobody else has); return self."""
        if self._start is not None:
            raise RuntimeError(f"{self!r} is already started; stop() it first or use another Tracker")
        _install(self.depth)
        self._start = _take_snapshot()
        return self

    def stop(self) -> None:
        """Stop tracking; the instrumentation goes when its last user stops. Idempotent."""
        if self._start is None:
            return
        self._start = None
        _uninstall(self.depth)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def snapshot(self) -> Snapshot:
        """Mark now: ``leaks(since=mark)`` lists only what is acquired after this point."""
        self._require()
        return _take_snapshot()

    def statistics(self) -> TrackerStatistics:
        """Counters of the instrumentation (see :class:`TrackerStatistics`)."""
        from ._stats import TrackerStatistics

        start = self._start
        return TrackerStatistics(
            running=start is not None,
            users=_users,
            live=len(_records.live),
            collected=len(_records.collected),
            files=len(_files.table),
        )

    def hand_over_held(
        self,
        context: str,
        holders: Mapping[str, object],
        module_holders: Mapping[str, object] | Iterable[tuple[str, object]] = {},
        *,
        on_take: Callable[[str], object] | None = None,
    ) -> int:
        """Relabel what was acquired under *context* and is still held by one of *holders*.

        *holders* maps a label to an object that outlives the code labelled *context*:
        the pytest plugin passes the values of the session-, module- and class-scoped
        fixtures still set up. A session-scoped client that connects on first use opens
        its socket during the first test that uses it, yet the socket is the fixture's,
        closed at its teardown; so what an open resource's holder still references (through
        instances and containers; classes, modules and functions are not followed) takes the
        holder's label (a ``Pipe()`` pair, which has no object of its own, through its
        ends). *module_holders* are looked through after them, the same way but for
        themselves: objects the program keeps at module level (an engine made at import), of
        which a resource the code under *context* stored there itself is not one. Last, the
        library clients still open that were made outside *context* (an engine a plugin made
        at session start, as SQLAlchemy's own test plugin keeps ``testing.db``, which the first
        test to use it connects): what one keeps takes the label it was made under. The first
        holder to reach a resource takes it; the search looks at HOLDER_SEARCH objects in
        all, and no further once it found every resource still open. A library pool's record
        of the connections it handed out is not looked through: a connection checked out and
        kept is its taker's, not the pool owner's. *module_holders* may be (label, object) pairs
        made as the search goes: those after the last one it needs are never made. *on_take* is
        called with the label of each holder that takes something. Returns how many resources
        were relabelled.
        """
        self._require()
        targets = _open_under(context.__eq__)
        pipes = _integration("_multiprocessing")
        ends = pipes.open_pipe_ends(context) if pipes is not None else []  # alive while searched
        for end, rec in ends:
            targets[id(end)] = rec
        moved = 0
        pooled = _integration("_pooled")
        # What the code under *context* closed since (an engine it disposed) may still be handed
        # over, but is not searched for: once the open ones are found, the search ends.
        wanted = [key for key, held in targets.items() if _open_now(held)]
        search = _Search(targets, _not_followed(), pooled.in_use() if pooled is not None else (), wanted)
        pairs = module_holders.items() if isinstance(module_holders, Mapping) else module_holders
        any_targets = bool(targets)

        def roots() -> Iterator[tuple[str, object, bool]]:
            yield from ((label, holder, True) for label, holder in holders.items())
            for label, holder in pairs:
                yield label, holder, False
                if not search.wanted or not search.budget:
                    return  # the next module's holders are not listed
            if any_targets and search.wanted:
                yield from _clients_made_elsewhere(context)

        for label, holder, itself in roots():
            if not search.wanted or not search.budget:
                break
            if not itself and id(holder) in targets:
                # A module global that is itself a resource of *context* (a test's ``global S;
                # S = BackgroundScheduler()``) stays its, and so do its parts (its thread and
                # pool): taken over, they left the scheduler holding nothing, so no entry, and
                # the test passed with it running.
                continue
            for found in search.reachable(holder, itself):
                held = targets.pop(found, None)
                if held is None:
                    continue  # taken along with the client that holds it (see _parts_along)
                if isinstance(held, Record):
                    if held.context != context:
                        continue  # a Pipe() pair moved through its other end
                    held.context = label
                    moved += _parts_along(held, context, label, targets, search.wanted)
                else:  # a file's raw layer
                    _files.relabel(held, label)
                moved += 1
                if on_take is not None:
                    on_take(label)
        return moved

    def all_reachable(self, context: str, roots: Iterable[object]) -> bool:
        """Whether every open resource labelled *context* that has an object of its own is
        reachable from *roots* (objects surely alive: a test's fixture values), within the
        search's budget: then none is a reference cycle's garbage that a full collection would
        close, and the collection can be spared (pottery's suite, each test leaking a client its
        fixture still holds: 3.7x the CPU, most of it full collections that closed nothing)."""
        self._require()
        targets = _open_under(context.__eq__)
        wanted = [key for key, held in targets.items() if _open_now(held)]
        if not wanted:
            return True
        search = _Search(targets, _not_followed(), (), wanted)
        for root in roots:
            search.reachable(root, True)
            if not search.wanted:
                return True
            if not search.budget:
                return False
        return False

    def hand_back(self, holding: Callable[[str], tuple[str, object] | None]) -> int:
        """Give back what a holder of :meth:`hand_over_held`'s *module_holders* has let go.

        *holding* maps a label to None, or, for a label a module holder was handed resources
        under, to (the label they were handed over from, what that holder is now: None when
        gone). A module global that names another object now (a framework's current app or
        broker, set anew by each test) no longer keeps what it took over: each resource it does
        not reach any more, and each one the garbage collector closed since, takes back the
        label it had, so the test that acquired it is blamed at the end, not the module. Labels
        whose holder is one object are searched together; when the search runs out of budget
        (HOLDER_SEARCH), nothing is given back for it. Returns how many resources were relabelled.
        """
        self._require()
        asked: dict[str | None, tuple[str, object] | None] = {}

        def handed(label: str | None) -> bool:
            if label not in asked:
                asked[label] = holding(label) if label is not None else None
            return asked[label] is not None

        targets = _open_under(handed)
        moved = 0
        for rec in list(_records.collected):  # closed by the collector: no holder keeps it
            found = asked[rec.context] if handed(rec.context) else None
            if found is not None:
                rec.context = found[0]
                moved += 1
        groups: dict[int, tuple[object, set[str]]] = {}
        for label, found in asked.items():
            if found is not None and label is not None:
                groups.setdefault(id(found[1]), (found[1], set()))[1].add(label)
        pooled = _integration("_pooled")
        for holder, labels in groups.values():
            mine = {key: held for key, held in targets.items() if _label(held) in labels}
            if not mine:
                continue
            reached: set[int] = set()
            if holder is not None:
                search = _Search(mine, _not_followed(), pooled.in_use() if pooled is not None else ())
                reached.update(search.reachable(holder, False))
                if not search.budget:
                    continue  # it was not looked through to the end: what it may hold stays its
            for key, held in mine.items():
                if key in reached:
                    continue
                origin = asked[_label(held)]
                assert origin is not None  # only handed-over labels are in *labels*
                if isinstance(held, Record):
                    held.context = origin[0]
                else:  # a file's raw layer
                    _files.relabel(held, origin[0])
                moved += 1
        return moved

    def leaks(
        self,
        since: Snapshot | None = None,
        *,
        context: str | None = None,
        grace: float = 0.0,
        ignore_kinds: Iterable[str] = (),
        ignore: Ignore | Iterable[Ignore] | None = None,
        collect: bool = False,
        include_framework: bool = False,
        untracked_fds: bool = True,
        _interrupted: Callable[[], object] | None = None,
    ) -> list[Leak]:
        """What was acquired after *since* (default: this tracker's start) and not released.

        A leak is a resource still open now, or one the garbage collector closed
        (or, for asyncio tasks, one cancelled at loop shutdown) instead of the program.
        The sockets an HTTP client not closed holds (aiohttp, httpx) are one leak, the
        client at the line that made it, with them in its ``holds``; the filters below
        apply to each of them too, and a client goes when none of them is left.

        Args:
            since: a :meth:`snapshot`; only acquisitions after it count.
            context: only resources acquired under this label (see :func:`set_context`).
            grace: seconds to wait for threads, children and tasks still winding
                down (a client's among what it holds too), polled with back-off
                (1 ms doubling to 100 ms); no wait at all when none is left over.
            ignore_kinds: kinds not to list (``{"thread"}``).
            ignore: filters: a regular expression searched in the description
                (``r"\\.log$"``), a ``Leak -> bool`` predicate, or several of them.
            collect: run ``gc.collect()`` first, so resources held only by
                reference cycles are closed now and listed as collected; after a
                wait for what was winding down, once more as the wait ends (what
                a thread dropped as it ended), not on every poll.
            include_framework: also list resources acquired entirely by
                framework code (pytest, the standard library, reclaim) with no
                user frame on the stack; off by default, as they are not yours.
            untracked_fds: diff the descriptor table against *since*.

        Raises:
            RuntimeError: the tracker is not running.
            TypeError: *ignore_kinds* is a string or holds a non-string, or *grace* is not a number.
            ValueError: *grace* is negative, NaN or infinite, or a kind in *ignore_kinds* is not
                one of ``KINDS``.
        """
        start = self._require()
        if isinstance(grace, bool) or not isinstance(grace, int | float):
            raise TypeError(f"grace must be a number of seconds >= 0, got {grace!r}")
        if not grace >= 0:  # NaN too: it would wait for ever
            raise ValueError(f"grace must be >= 0 seconds, got {grace!r}")
        if grace == math.inf:
            raise ValueError("grace must be finite: it is how long the check waits for threads still running")
        window = since if since is not None else start
        skip_kinds = _known_kinds(ignore_kinds)
        filters = [_compile(f) for f in _filters(ignore)]
        deadline = _monotonic() + grace
        delay = 0.001

        def find(collecting: bool) -> list[Leak]:
            if collecting:
                gc.collect()
            return [
                kept
                for leak in _find(window, context, include_framework, untracked_fds)
                if (kept := _kept(leak, skip_kinds, filters)) is not None
            ]

        running = _thread._count()
        found = find(collect)
        # A thread that ended during that first look (after its collection) dropped what it
        # held, maybe the last way to a cycle: it counts as a wait (asyncio's watcher thread
        # holding a child's transport, ended as its child did).
        waited = _thread._count() < running
        while True:
            remaining = deadline - _monotonic()
            if remaining <= 0 or not any(_winding_down(leak) for leak in found):
                # A collection per poll (up to 16 in a second, tens of ms each with many objects)
                # changes nothing a thread waits on: one after the wait does what they did.
                return find(True) if collect and waited else found
            if _interrupted is not None and _interrupted():  # a signal ends the wait: report now
                return found
            time.sleep(min(delay, remaining))
            delay = min(delay * 2, 0.1)
            waited = True
            found = find(False)

    def report(
        self,
        leaks: Iterable[Leak] | None = None,
        *,
        since: Snapshot | None = None,
        context: str | None = None,
        grace: float = 0.0,
        ignore_kinds: Iterable[str] = (),
        ignore: Ignore | Iterable[Ignore] | None = None,
        collect: bool = False,
        include_framework: bool = False,
        untracked_fds: bool = True,
    ) -> Report:
        """A :class:`Report` of *leaks* (a list from :meth:`leaks`), or of a fresh check.

        Without *leaks*, the other arguments are those of :meth:`leaks`.

        Raises:
            TypeError, ValueError: as :meth:`leaks` (*ignore_kinds* is checked even with *leaks*).
        """
        if leaks is not None:
            _known_kinds(ignore_kinds)  # ignored with a list given, but a misspelt kind is still an error
        else:
            leaks = self.leaks(
                since,
                context=context,
                grace=grace,
                ignore_kinds=ignore_kinds,
                ignore=ignore,
                collect=collect,
                include_framework=include_framework,
                untracked_fds=untracked_fds,
            )
        from ._report import Report

        return Report(tuple(leaks))

    def _require(self) -> Snapshot:
        if self._start is None:
            raise RuntimeError("the tracker is not running; call start() first")
        return self._start


def _winding_down(leak: Leak) -> bool:
    """Whether *leak* is open and may still end by itself: of a kind that may (a thread), or a
    holder of one (an MQTT client's loop thread, ending after ``disconnect()``)."""
    return leak.state == "open" and (
        kind_of(leak.kind).worth_waiting_for(leak.details) or any(_winding_down(held) for held in leak.holds)
    )


def _known_kinds(kinds: Iterable[str]) -> frozenset[str]:
    """*kinds* checked as ``no_leaks``, the CLI and the ini option check them (one error message)."""
    from ._check import known_kinds  # _check imports this module

    return known_kinds(kinds, "ignore_kinds")


def _filters(ignore: Ignore | Iterable[Ignore] | None) -> list[Ignore]:
    if ignore is None:
        return []
    import re  # here, not at the tracker's import: a program that does not use re pays nothing

    if isinstance(ignore, (str, re.Pattern)) or callable(ignore):
        return [ignore]
    return list(ignore)


def _compile(spec: Ignore) -> Callable[[Leak], bool]:
    import re

    if isinstance(spec, (str, re.Pattern)):
        pattern = re.compile(spec) if isinstance(spec, str) else spec
        return lambda leak: pattern.search(leak.description) is not None
    return spec


def _kept(leak: Leak, skip_kinds: frozenset[str], filters: list[Callable[[Leak], bool]]) -> Leak | None:
    """*leak* as the filters leave it: a holder goes with the last leak it holds (an ignored
    kind, an allowed match: ``reclaim_allow(kind="socket")`` still allows a client's socket)."""
    if leak.kind in skip_kinds or any(f(leak) for f in filters):
        return None
    if not leak.holds:
        return leak
    holds = tuple(held for held in leak.holds if _kept(held, skip_kinds, filters) is not None)
    if not holds and kind_of(leak.kind).holder:
        return None
    if len(holds) == len(leak.holds):
        return leak
    import dataclasses  # a Leak was made: the module is loaded

    return dataclasses.replace(leak, holds=holds)


def _is_framework(site: Any) -> bool:
    """Acquired by framework code, or by a library's owned machinery (joblib's loky)."""
    code = _sites.first_code(site)
    return code is not None and (_sites.is_framework(code.co_filename) or _sites.is_owned(code))


#: Kinds whose record without an object keeps, first in its info, the path the program was given.
_PATHS = frozenset({"tempdir", "tempfile"})


def _open_under(labelled: Callable[[str | None], bool]) -> dict[int, Any]:
    """id of the object -> its record (or a file's raw layer), for each open resource whose label
    *labelled* accepts."""
    targets: dict[int, Any] = {}
    for rec in list(_records.live.values()):
        if not labelled(rec.context):
            continue
        obj = rec()
        if rec.state == OPEN and obj is not None and obj is not NO_OBJECT:
            targets[id(obj)] = rec
        elif obj is NO_OBJECT and rec.state == OPEN and rec.kind in _PATHS and type(rec.info[0]) is str:
            # A path mkdtemp() or mkstemp() made: the very str it returned, which its record keeps
            # (so no other object has its id). What keeps that str (an object that removes the
            # directory as it dies) holds the path as it holds the file beside it.
            targets[id(rec.info[0])] = rec
    for ref in list(_files.table):
        raw = ref()
        facts = _files.facts_of(raw)
        if raw is not None and facts is not None and not raw.closed and labelled(_files.label_of(facts)):
            targets[id(raw)] = raw
    return targets


def _open_now(held: Any) -> bool:
    """Whether a target of :func:`_open_under` is open now: a record stays open until a check
    finds its resource closed (an engine disposed, a client closed); a raw file is open."""
    if not isinstance(held, Record):
        return True
    obj = held()
    return obj is None or obj is NO_OBJECT or _still_open(held, obj)


def _parts_along(rec: Record, context: str, label: str, targets: dict[int, Any], wanted: set[int]) -> int:
    """*rec*, a library client's (an engine) just relabelled *label*, takes along what it holds
    that is still under *context*: its pool's idle connections are its, and a search that ran
    out of budget between the client and them left them to the test, reported on their own
    while the engine holding them was not. A connection checked out and kept stays its taker's
    (see :mod:`._pooled`). Returns how many were relabelled; they are targets no more."""
    kind = KINDS.get(rec.kind)
    obj = rec()
    if obj is None or obj is NO_OBJECT:
        return 0
    pexpect = _integration("_pexpect")
    if pexpect is not None and rec.kind in pexpect.KINDS:
        # A spawn's terminal and child, listed under it (see _pexpect.fold): they go with it.
        # A failing test's traceback kept it: its bare terminal was the test's leak, and the
        # spawn the failure's at the end, holding it again.
        fd, records = pexpect.parts(obj)
        moved = 0
        for key, raw in list(targets.items()):
            if fd is not None and not isinstance(raw, Record) and _fds.fileno_of(raw) == fd:
                del targets[key]
                wanted.discard(key)
                _files.relabel(raw, label)
                moved += 1
        for child in records:
            if child.context == context:
                child.context = label
                moved += 1
        return moved
    if kind is None or not kind.holder:
        return 0
    try:
        parts = _holders.claim(obj, rec.kind)
    except Exception:  # a half-built client: it holds nothing we can name
        return 0
    pooled = _integration("_pooled")
    moved = 0
    for part in parts:
        key = id(part())
        if targets.get(key) is not part or part.context != context:
            continue
        if pooled is not None and pooled.checked_out_of(part) is not None:
            continue
        del targets[key]
        wanted.discard(id(part))
        part.context = label
        moved += 1 + _parts_along(part, context, label, targets, wanted)  # a PyMySQL connection's socket
    return moved


def _label(held: Any) -> str | None:
    """The label of a target of :func:`_open_under`."""
    if isinstance(held, Record):
        return held.context
    facts = _files.facts_of(held)
    return _files.label_of(facts) if facts is not None else None


#: How many objects hand_over_held() looks at, from all its holders together, at most.
HOLDER_SEARCH = 100_000


def _clients_made_elsewhere(context: str | None) -> list[tuple[str, object, bool]]:
    """(label it was made under, client, False) for each library client still open that was made
    outside *context*: what it keeps (an engine's idle connections) is its, not *context*'s."""
    roots: list[tuple[str, object, bool]] = []
    for rec in list(_records.live.values()):
        if rec.context is None or rec.context == context or rec.state != OPEN:
            continue
        kind = KINDS.get(rec.kind)
        obj = rec()
        holder = kind is not None and kind.holder and obj is not None and obj is not NO_OBJECT
        if holder and _still_open(rec, obj):
            roots.append((rec.context, obj, False))
    return roots


class _Search:
    """Breadth-first searches from holder after holder, sharing what they saw and one budget:
    what an earlier holder's search went through (and took) is not searched again. Once every
    target of *wanted* (default: all) is found, nothing more is looked at: an engine a session
    keeps reaches its first idle connection in a few objects, and its compiled-statement cache
    some hundred thousand more."""

    def __init__(
        self,
        targets: Mapping[int, Any],
        not_followed: tuple[type, ...],
        skip: Iterable[object] = (),
        wanted: Iterable[int] | None = None,
    ) -> None:
        self.targets = targets
        self.not_followed = not_followed
        #: ids of what is never looked through; *skip* is kept alive meanwhile, so its ids stay its.
        self.skip = list(skip)
        self.seen: set[int] = {id(obj) for obj in self.skip}
        self.budget = HOLDER_SEARCH
        #: The targets (their records: a Pipe() pair's two ends share one) not found yet.
        self.wanted = {id(targets[key]) for key in (targets if wanted is None else wanted)}
        #: A logger is not followed (its manager reaches every logger's handlers), but it holds
        #: its own handlers: an app's log manager kept at module level holds the file it logs to.
        self.logger = getattr(sys.modules.get("logging"), "Logger", None)

    def reachable(self, holder: object, itself: bool) -> list[int]:
        """The ids among the targets that *holder* references, directly or through its data
        (or is, with *itself*)."""
        targets, seen, not_followed = self.targets, self.seen, self.not_followed
        is_tracked = gc.is_tracked
        # type(), never isinstance(): that asks a proxy (Django's LazyObject) for its __class__,
        # setting up what it stands for, the program's code run by a search that only looks.
        if id(holder) in seen:
            return []
        if is_kind(type(holder), not_followed):
            handlers = self._handlers_of(holder)  # a module's logger: its own handlers only
            if handlers is None:
                return []
            holder = handlers
        seen.add(id(holder))
        found = [id(holder)] if itself and id(holder) in targets else []
        wanted = self.wanted
        wanted.difference_update(id(targets[key]) for key in found)
        pending = deque([holder])
        skips = skip_cache(not_followed)
        while pending and self.budget and wanted:
            self.budget -= 1
            for ref in gc.get_referents(pending.popleft()):
                key = id(ref)
                if key in seen:
                    continue
                seen.add(key)
                if key in targets:
                    found.append(key)
                    wanted.discard(id(targets[key]))
                if not is_tracked(ref):
                    continue  # an int, a str, a tuple of them: holds nothing, costs no budget
                # is_kind(), cached by class (see _holders.claim)
                cls = type(ref)
                known = skips.get(id(cls))
                if known is None or known[0] is not cls:
                    known = skips[id(cls)] = (cls, is_kind(cls, not_followed))
                if not known[1]:
                    pending.append(ref)
                elif (handlers := self._handlers_of(ref)) is not None:
                    pending.append(handlers)
        return found

    def _handlers_of(self, obj: object) -> list[Any] | None:
        """The handlers of *obj*, a logger not followed otherwise (see :attr:`logger`), when the
        search has not seen them yet; else None."""
        if self.logger is None or not issubclass(type(obj), self.logger):
            return None
        handlers: list[Any] | None = vars(obj).get("handlers")  # its own list, read without its code
        if handlers is None or id(handlers) in self.seen:
            return None
        self.seen.add(id(handlers))
        return handlers


_NEVER = (-1, 0.0)


def _drop_reused_fds(found: list[tuple[Record, Any, str]], pairs: list[tuple[Record, Any]]) -> None:
    """Release the ``os.open()`` descriptors of *found* whose number an object acquired since
    owns: closed by C code (libsndfile closes the descriptor a ``SoundFile`` is given), their
    number went to that object, and the same file opened again there read as the first one
    still open, reported beside the file that holds it now."""
    owned: dict[int, tuple[int, float]] = {}  # descriptor -> when an object holding it was made
    for rec, obj in pairs:
        if rec.kind == "fd" or obj is None:
            continue
        try:
            held = kind_of(rec.kind).fds(obj, rec)
        except Exception:  # an object that cannot say holds nothing we can name
            continue
        for fd in held:
            owned[fd] = max(owned.get(fd, _NEVER), (rec.seq, rec.time))
    stale = [
        rec
        for rec, _, _ in found
        if rec.kind == "fd" and owned.get(rec.key[1], _NEVER) > (rec.seq, rec.time)  # type: ignore[index]
    ]
    for rec in stale:
        _records.release(rec.key)
        rec.state = _records.RELEASED
    if stale:
        gone = {id(rec) for rec in stale}  # by identity: records are weak references, equal by referent
        found[:] = [item for item in found if id(item[0]) not in gone]


def _find(window: Snapshot, context: str | None, include_framework: bool, untracked_fds: bool) -> list[Leak]:
    _discover()
    _lineage.look()  # records what outlived a child that ended since the last check
    now = _time()
    # (record, live object or None) of everything that may still be open, every window.
    pairs: list[tuple[Record, Any]] = []
    for rec in list(_records.live.values()):
        obj = rec()
        if obj is not None and rec.state == OPEN:
            pairs.append((rec, None if obj is NO_OBJECT else obj))
    pairs.extend(_files.open_files())

    def wanted(rec: Record) -> bool:
        return (
            rec.seq > window.seq
            and (context is None or rec.context == context)
            and (include_framework or not _is_framework(rec.site))
        )

    # A file installed as a standard stream is the process's, but it still owns its descriptor.
    streams = _files.standard_streams()
    found = [
        (rec, obj, "open")
        for rec, obj in pairs
        if wanted(rec) and id(obj) not in streams and _still_open(rec, obj)
    ]
    if any(rec.kind == "fd" for rec, _, _ in found):
        _drop_reused_fds(found, pairs)
    found.extend((rec, None, rec.why or "collected") for rec in list(_records.collected) if wanted(rec))
    found.sort(key=lambda item: (item[0].seq, item[0].time))
    held = _holders.fold(found)
    _threads.fold(found, held)
    dask = _integration("_dask")  # loaded with distributed's clusters and clients
    if dask is not None:
        dask.fold(found, held)
    apscheduler = _integration("_apscheduler")  # loaded with APScheduler's schedulers
    if apscheduler is not None:
        apscheduler.fold(found, held)
    loops = _integration("_loops")  # loaded with asyncio: no loop, no default executor
    if loops is not None:
        loops.fold_executors(found, held)
    watchdog = _integration("_watchdog")  # loaded with watchdog's observers
    if watchdog is not None:
        watchdog.fold(found, held)
    pexpect = _integration("_pexpect")  # loaded with ptyprocess
    if pexpect is not None:
        pexpect.fold(found, held)
    mysql = _integration("_mysql")  # loaded with mysqlclient or Connector/Python
    if mysql is not None:
        mysql.fold(found, held)
    jupyter = _integration("_jupyter")  # loaded with jupyter_client
    if jupyter is not None:
        jupyter.fold(found, held)

    def leak(rec: Record, obj: Any, state: str) -> Leak:  # a holder's parts, and theirs (_holders.PARTS)
        return _leak(rec, obj, state, now, [leak(*item) for item in held.get(id(rec), ())])

    leaks = [leak(*item) for item in found]
    if untracked_fds and window.fds is not None:
        leaks.extend(_untracked(window, pairs, context, now))
    return leaks


def _still_open(rec: Record, obj: Any) -> bool:
    try:
        return kind_of(rec.kind).is_open(obj, rec)
    except Exception:  # a half-built or exotic object must not break the whole check
        return False


def _leak(rec: Record, obj: Any, state: str, now: float, holds: Iterable[Leak] = ()) -> Leak:
    try:
        description, details = kind_of(rec.kind).describe(obj, rec)
    except Exception as exc:  # describing must never hide the leak itself
        description, details = f"<cannot describe: {exc!r}>", {}
    was = None
    pooled = _integration("_pooled")
    source = pooled.checked_out_of(rec) if pooled is not None else None
    if source is not None:  # what it is says little of how it leaked: a pool lent it, never given back
        pool, give_back, name = pooled.lender(source, obj)
        description += f", checked out of {pool} and never given back ({give_back})"
        details = {**details, "checked_out_of": source}
        before = pooled.before_checkout(rec)
        if before is not None:  # the leak it is again once given back (a disposed pool's)
            site, label, generation, made, thread = before
            frames = tuple(_sites.frames(_records.site_of(site)))
            was = (generation, label, made, thread, frames)
        if name is not None:
            details["pool_name"] = name
    django = _integration("_django")
    noted = django.noted(rec) if django is not None else None
    if noted is not None:  # a connection Django keeps for its thread: which alias, who closes it
        description += noted[0]
        details = {**details, **noted[1]}
    dropped = getattr(rec, "dropped", None)
    if dropped is not None and "dropped_at" not in details:  # the program's line that let it go
        code, line, *closer = dropped  # and the finalizer that closed it, if one did
        details = {**details, "dropped_at": _sites.where(code, line)}
        if closer:
            details["closed_by"] = closer[0]
    from ._report import Leak

    site = _records.site_of(rec.site)
    return Leak(
        kind=rec.kind,
        description=description,
        state=state,
        frames=tuple(_sites.frames(site)),
        thread=rec.thread,
        context=rec.context,
        pid=_records.pid_of(rec.seq),
        acquired_at=rec.time,
        age=max(0.0, now - rec.time),
        details=details,
        seq=rec.seq,
        holds=tuple(holds),
        cut=len(site) >= _records.depth and not _sites.in_test_runner(site[-1][0]),
        was=was,
    )


#: (fd, target) -> (context, first seen): an untracked descriptor is blamed on the label current
#: when a check first saw it, not on whatever runs when a later check sees it again.
_untracked_seen: dict[tuple[int, str], tuple[str | None, float]] = {}

#: What the kernel adds to a descriptor's target once its file is removed.
_DELETED = " (deleted)"


def _seen_as(target: str | None) -> str:
    """*target*, a descriptor's, as :data:`_untracked_seen` keys it: its file removed, it is the
    same descriptor (PyTables' tests remove the HDF5 file their leaked handle keeps open: it was
    blamed again at the end, on the session). A closed one's (None) is no key."""
    if target is None:
        return ""
    return target[: -len(_DELETED)] if target.endswith(_DELETED) else target


#: The files of the test tools loaded as plugins (installed pytest plugins), set by the pytest
#: plugin: a thread whose stack is theirs and the framework's only (pytest-rerunfailures' server,
#: parked in ``accept()`` for the whole session) runs none of the program's code (see below).
TOOL_FILES: frozenset[str] = frozenset()


def _other_threads_run() -> bool:
    """Whether a thread other than this one runs Python (and so may still close a descriptor).

    A test tool's thread does not count: it closes none of the program's descriptors, and while
    it ran, every check that found an untracked one sat out its whole grace period.
    """
    frames = sys._current_frames()
    if len(frames) == 1:
        return False
    me = threading.get_ident()
    return any(not _tool_thread(frame) for ident, frame in frames.items() if ident != me)


def _tool_thread(frame: FrameType | None) -> bool:
    """Whether the stack ending in *frame* runs a test tool's code (:data:`TOOL_FILES`) and
    otherwise the framework's only. A thread of the standard library's alone does count: an
    event loop's waiting in ``select()`` runs the program's callbacks next."""
    tool = False
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename in TOOL_FILES:
            tool = True
        elif not _sites.is_framework(filename):
            return False
        frame = frame.f_back
    return tool


def _may_close_meanwhile(details: Mapping[str, Any]) -> bool:
    """Whether an untracked descriptor may still be closed by someone else: another thread runs
    Python, or C threads that close descriptors on their own do (see ``_fds.CLOSING_IN_C``)."""
    return _other_threads_run() or any(running() for running in _fds.CLOSING_IN_C)


def untracked_closed_by(collect: Callable[[], object], leaks: list[Leak]) -> list[Leak]:
    """Run *collect* (a garbage collection) and return the untracked descriptors among *leaks* it
    closed, each as closed by the garbage collector.

    C code's descriptor an object owns, the object left to the collector in a reference cycle
    (pygit2's ``Repository`` and libgit2's pack file), was closed by the check's own collection
    before it was looked at again: the test passed, where a Python file so left was reported.
    Not while another thread may close one meanwhile (see :func:`_may_close_meanwhile`), and
    only a file's (its target a path): a socket C code opened in a connect that failed (libpq's,
    through a network test's proxy) is kept by the error's traceback, a cycle of the library's
    frames the program never sees, until a collection closes it."""
    import dataclasses  # only with leaks found: a clean run imports none of it (see _report)

    untracked = [
        leak
        for leak in leaks
        if leak.kind == "untracked-fd"
        and leak.state == "open"
        and str(leak.details.get("target", "")).startswith("/")
    ]
    before = [(leak, _fds.identity(leak.details["fd"])) for leak in untracked]
    collect()
    if not before or _may_close_meanwhile({}):
        return []
    return [
        dataclasses.replace(leak, state="collected")
        for leak, identity in before
        if identity is not None and _fds.identity(leak.details["fd"]) != identity
    ]


#: A descriptor no hook saw opened is waited for in a check's grace period, like a thread: C
#: code may still be making the object that will own it (a pool's background thread inside
#: libpq's connect, psycopg's record made once connect returns), or closing it (libzmq's I/O
#: thread, a connection of a socket the program closed). Only while another thread runs (or C
#: threads of that kind): with the checking thread alone, nothing can close it meanwhile
#: (`reclaim run` at the exit of a program that left one would otherwise sit out its whole
#: grace period).
register(Kind("untracked-fd", waitable=_may_close_meanwhile))

#: What the kernel's name for an anonymous descriptor (``/proc/self/fd``) is, said after it: no
#: hook saw one made, so no line says what made it (kombu's pollers were 17 bare
#: ``anon_inode:[eventpoll]`` entries in Celery's tests).
EVENTPOLL = "anon_inode:[eventpoll]"
ANONYMOUS = {
    EVENTPOLL: "an epoll instance made by C code, or before tracking started",
    # The rest are made by calls of os that are tracked (its eventfd, timerfd_create, pidfd_open):
    # one not seen made is C code's.
    "anon_inode:[eventfd]": "an eventfd, made by C code",
    "anon_inode:[timerfd]": "a timerfd, made by C code",
    "anon_inode:[signalfd]": "a signalfd, made by C code",
    "anon_inode:[pidfd]": "a pidfd, made by C code",
    "anon_inode:inotify": "an inotify instance, made by C code or through ctypes",
}
#: Random devices C code opens once and keeps for the process: libqpdf's (in pikepdf's wheel),
#: libsodium's, older OpenSSL's. One was the leak of whichever test first needed random bytes.
RANDOM_DEVICES = frozenset({"/dev/urandom", "/dev/random"})

#: Said after an untracked descriptor open on a directory: ``os.scandir()`` opens one no hook
#: sees (its iterator is C's, neither weakly referable nor cheap to watch), and keeps it until
#: the iterator is exhausted, closed or collected; a directory ``os.open()`` opened is tracked.
DIRECTORY = "a directory: an os.scandir() iterator not closed (a with-block or close()), or C code's"


def _later_paths(still_open: list[tuple[Record, Any]]) -> list[str]:
    """The files the open resources opened from C code since they were made (``Kind.later_paths``)."""
    paths: list[str] = []
    for rec, obj in still_open:
        try:
            paths.extend(kind_of(rec.kind).later_paths(obj, rec))
        except Exception:  # noqa: S110 - as for Kind.paths: what cannot be named is not held
            pass
    return paths


def _untracked(
    window: Snapshot, pairs: list[tuple[Record, Any]], context: str | None, now: float
) -> list[Leak]:
    current = _fds.list_fds()
    if current is None:
        return []
    # A descriptor seen before that is closed now is forgotten: one opened later with its number
    # is a new one, blamed on the label current when it is first seen.
    for key in [
        key
        for key in _untracked_seen
        if key[0] not in current or _seen_as(_fds.describe_fd(key[0])) != key[1]
    ]:
        del _untracked_seen[key]
    baseline = window.fds or frozenset()
    ids = window.fd_ids
    if ids is not None:
        # A descriptor of the baseline closed since, its number given to a new one (the
        # kernel hands out the lowest free number), is not the baseline's any more. The
        # standard streams stay: redirected (pytest's capture dup2()s onto them), they are
        # still the process's own.
        baseline = frozenset(fd for fd in baseline & current if fd <= 2 or _fds.identity(fd) == ids.get(fd))
    candidates = sorted(current - baseline)
    if not candidates:
        return []
    owned: set[int] = set()
    paths: list[str] = []
    still_open = []
    for rec, obj in pairs:  # everything tracked and open, whatever its window, owns its fds
        if not _still_open(rec, obj):
            continue
        still_open.append((rec, obj))
        kind = kind_of(rec.kind)
        try:
            owned.update(kind.fds(obj, rec))
            paths.extend(kind.paths(obj, rec))
        except Exception:  # noqa: S110 - an object that cannot say owns nothing we can name
            pass
    for rec in list(_records.collected):
        # Reported already, while its object still lives and holds its descriptor: a socket of a
        # requests.Session, marked collected as the session died unclosed, whose pool something
        # else keeps (a response) until it is closed (see _holders.DIE_WITH).
        obj = rec()
        if obj is not None and obj is not NO_OBJECT and _still_open(rec, obj):
            with suppress(Exception):  # an object that cannot say owns nothing we can name
                owned.update(kind_of(rec.kind).fds(obj, rec))
    for held in _fds.HELD_BY_C:  # what C libraries' own threads hold (libzmq's, see _zmq)
        try:
            owned.update(held())
        except Exception:  # noqa: S110 - as above: what cannot be named is not held
            pass
    from ._report import Leak

    pid = os.getpid()
    out = []
    later: list[str] | None = None
    epoll = _integration("_epoll")
    watched: dict[int, tuple[str | None, str]] | None = None
    sockets: dict[str, tuple[str, str | None, bool]] | None = None
    for fd in candidates:
        if fd in owned or _fds.kept(fd):
            continue
        target = _fds.describe_fd(fd)
        if target is None or target in RANDOM_DEVICES or any(target.startswith(p) for p in paths):
            continue
        if later is None:  # asked once, and only now: asking may cost a query (see Kind)
            later = _later_paths(still_open)
        if any(target.startswith(p) for p in later):
            continue
        made = epoll.made_at(fd) if epoll is not None and target == EVENTPOLL else None
        if watched is None:  # asked once, and only now
            loops = _integration("_loops")
            watched = {} if loops is None else loops.watched(o for r, o in still_open if r.kind == loops.KIND)
        watcher = watched.get(fd)
        # Labelled as the code running when it was made, if known (at collection, a module's
        # select.epoll() is the session's), or as the task an event loop watches it for (a
        # connection a pool's task is still opening), else when a check first found it.
        if made is not None:
            seen = (made[3], made[2])
        elif watcher is not None and watcher[0] is not None:
            seen = (watcher[0], now)
        else:
            seen = (_records.context, now)
        label, first_seen = _untracked_seen.setdefault((fd, _seen_as(target)), seen)
        if context is not None and label != context:
            continue
        what = ANONYMOUS.get(target)
        if watcher is not None:
            watching = f"an event loop watches it for {watcher[1]}"
            what = watching if what is None else f"{what}; {watching}"
        frames: tuple[Frame, ...] = ()
        thread = None
        acquired_at = first_seen
        if made is not None:  # made by select.epoll(): its line is known
            site, thread, acquired_at, _ = made
            frames = tuple(_sites.frames(_records.site_of(site)))
            what = "select.epoll"
        elif what is None and _fds.is_directory(fd):
            what = DIRECTORY
        details: Details = {"fd": fd, "target": target}
        if what is None and target.startswith("socket:["):
            if sockets is None:  # read once, and only now: an untracked socket C code opened
                sockets = _fds.sockets_by_inode()
            ends = sockets.get(target)
            if ends is not None:  # pylibmc's memcached connection: "tcp 127.0.0.1:40766 -> ..."
                local, peer, listening = ends
                what = local + (f" -> {peer}" if peer else ", listening" if listening else "")
                details["socket"] = what
        out.append(
            Leak(
                kind="untracked-fd",
                description=f"fd {fd} -> {target}" if what is None else f"fd {fd} -> {target} ({what})",
                state="open",
                frames=frames,
                thread=thread,
                context=label,
                pid=pid,
                acquired_at=acquired_at,
                age=max(0.0, now - acquired_at),
                details=details,
                seq=0,
            )
        )
    return out
