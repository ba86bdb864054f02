"""Server-sent events: relaying vLLM's stream and writing our own chunks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ocrflux.errors import APIError
from ocrflux.observability import current_request
from ocrflux.upstream.errors import too_large

logger = logging.getLogger("ocrflux.sse")

DONE = b"data: [DONE]\n\n"
# No caching, and no buffering by a proxy in between (nginx honours X-Accel-Buffering).
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def named_event(name: str, data: dict[str, Any]) -> bytes:
    """`event: <name>` with the data's own `type` field saying the same (for fetch() readers)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"


class ModelRewriter:
    """Replace the upstream model name with the client's in complete SSE events.

    vLLM writes compact JSON, so a byte replacement of `"model":"<name>"` is exact (a quote
    inside a JSON string value is always escaped, so the pattern cannot occur in content).
    Anything else that mentions `"model"` is parsed and rewritten the slow way.
    """

    def __init__(self, upstream_model: str, client_model: str) -> None:
        self.client_model = client_model
        self._pattern = b'"model":' + orjson.dumps(upstream_model)
        self._replacement = b'"model":' + orjson.dumps(client_model)

    def __call__(self, events: bytes) -> bytes:
        if self._pattern in events:
            return events.replace(self._pattern, self._replacement)
        if b'"model"' not in events:
            return events
        return b"".join(self._rewrite_line(line) for line in events.splitlines(keepends=True))

    def _rewrite_line(self, line: bytes) -> bytes:
        if not line.startswith(b"data:") or line.strip() == DONE.strip():
            return line
        try:
            data = orjson.loads(line[5:])
        except orjson.JSONDecodeError:
            return line
        if isinstance(data, dict) and "model" in data:
            data["model"] = self.client_model
        return b"data: " + orjson.dumps(data) + b"\n"


async def relay(
    response: httpx.Response,
    rewrite: ModelRewriter,
    *,
    deadline: float | None = None,
    late: APIError | None = None,
    max_event_bytes: int = 32 * 1024 * 1024,
) -> AsyncIterator[bytes]:
    """Pass vLLM's SSE through event by event; close the upstream request when we stop.

    Each read from vLLM must come before `deadline` (event-loop time), else the stream ends with
    `late` as an error event; an event over `max_event_bytes` ends it with a 502. As vLLM ends
    a failed stream, an error event is followed by `[DONE]`. If the client
    goes away, Starlette cancels this generator and `finally` closes the upstream response,
    which makes vLLM abort the generation.
    """
    pending = b""
    chunks = response.aiter_raw()
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            pending += chunk
            end = pending.rfind(b"\n\n")
            if end >= 0:
                complete, pending = pending[: end + 2], pending[end + 2 :]
                yield rewrite(complete)
            elif len(pending) > max_event_bytes:
                logger.warning("upstream stream event over %d bytes: cut", max_event_bytes)
                yield event(too_large(max_event_bytes).body())
                yield DONE
                return
        if pending:
            yield rewrite(pending)
    except TimeoutError:
        logger.warning("stream cut at the request's deadline (TOTAL_TIMEOUT)")
        yield event((late or APIError(504, "the request took too long", code="timeout")).body())
        yield DONE
    except httpx.HTTPError as exc:
        # Headers are gone already; tell the client in-band, the way OpenAI streams do.
        logger.warning("upstream stream broke: %s", type(exc).__name__)
        error = APIError(502, "the model server dropped the stream", code="upstream_error")
        yield event(error.body())
        yield DONE
    finally:
        await response.aclose()


class EventStream(StreamingResponse):
    """An SSE response that cannot be pinned by its client, and always cleans up.

    A client that stops reading (its TCP window full) is cut after `write_timeout` seconds of
    not taking a single chunk, instead of holding the upstream connection forever. The body
    iterator is closed and `on_close` runs however the response ends, even if it never started
    (a generator that never ran has no `finally` of its own to run).
    """

    def __init__(
        self,
        content: AsyncIterator[bytes],
        *,
        write_timeout: float,
        on_close: Callable[[], Awaitable[None]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            content, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})}
        )
        self.write_timeout = write_timeout
        self.on_close = on_close

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        async for chunk in self.body_iterator:
            try:
                async with asyncio.timeout(self.write_timeout):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except TimeoutError:
                note = f"cut: the client took nothing for {self.write_timeout:g} s"
                logger.warning("stream %s (CLIENT_WRITE_TIMEOUT)", note)
                log = current_request()
                if log is not None:
                    log.status_note = note
                return  # incomplete on purpose: the server closes the connection
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            iterator = self.body_iterator
            if isinstance(iterator, AsyncGenerator):
                await iterator.aclose()
            if self.on_close is not None:
                await self.on_close()
