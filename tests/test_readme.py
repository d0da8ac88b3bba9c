"""The README's ```python snippets run as they are: each a script, fresh interpreter, empty directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import require_service

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def snippets() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    out = []
    for match in BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        out.append((f"README.md:{line}", match.group(1)))
    return out


def test_readme_has_the_two_commands_in_its_quick_start() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick
    assert "make test" in quick


def test_readme_has_snippets() -> None:
    assert snippets()


def services(code: str) -> list[str]:
    """The servers a snippet talks to (by the driver it imports)."""
    needs = []
    if "import psycopg" in code or "import asyncpg" in code:
        needs.append("postgres")
    if "import pymysql" in code:
        needs.append("mariadb")
    return needs


# A snippet that talks to a server carries its marker: it skips like the database tests when the
# server is down, and takes its turn with them (tests/conftest.py) under make test's workers.
@pytest.mark.parametrize(
    ("where", "code"),
    [
        pytest.param(where, code, id=where, marks=[getattr(pytest.mark, name) for name in services(code)])
        for where, code in snippets()
    ],
)
def test_readme_snippet_runs(where: str, code: str, tmp_path: Path) -> None:
    for name in services(code):
        require_service(name)
    script = tmp_path / "snippet.py"
    script.write_text(code, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"{where} failed:\n{result.stdout}\n{result.stderr}"
