"""Admission control: a bounded number of upstream calls in flight, a bounded fair queue.

Callers name a *flow* (one client request, or one document): while calls wait, each freed slot
goes to the waiting flow that holds the fewest slots (ties: the one that waited longest for its
turn), so a 500-page document cannot starve a single-image request queued behind it.
`max_queue` bounds the waiting *flows* (a document's waiting pages count once, so one document
cannot fill the queue for everyone else): a new flow beyond it gets `QueueFull`; a call that
waited `timeout` seconds gets `QueueTimeout`.

Two classes of work. Interactive calls (clients' requests) see `limit` slots of their own,
exactly as if nothing else ran. Background calls (batch lines) take only what interactive
work leaves free: one starts only while fewer than `limit` calls of either class are in
flight and no interactive call waits. So an interactive call never waits for, nor is refused
because of, background work; when interactive traffic rises, the background calls in flight
finish and no new ones start (until then the upstream carries both).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable


class Rejected(Exception):
    """No slot for this call; `retry_after` is a hint in whole seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(Rejected):
    pass


class QueueTimeout(Rejected):
    pass


class _Waiter:
    __slots__ = ("flow", "future", "timer")

    def __init__(self, flow: str, future: asyncio.Future[None]) -> None:
        self.flow = flow
        self.future = future
        self.timer: asyncio.TimerHandle | None = None


class _FairQueue:
    """Waiting calls by flow; the next one is from the flow holding the fewest slots."""

    def __init__(self, held: dict[str, int]) -> None:
        self._held = held
        # Flows with waiting calls, in turn order, and each flow's waiters in arrival order.
        self._turns: deque[str] = deque()
        self._waiting: dict[str, deque[_Waiter]] = {}
        self.calls = 0

    @property
    def flows(self) -> int:
        return len(self._waiting)

    def __contains__(self, flow: str) -> bool:
        return flow in self._waiting

    def add(self, waiter: _Waiter) -> None:
        waiting = self._waiting.get(waiter.flow)
        if waiting is None:
            waiting = self._waiting[waiter.flow] = deque()
            self._turns.append(waiter.flow)
        waiting.append(waiter)
        self.calls += 1

    def pop(self) -> _Waiter:
        turns = self._turns
        chosen = turns[0]
        if len(turns) > 1:
            fewest = self._held.get(chosen, 0)
            for flow in turns:
                held = self._held.get(flow, 0)
                if held < fewest:
                    chosen, fewest = flow, held
                    if not held:
                        break
        waiting = self._waiting[chosen]
        waiter = waiting.popleft()
        turns.remove(chosen)
        if waiting:
            turns.append(chosen)  # its next call waits for its next turn
        else:
            del self._waiting[chosen]
        self.calls -= 1
        return waiter

    def remove(self, waiter: _Waiter) -> None:
        waiting = self._waiting.get(waiter.flow)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        self.calls -= 1
        if not waiting:
            del self._waiting[waiter.flow]
            self._turns.remove(waiter.flow)


class Admission:
    """`await acquire(flow)` before an upstream call, `release(flow)` after it (always),
    both with the same `background` flag."""

    def __init__(
        self,
        limit: int,
        max_queue: int,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.max_queue = max_queue
        self.timeout = timeout
        self.in_use = 0  # slots held, both classes
        self.background_in_use = 0
        self._held: dict[str, int] = {}
        self._interactive = _FairQueue(self._held)
        self._background = _FairQueue(self._held)
        self._clock = clock
        # Mean seconds a slot is held (exponentially weighted), for Retry-After hints.
        self.mean_hold = 1.0

    @property
    def queued(self) -> int:
        """Interactive calls waiting for a slot."""
        return self._interactive.calls

    @property
    def background_queued(self) -> int:
        return self._background.calls

    def held(self, flow: str) -> int:
        return self._held.get(flow, 0)

    async def acquire(self, flow: str, *, background: bool = False) -> float:
        """Wait for a slot; returns the seconds waited. Interactive calls raise `QueueFull` or
        `QueueTimeout`; background calls wait as long as it takes (or until cancelled)."""
        if background:
            free = self.in_use < self.limit and not self.queued and not self.background_queued
        else:
            free = self.in_use - self.background_in_use < self.limit and not self.queued
        if free:
            self._grant(flow, background)
            return 0.0
        queue = self._background if background else self._interactive
        if not background and flow not in queue and queue.flows >= self.max_queue:
            raise QueueFull(
                f"the gateway is at capacity: {self.in_use} calls in flight and "
                f"{self.queued} waiting",
                self.retry_after(),
            )
        started = self._clock()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(flow, loop.create_future())
        queue.add(waiter)
        if not background:
            waiter.timer = loop.call_later(self.timeout, self._expire, waiter)
        try:
            await waiter.future
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # The slot was handed over just as this call was cancelled: pass it on.
                self.release(flow, background=background)
            elif not future.done() or future.cancelled():
                queue.remove(waiter)
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
        return self._clock() - started

    def release(
        self, flow: str, held_for: float | None = None, *, background: bool = False
    ) -> None:
        """Give a slot back: an interactive slot to the next waiting interactive call by fair
        share; any slot that ends up free to a background call if interactive work leaves it."""
        count = self._held.get(flow, 0) - 1
        if count > 0:
            self._held[flow] = count
        else:
            self._held.pop(flow, None)
        if held_for is not None and not background:
            self.mean_hold += 0.1 * (held_for - self.mean_hold)
        if not background and self._hand_over(self._interactive):
            return  # the slot moves over; in_use stays
        self.in_use -= 1
        if background:
            self.background_in_use -= 1
        while self.in_use < self.limit and not self.queued and self._hand_over(self._background):
            self.in_use += 1
            self.background_in_use += 1

    def retry_after(self) -> int:
        """Whole seconds until the queue in front of a new call has likely drained."""
        backlog = (self.queued + 1) / max(1, self.limit)
        return max(1, min(600, math.ceil(backlog * self.mean_hold)))

    def _grant(self, flow: str, background: bool) -> None:
        self.in_use += 1
        if background:
            self.background_in_use += 1
        self._held[flow] = self._held.get(flow, 0) + 1

    def _hand_over(self, queue: _FairQueue) -> bool:
        """Wake the next live waiter of `queue` with a slot (counted in `_held` only)."""
        while queue.calls:
            waiter = queue.pop()
            if waiter.future.done():
                # Cancelled a moment ago: its task has not yet run to take itself out.
                continue
            self._held[waiter.flow] = self._held.get(waiter.flow, 0) + 1
            waiter.future.set_result(None)
            return True
        return False

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self._interactive.remove(waiter)
        waiter.future.set_exception(
            QueueTimeout(
                f"waited {self.timeout:g} s for a free upstream slot (QUEUE_TIMEOUT)",
                self.retry_after(),
            )
        )
