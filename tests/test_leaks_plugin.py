"""The pytest plugin: the test that acquired a leak fails, never a later one; nothing is lost."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from xml.etree import ElementTree

import pytest

from _leakhelp import LEAN, NEVER_AWAITED_IN_A_CYCLE

pytest_plugins = ["pytester"]

# Inner runs: in their own process (their leaks are real), with the plugin on, without the
# plugins they do not use (see LEAN).
BASE_ARGS = (*LEAN, "--reclaim")


#: A plugin (or conftest) that runs each test's protocol itself, as pytest-rerunfailures does.
RUNS_THE_PROTOCOL = """
    import pytest
    from _pytest.runner import runtestprotocol

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(item, nextitem):
        item.ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        for report in runtestprotocol(item, nextitem=nextitem, log=False):
            item.ihook.pytest_runtest_logreport(report=report)
        item.ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True
"""


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess(*BASE_ARGS, *args, timeout=120)


def test_leaking_test_fails_with_the_report_and_clean_tests_pass(pytester: pytest.Pytester) -> None:
    """A test that leaves a file open errors at teardown with the kind and its line; others pass."""
    pytester.makepyfile(
        test_orders="""
        KEEP = []

        def test_clean(tmp_path):
            with open(tmp_path / "a", "w") as f:
                f.write("x")

        def test_leaks(tmp_path):
            KEEP.append(open(tmp_path / "b", "w"))

        def test_clean_after(tmp_path):
            assert True
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "*this test leaked 1 resource*",
            "*test_orders.py:8*",
        ]
    )
    assert "ERROR at teardown of test_clean" not in result.stdout.str()


def test_a_test_marked_xfail_that_leaks_fails_its_teardown(pytester: pytest.Pytester) -> None:
    """pytest takes a failure in any phase of an xfail-marked test for the one it expects: the
    leak report was counted as a second "xfailed" and the run passed. The test's own failure
    stays expected; its leak is an error, as any test's is, and a clean xfail test has none."""
    pytester.makepyfile(
        test_known="""
        import pytest

        KEEP = []

        @pytest.mark.xfail(reason="known bug", strict=True)
        def test_known_bug_leaks(tmp_path):
            KEEP.append(open(tmp_path / "a", "w"))
            assert False

        @pytest.mark.xfail(reason="known bug")
        def test_known_bug_clean():
            assert False
        """
    )
    result = run(pytester)
    result.assert_outcomes(xfailed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_known_bug_leaks*", "*test_known.py:7*"])


def test_an_error_through_reclaims_wrappers_shows_no_frame_of_reclaims(pytester: pytest.Pytester) -> None:
    """A conftest fixture's own teardown error passes through the plugin's teardown wrapper: its
    traceback showed that wrapper's source (some fifty lines of it), with a leak report or without.
    So did a setup error, through the setup wrappers (dataset's suite without its driver), and an
    error raised by what a stand-in of the tracker's passes a call on to (an epoll's
    ``register()``, a closed loop's ``call_soon_threadsafe()``)."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def checked():
            yield
            assert False, "the fixture's own check"

        @pytest.fixture
        def broken():
            raise RuntimeError("the fixture's own setup")

        @pytest.fixture(scope="module")
        def broken_wide():
            raise RuntimeError("the wide fixture's own setup")
        """
    )
    pytester.makepyfile(
        test_teardown="""
        KEEP = []

        def test_leaks_too(checked, tmp_path):
            KEEP.append(open(tmp_path / "a", "w"))

        def test_clean(checked):
            pass

        def test_leaks_alone(tmp_path):
            KEEP.append(open(tmp_path / "b", "w"))

        def test_broken(broken):
            pass

        def test_broken_wide(broken_wide):
            pass

        def test_epoll_refuses():
            import select

            with select.epoll() as poller:
                poller.register(-1)

        def test_closed_loop_refuses():
            import asyncio

            loop = asyncio.new_event_loop()
            loop.close()
            loop.call_soon_threadsafe(print)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, failed=2, errors=5)
    result.stdout.fnmatch_lines(["*ValueError: file descriptor cannot be a negative integer*"])
    result.stdout.fnmatch_lines(["*RuntimeError: Event loop is closed*"])
    assert "reclaim/leaks/" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks_too*", "*the fixture's own check*"])
    result.stdout.fnmatch_lines(["*ERROR at setup of test_broken *", "*the fixture's own setup*"])
    result.stdout.fnmatch_lines(["*ERROR at setup of test_broken_wide*", "*the wide fixture's own setup*"])
    assert "pytest_plugin.py" not in result.stdout.str()
    assert "traceback entries are hidden" not in result.stdout.str()  # the leak report alone


def test_an_epoll_a_module_makes_at_collection_is_the_sessions_not_the_first_tests(
    pytester: pytest.Pytester,
) -> None:
    """An untracked descriptor takes the label current when a check first finds it: a
    ``select.epoll()`` made at import (eventlet's hub, as ``monkey_patch()`` runs in a test
    package's ``__init__``) failed the first test. Where it was made is known, and when: under
    pytest's collection, reported at the session's end."""
    pytester.makepyfile(
        test_module_epoll="""
        import select

        POLLER = select.epoll()  # kept for the whole run


        def test_first():
            pass


        def test_second():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*acquired by pytest session*collection and plugins*",
            "*untracked-fd fd * -> anon_inode:?eventpoll? (select.epoll)*",
            "*test_module_epoll.py:3 in <module>*",
        ]
    )


@pytest.mark.one_python
def test_junit_xml_carries_the_leaks_as_a_property(pytester: pytest.Pytester) -> None:
    """--junitxml: the leaking test's entry has a reclaim_leaks property with the JSON leaks."""
    pytester.makepyfile(
        test_junit="""
        import socket
        KEEP = []
        def test_leaks():
            KEEP.append(socket.socket())
        """
    )
    result = run(pytester, "--junitxml=out.xml")
    result.assert_outcomes(passed=1, errors=1)
    tree = ElementTree.parse(pytester.path / "out.xml")
    props = {p.get("name"): p.get("value") for p in tree.iter("property")}
    leaks = json.loads(props["reclaim_leaks"])
    assert [leak["kind"] for leak in leaks] == ["socket"]


@pytest.mark.one_python
def test_checker_statistics_count_what_it_checked(pytester: pytest.Pytester) -> None:
    """The plugin object's statistics() count checked tests, leaking tests and leaks."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_terminal_summary(terminalreporter, config):
            checker = config.pluginmanager.get_plugin("reclaim-leak-checker")
            terminalreporter.write_line(f"STATS {checker.statistics()}")
        """
    )
    pytester.makepyfile(
        test_stats="""
        import socket
        KEEP = []
        def test_clean():
            pass
        def test_two_leaks():
            KEEP.extend([socket.socket(), socket.socket()])
        """
    )
    result = run(pytester)
    result.stdout.fnmatch_lines(
        ["STATS LeakCheckerStatistics(tests_checked=2, tests_leaked=1, leaks=2, late_leaks=0)"]
    )


def test_function_fixture_leak_is_the_tests(pytester: pytest.Pytester) -> None:
    """A function-scoped fixture's leak (setup or teardown) is blamed on the test using it."""
    pytester.makepyfile(
        test_fixture="""
        import socket
        import pytest

        @pytest.fixture
        def client():
            s = socket.socket()
            yield s          # never closed

        def test_uses_client(client):
            assert client.fileno() >= 0
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_uses_client*", "*socket*"])


def test_wider_fixture_leak_is_not_blamed_on_the_test_but_reported_at_session_end(
    pytester: pytest.Pytester,
) -> None:
    """A session fixture that never closes its file: tests pass, the session fails naming it."""
    pytester.makepyfile(
        test_session="""
        import pytest

        @pytest.fixture(scope="session")
        def config_file(tmp_path_factory):
            return open(tmp_path_factory.mktemp("c") / "cfg", "w")   # never closed

        def test_first(config_file):
            assert not config_file.closed

        def test_second(config_file):
            assert not config_file.closed
        """
    )
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=2)
    document = json.loads((pytester.path / "leaks.json").read_text())
    assert document["schema"] == "reclaim.leaks/1"
    assert [leak["kind"] for leak in document["leaks"]] == ["file"]
    assert "config_file" in document["leaks"][0]["context"]
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*reclaim: leaks found after their test ended*",
            "*session-scoped fixture 'config_file'*",
            "*test_session.py:5*",
            # The resources and the holders blamed, as the last line counts the latter (CherryPy's
            # "17 leaked" under "100 resources leaked" read as a contradiction).
            "1 resource leaked by 1 test, fixture or module-level holder (the 'leaked at session end'*",
            "*2 passed, 1 leaked at session end*",
        ]
    )


CYCLE = """
import gc

class Holder:
    def __init__(self, path):
        self.me = self                      # a reference cycle: only the GC frees it
        self.file = open(path, "w")

def test_a_makes_a_cycle(tmp_path):
    Holder(tmp_path / "cycle")

def test_b_clean():
    pass

def test_c_runs_the_gc():
    gc.collect()                            # the file is closed here, during test_c
"""


def test_cycle_leak_is_blamed_on_the_test_that_made_it(pytester: pytest.Pytester) -> None:
    """A file held by a reference cycle fails the test that opened it, not a later one."""
    pytester.makepyfile(test_cycle=CYCLE)
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_makes_a_cycle*"])
    assert "ERROR at teardown of test_c" not in result.stdout.str()


def test_cycle_leak_without_per_test_gc_is_still_blamed_on_its_test(pytester: pytest.Pytester) -> None:
    """Without the per-test gc.collect the file is still open at test_a's end: test_a fails, once."""
    pytester.makepyfile(test_cycle=CYCLE)
    result = run(pytester, "-o", "reclaim_collect=false")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_makes_a_cycle*"])
    output = result.stdout.str()
    assert "ERROR at teardown of test_c" not in output
    assert "leaks found after their test ended" not in output


def test_leak_from_import_time_is_reported_at_session_end(pytester: pytest.Pytester) -> None:
    """What a test module leaks while it is imported is still reported: never lost."""
    pytester.makepyfile(
        test_import="""
        import socket
        CONNECTION = socket.socket()   # at import time

        def test_nothing():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*leaks found after their test ended*", "*test_import.py:2*"])


def test_what_a_plugin_closes_in_its_own_sessionfinish_is_no_leak(pytester: pytest.Pytester) -> None:
    """A conftest that starts something at session start and stops it at session finish is clean.

    reclaim looks for session-end leaks after the other plugins' ``pytest_sessionfinish``;
    what is still open then is reported.
    """
    pytester.makeconftest(
        """
        import socket
        HELD = []

        def pytest_sessionstart(session):
            HELD.append(socket.socket())   # closed below
            HELD.append(socket.socket())   # never closed

        def pytest_sessionfinish(session):
            HELD.pop(0).close()
        """
    )
    pytester.makepyfile(test_clean="def test_nothing():\n    pass\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    late = result.stdout.str().split("leaks found after their test ended")[-1]
    assert "conftest.py:6" in late and "conftest.py:5" not in late, result.stdout.str()


def test_allow_marker_allows_chosen_leaks_only(pytester: pytest.Pytester) -> None:
    """reclaim_allow(kind=..., match=...) allows what it names and nothing else."""
    pytester.makepyfile(
        test_allow="""
        import socket
        import pytest

        KEEP = []

        @pytest.mark.reclaim_allow(kind="file")
        def test_file_allowed(tmp_path):
            KEEP.append(open(tmp_path / "a", "w"))

        @pytest.mark.reclaim_allow(kind="socket")
        def test_other_kind_still_fails(tmp_path):
            KEEP.append(open(tmp_path / "b", "w"))

        @pytest.mark.reclaim_allow(match="keep-me")
        def test_matching_description_allowed(tmp_path):
            KEEP.append(open(tmp_path / "keep-me.log", "w"))

        @pytest.mark.reclaim_allow
        def test_everything_allowed():
            KEEP.append(socket.socket())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_other_kind_still_fails*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED


@pytest.mark.one_python
def test_allow_marker_with_a_wrong_argument_says_so(pytester: pytest.Pytester) -> None:
    """A misspelled reclaim_allow argument is an error naming it."""
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.reclaim_allow(kinds="file")
        def test_x():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown argument 'kinds'*"])


@pytest.mark.one_python
def test_allow_marker_with_an_unknown_kind_says_so(pytester: pytest.Pytester) -> None:
    """A misspelled kind (which would allow nothing) is an error listing the kinds."""
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.reclaim_allow(kind=("file", "tasks"))
        def test_x():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*unknown kind 'tasks'; kinds: *task*"])


@pytest.mark.one_python
def test_allow_marker_with_an_invalid_pattern_is_one_clear_error(pytester: pytest.Pytester) -> None:
    """A match= that is no regular expression: one setup error naming match= and the pattern, no
    traceback through re, and no second error at teardown."""
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.reclaim_allow(kind="file", match="(unclosed")
        def test_x():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*reclaim_allow: match='(unclosed' is not a valid regular expression: missing )*"]
    )
    out = result.stdout.str()
    assert "ERROR at teardown" not in out
    assert "KeyError" not in out
    assert "_parser.py" not in out


def test_thread_winding_down_is_not_a_leak_but_a_running_one_is(pytester: pytest.Pytester) -> None:
    """A thread told to stop but not joined gets the grace period; one never stopped fails."""
    pytester.makepyfile(
        test_threads="""
        import threading

        STOP_LATER = threading.Event()

        def test_stopped_not_joined():
            stop = threading.Event()
            threading.Thread(target=stop.wait, name="winding-down").start()
            stop.set()

        def test_never_stopped():
            threading.Thread(target=STOP_LATER.wait, name="forever", daemon=True).start()

        def test_zz_release():
            STOP_LATER.set()
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_never_stopped*", "*forever*"])


@pytest.mark.one_python
def test_off_by_default_on_by_ini_and_kinds_ignored_by_ini(pytester: pytest.Pytester) -> None:
    """Off without --reclaim; `reclaim = true` turns it on; reclaim_ignore_kinds leaves kinds out."""
    pytester.makepyfile(
        test_leak="""
        KEEP = []
        def test_leaks(tmp_path):
            KEEP.append(open(tmp_path / "x", "w"))
        """
    )
    off = pytester.runpytest_subprocess(*LEAN)
    off.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nreclaim = true\n")
    on = pytester.runpytest_subprocess(*LEAN)
    on.assert_outcomes(passed=1, errors=1)
    overridden = pytester.runpytest_subprocess(*LEAN, "--no-reclaim")
    overridden.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nreclaim = true\nreclaim_ignore_kinds = file\n")
    ignored = pytester.runpytest_subprocess(*LEAN)
    ignored.assert_outcomes(passed=1)
    pytester.makeini("[pytest]\nreclaim = true\nreclaim_ignore_kinds = files\n")
    typo = pytester.runpytest_subprocess(*LEAN)
    typo.stderr.fnmatch_lines(["*reclaim_ignore_kinds: unknown kind 'files'*"])


def test_ini_reclaim_allow_allows_in_every_test_and_wide_fixture(pytester: pytest.Pytester) -> None:
    """``reclaim_allow = KIND:REGEX`` lines: allowed in every test and in a session fixture
    (which no marker reaches: a plugin's fixture, say), and nothing else is."""
    pytester.makepyfile(
        test_ini_allow="""
        import socket
        import pytest

        KEEP = []

        @pytest.fixture(scope="session")
        def cache_db(tmp_path_factory):
            return open(tmp_path_factory.mktemp("c") / "cache-forever.db", "w")

        def test_uses_the_fixture(cache_db):
            pass

        def test_heartbeat_allowed(tmp_path):
            KEEP.append(open(tmp_path / "heartbeat.log", "w"))

        def test_other_file_still_fails(tmp_path):
            KEEP.append(open(tmp_path / "data.txt", "w"))

        def test_any_kind_rule(tmp_path):
            KEEP.append(socket.socket())
        """
    )
    pytester.makeini(
        "[pytest]\nreclaim_allow =\n    file: cache-forever\\.db\n    file,socket: heartbeat\n"
        "    *: AF_INET\n"
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_other_file_still_fails*"])
    assert "cache-forever" not in result.stdout.str()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("heartbeat", "*reclaim_allow: 'heartbeat' is not KIND:REGEX*"),
        ("files: x", "*reclaim_allow: unknown kind 'files'; kinds: file*"),
        ("file: (x", "*reclaim_allow: match='(x' is not a valid regular expression*"),
    ],
)
@pytest.mark.one_python
def test_ini_reclaim_allow_refuses_a_bad_line(pytester: pytest.Pytester, line: str, message: str) -> None:
    """A line that would allow nothing (or everything) by mistake stops the run, saying why."""
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.makeini(f"[pytest]\nreclaim_allow = {line}\n")
    result = run(pytester)
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("missing/leaks.json", "*--reclaim-json: directory * does not exist; create it first*"),
        (".", "*--reclaim-json: '.' is a directory; give a file path*"),
    ],
)
@pytest.mark.one_python
def test_a_bad_reclaim_json_path_stops_the_run_before_any_test(
    pytester: pytest.Pytester, path: str, message: str
) -> None:
    """As for `reclaim run --json`: found at the start, not as an internal error once every test ran."""
    pytester.makepyfile(test_x="def test_x():\n    print('ran')\n")
    result = run(pytester, "-s", f"--reclaim-json={path}")
    result.stderr.fnmatch_lines([message])
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ran" not in result.stdout.str()


