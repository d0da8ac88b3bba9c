"""A SpooledTemporaryFile not closed is reported as itself, where it was made, once it holds a file."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import pytest

from _leakhelp import Watch, leakwatch, line, reclaim_pytest, reclaim_run_json

__all__ = ["leakwatch"]  # the fixture, imported for the tests below

pytest_plugins = ["pytester"]

# Closed after rolling over; never rolled over (no file: nothing to report); made at line 6 and
# rolled over at line 7 by a write past max_size, never closed; made at line 9, dropped unclosed.
SPOOLED = """\
    import tempfile
    with tempfile.SpooledTemporaryFile(max_size=10) as closed:
        closed.write(b"x" * 100)
    small = tempfile.SpooledTemporaryFile(max_size=1000)
    small.write(b"x")
    left = tempfile.SpooledTemporaryFile(max_size=10, dir=".")
    left.write(b"x" * 100)
    def drop():
        dropped = tempfile.SpooledTemporaryFile(max_size=10, dir=".")
        dropped.fileno()
    drop()
"""


def test_a_spooled_file_left_open_or_dropped_is_one_entry_at_the_line_that_made_it(tmp_path: Path) -> None:
    """Not an unnamed TemporaryFile at the write that rolled it over; dropped, not passed for closed."""
    report, stderr = reclaim_run_json(tmp_path, SPOOLED)
    found = [(leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"]]
    assert found == [("file", "open", 6), ("file", "collected", 9)], stderr
    for leak in report["leaks"]:
        assert leak["description"] == "unnamed SpooledTemporaryFile in . (mode 'w+b')", stderr
        assert leak["details"]["path"] is None


def test_a_spooled_file_holds_nothing_of_reclaims(leakwatch: Watch) -> None:
    """Its site is kept beside it: in it, FastAPI's encoding of an UploadFile for a 422 response,
    which walks vars(), met reclaim's tuple of code objects and failed (three of its tests)."""
    with tempfile.SpooledTemporaryFile(max_size=10) as spooled:
        assert [name for name in vars(spooled) if "reclaim" in name] == []
        spooled.write(b"x" * 100)  # rolled over: its file is still reported as the spooled file
        leak = leakwatch.one("file")
        assert leak.description.startswith("unnamed SpooledTemporaryFile in ")
        assert leak.site is not None and leak.site.filename == __file__
    assert leakwatch.leaks() == []


