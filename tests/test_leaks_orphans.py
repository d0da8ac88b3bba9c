"""Processes left running by a child that ended: reported at the child's line (Linux, see leaks._lineage).

Each test's grandchild blocks reading a pipe whose write end the test holds: closing it ends the
grandchild, and a pidfd tells when it is gone (it is no child of the test's to wait for).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import select
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from _leakhelp import RUN_TIMEOUT, Watch, assert_site, leakwatch, line, reclaim_pytest
from reclaim.leaks import _lineage

__all__ = ["leakwatch"]

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(not _lineage.ENABLED, reason="needs Linux's /proc")

#: A launcher: starts a grandchild running the Python code ``sys.argv[2]`` with the Popen options
#: ``sys.argv[3]`` (JSON), writes its pid to the file ``sys.argv[1]``, and exits.
LAUNCHER = textwrap.dedent(
    """\
    import json, subprocess, sys
    out, code, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    grandchild = subprocess.Popen([sys.executable, "-c", code], **options)
    with open(out, "w") as f:
        f.write(str(grandchild.pid))
    """
)


@contextlib.contextmanager
def held() -> Iterator[int]:
    """A pipe's read end for grandchildren to block on; they end when the block exits."""
    r, w = os.pipe()
    try:
        yield r
    finally:
        os.close(w)
        os.close(r)