@pytest.mark.one_python
def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    """With -n 2 each worker checks its tests; its findings reach the controller's summary and JSON."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_dist="""
        import socket
        import pytest

        KEEP = []

        @pytest.fixture(scope="session")
        def shared():
            return socket.socket()     # never closed: a session-end leak

        def test_leaks(tmp_path):
            KEEP.append(open(tmp_path / "x", "w"))

        @pytest.mark.parametrize("n", range(6))
        def test_clean(n, shared):
            assert n >= 0
        """
    )
    result = run(pytester, "-p", "xdist", "-n", "2", "--reclaim-json", "leaks.json")
    result.assert_outcomes(passed=7, errors=1)
    found = json.loads((pytester.path / "leaks.json").read_text())["leaks"]
    # One file from the test; one socket per worker that set the session fixture up.
    assert {(leak["kind"], leak["context"].split(" ")[0]) for leak in found} == {
        ("file", "test_dist.py::test_leaks"),
        ("socket", "session-scoped"),
    }
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["*this test leaked 1 resource*", "*leaks found after their test ended*", "*'shared'*"]
    )


def test_a_replacement_a_plugin_put_back_is_set_again_for_the_next_test(pytester: pytest.Pytester) -> None:
    """pytest-socket keeps ``socket.socket.connect`` as it found it at import, before reclaim
    replaced it, and sets it back at every test's teardown: from the second test on, no connect
    was seen, and a socket the collector closed was reported without the address it connected to.
    Each test starts with reclaim's replacements in place again."""
    pytester.makeconftest(
        """
        import socket

        _true_connect = socket.socket.connect

        def pytest_runtest_teardown():
            socket.socket.connect = _true_connect
        """
    )
    pytester.makepyfile(
        test_drops="""
        import gc
        import socket

        import pytest

        def test_first():
            pass

        @pytest.mark.filterwarnings("ignore::ResourceWarning")
        def test_drops_a_connected_socket():
            with socket.create_server(("127.0.0.1", 0)) as server:
                port = server.getsockname()[1]
                socket.create_connection(("127.0.0.1", port))
                server.accept()[0].close()
                gc.collect()
            print("port", port)
        """
    )
    result = run(pytester, "-s")
    result.assert_outcomes(passed=2, errors=1)
    port = re.search(r"port (\d+)", result.stdout.str()).group(1)  # type: ignore[union-attr]
    result.stdout.fnmatch_lines([f"*socket AF_INET/SOCK_STREAM*-> 127.0.0.1:{port} (fd *"])


def test_a_failed_open_in_a_test_shows_the_tests_line_not_reclaims_replacement(
    pytester: pytest.Pytester,
) -> None:
    """A test whose open() raises: pytest's traceback ends at the test's line, as without --reclaim
    (it showed all of reclaim's tracked_open, its source and arguments)."""
    pytester.makepyfile(
        test_missing="""
        def test_reads_missing_file():
            open("/nonexistent/orders.json")
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(['>*open("/nonexistent/orders.json")', "E*FileNotFoundError*"])
    assert "tracked_open" not in result.stdout.str()


def test_what_a_session_fixtures_value_holds_is_the_fixtures_though_a_test_made_it(
    pytester: pytest.Pytester,
) -> None:
    """A client that connects on first use (redis.Redis) opens its socket in the first test that
    uses it: the socket is the session fixture's, not that test's leak; if the fixture never
    closes it, the session-end report names the fixture. A test's own leak is still its own."""
    pytester.makepyfile(
        test_lazy="""
        import socket
        import pytest

        KEEP = []

        class LazyClient:
            def __init__(self, addr, closes):
                self.addr, self.closes, self.pool = addr, closes, {"conn": None}
            def ping(self):
                if self.pool["conn"] is None:
                    self.pool["conn"] = socket.create_connection(self.addr)
            def close(self):
                if self.closes and self.pool["conn"] is not None:
                    self.pool["conn"].close()

        @pytest.fixture(scope="session")
        def server():
            with socket.create_server(("127.0.0.1", 0)) as srv:
                yield srv.getsockname()

        @pytest.fixture(scope="session")
        def tidy(server):
            client = LazyClient(server, closes=True)
            yield client
            client.close()

        @pytest.fixture(scope="session")
        def forgetful(server):
            client = LazyClient(server, closes=False)
            yield client
            KEEP.append(client)  # never closed, not even at the session's end

        def test_first(tidy, forgetful):
            tidy.ping()
            forgetful.ping()

        def test_own_leak(server):
            KEEP.append(socket.create_connection(server))
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    out = result.stdout.str()
    assert "ERROR at teardown of test_own_leak" in out
    assert "at teardown of test_first" not in out
    result.stdout.fnmatch_lines(
        [
            "*leaks found after their test ended*",
            "*session-scoped fixture 'forgetful'*",
            "*in LazyClient.ping*",
        ]
    )
    assert "fixture 'tidy'" not in out


def test_what_a_session_fixtures_value_holds_is_the_fixtures_in_the_last_test_too(
    pytester: pytest.Pytester,
) -> None:
    """The session's last test tears its session fixtures down before its check: what it made
    and the value still holds is the fixture's there too, as in the tests before it (a process
    manager that keeps each test's log files, such as pytest-xprocess's)."""
    pytester.makepyfile(
        test_keeper="""
        import pytest

        class Keeper:
            def __init__(self):
                self.files = []
            def keep(self, path):
                self.files.append(open(path, "w"))

        @pytest.fixture(scope="session")
        def keeper():
            yield Keeper()  # its files are never closed

        def test_first(keeper, tmp_path):
            keeper.keep(tmp_path / "first.log")

        def test_last(keeper, tmp_path):
            keeper.keep(tmp_path / "last.log")
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "ERROR at teardown" not in out
    result.stdout.fnmatch_lines(
        [
            "*leaks found after their test ended*",
            # One block, the fixture's, each file during the test that opened it (not "acquired
            # by" the fixture, "during" its setup for the test that first used it).
            "held by session-scoped fixture 'keeper' (set up for test_keeper.py::test_first) "
            "(kept from test_keeper.py::test_first, test_keeper.py::test_last):",
            "*first.log*",
            "*during test_keeper.py::test_first,*",
            "*last.log*",
            "*during test_keeper.py::test_last,*",
            "2 resources leaked by 1 test, fixture or module-level holder *",
        ]
    )


def test_inline_session_keeps_its_leaks_and_restores_the_outer_context(
    pytester: pytest.Pytester,
) -> None:
    """A nested in-process session reports its own leaks and leaves the outer label alone."""
    from reclaim.leaks import current_context, set_context

    stop = threading.Event()
    before = current_context()
    set_context("outer-test")
    try:
        pytester.makepyfile(
            test_inner="""
            import threading
            import pytest

            def test_leaks_a_thread():
                threading.Thread(target=pytest.inner_stop.wait, name="inner-leak").start()
            """
        )
        pytest.inner_stop = stop  # type: ignore[attr-defined]
        result = pytester.runpytest_inprocess(
            "-p", "reclaim.pytest_plugin", "--reclaim", "-o", "reclaim_grace=0.1"
        )
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*inner-leak*"])
        assert current_context() == "outer-test"
    finally:
        stop.set()
        del pytest.inner_stop  # type: ignore[attr-defined]
        set_context(before)


def test_an_in_process_session_loads_the_plugin_again_with_no_rewrite_warning(
    pytester: pytest.Pytester,
) -> None:
    """pytester's in-process runs, as pytest plugins' own suites make them: the inner session
    imports the plugin the outer one loaded already. pytest warns of a module it would have
    rewritten and cannot (a failure under ``-W error``), unless its own docstring says
    ``PYTEST_DONT_REWRITE``: the plugin module, loaded with its bytecode (see _past_rewriter),
    was found imported by the standard path finder and warned, with reclaim merely installed."""
    pytester.makepyfile("def test_ok():\n    assert 1 + 1 == 2\n")
    # -p reclaim: installed, by its entry point (autoloading is off in this suite's runs).
    result = pytester.runpytest_inprocess(
        "-p", "reclaim", "-p", "no:cacheprovider", "-W", "error::pytest.PytestAssertRewriteWarning"
    )
    result.assert_outcomes(passed=1, warnings=0)


def test_a_setup_error_in_pytests_frames_and_generated_code_keeps_its_traceback(
    pytester: pytest.Pytester,
) -> None:
    """An error whose every frame is pytest's, pluggy's or generated code's (a fixture compiled
    from a string, as plugins' fixture machinery does): pytest falls back to the whole traceback.
    reclaim's setup wrappers raised it through their own frames, hidden: all pytest kept, they
    left "All traceback entries are hidden" (28 of coredis's setup errors). For a function- and
    a module-scoped fixture, whose setup reclaim wraps further."""
    pytester.makepyfile(
        """
        import pytest

        SOURCE = (
            "@pytest.fixture\\ndef broken():\\n    raise RuntimeError('boom')\\n"
            "@pytest.fixture(scope='module')\\ndef wide():\\n    raise RuntimeError('boom')\\n"
        )
        namespace = {"pytest": pytest}
        exec(compile(SOURCE, "<generated>", "exec"), namespace)
        broken, wide = namespace["broken"], namespace["wide"]

        def test_uses_broken(broken):
            pass

        def test_uses_wide(wide):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=2)
    out = result.stdout.str()
    assert "All traceback entries are hidden" not in out, out
    assert out.count("<generated>:3: RuntimeError") + out.count("<generated>:6: RuntimeError") == 2, out
    assert "pytest_plugin.py" not in out, out  # nor any frame of reclaim's


def test_a_leak_reported_with_its_test_is_not_reported_again_when_collected(
    pytester: pytest.Pytester,
) -> None:
    """A socket reported open at its test's end and closed by the GC later is reported once."""
    pytester.makepyfile(
        test_once="""
        import gc
        import socket

        KEEP = []

        def test_leaks_a_connected_socket():
            server = socket.create_server(("127.0.0.1", 0))
            KEEP.append(server)

        def test_drops_it():
            KEEP.clear()
            gc.collect()
        """
    )
    result = run(pytester, "-o", "reclaim_collect=false")
    result.assert_outcomes(passed=2, errors=1)
    assert "leaks found after their test ended" not in result.stdout.str()


NESTED_LIB = """
KEEP = []

def load(path):
    KEEP.append(open(path, "w"))

def setup_data(path):
    load(path)
"""

NESTED_OPEN = f"""{NESTED_LIB}
def test_nested(tmp_path):
    setup_data(tmp_path / "a")
"""


def test_reclaim_depth_set_holds_for_files_too(pytester: pytest.Pytester) -> None:
    """With reclaim_depth set, a file's stack goes past two frames, out to the test function."""
    pytester.makepyfile(test_nested=NESTED_OPEN)
    pytester.makeini("[pytest]\nreclaim_depth = 10\n")
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=1, errors=1)
    frames = json.loads((pytester.path / "leaks.json").read_text())["leaks"][0]["frames"]
    assert [(f["line"], f["function"]) for f in frames] == [
        (4, "load"),
        (7, "setup_data"),
        (10, "test_nested"),
    ]


def test_reclaim_depth_unset_keeps_two_frames_for_files(pytester: pytest.Pytester) -> None:
    """Without reclaim_depth a file keeps the cheap default of two frames."""
    pytester.makepyfile(test_nested=NESTED_OPEN)
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=1, errors=1)
    frames = json.loads((pytester.path / "leaks.json").read_text())["leaks"][0]["frames"]
    assert [(f["line"], f["function"]) for f in frames] == [(4, "load"), (7, "setup_data")]


def test_two_frames_of_a_file_short_of_any_test_line_say_how_to_see_more(pytester: pytest.Pytester) -> None:
    """The project's own library, two calls deep: its two frames were the whole stack shown,
    with no line of a test and nothing saying it was cut (found in portalocker's suite). The
    report says how to see the rest; not where a frame is the test's, nor with reclaim_depth set."""
    # The test keeps what the library returns (what the library's own code keeps in its module's
    # list is that list's, reported at the end: see the program caches' test).
    pytester.makepyfile(
        mylib="""
        def load(path):
            return open(path, "w")

        def setup_data(path):
            return load(path)
        """,
        test_lib="""
        import mylib

        KEEP = []

        def test_lib(tmp_path):
            KEEP.append(mylib.setup_data(tmp_path / "a"))
        """,
    )
    hint = "*files keep 2 frames*reclaim_depth*"
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*acquired at mylib.py:2 in load", "*from mylib.py:5 in setup_data", hint])
    result = run(pytester, "-o", "reclaim_depth=8")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*from test_lib.py:6 in test_lib"])
    result.stdout.no_fnmatch_line(hint)
    pytester.makepyfile(test_nested=NESTED_OPEN)
    result = run(pytester, "test_nested.py")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.no_fnmatch_line(hint)


def test_a_stack_cut_short_of_any_test_line_says_how_to_see_more_for_every_kind(
    pytester: pytest.Pytester,
) -> None:
    """The project's own code, eight calls deep, opening a sqlite3 connection: the eight frames
    kept were all its own, two tests' leaks from different lines read as one block, and nothing
    said the stack was cut (coverage's own suite). The report says how to see the rest."""
    calls = "\n".join(f"def level{n}(name):\n    return level{n + 1}(name)\n" for n in range(9))
    pytester.makepyfile(
        deeplib=f"import sqlite3\n\n{calls}\ndef level9(name):\n    return sqlite3.connect(name)\n",
        test_deep="""
        import deeplib

        KEEP = []

        def test_deep():
            KEEP.append(deeplib.level0(":memory:"))
        """,
    )
    hint = "*stacks keep 8 frames, none of them a test's here*reclaim_depth = 16*"
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*acquired at deeplib.py:* in level9", hint])
    result = run(pytester, "-o", "reclaim_depth=16")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*from test_deep.py:6 in test_deep"])
    result.stdout.no_fnmatch_line(hint)


def test_a_stack_cut_short_among_frames_not_shown_says_how_to_see_more(pytester: pytest.Pytester) -> None:
    """A server thread running an event loop whose task opens a socket a few calls down
    (dnspython's test server): the loop's and the thread's frames, never shown, took their share
    of the depth, so the stack shown was shorter than it and no hint said it was cut."""
    pytester.makepyfile(
        server_helper="""
        import asyncio
        import socket
        import threading

        def open_udp(level=3):
            if level:
                return open_udp(level - 1)
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

        class Server(threading.Thread):
            def __enter__(self):
                self.start()
                self.join()
                return self

            def __exit__(self, *exc):
                return False

            def run(self):
                asyncio.run(self.main())

            async def main(self):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self.serve())

            async def serve(self):
                self.kept = open_udp()
        """,
        test_server="""
        from server_helper import Server

        def test_server():
            with Server():
                pass
        """,
    )
    hint = "*stacks keep 8 frames, none of them a test's here*reclaim_depth = 16*"
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*acquired at server_helper.py:* in open_udp", hint])
    result = run(pytester, "-o", "reclaim_depth=16")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*from test_server.py:4 in test_server"])
    result.stdout.no_fnmatch_line(hint)


def test_no_depth_hint_for_a_stack_that_reached_the_test_runner(pytester: pytest.Pytester) -> None:
    """A base class's ``setUp``, which unittest calls, holds no test's line at any depth: the hint
    asked for 16 frames, then at 16 for 32 (locust's test base class), though the frames it cut
    were unittest's and pytest's."""
    pytester.makepyfile(
        service_base="""
        import threading
        import unittest

        class ServiceTestCase(unittest.TestCase):
            def setUp(self):
                self.stop = threading.Event()
                threading.Thread(target=self.stop.wait, name="monitor", daemon=True).start()
        """,
        test_service="""
        from service_base import ServiceTestCase

        class TestThing(ServiceTestCase):
            def test_it(self):
                pass
        """,
    )
    result = run(pytester, "-o", "reclaim_grace=0.1")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*acquired at service_base.py:7 in ServiceTestCase.setUp"])
    result.stdout.no_fnmatch_line("*stacks keep*")


def test_tests_from_files_python_files_does_not_match_are_the_suites_own(pytester: pytest.Pytester) -> None:
    """A module named on the command line is collected whatever its name (aiosqlite's
    ``tests/smoke.py``), and a mixin of test methods may live in a helper module (psycopg2's
    ``dbapi20.py``): by ``python_files`` alone neither was a test's file, so a socket such a test
    kept in its module's global was held by the program until the end, not the test's leak,
    and a stack of the test's own line said it reached no test's. So did one of a decorator's
    wrapper, which pytest calls as the test (psycopg2's ``testutils.py`` connects first)."""
    pytester.makepyfile(
        shared_checks="""
        import socket

        class SharedChecks:
            def test_drops(self):
                self.kept = socket.socket()
                self.kept = None
        """,
        test_uses_shared="""
        from shared_checks import SharedChecks

        class TestShared(SharedChecks):
            pass
        """,
        smoke="""
        import socket

        KEEP = []

        def test_keeps():
            KEEP.append(socket.socket())
        """,
        probing="""
        import functools
        import socket

        def probe_first(test):
            @functools.wraps(test)
            def wrapper(*args, **kwargs):
                wrapper.kept = socket.socket()
                return test(*args, **kwargs)
            return wrapper
        """,
        test_decorated="""
        from probing import probe_first

        @probe_first
        def test_probed():
            pass
        """,
    )
    result = run(pytester, "smoke.py", "test_uses_shared.py", "test_decorated.py")
    result.assert_outcomes(errors=3, passed=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps*",
            "*acquired at smoke.py:6 in test_keeps",
            "*ERROR at teardown of TestShared.test_drops*",
            "*acquired at shared_checks.py:5 in SharedChecks.test_drops",
            "*ERROR at teardown of test_probed*",
            "*acquired at probing.py:7 in probe_first.<locals>.wrapper",
        ]
    )
    result.stdout.no_fnmatch_line("*none of them a test's*")
    result.stdout.no_fnmatch_line("*held by module global*")


