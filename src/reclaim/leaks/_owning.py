"""Objects tracked as a whole: their library's functions are owned, the object is recorded at the user's line.

A ``multiprocessing.Pool``, a ``ProcessPoolExecutor`` or a ``ThreadPoolExecutor``
is pipes, threads and workers the user never touches. Their functions are
marked *owned* (:func:`reclaim._sites.mark_owned`), so what they acquire before
any user frame is recorded but never reported, and the object itself gets one
record at the line where the user's code made it.

What a library keeps for the whole process (or makes and drops by design) is
its own, not the program's whose call happened to come first: the functions
that acquire it are *plumbing* (:data:`PROCESS_WIDE`), and what they acquire
directly is never recorded.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from types import CodeType, FrameType, FunctionType, MethodType, ModuleType

from reclaim import _sites

from . import _records
from ._patch import Patches, outside_warnings_stack

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "PLUMBING",
    "PROCESS_WIDE",
    "RUNNERS",
    "caller",
    "first_outside_framework",
    "install_owned",
    "install_process_wide",
    "install_runners",
    "label",
    "lookup",
    "outside",
    "own",
    "plumbing",
    "site",
    "track_init",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: Code that acquires for a library's own machinery (see PROCESS_WIDE, and anyio's pytest runner):
#: what it acquires directly is never recorded. That is the threads it starts, the tasks it
#: creates, the objects of classes tracked with track_init() it makes (executors), the selectors
#: and event loops it makes (see _sockets, _loops), and its connections to in-memory sqlite3
#: databases (see _sqlite); not the files it opens, whose descriptors would then be reported as
#: untracked (a library's file is owned: see own()).
PLUMBING: set[CodeType] = set()

#: What libraries keep for the whole process, or make and drop by design, by the module and the
#: functions that acquire it: theirs, not the program's whose call happened to come first. The
#: functions are plumbing (see PLUMBING); anyio's pytest runner task is in _tasks. A name may
#: also be an object the module made at import (a class attribute), recorded before the hook ran:
#: its record is dropped then.
PROCESS_WIDE = {
    # trio's thread cache: idle workers end ~10 s after their last job.
    "trio._core._thread_cache": ("WorkerThread.__init__",),
    # tqdm's monitor: started with the first bar, stopped only by tqdm's atexit handler.
    "tqdm._monitor": ("TMonitor.__init__",),
    # asgiref's AsyncToSync (Django's async views under its test client, Channels): a one-worker
    # ThreadPoolExecutor per call, dropped without shutdown(); its worker ends once it is collected.
    # And SyncToAsync's class-level executor, made at import, that runs every thread-sensitive
    # sync_to_async call made outside async_to_sync (Django's ORM from an async view).
    "asgiref.sync": ("AsyncToSync.__call__", "SyncToAsync.single_thread_executor"),
    # The standard library's socket.sendfile(): the PollSelector (no descriptor) it waits on is
    # made and dropped unclosed on every call.
    "socket": ("socket._sendfile_use_sendfile",),
    # socketserver's servers (http.server's, xmlrpc.server's): serve_forever() and handle_request()
    # wait on a selector of their own, closed by their with-block as they return. One still open
    # is the serving thread's, reported as that thread: as its own entry, a server left serving
    # was three (its socket, its thread, its selector).
    "socketserver": ("BaseServer.serve_forever", "BaseServer.handle_request"),
    # websockets' sync server: serve_forever() makes a selector to wait on and drops it when it
    # returns, never closed (the collector closes it then, whatever the program did).
    "websockets.sync.server": ("Server.serve_forever",),
    # pyzmq's context for the process: Context.instance() makes one per process (its libzmq
    # descriptors are that context's, see _zmq); a context the program makes is its own.
    "zmq.sugar.context": ("Context.instance",),
    # pyzmq's garbage collector for zero-copy sends: one daemon thread for the process, started by
    # the first tracked send (copy=False above zmq.COPY_THRESHOLD, or track=True), with a context
    # of its own, its PULL socket and a PUSH socket to it (properties, made on first use); stopped
    # by pyzmq's exit handler.
    "zmq.utils.garbage": (
        "GarbageCollector.start",
        "GarbageCollector.context",
        "GarbageCollector._push_socket",
        "GarbageCollectorThread.run",
    ),
    # jupyter_core's run_sync (every blocking call of jupyter_client's KernelManager and client):
    # the event loop it makes for a thread with none and keeps for its later calls
    # (ensure_event_loop), and, called where a loop already runs, a _TaskRunner per thread name,
    # kept in _runner_map with its loop and daemon thread, stopped by its exit handler.
    "jupyter_core.utils": ("_TaskRunner.run", "ensure_event_loop"),
    # fsspec's IO loop: one event loop for the process, run forever in its daemon thread
    # 'fsspecIO', made by the first filesystem that needs it and never stopped (reset at fork).
    "fsspec.asyn": ("get_loop",),
    # zarr's copy of it: one event loop for the process, run in its daemon thread 'zarr_io', and
    # the thread pool it gives that loop as its default executor; both shut down by zarr's exit
    # handler.
    "zarr.core.sync": ("_get_loop", "_get_executor"),
    # loky's reusable executor (joblib's default backend, its vendored copy too): one per process
    # (per thread), kept in reusable_executor._executor_storage for the next call to reuse, and
    # shut down by loky's exit handler. One the program makes with ProcessPoolExecutor is its own.
    "loky.reusable_executor": ("_ReusablePoolExecutor.get_reusable_executor",),
    "joblib.externals.loky.reusable_executor": ("_ReusablePoolExecutor.get_reusable_executor",),
    # pycares' channel reaper: one daemon thread for the process, started with the first Channel
    # (aiodns's resolver, aiohttp's AsyncResolver) to destroy the channels dropped or closed.
    "pycares": ("_ChannelShutdownManager.start",),
    # SQLAlchemy's test-suite runner (sqlalchemy.testing's, for its own suite and third-party
    # dialects'): one asyncio.Runner for the process, whose loop the first provisioning call
    # makes at session start; its pytest plugin closes it at pytest_unconfigure, after the check.
    "sqlalchemy.util.concurrency": ("_AsyncUtil.run_in_greenlet", "_AsyncUtil.run"),
    # django-redis's connection pools: one per URL for the process, kept in the class attribute
    # ConnectionFactory._pools by the first call that needs it, and closed by nothing (its
    # cache's close() disconnects the pool's connections, not the pool).
    "django_redis.pool": ("ConnectionFactory.get_or_create_connection_pool",),
    # distributed's offload executor: one ThreadPoolExecutor ('Dask-Offload') made at import for
    # the process, never shut down (concurrent.futures joins its thread at exit).
    "distributed.utils": ("_offload_executor",),
    # Django's connection to an in-memory sqlite3 database (its test database by default): its
    # close() keeps it, or the database would be gone. A file database's is the program's to close.
    "django.db.backends.sqlite3.base": ("DatabaseWrapper.get_new_connection",),
    # Pony's the same: a Database bound to ":memory:" (or a shared-memory one) keeps its one
    # connection for as long as it lives, its disconnect() a no-op, as closing it would drop the
    # data (pony's own suite: 250 such connections "closed by the garbage collector").
    "pony.orm.dbproviders.sqlite": ("SQLitePool._connect",),
    # falcon's async_to_sync(): one asyncio.Runner for the process, made at import, whose loop its
    # first call makes and every later one reuses; and its one-thread executor, made at import.
    "falcon.util.sync": ("_ActiveRunner.__call__", "_one_thread_to_rule_them_all"),
    # aiomultiprocess's manager: one SyncManager for the process, made by the first call that
    # needs one and kept in a module global (multiprocessing shuts it down at exit).
    "aiomultiprocess.core": ("get_manager",),
    # coverage's data kept in memory (no_disk: the data a report remaps under [paths], as
    # pytest-cov's report does): closing its connection would drop the data, so its close()
    # keeps it unless forced at exit. pytest-cov's report failed every run under --reclaim.
    "coverage.sqlitedb": ("SqliteDb._connect",),
}


#: The module of the wrappers this one patches onto classes: never the library's own code.
_RECLAIMS = __name__


def _codes(value: Any) -> Iterator[CodeType]:
    """The code objects of a function, method, property or class (and the functions nested in them)."""
    if isinstance(value, (staticmethod, classmethod)):
        value = value.__func__
    if isinstance(value, property):
        for accessor in (value.fget, value.fset, value.fdel):
            yield from _codes(accessor)
    elif isinstance(value, type):
        for member in vars(value).values():
            if getattr(member, "__module__", None) != _RECLAIMS:  # not a wrapper of ours (track_init)
                yield from _codes(member)
    elif isinstance(value, FunctionType):
        yield from _nested(value.__code__)


def _nested(code: CodeType) -> Iterator[CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, CodeType):
            yield from _nested(const)


def own(*values: Any) -> None:
    """Mark the functions of *values* (functions, classes) as owned by their library."""
    for value in values:
        for code in _codes(value):
            _sites.mark_owned(code)


def install_owned(patches: Patches, module: ModuleType) -> None:
    """Own what *module* defines (its classes and functions): a library tracked as a whole, whose
    parts these are (nats-py's subscriptions and transports, aiormq's channels)."""
    own(*(value for value in vars(module).values() if getattr(value, "__module__", None) == module.__name__))


#: How many decorators lookup() looks through (a chain of __wrapped__ that loops must end).
_UNWRAP = range(8)


def lookup(module: Any, name: str) -> Any:
    """The object at dotted *name* in *module*, or None (private names: a release may rename them).

    A decorated function is looked through (``__wrapped__``, as ``functools.wraps`` and
    ``lru_cache`` set it) to the function as written: its code is what runs the body.
    """
    value: Any = module
    for part in name.split("."):
        value = getattr(value, part, None)
    for _ in _UNWRAP:
        wrapped = getattr(value, "__wrapped__", None) if callable(value) else None
        if not isinstance(wrapped, FunctionType):
            break
        value = wrapped
    return value


def plumbing(module: Any, *names: str) -> None:
    """Mark the functions at dotted *names* in *module* as plumbing (missing ones are skipped)."""
    for name in names:
        value = lookup(module, name)
        if isinstance(value, MethodType):  # a classmethod, looked up on its class
            value = value.__func__
        elif isinstance(value, property):  # a getter that makes what it returns on first use
            value = value.fget
        if isinstance(value, FunctionType):
            PLUMBING.add(value.__code__)


def install_process_wide(patches: Patches, module: ModuleType) -> None:
    """What *module* acquires from its :data:`PROCESS_WIDE` functions is never recorded, and
    what it made at import and keeps there is forgotten."""
    names = PROCESS_WIDE[module.__name__]
    plumbing(module, *names)
    for name in names:
        kept = lookup(module, name)
        if kept is not None and not callable(kept):
            _records.release(id(kept))


#: What runs a test or drives an event loop from inside a library's own files, by the module and
#: the functions (or classes): left out of a report's callers (see
#: :func:`reclaim._sites.mark_runner`), as pytest's and asyncio's frames are, while the library's
#: other functions in those files still show where an acquisition went. A module named with no
#: functions is a test runner's whole file (anyio's pytest plugin), or a library's layer of
#: factories as thin as the standard library's own: billiard's contexts, as multiprocessing's
#: (``billiard.Pool()`` is ``context.Pool()``, whose frame would stand before the pool's owned
#: functions and make what they acquire the program's).
RUNNERS: dict[str, tuple[str, ...]] = {
    "anyio.pytest_plugin": (),
    "billiard.context": (),
    "anyio._backends._asyncio": ("TestRunner",),
    "anyio._backends._trio": ("TestRunner",),
    # aiomisc's pytest plugin runs each async test, and each async fixture, on its loop with
    # run_until_complete from these hooks; its fixtures (event_loop, tcp_proxy) still show.
    "aiomisc.pytest": ("pytest_pyfunc_call", "pytest_fixture_setup"),
    # aiohttp's pytest plugin does the same, on the loop of its loop fixture (the wrapper and
    # finalizer it gives an async fixture are nested in pytest_fixture_setup).
    "aiohttp.pytest_plugin": ("pytest_pyfunc_call", "pytest_fixture_setup"),
    # trio's run() and its run loop (asyncio.run's frames are plumbing too), and outcome's send,
    # which resumes each task's coroutine.
    "trio._core._run": ("run", "unrolled_run", "GuestState.guest_tick"),
    "outcome._impl": ("Value.send", "Error.send"),
}


def install_runners(patches: Patches, module: ModuleType) -> None:
    """Leave the frames of *module*'s :data:`RUNNERS` out of reports."""
    names = RUNNERS[module.__name__]
    filename = getattr(module, "__file__", None)
    if not names and isinstance(filename, str):
        _sites.mark_framework(filename)
    for name in names:
        for code in _codes(lookup(module, name)):
            _sites.mark_runner(code)


