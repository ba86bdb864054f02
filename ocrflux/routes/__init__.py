"""Thin HTTP routes, one module per resource; `ROUTERS` is what the app includes."""

from ocrflux.routes.chat import v1
from ocrflux.routes.health import health

ROUTERS = (health, v1)

__all__ = ["ROUTERS"]
