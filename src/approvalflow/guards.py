"""Named guards: the Python functions a workflow file refers to by name.

A workflow file never runs code. Where a step needs a condition ("the financing
adds up", "the planned start has come"), the file names a guard and the
application registers a function under that name::

    @approvalflow.guard("financing_ok")
    def financing_ok(ctx: approvalflow.GuardContext) -> list[str]:
        ...

A guard receives a :class:`GuardContext` and returns what is wrong: ``True``,
``None`` or an empty list when the step may go ahead; ``False`` (refused, with a
generic reason), one string, or a list of strings (every reason) when it may not.
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
        _REGISTRY[name] = func
        return func

    return register


def unregister_guard(name: str) -> None:
    """Remove the guard called ``name`` (mainly for tests)."""
    _REGISTRY.pop(name, None)


def registered_guards() -> dict[str, GuardFunction]:
    """A copy of the registry: guard name -> function."""
    _load_builtin_guards()
    return dict(_REGISTRY)


def lookup_guard(name: str) -> GuardFunction | None:
    _load_builtin_guards()
    return _REGISTRY.get(name)


def run_guard(name: str, func: GuardFunction | None, ctx: GuardContext) -> list[str]:
    """Call a guard and turn its answer into a list of reasons (empty: passes)."""
    if func is None:
        return [f"guard {name!r} is not registered in this process; register it with "
                f"@approvalflow.guard({name!r}) before firing."]
    try:
        result = func(ctx)
    except Exception as e:  # a guard's bug must refuse the step, not crash the caller
        return [f"guard {name!r} failed with {type(e).__name__}: {e}"]
    if result is True or result is None:
        return []
    if result is False:
        return [f"guard {name!r} does not hold"]
    if isinstance(result, str):
        return [result]
    if isinstance(result, Iterable):
        return [str(r) for r in result]
    return [f"guard {name!r} returned {result!r}; expected a bool, a string or a list of strings"]


_BUILTINS_LOADED = False


def _load_builtin_guards() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        from . import rules  # noqa: F401  (registers the bundled workflows' guards)
