"""ImagePreparer: image work of concurrent requests takes turns in the thread pool."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ocrflux.intake import preparation
from ocrflux.intake.preparation import ImagePreparer
from ocrflux.observability import request_id_var
from ocrflux.settings import Settings
from ocrflux.work_class import background_work


@pytest.fixture
def order(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the images the pool worked on, in the order it started them (each ~20 ms)."""
    started: list[str] = []

    def slow_rotate(image: Any, degrees: int, opts: Any) -> Any:
        started.append(image)
        time.sleep(0.02)
        return image

    monkeypatch.setattr(preparation, "rotate", slow_rotate)
    return started


async def request(preparer: ImagePreparer, request_id: str, images: list[str]) -> list[Any]:
    request_id_var.set(request_id)  # what the edge layer does for every request
    return await asyncio.gather(*(preparer.rotate(image, 90) for image in images))  # type: ignore[arg-type]


async def until_started(order: list[str]) -> None:
    for _ in range(1000):
        if order:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the pool never started")


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_request_of_many_images_does_not_queue_them_all_ahead_of_the_next(
    order: list[str], workers: int
) -> None:
    # Before: the pool was first come, first served, so a single image sent while a
    # 40-image request was being prepared waited for all 40.
    preparer = ImagePreparer(Settings(image_workers=workers))
    try:
        big = asyncio.create_task(request(preparer, "big", [f"big{i}" for i in range(40)]))
        await until_started(order)
        small = await asyncio.create_task(request(preparer, "small", ["small"]))
        assert small == ["small"]
        assert order.index("small") <= 2 * workers, order
        assert len(await big) == 40
    finally:
        await preparer.aclose()
    assert preparer.flows == 0  # nothing is kept once the requests are done


async def test_work_outside_a_request_is_not_held_back(order: list[str]) -> None:
    preparer = ImagePreparer(Settings(image_workers=2))
    try:
        # No request id (start-up, tests): no turns, every job goes to the pool at once.
        assert await asyncio.gather(*(preparer.rotate(n, 90) for n in "abcd")) == list("abcd")  # type: ignore[arg-type]
    finally:
        await preparer.aclose()


async def test_batch_image_work_holds_at_most_half_the_pool(order: list[str]) -> None:
    preparer = ImagePreparer(Settings(image_workers=4))

    async def line(n: int) -> list[Any]:
        with background_work():
            return await request(preparer, f"batch-{n}", [f"b{n}-{i}" for i in range(4)])

    try:
        lines = [asyncio.create_task(line(n)) for n in range(3)]  # 3 lines x 4 images
        await until_started(order)
        client = await asyncio.create_task(request(preparer, "client", ["c0", "c1"]))
        assert client == ["c0", "c1"]
        assert order.index("c1") <= 3, order  # behind at most the 2 batch jobs in the pool
        assert sum(len(done) for done in await asyncio.gather(*lines)) == 12
    finally:
        await preparer.aclose()
    assert preparer.flows == 0
