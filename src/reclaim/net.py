"""reclaim.net: client sockets with deadlines, a cheap liveness check, and a pool of connections.

* :func:`connect` opens a TCP (IPv4 or IPv6) or Unix socket with a connect
  deadline and a per-operation timeout, and errors that name the address.
* :func:`is_alive` says, without blocking and without consuming data, whether
  the peer has closed or reset the connection.
* :class:`SocketPool` is a :class:`reclaim.Pool` of connections to one address
  that replaces the ones the peer closed.

Sockets are ordinary :class:`socket.socket` objects: the leak tracker sees them
as it sees every socket, with the line that called :func:`connect`.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from .errors import ConnectTimeout
from .pool import Pool

__all__ = ["Address", "SocketPool", "connect", "format_address", "is_alive"]

#: ``(host, port)`` for TCP, or a filesystem path for a Unix socket.
Address = tuple[str, int] | str | os.PathLike[str]


def format_address(address: Address) -> str:
    """``host:port`` (``[v6]:port`` for IPv6) for TCP, ``unix:/path`` for a Unix socket."""
    if isinstance(address, tuple):
        host, port = address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"unix:{os.fspath(address)}"


def _check_seconds(value: object, name: str, call: str = "connect") -> float:
    """*value* as float seconds: a TypeError for a wrong type, a ValueError for a number out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        why = " (a socket without a timeout can hang forever)" if value is None else ""
        raise TypeError(
            f"{call}({name}=...) must be a number of seconds (int or float){why}, "
            f"not {type(value).__name__} {value!r}"
        )
    if not 0 < value < math.inf:
        raise ValueError(f"{call}({name}=...) must be a finite number of seconds > 0, not {value!r}")
    return float(value)


def _check_bool(value: object, name: str, call: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{call}({name}=...) must be a bool, not {type(value).__name__} {value!r}")
    return value


def _check_address(address: object, call: str) -> None:
    """Refuse what is not ``(host: str, port: int)`` or a path (TypeError), or a port out of range."""
    if isinstance(address, tuple):
        if (
            len(address) != 2
            or not isinstance(address[0], str)
            or isinstance(address[1], bool)
            or not isinstance(address[1], int)
        ):
            raise TypeError(f"{call}(address=...) must be (host: str, port: int) or a path, not {address!r}")
        if not 0 <= address[1] <= 65535:
            raise ValueError(f"{call}(address=...) has port {address[1]}, outside 0..65535")
    elif not isinstance(address, str | os.PathLike):
        raise TypeError(
            f"{call}(address=...) must be (host: str, port: int) or a path, "
            f"not {type(address).__name__} {address!r}"
        )


def _renamed(error: OSError, where: str) -> OSError:
    """The same kind of error, with a message that says which address it was about, and how to
    give a TCP address when a missing Unix socket's path reads as ``host:port``."""
    hint = ""
    if isinstance(error, FileNotFoundError):
        import re  # only on this error: the module's import stays light

        tcp = re.fullmatch(r"unix:(\[[0-9a-fA-F:.]+\]|[\w.-]+):(\d{1,5})", where)
        if tcp is not None:
            host, port = tcp.group(1).strip("[]"), tcp.group(2)
            hint = f"; a str is a Unix socket's path, for TCP give (host, port): ({host!r}, {port})"
    message = f"{error.strerror or error} (connecting to {where}{hint})"
    try:
        renamed = type(error)(error.errno, message) if error.errno is not None else None
    except TypeError:  # pragma: no cover - an OSError subclass with another signature
        renamed = None
    if renamed is None:
        renamed = OSError(error.errno, message)
    return renamed


def connect(
    address: Address,
    *,
    timeout: float,
    connect_timeout: float | None = None,
    nodelay: bool = True,
) -> socket.socket:
    """Connect to *address* and return the socket, with every wait bounded.

    * *address*: ``(host, port)`` for TCP, where *host* is a name, an IPv4 or an
      IPv6 address; a ``str`` or path for a Unix socket.
    * *timeout*: seconds any later ``send``/``recv`` may wait before raising
      ``TimeoutError`` (``socket.settimeout``); required, because a socket
      without one can hang a worker forever.
    * *connect_timeout*: the deadline for the whole connect, over every address
      the name resolves to (default: *timeout*). Name resolution itself is the
      system resolver's and cannot be bounded here.
    * *nodelay*: set ``TCP_NODELAY`` (request/response protocols want it).

    Raises:
        ConnectTimeout: no connection within *connect_timeout*; also a ``TimeoutError``.
        OSError: the connection failed; the same subclass the system gave
            (``ConnectionRefusedError``, ``socket.gaierror``, ``FileNotFoundError``...),
            with the address in the message.
        TypeError: an argument of the wrong type (a timeout that is not a number,
            ``None`` included), naming it.
        ValueError: a timeout that is not a finite number > 0, or a port outside
            0..65535, naming it.

    Example::

        sock = connect(("127.0.0.1", port), timeout=5.0, connect_timeout=1.0)
        with sock:
            sock.sendall(b"PING\\r\\n")
    """
    per_operation = _check_seconds(timeout, "timeout")
    budget = per_operation if connect_timeout is None else _check_seconds(connect_timeout, "connect_timeout")
    _check_bool(nodelay, "nodelay", "connect")
    _check_address(address, "connect")
    if isinstance(address, tuple):
        candidates = _resolve(address)
    else:
        candidates = [(socket.AF_UNIX, socket.SOCK_STREAM, 0, os.fspath(address))]
    where = format_address(address)
    deadline = time.monotonic() + budget
    failures: list[OSError] = []
    for family, kind, proto, sockaddr in candidates:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining)
            sock.connect(sockaddr)
            sock.settimeout(per_operation)
            if nodelay and family != socket.AF_UNIX:
                # A peer that resets at once makes this fail (ECONNRESET/EINVAL) though the
                # connect succeeded: hand the socket over, its first use reports the reset.
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as error:
            sock.close()
            failures.append(error)
            continue
        except BaseException:
            sock.close()
            raise
        return sock
    real = [f for f in failures if not isinstance(f, TimeoutError)]
    if real and len(real) == len(failures):
        raise _renamed(real[0], where) from real[0]
    tried = ", ".join(_sockaddr_text(c[3]) for c in candidates)
    detail = f" (tried {tried}; other failures: {real})" if real else f" (tried {tried})"
    raise ConnectTimeout(
        f"connect to {where} timed out after {budget:g} s{detail}; "
        "is the server up and accepting connections?"
    ) from (failures[-1] if failures else None)


