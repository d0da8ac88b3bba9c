"""Which modules instrument which kinds, and when.

``builtins``/``io``/``os``/``threading`` are imported by every program, so
they are patched at once. Everything else is patched when the program
imports it (see :mod:`._imports`), never imported by us.

The integration that patches a library is imported only then too: :data:`HOOKS` names
each installer as ``"_module:function"`` (in this package), loaded the first time its
library is imported (at once for a library imported before tracking started). A program
that imports no gRPC, gevent or Twisted loads none of reclaim's code for them, where
importing every integration at start cost each ``reclaim run`` and ``pytest --reclaim``
~20 modules. An integration registers its kinds as it is imported, before it can record
anything of them, and imports the integration of any other kind it records (``_gevent``'s
hubs are ``_loops``' eventloops): every kind a report meets is known by then.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from importlib import import_module
from types import ModuleType

from reclaim import _sites

from . import _children, _fds, _files, _imports, _lineage, _records, _threads

# Loaded with the tracker anyway (_holders imports _owning): their tables are read here.
from ._holders import HOLDERS
from ._owning import PROCESS_WIDE, RUNNERS
from ._patch import Patches

__all__ = ["HOOKS", "install", "installer", "uninstall"]


def _each(names: Iterable[str], target: str) -> tuple[tuple[str, str], ...]:
    return tuple((name, target) for name in names)


#: (module the program imports, ``"_integration:installer"`` run on it then). Where an
#: integration keeps a table by module name (``_grpc.MAKERS``, ``_sockets.FINALIZER_ALIASES``,
#: ``_multiprocessing.OWNED``, ``_twisted.OWNED`` ...), its names are repeated here so that
#: the integration need not be imported to know them; tests/test_leaks_report.py checks
#: that both agree.
HOOKS: tuple[tuple[str, str], ...] = (
    ("socket", "_sockets:install_socket"),
    ("socket", "_socketio:install"),
    ("selectors", "_sockets:install_selectors"),
    ("subprocess", "_children:install"),
    ("sqlite3", "_sqlite:install"),
    ("aiosqlite.core", "_sqlite:install_aiosqlite"),
    ("asgiref.sync", "_tasks:install_asgiref"),
    ("psycopg.connection", "_psycopg:install_sync"),
    ("psycopg2", "_psycopg2:install"),
    ("psycopg2.pool", "_psycopg2:install_pool"),
    ("psycopg.connection_async", "_psycopg:install_async"),
    *_each(
        ("psycopg_pool._acompat", "psycopg_pool.pool", "psycopg_pool.pool_async"), "_psycopg:install_pool"
    ),
    ("asyncpg.pool", "_asyncpg:install"),
    *_each(("redis.connection", "valkey.connection"), "_pooled:install_redis"),
    *_each(("redis.asyncio.connection", "valkey.asyncio.connection"), "_pooled:install_redis_async"),
    *_each(("redis.connection", "valkey.connection"), "_redis:install"),
    *_each(("redis.asyncio.connection", "valkey.asyncio.connection"), "_redis:install_async"),
    ("urllib3.connectionpool", "_pooled:install_urllib3"),
    ("aiohttp.connector", "_pooled:install_aiohttp"),
    ("sqlalchemy.pool.base", "_pooled:install_sqlalchemy"),
    ("playhouse.pool", "_pooled:install_peewee"),
    *_each(("httpcore._sync.connection_pool", "httpcore2._sync.connection_pool"), "_pooled:install_httpcore"),
    *_each(
        ("httpcore._async.connection_pool", "httpcore2._async.connection_pool"),
        "_pooled:install_httpcore_async",
    ),
    ("tempfile", "_tempfiles:install"),
    *_each(("gzip", "bz2", "lzma"), "_files:install_text_opener"),
    ("mmap", "_mmap:install"),
    ("select", "_epoll:install"),
    ("pyfakefs.fake_filesystem_unittest", "_pyfakefs:install"),
    ("dbm.dumb", "_dbm:install"),
    ("dbm.sqlite3", "_dbm:install"),
    ("asyncio.base_events", "_tasks:install_base_events"),
    ("asyncio.runners", "_tasks:install_runners"),
    ("asyncio.selector_events", "_loops:install"),
    ("asyncio.selector_events", "_tasks:install_transports"),
    ("asyncio.streams", "_loops:install_streams"),
    ("multiprocessing.process", "_multiprocessing:install_process"),
    ("multiprocessing.popen_spawn_posix", "_multiprocessing:install_spawn"),
    ("multiprocessing.pool", "_multiprocessing:install_pool"),
    ("billiard.process", "_multiprocessing:install_process"),
    ("billiard.pool", "_multiprocessing:install_billiard_pool"),
    ("billiard.queues", "_multiprocessing:install_queues"),
    ("billiard.connection", "_multiprocessing:install_pipe"),
    ("multiprocessing.queues", "_multiprocessing:install_queues"),
    ("multiprocessing.managers", "_multiprocessing:install_managers"),
    ("multiprocessing.connection", "_multiprocessing:install_pipe"),
    ("multiprocessing.shared_memory", "_sharedmemory:install"),
    # dill's copy of multiprocessing, module for module
    ("multiprocess.process", "_multiprocessing:install_process"),
    ("multiprocess.popen_spawn_posix", "_multiprocessing:install_spawn"),
    ("multiprocess.pool", "_multiprocessing:install_pool"),
    ("multiprocess.queues", "_multiprocessing:install_queues"),
    ("multiprocess.managers", "_multiprocessing:install_managers"),
    ("multiprocess.connection", "_multiprocessing:install_pipe"),
    ("multiprocess.shared_memory", "_sharedmemory:install"),
    ("concurrent.futures.process", "_multiprocessing:install_executor"),
    ("concurrent.futures.thread", "_threads:install_executor"),
    ("anyio._backends._asyncio", "_tasks:install_anyio"),
    ("trio._core._run", "_trio:install"),
    ("trio._core._thread_cache", "_trio:install_thread_cache"),
    ("trio._subprocess", "_trio:install_subprocess"),
    ("uvloop", "_uvloop:install"),
    ("gevent.hub", "_gevent:install_hub"),
    ("gevent._socket3", "_gevent:install_socket"),
    ("gevent.server", "_gevent:install_server"),
    ("gevent.os", "_gevent:install_os"),
    ("gevent.greenlet", "_gevent:install_greenlet"),
    ("gevent.thread", "_gevent:install_thread"),
    ("gevent.subprocess", "_gevent:install_subprocess"),
    *_each(
        (
            "multiprocessing.util",
            "multiprocessing.resource_tracker",
            "multiprocessing.forkserver",
            "multiprocessing.heap",
            "multiprocessing.resource_sharer",
            "multiprocess.resource_sharer",
            "multiprocess.util",
            "multiprocess.resource_tracker",
            "multiprocess.forkserver",
            "multiprocess.heap",
            "billiard.heap",
            "billiard.forkserver",
            "billiard.semaphore_tracker",
            "billiard.popen_fork",
            "billiard.popen_spawn_posix",
            "billiard.popen_forkserver",
            "celery.concurrency.asynpool",
            "joblib._memmapping_reducer",
            "joblib.pool",
            "matplotlib.font_manager",
            "zipfile",
            "zipfile._path",
        ),
        "_multiprocessing:install_owned",
    ),
    *_each(
        (
            f"{package}.{module}"
            for package in ("loky", "joblib.externals.loky")
            for module in ("reusable_executor", "backend.resource_tracker", "backend.popen_loky_posix")
        ),
        "_multiprocessing:install_owned_package",
    ),
    *_each(PROCESS_WIDE, "_owning:install_process_wide"),
    *_each(RUNNERS, "_owning:install_runners"),
    ("pymysql.connections", "_sockets:install_finalizer_aliases"),
    ("pymysql.connections", "_pymysql:install"),
    ("pg8000.core", "_pg8000:install"),
    ("aiomysql.connection", "_aiomysql:install"),
    ("MySQLdb.connections", "_mysql:install_mysqlclient"),
    *_each(("mysql.connector.connection", "mysql.connector.connection_cext"), "_mysql:install_connector"),
    *_each(HOLDERS, "_holders:install"),
    ("kombu.pools", "_holders:install_kombu_pools"),
    *_each(("grpc", "grpc.aio"), "_grpc:install"),
    *_each(("grpc._channel", "grpc.aio._channel"), "_grpc:install_channel"),
    ("watchfiles.main", "_watchfiles:install"),
    ("watchfiles._rust_notify", "_watchfiles:install"),
    ("watchdog.observers.inotify_c", "_watchdog:install_inotify"),
    ("watchdog.observers.api", "_watchdog:install_observers"),
    ("apscheduler.schedulers.base", "_apscheduler:install"),
    ("apscheduler.executors.asyncio", "_apscheduler:install_asyncio_executor"),
    ("distributed.deploy.spec", "_dask:install_cluster"),
    ("distributed.client", "_dask:install_client"),
    ("distributed.process", "_dask:install_process"),
    *_each(("tornado.netutil", "tornado.tcpserver"), "_tornado:install"),
    ("tornado.platform.asyncio", "_tornado:install_callbacks"),
    ("pycares", "_pycares:install"),
    ("pyarrow.lib", "_pyarrow:install"),
    ("eventlet.hubs.epolls", "_eventlet:install"),
    *_each(
        ("filelock._core._lock", "filelock._async_lock._lock", "filelock._api", "filelock.asyncio"),
        "_filelock:install",
    ),
    ("filelock._soft._lease", "_filelock:install_lease"),
    ("filelock._async_lock._release", "_filelock:install_release"),
    ("pyftpdlib.ioloop", "_pyftpdlib:install"),
    ("pika.compat", "_pika:install_compat"),
    ("pika.adapters.base_connection", "_pika:install_base"),
    ("pika.adapters.blocking_connection", "_pika:install_blocking"),
    ("paho.mqtt.client", "_paho:install"),
    ("amqpstorm.connection", "_amqpstorm:install"),
    *_each(
        (
            "aiormq.base",
            "aiormq.channel",
            "aio_pika.connection",
            "aio_pika.robust_connection",
            "aio_pika.channel",
            "aio_pika.robust_channel",
            "aio_pika.tools",
        ),
        "_aiormq:install_owned",
    ),
    ("aiormq.connection", "_aiormq:install_connection"),
    ("nats.aio.client", "_nats:install_client"),
    ("nats.aio.subscription", "_nats:install_owned"),
    ("nats.aio.transport", "_nats:install_owned"),
    ("nats.js.client", "_nats:install_owned"),
    *_each(
        ("twisted.internet._signals", "twisted.internet.tcp", "twisted.internet.asyncioreactor"),
        "_twisted:install_owned",
    ),
    ("twisted.internet.epollreactor", "_twisted:install_poller"),
    ("twisted.internet.base", "_twisted:install_threadpool"),
    *_each(("twisted.internet.process", "twisted.internet.endpoints"), "_twisted:install_unbound"),
    ("django.db.backends.base.base", "_django:install"),
    ("ptyprocess.ptyprocess", "_pexpect:install_ptyprocess"),
    ("pexpect.pty_spawn", "_pexpect:install_spawn"),
    ("pexpect.popen_spawn", "_pexpect:install_popen"),
    ("zmq.sugar.context", "_zmq:install_context"),
    ("zmq.sugar.socket", "_zmq:install_socket"),
    ("execnet.gateway", "_execnet:install"),
    ("freezegun.config", "_freezegun:install"),
    ("jupyter_client.manager", "_jupyter:install_manager"),
    ("jupyter_client.client", "_jupyter:install_client"),
    ("_pytest.assertion.rewrite", "_imports:install_pytest_rewrite"),
)


def installer(target: str) -> Callable[[Patches, ModuleType], None]:
    """The installer ``"_integration:function"`` names, importing its integration.

    One loaded already is that module, though ``sys.modules`` lost it (pytester takes out what a
    test imported): imported again, it ran a second time, a second set of its registries beside
    the first's, which its wrappers still fill."""
    module, _, function = target.partition(":")
    loaded = _records.integration(module) or import_module(f"{__package__}.{module}")
    found: Callable[[Patches, ModuleType], None] = getattr(loaded, function)
    return found