@pytest.mark.parametrize(
    ("options", "conftest"),
    [
        pytest.param((), "", id="installed"),
        pytest.param(("-p", "reclaim.pytest_plugin"), "", id="named-by-its-module"),
        pytest.param((), 'pytest_plugins = ["reclaim.pytest_plugin"]', id="a-conftests-pytest_plugins"),
        pytest.param(("-p", "reclaim"), "", id="named-by-its-entry-point"),
    ],
)
@pytest.mark.one_python
def test_every_way_of_naming_the_plugin_loads_it_once(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, options: tuple[str, ...], conftest: str
) -> None:
    """Installed, the plugin is loaded through its entry point; naming it as well (by its module,
    as other plugins' docs say to) made pytest refuse it as registered under another name.

    Each way, reclaim's modules are imported from their bytecode, never by pytest's assertion
    rewriter: pytest marks an installed plugin's whole package, and compiled 31 modules from
    source in every session without a bytecode cache (as here: the tests run under
    ``PYTHONDONTWRITEBYTECODE``), about 0.35 s of each start. The test module is still rewritten."""
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")  # as a user's run: installed plugins load
    pytester.makeconftest(conftest)
    pytester.makepyfile(
        test_leak="""\
        KEEP = []

        def test_leaks():
            KEEP.append(open(__file__))

        def test_reclaims_modules_are_not_pytests_to_compile():
            import sys

            def by_pytest(module):
                return type(getattr(module, "__loader__", None)).__name__ == "AssertionRewritingHook"

            assert by_pytest(sys.modules[__name__])
            compiled = [n for n, m in list(sys.modules.items()) if n.startswith("reclaim") and by_pytest(m)]
            assert set(compiled) <= {"reclaim", "reclaim._past_rewriter"}  # the package, its finder
        """
    )
    result = pytester.runpytest_subprocess(
        *options,
        "-p",
        "no:randomly",
        "-W",
        "error::pytest.PytestAssertRewriteWarning",
        "--reclaim",
        timeout=120,
    )
    result.assert_outcomes(errors=1, passed=2)
    result.stdout.fnmatch_lines(["*this test leaked 1 resource*"])
    errors = result.stdout.str().split("short test summary info")[0]  # the summary repeats them under CI
    assert errors.count("acquired at test_leak.py:4") == 1  # one checker, one report


