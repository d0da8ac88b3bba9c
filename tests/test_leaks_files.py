"""Tracked, an ``open()`` file is what CPython's would be: its name, and where its ResourceWarning points."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

TIMEOUT = 60

# Line 6 drops a file unclosed: the garbage collector closes it, with a ResourceWarning.
PROGRAM = """\
    import pathlib
    path = pathlib.Path("data.txt")
    path.write_text("x", encoding="utf-8")
    with open(path, encoding="utf-8") as text, open(path, "rb") as binary:
        print(repr(text.name), repr(binary.name))
    data = open(path, encoding="utf-8").read()
"""


def test_a_path_opened_keeps_a_str_name_and_its_resource_warning_names_the_programs_line(
    tmp_path: Path,
) -> None:
    """``open(Path)``'s name is a str, not the Path; the warning is the program's line, not reclaim's file."""
    (tmp_path / "prog.py").write_text(textwrap.dedent(PROGRAM), encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-W", "always::ResourceWarning", "-m", "reclaim", "run", "prog.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "'data.txt' 'data.txt'\n"
    warning = [line for line in out.stderr.splitlines() if "ResourceWarning: unclosed" in line]
    assert len(warning) == 1, out.stderr
    assert "prog.py:6: ResourceWarning: unclosed file <_io.TextIOWrapper name='data.txt'" in warning[0]
    assert "acquired at prog.py:6" in out.stderr
