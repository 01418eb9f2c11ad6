"""Moving running cases to another version of their workflow (docs/versioning.md).

:func:`plan` decides, case by case, with :mod:`approvalflow.versioning`, and writes
nothing; :func:`migrate` does the same inside one write transaction and records one
``migrate`` event per case that can move (in the hash chain, committing to the new
version's text). Cases that can't move are left untouched and listed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from ..canonical import canonical_json, check_text, to_date
from ..case import MAX_NOTE_LENGTH, check_actor
from ..definition import Workflow
from ..engine import engine_for
from ..errors import InvalidInputError
from ..loading import load_workflow
from ..versioning import BALLOTS, CasePlan, MigrationPlan, plan_case
from .rows import json_list, translate, utc_now

if TYPE_CHECKING:
    from ..case import Case
    from . import Store

__all__ = ["plan", "migrate"]

Progress = Callable[[int, int], None]


def _target_workflow(store: Store, to: Workflow | str) -> Workflow:
    if isinstance(to, Workflow):
        return to
    if not isinstance(to, str):
        raise InvalidInputError(f"to must be a Workflow, a bundled name, a path or "
                                f"'NAME@VERSION' of a stored version, not {to!r}.")
    name, at, number = to.rpartition("@")
    if at and name and number.isdigit():
        return store.workflow(name, int(number))
    return load_workflow(to)


def _case_ids(store: Store, new: Workflow, cases: Iterable[str] | None) -> list[str]:
    if cases is not None:
        if isinstance(cases, str):
            raise InvalidInputError(f"cases must be a list of case ids, not the string "
                                    f"{cases!r}; write [{cases!r}].")
        return list(dict.fromkeys(cases))
    with translate("list the cases to migrate"):
        rows = store._conn.execute(
            "SELECT case_id FROM cases WHERE workflow = ? AND workflow_version != ? "
            "AND is_final = 0 ORDER BY case_id", (new.name, new.version)).fetchall()
    return [r[0] for r in rows]


def _check_keys(mapping: Mapping[str, str] | None, new: Workflow,
                olds: Iterable[Workflow]) -> dict[str, str]:
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise InvalidInputError(f"mapping must be a mapping of old state id to new state id, "
                                f"not {type(mapping).__name__} {mapping!r}.")
    known: set[str] = set()
    for old in olds:
        known |= old.leaves
    problems = [f"{k!r} is not a leaf state of the versions these cases run on"
                for k in mapping if not isinstance(k, str) or (known and k not in known)]
    problems += [f"{v!r} is not a leaf state of version {new.version}"
                 for v in mapping.values() if not isinstance(v, str) or v not in new.leaves]
    if problems:
        raise InvalidInputError("The state mapping can't be used: " + "; ".join(problems)
                                + f". Leaves of version {new.version}: "
                                + ", ".join(sorted(new.leaves)) + ".")
    return dict(mapping)


def _plans(store: Store, new: Workflow, ids: list[str], mapping: Mapping[str, str] | None,
           ballots: str, on: dt.date | None,
           progress: Progress | None) -> tuple[list[tuple[Case, CasePlan]], dict[str, str]]:
    if ballots not in BALLOTS:
        raise InvalidInputError(f"ballots must be one of {list(BALLOTS)}, not {ballots!r}.")
    loaded: list[Case] = []
    for n, case_id in enumerate(ids, start=1):
        # a case named that does not exist is a mistake in the request, not a case that
        # stays: CaseNotFoundError, and nothing is planned or written
        loaded.append(store.case(case_id))
        if progress is not None and n % 100 == 0:
            progress(n, len(ids) * 2)
    checked = _check_keys(mapping, new, {c.definition for c in loaded})
    out: list[tuple[Case, CasePlan]] = []
    for case_id, case in zip(ids, loaded, strict=True):
        p = plan_case(case_id, case.definition, new, case.engine_state, mapping=checked,
                      ballots=ballots)
        last = case.last_on
        if on is not None and p.can_move and last is not None and on < last:
            p = CasePlan(case_id=p.case_id, workflow=p.workflow, from_version=p.from_version,
                         to_version=p.to_version, source=p.source, target=None,
                         reasons=(f"the date {on.isoformat()} is before the case's last event "
                                  f"on {last.isoformat()}; dates may not go backwards",))
        late = None if on is None or not p.can_move else \
            case._engine.overdue_reason(case.engine_state, on, case_id=case_id)
        if late:
            p = CasePlan(case_id=p.case_id, workflow=p.workflow, from_version=p.from_version,
                         to_version=p.to_version, source=p.source, target=None,
                         reasons=(late,))
        out.append((case, p))
    return out, checked


def plan(store: Store, to: Workflow | str, *, cases: Iterable[str] | None,
         mapping: Mapping[str, str] | None, ballots: str) -> MigrationPlan:
    """The body of :meth:`Store.plan_migration`."""
    new = _target_workflow(store, to)
    ids = _case_ids(store, new, cases)
    plans, checked = _plans(store, new, ids, mapping, ballots, None, None)
    return MigrationPlan(workflow=new.name, to_version=new.version, mapping=checked,
                         ballots=ballots, cases=tuple(p for _, p in plans))


def migrate(store: Store, to: Workflow | str, *, cases: Iterable[str] | None,
            mapping: Mapping[str, str] | None, ballots: str, actor: str, on: object,
            note: str | None, progress: Progress | None = None) -> MigrationPlan:
    """The body of :meth:`Store.migrate`: plan and write in one transaction."""
    new = _target_workflow(store, to)
    actor = check_actor(actor)
    when = to_date(on, "on")
    if note is not None:
        note = check_text(note, "note", max_length=MAX_NOTE_LENGTH)
    with store.bulk():
        ids = _case_ids(store, new, cases)
        # each case is planned on the state its migration is written onto: hold them all,
        # as a step holds its case, before reading them (SQLite's writer holds the file)
        with translate("hold the cases to migrate"):
            store._lock_cases(ids)
        plans, checked = _plans(store, new, ids, mapping, ballots, when, progress)
        if any(p.can_move for _, p in plans):
            store._register_workflow(new)
        done = 0
        for case, p in plans:
            if not p.can_move or p.target is None:
                continue
            data = {"migrate": {"from_version": p.from_version, "to_version": new.version,
                                "mapping": checked, "ballots": ballots}}
            fields = (case.id, case.version + 1, "migrate", "migrate", actor, when.isoformat(),
                      utc_now().isoformat(), json_list(p.source), json_list(p.target), note,
                      canonical_json(data), new.name, new.version, None)
            # a mapping may take the case into a final state: the cases row says so too
            final = int(engine_for(new).is_final(p.target))
            store._append_row(case, fields, final=final, data=data, moves_to=new,
                              digest=new.digest,
                              what=f"migrate case {case.id!r} to version {new.version}")
            done += 1
            if progress is not None and done % 100 == 0:
                progress(len(ids) + done, len(ids) * 2)
    if progress is not None:
        progress(len(ids) * 2, len(ids) * 2)
    return MigrationPlan(workflow=new.name, to_version=new.version, mapping=checked,
                         ballots=ballots, cases=tuple(p for _, p in plans))
