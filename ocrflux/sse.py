"""Server-sent events: relaying vLLM's stream and writing our own chunks."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

from ocrflux.errors import APIError

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


async def relay(response: httpx.Response, rewrite: ModelRewriter) -> AsyncIterator[bytes]:
    """Pass vLLM's SSE through event by event; close the upstream request when we stop.

    If the client goes away, Starlette cancels this generator and `finally` closes the
    upstream response, which makes vLLM abort the generation.
    """
    pending = b""
    try:
        async for chunk in response.aiter_raw():
            pending += chunk
            end = pending.rfind(b"\n\n")
            if end >= 0:
                complete, pending = pending[: end + 2], pending[end + 2 :]
                yield rewrite(complete)
        if pending:
            yield rewrite(pending)
    except httpx.HTTPError as exc:
        # Headers are gone already; tell the client in-band, the way OpenAI streams do.
        logger.warning("upstream stream broke: %s", type(exc).__name__)
        error = APIError(502, "the model server dropped the stream", code="upstream_error")
        yield event(error.body())
    finally:
        await response.aclose()
