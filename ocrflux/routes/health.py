"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, UpstreamDep
from ocrflux.upstream.health import describe

health = APIRouter()


@health.get("/health")
async def liveness(request: Request, upstream: UpstreamDep, settings: SettingsDep) -> Response:
    """Always fast: the gateway is alive; upstream state is the last check's (no upstream call)."""
    hide = settings.hide_upstream_urls
    replicas = [
        {
            "url": r.label if hide else r.base_url,
            "reachable": r.reachable,
            "healthy": r.healthy,
            "checked_at": r.checked_at,
        }
        for r in upstream.replicas
    ]
    status = "draining" if request.app.state.draining else "ok"
    return json_response({"status": status, "upstream": replicas})


@health.get("/ready")
async def readiness(request: Request, upstream: UpstreamDep, settings: SettingsDep) -> Response:
    """200 while a replica is healthy and serves OCRFLUX_MODEL; 503 otherwise, saying why.

    The upstream check is shared by concurrent callers and reused for READY_CACHE_SECONDS, so
    /ready cannot be used to flood vLLM. After SIGTERM it is 503 at once (draining).
    """
    if not request.app.state.draining:
        await upstream.health.fresh()
    hide = settings.hide_upstream_urls
    report = [describe(r, upstream.model_mismatch(r), hide) for r in upstream.replicas]
    draining = request.app.state.draining  # again: SIGTERM may have come during the check
    ready = not draining and any(r["healthy"] and not r["model_mismatch"] for r in report)
    body = {
        "status": "draining" if draining else "ready" if ready else "not_ready",
        "model": settings.ocrflux_model,
        "upstream": report,
    }
    return json_response(body, status=200 if ready else 503)
