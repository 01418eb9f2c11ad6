"""How an event is stored: its columns, its canonical bytes and hash, and back to an Event.

Also the one place where sqlite3's errors become :class:`~approvalflow.errors.StoreError`
(:func:`translate`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import operator
import sqlite3
from collections.abc import Iterator, Mapping
from time import time_ns
from typing import TYPE_CHECKING, Any

from ..canonical import sha256_hex, shortened
from ..case import Event
from ..errors import ApprovalflowError, StoreError
from ..records import maker

if TYPE_CHECKING:
    from .sqlite import SqliteConnection

#: The previous-hash of a case's first event.
GENESIS = "0" * 64


#: The database drivers' error classes that translate turns into StoreError: sqlite3's,
#: and psycopg's once the PostgreSQL backend is imported (store/postgres.py).
DATABASE_ERRORS: tuple[type[Exception], ...] = (sqlite3.Error,)


def register_database_errors(error: type[Exception]) -> None:
    global DATABASE_ERRORS
    if error not in DATABASE_ERRORS:
        DATABASE_ERRORS = (*DATABASE_ERRORS, error)


@contextlib.contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn the database's errors into StoreError with a message that says what to do."""
    try:
        yield
    except ApprovalflowError:
        raise
    except DATABASE_ERRORS as e:
        raise store_error(e, what) from e


def is_database_error(e: BaseException) -> bool:
    """Whether :func:`translate` turns ``e`` into a StoreError: an error of a database
    driver, and not one of approvalflow's own."""
    return isinstance(e, DATABASE_ERRORS) and not isinstance(e, ApprovalflowError)


def store_error(e: BaseException, what: str) -> StoreError:
    """The StoreError that :func:`translate` turns the database's error ``e`` into: what
    could not be done, the database's words, and what to do."""
    text = str(e).strip()
    if "full" in text and "deadlock" not in text:
        hint = "the database or the disk is full; free space (or raise max_page_count)"
    elif "deadlock" in text or "could not serialize" in text:
        hint = "another writer took the same rows at the same time; retry"
    elif "locked" in text or "busy" in text or "lock timeout" in text:
        hint = "another process held the database longer than the busy timeout; retry"
    elif "not a database" in text or "malformed" in text:
        hint = "the file is not an approvalflow database, or it is damaged"
    elif "unable to open" in text:
        hint = "the file's folder does not exist, or the file can't be opened there"
    elif "readonly" in text or "read-only" in text:
        hint = "the database file or its folder is read-only"
    elif "thread" in text:
        hint = ("a Store belongs to the thread that opened it; open one store per thread "
                "or per request (approvalflow.open_store), see docs/integration.md")
    elif "append-only" in text:
        hint = "recorded events and workflows are never changed or deleted"
    elif "NUL (0x00)" in text:
        hint = "PostgreSQL can't store the character U+0000 in text; remove it"
    elif "connection" in text or "server closed" in text:
        hint = "the database server can't be reached; nothing more was written"
    else:
        hint = "nothing was written"
    return StoreError(f"Could not {what}: {text} ({hint}).")


# Hot-path helpers. encode is canonical_json without json.dumps' per-call set-up (the
# same encoder settings, so the same bytes); states and dates repeat across events, so
# their parsed and printed forms are memoised (immutable values, bounded caches).
encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False).encode
STATE_TEXT: dict[frozenset[str], str] = {}
STATE_SET: dict[str, frozenset[str]] = {}
DATES: dict[str, dt.date] = {}
MEMO_LIMIT = 10_000