def outside(obj: object, frame: FrameType | None) -> FrameType | None:
    """The first frame from *frame* outwards that is not a method running on *obj*.

    A ``JoinableQueue`` runs ``Queue.__init__`` from its own ``__init__``, a
    manager's ``__enter__`` calls ``start``: the object is acquired where the
    user's code made it, not inside its own methods.

    A frame's ``self`` is read only where the frame may be such a method (see
    :func:`_may_run_on`): on Python 3.11 and 3.12 reading ``f_locals`` leaves a
    snapshot of the frame's locals on it, which keeps every object they held
    then alive until the frame reads them again or ends. Read on the program's
    own method (a test's ``def test_x(self)``), it kept the spawns the test had
    dropped alive until its next spawn, their terminals open: pexpect's
    ``test_destructor`` saw its descriptors freed in another order, and failed.
    """
    while frame is not None:
        code = frame.f_code
        if not (
            code.co_argcount
            and code.co_varnames[0] == "self"
            and _may_run_on(obj, frame)
            and frame.f_locals.get("self") is obj
        ):
            return frame
        frame = frame.f_back
    return frame


def _may_run_on(obj: object, frame: FrameType) -> bool:
    """Whether *frame*, whose first parameter is ``self``, may run a method on *obj*: one defined
    in its class or a base (by the qualified name of its code), or one of reclaim's wrappers."""
    owner = frame.f_code.co_qualname.rpartition(".")[0]
    if owner and any(klass.__qualname__ == owner for klass in type(obj).__mro__):
        return True
    name = frame.f_globals.get("__name__")
    return type(name) is str and name.partition(".")[0] == "reclaim"


