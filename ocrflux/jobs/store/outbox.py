"""The webhook outbox (SQL): events enqueued with a batch's end, then leased, sent, marked.

An event is inserted by the transaction that ends its batch (`enqueue`, called by the work
queue), so a batch never ends without its event, nor has an event without having ended. A
sender claims due events with a lease (`attempts` + 1 as the fencing token, as for lines);
an event is `delivered` once the receiver said 2xx, `failed` when the receiver refused it or
it ran out of attempts, or put back for a later attempt. A gateway that dies mid-send stops
holding its lease and the event is claimed again when the lease expires: delivery is at
least once, and a receiver tells a repeat by its `webhook-id`.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ocrflux.jobs.records import Delivery, WebhookEvent
from ocrflux.jobs.store.schema import webhook_deliveries as deliveries

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_MAX_ERROR = 500  # characters of the last error kept on the row


async def enqueue(conn: AsyncConnection, event: WebhookEvent, now: float) -> None:
    """Add `event` inside the caller's transaction (the one that ends its batch)."""
    await conn.execute(
        deliveries.insert().values(
            id=event.id,
            batch_id=event.batch_id,
            event_type=event.type,
            payload=event.payload.decode(),
            created_at=event.created_at,
            state=PENDING,
            attempts=0,
            next_at=now,
        )
    )


class Outbox:
    """What a gateway's webhook sender does to the store; `me` names this gateway."""

    def __init__(
        self, engine: AsyncEngine, me: str, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine = engine
        self.me = me
        self.clock = clock

    async def claim_due(self, count: int, lease: float) -> list[Delivery]:
        """Up to `count` events due now that nobody is sending, oldest first, leased to us."""
        now = self.clock()
        free = or_(deliveries.c.lease_until.is_(None), deliveries.c.lease_until < now)
        async with self.engine.begin() as conn:
            chosen = (
                (
                    await conn.execute(
                        select(deliveries.c.id)
                        .where(deliveries.c.state == PENDING, deliveries.c.next_at <= now, free)
                        .order_by(deliveries.c.next_at, deliveries.c.id)
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
                    update(deliveries)
                    .where(deliveries.c.id.in_(chosen))
                    .values(
                        lease_owner=self.me,
                        lease_until=now + lease,
                        attempts=deliveries.c.attempts + 1,
                    )
                    .returning(
                        deliveries.c.id,
                        deliveries.c.batch_id,
                        deliveries.c.event_type,
                        deliveries.c.payload,
                        deliveries.c.attempts,
                        deliveries.c.next_at,
                    )
                )
            ).all()
        rows = sorted(rows, key=lambda r: (r.next_at, r.id))
        return [
            Delivery(r.id, r.batch_id, r.event_type, r.payload.encode(), r.attempts) for r in rows
        ]

    async def delivered(self, delivery: Delivery) -> bool:
        """The receiver took it (2xx): never sent again."""
        return await self._settle(delivery, state=DELIVERED, next_at=self.clock(), last_error=None)

    async def retry(self, delivery: Delivery, at: float, error: str) -> bool:
        """Try again at `at` (the receiver was away or failed)."""
        return await self._settle(delivery, state=PENDING, next_at=at, last_error=error)

    async def failed(self, delivery: Delivery, error: str) -> bool:
        """Give up on it (refused by the receiver or the SSRF guard, or out of attempts)."""
        return await self._settle(delivery, state=FAILED, next_at=self.clock(), last_error=error)

    async def release(self, delivery: Delivery) -> None:
        """Give a lease up (this gateway is stopping): the event is claimable at once."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.id == delivery.id,
                    deliveries.c.state == PENDING,
                    deliveries.c.lease_owner == self.me,
                    deliveries.c.attempts == delivery.attempts,
                )
                .values(lease_owner=None, lease_until=None)
            )

    async def next_due(self) -> float | None:
        """When the earliest pending event is due (None: nothing to send)."""
        async with self.engine.connect() as conn:
            query = select(func.min(deliveries.c.next_at)).where(deliveries.c.state == PENDING)
            found = (await conn.execute(query)).scalar()
        return float(found) if found is not None else None

    async def _settle(self, delivery: Delivery, **values: object) -> bool:
        error = values.get("last_error")
        if isinstance(error, str):
            values["last_error"] = error[:_MAX_ERROR]
        async with self.engine.begin() as conn:
            done = await conn.execute(
                update(deliveries)
                .where(
                    and_(
                        deliveries.c.id == delivery.id,
                        deliveries.c.state == PENDING,
                        deliveries.c.lease_owner == self.me,
                        deliveries.c.attempts == delivery.attempts,
                    )
                )
                .values(lease_owner=None, lease_until=None, **values)
            )
        return done.rowcount == 1
