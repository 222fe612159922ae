"""Support for the hostile-input tests: a fingerprint of every row, JSON strategies
(well-formed values, and JSON text beyond the HTTP port's bounds: nesting, huge or non-finite numbers, Unicode
digits)."""

from __future__ import annotations

from hypothesis import strategies as st

from tests.support.rows import fetch, fetchval

__all__ = [
    "FINGERPRINT", "fingerprint", "hostile_json", "job_states", "json_objects", "json_values", "odd_integers",
    "printable",
]

FINGERPRINT = """
SELECT md5(coalesce((SELECT string_agg(id::text || status || attempts || updated_at::text || coalesce(dedupe_key, ''),
                                       ',' ORDER BY id) FROM job_queue), ''))
    || (SELECT count(*) FROM job_runs)::text || '/' || (SELECT count(*) FROM job_queue_pause)::text
    || '/' || (SELECT count(*) FROM job_queue_archive)::text || '/' || (SELECT count(*) FROM job_queue_schedule)::text
    || '/' || (SELECT count(*) FROM competitors)::text
"""


def fingerprint(url: str) -> str:
    """Every row that matters, summed up: equal before and after means nothing changed."""
    return str(fetchval(url, FINGERPRINT))


def job_states(url: str) -> dict[str, tuple[str, int, str]]:
    """Every job row: id -> (status, attempts, updated_at)."""
    rows = fetch(url, "SELECT id::text, status, attempts, updated_at::text FROM job_queue")
    return {r["id"]: (r["status"], r["attempts"], r["updated_at"]) for r in rows}


printable = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
keys = st.one_of(
    st.sampled_from(["task_type", "payload", "dedupe_key", "limit", "ids", "sleep_s", "fail", "permanent",
                     "dryRun", "coachId", "staleAfterMinutes", "older_than", "status", "reason"]),
    st.text(max_size=12),
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["noop", "cleanup", "game_platform_sync", "NOOP", "no op", "a" * 70, "\x00", "", "1e999"]),
    st.uuids().map(str),
)
json_values = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4)),
    max_leaves=12,
)
json_objects = st.dictionaries(keys, json_values, max_size=5)

# JSON text beyond the HTTP port's bounds (worker/http/inputs.py), written out as text: the json module cannot
# produce most of it. Each fragment is a JSON value to put wherever a body takes one.
_nesting = st.builds(
    lambda depth, kind: kind[0] * depth + kind[1] + kind[2] * depth,
    st.one_of(st.integers(min_value=65, max_value=3000), st.sampled_from([2000, 20_000])),
    st.sampled_from([("[", "", "]"), ('{"a":', "1", "}"), ('[{"k":', "[]", "}]")]),
)
_huge_numbers = st.builds(
    lambda sign, digits, tail: sign + "9" * digits + tail,
    st.sampled_from(["", "-"]), st.integers(min_value=4301, max_value=6000), st.sampled_from(["", ".5", "e5"]),
)
_non_finite = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" * 400 + ".0"])
_lone_surrogates = st.sampled_from(['"\\ud800"', '"x\\udfff"', '{"\\udc00": 1}'])
hostile_json = st.one_of(_nesting, _huge_numbers, _non_finite, _lone_surrogates)

# What a query integer may look like besides plain ASCII digits: str.isdigit() and int() take some of these.
_unicode_digits = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=6)
odd_integers = st.one_of(
    _unicode_digits,
    st.builds(lambda a, b: a + b, st.text("0123456789", min_size=1, max_size=3), _unicode_digits),
    st.integers(min_value=4301, max_value=6000).map(lambda n: "9" * n),
    st.integers(min_value=2**31, max_value=2**80).map(str),
)
