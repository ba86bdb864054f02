"""GET /metrics: Prometheus text format, optionally behind its own bearer key."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from starlette.responses import Response

from ocrflux.errors import APIError
from ocrflux.metrics import CONTENT_TYPE, METRICS
from ocrflux.routes.common import SettingsDep

metrics = APIRouter()


@metrics.get("/metrics")
async def scrape(request: Request, settings: SettingsDep) -> Response:
    if settings.metrics_api_key:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            token.strip().encode(), settings.metrics_api_key.encode()
        ):
            raise APIError(
                401,
                "/metrics needs 'Authorization: Bearer <METRICS_API_KEY>'.",
                code="invalid_api_key",
            )
    return Response(METRICS.exposition(), media_type=CONTENT_TYPE)
