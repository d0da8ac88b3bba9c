"""asyncio tasks left pending, including the ones ``asyncio.run`` silently cancels.

``BaseEventLoop.create_task`` is wrapped (every ``asyncio.create_task``,
``ensure_future``, ``TaskGroup.create_task`` and task factory goes through it)
to record the creating line. No done callback is added to the task (but to one made to run in a
context it is given, see _in_context): it would run from a handle queued on the loop, which holds
the finished task one more turn, and a program that drops it expects it gone. The record is
released when a check finds the task done, or as the task dies done (see _death_is_leak).
``asyncio.runners._cancel_all_tasks``, which ``asyncio.run`` and
``asyncio.Runner`` (and so pytest-asyncio) call at loop shutdown, is wrapped
to mark every task still pending there as a leak *before* it is cancelled:
afterwards it looks like any finished task. A task garbage-collected while
pending ("Task was destroyed but it is pending!") is a leak too, unless its coroutine had
ended: a loop stopped before the task's first step, the program cancelled it and closed its
coroutine by hand (tornado's ``SelectorThread.close()`` does), and nothing of it is left to run.

A loop makes a task of its own to close an async generator the program dropped unfinished (an
``async for`` left by ``break`` or an error, with no ``aclose()``): ``_asyncgen_finalizer_hook``
schedules ``create_task(agen.aclose())``. When the loop shuts down before that task runs, it is
cancelled and the generator's cleanup never runs: the program's leak, but the task ran
``async_generator_athrow()`` and was recorded at the line that started the loop, naming
neither the generator nor where it was dropped. The hook is wrapped: the task is described as
``gen().aclose()`` and recorded at the line that dropped the generator (unless a collection
dropped it, at no line of the program's).

A task made by framework code alone, in a loop callback (the handler task of
``asyncio.start_server``), is recorded at its coroutine's code, then at the
program's line that registered the callback. A task made outside any task (by a
callback, by ``asyncio.run``, by pytest-asyncio for a test) sets its site and
label in the context it runs in (see :data:`._records.origin`), which the tasks
and callbacks made from it copy in turn, and ``Server._start_serving`` sets the
line that started the server for the callbacks that accept its connections. A task given a
fresh, empty context (``context=contextvars.Context()``, uvicorn's ``reset_contextvars``)
keeps them beside it instead (see :data:`._records.task_origins`): the program expects that
context to hold only what it sets.
asgiref's ``_restore_context``, which copies what a call's context changed into the
caller's, is wrapped to leave that site and label out (see install_asgiref).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import sys
import threading
import weakref
from types import ModuleType

from reclaim import _sites

from . import _records
from ._kinds import Details, Kind, register
from ._owning import PLUMBING, plumbing
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

__all__ = [
    "Greenlet",
    "install_asgiref",
    "install_base_events",
    "install_runners",
    "install_transports",
    "tracking_create_task",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

CANCELLED = "cancelled"
#: ``asyncio.Runner.run``'s code, once asyncio.runners is imported: a task it makes is the runner's
#: main task, the one ``asyncio.run(main())`` runs (see install_runners).
_RUNNER_RUN: set[Any] = set()
#: The main tasks of the runners made so far.
_main_tasks: weakref.WeakSet[Any] = weakref.WeakSet()
#: The qualified name of the async generator whose ``aclose()`` a loop's finalizer hook is
#: scheduling, in the context of the callback that creates the task (see install_base_events).
_closing_agen: contextvars.ContextVar[str] = contextvars.ContextVar("reclaim_closing_agen")
#: What the coroutine name of such a task ends with (no qualified name holds a parenthesis).
ACLOSE = "().aclose"
#: reclaim run's SIGTERM is unwinding an asyncio program (see install_runners).
_terminating = False
#: Called with a loop whose runner (``asyncio.run``, ``Runner``) is about to cancel its tasks,
#: when those tasks are leaks: what such a cancel closes for a library (aiormq's connection, see
#: :mod:`._aiormq`) is marked a leak first.
AT_SHUTDOWN: list[Callable[[Any], None]] = []
# Done callbacks get this context instead of a fresh copy_context() per task.
_EMPTY = contextvars.Context()


class Greenlet:
    """The info of a task that is a gevent greenlet (see :mod:`._gevent`): the qualified name of
    the function it runs. Its name is read when a report asks: gevent makes one on first read."""

    __slots__ = ("function",)

    def __init__(self, function: str) -> None:
        self.function = function


def _coro_name(coro: Any) -> str:
    return str(getattr(coro, "__qualname__", None) or type(coro).__qualname__)


def _coro_ref(coro: Any) -> Any:
    """A weak reference to *coro*, or None for an awaitable that takes none: read when its task
    dies pending (see _death_is_leak), when the task's own reference to it is still there."""
    try:
        return weakref.ref(coro)
    except TypeError:
        return None


