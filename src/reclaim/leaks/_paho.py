"""paho-mqtt: a client never disconnected is one leak at the line that made it, holding its
socket to the broker and its loop thread.

A ``paho.mqtt.client.Client`` connects in ``connect()`` and runs its network
loop in ``loop_forever()``, or on a thread of its own after ``loop_start()``;
``loop_start()`` and ``loop()`` also make a socket pair the loop is woken
through. Left connected, it was reported as three sockets and a thread at
paho's lines, none of them named a client; and a correct program
(``disconnect()``, then ``loop_stop()``) still had the socket pair reported:
paho closes it only in the client's ``__del__``.

So a client is a holder (see :mod:`._holders`), of kind ``mqtt``, at the
program's line that made it, open while it has a socket to the broker or a
loop thread: those, when leaked, are listed under it. After a ``disconnect()``
with no ``loop_stop()`` the loop thread ends by itself, as paho documents: a
check waits for it as for any thread. The wake-up socket pair is made by
``_socketpair_compat``, which paho calls for nothing else: it is marked owned
(:func:`reclaim._sites.mark_owned`), so it is recorded but never reported, as
pika's is (see :mod:`._pika`). Dropped connected, a client is reported as
closed by the garbage collector (its ``__del__`` closes its sockets). Only the
making and ``__del__`` of a client are wrapped; a program that does not import
paho pays nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType

from . import _holders
from ._kinds import Details, Kind, register
from ._owning import own
from ._patch import Patches
from ._records import Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["MODULES", "install"]

KIND = "mqtt"


def _disconnected(client: Any) -> bool:
    """Whether *client* has neither a socket to the broker nor a loop thread."""
    return client._sock is None and client._thread is None


def _parts(client: Any) -> Iterable[object]:
    """Its socket to the broker and its loop thread, in a tuple that :func:`._holders.claim`
    looks into and no further: the client itself would lead to the program's objects its
    callbacks and ``userdata`` reach, and their sockets would be taken for its own."""
    found = tuple(part for part in (client._sock, client._thread) if part is not None)
    return (found,) if found else ()


def _is_open(obj: Any, rec: Record) -> bool:
    try:
        return not _disconnected(obj)
    except Exception:  # a half-built client: it cannot have connected
        return False


def _target(client: Any) -> str | None:
    """Where *client* connected (``host:port``, or a Unix socket's path), None before ``connect()``."""
    if not client._host:  # "" until connect()
        return None
    # Over a Unix socket the host is the socket's path, and the port is not used.
    unix = getattr(client, "_transport", None) == "unix"
    return str(client._host) if unix else f"{client._host}:{client._port}"


def _last_look(client: Any, rec: Record) -> None:
    """*client* dies unclosed: its record keeps where it connected (a collected client says no more)."""
    target = _target(client)
    if target is not None:
        rec.info = ((rec.info[0], target), *rec.info[1:])


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    label, _, _, held = rec.info
    cls, target = label if isinstance(label, tuple) else (label, None)
    details: Details = {"class": cls}
    text = "client"  # after the kind: "mqtt client to host:port"
    if obj is not None:
        target = _target(obj)
    if target is not None:
        details["target"] = target
        text += f" to {target}"
    connected = any(part.kind != "thread" for part in held)
    looping = any(part.kind == "thread" for part in held)
    details["loop_thread"] = looping
    if connected and looping:
        return f"{text} not disconnected, its loop thread running (disconnect(), then loop_stop())", details
    if looping:
        return f"{text}: its loop thread still running (loop_stop())", details
    return f"{text} not disconnected (disconnect())", details


register(Kind(KIND, is_open=_is_open, describe=_describe, holder=True))
_holders.ROOTS[KIND] = _parts
_holders.LAST_LOOK[KIND] = _last_look


def install(patches: Patches, module: ModuleType) -> None:
    """Track ``Client`` as a holder of kind ``mqtt``; its wake-up socket pair is paho's own."""
    make_pair = getattr(module, "_socketpair_compat", None)
    if make_pair is not None:
        own(make_pair)
    cls = getattr(module, "Client", None)
    if isinstance(cls, type) and "__init__" in vars(cls):
        _holders.track(patches, cls, KIND, _disconnected, "disconnect()", _holders.nothing_owned)


#: module -> what tracks its part of paho, once the program imports it.
MODULES: dict[str, Callable[[Patches, ModuleType], None]] = {"paho.mqtt.client": install}
