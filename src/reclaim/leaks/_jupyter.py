"""jupyter_client: a kernel never shut down, or a client whose channels were never stopped, is one
entry at the program's line, not the process, file, sockets and thread it is made of.

A ``KernelManager`` that starts a kernel writes its connection file (``tempfile.mkstemp``),
launches the kernel as a child process, makes a zmq context and connects its control socket; a
``KernelClient``'s ``start_channels()`` connects a socket per channel, on a context of its own,
and starts the heartbeat channel's thread (a ``ThreadedKernelClient``, an I/O-loop thread too).
``start_new_kernel()`` forgotten was twelve entries, each at the program's line, some "inside"
jupyter_client, none saying which manager or client they belonged to, nor that
``shutdown_kernel()`` and ``stop_channels()`` release them.

So a manager, as it launches its kernel, is recorded (kind ``jupyter-kernel``) at the program's
line that started it (``start_kernel()``, a ``MultiKernelManager``'s, ``start_new_kernel()``),
open while it has a kernel process, a connection file it wrote or a control socket: until
``shutdown_kernel()`` (its ``_async_cleanup_resources``). A restart keeps its record; a start
after a shutdown is a new one, at its own line. Its child, its connection file, its control
socket and the context it made are listed under it (see :func:`fold`); a context it was handed
(a ``MultiKernelManager``'s) is not its own. Dropped with its kernel running, it is reported as
collected (its ``__del__`` removes the connection file and closes the socket, not the kernel),
its child under it.

A client, as its channels start, is recorded (kind ``jupyter-client``) at the program's line that
started them, open while one of its channels runs: until ``stop_channels()`` (a subclass's whose
channels say they still run too); started again after
that, a new one at its own line. Its channels' sockets, its heartbeat thread (with the loop it
runs), its I/O-loop thread and the context it made are listed under it; dropped running, it is
the collector's, what died with it under it.

Only ``KernelManager``'s ``_async_launch_kernel``, ``_async_cleanup_resources`` and ``__del__``,
and ``KernelClient``'s ``start_channels``, ``stop_channels`` and ``__del__``, are wrapped; a
program that does not import jupyter_client loads none of this.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
from collections.abc import Callable
from types import ModuleType

from . import _records
from ._holders import fold_into, public_name
from ._kinds import Details, Kind, kind_of, register
from ._owning import outside
from ._patch import Patches
from ._records import OPEN, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

    from ._holders import Found

__all__ = ["KERNEL", "MODULES", "fold", "install_client", "install_manager"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

KERNEL = "jupyter-kernel"
CLIENT = "jupyter-client"

#: The channels of a client, where it keeps them (its properties make one on first use).
CHANNELS = ("_shell_channel", "_iopub_channel", "_stdin_channel", "_hb_channel", "_control_channel")


def _trait(obj: Any, name: str) -> Any:
    """*obj*'s trait *name* if it was set, without making its default (a context, say)."""
    values = getattr(obj, "_trait_values", None)
    return values.get(name) if isinstance(values, dict) else None


def _process(km: Any) -> Any:
    return getattr(getattr(km, "provisioner", None), "process", None)


def _kernel_info(km: Any) -> tuple[str, str, int | None, str]:
    """(class's public name, kernel name, pid or None, connection file) of *km*."""
    pid = getattr(_process(km), "pid", None)
    return (
        public_name(type(km)),
        str(getattr(km, "kernel_name", "") or "?"),
        pid if type(pid) is int else None,
        str(getattr(km, "connection_file", "") or ""),
    )


def _kernel_open(obj: Any, rec: Record) -> bool:
    return bool(
        _process(obj) is not None
        or getattr(obj, "_connection_file_written", False)
        or getattr(obj, "_control_socket", None) is not None
    )


def _kernel_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, name, pid, connection_file = _kernel_info(obj) if obj is not None else rec.info[:4]
    details: Details = {"class": cls, "kernel_name": name, "pid": pid, "connection_file": connection_file}
    text = f"{cls} kernel {name!r}"
    if pid is not None:
        text += f" pid {pid}"
    if connection_file:
        text += f" ({connection_file})"
    return f"{text} not shut down (shutdown_kernel())", details


def _client_open(obj: Any, rec: Record) -> bool:
    thread = _trait(obj, "ioloop_thread")
    return bool(obj.channels_running or (thread is not None and thread.is_alive()))


def _client_info(kc: Any) -> tuple[str, str]:
    """(class's public name, connection file) of *kc*."""
    return public_name(type(kc)), str(getattr(kc, "connection_file", "") or "")


def _client_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    cls, connection_file = rec.info[:2]
    text = f"{cls} of {connection_file}" if connection_file else cls
    return f"{text}: channels not stopped (stop_channels())", {
        "class": cls,
        "connection_file": connection_file,
    }


register(Kind(KERNEL, is_open=_kernel_open, describe=_kernel_describe))
register(Kind(CLIENT, is_open=_client_open, describe=_client_describe))


