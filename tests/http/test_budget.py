"""The body budget (ocrflux.http.budget): what fits goes, the rest waits briefly, then a 503."""

from __future__ import annotations

import asyncio

import pytest

from ocrflux.errors import APIError
from ocrflux.http.budget import BodyBudget


async def test_reservations_that_fit_are_granted_and_given_back() -> None:
    budget = BodyBudget(100)
    async with budget.hold() as first, budget.hold() as second:
        await first.cover(60)
        await second.cover(40)
        assert budget.held == 100
    assert budget.held == 0


async def test_one_that_does_not_fit_waits_for_room() -> None:
    budget = BodyBudget(100, wait=5)
    first = budget.hold()
    await first.cover(80)
    second = budget.hold()
    waiting = asyncio.ensure_future(second.cover(50))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    first.release()
    await asyncio.wait_for(waiting, 1)
    assert (budget.held, second.size) == (50, 50)


async def test_past_its_wait_it_is_a_503_with_retry_after() -> None:
    budget = BodyBudget(100, wait=0.05)
    first = budget.hold()
    await first.cover(80)
    with pytest.raises(APIError) as refused:
        await budget.hold().cover(50)
    error = refused.value
    assert (error.status, error.code, error.headers) == (503, "server_busy", {"Retry-After": "1"})
    assert "MAX_BODY_MEMORY_BYTES=100" in error.message
    assert budget.held == 80  # nothing of the refused one is kept


async def test_a_small_body_never_waits_behind_a_large_one() -> None:
    budget = BodyBudget(100, wait=5)
    await budget.hold().cover(70)
    large = asyncio.ensure_future(budget.hold().cover(60))
    await asyncio.sleep(0)
    small = budget.hold()
    await asyncio.wait_for(small.cover(20), 0.1)
    assert not large.done()
    large.cancel()
    with pytest.raises(asyncio.CancelledError):
        await large


async def test_a_request_alone_may_take_more_than_the_budget() -> None:
    budget = BodyBudget(100, wait=0.05)
    async with budget.hold() as alone:
        await alone.cover(60)
        await alone.cover(250)  # grows past the limit: nothing else is held
        assert budget.held == 250


async def test_a_cancelled_wait_leaves_no_reservation_behind() -> None:
    budget = BodyBudget(100, wait=5)
    first = budget.hold()
    await first.cover(90)
    waiting = asyncio.ensure_future(budget.hold().cover(50))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    first.release()
    assert budget.held == 0