def _ended(coro: Any) -> bool | None:
    """Whether coroutine *coro* returned or was closed: nothing of it is left to run. None when
    it cannot tell: neither a coroutine nor a generator made one by ``types.coroutine`` (3.11's
    ``_wrap_awaitable``, which ``ensure_future()`` of an awaitable runs), a frame of which is
    None once it ended."""
    frame = getattr(coro, "cr_frame", _NO_FRAME)
    if frame is _NO_FRAME:
        frame = getattr(coro, "gi_frame", _NO_FRAME)
        if frame is _NO_FRAME:
            return None
    return frame is None


_NO_FRAME = object()


def _death_is_leak(rec: Record) -> bool | None:
    """Whether a task that died while its record was open leaked: no task is released as it ends
    (a done callback's queued handle would keep it alive a turn of its loop longer than the
    program expects), so it may have died pending or done.

    A task that dies of its last reference still holds its coroutine: a leak unless that ended.
    Its finalizer ran first, and marked it a leak if asyncio logged it "destroyed but pending"
    (see :func:`judging_destroyed`): that stands for a coroutine that cannot tell. In a reference
    cycle, the coroutine's weak reference is cleared with the task's, and the task's finalizer
    runs after this: it decides, or the collection's end releases the record (see
    :func:`._records.settle`). A pending task asyncio does not log (``_log_destroy_pending``
    off: a ``gather()`` child) goes unreported then.
    """
    if type(rec.info) is Greenlet:
        return True
    ref = rec.info[2]
    coro = ref() if ref is not None else None
    ended = _ended(coro) if coro is not None else None
    if ended is not None:
        return not ended
    return None if _sites.collecting_here() else False


def _is_open(obj: Any, rec: Record) -> bool:
    if type(rec.info) is Greenlet:
        return not obj.ready()
    if obj.done() or _ended(obj.get_coro()):
        # Released now: nothing releases a task as it ends (see above). Or its coroutine ended,
        # closed by the program while the task never ran again.
        if _records.live.get(rec.key) is rec:
            _records.release(rec.key)
        return False
    return True


#: What :func:`_suspended_at` says of a task whose coroutine never ran.
NOT_STARTED = ""


def _suspended_at(task: Any) -> str | None:
    """``file:line`` where *task*'s coroutine waits, :data:`NOT_STARTED` when it never ran (its
    frame stands at its ``def`` line, waiting for nothing), or None (done, or not a coroutine)."""
    coro = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return None
    if getattr(coro, "cr_suspended", True) is False and not getattr(coro, "cr_running", False):
        return NOT_STARTED
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _greenlet_waits_at(greenlet: Any) -> str | None:
    """``file:line`` where *greenlet* waits: its innermost frame that is not gevent's (the hub's
    ``sleep``) or other plumbing, else its innermost; None when it has no frame (not started)."""
    frame = innermost = greenlet.gr_frame
    while frame is not None and _sites.frame_is_framework(frame):
        frame = frame.f_back
    frame = frame or innermost
    return f"{frame.f_code.co_filename}:{frame.f_lineno}" if frame is not None else None


def _describe_greenlet(obj: Any, rec: Record) -> tuple[str, Details]:
    name = obj.name if obj is not None else None
    details: Details = {"name": name, "function": rec.info.function}
    text = (repr(name) if name else "a greenlet") + f" running {rec.info.function}()"
    if obj is not None and not obj.ready():
        awaiting = _greenlet_waits_at(obj)
        if awaiting is None:
            # No frame: not run yet, or suspended in compiled code (gevent's Channel.put, run
            # as the greenlet's function). The base class's truth is "running" (gevent's own
            # is "started"), asked without running the program's code.
            started = sys.modules["greenlet"].greenlet.__bool__(obj)
            text += ", suspended in compiled code" if started else ", not started yet"
        else:
            details["awaiting"] = awaiting
            text += f", suspended at {_sites.shown(awaiting)}"
        if _hub_held(obj):
            details["hub_held"] = True
    return text, details


