"""Twisted: what its reactor keeps for the process is its own; a port never stopped and a connection
never closed are reported at the program's lines."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from _leakhelp import LEAN, Watch, assert_site, leakwatch, line, reclaim_pytest_fails_one, reclaim_run_json

# Not twisted.internet.reactor: importing it installs the global reactor in this process.
selectreactor = pytest.importorskip("twisted.internet.selectreactor")
protocol = pytest.importorskip("twisted.internet.protocol")

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

# A server and a client on the global reactor, each closed before it stops: the client hangs up
# after its echo, the server's side of the connection ends with it, then the port stops.
ECHO = """\
    from twisted.internet import defer, protocol, reactor

    class Echo(protocol.Protocol):
        def dataReceived(self, data):
            self.transport.write(data)

        def connectionLost(self, reason):
            server_lost.callback(None)

    class Client(protocol.Protocol):
        def connectionMade(self):
            self.transport.write(b"hi")

        def dataReceived(self, data):
            got.append(data)
            self.transport.loseConnection()

        def connectionLost(self, reason):
            client_lost.callback(None)

    got = []
    server_lost, client_lost = defer.Deferred(), defer.Deferred()
    port = reactor.listenTCP(0, protocol.ServerFactory.forProtocol(Echo), interface="127.0.0.1")
    protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)
    done = defer.gatherResults([server_lost, client_lost])
    done.addCallback(lambda _: port.stopListening())
    done.addBoth(lambda _: reactor.stop())
    reactor.run()
    assert got == [b"hi"]
"""


@pytest.mark.parametrize("reactor", ["default", "selectreactor", "pollreactor", "asyncioreactor"])
def test_a_correct_twisted_program_reports_nothing(tmp_path: Path, reactor: str) -> None:
    """The reactor's waker pipe, its epoll descriptor (the default reactor's), the asyncio loop
    it makes (the asyncio reactor's) and the /dev/null Twisted keeps in reserve once a port
    listens are Twisted's for the process: every correct Twisted program reported them."""
    install = f"    from twisted.internet import {reactor}; {reactor}.install()\n"
    report, stderr = reclaim_run_json(tmp_path, ECHO if reactor == "default" else install + ECHO)
    assert report["leaks"] == [], stderr


# The line numbers below are the program's (the first line is 1).
NEVER_CLOSED = """\
    from twisted.internet import protocol, reactor

    class Client(protocol.Protocol):
        def connectionMade(self):
            reactor.stop()

    port = reactor.listenTCP(0, protocol.ServerFactory.forProtocol(protocol.Protocol), interface="127.0.0.1")
    protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", port.getHost().port)
    reactor.run()
"""


def test_the_ports_and_connections_reactor_stop_disconnects_are_the_reactors(tmp_path: Path) -> None:
    """A port never stopped and a connection never closed by the program are the reactor's, which
    ``reactor.stop()`` disconnects: that is how Twisted programs end, no leak."""
    report, stderr = reclaim_run_json(tmp_path, NEVER_CLOSED)
    assert report["leaks"] == [], stderr


PORT_LEFT = """\
    from twisted.internet import protocol, reactor

    port = reactor.listenTCP(0, protocol.ServerFactory.forProtocol(protocol.Protocol), interface="127.0.0.1")
"""


def test_a_port_made_by_a_program_that_never_runs_its_reactor_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    """Nothing stopped the reactor, so nothing disconnected the port: open at the program's end,
    at the listenTCP line, and nothing of the reactor's is reported beside it."""
    report, stderr = reclaim_run_json(tmp_path, PORT_LEFT)
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("socket", "open", 3)], stderr
    assert report["leaks"][0]["frames"][0]["file"].endswith("prog.py")


def test_a_port_open_at_a_check_is_reported_at_its_listenTCP_line(leakwatch: Watch) -> None:
    """A reactor of the test's own (not the global one): its waker is its own, its port the test's."""
    reactor = selectreactor.SelectReactor()
    factory = protocol.ServerFactory.forProtocol(protocol.Protocol)
    try:
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        at = line() - 1
        leak = leakwatch.one("socket")
        assert_site(leak, at)
        assert leak.state == "open"
        assert leakwatch.leaks(kind="untracked-fd") == []
        stopped = port.stopListening()
        reactor.iterate(0)  # the port closes on the reactor's next turn
        assert stopped.called
        assert leakwatch.leaks() == []
    finally:
        reactor.waker.connectionLost(None)  # a reactor has no close(): as Twisted's own tests do


