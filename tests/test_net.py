"""reclaim.net: connect with deadlines and addressed errors, is_alive against real peers on 127.0.0.1."""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import reclaim
from reclaim import _sites, _track
from reclaim.net import SocketPool, connect, format_address, is_alive


class Server:
    """A TCP server on 127.0.0.1 whose handler decides what each accepted connection gets."""

    def __init__(self, handler: Callable[[socket.socket], None], family: int = socket.AF_INET) -> None:
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.address: tuple[str, int] = self.listener.getsockname()[:2]
        self.handler = handler
        self.accepted: list[socket.socket] = []
        self.ready = threading.Semaphore(0)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: stop
            self.accepted.append(conn)
            self.handler(conn)
            self.ready.release()

    def wait_handled(self) -> None:
        assert self.ready.acquire(timeout=30), "the server never handled the connection"

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(30)
        for conn in self.accepted:
            conn.close()


def silent(conn: socket.socket) -> None:
    """Accept and never answer."""


def closes(conn: socket.socket) -> None:
    conn.close()


def resets(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()


@pytest.fixture
def server_factory() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def make(handler: Callable[[socket.socket], None], family: int = socket.AF_INET) -> Server:
        servers.append(Server(handler, family))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.001)


def test_connect_sets_the_timeout_and_nodelay(server_factory: Callable[..., Server]) -> None:
    server = server_factory(silent)
    with connect(server.address, timeout=2.5) as sock:
        assert sock.gettimeout() == 2.5
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        assert sock.getpeername() == server.address


def test_a_server_that_never_answers_hits_the_read_deadline(server_factory: Callable[..., Server]) -> None:
    server = server_factory(silent)
    with connect(server.address, timeout=0.05) as sock:
        sock.sendall(b"hello?")
        with pytest.raises(TimeoutError):
            sock.recv(10)