@pytest.mark.one_python
def test_blocking_the_entry_point_or_the_module_unloads_the_plugin(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD")
    pytester.makeini("[pytest]\nreclaim = true\n")
    pytester.makepyfile(test_leak="KEEP = []\n\ndef test_leaks():\n    KEEP.append(open(__file__))\n")
    for name in ("reclaim", "reclaim.pytest_plugin"):
        result = pytester.runpytest_subprocess("-p", f"no:{name}", "-p", "no:randomly", timeout=120)
        result.assert_outcomes(passed=1)


@pytest.mark.one_python
def test_pytest_frames_are_left_out_when_pytest_is_not_in_site_packages(tmp_path: Path) -> None:
    """pytest and pluggy imported from a PYTHONPATH directory (as `pip --target` makes) are still
    plumbing: the report shows the test's own lines only."""
    import _pytest
    import pluggy

    target = tmp_path / "target"
    for module in (_pytest, pytest, pluggy):
        source = Path(module.__file__ or "").parent
        shutil.copytree(source, target / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_leak.py").write_text(
        "import socket\n\nKEEP = []\n\ndef test_leaks():\n    KEEP.append(socket.socket())\n",
        encoding="utf-8",
    )
    env = dict(os.environ, PYTHONPATH=str(target), PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")  # as pytester's
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *BASE_ARGS, "-c", os.devnull, "test_leak.py", "-q"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = result.stdout + result.stderr
    imported_from = subprocess.run(
        [sys.executable, "-c", "import _pytest; print(_pytest.__file__)"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert imported_from.startswith(str(target)), imported_from
    assert "test_leak.py:6 in test_leaks" in out, out
    assert "_pytest" not in out and "pluggy" not in out, out


@pytest.mark.parametrize(("value", "says"), [("soon", "expected a number"), ("nan", "must be >= 0")])
@pytest.mark.one_python
def test_reclaim_grace_that_is_no_number_of_seconds_is_a_usage_error(
    pytester: pytest.Pytester, value: str, says: str
) -> None:
    """reclaim_grace = soon (or nan) stops the run with a message naming the option."""
    pytester.makepyfile(test_x="def test_x():\n    pass\n")
    pytester.makeini(f"[pytest]\nreclaim_grace = {value}\n")
    result = pytester.runpytest_subprocess(*BASE_ARGS, timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*ini option reclaim_grace: {says}*"])


def test_untracked_descriptor_number_reused_by_a_later_test_is_that_tests_leak(
    pytester: pytest.Pytester,
) -> None:
    """A C-level descriptor reported in one test, closed in the next, its number taken again by
    a third: the third test leaked it (it was blamed on the first, and so never reported)."""
    pytester.makepyfile(
        """
        import ctypes, os
        libc = ctypes.CDLL(None, use_errno=True)
        held = {}

        def test_a_leaks():
            held["a"] = libc.dup(0)

        def test_b_closes_it():
            os.close(held.pop("a"))

        def test_c_leaks_that_number_again():
            held["c"] = libc.dup(0)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=2)
    errors = result.stdout.str().split("short test summary info")[0]  # the summary repeats them under CI
    during = [line.strip() for line in errors.splitlines() if line.strip().startswith("during ")]
    blamed = [line.split("::")[-1].split(",")[0] for line in during]
    assert blamed == ["test_a_leaks", "test_c_leaks_that_number_again"], result.stdout.str()


def test_descriptor_c_code_opened_for_a_session_fixture_is_the_fixtures(pytester: pytest.Pytester) -> None:
    """The fixture closes it at session end: no test is blamed (the first user of the fixture was)."""
    pytester.makepyfile(
        """
        import ctypes, os, pytest
        libc = ctypes.CDLL(None, use_errno=True)

        @pytest.fixture(scope="session")
        def watcher_fd():
            spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(20)]  # a number never used before
            fd = libc.dup(0)
            for held in spare:
                os.close(held)
            yield fd
            os.close(fd)

        def test_first_user(watcher_fd):
            assert watcher_fd > 0

        def test_second_user(watcher_fd):
            assert watcher_fd > 0
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert "untracked-fd" not in result.stdout.str()


def test_a_database_a_test_attaches_to_a_session_fixtures_sqlite_connection_is_the_connections(
    pytester: pytest.Pytester,
) -> None:
    """sqlite's C code opens an ATTACHed database's file: part of the connection, which closes it
    (the test that attached it was blamed for an untracked descriptor); a connection the test
    leaks with one attached is one leak, the connection."""
    pytester.makepyfile(
        """
        import sqlite3, pytest

        KEEP = []

        @pytest.fixture(scope="session")
        def db(tmp_path_factory):
            where = tmp_path_factory.mktemp("db")
            conn = sqlite3.connect(where / "main.db")
            yield conn, where
            conn.close()

        def test_attaches(db):
            conn, where = db
            conn.execute(f"ATTACH DATABASE '{where / 'other.db'}' AS other")
            conn.execute("CREATE TABLE other.t (x)")

        def test_leaks_a_connection_with_one_attached(tmp_path):
            conn = sqlite3.connect(tmp_path / "own.db")
            conn.execute(f"ATTACH DATABASE '{tmp_path / 'own-other.db'}' AS other")
            conn.execute("CREATE TABLE other.t (x)")
            KEEP.append(conn)
        """
    )
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=2, errors=1)
    leaks = json.loads((pytester.path / "leaks.json").read_text())["leaks"]
    assert [(leak["kind"], leak["context"].split("::")[-1]) for leak in leaks] == [
        ("sqlite3", "test_leaks_a_connection_with_one_attached")
    ]


def test_a_database_a_test_attaches_to_a_fixtures_connection_of_another_thread_is_the_connections(
    pytester: pytest.Pytester,
) -> None:
    """A connection made and used in its own thread (aiosqlite's are) refuses to be asked what it
    attached (check_same_thread), and the test that attached a database to the session fixture's
    was blamed for an untracked descriptor; a file C code opened that is no database still is."""
    pytester.makepyfile(
        """
        import ctypes, os, queue, sqlite3, threading, pytest

        libc = ctypes.CDLL(None, use_errno=True)
        KEEP = []

        @pytest.fixture(scope="session")
        def db(tmp_path_factory):
            where = tmp_path_factory.mktemp("db")
            jobs, done = queue.Queue(), queue.Queue()

            def worker():
                conn = sqlite3.connect(where / "main.db")  # check_same_thread: this thread's only
                while (sql := jobs.get()) is not None:
                    conn.execute(sql)
                    done.put(None)
                conn.close()

            thread = threading.Thread(target=worker)
            thread.start()

            def execute(sql):
                jobs.put(sql)
                done.get()

            yield execute, where
            jobs.put(None)
            thread.join()

        def test_attaches(db):
            execute, where = db
            execute(f"ATTACH DATABASE '{where / 'other.db'}' AS other")
            execute("CREATE TABLE other.t (x)")

        def test_leaks_a_file_c_code_opened(db, tmp_path):
            (tmp_path / "notes.txt").write_text("not a database")
            fd = libc.open(os.fsencode(tmp_path / "notes.txt"), os.O_RDONLY)
            assert fd >= 0
            KEEP.append(fd)

        def test_uses_it_after(db):
            execute, _ = db
            execute("INSERT INTO other.t VALUES (1)")
        """
    )
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=3, errors=1)
    leaks = json.loads((pytester.path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["description"], leak["context"].split("::")[-1]) for leak in leaks]
    assert [(kind, what.rsplit("/", 1)[-1], test) for kind, what, test in found] == [
        ("untracked-fd", "notes.txt", "test_leaks_a_file_c_code_opened")
    ]


def test_what_a_session_fixtures_thread_opens_during_a_test_is_the_fixtures(
    pytester: pytest.Pytester,
) -> None:
    """A live-server fixture's thread opens a file while another test runs, and closes it at
    session end: that test did not leak it (it was blamed, though it acquired nothing)."""
    pytester.makepyfile(
        """
        import threading, pytest

        @pytest.fixture(scope="session")
        def server():
            go, opened, stop = threading.Event(), threading.Event(), threading.Event()

            def serve():
                go.wait()
                with open(__file__):  # the server's own, for its lifetime
                    opened.set()
                    stop.wait()

            thread = threading.Thread(target=serve)
            thread.start()
            yield go, opened
            stop.set()
            thread.join()

        def test_starts_the_server(server):
            pass

        def test_runs_while_the_server_opens_its_file(server):
            go, opened = server
            go.set()
            assert opened.wait(30)

        def test_keeps_the_server_up_past_that_one(server):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3)


def test_anyio_runner_task_and_trio_thread_cache_are_not_a_tests_leaks(pytester: pytest.Pytester) -> None:
    """anyio's pytest runner keeps one task per event loop, which Runner.close() cancels by
    design; trio keeps its worker threads process-wide for ~10 s: every anyio test on asyncio
    failed, and a test using trio.to_thread was blamed for trio's thread."""
    pytest.importorskip("anyio")
    pytest.importorskip("trio")
    pytester.makepyfile(
        """
        import asyncio
        import pytest
        import trio

        KEEP = []

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        async def test_empty():
            pass

        def test_trio_worker_thread():
            trio.run(trio.to_thread.run_sync, lambda: None)

        @pytest.mark.anyio
        async def test_a_task_of_its_own_still_leaks(anyio_backend):
            if anyio_backend == "asyncio":
                KEEP.append(asyncio.get_running_loop().create_task(asyncio.sleep(60)))
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "-p", "anyio", "--reclaim", timeout=120)
    result.assert_outcomes(passed=5, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_task_of_its_own_still_leaks[[]asyncio[]]*"])


def test_pycares_channel_reaper_thread_is_not_a_tests_leak(pytester: pytest.Pytester) -> None:
    """pycares starts one daemon thread for the process with its first ``Channel``, to destroy
    the channels closed or dropped: the first test to resolve a name through aiodns (every aiohttp
    ``TCPConnector`` with its ``AsyncResolver``) was blamed for it; a thread of the test's own
    still is."""
    pytest.importorskip("pycares")
    pytester.makepyfile(
        """
        import threading
        import pycares

        def test_makes_a_channel():
            pycares.Channel().close()

        def test_a_thread_of_its_own_still_leaks():
            stop = threading.Event()
            threading.Thread(target=stop.wait, daemon=True).start()
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_a_thread_of_its_own_still_leaks*"])


#: Async test runners' pytest plugins -> (the name pytest loads it by, the fixture an async fixture
#: of that plugin takes to run on the test's loop).
ASYNC_RUNNERS = {"aiomisc": ("aiomisc", ""), "aiohttp": ("aiohttp.pytest_plugin", "loop")}


@pytest.mark.parametrize("runner", list(ASYNC_RUNNERS))
def test_async_runner_frames_are_not_a_leaks_callers(pytester: pytest.Pytester, runner: str) -> None:
    """aiomisc's and aiohttp's pytest plugins run each async test and fixture with
    run_until_complete from their own hooks: those frames were listed as the callers of what a
    test or fixture leaked (every aio-pika test's leak ended "from aiomisc/pytest.py:564 in
    pytest_pyfunc_call", every aiohttp test's "from aiohttp/pytest_plugin.py:218 in
    pytest_pyfunc_call")."""
    pytest.importorskip(runner)
    plugin, loop = ASYNC_RUNNERS[runner]
    pytester.makepyfile(
        f"""
        import asyncio
        import pytest

        KEEP = []

        async def forever():
            await asyncio.sleep(3600)

        @pytest.fixture
        async def ticker({loop}):
            KEEP.append(asyncio.get_running_loop().create_task(forever()))
            yield

        async def test_leaves_a_task():
            KEEP.append(asyncio.get_running_loop().create_task(forever()))

        async def test_its_fixture_leaves_one(ticker):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "-p", plugin, "--reclaim", timeout=120)
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_task*",
            "*acquired at test_async_runner_frames_are_not_a_leaks_callers.py:15 in test_leaves_a_task",
            "*ERROR at teardown of test_its_fixture_leaves_one*",
            "*acquired at test_async_runner_frames_are_not_a_leaks_callers.py:11 in ticker",
        ]
    )
    callers = [text for text in result.stdout.lines if text.lstrip().startswith("from ")]
    assert not [text for text in callers if runner in text], callers


@pytest.mark.one_python
def test_pytest_djangos_in_memory_test_database_is_not_a_fixtures_leak(pytester: pytest.Pytester) -> None:
    """Django's default sqlite test database lives in memory, so its close() keeps the connection
    on purpose and pytest-django never closes it: the session fixture django_db_setup was blamed
    for it. A test's own in-memory database left open still fails that test."""
    pytest.importorskip("pytest_django")
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n")
    pytester.makepyfile(
        settings="""
        SECRET_KEY = "reclaim-tests"
        USE_TZ = True
        DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "app.db"}}
        """,
        test_orm="""
        import sqlite3

        import pytest
        from django.db import connection

        KEEP = []

        @pytest.mark.django_db
        def test_query():
            with connection.cursor() as cursor:
                cursor.execute("select 1")

        def test_own_database_left_open():
            KEEP.append(sqlite3.connect(":memory:"))
        """,
    )
    result = run(pytester, "-p", "django")  # LEAN keeps pytest-django out: this test needs it
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_own_database_left_open*", "*test_orm.py:14*"])
    assert "memorydb" not in result.stdout.str()


#: Django settings whose test database is a file (kept between runs under --reuse-db).
DJANGO_FILE_DATABASE = """
SECRET_KEY = "reclaim-tests"
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": "app.db",
        "TEST": {"NAME": "test_app.db"},
    }
}
"""


@pytest.mark.one_python
def test_pytest_djangos_test_database_connection_kept_for_reuse_db_is_not_a_fixtures_leak(
    pytester: pytest.Pytester,
) -> None:
    """Under ``--reuse-db`` pytest-django keeps the test database, and the connection its session
    fixture django_db_setup opened stays open to the end (a run that destroys the database
    closes it): django_db_setup was blamed for it, failing every such run. A Django connection a
    test's own thread opens and leaves is still reported (see test_leaks_django)."""
    pytest.importorskip("pytest_django")
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n")
    pytester.makepyfile(
        settings=DJANGO_FILE_DATABASE,
        test_orm="""
        import pytest
        from django.db import connection

        @pytest.mark.django_db
        def test_query():
            with connection.cursor() as cursor:
                cursor.execute("select 1")
        """,
    )
    for _ in range(2):  # the first makes the database, the second reuses it
        result = run(pytester, "-p", "django", "--reuse-db")  # LEAN keeps pytest-django out
        result.assert_outcomes(passed=1)
        assert "leaks found after their test ended" not in result.stdout.str()


def test_a_django_connection_a_test_opens_again_after_a_testcase_closed_it_is_the_sessions(
    pytester: pytest.Pytester,
) -> None:
    """Django's ``TestCase.tearDownClass`` closes every connection; the next test's query opens its
    alias's again, and Django keeps it for every later test until django_db_setup's teardown. That
    next test alone was blamed, whichever it was in the run's order (pytest-django's own suite).
    One a test's own thread opens is still the test's."""
    pytest.importorskip("pytest_django")
    pytester.makeini("[pytest]\nDJANGO_SETTINGS_MODULE = settings\npythonpath = .\n")
    pytester.makepyfile(
        settings=DJANGO_FILE_DATABASE,
        test_orm="""
        import threading

        import pytest
        from django.db import connection, connections
        from django.test import TestCase

        def query():
            with connection.cursor() as cursor:
                cursor.execute("select 1")

        class TestDjangoStyle(TestCase):
            def test_query(self):
                query()

        @pytest.mark.django_db
        def test_after_the_testcase():
            query()

        @pytest.mark.django_db
        def test_later():
            query()

        @pytest.mark.django_db(transaction=True)
        def test_in_a_thread():
            worker = threading.Thread(target=query)
            worker.start()
            worker.join()
        """,
    )
    result = run(pytester, "-p", "django", "-p", "no:randomly")  # LEAN keeps pytest-django out
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_in_a_thread*"])
    out = result.stdout.str()
    assert "of test_after_the_testcase" not in out and "leaks found after their test ended" not in out, out


@pytest.mark.one_python
def test_a_librarys_object_a_program_module_imports_by_name_holds_nothing_for_the_program(
    pytester: pytest.Pytester,
) -> None:
    """``from django.db import connections`` in a module of the program: Django's connection
    handler, which keeps each thread's connection, read as a module global of the program, so a
    test's Django connection was "held by module global app.connections" at the end and the test
    passed; with ``import django.db`` it failed. It is the test's either way."""
    pytest.importorskip("django")
    pytester.makeconftest(
        """
        import django
        from django.conf import settings

        settings.configure(DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "app.db"}})
        django.setup()
        """
    )
    pytester.makepyfile(
        app="""
        from django.db import connections

        def query():
            with connections["default"].cursor() as cursor:
                cursor.execute("select 1")
        """,
        test_app="""
        import app

        def test_queries():
            app.query()
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_queries*", "sqlite3 *app.db, Django's connection*"]
    )
    assert "held by module global" not in result.stdout.str()


def test_an_integration_loaded_in_a_test_that_uses_pytester_still_folds_what_it_tracks(
    pytester: pytest.Pytester,
) -> None:
    """pytester (the fixture of pytest plugins' own suites) takes out of ``sys.modules``, as its
    test ends, whatever the test imported: reclaim's integration for a library imported then too.
    Still loaded, it went on tracking, but the check looked it up in ``sys.modules``, found
    nothing, and did not fold: a pexpect spawn dropped unclosed was two entries, the spawn and
    its terminal (pytest-timeout's suite)."""
    pytest.importorskip("pexpect")
    pytester.makepyfile(
        """
        import sys

        pytest_plugins = ["pytester"]

        def test_spawns(pytester):
            import pexpect  # first imported here, after pytester's look at sys.modules

            child = pexpect.spawn(sys.executable, ["-c", "print('hi')"])
            child.read()
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*this test leaked 1 resource:", "pexpect.spawn pid *", "*", "  holds file fd * -> /dev/ptmx*"]
    )


def test_an_integration_pytester_took_out_of_sys_modules_is_not_loaded_a_second_time(
    pytester: pytest.Pytester,
) -> None:
    """The library imported again in a later test runs reclaim's hook again: it imported the
    integration anew, a second copy beside the first, whose wrappers still ran."""
    pytest.importorskip("pexpect")
    pytester.makepyfile(
        """
        from reclaim.leaks import _records

        pytest_plugins = ["pytester"]
        SEEN = []

        def test_first(pytester):
            import pexpect  # first imported here: pytester takes it out again as the test ends

            SEEN.append(_records.integration("_pexpect"))

        def test_second(pytester):
            import pexpect  # imported anew

            assert _records.integration("_pexpect") is SEEN[0]
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_asgirefs_async_to_sync_leaves_no_label_behind_for_later_tests(pytester: pytest.Pytester) -> None:
    """asgiref copies every context variable of the call back to its caller, reclaim's too: after
    one test called async_to_sync, what later tests acquired in the main thread (or in asyncio
    code it ran) carried that test's label, passed its check and was blamed on it at the end."""
    pytest.importorskip("asgiref")
    pytester.makepyfile(
        """
        import asyncio, socket

        from asgiref.sync import async_to_sync

        KEEP = []

        async def nothing():
            pass

        async def connect():
            KEEP.append(socket.socket())

        def test_calls_async_to_sync():
            async_to_sync(nothing)()

        def test_leaks_a_socket():
            KEEP.append(socket.socket())

        def test_leaks_a_socket_in_asyncio():
            asyncio.run(connect())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_socket *",
            "*test_asgirefs_async_to_sync_leaves_no_label_behind_for_later_tests.py:17*",
            "*ERROR at teardown of test_leaks_a_socket_in_asyncio*",
            "*test_asgirefs_async_to_sync_leaves_no_label_behind_for_later_tests.py:11 in connect*",
        ]
    )
    assert "acquired by" not in result.stdout.str()  # nothing left for the session's end


def test_a_second_leak_of_one_kind_by_one_test_found_later_is_still_reported(
    pytester: pytest.Pytester,
) -> None:
    """A test leaks a socket, and a thread it started opens a second one after its teardown:
    leaks were told apart by tracker generation, kind and test, so the second was dropped."""
    pytester.makepyfile(
        """
        import socket, threading

        KEEP = []
        go, opened = threading.Event(), threading.Event()

        def late_open():
            go.wait(30)
            KEEP.append(socket.socket())
            opened.set()

        def test_leaks_two_sockets():
            KEEP.append(socket.socket())
            threading.Thread(target=late_open, daemon=True).start()

        def test_later():
            go.set()
            assert opened.wait(30)
        """
    )
    result = run(pytester, "-o", "reclaim_grace=0")
    output = result.stdout.str()
    late = output.split("leaks found after their test ended")[-1]
    assert "leaks found after their test ended" in output and "socket" in late, output
    assert "test_leaks_two_sockets" in late, output


def test_a_modules_reclaim_allow_covers_its_module_scoped_fixtures(pytester: pytest.Pytester) -> None:
    """A module's pytestmark allowed its tests' leaks but not its module-scoped fixture's: only
    reclaim_ignore_kinds, for the whole run, silenced a fixture's deliberate thread."""
    fixture = """
        import threading, pytest

        STOP = threading.Event()

        @pytest.fixture(scope="module")
        def heartbeat():
            beat = threading.Thread(target=STOP.wait, name="heartbeat", daemon=True)
            beat.start()
            yield beat

        def test_uses_heartbeat(heartbeat):
            assert heartbeat.is_alive()
        """
    pytester.makepyfile(
        test_allowed=fixture + 'pytestmark = pytest.mark.reclaim_allow(kind="thread", match="heartbeat")\n',
        test_not_allowed=fixture,
    )
    result = run(pytester, "-o", "reclaim_grace=0")
    late = result.stdout.str().split("leaks found after their test ended")[-1]
    assert "test_not_allowed.py" in late and "test_allowed.py" not in late, result.stdout.str()


def test_a_collected_cycles_resource_warning_stays_with_the_leaking_test(pytester: pytest.Pytester) -> None:
    """The check's gc.collect() closes a socket held in a reference cycle; its ResourceWarning
    (an error under filterwarnings = error) is reported with the test that leaked it, never at
    the next test's setup."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_cycle="""
        import socket

        class Holder:
            def __init__(self):
                self.me = self
                self.sock = socket.socket()

        def test_cycle_leak():
            Holder()

        def test_next():
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["ERROR test_cycle.py::test_cycle_leak - Failed: reclaim: this test leaked*"])
    assert "test_next - " not in result.stdout.str()
    # The leak report leads and says what the collection raised; no traceback through reclaim.
    result.stdout.fnmatch_lines(
        [
            "reclaim: this test leaked 1 resource:",
            "socket AF_INET/SOCK_STREAM * (closed by the garbage collector, not the program)",
            "  acquired at test_cycle.py:6 in Holder.__init__",
            "*",
            "the check's garbage collection also raised *",
            "  ResourceWarning: unclosed <socket.socket *>",
        ]
    )
    assert "pytest_plugin.py" not in result.stdout.str()


def test_an_exception_the_checks_collection_raises_keeps_its_traceback(pytester: pytest.Pytester) -> None:
    """An exception (not a warning) a finalizer raised in the check's collection of a leaking
    test is in the report with its traceback."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_del="""
        import socket

        class Raises:
            def __init__(self, sock):
                self.me = self
                self.sock = sock

            def __del__(self):
                raise ValueError("from __del__")

        def test_leaks():
            Raises(socket.socket())
        """
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "reclaim: this test leaked 1 resource:",
            "*",
            "  Exception ignored in: <function Raises.__del__ at *>:",
            "    Traceback (most recent call last):",
            '      File "*test_del.py", line 9, in __del__',
            "*",
            "    ValueError: from __del__",
        ],
        consecutive=False,
    )


#: A module's object that connects on first use and keeps the connection (an app's engine).
LAZY_STORE = textwrap.dedent(
    """\
    import sqlite3

    class Store:
        def __init__(self):
            self.conn = None

        def count(self):
            if self.conn is None:  # connects on first use, keeps it
                self.conn = sqlite3.connect(":memory:")
            return self.conn.execute("select 0").fetchone()[0]

    """
)


def test_what_a_module_level_object_keeps_is_not_blamed_on_the_test_that_opened_it(
    pytester: pytest.Pytester,
) -> None:
    """An app's engine made at import keeps the connection its first user opened: the tests
    pass, and the connection, never closed, is reported at the end as that object's. What a
    test stores in a module-level list, or as a module global itself, is still the test's."""
    pytester.makepyfile(
        store=LAZY_STORE + "store = Store()\nKEPT = []\n",
        test_store="""
        import store

        def test_first():
            assert store.store.count() == 0

        def test_second():
            assert store.store.count() == 0

        def test_keeps_in_a_list(tmp_path):
            store.KEPT.append(open(tmp_path / "a", "w"))

        def test_keeps_as_a_global(tmp_path):
            store.LOG = open(tmp_path / "b", "w")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=2)
    out = result.stdout.str()
    assert "ERROR at teardown of test_first" not in out
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_in_a_list*",
            "*ERROR at teardown of test_keeps_as_a_global*",
            "held by module global store.store (kept from test_store.py::test_first):",
            "sqlite3 :memory:*",
        ]
    )


def test_a_test_modules_own_global_is_searched_before_a_large_graph_another_module_keeps(
    pytester: pytest.Pytester,
) -> None:
    """The search for holders shares one budget: another module's registry of 150,000 objects,
    imported first, spent it, and the connection a test module's own global keeps (pony's
    ``db = Database()`` in each test file) was its first user's leak, or not, by what else was
    imported. The running test's module is searched first now."""
    pytester.makepyfile(
        registry="""
        class Registry:  # an ORM's mappings, say: 150,000 objects the collector tracks, no resource
            def __init__(self):
                self.items = [[number] for number in range(150_000)]

        REGISTRY = Registry()
        """,
        test_a_first="""
        import registry

        def test_uses_the_registry():
            assert registry.REGISTRY
        """,
        test_b_store=LAZY_STORE + "store = Store()\n\ndef test_first():\n    assert store.count() == 0\n",
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["held by module global test_b_store.store (kept from *::test_first):"])


def test_what_a_test_functions_decorator_keeps_is_still_the_tests(pytester: pytest.Pytester) -> None:
    """``@patch(..., side_effect=error)``: the error raised in the test keeps the test's frame in
    its traceback, the mock keeps the error, and the decorated test function, a global of the
    test module, keeps the mock: the file the test left open was "held by module global" the
    test itself, reported at the end, and the test passed."""
    pytester.makepyfile(
        test_patched="""
        import os
        from unittest.mock import patch

        @patch("os.getcwd", side_effect=AssertionError("not to be called"))
        def test_file_left_open(getcwd):
            f = open(__file__)
            try:
                os.getcwd()
            except AssertionError:
                pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_file_left_open*", "file *test_patched.py*"])
    assert "held by" not in result.stdout.str()


def test_the_last_test_of_a_class_or_module_is_checked_before_their_teardown(
    pytester: pytest.Pytester,
) -> None:
    """What a test leaves open and a ``tearDownClass`` (or a module's teardown) closes later is
    each test's leak, the last one's too: it was checked after that teardown, and passed alone of
    its class (pygame's ``quit()`` in ``tearDownClass``)."""
    pytester.makepyfile(
        test_last="""
        import unittest

        OPENED = []

        def teardown_module():
            for f in OPENED:
                f.close()

        class TestUnittest(unittest.TestCase):
            @classmethod
            def tearDownClass(cls):
                for f in OPENED:
                    f.close()

            def test_one(self):
                OPENED.append(open(__file__))

            def test_two(self):
                OPENED.append(open(__file__))

        def test_three():
            OPENED.append(open(__file__))

        def test_four():
            OPENED.append(open(__file__))
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=4)


def test_what_a_unittest_setupclass_or_a_class_fixture_keeps_on_the_class_is_not_a_tests(
    pytester: pytest.Pytester,
) -> None:
    """An object a unittest class's ``setUpClass`` (or a class-scoped fixture, through
    ``request.cls``) keeps on the class connects on first use, in a test: it was that test's
    leak, though ``tearDownClass`` closes it. pytest's fixture for ``setUpClass`` yields None;
    the class is the holder."""
    pytester.makepyfile(
        store=LAZY_STORE,
        test_classes="""
        import unittest
        import pytest
        import store

        class TestUnittest(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.store = store.Store()

            @classmethod
            def tearDownClass(cls):
                if cls.store.conn is not None:
                    cls.store.conn.close()

            def test_one(self):
                assert self.store.count() == 0

            def test_two(self):
                assert self.store.count() == 0

        @pytest.fixture(scope="class")
        def class_store(request):
            request.cls.store = store.Store()
            yield
            request.cls.store.conn.close()

        @pytest.mark.usefixtures("class_store")
        class TestPytest:
            def test_one(self):
                assert self.store.count() == 0

        class TestLeaky(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.store = store.Store()

            def test_never_closed(self):
                assert self.store.count() == 0

        class Handle:  # a callable object kept on the class: what it holds is the fixture's too
            def __init__(self):
                self.store = store.Store()

            def __call__(self):
                return self.store.count()

        @pytest.fixture(scope="class")
        def handle(request):
            request.cls.handle = Handle()
            yield
            request.cls.handle.store.conn.close()

        @pytest.mark.usefixtures("handle")
        class TestCallable:
            def test_one(self):
                assert self.handle() == 0

            def test_two(self):
                assert self.handle() == 0

        @pytest.fixture(scope="class")
        def nothing():
            yield

        @pytest.mark.usefixtures("nothing")
        class TestStoresOnItsClass:
            def test_keeps(self):
                # Set by the test, not by a class fixture's setup: the test's (a class-scoped
                # fixture that yields None took everything the class kept).
                type(self).kept = store.Store()
                assert self.kept.count() == 0
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=7, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of TestStoresOnItsClass.test_keeps*"])
    result.stdout.fnmatch_lines(
        [
            "held by class-scoped fixture 'TestLeaky.setUpClass' (set up for *) "
            "(kept from test_classes.py::TestLeaky::test_never_closed):",
            "sqlite3 :memory:*",
        ]
    )
    assert result.stdout.str().count("ERROR at teardown") == 1


def test_what_a_class_attribute_or_a_module_level_cache_keeps_is_not_blamed_on_its_first_user(
    pytester: pytest.Pytester,
) -> None:
    """A singleton kept on its class (``Store._instance``) and the clients a module-level dict
    caches (``get_store(name)``) keep the connections their first user opened: the tests pass,
    and each, never closed, is reported at the end as the holder's. A file a test appends to
    the cache itself, or stores on the class, is still that test's leak, as is what a test
    module's own dict keeps."""
    pytester.makepyfile(
        store=LAZY_STORE
        + textwrap.dedent(
            """
            class Shared(Store):
                _instance = None

                @classmethod
                def get(cls):
                    if cls._instance is None:
                        cls._instance = cls()
                    return cls._instance

            _stores = {}

            def get_store(name):
                if name not in _stores:
                    _stores[name] = Store()
                return _stores[name]
            """
        ),
        test_store="""
        import store

        KEEP = {}

        def test_singleton():
            assert store.Shared.get().count() == 0

        def test_keeps_in_its_own_dict():
            KEEP["mine"] = store.Store()  # a test module's container: what it keeps is the test's
            assert KEEP["mine"].count() == 0

        def test_cache():
            assert store.get_store("orders").count() == 0

        def test_again():
            assert store.Shared.get().count() == store.get_store("orders").count() == 0

        def test_file_in_the_cache(tmp_path):
            store._stores["log"] = open(tmp_path / "a", "w")

        def test_file_on_the_class(tmp_path):
            store.Shared.log = open(tmp_path / "b", "w")

        def test_evicted():
            assert store.get_store("evicted").count() == 0

        def test_evicts():
            del store._stores["evicted"]  # dropped from the cache without being closed
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=8, errors=3)
    out = result.stdout.str()
    assert "ERROR at teardown of test_singleton" not in out
    assert "ERROR at teardown of test_cache" not in out
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_keeps_in_its_own_dict*",
            "*ERROR at teardown of test_file_in_the_cache*",
            "*ERROR at teardown of test_file_on_the_class*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "held by class attribute store.Shared._instance (kept from test_store.py::test_singleton):",
            "sqlite3 :memory:*",
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "held by module global store._stores['orders'] (kept from test_store.py::test_cache):",
            "sqlite3 :memory:*",
        ]
    )
    # What the cache no longer holds at the end is the leak of the test that opened it.
    result.stdout.fnmatch_lines(
        ["acquired by test_store.py::test_evicted:", "sqlite3 :memory:*closed by the garbage collector*"]
    )


def test_a_module_level_cache_of_a_dict_subclass_is_read_without_running_its_methods(
    pytester: pytest.Pytester,
) -> None:
    """A cache that is a dict subclass (``defaultdict``, or one whose ``items()`` or
    ``__iter__`` does work of its own) is looked through with dict's own methods: what it keeps
    is still its, and none of the program's code runs during the search, not even a
    metaclass's ``__eq__`` (which also makes its classes unhashable) for a key's or a class
    attribute's type."""
    pytester.makepyfile(
        store=LAZY_STORE
        + textwrap.dedent(
            """
            class Cache(dict):
                def items(self):
                    raise AssertionError("the program's items() ran")

                def __iter__(self):
                    raise AssertionError("the program's __iter__ ran")

            class Meta(type):
                def __eq__(cls, other):
                    raise AssertionError("the program's __eq__ ran")

            class Key(metaclass=Meta):
                pass

            class Config:
                marker = Key()

            KEY = Key()
            _stores = Cache()

            def get_store(name):
                if name not in _stores:
                    _stores[name] = Store()
                return _stores[name]
            """
        ),
        test_store="""
        import store

        def test_first():
            assert store.get_store("orders").count() == 0
            assert store._stores.setdefault(store.KEY, store.Store()).count() == 0
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    assert "the program's" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "held by module global store._stores['orders'] (kept from test_store.py::test_first):",
            "sqlite3 :memory:*",
        ]
    )
    result.stdout.fnmatch_lines(
        ["held by module global store._stores[[]<Key key #1>[]] (kept from test_store.py::test_first):"]
    )


def test_what_a_module_level_object_keeps_is_shown_acquired_during_the_test_that_opened_it(
    pytester: pytest.Pytester,
) -> None:
    """The block's heading names the holder; its entry says when it was acquired: during the
    test (as loguru's global logger keeps the file of a sink a test added and never removed),
    not "during module global store.store"."""
    pytester.makepyfile(
        store=LAZY_STORE + "store = Store()\n",
        test_store="""
        import store

        def test_first():
            assert store.store.count() == 0
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "held by module global store.store (kept from test_store.py::test_first):",
            "sqlite3 :memory:*",
            "*during test_store.py::test_first, pid*",
        ]
    )
    assert "during module global" not in result.stdout.str()


#: A proxy that builds what it stands for on first use, as Django's ``LazyObject`` (its
#: ``__class__`` is a property that sets it up: ``isinstance`` asks for it) and werkzeug's
#: ``LocalProxy`` do. Setting it up here fails, as Django's admin site does once its app is gone.
LAZY_PROXY = """
    EVALUATED = []

    class Lazy:
        @property
        def __class__(self):
            EVALUATED.append(self)
            raise LookupError("set up outside the program's control")

    class Box:
        def __init__(self, content):
            self.content = content

    site = Lazy()
    app = Box(Lazy())
"""


def test_module_level_lazy_objects_are_looked_through_without_being_set_up(
    pytester: pytest.Pytester,
) -> None:
    """Looking for what module globals hold never sets up a lazy proxy among them (Django's
    ``admin.site``): that ran the program's code, and the session crashed when it raised."""
    pytester.makepyfile(
        lazy=LAZY_PROXY,
        test_lazy="""
        import sqlite3
        import lazy

        def test_leaks():
            lazy.app.kept = sqlite3.connect(":memory:")  # held by a module global at its end

        def test_opens_a_file(tmp_path):
            open(tmp_path / "a", "w")  # a leak: module globals are looked through for it

        def test_nothing_evaluated():
            assert lazy.EVALUATED == []
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=1)
    out = result.stdout.str()
    assert "LookupError" not in out
    result.stdout.fnmatch_lines(
        ["held by module global lazy.app (kept from test_lazy.py::test_leaks):", "sqlite3 :memory:*"]
    )


def test_a_pipe_a_module_level_object_keeps_is_not_blamed_on_the_test_that_made_it(
    pytester: pytest.Pytester,
) -> None:
    """A ``Pipe()`` pair has no object of its own: the object made at import that keeps its
    ends (a process pool's channels, made on first use) holds it, reported at the end."""
    pytester.makepyfile(
        channel="""
        import multiprocessing

        class Channel:
            def __init__(self):
                self.ends = None

            def send(self, value):
                if self.ends is None:  # made on first use, kept
                    self.ends = multiprocessing.Pipe(duplex=False)
                self.ends[1].send(value)
                return self.ends[0].recv()

        channel = Channel()
        """,
        test_channel="""
        import channel

        def test_first():
            assert channel.channel.send(1) == 1

        def test_second():
            assert channel.channel.send(2) == 2
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert "ERROR at teardown" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "held by module global channel.channel (kept from test_channel.py::test_first):",
            "multiprocessing.Pipe() connection pair not closed: both ends open*",
        ]
    )


def test_what_a_decorator_keeps_from_import_is_not_blamed_on_the_test_that_opened_it(
    pytester: pytest.Pytester,
) -> None:
    """A decorator given an object at import keeps it in its function's closure (pebble's
    ``@process(pool=ProcessPool(1))``): what that object opens on first use is the module
    global's, reported at the end, not the first caller's leak."""
    pytester.makepyfile(
        store=LAZY_STORE
        + textwrap.dedent(
            """
            import functools

            def using(store):
                def decorate(function):
                    @functools.wraps(function)
                    def wrapper():
                        return function(store)
                    return wrapper
                return decorate

            @using(Store())
            def count(store):
                return store.count()
            """
        ),
        test_store="""
        import store

        def test_first():
            assert store.count() == 0

        def test_second():
            assert store.count() == 0
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    assert "ERROR at teardown" not in result.stdout.str()
    result.stdout.fnmatch_lines(
        ["held by module global store.count (kept from test_store.py::test_first):", "sqlite3 :memory:*"]
    )


def test_a_handler_a_test_leaves_on_a_logger_is_not_held_by_a_modules_logger(
    pytester: pytest.Pytester,
) -> None:
    """A module's ``log = logging.getLogger(__name__)`` reaches every logger's handlers through
    logging's manager: it holds none of them, so the file of the handler a test left on another
    logger fails that test whether or not such a module is imported. The report names the
    handler and its logger, and how to let it go (hypercorn's suite: "a with-block, close()"
    said nothing of where it was kept)."""
    pytester.makepyfile(
        applog="""
        import logging

        log = logging.getLogger(__name__)
        """,
        test_logs="""
        import logging

        import applog

        def test_leaves_a_handler(tmp_path):
            logging.getLogger("other").addHandler(logging.FileHandler(tmp_path / "other.log"))

        def test_after():
            applog.log.info("after")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaves_a_handler*",
            "file *other.log (mode 'a'), the stream of a logging.FileHandler on logger 'other'"
            " (logger.removeHandler(handler), then handler.close())",
        ]
    )
    assert "module global" not in result.stdout.str()


def test_what_a_module_global_let_go_is_the_tests_again_at_the_end(pytester: pytest.Pytester) -> None:
    """A module global set anew by each test's fixture (dramatiq's ``set_broker``) holds only
    the last test's broker at the end: the earlier one's thread, still running, and its
    connection, closed by the collector, are reported as its test's, not as "held by module
    global"."""
    pytester.makepyfile(
        app="""
        import sqlite3
        import threading

        STOP = threading.Event()
        current = None

        class Broker:
            def __init__(self, name):
                self.thread = threading.Thread(target=STOP.wait, name=name, daemon=True)
                self.thread.start()
                self.db = sqlite3.connect(":memory:")
        """,
        test_app="""
        import gc

        import pytest

        import app

        @pytest.fixture
        def broker(request):
            app.current = app.Broker(f"timer-{request.node.name}")
            return app.current

        def test_first(broker):
            assert broker.thread.is_alive()

        def test_second(broker):
            gc.collect()  # the first broker, dropped by the fixture: its connection is closed now
            assert broker.thread.is_alive()
        """,
    )
    result = run(pytester, "-o", "reclaim_grace=0")
    result.assert_outcomes(passed=2)
    late = result.stdout.str().split("leaks found after their test ended")[-1]
    result.stdout.fnmatch_lines(
        [
            "acquired by test_app.py::test_first:",
            "thread 'timer-test_first'*",
            "sqlite3 :memory:*closed by the garbage collector*",
            "held by module global app.current (kept from test_app.py::test_second):",
            "thread 'timer-test_second'*",
        ]
    )
    assert "kept from test_app.py::test_first" not in late, late


#: A server whose thread runs until the pytester run ends.
SERVER = textwrap.dedent(
    """\
    import threading

    STOP = threading.Event()

    class Server:
        def __init__(self):
            self.thread = threading.Thread(target=STOP.wait, name="serving", daemon=True)
            self.thread.start()
    """
)


def _fails_the_test_that_left_the_server_running(pytester: pytest.Pytester) -> None:
    """Run the pytester files: ``test_leaves_it_running`` errors for the thread ``'serving'`` its
    fixture's server left running, blamed on no module global."""
    result = run(pytester, "-o", "reclaim_grace=0")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaves_it_running*", "thread 'serving'*"])
    assert "module global" not in result.stdout.str()


def test_what_a_function_fixture_left_running_is_not_held_by_pytests_objects(
    pytester: pytest.Pytester,
) -> None:
    """``from pytest import mark`` makes a module global whose mark generator keeps pytest's
    config, which reaches the item and the values of its fixtures: it holds nothing for the
    program, so the thread a function-scoped fixture's server left running fails that test."""
    pytester.makepyfile(
        test_server="""
        import threading

        import pytest
        from pytest import mark

        from server import Server

        @pytest.fixture
        def server():
            yield Server()

        @mark.parametrize("n", [1])
        def test_leaves_it_running(server, n):
            assert server.thread.is_alive()

        def test_after():
            pass
        """
    )
    pytester.makepyfile(server=SERVER)
    _fails_the_test_that_left_the_server_running(pytester)


def test_what_a_fixture_logged_is_not_held_by_the_modules_logger(pytester: pytest.Pytester) -> None:
    """A module's ``logger`` global reaches the records pytest's capture handler keeps: the server a
    fixture logged in its teardown (dramatiq's workers do) was taken over by that logger, and the
    test that left its thread running passed."""
    pytester.makepyfile(
        test_logged="""
        import logging
        import threading

        import pytest

        logger = logging.getLogger(__name__)
        from server import Server

        @pytest.fixture
        def server():
            running = Server()
            yield running
            try:
                raise RuntimeError("stop failed")
            except RuntimeError:
                logger.exception("could not stop %r", running)

        def test_leaves_it_running(server):
            assert server.thread.is_alive()

        def test_after():
            pass
        """
    )
    pytester.makepyfile(server=SERVER)
    _fails_the_test_that_left_the_server_running(pytester)


def test_what_a_test_leaves_on_a_session_event_loop_is_the_tests(pytester: pytest.Pytester) -> None:
    """A session-scoped event loop (or policy) reaches everything every test left on it: it
    holds none of it for the fixture, so a task a test leaves pending is that test's."""
    pytester.makepyfile(
        test_loop="""
        import asyncio
        import pytest

        @pytest.fixture(scope="session")
        def loop():
            loop = asyncio.new_event_loop()
            yield loop
            loop.close()

        async def forever():
            await asyncio.Event().wait()

        def test_leaves_a_task(loop):
            loop.run_until_complete(asyncio.sleep(0))
            loop.create_task(forever())

        def test_other(loop):
            loop.run_until_complete(asyncio.sleep(0))
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaves_a_task*", "task *forever*"])


@pytest.mark.parametrize("workers", [0, 2], ids=["serial", "xdist"])
def test_reclaims_own_failure_at_the_session_end_keeps_pytests_summary(
    pytester: pytest.Pytester, workers: int
) -> None:
    """Two faults this session raised out of the session's last check (a zmq socket's
    ``fileno()``, a KeyError), and pytest died with a traceback: no summary, no counts, no
    ``--reclaim-json`` file. The summary and the file still come, with the traceback in a
    section of reclaim's own, and the run fails as pytest's internal errors do."""
    pytester.makeconftest(
        """
        import reclaim.pytest_plugin

        def broken():
            raise RuntimeError("a fault of reclaim's own")

        reclaim.pytest_plugin._logging_handlers = broken
        """
    )
    pytester.makepyfile(
        test_fine="""
        def test_one():
            pass

        def test_two():
            pass
        """
    )
    xdist = ("-p", "xdist", "-n", str(workers)) if workers else ()
    if workers:
        pytest.importorskip("xdist")
    result = run(pytester, *xdist, "--reclaim-json=leaks.json")
    assert result.ret == pytest.ExitCode.INTERNAL_ERROR
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(
        [
            "*reclaim: the check at the end of the session failed*",
            "RuntimeError: a fault of reclaim's own",
            "This is reclaim's fault, not the tests'*",
        ]
    )
    assert json.loads((pytester.path / "leaks.json").read_text())["count"] == 0


def test_an_error_the_checks_collection_raises_in_a_finalizer_is_shown_without_reclaims_frames(
    pytester: pytest.Pytester,
) -> None:
    """A thread still running makes the check collect; the collection finalizes the test's
    object, whose ``__del__`` raises (and lets the thread end): under ``filterwarnings = error``
    pytest's unraisable-exception warning was raised through reclaim's teardown hook, and read
    as reclaim's crash. Nothing is left to report: the error is the test's, shown without
    reclaim's frames."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_finalizer="""
        import threading

        class Stops:
            def __init__(self, event):
                self.event = event
                self.me = self  # a reference cycle: only a collection finalizes it

            def __del__(self):
                self.event.set()
                raise ValueError("raised in a finalizer")

        def test_leaves_a_cycle():
            event = threading.Event()
            threading.Thread(target=event.wait, daemon=True).start()
            Stops(event)
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    out = result.stdout.str()
    assert "ValueError: raised in a finalizer" in out, out
    assert "reclaim/pytest_plugin.py" not in out and "this test leaked" not in out, out


def test_a_current_session_on_a_packages_class_takes_each_tests_resource(pytester: pytest.Pytester) -> None:
    """rocketry's fixture makes each test a session, set as current on a class of a package
    that comes after its many submodules in ``sys.modules``: every check listed every
    submodule's globals before that class's, at 25 ms a test. The module whose object took
    something is searched first at the next check; globals that reference nothing (a sentinel
    ``object()``) are not listed. Each session is the class attribute's until the next
    replaces it, then its test's again (the collector closed its connection); the last one is
    reported at the end as the class attribute's."""
    pkg = pytester.mkpydir("app")
    for index in range(30):
        (pkg / f"mod{index}.py").write_text(
            "import decimal\n"
            + "".join(f"SENTINEL_{j} = object()\nPRICE_{j} = decimal.Decimal(1)\n" for j in range(20))
        )
    (pkg / "__init__.py").write_text(
        "".join(f"from . import mod{index}\n" for index in range(30))
        + textwrap.dedent(
            """
            import sqlite3

            class Session:
                current = None

                def __init__(self):
                    self.db = sqlite3.connect(":memory:")
                    Session.current = self
            """
        )
    )
    pytester.makeconftest(
        """
        import pytest
        import app

        @pytest.fixture(autouse=True)
        def session():
            return app.Session()
        """
    )
    pytester.makepyfile(
        test_many="import pytest\n\n@pytest.mark.parametrize('n', range(5))\ndef test_one(n):\n    pass\n"
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=5)
    result.stdout.fnmatch_lines(
        [
            "acquired by test_many.py::test_one[[]0[]], *test_one[[]1[]], *test_one[[]2[]] and 1 more:",
            "sqlite3 :memory: (closed by the garbage collector, not the program) x 4*",
            "held by class attribute app.Session.current (kept from test_many.py::test_one[[]4[]]):",
            "sqlite3 :memory:",
        ]
    )
    assert "this test leaked" not in result.stdout.str()


def test_what_the_first_conftests_open_as_they_are_imported_is_the_sessions(
    pytester: pytest.Pytester,
) -> None:
    """pytest imports the conftests of the rootdir and of the paths given before it configures,
    and tracking began at the session's start: what their import opened (dramatiq's
    ``tests/conftest.py`` connected to RabbitMQ through a helper module) went unseen, while what a
    conftest further down, imported during collection, opened was reported. What a conftest's
    ``pytest_configure`` starts and its cleanup stops is still its own."""
    pytester.makeconftest(
        """
        import socket

        KEPT = socket.socket()

        def _probe():
            return socket.socket().fileno() >= 0

        DROPPED = _probe()
        """
    )
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        [
            "acquired by pytest session (pid *): collection and plugins:",
            "socket AF_INET/SOCK_STREAM (fd *)",
            "  acquired at conftest.py:3 in <module>",
            "*",
            "",
            "socket AF_INET/SOCK_STREAM (fd *) (closed by the garbage collector, not the program)",
            "  acquired at conftest.py:6 in _probe",
        ]
    )


def test_what_a_thread_started_before_the_session_acquires_is_no_tests(pytester: pytest.Pytester) -> None:
    """CacheControl's conftest starts its server's thread in ``pytest_configure``, before reclaim
    tracks: that thread had no label, and each connection it accepted was the leak of whichever
    test ran then, though the server closed it a poll later. It is the session's now."""
    pytester.makeconftest(
        """
        import queue
        import threading

        ASK, DONE = queue.Queue(), queue.Queue()

        def serve():
            held = None
            while (order := ASK.get()) is not None:
                if order == "open":
                    held = open("served.log", "w")
                else:
                    held.close()
                DONE.put(order)

        def pytest_configure(config):
            thread = threading.Thread(target=serve, name="server", daemon=True)
            thread.start()

            def stop():
                ASK.put(None)
                thread.join()

            config.add_cleanup(stop)
        """
    )
    pytester.makepyfile(
        test_served="""
        import conftest

        def ask(order):
            conftest.ASK.put(order)
            assert conftest.DONE.get(timeout=30) == order

        def test_opens():
            ask("open")

        def test_closes():
            ask("close")
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "this test leaked" not in out and "leaks found after their test ended" not in out, out


def test_a_plugin_that_reruns_tests_is_plumbing(pytester: pytest.Pytester) -> None:
    """pytest-rerunfailures runs a test's protocol itself (``runtestprotocol``): its frame sat
    under every frame of the test's teardown, and the event loop pytest-asyncio 0.24 makes in a
    finalizer there was acquired "at" that plugin's line, the test's leak. Its frames are
    plumbing, as pytest's are (a stand-in module of its name here)."""
    pytester.makepyfile(
        pytest_rerunfailures=RUNS_THE_PROTOCOL,
        test_rerun="""
        import asyncio

        def test_placeholder_loop(request):
            # As pytest-asyncio's finalizer does: a fresh loop for the next test, made in teardown
            # by plumbing alone.
            request.addfinalizer(asyncio.get_event_loop_policy().new_event_loop)
        """,
    )
    pytester.syspathinsert()
    result = run(pytester, "-p", "pytest_rerunfailures", "-p", "no:randomly")
    result.assert_outcomes(passed=1)
    assert "pytest_rerunfailures.py" not in result.stdout.str(), result.stdout.str()


def test_a_registry_of_exit_finalizers_holds_nothing(pytester: pytest.Pytester) -> None:
    """billiard, installed from source, keeps multiprocessing's registry of exit finalizers as
    ``billiard.util._finalizer_registry``, and its pool's finalizer reaches the pool through its
    arguments: a pool a test never closed was "held by module global" that registry, and the
    test passed. The registry is the exit machinery's, which the leak's report says does not
    excuse it."""
    pytester.makepyfile(
        mylib="""
        import itertools
        import multiprocessing

        _finalizer_registry = {}
        _counter = itertools.count()

        class Finalize:
            def __init__(self, callback, args):
                self._callback = callback
                self._args = args
                _finalizer_registry[(0, next(_counter))] = self

        class Supervisor:
            def __init__(self, pool):
                self.pool = pool

        def make_pool():
            pool = multiprocessing.Pool(1)
            Finalize(print, args=(Supervisor(pool),))
            return pool
        """,
        test_registry="""
        import mylib

        def test_pool_never_closed():
            pool = mylib.make_pool()
            assert pool.apply_async(abs, (-1,)).get(timeout=30) == 1
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_pool_never_closed*", "multiprocessing.Pool not closed*"]
    )


def test_a_program_cache_holds_what_its_own_code_made_and_kept_there(pytester: pytest.Pytester) -> None:
    """pathos caches its pools in a module dict: one keeping the pool itself left it the leak of
    the test that first asked, one keeping the server owning a pool held it. What a program
    module's own code acquired and keeps in its own container is that container's, as an object
    it keeps there holds what it holds; what a test appends there is still the test's. So for a
    container a class keeps (kombu's ``Channel._engines``), and for an entry of several parts
    (``(engine, sessionmaker)``): both were the first user's leak. And for a file the module
    opened and keeps (moto's backend): it was the test's, where a socket was held."""
    pytester.makepyfile(
        app_cache="""
        import socket

        _FILES = {}
        _CLIENTS = {}
        _APPENDED = []

        class Client:
            def __init__(self):
                self.sock = socket.socket()

        def get_client(name):
            if name not in _CLIENTS:
                _CLIENTS[name] = Client()
            return _CLIENTS[name]

        def get_socket(name):
            if name not in _CLIENTS:
                _CLIENTS[name] = socket.socket()
            return _CLIENTS[name]

        def get_pair(name):
            if name not in _CLIENTS:
                _CLIENTS[name] = (socket.socket(), "its session factory")
            return _CLIENTS[name][0]

        def get_file(name, path):
            if name not in _FILES:
                _FILES[name] = open(path, "w")
            return _FILES[name]

        class Channel:
            _engines = {}

            def engine(self, name):
                if name not in self._engines:
                    self._engines[name] = socket.socket()
                return self._engines[name]
        """,
        test_cache="""
        import socket

        import app_cache

        def test_cached_client():
            app_cache.get_client("db")

        def test_cached_socket():
            app_cache.get_socket("raw")

        def test_cached_pair():
            app_cache.get_pair("pair")

        def test_cached_on_the_class():
            app_cache.Channel().engine("url")

        def test_appends_its_own():
            app_cache._APPENDED.append(socket.socket())

        def test_appends_its_own_pair():
            app_cache._APPENDED.append((socket.socket(), 1))

        def test_stores_its_own_on_the_class():
            app_cache.Channel._engines["mine"] = socket.socket()

        def test_cached_file(tmp_path):
            app_cache.get_file("log", tmp_path / "log.txt").write("x")

        def test_stores_its_own_file(tmp_path):
            app_cache._FILES["mine"] = open(tmp_path / "mine.txt", "w")
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=9, errors=4)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_appends_its_own *",
            "*ERROR at teardown of test_appends_its_own_pair*",
            "*ERROR at teardown of test_stores_its_own_on_the_class*",
            "*ERROR at teardown of test_stores_its_own_file*",
        ]
    )
    out = result.stdout.str()
    for holder, test in (
        ("module global app_cache._FILES['log']", "test_cached_file"),
        ("module global app_cache._CLIENTS['db']", "test_cached_client"),
        ("module global app_cache._CLIENTS['raw']", "test_cached_socket"),
        ("module global app_cache._CLIENTS['pair'][0]", "test_cached_pair"),
        ("class attribute app_cache.Channel._engines['url']", "test_cached_on_the_class"),
    ):
        assert f"held by {holder} (kept from test_cache.py::{test})" in out


def test_a_check_imports_nothing(pytester: pytest.Pytester) -> None:
    """The check above failed once in some full runs with ``KeyError: <thread id>`` at an import
    in reclaim's check: on Python 3.11 a collection during an import whose finalizer imports in
    turn breaks importlib's bookkeeping (fixed in 3.12), and a check collects. What a check
    imports is imported when the session starts; a warning the collection sets off, formatted,
    imports nothing new either."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makeconftest(
        """
        import sys
        import pytest

        BEFORE = set()

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_teardown(item):
            BEFORE.update(sys.modules)
            yield
            print("imported in the check:", sorted(set(sys.modules) - BEFORE))
        """
    )
    pytester.makepyfile(
        test_first="""
        import threading

        class Stops:
            def __init__(self, event):
                self.event = event
                self.me = self

            def __del__(self):
                self.event.set()
                raise ValueError("raised in a finalizer")

        def test_leaves_a_cycle():
            event = threading.Event()
            threading.Thread(target=event.wait, daemon=True).start()
            Stops(event)
        """
    )
    result = run(pytester, "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*imported in the check: []*"])


def test_an_object_in_sys_modules_that_is_no_module_breaks_no_check(pytester: pytest.Pytester) -> None:
    """Pyro5's Pyro4 compatibility layer puts objects in ``sys.modules`` whose ``__getattr__``
    raises NotImplementedError: the session's start stopped with an INTERNALERROR, every leaking
    test's check with that error in place of its report, and the session's end with a traceback
    and no summary. So for a module whose own ``__getattr__`` raises."""
    pytester.makeconftest(
        """
        import sys, types

        class Interceptor:
            def __getattr__(self, name):
                raise NotImplementedError(f"no {name} here")

        sys.modules["compat.core"] = Interceptor()
        odd = types.ModuleType("compat.odd")
        def refuse(name):
            raise NotImplementedError(f"no {name} here")
        odd.__getattr__ = refuse
        sys.modules["compat.odd"] = odd
        """
    )
    pytester.makepyfile(
        test_compat="""
        import socket
        KEEP = []

        def test_clean():
            pass

        def test_leaks():
            KEEP.append(socket.socket())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*socket AF_INET/SOCK_STREAM*"])
    assert "NotImplementedError" not in result.stdout.str() + result.stderr.str()


def test_a_pool_an_exit_handler_shuts_down_is_excused_before_the_grace_period(
    pytester: pytest.Pytester,
) -> None:
    """dask's default thread pool, made on first use and shut down by ``atexit``: its threads
    never end by themselves, and the check waited its whole grace period for them before
    excusing them (a second per first use in tqdm's suite). With a grace period of ten minutes,
    the run ends at once, or not within ``run``'s two minutes."""
    pytester.makepyfile(
        pools="""
        import atexit
        from concurrent.futures import ThreadPoolExecutor

        default_pool = None

        def get_pool():
            global default_pool
            if default_pool is None:
                default_pool = ThreadPoolExecutor(2)
                atexit.register(default_pool.shutdown)
            return default_pool
        """,
        test_pools="""
        from pools import get_pool

        def test_first_use():
            assert get_pool().submit(sum, [1, 2]).result() == 3
        """,
    )
    result = run(pytester, "-o", "reclaim_grace=600")
    result.assert_outcomes(passed=1)
    assert "leaked" not in result.stdout.str()


def test_what_an_exit_handler_registered_in_the_earliest_hook_closes_is_no_leak(
    pytester: pytest.Pytester,
) -> None:
    """pytest-cov starts coverage in ``pytest_load_initial_conftests``, before any
    ``pytest_configure``, and coverage registers its exit handler then: the handlers were
    recorded only from reclaim's ``pytest_configure`` on, and what such a handler closes at exit
    was a leak at the session's end. A handler registered that early is seen now."""
    pytester.makepyfile(
        earlyplug="""
        import atexit
        import sqlite3

        class Tool:
            def __init__(self):
                self.to_close = []
                atexit.register(self.close_all)

            def close_all(self):
                for conn in self.to_close:
                    conn.close()

            def pytest_sessionfinish(self, session):
                self.to_close.append(sqlite3.connect(":memory:"))

        def pytest_load_initial_conftests(early_config, parser, args):
            early_config.pluginmanager.register(Tool(), "tool")
        """,
        test_ok="def test_ok():\n    pass\n",
    )
    pytester.syspathinsert()
    result = run(pytester, "-p", "earlyplug")
    result.assert_outcomes(passed=1)
    assert "leaked" not in result.stdout.str()


def test_a_program_module_that_lost_its_name_breaks_no_check(pytester: pytest.Pytester) -> None:
    """loguru's tests take ``__name__`` out of a module's globals (``f_globals.pop``): the search
    for what the program keeps crashed on it, every leaking test's report after was reclaim's
    traceback, the session's end failed (exit status 3) and ``--reclaim-json`` said no leaks."""
    pytester.makepyfile(helper="VALUE = 1\nKEPT = []\n")
    pytester.makepyfile(
        test_nameless="""
        import socket
        import helper

        def test_drops_the_name():
            del helper.__dict__["__name__"]

        def test_leaks():
            socket.socket()
        """
    )
    result = run(pytester, "--reclaim-json=leaks.json")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "*socket AF_INET/SOCK_STREAM*"])
    assert "AttributeError" not in result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert json.loads((pytester.path / "leaks.json").read_text())["count"] == 1


def test_a_log_file_the_app_opens_at_import_is_left_to_logging_shutdown(pytester: pytest.Pytester) -> None:
    """logging.shutdown() closes a registered handler's file, or a SysLogHandler's socket, at exit,
    as reclaim run counts it: not a leak at the end of the session. Another file or socket opened
    at import still is. A handler whose ``socket`` is something else (pyzmq's ``PUBHandler``: a
    closed zmq socket's ``fileno()`` raised ``ZMQError``) or whose stream's ``fileno()`` raises
    its own error crashed the session's end."""
    pytester.makepyfile(
        applog="""
        import logging
        import logging.handlers
        import socket
        logging.basicConfig(filename="app.log", level=logging.INFO)
        logging.getLogger("app").addHandler(logging.FileHandler("audit.log"))
        logging.getLogger("sys").addHandler(logging.handlers.SysLogHandler(("127.0.0.1", 9)))
        CACHE = open("cache.txt", "w")
        PROBE = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        PROBE.bind(("127.0.0.1", 0))

        class Closed(Exception):
            pass

        class NotASocket:
            def fileno(self):
                raise Closed("operation on a closed socket")

        class Odd(logging.Handler):
            socket = NotASocket()
            stream = NotASocket()

        logging.getLogger("odd").addHandler(Odd())
        """,
        test_app="""
        import logging
        import applog

        def test_logs():
            logging.getLogger("app").info("hello")
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "cache.txt" in out and "app.log" not in out and "audit.log" not in out, out
    assert out.count("socket AF_INET/SOCK_DGRAM") == 1 and "applog.py:8" in out, out


APP_LOGGER = """
import logging

log = logging.getLogger("app.access")

def set_log_file(path):
    for handler in list(log.handlers):
        handler.close()
        log.removeHandler(handler)
    log.addHandler(logging.FileHandler(path))
"""

APP_LOG_MANAGER = """
import logging

class LogManager:
    def __init__(self):
        self.access = logging.getLogger("app.access")

    def set_log_file(self, path):
        for handler in list(self.access.handlers):
            handler.close()
            self.access.removeHandler(handler)
        self.access.addHandler(logging.FileHandler(path))

log = LogManager()
set_log_file = log.set_log_file
"""


@pytest.mark.parametrize("applog", [APP_LOGGER, APP_LOG_MANAGER], ids=["logger", "log-manager"])
def test_a_log_file_a_test_sets_on_the_apps_logger_is_the_apps(
    pytester: pytest.Pytester, applog: str
) -> None:
    """CherryPy's tests each set the access log of its module-level log manager, which closes the
    file the test before set: each test failed for the file it set, still open at its end, held
    by the manager's logger (a logger was not looked through at all: its manager reaches every
    logger's handlers). A logger holds its own handlers, kept at module level or by an object
    there; the last file is logging.shutdown()'s at exit. A file a test opens and keeps
    elsewhere is still its leak."""
    pytester.makepyfile(
        applog=applog,
        test_logs="""
        import logging

        import applog
        KEEP = []

        def test_a(tmp_path):
            applog.set_log_file(tmp_path / "access.log")
            logging.getLogger("app.access").warning("a")

        def test_b(tmp_path):
            applog.set_log_file(tmp_path / "access.log")
            logging.getLogger("app.access").warning("b")
            KEEP.append(open(tmp_path / "other.log", "w"))
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    out = result.stdout.str()
    assert "other.log" in out and "access.log" not in out, out
    assert "leaks found after their test ended" not in out


def test_what_closes_at_exit_is_left_to_it(pytester: pytest.Pytester) -> None:
    """psutil's tests open ``os.devnull`` at import and register its ``close`` with atexit: the
    interpreter closes it after pytest's session, as ``reclaim run`` counts it, so it is not a
    leak. So for a handler's argument, a ``partial``'s, a lambda's global, a descriptor handed
    to ``os.close``, a ``weakref.finalize`` of an object kept to the end, a child kept by the
    object whose method is the handler and waits for it (it was "held by module global"), and in
    a module a test imports. A handler unregistered again closes nothing; a finalize the collector runs for an
    owner dropped in a cycle is a leak; another file still leaks."""
    pytester.makepyfile(
        helpers="""
        import atexit
        import functools
        import os
        import socket
        import weakref

        DEVNULL = open(os.devnull, "r+")
        atexit.register(DEVNULL.close)
        LOG = open("log.txt", "w")
        atexit.register(lambda: LOG.close())
        SOCK = socket.socket()
        atexit.register(functools.partial(socket.socket.close, SOCK))
        FD = os.open("raw.bin", os.O_CREAT | os.O_WRONLY)
        atexit.register(os.close, FD)
        KEPT = open("kept.txt", "w")
        atexit.register(KEPT.close)
        atexit.unregister(KEPT.close)

        class Owner:
            pass

        APP = Owner()
        APP_SOCK = socket.socket()
        weakref.finalize(APP, APP_SOCK.close)

        class Registry:  # execnet's Group: its exit handler waits for the children it keeps
            def __init__(self):
                self.children = []
                atexit.register(self.reap)

            def reap(self):
                for child in self.children:
                    child.wait()

        REGISTRY = Registry()
        """,
        lazy="""
        import atexit

        NULL = open("null.txt", "w")
        atexit.register(NULL.close)
        LEFT = open("left.txt", "w")
        """,
        test_uses="""
        import socket
        import weakref

        import helpers

        def test_uses():
            assert not helpers.DEVNULL.closed

        def test_imports_lazily():
            import lazy

        def test_drops_an_owner_in_a_cycle():
            owner = helpers.Owner()
            owner.itself = owner
            dropped = socket.socket()
            weakref.finalize(owner, dropped.close)

        def test_hands_a_child_to_a_registry_that_waits_at_exit():
            import subprocess, sys

            helpers.REGISTRY.children.append(subprocess.Popen([sys.executable, "-c", "pass"]))
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_imports_lazily*", "file left.txt*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_drops_an_owner_in_a_cycle*", "socket *"])
    out = result.stdout.str()
    assert "kept.txt" in out and "1 leaked" in out, out
    assert all(name not in out for name in ("/dev/null", "log.txt", "raw.bin", "null.txt")), out
    assert [line.strip() for line in out.splitlines() if "at helpers.py" in line] == [
        "acquired at helpers.py:15 in <module>"  # kept.txt: of the import's, only it is reported
    ], out


def test_a_bound_method_exit_handler_excuses_only_what_its_code_reaches(pytester: pytest.Pytester) -> None:
    """jupyter_client's kernel manager registers ``cleanup_connection_file``, which removes a
    file: the kernel the manager keeps running was excused with it, as if the handler stopped it.
    A handler's object counts only the attributes its code (and the methods, properties and
    module functions it calls) names; one that reaches them all (``vars(self)``) counts them all."""
    pytester.makepyfile(
        helpers="""
        import atexit
        import os
        import subprocess
        import sys

        class Manager:
            def __init__(self, path):
                self.path = path
                self.kernel = None
                atexit.register(self.cleanup_file)

            def start(self):
                self.kernel = subprocess.Popen([sys.executable, "-c", "pass"])

            def cleanup_file(self):
                if os.path.exists(self.path):
                    os.remove(self.path)

        class Stopper(Manager):
            def __init__(self, path):
                super().__init__(path)
                atexit.register(self.stop)

            def stop(self):
                self._reap()

            def _reap(self):
                _kill(self.kernel)

        def _kill(child):
            child.kill()
            child.wait()

        class Everything(Manager):
            def __init__(self, path):
                super().__init__(path)
                atexit.register(self.close_all)

            def close_all(self):
                for value in vars(self).values():
                    if isinstance(value, subprocess.Popen):
                        value.kill()
                        value.wait()

        MANAGERS = []
        """,
        test_kernels="""
        import helpers

        def test_file_only():
            manager = helpers.Manager("conn.json")
            helpers.MANAGERS.append(manager)
            manager.start()

        def test_stopper():
            manager = helpers.Stopper("conn2.json")
            helpers.MANAGERS.append(manager)
            manager.start()

        def test_everything():
            manager = helpers.Everything("conn3.json")
            helpers.MANAGERS.append(manager)
            manager.start()
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(
        [
            "held by module global helpers.MANAGERS[0] (kept from test_kernels.py::test_file_only):",
            "subprocess pid *",
            "*1 resource leaked by 1 test*",
        ]
    )
    assert "test_stopper" not in result.stdout.str() and "test_everything" not in result.stdout.str()


def test_what_a_thread_an_exit_handler_stops_acquired_and_what_its_code_reaches_deeper_is_no_leak(
    pytester: pytest.Pytester,
) -> None:
    """IPython's HistorySavingThread registers its ``stop()`` and closes its database as it ends;
    ipykernel's app registers its ``close()``, which runs ``self.heartbeat.context.term()``. The
    thread was excused, and what it closes on its way out reported; so was what the handler
    reaches through an attribute of an attribute, by names its code uses."""
    pytester.makepyfile(
        test_stopped="""
        import atexit
        import socket
        import sqlite3
        import threading

        class Saver(threading.Thread):
            def __init__(self, path):
                super().__init__(daemon=True)
                self.path = path
                self.flag = threading.Event()
                self.ready = threading.Event()

            def run(self):
                atexit.register(self.stop)
                db = sqlite3.connect(self.path)
                self.ready.set()
                try:
                    self.flag.wait()
                finally:
                    db.close()

            def stop(self):
                self.flag.set()
                self.join()

        def test_saver(tmp_path):
            saver = Saver(str(tmp_path / "history.sqlite"))
            saver.start()
            saver.ready.wait()

        class Heart:
            def __init__(self):
                self.sock = socket.socket()
                self.spare = socket.socket()

        class App:
            def __init__(self):
                self.heart = Heart()
                atexit.register(self.close)

            def close(self):
                self.heart.sock.close()

        def test_two_levels():
            App()
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_two_levels*", "socket *", "*test_stopped.py:34 in Heart.__init__"]
    )
    out = result.stdout.str()  # under CI=true, pytest's summary repeats each report in full
    assert "sqlite3" not in out and "test_stopped.py:33" not in out, out


def test_what_an_exit_handler_reaches_through_the_methods_it_calls_or_its_modules_list_is_no_leak(
    pytester: pytest.Pytester,
) -> None:
    """OpenTelemetry's providers register their ``shutdown()``, which stops each reader its config
    keeps, and each reader joins its thread: the thread was the test's leak, though ``reclaim
    run`` found none. astropy's ``_deltemps`` removes the temp files its module's list names.
    What the methods a handler calls on the objects it reaches name counts too (a few objects
    deep), and a path in a list its function names; what none names still does not."""
    pytester.makepyfile(
        test_providers="""
        import atexit
        import os
        import tempfile
        import threading
        from pathlib import Path

        class Reader:
            def __init__(self):
                self._stop = threading.Event()
                self._thread = threading.Thread(target=self._stop.wait, daemon=True)
                self._thread.start()
                self._spare = threading.Thread(target=self._stop.wait, daemon=True, name="spare")
                self._spare.start()

            def shutdown(self):
                self._stop.set()
                self._thread.join()

        class Config:
            def __init__(self, readers):
                self.readers = list(readers)

        class Provider:
            def __init__(self, readers):
                self._config = Config(readers)
                atexit.register(self.shutdown)

            def shutdown(self):
                for reader in self._config.readers:
                    reader.shutdown()

        TO_DELETE = []

        @atexit.register
        def _delete():
            while TO_DELETE:
                path = TO_DELETE.pop()
                if path.is_file():
                    path.unlink()

        def test_provider():
            Provider([Reader()])

        def test_download():
            fd, name = tempfile.mkstemp()
            os.close(fd)
            TO_DELETE.append(Path(name))
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_provider*", "thread 'spare' *"])
    out = result.stdout.str()  # under CI=true, pytest's summary repeats each report in full
    assert "test_download" not in out and "Thread-" not in out, out


def test_what_a_holder_let_go_and_a_functions_default_argument_keeps_is_held_by_that(
    pytester: pytest.Pytester,
) -> None:
    """httpie's module-level parser kept the file a test opened, then a later test replaced what
    it kept; the default argument of ``main(env=Environment())`` still kept the file. It was
    reported at the end as the test's, with no holder named. A function's defaults are a
    module's holders, and what one holder lets go another is searched for."""
    pytester.makepyfile(
        app="""
        class Env:
            output = None

        class Parser:
            env = None

        parser = Parser()

        def main(path, env=Env()):
            env.output = open(path, "w")
            parser.env = env

        def reset():
            parser.env = None
        """,
        test_app="""
        import app

        def test_opens(tmp_path):
            app.main(tmp_path / "out.txt")

        def test_resets():
            app.reset()
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["held by module global app.main (kept from test_app.py::test_opens):"])


def test_a_temp_dir_whose_path_a_module_holder_keeps_goes_with_the_file_beside_it(
    pytester: pytest.Pytester,
) -> None:
    """httpie's test environment, kept by a module-level parser, owns a temp file and a
    ``mkdtemp()`` directory, both removed by its ``__del__``: the file went to the holder, the
    directory failed the test as "not removed", and was gone by the end of the run. The very
    str ``mkdtemp()`` returned, kept by the holder, holds the path as it holds the file."""
    pytester.makepyfile(
        holder="""
        import shutil
        import tempfile

        class Env:
            def __init__(self):
                self.file = tempfile.TemporaryFile()
                self.dir = tempfile.mkdtemp()

            def __del__(self):
                self.file.close()
                shutil.rmtree(self.dir, ignore_errors=True)

        current = None

        def use(env):
            global current
            current = env
        """,
        test_env="""
        import holder

        def test_acquires():
            holder.use(holder.Env())

        def test_replaces():
            holder.use(None)
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2)
    out = result.stdout.str()
    assert "not removed" not in out and "tempdir" not in out, out


def test_a_line_that_leaked_in_several_tests_is_summed_up_at_the_end(pytester: pytest.Pytester) -> None:
    """gql's suite: one fixture's executor, never shut down, failed 89 tests, read as 89 unrelated
    errors. The lines that leaked in more than one test are listed once, most tests first."""
    pytester.makepyfile(
        test_many="""
        import socket

        def helper():
            return socket.socket()

        def test_a():
            helper()

        def test_b():
            helper()

        def test_c():
            socket.socket()
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*reclaim: the lines that leaked in more than one test*",
            "2 tests: socket at test_many.py:4 in helper",
        ]
    )
    # The section alone: under CI=true pytest's short summary below it repeats each report in full.
    section = result.stdout.str().split("more than one test")[1].split("short test summary")[0]
    assert "test_many.py:13" not in section, result.stdout.str()


def test_what_a_safety_net_exit_handler_lists_is_still_the_tests_leak(pytester: pytest.Pytester) -> None:
    """paramiko registers at import a handler that stops every transport its module lists: a
    safety net over all live instances, run at exit. A transport thread a test left running was
    excused by it, though it ran on through every later test. Only at the session's end does
    such a handler count; one registered during the test (a provider's own ``shutdown``) still
    counts for what its lists keep."""
    pytester.makepyfile(
        lib="""
        import atexit
        import socket
        import threading

        _active = []

        class Transport(threading.Thread):
            def __init__(self):
                super().__init__(daemon=True)
                self.stop = threading.Event()
                self.sock = socket.socket()
                _active.append(self)

            def run(self):
                self.stop.wait()

            def close(self):
                self.stop.set()
                self.join()
                self.sock.close()

        def _join_lingering():
            for transport in _active:
                transport.close()

        atexit.register(_join_lingering)
        """,
        test_registry="""
        import atexit
        import threading

        import pytest

        import lib

        class Provider:
            def __init__(self):
                self.readers = [lib.Transport()]
                self.readers[0].start()
                atexit.register(self.shutdown)

            def shutdown(self):
                for reader in self.readers:
                    reader.close()

        def test_left_running():
            lib.Transport().start()

        def test_later():
            assert any(isinstance(t, lib.Transport) for t in threading.enumerate())

        def test_provider_shuts_its_own_down_at_exit():
            Provider()

        @pytest.fixture(scope="module")
        def transport():
            kept = lib.Transport()
            kept.start()
            return kept

        def test_uses_a_fixtures_transport(transport):
            pass
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=4, errors=1)
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_left_running*", "*this test leaked 2 resources*"]
    )
    out = result.stdout.str()
    assert "running Transport.run()" in out, out
    assert "test_provider_shuts_its_own_down_at_exit -" not in out, out
    # At the end the handler stops what is left, and closes its socket: neither is reported.
    assert "leaked" not in out.splitlines()[-1], out


def test_what_an_exit_handlers_object_keeps_is_read_without_running_its_code(
    pytester: pytest.Pytester,
) -> None:
    """ipykernel's app registers its ``cleanup_connection_file``; its ``BackgroundSocket`` warns
    (or asserts) in its ``__getattr__``, which the check ran to ask for a ``fileno``: under
    ``filterwarnings = error`` each later test's report was that warning, and the session's last
    check crashed. Nothing of the program's runs there now, and the file is reported."""
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_wrapped="""
        import atexit
        import warnings

        KEEP = []

        class Wrapper:
            io_thread = None

            def __getattr__(self, name):
                warnings.warn(f"accessing {name} is deprecated", DeprecationWarning, stacklevel=2)
                assert self.io_thread is not None
                raise AttributeError(name)

        class App:
            def __init__(self):
                self.sock = Wrapper()

            def cleanup(self):
                print(self.sock)

        def test_registers_cleanup():
            atexit.register(App().cleanup)

        def test_leaks_a_file(tmp_path):
            KEEP.append(open(tmp_path / "x", "w"))
        """,
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks_a_file*", "file *x (mode 'w')"])
    assert "deprecated" not in result.stdout.str() and result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_temp_path_a_waiting_finalize_or_atexit_handler_removes_is_left_to_it(
    pytester: pytest.Pytester,
) -> None:
    """A ``mkdtemp()`` or ``mkstemp()`` path handed to a ``weakref.finalize`` of an object kept
    to the end (a cached filesystem's cache directory) or to an atexit handler is removed at
    exit, so it is no leak; one nothing removes, and a ``TemporaryDirectory`` left to its own
    implicit cleanup, still are."""
    pytester.makepyfile(
        test_paths="""
        import atexit
        import os
        import shutil
        import tempfile
        import weakref

        class Cache:
            def __init__(self):
                self.storage = tempfile.mkdtemp()
                weakref.finalize(self, self._remove, self.storage)

            @staticmethod
            def _remove(path):
                shutil.rmtree(path, ignore_errors=True)

        INSTANCES = {}

        def test_cached():
            INSTANCES["cache"] = Cache()

        def test_atexit_removes_a_temp_file():
            fd, path = tempfile.mkstemp()
            os.close(fd)
            atexit.register(os.remove, path)

        def test_plain_mkdtemp():
            INSTANCES["plain"] = tempfile.mkdtemp(prefix="plain-")

        def test_temporary_directory_kept():
            INSTANCES["tmp"] = tempfile.TemporaryDirectory()
        """,
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_plain_mkdtemp*", "tempdir */plain-*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_temporary_directory_kept*", "tempdir *"])
    out = result.stdout.str()
    assert out.count("ERROR at teardown") == 2 and "mkstemp" not in out, out


def test_temp_paths_inside_a_directory_an_atexit_rmtree_removes_are_left_to_it(
    pytester: pytest.Pytester,
) -> None:
    """A directory handed to ``atexit.register(shutil.rmtree, ...)`` takes what was made in it
    with it (Django's test runner makes the run's TMPDIR so, and its test modules make their
    media roots in it at import): those are no leak; one made elsewhere still is."""
    pytester.makeconftest(
        """
        import atexit
        import os
        import shutil
        import tempfile

        def pytest_configure(config):
            root = tempfile.mkdtemp(prefix="run-")
            atexit.register(shutil.rmtree, root)
            config.rw_root = root
            config.rw_other = os.path.abspath("other")  # removed with the test's own directory
            os.mkdir(config.rw_other)
        """
    )
    pytester.makepyfile(
        test_media="""
        import os
        import tempfile

        KEPT = []

        def test_inside(request):
            KEPT.append(tempfile.mkdtemp(prefix="media-", dir=request.config.rw_root))
            fd, path = tempfile.mkstemp(dir=KEPT[0])
            os.close(fd)

        def test_outside(request):
            KEPT.append(tempfile.mkdtemp(prefix="elsewhere-", dir=request.config.rw_other))
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_outside*", "tempdir */elsewhere-*"])
    out = result.stdout.str()
    assert "media-" not in out and "ERROR at teardown of test_inside" not in out, out


def test_what_a_wider_fixtures_teardown_leaks_is_the_fixtures_not_the_last_tests(
    pytester: pytest.Pytester,
) -> None:
    """A session fixture's teardown runs while the session's last test tears down: what it
    leaves open is the fixture's, reported at the end, never that test's."""
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def recorder(tmp_path_factory):
            directory = tmp_path_factory.mktemp("rec")
            yield directory
            summary = open(directory / "summary.txt", "w")  # left open by the teardown
            summary.write("done")
        """
    )
    pytester.makepyfile(
        test_a="""
        def test_a(recorder):
            pass
        """,
        test_z="""
        def test_z():
            pass
        """,
    )
    result = run(pytester)
    result.assert_outcomes(passed=2)
    label = "session-scoped fixture 'recorder' (set up for test_a.py::test_a)"
    result.stdout.fnmatch_lines([f"acquired by {label}:"])
    assert "ERROR at teardown" not in result.stdout.str()


@pytest.mark.one_python
def test_the_installed_plugins_are_the_test_tools_not_the_conftests(pytester: pytest.Pytester) -> None:
    """Installed plugins' files (pytest-timeout's) are the tools whose threads do not make a check
    wait for an untracked descriptor; a conftest is the program's."""
    pytest.importorskip("pytest_timeout")
    pytester.makeconftest("")
    pytester.makepyfile(
        test_tools="""
        import os

        import pytest_timeout

        from reclaim.leaks import _tracker

        def test_tools():
            assert pytest_timeout.__file__ in _tracker.TOOL_FILES
            assert os.path.join(os.path.dirname(__file__), "conftest.py") not in _tracker.TOOL_FILES
        """
    )
    result = run(pytester, "-p", "pytest_timeout")
    result.assert_outcomes(passed=1)


@pytest.mark.one_python
def test_an_xdist_workers_execnet_thread_is_a_tools(pytester: pytest.Pytester) -> None:
    """A pytest-xdist worker's execnet thread runs for the whole session: it does not make every
    check that found an untracked descriptor wait its grace period."""
    pytester.makepyfile(
        test_worker="""
        import sys

        from reclaim.leaks import _tracker

        def test_only_execnet_runs_beside_it():
            assert len(sys._current_frames()) > 1  # execnet's (started by _thread, not threading)
            assert not _tracker._other_threads_run()
        """
    )
    result = run(pytester, "-p", "xdist", "-n", "1")
    result.assert_outcomes(passed=1)


@pytest.mark.one_python
def test_what_only_plugins_acquire_is_no_tests_leak_under_xdist(pytester: pytest.Pytester) -> None:
    """pytest-asyncio leaves a fresh event loop set at each test's teardown, made by its own code
    alone: in an xdist worker, execnet's bootstrap (``<string>`` code in ``__main__``) took its
    line, and every test that used the loop leaked one, "acquired at <string>:8 in <module>"."""
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_worker="""
        import functools
        import os

        import pytest

        @pytest.fixture
        def plugin_opens(request):
            # Run by pytest alone at teardown, as a plugin's finalizer is: no line of this file
            # is on the stack when the descriptor is opened.
            request.addfinalizer(functools.partial(os.open, os.devnull, os.O_RDONLY))

        def test_uses_it(plugin_opens):
            pass
        """
    )
    result = run(pytester, "-p", "xdist", "-n", "1")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*<string>*")


def test_a_resource_warning_the_check_sets_off_is_shown_at_the_test(pytester: pytest.Pytester) -> None:
    """The socket a test dropped in a reference cycle is finalized by the check's collection:
    its ResourceWarning came from reclaim's frame ("reclaim/leaks/_tracker.py:511"), as if
    reclaim had left it open; it is the test's, at its line."""
    pytester.makepyfile(
        test_cycle="""
        import socket

        class Box:
            def __init__(self):
                self.me = self
                self.sock = socket.socket()

        def test_drops_it():
            Box()
        """
    )
    result = run(pytester, "-W", "always::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_cycle.py:8: ResourceWarning: unclosed <socket.socket*"])
    result.stdout.no_fnmatch_line("*reclaim*ResourceWarning*")


def test_a_warning_the_sessions_last_collection_sets_off_is_not_shown_at_reclaims_line(
    pytester: pytest.Pytester,
) -> None:
    """A coroutine a test made, never awaited and kept in a reference cycle, is finalized by the
    collection at the end of the session, which warns from the frame running then: reclaim's
    ("reclaim/leaks/_tracker.py:508: RuntimeWarning"), as if reclaim had made it. No test runs
    then to show it at: it is shown as the session's end's."""
    test = "def test_drops_it():\n    Box(never_awaited())\n"
    pytester.makepyfile(test_cycle=NEVER_AWAITED_IN_A_CYCLE + test)
    result = run(pytester, "-W", "always::RuntimeWarning")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*<garbage collected at the end of the session>:0: RuntimeWarning: corout*"])
    result.stdout.no_fnmatch_line("*reclaim*RuntimeWarning*")


def test_tests_whose_late_leaks_are_alike_are_one_block(pytester: pytest.Pytester) -> None:
    """Each test's fixture started the same never-ending thread (dramatiq's 190 brokers): one
    block names the tests, the leaks grouped under it, and every test still counts as leaked."""
    pytester.makepyfile(
        app="""
        import threading

        STOP = threading.Event()
        current = None

        class Broker:
            def __init__(self):
                self.thread = threading.Thread(target=STOP.wait, daemon=True)
                self.thread.start()
        """,
        test_app="""
        import pytest

        import app

        @pytest.fixture
        def broker():
            app.current = app.Broker()
            return app.current

        @pytest.mark.parametrize("n", range(5))
        def test_uses_a_broker(broker, n):
            assert broker.thread.is_alive()
        """,
    )
    result = run(pytester, "-o", "reclaim_grace=0")
    result.assert_outcomes(passed=5)
    out = result.stdout.str()
    late = out.split("leaks found after their test ended")[-1]
    assert late.count("acquired by ") == 1, late
    result.stdout.fnmatch_lines(
        [
            "acquired by test_app.py::test_uses_a_broker[[]0[]], test_app.py::test_uses_a_broker[[]1[]], "
            "test_app.py::test_uses_a_broker[[]2[]] and 1 more:",
            "thread * and 3 more from the same line*",
            "held by module global app.current (kept from test_app.py::test_uses_a_broker[[]4[]]):",
        ]
    )
    assert "5 leaked" in out.splitlines()[-1]


def test_fsspecs_io_loop_and_its_thread_are_the_librarys_not_the_first_tests(
    pytester: pytest.Pytester,
) -> None:
    """fsspec runs one event loop for the process in a daemon thread it never stops, made by the
    first filesystem that needs it: not the leak of the test that made that filesystem, while
    a loop and thread the test starts itself the same way still are."""
    # A stand-in for fsspec.asyn with its get_loop() as written there (fsspec is no dependency).
    pytester.mkpydir("fsspec")
    pytester.makepyfile(
        **{
            "fsspec/asyn": """
            import asyncio
            import threading

            loop = [None]
            iothread = [None]

            def get_loop():
                if loop[0] is None:
                    loop[0] = asyncio.new_event_loop()
                    th = threading.Thread(target=loop[0].run_forever, name="fsspecIO")
                    th.daemon = True
                    th.start()
                    iothread[0] = th
                return loop[0]
            """,
            "test_io": """
            import asyncio
            import threading

            from fsspec.asyn import get_loop

            def test_first_filesystem():
                assert get_loop().is_running() or True

            def test_own_loop_thread():
                own = asyncio.new_event_loop()
                threading.Thread(target=own.run_forever, name="mine", daemon=True).start()
            """,
        }
    )
    result = run(pytester, "-o", "reclaim_grace=0")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_own_loop_thread*"])
    out = result.stdout.str()
    assert "fsspecIO" not in out and "test_io.py:8" not in out, out


def test_a_tests_chdir_does_not_move_the_paths_of_later_reports(pytester: pytest.Pytester) -> None:
    """Paths are shown relative to where pytest was started: a test that changes directory and
    never changes back (sanic's CLI tests) made every later report say ``conftest.py:2`` for
    ``tests/conftest.py:2``, and name the files outside that directory by absolute path."""
    pytester.makepyfile(
        **{
            "tests/conftest": """
            def opened(path):
                return open(path, "w")
            """,
            "tests/test_a_moves": """
            import os

            def test_moves_into_its_directory():
                os.chdir(os.path.dirname(__file__))
            """,
            "tests/test_b_leaks": """
            from conftest import opened

            KEEP = []

            def test_leaks(tmp_path):
                KEEP.append(opened(tmp_path / "kept"))
            """,
        }
    )
    result = run(pytester, "-p", "no:randomly", "tests")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            "  acquired at tests/conftest.py:2 in opened",
            "         from tests/test_b_leaks.py:6 in test_leaks",
        ]
    )


def test_a_test_whose_leaks_the_collector_already_closed_pays_for_no_full_collection(
    pytester: pytest.Pytester,
) -> None:
    """A full ``gc.collect()`` changes nothing of a leak already closed by the collector, and
    takes up to a second in a big suite (sanic's: a socket its ``port`` fixture drops, in 120
    tests): it is run only when something is left open, as a socket kept in a list is."""
    pytester.makeconftest(
        """
        import gc

        import pytest

        full = []
        collect = gc.collect

        def counting(generation=2):
            if generation == 2:
                full.append(generation)
            return collect(generation)

        gc.collect = counting

        @pytest.hookimpl(wrapper=True)
        def pytest_runtest_teardown(item):  # around the plugin's check
            before = len(full)
            try:
                return (yield)
            finally:
                print(f"full collections at teardown: {len(full) - before}")
        """
    )
    pytester.makepyfile(
        test_ports="""
        import socket

        KEEP = []

        def test_drops_a_bound_socket():
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))

        def test_keeps_a_socket_open():
            KEEP.append(socket.socket())
        """
    )
    result = run(pytester, "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*full collections at teardown: 0*",
            "*full collections at teardown: 1*",
            "*ERROR at teardown of test_drops_a_bound_socket*",
            "socket AF_INET/SOCK_STREAM 127.0.0.1:* (closed by the garbage collector, not the program)",
        ]
    )


def test_a_test_module_inside_an_installed_package_is_the_program(pytester: pytest.Pytester) -> None:
    """h5py's tests ship in its package and run with ``--pyargs h5py``: a test module under
    ``site-packages`` was not the program, and the report of a file a test dropped left out
    the line that dropped it."""
    tests = pytester.mkdir("site-packages").joinpath("pkgtests")
    tests.mkdir()
    tests.joinpath("__init__.py").write_text("")
    tests.joinpath("test_dropped.py").write_text(
        textwrap.dedent(
            """
            import tempfile

            class Holder:
                def __init__(self, f):
                    self.f = f

                def close(self):
                    self.f = None

            def test_dropped():
                holder = Holder(tempfile.NamedTemporaryFile())
                holder.close()
            """
        )
    )
    result = run(pytester, "site-packages")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*acquired at site-packages/pkgtests/test_dropped.py:12 in test_dropped",
            "  last reference dropped at site-packages/pkgtests/test_dropped.py:9 in Holder.close",
        ]
    )


def test_a_conftest_hook_that_ran_the_test_is_not_where_its_local_was_dropped(
    pytester: pytest.Pytester,
) -> None:
    """A test's local goes as the test returns, while its caller runs: a conftest's
    ``pytest_runtest_protocol`` (or ``pytest_pyfunc_call`` running a coroutine test, or a plugin
    run from its source: pytest-rerunfailures') was named "last reference dropped at", as if
    its line had let go of the file. No line of the program's dropped it; one that did still is
    named."""
    pytester.makeconftest(RUNS_THE_PROTOCOL)
    pytester.makepyfile(
        test_dropped="""
        def test_local(tmp_path):
            f = open(tmp_path / "x", "w")

        def drop(holder):
            holder.clear()

        def test_dropped_by_a_function(tmp_path):
            drop([open(tmp_path / "y", "w")])
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    out = result.stdout.str()
    assert "conftest.py" not in out, out
    result.stdout.fnmatch_lines(["  last reference dropped at test_dropped.py:5 in drop"])
    dropped = {text.strip() for text in out.splitlines() if "last reference dropped at" in text}
    assert dropped == {"last reference dropped at test_dropped.py:5 in drop"}, out


def test_a_test_module_inside_the_standard_library_is_the_program(pytester: pytest.Pytester) -> None:
    """``pytest --pyargs test.test_sqlite3`` runs CPython's own tests from the standard library's
    directory, whose frames are plumbing: what its tests leaked was acquired by no program and
    never reported. A module pytest runs tests from is the program, wherever it lives."""
    pytester.makeconftest(
        """
        import os
        from reclaim import _sites

        # A test module inside the interpreter's standard library cannot be made without writing
        # into the interpreter: this directory stands in for it.
        _sites._STDLIB_DIRS = (*_sites._STDLIB_DIRS, os.path.dirname(os.path.abspath(__file__)) + os.sep)
        _sites._framework_cache.clear()
        _sites._program_cache.clear()
        """
    )
    pytester.makepyfile(
        test_stdlib_like="""
        import sqlite3

        KEEP = []

        def test_leaks():
            KEEP.append(sqlite3.connect(":memory:"))
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*acquired at test_stdlib_like.py:6 in test_leaks*"])


def test_an_owner_whose_weakref_finalize_closes_its_socket_dropped_unclosed_is_a_leak(
    pytester: pytest.Pytester,
) -> None:
    """``weakref.finalize`` is the docs' idiom for ``__del__``: an owner dropped unclosed was
    left to the collector whichever it uses (asyncinotify's ``Inotify`` closes its descriptors
    so). Dropped by its last reference it was not reported; in a cycle, or by ``__del__``, it
    was. Closed, or kept by a module fixture that closes it, it is no leak."""
    pytester.makepyfile(
        test_owners="""
        import socket
        import weakref

        import pytest

        class Watcher:
            def __init__(self):
                self.sock = socket.socket()
                self._finalizer = weakref.finalize(self, self.sock.close)

            def close(self):
                self._finalizer()

        @pytest.fixture(scope="module")
        def shared():
            watcher = Watcher()
            yield watcher
            watcher.close()

        def test_dropped():
            Watcher()

        def test_dropped_as_it_returns():
            watcher = Watcher()
            assert watcher.sock.fileno() >= 0

        def test_closed():
            Watcher().close()

        def test_shared(shared):
            assert shared.sock.fileno() >= 0
        """
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=4, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_dropped *",
            "socket AF_INET/SOCK_STREAM (fd *) (closed by the garbage collector, not the program)",
            "  acquired at test_owners.py:8 in Watcher.__init__",
            "         from test_owners.py:21 in test_dropped",
            "  last reference dropped at test_owners.py:21 in test_dropped",
        ]
    )
    assert "ERROR at teardown of test_dropped_as_it_returns" in result.stdout.str()


def test_c_codes_descriptor_whose_file_a_wider_fixture_removes_is_reported_once(
    pytester: pytest.Pytester,
) -> None:
    """PyTables' tests leak HDF5 handles (C code's descriptors) on files their class's teardown
    removes: the path then reads "... (deleted)", and the descriptor was taken for a new one,
    reported again at the end and blamed on the session."""
    pytester.makepyfile(
        test_removed="""
        import ctypes
        import os
        import shutil
        import tempfile

        import pytest

        LIBC = ctypes.CDLL(None, use_errno=True)

        @pytest.fixture(scope="module")
        def workdir():
            path = tempfile.mkdtemp()
            yield path
            shutil.rmtree(path)

        def test_leaks(workdir):
            path = os.path.join(workdir, "data.h5")
            open(path, "w").close()
            assert LIBC.open(path.encode(), os.O_RDONLY) > 2

        def test_other(workdir):
            assert os.path.isdir(workdir)
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", "untracked-fd fd * -> */data.h5*"])
    assert "leaks found after their test ended" not in result.stdout.str()


def test_c_codes_descriptor_the_checks_collection_closes_is_the_collectors_leak(
    pytester: pytest.Pytester,
) -> None:
    """An object owning a descriptor C code opened (pygit2's ``Repository``, libgit2's pack
    file), dropped in a reference cycle: the check's own collection closed it before it looked
    again, and the test passed. A Python file so dropped was reported. Closed, it is clean."""
    pytester.makepyfile(
        test_handles="""
        import ctypes
        import gc
        import os

        LIBC = ctypes.CDLL(None, use_errno=True)

        class Handle:
            def __init__(self, path):
                self.fd = LIBC.open(os.fsencode(str(path)), os.O_RDONLY)
                assert self.fd >= 0
                self.me = self

            def free(self):
                LIBC.close(self.fd)
                self.fd = -1

            def __del__(self):
                if self.fd >= 0:
                    LIBC.close(self.fd)

        def test_dropped_in_a_cycle(tmp_path):
            (tmp_path / "pack").write_bytes(b"x")
            Handle(tmp_path / "pack")

        def test_freed(tmp_path):
            (tmp_path / "pack").write_bytes(b"x")
            Handle(tmp_path / "pack").free()

        def test_dropped_in_an_old_cycle(tmp_path):
            (tmp_path / "pack").write_bytes(b"x")
            handle = Handle(tmp_path / "pack")
            gc.collect()  # it lives on: in the oldest generation, which the check's first collection spares
            del handle
        """
    )
    result = run(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=3, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_dropped_in_a_cycle *",
            "untracked-fd fd * -> */pack (closed by the garbage collector, not the program)",
        ]
    )
    # Left to a full collection, it was closed unseen, and the test passed: it is reported open,
    # as no full collection runs for C code's descriptors alone (pygit2's suite paid one per test).
    result.stdout.fnmatch_lines(
        ["*ERROR at teardown of test_dropped_in_an_old_cycle *", "untracked-fd fd * -> */pack"]
    )


# A conftest's session fixture ``url``: an HTTP/1.1 server on 127.0.0.1, its do_GET given.
HTTP_CONFTEST = """
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        {do_get}

    def log_message(self, *args):
        pass

@pytest.fixture(scope="session")
def url():
    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    yield f"http://127.0.0.1:{{server.server_address[1]}}/"
    server.shutdown()
    server.server_close()
    thread.join()
"""


def test_a_dropped_http_errors_socket_is_not_said_closed_by_a_private_class_of_the_stdlib(
    pytester: pytest.Pytester,
) -> None:
    """An ``HTTPError`` wraps its response in tempfile's wrapper: dropped, its socket was "closed
    by _TemporaryFileCloser.__del__()", which sent the reader looking for a temporary file
    (dulwich's LFS tests). The line that dropped it is what the entry says now."""
    pytester.makeconftest(HTTP_CONFTEST.format(do_get="self.send_error(404)"))
    pytester.makepyfile(
        test_errors="""
        from urllib.error import HTTPError
        from urllib.request import urlopen

        import pytest

        def test_two_errors(url):
            with pytest.raises(HTTPError) as caught:
                urlopen(url)
            with pytest.raises(HTTPError) as caught:
                urlopen(url)
            caught.value.close()
        """
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["  last reference dropped at test_errors.py:9 in test_two_errors"])
    assert "_TemporaryFileCloser" not in result.stdout.str()


def test_a_task_a_finalizer_makes_as_the_collector_runs_is_not_the_running_tests(
    pytester: pytest.Pytester,
) -> None:
    """s3fs's filesystem schedules its session's close on the running loop from a
    ``weakref.finalize``: one dropped in a cycle by an earlier test was collected while a later
    test ran its loop, and that test failed for five pending tasks it never made."""
    pytester.makepyfile(
        test_finalizing="""
        import asyncio
        import gc
        import weakref

        class Client:
            async def aclose(self):
                await asyncio.sleep(10)

        def close_session(client):
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            loop.create_task(client.aclose())

        class FileSystem:
            def __init__(self):
                self.client = Client()
                self.me = self
                weakref.finalize(self, close_session, self.client)

        def test_drops_one_in_a_cycle():
            gc.disable()  # no collection before the check's: as when the check has nothing to collect for
            FileSystem()

        def test_runs_a_loop():
            gc.enable()

            async def main():
                gc.collect()
                await asyncio.sleep(0)

            asyncio.run(main())
        """
    )
    result = run(pytester, "-o", "reclaim_collect=false")
    result.assert_outcomes(passed=2)


def test_the_end_of_run_section_says_how_to_see_a_files_callers_as_a_tests_report_does(
    pytester: pytest.Pytester,
) -> None:
    """A file leak whose two frames hold no test's line says how to see the callers under a
    test's report; in the section at the end of the run it said nothing (zarr's ZipStore, opened
    on its IO thread, in xarray's suite)."""
    pytester.makepyfile(
        deep="""
        def opened(path):
            return really_opened(path)

        def really_opened(path):
            return open(path, "w")
        """
    )
    pytester.makeconftest(
        """
        import pytest

        import deep

        @pytest.fixture(scope="session")
        def log(tmp_path_factory):
            return deep.opened(tmp_path_factory.mktemp("logs") / "log.txt")
        """
    )
    pytester.makepyfile(test_logs="def test_logs(log):\n    log.write('x')\n")
    result = run(pytester)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(
        ["*leaks found after their test ended*", "*deep.py:5 in really_opened*", "(files keep 2 frames*"]
    )


def test_a_programs_wrapper_of_a_responses_close_is_not_where_it_was_dropped(
    pytester: pytest.Pytester,
) -> None:
    """sentry-sdk wraps ``HTTPResponse.close``: a response dropped unclosed, whose finalizer's
    close() ran that wrapper first, was "dropped at" the wrapper's line, not the test's."""
    ok = 'self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); '
    ok += 'self.wfile.write(b"ok")'
    pytester.makeconftest(HTTP_CONFTEST.format(do_get=ok))
    pytester.makepyfile(
        test_wrapped="""
        from http.client import HTTPResponse
        from urllib.request import urlopen

        real_close = HTTPResponse.close

        def close(self):
            real_close(self)

        HTTPResponse.close = close

        def test_drops_its_response(url):
            urlopen(url)
        """
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*dropped at test_wrapped.py:12 in test_drops_its_response*"])


def test_an_os_open_descriptor_c_code_closed_is_not_the_file_that_took_its_number(
    pytester: pytest.Pytester,
) -> None:
    """libsndfile closes the descriptor a ``SoundFile`` is given: reclaim never saw the close,
    and a file opened next on the same path got the number, so the descriptor read as still
    open, reported beside the file (two entries for one descriptor)."""
    pytester.makepyfile(
        test_reused="""
        import ctypes
        import os

        LIBC = ctypes.CDLL(None, use_errno=True)
        KEEP = []

        def test_reopens(tmp_path):
            path = tmp_path / "data.bin"
            path.write_bytes(b"x")
            fd = os.open(path, os.O_RDONLY)
            assert LIBC.close(fd) == 0
            KEEP.append(open(path, "rb"))
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*this test leaked 1 resource:", "file */data.bin (mode 'rb')"])
    assert "(os.open)" not in result.stdout.str()


def test_no_full_collection_for_what_the_tests_fixtures_surely_keep_alive(pytester: pytest.Pytester) -> None:
    """pottery's fixtures never close their clients: each of its tests paid a full collection
    (55 ms on a 300k-object heap, 3.7x the suite's CPU) that could close nothing, as the fixture's
    value still held the client. What the test's fixtures reach is alive: no collection for it,
    C code's descriptors beside it or not (a connected gRPC channel's sockets are C code's).
    A socket a test drops in a reference cycle is still collected, and reported so."""
    pytester.makeconftest(
        """
        import gc

        FULL = []
        COUNTING = []

        def counted(phase, info):
            if phase == "start" and info["generation"] == 2 and COUNTING:
                FULL.append(1)

        gc.callbacks.append(counted)

        def pytest_runtest_logstart(nodeid, location):
            COUNTING[:] = [1]

        def pytest_runtest_logfinish(nodeid, location):
            COUNTING.clear()

        def pytest_terminal_summary(terminalreporter):
            terminalreporter.write_line(f"full collections: {len(FULL)}")
        """
    )
    pytester.makepyfile(
        test_kept="""
        import ctypes
        import socket

        import pytest

        @pytest.fixture
        def conn():
            return socket.socket()

        @pytest.mark.parametrize("i", range(5))
        def test_leaks_through_its_fixture(conn, i):
            assert conn.fileno() >= 0

        LIBC = ctypes.CDLL(None, use_errno=True)

        class Channel:  # a gRPC channel's shape: its sockets are C code's
            def __init__(self):
                self.sock = socket.socket()
                fds = (ctypes.c_int * 2)()
                assert LIBC.pipe(fds) == 0
                self.fds = list(fds)

        @pytest.fixture
        def channel():
            return Channel()

        @pytest.mark.parametrize("i", range(5))
        def test_leaks_c_descriptors_too(channel, i):
            assert channel.sock.fileno() >= 0
        """
    )
    result = run(pytester, "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=10, errors=10)
    [line] = [line for line in result.outlines if line.startswith("full collections: ")]
    assert int(line.split(": ")[1]) <= 1, result.stdout.str()


def test_a_doctests_leak_is_at_its_example_with_no_depth_hint(pytester: pytest.Pytester) -> None:
    """urwid's doctests: a leak's stack ends at the example that made it, the test's own line,
    yet the report asked for 16 frames, then at 16 for 32."""
    pytester.makepyfile(
        screens='''
        import socket

        class Screen:
            """
            >>> s = Screen()
            >>> s.ok
            True
            """

            def __init__(self):
                self.rd, self.wr = socket.socketpair()
                self.ok = True
        '''
    )
    result = run(pytester, "--doctest-modules", "-W", "ignore::ResourceWarning")
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*acquired at screens.py:11 in Screen.__init__", "*from <doctest screens.Screen?0?>:1*"]
    )
    result.stdout.no_fnmatch_line("*stacks keep*")
