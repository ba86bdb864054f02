"""The jobs store's databases: SQLite in a temp dir, and a real PostgreSQL server per session."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from ocrflux.jobs.store import connect, database_url
from tests.postgres import create_database, postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


def new_database(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database of `kind` (its SQLAlchemy URL)."""
    if kind == "sqlite":
        return database_url("", str(tmp_path))
    server = request.getfixturevalue("postgres_url")
    return database_url(create_database(server, f"t_{secrets.token_hex(6)}"), "")


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """The same tests on both databases the store supports."""
    url = new_database(request.param, tmp_path, request)
    engine = await connect(url)
    yield engine
    await engine.dispose()