def caller(frame: FrameType, package: str) -> FrameType:
    """The first frame from *frame* outwards that is neither *package*'s nor plumbing (reclaim's
    wrappers): the program's line that called into the library (``nats.connect(...)``), not the
    library function it called (else *frame* itself).

    Not past the outermost frame of a task's coroutine: the frames past it run the event loop
    (the line of ``asyncio.run()``), and none of them called the library. A library that
    connects in a task of its own (aio-pika's robust connection) is found at *frame*, whose
    capture goes on where that task was made (see :func:`reclaim._sites.capture_flat`)."""
    found: FrameType | None = frame
    while found is not None:
        code = found.f_code
        name = found.f_globals.get("__name__")
        if not (type(name) is str and name.partition(".")[0] == package) and not _sites.is_framework(
            code.co_filename
        ):
            return found
        back = found.f_back
        if code is _sites.task_root or (
            code.co_flags & _sites.COROUTINE and (back is None or not back.f_code.co_flags & _sites.AWAITING)
        ):
            break  # a task's stack ends here (asyncio's step, or uvloop's from C)
        found = back
    return frame


def first_outside_framework(frame: FrameType | None) -> FrameType | None:
    """The first frame outside the standard library (and reclaim) from *frame* out: the code that
    called ``asyncio.new_event_loop()`` or ``multiprocessing``'s ``context.Manager()``."""
    while frame is not None and _sites.frame_is_framework(frame):
        frame = frame.f_back
    return frame


