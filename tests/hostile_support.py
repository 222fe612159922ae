"""Support for the hostile-input tests: a module-scoped database, a fingerprint of every row, JSON strategies."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from hypothesis import strategies as st

from tests.conftest import _admin, db_url

__all__ = ["fingerprint", "json_objects", "json_values", "module_database", "printable"]

FINGERPRINT = """
SELECT md5(coalesce((SELECT string_agg(id::text || status || attempts || updated_at::text || coalesce(dedupe_key, ''),
                                       ',' ORDER BY id) FROM job_queue), ''))
    || (SELECT count(*) FROM job_runs)::text || '/' || (SELECT count(*) FROM job_queue_pause)::text
    || '/' || (SELECT count(*) FROM job_queue_archive)::text || '/' || (SELECT count(*) FROM job_queue_schedule)::text
    || '/' || (SELECT count(*) FROM competitors)::text
"""


@pytest.fixture(scope="module")
def module_database(template_db: str) -> Iterator[str]:
    """A fresh migrated database shared by one test module (for a daemon shared by its tests)."""
    name = f"worker_m_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield db_url(name)
    asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def fingerprint(url: str) -> str:
    """Every row that matters, summed up: equal before and after means nothing changed."""

    async def read() -> str:
        conn = await asyncpg.connect(url)
        try:
            return str(await conn.fetchval(FINGERPRINT))
        finally:
            await conn.close()

    return asyncio.run(read())


def execute(url: str, sql: str, *args: Any) -> Any:
    async def run() -> Any:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


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
