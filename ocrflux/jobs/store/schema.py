"""The jobs database's schema, in one place, and its migrations (a version table).

Tables: `files` (uploads and the batches' output files), `batches`, `batch_lines` (one row per
request of a batch: where it sits in its input file, its lease while a gateway runs it, its
result once committed) and `webhook_deliveries`. Both databases (SQLite, PostgreSQL) get the
same tables from these definitions. A schema change is a new entry in `MIGRATIONS`: start-up
applies the ones not yet recorded in `ocrflux_schema_version`, under a lock (PostgreSQL: an
advisory lock, so two gateways starting at once do not race), and refuses a database whose
version is newer than this code knows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    select,
    text,
)
from sqlalchemy.engine import Connection

logger = logging.getLogger("ocrflux.jobs")

metadata = MetaData()

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),  # hash of the API key ("" without API_KEYS)
    Column("purpose", String(32), nullable=False),
    Column("filename", String(512), nullable=False),
    Column("bytes", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("num_lines", Integer),  # JSONL files: their lines
    Column("mimetype", String(128)),
    Column("storage_key", String(256), nullable=False),
    Column("batch_id", String(64)),  # output and error files: their batch
    Index("files_by_owner", "owner", "created_at"),
)

batches = Table(
    "batches",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner", String(64), nullable=False),
    Column("api", String(16), nullable=False),  # "openai" | "mistral": the shape it answers in
    Column("endpoint", String(64), nullable=False),
    Column("model", String(256)),
    Column("input_files", Text, nullable=False),  # JSON list of file ids
    Column("completion_window", String(16), nullable=False),
    Column("metadata", Text),  # JSON object
    Column("status", String(16), nullable=False),
    # What a batch that stops ends as: completed, cancelled or expired (set on the way there).
    Column("outcome", String(16)),
    Column("errors", Text),  # JSON list of OpenAI BatchError objects
    Column("total", Integer, nullable=False, default=0),
    Column("succeeded", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("prompt_tokens", BigInteger, nullable=False, default=0),
    Column("completion_tokens", BigInteger, nullable=False, default=0),
    Column("output_file_id", String(64)),
    Column("error_file_id", String(64)),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("in_progress_at", BigInteger),
    Column("finalizing_at", BigInteger),
    Column("completed_at", BigInteger),
    Column("failed_at", BigInteger),
    Column("expired_at", BigInteger),
    Column("cancelling_at", BigInteger),
    Column("cancelled_at", BigInteger),
    # Which gateway validates or finalizes it now, until when (a dead one's lease expires).
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Index("batches_by_owner", "owner", "created_at"),
    Index("batches_by_status", "status"),
)

lines = Table(
    "batch_lines",
    metadata,
    Column("batch_id", String(64), primary_key=True),
    Column("line_no", Integer, primary_key=True),  # 0-based, over all input files in order
    Column("custom_id", String(512), nullable=False),
    Column("file_index", Integer, nullable=False),  # which of the batch's input files
    Column("offset", BigInteger, nullable=False),  # the line's bytes in that file
    Column("length", Integer, nullable=False),
    # pending -> running (leased by `owner` until `lease_until`) -> succeeded | failed
    Column("state", String(12), nullable=False),
    Column("owner", String(64)),
    Column("lease_until", Float),
    Column("attempts", Integer, nullable=False, default=0),  # claims so far: the fencing token
    Column("status_code", Integer),
    Column("request_id", String(64)),
    Column("result", LargeBinary),  # the response body (JSON), or the error object
    Column("finished_at", Float),
    UniqueConstraint("batch_id", "custom_id", name="batch_lines_custom_id"),
    Index("batch_lines_by_state", "batch_id", "state", "line_no"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", String(64), primary_key=True),  # the event id (msg id of the signature)
    Column("batch_id", String(64), nullable=False),
    Column("event_type", String(32), nullable=False),
    Column("payload", Text, nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("state", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", Float, nullable=False),
    Column("last_error", Text),
    Column("lease_owner", String(64)),
    Column("lease_until", Float),
    Index("webhook_deliveries_due", "state", "next_at"),
)

schema_version = Table(
    "ocrflux_schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", Float, nullable=False),
)

# The tables of each version. Version 1 creates them all; later versions append here the
# statements (or functions) that take version N-1 to N.
Migration = Callable[[Connection], None]
MIGRATIONS: list[tuple[int, Migration]] = [
    (1, lambda conn: metadata.create_all(conn, checkfirst=True)),
]
LATEST = MIGRATIONS[-1][0]
# pg_advisory_xact_lock's key for migrations ("ocrflux" in ASCII, truncated to a bigint).
_MIGRATION_LOCK = 0x6F6372666C7578


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer gateway than this one."""


def migrate(conn: Connection) -> int:
    """Bring the schema up to `LATEST` inside the caller's transaction; the version after."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
    schema_version.create(conn, checkfirst=True)
    current = (
        conn.execute(
            select(schema_version.c.version).order_by(schema_version.c.version.desc())
        ).scalar()
        or 0
    )
    if current > LATEST:
        raise SchemaTooNew(
            f"the jobs database is at schema version {current}; this gateway knows up to "
            f"{LATEST}: upgrade the gateway"
        )
    for version, step in MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(schema_version.insert().values(version=version, applied_at=time.time()))
            logger.info("jobs database migrated to schema version %d", version)
    return max(current, LATEST)
