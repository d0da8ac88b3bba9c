"""temp_dir / temp_file: removed on every exit path, tracked while they exist, warned about when GC'd."""

from __future__ import annotations

import gc
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

import reclaim
from reclaim import _track
from reclaim._sites import Site, format_site
from reclaim.files import TempDir, TempFile, temp_dir, temp_file


@pytest.fixture
def tracked() -> Iterator[dict[int, tuple[str, str, Site]]]:
    """What the leak tracker would hold: id(obj) -> (kind, description, site), chained to any real hook."""
    held: dict[int, tuple[str, str, Site]] = {}
    before = (_track.on_acquire, _track.on_release)

    def acquire(kind: str, obj: object, description: str, site: Site) -> None:
        held[id(obj)] = (kind, description, site)
        if before[0] is not None:
            before[0](kind, obj, description, site)

    def release(obj: object) -> None:
        held.pop(id(obj), None)
        if before[1] is not None:
            before[1](obj)

    _track.install(acquire, release)
    try:
        yield held
    finally:
        _track.install(*before)


def test_temp_dir_is_removed_with_its_content_after_the_block(tmp_path: Path) -> None:
    with temp_dir(dir=tmp_path) as path:
        (path / "sub").mkdir()
        (path / "sub" / "f.txt").write_text("x")
        assert stat.S_IMODE(path.stat().st_mode) == 0o700
    assert not path.exists()


def test_temp_dir_is_removed_when_the_block_raises(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), temp_dir(dir=tmp_path) as path:
        (path / "f").write_text("x")
        raise KeyboardInterrupt
    assert not path.exists()


def test_read_only_directories_inside_are_removed_too(tmp_path: Path) -> None:
    with temp_dir(dir=tmp_path) as path:
        locked_in = path / "ro" / "deeper"
        locked_in.mkdir(parents=True)
        (locked_in / "f").write_text("x")
        locked_in.chmod(0o500)
        (path / "ro").chmod(0o000)
    assert not path.exists()


def test_temp_file_exists_empty_and_private_until_the_block_ends(tmp_path: Path) -> None:
    with temp_file(suffix=".json", dir=tmp_path) as path:
        assert path.read_bytes() == b"" and path.suffix == ".json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.write_text("{}")
    assert not path.exists()


def test_close_is_idempotent_and_tolerates_removal_by_someone_else(tmp_path: Path) -> None:
    handle = temp_file(dir=tmp_path)
    handle.path.unlink()
    handle.close()
    handle.close()
    assert handle.removed and "removed" in repr(handle)


def test_they_are_tracked_while_they_exist(tracked: dict[int, tuple[str, str, Site]], tmp_path: Path) -> None:
    directory = temp_dir(dir=tmp_path)
    file = temp_file(dir=tmp_path)
    kinds = {kind for kind, _, _ in tracked.values()}
    assert kinds == {"tempdir", "tempfile"}  # the kinds tempfile's own are tracked as
    kind, description, site = tracked[id(directory)]
    assert kind == "tempdir"
    assert str(directory.path) in description
    assert format_site(site).startswith(__file__)
    directory.close()
    file.close()
    assert tracked == {}


@pytest.mark.reclaim_allow(kind="tempdir")  # the garbage collector removed it: a leak, on purpose
def test_an_unclosed_one_warns_when_collected_and_is_removed(tmp_path: Path) -> None:
    handle = temp_dir(dir=tmp_path)
    path = handle.path
    with pytest.warns(ResourceWarning, match="garbage-collected before close"):
        del handle
        gc.collect()
    assert not path.exists()


def test_a_handle_is_usable_without_with(tmp_path: Path) -> None:
    handle = temp_dir(prefix="job-", dir=tmp_path)
    assert isinstance(handle, TempDir) and handle.path.name.startswith("job-")
    assert "exists" in repr(handle)
    handle.close()
    assert not handle.path.exists()
    other = temp_file(dir=tmp_path)
    assert isinstance(other, TempFile)
    other.close()


@pytest.mark.parametrize("factory", [temp_dir, temp_file])
def test_a_prefix_with_a_separator_is_refused(factory: object) -> None:
    with pytest.raises(ValueError, match="prefix"):
        factory(prefix=f"a{os.sep}b")  # type: ignore[operator]


@pytest.mark.parametrize("factory", [temp_dir, temp_file])
@pytest.mark.parametrize("directory", [3, b"/tmp"])
def test_a_dir_that_is_not_a_str_path_is_refused_naming_it(factory: object, directory: object) -> None:
    name = factory.__name__  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match=rf"{name}\(dir=\.\.\.\) must be None, a str or an os.PathLike"):
        factory(dir=directory)  # type: ignore[operator]


def test_they_are_exported_from_the_package() -> None:
    assert reclaim.temp_dir is temp_dir and reclaim.temp_file is temp_file


def test_the_leak_checker_reports_one_never_removed(tmp_path: Path) -> None:
    handle = None
    try:
        with pytest.raises(reclaim.LeakError, match="tempdir") as caught, reclaim.no_leaks():
            handle = temp_dir(dir=tmp_path)
        assert str(handle.path) in str(caught.value)
        assert __file__ in str(caught.value) or Path(__file__).name in str(caught.value)
        assert [leak.kind for leak in caught.value.leaks] == ["tempdir"]  # not its mkdtemp() too
    finally:
        if handle is not None:
            handle.close()


@pytest.mark.parametrize("factory", [temp_dir, temp_file], ids=["temp_dir", "temp_file"])
def test_the_leak_checker_ignores_one_never_removed_by_its_kind(factory: object, tmp_path: Path) -> None:
    kinds = {"tempdir", "tempfile"}
    with reclaim.no_leaks(ignore_kinds=kinds):
        handle = factory(dir=tmp_path)  # type: ignore[operator]
    handle.close()


def test_the_leak_checker_reports_nothing_of_ones_removed(tmp_path: Path) -> None:
    with reclaim.no_leaks(include_framework=True):
        with temp_dir(dir=tmp_path) as directory, temp_file(dir=directory) as path:
            path.write_text("x")
        temp_dir(dir=tmp_path).close()
        temp_file(dir=tmp_path).close()
