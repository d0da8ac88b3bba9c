"""The global table of tracked acquisitions, shared by every :class:`Tracker`.

One record per acquired resource. A record *is* a weak reference to the
resource (a ``weakref.ref`` subclass with slots), so tracking an object costs
one allocation and keeps nothing alive; its callback tells us the object died.

A record lives in :data:`live` while the resource may still be open. It
leaves it when the resource is released (a wrapped ``close``/``cleanup``, a
done callback) or when the object dies. An object that died *unreleased* is a
leak the garbage collector cleaned up: its record moves to :data:`collected`
with the reason, so a later report still shows where it was acquired.

Most kinds decide at the object's death, in :func:`died`. Objects whose own
``__del__`` tells whether their death is a leak (executors, pools: whether they
were shut down, which the dead object can no longer say) mark their record
:data:`AT_DEL`. A reference cycle is collected weakrefs first, finalizers
second: :func:`died` then runs before that ``__del__``, so it keeps such a
record in :data:`dying` for the ``__del__`` to find (:func:`at_del`) instead of
dropping it; an object dying of its last reference runs ``__del__`` first and
finds its record in :data:`live`.

Resources that have no Python object (raw descriptors, paths made by
``mkdtemp``/``mkstemp``) get a record that refers to :data:`NO_OBJECT`, a
sentinel that never dies, and a key of their own (``("fd", 7)``,
``("path", "/tmp/x")``) so they cannot collide with object ids.
"""

from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
import weakref
from collections import deque

# Site capture lives in reclaim._sites; re-exported under the names this package uses.
from reclaim._sites import (
    Site,
    acquired_in_finalizer,
    collection_ended,
    dropped_by_program,
    finalizer_closing,
    first_filename,
    in_finalizer,
    unraisable_codes,
)
from reclaim._sites import capture_flat as capture
from reclaim._sites import resolve as site_of

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = [
    "AT_DEL",
    "LEAKED",
    "NO_OBJECT",
    "OPEN",
    "RELEASED",
    "Record",
    "ask_file_depth",
    "at_callers_site",
    "at_del",
    "capture",
    "closing",
    "collected",
    "died",
    "dying",
    "first_filename",
    "integration",
    "judge_at_del",
    "leak",
    "live",
    "new",
    "origin",
    "release",
    "released",
    "reset",
    "settle",
    "site_of",
    "succeed",
    "task_origin",
    "task_origins",
    "unask_file_depth",
    "undecided",
    "unleak",
]

OPEN, RELEASED, LEAKED = 0, 1, 2

#: Reason recorded for a resource whose object died unreleased.
COLLECTED = "collected"
#: ``why`` of an open record whose object's ``__del__`` decides whether its death is a leak.
AT_DEL = "decided by __del__"
#: ``why`` of an :data:`AT_DEL` record whose object's ``__del__`` ran before its weak reference
#: was cleared (it died of its last reference): :func:`died` then has nothing left to keep.
DECIDED = "decided by __del__ already"

# Bounded so a long session that leaks in every test cannot grow without end;
# the oldest collected leaks are dropped first (and counted, see ``dropped``).
MAX_COLLECTED = 10_000


class Record(weakref.ref):  # type: ignore[type-arg]
    """One acquisition: a weak reference to the resource plus where and when it was taken.

    Attributes are filled right after construction (no ``__init__``: a
    Python-level call would double the cost of tracking an ``open()``).
    ``why`` is why it ended as a leak (see :func:`leak`); while open it is None,
    or :data:`AT_DEL` when its object's ``__del__`` decides that (a marker kept
    there rather than in a slot of its own, which every ``open()`` would pay for).
    """

    __slots__ = (
        "context",
        "dropped",
        "info",
        "key",
        "kind",
        "seq",
        "site",
        "state",
        "thread",
        "time",
        "why",
    )

    key: object
    seq: int
    kind: str
    info: Any
    site: Any  # a flat capture (see capture()) or a Site from reclaim._track
    thread: str
    context: str | None
    time: float
    state: int
    why: str | None
    #: Set only when the garbage collector ended it: the program's line that dropped its object
    #: (see :func:`leak`), or None (a reference cycle). Unset on every other record.
    dropped: tuple[Any, ...] | None  # (code, line), and the finalizer that closed it if one did


class _Forever:
    """Referent of records for resources with no Python object; never collected."""

    __slots__ = ("__weakref__",)

    def __repr__(self) -> str:
        return "<no object>"


NO_OBJECT = _Forever()

