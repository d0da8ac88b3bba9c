"""What a leak check found: :class:`Leak` and :class:`Report`, as text (rich) or JSON.

Formatting happens here and only here, when someone asks for a report: the
tracker keeps raw ``(code, line)`` pairs and turns them into frames at the end.
This module is imported then too (the first leak found, the first report made,
or ``reclaim.leaks.Leak`` looked up), not with the tracker: its dataclasses
import :mod:`dataclasses` and :mod:`inspect`, which were a third of what
``reclaim run`` paid before the program's first line.
The JSON layout is documented in ``docs/leaks-json.md`` and versioned by
:data:`SCHEMA`; add fields freely, bump the number when one changes meaning.
"""

from __future__ import annotations

import io
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

from reclaim._sites import Frame, is_program, shown

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import IO, Any

#: The real clock, bound at import (see reclaim._sites._time).
_time = time.time

__all__ = ["SCHEMA", "Ignore", "Leak", "Report"]

#: Identifies the JSON layout; see docs/leaks-json.md.
SCHEMA = "reclaim.leaks/1"


@dataclass(frozen=True, slots=True)
class Leak:
    """One resource acquired inside the checked window and not released by the program.

    Attributes:
        kind: ``"file"``, ``"fd"``, ``"socket"``, ``"sqlite3"``, ``"psycopg2"``, ``"subprocess"``,
            ``"thread"`` (also a ``ThreadPoolExecutor`` not shut down), ``"task"`` (an
            asyncio task, or a gevent greenlet, left pending),
            ``"tempdir"``, ``"tempfile"``, ``"mmap"``, ``"selector"``, ``"eventloop"``
            (an asyncio event loop not closed; its selector and self-pipe sockets are part of it),
            ``"multiprocessing"`` (a pool, queue, manager, ``Pipe()`` pair or
            ``ProcessPoolExecutor`` not closed or shut down), ``"sharedmemory"`` (a
            ``multiprocessing.shared_memory.SharedMemory`` not closed, or made and not
            unlinked; its map and descriptor are part of it), ``"aiohttp"``, ``"httpx"``,
            ``"httpcore"``, ``"requests"`` or ``"urllib3"`` (an HTTP client or pool not closed,
            holding leaked sockets: see ``holds``), ``"sqlalchemy"`` (an engine never disposed, holding the
            connections its pool keeps), ``"redis"`` (a redis-py client never closed, holding its
            connections), ``"watchdog"`` (a watchdog observer never stopped, or an inotify
            reader whose descriptors are still open), ``"scope"``,
            ``"resource"``, ``"lease"`` or
            ``"untracked-fd"`` (a descriptor no hook saw opened).
        description: what it is: path and mode, peer address, pid and command,
            thread name and target, task coroutine ...
        state: ``"open"`` (still held when checked), ``"collected"`` (the garbage
            collector closed it, not the program), ``"cancelled"`` (a task
            still pending when ``asyncio.run`` or a test runner closed its loop, or an aiormq
            connection still open then),
            ``"terminated"`` (an asyncpg pool's connection still acquired when the
            pool terminated) or ``"loop-closed"`` (a uvloop connection or server never closed, which
            its loop's ``close()`` closed).
        frames: where it was acquired, the user's line first; frames of reclaim,
            the standard library's plumbing and test runners are left out after it.
            Empty for an untracked descriptor.
        thread: name of the thread that acquired it (None for an untracked descriptor).
        context: what was running then (the test id under the pytest plugin), or None.
        pid: the process that acquired it (differs from ``os.getpid()`` after a fork).
        acquired_at: ``time.time()`` at acquisition; for an untracked descriptor,
            when a check first saw it.
        age: seconds from acquisition to the check.
        details: kind-specific facts (``path``, ``fd``, ``pid``, ``args``, ``peer`` ...).
        seq: the tracker generation it was acquired in (a snapshot starts a new one);
            0 for untracked descriptors.
        holds: for a library object that owns sockets (kind ``"aiohttp"``: a
            ``ClientSession``, a connector, a test client or server; ``"httpx"``: a
            ``Client`` or ``AsyncClient``; ``"httpcore"``: a pool the program made;
            ``"requests"``: a ``Session``; ``"urllib3"``: a ``PoolManager``; ``"sqlalchemy"``:
            an ``Engine``; ``"redis"``: a client), the leaks it holds, listed under it: the
            entry is the object, at the line that made it, not each socket at its request
            line. For a
            ``"thread"`` still running, the event loop, tasks and worker threads it runs, and
            the sockets that loop opened. For a ``"watchdog"`` observer, its emitters' threads
            and its inotify reader; for that reader, its thread.
            Empty for every other kind.
        cut: its stack used every frame of the depth kept, those not shown included (an event
            loop's, a thread's): the lines that called it may go on past ``frames``.
        was: for a resource a pool lent and never got back, ``(seq, context, acquired_at,
            thread, frames)`` as they were before the checkout: what it is blamed as again
            once given back (the same leak), else None.
    """

    kind: str
    description: str
    state: str
    frames: tuple[Frame, ...]
    thread: str | None
    context: str | None
    pid: int
    acquired_at: float
    age: float
    details: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    seq: int = 0
    holds: tuple[Leak, ...] = ()
    cut: bool = field(default=False, compare=False)
    was: tuple[Any, ...] | None = field(default=None, compare=False)

    @property
    def site(self) -> Frame | None:
        """The user's line that acquired it (``str()`` gives ``file:line in function``), or None."""
        return self.frames[0] if self.frames else None

    @property
    def closed_by_gc(self) -> bool:
        """True when the garbage collector, not the program, closed it."""
        return self.state == "collected"

    def to_json(self) -> dict[str, Any]:
        """This leak as JSON-ready data (one element of the report's ``leaks`` list)."""
        data = {
            "kind": _jsonable(self.kind),
            "description": _jsonable(self.description),
            "state": _jsonable(self.state),  # may be a str subclass telling more (_sockets._Reason)
            "closed_by_gc": self.closed_by_gc,
            "frames": [{"file": f.filename, "line": f.lineno, "function": f.function} for f in self.frames],
            "thread": _jsonable(self.thread),
            "context": _jsonable(self.context),
            "pid": self.pid,
            "acquired_at": self.acquired_at,
            "age": round(self.age, 6),
            "details": _jsonable(self.details),
            "seq": self.seq,
        }
        if self.holds:  # only what holds something has the field
            data["holds"] = [held.to_json() for held in self.holds]
        return data

    def headline(self) -> str:
        """One line: kind, description and site (used in exception messages)."""
        where = f" acquired at {self.site}" if self.site else ""
        state = "" if self.state == "open" else f" [{self.state}]"
        holds = ""
        if self.holds:
            counts = Counter(held.kind for held in self.holds).most_common()
            holds = "; holds " + ", ".join(f"{n} {kind}" for kind, n in counts)
        return f"{self.kind}: {self.description}{state}{where}{holds}"


