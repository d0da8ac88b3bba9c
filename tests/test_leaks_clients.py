"""HTTP clients that own sockets (aiohttp, httpx): one left unclosed is reported at the line that
made it, holding its sockets, not as each socket at the request that opened it.

The server is a child process (HTTP/1.1, keep-alive), so the only resources in this process
are the client's: a client keeps its connection in its pool, which is how it leaks it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import subprocess
import sys
import textwrap
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import LEAN, Watch, ignore_gc_warnings, leakwatch, line, reclaim_run_json
from reclaim.leaks import Leak, Report

__all__ = ["leakwatch"]  # the fixture, imported for pytest

aiohttp = pytest.importorskip("aiohttp")
pytest.importorskip("aiohttp.web")
httpx = pytest.importorskip("httpx")

pytest_plugins = ["pytester"]

SERVER = """\
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Hello(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the client pools its connection

    def do_GET(self):
        # /big: more than the sockets' buffers hold, so a response never read stays unfinished
        body = b"x" * 8_000_000 if self.path == "/big" else b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client went away unread
            pass

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Hello)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    """The URL of an HTTP/1.1 server in a child process, for the module's tests."""
    child = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        yield f"http://127.0.0.1:{port}/"
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


class Explain:
    """Every record since the mark, how a client was tracked when made, and what each dying
    holder's bookkeeping decided (its record, whether it counted as closed, what it held): the
    message of assertions that failed now and then in CI (a dropped client reported as nothing,
    or its socket alone) and never where they could be looked at."""

    def __init__(self, watch: Watch, trace: list[str]) -> None:
        self.watch = watch
        self.trace = trace

    def made(self, client: object) -> None:
        """Note how *client* is tracked, just made."""
        from reclaim.leaks import _records

        rec = _records.live.get(id(client))
        cls = type(client)
        finalizer = getattr(getattr(cls, "__del__", None), "__code__", None)
        self.trace.append(
            f"made {cls.__module__}.{cls.__qualname__} (module {id(sys.modules.get(cls.__module__)):#x}): "
            f"record {None if rec is None else (rec.kind, rec.state, rec.why, rec() is client)}, "
            f"__del__ from {None if finalizer is None else finalizer.co_filename}"
        )

    def __call__(self) -> str:
        return "\n".join([*self.watch.records(), *self.trace])


@pytest.fixture
def explain(leakwatch: Watch, monkeypatch: pytest.MonkeyPatch) -> Explain:
    """An :class:`Explain` for the test, tracing each holder's _dies()."""
    from reclaim.leaks import _holders, _records

    trace = [f"making at start: {getattr(_holders._making, 'holder', None)!r}"]
    dies = _holders._dies

    def traced(obj: object, kind: str) -> None:
        rec = _records.live.get(id(obj)) or _records.dying.get(id(obj))
        before = None if rec is None else (rec.state, rec() is obj)
        closed = None if rec is None else _holders._closed(obj, rec)
        try:
            dies(obj, kind)
        finally:
            after = None if rec is None else (rec.state, [(held.kind, held.state) for held in rec.info[3]])
            trace.append(f"_dies({kind}): record {before} closed={closed} -> {after}")

    monkeypatch.setattr(_holders, "_dies", traced)
    return Explain(leakwatch, trace)


def assert_at(leak: Leak, lineno: int) -> None:
    assert leak.site is not None, leak
    assert (leak.site.filename, leak.site.lineno) == (__file__, lineno), leak.headline()


def opened_at(held: Leak) -> list[int]:
    """The lines of this file that led to the held socket (the request)."""
    return [frame.lineno for frame in held.frames if frame.filename == __file__]


