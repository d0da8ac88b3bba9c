"""What ``import reclaim`` loads: no asyncio, no pools, sockets or file locks until a name needs them.

Each check runs in a fresh interpreter, because this test process has long imported everything.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

# The modules `import reclaim` must leave alone: asyncio and everything behind the lazy names.
HEAVY = ("asyncio", "socket", "reclaim.pool", "reclaim.net", "reclaim.files", "reclaim.leaks", "reclaim.db")

LOADED = """\
import json, sys
import {module}
print(json.dumps(sorted(name for name in {heavy!r} if name in sys.modules)))
"""


def python(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a fresh ``python <args>``; fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, check=False, cwd=cwd
    )
    assert result.returncode == 0, f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh ``python -W error``; fail with its output if it fails."""
    return python("-W", "error", "-c", textwrap.dedent(code), *args)


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("reclaim", ()),
        ("reclaim.cli", ("reclaim.leaks",)),  # `reclaim run` needs the tracker, nothing else
    ],
)
def test_importing_reclaim_or_its_command_line_loads_no_asyncio_pool_or_sockets(
    module: str, allowed: tuple[str, ...]
) -> None:
    """``import reclaim`` (and what ``reclaim run`` and ``pytest --reclaim`` import) stays cheap."""
    heavy = tuple(name for name in HEAVY if name not in allowed)
    loaded = json.loads(run(LOADED.format(module=module, heavy=heavy)).stdout)
    assert loaded == []


