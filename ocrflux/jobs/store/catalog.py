"""The files and batches a client sees: create, read, list, cancel, delete (SQL, API side).

Every read is scoped to an owner (the hash of the caller's API key, "" without API_KEYS):
another key's id is simply not found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import JSON, ColumnElement, Row, and_, cast, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from ocrflux.jobs.records import ACTIVE, BatchRecord, FileRecord, Status
from ocrflux.jobs.store.schema import batches, files


def file_record(row: Row[Any]) -> FileRecord:
    m = row._mapping
    return FileRecord(
        id=m["id"],
        owner=m["owner"],
        purpose=m["purpose"],
        filename=m["filename"],
        bytes=m["bytes"],
        created_at=m["created_at"],
        storage_key=m["storage_key"],
        num_lines=m["num_lines"],
        mimetype=m["mimetype"],
        batch_id=m["batch_id"],
    )


def batch_record(row: Row[Any]) -> BatchRecord:
    m = row._mapping
    return BatchRecord(
        id=m["id"],
        owner=m["owner"],
        api=m["api"],
        endpoint=m["endpoint"],
        model=m["model"],
        input_files=orjson.loads(m["input_files"]),
        completion_window=m["completion_window"],
        metadata=orjson.loads(m["metadata"]) if m["metadata"] else None,
        status=Status(m["status"]),
        outcome=Status(m["outcome"]) if m["outcome"] else None,
        errors=orjson.loads(m["errors"]) if m["errors"] else None,
        total=m["total"],
        succeeded=m["succeeded"],
        failed=m["failed"],
        prompt_tokens=m["prompt_tokens"],
        completion_tokens=m["completion_tokens"],
        output_file_id=m["output_file_id"],
        error_file_id=m["error_file_id"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        in_progress_at=m["in_progress_at"],
        finalizing_at=m["finalizing_at"],
        completed_at=m["completed_at"],
        failed_at=m["failed_at"],
        expired_at=m["expired_at"],
        cancelling_at=m["cancelling_at"],
        cancelled_at=m["cancelled_at"],
    )


def file_values(record: FileRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "owner": record.owner,
        "purpose": record.purpose,
        "filename": record.filename,
        "bytes": record.bytes,
        "created_at": record.created_at,
        "storage_key": record.storage_key,
        "num_lines": record.num_lines,
        "mimetype": record.mimetype,
        "batch_id": record.batch_id,
    }


def _phase(status: Status, cancelled: bool | None) -> ColumnElement[bool]:
    if cancelled is None:
        return batches.c.status == status.value
    was = batches.c.outcome == Status.CANCELLED.value
    if not cancelled:
        was = or_(batches.c.outcome.is_(None), batches.c.outcome != Status.CANCELLED.value)
    return and_(batches.c.status == status.value, was)


class Catalog:
    """Files and batches, as the routes need them."""

    def __init__(self, engine: AsyncEngine, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    # --- files --------------------------------------------------------------------------------
    async def add_file(self, record: FileRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(files.insert().values(**file_values(record)))

    async def get_file(self, owner: str, file_id: str) -> FileRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(files).where(files.c.id == file_id, files.c.owner == owner)
                )
            ).first()
        return file_record(row) if row is not None else None

    async def list_files(
        self,
        owner: str,
        *,
        limit: int,
        after: str | None = None,
        purpose: str | None = None,
        newest_first: bool = True,
        offset: int = 0,
        purposes: Sequence[str] | None = None,
        uploaded: bool | None = None,
        search: str | None = None,
        mimetypes: Sequence[str] | None = None,
    ) -> tuple[list[FileRecord], int]:
        """A page of files (newest first, or oldest) and how many match in all. `purposes`,
        `mimetypes`: any of them; `uploaded`: uploads (True) or batch outputs (False);
        `search`: in the file name, in any case."""
        where = [files.c.owner == owner]
        if purpose:
            where.append(files.c.purpose == purpose)
        if purposes is not None:
            where.append(files.c.purpose.in_(purposes))
        if uploaded is not None:
            where.append(files.c.batch_id.is_(None) if uploaded else files.c.batch_id.is_not(None))
        if search:
            where.append(func.lower(files.c.filename).contains(search.lower(), autoescape=True))
        if mimetypes is not None:
            where.append(files.c.mimetype.in_(mimetypes))
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(files).where(*where))
            ).scalar_one()
            if after:  # ids grow with time (`ocrflux.jobs.service.new_id`): they are the cursor
                where.append(files.c.id < after if newest_first else files.c.id > after)
            query = select(files).where(*where)
            query = query.order_by(files.c.id.desc() if newest_first else files.c.id)
            rows = (await conn.execute(query.offset(offset).limit(limit))).all()
        return [file_record(r) for r in rows], total

    async def delete_file(self, owner: str, file_id: str) -> FileRecord | None:
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(
                    delete(files)
                    .where(files.c.id == file_id, files.c.owner == owner)
                    .returning(*files.c)
                )
            ).first()
        return file_record(row) if row is not None else None

    # --- batches ------------------------------------------------------------------------------
    async def add_batch(self, record: BatchRecord) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(
                batches.insert().values(
                    id=record.id,
                    owner=record.owner,
                    api=record.api,
                    endpoint=record.endpoint,
                    model=record.model,
                    input_files=orjson.dumps(record.input_files).decode(),
                    completion_window=record.completion_window,
                    metadata=orjson.dumps(record.metadata).decode() if record.metadata else None,
                    status=record.status.value,
                    created_at=record.created_at,
                    expires_at=record.expires_at,
                )
            )

    async def get_batch(self, owner: str, batch_id: str) -> BatchRecord | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(batches).where(batches.c.id == batch_id, batches.c.owner == owner)
                )
            ).first()
        return batch_record(row) if row is not None else None

    async def list_batches(
        self,
        owner: str,
        *,
        limit: int,
        after: str | None = None,
        offset: int = 0,
        statuses: Sequence[Status] = (),
        created_after: int | None = None,
        api: str | None = None,
        model: str | None = None,
        metadata: dict[str, str] | None = None,
        oldest_first: bool = False,
        phases: Sequence[tuple[Status, bool | None]] = (),
    ) -> tuple[list[BatchRecord], int]:
        """A page of batches, newest first (or oldest), and how many match in all."""
        where = [batches.c.owner == owner]
        if model is not None:
            where.append(batches.c.model == model)
        for key, value in (metadata or {}).items():
            where.append(self._has_pair(key, value))
        if statuses:
            where.append(batches.c.status.in_([s.value for s in statuses]))
        if phases:  # (status, whether it was cancelled: None for either)
            where.append(or_(*(_phase(status, cancelled) for status, cancelled in phases)))
        if created_after is not None:
            where.append(batches.c.created_at >= created_after)
        if api:
            where.append(batches.c.api == api)
        async with self.engine.connect() as conn:
            total = (
                await conn.execute(select(func.count()).select_from(batches).where(*where))
            ).scalar_one()
            if after:
                where.append(batches.c.id > after if oldest_first else batches.c.id < after)
            query = (
                select(batches)
                .where(*where)
                .order_by(batches.c.id if oldest_first else batches.c.id.desc())
                .offset(offset)
                .limit(limit)
            )
            rows = (await conn.execute(query)).all()
        return [batch_record(r) for r in rows], total

    def _has_pair(self, key: str, value: str) -> ColumnElement[bool]:
        """The batch's metadata holds `key: value` (any key: no JSON path to quote)."""
        if self.engine.dialect.name == "postgresql":
            pairs = func.json_each_text(cast(batches.c.metadata, JSON))
        else:
            pairs = func.json_each(batches.c.metadata)
        each = pairs.table_valued("key", "value")
        return select(each.c.key).where(each.c.key == key, each.c.value == value).exists()

    async def active_batches(self, owner: str) -> int:
        async with self.engine.connect() as conn:
            query = select(func.count()).where(
                batches.c.owner == owner, batches.c.status.in_([s.value for s in ACTIVE])
            )
            return int((await conn.execute(query)).scalar_one())

    async def cancel(self, owner: str, batch_id: str) -> BatchRecord | None:
        """Ask a batch to stop: claims stop at once, lines in flight are cancelled by their
        gateways, then its partial output is written. A stopped batch is left as it is."""
        now = int(self.clock())
        async with self.engine.begin() as conn:
            await conn.execute(
                update(batches)
                .where(
                    batches.c.id == batch_id,
                    batches.c.owner == owner,
                    batches.c.status.in_([Status.VALIDATING.value, Status.IN_PROGRESS.value]),
                )
                .values(
                    status=Status.CANCELLING.value,
                    outcome=Status.CANCELLED.value,
                    cancelling_at=now,
                )
            )
            row = (
                await conn.execute(
                    select(batches).where(batches.c.id == batch_id, batches.c.owner == owner)
                )
            ).first()
        return batch_record(row) if row is not None else None
