"""The uvicorn side of `python -m ocrflux.api_server`: the server and its configuration.

Kept apart from `ocrflux.api_server`, whose top level the spawned worker processes re-import
(see there).
"""

from __future__ import annotations

import logging
from types import FrameType

import uvicorn
from fastapi import FastAPI

from ocrflux.http.limits import limited_protocol
from ocrflux.settings import Settings

logger = logging.getLogger("ocrflux")


class GatewayServer(uvicorn.Server):
    """uvicorn's server, plus: the first SIGTERM/SIGINT turns /ready to 503 at once."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.gateway = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if not self.gateway.state.draining:
            self.gateway.state.draining = True
            logger.info(
                "signal %d: draining; new connections refused, in-flight requests have "
                "up to %g s (SHUTDOWN_GRACE)",
                sig,
                self.config.timeout_graceful_shutdown or 0,
            )
        super().handle_exit(sig, frame)


def server_config(app: FastAPI, settings: Settings) -> uvicorn.Config:
    """uvicorn's settings. uvloop and httptools are named, not left to "auto": without them
    uvicorn would silently fall back to pure-Python parts costing ~0.5-0.9 ms a request (the
    protocol is httptools' own, with limits: importing it fails loudly without httptools)."""
    return uvicorn.Config(
        app,
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",
        log_config=None,
        access_log=False,
        log_level="debug" if settings.debug else "info",
        http=limited_protocol(settings),
        # Typed int, used as asyncio.wait_for's timeout: fractions work.
        timeout_graceful_shutdown=settings.shutdown_grace,  # type: ignore[arg-type]
    )
