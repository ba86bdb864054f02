"""The worker pool: spawned processes, one recogniser each, reads awaited off the event loop."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from ocrflux.engines.local.errors import UnreadableImage
from ocrflux.engines.local.pool import LocalOCRPool
from ocrflux.engines.local.result import LocalPage
from tests.engines.local.pages import english_form
from tests.engines.local.probe import worker_facts

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[LocalOCRPool]:
    pool = LocalOCRPool(workers=1, threads_per_worker=2)
    await pool.start()
    yield pool
    await pool.aclose()


@pytest.fixture(scope="module")
def page_png() -> bytes:
    return english_form().png()


async def wait_until_idle(pool: LocalOCRPool, seconds: float = 60) -> None:
    """Poll: the slot is released by the worker's completion, which no event announces."""
    for _ in range(int(seconds / 0.05)):
        if not pool.in_flight:
            break
        await asyncio.sleep(0.05)
    assert pool.in_flight == 0


async def test_workers_are_fresh_spawned_interpreters(pool: LocalOCRPool) -> None:
    facts = await pool._run(worker_facts)
    assert isinstance(facts, dict)
    assert facts["pid"] != os.getpid()
    assert facts["start_method"] == "spawn"
    # Nothing of this process came along: no event loop, not even the test framework.
    assert facts["running_loop"] is False and facts["policy_loop"] is False
    assert facts["pytest_imported"] is False
    assert facts["omp_threads"] == "2"


async def test_a_read_runs_in_a_worker_without_blocking_the_loop(
    pool: LocalOCRPool, page_png: bytes
) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    beat = asyncio.create_task(ticker())
    started = time.monotonic()
    page = await pool.read(page_png)
    elapsed = time.monotonic() - started
    beat.cancel()
    assert isinstance(page, LocalPage)
    assert page.markdown.startswith("# Site Safety Inspection")
    assert "[√] Fire exits are clear" in page.markdown
    # The loop kept turning while the page was read (a blocked loop would tick ~0 times).
    assert ticks >= 0.3 * elapsed / 0.01


async def test_cancelled_waiting_reads_never_reach_a_worker(
    pool: LocalOCRPool, page_png: bytes
) -> None:
    before = pool.submitted
    first = asyncio.create_task(pool.read(page_png))
    await asyncio.sleep(0.05)
    waiting = [asyncio.create_task(pool.read(page_png)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert pool.in_flight == 1  # one worker: the others queue in asyncio
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert all(task.cancelled() for task in waiting)
    assert isinstance(await first, LocalPage)
    await wait_until_idle(pool)
    assert pool.submitted == before + 1


async def test_cancelling_a_running_read_frees_its_slot_when_the_worker_is_done(
    pool: LocalOCRPool, page_png: bytes
) -> None:
    task = asyncio.create_task(pool.read(page_png))
    await asyncio.sleep(0.1)
    assert pool.in_flight == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_until_idle(pool)
    page = await pool.read(page_png)  # the pool still serves
    assert "Weather: [√] Dry" in page.markdown


async def test_a_bad_image_is_an_error_of_its_own(pool: LocalOCRPool) -> None:
    with pytest.raises(UnreadableImage):
        await pool.read(b"not an image at all")
    await wait_until_idle(pool)


async def test_closed_pool_refuses_work(page_png: bytes) -> None:
    pool = LocalOCRPool(workers=1, threads_per_worker=1)
    await pool.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.read(page_png)


async def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LocalOCRPool(workers=0, threads_per_worker=1)
    with pytest.raises(ValueError):
        LocalOCRPool(workers=1, threads_per_worker=0)


async def test_a_worker_past_its_memory_ceiling_is_replaced_after_its_page(
    pool: LocalOCRPool, page_png: bytes
) -> None:
    tiny = LocalOCRPool(workers=1, threads_per_worker=1, max_rss_bytes=1)  # every worker is over
    try:
        before = await tiny._run(worker_facts)
        page = await tiny.read(page_png)
        after = await tiny._run(worker_facts)
        again = await tiny.read(page_png)
    finally:
        await tiny.aclose()
    assert isinstance(before, dict) and isinstance(after, dict)
    assert before["pid"] != after["pid"]
    assert tiny.recycled == 4  # after each of the four
    assert page.markdown.startswith("# Site Safety Inspection")
    assert again.markdown == page.markdown
    assert pool.recycled == 0  # no ceiling: the same worker all along
