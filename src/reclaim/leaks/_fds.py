"""Raw descriptors: ``os.open``, ``os.pipe``, ``os.dup`` ... and the descriptor table.

No audit event exists for ``os.pipe``/``os.dup`` (and ``os.open``'s gives no
descriptor), so the ``os`` functions that return new descriptors are wrapped
(``os.pidfd_open`` too: asyncio's pidfd child watcher calls it, owned, for each
child, see :mod:`._children`; one the program opens itself is reported at its line).
Release is ``os.close``/``os.closerange``; a descriptor handed to ``open()`` or
``socket(fileno=...)`` changes owner and is reported as that object instead.
Because a descriptor can also be closed by paths we do not see (``os.fdopen``
then ``close()``), the open check compares the descriptor's (device, inode)
with the ones recorded at acquisition: a reused number is not a leak.

``os.dup2`` onto an *open* number is not tracked: it makes that number point
elsewhere (``dup2(fd, 1)`` redirects stdout, as pytest's capture does), which
is not an acquisition. Onto a number no descriptor had (one ``fstat()`` tells,
before the call), it opens one: tracked as ``os.dup`` is, unless it is a
standard stream's (0, 1, 2), put back.

The descriptor table (:func:`list_fds`) is read from ``/proc/self/fd`` on
Linux and ``/dev/fd`` on macOS and the BSDs: one ``listdir``, a few
microseconds, and no dependency. Descriptors that appeared during a checked
window and belong to no tracked object are reported as ``untracked-fd``.
"""

from __future__ import annotations

import _thread
import functools
import os
import stat
import sys
from collections.abc import Callable, Iterable
from itertools import starmap

from reclaim import _sites

from . import _records
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import NO_OBJECT, Record

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "CLOSING_IN_C",
    "HELD_BY_C",
    "KEPT",
    "Made",
    "adopt",
    "describe_fd",
    "fileno_of",
    "head",
    "identity",
    "install",
    "is_directory",
    "keep",
    "keeping",
    "kept",
    "list_fds",
    "made_between",
    "prune",
    "table",
    "track_fd",
    "wrapped",
]

__tracebackhide__ = True  # stands in for what it wraps: see _patch

#: os's C module (``posix``, ``nt``): the descriptor table is read through its functions, not
#: ``os``'s attributes, which a test tool may have replaced -- blockbuster, in anyio's suite,
#: makes ``os.listdir``/``os.readlink`` raise when called in an event loop, and the table is read
#: in one when a uvloop or zmq.asyncio loop makes its first connection: the program's call failed.
_C: Any = __import__(os.name)

_FD_DIR = next((d for d in ("/proc/self/fd", "/dev/fd") if os.path.isdir(d)), None)


#: Descriptors C code keeps open for good, and their identities: libuv's signal lock pipe (made
#: with the process's first uvloop loop, closed by no loop), a uvloop loop's when it is collected
#: unclosed (uvloop then closes none of them; the loop is reported), gevent's default hub loop
#: (it lives as long as the process), and those ``gevent.os.close`` closes a loop turn after the
#: program's call. Not reported as untracked while they are the same ones.
#: See :mod:`._uvloop` and :mod:`._gevent`.
KEPT: dict[int, tuple[int, int]] = {}

#: For C libraries that open and close descriptors on threads of their own (libzmq's I/O and
#: reaper threads, see :mod:`._zmq`), set up by their instrumentation: functions giving the
#: descriptors they hold now, which checks do not report as untracked ...
HELD_BY_C: tuple[Callable[[], Iterable[int]], ...] = ()
#: ... and functions saying whether such threads run now: a check's grace period then waits for
#: an untracked descriptor, as while another Python thread runs (see ``_tracker``).
CLOSING_IN_C: tuple[Callable[[], bool], ...] = ()

#: ``(fd, identity)`` pairs: the descriptors C code made while making an event loop.
Made = tuple[tuple[int, tuple[int, int]], ...]


def kept(fd: int) -> bool:
    """Whether *fd* is one of :data:`KEPT`, still the same one."""
    ident = KEPT.get(fd)
    return ident is not None and identity(fd) == ident


