"""approvalflow: approval workflows as statecharts, every decision on record.

    >>> import approvalflow as af
    >>> wf = af.load_workflow("boligsocial-helhedsplan")
    >>> with af.open_store(":memory:") as store:
    ...     case = store.create_case(wf, "mimerskvarteret", actor="tmf", on="2021-11-01")
    ...     sorted(case.state)[:2]
    ['3b_pending', 'aab_pending']
"""

from .case import Case, Event, Region
from .definition import Workflow, bundled_workflows, load_workflow, loads_workflow
from .errors import (
    ApprovalflowError,
    CaseExistsError,
    CaseNotFoundError,
    ConcurrencyError,
    DefinitionError,
    InvalidInputError,
    MissingDependencyError,
    SchemaVersionError,
    StoreError,
    TransitionRefusedError,
)
from .guards import GuardContext, guard
from .store import CaseSummary, Store, VerifyReport, open_store

__version__ = "0.1.0"

__all__ = [
    "ApprovalflowError",
    "Case",
    "CaseExistsError",
    "CaseNotFoundError",
    "CaseSummary",
    "ConcurrencyError",
    "DefinitionError",
    "Event",
    "GuardContext",
    "InvalidInputError",
    "MissingDependencyError",
    "Region",
    "SchemaVersionError",
    "Store",
    "StoreError",
    "TransitionRefusedError",
    "VerifyReport",
    "Workflow",
    "bundled_workflows",
    "guard",
    "load_workflow",
    "loads_workflow",
    "open_store",
]
