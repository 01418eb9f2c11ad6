"""Canonical JSON: the one byte form in which case data is stored and hashed.

Keys are sorted, separators are compact, text is UTF-8 (not escaped), and only
JSON's own types are accepted: a value that would not survive a round trip
(NaN, Infinity, a set, a date object, a lone surrogate) is refused instead of
being silently turned into something else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import sys
from typing import Any

from .errors import InvalidInputError

__all__ = ["canonical_json", "check_data", "sha256_hex", "check_text", "to_date", "date_or_today",
           "MIN_DATE", "MAX_DATE", "DATE_RANGE", "date_range_problem", "add_days", "shortened"]

_MAX_DEPTH = 64
#: Ints longer than this many bits may be over Python's int/str digit limit (4,300).
_BIG_INT_BITS = 14_000

#: Every date the library accepts lies in this range (docs/api.md, "Dates"): steps,
#: expectations, dates read from case data and workflow date references. It leaves
#: room on both sides for the day arithmetic of deadlines and forecasts (a workflow
#: may add up to 36,500 days), which Python's dates would refuse past year 9999.
MIN_DATE = dt.date(1900, 1, 1)
MAX_DATE = dt.date(2999, 12, 31)
DATE_RANGE = f"{MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}"


def check_text(value: object, what: str, *, max_length: int | None = None) -> str:
    """``value`` as plain text (a str subclass as the text it holds) if it is a string
    that can be stored as UTF-8, else raise."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__} {value!r}.")
    if type(value) is not str:  # the text it holds: a subclass's own methods are not asked
        value = str.__str__(value)
    try:
        if not value.isascii():  # ASCII text is UTF-8 as it is (a flag, not a scan)
            value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise InvalidInputError(
            f"{what} {value[:40]!r} is not valid Unicode text (lone surrogate at {e.start})."
        ) from e
    if max_length is not None and len(value) > max_length:
        raise InvalidInputError(
            f"{what} is {len(value)} characters long; at most {max_length} are allowed."
        )
    return value


def _copy(value: Any, path: str, depth: int) -> Any:
    """A fresh copy of ``value`` made while checking it: plain dicts, lists and scalars."""
    if depth > _MAX_DEPTH:
        raise InvalidInputError(f"data is nested deeper than {_MAX_DEPTH} levels at {path}.")
    if value is None or isinstance(value, bool):
        return value
    # a subclass is copied as the value it holds: its own methods are not asked
    if isinstance(value, int):
        value = int.__int__(value)
        if value.bit_length() > _BIG_INT_BITS:
            try:
                str(value)
            except ValueError:
                raise InvalidInputError(
                    f"data{path} is a whole number of about {value.bit_length() * 3 // 10} "
                    f"digits; at most {sys.get_int_max_str_digits()} digits can be stored: "
                    f"write such a number as a string.") from None
        return value
    if isinstance(value, float):
        value = float.__float__(value)
        if not math.isfinite(value):
            raise InvalidInputError(
                f"data{path} is {value!r}; JSON has no NaN or Infinity: use null or a string."
            )
        return value
    if isinstance(value, str):
        return check_text(value, f"data{path}")
    if isinstance(value, list | tuple):
        return [_copy(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"data{path} has the key {key!r}; keys must be strings.")
            key = check_text(key, f"a key in data{path}")
            out[key] = _copy(item, f"{path}[{key!r}]", depth + 1)
        return out
    raise InvalidInputError(
        f"data{path} is a {type(value).__name__} ({value!r}); only JSON values are allowed:"
        " null, true/false, numbers, strings, lists and objects (write dates as 'YYYY-MM-DD')."
    )


def check_data(data: object) -> dict[str, Any]:
    """A fresh copy of ``data`` (None becomes {}) if it is a JSON object that can be stored
    exactly, else InvalidInputError.

    The copy is built while the value is checked, so what is stored, hashed and shown to
    guards never aliases the caller's objects: changing them afterwards changes nothing.
    """
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"data must be a JSON object (a dict), not {type(data).__name__} {data!r}."
        )
    copied: dict[str, Any] = _copy(data, "", 0)
    return copied


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def shortened(text: str, width: int = 80) -> str:
    """``text`` cut to ``width`` characters, ending in "..." when cut: an error names what
    it was given without echoing all of it back."""
    return text if len(text) <= width else text[:width - 3] + "..."


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``, as 64 hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def date_range_problem(value: dt.date, what: str = "date") -> str | None:
    """Why ``value`` is outside :data:`MIN_DATE`..:data:`MAX_DATE`, or None when it is inside."""
    if MIN_DATE <= value <= MAX_DATE:
        return None
    return (f"{what} {value.isoformat()!r} is outside the dates approvalflow accepts, "
            f"{DATE_RANGE}")


def add_days(value: dt.date, days: int) -> dt.date:
    """``value`` moved by ``days``, held within what ``datetime.date`` can represent.

    Day arithmetic on accepted dates stays far from the ends; this keeps a long chain of
    forecast durations from ever raising OverflowError.
    """
    try:
        return value + dt.timedelta(days=days)
    except OverflowError:
        return dt.date.max if days > 0 else dt.date.min


def to_date(value: object, what: str = "date") -> dt.date:
    """A ``datetime.date`` from a date or an ISO ``YYYY-MM-DD`` string within
    :data:`DATE_RANGE`, else a clear error."""
    if type(value) is str:  # a text already found good: the same date (most steps give one)
        known = _GOOD_DATES.get(value)
        if known is not None:
            return known
    if isinstance(value, dt.datetime):
        raise InvalidInputError(f"{what} must be a date, not a datetime {value!r}; "
                                f"pass value.date().")
    date: dt.date | None = None
    if type(value) is dt.date:
        date = value
    elif isinstance(value, dt.date):
        # a subclass's own date, as a date: its isoformat, comparisons and fields may be
        # its own, and the date decided on must be the date stored
        date = dt.date.fromordinal(dt.date.toordinal(value))
    elif isinstance(value, str):
        try:
            if len(value) == 10:
                date = dt.date.fromisoformat(value)
        except ValueError:
            pass
        if date is None:
            raise InvalidInputError(f"{what} {value[:40]!r} is not a real date in the form "
                                    f"YYYY-MM-DD (e.g. '2021-12-06').")
    else:
        raise InvalidInputError(f"{what} must be a date or 'YYYY-MM-DD', not "
                                f"{type(value).__name__} {value!r}.")
    problem = date_range_problem(date, what)
    if problem:
        raise InvalidInputError(f"{problem}.")
    if type(value) is str:
        if len(_GOOD_DATES) > 10_000:
            _GOOD_DATES.clear()
        _GOOD_DATES[value] = date
    return date


#: Texts :func:`to_date` has accepted, and their dates.
_GOOD_DATES: dict[str, dt.date] = {}


def date_or_today(on: object, what: str = "on") -> dt.date:
    """``on`` as a date (see :func:`to_date`), or today when it is None."""
    return dt.date.today() if on is None else to_date(on, what)
