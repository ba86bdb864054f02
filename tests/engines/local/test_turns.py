"""The local engine's turns: who gets the next free worker when several requests wait."""

from __future__ import annotations

import asyncio

import pytest

from ocrflux.engines.local.turns import Flow, Turns


class Bench:
    """Pages asking for workers; `served` lists them in the order they got one."""

    def __init__(self, slots: int) -> None:
        self.turns = Turns(slots)
        self.served: list[str] = []
        self.holding: dict[str, Flow] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    async def ask(self, key: str, page: str, background: bool = False) -> None:
        async def one() -> None:
            flow = await self.turns.acquire(key, background)
            self.served.append(page)
            self.holding[page] = flow

        self.tasks[page] = asyncio.create_task(one())
        await asyncio.sleep(0)  # it is waiting (or served) before the next one asks

    async def done(self, page: str) -> None:
        self.turns.release(self.holding.pop(page))
        await asyncio.sleep(0)  # the next one runs


async def test_with_two_requests_waiting_the_newcomer_goes_before_the_documents_queue() -> None:
    bench = Bench(slots=1)
    for n in range(1, 5):
        await bench.ask("doc", f"doc{n}")
    assert bench.served == ["doc1"]
    await bench.ask("one-image", "img1")
    await bench.done("doc1")
    assert bench.served == ["doc1", "img1"]  # not doc2: the document has had its turn
    await bench.done("img1")
    await bench.done("doc2")
    await bench.done("doc3")
    assert bench.served == ["doc1", "img1", "doc2", "doc3", "doc4"]
    assert bench.turns.flows == 1


async def test_with_three_requests_waiting_each_gets_a_turn_in_order_of_arrival() -> None:
    bench = Bench(slots=1)
    for n in range(1, 4):
        await bench.ask("A", f"a{n}")
    for n in range(1, 3):
        await bench.ask("B", f"b{n}")
    await bench.ask("C", "c1")
    for page in ["a1", "b1", "c1", "a2", "b2"]:
        await bench.done(page)
    assert bench.served == ["a1", "b1", "c1", "a2", "b2", "a3"]
    await bench.done("a3")
    assert bench.turns.flows == 0 and bench.turns.free == 1


async def test_the_request_with_fewest_pages_in_the_workers_goes_next() -> None:
    bench = Bench(slots=2)
    for n in range(1, 5):
        await bench.ask("doc", f"doc{n}")
    assert bench.served == ["doc1", "doc2"]  # both workers: nobody else waits
    await bench.ask("img", "img1")
    await bench.ask("img", "img2")
    await bench.done("doc1")
    assert bench.served[-1] == "img1"  # img has none in the workers, doc has one
    await bench.done("doc2")
    # doc and img have one page each in the workers now; img was served last: doc goes.
    assert bench.served[-1] == "doc3"
    await bench.done("img1")
    assert bench.served[-1] == "img2"


async def test_batch_pages_go_only_when_no_client_page_waits_and_use_half_the_workers() -> None:
    bench = Bench(slots=2)
    for n in range(1, 4):
        await bench.ask("batch", f"bg{n}", background=True)
    assert bench.served == ["bg1"]  # half of 2 workers
    await bench.ask("client", "c1")
    assert bench.served == ["bg1", "c1"]
    await bench.ask("client", "c2")
    await bench.done("bg1")
    assert bench.served[-1] == "c2"  # a client's page waits: the batch does not go
    await bench.done("c1")
    assert bench.served[-1] == "bg2"


async def test_a_cancelled_wait_leaves_no_trace_and_passes_a_granted_worker_on() -> None:
    bench = Bench(slots=1)
    await bench.ask("A", "a1")
    await bench.ask("B", "b1")
    await bench.ask("C", "c1")
    bench.tasks["b1"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await bench.tasks["b1"]
    await bench.done("a1")
    assert bench.served == ["a1", "c1"]
    await bench.done("c1")
    assert bench.turns.flows == 0 and bench.turns.free == 1


async def test_a_worker_granted_to_a_page_cancelled_meanwhile_goes_to_the_next() -> None:
    turns = Turns(1)
    first = await turns.acquire("A")
    waiting = asyncio.create_task(turns.acquire("B"))
    await asyncio.sleep(0)
    turns.release(first)  # B is granted the worker...
    waiting.cancel()  # ...and cancelled before it resumed
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert turns.free == 1 and turns.flows == 0
    again = await asyncio.wait_for(turns.acquire("C"), 1)
    turns.release(again)
