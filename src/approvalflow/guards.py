"""Named guards: the Python functions a workflow file refers to by name.

A workflow file never runs code. Where a step needs a condition ("the financing
adds up", "the planned start has come"), the file names a guard and the
application registers a function under that name::

    @approvalflow.guard("financing_ok")
    def financing_ok(ctx: approvalflow.GuardContext) -> list[str]:
        ...

A guard receives a :class:`GuardContext` and returns what is wrong: ``True`` or an
empty list (any empty collection) when the step may go ahead; ``False`` (refused, with
a generic reason), one string, or a list of strings (every reason) when it may not. An
empty string refuses too, with a reason that names the guard. ``None``, a number,
bytes or anything else refuses: a guard that forgot its ``return`` must not let a
decision through.

This module is the registry alone and imports no guards. The bundled workflows' guards
(:mod:`approvalflow.rules`, which registers them here) are imported by the modules that
look guards up, :mod:`approvalflow.engine` and :mod:`approvalflow.validation`, so the
imports point one way: engine/validation -> rules -> guards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from .errors import ApprovalflowError

__all__ = ["GuardContext", "guard", "registered_guards", "unregister_guard", "run_guard"]


@attrs.frozen
class GuardContext:
    """What a guard may look at: the case's data (with this step's data merged in) and more."""

    case_id: str
    trigger: str
    actor: str
    on: dt.date
    data: Mapping[str, Any]
    state: frozenset[str]
    workflow: str


GuardFunction = Callable[[GuardContext], Any]

_REGISTRY: dict[str, GuardFunction] = {}


def guard(name: str) -> Callable[[GuardFunction], GuardFunction]:
    """Register the decorated function as the guard called ``name``."""
    if not isinstance(name, str) or not name:
        raise ApprovalflowError(f"A guard needs a non-empty string name, not {name!r}.")

    def register(func: GuardFunction) -> GuardFunction:
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified(existing) != _qualified(func):
            raise ApprovalflowError(
                f"A guard {name!r} is already registered ({_qualified(existing)}); a second "
                f"one ({_qualified(func)}) would silently change what the workflows check. "
                f"Choose another name, or call approvalflow.guards.unregister_guard({name!r}) "
                f"first.")
        _REGISTRY[name] = func  # the same function again (a reloaded module) replaces it
        return func

    return register


def _qualified(func: GuardFunction) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def unregister_guard(name: str) -> None:
    """Remove the guard called ``name`` (mainly for tests)."""
    _REGISTRY.pop(name, None)


def registered_guards() -> dict[str, GuardFunction]:
    """A copy of the registry: guard name -> function."""
    return dict(_REGISTRY)


def lookup_guard(name: str) -> GuardFunction | None:
    found = _REGISTRY.get(name)
    if found is None and _ON_MISSING:
        _ON_MISSING.pop()()  # once: e.g. the command line loads installed guard plugins
        found = _REGISTRY.get(name)
    return found


#: What to call (once) the first time a guard is looked up and not found.
_ON_MISSING: list[Callable[[], object]] = []


def load_on_first_miss(loader: Callable[[], object]) -> None:
    """Call ``loader`` the first time a guard is not found, then look again. The command
    line uses it to import installed guard plugins only when a workflow needs one
    (reading the installed packages' entry points takes a tenth of a second)."""
    _ON_MISSING[:] = [loader]


def run_guard(name: str, func: GuardFunction | None, ctx: GuardContext) -> list[str]:
    """Call a guard and turn its answer into a list of reasons (empty: passes)."""
    if func is None:
        return [f"guard {name!r} is not registered in this process; register it with "
                f"@approvalflow.guard({name!r}) before firing"]
    try:
        result = func(ctx)
    except Exception as e:  # a guard's bug must refuse the step, not crash the caller
        return [f"guard {name!r} failed with {type(e).__name__}: {e}"]
    if result is True:
        return []
    if result is None:
        return [f"guard {name!r} returned None; a guard returns True (or an empty list) when "
                f"the step may go ahead, else the reasons it may not"]
    if result is False:
        return [f"guard {name!r} does not hold"]
    unsaid = f"guard {name!r} does not hold (it gave an empty reason)"
    if isinstance(result, str):
        return [result or unsaid]
    if isinstance(result, Iterable) and not isinstance(result, bytes | bytearray):
        try:
            return [str(r) or unsaid for r in result]
        except Exception as e:  # a generator of reasons that fails part-way refuses too
            return [f"guard {name!r} failed with {type(e).__name__}: {e}"]
    return [f"guard {name!r} returned {result!r}; expected a bool, a string or a list of strings"]

