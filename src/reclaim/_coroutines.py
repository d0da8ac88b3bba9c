"""Whether a callable makes a coroutine when called, without importing inspect.

Scope and the thread Pool call what they are given without ``await``: an ``async def``
given there would never run (its coroutine dropped, or taken for an answer), so they
refuse one when it is registered.
"""

from __future__ import annotations

from functools import partial

__all__ = ["is_coroutine_function"]

_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE


def is_coroutine_function(fn: object) -> bool:
    """Whether calling *fn* makes a coroutine: an ``async def``, also bound or in a partial."""
    while isinstance(fn, partial):
        fn = fn.func
    fn = getattr(fn, "__func__", fn)  # a bound method
    return bool(getattr(getattr(fn, "__code__", None), "co_flags", 0) & _CO_COROUTINE)
