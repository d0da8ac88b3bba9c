"""Bounds the round trips of a release: a reset with no answer within ``reset_timeout`` is cut off.

Giving a connection back may talk to the server (``ROLLBACK``, ``DISCARD ALL``,
``COM_RESET_CONNECTION``). On a network that went silent that read would wait until TCP
gives up (about 15 minutes on Linux; never, while a middlebox still acknowledges), with
the releasing thread stuck at the end of its ``with`` block, and no driver offers a
deadline for it. So the adapters arm this watchdog
around those round trips: one thread per process, running only while something is armed,
looks every :data:`PERIOD` seconds and shuts down the socket of a reset past its deadline.
The driver's blocked read then fails at once, the adapter raises :class:`ResetTimeout`,
and the pool discards the connection.

Arming is one dict store and disarming one dict pop, on a :class:`Guard` made once per
connection. The watchdog pops what it cuts while holding its lock, and a reset that finds
its entry gone waits for that lock before it lets the connection be discarded: a
descriptor is never shut down once it may belong to something else.
"""

from __future__ import annotations

import _socket
import _thread
import os
import socket
import time
from typing import Final

__all__ = ["PERIOD", "Guard", "ResetTimeout"]

#: How often the watchdog looks while a reset is armed (the cut comes up to this late).
PERIOD: Final = 0.05

_monotonic = time.monotonic


class ResetTimeout(TimeoutError):
    """A release's round trip got no answer within ``reset_timeout``; the connection was cut off."""


class _Watchdog:
    __slots__ = ("armed", "lock", "running")

    def __init__(self) -> None:
        #: key -> (deadline, socket descriptor to shut down)
        self.armed: dict[object, tuple[float, int]] = {}
        self.lock = _thread.allocate_lock()
        self.running = False

    def start(self) -> None:
        with self.lock:
            if self.running:
                return
            self.running = True
        # A bare _thread: not a threading.Thread, so leak checks never count it as the
        # user's, and it holds no reference that keeps the interpreter from exiting.
        _thread.start_new_thread(self.run, ())

    def run(self) -> None:
        armed = self.armed
        while True:
            time.sleep(PERIOD)
            with self.lock:
                if armed:
                    now = _monotonic()
                    for key in [key for key, (deadline, _) in armed.items() if deadline <= now]:
                        entry = armed.pop(key, None)  # None: disarmed since the line above
                        if entry is not None:
                            _cut(entry[1])
                    continue
                self.running = False
            # A reset armed between the test above and running = False saw running still
            # True and started nothing: look once more now that running is False.
            if not armed:
                return
            with self.lock:
                if self.running:
                    return  # that arm() started a thread of its own
                self.running = True


def _cut(fd: int) -> None:
    """Shut the socket down both ways: a read blocked on it returns at once (EOF)."""
    try:
        sock = _socket.socket(fileno=fd)  # the C type: leak tracking does not wrap it
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()  # the descriptor stays the driver's


_WATCHDOG = _Watchdog()
_ARMED = _WATCHDOG.armed


class Guard:
    """``with guard:`` bounds the round trips of a reset (also inside a coroutine).

    Made once per connection whose socket never changes (psycopg keeps its own for
    life) and entered at every reset that talks to the server; made for one reset where
    the socket may change (PyMySQL reconnects on a new one). Raises
    ResetTimeout, chained to the driver's error, when the watchdog cut the socket off;
    *timeout* None (or no socket, *fd* None) bounds nothing.
    """

    __slots__ = ("fd", "key", "timeout")

    def __init__(self, conn: object, fd: int | None, timeout: float | None) -> None:
        # The connection is alive while armed (its own hash may not be usable).
        self.key = id(conn)
        # No socket to cut: never armed, the driver's own timeouts are all there is.
        self.fd = -1 if fd is None else fd
        self.timeout = None if fd is None else timeout

    def __enter__(self) -> None:
        timeout = self.timeout
        if timeout is not None:
            _ARMED[self.key] = (_monotonic() + timeout, self.fd)
            if not _WATCHDOG.running:
                _WATCHDOG.start()

    def __exit__(self, et: object, exc: BaseException | None, tb: object) -> None:
        if self.timeout is None or _ARMED.pop(self.key, None) is not None:
            return  # the usual case: no lock (a dict pop is atomic)
        # The watchdog took it: it pops under its lock and cuts before letting go, so
        # waiting for the lock means the cut is done before the connection is discarded.
        with _WATCHDOG.lock:
            pass
        raise ResetTimeout(
            f"no answer from the server within reset_timeout={self.timeout} s; "
            "the connection was cut off and is discarded"
        ) from exc


def _after_fork_in_child() -> None:
    global _WATCHDOG, _ARMED
    _WATCHDOG = _Watchdog()  # the parent's thread is not in the child, nor are its resets
    _ARMED = _WATCHDOG.armed


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
