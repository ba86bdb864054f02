"""Thin HTTP routes, one module per resource; `ROUTERS` is what the app includes, `HOT_ROUTES`
what the edge serves directly."""

from ocrflux.routes.batches import batches
from ocrflux.routes.chat import HOT_ROUTES, v1
from ocrflux.routes.files import files
from ocrflux.routes.health import health
from ocrflux.routes.metrics import metrics
from ocrflux.routes.ocr import ocr
from ocrflux.routes.web import web

ROUTERS = (health, metrics, v1, ocr, files, batches, web)

__all__ = ["HOT_ROUTES", "ROUTERS"]
