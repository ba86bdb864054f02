"""The embedded CPU OCR engine: rapidocr line boxes turned into OCRFlux-style page Markdown.

Runs with no GPU and no network, from the optional `cpu` extra (`pip install -e '.[cpu]'`).
`read_page` is the synchronous core, `LocalOCRPool` runs it in worker processes for asyncio
callers, `check_available` says at start-up what is missing; none of them imports the gateway,
so the spawned workers stay light. `engine.LocalEngine` (imported by the gateway, not here)
puts the pool behind the page contract, and `continuation` answers the cross-page questions.
"""

from __future__ import annotations

from ocrflux.engines.local.availability import check_available
from ocrflux.engines.local.errors import (
    LocalOCRError,
    ModelNotShipped,
    UnreadableImage,
    WorkerCrashed,
)
from ocrflux.engines.local.pool import LocalOCRPool
from ocrflux.engines.local.result import LocalPage

__all__ = [
    "LocalOCRError",
    "LocalOCRPool",
    "LocalPage",
    "ModelNotShipped",
    "UnreadableImage",
    "WorkerCrashed",
    "check_available",
]