def test_what_mkstemp_and_mkdtemp_make_in_tmp_path_is_left_to_pytest(pytester: pytest.Pytester) -> None:
    """pytest removes its temporary directories: a path made in tmp_path (kombu points
    tempfile.tempdir there) is not the test's leak, while one made elsewhere still is."""
    pytester.makepyfile(
        test_temp="""
        import os
        import tempfile

        def test_in_tmp_path(tmp_path, monkeypatch):
            monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
            fd, _ = tempfile.mkstemp()
            os.close(fd)
            tempfile.mkdtemp(dir=tmp_path)

        def test_elsewhere(tmp_path):
            os.mkdir("elsewhere")
            fd, _ = tempfile.mkstemp(dir="elsewhere")
            os.close(fd)
        """
    )
    result = reclaim_pytest(pytester)
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_elsewhere*", "tempfile *elsewhere*mkstemp()*"])
    assert "ERROR at teardown of test_in_tmp_path" not in result.stdout.str()


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_named_temporary_file_not_deleted_is_its_path_left_on_disk(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """``NamedTemporaryFile(delete=False)``, closed, leaves its path on disk for the caller to
    remove, as ``mkstemp()`` does: one never removed was not reported (aiosqlite's perf test),
    one ``mkstemp()`` made was. It is now, at the line that made it; removed, it is not."""
    with tempfile.NamedTemporaryFile(dir=tmp_path, delete=False) as kept:
        at = line() - 1
    handle = tempfile.NamedTemporaryFile(dir=tmp_path, delete=False)  # noqa: SIM115 - closed by hand
    handle.close()
    with tempfile.NamedTemporaryFile(dir=tmp_path) as deleted:
        deleted.write(b"x")
    [leak] = [leak for leak in leakwatch.leaks("tempfile") if leak.details["path"] == kept.name]
    assert leak.description == f"{kept.name} (NamedTemporaryFile(delete=False), not removed)"
    assert leak.frames[0].lineno == at
    assert [leak.details["path"] for leak in leakwatch.leaks("tempfile")] == [kept.name, handle.name]
    os.remove(kept.name)
    os.remove(handle.name)
    assert leakwatch.leaks() == []


# An HTTPError made with a TemporaryFile as its body (as a test of retries on HTTP errors does),
# dropped unclosed; a file:// response (urllib's addinfourl around a file) never closed. Both are
# urllib responses, which subclass tempfile's wrapper: neither is a NamedTemporaryFile.
URLLIB = """\
    import tempfile, urllib.error, urllib.request
    def fail():
        body = tempfile.TemporaryFile(dir=".")
        raise urllib.error.HTTPError("http://x/", 500, "Error", None, body)
    try:
        fail()
    except urllib.error.HTTPError:
        pass
    response = urllib.request.urlopen("file://" + __file__)
"""


def test_a_urllib_response_is_the_file_it_wraps_not_a_named_temporary_file(tmp_path: Path) -> None:
    """urllib's responses subclass tempfile's wrapper: what leaks is the file inside, at its line."""
    report, stderr = reclaim_run_json(tmp_path, URLLIB)
    found = sorted((leak["kind"], leak["state"], leak["frames"][0]["line"]) for leak in report["leaks"])
    assert found == [("file", "collected", 3), ("file", "open", 9)], stderr
    assert "NamedTemporaryFile" not in stderr


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_spooled_file_dropped_unclosed_warns_at_the_line_that_dropped_it(leakwatch: Watch) -> None:
    """Its ``__del__`` warns with stacklevel=2, naming the frame under it: a ``__del__`` of
    reclaim's wrapped around it made that frame reclaim's, and a filter by module missed it
    (werkzeug's suite showed ``reclaim/leaks/_tempfiles.py`` in its warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        spooled = tempfile.SpooledTemporaryFile(max_size=10)  # noqa: SIM115 - dropped unclosed on purpose
        made = line() - 1
        spooled.write(b"x" * 100)
        del spooled
        dropped = line() - 1
    [warned] = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert (warned.filename, warned.lineno) == (__file__, dropped)
    leak = leakwatch.one("file")  # rolled over: still found as dropped by the program
    assert leak.state == "collected" and leak.site is not None and leak.site.lineno == made


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_mkstemp_and_mkdtemp_under_a_patched_stat_work_and_are_tracked(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """celery's tests patch ``os.fstat`` around ``mkstemp()``: reclaim's wrapper asked the patched
    function for the file's identity, ``mkstemp()`` raised TypeError with its file open, and that
    descriptor was the test's leak. So for ``mkdtemp()`` under a patched ``os.lstat``."""
    import os
    from unittest import mock

    with mock.patch("os.fstat"), mock.patch("os.lstat"), mock.patch("os.stat"):
        fd, path = tempfile.mkstemp(dir=tmp_path)
        made_file = line() - 1
        directory = tempfile.mkdtemp(dir=tmp_path)
        made_dir = line() - 1
    os.close(fd)
    found = {leak.kind: leak for leak in leakwatch.leaks() if leak.kind in ("tempfile", "tempdir")}
    assert found["tempfile"].details["path"] == path and found["tempfile"].frames[0].lineno == made_file
    assert found["tempdir"].details["path"] == directory and found["tempdir"].frames[0].lineno == made_dir
    os.remove(path)
    os.rmdir(directory)
    assert [leak for leak in leakwatch.leaks() if leak.kind in ("tempfile", "tempdir")] == []


def test_a_check_finding_only_a_mkdtemp_path_runs_no_full_collection(pytester: pytest.Pytester) -> None:
    """A path ``mkdtemp()`` made has no object a collection could free, nor one a holder keeps:
    pyfilesystem2's 480 tests that each leave one paid a full collection and a search for
    holders each, 4.5x the CPU. The path is reported all the same; a socket left beside it
    still gets its full collection."""
    pytester.makeconftest(
        """
        import gc
        import pytest

        FULL = []

        def count(phase, info):
            if phase == "start" and info["generation"] == 2:
                FULL.append(1)

        @pytest.hookimpl(hookwrapper=True)
        def pytest_runtest_teardown(item):
            FULL.clear()
            gc.callbacks.append(count)
            yield
            gc.callbacks.remove(count)
            print(f"full collections in {item.name}'s teardown: {len(FULL)}")
        """
    )
    pytester.makepyfile(
        test_paths="""
        import socket
        import tempfile

        KEEP = []

        def test_path():
            tempfile.mkdtemp(dir=".")

        def test_path_and_socket():
            tempfile.mkdtemp(dir=".")
            KEEP.append(socket.socket())
        """
    )
    result = reclaim_pytest(pytester, "-s", "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*full collections in test_path's teardown: 0*"])
    result.stdout.fnmatch_lines(["*full collections in test_path_and_socket's teardown: [1-9]*"])
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_path*", "tempdir * (mkdtemp(), not removed)"])


