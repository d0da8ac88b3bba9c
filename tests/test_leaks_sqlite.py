"""sqlite3 under the tracker: the program sees what it would see untracked (CPython's own
test_sqlite3 run under ``pytest --reclaim`` found where it did not)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from _leakhelp import python_prog

#: A program that calls sqlite3.connect() with its arguments after the database given
#: positionally, untracked then tracked, from the same line, and prints the warnings each call
#: raised as (category, message, filename, lineno, whether the caller's registry holds it).
POSITIONAL = """
import json, sqlite3, warnings
from reclaim.leaks import Tracker

def connect():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sqlite3.connect(":memory:", 5.0, 0, None, True, sqlite3.Connection).close()
    return [(w.category.__name__, str(w.message), w.filename, w.lineno) for w in caught]

untracked = connect()
tracker = Tracker().start()
tracked = connect()
tracker.stop()
print(json.dumps([untracked, tracked]))
"""


def test_a_warning_sqlite3_connect_raises_names_the_programs_line_not_reclaims(tmp_path: Path) -> None:
    """Python 3.13 deprecates connect()'s arguments after the database given positionally,
    warning about the Python frame that called it: the program's line, never the wrapper's."""
    out = python_prog(tmp_path, POSITIONAL)
    untracked, tracked = json.loads(out.stdout.strip().splitlines()[-1])
    assert tracked == untracked
    if sys.version_info >= (3, 13):  # the comparison compares something here
        assert untracked
        assert {(Path(filename).name, lineno) for _, _, filename, lineno in untracked} == {("prog.py", 8)}
