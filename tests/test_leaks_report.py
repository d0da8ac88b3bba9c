"""The text report: leaks of one kind from one line (a loop leaking) are one block saying how many."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from _leakhelp import LEAN, Watch, assert_site, fresh_untracked_epoll, leakwatch, line, untracked_epoll

__all__ = ["leakwatch"]  # the fixture, imported for pytest

pytest_plugins = ["pytester"]


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_leaks_alike_at_one_line_are_one_block_saying_how_many(leakwatch: Watch) -> None:
    """Three connections left open at one line, one elsewhere: two blocks, the first 'x 3'."""
    kept: list[sqlite3.Connection] = []
    try:
        kept.extend(sqlite3.connect(":memory:") for _ in range(3))
        at = line() - 1
        other = sqlite3.connect(":memory:")
        kept.append(other)
        found = leakwatch.leaks("sqlite3")
        assert len(found) == 4
        text = leakwatch.tracker.report(found).to_text()
    finally:
        for connection in kept:
            connection.close()
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 2, text
    assert blocks[0].splitlines()[0] == "sqlite3 :memory: x 3 (all alike but for their time)", text
    assert f"test_leaks_report.py:{at} " in blocks[0], text
    assert " x " not in blocks[1].splitlines()[0], text


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_leaks_from_one_line_that_differ_are_one_block_listing_a_few(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Forty files opened at one line, each its own path: one block, not forty (pip list --outdated
    printed 600 lines for two lines of its code)."""
    paths = [tmp_path / f"f{i:02}.txt" for i in range(40)]
    for path in paths:
        path.write_text("x")
    kept = [open(path) for path in paths]  # noqa: SIM115
    at = line() - 1
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("file")).to_text()
    finally:
        for file in kept:
            file.close()
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 1, text
    head, others, acquired, *_ = blocks[0].splitlines()
    # Not "x 40" after the first path: that read as forty of that one file.
    assert head == f"file {paths[0]} (mode 'r') and 39 more from the same line", text
    listed = "; ".join(f"{path} (mode 'r')" for path in paths[1:4])
    assert others == f"  the others: {listed}; and 36 more"
    assert acquired.startswith("  acquired at ") and f"test_leaks_report.py:{at} " in acquired, text


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_the_others_long_descriptions_are_shown_by_their_start_and_end(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """ZODB's suite makes temp directories inside a leaked one, nested deeper each time: "the
    others" listed three paths of some 2,000 characters each, the end-of-run section tens of KB."""
    deep = tmp_path.joinpath(*["nested-dir"] * 30)
    deep.mkdir(parents=True)
    paths = [deep / f"f{i}.txt" for i in range(3)]
    for path in paths:
        path.write_text("x")
    kept = [open(path) for path in paths]  # noqa: SIM115
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("file")).to_text()
    finally:
        for file in kept:
            file.close()
    others = text.splitlines()[1]
    assert others.startswith("  the others: ") and len(others) < 400, others
    assert "..." in others and others.endswith("nested-dir/f2.txt (mode 'r')"), others


def test_leaks_from_one_line_some_alike_list_what_differs_among_them(
    leakwatch: Watch, tmp_path: Path
) -> None:
    """Four files of two paths from one line: the block counts four and names the other path
    once, "among them", not as if it were the three others."""
    paths = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for path in paths:
        path.write_text("x")
    kept = [open(path) for path in [*paths, *paths]]  # noqa: SIM115
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("file")).to_text()
    finally:
        for file in kept:
            file.close()
    head, others, *_ = text.splitlines()
    assert head == f"file {paths[0]} (mode 'r') and 3 more from the same line", text
    assert others == f"  among them: {paths[1]} (mode 'r')", text


