"""The steps of a batch's life in the store (SQL): validation, stopping, finalizing, retention.

Validating and finalizing a batch are leased on the batch row (`lease_owner`, `lease_until`),
as lines are (`ocrflux.jobs.store.work`): a gateway that dies mid-way is replaced once its
lease expires, and a step whose lease was lost changes nothing. With webhooks on (`on_end`),
the transaction that ends a batch also enqueues its event (`ocrflux.jobs.store.outbox`).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ocrflux.jobs.records import (
    ENDED,
    BatchRecord,
    FileRecord,
    FinishedLine,
    LineSpec,
    Status,
    WebhookEvent,
)
from ocrflux.jobs.store.catalog import batch_record, file_values
from ocrflux.jobs.store.outbox import enqueue
from ocrflux.jobs.store.schema import batches, files, lines, webhook_deliveries

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
# The webhook event of a batch that ended: (batch id, how it ended, when) -> event.
EventFactory = Callable[[str, Status, int], WebhookEvent]


class BatchLifecycle:
    """A batch's steps as the gateways' batch workers take them; `me` names this gateway;
    `on_end` (webhooks on) makes the event each batch's end enqueues."""

    def __init__(
        self,
        engine: AsyncEngine,
        me: str,
        clock: Callable[[], float] = time.time,
        on_end: EventFactory | None = None,
    ) -> None:
        self.engine = engine
        self.me = me
        self.clock = clock
        self.on_end = on_end

    # --- validation ---------------------------------------------------------------------------
    async def claim_validation(self, lease: float) -> BatchRecord | None:
        """A batch waiting to be validated (or whose validator died), leased to us."""
        return await self._claim_batch(Status.VALIDATING, lease)

    async def add_lines(self, batch_id: str, specs: Sequence[LineSpec]) -> list[int]:
        """Insert lines; the line numbers NOT inserted because their custom_id repeats one."""
        if not specs:
            return []
        rows = [
            {
                "batch_id": batch_id,
                "line_no": s.line_no,
                "custom_id": s.custom_id,
                "file_index": s.file_index,
                "offset": s.offset,
                "length": s.length,
                "state": PENDING,
                "attempts": 0,
            }
            for s in specs
        ]
        async with self.engine.begin() as conn:
            insert = (postgresql if _pg(conn) else sqlite).insert(lines)
            statement = insert.on_conflict_do_nothing().returning(lines.c.line_no)
            inserted = set((await conn.execute(statement, rows)).scalars().all())
        return [s.line_no for s in specs if s.line_no not in inserted]

    async def clear_lines(self, batch_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(lines).where(lines.c.batch_id == batch_id))

    async def validated(self, batch_id: str, total: int, lease: float) -> bool:
        """The batch's lines are in: it runs now (False: our lease was lost or it was
        cancelled meanwhile)."""
        now = self.clock()
        async with self.engine.begin() as conn:
            done = await conn.execute(
                self._leased(batch_id, Status.VALIDATING).values(
                    status=Status.IN_PROGRESS.value,
                    total=total,
                    in_progress_at=int(now),
                    lease_owner=None,
                    lease_until=None,
                )
            )
        return done.rowcount == 1

    async def refuse(self, batch_id: str, errors: list[dict[str, Any]]) -> bool:
        """Validation failed: the batch is `failed` with its errors, and holds no lines."""
        async with self.engine.begin() as conn:
            done = await conn.execute(
                self._leased(batch_id, Status.VALIDATING).values(
                    status=Status.FAILED.value,
                    errors=orjson.dumps(errors).decode(),
                    failed_at=int(self.clock()),
                    lease_owner=None,
                    lease_until=None,
                )
            )
            if done.rowcount == 1:
                await conn.execute(delete(lines).where(lines.c.batch_id == batch_id))
                await self._ended(conn, batch_id, Status.FAILED)
        return done.rowcount == 1

    async def release_batch(self, batch_id: str) -> None:
        """Give up our lease on a batch (a validation that lost to a cancel)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.lease_owner == self.me)
                .values(lease_owner=None, lease_until=None)
            )

    async def renew_batch(self, batch_id: str, lease: float) -> bool:
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(batches)
                .where(batches.c.id == batch_id, batches.c.lease_owner == self.me)
                .values(lease_until=self.clock() + lease)
            )
        return done.rowcount == 1

    # --- stopping and finalizing --------------------------------------------------------------
    async def expire_due(self) -> list[str]:
        """Batches past their completion window stop (claims end; lines in flight cancelled)."""
        now = int(self.clock())
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                update(batches)
                .where(
                    batches.c.status.in_([Status.VALIDATING.value, Status.IN_PROGRESS.value]),
                    batches.c.expires_at <= now,
                )
                .values(status=Status.CANCELLING.value, outcome=Status.EXPIRED.value)
                .returning(batches.c.id)
            )
            return list(rows.scalars().all())

    async def claim_finalize(self, lease: float) -> BatchRecord | None:
        """A batch ready for its output files, leased to us: one whose lines are all done, a
        stopping one whose lines in flight are all gone, or one whose finalizer died."""
        now = self.clock()
        live = exists().where(
            lines.c.batch_id == batches.c.id,
            lines.c.state == RUNNING,
            lines.c.lease_until > now,
            lines.c.owner.is_not(None),
        )
        ready = or_(
            and_(
                batches.c.status == Status.IN_PROGRESS.value,
                batches.c.succeeded + batches.c.failed >= batches.c.total,
            ),
            # A stopping batch waits for its validator too (a lease on the batch row).
            and_(
                batches.c.status == Status.CANCELLING.value,
                ~live,
                or_(batches.c.lease_until.is_(None), batches.c.lease_until < now),
            ),
        )
        async with self.engine.begin() as conn:
            row = (
                await conn.execute(select(batches.c.id, batches.c.status).where(ready).limit(1))
            ).first()
            if row is not None:
                outcome = Status.COMPLETED.value if row.status == Status.IN_PROGRESS.value else None
                values: dict[str, Any] = {
                    "status": Status.FINALIZING.value,
                    "finalizing_at": int(now),
                    "lease_owner": self.me,
                    "lease_until": now + lease,
                }
                if outcome:
                    values["outcome"] = outcome
                done = await conn.execute(
                    update(batches)
                    .where(batches.c.id == row.id, batches.c.status == row.status)
                    .values(values)
                )
                if done.rowcount == 1:
                    return await self._get(conn, row.id)
        return await self._claim_batch(Status.FINALIZING, lease)

    async def finished_lines(self, batch_id: str, chunk: int = 500) -> AsyncIterator[FinishedLine]:
        """Every line of the batch in line order, read in chunks (short transactions)."""
        after = -1
        while True:
            async with self.engine.connect() as conn:
                rows = (
                    await conn.execute(
                        select(
                            lines.c.line_no,
                            lines.c.custom_id,
                            lines.c.state,
                            lines.c.status_code,
                            lines.c.request_id,
                            lines.c.result,
                        )
                        .where(lines.c.batch_id == batch_id, lines.c.line_no > after)
                        .order_by(lines.c.line_no)
                        .limit(chunk)
                    )
                ).all()
            for r in rows:
                yield FinishedLine(
                    r.line_no, r.custom_id, r.state, r.status_code, r.request_id, r.result
                )
            if len(rows) < chunk:
                return
            after = rows[-1].line_no

    async def close_batch(
        self, batch: BatchRecord, outcome: Status, outputs: Sequence[FileRecord], never_ran: int
    ) -> bool:
        """The batch's end, in one transaction: its output files, final status and counts."""
        now = int(self.clock())
        stamp = {
            Status.COMPLETED: "completed_at",
            Status.CANCELLED: "cancelled_at",
            Status.EXPIRED: "expired_at",
        }[outcome]
        by_purpose = {f.purpose: f.id for f in outputs}
        async with self.engine.begin() as conn:
            done = await conn.execute(
                self._leased(batch.id, Status.FINALIZING).values(
                    {
                        "status": outcome.value,
                        stamp: now,
                        "output_file_id": by_purpose.get("batch_output"),
                        "error_file_id": by_purpose.get("batch_error"),
                        "failed": batches.c.failed + never_ran,
                        "lease_owner": None,
                        "lease_until": None,
                    }
                )
            )
            if done.rowcount != 1:
                await conn.rollback()
                return False
            for record in outputs:
                await conn.execute(files.delete().where(files.c.id == record.id))
                await conn.execute(files.insert().values(**file_values(record)))
            await self._ended(conn, batch.id, outcome)
        return True

    # --- retention and metrics ----------------------------------------------------------------
    async def purge(self, before: int) -> list[str]:
        """Delete batches that ended before `before` (their lines and output files), and files
        created before it that no batch still running reads; the storage keys to delete."""
        ended = func.coalesce(
            batches.c.completed_at,
            batches.c.failed_at,
            batches.c.cancelled_at,
            batches.c.expired_at,
        )
        async with self.engine.begin() as conn:
            old = (
                (
                    await conn.execute(
                        delete(batches)
                        .where(batches.c.status.in_([s.value for s in ENDED]), ended < before)
                        .returning(batches.c.id)
                    )
                )
                .scalars()
                .all()
            )
            keys: list[str] = []
            if old:
                await conn.execute(delete(lines).where(lines.c.batch_id.in_(old)))
                await conn.execute(
                    delete(webhook_deliveries).where(webhook_deliveries.c.batch_id.in_(old))
                )
                keys += (
                    (
                        await conn.execute(
                            delete(files)
                            .where(files.c.batch_id.in_(old))
                            .returning(files.c.storage_key)
                        )
                    )
                    .scalars()
                    .all()
                )
            inputs = (
                (
                    await conn.execute(
                        select(batches.c.input_files).where(
                            batches.c.status.not_in([s.value for s in ENDED])
                        )
                    )
                )
                .scalars()
                .all()
            )
            in_use = {file_id for text in inputs for file_id in orjson.loads(text)}
            stale = (
                (
                    await conn.execute(
                        select(files.c.id).where(
                            files.c.created_at < before, files.c.batch_id.is_(None)
                        )
                    )
                )
                .scalars()
                .all()
            )
            doomed = [f for f in stale if f not in in_use]
            if doomed:
                keys += (
                    (
                        await conn.execute(
                            delete(files)
                            .where(files.c.id.in_(doomed))
                            .returning(files.c.storage_key)
                        )
                    )
                    .scalars()
                    .all()
                )
        return keys

    async def census(self) -> tuple[dict[str, int], int]:
        """Batches by status, and lines waiting to run (for /metrics)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(batches.c.status, func.count()).group_by(batches.c.status)
                )
            ).all()
            waiting = (
                await conn.execute(
                    select(func.count())
                    .select_from(lines.join(batches, lines.c.batch_id == batches.c.id))
                    .where(lines.c.state == PENDING, batches.c.status == Status.IN_PROGRESS.value)
                )
            ).scalar_one()
        return {status: int(n) for status, n in rows}, int(waiting)

    # --- helpers ------------------------------------------------------------------------------
    async def _ended(self, conn: AsyncConnection, batch_id: str, outcome: Status) -> None:
        if self.on_end is not None:
            now = self.clock()
            await enqueue(conn, self.on_end(batch_id, outcome, int(now)), now)

    async def _claim_batch(self, status: Status, lease: float) -> BatchRecord | None:
        now = self.clock()
        free = or_(batches.c.lease_until.is_(None), batches.c.lease_until < now)
        async with self.engine.begin() as conn:
            candidate = (
                await conn.execute(
                    select(batches.c.id)
                    .where(batches.c.status == status.value, free)
                    .order_by(batches.c.created_at)
                    .limit(1)
                    .with_for_update(skip_locked=True)
                )
            ).scalar()
            if candidate is None:
                return None
            await conn.execute(
                update(batches)
                .where(batches.c.id == candidate)
                .values(lease_owner=self.me, lease_until=now + lease)
            )
            return await self._get(conn, candidate)

    async def _get(self, conn: AsyncConnection, batch_id: str) -> BatchRecord:
        row = (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()
        return batch_record(row)

    def _leased(self, batch_id: str, status: Status) -> Any:
        return update(batches).where(
            batches.c.id == batch_id,
            batches.c.status == status.value,
            batches.c.lease_owner == self.me,
        )


def _pg(conn: AsyncConnection) -> bool:
    return conn.dialect.name == "postgresql"
