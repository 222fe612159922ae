"""JSON values in and out of the database, bounded: what `job_queue.payload` and `result` may hold, and a decoder
that never raises.

The bounds are the ones the database enforces on insert (migration 009; since 019 `job_queue_inserted`): nesting at most
`MAX_DEPTH` levels, numbers of at most `MAX_NUMBER_DIGITS` digits. Anything within them decodes with both orjson
and the standard library. A value outside them that got into a row anyway (inserted before the rule, with
triggers disabled, or written to `result` by hand) decodes to an `Undecodable` marker instead of raising, so one
such row fails its own job (tests/test_poison_rows.py) and never the claim that fetched it with others, nor a
read path (admin page, CLI, metrics) that shows it.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from worker.errors import InvalidInput

__all__ = [
    "MAX_DEPTH", "MAX_NUMBER_DIGITS", "Undecodable", "dumps_bounded", "json_default", "loads", "undecodable_reason",
]

MAX_DEPTH = 128
MAX_NUMBER_DIGITS = 1000

_LONG_DIGITS = re.compile(r"[0-9]{19}")
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_TOO_MANY_DIGITS = re.compile("[0-9]{" + str(MAX_NUMBER_DIGITS + 1) + "}")
_UNDECODABLE_KEY = "$undecodable"


class Undecodable(dict[str, str]):
    """Stands for a stored JSON value this process cannot decode. A dict, so that every read path that renders
    a payload or result renders this too: `{"$undecodable": "<why>"}`."""

    def __init__(self, reason: str) -> None:
        super().__init__({_UNDECODABLE_KEY: reason})

    @property
    def reason(self) -> str:
        return self[_UNDECODABLE_KEY]


def undecodable_reason(value: Any) -> str | None:
    """Why `value` could not be decoded, or None for an ordinary value."""
    return value.reason if isinstance(value, Undecodable) else None


def loads(text: str) -> Any:
    """json.loads, through orjson wherever the two agree (not for text with a run of 19 or more digits, which
    orjson reads as floats, nor for what orjson refuses); never raises: text neither can decode (nesting past the
    interpreter's recursion limit, an integer of more than 4300 digits) gives an `Undecodable`."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        return Undecodable(f"stored JSON could not be decoded ({type(exc).__name__}: {str(exc)[:200]})")


def _bounds_error(text: str) -> str | None:
    """What puts encoded JSON `text` outside the bounds, or None. Strings are set aside first: digits and brackets
    inside them are text, not numbers or nesting."""
    if len(text) <= 2 * MAX_DEPTH and len(text) <= MAX_NUMBER_DIGITS:
        return None  # too short to break either bound: the common case costs one length test
    bare = _STRINGS.sub('""', text)
    if _TOO_MANY_DIGITS.search(bare):
        return f"a number has more than {MAX_NUMBER_DIGITS} digits"
    depth = deepest = 0
    for char in _NOT_BRACKETS.sub("", bare):
        depth += 1 if char in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_DEPTH:
        return f"nested deeper than {MAX_DEPTH} levels"
    return None


def dumps_bounded(value: Any, *, what: str) -> str:
    """`value` as JSON text (non-ASCII characters as themselves, as the database stores them), or InvalidInput
    naming `what` when it cannot be encoded or is outside the bounds."""
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except RecursionError:
        raise InvalidInput(f"{what} is nested deeper than {MAX_DEPTH} levels") from None
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} is not JSON-serialisable: {str(exc)[:200]}") from None
    error = _bounds_error(text)
    if error is not None:
        raise InvalidInput(f"{what}: {error}")
    return text


def json_default(value: Any) -> Any:
    """The one JSON encoder of what the database returns, for the admin page's API and the CLI's --json output
    (`json.dumps(..., default=json_default)`): datetimes and dates as ISO 8601, UUIDs as strings, numerics as
    floats, sets as lists (tests/unit/test_json_default.py)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset):
        return list(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")