def test_the_other_descriptor_of_a_line_is_named_as_one(leakwatch: Watch) -> None:
    """Both ends of an ``os.pipe()``: the second was "the other: 13 -> pipe:[...]", a bare number."""
    ends = os.pipe()
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("fd")).to_text()
    finally:
        for fd in ends:
            os.close(fd)
    head, others, *_ = text.splitlines()
    assert head.startswith(f"fd {ends[0]} -> pipe:[") and head.endswith("and 1 more from the same line"), text
    assert others.startswith(f"  the other: fd {ends[1]} -> pipe:["), text


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_leaks_from_one_line_run_by_several_threads_are_one_block_naming_them(leakwatch: Watch) -> None:
    """A pool's workers running one leaking line: one block listing the threads, not one per
    worker (their split changing from run to run)."""
    import threading

    kept: list[sqlite3.Connection] = []
    lock = threading.Lock()

    def leak() -> None:
        connection = sqlite3.connect(":memory:", check_same_thread=False)  # LEAK
        with lock:
            kept.append(connection)

    workers = [threading.Thread(target=leak, name=f"worker-{i}") for i in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("sqlite3")).to_text()
    finally:
        for connection in kept:
            connection.close()
    blocks = text.strip().split("\n\n")
    assert len(blocks) == 1, text
    lines = blocks[0].splitlines()
    assert lines[0] == "sqlite3 :memory: x 5 (all alike but for their time)", text
    threads = next(text for text in lines if text.startswith("  threads "))
    assert threads.count("'worker-") == 3 and " and 2 more, " in threads, text


def test_a_hypothesis_test_that_leaks_shows_its_own_frames_not_hypothesis(pytester: pytest.Pytester) -> None:
    """hypothesis runs the examples: its frames are plumbing, as pytest's are, and are not shown."""
    pytester.makepyfile(
        test_examples="""
        import sqlite3
        from hypothesis import given, settings, strategies as st

        KEEP = []

        @settings(max_examples=5, database=None)
        @given(st.integers())
        def test_leaks_per_example(n):
            KEEP.append(sqlite3.connect(":memory:"))
        """
    )
    result = pytester.runpytest_subprocess(*LEAN, "--reclaim", timeout=120)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*this test leaked 5 resources*",
            "sqlite3 :memory: x 5 (all alike but for their time)",
            "  acquired at test_examples.py:9 in test_leaks_per_example",
        ]
    )
    report = result.stdout.str().split("this test leaked")[1]
    assert "/hypothesis/" not in report, result.stdout.str()


def test_an_untracked_descriptors_age_says_it_is_from_when_it_was_first_seen(leakwatch: Watch) -> None:
    """No hook saw it opened: its age counts from the first check that saw it, and says so;
    seen first by the check reporting it (`reclaim run`'s, at exit), it has no age to give."""
    import dataclasses
    import select

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux-only")
    with fresh_untracked_epoll(leakwatch) as poller:
        [leak] = [leak for leak in leakwatch.leaks("untracked-fd") if leak.details["fd"] == poller.fileno()]
    first = leakwatch.tracker.report([dataclasses.replace(leak, age=0.0)]).to_text()
    later = leakwatch.tracker.report([dataclasses.replace(leak, age=2.5)]).to_text()
    assert ", first seen by this check" in first and " ago" not in first, first
    assert ", first seen 2.5 s ago" in later, later


def test_an_untracked_anonymous_descriptor_says_what_it_is(leakwatch: Watch) -> None:
    """An epoll instance no hook saw made (a C library's) has no line to show: its entry says
    what the kernel's name for it means and what makes one."""
    import select

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux's")
    with fresh_untracked_epoll(leakwatch) as poller:
        polling = poller.fileno()
        [leak] = [leak for leak in leakwatch.leaks("untracked-fd") if leak.details["fd"] == polling]
    assert leak.description == (
        f"fd {polling} -> anon_inode:[eventpoll]"
        " (an epoll instance made by C code, or before tracking started)"
    )


def test_an_untracked_directory_descriptor_names_os_scandir(leakwatch: Watch, tmp_path: Path) -> None:
    """An ``os.scandir()`` iterator never closed holds its directory open, made where no hook
    sees it: the entry says so, as CPython's ResourceWarning "unclosed scandir iterator" does."""
    (tmp_path / "a").touch()
    entries = os.scandir(tmp_path)
    next(entries)
    try:
        [leak] = leakwatch.leaks("untracked-fd")
    finally:
        entries.close()
    assert leak.description.endswith(
        "(a directory: an os.scandir() iterator not closed (a with-block or close()), or C code's)"
    ), leak.description
    assert leakwatch.leaks() == []


@pytest.mark.skipif(not hasattr(os, "timerfd_create"), reason="os.timerfd_create is 3.13's, on Linux")
def test_a_timerfd_os_made_is_a_descriptor_at_its_line(leakwatch: Watch) -> None:
    """``os.timerfd_create`` (3.13) hands out a descriptor as ``os.eventfd`` does: tracked at the
    line that made it, not an untracked descriptor with no line."""
    import time

    timer = os.timerfd_create(time.CLOCK_MONOTONIC)
    at = line() - 1
    try:
        leak = leakwatch.one("fd")
    finally:
        os.close(timer)
    assert leak.details["fd"] == timer
    assert_site(leak, at)
    assert leakwatch.leaks() == []


