"""Threads started and still running at the check.

``threading.Thread.start`` is wrapped on every version: the audit events differ
(none on 3.11, ``_thread.start_new_thread`` on 3.12, ``_thread.start_joinable_thread``
on 3.13) and a hook would run for every audit event in the process, while the
wrapper costs nothing outside ``start()``. Threads made with ``_thread``
directly are not seen (the descriptor diff does not help there either).

A thread is a leak while it is alive at the check; checks wait up to their
grace period, with back-off, for threads that are winding down. Alive is
``is_alive()`` or still in ``threading``'s table of running threads: on 3.11 and
3.12 a ``join()`` interrupted by a signal (Ctrl-C, SIGTERM, pytest-timeout's
SIGALRM) marks the thread stopped while it still runs, and ``is_alive()`` then
says False; the thread leaves the table only when its ``run()`` has returned.

A ``concurrent.futures.ThreadPoolExecutor`` is tracked as itself, as a
``multiprocessing`` ``ProcessPoolExecutor`` is (see :mod:`._multiprocessing`):
its functions are owned, so the worker threads it starts are recorded but not
reported, and the executor gets one record of kind ``thread`` (so that
``ignore_kinds={"thread"}`` still covers it, as it covered its workers) at the
user's line, open until ``shutdown()`` was called (a with-block calls it;
``shutdown(wait=False)`` counts, the workers then finish their queue and end).
One that never ran any work started no worker and holds nothing: it is not reported.
An executor collected before it was shut down is reported as collected: its
workers end when they see it gone, so the garbage collector shut it down. Its
``__del__`` decides, as only the executor can say it was shut down; in a
reference cycle too (the record waits for it, see :data:`._records.AT_DEL`).

What a work item acquires for the program is the program's, though: ``asyncio.to_thread(open,
path)`` or ``executor.submit(open, path)`` (what aiofiles does) opens the file in a worker whose
stack is the standard library's only. A work item carries the site of the code that submitted it
(one capture per ``submit()``) and its ``run`` is a hand-off (see :func:`reclaim._sites.mark_handoff`):
such a file is recorded, and reported, at the line that handed the ``open`` over.

A thread still running at the check holds the event loops and tasks acquired in it, and,
when it holds a loop, the threads started in it (the loop's workers) (see :func:`fold`): a
server run in a thread never stopped (uvicorn's ``Server.run``) or an anyio blocking portal
never exited (Starlette's ``TestClient`` entered and never exited) is one entry, the thread at
the line that started it, its loop, the loop's tasks and worker threads listed under it. Files
and sockets it acquired stay entries of their own, and so do the threads a thread running no
loop starts (socketserver's thread per connection).
"""

from __future__ import annotations

import functools
import sys
import threading
from collections.abc import Mapping
from types import ModuleType, WrapperDescriptorType

from reclaim import _sites

