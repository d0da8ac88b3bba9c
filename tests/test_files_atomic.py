"""atomic_write: old-or-new content on every path, permissions, symlink rule, stale temp cleanup."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import reclaim
from reclaim import _files_atomic
from reclaim.files import TEMP_SUFFIX, atomic_write, remove_stale_temps


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def temps(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.endswith(TEMP_SUFFIX)]


@pytest.fixture
def umask() -> Iterator[int]:
    """Run the test under umask 0o027 (a value open()'s default differs from), then restore it."""
    old = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(old)


# --- content ----------------------------------------------------------------------------------


@pytest.mark.parametrize("durable", [True, False])
def test_success_replaces_the_content_and_leaves_no_temp(tmp_path: Path, durable: bool) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with atomic_write(target, durable=durable) as f:
        f.write("new")
        assert target.read_text() == "old", "readers see the old content until the block ends"
    assert target.read_text() == "new"
    assert temps(tmp_path) == []


@pytest.mark.parametrize("error", [ValueError("boom"), KeyboardInterrupt()])
def test_an_exception_keeps_the_old_content_and_removes_the_temp(
    tmp_path: Path, error: BaseException
) -> None:
    target = tmp_path / "f.txt"
    target.write_text("old")
    with pytest.raises(type(error)), atomic_write(target) as f:
        f.write("half of the new")
        raise error
    assert target.read_text() == "old"
    assert temps(tmp_path) == []


def test_an_exception_on_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "new.txt"
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write("x")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_binary_and_text_modes_with_encoding_and_newline(tmp_path: Path) -> None:
    target = tmp_path / "f"
    with atomic_write(target, "wb") as fb:
        fb.write(b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    with atomic_write(target, "w", encoding="utf-16", newline="\r\n") as ft:
        ft.write("é\n")
    assert target.read_bytes().decode("utf-16") == "é\r\n"


def test_the_body_may_close_the_file_itself(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    with atomic_write(target) as f:
        f.write("closed early")
        f.close()
    assert target.read_text() == "closed early"
    assert temps(tmp_path) == []


def test_mode_x_refuses_an_existing_file(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    target.write_text("first")
    with pytest.raises(FileExistsError), atomic_write(target, "x") as f:
        f.write("second")
    assert target.read_text() == "first"


def test_mode_x_does_not_overwrite_a_file_created_while_writing(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    with pytest.raises(FileExistsError, match="created by someone else"), atomic_write(target, "x") as f:
        f.write("mine")
        target.write_text("theirs")
    assert target.read_text() == "theirs"
    assert temps(tmp_path) == []


def test_mode_x_creates_a_new_file(tmp_path: Path) -> None:
    target = tmp_path / "f.bin"
    with atomic_write(target, "xb") as f:
        f.write(b"data")
    assert target.read_bytes() == b"data"
    assert temps(tmp_path) == []


def test_a_failed_fsync_fails_the_write_and_keeps_the_old_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fsync returning EIO cannot be produced on a healthy disk, so the call is replaced here."""
    target = tmp_path / "f.txt"
    target.write_text("old")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(_files_atomic, "_fsync", failing_fsync)
    with pytest.raises(OSError, match="Input/output"), atomic_write(target) as f:
        f.write("new")
    assert target.read_text() == "old"
    assert temps(tmp_path) == []


def test_a_missing_directory_raises_before_the_body_runs(tmp_path: Path) -> None:
    ran = False
    with pytest.raises(FileNotFoundError), atomic_write(tmp_path / "no" / "f.txt"):
        ran = True
    assert not ran


def test_it_is_single_use_and_explains_itself(tmp_path: Path) -> None:
    writer = atomic_write(tmp_path / "f.txt", durable=False)
    assert "not durable" in repr(writer) and "new" in repr(writer)
    with writer as f:
        assert writer.temp_path is not None and writer.temp_path.exists()
        f.write("x")
    assert "published" in repr(writer)
    assert writer.temp_path is None
    with pytest.raises(RuntimeError, match="only once"), writer:
        pass


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"mode": "r"}, "mode"),
        ({"mode": "a"}, "mode"),
        ({"mode": "wb", "encoding": "utf-8"}, "encoding"),
        ({"mode": "wb", "newline": ""}, "newline"),
        ({"newline": "\t"}, "newline"),
        ({"permissions": 0o10000}, "permissions"),
        ({"permissions": -1}, "permissions"),
        ({"encoding": "no-such-codec"}, "encoding"),
    ],
)
def test_values_not_accepted_are_a_value_error_naming_the_argument(
    tmp_path: Path, kwargs: dict[str, object], name: str
) -> None:
    with pytest.raises(ValueError, match=rf"atomic_write\({name}=\.\.\.\)"):
        atomic_write(tmp_path / "f", **kwargs)  # type: ignore[call-overload]
    assert os.listdir(tmp_path) == []


def test_an_empty_path_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"atomic_write\(path=\.\.\.\) must name a file"):
        atomic_write("")


@pytest.mark.parametrize(
    ("kwargs", "name", "wanted"),
    [
        ({"permissions": "0640"}, "permissions", "None or an int mode such as 0o640"),
        ({"permissions": True}, "permissions", "None or an int mode such as 0o640"),
        ({"permissions": 0o640 * 1.0}, "permissions", "None or an int mode such as 0o640"),
        ({"mode": b"w"}, "mode", "a str"),
        ({"encoding": 8}, "encoding", "None or a str"),
        ({"newline": b"\n"}, "newline", "None or a str"),
        ({"durable": 1}, "durable", "a bool"),
        ({"follow_symlinks": "no"}, "follow_symlinks", "a bool"),
    ],
)
def test_arguments_of_the_wrong_type_are_a_type_error_naming_the_argument_and_type(
    tmp_path: Path, kwargs: dict[str, object], name: str, wanted: str
) -> None:
    value = kwargs[name]
    with pytest.raises(TypeError) as caught:
        atomic_write(tmp_path / "f", **kwargs)  # type: ignore[call-overload]
    assert (
        str(caught.value)
        == f"atomic_write({name}=...) must be {wanted}, not {type(value).__name__} {value!r}"
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", [3, b"f", None])
def test_a_path_of_the_wrong_type_is_a_type_error_naming_it(path: object) -> None:
    with pytest.raises(TypeError, match=r"atomic_write\(path=\.\.\.\) must be a str or os.PathLike\[str\]"):
        atomic_write(path)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match=r"remove_stale_temps\(directory=\.\.\.\) must be a str"):
        remove_stale_temps(path)  # type: ignore[arg-type]


def test_a_file_object_that_cannot_be_made_leaves_no_temp_and_no_descriptor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_open = open

    def failing_open(fd: int, *args: object, **kwargs: object) -> object:
        real_open(fd, "rb").close()  # as open() does when its wrapper fails: the fd is closed
        raise LookupError("unknown encoding: x")

    monkeypatch.setattr(_files_atomic, "open", failing_open, raising=False)
    descriptors = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(LookupError, match="unknown encoding"), atomic_write(tmp_path / "f"):
        pass  # pragma: no cover - never entered
    assert os.listdir(tmp_path) == []
    assert sorted(os.listdir("/proc/self/fd")) == descriptors


def test_it_is_exported_from_the_package() -> None:
    assert reclaim.atomic_write is atomic_write
    assert atomic_write.__module__ == "reclaim.files"


# --- permissions and ownership ----------------------------------------------------------------


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o755, 0o444])
def test_the_existing_mode_is_kept(tmp_path: Path, mode: int) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(mode)
    with atomic_write(target) as f:
        f.write("new")
    assert mode_of(target) == mode


def test_a_new_file_gets_what_open_gives_under_the_umask(tmp_path: Path, umask: int) -> None:
    with open(tmp_path / "plain", "w") as f:
        f.write("x")
    with atomic_write(tmp_path / "atomic") as f:
        f.write("x")
    assert mode_of(tmp_path / "atomic") == mode_of(tmp_path / "plain") == 0o666 & ~umask


def test_explicit_permissions_are_exact_and_not_filtered_by_the_umask(tmp_path: Path, umask: int) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    with atomic_write(target, permissions=0o664) as f:
        f.write("new")
    assert mode_of(target) == 0o664


def test_the_temp_file_is_never_more_open_than_the_file_it_replaces(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_text("old")
    target.chmod(0o600)
    writer = atomic_write(target)
    with writer as f:
        assert writer.temp_path is not None
        assert mode_of(writer.temp_path) == 0o600
        f.write("new")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_the_existing_owner_and_group_are_kept(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    os.chown(target, 65534, 65534)
    target.chmod(0o6755)  # chown clears set-id bits: they must be set again after it
    with atomic_write(target) as f:
        f.write("new")
    st = os.stat(target)
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    assert mode_of(target) == 0o6755


# --- symlinks and special files -----------------------------------------------------------------


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.txt"
    link.symlink_to("real.txt")
    with atomic_write(link) as f:
        f.write("new")
    assert link.is_symlink() and os.readlink(link) == "real.txt"
    assert real.read_text() == "new"
    assert mode_of(real) == 0o640


def test_a_link_into_another_directory_writes_the_temp_next_to_the_target(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    real = tmp_path / "b" / "real"
    real.write_text("old")
    (tmp_path / "a" / "link").symlink_to(real)
    writer = atomic_write(tmp_path / "a" / "link")
    with writer as f:
        assert writer.temp_path is not None and writer.temp_path.parent == real.parent
        f.write("new")
    assert real.read_text() == "new"


def test_a_dangling_symlink_gets_its_target_created(tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to("missing")
    with atomic_write(link) as f:
        f.write("created")
    assert link.is_symlink()
    assert (tmp_path / "missing").read_text() == "created"


def test_follow_symlinks_false_refuses_a_symlink_and_leaves_it(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("old")
    link = tmp_path / "link"
    link.symlink_to("real")
    with pytest.raises(OSError, match="symbolic link") as caught, atomic_write(link, follow_symlinks=False):
        pass
    assert caught.value.errno == errno.ELOOP
    assert link.is_symlink() and real.read_text() == "old"
    assert temps(tmp_path) == []


def test_mode_x_treats_a_symlink_as_an_existing_name(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("missing")
    with pytest.raises(FileExistsError), atomic_write(tmp_path / "link", "x"):
        pass


def test_a_directory_or_fifo_is_refused(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError), atomic_write(tmp_path):
        pass
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"), atomic_write(fifo):
        pass
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


# --- stale temp files ---------------------------------------------------------------------------


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_remove_stale_temps_removes_a_dead_writers_temp_and_nothing_else(tmp_path: Path) -> None:
    stale = tmp_path / f".data.json.{dead_pid()}.0badc0de{TEMP_SUFFIX}"
    stale.write_text("torn")
    keep = [tmp_path / "data.json", tmp_path / f"notours{TEMP_SUFFIX}", tmp_path / ".x.12.zz.tmp"]
    for path in keep:
        path.write_text("keep")
    link = tmp_path / f".link.{dead_pid()}.00000000{TEMP_SUFFIX}"
    link.symlink_to(keep[0])
    assert remove_stale_temps(tmp_path) == [stale]
    assert all(p.exists() for p in keep) and link.is_symlink()


def test_remove_stale_temps_leaves_a_write_in_progress_alone(tmp_path: Path) -> None:
    target = tmp_path / "f.txt"
    writer = atomic_write(target)
    with writer as f:
        f.write("in progress")
        assert remove_stale_temps(tmp_path) == []
        assert writer.temp_path is not None and writer.temp_path.exists()
    assert target.read_text() == "in progress"


def test_remove_stale_temps_leaves_a_live_other_process_temp_alone(tmp_path: Path) -> None:
    """A temp whose writer is alive but not holding its lock (the create-then-lock gap) is kept."""
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        gap = tmp_path / f".f.{child.pid}.12345678{TEMP_SUFFIX}"
        gap.write_text("")
        assert remove_stale_temps(tmp_path) == []
        assert gap.exists()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert remove_stale_temps(tmp_path) == [gap]


def test_a_concurrent_reader_only_ever_sees_whole_versions(tmp_path: Path) -> None:
    """A reader racing a writer opens either the old file or the new one, never a partial one."""
    target = tmp_path / "f.txt"
    target.write_text("0:" + "0" * 1000)
    done = threading.Event()

    def write_versions() -> None:
        try:
            for version in range(1, 300):
                with atomic_write(target, durable=False) as f:
                    for _ in range(10):
                        f.write(str(version % 10) * 100)
                        f.flush()  # the partial content reaches the temp file, never the target
        finally:
            done.set()

    writer = threading.Thread(target=write_versions)
    writer.start()
    reads = 0
    try:
        while not done.is_set() or reads == 0:
            text = target.read_text()
            body = text.split(":", 1)[-1] if text.startswith("0:") else text
            assert len(body) == 1000 and len(set(body)) == 1, f"torn read: {text[:40]!r}..."
            reads += 1
    finally:
        writer.join()


def test_a_failed_rename_removes_the_temp_and_raises(tmp_path: Path) -> None:
    """A directory appearing at the target while the block runs makes os.replace fail for real."""
    target = tmp_path / "f.txt"
    with pytest.raises(IsADirectoryError), atomic_write(target) as f:
        f.write("new")
        target.mkdir()
        (target / "inside").write_text("keeps the directory non-empty")
    assert target.is_dir()
    assert temps(tmp_path) == []