@contextlib.contextmanager
def snapshot(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction, so the tables are read as of one commit (verify, and the
    questions across cases, whose answers join several reads); inside a write or a bulk
    block, that transaction's own view."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def json_list(states: frozenset[str]) -> str:
    text = STATE_TEXT.get(states)
    if text is None:
        if len(STATE_TEXT) > MEMO_LIMIT:
            STATE_TEXT.clear()
        text = STATE_TEXT[states] = encode(sorted(states))
    return text


def state_set(text: str) -> frozenset[str]:
    states = STATE_SET.get(text)
    if states is None:
        if len(STATE_SET) > MEMO_LIMIT:
            STATE_SET.clear()
        value = json.loads(text)
        if type(value) is not list or not all(type(s) is str for s in value):
            raise ValueError(f"{text[:80]!r} is not a list of state ids")
        states = STATE_SET[text] = frozenset(value)
    return states


def parse_date(text: str) -> dt.date:
    day = DATES.get(text)
    if day is None:
        if len(DATES) > MEMO_LIMIT:
            DATES.clear()
        day = DATES[text] = dt.date.fromisoformat(text)
    return day


def selected_hash(row: sqlite3.Row | tuple[Any, ...]) -> str:
    """:func:`event_hash` of a row selected as ``SELECT {EVENT_COLUMNS}`` (the hashed
    fields are its first 15 columns, in the same order, the workflow digest at 16 and
    the person at 17), without a lookup by name."""
    return fields_hash(row[:15], row[16], row[17])


def event_hash(row: Mapping[str, Any]) -> str:
    """:func:`fields_hash` of an event row (everything but the hash itself)."""
    return fields_hash(_hashed_fields(row), row.get("workflow_digest"), row.get("by"))


def fields_hash(fields: tuple[Any, ...], digest: str | None, by: str | None) -> str:
    """SHA-256 over the canonical bytes of an event: its first 15 fields (EVENT_FIELDS, up
    to ``prev_hash``), then what it commits to besides.

    A creation commits to its workflow's text: its ``workflow_digest`` is the next hashed
    field. Other events, and creations written before schema 3, have none. An event that
    records the person who acted (``by``, schema 4) ends with ``{"by": person}``: an
    object, so it can never be read as a workflow digest (a string). An event with
    neither hashes as the first 15 fields alone (so every hash written before stays
    valid). The feed ``position`` is not hashed: the store assigns it, and a copy into
    another store numbers the events anew.
    """
    return sha256_hex(fields_text(fields, digest, by))


def fields_text(fields: tuple[Any, ...], digest: str | None, by: str | None) -> str:
    """The canonical text :func:`fields_hash` hashes: ``encode`` of the fields, then the
    digest and ``{"by": by}`` when present, as one JSON array.

    Written out here for the fields as the store writes them (text, whole numbers, null
    where a note or key is missing), with the texts that repeat from step to step
    (kind, trigger, actor, states, data, workflow) quoted once; anything else (a row read
    back from a log changed behind the library's back) is left to :func:`encode_fields`.
    test_write_path holds the two equal for any fields."""
    try:
        (case_id, seq, kind, trigger, actor, on_date, recorded_at, source, target, note, data,
         workflow, version, key, prev_hash) = fields
        if type(seq) is int and type(version) is int:  # noqa: E721 (a bool is no number here)
            text = (f"[{_QUOTE(case_id)},{seq},{_quoted(kind)},{_quoted(trigger)},"
                    f"{_quoted(actor)},{_QUOTE(on_date)},{_QUOTE(recorded_at)},"
                    f"{_quoted(source)},{_quoted(target)},"
                    f"{'null' if note is None else _QUOTE(note)},{_quoted(data)},"
                    f"{_quoted(workflow)},{version},{'null' if key is None else _QUOTE(key)},"
                    f"{_QUOTE(prev_hash)}")
            if digest is not None:
                text = f"{text},{_QUOTE(digest)}"
            if by is not None:
                text = f'{text},{{"by":{_QUOTE(by)}}}'
            return f"{text}]"
    except (TypeError, ValueError):
        pass
    if digest is not None:
        fields = (*fields, digest)
    if by is not None:
        fields = (*fields, {"by": by})
    return encode_fields(fields)


_QUOTED: dict[str, str] = {}


def _quoted(text: str) -> str:
    """``_QUOTE(text)``, made once for each text (those that repeat between events)."""
    quoted = _QUOTED.get(text)
    if quoted is None:
        if len(_QUOTED) > MEMO_LIMIT:
            _QUOTED.clear()
        quoted = _QUOTED[text] = _QUOTE(text)
    return quoted


_QUOTE = json.encoder.encode_basestring  # what ``encode`` quotes text with (not ASCII-only)


#: ``encode``'s own C encoder, made once (``encode`` makes one per call): the same
#: settings, without the check for circular containers, which the tuples a hash covers
#: (text, whole numbers, null and the person's ``{"by": text}``) can't hold.
_MAKE_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (_MAKE_ENCODER(None, None, _QUOTE, None, ":", ",", True, False, False)
             if _MAKE_ENCODER is not None else None)


def encode_fields(fields: tuple[Any, ...]) -> str:
    """``encode(fields)``, the same text, for the tuple a hash covers, without the JSON
    encoder's per-call set-up: ``encode``'s C encoder made once, or, where Python has
    none, text, whole numbers and null joined here and any other value (the person's
    ``{"by": ...}``, a float) taken by ``encode`` itself. A tuple encodes as a JSON array."""
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(fields, 0))
    parts = []
    for value in fields:
        kind = type(value)
        if kind is str:
            parts.append(_QUOTE(value))
        elif kind is int:
            parts.append(int.__repr__(value))
        elif value is None:
            parts.append("null")
        else:
            return encode(fields)
    return "[" + ",".join(parts) + "]"