def prune(open_fds: frozenset[int]) -> None:
    """Forget the :data:`KEPT` descriptors not among *open_fds* any more, or not the same ones.

    Identity alone cannot tell them from a later descriptor on their number: every epoll,
    eventfd and signalfd is the one anonymous inode. Each snapshot prunes (see ``_tracker``),
    so one closed before a check's window starts hides nothing opened in it.
    """
    for fd in [fd for fd, ident in KEPT.items() if fd not in open_fds or identity(fd) != ident]:
        KEPT.pop(fd, None)


def keep(made: Made) -> None:
    """Those of *made* still open are kept open for good by C code (see :data:`KEPT`)."""
    KEPT.update({fd: ident for fd, ident in made if identity(fd) == ident})


def keeping(make: Callable[..., Any]) -> Callable[..., Any]:
    """*make*, keeping (:func:`keep`) the descriptors C code made while it ran (see
    :func:`made_between`): for the calls that start a C library's machinery for the process
    (gRPC's core, see :mod:`._grpc`; watchfiles' watcher, see :mod:`._watchfiles`; a c-ares
    channel, see :mod:`._pycares`)."""

    @functools.wraps(make)
    def keeping_(*args: Any, **kwargs: Any) -> Any:
        before = table()
        made = make(*args, **kwargs)
        keep(made_between(before, table() if before is not None else None))
        return made

    return keeping_


def table() -> frozenset[int] | None:
    """The descriptors open now, exactly, None where the table cannot be read.

    :func:`list_fds`' listing holds the descriptor ``listdir()`` read it through, closed by
    then, whose number the next descriptor opened gets: by numbers alone, what C code opens next
    would be taken for one open before. The lowest numbers free now are found by opening two
    descriptors here, and left out: that one, and one another thread closed meanwhile (pycares'
    reaper closes a channel's a moment after the program did). Numbers, not identities: a
    ``fstat()`` per descriptor made a zmq context and its first socket 30x slower with 400
    open (ipykernel's heartbeat thread then lost a race it wins untracked)."""
    fds = list_fds()
    if fds is None:
        return None
    probes: list[int] = []
    try:
        probes.append(_C.open(_FD_DIR, os.O_RDONLY | os.O_CLOEXEC))
        probes.append(_C.open(_FD_DIR, os.O_RDONLY | os.O_CLOEXEC))
    except OSError:  # out of descriptors: by identity, one fstat() each
        return frozenset(fd for fd in fds if identity(fd) is not None)
    finally:
        for probe in probes:
            _C.close(probe)
    return fds.difference(probes)


def made_between(before: frozenset[int] | None, after: frozenset[int] | None) -> Made:
    """The descriptors an event loop's C code (libuv's, libev's) made between the tables *before*
    and *after*: no file or socket (another thread's, opened meanwhile, is not the loop's); none
    when either table could not be read."""
    if before is None or after is None:
        return ()
    made = []
    for fd in sorted(after - before):
        ident = identity(fd)
        if ident is None:  # closed again
            continue
        target = describe_fd(fd)
        if target is not None and not target.startswith(("/", "socket:")):
            made.append((fd, ident))
    return tuple(made)


def list_fds() -> frozenset[int] | None:
    """The process's open descriptors, or None where the table cannot be read."""
    if _FD_DIR is None:
        return None
    try:
        # The listing includes the descriptor listdir itself used; it is closed by now and
        # dropped later because describe_fd() finds nothing behind it.
        return frozenset(int(name) for name in _C.listdir(_FD_DIR))
    except OSError:
        return None


def describe_fd(fd: int) -> str | None:
    """What *fd* points at (``/path``, ``socket:[123]``, ``pipe:[45]``), None if it is closed."""
    if _FD_DIR == "/proc/self/fd":
        try:
            return str(_C.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return None
    try:
        st: os.stat_result = _C.fstat(fd)
    except OSError:
        return None
    for test, name in ((stat.S_ISSOCK, "socket"), (stat.S_ISFIFO, "pipe"), (stat.S_ISDIR, "directory")):
        if test(st.st_mode):
            return f"{name}:[{st.st_ino}]"
    return f"file:[{st.st_dev}:{st.st_ino}]"


def sockets_by_inode() -> dict[str, tuple[str, str | None, bool]]:
    """``socket:[inode]`` -> (protocol and local end, peer or None, listening) of the TCP, UDP
    and Unix sockets the kernel lists in ``/proc/self/net`` (Linux; empty elsewhere): what a
    socket C code opened connects, which its descriptor alone does not say. Read when a report
    describes such a descriptor, never on acquisition."""
    found: dict[str, tuple[str, str | None, bool]] = {}
    for name in ("tcp", "tcp6", "udp", "udp6"):
        try:
            with open(f"/proc/self/net/{name}", encoding="ascii") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) < 10:
                continue
            local, peer = _address(fields[1]), _address(fields[2])
            listening = name.startswith("tcp") and fields[3] == "0A"
            unset = peer is None or peer.endswith(":0")
            found[f"socket:[{fields[9]}]"] = (f"{name} {local}", None if unset else peer, listening)
    try:
        with open("/proc/self/net/unix", encoding="utf-8", errors="replace") as table:
            rows = table.read().splitlines()[1:]
    except OSError:
        rows = []
    for row in rows:
        fields = row.split(maxsplit=7)
        if len(fields) >= 7:
            path = fields[7] if len(fields) > 7 else None
            found[f"socket:[{fields[6]}]"] = (f"unix {path}" if path else "unix", None, fields[5] == "01")
    return found


