"""Which modules instrument which kinds, and when.

``builtins``/``io``/``os``/``threading`` are imported by every program, so
they are patched at once. Everything else is patched when the program
imports it (see :mod:`._imports`), never imported by us.
"""

from __future__ import annotations

from functools import partial

from . import (
    _asyncpg,
    _children,
    _fds,
    _files,
    _gevent,
    _grpc,
    _holders,
    _imports,
    _loops,
    _mmap,
    _multiprocessing,
    _nats,
    _owning,
    _paho,
    _pika,
    _pooled,
    _psycopg,
    _sharedmemory,
    _socketio,
    _sockets,
    _sqlite,
    _tasks,
    _tempfiles,
    _threads,
    _trio,
    _twisted,
    _uvloop,
    _watchfiles,
    _zmq,
)
from ._patch import Patches

__all__ = ["install", "uninstall"]


def install(patches: Patches) -> None:
    """Install the wrappers of every kind; *patches* records them for undo."""
    _files.install(patches)
    _fds.install(patches)
    _children.install_os(patches)
    _threads.install(patches)
    for name, installer in (
        ("socket", _sockets.install_socket),
        ("socket", _socketio.install),
        ("selectors", _sockets.install_selectors),
        ("subprocess", _children.install),
        ("sqlite3", _sqlite.install),
        ("aiosqlite.core", _sqlite.install_aiosqlite),
        ("psycopg.connection", _psycopg.install_sync),
        ("psycopg.connection_async", _psycopg.install_async),
        *((name, _psycopg.install_pool) for name in _psycopg.POOL_MODULES),
        ("asyncpg.pool", _asyncpg.install),
        ("redis.connection", _pooled.install_redis),
        ("redis.asyncio.connection", _pooled.install_redis_async),
        ("urllib3.connectionpool", _pooled.install_urllib3),
        ("sqlalchemy.pool.base", _pooled.install_sqlalchemy),
        ("httpcore._sync.connection_pool", _pooled.install_httpcore),
        ("httpcore._async.connection_pool", _pooled.install_httpcore_async),
        ("tempfile", _tempfiles.install),
        ("mmap", _mmap.install),
        ("asyncio.base_events", _tasks.install_base_events),
        ("asyncio.runners", _tasks.install_runners),
        ("asyncio.selector_events", _loops.install),
        ("asyncio.streams", _loops.install_streams),
        ("multiprocessing.process", _multiprocessing.install_process),
        ("multiprocessing.pool", _multiprocessing.install_pool),
        ("multiprocessing.queues", _multiprocessing.install_queues),
        ("multiprocessing.managers", _multiprocessing.install_managers),
        ("multiprocessing.connection", _multiprocessing.install_pipe),
        ("multiprocessing.shared_memory", _sharedmemory.install),
        ("concurrent.futures.process", _multiprocessing.install_executor),
        ("concurrent.futures.thread", _threads.install_executor),
        ("anyio._backends._asyncio", _tasks.install_anyio),
        ("trio._core._run", _trio.install),
        ("uvloop", _uvloop.install),
        ("gevent.hub", _gevent.install_hub),
        ("gevent._socket3", _gevent.install_socket),
        ("gevent.server", _gevent.install_server),
        ("gevent.os", _gevent.install_os),
        ("gevent.greenlet", _gevent.install_greenlet),
        ("gevent.thread", _gevent.install_thread),
        ("gevent.subprocess", _gevent.install_subprocess),
        *((name, _multiprocessing.install_owned) for name in _multiprocessing.OWNED),
        *(
            (f"{package}.{module}", _multiprocessing.install_owned_package)
            for package in _multiprocessing.OWNED_PACKAGES
            for module in _multiprocessing.OWNED_PACKAGE_MODULES
        ),
        *((name, _owning.install_process_wide) for name in _owning.PROCESS_WIDE),
        *((name, _sockets.install_finalizer_aliases) for name in _sockets.FINALIZER_ALIASES),
        *((name, _holders.install) for name in _holders.HOLDERS),
        *((name, _grpc.install) for name in _grpc.MAKERS),
        *((name, _grpc.install_channel) for name in _grpc.CHANNELS),
        *((name, _watchfiles.install) for name in _watchfiles.MODULES),
        *_pika.MODULES.items(),
        *_paho.MODULES.items(),
        *_nats.MODULES.items(),
        *((name, _twisted.install_owned) for name in _twisted.OWNED),
        *((name, _twisted.install_poller) for name in _twisted.POLLERS),
        *((name, _twisted.install_unbound) for name in _twisted.UNBOUND),
        ("zmq.sugar.context", _zmq.install_context),
        ("zmq.sugar.socket", _zmq.install_socket),
    ):
        _imports.when_imported(name, partial(installer, patches))


def uninstall() -> None:
    """Stop waiting for imports (the patches themselves are undone by their ``Patches``)."""
    _imports.cancel_all()
    _multiprocessing.reset()
    _sharedmemory.reset()
    _pooled.reset()
    _gevent.reset()
