"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, UpstreamDep

health = APIRouter()


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