def _address(text: str) -> str | None:
    """``host:port`` of a ``/proc/net`` address (hex, each 32-bit word in the host's order)."""
    raw, _, port = text.partition(":")
    try:
        data = bytes.fromhex(raw)
        if sys.byteorder == "little":
            data = b"".join(data[i : i + 4][::-1] for i in range(0, len(data), 4))
        import ipaddress  # only when a report asks: ipaddress is not imported otherwise

        host = str(ipaddress.ip_address(data))
        return f"[{host}]:{int(port, 16)}" if len(data) == 16 else f"{host}:{int(port, 16)}"
    except ValueError:
        return None


def head(fd: int, size: int) -> bytes | None:
    """The first *size* bytes of the regular file *fd* points at, None for anything else.

    Read with ``pread``, so the file's offset (another thread's, maybe) stays where it was; only
    a regular file is read, as reading a terminal or a pipe could block or take its data.
    """
    try:
        if not stat.S_ISREG(_C.fstat(fd).st_mode):
            return None
        data: bytes = _C.pread(fd, size, 0)
    except OSError:  # closed meanwhile, or opened write-only
        return None
    return data


def is_directory(fd: int) -> bool:
    """Whether *fd* is open on a directory."""
    try:
        return stat.S_ISDIR(_C.fstat(fd).st_mode)
    except OSError:
        return False


