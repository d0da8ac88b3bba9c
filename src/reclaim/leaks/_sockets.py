"""Sockets (``socket()``, ``accept()``, ``socketpair()``, ``dup()``, ``fromfd``, ssl) and selectors.

Every ``socket.socket`` (and subclasses such as ``ssl.SSLSocket``) runs
``socket.socket.__init__``; wrapping it catches them all, including the ones
``accept()`` and ``socketpair()`` build around a descriptor, without an audit
hook (a hook would run for every audit event in the process, forever). Release
is ``_real_close`` (what ``close()`` calls once no ``makefile()`` object holds the
socket); a socket that dies without it was closed by the GC. ``detach()`` hands
the descriptor to whoever called it: from then on it is tracked as an ``fd``
acquired where the socket was (``multiprocessing.connection`` keeps its sockets
that way), released by ``os.close`` or by a new owner (``socket(fileno=fd)``).

Selectors are tracked at the ``selectors`` level (``_BaseSelectorImpl.__init__``
and ``close``), which covers asyncio's loops and direct users alike; an asyncio
loop's selector and self-pipe sockets are the loop's own, reported as the loop
(see :mod:`._loops`).
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from . import _records
from ._fds import adopt as _adopt_fd
from ._kinds import Details, Kind, register
from ._patch import Patches
from ._records import Record

__all__ = ["install_selectors", "install_socket"]


def _is_open(obj: Any, rec: Record) -> bool:
    return bool(obj.fileno() != -1)


def _endpoints(sock: Any) -> Details:
    out: Details = {}
    for key, getter in (("local", sock.getsockname), ("peer", sock.getpeername)):
        try:
            addr = getter()
        except (OSError, ValueError):
            continue
        if addr not in ("", b"", None):
            out[key] = _address(addr)
    return out


def _address(addr: Any) -> Any:
    if isinstance(addr, tuple):
        return f"{addr[0]}:{addr[1]}" if len(addr) >= 2 else str(addr)
    if isinstance(addr, bytes):
        return addr.decode(errors="replace")
    return str(addr)


def _describe(obj: Any, rec: Record) -> tuple[str, Details]:
    family, type_, fd, known = rec.info
    details: Details = {"family": family, "type": type_, "fd": fd, **known}
    if obj is not None and obj.fileno() != -1:
        details.update(_endpoints(obj))
    text = f"{family}/{type_}"
    if "local" in details:
        text += f" {details['local']}"
    if "peer" in details:
        text += f" -> {details['peer']}"
    return text + f" (fd {fd})", details


def _fds(obj: Any, rec: Record) -> tuple[int, ...]:
    fd = obj.fileno()
    return (fd,) if fd != -1 else ()


register(Kind("socket", is_open=_is_open, describe=_describe, fds=_fds, death_leak=True))


def _sel_open(obj: Any, rec: Record) -> bool:
    return getattr(obj, "_map", None) is not None


def _sel_fds(obj: Any, rec: Record) -> tuple[int, ...]:
    inner = getattr(obj, "_selector", None)
    try:
        return (inner.fileno(),) if inner is not None else ()
    except (OSError, ValueError, AttributeError):
        return ()


def _sel_describe(obj: Any, rec: Record) -> tuple[str, Details]:
    details: Details = {"class": rec.info}
    if obj is not None:
        fds = _sel_fds(obj, rec)
        if fds:
            details["fd"] = fds[0]
        registered = getattr(obj, "_fd_to_key", None)
        if registered is not None:
            details["registered"] = len(registered)
    return f"{rec.info}" + (f" (fd {details['fd']})" if "fd" in details else ""), details


register(Kind("selector", is_open=_sel_open, describe=_sel_describe, fds=_sel_fds, death_leak=True))


def install_socket(patches: Patches, socket: ModuleType) -> None:
    """Wrap ``socket.socket`` construction and release."""
    cls = socket.socket
    init = cls.__init__
    real_close = cls._real_close
    detach = cls.detach

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        fileno = args[3] if len(args) > 3 else kwargs.get("fileno")
        known: Details = {}
        if fileno is not None:
            # accept(), socketpair(), dup(), fromfd(): the descriptor now belongs to this socket.
            _records.release(("fd", self.fileno()))
            known = _endpoints(self)
        info = (_name(self.family), _name(self.type), self.fileno(), known)
        _records.new(self, "socket", info, _records.capture(sys._getframe(1), _records.depth))

    def _real_close(self: Any, *args: Any, **kwargs: Any) -> None:
        _records.release(id(self))
        real_close(self, *args, **kwargs)

    def detach_(self: Any) -> int:
        rec = _records.live.pop(id(self), None)
        fd: int = detach(self)
        if rec is not None:
            rec.state = _records.RELEASED
            if fd != -1:
                _adopt_fd(fd, "socket.detach", rec)
        return fd

    patches.set(cls, "__init__", __init__)
    patches.set(cls, "_real_close", _real_close)
    patches.set(cls, "detach", detach_)


def install_selectors(patches: Patches, selectors: ModuleType) -> None:
    """Wrap the selectors' common base class (``__init__`` and ``close``)."""
    base = selectors._BaseSelectorImpl
    sel_init = base.__init__
    sel_close = base.close

    def sel_init_(self: Any) -> None:
        sel_init(self)
        site = _records.capture(sys._getframe(1), _records.depth)
        _records.new(self, "selector", type(self).__name__, site)

    def sel_close_(self: Any) -> None:
        _records.release(id(self))
        sel_close(self)

    patches.set(base, "__init__", sel_init_)
    patches.set(base, "close", sel_close_)


def _name(value: Any) -> str:
    return str(getattr(value, "name", value))
