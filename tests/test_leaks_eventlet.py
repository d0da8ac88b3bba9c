"""eventlet: its hub's epoll descriptor is the hub's, and what the standard library acquires
through its green modules stays the standard library's (the program runs in a process of its
own: ``monkey_patch()`` changes the interpreter for good)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from _leakhelp import python_prog, reclaim_run_json

# Not imported here: importing eventlet makes every later os.fork() in this process warn, an
# error under the suite's filterwarnings.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("eventlet") is None, reason="eventlet is not installed"
)

MONKEY_PATCHED = """\
    import warnings

    warnings.simplefilter("ignore")  # eventlet warns that it is deprecated
    import eventlet

    eventlet.monkey_patch()  # makes the main thread's hub, and its epoll

    import multiprocessing

    value = multiprocessing.get_context("fork").Value("i", 0)  # a heap arena, through green os.open
    print(value.value)
    {extra}
"""


def test_a_monkey_patched_program_that_leaks_nothing_is_reported_clean(tmp_path: Path) -> None:
    """The hub's epoll was an untracked descriptor at the monkey_patch() line, and the heap arena
    multiprocessing keeps for the process a file at the Value() line: eventlet's green
    ``os.open`` stood between the program and multiprocessing's own frames."""
    report, stderr = reclaim_run_json(tmp_path, MONKEY_PATCHED.format(extra=""))
    assert report["leaks"] == [], stderr


def test_a_socket_a_monkey_patched_program_leaves_open_is_at_the_programs_line(tmp_path: Path) -> None:
    """Its frames are plumbing: a green socket left open is reported at the program's line, not
    inside eventlet."""
    source = MONKEY_PATCHED.format(extra="import socket\n    kept = socket.socket()\n")
    report, stderr = reclaim_run_json(tmp_path, source)
    [leak] = report["leaks"]
    assert leak["kind"] == "socket", stderr
    assert leak["frames"][0]["file"].endswith("prog.py") and leak["frames"][0]["line"] == 13, stderr
    # Its __del__ closes it as the interpreter shuts down, socket gone from sys.modules: the
    # close reclaim wraps raised there, importing it to read whether it listened.
    assert "Exception ignored" not in stderr, stderr


def test_a_green_socket_from_a_copy_eventlet_made_before_tracking_is_tracked(tmp_path: Path) -> None:
    """eventlet makes its green sockets from its own unpatched copy of ``socket``
    (``sys.modules["__original_module_socket"]``). Made before tracking started (eventlet
    imported by an initial conftest: its own suite), the copy was never instrumented: a green
    socket left open was an untracked descriptor with no line, one dropped went unseen."""
    out = python_prog(
        tmp_path,
        """
        import warnings

        warnings.simplefilter("ignore")  # eventlet warns that it is deprecated
        from eventlet.green import socket

        import reclaim.leaks

        tracker = reclaim.leaks.Tracker().start()
        mark = tracker.snapshot()
        kept = socket.socket()
        for leak in tracker.leaks(mark):
            print(leak.kind, leak.frames[0].lineno if leak.frames else None)
        kept.close()
        tracker.stop()
        """,
    )
    assert out.stdout.split() == ["socket", "11"], out.stderr