def install_manager(patches: Patches, module: ModuleType) -> None:
    """Record each ``KernelManager`` (the asyncio one too) as it launches its kernel."""
    cls = getattr(module, "KernelManager", None)
    launch: Any = vars(cls).get("_async_launch_kernel") if isinstance(cls, type) else None
    cleanup: Any = vars(cls).get("_async_cleanup_resources") if isinstance(cls, type) else None
    if not isinstance(cls, type) or launch is None or cleanup is None:
        return  # not the layout this was written for

    @functools.wraps(launch)
    async def _async_launch_kernel(self: Any, *args: Any, **kwargs: Any) -> None:
        frame = sys._getframe(1)
        site = _records.capture(outside(self, frame) or frame, _records.depth)
        await launch(self, *args, **kwargs)
        rec = _records.live.get(id(self))
        if rec is not None and rec() is self and rec.state == OPEN:
            return  # a restart: the kernel is still the one started at its line
        rec = _records.new(self, KERNEL, _kernel_info(self), site)
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL

    @functools.wraps(cleanup)
    async def _async_cleanup_resources(self: Any, *args: Any, **kwargs: Any) -> None:
        await cleanup(self, *args, **kwargs)
        _cleaned_up(self, args, kwargs)

    __del__ = _deciding_death(cls, KERNEL, _kernel_open, _kernel_info, _kernel_parts)
    patches.set(cls, "_async_launch_kernel", _async_launch_kernel)
    patches.set(cls, "_async_cleanup_resources", _async_cleanup_resources)
    patches.set(cls, "__del__", __del__)
    # The public cleanup_resources() kept the function it was made from when its class was:
    # run_sync(_async_cleanup_resources) here, that function itself on AsyncKernelManager. A
    # kernel that died and was cleaned up so (nbclient's, after is_alive() reaped it) was "not
    # shut down".
    cleanup_sync: Any = vars(cls).get("cleanup_resources")
    if callable(cleanup_sync) and not inspect.iscoroutinefunction(cleanup_sync):

        @functools.wraps(cleanup_sync)
        def cleanup_resources(self: Any, *args: Any, **kwargs: Any) -> None:
            cleanup_sync(self, *args, **kwargs)
            _cleaned_up(self, args, kwargs)

        patches.set(cls, "cleanup_resources", cleanup_resources)
    async_cls = getattr(module, "AsyncKernelManager", None)
    if isinstance(async_cls, type) and vars(async_cls).get("cleanup_resources") is cleanup:
        patches.set(async_cls, "cleanup_resources", _async_cleanup_resources)


