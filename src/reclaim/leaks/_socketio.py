"""Sockets the garbage collector closes through their ``makefile()`` objects.

A socket's ``close()`` waits for the objects its ``makefile()`` made (``SocketIO``
raw layers, under a buffered or text layer): the last one to close calls its
``_real_close``. When the garbage collector closes that last object, the program
closed nothing: ``urlopen(url).status`` with the response dropped unread (urllib
closes the socket, and the response holds it), a ``makefile()`` reader dropped
after the socket's ``close()``. Without a hook here the real close looked like
the program's (``_real_close`` is called from ``SocketIO.close``, not from a
``__del__``), and such a leak was never reported.

``SocketIO`` gets the hooks files have (see :mod:`._files`), for the three ways a
finalizer arrives:

* ``_dealloc_warn``: what a C buffered or text layer calls on its raw layer when it
  is finalized unclosed (``SocketIO`` has none: CPython warns about none of these,
  and neither does this);
* a ``_finalizing`` property whose setter is the hook: IOBase's finalizer sets it
  on an unbuffered ``makefile()`` object it is about to close;
* ``close``, which asks :func:`reclaim._sites.closing_in_finalizer` about its caller:
  a Python io wrapper's close that IOBase's finalizer called (``HTTPResponse.close``
  -> ``_close_conn`` -> the buffered reader's close, C, -> ``SocketIO.close``), or a
  ``__del__``. Only a close that closes the socket too asks (the program closed the
  socket and this is its last ``makefile()`` object).

The socket's own close is unchanged: only ``makefile()`` users pay.
"""

from __future__ import annotations

import functools
import sys
from _thread import get_ident
from types import ModuleType

from reclaim._sites import closing_in_finalizer, dropped_at

from . import _records
from ._patch import Patches
from ._sockets import collected, makefile_kept

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["install"]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

_getframe = sys._getframe
_live_pop = _records.live.pop


class _NotInstalled:
    pass


#: socket.socket, set by install().
_socket_type: type[Any] = _NotInstalled


def _closes_socket(sock: Any) -> bool:
    """Whether closing a ``SocketIO`` over *sock* (its ``_sock``) makes the socket's real close: a
    socket the program closed, this its last ``makefile()`` object. A ``SocketIO`` may be made over
    an object that only stands in for a socket (urllib3's ``SSLTransport``, TLS in TLS through an
    HTTPS proxy): it has no ``_closed``, and the hook must not fail the close it stands before."""
    return isinstance(sock, _socket_type) and bool(sock._closed) and sock._io_refs <= 1


def install(patches: Patches, socket: ModuleType) -> None:
    """Give ``socket.SocketIO`` the finalizer hooks (see the module's docstring)."""
    global _socket_type
    _socket_type = socket.socket
    sio = socket.SocketIO
    sio_close = sio.close

    def close(self: Any) -> None:
        sock = self._sock  # None once closed
        if _closes_socket(sock):  # its real close comes next
            try:
                caller = _getframe(1)
            except ValueError:  # called from C code with no Python frame
                caller = None
            if closing_in_finalizer(caller):  # (no fast path by name, as files have: rare here)
                _collected(sock, dropped_at(caller, past_finalizer=True))
        sio_close(self)

    # Both called from C (a buffered layer's close, IOBase's finalizer): the frame under them is
    # the one whose drop of the object's last reference finalizes it.
    def _dealloc_warn(self: Any, source: Any) -> None:
        _closing_last(self)

    def get_finalizing(self: Any) -> bool:
        return bool(self.__dict__.get("_finalizing", False))

    def set_finalizing(self: Any, value: bool) -> None:
        if value:
            _closing_last(self)
        self.__dict__["_finalizing"] = value

    patches.set(sio, "close", close)
    patches.set(sio, "_dealloc_warn", _dealloc_warn)
    patches.set(sio, "_finalizing", property(get_finalizing, set_finalizing))


def _closing_last(sio: Any) -> None:
    """The garbage collector is closing *sio*: when that closes its socket too, the collector did.
    Called by a hook C called: the frame two up is the one that dropped *sio*'s holder."""
    sock = sio._sock
    if _closes_socket(sock):
        try:
            dropper = _getframe(2)
        except ValueError:  # dropped by C code with no Python frame under it
            dropper = None
        _collected(sock, dropped_at(dropper))


#: Threads running a library's ``close()`` that closes its socket, then drops the ``makefile()``
#: object over it unclosed (pg8000's): on CPython that object's finalizer closes the socket
#: before the ``close()`` returns, which is that close, not the collector's (see closes_its_own).
_own_close: set[int] = set()


def closes_its_own(close: Any, socket_of: Callable[[Any], Any]) -> Any:
    """Wrap *close*, a library's ``close()`` known to close its socket (``socket_of(self)``)
    through dropping the last reference to the ``makefile()`` object over it (see
    :data:`_own_close`): the socket closed so while it runs is released, not collected. A
    library that does so unknown to reclaim is still reported, ``dropped at`` its line.

    A ``close()`` that raises (pg8000's, writing its goodbye to a server that ended the
    session) leaves that object alive in its traceback's frames until the program is done with
    the error: the socket it closed is released all the same, as the close ends."""

    @functools.wraps(close)
    def close_(self: Any, *args: Any, **kwargs: Any) -> Any:
        me = get_ident()
        if me in _own_close:  # a close() within another: the outer one ends it
            return close(self, *args, **kwargs)
        sock = socket_of(self)
        _own_close.add(me)
        try:
            return close(self, *args, **kwargs)
        finally:
            _own_close.discard(me)
            if sock is not None and getattr(sock, "_closed", False) is True:
                rec = _records.live.get(id(sock))
                if rec is not None and rec() is sock:
                    _records.release(id(sock))

    return close_


def _collected(sock: Any, dropped: Any) -> None:
    rec = _live_pop(id(sock), None)
    if rec is not None and dropped is not None and _own_close and get_ident() in _own_close:
        rec.state = _records.RELEASED  # dropped by a refcount, in a close() that closes its own
        return
    if rec is not None:
        # The program closed the socket; its makefile() object kept it, dropped at *dropped*.
        collected(rec, sock, makefile_kept(dropped))