class _Deferred:
    """Runs the installer a hook names on the library module, importing the integration then."""

    __slots__ = ("_patches", "_target")

    def __init__(self, target: str, patches: Patches) -> None:
        self._target = target
        self._patches = patches

    def __call__(self, module: ModuleType) -> None:
        # An installer that fails on a version of the library it does not know must not break the
        # program's ``import``: the library goes untracked, and the warning says which and why.
        # What the installer patched before it raised is in *patches*, undone with the rest.
        try:
            installer(self._target)(self._patches, module)
        except Exception as error:
            import warnings

            message = (
                f"reclaim could not instrument {module.__name__} ({self._target} raised "
                f"{type(error).__name__}: {error}); its resources go untracked. Please report it "
                "with the library's version."
            )
            try:
                warnings.warn(message, RuntimeWarning, stacklevel=2)
            except Exception:  # warnings made errors (pytest's filterwarnings = error)
                sys.stderr.write(f"RuntimeWarning: {message}\n")


def install(patches: Patches) -> None:
    """Install the wrappers of every kind; *patches* records them for undo."""
    _sites.watch_collections(True)
    _files.install(patches)
    _fds.install(patches)
    _children.install_os(patches)
    _lineage.install(patches)
    _threads.install(patches)
    for name, target in HOOKS:
        _imports.when_imported(name, _Deferred(target, patches))


def uninstall() -> None:
    """Stop waiting for imports (the patches themselves are undone by their ``Patches``)."""
    _imports.cancel_all()
    _sites.watch_collections(False)
    # Only the integrations loaded have anything to forget.
    for name in ("_multiprocessing", "_sharedmemory", "_pooled", "_gevent", "_lineage"):
        integration = _records.integration(name)
        if integration is not None:
            integration.reset()
