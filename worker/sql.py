"""Named SQL, loaded once from the `.sql` files that ship with the package.

A query file holds blocks that start with a comment line ``-- name: some_query``; everything up to the next
such line is that query. Queries are plain text with ``$n`` parameters: nothing is ever built from strings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

__all__ = ["migration_files", "queries", "sql_root"]

_NAME = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)
_MIGRATION = re.compile(r"^(\d{3,})_([a-z0-9_]+)\.sql$")


@cache
def sql_root() -> Path:
    """`worker/_sql` inside a built wheel; the repository's `sql/` in a source checkout."""
    packaged = resources.files("worker") / "_sql"
    if packaged.is_dir():
        return Path(str(packaged))
    source = Path(__file__).resolve().parent.parent / "sql"
    if source.is_dir():
        return source
    raise FileNotFoundError("the package's SQL files are missing (neither worker/_sql nor ../sql exists)")


@cache
def queries(group: str) -> Mapping[str, str]:
    """The named queries of `sql/queries/<group>.sql`."""
    text = (sql_root() / "queries" / f"{group}.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    named: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in named:
            raise ValueError(f"query {name!r} is defined twice in {group}.sql")
        named[name] = body.strip().rstrip(";").strip()
    return MappingProxyType(named)


@cache
def migration_files() -> tuple[tuple[int, str, str], ...]:
    """(version, name, sql) for each migration, ordered by version."""
    found = []
    for path in (sql_root() / "migrations").iterdir():
        match = _MIGRATION.match(path.name)
        if match:
            found.append((int(match.group(1)), match.group(2), path.read_text(encoding="utf-8")))
    found.sort()
    versions = [v for v, _, _ in found]
    if len(set(versions)) != len(versions):
        raise ValueError("two migrations share a version number")
    return tuple(found)
