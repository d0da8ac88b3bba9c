"""dask.distributed: a cluster or client never closed is one entry at the program's line, not the
threads, processes, queues and sockets it is made of.

A ``LocalCluster`` (any ``SpecCluster``) made outside an event loop starts a thread of its own,
``'IO loop'``, and on it a scheduler, its workers and, with ``processes=True``, a nanny per
worker, each starting its worker process with a ``multiprocessing`` queue pair, a keep-alive
pipe and two watcher threads. Never closed, one cluster was reported as ten entries at
distributed's lines (the loop thread with 28 things under it, the scheduler's scratch directory
and lock file, each nanny's queues, pipe, process and threads), the program's line in one of
them only. A ``Client`` that connects to a scheduler by address starts an ``'IO loop'`` thread
of its own in the same way.

So a cluster and a client, made, are recorded (kind ``dask``) at the program's line that made
them, open until they are closed; what was acquired in the loop thread their own loop runner
started, and in the threads started from it (transitively), is listed under them (see
:func:`fold`). One that runs on the program's own loop (``asynchronous=True``, distributed's
``gen_cluster``) starts no thread: it holds nothing this can tell apart, and is not reported
(its parts are, as before). A client sharing a cluster's loop is part of that cluster's entry,
and a cluster a ``Client()`` made for itself, on the client's loop, part of the client's.

What is distributed's own by design, not the program's: the one-thread executor
``distributed.utils`` makes at import for the process (see :data:`._owning.PROCESS_WIDE`), and
the pipe each ``AsyncProcess`` keeps so that its child dies with it: distributed never closes
its write end, on purpose (the child reads EOF once the parent is gone); it closes when the
``AsyncProcess`` is collected, which is no leak (see :func:`._multiprocessing.dies_with_owner`).
Only ``SpecCluster.__init__``, ``Client.__init__`` and ``AsyncProcess.__init__`` are wrapped; a
program that does not import distributed loads none of this.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import ModuleType

from . import _records
from ._holders import fold_into, public_name
from ._kinds import Details, Kind, register
from ._multiprocessing import dies_with_owner
from ._owning import caller, outside
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

__all__ = ["KIND", "MODULES", "fold", "install_client", "install_cluster", "install_process"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KIND = "dask"

#: The status a cluster (``distributed.core.Status.closed``) or a client (``"closed"``) ends in.
CLOSED = "closed"

# A record's info: (its class's public name, how to close it).


def _status(obj: Any) -> str:
    status = getattr(obj, "status", None)
    return str(getattr(status, "name", status))


def _is_open(obj: Any, rec: Record) -> bool:
    return _status(obj) != CLOSED


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label, fix = rec.info
    details: Details = {"class": label}
    if obj is not None:
        details["status"] = _status(obj)
        name = getattr(obj, "name", None)  # a cluster's
        if isinstance(name, str):
            details["name"] = name
    # A report heads it with its kind: "dask LocalCluster not closed (close(), or a with-block)".
    return f"{label.rpartition('.')[2]} not closed ({fix})", details


register(Kind(KIND, is_open=_is_open, describe=_describe))


def _site(obj: object, frame: Any) -> Any:
    """The capture at the program's line, past *obj*'s own methods and distributed's frames."""
    maker = outside(obj, frame)
    if maker is not None:
        maker = caller(maker, "distributed")
    return _records.capture(maker, _records.depth)


def _recording(init: Callable[..., None], fix: str) -> Callable[..., None]:
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        held = _records.live.get(id(self))
        if held is None or held() is not self:  # once: a subclass's __init__ runs its base's
            _records.new(self, KIND, (public_name(type(self)), fix), _site(self, sys._getframe(1)))

    __init__.__doc__ = init.__doc__
    return __init__


def install_cluster(patches: Patches, module: ModuleType) -> None:
    """Record each ``SpecCluster`` (``LocalCluster``...) at the program's line that made it."""
    cls = getattr(module, "SpecCluster", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        patches.set(cls, "__init__", _recording(vars(cls)["__init__"], "close(), or a with-block"))


def install_client(patches: Patches, module: ModuleType) -> None:
    """Record each ``Client`` at the program's line that made it."""
    cls = getattr(module, "Client", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        patches.set(cls, "__init__", _recording(vars(cls)["__init__"], "close(), or a with-block"))


def install_process(patches: Patches, module: ModuleType) -> None:
    """Leave the keep-alive pipe of each ``AsyncProcess`` to its collection (see the docstring)."""
    cls = getattr(module, "AsyncProcess", None)
    if not (isinstance(cls, type) and "__init__" in vars(cls)):
        return
    init: Callable[..., None] = vars(cls)["__init__"]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        end = getattr(self, "_keep_child_alive", None)
        if end is not None:
            dies_with_owner(end)

    __init__.__doc__ = init.__doc__
    patches.set(cls, "__init__", __init__)


def _loop_thread(obj: Any) -> Any:
    """The thread *obj*'s loop runner started to run its loop, or None (it runs on another's)."""
    runner = getattr(obj, "_loop_runner", None)
    started = getattr(runner, "_loop_thread", None)  # a _CollectErrorThread, while it runs
    return getattr(started, "_thread", None)


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take what the clusters and clients among *found* hold out of it, into ``out[id(their
    record)]``: the loop thread each started, what was acquired in it since, and in the threads
    started from it, transitively (*found* is ``(record, live object or None, state)``); and the
    clusters and clients that hold none of it."""
    owners = [item for item in found if item[0].kind == KIND]
    if not owners:
        return
    by_thread: dict[int, Record] = {}  # id(thread record) -> the cluster or client
    for rec, obj, _ in owners:
        thread = _loop_thread(obj) if obj is not None else None
        if thread is not None:
            held = _records.live.get(id(thread))
            if held is not None and held() is thread and held.kind == "thread":
                by_thread[id(held)] = rec
    # A thread's name -> (its record's seq, the owner of what is acquired in it) of each such thread:
    # every loop runner names its thread 'IO loop', so of two, what was acquired after the second
    # started is the second's (a record keeps the name of its thread, not which thread it was).
    names: dict[str, list[tuple[int, Record]]] = {}
    parts: dict[int, Record] = {}

    def adopt(thread: Record, owner: Record) -> None:
        parts[id(thread)] = owner
        name(thread, owner)

    def name(thread: Record, owner: Record) -> None:
        names.setdefault(thread.info[0], []).append((thread.seq, owner))
        # The threads a loop thread started are under it already (see _threads.fold): what they
        # acquired is the owner's too.
        for held, _, _ in out.get(id(thread), ()):
            if held.kind == "thread" and type(held.info) is tuple:
                name(held, owner)

    for item in found:
        owner = by_thread.get(id(item[0]))
        if owner is not None:
            adopt(item[0], owner)
    grew = bool(names)
    while grew:  # what those threads started, and what was acquired in those
        grew = False
        for rec, _, _ in found:
            if id(rec) in parts or rec.kind == KIND:
                continue
            started = [(seq, id(owner), owner) for seq, owner in names.get(rec.thread, ()) if seq <= rec.seq]
            if not started:
                continue
            owner = max(started)[2]
            if rec.kind == "thread" and type(rec.info) is tuple:
                adopt(rec, owner)
                grew = True
            else:
                parts[id(rec)] = owner
    holding = fold_into(found, out, lambda item: parts.get(id(item[0])))
    found[:] = [item for item in found if item[0].kind != KIND or id(item[0]) in holding]


#: module -> what tracks its part of distributed, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "distributed.deploy.spec": install_cluster,
    "distributed.client": install_client,
    "distributed.process": install_process,
}
