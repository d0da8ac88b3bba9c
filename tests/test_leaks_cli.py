"""``reclaim run``: real scripts run in a child process, checked against plain ``python``."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import pickletools
import signal
import subprocess
import sys
import textwrap
import time
import zipapp
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from _leakhelp import NEVER_AWAITED_IN_A_CYCLE
from reclaim import cli

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 60


def write(path: Path, source: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source), encoding="utf-8")
    return path


def reclaim_run(
    *args: str | Path, cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reclaim", "run", *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=env,
    )


def plain_python(*args: str | Path, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


LEAKY = """\
    import sys
    LEAKED = open(__file__)  # the leak, line 2
    code = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    sys.exit(code)
"""

CLEAN = """\
    with open(__file__) as f:
        f.read()
"""

INTROSPECT = """\
    import json, os, sys
    import __main__
    line = sys.stdin.readline()
    print(json.dumps({
        "argv": sys.argv,
        "name": __name__,
        "file": __file__,
        "path0": sys.path[0],
        "main_is_module": __main__.__dict__ is globals(),
        "stdin": line,
        "spec": repr(__spec__),
    }))
"""


def test_script_sees_the_same_argv_main_path_and_stdio_as_under_python(tmp_path: Path) -> None:
    """argv, __name__, __file__, sys.path[0], __main__, stdin and stdout match plain python."""
    script = write(tmp_path / "app" / "introspect.py", INTROSPECT)
    args = ("app/introspect.py", "--port", "8080", "-m", "x")
    ours = reclaim_run(*args, cwd=tmp_path, stdin="hello\n")
    theirs = plain_python(*args, cwd=tmp_path, stdin="hello\n")
    assert ours.returncode == theirs.returncode == 0, ours.stderr
    assert ours.stdout == theirs.stdout
    seen = json.loads(ours.stdout)
    assert seen["argv"] == ["app/introspect.py", "--port", "8080", "-m", "x"]
    assert seen["path0"] == str(script.parent)
    assert seen["main_is_module"] is True
    assert "no leaks" in ours.stderr


@pytest.mark.parametrize("code", [0, 1, 4, 42])
def test_exit_status_is_the_programs(tmp_path: Path, code: int) -> None:
    """sys.exit(N) exits N under reclaim, leaks or not (without --fail)."""
    write(tmp_path / "leaky.py", LEAKY)
    result = reclaim_run("leaky.py", str(code), cwd=tmp_path)
    assert result.returncode == code
    assert "leaked 1 resource" in result.stderr


@pytest.mark.parametrize(("code", "status"), [("-15", 241), ("256", 0), ("True", 1), ("False", 0)])
def test_report_and_fail_see_the_status_the_process_exits_with(
    tmp_path: Path, code: str, status: int
) -> None:
    """The low 8 bits of sys.exit(N), as the C exit() keeps them; a bool is 0 or 1."""
    write(tmp_path / "odd.py", f"import sys\nf = open(__file__)\nsys.exit({code})\n")
    theirs = plain_python("odd.py", cwd=tmp_path)
    ours = reclaim_run("odd.py", cwd=tmp_path)
    assert ours.returncode == theirs.returncode == status
    assert f"exit status {status})" in ours.stderr
    failing = reclaim_run("--fail", "odd.py", cwd=tmp_path)
    assert failing.returncode == (3 if status == 0 else status)


RERUNS_ITSELF = """\
    import os, subprocess, sys
    if os.environ.get("RERUN") is None:  # the parent, as werkzeug's reloader re-runs sys.orig_argv
        child = subprocess.run([sys.executable, *sys.orig_argv[1:]], env={**os.environ, "RERUN": "1"})
        print("child exited", child.returncode, flush=True)
    else:
        LEAKED = open(__file__)  # the child's leak, line 6
"""


def test_a_program_that_reruns_itself_under_reclaim_run_keeps_the_outer_runs_json_and_status(
    tmp_path: Path,
) -> None:
    """The copy reports its own leak, writes PATH with its pid and exits as the program does:
    --fail's 3 would have told werkzeug's reloader to restart it, for ever."""
    write(tmp_path / "rerun.py", RERUNS_ITSELF)
    result = reclaim_run("--fail", "--json", "out.json", "rerun.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "child exited 0\n"
    assert "leaked 1 resource" in result.stderr and "rerun.py:6" in result.stderr
    assert json.loads((tmp_path / "out.json").read_text())["leaks"] == []
    [child] = list(tmp_path.glob("out.*.json"))
    assert [leak["kind"] for leak in json.loads(child.read_text())["leaks"]] == ["file"]
    # Another command run by the program (a CI script checking a tool) keeps its own --fail.
    write(tmp_path / "leaky.py", LEAKY)
    write(
        tmp_path / "checks.py",
        """\
        import subprocess, sys
        tool = subprocess.run([sys.executable, "-m", "reclaim", "run", "--fail", "leaky.py"])
        print("tool exited", tool.returncode, flush=True)
        """,
    )
    outer = reclaim_run("checks.py", cwd=tmp_path)
    assert outer.stdout == "tool exited 3\n", outer.stderr


def test_sys_exit_with_a_message_prints_it_and_exits_1(tmp_path: Path) -> None:
    """sys.exit("message") prints the message and exits 1, then the report follows."""
    write(tmp_path / "bye.py", "import sys\nf = open(__file__)\nsys.exit('bye now')\n")
    result = reclaim_run("bye.py", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.index("bye now") < result.stderr.index("leaked 1 resource")


def test_uncaught_exception_prints_the_programs_traceback_then_the_report(tmp_path: Path) -> None:
    """An uncaught exception: Python's traceback (no reclaim frames), the report, exit 1."""
    write(
        tmp_path / "crash.py",
        """\
        f = open(__file__)
        def handler():
            raise ValueError("no such order")
        handler()
        """,
    )
    result = reclaim_run("crash.py", cwd=tmp_path)
    theirs = plain_python("crash.py", cwd=tmp_path)
    assert result.returncode == theirs.returncode == 1
    traceback = result.stderr[: result.stderr.index("ValueError: no such order")]
    assert traceback == theirs.stderr[: theirs.stderr.index("ValueError: no such order")]
    assert "reclaim" not in traceback and "runpy" not in traceback
    assert "leaked 1 resource" in result.stderr


# With a timeout given positionally, Python 3.13's connect() warns (DeprecationWarning, shown
# for __main__) about the frame that called it: the program's, never reclaim's replacement.
@pytest.mark.parametrize(
    "connect", ['sqlite3.connect("/nonexistent/orders.db")', 'sqlite3.connect("/nonexistent/orders.db", 5.0)']
)
def test_a_failed_open_or_connect_shows_no_frame_of_reclaims_replacements(
    tmp_path: Path, connect: str
) -> None:
    """open() and sqlite3.connect() raise through reclaim's replacements: the traceback (the
    chained one too) and the warnings are the ones plain python prints, with no frame of
    reclaim's at its tip."""
    write(
        tmp_path / "missing.py",
        f"""\
        import sqlite3
        def load():
            try:
                open("/nonexistent/orders.json")
            except OSError:
                {connect}
        load()
        """,
    )
    result = reclaim_run("missing.py", cwd=tmp_path)
    theirs = plain_python("missing.py", cwd=tmp_path)
    assert result.returncode == theirs.returncode == 1
    assert result.stderr.startswith(theirs.stderr), result.stderr


def test_a_warning_the_exit_checks_collection_sets_off_is_shown_as_pythons_own(tmp_path: Path) -> None:
    """A coroutine never awaited, kept in a reference cycle, is finalized by the exit check's
    collection, which warns from the frame running then: reclaim's ("reclaim/leaks/_tracker.py:
    509: RuntimeWarning"), as if reclaim had made it. Without reclaim, the interpreter's own
    collection at exit finalizes it, shown at no line of the program's: so it is under reclaim run
    too."""
    (tmp_path / "cycle.py").write_text(NEVER_AWAITED_IN_A_CYCLE + "Box(never_awaited())\n", encoding="utf-8")
    [warning] = plain_python("-W", "always", "cycle.py", cwd=tmp_path).stderr.splitlines()
    # sys:1 before 3.13, <sys>:0 since.
    assert warning.endswith(": RuntimeWarning: coroutine 'never_awaited' was never awaited")
    result = reclaim_run("cycle.py", cwd=tmp_path, env={**os.environ, "PYTHONWARNINGS": "always"})
    assert result.returncode == 0, result.stderr
    assert warning in result.stderr
    assert "_tracker.py" not in result.stderr