#: key -> record of every resource that may still be open.
live: dict[object, Record] = {}
#: key -> open :data:`AT_DEL` record whose object died in a reference cycle, until its ``__del__`` runs.
dying: dict[object, Record] = {}
#: Open records whose death their kind's judge left to the object's finalizer, in the collection
#: under way (see :func:`died`): what that finalizer did not find a leak is released as it ends.
undecided: list[Record] = []
#: Records of resources that ended as leaks (collected by the GC, cancelled at loop close).
collected: deque[Record] = deque(maxlen=MAX_COLLECTED)
#: Every acquisition is stamped with the current generation; a snapshot ends one (see
#: checkpoint()), so "acquired after the snapshot" is exact. A generation rather than a
#: per-acquisition counter: reading a module attribute is the cheapest stamp there is.
generation = 1


#: Thread ident -> (record, generation): the connection that thread accepted last, when a client
#: of this process had made it in an earlier generation than the one it was accepted in (see
#: _sockets), and that generation. What the thread starts before the generation ends (the
#: handler thread for it) is acquired when the connection was: see :func:`caused`.
serving: dict[int, tuple[Record, int]] = {}


def caused(seq: int) -> int:
    """The generation a thread the calling thread starts now is acquired in: *seq*, the current
    one, or that of the connection the calling thread accepted last, if it accepted it in this
    generation on behalf of a client that had connected earlier (see :data:`serving`)."""
    entry = serving.get(threading.get_ident())
    if entry is None:
        return seq
    rec, accepted_in = entry
    return rec.seq if accepted_in == generation and rec.state == OPEN and rec.seq < seq else seq


def checkpoint() -> int:
    """End the current generation and return it: later acquisitions have a higher one."""
    global generation
    current = generation
    generation = current + 1
    return current


#: Kinds for which "the object died while its record was open" means a leak, each with None or,
#: when some deaths are not one, a function of the record that says which (a task whose coroutine
#: the program closed). Kinds whose release we cannot see (files, children, mmaps) report from a
#: finalizer-time probe instead.
death_leaks: dict[str, Callable[[Record], bool | None] | None] = {}
#: Label of what runs now (the pytest plugin sets the test id); see ``set_context``.
context: str | None = None
#: Frames captured per acquisition: the deepest any running tracker asked for.
depth = 8
#: Frames captured per ``open()``, the hot path: at most FILE_DEPTH, as each frame costs
#: ~80 ns there, a tenth of the whole budget (see benchmarks/bench_leaks.py). A depth the
#: user asked for explicitly (``reclaim run --depth``, ``reclaim_depth``) raises the cap:
#: see :func:`ask_file_depth`.
DEFAULT_FILE_DEPTH = 2
FILE_DEPTH = DEFAULT_FILE_DEPTH
file_depth = FILE_DEPTH
#: Depths asked for explicitly by the front ends running now (see ask_file_depth()).
_asked_file_depths: list[int] = []
dropped = 0
#: (first generation, pid): acquisitions from that generation on were made by that process. A forked child
#: appends its own entry, so records inherited from the parent keep the parent's pid.
pid_epochs: list[tuple[int, int]] = [(0, os.getpid())]


def ask_file_depth(depth: int) -> None:
    """Keep *depth* frames per ``open()`` too: the user asked for that depth explicitly.

    Call before starting the tracker the depth is for (the cap is read when a
    tracker starts); undo with :func:`unask_file_depth`. Files otherwise keep at
    most :data:`DEFAULT_FILE_DEPTH` frames, the cheap default.
    """
    global FILE_DEPTH
    _asked_file_depths.append(depth)
    FILE_DEPTH = max([DEFAULT_FILE_DEPTH, *_asked_file_depths])


def unask_file_depth(depth: int) -> None:
    """Withdraw a depth given to :func:`ask_file_depth` (its tracker stopped)."""
    global FILE_DEPTH
    if depth in _asked_file_depths:
        _asked_file_depths.remove(depth)
    FILE_DEPTH = max([DEFAULT_FILE_DEPTH, *_asked_file_depths])


def pid_of(seq: int) -> int:
    """The pid of the process that made acquisition number *seq*."""
    for first, pid in reversed(pid_epochs):
        if seq >= first:
            return pid
    return pid_epochs[0][1]


def _after_fork_in_child() -> None:
    pid_epochs.append((checkpoint() + 1, os.getpid()))


if hasattr(os, "register_at_fork"):  # not on Windows (no fork there either)
    os.register_at_fork(after_in_child=_after_fork_in_child)