def test_a_temp_path_made_inside_a_wider_scopes_temp_directory_goes_with_it(
    pytester: pytest.Pytester,
) -> None:
    """pyfilesystem2's ``setUpClass`` makes a directory its ``tearDownClass`` removes with all in
    it, and each test makes its own inside: every test was said to leak it, 480 of them (the
    class's last too, now checked before the class's teardown, where ``mkstemp()``'s absolute
    path did not match the relative one ``mkdtemp(dir=".")`` gave its directory before 3.12). A
    path made inside a temp directory another label made, still there, is that label's; never
    removed, it is reported at the end with the directory."""
    pytester.makepyfile(
        test_nested="""
        import os
        import shutil
        import tempfile
        import unittest

        import pytest

        class TestRemoved(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.root = tempfile.mkdtemp(dir=".")

            @classmethod
            def tearDownClass(cls):
                shutil.rmtree(cls.root)

            def test_a(self):
                tempfile.mkdtemp(dir=self.root)

            def test_b(self):
                os.close(tempfile.mkstemp(dir=self.root)[0])

        @pytest.fixture(scope="module")
        def root():
            path = tempfile.mkdtemp(dir=".")
            yield path
            shutil.rmtree(path)

        def test_c(root):
            tempfile.mkdtemp(dir=root)

        def test_d(root):
            tempfile.mkdtemp(dir=root)

        class TestNeverRemoved(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                cls.root = tempfile.mkdtemp(dir=".")

            def test_e(self):
                tempfile.mkdtemp(dir=self.root)
        """
    )
    result = reclaim_pytest(
        pytester, "-p", "no:randomly", "-W", "ignore::pytest.PytestUnraisableExceptionWarning"
    )
    out = result.stdout.str()
    assert "ERROR at teardown" not in out, out
    result.stdout.fnmatch_lines(
        [
            "acquired by class-scoped fixture 'TestNeverRemoved.setUpClass'*",
            "tempdir *tmp* (mkdtemp(), not removed)",  # relative on 3.11, absolute from 3.12
            "*",
            "*",
            "",
            "tempdir *tmp*/tmp* (mkdtemp(), not removed)",
            "  acquired at test_nested.py:* in TestNeverRemoved.test_e",
        ]
    )


def test_a_temp_path_made_inside_a_directory_an_earlier_test_leaked_is_still_its_makers(
    pytester: pytest.Pytester,
) -> None:
    """A directory a test leaked takes nothing made inside it later: ZODB's tests leave
    ``tempfile.tempdir`` pointing at one, and every later test's ``mkdtemp()`` was blamed on the
    first, at the session's end, its own test passing."""
    pytester.makepyfile(
        test_leaky="""
        import tempfile

        made = {}

        def test_a():
            made["dir"] = tempfile.mkdtemp(dir=".")

        def test_b():
            tempfile.mkdtemp(dir=made["dir"])
        """
    )
    result = reclaim_pytest(pytester, "-p", "no:randomly")
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_a*",
            "  acquired at test_leaky.py:6 in test_a",
            "*ERROR at teardown of test_b*",
            "  acquired at test_leaky.py:9 in test_b",
        ]
    )
