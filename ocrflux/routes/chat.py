"""OpenAI's chat-completions and models routes (thin: read, validate, delegate, answer)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ocrflux.disconnect import unless_disconnected
from ocrflux.errors import APIError
from ocrflux.protocol import json_response
from ocrflux.routes.common import ChatDep, SettingsDep, read_json, require_api_key

v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


@v1.post("/chat/completions")
async def chat_completions(request: Request, settings: SettingsDep, chat: ChatDep) -> Response:
    try:
        async with asyncio.timeout(settings.total_timeout):
            # The body goes straight to the service, which owns it (and lets go of it early).
            body = await read_json(request, settings.max_request_bytes, settings.max_json_items)
            work = chat.complete(body, request.state.request_id)
            del body
            return await unless_disconnected(request, work)
    except TimeoutError:
        raise APIError(
            504, f"the request took longer than {settings.total_timeout:g} s", code="timeout"
        ) from None


@v1.get("/models")
async def list_models(settings: SettingsDep) -> Response:
    model = {
        "id": settings.ocrflux_model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "ocrflux",
    }
    return json_response({"object": "list", "data": [model]})
