"""A migration's checksum covers its statements, not its comments (worker/migrate.py): comments may be reworded,
a changed token is caught, and `--` or `/*` inside a literal, a quoted identifier or a dollar-quoted body is part
of the statement. tests/test_migrate.py checks the same against a database."""

from __future__ import annotations

import pytest

from worker.migrate import CHECKSUM_PREFIX, RELEASED, _matches, checksum, statements
from worker.sql import migration_files

BASE = """-- 099: a header
CREATE TABLE t (a int);  -- trailing
/* a block
   comment */
CREATE FUNCTION f() RETURNS text LANGUAGE plpgsql AS $fn$
BEGIN
    -- a comment the database stores with the function
    RETURN 'x -- y' || E'it\\'s /* z */' || "q--w";
END $fn$;
SELECT $$ -- kept $$;
"""


def test_rewording_removing_or_adding_comments_and_whitespace_keeps_the_checksum() -> None:
    reworded = (BASE.replace("-- 099: a header", "-- 099: another header,\n-- on two lines")
                .replace("-- trailing", "").replace("/* a block\n   comment */", "/* shorter */")
                .replace("CREATE TABLE t (a int);", "CREATE   TABLE t\n    (a int);"))
    assert reworded != BASE
    assert checksum(reworded) == checksum(BASE)
    assert "header" not in statements(BASE) and "trailing" not in statements(BASE)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("(a int)", "(a bigint)"),  # a statement
        ("-- a comment the database stores", "-- another comment the database stores"),  # inside a function body
        ("'x -- y'", "'x -- Y'"),  # `--` inside a string literal
        ("/* z */", "/* Z */"),  # `/*` inside an escape string
        ('"q--w"', '"q--W"'),  # `--` inside a quoted identifier
        ("$$ -- kept $$", "$$ -- KEPT $$"),  # `--` inside a dollar-quoted string
        ("SELECT $$", "SELECT 1; SELECT $$"),  # a statement added
    ],
)
def test_a_changed_token_changes_the_checksum(old: str, new: str) -> None:
    assert old in BASE
    assert checksum(BASE.replace(old, new)) != checksum(BASE)


def test_a_comment_between_two_tokens_separates_them() -> None:
    assert checksum("SELECT a/* c */b") == checksum("SELECT a b") != checksum("SELECT ab")


def test_every_released_migration_still_has_the_statements_it_was_released_with() -> None:
    """Guards the files (a statement edited in place) and the lexer (an upgrade of sqlparse that would read
    them differently): either would make every database refuse to start."""
    files = {v: sql for v, _, sql in migration_files()}
    assert set(RELEASED) <= set(files)
    for version, (_raw, tokens) in RELEASED.items():
        assert checksum(files[version]) == CHECKSUM_PREFIX + tokens, version


def test_a_record_of_the_released_raw_text_matches_only_the_same_statements() -> None:
    raw, tokens = RELEASED[4]
    assert _matches(4, raw, CHECKSUM_PREFIX + tokens)
    assert not _matches(4, raw, checksum("DROP INDEX IF EXISTS some_other_idx;"))
    assert not _matches(5, raw, CHECKSUM_PREFIX + tokens)  # another version's raw checksum
    assert not _matches(99, raw, CHECKSUM_PREFIX + tokens)  # not a released version
    assert _matches(99, checksum("SELECT 1"), checksum("SELECT 1 -- now with a comment"))
