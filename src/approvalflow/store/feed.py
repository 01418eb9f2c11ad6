"""The feed: every event of a store in commit order, for other applications to follow.

Each event takes a feed ``position`` inside the transaction that writes it: one more
than the highest so far (``rows.INSERT_EVENT``). SQLite lets one writer at a time hold
the database from ``BEGIN IMMEDIATE`` to ``COMMIT``, so positions are handed out in
commit order, a reader's snapshot always holds positions 1..n with nothing missing, and
a transaction that rolls back takes its positions with it. Positions are not hashed:
the store assigns them, and a copy of the events into another store numbers them anew;
the hash chain of each case is what proves its events.

- :func:`read_feed`: the events after a position (``Store.feed``);
- :func:`follow`: the same, then waits for new commits and yields them as they come
  (``approvalflow tail --follow``). It polls SQLite's ``PRAGMA data_version``, which
  changes when another connection commits, a few times a second: no busy loop;
- :func:`notify`: calls ``Store.subscribe`` callbacks after a commit.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Iterator
from typing import TYPE_CHECKING

from ..case import Event
from ..errors import InvalidInputError
from .rows import EVENT_COLUMNS, stored_event, translate

if TYPE_CHECKING:
    from . import Store

__all__ = ["read_feed", "follow", "notify", "Subscriber", "MAX_LIMIT", "POLL_SECONDS"]

Subscriber = Callable[[Event], object]
#: The most events one read returns.
MAX_LIMIT = 100_000
#: How often ``follow`` asks SQLite whether another connection committed.
POLL_SECONDS = 0.2

logger = logging.getLogger("approvalflow.store")


#: The largest feed position (SQLite's and PostgreSQL's largest integer).
MAX_POSITION = 2**63 - 1


def _check(after: object, limit: object) -> tuple[int, int]:
    if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after <= MAX_POSITION:
        raise InvalidInputError(f"after must be a feed position (a whole number from 0 to "
                                f"{MAX_POSITION}), not {after!r}.")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"limit must be a whole number from 1 to {MAX_LIMIT}, "
                                f"not {limit!r}.")
    return after, limit


def read_feed(conn: sqlite3.Connection, after: int, limit: int) -> list[Event]:
    """At most ``limit`` events with a position above ``after``, in position order."""
    after, limit = _check(after, limit)
    rows = conn.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE position > ? "
                        f"ORDER BY position LIMIT ?", (after, limit)).fetchall()
    return [stored_event(r) for r in rows]


def follow(store: Store, after: int = 0, *, poll: float = POLL_SECONDS,
           batch: int = 1000) -> Iterator[Event]:
    """Every event after ``after``, then each new one as it is committed, forever.

    Between reads it sleeps ``poll`` seconds at a time until ``PRAGMA data_version``
    says the database changed. Stop it by leaving the loop (or with Ctrl-C).
    """
    _check(after, batch)
    conn = store._conn
    while True:
        with translate("follow the feed"):
            version = store._data_version()  # numbers what is pending (PostgreSQL)
            events = read_feed(conn, after, batch)
        yield from events
        if events:
            after = events[-1].position or after
            if len(events) == batch:
                continue  # more are waiting
        with translate("follow the feed"):
            while store._data_version() == version:
                time.sleep(poll)


def notify(store: Store, mark: int,
           mine: Collection[tuple[str, int]]) -> frozenset[tuple[str, int]]:
    """Call every subscriber with each event of ``mine`` (case id, seq), all committed
    after position ``mark``, in feed order. What other stores committed meanwhile is in
    the feed too, and is left out: each store's subscribers hear its own commits.

    Returns those of ``mine`` not in the feed yet (on PostgreSQL, committed but not
    numbered: the numbering could not take its lock in time), to be passed on later."""
    try:
        events = store.feed(after=mark, limit=MAX_LIMIT)
        while len(events) % MAX_LIMIT == 0 and events:
            more = store.feed(after=events[-1].position or 0, limit=MAX_LIMIT)
            if not more:
                break
            events.extend(more)
        events = [e for e in events if (e.case_id, e.seq) in mine]
    except Exception:  # the commit is done; a failed read must not look like a failed step
        logger.exception("approvalflow: could not read the events just committed to %r for "
                         "the subscribers; they were stored, but not passed on", store.where)
        return frozenset()
    missing = frozenset(mine) - {(e.case_id, e.seq) for e in events}
    for event in events:
        for callback in list(store._subscribers):
            try:
                callback(event)
            except Exception:
                logger.exception(
                    "approvalflow: subscriber %r failed on event %s of case %r (position %s); "
                    "the event is stored, the other subscribers still run",
                    callback, event.seq, event.case_id, event.position)
    return missing
