"""Who is read next by the local engine's workers: requests take turns, pages do not queue.

Pages wait for a worker per request (a flow). When a worker is free, the flow with the fewest
pages in the workers now goes next, and among equals the one served longest ago (a flow not
served yet first, in order of arrival): a one-page request beside a 1,000-page document waits
for one page, not for the document's queue. Pages of one flow go in the order they asked.
Batch lines' pages (background work, `ocrflux.work_class`) go only when no client's page
waits, and hold at most half the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque


class Flow:
    """One request's pages: waiting (in order) and in the workers."""

    __slots__ = ("background", "key", "running", "served", "waiting")

    def __init__(self, key: str, background: bool) -> None:
        self.key = key
        self.background = background
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.running = 0
        self.served = -1  # when it last got a worker (a tick of `Turns`), -1: never

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running


class Turns:
    """`slots` workers shared by flows: `flow = await turns.acquire(key)`, then `release(flow)`."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.slots = slots
        self.free = slots
        self.background_limit = max(1, slots // 2)
        self.background_running = 0
        self._flows: dict[tuple[str, bool], Flow] = {}
        self._ticks = itertools.count()

    @property
    def flows(self) -> int:
        """Requests with pages waiting or in the workers (for tests and metrics)."""
        return len(self._flows)

    @property
    def waiting(self) -> int:
        return sum(len(f.waiting) for f in self._flows.values())

    async def acquire(self, key: str, background: bool = False) -> Flow:
        """Wait for this flow's turn at a worker; the returned flow is given to `release`."""
        flow = self._flows.get((key, background))
        if flow is None:
            flow = self._flows[(key, background)] = Flow(key, background)
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        flow.waiting.append(waiter)
        self._dispatch()
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(flow)  # given a worker as it was cancelled: pass it on
            else:
                with contextlib.suppress(ValueError):  # unless a dispatch dropped it already
                    flow.waiting.remove(waiter)
                self._forget(flow)
            raise
        return flow

    def release(self, flow: Flow) -> None:
        """A worker `flow` held is free: the next flow's page goes."""
        flow.running -= 1
        self.free += 1
        if flow.background:
            self.background_running -= 1
        self._forget(flow)
        self._dispatch()

    def _forget(self, flow: Flow) -> None:
        if flow.idle and self._flows.get((flow.key, flow.background)) is flow:
            del self._flows[(flow.key, flow.background)]

    def _dispatch(self) -> None:
        while self.free > 0:
            flow = self.next_flow()
            if flow is None:
                return
            waiter = flow.waiting.popleft()
            if waiter.done():  # cancelled, its task not yet resumed to take it out
                continue
            self.free -= 1
            flow.running += 1
            flow.served = next(self._ticks)
            if flow.background:
                self.background_running += 1
            waiter.set_result(None)

    def next_flow(self) -> Flow | None:
        """The flow whose page goes to the next free worker (None: nobody may go)."""
        waiting = [f for f in self._flows.values() if f.waiting]
        if any(not f.background for f in waiting):
            waiting = [f for f in waiting if not f.background]
        elif self.background_running >= self.background_limit:
            return None
        if not waiting:
            return None
        return min(waiting, key=lambda f: (f.running, f.served))
