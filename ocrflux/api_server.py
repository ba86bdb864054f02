"""Entry point: `python -m ocrflux.api_server` reads the settings and runs uvicorn."""

from __future__ import annotations

import logging
import sys
from types import FrameType

import uvicorn
from fastapi import FastAPI
from pydantic import ValidationError

from ocrflux.app import create_app
from ocrflux.http_limits import limited_protocol
from ocrflux.observability import configure_logging
from ocrflux.settings import Settings

SECRET_SETTINGS = {"api_keys", "vllm_api_key", "metrics_api_key"}
logger = logging.getLogger("ocrflux")


def load_settings() -> Settings:
    """Settings from the environment; on a bad value, one line per variable and exit 2."""
    try:
        return Settings()
    except ValidationError as exc:
        for error in exc.errors():
            name = ".".join(str(p) for p in error["loc"][:1]) or "settings"
            shown = "<hidden>" if name in SECRET_SETTINGS else repr(error.get("input"))
            message = error["msg"].removeprefix("Value error, ")
            print(f"ocrflux: invalid {name.upper()}={shown}: {message}", file=sys.stderr)
        raise SystemExit(2) from None


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


def main() -> None:
    settings = load_settings()
    configure_logging(settings.debug, settings.log_format)
    app = create_app(settings)
    GatewayServer(server_config(app, settings), app).run()


if __name__ == "__main__":
    main()