#: The hashed fields, in hash order, then the hash, then the creation's workflow digest
#: and the person who acted (both hashed when present).
EVENT_FIELDS = ("case_id", "seq", "kind", "trigger", "actor", "on_date", "recorded_at",
                "source", "target", "note", "data", "workflow", "workflow_version", "key",
                "prev_hash", "hash", "workflow_digest", "by")
#: What a read selects: the fields, then the feed position (assigned by the store).
EVENT_COLUMNS = ", ".join(EVENT_FIELDS) + ", position"
#: A dict row's values in EVENT_FIELDS order and its position (what INSERT_EVENT_AT
#: takes), and its first 15 (what the hash covers before the digest and the person),
#: picked in one C call each.
event_values = operator.itemgetter(*EVENT_FIELDS, "position")
_hashed_fields = operator.itemgetter(*EVENT_FIELDS[:15])

# The statements every write path uses (a step, a creation, the batched import). The
# feed position is the next one after the highest: writers hold SQLite's write lock for
# the whole transaction (BEGIN IMMEDIATE), so positions are assigned in commit order,
# and a transaction that rolls back takes none with it (no gaps). The highest is read
# in the transaction, with the case's head (SELECT_HEAD) or once per import, and the
# event is inserted at the next one (INSERT_EVENT_AT); the unique index on position
# refuses any other.
INSERT_EVENT = (f"INSERT INTO events ({', '.join(EVENT_FIELDS)}, position) "
                f"VALUES ({', '.join('?' * len(EVENT_FIELDS))}, "
                f"(SELECT COALESCE(MAX(position), 0) + 1 FROM events))")
INSERT_EVENT_AT = (f"INSERT INTO events ({', '.join(EVENT_FIELDS)}, position) "
                   f"VALUES ({', '.join('?' * (len(EVENT_FIELDS) + 1))})")
#: The fields most steps leave empty: no note, no idempotency key, no workflow digest
#: (only a creation has one), no person.
_USUALLY_NULL = ("note", "key", "workflow_digest", "by")
#: INSERT_EVENT_AT for an event with all of _USUALLY_NULL empty: NULL written in the
#: statement, as sqlite3 binds a None parameter through its adapter look-up (an
#: exception raised and cleared each time), several times the cost of a text.
INSERT_BARE_EVENT_AT = (
    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}, position) VALUES "
    f"({', '.join('NULL' if f in _USUALLY_NULL else '?' for f in EVENT_FIELDS)}, ?)")


