"""Thin HTTP routes, one module per resource; `ROUTERS` is what the app includes."""

from ocrflux.routes.chat import v1
from ocrflux.routes.health import health
from ocrflux.routes.ocr import ocr

ROUTERS = (health, v1, ocr)

__all__ = ["ROUTERS"]
