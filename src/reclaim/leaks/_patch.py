"""Set attributes on modules and classes, and put them back exactly.

A replacement stands in for what it replaced, so it is presented as it (see
``_present_as``), and a failure passes through it unchanged. The modules that define
replacements set ``__tracebackhide__``, so pytest leaves their frames out of a failing
test's traceback (a failed ``open()`` showed all of ``tracked_open``); ``reclaim run``
drops them from the tip of the tracebacks it prints.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, MethodType, ModuleType

from reclaim._sites import frame_above

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see reclaim/__init__)
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "RELAY",
    "Patches",
    "call_as",
    "closing_subclass",
    "instance_dict",
    "outside_warnings_stack",
    "own_methods",
    "with_factory",
]

__tracebackhide__ = True  # its closing_subclass() and call_as() run inside replacements

_MISSING: Any = object()
#: A local name of :func:`call_as`'s frame: marks it as reclaim's in a traceback (see _runner).
RELAY = "__reclaim_relay__"
#: ``fn(*args, **kwargs)``, all on line 1: :func:`call_as` moves it to its caller's line. Compiled
#: at the first call, not on import: the compiler's first run costs about 1 ms.
_CALL: CodeType | None = None


#: The file name a wrapper's code is given by :func:`outside_warnings_stack`: "generated" (see
#: ``_sites._classify``: plumbing), and "importlib" with "_bootstrap", as the frames of the import
#: system are named, which ``warnings.warn`` passes over when it counts a *stacklevel* (the C
#: implementation's ``next_external_frame`` and the Python one's alike, 3.11 to 3.13).
_OUTSIDE_WARNINGS = "<reclaim-generated wrapper, passed over by warnings as importlib._bootstrap is>"
_outside: dict[CodeType, CodeType] = {}


def outside_warnings_stack(code: CodeType) -> CodeType:
    """*code*, a wrapper's that calls a library function in its place, renamed so that a warning
    the library issues with ``stacklevel=2`` or more still names the program's line that called
    the wrapper, not the wrapper's (filelock's ``acquire(poll_intervall=...)`` deprecation
    pointed into reclaim, and a test of it failed under ``--reclaim``). The same code object for
    the same *code*, so that a wrapper's code can be told by identity. A warning a C function
    issues at ``stacklevel=1`` names the Python frame calling it, whatever its file name."""
    found = _outside.get(code)
    if found is None:
        found = _outside[code] = code.replace(co_filename=_OUTSIDE_WARNINGS)
    return found


def own_methods(module: ModuleType, class_name: str, *names: str) -> tuple[Any, list[Any]] | None:
    """The class *class_name* of *module* and the functions *names* its own body defines, or
    None when it lacks any: a library laid out otherwise than the hooks were written for, which
    they then leave as it is."""
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        return None
    methods = [vars(cls).get(name) for name in names]
    return None if None in methods else (cls, methods)


def closing_subclass(
    base: type,
    on_close: Callable[[Any, FrameType | None], None],
    made: dict[type, type],
    *,
    on_del: Callable[[Any], None] | None = None,
    on_exit: Callable[[Any], None] | None = None,
) -> type:
    """The subclass of *base* a driver's ``connect()`` is given to make while tracking (once per
    base, kept in *made*): named as *base*, and adding only a ``close()`` that calls
    ``on_close(connection, its caller's frame)`` once *base*'s has returned. A connection class
    written in C (sqlite3's, psycopg2's) so gets weak references and a close that can be seen;
    ``isinstance`` checks and all else stay *base*'s, a ``__dict__`` included (none where it
    has none). With *on_del*, it also gets a ``__del__`` that calls
    ``on_del(connection)`` while the connection can still say what state it is in (then
    *base*'s ``__del__``, if it has one). With *on_exit*, an ``__exit__`` that calls
    ``on_exit(connection)`` before *base*'s (sqlite3's commits or rolls back, and closes nothing)."""
    cls = made.get(base)
    if cls is None:

        def close(self: Any) -> None:
            caller = frame_above()  # None as an atexit callback: the program's close
            # Released once closed: a close() that raises closed nothing (sqlite3's, called
            # from a thread other than the connection's).
            base.close(self)  # type: ignore[attr-defined]
            on_close(self, caller)

        # No __dict__ the base has not: an attribute a program sets on a tracked connection must
        # fail as it does untracked ('sqlite3.Connection' object has no attribute 'x'), or a
        # suite that passes under tracking breaks without it. Weak references are what it adds.
        slots = () if base.__weakrefoffset__ else ("__weakref__",)
        body: dict[str, Any] = {"close": close, "__module__": base.__module__, "__slots__": slots}
        if on_del is not None:
            inherited = getattr(base, "__del__", None)

            def __del__(self: Any) -> None:
                on_del(self)
                if inherited is not None:
                    inherited(self)

            body["__del__"] = __del__
        if on_exit is not None:
            exit_ = base.__exit__  # type: ignore[attr-defined]

            def __exit__(self: Any, *exc_info: Any) -> Any:
                on_exit(self)
                return exit_(self, *exc_info)

            body["__exit__"] = __exit__
        cls = type(base.__name__, (base,), body)
        cls.__qualname__ = base.__qualname__
        made[base] = cls
    return cls


#: What reclaim notes on objects without a ``__dict__`` (a :func:`closing_subclass` connection has
#: none, as the driver's own has none): id -> (weak reference to it, its notes).
_side: dict[int, tuple[weakref.ref[Any], dict[str, Any]]] = {}


def instance_dict(obj: Any, create: bool) -> dict[str, Any] | None:
    """Where reclaim keeps its notes on *obj* (a pool checkout's blame, aiosqlite's mark): its
    ``__dict__``, or else an entry of its own here, made when *create*, dropped with *obj*. None
    when there is no entry (yet), or *obj* has neither a ``__dict__`` nor weak references."""
    own: dict[str, Any] | None = getattr(obj, "__dict__", None)
    if own is not None:
        return own
    key = id(obj)
    entry = _side.get(key)
    if entry is not None and entry[0]() is obj:
        return entry[1]
    if not create:
        return None
    try:
        ref = weakref.ref(obj, lambda _ref: _side.pop(key, None))
    except TypeError:
        return None
    notes: dict[str, Any] = {}
    _side[key] = (ref, notes)
    return notes


def with_factory(
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    at: int,
    keyword: str,
    default: type,
    make: Callable[[type], type],
) -> tuple[tuple[Any, ...], dict[str, Any]] | None:
    """The arguments of a ``connect()`` that takes its connection class as its *at*-th positional
    argument (from 1) or as *keyword*, with that class (*default* when none is given) replaced by
    ``make(class)``; None when what was given is no subclass of *default* (a function that makes
    connections), which is then left alone. *kwargs* is changed in place."""
    positional = len(args) >= at
    base = args[at - 1] if positional else kwargs.get(keyword)
    base = default if base is None else base
    if not (isinstance(base, type) and issubclass(base, default)):
        return None
    if positional:
        return (*args[: at - 1], make(base), *args[at:]), kwargs
    kwargs[keyword] = make(base)
    return args, kwargs


def call_as(caller: FrameType, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """``fn(*args, **kwargs)`` run in a frame the warnings machinery takes for *caller*: at its
    file and line, with its globals (so its module's name and ``__warningregistry__``).

    For a replacement that calls C code which warns: C code warns about the Python frame that
    called it (stack level 1), the replacement's. sqlite3.connect()'s deprecation warning showed
    reclaim's file and line, a filter on the program's module missed it, and the default filters
    hid it from ``__main__``. The frame is hidden from pytest's tracebacks and ``reclaim run``'s.
    """
    global _CALL
    if _CALL is None:
        _CALL = compile("fn(*args, **kwargs)", "<reclaim>", "eval")
    code = _CALL.replace(
        co_filename=caller.f_code.co_filename, co_firstlineno=caller.f_lineno, co_name=caller.f_code.co_name
    )
    names = {"fn": fn, "args": args, "kwargs": kwargs, "__tracebackhide__": True, RELAY: True}
    return eval(code, caller.f_globals, names)  # our own code object, not a string


def _present_as(fn: FunctionType, owner: Any, name: str, original: Any) -> None:
    """Give a replacement function the identity of what it replaced, as ``functools.wraps`` does.

    So the program sees what it would see without reclaim: ``pickle`` stores it by reference
    (``executor.submit(tempfile.mkdtemp)`` to a process pool), ``inspect.signature()`` and
    ``help()`` describe the original, and its ``__name__`` is the original's; its repr says a
    function (``open``, set as a bound method, a bound method: see the README). The first owner
    it is set on names it (``open`` is set on builtins, then io).
    """
    if not fn.__module__.startswith("reclaim."):
        return  # presented already, as set on an earlier owner
    if isinstance(owner, ModuleType):
        fn.__module__, fn.__qualname__ = owner.__name__, name
    elif isinstance(owner, type):
        fn.__module__, fn.__qualname__ = owner.__module__, f"{owner.__qualname__}.{name}"
    else:
        return
    fn.__name__ = name
    if original is not _MISSING and callable(original):
        doc = getattr(original, "__doc__", None)
        if isinstance(doc, str):
            fn.__doc__ = doc
        fn.__wrapped__ = original  # type: ignore[attr-defined]


#: The sets in which ``os`` names its functions that take an argument the platform supports.
_OS_CAPABILITIES = ("supports_dir_fd", "supports_fd", "supports_follow_symlinks", "supports_effective_ids")


def _capabilities(owner: Any) -> list[set[Any]]:
    """``os``'s capability sets, when *owner* is ``os``: a replacement of one of its functions
    stands in for it there too."""
    if owner is not os:
        return []
    return [found for name in _OS_CAPABILITIES if isinstance(found := getattr(os, name, None), set)]


def _inherited(cls: type, name: str) -> Any:
    """What *cls* inherits as *name* (from the first base in its MRO defining it), else _MISSING."""
    for base in cls.__mro__[1:]:
        if name in vars(base):
            return vars(base)[name]
    return _MISSING


class _Unbound(staticmethod):  # type: ignore[type-arg]
    """A Python replacement of a builtin function: called as it is, never bound as a method.

    A builtin function is no descriptor, so one kept in a class body is called without the
    instance: ``_close = os.close`` then ``self._close(fd)`` (CPython's test_tempfile), or
    ``open = io.open`` then ``self.open(path)`` (its test_file). A plain function there would
    be handed the instance as its first argument. A staticmethod is callable (3.10+), binds to
    nothing, and adds no frame: the replacement still sees its caller at ``sys._getframe(1)``.
    """

    def __reduce__(self) -> str:
        # Pickled by reference, as the builtin it stands for (the name resolves to this object).
        return str(self.__qualname__)


class _Home:
    """What a hot replacement is bound to (see _standing_in): the module it is set on first.

    A bound method is never bound again (3.13 gave methods a ``__get__`` that returns them as
    they are), is called through vectorcall at the cost of a function call (a staticmethod
    object builds an argument tuple, and a dict for keywords: 130-380 ns more on 3.11), and
    adds no frame. It pickles as ``getattr(<its __self__>, <its name>)``: this object pickles
    as its module, so the replacement pickles by reference, as the builtin it stands for.
    """

    __slots__ = ("module",)

    def __init__(self, module: str) -> None:
        self.module = module

    def __reduce__(self) -> tuple[Callable[[str], ModuleType], tuple[str]]:
        import importlib

        return importlib.import_module, (self.module,)

    def __repr__(self) -> str:
        return f"<module {self.module!r}>"


#: The one stand-in of each replacement: set on several modules (``open`` on builtins and io),
#: it stays one object, as ``builtins.open is io.open``.
_unbound: dict[FunctionType, Any] = {}


def _standing_in(value: FunctionType, owner: Any, original: Any) -> Any:
    """What stands in for *original*: *value*, unbound when *original* is a builtin function,
    which no class binds. A replacement whose first parameter is ``_home`` (``open``'s, the one
    called most) is always bound to a _Home of the *owner* it is first set on (a method call
    costs what a function call does); any other is wrapped in an _Unbound where needed."""
    found = _unbound.get(value)
    if found is not None:
        return found
    if value.__code__.co_varnames[:1] == ("_home",):
        # Its own signature, less ``_home``, is the original's: inspect takes a method's first
        # parameter off the one ``__wrapped__`` would lead it to, the original's.
        vars(value).pop("__wrapped__", None)
        found = MethodType(value, _Home(getattr(owner, "__name__", "builtins")))
    elif type(original) is BuiltinFunctionType:
        found = _Unbound(value)
    else:
        return value
    _unbound[value] = found
    return found


class Patches:
    """A list of attribute replacements that can be undone in reverse order.

    Undo leaves an attribute alone when someone else replaced it after us
    (``monkeypatch``, another tool): restoring ours would silently drop theirs.
    """

    def __init__(self) -> None:
        self._done: list[tuple[Any, str, Any, Any]] = []

    def set(self, owner: Any, name: str, value: Any) -> Any:
        """Replace ``owner.name`` with *value*; return what was there."""
        if isinstance(owner, type):
            # Only what the class itself defines: an inherited attribute is restored by deleting.
            original = owner.__dict__.get(name, _MISSING)
        else:
            original = getattr(owner, name, _MISSING)
        if type(value) is FunctionType:
            _present_as(value, owner, name, original)
            value = _standing_in(value, owner, original)
        # ``os.open in os.supports_dir_fd`` stays true: shutil.rmtree chose its path by it when
        # imported (without it, the one open to a symlink race), and filelock its locking scheme.
        for capable in _capabilities(owner):
            if original in capable:
                capable.add(value)
        setattr(owner, name, value)
        self._done.append((owner, name, original, value))
        return original

    def restore(self) -> int:
        """Set each replacement again where the original was put back over it; return how many.

        A plugin that kept the original before we replaced it, and sets it back after each
        test (pytest-socket: ``socket.socket.connect``), would otherwise turn our replacement
        off for the rest of the run. One replaced by something else is left alone, as undo()
        leaves it.
        """
        again = 0
        for owner, name, original, value in self._done:
            if isinstance(owner, type):
                current = owner.__dict__.get(name, _MISSING)
                if original is _MISSING:  # inherited: put back by deleting, or by setting what is inherited
                    original = _inherited(owner, name)
                    if current is _MISSING:
                        current = original
            else:
                current = getattr(owner, name, _MISSING)
            if current is original and original is not _MISSING:
                setattr(owner, name, value)
                again += 1
        return again

    def undo(self) -> None:
        """Put every replaced attribute back, newest first."""
        while self._done:
            owner, name, original, value = self._done.pop()
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
            for capable in _capabilities(owner):
                capable.discard(value)
            if current is not value:
                continue
            if original is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