class Cycle:
    """An object that keeps itself alive: what it holds goes only with the garbage collector."""

    def __init__(self) -> None:
        self.itself: Cycle | None = self
        self.held: Any = None


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_aiohttp_session_left_open_is_reported_at_its_line_holding_its_socket(
    leakwatch: Watch, url: str
) -> None:
    """One entry, the session, at the line that made it; its socket is listed under it with the
    request's line, not reported on its own."""

    async def use() -> tuple[Any, int, int]:
        session = aiohttp.ClientSession()
        made = line() - 1
        async with session.get(url) as response:
            await response.read()
        return session, made, line() - 2

    loop = asyncio.new_event_loop()
    try:
        session, made, request = loop.run_until_complete(use())
        assert [leak.kind for leak in leakwatch.leaks() if leak.kind != "eventloop"] == ["aiohttp"]
        leak = leakwatch.one("aiohttp")
        assert_at(leak, made)
        assert leak.state == "open"
        assert leak.description.startswith("aiohttp.ClientSession not closed")
        [held] = leak.holds
        assert held.kind == "socket" and held.state == "open"
        assert request in opened_at(held)
        loop.run_until_complete(session.close())
    finally:
        loop.close()
    del session
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("cycle", [False, True], ids=["dropped", "in-a-cycle"])
def test_aiohttp_session_dropped_unclosed_is_collected_at_its_line(
    leakwatch: Watch, url: str, cycle: bool, explain: Explain
) -> None:
    """Dropped, or in a reference cycle collected once its loop is closed (the collector then
    clears its socket's weak reference before the session's ``__del__`` runs)."""
    lines: list[int] = []

    async def use() -> None:
        keeper = Cycle()
        keeper.held = aiohttp.ClientSession()
        lines.append(line() - 1)
        explain.made(keeper.held)
        async with keeper.held.get(url) as response:
            await response.read()
        lines.append(line() - 2)
        if not cycle:
            keeper.itself = None

    asyncio.run(use())
    gc.collect()
    made, request = lines
    # The socket was reported alone twice in three sessions' runs (3.12), never since: explain.
    assert [leak.kind for leak in leakwatch.leaks()] == ["aiohttp"], explain()
    leak = leakwatch.one("aiohttp")
    assert_at(leak, made)
    assert leak.state == "collected"
    [held] = leak.holds
    assert held.kind == "socket" and held.state == "collected"
    assert request in opened_at(held)


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("how", ["left-open", "dropped", "in-a-cycle"])
def test_httpx_client_not_closed_is_reported_at_its_line_holding_its_socket(
    leakwatch: Watch, url: str, how: str, explain: Explain
) -> None:
    """httpx's clients have no ``__del__`` of their own: its sockets die with them."""
    keeper = Cycle()
    keeper.held = httpx.Client()
    made = line() - 1
    explain.made(keeper.held)
    keeper.held.get(url).read()
    request = line() - 1
    if how != "left-open":
        if how == "dropped":
            keeper.itself = None
        del keeper
        gc.collect()
    assert [leak.kind for leak in leakwatch.leaks()] == ["httpx"], explain()
    leak = leakwatch.one("httpx")
    assert_at(leak, made)
    assert leak.state == ("open" if how == "left-open" else "collected")
    assert leak.description.startswith("httpx.Client not closed")
    [held] = leak.holds
    assert held.kind == "socket" and held.state == leak.state
    assert request in opened_at(held)
    if how == "left-open":
        keeper.held.close()
        assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpx_async_client_dropped_is_reported_at_its_line(leakwatch: Watch, url: str) -> None:
    lines: list[int] = []

    async def use() -> None:
        client = httpx.AsyncClient()
        lines.append(line() - 1)
        await (await client.get(url)).aread()

    asyncio.run(use())
    gc.collect()
    leak = leakwatch.one("httpx")
    assert_at(leak, lines[0])
    assert leak.description.startswith("httpx.AsyncClient not closed")
    assert [held.kind for held in leak.holds] == ["socket"]
    assert [leak.kind for leak in leakwatch.leaks()] == ["httpx"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("made_by", ["pool", "transport"])
def test_httpcore_pool_not_closed_is_reported_at_its_line_holding_its_socket(
    leakwatch: Watch, url: str, made_by: str
) -> None:
    """An httpcore pool the program makes (itself, or through an ``httpx.HTTPTransport``) keeps
    its connections as an httpx client does: it is the entry, at its line, not the socket at
    httpcore's line that connected it."""
    import httpcore

    if made_by == "pool":
        pool = httpcore.ConnectionPool()
        made = line() - 1
        pool.request("GET", url)
        request = line() - 1
    else:
        pool = httpx.HTTPTransport()
        made = line() - 1
        pool.handle_request(httpx.Request("GET", url)).read()
        request = line() - 1
    assert [leak.kind for leak in leakwatch.leaks()] == ["httpcore"]
    leak = leakwatch.one("httpcore")
    assert_at(leak, made)
    assert leak.description.startswith("httpcore.ConnectionPool not closed (close(), or a with-block)")
    [held] = leak.holds
    assert held.kind == "socket" and request in opened_at(held)
    pool.close()
    assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpcore_async_pool_dropped_is_reported_at_its_line(leakwatch: Watch, url: str) -> None:
    import httpcore

    lines: list[int] = []

    async def use() -> None:
        pool = httpcore.AsyncConnectionPool()
        lines.append(line() - 1)
        await pool.request("GET", url)

    asyncio.run(use())
    gc.collect()
    leak = leakwatch.one("httpcore")
    assert_at(leak, lines[0])
    assert leak.description.startswith("httpcore.AsyncConnectionPool not closed")
    assert leak.state == "collected" and [held.kind for held in leak.holds] == ["socket"]
    assert [leak.kind for leak in leakwatch.leaks()] == ["httpcore"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_httpx_client_handed_a_transport_is_the_one_entry(leakwatch: Watch, url: str) -> None:
    """The client closes the transport it is handed: its pool is part of the client."""
    client = httpx.Client(transport=httpx.HTTPTransport(retries=1))
    made = line() - 1
    client.get(url).read()
    assert [leak.kind for leak in leakwatch.leaks()] == ["httpx"]
    leak = leakwatch.one("httpx")
    assert_at(leak, made)
    assert leak.description.startswith("httpx.Client not closed")
    assert [held.kind for held in leak.holds] == ["socket"]
    client.close()
    assert leakwatch.leaks() == []


class WSGIApp:
    """A WSGI app that keeps a socket of its own (as an app keeps the database pool its lifespan opened)."""

    def __init__(self) -> None:
        self.sock = socket.socket()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_app_socket_under_an_in_process_httpx_client_is_the_apps_not_the_clients(leakwatch: Watch) -> None:
    """A client whose transport calls an app in this process (Starlette's ``TestClient``, which
    its with-block leaves unclosed) opens no socket: what the app leaks is reported at its line."""
    app = WSGIApp()
    made = line() - 1
    client = httpx.Client(transport=httpx.WSGITransport(app=app), base_url="http://app")
    assert client.get("/").text == "ok"
    assert [leak.kind for leak in leakwatch.leaks()] == ["socket"]
    assert made in opened_at(leakwatch.one("socket"))
    client.close()
    app.sock.close()
    assert leakwatch.leaks() == []


def test_clients_closed_by_the_program_are_not_reported(leakwatch: Watch, url: str) -> None:
    """``async with``, ``close()``, ``aiohttp.request()`` and httpx's with-blocks leave nothing."""

    async def use() -> None:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            await response.read()
        session = aiohttp.ClientSession()
        await (await session.get(url)).read()
        await session.close()
        async with aiohttp.request("GET", url) as response:
            await response.read()
        async with httpx.AsyncClient() as client:
            await client.get(url)

    asyncio.run(use())
    with httpx.Client() as sync_client:
        sync_client.get(url)
    sync_client = httpx.Client()
    sync_client.get(url)
    sync_client.close()
    del sync_client
    gc.collect()
    assert leakwatch.leaks() == []


#: Turns of an event loop that are plenty for the callbacks closing a transport to run.
_TURNS = 50


def test_a_client_holding_no_socket_is_not_reported(leakwatch: Watch, url: str) -> None:
    """Never used, or its connection closed after the response: it owns no descriptor (aiohttp's
    own warning still says the session was not closed)."""

    async def use() -> Any:
        idle = aiohttp.ClientSession()
        session = aiohttp.ClientSession()
        async with session.get(url, headers={"Connection": "close"}) as response:
            await response.read()
        return idle, session

    loop = asyncio.new_event_loop()
    try:
        kept = loop.run_until_complete(use())
        # The response's "Connection: close" has aiohttp close the transport, whose socket closes
        # in a callback the close scheduled: the loop stopped before running it, at times.
        for _ in range(_TURNS):
            if [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]:
                break
            loop.run_until_complete(asyncio.sleep(0))  # one turn of the loop: its callbacks run
        unused = httpx.Client()
        assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
        del unused
        assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
        for session in kept:
            loop.run_until_complete(session.close())
    finally:
        loop.close()
    del kept, session
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_connector_the_session_does_not_own_is_its_own_entry(leakwatch: Watch, url: str) -> None:
    """``connector_owner=False``: closing the session leaves the connector's sockets open, so the
    connector is the entry, at its line; the session that owns its connector is the entry when
    neither is closed."""
    lines: list[int] = []

    async def use() -> tuple[Any, Any]:
        shared = aiohttp.TCPConnector()
        lines.append(line() - 1)
        async with aiohttp.ClientSession(connector=shared, connector_owner=False) as session:
            await (await session.get(url)).read()
        owned = aiohttp.TCPConnector()
        session = aiohttp.ClientSession(connector=owned)
        lines.append(line() - 1)
        await (await session.get(url)).read()
        return shared, session

    loop = asyncio.new_event_loop()
    try:
        shared, session = loop.run_until_complete(use())
        found = [leak for leak in leakwatch.leaks() if leak.kind != "eventloop"]
        assert [leak.description.split(" ", 1)[0] for leak in found] == [
            "aiohttp.TCPConnector",
            "aiohttp.ClientSession",
        ]
        for leak, made in zip(found, lines, strict=True):
            assert_at(leak, made)
            assert [held.kind for held in leak.holds] == ["socket"]
        loop.run_until_complete(shared.close())
        loop.run_until_complete(session.close())
    finally:
        loop.close()
    del shared, session
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_filters_apply_to_what_a_client_holds(leakwatch: Watch, url: str) -> None:
    """An ignored kind or description among its sockets takes the client out with its last one;
    the report lists them under it, in text and JSON."""
    client = httpx.Client()
    made = line() - 1
    client.get(url).read()
    request = line() - 1
    try:
        assert leakwatch.leaks(ignore_kinds={"socket"}) == []
        assert leakwatch.leaks(ignore=r"127\.0\.0\.1") == []
        assert leakwatch.leaks(ignore_kinds={"httpx"}) == []
        report = Report(tuple(leakwatch.leaks()))
        text = report.to_text(width=300)
        here = Path(__file__).name
        assert "httpx.Client not closed (close(), or a with-block)\n  acquired at " in text
        assert f"{here}:{made} in test_filters_apply_to_what_a_client_holds\n" in text
        assert "\n  holds socket AF_INET/SOCK_STREAM " in text
        assert (
            f"{here}:{request} in test_filters_apply_to_what_a_client_holds\n"
            in text.split(", opened at ")[1]
        )
        [data] = report.to_json()["leaks"]
        assert data["kind"] == "httpx" and data["frames"][0]["line"] == made
        assert [held["kind"] for held in data["holds"]] == ["socket"]
        assert report.leaks[0].headline().endswith("; holds 1 socket")
    finally:
        client.close()


def test_reclaim_run_reports_the_session_at_its_line(tmp_path: Path, url: str) -> None:
    """The brief's case end to end: the report points at ``ClientSession()``, not the request."""
    source = textwrap.dedent(
        f"""\
        import asyncio, warnings
        import aiohttp
        warnings.simplefilter("ignore", ResourceWarning)

        async def fetch():
            session = aiohttp.ClientSession()
            async with session.get({url!r}) as response:
                return await response.read()

        asyncio.run(fetch())
        """
    )
    report, stderr = reclaim_run_json(tmp_path, source)
    [leak] = report["leaks"]
    assert (leak["kind"], leak["state"]) == ("aiohttp", "collected")
    assert leak["frames"][0]["line"] == 6
    [held] = leak["holds"]
    assert held["kind"] == "socket" and 7 in [frame["line"] for frame in held["frames"]]
    assert "prog.py:6 in fetch" in stderr and ", opened at prog.py:7 in fetch" in stderr


def test_pytest_plugin_fails_the_test_at_the_session_line(pytester: pytest.Pytester, url: str) -> None:
    """``pytest --reclaim``: the test's failure points at ``ClientSession()``; allowing its
    sockets (``kind="socket"``) allows the session holding them."""
    pytester.makepyfile(
        test_client=f"""
        import asyncio
        import aiohttp
        import pytest

        async def fetch():
            session = aiohttp.ClientSession()
            async with session.get({url!r}) as response:
                return await response.read()

        @pytest.mark.filterwarnings("ignore::ResourceWarning")
        def test_leaks():
            asyncio.run(fetch())

        @pytest.mark.filterwarnings("ignore::ResourceWarning")
        @pytest.mark.reclaim_allow(kind="socket")
        def test_allowed():
            asyncio.run(fetch())
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*aiohttp.ClientSession not closed*",
            "*acquired at test_client.py:6 in fetch",
            "*holds socket AF_INET/SOCK_STREAM*, opened at test_client.py:7 in fetch",
        ]
    )


# -- requests ---------------------------------------------------------------------------------


def test_a_pool_only_a_captured_log_records_traceback_keeps_is_not_the_tests_leak(
    pytester: pytest.Pytester, url: str
) -> None:
    """pytest keeps a test's log records until its teardown ends, after the check: an exception
    logged (urllib3 logs the error it retries after) keeps its traceback's frames, the test's
    among them, and their locals. A urllib3 pool ``clear()`` dropped, which urllib3 closes once
    nothing references it, was reported open, held by the test's ``response``."""
    pytest.importorskip("urllib3")
    pytester.makepyfile(
        test_logged=f"""
        import logging
        import urllib3

        def test_logs_an_error():
            manager = urllib3.PoolManager()
            response = manager.request("GET", {url!r})  # its pool keeps the socket
            try:
                raise ConnectionResetError("retried")
            except ConnectionResetError as exc:
                logging.getLogger("client").warning("retrying after %r", exc)
            manager.clear()  # the pool is dropped: urllib3 closes it once unreachable
            assert response.data == b"ok"
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim")
    result.assert_outcomes(passed=1)


def test_what_only_a_failed_tests_traceback_keeps_is_judged_once_pytest_lets_it_go(
    pytester: pytest.Pytester, url: str
) -> None:
    """pytest keeps a failed test's exception (``sys.last_value``), its frames and their locals,
    until the next test's call. A urllib3 pool the failing test dropped, which urllib3 closes
    once nothing references it, was reported open as that test's leak (urllib3's proxy tests).
    A socket the failing test never closed is still its leak, once the collector closed it; one
    the last test's failure still holds at the end is shown held by it."""
    pytest.importorskip("urllib3")
    pytester.makepyfile(
        test_failing=f"""
        import socket
        import urllib3

        def test_fails_after_dropping_its_pool():
            manager = urllib3.PoolManager()
            response = manager.request("GET", {url!r})  # its pool keeps the socket
            manager.clear()  # the pool is dropped: urllib3 closes it once unreachable
            assert response.data == b"not ok"

        def test_fails_with_a_socket_open():
            sock = socket.socket()
            assert sock is None

        def test_passes():
            pass

        def test_fails_last_with_a_socket_open():
            sock = socket.socket()
            assert sock is None
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "-p", "no:randomly", "--reclaim")
    result.assert_outcomes(passed=1, failed=3)
    out = result.stdout.str()
    assert "ERROR" not in out and "urllib3" not in out.split("leaks found after their test ended")[-1], out
    result.stdout.fnmatch_lines(
        [
            "*reclaim: leaks found after their test ended*",
            "acquired by test_failing.py::test_fails_with_a_socket_open:",
            "socket AF_INET/SOCK_STREAM (fd *) (closed by the garbage collector, not the program)",
            "  acquired at test_failing.py:11 in test_fails_with_a_socket_open",
            "*",
            "held by the traceback pytest keeps of the failed test (kept from "
            "test_failing.py::test_fails_last_with_a_socket_open):",
            "socket AF_INET/SOCK_STREAM (fd *)",
            "  acquired at test_failing.py:18 in test_fails_last_with_a_socket_open",
        ]
    )


#: library -> (class, how it is closed): clients that pool urllib3 connections.
URLLIB3_CLIENTS = {"requests": ("Session", "close"), "urllib3": ("PoolManager", "clear")}


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["left-open", "dropped"])
@pytest.mark.parametrize("library", list(URLLIB3_CLIENTS))
def test_requests_session_or_urllib3_manager_not_closed_is_reported_at_its_line_holding_its_socket(
    leakwatch: Watch, url: str, dropped: bool, library: str, explain: Explain
) -> None:
    """One entry, the client, at the line that made it, its pooled socket under it: dropped
    unclosed, the socket is closed by the ``weakref.finalize`` callback urllib3 gives its pool,
    which no ``__del__`` frame shows, yet the collector's doing (a ``PoolManager`` so dropped
    was not reported at all)."""
    name, close = URLLIB3_CLIENTS[library]
    client = getattr(pytest.importorskip(library), name)()
    made = line() - 1
    explain.made(client)
    assert getattr(client.request("GET", url), "content" if library == "requests" else "data") == b"ok"
    request = line() - 1
    if dropped:
        del client
    assert [leak.kind for leak in leakwatch.leaks()] == [library], explain()
    leak = leakwatch.one(library)
    assert_at(leak, made)
    assert leak.description.startswith(f"{library}.{name} not closed ({close}(), or a with-block)")
    assert leak.state == ("collected" if dropped else "open")
    [held] = leak.holds
    assert held.kind == "socket" and held.state == leak.state
    assert request in opened_at(held)
    if not dropped:
        getattr(client, close)()
        assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_requests_session_its_owner_closes_only_in_its_del_is_the_collectors(
    leakwatch: Watch, url: str
) -> None:
    """google-auth's ``Request()`` makes a session and closes it only in its ``__del__``: dropped,
    its session's close() read as the program's, and the socket it kept went unreported."""
    requests = pytest.importorskip("requests")

    class Request:
        def __init__(self) -> None:
            self.session = requests.Session()

        def __del__(self) -> None:
            self.session.close()

    def fetch() -> None:
        assert Request().session.get(url).content == b"ok"

    fetch()
    [leak] = leakwatch.leaks()
    assert leak.kind == "requests" and leak.state == "collected"
    assert [held.kind for held in leak.holds] == ["socket"]


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("dropped", [False, True], ids=["left-open", "dropped"])
def test_a_requests_session_with_an_adapter_mounted_is_one_entry_at_its_line(
    leakwatch: Watch, url: str, dropped: bool
) -> None:
    """``s.mount("http://", HTTPAdapter(max_retries=3))``: the adapter, made apart from the
    session, made its own urllib3 PoolManager, which was the entry, at the adapter's line, with
    ``clear()`` as the fix (httpie's sessions). The session owns it once mounted: closing the
    session closes it."""
    requests = pytest.importorskip("requests")
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    made = line() - 1
    session.mount("http://", HTTPAdapter(max_retries=3))
    assert session.get(url).content == b"ok"
    request = line() - 1
    if dropped:
        del session
    [leak] = leakwatch.leaks()
    assert leak.kind == "requests" and leak.state == ("collected" if dropped else "open")
    assert_at(leak, made)
    [held] = leak.holds
    assert held.kind == "socket" and request in opened_at(held)
    if not dropped:
        session.close()
        assert leakwatch.leaks() == []


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("library", list(URLLIB3_CLIENTS))
def test_a_client_dropped_after_a_collection_closed_another_clients_pool_still_holds_its_socket(
    leakwatch: Watch, url: str, library: str
) -> None:
    """A collection runs urllib3's callback for a pool dropped in a cycle and notes the queue it
    was given, by id. A client dropped by its last reference later, with no collection between,
    may have its own pool's queue at that address (the allocator reuses it; Python 3.13 collects
    less often): its search stopped there, and it was reported as nothing, its socket as
    released (the flaky [dropped] tests). Simulated by noting the new queue's address."""
    from reclaim import _sites
    from reclaim.leaks import _holders

    name = URLLIB3_CLIENTS[library][0]
    cycle = Cycle()
    cycle.held = getattr(pytest.importorskip(library), name)()
    cycle.held.request("GET", url)
    del cycle
    gc.collect()  # the first client's pool closed by its callback, in a collection
    client = getattr(pytest.importorskip(library), name)()
    made = line() - 1
    client.request("GET", url)
    adapters = client.adapters.values() if library == "requests" else [client]
    pools = [
        pool
        for adapter in adapters
        for pool in getattr(adapter, "poolmanager", adapter).pools._container.values()
    ]
    [queue] = [pool.pool for pool in pools]
    _holders._finalized[id(queue)] = (weakref.ref(Cycle()), [])  # a dead argument at its address
    _holders._finalized_in = _sites.collections
    del client
    assert sorted(leak.kind for leak in leakwatch.leaks()) == [library, library]
    leak = [leak for leak in leakwatch.leaks() if leak.site is not None and leak.site.lineno == made]
    assert [held.kind for held in leak[0].holds] == ["socket"]


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("library", list(URLLIB3_CLIENTS))
def test_requests_session_or_urllib3_manager_dropped_while_a_response_keeps_its_pool_is_one_entry(
    leakwatch: Watch, url: str, library: str, explain: Explain
) -> None:
    """The client dies unclosed, its socket listed under it, while a response it returned keeps
    its pool, and so the socket, open: that descriptor was reported a second time, as untracked
    (a reference cycle holding the response did the same until a collection, a flaky test)."""
    name = URLLIB3_CLIENTS[library][0]
    client = getattr(pytest.importorskip(library), name)()
    explain.made(client)
    response = client.request("GET", url)
    assert getattr(response, "content" if library == "requests" else "data") == b"ok"
    del client
    assert [leak.kind for leak in leakwatch.leaks()] == [library], explain()
    [held] = leakwatch.one(library).holds
    assert held.kind == "socket"
    del response
    gc.collect()
    assert [leak.kind for leak in leakwatch.leaks()] == [library]


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("library", list(URLLIB3_CLIENTS))
def test_requests_session_or_urllib3_manager_dropped_in_a_reference_cycle_holds_its_socket(
    leakwatch: Watch, url: str, library: str
) -> None:
    """Dropped in a cycle, the client's pooled socket is closed by urllib3's ``weakref.finalize``
    callback, which the collector runs before any ``__del__``: that close is the collector's
    doing too (it was not reported), and the socket, out of the pool by the time the client's
    ``__del__`` runs, is still listed under the client."""
    name = URLLIB3_CLIENTS[library][0]
    cycle = Cycle()
    cycle.held = getattr(pytest.importorskip(library), name)()
    made = line() - 1
    assert getattr(cycle.held.request("GET", url), "content" if library == "requests" else "data") == b"ok"
    request = line() - 1
    del cycle
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == (library, "collected"), leak.headline()
    assert_at(leak, made)
    [held] = leak.holds
    assert (held.kind, held.state) == ("socket", "collected") and request in opened_at(held)


def test_urllib3_request_and_a_sessions_own_manager_are_not_entries_of_their_own(
    leakwatch: Watch, url: str
) -> None:
    """``urllib3.request()`` pools in urllib3's module-level manager, made at its import: urllib3's
    machinery, which closes it at exit, so neither it nor the socket it keeps is a leak (the
    socket was the test's). A session's managers are parts of the session."""
    urllib3 = pytest.importorskip("urllib3")
    requests = pytest.importorskip("requests")
    assert urllib3.request("GET", url).data == b"ok"
    assert leakwatch.leaks() == []
    with requests.Session() as session:
        session.get(url)
        assert [leak.kind for leak in leakwatch.leaks()] == ["requests"]
    assert leakwatch.leaks() == []


def test_urllib3_request_is_not_a_leak_when_urllib3_was_imported_before_tracking(
    tmp_path: Path, url: str
) -> None:
    """urllib3's module-level manager, made before the tracker started, is still urllib3's."""
    pytest.importorskip("urllib3")
    source = f"""\
        import urllib3
        from reclaim.leaks import no_leaks

        with no_leaks(grace=0):
            urllib3.request("GET", {url!r})
        with no_leaks(grace=0):
            kept = urllib3.PoolManager()
            kept.request("GET", {url!r})
        """
    (tmp_path / "prog.py").write_text(textwrap.dedent(source), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "prog.py"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 1, out.stderr
    assert "LeakError: 1 leak: 1 urllib3\nurllib3.PoolManager not closed" in out.stderr, out.stderr
    assert "acquired at prog.py:7 in <module>" in out.stderr and "prog.py:5" not in out.stderr


def test_urllib3_pools_dropped_by_clear_or_eviction_are_not_reported(leakwatch: Watch, url: str) -> None:
    """urllib3 releases a pool by dropping it (``clear()``, or evicting the oldest from a full
    ``PoolManager``): its finalize callback then closes the sockets, for the program."""
    urllib3 = pytest.importorskip("urllib3")
    manager = urllib3.PoolManager(num_pools=1)
    for host in ("127.0.0.1", "localhost", "127.0.0.1"):  # each pool evicts the one before
        assert manager.request("GET", url.replace("127.0.0.1", host)).data == b"ok"
    manager.clear()
    with urllib3.PoolManager() as manager:
        manager.request("GET", url)
    gc.collect()
    assert leakwatch.leaks() == []


def test_urllib3_pools_dropped_by_clear_but_kept_by_a_reference_cycle_are_not_reported(
    leakwatch: Watch, url: str
) -> None:
    """A pool ``clear()`` dropped (a with-block's end, a session's ``close()``) that a reference
    cycle still keeps (the traceback ``pytest.raises`` keeps, through ``urlopen``'s frame) has
    its sockets closed by the collector running urllib3's finalize callback: still the
    program's release, not the collector's."""
    urllib3 = pytest.importorskip("urllib3")
    requests = pytest.importorskip("requests")
    cycle = Cycle()
    with urllib3.PoolManager() as manager:
        assert manager.request("GET", url).data == b"ok"
        cycle.held = [manager.connection_from_url(url)]
    with requests.Session() as session:
        assert session.get(url).content == b"ok"
        cycle.held.append(session.get_adapter(url).poolmanager.connection_from_url(url))
    del cycle, manager, session
    gc.collect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_session_subclass_that_mounts_its_own_adapter_is_one_session_entry(
    leakwatch: Watch, url: str
) -> None:
    """locust's ``HttpSession`` mounts an adapter of its own in its ``__init__``: its
    ``PoolManager`` was the entry, at the mount line, told to be ``clear()``-ed, and the session
    none. The session is the entry, at the line that made it, its socket under it; closed, it
    is clean."""
    requests = pytest.importorskip("requests")
    from requests.adapters import HTTPAdapter

    class OwnAdapterSession(requests.Session):
        def __init__(self) -> None:
            super().__init__()
            self.mount("http://", HTTPAdapter())

    closed = OwnAdapterSession()
    closed.get(url)
    closed.close()
    assert leakwatch.leaks() == []
    session = OwnAdapterSession()
    made = line() - 1
    session.get(url)
    [leak] = leakwatch.leaks()
    assert leak.kind == "requests" and "close()" in leak.description, leak.description
    assert_at(leak, made)
    [held] = leak.holds
    assert held.kind == "socket"
    session.close()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_aiohttp_response_never_read_keeps_its_connection_checked_out_at_its_line(
    leakwatch: Watch, url: str
) -> None:
    """A session that outlives the test (a module-scoped fixture's), a response the test never
    read nor released: its connection stays checked out of the session's pool, and nothing was
    reported, where a requests response so left was. Read, it is given back."""
    kept: list[Any] = []

    async def main() -> None:
        async with aiohttp.ClientSession() as session:
            mark = leakwatch.tracker.snapshot()
            kept.append(await session.get(url + "big"))
            at = line() - 1
            try:
                [leak] = leakwatch.tracker.leaks(mark)
                assert leak.kind == "socket", leak.headline()
                assert at in opened_at(leak), leak.frames
                assert "checked out of aiohttp's connection pool and never given back" in leak.headline()
            finally:
                kept.pop().release()
            async with session.get(url) as response:
                await response.read()
            assert all("checked out" not in leak.headline() for leak in leakwatch.tracker.leaks(mark))
        assert leakwatch.tracker.leaks(mark) == []

    asyncio.run(main())


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@ignore_gc_warnings
def test_a_session_dropped_holding_a_thread_its_death_stops_is_a_leak_once_the_thread_ended(
    leakwatch: Watch,
) -> None:
    """niquests' pools run an idle watcher thread, which a ``weakref.finalize`` tells to stop as
    its session dies: a session dropped unclosed was reported, or not, by how soon the thread
    ended. What it held as it died decides."""
    import threading

    requests = pytest.importorskip("requests")
    session = requests.Session()
    made = line() - 1
    adapter = session.get_adapter("http://127.0.0.1:1/")
    adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")  # a pool: not closed
    stop = threading.Event()
    adapter.watcher = threading.Thread(target=stop.wait)
    adapter.watcher.start()
    watcher = adapter.watcher
    weakref.finalize(session, stop.set)
    del session, adapter
    watcher.join()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("requests", "collected")
    assert leak.frames[0].lineno == made


@contextlib.contextmanager
def _tracked_as(module_name: str, cls: type) -> Iterator[None]:
    """*cls* tracked as the holder class of its name in *module_name*, while the block runs: a
    stand-in for a library the suite does not install."""
    import types

    from reclaim.leaks import _holders
    from reclaim.leaks._patch import Patches

    module = types.ModuleType(module_name)
    cls.__module__ = module_name
    setattr(module, cls.__name__, cls)
    patches = Patches()
    _holders.install(patches, module)
    try:
        yield
    finally:
        patches.undo()


def _one_entry_at_its_line(leakwatch: Watch, module_name: str, cls: type, kind: str) -> None:
    """*cls*, tracked as the holder class of its name in *module_name*, made and left open: one
    entry of *kind* at the line that made it, holding its socket; closed, nothing."""
    with _tracked_as(module_name, cls):
        client = cls()
        made = line() - 1
        leak = leakwatch.one(kind)
        problem = f"{cls.__name__} not closed (close(), or a with-block)"
        assert leak.description.endswith(problem), leak.description
        assert leak.frames[0].lineno == made
        assert [held.kind for held in leak.holds] == ["socket"]
        client.close()
        assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_an_httpx2_client_left_open_is_one_entry_at_its_line(leakwatch: Watch) -> None:
    """httpx2, httpx's fork (aiobotocore's preferred backend): its client was its bare socket, at
    a line of anyio's. Its shape stands in for it here, as the fork is not installed."""

    class Transport:
        def __init__(self) -> None:
            self._pool = [socket.socket()]

    class Client:
        def __init__(self) -> None:
            self._transport = Transport()
            self._mounts: dict[str, Transport] = {}
            self.is_closed = False

        def close(self) -> None:
            for sock in self._transport._pool:
                sock.close()
            self.is_closed = True

    _one_entry_at_its_line(leakwatch, "httpx2._client", Client, "httpx")


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_niquests_session_left_open_is_one_entry_at_its_line(leakwatch: Watch) -> None:
    """niquests, requests' fork: its ``Session`` was reported as a bare ``urllib3.PoolManager``
    at niquests' line, told to ``clear()``. Its shape stands in for it here: niquests brings
    urllib3-future, which installs as urllib3, over the one the other tests use."""

    class PoolManager:
        def __init__(self) -> None:
            self.pools = {"http://127.0.0.1": socket.socket()}

    class Adapter:
        def __init__(self) -> None:
            self.poolmanager = PoolManager()

    class Session:
        def __init__(self) -> None:
            self.adapters = {"http://": Adapter()}

        def close(self) -> None:
            for adapter in self.adapters.values():
                for sock in adapter.poolmanager.pools.values():
                    sock.close()
                adapter.poolmanager.pools.clear()

    _one_entry_at_its_line(leakwatch, "niquests.sessions", Session, "requests")


def test_requests_sessions_closed_are_not_reported(leakwatch: Watch, url: str) -> None:
    """A with-block, ``close()`` (also of a session used again after it), ``requests.get()``: the
    pools' callbacks that close() runs by dropping them are the program's release."""
    requests = pytest.importorskip("requests")
    with requests.Session() as session:
        session.get(url)
    session = requests.Session()
    session.get(url)
    session.close()
    session.get(url)
    session.close()
    requests.get(url)
    del session
    gc.collect()
    assert leakwatch.leaks() == []


def test_reclaim_run_reports_a_dropped_session_not_one_kept_to_the_end(tmp_path: Path, url: str) -> None:
    """A session the program keeps to the end is closed by urllib3 at exit, as an atexit handler
    would: only the one dropped unclosed is reported."""
    pytest.importorskip("requests")
    source = f"""\
        import requests, urllib3
        KEPT = requests.Session()
        KEPT.get({url!r})

        def fetch():
            session = requests.Session()
            return session.get({url!r}).text

        fetch()
        MANAGER = urllib3.PoolManager()  # kept to the end too
        MANAGER.request("GET", {url!r})
        """
    report, stderr = reclaim_run_json(tmp_path, source)
    [leak] = report["leaks"]
    assert (leak["kind"], leak["state"], leak["frames"][0]["line"]) == ("requests", "collected", 6)
    assert [held["kind"] for held in leak["holds"]] == ["socket"]
    assert "prog.py:6 in fetch" in stderr and ", opened at prog.py:7 in fetch" in stderr


# -- aiohttp's test utilities -----------------------------------------------------------------


async def _hello(request: Any) -> Any:
    return aiohttp.web.Response(text="ok")


def _app() -> Any:
    app = aiohttp.web.Application()
    app.router.add_get("/", _hello)
    return app


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_aiohttp_test_client_not_closed_is_one_entry_holding_its_server(leakwatch: Watch) -> None:
    """``TestClient(TestServer(app))`` never closed: the client, at its line, holds the server's
    listening and accepted sockets, its own connection and the request handler's task; closing
    it (which closes the server it was handed) leaves nothing."""
    from aiohttp import test_utils

    async def use() -> tuple[Any, int, int, int]:
        client = test_utils.TestClient(test_utils.TestServer(_app()))
        made = line() - 1
        await client.start_server()
        started = line() - 1
        response = await client.get("/")
        assert await response.text() == "ok"
        return client, made, started, line() - 2

    loop = asyncio.new_event_loop()
    client, made, started, request = loop.run_until_complete(use())
    try:
        assert [leak.kind for leak in leakwatch.leaks() if leak.kind != "eventloop"] == ["aiohttp"]
        leak = leakwatch.one("aiohttp")
        assert_at(leak, made)
        assert leak.description.startswith("aiohttp.test_utils.TestClient not closed")
        # The handler's task too where aiohttp makes it with create_task() (before Python 3.12).
        assert sorted(held.kind for held in leak.holds if held.kind != "task") == ["socket"] * 3
        assert {line for held in leak.holds for line in opened_at(held)} >= {started, request}
    finally:
        loop.run_until_complete(client.close())
    del client
    assert [leak.kind for leak in leakwatch.leaks()] == ["eventloop"]
    loop.close()
    assert leakwatch.leaks() == []


def test_aiohttp_test_client_closed_is_not_reported(leakwatch: Watch) -> None:
    from aiohttp import test_utils

    async def use() -> None:
        async with test_utils.TestClient(test_utils.TestServer(_app())) as client:
            assert await (await client.get("/")).text() == "ok"
        async with (
            test_utils.TestServer(_app()) as server,
            aiohttp.ClientSession() as session,
            session.get(server.make_url("/")) as response,
        ):
            assert await response.text() == "ok"

    asyncio.run(use())
    gc.collect()
    assert leakwatch.leaks() == []


def test_urllib3_clear_of_a_manager_using_a_pool_class_of_the_program_still_works(leakwatch: Watch) -> None:
    """``clear()`` is wrapped to note the queues of the pools it drops: a pool class of the
    program's (``pool_classes_by_scheme``, as urllib3's own tests use) may have none."""
    urllib3 = pytest.importorskip("urllib3")

    class Pool:
        def __init__(self, host: str, port: int | None = None, **kw: object) -> None:
            self.host = host

    with urllib3.PoolManager() as manager:
        manager.pool_classes_by_scheme = {"http": Pool}
        assert isinstance(manager.connection_from_url("http://example.invalid/"), Pool)
    assert len(manager.pools) == 0
    assert leakwatch.leaks() == []
