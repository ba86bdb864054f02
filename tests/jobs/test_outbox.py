"""The webhook outbox on SQLite and PostgreSQL: enqueued with a batch's end, leased, marked."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from ocrflux.jobs.delivery import WebhookDelivery, WebhookSender
from ocrflux.jobs.records import Status
from ocrflux.jobs.store import Catalog, Outbox, WorkQueue
from ocrflux.jobs.store.schema import webhook_deliveries
from ocrflux.jobs.webhooks import batch_event
from ocrflux.settings import Settings
from tests.jobs.test_store import LEASE, Clock, a_batch, ok, running_batch
from tests.jobs.test_webhooks import SECRET

SEND_LEASE = 30.0


async def rows(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        found = (await conn.execute(select(webhook_deliveries))).all()
    return [dict(r._mapping) for r in found]


async def finished_batch(
    engine: AsyncEngine, clock: Clock, *, webhooks: bool = True, outcome: Status = Status.COMPLETED
) -> WorkQueue:
    """batch_1 with one line done, finalized by gateway A (with webhooks on or off)."""
    queue = await running_batch(engine, clock, 1)
    queue.on_end = batch_event if webhooks else None
    (line,) = await queue.claim_lines(a_batch(), ["in"], 1, LEASE)
    assert await queue.commit(line, ok())
    finalizing = await queue.claim_finalize(LEASE)
    assert finalizing is not None
    assert await queue.close_batch(finalizing, outcome, [], never_ran=0)
    return queue


async def test_a_batch_that_ends_enqueues_its_event_in_the_same_transaction(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    await finished_batch(engine, clock)
    (row,) = await rows(engine)
    assert row["batch_id"] == "batch_1" and row["event_type"] == "batch.completed"
    assert row["state"] == "pending" and row["attempts"] == 0
    payload = orjson.loads(str(row["payload"]))
    assert payload == {
        "id": row["id"],
        "object": "event",
        "type": "batch.completed",
        "created_at": int(clock.now),
        "data": {"id": "batch_1"},
    }


async def test_no_event_without_webhooks_and_none_for_a_lost_finalization(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    await finished_batch(engine, clock, webhooks=False)
    assert await rows(engine) == []
    # A finalizer whose lease was taken over closes nothing and enqueues nothing.
    queue = await running_batch(engine, clock, 1, batch_id="batch_2")
    queue.on_end = batch_event
    (line,) = await queue.claim_lines(a_batch("batch_2"), ["in"], 1, LEASE)
    assert await queue.commit(line, ok())
    stale = await queue.claim_finalize(LEASE)
    assert stale is not None
    clock.now += LEASE + 1
    successor = WorkQueue(engine, "B", clock, on_end=batch_event)
    assert await successor.claim_finalize(LEASE) is not None
    assert not await queue.close_batch(stale, Status.COMPLETED, [], 0)
    assert await rows(engine) == []


async def test_a_refused_batch_enqueues_batch_failed(engine: AsyncEngine) -> None:
    clock = Clock()
    await Catalog(engine, clock).add_batch(a_batch())
    queue = WorkQueue(engine, "A", clock, on_end=batch_event)
    assert await queue.claim_validation(LEASE) is not None
    assert await queue.refuse("batch_1", [{"code": "empty_file", "message": "no requests"}])
    (row,) = await rows(engine)
    assert row["event_type"] == "batch.failed" and row["batch_id"] == "batch_1"


async def test_an_event_is_sent_by_one_gateway_and_never_again_once_delivered(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    await finished_batch(engine, clock)
    a, b = Outbox(engine, "A", clock), Outbox(engine, "B", clock)
    (delivery,) = await a.claim_due(8, SEND_LEASE)
    assert delivery.type == "batch.completed" and delivery.attempts == 1
    assert orjson.loads(delivery.payload)["data"] == {"id": "batch_1"}
    assert await b.claim_due(8, SEND_LEASE) == []  # A is sending it
    assert await a.delivered(delivery)
    clock.now += 10 * SEND_LEASE  # long after any lease: still never due again
    assert await a.claim_due(8, SEND_LEASE) == [] and await b.claim_due(8, SEND_LEASE) == []
    assert await a.next_due() is None
    (row,) = await rows(engine)
    assert row["state"] == "delivered" and row["attempts"] == 1


async def test_a_retry_waits_for_its_time_and_a_failure_is_final(engine: AsyncEngine) -> None:
    clock = Clock()
    await finished_batch(engine, clock)
    outbox = Outbox(engine, "A", clock)
    (first,) = await outbox.claim_due(8, SEND_LEASE)
    assert await outbox.retry(first, clock.now + 20, "HTTP 503")
    assert await outbox.next_due() == clock.now + 20
    clock.now += 19
    assert await outbox.claim_due(8, SEND_LEASE) == []
    clock.now += 1
    (second,) = await outbox.claim_due(8, SEND_LEASE)
    assert second.id == first.id and second.attempts == 2
    assert await outbox.failed(second, "HTTP 400")
    clock.now += 3600
    assert await outbox.claim_due(8, SEND_LEASE) == []
    (row,) = await rows(engine)
    assert row["state"] == "failed" and row["last_error"] == "HTTP 400"


async def test_a_dead_senders_event_is_sent_by_another_and_its_late_word_ignored(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    await finished_batch(engine, clock)
    a, b = Outbox(engine, "A", clock), Outbox(engine, "B", clock)
    (stale,) = await a.claim_due(8, SEND_LEASE)  # A claims it, then dies
    clock.now += SEND_LEASE + 1
    (taken,) = await b.claim_due(8, SEND_LEASE)
    assert taken.id == stale.id and taken.attempts == 2
    assert not await a.delivered(stale)  # fenced: A's lease is gone
    assert await b.delivered(taken)
    (row,) = await rows(engine)
    assert row["state"] == "delivered" and row["attempts"] == 2


async def test_retention_removes_a_batchs_deliveries_with_it(engine: AsyncEngine) -> None:
    clock = Clock()
    queue = await finished_batch(engine, clock)
    assert len(await rows(engine)) == 1
    await queue.purge(before=int(clock.now) + 1)
    assert await rows(engine) == []


async def test_the_sending_loop_retries_then_delivers_once_across_a_restart(
    engine: AsyncEngine,
) -> None:
    """The loop of `ocrflux.jobs.delivery` on each database: a 503 retried, a 200 recorded,
    and a loop started afresh (a restart) sends nothing again."""
    clock = Clock()
    clock.now = time.time()  # the loop runs on the real clock
    await finished_batch(engine, clock)
    answers = [503]
    sent: list[httpx.Request] = []

    ok_sent = asyncio.Event()

    def receiver(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        if not answers:
            ok_sent.set()
        return httpx.Response(answers.pop(0) if answers else 200)

    settings = Settings(
        webhook_url="http://127.0.0.1:9/hooks",
        webhook_secret=SECRET,
        webhook_allowed_hosts="127.0.0.1",
        webhook_retry_seconds=0.05,
        batch_poll_interval=0.05,
    )

    async def run_loop(seconds: float, delivered: asyncio.Event | None = None) -> None:
        """The loop until `delivered` is set (within 20 s), then `seconds` longer."""
        sender = WebhookSender(settings, transport=httpx.MockTransport(receiver))
        loop = WebhookDelivery(settings, Outbox(engine, "A"), sender)
        loop.start()
        if delivered is not None:
            async with asyncio.timeout(20):
                await delivered.wait()
                while (await rows(engine))[0]["state"] != "delivered":  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
        await asyncio.sleep(seconds)  # nothing more is sent meanwhile
        await loop.aclose()

    await run_loop(0.3, ok_sent)
    assert len(sent) == 2 and sent[0].headers["webhook-id"] == sent[1].headers["webhook-id"]
    (row,) = await rows(engine)
    assert (row["state"], row["attempts"], row["last_error"]) == ("delivered", 2, None)
    await run_loop(0.5)  # restarted
    assert len(sent) == 2


async def test_a_stopping_sender_gives_its_event_back_at_once(engine: AsyncEngine) -> None:
    clock = Clock()
    await finished_batch(engine, clock)
    a, b = Outbox(engine, "A", clock), Outbox(engine, "B", clock)
    (held,) = await a.claim_due(8, SEND_LEASE)
    await a.release(held)  # A stops mid-send
    (taken,) = await b.claim_due(8, SEND_LEASE)  # no wait for A's lease
    assert taken.id == held.id and taken.attempts == 2
    await a.release(held)  # A's stale word changes nothing
    assert await a.claim_due(8, SEND_LEASE) == []