def test_reclaim_run_does_not_import_asyncio_for_a_program_that_does_not(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text("import sys\nprint('asyncio' in sys.modules, 'reclaim.pool' in sys.modules)\n")
    result = python("-m", "reclaim", "run", str(script), cwd=tmp_path)
    assert result.stdout.splitlines()[0] == "False False"


def test_pytest_reclaim_does_not_import_asyncio_for_tests_that_do_not(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text(
        "import json, sys\n"
        "def test_plain():\n"
        f"    print('LOADED', json.dumps([m for m in {HEAVY!r} if m in sys.modules and m != 'socket']))\n"
    )
    result = python(
        # anyio's and pyfakefs' plugins (the dev extra has both) import asyncio themselves
        "-m",
        "pytest",
        "-q",
        "-s",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:anyio",
        "-p",
        "no:fakefs",
        "--reclaim",
        "test_plain.py",
        cwd=tmp_path,
    )
    loaded = next(line for line in result.stdout.splitlines() if line.startswith("LOADED "))
    assert json.loads(loaded.removeprefix("LOADED ")) == ["reclaim.leaks"]  # the tracker, nothing else


def test_every_public_name_and_public_module_resolves_on_first_use() -> None:
    result = run(
        """
        import sys
        import reclaim

        assert set(reclaim.__all__) <= set(dir(reclaim))
        for name in reclaim.__all__:
            value = getattr(reclaim, name)
            if name != "__version__":  # the object its home module defines, not a copy
                assert getattr(sys.modules[value.__module__], name) is value, name
        assert {"db", "files", "leaks", "net", "pool"} <= set(dir(reclaim))
        try:
            reclaim.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("reclaim.no_such_name did not raise AttributeError")
        print("ok")
        """
    )
    assert result.stdout == "ok\n"


@pytest.mark.parametrize("statement", ["from reclaim import Pool", "from reclaim import *", "import reclaim"])
def test_lazy_names_load_with_from_import_and_attribute_access(statement: str) -> None:
    result = run(
        f"""
        import sys
        {statement}
        import reclaim
        assert reclaim.Pool is sys.modules["reclaim.pool"].Pool
        assert reclaim.files is sys.modules["reclaim.files"]  # the public submodule, as before
        print(type(reclaim.Pool(lambda: 1, max_size=1)).__name__)
        """
    )
    assert result.stdout == "Pool\n"


NO_FCNTL = """\
import sys

sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError, as on Windows

import reclaim
from reclaim.files import remove_stale_temps

released = []
with reclaim.Scope() as scope:
    scope.callback(released.append, "released")
assert released == ["released"]

target = sys.argv[1]
with reclaim.atomic_write(target) as f:
    f.write("new content")
with open(target) as f:
    assert f.read() == "new content"
assert remove_stale_temps(sys.argv[2]) == []

for name in reclaim.__all__:
    getattr(reclaim, name)
print("ok")
"""


def test_import_reclaim_scope_and_atomic_write_work_without_fcntl(tmp_path: Path) -> None:
    """Where ``fcntl`` does not exist (Windows), all but the file lock works (its error: test_files_lock)."""
    target = tmp_path / "data.txt"
    target.write_text("old content")
    assert run(NO_FCNTL, str(target), str(tmp_path)).stdout == "ok\n"
    assert target.read_text() == "new content"


@pytest.mark.parametrize(
    "code",
    [
        "from reclaim import Pool; Pool(object, max_size=1).close()",
        "import sqlite3, reclaim.db; reclaim.db.ConnectionPool(sqlite3.connect, ':memory:').close()",
        "import reclaim.net",
    ],
)
def test_a_thread_pool_does_not_import_asyncio(code: str) -> None:
    """Only AsyncPool / AsyncConnectionPool (loaded on first use) bring asyncio in."""
    out = run(f"import sys\n{code}\nprint('asyncio' in sys.modules)").stdout
    assert out.strip() == "False"


def test_a_pool_loads_no_logging_dataclasses_or_inspect_until_it_logs() -> None:
    """They were a third of ``from reclaim import Pool``; the pool's logger is looked up when a
    pool first has something to say, and is ``logging.getLogger("reclaim.pool")`` then."""
    out = run(
        "import sys\n"
        "from reclaim import Pool\n"
        "pool = Pool(object, max_size=1, check=lambda obj: 1 / 0, check_after=0)\n"
        "with pool.acquire():\n"
        "    pass\n"
        "print(sorted({'logging', 'dataclasses', 'inspect'} & set(sys.modules)))\n"
        "import logging\n"
        "seen = []\n"
        "logging.getLogger('reclaim.pool').addHandler(logging.Handler())\n"
        "logging.getLogger('reclaim.pool').handlers[0].emit = seen.append\n"
        "logging.getLogger('reclaim.pool').setLevel(logging.INFO)\n"
        "with pool.acquire():\n"
        "    pass\n"
        "pool.close()\n"
        "print(len(seen), 'check failed' in seen[0].getMessage())"
    ).stdout.splitlines()
    assert out == ["[]", "1 True"]


def test_the_async_pools_load_on_first_use() -> None:
    out = run(
        "import sys, reclaim.db\n"
        "print('asyncio' in sys.modules)\n"
        "print(reclaim.db.AsyncConnectionPool.__mro__[1] is reclaim.AsyncPool, 'asyncio' in sys.modules)"
    ).stdout.split()
    assert out == ["False", "True", "True"]


def test_reclaim_run_m_pytest_gives_no_assertion_rewrite_warning(tmp_path: Path) -> None:
    """`reclaim run -m pytest` imports reclaim before pytest marks its plugin for rewriting."""
    (tmp_path / "test_one.py").write_text("def test_one():\n    assert 1 + 1 == 2\n")
    result = python(
        "-m", "reclaim", "run", "-m", "pytest", "-q", "-p", "no:randomly", str(tmp_path), cwd=tmp_path
    )
    assert "1 passed" in result.stdout
    assert "PytestAssertRewriteWarning" not in result.stdout + result.stderr


def test_the_leak_tracker_imports_without_os_register_at_fork() -> None:
    """Windows has no fork: the tracker's after-fork hook is skipped there, not an ImportError."""
    out = run(
        "import os\n"
        "del os.register_at_fork\n"
        "import reclaim\n"
        "with reclaim.no_leaks():\n"
        "    open(__import__('os').devnull).close()\n"
        "print('ok')"
    ).stdout
    assert out == "ok\n"


# What only a report needs: the Leak and Report dataclasses (dataclasses imports inspect, and
# with them they were a third of `import reclaim.cli`), json for --json; typing only mypy needs.
REPORT_ONLY = ("dataclasses", "inspect", "json", "typing")


@pytest.mark.parametrize("module", ["reclaim.cli", "reclaim.leaks"])
def test_reclaim_run_and_the_tracker_load_no_dataclasses_inspect_json_or_typing(module: str) -> None:
    out = run(f"import sys\nimport {module}\nprint(sorted(set({REPORT_ONLY!r}) & set(sys.modules)))")
    assert out.stdout == "[]\n"


def test_a_clean_reclaim_run_imports_no_argparse_dataclasses_inspect_json_or_typing_start_to_end(
    tmp_path: Path,
) -> None:
    """Neither before the program (no option to parse, tracker started, tempfile instrumented)
    nor for its report: nothing leaked makes no Leak or Report, and without --json no json."""
    unwanted = ("argparse", *REPORT_ONLY)
    script = tmp_path / "app.py"
    script.write_text(
        "import sys, tempfile\n"
        f"print(sorted(set({unwanted!r}) & set(sys.modules)))\n"
        "with tempfile.TemporaryFile() as f:\n"
        "    f.write(b'data')\n"
    )
    result = python("-X", "importtime", "-m", "reclaim", "run", str(script), cwd=tmp_path)
    assert result.stdout == "[]\n"
    imported = {line.rpartition("|")[2].strip() for line in result.stderr.splitlines() if "|" in line}
    assert "tempfile" in imported  # the program's import, instrumented
    assert sorted(imported & set(unwanted)) == []
    assert "reclaim: no leaks in" in result.stderr


def test_every_name_of_reclaim_leaks_resolves_the_report_and_statistics_on_first_use() -> None:
    result = run(
        """
        import sys
        import reclaim.leaks

        assert "reclaim.leaks._report" not in sys.modules and "reclaim.leaks._stats" not in sys.modules
        assert set(reclaim.leaks.__all__) <= set(dir(reclaim.leaks))
        for name in reclaim.leaks.__all__:
            value = getattr(reclaim.leaks, name)
            assert value is not None, name
        assert reclaim.leaks.Leak.__module__ == "reclaim.leaks._report"
        assert reclaim.leaks.SCHEMA == "reclaim.leaks/1"
        from reclaim.leaks import TrackerStatistics, Tracker
        with Tracker() as tracker:
            assert type(tracker.statistics()) is TrackerStatistics
        try:
            reclaim.leaks.no_such_name
        except AttributeError as error:
            assert "no_such_name" in str(error)
        else:
            raise AssertionError("reclaim.leaks.no_such_name did not raise AttributeError")
        print("ok")
        """
    )
    assert result.stdout == "ok\n"


def test_a_leaky_reclaim_run_still_reports_through_the_leak_and_report_dataclasses(tmp_path: Path) -> None:
    """Made on first use, they are the dataclasses they were (``dataclasses.replace`` works)."""
    script = tmp_path / "app.py"
    script.write_text(
        "import dataclasses, sys\n"
        "held = open(__file__)\n"
        "print('reclaim.leaks._report' in sys.modules)\n"
        "from reclaim.leaks import Leak, Report, Tracker\n"
        "with Tracker() as tracker:\n"
        "    mine = open(__file__)\n"
        "    leak, = tracker.leaks()\n"
        "    mine.close()\n"
        "print(type(leak) is Leak, dataclasses.is_dataclass(Report),"
        " dataclasses.replace(leak, age=1.5).age)\n"
    )
    result = python("-m", "reclaim", "run", "--json", str(tmp_path / "leaks.json"), str(script), cwd=tmp_path)
    assert result.stdout == "False\nTrue True 1.5\n"
    assert "leaked 1 resource (1 file)" in result.stderr
    document = json.loads((tmp_path / "leaks.json").read_text())
    assert [leak["kind"] for leak in document["leaks"]] == ["file"]
    assert document["leaks"][0]["frames"][0]["line"] == 2


# The integrations of libraries a program may never import (the standard library's included:
# `python -c pass` imports no socket, sqlite3, tempfile, mmap or multiprocessing).
INTEGRATIONS = tuple(
    f"reclaim.leaks.{name}"
    for name in (
        "_asyncpg", "_gevent", "_grpc", "_mmap", "_multiprocessing", "_nats", "_paho", "_pika",
        "_psycopg", "_pyftpdlib", "_sharedmemory", "_socketio", "_sqlite", "_tempfiles", "_trio",
        "_twisted", "_watchdog", "_watchfiles", "_zmq",
    )
)  # fmt: skip

INTEGRATIONS_LOADED = """\
import json, sys
from reclaim.leaks import Tracker
Tracker().start()
loaded = sorted(name for name in {integrations!r} if name in sys.modules)
import sqlite3
connection = sqlite3.connect(":memory:")
connection.close()
print(json.dumps([loaded, type(connection) is not sqlite3.Connection]))
"""


def test_starting_a_tracker_loads_no_integration_until_the_program_imports_its_library() -> None:
    """gRPC's, gevent's, Twisted's ... code loads with the library it instruments, not at start."""
    loaded, sqlite_tracked = json.loads(run(INTEGRATIONS_LOADED.format(integrations=INTEGRATIONS)).stdout)
    assert loaded == []
    assert sqlite_tracked  # _sqlite loaded on the program's import: its connections are tracked


def test_reclaim_run_loads_no_integration_for_a_program_importing_none_of_their_libraries(
    tmp_path: Path,
) -> None:
    """Nor does ``reclaim run``, which starts its tracker before the program's first line."""
    script = tmp_path / "app.py"
    script.write_text(
        f"import sys\nprint(sorted(name for name in {INTEGRATIONS!r} if name in sys.modules))\n"
    )
    result = python("-m", "reclaim", "run", str(script), cwd=tmp_path)
    assert result.stdout == "[]\n"
