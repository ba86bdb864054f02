"""The gateway-wide budget of request-body bytes held in memory (MAX_BODY_MEMORY_BYTES).

A request reserves what it will buffer before buffering it: a JSON body its Content-Length
at once (so it never fails half-way through), a body without one chunk by chunk, a multipart
upload only what it keeps in memory before writing it to disk. A reservation that does not
fit waits up to `wait` seconds for others to give theirs back, then is a 503 with
Retry-After: 16 clients stalling 60 MB bodies hold at most the budget, not 1 GB.

Whatever fits is granted at once, so a small body (the usual chat request) never queues
behind a large one; the large one is the one to wait, and to be refused. A request alone may
take more than the budget: a limit below the largest accepted body must not refuse that body
forever.
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType

from ocrflux.errors import APIError

# Seconds a reservation waits for room before its request is refused.
BUDGET_WAIT = 2.0

_Waiter = tuple[int, int, asyncio.Future[None]]  # (size wanted, size already held, grant)


class BodyBudget:
    """Bytes reserved by the request bodies being received, all requests together."""

    def __init__(self, limit: int, wait: float = BUDGET_WAIT) -> None:
        self.limit = limit
        self.wait = wait
        self.held = 0
        self._waiters: list[_Waiter] = []

    def hold(self) -> BodyHold:
        """One request's share, given back when its `async with` block ends."""
        return BodyHold(self)

    def _fits(self, size: int, own: int) -> bool:
        return self.held == own or self.held + size <= self.limit

    async def take(self, size: int, own: int = 0) -> None:
        """Reserve `size` more bytes for a request holding `own` already, waiting up to
        `wait` seconds for room (then APIError 503)."""
        if self._fits(size, own):
            self.held += size
            return
        waiter = (size, own, asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(self.wait):
                await waiter[2]
        except TimeoutError:
            self._abandon(waiter)
            raise self._busy(size) from None
        except BaseException:
            self._abandon(waiter)
            raise

    def give(self, size: int) -> None:
        """Give back `size` bytes; waiting reservations that now fit go."""
        self.held -= size
        self._wake()

    def _abandon(self, waiter: _Waiter) -> None:
        """A wait given up (timed out, or its request cancelled)."""
        size, _, granted = waiter
        if granted.done() and not granted.cancelled():
            self.give(size)  # granted just as the wait ended: not ours to keep
            return
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def _wake(self) -> None:
        for waiter in list(self._waiters):  # in arrival order, each that fits
            size, own, granted = waiter
            if granted.done():
                self._waiters.remove(waiter)
            elif self._fits(size, own):
                self._waiters.remove(waiter)
                self.held += size
                granted.set_result(None)

    def _busy(self, size: int) -> APIError:
        return APIError(
            503,
            f"the gateway holds {self.held:,} bytes of request bodies in memory and this one "
            f"needs {size:,} more (MAX_BODY_MEMORY_BYTES={self.limit:,}); retry in 1 s",
            code="server_busy",
            headers={"Retry-After": "1"},
        )


class BodyHold:
    """What one request has reserved: `cover` grows it, leaving the block gives it back."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.size = 0

    async def cover(self, total: int) -> None:
        """Grow the reservation to at least `total` bytes."""
        if total > self.size:
            await self.budget.take(total - self.size, self.size)
            self.size = total

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget.give(size)

    async def __aenter__(self) -> BodyHold:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
