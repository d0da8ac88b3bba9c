"""pytester's ``python -m pytest`` runs, each forked from a process that imported pytest once.

See ``_pytest_zygote.py`` for the process and why. :func:`install` replaces one pytester's
``run`` so that a run ``runpytest_subprocess`` makes goes through it and anything else (another
command, input on stdin, an environment whose startup settings differ from the zygote's) runs
as pytester would run it. What a test gets back is what pytester's own ``run`` returns: the
same files, lines, exit code and timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

ZYGOTE_SOURCE = (Path(__file__).parent / "_pytest_zygote.py").read_text(encoding="utf8")


def _startup(env: dict[str, str]) -> dict[str, str]:
    """What of *env* an interpreter reads as it starts (``PYTHONPATH`` aside: a run sets it)."""
    return {
        key: value
        for key, value in env.items()
        if key.startswith(("PYTHON", "LANG", "LC_")) and key != "PYTHONPATH"
    }


class Zygote:
    """One process that forks runs for this process's tests, started with the environment's
    startup settings as they are now (a session fixture's, which closes it at its teardown)."""

    def __init__(self) -> None:
        env = dict(os.environ)
        self.startup = _startup(env)
        # -c: its code is "<string>" in __main__, which reclaim's plugin marks as a launcher's
        # (as it does execnet's for an xdist worker), so a report never ends at its lines.
        self.proc: subprocess.Popen[bytes] | None = subprocess.Popen(
            [sys.executable, "-c", ZYGOTE_SOURCE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={key: value for key, value in env.items() if key != "PYTHONPATH"},
        )

    def serves(self, env: dict[str, str]) -> bool:
        """Whether a run in *env* can be forked here: the zygote is up (an interrupted run
        killed it), and *env* starts an interpreter as the zygote's started."""
        return self.proc is not None and _startup(env) == self.startup

    def _answer(self, proc: subprocess.Popen[bytes], timeout: float | None) -> dict[str, Any] | None:
        assert proc.stdout is not None
        if timeout is not None and not select.select([proc.stdout], [], [], timeout)[0]:
            return None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the pytest zygote ended (status {proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def run(
        self, args: list[str], env: dict[str, str], stdout: Path, stderr: Path, timeout: float | None
    ) -> int | None:
        """The exit code of ``python -m pytest *args*`` run in this directory, or None when it
        was killed after *timeout* seconds."""
        proc = self.proc
        assert proc is not None and proc.stdin is not None
        request = {"args": args, "cwd": os.getcwd(), "env": env, "stdout": str(stdout), "stderr": str(stderr)}
        pid: int | None = None
        try:
            proc.stdin.write(json.dumps(request).encode() + b"\n")
            proc.stdin.flush()
            started = self._answer(proc, None)
            assert started is not None
            pid = started["pid"]
            ended = self._answer(proc, timeout)
            if ended is None:
                os.kill(pid, signal.SIGKILL)
                self._answer(proc, None)
                return None
            return os.waitstatus_to_exitcode(ended["status"])
        except BaseException:  # interrupted (a test's timeout, ^C): the rest run as pytester's
            if pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.close(kill=True)
            raise

    def close(self, kill: bool = False) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if kill:
            proc.kill()
        elif proc.stdin is not None:
            proc.stdin.close()
        proc.wait()
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


def install(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, zygote: Zygote) -> None:
    """Send *pytester*'s ``runpytest_subprocess`` runs through *zygote*."""
    original = pytester.run

    def run(
        *cmdargs: Any, timeout: float | None = None, stdin: Any = pytester.CLOSE_STDIN
    ) -> pytest.RunResult:
        __tracebackhide__ = True
        args = [os.fspath(arg) for arg in cmdargs]
        env = os.environ.copy()  # as pytester's popen() makes it
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [os.getcwd(), env.get("PYTHONPATH", "")]))
        ours = args[:2] == [sys.executable, "-mpytest"] and stdin is pytester.CLOSE_STDIN
        if not ours or not zygote.serves(env):
            return original(*cmdargs, timeout=timeout, stdin=stdin)
        out_path, err_path = pytester.path / "stdout", pytester.path / "stderr"
        print("running:", *args, "(forked)")
        print("     in:", Path.cwd())
        started = time.perf_counter()
        ret = zygote.run(args[2:], env, out_path, err_path, timeout)
        if ret is None:
            raise pytester.TimeoutExpired(f"{timeout} second timeout expired running: {tuple(args)}")
        out = out_path.read_text(encoding="utf8").splitlines()
        err = err_path.read_text(encoding="utf8").splitlines()
        for lines, stream in ((out, sys.stdout), (err, sys.stderr)):
            if lines:
                print("\n".join(lines), file=stream)
        code: int | pytest.ExitCode = ret
        with contextlib.suppress(ValueError):
            code = pytest.ExitCode(ret)
        return pytest.RunResult(code, out, err, time.perf_counter() - started)

    monkeypatch.setattr(pytester, "run", run)