def test_every_kind_the_tracker_can_report_is_listed_in_kinds() -> None:
    """``reclaim.leaks.KINDS`` (and the JSON schema's documentation) name every kind a library
    integration registers: a new integration that forgot to list its kind fails here."""
    import reclaim.leaks
    from reclaim.leaks import _instrument, _kinds

    for _, target in _instrument.HOOKS:
        _instrument.installer(target)  # imports the integration, which registers its kinds
    assert set(_kinds.KINDS) <= set(reclaim.leaks.KINDS)
    documented = (Path(__file__).parent.parent / "docs" / "leaks-json.md").read_text(encoding="utf-8")
    assert [kind for kind in reclaim.leaks.KINDS if f"`{kind}`" not in documented] == []


def test_the_import_hooks_name_every_module_each_integration_has_a_table_for() -> None:
    """``_instrument.HOOKS`` repeats the module names of the integrations' own tables (so as not
    to import them to know when to): each installer is hooked on exactly its table's modules."""
    from reclaim.leaks import (
        _aiormq,
        _apscheduler,
        _dask,
        _filelock,
        _grpc,
        _instrument,
        _jupyter,
        _multiprocessing,
        _nats,
        _paho,
        _pexpect,
        _pika,
        _psycopg,
        _pycares,
        _pyftpdlib,
        _sockets,
        _tornado,
        _twisted,
        _watchdog,
        _watchfiles,
    )

    def hooked(target: str) -> set[str]:
        return {name for name, hook in _instrument.HOOKS if hook == target}

    tables: dict[str, set[str]] = {
        "_psycopg:install_pool": set(_psycopg.POOL_MODULES),
        "_multiprocessing:install_owned": set(_multiprocessing.OWNED),
        "_multiprocessing:install_owned_package": {
            f"{package}.{module}"
            for package in _multiprocessing.OWNED_PACKAGES
            for module in _multiprocessing.OWNED_PACKAGE_MODULES
        },
        "_grpc:install": set(_grpc.MAKERS),
        "_grpc:install_channel": set(_grpc.CHANNELS),
        "_watchfiles:install": set(_watchfiles.MODULES),
        "_pycares:install": set(_pycares.MODULES),
        "_filelock:install": set(_filelock.MODULES),
        "_filelock:install_lease": set(_filelock.LEASES),
        "_pyftpdlib:install": set(_pyftpdlib.LOOPS),
        "_sockets:install_finalizer_aliases": set(_sockets.FINALIZER_ALIASES),
        "_twisted:install_owned": set(_twisted.OWNED),
        "_twisted:install_poller": set(_twisted.POLLERS),
        "_twisted:install_unbound": set(_twisted.UNBOUND),
    }
    for integration in (
        _pika,
        _paho,
        _nats,
        _aiormq,
        _watchdog,
        _apscheduler,
        _dask,
        _pexpect,
        _tornado,
        _jupyter,
    ):
        short = integration.__name__.rpartition(".")[2]
        for name, function in integration.MODULES.items():
            tables.setdefault(f"{short}:{function.__name__}", set()).add(name)
    assert {target: hooked(target) for target in tables} == tables
    for _, target in _instrument.HOOKS:
        assert callable(_instrument.installer(target)), target


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_untracked_descriptors_in_one_block_are_not_said_to_come_from_one_line(leakwatch: Watch) -> None:
    """Two epolls no hook saw opened share a block, as neither has a line: the block
    says that, not "from the same line" above "acquired at <unknown>" (kombu's hub and curl fds)."""
    import select

    if not hasattr(select, "epoll"):
        pytest.skip("select.epoll is Linux's")
    poller = untracked_epoll()  # a descriptor no hook sees opened
    other = untracked_epoll()
    try:
        text = leakwatch.tracker.report(leakwatch.leaks("untracked-fd")).to_text()
    finally:
        poller.close()
        other.close()
    head = text.splitlines()[0]
    assert head.endswith(" and 1 more, none with a known line"), text
    assert "from the same line" not in text, text