def insert_fields(conn: SqliteConnection, fields: tuple[Any, ...], hash_: str,
                  digest: str | None, by: str | None, position: int | None) -> None:
    """Insert an event given as its hashed fields (EVENT_FIELDS up to ``prev_hash``), its
    hash, workflow digest, person and feed position into ``events``."""
    if fields[9] is None and fields[13] is None and digest is None and by is None:
        conn.run(INSERT_BARE_EVENT_AT, (*fields[:9], *fields[10:13], fields[14], hash_,
                                        position))
    else:
        conn.run(INSERT_EVENT_AT, (*fields, hash_, digest, by, position))


#: A case's head (sequence, hash), the date of its last event, and the highest feed
#: position of the store, in one statement. On PostgreSQL the row is locked with it and
#: the position is NULL: events are numbered after the commit there (store/postgres.py),
#: and INSERT_EVENT_AT leaves the position out.
SELECT_HEAD = ("SELECT seq, head_hash, last_on, (SELECT COALESCE(MAX(position), 0) "
               "FROM events) FROM cases WHERE case_id = ?")
#: Whether a case exists, and the highest feed position (a creation; NULL as above).
SELECT_NEW = ("SELECT (SELECT 1 FROM cases WHERE case_id = ?), "
              "(SELECT COALESCE(MAX(position), 0) FROM events)")
#: The highest feed position (an import; NULL as above).
SELECT_TOP = "SELECT (SELECT COALESCE(MAX(position), 0) FROM events)"
INSERT_CASE = ("INSERT INTO cases (case_id, workflow, workflow_version, state, seq, last_on, "
               "head_hash, is_final, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?)")
UPDATE_CASE = ("UPDATE cases SET state = ?, seq = ?, last_on = ?, head_hash = ?, is_final = ?, "
               "updated_at = ? WHERE case_id = ?")
#: UPDATE_CASE for an event on the day of the case's last one, without the date (its
#: parameters but ``last_on``), so SQLite does not rewrite the date's index entry.
UPDATE_CASE_SAME_DAY = ("UPDATE cases SET state = ?, seq = ?, head_hash = ?, is_final = ?, "
                        "updated_at = ? WHERE case_id = ?")


def row_to_event(row: Mapping[str, Any] | sqlite3.Row | tuple[Any, ...]) -> Event:
    """An Event from a dict row, or from a row selected as ``SELECT {EVENT_COLUMNS}`` (read
    by position: a lookup by name on sqlite3.Row scans the column names)."""
    if isinstance(row, (sqlite3.Row, tuple)):  # noqa: UP038 (faster than a union)
        (case_id, seq, kind, trigger, actor, on_date, recorded_at, source, target, note, data,
         workflow, workflow_version, key, prev_hash, hash_, workflow_digest, by,
         position) = row[:19]
    elif "position" in row and "by" in row and "workflow_digest" in row:
        # a row the store built: every field, in one C call
        (case_id, seq, kind, trigger, actor, on_date, recorded_at, source, target, note, data,
         workflow, workflow_version, key, prev_hash, hash_, workflow_digest, by,
         position) = event_values(row)
    else:
        case_id, seq, kind, trigger, actor = (row["case_id"], row["seq"], row["kind"],
                                              row["trigger"], row["actor"])
        on_date, recorded_at, source, target = (row["on_date"], row["recorded_at"],
                                                row["source"], row["target"])
        note, data, workflow, workflow_version = (row["note"], row["data"], row["workflow"],
                                                  row["workflow_version"])
        key, prev_hash, hash_ = row["key"], row["prev_hash"], row["hash"]
        workflow_digest, by = row.get("workflow_digest"), row.get("by")
        position = row.get("position")
    # in Event's field order (records.maker): every event read back makes one
    return _make_event(
        case_id, seq, trigger, actor, parse_date(on_date), dt.datetime.fromisoformat(recorded_at),
        state_set(source), state_set(target), note, {} if data == "{}" else json.loads(data),
        workflow, workflow_version, kind, key, prev_hash, hash_, workflow_digest, by, position)


