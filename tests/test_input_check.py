"""job_queue's input rules (task type form, JSON object payload, 64 KiB, 009's number and depth bounds): checked
once per INSERT statement over its new rows (migrations 013, 019) and per row on UPDATE of task_type or payload,
failing exactly as the CHECK constraints they stand for; the same statement trigger sends the insert's wake-ups.
tests/test_hostile_payloads.py and tests/test_poison_rows.py cover each rule one row at a time."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from worker import queue

_BATCH = "INSERT INTO job_queue (task_type, payload) SELECT t, p::jsonb FROM unnest($1::text[], $2::text[]) AS u (t, p)"

_TASK_TYPE_DETAIL = "task_type: 1-64 of a-z 0-9 _ . : -, starting with a letter, ending with a letter or digit"
# (task type, payload text) -> the error every path raises: constraint, column, detail.
CASES = [
    ("Bad", "{}", "job_queue_task_type_check", "task_type", _TASK_TYPE_DETAIL),
    ("noop", "[1]", "job_queue_payload_object_check", "payload", "payload must be a JSON object"),
    ("noop", '{"s": "' + "x" * 65536 + '"}', "job_queue_payload_size_check", "payload",
     "payload is limited to 65536 bytes"),
    ("noop", '{"n": ' + "9" * 1001 + "}", "job_queue_payload_number_check", "payload",
     "payload numbers are limited to 1000 digits"),
    ("noop", '{"n": ' + "[" * 128 + "]" * 128 + "}", "job_queue_payload_depth_check", "payload",
     "payload nesting is limited to 128 levels"),
]
IDS = ["task-type", "object", "size", "number", "depth"]


def _assert_is(err: asyncpg.PostgresError, constraint: str, column: str, detail: str) -> None:
    assert err.sqlstate == "23514"
    assert err.constraint_name == constraint
    assert err.table_name == "job_queue"
    assert err.column_name == column
    assert err.detail == detail
    assert err.args[0] == f'new row for relation "job_queue" violates check constraint "{constraint}"'


@pytest.mark.parametrize(("task_type", "payload", "constraint", "column", "detail"), CASES, ids=IDS)
async def test_a_batch_insert_with_one_bad_row_fails_whole_with_that_rules_error(
    conn: asyncpg.Connection, task_type: str, payload: str, constraint: str, column: str, detail: str
) -> None:
    types = ["noop"] * 500 + [task_type] + ["noop"] * 499
    payloads = ["{}"] * 500 + [payload] + ["{}"] * 499
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(_BATCH, types, payloads)
    _assert_is(caught.value, constraint, column, detail)
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


@pytest.mark.parametrize(("task_type", "payload", "constraint", "column", "detail"), CASES, ids=IDS)
async def test_an_update_to_a_bad_task_type_or_payload_fails_with_the_same_error(
    conn: asyncpg.Connection, task_type: str, payload: str, constraint: str, column: str, detail: str
) -> None:
    job_id = await conn.fetchval("INSERT INTO job_queue (task_type) VALUES ('noop') RETURNING id")
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute("UPDATE job_queue SET task_type = $2, payload = $3::text::jsonb WHERE id = $1",
                           job_id, task_type, payload)
    _assert_is(caught.value, constraint, column, detail)
    assert await conn.fetchval("SELECT (task_type, payload::text) = ('noop', '{}') FROM job_queue") is True


async def test_the_first_bad_row_in_insertion_order_decides_the_error(conn: asyncpg.Connection) -> None:
    bad_type, bad_payload = ("Bad", "{}"), ("noop", "[]")
    for rows, constraint in [
        ([("noop", "{}"), bad_type, bad_payload], "job_queue_task_type_check"),
        ([("noop", "{}"), bad_payload, bad_type], "job_queue_payload_object_check"),
        ([("Bad", "[]")], "job_queue_task_type_check"),  # one row breaking two rules: the task type is checked first
    ]:
        with pytest.raises(asyncpg.CheckViolationError) as caught:
            await conn.execute(_BATCH, [t for t, _ in rows], [p for _, p in rows])
        assert caught.value.constraint_name == constraint
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 0


async def test_a_batch_at_the_bounds_is_accepted_with_digits_and_brackets_inside_strings(
    conn: asyncpg.Connection,
) -> None:
    at_bounds = [
        "{}",
        '{"n": ' + "[" * 127 + "]" * 127 + "}",
        '{"n": ' + "9" * 1000 + "}",
        '{"s": "' + "9" * 5000 + "[" * 3000 + '"}',
        '{"s": "' + "x" * 65500 + '"}',
    ]
    await conn.execute(_BATCH, ["a", "noop.x:y-1", "b2", "c", "d"], at_bounds)
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == len(at_bounds)


async def test_a_batch_insert_runs_the_input_check_once_not_once_per_row(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL track_functions = 'pl'")
        await queue.enqueue_many(conn, [queue.NewJob("noop", {"i": i}) for i in range(1000)])
        calls = dict(await conn.fetch(
            "SELECT funcname, calls FROM pg_stat_xact_user_functions "
            "WHERE funcname IN ('job_queue_inserted', 'job_queue_check_input')"))
    assert calls == {"job_queue_inserted": 1}
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1000


async def test_multibyte_payloads_over_256_bytes_are_accepted_within_the_bounds_and_refused_past_them(
    conn: asyncpg.Connection,
) -> None:
    """019 runs the size and bounds rules only for a payload whose text is over 256 bytes: with multi-byte
    characters that can be 256 characters or fewer (accepted, as before), or more and past a bound (refused)."""
    deep = "[" * 60 + "]" * 60  # 120 characters: well within the 128 levels, so only the length decides
    short_wide = '{"s": "' + "é" * 100 + '", "d": ' + deep + "}"  # 235 characters, 335 bytes
    assert len(short_wide) <= 256 < len(short_wide.encode())
    await conn.execute(_BATCH, ["noop"], [short_wide])
    too_deep = '{"s": "' + "é" * 100 + '", "d": ' + "[" * 129 + "]" * 129 + "}"
    with pytest.raises(asyncpg.CheckViolationError) as caught:
        await conn.execute(_BATCH, ["noop", "noop"], ["{}", too_deep])
    assert caught.value.constraint_name == "job_queue_payload_depth_check"
    assert await conn.fetchval("SELECT count(*) FROM job_queue") == 1


async def _heard_during(
    database_url: str, conn: asyncpg.Connection, statement: str, *args: object,
) -> tuple[list[str], asyncpg.PostgresError | None]:
    """The notifications on job_queue while `statement` ran, and the error it failed with (None if it did not)."""
    heard: list[str] = []
    failed = None
    listener = await asyncpg.connect(database_url)
    try:
        await listener.add_listener("job_queue", lambda *a: heard.append(a[3]))
        try:
            await conn.execute(statement, *args)
        except asyncpg.PostgresError as exc:
            failed = exc
        await listener.execute("SELECT 1")  # a round trip: a notification sent has arrived by now
        await asyncio.sleep(0.05)
    finally:
        await listener.close()
    return heard, failed


async def test_a_batch_insert_notifies_each_due_pending_task_type_once(
    conn: asyncpg.Connection, database_url: str,
) -> None:
    insert = ("INSERT INTO job_queue (task_type, run_at, status) SELECT t, now() + d * interval '1 hour', s "
              "FROM unnest($1::text[], $2::int[], $3::text[]) AS u (t, d, s)")
    heard, failed = await _heard_during(
        database_url, conn, insert,
        ["a", "b", "a", "later", "done", "b"], [0, -1, 0, 1, 0, 0],
        ["pending", "pending", "pending", "pending", "cancelled", "pending"])
    assert failed is None
    assert sorted(heard) == ["a", "b"]


async def test_a_failing_batch_wakes_no_one_and_the_next_good_batch_wakes_its_types(
    conn: asyncpg.Connection, database_url: str,
) -> None:
    """Nothing is heard of a failing batch (its transaction's notifications are dropped with it, whatever the
    trigger sent first); the next batch, on the same connection, is heard."""
    heard, failed = await _heard_during(database_url, conn, _BATCH, ["noop", "Bad"], ["{}", "{}"])
    assert isinstance(failed, asyncpg.CheckViolationError)
    assert heard == []
    heard, failed = await _heard_during(database_url, conn, _BATCH, ["noop", "other"], ["{}", "{}"])
    assert failed is None
    assert sorted(heard) == ["noop", "other"]
