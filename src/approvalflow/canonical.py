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
from typing import Any

from .errors import InvalidInputError

__all__ = ["canonical_json", "check_data", "sha256_hex", "check_text", "to_date", "date_or_today"]

_MAX_DEPTH = 64


def check_text(value: object, what: str, *, max_length: int | None = None) -> str:
    """Return ``value`` if it is a string that can be stored as UTF-8, else raise."""
    if not isinstance(value, str):
        raise InvalidInputError(f"{what} must be a string, not {type(value).__name__} {value!r}.")
    try:
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


def _check(value: Any, path: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise InvalidInputError(f"data is nested deeper than {_MAX_DEPTH} levels at {path}.")
    if value is None or isinstance(value, bool | int):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInputError(
                f"data{path} is {value!r}; JSON has no NaN or Infinity: use null or a string."
            )
        return
    if isinstance(value, str):
        check_text(value, f"data{path}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check(item, f"{path}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(f"data{path} has the key {key!r}; keys must be strings.")
            check_text(key, f"a key in data{path}")
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    raise InvalidInputError(
        f"data{path} is a {type(value).__name__} ({value!r}); only JSON values are allowed:"
        " null, true/false, numbers, strings, lists and objects (write dates as 'YYYY-MM-DD')."
    )


def check_data(data: object) -> dict[str, Any]:
    """Return ``data`` (None becomes {}) if it is a JSON object that can be stored exactly."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InvalidInputError(
            f"data must be a JSON object (a dict), not {type(data).__name__} {data!r}."
        )
    _check(data, "", 0)
    return data


def canonical_json(value: Any) -> str:
    """The canonical text of a JSON value: sorted keys, compact, UTF-8, no NaN."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def sha256_hex(text: str) -> str:
    """SHA-256 of the UTF-8 bytes of ``text``, as 64 hex digits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def to_date(value: object, what: str = "date") -> dt.date:
    """A ``datetime.date`` from a date or an ISO ``YYYY-MM-DD`` string, else a clear error."""
    if isinstance(value, dt.datetime):
        raise InvalidInputError(f"{what} must be a date, not a datetime {value!r}; "
                                f"pass value.date().")
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return dt.date.fromisoformat(value)
        except ValueError:
            pass
        raise InvalidInputError(f"{what} {value[:40]!r} is not a real date in the form "
                                f"YYYY-MM-DD (e.g. '2021-12-06').")
    raise InvalidInputError(f"{what} must be a date or 'YYYY-MM-DD', not "
                            f"{type(value).__name__} {value!r}.")


def date_or_today(on: object, what: str = "on") -> dt.date:
    """``on`` as a date (see :func:`to_date`), or today when it is None."""
    return dt.date.today() if on is None else to_date(on, what)