def test_a_child_spawnProcess_started_and_nothing_reaped_is_reported_at_its_line(leakwatch: Watch) -> None:
    """reactor.spawnProcess() forks or posix_spawn()s in Twisted's code, which reclaim reads as a
    framework's: its child was never recorded, so one its reactor never reaped (treq's httpbin
    servers under pytest, whose reactor never runs) outlived the run unreported. It is the
    program's, at its spawnProcess() line, released by whatever reaps it."""
    reactor = selectreactor.SelectReactor()
    read, write = os.pipe()  # the child runs until this write end closes
    child = [sys.executable, "-c", "import sys; sys.stdin.buffer.read(1)"]
    fds = {0: read, 1: 1, 2: 2}
    try:
        process = reactor.spawnProcess(protocol.ProcessProtocol(), child[0], child, childFDs=fds)
        at = line() - 1
        leak = leakwatch.one("subprocess")
        assert_site(leak, at)
        assert leak.details["pid"] == process.pid and leak.state == "open"
    finally:
        os.close(write)
        os.close(read)
        os.waitpid(process.pid, 0)
        reactor.waker.connectionLost(None)  # a reactor has no close(): as Twisted's own tests do
    assert leakwatch.leaks() == []


def test_twisted_calls_through_an_instance_what_reclaim_replaces(tmp_path: Path) -> None:
    """spawnProcess calls ``self.openfile(path)`` and an adopted port's endpoint
    ``self._close(fd)``: open and os.close, kept as class attributes, which the functions
    reclaim puts in their place bound as methods (TypeError)."""
    source = """\
        import socket
        import sys

        from twisted.internet import defer, endpoints, protocol, task, utils

        @defer.inlineCallbacks
        def main(reactor):
            out = yield utils.getProcessOutput(sys.executable, ["-c", "print('x')"])
            assert out.strip() == b"x"
            sock = socket.create_server(("127.0.0.1", 0))
            sock.setblocking(False)
            endpoint = endpoints.AdoptedStreamServerEndpoint(reactor, sock.detach(), socket.AF_INET)
            port = yield endpoint.listen(protocol.ServerFactory.forProtocol(protocol.Protocol))
            yield port.stopListening()

        task.react(main)
    """
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


def test_pytest_passes_a_test_using_the_reactor_correctly_and_fails_one_leaving_a_port(
    pytester: pytest.Pytester,
) -> None:
    """--reclaim: the global reactor, made inside the first test (its import is in the test's
    window), fails no test; a port left listening fails its test, at its line.

    The global reactor runs once per process: pytester's fresh interpreter gives it one, and the
    second test listens on it stopped (never run again), so its port stays open."""
    echo = "\n".join(ECHO.splitlines()[1:])  # indented as a function's body already
    source = f"""\
def test_echo():
    from twisted.internet import defer, protocol, reactor
{echo}

def test_port_left():
    from twisted.internet import protocol, reactor
    reactor.listenTCP(0, protocol.ServerFactory.forProtocol(protocol.Protocol), interface="127.0.0.1")
"""
    pytester.makepyfile(test_tw=source)
    at = len(source.splitlines())  # the listenTCP line, the last one
    reclaim_pytest_fails_one(pytester, 2, "test_port_left", f"test_tw.py:{at}")


def test_the_reactors_thread_pool_is_the_reactors_and_a_pool_of_the_programs_is_its_own(
    pytester: pytest.Pytester,
) -> None:
    """The reactor's thread pool (``deferToThread``, every ``HostnameEndpoint``'s name lookup)
    starts its workers on demand and stops them as the reactor shuts down: under pytest-twisted's
    reactor, which runs for the session, they were the leak of whichever test first needed one
    more (scrapy's suite). A ``ThreadPool`` a test makes and never stops is still its leak."""
    pytester.makeconftest(
        """
        from twisted.internet import reactor

        STOP = []

        def pytest_unconfigure(config):  # after reclaim's checks: as the reactor's shutdown would
            for pool in [reactor.getThreadPool(), *STOP]:
                pool.stop()
        """
    )
    pytester.makepyfile(
        test_pools="""
        import threading

        from twisted.internet import reactor
        from twisted.python.threadpool import ThreadPool

        import conftest

        def work(pool):
            done = threading.Event()
            pool.callInThread(done.set)
            assert done.wait(30)

        def test_the_reactors():
            pool = reactor.getThreadPool()
            pool.start()
            work(pool)

        def test_the_reactors_again():
            work(reactor.getThreadPool())

        def test_its_own():
            pool = ThreadPool(0, 2, "own")
            conftest.STOP.append(pool)
            pool.start()
            work(pool)
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_its_own*", "thread 'PoolThread-own-0'*"])
    assert "twisted.internet.reactor" not in result.stdout.str()
