"""Hostile job input (hypothesis): payloads of every task type through registry.validate, and every field of a new
job through queue.enqueue against the real database. Each input is either accepted or refused with a clear
WorkerError (never another exception, never a database error: the Python checks and the table's constraints
agree), and a refused input changes no row. The limits hold in the database itself: SQL inserts (from pg_cron or
the app) cannot bypass the task type rule, the payload cap and shape, or the dedupe key length."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.hostile import fingerprint, json_objects, json_values
from worker import db, queue
from worker.builtin import default_registry
from worker.db import json_loads
from worker.errors import InvalidInput, WorkerError
from worker.jsonvalues import Undecodable

HYPO = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REGISTRY = default_registry()


@settings(max_examples=150, deadline=None)
@given(task_type=st.sampled_from(REGISTRY.names()), payload=st.one_of(json_objects, json_values))
def test_every_task_type_accepts_or_refuses_any_payload_with_a_clear_error(task_type: str, payload: Any) -> None:
    try:
        REGISTRY.validate(task_type, payload)
    except WorkerError as exc:
        assert str(exc).startswith(("invalid payload", "payload")), str(exc)


def _enqueue(url: str, job: queue.NewJob) -> queue.Enqueued:
    async def run() -> queue.Enqueued:
        conn = await asyncpg.connect(url)
        try:
            from worker.db import _init_connection

            await _init_connection(conn)
            return await queue.enqueue(conn, job)
        finally:
            await conn.close()

    return asyncio.run(run())


def _nested(depth: int) -> dict[str, Any]:
    value: Any = []
    for _ in range(depth):
        value = [value]
    return {"n": value}


# Values no reader could decode, or only just: deep nesting (json.dumps and json.loads recurse) and long integers
# (int() refuses more than 4,300 digits).
poison_payloads = st.one_of(
    st.sampled_from([129, 150, 1500, 3000]).map(_nested),
    st.sampled_from([1001, 4299, 4400]).map(
        lambda digits: {"n": [int("9" * min(digits, 4300))] * (digits // 4300 + 1)}
    ),
)

new_jobs = st.builds(
    queue.NewJob,
    task_type=st.one_of(st.sampled_from(["noop", "a", "a.b:c-d_e", "x" * 64, "x" * 65, "Noop", "1abc", "abc-"]),
                        st.text(max_size=70)),
    payload=st.one_of(json_objects, st.just({"s": "\x00"}), st.just({"n": [1e300] * 4000}),
                      st.just({"big": "é" * 20000}), st.just({"big": "x" * 65530}), poison_payloads),
    priority=st.integers(min_value=-2000, max_value=2000),
    max_attempts=st.integers(min_value=-5, max_value=1500),
    dedupe_key=st.one_of(st.none(), st.text(max_size=300), st.just("k" * 256)),
    run_at=st.one_of(st.none(), st.datetimes(timezones=st.just(UTC)), st.datetimes()),
)


@HYPO
@given(job=new_jobs)
def test_enqueue_accepts_a_job_or_refuses_it_with_invalid_input_and_no_row(module_database: str, job: Any) -> None:
    before = fingerprint(module_database)
    try:
        enqueued = _enqueue(module_database, job)
    except InvalidInput as exc:
        assert "\n" not in str(exc) or "\n" in repr(job), str(exc)
        assert fingerprint(module_database) == before
        return
    assert enqueued.id is not None


@HYPO
@given(payload=poison_payloads)
def test_enqueue_refuses_a_payload_past_the_json_bounds_with_invalid_input_and_no_row(
    module_database: str, payload: dict[str, Any]
) -> None:
    before = fingerprint(module_database)
    with pytest.raises(InvalidInput, match=r"^payload"):
        _enqueue(module_database, queue.NewJob("noop", payload))
    assert fingerprint(module_database) == before


@pytest.mark.parametrize(
    ("column", "value", "constraint"),
    [
        ("task_type", "Bad Type", "job_queue_task_type_check"),
        ("task_type", "x" * 65, "job_queue_task_type_check"),
        ("task_type", "ends-", "job_queue_task_type_check"),
        ("payload", [1, 2], "job_queue_payload_object_check"),
        ("payload", "a string", "job_queue_payload_object_check"),
        ("payload", {"big": "x" * 65536}, "job_queue_payload_size_check"),
        ("payload", {"n": 10**1200}, "job_queue_payload_number_check"),
        ("payload", _nested(200), "job_queue_payload_depth_check"),
        ("dedupe_key", "k" * 256, "job_queue_dedupe_key_check"),
        ("dedupe_key", "", "job_queue_dedupe_key_check"),
        ("max_attempts", 0, "job_queue_max_attempts_check"),
        ("priority", 5000, "job_queue_priority_check"),
    ],
)
async def test_sql_inserts_cannot_bypass_the_enqueue_limits(
    conn: asyncpg.Connection, column: str, value: Any, constraint: str
) -> None:
    row: dict[str, Any] = {"task_type": "noop", "payload": {}, "dedupe_key": None, "max_attempts": 5, "priority": 0}
    row[column] = value
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(
            "INSERT INTO job_queue (task_type, payload, dedupe_key, max_attempts, priority) "
            "VALUES ($1, $2::text::jsonb, $3, $4, $5)",
            row["task_type"], json.dumps(row["payload"]), row["dedupe_key"], row["max_attempts"], row["priority"],
        )
    assert caught.value.constraint_name == constraint
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0
    # and an UPDATE cannot smuggle the value in afterwards either
    job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
    with pytest.raises(asyncpg.CheckViolationError):
        await conn.execute(
            "UPDATE job_queue SET task_type = $2, payload = $3::text::jsonb, dedupe_key = $4, max_attempts = $5, "
            "priority = $6 WHERE id = $1",
            job_id, row["task_type"], json.dumps(row["payload"]), row["dedupe_key"], row["max_attempts"],
            row["priority"],
        )


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(task_type=st.text(max_size=70))
def test_the_database_and_python_agree_on_task_type_names(module_database: str, task_type: str) -> None:
    try:
        queue.validate_task_type(task_type)
        python_ok = True
    except InvalidInput:
        python_ok = False

    async def db_ok() -> bool:
        conn = await asyncpg.connect(module_database)
        try:
            async with conn.transaction():
                try:
                    await conn.execute("INSERT INTO job_queue (task_type) VALUES ($1)", task_type)
                except (asyncpg.CheckViolationError, asyncpg.CharacterNotInRepertoireError,
                        asyncpg.UntranslatableCharacterError):
                    return False
                raise _Rollback
        except _Rollback:
            return True
        finally:
            await conn.close()

    assert asyncio.run(db_ok()) == python_ok


class _Rollback(Exception):
    pass


def test_run_at_without_a_time_zone_is_refused() -> None:
    with pytest.raises(InvalidInput):
        queue.NewJob("noop", {}, run_at=datetime(2030, 1, 1)).checked()


raw_numbers = st.one_of(
    st.integers(min_value=-(10**40), max_value=10**40).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps),
    st.sampled_from(["1e400", "-1e400", "123456789012345678901234567890.5", "18446744073709551616", "-0", "1E+2"]),
)


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(json_values.map(json.dumps), st.lists(raw_numbers, max_size=4).map(",".join).map("[{}]".format)))
def test_payloads_decode_exactly_as_the_json_module_reads_them(text: str) -> None:
    """The fast decoder (orjson) stands in for json.loads only where both read the same values and types."""
    expected = json.loads(text)
    got = json_loads(text)
    assert got == expected and repr(got) == repr(expected), text


async def test_a_claimed_payload_keeps_integers_beyond_64_bits_and_huge_numbers(conn: asyncpg.Connection) -> None:
    payload = {"id": 12345678901234567890123, "neg": -9223372036854775809, "huge": 1e300, "n": 1.5, "s": "é"}
    await queue.enqueue(conn, queue.NewJob("noop", payload))
    [job] = await queue.claim(conn, worker_id="w", task_types=["noop"], limit=1, lease_s=30)
    stored = await conn.fetchval("SELECT payload::text FROM job_queue WHERE id = $1", job.id)
    assert job.payload == json.loads(stored)  # PostgreSQL prints 1e300 as its 301 digits: an integer to json too
    assert job.payload["id"] == 12345678901234567890123 and job.payload["neg"] == -9223372036854775809
    assert type(job.payload["id"]) is int and type(job.payload["neg"]) is int and job.payload["n"] == 1.5


stored_texts = st.one_of(
    st.integers(min_value=1, max_value=3000).map(lambda d: '{"n": ' + "[" * d + "]" * d + "}"),
    st.integers(min_value=1, max_value=6000).map(lambda d: '{"n": ' + "9" * d + "}"),
    json_objects.map(json.dumps),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=stored_texts)
def test_any_json_a_row_holds_reads_back_without_raising(module_database: str, text: str) -> None:
    """Whatever a row holds (written with the input check off, as rows older than it), every connection's decoder
    returns a value: the JSON itself, or an Undecodable marker for what no reader can decode."""

    async def read_back() -> Any:
        conn = await db.connect(module_database)
        try:
            async with conn.transaction():
                await conn.execute("SET LOCAL session_replication_role = replica")
                job_id = await conn.fetchval(
                    "INSERT INTO job_queue (task_type, payload, result) VALUES ('noop', $1::text::jsonb, "
                    "$1::text::jsonb) RETURNING id", text,
                )
                row = await conn.fetchrow(
                    "SELECT payload, result, payload::text AS stored FROM job_queue WHERE id = $1", job_id
                )
                raise _Rollback(row)
        except _Rollback as rolled_back:
            return rolled_back.args[0]
        finally:
            await conn.close()

    try:
        row = asyncio.run(read_back())
    except asyncpg.UntranslatableCharacterError:  # a NUL character: jsonb cannot hold it at all
        assume(False)
    for value in (row["payload"], row["result"]):
        if not isinstance(value, Undecodable):
            assert value == json.loads(row["stored"])  # the database's own text form (it prints 1e16 in full)