def test_a_full_accept_queue_hits_the_connect_deadline_naming_the_address() -> None:
    """A listener that never accepts and whose backlog is full drops SYNs: connect cannot finish."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    queued: list[socket.socket] = []
    try:
        # The first fits in the accept queue: a generous deadline, so a stalled test thread
        # cannot make it the one that times out.
        queued.append(connect(address, timeout=5, connect_timeout=5))
        with pytest.raises(reclaim.ConnectTimeout) as caught:
            for _ in range(8):  # the kernel queues backlog+1 connections; the next one waits
                queued.append(connect(address, timeout=5, connect_timeout=0.05))  # noqa: PERF401
        assert isinstance(caught.value, TimeoutError)
        assert f"127.0.0.1:{address[1]}" in str(caught.value)
    finally:
        for sock in queued:
            sock.close()
        listener.close()


def test_a_refused_connection_keeps_its_type_and_names_the_address() -> None:
    closed_port = socket.socket()
    closed_port.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    try:
        port = closed_port.getsockname()[1]
        with pytest.raises(ConnectionRefusedError, match=f"127.0.0.1:{port}"):
            connect(("127.0.0.1", port), timeout=5)
    finally:
        closed_port.close()


def test_an_unknown_host_names_the_address() -> None:
    with pytest.raises(socket.gaierror, match=re.escape("no-such-host.invalid:80")):
        connect(("no-such-host.invalid", 80), timeout=5)


def test_ipv6_loopback(server_factory: Callable[..., Server]) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        server = server_factory(silent, socket.AF_INET6)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with connect(server.address, timeout=5) as sock:
        assert sock.family == socket.AF_INET6
    assert format_address(server.address).startswith("[::1]:")


def test_unix_socket(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    listener.listen(1)
    try:
        with connect(path, timeout=5) as sock:
            assert sock.family == socket.AF_UNIX and sock.gettimeout() == 5
        with pytest.raises(FileNotFoundError, match=f"unix:{tmp_path}") as missing:
            connect(tmp_path / "missing.sock", timeout=5)
        assert "for TCP" not in str(missing.value)
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("given", "tcp"), [("127.0.0.1:8080", "('127.0.0.1', 8080)"), ("[::1]:80", "('::1', 80)")]
)
def test_a_tcp_address_given_as_one_string_says_how_to_give_it(
    given: str, tcp: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A str is a Unix socket's path: "host:port" is a missing file, and the error says so."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as missing:
        connect(given, timeout=5)
    hint = f"(connecting to unix:{given}; a str is a Unix socket's path, for TCP give (host, port): {tcp})"
    assert str(missing.value).endswith(hint)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1.5}, "timeout"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": 1, "connect_timeout": -1}, "connect_timeout"),
    ],
)
def test_timeouts_out_of_range_are_a_value_error_naming_them(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=rf"connect\({name}=\.\.\.\) must be a finite number of seconds > 0"):
        connect(("127.0.0.1", 9), **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"timeout": "2"}, "timeout"),
        ({"timeout": None}, "timeout"),
        ({"timeout": True}, "timeout"),
        ({"timeout": 1, "connect_timeout": "1"}, "connect_timeout"),
    ],
)
def test_timeouts_of_the_wrong_type_are_a_type_error_naming_them(
    kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(
        TypeError, match=rf"connect\({name}=\.\.\.\) must be a number of seconds \(int or float\)"
    ):
        connect(("127.0.0.1", 9), **kwargs)  # type: ignore[arg-type]


def test_a_non_bool_nodelay_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"connect\(nodelay=\.\.\.\) must be a bool"):
        connect(("127.0.0.1", 9), timeout=1, nodelay=1)  # type: ignore[arg-type]


def test_a_bad_address_is_refused() -> None:
    with pytest.raises(TypeError, match="address"):
        connect(("127.0.0.1", "80"), timeout=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address"):
        connect(("127.0.0.1", True), timeout=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="address"):
        connect(80, timeout=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="port 70000"):
        connect(("127.0.0.1", 70000), timeout=1)


# --- is_alive -------------------------------------------------------------------------------


def test_is_alive_of_something_not_a_socket_names_the_argument() -> None:
    with pytest.raises(TypeError, match=r"is_alive\(sock\) needs a socket.socket, got NoneType"):
        is_alive(None)  # type: ignore[arg-type]


def test_an_idle_connection_is_alive(server_factory: Callable[..., Server]) -> None:
    server = server_factory(silent)
    with connect(server.address, timeout=5) as sock:
        server.wait_handled()
        assert is_alive(sock)


def test_waiting_data_is_alive_and_not_consumed(server_factory: Callable[..., Server]) -> None:
    server = server_factory(lambda conn: conn.sendall(b"hello"))
    with connect(server.address, timeout=5) as sock:
        server.wait_handled()
        wait_until(lambda: sock.recv(5, socket.MSG_PEEK) == b"hello", "the greeting")
        assert is_alive(sock)
        assert sock.recv(5) == b"hello"


@pytest.mark.parametrize("handler", [closes, resets], ids=["peer-closed", "peer-reset"])
def test_a_closed_or_reset_connection_is_not_alive(
    server_factory: Callable[..., Server], handler: Callable[[socket.socket], None]
) -> None:
    def after_hello(conn: socket.socket) -> None:
        # Reset only once the client is surely connected: a reset racing the handshake makes
        # connect() itself fail with ECONNRESET, which is right but not what this test checks.
        conn.recv(1)
        handler(conn)

    server = server_factory(after_hello)
    with connect(server.address, timeout=5) as sock:
        sock.sendall(b"!")
        server.wait_handled()
        wait_until(lambda: not is_alive(sock), "the peer's close to arrive")
        assert not is_alive(sock)


def test_a_socket_closed_locally_is_not_alive(server_factory: Callable[..., Server]) -> None:
    server = server_factory(silent)
    sock = connect(server.address, timeout=5)
    sock.close()
    assert not is_alive(sock)


def test_is_alive_does_not_block_on_a_socket_with_a_long_timeout(
    server_factory: Callable[..., Server],
) -> None:
    """With nothing to read, is_alive must return at once (the test timeout would catch a hang)."""
    server = server_factory(silent)
    with connect(server.address, timeout=3600) as sock:
        for _ in range(1000):
            assert is_alive(sock)


def test_they_are_exported_from_the_package() -> None:
    assert reclaim.connect is connect and reclaim.is_alive is is_alive


# --- SocketPool -----------------------------------------------------------------------------


def echo(conn: socket.socket) -> None:
    """Echo everything back until the client closes, in a thread of its own."""

    def run() -> None:
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass

    threading.Thread(target=run, daemon=True).start()


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    return sock.recv(len(payload))


def test_the_pool_reuses_a_live_connection(server_factory: Callable[..., Server]) -> None:
    server = server_factory(echo)
    with SocketPool(server.address, timeout=5, max_size=2) as pool:
        with pool.acquire() as sock:
            assert round_trip(sock) == b"ping"
            first = sock
        with pool.acquire() as sock:
            assert sock is first and round_trip(sock) == b"ping"
        stats = pool.statistics()
        assert (stats.created, stats.acquired, stats.discarded_by_check) == (1, 2, 0)
        assert "sockets to 127.0.0.1:" in stats.name
    assert first.fileno() == -1, "closing the pool closes its sockets"


@pytest.mark.parametrize("handler", [closes, resets], ids=["peer-closed", "peer-reset"])
def test_a_connection_the_peer_dropped_while_idle_is_replaced(
    server_factory: Callable[..., Server], handler: Callable[[socket.socket], None]
) -> None:
    server = server_factory(echo)
    with SocketPool(server.address, timeout=5) as pool:
        with pool.acquire() as sock:
            assert round_trip(sock) == b"ping"
            first = sock
        server.wait_handled()
        peer = server.accepted[0]
        peer.shutdown(socket.SHUT_RD)  # wakes the echo thread's recv, so close() acts at once
        handler(peer)
        wait_until(lambda: not is_alive(first), "the peer's close to arrive")
        with pool.acquire() as sock:
            assert sock is not first
            assert round_trip(sock) == b"ping"
        assert first.fileno() == -1
        assert pool.statistics().discarded_by_check == 1


def test_a_deadline_hit_inside_the_block_discards_the_connection(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(silent)
    with SocketPool(server.address, timeout=0.05) as pool:
        with pytest.raises(TimeoutError), pool.acquire() as sock:
            sock.sendall(b"hello?")
            sock.recv(10)
        assert sock.fileno() == -1
        assert pool.statistics().discarded_broken == 1
        with pool.acquire() as other:
            assert other is not sock


def test_a_connection_returned_with_unread_data_is_not_reused(
    server_factory: Callable[..., Server],
) -> None:
    server = server_factory(echo)
    with SocketPool(server.address, timeout=5) as pool:
        with pool.acquire() as sock:
            sock.sendall(b"unanswered")
            wait_until(lambda: sock.recv(10, socket.MSG_PEEK) == b"unanswered", "the echo")
        assert sock.fileno() == -1
        with pool.acquire() as other:
            assert round_trip(other) == b"ping"


def test_the_timeout_is_restored_on_return(server_factory: Callable[..., Server]) -> None:
    server = server_factory(echo)
    with SocketPool(server.address, timeout=5) as pool:
        with pool.acquire() as sock:
            sock.settimeout(None)
        with pool.acquire() as again:
            assert again is sock and again.gettimeout() == 5


def test_a_lease_is_tracked_like_any_lease(server_factory: Callable[..., Server]) -> None:
    server = server_factory(echo)
    seen: list[tuple[str, str]] = []
    released: list[object] = []
    before = (_track.on_acquire, _track.on_release)

    # Pass everything on to the hooks already installed (the suite's own leak checker), which
    # must see the pool's and the lease's release as well.
    def on_acquire(kind: str, obj: object, text: str, site: _sites.Site) -> None:
        seen.append((kind, text))
        if before[0] is not None:
            before[0](kind, obj, text, site)

    def on_release(obj: object) -> None:
        released.append(obj)
        if before[1] is not None:
            before[1](obj)

    _track.install(on_acquire, on_release)
    try:
        with SocketPool(server.address, timeout=5, name="echo") as pool:
            lease = pool.acquire()
            assert ("lease", "lease of pool 'echo'") in seen
            lease.release()
            assert lease in released
    finally:
        _track.install(*before)


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": "2"}, TypeError, r"SocketPool\(timeout=...\) must be a number"),
        ({"timeout": 1, "connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"timeout": 1, "connect_timeout": "1"}, TypeError, "connect_timeout"),
        ({"timeout": 1, "nodelay": "yes"}, TypeError, "nodelay"),
        ({"timeout": 1, "check": is_alive}, TypeError, "check"),
        ({"timeout": 1, "max_size": 0}, ValueError, "max_size"),
        ({"timeout": 1, "reset": 3}, TypeError, r"SocketPool\(reset=...\) must be callable"),
        ({"timeout": 1, "is_broken": "yes"}, TypeError, r"SocketPool\(is_broken=...\) must be callable"),
    ],
)
def test_bad_pool_options_are_refused_naming_them(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        SocketPool(("127.0.0.1", 9), **kwargs)  # type: ignore[arg-type]


def test_the_pool_is_exported_from_the_package() -> None:
    assert reclaim.SocketPool is SocketPool


def test_socket_pool_names_itself_for_an_unknown_option() -> None:
    with pytest.raises(
        TypeError,
        match=r"^SocketPool\(\) got an unexpected keyword argument 'max_sise'; did you mean max_size=",
    ):
        SocketPool(("127.0.0.1", 9), timeout=1.0, max_sise=1)