def identity(fd: int) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of what *fd* refers to, None when it is closed."""
    try:
        st: os.stat_result = _C.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


#: ``Record.why`` of a descriptor opened under a finalizer (``shutil.rmtree``'s, removing a
#: directory a ``__del__`` cleans up): that finalizer closing it is its own business, not the
#: collector closing what an owner kept (see install()).
OPENED_IN_FINALIZER = "opened in a finalizer"


def track_fd(fd: int, call: str, site: Any, frame: Any = None) -> None:
    """Record *fd*, returned by *call*, as acquired at *site* (from *frame*, when given)."""
    rec = _records.new(NO_OBJECT, "fd", (call, identity(fd)), site, ("fd", fd))
    if frame is not None and _sites.in_finalizer(frame):
        rec.why = OPENED_IN_FINALIZER


def adopt(fd: int, call: str, previous: Record) -> None:
    """Track *fd*, just taken out of the object *previous* records, as acquired when and where that was."""
    _records.succeed(NO_OBJECT, previous, "fd", (call, identity(fd)), ("fd", fd))


def _is_open(obj: Any, rec: Record) -> bool:
    ident = rec.info[1]
    return ident is not None and identity(rec.key[1]) == ident  # type: ignore[index]


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    fd: int = rec.key[1]  # type: ignore[index]
    call, _, *closed_on = rec.info  # what it was, read as a finalizer closed it (see install())
    target = describe_fd(fd) if _is_open(obj, rec) else (closed_on[0] if closed_on else None)
    details: Details = {"fd": fd, "call": call, "target": target}
    return f"{fd}" + (f" -> {target}" if target else "") + f" ({call})", details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    return (rec.key[1],)  # type: ignore[index]


register(Kind("fd", is_open=_is_open, describe=_describe, fds=_fds))


_os_close = os.close


class _Interrupt(int):
    """SIGINT's number. Loading :attr:`again` calls ``_thread.interrupt_main()`` from C, which
    trips SIGINT as the signal would: an attribute load does not look for pending signals,
    nor does a return, so the KeyboardInterrupt comes at the caller's next check, once it
    holds what the wrapper returned (see _interrupted_holding)."""

    again = property(_thread.interrupt_main)


_SIGINT = _Interrupt(2)  # signal.SIGINT, on every platform (signal imports enum: not at start)


def _interrupted_holding(exc: BaseException, fds: Iterable[int]) -> None:
    """*exc* came while a wrapper noted the descriptors *fds* its call had just handed out.

    Code that must not lose a descriptor takes it where no bytecode runs between the call and
    its record (filelock: ``opened.extend(map(os.open, ...))``), so a signal's KeyboardInterrupt
    finds it recorded and closes it. A wrapper in Python runs bytecode there: the interrupt
    came in the wrapper, and the descriptor was lost (and filelock's lock marker left behind).
    The default SIGINT handler's KeyboardInterrupt, in the main thread, returns: the wrapper
    returns the descriptors and raises it again in the caller (``_SIGINT.again``), as without
    reclaim. Anything else is raised, the descriptors closed first, as if the call had failed.
    """
    import signal
    import threading

    if (
        isinstance(exc, KeyboardInterrupt)
        and threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
    ):
        return
    for fd in fds:
        try:
            _os_close(fd)
        except OSError:
            pass
    raise exc


def _wrap(
    name: str,
    fn: Callable[..., Any],
    many: bool,
    acquires: Callable[[tuple[Any, ...], dict[str, Any]], bool] | None = None,
    module: str = "os",
    up: int = 1,
) -> Callable[..., Any]:
    """*fn* (*module*'s *name*), recording the descriptor it returns (a tuple of them, with
    *many*: ``os.pipe``); with *acquires*, only for a call whose ``(args, kwargs)`` it says
    opens one. The caller is *up* frames out (2: called by a replacement of its own)."""
    call = f"{module}.{name}"

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if acquires is not None and not acquires(args, kwargs):
            return fn(*args, **kwargs)
        # Called from C (starmap), the result is in `got` before a bytecode of ours runs: an
        # interruption after that loses nothing (see _interrupted_holding).
        got: list[Any] = []
        try:
            got.extend(starmap(functools.partial(fn, **kwargs) if kwargs else fn, (args,)))
            frame = sys._getframe(up)
            site = _records.capture(frame, _records.depth)
            for fd in got[0] if many else got:
                # One numbered 0 to 2 is a standard stream made again, after the program closed
                # it: os.close(0) then os.open(os.devnull) is how a daemon gives itself an empty
                # stdin (python-daemon's redirect_stream). It is the process's, as the streams
                # it started with are (a check's baseline keeps those).
                if fd > 2:
                    track_fd(fd, call, site, frame)
        except BaseException as exc:
            if not got:
                raise
            _interrupted_holding(exc, got[0] if many else got)
            _SIGINT.again  # noqa: B018 - raised again in the caller, who holds it then
            return got[0]
        return got[0]

    wrapper.__name__ = wrapper.__qualname__ = name
    wrapper.__doc__ = fn.__doc__
    return wrapper


def fileno_of(obj: Any) -> int | None:
    """The descriptor of *obj* (a file, socket or selector), or None: it has none, or no longer
    (closed: -1, or ValueError)."""
    try:
        fd = obj.fileno()
    except (OSError, ValueError, AttributeError):
        return None
    return fd if type(fd) is int and fd >= 0 else None


def wrapped(module: str, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """*fn*, *module*'s *name*, recording the descriptor it returns, as ``os.dup`` is: for
    ``socket.dup``, which ``socket.fromfd()`` and ``socket.dup()`` call, a descriptor the socket
    they then make owns, or, when that fails (``fromfd()`` of a file: ENOTSOCK), nobody."""
    return _wrap(name, fn, many=False, module=module)


def _onto_a_free_number(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    """Whether ``os.dup2(fd, fd2)`` opens *fd2*: no descriptor has that number now. Not one of the
    standard streams: put back after closing it (CPython's test_subprocess restores them so), it
    is the process's again, as open as before (a check's baseline keeps them too)."""
    fd2 = args[1] if len(args) > 1 else kwargs.get("fd2")
    return type(fd2) is int and fd2 > 2 and identity(fd2) is None


#: fcntl's commands that make a descriptor (filled by install() where fcntl exists).
_DUPFD_COMMANDS: set[int] = set()


class _NoArg:
    """fcntl's *arg* not given: the C function's default, 0 (which its signature shows)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "0"


_NO_ARG: Any = _NoArg()


def _wrap_fcntl(c_fcntl: Callable[..., Any]) -> Callable[..., Any]:
    """``fcntl.fcntl``, recording the descriptor ``F_DUPFD`` or ``F_DUPFD_CLOEXEC`` makes (a
    duplicate at the lowest free number from *arg* on). Any other command (``F_GETFL``,
    ``F_SETFL`` ..., what most calls are) goes straight on: a bound method (see
    ``_patch._standing_in``), one frame and a set lookup more than the C function."""
    duplicate = _wrap("fcntl", c_fcntl, many=False, module="fcntl", up=2)
    commands = _DUPFD_COMMANDS

    # *arg* passed on only when given: an explicit 0 costs the C function about 1 us more than
    # none (it tries the argument as a buffer first, and clears the TypeError). Not *args: a
    # function taking them is called the slow way (+450 ns a call, against +100 ns so).
    def fcntl(_home: object, fd: Any, cmd: int, arg: Any = _NO_ARG, /) -> Any:
        if cmd not in commands:
            return c_fcntl(fd, cmd) if arg is _NO_ARG else c_fcntl(fd, cmd, arg)
        return duplicate(fd, cmd) if arg is _NO_ARG else duplicate(fd, cmd, arg)

    return fcntl


def install(patches: Patches) -> None:
    """Wrap the ``os`` functions that hand out descriptors, ``fcntl.fcntl``'s duplicating
    commands, and ``os.close``/``closerange``."""
    # timerfd_create and posix_openpt: 3.13's.
    for name in ("open", "dup", "memfd_create", "eventfd", "pidfd_open", "timerfd_create", "posix_openpt"):
        fn = getattr(os, name, None)
        if fn is not None:
            patches.set(os, name, _wrap(name, fn, many=False))
    for name in ("pipe", "pipe2", "openpty"):
        fn = getattr(os, name, None)
        if fn is not None:
            patches.set(os, name, _wrap(name, fn, many=True))
    if hasattr(os, "dup2"):
        patches.set(os, "dup2", _wrap("dup2", os.dup2, many=False, acquires=_onto_a_free_number))
    try:
        import fcntl
    except ImportError:  # not on Windows
        pass
    else:
        _DUPFD_COMMANDS.update(
            value
            for value in (getattr(fcntl, "F_DUPFD", None), getattr(fcntl, "F_DUPFD_CLOEXEC", None))
            if value is not None
        )
        if _DUPFD_COMMANDS:
            patches.set(fcntl, "fcntl", _wrap_fcntl(fcntl.fcntl))

    close = os.close
    closerange = os.closerange

    live_pop = _records.live.pop
    in_finalizer = _sites.in_finalizer
    finalizing_close = _sites.finalizing_close
    acquired_in_finalizer = _sites.acquired_in_finalizer

    def close_(fd: int) -> None:
        try:
            rec = live_pop(("fd", fd), None)
            if rec is not None:
                # An owner's __del__ closing it (or a weakref.finalize callback a collection
                # runs, or the close() IOBase's finalizer calls: a pyserial Serial's): the owner
                # was dropped with it open, the collector's doing, as for files and sockets. Not
                # one the finalizer opened itself, deeper than in_finalizer() looks from the open
                # (a dropped filelock StrictSoftFileLock's release opens directories 13 frames
                # under its __del__, and closes them nearer to it).
                caller = sys._getframe(1)
                if (
                    rec.why is not OPENED_IN_FINALIZER
                    and (in_finalizer(caller) or finalizing_close(caller))
                    and not acquired_in_finalizer(caller, rec.site)
                ):
                    rec.info = (*rec.info[:2], describe_fd(fd))  # read while it still is
                    _records.leak(rec, _records.COLLECTED)
                else:
                    rec.state = _records.RELEASED
        finally:  # closed whatever interrupts the bookkeeping (a signal's KeyboardInterrupt)
            close(fd)

    def closerange_(fd_low: int, fd_high: int) -> None:
        for key in [k for k in _records.live if type(k) is tuple and k[0] == "fd"]:
            if fd_low <= key[1] < fd_high:
                _records.release(key)
        closerange(fd_low, fd_high)

    close_.__doc__ = close.__doc__
    closerange_.__doc__ = closerange.__doc__
    patches.set(os, "close", close_)
    patches.set(os, "closerange", closerange_)