#: A filter: a regular expression searched in a leak's description, or a predicate.
Ignore = str | re.Pattern[str] | Callable[[Leak], bool]


@dataclass(frozen=True, slots=True)
class Report:
    """The leaks a check found, in acquisition order; empty (and falsy) when clean.

    Example::

        tracker = reclaim.leaks.Tracker().start()
        run_the_program()
        report = tracker.report()
        if report:
            report.print()          # to stderr, in colour on a terminal
        tracker.stop()
    """

    leaks: tuple[Leak, ...]
    checked: float = field(default_factory=_time)

    def __post_init__(self) -> None:
        leaks: Any = self.leaks
        if not isinstance(leaks, tuple):  # callers may pass the list Tracker.leaks() returned
            object.__setattr__(self, "leaks", tuple(leaks))

    def __bool__(self) -> bool:
        return bool(self.leaks)

    def __len__(self) -> int:
        return len(self.leaks)

    def __iter__(self) -> Iterator[Leak]:
        return iter(self.leaks)

    def counts(self) -> dict[str, int]:
        """Number of leaks per kind, most common first."""
        return dict(Counter(leak.kind for leak in self.leaks).most_common())

    def summary(self) -> str:
        """One line such as ``3 leaks: 2 file, 1 thread`` (or ``no leaks``)."""
        if not self.leaks:
            return "no leaks"
        noun = "leak" if len(self.leaks) == 1 else "leaks"
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.counts().items())
        return f"{len(self.leaks)} {noun}: {kinds}"

    def to_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (``json.dump`` it); layout in ``docs/leaks-json.md``."""
        return {
            "schema": SCHEMA,
            "checked": self.checked,
            "count": len(self.leaks),
            "counts": self.counts(),
            "leaks": [leak.to_json() for leak in self.leaks],
        }

    def to_text(self, *, depth: int | None = None, color: bool = False, width: int = 100) -> str:
        """The report for people, one block per leak (leaks alike but for their time share one), as a string.

        *depth* caps the frames shown per leak (all captured frames by default).

        Raises:
            TypeError: *depth* is not an int (or None), or *width* is not an int.
        """
        if isinstance(width, bool) or not isinstance(width, int):
            raise TypeError(f"width must be an int (columns), got {width!r}")
        from rich.console import Console  # imported here: rich costs ~50 ms, only reports need it

        buffer = io.StringIO()
        console = Console(
            file=buffer,
            width=width,
            color_system="standard" if color else None,
            force_terminal=color,
            highlight=False,
            soft_wrap=True,
        )
        self.render(console, depth=depth)
        return buffer.getvalue()

    def print(self, file: IO[str] | None = None, *, depth: int | None = None) -> None:
        """Write the report to *file* (default ``sys.stderr``), in colour when it is a terminal."""
        stream = sys.stderr if file is None else file
        try:
            color = stream.isatty()
        except (AttributeError, ValueError):
            color = False
        stream.write(self.to_text(depth=depth, color=color))
        stream.flush()

    def render(self, console: Any, *, depth: int | None = None) -> None:
        """Print the report on a ``rich.console.Console``."""
        from rich.markup import escape

        if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)):
            raise TypeError(f"depth must be an int (frames per leak) or None, got {depth!r}")
        if not self.leaks:
            console.print("no leaks")
            return
        # Leaks of one kind from one line (a loop, or a hypothesis test's examples, or the tests
        # whose fixture each left one) are one block saying how many: a hundred blocks hide the
        # others. What differs between them (forty
        # paths, say, or the pool threads that ran the line) is listed under the first, a few
        # of them, not given a block each.
        alike: dict[tuple[Any, ...], list[Leak]] = {}
        for leak in self.leaks:
            key = (leak.kind, leak.state, leak.frames, leak.pid)
            alike.setdefault(key, []).append(leak)
        for index, group in enumerate(alike.values()):
            leak = group[0]
            if index:
                console.print()
            state = _state_text(leak)
            if "garbage collector" in leak.description:
                state = ""  # the description says what the collector did (a Pipe's ends)
            if state == _STATES["collected"] and any(held.state == "open" for held in leak.holds):
                # Its finalizer ran, and closed nothing it holds: aiohttp's session only warns,
                # and a warnings recorder that keeps the warning keeps the session and its socket.
                state = _HOLDS_OPEN
            if state == _STATES["collected"] and " not closed" in leak.description:
                # "not closed (engine.dispose()) (closed by the garbage collector...)" read as a
                # contradiction: the program did not close it, the collector did.
                state = f"[yellow]; {_LEFT_TO_COLLECTOR}[/]"
            elif state == _HOLDS_OPEN and " not closed" in leak.description:
                state = f"[yellow]; {_HOLDS_OPEN}[/]"
            else:
                state = f" [yellow]({escape(state)})[/]" if state else ""
            others = list(
                dict.fromkeys(
                    other.description for other in group[1:] if other.description != leak.description
                )
            )
            # "x 40" after the first one's description read as forty of that one where they
            # differ: "and 39 more" says the first is one of them, listed below it.
            if len(group) == 1:
                times = ""
            elif not others and len({tuple(h.description for h in other.holds) for other in group}) == 1:
                times = f" [bold]x {len(group)}[/] (all alike but for their time)"
            elif leak.frames:
                times = f" [bold]and {len(group) - 1} more[/] from the same line"
            else:  # untracked descriptors: alike in having no line, not in coming from one
                times = f" [bold]and {len(group) - 1} more[/], none with a known line"
            kind, description = leak.kind, leak.description
            if description.startswith(f"{kind}."):
                # "multiprocessing.Pool not closed", not "multiprocessing multiprocessing.Pool ...".
                description = description[len(kind) :]
            elif description.startswith((*_OF_THE_KIND.get(kind, ()), f"{kind}_")):
                # "multiprocess.Pool not closed", not "multiprocessing multiprocess.Pool ...";
                # "requests_futures.sessions.FuturesSession", not "requests requests_futures...".
                kind = ""
            else:
                kind += " "
            console.print(f"[bold red]{escape(kind)}[/]{escape(description)}{state}{times}")
            if others:
                # A description that is a number first is one the headline's kind names ("fd 12
                # -> pipe:[...]"): alone, "13 -> /dev/pts/0" read as nothing in particular.
                shown = "; ".join(
                    _shortened(f"{leak.kind} {o}" if o[:1].isdigit() else o) for o in others[:_OTHERS_SHOWN]
                )
                more = len(others) - _OTHERS_SHOWN
                # All of the rest when each differs; else the other descriptions among them.
                named = (
                    ("the other" if len(others) == 1 else "the others")
                    if len(others) == len(group) - 1
                    else "among them"
                )
                console.print(f"  {named}: " + escape(shown) + (f"; and {more} more" if more > 0 else ""))
            # The program's line heads the stack, the library frames it called into (an engine's
            # pool connecting, a server's listening socket) below it, under "inside": the line
            # a reader can change first, where it was made second.
            inner = _library_frames(leak.frames)
            frames = leak.frames[len(inner) :]
            if depth is not None:
                frames, inner = frames[: max(1, depth)], inner[: max(1, depth)]
            if frames:
                first, *rest = frames
                console.print(f"  acquired at [cyan]{escape(_shown(first))}[/]")
                for frame in rest:
                    console.print(f"         from {escape(_shown(frame))}")
                if inner:
                    first, *rest = inner
                    console.print(f"  inside {escape(_libraries(inner))}: {escape(_shown(first))}")
                    for frame in rest:
                        console.print(f"         from {escape(_shown(frame))}")
            else:
                # Seen only in the descriptor table: opened where no hook looks (C code, or a
                # class called directly: io.FileIO, select.epoll, sqlite3.Connection).
                console.print("  acquired at <unknown>: opened by code reclaim does not hook")
            # Where the garbage collector's leaks lost their last reference: the program's line
            # to fix (a description may name it already: a socket's makefile() object's).
            wheres = dict.fromkeys(other.details.get("dropped_at") for other in group)
            dropped = [str(where) for where in wheres if where and where not in leak.description]
            if dropped:
                more = len(dropped) - _OTHERS_SHOWN
                # Closed by an owner's finalizer, the resource itself may still be referenced
                # (a proxy whose __del__ closes the socket its manager keeps): whose it was.
                closers = {other.details.get("closed_by") for other in group}
                head = "last reference dropped at "
                if len(closers) == 1 and (closer := closers.pop()) is not None:
                    head = f"closed by {closer}(), run as the last reference to that object was dropped at "
                console.print(
                    f"  {escape(head)}"
                    + escape("; ".join(dropped[:_OTHERS_SHOWN]))
                    + (f" and {more} more" if more > 0 else "")
                )
            held = [held for other in group for held in other.holds]
            for one in held[:_HELD_SHOWN]:
                console.print("  holds " + escape(_held(one, leak.state)))
            if len(held) > _HELD_SHOWN:
                console.print(f"  and {len(held) - _HELD_SHOWN} more")
            facts = []
            threads = sorted({other.thread for other in group if other.thread})
            if len(threads) == 1:
                facts.append(f"thread {threads[0]!r}")
            elif threads:
                named = ", ".join(repr(name) for name in threads[:_OTHERS_SHOWN])
                more = len(threads) - _OTHERS_SHOWN
                facts.append(f"threads {named}" + (f" and {more} more" if more > 0 else ""))
            contexts = list(dict.fromkeys(other.context for other in group if other.context))
            if contexts:  # the tests each leaked one alike (pytest's late leaks), in their order
                during = ", ".join(contexts[:_OTHERS_SHOWN])
                more = len(contexts) - _OTHERS_SHOWN
                facts.append(f"during {during}" + (f" and {more} more" if more > 0 else ""))
            facts.append(f"pid {leak.pid}")
            if leak.kind != "untracked-fd" or leak.frames:  # (an epoll whose making was seen)
                facts.append(f"{_age(leak.age)} ago")
            elif leak.age < 0.001:  # no hook saw it opened, and no earlier check saw it
                facts.append("first seen by this check")
            else:
                facts.append(f"first seen {_age(leak.age)} ago")
            console.print("  " + escape(", ".join(facts)))


#: How long an other's description in that list may be: its start and its end are kept (temp
#: directories nested in a leaked one, as ZODB's suite makes them, ran to 2,000 characters each).
_OTHER_LENGTH = 160


def _shortened(text: str) -> str:
    """*text*, its middle left out when it is longer than :data:`_OTHER_LENGTH`."""
    if len(text) <= _OTHER_LENGTH:
        return text
    return f"{text[: _OTHER_LENGTH // 3]}...{text[-(_OTHER_LENGTH - _OTHER_LENGTH // 3 - 3) :]}"


#: Differing descriptions listed under a block of leaks from one line.
_OTHERS_SHOWN = 3
#: Leaks held by a holder (an HTTP client's sockets) listed under it.
_HELD_SHOWN = 5


def _held(leak: Leak, state: str) -> str:
    """One leak a holder holds, in a line: what, its state where it differs from the holder's,
    and the program's line that opened it (an HTTP client's request)."""
    text = f"{leak.kind} {leak.description}"
    if leak.state != state:
        text += f" ({_STATES.get(leak.state, leak.state) or leak.state})"
    frame = next((f for f in leak.frames if is_program(f.filename)), leak.site)
    return text + (f", opened at {_shown(frame)}" if frame is not None else "")


_EXECUTOR_DROPPED = (
    "dropped without shutdown(): once the garbage collector freed it, its workers finished and "
    "exited with nothing waiting for them"
)
_POOL_DROPPED = (
    "dropped without close(): its finalizer, run by the garbage collector, terminated its workers "
    "and any task still queued"
)

_MANAGER_DROPPED = (
    "dropped without shutdown(): its finalizer, run by the garbage collector, stopped its server process"
)

_LEFT_TO_COLLECTOR = "left to the garbage collector, which closed it"

_HOLDS_OPEN = "dropped, finalized by the garbage collector, and what it holds is still open"

_STATES: dict[str | tuple[str, str], str] = {
    "open": "",
    "collected": "closed by the garbage collector, not the program",
    "cancelled": "still pending when its event loop shut down; cancelled",
    "loop-closed": "closed by its event loop's close(), not the program",
    # Not "closed": a dropped Popen's child runs on (subprocess reaps it in the background), an
    # asyncio transport's is killed (its child watcher reaps it); either way the program never
    # collected its exit status (subprocess or asyncio may have, in the background, unread).
    ("subprocess", "collected"): "dropped without a wait: the garbage collector finalized it, "
    "the program never collected the child's exit status",
    ("tempdir", "collected"): "removed by its finalizer ('Implicitly cleaning up'), not the program",
    # Not "closed": a jupyter_client manager's __del__ removes its connection file and closes
    # its control socket; its kernel, a child of the program's, runs on.
    ("jupyter-kernel", "collected"): "its manager dropped: the garbage collector finalized it, "
    "and the kernel runs on",
    # Nor does a client's __del__ stop its channels: it logs "Could not destroy zmq context".
    ("jupyter-client", "collected"): "its client dropped: the garbage collector finalized it, "
    "and its channels run on",
    # A lock is released, not closed: its __del__ gave it back when the collector freed it.
    ("filelock", "collected"): "released by its finalizer once the garbage collector freed it",
    # Not "pending": a connection is no task; its tasks were, and their cancel closed it.
    ("aiormq", "cancelled"): "still open when its event loop shut down: the cancel of its tasks closed it",
    # Not "closed": a task is destroyed pending, as asyncio says ("Task was destroyed but it
    # is pending!"); its coroutine never ran to its end.
    ("task", "collected"): "destroyed by the garbage collector while still pending",
    # Not "closed" either: an executor freed by the collector lets its workers run out their
    # work and exit, unwaited; a pool's finalizer terminates its workers, queued tasks and all.
    ("concurrent.futures.ThreadPoolExecutor", "collected"): _EXECUTOR_DROPPED,
    ("concurrent.futures.ProcessPoolExecutor", "collected"): _EXECUTOR_DROPPED,
    ("loky.ProcessPoolExecutor", "collected"): _EXECUTOR_DROPPED,
    ("joblib.externals.loky.ProcessPoolExecutor", "collected"): _EXECUTOR_DROPPED,
    ("multiprocessing.Pool", "collected"): _POOL_DROPPED,
    ("multiprocessing.pool.ThreadPool", "collected"): _POOL_DROPPED,
    ("multiprocessing.managers.SyncManager", "collected"): _MANAGER_DROPPED,
    ("multiprocessing.managers.BaseManager", "collected"): _MANAGER_DROPPED,
    ("multiprocessing.managers.SharedMemoryManager", "collected"): _MANAGER_DROPPED,
    # multiprocess, dill's copy of multiprocessing, names its classes after itself.
    **{
        (f"multiprocess.{name}", "collected"): text
        for name, text in (
            ("Pool", _POOL_DROPPED),
            ("pool.ThreadPool", _POOL_DROPPED),
            ("managers.SyncManager", _MANAGER_DROPPED),
            ("managers.BaseManager", _MANAGER_DROPPED),
            ("managers.SharedMemoryManager", _MANAGER_DROPPED),
        )
    },
    # An asyncpg pool's connection still acquired when the pool terminated (see leaks._asyncpg).
    ("asyncpg", "terminated"): "closed by its pool's terminate() while still acquired",
}


#: Packages whose classes a report names as what a leak of a kind is, in place of the kind's name:
#: multiprocessing's copies (dill's multiprocess, Celery's billiard).
_OF_THE_KIND = {"multiprocessing": ("multiprocess.", "billiard.")}


def _state_text(leak: Leak) -> str:
    """What *leak*'s state means for what it is (the class its description starts with), for its
    kind, or at all."""
    head = leak.description.partition(" ")[0]
    return (
        _STATES.get((head, leak.state))
        or _STATES.get((leak.kind, leak.state))
        or _STATES.get(leak.state, leak.state)
    )


def _age(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{seconds / 60:.1f} min"


def _jsonable(value: Any) -> Any:
    """*value* as builtin types exactly: pytest-xdist's execnet, which carries a worker's leaks to
    the controller, refuses a subclass (a str that tells more, an IntEnum)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, str):
        return str.__str__(value)  # the text itself, whatever the subclass's __str__ says
    if isinstance(value, int):  # an IntEnum: its number, as json.dumps writes it (bool has no subclass)
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def _library_frames(frames: tuple[Frame, ...]) -> tuple[Frame, ...]:
    """The frames of installed libraries *frames* start with, before the program's first: none
    when the program's own line comes first, or no line of the program's was kept."""
    for i, frame in enumerate(frames):
        if is_program(frame.filename):
            return frames[:i]
        if _library(frame.filename) is None:
            return ()  # not a library's (a pseudo-file, say): the stack is shown as it was kept
    return ()


def _library(filename: str) -> str | None:
    """The installed package *filename* is part of (``sqlalchemy`` for
    ``.../site-packages/sqlalchemy/pool/base.py``), or None when it is no installed library's."""
    parts = re.split(r"[\\/]", filename)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] in ("site-packages", "dist-packages"):
            return parts[i + 1].removesuffix(".py")
    return None


def _libraries(frames: tuple[Frame, ...]) -> str:
    """The libraries *frames* (innermost first) ran in, the one the program called first."""
    return ", then ".join(dict.fromkeys(_library(frame.filename) or "?" for frame in reversed(frames)))


def _shown(frame: Frame) -> str:
    """A frame for people: its path relative to the current directory when it lies below it."""
    return f"{shown(frame.filename)}:{frame.lineno} in {frame.function}"