#: Per-thread cache of the thread's name and start label (``both``), filled on first use:
#: ``current_thread().name`` costs twice a dict lookup, an ident-keyed dict needed forgetting
#: reused idents, and attribute access on a thread-local is cheaper than either. A thread
#: renamed after it first acquired something keeps its old name here.
names = threading.local()


#: Attribute of a ``threading.Thread`` holding the label current when it was started (set by
#: _threads; not for the workers a pool starts for itself, whose work items are anyone's).
STARTED_IN = "_reclaim_started_in"


class ThreadName(str):
    """A thread's name as its records keep it, with the thread's ``ident`` (:attr:`ident`): two
    threads of one name (a library's worker per instance) are told apart by it. It compares,
    hashes and prints as the name."""

    ident: int | None


def thread_name() -> str:
    """Name of the calling thread (cached per thread, with the label it was started under)."""
    try:
        name: str = names.both[0]
    except AttributeError:
        thread = threading.current_thread()
        name = ThreadName(thread.name)
        name.ident = thread.ident
        # What a thread acquires is labelled as where it was started (a session fixture's server
        # thread, say), not as whatever test runs when it acquires: see label_here(). The two
        # in one attribute: open() reads both in one look.
        names.both = (name, getattr(thread, STARTED_IN, None))
    return name


#: ``(flat site, label)`` of what started the asyncio code running now: the task (set around the
#: creation of one made outside any task or to run in a context of its own, so its context holds
#: it, and so do the tasks and loop callbacks made from it) or the server whose connections a
#: callback accepts. Set and reset around each, never left set in a context: a runner that copies
#: what changed in a task's context out of it (pytest-asyncio's fixtures) finds nothing of ours.
origin: contextvars.ContextVar[tuple[Any, str | None]] = contextvars.ContextVar("reclaim_origin")
_origin = origin.get

#: :data:`origin` of the tasks made to run in a fresh, empty context (``create_task(coro,
#: context=contextvars.Context())``, uvicorn's ``reset_contextvars``), and of the tasks they
#: make: kept beside the task, as the program expects that context to hold nothing it did not
#: set (uvicorn's tests serialize it). Callbacks such a task registers carry no origin.
task_origins: weakref.WeakKeyDictionary[Any, tuple[Any, str | None]] = weakref.WeakKeyDictionary()


#: The dict under :data:`task_origins`: its truth is one C call, the mapping's ``len()`` a Python one.
task_origins_kept: dict[Any, Any] = task_origins.data  # type: ignore[attr-defined]


#: This package (``reclaim.leaks``), partly made as this module loads: where each integration
#: module it imports is set as an attribute (see :func:`integration`).
_PACKAGE = sys.modules[__package__]


def integration(name: str) -> Any:
    """The integration module ``reclaim.leaks.<name>`` if it was loaded (its library imported, see
    _instrument), else None. Looked up in the package, where an import sets it, not in
    ``sys.modules``: pytester's in-process runs take what a test imported out of that, and an
    integration loaded in a test went on tracking while a check found it gone (a pexpect spawn
    and its terminal were two entries)."""
    return vars(_PACKAGE).get(name)


def task_origin() -> tuple[Any, str | None] | None:
    """The :data:`task_origins` entry of the asyncio task running now, else None."""
    if not task_origins_kept:
        return None
    tasks = sys.modules.get("asyncio.tasks")
    try:
        task = None if tasks is None else tasks.current_task()
    except RuntimeError:  # no running event loop
        return None
    return None if task is None else task_origins.get(task)


#: Default of :func:`new`'s *label*: the label current here, read by :func:`label_here`.
HERE: Any = object()


