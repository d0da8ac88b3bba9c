"""A process that has imported pytest and forks a ``python -m pytest`` run for each request.

Most of what a pytester subprocess run costs is the new interpreter importing pytest (about
0.2 s of CPU, half of a typical run), and the suite makes hundreds of such runs under each
Python. This program imports pytest once and then, for each request read from its standard
input, forks a child that becomes the run ``python -m pytest`` would have started: the
request's working directory, environment, ``sys.path`` (that directory first, then
``PYTHONPATH``'s entries, as ``-m`` puts them), standard streams on the given files (stdin
at end of file, as pytester closes it) and ``pytest/__main__.py`` run as ``__main__``, its
``SystemExit`` ending the child as it would end that interpreter (atexit handlers, the
interpreter's finalization). Every run is still a process of its own, with its resources and
leaks its own.

It imports only what ``python -m pytest`` imports before pytest's own code runs (``runpy``)
and ``json``, which importing pytest imports too. The caller (``_forkedruns.Zygote``, which
runs this source with ``python -c``) sends a request only when the environment's startup
settings (``PYTHON*``, the locale) are this process's, and runs anything else as a real
subprocess.

Protocol, one JSON object per line: request ``{"args", "cwd", "env", "stdout", "stderr"}``;
answers ``{"pid"}`` as the child starts, then ``{"status"}`` (its wait status) once it ended.
"""

import json
import os
import runpy
import sys

import pytest  # noqa: F401  (what every run imports first: imported once, here)

BASE_PATH = sys.path[1:]  # without -c's '' (the directory it started in), which a run's -m would not add


def read_request() -> dict[str, object] | None:
    """The next request, or None at end of file (the caller is done). Read with os.read, not
    sys.stdin: a child must not inherit half a buffer."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = os.read(0, 65536)
        if not chunk:
            return None
        line += chunk
    request: dict[str, object] = json.loads(line)
    return request


def answer(**fields: object) -> None:
    os.write(1, json.dumps(fields).encode() + b"\n")


def become(request: dict[str, object]) -> None:
    """In the child: take on the run's directory, environment, paths and streams."""
    cwd = str(request["cwd"])
    os.chdir(cwd)
    env = request["env"]
    assert isinstance(env, dict)
    os.environ.clear()
    os.environ.update(env)
    entries = [os.path.abspath(entry) for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    sys.path[:] = [cwd, *entries, *BASE_PATH]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        target = os.open(str(request[name]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    args = request["args"]
    assert isinstance(args, list)
    sys.argv = ["-m", *map(str, args)]


def serve() -> dict[str, object]:
    """Fork a child per request; return (in the child) the request it is to run."""
    while True:
        request = read_request()
        if request is None:
            sys.exit(0)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            return request
        answer(pid=pid)
        _, status = os.waitpid(pid, 0)
        answer(status=status)


# The child leaves serve() and runs pytest here, at the top level, so that its SystemExit
# ends the interpreter as it would end `python -m pytest`.
become(serve())
runpy.run_module("pytest", run_name="__main__", alter_sys=True)
