"""Thin HTTP routes: read, validate, delegate, answer."""

from __future__ import annotations

import asyncio
import hmac
import time
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ocrflux.chat import ChatService
from ocrflux.errors import APIError
from ocrflux.protocol import json_response
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


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With API_KEYS set, `/v1/*` needs one of them as a bearer token."""
    if not settings.api_keys:
        return
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    presented = token.strip().encode()
    valid = scheme.lower() == "bearer" and any(
        hmac.compare_digest(presented, key.encode()) for key in settings.api_keys
    )
    if not valid:
        raise APIError(
            401,
            "Incorrect API key provided. Send it as 'Authorization: Bearer <key>'.",
            code="invalid_api_key",
        )


health = APIRouter()
v1 = APIRouter(prefix="/v1", dependencies=[Depends(require_api_key)])


async def read_json(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object, read once, refusing more than `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(
            413,
            f"request body is {int(declared):,} bytes, the limit is {limit:,}",
            code="request_too_large",
        )
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise APIError(
                413, f"request body is over the limit of {limit:,} bytes", code="request_too_large"
            )
        chunks.append(chunk)
    try:
        data = orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return data


@v1.post("/chat/completions")
async def chat_completions(request: Request, settings: SettingsDep, chat: ChatDep) -> Response:
    try:
        async with asyncio.timeout(settings.total_timeout):
            # The body goes straight to the service, which owns it (and lets go of it early).
            return await chat.complete(
                await read_json(request, settings.max_request_bytes), request.state.request_id
            )
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


@health.get("/health")
async def liveness(upstream: UpstreamDep) -> Response:
    """Always fast: the gateway is alive; upstream state is the last background check's."""
    replicas = [
        {"url": r.base_url, "reachable": r.reachable, "checked_at": r.checked_at}
        for r in upstream.replicas
    ]
    return json_response({"status": "ok", "upstream": replicas})


@health.get("/ready")
async def readiness(upstream: UpstreamDep, settings: SettingsDep) -> Response:
    """200 when a replica is healthy and serves OCRFLUX_MODEL; 503 otherwise, saying why."""
    replicas = await upstream.check()
    report = []
    for replica in replicas:
        mismatch = upstream.model_mismatch(replica)
        report.append(
            {
                "url": replica.base_url,
                "reachable": replica.reachable,
                "served_models": replica.served_models,
                "error": replica.error,
                "model_mismatch": mismatch,
            }
        )
    ready = any(r["reachable"] and not r["model_mismatch"] for r in report)
    body = {
        "status": "ready" if ready else "not_ready",
        "model": settings.ocrflux_model,
        "upstream": report,
    }
    return json_response(body, status=200 if ready else 503)