def _hub_held(greenlet: Any) -> bool:
    """Whether *greenlet*'s hub belongs to the thread asking, with ``time`` not monkey-patched:
    a check's wait there is a real ``time.sleep``, which never switches to the hub, so the
    greenlet cannot run (nor end) while the check waits. (Patched, the wait is gevent's sleep,
    which runs the hub and its greenlets.)"""
    if getattr(greenlet.parent, "thread_ident", None) != threading.get_ident():
        return False
    monkey = sys.modules.get("gevent.monkey")
    return monkey is None or not monkey.is_module_patched("time")


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    if type(rec.info) is Greenlet:
        return _describe_greenlet(obj, rec)
    name, coro, _, _, *cancelled_at = rec.info
    if obj is not None:  # asyncio.create_task(name=...) names it after the loop made it (< 3.13)
        name = obj.get_name()
    details: Details = {"name": name, "coroutine": coro}
    text = f"{name!r} running {coro}()"
    if coro.endswith(ACLOSE):
        text += ", asyncio's close of an async generator dropped unfinished (no aclose())"
    awaiting = _suspended_at(obj) if obj is not None and not obj.done() else None
    if awaiting is None and cancelled_at:  # cancelled at loop shutdown: where it waited then
        awaiting = cancelled_at[0]
    if awaiting == NOT_STARTED:
        text += ", not started yet"
    elif awaiting is not None:
        details["awaiting"] = awaiting
        text += f", suspended at {_sites.shown(awaiting)}"
    if obj is not None and not obj.done():
        cancelling = getattr(obj, "cancelling", None)  # 3.11+: cancel() asked, not uncancelled
        if cancelling is not None and cancelling():
            # cancel() without awaiting the task: it unwinds only as its loop runs (a module-scoped
            # loop: during the next test), and what its finally releases stays held till then.
            details["cancelled"] = True
            text += ", cancelled but not awaited"
        loop = obj.get_loop()
        if loop.is_closed():
            details["loop_closed"] = True
            text += " (its loop is closed: it can never finish)"
        elif not loop.is_running():
            # Made and run for a while, then left (a fixture's new_event_loop()): no thread runs
            # it while the check waits, the checking one least of all.
            details["loop_stopped"] = True
            if details.get("cancelled"):
                text += (
                    " (its loop is not running: it unwinds when the loop runs next; await it after cancel())"
                )
            else:
                text += " (its loop is not running)"
    return text, details


def _may_finish(details: Mapping[str, Any]) -> bool:
    """Whether a check's grace period may see the task end: only while a thread runs its loop
    (a greenlet: its hub), and not the checking thread, whose wait runs no greenlet."""
    return not any(details.get(key, False) for key in ("loop_closed", "loop_stopped", "hub_held"))


register(Kind("task", is_open=_is_open, describe=_describe, waitable=_may_finish, death_leak=_death_is_leak))


def _done(task: Any) -> None:
    _records.release(id(task))
    if _terminating and getattr(getattr(task, "_exception", None), "unwinds_the_program", False):
        task.exception()  # SIGTERM landed in this task: read, so not logged as never retrieved


#: What asyncio's task finalizer says of a task dying pending, and of one whose exception no one read.
DESTROYED_PENDING = "Task was destroyed but it is pending!"
NEVER_RETRIEVED = "Task exception was never retrieved"