def _resolve(address: tuple[str, int]) -> list[tuple[int, int, int, str | tuple[object, ...]]]:
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise _renamed(error, format_address(address)) from error
    return [(family, kind, proto, sockaddr) for family, kind, proto, _name, sockaddr in infos]


def _sockaddr_text(sockaddr: object) -> str:
    if isinstance(sockaddr, tuple) and len(sockaddr) >= 2:
        return format_address((str(sockaddr[0]), int(sockaddr[1])))
    return str(sockaddr)


_init = Pool.__init__.__code__
#: The keyword-only parameters of Pool.__init__ (what SocketPool passes on).
_POOL_OPTIONS = _init.co_varnames[_init.co_argcount : _init.co_argcount + _init.co_kwonlyargcount]
_PEEK = socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0)


def is_alive(sock: socket.socket) -> bool:
    """Whether the peer of the connected *sock* has not closed or reset the connection.

    Cheap and non-blocking: one ``poll`` with a zero timeout, plus a one-byte
    ``MSG_PEEK`` only when something is waiting; no data is consumed. An idle,
    healthy connection is alive; one whose peer sent ``FIN`` or ``RST``, a closed
    socket or one with a pending error is not. A connection with unread data
    waiting is alive (the peer did not close it), though a pool may not want
    to reuse it. For a TLS socket the check looks at the TCP stream underneath.

    Example::

        if not is_alive(sock):
            sock.close()
            sock = connect(address, timeout=5.0)
    """
    if not isinstance(sock, socket.socket):
        raise TypeError(f"is_alive(sock) needs a socket.socket, got {type(sock).__name__}")
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return False
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    events = poller.poll(0)
    if not events:
        return True  # nothing to read, no hang-up, no error: an idle live connection
    if events[0][1] & select.POLLNVAL:
        return False
    try:
        # socket.socket.recv, not the object's: on an SSLSocket this peeks at the raw TCP stream.
        data = socket.socket.recv(sock, 1, _PEEK)
    except (BlockingIOError, InterruptedError):
        return True
    except (OSError, ValueError):
        return False
    return bool(data)


