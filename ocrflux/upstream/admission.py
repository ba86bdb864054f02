"""Admission control: a bounded number of upstream calls in flight, a bounded fair queue.

Callers name a *flow* (one client request, or one document): while calls wait, each freed slot
goes to the waiting flow that holds the fewest slots (ties: the one that waited longest for its
turn), so a 500-page document cannot starve a single-image request queued behind it. Beyond
`max_queue` waiting calls: `QueueFull`; a call that waited `timeout` seconds: `QueueTimeout`.
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


class Admission:
    """`await acquire(flow)` before an upstream call, `release(flow)` after it (always)."""

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
        self.in_use = 0
        self.queued = 0
        self._held: dict[str, int] = {}
        # Flows with waiting calls, in turn order, and each flow's waiters in arrival order.
        self._turns: deque[str] = deque()
        self._waiting: dict[str, deque[_Waiter]] = {}
        self._clock = clock
        # Mean seconds a slot is held (exponentially weighted), for Retry-After hints.
        self.mean_hold = 1.0

    def held(self, flow: str) -> int:
        return self._held.get(flow, 0)

    async def acquire(self, flow: str) -> float:
        """Wait for a slot; returns the seconds waited. Raises `QueueFull` or `QueueTimeout`."""
        if self.in_use < self.limit and not self.queued:
            self.in_use += 1
            self._held[flow] = self._held.get(flow, 0) + 1
            return 0.0
        if self.queued >= self.max_queue:
            raise QueueFull(
                f"the gateway is at capacity: {self.in_use} calls in flight and "
                f"{self.queued} waiting",
                self.retry_after(),
            )
        started = self._clock()
        loop = asyncio.get_running_loop()
        waiter = _Waiter(flow, loop.create_future())
        self._enqueue(waiter)
        waiter.timer = loop.call_later(self.timeout, self._expire, waiter)
        try:
            await waiter.future
        except BaseException:
            future = waiter.future
            if future.done() and not future.cancelled() and future.exception() is None:
                # The slot was handed over just as this call was cancelled: pass it on.
                self.release(flow)
            elif not future.done() or future.cancelled():
                self._remove(waiter)
            raise
        finally:
            if waiter.timer is not None:
                waiter.timer.cancel()
        return self._clock() - started

    def release(self, flow: str, held_for: float | None = None) -> None:
        """Give a slot back: to the next waiting call by fair share, else to the pool."""
        count = self._held.get(flow, 0) - 1
        if count > 0:
            self._held[flow] = count
        else:
            self._held.pop(flow, None)
        if held_for is not None:
            self.mean_hold += 0.1 * (held_for - self.mean_hold)
        while self.queued:
            waiter = self._next_waiter()
            if waiter.future.done():
                # Cancelled a moment ago: its task has not yet run to take itself out.
                continue
            self._held[waiter.flow] = self._held.get(waiter.flow, 0) + 1
            waiter.future.set_result(None)  # the slot moves over; in_use stays
            return
        self.in_use -= 1

    def retry_after(self) -> int:
        """Whole seconds until the queue in front of a new call has likely drained."""
        backlog = (self.queued + 1) / max(1, self.limit)
        return max(1, min(600, math.ceil(backlog * self.mean_hold)))

    # --- the queue ----------------------------------------------------------------------------
    def _enqueue(self, waiter: _Waiter) -> None:
        waiting = self._waiting.get(waiter.flow)
        if waiting is None:
            waiting = self._waiting[waiter.flow] = deque()
            self._turns.append(waiter.flow)
        waiting.append(waiter)
        self.queued += 1

    def _next_waiter(self) -> _Waiter:
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
        self.queued -= 1
        return waiter

    def _remove(self, waiter: _Waiter) -> None:
        waiting = self._waiting.get(waiter.flow)
        if waiting is None or waiter not in waiting:
            return
        waiting.remove(waiter)
        self.queued -= 1
        if not waiting:
            del self._waiting[waiter.flow]
            self._turns.remove(waiter.flow)

    def _expire(self, waiter: _Waiter) -> None:
        if waiter.future.done():
            return
        self._remove(waiter)
        waiter.future.set_exception(
            QueueTimeout(
                f"waited {self.timeout:g} s for a free upstream slot (QUEUE_TIMEOUT)",
                self.retry_after(),
            )
        )