def at_callers_site(
    fn: Any, *, site_only: bool = False, keep_origin: bool = False, unless: Any = None
) -> Any:
    """*fn*, called with its caller's site and label set as what started the asyncio code it
    registers (:data:`origin`, which a loop callback copies as it is registered): the tasks that
    code makes, and what they acquire, go on at that line, labelled as it.

    With *site_only*, the label stays what it was (an origin's already set, else none: the
    callback's task then takes the label of the thread running the loop): a thread a session
    fixture started that posts a test's job to the test's loop is the fixture's, and the task the
    job makes is still the test's. With *keep_origin*, an origin set already is kept whole (one
    reclaim set for the call: the drop site of an async generator, see
    ``_tasks._closing_at_drop``). A call whose ``(args, kwargs)`` *unless* says registers
    nothing that makes a task is left as it is."""

    def at_caller(*args: Any, **kwargs: Any) -> Any:
        __tracebackhide__ = True  # what it wraps raises as itself (a closed loop's RuntimeError)
        started = _origin(None)
        if (keep_origin and started is not None) or (unless is not None and unless(args, kwargs)):
            return fn(*args, **kwargs)
        try:
            caller = sys._getframe(1)
        except ValueError:  # called from C with no Python frame (a Rust runtime's thread waking a
            return fn(*args, **kwargs)  # future): no line to carry, and the call must go through
        site = capture(caller, depth)
        if site_only:
            label = started[1] if started is not None else None
        else:
            thread_name()  # label_here() reads what it caches
            label = label_here()
        token = origin.set((site, label))
        try:
            return fn(*args, **kwargs)
        finally:
            origin.reset(token)

    at_caller.__name__ = getattr(fn, "__name__", "at_caller")
    at_caller.__doc__ = fn.__doc__
    return at_caller


def label_here() -> str | None:
    """The label an acquisition in the calling thread gets (after thread_name() ran in it).

    In asyncio code, the label current when its task was created (or its server started): what
    a task or a session fixture's server acquires during a later test is the creator's, as
    what a thread acquires is labelled as where it was started.
    """
    started = _origin(None)
    if started is None and task_origins_kept:
        started = task_origin()
    return label_of(started)


def label_of(started: tuple[Any, str | None] | None) -> str | None:
    """:func:`label_here` once the origin of the code running now is known (*started*, or None)."""
    if started is not None and started[1] is not None:
        return started[1]
    try:
        started_in: str | None = names.both[1]
    except AttributeError:  # the first acquisition in this thread: cache its name and label
        thread_name()
        started_in = names.both[1]
    return context if started_in is None else started_in


def died(rec: Record) -> None:
    """Weakref callback: the resource's object is gone."""
    try:
        key, state = rec.key, rec.state
    except AttributeError:  # slots already cleared by the collector (interpreter shutdown)
        return
    # An id is reused only after its object died, which is now: the key is still this record's
    # unless the record was released (popped) first.
    if live.get(key) is rec:
        del live[key]
    if state == OPEN:
        if rec.why is AT_DEL:  # in a cycle: the object's __del__ runs next, and decides
            dying[key] = rec
        elif rec.why is DECIDED:  # its __del__ ran, and found no leak
            rec.state = RELEASED
        elif rec.kind in death_leaks:
            judge = death_leaks[rec.kind]
            verdict = True if judge is None else judge(rec)
            if verdict is None:  # in a cycle: the object's finalizer runs next, and may decide
                dying[key] = rec
                undecided.append(rec)
            elif verdict:
                leak(rec, COLLECTED)
            else:
                rec.state = RELEASED


unraisable_codes.add(died.__code__)  # reclaim run's SIGTERM waits for it to return


def settle() -> None:
    """The collection has ended: the :data:`undecided` records no finalizer found a leak are released."""
    while undecided:
        rec = undecided.pop()
        if dying.get(rec.key) is rec:
            del dying[rec.key]
        if rec.state == OPEN:
            rec.state = RELEASED


collection_ended.append(settle)


def at_del(obj: object) -> Record | None:
    """The record of *obj*, for its ``__del__`` to decide whether its death is a leak (see :data:`AT_DEL`).

    Still in :data:`live` when *obj* dies of its last reference (``__del__``
    runs before the weakref is cleared), kept in :data:`dying` by :func:`died`
    when *obj* dies in a reference cycle (cleared first, ``__del__`` after).
    """
    key = id(obj)
    kept = dying.pop(key, None)
    rec = live.get(key)
    if rec is not None and rec() is obj:
        # Dying of its last reference: died() runs next, and must not keep the record in `dying`,
        # where the next object given this id whose __del__ finds no record of its own (one made
        # untracked, or whose __init__ failed) took it, a leak of the object this was.
        if rec.why is AT_DEL:
            rec.why = DECIDED
        return rec
    return kept


def judge_at_del(obj: object, kind: str, leaked_info: Callable[[Any, Record], Any]) -> None:
    """Decide, in *obj*'s ``__del__``, whether its death is a leak (see :data:`AT_DEL`): its open
    record of *kind* is marked collected with ``leaked_info(obj, record)`` as its info, read now,
    before the object's own ``__del__`` releases its parts; or released, when that gives None
    (something this does not see closed it)."""
    rec = at_del(obj)
    if rec is not None and rec.state == OPEN and rec.kind == kind:
        info = leaked_info(obj, rec)
        if info is None:
            released(rec)
        else:
            rec.info = info
            leak(rec, COLLECTED)