def site(obj: object) -> Any:
    """Where *obj* was made: call it straight from the wrapper that the user's code called."""
    # Frame 0 is this function, 1 the wrapper, 2 the wrapper's caller.
    return _records.capture(outside(obj, sys._getframe(2)), _records.depth)


def label(cls: type) -> str:
    """Where the package exports the class, its public name (``multiprocessing.Queue``), else module.Class."""
    name = cls.__qualname__
    for package in (
        "multiprocessing",
        "multiprocess",
        "billiard",
        "concurrent.futures",
        "loky",
        "joblib.externals.loky",
    ):
        if cls.__module__.startswith(f"{package}.") and hasattr(sys.modules.get(package), name):
            return f"{package}.{name}"
    return f"{cls.__module__}.{name}"


def track_init(
    patches: Patches,
    cls: type,
    kind: str,
    info: Callable[[type], Any],
    leaked_at_del: Callable[[Any], bool] | None = None,
) -> None:
    """Record every instance of *cls* (and its subclasses) once its ``__init__`` returned.

    The record is of *kind*, with ``info(type(instance))`` as its info.

    With *leaked_at_del*, ``cls.__del__`` is wrapped too (the class's own, if
    it has one, still runs after): an instance whose record is open when its
    ``__del__`` runs and for which ``leaked_at_del(instance)`` is true (never
    shut down, say) is reported as collected, whether it died of its last
    reference or in a reference cycle (see :data:`._records.AT_DEL`). An
    instance of a subclass with a ``__del__`` of its own keeps the record
    unmarked, as that ``__del__`` may never call ours.
    """
    init: Callable[..., None] = vars(cls)["__init__"]
    finalize: Callable[..., None] | None = vars(cls).get("__del__")
    leaked: Callable[[Any], bool] = leaked_at_del or (lambda obj: False)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        maker = outside(self, sys._getframe(1))
        if maker is not None and maker.f_code in PLUMBING:
            return  # a library's own (asgiref's executor per call): never recorded
        rec = _records.new(self, kind, info(type(self)), _records.capture(maker, _records.depth))
        if leaked_at_del is not None and type(self).__del__ is __del__:
            rec.why = _records.AT_DEL

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        rec = _records.at_del(self)
        if rec is not None and rec.state == _records.OPEN and rec.kind == kind and leaked(self):
            _records.leak(rec, _records.COLLECTED)
        if finalize is not None:
            finalize(self, *args, **kwargs)

    __init__.__doc__ = init.__doc__
    # A warning the class's __init__ issues for its caller (stacklevel=2) names the caller's
    # line, not this wrapper's.
    __init__.__code__ = outside_warnings_stack(__init__.__code__)
    patches.set(cls, "__init__", __init__)
    if leaked_at_del is not None:
        if finalize is not None:
            __del__.__doc__ = finalize.__doc__
        patches.set(cls, "__del__", __del__)
