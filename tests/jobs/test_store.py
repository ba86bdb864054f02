"""The jobs store on SQLite and PostgreSQL: leases, fenced commits, a batch's life, pages."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from ocrflux.jobs.records import BatchRecord, FileRecord, LineResult, LineSpec, Status
from ocrflux.jobs.store import Catalog, WorkQueue, connect
from ocrflux.jobs.store.schema import SchemaTooNew, batches, schema_version

LEASE = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def a_file(file_id: str = "file-in", owner: str = "alice", created: int = 1) -> FileRecord:
    return FileRecord(file_id, owner, "batch", "in.jsonl", 10, created, file_id, num_lines=3)


def a_batch(batch_id: str = "batch_1", owner: str = "alice", created: int = 1) -> BatchRecord:
    return BatchRecord(
        id=batch_id,
        owner=owner,
        api="openai",
        endpoint="/v1/ocr",
        input_files=["file-in"],
        completion_window="24h",
        created_at=created,
        expires_at=created + 86_400,
    )


def specs(n: int, start: int = 0) -> list[LineSpec]:
    return [LineSpec(i, f"req-{i}", 0, i * 10, 9) for i in range(start, start + n)]


def ok(body: bytes = b'{"ok":true}') -> LineResult:
    return LineResult(200, body, "rid", prompt_tokens=3, completion_tokens=4)


async def running_batch(
    engine: AsyncEngine, clock: Clock, lines: int, batch_id: str = "batch_1"
) -> WorkQueue:
    """A batch validated with `lines` lines, and the queue of gateway "A"."""
    catalog = Catalog(engine, clock)
    await catalog.add_batch(a_batch(batch_id, created=int(clock.now)))
    queue = WorkQueue(engine, "A", clock)
    claimed = await queue.claim_validation(LEASE)
    assert claimed is not None and claimed.id == batch_id
    assert await queue.add_lines(batch_id, specs(lines)) == []
    assert await queue.validated(batch_id, lines, LEASE)
    return queue


async def get(engine: AsyncEngine, batch_id: str = "batch_1") -> BatchRecord:
    found = await Catalog(engine).get_batch("alice", batch_id)
    assert found is not None
    return found


async def test_connecting_again_keeps_the_schema_and_a_newer_one_is_refused(
    engine: AsyncEngine,
) -> None:
    url = engine.url.render_as_string(hide_password=False)
    again = await connect(url)  # migrations already applied: nothing to do, no error
    async with again.begin() as conn:
        await conn.execute(insert(schema_version).values(version=99, applied_at=0.0))
    await again.dispose()
    with pytest.raises(SchemaTooNew, match="schema version 99"):
        await connect(url)


async def test_files_are_seen_by_their_owner_only_and_listed_in_pages(engine: AsyncEngine) -> None:
    catalog = Catalog(engine)
    for n in range(12):
        await catalog.add_file(a_file(f"file-{n:02d}", created=100 + n))
    await catalog.add_file(a_file("file-bob", owner="bob", created=105))
    assert await catalog.get_file("bob", "file-03") is None
    assert (await catalog.get_file("alice", "file-03")) == a_file("file-03", created=103)
    first, total = await catalog.list_files("alice", limit=5)
    assert total == 12
    assert [f.id for f in first] == ["file-11", "file-10", "file-09", "file-08", "file-07"]
    second, _ = await catalog.list_files("alice", limit=5, after="file-07")
    assert [f.id for f in second] == ["file-06", "file-05", "file-04", "file-03", "file-02"]
    oldest, _ = await catalog.list_files("alice", limit=3, newest_first=False)
    assert [f.id for f in oldest] == ["file-00", "file-01", "file-02"]
    assert await catalog.delete_file("bob", "file-00") is None
    assert (await catalog.delete_file("alice", "file-00")) is not None
    assert await catalog.get_file("alice", "file-00") is None


async def test_repeated_custom_ids_are_reported_by_line_across_chunks(engine: AsyncEngine) -> None:
    catalog, queue = Catalog(engine), WorkQueue(engine, "A")
    await catalog.add_batch(a_batch())
    first = await queue.add_lines("batch_1", [*specs(3), LineSpec(3, "req-1", 0, 30, 9)])
    assert first == [3]  # the same chunk
    second = await queue.add_lines("batch_1", [LineSpec(4, "req-0", 0, 40, 9), *specs(1, 5)])
    assert second == [4]  # an earlier chunk


async def test_two_gateways_never_claim_the_same_line(engine: AsyncEngine) -> None:
    clock = Clock()
    queue_a = await running_batch(engine, clock, 200)
    queue_b = WorkQueue(engine, "B", clock)
    batch = await get(engine)

    async def claim_all(queue: WorkQueue) -> list[int]:
        taken: list[int] = []
        while lines := await queue.claim_lines(batch, ["key"], 7, LEASE):
            taken += [line.line_no for line in lines]
            await asyncio.sleep(0)
        return taken

    a, b = await asyncio.gather(claim_all(queue_a), claim_all(queue_b))
    assert sorted(a + b) == list(range(200))
    assert not set(a) & set(b)


async def test_lines_are_claimed_in_line_order_and_an_expired_one_comes_first_again(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 12)
    batch = await get(engine)
    claims = []
    for _ in range(3):
        claims.append([c.line_no for c in await queue.claim_lines(batch, ["key"], 5, LEASE)])
    assert claims == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11]]  # 10 after 9, not after 1
    assert await queue.claim_lines(batch, ["key"], 5, LEASE) == []  # all leased
    # Every lease expires (the gateway is gone): claimed again from the lowest line.
    clock.now += LEASE + 1
    taken = await queue.claim_lines(batch, ["key"], 3, LEASE)
    assert [(t.line_no, t.attempts) for t in taken] == [(0, 2), (1, 2), (2, 2)]


async def test_an_expired_lease_moves_the_line_and_fences_out_the_old_commit(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    queue_a = await running_batch(engine, clock, 2)
    queue_b = WorkQueue(engine, "B", clock)
    batch = await get(engine)
    (line_a, _) = await queue_a.claim_lines(batch, ["key"], 2, LEASE)
    assert await queue_b.claim_lines(batch, ["key"], 2, LEASE) == []  # leased: not claimable
    clock.now += LEASE - 1
    await queue_a.renew_lines(LEASE)  # renews what A still runs (both lines)
    clock.now += 2
    assert await queue_b.claim_lines(batch, ["key"], 2, LEASE) == []  # renewed in time
    clock.now += LEASE + 1  # A is gone: it stopped renewing
    taken = await queue_b.claim_lines(batch, ["key"], 1, LEASE)
    assert [(t.line_no, t.attempts) for t in taken] == [(0, 2)]
    assert not await queue_a.commit(line_a, ok(b'{"from":"A"}'))  # fenced: B holds it now
    assert await queue_b.commit(taken[0], ok(b'{"from":"B"}'))
    assert (await get(engine)).succeeded == 1
    lines = [line async for line in queue_b.finished_lines("batch_1")]
    assert lines[0].result == b'{"from":"B"}' and lines[0].state == "succeeded"


async def test_a_commit_counts_once_with_its_usage(engine: AsyncEngine) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 3)
    batch = await get(engine)
    lines = await queue.claim_lines(batch, ["key"], 3, LEASE)
    assert await queue.commit(lines[0], ok())
    assert not await queue.commit(lines[0], ok())  # the same result again: not counted
    assert await queue.commit(lines[1], LineResult(400, b'{"error":{}}', "rid"))
    after = await get(engine)
    assert (after.succeeded, after.failed, after.total) == (1, 1, 3)
    assert (after.prompt_tokens, after.completion_tokens) == (3, 4)


async def test_a_finished_batch_is_finalized_once_and_takes_no_late_results(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 2)
    other = WorkQueue(engine, "B", clock)
    batch = await get(engine)
    lines = await queue.claim_lines(batch, ["key"], 2, LEASE)
    assert await queue.commit(lines[0], ok())
    assert await other.claim_finalize(LEASE) is None  # a line is still running
    assert await queue.commit(lines[1], ok())
    finalizing = await other.claim_finalize(LEASE)
    assert finalizing is not None and finalizing.status is Status.FINALIZING
    assert finalizing.outcome is Status.COMPLETED
    assert await queue.claim_finalize(LEASE) is None  # B holds the finalization
    output = FileRecord("file-out", "alice", "batch_output", "out.jsonl", 5, 1, "file-out")
    assert await other.close_batch(finalizing, Status.COMPLETED, [output], never_ran=0)
    done = await get(engine)
    assert done.status is Status.COMPLETED and done.output_file_id == "file-out"
    assert done.completed_at == int(clock.now)
    assert await Catalog(engine).get_file("alice", "file-out") == output


async def test_a_dead_finalizer_is_replaced_after_its_lease(engine: AsyncEngine) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 1)
    (line,) = await queue.claim_lines(await get(engine), ["key"], 1, LEASE)
    assert await queue.commit(line, ok())
    assert await queue.claim_finalize(LEASE) is not None  # A starts, then dies
    successor = WorkQueue(engine, "B", clock)
    assert await successor.claim_finalize(LEASE) is None
    clock.now += LEASE + 1
    again = await successor.claim_finalize(LEASE)
    assert again is not None and again.id == "batch_1"
    stale = await get(engine)
    assert not await queue.close_batch(stale, Status.COMPLETED, [], 0)  # A's lease is gone


async def test_cancel_stops_claims_waits_for_live_leases_then_finalizes(
    engine: AsyncEngine,
) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 5)
    catalog = Catalog(engine, clock)
    (running,) = await queue.claim_lines(await get(engine), ["key"], 1, LEASE)
    cancelled = await catalog.cancel("alice", "batch_1")
    assert cancelled is not None and cancelled.status is Status.CANCELLING
    assert cancelled.outcome is Status.CANCELLED and cancelled.cancelling_at == int(clock.now)
    assert await queue.claim_lines(await get(engine), ["key"], 5, LEASE) == []
    assert await queue.stopped({"batch_1"}) == {"batch_1"}  # cancel your lines
    assert await queue.claim_finalize(LEASE) is None  # a live lease: not yet
    assert await queue.commit(running, ok())  # what finishes meanwhile is kept
    finalizing = await queue.claim_finalize(LEASE)
    assert finalizing is not None and finalizing.outcome is Status.CANCELLED
    states = [line.state async for line in queue.finished_lines("batch_1")]
    assert states == ["succeeded", "pending", "pending", "pending", "pending"]
    assert await queue.close_batch(finalizing, Status.CANCELLED, [], never_ran=4)
    done = await get(engine)
    assert (done.status, done.succeeded, done.failed) == (Status.CANCELLED, 1, 4)
    assert await catalog.cancel("alice", "batch_1") == done  # an ended batch stays as it is


async def test_a_batch_past_its_window_expires(engine: AsyncEngine) -> None:
    clock = Clock()
    queue = await running_batch(engine, clock, 1)
    assert await queue.expire_due() == []
    clock.now = (await get(engine)).expires_at
    assert await queue.expire_due() == ["batch_1"]
    expired = await get(engine)
    assert (expired.status, expired.outcome) == (Status.CANCELLING, Status.EXPIRED)


async def test_a_refused_batch_keeps_no_lines(engine: AsyncEngine) -> None:
    catalog, queue = Catalog(engine), WorkQueue(engine, "A")
    await catalog.add_batch(a_batch())
    assert await queue.claim_validation(LEASE) is not None
    await queue.add_lines("batch_1", specs(3))
    errors = [{"code": "invalid_json_line", "message": "x", "param": None, "line": 2}]
    assert await queue.refuse("batch_1", errors)
    refused = await get(engine)
    assert refused.status is Status.FAILED and refused.errors == errors
    assert [line async for line in queue.finished_lines("batch_1")] == []


@pytest.mark.parametrize("limit", [1, 3])
async def test_batches_list_newest_first_by_owner(engine: AsyncEngine, limit: int) -> None:
    catalog = Catalog(engine)
    for n in range(5):
        await catalog.add_batch(a_batch(f"batch_{n}", created=10 + n))
    await catalog.add_batch(a_batch("batch_bob", owner="bob", created=12))
    seen: list[str] = []
    after = None
    while True:
        page, total = await catalog.list_batches("alice", limit=limit, after=after)
        assert total == 5
        if not page:
            break
        seen += [b.id for b in page]
        after = page[-1].id
    assert seen == ["batch_4", "batch_3", "batch_2", "batch_1", "batch_0"]
    assert await catalog.active_batches("alice") == 5
    filtered, _ = await catalog.list_batches("alice", limit=10, statuses=[Status.COMPLETED])
    assert filtered == []


async def test_batches_are_filtered_by_model_and_metadata_pairs(engine: AsyncEngine) -> None:
    from dataclasses import replace

    catalog = Catalog(engine)
    tags = [("ocr-a", {"team": "red", "k'\"$.x": "1"}), ("ocr-b", {"team": "red"}), ("ocr-a", None)]
    for n, (model, metadata) in enumerate(tags):
        await catalog.add_batch(replace(a_batch(f"batch_{n}"), model=model, metadata=metadata))

    async def ids(**filters: object) -> list[str]:
        found, total = await catalog.list_batches("alice", limit=10, **filters)  # type: ignore[arg-type]
        assert total == len(found)
        return [b.id for b in found]

    assert await ids(model="ocr-a") == ["batch_2", "batch_0"]
    assert await ids(metadata={"team": "red"}) == ["batch_1", "batch_0"]
    assert await ids(metadata={"team": "red", "k'\"$.x": "1"}) == ["batch_0"]
    assert await ids(metadata={"team": "blue"}) == []
    assert await ids(oldest_first=True) == ["batch_0", "batch_1", "batch_2"]
    page, _ = await catalog.list_batches("alice", limit=1, after="batch_0", oldest_first=True)
    assert [b.id for b in page] == ["batch_1"]


async def test_the_embedded_database_is_sqlite_in_wal_mode_under_data_dir(tmp_path: Path) -> None:
    from sqlalchemy import text

    from ocrflux.jobs.store import database_url

    url = database_url("", str(tmp_path / "data"))
    engine = await connect(url)
    try:
        async with engine.connect() as conn:
            mode = (await conn.execute(text("PRAGMA journal_mode"))).scalar_one()
            synchronous = (await conn.execute(text("PRAGMA synchronous"))).scalar_one()
        assert (mode, synchronous) == ("wal", 1)  # 1: NORMAL
        assert (tmp_path / "data" / "jobs.sqlite3").exists()
    finally:
        await engine.dispose()


async def test_a_mistral_status_filter_finds_exactly_the_jobs_shown_with_that_status(
    engine: AsyncEngine,
) -> None:
    from dataclasses import replace

    from ocrflux.jobs.wire import MISTRAL_PHASES, mistral_status

    catalog = Catalog(engine)
    states = [(s, None) for s in Status if s not in (Status.CANCELLING, Status.FINALIZING)]
    states += [(Status.CANCELLING, Status.CANCELLED), (Status.CANCELLING, Status.EXPIRED)]
    states += [(Status.FINALIZING, o) for o in (Status.COMPLETED, Status.CANCELLED, Status.EXPIRED)]
    made = []
    for n, (status, outcome) in enumerate(states):
        made.append(replace(a_batch(f"batch_{n:02d}"), status=status, outcome=outcome))
        await catalog.add_batch(made[-1])
    async with engine.begin() as conn:  # add_batch writes a new batch: set the states
        for batch in made:
            await conn.execute(
                batches.update()
                .where(batches.c.id == batch.id)
                .values(status=batch.status.value, outcome=batch.outcome and batch.outcome.value)
            )
    for name, phases in MISTRAL_PHASES.items():
        found, _ = await catalog.list_batches("alice", limit=100, phases=phases)
        shown = {b.id for b in made if mistral_status(b) == name}
        assert {b.id for b in found} == shown, name
    assert set(MISTRAL_PHASES) == {mistral_status(b) for b in made}