def built_event(fields: tuple[Any, ...], hash_: str, by: str | None, position: int | None,
                on: dt.date, recorded_at: dt.datetime, source: frozenset[str],
                target: frozenset[str]) -> Event:
    """:func:`row_to_event` of an event the store has just written (its hashed fields, as
    :func:`insert_fields` takes them, with no workflow digest), given the values its date,
    time and states were written from (nothing is parsed back)."""
    (case_id, seq, kind, trigger, actor, _, _, _, _, note, data, workflow, version, key,
     prev_hash) = fields
    # in Event's field order (records.maker); test_write_path holds the result equal to
    # row_to_event's, field by field
    return _make_event(case_id, seq, trigger, actor, on, recorded_at, source, target, note,
                       {} if data == "{}" else json.loads(data), workflow, version, kind, key,
                       prev_hash, hash_, None, by, position)


#: An Event from all its fields, in order (records.maker).
_make_event = maker(Event)


#: What an error about a row the library could not have written ends with.
CHANGED_BEHIND = ("was the log changed behind the library's back? 'approvalflow verify' says "
                  "what is wrong with it.")


def stored_event(row: sqlite3.Row | tuple[Any, ...]) -> Event:
    """:func:`row_to_event` for a row read back from the log (``SELECT {EVENT_COLUMNS}``):
    a row edited behind the library's back into something that can't be read is one
    StoreError naming the event, not a ValueError from deep inside."""
    try:
        return row_to_event(row)
    except (ValueError, TypeError, RecursionError) as e:
        raise StoreError(f"Event {row[1]!r} of case {row[0]!r} can't be read "
                         f"({type(e).__name__}: {shortened(str(e), 120)}); {CHANGED_BEHIND}"
                         ) from None


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


_TWO_DIGITS = tuple(f"{i:02d}" for i in range(100))
_DAY_TEXT: dict[dt.date, str] = {}


def date_text(day: dt.date) -> str:
    """``day.isoformat()`` (of a ``datetime.date`` itself, not a subclass), made once for
    each day: every step writes its date, and the C method formats it through ``sprintf``."""
    text = _DAY_TEXT.get(day)
    if text is None:
        if len(_DAY_TEXT) > MEMO_LIMIT:
            _DAY_TEXT.clear()
        text = _DAY_TEXT[day] = day.isoformat()
    return text


def utc_text(now: dt.datetime) -> str:
    """``now.isoformat()`` of a datetime in UTC (as :func:`utc_now` gives), the same
    text in half the time: the C method formats through ``sprintf`` and asks the zone
    for its offset, and every step writes one. Each day's text is made once."""
    head = date_text(now.date())
    micros = now.microsecond
    clock = f"{_TWO_DIGITS[now.hour]}:{_TWO_DIGITS[now.minute]}:{_TWO_DIGITS[now.second]}"
    if micros:
        return f"{head}T{clock}.{str(1_000_000 + micros)[1:]}+00:00"
    return f"{head}T{clock}+00:00"


class UtcClock:
    """``utc_now().isoformat()`` faster, when only the text is wanted (an import stamps
    every event): the same clock, rounded down to the microsecond as ``datetime.now``
    rounds it, with the text up to the second made once a second. A step, which keeps
    the time as a datetime too, formats it with :func:`utc_text`."""

    __slots__ = ("second", "head")

    def __init__(self) -> None:
        self.second = -1
        self.head = ""

    def __call__(self) -> str:
        second, micros = divmod(time_ns() // 1000, 1_000_000)
        if second != self.second:
            self.head = dt.datetime.fromtimestamp(second, dt.UTC).isoformat()[:-6]
            self.second = second
        return f"{self.head}.{micros:06d}+00:00" if micros else f"{self.head}+00:00"
