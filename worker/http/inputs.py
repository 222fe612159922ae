"""Parsing at the HTTP edge: every request body and query integer the port accepts is read here, within bounds.

Invariants (guarded by tests/test_http_bounds.py and the property tests in tests/test_hostile_http.py):
* a body is at most MAX_BODY_BYTES (the queue's payload cap) and arrives within BODY_TIMEOUT_S, else 413 / 408
  (a client gone mid-body is a 400 nobody reads, not an internal error);
* JSON is UTF-8 text nested at most MAX_JSON_DEPTH levels (422), whose integers have at most MAX_INT_DIGITS digits
  and whose other numbers are finite doubles (422); NaN / Infinity and lone UTF-16 surrogates are not JSON (400);
* a query integer is ASCII digits only (str.isdigit() and int() also take '²' or '٣'), within its range (422).
Every refusal is an HttpProblem, which each route answers with its usual `{"error": ...}` body: never a 500.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any, overload

import anyio
from starlette.requests import ClientDisconnect, Request

from worker.queue import MAX_PAYLOAD_BYTES

__all__ = [
    "BODY_TIMEOUT_S",
    "MAX_BODY_BYTES",
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "HttpProblem",
    "parse_json",
    "query_int",
    "read_body",
    "read_json_object",
]

MAX_BODY_BYTES = MAX_PAYLOAD_BYTES
MAX_JSON_DEPTH = 64
MAX_INT_DIGITS = 4300  # CPython's default int/str conversion limit: a longer integer could not be read back
BODY_TIMEOUT_S = 10.0

# A JSON string (an unterminated one runs to the end: the match never backtracks, so the scan stays linear).
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_ASCII_DIGITS = re.compile(r"[0-9]+")


class HttpProblem(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class _OutOfBounds(Exception):
    """A JSON number the port does not accept (raised from the decoder's hooks)."""


class _NotJson(Exception):
    """NaN / Infinity, which Python's decoder reads but JSON does not have."""


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _too_large() -> HttpProblem:
    return HttpProblem(413, f"request body is over the {MAX_BODY_BYTES} byte limit")


async def read_body(request: Request) -> bytes:
    """The raw body: at most MAX_BODY_BYTES (413), all of it within BODY_TIMEOUT_S (408)."""
    declared = request.headers.get("content-length")
    if declared is not None and _ASCII_DIGITS.fullmatch(declared) and (
        len(declared.lstrip("0")) > len(str(MAX_BODY_BYTES)) or int(declared) > MAX_BODY_BYTES
    ):
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    with anyio.move_on_after(BODY_TIMEOUT_S) as scope:
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _too_large()
                chunks.append(chunk)
        except ClientDisconnect:  # nobody is left to answer; a 4xx keeps it out of the internal-error log
            raise HttpProblem(400, "the client disconnected before sending the whole body") from None
    if scope.cancelled_caught:
        raise HttpProblem(408, f"the request body did not arrive within {BODY_TIMEOUT_S:g}s")
    return b"".join(chunks)


def json_depth(text: str) -> int:
    """How deep the arrays and objects of this JSON text nest (brackets inside strings do not count): found with
    a linear scan and no recursion, so that text nested too deep is refused before the decoder recurses into it."""
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _int(text: str) -> int:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        raise _OutOfBounds(f"an integer has more than {MAX_INT_DIGITS} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _OutOfBounds(f"the number {_shown(text, 20)} is beyond the range of a double")
    return value


def _constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON value")


def parse_json(raw: bytes) -> Any:
    """Decode a body (already within MAX_BODY_BYTES) as bounded JSON; every refusal is an HttpProblem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HttpProblem(400, "malformed JSON: the body is not UTF-8") from None
    depth = json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise HttpProblem(422, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except json.JSONDecodeError as exc:
        raise HttpProblem(400, f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except _NotJson as exc:
        raise HttpProblem(400, f"malformed JSON: {exc}") from None
    except _OutOfBounds as exc:
        raise HttpProblem(422, f"number out of bounds: {exc}") from None
    except ValueError as exc:  # int()'s own digit limit, should the interpreter's be set lower than ours
        raise HttpProblem(422, f"number out of bounds: {exc}") from None
    except RecursionError:  # unreachable while MAX_JSON_DEPTH is far below the recursion limit
        raise HttpProblem(422, f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    try:
        # The decoder pairs surrogate escapes into one character; one left over cannot be stored or sent on.
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise HttpProblem(400, "malformed JSON: a string holds a lone UTF-16 surrogate (\\ud800-\\udfff)") from None
    return value


async def read_json_object(request: Request) -> dict[str, Any] | None:
    """The body as a bounded JSON object; None when the body is empty."""
    raw = await read_body(request)
    if not raw.strip():
        return None
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise HttpProblem(422, "the body must be a JSON object")
    return value


@overload
def query_int(raw: str | None, *, name: str, minimum: int, maximum: int, default: int) -> int: ...
@overload
def query_int(raw: str | None, *, name: str, minimum: int, maximum: int, default: None = None) -> int | None: ...
def query_int(raw: str | None, *, name: str, minimum: int, maximum: int, default: int | None = None) -> int | None:
    """A query parameter as an integer from `minimum` to `maximum` written in ASCII digits (422 otherwise);
    `default` when it is absent or empty."""
    if raw is None or raw == "":
        return default
    digits = len(str(maximum))
    if not _ASCII_DIGITS.fullmatch(raw) or len(raw.lstrip("0")) > digits or not minimum <= int(raw) <= maximum:
        what = (f"a positive integer (at most {maximum})" if minimum == 1 and maximum >= 2**31 - 1
                else f"an integer from {minimum} to {maximum}")
        raise HttpProblem(422, f"{name} must be {what} in ASCII digits, not {_shown(raw)}")
    return int(raw)
