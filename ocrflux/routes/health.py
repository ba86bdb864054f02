"""Liveness and readiness (no key needed)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from ocrflux.engines.factory import Engines
from ocrflux.engines.failover import upstream_down
from ocrflux.protocol import json_response
from ocrflux.routes.common import SettingsDep, UpstreamDep
from ocrflux.settings import Settings
from ocrflux.upstream.health import describe

health = APIRouter()


def _engines(request: Request) -> Engines:
    return request.app.state.engines


def _local(settings: Settings) -> dict[str, int]:
    return {"workers": settings.local_workers, "threads": settings.local_threads}


@health.get("/health")
async def liveness(request: Request, upstream: UpstreamDep, settings: SettingsDep) -> Response:
    """Always fast: the gateway is alive; upstream state is the last check's (no upstream call).

    `backend` names the page engine (`vllm`, `local`, or `vllm+local` with the fallback); with
    OCR_BACKEND=local there is no upstream to report."""
    engines = _engines(request)
    hide = settings.hide_upstream_urls
    replicas = [
        {
            "url": r.label if hide else r.base_url,
            "reachable": r.reachable,
            "healthy": r.healthy,
            "state": r.state.value,
            "ejections": r.ejections,
            "checked_at": r.checked_at,
        }
        for r in upstream.replicas
        if settings.ocr_backend == "vllm"
    ]
    body: dict[str, Any] = {
        "status": "draining" if request.app.state.draining else "ok",
        "backend": engines.backend,
    }
    if engines.local is not None:
        body["local"] = _local(settings)
    body["upstream"] = replicas
    return json_response(body)


@health.get("/ready")
async def readiness(request: Request, upstream: UpstreamDep, settings: SettingsDep) -> Response:
    """200 while pages can be read; 503 otherwise, saying why.

    Pages can be read while a replica is healthy and serves OCRFLUX_MODEL, always with
    OCR_BACKEND=local (its models were loaded before the gateway answered anything; vLLM is
    never asked), and with FALLBACK_BACKEND=local while every replica is down ("degraded").
    The upstream check is shared by concurrent callers and reused for READY_CACHE_SECONDS, so
    /ready cannot be used to flood vLLM. After SIGTERM it is 503 at once (draining).
    """
    engines = _engines(request)
    body: dict[str, Any] = {"status": "ready", "backend": engines.backend}
    if engines.local is not None:
        body["local"] = _local(settings)
    if settings.ocr_backend == "local":
        draining = request.app.state.draining
        body.update(status="draining" if draining else "ready", upstream=[])
        return json_response(body, status=503 if draining else 200)
    if not request.app.state.draining:
        await upstream.health.fresh()
    hide = settings.hide_upstream_urls
    report = [describe(r, upstream.model_mismatch(r), hide) for r in upstream.replicas]
    draining = request.app.state.draining  # again: SIGTERM may have come during the check
    ready = any(r["healthy"] and not r["model_mismatch"] for r in report)
    if draining:
        body["status"] = "draining"
    elif not ready:
        # While every replica is down, the local engine reads the pages.
        body["status"] = (
            "degraded" if engines.local is not None and upstream_down(upstream) else "not_ready"
        )
    body["model"] = settings.ocrflux_model
    body["upstream"] = report
    return json_response(body, status=200 if body["status"] in ("ready", "degraded") else 503)
