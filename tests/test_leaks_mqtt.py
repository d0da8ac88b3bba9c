"""paho-mqtt: a client never disconnected is one leak at the line that made it, holding its
socket to the broker and its loop thread; its loop's wake-up socket pair is its own.

Against the real broker on 127.0.0.1 (the ``mosquitto`` fixture: skipped when it does not
answer, failed instead under RECLAIM_REQUIRE_SERVICES=1).
"""

from __future__ import annotations

import gc
import socket
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import (
    Watch,
    assert_site,
    ignore_gc_warnings,
    leakwatch,
    line,
    reclaim_pytest_fails_one,
    reclaim_run_json,
)
from conftest import Service

mqtt = pytest.importorskip("paho.mqtt.client")
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402 - paho is there once importorskip passed

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.mosquitto

#: Seconds a test waits for the broker's answer (a hang fails, never blocks the suite).
TIMEOUT = 10


def topic() -> str:
    """A topic of this run's own: tests running at once on one broker never see each other's."""
    return f"reclaim/{uuid.uuid4().hex}"


# Each way paho's documentation runs a client: loop_start()/loop_stop() with a round trip
# through the broker, loop_forever() ended by disconnect() in a callback, no loop at all, and
# disconnect() with no loop_stop() (the loop thread ends by itself).
CLEAN = """\
    import threading
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    HOST, PORT, TOPIC = {host!r}, {port}, {topic!r}

    subscribed, got = threading.Event(), threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_subscribe = lambda *args: subscribed.set()
    c.on_message = lambda client, userdata, msg: got.set()
    c.connect(HOST, PORT)
    c.loop_start()
    c.subscribe(TOPIC + "/1", qos=1)
    assert subscribed.wait({timeout})
    c.publish(TOPIC + "/1", b"hello", qos=1).wait_for_publish({timeout})
    assert got.wait({timeout})
    c.disconnect()
    c.loop_stop()

    def on_connect(client, userdata, flags, reason, properties):
        client.subscribe(TOPIC + "/2")

    def on_subscribe(client, userdata, mid, reasons, properties):
        client.publish(TOPIC + "/2", b"hello")

    def on_message(client, userdata, msg):
        assert msg.payload == b"hello"
        client.disconnect()

    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    c.connect(HOST, PORT)
    c.loop_forever()

    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(HOST, PORT)
    c.publish(TOPIC + "/3", b"hello")
    c.disconnect()

    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect(HOST, PORT)
    c.loop_start()
    c.publish(TOPIC + "/4", b"hello", qos=1).wait_for_publish({timeout})
    c.disconnect()
"""


def test_a_correct_paho_program_reports_nothing(tmp_path: Path, mosquitto: Service) -> None:
    """The socket pair loop_start() makes is closed only by the client's ``__del__``: it was
    reported as two sockets the program never opened."""
    source = CLEAN.format(host=mosquitto.host, port=mosquitto.port, topic=topic(), timeout=TIMEOUT)
    report, stderr = reclaim_run_json(tmp_path, source)
    assert report["leaks"] == [], stderr


LEAK = """\
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.connect({host!r}, {port})
    c.loop_start()
    c.publish({topic!r}, b"hello", qos=1).wait_for_publish({timeout})
"""


def test_a_client_never_disconnected_is_one_leak_at_its_line(tmp_path: Path, mosquitto: Service) -> None:
    """Not three sockets and a thread at paho's lines: one client, at the program's line, its
    socket to the broker and its loop thread listed under it."""
    source = LEAK.format(host=mosquitto.host, port=mosquitto.port, topic=topic(), timeout=TIMEOUT)
    report, stderr = reclaim_run_json(tmp_path, source)
    [leak] = report["leaks"]
    assert leak["kind"] == "mqtt", stderr
    target = f"{mosquitto.host}:{mosquitto.port}"
    assert leak["description"] == (
        f"client to {target} not disconnected, its loop thread running (disconnect(), then loop_stop())"
    )
    assert leak["details"] == {"class": "paho.mqtt.client.Client", "target": target, "loop_thread": True}
    assert (Path(leak["frames"][0]["file"]).name, leak["frames"][0]["line"]) == ("prog.py", 3)
    held = {held["kind"]: held for held in leak["holds"]}
    assert sorted(held) == ["socket", "thread"]
    assert held["socket"]["details"]["peer"] == target
    assert held["thread"]["frames"][-1]["line"] == 5  # loop_start()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_client_with_no_loop_running_holds_its_socket(leakwatch: Watch, mosquitto: Service) -> None:
    """Never looped, or its loop stopped (``loop_stop()`` waits out paho's one-second select,
    hence not here): the socket alone, and no wake-up socket pair, no thread."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    at = line() - 1
    try:
        c.connect(mosquitto.host, mosquitto.port)
        c.loop()  # makes the wake-up socket pair
        c.publish(topic(), b"hello")
        [leak] = leakwatch.leaks()
        assert (leak.kind, leak.state) == ("mqtt", "open")
        assert leak.description.endswith("not disconnected (disconnect())")
        assert leak.details["loop_thread"] is False
        assert_site(leak, at)
        [held] = leak.holds
        assert held.kind == "socket" and held.details["peer"] == f"{mosquitto.host}:{mosquitto.port}"
    finally:
        c.disconnect()
    assert leakwatch.leaks() == []


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_client_over_a_unix_socket_is_said_to_go_to_its_path(leakwatch: Watch, tmp_path: Path) -> None:
    """With ``transport="unix"`` paho connects to the path given as the host and ignores the
    port: the client read as connected to ``/path/broker.sock:1883``."""
    path = str(tmp_path / "broker.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, transport="unix")
        try:
            c.connect(path)  # sends CONNECT, waits for no CONNACK
            accepted, _ = server.accept()
            accepted.close()
            leak = leakwatch.one("mqtt")  # the listening socket is open too, for now
            assert leak.description == f"client to {path} not disconnected (disconnect())"
            assert leak.details["target"] == path
        finally:
            c.disconnect()
    assert leakwatch.leaks() == []


def test_a_loop_thread_ends_by_itself_after_disconnect(leakwatch: Watch, mosquitto: Service) -> None:
    """paho's loop thread returns once ``disconnect()`` went through, ``loop_stop()`` or not:
    the check waits for a client's thread winding down as for any thread."""
    connected = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_connect = lambda *args: connected.set()
    c.connect(mosquitto.host, mosquitto.port)
    c.loop_start()
    assert connected.wait(TIMEOUT)
    c.disconnect()
    assert leakwatch.leaks(grace=TIMEOUT) == []