def wait_gone(pid: int) -> None:
    """Wait until *pid*, which need not be our child, has exited."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        ready, _, _ = select.select([fd], [], [], RUN_TIMEOUT)
        assert ready, f"pid {pid} still runs"
    finally:
        os.close(fd)


def explain(pid: int) -> str:
    """What a failed assertion shows: how *pid* looks in /proc, and what the tracker holds."""
    from reclaim.leaks import _children

    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        environ = raw.split(b"\0")
        lineage = [entry for entry in environ if entry.startswith(_lineage.VARIABLE.encode())]
    except OSError as exc:
        return f"pid {pid}: {exc}"
    fields = stat[stat.rfind(b")") + 2 :].split()
    return (
        f"pid {pid}: state {fields[0]!r} ppid {fields[1]!r} session {fields[3]!r} (ours {_children.SESSION}) "
        f"start {fields[19]!r} (ours {_lineage._started()}), {lineage} of {len(raw)} bytes; "
        f"me {os.getpid()}, "
        f"spawned {[(name, rec.info, rec.state) for name, rec in _lineage._spawned.items()]}, "
        f"ended {sorted(_lineage._ended)}"
    )


def launcher(hold: int, tmp_path: Path, **options: object) -> list[str]:
    """The command of a launcher whose grandchild runs until *hold* gives EOF."""
    code = f"import os; os.read({hold}, 1)"
    return [
        sys.executable,
        "-c",
        LAUNCHER,
        str(tmp_path / "pid"),
        code,
        json.dumps({"pass_fds": [hold], **options}),
    ]


def test_process_left_running_by_a_child_that_ended_is_reported_at_the_childs_line(
    leakwatch: Watch, tmp_path: Path
) -> None:
    with held() as hold:
        child = subprocess.Popen(launcher(hold, tmp_path), pass_fds=[hold])
        at = line() - 1
        assert child.wait() == 0
        grandchild = int((tmp_path / "pid").read_text())
        found = leakwatch.leaks("orphan-process")
        assert len(found) == 1, (explain(grandchild), leakwatch.records())
        leak = found[0]
        assert_site(leak, at)
        assert leak.state == "open"
        assert leak.details["pid"] == grandchild
        assert leak.details["parent_pid"] == child.pid
        assert leak.details["args"] == f"{sys.executable} -c import os; os.read({hold}, 1)"
        assert leak.description.startswith(f"pid {grandchild}: {sys.executable} -c import os; os.read(")
        assert f" (still running; it outlived pid {child.pid}: {sys.executable} -c " in leak.description
    wait_gone(grandchild)
    assert leakwatch.leaks() == []


def test_descendant_of_a_child_still_running_is_not_an_orphan(leakwatch: Watch, tmp_path: Path) -> None:
    with held() as hold:
        # The child starts the grandchild, says so, then blocks as well: the grandchild's parent
        # runs. Another child that ended has every process carrying a name looked at.
        command = launcher(hold, tmp_path)
        command[2] += f"print('ready', flush=True); import os; os.read({hold}, 1)\n"
        child = subprocess.Popen(command, pass_fds=[hold], stdout=subprocess.PIPE)
        try:
            assert child.stdout is not None and child.stdout.readline() == b"ready\n"
            subprocess.run(["true"], check=True)
            assert leakwatch.leaks("orphan-process") == []
            assert [leak.kind for leak in leakwatch.leaks("subprocess")] == ["subprocess"]  # the child
        finally:
            os.close(os.dup(hold))
    child.wait()
    child.stdout.close()
    wait_gone(int((tmp_path / "pid").read_text()))
    assert leakwatch.leaks() == []


def test_grandchild_that_left_the_session_is_a_daemon_and_not_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    with held() as hold:
        child = subprocess.Popen(launcher(hold, tmp_path, start_new_session=True), pass_fds=[hold])
        assert child.wait() == 0
        grandchild = int((tmp_path / "pid").read_text())
        assert os.getsid(grandchild) == grandchild
        assert leakwatch.leaks("orphan-process") == []
    wait_gone(grandchild)


def test_orphan_that_leaves_the_session_after_a_check_found_it_is_no_longer_reported(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """A daemon whose parent exits at once (ssh-agent) may call setsid() only after a check saw it."""
    go_r, go_w = os.pipe()  # written once: the grandchild calls setsid()
    done_r, done_w = os.pipe()  # written by the grandchild once it has
    with held() as hold:
        fds = [go_r, done_w, hold]
        code = f"import os; os.read({go_r}, 1); os.setsid(); os.write({done_w}, b'x'); os.read({hold}, 1)"
        command = [sys.executable, "-c", LAUNCHER, str(tmp_path / "pid"), code, json.dumps({"pass_fds": fds})]
        try:
            assert subprocess.Popen(command, pass_fds=fds).wait() == 0
            grandchild = int((tmp_path / "pid").read_text())
            found = leakwatch.leaks("orphan-process")
            assert [leak.details["pid"] for leak in found] == [grandchild], explain(grandchild)
            os.write(go_w, b"x")
            assert os.read(done_r, 1) == b"x"
            assert leakwatch.leaks("orphan-process") == []
        finally:
            for fd in (go_r, go_w, done_r, done_w):
                os.close(fd)
    wait_gone(grandchild)


def test_grandchild_that_ended_before_the_check_is_not_reported(leakwatch: Watch, tmp_path: Path) -> None:
    with held() as hold:
        child = subprocess.Popen(launcher(hold, tmp_path), pass_fds=[hold])
        assert child.wait() == 0
    wait_gone(int((tmp_path / "pid").read_text()))
    assert leakwatch.leaks() == []


def test_orphan_of_a_posix_spawn_child_is_reported_at_the_spawn(leakwatch: Watch, tmp_path: Path) -> None:
    with held() as hold:
        os.set_inheritable(hold, True)  # what pass_fds does for a Popen
        pid = os.posix_spawn(sys.executable, launcher(hold, tmp_path), os.environ)
        at = line() - 1
        os.waitpid(pid, 0)
        grandchild = int((tmp_path / "pid").read_text())
        leak = leakwatch.one("orphan-process")
        assert_site(leak, at)
        assert (leak.details["pid"], leak.details["parent_pid"]) == (grandchild, pid)
    wait_gone(grandchild)
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("env", [False, True], ids=["spawnv", "spawnve"])
def test_orphan_of_an_os_spawn_child_is_reported_at_the_spawn(
    leakwatch: Watch, tmp_path: Path, env: bool
) -> None:
    with held() as hold:
        os.set_inheritable(hold, True)  # what pass_fds does for a Popen
        if env:
            pid = os.spawnve(os.P_NOWAIT, sys.executable, launcher(hold, tmp_path), dict(os.environ))
            at = line() - 1
        else:
            pid = os.spawnv(os.P_NOWAIT, sys.executable, launcher(hold, tmp_path))
            at = line() - 1
        os.waitpid(pid, 0)
        grandchild = int((tmp_path / "pid").read_text())
        found = leakwatch.leaks("orphan-process")
        assert len(found) == 1, (explain(grandchild), leakwatch.records())
        assert_site(found[0], at)
        assert (found[0].details["pid"], found[0].details["parent_pid"]) == (grandchild, pid)
    wait_gone(grandchild)
    assert leakwatch.leaks() == []


@pytest.mark.parametrize("how", ["starts-it", "execs-a-launcher"])
def test_orphan_of_an_os_fork_child_is_reported_at_the_fork(
    leakwatch: Watch, tmp_path: Path, how: str
) -> None:
    """The forked child starts the grandchild itself (a Popen of the child's), or execs a
    launcher that does: either way it carries the name the fork gave the child."""
    with held() as hold:
        command = launcher(hold, tmp_path)
        pid = os.fork()
        at = line() - 1
        if pid == 0:  # the child: never back into pytest
            code = 1
            try:
                if how == "starts-it":
                    subprocess.Popen(
                        [sys.executable, "-c", f"import os; os.read({hold}, 1)"], pass_fds=[hold]
                    )
                    code = 0
                else:
                    os.set_inheritable(hold, True)
                    os.execv(sys.executable, command)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        found = leakwatch.leaks("orphan-process")
        assert len(found) == 1, leakwatch.records()
        leak = found[0]
        assert_site(leak, at)
        assert leak.details["parent_pid"] == pid
        grandchild = leak.details["pid"]
        assert f"os.read({hold}, 1)" in leak.details["args"]
        assert _lineage.VARIABLE not in os.environ  # the child's environment changed, never ours
    wait_gone(grandchild)
    assert leakwatch.leaks() == []


MP_ORPHAN = """\
    import multiprocessing as mp, subprocess, sys

    def work(fifo):  # the grandchild blocks opening the FIFO until the test opens its other end
        quiet = subprocess.DEVNULL  # the test reads the program's output to its end
        subprocess.Popen([sys.executable, "-c", f"open({fifo!r}).read()"], stdout=quiet, stderr=quiet)

    if __name__ == "__main__":
        method, fifo = sys.argv[1], sys.argv[2]
        child = mp.get_context(method).Process(target=work, args=(fifo,))
        child.start()  # CHILD
        child.join()
"""


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_orphan_of_a_multiprocessing_process_is_reported_at_its_start(tmp_path: Path, method: str) -> None:
    """A fork or spawn names the process, a fork server's child is not ours: not seen, nor blamed."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    script = textwrap.dedent(MP_ORPHAN)
    (tmp_path / "prog.py").write_text(script)
    report = tmp_path / "report.json"
    command = [sys.executable, "-m", "reclaim", "run", "--json", str(report), "prog.py", method, str(fifo)]
    try:
        out = subprocess.run(
            command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
        )
        assert out.returncode == 0, out.stderr
        found = [leak for leak in json.loads(report.read_text())["leaks"] if leak["kind"] == "orphan-process"]
    finally:
        with contextlib.suppress(OSError):  # ENXIO: no grandchild waits on it (it never started)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))  # the grandchild's open returns
    if method == "forkserver":
        assert found == [], found
        return
    assert len(found) == 1, out.stderr
    leak = found[0]
    start = next(n for n, text in enumerate(script.splitlines(), 1) if text.endswith("# CHILD"))
    assert (leak["frames"][0]["file"].endswith("prog.py"), leak["frames"][0]["line"]) == (True, start)
    assert f"{method.capitalize()}Process" in leak["details"]["parent_args"]
    wait_gone(leak["details"]["pid"])


def test_orphan_of_a_uvloop_child_is_reported_at_the_line_that_made_it(
    leakwatch: Watch, tmp_path: Path
) -> None:
    uvloop = pytest.importorskip("uvloop")
    made_at: list[int] = []

    async def launch(hold: int) -> int:
        proc = await asyncio.create_subprocess_exec(*launcher(hold, tmp_path), pass_fds=[hold])
        made_at.append(line() - 1)
        return await proc.wait()

    with held() as hold:
        assert uvloop.run(launch(hold)) == 0
        grandchild = int((tmp_path / "pid").read_text())
        found = leakwatch.leaks("orphan-process")
        assert len(found) == 1, (explain(grandchild), leakwatch.records())
        leak = found[0]
        assert leak.details["pid"] == grandchild
        assert_site(leak, made_at[0])
    wait_gone(grandchild)
    assert leakwatch.leaks() == []


def printenv(*args: object, **kwargs: object) -> dict[str, str]:
    """The environment a Popen(*args, **kwargs) child running ``env`` sees."""
    with subprocess.Popen(*args, **kwargs) as child:  # type: ignore[call-overload]
        out, _ = child.communicate()
    return dict(entry.split("=", 1) for entry in out.decode().splitlines())


def test_child_gets_the_programs_environment_and_its_name(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLAIM_TEST_VALUE", "kept")
    seen = printenv(["env"], stdout=subprocess.PIPE)
    assert seen["RECLAIM_TEST_VALUE"] == "kept"
    assert seen[_lineage.VARIABLE].startswith(f"{os.getpid()}.")
    assert _lineage.VARIABLE not in os.environ  # the program's own environment is left alone


def test_env_the_program_passes_is_copied_never_changed(leakwatch: Watch) -> None:
    env = {"PATH": os.environ["PATH"], "ONLY": "this"}
    seen = printenv(["env"], stdout=subprocess.PIPE, env=env)
    assert env == {"PATH": os.environ["PATH"], "ONLY": "this"}
    assert set(seen) == {"PATH", "ONLY", _lineage.VARIABLE}
    # Passed by position (env is Popen's eleventh parameter), and after an outer process's names.
    env[_lineage.VARIABLE] = "1.1"
    seen = printenv(["env"], -1, None, None, subprocess.PIPE, None, None, True, False, None, env)
    outer, mine = seen[_lineage.VARIABLE].split(":")
    assert outer == "1.1" and mine.startswith(f"{os.getpid()}.")
    assert env[_lineage.VARIABLE] == "1.1"
    # Keys as bytes (a copy of os.environb): the names stay one variable.
    env_bytes = {b"PATH": os.environb[b"PATH"], b"RECLAIM_LINEAGE": b"2.2"}
    lines = subprocess.check_output(["env"], env=env_bytes).decode().splitlines()
    (value,) = [entry for entry in lines if entry.startswith(f"{_lineage.VARIABLE}=")]
    assert value.startswith(f"{_lineage.VARIABLE}=2.2:{os.getpid()}.")


def test_what_os_putenv_and_unsetenv_change_reaches_the_child(
    leakwatch: Watch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CPython's test_os.test_putenv_unsetenv: ``os.putenv()``/``os.unsetenv()`` change what a
    child inherits and not ``os.environ``; the copy of it the child is given changes too."""
    monkeypatch.setenv("RECLAIM_TEST_GONE", "here")
    os.unsetenv("RECLAIM_TEST_GONE")
    os.putenv("RECLAIM_TEST_PUT", "yes")
    try:
        assert "RECLAIM_TEST_PUT" not in os.environ and os.environ["RECLAIM_TEST_GONE"] == "here"
        seen = printenv(["env"], stdout=subprocess.PIPE)
    finally:
        os.unsetenv("RECLAIM_TEST_PUT")
    assert seen["RECLAIM_TEST_PUT"] == "yes" and "RECLAIM_TEST_GONE" not in seen
    assert seen[_lineage.VARIABLE].startswith(f"{os.getpid()}.")
    assert "RECLAIM_TEST_PUT" not in printenv(["env"], stdout=subprocess.PIPE)


def test_what_a_preexec_fn_puts_in_the_childs_environment_reaches_it_with_the_name(leakwatch: Watch) -> None:
    """CPython's test_subprocess.test_preexec: a variable the child's ``preexec_fn`` sets with
    ``os.putenv()`` is in what it execs, as without tracking, and so is the child's name."""

    def fruit() -> None:
        os.putenv("RECLAIM_TEST_FRUIT", "apple")

    seen = printenv(["env"], stdout=subprocess.PIPE, preexec_fn=fruit)
    assert seen["RECLAIM_TEST_FRUIT"] == "apple"
    assert seen[_lineage.VARIABLE].startswith(f"{os.getpid()}.")
    # Passed by position (preexec_fn is Popen's seventh parameter).
    seen = printenv(["env"], -1, None, None, subprocess.PIPE, None, fruit)
    assert seen["RECLAIM_TEST_FRUIT"] == "apple"
    assert seen[_lineage.VARIABLE].startswith(f"{os.getpid()}.")
    assert "RECLAIM_TEST_FRUIT" not in os.environ and _lineage.VARIABLE not in os.environ


def test_pytest_fails_the_test_whose_child_left_a_process_running(pytester: pytest.Pytester) -> None:
    """The werkzeug reloader's way: the test stops its server, whose own child serves on."""
    pytester.makepyfile(
        test_server=f"""
        import json, os, subprocess, sys

        LAUNCHER = {LAUNCHER!r}
        # The grandchild runs until this test process exits.
        SERVE = f"import os, select; select.select([os.pidfd_open({{os.getpid()}})], [], [])"

        def test_server(tmp_path):
            command = [sys.executable, "-c", LAUNCHER, str(tmp_path / "pid"), SERVE, "{{}}"]
            assert subprocess.Popen(command).wait() == 0

        def test_after():
            pass
        """
    )
    result = reclaim_pytest(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_server*",
            "*this test leaked 1 resource*",
            "orphan-process pid *: * -c import os, select; * (still running; it outlived pid *",
            "*acquired at test_server.py:9 in test_server",
        ]
    )
