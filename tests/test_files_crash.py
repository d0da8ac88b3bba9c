"""Crash test: a writer killed with SIGKILL at random moments never leaves a torn file.

This module is also the crash driver (``python test_files_crash.py PATH DURABLE KILLS SEED``):
the test starts it as a child; the driver forks writer processes, each of which
publishes successive versions of one file with ``atomic_write`` and writes one
byte to a pipe after each publish. The driver reads a random number of those
bytes, spins for a random few hundred microseconds (a deadline loop, not a
sleep) or, every other time, until a temp file appears, kills the writer with
SIGKILL and reaps it, then tells the test which
version was the last one reported published and waits for the test to check
the file before forking the next writer.

Every version is self-describing (``version length sha256`` header line, then
the payload), so "exactly one complete version" is checked byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

KILLS = 220
CHUNK = 4096


def version_bytes(version: int) -> bytes:
    """The full content of *version*: a header that describes the payload, then the payload."""
    size = random.Random(version).randrange(1, 192 * 1024)
    unit = b"%d;" % version
    payload = (unit * (size // len(unit) + 1))[:size]
    digest = hashlib.sha256(payload).hexdigest().encode()
    return b"%d %d %s\n" % (version, size, digest) + payload


def parse_version(content: bytes) -> int:
    """The version *content* holds; AssertionError unless it is exactly one complete version."""
    header, sep, payload = content.partition(b"\n")
    assert sep, f"no header line in {len(content)} bytes: {content[:60]!r}"
    fields = header.split()
    assert len(fields) == 3, f"torn header {header[:80]!r}"
    version, size = int(fields[0]), int(fields[1])
    assert len(payload) == size, f"version {version}: {len(payload)} payload bytes, header says {size}"
    assert hashlib.sha256(payload).hexdigest().encode() == fields[2], f"version {version}: bad digest"
    assert content == version_bytes(version)
    return version


# --- the driver (runs in a child process) ---------------------------------------------------


def _writer(path: str, durable: bool, version: int, progress: int) -> None:
    from reclaim.files import atomic_write

    try:
        data = version_bytes(version)
        while True:
            with atomic_write(path, "wb", durable=durable) as f:
                for start in range(0, len(data), CHUNK):
                    f.write(data[start : start + CHUNK])
            # The next version is made before this one is announced: the driver's kill, a few
            # hundred microseconds after the announcement, then lands in the next write, not in
            # making its bytes (which, on a loaded machine, can take longer than the spin).
            data = version_bytes(version + 1)
            os.write(progress, b".")
            version += 1
    finally:
        os._exit(1)


def _drain(fd: int) -> int:
    os.set_blocking(fd, False)
    total = 0
    try:
        while chunk := os.read(fd, 65536):
            total += len(chunk)
    except BlockingIOError:
        pass
    return total


def _driver(path: str, durable: bool, kills: int, seed: int) -> None:
    from reclaim.files import TEMP_SUFFIX  # imported once here, so every forked writer starts warm

    directory = os.path.dirname(path)
    rng = random.Random(seed)
    out = sys.stdout
    version = 1
    known = 0  # the newest version a writer reported published
    for _ in range(kills):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            _writer(path, durable, version, write_end)
        os.close(write_end)
        seen = 0
        for _ in range(rng.randrange(0, 4)):
            if not os.read(read_end, 1):
                break
            seen += 1
        if rng.random() < 0.5:
            spin_until = time.perf_counter() + rng.random() * 0.0005
            while time.perf_counter() < spin_until:
                pass
        else:
            # Every other kill waits (up to 50 ms) for a temp file to appear: the torn-write window
            # is exercised however the machine's load shifts the writer's timing.
            spin_until = time.perf_counter() + 0.05
            while time.perf_counter() < spin_until and not any(
                name.endswith(TEMP_SUFFIX) for name in os.listdir(directory)
            ):
                pass
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen += _drain(read_end)
        os.close(read_end)
        # Versions version .. version+seen-1 were reported published; version+seen may have been
        # renamed into place just before the kill, before its progress byte was written.
        if seen:
            known = version + seen - 1
        out.write(f"{known} {version + seen}\n")
        out.flush()
        if sys.stdin.readline().strip() != "go":
            return
        version += seen + 1  # never reuse a version number that may be on disk
    out.write("done\n")
    out.flush()


if __name__ == "__main__":
    _driver(sys.argv[1], sys.argv[2] == "1", int(sys.argv[3]), int(sys.argv[4]))
    sys.exit(0)


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
def test_sigkill_at_random_moments_leaves_exactly_one_complete_version(durable: bool, tmp_path: Path) -> None:
    """After each of 220 SIGKILLs the file holds exactly one complete version, never older than published.

    ``durable=False`` passes too: it keeps the all-or-nothing promise for a crash
    of the *process* (the kernel still holds the renamed file); what it gives up,
    surviving a power cut or kernel crash, cannot be produced by this test.
    """
    from reclaim.files import TEMP_SUFFIX, remove_stale_temps

    target = tmp_path / "state.bin"
    seed = random.randrange(2**32)
    driver = subprocess.Popen(
        [sys.executable, __file__, str(target), "1" if durable else "0", str(KILLS), str(seed)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert driver.stdin is not None and driver.stdout is not None
    checked = torn_temps = highest = 0
    try:
        while (line := driver.stdout.readline().strip()) != "done":
            assert line, f"driver died (seed {seed}): exit {driver.wait()}"
            known, newest = (int(x) for x in line.split())
            if target.exists():
                found = parse_version(target.read_bytes())
                # Never older than what was reported published or seen before; never unwritten.
                assert max(known, highest) <= found <= newest, (
                    f"seed {seed}: file holds version {found}, expected {max(known, highest)}..{newest}"
                )
                highest = found
            else:
                assert known == highest == 0, f"seed {seed}: version {known} was published, file gone"
            leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(TEMP_SUFFIX)]
            torn_temps += len(leftovers)
            assert sorted(remove_stale_temps(tmp_path)) == sorted(leftovers)
            assert [p.name for p in tmp_path.iterdir()] in ([], [target.name])
            checked += 1
            driver.stdin.write("go\n")
            driver.stdin.flush()
        assert driver.wait(timeout=60) == 0
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        driver.stdin.close()
        driver.stdout.close()
    assert checked == KILLS
    assert highest > 0, "no version was ever published"
    # Kills that landed mid-write left a temp file: the test did exercise the torn-write window.
    assert torn_temps > 0
