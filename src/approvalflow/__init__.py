"""approvalflow: approval workflows as statecharts, every decision on record.

    >>> import approvalflow as af
    >>> wf = af.load_workflow("boligsocial-helhedsplan")
    >>> with af.open_store(":memory:") as store:
    ...     case = store.create_case(wf, "mimerskvarteret", actor="tmf", on="2021-11-01")
    ...     sorted(case.state)[:2]
    ['3b_pending', 'aab_pending']
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .case import Case, Event, Region
    from .definition import Workflow
    from .errors import (
        ApprovalflowError,
        CaseExistsError,
        CaseNotFoundError,
        ConcurrencyError,
        DefinitionError,
        InvalidInputError,
        MissingDependencyError,
        PluginError,
        SchemaVersionError,
        StoreError,
        TransitionRefusedError,
    )
    from .guards import GuardContext, guard
    from .loading import bundled_workflows, load_workflow, loads_workflow
    from .plugins import load_guard_module, load_guard_plugins
    from .store import Awaited, CaseList, CaseSummary, Store, VerifyReport, open_store

#: Where each public name lives. They are imported on first use, so that a program
#: (the command line, above all) pays only for the parts it touches.
_EXPORTS = {
    "Case": "case", "Event": "case", "Region": "case",
    "Workflow": "definition", "bundled_workflows": "loading",
    "load_workflow": "loading", "loads_workflow": "loading",
    "ApprovalflowError": "errors", "CaseExistsError": "errors",
    "CaseNotFoundError": "errors", "ConcurrencyError": "errors",
    "DefinitionError": "errors", "InvalidInputError": "errors",
    "MissingDependencyError": "errors", "PluginError": "errors",
    "SchemaVersionError": "errors",
    "StoreError": "errors", "TransitionRefusedError": "errors",
    "GuardContext": "guards", "guard": "guards",
    "load_guard_module": "plugins", "load_guard_plugins": "plugins",
    "Awaited": "store", "CaseList": "store",
    "CaseSummary": "store", "Store": "store", "VerifyReport": "store", "open_store": "store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'approvalflow' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__version__ = "0.1.0"

__all__ = [
    "ApprovalflowError",
    "Awaited",
    "Case",
    "CaseExistsError",
    "CaseList",
    "CaseNotFoundError",
    "CaseSummary",
    "ConcurrencyError",
    "DefinitionError",
    "Event",
    "GuardContext",
    "InvalidInputError",
    "MissingDependencyError",
    "PluginError",
    "Region",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "TransitionRefusedError",
    "VerifyReport",
    "Workflow",
    "bundled_workflows",
    "guard",
    "load_guard_module",
    "load_guard_plugins",
    "load_workflow",
    "loads_workflow",
    "open_store",
]
