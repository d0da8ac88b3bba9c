"""tornado: what a server's accept callback makes is recorded at the program's line that started
the server, as an asyncio server's is.

A tornado ``TCPServer`` (an ``HTTPServer``, distributed's TCP listener) accepts on an event loop
callback that ``netutil.add_accept_handler`` registers: its handler task for a connection was
recorded at tornado's and the library's lines only (``accept_handler`` ->
``TCPServer._handle_connection`` -> ``convert_yielded`` -> the handler's coroutine), the
program's line nowhere, as a loop callback runs in no task. So ``add_accept_handler`` is called
with the program's line and label set as what started that callback (see
:data:`._records.origin`, which the loop's callback copies as it is registered), as
``asyncio.Server._start_serving`` is (see :mod:`._tasks`): the handler tasks and what they
acquire go on at the line that started the server (``server.listen()``, ``await
Server.listen(...)`` of distributed), labelled as it (a session fixture's server), not as the
test running when a client connects. Only ``add_accept_handler`` is wrapped, where tornado's
``netutil`` and ``tcpserver`` name it; a program that does not import tornado loads none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from . import _records
from ._patch import Patches

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: The wrappers made, by the function they wrap: ``tcpserver`` imports it from ``netutil`` by
#: name, wrapped already or not (imported before tracking started).
_wrapped: dict[Callable[..., Any], Callable[..., Any]] = {}


def install(patches: Patches, module: ModuleType) -> None:
    """Wrap *module*'s ``add_accept_handler`` (``tornado.netutil``'s, or ``tcpserver``'s name for it)."""
    add = getattr(module, "add_accept_handler", None)
    if not callable(add):
        return
    for original, made in tuple(_wrapped.items()):
        if add is made:  # tcpserver imported netutil's, wrapped already: the original comes back
            setattr(module, "add_accept_handler", original)  # noqa: B010  # what the undo restores
            add = original
    wrapper = _wrapped.get(add)
    if wrapper is None:
        wrapper = _wrapped[add] = _records.at_callers_site(add)  # add_reader() copies the context
    patches.set(module, "add_accept_handler", wrapper)


def install_callbacks(patches: Patches, module: ModuleType) -> None:
    """Wrap ``BaseAsyncIOLoop.add_callback`` and ``add_future`` (*module* is
    ``tornado.platform.asyncio``): a task its callback makes (``add_callback(coroutine_function)``,
    joblib's dask backend) goes on at the line that added it, not at the line that ran the loop
    (the same thread, in a task) or nowhere of the program's (another thread)."""
    cls = getattr(module, "BaseAsyncIOLoop", None)
    add = vars(cls).get("add_callback") if isinstance(cls, type) else None
    if add is not None:
        patches.set(cls, "add_callback", _records.at_callers_site(add, site_only=True))
    # ``add_future(future, callback)``: the callback runs as the future's done callback, in the
    # context copied as it was added (an asyncio future's), and a task it makes went on at the line
    # that ran the loop (jupyter_server's gateway connection, its message reader).
    add_future = getattr(cls, "add_future", None) if isinstance(cls, type) else None
    if callable(add_future):
        patches.set(cls, "add_future", _records.at_callers_site(add_future, site_only=True))


#: module -> what tracks its part of tornado, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {
    "tornado.netutil": install,
    "tornado.tcpserver": install,
    "tornado.platform.asyncio": install_callbacks,
}
