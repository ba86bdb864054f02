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


async def _served_in_turn(flows: list[str], calls_each: int) -> list[str]:
    """With one slot, each call releasing as soon as it is granted: who is served, in order."""
    admission = Admission(limit=1, max_queue=100, timeout=30)
    granted: list[str] = []

    async def call(flow: str) -> None:
        await admission.acquire(flow)
        granted.append(flow)

    await admission.acquire("first")
    tasks = [asyncio.ensure_future(call(f)) for f in flows for _ in range(calls_each)]
    await settle()
    admission.release("first")
    await settle()
    # Every choice below is made between flows that hold nothing: only the turn order decides.
    while len(granted) < len(tasks):
        served = len(granted)
        admission.release(granted[-1])
        await settle()
        assert len(granted) == served + 1
    await asyncio.gather(*tasks)
    admission.release(granted[-1])
    assert admission.in_use == 0
    return granted


async def test_the_flow_just_served_goes_to_the_back_of_the_turn_order() -> None:
    # Two flows waiting: after a's call, b is next (a served again would starve b).
    assert await _served_in_turn(["a", "b"], 3) == ["a", "b", "a", "b", "a", "b"]


async def test_three_waiting_flows_are_served_in_turn() -> None:
    served = await _served_in_turn(["a", "b", "c"], 3)
    assert served == ["a", "b", "c", "a", "b", "c", "a", "b", "c"]


async def test_a_flow_arriving_later_waits_for_its_turn_behind_the_earlier_ones() -> None:
    admission = Admission(limit=1, max_queue=100, timeout=30)
    granted: list[str] = []

    async def call(flow: str) -> None:
        await admission.acquire(flow)
        granted.append(flow)

    await admission.acquire("first")
    tasks = [asyncio.ensure_future(call(f)) for f in ["a", "a", "b", "b"]]
    await settle()
    admission.release("first")  # a is served: the turn order is now b, a
    await settle()
    tasks.append(asyncio.ensure_future(call("c")))  # c joins behind them: b, a, c
    await settle()
    for _ in range(4):
        admission.release(granted[-1])
        await settle()
    assert granted == ["a", "b", "a", "c", "b"]
    await asyncio.gather(*tasks)
    admission.release(granted[-1])


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


async def test_a_documents_waiting_pages_count_once_against_the_queue_bound() -> None:
    # MAX_CONCURRENT_REQUESTS=2, MAX_QUEUE=2: an 8-page document takes both slots and queues
    # its other 6 pages; two clients' single calls must still find room in the queue.
    admission = Admission(limit=2, max_queue=2, timeout=30)
    pages = [asyncio.ensure_future(admission.acquire("document")) for _ in range(8)]
    await settle()
    assert admission.held("document") == 2 and admission.queued == 6
    first = asyncio.ensure_future(admission.acquire("client-1"))
    await settle()
    assert not first.done() and admission.queued == 7  # waiting, not refused
    with pytest.raises(QueueFull):  # a third flow is one too many
        await admission.acquire("client-2")
    admission.release("document")
    await settle()
    assert first.done() and admission.held("client-1") == 1  # fair share: next slot is its
    for task in pages:
        task.cancel()
    await asyncio.gather(*pages, return_exceptions=True)


async def test_background_calls_take_only_free_slots_and_never_make_interactive_ones_wait() -> None:
    admission = Admission(limit=2, max_queue=0, timeout=30)
    # A batch fills the idle gateway: two calls run, the third waits for capacity.
    assert await admission.acquire("batch", background=True) == 0.0
    assert await admission.acquire("batch", background=True) == 0.0
    third = asyncio.ensure_future(admission.acquire("batch", background=True))
    await settle()
    assert not third.done() and admission.background_queued == 1
    # Interactive calls still get their two slots at once (MAX_QUEUE=0: any wait would be a
    # 429), beside the background calls in flight.
    assert await admission.acquire("client-1") == 0.0
    assert await admission.acquire("client-2") == 0.0
    assert admission.in_use == 4 and admission.background_in_use == 2
    # A background call finishing frees nothing for the batch while clients hold the slots.
    admission.release("batch", background=True)
    await settle()
    assert not third.done() and admission.in_use == 3
    admission.release("client-1")
    await settle()
    assert not third.done(), "2 calls still in flight: no room below the limit"
    admission.release("client-2")
    await settle()
    assert third.done() and admission.background_in_use == 2
    admission.release("batch", background=True)
    admission.release("batch", background=True)
    assert admission.in_use == 0 and admission.background_in_use == 0


async def test_a_freed_slot_goes_to_a_waiting_interactive_call_before_any_background_one() -> None:
    admission = Admission(limit=1, max_queue=10, timeout=30)
    order: list[str] = []

    async def call(flow: str, background: bool) -> None:
        await admission.acquire(flow, background=background)
        order.append(flow)

    await admission.acquire("client-0")
    batch = asyncio.ensure_future(call("batch", True))
    await settle()
    client = asyncio.ensure_future(call("client-1", False))
    await settle()
    admission.release("client-0")  # the batch waited longer, the client goes first
    await settle()
    assert order == ["client-1"]
    admission.release("client-1")
    await settle()
    assert order == ["client-1", "batch"]
    await asyncio.gather(batch, client)
    admission.release("batch", background=True)
    assert admission.in_use == 0


async def test_background_calls_never_time_out_and_cancel_cleanly() -> None:
    admission = Admission(limit=1, max_queue=10, timeout=0.01)
    await admission.acquire("client")
    waiting = asyncio.ensure_future(admission.acquire("batch", background=True))
    await asyncio.sleep(0.05)  # five QUEUE_TIMEOUTs
    assert not waiting.done()
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert admission.background_queued == 0
    admission.release("client")
    assert admission.in_use == 0 and admission.background_in_use == 0
