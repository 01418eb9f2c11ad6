"""Loading a history fast: records decided, hashed and chained as create and fire would,
written in batches inside one transaction, with no Case or Event objects."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..canonical import check_data, check_text, sha256_hex, to_date
from ..case import MAX_ID_LENGTH, MAX_NOTE_LENGTH, check_actor, check_person, reasons_text
from ..definition import Workflow
from ..engine import engine_for
from ..errors import CaseExistsError, InvalidInputError, TransitionRefusedError
from ..loading import load_workflow
from ..replay import Recorded
from . import check_case_id, projections
from .rows import (
    GENESIS,
    INSERT_CASE,
    INSERT_EVENT_AT,
    SELECT_TOP,
    UPDATE_CASE,
    encode,
    json_list,
    translate,
    utc_now,
)
from .timers import timer_rows, write_timer_rows

if TYPE_CHECKING:
    from . import Store


def import_events(store: Store, records: Iterable[Mapping[str, Any]]) -> int:
    """The body of :meth:`Store.import_events` (see there): batched, one transaction."""
    events: list[tuple[Any, ...]] = []
    new_cases: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    seen: set[str] = set()  # cases with rows in the buffer (the rest are in the db)
    registered: set[tuple[str, int]] = set()
    timers: dict[str, list[tuple[str, str]]] = {}  # cases of timed workflows -> their rows
    new_timers: dict[str, list[tuple[str, str]]] = {}  # the same, of cases it creates
    cur: dict[str, Any] | None = None  # the case being imported
    count = 0
    rows_of = projections.ImportProjections()
    checked: set[str] = set()  # triggers, actors and dates already checked
    checked_actors: set[str] = set()
    days: dict[str, dt.date] = {}

    def close_case() -> None:
        if cur is None:
            return
        if cur["new"]:
            data0, text0 = cur["data0"]
            rows_of.add(cur["id"], cur["engine"], cur["state"], cur["history"],
                        text0 if cur["state"].data is data0 else None)
        elif cur["seq"] != cur["loaded_seq"]:
            projections.advance(store._conn, cur["engine"], cur["id"], cur["proj_state"],
                                cur["state"], cur["history"])
        if cur["engine"].timed:
            rows = timer_rows(cur["engine"], cur["state"])
            if cur["new"]:  # created in this import: no rows to replace
                if rows:
                    new_timers[cur["id"]] = rows
            else:
                timers[cur["id"]] = rows
        final = int(cur["engine"].is_final(cur["state"].config))
        target = json_list(cur["state"].config)
        if cur["new"]:
            new_cases.append((cur["id"], cur["wf"].name, cur["wf"].version, target,
                              cur["seq"], cur["last_on"], cur["hash"], final,
                              cur["created_at"], cur["updated_at"]))
        elif cur["seq"] != cur["loaded_seq"]:
            updates.append((target, cur["seq"], cur["last_on"], cur["hash"], final,
                            cur["updated_at"], cur["id"]))

    def flush() -> None:
        if events:
            store._conn.executemany(INSERT_EVENT_AT, events)
        if new_cases:
            store._conn.executemany(INSERT_CASE, new_cases)
        if updates:
            store._conn.executemany(UPDATE_CASE, updates)
        rows_of.flush(store._conn)
        write_timer_rows(store._conn, timers)
        write_timer_rows(store._conn, new_timers, new=True)
        timers.clear()
        new_timers.clear()
        events.clear()
        new_cases.clear()
        updates.clear()
        seen.clear()
        if cur is not None:
            seen.add(cur["id"])

    with store.bulk(), translate("import events"):
        # the highest feed position, read inside the import's transaction; its events take
        # the next ones, in order (rows.INSERT_EVENT_AT). PostgreSQL reads NULL: it numbers
        # them after the commit (store/postgres.py)
        position = store._conn.execute(SELECT_TOP).fetchone()[0]
        numbered = position is not None
        for number, record in enumerate(records, start=1):
            if not isinstance(record, dict) and not isinstance(record, Mapping):
                raise InvalidInputError(f"record {number} is a {type(record).__name__} "
                                        f"({record!r}); records are mappings.")
            try:
                case_id = record.get("case_id")
                if cur is None or case_id != cur["id"]:  # the current one was checked
                    case_id = check_case_id(case_id)
                # text is immutable: a trigger, actor or date checked once stays valid
                trigger = record.get("trigger")
                if type(trigger) is not str or trigger not in checked:
                    trigger = check_text(trigger, "trigger", max_length=MAX_ID_LENGTH)
                    checked.add(trigger)
                actor = record.get("actor")
                if type(actor) is not str or actor not in checked_actors:
                    actor = check_actor(actor)
                    checked_actors.add(actor)
                on = record.get("on")
                when = days.get(on) if type(on) is str else None
                if when is None:
                    when = dt.date.today() if on is None else to_date(on, "on")
                    if type(on) is str:
                        days[on] = when
                data = record.get("data")
                payload = {} if data is None else dict(check_data(data))
                note = record.get("note")
                if note is not None:
                    check_text(note, "note", max_length=MAX_NOTE_LENGTH)
                by = record.get("by")
                if by is not None:
                    by = check_person(by)
                wf: Any = record.get("workflow")
                if trigger == "create" and not isinstance(wf, Workflow | str | os.PathLike):
                    raise InvalidInputError(f"a creation needs a 'workflow' (a Workflow, "
                                            f"a bundled name or a path), not {wf!r}.")
            except InvalidInputError as e:
                raise InvalidInputError(f"record {number}: {e}") from e
            at = utc_now().isoformat()
            if trigger == "create":
                close_case()
                wf = wf if isinstance(wf, Workflow) else load_workflow(wf)
                if actor not in wf.actors:
                    raise InvalidInputError(
                        f"record {number}: {actor!r} is not an actor of workflow "
                        f"{wf.name!r}; actors: {', '.join(sorted(wf.actors))}.")
                if case_id in seen or store._conn.execute(
                        "SELECT 1 FROM cases WHERE case_id = ?", (case_id,)).fetchone():
                    raise CaseExistsError(f"record {number}: case {case_id!r} already "
                                          f"exists in {store.where!r}.")
                if (wf.name, wf.version) not in registered:
                    store._register_workflow(wf)
                    registered.add((wf.name, wf.version))
                engine = engine_for(wf)
                state = engine.initial_state(payload, when, by)
                text = encode(payload)
                row = (case_id, 1, "create", "create", actor, when.isoformat(), at, "[]",
                       json_list(state.config), note, text, wf.name,
                       wf.version, None, GENESIS)
                commits_to = wf.digest  # a creation commits to its workflow's text
                cur = {"id": case_id, "wf": wf, "engine": engine, "state": state,
                       "new": True, "created_at": at, "loaded_seq": 0,
                       # the data as created, and its text: the case_data row while no
                       # step sets data (a step that does makes a new mapping)
                       "data0": (state.data, text),
                       "history": [Recorded(case_id, 1, "create", "create", actor, when,
                                            frozenset(), state.config, payload,
                                            workflow=wf.name, workflow_version=wf.version,
                                            by=by, note=note)]}
                seen.add(case_id)
            else:
                if cur is None or cur["id"] != case_id:
                    close_case()
                    if case_id in seen:
                        flush()
                    case = store.case(case_id)
                    cur = {"id": case_id, "wf": case.definition,
                           "engine": engine_for(case.definition),
                           "state": case.engine_state, "new": False,
                           "hash": case.history[-1].hash, "loaded_seq": case.version,
                           "proj_state": case.engine_state, "history": list(case.history)}
                    seen.add(case_id)
                state, engine = cur["state"], cur["engine"]
                decision = engine.evaluate(state, trigger, actor=actor, on=when,
                                           data=payload, case_id=case_id, by=by)
                if decision.reasons:
                    raise TransitionRefusedError(
                        f"Can't import record {number}, {trigger!r} on case {case_id!r} "
                        f"by {actor!r}: " + reasons_text(decision.reasons),
                        list(decision.reasons))
                wf, seq = cur["wf"], state.version + 1
                text = encode(payload) if payload else "{}"
                row = (case_id, seq, "fire", trigger, actor, when.isoformat(), at,
                       json_list(state.config), json_list(decision.target), note, text,
                       wf.name, wf.version, None, cur["hash"])
                commits_to = None
                step_data = json.loads(text) if payload else {}
                cur["state"] = engine.apply(
                    state, trigger=trigger, actor=actor, on=when, seq=seq,
                    target=decision.target, data=step_data, by=by,
                    transition=decision.transition)
                cur["history"].append(Recorded(case_id, seq, "fire", trigger, actor, when,
                                               state.config, decision.target, step_data,
                                               workflow=wf.name, workflow_version=wf.version,
                                               by=by, note=note))
            # a tuple encodes as the same JSON array (see rows.event_hash)
            hashed = row if commits_to is None else (*row, commits_to)
            digest = sha256_hex(encode(hashed if by is None else (*hashed, {"by": by})))
            if numbered:
                position += 1
            events.append((*row, digest, commits_to, by, position))
            cur.update(hash=digest, seq=row[1], last_on=row[5], updated_at=at)
            count += 1
            if len(events) >= 2000:
                close_case()  # its row goes with this batch, and is updated when it ends
                flush()
                cur["new"], cur["loaded_seq"] = False, cur["seq"]
                cur["proj_state"] = cur["state"]
        close_case()
        flush()
    return count