class Cycle:
    """An object that keeps itself alive: what it holds goes only with the garbage collector."""

    def __init__(self) -> None:
        self.itself: Cycle | None = self
        self.held: Any = None


@ignore_gc_warnings
@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
@pytest.mark.parametrize("cycle", [False, True], ids=["dropped", "in-a-cycle"])
def test_a_client_dropped_connected_is_the_collectors(
    leakwatch: Watch, mosquitto: Service, cycle: bool
) -> None:
    """Dropped, or in a reference cycle (the collector then clears its socket's weak reference
    before the client's ``__del__`` runs): closed by the garbage collector, at its line."""
    keeper = Cycle()
    keeper.held = mqtt.Client(CallbackAPIVersion.VERSION2)
    at = line() - 1
    keeper.held.connect(mosquitto.host, mosquitto.port)
    if not cycle:
        keeper.itself = None
    del keeper
    gc.collect()
    [leak] = leakwatch.leaks()
    assert (leak.kind, leak.state) == ("mqtt", "collected")
    assert_site(leak, at)
    # Where it connected, read as it died: a collected client says no more.
    target = f"{mosquitto.host}:{mosquitto.port}"
    assert leak.details["target"] == target
    assert leak.description.startswith(f"client to {target} not disconnected")
    [held] = leak.holds
    assert (held.kind, held.state) == ("socket", "collected")


def test_under_pytest_only_the_test_that_left_a_client_connected_fails(
    pytester: pytest.Pytester, mosquitto: Service
) -> None:
    """A module fixture's client stopped at its teardown, a loop_forever() test and a test that
    disconnects pass; the one that leaves its client connected fails, at its line."""
    pytester.makepyfile(
        test_mqtt=f"""
        import threading
        import paho.mqtt.client as mqtt
        import pytest
        from paho.mqtt.enums import CallbackAPIVersion

        HOST, PORT, TOPIC = {mosquitto.host!r}, {mosquitto.port}, {topic()!r}

        @pytest.fixture(scope="module")
        def looping():
            c = mqtt.Client(CallbackAPIVersion.VERSION2)
            c.connect(HOST, PORT)
            c.loop_start()
            yield c
            c.disconnect()
            c.loop_stop()

        def test_publishes(looping):
            looping.publish(TOPIC, b"x", qos=1).wait_for_publish({TIMEOUT})

        def test_loop_forever():
            c = mqtt.Client(CallbackAPIVersion.VERSION2)
            c.on_connect = lambda client, *args: client.disconnect()
            c.connect(HOST, PORT)
            c.loop_forever()

        def test_disconnects():
            c = mqtt.Client(CallbackAPIVersion.VERSION2)
            c.connect(HOST, PORT)
            c.disconnect()

        def test_leaves_it_connected():
            pytest.kept = mqtt.Client(CallbackAPIVersion.VERSION2)
            pytest.kept.connect(HOST, PORT)

        def test_last(looping):
            looping.publish(TOPIC, b"y", qos=1).wait_for_publish({TIMEOUT})
        """
    )
    reclaim_pytest_fails_one(pytester, 5, "test_leaves_it_connected", "test_mqtt.py:32")


LAZY = """\
    import sys
    import socket

    socket.socket().close()
    assert not [name for name in sys.modules if name.split(".")[0] == "paho"], "paho was imported"
"""


def test_a_program_that_does_not_import_paho_loads_none_of_it(tmp_path: Path) -> None:
    """paho's part is installed when the program imports paho, never by reclaim itself."""
    report, stderr = reclaim_run_json(tmp_path, LAZY)
    assert report["leaks"] == [], stderr
