"""Apply the numbered migrations in `sql/migrations/` under an advisory lock.

Each migration runs once, in its own transaction, and is recorded in `worker_migrations` with the checksum of
its statements. Two `worker migrate` at once are safe: the second waits for the lock and then finds nothing left to
do. An applied migration whose statements change is refused (MigrationError: write a new migration instead); its
comments may be reworded, since the checksum covers the SQL tokens only (tests/unit/test_migration_checksums.py,
tests/test_migrate.py).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import asyncpg
from sqlparse import lexer
from sqlparse import tokens as sqltokens

from worker import db
from worker.errors import MigrationError
from worker.sql import migration_files, queries

__all__ = ["RELEASED", "MigrationStatus", "checksum", "latest_version", "migrate", "schema_status", "statements"]

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


CHECKSUM_PREFIX = "sql-tokens:"

RELEASED: dict[int, tuple[str, str]] = {
    1: ("b55c49a6ef08f11426ac21ca1cc427265815f54057af1627a34b40e3d91c21a7",
        "367da0f7857b4d96ff80d9d75299a972f794043fc808fc535dc59b7f2c9850ca"),
    2: ("b8ea2fec07d3079cbf4c1e03fc8fc36d490df29f95cc937714ce8efe2e3254fe",
        "d4297d48f9f9f337631799c076e7976fae8f91d5ec2031427059184be6826100"),
    3: ("c5620d6af9e1eb4bf4f479f1fed77ec20d86e7c6be589a10049dd5eda8a87e36",
        "a68b172fa6ddd7b7059308a8d2c86b8a5900cc3cc5c80314e7d2c42aed1b4445"),
    4: ("a9e1d3cccca5d3cc485b9e827b6b71df41ea96a4d564d590fdaeff682c935d62",
        "2ec2e549f805a092cb37b6a749883c56ecd5e4152826d84138f9fb806120fea8"),
    5: ("70a105ca43dcd08c8536c94176a560a1488cb7cd545d3982b698c6d3a12df6ef",
        "74cf77599a2bc6e920afb3fa0498ba7d3889d135a1176c9c278684f55ebb58a6"),
    6: ("7dabaaf16be61fd111a2997e3c085f6301b17f0560a018d4aa98e5f6db88b458",
        "f40761917fd563d9bc082271be24d8f3e600af006e2ebd5d9197e62a8c954ea6"),
    7: ("d7cc381dd0a7794eea925d0b72a70ca27869dadb1305130edb59647475052eac",
        "56ca93426c2355b80fd68735bfea86c03c197b3ddc833b7bf7ab4d219b829496"),
    8: ("746fb6612ccb0c8bbf2ccaa47b86d9fb4163c34167b01ae02e133e1114e7eb2a",
        "4bf1a7427cfcd6847644363fe952af83ca5a5b8b45c2ba4cb6723dd77912a385"),
    9: ("d65f70ff582d552954e5690eb440048bab594dc8e443d0edd05570b94423ba6a",
        "c38415348cf4a8e4488aeafa3f3aeb37cfcaf3dc586cfdbdc965ca1ada35bb55"),
    10: ("40093e6bb0e6d7a8539b31e47606535c1f1e69b3e524a73e8db9dc31ac37a8ae",
         "4072797293b087e0bd219b7b712ccf7ba6091e983fbc2aff4659d96c4bb80e20"),
    11: ("bcef944ccc90050c2d8eb6abb86ca89eb70c73af4b23f63b5315f85cef88e201",
         "fb5ade6de1da44d04d0f28548bf4308d6b6cbfe4ad1631d610eb73c1d9c5d29d"),
    12: ("693f09f8e97f4ce42b17f19391ef3803a7a02f9be3c403e5d92302bbfdf429b3",
         "3f3f64090f83d4ce57b504c560a3da7b4d0857d87311a452955b2b6aed83d245"),
}
"""Version -> (sha256 of the file's raw text, sha256 of its statements) for each migration released while the
checksum covered the raw text (what databases migrated then hold). Such a database's record is accepted while
the file's statements are still those it had: rewording a released migration's comments breaks no database
(tests/test_migrate.py), changing a statement does."""


def statements(sql: str) -> str:
    """The migration's SQL tokens with every comment and whitespace run as one space: what PostgreSQL executes.
    The lexer (sqlparse's) keeps `--` and `/*` inside string literals, quoted identifiers and dollar-quoted bodies
    (function bodies' comments are part of what the database stores, so they count)."""
    out: list[str] = []
    gap = False
    for ttype, value in lexer.tokenize(sql):  # type: ignore[no-untyped-call]
        if ttype in sqltokens.Comment or ttype in sqltokens.Whitespace:
            gap = True
            continue
        if gap and out:
            out.append(" ")
        gap = False
        out.append(value)
    return "".join(out)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def checksum(sql: str) -> str:
    """What `worker_migrations.checksum` records: the sha256 of the migration's statements (`statements`)."""
    return CHECKSUM_PREFIX + _sha256(statements(sql))


def _matches(version: int, recorded: str, current: str) -> bool:
    """Whether the file whose checksum is now `current` has the statements of the one applied as `recorded`."""
    if recorded == current:
        return True
    raw, tokens = RELEASED.get(version, ("", ""))
    return recorded == raw and current == CHECKSUM_PREFIX + tokens


async def migrate(conn: asyncpg.Connection) -> list[int]:
    """Apply what is missing; return the versions applied now (empty when already current)."""
    applied_now: list[int] = []
    with db.translate():
        await conn.execute(_Q["lock"], LOCK_KEY)
        try:
            await conn.execute(_Q["create_migrations_table"])
            done = {r["version"]: r["checksum"] for r in await conn.fetch(_Q["applied"])}
            for version, name, sql in migration_files():
                current = checksum(sql)
                if version in done:
                    if not _matches(version, done[version], current):
                        raise MigrationError(
                            f"migration {version:03d}_{name} was changed after it was applied "
                            "(write a new migration instead)"
                        )
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(_Q["record"], version, name, current)
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
