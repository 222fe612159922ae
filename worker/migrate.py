"""Apply the numbered migrations in `sql/migrations/` under an advisory lock.

Each migration runs once, in its own transaction, and is recorded in `worker_migrations`. Two `worker migrate`
at once are safe: the second waits for the lock and then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg

from worker import db
from worker.errors import MigrationError
from worker.sql import migration_files, queries

__all__ = ["MigrationStatus", "latest_version", "migrate", "schema_status"]

# pg_advisory_lock key: a stable 64-bit number derived from the package name.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"worker.migrate").digest()[:8], "big", signed=True)
_Q = queries("migrate")


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    current: int
    latest: int
    applied: tuple[int, ...]

    @property
    def up_to_date(self) -> bool:
        return self.current >= self.latest


def latest_version() -> int:
    files = migration_files()
    return files[-1][0] if files else 0


def _checksum(sql: str) -> str:
    return hashlib.sha256(sql.encode()).hexdigest()


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply what is missing; return the versions applied now (empty when already current)."""
    applied_now: list[int] = []
    with db.translate():
        await conn.execute(_Q["lock"], LOCK_KEY)
        try:
            await conn.execute(_Q["create_migrations_table"])
            done = {r["version"]: r["checksum"] for r in await conn.fetch(_Q["applied"])}
            for version, name, sql in migration_files():
                checksum = _checksum(sql)
                if version in done:
                    if done[version] != checksum:
                        raise MigrationError(
                            f"migration {version:03d}_{name} was changed after it was applied "
                            "(write a new migration instead)"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(_Q["record"], version, name, checksum)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"migration {version:03d}_{name} failed: {exc}") from exc
                applied_now.append(version)
        finally:
            await conn.execute(_Q["unlock"], LOCK_KEY)
    return applied_now


async def schema_status(conn: asyncpg.Connection) -> MigrationStatus:
    with db.translate():
        exists = await conn.fetchval(_Q["table_exists"])
        applied: tuple[int, ...] = ()
        if exists:
            applied = tuple(r["version"] for r in await conn.fetch(_Q["applied"]))
    return MigrationStatus(current=max(applied, default=0), latest=latest_version(), applied=applied)