def leak(rec: Record, why: str) -> None:
    """Mark *rec* as a leak that ended without its owner (GC, loop shutdown) and remember it."""
    global dropped
    if rec.state != OPEN:
        return
    rec.state = LEAKED
    rec.why = why
    if why == COLLECTED:  # the drop is on the stack now, under what the death ran
        frame = sys._getframe(1)
        at = dropped_by_program(frame)  # not `dropped`: that is this module's count
        closer = finalizer_closing(frame) if at is not None else None
        rec.dropped = at if at is None or closer is None else (*at, closer)
    if live.get(rec.key) is rec:
        del live[rec.key]
    if len(collected) == collected.maxlen:
        dropped += 1
    collected.append(rec)


def unleak(rec: Record) -> None:
    """*rec*, marked a leak, is part of another's after all (a task another one awaited, both
    destroyed pending): forgotten, as if released."""
    rec.state = RELEASED
    try:
        collected.remove(rec)
    except ValueError:  # the oldest, dropped from the full deque since
        pass


def released(rec: Record) -> None:
    """*rec*'s object, dying, was found closed already (by a path we do not see): no leak.

    For a ``__del__`` that decides (see :data:`AT_DEL`), which finds *rec* in :data:`live` or,
    in a reference cycle, in :data:`dying` (taken out by :func:`at_del`).
    """
    rec.state = RELEASED
    if live.get(rec.key) is rec:
        del live[rec.key]


def release(key: object) -> None:
    """The owner released the resource under *key* (an ``id()`` or a tuple key)."""
    rec = live.pop(key, None)
    if rec is not None:
        rec.state = RELEASED


def closing(obj: object, frame: Any) -> None:
    """*obj*, tracked under its ``id()``, is being closed from *frame*: by a ``__del__`` (its
    owner was dropped unclosed: the garbage collector's doing, a leak) or by the program (the
    ``__del__`` itself too, closing what it acquired).

    Owner and *obj* collected in one reference cycle: *obj*'s weak reference is cleared before
    any ``__del__`` runs, so an :data:`AT_DEL` record waits in :data:`dying` for *obj*'s own
    ``__del__``, and is the one closed here."""
    if in_finalizer(frame):
        key = id(obj)
        rec = live.get(key)
        if rec is None or rec() is not obj:
            rec = dying.get(key)  # obj is alive: no other object has its id until it is freed
        if rec is not None and not acquired_in_finalizer(frame, rec.site):
            leak(rec, COLLECTED)
            return
    release(id(obj))


def new(
    obj: object,
    kind: str,
    info: Any,
    site: Site,
    key: object = None,
    *,
    callback: bool = True,
    label: Any = HERE,
) -> Record:
    """Create and register a record (the general path; ``open()`` inlines this for speed).

    *obj* must support weak references; pass :data:`NO_OBJECT` and a tuple
    *key* for a resource with no object. *label* is the label, when the caller read it
    with :func:`label_here` already.
    """
    rec = Record(obj, died if callback and obj is not NO_OBJECT else None)
    rec.key = id(obj) if key is None else key
    rec.seq = generation
    rec.kind = kind
    rec.info = info
    rec.site = site
    rec.thread = thread_name()
    rec.context = label_here() if label is HERE else label
    rec.time = _time()
    rec.state = OPEN
    rec.why = None
    old = live.get(rec.key)
    if old is not None:
        # A key is reused only once its previous holder is gone (fd numbers, paths): that one
        # was released by some path we do not see (os.close through an alias, say).
        old.state = RELEASED
    live[rec.key] = rec
    return rec


def succeed(obj: object, previous: Record, kind: str, info: Any, key: object = None) -> Record:
    """A record of *obj*, which takes over the resource *previous* records (released now): acquired
    when, where, in which thread and under which label that was."""
    if live.get(previous.key) is previous:
        release(previous.key)
    previous.state = RELEASED
    rec = new(obj, kind, info, previous.site, key, label=previous.context)
    rec.seq, rec.time, rec.thread = previous.seq, previous.time, previous.thread
    return rec


def reset() -> None:
    """Forget everything (the last tracker stopped)."""
    global dropped
    for rec in list(live.values()):
        rec.state = RELEASED
    live.clear()
    dying.clear()
    undecided.clear()
    serving.clear()
    collected.clear()
    dropped = 0
