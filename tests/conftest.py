"""Shared fixtures: a real PostgreSQL, a migrated template database, and a fresh clone of it per test."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import structlog

from worker import db
from worker.migrate import migrate
from worker.redaction import install_stored

# The game platform simulator fixture (`platform`) lives beside its helpers.
pytest_plugins = ["tests.support.game_platform"]

SERVER_URL = os.environ.get("WORKER_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def db_url(name: str) -> str:
    parts = urlsplit(SERVER_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def _admin(sql: str) -> None:
    conn = await asyncpg.connect(SERVER_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """A test that configures logging or the stored-value redactor (the CLI's main does both, process-wide) must
    not leak that configuration into the next test."""
    yield
    structlog.reset_defaults()
    install_stored(())


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database migrated once per session; tests clone it (CREATE DATABASE ... TEMPLATE)."""
    name = f"worker_tmpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"

    async def setup() -> None:
        await _admin(f'CREATE DATABASE "{name}"')
        conn = await db.connect(db_url(name))
        try:
            await migrate(conn)
        finally:
            await conn.close()

    _run(setup())
    yield name
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def fresh_db_name(template_db: str) -> Iterator[str]:
    name = f"worker_t_{uuid.uuid4().hex[:12]}"
    _run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield name
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def database_url(fresh_db_name: str) -> str:
    """URL of a fresh, migrated database of this test's own."""
    return db_url(fresh_db_name)


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """URL of a fresh database with no schema at all."""
    name = f"worker_e_{uuid.uuid4().hex[:12]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    yield db_url(name)
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def module_database(template_db: str) -> Iterator[str]:
    """A fresh migrated database shared by one test module (for a daemon shared by its tests)."""
    name = f"worker_m_{uuid.uuid4().hex[:12]}"
    _run(_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    yield db_url(name)
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await db.connect(database_url)
    try:
        yield c
    finally:
        await c.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await db.create_pool(database_url, max_size=10)
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    """A headless Debian chromium (Playwright), closed after the test (tests/support/browser.py)."""
    from playwright.async_api import async_playwright

    from tests.support.browser import CHROMIUM, CHROMIUM_ARGS

    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()
