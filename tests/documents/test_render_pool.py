"""The render pool's turns, priorities and deaths (ocrflux.documents.render_pool), with real
spawn workers running standard-library tasks."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest

from ocrflux.documents import render_pool
from ocrflux.documents.raster import worker_init
from ocrflux.documents.render_pool import RenderPool, WorkerDied


@pytest.fixture
async def pool() -> AsyncIterator[RenderPool]:
    rendering = RenderPool(1, worker_init)  # one worker, and the spare
    yield rendering
    await rendering.aclose()


async def test_a_document_takes_turns_with_another_it_came_before(pool: RenderPool) -> None:
    done: list[str] = []

    async def task(flow: str, seconds: float) -> None:
        await pool.run(flow, time.sleep, seconds)
        done.append(flow)

    first = [asyncio.create_task(task("long", 0.3)) for _ in range(4)]
    await asyncio.sleep(0)
    later = asyncio.create_task(task("short", 0.0))
    await asyncio.gather(*first, later)
    # "long" holds one process (its share beside another document); "short" has the other.
    assert done.index("short") <= 1, done
    assert pool.flows == 0


async def test_a_dead_worker_fails_its_own_task_alone(pool: RenderPool) -> None:
    died, slept = await asyncio.gather(
        pool.run("killer", os._exit, 1),
        pool.run("other", time.sleep, 0.5),
        return_exceptions=True,
    )
    assert isinstance(died, WorkerDied)
    assert slept is None
    assert await pool.run("killer", os.getpid) in pool.pids()  # replaced, and working


async def test_a_long_task_drops_to_the_lowest_priority_then_its_worker_is_replaced(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_pool, "LONG_TASK_SECONDS", 0.2)
    assert await pool.run("quick", os.getpid) in pool.pids()
    assert {os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids()} == {10}
    long = asyncio.create_task(pool.run("long", time.sleep, 1.0))
    for _ in range(40):
        await asyncio.sleep(0.05)
        priorities = sorted(os.getpriority(os.PRIO_PROCESS, pid) for pid in pool.pids())
        if priorities == [10, 19]:
            break
    assert priorities == [10, 19]
    demoted = [pid for pid in pool.pids() if os.getpriority(os.PRIO_PROCESS, pid) == 19]
    await long
    for _ in range(100):  # its replacement starts
        if len(pool.pids()) == 2 and demoted[0] not in pool.pids():
            break
        await asyncio.sleep(0.05)
    assert demoted[0] not in pool.pids() and len(pool.pids()) == 2


async def test_a_long_task_nobody_waits_for_is_ended(
    pool: RenderPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(render_pool, "LONG_TASK_SECONDS", 0.2)
    assert await pool.run("quick", os.getpid) in pool.pids()
    before = set(pool.pids())
    long = asyncio.create_task(pool.run("long", time.sleep, 60))
    for _ in range(40):  # demoted: it has been drawing "long"
        await asyncio.sleep(0.05)
        if any(os.getpriority(os.PRIO_PROCESS, pid) == 19 for pid in pool.pids()):
            break
    long.cancel()  # its client left: the 60 s task is ended, not left to burn its budget
    with pytest.raises(asyncio.CancelledError):
        await long
    for _ in range(100):
        if len(pool.pids()) == 2 and len(before & set(pool.pids())) == 1:
            break
        await asyncio.sleep(0.05)
    assert len(before & set(pool.pids())) == 1 and len(pool.pids()) == 2
    assert pool.flows == 0


async def test_closing_ends_a_task_still_running() -> None:
    closing = RenderPool(1, worker_init)
    assert await closing.run("quick", os.getpid) in closing.pids()
    long = asyncio.create_task(closing.run("long", time.sleep, 60))
    await asyncio.sleep(0.3)
    await asyncio.wait_for(closing.aclose(), 20)  # not the 60 s the task would take
    results = await asyncio.gather(long, return_exceptions=True)
    assert isinstance(results[0], WorkerDied | asyncio.CancelledError)
