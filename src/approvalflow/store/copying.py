"""Copy a whole log from one store to another: SQLite to PostgreSQL, and back.

The events are copied as they are, field by field (their canonical bytes, and so their
hashes and chains, are the same on both backends), in feed order, so the copy numbers
them in the same order. The workflow texts come along verbatim. The current-state table
is copied, and the projections and timers are recomputed from the copied log. The
source is verified first (a log that does not verify is not copied), the copy is
written in one transaction into an empty store, and verified again after the commit.
``verify(heads=...)`` with heads exported from the source before the copy passes on the
copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs

from ..errors import StoreError
from . import projections
from .rows import EVENT_COLUMNS, EVENT_FIELDS, INSERT_CASE, INSERT_EVENT, translate
from .timers import rebuild_timers

if TYPE_CHECKING:
    from . import Store
    from .verification import VerifyReport

#: Events written per statement batch.
BATCH = 5_000
_CASE_COLUMNS = ("case_id, workflow, workflow_version, state, seq, last_on, head_hash, "
                 "is_final, created_at, updated_at")


@attrs.frozen
class CopyReport:
    """What a copy did: the workflows, cases and events copied, and the copy's verify."""

    source: str
    dest: str
    workflows: int
    cases: int
    events: int
    verified: VerifyReport

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "dest": self.dest, "workflows": self.workflows,
                "cases": self.cases, "events": self.events, "ok": self.verified.ok,
                "problems": list(self.verified.problems)}


def copy_store(source: Store, dest: Store,
               progress: Callable[[int, int], None] | None = None) -> CopyReport:
    """Copy every workflow, case and event of ``source`` into the empty store ``dest``."""
    if source is dest or (source.path == dest.path and source.path != ":memory:"):
        raise StoreError(f"Can't copy {source.where!r} onto itself.")
    if dest.readonly:
        raise StoreError(f"Can't copy into {dest.where!r}: it was opened read-only.")
    source._number_feed()
    # the source as it is at one moment: what is verified is what is copied, and a step
    # another client commits meanwhile is either wholly in the copy (its event and its
    # case's head) or wholly out of it
    with source._snapshot(f"read {source.where!r} for a copy"):
        report = source.verify()
        if not report.ok:
            raise StoreError(
                f"{source.where!r} does not verify ({len(report.problems)} problem(s), the "
                f"first: {report.problems[0]}); a log that does not verify is not copied. "
                f"Run 'approvalflow verify' on it.")
        workflows, cases, done, total = _copy_rows(source, dest, report.events, progress)
    if progress is not None:
        progress(done, total)
    return CopyReport(source=source.where, dest=dest.where, workflows=len(workflows),
                      cases=len(cases), events=done, verified=dest.verify())


def _copy_rows(source: Store, dest: Store, total: int,
               progress: Callable[[int, int], None] | None
               ) -> tuple[list[Any], list[Any], int, int]:
    """Write the source's workflows, events and cases into ``dest`` in one transaction."""
    src = source._conn
    # one transaction (a bulk block), so the timers are rebuilt inside it too
    with dest.bulk(), translate(f"copy into {dest.where!r}"):
        conn = dest._conn
        held = conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0] \
            + conn.execute("SELECT COUNT(*) FROM workflows").fetchone()[0]
        if held:
            raise StoreError(f"{dest.where!r} already holds cases or workflows; copy into an "
                             f"empty store.")
        workflows = src.execute("SELECT name, version, digest, source, stored_at FROM "
                                "workflows ORDER BY name, version").fetchall()
        conn.executemany("INSERT INTO workflows (name, version, digest, source, stored_at) "
                         "VALUES (?, ?, ?, ?, ?)", [tuple(r) for r in workflows])
        done = 0
        batch: list[tuple[Any, ...]] = []
        # in feed order (events not numbered yet come last, in case order)
        rows = src.execute(f"SELECT {EVENT_COLUMNS} FROM events ORDER BY position IS NULL, "
                           f"position, case_id, seq")
        for row in rows:
            batch.append(tuple(row[:len(EVENT_FIELDS)]))
            if len(batch) >= BATCH:
                conn.executemany(INSERT_EVENT, batch)
                done += len(batch)
                batch = []
                if progress is not None:
                    progress(done, total)
        if batch:
            conn.executemany(INSERT_EVENT, batch)
            done += len(batch)
        cases = src.execute(f"SELECT {_CASE_COLUMNS} FROM cases ORDER BY case_id").fetchall()
        conn.executemany(INSERT_CASE, [tuple(r) for r in cases])
        projections.fill(conn)
        rebuild_timers(dest)
    return workflows, cases, done, total
