"""multiprocessing: each object the user must release is tracked as itself, its insides are its own.

A ``Pool`` is pipes, threads, worker processes and finalizers; a ``Queue`` a
pipe and a feeder thread; a ``Manager`` a pipe, a server process and proxy
connections. Reporting those parts one by one is wrong both ways: after
``with Pool() as p`` the pipes are still open (multiprocessing closes them when
the pool is collected, or at exit), and a queue nobody closed is one mistake,
not three. So:

* Every function of these classes, and of multiprocessing's process-wide
  machinery (resource tracker, fork server, shared-memory heap, temporary
  directory, manager proxies), is marked *owned* (:func:`reclaim._sites.mark_owned`):
  what it acquires before any user frame is multiprocessing's own, recorded
  but never reported (the descriptors it holds are not reported as untracked either).
* The objects the user must release get a record of their own, at the user's
  line: ``Pool`` (kind ``multiprocessing``: open until closed or terminated,
  joined, its threads and workers gone), ``Queue``/``JoinableQueue`` (until
  closed and its feeder thread finished), ``SimpleQueue`` (until closed),
  a started manager (until shut down), and each started ``Process``, whatever
  its start method (kind ``subprocess``, open until joined: like a
  ``subprocess.Popen``, it is open while nobody collected its exit status).

A manager collected while started (no ``shutdown()``) is reported as collected:
its finalizer, run by the garbage collector, stopped its server.

A pool collected while running (no ``close``/``terminate``) is reported as
collected, from the ``Pool.__del__`` that warns about it, also when it dies in
a reference cycle (its record waits for that ``__del__``, see
:data:`._records.AT_DEL`; so does an executor's below).

``concurrent.futures.ProcessPoolExecutor`` is built from the same parts (a
call queue, a result queue, a wakeup pipe, worker processes and a manager
thread): its functions are owned too, and each executor is recorded as itself
(kind ``multiprocessing``), open until ``shutdown()`` was called (a with-block
calls it). ``shutdown(wait=False)`` counts: the manager thread then finishes
the job by itself, and Python joins it at exit. An executor collected before
it was shut down is reported as collected (its manager thread shuts the
workers down when it sees the executor gone: the garbage collector did it).

``multiprocessing.Pipe()`` gives two ``Connection`` objects the user must
close: the pair is one record (kind ``multiprocessing``) at the user's line,
open while either end is; it takes over the descriptors (or the detached
sockets' descriptors) the pipe was made of, so they are not reported again.
The report says which end is still open. An end the garbage collector closed
(``Connection.__del__``) makes the pair a collected leak. The pipes inside
queues, pools, managers and executors are made under their owned functions,
so their records carry no user frame and are never reported.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable, Mapping
from types import FunctionType, ModuleType

from . import _lineage, _records
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, first_outside_framework, label, lookup, outside, own, site, track_init
from ._patch import Patches
from ._records import NO_OBJECT, OPEN, Record
from ._threads import target_name

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "dies_with_owner",
    "install_billiard_pool",
    "install_executor",
    "install_managers",
    "install_owned",
    "install_owned_package",
    "install_pipe",
    "install_pool",
    "install_process",
    "install_queues",
    "install_spawn",
    "open_pipe_ends",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: Modules whose process-wide machinery acquires for multiprocessing (or its library) itself, or
#: whose code leaves what it opens to the collector by design, and what in them: owned, so what
#: it acquires is recorded (its descriptors are known) but never reported. (What needs no
#: record, a thread or an executor, is in _owning.PROCESS_WIDE.)
OWNED = {
    "multiprocessing.util": ("get_temp_dir",),
    "multiprocessing.resource_tracker": ("ResourceTracker",),
    "multiprocessing.forkserver": ("ForkServer",),
    "multiprocessing.heap": ("Heap", "Arena"),
    # The resource sharer: one listener socket and its daemon thread for the process, started by
    # the first descriptor pickled outside a child's start (a Connection put on a queue for a
    # running child) and kept to the end: blamed on the first test that did so.
    "multiprocessing.resource_sharer": ("_ResourceSharer",),
    "multiprocess.resource_sharer": ("_ResourceSharer",),
    # multiprocess, dill's copy of multiprocessing, module for module.
    "multiprocess.util": ("get_temp_dir",),
    "multiprocess.resource_tracker": ("ResourceTracker",),
    "multiprocess.forkserver": ("ForkServer",),
    "multiprocess.heap": ("Heap", "Arena"),
    # billiard, Celery's fork of multiprocessing, keeps the same machinery under its own names.
    "billiard.heap": ("Heap", "Arena"),
    "billiard.forkserver": ("ForkServer",),
    "billiard.semaphore_tracker": ("SemaphoreTracker",),
    # Its process starters are an installed library's, not the standard library's (whose frames
    # a site passes through to the owned BaseProcess.start): the sentinel pipe and the fork
    # they make are the process's, recorded at the program's line by install_process.
    "billiard.popen_fork": ("Popen",),
    "billiard.popen_spawn_posix": ("Popen",),
    "billiard.popen_forkserver": ("Popen",),
    # Celery's billiard pool (a billiard.Pool, recorded as one): its queues per worker process.
    "celery.concurrency.asynpool": ("AsynPool", "Worker", "ResultHandler"),
    # joblib's memmapping folders (removed at exit or by the resource tracker).
    "joblib._memmapping_reducer": ("TemporaryResourcesManager",),
    # joblib's pools (Parallel's "multiprocessing" backend): multiprocessing.Pool subclasses,
    # tracked as pools, whose queues' pipes are closed when collected, as a Pool's own are.
    "joblib.pool": ("CustomizablePicklingQueue", "PicklingPool", "MemmappingPool"),
    # matplotlib's font cache (an lru_cache): each FT2Font it keeps holds its .ttf file open.
    "matplotlib.font_manager": ("_get_font",),
    # zipfile.Path opens its archive and leaves it to the collector (it has no close()); through
    # it importlib.resources reads a zipped package's files (a zipapp's, pex's, shiv's).
    "zipfile": ("Path.__init__",),
    # ... and unpickled (3.12+), its archive is opened again by the mix-in that restores it.
    "zipfile._path": ("InitializedState.__setstate__",),
}
#: Packages that are a process-wide worker pool as a whole: loky (joblib's default backend,
#: also vendored as joblib.externals.loky) keeps one reusable executor per process, with its
#: workers, manager thread, queues, pipes and resource tracker, and shuts it down at exit.
#: Every function and class of theirs is owned: nothing they acquire is the program's, but a
#: ``ProcessPoolExecutor`` the program makes with them is its own (see install_owned_package).
OWNED_PACKAGES = ("loky", "joblib.externals.loky")
#: Their modules whose import owns what the package has loaded by then (the package imports
#: the first; the others load later, on first use).
OWNED_PACKAGE_MODULES = ("reusable_executor", "backend.resource_tracker", "backend.popen_loky_posix")


# -- the multiprocessing kind: pools, queues, managers ----------------------------------------


def _worker_running(worker: Any) -> bool:
    """A pool worker not yet reaped (a process) or still alive (a ThreadPool's thread)."""
    if hasattr(worker, "_popen"):
        popen = worker._popen  # None once close()d, which needs it reaped
        return popen is not None and popen.returncode is None
    return bool(worker.is_alive())


#: The states that end by themselves: a pool's workers and threads, a queue's feeder thread, an
#: executor's workers finishing after close() or shutdown(). A check's grace period waits for
#: these only: nothing ends a Pipe() end or an object never released but the program's own call.
_UNJOINED_POOL = "closed but never joined (join())"
_FEEDING_QUEUE = "closed, but its feeder thread still runs (join_thread())"
_STOPPING_EXECUTOR = "shutting down, but its worker processes still run"
_WINDING_DOWN = frozenset((_UNJOINED_POOL, _FEEDING_QUEUE, _STOPPING_EXECUTOR))


def _pool_state(pool: Any, family: str = "pool", running: object = "RUN") -> str | None:
    if pool._state == running:
        return _NOT_RELEASED[family]
    threads = [pool._worker_handler, pool._task_handler, pool._result_handler]
    timeouts = getattr(pool, "_timeout_handler", None)  # billiard's, with task time limits
    if timeouts is not None:
        threads.append(timeouts)
    if any(thread.is_alive() for thread in threads) or any(_worker_running(w) for w in pool._pool):
        return _UNJOINED_POOL
    return None


def _billiard_pool_state(pool: Any) -> str | None:
    # billiard's states are numbers (RUN is 0), multiprocessing's are names
    return _pool_state(pool, "billiard-pool", 0)


def _queue_state(queue: Any) -> str | None:
    if not queue._closed:
        return _NOT_RELEASED["queue"]
    thread = queue._thread
    if thread is not None and thread.is_alive():
        return _FEEDING_QUEUE
    return None


def _simple_queue_state(queue: Any) -> str | None:
    return None if queue._reader.closed else _NOT_RELEASED["simple-queue"]


def _started(state: Any) -> bool:
    """Whether a manager's ``_state`` says it is started (multiprocessing's, or multiprocess's:
    the module its ``State`` comes from). False once the interpreter's exit has cleared that
    module from sys.modules (a manager dying then, past every report)."""
    managers = sys.modules.get(type(state).__module__)
    return managers is not None and bool(state.value == managers.State.STARTED)


def _manager_state(manager: Any) -> str | None:
    return _NOT_RELEASED["manager"] if _started(manager._state) else None


def _shut_down(executor: Any) -> bool:
    """Whether ``shutdown()`` was called, whatever its wait (a broken pool's manager sets it
    too): ``concurrent.futures`` keeps it on the executor, loky in the flags its manager thread
    shares. An executor whose ``__init__`` failed before setting it has nothing to shut down."""
    flags = getattr(executor, "_flags", None)
    if flags is not None:
        return bool(getattr(flags, "shutdown", True))
    return bool(getattr(executor, "_shutdown_thread", True))


def _executor_state(executor: Any) -> str | None:
    # Set by shutdown() whatever its wait: the manager thread then ends the workers by itself.
    if not _shut_down(executor):
        return _NOT_RELEASED["executor"]
    # Until shutdown() returns it keeps its workers: still running when the report comes, it
    # was interrupted (SIGTERM while a worker ran a long task), and they outlive the program.
    processes = executor._processes
    if processes and any(process.is_alive() for process in list(processes.values())):
        return _STOPPING_EXECUTOR
    return None


#: What is wrong with an object of each family that was never released at all.
_NOT_RELEASED = {
    "pool": "not closed (close() then join(), or terminate(); a with-block terminates it)",
    "billiard-pool": "not closed (close() then join(), or terminate())",  # it has no with-block
    "queue": "not closed (close() and join_thread())",
    "simple-queue": "not closed (close())",
    "manager": "not shut down (shutdown() or a with-block)",
    "executor": "not shut down (shutdown() or a with-block)",
}

_STATES: dict[str, Callable[[Any], str | None]] = {
    "pool": _pool_state,
    "billiard-pool": _billiard_pool_state,
    "queue": _queue_state,
    "simple-queue": _simple_queue_state,
    "manager": _manager_state,
    "executor": _executor_state,
}


class _Pipe:
    """The two ends one ``Pipe()`` call returned, followed until both are gone."""

    __slots__ = ("duplex", "ends", "gone", "with_owner")

    def __init__(self, ends: tuple[Any, Any], duplex: bool) -> None:
        self.ends = tuple(weakref.ref(end) for end in ends)
        self.duplex = duplex
        #: Per end: None while it lives, then "closed" or "collected" (closed by its __del__).
        self.gone: list[str | None] = [None, None]
        #: Whether its library closes it by dropping it, on purpose (see dies_with_owner()).
        self.with_owner = False

    def state(self, index: int) -> str:
        gone = self.gone[index]
        if gone is not None:
            return gone
        end = self.ends[index]()
        return "open" if end is not None and end._handle is not None else "closed"

    def name(self, index: int) -> str:
        order = ("first", "second")[index]
        return f"{order} end" if self.duplex else f"{('read', 'write')[index]} end ({order})"

    def problem(self) -> str:
        states = [self.state(index) for index in (0, 1)]
        parts = []
        for state, what in (("open", "open (close() {})"), ("collected", "closed by the garbage collector")):
            which = [index for index in (0, 1) if states[index] == state]
            if len(which) == 2:
                parts.append("both ends " + what.format("each"))
            elif which:
                parts.append(f"the {self.name(which[0])} " + what.format("it"))
        if not parts:
            return "closed"
        if "closed" in states:
            parts.append(f"the {self.name(states.index('closed'))} closed")
        return "not closed: " + ", ".join(parts)


#: id(connection) -> (record of its pipe, which end it is), until the connection's __del__ runs.
_pipe_ends: dict[int, tuple[Record, int]] = {}

#: After the package's name (multiprocessing, or billiard, its fork in Celery).
_PIPE_LABEL = "Pipe() connection pair"
#: The ``class`` of a ``Pipe()`` pair's details, by its package.
_PIPES = ("multiprocessing.Pipe", "multiprocess.Pipe", "billiard.Pipe")


def _is_open(obj: Any, rec: Record) -> bool:
    family = rec.info[1]
    if family == "pipe":
        pipe: _Pipe = rec.info[2]
        return pipe.state(0) == "open" or pipe.state(1) == "open"
    return _STATES[family](obj) is not None


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label, family = rec.info[:2]
    if family == "pipe":
        pipe: _Pipe = rec.info[2]
        problem = pipe.problem()
        details = {"class": label.partition("(")[0], "problem": problem, "duplex": pipe.duplex}
        return f"{label} {problem}", details | {"first": pipe.state(0), "second": pipe.state(1)}
    problem = (_STATES[family](obj) if obj is not None else None) or _NOT_RELEASED[family]
    return f"{label} {problem}", {"class": label, "problem": problem}


def _fds(obj: Any, rec: Record) -> list[int]:
    if rec.info[1] != "pipe":
        return []  # the descriptors of pools, queues... are recorded by their owned functions
    ends = (ref() for ref in rec.info[2].ends)
    return [end._handle for end in ends if end is not None and end._handle is not None]


def closed_only_by_a_call(details: Mapping[str, Any]) -> bool:
    """Whether what *details* describe is released by nothing but a call: a ``SimpleQueue``, a
    ``Pipe()`` pair. multiprocessing's own exit function terminates pools, closes queues and
    joins their feeder threads, and shuts managers down, for every program alike; so one of
    those released while the interpreter exits was not the program's doing (see _exitreport)."""
    return details.get("problem") == _NOT_RELEASED["simple-queue"] or details.get("class") in _PIPES


def _winding_down(details: Mapping[str, Any]) -> bool:
    """Whether a check's grace period may see it end by itself (see _WINDING_DOWN)."""
    return details.get("problem") in _WINDING_DOWN


def _died_running(rec: Record) -> bool:
    """Whether the object of *rec*, dead now, was a manager still started: its finalizer, a
    weakref callback older than the record's (so called after it), then stops its server. The
    garbage collector did that, not the program. (Pools and executors are judged by their
    ``__del__``, see ``_records.AT_DEL``; the other families' deaths are not judged.)"""
    return rec.info[1] == "manager" and _started(rec.info[2])


register(
    Kind(
        "multiprocessing",
        is_open=_is_open,
        describe=_describe,
        fds=_fds,
        waitable=_winding_down,
        death_leak=_died_running,
    )
)


def _track_init(
    patches: Patches, cls: type, family: str, leaked_at_del: Callable[[Any], bool] | None = None
) -> None:
    """Record every instance of *cls* (and its subclasses), of the multiprocessing kind and *family*."""
    track_init(patches, cls, "multiprocessing", lambda cls: (label(cls), family), leaked_at_del)


def install_pool(patches: Patches, module: ModuleType) -> None:
    """Own the pool's functions; record each ``Pool`` (and ``ThreadPool``)."""
    pool = module.Pool
    own(pool, module.ThreadPool)
    # A pool collected while running warns from its __del__ (3.8+); we report it there.
    running = _running if "__del__" in vars(pool) else None
    _track_init(patches, pool, "pool", running)


def install_billiard_pool(patches: Patches, module: ModuleType) -> None:
    """Own billiard's pool (Celery's fork of multiprocessing's) and its parts; record each ``Pool``.

    Its workers, pipes and supervisor, task, result and time-limit threads are the pool's, as a
    ``multiprocessing.Pool``'s are: one entry at the line that made it, not one per part. The
    parts are looked up by name (private: absent ones are skipped). It has no ``__del__``.
    """
    threads = ("PoolThread", "Supervisor", "TaskHandler", "TimeoutHandler", "ResultHandler")
    parts = ("ThreadPool", "Worker", *threads)
    own(module.Pool, *(getattr(module, name) for name in parts if hasattr(module, name)))
    _track_init(patches, module.Pool, "billiard-pool")


def _running(pool: Any) -> bool:
    return bool(pool._state == "RUN")


def install_executor(patches: Patches, module: ModuleType) -> None:
    """Own ``concurrent.futures.process``'s executor and its parts; record each ``ProcessPoolExecutor``.

    The parts (``_ThreadWakeup``, ``_SafeQueue``, ``_ExecutorManagerThread``,
    the worker function) are looked up by name: private, so absent ones are
    skipped rather than failing the whole instrumentation.
    """
    executor = module.ProcessPoolExecutor
    parts = ("_ThreadWakeup", "_SafeQueue", "_ExecutorManagerThread", "_process_worker", "_sendback_result")
    own(executor, *(getattr(module, name) for name in parts if hasattr(module, name)))
    # No __del__ in 3.11-3.13; never wrap one we did not read.
    wrap = "__del__" not in vars(executor)
    _track_init(patches, executor, "executor", _never_shut_down if wrap else None)


def _never_shut_down(executor: Any) -> bool:
    return not _shut_down(executor)


def install_pipe(patches: Patches, module: ModuleType) -> None:
    """Record each ``multiprocessing.connection.Pipe()`` pair as one; see its ends die.

    ``multiprocessing.Pipe()`` (the context's) imports ``connection.Pipe`` at
    each call, and the queues call ``connection.Pipe``: both see the wrapper.
    billiard's (*module* ``billiard.connection``) is the same, with arguments of its own
    after *duplex* (non-blocking ends), passed on.
    """
    pipe = module.Pipe
    base = module._ConnectionBase
    finalize = vars(base).get("__del__")
    pair_label = f"{module.__name__.partition('.')[0]}.{_PIPE_LABEL}"

    def Pipe(duplex: bool = True, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        ends: tuple[Any, Any] = pipe(duplex, *args, **kwargs)
        site = _records.capture(sys._getframe(1), _records.depth)
        pair = _Pipe(ends, duplex)
        rec = _records.new(NO_OBJECT, "multiprocessing", (pair_label, "pipe", pair), site, ("pipe", id(pair)))
        for index, end in enumerate(ends):
            _records.release(("fd", end._handle))  # the connection owns its descriptor now
            _pipe_ends[id(end)] = (rec, index)
        return ends

    def __del__(self: Any) -> None:
        entry = _pipe_ends.pop(id(self), None)
        if entry is not None:
            rec, index = entry
            pair: _Pipe = rec.info[2]
            pair.gone[index] = "closed" if self._handle is None or pair.with_owner else "collected"
            if rec.state == OPEN and pair.gone[index] == "collected":
                _records.leak(rec, _records.COLLECTED)
            elif None not in pair.gone and _records.live.get(rec.key) is rec:
                _records.release(rec.key)
        if finalize is not None:
            finalize(self)

    Pipe.__doc__ = pipe.__doc__
    patches.set(module, "Pipe", Pipe)
    patches.set(base, "__del__", __del__)


def dies_with_owner(end: Any) -> None:
    """The pair *end* is one end of is closed, by design, when the object keeping it is collected
    (distributed's keep-alive pipe, see :mod:`._dask`): its ends collected are no leak; open, they
    still are."""
    entry = _pipe_ends.get(id(end))
    if entry is not None:
        entry[0].info[2].with_owner = True


def open_pipe_ends(context: str | None) -> list[tuple[Any, Record]]:
    """Each live end of the ``Pipe()`` pairs still open that were made under *context*, with the
    pair's record: the record has no object of its own, so what holds the pair holds its ends."""
    found = []
    for rec, index in list(_pipe_ends.values()):
        if rec.context == context and rec.state == OPEN:
            end = rec.info[2].ends[index]()
            if end is not None:
                found.append((end, rec))
    return found


def reset() -> None:
    """Forget the pipe ends followed (the instrumentation is being removed)."""
    _pipe_ends.clear()


def install_queues(patches: Patches, module: ModuleType) -> None:
    """Own the queues' functions; record each ``Queue``, ``JoinableQueue`` and ``SimpleQueue``."""
    # billiard's SimpleQueue has a base of its own, which Celery's pool makes per worker process
    own(module.Queue, module.JoinableQueue, module.SimpleQueue, getattr(module, "_SimpleQueue", None))
    _track_init(patches, module.Queue, "queue")
    _track_init(patches, module.SimpleQueue, "simple-queue")


def install_managers(patches: Patches, module: ModuleType) -> None:
    """Own the managers' and proxies' functions; record each manager once started.

    A ``SharedMemoryManager``'s ``SharedMemory()`` and ``ShareableList()`` make
    segments in the calling process that its server unlinks at shutdown: they
    are the manager's (owned), not the caller's to close and unlink.
    """
    manager = module.BaseManager
    own(manager, module.SyncManager, module.BaseProxy, getattr(module, "SharedMemoryManager", None))
    start = manager.start

    def start_(self: Any, *args: Any, **kwargs: Any) -> None:
        start(self, *args, **kwargs)
        made = outside(self, sys._getframe(1))
        maker = first_outside_framework(made)  # past multiprocessing's context.Manager()
        if maker is not None and maker.f_code in PLUMBING:
            return  # a library's manager for the process (aiomultiprocess's): never recorded
        # Its state, not itself: the record judges its death by it (see _died_running).
        info = (label(type(self)), "manager", self._state)
        _records.new(self, "multiprocessing", info, _records.capture(made, _records.depth))

    start_.__doc__ = start.__doc__
    patches.set(manager, "start", start_)


def install_process(patches: Patches, module: ModuleType) -> None:
    """Own ``BaseProcess``'s functions; record each started process as a child to join (billiard's
    too: *module* is ``multiprocessing.process`` or ``billiard.process``)."""
    base = module.BaseProcess
    package = module.__name__.partition(".")[0]
    own(base)
    start = base.start

    def start_(self: Any) -> None:
        target = getattr(self, "_target", None)
        what = f"{type(self).__qualname__}.run" if target is None else target_name(target)
        # The fork or spawn that makes the child names it, for what it starts (see _lineage).
        name = _lineage.new_name() if _lineage.ENABLED else None
        _lineage.starting(name)
        try:
            start(self)  # returns only in the parent (a forked child leaves through os._exit)
        finally:
            _lineage.starting(None)
        popen = self._popen
        args = f"{package} {type(self).__qualname__} {self.name!r} running {what}()"
        rec = _records.new(popen, "subprocess", (popen.pid, args, "joined"), site(self))
        if name is not None:
            _lineage.spawned(name, rec)  # a fork server's child never got it: nothing carries it

    start_.__doc__ = start.__doc__
    patches.set(base, "start", start_)


def install_spawn(patches: Patches, module: ModuleType) -> None:
    """Name the children the ``spawn`` start method makes, as a fork names them (see _lineage).

    ``multiprocessing.util.spawnv_passfds()`` gives ``_posixsubprocess.fork_exec()`` no
    environment (the child gets the program's): called from ``Popen._launch`` of *module*
    (``multiprocessing.popen_spawn_posix``) while a process starts, it is given the program's
    own with the child's name. Not the fork server's or the resource tracker's spawns, which
    outlive the process whose start made them.
    """
    import _posixsubprocess

    fork_exec = _posixsubprocess.fork_exec
    launch = module.Popen._launch.__code__
    spawnv = sys.modules[module.__name__.rpartition(".")[0] + ".util"].spawnv_passfds.__code__

    def fork_exec_(*args: Any) -> Any:
        name = _lineage.start_name()
        if name is not None and len(args) > _FORK_EXEC_ENV and args[_FORK_EXEC_ENV] is None:
            caller = sys._getframe(1)
            if caller.f_code is spawnv and caller.f_back is not None and caller.f_back.f_code is launch:
                env = _lineage.spawn_environment(name)
                args = (*args[:_FORK_EXEC_ENV], env, *args[_FORK_EXEC_ENV + 1 :])
        return fork_exec(*args)

    fork_exec_.__doc__ = fork_exec.__doc__
    patches.set(_posixsubprocess, "fork_exec", fork_exec_)


#: Where ``env`` is among ``_posixsubprocess.fork_exec()``'s arguments (3.11 to 3.13).
_FORK_EXEC_ENV = 5


def install_owned(patches: Patches, module: ModuleType) -> None:
    """Own the process-wide machinery *module* keeps for multiprocessing (see :data:`OWNED`)."""
    own(*(lookup(module, name) for name in OWNED[module.__name__]))


def install_owned_package(patches: Patches, module: ModuleType) -> None:
    """Own every function and class of the loaded modules of *module*'s package (see
    :data:`OWNED_PACKAGES`); record each ``ProcessPoolExecutor`` the program makes with it.

    The package's executor is tracked as ``concurrent.futures``' is (kind ``multiprocessing``,
    family ``executor``): one the program made and never shut down is its leak, at its line.
    Its reusable executor is loky's own: made by plumbing (see ``_owning.PROCESS_WIDE``), it
    is never recorded. The executor is patched once its package imports ``reusable_executor``
    (which imports it), after its functions are owned; the modules loaded later own only
    their own classes, never the wrapper of another's.
    """
    package = next(p for p in OWNED_PACKAGES if module.__name__.startswith(f"{p}."))
    for name, loaded in list(sys.modules.items()):
        if loaded is not None and (name == package or name.startswith(f"{package}.")):
            own(*(value for value in vars(loaded).values() if _defined_in(value, name)))
    executor = getattr(sys.modules.get(f"{package}.process_executor"), "ProcessPoolExecutor", None)
    if module.__name__ == f"{package}.reusable_executor" and isinstance(executor, type):
        # No __del__ (loky 3.x); never wrap one we did not read.
        wrap = "__del__" not in vars(executor) and "__init__" in vars(executor)
        if wrap:
            _track_init(patches, executor, "executor", _never_shut_down)


def _defined_in(value: object, module: str) -> bool:
    return isinstance(value, (type, FunctionType)) and getattr(value, "__module__", None) == module
