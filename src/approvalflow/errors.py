"""The exception tree. Every error the library raises on purpose is an ApprovalflowError."""

from __future__ import annotations

__all__ = [
    "ApprovalflowError",
    "DefinitionError",
    "TransitionRefusedError",
    "CaseNotFoundError",
    "CaseExistsError",
    "ConcurrencyError",
    "StoreError",
    "SchemaVersionError",
    "InvalidInputError",
    "MissingDependencyError",
    "PluginError",
]


class ApprovalflowError(Exception):
    """Base class of every error raised by approvalflow."""


class DefinitionError(ApprovalflowError, ValueError):
    """A workflow file is missing, unreadable or unsound; ``problems`` has one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


class InvalidInputError(ApprovalflowError, ValueError):
    """A value passed in (a date, an id, case data) is not acceptable."""


class TransitionRefusedError(ApprovalflowError):
    """A step was refused; ``reasons`` lists every reason, the message joins them."""

    def __init__(self, message: str, reasons: list[str]) -> None:
        super().__init__(message)
        self.reasons = list(reasons)


class CaseNotFoundError(ApprovalflowError, LookupError):
    """No case with that id is in the store."""


class CaseExistsError(ApprovalflowError):
    """A case with that id is already in the store."""


class ConcurrencyError(ApprovalflowError):
    """The case changed in the store since it was read: reload it and try again."""


class StoreError(ApprovalflowError):
    """The database could not do what was asked (full disk, damaged file, locked too long)."""


class SchemaVersionError(StoreError):
    """The database file was written by a newer approvalflow than this one."""


class MissingDependencyError(ApprovalflowError, ImportError):
    """An optional feature needs a package or program that is not installed; the message
    names what to install."""


class PluginError(ApprovalflowError, ImportError):
    """A guard module (``--guards``, ``$APPROVALFLOW_GUARDS``, an installed package's entry
    point) could not be found or imported; the message names it."""
