"""A small TCP fault proxy for the database tests: pass traffic, cut it, or black-hole it.

One thread runs a selector loop over the listening socket and every client/server
socket pair, so switching modes is a message to that loop, not a race between threads.

- ``pass``: bytes flow both ways (new connections are forwarded to the upstream).
- ``cut()``: every open pair is closed at once (the client sees EOF / reset) and new
  connections are accepted and closed immediately, like a middlebox that resets flows.
- ``blackhole()``: nothing is read or forwarded any more, in either direction, and new
  connections are accepted but never answered: the network went silent (a NAT or load
  balancer dropped the flow, a cable is out). The kernel still ACKs, so only the
  application's own timeouts can notice.
- ``blackhole_on(marker)``: pass until a client sends bytes containing *marker*, then
  black-hole as above, holding those bytes back: the network goes silent exactly when the
  client sends that request (a login's first query, say), with no race against the test.
- ``heal()``: back to ``pass``; pairs that were black-holed resume where they stopped.
"""

from __future__ import annotations

import selectors
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    #: Bytes held back when the network went silent, per socket they were meant for.
    pending: dict[socket.socket, bytearray] = field(default_factory=dict)


class FaultProxy:
    """Forward 127.0.0.1:<port> to ``upstream``; the test can cut or black-hole traffic.

    Example::

        with FaultProxy(("127.0.0.1", 5432)) as proxy:
            conn = psycopg.connect(host="127.0.0.1", port=proxy.port, ...)
            proxy.blackhole()
    """

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._mode = "pass"
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._commands: list[tuple[str, threading.Event]] = []
        self._marker: bytes | None = None
        self.accepted = 0
        #: Bytes forwarded client -> server (what the pool made the driver send).
        self.bytes_up = 0
        #: Bytes forwarded server -> client.
        self.bytes_down = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()

    # -- control (any thread) ---------------------------------------------------------

    def _command(self, mode: str) -> None:
        done = threading.Event()
        with self._lock:
            self._commands.append((mode, done))
        self._wake_w.send(b"x")
        if not done.wait(10.0):
            raise RuntimeError(f"fault proxy did not switch to {mode!r}")

    def cut(self) -> None:
        """Close every forwarded connection now and reset new ones until heal()."""
        self._command("cut")

    def blackhole(self) -> None:
        """Stop moving bytes in both directions; new connections hang until heal()."""
        self._command("blackhole")

    def blackhole_on(self, marker: bytes) -> None:
        """Pass traffic until a client sends *marker*, then black-hole (those bytes held back)."""
        with self._lock:
            self._marker = marker
        self._command("pass")

    def heal(self) -> None:
        """Forward traffic again (new and black-holed connections)."""
        self._command("pass")

    @property
    def open_pairs(self) -> int:
        """How many client connections the proxy currently holds."""
        return len(self._pairs)

    def close(self) -> None:
        """Stop the proxy thread and close every socket it holds."""
        if self._closed:
            return
        self._closed = True
        self._command("stop")
        self._thread.join(10.0)
        self._wake_w.close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the loop (proxy thread only) -------------------------------------------------

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self._wake_r, selectors.EVENT_READ, None)
        sel.register(self._listener, selectors.EVENT_READ, "accept")
        self._sel = sel
        try:
            while True:
                for key, _events in sel.select():
                    if key.data is None:
                        if not self._apply_commands():
                            return
                    elif key.data == "accept":
                        self._accept()
                    else:
                        pair, sock = key.data
                        self._pump(pair, sock)
        finally:
            for pair in list(self._pairs):
                self._drop(pair)
            sel.close()
            self._listener.close()
            self._wake_r.close()

    def _apply_commands(self) -> bool:
        try:
            self._wake_r.recv(4096)
        except BlockingIOError:
            pass
        with self._lock:
            commands, self._commands = self._commands, []
        keep_going = True
        for mode, done in commands:
            if mode == "stop":
                keep_going = False
            else:
                self._mode = mode
                if mode != "pass":
                    with self._lock:
                        self._marker = None
                if mode == "cut":
                    for pair in list(self._pairs):
                        self._drop(pair)
                self._rewatch()
            done.set()
        return keep_going

    def _rewatch(self) -> None:
        """Watch every socket for reading only when bytes may flow."""
        for pair in list(self._pairs):  # a send below may drop a pair
            if pair.upstream is None and self._mode == "pass":
                self._connect_upstream(pair)
            for sock in (pair.client, pair.upstream):
                if sock is None:
                    continue
                try:
                    self._sel.unregister(sock)
                except (KeyError, ValueError):
                    pass
                if self._mode == "pass":
                    self._sel.register(sock, selectors.EVENT_READ, (pair, sock))
            if self._mode == "pass":
                for sock, data in list(pair.pending.items()):
                    del pair.pending[sock]
                    if sock is pair.upstream:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
                    self._send(pair, sock, bytes(data))

    def _accept(self) -> None:
        try:
            client, _addr = self._listener.accept()
        except BlockingIOError:
            return
        self.accepted += 1
        if self._mode == "cut":
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            return
        client.setblocking(False)
        pair = _Pair(client, None)
        self._pairs.append(pair)
        if self._mode == "pass":
            self._connect_upstream(pair)
            if pair in self._pairs:
                for sock in (pair.client, pair.upstream):
                    assert sock is not None
                    self._sel.register(sock, selectors.EVENT_READ, (pair, sock))

    def _connect_upstream(self, pair: _Pair) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=5.0)
        except OSError:
            self._drop(pair)
            return
        upstream.setblocking(False)
        pair.upstream = upstream

    def _pump(self, pair: _Pair, sock: socket.socket) -> None:
        other = pair.upstream if sock is pair.client else pair.client
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data or other is None:
            self._drop(pair)
            return
        with self._lock:
            marker = self._marker
        if marker is not None and sock is pair.client and marker in data:
            with self._lock:
                self._marker = None
            pair.pending.setdefault(other, bytearray()).extend(data)
            self._mode = "blackhole"
            self._rewatch()
            return
        if sock is pair.client:
            self.bytes_up += len(data)
        else:
            self.bytes_down += len(data)
        self._send(pair, other, data)

    def _send(self, pair: _Pair, other: socket.socket, data: bytes) -> None:
        try:
            # Loopback sockets take database-sized messages at once; a short write
            # blocks briefly rather than reordering bytes.
            other.setblocking(True)
            other.settimeout(5.0)
            other.sendall(data)
            other.setblocking(False)
        except OSError:
            self._drop(pair)

    def _drop(self, pair: _Pair) -> None:
        for sock in (pair.client, pair.upstream):
            if sock is None:
                continue
            try:
                self._sel.unregister(sock)
            except (KeyError, ValueError, AttributeError):
                pass
            sock.close()
        if pair in self._pairs:
            self._pairs.remove(pair)
