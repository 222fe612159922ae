"""The job statuses live in one place, worker/statuses.py: the database's CHECK allows exactly those, and the
admin page's JavaScript reads them from the page instead of keeping a list of its own."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

import worker.http.admin
from worker.statuses import ACTIVE, FINISHED, STATUSES

ADMIN_JS = Path(worker.http.admin.__file__).parent / "static" / "admin.js"


async def test_the_database_check_allows_exactly_the_job_statuses_of_the_code(conn: asyncpg.Connection) -> None:
    definitions = await conn.fetchval(
        "SELECT array_agg(pg_get_constraintdef(c.oid)) FROM pg_constraint AS c"
        " WHERE c.conrelid = 'job_queue'::regclass AND c.contype = 'c'"
    )
    (allowed,) = [d for d in definitions if re.match(r"CHECK \(\(\(?status\)?(::text)? = ANY", d)]
    assert set(re.findall(r"'([a-z_]+)'::text", allowed)) == set(STATUSES)
    assert set(ACTIVE) | set(FINISHED) == set(STATUSES) and not set(ACTIVE) & set(FINISHED)


def test_the_admin_javascript_keeps_no_list_of_statuses_of_its_own() -> None:
    source = ADMIN_JS.read_text()
    for status in STATUSES:
        assert f'"{status}"' not in source, f"admin.js names the status {status!r}: take it from data-statuses"
    assert "dataset.statuses" in source