def judging_destroyed(handler: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A loop's ``call_exception_handler`` (*handler*, asyncio's or uvloop's) that first hears what
    a dying task's finalizer says: a task it logs "destroyed but pending" is a leak the collector
    ended (in a reference cycle, the task's weak reference was cleared before that finalizer ran,
    and left the decision to it: see :func:`_death_is_leak`). A task whose error was reclaim
    run's SIGTERM, which the program never read, is not logged as never retrieved."""

    def call_exception_handler(self: Any, context: Any) -> Any:
        message = context.get("message") if type(context) is dict else None
        if message == DESTROYED_PENDING:
            task = context.get("task")
            if task is not None:
                _records.judge_at_del(task, "task", _destroyed)
        elif (
            message == NEVER_RETRIEVED
            and _terminating
            and getattr(context.get("exception"), "unwinds_the_program", False)
        ):
            return None
        return handler(self, context)

    call_exception_handler.__doc__ = handler.__doc__
    return call_exception_handler


def _destroyed(task: Any, rec: Record) -> Any:
    """The info of *rec*, the record of a task asyncio logs as destroyed pending, or None: its
    coroutine was closed before (by the program, as tornado's ``SelectorThread.close()`` does),
    not by its own finalizer in the collection under way, and nothing of it was left to run."""
    if not _sites.collecting_here():
        if _ended(task.get_coro()):
            return None
    else:  # what it awaits dies with it, in its reference cycle: see _fold_destroyed
        _destroyed_now[id(task)] = (rec, _waits_on(task), _awaiters(task))
    return (task.get_name(), *rec.info[1:])  # its name now: set after the loop made it (< 3.13)


#: id -> (record, what it waits on, what awaits it) of each task asyncio logged destroyed
#: pending in the collection under way.
_destroyed_now: dict[int, tuple[Record, set[int], set[int]]] = {}


def _fold_destroyed() -> None:
    """As a collection ends: of the tasks it destroyed pending, the ones another of them awaited
    are that one's leak, not leaks of their own (as at shutdown, see :func:`_awaited_by_another`)."""
    if not _destroyed_now:
        return
    destroyed = {key: entry[1:] for key, entry in _destroyed_now.items()}
    records = [entry[0] for entry in _destroyed_now.values()]
    _destroyed_now.clear()
    awaited = _awaited(destroyed)
    for rec in records:
        if rec.key in awaited:
            _records.unleak(rec)


_sites.collection_ended.append(_fold_destroyed)


def _collectors(label: str | None) -> str | None:
    """*label*, or the collector's for a task a finalizer makes as the collector runs in this
    thread: for an object dropped in a reference cycle some time before, maybe by an earlier test
    (s3fs's filesystem, whose ``weakref.finalize`` schedules its session's close on the loop
    running then). It was the leak of whichever test's loop ran when the collection came."""
    if _sites._collecting_in != threading.get_ident():
        return label
    return f"a finalizer the garbage collector ran during {label or 'the run'}"


def install_base_events(patches: Patches, base_events: ModuleType) -> None:
    """Record every task a loop creates, and release it when it is done."""
    loop_cls = base_events.BaseEventLoop
    create_task = loop_cls.create_task
    patches.set(loop_cls, "create_task", tracking_create_task(create_task))
    _closing_at_drop(patches, loop_cls)
    patches.set(loop_cls, "call_exception_handler", judging_destroyed(loop_cls.call_exception_handler))
    # A callback registered from another thread (or before the loop runs) carries the line that
    # registered it: a task it makes goes on there, where nothing of the thread running the loop
    # leads to the program's line (joblib's dask backend, through tornado's add_callback). Code
    # that runs with an origin already (a task's, or a thread given a task's context by
    # to_thread()) keeps it, and an executor's result handed back (run_in_executor, to_thread:
    # the most frequent call, from the pool's threads) makes no task.
    set_state = getattr(sys.modules.get("asyncio.futures"), "_set_state", None)
    soon = _records.at_callers_site(
        loop_cls.call_soon_threadsafe,
        site_only=True,
        keep_origin=True,
        unless=lambda args, kwargs: len(args) > 1 and args[1] is set_state,
    )
    patches.set(loop_cls, "call_soon_threadsafe", soon)
    _sites.task_root = sys.modules["asyncio.events"].Handle._run.__code__
    _sites.task_site = _running_task_site
    _sites.task_began = _task_site_at
    _serving_at_caller(patches, base_events.Server)


#: The classes of the tasks made so far that have the methods a task record reads (see _is_task).
_task_types: set[type] = set()
_TASK_METHODS = ("get_name", "get_coro", "get_loop", "done", "add_done_callback")


def _is_task(obj: Any) -> bool:
    """Whether *obj*, what a loop's ``create_task`` returned, is a task reclaim can record: a task
    factory may return an object that only acts as one for asyncio (CPython's
    ``test_asyncio_run_without_uncancel`` wraps a Task in a class with no ``get_name``), which
    is left alone, untracked, where recording it raised in the program's ``create_task``."""
    cls = type(obj)
    if all(callable(getattr(cls, name, None)) for name in _TASK_METHODS):
        _task_types.add(cls)
        return True
    return False


def tracking_create_task(create_task: Any) -> Any:
    """A ``create_task`` method that records the task made by *create_task* (a loop class's own,
    asyncio's or uvloop's) and releases it when it is done."""
    capture_task = _sites.capture_task
    capture_in_task = _sites.capture_in_task
    capture = _records.capture
    current_task = sys.modules["asyncio.tasks"].current_task
    origin = _records.origin
    current_origin = origin.get
    task_origins = _records.task_origins
    kept = _records.task_origins_kept

    def create_task_(self: Any, coro: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            caller = sys._getframe(1)
        except ValueError:  # called from C with no Python frame: made as without reclaim
            return create_task(self, coro, *args, **kwargs)
        # A test runner's own task (anyio's), or a library's that runs until its loop shuts down
        # by design (anyio's process pool shutdown task): never recorded.
        if caller.f_code in PLUMBING or getattr(coro, "cr_code", None) in PLUMBING:
            return create_task(self, coro, *args, **kwargs)
        context = kwargs.get("context")
        running = current_task(self)
        in_task = running is not None
        if in_task and context is None:
            # The usual case: made in a task, whose frames are on the stack. It copies the running
            # task's context, and so what started that (see _records.origin): not set anew, as
            # a context variable costs two HAMT copies and a token on every task.
            site = capture_in_task(
                caller, _records.depth, getattr(running.get_coro(), "cr_frame", None), _site_of(running)
            )
            if getattr(self, "_task_factory", None) is None:
                task = create_task(self, coro, *args, **kwargs)
            else:  # eager_task_factory runs its first step now, before it is recorded
                _starting[id(coro)] = site
                try:
                    task = create_task(self, coro, *args, **kwargs)
                finally:
                    _starting.pop(id(coro), None)
            if type(task) not in _task_types and not _is_task(task):
                return task
            started = current_origin(None)
            if kept:  # made in a task whose origin is kept beside it, not in its context?
                beside = task_origins.get(running)
                if beside is not None:
                    task_origins[task] = beside
                    if started is None:
                        started = beside
            label = _records.label_of(started)  # label_here(), with the lookups above done once
            if _sites._collecting_in is not None:
                label = _collectors(label)
            info = (task.get_name(), _coro_name(coro), _coro_ref(coro), id(running))
            _records.new(task, "task", info, site, label=label)
        else:
            # A loop callback's (no task's frames on the stack), code's outside the loop, or one
            # to run in a context of its own (asyncio.run's, a test's under pytest-asyncio): the
            # task, and the callbacks registered from it, carry its site and label.
            if in_task:
                site = capture(caller, _records.depth)
            else:
                site = capture_task(caller, _records.depth, getattr(coro, "cr_code", None))
            _records.thread_name()  # label_here() reads what it caches
            label = _records.label_here()
            if _sites._collecting_in is not None:
                label = _collectors(label)
            if context is None:
                token = origin.set((site, label))  # the task copies the context now
                try:
                    task = create_task(self, coro, *args, **kwargs)
                finally:
                    origin.reset(token)
            elif (
                type(context) is contextvars.Context and not len(context) and caller.f_code not in _RUNNER_RUN
            ):
                # A fresh context, to run in isolation (uvicorn's reset_contextvars): the program
                # expects it to hold only what the task sets there, so nothing of reclaim's. Not
                # asyncio.run()'s, empty when the program set no context variable before: its
                # tasks would each pay for an entry in task_origins (a WeakKeyDictionary).
                task = create_task(self, coro, *args, **kwargs)
                task_origins[task] = (site, label)
            else:
                task = _in_context(context, (site, label), create_task, self, coro, *args, **kwargs)
            if type(task) not in _task_types and not _is_task(task):
                return task
            closing = _closing_agen.get(None)
            made_by = id(running) if in_task else 0
            if closing is not None and type(coro).__name__ == "async_generator_athrow":
                info = (task.get_name(), closing + ACLOSE, None, made_by)
            else:
                info = (task.get_name(), _coro_name(coro), _coro_ref(coro), made_by)
            _records.new(task, "task", info, site, label=label)
            if caller.f_code in _RUNNER_RUN:
                _main_tasks.add(task)
        made = getattr(task, "_source_traceback", None)  # in debug mode: where it was made (its repr)
        if made:
            while made and made[-1].filename == __file__:
                del made[-1]  # this wrapper's frames: the program's call is the last one
        return task

    create_task_.__doc__ = create_task.__doc__
    return create_task_


def _in_context(context: Any, started: Any, create_task: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Create a task that runs in the *context* it is given (``asyncio.Runner``'s, pytest-asyncio's):
    *started* is set in that context while the task runs, and reset once it is done, so a runner
    that copies what a task changed in its context (pytest-asyncio's fixtures) finds nothing of
    reclaim's."""
    origin = _records.origin
    try:
        token = context.run(origin.set, started)
    except (RuntimeError, TypeError, AttributeError):  # entered now, or no Context at all
        return create_task(*args, **kwargs)
    try:
        task = create_task(*args, **kwargs)
    except BaseException:
        _reset(context, token)
        raise
    task.add_done_callback(lambda _: _reset(context, token), context=_EMPTY)
    return task


def _reset(context: Any, token: Any) -> None:
    # RuntimeError: the context is entered now (left as it is); ValueError cannot happen (the
    # token is that context's), suppressed all the same: a done callback must not raise.
    with contextlib.suppress(RuntimeError, ValueError):
        context.run(_records.origin.reset, token)


def install_asgiref(patches: Patches, sync: ModuleType) -> None:
    """Keep :data:`._records.origin` out of what asgiref copies back to the caller of a call.

    ``async_to_sync`` and ``sync_to_async`` end by setting, in the caller's context, every
    context variable the call's context holds (``_restore_context``), Django's and the app's
    own included. ``async_to_sync`` runs its coroutine in a task made outside any task, whose
    context holds the origin that task was made with: copied out, it stayed set in the calling
    thread, and everything that thread acquired afterwards, in later tests too, was labelled as
    the test that made the call. The wrapper hands asgiref a copy of the context holding the
    caller's own origin instead (None when it had none, which reads as none).
    """
    restore = getattr(sync, "_restore_context", None)  # private: a release may rename it
    if not callable(restore):
        return
    origin = _records.origin

    def _restore_context(context: Any, *args: Any, **kwargs: Any) -> Any:
        theirs = context.copy()
        theirs.run(origin.set, origin.get(None))
        return restore(theirs, *args, **kwargs)

    patches.set(sync, "_restore_context", _restore_context)


def _closing_at_drop(patches: Patches, loop_cls: type) -> None:
    """Wrap ``_asyncgen_finalizer_hook``: the task it schedules to close the async generator the
    program dropped is named after that generator and carries the line that dropped it (the frame
    running as the generator died of its last reference), as a callback carries the line that
    registered it (see :data:`._records.origin`); one that died as a task's step ended, the site
    of that task; one that died as a library's frame saw a coroutine of the program's return, that
    coroutine's last line (see :func:`_ended_await`). A generator a collection finalizes was
    dropped at no line of the program's: its task keeps the site it had."""
    hook = vars(loop_cls).get("_asyncgen_finalizer_hook")
    if hook is None:  # private: a release may rename it
        return
    origin = _records.origin

    def _asyncgen_finalizer_hook(self: Any, agen: Any) -> None:
        closing = _closing_agen.set(_coro_name(agen))
        token = None
        try:
            caller = sys._getframe(1)
        except ValueError:  # finalized from C code with no Python frame: no line dropped it
            caller = None
        if caller is not None and not _sites.collecting_here():
            site = _ended_step(self) if caller.f_code is _sites.task_root else _ended_await(caller)
            site = site or _records.capture(caller, _records.depth)
            _records.thread_name()
            token = origin.set((site, _records.label_here()))
        try:
            hook(self, agen)  # call_soon_threadsafe() copies the context, and what we set in it
        finally:
            if token is not None:
                origin.reset(token)
            _closing_agen.reset(closing)

    _asyncgen_finalizer_hook.__doc__ = hook.__doc__
    patches.set(loop_cls, "_asyncgen_finalizer_hook", _asyncgen_finalizer_hook)


def _ended_step(loop: Any) -> Any:
    """The flat site of a drop as the step of *loop*'s running task ended (a local of its
    coroutine, which returned): that coroutine (its last line: its frame is gone, and its first is
    a decorator's where it has one), then where the task was made; empty when no tracked task
    runs. The frames past the loop's drive it and led to no drop: a pytest-asyncio test run
    in-process by pytester had the outer test's runpytest() line."""
    try:
        task = sys.modules["asyncio.tasks"].current_task(loop)
    except RuntimeError:  # the loop is not running
        return ()
    code = getattr(task.get_coro(), "cr_code", None) if task is not None else None
    if code is None:
        return ()
    made = _site_of(task)
    if len(made) > 1 and made[0] is code and made[1] == 0:  # a framework's task: starts with it
        return made
    return (code, _last_line_offset(code), *made)[: 2 * _records.depth]


def _ended_await(caller: Any) -> Any:
    """The flat site of a drop as a coroutine of the program's, awaited by a framework's frame
    (*caller*), returned: that coroutine (its last line), then *caller*'s stack; empty when
    *caller* is the program's own or holds no such coroutine. anyio's pytest plugin awaits each
    test in one runner task (``retval = await coro``); a generator the test left in a local died
    as it returned, and was placed at that runner's line."""
    if _sites.is_program(caller.f_code.co_filename):
        return ()
    try:
        values = list(caller.f_locals.values())
    except Exception:  # a proxy that cannot be read: keep the caller's line
        return ()
    for value in values:
        code = getattr(value, "cr_code", None)
        if code is None or getattr(value, "cr_frame", True) is not None:  # not a coroutine that ended
            continue
        if _sites.is_program(code.co_filename):
            site = _records.capture(caller, _records.depth)
            return (code, _last_line_offset(code), *site)[: 2 * _records.depth]
    return ()


def _last_line_offset(code: Any) -> int:
    """The offset of an instruction on the last line of *code* (0 when none has a line)."""
    last, offset = 0, 0
    for start, _, lineno in code.co_lines():
        if lineno is not None and lineno >= last:
            last, offset = lineno, start
    return offset


def _serving_at_caller(patches: Patches, server_cls: type) -> None:
    """Wrap ``Server._start_serving``: the callbacks that accept the server's connections carry
    the program's line that started it (``asyncio.start_server(...)``) and the label then, so
    the sockets they accept and the handler tasks made for them are recorded at that line and
    labelled as the server (a session fixture's), not as whatever test runs when a client comes."""
    start_serving = vars(server_cls).get("_start_serving")
    if start_serving is None:  # private: a release may rename it
        return
    patches.set(server_cls, "_start_serving", _records.at_callers_site(start_serving))


#: The selector loop's methods that make a transport (``_make_ssl_transport`` makes its own
#: socket transport, not through ``_make_socket_transport``).
_TRANSPORT_MAKERS = ("_make_socket_transport", "_make_ssl_transport", "_make_datagram_transport")


def install_transports(patches: Patches, selector_events: ModuleType) -> None:
    """A transport's callbacks (its protocol's ``connection_made``, ``data_received`` and
    ``connection_lost``, queued as the transport is made, or by the reader it registers then)
    carry the program's line that made it (``loop.create_connection(...)``,
    ``open_connection()``) and the label then: a task a protocol makes in one (pymodbus's
    reconnect task, made in ``connection_lost``) goes on at that line. They carried the origin of
    the task the connection was made in, the line of ``asyncio.run()`` or of the test's decorator
    under pytest-asyncio. A server's connection (``server=`` given) keeps the line that started
    its server (see :func:`_serving_at_caller`). So does ``connection_lost`` when the program
    closes the transport, which queues it from the closing code's task (gmqtt's reconnect task,
    made there, was at the test's decorator)."""
    loop_cls = selector_events.BaseSelectorEventLoop
    for name in _TRANSPORT_MAKERS:
        make = vars(loop_cls).get(name)  # private: a release may rename them
        if make is not None:
            patches.set(loop_cls, name, _records.at_callers_site(make, unless=_for_a_server))
    transport_cls = getattr(selector_events, "_SelectorTransport", None)
    init = vars(transport_cls).get("__init__") if isinstance(transport_cls, type) else None
    lost = vars(transport_cls).get("_call_connection_lost") if isinstance(transport_cls, type) else None
    if init is None or lost is None:
        return
    made_under: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        started = _records.origin.get(None)
        if started is not None:
            with contextlib.suppress(TypeError):  # a subclass that cannot be weakly referenced
                made_under[self] = started

    def _call_connection_lost(self: Any, exc: Any) -> Any:
        started = made_under.get(self)
        if started is None or _records.origin.get(None) is started:
            return lost(self, exc)
        token = _records.origin.set(started)
        try:
            return lost(self, exc)
        finally:
            _records.origin.reset(token)

    patches.set(transport_cls, "__init__", __init__)
    patches.set(transport_cls, "_call_connection_lost", _call_connection_lost)


def _for_a_server(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return kwargs.get("server") is not None


def _running_task_site() -> Any:
    """The flat site that created the task running now (empty when none is tracked); in a loop
    callback, of what registered it (see :data:`._records.origin`)."""
    try:
        task = sys.modules["asyncio.tasks"].current_task()
    except RuntimeError:  # no running event loop
        return ()
    if task is None:
        started = _records.origin.get(None)
        return started[0] if started is not None else ()
    site = _site_of(task)
    frame = getattr(task.get_coro(), "cr_frame", None)
    if site and frame is not None and site[0] is frame.f_code:
        # The task's own coroutine heads its site at its first line (co_firstlineno: a test's
        # decorator), recorded as it was made. Asked while it runs, from a stack cut short before
        # it (an await through an object whose __await__ returns another coroutine's: azure-core's
        # pipeline, aiohttp's request context), its line is the one it is at now.
        site = (site[0], frame.f_lasti, *site[2:])
    return site


def _task_site_at(frame: Any) -> Any:
    """The flat site that created the task running now if *frame* runs its coroutine's outermost
    frame (where uvloop, stepping tasks in C, ends its stack), else empty."""
    try:
        task = sys.modules["asyncio.tasks"].current_task()
    except RuntimeError:  # no running event loop
        return ()
    if task is None or getattr(task.get_coro(), "cr_frame", None) is not frame:
        return ()
    return _site_of(task)


#: id(coroutine) -> the flat site of the task being made for it, while a task factory makes it: an
#: eager one (``asyncio.eager_task_factory``, mitmproxy's) runs its first step before it returns,
#: and a task that step made went on at no line of the task's, whose record was yet to be made.
_starting: dict[int, Any] = {}


def _site_of(task: Any) -> Any:
    """The flat site *task* was recorded at, or empty (not tracked, or a resolved site)."""
    rec = _records.live.get(id(task))
    if rec is None:
        return _starting.get(id(task.get_coro()), ()) if _starting else ()
    if rec.kind != "task" or not rec.site or type(rec.site[0]) is tuple:
        return ()
    return rec.site


def install_anyio(patches: Patches, module: ModuleType) -> None:
    """anyio's pytest plugin runs each test and fixture in one long-lived task that ``Runner.close()``
    cancels by design: the test harness's, never a test's leak. So is the task
    ``anyio.to_process.run_sync`` starts once per loop to kill and reap its worker processes when
    the loop shuts down: it waits for that cancel (the workers are tracked as children)."""
    plumbing(module, "TestRunner._call_in_runner_task", "_shutdown_process_pool_on_exit")


def _awaited_by_another(pending: list[Any]) -> set[int]:
    """The ids of the tasks of *pending* that another of them awaits, directly (``await task``),
    through ``gather()``, through ``wait_for()`` (3.11 runs what it waits for in a task of its
    own) or as a child of a ``TaskGroup`` the other is in: cancelling the awaiting task cancels
    them too.

    A task that starts another and awaits it (arq's ``Worker.async_run`` and its main task) is
    one leak when it is left pending, at the line that started it, not also one at the line
    in it that made the awaited task (a forgotten task waiting in ``wait_for()`` was two
    entries, one in a ``TaskGroup`` of two children three: gunicorn's and hypercorn's suites).
    What a task waits on through another future of its own (``shield()``'s) is not followed.
    """
    return _awaited({id(task): (_waits_on(task), _awaiters(task)) for task in pending})


def _awaited(tasks: Mapping[int, tuple[set[int], set[int]]]) -> set[int]:
    """The ids of *tasks* (id -> what :func:`_waits_on` and :func:`_awaiters` say of it) that
    another of them awaits."""
    waited_on: set[int] = set()  # the futures the tasks wait on, the tasks among them
    for waits, _ in tasks.values():
        waited_on |= waits
    awaiting = waited_on | tasks.keys()
    return {
        key for key, (_, awaiters) in tasks.items() if key in waited_on or not awaiters.isdisjoint(awaiting)
    }


def _waits_on(task: Any) -> set[int]:
    """The ids of the futures *task* waits on: the one it awaits and, a ``gather()``'s, what
    that gathers (its cancel cancels them)."""
    waits: set[int] = set()
    waiting = [getattr(task, "_fut_waiter", None)]  # private, in the C and Python tasks alike
    while waiting:
        future = waiting.pop()
        if future is None or future is task or id(future) in waits:
            continue
        waits.add(id(future))
        waiting.extend(getattr(future, "_children", None) or ())
    return waits


def _awaiters(task: Any) -> set[int]:
    """The ids of what *task*'s done callbacks tell awaits it, other than through its own
    ``await``: the future ``wait_for()`` (3.11) wakes its caller through, the parent task of
    the ``TaskGroup`` it is a child of."""
    try:
        callbacks = task._callbacks or ()  # private, in the C and Python futures alike
    except AttributeError:
        return set()
    found: set[int] = set()
    for entry in callbacks:
        callback = entry[0] if type(entry) is tuple else entry
        if type(callback) is functools.partial:
            if getattr(callback.func, "__name__", None) == "_release_waiter" and callback.args:
                found.add(id(callback.args[0]))
        elif getattr(callback, "__name__", None) == "_on_task_done":
            parent = getattr(getattr(callback, "__self__", None), "_parent_task", None)
            if parent is not None:
                found.add(id(parent))
    return found


def _cancelled_with_their_tasks(pending: list[Any]) -> set[int]:
    """The ids of the tasks of *pending* that were cancelled (``cancelling()``), and of those a
    task among them made: the cleanup of a task the program cancelled without awaiting it may
    take turns of the loop (a shielded flush), and cancel what it made only then (taskiq's
    receiver: the task its prefetcher waits on through ``asyncio.wait()``)."""
    unwinding = {id(task) for task in pending if task.cancelling()}
    made_by = {}
    for task in pending:
        rec = _records.live.get(id(task))
        if rec is not None and rec.kind == "task" and type(rec.info) is tuple:
            made_by[id(task)] = rec.info[3]
    grew = bool(unwinding)
    while grew:
        grew = False
        for key, maker in made_by.items():
            if maker in unwinding and key not in unwinding:
                unwinding.add(key)
                grew = True
    return unwinding


def install_runners(patches: Patches, runners: ModuleType) -> None:
    """Mark the tasks ``asyncio.run``/``Runner.close`` cancel at shutdown as leaks first.

    Never the runner's main task (what ``asyncio.run(main())`` runs): ``Runner.run`` awaits it,
    so it is pending at shutdown only when something interrupted the loop from outside. When
    that is ``reclaim run``'s SIGTERM, the main task is cancelled first, as ``asyncio.run`` does
    on Ctrl-C, so that the program unwinds and cancels its own tasks; what it leaves pending is
    a leak. When a KeyboardInterrupt or SystemExit escaped the loop while the main task still
    ran (raised in a task or a callback), the program never unwound: asyncio cancels every task
    on the way out, as the program's ``with`` blocks are left, and none is a leak.
    """
    cancel_all = runners._cancel_all_tasks
    tasks = sys.modules["asyncio.tasks"]
    all_tasks = tasks.all_tasks
    cancelled_error = sys.modules["asyncio.exceptions"].CancelledError
    _RUNNER_RUN.add(runners.Runner.run.__code__)

    def _cancel_all_tasks(loop: Any) -> Any:
        exc = sys.exc_info()[1]
        if getattr(exc, "unwinds_the_program", False):  # reclaim run's SIGTERM
            global _terminating
            _terminating = True
            mains = [task for task in all_tasks(loop) if task in _main_tasks]
            if mains:
                for task in mains:
                    task.cancel()
                loop.run_until_complete(tasks.gather(*mains, return_exceptions=True))
        pending = list(all_tasks(loop))
        escaped = (
            exc is not None
            and not isinstance(exc, (Exception, cancelled_error))
            and any(task in _main_tasks for task in pending)
        )
        awaited = _awaited_by_another(pending)
        unwinding = _cancelled_with_their_tasks(pending)
        if not escaped:
            for hook in AT_SHUTDOWN:
                hook(loop)
        for task in pending:
            rec = _records.live.get(id(task))
            if escaped or task in _main_tasks or rec is None or rec.kind != "task" or rec.state != OPEN:
                continue
            if id(task) in unwinding:
                # Cancelled already, by the program or its library (asyncpg's terminate() cancels
                # its cancel-request tasks), and not yet run since or still unwinding: it ends as
                # the program asked. So may what it made, which its unwinding may still cancel.
                continue
            if id(task) in awaited:
                # Another task still pending awaits it: the cancel of that one cancels it too,
                # and that one is the leak (or the runner's, or a library's, as above).
                continue
            try:  # where it waits, read before the cancel below unwinds it
                awaiting = _suspended_at(task)
            except Exception:  # an exotic coroutine: the leak still is one
                awaiting = None
            # Its name now: asyncio.create_task(name=...) sets it after the loop made it (< 3.13)
            rec.info = (task.get_name(), *rec.info[1:4], *((awaiting,) if awaiting is not None else ()))
            _records.leak(rec, CANCELLED)
        try:
            return cancel_all(loop)
        finally:
            # An interruption a cancelled task raises leaves the loop at once, before the done
            # callbacks of the tasks it finished ran: they are done, not collected pending later.
            for task in pending:
                if task.done():
                    _done(task)

    patches.set(runners, "_cancel_all_tasks", _cancel_all_tasks)
