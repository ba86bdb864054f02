"""Connecting to the jobs database: SQLite under DATA_DIR by default, PostgreSQL for a fleet.

SQLAlchemy Core (async) with maintained drivers: aiosqlite, and psycopg 3 for PostgreSQL.
SQLite runs in WAL mode with `synchronous=NORMAL` (a committed transaction survives the
gateway being killed; an OS crash or power cut may lose the last ones, which then run again)
through one connection, so writers never race each other inside the one gateway that may use
it. PostgreSQL is for gateways that share batches: each has a small pool.
"""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ocrflux.jobs.store.schema import migrate

SQLITE_FILE = "jobs.sqlite3"


def database_url(configured: str, data_dir: str) -> str:
    """The SQLAlchemy URL: `postgresql://...` gets the psycopg driver; empty: SQLite."""
    if not configured:
        return f"sqlite+aiosqlite:///{os.path.join(os.path.abspath(data_dir), SQLITE_FILE)}"
    for scheme in ("postgresql://", "postgres://"):
        if configured.startswith(scheme):
            return "postgresql+psycopg://" + configured[len(scheme) :]
    if configured.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + configured[len("sqlite:///") :]
    return configured


def describe(url: str) -> str:
    """The URL for a log line: no password."""
    scheme, _, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def _sqlite_pragmas(dbapi_connection: Any, _: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=OFF")
    cursor.close()


async def connect(url: str) -> AsyncEngine:
    """An engine on `url` with the schema migrated to this gateway's version."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        engine = create_async_engine(url, pool_size=1, max_overflow=0, pool_timeout=120)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        engine = create_async_engine(url, pool_size=8, max_overflow=4, pool_pre_ping=True)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(migrate)
    except BaseException:
        await engine.dispose()
        raise
    return engine
