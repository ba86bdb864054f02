"""OpenAI's chat-completions and models routes (thin: read, validate, delegate, answer)."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ocrflux.errors import request_timeout
from ocrflux.http.disconnect import unless_disconnected
from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, read_json, require_api_key

v1 = APIRouter(prefix="/v1")


async def chat_completions(request: Request) -> Response:
    """POST /v1/chat/completions. The edge serves it directly (it is the hot path): no
    dependency injection, so it reads what it needs from the app's state itself."""
    state = request.app.state
    settings = state.settings
    await require_api_key(request, settings)
    # The body has its own deadline (REQUEST_BODY_TIMEOUT, a 408 from the server protocol):
    # TOTAL_TIMEOUT times the work once the body is in, so a short body is never a 504.
    body = await read_json(
        request, settings.max_request_bytes, settings.max_json_items, state.body_budget
    )
    deadline = asyncio.get_running_loop().time() + settings.total_timeout
    try:
        async with asyncio.timeout_at(deadline):
            # The body goes straight to the service, which owns it (and lets go of it early).
            work = state.chat.complete(body, request.state.request_id, deadline)
            del body
            return await unless_disconnected(request, work)
    except TimeoutError:
        raise request_timeout(settings.total_timeout) from None


# Registered with FastAPI too, for the OpenAPI schema and any path the edge does not match.
v1.add_api_route("/chat/completions", chat_completions, methods=["POST"])

# What the edge serves without FastAPI's routing: (method, path) -> handler.
HOT_ROUTES = {("POST", "/v1/chat/completions"): chat_completions}


@v1.get("/models", dependencies=[Depends(require_api_key)])
async def list_models(settings: SettingsDep) -> Response:
    model = {
        "id": settings.ocrflux_model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "ocrflux",
    }
    return json_response({"object": "list", "data": [model]})
