"""Admission control: the slot limit, the bounded queue, its timeout, and fair share."""

from __future__ import annotations

import asyncio

import pytest

from ocrflux.upstream.admission import Admission, QueueFull, QueueTimeout


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_slots_up_to_the_limit_are_granted_at_once() -> None:
    admission = Admission(limit=2, max_queue=10, timeout=5)
    assert await admission.acquire("a") == 0.0
    assert await admission.acquire("b") == 0.0
    assert admission.in_use == 2
    third = asyncio.ensure_future(admission.acquire("c"))
    await settle()
    assert not third.done() and admission.queued == 1
    admission.release("a")
    assert await third >= 0.0
    assert admission.in_use == 2 and admission.queued == 0
    admission.release("b")
    admission.release("c")
    assert admission.in_use == 0


async def test_beyond_the_queue_is_refused_with_a_retry_hint() -> None:
    admission = Admission(limit=1, max_queue=2, timeout=5)
    await admission.acquire("a")
    waiting = [asyncio.ensure_future(admission.acquire(f"w{n}")) for n in range(2)]
    await settle()
    with pytest.raises(QueueFull) as refused:
        await admission.acquire("late")
    assert refused.value.retry_after >= 1
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert admission.queued == 0


async def test_a_call_that_waits_too_long_times_out_and_leaves_the_queue() -> None:
    admission = Admission(limit=1, max_queue=5, timeout=0.05)
    await admission.acquire("a")
    with pytest.raises(QueueTimeout) as late:
        await admission.acquire("b")
    assert late.value.retry_after >= 1
    assert admission.queued == 0
    admission.release("a")
    assert admission.in_use == 0  # the expired waiter did not get the slot


async def test_cancelled_waiters_leave_no_trace() -> None:
    admission = Admission(limit=1, max_queue=5, timeout=5)
    await admission.acquire("a")
    waiter = asyncio.ensure_future(admission.acquire("b"))
    await settle()
    waiter.cancel()
    await asyncio.gather(waiter, return_exceptions=True)
    assert admission.queued == 0 and admission.held("b") == 0
    admission.release("a")
    assert admission.in_use == 0


async def test_a_slot_handed_to_a_call_cancelled_at_that_moment_is_passed_on() -> None:
    admission = Admission(limit=1, max_queue=5, timeout=5)
    await admission.acquire("a")
    first = asyncio.ensure_future(admission.acquire("b"))
    second = asyncio.ensure_future(admission.acquire("c"))
    await settle()
    admission.release("a")  # hands the slot to b's future ...
    first.cancel()  # ... but b is cancelled before it runs again
    await asyncio.gather(first, return_exceptions=True)
    assert await second == pytest.approx(0.0, abs=1)  # c got the slot b could not use
    assert admission.in_use == 1 and admission.held("b") == 0 and admission.held("c") == 1


async def test_waiters_cancelled_just_before_a_release_do_not_swallow_the_slot() -> None:
    # A client that left cancels its calls; before their tasks run again, another call may
    # finish and hand its slot on: it must skip them, not lose the slot.
    admission = Admission(limit=2, max_queue=10, timeout=5)
    await admission.acquire("a")
    await admission.acquire("b")
    gone = [asyncio.ensure_future(admission.acquire("gone")) for _ in range(3)]
    await settle()
    for task in gone:
        task.cancel()
    admission.release("a")  # no settling in between: the cancelled waiters are still queued
    admission.release("b")
    await asyncio.gather(*gone, return_exceptions=True)
    assert admission.in_use == 0 and admission.queued == 0
    assert admission.held("gone") == 0
    assert await admission.acquire("next") == 0.0  # the slots are really free


async def test_fair_share_a_single_request_overtakes_a_document_queue() -> None:
    admission = Admission(limit=4, max_queue=1000, timeout=30)
    order: list[str] = []

    async def call(flow: str) -> None:
        await admission.acquire(flow)
        order.append(flow)

    # A 100-page document takes every slot and queues the rest of its pages.
    document = [asyncio.ensure_future(call("doc")) for _ in range(100)]
    await settle()
    assert admission.held("doc") == 4 and admission.queued == 96
    single = asyncio.ensure_future(call("single"))
    await settle()
    admission.release("doc")  # the first page finishes
    await settle()
    assert single.done(), "the single request must get the very next slot"
    assert order[4] == "single"
    for task in document:
        task.cancel()
    await asyncio.gather(*document, return_exceptions=True)


async def test_slots_go_round_robin_between_flows_holding_equal_shares() -> None:
    admission = Admission(limit=2, max_queue=100, timeout=30)
    granted: list[str] = []

    async def call(flow: str) -> None:
        await admission.acquire(flow)
        granted.append(flow)

    await admission.acquire("x")
    await admission.acquire("y")
    tasks = [asyncio.ensure_future(call(flow)) for flow in ["a"] * 3 + ["b"] * 3]
    await settle()
    for flow in ["x", "y", "a", "b", "a", "b"]:
        admission.release(flow)
        await settle()
    assert granted == ["a", "b", "a", "b", "a", "b"]  # not a, a, a, b, b, b
    await asyncio.gather(*tasks)


async def test_retry_after_grows_with_the_queue() -> None:
    admission = Admission(limit=2, max_queue=100, timeout=30)
    admission.mean_hold = 2.0
    empty = admission.retry_after()
    await admission.acquire("a")
    await admission.acquire("a")
    waiting = [asyncio.ensure_future(admission.acquire("b")) for _ in range(20)]
    await settle()
    assert admission.retry_after() > empty
    assert admission.retry_after() == 21  # 21 calls ahead / 2 slots x 2 s, rounded up
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