def _quiet(sock: socket.socket) -> bool:
    """Nothing to read and no error pending: the state an idle pooled connection must be in."""
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return False
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return not poller.poll(0)


def _broken_by_socket_error(sock: socket.socket, exc: BaseException) -> bool:
    # A timeout or connection error mid-exchange leaves the stream in an unknown state.
    return isinstance(exc, OSError)


class SocketPool(Pool[socket.socket]):
    """A :class:`reclaim.Pool` of client connections to one *address*, made by :func:`connect`.

    Each lease is a connected socket with *timeout* set. Before each lease an
    idle socket gets the :func:`is_alive` check (one ``poll``, no round trip),
    in its strict form for idle connections: anything waiting to be read, the
    peer's ``FIN``, a reset or unread bytes, means it is closed and replaced by
    a new one. A connection is also dropped instead of reused when it goes back
    with unread data or a pending error (the protocol state is unknown), or
    when the ``with`` block raised an ``OSError`` (a timeout or a cut
    connection; ``is_broken=`` can add more cases). Its timeout is restored
    on return, in case the borrower changed it.

    Leases are tracked like every pool lease: one still held at the end of a
    checked block shows up in the leak report with where it was acquired.

    * *timeout*, *connect_timeout*, *nodelay*: as for :func:`connect`.
    * ``check_after`` defaults to 0 (check on every lease; the check is cheap).
    * Every other :class:`reclaim.Pool` option is accepted; ``reset`` and
      ``is_broken`` run after the socket checks above.

    Raises:
        TypeError: an option of the wrong type (the message names it).
        ValueError: an option's value is out of range (the message names it).

    Example::

        with SocketPool(("127.0.0.1", port), timeout=5.0, max_size=4) as pool:
            with pool.acquire() as sock:
                sock.sendall(b"PING\\r\\n")
                reply = sock.recv(64)
    """

    def __init__(
        self,
        address: Address,
        *,
        timeout: float,
        connect_timeout: float | None = None,
        nodelay: bool = True,
        check_after: float = 0.0,
        reset: Callable[[socket.socket], object] | None = None,
        is_broken: Callable[[socket.socket, BaseException], bool] | None = None,
        name: str | None = None,
        **options: Any,
    ) -> None:
        per_operation = _check_seconds(timeout, "timeout", "SocketPool")
        if connect_timeout is not None:
            _check_seconds(connect_timeout, "connect_timeout", "SocketPool")
        _check_bool(nodelay, "nodelay", "SocketPool")
        _check_address(address, "SocketPool")
        # Wrapped below in callables of the pool's own: the pool cannot see a bad one, which would
        # fail (logged, the socket discarded) at every release instead of here.
        for hook_name, hook in (("reset", reset), ("is_broken", is_broken)):
            if hook is not None and not callable(hook):
                raise TypeError(
                    f"SocketPool({hook_name}=...) must be callable or None, "
                    f"not {type(hook).__name__} {hook!r}"
                )
        for option in options:
            if option in ("create", "check"):
                raise TypeError(f"SocketPool() makes and checks sockets itself; {option}= is not accepted")
            if option not in _POOL_OPTIONS:  # else Pool.__init__ would be the one named
                import difflib  # only on this error

                near = difflib.get_close_matches(option, _POOL_OPTIONS, n=1)
                hint = f"; did you mean {near[0]}=?" if near else ""
                raise TypeError(f"SocketPool() got an unexpected keyword argument {option!r}{hint}")
        self._address = address

        def create() -> socket.socket:
            return connect(address, timeout=per_operation, connect_timeout=connect_timeout, nodelay=nodelay)

        def restore(sock: socket.socket) -> object:
            if not _quiet(sock):
                return False
            sock.settimeout(per_operation)
            return True if reset is None else reset(sock)

        def broken(sock: socket.socket, exc: BaseException) -> bool:
            return _broken_by_socket_error(sock, exc) or (is_broken is not None and is_broken(sock, exc))

        super().__init__(
            create,
            check=_quiet,
            check_after=check_after,
            reset=restore,
            is_broken=broken,
            name=name if name is not None else f"sockets to {format_address(address)}",
            **options,
        )

    @property
    def address(self) -> Address:
        """Where the pooled connections go."""
        return self._address
