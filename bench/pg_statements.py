"""Where a throwaway cluster's statement time goes: pg_stat_statements, for benchmarks that diagnose (the soak's
`--statements`). The library is preloaded, which a stock cluster does not do: figures taken with it say so."""

from __future__ import annotations

import re

import asyncpg

__all__ = ["SETTINGS", "enable", "report"]

SETTINGS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "all"}

# Top statements by time inside the server. Nested statements (those of the pick functions) are tracked too,
# so a function's statements appear both on their own and within their caller's time.
_TOP = """
SELECT calls, total_exec_time / 1000 AS total_s, total_exec_time / calls AS ms_per_call, rows / calls AS rows_per_call,
       (shared_blks_hit + shared_blks_read) / calls AS blocks_per_call, query
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND calls > 0
ORDER BY total_exec_time DESC
LIMIT $1"""


async def enable(conn: asyncpg.Connection) -> None:
    """Create the extension in this database (idempotent) and start its counts from zero."""
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    await conn.execute("SELECT pg_stat_statements_reset()")


def _label(query: str) -> str:
    """The statement's first line, whitespace collapsed (the named queries start with their comment)."""
    first = re.sub(r"\s+", " ", query.strip()).lstrip("- ")
    return first[:90].replace("|", "/")


async def report(conn: asyncpg.Connection, limit: int = 15) -> str:
    """A table of this database's top `limit` statements by time since `enable`."""
    rows = await conn.fetch(_TOP, limit)
    lines = ["| calls | total s | ms per call | rows per call | blocks per call | statement |",
             "|---:|---:|---:|---:|---:|---|"]
    lines += [f"| {r['calls']:,} | {r['total_s']:.1f} | {r['ms_per_call']:.2f} | {r['rows_per_call']:,.0f} "
              f"| {r['blocks_per_call']:,.0f} | {_label(r['query'])} |" for r in rows]
    return "\n".join(lines)
