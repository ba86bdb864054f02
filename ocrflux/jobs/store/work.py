"""The line side of the store (SQL): leases, claims and commits of batch lines.

Every gateway that points at the database takes part. A line is *claimed* with a lease
(`owner`, `lease_until`, and `attempts` + 1 as its fencing token) and *committed* in one
transaction with its batch's counters; a commit whose lease was taken over by another gateway
(same line, newer `attempts`) changes nothing, so a line is answered once however often it
ran. A gateway renews the leases of the lines it runs; one that dies stops renewing and its
lines become claimable again when their leases expire. The batch's own steps (validation,
finalizing, expiry, retention) are `ocrflux.jobs.store.lifecycle`'s.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, exists, or_, select, update

from ocrflux.jobs.records import BatchRecord, ClaimedLine, LineResult, Status
from ocrflux.jobs.store.catalog import batch_record
from ocrflux.jobs.store.lifecycle import FAILED, PENDING, RUNNING, SUCCEEDED, BatchLifecycle
from ocrflux.jobs.store.schema import batches, lines

# Batches whose lines may still commit (a cancelling batch keeps what finishes meanwhile).
_ACCEPTING = (Status.IN_PROGRESS.value, Status.CANCELLING.value)


class WorkQueue(BatchLifecycle):
    """What the gateways' batch workers do to the store: a batch's steps (`BatchLifecycle`)
    and its lines' claims and commits."""

    # --- lines --------------------------------------------------------------------------------
    async def running_batches(self, limit: int = 64) -> list[BatchRecord]:
        """Batches with lines to claim, oldest first."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(batches)
                    .where(batches.c.status == Status.IN_PROGRESS.value)
                    .order_by(batches.c.created_at, batches.c.id)
                    .limit(limit)
                )
            ).all()
        return [batch_record(r) for r in rows]

    async def claim_lines(
        self, batch: BatchRecord, keys: list[str], count: int, lease: float
    ) -> list[ClaimedLine]:
        """Up to `count` lines of `batch` nobody runs (never run, or their lease expired),
        in line order, leased to us. `keys` are the storage keys of its input files."""
        now = self.clock()
        claimable = or_(
            lines.c.state == PENDING, and_(lines.c.state == RUNNING, lines.c.lease_until < now)
        )
        running = exists().where(
            batches.c.id == batch.id, batches.c.status == Status.IN_PROGRESS.value
        )
        async with self.engine.begin() as conn:
            chosen = (
                (
                    await conn.execute(
                        select(lines.c.line_no)
                        .where(lines.c.batch_id == batch.id, claimable, running)
                        .order_by(lines.c.line_no)
                        .limit(count)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            if not chosen:
                return []
            rows = (
                await conn.execute(
                    update(lines)
                    .where(lines.c.batch_id == batch.id, lines.c.line_no.in_(chosen))
                    .values(
                        state=RUNNING,
                        owner=self.me,
                        lease_until=now + lease,
                        attempts=lines.c.attempts + 1,
                    )
                    .returning(
                        lines.c.line_no,
                        lines.c.custom_id,
                        lines.c.attempts,
                        lines.c.file_index,
                        lines.c.offset,
                        lines.c.length,
                    )
                )
            ).all()
        claimed = [
            ClaimedLine(
                batch_id=batch.id,
                line_no=r.line_no,
                custom_id=r.custom_id,
                attempts=r.attempts,
                storage_key=keys[r.file_index],
                offset=r.offset,
                length=r.length,
                endpoint=batch.endpoint,
                owner=batch.owner,
                model=batch.model,
            )
            for r in rows
        ]
        return sorted(claimed, key=lambda c: c.line_no)

    async def renew_lines(self, lease: float) -> None:
        """Extend the leases of every line we run."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(lines)
                .where(lines.c.owner == self.me, lines.c.state == RUNNING)
                .values(lease_until=self.clock() + lease)
            )

    async def stopped(self, batch_ids: set[str]) -> set[str]:
        """Those of `batch_ids` that stopped running (cancelled, expired: cancel their lines)."""
        if not batch_ids:
            return set()
        async with self.engine.connect() as conn:
            query = select(batches.c.id).where(
                batches.c.id.in_(batch_ids), batches.c.status == Status.IN_PROGRESS.value
            )
            running = (await conn.execute(query)).scalars().all()
        return batch_ids - set(running)

    async def release(self, line: ClaimedLine) -> None:
        """Give a lease up (its work was cancelled): the line is claimable at once."""
        async with self.engine.begin() as conn:
            await conn.execute(self._fenced(line).values(owner=None, lease_until=0.0))

    async def commit(self, line: ClaimedLine, result: LineResult) -> bool:
        """Record a line's result and count it, in one transaction. False when the line is no
        longer ours (another gateway took it over) or its batch no longer takes results."""
        state = SUCCEEDED if result.ok else FAILED
        counter = batches.c.succeeded if result.ok else batches.c.failed
        async with self.engine.begin() as conn:
            # The batch row first: its lock orders this commit against finalizing.
            counted = await conn.execute(
                update(batches)
                .where(batches.c.id == line.batch_id, batches.c.status.in_(_ACCEPTING))
                .values(
                    {
                        counter: counter + 1,
                        batches.c.prompt_tokens: batches.c.prompt_tokens + result.prompt_tokens,
                        batches.c.completion_tokens: batches.c.completion_tokens
                        + result.completion_tokens,
                    }
                )
            )
            if counted.rowcount != 1:
                await conn.rollback()
                return False
            recorded = await conn.execute(
                self._fenced(line).values(
                    state=state,
                    owner=None,
                    lease_until=None,
                    status_code=result.status_code,
                    request_id=result.request_id,
                    result=result.body,
                    finished_at=self.clock(),
                )
            )
            if recorded.rowcount != 1:
                await conn.rollback()
                return False
        return True

    # --- helpers ------------------------------------------------------------------------------
    def _fenced(self, line: ClaimedLine) -> Any:
        return update(lines).where(
            lines.c.batch_id == line.batch_id,
            lines.c.line_no == line.line_no,
            lines.c.owner == self.me,
            lines.c.attempts == line.attempts,
            lines.c.state == RUNNING,
        )
