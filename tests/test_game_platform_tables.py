"""Migration 002: the competitors and stats tables, their constraints and row level security."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

TABLES = "competitors, competitor_game_stats"


@pytest.fixture
async def seeded(conn: asyncpg.Connection) -> asyncpg.Connection:
    cid = await conn.fetchval(
        "INSERT INTO competitors (coach_id, name, platform_player_id) VALUES ($1, 'A', 'p00001') RETURNING id",
        uuid.uuid4(),
    )
    await conn.execute(
        "INSERT INTO competitor_game_stats (competitor_id, games_played, wins, losses, draws, rating,"
        " platform_updated_at, fetched_at) VALUES ($1, 10, 5, 3, 2, 1500, now(), now())",
        cid,
    )
    return conn


@pytest.fixture
async def plain_role(seeded: asyncpg.Connection) -> AsyncIterator[str]:
    role = f"app_user_{uuid.uuid4().hex[:8]}"
    await seeded.execute(f"CREATE ROLE {role} NOLOGIN")
    await seeded.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
    await seeded.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {TABLES} TO {role}")
    yield role
    await seeded.execute("RESET ROLE")
    await seeded.execute(f"REVOKE ALL ON {TABLES} FROM {role}; REVOKE ALL ON SCHEMA public FROM {role}")
    await seeded.execute(f"DROP ROLE {role}")


async def test_a_role_without_rights_reads_and_changes_nothing(seeded: asyncpg.Connection, plain_role: str) -> None:
    await seeded.execute(f"SET ROLE {plain_role}")
    assert await seeded.fetchval("SELECT count(*) FROM competitors") == 0
    assert await seeded.fetchval("SELECT count(*) FROM competitor_game_stats") == 0
    assert await seeded.execute("UPDATE competitor_game_stats SET wins = 0") == "UPDATE 0"
    assert await seeded.execute("DELETE FROM competitors") == "DELETE 0"
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await seeded.execute(
            "INSERT INTO competitors (coach_id, name, platform_player_id) VALUES ($1, 'B', 'p00002')", uuid.uuid4()
        )
    await seeded.execute("RESET ROLE")
    assert await seeded.fetchval("SELECT wins FROM competitor_game_stats") == 5


async def test_service_role_and_an_admin_session_read_and_write(
    seeded: asyncpg.Connection, plain_role: str
) -> None:
    await seeded.execute("SET ROLE service_role")
    assert await seeded.fetchval("SELECT count(*) FROM competitor_game_stats") == 1
    assert await seeded.execute("UPDATE competitor_game_stats SET rating = 1600") == "UPDATE 1"
    await seeded.execute("RESET ROLE")
    await seeded.execute(f"GRANT job_queue_admin TO {plain_role}")
    try:
        await seeded.execute(f"SET ROLE {plain_role}")
        assert await seeded.fetchval("SELECT count(*) FROM competitors") == 1
        await seeded.execute(
            "INSERT INTO competitors (coach_id, name, platform_player_id) VALUES ($1, 'B', 'p00002')", uuid.uuid4()
        )
    finally:
        await seeded.execute("RESET ROLE")
        await seeded.execute(f"REVOKE job_queue_admin FROM {plain_role}")
    assert await seeded.fetchval("SELECT count(*) FROM competitors") == 2


async def test_results_cannot_exceed_games_played(seeded: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await seeded.execute("UPDATE competitor_game_stats SET wins = 9")


async def test_a_player_belongs_to_one_competitor(seeded: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.UniqueViolationError):
        await seeded.execute(
            "INSERT INTO competitors (coach_id, name, platform_player_id) VALUES ($1, 'C', 'p00001')", uuid.uuid4()
        )


async def test_deleting_a_competitor_deletes_its_stats(seeded: asyncpg.Connection) -> None:
    await seeded.execute("DELETE FROM competitors")
    assert await seeded.fetchval("SELECT count(*) FROM competitor_game_stats") == 0