@pytest.mark.reclaim_allow  # leaks on purpose, to be found by the tracker under test
def test_a_leak_an_installed_library_made_leads_with_the_programs_line(leakwatch: Watch) -> None:
    """SQLAlchemy's pool connects five frames under ``engine.connect()``: the test's line leads,
    the library's frames follow under 'inside', innermost first; a leak the test's own line
    made has none."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    engine = sqlalchemy.create_engine("sqlite://")
    try:
        connection = engine.connect()
        at = line() - 1
        own = sqlite3.connect(":memory:")
        at_own = line() - 1
        try:
            # The connection checked out is held by its engine (listed under it): reported alone.
            (checkout,) = leakwatch.one("sqlalchemy").holds
            found = [checkout, *leakwatch.leaks("sqlite3")]
            text = leakwatch.tracker.report(found).to_text(width=400)
        finally:
            own.close()
            connection.close()
    finally:
        engine.dispose()
    library, mine = text.strip().split("\n\n")
    if "Engine" not in library:
        library, mine = mine, library
    lines = library.splitlines()
    assert lines[1].startswith("  acquired at ") and f"test_leaks_report.py:{at} in " in lines[1], text
    inside = next(i for i, text_line in enumerate(lines) if text_line.startswith("  inside "))
    assert all(text_line.startswith("         from ") for text_line in lines[2:inside]), text
    assert lines[inside].startswith("  inside sqlalchemy: "), text
    assert "site-packages" in lines[inside] and "/sqlalchemy/" in lines[inside], text
    assert "in Engine.connect" in "\n".join(lines[inside:]), text
    assert f"test_leaks_report.py:{at_own} in " in mine and "inside" not in mine, text


def test_clients_alike_but_for_what_they_hold_are_not_said_to_be_all_alike() -> None:
    """Two redis clients made at one line, each holding a connection to another database: "x 2
    (all alike but for their time)" said they were the same, above two different connections."""
    from reclaim._sites import Frame
    from reclaim.leaks import Report
    from reclaim.leaks._report import Leak

    site = (Frame("app.py", 8, "connect"),)

    def leak(kind: str, description: str, holds: tuple[Leak, ...] = ()) -> Leak:
        return Leak(kind, description, "open", site, "MainThread", None, 1, 0.0, 0.0, holds=holds)

    clients = [
        leak(
            "redis",
            "redis.Redis not closed (close(), or a with-block)",
            (leak("redis-connection", f"127.0.0.1:6379/{db}"),),
        )
        for db in (0, 1)
    ]
    head = Report(clients).to_text().splitlines()[0]
    assert head == "redis.Redis not closed (close(), or a with-block) and 1 more from the same line"
    alike = [leak("redis", "redis.Redis not closed (close(), or a with-block)") for _ in range(2)]
    assert Report(alike).to_text().splitlines()[0].endswith(" x 2 (all alike but for their time)")


def test_a_description_that_names_a_package_of_the_kinds_name_is_not_prefixed_by_the_kind() -> None:
    """requests-futures' session is of kind ``requests``: it read "requests
    requests_futures.sessions.FuturesSession not closed", as a plain session reads
    "requests.Session not closed"."""
    from reclaim._sites import Frame
    from reclaim.leaks import Report
    from reclaim.leaks._report import Leak

    site = (Frame("app.py", 8, "connect"),)
    futures = Leak(
        "requests",
        "requests_futures.sessions.FuturesSession not closed (close(), or a with-block)",
        "open",
        site,
        "MainThread",
        None,
        1,
        0.0,
        0.0,
    )
    head = Report([futures]).to_text().splitlines()[0]
    assert head == "requests_futures.sessions.FuturesSession not closed (close(), or a with-block)"


def test_a_holder_finalized_while_what_it_holds_is_open_is_not_said_to_be_closed() -> None:
    """An aiohttp session's ``__del__`` only warns: a warnings recorder that keeps the warning
    keeps the session's socket open, and the entry said the collector closed it, above its
    socket marked "(open)"."""
    from reclaim._sites import Frame
    from reclaim.leaks import Report
    from reclaim.leaks._report import Leak

    site = (Frame("app.py", 8, "connect"),)
    sock = Leak("socket", "AF_INET/SOCK_STREAM (fd 9)", "open", site, "MainThread", None, 1, 0.0, 0.0)
    session = Leak(
        "aiohttp",
        "aiohttp.ClientSession not closed (await session.close(), or async with)",
        "collected",
        site,
        "MainThread",
        None,
        1,
        0.0,
        0.0,
        holds=(sock,),
    )
    head = Report([session]).to_text().splitlines()[0]
    assert "which closed it" not in head
    assert head.endswith("; dropped, finalized by the garbage collector, and what it holds is still open")
