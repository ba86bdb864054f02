"""One upstream HTTP/1.1 keep-alive connection: an asyncio protocol fed to httptools' parser.

`LeanTransport` (transport.py) pools these. A connection carries one request at a time and
parses its response as the bytes arrive, pausing the socket past `_HIGH_WATER` buffered bytes.
"""

from __future__ import annotations

import asyncio
from collections import deque

import httptools
import httpx

# Upstream bytes buffered per response before reading from the socket pauses (backpressure).
_HIGH_WATER = 1 << 20
# Below this size the head and body go out in one write (one syscall).
_JOIN_LIMIT = 1 << 16


class Connection(asyncio.Protocol):
    """One keep-alive connection; a response is parsed as its bytes arrive."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reused = False
        self.key: tuple[str, int] = ("", 0)
        self.slot_released = False
        self._can_write = asyncio.Event()
        self._can_write.set()
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.error: httpx.TransportError | None = None
        self.received_any = False
        self._waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"invalid HTTP response from upstream: {exc}"))
            self.close()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            message = "upstream closed the connection before the response was complete"
            self._fail(
                httpx.ReadError(message)
                if self.received_any
                else httpx.RemoteProtocolError(message)
            )
        self._can_write.set()
        self._wake()

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    # --- httptools callbacks ------------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # Read now: httptools forgets it once the message is complete.
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        if self.buffered > _HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def on_message_complete(self) -> None:
        self.complete = True

    # --- used by the transport ----------------------------------------------------------------
    def _fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, seconds: float | None) -> None:
        """Until more of the response (or an error) arrived; httpx.ReadTimeout after `seconds`."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(seconds):
                await self._waiter
        except TimeoutError:
            raise httpx.ReadTimeout("upstream sent nothing within the read timeout") from None
        finally:
            self._waiter = None

    async def next_chunk(self, seconds: float | None) -> bytes | None:
        """The body bytes that arrived since the last call, waiting for some; None at its end.

        Raises the connection's error, or httpx.ReadTimeout when `seconds` pass in silence.
        """
        while not self.chunks:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            await self.wait(seconds)
        return self.take()

    async def send(self, head: bytes, body: bytes, seconds: float | None) -> None:
        assert self.transport is not None
        if len(body) < _JOIN_LIMIT:
            self.transport.write(head + body)
        else:
            self.transport.writelines((head, body))  # no 2 MB concatenation copy
        if not self._can_write.is_set():
            try:
                async with asyncio.timeout(seconds):
                    await self._can_write.wait()
            except TimeoutError:
                raise httpx.WriteTimeout("upstream did not accept the request in time") from None
        if self.closed and self.error is not None:
            raise self.error

    def take(self) -> bytes:
        data = b"".join(self.chunks) if len(self.chunks) > 1 else self.chunks.popleft()
        self.chunks.clear()
        if self.buffered > _HIGH_WATER and self.transport is not None:
            self.transport.resume_reading()
        self.buffered = 0
        return data

    def reusable(self) -> bool:
        return (
            self.complete
            and self.error is None
            and not self.closed
            and self.keep_alive
            and not self.chunks
        )

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True
