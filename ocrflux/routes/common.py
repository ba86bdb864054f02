"""What every route shares: dependencies, the API-key check, reading a JSON body once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect

from ocrflux import inline_data
from ocrflux.chat import ChatService
from ocrflux.errors import APIError
from ocrflux.http.budget import BodyBudget, BodyHold
from ocrflux.http.json_body import BodyShape, parse_object, too_complex
from ocrflux.settings import Settings
from ocrflux.upstream import Upstream


# Dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in the thread
# pool, a thread hop per dependency per request (measured: 0.6 ms CPU per text request).
async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_upstream(request: Request) -> Upstream:
    return request.app.state.upstream


async def get_chat(request: Request) -> ChatService:
    return request.app.state.chat


SettingsDep = Annotated[Settings, Depends(get_settings)]
UpstreamDep = Annotated[Upstream, Depends(get_upstream)]
ChatDep = Annotated[ChatService, Depends(get_chat)]


MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
)


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With API_KEYS set, `/v1/*` needs one of them as a bearer token."""
    if not settings.api_keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode()
    if not scheme or (scheme.lower() == "bearer" and not presented):
        raise APIError(401, MISSING_KEY, code="missing_api_key")  # OpenAI's words
    valid = scheme.lower() == "bearer" and any(
        hmac.compare_digest(presented, key.encode()) for key in settings.api_keys
    )
    if not valid:
        raise APIError(
            401,
            "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )


def owner_of(request: Request, settings: Settings) -> str:
    """Whose files and batches a request sees: a hash of its API key ("" without API_KEYS,
    when every client shares them). Call after `require_api_key`."""
    if not settings.api_keys:
        return ""
    token = request.headers.get("authorization", "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode()).hexdigest()[:32]


async def read_body(
    request: Request, limit: int, hold: BodyHold, on_chunk: Callable[[bytes], None] | None = None
) -> bytes | bytearray:
    """The whole body, read once, refusing more than `limit` bytes (413); `on_chunk` may
    refuse it earlier, as it arrives. What it buffers is reserved in `hold` first: all of a
    declared Content-Length at once, else chunk by chunk (ocrflux.http.budget)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise APIError(
                413,
                f"request body is {int(declared):,} bytes, the limit is {limit:,}",
                code="request_too_large",
            )
        await hold.cover(int(declared))
    # Chunks are appended as they come (no list to join at the end: that copy of a 60 MB
    # body held the event loop for 60 ms); a body of one chunk is that chunk.
    body: bytes | bytearray = b""
    try:
        async for chunk in request.stream():
            size = len(body) + len(chunk)
            if size > limit:
                raise APIError(
                    413,
                    f"request body is over the limit of {limit:,} bytes",
                    code="request_too_large",
                )
            await hold.cover(size)
            if on_chunk is not None:
                on_chunk(chunk)
            if not body:
                body = chunk
            else:
                if isinstance(body, bytes):
                    body = bytearray(body)
                body += chunk
    except ClientDisconnect:  # gone mid-body (or cut by REQUEST_BODY_TIMEOUT): no traceback
        raise APIError(499, "the client left before its request body was complete") from None
    return body


async def read_json(
    request: Request, limit: int, max_items: int, budget: BodyBudget
) -> dict[str, Any]:
    """The body as a JSON object, read once, refusing more than `limit` bytes or a body whose
    structure would stall the event loop (see ocrflux.http.json_body). Its bytes count
    against `budget` until it is parsed."""
    shape = BodyShape()

    def check(chunk: bytes) -> None:
        shape.add(chunk)
        if shape.items > max_items:  # refused before the rest is even read
            raise too_complex(shape, max_items)

    inline_data.start()  # big inline documents stay bytes (ocrflux.inline_data)
    async with budget.hold() as hold:
        return parse_object(await read_body(request, limit, hold, check), shape, max_items)