def test_a_zip_application_runs_and_a_script_does_not_import_zipfile(tmp_path: Path) -> None:
    """A .pyz runs as python runs it; telling a script from one imports zipfile only for a zip."""
    source = tmp_path / "src"
    write(
        source / "__main__.py",
        "import sys\nprint('zipfile' in sys.modules)\nf = open(sys.argv[1], 'w')\n",
    )
    zipapp.create_archive(source, tmp_path / "app.pyz")
    ours = reclaim_run("app.pyz", "out.txt", cwd=tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == plain_python("app.pyz", "out.txt", cwd=tmp_path).stdout
    assert "leaked 1 resource" in ours.stderr and "out.txt (mode 'w')" in ours.stderr
    write(tmp_path / "plain.py", "import sys\nprint('zipfile' in sys.modules)\n")
    assert reclaim_run("plain.py", cwd=tmp_path).stdout == plain_python("plain.py", cwd=tmp_path).stdout
    assert plain_python("plain.py", cwd=tmp_path).stdout == "False\n"


def test_fail_exits_3_when_a_clean_exit_leaked(tmp_path: Path) -> None:
    """--fail: a program that exited 0 but leaked exits 3; a clean one exits 0."""
    write(tmp_path / "leaky.py", LEAKY)
    write(tmp_path / "clean.py", CLEAN)
    assert reclaim_run("--fail", "leaky.py", cwd=tmp_path).returncode == 3
    assert reclaim_run("--fail", "clean.py", cwd=tmp_path).returncode == 0


def test_fail_keeps_a_failing_programs_own_status(tmp_path: Path) -> None:
    """--fail never hides the program's own failure: its non-zero status wins."""
    write(tmp_path / "leaky.py", LEAKY)
    assert reclaim_run("--fail", "leaky.py", "5", cwd=tmp_path).returncode == 5


def test_report_names_the_kind_the_path_and_the_line_that_acquired_it(tmp_path: Path) -> None:
    """The text report says what leaked and the user's file:line that acquired it."""
    write(tmp_path / "leaky.py", LEAKY)
    result = reclaim_run("leaky.py", cwd=tmp_path)
    assert "file" in result.stderr
    assert "leaky.py:2" in result.stderr
    assert f"pid {result.stderr.split('pid ')[1].split(')')[0]}" in result.stderr


def test_json_report_is_written(tmp_path: Path) -> None:
    """--json PATH writes the machine-readable report."""
    write(tmp_path / "leaky.py", LEAKY)
    out = tmp_path / "leaks.json"
    result = reclaim_run("--json", out, "leaky.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["schema"] == "reclaim.leaks/1"
    assert [leak["kind"] for leak in data["leaks"]] == ["file"]


def test_ignore_leaves_a_kind_out(tmp_path: Path) -> None:
    """--ignore KIND drops leaks of that kind from the report and from --fail."""
    write(tmp_path / "leaky.py", LEAKY)
    result = reclaim_run("--ignore", "file", "--fail", "leaky.py", cwd=tmp_path)
    assert result.returncode == 0
    assert "no leaks" in result.stderr


def test_allow_leaves_out_what_matches_only(tmp_path: Path) -> None:
    """--allow KIND:REGEX drops the leaks it matches (by description or site) from the report and
    from --fail; the others stay."""
    write(
        tmp_path / "two.py",
        """\
        import socket
        CACHE = open(__file__)
        PEER = socket.socket()
        """,
    )
    result = reclaim_run("--allow", "file:two\\.py", "--fail", "two.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "leaked 1 resource (1 socket)" in result.stderr, result.stderr
    result = reclaim_run("--allow", "file:two.py", "--allow", "*:two.py:3", "--fail", "two.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no leaks" in result.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--ignore", "sockets", "x.py"), "--ignore"),
        (("--allow", "heartbeat", "x.py"), "argument --allow: 'heartbeat' is not KIND:REGEX"),
        (("--allow", "files:x", "x.py"), "argument --allow: unknown kind 'files'"),
        (("--depth", "0", "x.py"), "--depth"),
        (("--grace", "-1", "x.py"), "argument --grace: must be >= 0, got -1.0"),
        (("--unwind-timeout", "0", "x.py"), "argument --unwind-timeout: must be a number of seconds > 0"),
        (("--unwind-timeout", "nan", "x.py"), "argument --unwind-timeout: must be a number of seconds > 0"),
        (("--unwind-timeout", "soon", "x.py"), "argument --unwind-timeout: invalid float value: 'soon'"),
        (("--grace", "1"), "give the program to run"),
    ],
)
def test_bad_options_are_usage_errors_naming_the_option(
    args: tuple[str, ...], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A wrong option is a usage error (exit 2) whose message names it; so is a missing program.
    Parsed here, in this process: nothing runs before the options are checked."""
    with pytest.raises(SystemExit) as exited:
        cli.main(["run", *args])
    assert exited.value.code == 2
    assert words in capsys.readouterr().err


def test_a_usage_error_exits_2_before_the_program_runs(tmp_path: Path) -> None:
    write(tmp_path / "x.py", "open(__file__, 'w').write('ran')")
    result = reclaim_run("--depth", "0", "x.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "argument --depth: must be at least 1, got 0" in result.stderr
    assert (tmp_path / "x.py").read_text() != "ran"


def test_missing_script_is_reported_like_python_does(tmp_path: Path) -> None:
    """A script that does not exist: "can't open file", exit 2, as python says."""
    result = reclaim_run("nope.py", cwd=tmp_path)
    assert result.returncode == plain_python("nope.py", cwd=tmp_path).returncode == 2
    assert "can't open file" in result.stderr


def test_module_mode_runs_the_module_as_main(tmp_path: Path) -> None:
    """-m pkg runs pkg/__main__.py with python's argv and sys.path[0], and its exit status."""
    write(tmp_path / "shop" / "__init__.py", "")
    write(
        tmp_path / "shop" / "__main__.py",
        """\
        import json, sys
        print(json.dumps({"argv": sys.argv, "name": __name__, "path0": sys.path[0]}))
        sys.exit(6)
        """,
    )
    ours = reclaim_run("-m", "shop", "--verbose", cwd=tmp_path)
    theirs = plain_python("-m", "shop", "--verbose", cwd=tmp_path)
    assert ours.returncode == theirs.returncode == 6
    assert ours.stdout == theirs.stdout
    assert json.loads(ours.stdout)["argv"][1:] == ["--verbose"]


def test_module_mode_reports_the_modules_leaks(tmp_path: Path) -> None:
    """-m module: the module's leaks are reported with its file and line."""
    write(tmp_path / "worker.py", "import socket\nS = socket.socket()\n")
    result = reclaim_run("--fail", "-m", "worker", cwd=tmp_path)
    assert result.returncode == 3
    assert "socket" in result.stderr
    assert "worker.py:2" in result.stderr


@pytest.mark.skipif(sys.version_info >= (3, 13), reason="3.13's pickletools closes the files it reads")
def test_module_mode_reports_what_a_standard_library_module_leaks(tmp_path: Path) -> None:
    """-m of a module of the standard library: it is the program, not plumbing.

    pickletools opens the files it is given with argparse.FileType and never closes them
    (``python -X dev -m pickletools`` warns); they were never reported.
    """
    (tmp_path / "x.pkl").write_bytes(pickle.dumps([1, 2]))
    result = reclaim_run("--json", "leaks.json", "-m", "pickletools", "x.pkl", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["leaks"]
    assert [(leak["kind"], leak["details"]["path"]) for leak in leaks] == [("file", "x.pkl")]
    assert leaks[0]["frames"][0]["file"] == pickletools.__file__


def test_module_mode_unittest_blames_the_standard_library_tests_it_runs_not_its_main(
    tmp_path: Path,
) -> None:
    """-m unittest of CPython's own tests (standard-library files): their lines are the program's.

    test_mmap's test_anonymous drops a map unclosed; it was reported at unittest/__main__.py, the
    runner marked as the program, with the test's frames left out as plumbing.
    """
    import test.test_mmap

    test_name = "test.test_mmap.MmapTests.test_anonymous"
    result = reclaim_run("--json", "leaks.json", "-m", "unittest", test_name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["leaks"]
    assert [leak["kind"] for leak in leaks] == ["mmap"], result.stderr
    assert [frame["file"] for frame in leaks[0]["frames"]] == [test.test_mmap.__file__]


def test_module_mode_cpythons_own_runner_blames_the_tests_it_runs_not_its_main(tmp_path: Path) -> None:
    """-m test (CPython's regrtest) names its tests bare (``test_mmap``): the same map was
    reported at test/__main__.py:2, acquired and dropped there. regrtest's own modules are
    still plumbing: ``-m test_anonymous`` names no module of the test package, and must not
    make all of it the program (its runner's line was then where the map was dropped)."""
    import test.test_mmap

    result = reclaim_run(
        "--json", "leaks.json", "-m", "test", "test_mmap", "-m", "test_anonymous", cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["leaks"]
    assert [leak["kind"] for leak in leaks] == ["mmap"], result.stderr
    assert [frame["file"] for frame in leaks[0]["frames"]] == [test.test_mmap.__file__]
    assert "dropped_at" not in leaks[0]["details"], leaks[0]["details"]  # the runner dropped it


PYTEST_ARGS = ("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly")


def test_module_mode_pytest_is_the_runner_not_the_program(tmp_path: Path) -> None:
    """-m pytest: pytest's __main__ stays plumbing, as unittest's does. Marked the program, it was
    where a socket a test left to be dropped as the test returned was "last reference dropped at"
    (pytest/__main__.py:9, the only frame of the program's left on the stack then)."""
    write(
        tmp_path / "test_drop.py",
        """
        import socket

        def test_listener_dropped_as_it_returns():
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen()
        """,
    )
    result = reclaim_run("--json", "leaks.json", *PYTEST_ARGS, "test_drop.py", cwd=tmp_path)
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["leaks"]
    assert [(leak["kind"], leak["state"]) for leak in leaks] == [("socket", "collected")], result.stderr
    first = leaks[0]["frames"][0]
    assert (first["file"], first["line"]) == (str(tmp_path / "test_drop.py"), 5)
    assert "dropped_at" not in leaks[0]["details"], leaks[0]["details"]
    assert "__main__" not in result.stderr


def test_module_mode_pytest_runs_the_integrations_of_what_its_assertion_rewriter_loads(
    tmp_path: Path,
) -> None:
    """-m pytest: pytest's assertion rewriter, first on sys.meta_path, loads every module of a
    package that ships a pytest plugin itself (anyio's). Their integrations run all the same:
    anyio's runner task, which its plugin's runner cancels at shutdown by design, is no leak (it
    was reported as a task leaked at pytest/__main__.py:9)."""
    pytest.importorskip("anyio")
    write(
        tmp_path / "test_async.py",
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"

        @pytest.mark.anyio
        async def test_nothing():
            pass
        """,
    )
    result = reclaim_run("--json", "leaks.json", *PYTEST_ARGS, "test_async.py", cwd=tmp_path)
    assert "1 passed" in result.stdout, result.stdout + result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["leaks"]
    assert leaks == [], result.stderr


def test_module_mode_reports_a_module_level_file_as_the_path_form_does(tmp_path: Path) -> None:
    """A file a module-level name still holds is open at exit under -m, as with the script path:
    the module's globals outlive its code, so the garbage collector did not close it."""
    write(tmp_path / "same.py", "f = open(__file__)\n")
    by_path = reclaim_run("--json", "path.json", "same.py", cwd=tmp_path)
    by_module = reclaim_run("--json", "module.json", "-m", "same", cwd=tmp_path)
    assert by_path.returncode == by_module.returncode == 0, by_module.stderr
    entries = []
    for name in ("path.json", "module.json"):
        leaks = json.loads((tmp_path / name).read_text(encoding="utf-8"))["leaks"]
        entries.append([(leak["kind"], leak["state"], leak["description"]) for leak in leaks])
    assert entries[0] == entries[1] == [("file", "open", f"{tmp_path / 'same.py'} (mode 'r')")]
    assert "(closed by the garbage collector" not in by_module.stderr


def test_unknown_module_exits_1(tmp_path: Path) -> None:
    """-m with a module that does not exist: "No module named", exit 1."""
    result = reclaim_run("-m", "no_such_module_here", cwd=tmp_path)
    assert result.returncode == 1
    assert "No module named no_such_module_here" in result.stderr


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child before it execs: SIGINT as a terminal gives it. A shell's background job (a CI
    step run with ``&``) ignores SIGINT, and Python then keeps it ignored: Ctrl-C tests would hang."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def started(
    script: str, cwd: Path, *options: str, args: Sequence[str] = (), **popen: Any
) -> subprocess.Popen[str]:
    """``reclaim run [options] script [args]`` running in *cwd*, its output piped as text (a signal
    is to come, SIGINT included)."""
    popen.setdefault("stdout", subprocess.PIPE)
    return subprocess.Popen(
        [sys.executable, "-m", "reclaim", "run", *options, script, *args],
        cwd=cwd,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
        **popen,
    )


def signalled(proc: subprocess.Popen[str], ready: str, signum: int = signal.SIGTERM) -> tuple[str, str]:
    """Once *proc* prints the line *ready*, send it *signum*; its whole output once it ended."""
    assert proc.stdout is not None
    assert proc.stdout.readline() == ready
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # with PYTHONFAULTHANDLER: where every thread is stuck
        out, err = proc.communicate(timeout=TIMEOUT)
        pytest.fail(f"still running {TIMEOUT} s after signal {signum}:\n{out}\n{err}")


WAITS_FOR_SIGNAL = """\
    import sys, threading
    held = open(__file__)            # leaked: still open when the signal comes
    try:
        with open(__file__) as used:  # closed while unwinding: not a leak
            print("ready", flush=True)
            threading.Event().wait()
    finally:
        print("unwound", flush=True)
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_reports_then_ends_the_program_as_python_would(tmp_path: Path, signum: int) -> None:
    """SIGTERM/SIGINT: the program unwinds, the report is printed, the process dies of the signal."""
    write(tmp_path / "server.py", WAITS_FOR_SIGNAL)
    with started("server.py", tmp_path, env={**os.environ, "PYTHONFAULTHANDLER": "1"}) as proc:
        out, err = signalled(proc, "ready\n", signum)
    assert proc.returncode == -signum
    assert "unwound" in out
    assert "leaked 1 resource" in err
    assert "server.py:2" in err


@pytest.mark.parametrize("finalizer", ["__del__", "weakref.finalize"])
def test_sigterm_that_lands_in_a_finalizer_still_unwinds_the_program(tmp_path: Path, finalizer: str) -> None:
    """A signal's handler runs wherever the main thread is: in a ``__del__`` or a
    ``weakref.finalize`` callback (or the collector's callback, or a weak reference's), where an
    exception is only logged ("Exception ignored in"). SIGTERM landing there went on as if it
    had never come; it is raised once that code has returned. (It was seen once in reclaim's
    own collector callback under load.)"""
    write(
        tmp_path / "finalizer.py",
        f"""
        import os, signal, time, weakref

        def step():
            time.sleep(0.01)

        def send_itself():
            os.kill(os.getpid(), signal.SIGTERM)
            step()  # the handler runs as this call starts: inside the finalizer

        class SendsItself:
            if {finalizer == "__del__"}:
                def __del__(self):
                    send_itself()
            else:
                def __init__(self):
                    weakref.finalize(self, send_itself)

        held = open(__file__)
        try:
            SendsItself()
            for _ in range(300):  # the signal, sent again, lands here
                step()
            print("went on", flush=True)
        finally:
            print("unwound", flush=True)
        """,
    )
    with started("finalizer.py", tmp_path) as proc:
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGTERM, out + err
    assert out == "unwound\n", err
    assert "Exception ignored" not in err
    assert "leaked 1 resource" in err and "finalizer.py:19" in err


ASYNCIO_WAITS_FOR_SIGNAL = """\
    import asyncio, sys
    async def forever():
        await asyncio.sleep(3600)
    async def main():
        background = asyncio.create_task(forever())  # BACKGROUND
        await asyncio.sleep(0)  # it started: SIGTERM lands in the loop's wait, not in its first step
        try:
            print("ready", flush=True)
            await asyncio.sleep(3600)
        finally:
            if sys.argv[1:] == ["clean"]:  # the program cancels what it started
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)
            print("unwound", flush=True)
    asyncio.run(main())
"""


@pytest.mark.parametrize("clean", [True, False], ids=["clean", "leaky"])
def test_sigterm_unwinds_an_asyncio_program_and_blames_only_its_own_tasks(
    tmp_path: Path, clean: bool
) -> None:
    """SIGTERM in asyncio.run: the main task (asyncio.run's, never the program's to close) is not
    a leak; it is cancelled first, as Ctrl-C does, so the program cancels its own tasks; a task
    it leaves pending is still reported, at the line that made it."""
    write(tmp_path / "server.py", ASYNCIO_WAITS_FOR_SIGNAL)
    with started("server.py", tmp_path, args=["clean" if clean else "leaky"]) as proc:
        out, err = signalled(proc, "ready\n")
    assert proc.returncode == -signal.SIGTERM, err
    assert out == "unwound\n", err
    assert "running main()" not in err
    if clean:
        assert "reclaim: no leaks in server.py" in err
    else:
        assert "leaked 1 resource (1 task)" in err
        assert "running forever()" in err
        assert f"acquired at server.py:{marked(ASYNCIO_WAITS_FOR_SIGNAL, 'BACKGROUND')} in main" in err


SIGTERM_LANDS_IN_A_BACKGROUND_TASK = """\
    import asyncio, time
    async def busy():
        print("ready", flush=True)
        while True:
            time.sleep(0.01)  # holds the loop: SIGTERM lands in this task's code
    async def main():
        background = asyncio.create_task(busy())
        try:
            await asyncio.sleep(3600)
        finally:
            print("unwound", flush=True)
    asyncio.run(main())
"""


def test_sigterm_landing_in_a_background_task_still_unwinds_the_program(tmp_path: Path) -> None:
    """asyncio keeps an exception raised in a task as that task's own: the SIGTERM exception is a
    SystemExit, which asyncio lets through, so the program still unwinds at once (before, it ran
    on until --unwind-timeout) and no 'Task exception was never retrieved' follows."""
    write(tmp_path / "server.py", SIGTERM_LANDS_IN_A_BACKGROUND_TASK)
    with started("server.py", tmp_path) as proc:
        out, err = signalled(proc, "ready\n")
    assert proc.returncode == -signal.SIGTERM, err
    assert out == "unwound\n", err
    assert "still unwinding" not in err
    assert "never retrieved" not in err
    assert "reclaim: no leaks in server.py" in err


HANGS_WHILE_UNWINDING = """\
    import threading
    held = open(__file__)            # leaked: still open when the signal comes

    class Stuck:
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            print("unwinding", flush=True)
            threading.Event().wait()  # an exit that waits on work that never ends

    with Stuck():
        print("ready", flush=True)
        threading.Event().wait()
"""


def test_sigterm_whose_unwinding_hangs_still_reports_and_dies_of_it(tmp_path: Path) -> None:
    """A with-block exit that never returns: after --unwind-timeout seconds the report, then SIGTERM's death
    (without reclaim the process dies at once; it must not live on because reclaim made it unwind)."""
    write(tmp_path / "stuck.py", HANGS_WHILE_UNWINDING)
    with started("stuck.py", tmp_path, "--unwind-timeout", "1") as proc:
        out, err = signalled(proc, "ready\n")
    assert proc.returncode == -signal.SIGTERM
    assert "unwinding" in out
    assert "reclaim: still unwinding 1 s after SIGTERM (--unwind-timeout)" in err
    assert "leaked 1 resource" in err and "stuck.py:2" in err


INTERRUPTED_EXECUTOR = """\
    import concurrent.futures, os, time

    if __name__ == "__main__":
        with concurrent.futures.ProcessPoolExecutor(1) as executor:
            print(executor.submit(os.getpid).result(), flush=True)
            executor.submit(time.sleep, 120)  # the with-block's shutdown waits for it
            print("ready", flush=True)
            time.sleep(120)
"""


def test_sigterm_during_an_executors_shutdown_reports_its_worker_still_running(tmp_path: Path) -> None:
    """SIGTERM while a ProcessPoolExecutor's shutdown waits on a long task: after the unwind timeout the
    report said "no leaks", and the worker went on running, orphaned."""
    write(tmp_path / "pool.py", INTERRUPTED_EXECUTOR)
    with started("pool.py", tmp_path, "--unwind-timeout", "1") as proc:
        assert proc.stdout is not None
        worker = int(proc.stdout.readline())
        try:
            assert proc.stdout.readline() == "ready\n"
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=TIMEOUT)  # not communicate(): the orphaned worker holds our pipes
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
        _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGTERM
    assert "still unwinding 1 s after SIGTERM" in err, err
    assert "ProcessPoolExecutor shutting down, but its worker processes still run" in err, err
    assert "pool.py:4" in err


def test_thread_still_running_when_main_ends_is_a_leak(tmp_path: Path) -> None:
    """A non-daemon thread still running when the main code ends is reported before it is joined."""
    write(
        tmp_path / "threads.py",
        """\
        import sys, threading
        def drain():
            sys.stdin.read()          # runs until the test closes our stdin
        threading.Thread(target=drain, name="stdin-drainer").start()
        """,
    )
    with subprocess.Popen(
        [sys.executable, "-m", "reclaim", "run", "--grace", "0", "threads.py"],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdin is not None
        lines = []
        while not any("stdin-drainer" in line for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 0
    assert any("thread" in line for line in lines)


def test_forked_child_reports_only_its_own_leaks_with_its_pid(tmp_path: Path) -> None:
    """After os.fork each process reports what it acquired itself, labelled with its pid."""
    write(
        tmp_path / "forks.py",
        """\
        import os, socket
        parent_file = open(__file__)           # the parent's leak, acquired before the fork
        pid = os.fork()
        if pid == 0:
            child_sock = socket.socket()       # the child's leak
            print("child", os.getpid(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        print("parent", os.getpid(), flush=True)
        """,
    )
    result = reclaim_run("forks.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pids = dict(line.split() for line in result.stdout.splitlines())
    reports = result.stderr.split("reclaim: ")
    child = [r for r in reports if f"pid {pids['child']}" in r]
    parent = [r for r in reports if f"pid {pids['parent']}" in r]
    assert len(child) == 1 and len(parent) == 1, result.stderr
    assert "socket" in child[0] and "forks.py:5" in child[0] and "forks.py:2" not in child[0]
    assert "forks.py:2" in parent[0] and "forks.py:5" not in parent[0]


def test_python_dash_m_reclaim_without_a_command_prints_usage(tmp_path: Path) -> None:
    """`python -m reclaim` alone prints the usage and exits 2."""
    result = subprocess.run(
        [sys.executable, "-m", "reclaim"], capture_output=True, text=True, timeout=TIMEOUT
    )
    assert result.returncode == 2
    assert "reclaim run" in result.stderr


def test_console_script_runs_a_program(tmp_path: Path) -> None:
    """The installed `reclaim` command is the same front end."""
    command = Path(sys.executable).parent / "reclaim"
    if not command.exists():
        pytest.skip("the reclaim console script is not installed in this environment")
    write(tmp_path / "clean.py", CLEAN)
    write(tmp_path / "leaky.py", LEAKY)
    clean, leaky = (
        subprocess.run(
            [str(command), "run", "--fail", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        for script in ("clean.py", "leaky.py")
    )
    assert clean.returncode == 0, clean.stderr
    assert leaky.returncode == 3, leaky.stderr
    # The stack ends at the program's own <module> line: no launcher, runpy or reclaim frames.
    assert "leaky.py:2 in <module>" in leaky.stderr
    assert "bin/reclaim" not in leaky.stderr and "runpy" not in leaky.stderr


def test_clean_service_reports_no_leaks(tmp_path: Path) -> None:
    """examples/clean_service.py: the demo's twin with every resource handled right is clean."""
    result = reclaim_run("--fail", EXAMPLES / "clean_service.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no leaks" in result.stderr
    assert result.stdout.endswith("done\n")


def test_leaky_service_reports_each_kind_of_leak(tmp_path: Path) -> None:
    """examples/leaky_service.py: every planted leak is reported, with its line in the example."""
    result = reclaim_run("--fail", "--json", tmp_path / "r.json", EXAMPLES / "leaky_service.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    kinds = {leak["kind"] for leak in json.loads((tmp_path / "r.json").read_text())["leaks"]}
    assert {"file", "socket", "sqlite3", "thread", "subprocess", "tempdir"} <= kinds
    source = (EXAMPLES / "leaky_service.py").read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(source, start=1):
        if "# LEAK" in line:
            acquiring = number + 1
            assert f"leaky_service.py:{acquiring}" in result.stderr, (line, result.stderr)


def test_environment_is_passed_through(tmp_path: Path) -> None:
    """The program sees the environment it was started with."""
    write(tmp_path / "env.py", "import os\nprint(os.environ['ORDERS_DB'])\n")
    env = {**os.environ, "ORDERS_DB": "orders.sqlite"}
    result = reclaim_run("env.py", cwd=tmp_path, env=env)
    assert result.stdout == "orders.sqlite\n"


def test_ctrl_c_still_ends_a_program_hanging_in_shutdown_after_the_report(tmp_path: Path) -> None:
    """After the report, Ctrl-C works again: a never-ending thread's join can be interrupted."""
    write(
        tmp_path / "hangs.py",
        """\
        import threading
        threading.Thread(target=threading.Event().wait, name="never-ends").start()
        """,
    )
    with started("hangs.py", tmp_path, "--grace", "0", stdout=None) as proc:
        assert proc.stderr is not None
        lines: list[str] = []
        while not any("release each" in line.lower() for line in lines):
            line = proc.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        # A signal that lands just before the main thread blocks in the join is only handled once
        # the join returns (CPython runs handlers between bytecodes and on EINTR): press again.
        deadline = time.monotonic() + TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        assert proc.poll() is not None, "Ctrl-C did not end it"
    assert "never-ends" in "".join(lines)


def test_forked_child_writes_its_own_json_report(tmp_path: Path) -> None:
    """--json PATH: the parent writes PATH, a forked child that leaked writes PATH with its pid."""
    write(
        tmp_path / "forks.py",
        """\
        import os, socket
        pid = os.fork()
        if pid == 0:
            child_sock = socket.socket()
            print(os.getpid(), flush=True)
            os._exit(0)
        os.waitpid(pid, 0)
        """,
    )
    result = reclaim_run("--json", "leaks.json", "forks.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    child = json.loads((tmp_path / f"leaks.{result.stdout.strip()}.json").read_text())
    parent = json.loads((tmp_path / "leaks.json").read_text())
    assert [leak["kind"] for leak in child["leaks"]] == ["socket"]
    assert parent["leaks"] == []


def test_forked_child_with_nothing_to_report_renders_no_report(tmp_path: Path) -> None:
    """A child that leaked nothing prints nothing, so it builds nothing either.

    Rendering imports rich: every forked child paid tens of milliseconds at its exit for a
    report it then did not print (a process pool with maxtasksperchild=1 ran 10x slower).
    """
    write(
        tmp_path / "forks.py",
        """\
        import os, sys
        pid = os.fork()
        if pid == 0:
            def note_rich(event, args):
                if event == "import" and args[0].partition(".")[0] == "rich":
                    os.write(2, f"child imported {args[0]}\\n".encode())
            sys.addaudithook(note_rich)
            os._exit(0)
        os.waitpid(pid, 0)
        """,
    )
    result = reclaim_run("forks.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "child imported" not in result.stderr
    assert "reclaim: no leaks in forks.py" in result.stderr


@pytest.mark.parametrize("forks", [1, 2])
def test_a_daemon_the_program_detaches_is_not_reported(tmp_path: Path, forks: int) -> None:
    """The daemon idiom: fork, the parent exits at once, the child calls setsid() (and forks
    again, in a double fork). The orphan is detached on purpose, no process of the program's is
    left to wait for it, and nothing waits for it to end either."""
    write(
        tmp_path / "daemon.py",
        f"""\
        import os, time
        if os.fork() > 0:
            print("started", flush=True)
            os._exit(0)
        os.setsid()
        if {forks} == 2 and os.fork() > 0:
            os._exit(0)
        null = os.open(os.devnull, os.O_RDWR)  # a daemon lets go of the terminal's streams
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        time.sleep(3)
        """,
    )
    # The grace lets the report wait for the child's setsid(), which races the parent's exit.
    result = reclaim_run("--fail", "--grace", "5", "daemon.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "started\n"
    assert "leaked" not in result.stderr
    assert "reclaim: daemon.py (pid " in result.stderr
    assert ") left with os._exit(0) after forking: what it held is its child's (pid " in result.stderr


def test_a_parent_that_hands_over_to_its_forked_child_reports_nothing_of_it(tmp_path: Path) -> None:
    """``if os.fork(): os._exit(0)``, as a daemon's parent leaves (python-daemon's
    fork_then_exit_parent): the file it opened before the fork is the child's, which goes on with
    it and closes it; the parent's report said it leaked, and the child too, a zombie. The child
    still reports its own."""
    write(
        tmp_path / "handover.py",
        """        import os
        log = open("out.log", "w")
        if os.fork() > 0:
            os._exit(0)                      # the parent: everything is the child's now
        log.write("child ran\\n")
        log.close()
        kept = open(__file__)                # the child's own leak
        """,
    )
    result = reclaim_run("handover.py", cwd=tmp_path)  # returns once the child closed stderr too
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out.log").read_text() == "child ran\n"
    assert "os.fork() child" not in result.stderr and "out.log" not in result.stderr, result.stderr
    assert ") left with os._exit(0) after forking: what it held is its child's (pid " in result.stderr
    child = [block for block in result.stderr.split("reclaim: ") if "forked child pid" in block]
    assert len(child) == 1 and "handover.py:7" in child[0] and "leaked 1 resource" in child[0], result.stderr


def test_a_forked_child_that_stays_in_the_session_is_still_reported(tmp_path: Path) -> None:
    write(
        tmp_path / "fork.py",
        """\
        import os
        r, w = os.pipe()
        if os.fork() == 0:  # LINE
            os.close(w)
            os.read(r, 1)  # returns at the parent's exit (it holds the only write end)
            os._exit(0)
        os.close(r)
        """,
    )
    result = reclaim_run("--fail", "--grace", "0.1", "fork.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "os.fork() child (still running, never waited for)" in result.stderr
    assert "acquired at fork.py:3 in <module>" in result.stderr


def test_forked_child_killed_by_sigterm_reports_and_dies_of_it(tmp_path: Path) -> None:
    """SIGTERM to a forked child: it prints its report and dies of SIGTERM, no traceback."""
    write(
        tmp_path / "worker.py",
        """\
        import os, signal, socket, threading
        pid = os.fork()
        if pid == 0:
            held = socket.socket()
            print(os.getpid(), flush=True)
            threading.Event().wait()
        _, status = os.waitpid(pid, 0)
        print("signal", os.WTERMSIG(status) if os.WIFSIGNALED(status) else None, flush=True)
        """,
    )
    with started("worker.py", tmp_path) as proc:
        assert proc.stdout is not None
        child = int(proc.stdout.readline())
        os.kill(child, signal.SIGTERM)
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert out == f"signal {int(signal.SIGTERM)}\n"
    assert f"forked child pid {child}" in err
    assert "worker.py:4" in err
    assert "Traceback" not in err


def test_os_exit_still_reports_and_keeps_its_status(tmp_path: Path) -> None:
    """os._exit skips atexit and finally blocks, but the report is still printed."""
    write(tmp_path / "hard.py", "import os\nf = open(__file__)\nos._exit(4)\n")
    result = reclaim_run("--fail", "hard.py", cwd=tmp_path)
    assert result.returncode == 4
    assert "hard.py:2" in result.stderr


def marked(source: str, marker: str) -> int:
    """The line of *source* (as written to the script) that ends with the comment ``# marker``."""
    lines = textwrap.dedent(source).splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.rstrip().endswith(f"# {marker}"))


START_METHODS = ["fork", "spawn", "forkserver"]

MP_USED_RIGHT = """\
    import multiprocessing as mp, sys

    def square(x):
        return x * x

    if __name__ == "__main__":
        mp.set_start_method(sys.argv[1])
        with mp.Pool(2) as pool:
            print(pool.map(square, range(4)))
        pool = mp.Pool(1)
        pool.apply(square, (3,))
        pool.close()
        pool.join()
        queue = mp.Queue()
        queue.put(1)
        queue.get()
        queue.close()
        queue.join_thread()
        with mp.Manager() as manager:
            shared = manager.list([1])
            shared.append(2)
        child = mp.Process(target=square, args=(2,))
        child.start()
        child.join()
        value, lock = mp.Value("i", 1), mp.Lock()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_multiprocessing_used_right_reports_no_leaks(tmp_path: Path, method: str) -> None:
    """Pools, queues, a manager and a process released properly: nothing of their insides is reported."""
    write(tmp_path / "mp_right.py", MP_USED_RIGHT)
    result = reclaim_run("--fail", "mp_right.py", method, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[0, 1, 4, 9]\n"
    assert "reclaim: no leaks" in result.stderr
    assert "leaked" not in result.stderr  # no forked worker or manager server reports either
    assert "Exception ignored" not in result.stderr  # the manager dying as the interpreter exits


MP_LEAKED = """\
    import multiprocessing as mp, sys, threading

    def square(x):
        return x * x

    def forever():
        threading.Event().wait()

    if __name__ == "__main__":
        mp.set_start_method(sys.argv[1])
        queue = mp.Queue()  # QUEUE
        queue.put(1)
        queue.get()
        pool = mp.Pool(1)  # POOL
        pool.apply(square, (2,))
        outlives = mp.Process(target=forever, daemon=True)
        outlives.start()  # CHILD
        joined = mp.Process(target=square, args=(1,))
        joined.start()
        joined.join()
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_leaked_multiprocessing_objects_are_reported_once_each_as_themselves(
    tmp_path: Path, method: str
) -> None:
    """An unclosed Queue and Pool, a Process never joined: one entry each, at the user's line."""
    write(tmp_path / "mp_leaks.py", MP_LEAKED)
    result = reclaim_run("--json", "leaks.json", "mp_leaks.py", method, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    assert found == [
        ("multiprocessing", marked(MP_LEAKED, "QUEUE")),
        ("multiprocessing", marked(MP_LEAKED, "POOL")),
        ("subprocess", marked(MP_LEAKED, "CHILD")),
    ], result.stderr
    queue, pool, child = (leak["description"] for leak in leaks)
    assert queue == "multiprocessing.Queue not closed (close() and join_thread())"
    assert pool.startswith("multiprocessing.Pool not closed")
    assert "running forever()" in child and "never joined" in child
    assert f"mp_leaks.py:{marked(MP_LEAKED, 'QUEUE')} in <module>" in result.stderr
    assert "leaked 3 resources (2 multiprocessing, 1 subprocess)" in result.stderr


EXECUTOR_USED_RIGHT = """\
    import concurrent.futures as cf, multiprocessing as mp, sys

    def square(x):
        return x * x

    if __name__ == "__main__":
        context = mp.get_context(sys.argv[1])
        with cf.ProcessPoolExecutor(2, mp_context=context) as executor:
            print(list(executor.map(square, range(4))))
        executor = cf.ProcessPoolExecutor(1, mp_context=context)
        assert executor.submit(square, 3).result() == 9
        executor.shutdown()
        unused = cf.ProcessPoolExecutor(1, mp_context=context)
        unused.shutdown()
        unwaited = cf.ProcessPoolExecutor(1, mp_context=context)
        assert unwaited.submit(square, 2).result() == 4
        unwaited.shutdown(wait=False)  # its manager thread ends the worker; Python joins it at exit
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor_used_right_reports_no_leaks(tmp_path: Path, method: str) -> None:
    """Executors in a with-block or shut down (waiting or not): none of their parts is reported."""
    write(tmp_path / "executor_right.py", EXECUTOR_USED_RIGHT)
    result = reclaim_run("--fail", "executor_right.py", method, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[0, 1, 4, 9]\n"
    assert "reclaim: no leaks" in result.stderr
    assert "leaked" not in result.stderr


EXECUTOR_LEAKED = """\
    import concurrent.futures as cf, multiprocessing as mp, sys

    def square(x):
        return x * x

    if __name__ == "__main__":
        context = mp.get_context(sys.argv[1])
        with cf.ProcessPoolExecutor(2, mp_context=context) as used:
            print(list(used.map(square, range(4))))
        executor = cf.ProcessPoolExecutor(2, mp_context=context)  # EXECUTOR
        print(executor.submit(square, 3).result())
"""


@pytest.mark.parametrize("method", START_METHODS)
def test_process_pool_executor_never_shut_down_is_reported_once_as_itself(
    tmp_path: Path, method: str
) -> None:
    """An executor never shut down is one entry at the user's line, not its queues, pipe, thread, workers."""
    write(tmp_path / "executor_leak.py", EXECUTOR_LEAKED)
    result = reclaim_run("--json", "leaks.json", "executor_leak.py", method, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[0, 1, 4, 9]\n9\n"
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    at = marked(EXECUTOR_LEAKED, "EXECUTOR")
    assert [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks] == [("multiprocessing", at)], (
        result.stderr
    )
    (leak,) = leaks
    problem = "not shut down (shutdown() or a with-block)"
    assert leak["description"] == f"concurrent.futures.ProcessPoolExecutor {problem}"
    assert leak["details"] == {"class": "concurrent.futures.ProcessPoolExecutor", "problem": problem}
    assert leak["state"] == "open"
    assert "leaked 1 resource (1 multiprocessing)" in result.stderr
    assert f"concurrent.futures.ProcessPoolExecutor {problem}" in result.stderr
    assert f"executor_leak.py:{at} in <module>" in result.stderr


THREADS_AND_PIPES = """\
    import concurrent.futures as cf, multiprocessing as mp

    with cf.ThreadPoolExecutor(2) as used:
        print(list(used.map(abs, [-1, -2])))
    unwaited = cf.ThreadPoolExecutor(1)
    unwaited.submit(abs, -3).result()
    unwaited.shutdown(wait=False)
    first, second = mp.Pipe()
    first.close()
    second.close()
    queue = mp.Queue()
    queue.put(1)
    queue.get()
    queue.close()
    queue.join_thread()
    executor = cf.ThreadPoolExecutor(2)  # EXECUTOR
    executor.submit(abs, -4).result()
    reader, writer = mp.Pipe(duplex=False)  # PIPE
    writer.close()
"""


def test_thread_pool_executor_and_pipe_left_open_are_one_entry_each(tmp_path: Path) -> None:
    """At exit: the executor never shut down and the pipe with its read end open, nothing else."""
    write(tmp_path / "threads_pipes.py", THREADS_AND_PIPES)
    result = reclaim_run("--json", "leaks.json", "threads_pipes.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "[1, 2]\n"
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    executor_at, pipe_at = marked(THREADS_AND_PIPES, "EXECUTOR"), marked(THREADS_AND_PIPES, "PIPE")
    assert found == [("thread", executor_at), ("multiprocessing", pipe_at)], result.stderr
    executor, pipe = (leak["description"] for leak in leaks)
    assert executor == "concurrent.futures.ThreadPoolExecutor not shut down (shutdown() or a with-block)"
    problem = "not closed: the read end (first) open (close() it), the write end (second) closed"
    assert pipe == f"multiprocessing.Pipe() connection pair {problem}"
    assert "leaked 2 resources (1 thread, 1 multiprocessing)" in result.stderr
    assert f"\nmultiprocessing.Pipe() connection pair {problem}\n" in result.stderr  # the kind once


PIPE_DROPPED = """\
import multiprocessing as mp

def talk():
    a, b = mp.Pipe()  # PIPE
    a.send("hi")
    print(b.recv())
    a.close()

talk()
"""


def test_pipe_end_the_collector_closed_is_said_once(tmp_path: Path) -> None:
    """The pair's text says which end the garbage collector closed; no second note repeats it."""
    write(tmp_path / "pipe_dropped.py", PIPE_DROPPED)
    result = reclaim_run("pipe_dropped.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = "multiprocessing.Pipe() connection pair not closed: the second end closed by the garbage collector"
    assert f"\n{text}, the first end closed\n" in result.stderr, result.stderr
    assert result.stderr.count("garbage collector") == 2, result.stderr  # and the legend's line


SHUTDOWN_HOOK = """\
    import atexit, sys

    def bye():
        global late
        late = open(__file__)  # OPENED
        print("bye ran", file=sys.stderr, flush=True)

    atexit.register(bye)
    sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("code", [0, 5])
def test_leak_made_by_an_atexit_handler_is_in_the_one_report_printed_after_it(
    tmp_path: Path, code: int
) -> None:
    """A file an atexit handler opens and keeps is reported, once, after the handlers ran."""
    write(tmp_path / "hook.py", SHUTDOWN_HOOK)
    result = reclaim_run("--json", "leaks.json", "hook.py", str(code), cwd=tmp_path)
    assert result.returncode == code, result.stderr
    assert result.stderr.count("reclaim:") == 1
    assert result.stderr.index("bye ran") < result.stderr.index("leaked 1 resource (1 file)")
    assert f"hook.py:{marked(SHUTDOWN_HOOK, 'OPENED')} in bye" in result.stderr
    assert [leak["kind"] for leak in json.loads((tmp_path / "leaks.json").read_text())["leaks"]] == ["file"]


def test_fail_exits_3_for_a_leak_made_by_an_atexit_handler(tmp_path: Path) -> None:
    """--fail counts what atexit handlers leaked: a clean main code with a leaking handler exits 3."""
    write(tmp_path / "hook.py", SHUTDOWN_HOOK)
    assert reclaim_run("--fail", "hook.py", "0", cwd=tmp_path).returncode == 3


RELEASED_AT_EXIT = """\
    import atexit, logging, os, socket, sqlite3, subprocess, sys

    logging.basicConfig(filename="app.log", level=logging.INFO)  # logging.shutdown() closes it
    logging.info("started")
    server = socket.socket()
    atexit.register(server.close)  # the program's own cleanup, run at exit
    db = sqlite3.connect(":memory:")
    atexit.register(db.close)  # called from C, no Python frame under it
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    atexit.register(os.waitpid, child.pid, 0)  # the program's own wait
    kept = open(__file__)  # no handler closes this one  # KEPT
    sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("code", [0, 5])
def test_what_atexit_handlers_release_is_not_a_leak(tmp_path: Path, code: int) -> None:
    """A FileHandler's file (logging.shutdown), and a socket, a database closed and a child waited
    for by the program's atexit cleanup are not reported, nor counted by --fail; a file nobody
    closes still is. (sqlite3's close, an atexit callback with no Python frame under it, raised
    in reclaim's hook and closed nothing; the child was reported as never waited for.)"""
    write(tmp_path / "prog.py", RELEASED_AT_EXIT)
    result = reclaim_run("--fail", "--json", "leaks.json", "prog.py", str(code), cwd=tmp_path)
    assert result.returncode == (3 if code == 0 else code), result.stderr
    assert "Exception ignored" not in result.stderr
    assert "leaked 1 resource (1 file)" in result.stderr
    assert f"prog.py:{marked(RELEASED_AT_EXIT, 'KEPT')} in <module>" in result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    assert [(leak["kind"], leak["details"]["path"]) for leak in leaks] == [
        ("file", str(tmp_path / "prog.py"))
    ]


STOPPED_AT_EXIT = """\
    import atexit, multiprocessing, threading

    queue = multiprocessing.SimpleQueue()
    writer = threading.Thread(target=queue.get, daemon=True)  # as loguru's enqueue=True writer
    writer.start()

    def stop():
        queue.put(None)
        writer.join()
        queue.close()

    atexit.register(stop)  # as loguru's logger.remove, registered at its import
    forgotten = threading.Thread(target=threading.Event().wait, daemon=True)
    forgotten.start()  # FORGOTTEN
    unclosed = multiprocessing.Queue()  # UNCLOSED
    unclosed.put(1)
"""


def test_a_daemon_thread_and_simple_queue_an_atexit_handler_stops_are_not_leaks(tmp_path: Path) -> None:
    """loguru's ``enqueue=True`` sink: a daemon writer thread and a SimpleQueue, which the atexit
    handler loguru registers stops and closes. The interpreter joins no daemon thread and
    closes no SimpleQueue: that was the program's cleanup. A daemon thread nobody stops still is
    a leak; so is a Queue, which multiprocessing's own exit closes for every program alike."""
    write(tmp_path / "prog.py", STOPPED_AT_EXIT)
    result = reclaim_run("--fail", "prog.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "leaked 2 resources (1 thread, 1 multiprocessing)" in result.stderr
    assert f"prog.py:{marked(STOPPED_AT_EXIT, 'FORGOTTEN')} in <module>" in result.stderr
    assert f"prog.py:{marked(STOPPED_AT_EXIT, 'UNCLOSED')} in <module>" in result.stderr
    assert "SimpleQueue" not in result.stderr


STANDARD_STREAMS = """\
    import os, sys

    sys.stdin.close()
    sys.stdin = open(os.devnull)  # as billiard's (celery's) forked workers do
    sys.stdout = open("out.log", "a", buffering=1)  # as a daemon does
    print("to the log")
    dropped = open("dropped.log", "a")  # DROPPED
    sys.stderr = dropped
    sys.stderr = sys.__stderr__  # no longer a standard stream: still the program's to close
"""


def test_a_file_installed_as_a_standard_stream_is_not_a_leak(tmp_path: Path) -> None:
    """A file the program made sys.stdin or sys.stdout is the process's stream, which the
    interpreter flushes at exit and nobody closes: not reported, nor its descriptor as untracked;
    one it installed and then replaced is still its leak."""
    write(tmp_path / "prog.py", STANDARD_STREAMS)
    result = reclaim_run("--fail", "prog.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "leaked 1 resource (1 file)" in result.stderr
    site = f"prog.py:{marked(STANDARD_STREAMS, 'DROPPED')} in <module>"
    assert f"dropped.log (mode 'a')\n  acquired at {site}" in result.stderr
    assert (tmp_path / "out.log").read_text() == "to the log\n"


def test_a_standard_stream_a_daemon_opens_again_is_not_a_leak(tmp_path: Path) -> None:
    """``os.close(0)`` then ``os.open(os.devnull)``, which returns 0: how a daemon gives itself an
    empty stdin (python-daemon's redirect_stream). It is the process's stdin, not a descriptor
    left open at that line; one opened past the standard streams is still a leak."""
    write(
        tmp_path / "prog.py",
        "import os\n"
        "os.close(0)\n"
        "assert os.open(os.devnull, os.O_RDWR) == 0\n"
        "os.dup2(0, 0)\n"
        "LEFT = os.open(os.devnull, os.O_RDONLY)  # LEFT\n",
    )
    result = reclaim_run("--fail", "prog.py", cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "leaked 1 resource (1 fd)" in result.stderr
    assert "acquired at prog.py:5 in <module>" in result.stderr


def test_the_report_reaches_the_terminal_when_the_program_closed_its_stderr(tmp_path: Path) -> None:
    """A program that installed its own sys.stderr and closed it: the report goes to the original
    stderr, where it would otherwise be lost without a word."""
    write(
        tmp_path / "prog.py",
        """\
        import sys
        held = open(__file__)  # leaked
        sys.stderr = open("err.log", "w")
        sys.stderr.close()
        """,
    )
    result = reclaim_run("prog.py", cwd=tmp_path)
    assert "leaked 1 resource (1 file)" in result.stderr, result.stderr
    assert "prog.py:2 in <module>" in result.stderr


def test_fail_exits_0_when_atexit_handlers_released_everything(tmp_path: Path) -> None:
    write(tmp_path / "prog.py", RELEASED_AT_EXIT.replace("kept = open(__file__)", "kept = None"))
    result = reclaim_run("--fail", "prog.py", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "reclaim: no leaks in prog.py" in result.stderr


def test_an_atexit_handlers_error_shows_its_source_line_as_under_python(tmp_path: Path) -> None:
    """The interpreter prints "Exception ignored in atexit callback" from C, with no Python frame
    on the stack: the io.open it reads the source line with must not fail under reclaim."""
    write(
        tmp_path / "prog.py",
        """\
        import atexit
        def cleanup():
            raise RuntimeError("cleanup failed")
        atexit.register(cleanup)
        """,
    )
    plain = plain_python("prog.py", cwd=tmp_path)
    result = reclaim_run("prog.py", cwd=tmp_path)
    assert '    raise RuntimeError("cleanup failed")' in plain.stderr
    assert result.stderr.startswith(plain.stderr.split(" at 0x")[0])
    assert result.stderr.split(">", 1)[1].startswith(plain.stderr.split(">", 1)[1]), result.stderr
    assert "reclaim: no leaks in prog.py" in result.stderr


def report_then_go(cwd: Path, script: str) -> tuple[str, str]:
    """Run *script* (which waits at exit for a line on its stdin) under ``reclaim run``; read the
    report printed before that, then send the line. Returns the report and the rest of stderr."""
    with subprocess.Popen(
        [sys.executable, "-m", "reclaim", "run", "--grace", "0", script],
        cwd=cwd,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stderr is not None and proc.stdin is not None
        first: list[str] = []
        while not any("release each" in line.lower() for line in first):
            line = proc.stderr.readline()
            assert line, "".join(first)
            first.append(line)
        proc.stdin.write("go\n")
        proc.stdin.close()
        rest = proc.stderr.read()
        proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 0, rest
    return "".join(first), rest


def test_report_before_a_shutdown_that_waits_then_atexit_leaks_after_it(tmp_path: Path) -> None:
    """A thread still running at the end is reported at once; atexit leaks follow once it ended.
    A logging file handler's file is in neither: logging.shutdown() closes it at exit."""
    source = """\
        import atexit, logging, sys, threading
        logging.basicConfig(filename="app.log")
        def bye():
            global late
            late = open(__file__)  # OPENED
        atexit.register(bye)
        threading.Thread(target=sys.stdin.readline, name="reader").start()
    """
    write(tmp_path / "waits.py", source)
    first, rest = report_then_go(tmp_path, "waits.py")
    assert "'reader'" in first and "waits.py:" + str(marked(source, "OPENED")) not in first
    assert "leaked 1 more resource during shutdown (atexit handlers) (1 file)" in rest
    assert f"waits.py:{marked(source, 'OPENED')} in bye" in rest
    assert "app.log" not in first + rest


def test_a_child_nothing_waits_for_at_exit_leaves_the_report_after_the_atexit_handlers(
    tmp_path: Path,
) -> None:
    """Shutdown waits for no subprocess.Popen child, so the report still waits for the atexit
    handlers: the file logging.shutdown() closes was reported as leaked beside the child."""
    source = """\
        import logging, subprocess, sys
        logging.basicConfig(filename="app.log")
        logging.error("started")
        # Ends once this process has exited: its stdin's last writer is gone.
        reader = [sys.executable, "-c", "import sys; sys.stdin.read()"]
        child = subprocess.Popen(reader, stdin=subprocess.PIPE)  # CHILD
    """
    write(tmp_path / "prog.py", source)
    result = reclaim_run("--json", "leaks.json", "prog.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    assert sorted(leak["kind"] for leak in leaks) == ["file", "subprocess"], result.stderr  # its stdin
    assert "app.log" not in result.stderr
    assert result.stderr.count("reclaim: prog.py") == 1, result.stderr  # one report
    assert f"prog.py:{marked(source, 'CHILD')} in <module>" in result.stderr


def test_an_idle_executor_leaves_the_report_after_the_atexit_handlers(tmp_path: Path) -> None:
    """An executor never shut down whose workers wait for work: concurrent.futures' exit joins
    them at once, so the report still comes after the atexit handlers, and the database one of
    them closes is no leak (it was reported beside the executor)."""
    source = """\
        import atexit, concurrent.futures as cf, sqlite3, sys, threading
        pool = cf.ThreadPoolExecutor(1)  # POOL
        pool.submit(print, "done").result()
        me = threading.get_ident()
        while not any(f.f_code.co_name == "_worker" for t, f in sys._current_frames().items() if t != me):
            pass  # until the worker is back in its loop, waiting for work
        db = sqlite3.connect(":memory:")
        atexit.register(db.close)
    """
    write(tmp_path / "prog.py", source)
    result = reclaim_run("--json", "leaks.json", "prog.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    assert found == [("thread", marked(source, "POOL"))], result.stderr


def test_a_multiprocessing_child_shutdown_will_join_is_reported_before_it(tmp_path: Path) -> None:
    """multiprocessing's atexit handler joins a non-daemon child still running, which may take
    for ever: the report is printed before the atexit handlers run. Here the program's own
    handler waits for this test to have read the report before it lets the child end."""
    source = """\
        import atexit, multiprocessing as mp, sys

        def wait(event):
            event.wait()

        def finish(event):
            sys.stdin.readline()
            event.set()

        if __name__ == "__main__":
            event = mp.Event()
            child = mp.Process(target=wait, args=(event,))
            child.start()  # CHILD
            atexit.register(finish, event)  # runs before multiprocessing's handler joins the child
    """
    write(tmp_path / "prog.py", source)
    first, _ = report_then_go(tmp_path, "prog.py")
    assert "(still running, never joined)" in first
    assert f"prog.py:{marked(source, 'CHILD')} in <module>" in first


NESTED = """\
    import socket


    def load():
        f = open(__file__)
        s = socket.socket()
        return f, s


    def main():
        return load()


    KEEP = main()
"""


def _stacks(path: Path) -> dict[str, list[tuple[int, str]]]:
    leaks = json.loads(path.read_text(encoding="utf-8"))["leaks"]
    return {leak["kind"]: [(f["line"], f["function"]) for f in leak["frames"]] for leak in leaks}


def test_explicit_depth_records_as_many_frames_for_files_as_for_sockets(tmp_path: Path) -> None:
    """With --depth, a file's stack reaches the program's <module> line, as a socket's does."""
    write(tmp_path / "nested.py", NESTED)
    result = reclaim_run("--depth", "10", "--json", "leaks.json", "nested.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stacks = _stacks(tmp_path / "leaks.json")
    assert stacks["file"] == [(5, "load"), (11, "main"), (14, "<module>")], result.stderr
    assert stacks["socket"] == [(6, "load"), (11, "main"), (14, "<module>")], result.stderr
    shallow = reclaim_run("--depth", "1", "--json", "one.json", "nested.py", cwd=tmp_path)
    assert shallow.returncode == 0, shallow.stderr
    assert _stacks(tmp_path / "one.json")["file"] == [(5, "load")], shallow.stderr


def test_default_depth_keeps_two_frames_for_files(tmp_path: Path) -> None:
    """Without --depth a file keeps two frames (the cheap default), other kinds eight."""
    write(tmp_path / "nested.py", NESTED)
    result = reclaim_run("--json", "leaks.json", "nested.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stacks = _stacks(tmp_path / "leaks.json")
    assert stacks["file"] == [(5, "load"), (11, "main")], result.stderr
    assert stacks["socket"] == [(6, "load"), (11, "main"), (14, "<module>")], result.stderr


def _readme_demo() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split("$ reclaim run examples/leaky_service.py\n", 1)[1].split("```", 1)[0]


def test_readme_demo_output_is_what_make_demo_prints() -> None:
    """Each block of the README's demo output is printed by `reclaim run examples/leaky_service.py`,
    with the same lines from its start (a block trimmed with "..." stops there), in the same
    order, once what changes per run (pids, ports, temp paths, ages) is masked."""
    import re

    result = subprocess.run(
        [sys.executable, "-m", "reclaim", "run", "examples/leaky_service.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr

    def blocks(text: str) -> list[list[str]]:
        text = re.sub(r"/tmp/orders-\w+", "/tmp/orders-X", text)
        text = re.sub(r"\bpid \d+|\d+ ms ago|:\d{4,5}\b", "N", text)
        paragraphs = (p.splitlines() for p in re.split(r"\n\s*\n", text))
        return [[line.rstrip() for line in p if line.strip() != "..."] for p in paragraphs]

    printed = blocks(result.stdout + "\n" + result.stderr)
    position = 0
    for block in blocks(_readme_demo()):
        if not block:
            continue
        found = [i for i in range(position, len(printed)) if printed[i][: len(block)] == block]
        assert found, f"README demo block not printed as shown (in order):\n{block}\n{result.stderr}"
        position = found[0] + 1


@pytest.mark.parametrize("where", ["missing/dir/x.json", "."], ids=["no-such-directory", "a-directory"])
def test_a_bad_json_destination_is_refused_before_the_program_runs(tmp_path: Path, where: str) -> None:
    """--json into a missing directory (or at a directory): usage error, exit 2, program not run."""
    write(tmp_path / "prog.py", "print('ran')\n")
    result = reclaim_run("--json", where, "prog.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "argument --json" in result.stderr
    assert "ran" not in result.stdout


def test_json_that_cannot_be_written_at_the_end_is_still_reported(tmp_path: Path) -> None:
    """The directory existed at the start but the program removed it: the late error, exit 1."""
    write(tmp_path / "out" / "keep", "")
    write(tmp_path / "prog.py", "import shutil\nshutil.rmtree('out')\n")
    result = reclaim_run("--json", "out/leaks.json", "prog.py", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "could not write --json" in result.stderr


def test_a_relative_json_path_is_where_reclaim_was_started(tmp_path: Path) -> None:
    """A program that changes directory does not move the --json file."""
    write(tmp_path / "sub" / "keep", "")
    write(tmp_path / "prog.py", "import os\nos.chdir('sub')\nLEAK = open('keep')\n")
    result = reclaim_run("--json", "leaks.json", "prog.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "leaks.json").read_text(encoding="utf-8"))["count"] == 1


def test_an_infinite_grace_is_a_usage_error(tmp_path: Path) -> None:
    """--grace inf would wait for ever for a thread that never ends, deaf to SIGTERM."""
    write(tmp_path / "prog.py", "print('ran')\n")
    result = reclaim_run("--grace", "inf", "prog.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "argument --grace: must be finite" in result.stderr
    assert "ran" not in result.stdout


LINGERS_INTO_THE_GRACE_WAIT = """\
    import sys, threading, time

    def linger():
        # Says so once the main thread is in the report's grace wait (Tracker.leaks), then stays.
        main = threading.main_thread().ident
        while True:
            frame = sys._current_frames().get(main)
            while frame is not None and frame.f_code.co_name != "leaks":
                frame = frame.f_back
            if frame is not None:
                print("in the grace wait", flush=True)
                time.sleep(3600)
            time.sleep(0.01)

    threading.Thread(target=linger, daemon=True).start()
"""


def test_sigterm_during_the_grace_wait_ends_it_and_the_report_is_printed(tmp_path: Path) -> None:
    """The main code ended and the report waits --grace for a thread: SIGTERM ends the wait at
    once, the report is printed, and the process dies of the signal."""
    write(tmp_path / "lingers.py", LINGERS_INTO_THE_GRACE_WAIT)
    with started("lingers.py", tmp_path, "--grace", "60") as proc:
        _, err = signalled(proc, "in the grace wait\n")
    assert proc.returncode == -signal.SIGTERM
    assert "leaked 1 resource (1 thread)" in err, err
    assert "lingers.py:15" in err


@pytest.mark.parametrize("grace", ["-1", "nan"])
def test_a_grace_below_zero_or_nan_is_a_usage_error(tmp_path: Path, grace: str) -> None:
    """--grace must be a number of seconds >= 0: NaN is refused as a negative number is."""
    write(tmp_path / "prog.py", "print('ran')\n")
    result = reclaim_run("--grace", grace, "prog.py", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "argument --grace: must be >= 0" in result.stderr
    assert "ran" not in result.stdout


PROCESS_WIDE_MACHINERY = """\
    import sys
    from joblib import Parallel, delayed
    from tqdm import tqdm

    def square(x):
        return x * x

    if __name__ == "__main__":
        for _ in tqdm(range(3), file=sys.stdout):  # starts tqdm's monitor thread
            pass
        with Parallel(n_jobs=2) as parallel:  # starts loky's reusable executor
            print(sum(parallel(delayed(square)(i) for i in range(10))))
        log = open("work.log", "w")  # LEAK
"""


def test_libraries_process_wide_machinery_is_theirs_not_the_programs(tmp_path: Path) -> None:
    """tqdm's monitor thread and joblib's reusable loky executor (its workers, manager thread,
    queues, pipes, resource tracker) live for the whole process on purpose and are shut down at
    exit by their library: correct code using them leaks nothing; the program's own file does."""
    pytest.importorskip("tqdm")
    pytest.importorskip("joblib")
    write(tmp_path / "machinery.py", PROCESS_WIDE_MACHINERY)
    result = reclaim_run("--json", "leaks.json", "machinery.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("285\n"), result.stdout
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    assert found == [("file", marked(PROCESS_WIDE_MACHINERY, "LEAK"))], result.stderr


ASGIREF = """\
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import async_to_sync

    async def double(x):
        await asyncio.sleep(0)
        return x * 2

    print(async_to_sync(double)(21))  # asgiref makes an executor for this call, and drops it
    print(async_to_sync(double)(4))
    pool = ThreadPoolExecutor(max_workers=1)  # LEAK
    pool.submit(print, "done").result()
"""


ASGIREF_SYNC_TO_ASYNC = """\
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from asgiref.sync import sync_to_async

    def double(x):
        return x * 2

    print(asyncio.run(sync_to_async(double)(21)))  # runs on asgiref's executor for the process
    pool = ThreadPoolExecutor(max_workers=1)  # LEAK
    pool.submit(print, "done").result()
"""


@pytest.mark.parametrize(
    ("source", "printed"),
    [(ASGIREF, "42\n8\ndone\n"), (ASGIREF_SYNC_TO_ASYNC, "42\ndone\n")],
    ids=["async_to_sync", "sync_to_async"],
)
def test_asgirefs_executors_are_its_own(tmp_path: Path, source: str, printed: str) -> None:
    """asgiref's AsyncToSync makes a one-worker ThreadPoolExecutor per call and leaves it to the
    garbage collector by design (every Django async view under the test client, every Channels
    call); it keeps one more for the process, made at import as a class attribute, for every
    thread-sensitive sync_to_async call outside async_to_sync (Django's ORM in an async view).
    Each was reported as the program's; the program's own executor still is."""
    pytest.importorskip("asgiref")
    write(tmp_path / "calls.py", source)
    result = reclaim_run("--json", "leaks.json", "calls.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == printed
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    assert found == [("thread", marked(source, "LEAK"))], result.stderr


MATPLOTLIB = """\
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title("text: matplotlib opens its fonts and keeps them in a cache")
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)
    log = open("plot.log", "w")  # LEAK
"""


def test_matplotlibs_font_cache_is_its_own(tmp_path: Path) -> None:
    """matplotlib's _get_font caches FT2Font objects, each holding its .ttf file open for the
    process: any figure with text reported DejaVuSans.ttf as the program's leak; its own file is."""
    pytest.importorskip("matplotlib")
    write(tmp_path / "plot.py", MATPLOTLIB)
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl")}  # its font list, not the user's
    result = reclaim_run("--json", "leaks.json", "plot.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks]
    assert found == [("file", marked(MATPLOTLIB, "LEAK"))], result.stderr


ZIPPED_PACKAGE = """\
    import importlib.resources
    import sys
    import zipfile

    with zipfile.ZipFile("app.zip", "w") as archive:
        archive.writestr("zipped/__init__.py", "")
        archive.writestr("zipped/data.txt", "hello")
    sys.path.insert(0, "app.zip")
    import zipped

    print(importlib.resources.files(zipped).joinpath("data.txt").read_text())
    with importlib.resources.as_file(importlib.resources.files(zipped) / "data.txt") as path:
        print(path.read_text())
    print(zipfile.Path("app.zip", "zipped/data.txt").read_text())
    kept = zipfile.ZipFile("app.zip")  # LEAK
"""


def test_resources_of_a_zipped_package_read_the_documented_way_are_not_the_programs_leak(
    tmp_path: Path,
) -> None:
    """importlib.resources reads a package imported from a zip (a zipapp, pex, shiv) through
    zipfile.Path, which opens the archive and leaves it to the collector, as zipfile.Path
    always does: two leaks per read the program could not avoid. A ZipFile it opens is its."""
    found, result = _kinds_and_lines(tmp_path, ZIPPED_PACKAGE)
    assert result.stdout == "hello\nhello\nhello\n"
    assert found == [("file", marked(ZIPPED_PACKAGE, "LEAK"))], result.stderr


def _kinds_and_lines(tmp_path: Path, source: str) -> tuple[list[tuple[str, int]], Any]:
    """Run *source* as ``app.py`` under ``reclaim run --json`` (it must exit 0): each leak's
    kind and line, and the run's result."""
    write(tmp_path / "app.py", source)
    result = reclaim_run("--json", "leaks.json", "app.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    return [(leak["kind"], leak["frames"][0]["line"]) for leak in leaks], result


PICKLED_ZIP_PATH = """\
    import pickle
    import zipfile

    with zipfile.ZipFile("app.zip", "w") as archive:
        archive.writestr("data.txt", "hello")
    print(pickle.loads(pickle.dumps(zipfile.Path("app.zip", "data.txt"))).read_text())
    kept = zipfile.ZipFile("app.zip")  # LEAK
"""


@pytest.mark.skipif(sys.version_info < (3, 12), reason="3.11's zipfile.Path cannot be pickled")
def test_a_zipfile_path_unpickled_opens_its_archive_as_a_made_one_does_not_the_programs_leak(
    tmp_path: Path,
) -> None:
    """An unpickled zipfile.Path opens its archive again (its root's __setstate__, 3.12+) and
    leaves it to the collector, as one made does (CPython's test_zipfile test_pickle)."""
    found, result = _kinds_and_lines(tmp_path, PICKLED_ZIP_PATH)
    assert result.stdout == "hello\n"
    assert found == [("file", marked(PICKLED_ZIP_PATH, "LEAK"))], result.stderr


DJANGO_SQLITE = """\
    import sqlite3

    import django
    from django.conf import settings

    sqlite = "django.db.backends.sqlite3"
    settings.configure(
        DATABASES={
            "default": {"ENGINE": sqlite, "NAME": "app.db"},
            "memory": {"ENGINE": sqlite, "NAME": ":memory:"},
            "files": {"ENGINE": sqlite, "NAME": "files.db"},
        }
    )
    django.setup()
    from django.db import connections

    # What Django's test runner and pytest-django do: an in-memory test database, whose
    # connection Django's close() keeps on purpose (closing it would drop the database).
    test_db = connections["default"]
    test_db.creation.create_test_db(verbosity=0)
    test_db.cursor().execute("select 1")
    test_db.creation.destroy_test_db("app.db", verbosity=0)
    connections["memory"].cursor().execute("select 1")
    connections["memory"].close()  # does nothing, on purpose
    # A file database's connection, which Django's close() closes, left open:
    connections["files"].cursor().execute("select 1")  # FILES
    kept = sqlite3.connect(":memory:")  # MINE
"""


def test_djangos_in_memory_sqlite_connections_are_its_own(tmp_path: Path) -> None:
    """Django never closes a connection to an in-memory sqlite database (its test database by
    default), and pytest-django never asks: it was the program's leak. A file database's
    connection Django's close() closes, and the program's own in-memory one, still are."""
    pytest.importorskip("django")
    write(tmp_path / "orm.py", DJANGO_SQLITE)
    result = reclaim_run("--json", "leaks.json", "orm.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = [(leak["kind"], leak["details"]["database"], leak["frames"][-1]["line"]) for leak in leaks]
    assert found == [
        ("sqlite3", "files.db", marked(DJANGO_SQLITE, "FILES")),
        ("sqlite3", ":memory:", marked(DJANGO_SQLITE, "MINE")),
    ], result.stderr


COMPRESSED = """\
    import bz2, gzip, lzma, tarfile

    kept = []
    for module in (bz2, gzip, lzma):
        kept.append(module.open(f"data.{module.__name__}", "wb"))  # LEAK
    archive = tarfile.open("data.tar", "w")  # TAR
"""


def test_compressed_files_are_tracked_though_their_modules_came_before_the_hook(tmp_path: Path) -> None:
    """bz2 and tarfile bind open when imported, and the runner's own imports bring them in
    first: their files are reported at the program's line, not as an anonymous descriptor."""
    write(tmp_path / "compressed.py", COMPRESSED)
    result = reclaim_run("--json", "leaks.json", "compressed.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = sorted((leak["kind"], leak["frames"][0]["line"]) for leak in leaks)
    at, tar = marked(COMPRESSED, "LEAK"), marked(COMPRESSED, "TAR")
    assert found == [("file", at)] * 3 + [("file", tar)], result.stderr


TEMPDIRS = """\
    import os, tempfile

    WORK = tempfile.TemporaryDirectory()  # GLOBAL

    def scratch():
        t = tempfile.TemporaryDirectory()  # DROPPED
        return os.path.isdir(t.name)

    with tempfile.TemporaryDirectory() as done:
        pass
    print(scratch())
"""


def test_temporary_directories_the_program_never_cleaned_up_are_reported(tmp_path: Path) -> None:
    """One dropped (the collector runs its finalizer) and one a module global keeps (the
    finalizer runs at exit, an atexit handler, not the program's cleanup): both leaks;
    the one in a with-block is not."""
    write(tmp_path / "tempdirs.py", TEMPDIRS)
    result = reclaim_run("--json", "leaks.json", "tempdirs.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    leaks = json.loads((tmp_path / "leaks.json").read_text())["leaks"]
    found = sorted((leak["kind"], leak["frames"][0]["line"], leak["state"]) for leak in leaks)
    assert found == [
        ("tempdir", marked(TEMPDIRS, "GLOBAL"), "open"),
        ("tempdir", marked(TEMPDIRS, "DROPPED"), "collected"),
    ], result.stderr
    assert "(TemporaryDirectory) (removed by its finalizer ('Implicitly cleaning up'), not the program)" in (
        result.stderr
    )


def test_json_report_says_which_program_process_and_exit_status(tmp_path: Path) -> None:
    write(tmp_path / "fails.py", "import sys\nlog = open('run.log', 'w')\nsys.exit(4)\n")
    result = reclaim_run("--json", "leaks.json", "fails.py", cwd=tmp_path)
    assert result.returncode == 4, result.stderr
    document = json.loads((tmp_path / "leaks.json").read_text())
    assert document["schema"] == "reclaim.leaks/1" and document["count"] == 1
    assert (document["program"], document["exit_status"], document["forked_child"]) == ("fails.py", 4, False)
    assert document["pid"] == document["leaks"][0]["pid"]


def test_a_program_that_changes_directory_has_its_lines_shown_from_where_it_started(tmp_path: Path) -> None:
    """The report's paths stay relative to the directory ``reclaim run`` started in: after the
    program's ``os.chdir("sub")``, they were shown from ``sub``, here by absolute path."""
    write(tmp_path / "sub" / "data.txt", "x")
    write(
        tmp_path / "prog.py",
        """\
        import os
        os.chdir("sub")
        KEPT = open("data.txt")  # the leak, line 3
        """,
    )
    result = reclaim_run("prog.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "  acquired at prog.py:3 in <module>" in result.stderr, result.stderr