from . import _records
from ._holders import fold_into
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, label, own, track_init
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["IN_THREAD", "fold", "install", "install_executor", "target_name"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: What an executor never shut down was not given (the wording of ProcessPoolExecutor's).
NOT_SHUT_DOWN = "not shut down (shutdown() or a with-block)"


def _target(thread: threading.Thread) -> str:
    target = getattr(thread, "_target", None)
    if target is None:
        return f"{type(thread).__qualname__}.run"
    return target_name(target)


def target_name(target: object) -> str:
    """The name of the function a thread or process started with *target* runs."""
    # Named without running any code of the target's: a proxy (an rpyc netref) answers each
    # attribute, and its repr, with a call to the other side, waiting for the connection that
    # the thread just started may be using. A partial runs its function; what has its own
    # attribute lookup, or no name (a callable object), runs its class's __call__.
    cls = type(target)
    while _plain(cls) and isinstance(target, functools.partial):  # (isinstance may ask __class__)
        target = target.func
        cls = type(target)
    if _plain(cls):
        name = getattr(target, "__qualname__", None)
        if isinstance(name, str):
            return name
    return f"{cls.__qualname__}.__call__"


def _plain(cls: type) -> bool:
    """Whether the attributes of *cls*'s instances are looked up by C code alone: no
    ``__getattr__``, and the ``__getattribute__`` of a built-in type."""
    return not hasattr(cls, "__getattr__") and isinstance(cls.__getattribute__, WrapperDescriptorType)


# A thread's info is (name, target, daemon); an executor's is its class's label, a str.


def _is_open(obj: Any, rec: Record) -> bool:
    if type(rec.info) is str:
        return _never_shut_down(obj)
    return _running(obj)


def _running(thread: threading.Thread) -> bool:
    """Whether *thread* still runs: alive, or not yet out of ``threading._active`` (see the
    module's docstring; the table drops a thread in its last Python code, and an ident reused by
    a later thread maps to that thread, not to this one)."""
    return thread.is_alive() or getattr(threading, "_active", {}).get(thread.ident) is thread


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if type(rec.info) is str:
        return f"{rec.info} {NOT_SHUT_DOWN}", {"class": rec.info, "problem": NOT_SHUT_DOWN}
    name, target, daemon = rec.info
    details: Details = {"name": name, "target": target, "daemon": daemon}
    if obj is not None:
        details["ident"] = obj.ident
        details["alive"] = _running(obj)
    return f"{name!r} running {target}()" + (" (daemon)" if daemon else ""), details


def _may_end(details: Mapping[str, object]) -> bool:
    """A thread may end by itself; an executor never shut down may not: its idle workers wait for
    work until it is shut down or collected, so a check's grace period would wait out its whole
    length for them (s3transfer's suite: a second per test that forgot ``shutdown()``)."""
    return "problem" not in details


register(Kind("thread", is_open=_is_open, describe=_describe, waitable=_may_end))


#: What a thread still running holds when it was acquired in it: the machinery of an event loop
#: it runs (see :func:`fold`); and, when it holds a loop, what that loop runs on: the threads it
#: started and the sockets it opened (a server's listening socket and its connections).
IN_THREAD = frozenset({"eventloop", "task"})
IN_LOOP_THREAD = frozenset({"thread", "socket"})

if TYPE_CHECKING:
    from ._holders import Found


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take the event loops and tasks acquired in a thread still running out of *found*
    (``(record, live object or None, state)`` of each leak a check found), into ``out[id(thread
    record)]``, and the threads started and sockets opened in one that holds a loop (a thread
    that runs no loop is no server: a socket it opened may be handed over). A thread is told by
    its name when it started, or now (a record keeps the name its thread had at its first
    acquisition). A thread holding something of its own is not taken."""
    threads: dict[str, Record] = {}
    # Threads of one name (pyrate-limiter's "Leaker", one per limiter) are told apart by ident.
    by_ident: dict[int, Record] = {}
    for rec, obj, state in found:
        if rec.kind == "thread" and state == "open" and type(rec.info) is tuple:
            threads.setdefault(rec.info[0], rec)
            if obj is not None:
                threads.setdefault(obj.name, rec)
                if obj.ident is not None:
                    by_ident[obj.ident] = rec
    if not threads:
        return

    def thread_of(rec: Record) -> Record | None:
        ident = getattr(rec.thread, "ident", None)
        owner = by_ident.get(ident) if ident is not None else None
        if owner is not None and rec.time >= owner.time:  # not an ended thread's reused ident
            return owner
        return threads.get(rec.thread)

    parts: dict[int, Record] = {}
    running_loops: set[int] = set()
    for rec, _, _ in found:
        owner = thread_of(rec) if rec.kind in IN_THREAD else None
        if owner is not None and rec.seq >= owner.seq:
            parts[id(rec)] = owner
            if rec.kind == "eventloop":
                running_loops.add(id(owner))
    for rec, _, _ in found:
        owner = thread_of(rec) if rec.kind in IN_LOOP_THREAD else None
        if owner is not None and owner is not rec and id(owner) in running_loops and rec.seq >= owner.seq:
            parts[id(rec)] = owner
    owners = {id(owner) for owner in parts.values()}
    fold_into(found, out, lambda item: None if id(item[0]) in owners else parts.get(id(item[0])))


def install(patches: Patches) -> None:
    """Record every ``Thread.start()``."""
    start = threading.Thread.start
    _sites.thread_root = threading.Thread._bootstrap.__code__  # type: ignore[attr-defined]

    def start_(self: threading.Thread) -> None:
        caller = _sites.frame_above()  # None as an atexit callback
        # A library's process-wide worker (trio's thread cache): not the program's.
        if caller is not None and caller.f_code in PLUMBING:
            start(self)
            return
        site = _records.capture(caller, _records.depth)
        # Read by the thread's own acquisitions whose stack runs out (see _sites._flat): set
        # before it starts. A thread started again fails in start(), as without us.
        setattr(self, _sites.STARTED_AT, site)
        if not _sites.in_owned(caller):  # a pool's worker runs anyone's work: no label of its own
            # The starting thread's own label: a handler thread that a fixture's server thread
            # starts during a test is the fixture's, as the server thread is.
            _records.thread_name()
            setattr(self, _records.STARTED_IN, _records.label_here())
        # Acquired when start() was called: a snapshot another thread takes while this one waits
        # in start() (the new thread may run, even serve a request, before start() returns)
        # does not count it as acquired after that snapshot. A server thread's handler for a
        # connection made before the snapshot and accepted after it is as old as the connection.
        seq = _records.generation
        if _records.serving:
            seq = _records.caused(seq)
        # Its name before it runs: a thread may rename itself at once (anyio's blocking portal
        # does), and what it acquires meanwhile is told by the name it had (see fold()).
        name = self.name
        started = _records._time()  # before what the thread acquires (see fold(): by ident)
        start(self)
        info = (name, _target(self), self.daemon)
        rec = _records.new(self, "thread", info, site)
        rec.seq, rec.time = seq, started

    start_.__doc__ = start.__doc__
    patches.set(threading.Thread, "start", start_)


def install_executor(patches: Patches, module: ModuleType) -> None:
    """Own ``concurrent.futures.thread``'s executor and worker; record each ``ThreadPoolExecutor``.

    The worker function and work item are looked up by name: private, so
    absent ones are skipped rather than failing the whole instrumentation.
    """
    executor = module.ThreadPoolExecutor
    own(executor, *(getattr(module, name) for name in ("_worker",) if hasattr(module, name)))
    work = getattr(module, "_WorkItem", None)
    if isinstance(work, type) and "__init__" in vars(work) and "run" in vars(work):
        _hand_off(patches, work)
    # No __del__ in 3.11-3.13; never wrap one we did not read.
    wrap = "__del__" not in vars(executor)
    track_init(patches, executor, "thread", label, _never_shut_down if wrap else None)


def _hand_off(patches: Patches, work: type) -> None:
    """Each work item carries the site that submitted it; what its ``run`` acquires is recorded there."""
    init = vars(work)["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        setattr(self, _sites.HANDED_OVER, _sites.handed_over_site(sys._getframe(1), _records.depth))

    __init__.__doc__ = init.__doc__
    patches.set(work, "__init__", __init__)
    _sites.mark_handoff(vars(work)["run"].__code__)


def _never_shut_down(executor: Any) -> bool:
    # _shutdown is set by shutdown() whatever its wait. An executor that never started a worker
    # holds nothing: a library's module-level one made at import and never used (asgiref's, which
    # importing Django makes) is no leak.
    return not getattr(executor, "_shutdown", True) and bool(getattr(executor, "_threads", True))