def _cleaned_up(manager: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """*manager*'s ``cleanup_resources(restart=...)`` ran: not for a restart, its kernel is shut
    down (one it starts again is acquired at the line that starts it)."""
    if not kwargs.get("restart", args[0] if args else False):
        rec = _records.live.get(id(manager))
        if rec is not None and rec() is manager and rec.kind == KERNEL:
            _records.release(rec.key)


class _Parts:
    """The ``id()`` of an owner's parts as it died, and when: a part's record of that key made no
    later is that part (alive still, a thread its client never stopped, or dead with it). And the
    names of its threads: what one of them acquires later is the owner's too (the heartbeat
    channel's socket, which its thread makes)."""

    __slots__ = ("at", "ids", "threads")

    def __init__(self, parts: list[object]) -> None:
        self.ids = frozenset(map(id, parts))
        self.at = _records._time()
        self.threads = frozenset(part.name for part in parts if isinstance(part, threading.Thread))


def _deciding_death(
    cls: type,
    kind: str,
    is_open: Callable[[Any, Record], bool],
    info: Callable[[Any], tuple[Any, ...]],
    parts: Callable[[Any], list[object]],
) -> Callable[..., None]:
    """*cls*'s ``__del__``, deciding first whether its death leaked: one still open is reported as
    collected, with what it was then and the ``id()`` of its parts (which die with it: a check
    finds them collected, their objects gone, and lists them under it by their records' keys)."""
    finalize: Callable[..., None] | None = vars(cls).get("__del__")

    def leaked_info(obj: Any, rec: Record) -> tuple[Any, ...] | None:
        return (*info(obj), _Parts(parts(obj))) if is_open(obj, rec) else None

    def __del__(self: Any, *args: Any, **kwargs: Any) -> None:
        try:  # before its own __del__ removes its connection file, closes its socket
            _records.judge_at_del(self, kind, leaked_info)
        finally:
            if finalize is not None:
                finalize(self, *args, **kwargs)

    if finalize is not None:
        __del__.__doc__ = finalize.__doc__
    return __del__


def install_client(patches: Patches, module: ModuleType) -> None:
    """Record each ``KernelClient`` (and its subclasses) as its channels start."""
    cls = getattr(module, "KernelClient", None)
    start: Any = vars(cls).get("start_channels") if isinstance(cls, type) else None
    if not isinstance(cls, type) or start is None:
        return

    @functools.wraps(start)
    def start_channels(self: Any, *args: Any, **kwargs: Any) -> None:
        running = self.channels_running  # not its I/O-loop thread: a ThreadedKernelClient starts it first
        start(self, *args, **kwargs)
        rec = _records.live.get(id(self))
        if running and rec is not None and rec() is self and rec.state == OPEN:
            return  # started again while running: still the channels started at its line
        frame = sys._getframe(1)
        maker = outside(self, frame) or frame
        rec = _records.new(self, CLIENT, _client_info(self), _records.capture(maker, _records.depth))
        if type(self).__del__ is __del__:  # a subclass's own __del__ may never call ours
            rec.why = _records.AT_DEL

    stop: Any = vars(cls).get("stop_channels")
    if stop is not None:

        @functools.wraps(stop)
        def stop_channels(self: Any, *args: Any, **kwargs: Any) -> None:
            stop(self, *args, **kwargs)
            # Stopped, whatever its channels say after: jupyter_server's gateway client keeps
            # queues whose is_alive() stays true, and its stopped client was reported.
            rec = _records.live.get(id(self))
            if rec is not None and rec() is self and rec.kind == CLIENT:
                _records.closing(self, sys._getframe(1))

        patches.set(cls, "stop_channels", stop_channels)

    __del__ = _deciding_death(cls, CLIENT, _client_open, _client_info, _client_parts)
    patches.set(cls, "start_channels", start_channels)
    patches.set(cls, "__del__", __del__)


def _kernel_parts(km: Any) -> list[object]:
    parts = [_process(km), getattr(km, "_control_socket", None)]
    if _trait(km, "_created_context"):
        parts.append(_trait(km, "context"))
    return [part for part in parts if part is not None]


def _client_parts(kc: Any) -> list[object]:
    parts = [_trait(kc, "ioloop_thread")]
    for name in CHANNELS:
        channel = _trait(kc, name)
        if channel is not None:
            parts.extend((channel, getattr(channel, "socket", None), getattr(channel, "stream", None)))
    if _trait(kc, "_created_context"):
        parts.append(_trait(kc, "context"))
    return [part for part in parts if part is not None]


def _path(rec: Record, obj: Any) -> str | None:
    """The path of the temporary file *rec* (a connection file, maybe)."""
    try:
        path = kind_of(rec.kind).describe(obj, rec)[1].get("path")
    except Exception:  # described by no path: not a connection file
        return None
    return path if isinstance(path, str) else None


def fold(found: list[Found], out: dict[int, list[Found]]) -> None:
    """Take what the kernel managers and clients among *found* hold out of it, into
    ``out[id(their record)]``: their child (by pid once either is collected), connection file
    (by path), sockets, contexts and threads."""
    owners = [item for item in found if item[0].kind in (KERNEL, CLIENT)]
    if not owners:
        return
    by_id: dict[int, Record] = {}  # id() of a live part -> its owner's record
    by_key: dict[object, tuple[Record, float]] = {}  # a part's record's key -> its collected owner's
    by_thread: dict[str, Record] = {}  # the name of a collected owner's thread -> that owner's
    by_pid: dict[int, Record] = {}
    by_path: dict[str, Record] = {}
    for rec, obj, _ in owners:
        if rec.kind == KERNEL:
            _, _, pid, connection_file = _kernel_info(obj) if obj is not None else rec.info[:4]
            if pid is not None:
                by_pid[pid] = rec
            if connection_file:
                by_path[connection_file] = rec
        if obj is not None:
            for part in _kernel_parts(obj) if rec.kind == KERNEL else _client_parts(obj):
                by_id.setdefault(id(part), rec)
        elif type(rec.info[-1]) is _Parts:  # collected: the id() of its parts as it died
            for key in rec.info[-1].ids:
                by_key.setdefault(key, (rec, rec.info[-1].at))
            for name in rec.info[-1].threads:
                by_thread.setdefault(name, rec)

    def owner_of(item: Found) -> Record | None:
        part, obj, _ = item
        if part.kind in (KERNEL, CLIENT):
            return None
        if obj is not None and id(obj) in by_id:
            return by_id[id(obj)]
        if part.key in by_key:  # gone with its owner, or alive (a thread its __del__ left running)
            owner, died = by_key[part.key]
            if part.time <= died:
                return owner
        if part.thread in by_thread and part.time >= by_thread[part.thread].time:
            return by_thread[part.thread]
        if part.kind == "subprocess" and isinstance(part.info, tuple) and part.info:
            return by_pid.get(part.info[0])
        if part.kind == "tempfile" and by_path:
            path = _path(part, obj)
            return by_path.get(path) if path is not None else None
        return None

    fold_into(found, out, owner_of)


#: module -> what tracks its part of jupyter_client, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "jupyter_client.manager": install_manager,
    "jupyter_client.client": install_client,
}
